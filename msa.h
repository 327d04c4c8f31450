/*
 * msa.h - shared types, the IPC message catalogue and prototypes.
 *
 * Every process of msa is forked from the root parent without exec, so the
 * parsed configuration is inherited as a plain struct.  The processes talk
 * over socketpairs with one framing (ipc.c); every message type and the
 * layout of its payload is defined in this file and nowhere else.
 */
#ifndef MSA_H
#define MSA_H

#include <sys/types.h>
#include <sys/socket.h>

#include <netinet/in.h>

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>

#define MSA_VERSION "0.1.0"

#define DEFAULT_CONFIG "/etc/msa/msa.yaml"

/* RFC 5321 4.5.3.1: path 256 octets, domain 255, local part 64. */
#define MAX_ADDR 256
#define MAX_DOMAIN 256
#define MAX_LOGIN 256
#define MAX_PASSWORD 1024
#define MAX_PATHLEN 1024
#define MAX_LISTEN 16
#define MAX_NAMESERVERS 8
#define MAX_RIGHTS 64 /* sender patterns returned for one login */
#define MAX_RCPT_LIMIT 1000 /* hard cap on limits.recipients */
#define QUEUE_ID_LEN 16 /* lower-case hex characters */
#define MAX_REPLY 512 /* one remote SMTP reply kept for logs/DSN */
#define CLIENT_ADDR_LEN 64 /* textual IPv6 address with room to spare */
#define SMTP_LINE_MAX 1000 /* 998 octets + CRLF (RFC 5321 4.5.3.1.6) */
#define AUTH_LINE_MAX 12288 /* RFC 4954 section 4 */
#define HEADER_SECTION_MAX (256 * 1024)
#define HEADER_FIELDS_MAX 1000

/* ------------------------------------------------------------------ */
/* Configuration (config.c)                                            */

enum tls_listen_mode { LISTEN_STARTTLS, LISTEN_IMPLICIT };
enum log_level { LOG_LVL_DEBUG, LOG_LVL_INFO, LOG_LVL_WARNING, LOG_LVL_ERROR };
enum from_mismatch { FROM_MISMATCH_REJECT, FROM_MISMATCH_ADD_SENDER };
enum relay_mode { RELAY_MX, RELAY_SMARTHOST };
enum relay_tls { RELAY_TLS_OPPORTUNISTIC, RELAY_TLS_REQUIRED };
enum smarthost_tls { SMARTHOST_STARTTLS, SMARTHOST_IMPLICIT, SMARTHOST_NONE };

struct listen_cfg {
	char address[128]; /* as written: "0.0.0.0:587", "[::]:465" */
	struct sockaddr_storage ss;
	socklen_t sslen;
	enum tls_listen_mode tls;
	int fd; /* bound socket, set by the parent; -1 before */
};

struct sender_rule {
	char login[MAX_LOGIN];
	char pattern[MAX_ADDR]; /* "a@dom", "a+*@dom", "@dom" */
};

struct nameserver_cfg {
	char text[128];
	struct sockaddr_storage ss;
	socklen_t sslen;
};

struct config {
	char path[MAX_PATHLEN]; /* the file it was read from */

	char hostname[MAX_DOMAIN];
	char domain[MAX_DOMAIN];
	char user[64];
	char spool[MAX_PATHLEN];

	enum log_level log_level;
	bool log_syslog;

	struct listen_cfg listen[MAX_LISTEN];
	size_t nlisten;

	char tls_certificate[MAX_PATHLEN];
	char tls_key[MAX_PATHLEN];
	int tls_min_version; /* TLS1_2_VERSION or TLS1_3_VERSION */

	char auth_users[MAX_PATHLEN];
	unsigned auth_max_failures;
	time_t auth_cache; /* seconds; 0 = off */

	struct sender_rule *senders; /* heap, nsenders entries */
	size_t nsenders;

	uint64_t message_size;
	unsigned max_recipients;
	unsigned max_sessions;
	unsigned max_sessions_per_ip;
	unsigned messages_per_hour; /* 0 = no limit */

	enum from_mismatch from_mismatch;
	bool remove_bcc;
	bool hide_client_ip;

	enum relay_mode relay_mode;
	enum relay_tls relay_tls;
	char smarthost_host[MAX_DOMAIN];
	uint16_t smarthost_port;
	enum smarthost_tls smarthost_tls;
	char smarthost_username[MAX_LOGIN];
	char smarthost_password_file[MAX_PATHLEN];
	time_t retry_first;
	time_t retry_max;
	time_t retry_give_up;
	unsigned relay_concurrency;
	uint16_t mx_port;

	struct nameserver_cfg nameservers[MAX_NAMESERVERS];
	size_t nnameservers; /* 0: use /etc/resolv.conf */

	/* Derived at load time, not keys of the file. */
	uid_t uid;
	gid_t gid;
};

/*
 * Load and validate FILE into *cfg.  Every problem is reported through
 * report(line, col, message) as "FILE:LINE:COL: message"; returns the
 * number of problems (0 = valid).  With check_files, the files the
 * configuration names are also opened and checked (msa -n).
 */
int config_load(struct config *cfg, const char *file, bool check_files);
void config_free(struct config *cfg);
void config_defaults(struct config *cfg);
/* Value parsers, exported for unit tests.  0 on success, -1 on error. */
int parse_duration(const char *s, time_t *out);
int parse_size(const char *s, uint64_t *out);
int parse_hostport(const char *s, uint16_t default_port,
    struct sockaddr_storage *ss, socklen_t *sslen);

/* ------------------------------------------------------------------ */
/* Logging (log.c)                                                     */

void log_init(enum log_level level, bool to_syslog, const char *procname);
void log_setproc(const char *procname);
void log_debug(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_info(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warnx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_warn(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void log_errorx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
void fatal(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
void fatalx(const char *fmt, ...)
    __attribute__((format(printf, 1, 2), noreturn));
/*
 * Copy an untrusted string into buf for a key=value log line: control
 * characters, spaces, quotes and '=' become '?' so one event stays one line
 * and a value cannot forge another key.  Returns buf.
 */
const char *log_sanitize(char *buf, size_t bufsize, const char *s);

/* ------------------------------------------------------------------ */
/* Utilities (util.c)                                                  */

void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xreallocarray(void *p, size_t n, size_t size);
char *xstrdup(const char *s);
/* Bounded copy; returns strlen(src), truncation if >= size (strlcpy). */
size_t strlcpy_msa(char *dst, const char *src, size_t size);
/* snprintf that treats truncation or error as failure: 0 ok, -1 not. */
int bsnprintf(char *buf, size_t size, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Write all of buf to a blocking descriptor, retrying on EINTR. */
int write_all(int fd, const void *buf, size_t len);
/* Monotonic seconds, for timeouts and rate windows. */
time_t monotime(void);
/* Random lower-case hex string of 2*nbytes characters into out. */
void random_hex(char *out, size_t outsize, size_t nbytes);
/* Textual client address of ss into buf. */
const char *sockaddr_ntop(const struct sockaddr *sa, char *buf, size_t len);

/* A growable byte buffer. */
struct buf {
	char *data;
	size_t len, cap;
};
void buf_init(struct buf *b);
void buf_free(struct buf *b);
void buf_reset(struct buf *b);
void buf_add(struct buf *b, const void *data, size_t len);
void buf_addstr(struct buf *b, const char *s);
void buf_printf(struct buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* ------------------------------------------------------------------ */
/* IPC framing (ipc.c)                                                 */

/*
 * Channels are SOCK_SEQPACKET socketpairs: one frame is one record, so a
 * frame arrives whole or not at all, and at most one descriptor travels
 * with it (SCM_RIGHTS).  A frame is a struct ipc_hdr followed by hdr.len
 * payload bytes.  The receiver checks every payload length against the
 * type's layout before it looks inside.
 */
#define IPC_MAX_PAYLOAD (64 * 1024)

struct ipc_hdr {
	uint32_t type;
	uint32_t len; /* payload bytes after the header */
	uint32_t peerid; /* session id, set by the listener, never trusted */
	uint32_t flags; /* IPC_F_FD: a descriptor was attached */
};
#define IPC_F_FD 0x1

struct ipc_msg {
	struct ipc_hdr hdr;
	int fd; /* -1 if none; the receiver owns it */
	unsigned char *data; /* payload, valid until the next ipc_read */
};

struct ipc_frame; /* queued outgoing frame, private to ipc.c */

struct ipc_chan {
	int fd;
	unsigned char *rbuf; /* one received record */
	size_t rlen; /* its length, 0 if none waiting */
	int rfd; /* descriptor that came with it, or -1 */
	struct ipc_frame *whead, *wtail;
	size_t wcount; /* frames waiting to be sent */
};

/* Make a connected SEQPACKET socketpair, close-on-exec. */
void ipc_socketpair(int sv[2]);
void ipc_init(struct ipc_chan *ch, int fd);
void ipc_close(struct ipc_chan *ch);
/* Queue a frame; the descriptor (if >= 0) is closed once sent. */
void ipc_compose(struct ipc_chan *ch, uint32_t type, uint32_t peerid,
    int fd, const void *data, size_t len);
/* Send what the peer will take: 0 done or would block, -1 peer gone. */
int ipc_flush(struct ipc_chan *ch);
/* Send everything, blocking in poll. -1 if the peer is gone. */
int ipc_flush_all(struct ipc_chan *ch);
/*
 * Receive one frame (non-blocking): 1 and *msg filled (payload valid until
 * the next call on ch), 0 nothing waiting, -1 peer gone, -2 malformed
 * frame (too short, too long, length mismatch): the caller decides
 * whether that peer is trusted.
 */
int ipc_recv(struct ipc_chan *ch, struct ipc_msg *msg);
/* Blocking receive with a timeout in ms (-1: none); 0 means timed out. */
int ipc_wait(struct ipc_chan *ch, struct ipc_msg *msg, int timeout_ms);
bool ipc_write_pending(const struct ipc_chan *ch);

/* A fixed-size string field of a payload is valid only if NUL-terminated. */
#define IPC_STR_OK(field) (memchr((field), '\0', sizeof(field)) != NULL)

enum ipc_type {
	IMSG_NONE = 0,

	/* session -> auth (through the listener) */
	IMSG_AUTH_REQ, /* struct ipc_auth_req */
	IMSG_AUTH_RES, /* struct ipc_auth_res + nrights * char[MAX_ADDR] */
	IMSG_RATE_REQ, /* struct ipc_rate_req: one more message for login? */
	IMSG_RATE_RES, /* struct ipc_rate_res */

	/* session -> queue (through the listener) */
	IMSG_QUEUE_CREATE, /* empty -> IMSG_QUEUE_CREATE_RES + fd */
	IMSG_QUEUE_CREATE_RES, /* struct ipc_queue_created (+ fd if ok) */
	IMSG_QUEUE_COMMIT, /* struct ipc_envelope + nrcpt * ipc_rcpt */
	IMSG_QUEUE_COMMIT_RES, /* struct ipc_queue_committed */
	IMSG_QUEUE_ABORT, /* struct ipc_queue_id: drop an uncommitted file */

	/* listener -> queue: a session ended; drop its uncommitted files */
	IMSG_SESSION_GONE, /* empty, peerid names the session */

	/* parent -> auth: reload the password file (fd attached) */
	IMSG_RELOAD_USERS, /* empty + fd */
	IMSG_SENDERS_RESET, /* empty: forget every sender rule */
	IMSG_SENDERS_ADD, /* struct sender_rule */
	/* parent -> listener: new certificate chain and key (two frames) */
	IMSG_RELOAD_CERT, /* empty + fd of the certificate chain file */
	IMSG_RELOAD_KEY, /* empty + fd of the key file; applies the pair */

	/* queue <-> relay (relay.c) */
	IMSG_RELAY_JOB, /* struct ipc_relay_job + nrcpt * ipc_rcpt, + fd */
	IMSG_RELAY_RESULT, /* struct ipc_relay_result, one per recipient */
	IMSG_RELAY_DONE, /* struct ipc_queue_id: job finished */

	/* msa queue ... <-> queue process, over the control socket */
	IMSG_CTL_LIST, /* empty */
	IMSG_CTL_SHOW, /* struct ipc_queue_id */
	IMSG_CTL_FLUSH, /* struct ipc_queue_id; empty id = all */
	IMSG_CTL_DELETE, /* struct ipc_queue_id */
	IMSG_CTL_TEXT, /* reply: text chunk (not NUL-terminated) */
	IMSG_CTL_END, /* reply: struct ipc_ctl_end */

	IMSG_MAX
};

enum auth_status {
	AUTH_OK,
	AUTH_FAIL, /* unknown user or bad password: same reply */
	AUTH_THROTTLED, /* too many failures from this address */
	AUTH_TEMPFAIL, /* internal problem */
};

struct ipc_auth_req {
	char user[MAX_LOGIN];
	char password[MAX_PASSWORD];
	char client[CLIENT_ADDR_LEN];
};

struct ipc_auth_res {
	int32_t status; /* enum auth_status */
	char login[MAX_LOGIN];
	uint32_t nrights; /* followed by nrights char[MAX_ADDR] patterns */
};

struct ipc_rate_req {
	char login[MAX_LOGIN];
};

struct ipc_rate_res {
	int32_t allowed; /* 1 yes, 0 over messages_per_hour */
};

struct ipc_queue_id {
	char id[QUEUE_ID_LEN + 1];
};

struct ipc_queue_created {
	int32_t status; /* 0 ok, else an errno value */
	char id[QUEUE_ID_LEN + 1];
};

struct ipc_rcpt {
	char addr[MAX_ADDR];
};

struct ipc_envelope {
	char id[QUEUE_ID_LEN + 1];
	char sender[MAX_ADDR]; /* "" = null sender */
	char login[MAX_LOGIN];
	char client[CLIENT_ADDR_LEN];
	char helo[MAX_DOMAIN];
	uint64_t size; /* bytes written to the data file */
	uint32_t body_8bit; /* BODY=8BITMIME was given */
	uint32_t nrcpt; /* followed by nrcpt struct ipc_rcpt */
};

struct ipc_queue_committed {
	int32_t status; /* 0 ok, else an errno value (ENOSPC -> 452) */
	char id[QUEUE_ID_LEN + 1];
};

struct ipc_relay_job {
	char id[QUEUE_ID_LEN + 1];
	char sender[MAX_ADDR];
	char domain[MAX_DOMAIN]; /* all recipients share it (mx mode) */
	uint64_t size;
	uint32_t body_8bit;
	uint32_t nrcpt; /* followed by nrcpt struct ipc_rcpt */
};

enum relay_status { RELAY_OK, RELAY_TEMPFAIL, RELAY_PERMFAIL };

struct ipc_relay_result {
	char id[QUEUE_ID_LEN + 1];
	char rcpt[MAX_ADDR];
	int32_t status; /* enum relay_status */
	char reply[MAX_REPLY]; /* remote reply or local reason */
	char relay[MAX_DOMAIN + 64]; /* "host[addr]:port" or "" */
};

struct ipc_ctl_end {
	int32_t status; /* 0 ok, else an errno value */
};

/* ------------------------------------------------------------------ */
/* Processes (msa.c, proc.c)                                           */

enum proc_role {
	ROLE_PARENT,
	ROLE_LISTENER,
	ROLE_SESSION,
	ROLE_AUTH,
	ROLE_QUEUE,
	ROLE_RELAY,
	ROLE_MAX
};

extern const char *const proc_role_names[ROLE_MAX];

/*
 * The one way into a role's confinement: chroot to dir (NULL: stay),
 * drop to cfg->uid/gid, set no-new-privs and install the role's seccomp
 * filter.  Everything that needs a file must be open before this call.
 */
void proc_confine(const struct config *cfg, enum proc_role role,
    const char *dir);

/* Role entry points: never return. */
void listener_main(struct config *cfg, int parent_fd, int auth_fd,
    int queue_fd) __attribute__((noreturn));
void auth_main(struct config *cfg, int parent_fd, int listener_fd)
    __attribute__((noreturn));
void queue_main(struct config *cfg, int parent_fd, int listener_fd,
    int relay_fd, int control_fd) __attribute__((noreturn));
void relay_main(struct config *cfg, int parent_fd, int queue_fd)
    __attribute__((noreturn));

/* Spool layout, relative to cfg->spool. */
#define SPOOL_QUEUE "queue" /* committed: ID.data and ID.env */
#define SPOOL_TMP "tmp" /* being received: ID */
#define SPOOL_EMPTY "empty" /* root-owned empty chroot for other roles */
#define SPOOL_CONTROL "control.sock"
/* Create the spool with safe modes (root), 0 ok, -1 with a message. */
int spool_prepare(const struct config *cfg, char *err, size_t errlen);

/* ------------------------------------------------------------------ */
/* Sandbox (sandbox.c)                                                 */

/* Install role's seccomp allow-list; fatal if it cannot. */
void sandbox_enter(enum proc_role role);

/* ------------------------------------------------------------------ */
/* TLS (tls.c)                                                         */

struct ssl_ctx_st;
struct ssl_st;
/* Server context from already open PEM descriptors; NULL + err on error. */
struct ssl_ctx_st *tls_server_ctx(const struct config *cfg, int cert_fd,
    int key_fd, char *err, size_t errlen);
/* Check that cert and key files load and match (msa -n). */
int tls_check_files(const char *cert, const char *key, char *err,
    size_t errlen);
/* Initialise OpenSSL and prime its lazy state before any sandbox. */
void tls_prime(void);

/* ------------------------------------------------------------------ */
/* Session (smtp.c)                                                    */

struct session_info {
	int client_fd;
	enum tls_listen_mode tls_mode;
	char client[CLIENT_ADDR_LEN];
	struct ssl_ctx_st *ssl_ctx;
};
void session_main(struct config *cfg, int listener_fd,
    const struct session_info *si) __attribute__((noreturn));

/* ------------------------------------------------------------------ */
/* Authentication (auth.c)                                             */

/* msa passwd [NAME]: returns the exit status. */
int passwd_main(const char *name);
/* Parse a password file from fd: number of problems, each reported. */
int auth_check_users_file(const char *path, char *err, size_t errlen);

/* ------------------------------------------------------------------ */
/* Addresses and policy (addr.c, policy.c)                             */

/* What one login may use as sender: its own address first, then patterns. */
struct login_rights {
	char login[MAX_LOGIN];
	size_t n;
	char patterns[MAX_RIGHTS][MAX_ADDR];
};

/* Does addr match one of the login's rights (exact, "@dom", "l*@dom")? */
bool policy_sender_allowed(const struct login_rights *r, const char *addr);
/* The login's own address: login if it has '@', else login@domain. */
void policy_login_address(const char *login, const char *domain, char *out,
    size_t outlen);

/* Everything policy needs to know about one message. */
struct policy_ctx {
	const struct config *cfg;
	const struct login_rights *rights;
	const char *sender; /* envelope sender, "" for <> */
	const char *client; /* client address */
	const char *helo;
	const char *tls_version; /* "TLSv1.3" or NULL */
	const char *tls_cipher;
	const char *queue_id;
	time_t now;
};

/* BEGIN policy.c declarations (owned by policy.c) */
/*
 * Check and rewrite the header section hdr (lines ending in CRLF, without
 * the empty line that ends it).  On success return 0 and append the new
 * header section, including Received and the closing empty line, to out.
 * On rejection return the SMTP code (553, 554) and put the full reply
 * text ("5.7.1 ...") into reply.
 */
int policy_apply(const struct policy_ctx *pc, const char *hdr, size_t hdrlen,
    struct buf *out, char *reply, size_t replylen);
/* END policy.c declarations */

/* BEGIN addr.c declarations (owned by addr.c) */
/*
 * Parse an SMTP path argument ("<a@b>", "<>", with RFC 5321 syntax) into
 * out without brackets; *rest points at the parameters after it.
 * Returns 0 or -1 on bad syntax.
 */
int addr_parse_path(const char *arg, char *out, size_t outlen,
    const char **rest);
/* END addr.c declarations */

/* ------------------------------------------------------------------ */
/* Control client (control.c)                                          */

int control_main(struct config *cfg, int argc, char **argv);

#endif /* MSA_H */

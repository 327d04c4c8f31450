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
#define MAX_RCPT_LIMIT 200 /* cap on limits.recipients: one commit frame */
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

	bool sandbox_seccomp; /* false only for kernels without seccomp */

	/* Derived at load time, not keys of the file. */
	uid_t uid;
	gid_t gid;
};

/*
 * Load and validate FILE into *cfg.  Every problem is reported as
 * "FILE:LINE:COL: message" through the reporter (config_set_reporter,
 * stderr by default); returns the number of problems (0 = valid).  With
 * check_files, the files the configuration names are also opened and
 * checked (msa -n).
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
/* len decimal digits (1..20, no sign, no overflow) into *out: 0 or -1. */
int parse_u64(const char *s, size_t len, uint64_t *out);
/* Monotonic seconds, for timeouts and rate windows. */
time_t monotime(void);
/* Random lower-case hex string of 2*nbytes characters into out. */
void random_hex(char *out, size_t outsize, size_t nbytes);
/* Textual client address of ss into buf. */
const char *sockaddr_ntop(const struct sockaddr *sa, char *buf, size_t len);

/*
 * Signals for poll loops: sig_catch() installs a recording handler for
 * sigs and returns a descriptor that becomes readable when one arrives;
 * sig_take() reports and clears one; sig_drain() empties the descriptor;
 * sig_close() forgets it all (a forked child that sets up its own).
 */
int sig_catch(const int *sigs, size_t n);
bool sig_take(int sig);
bool sig_pending(int sig);
void sig_drain(void);
void sig_close(void);

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

	/* queue <-> its sync workers (group commit, see the queue.c block) */
	IMSG_QUEUE_SYNC, /* struct ipc_queue_sync (queue.c block) */
	IMSG_QUEUE_SYNC_RES, /* struct ipc_queue_committed */

	/* parent -> listener: a restarted auth or queue process's channel */
	IMSG_PEER_AUTH, /* empty + fd */
	IMSG_PEER_QUEUE, /* empty + fd */

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
/*
 * sandbox.seccomp: false turns the filters off (a kernel without seccomp
 * filtering); every role then says so loudly at start.  Called once by the
 * parent before any fork.
 */
void sandbox_configure(bool seccomp);

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
/*
 * One in-memory handshake against ctx, so the caches OpenSSL builds on a
 * first handshake live in the listener's pages (shared with every forked
 * session) rather than in each session's private copy.  Best effort.
 */
void tls_warm(struct ssl_ctx_st *ctx);

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
/* Check a password file: number of problems, the first in err. */
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

/*
 * One mailbox of an RFC 5322 address list.  addr is the address with
 * comments and folding removed ("local@domain", or a bare local part that
 * the caller may qualify); a quoted local part whose content is a plain
 * dot-atom is unquoted ("\"bob\"@x" -> "bob@x").  The offsets locate the
 * addr-spec in the parsed field body, so a caller can rewrite just those
 * bytes: [start, end) is the whole addr-spec, local_end is just after its
 * local part (where "@domain" goes when bare).
 */
struct addr_mailbox {
	char addr[MAX_ADDR];
	size_t start, end, local_end;
	bool bare; /* no "@domain" */
	bool angle; /* written as <addr-spec> */
	bool grouped; /* member of a "name: ...;" group */
};

struct addr_list {
	struct addr_mailbox *mb; /* heap, n entries */
	size_t n, cap;
	size_t ngroups; /* groups seen, empty ones included */
};

/*
 * Parse the body of an address field (From, To, Cc, ...: everything after
 * the colon, folding CRLFs included, without the final CRLF) into list,
 * which the caller initialises with addr_list_init and frees with
 * addr_list_free.  Tolerates the obsolete forms clients still send (dots
 * in display names, empty members, routes, CFWS around dots).  Returns 0,
 * or -1 with a short reason in err ("unterminated quoted string").
 */
int addr_parse_list(const char *body, size_t len, struct addr_list *list,
    char *err, size_t errlen);
void addr_list_init(struct addr_list *list);
void addr_list_free(struct addr_list *list);
/* END addr.c declarations */

/* BEGIN queue.c declarations (owned by queue.c) */
/*
 * Recipient states, as written in the envelope file:
 *   pending    not yet delivered, retried at next
 *   delivered  a 2xx reply was received
 *   failed     5xx or permanent local failure; a bounce is still owed
 *   expired    retry.give_up passed; a bounce is still owed
 *   bounced    failed or expired and its bounce is queued (or dropped,
 *              for a null sender): nothing more to do
 * A message is removed once no recipient is pending, failed or expired.
 */
enum queue_rcpt_state {
	QRCPT_PENDING,
	QRCPT_DELIVERED,
	QRCPT_FAILED,
	QRCPT_EXPIRED,
	QRCPT_BOUNCED,
};

struct queue_rcpt {
	char addr[MAX_ADDR];
	enum queue_rcpt_state state;
	unsigned attempts;
	time_t next; /* wall clock of the next attempt; 0 = due now */
	time_t last; /* wall clock of the last attempt; 0 = none */
	char reply[MAX_REPLY]; /* last reply or local reason */
	/* Run-time only, never written to the envelope file. */
	uint32_t job; /* relay job it is in flight in, 0 = none */
	bool result; /* the relay answered for it in that job */
};

/*
 * One message's envelope.  On disk (queue/ID.env) it is a line-based text
 * file, each value percent-encoded (bytes outside 0x21..0x7e and '%'
 * become %XX; the empty string is "-", the string "-" is %2D):
 *
 *   msa-envelope 1
 *   id 0123456789abcdef
 *   created 1732900000
 *   sender alice@example.org
 *   login alice
 *   client 192.0.2.1
 *   helo laptop.example.org
 *   size 1532
 *   body_8bit 0
 *   rcpt STATE ATTEMPTS NEXT LAST ADDRESS REPLY     (one per recipient)
 *   end
 */
struct queue_env {
	char id[QUEUE_ID_LEN + 1];
	time_t created; /* wall clock */
	char sender[MAX_ADDR]; /* "" = null sender */
	char login[MAX_LOGIN];
	char client[CLIENT_ADDR_LEN];
	char helo[MAX_DOMAIN];
	uint64_t size;
	bool body_8bit;
	size_t nrcpt;
	struct queue_rcpt *rcpt; /* heap, nrcpt entries */
	size_t rcpt_cap;
};

#define QUEUE_ENV_VERSION 1
#define QUEUE_ENV_MAX (4 * 1024 * 1024) /* largest envelope file read */
#define QUEUE_JOB_MAX_RCPT 100 /* recipients per relay job (RFC 5321 4.5.3.1.8) */

void queue_env_init(struct queue_env *env);
void queue_env_free(struct queue_env *env);
void queue_env_add_rcpt(struct queue_env *env, const char *addr);
const char *queue_rcpt_state_name(enum queue_rcpt_state state);
/* A queue id: exactly QUEUE_ID_LEN lower-case hex digits. */
bool queue_id_valid(const char *s);
/* Serialise env (appended to out). */
void queue_env_format(const struct queue_env *env, struct buf *out);
/* Strict parser: 0, or -1 with the reason in err; env is then empty. */
int queue_env_parse(const char *text, size_t len, struct queue_env *env,
    char *err, size_t errlen);

/*
 * Spool file operations.  They work on descriptors of the spool's queue/
 * and tmp/ directories, so the queue process (chrooted: "/queue", "/tmp")
 * and the unit tests (a mkdtemp spool) call the same code.  Functions
 * returning int give 0 or an errno value.
 */
/* Create tmp/ID for a new message (fresh random id, O_EXCL, 0600). */
int queue_tmp_create(int tmp_fd, int queue_fd, char id[QUEUE_ID_LEN + 1],
    int *fdp);
/*
 * Commit tmp/ID as message env->id: check its size is env->size, fsync it,
 * write tmp/ID.env and fsync it, rename to queue/ID.data then queue/ID.env
 * (the commit point), fsync queue/.  On failure nothing of the message is
 * left, tmp/ID included.  (tmp/ is emptied at every start, so the names it
 * loses need no fsync.)  It is the two steps below for one message.
 */
int queue_commit_files(int tmp_fd, int queue_fd, const struct queue_env *env);

/*
 * Group commit: concurrent commits share the fsync of queue/, and no reply
 * is sent before a message's own data, envelope and names are durable.
 * Step 1, queue_commit_prepare, runs in the queue's sync workers, several
 * messages at once: tmp/ID must be env->size bytes; fsync it; write
 * tmp/ID.env and fsync it.  On failure both tmp files are removed.
 * Step 2, queue_commit_batch, runs in the queue process for every message
 * prepared since the last batch: status[i] is message i's prepare result
 * (0 ok, else an errno value, and that message is skipped); each prepared
 * message is published (queue_commit_publish: tmp/ID -> queue/ID.data,
 * tmp/ID.env -> queue/ID.env, undone if either rename fails), then queue/
 * is fsync'd ONCE for the batch.  On return status[i] is 0 only if message
 * i is durable (reply 250); a failure of one message leaves the others
 * alone, but if the fsync of queue/ fails nobody knows which names reached
 * the disk, so every message published in the batch is unpublished
 * (queue/ID.env, then queue/ID.data removed) and gets that error.  Returns
 * how many messages were committed.
 */
int queue_commit_prepare(int tmp_fd, const struct queue_env *env);
int queue_commit_publish(int tmp_fd, int queue_fd, const char *id);
void queue_commit_unpublish(int queue_fd, const char *id);
size_t queue_commit_batch(int tmp_fd, int queue_fd,
    const struct queue_env *const *env, int *status, size_t n);

/*
 * The sync workers: QUEUE_SYNC_WORKERS processes forked by the queue
 * process before its confinement, each confined like it (chroot into the
 * spool, uid msa, the queue's seccomp filter), each dying with it
 * (PR_SET_PDEATHSIG).  They speak ipc.c framing with these two private
 * types, one request at a time, hdr.peerid a ticket of the queue's choice:
 *   IMSG_QUEUE_SYNC      struct ipc_queue_sync, then the IMSG_QUEUE_COMMIT
 *                        payload (struct ipc_envelope + nrcpt ipc_rcpt)
 *   IMSG_QUEUE_SYNC_RES  struct ipc_queue_committed: queue_commit_prepare's
 *                        result for that id
 */
/*
 * Two workers: on the reference machine (virtio ext4, fsync ~0.3 ms) four
 * were no faster than two, and each costs ~170 KiB of private memory; on
 * storage with slow cache flushes (SD cards, eMMC) more workers put more
 * messages into each journal commit.
 */
#define QUEUE_SYNC_WORKERS 2
#define QUEUE_BATCH_MAX 64 /* messages published per fsync of queue/ */
struct ipc_queue_sync {
	int64_t created; /* wall clock the envelope records */
};
/* Replace queue/ID.env crash-safely (tmp/ID.env, fsync, rename, fsync). */
int queue_env_store(int tmp_fd, int queue_fd, const struct queue_env *env);
/* Read and parse queue/ID.env; -1 with the reason in err. */
int queue_env_load(int queue_fd, const char *id, struct queue_env *env,
    char *err, size_t errlen);
/* Remove queue/ID.data then queue/ID.env, fsync queue/. */
int queue_remove_files(int queue_fd, const char *id);
/*
 * Start-up recovery: empty tmp/, remove queue/ID.data without ID.env (or
 * ID.bad), ID.env without ID.data and stray temporary files, move corrupt
 * envelopes aside to ID.bad, and call cb for every loaded envelope (cb
 * takes ownership of *env).  Returns the number of messages loaded.
 */
size_t queue_spool_recover(int tmp_fd, int queue_fd,
    void (*cb)(struct queue_env *env, void *arg), void *arg);

/*
 * Retry delay after the attempts-th failed attempt (1 = the first):
 * first * 2^(attempts-1), capped at max, then moved by jitter_permille
 * (-100..100 = +-10%).  Never below one second.
 */
time_t queue_backoff(time_t first, time_t max, unsigned attempts,
    int jitter_permille);
/*
 * When to retry a recipient of a message queued at created after its
 * attempts-th temporary failure at now: now + queue_backoff(), but never
 * after created + retry.give_up; 0 once give_up is reached (it expires).
 */
time_t queue_retry_time(const struct config *cfg, time_t created,
    unsigned attempts, time_t now, int jitter_permille);
/*
 * Pick the next relay job of env: the first pending recipient that is due
 * (next <= now) and not in flight, and with by_domain every other such
 * recipient of the same domain (case-insensitive), without by_domain
 * (smarthost) every such recipient; at most maxn.  Their indexes go to idx
 * (room for maxn), the domain ("" without by_domain) to domain.  Returns
 * how many (0: nothing due).
 */
size_t queue_next_group(const struct queue_env *env, bool by_domain,
    time_t now, size_t maxn, size_t *idx, char *domain, size_t domainlen);
/* Domain part of an address (after the last '@'), "" if none. */
const char *queue_addr_domain(const char *addr);

/*
 * Relay protocol convention: IMSG_RELAY_JOB carries a job number in
 * hdr.peerid; the relay copies it into the hdr.peerid of every
 * IMSG_RELAY_RESULT and the IMSG_RELAY_DONE of that job, so two jobs of
 * one message (two domains) in flight at once are told apart.
 */
/* END queue.c declarations */

/* BEGIN bounce.c declarations (owned by queue.c's author) */
struct bounce_rcpt {
	const char *addr;
	const char *status; /* DSN status, "5.1.1" */
	const char *reply; /* for Diagnostic-Code */
	time_t last_attempt; /* 0: unknown, Last-Attempt-Date left out */
	bool expired; /* retry.give_up reached rather than a 5xx */
	unsigned attempts;
};

struct bounce_ctx {
	const char *hostname; /* Reporting-MTA, From, Message-ID */
	const char *orig_id; /* queue id of the failed message */
	const char *orig_sender; /* the bounce's recipient */
	time_t arrival; /* when the failed message was queued */
	time_t now;
	const char *token; /* unique: Message-ID and MIME boundary */
	const char *headers; /* original header section (CRLF lines) */
	size_t headerslen;
};

/*
 * DSN status of a failed recipient: the reply's enhanced status code if it
 * is a 5.x.y, else 5.0.0; 4.4.7 if it expired (retry.give_up).
 */
void bounce_status(const char *reply, bool expired, char *out, size_t outlen);
/* The RFC 3464 report as a message with CRLF lines, appended to out. */
void bounce_build(const struct bounce_ctx *bc, const struct bounce_rcpt *r,
    size_t n, struct buf *out);
/* Header section of the message on fd (up to the empty line, at most max
 * bytes, whole lines only), appended to out.  0 or an errno value. */
int bounce_read_headers(int fd, size_t max, struct buf *out);
/*
 * Queue the bounce of orig for its recipients in state failed or expired:
 * reads queue/ID.data's headers, writes and commits a new message from <>
 * to orig->sender; *bounce (initialised by the caller) receives its
 * envelope.  0 or an errno value.  The caller marks the recipients
 * bounced.
 */
int bounce_queue(int tmp_fd, int queue_fd, const char *hostname,
    const struct queue_env *orig, time_t now, struct queue_env *bounce);
/* END bounce.c declarations */

/* BEGIN control.c declarations (owned by control.c) */
/*
 * msa [-c FILE] queue list | show ID | flush [ID] | delete ID.
 * argv holds the words after "queue" (a leading "queue" is skipped too).
 * Returns the exit status: 0 ok, 1 usage or unknown id, 2 the daemon
 * cannot be reached.
 */
/* END control.c declarations */

/* BEGIN smtp.c declarations (owned by smtp.c) */
/*
 * The parsers of the session, exported for unit tests.  Each returns 0 or
 * the SMTP reply code, with the rest of the reply ("5.1.7 ...") in reply.
 */
/* Canonical verb of a command line ("MAIL"), NULL if unknown; *arg is
 * what follows the verb and its spaces ("" if nothing). */
const char *smtp_command_lookup(const char *line, const char **arg);
/* An EHLO/HELO argument we are willing to put into a Received header. */
bool smtp_valid_helo(const char *name);

struct smtp_mail_args {
	char addr[MAX_ADDR]; /* qualified; "" for the null sender */
	uint64_t size; /* SIZE=, 0 if not given */
	bool body_8bit; /* BODY=8BITMIME */
};
/* Argument of MAIL ("FROM:<a@b> SIZE=10 BODY=8BITMIME"). */
int smtp_parse_mail(const char *arg, const char *domain, uint64_t maxsize,
    struct smtp_mail_args *m, char *reply, size_t replylen);
/* Argument of RCPT ("TO:<a@b>"); a bare local part gets @domain. */
int smtp_parse_rcpt(const char *arg, const char *domain, char *out,
    size_t outlen, char *reply, size_t replylen);

/* Strict base64 (RFC 4648, padded): decoded length or -1. */
ssize_t smtp_b64_decode(const char *in, unsigned char *out, size_t outlen);
/* An AUTH response: "=" is the empty one (RFC 4954 4), else base64. */
ssize_t smtp_auth_decode(const char *in, unsigned char *out, size_t outlen);
/* AUTH PLAIN response -> user, password: 0, 501 (bad base64 or layout)
 * or 535 (authzid not the user, fields too long). */
int smtp_auth_plain_parse(const char *b64, char *user, size_t userlen,
    char *pass, size_t passlen);
/* One AUTH LOGIN response: 0, 501 (bad base64, NUL) or 535 (too long). */
int smtp_auth_login_parse(const char *b64, char *out, size_t outlen);

/*
 * The DATA reader: a byte-level state machine fed with whatever the client
 * sent.  It ends only at CR LF . CR LF (the DATA command's own CR LF counts
 * as the first), removes the dot-stuffing at the start of lines, buffers
 * the header section (up to the first empty line, which it does not pass
 * on) for header_cb, and streams the body to body_cb through out[].  Any
 * problem sets a flag; once a flag is set nothing more is passed on, but
 * reading goes on to the real end.  A callback returning -1 sets
 * SMTP_DATA_SINK.
 */
#define SMTP_DATA_BARE_EOL 0x01 /* bare CR or bare LF somewhere */
#define SMTP_DATA_TOO_BIG 0x02 /* over maxsize after unstuffing */
#define SMTP_DATA_LONG_LINE 0x04 /* a line over 998 octets */
#define SMTP_DATA_HDR_TOO_BIG 0x08 /* header section over HEADER_SECTION_MAX */
#define SMTP_DATA_HDR_NUL 0x10 /* NUL in the header section */
#define SMTP_DATA_SINK 0x20 /* a callback refused: its owner knows why */
#define SMTP_DATA_OUTBUF 8192

typedef int (*smtp_data_cb)(void *arg, const char *p, size_t len);

struct smtp_data {
	int state; /* private to smtp.c */
	bool done; /* the end of data was consumed */
	bool in_header;
	unsigned flags; /* SMTP_DATA_* */
	size_t linelen; /* octets of the current line, unstuffed */
	uint64_t size; /* content octets after unstuffing */
	uint64_t maxsize;
	struct buf hdr; /* the header section being collected */
	smtp_data_cb header_cb; /* once, with the whole header section */
	smtp_data_cb body_cb; /* the body, in pieces */
	void *arg;
	size_t outlen;
	char out[SMTP_DATA_OUTBUF];
};
void smtp_data_init(struct smtp_data *d, uint64_t maxsize,
    smtp_data_cb header_cb, smtp_data_cb body_cb, void *arg);
/* Consume up to len octets; returns how many (less than len only once
 * d->done: the rest belongs to the next command). */
size_t smtp_data_feed(struct smtp_data *d, const char *in, size_t len);
/* The reply owed for d's flags: 0 (none, or only SINK) or the code, with
 * the text into reply. */
int smtp_data_verdict(const struct smtp_data *d, char *reply,
    size_t replylen);
void smtp_data_free(struct smtp_data *d);
/* END smtp.c declarations */

/* BEGIN auth.c declarations (owned by auth.c) */
/*
 * The auth process opens and reads auth.users itself, before its chroot;
 * the parent sends IMSG_RELOAD_USERS (with a fresh descriptor) on SIGHUP.
 *
 * Password file: one "name:hash" per line; a line whose first non-blank
 * character is '#' is a comment, blank lines are allowed, a CR before the
 * LF is ignored.  name: 1 to MAX_LOGIN-1 bytes, no ':', whitespace or
 * control characters.  hash: "$2a$", "$2b$" or "$2y$", a two-digit cost
 * 04..31, '$', then 53 characters of bcrypt's alphabet [./A-Za-z0-9] with
 * canonical padding bits (60 characters in all).  A name may appear once.
 * At most AUTH_MAX_USERS users in at most AUTH_MAX_FILE bytes.
 *
 * Problems are reported as "LINE:COL: message" (both 1-based, COL counts
 * bytes); the caller prefixes "FILE:".  A problem with the file as a whole
 * (cannot open or read it, larger than AUTH_MAX_FILE) is "0:0: message".
 * auth_check_users_file() (declared above) opens path, returns the number
 * of problems (0 = valid) and leaves the first one in err in that format.
 */
#include <stdio.h>

#define AUTH_MAX_USERS 10000
#define AUTH_MAX_FILE (1024 * 1024)
#define AUTH_MAX_PROBLEMS 100 /* parsing stops after so many */
#define AUTH_HASH_LEN 60 /* "$2b$12$" + 22 salt + 31 hash characters */
#define AUTH_DEFAULT_COST 12 /* msa passwd, and the dummy hash */
#define AUTH_FAIL_WINDOW (15 * 60) /* auth.max_failures per this */
#define AUTH_RATE_WINDOW (60 * 60) /* limits.messages_per_hour */
#define AUTH_MAX_CLIENTS 4096 /* client addresses the throttle tracks */

struct auth_users; /* a parsed password file */

/* Receives each problem; line and col are 0 for the file as a whole. */
typedef void auth_report_fn(void *arg, unsigned line, unsigned col,
    const char *msg);

/*
 * Parse a password file image.  Returns the number of problems, each
 * passed to report (may be NULL).  With no problem and out non-NULL, *out
 * is the new table (free it with auth_users_free); otherwise *out is left
 * alone.  auth_users_read_fd reads fd to its end first (msa -n can use
 * it to print every problem; the reload path uses it).
 */
int auth_users_parse(const char *data, size_t len, struct auth_users **out,
    auth_report_fn *report, void *arg);
int auth_users_read_fd(int fd, struct auth_users **out,
    auth_report_fn *report, void *arg);
void auth_users_free(struct auth_users *u);
size_t auth_users_count(const struct auth_users *u);
/* The stored hash of name, NULL if there is no such user. */
const char *auth_users_hash(const struct auth_users *u, const char *name);
/* The cost most users have (ties: the higher); unknown users cost that. */
int auth_users_dummy_cost(const struct auth_users *u);

/* bcrypt ($2b$) hash of password with the given cost: 0 ok, -1 error. */
int auth_hash_password(const char *password, unsigned cost, char *out,
    size_t outlen);
/*
 * Check user/password against u (NULL: no users).  An unknown user is
 * checked against dummy (a full bcrypt hash, its cost replaced by
 * auth_users_dummy_cost) so that it takes the time of a wrong password.
 * Returns AUTH_OK, AUTH_FAIL or AUTH_TEMPFAIL (libxcrypt failed).
 * Stateless: auth_setting() then auth_check_hash(), the two halves the
 * auth process runs in itself and in a verifier.
 */
enum auth_status auth_verify(const struct auth_users *u, const char *dummy,
    const char *user, const char *password);
/*
 * The bcrypt setting user is checked against, into setting: the user's
 * hash, or dummy with auth_users_dummy_cost(u) for an unknown user.
 * Returns 1 (a user), 0 (unknown: the answer is AUTH_FAIL whatever the
 * check says) or -1 (dummy is not a 60-character hash).
 */
int auth_setting(const struct auth_users *u, const char *dummy,
    const char *user, char setting[AUTH_HASH_LEN + 1]);
/* crypt_rn(password, setting) compared in constant time: AUTH_OK if it
 * matches, AUTH_FAIL if not, AUTH_TEMPFAIL if libxcrypt failed. */
enum auth_status auth_check_hash(const char *setting, const char *password);
/* The login's own address first, then each senders: pattern for it. */
void auth_login_rights(const struct sender_rule *rules, size_t nrules,
    const char *domain, const char *login, struct login_rights *out);

/*
 * Sliding-window event counters per key (client address, login), with
 * a resolution of 1/60 of the window and at most max_keys keys; a new key
 * in a full table replaces the one with the oldest event (an expired one
 * when there is any).  now is monotime() or a test's clock.
 */
struct auth_window;
struct auth_window *auth_window_new(time_t span, size_t max_keys);
void auth_window_free(struct auth_window *w);
size_t auth_window_keys(const struct auth_window *w);
unsigned auth_window_count(const struct auth_window *w, const char *key,
    time_t now);
void auth_window_add(struct auth_window *w, const char *key, time_t now);
/* max_failures failures within AUTH_FAIL_WINDOW block a client (0: never). */
bool auth_throttled(const struct auth_window *fails, unsigned max_failures,
    const char *client, time_t now);
/* One more message for login?  true reserves it (per_hour 0: no limit). */
bool auth_rate_take(struct auth_window *sent, unsigned per_hour,
    const char *login, time_t now);

/*
 * msa passwd, from a stream: the first line (CR/LF stripped) is the
 * password, a second line if present must match.  0 ok, -1 with a message
 * in err.  auth_passwd_run reads in (NULL: ask twice on /dev/tty without
 * echo), hashes with cost and prints "NAME:HASH" (or just HASH) to out;
 * returns the exit status (1 bad input, 2 hashing or output failed).
 */
int auth_read_password(FILE *in, char *pw, size_t pwsize, char *err,
    size_t errlen);
int auth_passwd_run(const char *name, FILE *in, FILE *out, unsigned cost);

/*
 * Verifier pool.  A bcrypt check is the whole cost of a login, so the
 * auth process forks one verifier process per usable CPU (AUTH_POOL_MIN
 * to AUTH_POOL_MAX) before it confines itself; each verifier confines
 * itself the same way (ROLE_AUTH) and only runs auth_check_hash() on the
 * jobs it is sent.  Processes rather than threads: a seccomp filter and
 * no-new-privs bind only the thread that installs them, so every thread
 * would have to be filtered as well; a verifier also never holds the
 * password file, the throttle state or the cache key.
 *
 * On a verifier's private channel IMSG_AUTH_REQ carries a struct
 * auth_verify_job and IMSG_AUTH_RES a struct auth_verify_res; hdr.peerid
 * is the job's number.  One job at a time per verifier.
 */
#include <poll.h>

#define AUTH_POOL_MIN 2
#define AUTH_POOL_MAX 8
#define AUTH_MAX_PENDING 1024 /* AUTH requests waiting or in a verifier */

struct auth_verify_job {
	char setting[AUTH_HASH_LEN + 1];
	char password[MAX_PASSWORD];
};

struct auth_verify_res {
	int32_t status; /* auth_check_hash()'s answer */
};

struct auth_pool;
typedef void auth_pool_done_fn(void *arg, uint32_t id,
    enum auth_status status);

/* Online CPUs (within this process's affinity mask), clamped 2..8. */
size_t auth_pool_size(void);
/*
 * Fork n verifiers (at most AUTH_POOL_MAX).  In each child the other
 * verifiers' channels are closed, then setup(arg) runs (close what else
 * the child must not hold, confine it; NULL: nothing), then the child
 * serves jobs until its channel closes.
 */
struct auth_pool *auth_pool_new(size_t n, void (*setup)(void *),
    void *arg);
/* Close every channel and wait for the verifiers (not in a sandbox). */
void auth_pool_free(struct auth_pool *p);
size_t auth_pool_alive(const struct auth_pool *p);
size_t auth_pool_idle(const struct auth_pool *p);
/* Verifier i's process id (tests), -1 out of range. */
pid_t auth_pool_pid(const struct auth_pool *p, size_t i);
/* Hand (setting, password) to an idle verifier as job id (not 0):
 * 0, or -1 if no verifier is idle. */
int auth_pool_submit(struct auth_pool *p, uint32_t id, const char *setting,
    const char *password);
/* One POLLIN entry per verifier into pfd (room for AUTH_POOL_MAX; a
 * dead verifier's fd is -1); returns how many. */
size_t auth_pool_pollfds(const struct auth_pool *p, struct pollfd *pfd);
/*
 * After poll: read the verifiers' answers and call done for each
 * finished job.  A verifier that dies or talks nonsense is dropped and
 * its job finishes with AUTH_TEMPFAIL.
 */
void auth_pool_input(struct auth_pool *p, const struct pollfd *pfd,
    auth_pool_done_fn *done, void *arg);

/*
 * Verification cache (auth.cache): after a successful bcrypt check,
 * HMAC-SHA256(key, login || 0x00 || password) is kept until now + ttl, so
 * the same pair skips bcrypt until then.  The key is random, made when
 * the cache is (and again at each reset); entries are never refreshed by
 * a hit.  At most max entries: a new one replaces an expired entry, else
 * the oldest.  Times are monotonic milliseconds (auth_now_ms()).
 */
#define AUTH_CACHE_MAX 1024

struct auth_cache;
/* NULL if OpenSSL cannot make the key or the MAC (logged). */
struct auth_cache *auth_cache_new(size_t max);
void auth_cache_free(struct auth_cache *c);
bool auth_cache_check(const struct auth_cache *c, const char *login,
    const char *password, int64_t now);
void auth_cache_add(struct auth_cache *c, const char *login,
    const char *password, int64_t now, int64_t ttl);
/* Forget every entry and change the key. */
void auth_cache_reset(struct auth_cache *c);
/* Entries still valid at now. */
size_t auth_cache_count(const struct auth_cache *c, int64_t now);
int64_t auth_now_ms(void);

/*
 * The auth process after its set-up: auth_main() is
 * auth_serve(cfg, parent_fd, listener_fd, "<spool>/empty").  root NULL
 * leaves the process and its verifiers unconfined (unit tests).
 */
void auth_serve(struct config *cfg, int parent_fd, int listener_fd,
    const char *root) __attribute__((noreturn));
/* END auth.c declarations */

/* BEGIN tls.c declarations (owned by tls.c) */
/*
 * The established connection, for logs and the Received header: protocol
 * ("TLSv1.3"), cipher ("TLS_AES_256_GCM_SHA384"), its strength in bits and
 * whether a session ticket resumed it.  The strings are OpenSSL's static
 * ones ("none" without a connection), valid for the life of the process.
 */
const char *tls_conn_version(const struct ssl_st *ssl);
const char *tls_conn_cipher(const struct ssl_st *ssl);
int tls_conn_bits(const struct ssl_st *ssl);
bool tls_conn_resumed(const struct ssl_st *ssl);
/* "tls=TLSv1.3 cipher=... bits=256 resumed=no" into buf, for log lines. */
const char *tls_conn_describe(const struct ssl_st *ssl, char *buf,
    size_t len);
/*
 * Empty OpenSSL's error queue of this process and put its last entry into
 * buf as "library: reason" ("SSL routines: wrong version number"), for a
 * log line or a reply.  Returns buf.
 */
const char *tls_error(char *buf, size_t len);
/* END tls.c declarations */

/* BEGIN sandbox.c declarations (owned by sandbox.c) */
/*
 * Number of distinct syscalls the role's filter allows (0 for the parent,
 * which has none), for tests and the hardening figures.
 */
int sandbox_syscall_count(enum proc_role role);
/* "session", "relay" ...; "unknown" out of range. */
const char *sandbox_role_name(enum proc_role role);
/* END sandbox.c declarations */

/* BEGIN config.c declarations (owned by config.c) */
/*
 * Where config_load sends each problem, one "FILE:LINE:COL: message"
 * line without a newline (unit tests capture them).  NULL restores the
 * default, which writes the line and "\n" to stderr in one write.
 */
void config_set_reporter(void (*fn)(const char *line));
/* END config.c declarations */

/* BEGIN dns.c declarations (owned by dns.c) */
#define DNS_MAX_MX 16
#define DNS_MAX_ADDRS 16

enum dns_status {
	DNS_OK, /* records found */
	DNS_NODATA, /* the name exists, no record of that type */
	DNS_TEMPFAIL, /* SERVFAIL, REFUSED, timeout...: try again later */
	DNS_PERMFAIL, /* NXDOMAIN, bad name, null MX: it never works */
};

struct dns_mx {
	uint16_t pref;
	char host[MAX_DOMAIN]; /* no trailing dot */
};

struct dns_mx_list {
	size_t n;
	bool implicit; /* no MX records: the domain itself, preference 0 */
	struct dns_mx mx[DNS_MAX_MX]; /* in the order to try them */
};

struct dns_addr_list {
	size_t n;
	struct sockaddr_storage ss[DNS_MAX_ADDRS]; /* port filled in */
	socklen_t sslen[DNS_MAX_ADDRS];
};

/*
 * Before confinement: initialise c-ares and remember the nameservers
 * (cfg->nameservers, else /etc/resolv.conf read now).  0, or -1 + err.
 */
int dns_init(const struct config *cfg, char *err, size_t errlen);
/* Total time one lookup may take, in ms (default 10 s; for tests). */
void dns_set_timeout(int ms);
/* Drop this process's resolver channel (a new one is made on next use). */
void dns_reset(void);
/*
 * MX hosts of domain in the order to try them: lowest preference first,
 * random among equals; no MX -> the domain itself (implicit); null MX or
 * NXDOMAIN -> DNS_PERMFAIL; SERVFAIL, timeout -> DNS_TEMPFAIL.  An address
 * literal domain ("[192.0.2.1]") is its own host.  err says why.
 */
enum dns_status dns_mx(const char *domain, struct dns_mx_list *out,
    char *err, size_t errlen);
/*
 * IPv6 and IPv4 addresses of host (AAAA and A queried together),
 * interleaved IPv6 first, with port set.  A numeric host is not looked up.
 * DNS_NODATA: the name exists without addresses.
 */
enum dns_status dns_addrs(const char *host, uint16_t port,
    struct dns_addr_list *out, char *err, size_t errlen);

/* Pure functions, for unit tests and fuzzing. */
enum dns_status dns_status_from_ares(int ares_status);
bool dns_is_null_mx(const struct dns_mx *mx, size_t n);
void dns_mx_sort(struct dns_mx *mx, size_t n);
/*
 * The MX rules applied to a raw DNS answer (abuf, alen) that came with
 * c-ares status ares_status; out as for dns_mx().
 */
enum dns_status dns_mx_from_answer(int ares_status, const unsigned char *abuf,
    size_t alen, const char *domain, struct dns_mx_list *out, char *err,
    size_t errlen);
/* Append the addresses of a raw A (family AF_INET) or AAAA answer. */
enum dns_status dns_addrs_from_answer(int ares_status, int family,
    const unsigned char *abuf, size_t alen, uint16_t port,
    struct dns_addr_list *out);
/* "192.0.2.1", "::1", "[192.0.2.1]", "[IPv6:::1]" -> one address. */
bool dns_parse_literal(const char *host, uint16_t port,
    struct dns_addr_list *out);
void dns_addrs_interleave(const struct dns_addr_list *v6,
    const struct dns_addr_list *v4, struct dns_addr_list *out);
/* END dns.c declarations */

/* BEGIN relay.c declarations (owned by relay.c) */
/*
 * The reply of an IMSG_RELAY_RESULT is either the remote server's reply
 * ("550 5.1.1 <bob@example.org>: no such user"; the lines of a multiline
 * reply joined by spaces) or a local reason that starts with an enhanced
 * status code ("4.4.1 connect to mx.example.org[192.0.2.1]:25: Connection
 * refused", "5.1.10 example.org does not accept mail (null MX)").  Every
 * IMSG_RELAY_RESULT and the IMSG_RELAY_DONE of a job carry the job's
 * hdr.peerid.
 */

/* Client timeouts in ms; RFC 5321 4.5.3.2 values by default. */
struct relay_timeouts {
	int connect; /* 30 s */
	int greeting; /* 5 min */
	int ehlo; /* EHLO, STARTTLS, TLS handshake, AUTH: 5 min */
	int mail; /* 5 min */
	int rcpt; /* 5 min */
	int data_init; /* 2 min */
	int data_block; /* 3 min per write that makes no progress */
	int data_final; /* 10 min */
	int quit; /* 10 s */
};
extern const struct relay_timeouts relay_default_timeouts;

/* What deliveries need besides the job; built before confinement. */
struct relay_env {
	const struct config *cfg;
	struct ssl_ctx_st *ssl_ctx; /* client context; NULL: no TLS */
	const char *password; /* smarthost password; NULL if unreadable */
	struct relay_timeouts to;
};

/* Client context: TLS 1.2 minimum, no handshake failure on bad certs. */
struct ssl_ctx_st *relay_client_ctx(char *err, size_t errlen);
/* Load a CA bundle file into ctx's store now (never lazily). */
int relay_load_ca(struct ssl_ctx_st *ctx, const char *file, char *err,
    size_t errlen);
/*
 * Deliver one job (blocking, timeouts from env): results[i] (room for
 * job->nrcpt) gets recipient i's one result, and each gets one
 * "event=delivery" log line.
 */
void relay_deliver(const struct relay_env *env,
    const struct ipc_relay_job *job, const struct ipc_rcpt *rcpts,
    int data_fd, struct ipc_relay_result *results);
/* Check an IMSG_RELAY_JOB payload: 0 with *job and *rcpts, or -1 + err. */
int relay_job_parse(const void *data, size_t len, struct ipc_relay_job *job,
    const struct ipc_rcpt **rcpts, char *err, size_t errlen);

/*
 * Connection reuse.  A worker keeps the session its last job left open
 * (struct relay_cache, with the last TLS session for resumption); the
 * next job to the same destination runs over it (RSET pipelined with
 * MAIL, RCPT and DATA) and, if it turns out dead before any recipient was
 * accepted, over a new connection as if none had been kept.
 * relay_deliver() is relay_deliver_cached() without a cache.
 */
#define RELAY_KEY_MAX (MAX_DOMAIN + 80)
#define RELAY_IDLE_SECS 5 /* an idle worker with a session is kept so long */
struct relay_cache;
struct relay_cache *relay_cache_new(void);
/* Close the kept connection (QUIT first if quit) and free everything. */
void relay_cache_free(struct relay_cache *k, bool quit);
void relay_cache_drop(struct relay_cache *k, bool quit);
bool relay_cache_open(const struct relay_cache *k);
/* The destination key of the kept connection, "" if none. */
const char *relay_cache_key(const struct relay_cache *k);
/* Its descriptor (to poll while idle), -1 if none. */
int relay_cache_fd(const struct relay_cache *k);
/* The server spoke or closed while idle: true if still usable. */
bool relay_cache_check(struct relay_cache *k);
void relay_deliver_cached(const struct relay_env *env,
    struct relay_cache *cache, const struct ipc_relay_job *job,
    const struct ipc_rcpt *rcpts, int data_fd,
    struct ipc_relay_result *results);
/*
 * Where a job goes, as the key idle sessions are kept under:
 * "smarthost:HOST:PORT" in smarthost mode, "mx:" and the recipient domain
 * (lower case, no trailing dot) in mx mode.
 */
void relay_dest_key(const struct config *cfg,
    const struct ipc_relay_job *job, char *out, size_t outlen);

/*
 * Between the relay process and its workers (their private socketpair),
 * IMSG_RELAY_DONE carries this instead of struct ipc_queue_id; the relay
 * process forwards a plain ipc_queue_id to the queue.  idle 1: the worker
 * keeps a session to the job's destination and waits for another job
 * (IMSG_RELAY_JOB + descriptor on the same socketpair) until the relay
 * process closes the socketpair; idle 0: it exits.
 */
struct relay_worker_done {
	char id[QUEUE_ID_LEN + 1];
	uint32_t idle;
};

/* Worker slots of the relay process, and which one takes a job. */
enum relay_slot_state { RELAY_SLOT_FREE, RELAY_SLOT_BUSY, RELAY_SLOT_IDLE };
struct relay_slot {
	enum relay_slot_state state;
	char key[RELAY_KEY_MAX]; /* destination of its jobs */
	time_t since; /* monotime(): BUSY since / IDLE since */
};
enum relay_pick {
	RELAY_PICK_NONE, /* max_busy workers busy already: refuse */
	RELAY_PICK_IDLE, /* hand it to the idle worker of the same key */
	RELAY_PICK_FREE, /* fork a worker into a free slot */
	RELAY_PICK_EVICT, /* retire the idle worker unused the longest, fork */
};
enum relay_pick relay_pick_slot(const struct relay_slot *slots, size_t n,
    unsigned max_busy, const char *key, size_t *idx);
/* An IDLE slot whose RELAY_IDLE_SECS have passed at now. */
bool relay_slot_expired(const struct relay_slot *s, time_t now);
/*
 * The relay builds its TLS client context and CA store only when a
 * delivery may use TLS, before forking the worker, and frees them once no
 * worker has existed for RELAY_TLS_IDLE_SECS.  relay_tls_release_due()
 * says when: false (and *last_use = now) while a slot is in use.
 */
#define RELAY_TLS_IDLE_SECS 60
bool relay_tls_release_due(const struct relay_slot *slots, size_t n,
    time_t *last_use, time_t now);

/* One SMTP reply, fed line by line. */
#define RELAY_REPLY_MAXLINES 100
struct relay_reply {
	int code;
	bool done;
	char enh[16]; /* enhanced status code ("5.1.1"), "" if none */
	char text[MAX_REPLY]; /* "550 5.1.1 text", lines joined by spaces */
	char lines[4096]; /* each line's text after the code, '\n' ended */
	size_t nlines;
};
void relay_reply_init(struct relay_reply *r);
/*
 * Feed one line (without CRLF): 1 the reply is complete, 0 more lines
 * follow, -1 malformed (no code, codes differ, too long, too many lines).
 */
int relay_reply_feed(struct relay_reply *r, const char *line, size_t len);

/* What an EHLO reply offers. */
struct relay_caps {
	bool pipelining, starttls, eightbitmime, enhanced, smtputf8;
	bool auth_plain, auth_login;
	bool size; /* SIZE advertised */
	uint64_t size_max; /* its limit, 0 = none given */
};
void relay_ehlo_parse(const struct relay_reply *r, struct relay_caps *caps);
/*
 * Dot-stuff len bytes of in into out (room for 2 * len): a '.' that
 * starts a line is doubled.  *bol says "at the start of a line" and
 * carries across calls (start with true).  Returns the bytes written.
 */
size_t relay_dotstuff(bool *bol, const char *in, size_t len, char *out);
/* END relay.c declarations */

/* ------------------------------------------------------------------ */
/* Control client (control.c)                                          */

int control_main(struct config *cfg, int argc, char **argv);

#endif /* MSA_H */

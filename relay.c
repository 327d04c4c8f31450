/*
 * relay.c - outbound delivery: the relay process and its SMTP client.
 *
 * The relay is the only process with outbound network access and DNS.  It
 * gets a job from the queue (envelope, recipients of one domain, and a
 * read-only descriptor of the message), delivers it and answers one
 * IMSG_RELAY_RESULT per recipient, then IMSG_RELAY_DONE.  It never sees the
 * spool otherwise.
 *
 * Layout: relay_main() loads what needs files (smarthost password,
 * nameservers; the CA bundle is only opened, and read when TLS is first
 * needed: relay_tls_ensure), confines itself in <spool>/empty and then
 * forks workers.  A worker does blocking I/O with poll timeouts and
 * reports its results over a socketpair in the usual framing; the main
 * process checks them (a worker talks to the network, so it is trusted
 * less than the queue), forwards them, and makes up TEMPFAIL results for
 * a worker that dies before it has answered for every recipient.
 *
 * Inside a worker, relay_deliver_cached() walks the MX hosts (or the
 * smarthost) and their addresses; one connection is a session (greeting,
 * EHLO, STARTTLS, AUTH) followed by transactions (RSET, MAIL, RCPT...,
 * DATA).  Connection reuse: a worker that ends a job with its session
 * still open keeps it (struct relay_cache) and tells the main process so
 * in its IMSG_RELAY_DONE (struct relay_worker_done).  The main process
 * then counts it idle under the job's destination key (relay_dest_key:
 * the smarthost, or the recipient domain in mx mode) and hands it the next
 * job for that destination over the same socketpair (IMSG_RELAY_JOB with
 * the message descriptor) instead of forking a new worker.  The next
 * transaction starts with RSET, pipelined with MAIL, RCPT and DATA; if the
 * kept connection turns out dead before any recipient was accepted, the
 * worker reconnects at once (TLS session resumed from the SSL_SESSION it
 * kept) and nothing is deferred.  An idle worker is closed by the main
 * process after RELAY_IDLE_SECS (it QUITs and exits), or evicted at once
 * when its slot is needed for another destination.  The queue needs no
 * change: it sends the next job when it gets a DONE, and that job finds
 * the idle worker.
 *
 * Choices where the specification leaves room:
 * - mx mode, opportunistic TLS: a failed handshake is retried once on the
 *   same address in clear (as OpenSMTPD does); "required" moves on to the
 *   next address instead.  A refused STARTTLS goes on in clear.
 * - The certificate is always checked (chain and name, X509_VERIFY_PARAM);
 *   MX deliveries only log verified=yes|no, the smarthost must verify.
 * - A smarthost that rejects AUTH is not tried on its other addresses.
 * - Once the message body has been sent, a lost connection defers the
 *   recipients and no other host is tried (it may have been delivered).
 * - delay= in the log is counted from the data file's mtime, which is when
 *   the message was queued.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "msa.h"

#define RELAY_LINE_MAX 2048 /* longest reply line accepted */
#define RELAY_CMD_MAX 2048 /* longest command sent (AUTH PLAIN) */
#define RELAY_CHUNK 16384 /* message bytes read per pread */
#define RELAY_MAX_CONNECTS 10 /* connection attempts per job */
#define RELAY_WORKER_MAX_SECS (2 * 60 * 60) /* then the worker is killed */
#define RELAY_REUSE_MAX_SECS (5 * 60) /* a connection is not reused after */
#define RELAY_REUSE_MAX_TXNS 1000 /* transactions on one connection */
#define RELAY_IDLE_WAIT_MS (60 * 1000) /* an idle worker without news exits */
#define RELAY_CLOSE_GRACE 15 /* seconds a retired worker has to QUIT */
#define RELAY_DEFAULT_CAFILE "/etc/ssl/certs/ca-certificates.crt"
#define RELAY_CA_MAX (16 * 1024 * 1024) /* largest CA bundle read */

const struct relay_timeouts relay_default_timeouts = {
	.connect = 30 * 1000,
	.greeting = 5 * 60 * 1000,
	.ehlo = 5 * 60 * 1000,
	.mail = 5 * 60 * 1000,
	.rcpt = 5 * 60 * 1000,
	.data_init = 2 * 60 * 1000,
	.data_block = 3 * 60 * 1000,
	.data_final = 10 * 60 * 1000,
	.quit = 10 * 1000,
};

/* Where one recipient stands within relay_deliver(). */
enum relay_rstate {
	RS_PENDING, /* no final answer yet; the next host may take it */
	RS_ACCEPTED, /* RCPT got 2xx on the current connection */
	RS_FINAL, /* result decided */
};

/* What one connection attempt leaves for the caller to do. */
enum relay_try {
	TRY_DONE, /* every recipient it handled has a result */
	TRY_NEXT, /* failed before a result: try the next address */
	TRY_STOP, /* failed in a way no other address will fix */
	TRY_TLSFAIL, /* TLS handshake failed: a clear retry is allowed */
};

struct relay_conn {
	int fd;
	SSL *ssl;
	const struct relay_timeouts *to;
	char host[MAX_DOMAIN]; /* name for SNI, verification and logs */
	char addr[CLIENT_ADDR_LEN];
	char relay[MAX_DOMAIN + 64]; /* "host[addr]:port" */
	bool verified;
	bool tls_clean; /* handshake done, no fatal TLS error since */
	bool dead; /* I/O failed or 421: never to be reused */
	bool tls_fatal; /* a TLS protocol error (not just a lost TCP) */
	unsigned txns; /* transactions begun on this connection */
	int64_t opened; /* relay_now_ms() when the session was ready */
	SSL_SESSION *resume; /* offered in the handshake; not owned */
	struct relay_caps caps;
	char rbuf[2 * RELAY_LINE_MAX];
	size_t rpos, rlen;
	char err[MAX_REPLY]; /* why the last I/O failed */
};

/* What a worker keeps between jobs (msa.h). */
struct relay_cache {
	struct relay_conn conn; /* conn.fd == -1: no session kept */
	char key[RELAY_KEY_MAX]; /* the destination it leads to */
	SSL_SESSION *sess; /* last TLS session, for resumption */
	char sess_peer[MAX_DOMAIN + 64]; /* the conn.relay it came from */
};

/* One job inside relay_deliver(). */
struct relay_txn {
	const struct relay_env *env;
	const struct ipc_relay_job *job;
	const struct ipc_rcpt *rcpts;
	struct ipc_relay_result *res;
	unsigned char *state; /* enum relay_rstate per recipient */
	size_t nrcpt;
	int fd;
	uint64_t size; /* bytes in the data file */
	time_t queued; /* data file mtime: when the message was queued */
	int connects; /* attempts made so far */
	bool stop; /* no further address is worth trying */
	char last_err[MAX_REPLY];
	char last_relay[MAX_DOMAIN + 64]; /* where last_err happened */
	const char *last_tls; /* its TLS version (OpenSSL's string), or NULL */
	bool last_verified;
	struct relay_cache *cache; /* NULL: close every connection */
	char key[RELAY_KEY_MAX]; /* relay_dest_key() of the job */
	bool reconnect; /* a kept connection was found dead before use */
};

/* ------------------------------------------------------------------ */
/* Small helpers                                                       */

static int64_t
relay_now_ms(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1)
		fatal("clock_gettime");
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A quoted log value: printable ASCII, no quote or backslash. */
static const char *
relay_log_quote(char *buf, size_t bufsize, const char *s)
{
	size_t i;

	for (i = 0; s[i] != '\0' && i + 1 < bufsize; i++) {
		unsigned char c = (unsigned char)s[i];
		buf[i] = (c < 0x20 || c >= 0x7f || c == '"' || c == '\\')
		    ? '?'
		    : (char)c;
	}
	buf[i] = '\0';
	return buf;
}

/* Copy s into a reply field: printable ASCII only, bounded. */
static void
relay_set_text(char *dst, size_t dstlen, const char *s)
{
	(void)relay_log_quote(dst, dstlen, s);
}

static void __attribute__((format(printf, 2, 3)))
relay_set_err(struct relay_txn *t, const char *fmt, ...)
{
	char tmp[MAX_REPLY];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(tmp, sizeof(tmp), fmt, ap);
	va_end(ap);
	relay_set_text(t->last_err, sizeof(t->last_err), tmp);
}

static bool
relay_is_literal(const char *host)
{
	unsigned char a[16];

	return inet_pton(AF_INET, host, a) == 1
	    || inet_pton(AF_INET6, host, a) == 1;
}

/* ------------------------------------------------------------------ */
/* Pure functions: replies, capabilities, dot-stuffing, job checks      */

void
relay_reply_init(struct relay_reply *r)
{
	memset(r, 0, sizeof(*r));
}

/* "X.Y.Z" at the start of text with X matching the reply class. */
static size_t
relay_enh_len(const char *text, size_t len, int code)
{
	size_t i = 0, part, digits;

	if (len < 5 || text[0] != (char)('0' + code / 100) || text[1] != '.')
		return 0;
	i = 2;
	for (part = 0; part < 2; part++) {
		for (digits = 0; i < len && text[i] >= '0' && text[i] <= '9';
		     i++)
			digits++;
		if (digits == 0 || digits > 3)
			return 0;
		if (part == 0) {
			if (i >= len || text[i] != '.')
				return 0;
			i++;
		}
	}
	if (i < len && text[i] != ' ')
		return 0;
	return i;
}

/* Append to a bounded string, truncating silently. */
static void
relay_append(char *dst, size_t dstlen, const char *src, size_t srclen)
{
	size_t have = strlen(dst), n;

	if (have + 1 >= dstlen)
		return;
	n = dstlen - have - 1;
	if (n > srclen)
		n = srclen;
	memcpy(dst + have, src, n);
	dst[have + n] = '\0';
}

int
relay_reply_feed(struct relay_reply *r, const char *line, size_t len)
{
	const char *text;
	size_t tlen, elen;
	int code;

	if (r->done || len < 3 || len > RELAY_LINE_MAX
	    || r->nlines >= RELAY_REPLY_MAXLINES)
		return -1;
	if (line[0] < '2' || line[0] > '5' || line[1] < '0' || line[1] > '5'
	    || line[2] < '0' || line[2] > '9')
		return -1;
	if (len > 3 && line[3] != ' ' && line[3] != '-')
		return -1;
	code = (line[0] - '0') * 100 + (line[1] - '0') * 10 + (line[2] - '0');
	if (r->nlines > 0 && code != r->code)
		return -1;
	text = len > 4 ? line + 4 : "";
	tlen = len > 4 ? len - 4 : 0;
	if (memchr(text, '\0', tlen) != NULL)
		return -1;
	if (r->nlines == 0) {
		r->code = code;
		(void)bsnprintf(r->text, sizeof(r->text), "%d", code);
		if ((elen = relay_enh_len(text, tlen, code)) > 0
		    && elen < sizeof(r->enh)) {
			memcpy(r->enh, text, elen);
			r->enh[elen] = '\0';
		}
	}
	if (tlen > 0) {
		relay_append(r->text, sizeof(r->text), " ", 1);
		relay_append(r->text, sizeof(r->text), text, tlen);
	}
	relay_append(r->lines, sizeof(r->lines), text, tlen);
	relay_append(r->lines, sizeof(r->lines), "\n", 1);
	r->nlines++;
	if (len == 3 || line[3] == ' ')
		r->done = true;
	return r->done ? 1 : 0;
}

/* One EHLO keyword line ("SIZE 1000", "AUTH PLAIN LOGIN") into caps. */
static void
relay_ehlo_keyword(char *line, struct relay_caps *caps)
{
	char *word, *save = NULL, *kw, *end;
	unsigned long long n;

	if ((kw = strtok_r(line, " =", &save)) == NULL)
		return;
	if (strcasecmp(kw, "PIPELINING") == 0)
		caps->pipelining = true;
	else if (strcasecmp(kw, "STARTTLS") == 0)
		caps->starttls = true;
	else if (strcasecmp(kw, "8BITMIME") == 0)
		caps->eightbitmime = true;
	else if (strcasecmp(kw, "ENHANCEDSTATUSCODES") == 0)
		caps->enhanced = true;
	else if (strcasecmp(kw, "SMTPUTF8") == 0)
		caps->smtputf8 = true;
	else if (strcasecmp(kw, "SIZE") == 0) {
		caps->size = true;
		word = strtok_r(NULL, " ", &save);
		if (word != NULL && *word >= '0' && *word <= '9') {
			errno = 0;
			n = strtoull(word, &end, 10);
			if (errno == 0 && *end == '\0')
				caps->size_max = n;
		}
	} else if (strcasecmp(kw, "AUTH") == 0) {
		/* "AUTH PLAIN LOGIN" and the old "AUTH=PLAIN LOGIN" alike */
		while ((word = strtok_r(NULL, " =", &save)) != NULL) {
			if (strcasecmp(word, "PLAIN") == 0)
				caps->auth_plain = true;
			else if (strcasecmp(word, "LOGIN") == 0)
				caps->auth_login = true;
		}
	}
}

void
relay_ehlo_parse(const struct relay_reply *r, struct relay_caps *caps)
{
	char line[RELAY_LINE_MAX + 1];
	const char *p = r->lines, *nl;
	size_t len, i = 0;

	memset(caps, 0, sizeof(*caps));
	/* The first line greets with the server's name, not a keyword. */
	for (; (nl = strchr(p, '\n')) != NULL; p = nl + 1, i++) {
		len = (size_t)(nl - p);
		if (i == 0 || len == 0 || len >= sizeof(line))
			continue;
		memcpy(line, p, len);
		line[len] = '\0';
		relay_ehlo_keyword(line, caps);
	}
}

size_t
relay_dotstuff(bool *bol, const char *in, size_t len, char *out)
{
	size_t i, o = 0;

	for (i = 0; i < len; i++) {
		if (*bol && in[i] == '.')
			out[o++] = '.';
		out[o++] = in[i];
		*bol = in[i] == '\n';
	}
	return o;
}

int
relay_job_parse(const void *data, size_t len, struct ipc_relay_job *job,
    const struct ipc_rcpt **rcpts, char *err, size_t errlen)
{
	const struct ipc_rcpt *r;
	size_t i;

	if (len < sizeof(*job)) {
		(void)bsnprintf(err, errlen, "job too short (%zu bytes)", len);
		return -1;
	}
	memcpy(job, data, sizeof(*job));
	if (!IPC_STR_OK(job->id) || strlen(job->id) != QUEUE_ID_LEN
	    || strspn(job->id, "0123456789abcdef") != QUEUE_ID_LEN) {
		(void)bsnprintf(err, errlen, "job with a bad id");
		return -1;
	}
	if (!IPC_STR_OK(job->sender) || !IPC_STR_OK(job->domain)) {
		(void)bsnprintf(
		    err, errlen, "job %s: unterminated string", job->id);
		return -1;
	}
	if (job->nrcpt == 0 || job->nrcpt > MAX_RCPT_LIMIT
	    || len != sizeof(*job) + (size_t)job->nrcpt * sizeof(**rcpts)) {
		(void)bsnprintf(err, errlen,
		    "job %s: %u recipients do not fit %zu bytes", job->id,
		    job->nrcpt, len);
		return -1;
	}
	r = (const struct ipc_rcpt *)(const void *)((const char *)data
	    + sizeof(*job));
	for (i = 0; i < job->nrcpt; i++)
		if (!IPC_STR_OK(r[i].addr) || r[i].addr[0] == '\0') {
			(void)bsnprintf(err, errlen,
			    "job %s: recipient %zu malformed", job->id, i);
			return -1;
		}
	/* Characters that could end or split a command line. */
	for (i = 0; i < job->nrcpt; i++)
		if (strpbrk(r[i].addr, "\r\n<>") != NULL)
			goto badchar;
	if (strpbrk(job->sender, "\r\n<>") != NULL)
		goto badchar;
	*rcpts = r;
	return 0;
badchar:
	(void)bsnprintf(
	    err, errlen, "job %s: bad character in an address", job->id);
	return -1;
}

void
relay_dest_key(const struct config *cfg, const struct ipc_relay_job *job,
    char *out, size_t outlen)
{
	size_t i, len;

	if (cfg->relay_mode == RELAY_SMARTHOST) {
		if (bsnprintf(out, outlen, "smarthost:%s:%u",
			cfg->smarthost_host, cfg->smarthost_port)
		    == -1)
			strlcpy_msa(out, "smarthost", outlen);
		return;
	}
	if (bsnprintf(out, outlen, "mx:%s", job->domain) == -1) {
		/* Cannot happen with RELAY_KEY_MAX; never share a key. */
		strlcpy_msa(out, "", outlen);
		return;
	}
	len = strlen(out);
	if (len > 3 && out[len - 1] == '.')
		out[--len] = '\0';
	for (i = 0; i < len; i++)
		if (out[i] >= 'A' && out[i] <= 'Z')
			out[i] = (char)(out[i] - 'A' + 'a');
}

/* ------------------------------------------------------------------ */
/* Worker slots: which worker takes a job (pure, for unit tests)       */

bool
relay_slot_expired(const struct relay_slot *s, time_t now)
{
	return s->state == RELAY_SLOT_IDLE && now - s->since >= RELAY_IDLE_SECS;
}

enum relay_pick
relay_pick_slot(const struct relay_slot *slots, size_t n, unsigned max_busy,
    const char *key, size_t *idx)
{
	size_t i, busy = 0, mine = n, freeslot = n, oldest = n;

	for (i = 0; i < n; i++) {
		switch (slots[i].state) {
		case RELAY_SLOT_BUSY:
			busy++;
			break;
		case RELAY_SLOT_FREE:
			if (freeslot == n)
				freeslot = i;
			break;
		case RELAY_SLOT_IDLE:
			/* The most recently used session is the likeliest
			 * to be alive; the least recently used goes first. */
			if (key[0] != '\0' && strcmp(slots[i].key, key) == 0) {
				if (mine == n || slots[i].since > slots[mine].since)
					mine = i;
			} else if (oldest == n
			    || slots[i].since < slots[oldest].since)
				oldest = i;
			break;
		}
	}
	if (busy >= max_busy)
		return RELAY_PICK_NONE;
	if (mine < n) {
		*idx = mine;
		return RELAY_PICK_IDLE;
	}
	if (freeslot < n) {
		*idx = freeslot;
		return RELAY_PICK_FREE;
	}
	if (oldest < n) {
		*idx = oldest;
		return RELAY_PICK_EVICT;
	}
	return RELAY_PICK_NONE;
}

/* ------------------------------------------------------------------ */
/* TLS client context                                                  */

struct ssl_ctx_st *
relay_client_ctx(char *err, size_t errlen)
{
	SSL_CTX *ctx;

	if ((ctx = SSL_CTX_new(TLS_client_method())) == NULL) {
		(void)bsnprintf(err, errlen, "SSL_CTX_new: %s",
		    ERR_reason_error_string(ERR_get_error()));
		return NULL;
	}
	if (SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) != 1) {
		(void)bsnprintf(err, errlen, "cannot set TLS 1.2 minimum");
		SSL_CTX_free(ctx);
		return NULL;
	}
	(void)SSL_CTX_set_options(
	    ctx, SSL_OP_NO_COMPRESSION | SSL_OP_NO_RENEGOTIATION);
	/*
	 * The chain and the name are always checked, but the handshake
	 * never fails on them: MX hosts are delivered to anyway (logged
	 * verified=no), the smarthost connection is dropped afterwards.
	 */
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	return ctx;
}

/* The whole bundle, read through fd from its start (no lseek needed). */
static int
relay_read_ca(int fd, struct buf *b, const char *name, char *err,
    size_t errlen)
{
	char chunk[16384];
	ssize_t n;

	buf_init(b);
	for (;;) {
		n = pread(fd, chunk, sizeof(chunk), (off_t)b->len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			(void)bsnprintf(err, errlen, "cannot read CA bundle %s: %s",
			    name, strerror(errno));
			return -1;
		}
		if (n == 0)
			return 0;
		if (b->len + (size_t)n > RELAY_CA_MAX) {
			(void)bsnprintf(err, errlen,
			    "CA bundle %s is larger than %d bytes", name,
			    RELAY_CA_MAX);
			return -1;
		}
		buf_add(b, chunk, (size_t)n);
	}
}

/*
 * What SSL_CTX_load_verify_file() does (every certificate and CRL of a
 * PEM file into the store, at least one of them), from a descriptor: the
 * relay opens the bundle before its chroot and loads it only when a
 * delivery may use TLS (relay_tls_ensure).
 */
static int
relay_load_ca_fd(SSL_CTX *ctx, int fd, const char *name, char *err,
    size_t errlen)
{
	X509_STORE *store = SSL_CTX_get_cert_store(ctx);
	STACK_OF(X509_INFO) *infos = NULL;
	X509_INFO *xi;
	struct buf pem;
	BIO *bio = NULL;
	int i, count = 0, rc = -1;

	ERR_clear_error();
	if (relay_read_ca(fd, &pem, name, err, errlen) == -1)
		goto done;
	if ((bio = BIO_new_mem_buf(pem.data != NULL ? pem.data : "",
		 (int)pem.len)) == NULL
	    || (infos = PEM_X509_INFO_read_bio_ex(bio, NULL, NULL, "", NULL,
		    NULL)) == NULL) {
		(void)bsnprintf(err, errlen, "cannot load CA bundle %s: %s",
		    name, ERR_reason_error_string(ERR_get_error()));
		goto done;
	}
	for (i = 0; i < sk_X509_INFO_num(infos); i++) {
		xi = sk_X509_INFO_value(infos, i);
		if ((xi->x509 != NULL && !X509_STORE_add_cert(store, xi->x509))
		    || (xi->crl != NULL && !X509_STORE_add_crl(store, xi->crl))) {
			(void)bsnprintf(err, errlen,
			    "cannot load CA bundle %s: %s", name,
			    ERR_reason_error_string(ERR_get_error()));
			goto done;
		}
		count += (xi->x509 != NULL) + (xi->crl != NULL);
	}
	if (count == 0) {
		(void)bsnprintf(err, errlen,
		    "cannot load CA bundle %s: no certificate in it", name);
		goto done;
	}
	rc = 0;
done:
	sk_X509_INFO_pop_free(infos, X509_INFO_free);
	BIO_free(bio);
	buf_free(&pem);
	ERR_clear_error();
	return rc;
}

int
relay_load_ca(
    struct ssl_ctx_st *ctx, const char *file, char *err, size_t errlen)
{
	int fd, rc;

	/* A file is read now; never a hashed directory read lazily. */
	if ((fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
		(void)bsnprintf(err, errlen, "cannot open CA bundle %s: %s",
		    file, strerror(errno));
		return -1;
	}
	rc = relay_load_ca_fd(ctx, fd, file, err, errlen);
	(void)close(fd);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Connection I/O with deadlines                                       */

static void
relay_conn_init(struct relay_conn *c, const struct relay_timeouts *to)
{
	memset(c, 0, sizeof(*c));
	c->fd = -1;
	c->to = to;
}

static void
relay_conn_close(struct relay_conn *c)
{
	if (c->ssl != NULL) {
		/* Send close_notify once; never wait for the peer's. */
		if (c->tls_clean)
			(void)SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
		c->ssl = NULL;
	}
	if (c->fd != -1)
		(void)close(c->fd);
	c->fd = -1;
	c->rpos = c->rlen = 0;
}

/* Wait for events until deadline: 0 ready, -1 timed out or failed. */
static int
relay_wait(struct relay_conn *c, short events, int64_t deadline)
{
	struct pollfd pfd = { .fd = c->fd, .events = events };
	int64_t left;
	int r;

	for (;;) {
		left = deadline - relay_now_ms();
		if (left <= 0) {
			(void)bsnprintf(c->err, sizeof(c->err),
			    "timeout talking to %s", c->relay);
			return -1;
		}
		r = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
		if (r == -1 && errno == EINTR)
			continue;
		if (r == -1) {
			(void)bsnprintf(c->err, sizeof(c->err), "poll: %s",
			    strerror(errno));
			return -1;
		}
		if (r > 0)
			return 0;
	}
}

/* Map an OpenSSL result to wait / fail; 1 = wait done, retry. */
static int
relay_ssl_retry(
    struct relay_conn *c, int ret, int64_t deadline, const char *what)
{
	int e = SSL_get_error(c->ssl, ret);
	unsigned long code;

	if (e == SSL_ERROR_WANT_READ)
		return relay_wait(c, POLLIN, deadline) == 0 ? 1 : -1;
	if (e == SSL_ERROR_WANT_WRITE)
		return relay_wait(c, POLLOUT, deadline) == 0 ? 1 : -1;
	/* After a fatal error OpenSSL forbids SSL_shutdown. */
	c->tls_clean = false;
	if (e == SSL_ERROR_ZERO_RETURN)
		(void)bsnprintf(c->err, sizeof(c->err),
		    "connection closed by %s", c->relay);
	else if (e == SSL_ERROR_SYSCALL && ERR_peek_error() == 0)
		(void)bsnprintf(c->err, sizeof(c->err), "%s: %s by %s", what,
		    errno != 0 ? strerror(errno) : "connection closed",
		    c->relay);
	else {
		if (e == SSL_ERROR_SSL)
			c->tls_fatal = true;
		code = ERR_get_error();
		(void)bsnprintf(c->err, sizeof(c->err), "%s with %s: %s", what,
		    c->relay,
		    code != 0 ? ERR_reason_error_string(code) : "TLS error");
	}
	ERR_clear_error();
	return -1;
}

/* Read more bytes into rbuf: 0 ok, -1 error/EOF/timeout (c->err). */
static int
relay_fill(struct relay_conn *c, int64_t deadline)
{
	size_t room;
	ssize_t n;
	int r;

	if (c->rpos > 0) {
		memmove(c->rbuf, c->rbuf + c->rpos, c->rlen - c->rpos);
		c->rlen -= c->rpos;
		c->rpos = 0;
	}
	room = sizeof(c->rbuf) - c->rlen;
	for (;;) {
		if (c->ssl != NULL) {
			ERR_clear_error();
			errno = 0;
			r = SSL_read(c->ssl, c->rbuf + c->rlen, (int)room);
			if (r > 0) {
				c->rlen += (size_t)r;
				return 0;
			}
			if (relay_ssl_retry(c, r, deadline, "TLS read") == -1)
				return -1;
			continue;
		}
		n = recv(c->fd, c->rbuf + c->rlen, room, MSG_DONTWAIT);
		if (n > 0) {
			c->rlen += (size_t)n;
			return 0;
		}
		if (n == 0) {
			(void)bsnprintf(c->err, sizeof(c->err),
			    "connection closed by %s", c->relay);
			return -1;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN && errno != EWOULDBLOCK) {
			(void)bsnprintf(c->err, sizeof(c->err),
			    "read from %s: %s", c->relay, strerror(errno));
			return -1;
		}
		if (relay_wait(c, POLLIN, deadline) == -1)
			return -1;
	}
}

/* One line without CRLF into out (NUL-terminated); length or -1. */
static ssize_t
relay_getline(struct relay_conn *c, char *out, size_t outlen, int64_t deadline)
{
	char *nl;
	size_t len;

	for (;;) {
		nl = memchr(c->rbuf + c->rpos, '\n', c->rlen - c->rpos);
		if (nl != NULL)
			break;
		if (c->rlen - c->rpos > RELAY_LINE_MAX) {
			(void)bsnprintf(c->err, sizeof(c->err),
			    "reply line too long from %s", c->relay);
			return -1;
		}
		if (relay_fill(c, deadline) == -1)
			return -1;
	}
	len = (size_t)(nl - (c->rbuf + c->rpos));
	if (len > 0 && c->rbuf[c->rpos + len - 1] == '\r')
		len--;
	if (len >= outlen) {
		(void)bsnprintf(c->err, sizeof(c->err),
		    "reply line too long from %s", c->relay);
		return -1;
	}
	memcpy(out, c->rbuf + c->rpos, len);
	out[len] = '\0';
	c->rpos = (size_t)(nl - c->rbuf) + 1;
	return (ssize_t)len;
}

static int
relay_read_reply(struct relay_conn *c, struct relay_reply *r, int timeout)
{
	char line[RELAY_LINE_MAX + 1], clean[80];
	int64_t deadline = relay_now_ms() + timeout;
	ssize_t len;
	int f;

	relay_reply_init(r);
	for (;;) {
		if ((len = relay_getline(c, line, sizeof(line), deadline))
		    == -1) {
			c->dead = true;
			return -1;
		}
		if ((f = relay_reply_feed(r, line, (size_t)len)) == -1) {
			(void)bsnprintf(c->err, sizeof(c->err),
			    "malformed reply from %s: %s", c->relay,
			    relay_log_quote(clean, sizeof(clean), line));
			c->dead = true;
			return -1;
		}
		if (f == 1)
			break;
	}
	if (r->code == 421)
		c->dead = true; /* the server closes the connection */
	log_debug("event=smtp_reply relay=%s code=%d", c->relay, r->code);
	return 0;
}

/* Write all of buf; timeout counts from the last progress. */
static int
relay_write(struct relay_conn *c, const char *buf, size_t len, int timeout)
{
	int64_t deadline = relay_now_ms() + timeout;
	ssize_t n;
	int r;

	while (len > 0) {
		if (c->ssl != NULL) {
			ERR_clear_error();
			errno = 0;
			r = SSL_write(
			    c->ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
			if (r <= 0) {
				if (relay_ssl_retry(c, r, deadline, "TLS write")
				    == -1) {
					c->dead = true;
					return -1;
				}
				continue;
			}
			n = r;
		} else {
			n = send(c->fd, buf, len, MSG_DONTWAIT | MSG_NOSIGNAL);
			if (n == -1) {
				if (errno == EINTR)
					continue;
				if (errno != EAGAIN && errno != EWOULDBLOCK) {
					(void)bsnprintf(c->err, sizeof(c->err),
					    "write to %s: %s", c->relay,
					    strerror(errno));
					c->dead = true;
					return -1;
				}
				if (relay_wait(c, POLLOUT, deadline) == -1) {
					c->dead = true;
					return -1;
				}
				continue;
			}
		}
		buf += n;
		len -= (size_t)n;
		deadline = relay_now_ms() + timeout;
	}
	return 0;
}

/*
 * Send one command line (CRLF added) and read its reply.  Debug logs show
 * only "shown" (the verb), never arguments that may be credentials.
 */
static int
relay_send_cmd(struct relay_conn *c, struct relay_reply *r, int timeout,
    const char *shown, const char *cmd)
{
	char line[RELAY_CMD_MAX + 3];
	size_t n = strlen(cmd);
	int ret;

	if (n > RELAY_CMD_MAX) {
		(void)bsnprintf(c->err, sizeof(c->err), "command too long");
		c->dead = true;
		return -1;
	}
	log_debug("event=smtp_send relay=%s cmd=%s", c->relay, shown);
	memcpy(line, cmd, n);
	memcpy(line + n, "\r\n", 2);
	ret = relay_write(c, line, n + 2, timeout);
	OPENSSL_cleanse(line, sizeof(line));
	if (ret == -1)
		return -1;
	return relay_read_reply(c, r, timeout);
}

static int relay_cmd(struct relay_conn *c, struct relay_reply *r, int timeout,
    const char *fmt, ...) __attribute__((format(printf, 4, 5)));

static int
relay_cmd(struct relay_conn *c, struct relay_reply *r, int timeout,
    const char *fmt, ...)
{
	char line[RELAY_CMD_MAX + 1], verb[16];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line)) {
		(void)bsnprintf(c->err, sizeof(c->err), "command too long");
		return -1;
	}
	(void)bsnprintf(
	    verb, sizeof(verb), "%.*s", (int)strcspn(line, " "), line);
	return relay_send_cmd(c, r, timeout, verb, line);
}

/* Non-blocking connect with a timeout. */
static int
relay_connect(struct relay_conn *c, const struct sockaddr *sa, socklen_t salen)
{
	int64_t deadline = relay_now_ms() + c->to->connect;
	socklen_t len = sizeof(int);
	int soerr = 0, one = 1;

	c->fd = socket(
	    sa->sa_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (c->fd == -1) {
		(void)bsnprintf(
		    c->err, sizeof(c->err), "socket: %s", strerror(errno));
		return -1;
	}
	/*
	 * Every write is a whole command, a pipelined group or a piece of
	 * the body: Nagle would hold the last small one until the peer's
	 * delayed ACK (40 ms per message on Linux).
	 */
	if (setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))
	    == -1)
		log_debug("event=relay_nodelay_failed errno=%d", errno);
	if (connect(c->fd, sa, salen) == 0)
		return 0;
	if (errno != EINPROGRESS) {
		(void)bsnprintf(c->err, sizeof(c->err), "connect to %s: %s",
		    c->relay, strerror(errno));
		return -1;
	}
	if (relay_wait(c, POLLOUT, deadline) == -1) {
		(void)bsnprintf(c->err, sizeof(c->err),
		    "connect to %s: timed out", c->relay);
		return -1;
	}
	if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &soerr, &len) == -1)
		soerr = errno;
	if (soerr != 0) {
		(void)bsnprintf(c->err, sizeof(c->err), "connect to %s: %s",
		    c->relay, strerror(soerr));
		return -1;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* Session: TLS, greeting, EHLO, AUTH                                  */

static int
relay_tls_handshake(const struct relay_env *env, struct relay_conn *c)
{
	int64_t deadline = relay_now_ms() + c->to->ehlo;
	X509_VERIFY_PARAM *param;
	long vr;
	int r;

	if ((c->ssl = SSL_new(env->ssl_ctx)) == NULL
	    || SSL_set_fd(c->ssl, c->fd) != 1) {
		(void)bsnprintf(c->err, sizeof(c->err), "SSL_new failed");
		return -1;
	}
	if (relay_is_literal(c->host)) {
		param = SSL_get0_param(c->ssl);
		if (X509_VERIFY_PARAM_set1_ip_asc(param, c->host) != 1) {
			(void)bsnprintf(c->err, sizeof(c->err),
			    "cannot use %s as TLS name", c->host);
			return -1;
		}
	} else if (SSL_set_tlsext_host_name(c->ssl, c->host) != 1
	    || SSL_set1_host(c->ssl, c->host) != 1) {
		(void)bsnprintf(c->err, sizeof(c->err),
		    "cannot use %s as TLS name", c->host);
		return -1;
	}
	/* A session from an earlier connection to this peer: resume it. */
	if (c->resume != NULL && SSL_set_session(c->ssl, c->resume) != 1)
		ERR_clear_error(); /* a full handshake then */
	SSL_set_connect_state(c->ssl);
	for (;;) {
		ERR_clear_error();
		errno = 0;
		if ((r = SSL_connect(c->ssl)) == 1)
			break;
		if (relay_ssl_retry(c, r, deadline, "TLS handshake") == -1)
			return -1;
	}
	c->tls_clean = true;
	vr = SSL_get_verify_result(c->ssl);
	c->verified
	    = vr == X509_V_OK && SSL_get0_peer_certificate(c->ssl) != NULL;
	if (!c->verified)
		(void)bsnprintf(c->err, sizeof(c->err),
		    "certificate of %s not verified: %s", c->relay,
		    X509_verify_cert_error_string(vr));
	log_debug("event=tls_up relay=%s version=%s verified=%s resumed=%s",
	    c->relay, SSL_get_version(c->ssl), c->verified ? "yes" : "no",
	    SSL_session_reused(c->ssl) ? "yes" : "no");
	return 0;
}

static int
relay_ehlo(
    const struct relay_env *env, struct relay_conn *c, struct relay_reply *r)
{
	const char *me
	    = env->cfg->hostname[0] != '\0' ? env->cfg->hostname : "localhost";

	if (relay_cmd(c, r, c->to->ehlo, "EHLO %s", me) == -1)
		return -1;
	if (r->code / 100 == 5) {
		/* An old server: HELO, without any extension. */
		if (relay_cmd(c, r, c->to->ehlo, "HELO %s", me) == -1)
			return -1;
		memset(&c->caps, 0, sizeof(c->caps));
		return 0;
	}
	if (r->code / 100 == 2)
		relay_ehlo_parse(r, &c->caps);
	return 0;
}

static bool
relay_want_tls(const struct relay_env *env, bool smarthost)
{
	if (smarthost)
		return env->cfg->smarthost_tls == SMARTHOST_STARTTLS;
	return true; /* mx: whenever offered */
}

static bool
relay_need_tls(const struct relay_env *env, bool smarthost)
{
	if (smarthost)
		return env->cfg->smarthost_tls != SMARTHOST_NONE;
	return env->cfg->relay_tls == RELAY_TLS_REQUIRED;
}

/* STARTTLS and the second EHLO.  TRY_DONE means "carry on". */
static enum relay_try
relay_starttls(struct relay_txn *t, struct relay_conn *c, bool smarthost)
{
	struct relay_reply r;

	if (relay_cmd(c, &r, c->to->ehlo, "STARTTLS") == -1) {
		relay_set_err(t, "4.4.2 %s", c->err);
		return TRY_NEXT;
	}
	if (r.code != 220) {
		relay_set_err(
		    t, "4.7.0 STARTTLS refused by %s: %s", c->relay, r.text);
		/* Opportunistic: go on in clear on this connection. */
		return relay_need_tls(t->env, smarthost) ? TRY_NEXT : TRY_DONE;
	}
	/* Anything sent before the handshake is an injection: drop it. */
	c->rpos = c->rlen = 0;
	if (relay_tls_handshake(t->env, c) == -1) {
		relay_set_err(t, "4.7.5 %s", c->err);
		return TRY_TLSFAIL;
	}
	if (relay_ehlo(t->env, c, &r) == -1) {
		relay_set_err(t, "4.4.2 %s", c->err);
		return TRY_NEXT;
	}
	if (r.code / 100 != 2) {
		relay_set_err(t, "%s", r.text);
		return TRY_NEXT;
	}
	return TRY_DONE;
}

static enum relay_try
relay_auth_plain(
    struct relay_txn *t, struct relay_conn *c, struct relay_reply *r)
{
	const char *user = t->env->cfg->smarthost_username;
	const char *pass = t->env->password;
	unsigned char raw[MAX_LOGIN + MAX_PASSWORD + 2];
	char b64[((sizeof(raw) + 2) / 3) * 4 + 1];
	char line[sizeof(b64) + 16];
	size_t ul = strlen(user), pl = strlen(pass);
	int n, ret;

	if (ul >= MAX_LOGIN || pl >= MAX_PASSWORD)
		return TRY_STOP;
	raw[0] = '\0';
	memcpy(raw + 1, user, ul);
	raw[1 + ul] = '\0';
	memcpy(raw + 2 + ul, pass, pl);
	n = EVP_EncodeBlock((unsigned char *)b64, raw, (int)(ul + pl + 2));
	b64[n] = '\0';
	OPENSSL_cleanse(raw, sizeof(raw));
	if (bsnprintf(line, sizeof(line), "AUTH PLAIN %s", b64) == -1)
		ret = -1;
	else
		ret = relay_send_cmd(c, r, c->to->ehlo, "AUTH-PLAIN", line);
	OPENSSL_cleanse(b64, sizeof(b64));
	OPENSSL_cleanse(line, sizeof(line));
	return ret == -1 ? TRY_NEXT : TRY_DONE;
}

static enum relay_try
relay_auth_login(
    struct relay_txn *t, struct relay_conn *c, struct relay_reply *r)
{
	const char *secret[2]
	    = { t->env->cfg->smarthost_username, t->env->password };
	char b64[((MAX_PASSWORD + 2) / 3) * 4 + 1];
	int i, n, ret;

	if (relay_cmd(c, r, c->to->ehlo, "AUTH LOGIN") == -1)
		return TRY_NEXT;
	for (i = 0; i < 2; i++) {
		if (r->code != 334)
			return TRY_DONE; /* the caller reports the reply */
		if (strlen(secret[i]) >= MAX_PASSWORD)
			return TRY_STOP;
		n = EVP_EncodeBlock((unsigned char *)b64,
		    (const unsigned char *)secret[i], (int)strlen(secret[i]));
		b64[n] = '\0';
		ret = relay_send_cmd(c, r, c->to->ehlo, "AUTH-LOGIN-DATA", b64);
		OPENSSL_cleanse(b64, sizeof(b64));
		if (ret == -1)
			return TRY_NEXT;
	}
	return TRY_DONE;
}

static enum relay_try
relay_auth(struct relay_txn *t, struct relay_conn *c)
{
	struct relay_reply r;
	enum relay_try tr;

	relay_reply_init(&r);
	if (c->caps.auth_plain)
		tr = relay_auth_plain(t, c, &r);
	else if (c->caps.auth_login)
		tr = relay_auth_login(t, c, &r);
	else {
		relay_set_err(t,
		    "4.7.0 %s does not offer AUTH PLAIN or LOGIN%s", c->relay,
		    c->ssl == NULL ? " (without TLS)" : "");
		return TRY_STOP;
	}
	if (tr == TRY_NEXT) {
		relay_set_err(t, "4.4.2 %s", c->err);
		return TRY_NEXT;
	}
	if (tr == TRY_STOP || r.code != 235) {
		/* Wrong credentials stay wrong on every address. */
		relay_set_err(t, "4.7.0 authentication to %s failed: %s",
		    c->relay, tr == TRY_STOP ? "credentials too long" : r.text);
		log_warnx("event=smarthost_auth_failed relay=%s code=%d",
		    c->relay, r.code);
		return TRY_STOP;
	}
	return TRY_DONE;
}

/*
 * Connect to one address and bring the session to where MAIL can be sent:
 * greeting, EHLO, STARTTLS, AUTH.  TRY_DONE means ready.
 */
static enum relay_try
relay_session(struct relay_txn *t, struct relay_conn *c,
    const struct sockaddr *sa, socklen_t salen, bool smarthost, bool tls_ok)
{
	const struct relay_env *env = t->env;
	struct relay_reply r;
	enum relay_try tr;
	bool implicit
	    = smarthost && env->cfg->smarthost_tls == SMARTHOST_IMPLICIT;

	if (relay_connect(c, sa, salen) == -1) {
		relay_set_err(t, "4.4.1 %s", c->err);
		return TRY_NEXT;
	}
	if (implicit
	    && (env->ssl_ctx == NULL || relay_tls_handshake(env, c) == -1)) {
		relay_set_err(t, "4.7.5 %s",
		    env->ssl_ctx == NULL ? "no TLS client context" : c->err);
		return TRY_NEXT;
	}
	if (relay_read_reply(c, &r, c->to->greeting) == -1) {
		relay_set_err(t, "4.4.2 %s", c->err);
		return TRY_NEXT;
	}
	if (r.code != 220) {
		relay_set_err(t, "%s", r.text);
		return TRY_NEXT;
	}
	if (relay_ehlo(env, c, &r) == -1) {
		relay_set_err(t, "4.4.2 %s", c->err);
		return TRY_NEXT;
	}
	if (r.code / 100 != 2) {
		relay_set_err(t, "%s", r.text);
		return TRY_NEXT;
	}
	if (c->ssl == NULL && tls_ok && env->ssl_ctx != NULL && c->caps.starttls
	    && relay_want_tls(env, smarthost)) {
		if ((tr = relay_starttls(t, c, smarthost)) != TRY_DONE)
			return tr;
	}
	if (c->ssl == NULL && relay_need_tls(env, smarthost)) {
		relay_set_err(
		    t, "4.7.10 TLS required but not offered by %s", c->relay);
		return TRY_NEXT;
	}
	if (smarthost && c->ssl != NULL && !c->verified) {
		/* A smarthost gets the password: it must prove its name. */
		relay_set_err(t, "4.7.5 %s", c->err);
		return TRY_NEXT;
	}
	if (smarthost && env->cfg->smarthost_username[0] != '\0')
		return relay_auth(t, c);
	return TRY_DONE;
}

/* ------------------------------------------------------------------ */
/* Results                                                             */

static const char *
relay_status_word(int status)
{
	switch (status) {
	case RELAY_OK:
		return "sent";
	case RELAY_PERMFAIL:
		return "bounced";
	default:
		return "deferred";
	}
}

/* Decide recipient i: fill its result and log the delivery line. */
static void
relay_final(struct relay_txn *t, size_t i, int status, const char *reply,
    const struct relay_conn *c)
{
	struct ipc_relay_result *res = &t->res[i];
	char rcpt[MAX_ADDR], relay[sizeof(res->relay)], rq[MAX_REPLY];
	time_t delay = time(NULL) - t->queued;
	const char *tls;
	bool verified;

	if (t->state[i] == RS_FINAL)
		return;
	t->state[i] = RS_FINAL;
	res->status = status;
	relay_set_text(res->reply, sizeof(res->reply), reply);
	if (c != NULL && c->relay[0] != '\0') {
		strlcpy_msa(res->relay, c->relay, sizeof(res->relay));
		tls = c->ssl != NULL ? SSL_get_version(c->ssl) : NULL;
		verified = c->verified;
	} else {
		/* Decided after the connection closed: describe the last. */
		strlcpy_msa(res->relay, t->last_relay, sizeof(res->relay));
		tls = t->last_tls;
		verified = t->last_verified;
	}
	log_info("event=delivery id=%s rcpt=%s relay=%s tls=%s verified=%s "
		 "status=%s reply=\"%s\" delay=%llds",
	    t->job->id, log_sanitize(rcpt, sizeof(rcpt), res->rcpt),
	    log_sanitize(relay, sizeof(relay), res->relay),
	    tls != NULL ? tls : "none", verified ? "yes" : "no",
	    relay_status_word(status),
	    relay_log_quote(rq, sizeof(rq), res->reply),
	    (long long)(delay > 0 ? delay : 0));
}

/* Every recipient still open gets the same answer. */
static void
relay_final_all(struct relay_txn *t, int status, const char *reply,
    const struct relay_conn *c)
{
	size_t i;

	for (i = 0; i < t->nrcpt; i++)
		if (t->state[i] != RS_FINAL)
			relay_final(t, i, status, reply, c);
}

static void
relay_final_accepted(struct relay_txn *t, int status, const char *reply,
    const struct relay_conn *c)
{
	size_t i;

	for (i = 0; i < t->nrcpt; i++)
		if (t->state[i] == RS_ACCEPTED)
			relay_final(t, i, status, reply, c);
}

static int
relay_status_of(int code)
{
	if (code / 100 == 2)
		return RELAY_OK;
	return code / 100 == 5 ? RELAY_PERMFAIL : RELAY_TEMPFAIL;
}

static size_t
relay_count(const struct relay_txn *t, enum relay_rstate st)
{
	size_t i, n = 0;

	for (i = 0; i < t->nrcpt; i++)
		if (t->state[i] == st)
			n++;
	return n;
}

/* A failed connection gives back the recipients it had not finished. */
static void
relay_unaccept(struct relay_txn *t)
{
	size_t i;

	for (i = 0; i < t->nrcpt; i++)
		if (t->state[i] == RS_ACCEPTED)
			t->state[i] = RS_PENDING;
}

/* ------------------------------------------------------------------ */
/* Transaction: MAIL, RCPT, DATA                                       */

static void
relay_mail_line(
    const struct relay_txn *t, const struct relay_conn *c, struct buf *b)
{
	buf_printf(b, "MAIL FROM:<%s>", t->job->sender);
	if (c->caps.size)
		buf_printf(b, " SIZE=%llu", (unsigned long long)t->size);
	if (t->job->body_8bit && c->caps.eightbitmime)
		buf_addstr(b, " BODY=8BITMIME");
	buf_addstr(b, "\r\n");
}

/* One RCPT reply: recipient i is accepted or decided. 421 = -1. */
static int
relay_rcpt_reply(struct relay_txn *t, struct relay_conn *c, size_t i,
    const struct relay_reply *r)
{
	if (r->code == 421) {
		relay_set_err(t, "%s", r->text);
		return -1;
	}
	if (r->code / 100 == 2)
		t->state[i] = RS_ACCEPTED;
	else
		relay_final(t, i, relay_status_of(r->code), r->text, c);
	return 0;
}

/* What a MAIL reply means for the whole envelope. */
static enum relay_try
relay_mail_failed(
    struct relay_txn *t, struct relay_conn *c, const struct relay_reply *mail)
{
	if (mail->code / 100 == 5) {
		relay_final_all(t, RELAY_PERMFAIL, mail->text, c);
		return TRY_DONE;
	}
	/* 4xx, 421: another address may take it. */
	relay_set_err(t, "%s", mail->text);
	return TRY_NEXT;
}

/* RCPT for every pending recipient, one at a time. */
static enum relay_try
relay_rcpts_serial(struct relay_txn *t, struct relay_conn *c)
{
	struct relay_reply r;
	size_t i;

	for (i = 0; i < t->nrcpt; i++) {
		if (t->state[i] != RS_PENDING)
			continue;
		if (relay_cmd(
			c, &r, c->to->rcpt, "RCPT TO:<%s>", t->rcpts[i].addr)
		    == -1) {
			relay_set_err(t, "4.4.2 %s", c->err);
			relay_unaccept(t);
			return TRY_NEXT;
		}
		if (relay_rcpt_reply(t, c, i, &r) == -1) {
			relay_unaccept(t);
			return TRY_NEXT;
		}
	}
	return TRY_DONE;
}

/* The RCPT replies of a pipelined envelope, in order. */
static enum relay_try
relay_rcpts_pipelined(
    struct relay_txn *t, struct relay_conn *c, const struct relay_reply *mail)
{
	struct relay_reply r;
	size_t i;

	for (i = 0; i < t->nrcpt; i++) {
		if (t->state[i] != RS_PENDING)
			continue;
		if (relay_read_reply(c, &r, c->to->rcpt) == -1) {
			if (mail->code / 100 != 2)
				return relay_mail_failed(t, c, mail);
			relay_set_err(t, "4.4.2 %s", c->err);
			relay_unaccept(t);
			return TRY_NEXT;
		}
		/* After a failed MAIL the RCPT replies are only drained. */
		if (mail->code / 100 != 2)
			continue;
		if (relay_rcpt_reply(t, c, i, &r) == -1) {
			relay_unaccept(t);
			return TRY_NEXT;
		}
	}
	if (mail->code / 100 != 2)
		return relay_mail_failed(t, c, mail);
	return TRY_DONE;
}

/*
 * RSET on a kept connection, alone (no PIPELINING).  A failure means the
 * connection died while idle: nothing was sent, reconnect.
 */
static enum relay_try
relay_rset(struct relay_txn *t, struct relay_conn *c)
{
	struct relay_reply r;

	if (relay_cmd(c, &r, c->to->connect, "RSET") == -1)
		relay_set_err(t, "4.4.2 %s", c->err);
	else if (r.code / 100 != 2)
		relay_set_err(t, "%s", r.text);
	else
		return TRY_DONE;
	c->dead = true;
	t->reconnect = true;
	return TRY_NEXT;
}

/*
 * The reply to a pipelined DATA when no recipient can use it.  A 354
 * (after a failed MAIL or with every RCPT refused) is ended with a lone
 * "." whose reply is read and dropped (RFC 2920 section 3.1).
 */
static void
relay_data_drain(struct relay_conn *c, struct relay_reply *data)
{
	struct relay_reply r;

	if (relay_read_reply(c, data, c->to->data_init) == -1
	    || data->code != 354)
		return;
	if (relay_write(c, ".\r\n", 3, c->to->data_block) == -1
	    || relay_read_reply(c, &r, c->to->data_final) == -1)
		c->dead = true;
}

/*
 * MAIL and the RCPTs for every pending recipient, pipelined when offered
 * (RFC 2920: one write, replies read in order).  With PIPELINING the group
 * also starts with RSET on a reused connection and ends with DATA, whose
 * reply is left in *data (code 0 when DATA was not sent): a message then
 * costs two round trips.  TRY_DONE: carry on with the accepted ones (maybe
 * none).
 */
static enum relay_try
relay_envelope(
    struct relay_txn *t, struct relay_conn *c, struct relay_reply *data)
{
	bool pipe = c->caps.pipelining, rset = c->txns > 0;
	struct relay_reply mail;
	enum relay_try tr;
	struct buf b;
	size_t i;
	int w;

	relay_reply_init(data);
	relay_reply_init(&mail);
	c->txns++;
	if (rset && !pipe && relay_rset(t, c) != TRY_DONE)
		return TRY_NEXT;
	buf_init(&b);
	if (rset && pipe)
		buf_addstr(&b, "RSET\r\n");
	relay_mail_line(t, c, &b);
	for (i = 0; pipe && i < t->nrcpt; i++)
		if (t->state[i] == RS_PENDING)
			buf_printf(&b, "RCPT TO:<%s>\r\n", t->rcpts[i].addr);
	if (pipe)
		buf_addstr(&b, "DATA\r\n");
	log_debug("event=smtp_send relay=%s cmd=%sMAIL pipelined=%s", c->relay,
	    rset && pipe ? "RSET+" : "", pipe ? "yes" : "no");
	w = relay_write(c, b.data, b.len, c->to->mail);
	buf_free(&b);
	if (rset && pipe) {
		if (w == -1 || relay_read_reply(c, &mail, c->to->connect) == -1)
			relay_set_err(t, "4.4.2 %s", c->err);
		else if (mail.code / 100 != 2)
			relay_set_err(t, "%s", mail.text);
		if (w == -1 || mail.code / 100 != 2) {
			/* Died while idle: nothing accepted, reconnect. */
			c->dead = true;
			t->reconnect = true;
			return TRY_NEXT;
		}
	}
	if (w == -1 || relay_read_reply(c, &mail, c->to->mail) == -1) {
		relay_set_err(t, "4.4.2 %s", c->err);
		return TRY_NEXT;
	}
	if (!pipe) {
		if (mail.code / 100 != 2)
			return relay_mail_failed(t, c, &mail);
		return relay_rcpts_serial(t, c);
	}
	if (mail.code == 421)
		return relay_mail_failed(t, c, &mail); /* nothing more comes */
	tr = relay_rcpts_pipelined(t, c, &mail);
	if (tr != TRY_DONE)
		return tr; /* the connection is not used any further */
	if (relay_count(t, RS_ACCEPTED) == 0) {
		if (!c->dead)
			relay_data_drain(c, data);
		relay_reply_init(data);
		return TRY_DONE;
	}
	if (relay_read_reply(c, data, c->to->data_init) == -1) {
		relay_set_err(t, "4.4.2 %s", c->err);
		relay_unaccept(t);
		return TRY_NEXT;
	}
	return TRY_DONE;
}

/*
 * Stream the data file dot-stuffed; the final "." goes out with the last
 * piece, so a small message is one write.
 */
static int
relay_send_body(struct relay_txn *t, struct relay_conn *c)
{
	char in[RELAY_CHUNK], out[2 * RELAY_CHUNK + 8];
	bool bol = true;
	uint64_t off = 0;
	size_t n;
	ssize_t got;
	char last = '\n';

	while (off < t->size) {
		got = pread(t->fd, in, sizeof(in), (off_t)off);
		if (got == -1 && errno == EINTR)
			continue;
		if (got <= 0) {
			(void)bsnprintf(c->err, sizeof(c->err),
			    "reading the message: %s",
			    got == 0 ? "file shrank" : strerror(errno));
			c->dead = true; /* a DATA that cannot be ended */
			return -1;
		}
		n = relay_dotstuff(&bol, in, (size_t)got, out);
		last = in[got - 1];
		off += (uint64_t)got;
		if (off >= t->size) {
			/* The spool keeps CRLF lines; never glue "." to a
			 * partial line. */
			if (last != '\n') {
				memcpy(out + n, "\r\n", 2);
				n += 2;
			}
			memcpy(out + n, ".\r\n", 3);
			return relay_write(c, out, n + 3, c->to->data_block);
		}
		if (relay_write(c, out, n, c->to->data_block) == -1)
			return -1;
	}
	return relay_write(c, ".\r\n", 3, c->to->data_block);
}

/* DATA (unless its reply came pipelined in *r), the body, the verdict. */
static enum relay_try
relay_data(struct relay_txn *t, struct relay_conn *c, struct relay_reply *r)
{
	char why[MAX_REPLY];

	if (r->code == 0 && relay_cmd(c, r, c->to->data_init, "DATA") == -1) {
		relay_set_err(t, "4.4.2 %s", c->err);
		relay_unaccept(t);
		return TRY_NEXT;
	}
	if (r->code == 421) {
		relay_set_err(t, "%s", r->text);
		relay_unaccept(t);
		return TRY_NEXT;
	}
	if (r->code != 354) {
		relay_final_accepted(t,
		    r->code / 100 == 5 ? RELAY_PERMFAIL : RELAY_TEMPFAIL,
		    r->text, c);
		return TRY_DONE;
	}
	/* From here a lost connection may have delivered: never retry now. */
	if (relay_send_body(t, c) == -1
	    || relay_read_reply(c, r, c->to->data_final) == -1) {
		(void)bsnprintf(
		    why, sizeof(why), "4.4.2 %s during DATA", c->err);
		relay_final_accepted(t, RELAY_TEMPFAIL, why, c);
		return TRY_STOP;
	}
	relay_final_accepted(t, relay_status_of(r->code), r->text, c);
	return TRY_DONE;
}

static enum relay_try
relay_transaction(struct relay_txn *t, struct relay_conn *c)
{
	struct relay_reply data;
	char why[MAX_REPLY];
	enum relay_try tr;

	if (c->caps.size && c->caps.size_max > 0
	    && t->size > c->caps.size_max) {
		(void)bsnprintf(why, sizeof(why),
		    "552 5.3.4 message of %llu bytes exceeds the limit of "
		    "%llu bytes of %s",
		    (unsigned long long)t->size,
		    (unsigned long long)c->caps.size_max, c->relay);
		relay_final_all(t, RELAY_PERMFAIL, why, c);
		return TRY_DONE;
	}
	if ((tr = relay_envelope(t, c, &data)) != TRY_DONE)
		return tr;
	if (relay_count(t, RS_ACCEPTED) == 0)
		return TRY_DONE; /* every recipient refused: no DATA */
	return relay_data(t, c, &data);
}

static void
relay_quit(struct relay_conn *c)
{
	struct relay_reply r;

	(void)relay_cmd(c, &r, c->to->quit, "QUIT");
}

/* ------------------------------------------------------------------ */
/* Hosts and addresses                                                 */

static void
relay_conn_name(
    struct relay_conn *c, const char *host, const struct sockaddr *sa)
{
	uint16_t port;

	strlcpy_msa(c->host, host, sizeof(c->host));
	/* "[192.0.2.1]" names its own address: verify the bare one. */
	if (host[0] == '[')
		(void)sockaddr_ntop(sa, c->host, sizeof(c->host));
	(void)sockaddr_ntop(sa, c->addr, sizeof(c->addr));
	port = sa->sa_family == AF_INET6
	    ? ntohs(((const struct sockaddr_in6 *)(const void *)sa)->sin6_port)
	    : ntohs(((const struct sockaddr_in *)(const void *)sa)->sin_port);
	if (bsnprintf(c->relay, sizeof(c->relay), "%s[%s]:%u",
		host[0] == '[' ? c->host : host, c->addr, port)
	    == -1)
		(void)bsnprintf(
		    c->relay, sizeof(c->relay), "[%s]:%u", c->addr, port);
}

/* Remember where a failure happened, for recipients decided later. */
static void
relay_note_failure(struct relay_txn *t, const struct relay_conn *c,
    const char *result)
{
	char reason[MAX_REPLY];

	strlcpy_msa(t->last_relay, c->relay, sizeof(t->last_relay));
	t->last_tls = c->ssl != NULL ? SSL_get_version(c->ssl) : NULL;
	t->last_verified = c->verified;
	log_info("event=delivery_attempt id=%s relay=%s result=%s "
		 "reason=\"%s\"",
	    t->job->id, c->relay, result,
	    relay_log_quote(reason, sizeof(reason), t->last_err));
}

/*
 * Keep the TLS session of c for the next connection to the same peer.  A
 * copy: OpenSSL marks the connection's own session not resumable when it
 * is freed without close_notify, which is how SMTP connections often end.
 */
static void
relay_cache_session(struct relay_cache *k, const struct relay_conn *c)
{
	SSL_SESSION *sess, *copy;

	if (k == NULL || c->ssl == NULL || c->tls_fatal
	    || (sess = SSL_get1_session(c->ssl)) == NULL)
		return;
	copy = SSL_SESSION_is_resumable(sess) ? SSL_SESSION_dup(sess) : NULL;
	SSL_SESSION_free(sess);
	if (copy == NULL)
		return;
	SSL_SESSION_free(k->sess);
	k->sess = copy;
	strlcpy_msa(k->sess_peer, c->relay, sizeof(k->sess_peer));
}

/* A connection that met a TLS protocol error: never resume its session. */
static void
relay_cache_forget(struct relay_cache *k, const struct relay_conn *c)
{
	if (k == NULL || k->sess == NULL || !c->tls_fatal
	    || strcmp(k->sess_peer, c->relay) != 0)
		return;
	SSL_SESSION_free(k->sess);
	k->sess = NULL;
	k->sess_peer[0] = '\0';
}

/* A connection whose transaction went well: keep it for the next job? */
static bool
relay_cache_keep(struct relay_txn *t, struct relay_conn *c)
{
	struct relay_cache *k = t->cache;

	if (k == NULL || c->dead || t->key[0] == '\0'
	    || c->txns >= RELAY_REUSE_MAX_TXNS
	    || relay_now_ms() - c->opened > RELAY_REUSE_MAX_SECS * 1000)
		return false;
	relay_cache_session(k, c); /* TLS 1.3 tickets may come late */
	if (k->conn.fd != -1)
		relay_conn_close(&k->conn);
	k->conn = *c; /* the descriptor and the SSL move into the cache */
	c->fd = -1;
	c->ssl = NULL;
	c->resume = NULL;
	strlcpy_msa(k->key, t->key, sizeof(k->key));
	return true;
}

/* One connection to one address: QUIT at the end, or kept for reuse. */
static enum relay_try
relay_try_addr(struct relay_txn *t, const char *host, const struct sockaddr *sa,
    socklen_t salen, bool smarthost, bool tls_ok)
{
	struct relay_conn c;
	enum relay_try tr;

	t->connects++;
	relay_conn_init(&c, &t->env->to);
	relay_conn_name(&c, host, sa);
	if (t->cache != NULL && t->cache->sess != NULL
	    && strcmp(t->cache->sess_peer, c.relay) == 0)
		c.resume = t->cache->sess;
	tr = relay_session(t, &c, sa, salen, smarthost, tls_ok);
	if (tr == TRY_DONE) {
		c.opened = relay_now_ms();
		relay_cache_session(t->cache, &c);
		tr = relay_transaction(t, &c);
		if (tr == TRY_DONE && relay_cache_keep(t, &c))
			return TRY_DONE;
		if (tr == TRY_DONE && !c.dead)
			relay_quit(&c);
	}
	if (tr != TRY_DONE)
		relay_note_failure(t, &c, "failed");
	relay_cache_forget(t->cache, &c);
	relay_conn_close(&c);
	return tr;
}

/*
 * The next job over the connection a previous one left open.  If it turns
 * out dead before any recipient was accepted, the job goes on as if there
 * had been none (a new connection); a failure after that point is an
 * ordinary one.
 */
static void
relay_try_cached(struct relay_txn *t)
{
	struct relay_cache *k = t->cache;
	struct relay_conn *c = &k->conn;
	enum relay_try tr;

	if (c->fd == -1)
		return;
	if (strcmp(k->key, t->key) != 0 || c->txns >= RELAY_REUSE_MAX_TXNS
	    || relay_now_ms() - c->opened > RELAY_REUSE_MAX_SECS * 1000) {
		relay_cache_drop(k, true);
		return;
	}
	log_debug("event=relay_reuse id=%s relay=%s txn=%u", t->job->id,
	    c->relay, c->txns + 1);
	t->reconnect = false;
	tr = relay_transaction(t, c);
	if (tr == TRY_DONE && !c->dead)
		return; /* still open, still cached */
	if (tr == TRY_DONE && c->dead) {
		relay_cache_drop(k, false);
		return;
	}
	relay_note_failure(t, c, t->reconnect ? "reconnect" : "failed");
	if (tr == TRY_STOP)
		t->stop = true;
	relay_cache_forget(k, c);
	relay_cache_drop(k, false);
}

/*
 * Every address of one host in turn until nothing is pending.  Returns the
 * DNS outcome, so the caller can tell an implicit MX without addresses.
 */
static enum dns_status
relay_try_host(
    struct relay_txn *t, const char *host, uint16_t port, bool smarthost)
{
	struct dns_addr_list addrs;
	enum dns_status st;
	enum relay_try tr;
	char err[MAX_REPLY];
	size_t i;
	bool fallback;

	st = dns_addrs(host, port, &addrs, err, sizeof(err));
	if (st != DNS_OK) {
		relay_set_err(t, "4.4.3 %s", err);
		t->last_relay[0] = '\0';
		t->last_tls = NULL;
		t->last_verified = false;
		log_info("event=delivery_attempt id=%s host=%s result=failed "
			 "reason=\"%s\"",
		    t->job->id, host, t->last_err);
		return st;
	}
	fallback
	    = !smarthost && t->env->cfg->relay_tls == RELAY_TLS_OPPORTUNISTIC;
	for (i = 0; i < addrs.n && !t->stop; i++) {
		if (relay_count(t, RS_PENDING) == 0
		    || t->connects >= RELAY_MAX_CONNECTS)
			break;
		tr = relay_try_addr(t, host, (struct sockaddr *)&addrs.ss[i],
		    addrs.sslen[i], smarthost, true);
		/* Opportunistic TLS that fails is retried once in clear. */
		if (tr == TRY_TLSFAIL && fallback
		    && t->connects < RELAY_MAX_CONNECTS)
			tr = relay_try_addr(t, host,
			    (struct sockaddr *)&addrs.ss[i], addrs.sslen[i],
			    smarthost, false);
		if (tr == TRY_STOP)
			t->stop = true;
	}
	return DNS_OK;
}

static void
relay_deliver_mx(struct relay_txn *t)
{
	struct dns_mx_list mx;
	enum dns_status st;
	char err[MAX_REPLY], why[MAX_REPLY];
	size_t i;

	st = dns_mx(t->job->domain, &mx, err, sizeof(err));
	if (st == DNS_PERMFAIL) {
		(void)bsnprintf(why, sizeof(why), "%s %s",
		    strstr(err, "null MX") != NULL ? "5.1.10" : "5.1.2", err);
		relay_final_all(t, RELAY_PERMFAIL, why, NULL);
		return;
	}
	if (st != DNS_OK) {
		(void)bsnprintf(why, sizeof(why), "4.4.3 %s", err);
		relay_final_all(t, RELAY_TEMPFAIL, why, NULL);
		return;
	}
	for (i = 0; i < mx.n && !t->stop; i++) {
		if (relay_count(t, RS_PENDING) == 0
		    || t->connects >= RELAY_MAX_CONNECTS)
			break;
		st = relay_try_host(
		    t, mx.mx[i].host, t->env->cfg->mx_port, false);
		if (mx.implicit && (st == DNS_NODATA || st == DNS_PERMFAIL)) {
			/* No MX and no address: mail cannot go there. */
			(void)bsnprintf(why, sizeof(why),
			    "5.1.2 %s has no MX and no address records",
			    t->job->domain);
			relay_final_all(t, RELAY_PERMFAIL, why, NULL);
			return;
		}
	}
}

static void
relay_deliver_smarthost(struct relay_txn *t)
{
	const struct config *cfg = t->env->cfg;

	if (cfg->smarthost_username[0] != '\0' && t->env->password == NULL) {
		relay_final_all(t, RELAY_TEMPFAIL,
		    "4.7.0 the smarthost password file could not be read",
		    NULL);
		return;
	}
	(void)relay_try_host(t, cfg->smarthost_host, cfg->smarthost_port, true);
}

void
relay_deliver_cached(const struct relay_env *env, struct relay_cache *cache,
    const struct ipc_relay_job *job, const struct ipc_rcpt *rcpts,
    int data_fd, struct ipc_relay_result *results)
{
	struct relay_txn t;
	struct stat st;
	size_t i;

	memset(&t, 0, sizeof(t));
	t.env = env;
	t.job = job;
	t.rcpts = rcpts;
	t.res = results;
	t.nrcpt = job->nrcpt;
	t.fd = data_fd;
	t.cache = cache;
	relay_dest_key(env->cfg, job, t.key, sizeof(t.key));
	t.state = xcalloc(t.nrcpt, 1);
	strlcpy_msa(t.last_err, "4.4.1 no mail host could be reached",
	    sizeof(t.last_err));
	for (i = 0; i < t.nrcpt; i++) {
		memset(&results[i], 0, sizeof(results[i]));
		strlcpy_msa(results[i].id, job->id, sizeof(results[i].id));
		strlcpy_msa(
		    results[i].rcpt, rcpts[i].addr, sizeof(results[i].rcpt));
		results[i].status = RELAY_TEMPFAIL;
	}
	if (fstat(data_fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		relay_final_all(&t, RELAY_TEMPFAIL,
		    "4.3.0 the message file cannot be read", NULL);
		goto out;
	}
	t.size = (uint64_t)st.st_size;
	t.queued = st.st_mtime; /* written once, when it was queued */
	if (cache != NULL)
		relay_try_cached(&t);
	if (relay_count(&t, RS_PENDING) > 0 && !t.stop) {
		if (env->cfg->relay_mode == RELAY_SMARTHOST)
			relay_deliver_smarthost(&t);
		else
			relay_deliver_mx(&t);
	}
	relay_final_all(&t, RELAY_TEMPFAIL, t.last_err, NULL);
out:
	free(t.state);
}

void
relay_deliver(const struct relay_env *env, const struct ipc_relay_job *job,
    const struct ipc_rcpt *rcpts, int data_fd, struct ipc_relay_result *results)
{
	relay_deliver_cached(env, NULL, job, rcpts, data_fd, results);
}

/* ------------------------------------------------------------------ */
/* The kept connection of a worker                                     */

struct relay_cache *
relay_cache_new(void)
{
	struct relay_cache *k = xcalloc(1, sizeof(*k));

	k->conn.fd = -1;
	return k;
}

bool
relay_cache_open(const struct relay_cache *k)
{
	return k != NULL && k->conn.fd != -1;
}

const char *
relay_cache_key(const struct relay_cache *k)
{
	return relay_cache_open(k) ? k->key : "";
}

void
relay_cache_drop(struct relay_cache *k, bool quit)
{
	if (k == NULL || k->conn.fd == -1)
		return;
	if (quit && !k->conn.dead)
		relay_quit(&k->conn);
	relay_conn_close(&k->conn);
	k->key[0] = '\0';
}

void
relay_cache_free(struct relay_cache *k, bool quit)
{
	if (k == NULL)
		return;
	relay_cache_drop(k, quit);
	SSL_SESSION_free(k->sess);
	free(k);
}

/*
 * While a worker waits for its next job the server may close the kept
 * connection (a 421 on its idle timeout, or just EOF): then drop it, so
 * the next job connects at once.  A TLS record that carries no data
 * (a late session ticket) leaves it open.
 */
bool
relay_cache_check(struct relay_cache *k)
{
	struct relay_conn *c;
	char b[512];
	ssize_t n;
	int r;

	if (!relay_cache_open(k))
		return false;
	c = &k->conn;
	if (c->ssl != NULL) {
		ERR_clear_error();
		r = SSL_read(c->ssl, b, sizeof(b));
		if (r <= 0 && SSL_get_error(c->ssl, r) == SSL_ERROR_WANT_READ)
			return true;
		if (r <= 0)
			c->tls_clean = false;
		ERR_clear_error();
	} else {
		n = recv(c->fd, b, sizeof(b), MSG_DONTWAIT);
		if (n == -1
		    && (errno == EAGAIN || errno == EWOULDBLOCK
			|| errno == EINTR))
			return true;
	}
	log_debug("event=relay_idle_closed relay=%s", c->relay);
	c->dead = true;
	relay_cache_drop(k, false);
	return false;
}

int
relay_cache_fd(const struct relay_cache *k)
{
	return relay_cache_open(k) ? k->conn.fd : -1;
}

/* ------------------------------------------------------------------ */
/* The relay process: jobs in, workers forked, results out             */

/*
 * relay_workers[i] is described by relay_slots[i]: FREE (no process), BUSY
 * (a job in hand) or IDLE (its job done, a session to slot.key kept).  At
 * most relay.concurrency workers are BUSY (the queue sends no more jobs
 * than that); as many again may wait IDLE.  A worker that keeps no session
 * or is retired leaves its slot at once and only waits in relay_closing to
 * be reaped.
 */
struct relay_worker {
	pid_t pid;
	struct ipc_chan ch;
	uint32_t jobno; /* hdr.peerid of the job, echoed in every answer */
	struct ipc_relay_job job;
	struct ipc_rcpt *rcpts; /* heap, job.nrcpt */
	bool *reported; /* heap, job.nrcpt */
	bool finished; /* IMSG_RELAY_DONE forwarded for the current job */
	unsigned jobs; /* jobs it was given */
};

/* A worker on its way out: reaped, or killed after RELAY_CLOSE_GRACE. */
struct relay_exiting {
	pid_t pid;
	time_t since;
	bool killed;
};

static struct relay_worker *relay_workers;
static struct relay_slot *relay_slots;
static size_t relay_nworkers; /* slots */
static unsigned relay_max_busy; /* relay.concurrency */
static struct relay_exiting *relay_exiting;
static size_t relay_nexiting, relay_exiting_cap;
static struct ipc_chan relay_queue;
static int relay_parent_fd = -1;
static volatile sig_atomic_t relay_quit_signal;

static void
relay_on_signal(int sig)
{
	(void)sig;
	relay_quit_signal = 1;
}

/* Answer for every recipient of a job at once, then DONE. */
static void
relay_answer_all(uint32_t jobno, const struct ipc_relay_job *job,
    const struct ipc_rcpt *rcpts, const bool *reported, const char *reply)
{
	struct ipc_relay_result res;
	struct ipc_queue_id done;
	uint32_t i;

	for (i = 0; rcpts != NULL && i < job->nrcpt; i++) {
		if (reported != NULL && reported[i])
			continue;
		memset(&res, 0, sizeof(res));
		strlcpy_msa(res.id, job->id, sizeof(res.id));
		strlcpy_msa(res.rcpt, rcpts[i].addr, sizeof(res.rcpt));
		res.status = RELAY_TEMPFAIL;
		strlcpy_msa(res.reply, reply, sizeof(res.reply));
		ipc_compose(&relay_queue, IMSG_RELAY_RESULT, jobno, -1, &res,
		    sizeof(res));
	}
	memset(&done, 0, sizeof(done));
	strlcpy_msa(done.id, job->id, sizeof(done.id));
	ipc_compose(
	    &relay_queue, IMSG_RELAY_DONE, jobno, -1, &done, sizeof(done));
}

static void
relay_exiting_add(pid_t pid)
{
	if (relay_nexiting == relay_exiting_cap) {
		relay_exiting_cap = relay_exiting_cap ? 2 * relay_exiting_cap
						      : 8;
		relay_exiting = xreallocarray(relay_exiting,
		    relay_exiting_cap, sizeof(*relay_exiting));
	}
	relay_exiting[relay_nexiting].pid = pid;
	relay_exiting[relay_nexiting].since = monotime();
	relay_exiting[relay_nexiting].killed = false;
	relay_nexiting++;
}

/* Forget a collected pid; false if it was not an exiting worker. */
static bool
relay_exiting_remove(pid_t pid)
{
	size_t i;

	for (i = 0; i < relay_nexiting; i++)
		if (relay_exiting[i].pid == pid) {
			relay_exiting[i] = relay_exiting[--relay_nexiting];
			return true;
		}
	return false;
}

/*
 * The client context and its CA store (about 1 MB of heap with a system
 * bundle) exist only while deliveries may use TLS: the relay builds them
 * just before it forks the first worker of a busy spell (workers inherit
 * them) and frees them once no worker has been left for
 * RELAY_TLS_IDLE_SECS.  A relay that can never use TLS (a smarthost with
 * tls: none) never builds them.  The bundle is opened before the chroot
 * (relay_tls_open) and read again through that descriptor.
 */
static int relay_ca_fd = -1;
static char relay_ca_name[MAX_PATHLEN];
static bool relay_tls_possible;
static time_t relay_tls_last_use; /* a worker last existed */

bool
relay_tls_release_due(const struct relay_slot *slots, size_t n,
    time_t *last_use, time_t now)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (slots[i].state != RELAY_SLOT_FREE) {
			*last_use = now;
			return false;
		}
	return now - *last_use >= RELAY_TLS_IDLE_SECS;
}

static void
relay_tls_open(const struct config *cfg)
{
	const char *cafile = getenv("SSL_CERT_FILE");

	relay_tls_possible = cfg->relay_mode == RELAY_MX
	    || cfg->smarthost_tls != SMARTHOST_NONE;
	if (!relay_tls_possible)
		return;
	if (cafile == NULL || *cafile == '\0')
		cafile = RELAY_DEFAULT_CAFILE;
	strlcpy_msa(relay_ca_name, cafile, sizeof(relay_ca_name));
	relay_ca_fd = open(cafile, O_RDONLY | O_CLOEXEC | O_NOCTTY);
	if (relay_ca_fd == -1)
		log_warnx("event=relay_ca_missing reason=\"cannot open CA "
			  "bundle %s: %s\" effect=\"no certificate can be "
			  "verified\"",
		    cafile, strerror(errno));
}

/* Before a worker is forked: the context, if a delivery may want it. */
static void
relay_tls_ensure(struct relay_env *env)
{
	char err[512];

	relay_tls_last_use = monotime();
	if (!relay_tls_possible || env->ssl_ctx != NULL)
		return;
	if ((env->ssl_ctx = relay_client_ctx(err, sizeof(err))) == NULL) {
		log_warnx("event=relay_tls_unavailable reason=\"%s\"", err);
		return;
	}
	if (relay_ca_fd != -1
	    && relay_load_ca_fd(env->ssl_ctx, relay_ca_fd, relay_ca_name, err,
		   sizeof(err)) == -1)
		log_warnx("event=relay_ca_missing reason=\"%s\" "
			  "effect=\"no certificate can be verified\"",
		    err);
	log_debug("event=relay_tls_loaded cafile=%s certs=%d", relay_ca_name,
	    sk_X509_OBJECT_num(X509_STORE_get0_objects(
		SSL_CTX_get_cert_store(env->ssl_ctx))));
}

static void
relay_tls_idle(struct relay_env *env, time_t now)
{
	if (env->ssl_ctx == NULL
	    || !relay_tls_release_due(relay_slots, relay_nworkers,
		&relay_tls_last_use, now))
		return;
	SSL_CTX_free(env->ssl_ctx);
	env->ssl_ctx = NULL;
	/* The store was most of the heap: hand its pages back. */
	(void)malloc_trim(0);
	log_debug("event=relay_tls_released idle_secs=%d", RELAY_TLS_IDLE_SECS);
}

static void
relay_worker_free(size_t i)
{
	struct relay_worker *w = &relay_workers[i];

	ipc_close(&w->ch);
	free(w->rcpts);
	free(w->reported);
	memset(w, 0, sizeof(*w));
	w->ch.fd = -1;
	memset(&relay_slots[i], 0, sizeof(relay_slots[i]));
	relay_slots[i].state = RELAY_SLOT_FREE;
}

/* Finish a job: anything the worker left unsaid becomes TEMPFAIL. */
static void
relay_worker_finish(struct relay_worker *w, const char *why)
{
	size_t i, missing = 0;

	if (w->finished)
		return;
	for (i = 0; i < w->job.nrcpt; i++)
		if (!w->reported[i])
			missing++;
	if (missing > 0)
		log_warnx("event=relay_worker_lost id=%s pid=%ld missing=%zu "
			  "reason=%s",
		    w->job.id, (long)w->pid, missing, why);
	relay_answer_all(w->jobno, &w->job, w->rcpts, w->reported,
	    "4.3.0 delivery process ended before reporting");
	w->finished = true;
}

/*
 * A worker leaves its slot without being killed: closing its channel
 * tells an idle one to QUIT and exit; one that kept nothing exits anyway.
 */
static void
relay_retire(size_t i, const char *why)
{
	struct relay_worker *w = &relay_workers[i];

	log_debug("event=relay_worker_retired pid=%ld key=%s jobs=%u "
		  "reason=%s",
	    (long)w->pid, relay_slots[i].key, w->jobs, why);
	relay_worker_finish(w, why);
	relay_exiting_add(w->pid);
	relay_worker_free(i);
}

/*
 * Wait, while idle, for the next job from the relay process: 1 with
 * *jobno, *job, *rcpts (heap) and *data_fd, or 0 when the channel closes
 * (retired) or nothing came for RELAY_IDLE_WAIT_MS.  The kept connection
 * is watched meanwhile, and dropped if the server closes it.
 */
static int
relay_worker_next(struct ipc_chan *ch, struct relay_cache *cache,
    uint32_t *jobno, struct ipc_relay_job *job, struct ipc_rcpt **rcpts,
    int *data_fd)
{
	const struct ipc_rcpt *r;
	struct pollfd pfd[2];
	struct ipc_msg msg;
	int64_t deadline = relay_now_ms() + RELAY_IDLE_WAIT_MS, left;
	char err[256];
	int n;

	for (;;) {
		if ((n = ipc_recv(ch, &msg)) == 1)
			break;
		if (n < 0)
			return 0;
		if ((left = deadline - relay_now_ms()) <= 0)
			return 0;
		pfd[0].fd = ch->fd;
		pfd[0].events = POLLIN;
		pfd[1].fd = relay_cache_fd(cache);
		pfd[1].events = POLLIN;
		pfd[0].revents = pfd[1].revents = 0;
		n = poll(pfd, 2, left > INT_MAX ? INT_MAX : (int)left);
		if (n == -1 && errno != EINTR)
			return 0;
		if (n > 0 && pfd[1].revents != 0)
			(void)relay_cache_check(cache);
	}
	if (msg.hdr.type != IMSG_RELAY_JOB || msg.fd == -1
	    || relay_job_parse(
		   msg.data, msg.hdr.len, job, &r, err, sizeof(err))
		== -1) {
		log_warnx("event=relay_worker_bad_job type=%u", msg.hdr.type);
		if (msg.fd != -1)
			(void)close(msg.fd);
		return 0;
	}
	*rcpts = xcalloc(job->nrcpt, sizeof(**rcpts));
	memcpy(*rcpts, r, job->nrcpt * sizeof(**rcpts));
	*jobno = msg.hdr.peerid;
	*data_fd = msg.fd;
	return 1;
}

/*
 * The worker end: deliver, report, and while a session stays open, wait
 * for the next job to the same destination; then QUIT and exit.
 */
static void __attribute__((noreturn))
relay_worker_run(const struct relay_env *env, int fd, uint32_t jobno,
    const struct ipc_relay_job *first, const struct ipc_rcpt *first_rcpts,
    int data_fd)
{
	struct ipc_relay_job job = *first;
	struct relay_worker_done done;
	struct ipc_relay_result *res;
	struct relay_cache *cache;
	struct ipc_rcpt *rcpts;
	struct ipc_chan ch;
	size_t i;

	(void)signal(SIGTERM, SIG_DFL);
	(void)signal(SIGINT, SIG_DFL);
	for (i = 0; i < relay_nworkers; i++)
		if (relay_slots[i].state != RELAY_SLOT_FREE
		    && relay_workers[i].ch.fd != -1)
			(void)close(relay_workers[i].ch.fd);
	(void)close(relay_queue.fd);
	if (relay_parent_fd != -1)
		(void)close(relay_parent_fd);
	if (relay_ca_fd != -1)
		(void)close(relay_ca_fd);
	dns_reset(); /* never share the parent's resolver state */
	ipc_init(&ch, fd);
	rcpts = xcalloc(job.nrcpt, sizeof(*rcpts));
	memcpy(rcpts, first_rcpts, job.nrcpt * sizeof(*rcpts));
	cache = relay_cache_new();
	for (;;) {
		res = xcalloc(job.nrcpt, sizeof(*res));
		relay_deliver_cached(env, cache, &job, rcpts, data_fd, res);
		(void)close(data_fd);
		for (i = 0; i < job.nrcpt; i++)
			ipc_compose(&ch, IMSG_RELAY_RESULT, jobno, -1, &res[i],
			    sizeof(res[i]));
		memset(&done, 0, sizeof(done));
		strlcpy_msa(done.id, job.id, sizeof(done.id));
		done.idle = relay_cache_open(cache) ? 1 : 0;
		ipc_compose(
		    &ch, IMSG_RELAY_DONE, jobno, -1, &done, sizeof(done));
		free(res);
		free(rcpts);
		rcpts = NULL;
		if (ipc_flush_all(&ch) == -1) {
			log_warnx("event=relay_worker_report_failed id=%s",
			    job.id);
			break;
		}
		if (!done.idle
		    || relay_worker_next(
			   &ch, cache, &jobno, &job, &rcpts, &data_fd)
			!= 1)
			break;
	}
	relay_cache_free(cache, true);
	_exit(0);
}

/* A result from a worker, checked against its own job: -1 = bogus. */
static int
relay_worker_result(struct relay_worker *w, const struct ipc_msg *msg)
{
	struct ipc_relay_result res;
	size_t i;

	if (msg->hdr.len != sizeof(res))
		return -1;
	memcpy(&res, msg->data, sizeof(res));
	if (!IPC_STR_OK(res.id) || !IPC_STR_OK(res.rcpt)
	    || !IPC_STR_OK(res.reply) || !IPC_STR_OK(res.relay)
	    || strcmp(res.id, w->job.id) != 0 || res.status < RELAY_OK
	    || res.status > RELAY_PERMFAIL)
		return -1;
	for (i = 0; i < w->job.nrcpt; i++)
		if (!w->reported[i] && strcmp(w->rcpts[i].addr, res.rcpt) == 0)
			break;
	if (i == w->job.nrcpt)
		return -1;
	w->reported[i] = true;
	ipc_compose(
	    &relay_queue, IMSG_RELAY_RESULT, w->jobno, -1, &res, sizeof(res));
	return 0;
}

/* The DONE of a worker's job: -1 = bogus, else whether it stays idle. */
static int
relay_worker_done(struct relay_worker *w, const struct ipc_msg *msg)
{
	struct relay_worker_done done;

	if (msg->hdr.len != sizeof(done))
		return -1;
	memcpy(&done, msg->data, sizeof(done));
	if (!IPC_STR_OK(done.id) || strcmp(done.id, w->job.id) != 0
	    || done.idle > 1)
		return -1;
	relay_worker_finish(w, "done");
	return (int)done.idle;
}

/*
 * Read what worker i sent; false once it is gone or misbehaved (the
 * caller collects it).  A worker that keeps no session after its DONE
 * is retired here, so its slot is free for the next job at once.
 */
static bool
relay_worker_input(size_t i)
{
	struct relay_worker *w = &relay_workers[i];
	struct ipc_msg msg;
	int r, idle = -1;

	while ((r = ipc_recv(&w->ch, &msg)) == 1) {
		if (msg.fd != -1)
			(void)close(msg.fd);
		if (w->finished)
			continue; /* an idle worker has nothing to say */
		if (msg.hdr.type == IMSG_RELAY_RESULT
		    && relay_worker_result(w, &msg) == 0)
			continue;
		if (msg.hdr.type == IMSG_RELAY_DONE
		    && (idle = relay_worker_done(w, &msg)) != -1)
			continue;
		r = -2;
		break;
	}
	if (r == -2) {
		log_warnx("event=relay_worker_bogus id=%s pid=%ld", w->job.id,
		    (long)w->pid);
		return false;
	}
	if (idle == 1 && r == 0) {
		relay_slots[i].state = RELAY_SLOT_IDLE;
		relay_slots[i].since = monotime();
	} else if (idle == 0) {
		relay_retire(i, "no-session");
		return true;
	}
	return r == 0;
}

/*
 * The worker closed its end (it exits) or talked nonsense: make sure it is
 * dead, collect it and answer for whatever it left open.  SIGKILL first,
 * so the blocking waitpid cannot hang on a worker that closed the socket
 * but kept running.
 */
static void
relay_worker_gone(size_t i)
{
	struct relay_worker *w = &relay_workers[i];
	int status = 0;

	(void)kill(w->pid, SIGKILL);
	while (waitpid(w->pid, &status, 0) == -1 && errno == EINTR)
		continue;
	relay_worker_finish(w, w->finished ? "done" : "lost");
	relay_worker_free(i);
}

/* Children that ended without their socket saying so first. */
static void
relay_reap(void)
{
	size_t i;
	int status;
	pid_t pid;

	while ((pid = waitpid(-1, &status, WNOHANG)) > 0) {
		if (relay_exiting_remove(pid))
			continue;
		for (i = 0; i < relay_nworkers; i++) {
			if (relay_slots[i].state == RELAY_SLOT_FREE
			    || relay_workers[i].pid != pid)
				continue;
			/* Results it sent before exiting are still queued. */
			(void)relay_worker_input(i);
			/* It may have retired itself with its DONE. */
			if (relay_exiting_remove(pid)
			    || relay_slots[i].state == RELAY_SLOT_FREE)
				break;
			relay_worker_finish(&relay_workers[i],
			    WIFSIGNALED(status) ? "killed" : "exited");
			relay_worker_free(i);
			break;
		}
	}
}

/*
 * Give a job to idle worker i over its channel (the message descriptor
 * goes with it).  -1 if the worker turns out to be gone: it is collected,
 * and msg->fd is still the caller's.
 */
static int
relay_hand_job(size_t i, const struct ipc_msg *msg,
    const struct ipc_relay_job *job, const struct ipc_rcpt *rcpts)
{
	struct relay_worker *w = &relay_workers[i];
	int fd;

	if ((fd = fcntl(msg->fd, F_DUPFD_CLOEXEC, 0)) == -1) {
		log_warn("event=relay_dup_failed id=%s", job->id);
		return -1;
	}
	ipc_compose(
	    &w->ch, IMSG_RELAY_JOB, msg->hdr.peerid, fd, msg->data, msg->hdr.len);
	if (ipc_flush(&w->ch) == -1) {
		log_debug("event=relay_idle_worker_gone pid=%ld", (long)w->pid);
		relay_worker_gone(i);
		return -1;
	}
	(void)close(msg->fd);
	free(w->rcpts);
	free(w->reported);
	w->jobno = msg->hdr.peerid;
	w->job = *job;
	w->rcpts = xcalloc(job->nrcpt, sizeof(*w->rcpts));
	memcpy(w->rcpts, rcpts, job->nrcpt * sizeof(*w->rcpts));
	w->reported = xcalloc(job->nrcpt, sizeof(*w->reported));
	w->finished = false;
	w->jobs++;
	relay_slots[i].state = RELAY_SLOT_BUSY;
	relay_slots[i].since = monotime();
	log_debug("event=relay_job id=%s job=%u rcpts=%u pid=%ld reused=yes "
		  "jobs=%u",
	    job->id, w->jobno, job->nrcpt, (long)w->pid, w->jobs);
	return 0;
}

/* Fork a new worker into free slot i for the job. */
static void
relay_fork_job(const struct relay_env *env, size_t i, const struct ipc_msg *msg,
    const struct ipc_relay_job *job, const struct ipc_rcpt *rcpts,
    const char *key)
{
	struct relay_worker *w = &relay_workers[i];
	int sv[2];
	pid_t pid;

	ipc_socketpair(sv);
	if ((pid = fork()) == -1) {
		log_warn("event=relay_fork_failed id=%s", job->id);
		(void)close(sv[0]);
		(void)close(sv[1]);
		(void)close(msg->fd);
		relay_answer_all(msg->hdr.peerid, job, rcpts, NULL,
		    "4.3.0 cannot start a delivery process");
		return;
	}
	if (pid == 0) {
		(void)close(sv[0]);
		relay_worker_run(env, sv[1], msg->hdr.peerid, job, rcpts, msg->fd);
	}
	(void)close(sv[1]);
	(void)close(msg->fd);
	memset(w, 0, sizeof(*w));
	w->pid = pid;
	ipc_init(&w->ch, sv[0]);
	w->jobno = msg->hdr.peerid;
	w->job = *job;
	w->rcpts = xcalloc(job->nrcpt, sizeof(*w->rcpts));
	memcpy(w->rcpts, rcpts, job->nrcpt * sizeof(*w->rcpts));
	w->reported = xcalloc(job->nrcpt, sizeof(*w->reported));
	w->jobs = 1;
	relay_slots[i].state = RELAY_SLOT_BUSY;
	relay_slots[i].since = monotime();
	strlcpy_msa(relay_slots[i].key, key, sizeof(relay_slots[i].key));
	log_debug("event=relay_job id=%s job=%u rcpts=%u pid=%ld reused=no",
	    job->id, w->jobno, job->nrcpt, (long)pid);
}

/*
 * A job from the queue: to an idle worker with a session to its
 * destination, else to a new worker in a free slot (retiring the idle
 * worker unused the longest if there is none).
 */
static void
relay_start_job(struct relay_env *env, const struct ipc_msg *msg)
{
	const struct ipc_rcpt *rcpts;
	struct ipc_relay_job job;
	char err[256], key[RELAY_KEY_MAX];
	size_t i;

	if (relay_job_parse(
		msg->data, msg->hdr.len, &job, &rcpts, err, sizeof(err))
		== -1
	    || msg->fd == -1) {
		log_warnx("event=relay_bad_job reason=\"%s\"",
		    msg->fd == -1 ? "no message descriptor" : err);
		if (msg->fd != -1)
			(void)close(msg->fd);
		if (msg->hdr.len >= sizeof(job) && IPC_STR_OK(job.id))
			relay_answer_all(msg->hdr.peerid, &job, NULL, NULL,
			    "4.3.0 malformed relay job");
		return;
	}
	relay_dest_key(env->cfg, &job, key, sizeof(key));
	for (;;) {
		switch (relay_pick_slot(relay_slots, relay_nworkers,
		    relay_max_busy, key, &i)) {
		case RELAY_PICK_IDLE:
			if (relay_hand_job(i, msg, &job, rcpts) == 0)
				return;
			continue; /* it died while idle: pick again */
		case RELAY_PICK_EVICT:
			relay_retire(i, "evicted");
			relay_tls_ensure(env);
			relay_fork_job(env, i, msg, &job, rcpts, key);
			return;
		case RELAY_PICK_FREE:
			relay_tls_ensure(env);
			relay_fork_job(env, i, msg, &job, rcpts, key);
			return;
		case RELAY_PICK_NONE:
		default:
			(void)close(msg->fd);
			relay_answer_all(msg->hdr.peerid, &job, rcpts, NULL,
			    "4.3.2 too many deliveries at once, will retry");
			return;
		}
	}
}

/* Busy workers that hang, idle ones past their time, stuck exits. */
static void
relay_watchdog(struct relay_env *env)
{
	struct relay_worker *w;
	time_t now = monotime();
	size_t i;

	for (i = 0; i < relay_nworkers; i++) {
		w = &relay_workers[i];
		if (relay_slot_expired(&relay_slots[i], now))
			relay_retire(i, "idle");
		else if (relay_slots[i].state == RELAY_SLOT_BUSY
		    && now - relay_slots[i].since > RELAY_WORKER_MAX_SECS) {
			log_warnx("event=relay_worker_timeout id=%s pid=%ld",
			    w->job.id, (long)w->pid);
			(void)kill(w->pid, SIGKILL);
			relay_slots[i].since = now; /* once */
		}
	}
	for (i = 0; i < relay_nexiting; i++)
		if (!relay_exiting[i].killed
		    && now - relay_exiting[i].since > RELAY_CLOSE_GRACE) {
			(void)kill(relay_exiting[i].pid, SIGKILL);
			relay_exiting[i].killed = true;
		}
	relay_tls_idle(env, now);
}

static void relay_shutdown(const char *why) __attribute__((noreturn));

static void
relay_shutdown(const char *why)
{
	size_t i;

	log_info("event=relay_exit reason=%s", why);
	for (i = 0; i < relay_nworkers; i++)
		if (relay_slots[i].state != RELAY_SLOT_FREE)
			(void)kill(relay_workers[i].pid, SIGTERM);
	for (i = 0; i < relay_nexiting; i++)
		(void)kill(relay_exiting[i].pid, SIGTERM);
	(void)ipc_flush(&relay_queue);
	exit(0);
}

static void
relay_queue_input(struct relay_env *env)
{
	struct ipc_msg msg;
	int r;

	while ((r = ipc_recv(&relay_queue, &msg)) == 1) {
		if (msg.hdr.type == IMSG_RELAY_JOB) {
			relay_start_job(env, &msg);
			continue;
		}
		if (msg.fd != -1)
			(void)close(msg.fd);
		log_warnx("event=relay_unexpected type=%u", msg.hdr.type);
	}
	if (r == -2)
		fatalx("malformed frame from the queue");
	if (r == -1)
		relay_shutdown("queue-gone");
}

static void
relay_loop(struct relay_env *env)
{
	struct pollfd *pfd;
	struct relay_worker *w;
	size_t i, n, base = 2;
	char buf[64];

	pfd = xcalloc(relay_nworkers + base, sizeof(*pfd));
	for (;;) {
		if (relay_quit_signal)
			relay_shutdown("signal");
		pfd[0].fd = relay_queue.fd;
		pfd[0].events
		    = POLLIN | (ipc_write_pending(&relay_queue) ? POLLOUT : 0);
		pfd[1].fd = relay_parent_fd;
		pfd[1].events = POLLIN;
		for (i = 0, n = base; i < relay_nworkers; i++, n++) {
			w = &relay_workers[i];
			pfd[n].fd = relay_slots[i].state != RELAY_SLOT_FREE
			    ? w->ch.fd
			    : -1;
			pfd[n].events = POLLIN
			    | (ipc_write_pending(&w->ch) ? POLLOUT : 0);
			pfd[n].revents = 0;
		}
		pfd[0].revents = pfd[1].revents = 0;
		if (poll(pfd, n, 1000) == -1) {
			if (errno == EINTR)
				continue;
			fatal("poll");
		}
		if (pfd[1].revents & (POLLIN | POLLHUP | POLLERR)) {
			if (read(relay_parent_fd, buf, sizeof(buf)) <= 0)
				relay_shutdown("parent-gone");
		}
		/* Workers first: an idle one is then ready for the next job. */
		for (i = 0; i < relay_nworkers; i++) {
			if (pfd[base + i].revents == 0
			    || relay_slots[i].state == RELAY_SLOT_FREE
			    || pfd[base + i].fd != relay_workers[i].ch.fd)
				continue;
			if ((pfd[base + i].revents & POLLOUT)
			    && ipc_flush(&relay_workers[i].ch) == -1) {
				relay_worker_gone(i);
				continue;
			}
			if (!relay_worker_input(i))
				relay_worker_gone(i);
		}
		if (pfd[0].revents & (POLLIN | POLLHUP | POLLERR))
			relay_queue_input(env);
		relay_reap();
		relay_watchdog(env);
		if (ipc_flush(&relay_queue) == -1)
			relay_shutdown("queue-gone");
	}
}

/* First line of the smarthost password file, CR/LF stripped. */
static char *
relay_read_password(const char *path)
{
	char line[MAX_PASSWORD + 2];
	FILE *f;
	char *p = NULL;

	if ((f = fopen(path, "re")) == NULL) {
		log_warn("event=smarthost_password_unreadable file=%s", path);
		return NULL;
	}
	if (fgets(line, sizeof(line), f) != NULL) {
		line[strcspn(line, "\r\n")] = '\0';
		p = xstrdup(line);
	} else
		log_warnx("event=smarthost_password_empty file=%s", path);
	OPENSSL_cleanse(line, sizeof(line));
	(void)fclose(f);
	return p;
}

/* OpenSSL opens its configuration and seeds its RNG lazily: do it now. */
static void
relay_tls_prime(void)
{
	unsigned char b[16];

	if (OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS
		    | OPENSSL_INIT_LOAD_CRYPTO_STRINGS
		    | OPENSSL_INIT_LOAD_CONFIG,
		NULL)
		!= 1
	    || RAND_bytes(b, sizeof(b)) != 1)
		fatalx("OpenSSL initialisation failed");
}

void
relay_main(struct config *cfg, int parent_fd, int queue_fd)
{
	static struct relay_env env;
	struct sigaction sa;
	char err[512], root[MAX_PATHLEN];
	size_t i;

	log_setproc("relay");
	tzset();
	relay_tls_prime();
	if (dns_init(cfg, err, sizeof(err)) == -1)
		fatalx("dns: %s", err);
	memset(&env, 0, sizeof(env));
	env.cfg = cfg;
	env.to = relay_default_timeouts;
	if (cfg->relay_mode == RELAY_SMARTHOST
	    && cfg->smarthost_username[0] != '\0')
		env.password
		    = relay_read_password(cfg->smarthost_password_file);
	if (cfg->relay_mode == RELAY_SMARTHOST
	    && cfg->smarthost_tls == SMARTHOST_NONE
	    && cfg->smarthost_username[0] != '\0')
		log_warnx("event=smarthost_auth_in_clear host=%s",
		    cfg->smarthost_host);
	relay_tls_open(cfg);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = SIG_IGN;
	(void)sigaction(SIGPIPE, &sa, NULL);
	sa.sa_handler = relay_on_signal;
	(void)sigaction(SIGTERM, &sa, NULL);
	(void)sigaction(SIGINT, &sa, NULL);

	relay_max_busy
	    = cfg->relay_concurrency > 0 ? cfg->relay_concurrency : 1;
	/* As many slots again for workers that wait idle with a session. */
	relay_nworkers = 2 * (size_t)relay_max_busy;
	relay_workers = xcalloc(relay_nworkers, sizeof(*relay_workers));
	relay_slots = xcalloc(relay_nworkers, sizeof(*relay_slots));
	for (i = 0; i < relay_nworkers; i++) {
		relay_workers[i].ch.fd = -1;
		relay_slots[i].state = RELAY_SLOT_FREE;
	}
	ipc_init(&relay_queue, queue_fd);
	relay_parent_fd = parent_fd;

	if (bsnprintf(root, sizeof(root), "%s/%s", cfg->spool, SPOOL_EMPTY)
	    == -1)
		fatalx("spool path too long");
	proc_confine(cfg, ROLE_RELAY, root);
	/* Building the seccomp filter left garbage all over the heap. */
	(void)malloc_trim(0);
	log_info("event=relay_ready mode=%s concurrency=%u idle_secs=%d",
	    cfg->relay_mode == RELAY_SMARTHOST ? "smarthost" : "mx",
	    relay_max_busy, RELAY_IDLE_SECS);
	relay_loop(&env);
	fatalx("relay: exited loop");
}

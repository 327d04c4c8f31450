/*
 * smtp.c - the SMTP session: one process per client.
 *
 * The listener forks us already chrooted and unprivileged, holding only the
 * client socket and one IPC channel back to it.  Everything the session
 * needs from the rest of msa (credentials, rate limits, a queue file, the
 * commit) is one synchronous request over that channel; the listener is
 * trusted, so anything unexpected from it is fatal.  The client is not:
 * every line is bounded, every parameter checked, and DATA is read by a
 * byte-level state machine that only CR LF . CR LF can end (SMTP
 * smuggling) and that never holds more than the header section in memory.
 *
 * Replies accumulate in an output buffer that is flushed only when no
 * complete command is left to process (PIPELINING, RFC 2920), before
 * blocking, before a 354, before a TLS handshake and at exit.
 */
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/socket.h>

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "msa.h"

#define SMTP_CMD_TIMEOUT 300 /* seconds per command (RFC 5321 4.5.3.2) */
#define SMTP_DATA_TIMEOUT 600 /* seconds idle inside DATA */
#define SMTP_IPC_TIMEOUT 300 /* seconds for the listener to answer */
#define SMTP_CMD_LINE_MAX 512 /* octets with CRLF (RFC 5321 4.5.3.1.4) */
#define SMTP_TEXT_LINE_MAX 998 /* octets without CRLF (RFC 5322 2.1.1) */
#define SMTP_MAX_ERRORS 10
#define SMTP_IBUF_SIZE (16 * 1024) /* holds one AUTH_LINE_MAX line */

/* The most recipients one IMSG_QUEUE_COMMIT frame can carry. */
#define SMTP_RCPT_IPC_MAX                                                  \
	((IPC_MAX_PAYLOAD - sizeof(struct ipc_envelope)) /                 \
	    sizeof(struct ipc_rcpt))

enum smtp_state {
	SMTP_S_CONNECTED, /* no HELO/EHLO yet (or again, after STARTTLS) */
	SMTP_S_HELO, /* greeted, no transaction */
	SMTP_S_MAIL, /* MAIL accepted */
	SMTP_S_RCPT, /* at least one RCPT accepted */
	SMTP_S_DATA, /* reading the message */
};

static const char *const smtp_state_names[] = {
	"connected", "helo", "mail", "rcpt", "data",
};

struct smtp_session {
	struct config *cfg;
	const struct session_info *si;
	struct ipc_chan ipc;
	int fd;
	SSL *ssl;
	enum smtp_state state;
	bool authed;
	bool write_failed;
	bool trim; /* give freed heap back before the next wait for input */
	unsigned errors;
	char helo[MAX_DOMAIN];
	struct login_rights rights;

	/* The transaction. */
	char sender[MAX_ADDR];
	bool body_8bit;
	struct ipc_rcpt *rcpts;
	size_t nrcpt;

	/* The message being received: a queue file is open while id[0]. */
	char queue_id[QUEUE_ID_LEN + 1];
	int datafd;
	uint64_t datasize; /* bytes written to datafd */
	int data_errno; /* first write error */
	int policy_code; /* policy_apply's rejection */
	char policy_reply[MAX_REPLY];

	/* Client I/O. */
	struct buf obuf;
	size_t ipos, ilen;
	char ibuf[SMTP_IBUF_SIZE];
};

enum smtp_line { SMTP_LINE_OK, SMTP_LINE_TOO_LONG, SMTP_LINE_BAD };
/* What a wait does when time runs out or SIGTERM came. */
enum smtp_wait { SMTP_WAIT_CLIENT, SMTP_WAIT_SILENT };

static volatile sig_atomic_t smtp_got_sigterm;
/* SIGTERM stays blocked except inside ppoll: no wake-up is ever lost. */
static sigset_t smtp_wait_mask;

static void smtp_reply(struct smtp_session *, const char *, ...)
    __attribute__((format(printf, 2, 3)));
static void smtp_close(struct smtp_session *, const char *, const char *,
    ...) __attribute__((format(printf, 3, 4), noreturn));
static void smtp_terminate(struct smtp_session *, const char *)
    __attribute__((noreturn));
static void smtp_ipc_fatal(struct smtp_session *, const char *)
    __attribute__((noreturn));

/* ------------------------------------------------------------------ */
/* Command parsing (pure functions, unit-tested)                       */

static bool
smtp_is_space(char c)
{
	return c == ' ' || c == '\t';
}

const char *
smtp_command_lookup(const char *line, const char **arg)
{
	static const char *const verbs[] = {
		"HELO", "EHLO", "STARTTLS", "AUTH", "MAIL", "RCPT", "DATA",
		"RSET", "NOOP", "QUIT", "HELP", "VRFY", "EXPN",
	};
	size_t i, n = strcspn(line, " \t");

	for (i = 0; i < sizeof(verbs) / sizeof(verbs[0]); i++) {
		if (n != strlen(verbs[i]) || strncasecmp(line, verbs[i], n))
			continue;
		line += n;
		while (smtp_is_space(*line))
			line++;
		*arg = line;
		return verbs[i];
	}
	*arg = NULL;
	return NULL;
}

bool
smtp_valid_helo(const char *name)
{
	const char *p;

	if (*name == '\0' || strlen(name) >= MAX_DOMAIN)
		return false;
	/* Domains and address literals; '_' because real clients send it. */
	for (p = name; *p != '\0'; p++) {
		unsigned char c = (unsigned char)*p;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
			(c >= '0' && c <= '9') || strchr(".-_:[]", c) != NULL))
			return false;
	}
	return true;
}

static int
smtp_fail(char *reply, size_t replylen, int code, const char *text)
{
	strlcpy_msa(reply, text, replylen);
	return code;
}

/* A bare local part becomes local@domain. */
static int
smtp_qualify(char *addr, size_t addrlen, const char *domain)
{
	char tmp[MAX_ADDR];

	if (*addr == '\0' || strchr(addr, '@') != NULL)
		return 0;
	if (*domain == '\0' ||
	    bsnprintf(tmp, sizeof(tmp), "%s@%s", addr, domain) == -1 ||
	    strlcpy_msa(addr, tmp, addrlen) >= addrlen)
		return -1;
	return 0;
}


static bool
smtp_keyword(const char *tok, size_t keylen, const char *want)
{
	return keylen == strlen(want) && strncasecmp(tok, want, keylen) == 0;
}

/* One "KEY[=VALUE]" parameter of MAIL. */
static int
smtp_mail_param(const char *tok, size_t len, uint64_t maxsize,
    struct smtp_mail_args *m, char *reply, size_t replylen)
{
	const char *eq = memchr(tok, '=', len);
	size_t keylen = eq != NULL ? (size_t)(eq - tok) : len;
	const char *val = eq != NULL ? eq + 1 : "";
	size_t vlen = eq != NULL ? len - keylen - 1 : 0;

	if (smtp_keyword(tok, keylen, "SIZE")) {
		if (parse_u64(val, vlen, &m->size) == -1)
			return smtp_fail(reply, replylen, 501,
			    "5.5.4 Invalid SIZE parameter");
		if (m->size > maxsize)
			return smtp_fail(reply, replylen, 552,
			    "5.3.4 Message size exceeds fixed limit");
		return 0;
	}
	if (smtp_keyword(tok, keylen, "BODY")) {
		if (smtp_keyword(val, vlen, "7BIT"))
			m->body_8bit = false;
		else if (smtp_keyword(val, vlen, "8BITMIME"))
			m->body_8bit = true;
		else
			return smtp_fail(reply, replylen, 501,
			    "5.5.4 Invalid BODY parameter");
		return 0;
	}
	if (smtp_keyword(tok, keylen, "AUTH") && eq != NULL)
		return 0; /* RFC 4954 5: we trust no one's claim, ignore it */
	return smtp_fail(reply, replylen, 555,
	    "5.5.4 Unsupported MAIL parameter");
}

static int
smtp_mail_params(const char *p, uint64_t maxsize, struct smtp_mail_args *m,
    char *reply, size_t replylen)
{
	size_t len;
	int code;

	for (;;) {
		while (smtp_is_space(*p))
			p++;
		if (*p == '\0')
			return 0;
		len = strcspn(p, " \t");
		if ((code = smtp_mail_param(p, len, maxsize, m, reply,
			 replylen)) != 0)
			return code;
		p += len;
	}
}

/* "FROM:" / "TO:" then at most one space. */
static const char *
smtp_path_start(const char *arg, const char *keyword)
{
	size_t n = strlen(keyword);

	if (strncasecmp(arg, keyword, n) != 0)
		return NULL;
	arg += n;
	if (*arg == ' ')
		arg++;
	return arg;
}

int
smtp_parse_mail(const char *arg, const char *domain, uint64_t maxsize,
    struct smtp_mail_args *m, char *reply, size_t replylen)
{
	const char *p, *rest = NULL;

	memset(m, 0, sizeof(*m));
	if ((p = smtp_path_start(arg, "FROM:")) == NULL)
		return smtp_fail(reply, replylen, 501,
		    "5.5.4 Syntax: MAIL FROM:<address>");
	if (addr_parse_path(p, m->addr, sizeof(m->addr), &rest) == -1 ||
	    smtp_qualify(m->addr, sizeof(m->addr), domain) == -1 ||
	    m->addr[0] == '@') {
		m->addr[0] = '\0';
		return smtp_fail(reply, replylen, 501,
		    "5.1.7 Bad sender address syntax");
	}
	return smtp_mail_params(rest != NULL ? rest : "", maxsize, m, reply,
	    replylen);
}

int
smtp_parse_rcpt(const char *arg, const char *domain, char *out,
    size_t outlen, char *reply, size_t replylen)
{
	const char *p, *rest = NULL;

	if ((p = smtp_path_start(arg, "TO:")) == NULL)
		return smtp_fail(reply, replylen, 501,
		    "5.5.4 Syntax: RCPT TO:<address>");
	if (addr_parse_path(p, out, outlen, &rest) == -1 || out[0] == '\0' ||
	    out[0] == '@' || smtp_qualify(out, outlen, domain) == -1) {
		out[0] = '\0';
		return smtp_fail(reply, replylen, 501,
		    "5.1.3 Bad recipient address syntax");
	}
	while (rest != NULL && smtp_is_space(*rest))
		rest++;
	if (rest != NULL && *rest != '\0')
		return smtp_fail(reply, replylen, 555,
		    "5.5.4 Unsupported RCPT parameter");
	return 0;
}

/* ------------------------------------------------------------------ */
/* AUTH decoding (pure functions, unit-tested)                         */

static int
smtp_b64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

ssize_t
smtp_b64_decode(const char *in, unsigned char *out, size_t outlen)
{
	size_t len = strlen(in), i, j, o = 0, pad = 0;
	uint32_t quad;
	int v;

	if (len % 4 != 0)
		return -1;
	for (i = 0; i < len; i += 4) {
		quad = 0;
		for (j = 0; j < 4; j++) {
			if (in[i + j] == '=') {
				/* Padding: only the last one or two of all. */
				if (i + 4 != len || j < 2)
					return -1;
				pad++;
				v = 0;
			} else if (pad > 0 ||
			    (v = smtp_b64_value((unsigned char)in[i + j])) < 0)
				return -1;
			quad = quad << 6 | (uint32_t)v;
		}
		if (o + 3 - pad > outlen)
			return -1;
		out[o++] = (unsigned char)(quad >> 16);
		if (pad < 2)
			out[o++] = (unsigned char)(quad >> 8);
		if (pad < 1)
			out[o++] = (unsigned char)quad;
	}
	return (ssize_t)o;
}

ssize_t
smtp_auth_decode(const char *in, unsigned char *out, size_t outlen)
{
	if (strcmp(in, "=") == 0)
		return 0;
	return smtp_b64_decode(in, out, outlen);
}

int
smtp_auth_plain_parse(const char *b64, char *user, size_t userlen,
    char *pass, size_t passlen)
{
	unsigned char dec[AUTH_LINE_MAX];
	const char *authzid, *authcid, *pw;
	char *nul;
	ssize_t n;
	size_t pwlen;
	int code = 501;

	/* authzid NUL authcid NUL passwd (RFC 4616 2) */
	if ((n = smtp_auth_decode(b64, dec, sizeof(dec) - 1)) < 0)
		goto out;
	dec[n] = '\0';
	authzid = (const char *)dec;
	if ((nul = memchr(dec, '\0', (size_t)n)) == NULL)
		goto out;
	authcid = nul + 1;
	if ((nul = memchr(authcid, '\0', (size_t)n - (size_t)(authcid -
		 authzid))) == NULL)
		goto out;
	pw = nul + 1;
	pwlen = (size_t)n - (size_t)(pw - authzid);
	if (memchr(pw, '\0', pwlen) != NULL || *authcid == '\0')
		goto out;
	code = 535;
	if ((*authzid != '\0' && strcmp(authzid, authcid) != 0) ||
	    strlen(authcid) >= userlen || pwlen >= passlen)
		goto out;
	strlcpy_msa(user, authcid, userlen);
	strlcpy_msa(pass, pw, passlen);
	code = 0;
out:
	explicit_bzero(dec, sizeof(dec));
	return code;
}

int
smtp_auth_login_parse(const char *b64, char *out, size_t outlen)
{
	unsigned char dec[AUTH_LINE_MAX];
	ssize_t n;
	int code = 501;

	if ((n = smtp_auth_decode(b64, dec, sizeof(dec) - 1)) < 0 ||
	    memchr(dec, '\0', (size_t)n) != NULL)
		goto out;
	code = 535;
	if ((size_t)n >= outlen)
		goto out;
	memcpy(out, dec, (size_t)n);
	out[n] = '\0';
	code = 0;
out:
	explicit_bzero(dec, sizeof(dec));
	return code;
}

/* ------------------------------------------------------------------ */
/* The DATA state machine (unit-tested)                                */

enum smtp_data_state {
	SD_BOL, /* at the start of a line: after CR LF, or at the start */
	SD_DOT, /* "." at the start of a line */
	SD_DOT_CR, /* "." CR at the start of a line: LF ends the data */
	SD_TEXT, /* inside a line (also after a bare CR or LF) */
	SD_CR, /* CR inside a line, not yet known to be a line end */
	SD_DONE,
};

void
smtp_data_init(struct smtp_data *d, uint64_t maxsize, smtp_data_cb header_cb,
    smtp_data_cb body_cb, void *arg)
{
	memset(d, 0, sizeof(*d));
	d->state = SD_BOL;
	d->in_header = true;
	d->maxsize = maxsize;
	buf_init(&d->hdr);
	d->header_cb = header_cb;
	d->body_cb = body_cb;
	d->arg = arg;
}

void
smtp_data_free(struct smtp_data *d)
{
	buf_free(&d->hdr);
}

/* Pass the staged octets on: into the header buffer or to the body. */
static void
smtp_data_flush(struct smtp_data *d)
{
	if (d->outlen == 0 || d->flags != 0) {
		d->outlen = 0;
		return;
	}
	if (d->in_header) {
		if (d->hdr.len + d->outlen > HEADER_SECTION_MAX)
			d->flags |= SMTP_DATA_HDR_TOO_BIG;
		else
			buf_add(&d->hdr, d->out, d->outlen);
	} else if (d->body_cb(d->arg, d->out, d->outlen) == -1)
		d->flags |= SMTP_DATA_SINK;
	d->outlen = 0;
}

static void
smtp_data_emit(struct smtp_data *d, const char *p, size_t len)
{
	size_t n;

	d->size += len;
	if (d->size > d->maxsize)
		d->flags |= SMTP_DATA_TOO_BIG;
	if (d->in_header && memchr(p, '\0', len) != NULL)
		d->flags |= SMTP_DATA_HDR_NUL;
	while (len > 0 && d->flags == 0) {
		n = sizeof(d->out) - d->outlen;
		if (n > len)
			n = len;
		memcpy(d->out + d->outlen, p, n);
		d->outlen += n;
		p += n;
		len -= n;
		if (d->outlen == sizeof(d->out))
			smtp_data_flush(d);
	}
}

static void
smtp_data_end_header(struct smtp_data *d)
{
	smtp_data_flush(d);
	if (d->flags == 0 && d->header_cb(d->arg, d->hdr.data != NULL ?
		d->hdr.data : "", d->hdr.len) == -1)
		d->flags |= SMTP_DATA_SINK;
	d->in_header = false;
	buf_free(&d->hdr);
}

/* Octets inside a line: text, or CR/LF that may not be a line end. */
static void
smtp_data_text(struct smtp_data *d, const char *p, size_t len)
{
	if (*p == '\r') {
		d->state = SD_CR;
		return;
	}
	d->state = SD_TEXT;
	if (*p == '\n') {
		d->flags |= SMTP_DATA_BARE_EOL;
		return;
	}
	d->linelen += len;
	if (d->linelen > SMTP_TEXT_LINE_MAX)
		d->flags |= SMTP_DATA_LONG_LINE;
	smtp_data_emit(d, p, len);
}

/* CR LF: the end of a line, or of the header section. */
static void
smtp_data_eol(struct smtp_data *d)
{
	if (d->in_header && d->linelen == 0) {
		if ((d->size += 2) > d->maxsize)
			d->flags |= SMTP_DATA_TOO_BIG;
		smtp_data_end_header(d);
	} else
		smtp_data_emit(d, "\r\n", 2);
	d->linelen = 0;
	d->state = SD_BOL;
}

static void
smtp_data_byte(struct smtp_data *d, const char *c)
{
	switch (d->state) {
	case SD_BOL:
		if (*c == '.')
			d->state = SD_DOT; /* unstuffed: the dot is dropped */
		else
			smtp_data_text(d, c, 1);
		break;
	case SD_DOT:
		if (*c == '\r')
			d->state = SD_DOT_CR;
		else
			smtp_data_text(d, c, 1);
		break;
	case SD_DOT_CR:
		if (*c == '\n') {
			smtp_data_flush(d);
			if (d->in_header)
				smtp_data_end_header(d);
			d->state = SD_DONE;
			d->done = true;
			break;
		}
		d->flags |= SMTP_DATA_BARE_EOL; /* CR LF . CR x */
		smtp_data_text(d, c, 1);
		break;
	case SD_CR:
		if (*c == '\n') {
			smtp_data_eol(d);
			break;
		}
		d->flags |= SMTP_DATA_BARE_EOL;
		smtp_data_text(d, c, 1);
		break;
	default:
		smtp_data_text(d, c, 1);
		break;
	}
}

size_t
smtp_data_feed(struct smtp_data *d, const char *in, size_t len)
{
	size_t i = 0, run;

	while (i < len && d->state != SD_DONE) {
		if (d->state == SD_TEXT) {
			/* Fast path: a run of plain text inside a line. */
			for (run = 0; i + run < len && in[i + run] != '\r' &&
			     in[i + run] != '\n';
			     run++)
				;
			if (run > 0) {
				smtp_data_text(d, in + i, run);
				i += run;
				continue;
			}
		}
		smtp_data_byte(d, in + i);
		i++;
	}
	return i;
}

/* What each flag costs the message, the first that is set winning. */
static const struct smtp_data_reject {
	unsigned flag;
	int code;
	const char *text;
	const char *reason; /* for the log */
} smtp_data_rejects[] = {
	{ SMTP_DATA_BARE_EOL, 554, "5.6.0 Message contains bare CR or LF",
	    "bare-eol" },
	{ SMTP_DATA_TOO_BIG, 552, "5.3.4 Message size exceeds fixed limit",
	    "size" },
	{ SMTP_DATA_LONG_LINE, 554, "5.6.0 Line too long", "line-too-long" },
	{ SMTP_DATA_HDR_TOO_BIG, 554, "5.6.0 Header section too large",
	    "header-too-large" },
	{ SMTP_DATA_HDR_NUL, 554, "5.6.0 NUL character in header section",
	    "header-nul" },
};

static const struct smtp_data_reject *
smtp_data_reject_of(const struct smtp_data *d)
{
	size_t i;

	for (i = 0; i < sizeof(smtp_data_rejects) /
		 sizeof(smtp_data_rejects[0]);
	     i++)
		if (d->flags & smtp_data_rejects[i].flag)
			return &smtp_data_rejects[i];
	return NULL;
}

int
smtp_data_verdict(const struct smtp_data *d, char *reply, size_t replylen)
{
	const struct smtp_data_reject *r = smtp_data_reject_of(d);

	if (r == NULL)
		return 0;
	return smtp_fail(reply, replylen, r->code, r->text);
}

/* ------------------------------------------------------------------ */
/* Client I/O: plain or TLS, always with a deadline                    */

static void
smtp_sigterm(int sig)
{
	(void)sig;
	smtp_got_sigterm = 1;
}

static void
smtp_check_sigterm(struct smtp_session *s)
{
	if (smtp_got_sigterm)
		smtp_close(s, "shutdown", "421 4.3.2 %s Service shutting down",
		    s->cfg->hostname);
}

/* Wait until fd is ready for events, or deal with the deadline. */
static void
smtp_io_wait(struct smtp_session *s, short events, time_t deadline,
    enum smtp_wait mode)
{
	struct pollfd pfd = { .fd = s->fd, .events = events };
	struct timespec ts;
	time_t now;
	int r;

	for (;;) {
		if (mode == SMTP_WAIT_CLIENT)
			smtp_check_sigterm(s);
		if ((now = monotime()) >= deadline) {
			if (mode == SMTP_WAIT_SILENT)
				smtp_terminate(s, "timeout");
			smtp_close(s, "timeout",
			    "421 4.4.2 %s Error: timeout exceeded",
			    s->cfg->hostname);
		}
		ts.tv_sec = deadline - now;
		ts.tv_nsec = 0;
		r = ppoll(&pfd, 1, &ts, &smtp_wait_mask);
		if (r == -1 && errno != EINTR)
			fatal("ppoll");
		/* Ready, or an error the next read/write will report. */
		if (r > 0)
			return;
	}
}

/* The TLS layer's wish after a failed call, 0 if it failed for good. */
static short
smtp_ssl_wants(SSL *ssl, int r)
{
	switch (SSL_get_error(ssl, r)) {
	case SSL_ERROR_WANT_READ:
		return POLLIN;
	case SSL_ERROR_WANT_WRITE:
		return POLLOUT;
	default:
		return 0;
	}
}

/* Read what is there (at least one octet); 0 at EOF or on error. */
static size_t
smtp_io_read(struct smtp_session *s, char *buf, size_t len, time_t deadline)
{
	short events;
	ssize_t n;
	int r;

	for (;;) {
		smtp_check_sigterm(s);
		if (s->ssl != NULL) {
			ERR_clear_error();
			r = SSL_read(s->ssl, buf, len > INT_MAX ? INT_MAX :
			    (int)len);
			if (r > 0)
				return (size_t)r;
			if ((events = smtp_ssl_wants(s->ssl, r)) == 0)
				return 0;
		} else {
			n = read(s->fd, buf, len);
			if (n > 0)
				return (size_t)n;
			if (n == 0 || (errno != EAGAIN && errno != EINTR))
				return 0;
			events = POLLIN;
		}
		smtp_io_wait(s, events, deadline, SMTP_WAIT_CLIENT);
	}
}

static void
smtp_io_write(struct smtp_session *s, const char *p, size_t len)
{
	time_t deadline = monotime() + SMTP_CMD_TIMEOUT;
	short events = POLLOUT;
	ssize_t n;
	int r;

	while (len > 0) {
		if (s->ssl != NULL) {
			ERR_clear_error();
			r = SSL_write(s->ssl, p, len > INT_MAX ? INT_MAX :
			    (int)len);
			n = r;
			if (r <= 0 && (events = smtp_ssl_wants(s->ssl, r)) == 0)
				break;
		} else {
			n = write(s->fd, p, len);
			if (n == -1 && errno != EAGAIN && errno != EINTR)
				break;
			events = POLLOUT;
		}
		if (n > 0) {
			p += n;
			len -= (size_t)n;
			continue;
		}
		smtp_io_wait(s, events, deadline, SMTP_WAIT_SILENT);
	}
	if (len > 0) {
		s->write_failed = true;
		smtp_terminate(s, "write-error");
	}
}

static void
smtp_flush(struct smtp_session *s)
{
	if (s->obuf.len == 0)
		return;
	smtp_io_write(s, s->obuf.data, s->obuf.len);
	buf_reset(&s->obuf);
}

/* Queue one reply line; protocol errors count towards SMTP_MAX_ERRORS. */
static void
smtp_reply(struct smtp_session *s, const char *fmt, ...)
{
	char line[1024];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	if (n < 0)
		fatalx("smtp_reply: bad format");
	if ((size_t)n >= sizeof(line))
		n = sizeof(line) - 1;
	buf_add(&s->obuf, line, (size_t)n);
	buf_add(&s->obuf, "\r\n", 2);
	n = atoi(line);
	if ((n >= 500 && n <= 504) || n == 555)
		s->errors++;
}

/* Move unread input to the front and read more. */
static void
smtp_fill(struct smtp_session *s, time_t deadline)
{
	size_t n, old = s->ilen;

	if (s->ipos > 0) {
		memmove(s->ibuf, s->ibuf + s->ipos, s->ilen - s->ipos);
		s->ilen -= s->ipos;
		s->ipos = 0;
		/* No stale copy of an AUTH line lingers behind. */
		explicit_bzero(s->ibuf + s->ilen, old - s->ilen);
	}
	n = smtp_io_read(s, s->ibuf + s->ilen, sizeof(s->ibuf) - s->ilen,
	    deadline);
	if (n == 0)
		smtp_terminate(s, "eof");
	s->ilen += n;
}

/*
 * The next line, up to maxlen octets with its end, NUL-terminated without
 * it.  LF alone ends a command line too (lenient, as every MTA is); a CR
 * or NUL anywhere else in it makes it SMTP_LINE_BAD.  A longer line is
 * read to its end and dropped.
 */
static enum smtp_line
smtp_getline(struct smtp_session *s, size_t maxlen, char **line, size_t *len)
{
	time_t deadline = monotime() + SMTP_CMD_TIMEOUT;
	bool discard = false;
	char *p, *lf;
	size_t n;

	for (;;) {
		p = s->ibuf + s->ipos;
		if ((lf = memchr(p, '\n', s->ilen - s->ipos)) != NULL)
			break;
		if (s->ilen - s->ipos >= maxlen) {
			discard = true;
			explicit_bzero(s->ibuf, s->ilen);
			s->ipos = s->ilen = 0;
		}
		/* Nothing complete left to answer: the replies can go. */
		smtp_flush(s);
		/*
		 * After the handshake and after AUTH a session typically sits
		 * idle: hand the pages that OpenSSL and the login freed back
		 * to the kernel (MADV_DONTNEED), since every page a forked
		 * session has written is private memory.
		 */
		if (s->trim) {
			s->trim = false;
			(void)malloc_trim(0);
		}
		smtp_fill(s, deadline);
	}
	n = (size_t)(lf - p);
	s->ipos += n + 1;
	if (discard || n + 1 > maxlen) {
		explicit_bzero(p, n + 1);
		return SMTP_LINE_TOO_LONG;
	}
	if (n > 0 && p[n - 1] == '\r')
		n--;
	while (n > 0 && smtp_is_space(p[n - 1]))
		n--;
	p[n] = '\0';
	*line = p;
	*len = n;
	if (memchr(p, '\0', n) != NULL || memchr(p, '\r', n) != NULL)
		return SMTP_LINE_BAD;
	return SMTP_LINE_OK;
}

/* ------------------------------------------------------------------ */
/* TLS                                                                 */

static void
smtp_tls_handshake(struct smtp_session *s)
{
	char client[CLIENT_ADDR_LEN], why[128];
	time_t deadline = monotime() + SMTP_CMD_TIMEOUT;
	const char *e;
	short events;
	int r;

	log_sanitize(client, sizeof(client), s->si->client);
	if (s->si->ssl_ctx == NULL || (s->ssl = SSL_new(s->si->ssl_ctx)) ==
	    NULL || SSL_set_fd(s->ssl, s->fd) != 1) {
		log_warnx("event=tls-error client=%s reason=no-tls-context",
		    client);
		SSL_free(s->ssl);
		s->ssl = NULL;
		smtp_terminate(s, "tls-error");
	}
	for (;;) {
		ERR_clear_error();
		if ((r = SSL_accept(s->ssl)) == 1)
			break;
		if ((events = smtp_ssl_wants(s->ssl, r)) == 0) {
			e = ERR_reason_error_string(ERR_peek_last_error());
			log_info("event=tls-error client=%s reason=%s", client,
			    log_sanitize(why, sizeof(why),
				e != NULL ? e : "handshake-failed"));
			/* Nothing of ours is in flight: no close_notify. */
			s->write_failed = true;
			smtp_terminate(s, "tls-error");
		}
		smtp_io_wait(s, events, deadline, SMTP_WAIT_SILENT);
	}
	log_info("event=tls client=%s version=%s cipher=%s", client,
	    SSL_get_version(s->ssl), SSL_get_cipher_name(s->ssl));
	s->trim = true;
}

/* ------------------------------------------------------------------ */
/* IPC with the listener (trusted: anything odd is fatal)               */

static void
smtp_ipc_fatal(struct smtp_session *s, const char *what)
{
	smtp_reply(s, "421 4.3.0 %s Internal error, try again later",
	    s->cfg->hostname);
	s->queue_id[0] = '\0'; /* the channel is what failed */
	if (!s->write_failed)
		smtp_flush(s);
	fatalx("event=session-error %s", what);
}

static void
smtp_ipc_send(struct smtp_session *s, uint32_t type, const void *data,
    size_t len)
{
	ipc_compose(&s->ipc, type, 0, -1, data, len);
	if (ipc_flush_all(&s->ipc) == -1)
		smtp_ipc_fatal(s, "reason=listener-gone");
}

/* Wait for the reply of type with exactly len payload octets (0: any). */
static void
smtp_ipc_wait(struct smtp_session *s, uint32_t type, size_t len,
    struct ipc_msg *msg, bool fd_allowed)
{
	int r;

	r = ipc_wait(&s->ipc, msg, SMTP_IPC_TIMEOUT * 1000);
	if (r == 0)
		smtp_ipc_fatal(s, "reason=listener-timeout");
	if (r < 0)
		smtp_ipc_fatal(s, "reason=listener-gone");
	if (msg->fd != -1 && !fd_allowed) {
		(void)close(msg->fd);
		msg->fd = -1;
		smtp_ipc_fatal(s, "reason=unexpected-fd");
	}
	if (msg->hdr.type != type || (len != 0 && msg->hdr.len != len)) {
		if (msg->fd != -1)
			(void)close(msg->fd);
		smtp_ipc_fatal(s, "reason=unexpected-message");
	}
}

/* ------------------------------------------------------------------ */
/* Session state                                                       */

static void
smtp_enter_state(struct smtp_session *s, enum smtp_state new)
{
	char client[CLIENT_ADDR_LEN];

	if (s->state == new)
		return;
	log_debug("event=state client=%s from=%s to=%s",
	    log_sanitize(client, sizeof(client), s->si->client),
	    smtp_state_names[s->state], smtp_state_names[new]);
	s->state = new;
}

static void
smtp_reset_transaction(struct smtp_session *s)
{
	s->sender[0] = '\0';
	s->body_8bit = false;
	free(s->rcpts);
	s->rcpts = NULL;
	s->nrcpt = 0;
	if (s->state > SMTP_S_HELO)
		smtp_enter_state(s, SMTP_S_HELO);
}

static void
smtp_log_reject(struct smtp_session *s, int code, const char *reason)
{
	char login[MAX_LOGIN], client[CLIENT_ADDR_LEN];

	log_info("event=reject code=%d reason=%s%s%s login=%s client=%s",
	    code, reason, s->queue_id[0] != '\0' ? " id=" : "", s->queue_id,
	    log_sanitize(login, sizeof(login), s->rights.login),
	    log_sanitize(client, sizeof(client), s->si->client));
}

/* Abort the open queue file, if any; never fatal (used while exiting). */
static void
smtp_queue_abort(struct smtp_session *s)
{
	struct ipc_queue_id qid;

	if (s->datafd != -1) {
		(void)close(s->datafd);
		s->datafd = -1;
	}
	if (s->queue_id[0] == '\0')
		return;
	memset(&qid, 0, sizeof(qid));
	strlcpy_msa(qid.id, s->queue_id, sizeof(qid.id));
	s->queue_id[0] = '\0';
	ipc_compose(&s->ipc, IMSG_QUEUE_ABORT, 0, -1, &qid, sizeof(qid));
	(void)ipc_flush_all(&s->ipc);
}

static void
smtp_terminate(struct smtp_session *s, const char *reason)
{
	char client[CLIENT_ADDR_LEN];

	smtp_queue_abort(s);
	if (!s->write_failed) {
		smtp_flush(s);
		if (s->ssl != NULL)
			(void)SSL_shutdown(s->ssl); /* one try, never waits */
	}
	log_info("event=disconnect client=%s reason=%s",
	    log_sanitize(client, sizeof(client), s->si->client), reason);
	/* No atexit handlers: the sandbox need not allow their syscalls. */
	_exit(0);
}

static void
smtp_close(struct smtp_session *s, const char *reason, const char *fmt, ...)
{
	char line[1024];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	smtp_reply(s, "%s", line);
	smtp_terminate(s, reason);
}

/* ------------------------------------------------------------------ */
/* Commands                                                            */

#define SMTP_CMD_ANYTIME 0x1 /* allowed before HELO/EHLO */
#define SMTP_CMD_LONG 0x2 /* may be up to AUTH_LINE_MAX octets */

struct smtp_cmd {
	const char *verb;
	unsigned flags;
	/* Writes its own reply and returns false to stop the command. */
	bool (*check)(struct smtp_session *, const char *);
	void (*run)(struct smtp_session *, char *);
};

static bool
smtp_check_helo(struct smtp_session *s, const char *arg)
{
	if (*arg == '\0') {
		smtp_reply(s, "501 5.5.4 Syntax: EHLO hostname");
		return false;
	}
	if (!smtp_valid_helo(arg)) {
		smtp_reply(s, "501 5.5.4 Invalid domain name");
		return false;
	}
	return true;
}

static void
smtp_greet(struct smtp_session *s, const char *arg)
{
	strlcpy_msa(s->helo, arg, sizeof(s->helo));
	/* RFC 5321 4.1.4: a new greeting resets the transaction. */
	smtp_reset_transaction(s);
	smtp_enter_state(s, SMTP_S_HELO);
}

static void
smtp_run_helo(struct smtp_session *s, char *arg)
{
	smtp_greet(s, arg);
	smtp_reply(s, "250 %s", s->cfg->hostname);
}

static void
smtp_run_ehlo(struct smtp_session *s, char *arg)
{
	smtp_greet(s, arg);
	smtp_reply(s, "250-%s", s->cfg->hostname);
	smtp_reply(s, "250-PIPELINING");
	smtp_reply(s, "250-SIZE %" PRIu64, s->cfg->message_size);
	smtp_reply(s, "250-8BITMIME");
	smtp_reply(s, "250-ENHANCEDSTATUSCODES");
	if (s->ssl == NULL && s->si->tls_mode == LISTEN_STARTTLS)
		smtp_reply(s, "250-STARTTLS");
	if (s->ssl != NULL)
		smtp_reply(s, "250-AUTH PLAIN LOGIN");
	smtp_reply(s, "250 HELP");
}

static bool
smtp_check_starttls(struct smtp_session *s, const char *arg)
{
	if (s->ssl != NULL || s->si->tls_mode != LISTEN_STARTTLS) {
		smtp_reply(s, "503 5.5.1 Error: TLS already active");
		return false;
	}
	if (*arg != '\0') {
		smtp_reply(s, "501 5.5.4 Syntax: STARTTLS");
		return false;
	}
	if (s->si->ssl_ctx == NULL) {
		smtp_reply(s, "454 4.7.0 TLS not available");
		return false;
	}
	return true;
}

/*
 * Forget the rights.  Only the first n patterns are ever written or read
 * (policy_sender_allowed): clearing all MAX_RIGHTS of them would dirty
 * 16 KiB of the session's memory for nothing.
 */
static void
smtp_rights_clear(struct login_rights *r)
{
	size_t n = r->n < MAX_RIGHTS ? r->n : MAX_RIGHTS;

	explicit_bzero(r->patterns, n * sizeof(r->patterns[0]));
	explicit_bzero(r->login, sizeof(r->login));
	r->n = 0;
}

static void
smtp_run_starttls(struct smtp_session *s, char *arg)
{
	(void)arg;
	smtp_reply(s, "220 2.0.0 Ready to start TLS");
	smtp_flush(s);
	/* CVE-2011-0411: nothing sent in clear text may survive into TLS. */
	explicit_bzero(s->ibuf, s->ilen);
	s->ipos = s->ilen = 0;
	smtp_tls_handshake(s);
	/* RFC 3207 4.2: forget everything learnt before. */
	smtp_reset_transaction(s);
	s->helo[0] = '\0';
	s->authed = false;
	smtp_rights_clear(&s->rights);
	smtp_enter_state(s, SMTP_S_CONNECTED);
}

static bool
smtp_check_auth(struct smtp_session *s, const char *arg)
{
	if (s->ssl == NULL) {
		smtp_reply(s, "538 5.7.11 Encryption required for requested "
			      "authentication mechanism");
		return false;
	}
	if (s->authed) {
		smtp_reply(s, "503 5.5.1 Error: already authenticated");
		return false;
	}
	if (s->state >= SMTP_S_MAIL) {
		smtp_reply(s, "503 5.5.1 Error: AUTH not allowed during a "
			      "mail transaction");
		return false;
	}
	if (*arg == '\0') {
		smtp_reply(s, "501 5.5.4 Syntax: AUTH mechanism");
		return false;
	}
	return true;
}

/* One AUTH continuation line; false (with a reply) if there is none. */
static bool
smtp_auth_getline(struct smtp_session *s, char **resp)
{
	size_t len;

	switch (smtp_getline(s, AUTH_LINE_MAX, resp, &len)) {
	case SMTP_LINE_TOO_LONG:
		smtp_reply(s, "500 5.5.2 Line too long");
		return false;
	case SMTP_LINE_BAD:
		explicit_bzero(*resp, len);
		smtp_reply(s, "501 5.5.2 Invalid authentication response");
		return false;
	case SMTP_LINE_OK:
		break;
	}
	if (strcmp(*resp, "*") == 0) {
		smtp_reply(s, "501 5.7.0 Authentication cancelled");
		return false;
	}
	return true;
}

static void
smtp_auth_failed(struct smtp_session *s, const char *user)
{
	char login[MAX_LOGIN], client[CLIENT_ADDR_LEN];

	log_info("event=auth login=%s result=fail client=%s",
	    log_sanitize(login, sizeof(login), user),
	    log_sanitize(client, sizeof(client), s->si->client));
	smtp_reply(s, "535 5.7.8 Authentication credentials invalid");
}

/* The rights that came with AUTH_OK, checked field by field. */
static void
smtp_auth_rights(struct smtp_session *s, const struct ipc_msg *msg,
    const struct ipc_auth_res *res)
{
	const unsigned char *p = msg->data + sizeof(*res);
	uint32_t i;

	if (res->login[0] == '\0')
		smtp_ipc_fatal(s, "reason=auth-empty-login");
	smtp_rights_clear(&s->rights);
	strlcpy_msa(s->rights.login, res->login, sizeof(s->rights.login));
	for (i = 0; i < res->nrights; i++, p += MAX_ADDR) {
		if (memchr(p, '\0', MAX_ADDR) == NULL)
			smtp_ipc_fatal(s, "reason=auth-bad-rights");
		memcpy(s->rights.patterns[i], p, MAX_ADDR);
	}
	s->rights.n = res->nrights;
}

/* Ask auth about user/pass and answer the client. */
static void
smtp_auth_verify(struct smtp_session *s, const char *user, const char *pass)
{
	char login[MAX_LOGIN], client[CLIENT_ADDR_LEN];
	struct ipc_auth_req req;
	struct ipc_auth_res res;
	struct ipc_msg msg;

	memset(&req, 0, sizeof(req));
	strlcpy_msa(req.user, user, sizeof(req.user));
	strlcpy_msa(req.password, pass, sizeof(req.password));
	strlcpy_msa(req.client, s->si->client, sizeof(req.client));
	smtp_ipc_send(s, IMSG_AUTH_REQ, &req, sizeof(req));
	explicit_bzero(&req, sizeof(req));

	smtp_ipc_wait(s, IMSG_AUTH_RES, 0, &msg, false);
	if (msg.hdr.len < sizeof(res))
		smtp_ipc_fatal(s, "reason=auth-short-reply");
	memcpy(&res, msg.data, sizeof(res));
	if (res.nrights > MAX_RIGHTS || !IPC_STR_OK(res.login) ||
	    msg.hdr.len != sizeof(res) + (size_t)res.nrights * MAX_ADDR)
		smtp_ipc_fatal(s, "reason=auth-bad-reply");

	log_sanitize(client, sizeof(client), s->si->client);
	switch (res.status) {
	case AUTH_OK:
		smtp_auth_rights(s, &msg, &res);
		s->authed = true;
		log_info("event=auth login=%s result=ok client=%s",
		    log_sanitize(login, sizeof(login), s->rights.login),
		    client);
		smtp_reply(s, "235 2.7.0 Authentication successful");
		s->trim = true;
		break;
	case AUTH_FAIL:
		smtp_auth_failed(s, user);
		break;
	case AUTH_THROTTLED:
		log_info("event=auth login=%s result=throttled client=%s",
		    log_sanitize(login, sizeof(login), user), client);
		smtp_close(s, "auth-throttled",
		    "421 4.7.0 %s Too many failed authentications, try later",
		    s->cfg->hostname);
	case AUTH_TEMPFAIL:
		log_info("event=auth login=%s result=tempfail client=%s",
		    log_sanitize(login, sizeof(login), user), client);
		smtp_reply(s, "454 4.7.0 Temporary authentication failure");
		break;
	default:
		smtp_ipc_fatal(s, "reason=auth-bad-status");
	}
}

/* Map a decoder's result to a reply; true if the credentials may go on. */
static bool
smtp_auth_decoded(struct smtp_session *s, int code, const char *user)
{
	if (code == 501)
		smtp_reply(s, "501 5.5.2 Invalid authentication response");
	else if (code == 535)
		smtp_auth_failed(s, user);
	return code == 0;
}

static void
smtp_auth_plain(struct smtp_session *s, char *ir)
{
	char user[MAX_LOGIN] = "", pass[MAX_PASSWORD];
	char *resp = ir;
	int code;

	if (resp == NULL) {
		smtp_reply(s, "334 ");
		if (!smtp_auth_getline(s, &resp))
			return;
	}
	code = smtp_auth_plain_parse(resp, user, sizeof(user), pass,
	    sizeof(pass));
	explicit_bzero(resp, strlen(resp));
	if (smtp_auth_decoded(s, code, "-"))
		smtp_auth_verify(s, user, pass);
	explicit_bzero(pass, sizeof(pass));
}

static void
smtp_auth_login(struct smtp_session *s, char *ir)
{
	char user[MAX_LOGIN] = "", pass[MAX_PASSWORD];
	char *resp = ir;
	int code;

	if (resp == NULL) {
		smtp_reply(s, "334 VXNlcm5hbWU6"); /* "Username:" */
		if (!smtp_auth_getline(s, &resp))
			return;
	}
	code = smtp_auth_login_parse(resp, user, sizeof(user));
	explicit_bzero(resp, strlen(resp));
	if (!smtp_auth_decoded(s, code, "-"))
		return;
	smtp_reply(s, "334 UGFzc3dvcmQ6"); /* "Password:" */
	if (!smtp_auth_getline(s, &resp))
		return;
	code = smtp_auth_login_parse(resp, pass, sizeof(pass));
	explicit_bzero(resp, strlen(resp));
	if (smtp_auth_decoded(s, code, user))
		smtp_auth_verify(s, user, pass);
	explicit_bzero(pass, sizeof(pass));
}

static void
smtp_run_auth(struct smtp_session *s, char *arg)
{
	char *ir = NULL;
	size_t n = strcspn(arg, " \t");

	if (arg[n] != '\0') {
		arg[n] = '\0';
		for (ir = arg + n + 1; smtp_is_space(*ir); ir++)
			;
	}
	if (strcasecmp(arg, "PLAIN") == 0)
		smtp_auth_plain(s, ir);
	else if (strcasecmp(arg, "LOGIN") == 0)
		smtp_auth_login(s, ir);
	else
		smtp_reply(s, "504 5.5.4 Unrecognized authentication type");
	/*
	 * No wipe of ir here: reading a continuation line may have moved
	 * the input buffer.  The mechanisms wipe each response as soon as
	 * it is decoded.
	 */
}

static bool
smtp_check_mail(struct smtp_session *s, const char *arg)
{
	(void)arg;
	if (!s->authed) {
		smtp_reply(s, "530 5.7.0 Authentication required");
		return false;
	}
	if (s->state >= SMTP_S_MAIL) {
		smtp_reply(s, "503 5.5.1 Error: nested MAIL command");
		return false;
	}
	return true;
}

/* One more message for this login this hour? */
static bool
smtp_rate_allowed(struct smtp_session *s)
{
	struct ipc_rate_req req;
	struct ipc_rate_res res;
	struct ipc_msg msg;

	memset(&req, 0, sizeof(req));
	strlcpy_msa(req.login, s->rights.login, sizeof(req.login));
	smtp_ipc_send(s, IMSG_RATE_REQ, &req, sizeof(req));
	smtp_ipc_wait(s, IMSG_RATE_RES, sizeof(res), &msg, false);
	memcpy(&res, msg.data, sizeof(res));
	if (res.allowed != 0 && res.allowed != 1)
		smtp_ipc_fatal(s, "reason=rate-bad-reply");
	return res.allowed == 1;
}

static void
smtp_run_mail(struct smtp_session *s, char *arg)
{
	char reply[128], from[MAX_ADDR], login[MAX_LOGIN];
	struct smtp_mail_args m;
	int code;

	code = smtp_parse_mail(arg, s->cfg->domain, s->cfg->message_size, &m,
	    reply, sizeof(reply));
	if (code != 0) {
		if (code == 552)
			smtp_log_reject(s, code, "size");
		smtp_reply(s, "%d %s", code, reply);
		return;
	}
	if (m.addr[0] != '\0' && !policy_sender_allowed(&s->rights, m.addr)) {
		smtp_log_reject(s, 553, "sender-not-allowed");
		smtp_reply(s, "553 5.7.1 Sender address <%s> not allowed for %s",
		    m.addr, s->rights.login);
		return;
	}
	if (!smtp_rate_allowed(s)) {
		smtp_log_reject(s, 450, "rate-limit");
		smtp_reply(s, "450 4.7.1 Message rate limit exceeded for %s",
		    s->rights.login);
		return;
	}
	strlcpy_msa(s->sender, m.addr, sizeof(s->sender));
	s->body_8bit = m.body_8bit;
	smtp_enter_state(s, SMTP_S_MAIL);
	log_info("event=mail from=%s login=%s",
	    log_sanitize(from, sizeof(from), m.addr),
	    log_sanitize(login, sizeof(login), s->rights.login));
	smtp_reply(s, "250 2.1.0 Ok");
}

static bool
smtp_check_rcpt(struct smtp_session *s, const char *arg)
{
	(void)arg;
	if (s->state < SMTP_S_MAIL) {
		smtp_reply(s, "503 5.5.1 Error: need MAIL command");
		return false;
	}
	return true;
}

static size_t
smtp_rcpt_limit(const struct config *cfg)
{
	size_t limit = cfg->max_recipients;

	if (limit == 0 || limit > SMTP_RCPT_IPC_MAX)
		limit = SMTP_RCPT_IPC_MAX;
	return limit;
}

static void
smtp_run_rcpt(struct smtp_session *s, char *arg)
{
	char reply[128], addr[MAX_ADDR];
	size_t i;
	int code;

	code = smtp_parse_rcpt(arg, s->cfg->domain, addr, sizeof(addr), reply,
	    sizeof(reply));
	if (code != 0) {
		smtp_reply(s, "%d %s", code, reply);
		return;
	}
	for (i = 0; i < s->nrcpt; i++)
		if (strcmp(s->rcpts[i].addr, addr) == 0)
			break;
	if (i == s->nrcpt) {
		if (s->nrcpt >= smtp_rcpt_limit(s->cfg)) {
			smtp_reply(s, "452 4.5.3 Too many recipients");
			return;
		}
		s->rcpts = xreallocarray(s->rcpts, s->nrcpt + 1,
		    sizeof(*s->rcpts));
		memset(&s->rcpts[s->nrcpt], 0, sizeof(s->rcpts[0]));
		strlcpy_msa(s->rcpts[s->nrcpt].addr, addr,
		    sizeof(s->rcpts[0].addr));
		s->nrcpt++;
	}
	smtp_enter_state(s, SMTP_S_RCPT);
	smtp_reply(s, "250 2.1.5 Ok");
}

static bool
smtp_check_data(struct smtp_session *s, const char *arg)
{
	if (s->state < SMTP_S_MAIL) {
		smtp_reply(s, "503 5.5.1 Error: need MAIL command");
		return false;
	}
	if (s->state < SMTP_S_RCPT) {
		smtp_reply(s, "503 5.5.1 Error: need RCPT command");
		return false;
	}
	if (*arg != '\0') {
		smtp_reply(s, "501 5.5.4 Syntax: DATA");
		return false;
	}
	return true;
}

static bool
smtp_valid_queue_id(const char *id)
{
	size_t i;

	for (i = 0; id[i] != '\0'; i++)
		if (!((id[i] >= '0' && id[i] <= '9') ||
			(id[i] >= 'a' && id[i] <= 'f')))
			return false;
	return i == QUEUE_ID_LEN;
}

/* A new queue file: its id and a descriptor to write it. */
static bool
smtp_queue_create(struct smtp_session *s)
{
	struct ipc_queue_created res;
	struct ipc_msg msg;

	smtp_ipc_send(s, IMSG_QUEUE_CREATE, NULL, 0);
	smtp_ipc_wait(s, IMSG_QUEUE_CREATE_RES, sizeof(res), &msg, true);
	memcpy(&res, msg.data, sizeof(res));
	if (res.status != 0) {
		if (msg.fd != -1)
			(void)close(msg.fd);
		log_warnx("event=queue-error op=create status=%d",
		    (int)res.status);
		return false;
	}
	if (msg.fd == -1 || !IPC_STR_OK(res.id) ||
	    !smtp_valid_queue_id(res.id)) {
		if (msg.fd != -1)
			(void)close(msg.fd);
		smtp_ipc_fatal(s, "reason=queue-bad-create");
	}
	strlcpy_msa(s->queue_id, res.id, sizeof(s->queue_id));
	s->datafd = msg.fd;
	s->datasize = 0;
	s->data_errno = 0;
	s->policy_code = 0;
	s->policy_reply[0] = '\0';
	return true;
}

static int
smtp_data_write(struct smtp_session *s, const char *p, size_t len)
{
	if (write_all(s->datafd, p, len) == -1) {
		s->data_errno = errno;
		return -1;
	}
	s->datasize += len;
	return 0;
}

static int
smtp_data_body(void *arg, const char *p, size_t len)
{
	return smtp_data_write(arg, p, len);
}

/* The header section is complete: let policy check and rewrite it. */
static int
smtp_data_header(void *arg, const char *hdr, size_t len)
{
	struct smtp_session *s = arg;
	struct policy_ctx pc;
	struct buf out;
	int code, rc;

	memset(&pc, 0, sizeof(pc));
	pc.cfg = s->cfg;
	pc.rights = &s->rights;
	pc.sender = s->sender;
	pc.client = s->si->client;
	pc.helo = s->helo;
	pc.tls_version = s->ssl != NULL ? SSL_get_version(s->ssl) : NULL;
	pc.tls_cipher = s->ssl != NULL ? SSL_get_cipher_name(s->ssl) : NULL;
	pc.queue_id = s->queue_id;
	pc.now = time(NULL);

	buf_init(&out);
	code = policy_apply(&pc, hdr, len, &out, s->policy_reply,
	    sizeof(s->policy_reply));
	if (code != 0) {
		if (code < 400 || code > 599 || s->policy_reply[0] == '\0') {
			log_warnx("event=policy-error code=%d", code);
			code = 451;
			strlcpy_msa(s->policy_reply,
			    "4.3.0 Local error in processing",
			    sizeof(s->policy_reply));
		}
		s->policy_code = code;
		rc = -1;
	} else
		rc = smtp_data_write(s, out.data != NULL ? out.data : "",
		    out.len);
	buf_free(&out);
	return rc;
}

/* Read the message up to CR LF . CR LF, whatever happens on the way. */
static void
smtp_data_receive(struct smtp_session *s, struct smtp_data *d)
{
	time_t deadline;

	for (;;) {
		s->ipos += smtp_data_feed(d, s->ibuf + s->ipos,
		    s->ilen - s->ipos);
		if (d->done)
			return;
		s->ipos = s->ilen = 0;
		deadline = monotime() + SMTP_DATA_TIMEOUT;
		if ((s->ilen = smtp_io_read(s, s->ibuf, sizeof(s->ibuf),
			 deadline)) == 0)
			smtp_terminate(s, "eof");
	}
}

/* Everything received and written: make it durable, then say so. */
static void
smtp_queue_commit(struct smtp_session *s)
{
	char login[MAX_LOGIN];
	struct ipc_envelope env;
	struct ipc_queue_committed res;
	struct ipc_msg msg;
	unsigned char *p;
	size_t len = sizeof(env) + s->nrcpt * sizeof(struct ipc_rcpt);

	memset(&env, 0, sizeof(env));
	strlcpy_msa(env.id, s->queue_id, sizeof(env.id));
	strlcpy_msa(env.sender, s->sender, sizeof(env.sender));
	strlcpy_msa(env.login, s->rights.login, sizeof(env.login));
	strlcpy_msa(env.client, s->si->client, sizeof(env.client));
	strlcpy_msa(env.helo, s->helo, sizeof(env.helo));
	env.size = s->datasize;
	env.body_8bit = s->body_8bit;
	env.nrcpt = (uint32_t)s->nrcpt;
	p = xmalloc(len);
	memcpy(p, &env, sizeof(env));
	memcpy(p + sizeof(env), s->rcpts, s->nrcpt * sizeof(struct ipc_rcpt));
	smtp_ipc_send(s, IMSG_QUEUE_COMMIT, p, len);
	free(p);

	smtp_ipc_wait(s, IMSG_QUEUE_COMMIT_RES, sizeof(res), &msg, false);
	memcpy(&res, msg.data, sizeof(res));
	if (!IPC_STR_OK(res.id) || strcmp(res.id, s->queue_id) != 0)
		smtp_ipc_fatal(s, "reason=queue-bad-commit");
	if (res.status != 0) {
		log_warnx("event=queue-error op=commit id=%s status=%d",
		    s->queue_id, (int)res.status);
		smtp_queue_abort(s);
		if (res.status == ENOSPC || res.status == EDQUOT)
			smtp_reply(s, "452 4.3.1 Insufficient system storage");
		else
			smtp_reply(s, "451 4.3.0 Local error in processing");
		return;
	}
	log_info("event=queued id=%s size=%" PRIu64 " nrcpt=%zu login=%s",
	    s->queue_id, s->datasize, s->nrcpt,
	    log_sanitize(login, sizeof(login), s->rights.login));
	smtp_reply(s, "250 2.0.0 Ok: queued as %s", s->queue_id);
	s->queue_id[0] = '\0';
}

/*
 * The reply owed for a message that cannot be queued, 0 if none.  *reason
 * is what to log, NULL when policy.c has logged the rejection itself.
 */
static int
smtp_data_rejection(struct smtp_session *s, const struct smtp_data *d,
    char *reply, size_t replylen, const char **reason)
{
	const struct smtp_data_reject *r;

	if ((r = smtp_data_reject_of(d)) != NULL) {
		*reason = r->reason;
		return smtp_fail(reply, replylen, r->code, r->text);
	}
	if (s->policy_code != 0) {
		*reason = NULL;
		strlcpy_msa(reply, s->policy_reply, replylen);
		return s->policy_code;
	}
	if (s->data_errno != 0) {
		errno = s->data_errno;
		log_warn("event=queue-error op=write id=%s", s->queue_id);
		*reason = "storage";
		if (s->data_errno == ENOSPC || s->data_errno == EDQUOT)
			return smtp_fail(reply, replylen, 452,
			    "4.3.1 Insufficient system storage");
		return smtp_fail(reply, replylen, 451,
		    "4.3.0 Local error in processing");
	}
	return 0;
}

static void
smtp_run_data(struct smtp_session *s, char *arg)
{
	char reply[MAX_REPLY];
	struct smtp_data *d;
	const char *reason = "";
	int code;

	(void)arg;
	if (!smtp_queue_create(s)) {
		smtp_reply(s, "451 4.3.0 Queue unavailable");
		return;
	}
	smtp_enter_state(s, SMTP_S_DATA);
	smtp_reply(s, "354 End data with <CR><LF>.<CR><LF>");
	smtp_flush(s);

	d = xmalloc(sizeof(*d));
	smtp_data_init(d, s->cfg->message_size, smtp_data_header,
	    smtp_data_body, s);
	smtp_data_receive(s, d);
	code = smtp_data_rejection(s, d, reply, sizeof(reply), &reason);
	smtp_data_free(d);
	free(d);
	(void)close(s->datafd);
	s->datafd = -1;

	if (code != 0) {
		if (reason != NULL)
			smtp_log_reject(s, code, reason);
		smtp_queue_abort(s);
		/* The content's fault, not a protocol error: not counted. */
		smtp_reply(s, "%d %s", code, reply);
	} else
		smtp_queue_commit(s);
	smtp_reset_transaction(s);
}

static void
smtp_run_rset(struct smtp_session *s, char *arg)
{
	(void)arg;
	smtp_reset_transaction(s);
	smtp_reply(s, "250 2.0.0 Ok");
}

static void
smtp_run_noop(struct smtp_session *s, char *arg)
{
	(void)arg;
	smtp_reply(s, "250 2.0.0 Ok");
}

static void
smtp_run_quit(struct smtp_session *s, char *arg)
{
	(void)arg;
	smtp_reply(s, "221 2.0.0 Bye");
	smtp_terminate(s, "quit");
}

static void
smtp_run_help(struct smtp_session *s, char *arg)
{
	(void)arg;
	smtp_reply(s, "214 2.0.0 Commands: EHLO HELO STARTTLS AUTH MAIL RCPT "
		      "DATA RSET NOOP QUIT HELP VRFY");
}

static void
smtp_run_vrfy(struct smtp_session *s, char *arg)
{
	(void)arg;
	smtp_reply(s, "252 2.5.2 Cannot VRFY user");
}

static void
smtp_run_expn(struct smtp_session *s, char *arg)
{
	(void)arg;
	smtp_reply(s, "502 5.5.1 Error: command not implemented");
}

static const struct smtp_cmd smtp_cmds[] = {
	{ "HELO", SMTP_CMD_ANYTIME, smtp_check_helo, smtp_run_helo },
	{ "EHLO", SMTP_CMD_ANYTIME, smtp_check_helo, smtp_run_ehlo },
	{ "STARTTLS", SMTP_CMD_ANYTIME, smtp_check_starttls,
	    smtp_run_starttls },
	{ "AUTH", SMTP_CMD_LONG, smtp_check_auth, smtp_run_auth },
	{ "MAIL", 0, smtp_check_mail, smtp_run_mail },
	{ "RCPT", 0, smtp_check_rcpt, smtp_run_rcpt },
	{ "DATA", 0, smtp_check_data, smtp_run_data },
	{ "RSET", SMTP_CMD_ANYTIME, NULL, smtp_run_rset },
	{ "NOOP", SMTP_CMD_ANYTIME, NULL, smtp_run_noop },
	{ "QUIT", SMTP_CMD_ANYTIME, NULL, smtp_run_quit },
	{ "HELP", SMTP_CMD_ANYTIME, NULL, smtp_run_help },
	{ "VRFY", 0, NULL, smtp_run_vrfy },
	{ "EXPN", 0, NULL, smtp_run_expn },
};

static const struct smtp_cmd *
smtp_find_command(const char *line, const char **arg)
{
	const char *verb;
	size_t i;

	if ((verb = smtp_command_lookup(line, arg)) == NULL)
		return NULL;
	for (i = 0; i < sizeof(smtp_cmds) / sizeof(smtp_cmds[0]); i++)
		if (strcmp(smtp_cmds[i].verb, verb) == 0)
			return &smtp_cmds[i];
	return NULL;
}

static void
smtp_dispatch(struct smtp_session *s, char *line, size_t len)
{
	const struct smtp_cmd *cmd;
	const char *arg;
	bool ran = false;

	cmd = smtp_find_command(line, &arg);
	if (len + 2 > SMTP_CMD_LINE_MAX &&
	    (cmd == NULL || !(cmd->flags & SMTP_CMD_LONG)))
		smtp_reply(s, "500 5.5.2 Line too long");
	else if (cmd == NULL)
		smtp_reply(s, "500 5.5.2 Error: command not recognized");
	else if (s->state == SMTP_S_CONNECTED &&
	    !(cmd->flags & SMTP_CMD_ANYTIME))
		smtp_reply(s, "503 5.5.1 Error: send HELO/EHLO first");
	else if (cmd->check == NULL || cmd->check(s, arg)) {
		/* arg points into s->ibuf, which is ours to modify. */
		cmd->run(s, line + (arg - line));
		ran = true;
	}
	/* A refused AUTH line may hold a password; a run wiped its own. */
	if (!ran && cmd != NULL && (cmd->flags & SMTP_CMD_LONG))
		explicit_bzero(line, len);
}

static void
smtp_next_command(struct smtp_session *s)
{
	char *line = NULL;
	size_t len = 0;

	smtp_check_sigterm(s);
	switch (smtp_getline(s, AUTH_LINE_MAX, &line, &len)) {
	case SMTP_LINE_TOO_LONG:
		smtp_reply(s, "500 5.5.2 Line too long");
		break;
	case SMTP_LINE_BAD:
		explicit_bzero(line, len);
		smtp_reply(s, "500 5.5.2 Error: invalid character in command");
		break;
	case SMTP_LINE_OK:
		smtp_dispatch(s, line, len);
		break;
	}
	if (s->errors >= SMTP_MAX_ERRORS)
		smtp_close(s, "errors", "421 4.7.0 Too many errors");
}

/* ------------------------------------------------------------------ */
/* Entry point                                                         */

/* Signals and the socket mode: set before the sandbox, as the listener
 * left them for itself (SIGTERM default, SIGHUP its own, blocking). */
static void
smtp_prepare_process(int fd)
{
	struct sigaction sa;
	sigset_t set;
	int flags;

	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = smtp_sigterm; /* delivered only inside ppoll */
	if (sigaction(SIGTERM, &sa, NULL) == -1)
		fatal("sigaction");
	sa.sa_handler = SIG_IGN;
	if (sigaction(SIGPIPE, &sa, NULL) == -1 ||
	    sigaction(SIGHUP, &sa, NULL) == -1)
		fatal("sigaction");
	sigemptyset(&set);
	sigaddset(&set, SIGTERM);
	if (sigprocmask(SIG_BLOCK, &set, &smtp_wait_mask) == -1)
		fatal("sigprocmask");
	sigdelset(&smtp_wait_mask, SIGTERM);
	/* Non-blocking, so that no read or write outlives its deadline. */
	if ((flags = fcntl(fd, F_GETFL)) == -1 ||
	    fcntl(fd, F_SETFL, flags | O_NONBLOCK) == -1)
		fatal("fcntl");
}

void
session_main(struct config *cfg, int listener_fd,
    const struct session_info *si)
{
	char client[CLIENT_ADDR_LEN];
	struct smtp_session *s;

	smtp_prepare_process(si->client_fd);
	sandbox_enter(ROLE_SESSION);

	/*
	 * Not calloc(): on the heap shared copy-on-write with the listener
	 * it would write zeros over some 34 KiB of the listener's pages, a
	 * private copy of each.  Fresh anonymous pages cost nothing until
	 * used, and most of the input buffer and the rights never are.
	 * Never unmapped: the session ends with the process.
	 */
	s = mmap(NULL, sizeof(*s), PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (s == MAP_FAILED)
		fatal("mmap");
	s->cfg = cfg;
	s->si = si;
	s->fd = si->client_fd;
	s->datafd = -1;
	s->state = SMTP_S_CONNECTED;
	ipc_init(&s->ipc, listener_fd);
	buf_init(&s->obuf);

	log_info("event=connect client=%s tls=%s",
	    log_sanitize(client, sizeof(client), si->client),
	    si->tls_mode == LISTEN_IMPLICIT ? "implicit" : "starttls");
	if (si->tls_mode == LISTEN_IMPLICIT)
		smtp_tls_handshake(s);
	smtp_reply(s, "220 %s ESMTP msa", cfg->hostname);
	for (;;)
		smtp_next_command(s);
}

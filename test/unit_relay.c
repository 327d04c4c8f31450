/*
 * unit_relay.c - the SMTP client of the relay: reply parsing, EHLO
 * capabilities, dot-stuffing, job checks, and whole deliveries against a
 * scripted SMTP server that the test forks on loopback (plain, STARTTLS
 * and implicit TLS, with a certificate made on the fly); connection reuse:
 * destination keys, worker slots, idle expiry, several jobs over one kept
 * connection, transparent reconnection and TLS session resumption.
 */
#include <sys/socket.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "msa.h"
#include "test/tap.h"

/* ------------------------------------------------------------------ */
/* Reply parser                                                        */

static int
feed(struct relay_reply *r, const char *line)
{
	return relay_reply_feed(r, line, strlen(line));
}

static void
test_replies(void)
{
	struct relay_reply r;
	char longline[3000];
	int i, rc = 0;

	relay_reply_init(&r);
	is_int(feed(&r, "250 OK"), 1, "a one-line reply is complete");
	is_int(r.code, 250, "its code is read");
	is_str(r.text, "250 OK", "its text is kept whole");

	relay_reply_init(&r);
	is_int(feed(&r, "354"), 1, "a bare code is a complete reply");

	relay_reply_init(&r);
	ok(feed(&r, "250-mx.example.org") == 0
		&& feed(&r, "250-PIPELINING") == 0
		&& feed(&r, "250 SIZE 1000") == 1,
	    "a multiline reply ends at the line with a space after the code");
	is_int(r.nlines, 3, "every line of it is kept");

	relay_reply_init(&r);
	(void)feed(&r, "550 5.1.1 <bob@example.org>: no such user");
	is_str(r.enh, "5.1.1", "the enhanced status code is found");
	is_str(r.text, "550 5.1.1 <bob@example.org>: no such user",
	    "the reply text keeps code, enhanced code and text");

	relay_reply_init(&r);
	(void)feed(&r, "550 4.1.1 mismatched class");
	is_str(r.enh, "", "an enhanced code of another class is not taken");

	relay_reply_init(&r);
	(void)feed(&r, "451-4.3.0 first");
	(void)feed(&r, "451 4.3.0 second");
	is_str(r.text, "451 4.3.0 first 4.3.0 second",
	    "multiline text is joined with spaces for logs and bounces");

	relay_reply_init(&r);
	is_int(feed(&r, "25"), -1, "a two-digit line is malformed");
	relay_reply_init(&r);
	is_int(feed(&r, "hello there"), -1, "a line without code is malformed");
	relay_reply_init(&r);
	is_int(feed(&r, "250x"), -1, "a code glued to text is malformed");
	relay_reply_init(&r);
	is_int(feed(&r, "650 what"), -1, "a code outside 2xx-5xx is malformed");
	relay_reply_init(&r);
	(void)feed(&r, "250-first");
	is_int(feed(&r, "251 second"), -1,
	    "lines of one reply with different codes are malformed");

	memset(longline, 'x', sizeof(longline) - 1);
	longline[sizeof(longline) - 1] = '\0';
	memcpy(longline, "250 ", 4);
	relay_reply_init(&r);
	is_int(feed(&r, longline), -1, "an over-long reply line is refused");

	relay_reply_init(&r);
	for (i = 0; i < 150 && rc == 0; i++)
		rc = feed(&r, "250-again");
	is_int(rc, -1, "an endless multiline reply is cut off");
}

static void
test_ehlo(void)
{
	static const char *lines[] = {
		"250-PIPELINING.example.org greets relay.test",
		"250-PIPELINING",
		"250-SIZE 10240000",
		"250-STARTTLS",
		"250-AUTH PLAIN LOGIN",
		"250-8BITMIME",
		"250 ENHANCEDSTATUSCODES",
	};
	struct relay_reply r;
	struct relay_caps caps;
	size_t i;

	relay_reply_init(&r);
	for (i = 0; i < sizeof(lines) / sizeof(lines[0]); i++)
		(void)feed(&r, lines[i]);
	relay_ehlo_parse(&r, &caps);
	ok(caps.pipelining, "EHLO: PIPELINING is seen");
	ok(caps.size && caps.size_max == 10240000, "EHLO: SIZE and its limit");
	ok(caps.starttls, "EHLO: STARTTLS is seen");
	ok(caps.auth_plain && caps.auth_login, "EHLO: AUTH PLAIN LOGIN");
	ok(caps.eightbitmime, "EHLO: 8BITMIME is seen");
	ok(caps.enhanced, "EHLO: ENHANCEDSTATUSCODES is seen");

	relay_reply_init(&r);
	(void)feed(&r, "250-STARTTLS.example.org");
	(void)feed(&r, "250-AUTH=LOGIN");
	(void)feed(&r, "250 SIZE");
	relay_ehlo_parse(&r, &caps);
	ok(!caps.starttls, "EHLO: the greeting line is not a keyword");
	ok(caps.auth_login && !caps.auth_plain, "EHLO: old AUTH=LOGIN form");
	ok(caps.size && caps.size_max == 0, "EHLO: SIZE without a limit");
}

/* ------------------------------------------------------------------ */
/* Dot-stuffing                                                        */

static void
stuff(bool *bol, const char *in, struct buf *out)
{
	char tmp[256];
	size_t n;

	n = relay_dotstuff(bol, in, strlen(in), tmp);
	buf_add(out, tmp, n);
}

static void
test_dotstuff(void)
{
	struct buf out;
	bool bol;

	buf_init(&out);
	bol = true;
	stuff(&bol, "a\r\n.b\r\nc.d\r\n", &out);
	is_str(out.data, "a\r\n..b\r\nc.d\r\n",
	    "a dot starting a line is doubled, one inside is not");

	buf_reset(&out);
	bol = true;
	stuff(&bol, ".first\r\n", &out);
	is_str(out.data, "..first\r\n", "a dot at the very start is doubled");

	buf_reset(&out);
	bol = true;
	stuff(&bol, "abc\r\n", &out);
	stuff(&bol, ".x\r\n", &out);
	is_str(out.data, "abc\r\n..x\r\n",
	    "a chunk that starts a line with a dot is stuffed");

	buf_reset(&out);
	bol = true;
	stuff(&bol, "abc\r", &out);
	stuff(&bol, "\n.", &out);
	stuff(&bol, ".\r\n", &out);
	is_str(out.data, "abc\r\n...\r\n",
	    "a line start split across chunks is still seen");

	buf_reset(&out);
	bol = true;
	stuff(&bol, "abc.", &out);
	stuff(&bol, ".def\r\n", &out);
	is_str(out.data, "abc..def\r\n",
	    "a chunk that starts mid-line with a dot is left alone");
	buf_free(&out);
}

/* ------------------------------------------------------------------ */
/* Job payload checks                                                  */

static size_t
make_job(unsigned char *buf, const char *id, uint32_t nrcpt, const char **rcpts)
{
	struct ipc_relay_job job;
	struct ipc_rcpt r;
	uint32_t i;

	memset(&job, 0, sizeof(job));
	strlcpy_msa(job.id, id, sizeof(job.id));
	strlcpy_msa(job.sender, "alice@example.org", sizeof(job.sender));
	strlcpy_msa(job.domain, "example.net", sizeof(job.domain));
	job.nrcpt = nrcpt;
	memcpy(buf, &job, sizeof(job));
	for (i = 0; rcpts != NULL && rcpts[i] != NULL; i++) {
		memset(&r, 0, sizeof(r));
		strlcpy_msa(r.addr, rcpts[i], sizeof(r.addr));
		memcpy(buf + sizeof(job) + i * sizeof(r), &r, sizeof(r));
	}
	return sizeof(job) + i * sizeof(r);
}

static void
test_job_parse(void)
{
	static unsigned char
	    buf[sizeof(struct ipc_relay_job) + 4 * sizeof(struct ipc_rcpt)];
	const char *two[] = { "bob@example.net", "carol@example.net", NULL };
	const char *evil[] = { "bob@example.net>\r\nDATA", NULL };
	const struct ipc_rcpt *rcpts;
	struct ipc_relay_job job;
	char err[256];
	size_t len;

	len = make_job(buf, "0123456789abcdef", 2, two);
	ok(relay_job_parse(buf, len, &job, &rcpts, err, sizeof(err)) == 0
		&& job.nrcpt == 2
		&& strcmp(rcpts[1].addr, "carol@example.net") == 0,
	    "a well-formed job is accepted");
	ok(relay_job_parse(buf, len - 1, &job, &rcpts, err, sizeof(err)) == -1,
	    "a job one byte short is refused");
	len = make_job(buf, "0123456789abcdef", 3, two);
	ok(relay_job_parse(buf, len, &job, &rcpts, err, sizeof(err)) == -1,
	    "a recipient count that does not match the payload is refused");
	len = make_job(buf, "../../etc/passwd", 2, two);
	ok(relay_job_parse(buf, len, &job, &rcpts, err, sizeof(err)) == -1,
	    "a job id that is not hex is refused");
	len = make_job(buf, "0123456789abcdef", 1, evil);
	ok(relay_job_parse(buf, len, &job, &rcpts, err, sizeof(err)) == -1,
	    "an address with CRLF cannot inject SMTP commands");
	len = make_job(buf, "0123456789abcdef", 2, two);
	memset(buf + offsetof(struct ipc_relay_job, sender), 'x', MAX_ADDR);
	ok(relay_job_parse(buf, len, &job, &rcpts, err, sizeof(err)) == -1,
	    "an unterminated sender is refused");
}

/* ------------------------------------------------------------------ */
/* A scripted SMTP server                                              */

#define MAXCONN 3

struct script {
	const char *greeting; /* NULL: "220 test ESMTP"; "" : say nothing */
	const char *ehlo; /* whole reply, CRLF lines */
	const char *helo;
	const char *starttls; /* reply to STARTTLS */
	bool tls_garbage; /* after "220" send garbage, no handshake */
	bool implicit; /* TLS before the greeting */
	const char *auth[3]; /* replies to AUTH and its continuations */
	const char *mail;
	const char *rcpt[8];
	const char *data;
	const char *final;
	const char *rset; /* reply to RSET (default 250) */
	int close_after; /* hang up after so many final replies (0: never) */
};

struct server {
	pid_t pid;
	uint16_t port;
	int out; /* read end: the transcript */
};

struct sio {
	int fd;
	SSL *ssl;
	char buf[4096];
	size_t pos, len;
};

static SSL_CTX *srv_ctx;
static X509 *test_cert;

static int
sio_write(struct sio *s, const char *p)
{
	size_t len = strlen(p);

	if (s->ssl != NULL)
		return SSL_write(s->ssl, p, (int)len) == (int)len ? 0 : -1;
	return write_all(s->fd, p, len);
}

/* One line including its LF into out; 0 at EOF. */
static size_t
sio_line(struct sio *s, char *out, size_t outlen)
{
	size_t o = 0;
	int n;

	while (o + 1 < outlen) {
		if (s->pos == s->len) {
			n = s->ssl != NULL
			    ? SSL_read(s->ssl, s->buf, sizeof(s->buf))
			    : (int)read(s->fd, s->buf, sizeof(s->buf));
			if (n <= 0)
				break;
			s->pos = 0;
			s->len = (size_t)n;
		}
		out[o++] = s->buf[s->pos++];
		if (out[o - 1] == '\n')
			break;
	}
	out[o] = '\0';
	return o;
}

static const char *
dflt(const char *s, const char *d)
{
	return s != NULL ? s : d;
}

static bool
tls_accept(struct sio *s)
{
	s->ssl = SSL_new(srv_ctx);
	SSL_set_fd(s->ssl, s->fd);
	s->pos = s->len = 0;
	return SSL_accept(s->ssl) == 1;
}

/* The message up to its lone dot: false if the connection ended. */
static bool
serve_data(struct sio *s, const struct script *sc, struct buf *tr)
{
	char line[2048];

	for (;;) {
		if (sio_line(s, line, sizeof(line)) == 0)
			return false;
		buf_addstr(tr, line);
		if (strcmp(line, ".\r\n") == 0)
			break;
	}
	(void)sio_write(s, dflt(sc->final, "250 2.0.0 Ok: queued\r\n"));
	return true;
}

static void
serve_conn(int fd, const struct script *sc, struct buf *tr)
{
	struct sio s = { .fd = fd };
	char line[2048], verb[5];
	const char *reply, *last = "";
	size_t nrcpt = 0, nauth = 0;
	int finals = 0;

	if (sc->implicit && !tls_accept(&s))
		return;
	if (sc->greeting != NULL && *sc->greeting == '\0') {
		while (sio_line(&s, line, sizeof(line)) > 0)
			; /* silent: wait for the client to give up */
		return;
	}
	(void)sio_write(&s, dflt(sc->greeting, "220 test ESMTP\r\n"));
	while (sio_line(&s, line, sizeof(line)) > 0) {
		buf_addstr(tr, line);
		memset(verb, 0, sizeof(verb));
		memcpy(verb, line, strlen(line) < 4 ? strlen(line) : 4);
		if (strncmp(last, "334", 3) == 0)
			reply = dflt(sc->auth[nauth++], "535 5.7.8 no\r\n");
		else if (strcasecmp(verb, "EHLO") == 0)
			reply
			    = dflt(sc->ehlo, "250-test\r\n250 PIPELINING\r\n");
		else if (strcasecmp(verb, "HELO") == 0)
			reply = dflt(sc->helo, "250 test\r\n");
		else if (strcasecmp(verb, "STAR") == 0)
			reply = dflt(sc->starttls, "454 4.7.0 no TLS\r\n");
		else if (strcasecmp(verb, "AUTH") == 0)
			reply = dflt(sc->auth[nauth++], "535 5.7.8 no\r\n");
		else if (strcasecmp(verb, "MAIL") == 0)
			reply = dflt(sc->mail, "250 2.1.0 Ok\r\n");
		else if (strcasecmp(verb, "RCPT") == 0)
			reply = dflt(nrcpt < 8 ? sc->rcpt[nrcpt++] : NULL,
			    "250 2.1.5 Ok\r\n");
		else if (strcasecmp(verb, "DATA") == 0)
			reply = dflt(sc->data, "354 End data with .\r\n");
		else if (strcasecmp(verb, "QUIT") == 0)
			reply = "221 2.0.0 Bye\r\n";
		else if (strcasecmp(verb, "RSET") == 0)
			reply = dflt(sc->rset, "250 2.0.0 Ok\r\n");
		else
			reply = "502 5.5.2 unknown\r\n";
		last = reply;
		if (sio_write(&s, reply) == -1)
			break;
		if (strcasecmp(verb, "QUIT") == 0)
			break;
		if (strcasecmp(verb, "STAR") == 0
		    && strncmp(reply, "220", 3) == 0) {
			if (sc->tls_garbage) {
				(void)write_all(fd, "garbage\r\n\r\n", 11);
				break;
			}
			if (!tls_accept(&s))
				break;
			buf_addstr(tr, "<TLS>\r\n");
		}
		if (strncmp(reply, "421", 3) == 0)
			break;
		if (strcasecmp(verb, "DATA") == 0
		    && strncmp(reply, "354", 3) == 0) {
			if (!serve_data(&s, sc, tr))
				break;
			if (++finals == sc->close_after)
				break;
		}
	}
	if (s.ssl != NULL) {
		(void)SSL_shutdown(s.ssl);
		SSL_free(s.ssl);
	}
}

/* Serve scripts[0..n) on successive connections, then report. */
static struct server
server_start(const struct script *scripts, size_t n)
{
	struct server srv = { .pid = -1 };
	struct sockaddr_in sin;
	socklen_t len = sizeof(sin);
	struct pollfd pfd;
	struct buf tr;
	int lfd, p[2], c;
	size_t i;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((lfd = socket(AF_INET, SOCK_STREAM, 0)) == -1
	    || bind(lfd, (struct sockaddr *)&sin, sizeof(sin)) == -1
	    || listen(lfd, 8) == -1
	    || getsockname(lfd, (struct sockaddr *)&sin, &len) == -1
	    || pipe(p) == -1)
		return srv;
	srv.port = ntohs(sin.sin_port);
	if ((srv.pid = fork()) != 0) {
		(void)close(lfd);
		(void)close(p[1]);
		srv.out = p[0];
		return srv;
	}
	(void)close(p[0]);
	buf_init(&tr);
	buf_addstr(&tr, "");
	for (i = 0; i < n; i++) {
		pfd.fd = lfd;
		pfd.events = POLLIN;
		if (poll(&pfd, 1, 2000) <= 0)
			break;
		if ((c = accept(lfd, NULL, NULL)) == -1)
			break;
		if (i > 0)
			buf_addstr(&tr, "<NEXT>\r\n");
		serve_conn(c, &scripts[i], &tr);
		(void)close(c);
	}
	(void)write_all(p[1], tr.data, tr.len);
	_exit(0);
}

/* Wait for the server; its transcript into tr. */
static void
server_finish(struct server *srv, struct buf *tr)
{
	char b[4096];
	ssize_t n;

	buf_reset(tr);
	buf_addstr(tr, "");
	while ((n = read(srv->out, b, sizeof(b))) > 0)
		buf_add(tr, b, (size_t)n);
	(void)close(srv->out);
	(void)waitpid(srv->pid, NULL, 0);
}

/* ------------------------------------------------------------------ */
/* Certificates made on the fly                                        */

static bool
make_test_cert(void)
{
	X509V3_CTX v3;
	X509_EXTENSION *ext;
	X509_NAME *name;
	EVP_PKEY *key;

	if ((key = EVP_EC_gen("P-256")) == NULL
	    || (test_cert = X509_new()) == NULL)
		return false;
	(void)X509_set_version(test_cert, 2);
	(void)ASN1_INTEGER_set(X509_get_serialNumber(test_cert), 1);
	(void)X509_gmtime_adj(X509_getm_notBefore(test_cert), -3600);
	(void)X509_gmtime_adj(X509_getm_notAfter(test_cert), 86400);
	(void)X509_set_pubkey(test_cert, key);
	name = X509_get_subject_name(test_cert);
	(void)X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
	    (const unsigned char *)"localhost", -1, -1, 0);
	(void)X509_set_issuer_name(test_cert, name);
	X509V3_set_ctx_nodb(&v3);
	X509V3_set_ctx(&v3, test_cert, test_cert, NULL, NULL, 0);
	ext = X509V3_EXT_conf_nid(
	    NULL, &v3, NID_subject_alt_name, "IP:127.0.0.1,DNS:localhost");
	if (ext == NULL || X509_add_ext(test_cert, ext, -1) != 1)
		return false;
	X509_EXTENSION_free(ext);
	if (X509_sign(test_cert, key, EVP_sha256()) == 0)
		return false;
	if ((srv_ctx = SSL_CTX_new(TLS_server_method())) == NULL
	    || SSL_CTX_use_certificate(srv_ctx, test_cert) != 1
	    || SSL_CTX_use_PrivateKey(srv_ctx, key) != 1)
		return false;
	EVP_PKEY_free(key);
	return true;
}

/* ------------------------------------------------------------------ */
/* Whole deliveries                                                    */

#define MESSAGE                                                                \
	"Subject: test\r\n\r\nline one\r\n.hidden dot\r\n"                     \
	"..two dots\r\nend\r\n"
#define STUFFED                                                                \
	"Subject: test\r\n\r\nline one\r\n..hidden dot\r\n"                    \
	"...two dots\r\nend\r\n.\r\n"

static struct config cfg;
static struct relay_env env;
static int msgfd = -1;
static struct ipc_relay_result res[8];
static struct buf tr;

static void
setup(void)
{
	char path[] = "/tmp/unit_relay.XXXXXX";
	int fd;

	strlcpy_msa(cfg.hostname, "relay.test", sizeof(cfg.hostname));
	cfg.relay_concurrency = 2;
	env.cfg = &cfg;
	env.to = relay_default_timeouts;
	env.to.connect = env.to.greeting = env.to.ehlo = env.to.mail = 3000;
	env.to.rcpt = env.to.data_init = env.to.data_block = 3000;
	env.to.data_final = env.to.quit = 3000;
	if ((fd = mkstemp(path)) == -1
	    || write_all(fd, MESSAGE, strlen(MESSAGE)) == -1)
		exit(1);
	msgfd = open(path, O_RDONLY);
	(void)unlink(path);
	(void)close(fd);
	buf_init(&tr);
}

/* Deliver to the scripted server as a smarthost (or mx if literal). */
static void
deliver(const struct script *sc, size_t nconn, const char **rcpts,
    uint32_t body_8bit)
{
	struct ipc_relay_job job;
	struct ipc_rcpt r[8];
	struct server srv;
	size_t n;

	memset(&job, 0, sizeof(job));
	strlcpy_msa(job.id, "0123456789abcdef", sizeof(job.id));
	strlcpy_msa(job.sender, "alice@example.org", sizeof(job.sender));
	strlcpy_msa(job.domain, "[127.0.0.1]", sizeof(job.domain));
	job.body_8bit = body_8bit;
	for (n = 0; rcpts[n] != NULL; n++)
		strlcpy_msa(r[n].addr, rcpts[n], sizeof(r[n].addr));
	job.nrcpt = (uint32_t)n;
	job.size = strlen(MESSAGE);
	srv = server_start(sc, nconn);
	cfg.mx_port = cfg.smarthost_port = srv.port;
	strlcpy_msa(
	    cfg.smarthost_host, "127.0.0.1", sizeof(cfg.smarthost_host));
	relay_deliver(&env, &job, r, msgfd, res);
	server_finish(&srv, &tr);
}

static bool
has(const char *needle)
{
	return strstr(tr.data, needle) != NULL;
}

static const char *one[] = { "bob@example.net", NULL };
static const char *three[]
    = { "bob@example.net", "carol@example.net", "dave@example.net", NULL };

static void
test_mixed_recipients(void)
{
	struct script sc = {
		.ehlo = "250-test\r\n250-PIPELINING\r\n250-SIZE 100000\r\n"
			"250 8BITMIME\r\n",
		.rcpt = { "250 2.1.5 Ok\r\n", "450 4.2.0 greylisted\r\n",
		    "550 5.1.1 no such user\r\n" },
	};
	char want[512];

	cfg.relay_mode = RELAY_SMARTHOST;
	cfg.smarthost_tls = SMARTHOST_NONE;
	deliver(&sc, 1, three, 1);
	is_int(res[0].status, RELAY_OK, "250 to RCPT: bob is delivered");
	is_int(res[1].status, RELAY_TEMPFAIL, "450 to RCPT: carol is retried");
	is_int(res[2].status, RELAY_PERMFAIL, "550 to RCPT: dave bounces");
	is_str(res[2].reply, "550 5.1.1 no such user",
	    "the bounce carries the server's reply");
	is_str(res[0].reply, "250 2.0.0 Ok: queued",
	    "the delivered one carries the final reply");
	is_str(res[1].rcpt, "carol@example.net", "results name the recipient");
	ok(strncmp(res[0].relay, "127.0.0.1[127.0.0.1]:", 21) == 0,
	    "results name the relay as host[address]:port (%s)", res[0].relay);
	(void)bsnprintf(want, sizeof(want),
	    "EHLO relay.test\r\n"
	    "MAIL FROM:<alice@example.org> SIZE=%zu BODY=8BITMIME\r\n"
	    "RCPT TO:<bob@example.net>\r\nRCPT TO:<carol@example.net>\r\n"
	    "RCPT TO:<dave@example.net>\r\nDATA\r\n",
	    strlen(MESSAGE));
	ok(has(want),
	    "MAIL with SIZE and BODY=8BITMIME, the RCPTs pipelined, then DATA");
	ok(has("DATA\r\n" STUFFED "QUIT\r\n"),
	    "the body is sent dot-stuffed, ended by a lone dot, then QUIT");
}

static void
test_all_refused(void)
{
	struct script sc = {
		.ehlo = "250-test\r\n250 SIZE\r\n",
		.rcpt = { "550 5.1.1 no\r\n", "553 5.1.3 bad\r\n",
		    "550 5.7.1 denied\r\n" },
	};
	char want[256];

	deliver(&sc, 1, three, 1);
	ok(res[0].status == RELAY_PERMFAIL && res[1].status == RELAY_PERMFAIL
		&& res[2].status == RELAY_PERMFAIL,
	    "every RCPT refused: every recipient bounces");
	ok(!has("DATA"), "no DATA is sent when no recipient was accepted");
	(void)bsnprintf(want, sizeof(want),
	    "MAIL FROM:<alice@example.org> SIZE=%zu\r\nRCPT TO:",
	    strlen(MESSAGE));
	ok(has(want), "without 8BITMIME offered there is no BODY parameter");
	ok(has("RCPT TO:<bob@example.net>\r\nRCPT TO:<carol@example.net>"),
	    "without PIPELINING the RCPTs are sent one by one");
}

static void
test_final_tempfail(void)
{
	struct script sc = {
		.rcpt = { "250 ok\r\n", "550 5.1.1 no\r\n", "250 ok\r\n" },
		.final = "451-4.3.0 try\r\n451 4.3.0 later\r\n",
	};

	deliver(&sc, 1, three, 0);
	ok(res[0].status == RELAY_TEMPFAIL && res[2].status == RELAY_TEMPFAIL,
	    "451 after the data: accepted recipients retry");
	is_str(res[0].reply, "451 4.3.0 try 4.3.0 later",
	    "the multiline final reply is read whole");
	is_int(res[1].status, RELAY_PERMFAIL,
	    "a recipient refused at RCPT still bounces");
}

static void
test_size_limit(void)
{
	struct script sc = { .ehlo = "250-test\r\n250 SIZE 20\r\n" };

	deliver(&sc, 1, one, 0);
	is_int(res[0].status, RELAY_PERMFAIL,
	    "a message over the server's SIZE bounces");
	ok(strncmp(res[0].reply, "552 5.3.4", 9) == 0, "with 552 5.3.4: %s",
	    res[0].reply);
	ok(!has("MAIL FROM"), "and no MAIL is even sent");
}

static void
test_helo_fallback(void)
{
	struct script sc = { .ehlo = "502 5.5.2 what is EHLO\r\n" };

	deliver(&sc, 1, one, 1);
	is_int(res[0].status, RELAY_OK, "an old server is spoken to with HELO");
	ok(has("HELO relay.test\r\nMAIL FROM:<alice@example.org>\r\n"),
	    "after HELO, MAIL has no ESMTP parameters");
}

static void
test_mail_refused(void)
{
	struct script sc = { .mail = "553 5.7.1 not your address\r\n" };

	deliver(&sc, 1, three, 0);
	ok(res[0].status == RELAY_PERMFAIL && res[2].status == RELAY_PERMFAIL,
	    "a 5xx to MAIL bounces every recipient");
}

static void
test_connection_failures(void)
{
	struct script sc = { .greeting = "421 4.3.2 busy\r\n" };
	struct script silent = { .greeting = "" };
	struct server srv;
	struct ipc_relay_job job;
	struct ipc_rcpt r;

	deliver(&sc, 1, one, 0);
	is_int(res[0].status, RELAY_TEMPFAIL, "a 421 greeting defers");
	is_str(res[0].reply, "421 4.3.2 busy", "with the server's words");

	env.to.greeting = 300;
	deliver(&silent, 1, one, 0);
	env.to.greeting = 3000;
	ok(res[0].status == RELAY_TEMPFAIL && strstr(res[0].reply, "timeout"),
	    "a server that never greets times out and defers: %s",
	    res[0].reply);

	/* A port nobody listens on: the server exits without a connection. */
	srv = server_start(&sc, 0);
	server_finish(&srv, &tr);
	memset(&job, 0, sizeof(job));
	strlcpy_msa(job.id, "0123456789abcdef", sizeof(job.id));
	job.nrcpt = 1;
	strlcpy_msa(r.addr, "bob@example.net", sizeof(r.addr));
	cfg.smarthost_port = srv.port;
	relay_deliver(&env, &job, &r, msgfd, res);
	ok(res[0].status == RELAY_TEMPFAIL
		&& strncmp(res[0].reply, "4.4.1 ", 6) == 0,
	    "a refused connection to the smarthost defers, never bounces: %s",
	    res[0].reply);
}

static void
test_tls_mx(void)
{
	struct script tls = {
		.ehlo = "250-test\r\n250-STARTTLS\r\n250 PIPELINING\r\n",
		.starttls = "220 2.0.0 go ahead\r\n",
	};
	struct script plain = { .ehlo = "250-test\r\n250 PIPELINING\r\n" };
	struct script broken[2] = {
		{ .ehlo = "250-test\r\n250 STARTTLS\r\n",
		    .starttls = "220 go\r\n",
		    .tls_garbage = true },
		{ .ehlo = "250-test\r\n250 STARTTLS\r\n" },
	};

	cfg.relay_mode = RELAY_MX;
	cfg.relay_tls = RELAY_TLS_OPPORTUNISTIC;
	deliver(&tls, 1, one, 0);
	is_int(res[0].status, RELAY_OK,
	    "mx: STARTTLS is used when offered; an unknown CA does not stop "
	    "it");
	ok(has("STARTTLS\r\n<TLS>\r\nEHLO relay.test\r\nMAIL FROM"),
	    "after STARTTLS the client says EHLO again, then MAIL");

	deliver(&broken[0], 2, one, 0);
	is_int(res[0].status, RELAY_OK,
	    "mx opportunistic: a failed handshake is retried in clear");
	ok(has("<NEXT>\r\nEHLO relay.test\r\nMAIL FROM"),
	    "the clear retry does not ask for STARTTLS again");

	cfg.relay_tls = RELAY_TLS_REQUIRED;
	deliver(&plain, 1, one, 0);
	ok(res[0].status == RELAY_TEMPFAIL
		&& strstr(res[0].reply, "TLS required but not offered") != NULL,
	    "mx required: a server without STARTTLS defers: %s", res[0].reply);
	ok(!has("MAIL FROM"), "and nothing is sent in clear");
	cfg.relay_tls = RELAY_TLS_OPPORTUNISTIC;
}

static void
test_tls_smarthost(void)
{
	struct script tls = {
		.ehlo = "250-test\r\n250-STARTTLS\r\n250 AUTH PLAIN LOGIN\r\n",
		.starttls = "220 2.0.0 go ahead\r\n",
		.auth = { "235 2.7.0 ok\r\n" },
	};
	struct script login = {
		.ehlo = "250-test\r\n250-STARTTLS\r\n250 AUTH LOGIN\r\n",
		.starttls = "220 2.0.0 go ahead\r\n",
		.auth = { "334 VXNlcm5hbWU6\r\n", "334 UGFzc3dvcmQ6\r\n",
		    "235 2.7.0 ok\r\n" },
	};
	struct script wrong = {
		.ehlo = "250-test\r\n250-STARTTLS\r\n250 AUTH PLAIN\r\n",
		.starttls = "220 2.0.0 go ahead\r\n",
		.auth = { "535 5.7.8 bad credentials\r\n" },
	};
	struct script implicit = {
		.implicit = true,
		.ehlo = "250-test\r\n250 AUTH PLAIN\r\n",
		.auth = { "235 2.7.0 ok\r\n" },
	};

	cfg.relay_mode = RELAY_SMARTHOST;
	cfg.smarthost_tls = SMARTHOST_STARTTLS;
	strlcpy_msa(
	    cfg.smarthost_username, "user", sizeof(cfg.smarthost_username));
	env.password = "secret";

	deliver(&tls, 1, one, 0);
	ok(res[0].status == RELAY_TEMPFAIL
		&& strstr(res[0].reply, "certificate") != NULL,
	    "smarthost: an unverifiable certificate defers: %s", res[0].reply);
	ok(!has("AUTH"), "and the password is never sent to it");

	(void)X509_STORE_add_cert(
	    SSL_CTX_get_cert_store(env.ssl_ctx), test_cert);
	deliver(&tls, 1, one, 0);
	is_int(res[0].status, RELAY_OK,
	    "smarthost: a verified certificate and AUTH PLAIN deliver");
	ok(has("<TLS>\r\nEHLO relay.test\r\nAUTH PLAIN AHVzZXIAc2VjcmV0\r\n"
	       "MAIL FROM"),
	    "AUTH PLAIN carries user and password, after TLS");

	deliver(&login, 1, one, 0);
	is_int(res[0].status, RELAY_OK,
	    "smarthost: AUTH LOGIN when only it "
	    "is offered");
	ok(has("AUTH LOGIN\r\ndXNlcg==\r\nc2VjcmV0\r\nMAIL"),
	    "AUTH LOGIN sends user then password");

	deliver(&wrong, 1, three, 0);
	ok(res[0].status == RELAY_TEMPFAIL && res[2].status == RELAY_TEMPFAIL,
	    "smarthost: 535 on AUTH defers, never bounces");
	ok(strstr(res[0].reply, "535 5.7.8") != NULL, "and says why: %s",
	    res[0].reply);

	cfg.smarthost_tls = SMARTHOST_IMPLICIT;
	deliver(&implicit, 1, one, 0);
	is_int(res[0].status, RELAY_OK, "smarthost: implicit TLS delivers");
	ok(has("EHLO relay.test\r\nAUTH PLAIN"),
	    "implicit TLS needs no STARTTLS");

	cfg.smarthost_tls = SMARTHOST_NONE;
	cfg.smarthost_username[0] = '\0';
	env.password = NULL;
}

/* ------------------------------------------------------------------ */
/* Connection reuse                                                    */

static void
test_dest_keys(void)
{
	struct ipc_relay_job j;
	struct config c;
	char a[RELAY_KEY_MAX], b[RELAY_KEY_MAX];

	memset(&c, 0, sizeof(c));
	memset(&j, 0, sizeof(j));
	c.relay_mode = RELAY_MX;
	strlcpy_msa(j.domain, "Example.NET.", sizeof(j.domain));
	relay_dest_key(&c, &j, a, sizeof(a));
	is_str(a, "mx:example.net",
	    "mx: a job's destination is its domain, in lower case, without "
	    "the root dot");
	strlcpy_msa(j.domain, "example.org", sizeof(j.domain));
	relay_dest_key(&c, &j, b, sizeof(b));
	ok(strcmp(a, b) != 0,
	    "mx: another domain is another destination (%s, %s)", a, b);
	strlcpy_msa(j.domain, "[127.0.0.1]", sizeof(j.domain));
	relay_dest_key(&c, &j, a, sizeof(a));
	is_str(a, "mx:[127.0.0.1]", "mx: an address literal is its own key");

	c.relay_mode = RELAY_SMARTHOST;
	strlcpy_msa(c.smarthost_host, "smtp.example.com",
	    sizeof(c.smarthost_host));
	c.smarthost_port = 587;
	relay_dest_key(&c, &j, a, sizeof(a));
	is_str(a, "smarthost:smtp.example.com:587",
	    "smarthost: the key names the smarthost");
	strlcpy_msa(j.domain, "example.org", sizeof(j.domain));
	relay_dest_key(&c, &j, b, sizeof(b));
	is_str(b, a, "smarthost: every job has the same key, whatever domain");
}

static void
slot(struct relay_slot *s, enum relay_slot_state st, const char *key,
    time_t since)
{
	memset(s, 0, sizeof(*s));
	s->state = st;
	strlcpy_msa(s->key, key, sizeof(s->key));
	s->since = since;
}

static void
test_slots(void)
{
	struct relay_slot s[4];
	size_t i, idx = 99;

	for (i = 0; i < 4; i++)
		slot(&s[i], RELAY_SLOT_FREE, "", 0);
	is_int(relay_pick_slot(s, 4, 2, "mx:a", &idx), RELAY_PICK_FREE,
	    "no worker yet: a job gets a new one");
	is_int(idx, 0, "in the first free slot");

	slot(&s[0], RELAY_SLOT_BUSY, "mx:a", 90);
	slot(&s[1], RELAY_SLOT_IDLE, "mx:a", 100);
	slot(&s[2], RELAY_SLOT_IDLE, "mx:b", 50);
	is_int(relay_pick_slot(s, 4, 2, "mx:a", &idx), RELAY_PICK_IDLE,
	    "a job goes to the idle worker with a session to its destination");
	is_int(idx, 1, "that is, slot 1");
	is_int(relay_pick_slot(s, 4, 2, "mx:c", &idx), RELAY_PICK_FREE,
	    "a job for another destination gets a new worker while a slot is "
	    "free");
	is_int(idx, 3, "the free slot 3");

	slot(&s[3], RELAY_SLOT_IDLE, "mx:a", 120);
	(void)relay_pick_slot(s, 4, 2, "mx:a", &idx);
	is_int(idx, 3,
	    "of two idle workers for a destination, the one used last "
	    "(likeliest alive) takes the job");
	is_int(relay_pick_slot(s, 4, 2, "mx:c", &idx), RELAY_PICK_EVICT,
	    "no free slot: an idle worker for another destination gives way");
	is_int(idx, 2, "the one unused the longest");
	is_int(relay_pick_slot(s, 4, 2, "", &idx), RELAY_PICK_EVICT,
	    "an empty key never matches an idle worker");

	slot(&s[1], RELAY_SLOT_BUSY, "mx:a", 130);
	is_int(relay_pick_slot(s, 4, 2, "mx:a", &idx), RELAY_PICK_NONE,
	    "relay.concurrency workers busy: the job is refused, even with "
	    "an idle one");
	for (i = 0; i < 4; i++)
		slot(&s[i], RELAY_SLOT_BUSY, "mx:a", 0);
	is_int(relay_pick_slot(s, 4, 8, "mx:a", &idx), RELAY_PICK_NONE,
	    "every slot busy: refused");

	slot(&s[0], RELAY_SLOT_IDLE, "mx:a", 100);
	ok(!relay_slot_expired(&s[0], 100 + RELAY_IDLE_SECS - 1),
	    "an idle worker is kept for RELAY_IDLE_SECS");
	ok(relay_slot_expired(&s[0], 100 + RELAY_IDLE_SECS),
	    "and retired when they have passed");
	slot(&s[0], RELAY_SLOT_BUSY, "mx:a", 0);
	ok(!relay_slot_expired(&s[0], 100000),
	    "a busy worker never expires as idle");
}

static struct ipc_relay_job rjob;
static struct ipc_rcpt rrcpt[8];

static void
job_to(const char *id, const char **rcpts)
{
	size_t n;

	memset(&rjob, 0, sizeof(rjob));
	memset(rrcpt, 0, sizeof(rrcpt));
	strlcpy_msa(rjob.id, id, sizeof(rjob.id));
	strlcpy_msa(rjob.sender, "alice@example.org", sizeof(rjob.sender));
	strlcpy_msa(rjob.domain, "[127.0.0.1]", sizeof(rjob.domain));
	for (n = 0; rcpts[n] != NULL; n++)
		strlcpy_msa(rrcpt[n].addr, rcpts[n], sizeof(rrcpt[n].addr));
	rjob.nrcpt = (uint32_t)n;
	rjob.size = strlen(MESSAGE);
}

static struct server
reuse_server(const struct script *sc, size_t n)
{
	struct server srv = server_start(sc, n);

	cfg.relay_mode = RELAY_SMARTHOST;
	cfg.smarthost_port = srv.port;
	strlcpy_msa(
	    cfg.smarthost_host, "127.0.0.1", sizeof(cfg.smarthost_host));
	return srv;
}

static size_t
count(const char *hay, const char *needle)
{
	size_t n = 0;

	while ((hay = strstr(hay, needle)) != NULL) {
		n++;
		hay += strlen(needle);
	}
	return n;
}

/* Wait until the server has hung up on the kept connection. */
static void
wait_hangup(const struct relay_cache *k)
{
	struct pollfd pfd = { .fd = relay_cache_fd(k), .events = POLLIN };

	(void)poll(&pfd, 1, 3000);
}

static void
test_reuse(void)
{
	struct script sc = { .ehlo = "250-test\r\n250 PIPELINING\r\n" };
	struct script serial = { .ehlo = "250-test\r\n250 8BITMIME\r\n" };
	struct relay_cache *k = relay_cache_new();
	char key[64];
	struct server srv;

	cfg.smarthost_tls = SMARTHOST_NONE;
	srv = reuse_server(&sc, 1);
	ok(!relay_cache_open(k), "a new worker has no kept connection");
	job_to("0000000000000001", one);
	relay_deliver_cached(&env, k, &rjob, rrcpt, msgfd, res);
	is_int(res[0].status, RELAY_OK, "reuse: the first job is delivered");
	ok(relay_cache_open(k), "and its connection is kept afterwards");
	(void)bsnprintf(key, sizeof(key), "smarthost:127.0.0.1:%u", srv.port);
	is_str(relay_cache_key(k), key, "under the job's destination key");
	job_to("0000000000000002", three);
	relay_deliver_cached(&env, k, &rjob, rrcpt, msgfd, res);
	ok(res[0].status == RELAY_OK && res[1].status == RELAY_OK
		&& res[2].status == RELAY_OK,
	    "the next job is delivered over the kept connection");
	ok(relay_cache_open(k), "which stays open");
	relay_cache_free(k, true);
	server_finish(&srv, &tr);
	ok(!has("<NEXT>"), "one connection carried both jobs");
	is_int(count(tr.data, "EHLO"), 1, "EHLO is said once");
	ok(has("EHLO relay.test\r\nMAIL FROM:<alice@example.org>\r\n"
	       "RCPT TO:<bob@example.net>\r\nDATA\r\n"),
	    "a fresh connection: MAIL, RCPT and DATA pipelined, no RSET");
	ok(has(".\r\nRSET\r\nMAIL FROM:<alice@example.org>\r\n"
	       "RCPT TO:<bob@example.net>\r\nRCPT TO:<carol@example.net>\r\n"
	       "RCPT TO:<dave@example.net>\r\nDATA\r\n" STUFFED "QUIT\r\n"),
	    "the next transaction pipelines RSET, MAIL, every RCPT and DATA; "
	    "QUIT when the cache is closed");

	k = relay_cache_new();
	srv = reuse_server(&serial, 1);
	job_to("0000000000000001", one);
	relay_deliver_cached(&env, k, &rjob, rrcpt, msgfd, res);
	job_to("0000000000000002", one);
	relay_deliver_cached(&env, k, &rjob, rrcpt, msgfd, res);
	is_int(res[0].status, RELAY_OK,
	    "without PIPELINING a kept connection is reused too");
	relay_cache_free(k, true);
	server_finish(&srv, &tr);
	ok(!has("<NEXT>") && has(".\r\nRSET\r\nMAIL FROM"),
	    "with RSET sent on its own first");
}

static void
test_reconnect(void)
{
	struct script hangup[2] = { { .close_after = 1 }, { .rset = NULL } };
	struct script refuse[2] = { { .rset = "421 4.4.2 idle too long\r\n" },
		{ .rset = NULL } };
	struct relay_cache *k = relay_cache_new();
	struct server srv;

	srv = reuse_server(hangup, 2);
	job_to("0000000000000001", one);
	relay_deliver_cached(&env, k, &rjob, rrcpt, msgfd, res);
	wait_hangup(k);
	ok(!relay_cache_check(k) && !relay_cache_open(k),
	    "a kept connection the server closes while idle is dropped");
	job_to("0000000000000002", one);
	relay_deliver_cached(&env, k, &rjob, rrcpt, msgfd, res);
	is_int(res[0].status, RELAY_OK, "the next job simply connects again");
	relay_cache_free(k, true);
	server_finish(&srv, &tr);
	ok(has("<NEXT>\r\nEHLO relay.test\r\nMAIL FROM"),
	    "over a new connection, without RSET");

	k = relay_cache_new();
	srv = reuse_server(hangup, 2);
	job_to("0000000000000001", one);
	relay_deliver_cached(&env, k, &rjob, rrcpt, msgfd, res);
	wait_hangup(k); /* unnoticed: found dead when reused */
	job_to("0000000000000002", three);
	relay_deliver_cached(&env, k, &rjob, rrcpt, msgfd, res);
	ok(res[0].status == RELAY_OK && res[1].status == RELAY_OK
		&& res[2].status == RELAY_OK,
	    "a kept connection found dead when reused: the job goes over a "
	    "new one, nothing is deferred");
	ok(relay_cache_open(k), "and that one is kept in turn");
	relay_cache_free(k, true);
	server_finish(&srv, &tr);
	is_int(count(tr.data, "EHLO"), 2, "two connections, two EHLOs");

	k = relay_cache_new();
	srv = reuse_server(refuse, 2);
	job_to("0000000000000001", one);
	relay_deliver_cached(&env, k, &rjob, rrcpt, msgfd, res);
	job_to("0000000000000002", one);
	relay_deliver_cached(&env, k, &rjob, rrcpt, msgfd, res);
	is_int(res[0].status, RELAY_OK,
	    "421 to RSET: the job goes over a new connection");
	relay_cache_free(k, true);
	server_finish(&srv, &tr);
	ok(has("RSET\r\n<NEXT>\r\nEHLO relay.test\r\nMAIL FROM"),
	    "opened right after the 421");
}

static void
test_reuse_refused(void)
{
	struct script sc = { .rcpt = { "550 5.1.1 no\r\n", "550 5.1.1 no\r\n",
				 "550 5.1.1 no\r\n" } };
	struct relay_cache *k = relay_cache_new();
	struct server srv;

	srv = reuse_server(&sc, 1);
	job_to("0000000000000001", three);
	relay_deliver_cached(&env, k, &rjob, rrcpt, msgfd, res);
	ok(res[0].status == RELAY_PERMFAIL && res[2].status == RELAY_PERMFAIL,
	    "pipelined DATA: every RCPT refused still bounces every one");
	ok(relay_cache_open(k), "and the connection is kept");
	job_to("0000000000000002", one);
	relay_deliver_cached(&env, k, &rjob, rrcpt, msgfd, res);
	is_int(res[0].status, RELAY_OK, "the next job goes over it");
	relay_cache_free(k, true);
	server_finish(&srv, &tr);
	ok(has("RCPT TO:<dave@example.net>\r\nDATA\r\n.\r\nRSET\r\n"),
	    "a 354 to DATA with no recipient is ended by a lone dot, never "
	    "the message");
	is_int(count(tr.data, "line one"), 1,
	    "the message went once, to the accepted recipient");
}

/* stderr into a file while deliveries run, at the given log level. */
static int cap_fd = -1, cap_saved = -1;

static void
capture_start(enum log_level level)
{
	char path[] = "/tmp/unit_relay_cap.XXXXXX";

	if ((cap_fd = mkstemp(path)) == -1)
		exit(1);
	(void)unlink(path);
	cap_saved = dup(STDERR_FILENO);
	(void)dup2(cap_fd, STDERR_FILENO);
	log_init(level, false, "relay");
}

static void
capture_end(char *text, size_t size)
{
	ssize_t n;

	log_init(LOG_LVL_ERROR, false, "unit_relay");
	(void)dup2(cap_saved, STDERR_FILENO);
	(void)close(cap_saved);
	n = pread(cap_fd, text, size - 1, 0);
	text[n > 0 ? n : 0] = '\0';
	(void)close(cap_fd);
}

static void
test_resume(void)
{
	struct script sc[2] = {
		{ .ehlo = "250-test\r\n250-STARTTLS\r\n250-PIPELINING\r\n"
			  "250 AUTH PLAIN\r\n",
		    .starttls = "220 2.0.0 go ahead\r\n",
		    .auth = { "235 2.7.0 ok\r\n" },
		    .close_after = 1 },
		{ .ehlo = "250-test\r\n250-STARTTLS\r\n250-PIPELINING\r\n"
			  "250 AUTH PLAIN\r\n",
		    .starttls = "220 2.0.0 go ahead\r\n",
		    .auth = { "235 2.7.0 ok\r\n" } },
	};
	struct relay_cache *k = relay_cache_new();
	static char text[65536];
	struct server srv;

	/* test_tls_smarthost made the test certificate trusted. */
	cfg.smarthost_tls = SMARTHOST_STARTTLS;
	strlcpy_msa(
	    cfg.smarthost_username, "user", sizeof(cfg.smarthost_username));
	env.password = "secret";
	srv = reuse_server(sc, 2);
	capture_start(LOG_LVL_DEBUG);
	job_to("0000000000000001", one);
	relay_deliver_cached(&env, k, &rjob, rrcpt, msgfd, res);
	wait_hangup(k);
	job_to("0000000000000002", one);
	relay_deliver_cached(&env, k, &rjob, rrcpt, msgfd, res);
	capture_end(text, sizeof(text));
	relay_cache_free(k, true);
	server_finish(&srv, &tr);
	is_int(res[0].status, RELAY_OK,
	    "smarthost over TLS: the job after a reconnection is delivered");
	is_int(count(text, "resumed=no"), 1,
	    "the first connection makes a full TLS handshake");
	is_int(count(text, "resumed=yes"), 1,
	    "the reconnection resumes the worker's TLS session");
	ok(count(text, "event=tls_up") == 2
		&& count(text, "verified=yes resumed=") == 2,
	    "a resumed session still counts as a verified smarthost");
	ok(strstr(text, "result=reconnect") != NULL,
	    "the dead kept connection is logged as a reconnect, not a failure");
	ok(has("<NEXT>\r\nEHLO relay.test\r\nSTARTTLS\r\n<TLS>\r\n"
	       "EHLO relay.test\r\nAUTH PLAIN"),
	    "and the new session authenticates again");
	cfg.smarthost_tls = SMARTHOST_NONE;
	cfg.smarthost_username[0] = '\0';
	env.password = NULL;
}

static void
test_log_line(void)
{
	struct script sc = { .rcpt = { "250 ok\r\n" } };
	char path[] = "/tmp/unit_relay_log.XXXXXX", text[4096];
	int fd, saved;
	ssize_t n;

	if ((fd = mkstemp(path)) == -1)
		exit(1);
	(void)unlink(path);
	saved = dup(STDERR_FILENO);
	(void)dup2(fd, STDERR_FILENO);
	log_init(LOG_LVL_INFO, false, "relay");
	cfg.relay_mode = RELAY_SMARTHOST;
	deliver(&sc, 1, one, 0);
	log_init(LOG_LVL_ERROR, false, "unit_relay");
	(void)dup2(saved, STDERR_FILENO);
	n = pread(fd, text, sizeof(text) - 1, 0);
	text[n > 0 ? n : 0] = '\0';
	(void)close(fd);
	ok(strstr(text,
	       "event=delivery id=0123456789abcdef "
	       "rcpt=bob@example.net relay=127.0.0.1[127.0.0.1]:")
		!= NULL,
	    "one delivery line per recipient, with id, rcpt and relay");
	ok(strstr(text,
	       " tls=none verified=no status=sent "
	       "reply=\"250 2.0.0 Ok: queued\" delay=")
		!= NULL,
	    "it says TLS, verification, status, reply and delay");
}

int
main(void)
{
	char err[256];

	log_init(LOG_LVL_ERROR, false, "unit_relay");
	(void)signal(SIGPIPE, SIG_IGN);
	test_replies();
	test_ehlo();
	test_dotstuff();
	test_job_parse();

	setup();
	if (!make_test_cert()
	    || (env.ssl_ctx = relay_client_ctx(err, sizeof(err))) == NULL) {
		ok(0, "test certificate and client context");
		return done_testing();
	}
	test_mixed_recipients();
	test_all_refused();
	test_final_tempfail();
	test_size_limit();
	test_helo_fallback();
	test_mail_refused();
	test_connection_failures();
	test_tls_mx();
	test_tls_smarthost();
	test_log_line();
	test_dest_keys();
	test_slots();
	test_reuse();
	test_reconnect();
	test_reuse_refused();
	test_resume();
	return done_testing();
}

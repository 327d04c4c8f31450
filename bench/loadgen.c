/*
 * loadgen - an SMTP submission load generator for bench/compare.
 *
 * One thread per concurrent connection, blocking sockets with timeouts,
 * OpenSSL 3 for STARTTLS and implicit TLS (no certificate verification:
 * loopback and self-signed certificates only).  Every reply code is
 * checked; a message counts as ok only after its "250" to the end of data.
 *
 * Latency of one message: from the start of connect() when each message
 * has its own connection (--per-conn 1), else from sending MAIL FROM, up to
 * the 250 after the data.
 *
 * --hold N opens N authenticated sessions (--concurrency of them at a
 * time), prints "holding N" once all are up and keeps them idle until
 * SIGINT/SIGTERM or --hold-seconds.
 *
 * The last line of a load run is machine-readable:
 *   RESULT ok=.. failed=.. rate=.. p50=.. p90=.. p99=.. (milliseconds)
 */

#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>

#include <netinet/in.h>
#include <netinet/tcp.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <limits.h>
#include <netdb.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#define LG_LINE_MAX 2048 /* one reply line, longer ones are cut */
#define LG_RBUF 8192 /* receive buffer per connection */
#define LG_MAX_FAIL_SHOWN 5 /* failure replies printed */
#define LG_MAX_THREADS 4096

enum lg_mode { LG_PLAIN, LG_STARTTLS, LG_IMPLICIT };

struct lg_opts {
	const char *host;
	const char *port;
	enum lg_mode mode;
	const char *user;
	const char *password;
	const char *from;
	const char *to;
	const char *ehlo;
	const char *sni;
	long concurrency;
	long messages;
	long per_conn;
	long size;
	long hold;
	long hold_seconds;
	long timeout;
	bool resume;
	bool quiet;
};

/* One connection. */
struct lg_conn {
	int fd;
	SSL *ssl;
	char rbuf[LG_RBUF];
	size_t rlen;
	size_t rpos;
	char last[LG_LINE_MAX]; /* last reply line, for failure reports */
};

struct lg_worker {
	pthread_t tid;
	int index;
	SSL_SESSION *session; /* for --resume */
	double *lat; /* milliseconds */
	size_t nlat;
	size_t caplat;
	struct lg_conn *held; /* --hold: the authenticated connection */
	uint64_t msgseq;
};

static struct lg_opts opts;
static SSL_CTX *lg_ctx;
static char *lg_body; /* dot-safe body, CRLF lines */
static size_t lg_bodylen;
static char lg_auth[1024]; /* base64 of \0user\0password */
static atomic_long lg_next; /* next message number to claim */
static atomic_long lg_ok;
static atomic_long lg_failed;
static atomic_long lg_handshakes;
static atomic_long lg_resumed;
static atomic_long lg_connections;
static atomic_long lg_held;
static atomic_int lg_fail_shown;
static pthread_mutex_t lg_print_mtx = PTHREAD_MUTEX_INITIALIZER;
static sem_t lg_open_sem; /* --hold: logins at once (--concurrency) */

static void lg_usage(void) __attribute__((noreturn));
static void lg_die(const char *, ...)
    __attribute__((format(printf, 1, 2), noreturn));

static void
lg_die(const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)fputs("loadgen: ", stderr);
	(void)vfprintf(stderr, fmt, ap);
	(void)fputc('\n', stderr);
	va_end(ap);
	exit(2);
}

static double
lg_now(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1)
		lg_die("clock_gettime: %s", strerror(errno));
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void lg_fail(long, const char *, const char *, ...)
    __attribute__((format(printf, 3, 4)));

/* Count one failed message; print the first few reasons. */
static void
lg_fail(long nmsg, const char *step, const char *fmt, ...)
{
	va_list ap;
	char why[LG_LINE_MAX + 64];

	if (nmsg > 0)
		atomic_fetch_add(&lg_failed, nmsg);
	if (atomic_fetch_add(&lg_fail_shown, 1) >= LG_MAX_FAIL_SHOWN)
		return;
	va_start(ap, fmt);
	(void)vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	(void)pthread_mutex_lock(&lg_print_mtx);
	(void)fprintf(stderr, "loadgen: failure at %s: %s\n", step, why);
	(void)pthread_mutex_unlock(&lg_print_mtx);
}

/* ---- base64 for AUTH PLAIN -------------------------------------------- */

static int
lg_base64(const unsigned char *in, size_t inlen, char *out, size_t outlen)
{
	static const char tab[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqr"
				  "stuvwxyz0123456789+/";
	size_t i, o = 0;

	if ((inlen + 2) / 3 * 4 + 1 > outlen)
		return -1;
	for (i = 0; i + 2 < inlen; i += 3) {
		out[o++] = tab[in[i] >> 2];
		out[o++] = tab[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
		out[o++] = tab[((in[i + 1] & 15) << 2) | (in[i + 2] >> 6)];
		out[o++] = tab[in[i + 2] & 63];
	}
	if (inlen - i == 1) {
		out[o++] = tab[in[i] >> 2];
		out[o++] = tab[(in[i] & 3) << 4];
		out[o++] = '=';
		out[o++] = '=';
	} else if (inlen - i == 2) {
		out[o++] = tab[in[i] >> 2];
		out[o++] = tab[((in[i] & 3) << 4) | (in[i + 1] >> 4)];
		out[o++] = tab[(in[i + 1] & 15) << 2];
		out[o++] = '=';
	}
	out[o] = '\0';
	return 0;
}

static void
lg_make_auth(void)
{
	unsigned char raw[600];
	size_t ul = strlen(opts.user), pl = strlen(opts.password);

	if (ul + pl + 2 > sizeof(raw))
		lg_die("user or password too long");
	raw[0] = '\0';
	memcpy(raw + 1, opts.user, ul);
	raw[1 + ul] = '\0';
	memcpy(raw + 2 + ul, opts.password, pl);
	if (lg_base64(raw, ul + pl + 2, lg_auth, sizeof(lg_auth)) == -1)
		lg_die("AUTH PLAIN response too long");
	OPENSSL_cleanse(raw, sizeof(raw));
}

/* ---- the message ------------------------------------------------------- */

/* A body of opts.size bytes: lines of printable text ending in CRLF. */
static void
lg_make_body(void)
{
	static const char words[]
	    = "The quick brown fox jumps over the lazy dog while the mail "
	      "server keeps every message safe on disk before it says yes. ";
	size_t n = (size_t)opts.size, i = 0, col = 0, w = 0;

	if ((lg_body = malloc(n + 3)) == NULL)
		lg_die("out of memory");
	while (i < n) {
		if (n - i <= 2 || col == 72) {
			/* end the line (or pad the last bytes) */
			if (n - i >= 2) {
				lg_body[i++] = '\r';
				lg_body[i++] = '\n';
			} else
				lg_body[i++] = 'x';
			col = 0;
			continue;
		}
		lg_body[i] = words[w++ % (sizeof(words) - 1)];
		if (col == 0 && (lg_body[i] == '.' || lg_body[i] == ' '))
			lg_body[i] = 'X';
		i++;
		col++;
	}
	/* the body always ends with CRLF so ".\r\n" closes the data */
	if (n < 2 || lg_body[n - 2] != '\r' || lg_body[n - 1] != '\n') {
		lg_body[n++] = '\r';
		lg_body[n++] = '\n';
	}
	lg_bodylen = n;
}

/* The whole DATA payload of one message, ending with ".\r\n". */
static char *
lg_message(struct lg_worker *w, size_t *lenp)
{
	char head[1024], date[64];
	time_t t = time(NULL);
	struct tm tm;
	int hl;
	char *m;

	if (gmtime_r(&t, &tm) == NULL
	    || strftime(date, sizeof(date), "%a, %d %b %Y %H:%M:%S +0000", &tm)
		== 0)
		lg_die("cannot format the date");
	hl = snprintf(head, sizeof(head),
	    "From: Bench Sender <%s>\r\n"
	    "To: Bench Recipient <%s>\r\n"
	    "Subject: loadgen message %d.%" PRIu64 "\r\n"
	    "Date: %s\r\n"
	    "Message-ID: <loadgen.%ld.%d.%" PRIu64 "@bench.invalid>\r\n"
	    "MIME-Version: 1.0\r\n"
	    "Content-Type: text/plain; charset=us-ascii\r\n"
	    "Content-Transfer-Encoding: 7bit\r\n"
	    "User-Agent: msa-bench-loadgen/1\r\n"
	    "\r\n",
	    opts.from, opts.to, w->index, w->msgseq, date, (long)getpid(),
	    w->index, w->msgseq);
	if (hl < 0 || (size_t)hl >= sizeof(head))
		lg_die("header section too long (addresses?)");
	w->msgseq++;
	if ((m = malloc((size_t)hl + lg_bodylen + 4)) == NULL)
		lg_die("out of memory");
	memcpy(m, head, (size_t)hl);
	memcpy(m + hl, lg_body, lg_bodylen);
	memcpy(m + (size_t)hl + lg_bodylen, ".\r\n", 3);
	*lenp = (size_t)hl + lg_bodylen + 3;
	return m;
}

/* ---- connection I/O ---------------------------------------------------- */

static int
lg_write(struct lg_conn *c, const char *p, size_t len)
{
	while (len > 0) {
		ssize_t n;

		if (c->ssl != NULL) {
			size_t wr = 0;

			if (SSL_write_ex(c->ssl, p, len, &wr) != 1)
				return -1;
			n = (ssize_t)wr;
		} else {
			n = send(c->fd, p, len, MSG_NOSIGNAL);
			if (n == -1 && errno == EINTR)
				continue;
			if (n <= 0)
				return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static int
lg_fill(struct lg_conn *c)
{
	ssize_t n;

	c->rpos = c->rlen = 0;
	for (;;) {
		if (c->ssl != NULL) {
			size_t rd = 0;

			if (SSL_read_ex(c->ssl, c->rbuf, sizeof(c->rbuf), &rd)
			    != 1)
				return -1;
			n = (ssize_t)rd;
		} else {
			n = recv(c->fd, c->rbuf, sizeof(c->rbuf), 0);
			if (n == -1 && errno == EINTR)
				continue;
			if (n <= 0)
				return -1;
		}
		c->rlen = (size_t)n;
		return 0;
	}
}

/* One line without CRLF into line (cut to its size); -1 on EOF/error. */
static int
lg_getline(struct lg_conn *c, char *line, size_t size)
{
	size_t o = 0;

	for (;;) {
		char ch;

		if (c->rpos == c->rlen && lg_fill(c) == -1)
			return -1;
		ch = c->rbuf[c->rpos++];
		if (ch == '\n')
			break;
		if (o + 1 < size)
			line[o++] = ch;
	}
	if (o > 0 && line[o - 1] == '\r')
		o--;
	line[o] = '\0';
	return 0;
}

/* Read a (multi-line) reply; its code, or -1 on EOF/error/garbage. */
static int
lg_reply(struct lg_conn *c)
{
	char line[LG_LINE_MAX];

	for (;;) {
		if (lg_getline(c, line, sizeof(line)) == -1) {
			(void)snprintf(c->last, sizeof(c->last),
			    "(connection closed or timed out)");
			return -1;
		}
		(void)snprintf(c->last, sizeof(c->last), "%s", line);
		if (strlen(line) < 3 || line[0] < '1' || line[0] > '5'
		    || line[1] < '0' || line[1] > '9' || line[2] < '0'
		    || line[2] > '9')
			return -1;
		if (line[3] != '-')
			return (line[0] - '0') * 100 + (line[1] - '0') * 10
			    + (line[2] - '0');
	}
}

static int lg_cmd(struct lg_conn *, int, const char *, ...)
    __attribute__((format(printf, 3, 4)));

/* Send a command line and expect the reply code want; 0 or -1. */
static int
lg_cmd(struct lg_conn *c, int want, const char *fmt, ...)
{
	char line[1200];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(line, sizeof(line) - 2, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(line) - 2)
		lg_die("command too long");
	memcpy(line + n, "\r\n", 2);
	if (lg_write(c, line, (size_t)n + 2) == -1) {
		(void)snprintf(c->last, sizeof(c->last), "(write failed)");
		return -1;
	}
	return lg_reply(c) == want ? 0 : -1;
}

static int
lg_new_session_cb(SSL *ssl, SSL_SESSION *sess)
{
	struct lg_worker *w = SSL_get_app_data(ssl);

	if (w == NULL || !opts.resume)
		return 0;
	if (w->session != NULL)
		SSL_SESSION_free(w->session);
	w->session = sess; /* we keep the reference */
	return 1;
}

static int
lg_tls(struct lg_conn *c, struct lg_worker *w)
{
	if ((c->ssl = SSL_new(lg_ctx)) == NULL)
		return -1;
	(void)SSL_set_app_data(c->ssl, w);
	if (SSL_set_fd(c->ssl, c->fd) != 1)
		return -1;
	if (opts.sni != NULL && SSL_set_tlsext_host_name(c->ssl, opts.sni) != 1)
		return -1;
	if (opts.resume && w->session != NULL
	    && SSL_set_session(c->ssl, w->session) != 1)
		return -1;
	if (SSL_connect(c->ssl) != 1) {
		unsigned long e = ERR_get_error();

		(void)snprintf(c->last, sizeof(c->last), "TLS handshake: %s",
		    e ? ERR_error_string(e, NULL) : "failed");
		ERR_clear_error();
		return -1;
	}
	atomic_fetch_add(&lg_handshakes, 1);
	if (SSL_session_reused(c->ssl))
		atomic_fetch_add(&lg_resumed, 1);
	c->rpos = c->rlen = 0;
	return 0;
}

static void
lg_close(struct lg_conn *c, bool quit)
{
	if (c == NULL)
		return;
	if (quit && c->fd != -1)
		(void)lg_cmd(c, 221, "QUIT");
	if (c->ssl != NULL) {
		if (quit)
			(void)SSL_shutdown(c->ssl);
		SSL_free(c->ssl);
	}
	if (c->fd != -1)
		(void)close(c->fd);
	ERR_clear_error();
	free(c);
}

static int
lg_connect_fd(struct lg_conn *c)
{
	struct addrinfo hints, *res, *ai;
	struct timeval tv = { .tv_sec = opts.timeout, .tv_usec = 0 };
	int one = 1, rc;

	memset(&hints, 0, sizeof(hints));
	hints.ai_family = AF_UNSPEC;
	hints.ai_socktype = SOCK_STREAM;
	hints.ai_flags = AI_NUMERICSERV;
	if ((rc = getaddrinfo(opts.host, opts.port, &hints, &res)) != 0) {
		(void)snprintf(c->last, sizeof(c->last), "getaddrinfo: %s",
		    gai_strerror(rc));
		return -1;
	}
	for (ai = res; ai != NULL; ai = ai->ai_next) {
		c->fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
		    ai->ai_protocol);
		if (c->fd == -1)
			continue;
		if (setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv))
			== -1
		    || setsockopt(
			   c->fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof(tv))
			== -1
		    || setsockopt(
			   c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))
			== -1
		    || connect(c->fd, ai->ai_addr, ai->ai_addrlen) == -1) {
			(void)snprintf(c->last, sizeof(c->last), "connect: %s",
			    strerror(errno));
			(void)close(c->fd);
			c->fd = -1;
			continue;
		}
		break;
	}
	freeaddrinfo(res);
	return c->fd == -1 ? -1 : 0;
}

/*
 * Connect and get to an authenticated session (or just past EHLO without
 * --user).  Returns the connection or NULL with *step naming what failed.
 */
static struct lg_conn *
lg_open(struct lg_worker *w, const char **step)
{
	struct lg_conn *c;

	if ((c = calloc(1, sizeof(*c))) == NULL)
		lg_die("out of memory");
	c->fd = -1;
	atomic_fetch_add(&lg_connections, 1);
	*step = "connect";
	if (lg_connect_fd(c) == -1)
		goto fail;
	if (opts.mode == LG_IMPLICIT) {
		*step = "TLS handshake";
		if (lg_tls(c, w) == -1)
			goto fail;
	}
	*step = "banner (220)";
	if (lg_reply(c) != 220)
		goto fail;
	*step = "EHLO (250)";
	if (lg_cmd(c, 250, "EHLO %s", opts.ehlo) == -1)
		goto fail;
	if (opts.mode == LG_STARTTLS) {
		*step = "STARTTLS (220)";
		if (lg_cmd(c, 220, "STARTTLS") == -1)
			goto fail;
		if (c->rpos != c->rlen) {
			(void)snprintf(c->last, sizeof(c->last),
			    "data after the 220 to STARTTLS");
			goto fail;
		}
		*step = "TLS handshake";
		if (lg_tls(c, w) == -1)
			goto fail;
		*step = "EHLO after STARTTLS (250)";
		if (lg_cmd(c, 250, "EHLO %s", opts.ehlo) == -1)
			goto fail;
	}
	if (opts.user != NULL) {
		*step = "AUTH PLAIN (235)";
		if (lg_cmd(c, 235, "AUTH PLAIN %s", lg_auth) == -1)
			goto fail;
	}
	return c;
fail:
	lg_close(c, false);
	return NULL;
}

static void
lg_record(struct lg_worker *w, double ms)
{
	if (w->nlat == w->caplat) {
		size_t ncap = w->caplat ? w->caplat * 2 : 256;
		double *n = realloc(w->lat, ncap * sizeof(*n));

		if (n == NULL)
			lg_die("out of memory");
		w->lat = n;
		w->caplat = ncap;
	}
	w->lat[w->nlat++] = ms;
}

/* One transaction on an open session; 0 ok, -1 failed (reported). */
static int
lg_transaction(struct lg_conn *c, struct lg_worker *w, double t0)
{
	const char *step;
	char *msg;
	size_t len;
	int rc = -1;

	msg = lg_message(w, &len);
	step = "MAIL FROM (250)";
	if (lg_cmd(c, 250, "MAIL FROM:<%s> SIZE=%zu", opts.from, len) == -1)
		goto out;
	step = "RCPT TO (250)";
	if (lg_cmd(c, 250, "RCPT TO:<%s>", opts.to) == -1)
		goto out;
	step = "DATA (354)";
	if (lg_cmd(c, 354, "DATA") == -1)
		goto out;
	step = "end of data (250 queued)";
	if (lg_write(c, msg, len) == -1 || lg_reply(c) != 250)
		goto out;
	lg_record(w, (lg_now() - t0) * 1000.0);
	atomic_fetch_add(&lg_ok, 1);
	rc = 0;
out:
	if (rc == -1)
		lg_fail(1, step, "%s", c->last);
	free(msg);
	return rc;
}

/*
 * Claim the messages of one connection at once: with --per-conn 50, 8
 * threads and 400 messages that is exactly 8 sessions of 50 each.
 */
static long
lg_claim(void)
{
	long first = atomic_fetch_add(&lg_next, opts.per_conn);

	if (first >= opts.messages)
		return 0;
	return opts.messages - first < opts.per_conn ? opts.messages - first
						     : opts.per_conn;
}

static void *
lg_load_thread(void *arg)
{
	struct lg_worker *w = arg;
	long n, done;

	while ((n = lg_claim()) > 0) {
		double t0 = lg_now();
		const char *step;
		struct lg_conn *c;

		if ((c = lg_open(w, &step)) == NULL) {
			lg_fail(n, step, "%s", "connection-level failure");
			continue;
		}
		for (done = 0; done < n; done++) {
			if (opts.per_conn > 1)
				t0 = lg_now();
			if (lg_transaction(c, w, t0) == -1)
				break;
		}
		/* the rest of this connection's share fails with it */
		if (done + 1 < n)
			lg_fail(n - done - 1, "session",
			    "%ld message(s) not "
			    "attempted after a failure",
			    n - done - 1);
		lg_close(c, true);
	}
	return NULL;
}

static void *
lg_hold_thread(void *arg)
{
	struct lg_worker *w = arg;
	const char *step;

	while (sem_wait(&lg_open_sem) == -1)
		if (errno != EINTR)
			lg_die("sem_wait: %s", strerror(errno));
	w->held = lg_open(w, &step);
	if (sem_post(&lg_open_sem) == -1)
		lg_die("sem_post: %s", strerror(errno));
	if (w->held == NULL)
		lg_fail(0, step, "%s", "could not open a held session");
	else
		atomic_fetch_add(&lg_held, 1);
	return NULL;
}

/* ---- statistics -------------------------------------------------------- */

static int
lg_cmpd(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return (x > y) - (x < y);
}

static double
lg_pct(const double *v, size_t n, double p)
{
	size_t i;

	if (n == 0)
		return 0.0;
	/* nearest rank */
	i = (size_t)(p / 100.0 * (double)n + 0.999999);
	if (i < 1)
		i = 1;
	if (i > n)
		i = n;
	return v[i - 1];
}

static void
lg_report(struct lg_worker *ws, long nw, double elapsed)
{
	size_t total = 0, k = 0;
	double *all, rate, p50, p90, p99, mean = 0.0;
	long ok = atomic_load(&lg_ok), failed = atomic_load(&lg_failed);
	long i;
	static const char *modes[] = { "plain", "starttls", "implicit" };

	for (i = 0; i < nw; i++)
		total += ws[i].nlat;
	if ((all = calloc(total ? total : 1, sizeof(*all))) == NULL)
		lg_die("out of memory");
	for (i = 0; i < nw; i++) {
		memcpy(all + k, ws[i].lat, ws[i].nlat * sizeof(*all));
		k += ws[i].nlat;
	}
	qsort(all, total, sizeof(*all), lg_cmpd);
	for (k = 0; k < total; k++)
		mean += all[k];
	if (total)
		mean /= (double)total;
	rate = elapsed > 0 ? (double)ok / elapsed : 0.0;
	p50 = lg_pct(all, total, 50);
	p90 = lg_pct(all, total, 90);
	p99 = lg_pct(all, total, 99);
	if (!opts.quiet) {
		printf("loadgen: %s:%s %s, %ld connections at once, %ld "
		       "message(s) per connection, %ld-byte body%s\n",
		    opts.host, opts.port, modes[opts.mode], opts.concurrency,
		    opts.per_conn, opts.size,
		    opts.resume ? ", TLS resumption on" : "");
		printf("  messages:   %ld ok, %ld failed in %.3f s "
		       "(%ld connections)\n",
		    ok, failed, elapsed, atomic_load(&lg_connections));
		printf("  throughput: %.2f messages/s\n", rate);
		printf("  latency ms: min %.1f  mean %.1f  p50 %.1f  p90 %.1f"
		       "  p99 %.1f  max %.1f (%s)\n",
		    total ? all[0] : 0.0, mean, p50, p90, p99,
		    total ? all[total - 1] : 0.0,
		    opts.per_conn > 1 ? "from MAIL FROM" : "from connect");
		if (opts.mode != LG_PLAIN)
			printf("  TLS:        %ld handshakes, %ld resumed\n",
			    atomic_load(&lg_handshakes),
			    atomic_load(&lg_resumed));
	}
	printf("RESULT ok=%ld failed=%ld rate=%.2f p50=%.1f p90=%.1f "
	       "p99=%.1f seconds=%.3f handshakes=%ld resumed=%ld\n",
	    ok, failed, rate, p50, p90, p99, elapsed,
	    atomic_load(&lg_handshakes), atomic_load(&lg_resumed));
	(void)fflush(stdout);
	free(all);
}

/* ---- modes ------------------------------------------------------------- */

static struct lg_worker *
lg_workers(long n)
{
	struct lg_worker *ws;
	long i;

	if ((ws = calloc((size_t)n, sizeof(*ws))) == NULL)
		lg_die("out of memory");
	for (i = 0; i < n; i++)
		ws[i].index = (int)i;
	return ws;
}

static void
lg_start(struct lg_worker *ws, long n, void *(*fn)(void *))
{
	pthread_attr_t attr;
	long i;
	int e;

	if (pthread_attr_init(&attr) != 0
	    || pthread_attr_setstacksize(&attr, 256 * 1024) != 0)
		lg_die("pthread_attr");
	for (i = 0; i < n; i++)
		if ((e = pthread_create(&ws[i].tid, &attr, fn, &ws[i])) != 0)
			lg_die("pthread_create: %s", strerror(e));
	(void)pthread_attr_destroy(&attr);
}

static void
lg_join(struct lg_worker *ws, long n)
{
	long i;

	for (i = 0; i < n; i++)
		(void)pthread_join(ws[i].tid, NULL);
}

static void
lg_free_workers(struct lg_worker *ws, long n)
{
	long i;

	for (i = 0; i < n; i++) {
		free(ws[i].lat);
		if (ws[i].session != NULL)
			SSL_SESSION_free(ws[i].session);
	}
	free(ws);
}

static int
lg_run_load(void)
{
	long n = opts.concurrency;
	struct lg_worker *ws;
	double t0, elapsed;

	if (n > opts.messages)
		n = opts.messages;
	ws = lg_workers(n);
	t0 = lg_now();
	lg_start(ws, n, lg_load_thread);
	lg_join(ws, n);
	elapsed = lg_now() - t0;
	lg_report(ws, n, elapsed);
	lg_free_workers(ws, n);
	return atomic_load(&lg_failed) == 0
		&& atomic_load(&lg_ok) == opts.messages
	    ? 0
	    : 1;
}

static int
lg_run_hold(sigset_t *sigs)
{
	struct lg_worker *ws = lg_workers(opts.hold);
	struct timespec ts = { .tv_sec = opts.hold_seconds, .tv_nsec = 0 };
	long i, held;
	int sig;

	if (sem_init(&lg_open_sem, 0, (unsigned int)opts.concurrency) == -1)
		lg_die("sem_init: %s", strerror(errno));
	lg_start(ws, opts.hold, lg_hold_thread);
	lg_join(ws, opts.hold);
	held = atomic_load(&lg_held);
	printf("holding %ld\n", held);
	(void)fflush(stdout);
	if (held != opts.hold)
		(void)fprintf(stderr,
		    "loadgen: only %ld of %ld sessions "
		    "authenticated\n",
		    held, opts.hold);
	if (opts.hold_seconds > 0)
		sig = sigtimedwait(sigs, NULL, &ts);
	else
		sig = sigwaitinfo(sigs, NULL);
	(void)sig;
	for (i = 0; i < opts.hold; i++)
		lg_close(ws[i].held, true);
	lg_free_workers(ws, opts.hold);
	printf("released %ld\n", held);
	return held == opts.hold ? 0 : 1;
}

/* ---- options ----------------------------------------------------------- */

static void
lg_usage(void)
{
	(void)fprintf(stderr,
	    "usage: loadgen [options]\n"
	    "  -H, --host HOST          server address (127.0.0.1)\n"
	    "  -p, --port PORT          server port (587)\n"
	    "  -m, --mode MODE          plain | starttls | implicit "
	    "(starttls)\n"
	    "  -u, --user NAME          AUTH PLAIN login (no AUTH without)\n"
	    "  -P, --password PW        AUTH PLAIN password\n"
	    "      --password-file F    read the password from F's first "
	    "line\n"
	    "  -c, --concurrency N      connections at once (8); with "
	    "--hold: logins at once\n"
	    "  -n, --messages N         messages in total (100)\n"
	    "  -k, --per-conn N         messages per connection (1)\n"
	    "  -s, --size BYTES         body size in bytes (2048)\n"
	    "  -f, --from ADDR          envelope sender and From: (the "
	    "login)\n"
	    "  -t, --to ADDR            recipient (rcpt@example.net)\n"
	    "      --ehlo NAME          EHLO name (loadgen.invalid)\n"
	    "      --sni NAME           TLS server name indication\n"
	    "      --resume             reuse each thread's last TLS "
	    "session\n"
	    "      --hold N             hold N authenticated sessions idle\n"
	    "      --hold-seconds S     ... for S seconds (0: until "
	    "SIGINT)\n"
	    "      --timeout S          per reply/IO timeout (60)\n"
	    "  -q, --quiet              only the RESULT line\n");
	exit(2);
}

static long
lg_num(const char *s, const char *what, long min, long max)
{
	char *end;
	long v;

	errno = 0;
	v = strtol(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || v < min || v > max)
		lg_die("bad %s: \"%s\" (%ld..%ld)", what, s, min, max);
	return v;
}

static char *
lg_read_password(const char *path)
{
	FILE *f;
	char line[512];
	size_t n;

	if ((f = fopen(path, "r")) == NULL)
		lg_die("%s: %s", path, strerror(errno));
	if (fgets(line, sizeof(line), f) == NULL)
		lg_die("%s: empty", path);
	(void)fclose(f);
	n = strcspn(line, "\r\n");
	line[n] = '\0';
	return strdup(line);
}

enum {
	OPT_EHLO = 256,
	OPT_SNI,
	OPT_RESUME,
	OPT_HOLD,
	OPT_HOLD_SECONDS,
	OPT_TIMEOUT,
	OPT_PWFILE
};

static void
lg_parse(int argc, char **argv)
{
	static const struct option lo[] = {
		{ "host", required_argument, NULL, 'H' },
		{ "port", required_argument, NULL, 'p' },
		{ "mode", required_argument, NULL, 'm' },
		{ "user", required_argument, NULL, 'u' },
		{ "password", required_argument, NULL, 'P' },
		{ "password-file", required_argument, NULL, OPT_PWFILE },
		{ "concurrency", required_argument, NULL, 'c' },
		{ "messages", required_argument, NULL, 'n' },
		{ "per-conn", required_argument, NULL, 'k' },
		{ "size", required_argument, NULL, 's' },
		{ "from", required_argument, NULL, 'f' },
		{ "to", required_argument, NULL, 't' },
		{ "ehlo", required_argument, NULL, OPT_EHLO },
		{ "sni", required_argument, NULL, OPT_SNI },
		{ "resume", no_argument, NULL, OPT_RESUME },
		{ "hold", required_argument, NULL, OPT_HOLD },
		{ "hold-seconds", required_argument, NULL, OPT_HOLD_SECONDS },
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "quiet", no_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	int ch;

	opts = (struct lg_opts) { .host = "127.0.0.1",
		.port = "587",
		.mode = LG_STARTTLS,
		.to = "rcpt@example.net",
		.ehlo = "loadgen.invalid",
		.concurrency = 8,
		.messages = 100,
		.per_conn = 1,
		.size = 2048,
		.timeout = 60 };
	while (
	    (ch = getopt_long(argc, argv, "H:p:m:u:P:c:n:k:s:f:t:qh", lo, NULL))
	    != -1) {
		switch (ch) {
		case 'H':
			opts.host = optarg;
			break;
		case 'p':
			(void)lg_num(optarg, "port", 1, 65535);
			opts.port = optarg;
			break;
		case 'm':
			if (strcmp(optarg, "plain") == 0)
				opts.mode = LG_PLAIN;
			else if (strcmp(optarg, "starttls") == 0)
				opts.mode = LG_STARTTLS;
			else if (strcmp(optarg, "implicit") == 0)
				opts.mode = LG_IMPLICIT;
			else
				lg_die("bad mode \"%s\"", optarg);
			break;
		case 'u':
			opts.user = optarg;
			break;
		case 'P':
			opts.password = optarg;
			break;
		case OPT_PWFILE:
			opts.password = lg_read_password(optarg);
			break;
		case 'c':
			opts.concurrency
			    = lg_num(optarg, "concurrency", 1, LG_MAX_THREADS);
			break;
		case 'n':
			opts.messages
			    = lg_num(optarg, "messages", 1, 100000000);
			break;
		case 'k':
			opts.per_conn
			    = lg_num(optarg, "per-conn", 1, 100000000);
			break;
		case 's':
			opts.size = lg_num(optarg, "size", 0, 1L << 30);
			break;
		case 'f':
			opts.from = optarg;
			break;
		case 't':
			opts.to = optarg;
			break;
		case OPT_EHLO:
			opts.ehlo = optarg;
			break;
		case OPT_SNI:
			opts.sni = optarg;
			break;
		case OPT_RESUME:
			opts.resume = true;
			break;
		case OPT_HOLD:
			opts.hold = lg_num(optarg, "hold", 1, LG_MAX_THREADS);
			break;
		case OPT_HOLD_SECONDS:
			opts.hold_seconds
			    = lg_num(optarg, "hold-seconds", 0, 86400);
			break;
		case OPT_TIMEOUT:
			opts.timeout = lg_num(optarg, "timeout", 1, 3600);
			break;
		case 'q':
			opts.quiet = true;
			break;
		default:
			lg_usage();
		}
	}
	if (optind != argc)
		lg_usage();
	if (opts.user != NULL && opts.password == NULL)
		lg_die("--user needs --password or --password-file");
	if (opts.user != NULL && opts.mode == LG_PLAIN && !opts.quiet)
		(void)fprintf(stderr, "loadgen: note: AUTH without TLS\n");
	if (opts.from == NULL)
		opts.from = opts.user != NULL && strchr(opts.user, '@')
		    ? opts.user
		    : "sender@example.org";
	if (strpbrk(opts.from, "<>\r\n") || strpbrk(opts.to, "<>\r\n"))
		lg_die("bad address");
}

static void
lg_tls_init(void)
{
	if ((lg_ctx = SSL_CTX_new(TLS_client_method())) == NULL)
		lg_die("SSL_CTX_new failed");
	SSL_CTX_set_verify(lg_ctx, SSL_VERIFY_NONE, NULL);
	if (SSL_CTX_set_min_proto_version(lg_ctx, TLS1_2_VERSION) != 1)
		lg_die("SSL_CTX_set_min_proto_version failed");
	/* Keep sessions ourselves, per thread, for --resume. */
	SSL_CTX_set_session_cache_mode(
	    lg_ctx, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(lg_ctx, lg_new_session_cb);
}

int
main(int argc, char **argv)
{
	sigset_t sigs;
	int rc;

	lg_parse(argc, argv);
	/* --hold takes SIGINT/SIGTERM with sigwait: block them everywhere. */
	if (sigemptyset(&sigs) == -1 || sigaddset(&sigs, SIGINT) == -1
	    || sigaddset(&sigs, SIGTERM) == -1
	    || (opts.hold > 0 && pthread_sigmask(SIG_BLOCK, &sigs, NULL) != 0))
		lg_die("cannot block signals");
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		lg_die("signal");
	lg_tls_init();
	if (opts.user != NULL)
		lg_make_auth();
	lg_make_body();
	if (opts.hold > 0)
		rc = lg_run_hold(&sigs);
	else
		rc = lg_run_load();
	SSL_CTX_free(lg_ctx);
	free(lg_body);
	return rc;
}

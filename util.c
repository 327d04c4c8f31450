/*
 * util.c - small helpers every process uses: checked allocation, bounded
 * string handling, a growable buffer.
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "msa.h"

void *
xmalloc(size_t n)
{
	void *p;

	if (n == 0)
		n = 1;
	if ((p = malloc(n)) == NULL)
		fatal("malloc %zu", n);
	return p;
}

void *
xcalloc(size_t n, size_t size)
{
	void *p;

	if (n == 0 || size == 0)
		n = size = 1;
	if ((p = calloc(n, size)) == NULL)
		fatal("calloc %zu*%zu", n, size);
	return p;
}

void *
xreallocarray(void *p, size_t n, size_t size)
{
	void *q;

	if (size != 0 && n > SIZE_MAX / size)
		fatalx("reallocarray overflow %zu*%zu", n, size);
	if ((q = realloc(p, n * size != 0 ? n * size : 1)) == NULL)
		fatal("realloc %zu*%zu", n, size);
	return q;
}

char *
xstrdup(const char *s)
{
	char *p;

	if ((p = strdup(s)) == NULL)
		fatal("strdup");
	return p;
}

size_t
strlcpy_msa(char *dst, const char *src, size_t size)
{
	size_t len = strlen(src);

	if (size > 0) {
		size_t n = len >= size ? size - 1 : len;
		memcpy(dst, src, n);
		dst[n] = '\0';
	}
	return len;
}

int
bsnprintf(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= size)
		return -1;
	return 0;
}

int
write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	ssize_t n;

	while (len > 0) {
		n = write(fd, p, len);
		if (n == -1) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

int
parse_u64(const char *s, size_t len, uint64_t *out)
{
	uint64_t v = 0;
	size_t i;

	if (len == 0 || len > 20)
		return -1;
	for (i = 0; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (v > (UINT64_MAX - (uint64_t)(s[i] - '0')) / 10)
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	*out = v;
	return 0;
}

time_t
monotime(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1)
		fatal("clock_gettime");
	return ts.tv_sec;
}

void
random_hex(char *out, size_t outsize, size_t nbytes)
{
	static const char hex[] = "0123456789abcdef";
	unsigned char raw[64];
	size_t i;

	if (nbytes > sizeof(raw) || outsize < 2 * nbytes + 1)
		fatalx("random_hex: bad size");
	if (RAND_bytes(raw, (int)nbytes) != 1)
		fatalx("RAND_bytes failed");
	for (i = 0; i < nbytes; i++) {
		out[2 * i] = hex[raw[i] >> 4];
		out[2 * i + 1] = hex[raw[i] & 0xf];
	}
	out[2 * nbytes] = '\0';
}

const char *
sockaddr_ntop(const struct sockaddr *sa, char *buf, size_t len)
{
	const void *addr;

	if (sa->sa_family == AF_INET)
		addr = &((const struct sockaddr_in *)(const void *)sa)->sin_addr;
	else if (sa->sa_family == AF_INET6)
		addr = &((const struct sockaddr_in6 *)(const void *)sa)->sin6_addr;
	else {
		strlcpy_msa(buf, "local", len);
		return buf;
	}
	if (inet_ntop(sa->sa_family, addr, buf, (socklen_t)len) == NULL)
		strlcpy_msa(buf, "unknown", len);
	return buf;
}

void
buf_init(struct buf *b)
{
	b->data = NULL;
	b->len = b->cap = 0;
}

void
buf_free(struct buf *b)
{
	free(b->data);
	buf_init(b);
}

void
buf_reset(struct buf *b)
{
	b->len = 0;
}

static void
buf_reserve(struct buf *b, size_t more)
{
	size_t need, cap;

	if (more > SIZE_MAX - b->len - 1)
		fatalx("buf: overflow");
	need = b->len + more + 1; /* room for a terminating NUL */
	if (need <= b->cap)
		return;
	cap = b->cap ? b->cap : 256;
	while (cap < need)
		cap = cap > SIZE_MAX / 2 ? need : cap * 2;
	b->data = xreallocarray(b->data, cap, 1);
	b->cap = cap;
}

void
buf_add(struct buf *b, const void *data, size_t len)
{
	buf_reserve(b, len);
	if (len > 0)
		memcpy(b->data + b->len, data, len);
	b->len += len;
	b->data[b->len] = '\0';
}

void
buf_addstr(struct buf *b, const char *s)
{
	buf_add(b, s, strlen(s));
}

void
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0)
		fatalx("buf_printf: bad format");
	buf_reserve(b, (size_t)n);
	va_start(ap, fmt);
	n = vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	if (n < 0)
		fatalx("buf_printf: bad format");
	b->len += (size_t)n;
}

/*
 * Signals for poll loops (the self-pipe trick): the handler only records
 * the signal and writes a byte, so poll() wakes up; the loop then asks
 * sig_take() what happened.  One instance per process.
 */
static int sig_pipe[2] = { -1, -1 };
static volatile sig_atomic_t sig_seen[NSIG];

static void
sig_handler(int sig)
{
	int saved = errno;
	char c = (char)sig;

	if (sig > 0 && sig < NSIG)
		sig_seen[sig] = 1;
	/* A full pipe already holds a wake-up; nothing is lost. */
	if (write(sig_pipe[1], &c, 1) == -1)
		errno = saved;
	errno = saved;
}

int
sig_catch(const int *sigs, size_t n)
{
	struct sigaction sa;

	if (sig_pipe[0] == -1 &&
	    pipe2(sig_pipe, O_NONBLOCK | O_CLOEXEC) == -1)
		fatal("pipe2");
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = sig_handler;
	sigemptyset(&sa.sa_mask);
	sa.sa_flags = SA_RESTART;
	for (size_t i = 0; i < n; i++)
		if (sigaction(sigs[i], &sa, NULL) == -1)
			fatal("sigaction %d", sigs[i]);
	return sig_pipe[0];
}

bool
sig_take(int sig)
{
	if (sig <= 0 || sig >= NSIG || !sig_seen[sig])
		return false;
	sig_seen[sig] = 0;
	return true;
}

bool
sig_pending(int sig)
{
	return sig > 0 && sig < NSIG && sig_seen[sig];
}

void
sig_drain(void)
{
	char buf[64];

	while (sig_pipe[0] != -1 && read(sig_pipe[0], buf, sizeof(buf)) > 0)
		;
}

void
sig_close(void)
{
	for (int i = 0; i < 2; i++) {
		if (sig_pipe[i] != -1)
			(void)close(sig_pipe[i]);
		sig_pipe[i] = -1;
	}
	for (int s = 0; s < NSIG; s++)
		sig_seen[s] = 0;
}

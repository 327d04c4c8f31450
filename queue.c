/*
 * queue.c - the queue process: owns the spool, commits messages durably,
 * schedules deliveries through the relay process, queues bounces and
 * answers the control socket (msa queue ...).
 *
 * Spool (the process is chrooted into it, so paths are "/queue", "/tmp"):
 *   tmp/ID          a message being received (a session holds its fd)
 *   tmp/ID.env      an envelope being written, renamed into queue/ next
 *   queue/ID.data   committed message
 *   queue/ID.env    committed envelope: its rename is the commit point
 *   queue/ID.bad    an envelope that did not parse, kept for the admin
 *
 * Every change of a file is write-to-temp, fsync, rename, fsync of the
 * directory, so a crash at any point leaves either the old or the new state.
 *
 * Group commit: a new message's fsyncs (its data, then its envelope) run in
 * QUEUE_SYNC_WORKERS sync worker processes, several messages at once; the
 * queue process then renames every message prepared by the time it looks
 * into queue/ and fsyncs queue/ ONCE for all of them, and only then answers
 * each session.  A message is acknowledged only after its own data,
 * envelope and names are durable; a failure of one message is its own.
 *
 * The file functions take directory descriptors rather than paths, so the
 * unit tests run them against a mkdtemp spool without a chroot.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <dirent.h>
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

#include "msa.h"

#define ENV_MAX_TOKENS 8
#define ENV_MAX_ATTEMPTS 1000000u

/* ------------------------------------------------------------------ */
/* Envelope records                                                    */

void
queue_env_init(struct queue_env *env)
{
	memset(env, 0, sizeof(*env));
}

void
queue_env_free(struct queue_env *env)
{
	free(env->rcpt);
	queue_env_init(env);
}

void
queue_env_add_rcpt(struct queue_env *env, const char *addr)
{
	struct queue_rcpt *r;

	if (env->nrcpt == env->rcpt_cap) {
		env->rcpt_cap = env->rcpt_cap ? env->rcpt_cap * 2 : 4;
		env->rcpt = xreallocarray(env->rcpt, env->rcpt_cap,
		    sizeof(*env->rcpt));
	}
	r = &env->rcpt[env->nrcpt++];
	memset(r, 0, sizeof(*r));
	strlcpy_msa(r->addr, addr, sizeof(r->addr));
	r->state = QRCPT_PENDING;
}

static const char *const queue_state_names[] = {
	[QRCPT_PENDING] = "pending",
	[QRCPT_DELIVERED] = "delivered",
	[QRCPT_FAILED] = "failed",
	[QRCPT_EXPIRED] = "expired",
	[QRCPT_BOUNCED] = "bounced",
};

const char *
queue_rcpt_state_name(enum queue_rcpt_state state)
{
	if ((size_t)state >= sizeof(queue_state_names) /
	    sizeof(queue_state_names[0]))
		return "unknown";
	return queue_state_names[state];
}

bool
queue_id_valid(const char *s)
{
	size_t i;

	for (i = 0; i < QUEUE_ID_LEN; i++)
		if (!((s[i] >= '0' && s[i] <= '9') ||
		    (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return s[QUEUE_ID_LEN] == '\0';
}

const char *
queue_addr_domain(const char *addr)
{
	const char *at = strrchr(addr, '@');

	return at != NULL ? at + 1 : "";
}

/* A value on an envelope line: printable ASCII but '%' as is, else %XX. */
static void
env_put_value(struct buf *b, const char *s)
{
	static const char hex[] = "0123456789ABCDEF";
	char esc[3];

	if (*s == '\0') {
		buf_addstr(b, "-");
		return;
	}
	if (strcmp(s, "-") == 0) {
		buf_addstr(b, "%2D");
		return;
	}
	for (; *s != '\0'; s++) {
		unsigned char c = (unsigned char)*s;

		if (c > 0x20 && c < 0x7f && c != '%') {
			buf_add(b, s, 1);
			continue;
		}
		esc[0] = '%';
		esc[1] = hex[c >> 4];
		esc[2] = hex[c & 0xf];
		buf_add(b, esc, sizeof(esc));
	}
}

static void
env_put_field(struct buf *b, const char *key, const char *value)
{
	buf_addstr(b, key);
	buf_addstr(b, " ");
	env_put_value(b, value);
	buf_addstr(b, "\n");
}

void
queue_env_format(const struct queue_env *env, struct buf *out)
{
	const struct queue_rcpt *r;
	size_t i;

	buf_printf(out, "msa-envelope %d\n", QUEUE_ENV_VERSION);
	env_put_field(out, "id", env->id);
	buf_printf(out, "created %lld\n", (long long)env->created);
	env_put_field(out, "sender", env->sender);
	env_put_field(out, "login", env->login);
	env_put_field(out, "client", env->client);
	env_put_field(out, "helo", env->helo);
	buf_printf(out, "size %" PRIu64 "\n", env->size);
	buf_printf(out, "body_8bit %d\n", env->body_8bit ? 1 : 0);
	for (i = 0; i < env->nrcpt; i++) {
		r = &env->rcpt[i];
		buf_printf(out, "rcpt %s %u %lld %lld ",
		    queue_rcpt_state_name(r->state), r->attempts,
		    (long long)r->next, (long long)r->last);
		env_put_value(out, r->addr);
		buf_addstr(out, " ");
		env_put_value(out, r->reply);
		buf_addstr(out, "\n");
	}
	buf_addstr(out, "end\n");
}

/* Parser state: the text, where we are, and where to put the reason. */
struct env_parser {
	const char *p, *end;
	unsigned lineno;
	char *err;
	size_t errlen;
};

struct env_line {
	const char *tok[ENV_MAX_TOKENS];
	size_t len[ENV_MAX_TOKENS];
	size_t n;
};

static int __attribute__((format(printf, 2, 3)))
env_error(struct env_parser *ep, const char *fmt, ...)
{
	char msg[256];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	(void)snprintf(ep->err, ep->errlen, "line %u: %s", ep->lineno, msg);
	return -1;
}

/* Next line split at single spaces; no empty token, no stray space. */
static int
env_next_line(struct env_parser *ep, struct env_line *l)
{
	const char *nl, *s, *sp;

	ep->lineno++;
	if (ep->p >= ep->end)
		return env_error(ep, "unexpected end of file");
	if ((nl = memchr(ep->p, '\n', (size_t)(ep->end - ep->p))) == NULL)
		return env_error(ep, "line not terminated");
	s = ep->p;
	ep->p = nl + 1;
	l->n = 0;
	for (;;) {
		sp = memchr(s, ' ', (size_t)(nl - s));
		if (sp == NULL)
			sp = nl;
		if (sp == s)
			return env_error(ep, "empty field");
		if (l->n == ENV_MAX_TOKENS)
			return env_error(ep, "too many fields");
		l->tok[l->n] = s;
		l->len[l->n] = (size_t)(sp - s);
		l->n++;
		if (sp == nl)
			return 0;
		s = sp + 1;
	}
}

static bool
env_tok_is(const struct env_line *l, size_t i, const char *word)
{
	return i < l->n && l->len[i] == strlen(word) &&
	    memcmp(l->tok[i], word, l->len[i]) == 0;
}

static int
env_hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

/* Decode one value into out; -1 if malformed, NUL or too long. */
static int
env_decode(const char *s, size_t len, char *out, size_t outsize)
{
	size_t i, o = 0;
	int hi, lo;
	unsigned char c;

	if (len == 1 && s[0] == '-') {
		out[0] = '\0';
		return 0;
	}
	for (i = 0; i < len; i++) {
		c = (unsigned char)s[i];
		if (c == '%') {
			if (i + 2 >= len)
				return -1;
			if ((hi = env_hexval(s[i + 1])) == -1 ||
			    (lo = env_hexval(s[i + 2])) == -1)
				return -1;
			c = (unsigned char)(hi << 4 | lo);
			if (c == '\0')
				return -1;
			i += 2;
		} else if (c <= 0x20 || c >= 0x7f)
			return -1;
		if (o + 1 >= outsize)
			return -1;
		out[o++] = (char)c;
	}
	out[o] = '\0';
	return 0;
}

static int
env_number(const char *s, size_t len, uint64_t max, uint64_t *out)
{
	uint64_t v;

	if (parse_u64(s, len, &v) == -1 || v > max)
		return -1;
	*out = v;
	return 0;
}

/* "key value" line whose value is a string. */
static int
env_get_str(struct env_parser *ep, const char *key, char *out, size_t outsize)
{
	struct env_line l;

	if (env_next_line(ep, &l) == -1)
		return -1;
	if (l.n != 2 || !env_tok_is(&l, 0, key))
		return env_error(ep, "expected \"%s VALUE\"", key);
	if (env_decode(l.tok[1], l.len[1], out, outsize) == -1)
		return env_error(ep, "bad %s value", key);
	return 0;
}

static int
env_get_num(struct env_parser *ep, const char *key, uint64_t max,
    uint64_t *out)
{
	struct env_line l;

	if (env_next_line(ep, &l) == -1)
		return -1;
	if (l.n != 2 || !env_tok_is(&l, 0, key))
		return env_error(ep, "expected \"%s NUMBER\"", key);
	if (env_number(l.tok[1], l.len[1], max, out) == -1)
		return env_error(ep, "bad %s number", key);
	return 0;
}

static int
env_parse_state(const struct env_line *l, enum queue_rcpt_state *st)
{
	size_t i;

	for (i = 0; i < sizeof(queue_state_names) / sizeof(queue_state_names[0]);
	    i++)
		if (env_tok_is(l, 1, queue_state_names[i])) {
			*st = (enum queue_rcpt_state)i;
			return 0;
		}
	return -1;
}

/* "rcpt STATE ATTEMPTS NEXT LAST ADDRESS REPLY" */
static int
env_parse_rcpt(struct env_parser *ep, const struct env_line *l,
    struct queue_env *env)
{
	struct queue_rcpt r;
	uint64_t v;

	memset(&r, 0, sizeof(r));
	if (l->n != 7)
		return env_error(ep, "recipient line needs 7 fields");
	if (env_parse_state(l, &r.state) == -1)
		return env_error(ep, "unknown recipient state");
	if (env_number(l->tok[2], l->len[2], ENV_MAX_ATTEMPTS, &v) == -1)
		return env_error(ep, "bad attempts");
	r.attempts = (unsigned)v;
	if (env_number(l->tok[3], l->len[3], INT64_MAX, &v) == -1)
		return env_error(ep, "bad next attempt time");
	r.next = (time_t)v;
	if (env_number(l->tok[4], l->len[4], INT64_MAX, &v) == -1)
		return env_error(ep, "bad last attempt time");
	r.last = (time_t)v;
	if (env_decode(l->tok[5], l->len[5], r.addr, sizeof(r.addr)) == -1 ||
	    r.addr[0] == '\0')
		return env_error(ep, "bad recipient address");
	if (env_decode(l->tok[6], l->len[6], r.reply, sizeof(r.reply)) == -1)
		return env_error(ep, "bad recipient reply");
	if (env->nrcpt >= MAX_RCPT_LIMIT)
		return env_error(ep, "too many recipients");
	queue_env_add_rcpt(env, r.addr);
	env->rcpt[env->nrcpt - 1] = r;
	return 0;
}

static int
env_parse_header(struct env_parser *ep, struct queue_env *env)
{
	struct env_line l;
	uint64_t v;

	if (env_next_line(ep, &l) == -1)
		return -1;
	if (l.n != 2 || !env_tok_is(&l, 0, "msa-envelope"))
		return env_error(ep, "not an msa envelope");
	if (!env_tok_is(&l, 1, "1"))
		return env_error(ep, "unsupported envelope version");
	if (env_get_str(ep, "id", env->id, sizeof(env->id)) == -1)
		return -1;
	if (!queue_id_valid(env->id))
		return env_error(ep, "bad queue id");
	if (env_get_num(ep, "created", INT64_MAX, &v) == -1)
		return -1;
	env->created = (time_t)v;
	if (env_get_str(ep, "sender", env->sender, sizeof(env->sender)) ==
	    -1 ||
	    env_get_str(ep, "login", env->login, sizeof(env->login)) == -1 ||
	    env_get_str(ep, "client", env->client, sizeof(env->client)) ==
		-1 ||
	    env_get_str(ep, "helo", env->helo, sizeof(env->helo)) == -1)
		return -1;
	if (env_get_num(ep, "size", UINT64_MAX, &env->size) == -1)
		return -1;
	if (env_get_num(ep, "body_8bit", 1, &v) == -1)
		return -1;
	env->body_8bit = v == 1;
	return 0;
}

int
queue_env_parse(const char *text, size_t len, struct queue_env *env,
    char *err, size_t errlen)
{
	struct env_parser ep = { text, text + len, 0, err, errlen };
	struct env_line l;

	queue_env_init(env);
	if (memchr(text, '\0', len) != NULL) {
		(void)snprintf(err, errlen, "NUL byte in envelope");
		return -1;
	}
	if (env_parse_header(&ep, env) == -1)
		goto bad;
	for (;;) {
		if (env_next_line(&ep, &l) == -1)
			goto bad;
		if (l.n == 1 && env_tok_is(&l, 0, "end"))
			break;
		if (!env_tok_is(&l, 0, "rcpt")) {
			env_error(&ep, "expected \"rcpt\" or \"end\"");
			goto bad;
		}
		if (env_parse_rcpt(&ep, &l, env) == -1)
			goto bad;
	}
	if (ep.p != ep.end) {
		env_error(&ep, "data after \"end\"");
		goto bad;
	}
	if (env->nrcpt == 0) {
		env_error(&ep, "no recipient");
		goto bad;
	}
	return 0;
bad:
	queue_env_free(env);
	return -1;
}

/* ------------------------------------------------------------------ */
/* Spool files                                                         */

static int
queue_name(char *buf, size_t len, const char *id, const char *suffix)
{
	return bsnprintf(buf, len, "%s%s", id, suffix);
}

static int
spool_fsync_dir(int dirfd)
{
	return fsync(dirfd) == -1 ? errno : 0;
}

/* dirfd/name := data, fsync'd; the file is removed on failure. */
static int
spool_write_file(int dirfd, const char *name, const void *data, size_t len)
{
	int fd, e = 0;

	fd = openat(dirfd, name,
	    O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
	if (fd == -1)
		return errno;
	if (write_all(fd, data, len) == -1 || fsync(fd) == -1)
		e = errno;
	if (close(fd) == -1 && e == 0)
		e = errno;
	if (e != 0)
		(void)unlinkat(dirfd, name, 0);
	return e;
}

static bool
spool_exists(int dirfd, const char *name)
{
	struct stat st;

	return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static bool
queue_id_taken(int queue_fd, const char *id)
{
	static const char *const suffixes[] = { ".data", ".env", ".bad" };
	char name[QUEUE_ID_LEN + 8];
	size_t i;

	for (i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++)
		if (queue_name(name, sizeof(name), id, suffixes[i]) == 0 &&
		    spool_exists(queue_fd, name))
			return true;
	return false;
}

int
queue_tmp_create(int tmp_fd, int queue_fd, char id[QUEUE_ID_LEN + 1],
    int *fdp)
{
	int fd, tries;

	for (tries = 0; tries < 32; tries++) {
		random_hex(id, QUEUE_ID_LEN + 1, QUEUE_ID_LEN / 2);
		if (queue_id_taken(queue_fd, id))
			continue;
		fd = openat(tmp_fd, id,
		    O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
		if (fd != -1) {
			*fdp = fd;
			return 0;
		}
		if (errno != EEXIST)
			return errno;
	}
	return EEXIST;
}

/* Write tmp/ID.env from env. */
static int
queue_env_write_tmp(int tmp_fd, const struct queue_env *env)
{
	char name[QUEUE_ID_LEN + 8];
	struct buf b;
	int e;

	if (queue_name(name, sizeof(name), env->id, ".env") == -1)
		return EINVAL;
	buf_init(&b);
	queue_env_format(env, &b);
	e = spool_write_file(tmp_fd, name, b.data, b.len);
	buf_free(&b);
	return e;
}

/* Is tmp/ID a regular file of exactly size bytes?  Then fsync it. */
static int
queue_check_data(int tmp_fd, const char *id, uint64_t size)
{
	struct stat st;
	int fd, e = 0;

	if ((fd = openat(tmp_fd, id, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) == -1)
		return errno;
	if (fstat(fd, &st) == -1)
		e = errno;
	else if (!S_ISREG(st.st_mode) || (uint64_t)st.st_size != size)
		e = EINVAL;
	else if (fsync(fd) == -1)
		e = errno;
	(void)close(fd);
	return e;
}

int
queue_commit_prepare(int tmp_fd, const struct queue_env *env)
{
	char ename[QUEUE_ID_LEN + 8];
	int e;

	if (!queue_id_valid(env->id) ||
	    queue_name(ename, sizeof(ename), env->id, ".env") == -1)
		return EINVAL;
	if ((e = queue_check_data(tmp_fd, env->id, env->size)) == 0 &&
	    (e = queue_env_write_tmp(tmp_fd, env)) == 0)
		return 0;
	(void)unlinkat(tmp_fd, ename, 0);
	(void)unlinkat(tmp_fd, env->id, 0);
	return e;
}

int
queue_commit_publish(int tmp_fd, int queue_fd, const char *id)
{
	char dname[QUEUE_ID_LEN + 8], ename[QUEUE_ID_LEN + 8];
	int e;

	if (!queue_id_valid(id) ||
	    queue_name(dname, sizeof(dname), id, ".data") == -1 ||
	    queue_name(ename, sizeof(ename), id, ".env") == -1)
		return EINVAL;
	if (renameat(tmp_fd, id, queue_fd, dname) == -1) {
		e = errno;
		goto fail;
	}
	/* The envelope last: its name is the commit point. */
	if (renameat(tmp_fd, ename, queue_fd, ename) == -1) {
		e = errno;
		(void)unlinkat(queue_fd, dname, 0);
		goto fail;
	}
	return 0;
fail:
	(void)unlinkat(tmp_fd, ename, 0);
	(void)unlinkat(tmp_fd, id, 0);
	return e;
}

void
queue_commit_unpublish(int queue_fd, const char *id)
{
	char dname[QUEUE_ID_LEN + 8], ename[QUEUE_ID_LEN + 8];

	if (!queue_id_valid(id) ||
	    queue_name(dname, sizeof(dname), id, ".data") == -1 ||
	    queue_name(ename, sizeof(ename), id, ".env") == -1)
		return;
	/* The envelope goes first: without it the data is an orphan. */
	(void)unlinkat(queue_fd, ename, 0);
	(void)unlinkat(queue_fd, dname, 0);
}

size_t
queue_commit_batch(int tmp_fd, int queue_fd,
    const struct queue_env *const *env, int *status, size_t n)
{
	size_t i, published = 0;
	int e;

	for (i = 0; i < n; i++)
		if (status[i] == 0 &&
		    (status[i] = queue_commit_publish(tmp_fd, queue_fd,
			 env[i]->id)) == 0)
			published++;
	if (published == 0 || (e = spool_fsync_dir(queue_fd)) == 0)
		return published;
	for (i = 0; i < n; i++)
		if (status[i] == 0) {
			queue_commit_unpublish(queue_fd, env[i]->id);
			status[i] = e;
		}
	(void)spool_fsync_dir(queue_fd);
	return 0;
}

int
queue_commit_files(int tmp_fd, int queue_fd, const struct queue_env *env)
{
	int status = queue_commit_prepare(tmp_fd, env);

	if (status == 0)
		(void)queue_commit_batch(tmp_fd, queue_fd, &env, &status, 1);
	return status;
}

int
queue_env_store(int tmp_fd, int queue_fd, const struct queue_env *env)
{
	char name[QUEUE_ID_LEN + 8];
	int e;

	if (!queue_id_valid(env->id) ||
	    queue_name(name, sizeof(name), env->id, ".env") == -1)
		return EINVAL;
	if ((e = queue_env_write_tmp(tmp_fd, env)) != 0)
		return e;
	if (renameat(tmp_fd, name, queue_fd, name) == -1) {
		e = errno;
		(void)unlinkat(tmp_fd, name, 0);
		return e;
	}
	return spool_fsync_dir(queue_fd);
}

/* Whole regular file dirfd/name into b, at most max bytes. */
static int
spool_read_file(int dirfd, const char *name, size_t max, struct buf *b)
{
	char chunk[8192];
	struct stat st;
	ssize_t n;
	int fd, e = 0;

	if ((fd = openat(dirfd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) ==
	    -1)
		return errno;
	if (fstat(fd, &st) == -1)
		e = errno;
	else if (!S_ISREG(st.st_mode))
		e = EINVAL;
	else if ((uint64_t)st.st_size > max)
		e = EFBIG;
	while (e == 0) {
		n = read(fd, chunk, sizeof(chunk));
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1)
			e = errno;
		else if (n == 0)
			break;
		else if (b->len + (size_t)n > max)
			e = EFBIG;
		else
			buf_add(b, chunk, (size_t)n);
	}
	(void)close(fd);
	return e;
}

int
queue_env_load(int queue_fd, const char *id, struct queue_env *env,
    char *err, size_t errlen)
{
	char name[QUEUE_ID_LEN + 8];
	struct buf b;
	int e;

	queue_env_init(env);
	if (!queue_id_valid(id) ||
	    queue_name(name, sizeof(name), id, ".env") == -1) {
		(void)snprintf(err, errlen, "bad queue id");
		return -1;
	}
	buf_init(&b);
	if ((e = spool_read_file(queue_fd, name, QUEUE_ENV_MAX, &b)) != 0) {
		(void)snprintf(err, errlen, "cannot read %s: %s", name,
		    strerror(e));
		buf_free(&b);
		return -1;
	}
	e = queue_env_parse(b.data != NULL ? b.data : "", b.len, env, err,
	    errlen);
	buf_free(&b);
	if (e == -1)
		return -1;
	if (strcmp(env->id, id) != 0) {
		(void)snprintf(err, errlen, "envelope names id %s", env->id);
		queue_env_free(env);
		return -1;
	}
	return 0;
}

int
queue_remove_files(int queue_fd, const char *id)
{
	char dname[QUEUE_ID_LEN + 8], ename[QUEUE_ID_LEN + 8];

	if (!queue_id_valid(id) ||
	    queue_name(dname, sizeof(dname), id, ".data") == -1 ||
	    queue_name(ename, sizeof(ename), id, ".env") == -1)
		return EINVAL;
	/* Data first: an envelope without data means "being removed". */
	if (unlinkat(queue_fd, dname, 0) == -1 && errno != ENOENT)
		return errno;
	if (unlinkat(queue_fd, ename, 0) == -1 && errno != ENOENT)
		return errno;
	/*
	 * No fsync of queue/ here: a removal lost in a crash only means the
	 * message is delivered again.  The caller makes it durable soon.
	 */
	return 0;
}

/* Names in a directory (without . and ..); the caller frees them. */
static int
spool_list(int dirfd, char ***namesp, size_t *np)
{
	struct dirent *de;
	char **names = NULL;
	size_t n = 0;
	DIR *d;
	int fd;

	if ((fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC)) ==
	    -1)
		return errno;
	if ((d = fdopendir(fd)) == NULL) {
		(void)close(fd);
		return errno;
	}
	while ((errno = 0, de = readdir(d)) != NULL) {
		if (strcmp(de->d_name, ".") == 0 ||
		    strcmp(de->d_name, "..") == 0)
			continue;
		names = xreallocarray(names, n + 1, sizeof(*names));
		names[n++] = xstrdup(de->d_name);
	}
	(void)closedir(d);
	*namesp = names;
	*np = n;
	return 0;
}

static void
spool_list_free(char **names, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		free(names[i]);
	free(names);
}

/* Empty tmp/: nothing in it survives a restart of the queue process. */
static void
spool_empty_tmp(int tmp_fd)
{
	char **names;
	size_t i, n, removed = 0;
	char safe[64];

	if (spool_list(tmp_fd, &names, &n) != 0) {
		log_warn("event=spool-scan-failed dir=tmp");
		return;
	}
	for (i = 0; i < n; i++) {
		if (unlinkat(tmp_fd, names[i], 0) == 0)
			removed++;
		else
			log_warn("event=spool-unlink-failed file=tmp/%s",
			    log_sanitize(safe, sizeof(safe), names[i]));
	}
	spool_list_free(names, n);
	if (removed > 0) {
		(void)spool_fsync_dir(tmp_fd);
		log_info("event=spool-tmp-cleaned files=%zu", removed);
	}
}

/* Split "ID.suffix"; false if the name is not one of ours. */
static bool
spool_parse_name(const char *name, char id[QUEUE_ID_LEN + 1],
    const char **suffix)
{
	if (strlen(name) <= QUEUE_ID_LEN || name[QUEUE_ID_LEN] != '.')
		return false;
	memcpy(id, name, QUEUE_ID_LEN);
	id[QUEUE_ID_LEN] = '\0';
	*suffix = name + QUEUE_ID_LEN;
	return queue_id_valid(id) &&
	    (strcmp(*suffix, ".data") == 0 || strcmp(*suffix, ".env") == 0 ||
		strcmp(*suffix, ".bad") == 0);
}

/* Move queue/ID.env aside to queue/ID.bad. */
static void
spool_set_aside(int queue_fd, const char *id, const char *why)
{
	char ename[QUEUE_ID_LEN + 8], bname[QUEUE_ID_LEN + 8];
	char safe[256];

	if (queue_name(ename, sizeof(ename), id, ".env") == -1 ||
	    queue_name(bname, sizeof(bname), id, ".bad") == -1)
		return;
	if (renameat(queue_fd, ename, queue_fd, bname) == -1) {
		log_warn("event=envelope-corrupt id=%s action=rename-failed",
		    id);
		return;
	}
	(void)spool_fsync_dir(queue_fd);
	log_warnx("event=envelope-corrupt id=%s moved=queue/%s reason=%s", id,
	    bname, log_sanitize(safe, sizeof(safe), why));
}

/* Load queue/ID.env, checked against its data file. */
static int
spool_load_one(int queue_fd, const char *id, struct queue_env *env)
{
	char dname[QUEUE_ID_LEN + 8], err[256];
	struct stat st;

	if (queue_env_load(queue_fd, id, env, err, sizeof(err)) == -1) {
		spool_set_aside(queue_fd, id, err);
		return -1;
	}
	if (queue_name(dname, sizeof(dname), id, ".data") == -1 ||
	    fstatat(queue_fd, dname, &st, AT_SYMLINK_NOFOLLOW) == -1 ||
	    !S_ISREG(st.st_mode) || (uint64_t)st.st_size != env->size) {
		queue_env_free(env);
		spool_set_aside(queue_fd, id, "data file size differs");
		return -1;
	}
	return 0;
}

/* One name of queue/: remove orphans, load envelopes. */
static bool
spool_recover_one(int queue_fd, const char *name,
    void (*cb)(struct queue_env *, void *), void *arg, bool *changed)
{
	char id[QUEUE_ID_LEN + 1], other[QUEUE_ID_LEN + 8], safe[64];
	const char *suffix;
	struct queue_env env;

	if (!spool_parse_name(name, id, &suffix)) {
		log_warnx("event=spool-unknown-file file=queue/%s action=kept",
		    log_sanitize(safe, sizeof(safe), name));
		return false;
	}
	if (strcmp(suffix, ".bad") == 0) {
		log_warnx("event=envelope-bad id=%s action=kept", id);
		return false;
	}
	if (strcmp(suffix, ".data") == 0) {
		/* Kept while its envelope (or the corrupt one) is there. */
		if ((queue_name(other, sizeof(other), id, ".env") == 0 &&
			spool_exists(queue_fd, other)) ||
		    (queue_name(other, sizeof(other), id, ".bad") == 0 &&
			spool_exists(queue_fd, other)))
			return false;
		if (unlinkat(queue_fd, name, 0) == 0) {
			*changed = true;
			log_info("event=orphan-removed file=queue/%s", name);
		}
		return false;
	}
	/* ID.env: without data it was being removed when we stopped. */
	if (queue_name(other, sizeof(other), id, ".data") == 0 &&
	    !spool_exists(queue_fd, other)) {
		if (unlinkat(queue_fd, name, 0) == 0) {
			*changed = true;
			log_info("event=orphan-removed file=queue/%s", name);
		}
		return false;
	}
	if (spool_load_one(queue_fd, id, &env) == -1)
		return false;
	cb(&env, arg);
	return true;
}

size_t
queue_spool_recover(int tmp_fd, int queue_fd,
    void (*cb)(struct queue_env *env, void *arg), void *arg)
{
	char **names;
	size_t i, n, loaded = 0;
	bool changed = false;

	spool_empty_tmp(tmp_fd);
	if (spool_list(queue_fd, &names, &n) != 0) {
		log_warn("event=spool-scan-failed dir=queue");
		return 0;
	}
	for (i = 0; i < n; i++)
		if (spool_recover_one(queue_fd, names[i], cb, arg, &changed))
			loaded++;
	spool_list_free(names, n);
	if (changed)
		(void)spool_fsync_dir(queue_fd);
	return loaded;
}

/* ------------------------------------------------------------------ */
/* Spool creation (root parent, before any fork)                       */

static int __attribute__((format(printf, 3, 4)))
spool_err(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

/* Owner and mode of an open directory, fixed; another user's: refused. */
static int
spool_fix(int fd, const char *path, const struct config *cfg, uid_t uid,
    gid_t gid, mode_t mode, char *err, size_t errlen)
{
	struct stat st;

	if (fstat(fd, &st) == -1)
		return spool_err(err, errlen, "%s: %s", path, strerror(errno));
	if (!S_ISDIR(st.st_mode))
		return spool_err(err, errlen, "%s: not a directory", path);
	if (st.st_uid != 0 && st.st_uid != cfg->uid)
		return spool_err(err, errlen,
		    "%s: owned by uid %u, not root or %s", path,
		    (unsigned)st.st_uid, cfg->user);
	if ((st.st_uid != uid || st.st_gid != gid) &&
	    fchown(fd, uid, gid) == -1)
		return spool_err(err, errlen, "%s: chown: %s", path,
		    strerror(errno));
	if ((st.st_mode & 07777) != mode && fchmod(fd, mode) == -1)
		return spool_err(err, errlen, "%s: chmod: %s", path,
		    strerror(errno));
	return 0;
}

static int
spool_check_empty(int fd, const char *path, char *err, size_t errlen)
{
	char **names;
	size_t n;
	int e;

	if ((e = spool_list(fd, &names, &n)) != 0)
		return spool_err(err, errlen, "%s: %s", path, strerror(e));
	spool_list_free(names, n);
	if (n != 0)
		return spool_err(err, errlen,
		    "%s: must be empty (it is the chroot of the network-facing "
		    "processes)",
		    path);
	return 0;
}

static int
spool_subdir(int sfd, const struct config *cfg, const char *name, uid_t uid,
    gid_t gid, mode_t mode, char *err, size_t errlen)
{
	char path[MAX_PATHLEN + 16];
	int fd, r;

	if (bsnprintf(path, sizeof(path), "%s/%s", cfg->spool, name) == -1)
		return spool_err(err, errlen, "%s: path too long", cfg->spool);
	if (mkdirat(sfd, name, mode) == -1 && errno != EEXIST)
		return spool_err(err, errlen, "%s: mkdir: %s", path,
		    strerror(errno));
	fd = openat(sfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd == -1)
		return spool_err(err, errlen, "%s: %s", path,
		    errno == ELOOP || errno == ENOTDIR ?
			"a symbolic link or not a directory" :
			strerror(errno));
	r = spool_fix(fd, path, cfg, uid, gid, mode, err, errlen);
	if (r == 0 && strcmp(name, SPOOL_EMPTY) == 0)
		r = spool_check_empty(fd, path, err, errlen);
	(void)close(fd);
	return r;
}

int
spool_prepare(const struct config *cfg, char *err, size_t errlen)
{
	int sfd, r;

	if (mkdir(cfg->spool, 0755) == -1 && errno != EEXIST)
		return spool_err(err, errlen, "%s: cannot create spool: %s",
		    cfg->spool, strerror(errno));
	sfd = open(cfg->spool, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (sfd == -1)
		return spool_err(err, errlen, "%s: %s", cfg->spool,
		    errno == ELOOP || errno == ENOTDIR ?
			"spool is a symbolic link or not a directory" :
			strerror(errno));
	r = spool_fix(sfd, cfg->spool, cfg, 0, 0, 0755, err, errlen);
	if (r == 0)
		r = spool_subdir(sfd, cfg, SPOOL_QUEUE, cfg->uid, cfg->gid,
		    0700, err, errlen);
	if (r == 0)
		r = spool_subdir(sfd, cfg, SPOOL_TMP, cfg->uid, cfg->gid, 0700,
		    err, errlen);
	if (r == 0)
		r = spool_subdir(sfd, cfg, SPOOL_EMPTY, 0, 0, 0555, err,
		    errlen);
	(void)close(sfd);
	return r;
}

/* ------------------------------------------------------------------ */
/* Retry schedule and job grouping                                     */

time_t
queue_backoff(time_t first, time_t max, unsigned attempts,
    int jitter_permille)
{
	time_t d = first > 0 ? first : 1, cap = max > 0 ? max : d;
	unsigned i;

	if (d > cap)
		d = cap;
	for (i = 1; i < attempts && d < cap; i++)
		d = d > cap / 2 ? cap : d * 2;
	if (jitter_permille > 100)
		jitter_permille = 100;
	if (jitter_permille < -100)
		jitter_permille = -100;
	d += d * jitter_permille / 1000;
	return d < 1 ? 1 : d;
}

time_t
queue_retry_time(const struct config *cfg, time_t created, unsigned attempts,
    time_t now, int jitter_permille)
{
	time_t give_up = created + cfg->retry_give_up, next;

	if (now >= give_up)
		return 0;
	next = now + queue_backoff(cfg->retry_first, cfg->retry_max, attempts,
	    jitter_permille);
	/* The last try is made when give_up is reached, not after. */
	return next > give_up ? give_up : next;
}

size_t
queue_next_group(const struct queue_env *env, bool by_domain, time_t now,
    size_t maxn, size_t *idx, char *domain, size_t domainlen)
{
	const struct queue_rcpt *r;
	const char *dom = NULL, *d;
	size_t i, n = 0;
	char *p;

	if (domainlen > 0)
		domain[0] = '\0';
	for (i = 0; i < env->nrcpt && n < maxn; i++) {
		r = &env->rcpt[i];
		if (r->state != QRCPT_PENDING || r->job != 0 || r->next > now)
			continue;
		if (by_domain) {
			d = queue_addr_domain(r->addr);
			if (dom == NULL) {
				dom = d;
				strlcpy_msa(domain, d, domainlen);
				for (p = domain; *p != '\0'; p++)
					if (*p >= 'A' && *p <= 'Z')
						*p = (char)(*p - 'A' + 'a');
			} else if (strcasecmp(d, dom) != 0)
				continue;
		}
		idx[n++] = i;
	}
	return n;
}

/* ------------------------------------------------------------------ */
/* The queue process                                                   */

#define QUEUE_CTL_MAX 8 /* control connections at once */
#define QUEUE_TMP_PER_SESSION 4 /* uncommitted files per session */
#define QUEUE_TMP_MAX 1024 /* uncommitted files in all */
#define QUEUE_CTL_CHUNK 16384 /* bytes of text per IMSG_CTL_TEXT */
#define QUEUE_POLL_MAX_MS (60 * 1000) /* re-read the clock at least this often */
/*
 * Removals of delivered messages are made durable by the next fsync of
 * queue/ (a commit batch's), or at the latest this many seconds later: one
 * fsync per delivered message would halve the rate a queue drains at, and
 * a removal lost in a crash costs only a second delivery of that message.
 */
#define QUEUE_REMOVALS_SYNC_S 1
#define QUEUE_BOUNCE_RETRY 60 /* seconds before retrying a failed bounce */

struct qmsg {
	struct qmsg *next, *prev;
	struct queue_env env;
	unsigned inflight; /* relay jobs */
	bool deleted; /* files gone, waiting for its jobs to end */
	bool settle; /* look for a bounce to send or a removal */
	time_t bounce_next; /* no bounce attempt before */
};

struct qjob {
	struct qjob *next;
	uint32_t jid;
	struct qmsg *msg;
};

/* A file in tmp/ a session is writing. */
struct qtmp {
	struct qtmp *next;
	uint32_t peerid;
	char id[QUEUE_ID_LEN + 1];
};

struct qctl {
	struct ipc_chan ch;
	bool active;
	uid_t uid;
};

/*
 * A commit on its way to the disk: waiting for a sync worker (req holds
 * the IMSG_QUEUE_SYNC payload), being prepared by one, then prepared and
 * waiting for the next batch (status is the worker's answer).
 */
struct qcommit {
	struct qcommit *next;
	uint32_t peerid; /* the session to answer */
	uint32_t ticket; /* hdr.peerid of its IMSG_QUEUE_SYNC */
	int status;
	struct queue_env env;
	struct buf req;
};

/* An IMSG_QUEUE_SYNC carries a whole IMSG_QUEUE_COMMIT payload. */
_Static_assert(sizeof(struct ipc_queue_sync) + sizeof(struct ipc_envelope) +
	MAX_RCPT_LIMIT * sizeof(struct ipc_rcpt) <= IPC_MAX_PAYLOAD,
    "IMSG_QUEUE_SYNC must fit in one frame");

struct qcommit_list {
	struct qcommit *head, *tail;
	size_t n;
};

struct qsync {
	struct ipc_chan ch; /* fd -1: no worker in this slot */
	pid_t pid;
	struct qcommit *busy; /* the commit it prepares, NULL when idle */
	time_t idle_since;
};

struct queue {
	struct config *cfg;
	int queue_fd, tmp_fd, control_fd;
	struct ipc_chan parent, listener, relay;
	struct qctl ctl[QUEUE_CTL_MAX];
	struct qmsg *head, *tail;
	size_t nmsg;
	struct qjob *jobs;
	unsigned njobs;
	uint32_t next_jid;
	struct qtmp *tmps;
	size_t ntmp;
	struct qsync sync[QUEUE_SYNC_WORKERS];
	struct qcommit_list waiting; /* for a sync worker */
	struct qcommit_list prepared; /* for the next batch */
	uint32_t next_ticket;
	time_t removals_due; /* fsync queue/ for removals by then; 0: none */
};

static char *
queue_from(char *buf, size_t len, const char *sender)
{
	char safe[MAX_ADDR];

	if (*sender == '\0')
		strlcpy_msa(buf, "<>", len);
	else
		(void)bsnprintf(buf, len, "<%s>",
		    log_sanitize(safe, sizeof(safe), sender));
	return buf;
}

/* Replies and reasons are shown and logged: keep them one printable line. */
static void
queue_clean_reply(char *dst, size_t len, const char *src)
{
	size_t i;

	strlcpy_msa(dst, src, len);
	for (i = 0; dst[i] != '\0'; i++)
		if ((unsigned char)dst[i] < 0x20 || dst[i] == 0x7f)
			dst[i] = ' ';
}

static int
queue_jitter(void)
{
	return (int)(random() % 201) - 100;
}

/* --- messages in memory --- */

static struct qmsg *
queue_msg_add(struct queue *q, struct queue_env *env)
{
	struct qmsg *m = xcalloc(1, sizeof(*m));

	m->env = *env; /* takes the recipient array */
	queue_env_init(env);
	m->prev = q->tail;
	if (q->tail != NULL)
		q->tail->next = m;
	else
		q->head = m;
	q->tail = m;
	q->nmsg++;
	return m;
}

static void
queue_msg_free(struct queue *q, struct qmsg *m)
{
	if (m->prev != NULL)
		m->prev->next = m->next;
	else
		q->head = m->next;
	if (m->next != NULL)
		m->next->prev = m->prev;
	else
		q->tail = m->prev;
	q->nmsg--;
	queue_env_free(&m->env);
	free(m);
}

static struct qmsg *
queue_msg_find(struct queue *q, const char *id)
{
	struct qmsg *m;

	for (m = q->head; m != NULL; m = m->next)
		if (!m->deleted && strcmp(m->env.id, id) == 0)
			return m;
	return NULL;
}

static void
queue_msg_save(struct queue *q, struct qmsg *m)
{
	int e;

	if ((e = queue_env_store(q->tmp_fd, q->queue_fd, &m->env)) != 0) {
		errno = e;
		log_warn("event=envelope-write-failed id=%s", m->env.id);
	}
}

/* Recovery callback: messages are kept in arrival order. */
static void
queue_load_cb(struct queue_env *env, void *arg)
{
	struct queue *q = arg;
	struct qmsg *m, *pos;
	size_t i;

	m = xcalloc(1, sizeof(*m));
	m->env = *env;
	queue_env_init(env);
	m->settle = true; /* a bounce may be owed from before the restart */
	for (i = 0; i < m->env.nrcpt; i++)
		m->env.rcpt[i].job = 0;
	for (pos = q->tail; pos != NULL && pos->env.created > m->env.created;
	    pos = pos->prev)
		;
	m->prev = pos;
	m->next = pos != NULL ? pos->next : q->head;
	if (m->next != NULL)
		m->next->prev = m;
	else
		q->tail = m;
	if (pos != NULL)
		pos->next = m;
	else
		q->head = m;
	q->nmsg++;
}

/* --- recipient results --- */

static void
queue_rcpt_result(struct queue *q, struct qmsg *m, struct queue_rcpt *r,
    int status, const char *reply, time_t now)
{
	char safe_to[MAX_ADDR], safe_reply[MAX_REPLY];
	time_t next;

	if (r->attempts < ENV_MAX_ATTEMPTS)
		r->attempts++;
	r->last = now;
	queue_clean_reply(r->reply, sizeof(r->reply), reply);
	(void)log_sanitize(safe_to, sizeof(safe_to), r->addr);
	(void)log_sanitize(safe_reply, sizeof(safe_reply), r->reply);
	switch (status) {
	case RELAY_OK:
		r->state = QRCPT_DELIVERED;
		r->next = 0;
		log_debug("event=rcpt-delivered id=%s to=%s attempts=%u",
		    m->env.id, safe_to, r->attempts);
		return;
	case RELAY_PERMFAIL:
		r->state = QRCPT_FAILED;
		r->next = 0;
		log_info("event=rcpt-failed id=%s to=%s attempts=%u reply=%s",
		    m->env.id, safe_to, r->attempts, safe_reply);
		return;
	default:
		break;
	}
	next = queue_retry_time(q->cfg, m->env.created, r->attempts, now,
	    queue_jitter());
	if (next == 0) {
		r->state = QRCPT_EXPIRED;
		r->next = 0;
		log_info("event=rcpt-expired id=%s to=%s attempts=%u reply=%s",
		    m->env.id, safe_to, r->attempts, safe_reply);
		return;
	}
	r->next = next;
	log_info("event=rcpt-deferred id=%s to=%s attempts=%u retry_in=%llds "
		 "reply=%s",
	    m->env.id, safe_to, r->attempts, (long long)(r->next - now),
	    safe_reply);
}

static struct qjob *
queue_job_find(struct queue *q, uint32_t jid, const char *id)
{
	struct qjob *j, *fallback = NULL;
	size_t i;

	for (j = q->jobs; j != NULL; j = j->next) {
		if (strcmp(j->msg->env.id, id) != 0)
			continue;
		if (jid != 0) {
			if (j->jid == jid)
				return j;
			continue;
		}
		/* No job number from the relay: prefer a job it answered. */
		if (fallback == NULL)
			fallback = j;
		for (i = 0; i < j->msg->env.nrcpt; i++)
			if (j->msg->env.rcpt[i].job == j->jid &&
			    !j->msg->env.rcpt[i].result)
				break;
		if (i == j->msg->env.nrcpt)
			return j;
	}
	return fallback;
}

/* A recipient of an in-flight job (jid 0: any job of message id). */
static struct queue_rcpt *
queue_job_rcpt(struct queue *q, uint32_t jid, const char *id,
    const char *addr, struct qmsg **mp)
{
	struct qjob *j;
	struct queue_rcpt *r;
	size_t i;

	for (j = q->jobs; j != NULL; j = j->next) {
		if ((jid != 0 && j->jid != jid) ||
		    strcmp(j->msg->env.id, id) != 0)
			continue;
		for (i = 0; i < j->msg->env.nrcpt; i++) {
			r = &j->msg->env.rcpt[i];
			if (r->job == j->jid && !r->result &&
			    strcmp(r->addr, addr) == 0) {
				*mp = j->msg;
				return r;
			}
		}
	}
	return NULL;
}

static void
queue_job_unlink(struct queue *q, struct qjob *job)
{
	struct qjob **jp;

	for (jp = &q->jobs; *jp != NULL; jp = &(*jp)->next)
		if (*jp == job) {
			*jp = job->next;
			break;
		}
	q->njobs--;
	free(job);
}

/* End a job: recipients left without a result are deferred. */
static bool queue_msg_done(const struct qmsg *m);

static void
queue_job_end(struct queue *q, struct qjob *job, const char *reason)
{
	struct qmsg *m = job->msg;
	struct queue_rcpt *r;
	time_t now = time(NULL);
	size_t i;

	for (i = 0; i < m->env.nrcpt; i++) {
		r = &m->env.rcpt[i];
		if (r->job != job->jid)
			continue;
		if (!r->result && !m->deleted)
			queue_rcpt_result(q, m, r, RELAY_TEMPFAIL, reason, now);
		r->job = 0;
		r->result = false;
	}
	queue_job_unlink(q, job);
	m->inflight--;
	if (m->deleted) {
		if (m->inflight == 0)
			queue_msg_free(q, m);
		return;
	}
	/*
	 * A message every recipient of which is done is removed when it
	 * settles: rewriting its envelope first would cost three fsyncs for
	 * nothing.  A crash in between delivers it again (at least once).
	 */
	if (m->inflight != 0 || !queue_msg_done(m))
		queue_msg_save(q, m);
	m->settle = true;
}

/* --- bounces and removal --- */

static bool
queue_msg_owes_bounce(const struct qmsg *m)
{
	size_t i;

	for (i = 0; i < m->env.nrcpt; i++)
		if (m->env.rcpt[i].state == QRCPT_FAILED ||
		    m->env.rcpt[i].state == QRCPT_EXPIRED)
			return true;
	return false;
}

static bool
queue_msg_done(const struct qmsg *m)
{
	size_t i;

	for (i = 0; i < m->env.nrcpt; i++)
		if (m->env.rcpt[i].state != QRCPT_DELIVERED &&
		    m->env.rcpt[i].state != QRCPT_BOUNCED)
			return false;
	return true;
}

static size_t
queue_msg_mark_bounced(struct qmsg *m)
{
	size_t i, n = 0;

	for (i = 0; i < m->env.nrcpt; i++)
		if (m->env.rcpt[i].state == QRCPT_FAILED ||
		    m->env.rcpt[i].state == QRCPT_EXPIRED) {
			m->env.rcpt[i].state = QRCPT_BOUNCED;
			n++;
		}
	return n;
}

/* One bounce per message per round; false if it must be tried later. */
static bool
queue_msg_bounce(struct queue *q, struct qmsg *m, time_t now)
{
	struct queue_env b;
	char from[MAX_ADDR + 2];
	size_t n;
	int e;

	if (m->env.sender[0] == '\0') {
		/* A bounce is never bounced: no loops, no storms. */
		n = queue_msg_mark_bounced(m);
		log_info("event=bounce-dropped id=%s reason=null-sender nrcpt=%zu",
		    m->env.id, n);
		return true;
	}
	queue_env_init(&b);
	if ((e = bounce_queue(q->tmp_fd, q->queue_fd, q->cfg->hostname,
		 &m->env, now, &b)) != 0) {
		errno = e;
		log_warn("event=bounce-failed id=%s retry_in=%ds", m->env.id,
		    QUEUE_BOUNCE_RETRY);
		m->bounce_next = now + QUEUE_BOUNCE_RETRY;
		return false;
	}
	n = queue_msg_mark_bounced(m);
	log_info("event=bounce id=%s bounce_id=%s to=%s nrcpt=%zu size=%" PRIu64,
	    m->env.id, b.id, queue_from(from, sizeof(from), m->env.sender), n,
	    b.size);
	(void)queue_msg_add(q, &b);
	return true;
}

/* After a round: send the bounce it owes, remove it once finished. */
static void
queue_msg_settle(struct queue *q, struct qmsg *m, time_t now)
{
	int e;

	if (m->inflight > 0 || m->deleted)
		return;
	if (queue_msg_owes_bounce(m)) {
		if (now < m->bounce_next)
			return;
		if (!queue_msg_bounce(q, m, now))
			return;
		if (!queue_msg_done(m))
			queue_msg_save(q, m);
	}
	m->settle = false;
	if (!queue_msg_done(m))
		return;
	if ((e = queue_remove_files(q->queue_fd, m->env.id)) != 0) {
		errno = e;
		log_warn("event=remove-failed id=%s", m->env.id);
	} else {
		log_info("event=removed id=%s", m->env.id);
		if (q->removals_due == 0)
			q->removals_due = now + QUEUE_REMOVALS_SYNC_S;
	}
	queue_msg_free(q, m);
}

/* Make the removals so far durable (see QUEUE_REMOVALS_SYNC_S). */
static void
queue_removals_sync(struct queue *q)
{
	int e;

	if (q->removals_due == 0)
		return;
	q->removals_due = 0;
	if ((e = spool_fsync_dir(q->queue_fd)) != 0) {
		errno = e;
		log_warn("event=fsync-failed dir=queue");
	}
}

/* --- the scheduler --- */

static void
queue_job_start(struct queue *q, struct qmsg *m, const size_t *idx,
    size_t n, const char *domain)
{
	char name[QUEUE_ID_LEN + 8], reason[MAX_REPLY];
	struct ipc_relay_job jh;
	struct ipc_rcpt rc;
	struct qjob *job;
	struct buf pl;
	time_t now;
	size_t i;
	int fd;

	if (queue_name(name, sizeof(name), m->env.id, ".data") == -1 ||
	    (fd = openat(q->queue_fd, name,
		 O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) == -1) {
		/* Deferred like any failure: it ends in a bounce at give_up. */
		(void)bsnprintf(reason, sizeof(reason),
		    "4.3.0 cannot open the message file: %s", strerror(errno));
		log_warnx("event=data-open-failed id=%s", m->env.id);
		now = time(NULL);
		for (i = 0; i < n; i++)
			queue_rcpt_result(q, m, &m->env.rcpt[idx[i]],
			    RELAY_TEMPFAIL, reason, now);
		queue_msg_save(q, m);
		m->settle = true;
		return;
	}
	if (++q->next_jid == 0)
		q->next_jid = 1;
	memset(&jh, 0, sizeof(jh));
	strlcpy_msa(jh.id, m->env.id, sizeof(jh.id));
	strlcpy_msa(jh.sender, m->env.sender, sizeof(jh.sender));
	strlcpy_msa(jh.domain, domain, sizeof(jh.domain));
	jh.size = m->env.size;
	jh.body_8bit = m->env.body_8bit;
	jh.nrcpt = (uint32_t)n;
	buf_init(&pl);
	buf_add(&pl, &jh, sizeof(jh));
	for (i = 0; i < n; i++) {
		memset(&rc, 0, sizeof(rc));
		strlcpy_msa(rc.addr, m->env.rcpt[idx[i]].addr, sizeof(rc.addr));
		buf_add(&pl, &rc, sizeof(rc));
		m->env.rcpt[idx[i]].job = q->next_jid;
		m->env.rcpt[idx[i]].result = false;
	}
	ipc_compose(&q->relay, IMSG_RELAY_JOB, q->next_jid, fd, pl.data,
	    pl.len);
	buf_free(&pl);
	job = xcalloc(1, sizeof(*job));
	job->jid = q->next_jid;
	job->msg = m;
	job->next = q->jobs;
	q->jobs = job;
	q->njobs++;
	m->inflight++;
	log_debug("event=job-start id=%s job=%u domain=%s nrcpt=%zu",
	    m->env.id, job->jid, domain[0] != '\0' ? domain : "-", n);
}

static unsigned
queue_concurrency(const struct queue *q)
{
	return q->cfg->relay_concurrency > 0 ? q->cfg->relay_concurrency : 1;
}

static void
queue_run(struct queue *q)
{
	size_t idx[QUEUE_JOB_MAX_RCPT], n;
	char domain[MAX_DOMAIN];
	bool by_domain = q->cfg->relay_mode == RELAY_MX;
	struct qmsg *m, *next;
	time_t now = time(NULL);

	for (m = q->head; m != NULL; m = next) {
		next = m->next;
		if (m->settle)
			queue_msg_settle(q, m, now);
	}
	if (q->removals_due != 0 && now >= q->removals_due)
		queue_removals_sync(q);
	for (m = q->head; m != NULL && q->njobs < queue_concurrency(q);
	    m = next) {
		next = m->next;
		while (!m->deleted && q->njobs < queue_concurrency(q) &&
		    (n = queue_next_group(&m->env, by_domain, now,
			 QUEUE_JOB_MAX_RCPT, idx, domain, sizeof(domain))) > 0)
			queue_job_start(q, m, idx, n, domain);
	}
}

static time_t queue_sync_retire_at(const struct queue *);

/*
 * Milliseconds until the next recipient or bounce is due, or removals are
 * to be made durable, or an idle sync worker is to be retired.
 */
static int
queue_timeout(const struct queue *q)
{
	const struct qmsg *m;
	const struct queue_rcpt *r;
	time_t now = time(NULL), first = now + QUEUE_POLL_MAX_MS / 1000, retire;
	size_t i;

	if (q->removals_due != 0 && q->removals_due < first)
		first = q->removals_due;
	if ((retire = queue_sync_retire_at(q)) != 0 && retire < first)
		first = retire;
	for (m = q->head; m != NULL; m = m->next) {
		if (m->deleted)
			continue;
		if (m->settle && m->inflight == 0 && m->bounce_next < first)
			first = m->bounce_next;
		if (q->njobs >= queue_concurrency(q))
			continue;
		for (i = 0; i < m->env.nrcpt; i++) {
			r = &m->env.rcpt[i];
			if (r->state == QRCPT_PENDING && r->job == 0 &&
			    r->next < first)
				first = r->next;
		}
	}
	if (first <= now)
		return 0;
	return (int)(first - now) * 1000;
}

static void queue_commit_abandon(struct queue *);

/* The relay process is gone: defer its jobs, then let the parent restart
 * us together with a new relay (it has no way to hand us a new channel). */
static void __attribute__((noreturn))
queue_relay_lost(struct queue *q)
{
	while (q->jobs != NULL)
		queue_job_end(q, q->jobs, "4.3.0 relay process lost");
	queue_commit_abandon(q);
	(void)ipc_flush(&q->listener);
	fatalx("event=relay-lost action=exit");
}

/* --- session requests (through the listener: untrusted data) --- */

static struct qtmp *
queue_tmp_find(struct queue *q, uint32_t peerid, const char *id)
{
	struct qtmp *t;

	for (t = q->tmps; t != NULL; t = t->next)
		if (t->peerid == peerid && strcmp(t->id, id) == 0)
			return t;
	return NULL;
}

static size_t
queue_tmp_count(const struct queue *q, uint32_t peerid)
{
	const struct qtmp *t;
	size_t n = 0;

	for (t = q->tmps; t != NULL; t = t->next)
		if (t->peerid == peerid)
			n++;
	return n;
}

/* Forget t; with unlink_file also remove tmp/ID. */
static void
queue_tmp_drop(struct queue *q, struct qtmp *t, bool unlink_file)
{
	struct qtmp **tp;

	if (unlink_file && unlinkat(q->tmp_fd, t->id, 0) == -1 &&
	    errno != ENOENT)
		log_warn("event=tmp-unlink-failed id=%s", t->id);
	for (tp = &q->tmps; *tp != NULL; tp = &(*tp)->next)
		if (*tp == t) {
			*tp = t->next;
			break;
		}
	q->ntmp--;
	free(t);
}

static void
queue_on_create(struct queue *q, struct ipc_msg *msg)
{
	struct ipc_queue_created res;
	struct qtmp *t;
	int fd = -1, e;

	memset(&res, 0, sizeof(res));
	if (msg->hdr.len != 0) {
		log_warnx("event=bad-request type=create peer=%u",
		    msg->hdr.peerid);
		res.status = EINVAL;
	} else if (queue_tmp_count(q, msg->hdr.peerid) >=
	    QUEUE_TMP_PER_SESSION || q->ntmp >= QUEUE_TMP_MAX) {
		log_warnx("event=create-refused peer=%u reason=too-many-files",
		    msg->hdr.peerid);
		res.status = EAGAIN;
	} else if ((e = queue_tmp_create(q->tmp_fd, q->queue_fd, res.id,
			&fd)) != 0) {
		errno = e;
		log_warn("event=create-failed peer=%u", msg->hdr.peerid);
		res.status = e;
		res.id[0] = '\0';
	} else {
		t = xcalloc(1, sizeof(*t));
		t->peerid = msg->hdr.peerid;
		strlcpy_msa(t->id, res.id, sizeof(t->id));
		t->next = q->tmps;
		q->tmps = t;
		q->ntmp++;
		log_debug("event=create id=%s peer=%u", res.id,
		    msg->hdr.peerid);
	}
	ipc_compose(&q->listener, IMSG_QUEUE_CREATE_RES, msg->hdr.peerid, fd,
	    &res, sizeof(res));
}

/*
 * Check an IMSG_QUEUE_COMMIT payload: 0 with the envelope copied to *ie
 * and *rc pointing at its recipients, or -1 with the reason.
 */
static int
queue_commit_check(const unsigned char *data, size_t len,
    struct ipc_envelope *ie, const struct ipc_rcpt **rc, const char **why)
{
	size_t i;

	if (len < sizeof(*ie)) {
		*why = "short";
		return -1;
	}
	memcpy(ie, data, sizeof(*ie));
	if (ie->nrcpt < 1 || ie->nrcpt > MAX_RCPT_LIMIT ||
	    len != sizeof(*ie) + ie->nrcpt * sizeof(**rc)) {
		*why = "bad-length";
		return -1;
	}
	if (!IPC_STR_OK(ie->id) || !IPC_STR_OK(ie->sender) ||
	    !IPC_STR_OK(ie->login) || !IPC_STR_OK(ie->client) ||
	    !IPC_STR_OK(ie->helo) || !queue_id_valid(ie->id) ||
	    ie->body_8bit > 1) {
		*why = "bad-field";
		return -1;
	}
	*rc = (const struct ipc_rcpt *)(const void *)(data + sizeof(*ie));
	for (i = 0; i < ie->nrcpt; i++)
		if (!IPC_STR_OK((*rc)[i].addr) || (*rc)[i].addr[0] == '\0') {
			*why = "bad-recipient";
			return -1;
		}
	return 0;
}

/* The same envelope in the queue process and in its sync worker. */
static void
queue_env_from_ipc(struct queue_env *env, const struct ipc_envelope *ie,
    const struct ipc_rcpt *rc, time_t created)
{
	size_t i, j;

	queue_env_init(env);
	strlcpy_msa(env->id, ie->id, sizeof(env->id));
	env->created = created;
	strlcpy_msa(env->sender, ie->sender, sizeof(env->sender));
	strlcpy_msa(env->login, ie->login, sizeof(env->login));
	strlcpy_msa(env->client, ie->client, sizeof(env->client));
	strlcpy_msa(env->helo, ie->helo, sizeof(env->helo));
	env->size = ie->size;
	env->body_8bit = ie->body_8bit != 0;
	for (i = 0; i < ie->nrcpt; i++) {
		/* The same recipient twice gets one copy. */
		for (j = 0; j < env->nrcpt; j++)
			if (strcmp(env->rcpt[j].addr, rc[i].addr) == 0)
				break;
		if (j == env->nrcpt)
			queue_env_add_rcpt(env, rc[i].addr);
	}
}

static void
queue_commit_reply(struct queue *q, uint32_t peerid, int status,
    const char *id)
{
	struct ipc_queue_committed res;

	memset(&res, 0, sizeof(res));
	res.status = status;
	strlcpy_msa(res.id, id, sizeof(res.id));
	ipc_compose(&q->listener, IMSG_QUEUE_COMMIT_RES, peerid, -1, &res,
	    sizeof(res));
}

/* --- group commit: sync workers prepare, the batch publishes --- */

static void
qcommit_push(struct qcommit_list *l, struct qcommit *c)
{
	c->next = NULL;
	if (l->tail != NULL)
		l->tail->next = c;
	else
		l->head = c;
	l->tail = c;
	l->n++;
}

static struct qcommit *
qcommit_pop(struct qcommit_list *l)
{
	struct qcommit *c = l->head;

	if (c != NULL) {
		l->head = c->next;
		if (l->head == NULL)
			l->tail = NULL;
		l->n--;
		c->next = NULL;
	}
	return c;
}

static void
qcommit_free(struct qcommit *c)
{
	queue_env_free(&c->env);
	buf_free(&c->req);
	free(c);
}

static int queue_sync_spawn(struct queue *, struct qsync *);
static void queue_commit_done(struct queue *, struct qcommit *);

/*
 * Hand waiting commits to idle workers (sent by queue_flush_all), starting
 * workers as they are needed.  If not even one can be started, the waiting
 * commits fail (a temporary failure for their clients).
 */
static void
queue_sync_dispatch(struct queue *q)
{
	struct qcommit *c;
	struct qsync *w;
	size_t i;
	int e = EAGAIN;

	for (i = 0; i < QUEUE_SYNC_WORKERS && q->waiting.head != NULL; i++) {
		w = &q->sync[i];
		if (w->ch.fd == -1 && (e = queue_sync_spawn(q, w)) != 0)
			continue;
		if (w->busy != NULL)
			continue;
		w->busy = qcommit_pop(&q->waiting);
		ipc_compose(&w->ch, IMSG_QUEUE_SYNC, w->busy->ticket, -1,
		    w->busy->req.data, w->busy->req.len);
		buf_free(&w->busy->req);
	}
	if (q->waiting.head == NULL)
		return;
	for (i = 0; i < QUEUE_SYNC_WORKERS; i++)
		if (q->sync[i].ch.fd != -1)
			return; /* a busy worker takes them next */
	while ((c = qcommit_pop(&q->waiting)) != NULL) {
		c->status = e;
		queue_commit_done(q, c);
	}
}

/* The verdict of one commit, once the batch has decided it. */
static void
queue_commit_done(struct queue *q, struct qcommit *c)
{
	char from[MAX_ADDR + 2], login[MAX_LOGIN];
	struct qmsg *m;

	if (c->status != 0) {
		errno = c->status;
		log_warn("event=commit-failed id=%s", c->env.id);
		queue_commit_reply(q, c->peerid, c->status, c->env.id);
		qcommit_free(c);
		return;
	}
	m = queue_msg_add(q, &c->env);
	log_info("event=queued id=%s from=%s login=%s nrcpt=%zu size=%" PRIu64,
	    m->env.id, queue_from(from, sizeof(from), m->env.sender),
	    log_sanitize(login, sizeof(login), m->env.login), m->env.nrcpt,
	    m->env.size);
	queue_commit_reply(q, c->peerid, 0, m->env.id);
	qcommit_free(c);
}

/*
 * Publish every prepared commit, QUEUE_BATCH_MAX per fsync of queue/, and
 * answer each session only after that fsync.
 */
static void
queue_commit_prepared(struct queue *q)
{
	const struct queue_env *env[QUEUE_BATCH_MAX];
	struct qcommit *c[QUEUE_BATCH_MAX];
	int status[QUEUE_BATCH_MAX];
	size_t i, n, done;

	while (q->prepared.head != NULL) {
		for (n = 0; n < QUEUE_BATCH_MAX &&
		     (c[n] = qcommit_pop(&q->prepared)) != NULL;
		     n++) {
			env[n] = &c[n]->env;
			status[n] = c[n]->status;
		}
		done = queue_commit_batch(q->tmp_fd, q->queue_fd, env, status,
		    n);
		if (done > 0) /* its fsync of queue/ covered earlier removals */
			q->removals_due = 0;
		log_debug("event=commit-batch messages=%zu committed=%zu "
			  "waiting=%zu",
		    n, done, q->waiting.n);
		for (i = 0; i < n; i++) {
			c[i]->status = status[i];
			queue_commit_done(q, c[i]);
		}
	}
}

static void
queue_on_commit(struct queue *q, struct ipc_msg *msg)
{
	struct ipc_queue_sync qs;
	struct ipc_envelope ie;
	const struct ipc_rcpt *rc;
	const char *why = NULL;
	struct qcommit *c;
	struct qtmp *t;

	if (queue_commit_check(msg->data, msg->hdr.len, &ie, &rc, &why) ==
	    -1) {
		log_warnx("event=commit-refused peer=%u reason=%s",
		    msg->hdr.peerid, why);
		queue_commit_reply(q, msg->hdr.peerid, EINVAL, "");
		return;
	}
	if ((t = queue_tmp_find(q, msg->hdr.peerid, ie.id)) == NULL) {
		log_warnx("event=commit-refused peer=%u id=%s "
			  "reason=not-this-sessions-file",
		    msg->hdr.peerid, ie.id);
		queue_commit_reply(q, msg->hdr.peerid, EINVAL, ie.id);
		return;
	}
	queue_tmp_drop(q, t, false);
	c = xcalloc(1, sizeof(*c));
	c->peerid = msg->hdr.peerid;
	if (++q->next_ticket == 0)
		q->next_ticket = 1;
	c->ticket = q->next_ticket;
	queue_env_from_ipc(&c->env, &ie, rc, time(NULL));
	memset(&qs, 0, sizeof(qs));
	qs.created = (int64_t)c->env.created;
	buf_init(&c->req);
	buf_add(&c->req, &qs, sizeof(qs));
	buf_add(&c->req, msg->data, msg->hdr.len);
	qcommit_push(&q->waiting, c);
	queue_sync_dispatch(q);
}

/* A worker's answer: its commit joins the next batch. */
static int
queue_sync_result(struct queue *q, struct qsync *w, const struct ipc_msg *msg)
{
	struct ipc_queue_committed res;

	if (msg->hdr.type != IMSG_QUEUE_SYNC_RES || msg->fd != -1 ||
	    msg->hdr.len != sizeof(res) || w->busy == NULL ||
	    msg->hdr.peerid != w->busy->ticket)
		return -1;
	memcpy(&res, msg->data, sizeof(res));
	if (!IPC_STR_OK(res.id) || strcmp(res.id, w->busy->env.id) != 0)
		return -1;
	w->busy->status = res.status;
	qcommit_push(&q->prepared, w->busy);
	w->busy = NULL;
	w->idle_since = time(NULL);
	return 0;
}

/*
 * Before the queue process exits: commit what is prepared and refuse the
 * rest (nothing of it is in queue/; tmp/ is emptied at the next start), so
 * that no session waits for an answer that would never come.
 */
static void
queue_commit_abandon(struct queue *q)
{
	struct qcommit *c;
	size_t i;

	queue_commit_prepared(q);
	for (i = 0; i < QUEUE_SYNC_WORKERS; i++)
		if ((c = q->sync[i].busy) != NULL) {
			q->sync[i].busy = NULL;
			qcommit_push(&q->waiting, c);
		}
	while ((c = qcommit_pop(&q->waiting)) != NULL) {
		log_warnx("event=commit-abandoned id=%s", c->env.id);
		queue_commit_reply(q, c->peerid, EIO, c->env.id);
		qcommit_free(c);
	}
}

/* A worker died or spoke nonsense: the parent restarts us. */
static void __attribute__((noreturn))
queue_sync_lost(struct queue *q, const char *why)
{
	log_warnx("event=sync-worker-lost reason=%s", why);
	queue_commit_abandon(q);
	(void)ipc_flush(&q->listener);
	fatalx("event=sync-worker-lost action=exit");
}

static void
queue_sync_read(struct queue *q, struct qsync *w)
{
	struct ipc_msg msg;
	int r;

	while ((r = ipc_recv(&w->ch, &msg)) == 1) {
		if (msg.fd != -1)
			(void)close(msg.fd);
		if (queue_sync_result(q, w, &msg) == -1)
			queue_sync_lost(q, "bad-answer");
	}
	if (r == -1)
		queue_sync_lost(q, "gone");
	if (r == -2)
		queue_sync_lost(q, "bad-frame");
}

/* A sync worker: prepare one commit at a time, until the queue is gone. */
static void __attribute__((noreturn))
queue_sync_serve(int tmp_fd, struct ipc_chan *ch)
{
	struct ipc_queue_committed res;
	struct ipc_queue_sync qs;
	struct ipc_envelope ie;
	const struct ipc_rcpt *rc;
	struct queue_env env;
	struct ipc_msg msg;
	const char *why = NULL;
	int r;

	for (;;) {
		if ((r = ipc_wait(ch, &msg, -1)) == -1)
			exit(0); /* the queue process is gone */
		if (r == 0)
			continue;
		if (r == -2 || msg.fd != -1 || msg.hdr.type != IMSG_QUEUE_SYNC ||
		    msg.hdr.len < sizeof(qs) ||
		    queue_commit_check(msg.data + sizeof(qs),
			msg.hdr.len - sizeof(qs), &ie, &rc, &why) == -1)
			fatalx("event=sync-bad-request reason=%s",
			    why != NULL ? why : "frame");
		memcpy(&qs, msg.data, sizeof(qs));
		queue_env_from_ipc(&env, &ie, rc, (time_t)qs.created);
		memset(&res, 0, sizeof(res));
		strlcpy_msa(res.id, env.id, sizeof(res.id));
		res.status = queue_commit_prepare(tmp_fd, &env);
		queue_env_free(&env);
		ipc_compose(ch, IMSG_QUEUE_SYNC_RES, msg.hdr.peerid, -1, &res,
		    sizeof(res));
		if (ipc_flush_all(ch) == -1)
			exit(0);
	}
}

static void
queue_on_abort(struct queue *q, struct ipc_msg *msg)
{
	struct ipc_queue_id qi;
	struct qtmp *t;

	if (msg->hdr.len != sizeof(qi)) {
		log_warnx("event=bad-request type=abort peer=%u",
		    msg->hdr.peerid);
		return;
	}
	memcpy(&qi, msg->data, sizeof(qi));
	if (!IPC_STR_OK(qi.id) ||
	    (t = queue_tmp_find(q, msg->hdr.peerid, qi.id)) == NULL) {
		log_debug("event=abort-ignored peer=%u", msg->hdr.peerid);
		return;
	}
	log_debug("event=abort id=%s peer=%u", t->id, msg->hdr.peerid);
	queue_tmp_drop(q, t, true);
}

static void
queue_on_session_gone(struct queue *q, struct ipc_msg *msg)
{
	struct qtmp *t, *next;

	for (t = q->tmps; t != NULL; t = next) {
		next = t->next;
		if (t->peerid == msg->hdr.peerid) {
			log_debug("event=abort id=%s peer=%u reason=session-gone",
			    t->id, msg->hdr.peerid);
			queue_tmp_drop(q, t, true);
		}
	}
}

/* --- relay results --- */

static void
queue_on_relay_result(struct queue *q, struct ipc_msg *msg)
{
	struct ipc_relay_result res;
	struct queue_rcpt *r;
	struct qmsg *m = NULL;
	char safe[MAX_ADDR];

	if (msg->hdr.len != sizeof(res)) {
		log_warnx("event=bad-relay-message type=result");
		return;
	}
	memcpy(&res, msg->data, sizeof(res));
	if (!IPC_STR_OK(res.id) || !IPC_STR_OK(res.rcpt) ||
	    !IPC_STR_OK(res.reply) || !IPC_STR_OK(res.relay)) {
		log_warnx("event=bad-relay-message type=result");
		return;
	}
	r = queue_job_rcpt(q, msg->hdr.peerid, res.id, res.rcpt, &m);
	if (r == NULL) {
		log_warnx("event=relay-result-unknown id=%s to=%s",
		    queue_id_valid(res.id) ? res.id : "-",
		    log_sanitize(safe, sizeof(safe), res.rcpt));
		return;
	}
	r->result = true;
	if (m->deleted)
		return;
	if (res.status != RELAY_OK && res.status != RELAY_PERMFAIL &&
	    res.status != RELAY_TEMPFAIL)
		log_warnx("event=bad-relay-status id=%s status=%d", res.id,
		    res.status);
	queue_rcpt_result(q, m, r, res.status, res.reply, time(NULL));
}

static void
queue_on_relay_done(struct queue *q, struct ipc_msg *msg)
{
	struct ipc_queue_id qi;
	struct qjob *job;

	if (msg->hdr.len != sizeof(qi)) {
		log_warnx("event=bad-relay-message type=done");
		return;
	}
	memcpy(&qi, msg->data, sizeof(qi));
	if (!IPC_STR_OK(qi.id) ||
	    (job = queue_job_find(q, msg->hdr.peerid, qi.id)) == NULL) {
		log_warnx("event=relay-done-unknown job=%u", msg->hdr.peerid);
		return;
	}
	log_debug("event=job-done id=%s job=%u", qi.id, job->jid);
	queue_job_end(q, job, "4.3.0 the relay process gave no result");
}

/* --- control socket: msa queue list | show | flush | delete --- */

static void
queue_fmt_dur(char *buf, size_t len, time_t s)
{
	if (s < 0)
		s = 0;
	if (s < 60)
		(void)bsnprintf(buf, len, "%llds", (long long)s);
	else if (s < 3600)
		(void)bsnprintf(buf, len, "%lldm", (long long)(s / 60));
	else if (s < 86400)
		(void)bsnprintf(buf, len, "%lldh%02lldm", (long long)(s / 3600),
		    (long long)(s % 3600 / 60));
	else
		(void)bsnprintf(buf, len, "%lldd%02lldh",
		    (long long)(s / 86400), (long long)(s % 86400 / 3600));
}

static void
queue_fmt_time(char *buf, size_t len, time_t t)
{
	struct tm tm;

	if (t == 0 || localtime_r(&t, &tm) == NULL ||
	    strftime(buf, len, "%Y-%m-%d %H:%M:%S %z", &tm) == 0)
		strlcpy_msa(buf, "-", len);
}

/* Text from the envelope, safe for a terminal. */
static const char *
queue_printable(char *buf, size_t len, const char *s)
{
	size_t i;

	strlcpy_msa(buf, s, len);
	for (i = 0; buf[i] != '\0'; i++)
		if ((unsigned char)buf[i] < 0x20 || buf[i] == 0x7f)
			buf[i] = '?';
	return buf;
}

static void
queue_fmt_next(char *buf, size_t len, const struct queue_rcpt *r,
    time_t now)
{
	char d[32];

	if (r->job != 0)
		strlcpy_msa(buf, "in-flight", len);
	else if (r->next <= now)
		strlcpy_msa(buf, "now", len);
	else {
		queue_fmt_dur(d, sizeof(d), r->next - now);
		(void)bsnprintf(buf, len, "+%s", d);
	}
}

static void
queue_list_line(struct buf *out, const struct qmsg *m, time_t now)
{
	char age[32], next[32], addr[MAX_ADDR], reply[MAX_REPLY];
	const struct queue_rcpt *r;
	size_t i;

	queue_fmt_dur(age, sizeof(age), now - m->env.created);
	buf_printf(out, "%s age=%s size=%" PRIu64 " from=<%s>", m->env.id, age,
	    m->env.size, queue_printable(addr, sizeof(addr), m->env.sender));
	for (i = 0; i < m->env.nrcpt; i++) {
		r = &m->env.rcpt[i];
		buf_printf(out, " | <%s> %s attempts=%u",
		    queue_printable(addr, sizeof(addr), r->addr),
		    queue_rcpt_state_name(r->state), r->attempts);
		if (r->state == QRCPT_PENDING) {
			queue_fmt_next(next, sizeof(next), r, now);
			buf_printf(out, " next=%s", next);
		}
		if (r->state != QRCPT_DELIVERED && r->reply[0] != '\0')
			buf_printf(out, " last=\"%s\"",
			    queue_printable(reply, sizeof(reply), r->reply));
	}
	buf_addstr(out, "\n");
}

static void
queue_show_text(struct buf *out, const struct qmsg *m, time_t now)
{
	char t[64], d[32], s[MAX_REPLY];
	const struct queue_rcpt *r;
	size_t i;

	queue_fmt_time(t, sizeof(t), m->env.created);
	queue_fmt_dur(d, sizeof(d), now - m->env.created);
	buf_printf(out, "id:       %s\n", m->env.id);
	buf_printf(out, "created:  %s (age %s)\n", t, d);
	buf_printf(out, "sender:   <%s>\n",
	    queue_printable(s, sizeof(s), m->env.sender));
	buf_printf(out, "login:    %s\n",
	    queue_printable(s, sizeof(s), m->env.login));
	buf_printf(out, "client:   %s\n",
	    queue_printable(s, sizeof(s), m->env.client));
	buf_printf(out, "helo:     %s\n",
	    queue_printable(s, sizeof(s), m->env.helo));
	buf_printf(out, "size:     %" PRIu64 "\n", m->env.size);
	buf_printf(out, "body:     %s\n", m->env.body_8bit ? "8BITMIME" : "7BIT");
	for (i = 0; i < m->env.nrcpt; i++) {
		r = &m->env.rcpt[i];
		buf_printf(out, "recipient: <%s>\n",
		    queue_printable(s, sizeof(s), r->addr));
		buf_printf(out, "  state:        %s\n",
		    queue_rcpt_state_name(r->state));
		buf_printf(out, "  attempts:     %u\n", r->attempts);
		queue_fmt_time(t, sizeof(t), r->last);
		buf_printf(out, "  last attempt: %s\n", t);
		if (r->state == QRCPT_PENDING) {
			queue_fmt_next(d, sizeof(d), r, now);
			queue_fmt_time(t, sizeof(t), r->next);
			buf_printf(out, "  next attempt: %s%s%s%s\n", d,
			    r->next > now && r->job == 0 ? " (" : "",
			    r->next > now && r->job == 0 ? t : "",
			    r->next > now && r->job == 0 ? ")" : "");
		}
		if (r->reply[0] != '\0')
			buf_printf(out, "  last reply:   %s\n",
			    queue_printable(s, sizeof(s), r->reply));
	}
}

static void
queue_ctl_text(struct qctl *c, const struct buf *b)
{
	size_t off, n;

	for (off = 0; off < b->len; off += n) {
		n = b->len - off;
		if (n > QUEUE_CTL_CHUNK)
			n = QUEUE_CTL_CHUNK;
		ipc_compose(&c->ch, IMSG_CTL_TEXT, 0, -1, b->data + off, n);
	}
}

static void
queue_ctl_end(struct qctl *c, int status)
{
	struct ipc_ctl_end end = { .status = status };

	ipc_compose(&c->ch, IMSG_CTL_END, 0, -1, &end, sizeof(end));
}

/* The id of a SHOW/FLUSH/DELETE request, "" allowed only with allow_all. */
static int
queue_ctl_id(const struct ipc_msg *msg, char id[QUEUE_ID_LEN + 1],
    bool allow_all)
{
	struct ipc_queue_id qi;

	if (msg->hdr.len != sizeof(qi))
		return -1;
	memcpy(&qi, msg->data, sizeof(qi));
	if (!IPC_STR_OK(qi.id))
		return -1;
	if (!(allow_all && qi.id[0] == '\0') && strlen(qi.id) > QUEUE_ID_LEN)
		return -1;
	strlcpy_msa(id, qi.id, QUEUE_ID_LEN + 1);
	return 0;
}

static int
queue_ctl_list(struct queue *q, struct qctl *c, struct ipc_msg *msg)
{
	struct qmsg *m;
	struct buf b;
	time_t now = time(NULL);

	if (msg->hdr.len != 0)
		return -1;
	buf_init(&b);
	for (m = q->head; m != NULL; m = m->next)
		if (!m->deleted)
			queue_list_line(&b, m, now);
	queue_ctl_text(c, &b);
	buf_free(&b);
	queue_ctl_end(c, 0);
	return 0;
}

static int
queue_ctl_show(struct queue *q, struct qctl *c, struct ipc_msg *msg)
{
	char id[QUEUE_ID_LEN + 1];
	struct qmsg *m;
	struct buf b;

	if (queue_ctl_id(msg, id, false) == -1)
		return -1;
	if ((m = queue_msg_find(q, id)) == NULL) {
		queue_ctl_end(c, ENOENT);
		return 0;
	}
	buf_init(&b);
	queue_show_text(&b, m, time(NULL));
	queue_ctl_text(c, &b);
	buf_free(&b);
	queue_ctl_end(c, 0);
	return 0;
}

static void
queue_msg_flush(struct qmsg *m)
{
	size_t i;

	for (i = 0; i < m->env.nrcpt; i++)
		if (m->env.rcpt[i].state == QRCPT_PENDING)
			m->env.rcpt[i].next = 0;
	m->bounce_next = 0;
}

static int
queue_ctl_flush(struct queue *q, struct qctl *c, struct ipc_msg *msg)
{
	char id[QUEUE_ID_LEN + 1];
	struct qmsg *m;
	struct buf b;
	size_t n = 0;

	if (queue_ctl_id(msg, id, true) == -1)
		return -1;
	if (id[0] != '\0') {
		if ((m = queue_msg_find(q, id)) == NULL) {
			queue_ctl_end(c, ENOENT);
			return 0;
		}
		queue_msg_flush(m);
		n = 1;
	} else
		for (m = q->head; m != NULL; m = m->next)
			if (!m->deleted) {
				queue_msg_flush(m);
				n++;
			}
	log_info("event=flush id=%s messages=%zu by=control uid=%u",
	    id[0] != '\0' ? id : "all", n, (unsigned)c->uid);
	buf_init(&b);
	buf_printf(&b, "flushed %zu message%s\n", n, n == 1 ? "" : "s");
	queue_ctl_text(c, &b);
	buf_free(&b);
	queue_ctl_end(c, 0);
	return 0;
}

static int
queue_ctl_delete(struct queue *q, struct qctl *c, struct ipc_msg *msg)
{
	char id[QUEUE_ID_LEN + 1];
	struct qmsg *m;
	struct buf b;
	int e;

	if (queue_ctl_id(msg, id, false) == -1)
		return -1;
	if ((m = queue_msg_find(q, id)) == NULL) {
		queue_ctl_end(c, ENOENT);
		return 0;
	}
	/* An administrator's deletion is durable before it is confirmed. */
	if ((e = queue_remove_files(q->queue_fd, id)) != 0 ||
	    (e = spool_fsync_dir(q->queue_fd)) != 0) {
		errno = e;
		log_warn("event=delete-failed id=%s", id);
		queue_ctl_end(c, e);
		return 0;
	}
	log_info("event=deleted id=%s by=control uid=%u", id, (unsigned)c->uid);
	/* Jobs in flight still point at it: freed when the last one ends. */
	if (m->inflight > 0)
		m->deleted = true;
	else
		queue_msg_free(q, m);
	buf_init(&b);
	buf_printf(&b, "deleted %s\n", id);
	queue_ctl_text(c, &b);
	buf_free(&b);
	queue_ctl_end(c, 0);
	return 0;
}

struct queue_ctl_handler {
	uint32_t type;
	int (*fn)(struct queue *, struct qctl *, struct ipc_msg *);
};

static const struct queue_ctl_handler queue_ctl_handlers[] = {
	{ IMSG_CTL_LIST, queue_ctl_list },
	{ IMSG_CTL_SHOW, queue_ctl_show },
	{ IMSG_CTL_FLUSH, queue_ctl_flush },
	{ IMSG_CTL_DELETE, queue_ctl_delete },
};

static void
queue_ctl_close(struct qctl *c)
{
	ipc_close(&c->ch);
	c->active = false;
}

static void
queue_ctl_accept(struct queue *q)
{
	struct ucred cred;
	socklen_t len = sizeof(cred);
	size_t i;
	int fd;

	fd = accept4(q->control_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	if (fd == -1) {
		if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR &&
		    errno != ECONNABORTED)
			log_warn("event=control-accept-failed");
		return;
	}
	if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == -1) {
		log_warn("event=control-refused reason=no-credentials");
		(void)close(fd);
		return;
	}
	if (cred.uid != 0 && cred.uid != q->cfg->uid) {
		log_warnx("event=control-refused uid=%u pid=%d",
		    (unsigned)cred.uid, (int)cred.pid);
		(void)close(fd);
		return;
	}
	for (i = 0; i < QUEUE_CTL_MAX; i++)
		if (!q->ctl[i].active)
			break;
	if (i == QUEUE_CTL_MAX) {
		log_warnx("event=control-refused reason=busy uid=%u",
		    (unsigned)cred.uid);
		(void)close(fd);
		return;
	}
	ipc_init(&q->ctl[i].ch, fd);
	q->ctl[i].active = true;
	q->ctl[i].uid = cred.uid;
	log_debug("event=control-connect uid=%u", (unsigned)cred.uid);
}

static void
queue_ctl_read(struct queue *q, struct qctl *c)
{
	struct ipc_msg msg;
	size_t i;
	int r;

	while ((r = ipc_recv(&c->ch, &msg)) == 1) {
		if (msg.fd != -1)
			(void)close(msg.fd);
		for (i = 0; i < sizeof(queue_ctl_handlers) /
		    sizeof(queue_ctl_handlers[0]);
		    i++)
			if (queue_ctl_handlers[i].type == msg.hdr.type)
				break;
		if (i == sizeof(queue_ctl_handlers) /
			sizeof(queue_ctl_handlers[0]) ||
		    queue_ctl_handlers[i].fn(q, c, &msg) == -1) {
			log_warnx("event=control-bad-request type=%u uid=%u",
			    msg.hdr.type, (unsigned)c->uid);
			queue_ctl_close(c);
			return;
		}
	}
	if (r != 0) {
		if (r == -2)
			log_warnx("event=control-bad-frame uid=%u",
			    (unsigned)c->uid);
		queue_ctl_close(c);
	}
}

/* --- the loop --- */

struct queue_handler {
	uint32_t type;
	void (*fn)(struct queue *, struct ipc_msg *);
};

static const struct queue_handler queue_listener_handlers[] = {
	{ IMSG_QUEUE_CREATE, queue_on_create },
	{ IMSG_QUEUE_COMMIT, queue_on_commit },
	{ IMSG_QUEUE_ABORT, queue_on_abort },
	{ IMSG_SESSION_GONE, queue_on_session_gone },
};

static const struct queue_handler queue_relay_handlers[] = {
	{ IMSG_RELAY_RESULT, queue_on_relay_result },
	{ IMSG_RELAY_DONE, queue_on_relay_done },
};

/*
 * Read every waiting frame of ch and dispatch it.  Malformed or unknown
 * frames are logged and dropped: the listener relays untrusted session
 * data.  Returns -1 when the peer is gone.
 */
static int
queue_dispatch(struct queue *q, struct ipc_chan *ch, const char *peer,
    const struct queue_handler *h, size_t nh)
{
	struct ipc_msg msg;
	size_t i;
	int r;

	while ((r = ipc_recv(ch, &msg)) != 0) {
		if (r == -1)
			return -1;
		if (r == -2) {
			log_warnx("event=bad-frame from=%s", peer);
			continue;
		}
		if (msg.fd != -1) {
			/* Nothing we receive carries a descriptor. */
			(void)close(msg.fd);
			msg.fd = -1;
		}
		for (i = 0; i < nh; i++)
			if (h[i].type == msg.hdr.type)
				break;
		if (i == nh) {
			log_warnx("event=unexpected-message from=%s type=%u",
			    peer, msg.hdr.type);
			continue;
		}
		h[i].fn(q, &msg);
	}
	return 0;
}

enum {
	PFD_PARENT,
	PFD_LISTENER,
	PFD_RELAY,
	PFD_CONTROL,
	PFD_CTL0,
	PFD_SYNC0 = PFD_CTL0 + QUEUE_CTL_MAX,
	PFD_MAX = PFD_SYNC0 + QUEUE_SYNC_WORKERS
};

static short
queue_events(const struct ipc_chan *ch)
{
	return (short)(POLLIN | (ipc_write_pending(ch) ? POLLOUT : 0));
}

static void
queue_flush_all(struct queue *q)
{
	size_t i;

	if (ipc_flush(&q->parent) == -1) {
		log_info("event=exit reason=parent-gone");
		queue_removals_sync(q);
		exit(0);
	}
	if (ipc_flush(&q->listener) == -1)
		fatalx("event=listener-lost action=exit");
	if (ipc_flush(&q->relay) == -1)
		queue_relay_lost(q);
	for (i = 0; i < QUEUE_SYNC_WORKERS; i++)
		if (ipc_flush(&q->sync[i].ch) == -1)
			queue_sync_lost(q, "gone");
	for (i = 0; i < QUEUE_CTL_MAX; i++)
		if (q->ctl[i].active && ipc_flush(&q->ctl[i].ch) == -1)
			queue_ctl_close(&q->ctl[i]);
}

static void queue_sync_retire(struct queue *, time_t);

static void
queue_poll_once(struct queue *q)
{
	struct pollfd pfd[PFD_MAX];
	struct ipc_msg msg;
	const short bad = POLLIN | POLLHUP | POLLERR;
	size_t i;
	int n;

	pfd[PFD_PARENT] = (struct pollfd){ q->parent.fd, queue_events(&q->parent), 0 };
	pfd[PFD_LISTENER] =
	    (struct pollfd){ q->listener.fd, queue_events(&q->listener), 0 };
	pfd[PFD_RELAY] = (struct pollfd){ q->relay.fd, queue_events(&q->relay), 0 };
	pfd[PFD_CONTROL] = (struct pollfd){ q->control_fd, POLLIN, 0 };
	for (i = 0; i < QUEUE_CTL_MAX; i++)
		pfd[PFD_CTL0 + i] = (struct pollfd){
			q->ctl[i].active ? q->ctl[i].ch.fd : -1,
			q->ctl[i].active ? queue_events(&q->ctl[i].ch) : 0, 0
		};
	for (i = 0; i < QUEUE_SYNC_WORKERS; i++)
		pfd[PFD_SYNC0 + i] = (struct pollfd){ q->sync[i].ch.fd,
			queue_events(&q->sync[i].ch), 0 };
	n = poll(pfd, PFD_MAX, queue_timeout(q));
	if (n == -1) {
		if (errno == EINTR)
			return;
		fatal("poll");
	}
	if (pfd[PFD_PARENT].revents & bad) {
		/* The parent sends nothing today: anything is drained. */
		while ((n = ipc_recv(&q->parent, &msg)) != 0) {
			if (n == -1) {
				log_info("event=exit reason=parent-gone");
				queue_removals_sync(q);
				exit(0);
			}
			if (n == 1 && msg.fd != -1)
				(void)close(msg.fd);
			if (n == 1)
				log_warnx("event=unexpected-message from=parent "
					  "type=%u",
				    msg.hdr.type);
		}
	}
	if ((pfd[PFD_LISTENER].revents & bad) &&
	    queue_dispatch(q, &q->listener, "listener", queue_listener_handlers,
		sizeof(queue_listener_handlers) /
		    sizeof(queue_listener_handlers[0])) == -1) {
		/* No way to get a new one: the parent restarts us. */
		(void)ipc_flush(&q->relay);
		fatalx("event=listener-lost action=exit");
	}
	if ((pfd[PFD_RELAY].revents & bad) &&
	    queue_dispatch(q, &q->relay, "relay", queue_relay_handlers,
		sizeof(queue_relay_handlers) / sizeof(queue_relay_handlers[0])) ==
		-1)
		queue_relay_lost(q);
	if (pfd[PFD_CONTROL].revents & POLLIN)
		queue_ctl_accept(q);
	for (i = 0; i < QUEUE_CTL_MAX; i++)
		if (q->ctl[i].active && pfd[PFD_CTL0 + i].fd != -1 &&
		    (pfd[PFD_CTL0 + i].revents & bad))
			queue_ctl_read(q, &q->ctl[i]);
	/* Every commit prepared by now shares one fsync of queue/. */
	for (i = 0; i < QUEUE_SYNC_WORKERS; i++)
		if (pfd[PFD_SYNC0 + i].revents & (bad | POLLNVAL))
			queue_sync_read(q, &q->sync[i]);
	queue_commit_prepared(q);
	queue_sync_dispatch(q);
	queue_sync_retire(q, time(NULL));
}

static int
queue_open_dir(const char *path)
{
	int fd;

	if ((fd = open(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)) ==
	    -1)
		fatal("open %s", path);
	return fd;
}

/*
 * Sync workers are forked by the confined queue process when commits wait
 * and none is idle, so they inherit its chroot, user and seccomp filter;
 * one idle for QUEUE_SYNC_IDLE_S is retired, so an idle server has none.
 * A worker ends when its channel closes (the queue process retired it,
 * exited or was killed), once the fsync it may be in returns; it never
 * renames anything into queue/.
 */
#define QUEUE_SYNC_IDLE_S 10

static void __attribute__((noreturn))
queue_sync_main(struct queue *q, struct qsync *self, int fd)
{
	struct ipc_chan ch;
	size_t i;

	/* Only its own channel and tmp/: EOF on it means "stop". */
	(void)close(q->parent.fd);
	(void)close(q->listener.fd);
	(void)close(q->relay.fd);
	(void)close(q->control_fd);
	(void)close(q->queue_fd);
	for (i = 0; i < QUEUE_CTL_MAX; i++)
		if (q->ctl[i].active)
			(void)close(q->ctl[i].ch.fd);
	for (i = 0; i < QUEUE_SYNC_WORKERS; i++)
		if (&q->sync[i] != self && q->sync[i].ch.fd != -1)
			(void)close(q->sync[i].ch.fd);
	if (signal(SIGINT, SIG_IGN) == SIG_ERR ||
	    signal(SIGTERM, SIG_IGN) == SIG_ERR ||
	    signal(SIGHUP, SIG_IGN) == SIG_ERR)
		fatal("signal");
	log_setproc("queue-sync");
	ipc_init(&ch, fd);
	queue_sync_serve(q->tmp_fd, &ch);
}

/* Start a worker in slot w: 0, or an errno (the caller tries later). */
static int
queue_sync_spawn(struct queue *q, struct qsync *w)
{
	int sv[2], e;
	pid_t pid;

	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) == -1) {
		e = errno;
		log_warn("event=sync-worker-failed call=socketpair");
		return e;
	}
	if ((pid = fork()) == -1) {
		e = errno;
		log_warn("event=sync-worker-failed call=fork");
		(void)close(sv[0]);
		(void)close(sv[1]);
		return e;
	}
	if (pid == 0) {
		(void)close(sv[0]);
		queue_sync_main(q, w, sv[1]);
	}
	(void)close(sv[1]);
	ipc_init(&w->ch, sv[0]);
	w->pid = pid;
	w->busy = NULL;
	w->idle_since = time(NULL);
	log_debug("event=sync-worker-started pid=%ld", (long)pid);
	return 0;
}

/* Retire workers idle for QUEUE_SYNC_IDLE_S. */
static void
queue_sync_retire(struct queue *q, time_t now)
{
	struct qsync *w;
	size_t i;

	for (i = 0; i < QUEUE_SYNC_WORKERS; i++) {
		w = &q->sync[i];
		if (w->ch.fd == -1 || w->busy != NULL ||
		    now - w->idle_since < QUEUE_SYNC_IDLE_S)
			continue;
		ipc_close(&w->ch);
		/* Idle, it waits on the channel: it exits at once on EOF. */
		while (waitpid(w->pid, NULL, 0) == -1 && errno == EINTR)
			;
		log_debug("event=sync-worker-retired pid=%ld", (long)w->pid);
		w->pid = 0;
	}
}

/* When the next idle worker is due to retire, or 0 if none. */
static time_t
queue_sync_retire_at(const struct queue *q)
{
	time_t at = 0;
	size_t i;

	for (i = 0; i < QUEUE_SYNC_WORKERS; i++)
		if (q->sync[i].ch.fd != -1 && q->sync[i].busy == NULL &&
		    (at == 0 || q->sync[i].idle_since + QUEUE_SYNC_IDLE_S < at))
			at = q->sync[i].idle_since + QUEUE_SYNC_IDLE_S;
	return at;
}

void
queue_main(struct config *cfg, int parent_fd, int listener_fd, int relay_fd,
    int control_fd)
{
	static struct queue q;
	char prime[QUEUE_ID_LEN + 1];
	size_t n;
	int fl;

	memset(&q, 0, sizeof(q));
	q.cfg = cfg;
	/* Lazy state first: the time zone and the random generator. */
	tzset();
	random_hex(prime, sizeof(prime), QUEUE_ID_LEN / 2);
	srandom((unsigned)getpid() ^ (unsigned)time(NULL));
	if (signal(SIGPIPE, SIG_IGN) == SIG_ERR)
		fatal("signal");
	if ((fl = fcntl(control_fd, F_GETFL)) == -1 ||
	    fcntl(control_fd, F_SETFL, fl | O_NONBLOCK) == -1)
		fatal("control socket");
	proc_confine(cfg, ROLE_QUEUE, cfg->spool);
	for (n = 0; n < QUEUE_SYNC_WORKERS; n++)
		q.sync[n].ch.fd = -1; /* started when commits wait */

	q.queue_fd = queue_open_dir("/" SPOOL_QUEUE);
	q.tmp_fd = queue_open_dir("/" SPOOL_TMP);
	q.control_fd = control_fd;
	ipc_init(&q.parent, parent_fd);
	ipc_init(&q.listener, listener_fd);
	ipc_init(&q.relay, relay_fd);

	/* A restart picks the whole queue up; nobody has to flush it. */
	n = queue_spool_recover(q.tmp_fd, q.queue_fd, queue_load_cb, &q);
	log_info("event=queue-start messages=%zu concurrency=%u mode=%s "
		 "sync_workers=%d",
	    n, queue_concurrency(&q),
	    cfg->relay_mode == RELAY_MX ? "mx" : "smarthost",
	    QUEUE_SYNC_WORKERS);

	for (;;) {
		queue_run(&q);
		queue_flush_all(&q);
		queue_poll_once(&q);
	}
}

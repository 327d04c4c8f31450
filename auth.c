/*
 * auth.c - passwords: `msa passwd`, the password file and the auth process.
 *
 * The auth process is the only one that holds the password hashes.  It
 * reads auth.users itself before its chroot (the parent passes a fresh
 * descriptor with IMSG_RELOAD_USERS on SIGHUP), verifies the AUTH requests
 * of sessions with bcrypt, throttles client addresses that fail too often
 * and counts messages per login for limits.messages_per_hour.
 *
 * Unknown users are checked against a dummy hash with the cost most users
 * have, so "no such user" costs the same bcrypt run as a wrong password.
 * auth_verify() keeps no state: a pool of verifiers can run it (issue 6),
 * and auth_cache_clear() marks where a verification cache must be dropped.
 */
#include <sys/types.h>

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/crypto.h>

#include "msa.h"

#define BCRYPT_MAX_PASSWORD 72 /* bcrypt ignores what follows */
#define AUTH_MAX_SENDER_RULES 65536

/* ------------------------------------------------------------------ */
/* Password file                                                       */

struct auth_user {
	char *name;
	unsigned line;
	int cost;
	char hash[AUTH_HASH_LEN + 1];
};

struct auth_users {
	struct auth_user *v; /* in file order */
	size_t n, cap;
	uint32_t *slot; /* open addressing: 1 + index into v, 0 empty */
	size_t nslot; /* a power of two, at least 2 * n */
	int dummy_cost;
};

static const char bcrypt_alphabet[] =
    "./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

static uint32_t
auth_strhash(const char *s)
{
	uint32_t h = 2166136261u; /* FNV-1a */

	for (; *s != '\0'; s++) {
		h ^= (unsigned char)*s;
		h *= 16777619u;
	}
	return h;
}

static struct auth_user *
users_find(const struct auth_users *u, const char *name)
{
	size_t i, mask;

	if (u == NULL || u->nslot == 0)
		return NULL;
	mask = u->nslot - 1;
	for (i = auth_strhash(name) & mask; u->slot[i] != 0;
	    i = (i + 1) & mask)
		if (strcmp(u->v[u->slot[i] - 1].name, name) == 0)
			return &u->v[u->slot[i] - 1];
	return NULL;
}

static void
users_index(struct auth_users *u, size_t pos)
{
	size_t i, mask = u->nslot - 1;

	for (i = auth_strhash(u->v[pos].name) & mask; u->slot[i] != 0;
	    i = (i + 1) & mask)
		;
	u->slot[i] = (uint32_t)(pos + 1);
}

/* Keep the index at most half full so probes stay short. */
static void
users_reserve(struct auth_users *u)
{
	size_t pos;

	if (u->n == u->cap) {
		u->cap = u->cap ? 2 * u->cap : 16;
		u->v = xreallocarray(u->v, u->cap, sizeof(*u->v));
	}
	if (2 * (u->n + 1) <= u->nslot)
		return;
	free(u->slot);
	u->nslot = u->nslot ? 2 * u->nslot : 32;
	u->slot = xcalloc(u->nslot, sizeof(*u->slot));
	for (pos = 0; pos < u->n; pos++)
		users_index(u, pos);
}

static void
users_add(struct auth_users *u, const char *name, const char *hash,
    unsigned line)
{
	struct auth_user *e;

	users_reserve(u);
	e = &u->v[u->n];
	e->name = xstrdup(name);
	e->line = line;
	e->cost = (hash[4] - '0') * 10 + (hash[5] - '0');
	memcpy(e->hash, hash, AUTH_HASH_LEN);
	e->hash[AUTH_HASH_LEN] = '\0';
	users_index(u, u->n++);
}

void
auth_users_free(struct auth_users *u)
{
	size_t i;

	if (u == NULL)
		return;
	for (i = 0; i < u->n; i++)
		free(u->v[i].name);
	/* Hashes are not passwords, but they are what an attacker wants. */
	if (u->v != NULL)
		explicit_bzero(u->v, u->cap * sizeof(*u->v));
	free(u->v);
	free(u->slot);
	free(u);
}

size_t
auth_users_count(const struct auth_users *u)
{
	return u != NULL ? u->n : 0;
}

const char *
auth_users_hash(const struct auth_users *u, const char *name)
{
	const struct auth_user *e = users_find(u, name);

	return e != NULL ? e->hash : NULL;
}

int
auth_users_dummy_cost(const struct auth_users *u)
{
	return u != NULL ? u->dummy_cost : AUTH_DEFAULT_COST;
}

static void
users_set_dummy_cost(struct auth_users *u)
{
	unsigned seen[32] = { 0 };
	size_t i;
	int c;

	u->dummy_cost = AUTH_DEFAULT_COST;
	for (i = 0; i < u->n; i++)
		seen[u->v[i].cost]++;
	for (c = 4; c <= 31; c++)
		if (seen[c] > 0 && seen[c] >= seen[u->dummy_cost])
			u->dummy_cost = c;
}

/* 0 if name is a valid login, else -1 with the 1-based column and why. */
static int
auth_name_check(const char *name, size_t len, size_t *col, const char **why)
{
	size_t i;

	*col = 1;
	if (len == 0) {
		*why = "empty user name";
		return -1;
	}
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)name[i];

		*col = i + 1;
		if (c == ':') {
			*why = "':' in user name";
			return -1;
		}
		if (c == ' ' || c == '\t') {
			*why = "whitespace in user name";
			return -1;
		}
		if (c < 0x20 || c == 0x7f) {
			*why = "control character in user name";
			return -1;
		}
	}
	*col = 1;
	if (len >= MAX_LOGIN) {
		*why = "user name longer than 255 bytes";
		return -1;
	}
	return 0;
}

static int
bcrypt_char(char c)
{
	const char *p;

	if (c == '\0' || (p = strchr(bcrypt_alphabet, c)) == NULL)
		return -1;
	return (int)(p - bcrypt_alphabet);
}

/*
 * 0 if h[0..len) is a bcrypt hash libxcrypt will reproduce exactly, else
 * -1 with the 0-based offset of the problem and why.
 */
static int
auth_hash_check(const char *h, size_t len, size_t *off, const char **why)
{
	size_t i;

	*off = 0;
	if (len == 0) {
		*why = "missing password hash after ':'";
		return -1;
	}
	if (len < 4 || h[0] != '$' || h[1] != '2' ||
	    (h[2] != 'a' && h[2] != 'b' && h[2] != 'y') || h[3] != '$') {
		*why = "not a bcrypt hash (expected $2a$, $2b$ or $2y$)";
		return -1;
	}
	*off = 4;
	if (len < 6 || h[4] < '0' || h[4] > '3' || h[5] < '0' || h[5] > '9' ||
	    (h[4] == '0' && h[5] < '4') || (h[4] == '3' && h[5] > '1')) {
		*why = "bcrypt cost must be two digits from 04 to 31";
		return -1;
	}
	*off = 6;
	if (len < 7 || h[6] != '$') {
		*why = "expected '$' after the bcrypt cost";
		return -1;
	}
	for (i = 7; i < len && i < AUTH_HASH_LEN; i++)
		if (bcrypt_char(h[i]) < 0) {
			*off = i;
			*why = "invalid character in bcrypt hash";
			return -1;
		}
	if (len < AUTH_HASH_LEN) {
		*off = len;
		*why = "bcrypt hash too short (60 characters expected)";
		return -1;
	}
	if (len > AUTH_HASH_LEN) {
		*off = AUTH_HASH_LEN;
		*why = "unexpected text after the bcrypt hash";
		return -1;
	}
	/*
	 * The last salt character carries 4 bits and the last hash character
	 * 2 bits of padding; libxcrypt writes them as zero, so a hash with
	 * other bits could never compare equal: say so now, not at login.
	 */
	if (bcrypt_char(h[28]) % 16 != 0) {
		*off = 28;
		*why = "bcrypt salt is not canonical (its last character "
		       "must be one of . O e u)";
		return -1;
	}
	if (bcrypt_char(h[59]) % 4 != 0) {
		*off = 59;
		*why = "bcrypt hash is not canonical (bad last character)";
		return -1;
	}
	return 0;
}

struct users_parse {
	struct auth_users *u;
	auth_report_fn *report;
	void *arg;
	int problems;
	unsigned line;
	bool full;
};

static void __attribute__((format(printf, 3, 4)))
users_problem(struct users_parse *up, size_t col, const char *fmt, ...)
{
	char msg[512];
	va_list ap;

	up->problems++;
	if (up->report == NULL)
		return;
	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	up->report(up->arg, up->line, (unsigned)col, msg);
}

static void
users_parse_line(struct users_parse *up, const char *s, size_t len)
{
	char name[MAX_LOGIN];
	const struct auth_user *prev;
	const char *colon, *why;
	size_t i, namelen, col, off;

	if (len > 0 && s[len - 1] == '\r')
		len--;
	for (i = 0; i < len && (s[i] == ' ' || s[i] == '\t'); i++)
		;
	if (i == len || s[i] == '#')
		return;
	colon = memchr(s, ':', len);
	namelen = colon != NULL ? (size_t)(colon - s) : len;
	if (auth_name_check(s, namelen, &col, &why) == -1) {
		users_problem(up, col, "%s", why);
		return;
	}
	if (colon == NULL) {
		users_problem(up, len + 1,
		    "missing ':' between user name and hash");
		return;
	}
	if (auth_hash_check(colon + 1, len - namelen - 1, &off, &why) == -1) {
		users_problem(up, namelen + 2 + off, "%s", why);
		return;
	}
	memcpy(name, s, namelen);
	name[namelen] = '\0';
	if ((prev = users_find(up->u, name)) != NULL) {
		users_problem(up, 1, "duplicate user \"%s\" (first on line %u)",
		    name, prev->line);
		return;
	}
	if (up->u->n >= AUTH_MAX_USERS) {
		if (!up->full)
			users_problem(up, 1, "more than %d users",
			    AUTH_MAX_USERS);
		up->full = true;
		return;
	}
	users_add(up->u, name, colon + 1, up->line);
}

int
auth_users_parse(const char *data, size_t len, struct auth_users **out,
    auth_report_fn *report, void *arg)
{
	struct users_parse up;
	const char *p = data, *end = len > 0 ? data + len : data, *nl;

	memset(&up, 0, sizeof(up));
	up.u = xcalloc(1, sizeof(*up.u));
	up.report = report;
	up.arg = arg;
	while (p < end) {
		up.line++;
		if (up.problems >= AUTH_MAX_PROBLEMS) {
			users_problem(&up, 1, "too many problems; the rest of "
					      "the file was not checked");
			break;
		}
		nl = memchr(p, '\n', (size_t)(end - p));
		users_parse_line(&up, p, (size_t)((nl ? nl : end) - p));
		p = nl != NULL ? nl + 1 : end;
	}
	if (up.problems == 0 && out != NULL) {
		users_set_dummy_cost(up.u);
		*out = up.u;
	} else
		auth_users_free(up.u);
	return up.problems;
}

static int
users_file_problem(auth_report_fn *report, void *arg, const char *msg)
{
	if (report != NULL)
		report(arg, 0, 0, msg);
	return 1;
}

int
auth_users_read_fd(int fd, struct auth_users **out, auth_report_fn *report,
    void *arg)
{
	char chunk[8192], msg[256];
	struct buf b;
	ssize_t n;
	int r;

	buf_init(&b);
	for (;;) {
		n = read(fd, chunk, sizeof(chunk));
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			(void)snprintf(msg, sizeof(msg), "cannot read: %s",
			    strerror(errno));
			r = users_file_problem(report, arg, msg);
			goto done;
		}
		if (n == 0)
			break;
		if ((size_t)n > AUTH_MAX_FILE - b.len) {
			r = users_file_problem(report, arg,
			    "larger than 1 MiB; not a password file?");
			goto done;
		}
		buf_add(&b, chunk, (size_t)n);
	}
	r = auth_users_parse(b.data, b.len, out, report, arg);
done:
	explicit_bzero(chunk, sizeof(chunk));
	if (b.data != NULL)
		explicit_bzero(b.data, b.cap);
	buf_free(&b);
	return r;
}

struct first_problem {
	char *err;
	size_t errlen;
};

static void
first_problem_keep(void *arg, unsigned line, unsigned col, const char *msg)
{
	struct first_problem *fp = arg;

	if (fp->errlen > 0 && fp->err[0] == '\0')
		(void)snprintf(fp->err, fp->errlen, "%u:%u: %s", line, col, msg);
}

int
auth_check_users_file(const char *path, char *err, size_t errlen)
{
	struct first_problem fp = { err, errlen };
	int fd, n;

	if (errlen > 0)
		err[0] = '\0';
	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1) {
		if (errlen > 0)
			(void)snprintf(err, errlen, "0:0: cannot open: %s",
			    strerror(errno));
		return 1;
	}
	n = auth_users_read_fd(fd, NULL, first_problem_keep, &fp);
	(void)close(fd);
	return n;
}

/* ------------------------------------------------------------------ */
/* bcrypt                                                              */

int
auth_hash_password(const char *password, unsigned cost, char *out,
    size_t outlen)
{
	char salt[CRYPT_GENSALT_OUTPUT_SIZE];
	struct crypt_data *cd;
	const char *r;
	int ret = -1;

	if (crypt_gensalt_rn("$2b$", cost, NULL, 0, salt, sizeof(salt)) ==
		NULL ||
	    salt[0] == '*')
		return -1;
	cd = xcalloc(1, sizeof(*cd));
	r = crypt_rn(password, salt, cd, sizeof(*cd));
	if (r != NULL && r[0] != '*' && strlen(r) == AUTH_HASH_LEN &&
	    strlcpy_msa(out, r, outlen) < outlen)
		ret = 0;
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	return ret;
}

enum auth_status
auth_verify(const struct auth_users *u, const char *dummy, const char *user,
    const char *password)
{
	const struct auth_user *e = users_find(u, user);
	char setting[AUTH_HASH_LEN + 1];
	struct crypt_data *cd;
	const char *r;
	bool broken, match;
	int cost;

	if (e != NULL)
		memcpy(setting, e->hash, sizeof(setting));
	else {
		if (strlcpy_msa(setting, dummy, sizeof(setting)) !=
		    AUTH_HASH_LEN)
			return AUTH_TEMPFAIL;
		cost = auth_users_dummy_cost(u);
		setting[4] = (char)('0' + cost / 10);
		setting[5] = (char)('0' + cost % 10);
	}
	cd = xcalloc(1, sizeof(*cd));
	r = crypt_rn(password, setting, cd, sizeof(*cd));
	broken = r == NULL || r[0] == '*' || strlen(r) != AUTH_HASH_LEN;
	match = !broken && CRYPTO_memcmp(r, setting, AUTH_HASH_LEN) == 0;
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	if (broken)
		return AUTH_TEMPFAIL;
	return e != NULL && match && password[0] != '\0' ? AUTH_OK : AUTH_FAIL;
}

static void
rights_add(struct login_rights *out, const char *pattern)
{
	size_t i;

	if (pattern[0] == '\0')
		return;
	for (i = 0; i < out->n; i++)
		if (strcmp(out->patterns[i], pattern) == 0)
			return;
	if (out->n == MAX_RIGHTS) {
		log_warnx("event=rights-truncated login=%s max=%d",
		    out->login, MAX_RIGHTS);
		return;
	}
	strlcpy_msa(out->patterns[out->n++], pattern, MAX_ADDR);
}

void
auth_login_rights(const struct sender_rule *rules, size_t nrules,
    const char *domain, const char *login, struct login_rights *out)
{
	char own[MAX_ADDR];
	size_t i;

	memset(out, 0, sizeof(*out));
	strlcpy_msa(out->login, login, sizeof(out->login));
	own[0] = '\0';
	policy_login_address(login, domain, own, sizeof(own));
	rights_add(out, own);
	for (i = 0; i < nrules; i++)
		if (strcmp(rules[i].login, login) == 0)
			rights_add(out, rules[i].pattern);
}

/* ------------------------------------------------------------------ */
/* Sliding windows: failures per client, messages per login            */

#define WINDOW_BUCKETS 60

struct window_entry {
	char *key;
	uint32_t keyhash;
	time_t last; /* time of the latest event */
	uint32_t stamp[WINDOW_BUCKETS]; /* bucket number held by each slot */
	uint32_t count[WINDOW_BUCKETS];
};

struct auth_window {
	time_t width; /* seconds per bucket */
	size_t max, n, cap;
	struct window_entry *v;
};

struct auth_window *
auth_window_new(time_t span, size_t max_keys)
{
	struct auth_window *w = xcalloc(1, sizeof(*w));

	w->width = span / WINDOW_BUCKETS > 0 ? span / WINDOW_BUCKETS : 1;
	w->max = max_keys > 0 ? max_keys : 1;
	return w;
}

void
auth_window_free(struct auth_window *w)
{
	size_t i;

	if (w == NULL)
		return;
	for (i = 0; i < w->n; i++)
		free(w->v[i].key);
	free(w->v);
	free(w);
}

size_t
auth_window_keys(const struct auth_window *w)
{
	return w->n;
}

static uint32_t
window_bucket(const struct auth_window *w, time_t now)
{
	return (uint32_t)((now > 0 ? now : 0) / w->width);
}

static struct window_entry *
window_find(const struct auth_window *w, const char *key)
{
	uint32_t h = auth_strhash(key);
	size_t i;

	for (i = 0; i < w->n; i++)
		if (w->v[i].keyhash == h && strcmp(w->v[i].key, key) == 0)
			return &w->v[i];
	return NULL;
}

static unsigned
window_sum(const struct auth_window *w, const struct window_entry *e,
    time_t now)
{
	uint32_t cur = window_bucket(w, now);
	uint64_t sum = 0;
	size_t i;

	for (i = 0; i < WINDOW_BUCKETS; i++)
		if (cur - e->stamp[i] < WINDOW_BUCKETS)
			sum += e->count[i];
	return sum > UINT_MAX ? UINT_MAX : (unsigned)sum;
}

unsigned
auth_window_count(const struct auth_window *w, const char *key, time_t now)
{
	const struct window_entry *e = window_find(w, key);

	return e != NULL ? window_sum(w, e, now) : 0;
}

/*
 * A slot for a new key.  When the table is full, the entry whose latest
 * event is oldest goes: an expired one if there is any, so a flood of new
 * keys only pushes out live entries once nothing else is left.
 */
static struct window_entry *
window_slot(struct auth_window *w)
{
	struct window_entry *e;
	size_t i, oldest = 0;

	if (w->n < w->max) {
		if (w->n == w->cap) {
			w->cap = w->cap ? 2 * w->cap : 16;
			if (w->cap > w->max)
				w->cap = w->max;
			w->v = xreallocarray(w->v, w->cap, sizeof(*w->v));
		}
		e = &w->v[w->n++];
	} else {
		for (i = 1; i < w->n; i++)
			if (w->v[i].last < w->v[oldest].last)
				oldest = i;
		e = &w->v[oldest];
		free(e->key);
	}
	memset(e, 0, sizeof(*e));
	return e;
}

void
auth_window_add(struct auth_window *w, const char *key, time_t now)
{
	struct window_entry *e;
	uint32_t cur = window_bucket(w, now);
	size_t i = cur % WINDOW_BUCKETS;

	if ((e = window_find(w, key)) == NULL) {
		e = window_slot(w);
		e->key = xstrdup(key);
		e->keyhash = auth_strhash(key);
	}
	if (e->stamp[i] != cur || e->count[i] == 0) {
		e->stamp[i] = cur;
		e->count[i] = 0;
	}
	if (e->count[i] < UINT32_MAX)
		e->count[i]++;
	if (now > e->last)
		e->last = now;
}

bool
auth_throttled(const struct auth_window *fails, unsigned max_failures,
    const char *client, time_t now)
{
	return max_failures != 0 &&
	    auth_window_count(fails, client, now) >= max_failures;
}

bool
auth_rate_take(struct auth_window *sent, unsigned per_hour, const char *login,
    time_t now)
{
	if (per_hour == 0)
		return true;
	if (auth_window_count(sent, login, now) >= per_hour)
		return false;
	auth_window_add(sent, login, now);
	return true;
}

/* ------------------------------------------------------------------ */
/* msa passwd                                                          */

/* One line without its LF (and a CR before it): 1, 0 at EOF, -1 + why. */
static int
passwd_getline(FILE *in, char *buf, size_t size, const char **why)
{
	size_t len = 0;
	bool any = false;
	int c;

	while ((c = getc(in)) != EOF) {
		any = true;
		if (c == '\n')
			break;
		if (c == '\0') {
			*why = "the password contains a NUL byte";
			return -1;
		}
		if (len + 1 >= size) {
			*why = "the password is too long";
			return -1;
		}
		buf[len++] = (char)c;
	}
	if (ferror(in)) {
		*why = "cannot read standard input";
		return -1;
	}
	if (!any)
		return 0;
	if (len > 0 && buf[len - 1] == '\r')
		len--;
	buf[len] = '\0';
	return 1;
}

int
auth_read_password(FILE *in, char *pw, size_t pwsize, char *err,
    size_t errlen)
{
	char again[MAX_PASSWORD];
	const char *why = NULL;
	int r;

	if ((r = passwd_getline(in, pw, pwsize, &why)) == 0)
		why = "no password on standard input";
	else if (r == 1 && pw[0] == '\0')
		why = "empty password";
	else if (r == 1) {
		r = passwd_getline(in, again, sizeof(again), &why);
		if (r == 1 && strcmp(pw, again) != 0)
			why = "the two passwords do not match";
	}
	explicit_bzero(again, sizeof(again));
	if (why == NULL)
		return 0;
	explicit_bzero(pw, pwsize);
	(void)snprintf(err, errlen, "%s", why);
	return -1;
}

static volatile sig_atomic_t passwd_signo;

static void
passwd_on_signal(int sig)
{
	passwd_signo = sig;
}

static const int passwd_signals[] = { SIGINT, SIGHUP, SIGQUIT, SIGTERM,
	SIGTSTP, SIGTTIN, SIGTTOU };
#define PASSWD_NSIG (sizeof(passwd_signals) / sizeof(passwd_signals[0]))

/* Prompt on the terminal and read one line; 0 ok, -1 with why. */
static int
passwd_tty_line(int fd, const char *prompt, char *buf, size_t size,
    const char **why)
{
	size_t len = 0;
	ssize_t n;
	char c;

	if (write_all(fd, prompt, strlen(prompt)) == -1) {
		*why = "cannot write to the terminal";
		return -1;
	}
	for (;;) {
		n = read(fd, &c, 1);
		if (n == -1 && errno == EINTR && passwd_signo == 0)
			continue;
		if (n == -1) {
			*why = passwd_signo != 0 ? "interrupted" :
						   "cannot read the terminal";
			return -1;
		}
		if (n == 0 || c == '\n' || c == '\r')
			break;
		if (len + 1 >= size) {
			*why = "the password is too long";
			return -1;
		}
		buf[len++] = c;
	}
	c = 0;
	buf[len] = '\0';
	(void)write_all(fd, "\n", 1);
	return 0;
}

static int
passwd_tty_ask(int fd, char *pw, size_t pwsize, const char **why)
{
	char again[MAX_PASSWORD];
	int r;

	if ((r = passwd_tty_line(fd, "Password: ", pw, pwsize, why)) == 0 &&
	    pw[0] == '\0') {
		*why = "empty password";
		r = -1;
	}
	if (r == 0 && (r = passwd_tty_line(fd, "Retype password: ", again,
			   sizeof(again), why)) == 0 &&
	    strcmp(pw, again) != 0) {
		*why = "the two passwords do not match";
		r = -1;
	}
	explicit_bzero(again, sizeof(again));
	return r;
}

/*
 * Ask twice on /dev/tty with echo off.  Echo comes back on every path:
 * the signals that would leave the terminal silent are caught, and
 * re-raised once the terminal and their old handlers are restored.
 */
static int
passwd_tty(char *pw, size_t pwsize, char *err, size_t errlen)
{
	struct sigaction sa, old[PASSWD_NSIG];
	struct termios saved, quiet;
	sigset_t block, prev;
	const char *why = NULL;
	size_t i;
	int fd, r = -1;

	if ((fd = open("/dev/tty", O_RDWR | O_NOCTTY | O_CLOEXEC)) == -1) {
		(void)snprintf(err, errlen, "cannot open /dev/tty: %s",
		    strerror(errno));
		return -1;
	}
	if (tcgetattr(fd, &saved) == -1) {
		(void)snprintf(err, errlen, "cannot read terminal settings: %s",
		    strerror(errno));
		(void)close(fd);
		return -1;
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = passwd_on_signal; /* no SA_RESTART: read() returns */
	(void)sigemptyset(&sa.sa_mask);
	(void)sigemptyset(&block);
	passwd_signo = 0;
	for (i = 0; i < PASSWD_NSIG; i++) {
		(void)sigaction(passwd_signals[i], &sa, &old[i]);
		(void)sigaddset(&block, passwd_signals[i]);
	}
	quiet = saved;
	quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK | ECHONL);
	if (tcsetattr(fd, TCSAFLUSH, &quiet) == -1)
		why = "cannot turn off echo";
	else
		r = passwd_tty_ask(fd, pw, pwsize, &why);

	/* SIGTTOU blocked: a background process may restore the terminal. */
	(void)sigprocmask(SIG_BLOCK, &block, &prev);
	(void)tcsetattr(fd, TCSANOW, &saved);
	for (i = 0; i < PASSWD_NSIG; i++)
		(void)sigaction(passwd_signals[i], &old[i], NULL);
	if (passwd_signo != 0)
		(void)kill(getpid(), passwd_signo);
	(void)sigprocmask(SIG_SETMASK, &prev, NULL);
	(void)close(fd);
	if (r == -1) {
		explicit_bzero(pw, pwsize);
		(void)snprintf(err, errlen, "%s", why ? why : "interrupted");
	}
	return r;
}

int
auth_passwd_run(const char *name, FILE *in, FILE *out, unsigned cost)
{
	char pw[MAX_PASSWORD], hash[AUTH_HASH_LEN + 1], err[256];
	const char *why;
	size_t col;
	int r;

	if (name != NULL && auth_name_check(name, strlen(name), &col, &why) ==
		-1) {
		fprintf(stderr, "msa passwd: bad user name (column %zu): %s\n",
		    col, why);
		return 1;
	}
	r = in != NULL ? auth_read_password(in, pw, sizeof(pw), err,
			     sizeof(err)) :
			 passwd_tty(pw, sizeof(pw), err, sizeof(err));
	if (r == -1) {
		fprintf(stderr, "msa passwd: %s\n", err);
		return 1;
	}
	if (strlen(pw) > BCRYPT_MAX_PASSWORD)
		fprintf(stderr, "msa passwd: warning: bcrypt uses only the "
				"first %d bytes of a password\n",
		    BCRYPT_MAX_PASSWORD);
	r = auth_hash_password(pw, cost, hash, sizeof(hash));
	explicit_bzero(pw, sizeof(pw));
	if (r == -1) {
		fprintf(stderr, "msa passwd: cannot hash the password "
				"(libxcrypt bcrypt failed)\n");
		return 2;
	}
	if (name != NULL)
		fprintf(out, "%s:%s\n", name, hash);
	else
		fprintf(out, "%s\n", hash);
	if (fflush(out) == EOF || ferror(out)) {
		fprintf(stderr, "msa passwd: cannot write the hash: %s\n",
		    strerror(errno));
		return 2;
	}
	return 0;
}

int
passwd_main(const char *name)
{
	if (isatty(STDIN_FILENO))
		return auth_passwd_run(name, NULL, stdout, AUTH_DEFAULT_COST);
	/* Unbuffered: no copy of the password stays in stdio's buffer. */
	(void)setvbuf(stdin, NULL, _IONBF, 0);
	return auth_passwd_run(name, stdin, stdout, AUTH_DEFAULT_COST);
}

/* ------------------------------------------------------------------ */
/* The auth process                                                    */

struct auth_proc {
	struct config *cfg;
	struct ipc_chan parent, listener;
	struct auth_users *users;
	struct sender_rule *senders; /* active rules */
	size_t nsenders;
	struct sender_rule *staged; /* IMSG_SENDERS_RESET/ADD being sent */
	size_t nstaged;
	bool staging;
	struct auth_window *fails; /* failures per client address */
	struct auth_window *sent; /* messages per login */
	struct login_rights rights; /* scratch for one reply */
	char dummy[AUTH_HASH_LEN + 1];
};

struct auth_handler {
	uint32_t type;
	void (*fn)(struct auth_proc *, struct ipc_msg *);
};

/*
 * Everything a verification cache would have learnt depends on the
 * password file and the sender rules: when either changes, drop it.
 * There is no cache yet (auth.cache, issue 6); this is where it goes.
 */
static void
auth_cache_clear(struct auth_proc *ap)
{
	(void)ap;
}

static void
auth_report_log(void *arg, unsigned line, unsigned col, const char *msg)
{
	const struct auth_proc *ap = arg;
	char path[MAX_PATHLEN], text[512];
	size_t i;

	(void)log_sanitize(path, sizeof(path), ap->cfg->auth_users);
	strlcpy_msa(text, msg, sizeof(text));
	for (i = 0; text[i] != '\0'; i++) /* keep the quoted value whole */
		if (text[i] == '"' || text[i] == '\\')
			text[i] = '\'';
	log_warnx("event=users-error file=%s line=%u col=%u problem=\"%s\"",
	    path, line, col, text);
}

static void
auth_users_replace(struct auth_proc *ap, struct auth_users *u,
    const char *event)
{
	char path[MAX_PATHLEN];

	auth_users_free(ap->users);
	ap->users = u;
	auth_cache_clear(ap);
	(void)log_sanitize(path, sizeof(path), ap->cfg->auth_users);
	if (auth_users_count(u) == 0)
		log_warnx("event=%s users=0 file=%s reason=\"nobody can log "
			  "in\"",
		    event, path);
	else
		log_info("event=%s users=%zu file=%s", event,
		    auth_users_count(u), path);
	log_debug("event=dummy-hash cost=%d", auth_users_dummy_cost(u));
}

static void
auth_load_users_at_start(struct auth_proc *ap)
{
	const char *path = ap->cfg->auth_users;
	struct auth_users *u = NULL;
	int fd, n;

	if ((fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY)) == -1)
		fatal("cannot open the password file %s", path);
	n = auth_users_read_fd(fd, &u, auth_report_log, ap);
	(void)close(fd);
	if (n != 0)
		fatalx("the password file %s has %d problem%s; not starting",
		    path, n, n == 1 ? "" : "s");
	auth_users_replace(ap, u, "users-loaded");
}

static void
auth_make_dummy(struct auth_proc *ap)
{
	char pw[65];

	random_hex(pw, sizeof(pw), 32);
	if (auth_hash_password(pw, AUTH_DEFAULT_COST, ap->dummy,
		sizeof(ap->dummy)) == -1)
		fatalx("cannot make the dummy bcrypt hash (libxcrypt)");
	explicit_bzero(pw, sizeof(pw));
}

static void
auth_senders_set(struct auth_proc *ap, const struct sender_rule *rules,
    size_t n)
{
	free(ap->senders);
	ap->senders = xreallocarray(NULL, n, sizeof(*rules));
	if (n > 0)
		memcpy(ap->senders, rules, n * sizeof(*rules));
	ap->nsenders = n;
}

/*
 * The parent sends SENDERS_RESET, SENDERS_ADD... in one burst; the new
 * rules apply once that burst is read (the parent channel is drained
 * before any request), so no request sees half a table.
 */
static void
auth_senders_commit(struct auth_proc *ap)
{
	if (!ap->staging)
		return;
	free(ap->senders);
	ap->senders = ap->staged;
	ap->nsenders = ap->nstaged;
	ap->staged = NULL;
	ap->nstaged = 0;
	ap->staging = false;
	auth_cache_clear(ap);
	log_info("event=senders-reloaded rules=%zu", ap->nsenders);
}

static void
auth_on_senders_reset(struct auth_proc *ap, struct ipc_msg *m)
{
	if (m->hdr.len != 0)
		fatalx("IMSG_SENDERS_RESET with a payload from the parent");
	free(ap->staged);
	ap->staged = NULL;
	ap->nstaged = 0;
	ap->staging = true;
}

static void
auth_on_senders_add(struct auth_proc *ap, struct ipc_msg *m)
{
	struct sender_rule rule;

	if (m->hdr.len != sizeof(rule))
		fatalx("IMSG_SENDERS_ADD of %u bytes from the parent",
		    m->hdr.len);
	memcpy(&rule, m->data, sizeof(rule));
	if (!IPC_STR_OK(rule.login) || !IPC_STR_OK(rule.pattern))
		fatalx("unterminated IMSG_SENDERS_ADD from the parent");
	if (!ap->staging) { /* an ADD alone extends the active rules */
		ap->staged = xreallocarray(NULL, ap->nsenders + 1,
		    sizeof(rule));
		if (ap->nsenders > 0)
			memcpy(ap->staged, ap->senders,
			    ap->nsenders * sizeof(rule));
		ap->nstaged = ap->nsenders;
		ap->staging = true;
	}
	if (ap->nstaged >= AUTH_MAX_SENDER_RULES) {
		log_warnx("event=senders-truncated max=%d",
		    AUTH_MAX_SENDER_RULES);
		return;
	}
	ap->staged = xreallocarray(ap->staged, ap->nstaged + 1, sizeof(rule));
	ap->staged[ap->nstaged++] = rule;
}

static void
auth_on_reload_users(struct auth_proc *ap, struct ipc_msg *m)
{
	struct auth_users *u = NULL;
	char path[MAX_PATHLEN];
	int n;

	if (m->fd == -1) {
		log_warnx("event=reload-failed reason=\"no descriptor for "
			  "the password file\"");
		return;
	}
	n = auth_users_read_fd(m->fd, &u, auth_report_log, ap);
	(void)close(m->fd);
	m->fd = -1;
	if (n != 0) {
		(void)log_sanitize(path, sizeof(path), ap->cfg->auth_users);
		log_warnx("event=reload-failed file=%s problems=%d "
			  "reason=\"keeping the previous %zu users\"",
		    path, n, auth_users_count(ap->users));
		return;
	}
	auth_users_replace(ap, u, "reload");
}

static const struct auth_handler auth_parent_handlers[] = {
	{ IMSG_RELOAD_USERS, auth_on_reload_users },
	{ IMSG_SENDERS_RESET, auth_on_senders_reset },
	{ IMSG_SENDERS_ADD, auth_on_senders_add },
};

static void
auth_reply_auth(struct auth_proc *ap, uint32_t peerid,
    enum auth_status status, const char *login)
{
	struct ipc_auth_res res;
	unsigned char *frame;
	size_t i, n = 0, len;

	memset(&res, 0, sizeof(res));
	res.status = status;
	if (status == AUTH_OK) {
		strlcpy_msa(res.login, login, sizeof(res.login));
		auth_login_rights(ap->senders, ap->nsenders, ap->cfg->domain,
		    login, &ap->rights);
		n = ap->rights.n;
	}
	res.nrights = (uint32_t)n;
	len = sizeof(res) + n * MAX_ADDR;
	frame = xcalloc(1, len);
	memcpy(frame, &res, sizeof(res));
	for (i = 0; i < n; i++)
		memcpy(frame + sizeof(res) + i * MAX_ADDR,
		    ap->rights.patterns[i], MAX_ADDR);
	ipc_compose(&ap->listener, IMSG_AUTH_RES, peerid, -1, frame, len);
	free(frame);
}

static const char *
auth_status_name(enum auth_status s)
{
	switch (s) {
	case AUTH_OK:
		return "ok";
	case AUTH_FAIL:
		return "fail";
	case AUTH_THROTTLED:
		return "throttled";
	case AUTH_TEMPFAIL:
		break;
	}
	return "tempfail";
}

static void
auth_on_auth_req(struct auth_proc *ap, struct ipc_msg *m)
{
	struct ipc_auth_req req;
	enum auth_status status;
	char login[MAX_LOGIN], client[CLIENT_ADDR_LEN];
	time_t now;

	if (m->hdr.len != sizeof(req) || m->fd != -1) {
		log_warnx("event=auth result=tempfail reason=\"malformed "
			  "request of %u bytes\"",
		    m->hdr.len);
		explicit_bzero(m->data, m->hdr.len);
		auth_reply_auth(ap, m->hdr.peerid, AUTH_TEMPFAIL, NULL);
		return;
	}
	memcpy(&req, m->data, sizeof(req));
	explicit_bzero(m->data, m->hdr.len);
	if (!IPC_STR_OK(req.user) || !IPC_STR_OK(req.password) ||
	    !IPC_STR_OK(req.client)) {
		log_warnx("event=auth result=tempfail reason=\"unterminated "
			  "field in request\"");
		status = AUTH_TEMPFAIL;
		goto reply;
	}
	now = monotime();
	if (auth_throttled(ap->fails, ap->cfg->auth_max_failures, req.client,
		now))
		status = AUTH_THROTTLED;
	else {
		status = auth_verify(ap->users, ap->dummy, req.user,
		    req.password);
		if (status == AUTH_FAIL)
			auth_window_add(ap->fails, req.client, now);
	}
	log_info("event=auth login=%s client=%s result=%s",
	    log_sanitize(login, sizeof(login), req.user),
	    log_sanitize(client, sizeof(client), req.client),
	    auth_status_name(status));
reply:
	explicit_bzero(req.password, sizeof(req.password));
	auth_reply_auth(ap, m->hdr.peerid, status, req.user);
	explicit_bzero(&req, sizeof(req));
}

static void
auth_on_rate_req(struct auth_proc *ap, struct ipc_msg *m)
{
	struct ipc_rate_req req;
	struct ipc_rate_res res;
	unsigned limit = ap->cfg->messages_per_hour;
	char login[MAX_LOGIN];

	memset(&res, 0, sizeof(res));
	if (m->hdr.len != sizeof(req) || m->fd != -1) {
		log_warnx("event=ratelimit reason=\"malformed request of %u "
			  "bytes\"",
		    m->hdr.len);
		goto reply;
	}
	memcpy(&req, m->data, sizeof(req));
	if (!IPC_STR_OK(req.login) || req.login[0] == '\0') {
		log_warnx("event=ratelimit reason=\"malformed login\"");
		goto reply;
	}
	(void)log_sanitize(login, sizeof(login), req.login);
	if (limit == 0)
		res.allowed = 1;
	else if (auth_users_hash(ap->users, req.login) == NULL)
		/* Only real logins get a counter: the table stays small. */
		log_warnx("event=ratelimit login=%s reason=\"no such user\"",
		    login);
	else if (auth_rate_take(ap->sent, limit, req.login, monotime()))
		res.allowed = 1;
	else
		log_info("event=ratelimit login=%s limit=%u", login, limit);
reply:
	ipc_compose(&ap->listener, IMSG_RATE_RES, m->hdr.peerid, -1, &res,
	    sizeof(res));
}

static const struct auth_handler auth_listener_handlers[] = {
	{ IMSG_AUTH_REQ, auth_on_auth_req },
	{ IMSG_RATE_REQ, auth_on_rate_req },
};

static bool
auth_dispatch(struct auth_proc *ap, const struct auth_handler *h, size_t nh,
    struct ipc_msg *m)
{
	size_t i;

	for (i = 0; i < nh; i++)
		if (h[i].type == m->hdr.type) {
			h[i].fn(ap, m);
			return true;
		}
	return false;
}

static void __attribute__((noreturn))
auth_exit(const char *why)
{
	log_info("event=exit reason=%s", why);
	exit(0);
}

/* The parent is trusted: nonsense from it is fatal. */
static void
auth_parent_input(struct auth_proc *ap)
{
	struct ipc_msg m;
	int r;

	while ((r = ipc_recv(&ap->parent, &m)) == 1) {
		if (!auth_dispatch(ap, auth_parent_handlers,
			sizeof(auth_parent_handlers) /
			    sizeof(auth_parent_handlers[0]),
			&m))
			fatalx("unexpected frame %u from the parent",
			    m.hdr.type);
		if (m.fd != -1)
			(void)close(m.fd);
	}
	if (r == -2)
		fatalx("malformed frame from the parent");
	if (r == -1)
		auth_exit("parent-gone");
}

/*
 * One request per turn of the loop: a bcrypt run is long, so the reply
 * goes out at once and the parent's frames are not kept waiting behind
 * a queue of requests.  The listener is not trusted: bad frames are
 * logged and dropped.
 */
static void
auth_listener_input(struct auth_proc *ap)
{
	struct ipc_msg m;
	int r;

	if ((r = ipc_recv(&ap->listener, &m)) == 0)
		return;
	if (r == -1)
		auth_exit("listener-gone");
	if (r == -2) {
		log_warnx("event=ipc-error peer=listener reason=malformed");
		return;
	}
	if (!auth_dispatch(ap, auth_listener_handlers,
		sizeof(auth_listener_handlers) /
		    sizeof(auth_listener_handlers[0]),
		&m))
		log_warnx("event=ipc-error peer=listener reason=\"unexpected "
			  "frame %u\"",
		    m.hdr.type);
	if (m.fd != -1)
		(void)close(m.fd);
}

static void
auth_flush(struct auth_proc *ap)
{
	if (ipc_flush(&ap->listener) == -1)
		auth_exit("listener-gone");
	if (ipc_flush(&ap->parent) == -1)
		auth_exit("parent-gone");
}

static void __attribute__((noreturn))
auth_loop(struct auth_proc *ap)
{
	struct pollfd pfd[2];
	size_t i;

	for (;;) {
		pfd[0].fd = ap->parent.fd;
		pfd[1].fd = ap->listener.fd;
		pfd[0].events = POLLIN;
		pfd[1].events = POLLIN;
		if (ipc_write_pending(&ap->parent))
			pfd[0].events |= POLLOUT;
		if (ipc_write_pending(&ap->listener))
			pfd[1].events |= POLLOUT;
		if (poll(pfd, 2, -1) == -1) {
			if (errno == EINTR)
				continue;
			fatal("poll");
		}
		for (i = 0; i < 2; i++)
			if (pfd[i].revents & POLLNVAL)
				fatalx("poll: channel %zu is not open", i);
		if (pfd[0].revents != 0)
			auth_parent_input(ap);
		auth_senders_commit(ap);
		if (pfd[1].revents != 0)
			auth_listener_input(ap);
		auth_flush(ap);
	}
}

void
auth_main(struct config *cfg, int parent_fd, int listener_fd)
{
	static struct auth_proc ap;
	char empty[MAX_PATHLEN];

	ap.cfg = cfg;
	/* Everything that needs a file or entropy happens before the chroot. */
	auth_load_users_at_start(&ap);
	auth_senders_set(&ap, cfg->senders, cfg->nsenders);
	auth_make_dummy(&ap);
	ap.fails = auth_window_new(AUTH_FAIL_WINDOW, AUTH_MAX_CLIENTS);
	ap.sent = auth_window_new(AUTH_RATE_WINDOW, AUTH_MAX_USERS);
	tzset();
	if (bsnprintf(empty, sizeof(empty), "%s/%s", cfg->spool,
		SPOOL_EMPTY) == -1)
		fatalx("spool path too long: %s", cfg->spool);
	ipc_init(&ap.parent, parent_fd);
	ipc_init(&ap.listener, listener_fd);
	proc_confine(cfg, ROLE_AUTH, empty);
	auth_loop(&ap);
}

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
 *
 * bcrypt itself runs in a pool of verifier processes, one per CPU, forked
 * before anything secret is loaded and confined like the auth process;
 * they get (hash, password) jobs and answer match or not.  The auth
 * process keeps every piece of state (password table, throttle, rate,
 * sender rules, auth.cache) single-threaded, queues AUTH requests and
 * answers each, in whatever order the checks end, under its session's
 * peerid.  A check in progress counts toward its client's failure budget,
 * so parallel guesses from one address get no more tries than serial ones.
 */
#include <sys/types.h>
#include <sys/wait.h>

#include <crypt.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <malloc.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <termios.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/params.h>
#include <openssl/rand.h>

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

int
auth_setting(const struct auth_users *u, const char *dummy, const char *user,
    char setting[AUTH_HASH_LEN + 1])
{
	const struct auth_user *e = users_find(u, user);
	int cost;

	if (e != NULL) {
		memcpy(setting, e->hash, AUTH_HASH_LEN + 1);
		return 1;
	}
	if (strlcpy_msa(setting, dummy, AUTH_HASH_LEN + 1) != AUTH_HASH_LEN)
		return -1;
	cost = auth_users_dummy_cost(u);
	setting[4] = (char)('0' + cost / 10);
	setting[5] = (char)('0' + cost % 10);
	return 0;
}

enum auth_status
auth_check_hash(const char *setting, const char *password)
{
	struct crypt_data *cd;
	const char *r;
	bool broken, match;

	cd = xcalloc(1, sizeof(*cd));
	r = crypt_rn(password, setting, cd, sizeof(*cd));
	broken = r == NULL || r[0] == '*' || strlen(r) != AUTH_HASH_LEN ||
	    strlen(setting) != AUTH_HASH_LEN;
	match = !broken && CRYPTO_memcmp(r, setting, AUTH_HASH_LEN) == 0;
	explicit_bzero(cd, sizeof(*cd));
	free(cd);
	if (broken)
		return AUTH_TEMPFAIL;
	return match ? AUTH_OK : AUTH_FAIL;
}

enum auth_status
auth_verify(const struct auth_users *u, const char *dummy, const char *user,
    const char *password)
{
	char setting[AUTH_HASH_LEN + 1];
	enum auth_status status;
	int known;

	if ((known = auth_setting(u, dummy, user, setting)) == -1)
		return AUTH_TEMPFAIL;
	status = auth_check_hash(setting, password);
	if (status == AUTH_OK && (known == 0 || password[0] == '\0'))
		status = AUTH_FAIL;
	return status;
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
/* Verifier pool                                                       */

struct auth_verifier {
	struct ipc_chan ch;
	pid_t pid;
	bool alive;
	bool busy;
	uint32_t job; /* the job it is running, when busy */
};

struct auth_pool {
	struct auth_verifier v[AUTH_POOL_MAX];
	size_t n;
};

size_t
auth_pool_size(void)
{
	long n = sysconf(_SC_NPROCESSORS_ONLN);
	cpu_set_t set;

	/* A container or taskset may give this process fewer CPUs. */
	CPU_ZERO(&set);
	if (sched_getaffinity(0, sizeof(set), &set) == 0 &&
	    CPU_COUNT(&set) > 0 && CPU_COUNT(&set) < n)
		n = CPU_COUNT(&set);
	if (n < AUTH_POOL_MIN)
		return AUTH_POOL_MIN;
	return n > AUTH_POOL_MAX ? AUTH_POOL_MAX : (size_t)n;
}

/* A verifier's whole life: one job in, one answer out, until EOF. */
static void __attribute__((noreturn))
auth_verifier_run(int fd)
{
	struct auth_verify_job job;
	struct auth_verify_res res;
	struct ipc_chan ch;
	struct ipc_msg m;
	int r;

	ipc_init(&ch, fd);
	for (;;) {
		if ((r = ipc_wait(&ch, &m, -1)) == 0)
			continue;
		if (r == -1) /* the auth process is gone */
			_exit(0);
		if (r == -2 || m.hdr.type != IMSG_AUTH_REQ ||
		    m.hdr.len != sizeof(job) || m.fd != -1)
			fatalx("event=verifier-error reason=\"malformed job\"");
		memcpy(&job, m.data, sizeof(job));
		explicit_bzero(m.data, m.hdr.len);
		memset(&res, 0, sizeof(res));
		if (!IPC_STR_OK(job.setting) || !IPC_STR_OK(job.password))
			res.status = AUTH_TEMPFAIL;
		else
			res.status = auth_check_hash(job.setting, job.password);
		explicit_bzero(&job, sizeof(job));
		ipc_compose(&ch, IMSG_AUTH_RES, m.hdr.peerid, -1, &res,
		    sizeof(res));
		if (ipc_flush_all(&ch) == -1)
			_exit(0);
	}
}

struct auth_pool *
auth_pool_new(size_t n, void (*setup)(void *), void *arg)
{
	struct auth_pool *p = xcalloc(1, sizeof(*p));
	size_t i, k;
	int sv[2];
	pid_t pid;

	for (i = 0; i < n && i < AUTH_POOL_MAX; i++) {
		ipc_socketpair(sv);
		if ((pid = fork()) == -1)
			fatal("fork verifier");
		if (pid == 0) {
			(void)close(sv[0]);
			/* Holding a sibling's channel would keep it from
			 * seeing EOF when the auth process goes. */
			for (k = 0; k < i; k++)
				(void)close(p->v[k].ch.fd);
			if (setup != NULL)
				setup(arg);
			/* What set-up and the sandbox left on the heap is
			 * copied memory now: give it back. */
			(void)malloc_trim(0);
			auth_verifier_run(sv[1]);
		}
		(void)close(sv[1]);
		ipc_init(&p->v[i].ch, sv[0]);
		p->v[i].pid = pid;
		p->v[i].alive = true;
		p->n++;
	}
	return p;
}

void
auth_pool_free(struct auth_pool *p)
{
	size_t i;

	if (p == NULL)
		return;
	for (i = 0; i < p->n; i++) {
		if (p->v[i].alive)
			ipc_close(&p->v[i].ch);
		while (waitpid(p->v[i].pid, NULL, 0) == -1 && errno == EINTR)
			;
	}
	free(p);
}

size_t
auth_pool_alive(const struct auth_pool *p)
{
	size_t i, n = 0;

	for (i = 0; i < p->n; i++)
		n += p->v[i].alive;
	return n;
}

size_t
auth_pool_idle(const struct auth_pool *p)
{
	size_t i, n = 0;

	for (i = 0; i < p->n; i++)
		n += p->v[i].alive && !p->v[i].busy;
	return n;
}

pid_t
auth_pool_pid(const struct auth_pool *p, size_t i)
{
	return i < p->n ? p->v[i].pid : -1;
}

/* It cannot be restarted in the sandbox (no fork): carry on without it. */
static void
pool_drop(struct auth_verifier *v, const char *why, auth_pool_done_fn *done,
    void *arg)
{
	log_warnx("event=verifier-lost pid=%ld reason=%s", (long)v->pid, why);
	ipc_close(&v->ch);
	v->alive = false;
	if (v->busy && done != NULL) {
		v->busy = false;
		done(arg, v->job, AUTH_TEMPFAIL);
	}
	v->busy = false;
}

int
auth_pool_submit(struct auth_pool *p, uint32_t id, const char *setting,
    const char *password)
{
	struct auth_verify_job job;
	struct auth_verifier *v;
	size_t i;

	for (i = 0; i < p->n; i++) {
		v = &p->v[i];
		if (!v->alive || v->busy)
			continue;
		memset(&job, 0, sizeof(job));
		strlcpy_msa(job.setting, setting, sizeof(job.setting));
		strlcpy_msa(job.password, password, sizeof(job.password));
		ipc_compose(&v->ch, IMSG_AUTH_REQ, id, -1, &job, sizeof(job));
		explicit_bzero(&job, sizeof(job));
		/* An idle verifier's socket is empty: this does not block. */
		if (ipc_flush_all(&v->ch) == -1) {
			pool_drop(v, "gone", NULL, NULL);
			continue;
		}
		v->busy = true;
		v->job = id;
		return 0;
	}
	return -1;
}

size_t
auth_pool_pollfds(const struct auth_pool *p, struct pollfd *pfd)
{
	size_t i;

	for (i = 0; i < p->n; i++) {
		pfd[i].fd = p->v[i].alive ? p->v[i].ch.fd : -1;
		pfd[i].events = POLLIN;
		pfd[i].revents = 0;
	}
	return p->n;
}

/* One answer from v: 0 taken, -1 v was dropped. */
static int
pool_answer(struct auth_verifier *v, const struct ipc_msg *m,
    auth_pool_done_fn *done, void *arg)
{
	struct auth_verify_res res;

	if (m->hdr.type != IMSG_AUTH_RES || m->hdr.len != sizeof(res) ||
	    m->fd != -1 || !v->busy || m->hdr.peerid != v->job) {
		if (m->fd != -1)
			(void)close(m->fd);
		pool_drop(v, "unexpected-answer", done, arg);
		return -1;
	}
	memcpy(&res, m->data, sizeof(res));
	if (res.status != AUTH_OK && res.status != AUTH_FAIL &&
	    res.status != AUTH_TEMPFAIL) {
		pool_drop(v, "bad-status", done, arg);
		return -1;
	}
	v->busy = false;
	done(arg, m->hdr.peerid, (enum auth_status)res.status);
	return 0;
}

void
auth_pool_input(struct auth_pool *p, const struct pollfd *pfd,
    auth_pool_done_fn *done, void *arg)
{
	struct auth_verifier *v;
	struct ipc_msg m;
	size_t i;
	int r;

	for (i = 0; i < p->n; i++) {
		v = &p->v[i];
		if (!v->alive || pfd[i].revents == 0)
			continue;
		if (pfd[i].revents & POLLNVAL)
			fatalx("poll: verifier channel %zu is not open", i);
		while ((r = ipc_recv(&v->ch, &m)) == 1)
			if (pool_answer(v, &m, done, arg) == -1)
				break;
		if (r == -1)
			pool_drop(v, "exited", done, arg);
		else if (r == -2)
			pool_drop(v, "malformed-frame", done, arg);
	}
}

/* ------------------------------------------------------------------ */
/* Verification cache                                                  */

/*
 * The trade-off of auth.cache: a bcrypt check costs 60-250 ms of CPU on
 * purpose, so that a stolen hash is slow to crack; a cache entry is a
 * SHA-256 HMAC, cheap to test guesses against.  What it costs:
 *  - for the cache's lifetime, anyone who can read this process's memory
 *    (root, a core dump, code execution in auth) can test guesses for
 *    the cached passwords at HMAC speed, if they take the key as well.
 *    The key is random per start and per reset, never written anywhere,
 *    and the process is not dumpable; such an attacker would see
 *    passwords arrive in clear anyway.
 *  - online guessing gains nothing: only successes are cached, every
 *    miss goes to bcrypt and counts toward auth.max_failures, and a hit
 *    needs the right password.
 *  - a password changed in the file still works from the cache until
 *    the file is reloaded (SIGHUP), which clears the cache.
 * What it buys: a client that logs in for every message (most do) pays
 * bcrypt once per duration instead of once per message.
 */
#define CACHE_KEY_LEN 32
#define CACHE_MAC_LEN 32

struct cache_entry {
	unsigned char mac[CACHE_MAC_LEN];
	int64_t expires; /* 0: free */
};

struct auth_cache {
	EVP_MAC *hmac;
	EVP_MAC_CTX *keyed; /* HMAC-SHA256 with the key set: copied per use */
	struct cache_entry *v;
	size_t max;
};

int64_t
auth_now_ms(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1)
		fatal("clock_gettime");
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* A fresh random key into c->keyed: 0, or -1 (the key is unchanged). */
static int
cache_rekey(struct auth_cache *c)
{
	unsigned char key[CACHE_KEY_LEN];
	OSSL_PARAM params[2];
	int ok;

	params[0] = OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST,
	    (char *)"SHA256", 0);
	params[1] = OSSL_PARAM_construct_end();
	ok = RAND_bytes(key, sizeof(key)) == 1 &&
	    EVP_MAC_init(c->keyed, key, sizeof(key), params) == 1;
	explicit_bzero(key, sizeof(key));
	return ok ? 0 : -1;
}

/* HMAC(key, login || 0x00 || password): 0, or -1 if OpenSSL failed. */
static int
cache_mac(const struct auth_cache *c, const char *login,
    const char *password, unsigned char mac[CACHE_MAC_LEN])
{
	EVP_MAC_CTX *ctx;
	size_t len = 0;
	int ok;

	if ((ctx = EVP_MAC_CTX_dup(c->keyed)) == NULL)
		return -1;
	ok = EVP_MAC_update(ctx, (const unsigned char *)login,
		 strlen(login) + 1) == 1 &&
	    EVP_MAC_update(ctx, (const unsigned char *)password,
		strlen(password)) == 1 &&
	    EVP_MAC_final(ctx, mac, &len, CACHE_MAC_LEN) == 1 &&
	    len == CACHE_MAC_LEN;
	EVP_MAC_CTX_free(ctx);
	return ok ? 0 : -1;
}

struct auth_cache *
auth_cache_new(size_t max)
{
	struct auth_cache *c = xcalloc(1, sizeof(*c));
	unsigned char mac[CACHE_MAC_LEN];

	c->max = max > 0 ? max : 1;
	c->v = xcalloc(c->max, sizeof(*c->v));
	/* The first use fetches the algorithms: do it before any chroot. */
	if ((c->hmac = EVP_MAC_fetch(NULL, "HMAC", NULL)) == NULL ||
	    (c->keyed = EVP_MAC_CTX_new(c->hmac)) == NULL ||
	    cache_rekey(c) == -1 || cache_mac(c, "", "", mac) == -1) {
		log_warnx("event=cache-error reason=\"OpenSSL cannot make "
			  "an HMAC-SHA256 key\"");
		auth_cache_free(c);
		return NULL;
	}
	return c;
}

void
auth_cache_free(struct auth_cache *c)
{
	if (c == NULL)
		return;
	EVP_MAC_CTX_free(c->keyed);
	EVP_MAC_free(c->hmac);
	explicit_bzero(c->v, c->max * sizeof(*c->v));
	free(c->v);
	free(c);
}

bool
auth_cache_check(const struct auth_cache *c, const char *login,
    const char *password, int64_t now)
{
	unsigned char mac[CACHE_MAC_LEN];
	bool hit = false;
	size_t i;

	if (c == NULL || cache_mac(c, login, password, mac) == -1)
		return false;
	/* Every live entry is compared: no early exit to time. */
	for (i = 0; i < c->max; i++)
		if (c->v[i].expires > now)
			hit |= CRYPTO_memcmp(c->v[i].mac, mac, sizeof(mac)) ==
			    0;
	explicit_bzero(mac, sizeof(mac));
	return hit;
}

void
auth_cache_add(struct auth_cache *c, const char *login, const char *password,
    int64_t now, int64_t ttl)
{
	unsigned char mac[CACHE_MAC_LEN];
	size_t i, slot = 0;

	if (c == NULL || ttl <= 0 || cache_mac(c, login, password, mac) == -1)
		return;
	/* The same pair again, else an expired slot, else the oldest. */
	for (i = 0; i < c->max; i++) {
		if (CRYPTO_memcmp(c->v[i].mac, mac, sizeof(mac)) == 0 &&
		    c->v[i].expires != 0) {
			slot = i;
			break;
		}
		if (c->v[i].expires < c->v[slot].expires)
			slot = i; /* free slots are 0, expired ones <= now */
	}
	memcpy(c->v[slot].mac, mac, sizeof(mac));
	c->v[slot].expires = now + ttl;
	explicit_bzero(mac, sizeof(mac));
}

void
auth_cache_reset(struct auth_cache *c)
{
	if (c == NULL)
		return;
	explicit_bzero(c->v, c->max * sizeof(*c->v));
	if (cache_rekey(c) == -1)
		log_warnx("event=cache-error reason=\"cannot change the "
			  "key; keeping the old one\"");
}

size_t
auth_cache_count(const struct auth_cache *c, int64_t now)
{
	size_t i, n = 0;

	for (i = 0; c != NULL && i < c->max; i++)
		n += c->v[i].expires > now;
	return n;
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

/*
 * An AUTH request from the moment it is read until it is answered.
 * WAITING: its client's failure budget is taken by attempts in progress
 * (or not yet checked).  ADMITTED: it counts toward that budget and
 * waits for a verifier.  RUNNING: a verifier has it.  DONE: answered.
 */
enum auth_req_state { REQ_WAITING, REQ_ADMITTED, REQ_RUNNING, REQ_DONE };

struct auth_req {
	enum auth_req_state state;
	uint32_t peerid; /* the session, for the reply */
	uint32_t job; /* its verification's number while RUNNING */
	unsigned gen; /* ap->gen when setting was chosen */
	bool known; /* setting is the user's own hash */
	char setting[AUTH_HASH_LEN + 1];
	struct ipc_auth_req req;
};

struct auth_proc {
	struct config *cfg;
	const char *root; /* chroot of the process and its verifiers */
	int parent_fd, listener_fd; /* for the verifiers to close */
	struct ipc_chan parent, listener;
	struct auth_pool *pool;
	struct auth_req **pend; /* in arrival order */
	size_t npend;
	uint32_t lastjob;
	unsigned gen; /* bumped whenever the password table changes */
	struct auth_cache *cache; /* NULL: auth.cache off */
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
 * Everything the verification cache has learnt depends on the password
 * file and the sender rules: when either is reloaded, drop it.  A check
 * that was running when the table changed is decided (and cached) by the
 * new table (auth_on_verified).
 */
static void
auth_cache_clear(struct auth_proc *ap)
{
	if (ap->cache == NULL)
		return;
	auth_cache_reset(ap->cache);
	log_debug("event=cache-cleared");
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
	ap->gen++;
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

	/* SIGHUP flushes the cache even if the new file is refused. */
	auth_cache_clear(ap);
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
auth_log_result(const struct ipc_auth_req *req, enum auth_status status,
    const char *how)
{
	char login[MAX_LOGIN], client[CLIENT_ADDR_LEN];

	log_info("event=auth login=%s client=%s result=%s%s",
	    log_sanitize(login, sizeof(login), req->user),
	    log_sanitize(client, sizeof(client), req->client),
	    auth_status_name(status), how);
}

static void
auth_req_finish(struct auth_proc *ap, struct auth_req *r,
    enum auth_status status, const char *how)
{
	auth_log_result(&r->req, status, how);
	explicit_bzero(r->req.password, sizeof(r->req.password));
	auth_reply_auth(ap, r->peerid, status, r->req.user);
	r->state = REQ_DONE;
}

/* Requests of client that count toward its failure budget. */
static unsigned
auth_in_progress(const struct auth_proc *ap, const char *client)
{
	unsigned n = 0;
	size_t i;

	for (i = 0; i < ap->npend; i++)
		if ((ap->pend[i]->state == REQ_ADMITTED ||
			ap->pend[i]->state == REQ_RUNNING) &&
		    strcmp(ap->pend[i]->req.client, client) == 0)
			n++;
	return n;
}

/*
 * A request may be checked (by the cache or a verifier) only while its
 * client's failures plus its checks in progress stay under
 * max_failures: a burst of parallel guesses from one address gets no
 * more answers than a sequence would.  Checks in progress always end, so
 * a waiting request is either admitted or throttled later.
 */
static bool
auth_req_admit(struct auth_proc *ap, struct auth_req *r, time_t now)
{
	unsigned max = ap->cfg->auth_max_failures;
	const char *client = r->req.client;
	bool hit;

	if (auth_throttled(ap->fails, max, client, now)) {
		auth_req_finish(ap, r, AUTH_THROTTLED, "");
		return false;
	}
	if (max != 0 && auth_window_count(ap->fails, client, now) +
		    auth_in_progress(ap, client) >= max)
		return false;
	r->known = auth_setting(ap->users, ap->dummy, r->req.user,
		       r->setting) == 1;
	r->gen = ap->gen;
	r->state = REQ_ADMITTED;
	/* Only successes are cached, so a hit needs the right password;
	 * every request is looked up, unknown users too (equal timing). */
	hit = auth_cache_check(ap->cache, r->req.user, r->req.password,
	    auth_now_ms());
	if (hit && r->known && r->req.password[0] != '\0') {
		auth_req_finish(ap, r, AUTH_OK, " cache=hit");
		return false;
	}
	return true;
}

static void
auth_req_step(struct auth_proc *ap, struct auth_req *r, time_t now)
{
	if (r->state == REQ_WAITING && !auth_req_admit(ap, r, now))
		return;
	if (r->state != REQ_ADMITTED || auth_pool_idle(ap->pool) == 0)
		return;
	if (++ap->lastjob == 0)
		ap->lastjob = 1;
	if (auth_pool_submit(ap->pool, ap->lastjob, r->setting,
		r->req.password) == 0) {
		r->job = ap->lastjob;
		r->state = REQ_RUNNING;
	}
}

/* Move every request as far as it can go, then drop the answered ones. */
static void
auth_requests_run(struct auth_proc *ap)
{
	time_t now = monotime();
	size_t i, k = 0;

	for (i = 0; i < ap->npend; i++)
		auth_req_step(ap, ap->pend[i], now);
	for (i = 0; i < ap->npend; i++) {
		if (ap->pend[i]->state != REQ_DONE) {
			ap->pend[k++] = ap->pend[i];
			continue;
		}
		explicit_bzero(ap->pend[i], sizeof(*ap->pend[i]));
		free(ap->pend[i]);
	}
	ap->npend = k;
}

/* A verifier's answer for job id (auth_pool_done_fn). */
static void
auth_on_verified(void *arg, uint32_t id, enum auth_status status)
{
	struct auth_proc *ap = arg;
	char setting[AUTH_HASH_LEN + 1];
	struct auth_req *r = NULL;
	size_t i;

	for (i = 0; i < ap->npend && r == NULL; i++)
		if (ap->pend[i]->state == REQ_RUNNING &&
		    ap->pend[i]->job == id)
			r = ap->pend[i];
	if (r == NULL) {
		log_warnx("event=verifier-error reason=\"answer for unknown "
			  "job %u\"",
		    id);
		return;
	}
	/* The password file was reloaded meanwhile: check against the
	 * table in force if the user's hash is no longer the same. */
	if (r->gen != ap->gen) {
		r->known = auth_setting(ap->users, ap->dummy, r->req.user,
			       setting) == 1;
		r->gen = ap->gen;
		if (strcmp(setting, r->setting) != 0) {
			memcpy(r->setting, setting, sizeof(setting));
			r->state = REQ_ADMITTED;
			return;
		}
	}
	if (status == AUTH_OK && (!r->known || r->req.password[0] == '\0'))
		status = AUTH_FAIL;
	if (status == AUTH_OK)
		auth_cache_add(ap->cache, r->req.user, r->req.password,
		    auth_now_ms(), (int64_t)ap->cfg->auth_cache * 1000);
	else if (status == AUTH_FAIL)
		auth_window_add(ap->fails, r->req.client, monotime());
	auth_req_finish(ap, r, status, ap->cache != NULL ? " cache=miss" : "");
}

/*
 * A request is queued, never verified here: the verifiers answer in any
 * order and the reply carries the session's peerid.
 */
static void
auth_on_auth_req(struct auth_proc *ap, struct ipc_msg *m)
{
	struct auth_req *r;

	if (m->hdr.len != sizeof(r->req) || m->fd != -1) {
		log_warnx("event=auth result=tempfail reason=\"malformed "
			  "request of %u bytes\"",
		    m->hdr.len);
		explicit_bzero(m->data, m->hdr.len);
		auth_reply_auth(ap, m->hdr.peerid, AUTH_TEMPFAIL, NULL);
		return;
	}
	r = xcalloc(1, sizeof(*r));
	r->state = REQ_WAITING;
	r->peerid = m->hdr.peerid;
	memcpy(&r->req, m->data, sizeof(r->req));
	explicit_bzero(m->data, m->hdr.len);
	if (!IPC_STR_OK(r->req.user) || !IPC_STR_OK(r->req.password) ||
	    !IPC_STR_OK(r->req.client)) {
		log_warnx("event=auth result=tempfail reason=\"unterminated "
			  "field in request\"");
		r->req.user[0] = '\0';
		auth_reply_auth(ap, r->peerid, AUTH_TEMPFAIL, NULL);
	} else if (ap->npend >= AUTH_MAX_PENDING) {
		auth_log_result(&r->req, AUTH_TEMPFAIL, " reason=busy");
		auth_reply_auth(ap, r->peerid, AUTH_TEMPFAIL, NULL);
	} else {
		ap->pend[ap->npend++] = r;
		return;
	}
	explicit_bzero(r, sizeof(*r));
	free(r);
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
 * Requests are only queued here, so a turn can read many; a bounded
 * number keeps the parent's frames (a reload) from waiting behind a
 * flood.  The listener is not trusted: bad frames are logged and dropped.
 */
#define AUTH_FRAMES_PER_TURN 64

static void
auth_listener_input(struct auth_proc *ap)
{
	struct ipc_msg m;
	int i, r;

	for (i = 0; i < AUTH_FRAMES_PER_TURN; i++) {
		if ((r = ipc_recv(&ap->listener, &m)) == 0)
			return;
		if (r == -1)
			auth_exit("listener-gone");
		if (r == -2) {
			log_warnx("event=ipc-error peer=listener "
				  "reason=malformed");
			continue;
		}
		if (!auth_dispatch(ap, auth_listener_handlers,
			sizeof(auth_listener_handlers) /
			    sizeof(auth_listener_handlers[0]),
			&m))
			log_warnx("event=ipc-error peer=listener "
				  "reason=\"unexpected frame %u\"",
			    m.hdr.type);
		if (m.fd != -1)
			(void)close(m.fd);
	}
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
	struct pollfd pfd[2 + AUTH_POOL_MAX];
	size_t i, n;

	for (;;) {
		pfd[0].fd = ap->parent.fd;
		pfd[1].fd = ap->listener.fd;
		pfd[0].events = POLLIN;
		pfd[1].events = POLLIN;
		if (ipc_write_pending(&ap->parent))
			pfd[0].events |= POLLOUT;
		if (ipc_write_pending(&ap->listener))
			pfd[1].events |= POLLOUT;
		n = 2 + auth_pool_pollfds(ap->pool, pfd + 2);
		if (poll(pfd, n, -1) == -1) {
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
		auth_pool_input(ap->pool, pfd + 2, auth_on_verified, ap);
		if (auth_pool_alive(ap->pool) == 0)
			fatalx("event=exit reason=\"every verifier is gone\"");
		if (pfd[1].revents != 0)
			auth_listener_input(ap);
		auth_requests_run(ap);
		auth_flush(ap);
	}
}

/* In a new verifier: keep nothing of the auth process, then confine. */
static void
auth_verifier_setup(void *arg)
{
	struct auth_proc *ap = arg;

	(void)close(ap->parent_fd);
	(void)close(ap->listener_fd);
	if (ap->root != NULL)
		proc_confine(ap->cfg, ROLE_AUTH, ap->root);
	log_setproc("auth-verifier");
}

void
auth_serve(struct config *cfg, int parent_fd, int listener_fd,
    const char *root)
{
	static struct auth_proc ap;

	ap.cfg = cfg;
	ap.root = root;
	ap.parent_fd = parent_fd;
	ap.listener_fd = listener_fd;
	/* First, so that no verifier ever holds a hash or the cache key. */
	ap.pool = auth_pool_new(auth_pool_size(), auth_verifier_setup, &ap);
	ap.pend = xcalloc(AUTH_MAX_PENDING, sizeof(*ap.pend));
	/* Everything that needs a file or entropy happens before the chroot. */
	auth_load_users_at_start(&ap);
	auth_senders_set(&ap, cfg->senders, cfg->nsenders);
	ap.fails = auth_window_new(AUTH_FAIL_WINDOW, AUTH_MAX_CLIENTS);
	ap.sent = auth_window_new(AUTH_RATE_WINDOW, AUTH_MAX_USERS);
	if (cfg->auth_cache > 0 &&
	    (ap.cache = auth_cache_new(AUTH_CACHE_MAX)) == NULL)
		log_warnx("event=cache-off reason=\"no HMAC in OpenSSL\"");
	tzset();
	ipc_init(&ap.parent, parent_fd);
	ipc_init(&ap.listener, listener_fd);
	if (root != NULL)
		proc_confine(cfg, ROLE_AUTH, root);
	/* bcrypt at cost 12 takes a while: do it confined, not as root. */
	auth_make_dummy(&ap);
	/* Building the seccomp filter left garbage all over the heap. */
	(void)malloc_trim(0);
	log_info("event=auth-ready verifiers=%zu cache=%llds",
	    auth_pool_alive(ap.pool),
	    ap.cache != NULL ? (long long)cfg->auth_cache : 0LL);
	auth_loop(&ap);
}

void
auth_main(struct config *cfg, int parent_fd, int listener_fd)
{
	char empty[MAX_PATHLEN];

	if (bsnprintf(empty, sizeof(empty), "%s/%s", cfg->spool,
		SPOOL_EMPTY) == -1)
		fatalx("spool path too long: %s", cfg->spool);
	auth_serve(cfg, parent_fd, listener_fd, empty);
}

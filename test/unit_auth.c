/*
 * unit_auth.c - the password file, bcrypt verification, throttling, the
 * message rate window and `msa passwd`, as an administrator and a mail
 * client see them.  bcrypt runs at cost 4 here to keep the suite fast
 * (cost 12 where a check must be seen to take time).  The verifier pool
 * and a whole auth process (unconfined, driven over its channels as the
 * parent and the listener would) run forked from this test.
 */
#include <sys/stat.h>
#include <sys/wait.h>

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "msa.h"
#include "test/tap.h"

/* Made with `htpasswd -nbB -C 4 user secret` (apache2-utils). */
#define HTPASSWD_2Y "$2y$04$pGNChiEQGGMA.qkAp2lsyuRfwXiYvH0ScfZyMV7MRu5OBvJn6JcQK"
/* Made with libxcrypt crypt_gensalt_rn("$2a$"/"$2b$", 4), password "secret". */
#define HASH_2A "$2a$04$l3RwmqdrGDLsaEt4aqqst.zYrSuBO8Cl7ilPRpYS76K1zYqiH40cu"
#define HASH_2B "$2b$04$GgodJM3f1YWPNMWtb5VS8OEV7pmKqAC/uDPM3KPs0yzmnR5rnuOs."

struct problems {
	int n;
	char first[512];
};

static void
collect(void *arg, unsigned line, unsigned col, const char *msg)
{
	struct problems *p = arg;

	if (p->n++ == 0)
		(void)snprintf(p->first, sizeof(p->first), "%u:%u: %s", line,
		    col, msg);
}

/* Parse s; return the first problem ("" if none), count in *n. */
static const char *
first_problem(const char *s, int *n)
{
	static struct problems p;

	memset(&p, 0, sizeof(p));
	*n = auth_users_parse(s, strlen(s), NULL, collect, &p);
	return p.first;
}

static void
check_error(const char *file, const char *want, const char *what)
{
	int n;

	is_str(first_problem(file, &n), want, "%s", what);
	if (n != 1)
		printf("#   %d problems reported, expected 1\n", n);
}

static void
test_good_file(void)
{
	const char *file = "# msa users\r\n"
			   "\n"
			   "   \t\n"
			   "  # indented comment\n"
			   "alice:" HASH_2B "\r\n"
			   "bob@example.org:" HASH_2A "\n"
			   "user:" HTPASSWD_2Y; /* no final newline */
	struct auth_users *u = NULL;
	int n;

	n = auth_users_parse(file, strlen(file), &u, NULL, NULL);
	is_int(n, 0, "comments, blank lines, CRLF and a missing final "
		     "newline are accepted");
	is_int(auth_users_count(u), 3, "the file defines three users");
	is_str(auth_users_hash(u, "alice"), HASH_2B,
	    "alice's hash is kept without the CR");
	is_str(auth_users_hash(u, "user"), HTPASSWD_2Y,
	    "the last line without a newline is read whole");
	ok(auth_users_hash(u, "Alice") == NULL, "user names are case-sensitive");
	auth_users_free(u);
}

static void
test_file_errors(void)
{
	char longname[MAX_LOGIN + 80], bad[128];
	int n;

	check_error("alice\n", "1:6: missing ':' between user name and hash",
	    "a line without ':' is reported where the ':' should be");
	check_error(":" HASH_2B "\n", "1:1: empty user name",
	    "an empty user name is reported");
	check_error("# ok\nal ice:" HASH_2B "\n",
	    "2:3: whitespace in user name",
	    "a space in a user name is reported at its column");
	check_error("al\x01ice:" HASH_2B "\n",
	    "1:3: control character in user name",
	    "a control character in a user name is reported");
	check_error("bo\rb:" HASH_2B "\n", "1:3: control character in user name",
	    "a lone CR inside a line is not taken for a line end");

	memset(longname, 'a', MAX_LOGIN);
	(void)snprintf(longname + MAX_LOGIN, sizeof(longname) - MAX_LOGIN,
	    ":%s\n", HASH_2B);
	check_error(longname, "1:1: user name longer than 255 bytes",
	    "a 256-byte user name is refused");
	is_str(first_problem(longname + 1, &n), "",
	    "a 255-byte user name is accepted");

	check_error("bob:\n", "1:5: missing password hash after ':'",
	    "a missing hash is reported after the ':'");
	check_error("bob:$1$abcdefgh$0123456789abcdef\n",
	    "1:5: not a bcrypt hash (expected $2a$, $2b$ or $2y$)",
	    "an MD5-crypt hash is refused");
	check_error("bob:$2x$04$l3RwmqdrGDLsaEt4aqqst.zYrSuBO8Cl7ilPRpYS76K1zYqiH40cu\n",
	    "1:5: not a bcrypt hash (expected $2a$, $2b$ or $2y$)",
	    "the buggy $2x$ variant is refused");
	check_error("bob:$2b$03$GgodJM3f1YWPNMWtb5VS8OEV7pmKqAC/uDPM3KPs0yzmnR5rnuOs.\n",
	    "1:9: bcrypt cost must be two digits from 04 to 31",
	    "cost 03 is refused at the cost's column");
	check_error("bob:$2b$32$GgodJM3f1YWPNMWtb5VS8OEV7pmKqAC/uDPM3KPs0yzmnR5rnuOs.\n",
	    "1:9: bcrypt cost must be two digits from 04 to 31",
	    "cost 32 is refused");
	check_error("bob:$2b$12xGgodJM3f1YWPNMWtb5VS8OEV7pmKqAC/uDPM3KPs0yzmnR5rnuOs.\n",
	    "1:11: expected '$' after the bcrypt cost",
	    "a missing '$' after the cost is reported");

	(void)snprintf(bad, sizeof(bad), "bob:%s\n", HASH_2B);
	bad[4 + 10] = '!';
	check_error(bad, "1:15: invalid character in bcrypt hash",
	    "a character outside bcrypt's alphabet is reported at its column");
	(void)snprintf(bad, sizeof(bad), "bob:%.59s\n", HASH_2B);
	check_error(bad, "1:64: bcrypt hash too short (60 characters expected)",
	    "a truncated hash is reported");
	(void)snprintf(bad, sizeof(bad), "bob:%s x\n", HASH_2B);
	check_error(bad, "1:65: unexpected text after the bcrypt hash",
	    "text after the hash is reported");
	(void)snprintf(bad, sizeof(bad), "bob:%s\n", HASH_2B);
	bad[4 + 28] = 'z';
	check_error(bad,
	    "1:33: bcrypt salt is not canonical (its last character must be "
	    "one of . O e u)",
	    "a salt that could never verify is reported");

	check_error("alice:" HASH_2B "\n# x\nalice:" HASH_2A "\n",
	    "3:1: duplicate user \"alice\" (first on line 1)",
	    "a duplicate user is reported with the line of the first one");

	is_str(first_problem("ok:" HASH_2B "\nbad\n:x\nal ice:y\n", &n),
	    "2:4: missing ':' between user name and hash",
	    "with several problems the first one is kept");
	is_int(n, 3, "every broken line counts as a problem");
}

static void
test_file_limits(void)
{
	struct problems p;
	struct buf b;
	char path[] = "/tmp/unit_auth.XXXXXX", err[256];
	int fd, n, i;

	buf_init(&b);
	for (i = 0; i <= AUTH_MAX_USERS; i++)
		buf_printf(&b, "u%d:%s\n", i, HASH_2B);
	memset(&p, 0, sizeof(p));
	n = auth_users_parse(b.data, b.len, NULL, collect, &p);
	is_str(p.first, "10001:1: more than 10000 users",
	    "the 10001st user is refused");
	is_int(n, 1, "too many users is one problem, not one per extra line");

	buf_reset(&b);
	for (i = 0; i < 300; i++)
		buf_addstr(&b, "garbage\n");
	n = auth_users_parse(b.data, b.len, NULL, NULL, NULL);
	is_int(n, AUTH_MAX_PROBLEMS + 1,
	    "a file of garbage stops after %d problems", AUTH_MAX_PROBLEMS);

	if ((fd = mkstemp(path)) == -1) {
		ok(0, "mkstemp");
		return;
	}
	buf_reset(&b);
	buf_printf(&b, "alice:%s\n", HASH_2B);
	(void)write_all(fd, b.data, b.len);
	is_int(auth_check_users_file(path, err, sizeof(err)), 0,
	    "msa -n accepts a valid password file");
	is_str(err, "", "and reports nothing for it");

	(void)lseek(fd, 0, SEEK_SET);
	buf_reset(&b);
	while (b.len <= AUTH_MAX_FILE)
		buf_addstr(&b, "# padding padding padding padding padding\n");
	(void)write_all(fd, b.data, b.len);
	(void)close(fd);
	is_int(auth_check_users_file(path, err, sizeof(err)), 1,
	    "a file over 1 MiB is one problem");
	is_str(err, "0:0: larger than 1 MiB; not a password file?",
	    "and it is reported for the whole file");
	(void)unlink(path);

	is_int(auth_check_users_file("/nonexistent/msa/passwd", err,
		   sizeof(err)),
	    1, "a missing password file is a problem");
	is_str(err, "0:0: cannot open: No such file or directory",
	    "and it says why it cannot be read");
	buf_free(&b);
}

static void
test_read_fd(void)
{
	const char *file = "alice:" HASH_2B "\nbob:" HASH_2A "\n";
	struct auth_users *u = NULL;
	int p[2];

	if (pipe(p) == -1) {
		ok(0, "pipe");
		return;
	}
	(void)write_all(p[1], file, strlen(file));
	(void)close(p[1]);
	is_int(auth_users_read_fd(p[0], &u, NULL, NULL), 0,
	    "a password file passed as a descriptor (SIGHUP reload) parses");
	is_int(auth_users_count(u), 2, "and holds both users");
	(void)close(p[0]);
	auth_users_free(u);
}

static struct auth_users *
table(const char *file)
{
	struct auth_users *u = NULL;

	if (auth_users_parse(file, strlen(file), &u, NULL, NULL) != 0)
		return NULL;
	return u;
}

static double
seconds(void)
{
	struct timespec ts;

	(void)clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Best of three: the time one verification takes. */
static double
time_verify(const struct auth_users *u, const char *dummy, const char *user)
{
	double best = 1e9, t;
	int i;

	for (i = 0; i < 3; i++) {
		t = seconds();
		(void)auth_verify(u, dummy, user, "not the password");
		t = seconds() - t;
		if (t < best)
			best = t;
	}
	return best;
}

static void
test_verify(void)
{
	struct auth_users *u;
	char dummy[AUTH_HASH_LEN + 1], hash8[AUTH_HASH_LEN + 1], file[256];
	double known, unknown;

	u = table("user:" HTPASSWD_2Y "\nalice:" HASH_2A "\nbob:" HASH_2B "\n");
	ok(u != NULL, "a table with $2y$, $2a$ and $2b$ hashes loads");
	ok(auth_hash_password("random dummy", 4, dummy, sizeof(dummy)) == 0,
	    "a dummy hash can be made");
	is_int(auth_verify(u, dummy, "user", "secret"), AUTH_OK,
	    "an htpasswd -B ($2y$) hash verifies without conversion");
	is_int(auth_verify(u, dummy, "user", "Secret"), AUTH_FAIL,
	    "a wrong password against a $2y$ hash fails");
	is_int(auth_verify(u, dummy, "alice", "secret"), AUTH_OK,
	    "a $2a$ hash verifies");
	is_int(auth_verify(u, dummy, "bob", "secret"), AUTH_OK,
	    "a $2b$ hash verifies");
	is_int(auth_verify(u, dummy, "bob", "secret "), AUTH_FAIL,
	    "a password with a trailing space fails");
	is_int(auth_verify(u, dummy, "mallory", "secret"), AUTH_FAIL,
	    "an unknown user gets the same answer as a wrong password");
	is_int(auth_verify(NULL, dummy, "bob", "secret"), AUTH_FAIL,
	    "with no password file loaded nobody logs in");
	is_int(auth_verify(u, "$2b$04$short", "mallory", "x"), AUTH_TEMPFAIL,
	    "a broken dummy hash is an internal error, never a success");
	is_int(auth_users_dummy_cost(u), 4,
	    "unknown users cost what the file's users cost (4)");
	auth_users_free(u);

	/* The dummy was made at cost 4; checking it must cost what bob costs. */
	if (auth_hash_password("secret", 8, hash8, sizeof(hash8)) == -1) {
		ok(0, "cost-8 hash");
		return;
	}
	(void)snprintf(file, sizeof(file), "bob:%s\n", hash8);
	u = table(file);
	known = time_verify(u, dummy, "bob");
	unknown = time_verify(u, dummy, "mallory");
	ok(unknown > known * 0.5 && unknown < known * 2.0,
	    "an unknown user takes as long as a wrong password (%.1f ms vs "
	    "%.1f ms)",
	    unknown * 1e3, known * 1e3);
	auth_users_free(u);

	u = table("a:" HASH_2B "\nb:" HASH_2A "\nc:$2b$05$GgodJM3f1YWPNMWtb5VS8OEV7pmKqAC/uDPM3KPs0yzmnR5rnuOs.\n");
	is_int(auth_users_dummy_cost(u), 4, "the dummy takes the most common cost");
	auth_users_free(u);
}

static void
test_rights(void)
{
	static const struct sender_rule rules[] = {
		{ "alice", "alice+*@example.org" },
		{ "bob", "bob@elsewhere.example" },
		{ "alice", "@family.example" },
		{ "alice", "alice@example.org" },
	};
	struct login_rights r;

	auth_login_rights(rules, 4, "example.org", "alice", &r);
	is_int(r.n, 3, "alice gets her address and her two patterns once each");
	is_str(r.patterns[0], "alice@example.org",
	    "the login's own address comes first");
	is_str(r.patterns[2], "@family.example",
	    "patterns follow in the order of the configuration");
	auth_login_rights(rules, 4, "example.org", "carol@other.example", &r);
	is_int(r.n, 1, "a login without senders: rules has one right");
	is_str(r.patterns[0], "carol@other.example",
	    "a login that is an address is its own address");
}

static void
test_throttle(void)
{
	struct auth_window *w = auth_window_new(AUTH_FAIL_WINDOW,
	    AUTH_MAX_CLIENTS);
	const time_t t0 = 100000;
	char key[32];
	int i;

	for (i = 0; i < 4; i++)
		auth_window_add(w, "192.0.2.1", t0 + i);
	ok(!auth_throttled(w, 5, "192.0.2.1", t0 + 10),
	    "four failures out of five allowed: the client may try again");
	auth_window_add(w, "192.0.2.1", t0 + 20);
	ok(auth_throttled(w, 5, "192.0.2.1", t0 + 21),
	    "after the fifth failure the client is throttled");
	ok(!auth_throttled(w, 5, "192.0.2.2", t0 + 21),
	    "another client address is not affected");
	ok(auth_throttled(w, 5, "192.0.2.1", t0 + 14 * 60),
	    "14 minutes later it is still throttled");
	ok(!auth_throttled(w, 5, "192.0.2.1", t0 + 15 * 60 + 30),
	    "15 minutes after the failures it has cooled down");
	ok(!auth_throttled(w, 0, "192.0.2.1", t0 + 21),
	    "max_failures 0 never throttles");
	auth_window_free(w);

	w = auth_window_new(AUTH_FAIL_WINDOW, AUTH_MAX_CLIENTS);
	auth_window_add(w, "2001:db8::1", t0);
	for (i = 0; i < AUTH_MAX_CLIENTS + 1000; i++) {
		(void)snprintf(key, sizeof(key), "10.0.%d.%d", i / 256, i % 256);
		auth_window_add(w, key, t0 + 1 + i / 100);
	}
	is_int(auth_window_keys(w), AUTH_MAX_CLIENTS,
	    "a flood of client addresses keeps the table at its bound");
	is_int(auth_window_count(w, "10.0.19.231", t0 + 60), 1,
	    "the newest client is still counted");
	is_int(auth_window_count(w, "2001:db8::1", t0 + 60), 0,
	    "the oldest client made room");
	auth_window_free(w);

	w = auth_window_new(AUTH_FAIL_WINDOW, 3);
	auth_window_add(w, "live", t0 + 200);
	auth_window_add(w, "expired", t0);
	auth_window_add(w, "recent", t0 + 1000);
	auth_window_add(w, "new", t0 + 1001);
	is_int(auth_window_count(w, "expired", t0 + 1001), 0,
	    "a full table makes room by dropping an expired client first");
	ok(auth_window_count(w, "live", t0 + 1001) == 1 &&
		auth_window_count(w, "recent", t0 + 1001) == 1 &&
		auth_window_count(w, "new", t0 + 1001) == 1,
	    "clients with failures in the window stay counted");
	auth_window_free(w);
}

static void
test_rate(void)
{
	struct auth_window *w = auth_window_new(AUTH_RATE_WINDOW,
	    AUTH_MAX_USERS);
	const time_t t0 = 50400; /* a whole minute */
	bool all = true;
	int i;

	for (i = 0; i < 3; i++)
		all = auth_rate_take(w, 3, "alice", t0 + i * 600) && all;
	ok(all, "three messages in an hour are allowed at 3 per hour");
	ok(!auth_rate_take(w, 3, "alice", t0 + 1800),
	    "the fourth within the hour is refused (450 4.7.1)");
	is_int(auth_window_count(w, "alice", t0 + 1800), 3,
	    "a refused message reserves nothing");
	ok(auth_rate_take(w, 3, "bob", t0 + 1800),
	    "another login has its own count");
	ok(!auth_rate_take(w, 3, "alice", t0 + 3599),
	    "still refused just before the first message is an hour old");
	ok(auth_rate_take(w, 3, "alice", t0 + 3600 + 60),
	    "allowed again once the first message left the window");
	ok(auth_rate_take(w, 0, "alice", t0 + 3600 + 61),
	    "messages_per_hour 0 never refuses");
	auth_window_free(w);
}

static void
test_setting(void)
{
	char setting[AUTH_HASH_LEN + 1], dummy[AUTH_HASH_LEN + 1];
	struct auth_users *u = table("bob:" HASH_2B "\n");

	memcpy(dummy, "$2b$12$", 7);
	memcpy(dummy + 7, &HASH_2B[7], AUTH_HASH_LEN - 7 + 1);
	is_int(auth_setting(u, dummy, "bob", setting), 1,
	    "a user in the file is checked against a hash of its own");
	is_str(setting, HASH_2B, "bob's own hash is the setting");
	is_int(auth_setting(u, dummy, "mallory", setting), 0,
	    "an unknown user is checked against the dummy hash");
	ok(strncmp(setting, "$2b$04$", 7) == 0,
	    "at the cost the file's users have (04), not the dummy's (12)");
	is_int(auth_setting(u, "$2b$04$short", "mallory", setting), -1,
	    "a broken dummy hash is refused");
	is_int(auth_check_hash(HASH_2B, "secret"), AUTH_OK,
	    "a verifier's check matches the right password");
	is_int(auth_check_hash(HASH_2B, "secreT"), AUTH_FAIL,
	    "and not a wrong one");
	is_int(auth_check_hash("$2b$04$short", "secret"), AUTH_TEMPFAIL,
	    "a setting that is not a whole hash is an internal error");
	auth_users_free(u);
}

static void
test_cache(void)
{
	const int64_t t0 = 5000000, ttl = 2000;
	struct auth_cache *c = auth_cache_new(AUTH_CACHE_MAX);
	char name[16];
	int i;

	if (!ok(c != NULL, "a cache with a random HMAC-SHA256 key is made"))
		return;
	ok(!auth_cache_check(c, "alice", "secret", t0),
	    "nothing is cached before a successful login");
	auth_cache_add(c, "alice", "secret", t0, ttl);
	ok(auth_cache_check(c, "alice", "secret", t0 + 1),
	    "the same login and password right after: a hit, no bcrypt");
	ok(!auth_cache_check(c, "alice", "Secret", t0 + 1),
	    "a wrong password for a cached login misses (goes to bcrypt)");
	ok(!auth_cache_check(c, "alice", "", t0 + 1),
	    "an empty password misses");
	ok(!auth_cache_check(c, "bob", "secret", t0 + 1),
	    "another login with the same password misses");
	auth_cache_add(c, "ab", "c", t0, ttl);
	ok(!auth_cache_check(c, "a", "bc", t0 + 1),
	    "login and password cannot be shifted into each other (the 0x00 "
	    "between them)");
	ok(auth_cache_check(c, "alice", "secret", t0 + ttl - 1),
	    "a hit up to the last millisecond of auth.cache");
	ok(!auth_cache_check(c, "alice", "secret", t0 + ttl),
	    "once auth.cache has passed the pair misses again");
	is_int(auth_cache_count(c, t0 + ttl), 0, "no entry is live then");

	i = (int)auth_cache_count(c, t0 + 20); /* alice and "ab" */
	auth_cache_add(c, "alice", "secret", t0, ttl);
	auth_cache_add(c, "alice", "secret", t0 + 10, ttl);
	is_int(auth_cache_count(c, t0 + 20), i,
	    "caching the same pair again keeps one entry for it");
	ok(auth_cache_check(c, "alice", "secret", t0 + 1500) &&
		!auth_cache_check(c, "alice", "secret", t0 + 10 + ttl),
	    "a hit does not extend the entry: it ends auth.cache after the "
	    "last bcrypt check");

	auth_cache_add(c, "alice", "secret", t0, ttl);
	auth_cache_reset(c);
	ok(!auth_cache_check(c, "alice", "secret", t0 + 1),
	    "after a reset (SIGHUP, new password file) the pair misses");
	is_int(auth_cache_count(c, t0 + 1), 0, "and the cache is empty");
	auth_cache_add(c, "alice", "secret", t0, ttl);
	ok(auth_cache_check(c, "alice", "secret", t0 + 1),
	    "a new success after the reset is cached under the new key");
	auth_cache_free(c);

	c = auth_cache_new(4);
	for (i = 0; i < 5; i++) {
		(void)snprintf(name, sizeof(name), "user%d", i);
		auth_cache_add(c, name, "pw", t0 + i, 60000);
	}
	is_int(auth_cache_count(c, t0 + 10), 4,
	    "the table keeps its bound (4 here)");
	ok(!auth_cache_check(c, "user0", "pw", t0 + 10),
	    "a new entry in a full table replaces the oldest");
	ok(auth_cache_check(c, "user1", "pw", t0 + 10) &&
		auth_cache_check(c, "user4", "pw", t0 + 10),
	    "the others stay");
	auth_cache_free(c);

	c = auth_cache_new(2);
	auth_cache_add(c, "short", "pw", t0, 100);
	auth_cache_add(c, "long", "pw", t0 + 1, 60000);
	auth_cache_add(c, "new", "pw", t0 + 200, 60000);
	ok(auth_cache_check(c, "long", "pw", t0 + 300) &&
		auth_cache_check(c, "new", "pw", t0 + 300),
	    "an expired entry makes room before a live one");
	auth_cache_free(c);

	ok(!auth_cache_check(NULL, "alice", "secret", t0),
	    "with auth.cache off (no cache) nothing ever hits");
	auth_cache_add(NULL, "alice", "secret", t0, ttl);
	auth_cache_reset(NULL);
}

/* ------------------------------------------------------------------ */
/* The verifier pool and the auth process                              */

struct job_result {
	int status;
	int calls;
	int seq; /* 1 for the first answer, 2 for the next... */
};

static struct job_result results[32];
static int answers;

static void
record(void *arg, uint32_t id, enum auth_status status)
{
	(void)arg;
	if (id < 32) {
		results[id].status = status;
		results[id].calls++;
		results[id].seq = ++answers;
	}
}

/* Job i of test_pool is job number 10 + i. */
static int
submit(struct auth_pool *p, size_t i, const char *setting,
    const char *password)
{
	return auth_pool_submit(p, (uint32_t)(10 + i), setting, password);
}

/* Wait for the pool's answers until want jobs are done or 20 s pass. */
static int
pool_collect(struct auth_pool *p, int want)
{
	struct pollfd pfd[AUTH_POOL_MAX];
	double end = seconds() + 20;
	int done, i;
	size_t n;

	for (;;) {
		for (done = 0, i = 0; i < 32; i++)
			done += results[i].calls;
		if (done >= want || seconds() > end)
			return done;
		n = auth_pool_pollfds(p, pfd);
		if (poll(pfd, n, 1000) > 0)
			auth_pool_input(p, pfd, record, NULL);
	}
}

static void
test_pool(void)
{
	char slow[AUTH_HASH_LEN + 1];
	const struct {
		const char *setting, *password;
		int want;
	} jobs[] = {
		{ slow, "slow", AUTH_OK }, /* cost 12: ends last */
		{ HASH_2B, "secret", AUTH_OK },
		{ HASH_2A, "wrong", AUTH_FAIL },
		{ HTPASSWD_2Y, "secret", AUTH_OK },
		{ HASH_2B, "secret!", AUTH_FAIL },
		{ "$2b$04$short", "secret", AUTH_TEMPFAIL },
		{ HASH_2A, "secret", AUTH_OK },
		{ HTPASSWD_2Y, "", AUTH_FAIL },
		{ HASH_2B, "Secret", AUTH_FAIL },
		{ HASH_2A, "secret", AUTH_OK },
	};
	const size_t njobs = sizeof(jobs) / sizeof(jobs[0]);
	struct pollfd pfd[AUTH_POOL_MAX];
	struct auth_pool *p;
	size_t i, n, next = 0;
	bool routed = true, once = true;
	int done = 0;
	double end;

	if (auth_hash_password("slow", 12, slow, sizeof(slow)) == -1) {
		ok(0, "a cost-12 hash");
		return;
	}
	n = auth_pool_size();
	ok(n >= AUTH_POOL_MIN && n <= AUTH_POOL_MAX,
	    "the pool is sized to the CPUs, between 2 and 8 (%zu here)", n);
	memset(results, 0, sizeof(results));
	answers = 0;
	p = auth_pool_new(4, NULL, NULL);
	is_int(auth_pool_alive(p), 4, "four verifier processes are started");
	while (next < njobs &&
	    submit(p, next, jobs[next].setting, jobs[next].password) == 0)
		next++;
	is_int(next, 4, "four jobs are taken at once");
	is_int(auth_pool_idle(p), 0, "and keep the four verifiers busy");
	is_int(auth_pool_submit(p, 99, HASH_2B, "secret"), -1,
	    "a fifth job waits: no verifier is idle");
	end = seconds() + 30;
	while (done < (int)njobs && seconds() < end) {
		n = auth_pool_pollfds(p, pfd);
		if (poll(pfd, n, 1000) > 0)
			auth_pool_input(p, pfd, record, NULL);
		while (next < njobs && submit(p, next, jobs[next].setting,
					   jobs[next].password) == 0)
			next++;
		for (done = 0, i = 0; i < 32; i++)
			done += results[i].calls;
	}
	is_int(done, (int)njobs, "all %zu verifications complete", njobs);
	for (i = 0; i < njobs; i++) {
		routed = routed && results[10 + i].status == jobs[i].want;
		once = once && results[10 + i].calls == 1;
		if (results[10 + i].status != jobs[i].want)
			printf("#   job %zu: got %d, want %d\n", 10 + i,
			    results[10 + i].status, jobs[i].want);
	}
	ok(routed, "each answer comes back under its own job number");
	ok(results[10].seq == (int)njobs,
	    "answers come as checks end: the slow first job is answered "
	    "last");
	ok(once, "and each job is answered exactly once");
	is_int(auth_pool_idle(p), 4, "the verifiers are idle again");

	/* A verifier that dies: its job fails temporarily, the rest go on. */
	memset(results, 0, sizeof(results));
	(void)auth_pool_submit(p, 1, slow, "slow");
	(void)usleep(20 * 1000);
	(void)kill(auth_pool_pid(p, 0), SIGKILL);
	is_int(pool_collect(p, 1), 1, "a job whose verifier died is answered");
	is_int(results[1].status, AUTH_TEMPFAIL, "with a temporary failure");
	is_int(auth_pool_alive(p), 3, "the pool goes on with three verifiers");
	ok(auth_pool_submit(p, 2, HASH_2B, "secret") == 0 &&
		pool_collect(p, 2) == 2 && results[2].status == AUTH_OK,
	    "and they still verify");
	auth_pool_free(p);
}

/* An auth process (unconfined) driven as the parent and the listener. */
struct auth_child {
	pid_t pid;
	struct ipc_chan parent, listener;
};

struct reply {
	int status;
	int count;
	char login[MAX_LOGIN];
};

static struct reply replies[64];

static void
auth_start(struct auth_child *ac, struct config *cfg)
{
	int ps[2], ls[2];

	ipc_socketpair(ps);
	ipc_socketpair(ls);
	(void)fflush(stdout);
	if ((ac->pid = fork()) == 0) {
		(void)close(ps[0]);
		(void)close(ls[0]);
		log_init(LOG_LVL_ERROR, false, "auth");
		auth_serve(cfg, ps[1], ls[1], NULL);
	}
	(void)close(ps[1]);
	(void)close(ls[1]);
	ipc_init(&ac->parent, ps[0]);
	ipc_init(&ac->listener, ls[0]);
}

/* Closing its channels ends the auth process and then its verifiers. */
static int
auth_stop(struct auth_child *ac)
{
	int status = -1;

	ipc_close(&ac->parent);
	ipc_close(&ac->listener);
	(void)waitpid(ac->pid, &status, 0);
	return status;
}

static void
auth_send(struct auth_child *ac, uint32_t peerid, const char *user,
    const char *password, const char *client)
{
	struct ipc_auth_req req;

	memset(&req, 0, sizeof(req));
	strlcpy_msa(req.user, user, sizeof(req.user));
	strlcpy_msa(req.password, password, sizeof(req.password));
	strlcpy_msa(req.client, client, sizeof(req.client));
	ipc_compose(&ac->listener, IMSG_AUTH_REQ, peerid, -1, &req,
	    sizeof(req));
	(void)ipc_flush_all(&ac->listener);
}

/* Read n AUTH replies into replies[peerid]; how many came in 20 s. */
static int
auth_collect(struct auth_child *ac, int n)
{
	struct ipc_auth_res res;
	struct ipc_msg m;
	int got = 0;

	while (got < n && ipc_wait(&ac->listener, &m, 20000) == 1) {
		if (m.hdr.type != IMSG_AUTH_RES || m.hdr.len < sizeof(res) ||
		    m.hdr.peerid >= 64)
			continue;
		memcpy(&res, m.data, sizeof(res));
		replies[m.hdr.peerid].status = res.status;
		replies[m.hdr.peerid].count++;
		strlcpy_msa(replies[m.hdr.peerid].login, res.login, MAX_LOGIN);
		got++;
	}
	return got;
}

/* Status of one request sent and answered alone. */
static int
auth_one(struct auth_child *ac, uint32_t peerid, const char *user,
    const char *password, const char *client)
{
	replies[peerid].status = -1;
	auth_send(ac, peerid, user, password, client);
	if (auth_collect(ac, 1) != 1)
		return -1;
	return replies[peerid].status;
}

static void
write_users(const char *path, const char *user, const char *hash)
{
	char line[MAX_LOGIN + AUTH_HASH_LEN + 8];
	int fd;

	(void)snprintf(line, sizeof(line), "%s:%s\n", user, hash);
	if ((fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600)) == -1 ||
	    write_all(fd, line, strlen(line)) == -1)
		printf("# cannot write %s\n", path);
	if (fd != -1)
		(void)close(fd);
}

/* What the parent does on SIGHUP: a fresh descriptor of the file. */
static void
auth_reload(struct auth_child *ac, const char *path)
{
	int fd = open(path, O_RDONLY);

	ipc_compose(&ac->parent, IMSG_RELOAD_USERS, 0, fd, NULL, 0);
	(void)ipc_flush_all(&ac->parent);
}

static void
test_cfg(struct config *cfg, const char *users, unsigned max_failures,
    time_t cache)
{
	config_defaults(cfg);
	strlcpy_msa(cfg->domain, "example.org", sizeof(cfg->domain));
	strlcpy_msa(cfg->auth_users, users, sizeof(cfg->auth_users));
	cfg->auth_max_failures = max_failures;
	cfg->auth_cache = cache;
}

static int
count_status(int from, int to, int status)
{
	int i, n = 0;

	for (i = from; i <= to; i++)
		n += replies[i].count == 1 && replies[i].status == status;
	return n;
}

static void
test_auth_process(void)
{
	static const struct {
		const char *user, *password;
		int want;
	} reqs[] = {
		{ "alice", "secret", AUTH_OK },
		{ "bob", "secret", AUTH_OK },
		{ "alice", "wrong", AUTH_FAIL },
		{ "mallory", "secret", AUTH_FAIL },
		{ "alice", "secret", AUTH_OK },
		{ "bob", "", AUTH_FAIL },
	};
	char path[] = "/tmp/unit_auth_users.XXXXXX", client[32];
	const char *file = "alice:" HASH_2B "\nbob:" HTPASSWD_2Y "\n";
	struct auth_child ac;
	struct config cfg;
	bool routed = true;
	int fd, i;

	if ((fd = mkstemp(path)) == -1 ||
	    write_all(fd, file, strlen(file)) == -1) {
		ok(0, "a temporary password file");
		return;
	}
	(void)close(fd);
	test_cfg(&cfg, path, 3, 0);
	auth_start(&ac, &cfg);

	memset(replies, 0, sizeof(replies));
	for (i = 0; i < 6; i++) {
		(void)snprintf(client, sizeof(client), "192.0.2.%d", i + 1);
		auth_send(&ac, (uint32_t)(11 + i), reqs[i].user,
		    reqs[i].password, client);
	}
	is_int(auth_collect(&ac, 6), 6,
	    "six AUTH requests sent at once are all answered");
	for (i = 0; i < 6; i++)
		routed = routed && replies[11 + i].count == 1 &&
		    replies[11 + i].status == reqs[i].want;
	ok(routed, "each reply carries its session's peerid, whatever order "
		   "the verifiers finish in");
	is_str(replies[12].login, "bob", "a success names its login");

	memset(replies, 0, sizeof(replies));
	for (i = 0; i < 8; i++)
		auth_send(&ac, (uint32_t)(21 + i), "alice", "guess",
		    "198.51.100.7");
	is_int(auth_collect(&ac, 8), 8,
	    "a burst of 8 parallel wrong passwords from one address is "
	    "answered");
	is_int(count_status(21, 28, AUTH_FAIL), 3,
	    "exactly max_failures (3) of them are checked and fail (535)");
	is_int(count_status(21, 28, AUTH_THROTTLED), 5,
	    "the other 5 are throttled (421) without a check");
	is_int(auth_one(&ac, 29, "alice", "secret", "198.51.100.7"),
	    AUTH_THROTTLED, "then even the right password is throttled");

	memset(replies, 0, sizeof(replies));
	for (i = 0; i < 6; i++)
		auth_send(&ac, (uint32_t)(31 + i), "alice", "secret",
		    "203.0.113.9");
	is_int(auth_collect(&ac, 6), 6,
	    "6 parallel logins from one address are answered");
	is_int(count_status(31, 36, AUTH_OK), 6,
	    "and all succeed: waiting for the budget is not a failure");

	ipc_compose(&ac.listener, IMSG_AUTH_REQ, 40, -1, "short", 5);
	(void)ipc_flush_all(&ac.listener);
	ok(auth_collect(&ac, 1) == 1 && replies[40].status == AUTH_TEMPFAIL,
	    "a malformed request gets a temporary failure, not silence");
	ok(auth_one(&ac, 41, "bob", "secret", "192.0.2.50") == AUTH_OK,
	    "and the process goes on");
	is_int(auth_stop(&ac), 0, "the auth process exits 0 when the "
				  "listener goes");
	(void)unlink(path);
}

static void
test_auth_process_cache(void)
{
	char path[] = "/tmp/unit_auth_users.XXXXXX";
	char h12[AUTH_HASH_LEN + 1], hnew[AUTH_HASH_LEN + 1];
	const char *ip = "192.0.2.77";
	struct auth_child ac;
	struct config cfg;
	double t1, t2;
	int fd;

	if ((fd = mkstemp(path)) == -1 ||
	    auth_hash_password("old-pw", 12, h12, sizeof(h12)) == -1 ||
	    auth_hash_password("new-pw", 4, hnew, sizeof(hnew)) == -1) {
		ok(0, "a temporary password file and its hashes");
		return;
	}
	(void)close(fd);
	write_users(path, "alice", h12);
	test_cfg(&cfg, path, 100, 60);
	auth_start(&ac, &cfg);
	/* Once started (its dummy hash made), a bcrypt-12 check is timed. */
	is_int(auth_one(&ac, 9, "nobody", "x", ip), AUTH_FAIL,
	    "the auth process is up");

	t1 = seconds();
	is_int(auth_one(&ac, 1, "alice", "old-pw", ip), AUTH_OK,
	    "with auth.cache on, the first login checks bcrypt and succeeds");
	t1 = seconds() - t1;
	t2 = seconds();
	is_int(auth_one(&ac, 2, "alice", "old-pw", ip), AUTH_OK,
	    "the second login succeeds");
	t2 = seconds() - t2;
	ok(t2 < t1 / 2, "from the cache: %.1f ms instead of bcrypt's %.1f ms",
	    t2 * 1e3, t1 * 1e3);
	is_int(auth_one(&ac, 3, "alice", "old-pW", ip), AUTH_FAIL,
	    "a wrong password for the cached login fails");

	write_users(path, "alice", hnew);
	auth_reload(&ac, path);
	is_int(auth_one(&ac, 4, "alice", "old-pw", ip), AUTH_FAIL,
	    "after a reload with a new hash the cached old password fails");
	is_int(auth_one(&ac, 5, "alice", "new-pw", ip), AUTH_OK,
	    "and the new one works");

	write_users(path, "alice", h12);
	auth_reload(&ac, path);
	auth_send(&ac, 6, "alice", "old-pw", ip);
	(void)usleep(60 * 1000); /* bcrypt-12 is running now */
	write_users(path, "alice", hnew);
	auth_reload(&ac, path);
	ok(auth_collect(&ac, 1) == 1 && replies[6].status == AUTH_FAIL,
	    "a check running while the file changes is decided by the new "
	    "file");
	is_int(auth_one(&ac, 7, "alice", "old-pw", ip), AUTH_FAIL,
	    "and its old password was not cached");
	is_int(auth_stop(&ac), 0, "the auth process exits 0");
	(void)unlink(path);
}

static int
read_pw(const char *input, size_t len, char *pw, size_t pwsize, char *err,
    size_t errlen)
{
	FILE *f = fmemopen((void *)(uintptr_t)input, len, "r");
	int r;

	if (f == NULL)
		return -2;
	err[0] = '\0';
	r = auth_read_password(f, pw, pwsize, err, errlen);
	(void)fclose(f);
	return r;
}

static void
test_read_password(void)
{
	char pw[MAX_PASSWORD], err[128], big[MAX_PASSWORD + 10];
	FILE *f;
	int p[2];

	ok(read_pw("secret\n", 7, pw, sizeof(pw), err, sizeof(err)) == 0 &&
		strcmp(pw, "secret") == 0,
	    "one line on stdin is the password");
	ok(read_pw("secret\r\n", 8, pw, sizeof(pw), err, sizeof(err)) == 0 &&
		strcmp(pw, "secret") == 0,
	    "a CR before the LF is not part of the password");
	ok(read_pw("secret", 6, pw, sizeof(pw), err, sizeof(err)) == 0 &&
		strcmp(pw, "secret") == 0,
	    "a password without a final newline is accepted");
	ok(read_pw("s3 cr=t\ns3 cr=t\n", 16, pw, sizeof(pw), err,
	       sizeof(err)) == 0 &&
		strcmp(pw, "s3 cr=t") == 0,
	    "a matching second line is accepted");
	is_int(read_pw("secret\nsecreT\n", 14, pw, sizeof(pw), err,
		   sizeof(err)),
	    -1, "a second line that differs is refused");
	is_str(err, "the two passwords do not match", "with a clear message");
	ok(pw[0] == '\0', "and the password is wiped");
	read_pw("\n", 1, pw, sizeof(pw), err, sizeof(err));
	is_str(err, "empty password", "an empty password is refused");
	read_pw("", 0, pw, sizeof(pw), err, sizeof(err));
	is_str(err, "no password on standard input",
	    "empty input is refused");
	read_pw("sec\0ret\n", 8, pw, sizeof(pw), err, sizeof(err));
	is_str(err, "the password contains a NUL byte",
	    "a NUL byte is refused rather than cutting the password");
	memset(big, 'x', sizeof(big));
	read_pw(big, sizeof(big), pw, sizeof(pw), err, sizeof(err));
	is_str(err, "the password is too long",
	    "a password over 1023 bytes is refused");

	if (pipe(p) == -1 || (f = fdopen(p[0], "r")) == NULL) {
		ok(0, "pipe");
		return;
	}
	(void)write_all(p[1], "pipe-pw\npipe-pw\n", 16);
	(void)close(p[1]);
	ok(auth_read_password(f, pw, sizeof(pw), err, sizeof(err)) == 0 &&
		strcmp(pw, "pipe-pw") == 0,
	    "the password is read from a pipe (echo pw | msa passwd)");
	(void)fclose(f);
}

static int
run_passwd(const char *name, const char *input, char **output)
{
	FILE *in = fmemopen((void *)(uintptr_t)input, strlen(input), "r");
	size_t len;
	FILE *out = open_memstream(output, &len);
	int r;

	r = auth_passwd_run(name, in, out, 4);
	(void)fclose(in);
	(void)fclose(out);
	return r;
}

static void
test_passwd(void)
{
	struct auth_users *u = NULL;
	char *out = NULL;

	is_int(run_passwd("alice", "hunter2\nhunter2\n", &out), 0,
	    "msa passwd alice succeeds");
	ok(out != NULL && strncmp(out, "alice:$2b$04$", 13) == 0 &&
		strlen(out) == 6 + AUTH_HASH_LEN + 1,
	    "it prints alice:$2b$ and a full bcrypt hash");
	is_int(auth_users_parse(out, strlen(out), &u, NULL, NULL), 0,
	    "its output is a valid password file line");
	is_int(auth_verify(u, HASH_2B, "alice", "hunter2"), AUTH_OK,
	    "and the password verifies against it");
	is_int(auth_verify(u, HASH_2B, "alice", "hunter3"), AUTH_FAIL,
	    "and another password does not");
	auth_users_free(u);
	free(out);

	out = NULL;
	is_int(run_passwd(NULL, "hunter2\n", &out), 0,
	    "msa passwd without a name succeeds");
	ok(out != NULL && strncmp(out, "$2b$04$", 7) == 0 &&
		strlen(out) == AUTH_HASH_LEN + 1,
	    "it prints only the hash");
	free(out);

	out = NULL;
	is_int(run_passwd("al:ice", "hunter2\n", &out), 1,
	    "a name with ':' is a usage error (exit 1)");
	ok(out != NULL && out[0] == '\0', "and nothing is printed");
	free(out);

	out = NULL;
	is_int(run_passwd("alice", "hunter2\nhunter3\n", &out), 1,
	    "mismatching lines exit 1");
	free(out);
}

int
main(void)
{
	test_good_file();
	test_file_errors();
	test_file_limits();
	test_read_fd();
	test_verify();
	test_rights();
	test_throttle();
	test_rate();
	test_setting();
	test_cache();
	test_pool();
	test_auth_process();
	test_auth_process_cache();
	test_read_password();
	test_passwd();
	return done_testing();
}

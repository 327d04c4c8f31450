/*
 * unit_queue.c - the envelope file format, the retry schedule, job
 * grouping, and the spool file operations run against a mkdtemp spool.
 */
#include "msa.h"

#include <sys/stat.h>

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test/tap.h"

struct spool {
	char root[64];
	int queue_fd, tmp_fd;
};

static void
spool_make(struct spool *s)
{
	char path[128];

	strlcpy_msa(s->root, "/tmp/msa-unit-queue.XXXXXX", sizeof(s->root));
	if (mkdtemp(s->root) == NULL)
		fatal("mkdtemp");
	(void)bsnprintf(path, sizeof(path), "%s/queue", s->root);
	if (mkdir(path, 0700) == -1 ||
	    (s->queue_fd = open(path, O_RDONLY | O_DIRECTORY)) == -1)
		fatal("%s", path);
	(void)bsnprintf(path, sizeof(path), "%s/tmp", s->root);
	if (mkdir(path, 0700) == -1 ||
	    (s->tmp_fd = open(path, O_RDONLY | O_DIRECTORY)) == -1)
		fatal("%s", path);
}

static void
spool_destroy(struct spool *s)
{
	char cmd[128];

	(void)close(s->queue_fd);
	(void)close(s->tmp_fd);
	(void)bsnprintf(cmd, sizeof(cmd), "rm -rf %s", s->root);
	if (system(cmd) != 0)
		fprintf(stderr, "# cannot remove %s\n", s->root);
}

static bool
file_exists(int dirfd, const char *name)
{
	struct stat st;

	return fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0;
}

static void
file_put(int dirfd, const char *name, const char *text)
{
	int fd = openat(dirfd, name, O_WRONLY | O_CREAT | O_TRUNC, 0600);

	if (fd == -1 || write_all(fd, text, strlen(text)) == -1 ||
	    close(fd) == -1)
		fatal("%s", name);
}

static size_t
dir_count(int dirfd)
{
	struct dirent *de;
	size_t n = 0;
	DIR *d;
	int fd;

	if ((fd = openat(dirfd, ".", O_RDONLY | O_DIRECTORY)) == -1)
		return 0;
	if ((d = fdopendir(fd)) == NULL) {
		(void)close(fd);
		return 0;
	}
	while ((de = readdir(d)) != NULL)
		if (strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0)
			n++;
	(void)closedir(d);
	return n;
}

static void
env_sample(struct queue_env *env)
{
	queue_env_init(env);
	strlcpy_msa(env->id, "0123456789abcdef", sizeof(env->id));
	env->created = 1732900000;
	strlcpy_msa(env->sender, "\"john doe\"@example.org",
	    sizeof(env->sender));
	strlcpy_msa(env->login, "-", sizeof(env->login));
	env->client[0] = '\0';
	strlcpy_msa(env->helo, "laptop.example.org", sizeof(env->helo));
	env->size = 1532;
	env->body_8bit = true;
	queue_env_add_rcpt(env, "bob@example.com");
	queue_env_add_rcpt(env, "carol@example.net");
	env->rcpt[1].state = QRCPT_DELIVERED;
	env->rcpt[1].attempts = 2;
	env->rcpt[1].next = 0;
	env->rcpt[1].last = 1732900300;
	strlcpy_msa(env->rcpt[1].reply, "250 2.0.0 Ok: 100% queued\r",
	    sizeof(env->rcpt[1].reply));
	env->rcpt[0].attempts = 1;
	env->rcpt[0].next = 1732900600;
	strlcpy_msa(env->rcpt[0].reply, "451 4.7.1 Try again later",
	    sizeof(env->rcpt[0].reply));
}

static void
test_env_roundtrip(void)
{
	struct queue_env a, b;
	struct buf text;
	char err[256];

	env_sample(&a);
	buf_init(&text);
	queue_env_format(&a, &text);
	ok(strstr(text.data, "sender \"john%20doe\"@example.org\n") != NULL,
	    "envelope: a space in the sender is percent-encoded");
	ok(strstr(text.data, "login %2D\n") != NULL,
	    "envelope: the literal value \"-\" is encoded as %%2D");
	ok(strstr(text.data, "client -\n") != NULL,
	    "envelope: an empty value is written as \"-\"");
	is_int(queue_env_parse(text.data, text.len, &b, err, sizeof(err)), 0,
	    "envelope: what we write parses back");
	is_str(b.id, a.id, "round trip: id");
	is_int(b.created, a.created, "round trip: created time");
	is_str(b.sender, a.sender, "round trip: sender with a quoted space");
	is_str(b.login, "-", "round trip: login \"-\"");
	is_str(b.client, "", "round trip: empty client");
	is_str(b.helo, a.helo, "round trip: helo");
	is_int(b.size, 1532, "round trip: size");
	ok(b.body_8bit, "round trip: body_8bit");
	is_int(b.nrcpt, 2, "round trip: two recipients");
	is_str(b.rcpt[0].addr, "bob@example.com", "round trip: address");
	is_int(b.rcpt[0].state, QRCPT_PENDING, "round trip: pending state");
	is_int(b.rcpt[0].next, 1732900600, "round trip: next attempt");
	is_str(b.rcpt[0].reply, "451 4.7.1 Try again later",
	    "round trip: reply with spaces");
	is_int(b.rcpt[1].state, QRCPT_DELIVERED, "round trip: delivered");
	is_int(b.rcpt[1].attempts, 2, "round trip: attempts");
	is_int(b.rcpt[1].last, 1732900300, "round trip: last attempt");
	is_str(b.rcpt[1].reply, "250 2.0.0 Ok: 100% queued\r",
	    "round trip: '%%' and a CR survive");
	queue_env_free(&a);
	queue_env_free(&b);
	buf_free(&text);
}

/* Replace the first occurrence of from with to in the sample's text. */
static int
parse_mutated(const char *from, const char *to, char *err, size_t errlen)
{
	struct queue_env a, b;
	struct buf text, m;
	char *p;
	int r;

	env_sample(&a);
	buf_init(&text);
	buf_init(&m);
	queue_env_format(&a, &text);
	p = strstr(text.data, from);
	if (p == NULL) {
		fprintf(stderr, "# mutation %s not found\n", from);
		r = 99;
	} else {
		buf_add(&m, text.data, (size_t)(p - text.data));
		buf_add(&m, to, strlen(to));
		buf_addstr(&m, p + strlen(from));
		r = queue_env_parse(m.data, m.len, &b, err, errlen);
		if (r == 0)
			queue_env_free(&b);
	}
	queue_env_free(&a);
	buf_free(&text);
	buf_free(&m);
	return r;
}

static void
test_env_corrupt(void)
{
	static const struct {
		const char *from, *to, *what;
	} cases[] = {
		{ "msa-envelope 1\n", "msa-envelope 2\n", "a future version" },
		{ "msa-envelope 1\n", "", "no version line" },
		{ "id 0123456789abcdef", "id 0123456789ABCDEF", "an upper-case id" },
		{ "id 0123456789abcdef", "id 0123", "a short id" },
		{ "created 1732900000", "created -5", "a negative time" },
		{ "created 1732900000", "created 99999999999999999999999",
		    "an overflowing number" },
		{ "size 1532", "size 15x2", "a size with a letter" },
		{ "body_8bit 1", "body_8bit 2", "body_8bit other than 0/1" },
		{ "login %2D", "login a%00b", "an encoded NUL" },
		{ "login %2D", "login a%4", "a cut escape" },
		{ "login %2D", "login a b", "an extra field" },
		{ "login %2D", "login  x", "a double space" },
		{ "helo laptop", "helo\tlaptop", "a raw tab" },
		{ "rcpt pending", "rcpt waiting", "an unknown state" },
		{ "rcpt pending 1", "rcpt pending x", "bad attempts" },
		{ " bob@example.com ", " - ", "an empty recipient" },
		{ "end\n", "", "no end line (truncated)" },
		{ "end\n", "end", "an unterminated last line" },
		{ "end\n", "end\nrcpt", "data after end" },
		{ "client -\n", "helo x\n", "a line out of order" },
	};
	char err[256];
	size_t i;

	for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
		is_int(parse_mutated(cases[i].from, cases[i].to, err,
			   sizeof(err)),
		    -1, "corrupt envelope refused: %s", cases[i].what);
	(void)parse_mutated("msa-envelope 1\n", "msa-envelope 2\n", err,
	    sizeof(err));
	is_str(err, "line 1: unsupported envelope version",
	    "corrupt envelope: the reason names the line");
	is_int(queue_env_parse("msa-envelope 1\nid 0123456789abcdef\n", 36,
		   &(struct queue_env){ 0 }, err, sizeof(err)),
	    -1, "a truncated envelope is refused");
}

static void
test_backoff(void)
{
	struct config cfg;

	is_int(queue_backoff(300, 3600, 1, 0), 300,
	    "backoff: the first retry waits retry.first");
	is_int(queue_backoff(300, 3600, 2, 0), 600, "backoff: then doubles");
	is_int(queue_backoff(300, 3600, 4, 0), 2400, "backoff: 4th wait 8x");
	is_int(queue_backoff(300, 3600, 5, 0), 3600,
	    "backoff: capped at retry.max");
	is_int(queue_backoff(300, 3600, 4000000, 0), 3600,
	    "backoff: many attempts do not overflow");
	is_int(queue_backoff(300, 3600, 1, 100), 330, "backoff: +10%% jitter");
	is_int(queue_backoff(300, 3600, 1, -100), 270, "backoff: -10%% jitter");
	is_int(queue_backoff(300, 3600, 1, 900), 330,
	    "backoff: jitter is clamped to 10%%");
	is_int(queue_backoff(7200, 3600, 1, 0), 3600,
	    "backoff: retry.first above retry.max is capped");
	is_int(queue_backoff(0, 0, 1, -100), 1, "backoff: at least one second");

	memset(&cfg, 0, sizeof(cfg));
	cfg.retry_first = 300;
	cfg.retry_max = 3600;
	cfg.retry_give_up = 5 * 86400;
	is_int(queue_retry_time(&cfg, 1000, 1, 1000, 0), 1300,
	    "retry time: now + first after the first failure");
	is_int(queue_retry_time(&cfg, 1000, 3, 5000, 0), 6200,
	    "retry time: now + 4x first after the third");
	is_int(queue_retry_time(&cfg, 1000, 9, 1000 + 5 * 86400 - 60, 0),
	    1000 + 5 * 86400,
	    "retry time: the last try is at give_up, not after");
	is_int(queue_retry_time(&cfg, 1000, 9, 1000 + 5 * 86400, 0), 0,
	    "retry time: give_up reached means expired");
}

static void
test_grouping(void)
{
	struct queue_env env;
	size_t idx[8], n;
	char dom[MAX_DOMAIN];

	queue_env_init(&env);
	queue_env_add_rcpt(&env, "a@Example.ORG");
	queue_env_add_rcpt(&env, "b@other.net");
	queue_env_add_rcpt(&env, "c@example.org");
	queue_env_add_rcpt(&env, "d@EXAMPLE.org");
	queue_env_add_rcpt(&env, "e@example.org");
	queue_env_add_rcpt(&env, "f@late.example");
	env.rcpt[3].state = QRCPT_DELIVERED;
	env.rcpt[5].next = 2000;

	n = queue_next_group(&env, true, 1000, 8, idx, dom, sizeof(dom));
	is_int(n, 3, "mx: one job for a domain's due pending recipients");
	ok(n == 3 && idx[0] == 0 && idx[1] == 2 && idx[2] == 4,
	    "mx: domains match case-insensitively, delivered ones left out");
	is_str(dom, "example.org", "mx: the job's domain, lower-cased");
	env.rcpt[0].job = env.rcpt[2].job = env.rcpt[4].job = 1;
	n = queue_next_group(&env, true, 1000, 8, idx, dom, sizeof(dom));
	ok(n == 1 && idx[0] == 1 && strcmp(dom, "other.net") == 0,
	    "mx: the next job is the next domain");
	env.rcpt[1].job = 2;
	is_int(queue_next_group(&env, true, 1000, 8, idx, dom, sizeof(dom)), 0,
	    "mx: a recipient not yet due is not sent");
	is_int(queue_next_group(&env, true, 2000, 8, idx, dom, sizeof(dom)), 1,
	    "mx: it is sent once due");
	env.rcpt[0].job = env.rcpt[1].job = env.rcpt[2].job = 0;
	env.rcpt[4].job = 0;
	n = queue_next_group(&env, false, 1000, 8, idx, dom, sizeof(dom));
	ok(n == 4 && strcmp(dom, "") == 0,
	    "smarthost: one job with every due recipient, domain \"\"");
	is_int(queue_next_group(&env, false, 5000, 2, idx, dom, sizeof(dom)), 2,
	    "a job never exceeds its recipient limit");
	is_str(queue_addr_domain("\"a@b\"@c.example"), "c.example",
	    "domain: after the last '@'");
	queue_env_free(&env);
}

/* A message as a session leaves it in tmp/, and its envelope. */
static void
stage_message(struct spool *s, const char *body, uint64_t size,
    struct queue_env *env)
{
	int fd, e;

	queue_env_init(env);
	if ((e = queue_tmp_create(s->tmp_fd, s->queue_fd, env->id, &fd)) != 0)
		fatalx("queue_tmp_create: %s", strerror(e));
	if (write_all(fd, body, strlen(body)) == -1)
		fatal("write");
	(void)close(fd);
	env->created = 1732900000;
	strlcpy_msa(env->sender, "alice@example.org", sizeof(env->sender));
	env->size = size;
	queue_env_add_rcpt(env, "bob@example.com");
}

/* A committed message as a session would make it. */
static int
commit_message(struct spool *s, const char *body, uint64_t size,
    struct queue_env *env)
{
	stage_message(s, body, size, env);
	return queue_commit_files(s->tmp_fd, s->queue_fd, env);
}

static void
test_commit(void)
{
	struct spool s;
	struct queue_env env, back;
	char name[64], err[256];
	const char *body = "Subject: hi\r\n\r\nhello\r\n";
	struct stat st;

	spool_make(&s);
	is_int(commit_message(&s, body, strlen(body), &env), 0,
	    "commit: a complete message is accepted");
	ok(queue_id_valid(env.id), "commit: the id is 16 lower-case hex");
	(void)bsnprintf(name, sizeof(name), "%s.data", env.id);
	ok(file_exists(s.queue_fd, name), "commit: queue/ID.data exists");
	ok(fstatat(s.queue_fd, name, &st, 0) == 0 &&
		(st.st_mode & 0777) == 0600,
	    "commit: the data file is 0600");
	(void)bsnprintf(name, sizeof(name), "%s.env", env.id);
	ok(file_exists(s.queue_fd, name), "commit: queue/ID.env exists");
	is_int(dir_count(s.tmp_fd), 0, "commit: tmp/ is left empty");
	is_int(queue_env_load(s.queue_fd, env.id, &back, err, sizeof(err)), 0,
	    "commit: the envelope loads back");
	is_str(back.sender, "alice@example.org", "commit: sender kept");
	queue_env_free(&back);

	env.rcpt[0].state = QRCPT_DELIVERED;
	is_int(queue_env_store(s.tmp_fd, s.queue_fd, &env), 0,
	    "rewrite: the envelope is replaced");
	(void)queue_env_load(s.queue_fd, env.id, &back, err, sizeof(err));
	is_int(back.nrcpt > 0 ? (int)back.rcpt[0].state : -1, QRCPT_DELIVERED,
	    "rewrite: the new state is on disk");
	queue_env_free(&back);
	is_int(dir_count(s.tmp_fd), 0, "rewrite: no temporary file left");
	is_int(queue_remove_files(s.queue_fd, env.id), 0,
	    "remove: the message is removed");
	is_int(dir_count(s.queue_fd), 0, "remove: both files are gone");
	queue_env_free(&env);

	is_int(commit_message(&s, body, strlen(body) + 1, &env), EINVAL,
	    "commit: a size mismatch is refused");
	is_int(dir_count(s.queue_fd) + dir_count(s.tmp_fd), 0,
	    "commit: a refused message leaves nothing behind");
	queue_env_free(&env);
	spool_destroy(&s);
}

/* Are queue/ID.data (with body) and queue/ID.env (loadable) there? */
static bool
committed(struct spool *s, const struct queue_env *env, const char *body)
{
	char name[64], err[256], buf[256];
	struct queue_env back;
	ssize_t n;
	bool good;
	int fd;

	(void)bsnprintf(name, sizeof(name), "%s.data", env->id);
	if ((fd = openat(s->queue_fd, name, O_RDONLY)) == -1)
		return false;
	n = read(fd, buf, sizeof(buf) - 1);
	(void)close(fd);
	if (n < 0 || (size_t)n != strlen(body) || memcmp(buf, body, n) != 0)
		return false;
	if (queue_env_load(s->queue_fd, env->id, &back, err, sizeof(err)) ==
	    -1)
		return false;
	good = back.size == env->size && back.nrcpt == env->nrcpt;
	queue_env_free(&back);
	return good;
}

static bool
leaves_nothing(struct spool *s, const struct queue_env *env)
{
	char name[64];

	(void)bsnprintf(name, sizeof(name), "%s.env", env->id);
	if (file_exists(s->tmp_fd, env->id) || file_exists(s->tmp_fd, name) ||
	    file_exists(s->queue_fd, name))
		return false;
	(void)bsnprintf(name, sizeof(name), "%s.data", env->id);
	return !file_exists(s->queue_fd, name);
}

static void
test_group_commit(void)
{
	const char *body = "Subject: batch\r\n\r\nhello\r\n";
	const struct queue_env *ep[5];
	struct queue_env env[5];
	int status[5], path_fd;
	char name[64];
	struct spool s;
	size_t i;

	spool_make(&s);
	for (i = 0; i < 5; i++)
		stage_message(&s, body, strlen(body) + (i == 2 ? 1 : 0),
		    &env[i]);
	(void)unlinkat(s.tmp_fd, env[4].id, 0); /* its session aborted */
	for (i = 0; i < 5; i++) {
		status[i] = queue_commit_prepare(s.tmp_fd, &env[i]);
		ep[i] = &env[i];
	}
	is_int(status[0], 0, "group commit: a complete message is prepared");
	is_int(status[2], EINVAL, "group commit: a size mismatch is refused "
				  "when it is prepared");
	is_int(status[4], ENOENT, "group commit: a missing data file is "
				  "refused when it is prepared");
	ok(leaves_nothing(&s, &env[2]),
	    "group commit: a refused message leaves nothing in tmp/");
	is_int(dir_count(s.queue_fd), 0,
	    "group commit: nothing is visible in queue/ before the batch");
	(void)bsnprintf(name, sizeof(name), "%s.env", env[0].id);
	ok(file_exists(s.tmp_fd, name) && file_exists(s.tmp_fd, env[0].id),
	    "group commit: a prepared message waits in tmp/ with its envelope");

	is_int(queue_commit_batch(s.tmp_fd, s.queue_fd, ep, status, 5), 3,
	    "group commit: one batch commits the three good messages");
	ok(status[0] == 0 && status[1] == 0 && status[3] == 0,
	    "group commit: each good message of the batch is acknowledged");
	ok(status[2] == EINVAL && status[4] == ENOENT,
	    "group commit: the refused ones keep their own errors");
	ok(committed(&s, &env[0], body) && committed(&s, &env[1], body) &&
		committed(&s, &env[3], body),
	    "group commit: data and envelope of each are in queue/, intact");
	is_int(dir_count(s.queue_fd), 6,
	    "group commit: nothing else is in queue/");
	is_int(dir_count(s.tmp_fd), 0, "group commit: tmp/ is left empty");
	for (i = 0; i < 5; i++)
		queue_env_free(&env[i]);

	/* One message cannot be published: the others still are. */
	for (i = 0; i < 3; i++) {
		stage_message(&s, body, strlen(body), &env[i]);
		status[i] = queue_commit_prepare(s.tmp_fd, &env[i]);
	}
	(void)unlinkat(s.tmp_fd, env[1].id, 0);
	is_int(queue_commit_batch(s.tmp_fd, s.queue_fd, ep, status, 3), 2,
	    "group commit: a rename failure costs only its own message");
	is_int(status[1], ENOENT,
	    "group commit: that message gets the rename's error");
	ok(status[0] == 0 && status[2] == 0 && committed(&s, &env[0], body) &&
		committed(&s, &env[2], body),
	    "group commit: the other two are committed");
	ok(leaves_nothing(&s, &env[1]),
	    "group commit: the failed one leaves nothing in tmp/ or queue/");
	for (i = 0; i < 3; i++)
		queue_env_free(&env[i]);

	/* fsync(queue/) fails (an O_PATH descriptor cannot be fsync'd). */
	path_fd = openat(s.tmp_fd, "../queue", O_PATH | O_DIRECTORY);
	if (path_fd == -1)
		fatal("O_PATH");
	for (i = 0; i < 3; i++) {
		stage_message(&s, body, strlen(body), &env[i]);
		status[i] = queue_commit_prepare(s.tmp_fd, &env[i]);
	}
	status[2] = EIO; /* its worker failed */
	is_int(queue_commit_batch(s.tmp_fd, path_fd, ep, status, 3), 0,
	    "group commit: if fsync of queue/ fails nothing is committed");
	ok(status[0] == EBADF && status[1] == EBADF,
	    "group commit: every published message gets the fsync's error");
	is_int(status[2], EIO,
	    "group commit: a message refused earlier keeps its own error");
	ok(leaves_nothing(&s, &env[0]) && leaves_nothing(&s, &env[1]),
	    "group commit: after a failed fsync the batch is removed again");
	is_int(dir_count(s.queue_fd), 10,
	    "group commit: earlier batches are untouched");
	for (i = 0; i < 3; i++)
		queue_env_free(&env[i]);

	status[0] = ENOSPC;
	stage_message(&s, body, strlen(body), &env[0]);
	is_int(queue_commit_batch(s.tmp_fd, path_fd, ep, status, 1), 0,
	    "group commit: a batch of failures commits nothing");
	is_int(status[0], ENOSPC,
	    "group commit: ... and needs no fsync of queue/ to say so");
	queue_env_free(&env[0]);
	(void)close(path_fd);
	spool_destroy(&s);
}

static size_t loaded_count;
static char loaded_id[QUEUE_ID_LEN + 1];

static void
count_cb(struct queue_env *env, void *arg)
{
	(void)arg;
	loaded_count++;
	strlcpy_msa(loaded_id, env->id, sizeof(loaded_id));
	queue_env_free(env);
}

static void
test_recover(void)
{
	struct spool s;
	struct queue_env good;
	const char *body = "Subject: x\r\n\r\nbody\r\n";
	size_t n;

	spool_make(&s);
	if (commit_message(&s, body, strlen(body), &good) != 0)
		fatalx("commit");
	file_put(s.tmp_fd, "1111111111111111", "half a message");
	file_put(s.tmp_fd, "1111111111111111.env", "half an envelope");
	file_put(s.queue_fd, "aaaaaaaaaaaaaaaa.data", "orphan data");
	file_put(s.queue_fd, "bbbbbbbbbbbbbbbb.env", "envelope of removed");
	file_put(s.queue_fd, "cccccccccccccccc.data", "x");
	file_put(s.queue_fd, "cccccccccccccccc.env", "msa-envelope 1\ngarbage\n");
	file_put(s.queue_fd, "dddddddddddddddd.data", "kept");
	file_put(s.queue_fd, "dddddddddddddddd.bad", "kept");
	file_put(s.queue_fd, "README", "not ours");

	n = queue_spool_recover(s.tmp_fd, s.queue_fd, count_cb, NULL);
	is_int(n, 1, "recover: the one good message is loaded");
	is_str(loaded_id, good.id, "recover: with its id");
	is_int(dir_count(s.tmp_fd), 0, "recover: tmp/ is emptied");
	ok(!file_exists(s.queue_fd, "aaaaaaaaaaaaaaaa.data"),
	    "recover: data without an envelope is removed");
	ok(!file_exists(s.queue_fd, "bbbbbbbbbbbbbbbb.env"),
	    "recover: an envelope without data is removed");
	ok(file_exists(s.queue_fd, "cccccccccccccccc.bad") &&
		!file_exists(s.queue_fd, "cccccccccccccccc.env"),
	    "recover: a corrupt envelope is moved aside to ID.bad");
	ok(file_exists(s.queue_fd, "cccccccccccccccc.data"),
	    "recover: the data of a corrupt envelope is kept");
	ok(file_exists(s.queue_fd, "dddddddddddddddd.data") &&
		file_exists(s.queue_fd, "dddddddddddddddd.bad"),
	    "recover: an earlier ID.bad and its data are kept");
	ok(file_exists(s.queue_fd, "README"),
	    "recover: a file that is not ours is left alone");
	loaded_count = 0;
	file_put(s.queue_fd, "eeeeeeeeeeeeeeee.data", "short");
	{
		struct queue_env e2 = good;

		strlcpy_msa(e2.id, "eeeeeeeeeeeeeeee", sizeof(e2.id));
		e2.size = 999;
		if (queue_env_store(s.tmp_fd, s.queue_fd, &e2) != 0)
			fatalx("store");
	}
	n = queue_spool_recover(s.tmp_fd, s.queue_fd, count_cb, NULL);
	ok(n == 1 && file_exists(s.queue_fd, "eeeeeeeeeeeeeeee.bad"),
	    "recover: an envelope whose size disagrees with its data is set "
	    "aside");
	queue_env_free(&good);
	spool_destroy(&s);
}

static void
test_spool_prepare(void)
{
	struct config cfg;
	char err[512], path[256], link[256];
	struct stat st;

	if (geteuid() != 0) {
		ok(1, "# SKIP spool_prepare needs root");
		return;
	}
	memset(&cfg, 0, sizeof(cfg));
	strlcpy_msa(path, "/tmp/msa-unit-prep.XXXXXX", sizeof(path));
	if (mkdtemp(path) == NULL)
		fatal("mkdtemp");
	(void)bsnprintf(cfg.spool, sizeof(cfg.spool), "%s/spool", path);
	strlcpy_msa(cfg.user, "nobody", sizeof(cfg.user));
	cfg.uid = 65534;
	cfg.gid = 65534;
	is_int(spool_prepare(&cfg, err, sizeof(err)), 0,
	    "spool: created when missing");
	ok(stat(cfg.spool, &st) == 0 && st.st_uid == 0 &&
		(st.st_mode & 07777) == 0755,
	    "spool: root 0755");
	(void)bsnprintf(link, sizeof(link), "%s/queue", cfg.spool);
	ok(stat(link, &st) == 0 && st.st_uid == 65534 &&
		(st.st_mode & 07777) == 0700,
	    "spool: queue/ belongs to the msa user, 0700");
	(void)bsnprintf(link, sizeof(link), "%s/empty", cfg.spool);
	ok(stat(link, &st) == 0 && st.st_uid == 0 &&
		(st.st_mode & 07777) == 0555,
	    "spool: empty/ is root 0555");
	(void)bsnprintf(link, sizeof(link), "%s/tmp", cfg.spool);
	if (chmod(link, 0777) == -1)
		fatal("chmod");
	is_int(spool_prepare(&cfg, err, sizeof(err)), 0,
	    "spool: preparing again is fine");
	ok(stat(link, &st) == 0 && (st.st_mode & 07777) == 0700,
	    "spool: a wrong mode is fixed");
	(void)bsnprintf(link, sizeof(link), "%s/empty/x", cfg.spool);
	if (mkdir(link, 0700) == -1)
		fatal("mkdir");
	is_int(spool_prepare(&cfg, err, sizeof(err)), -1,
	    "spool: a non-empty empty/ is refused");
	ok(strstr(err, "must be empty") != NULL, "spool: and the error says so");
	if (rmdir(link) == -1)
		fatal("rmdir");
	(void)bsnprintf(link, sizeof(link), "%s/link", path);
	if (symlink(cfg.spool, link) == -1)
		fatal("symlink");
	strlcpy_msa(cfg.spool, link, sizeof(cfg.spool));
	is_int(spool_prepare(&cfg, err, sizeof(err)), -1,
	    "spool: a symbolic link is refused");
	(void)bsnprintf(cfg.spool, sizeof(cfg.spool), "%s/no/such", path);
	is_int(spool_prepare(&cfg, err, sizeof(err)), -1,
	    "spool: a missing parent directory is an error");
	(void)bsnprintf(link, sizeof(link), "rm -rf %s", path);
	if (system(link) != 0)
		fprintf(stderr, "# cannot remove %s\n", path);
}

int
main(void)
{
	log_init(LOG_LVL_ERROR, false, "unit_queue");
	test_env_roundtrip();
	test_env_corrupt();
	test_backoff();
	test_grouping();
	test_commit();
	test_group_commit();
	test_recover();
	test_spool_prepare();
	return done_testing();
}

/*
 * unit_config.c - msa.yaml as an administrator sees it: values that parse,
 * defaults that apply, and the exact "FILE:LINE:COL: message" of each
 * mistake.
 */
#include <sys/socket.h>
#include <sys/stat.h>

#include <arpa/inet.h>
#include <errno.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/tls1.h>

#include "msa.h"
#include "tap.h"

#define MAX_LINES 64

static char lines[MAX_LINES][1024];
static int nlines;

static void
capture(const char *line)
{
	if (nlines < MAX_LINES)
		strlcpy_msa(lines[nlines], line, sizeof(lines[0]));
	nlines++;
}

/* Write text to a new temporary file; its name into path. */
static void
write_temp(const char *text, char *path, size_t len)
{
	const char *dir = getenv("TMPDIR");
	int fd;

	if (bsnprintf(path, len, "%s/unit_config.XXXXXX",
		dir != NULL && *dir != '\0' ? dir : "/tmp")
	    == -1)
		fatalx("temp path too long");
	if ((fd = mkstemp(path)) == -1)
		fatal("mkstemp %s", path);
	if (write_all(fd, text, strlen(text)) == -1 || close(fd) == -1)
		fatal("write %s", path);
}

/* Load text as a configuration; returns the problem count. */
static int
load(const char *text, struct config *cfg, bool check_files, char *path,
    size_t pathlen)
{
	int n;

	write_temp(text, path, pathlen);
	nlines = 0;
	n = config_load(cfg, path, check_files);
	(void)unlink(path);
	return n;
}

static int
port_of(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET)
		return ntohs(((const struct sockaddr_in *)ss)->sin_port);
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return -1;
}

static const char *
addr_of(const struct sockaddr_storage *ss, char *buf, size_t len)
{
	return sockaddr_ntop((const struct sockaddr *)ss, buf, len);
}

/* ------------------------------------------------------------------ */

static void
test_parse_duration(void)
{
	static const struct {
		const char *in;
		time_t want;
	} good[] = {
		{ "30s", 30 },
		{ "5m", 300 },
		{ "1h", 3600 },
		{ "5d", 432000 },
		{ "45", 45 },
		{ "0", 0 },
		{ "0s", 0 },
		{ "007m", 420 },
	};
	static const char *const bad[] = {
		"",
		"-1",
		"+1",
		"-5m",
		"5x",
		"5mm",
		"m",
		" 5m",
		"5m ",
		"5M",
		"1.5h",
		"5 m",
		"99999999999999999999",
		"9223372036854775807d",
		"106751991167301d",
	};
	size_t i;
	time_t t;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		t = -1;
		is_int(parse_duration(good[i].in, &t), 0,
		    "duration \"%s\" is accepted", good[i].in);
		is_int(t, good[i].want, "duration \"%s\" is %lld seconds",
		    good[i].in, (long long)good[i].want);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		t = 12345;
		is_int(parse_duration(bad[i], &t), -1,
		    "duration \"%s\" is refused", bad[i]);
		is_int(t, 12345, "a refused duration leaves the value alone");
	}
}

static void
test_parse_size(void)
{
	static const struct {
		const char *in;
		uint64_t want;
	} good[] = {
		{ "25M", 25ull << 20 },
		{ "512K", 512ull << 10 },
		{ "1G", 1ull << 30 },
		{ "1000", 1000 },
		{ "0", 0 },
		{ "16k", 16384 },
		{ "17179869183G", 17179869183ull << 30 },
	};
	static const char *const bad[] = {
		"",
		"-1",
		"25MB",
		"1T",
		"K",
		"2.5M",
		" 1K",
		"1K ",
		"+1",
		"18446744073709551616",
		"17179869184G",
		"18014398509481984K",
	};
	size_t i;
	uint64_t v;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		v = 1;
		is_int(parse_size(good[i].in, &v), 0, "size \"%s\" is accepted",
		    good[i].in);
		ok(v == good[i].want, "size \"%s\" is %llu bytes", good[i].in,
		    (unsigned long long)good[i].want);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		is_int(parse_size(bad[i], &v), -1, "size \"%s\" is refused",
		    bad[i]);
}

static void
test_parse_hostport(void)
{
	static const struct {
		const char *in;
		uint16_t dflt;
		int family;
		const char *addr;
		int port;
	} good[] = {
		{ "0.0.0.0:587", 0, AF_INET, "0.0.0.0", 587 },
		{ "[::]:587", 0, AF_INET6, "::", 587 },
		{ "127.0.0.1:53", 0, AF_INET, "127.0.0.1", 53 },
		{ "127.0.0.1", 53, AF_INET, "127.0.0.1", 53 },
		{ "::1", 53, AF_INET6, "::1", 53 },
		{ "[::1]", 53, AF_INET6, "::1", 53 },
		{ "[2001:db8::1]:2525", 25, AF_INET6, "2001:db8::1", 2525 },
		{ "2001:db8::25", 53, AF_INET6, "2001:db8::25", 53 },
		{ "192.0.2.1:65535", 0, AF_INET, "192.0.2.1", 65535 },
	};
	static const struct {
		const char *in;
		uint16_t dflt;
	} bad[] = {
		{ "::1:587", 25 }, /* reads as an address and as ::1 port 587 */
		{ "1.2.3.4:0", 25 },
		{ "1.2.3.4:65536", 25 },
		{ "1.2.3.4:", 25 },
		{ "1.2.3.4:25x", 25 },
		{ "1.2.3.4:+25", 25 },
		{ "1.2.3.4:-1", 25 },
		{ "localhost:25", 25 },
		{ "mail.example.org", 25 },
		{ "[1.2.3.4]:25", 25 },
		{ "[::1", 25 },
		{ "[::1]x", 25 },
		{ "[::1]:", 25 },
		{ "[]:25", 25 },
		{ "", 25 },
		{ " 1.2.3.4:25", 25 },
		{ "256.1.1.1:25", 25 },
		{ "1.2.3.4", 0 },
		{ "[::1]", 0 },
		{ "fe80::1%eth0", 25 },
	};
	struct sockaddr_storage ss;
	socklen_t sslen;
	char buf[64];
	size_t i;

	for (i = 0; i < sizeof(good) / sizeof(good[0]); i++) {
		memset(&ss, 0xff, sizeof(ss));
		if (!ok(parse_hostport(good[i].in, good[i].dflt, &ss, &sslen)
			    == 0,
			"address \"%s\" is accepted", good[i].in))
			continue;
		ok(ss.ss_family == good[i].family
			&& sslen
			    == (good[i].family == AF_INET
				    ? sizeof(struct sockaddr_in)
				    : sizeof(struct sockaddr_in6)),
		    "\"%s\" is IPv%d", good[i].in,
		    good[i].family == AF_INET ? 4 : 6);
		is_str(addr_of(&ss, buf, sizeof(buf)), good[i].addr,
		    "\"%s\" has address %s", good[i].in, good[i].addr);
		is_int(port_of(&ss), good[i].port, "\"%s\" has port %d",
		    good[i].in, good[i].port);
	}
	for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		is_int(parse_hostport(bad[i].in, bad[i].dflt, &ss, &sslen), -1,
		    "address \"%s\" (default port %u) is refused", bad[i].in,
		    bad[i].dflt);
}

/* ------------------------------------------------------------------ */

static const char full_config[]
    = "hostname: mx1.example.net\n"
      "domain: example.net\n"
      "user: root\n"
      "spool: /srv/msa-spool\n"
      "log:\n"
      "  level: debug\n"
      "  target: syslog\n"
      "listen:\n"
      "  - { address: \"127.0.0.1:2587\", tls: starttls }\n"
      "  - address: \"[::1]\"\n"
      "    tls: implicit\n"
      "tls:\n"
      "  certificate: /etc/ssl/mail.pem\n"
      "  key: /etc/ssl/mail.key\n"
      "  min_version: 1.3\n"
      "auth:\n"
      "  users: /etc/msa/users\n"
      "  max_failures: 3\n"
      "  cache: 1m\n"
      "senders:\n"
      "  alice: [ \"alice@example.net\", \"alice+*@example.net\" ]\n"
      "  bob@example.org:\n"
      "    - \"@family.example\"\n"
      "limits:\n"
      "  message_size: 10M\n"
      "  recipients: 50\n"
      "  sessions: 20\n"
      "  sessions_per_ip: 5\n"
      "  messages_per_hour: 100\n"
      "policy:\n"
      "  from_mismatch: add-sender\n"
      "  remove_bcc: false\n"
      "  hide_client_ip: true\n"
      "relay:\n"
      "  mode: smarthost\n"
      "  tls: required\n"
      "  smarthost:\n"
      "    host: smtp.provider.example\n"
      "    port: 465\n"
      "    tls: implicit\n"
      "    username: me@provider.example\n"
      "    password_file: /etc/msa/smarthost.secret\n"
      "  retry: { first: 1m, max: 2h, give_up: 3d }\n"
      "  concurrency: 8\n"
      "  mx_port: 2525\n"
      "dns:\n"
      "  nameservers: [ \"127.0.0.1:5353\", \"::1\" ]\n";

static void
test_full_config(void)
{
	struct config cfg;
	char path[256], buf[64];

	is_int(load(full_config, &cfg, false, path, sizeof(path)), 0,
	    "a configuration that sets every key loads without a problem");
	is_str(cfg.path, path, "the file name is kept");
	is_str(cfg.hostname, "mx1.example.net", "hostname is read");
	is_str(cfg.domain, "example.net", "domain is read");
	is_str(cfg.user, "root", "user is read");
	ok(cfg.uid == 0 && cfg.gid == 0, "user root resolves to uid/gid 0");
	is_str(cfg.spool, "/srv/msa-spool", "spool is read");
	is_int(cfg.log_level, LOG_LVL_DEBUG, "log.level debug");
	ok(cfg.log_syslog, "log.target syslog");
	is_int(cfg.nlisten, 2, "two listen entries replace the defaults");
	is_str(cfg.listen[0].address, "127.0.0.1:2587", "listen address kept");
	is_int(port_of(&cfg.listen[0].ss), 2587, "listen port 2587");
	is_int(cfg.listen[0].tls, LISTEN_STARTTLS, "first entry is starttls");
	is_int(cfg.listen[0].fd, -1, "no socket bound yet");
	is_str(addr_of(&cfg.listen[1].ss, buf, sizeof(buf)), "::1",
	    "bracketed IPv6 listen address");
	is_int(port_of(&cfg.listen[1].ss), 465,
	    "implicit TLS without a port listens on 465");
	is_int(cfg.listen[1].tls, LISTEN_IMPLICIT, "second entry implicit");
	is_str(cfg.tls_certificate, "/etc/ssl/mail.pem", "tls.certificate");
	is_str(cfg.tls_key, "/etc/ssl/mail.key", "tls.key");
	is_int(cfg.tls_min_version, TLS1_3_VERSION,
	    "min_version 1.3 (unquoted) is TLS 1.3");
	is_str(cfg.auth_users, "/etc/msa/users", "auth.users");
	is_int(cfg.auth_max_failures, 3, "auth.max_failures");
	is_int(cfg.auth_cache, 60, "auth.cache 1m is 60 seconds");
	is_int(cfg.nsenders, 3, "three sender patterns");
	if (cfg.nsenders == 3) {
		is_str(cfg.senders[0].login, "alice", "first pattern's login");
		is_str(cfg.senders[1].pattern, "alice+*@example.net",
		    "wildcard pattern kept");
		is_str(cfg.senders[2].login, "bob@example.org",
		    "a login that is an address");
		is_str(cfg.senders[2].pattern, "@family.example",
		    "domain pattern kept");
	}
	ok(cfg.message_size == 10u << 20, "message_size 10M");
	is_int(cfg.max_recipients, 50, "limits.recipients");
	is_int(cfg.max_sessions, 20, "limits.sessions");
	is_int(cfg.max_sessions_per_ip, 5, "limits.sessions_per_ip");
	is_int(cfg.messages_per_hour, 100, "limits.messages_per_hour");
	is_int(cfg.from_mismatch, FROM_MISMATCH_ADD_SENDER, "add-sender");
	ok(!cfg.remove_bcc, "remove_bcc false");
	ok(cfg.hide_client_ip, "hide_client_ip true");
	is_int(cfg.relay_mode, RELAY_SMARTHOST, "relay.mode smarthost");
	is_int(cfg.relay_tls, RELAY_TLS_REQUIRED, "relay.tls required");
	is_str(cfg.smarthost_host, "smtp.provider.example", "smarthost host");
	is_int(cfg.smarthost_port, 465, "smarthost port");
	is_int(cfg.smarthost_tls, SMARTHOST_IMPLICIT, "smarthost tls");
	is_str(cfg.smarthost_username, "me@provider.example", "username");
	is_str(cfg.smarthost_password_file, "/etc/msa/smarthost.secret",
	    "password_file");
	is_int(cfg.retry_first, 60, "retry.first 1m");
	is_int(cfg.retry_max, 7200, "retry.max 2h");
	is_int(cfg.retry_give_up, 3 * 86400, "retry.give_up 3d");
	is_int(cfg.relay_concurrency, 8, "relay.concurrency");
	is_int(cfg.mx_port, 2525, "relay.mx_port");
	is_int(cfg.nnameservers, 2, "two nameservers");
	is_str(cfg.nameservers[0].text, "127.0.0.1:5353", "nameserver text");
	is_int(port_of(&cfg.nameservers[0].ss), 5353, "nameserver port");
	is_int(port_of(&cfg.nameservers[1].ss), 53,
	    "nameserver without a port uses 53");
	config_free(&cfg);
	ok(cfg.senders == NULL && cfg.nsenders == 0, "config_free clears");
}

static void
check_defaults(const struct config *cfg, const char *what)
{
	char buf[64];
	const char *dot;

	is_str(cfg->spool, "/var/spool/msa", "%s: spool", what);
	ok(cfg->log_level == LOG_LVL_INFO && !cfg->log_syslog,
	    "%s: log info to stderr", what);
	is_int(cfg->nlisten, 3, "%s: three listen entries", what);
	ok(strcmp(cfg->listen[0].address, "0.0.0.0:587") == 0
		&& cfg->listen[0].tls == LISTEN_STARTTLS
		&& port_of(&cfg->listen[0].ss) == 587,
	    "%s: 0.0.0.0:587 starttls", what);
	ok(strcmp(addr_of(&cfg->listen[1].ss, buf, sizeof(buf)), "::") == 0
		&& cfg->listen[1].tls == LISTEN_STARTTLS
		&& port_of(&cfg->listen[1].ss) == 587,
	    "%s: [::]:587 starttls", what);
	ok(strcmp(cfg->listen[2].address, "0.0.0.0:465") == 0
		&& cfg->listen[2].tls == LISTEN_IMPLICIT
		&& port_of(&cfg->listen[2].ss) == 465,
	    "%s: 0.0.0.0:465 implicit", what);
	ok(cfg->listen[0].fd == -1 && cfg->listen[MAX_LISTEN - 1].fd == -1,
	    "%s: no sockets yet", what);
	is_int(cfg->tls_min_version, TLS1_2_VERSION, "%s: TLS 1.2", what);
	is_str(cfg->auth_users, "/etc/msa/passwd", "%s: auth.users", what);
	is_int(cfg->auth_max_failures, 5, "%s: max_failures 5", what);
	is_int(cfg->auth_cache, 0, "%s: auth cache off", what);
	ok(cfg->senders == NULL && cfg->nsenders == 0, "%s: no senders", what);
	ok(cfg->message_size == 25u << 20, "%s: message_size 25M", what);
	ok(cfg->max_recipients == 100 && cfg->max_sessions == 50
		&& cfg->max_sessions_per_ip == 10
		&& cfg->messages_per_hour == 0,
	    "%s: limits 100/50/10/0", what);
	ok(cfg->from_mismatch == FROM_MISMATCH_REJECT && cfg->remove_bcc
		&& !cfg->hide_client_ip,
	    "%s: policy reject/true/false", what);
	ok(cfg->relay_mode == RELAY_MX
		&& cfg->relay_tls == RELAY_TLS_OPPORTUNISTIC,
	    "%s: relay mx, opportunistic", what);
	ok(cfg->smarthost_port == 587
		&& cfg->smarthost_tls == SMARTHOST_STARTTLS
		&& cfg->smarthost_host[0] == '\0',
	    "%s: smarthost port 587 starttls", what);
	ok(cfg->retry_first == 300 && cfg->retry_max == 3600
		&& cfg->retry_give_up == 5 * 86400,
	    "%s: retry 5m/1h/5d", what);
	ok(cfg->relay_concurrency == 4 && cfg->mx_port == 25,
	    "%s: concurrency 4, mx_port 25", what);
	is_int(cfg->nnameservers, 0, "%s: resolv.conf nameservers", what);
	ok(cfg->hostname[0] != '\0', "%s: a hostname (%s)", what,
	    cfg->hostname);
	dot = strchr(cfg->hostname, '.');
	is_str(cfg->domain, dot != NULL ? dot + 1 : cfg->hostname,
	    "%s: domain from the hostname", what);
}

static void
test_defaults(void)
{
	struct config cfg;
	char path[256], want[512];
	int n, want_n = getpwnam("msa") != NULL ? 0 : 1;

	is_int(
	    load("# nothing but a comment\n", &cfg, false, path, sizeof(path)),
	    want_n,
	    "a file of comments is all defaults (problem only if no account "
	    "msa)");
	is_str(cfg.user, "msa", "default user msa");
	if (want_n == 1) {
		(void)snprintf(want, sizeof(want),
		    "%s:1:1: user: no such account \"msa\"", path);
		is_str(lines[0], want, "a missing msa account is reported");
	}
	is_int(load("", &cfg, false, path, sizeof(path)), want_n,
	    "an empty file is all defaults");

	n = load("user: root\n", &cfg, false, path, sizeof(path));
	is_int(n, 0, "a file with only user loads");
	check_defaults(&cfg, "only user set");
	config_free(&cfg);

	n = load("user: root\nlog:\ntls: ~\nlisten:\ndns: null\n", &cfg, false,
	    path, sizeof(path));
	is_int(n, 0, "empty sections are absent sections");
	check_defaults(&cfg, "empty sections");

	config_defaults(&cfg);
	check_defaults(&cfg, "config_defaults");
	config_free(&cfg);

	is_int(load("user: root\nhostname: mail.example.org\n", &cfg, false,
		   path, sizeof(path)),
	    0, "hostname with a domain");
	is_str(cfg.domain, "example.org",
	    "domain defaults to hostname without its first label");
	is_int(load("user: root\nhostname: gateway\n", &cfg, false, path,
		   sizeof(path)),
	    0, "single-label hostname");
	is_str(cfg.domain, "gateway", "a single label is its own domain");
}

/* The shipped example is valid (with an account that exists here). */
static void
test_example(void)
{
	static const char *const where[] = { "msa.yaml.example",
		"../msa.yaml.example", "../../msa.yaml.example" };
	struct config cfg;
	char text[32768], path[256], *user;
	struct buf b;
	FILE *fp = NULL;
	size_t i, len;

	for (i = 0; i < sizeof(where) / sizeof(where[0]) && fp == NULL; i++)
		fp = fopen(where[i], "r");
	if (!ok(fp != NULL, "msa.yaml.example is found"))
		return;
	len = fread(text, 1, sizeof(text) - 1, fp);
	(void)fclose(fp);
	text[len] = '\0';
	/* An account that exists here; every line stays where it was. */
	user = strstr(text, "\nuser: msa\n");
	if (!ok(user != NULL, "the example sets user: msa"))
		return;
	buf_init(&b);
	buf_add(&b, text, (size_t)(user - text));
	buf_addstr(&b, "\nuser: root\n");
	buf_addstr(&b, user + strlen("\nuser: msa\n"));
	is_int(load(b.data, &cfg, false, path, sizeof(path)), 0,
	    "msa.yaml.example loads without a problem");
	buf_free(&b);
	for (i = 0; i < (size_t)nlines && i < MAX_LINES; i++)
		printf("# %s\n", lines[i]);
	is_str(cfg.hostname, "mail.example.org", "example hostname");
	is_int(cfg.nlisten, 3, "example has the three listen entries");
	is_int(cfg.nsenders, 3, "example gives alice three patterns");
	is_int(cfg.relay_mode, RELAY_MX, "example relays by MX");
	is_int(cfg.nnameservers, 0, "example uses resolv.conf");
	config_free(&cfg);
}

/* ------------------------------------------------------------------ */

static const struct bad_config {
	const char *yaml;
	int n; /* problems expected */
	const char *first; /* first line, after "FILE:" */
} bad_configs[] = {
	{ "user: root\nfoo: 1\n", 1,
	    "2:1: foo: unknown key (known keys: hostname, domain, user, "
	    "spool, log, listen, tls, auth, senders, limits, policy, relay, "
	    "dns, sandbox)" },
	{ "user: root\ntls:\n  cert: /x\n", 1,
	    "3:3: tls.cert: unknown key (known keys: certificate, key, "
	    "min_version)" },
	{ "user: root\nspool: /a\nspool: /b\n", 1,
	    "3:1: spool: duplicate key (first at line 2)" },
	{ "user: root\nlimits: { recipients: 5, recipients: 6 }\n", 1,
	    "2:26: limits.recipients: duplicate key (first at line 2)" },
	{ "user: root\ntls: yes\n", 1,
	    "2:6: tls: expected a mapping (key: value), got a scalar" },
	{ "user: root\nrelay:\n  - mode: mx\n", 1,
	    "3:3: relay: expected a mapping (key: value), got a sequence" },
	{ "user: root\nhostname: [a, b]\n", 1,
	    "2:11: hostname: expected a single value, got a sequence" },
	{ "user: root\nlisten: \"0.0.0.0:587\"\n", 1,
	    "2:9: listen: expected a sequence, got a scalar" },
	{ "user: root\nlimits:\n  recipients: 0\n", 1,
	    "3:15: limits.recipients: expected an integer from 1 to 200, "
	    "got \"0\"" },
	{ "user: root\nlimits:\n  recipients: 1001\n", 1,
	    "3:15: limits.recipients: expected an integer from 1 to 200, "
	    "got \"1001\"" },
	{ "user: root\nlimits:\n  sessions: -5\n", 1,
	    "3:13: limits.sessions: expected an integer from 1 to 65535, "
	    "got \"-5\"" },
	{ "user: root\nlimits:\n  sessions: 5\n  sessions_per_ip: 6\n", 1,
	    "4:3: limits.sessions_per_ip (6) is larger than limits.sessions "
	    "(5)" },
	{ "user: root\nlimits:\n  sessions: 5\n", 1,
	    "3:3: limits.sessions_per_ip (10) is larger than limits.sessions "
	    "(5)" },
	{ "user: root\nrelay:\n  retry: { first: 2h, max: 1h }\n", 1,
	    "3:12: relay.retry.first (7200s) is longer than relay.retry.max "
	    "(3600s)" },
	{ "user: root\nrelay:\n  retry: { first: 5x }\n", 1,
	    "3:19: relay.retry.first: bad duration \"5x\" (a number with s, "
	    "m, h or d, e.g. 5m)" },
	{ "user: root\nrelay:\n  retry: { give_up: 0 }\n", 1,
	    "3:21: relay.retry.give_up: must be at least 1s" },
	{ "user: root\nrelay:\n  retry: { give_up: 9223372036854775807 }\n",
	    1, "3:21: relay.retry.give_up: must be at most 365d" },
	{ "user: root\nauth:\n  cache: 400d\n", 1,
	    "3:10: auth.cache: must be at most 365d" },
	{ "user: root\nlimits:\n  message_size: 25MB\n", 1,
	    "3:17: limits.message_size: bad size \"25MB\" (a number of bytes "
	    "with K, M or G, e.g. 25M)" },
	{ "user: root\nlisten:\n  - { address: \"0.0.0.0:25\" }\n", 1,
	    "3:5: listen: entry has no tls (starttls or implicit)" },
	{ "user: root\nlisten:\n  - tls: starttls\n", 1,
	    "3:5: listen: entry has no address" },
	{ "user: root\nlisten: []\n", 1,
	    "2:9: listen: needs at least one entry" },
	{ "user: root\nlisten:\n  - { address: \"0.0.0.0:99999\", tls: "
	  "starttls }\n",
	    1,
	    "3:16: listen.address: bad address \"0.0.0.0:99999\" (IPv4:port, "
	    "[IPv6]:port or a bare IP; numeric only)" },
	{ "user: root\nlisten:\n  - { address: \"127.0.0.1:25\", tls: "
	  "starttls }\n  - { address: \"127.0.0.1:25\", tls: implicit }\n",
	    1, "4:16: listen.address: \"127.0.0.1:25\" is listed twice" },
	{ "user: root\nlisten:\n  - { address: \"0.0.0.0:587\", tls: tls }\n",
	    1,
	    "3:36: listen.tls: bad value \"tls\" (allowed: starttls, "
	    "implicit)" },
	{ "user: root\nlog:\n  level: loud\n", 1,
	    "3:10: log.level: bad value \"loud\" (allowed: debug, info, "
	    "warning, error)" },
	{ "user: root\nlog: { target: file }\n", 1,
	    "2:16: log.target: bad value \"file\" (allowed: stderr, syslog)" },
	{ "user: root\ntls:\n  min_version: \"1.1\"\n", 1,
	    "3:16: tls.min_version: bad value \"1.1\" (allowed: 1.2, 1.3)" },
	{ "user: root\npolicy:\n  from_mismatch: accept\n", 1,
	    "3:18: policy.from_mismatch: bad value \"accept\" (allowed: "
	    "reject, add-sender)" },
	{ "user: root\npolicy:\n  remove_bcc: maybe\n", 1,
	    "3:15: policy.remove_bcc: bad value \"maybe\" (allowed: true, "
	    "false)" },
	{ "user: root\nrelay: { mode: relay }\n", 1,
	    "2:16: relay.mode: bad value \"relay\" (allowed: mx, smarthost)" },
	{ "user: root\nrelay:\n  smarthost: { tls: ssl }\n", 1,
	    "3:21: relay.smarthost.tls: bad value \"ssl\" (allowed: starttls, "
	    "implicit, none)" },
	{ "user: root\nrelay:\n  mode: smarthost\n", 1,
	    "3:3: relay.smarthost.host: required when relay.mode is "
	    "smarthost" },
	{ "user: root\nrelay:\n  mode: smarthost\n  smarthost:\n"
	  "    host: smtp.example\n    username: me\n",
	    1,
	    "6:5: relay.smarthost.password_file: required when username is "
	    "set" },
	{ "user: root\nrelay: { smarthost: { host: \"bad host\" } }\n", 1,
	    "2:29: relay.smarthost.host: \"bad host\" is not a host name or IP "
	    "address" },
	{ "user: nosuchaccount-msa\n", 1,
	    "1:1: user: no such account \"nosuchaccount-msa\"" },
	{ "user: root\nspool:\n", 1, "2:1: spool: missing value" },
	{ "user: root\nspool: \"\"\n", 1,
	    "2:8: spool: value must not be empty" },
	{ "user: root\nspool: var/spool/msa\n", 1,
	    "2:8: spool: \"var/spool/msa\" must be an absolute path" },
	{ "user: root\nhostname: mail_1.example.org\n", 1,
	    "2:11: hostname: \"mail_1.example.org\" is not a valid domain "
	    "name" },
	{ "user: root\nhostname: a.\n", 1,
	    "2:11: hostname: \"a.\" is not a valid domain name" },
	{ "user: root\nhostname: 192.0.2.1\n", 1,
	    "2:11: hostname: \"192.0.2.1\" is not a valid domain name" },
	{ "user: root\ndomain: -example.org\n", 1,
	    "2:9: domain: \"-example.org\" is not a valid domain name" },
	{ "user: root\nsenders:\n  alice: [ \"alice\" ]\n", 1,
	    "3:12: senders.alice: bad pattern \"alice\" (expected "
	    "local@domain, local*@domain or @domain)" },
	{ "user: root\nsenders:\n  alice: [ \"alice@*.example.org\" ]\n", 1,
	    "3:12: senders.alice: bad pattern \"alice@*.example.org\" "
	    "(expected local@domain, local*@domain or @domain)" },
	{ "user: root\nsenders:\n  alice: [ \"a@b@c\", \"ok@example.org\", "
	  "\"@\" ]\n",
	    2,
	    "3:12: senders.alice: bad pattern \"a@b@c\" (expected "
	    "local@domain, local*@domain or @domain)" },
	{ "user: root\nsenders:\n  alice: \"alice@example.org\"\n", 1,
	    "3:10: senders.alice: expected a sequence, got a scalar" },
	{ "user: root\nsenders:\n  \"al ice\": [ \"a@example.org\" ]\n", 1,
	    "3:3: senders.al ice: bad login \"al ice\" (no blanks, ':' or "
	    "control characters)" },
	{ "user: root\nsenders: [ alice ]\n", 1,
	    "2:10: senders: expected a mapping of login: [patterns], got a "
	    "sequence" },
	{ "user: root\ndns:\n  nameservers: [ \"localhost\" ]\n", 1,
	    "3:18: dns.nameservers: bad address \"localhost\" (IPv4, "
	    "IPv4:port, IPv6 or [IPv6]:port; numeric only)" },
	{ "user: root\ndns:\n  nameservers: [ \"::1:53\" ]\n", 1,
	    "3:18: dns.nameservers: bad address \"::1:53\" (IPv4, IPv4:port, "
	    "IPv6 or [IPv6]:port; numeric only)" },
	{ "user: root\nauth: { max_failures: 0 }\n", 1,
	    "2:23: auth.max_failures: expected an integer from 1 to 100000, "
	    "got \"0\"" },
	{ "user: root\nauth: { cache: soon }\n", 1,
	    "2:16: auth.cache: bad duration \"soon\" (a number with s, m, h "
	    "or d, e.g. 5m)" },
	{ "user: root\nrelay: { mx_port: 0 }\n", 1,
	    "2:19: relay.mx_port: expected an integer from 1 to 65535, got "
	    "\"0\"" },
	{ "user: root\nspool: \"/a\\0b\"\n", 1,
	    "2:8: spool: value contains a NUL character" },
	{ "user: root\n---\nspool: /x\n", 1,
	    "3:1: only one YAML document is allowed" },
	{ "user: root\nspool: /a: b\n", 1,
	    "2:10: syntax error: mapping values are not allowed in this "
	    "context" },
	{ "user: root\ntls: [\n", 1,
	    "3:1: syntax error: did not find expected node content (while "
	    "parsing a flow node)" },
	{ "user: root\nspool: *nowhere\n", 1,
	    "2:8: syntax error: found undefined alias" },
	{ "user: root\nhostname: \"\xff\"\n", 1,
	    "2:12: syntax error: invalid leading UTF-8 octet" },
	/* Keep going: every problem of the file is reported. */
	{ "user: root\nfoo: 1\nlimits:\n  recipients: 0\n"
	  "log: { level: loud }\nbar: 2\n",
	    4,
	    "2:1: foo: unknown key (known keys: hostname, domain, user, "
	    "spool, log, listen, tls, auth, senders, limits, policy, relay, "
	    "dns, sandbox)" },
};

static void
test_bad_configs(void)
{
	struct config cfg;
	char path[256], want[1024];
	size_t i;
	int n;

	for (i = 0; i < sizeof(bad_configs) / sizeof(bad_configs[0]); i++) {
		const struct bad_config *b = &bad_configs[i];
		n = load(b->yaml, &cfg, false, path, sizeof(path));
		is_int(n, b->n, "bad config %zu: %d problem(s)", i + 1, b->n);
		is_int(nlines, b->n, "bad config %zu: as many lines reported",
		    i + 1);
		(void)snprintf(want, sizeof(want), "%s:%s", path, b->first);
		is_str(
		    nlines > 0 ? lines[0] : "", want, "reports %s", b->first);
		config_free(&cfg);
	}
}

/* Both value errors are reported in file order after the first. */
static void
test_keep_going(void)
{
	struct config cfg;
	char path[256], want[1024];

	is_int(load("user: root\nfoo: 1\nlimits:\n  recipients: 0\n"
		    "log: { level: loud }\nbar: 2\n",
		   &cfg, false, path, sizeof(path)),
	    4, "four mistakes, four problems");
	(void)snprintf(want, sizeof(want),
	    "%s:6:1: bar: unknown key (known keys: hostname, domain, user, "
	    "spool, log, listen, tls, auth, senders, limits, policy, relay, "
	    "dns, sandbox)",
	    path);
	is_str(lines[3], want, "the last one is reported too");
	config_free(&cfg);

	/* No user: key here, so the account msa may be missing as well. */
	is_int(load("- a\n- b\n", &cfg, false, path, sizeof(path)),
	    getpwnam("msa") != NULL ? 1 : 2, "a list is not a configuration");
	(void)snprintf(want, sizeof(want),
	    "%s:1:1: expected a mapping (key: "
	    "value) at the top level, got a sequence",
	    path);
	is_str(lines[0], want, "the top level must be a mapping");
	config_free(&cfg);
}

static void
test_too_many(void)
{
	struct buf b;
	struct config cfg;
	char path[256], want[512];
	int i;

	buf_init(&b);
	buf_addstr(&b, "user: root\nlisten:\n");
	for (i = 0; i < MAX_LISTEN + 1; i++)
		buf_printf(&b,
		    "  - { address: \"127.0.0.1:%d\", tls: "
		    "starttls }\n",
		    2000 + i);
	is_int(load(b.data, &cfg, false, path, sizeof(path)), 1,
	    "17 listen entries are one too many");
	(void)snprintf(want, sizeof(want),
	    "%s:%d:5: listen: more than %d "
	    "entries",
	    path, MAX_LISTEN + 3, MAX_LISTEN);
	is_str(lines[0], want, "the 17th entry is pointed at");
	is_int(cfg.nlisten, MAX_LISTEN, "the first 16 are kept");

	buf_reset(&b);
	buf_addstr(&b, "user: root\nsenders:\n  alice:\n");
	for (i = 0; i < MAX_RIGHTS; i++)
		buf_printf(&b, "    - \"a%d@example.org\"\n", i);
	is_int(load(b.data, &cfg, false, path, sizeof(path)), 1,
	    "64 patterns for one login are one too many");
	(void)snprintf(want, sizeof(want),
	    "%s:%d:7: senders.alice: too many "
	    "patterns (max %d)",
	    path, MAX_RIGHTS + 3, MAX_RIGHTS - 1);
	is_str(lines[0], want, "the 64th pattern is pointed at");
	config_free(&cfg);

	buf_reset(&b);
	buf_addstr(&b, "user: root\nhostname: ");
	for (i = 0; i < 300; i++)
		buf_addstr(&b, "a");
	buf_addstr(&b, "\n");
	is_int(load(b.data, &cfg, false, path, sizeof(path)), 1,
	    "a 300-character hostname");
	(void)snprintf(want, sizeof(want),
	    "%s:2:11: hostname: value too long (max 255 characters)", path);
	is_str(lines[0], want, "is too long for the field");
	buf_free(&b);
}

/* check_files: problems found on disk point at the key naming the file. */
static void
test_check_files(void)
{
	struct config cfg;
	char text[4096], path[256], want[2048], dir[256];
	const char *tmp = getenv("TMPDIR");

	if (bsnprintf(dir, sizeof(dir), "%s/unit_config_dir.XXXXXX",
		tmp != NULL && *tmp != '\0' ? tmp : "/tmp")
		== -1
	    || mkdtemp(dir) == NULL)
		fatal("mkdtemp");

	(void)snprintf(text, sizeof(text),
	    "user: root\n"
	    "spool: %s/missing/spool\n"
	    "tls:\n"
	    "  certificate: %s/cert.pem\n"
	    "  key: %s/key.pem\n"
	    "auth:\n"
	    "  users: %s/passwd\n"
	    "relay:\n"
	    "  mode: smarthost\n"
	    "  smarthost:\n"
	    "    host: 192.0.2.1\n"
	    "    username: me\n"
	    "    password_file: %s/secret\n",
	    dir, dir, dir, dir, dir);
	is_int(load(text, &cfg, true, path, sizeof(path)), 5,
	    "missing spool parent, cert, key, users and secret");
	(void)snprintf(want, sizeof(want),
	    "%s:2:1: spool: cannot create "
	    "%s/missing/spool: parent %s/missing: No such file or directory",
	    path, dir, dir);
	is_str(lines[0], want, "a spool without a parent is reported");
	(void)snprintf(want, sizeof(want),
	    "%s:4:3: tls.certificate: cannot "
	    "open %s/cert.pem: No such file or directory",
	    path, dir);
	is_str(lines[1], want, "a missing certificate is reported at its key");
	(void)snprintf(want, sizeof(want),
	    "%s:5:3: tls.key: cannot open "
	    "%s/key.pem: No such file or directory",
	    path, dir);
	is_str(lines[2], want, "a missing key is reported at its key");
	(void)snprintf(want, sizeof(want),
	    "%s:7:3: auth.users: cannot open "
	    "%s/passwd: No such file or directory",
	    path, dir);
	is_str(lines[3], want, "a missing password file is reported");
	(void)snprintf(want, sizeof(want),
	    "%s:13:5: "
	    "relay.smarthost.password_file: cannot open %s/secret: No such "
	    "file or directory",
	    path, dir);
	is_str(lines[4], want, "an unreadable smarthost secret is reported");

	/* A spool that is a file; the other files are directories. */
	(void)snprintf(text, sizeof(text),
	    "user: root\nspool: /etc/passwd\ntls: { certificate: %s, key: %s "
	    "}\nauth: { users: /dev/null }\n",
	    dir, dir);
	is_int(load(text, &cfg, true, path, sizeof(path)), 4,
	    "a spool that is a file, a directory as certificate and key, a "
	    "device as users");
	(void)snprintf(want, sizeof(want),
	    "%s:2:1: spool: /etc/passwd is not a directory", path);
	is_str(lines[0], want, "a spool that is not a directory is reported");
	(void)snprintf(want, sizeof(want),
	    "%s:3:8: tls.certificate: %s is not "
	    "a regular file",
	    path, dir);
	is_str(lines[1], want, "a certificate that is a directory");
	(void)snprintf(want, sizeof(want),
	    "%s:4:9: auth.users: /dev/null is "
	    "not a regular file",
	    path);
	is_str(lines[3], want, "a users file that is a device");
	config_free(&cfg);

	/* A spool that is missing while its parent exists is fine. */
	(void)snprintf(text, sizeof(text),
	    "user: root\nspool: %s/spool/\ntls: { certificate: /nonexistent/c, "
	    "key: /nonexistent/k }\nauth: { users: /nonexistent/u }\n",
	    dir);
	is_int(load(text, &cfg, true, path, sizeof(path)), 3,
	    "a spool to be created under an existing directory is fine");
	config_free(&cfg);

	/* Without check_files nothing on disk is looked at. */
	is_int(load(text, &cfg, false, path, sizeof(path)), 0,
	    "without check_files the same configuration is valid");
	config_free(&cfg);
	(void)rmdir(dir);
}

/* The default reporter writes to stderr; the hook can be reset. */
static void
test_reporter(void)
{
	struct config cfg;
	char path[256];

	config_set_reporter(NULL);
	nlines = 0;
	(void)printf("# one line on stderr is expected here:\n");
	(void)fflush(stdout);
	write_temp("user: root\nbogus: 1\n", path, sizeof(path));
	is_int(config_load(&cfg, path, false), 1,
	    "the default reporter counts the problem");
	is_int(nlines, 0, "and does not go through the test's hook");
	(void)unlink(path);
	config_set_reporter(capture);
	is_int(config_load(&cfg, "/nonexistent/msa.yaml", false), 1,
	    "a missing file is one problem");
	is_str(lines[0],
	    "/nonexistent/msa.yaml:1:1: cannot open: No such file "
	    "or directory",
	    "a missing file is reported by name");
}

int
main(void)
{
	config_set_reporter(capture);
	test_parse_duration();
	test_parse_size();
	test_parse_hostport();
	test_full_config();
	test_defaults();
	test_example();
	test_bad_configs();
	test_keep_going();
	test_too_many();
	test_check_files();
	test_reporter();
	return done_testing();
}

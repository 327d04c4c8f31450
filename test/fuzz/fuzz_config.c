/*
 * fuzz_config.c - the YAML configuration loader (config.c).
 *
 * The input is written to an in-memory file and loaded with check_files
 * off and the problem reporter silenced.  Invariants: every problem is a
 * "FILE:LINE:COL: message" line and their count is what config_load
 * returns; the loaded struct stays within its arrays and holds
 * NUL-terminated strings; a configuration without problems has its
 * values in range (hostname, domain, at least one listen socket, ports,
 * limits, retry.first <= retry.max); config_free releases everything
 * (LeakSanitizer checks).
 *
 * getaddrinfo() is replaced by a stub: without a "hostname" key the
 * loader asks the resolver for the system's FQDN, which would make every
 * run depend on the network (and be slow).
 */
#include <sys/mman.h>
#include <sys/types.h>

#include <ctype.h>
#include <fcntl.h>
#include <netdb.h>
#include <unistd.h>

#include "fuzz.h"

static char fuzz_path[64];
static unsigned fuzz_problems;
static bool fuzz_bad_line;

/* The resolver is out of the picture: no name has an address. */
int
getaddrinfo(const char *node, const char *service,
    const struct addrinfo *hints, struct addrinfo **res)
{
	(void)node;
	(void)service;
	(void)hints;
	*res = NULL;
	return EAI_NONAME;
}

/* "FILE:LINE:COL: message", LINE and COL 1-based. */
static void
fuzz_reporter(const char *line)
{
	size_t n = strlen(fuzz_path);
	const char *p = line + n;
	char *end;
	unsigned long l, c;

	fuzz_problems++;
	if (getenv("FUZZ_VERBOSE") != NULL)
		fprintf(stderr, "%s\n", line);
	if (strncmp(line, fuzz_path, n) != 0 || *p++ != ':') {
		fuzz_bad_line = true;
		return;
	}
	l = strtoul(p, &end, 10);
	if (end == p || *end != ':' || l == 0) {
		fuzz_bad_line = true;
		return;
	}
	p = end + 1;
	c = strtoul(p, &end, 10);
	if (end == p || strncmp(end, ": ", 2) != 0 || c == 0 ||
	    end[2] == '\0' || strchr(line, '\n') != NULL)
		fuzz_bad_line = true;
}

/*
 * The file lives in memory: a memfd, opened by config_load through its
 * /proc/self/fd path, so that nothing is left behind however the run ends.
 */
static int fuzz_fd = -1;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet();
	if ((fuzz_fd = memfd_create("msa-fuzz.yaml", MFD_CLOEXEC)) == -1 ||
	    bsnprintf(fuzz_path, sizeof(fuzz_path), "/proc/self/fd/%d",
	    fuzz_fd) == -1) {
		perror("memfd_create");
		abort();
	}
	config_set_reporter(fuzz_reporter);
	return 0;
}

static void
write_input(const uint8_t *data, size_t size)
{
	if (ftruncate(fuzz_fd, 0) == -1 || lseek(fuzz_fd, 0, SEEK_SET) == -1 ||
	    (size > 0 && write_all(fuzz_fd, data, size) == -1)) {
		perror(fuzz_path);
		abort();
	}
}

static void
check_strings(const struct config *cfg)
{
	size_t i;

	FUZZ_CHECK(fuzz_fits(cfg->path, sizeof(cfg->path)) &&
	    fuzz_fits(cfg->hostname, sizeof(cfg->hostname)) &&
	    fuzz_fits(cfg->domain, sizeof(cfg->domain)) &&
	    fuzz_fits(cfg->user, sizeof(cfg->user)) &&
	    fuzz_fits(cfg->spool, sizeof(cfg->spool)) &&
	    fuzz_fits(cfg->tls_certificate, sizeof(cfg->tls_certificate)) &&
	    fuzz_fits(cfg->tls_key, sizeof(cfg->tls_key)) &&
	    fuzz_fits(cfg->auth_users, sizeof(cfg->auth_users)) &&
	    fuzz_fits(cfg->smarthost_host, sizeof(cfg->smarthost_host)) &&
	    fuzz_fits(cfg->smarthost_username,
	    sizeof(cfg->smarthost_username)) &&
	    fuzz_fits(cfg->smarthost_password_file,
	    sizeof(cfg->smarthost_password_file)), "unterminated string");
	FUZZ_CHECK(cfg->nlisten <= MAX_LISTEN, "%zu listen entries",
	    cfg->nlisten);
	for (i = 0; i < cfg->nlisten; i++)
		FUZZ_CHECK(fuzz_fits(cfg->listen[i].address,
		    sizeof(cfg->listen[i].address)), "listen address");
	FUZZ_CHECK(cfg->nnameservers <= MAX_NAMESERVERS, "%zu nameservers",
	    cfg->nnameservers);
	for (i = 0; i < cfg->nnameservers; i++)
		FUZZ_CHECK(fuzz_fits(cfg->nameservers[i].text,
		    sizeof(cfg->nameservers[i].text)), "nameserver text");
	FUZZ_CHECK(cfg->nsenders == 0 || cfg->senders != NULL,
	    "senders count without array");
	for (i = 0; i < cfg->nsenders; i++)
		FUZZ_CHECK(fuzz_fits(cfg->senders[i].login, MAX_LOGIN) &&
		    fuzz_fits(cfg->senders[i].pattern, MAX_ADDR),
		    "sender rule %zu", i);
}

/*
 * The queue's retry arithmetic on the loaded durations (a message queued
 * now, any number of attempts, either jitter): a valid configuration must
 * not make it overflow (UBSan) or go back in time.
 */
static void
check_retry(const struct config *cfg)
{
	static const unsigned attempts[] = { 1, 2, 30, 64, 1000000 };
	const time_t now = 1795973482;
	time_t t;
	size_t i;
	int j;

	for (i = 0; i < sizeof(attempts) / sizeof(attempts[0]); i++)
		for (j = -100; j <= 100; j += 200) {
			t = queue_retry_time(cfg, now, attempts[i], now, j);
			FUZZ_CHECK(t == 0 || t > now,
			    "retry at %lld, before now", (long long)t);
		}
}

/* What the rest of msa takes for granted once the file is valid. */
static void
check_valid(const struct config *cfg)
{
	size_t i;

	FUZZ_CHECK(cfg->hostname[0] != '\0' && cfg->domain[0] != '\0',
	    "no hostname or domain");
	FUZZ_CHECK(cfg->spool[0] == '/', "relative spool %s", cfg->spool);
	FUZZ_CHECK(cfg->nlisten >= 1, "no listen socket");
	for (i = 0; i < cfg->nlisten; i++) {
		const struct listen_cfg *l = &cfg->listen[i];

		FUZZ_CHECK(l->sslen > 0 && l->sslen <= sizeof(l->ss) &&
		    (l->ss.ss_family == AF_INET || l->ss.ss_family == AF_INET6),
		    "listen %zu has no address", i);
	}
	for (i = 0; i < cfg->nnameservers; i++)
		FUZZ_CHECK(cfg->nameservers[i].sslen > 0,
		    "nameserver %zu has no address", i);
	FUZZ_CHECK(cfg->max_sessions_per_ip <= cfg->max_sessions,
	    "per-ip over sessions");
	FUZZ_CHECK(cfg->max_recipients >= 1 &&
	    cfg->max_recipients <= MAX_RCPT_LIMIT, "recipients %u",
	    cfg->max_recipients);
	FUZZ_CHECK(cfg->retry_first > 0 && cfg->retry_first <= cfg->retry_max,
	    "retry first %lld max %lld", (long long)cfg->retry_first,
	    (long long)cfg->retry_max);
	FUZZ_CHECK(cfg->message_size > 0, "message_size 0");
	FUZZ_CHECK(cfg->relay_concurrency >= 1, "relay concurrency 0");
	FUZZ_CHECK(cfg->mx_port != 0, "mx_port 0");
	FUZZ_CHECK(cfg->tls_min_version != 0, "no TLS minimum");
	if (cfg->relay_mode == RELAY_SMARTHOST)
		FUZZ_CHECK(cfg->smarthost_host[0] != '\0' &&
		    cfg->smarthost_port != 0, "smarthost without host");
	for (i = 0; i < cfg->nsenders; i++)
		FUZZ_CHECK(cfg->senders[i].login[0] != '\0' &&
		    cfg->senders[i].pattern[0] != '\0', "empty sender rule %zu",
		    i);
	check_retry(cfg);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config *cfg;
	int n;

	if (size > 64 * 1024)
		return 0;
	write_input(data, size);
	cfg = malloc(sizeof(*cfg));
	if (cfg == NULL)
		abort();
	fuzz_problems = 0;
	fuzz_bad_line = false;
	n = config_load(cfg, fuzz_path, false);
	FUZZ_CHECK(n >= 0 && (unsigned)n == fuzz_problems,
	    "config_load says %d problems, %u reported", n, fuzz_problems);
	FUZZ_CHECK(!fuzz_bad_line, "a problem not as FILE:LINE:COL: message");
	check_strings(cfg);
	if (n == 0)
		check_valid(cfg);
	config_free(cfg);
	FUZZ_CHECK(cfg->senders == NULL && cfg->nsenders == 0,
	    "config_free left senders");
	free(cfg);
	return 0;
}

/*
 * fuzz_smtp_cmd.c - the SMTP command parsers of the session (smtp.c).
 *
 * The input is one client line, cleaned as smtp_getline() would leave it
 * (CR LF and trailing blanks removed; a line holding NUL or CR never
 * reaches a parser).  It goes through smtp_command_lookup() and the
 * parser of its verb, and every parser also sees the whole line, since
 * they are cheap and a different prefix finds different paths.
 *
 * Invariants: the verb and argument split is consistent; an accepted
 * MAIL/RCPT address is printable ASCII, qualified, no longer than a path
 * may be, and parses again to itself when written back as <addr> (it goes
 * on the wire in MAIL FROM / RCPT TO); refusals carry a reply; base64
 * output stays inside its buffer and decodes its own re-encoding; AUTH
 * results fit their buffers.
 */
#include <ctype.h>
#include <stdbool.h>
#include <strings.h>

#include "fuzz.h"

#define DOMAIN "example.org"
#define MAXSIZE (25 * 1024 * 1024)

FUZZ_INIT_QUIET

static bool
reply_ok(int code, const char *reply, const int *allowed)
{
	size_t i;

	if (code == 0)
		return true;
	for (i = 0; allowed[i] != 0; i++)
		if (allowed[i] == code)
			return reply[0] != '\0' && isdigit((unsigned char)reply[0]);
	return false;
}

/*
 * The relay refuses a job whose addresses it could not put on a command
 * line (relay_job_parse); the session must not accept such an address,
 * or the message is queued and then retried until it bounces.
 */
static void
check_relay_accepts(const char *addr)
{
	unsigned char frame[sizeof(struct ipc_relay_job) +
	    sizeof(struct ipc_rcpt)];
	struct ipc_relay_job job;
	struct ipc_rcpt rcpt;
	const struct ipc_rcpt *r = NULL;
	char err[256];

	memset(&job, 0, sizeof(job));
	memset(&rcpt, 0, sizeof(rcpt));
	memcpy(job.id, "0123456789abcdef", QUEUE_ID_LEN);
	strlcpy_msa(job.sender, addr, sizeof(job.sender));
	strlcpy_msa(job.domain, "example.org", sizeof(job.domain));
	job.nrcpt = 1;
	strlcpy_msa(rcpt.addr, addr, sizeof(rcpt.addr));
	memcpy(frame, &job, sizeof(job));
	memcpy(frame + sizeof(job), &rcpt, sizeof(rcpt));
	/* Known: a quoted local part may hold '<' or '>' (report 1). */
	FUZZ_CHECK(relay_job_parse(frame, sizeof(frame), &job, &r, err,
	    sizeof(err)) == 0, "relay refuses accepted address %s: %s", addr,
	    err);
}

/* What goes on the wire again must be plain, bounded and stable. */
static void
check_path_addr(const char *addr, bool null_ok)
{
	char again[MAX_ADDR + 8], wire[MAX_ADDR + 8];
	const char *rest = NULL, *p;

	FUZZ_CHECK(fuzz_fits(addr, MAX_ADDR), "address overflows MAX_ADDR");
	if (addr[0] == '\0') {
		FUZZ_CHECK(null_ok, "empty address accepted");
		return;
	}
	FUZZ_CHECK(strlen(addr) <= 254, "path longer than RFC 5321 allows: %zu",
	    strlen(addr));
	for (p = addr; *p != '\0'; p++)
		FUZZ_CHECK(((unsigned char)*p > 0x20 &&
		    (unsigned char)*p < 0x7f) || (*p == ' ' && addr[0] == '"'),
		    "accepted address holds byte 0x%02x", (unsigned char)*p);
	FUZZ_CHECK(strchr(addr, '@') != NULL && addr[0] != '@',
	    "accepted address not qualified: \"%s\"", addr);
	/* Known: "<\"a@b\">" is taken as qualified, domain b" (report 2). */
	FUZZ_CHECK(strrchr(addr, '"') == NULL ||
	    strrchr(addr, '"') < strrchr(addr, '@'),
	    "quoted local part left unqualified: %s", addr);
	FUZZ_CHECK(bsnprintf(wire, sizeof(wire), "<%s>", addr) == 0,
	    "cannot write path");
	FUZZ_CHECK(addr_parse_path(wire, again, sizeof(again), &rest) == 0,
	    "accepted address does not parse again: %s", wire);
	FUZZ_CHECK(strcmp(again, addr) == 0, "re-parse changed %s into %s",
	    addr, again);
	FUZZ_CHECK(rest != NULL && *rest == '\0', "stray rest after %s", wire);
	check_relay_accepts(addr);
}

static void
fuzz_lookup(const char *line, size_t len)
{
	static const char poison[] = "unset";
	const char *arg = poison, *verb;
	size_t n;

	verb = smtp_command_lookup(line, &arg);
	if (verb == NULL) {
		FUZZ_CHECK(arg == NULL, "unknown verb but arg set");
		return;
	}
	n = strlen(verb);
	FUZZ_CHECK(strncasecmp(line, verb, n) == 0, "verb %s not at start",
	    verb);
	FUZZ_CHECK(line[n] == '\0' || line[n] == ' ' || line[n] == '\t',
	    "verb %s not followed by a blank", verb);
	FUZZ_CHECK(arg >= line + n && arg <= line + len,
	    "arg outside the line");
	FUZZ_CHECK(*arg != ' ' && *arg != '\t', "arg starts with a blank");
}

static void
fuzz_mail(const char *arg, uint64_t maxsize)
{
	static const int allowed[] = { 501, 552, 555, 0 };
	struct smtp_mail_args m;
	char reply[128];
	int code;

	reply[0] = '\0';
	code = smtp_parse_mail(arg, DOMAIN, maxsize, &m, reply, sizeof(reply));
	FUZZ_CHECK(reply_ok(code, reply, allowed), "MAIL code %d reply \"%s\"",
	    code, reply);
	if (code != 0)
		return;
	check_path_addr(m.addr, true);
	FUZZ_CHECK(m.size <= maxsize, "SIZE %llu over %llu accepted",
	    (unsigned long long)m.size, (unsigned long long)maxsize);
}

static void
fuzz_rcpt(const char *arg)
{
	static const int allowed[] = { 501, 555, 0 };
	char out[MAX_ADDR], reply[128];
	int code;

	reply[0] = '\0';
	code = smtp_parse_rcpt(arg, DOMAIN, out, sizeof(out), reply,
	    sizeof(reply));
	FUZZ_CHECK(reply_ok(code, reply, allowed), "RCPT code %d reply \"%s\"",
	    code, reply);
	if (code == 0)
		check_path_addr(out, false);
}

/* RFC 4648 encoder, to check that what was decoded decodes back. */
static char *
b64_encode(const unsigned char *in, size_t len)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
	char *out = malloc((len + 2) / 3 * 4 + 1), *o = out;
	size_t i;

	if (out == NULL)
		abort();
	for (i = 0; i + 2 < len; i += 3) {
		*o++ = a[in[i] >> 2];
		*o++ = a[(in[i] & 3) << 4 | in[i + 1] >> 4];
		*o++ = a[(in[i + 1] & 15) << 2 | in[i + 2] >> 6];
		*o++ = a[in[i + 2] & 63];
	}
	if (len - i == 1) {
		*o++ = a[in[i] >> 2];
		*o++ = a[(in[i] & 3) << 4];
		*o++ = '=';
		*o++ = '=';
	} else if (len - i == 2) {
		*o++ = a[in[i] >> 2];
		*o++ = a[(in[i] & 3) << 4 | in[i + 1] >> 4];
		*o++ = a[(in[i + 1] & 15) << 2];
		*o++ = '=';
	}
	*o = '\0';
	return out;
}

/* Decode into a heap buffer of exactly outlen bytes (ASan sees overflow). */
static void
fuzz_b64(const char *in, size_t outlen)
{
	unsigned char *out = malloc(outlen > 0 ? outlen : 1), *back;
	size_t len = strlen(in);
	ssize_t n, m;
	char *enc;

	if (out == NULL)
		abort();
	n = smtp_b64_decode(in, out, outlen);
	if (n >= 0) {
		FUZZ_CHECK((size_t)n <= outlen, "decoded %zd > %zu", n, outlen);
		FUZZ_CHECK(len % 4 == 0 && (size_t)n <= len / 4 * 3 &&
		    (size_t)n + 2 >= len / 4 * 3,
		    "decoded length %zd from %zu characters", n, len);
		enc = b64_encode(out, (size_t)n);
		back = malloc((size_t)n + 1);
		if (back == NULL)
			abort();
		m = smtp_b64_decode(enc, back, (size_t)n);
		FUZZ_CHECK(m == n && memcmp(back, out, (size_t)n) == 0,
		    "re-encoding does not decode back");
		free(back);
		free(enc);
	}
	n = smtp_auth_decode(in, out, outlen);
	FUZZ_CHECK(n < 0 || (size_t)n <= outlen, "auth decode overflow");
	if (strcmp(in, "=") == 0)
		FUZZ_CHECK(n == 0, "\"=\" is the empty response");
	free(out);
}

static void
fuzz_auth_plain(const char *b64, size_t userlen, size_t passlen)
{
	char *user = malloc(userlen), *pass = malloc(passlen);
	int code;

	if (user == NULL || pass == NULL)
		abort();
	code = smtp_auth_plain_parse(b64, user, userlen, pass, passlen);
	FUZZ_CHECK(code == 0 || code == 501 || code == 535,
	    "AUTH PLAIN code %d", code);
	if (code == 0) {
		FUZZ_CHECK(fuzz_fits(user, userlen) && fuzz_fits(pass, passlen),
		    "AUTH PLAIN result overflows");
		FUZZ_CHECK(user[0] != '\0', "AUTH PLAIN with an empty user");
	}
	free(user);
	free(pass);
}

static void
fuzz_auth_login(const char *b64, size_t outlen)
{
	char *out = malloc(outlen);
	int code;

	if (out == NULL)
		abort();
	code = smtp_auth_login_parse(b64, out, outlen);
	FUZZ_CHECK(code == 0 || code == 501 || code == 535,
	    "AUTH LOGIN code %d", code);
	if (code == 0)
		FUZZ_CHECK(fuzz_fits(out, outlen), "AUTH LOGIN overflows");
	free(out);
}

/* AUTH MECH [initial-response], split as smtp_run_auth() does. */
static void
fuzz_auth(const char *arg)
{
	char *copy = strdup(arg), *ir;
	size_t n;

	if (copy == NULL)
		abort();
	n = strcspn(copy, " \t");
	ir = copy + n;
	if (*ir != '\0') {
		*ir++ = '\0';
		while (*ir == ' ' || *ir == '\t')
			ir++;
	}
	if (strcasecmp(copy, "PLAIN") == 0)
		fuzz_auth_plain(ir, MAX_LOGIN, MAX_PASSWORD);
	else if (strcasecmp(copy, "LOGIN") == 0)
		fuzz_auth_login(ir, MAX_LOGIN);
	free(copy);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *verb, *arg;
	uint64_t maxsize;
	size_t len, small;
	char *line;

	if (size < 1 || size > AUTH_LINE_MAX + 2)
		return 0;
	/* The first byte picks the odd sizes; the rest is the line. */
	small = data[0] % 64;
	maxsize = data[0] & 0x80 ? MAXSIZE : (uint64_t)data[0] * 1000;
	line = fuzz_cstr(data + 1, size - 1);
	len = size - 1;
	/* As smtp_getline() delivers it. */
	if (memchr(line, '\n', len) != NULL)
		len = (size_t)((char *)memchr(line, '\n', len) - line);
	if (len > 0 && line[len - 1] == '\r')
		len--;
	while (len > 0 && (line[len - 1] == ' ' || line[len - 1] == '\t'))
		len--;
	line[len] = '\0';
	if (memchr(line, '\0', len) != NULL || memchr(line, '\r', len) != NULL)
		goto out;

	fuzz_lookup(line, len);
	verb = smtp_command_lookup(line, &arg);
	if (verb != NULL && strcmp(verb, "MAIL") == 0)
		fuzz_mail(arg, maxsize);
	else if (verb != NULL && strcmp(verb, "RCPT") == 0)
		fuzz_rcpt(arg);
	else if (verb != NULL && strcmp(verb, "AUTH") == 0)
		fuzz_auth(arg);
	else if (verb != NULL && (strcmp(verb, "EHLO") == 0 ||
	    strcmp(verb, "HELO") == 0)) {
		if (smtp_valid_helo(arg))
			FUZZ_CHECK(strlen(arg) < MAX_DOMAIN &&
			    strpbrk(arg, " \t()\\;\"<>") == NULL,
			    "HELO name unsafe for Received: %s", arg);
	}

	/* Every parser on the whole line, and at odd buffer sizes. */
	fuzz_mail(line, MAXSIZE);
	fuzz_rcpt(line);
	fuzz_b64(line, len);
	fuzz_b64(line, small);
	fuzz_auth_plain(line, MAX_LOGIN, MAX_PASSWORD);
	fuzz_auth_plain(line, small + 1, small + 1);
	fuzz_auth_login(line, MAX_LOGIN);
	fuzz_auth_login(line, small + 1);
	(void)smtp_valid_helo(line);
out:
	free(line);
	return 0;
}

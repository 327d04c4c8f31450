/*
 * fuzz_policy.c - the header parser and the RFC 6409 fix-ups (policy.c).
 *
 * Input: 1 control byte, then a header section as the DATA reader hands
 * it over (lines ended by CR LF, without the empty line).
 *   bit 0: from_mismatch add-sender instead of reject
 *   bit 1: remove_bcc off
 *   bit 2: hide_client_ip
 *   bits 3-4: the envelope sender (one the login may use, or <>)
 *   bit 5: no TLS
 * Configuration and login rights are otherwise fixed: login alice with
 * alice@example.org, alice+*@example.org and @family.example.
 *
 * Invariants: a rejection is 553/554 with a reply and leaves out as it
 * was; an accepted section is clean (CR LF lines, none over 998 octets,
 * no NUL, starts with Received, ends with the empty line, exactly one
 * From, Date and Message-ID, no Bcc when removed, at most one Sender).
 * Fed to policy_apply again, it is accepted - a fix-up never produces
 * what policy itself refuses, size limits apart - and the second pass
 * changes nothing but a second Received field.
 */
#include <strings.h>

#include "fuzz.h"

#define NOW ((time_t)1795973482) /* Sun, 29 Nov 2026 17:31:22 UTC */
#define PREFIX "PREFIX" /* what out held before: must survive a reject */
#define UNDISCLOSED "To: undisclosed-recipients:;\r\n"

static struct login_rights alice;

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	fuzz_quiet();
	setenv("TZ", "Europe/Berlin", 1);
	tzset();
	strlcpy_msa(alice.login, "alice", sizeof(alice.login));
	strlcpy_msa(alice.patterns[alice.n++], "alice@example.org", MAX_ADDR);
	strlcpy_msa(alice.patterns[alice.n++], "alice+*@example.org",
	    MAX_ADDR);
	strlcpy_msa(alice.patterns[alice.n++], "@family.example", MAX_ADDR);
	return 0;
}

static void
setup(uint8_t ctl, struct config *cfg, struct policy_ctx *pc)
{
	static const char *const senders[] = { "alice@example.org", "",
		"alice+lists@example.org", "grandma@family.example" };

	memset(cfg, 0, sizeof(*cfg));
	strlcpy_msa(cfg->hostname, "mail.example.org", sizeof(cfg->hostname));
	strlcpy_msa(cfg->domain, "example.org", sizeof(cfg->domain));
	cfg->from_mismatch = ctl & 1 ? FROM_MISMATCH_ADD_SENDER :
	    FROM_MISMATCH_REJECT;
	cfg->remove_bcc = !(ctl & 2);
	cfg->hide_client_ip = ctl & 4;

	memset(pc, 0, sizeof(*pc));
	pc->cfg = cfg;
	pc->rights = &alice;
	pc->sender = senders[(ctl >> 3) & 3];
	pc->client = "192.0.2.7";
	pc->helo = "laptop.example.org";
	pc->tls_version = ctl & 32 ? NULL : "TLSv1.3";
	pc->tls_cipher = ctl & 32 ? NULL : "TLS_AES_256_GCM_SHA384";
	pc->queue_id = "0123456789abcdef";
	pc->now = NOW;
}

/* Rejections that only say the section grew past a limit. */
static bool
size_limit(const char *reply)
{
	return strstr(reply, "larger than") != NULL ||
	    strstr(reply, "More than") != NULL ||
	    strstr(reply, "longer than") != NULL ||
	    strstr(reply, "too long") != NULL;
}

/* Where the field starting at pos ends (after its last CR LF). */
static size_t
field_end(const char *s, size_t len, size_t pos)
{
	const char *cr;

	for (;;) {
		cr = memchr(s + pos, '\r', len - pos);
		FUZZ_CHECK(cr != NULL && (size_t)(cr - s) + 1 < len &&
		    cr[1] == '\n', "output line not ended by CRLF");
		pos = (size_t)(cr - s) + 2;
		if (pos >= len || (s[pos] != ' ' && s[pos] != '\t'))
			return pos;
	}
}

static bool
name_is(const char *f, size_t flen, const char *name)
{
	size_t n = strlen(name);

	if (flen <= n || strncasecmp(f, name, n) != 0)
		return false;
	/* obs-optional: blanks may stand before the colon */
	while (n < flen && (f[n] == ' ' || f[n] == '\t'))
		n++;
	return n < flen && f[n] == ':';
}

/* Does the section hold a To, Cc or Bcc field? */
static bool
has_dest(const char *s, size_t len)
{
	size_t pos = 0, end;

	len -= 2;
	while (pos < len) {
		end = field_end(s, len, pos);
		if (name_is(s + pos, end - pos, "To") ||
		    name_is(s + pos, end - pos, "Cc") ||
		    name_is(s + pos, end - pos, "Bcc"))
			return true;
		pos = end;
	}
	return false;
}

/* The shape of an accepted section; returns the Received field's length. */
static size_t
check_output(const char *s, size_t len, const struct config *cfg)
{
	size_t pos = 0, end, first = 0, i, col;
	unsigned from = 0, date = 0, msgid = 0, sender = 0, bcc = 0;

	FUZZ_CHECK(len >= 2 && s[len - 2] == '\r' && s[len - 1] == '\n',
	    "output does not end with the empty line");
	FUZZ_CHECK(memchr(s, '\0', len) == NULL, "NUL in the output");
	for (i = 0, col = 0; i < len; i++) {
		if (s[i] == '\r') {
			FUZZ_CHECK(i + 1 < len && s[i + 1] == '\n',
			    "bare CR in output");
			col = 0;
			i++;
			continue;
		}
		FUZZ_CHECK(s[i] != '\n', "bare LF in output");
		FUZZ_CHECK(++col <= 998, "output line over 998 octets");
	}
	FUZZ_CHECK(strncmp(s, "Received: ", 10) == 0,
	    "output does not start with Received");
	len -= 2; /* the empty line */
	while (pos < len) {
		FUZZ_CHECK(s[pos] != '\r', "empty line inside the output");
		end = field_end(s, len, pos);
		if (first == 0)
			first = end;
		from += name_is(s + pos, end - pos, "From");
		date += name_is(s + pos, end - pos, "Date");
		msgid += name_is(s + pos, end - pos, "Message-ID");
		sender += name_is(s + pos, end - pos, "Sender");
		bcc += name_is(s + pos, end - pos, "Bcc");
		pos = end;
	}
	FUZZ_CHECK(from == 1, "%u From fields", from);
	FUZZ_CHECK(date >= 1 && msgid >= 1, "Date %u, Message-ID %u", date,
	    msgid);
	FUZZ_CHECK(sender <= 1, "%u Sender fields", sender);
	if (cfg->remove_bcc)
		FUZZ_CHECK(bcc == 0, "Bcc left in the output");
	return first;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct config cfg;
	struct policy_ctx pc;
	struct buf out, again;
	char reply[MAX_REPLY], reply2[MAX_REPLY];
	const char *o;
	size_t olen, rlen, extra;
	bool nodest;
	char *hdr;
	int rc;

	if (size < 1)
		return 0;
	setup(data[0], &cfg, &pc);
	hdr = fuzz_bytes(data + 1, size - 1);
	buf_init(&out);
	buf_init(&again);
	buf_addstr(&out, PREFIX);

	rc = policy_apply(&pc, hdr, size - 1, &out, reply, sizeof(reply));
	FUZZ_CHECK(rc == 0 || rc == 553 || rc == 554, "policy code %d", rc);
	if (rc != 0) {
		FUZZ_CHECK(reply[0] == '5' && strlen(reply) > 6,
		    "rejection %d without a reply", rc);
		FUZZ_CHECK(out.len == strlen(PREFIX) &&
		    memcmp(out.data, PREFIX, out.len) == 0,
		    "a rejection changed the output buffer");
		goto done;
	}
	FUZZ_CHECK(out.len > strlen(PREFIX) &&
	    memcmp(out.data, PREFIX, strlen(PREFIX)) == 0,
	    "output did not append");
	o = out.data + strlen(PREFIX);
	olen = out.len - strlen(PREFIX);
	rlen = check_output(o, olen, &cfg);

	/* Again, without the empty line: accepted, and nothing new. */
	rc = policy_apply(&pc, o, olen - 2, &again, reply2, sizeof(reply2));
	if (rc != 0 && size_limit(reply2))
		goto done;
	FUZZ_CHECK(rc == 0, "policy refuses its own output: %d %s", rc,
	    reply2);
	/*
	 * The one expected difference: a message whose only destination
	 * field was a removed Bcc has none left, and the second pass adds
	 * "To: undisclosed-recipients:;" after the other fields.
	 */
	nodest = !has_dest(o, olen);
	if (nodest)
		FUZZ_CHECK(cfg.remove_bcc, "no destination field kept");
	extra = nodest ? strlen(UNDISCLOSED) : 0;
	if (getenv("FUZZ_VERBOSE") != NULL)
		fprintf(stderr, "first:\n%.*s\nsecond:\n%.*s\n", (int)olen, o,
		    (int)again.len, again.data);
	FUZZ_CHECK(again.len == rlen + olen + extra &&
	    memcmp(again.data, o, rlen) == 0 &&
	    memcmp(again.data + rlen, o, olen - 2) == 0 &&
	    (!nodest || memcmp(again.data + rlen + olen - 2, UNDISCLOSED,
	    extra) == 0),
	    "second pass changed more than the Received field");
done:
	buf_free(&out);
	buf_free(&again);
	free(hdr);
	return 0;
}

/*
 * unit_smtp.c - the session's parsers and the DATA state machine.
 *
 * The DATA reader is fed every input byte by byte, in small odd chunks and
 * whole, and must give the same answer each way: a client chooses where
 * its TCP segments end, and an attacker chooses it on purpose.
 */
#include "msa.h"

#include <stdlib.h>

#include "tap.h"

/* ------------------------------------------------------------------ */
/* Command lines                                                       */

static void
test_commands(void)
{
	const char *arg = NULL;

	is_str(smtp_command_lookup("MAIL FROM:<a@b.example>", &arg), "MAIL",
	    "MAIL is a command");
	is_str(arg, "FROM:<a@b.example>", "MAIL's argument is what follows");
	is_str(smtp_command_lookup("mail from:<a@b.example>", &arg), "MAIL",
	    "verbs are case-insensitive");
	is_str(smtp_command_lookup("eHlO client.example", &arg), "EHLO",
	    "mixed-case EHLO is EHLO");
	is_str(arg, "client.example", "EHLO's argument is the client name");
	is_str(smtp_command_lookup("NOOP", &arg), "NOOP",
	    "NOOP without argument");
	is_str(arg, "", "a command without argument has an empty one");
	is_str(smtp_command_lookup("RCPT   TO:<x@y.example>", &arg), "RCPT",
	    "several spaces after the verb");
	is_str(arg, "TO:<x@y.example>", "the spaces are not in the argument");
	is_str(smtp_command_lookup("StartTLS", &arg), "STARTTLS",
	    "STARTTLS in any case");
	ok(smtp_command_lookup("MAILX FROM:<a@b>", &arg) == NULL,
	    "MAILX is not MAIL");
	ok(smtp_command_lookup("MAI", &arg) == NULL, "MAI is not MAIL");
	ok(smtp_command_lookup("", &arg) == NULL, "an empty line is no command");
	ok(smtp_command_lookup(" NOOP", &arg) == NULL,
	    "a leading space makes the verb unknown");
	ok(smtp_command_lookup("BDAT 100 LAST", &arg) == NULL,
	    "BDAT is not offered (no CHUNKING)");
	is_str(smtp_command_lookup("AUTH PLAIN AGFsaWNlAHNlY3JldA==", &arg),
	    "AUTH", "AUTH with an initial response");
	is_str(arg, "PLAIN AGFsaWNlAHNlY3JldA==",
	    "the mechanism and the response are the argument");

	ok(smtp_valid_helo("mail.example.org"), "EHLO mail.example.org is fine");
	ok(smtp_valid_helo("[192.0.2.1]"), "EHLO with an address literal");
	ok(smtp_valid_helo("[IPv6:2001:db8::1]"), "EHLO with an IPv6 literal");
	ok(smtp_valid_helo("my_laptop"), "EHLO with an underscore");
	ok(!smtp_valid_helo("two words"), "EHLO with a space is refused");
	ok(!smtp_valid_helo("a(b)"), "EHLO with a comment char is refused");
	ok(!smtp_valid_helo(""), "an empty EHLO name is refused");
}

/* ------------------------------------------------------------------ */
/* MAIL and RCPT                                                       */

#define DOMAIN "example.org"
#define MAXSIZE 1000

static int
mail(const char *arg, struct smtp_mail_args *m, char *reply)
{
	return smtp_parse_mail(arg, DOMAIN, MAXSIZE, m, reply, 128);
}

static void
test_mail(void)
{
	struct smtp_mail_args m;
	char reply[128];

	is_int(mail("FROM:<alice@example.org>", &m, reply), 0,
	    "MAIL FROM:<alice@example.org> is accepted");
	is_str(m.addr, "alice@example.org", "the sender is the address");
	is_int(mail("from:<alice@example.org>", &m, reply), 0,
	    "from: in lower case is accepted");
	is_int(mail("FROM: <alice@example.org>", &m, reply), 0,
	    "one space after the colon is tolerated");
	is_int(mail("FROM:<>", &m, reply), 0, "the null sender is accepted");
	is_str(m.addr, "", "the null sender is empty");
	is_int(mail("FROM:<alice>", &m, reply), 0,
	    "a bare local part is accepted");
	is_str(m.addr, "alice@example.org", "and qualified with the domain");
	is_int(mail("TO:<alice@example.org>", &m, reply), 501,
	    "MAIL TO: is a syntax error");
	is_int(mail("FROM:<alice@example.org", &m, reply), 501,
	    "an unclosed path is a syntax error");
	is_str(reply, "5.1.7 Bad sender address syntax",
	    "bad sender syntax says 5.1.7");
	is_int(mail("FROM:alice@example.org", &m, reply), 501,
	    "a path without brackets is refused");

	is_int(mail("FROM:<a@example.org> SIZE=1000", &m, reply), 0,
	    "SIZE at the limit is accepted");
	is_int((int)m.size, 1000, "SIZE is parsed");
	is_int(mail("FROM:<a@example.org> SIZE=1001", &m, reply), 552,
	    "SIZE over the limit is refused with 552");
	is_str(reply, "5.3.4 Message size exceeds fixed limit",
	    "with 5.3.4");
	is_int(mail("FROM:<a@example.org> SIZE=12x", &m, reply), 501,
	    "SIZE with a non-digit is a syntax error");
	is_int(mail("FROM:<a@example.org> SIZE=", &m, reply), 501,
	    "SIZE without a value is a syntax error");
	is_int(mail("FROM:<a@example.org> SIZE=123456789012345678901", &m,
		   reply),
	    501, "a SIZE too long to be a number is a syntax error");
	is_int(mail("FROM:<a@example.org> BODY=8BITMIME", &m, reply), 0,
	    "BODY=8BITMIME is accepted");
	ok(m.body_8bit, "BODY=8BITMIME marks the body 8-bit");
	is_int(mail("FROM:<a@example.org> body=7bit size=10", &m, reply), 0,
	    "parameters are case-insensitive");
	ok(!m.body_8bit && m.size == 10, "BODY=7BIT and SIZE=10 both seen");
	is_int(mail("FROM:<a@example.org> BODY=BINARYMIME", &m, reply), 501,
	    "BODY=BINARYMIME is refused");
	is_int(mail("FROM:<a@example.org> AUTH=<>", &m, reply), 0,
	    "AUTH=<> is accepted and ignored");
	is_int(mail("FROM:<a@example.org> SMTPUTF8", &m, reply), 555,
	    "SMTPUTF8 is not offered: 555");
	is_int(mail("FROM:<a@example.org> RET=HDRS", &m, reply), 555,
	    "DSN parameters are not offered: 555");
	is_str(reply, "5.5.4 Unsupported MAIL parameter", "with 5.5.4");
}

static int
rcpt(const char *arg, char *out, char *reply)
{
	return smtp_parse_rcpt(arg, DOMAIN, out, MAX_ADDR, reply, 128);
}

static void
test_rcpt(void)
{
	char out[MAX_ADDR], reply[128];

	is_int(rcpt("TO:<bob@example.net>", out, reply), 0,
	    "RCPT TO:<bob@example.net> is accepted");
	is_str(out, "bob@example.net", "the recipient is the address");
	is_int(rcpt("to: <bob>", out, reply), 0,
	    "a bare local part is a recipient");
	is_str(out, "bob@example.org", "qualified with the domain");
	is_int(rcpt("TO:<>", out, reply), 501, "RCPT TO:<> is refused");
	is_str(reply, "5.1.3 Bad recipient address syntax",
	    "bad recipient syntax says 5.1.3");
	is_int(rcpt("TO:<bob@>", out, reply), 501,
	    "an empty domain is refused");
	is_int(rcpt("TO:<bob@example.net", out, reply), 501,
	    "an unclosed path is refused");
	is_int(rcpt("FROM:<bob@example.net>", out, reply), 501,
	    "RCPT FROM: is a syntax error");
	is_int(rcpt("TO:<bob@example.net> NOTIFY=NEVER", out, reply), 555,
	    "RCPT parameters are not offered: 555");
}

/* ------------------------------------------------------------------ */
/* AUTH                                                                */

static void
test_base64(void)
{
	unsigned char out[64];
	char user[MAX_LOGIN], pass[MAX_PASSWORD];

	is_int(smtp_b64_decode("dGVzdA==", out, sizeof(out)), 4,
	    "dGVzdA== decodes to 4 octets");
	ok(memcmp(out, "test", 4) == 0, "dGVzdA== is \"test\"");
	is_int(smtp_b64_decode("dGVzdDE=", out, sizeof(out)), 5,
	    "one pad character: 5 octets");
	is_int(smtp_b64_decode("dGVzdDEy", out, sizeof(out)), 6,
	    "no padding: 6 octets");
	is_int(smtp_b64_decode("", out, sizeof(out)), 0,
	    "the empty string is empty");
	is_int(smtp_b64_decode("dGVzdA=", out, sizeof(out)), -1,
	    "a length that is not a multiple of 4 is invalid");
	is_int(smtp_b64_decode("dGV*dA==", out, sizeof(out)), -1,
	    "a character outside the alphabet is invalid");
	is_int(smtp_b64_decode("dG=zdA==", out, sizeof(out)), -1,
	    "padding inside the data is invalid");
	is_int(smtp_b64_decode("dGVzdA==dGVz", out, sizeof(out)), -1,
	    "data after the padding is invalid");
	is_int(smtp_b64_decode("d===", out, sizeof(out)), -1,
	    "three pad characters are invalid");
	is_int(smtp_b64_decode("dGVz dA==", out, sizeof(out)), -1,
	    "a space is invalid");
	is_int(smtp_b64_decode("dGVzdA==", out, 3), -1,
	    "output that does not fit is refused");
	is_int(smtp_b64_decode("=", out, sizeof(out)), -1,
	    "a lone = is not base64");
	is_int(smtp_auth_decode("=", out, sizeof(out)), 0,
	    "but as an AUTH response = is the empty response");

	/* "\0alice\0secret" */
	is_int(smtp_auth_plain_parse("AGFsaWNlAHNlY3JldA==", user, sizeof(user),
		   pass, sizeof(pass)),
	    0, "AUTH PLAIN with an empty authzid is accepted");
	is_str(user, "alice", "the user is the authcid");
	is_str(pass, "secret", "the password follows it");
	/* "alice\0alice\0secret" */
	is_int(smtp_auth_plain_parse("YWxpY2UAYWxpY2UAc2VjcmV0", user,
		   sizeof(user), pass, sizeof(pass)),
	    0, "an authzid equal to the user is accepted");
	/* "bob\0alice\0secret" */
	is_int(smtp_auth_plain_parse("Ym9iAGFsaWNlAHNlY3JldA==", user,
		   sizeof(user), pass, sizeof(pass)),
	    535, "acting as another user is refused with 535");
	/* "alice\0secret" */
	is_int(smtp_auth_plain_parse("YWxpY2UAc2VjcmV0", user, sizeof(user),
		   pass, sizeof(pass)),
	    501, "a PLAIN response with one NUL is malformed");
	/* "\0\0secret" */
	is_int(smtp_auth_plain_parse("AABzZWNyZXQ=", user, sizeof(user), pass,
		   sizeof(pass)),
	    501, "an empty user is malformed");
	/* "\0alice\0sec\0ret" */
	is_int(smtp_auth_plain_parse("AGFsaWNlAHNlYwByZXQ=", user,
		   sizeof(user), pass, sizeof(pass)),
	    501, "a third NUL is malformed");
	is_int(smtp_auth_plain_parse("=", user, sizeof(user), pass,
		   sizeof(pass)),
	    501, "an empty PLAIN response is malformed");
	is_int(smtp_auth_plain_parse("AGFsaWNl!HNlY3JldA==", user,
		   sizeof(user), pass, sizeof(pass)),
	    501, "bad base64 in PLAIN is 501");
	/* "\0alice\0" : an empty password goes on to auth */
	is_int(smtp_auth_plain_parse("AGFsaWNlAA==", user, sizeof(user), pass,
		   sizeof(pass)),
	    0, "an empty password is passed on to be refused by auth");
	is_str(pass, "", "as the empty string");

	is_int(smtp_auth_login_parse("YWxpY2U=", user, sizeof(user)), 0,
	    "an AUTH LOGIN user name decodes");
	is_str(user, "alice", "to alice");
	is_int(smtp_auth_login_parse("=", user, sizeof(user)), 0,
	    "= is an empty LOGIN response");
	is_str(user, "", "which is empty");
	is_int(smtp_auth_login_parse("YWxp!2U=", user, sizeof(user)), 501,
	    "bad base64 in LOGIN is 501");
	is_int(smtp_auth_login_parse("YQBi", user, sizeof(user)), 501,
	    "a NUL inside a LOGIN response is 501");
	is_int(smtp_auth_login_parse("YWxpY2U=", user, 5), 535,
	    "a LOGIN response too long for the field is 535");
}

/* ------------------------------------------------------------------ */
/* DATA                                                                */

struct sink {
	struct buf hdr, body;
	int header_calls;
	size_t max_chunk;
	bool refuse_header;
};

static int
sink_header(void *arg, const char *p, size_t len)
{
	struct sink *k = arg;

	k->header_calls++;
	buf_add(&k->hdr, p, len);
	return k->refuse_header ? -1 : 0;
}

static int
sink_body(void *arg, const char *p, size_t len)
{
	struct sink *k = arg;

	if (len > k->max_chunk)
		k->max_chunk = len;
	buf_add(&k->body, p, len);
	return 0;
}

struct result {
	bool done;
	size_t consumed;
	unsigned flags;
	int code;
	char reply[128];
	char *hdr, *body; /* heap copies */
	size_t hdrlen, bodylen, max_chunk;
	int header_calls;
};

static void
result_free(struct result *r)
{
	free(r->hdr);
	free(r->body);
}

/* Feed in in chunks of step octets (0: all at once), stop once done. */
static struct result
feed(const char *in, size_t len, size_t step, uint64_t maxsize,
    bool refuse_header)
{
	struct smtp_data *d = malloc(sizeof(*d));
	struct sink k;
	struct result r;
	size_t off = 0, n, used;

	memset(&k, 0, sizeof(k));
	memset(&r, 0, sizeof(r));
	buf_init(&k.hdr);
	buf_init(&k.body);
	k.refuse_header = refuse_header;
	smtp_data_init(d, maxsize, sink_header, sink_body, &k);
	while (off < len && !d->done) {
		n = step == 0 || len - off < step ? len - off : step;
		used = smtp_data_feed(d, in + off, n);
		off += used;
		if (used < n && !d->done)
			break; /* would be a bug: reported as not done */
	}
	r.done = d->done;
	r.consumed = off;
	r.flags = d->flags;
	r.code = smtp_data_verdict(d, r.reply, sizeof(r.reply));
	r.hdr = k.hdr.data;
	r.hdrlen = k.hdr.len;
	r.body = k.body.data;
	r.bodylen = k.body.len;
	r.max_chunk = k.max_chunk;
	r.header_calls = k.header_calls;
	smtp_data_free(d);
	free(d);
	return r;
}

static bool
same(const char *got, size_t gotlen, const char *want)
{
	return gotlen == strlen(want) &&
	    (gotlen == 0 || memcmp(got, want, gotlen) == 0);
}

/* Feed a NUL-free message. */
static struct result
feeds(const char *in, size_t step, uint64_t maxsize)
{
	return feed(in, strlen(in), step, maxsize, false);
}

#define ALL SIZE_MAX /* check_message: everything is consumed */

static const size_t steps[] = { 1, 2, 3, 7, 0 };
#define NSTEPS (sizeof(steps) / sizeof(steps[0]))

/* One message, every chunking: done, consumed, header, body, code. */
static void
check_message(const char *what, const char *in, size_t consumed,
    const char *hdr, const char *body, int code)
{
	struct result r;
	bool good = true;
	size_t i;

	if (consumed == ALL)
		consumed = strlen(in);
	for (i = 0; i < NSTEPS; i++) {
		r = feed(in, strlen(in), steps[i], 1000000, false);
		if (!r.done || r.consumed != consumed || r.code != code ||
		    (code == 0 && (!same(r.hdr, r.hdrlen, hdr) ||
				      !same(r.body, r.bodylen, body)))) {
			printf("# step %zu: done=%d consumed=%zu code=%d "
			       "hdr=%zu body=%zu\n",
			    steps[i], r.done, r.consumed, r.code, r.hdrlen,
			    r.bodylen);
			good = false;
		}
		result_free(&r);
	}
	ok(good, "%s", what);
}

static void
test_data_basic(void)
{
	const char *msg = "Subject: hi\r\nTo: b@example.net\r\n\r\nHello\r\n"
			  ".\r\n";
	const char *piped = "Subject: hi\r\n\r\nHello\r\n.\r\nQUIT\r\n";

	check_message("a normal message ends at CRLF.CRLF", msg, ALL,
	    "Subject: hi\r\nTo: b@example.net\r\n", "Hello\r\n", 0);
	check_message("commands after the end are left for the session", piped,
	    strlen(piped) - 6, "Subject: hi\r\n", "Hello\r\n", 0);
	check_message("an empty message ends at once (DATA's CRLF counts)",
	    ".\r\n", ALL, "", "", 0);
	check_message("a leading dot is removed", "A: b\r\n\r\n.x\r\n.\r\n", ALL,
	    "A: b\r\n", "x\r\n", 0);
	check_message("\"..\" alone is a line with one dot",
	    "A: b\r\n\r\nx\r\n..\r\n.\r\n", ALL, "A: b\r\n", "x\r\n.\r\n", 0);
	check_message("\"...\" becomes \"..\"", "A: b\r\n\r\n...\r\n.\r\n", ALL,
	    "A: b\r\n", "..\r\n", 0);
	check_message("a dot inside a line stays", "A: b\r\n\r\na.b\r\n.\r\n",
	    ALL, "A: b\r\n", "a.b\r\n", 0);
	check_message("a dot-stuffed header line is unstuffed",
	    "..A: b\r\n\r\nx\r\n.\r\n", ALL, ".A: b\r\n", "x\r\n", 0);
	check_message("no empty line: the whole message is the header",
	    "Subject: x\r\nFrom: a@b.example\r\n.\r\n", ALL,
	    "Subject: x\r\nFrom: a@b.example\r\n", "", 0);
	check_message("only the first empty line ends the header",
	    "A: b\r\n\r\n\r\nC: d\r\n.\r\n", ALL, "A: b\r\n", "\r\nC: d\r\n",
	    0);
	check_message("an empty header section", "\r\nbody\r\n.\r\n", ALL, "",
	    "body\r\n", 0);
}

static void
test_data_smuggling(void)
{
	static const struct {
		const char *name, *seq;
	} vec[] = {
		{ "<LF>.<LF>", "\n.\n" },
		{ "<CR>.<CR>", "\r.\r" },
		{ "<LF>.<CR><LF>", "\n.\r\n" },
		{ "<CR><LF>.<LF>", "\r\n.\n" },
		{ "<CR><LF>.<CR>", "\r\n.\r" },
		{ "<CR><LF>.<CR><CR><LF>", "\r\n.\r\r\n" },
		{ "<CR>", "\r" },
		{ "<LF>", "\n" },
	};
	char msg[512];
	struct result r;
	size_t i, j, len;
	bool good;

	for (i = 0; i < sizeof(vec) / sizeof(vec[0]); i++) {
		(void)bsnprintf(msg, sizeof(msg),
		    "From: a@example.org\r\n\r\nfirst%s"
		    "MAIL FROM:<evil@example.com>\r\nRCPT TO:<v@example.net>"
		    "\r\nDATA\r\nsmuggled\r\n.\r\n",
		    vec[i].seq);
		len = strlen(msg);
		good = true;
		for (j = 0; j < NSTEPS; j++) {
			r = feed(msg, len, steps[j], 1000000, false);
			if (!r.done || r.consumed != len ||
			    !(r.flags & SMTP_DATA_BARE_EOL) || r.code != 554)
				good = false;
			result_free(&r);
		}
		ok(good, "%s does not end the data, and the message is "
			 "rejected 554", vec[i].name);
	}

	/* Cut right after the vector: still reading, not finished. */
	r = feeds("A: b\r\n\r\nx\n.\n", 1, 1000000);
	ok(!r.done && r.consumed == 12, "data cut after <LF>.<LF> is not over");
	result_free(&r);
	r = feeds("A: b\r\n\r\nx\r\n.\n", 0, 1000000);
	ok(!r.done, "data cut after <CR><LF>.<LF> is not over");
	result_free(&r);

	r = feeds("A: b\r\n\r\nx\r\r\n.\r\n", 0, 1000000);
	is_str(r.reply, "5.6.0 Message contains bare CR or LF",
	    "the reply names bare CR or LF");
	result_free(&r);
	r = feeds("A: b\nC: d\r\n\r\nx\r\n.\r\n", 1, 1000000);
	is_int(r.code, 554, "a bare LF in the header section is rejected");
	is_int(r.header_calls, 0, "and the header never reaches policy");
	result_free(&r);
}

/* A message whose body is one line of n octets. */
static char *
long_line_message(size_t n, bool stuffed)
{
	static const char head[] = "A: b\r\n\r\n";
	char *m = malloc(sizeof(head) + n + 8);
	size_t off = sizeof(head) - 1;

	memcpy(m, head, off);
	if (stuffed)
		m[off++] = '.';
	memset(m + off, 'x', n - (stuffed ? 1 : 0));
	off += n - (stuffed ? 1 : 0);
	memcpy(m + off, "\r\n.\r\n", 6);
	return m;
}

static void
test_data_limits(void)
{
	struct result r;
	char *m, big[4000];
	size_t i;

	m = long_line_message(998, false);
	r = feed(m, strlen(m), 0, 1000000, false);
	is_int(r.code, 0, "a 998-octet line is accepted");
	result_free(&r);
	free(m);
	m = long_line_message(999, false);
	r = feed(m, strlen(m), 3, 1000000, false);
	is_int(r.code, 554, "a 999-octet line is rejected");
	is_str(r.reply, "5.6.0 Line too long", "as a line too long");
	ok(r.done, "and the data is still read to its end");
	result_free(&r);
	free(m);
	/* "." + 998 octets on the wire is 998 after unstuffing */
	m = long_line_message(999, true);
	r = feed(m, strlen(m), 1, 1000000, false);
	is_int(r.code, 0, "998 octets after a stuffed dot are accepted");
	result_free(&r);
	free(m);

	/* 6 + 2 + 5 + 4 = 17 octets of content. */
	r = feeds("A: b\r\n\r\nabc\r\nde\r\n.\r\n", 1, 17);
	is_int(r.code, 0, "a message exactly at the size limit is accepted");
	result_free(&r);
	r = feeds("A: b\r\n\r\nabc\r\nde\r\n.\r\n", 1, 16);
	is_int(r.code, 552, "one octet over the size limit is refused 552");
	is_str(r.reply, "5.3.4 Message size exceeds fixed limit",
	    "with 5.3.4");
	ok(r.done && r.consumed == 20, "after reading it to its end");
	result_free(&r);
	/* 10 dots on the wire, 9 in the message: 19 octets of content. */
	r = feeds("A: b\r\n\r\n..........\r\n.\r\n", 0, 19);
	is_int(r.code, 0, "the size is counted after unstuffing");
	result_free(&r);

	r = feed("A: b\0c\r\n\r\nx\r\n.\r\n", 16, 2, 1000000, false);
	is_int(r.code, 554, "a NUL in the header section is rejected");
	result_free(&r);
	r = feed("A: b\r\n\r\nx\0y\r\n.\r\n", 16, 0, 1000000, false);
	is_int(r.code, 0, "a NUL in the body is not the header's problem");
	result_free(&r);

	/* A header section over HEADER_SECTION_MAX. */
	{
		struct buf b;

		buf_init(&b);
		for (i = 0; b.len <= HEADER_SECTION_MAX; i++)
			buf_printf(&b, "X-Filler-%zu: %090d\r\n", i, 0);
		buf_addstr(&b, "\r\nbody\r\n.\r\n");
		r = feed(b.data, b.len, 0, 100000000, false);
		is_int(r.code, 554, "a header section over 256 KiB is refused");
		is_str(r.reply, "5.6.0 Header section too large",
		    "as too large");
		result_free(&r);
		buf_free(&b);
	}

	/* A large body goes out in small pieces, never whole. */
	{
		struct buf b;

		buf_init(&b);
		buf_addstr(&b, "A: b\r\n\r\n");
		memset(big, 'y', 998);
		memcpy(big + 998, "\r\n", 2);
		for (i = 0; i < 1100; i++)
			buf_add(&b, big, 1000);
		buf_addstr(&b, ".\r\n");
		r = feed(b.data, b.len, 0, 100000000, false);
		ok(r.code == 0 && r.bodylen == 1100 * 1000,
		    "a 1.1 MB body arrives whole");
		ok(r.max_chunk <= SMTP_DATA_OUTBUF,
		    "in pieces of at most %d octets", SMTP_DATA_OUTBUF);
		result_free(&r);
		buf_free(&b);
	}

	r = feed("A: b\r\n\r\nx\r\n.\r\n", 14, 1, 1000000, true);
	ok(r.done && (r.flags & SMTP_DATA_SINK) && r.bodylen == 0,
	    "a refused header section stops the body, not the reading");
	is_int(r.code, 0, "and leaves the reply to the session");
	result_free(&r);
}

int
main(void)
{
	test_commands();
	test_mail();
	test_rcpt();
	test_base64();
	test_data_basic();
	test_data_smuggling();
	test_data_limits();
	return done_testing();
}

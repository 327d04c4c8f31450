/*
 * unit_policy.c - sender rights and what msa does to a message's header.
 */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "msa.h"
#include "test/tap.h"

/* Sun, 29 Nov 2026 17:31:22 UTC */
#define NOW ((time_t)1795973482)

#define RECEIVED                                                          \
	"Received: from laptop.example.org ([192.0.2.7]) (authenticated as " \
	"alice)\r\n"                                                       \
	"\tby mail.example.org (msa) with ESMTPSA (TLSv1.3 "               \
	"TLS_AES_256_GCM_SHA384)\r\n"                                      \
	"\tid 0123456789abcdef; Sun, 29 Nov 2026 18:31:22 +0100\r\n"

/* A header every fix-up leaves alone. */
#define COMPLETE                                                          \
	"From: Alice Example <alice@example.org>\r\n"                      \
	"To: Bob <bob@example.net>\r\n"                                    \
	"Subject: lunch?\r\n"                                              \
	"Date: Sun, 29 Nov 2026 18:30:00 +0100\r\n"                        \
	"Message-ID: <1234@laptop.example.org>\r\n"

/* Date and Message-ID, so that only the field under test changes. */
#define DATE_ID                                                           \
	"Date: Sun, 29 Nov 2026 18:30:00 +0100\r\n"                        \
	"Message-ID: <1234@laptop.example.org>\r\n"

static struct config cfg;
static struct login_rights alice;
static struct policy_ctx pc;
static char reply[512];
static struct buf out;

static void
setup(void)
{
	memset(&cfg, 0, sizeof(cfg));
	strlcpy_msa(cfg.hostname, "mail.example.org", sizeof(cfg.hostname));
	strlcpy_msa(cfg.domain, "example.org", sizeof(cfg.domain));
	cfg.from_mismatch = FROM_MISMATCH_REJECT;
	cfg.remove_bcc = true;
	cfg.hide_client_ip = false;

	memset(&alice, 0, sizeof(alice));
	strlcpy_msa(alice.login, "alice", sizeof(alice.login));
	strlcpy_msa(alice.patterns[alice.n++], "alice@example.org", MAX_ADDR);
	strlcpy_msa(alice.patterns[alice.n++], "alice+*@example.org",
	    MAX_ADDR);
	strlcpy_msa(alice.patterns[alice.n++], "@family.example", MAX_ADDR);

	memset(&pc, 0, sizeof(pc));
	pc.cfg = &cfg;
	pc.rights = &alice;
	pc.sender = "alice@example.org";
	pc.client = "192.0.2.7";
	pc.helo = "laptop.example.org";
	pc.tls_version = "TLSv1.3";
	pc.tls_cipher = "TLS_AES_256_GCM_SHA384";
	pc.queue_id = "0123456789abcdef";
	pc.now = NOW;
	buf_reset(&out);
}

static int
run(const char *hdr)
{
	buf_reset(&out);
	buf_addstr(&out, "");
	reply[0] = '\0';
	return policy_apply(&pc, hdr, strlen(hdr), &out, reply,
	    sizeof(reply));
}

/* Run, expect success, and compare the whole new header section. */
static void
expect(const char *hdr, const char *want, const char *what)
{
	int rc = run(hdr);

	is_int(rc, 0, "%s: accepted", what);
	is_str(out.data, want, "%s", what);
}

static void
expect_reject(const char *hdr, int code, const char *text, const char *what)
{
	int rc = run(hdr);

	is_int(rc, code, "%s: rejected with %d", what, code);
	is_str(reply, text, "%s: the client reads \"%s\"", what, text);
}

/* ------------------------------------------------------------------ */

static void
test_rights(void)
{
	struct login_rights r;
	char a[MAX_ADDR];

	setup();
	ok(policy_sender_allowed(&alice, "alice@example.org"),
	    "rights: alice may send as her own address");
	ok(!policy_sender_allowed(&alice, "bob@example.org"),
	    "rights: alice may not send as bob at her domain");
	ok(policy_sender_allowed(&alice, "alice+lists@example.org"),
	    "rights: alice+* lets alice use alice+lists");
	ok(policy_sender_allowed(&alice, "alice+@example.org"),
	    "rights: '*' also matches an empty run");
	ok(!policy_sender_allowed(&alice, "alicex@example.org"),
	    "rights: the '+' before '*' must be there");
	ok(!policy_sender_allowed(&alice, "alice+x@example.net"),
	    "rights: alice+* does not reach another domain");
	ok(policy_sender_allowed(&alice, "grandma@family.example"),
	    "rights: @family.example allows any local part there");
	ok(policy_sender_allowed(&alice, "Kids@FAMILY.Example"),
	    "rights: domains compare case-insensitively");
	ok(policy_sender_allowed(&alice, "alice@EXAMPLE.ORG"),
	    "rights: alice@EXAMPLE.ORG is alice's own address");
	ok(!policy_sender_allowed(&alice, "Alice@example.org"),
	    "rights: local parts compare exactly (Alice is not alice)");
	ok(!policy_sender_allowed(&alice, "x@sub.family.example"),
	    "rights: @family.example does not cover subdomains");
	ok(!policy_sender_allowed(&alice, "@family.example"),
	    "rights: an address without a local part matches nothing");
	ok(!policy_sender_allowed(&alice, "alice"),
	    "rights: a bare local part is not alice@example.org");
	ok(policy_sender_allowed(&alice, ""),
	    "rights: the null sender is always allowed");
	ok(!policy_sender_allowed(&alice, "alice@example.org.evil.example"),
	    "rights: a longer domain does not match");

	memset(&r, 0, sizeof(r));
	strlcpy_msa(r.login, "x", sizeof(r.login));
	strlcpy_msa(r.patterns[r.n++], "a*b*c@example.org", MAX_ADDR);
	ok(policy_sender_allowed(&r, "a-b-b-c@example.org"),
	    "rights: several stars match with backtracking");
	ok(!policy_sender_allowed(&r, "a-b-c-d@example.org"),
	    "rights: stars do not let a pattern end early");
	r.n = 0;
	ok(!policy_sender_allowed(&r, "a-b-c@example.org"),
	    "rights: a login without rights may send as nobody");

	policy_login_address("alice", "example.org", a, sizeof(a));
	is_str(a, "alice@example.org",
	    "login address: a plain login gets @domain");
	policy_login_address("bob@other.example", "example.org", a,
	    sizeof(a));
	is_str(a, "bob@other.example",
	    "login address: a login that is an address stays itself");
	policy_login_address("alice", "", a, sizeof(a));
	is_str(a, "alice", "login address: without a domain, the bare login");
}

/* ------------------------------------------------------------------ */

static void
test_passthrough(void)
{
	static const char eight[] = "From: alice@example.org\r\n"
				    "To: bob@example.net\r\n"
				    "Subject: =?UTF-8?Q?caf=C3=A9?= "
				    "caf\303\251\r\n"
				    "X-Folded: one\r\n"
				    "\ttwo\r\n"
				    "  three\r\n" DATE_ID;
	static const char msg[] = COMPLETE "\r\nbody line\r\n.\r\n";

	setup();
	expect(COMPLETE, RECEIVED COMPLETE "\r\n",
	    "pass-through: a complete header gains only Received");
	expect(eight, RECEIVED "From: alice@example.org\r\n"
			       "To: bob@example.net\r\n"
			       "Subject: =?UTF-8?Q?caf=C3=A9?= caf\303\251\r\n"
			       "X-Folded: one\r\n"
			       "\ttwo\r\n"
			       "  three\r\n" DATE_ID "\r\n",
	    "pass-through: 8-bit text and folded fields are kept byte for "
	    "byte");

	/* the session hands over the header only; the body is not ours */
	buf_reset(&out);
	buf_addstr(&out, "");
	is_int(policy_apply(&pc, msg, strlen(COMPLETE), &out, reply,
	    sizeof(reply)), 0, "body: a header handed over alone is accepted");
	is_str(out.data, RECEIVED COMPLETE "\r\n",
	    "body: the output ends with the empty line, no body byte in it");

	buf_reset(&out);
	buf_addstr(&out, "PREVIOUS");
	(void)policy_apply(&pc, COMPLETE, strlen(COMPLETE), &out, reply,
	    sizeof(reply));
	is_str(out.data, "PREVIOUS" RECEIVED COMPLETE "\r\n",
	    "output: the new header is appended after what the buffer held");
	buf_reset(&out);
	buf_addstr(&out, "PREVIOUS");
	(void)policy_apply(&pc, "From: x@evil.example\r\n", 22, &out, reply,
	    sizeof(reply));
	is_str(out.data, "PREVIOUS",
	    "output: a rejected message leaves the buffer as it was");

	expect("FROM: alice@example.org\r\nTO: bob@example.net\r\n"
	       "date: Sun, 29 Nov 2026 18:30:00 +0100\r\n"
	       "message-id: <1@x>\r\n",
	    RECEIVED "FROM: alice@example.org\r\nTO: bob@example.net\r\n"
		     "date: Sun, 29 Nov 2026 18:30:00 +0100\r\n"
		     "message-id: <1@x>\r\n\r\n",
	    "pass-through: field names are recognised in any case");
	expect("Subject : obsolete\r\n" COMPLETE,
	    RECEIVED "Subject : obsolete\r\n" COMPLETE "\r\n",
	    "pass-through: obsolete space before the colon is accepted");
}

static void
test_received(void)
{
	setup();
	cfg.hide_client_ip = true;
	expect(COMPLETE,
	    "Received: from laptop.example.org (authenticated as alice)\r\n"
	    "\tby mail.example.org (msa) with ESMTPSA (TLSv1.3 "
	    "TLS_AES_256_GCM_SHA384)\r\n"
	    "\tid 0123456789abcdef; Sun, 29 Nov 2026 18:31:22 +0100\r\n"
	    COMPLETE "\r\n",
	    "Received: hide_client_ip leaves the client address out");

	setup();
	cfg.hide_client_ip = true;
	pc.helo = "[192.0.2.7]";
	expect(COMPLETE,
	    "Received: from unknown (authenticated as alice)\r\n"
	    "\tby mail.example.org (msa) with ESMTPSA (TLSv1.3 "
	    "TLS_AES_256_GCM_SHA384)\r\n"
	    "\tid 0123456789abcdef; Sun, 29 Nov 2026 18:31:22 +0100\r\n"
	    COMPLETE "\r\n",
	    "Received: hide_client_ip also hides an address-literal EHLO name");

	setup();
	pc.client = "2001:db8::7";
	expect(COMPLETE,
	    "Received: from laptop.example.org ([IPv6:2001:db8::7])\r\n"
	    "\t(authenticated as alice)\r\n"
	    "\tby mail.example.org (msa) with ESMTPSA (TLSv1.3 "
	    "TLS_AES_256_GCM_SHA384)\r\n"
	    "\tid 0123456789abcdef; Sun, 29 Nov 2026 18:31:22 +0100\r\n"
	    COMPLETE "\r\n",
	    "Received: an IPv6 client is written as an IPv6 literal");

	setup();
	pc.helo = "evil (authenticated as root)\r\nX-Injected: 1";
	(void)run(COMPLETE);
	ok(strstr(out.data, "\r\nX-Injected") == NULL,
	    "Received: a HELO cannot inject a header line");
	ok(strncmp(out.data,
	    "Received: from evil??authenticated?as?root???X-Injected:?1 ",
	    strlen("Received: from evil??authenticated?as?root???"
		   "X-Injected:?1 ")) == 0,
	    "Received: a HELO cannot forge a comment");
}

static void
test_date_and_id(void)
{
	static const char no_date[] = "From: alice@example.org\r\n"
				      "To: bob@example.net\r\n"
				      "Message-ID: <1234@laptop.example.org>\r\n";
	static const char no_id[] = "From: alice@example.org\r\n"
				    "To: bob@example.net\r\n"
				    "Date: Sun, 29 Nov 2026 18:30:00 +0100\r\n";
	const char *p;
	char first[80];
	size_t i;

	setup();
	expect(no_date, RECEIVED "From: alice@example.org\r\n"
				 "To: bob@example.net\r\n"
				 "Message-ID: <1234@laptop.example.org>\r\n"
				 "Date: Sun, 29 Nov 2026 18:31:22 +0100\r\n"
				 "\r\n",
	    "Date: a missing Date is added in local time with its offset");

	setenv("TZ", "EST5", 1);
	tzset();
	(void)run(no_date);
	ok(strstr(out.data, "Date: Sun, 29 Nov 2026 12:31:22 -0500\r\n") !=
	    NULL, "Date: a zone west of UTC gets a negative offset");
	setenv("TZ", "IST-5:30", 1);
	tzset();
	(void)run(no_date);
	ok(strstr(out.data, "Date: Sun, 29 Nov 2026 23:01:22 +0530\r\n") !=
	    NULL, "Date: a half-hour zone gets its minutes");
	setenv("TZ", "CET-1", 1);
	tzset();

	is_int(run(no_id), 0, "Message-ID: a message without one is accepted");
	p = strstr(out.data, "Message-ID: <");
	ok(p != NULL, "Message-ID: a missing Message-ID is added");
	if (p != NULL) {
		p += strlen("Message-ID: <");
		for (i = 0; i < 32; i++)
			if (!isxdigit((unsigned char)p[i]) ||
			    isupper((unsigned char)p[i]))
				break;
		is_int(i, 32, "Message-ID: it holds 128 random bits as 32 hex "
			      "digits");
		is_str(p + 32, "@mail.example.org>\r\n\r\n",
		    "Message-ID: it ends with @hostname and is the last field");
		strlcpy_msa(first, p, sizeof(first));
		(void)run(no_id);
		p = strstr(out.data, "Message-ID: <");
		ok(p != NULL && strcmp(p + 13, first) != 0,
		    "Message-ID: two messages get different ids");
	}
}

static void
test_from_and_to(void)
{
	static const char no_from[] = "To: bob@example.net\r\n" DATE_ID;

	setup();
	expect(no_from, RECEIVED "To: bob@example.net\r\n" DATE_ID
				 "From: alice@example.org\r\n\r\n",
	    "From: a missing From is the envelope sender");
	pc.sender = "alice+shop@example.org";
	expect(no_from, RECEIVED "To: bob@example.net\r\n" DATE_ID
				 "From: alice+shop@example.org\r\n\r\n",
	    "From: a missing From uses the exact envelope sender");
	pc.sender = "";
	expect(no_from, RECEIVED "To: bob@example.net\r\n" DATE_ID
				 "From: alice@example.org\r\n\r\n",
	    "From: with the null sender a missing From is the login's address");

	setup();
	expect("From: alice@example.org\r\nSubject: hi\r\n" DATE_ID,
	    RECEIVED "From: alice@example.org\r\nSubject: hi\r\n" DATE_ID
		     "To: undisclosed-recipients:;\r\n\r\n",
	    "To: without To, Cc or Bcc, undisclosed-recipients:; is added");
	expect("From: alice@example.org\r\nCc: bob@example.net\r\n" DATE_ID,
	    RECEIVED "From: alice@example.org\r\nCc: bob@example.net\r\n"
		DATE_ID "\r\n",
	    "To: a Cc alone is enough, no To is added");
	expect("From: alice@example.org\r\nBcc: bob@example.net\r\n" DATE_ID,
	    RECEIVED "From: alice@example.org\r\n" DATE_ID "\r\n",
	    "To: a Bcc alone is enough (RFC 5322 3.6.3), and it is removed");

	is_int(run(""), 0, "empty header: a message without one is accepted");
	ok(strncmp(out.data, RECEIVED "From: alice@example.org\r\n"
			     "To: undisclosed-recipients:;\r\n"
			     "Date: Sun, 29 Nov 2026 18:31:22 +0100\r\n"
			     "Message-ID: <",
	    strlen(RECEIVED) + 107) == 0,
	    "empty header: From, To, Date and Message-ID are added in order");
	ok(run("") == 0 && strstr(out.data, "Message-ID: <") != NULL &&
	    out.len > 5 && strcmp(out.data + out.len - 5, ">\r\n\r\n") == 0,
	    "empty header: Message-ID and the empty line complete it");
}

static void
test_qualify(void)
{
	setup();
	expect("From: alice\r\nTo: bob@example.net\r\n" DATE_ID,
	    RECEIVED "From: alice@example.org\r\nTo: bob@example.net\r\n"
		DATE_ID "\r\n",
	    "qualify: a bare From becomes alice@example.org and is allowed");
	expect("From: Alice <alice@example.org>\r\n"
	       "To: Bob <bob>, carol (Carol C.), dave@example.net\r\n"
	       "Cc: \"Erin E.\" <erin>,\r\n\tfrank\r\n"
	       "Reply-To: team: grace, heidi@example.net;\r\n"
	       "Subject: bob\r\n" DATE_ID,
	    RECEIVED "From: Alice <alice@example.org>\r\n"
		     "To: Bob <bob@example.org>, carol@example.org (Carol C.), "
		     "dave@example.net\r\n"
		     "Cc: \"Erin E.\" <erin@example.org>,\r\n"
		     "\tfrank@example.org\r\n"
		     "Reply-To: team: grace@example.org, heidi@example.net;\r\n"
		     "Subject: bob\r\n" DATE_ID "\r\n",
	    "qualify: only bare addresses change; names and comments stay");
	expect("From: alice@example.org, bob\r\nSender: alice\r\n"
	       "To: x@example.net\r\n" DATE_ID,
	    RECEIVED "From: alice@example.org, bob@example.org\r\n"
		     "Sender: alice@example.org\r\nTo: x@example.net\r\n"
		     DATE_ID "\r\n",
	    "qualify: Sender is qualified too");

	cfg.remove_bcc = false;
	expect("From: alice@example.org\r\nTo: x@example.net\r\n"
	       "Bcc: dave\r\n" DATE_ID,
	    RECEIVED "From: alice@example.org\r\nTo: x@example.net\r\n"
		     "Bcc: dave\r\n" DATE_ID "\r\n",
	    "qualify: a kept Bcc is passed through as written");
}

static void
test_bcc(void)
{
	static const char hdr[] = "From: alice@example.org\r\n"
				  "To: bob@example.net\r\n"
				  "Bcc: carol@example.net,\r\n"
				  "\tdave@example.net\r\n"
				  "Subject: secret\r\n" DATE_ID;

	setup();
	expect(hdr, RECEIVED "From: alice@example.org\r\n"
			     "To: bob@example.net\r\n"
			     "Subject: secret\r\n" DATE_ID "\r\n",
	    "Bcc: the field and its continuation lines are removed");
	cfg.remove_bcc = false;
	expect(hdr, RECEIVED "From: alice@example.org\r\n"
	    "To: bob@example.net\r\n"
	    "Bcc: carol@example.net,\r\n"
	    "\tdave@example.net\r\n"
	    "Subject: secret\r\n" DATE_ID "\r\n",
	    "Bcc: with remove_bcc false it stays byte for byte");
}

static void
test_from_rights(void)
{
	static const char mallory[] = "From: Mallory <mallory@example.net>\r\n"
				      "To: bob@example.net\r\n" DATE_ID;
	static const char two[] = "From: alice@example.org, bob@example.org\r\n"
				  "To: x@example.net\r\n" DATE_ID;

	setup();
	expect_reject(mallory, 553,
	    "5.7.1 From address <mallory@example.net> not allowed for alice",
	    "From: another person's address");
	ok(out.len == 0, "From: nothing is written for a rejected message");
	expect("From: Alice <alice+news@example.org>\r\nTo: x@example.net\r\n"
	       DATE_ID,
	    RECEIVED "From: Alice <alice+news@example.org>\r\n"
		     "To: x@example.net\r\n" DATE_ID "\r\n",
	    "From: an address from the senders: patterns is accepted");
	expect("From: mallory@example.net, alice@example.org\r\n"
	       "Sender: alice@example.org\r\nTo: x@example.net\r\n" DATE_ID,
	    RECEIVED "From: mallory@example.net, alice@example.org\r\n"
		     "Sender: alice@example.org\r\nTo: x@example.net\r\n"
		     DATE_ID "\r\n",
	    "From: one allowed address among several is enough");
	pc.sender = "";
	expect_reject(mallory, 553,
	    "5.7.1 From address <mallory@example.net> not allowed for alice",
	    "From: the null sender does not free the From");

	setup();
	cfg.from_mismatch = FROM_MISMATCH_ADD_SENDER;
	expect(mallory, RECEIVED "From: Mallory <mallory@example.net>\r\n"
				 "To: bob@example.net\r\n" DATE_ID
				 "Sender: alice@example.org\r\n\r\n",
	    "add-sender: a foreign From gets Sender: the login's address");

	setup();
	expect(two, RECEIVED "From: alice@example.org, bob@example.org\r\n"
			     "To: x@example.net\r\n" DATE_ID
			     "Sender: alice@example.org\r\n\r\n",
	    "multi-From: several authors without Sender get one");
	cfg.from_mismatch = FROM_MISMATCH_ADD_SENDER;
	expect(two, RECEIVED "From: alice@example.org, bob@example.org\r\n"
			     "To: x@example.net\r\n" DATE_ID
			     "Sender: alice@example.org\r\n\r\n",
	    "multi-From: the same happens with add-sender");
}

static void
test_sender(void)
{
	static const char boss[] = "From: alice@example.org\r\n"
				   "Sender: Boss <boss@corp.example>\r\n"
				   "To: x@example.net\r\n" DATE_ID;

	setup();
	expect_reject(boss, 553,
	    "5.7.1 Sender address <boss@corp.example> not allowed for alice",
	    "Sender: a Sender that is not the login's");
	cfg.from_mismatch = FROM_MISMATCH_ADD_SENDER;
	expect(boss, RECEIVED "From: alice@example.org\r\n"
			      "Sender: alice@example.org\r\n"
			      "To: x@example.net\r\n" DATE_ID "\r\n",
	    "Sender: with add-sender a wrong Sender is replaced in place");
	expect("From: boss@corp.example\r\nSender: alice+x@example.org\r\n"
	       "To: x@example.net\r\n" DATE_ID,
	    RECEIVED "From: boss@corp.example\r\n"
		     "Sender: alice+x@example.org\r\n"
		     "To: x@example.net\r\n" DATE_ID "\r\n",
	    "Sender: with add-sender an allowed Sender is kept as it is");
	setup();
	expect_reject("From: alice@example.org\r\nSender: a@example.org, "
		      "b@example.org\r\n" DATE_ID,
	    554, "5.6.0 Sender field must hold exactly one address",
	    "Sender: a Sender with two addresses");
	expect_reject("From: alice@example.org\r\nSender: alice@example.org\r\n"
		      "Sender: alice@example.org\r\n" DATE_ID,
	    554, "5.6.0 Message has more than one Sender field",
	    "Sender: two Sender fields");
}

static void
test_bad_from(void)
{
	setup();
	expect_reject("From: <>\r\nTo: x@example.net\r\n" DATE_ID, 554,
	    "5.6.0 Malformed From field: empty <>", "From: an empty <>");
	expect_reject("From: (nobody)\r\nTo: x@example.net\r\n" DATE_ID, 554,
	    "5.6.0 From field has no address", "From: only a comment");
	expect_reject("From: undisclosed:;\r\nTo: x@example.net\r\n" DATE_ID,
	    554, "5.6.0 From field has no address", "From: an empty group");
	expect_reject("From: alice@example.org\r\nFrom: alice@example.org\r\n"
		      DATE_ID,
	    554, "5.6.0 Message has more than one From field",
	    "From: two From fields");
	expect_reject("From: alice@example.org\r\nTo: Bob <bob@example.net\r\n"
		      DATE_ID,
	    554, "5.6.0 Malformed To field: missing '>'",
	    "To: an unclosed angle bracket");
}

static void
test_syntax(void)
{
	struct buf big;
	char line[1100];
	size_t i;

	setup();
	expect_reject(" continued\r\n" COMPLETE, 554,
	    "5.6.0 Header section starts with a continuation line",
	    "syntax: a continuation line first");
	expect_reject("Sub ject: x\r\n" COMPLETE, 554,
	    "5.6.0 Malformed header field name",
	    "syntax: a space inside a field name");
	expect_reject("From alice Sun Nov 29 18:30:00 2026\r\n" COMPLETE, 554,
	    "5.6.0 Malformed header field name",
	    "syntax: an mbox From_ line");
	expect_reject(": no name\r\n" COMPLETE, 554,
	    "5.6.0 Malformed header field name", "syntax: an empty field name");
	expect_reject("Subj\303\251t: x\r\n" COMPLETE, 554,
	    "5.6.0 Malformed header field name",
	    "syntax: an 8-bit byte in a field name");
	expect_reject(COMPLETE "X-Bare: a\nb\r\n", 554,
	    "5.6.0 Header line not ended by CRLF", "syntax: a bare LF");
	expect_reject(COMPLETE "X-Bare: a\rb\r\n", 554,
	    "5.6.0 Header line not ended by CRLF", "syntax: a bare CR");
	expect_reject(COMPLETE "X-Last: no CRLF", 554,
	    "5.6.0 Header line not ended by CRLF",
	    "syntax: a last line without CRLF");
	expect_reject(COMPLETE "\r\nX-After: x\r\n", 554,
	    "5.6.0 Empty line inside the header section",
	    "syntax: an empty line inside the header");

	buf_init(&big);
	buf_add(&big, COMPLETE "X-Nul: a\0b\r\n", strlen(COMPLETE) + 12);
	buf_reset(&out);
	is_int(policy_apply(&pc, big.data, big.len, &out, reply,
	    sizeof(reply)), 554, "syntax: a NUL byte is rejected with 554");
	is_str(reply, "5.6.0 NUL character in header",
	    "syntax: the client reads that the header holds a NUL");

	memset(line, 'x', sizeof(line));
	memcpy(line, "X-Long: ", 8);
	memcpy(line + 998, "\r\n", 3);
	buf_reset(&big);
	buf_addstr(&big, COMPLETE);
	buf_addstr(&big, line);
	is_int(run(big.data), 0, "syntax: a 998-octet line is accepted");
	memset(line + 998, 'x', 1);
	memcpy(line + 999, "\r\n", 3);
	buf_reset(&big);
	buf_addstr(&big, COMPLETE);
	buf_addstr(&big, line);
	expect_reject(big.data, 554, "5.6.0 Header line longer than 998 octets",
	    "syntax: a 999-octet line");

	buf_reset(&big);
	buf_addstr(&big, COMPLETE);
	for (i = 5; i < HEADER_FIELDS_MAX; i++)
		buf_printf(&big, "X-N: %zu\r\n", i);
	is_int(run(big.data), 0, "syntax: 1000 header fields are accepted");
	buf_addstr(&big, "X-N: one too many\r\n");
	expect_reject(big.data, 554, "5.6.0 More than 1000 header fields",
	    "syntax: 1001 header fields");

	buf_reset(&big);
	buf_addstr(&big, COMPLETE);
	memset(line, 'y', 400);
	memcpy(line, "X-Big: ", 7);
	memcpy(line + 400, "\r\n", 3);
	for (i = 0; i < 700; i++)
		buf_addstr(&big, line);
	expect_reject(big.data, 554,
	    "5.6.0 Header section larger than 262144 octets",
	    "syntax: a header section over 256 KiB");

	/* 150 bare addresses fit in 904 octets, not with @example.org */
	buf_reset(&big);
	buf_addstr(&big, "From: alice@example.org\r\nTo:");
	for (i = 0; i < 150; i++)
		buf_printf(&big, " b%03zu%s", i, i < 149 ? "," : "\r\n");
	buf_addstr(&big, DATE_ID);
	expect_reject(big.data, 554,
	    "5.6.0 To field too long once addresses are qualified",
	    "syntax: qualifying may not push a line past 998 octets");
	buf_free(&big);
}

int
main(void)
{
	log_init(LOG_LVL_WARNING, false, "test");
	setenv("TZ", "CET-1", 1);
	tzset();
	buf_init(&out);
	test_rights();
	test_passthrough();
	test_received();
	test_date_and_id();
	test_from_and_to();
	test_qualify();
	test_bcc();
	test_from_rights();
	test_sender();
	test_bad_from();
	test_syntax();
	buf_free(&out);
	return done_testing();
}

/*
 * unit_addr.c - envelope paths and header address lists, as clients write
 * them.
 */
#include <stdlib.h>
#include <string.h>

#include "msa.h"
#include "test/tap.h"

struct path_case {
	const char *arg;
	int rc;
	const char *addr; /* expected address when rc == 0 */
	const char *rest; /* expected parameters when rc == 0 */
	const char *what;
};

static const struct path_case paths[] = {
	{ "<alice@example.org>", 0, "alice@example.org", "",
	    "a plain address is accepted" },
	{ "<alice@example.org> SIZE=1000 BODY=8BITMIME", 0,
	    "alice@example.org", "SIZE=1000 BODY=8BITMIME",
	    "parameters after the path are handed back" },
	{ "<alice@example.org>   SIZE=1", 0, "alice@example.org", "SIZE=1",
	    "several spaces before the parameters are skipped" },
	{ "<>", 0, "", "", "the null sender is accepted as an empty address" },
	{ "<> BODY=8BITMIME", 0, "", "BODY=8BITMIME",
	    "the null sender may carry parameters" },
	{ "<bob>", 0, "bob", "", "a bare local part is kept for qualifying" },
	{ "<Postmaster>", 0, "Postmaster", "",
	    "RCPT TO:<Postmaster> keeps its case" },
	{ "<first.last+tag@mail.sub.example.co.uk>", 0,
	    "first.last+tag@mail.sub.example.co.uk", "",
	    "dots, plus tags and deep domains are accepted" },
	{ "<o'brien@example.ie>", 0, "o'brien@example.ie", "",
	    "an apostrophe in the local part is accepted" },
	{ "<!#$%&'*+/=?^_`{|}~-@example.org>", 0,
	    "!#$%&'*+/=?^_`{|}~-@example.org", "",
	    "every atext character is accepted in a local part" },
	{ "<\"john doe\"@example.org>", 0, "\"john doe\"@example.org", "",
	    "a quoted local part with a space keeps its quotes" },
	{ "<\"bob\"@example.org>", 0, "bob@example.org", "",
	    "a needlessly quoted local part is unquoted" },
	{ "<\"a\\\"b\"@example.org>", 0, "\"a\\\"b\"@example.org", "",
	    "a quoted pair inside quotes is kept as written" },
	{ "<user@[192.0.2.1]>", 0, "user@[192.0.2.1]", "",
	    "an IPv4 address literal is accepted" },
	{ "<user@[IPv6:2001:db8::1]>", 0, "user@[IPv6:2001:db8::1]", "",
	    "an IPv6 address literal is accepted" },
	{ "<@relay1.example,@relay2.example:bob@example.org>", 0,
	    "bob@example.org", "", "a source route is accepted and dropped" },
	{ " <alice@example.org>", 0, "alice@example.org", "",
	    "a space after MAIL FROM: is tolerated" },
	{ "<a@b-c.example>", 0, "a@b-c.example", "",
	    "a hyphen inside a domain label is accepted" },
	{ "<root@localhost>", 0, "root@localhost", "",
	    "a single-label domain is accepted" },
	{ "<ALICE@Example.ORG>", 0, "ALICE@Example.ORG", "",
	    "case is preserved as written" },

	{ "alice@example.org", -1, NULL, NULL,
	    "an address without angle brackets is refused" },
	{ "<alice@example.org", -1, NULL, NULL, "a missing '>' is refused" },
	{ "alice@example.org>", -1, NULL, NULL, "a missing '<' is refused" },
	{ "", -1, NULL, NULL, "an empty argument is refused" },
	{ "<alice @example.org>", -1, NULL, NULL,
	    "a space in the local part is refused" },
	{ "<alice@exa mple.org>", -1, NULL, NULL,
	    "a space in the domain is refused" },
	{ "<alice@example..org>", -1, NULL, NULL,
	    "an empty domain label is refused" },
	{ "<.alice@example.org>", -1, NULL, NULL,
	    "a leading dot in the local part is refused" },
	{ "<alice.@example.org>", -1, NULL, NULL,
	    "a trailing dot in the local part is refused" },
	{ "<al..ice@example.org>", -1, NULL, NULL,
	    "two dots in a row in the local part are refused" },
	{ "<alice@>", -1, NULL, NULL, "an '@' without a domain is refused" },
	{ "<@example.org>", -1, NULL, NULL,
	    "an address without a local part is refused" },
	{ "<alice@-example.org>", -1, NULL, NULL,
	    "a label starting with a hyphen is refused" },
	{ "<alice@example-.org>", -1, NULL, NULL,
	    "a label ending with a hyphen is refused" },
	{ "<alice@exam_ple.org>", -1, NULL, NULL,
	    "an underscore in a domain is refused" },
	{ "<alice@example.org.>", -1, NULL, NULL,
	    "a trailing dot in the domain is refused" },
	{ "<al\001ice@example.org>", -1, NULL, NULL,
	    "a control character is refused" },
	{ "<\"al\001ice\"@example.org>", -1, NULL, NULL,
	    "a control character inside quotes is refused" },
	{ "<\">\"@example.org>", -1, NULL, NULL,
	    "refused: '>' quoted in the local part (would split the path)" },
	{ "<\"a\\<b\"@example.org>", -1, NULL, NULL,
	    "refused: an escaped '<' in the local part" },
	{ "<\"bob@evil\">", -1, NULL, NULL,
	    "refused: a quoted '@' passing for a domain" },
	{ "<\"unterminated@example.org>", -1, NULL, NULL,
	    "an unterminated quoted local part is refused" },
	{ "<alice@[300.1.1.1]>", -1, NULL, NULL,
	    "an impossible IPv4 literal is refused" },
	{ "<alice@[IPv6:zz::1]>", -1, NULL, NULL,
	    "a malformed IPv6 literal is refused" },
	{ "<alice@[x400:whatever]>", -1, NULL, NULL,
	    "a general address literal is refused" },
	{ "<alice@[192.0.2.1>", -1, NULL, NULL,
	    "an unterminated address literal is refused" },
	{ "<a@example.org><b@example.org>", -1, NULL, NULL,
	    "a second path glued to the first is refused" },
	{ "<alice@example.org>SIZE=1", -1, NULL, NULL,
	    "parameters glued to the '>' are refused" },
	{ "<alice@b@example.org>", -1, NULL, NULL,
	    "two '@' signs are refused" },
	{ "<@relay.example alice@example.org>", -1, NULL, NULL,
	    "a source route without ':' is refused" },
	{ "<>>", -1, NULL, NULL, "a stray '>' is refused" },
	{ "<\303\251l\303\250ve@example.org>", -1, NULL, NULL,
	    "8-bit bytes are refused (no SMTPUTF8)" },
	{ "<alice\r\n@example.org>", -1, NULL, NULL,
	    "a line break inside the path is refused" },
};

static void
test_paths(void)
{
	char out[MAX_ADDR];
	const char *rest;
	size_t i;
	int rc;

	for (i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
		rest = NULL;
		out[0] = '\0';
		rc = addr_parse_path(paths[i].arg, out, sizeof(out), &rest);
		if (paths[i].rc != 0) {
			is_int(rc, -1, "path: %s", paths[i].what);
			continue;
		}
		is_int(rc, 0, "path: %s", paths[i].what);
		if (rc == 0) {
			is_str(out, paths[i].addr, "path: %s (address)",
			    paths[i].what);
			is_str(rest, paths[i].rest, "path: %s (rest)",
			    paths[i].what);
		}
	}
}

/* Limits of RFC 5321 4.5.3.1: 64-octet local part, 254-octet address. */
static void
test_path_limits(void)
{
	char arg[600], out[MAX_ADDR], local[80], label[80], dom[300];
	const char *rest;

	memset(local, 'l', 64);
	local[64] = '\0';
	(void)bsnprintf(arg, sizeof(arg), "<%s@example.org>", local);
	is_int(addr_parse_path(arg, out, sizeof(out), &rest), 0,
	    "path: a 64-octet local part is accepted");
	local[64] = 'l';
	local[65] = '\0';
	(void)bsnprintf(arg, sizeof(arg), "<%s@example.org>", local);
	is_int(addr_parse_path(arg, out, sizeof(out), &rest), -1,
	    "path: a 65-octet local part is refused");

	memset(label, 'd', 63);
	label[63] = '\0';
	(void)bsnprintf(arg, sizeof(arg), "<a@%s.example>", label);
	is_int(addr_parse_path(arg, out, sizeof(out), &rest), 0,
	    "path: a 63-octet domain label is accepted");
	label[63] = 'd';
	label[64] = '\0';
	(void)bsnprintf(arg, sizeof(arg), "<a@%s.example>", label);
	is_int(addr_parse_path(arg, out, sizeof(out), &rest), -1,
	    "path: a 64-octet domain label is refused");

	/* "a@" + a 252-octet domain = 254 octets, the most a path holds */
	memset(label, 'd', 63);
	label[63] = '\0';
	(void)bsnprintf(dom, sizeof(dom), "%s.%s.%s.%.60s", label, label,
	    label, label); /* 63*3 + 60 + 3 = 252 */
	(void)bsnprintf(arg, sizeof(arg), "<a@%s>", dom);
	is_int(addr_parse_path(arg, out, sizeof(out), &rest), 0,
	    "path: a 254-octet address is accepted");
	(void)bsnprintf(arg, sizeof(arg), "<ab@%s>", dom);
	is_int(addr_parse_path(arg, out, sizeof(out), &rest), -1,
	    "path: a 255-octet address is refused");

	is_int(addr_parse_path("<alice@example.org>", out, 10, &rest), -1,
	    "path: an address longer than the caller's buffer is refused");
	is_int(addr_parse_path("<alice@example.org>", out, sizeof(out), NULL),
	    0, "path: the caller may ignore the parameters");
}

/* ------------------------------------------------------------------ */

struct list_case {
	const char *who; /* which client writes it so */
	const char *body; /* field body, after the colon */
	int rc;
	const char *addrs; /* addresses, space separated; or the error */
	const char *qualified; /* body after qualifying with q.example */
};

static const struct list_case lists[] = {
	/* Thunderbird */
	{ "Thunderbird From", " Alice Example <alice@example.org>", 0,
	    "alice@example.org", NULL },
	{ "Thunderbird To with a comma in a quoted name",
	    " \"Doe, John\" <john.doe@example.com>, Bob <bob@example.net>", 0,
	    "john.doe@example.com bob@example.net", NULL },
	{ "Thunderbird encoded-word name",
	    " =?UTF-8?Q?J=C3=BCrgen_M=C3=BCller?= <juergen@example.de>", 0,
	    "juergen@example.de", NULL },
	{ "Thunderbird folded Cc",
	    " Carol <carol@example.com>,\r\n Dave <dave@example.com>", 0,
	    "carol@example.com dave@example.com", NULL },
	/* Apple Mail */
	{ "Apple Mail From with quoted name",
	    " \"Alice Example\" <alice@example.org>", 0, "alice@example.org",
	    NULL },
	{ "Apple Mail encoded name",
	    " =?utf-8?Q?Fran=C3=A7ois_P=C3=A9rez?= <francois@example.fr>", 0,
	    "francois@example.fr", NULL },
	{ "Apple Mail To without a name", " bob@example.net", 0,
	    "bob@example.net", NULL },
	/* Outlook */
	{ "Outlook To with surname first",
	    " \"Doe, John\" <John.Doe@contoso.com>", 0, "John.Doe@contoso.com",
	    NULL },
	{ "Outlook single-quoted name",
	    " 'Bob Smith' <bob.smith@contoso.com>", 0, "bob.smith@contoso.com",
	    NULL },
	{ "Outlook address as the name",
	    " \"bob@contoso.com\" <bob@contoso.com>", 0, "bob@contoso.com",
	    NULL },
	{ "Outlook encoded word inside quotes",
	    " \"=?iso-8859-1?Q?J=F6rg_M=FCller?=\" <joerg@contoso.com>", 0,
	    "joerg@contoso.com", NULL },
	{ "Outlook semicolon separator pasted by a user",
	    " John Doe <john@contoso.com>; Jane Roe\r\n\t<jane@contoso.com>",
	    -1, "unexpected ';'", NULL },
	{ "Outlook folded list",
	    " John Doe <john@contoso.com>, Jane Roe\r\n\t<jane@contoso.com>", 0,
	    "john@contoso.com jane@contoso.com", NULL },
	/* Gmail web */
	{ "Gmail From", " Alice Example <alice@gmail.com>", 0,
	    "alice@gmail.com", NULL },
	{ "Gmail To mixing bare and named",
	    " bob@example.net, Carol <carol@example.com>", 0,
	    "bob@example.net carol@example.com", NULL },
	{ "Gmail base64 name",
	    " =?UTF-8?B?5bGx55Sw5aSq6YOO?= <taro@example.jp>", 0,
	    "taro@example.jp", NULL },
	/* mutt */
	{ "mutt quoted name with comma",
	    " \"Example, Alice\" <alice@example.org>", 0, "alice@example.org",
	    NULL },
	{ "mutt undisclosed recipients", " undisclosed-recipients: ;", 0,
	    "", NULL },
	{ "mutt group alias",
	    " team: a@example.org, Bee <b@example.org>;", 0,
	    "a@example.org b@example.org", NULL },
	/* git send-email */
	{ "git send-email To a list", " linux-kernel@vger.kernel.org", 0,
	    "linux-kernel@vger.kernel.org", NULL },
	{ "git send-email folded Cc",
	    " Bob Developer <bob@example.com>,\r\n\tCarol Reviewer "
	    "<carol@example.com>",
	    0, "bob@example.com carol@example.com", NULL },
	{ "git send-email quoted dotted name",
	    " \"John Q. Public\" <jqp@example.com>", 0, "jqp@example.com",
	    NULL },
	/* Python email package */
	{ "Python Address()", " Alice Example <alice@example.org>", 0,
	    "alice@example.org", NULL },
	{ "Python Address() with specials",
	    " \"Public, John Q.\" <jqp@example.com>", 0, "jqp@example.com",
	    NULL },
	{ "Python Group()", " Team: alice@example.org, bob@example.org;", 0,
	    "alice@example.org bob@example.org", NULL },
	{ "Python empty Group()", " undisclosed-recipients:;", 0, "", NULL },
	{ "Python formataddr() non-ASCII",
	    " =?utf-8?b?SsO8cmdlbg==?= <j@example.de>", 0, "j@example.de",
	    NULL },
	/* obsolete and lenient forms clients still send */
	{ "obsolete unquoted dots in a name",
	    " John Q. Public <jqp@example.com>", 0, "jqp@example.com", NULL },
	{ "old-style comment name", " jqp@example.com (John Q. Public)", 0,
	    "jqp@example.com", NULL },
	{ "nested comments",
	    " alice@example.org (a (nested) comment), (x)bob@example.org", 0,
	    "alice@example.org bob@example.org", NULL },
	{ "empty members and a trailing comma",
	    " alice@example.org,, bob@example.org,", 0,
	    "alice@example.org bob@example.org", NULL },
	{ "route in an angle address",
	    " <@relay.example,@other.example:alice@example.org>", 0,
	    "alice@example.org", NULL },
	{ "spaces around dots", " john . doe @ example . com", 0,
	    "john.doe@example.com", NULL },
	{ "needlessly quoted local part", " \"bob\"@example.org", 0,
	    "bob@example.org", NULL },
	{ "quoted local part with a space", " \"john doe\"@example.org", 0,
	    "\"john doe\"@example.org", NULL },
	{ "domain literal", " alice@[192.0.2.1]", 0, "alice@[192.0.2.1]",
	    NULL },
	{ "unquoted address as the name",
	    " bob@example.org <bob@example.org>", 0, "bob@example.org", NULL },
	{ "raw UTF-8 name", " J\303\274rgen <j@example.de>", 0,
	    "j@example.de", NULL },
	{ "a comment only", " (nobody)", 0, "", NULL },
	/* bare addresses, and where "@domain" goes */
	{ "bare local part", " bob", 0, "bob", " bob@q.example" },
	{ "bare local part with a comment and a named one",
	    " bob (Bob Builder), \"Carol\" <carol>", 0, "bob carol",
	    " bob@q.example (Bob Builder), \"Carol\" <carol@q.example>" },
	{ "bare address in a group", " team: bob, c@x.example;", 0,
	    "bob c@x.example", " team: bob@q.example, c@x.example;" },
	{ "bare address next to a folded one",
	    " Bob <bob>,\r\n\tAlice <alice@example.org>", 0,
	    "bob alice@example.org",
	    " Bob <bob@q.example>,\r\n\tAlice <alice@example.org>" },
	/* malformed */
	{ "missing '>'", " <alice@example.org", -1, "missing '>'", NULL },
	{ "stray '>'", " alice@example.org>", -1, "unexpected '>'", NULL },
	{ "unterminated quoted name", " \"Alice <alice@example.org>", -1,
	    "unterminated quoted string", NULL },
	{ "unterminated comment", " alice@example.org (unclosed", -1,
	    "unterminated comment", NULL },
	{ "two addresses without a comma",
	    " alice@example.org bob@example.org", -1,
	    "missing ',' between addresses", NULL },
	{ "a name without angle brackets", " John Smith jsmith@example.com",
	    -1, "missing ',' between addresses", NULL },
	{ "double '@'", " a@@example.org", -1, "bad domain after '@'", NULL },
	{ "no local part", " @example.org", -1, "unexpected '@'", NULL },
	{ "no domain", " alice@", -1, "bad domain after '@'", NULL },
	{ "empty domain label", " alice@example..org", -1,
	    "bad domain after '@'", NULL },
	{ "trailing dot in local part", " alice.@example.org", -1,
	    "bad dot in local part", NULL },
	{ "empty angle address", " Nobody <>", -1, "empty <>", NULL },
	{ "unterminated domain literal", " alice@[192.0.2.1", -1,
	    "unterminated domain literal", NULL },
	{ "nested group", " a: b: c@d.example;;", -1, "unexpected ':'",
	    NULL },
	{ "control character", " ali\001ce@example.org", -1,
	    "control character", NULL },
	{ "line break not followed by whitespace (injection)",
	    " alice@example.org\r\nBcc: x@y.example", -1,
	    "line break inside the field", NULL },
	{ "text after the angle address",
	    " Alice <alice@example.org> extra", -1,
	    "missing ',' between addresses", NULL },
	{ "stray backslash", " ali\\ce@example.org", -1, "unexpected '\\'",
	    NULL },
};

/* Insert "@q.example" after each bare local part, as policy.c does. */
static char *
qualify(const char *body, const struct addr_list *al)
{
	struct buf b;
	size_t from = 0, k;

	buf_init(&b);
	for (k = 0; k < al->n; k++) {
		if (!al->mb[k].bare)
			continue;
		buf_add(&b, body + from, al->mb[k].local_end - from);
		buf_addstr(&b, "@q.example");
		from = al->mb[k].local_end;
	}
	buf_addstr(&b, body + from);
	return b.data;
}

static void
test_lists(void)
{
	struct addr_list al;
	struct buf got;
	char err[128], *q;
	size_t i, k;
	int rc;

	for (i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
		const struct list_case *c = &lists[i];
		const char *want = c->addrs != NULL ? c->addrs : "";

		addr_list_init(&al);
		err[0] = '\0';
		rc = addr_parse_list(c->body, strlen(c->body), &al, err,
		    sizeof(err));
		if (c->rc != 0) {
			is_int(rc, -1, "list: %s is refused", c->who);
			is_str(err, want, "list: %s is refused as \"%s\"",
			    c->who, want);
			addr_list_free(&al);
			continue;
		}
		buf_init(&got);
		buf_addstr(&got, "");
		for (k = 0; k < al.n; k++)
			buf_printf(&got, "%s%s", k > 0 ? " " : "",
			    al.mb[k].addr);
		is_int(rc, 0, "list: %s is accepted", c->who);
		is_str(got.data, c->addrs, "list: %s yields its addresses",
		    c->who);
		if (c->qualified != NULL) {
			q = qualify(c->body, &al);
			is_str(q, c->qualified,
			    "list: %s is qualified without touching "
			    "anything else", c->who);
			free(q);
		}
		buf_free(&got);
		addr_list_free(&al);
	}
}

static void
test_offsets(void)
{
	static const char body[] = " \"Doe, John\" <john.doe@example.com>";
	static const char grp[] = " undisclosed-recipients:;";
	struct addr_list al;
	char err[128];

	addr_list_init(&al);
	is_int(addr_parse_list(body, strlen(body), &al, err, sizeof(err)), 0,
	    "offsets: a named address parses");
	is_int(al.n, 1, "offsets: it is one mailbox");
	is_int(al.mb[0].start, 14, "offsets: the addr-spec starts after '<'");
	is_int(al.mb[0].end, 34, "offsets: the addr-spec ends before '>'");
	ok(al.mb[0].angle && !al.mb[0].bare && !al.mb[0].grouped,
	    "offsets: it is marked as an angle address with a domain");
	addr_list_free(&al);

	is_int(addr_parse_list(grp, strlen(grp), &al, err, sizeof(err)), 0,
	    "offsets: undisclosed-recipients:; parses");
	ok(al.n == 0 && al.ngroups == 1,
	    "offsets: it is one empty group and no mailbox");
	addr_list_free(&al);

	is_int(addr_parse_list("", 0, &al, err, sizeof(err)), 0,
	    "offsets: an empty field body parses");
	is_int(al.n, 0, "offsets: an empty field body has no mailbox");
	addr_list_free(&al);
}

static void
test_long_address(void)
{
	char body[400];
	struct addr_list al;
	char err[128];

	memset(body, 'x', 300);
	memcpy(body + 300, "@example.org", 13);
	addr_list_init(&al);
	is_int(addr_parse_list(body, strlen(body), &al, err, sizeof(err)), -1,
	    "list: an address longer than 254 octets is refused");
	is_str(err, "address too long",
	    "list: the overlong address is named as too long");
	addr_list_free(&al);
}

int
main(void)
{
	test_paths();
	test_path_limits();
	test_lists();
	test_offsets();
	test_long_address();
	return done_testing();
}

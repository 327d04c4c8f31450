/*
 * unit_bounce.c - the RFC 3464 delivery status notification: status
 * codes, every field of the report, the original headers, and queuing a
 * bounce into a mkdtemp spool.
 */
#include "msa.h"

#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "test/tap.h"

static const char *
status_of(const char *reply, bool expired)
{
	static char out[16];

	bounce_status(reply, expired, out, sizeof(out));
	return out;
}

static void
test_status(void)
{
	is_str(status_of("550 5.1.1 <bob@example.com>: no such user", false),
	    "5.1.1", "status: the reply's enhanced code");
	is_str(status_of("554-5.7.1 rejected by policy", false), "5.7.1",
	    "status: from a multiline reply too");
	is_str(status_of("550 mailbox unavailable", false), "5.0.0",
	    "status: 5.0.0 without an enhanced code");
	is_str(status_of("451 4.7.1 try later", false), "5.0.0",
	    "status: a permanent failure never reports a 4.x.x code");
	is_str(status_of("5.1.10 domain accepts no mail (null MX)", false),
	    "5.1.10", "status: a local reason with an enhanced code");
	is_str(status_of("550 5.1.1234 odd", false), "5.0.0",
	    "status: a malformed enhanced code is not copied");
	is_str(status_of("", false), "5.0.0", "status: no reply at all");
	is_str(status_of("451 4.4.1 connection timed out", true), "4.4.7",
	    "status: give-up reports 4.4.7");
}

/* The line of text that starts with prefix, or NULL. */
static const char *
line_of(const char *text, const char *prefix, char *buf, size_t len)
{
	const char *p = text, *e;

	for (; p != NULL && *p != '\0'; p = e != NULL ? e + 2 : NULL) {
		e = strstr(p, "\r\n");
		if (strncmp(p, prefix, strlen(prefix)) == 0) {
			size_t n = e != NULL ? (size_t)(e - p) : strlen(p);

			if (n >= len)
				n = len - 1;
			memcpy(buf, p, n);
			buf[n] = '\0';
			return buf;
		}
	}
	return NULL;
}

static bool
only_crlf(const char *s, size_t len)
{
	size_t i;

	for (i = 0; i < len; i++)
		if ((s[i] == '\n' && (i == 0 || s[i - 1] != '\r')) ||
		    (s[i] == '\r' && (i + 1 == len || s[i + 1] != '\n')))
			return false;
	return true;
}

static void
test_build(void)
{
	static const char hdrs[] = "Subject: lunch\r\nFrom: alice@example.org\r\n";
	struct bounce_rcpt r[2] = {
		{ "bob@example.com", "5.1.1",
		    "550 5.1.1 no such user\r\nX-Injected: yes", 1732800000,
		    false, 1 },
		{ "carol@example.net", "4.4.7", "451 4.4.1 timed out", 0, true,
		    9 },
	};
	struct bounce_ctx bc = { "mail.example.org", "0123456789abcdef",
		"alice@example.org", 1732800000, 1732900000, "tok123", hdrs,
		sizeof(hdrs) - 1 };
	struct buf out;
	char l[600];
	const char *dsn, *ret;

	buf_init(&out);
	bounce_build(&bc, r, 2, &out);
	ok(only_crlf(out.data, out.len), "dsn: every line ends in CRLF");
	is_str(line_of(out.data, "From:", l, sizeof(l)),
	    "From: MAILER-DAEMON@mail.example.org", "dsn: From MAILER-DAEMON");
	is_str(line_of(out.data, "To:", l, sizeof(l)), "To: alice@example.org",
	    "dsn: To the envelope sender");
	is_str(line_of(out.data, "Subject:", l, sizeof(l)),
	    "Subject: Undelivered Mail Returned to Sender", "dsn: Subject");
	is_str(line_of(out.data, "Auto-Submitted:", l, sizeof(l)),
	    "Auto-Submitted: auto-replied", "dsn: Auto-Submitted");
	is_str(line_of(out.data, "Date:", l, sizeof(l)),
	    "Date: Fri, 29 Nov 2024 17:06:40 +0000", "dsn: RFC 5322 Date");
	is_str(line_of(out.data, "Message-ID:", l, sizeof(l)),
	    "Message-ID: <tok123.bounce@mail.example.org>", "dsn: Message-ID");
	is_str(line_of(out.data, "Content-Type: multipart", l, sizeof(l)),
	    "Content-Type: multipart/report; report-type=delivery-status;",
	    "dsn: multipart/report of type delivery-status");
	ok(strstr(out.data, "\tboundary=\"tok123/mail.example.org\"\r\n") !=
		NULL,
	    "dsn: the boundary parameter");
	ok(strstr(out.data, "Content-Type: text/plain; charset=us-ascii") !=
		NULL,
	    "dsn: a human-readable part");
	ok(strstr(out.data, "<bob@example.com>: 550 5.1.1 no such user") !=
		NULL,
	    "dsn: the text names the recipient and the reply");
	ok(strstr(out.data, "<carol@example.net>: delivery time expired after "
			    "9 attempts") != NULL,
	    "dsn: the text explains the give-up");
	dsn = strstr(out.data, "Content-Type: message/delivery-status\r\n\r\n");
	ok(dsn != NULL, "dsn: a message/delivery-status part");
	if (dsn == NULL)
		dsn = out.data;
	is_str(line_of(dsn, "Reporting-MTA:", l, sizeof(l)),
	    "Reporting-MTA: dns; mail.example.org", "dsn: Reporting-MTA");
	is_str(line_of(dsn, "Arrival-Date:", l, sizeof(l)),
	    "Arrival-Date: Thu, 28 Nov 2024 13:20:00 +0000", "dsn: Arrival-Date");
	is_str(line_of(dsn, "Final-Recipient:", l, sizeof(l)),
	    "Final-Recipient: rfc822; bob@example.com",
	    "dsn: Final-Recipient of the first");
	is_str(line_of(dsn, "Action:", l, sizeof(l)), "Action: failed",
	    "dsn: Action failed");
	is_str(line_of(dsn, "Status:", l, sizeof(l)), "Status: 5.1.1",
	    "dsn: Status of the first");
	is_str(line_of(dsn, "Diagnostic-Code:", l, sizeof(l)),
	    "Diagnostic-Code: smtp; 550 5.1.1 no such user  X-Injected: yes",
	    "dsn: Diagnostic-Code, with the CRLF of the reply flattened");
	ok(line_of(out.data, "X-Injected:", l, sizeof(l)) == NULL,
	    "dsn: a reply cannot add a header line");
	is_str(line_of(dsn, "Last-Attempt-Date:", l, sizeof(l)),
	    "Last-Attempt-Date: Thu, 28 Nov 2024 13:20:00 +0000",
	    "dsn: Last-Attempt-Date");
	ret = strstr(dsn, "Final-Recipient: rfc822; carol@example.net\r\n"
			  "Action: failed\r\nStatus: 4.4.7\r\n"
			  "Diagnostic-Code: smtp; 451 4.4.1 timed out\r\n");
	ok(ret != NULL, "dsn: the second recipient's group, give-up 4.4.7");
	ok(strstr(out.data,
	       "Content-Type: text/rfc822-headers\r\n\r\nSubject: lunch\r\n"
	       "From: alice@example.org\r\n\r\n--tok123/mail.example.org--\r\n") !=
		NULL,
	    "dsn: the original headers, then the closing boundary");
	buf_free(&out);
}

static void
test_read_headers(void)
{
	char path[] = "/tmp/msa-unit-bounce.XXXXXX";
	static const char msg[] = "A: 1\r\nB: 2\r\n continued\r\n\r\nbody\r\n";
	struct buf b;
	int fd;

	if ((fd = mkstemp(path)) == -1)
		fatal("mkstemp");
	(void)unlink(path);
	if (write_all(fd, msg, sizeof(msg) - 1) == -1)
		fatal("write");
	buf_init(&b);
	is_int(bounce_read_headers(fd, 4096, &b), 0, "headers: read");
	is_str(b.data, "A: 1\r\nB: 2\r\n continued\r\n",
	    "headers: up to the empty line, folded lines kept");
	buf_reset(&b);
	is_int(bounce_read_headers(fd, 10, &b), 0, "headers: read, capped");
	is_str(b.data, "A: 1\r\n", "headers: the cap keeps whole lines only");
	buf_free(&b);
	(void)close(fd);
}

static void
test_queue_bounce(void)
{
	static const char body[] = "Subject: lunch\r\nMessage-ID: <m@x>\r\n\r\n"
				   "secret body\r\n";
	char root[] = "/tmp/msa-unit-bounce.XXXXXX", p[128], name[64];
	struct queue_env orig, b, back;
	struct buf text;
	int qfd, tfd, fd;
	char err[128];

	if (mkdtemp(root) == NULL)
		fatal("mkdtemp");
	(void)bsnprintf(p, sizeof(p), "%s/queue", root);
	if (mkdir(p, 0700) == -1 || (qfd = open(p, O_RDONLY)) == -1)
		fatal("%s", p);
	(void)bsnprintf(p, sizeof(p), "%s/tmp", root);
	if (mkdir(p, 0700) == -1 || (tfd = open(p, O_RDONLY)) == -1)
		fatal("%s", p);

	queue_env_init(&orig);
	if (queue_tmp_create(tfd, qfd, orig.id, &fd) != 0 ||
	    write_all(fd, body, sizeof(body) - 1) == -1)
		fatal("tmp");
	(void)close(fd);
	orig.created = 1732800000;
	strlcpy_msa(orig.sender, "alice@example.org", sizeof(orig.sender));
	orig.size = sizeof(body) - 1;
	queue_env_add_rcpt(&orig, "bob@example.com");
	queue_env_add_rcpt(&orig, "carol@example.net");
	queue_env_add_rcpt(&orig, "dave@example.net");
	orig.rcpt[0].state = QRCPT_FAILED;
	strlcpy_msa(orig.rcpt[0].reply, "550 5.1.1 no such user",
	    sizeof(orig.rcpt[0].reply));
	orig.rcpt[1].state = QRCPT_DELIVERED;
	orig.rcpt[2].state = QRCPT_EXPIRED;
	if (queue_commit_files(tfd, qfd, &orig) != 0)
		fatalx("commit");

	queue_env_init(&b);
	is_int(bounce_queue(tfd, qfd, "mail.example.org", &orig, 1732900000,
		   &b),
	    0, "bounce: queued");
	is_str(b.sender, "", "bounce: from the null sender");
	ok(b.nrcpt == 1 && strcmp(b.rcpt[0].addr, "alice@example.org") == 0,
	    "bounce: to the original sender only");
	ok(queue_env_load(qfd, b.id, &back, err, sizeof(err)) == 0 &&
		back.size == b.size,
	    "bounce: committed like any message");
	queue_env_free(&back);
	(void)bsnprintf(name, sizeof(name), "%s.data", b.id);
	buf_init(&text);
	if ((fd = openat(qfd, name, O_RDONLY)) == -1)
		fatal("%s", name);
	{
		char chunk[4096];
		ssize_t n;

		while ((n = read(fd, chunk, sizeof(chunk))) > 0)
			buf_add(&text, chunk, (size_t)n);
	}
	(void)close(fd);
	ok(text.len == b.size, "bounce: the envelope size matches its data");
	ok(strstr(text.data, "Final-Recipient: rfc822; bob@example.com\r\n") !=
		    NULL &&
		strstr(text.data, "Final-Recipient: rfc822; dave@example.net\r\n") !=
		    NULL,
	    "bounce: lists every failed and expired recipient");
	ok(strstr(text.data, "carol@example.net") == NULL,
	    "bounce: a delivered recipient is not listed");
	ok(strstr(text.data, "Subject: lunch\r\nMessage-ID: <m@x>\r\n") != NULL,
	    "bounce: carries the original headers");
	ok(strstr(text.data, "secret body") == NULL,
	    "bounce: but not the original body");
	buf_free(&text);

	strlcpy_msa(b.rcpt[0].reply, "550 no", sizeof(b.rcpt[0].reply));
	b.rcpt[0].state = QRCPT_FAILED;
	queue_env_init(&back);
	is_int(bounce_queue(tfd, qfd, "mail.example.org", &b, 1732900000,
		   &back),
	    EINVAL, "bounce: a bounce is never bounced");
	queue_env_free(&back);
	queue_env_free(&b);
	queue_env_free(&orig);
	(void)close(qfd);
	(void)close(tfd);
	(void)bsnprintf(p, sizeof(p), "rm -rf %s", root);
	if (system(p) != 0)
		fprintf(stderr, "# cannot remove %s\n", root);
}

int
main(void)
{
	if (setenv("TZ", "UTC", 1) == -1)
		fatal("setenv");
	tzset();
	log_init(LOG_LVL_ERROR, false, "unit_bounce");
	test_status();
	test_build();
	test_read_headers();
	test_queue_bounce();
	return done_testing();
}

/*
 * bounce.c - delivery status notifications (RFC 3464, RFC 6522).
 *
 * When a delivery round leaves recipients failed for good, the queue
 * process sends the envelope sender one multipart/report listing all of
 * them: a human-readable part, a message/delivery-status part with a
 * field group per recipient, and the failed message's header section.
 * The bounce is an ordinary queued message from <>, so it is delivered
 * and retried like any other; a bounce of a bounce is never made (the
 * queue drops failures of a null-sender message).
 */
#include <sys/stat.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "msa.h"

#define BOUNCE_TOKEN_BYTES 12

/* "ddd " or "ddd-" at the start of an SMTP reply. */
static const char *
bounce_skip_code(const char *s)
{
	if (s[0] >= '2' && s[0] <= '5' && s[1] >= '0' && s[1] <= '9' &&
	    s[2] >= '0' && s[2] <= '9' && (s[3] == ' ' || s[3] == '-'))
		return s + 4;
	return s;
}

/* Length of a "class.subject.detail" code at s (RFC 3463), 0 if none. */
static size_t
bounce_enhanced_len(const char *s)
{
	size_t i = 0, digits, part;

	if (s[0] != '2' && s[0] != '4' && s[0] != '5')
		return 0;
	i = 1;
	for (part = 0; part < 2; part++) {
		if (s[i++] != '.')
			return 0;
		for (digits = 0; s[i] >= '0' && s[i] <= '9'; i++)
			digits++;
		if (digits < 1 || digits > 3)
			return 0;
	}
	if (s[i] != '\0' && s[i] != ' ')
		return 0;
	return i;
}

void
bounce_status(const char *reply, bool expired, char *out, size_t outlen)
{
	const char *p;
	size_t n;

	if (expired) {
		strlcpy_msa(out, "4.4.7", outlen);
		return;
	}
	p = bounce_skip_code(reply);
	n = bounce_enhanced_len(p);
	if (n > 0 && p[0] == '5' && n < outlen) {
		memcpy(out, p, n);
		out[n] = '\0';
		return;
	}
	strlcpy_msa(out, "5.0.0", outlen);
}

/* A header field value: printable US-ASCII on one line. */
static const char *
bounce_clean(char *buf, size_t len, const char *s)
{
	size_t i;

	strlcpy_msa(buf, s, len);
	for (i = 0; buf[i] != '\0'; i++) {
		unsigned char c = (unsigned char)buf[i];

		if (c < 0x20 || c == 0x7f)
			buf[i] = ' ';
		else if (c > 0x7f)
			buf[i] = '?';
	}
	return buf;
}

/* RFC 5322 date-time in local time. */
static const char *
bounce_date(char *buf, size_t len, time_t t)
{
	struct tm tm;

	if (localtime_r(&t, &tm) == NULL ||
	    strftime(buf, len, "%a, %d %b %Y %H:%M:%S %z", &tm) == 0)
		strlcpy_msa(buf, "Thu, 01 Jan 1970 00:00:00 +0000", len);
	return buf;
}

static void
bounce_headers(const struct bounce_ctx *bc, struct buf *out)
{
	char date[64], host[MAX_DOMAIN], to[MAX_ADDR];

	(void)bounce_clean(host, sizeof(host), bc->hostname);
	buf_printf(out, "Date: %s\r\n", bounce_date(date, sizeof(date),
	    bc->now));
	buf_printf(out, "From: MAILER-DAEMON@%s\r\n", host);
	buf_printf(out, "To: %s\r\n",
	    bounce_clean(to, sizeof(to), bc->orig_sender));
	buf_addstr(out, "Subject: Undelivered Mail Returned to Sender\r\n");
	buf_printf(out, "Message-ID: <%s.bounce@%s>\r\n", bc->token, host);
	buf_addstr(out, "Auto-Submitted: auto-replied\r\n");
	buf_addstr(out, "MIME-Version: 1.0\r\n");
	buf_printf(out, "Content-Type: multipart/report; "
			"report-type=delivery-status;\r\n"
			"\tboundary=\"%s/%s\"\r\n",
	    bc->token, host);
	buf_addstr(out, "\r\n");
	buf_addstr(out, "This is a MIME-encapsulated message.\r\n\r\n");
}

static void
bounce_text_part(const struct bounce_ctx *bc, const struct bounce_rcpt *r,
    size_t n, const char *host, struct buf *out)
{
	char addr[MAX_ADDR], reply[MAX_REPLY];
	size_t i;

	buf_printf(out, "--%s/%s\r\n", bc->token, host);
	buf_addstr(out, "Content-Description: Notification\r\n");
	buf_addstr(out, "Content-Type: text/plain; charset=us-ascii\r\n\r\n");
	buf_printf(out, "This is the mail system at host %s.\r\n\r\n", host);
	buf_addstr(out,
	    "I'm sorry to have to inform you that your message could not\r\n"
	    "be delivered to one or more recipients. The reasons are listed\r\n"
	    "below; the headers of your message are attached.\r\n\r\n");
	for (i = 0; i < n; i++) {
		(void)bounce_clean(addr, sizeof(addr), r[i].addr);
		(void)bounce_clean(reply, sizeof(reply), r[i].reply);
		if (r[i].expired)
			buf_printf(out,
			    "<%s>: delivery time expired after %u attempt%s%s%s\r\n",
			    addr, r[i].attempts, r[i].attempts == 1 ? "" : "s",
			    reply[0] != '\0' ? "; last reply: " : "", reply);
		else
			buf_printf(out, "<%s>: %s\r\n", addr,
			    reply[0] != '\0' ? reply : "delivery failed");
	}
	buf_addstr(out, "\r\n");
}

static void
bounce_status_part(const struct bounce_ctx *bc, const struct bounce_rcpt *r,
    size_t n, const char *host, struct buf *out)
{
	char date[64], addr[MAX_ADDR], reply[MAX_REPLY];
	size_t i;

	buf_printf(out, "--%s/%s\r\n", bc->token, host);
	buf_addstr(out, "Content-Description: Delivery report\r\n");
	buf_addstr(out, "Content-Type: message/delivery-status\r\n\r\n");
	buf_printf(out, "Reporting-MTA: dns; %s\r\n", host);
	buf_printf(out, "X-Msa-Queue-ID: %s\r\n", bc->orig_id);
	buf_printf(out, "Arrival-Date: %s\r\n",
	    bounce_date(date, sizeof(date), bc->arrival));
	for (i = 0; i < n; i++) {
		buf_addstr(out, "\r\n");
		buf_printf(out, "Final-Recipient: rfc822; %s\r\n",
		    bounce_clean(addr, sizeof(addr), r[i].addr));
		buf_addstr(out, "Action: failed\r\n");
		buf_printf(out, "Status: %s\r\n", r[i].status);
		/* "smtp" only for a remote server's reply; msa's own verdicts
		 * (DNS, connection) carry a private type, as Postfix's do. */
		if (r[i].reply[0] != '\0')
			buf_printf(out, "Diagnostic-Code: %s; %s\r\n",
			    bounce_skip_code(r[i].reply) != r[i].reply ? "smtp"
								   : "X-msa",
			    bounce_clean(reply, sizeof(reply), r[i].reply));
		if (r[i].last_attempt != 0)
			buf_printf(out, "Last-Attempt-Date: %s\r\n",
			    bounce_date(date, sizeof(date), r[i].last_attempt));
	}
	buf_addstr(out, "\r\n");
}

void
bounce_build(const struct bounce_ctx *bc, const struct bounce_rcpt *r,
    size_t n, struct buf *out)
{
	char host[MAX_DOMAIN];

	(void)bounce_clean(host, sizeof(host), bc->hostname);
	bounce_headers(bc, out);
	bounce_text_part(bc, r, n, host, out);
	bounce_status_part(bc, r, n, host, out);
	buf_printf(out, "--%s/%s\r\n", bc->token, host);
	buf_addstr(out, "Content-Description: Undelivered Message Headers\r\n");
	buf_addstr(out, "Content-Type: text/rfc822-headers\r\n\r\n");
	if (bc->headerslen > 0)
		buf_add(out, bc->headers, bc->headerslen);
	if (bc->headerslen > 0 && bc->headers[bc->headerslen - 1] != '\n')
		buf_addstr(out, "\r\n");
	buf_addstr(out, "\r\n");
	buf_printf(out, "--%s/%s--\r\n", bc->token, host);
}

int
bounce_read_headers(int fd, size_t max, struct buf *out)
{
	struct buf b;
	char chunk[8192];
	size_t i, start, keep = 0;
	ssize_t n;
	off_t off = 0;

	buf_init(&b);
	while (b.len < max) {
		n = pread(fd, chunk, sizeof(chunk), off);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			int e = errno;

			buf_free(&b);
			return e;
		}
		if (n == 0)
			break;
		buf_add(&b, chunk, (size_t)n);
		off += n;
	}
	/* Whole lines up to the empty one that ends the header section. */
	for (start = 0, i = 0; i < b.len && i < max; i++) {
		if (b.data[i] != '\n')
			continue;
		if (i == start || (i == start + 1 && b.data[start] == '\r'))
			break;
		keep = start = i + 1;
	}
	if (keep > 0)
		buf_add(out, b.data, keep);
	buf_free(&b);
	return 0;
}

/* Original headers of orig, read from queue/ID.data (best effort). */
static void
bounce_orig_headers(int queue_fd, const char *id, struct buf *hdrs)
{
	char name[QUEUE_ID_LEN + 8];
	int fd, e;

	if (bsnprintf(name, sizeof(name), "%s.data", id) == -1)
		return;
	if ((fd = openat(queue_fd, name, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) ==
	    -1) {
		log_warn("event=bounce-headers-missing id=%s", id);
		return;
	}
	if ((e = bounce_read_headers(fd, HEADER_SECTION_MAX, hdrs)) != 0) {
		errno = e;
		log_warn("event=bounce-headers-missing id=%s", id);
	}
	(void)close(fd);
}

static bool
bounce_has_8bit(const struct buf *b)
{
	size_t i;

	for (i = 0; i < b->len; i++)
		if ((unsigned char)b->data[i] > 0x7f)
			return true;
	return false;
}

/* Write text as the new message tmp/ID and commit it with env. */
static int
bounce_commit(int tmp_fd, int queue_fd, const struct buf *text,
    struct queue_env *env)
{
	int fd, e;

	if ((e = queue_tmp_create(tmp_fd, queue_fd, env->id, &fd)) != 0)
		return e;
	e = write_all(fd, text->data, text->len) == -1 ? errno : 0;
	if (close(fd) == -1 && e == 0)
		e = errno;
	env->size = text->len;
	env->body_8bit = bounce_has_8bit(text);
	if (e == 0)
		e = queue_commit_files(tmp_fd, queue_fd, env);
	else
		(void)unlinkat(tmp_fd, env->id, 0);
	return e;
}

int
bounce_queue(int tmp_fd, int queue_fd, const char *hostname,
    const struct queue_env *orig, time_t now, struct queue_env *bounce)
{
	struct bounce_ctx bc;
	struct bounce_rcpt *r;
	char (*status)[16], token[2 * BOUNCE_TOKEN_BYTES + 1];
	struct buf hdrs, text;
	size_t i, n = 0;
	int e;

	if (orig->sender[0] == '\0')
		return EINVAL; /* a bounce is never bounced */
	r = xcalloc(orig->nrcpt, sizeof(*r));
	status = xcalloc(orig->nrcpt, sizeof(*status));
	for (i = 0; i < orig->nrcpt; i++) {
		const struct queue_rcpt *qr = &orig->rcpt[i];

		if (qr->state != QRCPT_FAILED && qr->state != QRCPT_EXPIRED)
			continue;
		r[n].addr = qr->addr;
		r[n].reply = qr->reply;
		r[n].last_attempt = qr->last;
		r[n].expired = qr->state == QRCPT_EXPIRED;
		r[n].attempts = qr->attempts;
		bounce_status(qr->reply, r[n].expired, status[n],
		    sizeof(status[n]));
		r[n].status = status[n];
		n++;
	}
	e = EINVAL;
	if (n == 0)
		goto done;
	buf_init(&hdrs);
	buf_init(&text);
	bounce_orig_headers(queue_fd, orig->id, &hdrs);
	random_hex(token, sizeof(token), BOUNCE_TOKEN_BYTES);
	memset(&bc, 0, sizeof(bc));
	bc.hostname = hostname;
	bc.orig_id = orig->id;
	bc.orig_sender = orig->sender;
	bc.arrival = orig->created;
	bc.now = now;
	bc.token = token;
	bc.headers = hdrs.data;
	bc.headerslen = hdrs.len;
	bounce_build(&bc, r, n, &text);

	queue_env_free(bounce);
	bounce->created = now;
	strlcpy_msa(bounce->login, "MAILER-DAEMON", sizeof(bounce->login));
	strlcpy_msa(bounce->client, "local", sizeof(bounce->client));
	strlcpy_msa(bounce->helo, hostname, sizeof(bounce->helo));
	queue_env_add_rcpt(bounce, orig->sender);
	if ((e = bounce_commit(tmp_fd, queue_fd, &text, bounce)) != 0)
		queue_env_free(bounce);
	buf_free(&hdrs);
	buf_free(&text);
done:
	free(r);
	free(status);
	return e;
}

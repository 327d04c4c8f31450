/*
 * fuzz_relay_reply.c - what the relay reads from remote servers and the
 * queue (relay.c): the SMTP reply parser, the EHLO capability parser,
 * and, as cross-checks, dot-stuffing and the relay job frame.
 *
 * Input: 1 mode byte, then the bytes.
 *   mode % 3 == 0: server lines (split at LF, one CR before it dropped)
 *     fed to relay_reply_feed until a reply is complete or refused, then
 *     relay_ehlo_parse on it; the next reply follows, as on a connection.
 *   mode % 3 == 1: message data made CRLF-clean (LF -> CR LF, CR dropped)
 *     is dot-stuffed by relay_dotstuff in pieces and ended with ".",
 *     then read back by the session's DATA reader: the end must be found
 *     exactly at the end and the data must come back unchanged.
 *   mode % 3 == 2: an IMSG_RELAY_JOB payload for relay_job_parse.
 *
 * Invariants: a reply's code is the three digits of every line, its
 * texts stay in their arrays, its enhanced code is "" or X.Y.Z with X the
 * code's class, nlines never passes RELAY_REPLY_MAXLINES, nothing is
 * taken once done; a SIZE limit is only seen with SIZE.
 */
#include <ctype.h>

#include "fuzz.h"

FUZZ_INIT_QUIET

static void
check_enh(const char *enh, int code)
{
	const char *p = enh;
	int part;

	if (*enh == '\0')
		return;
	FUZZ_CHECK(*p == '0' + code / 100 && p[1] == '.',
	    "enhanced code %s for %d", enh, code);
	p += 2;
	for (part = 0; part < 2; part++) {
		FUZZ_CHECK(isdigit((unsigned char)*p), "enhanced code %s", enh);
		while (isdigit((unsigned char)*p))
			p++;
		if (part == 0)
			FUZZ_CHECK(*p++ == '.', "enhanced code %s", enh);
	}
	FUZZ_CHECK(*p == '\0', "enhanced code %s", enh);
}

static void
check_reply(const struct relay_reply *r, const char *first)
{
	char code[4];

	FUZZ_CHECK(r->code >= 200 && r->code <= 559, "code %d", r->code);
	FUZZ_CHECK(bsnprintf(code, sizeof(code), "%d", r->code) == 0 &&
	    memcmp(first, code, 3) == 0, "code %d from line %.3s", r->code,
	    first);
	FUZZ_CHECK(fuzz_fits(r->enh, sizeof(r->enh)) &&
	    fuzz_fits(r->text, sizeof(r->text)) &&
	    fuzz_fits(r->lines, sizeof(r->lines)), "reply text overflows");
	FUZZ_CHECK(strncmp(r->text, code, 3) == 0, "text %s for code %d",
	    r->text, r->code);
	FUZZ_CHECK(r->nlines >= 1 && r->nlines <= RELAY_REPLY_MAXLINES,
	    "%zu lines", r->nlines);
	check_enh(r->enh, r->code);
}

static void
check_caps(const struct relay_reply *r)
{
	struct relay_caps caps;

	memset(&caps, 0xa5, sizeof(caps));
	relay_ehlo_parse(r, &caps);
	if (!caps.size)
		FUZZ_CHECK(caps.size_max == 0, "SIZE limit without SIZE");
	if (r->nlines <= 1)
		FUZZ_CHECK(!caps.pipelining && !caps.starttls && !caps.size &&
		    !caps.auth_plain && !caps.auth_login && !caps.enhanced &&
		    !caps.eightbitmime && !caps.smtputf8,
		    "capabilities from the greeting line alone");
}

static void
fuzz_replies(const char *in, size_t len)
{
	struct relay_reply *r = malloc(sizeof(*r));
	const char *line, *nl, *first = NULL;
	size_t pos = 0, n;
	int f;

	if (r == NULL)
		abort();
	relay_reply_init(r);
	while (pos < len) {
		line = in + pos;
		nl = memchr(line, '\n', len - pos);
		n = nl != NULL ? (size_t)(nl - line) : len - pos;
		pos += n + (nl != NULL);
		if (n > 0 && line[n - 1] == '\r')
			n--;
		if (r->nlines == 0)
			first = line;
		f = relay_reply_feed(r, line, n);
		FUZZ_CHECK(f == -1 || f == 0 || f == 1, "feed gave %d", f);
		if (f == -1) {
			relay_reply_init(r);
			continue;
		}
		FUZZ_CHECK(n >= 3, "a line of %zu octets accepted", n);
		check_reply(r, first);
		FUZZ_CHECK(r->done == (f == 1), "done %d after %d", r->done, f);
		if (f == 1) {
			FUZZ_CHECK(n == 3 || line[3] == ' ',
			    "reply ended by a continuation line");
			FUZZ_CHECK(relay_reply_feed(r, "250 more", 8) == -1,
			    "a complete reply took one more line");
			check_caps(r);
			relay_reply_init(r);
		} else
			FUZZ_CHECK(line[3] == '-', "reply not ended by a last line");
	}
	free(r);
}

/* The session's view of what the relay sends: a copy of the body. */
struct sink {
	struct buf hdr, body;
	bool hdr_seen;
};

static int
sink_header(void *arg, const char *p, size_t len)
{
	struct sink *k = arg;

	k->hdr_seen = true;
	buf_add(&k->hdr, p, len);
	return 0;
}

static int
sink_body(void *arg, const char *p, size_t len)
{
	buf_add(&((struct sink *)arg)->body, p, len);
	return 0;
}

static void
fuzz_dotstuff(const char *in, size_t len)
{
	struct buf clean, wire;
	struct smtp_data *d = malloc(sizeof(*d));
	struct sink k;
	size_t i, n, step;
	char *out;
	bool bol = true;

	if (d == NULL)
		abort();
	buf_init(&clean);
	buf_init(&wire);
	for (i = 0; i < len; i++) {
		if (in[i] == '\n')
			buf_add(&clean, "\r\n", 2);
		else if (in[i] != '\r')
			buf_add(&clean, in + i, 1);
	}
	if (clean.len > 0 && (clean.len < 2 ||
	    memcmp(clean.data + clean.len - 2, "\r\n", 2) != 0))
		buf_add(&clean, "\r\n", 2);
	/* Pieces of odd sizes, as reads from the spool file come. */
	out = malloc(2 * clean.len + 1);
	if (out == NULL)
		abort();
	for (i = 0, step = 1; i < clean.len; i += n, step = step * 3 % 17 + 1) {
		n = clean.len - i < step ? clean.len - i : step;
		buf_add(&wire, out, relay_dotstuff(&bol, clean.data + i, n, out));
	}
	FUZZ_CHECK(clean.len == 0 || bol, "not at a line start after CR LF");
	buf_add(&wire, ".\r\n", 3);

	memset(&k, 0, sizeof(k));
	buf_init(&k.hdr);
	buf_init(&k.body);
	smtp_data_init(d, UINT64_MAX, sink_header, sink_body, &k);
	n = smtp_data_feed(d, wire.data, wire.len);
	FUZZ_CHECK(d->done && n == wire.len,
	    "the data ends at %zu of %zu (done %d)", n, wire.len, d->done);
	FUZZ_CHECK(!(d->flags & SMTP_DATA_BARE_EOL), "bare CR/LF seen");
	if (d->flags == 0) {
		/* header + the empty line + body, or the header alone */
		FUZZ_CHECK(k.hdr_seen, "no header section");
		if (k.hdr.len == clean.len)
			FUZZ_CHECK(k.body.len == 0 && (clean.len == 0 ||
			    memcmp(k.hdr.data, clean.data, clean.len) == 0),
			    "header section changed");
		else
			FUZZ_CHECK(k.hdr.len + 2 + k.body.len == clean.len &&
			    (k.hdr.len == 0 || memcmp(k.hdr.data, clean.data,
			    k.hdr.len) == 0) &&
			    memcmp(clean.data + k.hdr.len, "\r\n", 2) == 0 &&
			    (k.body.len == 0 || memcmp(k.body.data,
			    clean.data + k.hdr.len + 2, k.body.len) == 0),
			    "message changed on its way through the relay");
	}
	smtp_data_free(d);
	free(d);
	free(out);
	buf_free(&k.hdr);
	buf_free(&k.body);
	buf_free(&clean);
	buf_free(&wire);
}

static void
fuzz_job(const uint8_t *data, size_t len)
{
	char *copy = fuzz_bytes(data, len), err[256];
	struct ipc_relay_job job;
	const struct ipc_rcpt *r = NULL;
	size_t i;

	err[0] = '\0';
	if (relay_job_parse(copy, len, &job, &r, err, sizeof(err)) == 0) {
		FUZZ_CHECK(job.nrcpt >= 1 && job.nrcpt <= MAX_RCPT_LIMIT &&
		    len == sizeof(job) + job.nrcpt * sizeof(*r),
		    "job of %u recipients in %zu bytes", job.nrcpt, len);
		FUZZ_CHECK((const char *)r == copy + sizeof(job),
		    "recipients not after the job");
		FUZZ_CHECK(queue_id_valid(job.id), "bad id accepted");
		for (i = 0; i < job.nrcpt; i++)
			FUZZ_CHECK(fuzz_fits(r[i].addr, sizeof(r[i].addr)) &&
			    r[i].addr[0] != '\0' &&
			    strpbrk(r[i].addr, "\r\n<>") == NULL,
			    "recipient %zu accepted", i);
	} else
		FUZZ_CHECK(err[0] != '\0', "job refused without a reason");
	free(copy);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *in;

	if (size < 1)
		return 0;
	switch (data[0] % 3) {
	case 0:
		in = fuzz_bytes(data + 1, size - 1);
		fuzz_replies(in, size - 1);
		free(in);
		break;
	case 1:
		in = fuzz_bytes(data + 1, size - 1);
		fuzz_dotstuff(in, size - 1);
		free(in);
		break;
	default:
		fuzz_job(data + 1, size - 1);
		break;
	}
	return 0;
}

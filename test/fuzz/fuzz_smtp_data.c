/*
 * fuzz_smtp_data.c - the DATA reader of the session (smtp_data_*).
 *
 * Input: 4 control bytes, then what the client sends after "DATA" CR LF.
 *   byte 0  bit 0: append CR LF . CR LF (the client finishes)
 *           bit 1: the header callback refuses (as policy would)
 *           bit 2: the body callback refuses after the first piece
 *   byte 1  the SIZE limit: 0 none, else a small value
 *   bytes 2, 3  seed of the points where the input is split into reads
 *
 * The state machine is checked against a plain model computed from the
 * whole input: the data end is the first CR LF . CR LF of CR LF + input
 * and nothing else; everything after it is left for the next command;
 * BARE_EOL is set exactly when a CR not followed by LF or an LF not
 * preceded by CR occurs before it; without it, the header section and the
 * body passed on are the unstuffed lines, split at the first empty line
 * (which is passed on to nobody), and the size, line-length and NUL flags
 * match the model.  Callbacks never run once a flag is set.
 */
#include "fuzz.h"

#define FUZZ_NO_LIMIT ((uint64_t)1 << 40)

struct sink {
	struct smtp_data *d;
	struct buf hdr, body;
	unsigned hdr_calls, body_calls;
	bool hdr_refuse, body_refuse;
};

FUZZ_INIT_QUIET

static int
sink_header(void *arg, const char *p, size_t len)
{
	struct sink *k = arg;

	FUZZ_CHECK(k->d->flags == 0, "header callback with flags %#x",
	    k->d->flags);
	FUZZ_CHECK(k->hdr_calls == 0, "header callback called twice");
	FUZZ_CHECK(len <= HEADER_SECTION_MAX, "header section of %zu", len);
	k->hdr_calls++;
	buf_add(&k->hdr, p, len);
	return k->hdr_refuse ? -1 : 0;
}

static int
sink_body(void *arg, const char *p, size_t len)
{
	struct sink *k = arg;

	FUZZ_CHECK(k->d->flags == 0, "body callback with flags %#x",
	    k->d->flags);
	FUZZ_CHECK(k->hdr_calls == 1, "body before the header section");
	FUZZ_CHECK(len > 0 && len <= SMTP_DATA_OUTBUF, "body piece of %zu",
	    len);
	k->body_calls++;
	buf_add(&k->body, p, len);
	return k->body_refuse ? -1 : 0;
}

/* What the machine must do, worked out on the whole stream at once. */
struct model {
	bool done;
	size_t consumed; /* octets of the input that belong to DATA */
	bool bare;
	struct buf hdr, body;
	bool blank; /* the empty line that ends the header was seen */
	uint64_t size;
	bool long_line, hdr_nul;
};

static void
model_run(const char *in, size_t len, struct model *m)
{
	size_t i, end, line, n, ll;
	const char *p;
	bool in_hdr = true;

	memset(m, 0, sizeof(*m));
	buf_init(&m->hdr);
	buf_init(&m->body);
	/* The stream is CR LF (of the DATA command) + in. */
	m->consumed = len;
	for (i = 0; i + 3 <= len; i++) {
		if (in[i] == '.' && in[i + 1] == '\r' && in[i + 2] == '\n' &&
		    (i == 0 || (i >= 2 && in[i - 2] == '\r' &&
		    in[i - 1] == '\n'))) {
			m->done = true;
			m->consumed = i + 3;
			break;
		}
	}
	for (i = 0; i < m->consumed; i++) {
		if (in[i] == '\r' && i + 1 < m->consumed && in[i + 1] != '\n')
			m->bare = true;
		if (in[i] == '\n' && (i == 0 || in[i - 1] != '\r'))
			m->bare = true;
	}
	if (!m->done || m->bare)
		return;
	/* The lines before the final ".", each ended by CR LF. */
	end = m->consumed - 3;
	for (line = 0; line < end; line = n + 2) {
		p = memchr(in + line, '\r', end - line);
		FUZZ_CHECK(p != NULL, "model: unterminated line");
		n = (size_t)(p - in);
		if (in[line] == '.')
			line++; /* unstuffing */
		ll = n - line;
		m->size += ll + 2;
		if (ll > 998)
			m->long_line = true;
		if (in_hdr && ll == 0) {
			in_hdr = false;
			m->blank = true;
			continue;
		}
		if (in_hdr && memchr(in + line, '\0', ll) != NULL)
			m->hdr_nul = true;
		buf_add(in_hdr ? &m->hdr : &m->body, in + line, ll);
		buf_add(in_hdr ? &m->hdr : &m->body, "\r\n", 2);
	}
}

static bool
buf_eq(const struct buf *a, const struct buf *b)
{
	return a->len == b->len && (a->len == 0 ||
	    memcmp(a->data, b->data, a->len) == 0);
}

/* xorshift32: the split points, reproducible from the seed bytes. */
static uint32_t
next_rand(uint32_t *s)
{
	*s ^= *s << 13;
	*s ^= *s >> 17;
	*s ^= *s << 5;
	return *s;
}

static size_t
feed_all(struct smtp_data *d, const char *in, size_t len, uint32_t seed)
{
	size_t off = 0, n, used, total = 0;
	uint32_t r;

	while (off < len) {
		r = next_rand(&seed);
		/* Mostly short reads, sometimes one byte, sometimes big. */
		switch (r & 3) {
		case 0:
			n = 1;
			break;
		case 1:
			n = (r >> 8) % 8 + 1;
			break;
		case 2:
			n = (r >> 8) % 512 + 1;
			break;
		default:
			n = (r >> 8) % 16384 + 1;
			break;
		}
		if (n > len - off)
			n = len - off;
		used = smtp_data_feed(d, in + off, n);
		FUZZ_CHECK(used <= n, "consumed %zu of %zu", used, n);
		FUZZ_CHECK(used == n || d->done,
		    "stopped early without the end of data");
		total += used;
		off += n;
		if (d->done) {
			/* The rest is the next command's: never taken. */
			if (off < len)
				FUZZ_CHECK(smtp_data_feed(d, in + off,
				    len - off) == 0, "took octets after the end");
			break;
		}
	}
	return total;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct smtp_data *d;
	struct sink k;
	struct model m;
	uint64_t maxsize;
	uint32_t seed;
	size_t len, consumed;
	char *in, reply[128];
	bool finish;
	int code;

	if (size < 4)
		return 0;
	finish = data[0] & 1;
	maxsize = data[1] == 0 ? FUZZ_NO_LIMIT : (uint64_t)data[1] * 16;
	seed = (uint32_t)data[2] << 8 | data[3] | 0x10000;
	len = size - 4;
	in = malloc(len + 5);
	if (in == NULL)
		abort();
	if (len > 0)
		memcpy(in, data + 4, len);
	if (finish) {
		memcpy(in + len, "\r\n.\r\n", 5);
		len += 5;
	}

	memset(&k, 0, sizeof(k));
	buf_init(&k.hdr);
	buf_init(&k.body);
	k.hdr_refuse = data[0] & 2;
	d = malloc(sizeof(*d));
	if (d == NULL)
		abort();
	k.d = d;
	smtp_data_init(d, maxsize, sink_header, sink_body, &k);
	k.body_refuse = data[0] & 4;
	consumed = feed_all(d, in, len, seed);

	model_run(in, len, &m);
	FUZZ_CHECK(d->done == m.done, "done %d, model %d", d->done, m.done);
	FUZZ_CHECK(consumed == m.consumed, "consumed %zu, model %zu",
	    consumed, m.consumed);
	FUZZ_CHECK(!!(d->flags & SMTP_DATA_BARE_EOL) == m.bare,
	    "BARE_EOL %d, model %d", !!(d->flags & SMTP_DATA_BARE_EOL), m.bare);
	code = smtp_data_verdict(d, reply, sizeof(reply));
	if (d->flags & SMTP_DATA_BARE_EOL)
		FUZZ_CHECK(code == 554, "bare CR/LF gives %d", code);
	FUZZ_CHECK((code == 0) == ((d->flags & ~SMTP_DATA_SINK) == 0),
	    "verdict %d for flags %#x", code, d->flags);
	FUZZ_CHECK(code == 0 || (code >= 500 && code < 600 && reply[0] == '5'),
	    "verdict %d \"%s\"", code, reply);

	if (m.done && !m.bare) {
		FUZZ_CHECK(d->size == m.size, "size %llu, model %llu",
		    (unsigned long long)d->size, (unsigned long long)m.size);
		FUZZ_CHECK(!!(d->flags & SMTP_DATA_TOO_BIG) ==
		    (m.size > maxsize), "TOO_BIG wrong for %llu/%llu",
		    (unsigned long long)m.size, (unsigned long long)maxsize);
		FUZZ_CHECK(!!(d->flags & SMTP_DATA_LONG_LINE) == m.long_line,
		    "LONG_LINE %d, model %d",
		    !!(d->flags & SMTP_DATA_LONG_LINE), m.long_line);
		FUZZ_CHECK(!!(d->flags & SMTP_DATA_HDR_NUL) == m.hdr_nul,
		    "HDR_NUL %d, model %d", !!(d->flags & SMTP_DATA_HDR_NUL),
		    m.hdr_nul);
		if (d->flags == 0) {
			FUZZ_CHECK(k.hdr_calls == 1, "no header callback");
			FUZZ_CHECK(buf_eq(&k.hdr, &m.hdr),
			    "header section differs from the unstuffed one");
			FUZZ_CHECK(buf_eq(&k.body, &m.body),
			    "body differs from the unstuffed one");
		}
		if (k.hdr_refuse && k.hdr_calls > 0)
			FUZZ_CHECK(d->flags & SMTP_DATA_SINK,
			    "a refusing header callback did not set SINK");
		if (k.body_refuse && k.body_calls > 0)
			FUZZ_CHECK(d->flags & SMTP_DATA_SINK,
			    "a refusing body callback did not set SINK");
	}
	if (!m.done)
		FUZZ_CHECK(k.body_calls == 0 || d->flags != 0 || !d->in_header,
		    "body passed on while still in the header");

	smtp_data_free(d);
	free(d);
	buf_free(&k.hdr);
	buf_free(&k.body);
	buf_free(&m.hdr);
	buf_free(&m.body);
	free(in);
	return 0;
}

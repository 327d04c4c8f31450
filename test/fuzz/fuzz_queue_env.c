/*
 * fuzz_queue_env.c - the envelope file of a queued message (queue.c).
 *
 * Input: 1 mode byte, then the bytes.
 *   mode even: the bytes are an envelope file for queue_env_parse.  If it
 *     is accepted, queue_env_format writes it again, and that text must
 *     parse to the same envelope and format to the same text (a fixed
 *     point: what the queue writes it can always read back).
 *   mode odd: the bytes are values (split at NUL) for an envelope built in
 *     memory - sender, login, client, helo, then recipient address and
 *     reply pairs, any bytes at all - that must survive format + parse
 *     unchanged.
 *
 * Invariants: a refusal has a reason and leaves the envelope empty (no
 * leak); an accepted envelope has a valid id, 1..MAX_RCPT_LIMIT non-empty
 * recipients in known states, and NUL-terminated strings.
 */
#include "fuzz.h"

FUZZ_INIT_QUIET

static void
check_env(const struct queue_env *e)
{
	size_t i;

	FUZZ_CHECK(queue_id_valid(e->id), "bad id accepted");
	FUZZ_CHECK(fuzz_fits(e->sender, sizeof(e->sender)) &&
	    fuzz_fits(e->login, sizeof(e->login)) &&
	    fuzz_fits(e->client, sizeof(e->client)) &&
	    fuzz_fits(e->helo, sizeof(e->helo)), "unterminated field");
	FUZZ_CHECK(e->nrcpt >= 1 && e->nrcpt <= MAX_RCPT_LIMIT &&
	    e->nrcpt <= e->rcpt_cap, "%zu recipients (cap %zu)", e->nrcpt,
	    e->rcpt_cap);
	FUZZ_CHECK(e->created >= 0, "negative creation time");
	for (i = 0; i < e->nrcpt; i++) {
		const struct queue_rcpt *r = &e->rcpt[i];

		FUZZ_CHECK(fuzz_fits(r->addr, sizeof(r->addr)) &&
		    fuzz_fits(r->reply, sizeof(r->reply)) && r->addr[0] != '\0',
		    "recipient %zu", i);
		FUZZ_CHECK(r->state <= QRCPT_BOUNCED, "recipient %zu state %d",
		    i, r->state);
		FUZZ_CHECK(strcmp(queue_rcpt_state_name(r->state), "unknown") !=
		    0, "state without a name");
		FUZZ_CHECK(r->next >= 0 && r->last >= 0, "negative times");
		FUZZ_CHECK(r->job == 0 && !r->result,
		    "run-time fields read from the file");
	}
}

static void
check_equal(const struct queue_env *a, const struct queue_env *b)
{
	size_t i;

	FUZZ_CHECK(strcmp(a->id, b->id) == 0 && a->created == b->created &&
	    strcmp(a->sender, b->sender) == 0 &&
	    strcmp(a->login, b->login) == 0 &&
	    strcmp(a->client, b->client) == 0 &&
	    strcmp(a->helo, b->helo) == 0 && a->size == b->size &&
	    a->body_8bit == b->body_8bit && a->nrcpt == b->nrcpt,
	    "envelope changed on a round trip");
	for (i = 0; i < a->nrcpt; i++) {
		const struct queue_rcpt *x = &a->rcpt[i], *y = &b->rcpt[i];

		FUZZ_CHECK(strcmp(x->addr, y->addr) == 0 &&
		    x->state == y->state && x->attempts == y->attempts &&
		    x->next == y->next && x->last == y->last &&
		    strcmp(x->reply, y->reply) == 0,
		    "recipient %zu changed on a round trip", i);
	}
}

/* Format e, parse it back into a fresh envelope, compare; text to out. */
static void
round_trip(const struct queue_env *e, struct buf *out)
{
	struct queue_env back;
	char err[256];
	int rc;

	queue_env_format(e, out);
	FUZZ_CHECK(memchr(out->data, '\0', out->len) == NULL,
	    "NUL in a written envelope");
	err[0] = '\0';
	rc = queue_env_parse(out->data, out->len, &back, err, sizeof(err));
	if (getenv("FUZZ_VERBOSE") != NULL)
		fprintf(stderr, "%.*s-> %d %s\n", (int)out->len, out->data, rc,
		    err);
	FUZZ_CHECK(rc == 0, "written envelope not readable: %s", err);
	check_env(&back);
	check_equal(e, &back);
	queue_env_free(&back);
}

static void
fuzz_parse(const uint8_t *data, size_t len)
{
	struct queue_env e;
	struct buf once;
	char *text = fuzz_bytes(data, len), err[256];

	err[0] = '\0';
	if (queue_env_parse(text, len, &e, err, sizeof(err)) != 0) {
		FUZZ_CHECK(err[0] != '\0', "refused without a reason");
		FUZZ_CHECK(e.rcpt == NULL && e.nrcpt == 0,
		    "refused envelope not emptied");
		free(text);
		return;
	}
	check_env(&e);
	buf_init(&once);
	round_trip(&e, &once);
	buf_free(&once);
	queue_env_free(&e);
	free(text);
}

/* Next NUL-separated value of the input, or "" once it runs out. */
static const char *
next_value(const char **p, const char *end, char *buf, size_t size)
{
	const char *nul;
	size_t n;

	if (*p >= end) {
		buf[0] = '\0';
		return buf;
	}
	nul = memchr(*p, '\0', (size_t)(end - *p));
	n = nul != NULL ? (size_t)(nul - *p) : (size_t)(end - *p);
	if (n >= size)
		n = size - 1;
	memcpy(buf, *p, n);
	buf[n] = '\0';
	*p = nul != NULL ? nul + 1 : end;
	return buf;
}

static void
fuzz_build(const uint8_t *data, size_t len)
{
	struct queue_env e;
	struct buf out;
	const char *p = (const char *)data, *end = p + len;
	char addr[MAX_ADDR], reply[MAX_REPLY];
	size_t i;

	queue_env_init(&e);
	memcpy(e.id, "0123456789abcdef", QUEUE_ID_LEN + 1);
	e.created = 1795973482;
	next_value(&p, end, e.sender, sizeof(e.sender));
	next_value(&p, end, e.login, sizeof(e.login));
	next_value(&p, end, e.client, sizeof(e.client));
	next_value(&p, end, e.helo, sizeof(e.helo));
	e.size = len * 1000003u;
	e.body_8bit = len & 1;
	for (i = 0; i < MAX_RCPT_LIMIT && (i == 0 || p < end); i++) {
		next_value(&p, end, addr, sizeof(addr));
		next_value(&p, end, reply, sizeof(reply));
		if (addr[0] == '\0')
			strlcpy_msa(addr, "bob@example.org", sizeof(addr));
		queue_env_add_rcpt(&e, addr);
		strlcpy_msa(e.rcpt[i].reply, reply, sizeof(e.rcpt[i].reply));
		e.rcpt[i].state = (enum queue_rcpt_state)(i % 5);
		e.rcpt[i].attempts = (unsigned)(i * 7);
		e.rcpt[i].next = (time_t)(i * 300);
		e.rcpt[i].last = (time_t)i;
	}
	buf_init(&out);
	round_trip(&e, &out);
	buf_free(&out);
	queue_env_free(&e);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 1)
		return 0;
	if (data[0] % 2 == 0)
		fuzz_parse(data + 1, size - 1);
	else
		fuzz_build(data + 1, size - 1);
	return 0;
}

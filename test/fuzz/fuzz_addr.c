/*
 * fuzz_addr.c - the address parsers (addr.c).
 *
 * Input: 1 control byte (the out buffer size for addr_parse_path, mod
 * 64, 0 meaning MAX_ADDR), then the text.  The text goes to both
 * parsers: as an SMTP path (NUL-terminated, as the session gives it) and
 * as the body of an address field (pointer and length, no terminator, as
 * policy gives it).
 *
 * Invariants.  Path: the result fits its buffer, is printable ASCII,
 * *rest lies in the argument past its blanks, and "<result>" parses to
 * the same result.  List: every mailbox's offsets are ordered and inside
 * the body, its address fits and holds no CR, LF or NUL, and the bytes at
 * [start, local_end) are not empty; inserting "@example.org" at each bare
 * mailbox's local_end - what policy does to qualify it - gives a body
 * that parses to the same mailboxes, now qualified with that domain.
 */
#include "fuzz.h"

#define QUAL "@example.org"

FUZZ_INIT_QUIET

static void
fuzz_path(const char *arg, size_t outlen)
{
	char *out = malloc(outlen), again[MAX_ADDR + 8], wire[MAX_ADDR + 8];
	const char *rest = NULL, *rest2 = NULL, *p;
	size_t arglen = strlen(arg);

	if (out == NULL)
		abort();
	if (addr_parse_path(arg, out, outlen, &rest) != 0)
		goto done;
	FUZZ_CHECK(fuzz_fits(out, outlen), "path overflows %zu", outlen);
	FUZZ_CHECK(rest != NULL && rest >= arg && rest <= arg + arglen,
	    "rest outside arg");
	FUZZ_CHECK(*rest != ' ', "rest starts with a blank");
	for (p = out; *p != '\0'; p++)
		FUZZ_CHECK((unsigned char)*p >= 0x20 && (unsigned char)*p < 0x7f,
		    "path holds byte 0x%02x", (unsigned char)*p);
	FUZZ_CHECK(bsnprintf(wire, sizeof(wire), "<%s>", out) == 0,
	    "cannot rewrite path");
	FUZZ_CHECK(addr_parse_path(wire, again, sizeof(again), &rest2) == 0,
	    "%s does not parse again", wire);
	FUZZ_CHECK(strcmp(again, out) == 0, "re-parse of %s gave %s", wire,
	    again);
done:
	free(out);
}

static void
check_list(const char *body, size_t len, const struct addr_list *l)
{
	const struct addr_mailbox *mb;
	size_t k;

	FUZZ_CHECK(l->n <= len, "%zu mailboxes in %zu bytes", l->n, len);
	for (k = 0; k < l->n; k++) {
		mb = &l->mb[k];
		FUZZ_CHECK(mb->start < mb->local_end && mb->local_end <=
		    mb->end && mb->end <= len,
		    "mailbox %zu offsets %zu %zu %zu of %zu", k, mb->start,
		    mb->local_end, mb->end, len);
		FUZZ_CHECK(!mb->bare || mb->local_end == mb->end,
		    "bare mailbox %zu with a domain part", k);
		FUZZ_CHECK(k == 0 || mb->start >= l->mb[k - 1].end,
		    "mailbox %zu overlaps the one before", k);
		FUZZ_CHECK(fuzz_fits(mb->addr, sizeof(mb->addr)),
		    "address overflows");
		FUZZ_CHECK(mb->addr[0] != '\0', "empty address");
		FUZZ_CHECK(strpbrk(mb->addr, "\r\n") == NULL,
		    "address %zu holds CR or LF", k);
		FUZZ_CHECK(mb->bare || strchr(mb->addr, '@') != NULL,
		    "qualified address without '@': %s", mb->addr);
		(void)body;
	}
}

/* Qualify as policy does and parse again. */
static void
check_qualified(const char *body, size_t len, const struct addr_list *l)
{
	struct addr_list q;
	struct buf b;
	size_t k, from = 0, nbare = 0;
	char err[128], want[MAX_ADDR + sizeof(QUAL)];
	int rc;

	buf_init(&b);
	for (k = 0; k < l->n; k++) {
		if (!l->mb[k].bare)
			continue;
		if (strlen(l->mb[k].addr) + strlen(QUAL) > 254)
			goto out; /* refused once qualified: a size limit */
		buf_add(&b, body + from, l->mb[k].local_end - from);
		buf_addstr(&b, QUAL);
		from = l->mb[k].local_end;
		nbare++;
	}
	if (nbare == 0)
		goto out;
	buf_add(&b, body + from, len - from);
	addr_list_init(&q);
	rc = addr_parse_list(b.data, b.len, &q, err, sizeof(err));
	if (getenv("FUZZ_VERBOSE") != NULL)
		fprintf(stderr, "qualified: [%.*s] -> %d %s\n", (int)b.len,
		    b.data, rc, rc == 0 ? "" : err);
	FUZZ_CHECK(rc == 0, "qualified body does not parse: %s", err);
	FUZZ_CHECK(q.n == l->n, "%zu mailboxes became %zu", l->n, q.n);
	check_list(b.data, b.len, &q);
	for (k = 0; k < l->n; k++) {
		FUZZ_CHECK(!q.mb[k].bare, "mailbox %zu still bare", k);
		FUZZ_CHECK(q.mb[k].grouped == l->mb[k].grouped &&
		    q.mb[k].angle == l->mb[k].angle,
		    "mailbox %zu changed its form", k);
		if (!l->mb[k].bare) {
			FUZZ_CHECK(strcmp(q.mb[k].addr, l->mb[k].addr) == 0,
			    "untouched %s became %s", l->mb[k].addr,
			    q.mb[k].addr);
			continue;
		}
		FUZZ_CHECK(bsnprintf(want, sizeof(want), "%s%s",
		    l->mb[k].addr, QUAL) == 0, "cannot qualify");
		FUZZ_CHECK(strcmp(q.mb[k].addr, want) == 0,
		    "bare %s qualified into %s", l->mb[k].addr, q.mb[k].addr);
	}
	addr_list_free(&q);
out:
	buf_free(&b);
}

static void
fuzz_list(const uint8_t *data, size_t len)
{
	struct addr_list l;
	char *body = fuzz_bytes(data, len), err[128];

	addr_list_init(&l);
	err[0] = '\0';
	if (addr_parse_list(body, len, &l, err, sizeof(err)) == 0) {
		check_list(body, len, &l);
		check_qualified(body, len, &l);
	} else
		FUZZ_CHECK(err[0] != '\0', "refused without a reason");
	addr_list_free(&l);
	FUZZ_CHECK(l.mb == NULL && l.n == 0, "list not emptied");
	free(body);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t outlen;
	char *arg;

	if (size < 1)
		return 0;
	outlen = data[0] % 64 != 0 ? data[0] % 64 : MAX_ADDR;
	arg = fuzz_cstr(data + 1, size - 1);
	fuzz_path(arg, outlen);
	free(arg);
	fuzz_list(data + 1, size - 1);
	return 0;
}

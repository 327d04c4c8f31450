/*
 * fuzz_dns.c - DNS answer handling of the relay (dns.c): a raw answer
 * buffer, as c-ares hands it to the callback, through the MX rules and
 * the address extraction.
 *
 * Input: 2 control bytes, then the answer.
 *   byte 0: the c-ares status that came with it: ARES_SUCCESS when
 *           below 0xc0, else (byte0 % 26) - any error code
 *   byte 1 % 4: 0 MX (dns_mx_from_answer for "example.org"), 1 A and
 *           AAAA of the same answer then dns_addrs_interleave, 2 the
 *           answer as a host name for dns_parse_literal, 3 all of them
 *
 * Invariants.  MX: never DNS_NODATA (no MX is the implicit MX); DNS_OK
 * gives 1..DNS_MAX_MX hosts ordered by preference, each a plain host name
 * (no empty name, no ".", no trailing dot, no byte a name cannot hold),
 * and err is empty; the implicit MX is the domain itself, preference 0;
 * any failure gives an empty list and a reason; an error status never
 * yields hosts.  Addresses: the list never passes DNS_MAX_ADDRS, each
 * entry has the family asked for and the port; interleaving keeps every
 * address (up to the cap) and starts with IPv6.
 */
#include <arpa/inet.h>

#include <ares.h>
#include <strings.h>

#include "fuzz.h"

#define DOMAIN "example.org"
#define PORT 2525

FUZZ_INIT_QUIET

static void
check_host(const char *h)
{
	size_t i, len;

	FUZZ_CHECK(fuzz_fits(h, MAX_DOMAIN), "MX host overflows");
	len = strlen(h);
	FUZZ_CHECK(len > 0 && strcmp(h, ".") != 0, "null MX host kept");
	FUZZ_CHECK(h[len - 1] != '.', "trailing dot kept: %s", h);
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)h[i];

		FUZZ_CHECK((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
		    (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_',
		    "MX host with byte 0x%02x", c);
	}
}

static void
fuzz_mx(int status, const unsigned char *abuf, size_t alen)
{
	struct dns_mx_list *out = malloc(sizeof(*out));
	enum dns_status st;
	char err[256];
	size_t i;

	if (out == NULL)
		abort();
	memset(out, 0xa5, sizeof(*out));
	memset(err, 'x', sizeof(err));
	st = dns_mx_from_answer(status, abuf, alen, DOMAIN, out, err,
	    sizeof(err));
	FUZZ_CHECK(st == DNS_OK || st == DNS_TEMPFAIL || st == DNS_PERMFAIL,
	    "MX status %d", st);
	FUZZ_CHECK(fuzz_fits(err, sizeof(err)), "err unterminated");
	if (st != DNS_OK) {
		FUZZ_CHECK(out->n == 0 && err[0] != '\0',
		    "failure %d with %zu hosts, err \"%s\"", st, out->n, err);
		goto done;
	}
	FUZZ_CHECK(err[0] == '\0', "success with err \"%s\"", err);
	FUZZ_CHECK(out->n >= 1 && out->n <= DNS_MAX_MX, "%zu MX hosts",
	    out->n);
	if (out->implicit) {
		FUZZ_CHECK(out->n == 1 && out->mx[0].pref == 0 &&
		    strcmp(out->mx[0].host, DOMAIN) == 0, "implicit MX wrong");
		goto done;
	}
	FUZZ_CHECK(status == ARES_SUCCESS, "hosts from status %d", status);
	FUZZ_CHECK(!dns_is_null_mx(out->mx, out->n), "null MX returned");
	for (i = 0; i < out->n; i++) {
		check_host(out->mx[i].host);
		FUZZ_CHECK(i == 0 || out->mx[i - 1].pref <= out->mx[i].pref,
		    "MX %zu out of order", i);
	}
done:
	free(out);
}

static void
check_addrs(const struct dns_addr_list *l, int family)
{
	const struct sockaddr_in *sin;
	const struct sockaddr_in6 *sin6;
	size_t i;

	FUZZ_CHECK(l->n <= DNS_MAX_ADDRS, "%zu addresses", l->n);
	for (i = 0; i < l->n; i++) {
		int fam = family != 0 ? family : l->ss[i].ss_family;

		FUZZ_CHECK(l->ss[i].ss_family == fam &&
		    (fam == AF_INET || fam == AF_INET6),
		    "address %zu family %d", i, l->ss[i].ss_family);
		if (fam == AF_INET) {
			sin = (const struct sockaddr_in *)(const void *)&l->ss[i];
			FUZZ_CHECK(l->sslen[i] == sizeof(*sin) &&
			    ntohs(sin->sin_port) == PORT, "IPv4 address %zu", i);
		} else {
			sin6 = (const struct sockaddr_in6 *)(const void *)
			    &l->ss[i];
			FUZZ_CHECK(l->sslen[i] == sizeof(*sin6) &&
			    ntohs(sin6->sin6_port) == PORT,
			    "IPv6 address %zu", i);
		}
	}
}

static enum dns_status
fuzz_one_family(int status, int family, const unsigned char *abuf,
    size_t alen, struct dns_addr_list *l)
{
	enum dns_status st;

	memset(l, 0, sizeof(*l));
	st = dns_addrs_from_answer(status, family, abuf, alen, PORT, l);
	FUZZ_CHECK(st == DNS_OK || st == DNS_NODATA || st == DNS_TEMPFAIL ||
	    st == DNS_PERMFAIL, "address status %d", st);
	if (st != DNS_OK)
		FUZZ_CHECK(l->n == 0, "failure %d with %zu addresses", st, l->n);
	if (status != ARES_SUCCESS)
		FUZZ_CHECK(st == dns_status_from_ares(status),
		    "status %d became %d", status, st);
	check_addrs(l, family);
	return st;
}

static void
fuzz_addrs(int status, const unsigned char *abuf, size_t alen)
{
	struct dns_addr_list v4, v6, all;
	size_t i, want;

	(void)fuzz_one_family(status, AF_INET, abuf, alen, &v4);
	(void)fuzz_one_family(status, AF_INET6, abuf, alen, &v6);
	memset(&all, 0xa5, sizeof(all));
	dns_addrs_interleave(&v6, &v4, &all);
	want = v4.n + v6.n < DNS_MAX_ADDRS ? v4.n + v6.n : DNS_MAX_ADDRS;
	FUZZ_CHECK(all.n == want, "interleaved %zu of %zu + %zu", all.n, v6.n,
	    v4.n);
	check_addrs(&all, 0);
	if (all.n > 0)
		FUZZ_CHECK(all.ss[0].ss_family == (v6.n > 0 ? AF_INET6 :
		    AF_INET), "interleaving does not start with IPv6");
	for (i = 1; i < all.n && i < 2 * (v4.n < v6.n ? v4.n : v6.n); i++)
		FUZZ_CHECK(all.ss[i].ss_family != all.ss[i - 1].ss_family,
		    "families not alternating at %zu", i);
}

static void
fuzz_literal(const unsigned char *abuf, size_t alen)
{
	char *host = fuzz_cstr(abuf, alen);
	struct dns_addr_list l;

	memset(&l, 0, sizeof(l));
	if (dns_parse_literal(host, PORT, &l)) {
		FUZZ_CHECK(l.n == 1, "literal gave %zu addresses", l.n);
		check_addrs(&l, 0);
		if (host[0] == '[')
			FUZZ_CHECK(l.ss[0].ss_family == AF_INET ||
			    strncasecmp(host, "[IPv6:", 6) == 0,
			    "bracketed IPv6 without the IPv6: tag");
	} else
		FUZZ_CHECK(l.n == 0, "refused literal added an address");
	free(host);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	unsigned char *abuf;
	size_t alen;
	int status;

	if (size < 2)
		return 0;
	status = data[0] < 0xc0 ? ARES_SUCCESS : data[0] % 26;
	alen = size - 2;
	abuf = (unsigned char *)fuzz_bytes(data + 2, alen);
	switch (data[1] % 4) {
	case 0:
		fuzz_mx(status, abuf, alen);
		break;
	case 1:
		fuzz_addrs(status, abuf, alen);
		break;
	case 2:
		fuzz_literal(abuf, alen);
		break;
	default:
		fuzz_mx(status, abuf, alen);
		fuzz_addrs(status, abuf, alen);
		fuzz_literal(abuf, alen);
		break;
	}
	free(abuf);
	return 0;
}

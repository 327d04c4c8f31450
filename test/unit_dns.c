/*
 * unit_dns.c - MX rules, answer parsing and live lookups against a tiny
 * DNS server run by the test itself on loopback.
 */
#include <sys/socket.h>
#include <sys/wait.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <ares.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "msa.h"
#include "test/tap.h"

#define T_A 1
#define T_CNAME 5
#define T_MX 15
#define T_AAAA 28

/* ------------------------------------------------------------------ */
/* A DNS message builder, enough for answers with MX, A, AAAA, CNAME    */

struct rr {
	int type;
	int pref; /* MX */
	const char *data; /* MX/CNAME target, or the textual address */
};

struct wire {
	unsigned char b[1024];
	size_t len;
};

static void
put8(struct wire *w, unsigned v)
{
	if (w->len < sizeof(w->b))
		w->b[w->len++] = (unsigned char)v;
}

static void
put16(struct wire *w, unsigned v)
{
	put8(w, (v >> 8) & 0xff);
	put8(w, v & 0xff);
}

static void
put_name(struct wire *w, const char *name)
{
	const char *p = name, *dot;
	size_t n;

	if (strcmp(name, ".") == 0 || *name == '\0') {
		put8(w, 0);
		return;
	}
	while (*p != '\0') {
		dot = strchr(p, '.');
		n = dot != NULL ? (size_t)(dot - p) : strlen(p);
		put8(w, (unsigned)n);
		while (n-- > 0)
			put8(w, (unsigned char)*p++);
		if (*p == '.')
			p++;
	}
	put8(w, 0);
}

static void
put_rr(struct wire *w, const struct rr *r)
{
	unsigned char addr[16];
	size_t rdlen_at, start, i;

	put16(w, 0xc00c); /* the question's name */
	put16(w, (unsigned)r->type);
	put16(w, 1);
	put16(w, 0);
	put16(w, 300);
	rdlen_at = w->len;
	put16(w, 0);
	start = w->len;
	if (r->type == T_MX) {
		put16(w, (unsigned)r->pref);
		put_name(w, r->data);
	} else if (r->type == T_CNAME)
		put_name(w, r->data);
	else if (r->type == T_A) {
		(void)inet_pton(AF_INET, r->data, addr);
		for (i = 0; i < 4; i++)
			put8(w, addr[i]);
	} else {
		(void)inet_pton(AF_INET6, r->data, addr);
		for (i = 0; i < 16; i++)
			put8(w, addr[i]);
	}
	w->b[rdlen_at] = (unsigned char)((w->len - start) >> 8);
	w->b[rdlen_at + 1] = (unsigned char)((w->len - start) & 0xff);
}

/* A whole answer: header, the question, then n records. */
static void
build_answer(struct wire *w, unsigned id, unsigned rcode, const char *qname,
    int qtype, const struct rr *rrs, size_t n)
{
	size_t i;

	w->len = 0;
	put16(w, id);
	put16(w, 0x8180 | rcode); /* response, RD, RA */
	put16(w, 1);
	put16(w, (unsigned)n);
	put16(w, 0);
	put16(w, 0);
	put_name(w, qname);
	put16(w, (unsigned)qtype);
	put16(w, 1);
	for (i = 0; i < n; i++)
		put_rr(w, &rrs[i]);
}

/* ------------------------------------------------------------------ */
/* Pure functions                                                      */

static void
test_status_mapping(void)
{
	is_int(
	    dns_status_from_ares(ARES_SUCCESS), DNS_OK, "an answer is success");
	is_int(dns_status_from_ares(ARES_ENODATA), DNS_NODATA,
	    "NOERROR without records is 'no data', not an error");
	is_int(dns_status_from_ares(ARES_ENOTFOUND), DNS_PERMFAIL,
	    "NXDOMAIN fails permanently (the message bounces)");
	is_int(dns_status_from_ares(ARES_EBADNAME), DNS_PERMFAIL,
	    "a malformed domain fails permanently");
	is_int(dns_status_from_ares(ARES_ESERVFAIL), DNS_TEMPFAIL,
	    "SERVFAIL is temporary (the message stays queued)");
	is_int(dns_status_from_ares(ARES_ETIMEOUT), DNS_TEMPFAIL,
	    "a DNS timeout is temporary");
	is_int(dns_status_from_ares(ARES_EREFUSED), DNS_TEMPFAIL,
	    "REFUSED is temporary");
	is_int(dns_status_from_ares(ARES_ECONNREFUSED), DNS_TEMPFAIL,
	    "an unreachable nameserver is temporary");
	is_int(dns_status_from_ares(ARES_EBADRESP), DNS_TEMPFAIL,
	    "a garbled answer is temporary");
}

static void
test_null_mx(void)
{
	struct dns_mx one[1] = { { 0, "." } };
	struct dns_mx two[2] = { { 0, "." }, { 10, "mx.example.org" } };
	struct dns_mx real[1] = { { 0, "mx.example.org" } };

	ok(dns_is_null_mx(one, 1), "MX 0 . alone is a null MX (RFC 7505)");
	ok(!dns_is_null_mx(two, 2), "a '.' next to a real MX is not a null MX");
	ok(!dns_is_null_mx(real, 1), "one real MX is not a null MX");
}

static void
test_mx_sort(void)
{
	static const struct dns_mx in[6] = {
		{ 20, "c1" },
		{ 10, "b1" },
		{ 10, "b2" },
		{ 5, "a" },
		{ 10, "b3" },
		{ 20, "c2" },
	};
	struct dns_mx mx[6];
	int first[3] = { 0, 0, 0 }, run, ordered = 1, complete = 1;
	size_t i, j;

	for (run = 0; run < 300; run++) {
		memcpy(mx, in, sizeof(in));
		dns_mx_sort(mx, 6);
		for (i = 1; i < 6; i++)
			if (mx[i - 1].pref > mx[i].pref)
				ordered = 0;
		for (i = 0; i < 6; i++) {
			for (j = 0; j < 6; j++)
				if (strcmp(in[i].host, mx[j].host) == 0)
					break;
			if (j == 6)
				complete = 0;
		}
		if (strcmp(mx[0].host, "a") != 0)
			ordered = 0;
		first[mx[1].host[1] - '1']++;
	}
	ok(ordered, "MX hosts come lowest preference first, every time");
	ok(complete, "sorting keeps every MX host");
	ok(first[0] > 0 && first[1] > 0 && first[2] > 0,
	    "hosts of equal preference are tried in random order (%d/%d/%d)",
	    first[0], first[1], first[2]);
}

static void
test_mx_answers(void)
{
	const struct rr three[] = {
		{ T_MX, 20, "mx3.example.org" },
		{ T_MX, 10, "mx1.example.org" },
		{ T_MX, 10, "mx2.example.org." },
	};
	const struct rr nullmx[] = { { T_MX, 0, "." } };
	const struct rr mixed[]
	    = { { T_MX, 0, "." }, { T_MX, 10, "mx.example.org" } };
	const struct rr cname[] = { { T_CNAME, 0, "other.example.org" } };
	const struct rr badname[] = { { T_MX, 10, "bad host.example.org" },
		{ T_MX, 20, "good.example.org" } };
	struct dns_mx_list l;
	struct wire w;
	char err[256];
	enum dns_status st;

	build_answer(&w, 1, 0, "example.org", T_MX, three, 3);
	st = dns_mx_from_answer(
	    ARES_SUCCESS, w.b, w.len, "example.org", &l, err, sizeof(err));
	is_int(st, DNS_OK, "an answer with three MX records is usable");
	is_int(l.n, 3, "all three MX hosts are kept");
	ok(l.n == 3 && l.mx[0].pref == 10 && l.mx[1].pref == 10
		&& l.mx[2].pref == 20
		&& strcmp(l.mx[2].host, "mx3.example.org") == 0,
	    "they are ordered by preference");
	ok(l.n == 3
		&& (strcmp(l.mx[0].host, "mx2.example.org") == 0
		    || strcmp(l.mx[1].host, "mx2.example.org") == 0),
	    "a trailing dot is dropped from MX host names");
	ok(!l.implicit, "real MX records are not an implicit MX");

	build_answer(&w, 1, 0, "example.org", T_MX, NULL, 0);
	st = dns_mx_from_answer(
	    ARES_SUCCESS, w.b, w.len, "example.org", &l, err, sizeof(err));
	ok(st == DNS_OK && l.implicit && l.n == 1
		&& strcmp(l.mx[0].host, "example.org") == 0
		&& l.mx[0].pref == 0,
	    "no MX records: the domain itself at preference 0");
	st = dns_mx_from_answer(
	    ARES_ENODATA, NULL, 0, "example.org", &l, err, sizeof(err));
	ok(st == DNS_OK && l.implicit, "NODATA from c-ares: implicit MX too");

	build_answer(&w, 1, 0, "example.org", T_MX, cname, 1);
	st = dns_mx_from_answer(
	    ARES_SUCCESS, w.b, w.len, "example.org", &l, err, sizeof(err));
	ok(st == DNS_OK && l.implicit,
	    "an answer with only a CNAME has no MX: implicit MX");

	build_answer(&w, 1, 0, "example.org", T_MX, nullmx, 1);
	st = dns_mx_from_answer(
	    ARES_SUCCESS, w.b, w.len, "example.org", &l, err, sizeof(err));
	is_int(st, DNS_PERMFAIL, "a null MX fails permanently");
	ok(strstr(err, "null MX") != NULL, "and says so: %s", err);

	build_answer(&w, 1, 0, "example.org", T_MX, mixed, 2);
	st = dns_mx_from_answer(
	    ARES_SUCCESS, w.b, w.len, "example.org", &l, err, sizeof(err));
	ok(st == DNS_OK && l.n == 1
		&& strcmp(l.mx[0].host, "mx.example.org") == 0,
	    "a stray '.' beside a real MX is ignored, the real one used");

	build_answer(&w, 1, 0, "example.org", T_MX, badname, 2);
	st = dns_mx_from_answer(
	    ARES_SUCCESS, w.b, w.len, "example.org", &l, err, sizeof(err));
	ok(st == DNS_OK && l.n == 1
		&& strcmp(l.mx[0].host, "good.example.org") == 0,
	    "an MX host name with a space is skipped");

	st = dns_mx_from_answer(
	    ARES_ENOTFOUND, NULL, 0, "nx.example", &l, err, sizeof(err));
	is_int(st, DNS_PERMFAIL, "NXDOMAIN for the domain bounces");
	st = dns_mx_from_answer(
	    ARES_ESERVFAIL, NULL, 0, "example.org", &l, err, sizeof(err));
	is_int(st, DNS_TEMPFAIL, "SERVFAIL for the domain defers");

	build_answer(&w, 1, 0, "example.org", T_MX, three, 3);
	st = dns_mx_from_answer(
	    ARES_SUCCESS, w.b, w.len - 7, "example.org", &l, err, sizeof(err));
	is_int(st, DNS_TEMPFAIL, "a truncated answer defers, never crashes");
	st = dns_mx_from_answer(ARES_SUCCESS, (const unsigned char *)"\1\2", 2,
	    "example.org", &l, err, sizeof(err));
	is_int(st, DNS_TEMPFAIL, "two bytes of garbage defer");
}

static void
test_addr_answers(void)
{
	const struct rr a[]
	    = { { T_A, 0, "192.0.2.1" }, { T_A, 0, "192.0.2.2" } };
	const struct rr aaaa[] = { { T_AAAA, 0, "2001:db8::1" } };
	struct dns_addr_list v4, v6, all;
	const struct sockaddr_in *sin;
	const struct sockaddr_in6 *sin6;
	struct wire w;
	char text[64];

	memset(&v4, 0, sizeof(v4));
	memset(&v6, 0, sizeof(v6));
	build_answer(&w, 2, 0, "mx.example.org", T_A, a, 2);
	is_int(
	    dns_addrs_from_answer(ARES_SUCCESS, AF_INET, w.b, w.len, 25, &v4),
	    DNS_OK, "an A answer gives IPv4 addresses");
	is_int(v4.n, 2, "both A records are kept");
	sin = (const struct sockaddr_in *)(const void *)&v4.ss[1];
	ok(sin->sin_family == AF_INET && ntohs(sin->sin_port) == 25
		&& strcmp(
		       inet_ntop(AF_INET, &sin->sin_addr, text, sizeof(text)),
		       "192.0.2.2")
		    == 0,
	    "with the port filled in");
	build_answer(&w, 3, 0, "mx.example.org", T_AAAA, aaaa, 1);
	is_int(
	    dns_addrs_from_answer(ARES_SUCCESS, AF_INET6, w.b, w.len, 25, &v6),
	    DNS_OK, "an AAAA answer gives IPv6 addresses");
	is_int(dns_addrs_from_answer(ARES_ENODATA, AF_INET6, NULL, 0, 25, &v6),
	    DNS_NODATA, "no AAAA record is 'no data'");
	dns_addrs_interleave(&v6, &v4, &all);
	sin6 = (const struct sockaddr_in6 *)(const void *)&all.ss[0];
	ok(all.n == 3 && sin6->sin6_family == AF_INET6
		&& all.ss[1].ss_family == AF_INET
		&& all.ss[2].ss_family == AF_INET,
	    "IPv6 and IPv4 addresses are both tried, IPv6 first");
}

static void
test_literals(void)
{
	struct dns_addr_list l;

	memset(&l, 0, sizeof(l));
	ok(dns_parse_literal("[192.0.2.7]", 25, &l) && l.n == 1
		&& l.ss[0].ss_family == AF_INET,
	    "[192.0.2.7] is an IPv4 literal");
	memset(&l, 0, sizeof(l));
	ok(dns_parse_literal("[IPv6:2001:db8::7]", 25, &l) && l.n == 1
		&& l.ss[0].ss_family == AF_INET6,
	    "[IPv6:2001:db8::7] is IPv6");
	memset(&l, 0, sizeof(l));
	ok(!dns_parse_literal("[2001:db8::7]", 25, &l),
	    "an IPv6 literal needs its IPv6: tag");
	ok(dns_parse_literal("127.0.0.1", 587, &l),
	    "a numeric smarthost needs no DNS");
	memset(&l, 0, sizeof(l));
	ok(!dns_parse_literal("mx.example.org", 25, &l) && l.n == 0,
	    "a host name is not a literal");
}

/* ------------------------------------------------------------------ */
/* Live lookups against a fake nameserver                              */

/* Question name (dotted) and type of a query; -1 if malformed. */
static int
parse_query(
    const unsigned char *q, size_t len, char *name, size_t namelen, int *qtype)
{
	size_t i = 12, o = 0, n;

	if (len < 17)
		return -1;
	while (i < len && q[i] != 0) {
		n = q[i++];
		if (i + n > len || o + n + 2 > namelen)
			return -1;
		if (o > 0)
			name[o++] = '.';
		memcpy(name + o, q + i, n);
		o += n;
		i += n;
	}
	name[o] = '\0';
	if (i + 5 > len)
		return -1;
	*qtype = q[i + 1] << 8 | q[i + 2];
	return 0;
}

static void
fake_dns_answer(int s, const unsigned char *q, size_t qlen,
    const struct sockaddr *from, socklen_t fromlen)
{
	static const struct rr mx_example[] = {
		{ T_MX, 20, "mx3.example.test" },
		{ T_MX, 10, "mx1.example.test" },
		{ T_MX, 10, "mx2.example.test" },
	};
	static const struct rr nullmx[] = { { T_MX, 0, "." } };
	static const struct rr a1[] = { { T_A, 0, "127.0.0.1" } };
	static const struct rr aaaa1[] = { { T_AAAA, 0, "::1" } };
	char name[256];
	int qtype;
	unsigned id;
	struct wire w;

	if (parse_query(q, qlen, name, sizeof(name), &qtype) == -1)
		return;
	id = (unsigned)(q[0] << 8 | q[1]);
	if (strcmp(name, "silent.test") == 0)
		return;
	if (strcmp(name, "noaaaa.test") == 0 && qtype == T_AAAA)
		return; /* a resolver that drops AAAA queries */
	if (strcmp(name, "example.test") == 0 && qtype == T_MX)
		build_answer(&w, id, 0, name, qtype, mx_example, 3);
	else if (strcmp(name, "nullmx.test") == 0 && qtype == T_MX)
		build_answer(&w, id, 0, name, qtype, nullmx, 1);
	else if (strcmp(name, "nx.test") == 0)
		build_answer(&w, id, 3, name, qtype, NULL, 0);
	else if (strcmp(name, "servfail.test") == 0)
		build_answer(&w, id, 2, name, qtype, NULL, 0);
	else if (strcmp(name, "mx1.example.test") == 0 && qtype == T_A)
		build_answer(&w, id, 0, name, qtype, a1, 1);
	else if (strcmp(name, "mx1.example.test") == 0 && qtype == T_AAAA)
		build_answer(&w, id, 0, name, qtype, aaaa1, 1);
	else if ((strcmp(name, "v4only.test") == 0
		     || strcmp(name, "noaaaa.test") == 0)
	    && qtype == T_A)
		build_answer(&w, id, 0, name, qtype, a1, 1);
	else /* NOERROR, no records */
		build_answer(&w, id, 0, name, qtype, NULL, 0);
	(void)sendto(s, w.b, w.len, 0, from, fromlen);
}

static pid_t
fake_dns_start(uint16_t *port)
{
	struct sockaddr_in sin;
	struct sockaddr_storage from;
	socklen_t len = sizeof(sin), fromlen;
	unsigned char q[512];
	ssize_t n;
	pid_t pid;
	int s;

	memset(&sin, 0, sizeof(sin));
	sin.sin_family = AF_INET;
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	if ((s = socket(AF_INET, SOCK_DGRAM, 0)) == -1
	    || bind(s, (struct sockaddr *)&sin, sizeof(sin)) == -1
	    || getsockname(s, (struct sockaddr *)&sin, &len) == -1)
		return -1;
	*port = ntohs(sin.sin_port);
	if ((pid = fork()) != 0) {
		(void)close(s);
		return pid;
	}
	for (;;) {
		fromlen = sizeof(from);
		n = recvfrom(
		    s, q, sizeof(q), 0, (struct sockaddr *)&from, &fromlen);
		if (n > 0)
			fake_dns_answer(
			    s, q, (size_t)n, (struct sockaddr *)&from, fromlen);
	}
}

static void
test_live(void)
{
	static struct config cfg;
	struct sockaddr_in *sin;
	struct dns_mx_list mx;
	struct dns_addr_list addrs;
	char err[256];
	uint16_t port;
	pid_t pid;
	time_t t0;
	enum dns_status st;

	if ((pid = fake_dns_start(&port)) == -1) {
		ok(0, "fake nameserver started");
		return;
	}
	cfg.nnameservers = 1;
	sin = (struct sockaddr_in *)(void *)&cfg.nameservers[0].ss;
	sin->sin_family = AF_INET;
	sin->sin_port = htons(port);
	sin->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	cfg.nameservers[0].sslen = sizeof(*sin);
	is_int(dns_init(&cfg, err, sizeof(err)), 0,
	    "dns.nameservers host:port is used");
	dns_set_timeout(1500);

	st = dns_mx("example.test", &mx, err, sizeof(err));
	ok(st == DNS_OK && mx.n == 3 && mx.mx[0].pref == 10
		&& mx.mx[2].pref == 20,
	    "live MX lookup: three hosts, in order");
	st = dns_mx("nomx.test", &mx, err, sizeof(err));
	ok(st == DNS_OK && mx.implicit
		&& strcmp(mx.mx[0].host, "nomx.test") == 0,
	    "live: a domain without MX is its own mail host");
	st = dns_mx("nullmx.test", &mx, err, sizeof(err));
	is_int(st, DNS_PERMFAIL, "live: a null MX bounces");
	st = dns_mx("nx.test", &mx, err, sizeof(err));
	is_int(st, DNS_PERMFAIL, "live: NXDOMAIN bounces");
	st = dns_mx("servfail.test", &mx, err, sizeof(err));
	is_int(st, DNS_TEMPFAIL, "live: SERVFAIL defers");
	st = dns_mx("silent.test", &mx, err, sizeof(err));
	ok(st == DNS_TEMPFAIL && err[0] != '\0',
	    "live: a nameserver that never answers defers (%s)", err);

	st = dns_addrs("mx1.example.test", 25, &addrs, err, sizeof(err));
	ok(st == DNS_OK && addrs.n == 2 && addrs.ss[0].ss_family == AF_INET6
		&& addrs.ss[1].ss_family == AF_INET,
	    "live: AAAA and A are both asked for");
	st = dns_addrs("v4only.test", 25, &addrs, err, sizeof(err));
	ok(st == DNS_OK && addrs.n == 1, "live: an IPv4-only host works");
	dns_set_timeout(8000);
	t0 = monotime();
	st = dns_addrs("noaaaa.test", 25, &addrs, err, sizeof(err));
	ok(st == DNS_OK && addrs.n == 1 && monotime() - t0 <= 3,
	    "live: a dropped AAAA query does not hold up the A answer");
	dns_set_timeout(1500);
	st = dns_addrs("noaddr.test", 25, &addrs, err, sizeof(err));
	is_int(st, DNS_NODATA, "live: a name without addresses is 'no data'");
	st = dns_addrs("nx.test", 25, &addrs, err, sizeof(err));
	is_int(st, DNS_PERMFAIL, "live: an address lookup on NXDOMAIN fails");

	(void)kill(pid, SIGKILL);
	(void)waitpid(pid, NULL, 0);
}

int
main(void)
{
	log_init(LOG_LVL_ERROR, false, "unit_dns");
	test_status_mapping();
	test_null_mx();
	test_mx_sort();
	test_mx_answers();
	test_addr_answers();
	test_literals();
	test_live();
	return done_testing();
}

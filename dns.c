/*
 * dns.c - MX, A and AAAA lookups for the relay, on c-ares.
 *
 * glibc's resolver loads NSS modules on first use, which cannot work in the
 * relay's chroot and seccomp sandbox, so every lookup goes through c-ares.
 * dns_init() runs before confinement: it learns the nameservers (from the
 * configuration, or /etc/resolv.conf through a throw-away channel) and
 * keeps them in memory.  The channel that does the queries is created
 * lazily by the process that uses it (a forked delivery worker gets a fresh
 * one, never a copy of its parent's), with every option given explicitly so
 * c-ares reads no configuration file inside the chroot.
 *
 * The lookups are synchronous for the caller: queries go out, a poll loop
 * drives c-ares until every answer is in or the deadline passes.  What an
 * answer means (implicit MX, null MX, the order of MX hosts, which errors
 * are permanent) is decided by pure functions on the raw answer, so unit
 * tests and fuzzers can reach them without a network.
 */
#include <sys/socket.h>

#include <arpa/inet.h>
#include <netinet/in.h>

#include <ares.h>
#include <errno.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "msa.h"

#define DNS_CLASS_IN 1
#define DNS_TYPE_A 1
#define DNS_TYPE_MX 15
#define DNS_TYPE_AAAA 28

#define DNS_DEFAULT_TIMEOUT_MS 10000
/*
 * Once one of the parallel address queries has an answer, how much longer
 * the other gets (RFC 8305 waits 50 ms for AAAA; a resolver that drops
 * AAAA queries must not cost every delivery the whole timeout).
 */
#define DNS_GRACE_MS 1000
#define DNS_MAX_ANSWER 65536

/* One outstanding query: filled in by the c-ares callback. */
struct dns_query {
	bool done;
	int status; /* ARES_* */
	unsigned char *abuf; /* copy of the answer, heap */
	size_t alen;
};

static struct ares_addr_port_node *dns_servers; /* NULL: c-ares default */
static bool dns_servers_from_ares; /* free with ares_free_data */
static ares_channel dns_chan;
static pid_t dns_chan_pid; /* the process that created dns_chan */
static int dns_timeout_ms = DNS_DEFAULT_TIMEOUT_MS;

/* ------------------------------------------------------------------ */
/* Pure functions: status mapping, MX rules, answer parsing            */

enum dns_status
dns_status_from_ares(int ares_status)
{
	switch (ares_status) {
	case ARES_SUCCESS:
		return DNS_OK;
	case ARES_ENODATA:
		/* NOERROR with no record of the type asked for. */
		return DNS_NODATA;
	case ARES_ENOTFOUND: /* NXDOMAIN */
	case ARES_EBADNAME: /* a name no query can succeed for */
		return DNS_PERMFAIL;
	default:
		/*
		 * SERVFAIL, REFUSED, FORMERR, NOTIMP, timeouts, refused
		 * connections, malformed answers, out of memory: a later
		 * attempt may succeed, so never bounce on them.
		 */
		return DNS_TEMPFAIL;
	}
}

/* A host name from an MX record that is safe to look up, log and send. */
static bool
dns_host_ok(const char *host)
{
	size_t i, len = strlen(host);

	if (len == 0 || len >= MAX_DOMAIN)
		return false;
	for (i = 0; i < len; i++) {
		unsigned char c = (unsigned char)host[i];
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')
			|| (c >= '0' && c <= '9') || c == '-' || c == '.'
			|| c == '_'))
			return false;
	}
	return true;
}

/* RFC 7505: "MX 0 ." and nothing else means "no mail, ever". */
bool
dns_is_null_mx(const struct dns_mx *mx, size_t n)
{
	if (n != 1)
		return false;
	return mx[0].host[0] == '\0' || strcmp(mx[0].host, ".") == 0;
}

/*
 * Lowest preference first, random order among equal preferences (RFC 5321
 * 5.1): shuffle, then a stable insertion sort by preference.
 */
void
dns_mx_sort(struct dns_mx *mx, size_t n)
{
	struct dns_mx tmp;
	size_t i, j;

	for (i = n; i > 1; i--) {
		j = arc4random_uniform((uint32_t)i);
		tmp = mx[i - 1];
		mx[i - 1] = mx[j];
		mx[j] = tmp;
	}
	for (i = 1; i < n; i++) {
		tmp = mx[i];
		for (j = i; j > 0 && mx[j - 1].pref > tmp.pref; j--)
			mx[j] = mx[j - 1];
		mx[j] = tmp;
	}
}

static void
dns_implicit_mx(const char *domain, struct dns_mx_list *out)
{
	memset(out, 0, sizeof(*out));
	out->n = 1;
	out->implicit = true;
	out->mx[0].pref = 0;
	strlcpy_msa(out->mx[0].host, domain, sizeof(out->mx[0].host));
}

/* Copy c-ares' MX list into out, dropping hosts we would not use. */
static void
dns_mx_collect(
    const struct ares_mx_reply *r, struct dns_mx_list *out, size_t *nnull)
{
	char host[MAX_DOMAIN];
	size_t len;

	*nnull = 0;
	for (; r != NULL && out->n < DNS_MAX_MX; r = r->next) {
		if (r->host == NULL)
			continue;
		if (strlcpy_msa(host, r->host, sizeof(host)) >= sizeof(host))
			continue;
		len = strlen(host);
		if (len > 1 && host[len - 1] == '.')
			host[len - 1] = '\0';
		if (host[0] == '\0' || strcmp(host, ".") == 0) {
			(*nnull)++;
			strlcpy_msa(
			    out->mx[out->n].host, ".", sizeof(out->mx[0].host));
		} else if (!dns_host_ok(host)) {
			log_debug("event=dns_mx_skipped reason=bad-host-name");
			continue;
		} else
			strlcpy_msa(out->mx[out->n].host, host,
			    sizeof(out->mx[0].host));
		out->mx[out->n].pref = r->priority;
		out->n++;
	}
}

/* Remove "." entries from a list that also has real hosts. */
static void
dns_mx_drop_null(struct dns_mx_list *out)
{
	size_t i, j;

	for (i = j = 0; i < out->n; i++)
		if (strcmp(out->mx[i].host, ".") != 0)
			out->mx[j++] = out->mx[i];
	out->n = j;
}

enum dns_status
dns_mx_from_answer(int ares_status, const unsigned char *abuf, size_t alen,
    const char *domain, struct dns_mx_list *out, char *err, size_t errlen)
{
	struct ares_mx_reply *mx = NULL;
	enum dns_status st;
	size_t nnull;
	int r;

	memset(out, 0, sizeof(*out));
	err[0] = '\0';
	st = dns_status_from_ares(ares_status);
	if (st == DNS_OK) {
		if (abuf == NULL || alen == 0 || alen > DNS_MAX_ANSWER)
			r = ARES_EBADRESP;
		else
			r = ares_parse_mx_reply(abuf, (int)alen, &mx);
		if (r == ARES_SUCCESS && mx == NULL)
			r = ARES_ENODATA; /* e.g. only a CNAME came back */
		st = dns_status_from_ares(r);
		ares_status = r;
	}
	if (st == DNS_NODATA) {
		/* RFC 5321 5.1: no MX, the domain is its own mail host. */
		dns_implicit_mx(domain, out);
		return DNS_OK;
	}
	if (st != DNS_OK) {
		(void)bsnprintf(err, errlen, "MX lookup for %s: %s", domain,
		    ares_strerror(ares_status));
		return st;
	}
	dns_mx_collect(mx, out, &nnull);
	ares_free_data(mx);
	if (out->n == 1 && nnull == 1) {
		(void)bsnprintf(
		    err, errlen, "%s does not accept mail (null MX)", domain);
		out->n = 0;
		return DNS_PERMFAIL;
	}
	dns_mx_drop_null(out);
	if (out->n == 0) {
		/* Only unusable names: nothing to try, maybe fixed later. */
		(void)bsnprintf(
		    err, errlen, "MX lookup for %s: no usable MX host", domain);
		return DNS_TEMPFAIL;
	}
	dns_mx_sort(out->mx, out->n);
	return DNS_OK;
}

static void
dns_addr_add(
    struct dns_addr_list *out, int family, const void *addr, uint16_t port)
{
	struct sockaddr_in *sin;
	struct sockaddr_in6 *sin6;
	size_t i = out->n;

	if (i >= DNS_MAX_ADDRS)
		return;
	memset(&out->ss[i], 0, sizeof(out->ss[i]));
	if (family == AF_INET) {
		sin = (struct sockaddr_in *)(void *)&out->ss[i];
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		memcpy(&sin->sin_addr, addr, sizeof(sin->sin_addr));
		out->sslen[i] = sizeof(*sin);
	} else {
		sin6 = (struct sockaddr_in6 *)(void *)&out->ss[i];
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		memcpy(&sin6->sin6_addr, addr, sizeof(sin6->sin6_addr));
		out->sslen[i] = sizeof(*sin6);
	}
	out->n++;
}

enum dns_status
dns_addrs_from_answer(int ares_status, int family, const unsigned char *abuf,
    size_t alen, uint16_t port, struct dns_addr_list *out)
{
	struct ares_addrttl a[DNS_MAX_ADDRS];
	struct ares_addr6ttl a6[DNS_MAX_ADDRS];
	int i, n = DNS_MAX_ADDRS, r;

	if (dns_status_from_ares(ares_status) != DNS_OK)
		return dns_status_from_ares(ares_status);
	if (abuf == NULL || alen == 0 || alen > DNS_MAX_ANSWER)
		return DNS_TEMPFAIL;
	if (family == AF_INET)
		r = ares_parse_a_reply(abuf, (int)alen, NULL, a, &n);
	else
		r = ares_parse_aaaa_reply(abuf, (int)alen, NULL, a6, &n);
	if (r != ARES_SUCCESS)
		return dns_status_from_ares(r);
	for (i = 0; i < n && i < DNS_MAX_ADDRS; i++) {
		if (family == AF_INET)
			dns_addr_add(out, AF_INET, &a[i].ipaddr, port);
		else
			dns_addr_add(out, AF_INET6, &a6[i].ip6addr, port);
	}
	return n > 0 ? DNS_OK : DNS_NODATA;
}

/*
 * An address literal instead of a name: "192.0.2.1", "2001:db8::1",
 * "[192.0.2.1]" or "[IPv6:2001:db8::1]" (RFC 5321 4.1.3).
 */
bool
dns_parse_literal(const char *host, uint16_t port, struct dns_addr_list *out)
{
	char tmp[MAX_DOMAIN];
	unsigned char addr[16];
	const char *p = host;
	size_t len;

	if (host[0] == '[') {
		len = strlen(host);
		if (len < 3 || host[len - 1] != ']' || len - 2 >= sizeof(tmp))
			return false;
		memcpy(tmp, host + 1, len - 2);
		tmp[len - 2] = '\0';
		p = tmp;
		if (strncasecmp(p, "IPv6:", 5) == 0) {
			if (inet_pton(AF_INET6, p + 5, addr) != 1)
				return false;
			dns_addr_add(out, AF_INET6, addr, port);
			return true;
		}
	}
	if (inet_pton(AF_INET, p, addr) == 1) {
		dns_addr_add(out, AF_INET, addr, port);
		return true;
	}
	/* A bare IPv6 literal inside brackets needs the "IPv6:" tag. */
	if (p == host && inet_pton(AF_INET6, p, addr) == 1) {
		dns_addr_add(out, AF_INET6, addr, port);
		return true;
	}
	return false;
}

/*
 * Interleave IPv6 and IPv4 addresses, IPv6 first (RFC 8305 section 4), so
 * that a host whose IPv6 is broken costs one failed connection, not all.
 */
void
dns_addrs_interleave(const struct dns_addr_list *v6,
    const struct dns_addr_list *v4, struct dns_addr_list *out)
{
	size_t i6 = 0, i4 = 0;

	memset(out, 0, sizeof(*out));
	while (out->n < DNS_MAX_ADDRS && (i6 < v6->n || i4 < v4->n)) {
		if (i6 < v6->n) {
			out->ss[out->n] = v6->ss[i6];
			out->sslen[out->n++] = v6->sslen[i6++];
		}
		if (i4 < v4->n && out->n < DNS_MAX_ADDRS) {
			out->ss[out->n] = v4->ss[i4];
			out->sslen[out->n++] = v4->sslen[i4++];
		}
	}
}

/* ------------------------------------------------------------------ */
/* Initialisation, before confinement                                  */

static int
dns_servers_from_config(const struct config *cfg, char *err, size_t errlen)
{
	struct ares_addr_port_node *nodes;
	const struct sockaddr_in *sin;
	const struct sockaddr_in6 *sin6;
	size_t i;

	nodes = xcalloc(cfg->nnameservers, sizeof(*nodes));
	for (i = 0; i < cfg->nnameservers; i++) {
		const struct sockaddr_storage *ss = &cfg->nameservers[i].ss;
		if (i + 1 < cfg->nnameservers)
			nodes[i].next = &nodes[i + 1];
		nodes[i].family = ss->ss_family;
		if (ss->ss_family == AF_INET) {
			sin = (const struct sockaddr_in *)(const void *)ss;
			nodes[i].addr.addr4 = sin->sin_addr;
			nodes[i].udp_port = nodes[i].tcp_port
			    = ntohs(sin->sin_port);
		} else if (ss->ss_family == AF_INET6) {
			sin6 = (const struct sockaddr_in6 *)(const void *)ss;
			memcpy(&nodes[i].addr.addr6, &sin6->sin6_addr,
			    sizeof(sin6->sin6_addr));
			nodes[i].udp_port = nodes[i].tcp_port
			    = ntohs(sin6->sin6_port);
		} else {
			free(nodes);
			(void)bsnprintf(err, errlen,
			    "nameserver %s: not an IP address",
			    cfg->nameservers[i].text);
			return -1;
		}
	}
	dns_servers = nodes;
	dns_servers_from_ares = false;
	return 0;
}

/* Let c-ares read /etc/resolv.conf now, while it still can. */
static int
dns_servers_from_resolv_conf(char *err, size_t errlen)
{
	ares_channel ch;
	int r;

	if ((r = ares_init(&ch)) != ARES_SUCCESS) {
		(void)bsnprintf(
		    err, errlen, "c-ares init: %s", ares_strerror(r));
		return -1;
	}
	r = ares_get_servers_ports(ch, &dns_servers);
	ares_destroy(ch);
	if (r != ARES_SUCCESS) {
		(void)bsnprintf(
		    err, errlen, "c-ares servers: %s", ares_strerror(r));
		return -1;
	}
	dns_servers_from_ares = true;
	return 0;
}

int
dns_init(const struct config *cfg, char *err, size_t errlen)
{
	struct ares_addr_port_node *n;
	char text[CLIENT_ADDR_LEN];
	int r;

	if ((r = ares_library_init(ARES_LIB_INIT_ALL)) != ARES_SUCCESS) {
		(void)bsnprintf(
		    err, errlen, "c-ares library init: %s", ares_strerror(r));
		return -1;
	}
	dns_reset();
	if (dns_servers != NULL) {
		if (dns_servers_from_ares)
			ares_free_data(dns_servers);
		else
			free(dns_servers);
		dns_servers = NULL;
	}
	if (cfg->nnameservers > 0)
		r = dns_servers_from_config(cfg, err, errlen);
	else
		r = dns_servers_from_resolv_conf(err, errlen);
	if (r == -1)
		return -1;
	for (n = dns_servers; n != NULL; n = n->next) {
		if (inet_ntop(n->family, &n->addr, text, sizeof(text)) == NULL)
			strlcpy_msa(text, "?", sizeof(text));
		log_debug("event=dns_server addr=%s port=%d", text,
		    n->udp_port ? n->udp_port : 53);
	}
	return 0;
}

void
dns_set_timeout(int ms)
{
	dns_timeout_ms = ms > 0 ? ms : DNS_DEFAULT_TIMEOUT_MS;
	dns_reset();
}

/* ------------------------------------------------------------------ */
/* The channel and the query loop                                      */

void
dns_reset(void)
{
	/* A channel inherited across fork shares its parent's sockets. */
	if (dns_chan != NULL && dns_chan_pid == getpid())
		ares_destroy(dns_chan);
	dns_chan = NULL;
}

/*
 * c-ares 1.18 keys its query ids from /dev/urandom and falls back to
 * rand() when that cannot be opened, as in the chroot.  Seed rand() from
 * OpenSSL so that a fallback key is at least unpredictable and differs
 * from one worker process to the next.
 */
static void
dns_seed_rand(void)
{
	unsigned int seed;

	if (RAND_bytes((unsigned char *)&seed, sizeof(seed)) != 1)
		fatalx("RAND_bytes failed");
	srand(seed);
}

static ares_channel
dns_channel(char *err, size_t errlen)
{
	struct ares_options o;
	char lookups[] = "b";
	int r, mask;

	if (dns_chan != NULL && dns_chan_pid == getpid())
		return dns_chan;
	dns_chan = NULL;
	/* Every option set, so c-ares opens no configuration file. */
	memset(&o, 0, sizeof(o));
	o.flags = ARES_FLAG_NOSEARCH | ARES_FLAG_NOALIASES;
	o.timeout = dns_timeout_ms / 5 > 100 ? dns_timeout_ms / 5 : 100;
	o.tries = 3;
	o.ndots = 1;
	o.nservers = 0;
	o.ndomains = 0;
	o.lookups = lookups;
	o.nsort = 0;
	mask = ARES_OPT_FLAGS | ARES_OPT_TIMEOUTMS | ARES_OPT_TRIES
	    | ARES_OPT_NDOTS | ARES_OPT_SERVERS | ARES_OPT_DOMAINS
	    | ARES_OPT_LOOKUPS | ARES_OPT_SORTLIST;
	dns_seed_rand();
	if ((r = ares_init_options(&dns_chan, &o, mask)) != ARES_SUCCESS) {
		dns_chan = NULL;
		(void)bsnprintf(
		    err, errlen, "c-ares init: %s", ares_strerror(r));
		return NULL;
	}
	if (dns_servers != NULL
	    && (r = ares_set_servers_ports(dns_chan, dns_servers))
		!= ARES_SUCCESS) {
		ares_destroy(dns_chan);
		dns_chan = NULL;
		(void)bsnprintf(
		    err, errlen, "c-ares servers: %s", ares_strerror(r));
		return NULL;
	}
	dns_chan_pid = getpid();
	return dns_chan;
}

static void
dns_callback(void *arg, int status, int timeouts, unsigned char *abuf, int alen)
{
	struct dns_query *q = arg;

	(void)timeouts;
	q->done = true;
	q->status = status;
	if (abuf != NULL && alen > 0 && alen <= DNS_MAX_ANSWER) {
		q->abuf = xmalloc((size_t)alen);
		memcpy(q->abuf, abuf, (size_t)alen);
		q->alen = (size_t)alen;
	}
}

static int64_t
dns_now_ms(void)
{
	struct timespec ts;

	if (clock_gettime(CLOCK_MONOTONIC, &ts) == -1)
		fatal("clock_gettime");
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static bool
dns_any_answer(const struct dns_query *q, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (q[i].done && q[i].status == ARES_SUCCESS)
			return true;
	return false;
}

static bool
dns_all_done(const struct dns_query *q, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++)
		if (!q[i].done)
			return false;
	return true;
}

/* One poll round over c-ares' sockets; false when the deadline passed. */
static bool
dns_poll_once(ares_channel ch, int64_t deadline)
{
	ares_socket_t socks[ARES_GETSOCK_MAXNUM];
	struct pollfd pfd[ARES_GETSOCK_MAXNUM];
	struct timeval maxtv, tv, *tvp;
	int64_t left = deadline - dns_now_ms();
	unsigned bits;
	bool rd, wr;
	int i, n = 0, wait, r;

	if (left <= 0)
		return false;
	/* c-ares' ARES_GETSOCK_* macros shift a signed 1 into bit 31. */
	bits = (unsigned)ares_getsock(ch, socks, ARES_GETSOCK_MAXNUM);
	for (i = 0; i < ARES_GETSOCK_MAXNUM; i++) {
		rd = (bits & (1u << i)) != 0;
		wr = (bits & (1u << (i + ARES_GETSOCK_MAXNUM))) != 0;
		if (!rd && !wr)
			continue;
		pfd[n].fd = socks[i];
		pfd[n].events = (short)((rd ? POLLIN : 0) | (wr ? POLLOUT : 0));
		pfd[n++].revents = 0;
	}
	maxtv.tv_sec = (time_t)(left / 1000);
	maxtv.tv_usec = (suseconds_t)((left % 1000) * 1000);
	tvp = ares_timeout(ch, &maxtv, &tv);
	wait = (int)(tvp->tv_sec * 1000 + tvp->tv_usec / 1000);
	if (wait <= 0)
		wait = 1;
	r = poll(pfd, (nfds_t)n, wait);
	if (r == -1 && errno != EINTR)
		fatal("poll");
	if (r <= 0) {
		ares_process_fd(ch, ARES_SOCKET_BAD, ARES_SOCKET_BAD);
		return true;
	}
	for (i = 0; i < n; i++) {
		if (pfd[i].revents == 0)
			continue;
		ares_process_fd(ch,
		    (pfd[i].revents & (POLLIN | POLLERR | POLLHUP))
			? pfd[i].fd
			: ARES_SOCKET_BAD,
		    (pfd[i].revents & POLLOUT) ? pfd[i].fd : ARES_SOCKET_BAD);
	}
	return true;
}

/*
 * Send n queries for name and wait for all of them, or the deadline, or
 * a short grace period after the first answer.
 */
static int
dns_run(const char *name, const int *types, struct dns_query *q, size_t n,
    char *err, size_t errlen)
{
	ares_channel ch;
	int64_t deadline;
	bool grace = false;
	size_t i;

	memset(q, 0, n * sizeof(*q));
	if ((ch = dns_channel(err, errlen)) == NULL)
		return -1;
	for (i = 0; i < n; i++)
		ares_query(
		    ch, name, DNS_CLASS_IN, types[i], dns_callback, &q[i]);
	deadline = dns_now_ms() + dns_timeout_ms;
	while (!dns_all_done(q, n)) {
		if (!grace && n > 1 && dns_any_answer(q, n)) {
			grace = true;
			if (deadline > dns_now_ms() + DNS_GRACE_MS)
				deadline = dns_now_ms() + DNS_GRACE_MS;
		}
		if (!dns_poll_once(ch, deadline))
			break;
	}
	if (!dns_all_done(q, n))
		ares_cancel(ch); /* callbacks run with ARES_ECANCELLED */
	for (i = 0; i < n; i++)
		if (!q[i].done || q[i].status == ARES_ECANCELLED) {
			q[i].done = true;
			q[i].status = ARES_ETIMEOUT;
		}
	return 0;
}

static void
dns_free_queries(struct dns_query *q, size_t n)
{
	size_t i;

	for (i = 0; i < n; i++) {
		free(q[i].abuf);
		q[i].abuf = NULL;
	}
}

/* A name we can ask about at all: no trailing dot kept, length checked. */
static int
dns_name(const char *in, char *out, size_t outlen)
{
	size_t len;

	if (strlcpy_msa(out, in, outlen) >= outlen)
		return -1;
	len = strlen(out);
	if (len > 1 && out[len - 1] == '.')
		out[--len] = '\0';
	if (len == 0 || len > 253)
		return -1;
	return 0;
}

enum dns_status
dns_mx(const char *domain, struct dns_mx_list *out, char *err, size_t errlen)
{
	static const int types[] = { DNS_TYPE_MX };
	struct dns_addr_list lit;
	struct dns_query q;
	enum dns_status st;
	char name[MAX_DOMAIN];

	memset(out, 0, sizeof(*out));
	err[0] = '\0';
	memset(&lit, 0, sizeof(lit));
	if (dns_parse_literal(domain, 0, &lit) && domain[0] == '[') {
		/* user@[192.0.2.1]: no MX lookup, the literal is the host. */
		dns_implicit_mx(domain, out);
		return DNS_OK;
	}
	if (dns_name(domain, name, sizeof(name)) == -1) {
		(void)bsnprintf(err, errlen, "bad domain name");
		return DNS_PERMFAIL;
	}
	if (dns_run(name, types, &q, 1, err, errlen) == -1)
		return DNS_TEMPFAIL;
	st = dns_mx_from_answer(
	    q.status, q.abuf, q.alen, name, out, err, errlen);
	dns_free_queries(&q, 1);
	return st;
}

/* Why neither lookup gave an address: the worst of the two outcomes. */
static enum dns_status
dns_addrs_failure(enum dns_status st6, enum dns_status st4,
    const struct dns_query *q, const char *host, char *err, size_t errlen)
{
	int code = q[1].status != ARES_SUCCESS ? q[1].status : q[0].status;

	if (st6 == DNS_TEMPFAIL || st4 == DNS_TEMPFAIL) {
		if (st4 != DNS_TEMPFAIL)
			code = q[0].status;
		if (code == ARES_SUCCESS)
			code = ARES_EBADRESP;
		(void)bsnprintf(err, errlen, "address lookup for %s: %s", host,
		    ares_strerror(code));
		return DNS_TEMPFAIL;
	}
	if (st6 == DNS_PERMFAIL || st4 == DNS_PERMFAIL) {
		(void)bsnprintf(err, errlen, "address lookup for %s: %s", host,
		    ares_strerror(ARES_ENOTFOUND));
		return DNS_PERMFAIL;
	}
	(void)bsnprintf(err, errlen, "%s has no IPv6 or IPv4 address", host);
	return DNS_NODATA;
}

enum dns_status
dns_addrs(const char *host, uint16_t port, struct dns_addr_list *out, char *err,
    size_t errlen)
{
	static const int types[] = { DNS_TYPE_AAAA, DNS_TYPE_A };
	struct dns_addr_list v6, v4;
	struct dns_query q[2];
	enum dns_status st6, st4;
	char name[MAX_DOMAIN];

	memset(out, 0, sizeof(*out));
	err[0] = '\0';
	if (dns_parse_literal(host, port, out))
		return DNS_OK;
	if (dns_name(host, name, sizeof(name)) == -1) {
		(void)bsnprintf(err, errlen, "bad host name");
		return DNS_PERMFAIL;
	}
	if (dns_run(name, types, q, 2, err, errlen) == -1)
		return DNS_TEMPFAIL;
	memset(&v6, 0, sizeof(v6));
	memset(&v4, 0, sizeof(v4));
	st6 = dns_addrs_from_answer(
	    q[0].status, AF_INET6, q[0].abuf, q[0].alen, port, &v6);
	st4 = dns_addrs_from_answer(
	    q[1].status, AF_INET, q[1].abuf, q[1].alen, port, &v4);
	dns_addrs_interleave(&v6, &v4, out);
	if (out->n > 0) {
		if (st6 == DNS_TEMPFAIL || st4 == DNS_TEMPFAIL)
			log_debug("event=dns_partial host=%s", name);
		dns_free_queries(q, 2);
		return DNS_OK;
	}
	st6 = dns_addrs_failure(st6, st4, q, name, err, errlen);
	dns_free_queries(q, 2);
	return st6;
}

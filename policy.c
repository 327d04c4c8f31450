/*
 * policy.c - who may send what, and the header fix-ups of RFC 6409 8.
 *
 * The session hands over the header section only; the body streams to the
 * queue untouched.  policy_apply validates the section, decides (from the
 * login's rights) whether the message may go, and writes the new section:
 * a Received field, the original fields in order - byte for byte, except
 * that bare addresses gain "@domain", a rejected Sender is replaced and Bcc
 * is dropped - then whatever fields were missing, then the empty line.
 */
#include <arpa/inet.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "msa.h"

#define LINE_MAX_OCTETS 998 /* RFC 5322 2.1.1, without CRLF */
#define FOLD_WIDTH 78 /* RFC 5322 2.1.1 "SHOULD" */

enum hkind {
	HK_OTHER,
	HK_FROM,
	HK_SENDER,
	HK_REPLY_TO,
	HK_TO,
	HK_CC,
	HK_BCC,
	HK_DATE,
	HK_MSGID,
	HK_MAX
};

static const struct {
	const char *name;
	enum hkind kind;
	bool qualify; /* its bare addresses get "@domain" */
} policy_fields[] = {
	{ "From", HK_FROM, true },
	{ "Sender", HK_SENDER, true },
	{ "Reply-To", HK_REPLY_TO, true },
	{ "To", HK_TO, true },
	{ "Cc", HK_CC, true },
	{ "Bcc", HK_BCC, false },
	{ "Date", HK_DATE, false },
	{ "Message-ID", HK_MSGID, false },
};

struct hfield {
	size_t start, end; /* the whole field, final CRLF included */
	size_t body; /* just after the colon */
	enum hkind kind;
	bool qualify;
	struct addr_list al; /* parsed if qualify */
	size_t nbare; /* bare addresses that will be qualified */
};

struct pmsg {
	const struct policy_ctx *pc;
	const char *hdr;
	size_t len;
	struct hfield *f;
	size_t n;
	size_t count[HK_MAX];
	size_t first[HK_MAX]; /* index of the first field of each kind */
	const char *login;
	char login_addr[MAX_ADDR];
	char from_addr[MAX_ADDR]; /* synthesised From, if missing */
	bool add_from, add_sender, replace_sender, add_to;
	char *reply;
	size_t replylen;
};

/* ------------------------------------------------------------------ */
/* Sender rights                                                       */

/* '*' matches any run of characters, everything else itself (exact). */
static bool
policy_glob(const char *pat, size_t plen, const char *s, size_t slen)
{
	size_t p = 0, i = 0, star = SIZE_MAX, mark = 0;

	while (i < slen) {
		if (p < plen && pat[p] == '*') {
			star = p++;
			mark = i;
		} else if (p < plen && pat[p] == s[i]) {
			p++;
			i++;
		} else if (star != SIZE_MAX) {
			p = star + 1;
			i = ++mark;
		} else
			return false;
	}
	while (p < plen && pat[p] == '*')
		p++;
	return p == plen;
}

static bool
policy_match(const char *pat, const char *addr)
{
	const char *pat_at = strrchr(pat, '@');
	const char *addr_at = strrchr(addr, '@');

	if (pat_at == NULL || addr_at == NULL)
		return pat_at == NULL && addr_at == NULL &&
		    strcmp(pat, addr) == 0;
	if (addr_at == addr || strcasecmp(pat_at + 1, addr_at + 1) != 0)
		return false;
	if (pat_at == pat) /* "@dom": any local part */
		return true;
	return policy_glob(pat, (size_t)(pat_at - pat), addr,
	    (size_t)(addr_at - addr));
}

bool
policy_sender_allowed(const struct login_rights *r, const char *addr)
{
	size_t i;

	if (addr[0] == '\0') /* the null sender: read receipts, DSNs */
		return true;
	if (r == NULL)
		return false;
	for (i = 0; i < r->n && i < MAX_RIGHTS; i++)
		if (policy_match(r->patterns[i], addr))
			return true;
	return false;
}

void
policy_login_address(const char *login, const char *domain, char *out,
    size_t outlen)
{
	int rc;

	if (strchr(login, '@') != NULL || domain == NULL || domain[0] == '\0')
		rc = bsnprintf(out, outlen, "%s", login);
	else
		rc = bsnprintf(out, outlen, "%s@%s", login, domain);
	if (rc == -1 && outlen > 0)
		out[0] = '\0';
}

/* ------------------------------------------------------------------ */
/* Rejections                                                          */

/* Copy s for an SMTP reply or a header: only printable ASCII survives. */
static const char *
policy_printable(char *buf, size_t len, const char *s, const char *bad)
{
	size_t i;

	for (i = 0; s[i] != '\0' && i + 1 < len; i++) {
		unsigned char c = (unsigned char)s[i];

		buf[i] = (c < 0x21 || c > 0x7e || strchr(bad, c) != NULL) ?
		    '?' : (char)c;
	}
	if (len > 0)
		buf[i] = '\0';
	return buf;
}

/*
 * Write the reply, log the rejection with a reason keyword (and the
 * offending address or field, if any) and return the SMTP code.
 */
static int __attribute__((format(printf, 5, 6)))
policy_reject(struct pmsg *pm, int code, const char *reason,
    const char *what, const char *fmt, ...)
{
	char l[MAX_LOGIN], c[CLIENT_ADDR_LEN], w[MAX_ADDR], id[64];
	va_list ap;

	va_start(ap, fmt);
	if (vsnprintf(pm->reply, pm->replylen, fmt, ap) < 0 &&
	    pm->replylen > 0)
		pm->reply[0] = '\0';
	va_end(ap);
	log_info("event=reject id=%s login=%s client=%s code=%d reason=%s%s%s",
	    log_sanitize(id, sizeof(id), pm->pc->queue_id),
	    log_sanitize(l, sizeof(l), pm->login),
	    log_sanitize(c, sizeof(c), pm->pc->client), code, reason,
	    what != NULL ? " what=" : "",
	    what != NULL ? log_sanitize(w, sizeof(w), what) : "");
	return code;
}

/* ------------------------------------------------------------------ */
/* The header section                                                  */

static void
hdr_classify(struct hfield *f, const char *name, size_t len)
{
	size_t i;

	f->kind = HK_OTHER;
	f->qualify = false;
	for (i = 0; i < sizeof(policy_fields) / sizeof(policy_fields[0]);
	    i++) {
		if (strlen(policy_fields[i].name) == len &&
		    strncasecmp(policy_fields[i].name, name, len) == 0) {
			f->kind = policy_fields[i].kind;
			f->qualify = policy_fields[i].qualify;
			return;
		}
	}
}

/* field-name = 1*ftext, then (obsolete) WSP, then ':'.  Returns body. */
static int
hdr_field_start(struct pmsg *pm, size_t pos, size_t eol)
{
	struct hfield *f;
	size_t q = pos, namelen;

	while (q < eol && pm->hdr[q] >= 33 && pm->hdr[q] <= 126 &&
	    pm->hdr[q] != ':')
		q++;
	namelen = q - pos;
	while (q < eol && (pm->hdr[q] == ' ' || pm->hdr[q] == '\t'))
		q++;
	if (namelen == 0 || q >= eol || pm->hdr[q] != ':')
		return policy_reject(pm, 554, "bad-field-name", NULL,
		    "5.6.0 Malformed header field name");
	if (pm->n >= HEADER_FIELDS_MAX)
		return policy_reject(pm, 554, "too-many-fields", NULL,
		    "5.6.0 More than %d header fields", HEADER_FIELDS_MAX);
	f = &pm->f[pm->n];
	memset(f, 0, sizeof(*f));
	f->start = pos;
	f->body = q + 1;
	f->end = eol + 2;
	hdr_classify(f, pm->hdr + pos, namelen);
	if (pm->count[f->kind]++ == 0)
		pm->first[f->kind] = pm->n;
	pm->n++;
	return 0;
}

/* Where the line at pos ends (its CR), or the reason it is malformed. */
static int
hdr_line_end(struct pmsg *pm, size_t pos, size_t *eol)
{
	size_t q;

	for (q = pos; q < pm->len; q++) {
		if (pm->hdr[q] == '\0')
			return policy_reject(pm, 554, "nul", NULL,
			    "5.6.0 NUL character in header");
		if (pm->hdr[q] == '\r' || pm->hdr[q] == '\n')
			break;
	}
	if (q - pos > LINE_MAX_OCTETS)
		return policy_reject(pm, 554, "long-line", NULL,
		    "5.6.0 Header line longer than %d octets",
		    LINE_MAX_OCTETS);
	if (q + 1 >= pm->len || pm->hdr[q] != '\r' || pm->hdr[q + 1] != '\n')
		return policy_reject(pm, 554, "bare-cr-lf", NULL,
		    "5.6.0 Header line not ended by CRLF");
	*eol = q;
	return 0;
}

/* Split the section into fields, checking RFC 5322 2.2 and 3.6 shape. */
static int
hdr_parse(struct pmsg *pm)
{
	size_t pos = 0, eol = 0;
	int rc;

	if (pm->len > HEADER_SECTION_MAX)
		return policy_reject(pm, 554, "header-too-large", NULL,
		    "5.6.0 Header section larger than %d octets",
		    HEADER_SECTION_MAX);
	pm->f = xcalloc(HEADER_FIELDS_MAX, sizeof(*pm->f));
	while (pos < pm->len) {
		if ((rc = hdr_line_end(pm, pos, &eol)) != 0)
			return rc;
		if (eol == pos)
			return policy_reject(pm, 554, "empty-line", NULL,
			    "5.6.0 Empty line inside the header section");
		if (pm->hdr[pos] == ' ' || pm->hdr[pos] == '\t') {
			if (pm->n == 0)
				return policy_reject(pm, 554,
				    "continuation-first", NULL,
				    "5.6.0 Header section starts with a "
				    "continuation line");
			pm->f[pm->n - 1].end = eol + 2;
		} else if ((rc = hdr_field_start(pm, pos, eol)) != 0)
			return rc;
		pos = eol + 2;
	}
	return 0;
}

static const char *
hdr_name(enum hkind kind)
{
	size_t i;

	for (i = 0; i < sizeof(policy_fields) / sizeof(policy_fields[0]); i++)
		if (policy_fields[i].kind == kind)
			return policy_fields[i].name;
	return "?";
}

/* Parse the address fields; any we cannot take apart is a rejection. */
static int
hdr_parse_addresses(struct pmsg *pm)
{
	struct hfield *f;
	char err[128];
	size_t i, k;
	bool qualify = pm->pc->cfg->domain[0] != '\0';

	for (i = 0; i < pm->n; i++) {
		f = &pm->f[i];
		if (!f->qualify)
			continue;
		if (addr_parse_list(pm->hdr + f->body, f->end - 2 - f->body,
		    &f->al, err, sizeof(err)) == -1)
			return policy_reject(pm, 554, "bad-address",
			    hdr_name(f->kind), "5.6.0 Malformed %s field: %s",
			    hdr_name(f->kind), err);
		for (k = 0; k < f->al.n && qualify; k++)
			if (f->al.mb[k].bare)
				f->nbare++;
	}
	return 0;
}

/* ------------------------------------------------------------------ */
/* From and Sender                                                     */

/* The address as it will read after qualification. */
static void
policy_effective(const struct pmsg *pm, const char *addr, char *out,
    size_t outlen)
{
	const char *dom = pm->pc->cfg->domain;

	if (strchr(addr, '@') != NULL || dom[0] == '\0' ||
	    bsnprintf(out, outlen, "%s@%s", addr, dom) == -1)
		strlcpy_msa(out, addr, outlen);
}

static bool
policy_allowed(const struct pmsg *pm, const char *addr)
{
	return pm->pc->rights != NULL &&
	    policy_sender_allowed(pm->pc->rights, addr);
}

/*
 * Which From addresses the message carries (the synthesised one if it has
 * none), whether one of them is the login's, and the first of them.
 */
static int
policy_from(struct pmsg *pm, bool *ok, size_t *nfrom, char *first,
    size_t firstlen)
{
	const struct hfield *f;
	char eff[MAX_ADDR];
	size_t k;

	*ok = false;
	if (pm->count[HK_FROM] == 0) {
		pm->add_from = true;
		policy_effective(pm, pm->pc->sender != NULL &&
		    pm->pc->sender[0] != '\0' ? pm->pc->sender : pm->login_addr,
		    pm->from_addr,
		    sizeof(pm->from_addr));
		*ok = policy_allowed(pm, pm->from_addr);
		*nfrom = 1;
		strlcpy_msa(first, pm->from_addr, firstlen);
		return 0;
	}
	f = &pm->f[pm->first[HK_FROM]];
	if (f->al.n == 0)
		return policy_reject(pm, 554, "no-from-address", NULL,
		    "5.6.0 From field has no address");
	for (k = 0; k < f->al.n; k++) {
		policy_effective(pm, f->al.mb[k].addr, eff, sizeof(eff));
		if (k == 0)
			strlcpy_msa(first, eff, firstlen);
		if (policy_allowed(pm, eff))
			*ok = true;
	}
	*nfrom = f->al.n;
	return 0;
}

static int
policy_check_sender(struct pmsg *pm, bool from_ok, size_t nfrom)
{
	const struct hfield *f;
	char eff[MAX_ADDR], shown[MAX_ADDR], login[MAX_LOGIN];
	bool add = pm->pc->cfg->from_mismatch == FROM_MISMATCH_ADD_SENDER;

	if (pm->count[HK_SENDER] == 0) {
		/* RFC 5322 3.6.2: several authors need a Sender */
		pm->add_sender = !from_ok || nfrom > 1;
		return 0;
	}
	f = &pm->f[pm->first[HK_SENDER]];
	if (f->al.n != 1)
		return policy_reject(pm, 554, "bad-sender", NULL,
		    "5.6.0 Sender field must hold exactly one address");
	policy_effective(pm, f->al.mb[0].addr, eff, sizeof(eff));
	if (policy_allowed(pm, eff))
		return 0;
	if (add) {
		pm->replace_sender = true;
		return 0;
	}
	return policy_reject(pm, 553, "sender-not-allowed", eff,
	    "5.7.1 Sender address <%s> not allowed for %s",
	    policy_printable(shown, sizeof(shown), eff, ""),
	    policy_printable(login, sizeof(login), pm->login, ""));
}

static int
policy_check_senders(struct pmsg *pm)
{
	char first[MAX_ADDR], shown[MAX_ADDR], login[MAX_LOGIN];
	size_t nfrom = 0;
	bool from_ok;
	int rc;

	if (pm->count[HK_FROM] > 1)
		return policy_reject(pm, 554, "multiple-from", NULL,
		    "5.6.0 Message has more than one From field");
	if (pm->count[HK_SENDER] > 1)
		return policy_reject(pm, 554, "multiple-sender", NULL,
		    "5.6.0 Message has more than one Sender field");
	if ((rc = policy_from(pm, &from_ok, &nfrom, first, sizeof(first))) !=
	    0)
		return rc;
	if (!from_ok &&
	    pm->pc->cfg->from_mismatch != FROM_MISMATCH_ADD_SENDER)
		return policy_reject(pm, 553, "from-not-allowed", first,
		    "5.7.1 From address <%s> not allowed for %s",
		    policy_printable(shown, sizeof(shown), first, ""),
		    policy_printable(login, sizeof(login), pm->login, ""));
	return policy_check_sender(pm, from_ok, nfrom);
}

/* ------------------------------------------------------------------ */
/* Writing the new section                                             */

static const char *const policy_days[] = { "Sun", "Mon", "Tue", "Wed",
	"Thu", "Fri", "Sat" };
static const char *const policy_months[] = { "Jan", "Feb", "Mar", "Apr",
	"May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec" };

/* RFC 5322 3.3 date-time in local time: "Sun, 29 Nov 2026 18:31:22 +0100" */
static void
policy_date(time_t t, char *buf, size_t len)
{
	struct tm tm;
	long off;

	if (localtime_r(&t, &tm) == NULL)
		fatalx("localtime_r failed");
	off = tm.tm_gmtoff / 60;
	if (bsnprintf(buf, len, "%s, %d %s %04d %02d:%02d:%02d %c%02ld%02ld",
	    policy_days[tm.tm_wday % 7], tm.tm_mday,
	    policy_months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour,
	    tm.tm_min, tm.tm_sec, off < 0 ? '-' : '+', labs(off) / 60,
	    labs(off) % 60) == -1)
		fatalx("policy_date: buffer too small");
}


/* A time stamp is built as a list of clauses, then folded. */
struct chunks {
	char c[12][MAX_DOMAIN + 64];
	bool brk[12]; /* start a new line before this clause */
	size_t n;
};

static void __attribute__((format(printf, 2, 3)))
chunk_add(struct chunks *ch, const char *fmt, ...)
{
	va_list ap;
	int n;

	if (ch->n >= sizeof(ch->c) / sizeof(ch->c[0]))
		fatalx("chunk_add: too many clauses");
	va_start(ap, fmt);
	n = vsnprintf(ch->c[ch->n], sizeof(ch->c[0]), fmt, ap);
	va_end(ap);
	if (n < 0)
		fatalx("chunk_add: bad format");
	ch->brk[ch->n] = false;
	ch->n++;
}

/* Write name and the clauses, folding before one that would pass 78. */
static void
chunk_fold(const struct chunks *ch, const char *name, struct buf *out)
{
	size_t i, n, col = strlen(name);

	buf_addstr(out, name);
	for (i = 0; i < ch->n; i++) {
		n = strlen(ch->c[i]);
		if (i > 0 && (ch->brk[i] || col + 1 + n > FOLD_WIDTH)) {
			buf_addstr(out, "\r\n\t");
			col = 1;
		} else {
			buf_addstr(out, " ");
			col++;
		}
		buf_addstr(out, ch->c[i]);
		col += n;
	}
	buf_addstr(out, "\r\n");
}

/* The client's address as an RFC 5321 address literal, when it is one. */
static void
policy_client_literal(struct chunks *ch, const char *client)
{
	unsigned char bin[sizeof(struct in6_addr)];
	char clean[CLIENT_ADDR_LEN];

	if (inet_pton(AF_INET, client, bin) == 1)
		chunk_add(ch, "([%s])", client);
	else if (inet_pton(AF_INET6, client, bin) == 1)
		chunk_add(ch, "([IPv6:%s])", client);
	else
		chunk_add(ch, "(%s)", policy_printable(clean, sizeof(clean),
		    client, "()\\"));
}

/* The HELO name is the client's word: keep only what a domain may hold. */
static const char *
policy_helo(const char *helo, char *buf, size_t len)
{
	static const char ok[] = "abcdefghijklmnopqrstuvwxyz"
				 "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789.-_:[]";
	size_t i;

	if (helo == NULL || helo[0] == '\0')
		helo = "unknown";
	for (i = 0; helo[i] != '\0' && i + 1 < len; i++)
		buf[i] = strchr(ok, helo[i]) != NULL ? helo[i] : '?';
	buf[i] = '\0';
	return buf;
}

/* An address literal or bare IP as HELO name gives the address away. */
static bool
policy_helo_is_address(const char *helo)
{
	unsigned char tmp[sizeof(struct in6_addr)];

	if (helo == NULL)
		return false;
	return helo[0] == '[' || inet_pton(AF_INET, helo, tmp) == 1 ||
	    inet_pton(AF_INET6, helo, tmp) == 1;
}

/*
 * RFC 5321 4.4 time stamp, folded at 78 between clauses, "by" always on
 * a line of its own:
 *   Received: from HELO ([addr]) (authenticated as LOGIN)
 *   	by HOSTNAME (msa) with ESMTPSA (TLSv1.3 CIPHER) id ID; DATE
 * There is no "for" clause: it would name a Bcc recipient.
 */
static void
policy_received(const struct pmsg *pm, const char *date, struct buf *out)
{
	const struct policy_ctx *pc = pm->pc;
	struct chunks ch;
	char a[MAX_DOMAIN], b[MAX_DOMAIN];
	bool tls = pc->tls_version != NULL, auth = pc->rights != NULL;
	size_t n;

	ch.n = 0;
	/* hide_client_ip: Thunderbird greets with "EHLO [192.0.2.7]". */
	chunk_add(&ch, "from %s", policy_helo(pc->cfg->hide_client_ip &&
	    policy_helo_is_address(pc->helo) ? NULL : pc->helo, a, sizeof(a)));
	if (!pc->cfg->hide_client_ip && pc->client != NULL &&
	    pc->client[0] != '\0')
		policy_client_literal(&ch, pc->client);
	if (auth)
		chunk_add(&ch, "(authenticated as %s)",
		    policy_printable(a, sizeof(a), pm->login, "()\\"));
	chunk_add(&ch, "by %s (msa)", pc->cfg->hostname);
	ch.brk[ch.n - 1] = true; /* "by" starts a line, as in Postfix */
	chunk_add(&ch, "with ESMTP%s%s", tls ? "S" : "", auth ? "A" : "");
	if (tls)
		chunk_add(&ch, "(%s %s)",
		    policy_printable(a, sizeof(a), pc->tls_version, "()\\"),
		    policy_printable(b, sizeof(b), pc->tls_cipher != NULL ?
		    pc->tls_cipher : "unknown", "()\\"));
	if (pc->queue_id != NULL && pc->queue_id[0] != '\0')
		chunk_add(&ch, "id %s",
		    policy_printable(a, sizeof(a), pc->queue_id, "()\\;"));
	n = strlen(ch.c[ch.n - 1]);
	if (n + 1 < sizeof(ch.c[0])) {
		ch.c[ch.n - 1][n] = ';';
		ch.c[ch.n - 1][n + 1] = '\0';
	}
	chunk_add(&ch, "%s", date);
	chunk_fold(&ch, "Received:", out);
}

static bool
policy_long_line(const char *p, size_t n)
{
	const char *cr;

	while ((cr = memchr(p, '\r', n)) != NULL) {
		if ((size_t)(cr - p) > LINE_MAX_OCTETS)
			return true;
		n -= (size_t)(cr - p) + 2;
		p = cr + 2;
	}
	return n > LINE_MAX_OCTETS;
}

/* Copy field f, inserting "@domain" after each bare local part. */
static int
policy_write_qualified(struct pmsg *pm, const struct hfield *f,
    struct buf *out)
{
	const char *dom = pm->pc->cfg->domain;
	size_t from = f->start, at, mark = out->len, k;

	for (k = 0; k < f->al.n; k++) {
		if (!f->al.mb[k].bare)
			continue;
		at = f->body + f->al.mb[k].local_end;
		buf_add(out, pm->hdr + from, at - from);
		buf_addstr(out, "@");
		buf_addstr(out, dom);
		from = at;
	}
	buf_add(out, pm->hdr + from, f->end - from);
	if (policy_long_line(out->data + mark, out->len - mark))
		return policy_reject(pm, 554, "long-line", hdr_name(f->kind),
		    "5.6.0 %s field too long once addresses are qualified",
		    hdr_name(f->kind));
	return 0;
}

/* An address we put into a header must not be able to break it. */
static bool
policy_header_safe(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return false;
	return true;
}

static int
policy_write_fields(struct pmsg *pm, struct buf *out)
{
	const struct hfield *f;
	size_t i;
	int rc;

	for (i = 0; i < pm->n; i++) {
		f = &pm->f[i];
		if (f->kind == HK_BCC && pm->pc->cfg->remove_bcc)
			continue;
		if (f->kind == HK_SENDER && pm->replace_sender)
			buf_printf(out, "Sender: %s\r\n", pm->login_addr);
		else if (f->nbare > 0) {
			if ((rc = policy_write_qualified(pm, f, out)) != 0)
				return rc;
		} else
			buf_add(out, pm->hdr + f->start, f->end - f->start);
	}
	return 0;
}

static int
policy_write(struct pmsg *pm, struct buf *out)
{
	const struct config *cfg = pm->pc->cfg;
	char date[64], rnd[33];
	int rc;

	if (!policy_header_safe(pm->login_addr) ||
	    !policy_header_safe(pm->from_addr))
		return policy_reject(pm, 554, "unsafe-address", NULL,
		    "5.6.0 Sender address cannot be written into a header");
	policy_date(pm->pc->now != 0 ? pm->pc->now : time(NULL), date,
	    sizeof(date));
	policy_received(pm, date, out);
	if ((rc = policy_write_fields(pm, out)) != 0)
		return rc;
	if (pm->add_from)
		buf_printf(out, "From: %s\r\n", pm->from_addr);
	if (pm->add_sender)
		buf_printf(out, "Sender: %s\r\n", pm->login_addr);
	if (pm->add_to)
		buf_addstr(out, "To: undisclosed-recipients:;\r\n");
	if (pm->count[HK_DATE] == 0)
		buf_printf(out, "Date: %s\r\n", date);
	if (pm->count[HK_MSGID] == 0) {
		random_hex(rnd, sizeof(rnd), 16);
		buf_printf(out, "Message-ID: <%s@%s>\r\n", rnd, cfg->hostname);
	}
	buf_addstr(out, "\r\n");
	return 0;
}

/* One line naming every change beyond the Received field, if any. */
static void
policy_log_fixups(const struct pmsg *pm)
{
	struct buf added, qual;
	char id[64], login[MAX_LOGIN];
	bool seen[HK_MAX] = { false };
	bool bcc = pm->count[HK_BCC] > 0 && pm->pc->cfg->remove_bcc;
	size_t i;

	buf_init(&added);
	buf_init(&qual);
	if (pm->add_from)
		buf_addstr(&added, ",From");
	if (pm->add_sender)
		buf_addstr(&added, ",Sender");
	if (pm->add_to)
		buf_addstr(&added, ",To");
	if (pm->count[HK_DATE] == 0)
		buf_addstr(&added, ",Date");
	if (pm->count[HK_MSGID] == 0)
		buf_addstr(&added, ",Message-ID");
	for (i = 0; i < pm->n; i++) {
		if (pm->f[i].nbare == 0 || seen[pm->f[i].kind] ||
		    (pm->f[i].kind == HK_SENDER && pm->replace_sender))
			continue;
		seen[pm->f[i].kind] = true;
		buf_printf(&qual, ",%s", hdr_name(pm->f[i].kind));
	}
	if (added.len > 0 || qual.len > 0 || bcc || pm->replace_sender)
		log_info("event=fixup id=%s login=%s added=%s qualified=%s "
		    "removed=%s replaced=%s",
		    log_sanitize(id, sizeof(id), pm->pc->queue_id),
		    log_sanitize(login, sizeof(login), pm->login),
		    added.len > 0 ? added.data + 1 : "-",
		    qual.len > 0 ? qual.data + 1 : "-", bcc ? "Bcc" : "-",
		    pm->replace_sender ? "Sender" : "-");
	buf_free(&added);
	buf_free(&qual);
}

static void
policy_free(struct pmsg *pm)
{
	size_t i;

	if (pm->f == NULL)
		return;
	for (i = 0; i < pm->n; i++)
		addr_list_free(&pm->f[i].al);
	free(pm->f);
	pm->f = NULL;
}

int
policy_apply(const struct policy_ctx *pc, const char *hdr, size_t hdrlen,
    struct buf *out, char *reply, size_t replylen)
{
	struct pmsg pm;
	size_t mark = out->len;
	int rc;

	memset(&pm, 0, sizeof(pm));
	pm.pc = pc;
	pm.hdr = hdr;
	pm.len = hdrlen;
	pm.reply = reply;
	pm.replylen = replylen;
	pm.login = pc->rights != NULL ? pc->rights->login : "";
	if (pc->rights != NULL && pc->rights->n > 0)
		strlcpy_msa(pm.login_addr, pc->rights->patterns[0],
		    sizeof(pm.login_addr));
	else
		policy_login_address(pm.login, pc->cfg->domain, pm.login_addr,
		    sizeof(pm.login_addr));
	if (replylen > 0)
		reply[0] = '\0';
	if ((rc = hdr_parse(&pm)) == 0 &&
	    (rc = hdr_parse_addresses(&pm)) == 0 &&
	    (rc = policy_check_senders(&pm)) == 0) {
		pm.add_to = pm.count[HK_TO] + pm.count[HK_CC] +
		    pm.count[HK_BCC] == 0;
		rc = policy_write(&pm, out);
	}
	if (rc == 0)
		policy_log_fixups(&pm);
	else if (out->data != NULL) {
		out->len = mark;
		out->data[mark] = '\0';
	}
	policy_free(&pm);
	return rc;
}

/*
 * addr.c - mail addresses: RFC 5321 paths from the envelope and RFC 5322
 * address lists from header fields.
 *
 * The envelope parser is strict: what it accepts goes on the wire again in
 * MAIL FROM and RCPT TO.  The header parser is lenient in the ways real
 * clients need (obsolete dots in display names, empty list members, CFWS
 * anywhere) but still refuses anything it cannot take apart for certain,
 * because policy decides who may send on the strength of its answer.
 */
#include <arpa/inet.h>

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "msa.h"

#define ADDR_LEN_MAX 254 /* RFC 5321 4.5.3.1.3 path minus the brackets */
#define LOCAL_LEN_MAX 64
#define LABEL_LEN_MAX 63

/* A bounded string under construction; overflow is sticky. */
struct sbuf {
	char s[MAX_ADDR];
	size_t len;
	bool overflow;
};

static void
sb_add(struct sbuf *sb, const char *p, size_t n)
{
	if (sb->overflow || n >= sizeof(sb->s) - sb->len) {
		sb->overflow = true;
		return;
	}
	memcpy(sb->s + sb->len, p, n);
	sb->len += n;
	sb->s[sb->len] = '\0';
}

static void
sb_addc(struct sbuf *sb, char c)
{
	sb_add(sb, &c, 1);
}

/* RFC 5322 atext, ASCII part. */
static bool
addr_atext(unsigned char c)
{
	return isascii(c) && (isalnum(c) || strchr("!#$%&'*+-/=?^_`{|}~", c)
	    != NULL) && c != '\0';
}

/* Is s[0..n) a dot-atom-text: atext runs joined by single dots? */
static bool
addr_dotatom(const char *s, size_t n)
{
	size_t i;

	if (n == 0 || s[0] == '.' || s[n - 1] == '.')
		return false;
	for (i = 0; i < n; i++) {
		if (s[i] == '.') {
			if (s[i + 1] == '.')
				return false;
		} else if (!addr_atext((unsigned char)s[i]))
			return false;
	}
	return true;
}

/*
 * Replace a quoted local part ("\"bob\"") in sb by its content when that
 * content needs no quotes, so both spellings meet the same sender rules.
 */
static void
addr_unquote_local(struct sbuf *sb)
{
	char plain[MAX_ADDR];
	size_t i, n = 0;

	if (sb->overflow || sb->len < 2 || sb->s[0] != '"' ||
	    sb->s[sb->len - 1] != '"')
		return;
	for (i = 1; i + 1 < sb->len; i++) {
		if (sb->s[i] == '\\')
			i++;
		plain[n++] = sb->s[i];
	}
	if (!addr_dotatom(plain, n))
		return;
	memcpy(sb->s, plain, n);
	sb->len = n;
	sb->s[n] = '\0';
}

/* ------------------------------------------------------------------ */
/* RFC 5321 paths                                                      */

/* Let-dig *(Ldh-str) labels joined by dots. */
static int
path_domain_name(const char **pp, struct sbuf *sb)
{
	const char *p = *pp, *label;

	for (;;) {
		label = p;
		if (!isascii((unsigned char)*p) || !isalnum((unsigned char)*p))
			return -1;
		while (isascii((unsigned char)*p) &&
		    (isalnum((unsigned char)*p) || *p == '-'))
			p++;
		if (p[-1] == '-' || p - label > LABEL_LEN_MAX)
			return -1;
		sb_add(sb, label, (size_t)(p - label));
		if (*p != '.')
			break;
		sb_addc(sb, *p++);
	}
	*pp = p;
	return 0;
}

/* "[1.2.3.4]" or "[IPv6:...]"; general address literals are refused. */
static int
path_domain_literal(const char **pp, struct sbuf *sb)
{
	const char *p = *pp + 1, *end;
	char lit[64];
	unsigned char bin[sizeof(struct in6_addr)];
	size_t n;

	if ((end = strchr(p, ']')) == NULL)
		return -1;
	n = (size_t)(end - p);
	if (n == 0 || n >= sizeof(lit))
		return -1;
	memcpy(lit, p, n);
	lit[n] = '\0';
	if (strncasecmp(lit, "IPv6:", 5) == 0) {
		if (inet_pton(AF_INET6, lit + 5, bin) != 1)
			return -1;
	} else if (inet_pton(AF_INET, lit, bin) != 1)
		return -1;
	sb_add(sb, *pp, n + 2);
	*pp = end + 1;
	return 0;
}

static int
path_domain(const char **pp, struct sbuf *sb)
{
	if (**pp == '[')
		return path_domain_literal(pp, sb);
	return path_domain_name(pp, sb);
}

/* A-d-l: "@a,@b:" - accepted and thrown away (RFC 5321 C). */
static int
path_route(const char **pp)
{
	struct sbuf scratch = { .len = 0 };

	while (**pp == '@') {
		(*pp)++;
		scratch.len = 0;
		if (path_domain(pp, &scratch) == -1 || scratch.overflow)
			return -1;
		if (**pp == ':') {
			(*pp)++;
			return 0;
		}
		if (**pp != ',')
			return -1;
		(*pp)++;
	}
	return -1;
}

/* Quoted-string: qtextSMTP and quoted-pairSMTP, printable ASCII only. */
/*
 * Legal inside quotes, but "<a>"@x or "b@evil" only ever serve to confuse
 * whoever splits the address later (queue domain grouping, the relay's
 * job check, logs): no real mailbox needs them.
 */
static bool
path_quoted_forbidden(unsigned char c)
{
	return c == '<' || c == '>' || c == '@';
}

static int
path_quoted_local(const char **pp, struct sbuf *sb)
{
	const char *p = *pp + 1;

	sb_addc(sb, '"');
	for (;;) {
		unsigned char c = (unsigned char)*p;

		if (c == '"')
			break;
		if (c == '\\') {
			c = (unsigned char)p[1];
			if (c < 32 || c > 126 || path_quoted_forbidden(c))
				return -1;
			sb_add(sb, p, 2);
			p += 2;
			continue;
		}
		if (c < 32 || c > 126 || path_quoted_forbidden(c))
			return -1;
		sb_addc(sb, (char)c);
		p++;
	}
	sb_addc(sb, '"');
	*pp = p + 1;
	addr_unquote_local(sb);
	return 0;
}

/* Dot-string: atoms of atext joined by single dots. */
static int
path_local(const char **pp, struct sbuf *sb)
{
	const char *p = *pp, *atom;

	if (*p == '"')
		return path_quoted_local(pp, sb);
	for (;;) {
		atom = p;
		while (addr_atext((unsigned char)*p))
			p++;
		if (p == atom)
			return -1;
		sb_add(sb, atom, (size_t)(p - atom));
		if (*p != '.')
			break;
		sb_addc(sb, *p++);
	}
	*pp = p;
	return 0;
}

int
addr_parse_path(const char *arg, char *out, size_t outlen, const char **rest)
{
	const char *p = arg;
	struct sbuf sb = { .len = 0 };

	/* Tolerate "MAIL FROM: <a@b>" as Postfix does. */
	while (*p == ' ')
		p++;
	if (*p++ != '<')
		return -1;
	sb.s[0] = '\0';
	if (*p != '>') {
		if (*p == '@' && path_route(&p) == -1)
			return -1;
		if (path_local(&p, &sb) == -1 || sb.len > LOCAL_LEN_MAX)
			return -1;
		if (*p == '@') {
			sb_addc(&sb, *p++);
			if (path_domain(&p, &sb) == -1)
				return -1;
		}
	}
	if (*p++ != '>' || (*p != '\0' && *p != ' '))
		return -1;
	if (sb.overflow || sb.len > ADDR_LEN_MAX || sb.len >= outlen)
		return -1;
	while (*p == ' ')
		p++;
	memcpy(out, sb.s, sb.len + 1);
	if (rest != NULL)
		*rest = p;
	return 0;
}

/* ------------------------------------------------------------------ */
/* RFC 5322 address lists: a lexer into tokens, then a parser over them. */

enum atok { TK_END, TK_ATOM, TK_QSTR, TK_DLIT, TK_SPECIAL };

struct token {
	enum atok type;
	char c; /* TK_SPECIAL: which one */
	size_t start, end; /* bytes of the token in the body */
};

struct lexer {
	const char *s;
	size_t len, pos;
	struct token *t;
	size_t n, cap;
	char *err;
	size_t errlen;
};

static int
lex_error(struct lexer *lx, const char *what)
{
	strlcpy_msa(lx->err, what, lx->errlen);
	return -1;
}

static bool
lex_ctl(unsigned char c)
{
	return (c < 0x20 && c != '\t') || c == 0x7f;
}

/* At a CR: accept CRLF followed by WSP (folding), skip the CRLF. */
static int
lex_fold(struct lexer *lx)
{
	if (lx->pos + 2 < lx->len && lx->s[lx->pos + 1] == '\n' &&
	    (lx->s[lx->pos + 2] == ' ' || lx->s[lx->pos + 2] == '\t')) {
		lx->pos += 2;
		return 0;
	}
	return lex_error(lx, "line break inside the field");
}

/*
 * Scan a delimited run - quoted string, comment or domain literal - from
 * the opener at lx->pos to its closer, honouring quoted pairs and folding.
 * Comments nest.
 */
static int
lex_delimited(struct lexer *lx, char open, char close, const char *what)
{
	int depth = 1;
	unsigned char c;

	for (lx->pos++; lx->pos < lx->len; lx->pos++) {
		c = (unsigned char)lx->s[lx->pos];
		if (c == '\\') {
			if (lx->pos + 1 >= lx->len ||
			    lex_ctl((unsigned char)lx->s[lx->pos + 1]))
				return lex_error(lx, "bad quoted character");
			lx->pos++;
		} else if (c == '\r') {
			if (lex_fold(lx) == -1)
				return -1;
		} else if (lex_ctl(c))
			return lex_error(lx, "control character");
		else if (c == close && --depth == 0) {
			lx->pos++;
			return 0;
		} else if (c == open && open == '(')
			depth++;
		else if (c == '[' && open == '[')
			return lex_error(lx, "'[' inside a domain literal");
	}
	return lex_error(lx, what);
}

/* Whitespace, folding and (nested) comments between tokens. */
static int
lex_cfws(struct lexer *lx)
{
	while (lx->pos < lx->len) {
		char c = lx->s[lx->pos];

		if (c == ' ' || c == '\t')
			lx->pos++;
		else if (c == '\r') {
			if (lex_fold(lx) == -1)
				return -1;
		} else if (c == '(') {
			if (lex_delimited(lx, '(', ')', "unterminated comment") ==
			    -1)
				return -1;
		} else
			break;
	}
	return 0;
}

static void
lex_push(struct lexer *lx, enum atok type, char c, size_t start)
{
	if (lx->n == lx->cap) {
		lx->cap = lx->cap ? lx->cap * 2 : 32;
		lx->t = xreallocarray(lx->t, lx->cap, sizeof(*lx->t));
	}
	lx->t[lx->n].type = type;
	lx->t[lx->n].c = c;
	lx->t[lx->n].start = start;
	lx->t[lx->n].end = lx->pos;
	lx->n++;
}

static int
lex_token(struct lexer *lx)
{
	size_t start = lx->pos;
	unsigned char c = (unsigned char)lx->s[lx->pos];
	char bad[32];

	if (c == '"') {
		if (lex_delimited(lx, '"', '"', "unterminated quoted string") ==
		    -1)
			return -1;
		lex_push(lx, TK_QSTR, 0, start);
	} else if (c == '[') {
		if (lex_delimited(lx, '[', ']',
		    "unterminated domain literal") == -1)
			return -1;
		lex_push(lx, TK_DLIT, 0, start);
	} else if (strchr("<>@,;:.", c) != NULL && c != '\0') {
		lx->pos++;
		lex_push(lx, TK_SPECIAL, (char)c, start);
	} else if (addr_atext(c) || c >= 0x80) {
		/* 8-bit bytes: RFC 6532 UTF-8, or raw text old clients send */
		while (lx->pos < lx->len &&
		    (addr_atext((unsigned char)lx->s[lx->pos]) ||
		    (unsigned char)lx->s[lx->pos] >= 0x80))
			lx->pos++;
		lex_push(lx, TK_ATOM, 0, start);
	} else if (lex_ctl(c))
		return lex_error(lx, "control character");
	else {
		(void)bsnprintf(bad, sizeof(bad), "unexpected '%c'", c);
		return lex_error(lx, bad);
	}
	return 0;
}

/* Tokenise the whole body; the array always ends with TK_END. */
static int
lex_all(struct lexer *lx)
{
	for (;;) {
		if (lex_cfws(lx) == -1)
			return -1;
		if (lx->pos >= lx->len)
			break;
		if (lex_token(lx) == -1)
			return -1;
	}
	lex_push(lx, TK_END, 0, lx->pos);
	return 0;
}

struct parser {
	const char *s;
	const struct token *t;
	size_t i;
	struct addr_list *list;
	char *err;
	size_t errlen;
};

static const struct token *
cur(const struct parser *ps)
{
	return &ps->t[ps->i];
}

static bool
is_special(const struct token *t, char c)
{
	return t->type == TK_SPECIAL && t->c == c;
}

static bool
is_word(const struct token *t)
{
	return t->type == TK_ATOM || t->type == TK_QSTR;
}

static int
parse_error(struct parser *ps, const char *what)
{
	strlcpy_msa(ps->err, what, ps->errlen);
	return -1;
}

/* Describe the token we did not expect. */
static int
parse_unexpected(struct parser *ps)
{
	const struct token *t = cur(ps);
	char what[64];

	switch (t->type) {
	case TK_END:
		return parse_error(ps, "address list ends too early");
	case TK_SPECIAL:
		(void)bsnprintf(what, sizeof(what), "unexpected '%c'", t->c);
		return parse_error(ps, what);
	case TK_DLIT:
		return parse_error(ps, "unexpected domain literal");
	default:
		return parse_error(ps, "missing ',' between addresses");
	}
}

/* Append a token's text; quoted strings keep their quotes. */
static void
token_text(const struct parser *ps, const struct token *t, struct sbuf *sb)
{
	size_t k;
	char c;

	for (k = t->start; k < t->end; k++) {
		c = ps->s[k];
		if (c == '\r' || c == '\n')
			continue;
		/* folding whitespace inside a domain literal means nothing */
		if (t->type == TK_DLIT && (c == ' ' || c == '\t'))
			continue;
		sb_addc(sb, c);
	}
}

/* domain = dot-atom / domain-literal (CFWS around dots: obs-domain). */
static int
parse_domain(struct parser *ps, struct sbuf *sb, const struct token **last)
{
	if (cur(ps)->type == TK_DLIT) {
		*last = cur(ps);
		token_text(ps, cur(ps), sb);
		ps->i++;
		return 0;
	}
	for (;;) {
		if (cur(ps)->type != TK_ATOM)
			return parse_error(ps, "bad domain after '@'");
		*last = cur(ps);
		token_text(ps, cur(ps), sb);
		ps->i++;
		if (!is_special(cur(ps), '.'))
			return 0;
		sb_addc(sb, '.');
		ps->i++;
	}
}

/* local-part ["@" domain]; a missing domain makes a bare address. */
static int
parse_addrspec(struct parser *ps, struct addr_mailbox *mb)
{
	const struct token *last = NULL;
	struct sbuf sb = { .len = 0 };
	size_t words = 0;
	bool quoted = false;

	if (!is_word(cur(ps)))
		return is_special(cur(ps), '>') ? parse_error(ps, "empty <>") :
		    parse_unexpected(ps);
	mb->start = cur(ps)->start;
	for (;;) {
		if (!is_word(cur(ps)))
			return parse_error(ps, "bad dot in local part");
		last = cur(ps);
		quoted = last->type == TK_QSTR;
		token_text(ps, last, &sb);
		words++;
		ps->i++;
		if (!is_special(cur(ps), '.'))
			break;
		sb_addc(&sb, '.');
		ps->i++;
	}
	mb->local_end = last->end;
	if (words == 1 && quoted)
		addr_unquote_local(&sb);
	mb->bare = !is_special(cur(ps), '@');
	if (!mb->bare) {
		sb_addc(&sb, '@');
		ps->i++;
		if (parse_domain(ps, &sb, &last) == -1)
			return -1;
	}
	mb->end = last->end;
	if (sb.overflow || sb.len > ADDR_LEN_MAX)
		return parse_error(ps, "address too long");
	memcpy(mb->addr, sb.s, sb.len + 1);
	return 0;
}

/* obs-route "@a,@b:" before the addr-spec of an angle-addr: skipped. */
static int
parse_route(struct parser *ps)
{
	struct sbuf scratch = { .len = 0 };
	const struct token *last;

	while (is_special(cur(ps), '@')) {
		ps->i++;
		if (parse_domain(ps, &scratch, &last) == -1)
			return -1;
		while (is_special(cur(ps), ','))
			ps->i++;
		if (is_special(cur(ps), ':')) {
			ps->i++;
			return 0;
		}
	}
	return parse_error(ps, "bad route in angle address");
}

static void
list_add(struct addr_list *list, const struct addr_mailbox *mb)
{
	if (list->n == list->cap) {
		list->cap = list->cap ? list->cap * 2 : 8;
		list->mb = xreallocarray(list->mb, list->cap, sizeof(*list->mb));
	}
	list->mb[list->n++] = *mb;
}

/*
 * mailbox = name-addr / addr-spec.  A display name may hold anything a
 * phrase may plus, leniently, '@' (clients write "bob@x <bob@x>").
 */
static int
parse_mailbox(struct parser *ps, bool grouped)
{
	struct addr_mailbox mb;
	size_t k;

	memset(&mb, 0, sizeof(mb));
	mb.grouped = grouped;
	for (k = ps->i; ps->t[k].type != TK_END; k++)
		if (strchr(",;<>", ps->t[k].c) != NULL &&
		    ps->t[k].type == TK_SPECIAL)
			break;
	if (is_special(&ps->t[k], '<')) {
		for (; ps->i < k; ps->i++)
			if (!is_word(cur(ps)) && !is_special(cur(ps), '.') &&
			    !is_special(cur(ps), '@'))
				return parse_unexpected(ps);
		ps->i++;
		if (is_special(cur(ps), '@') && parse_route(ps) == -1)
			return -1;
		if (parse_addrspec(ps, &mb) == -1)
			return -1;
		if (!is_special(cur(ps), '>'))
			return cur(ps)->type == TK_END ?
			    parse_error(ps, "missing '>'") :
			    parse_unexpected(ps);
		ps->i++;
		mb.angle = true;
	} else if (parse_addrspec(ps, &mb) == -1)
		return -1;
	list_add(ps->list, &mb);
	return 0;
}

/* group = display-name ":" [mailbox-list] ";" (the ';' may be missing). */
static int
parse_group(struct parser *ps)
{
	ps->list->ngroups++;
	for (;;) {
		if (is_special(cur(ps), ';')) {
			ps->i++;
			return 0;
		}
		if (cur(ps)->type == TK_END)
			return 0;
		if (is_special(cur(ps), ',')) {
			ps->i++;
			continue;
		}
		if (parse_mailbox(ps, true) == -1)
			return -1;
		if (!is_special(cur(ps), ',') && !is_special(cur(ps), ';') &&
		    cur(ps)->type != TK_END)
			return parse_unexpected(ps);
	}
}

/* address = mailbox / group: a phrase followed by ':' starts a group. */
static int
parse_address(struct parser *ps)
{
	size_t j = ps->i;

	while (is_word(&ps->t[j]) || is_special(&ps->t[j], '.'))
		j++;
	if (j > ps->i && is_special(&ps->t[j], ':')) {
		ps->i = j + 1;
		return parse_group(ps);
	}
	return parse_mailbox(ps, false);
}

int
addr_parse_list(const char *body, size_t len, struct addr_list *list,
    char *err, size_t errlen)
{
	struct lexer lx;
	struct parser ps;
	int rc = -1;

	memset(&lx, 0, sizeof(lx));
	lx.s = body;
	lx.len = len;
	lx.err = err;
	lx.errlen = errlen;
	if (lex_all(&lx) == -1)
		goto done;
	memset(&ps, 0, sizeof(ps));
	ps.s = body;
	ps.t = lx.t;
	ps.list = list;
	ps.err = err;
	ps.errlen = errlen;
	for (;;) {
		if (cur(&ps)->type == TK_END)
			break;
		if (is_special(cur(&ps), ',')) { /* empty member (obs) */
			ps.i++;
			continue;
		}
		if (parse_address(&ps) == -1)
			goto done;
		if (cur(&ps)->type != TK_END && !is_special(cur(&ps), ',')) {
			(void)parse_unexpected(&ps);
			goto done;
		}
	}
	rc = 0;
done:
	free(lx.t);
	return rc;
}

void
addr_list_init(struct addr_list *list)
{
	memset(list, 0, sizeof(*list));
}

void
addr_list_free(struct addr_list *list)
{
	free(list->mb);
	addr_list_init(list);
}

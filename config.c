/*
 * config.c - read msa.yaml into struct config.
 *
 * The file is loaded with libyaml's document API and walked against a
 * table per section: every key has a type, a place in struct config and
 * its bounds.  Every problem is reported as "FILE:LINE:COL: key: message"
 * (1-based, from libyaml's marks) and the walk goes on, so one run of
 * `msa -n` shows every mistake.  Nothing here runs after the fork of the
 * children: the parent parses, the children inherit the struct.
 */
#include <sys/stat.h>
#include <sys/types.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <netdb.h>
#include <pwd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <openssl/tls1.h>
#include <yaml.h>

#include "msa.h"

/* A configuration file is a page of YAML; refuse anything absurd. */
#define CONFIG_MAX_BYTES (1024 * 1024)
#define CONFIG_NO_MAX UINT64_MAX
#define CONFIG_YEAR (365 * 86400ULL) /* the longest duration any key takes */
/* time_t is signed on every platform msa runs on (including 32-bit). */
#define CONFIG_TIME_MAX                                                        \
	((time_t)(((uint64_t)1 << (sizeof(time_t) * CHAR_BIT - 1)) - 1))
#define CONFIG_PATH_MAX 256 /* dotted key path in messages */

/* Enum fields are written through an int; make sure that is their size. */
_Static_assert(sizeof(enum log_level) == sizeof(int), "enum size");
_Static_assert(sizeof(enum tls_listen_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum from_mismatch) == sizeof(int), "enum size");
_Static_assert(sizeof(enum relay_mode) == sizeof(int), "enum size");
_Static_assert(sizeof(enum relay_tls) == sizeof(int), "enum size");
_Static_assert(sizeof(enum smarthost_tls) == sizeof(int), "enum size");
_Static_assert(sizeof(bool) != sizeof(int), "bool and int told apart");

/* Where keys were found, for checks that involve more than one key. */
enum config_mark {
	CM_NONE,
	CM_HOSTNAME,
	CM_DOMAIN,
	CM_USER,
	CM_SPOOL,
	CM_TLS,
	CM_CERT,
	CM_KEY,
	CM_AUTH,
	CM_USERS,
	CM_LIMITS,
	CM_SESSIONS,
	CM_PER_IP,
	CM_RELAY,
	CM_MODE,
	CM_SMARTHOST,
	CM_SH_USERNAME,
	CM_SH_PASSFILE,
	CM_RETRY,
	CM_FIRST,
	CM_MAX,
	CM_COUNT
};

struct config_ctx {
	struct config *cfg;
	const char *file;
	yaml_document_t *doc;
	int nerr;
	char path[CONFIG_PATH_MAX]; /* dotted path of the key being read */
	yaml_mark_t mark[CM_COUNT];
	bool have[CM_COUNT]; /* the key is in the file */
	bool bad[CM_COUNT]; /* ... and its value was refused */
	size_t senders_cap;
	/* The listen entry being read. */
	yaml_mark_t listen_addr_mark;
	bool listen_addr_ok;
};

enum config_type {
	K_STR, /* char[size], copied with a length check */
	K_UINT, /* unsigned or uint16_t (size says which), min..max */
	K_DURATION, /* time_t, parse_duration, min..max seconds */
	K_SIZE, /* uint64_t, parse_size, min..max bytes */
	K_BOOL,
	K_ENUM, /* int-sized enum or int, or bool (size says which) */
	K_MAP, /* a nested section, same base */
	K_FN, /* a handler of its own */
};

struct config_enum {
	const char *name;
	int value;
};

struct config_key;
typedef void (*config_fn)(
    struct config_ctx *, yaml_node_t *key, yaml_node_t *val, void *base);

struct config_key {
	const char *name;
	enum config_type type;
	size_t off, size; /* field within base */
	uint64_t min, max;
	const struct config_enum *enums;
	const struct config_key *sub;
	config_fn fn;
	const char *(*check)(const char *); /* K_STR: problem or NULL */
	enum config_mark mark;
};

#define CFIELD(f)                                                              \
	.off = offsetof(struct config, f),                                     \
	.size = sizeof(((struct config *)0)->f)
#define LFIELD(f)                                                              \
	.off = offsetof(struct listen_cfg, f),                                 \
	.size = sizeof(((struct listen_cfg *)0)->f)

static void config_report_stderr(const char *line);
static void (*config_reporter)(const char *) = config_report_stderr;

/* ------------------------------------------------------------------ */
/* Reporting                                                           */

static void
config_report_stderr(const char *line)
{
	char out[2048];
	size_t len;

	len = strlcpy_msa(out, line, sizeof(out) - 1);
	if (len > sizeof(out) - 2)
		len = sizeof(out) - 2;
	out[len++] = '\n';
	/* One write, so that concurrent log lines do not cut into it. */
	(void)write_all(STDERR_FILENO, out, len);
}

void
config_set_reporter(void (*fn)(const char *line))
{
	config_reporter = fn != NULL ? fn : config_report_stderr;
}

static void __attribute__((format(printf, 4, 0))) config_vreport(
    struct config_ctx *c, size_t line, size_t col, const char *fmt, va_list ap)
{
	char msg[1024], out[1536];

	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	(void)snprintf(
	    out, sizeof(out), "%s:%zu:%zu: %s", c->file, line, col, msg);
	config_reporter(out);
	c->nerr++;
}

/* A problem at an explicit 1-based position. */
static void __attribute__((format(printf, 4, 5))) config_error_at(
    struct config_ctx *c, size_t line, size_t col, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	config_vreport(c, line, col, fmt, ap);
	va_end(ap);
}

/* A problem at a libyaml mark (0-based). */
static void __attribute__((format(printf, 3, 4)))
config_error(struct config_ctx *c, yaml_mark_t m, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	config_vreport(c, m.line + 1, m.column + 1, fmt, ap);
	va_end(ap);
}

/* A problem with the key being read: the message names its path. */
static void __attribute__((format(printf, 3, 4)))
config_key_error(struct config_ctx *c, yaml_mark_t m, const char *fmt, ...)
{
	va_list ap;
	char msg[1024];

	va_start(ap, fmt);
	(void)vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	if (c->path[0] == '\0')
		config_error(c, m, "%s", msg);
	else
		config_error(c, m, "%s: %s", c->path, msg);
}

/* A value as it may appear in a message: one line, bounded. */
static const char *
config_quote(char *buf, size_t len, const char *s)
{
	size_t i, max = len > 4 ? len - 4 : 0;

	for (i = 0; s[i] != '\0' && i < max; i++) {
		unsigned char ch = (unsigned char)s[i];
		buf[i]
		    = (ch < 0x20 || ch == 0x7f || ch == '"') ? '?' : (char)ch;
	}
	if (s[i] != '\0' && len >= 4) {
		memcpy(buf + i, "...", 3);
		i += 3;
	}
	if (len > 0)
		buf[i < len ? i : len - 1] = '\0';
	return buf;
}

/* The mark of the first key in the list that was present, else 1:1. */
static yaml_mark_t
config_where(const struct config_ctx *c, enum config_mark a, enum config_mark b,
    enum config_mark d)
{
	yaml_mark_t none = { 0, 0, 0 };

	if (c->have[a])
		return c->mark[a];
	if (c->have[b])
		return c->mark[b];
	if (c->have[d])
		return c->mark[d];
	return none;
}

/* ------------------------------------------------------------------ */
/* Value parsers                                                       */

/* Leading decimal digits of s; -1 if there are none or they overflow. */
static int
config_digits(const char *s, const char **end, uint64_t *out)
{
	uint64_t v = 0;
	const char *p;

	if (*s < '0' || *s > '9')
		return -1;
	for (p = s; *p >= '0' && *p <= '9'; p++) {
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return -1;
		v = v * 10 + d;
	}
	*end = p;
	*out = v;
	return 0;
}

int
parse_duration(const char *s, time_t *out)
{
	const char *p;
	uint64_t v, mult;

	if (s == NULL || config_digits(s, &p, &v) == -1)
		return -1;
	switch (*p) {
	case '\0':
		mult = 1;
		break;
	case 's':
		mult = 1;
		p++;
		break;
	case 'm':
		mult = 60;
		p++;
		break;
	case 'h':
		mult = 3600;
		p++;
		break;
	case 'd':
		mult = 86400;
		p++;
		break;
	default:
		return -1;
	}
	if (*p != '\0' || v > (uint64_t)CONFIG_TIME_MAX / mult)
		return -1;
	*out = (time_t)(v * mult);
	return 0;
}

int
parse_size(const char *s, uint64_t *out)
{
	const char *p;
	uint64_t v;
	unsigned shift;

	if (s == NULL || config_digits(s, &p, &v) == -1)
		return -1;
	switch (*p) {
	case '\0':
		shift = 0;
		break;
	case 'K':
	case 'k':
		shift = 10;
		p++;
		break;
	case 'M':
	case 'm':
		shift = 20;
		p++;
		break;
	case 'G':
	case 'g':
		shift = 30;
		p++;
		break;
	default:
		return -1;
	}
	if (*p != '\0' || v > (UINT64_MAX >> shift))
		return -1;
	*out = v << shift;
	return 0;
}

/* "1".."65535", digits only. */
static int
config_port(const char *s, uint16_t *out)
{
	const char *end;
	uint64_t v;

	if (config_digits(s, &end, &v) == -1 || *end != '\0' || v < 1
	    || v > 65535)
		return -1;
	*out = (uint16_t)v;
	return 0;
}

/*
 * Without brackets, "::1:587" is both an address and "::1" with a port.
 * Refuse what reads both ways rather than guess: the user writes
 * "[::1]:587" or "[::1:587]".
 */
static bool
config_v6_ambiguous(const char *s)
{
	const char *colon = strrchr(s, ':');
	char head[INET6_ADDRSTRLEN];
	struct in6_addr a;
	uint16_t port;
	size_t len;

	if (colon == NULL || config_port(colon + 1, &port) == -1)
		return false;
	len = (size_t)(colon - s);
	if (len >= sizeof(head))
		return false;
	memcpy(head, s, len);
	head[len] = '\0';
	return inet_pton(AF_INET6, head, &a) == 1;
}

static int
config_fill_sockaddr(const char *host, bool v6, uint16_t port,
    struct sockaddr_storage *ss, socklen_t *sslen)
{
	memset(ss, 0, sizeof(*ss));
	if (v6) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)ss;
		if (inet_pton(AF_INET6, host, &sin6->sin6_addr) != 1)
			return -1;
		sin6->sin6_family = AF_INET6;
		sin6->sin6_port = htons(port);
		*sslen = sizeof(*sin6);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)ss;
		if (inet_pton(AF_INET, host, &sin->sin_addr) != 1)
			return -1;
		sin->sin_family = AF_INET;
		sin->sin_port = htons(port);
		*sslen = sizeof(*sin);
	}
	return 0;
}

/*
 * "IPv4", "IPv4:port", "[IPv6]", "[IPv6]:port" or a bare IPv6 address
 * (no port).  Numeric only: nothing here may touch the resolver.
 */
int
parse_hostport(const char *s, uint16_t default_port,
    struct sockaddr_storage *ss, socklen_t *sslen)
{
	char host[INET6_ADDRSTRLEN];
	const char *hbeg = s, *hend, *portstr = NULL, *colon;
	uint16_t port = default_port;
	bool v6 = false;
	size_t hlen;

	if (s == NULL || *s == '\0')
		return -1;
	if (*s == '[') {
		hbeg = s + 1;
		if ((hend = strchr(hbeg, ']')) == NULL)
			return -1;
		if (hend[1] == ':')
			portstr = hend + 2;
		else if (hend[1] != '\0')
			return -1;
		v6 = true;
	} else if ((colon = strchr(s, ':')) == NULL) {
		hend = s + strlen(s);
	} else if (strchr(colon + 1, ':') == NULL) {
		hend = colon; /* exactly one colon: IPv4:port */
		portstr = colon + 1;
	} else {
		if (config_v6_ambiguous(s))
			return -1;
		hend = s + strlen(s);
		v6 = true;
	}
	hlen = (size_t)(hend - hbeg);
	if (hlen == 0 || hlen >= sizeof(host))
		return -1;
	memcpy(host, hbeg, hlen);
	host[hlen] = '\0';
	if (portstr != NULL) {
		if (config_port(portstr, &port) == -1)
			return -1;
	} else if (port == 0)
		return -1;
	return config_fill_sockaddr(host, v6, port, ss, sslen);
}

/* ------------------------------------------------------------------ */
/* Value checks: NULL if fine, else what is wrong (after the value).   */

/* LDH labels of 1..63, at most 253 in all; the last not all digits. */
static bool
config_is_domain(const char *s)
{
	size_t label = 0, total = 0;
	bool alpha = false; /* the current label has a non-digit */
	const char *p;

	for (p = s; *p != '\0'; p++, total++) {
		char ch = *p;
		if (ch == '.') {
			if (label == 0 || p[-1] == '-')
				return false;
			label = 0;
			alpha = false;
		} else if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
		    || (ch >= '0' && ch <= '9') || ch == '-') {
			if (ch == '-' && label == 0)
				return false;
			if (++label > 63)
				return false;
			if (ch < '0' || ch > '9')
				alpha = true;
		} else
			return false;
	}
	/* RFC 3696 2: a top-level label is never all-numeric. */
	return total > 0 && total <= 253 && label > 0 && p[-1] != '-' && alpha;
}

static const char *
config_check_domain(const char *s)
{
	return config_is_domain(s) ? NULL : "is not a valid domain name";
}

static const char *
config_check_host(const char *s)
{
	struct in6_addr a6;
	struct in_addr a4;

	if (config_is_domain(s) || inet_pton(AF_INET, s, &a4) == 1
	    || inet_pton(AF_INET6, s, &a6) == 1)
		return NULL;
	return "is not a host name or IP address";
}

static const char *
config_check_abspath(const char *s)
{
	return s[0] == '/' ? NULL : "must be an absolute path";
}

static const char *
config_check_printable(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s < 0x20 || *s == 0x7f)
			return "contains control characters";
	return NULL;
}

static const char *
config_check_account(const char *s)
{
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= 0x20 || *s == 0x7f || *s == ':'
		    || *s == '/')
			return "is not a valid account name";
	return NULL;
}

/* A login as the password file spells it: no blanks, no ':'. */
static bool
config_is_login(const char *s)
{
	if (*s == '\0')
		return false;
	for (; *s != '\0'; s++)
		if ((unsigned char)*s <= 0x20 || *s == 0x7f || *s == ':')
			return false;
	return true;
}

/* RFC 5322 atext, plus '.' between atoms; '*' is atext already. */
static bool
config_is_local_char(char ch)
{
	return (ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z')
	    || (ch >= '0' && ch <= '9')
	    || (ch != '\0' && strchr("!#$%&'*+-/=?^_`{|}~.", ch) != NULL);
}

/* "local@domain", "lo*cal@domain" or "@domain". */
static bool
config_is_pattern(const char *s)
{
	const char *at = strchr(s, '@');
	const char *p;

	if (at == NULL || strchr(at + 1, '@') != NULL)
		return false;
	if (at - s > 64)
		return false;
	for (p = s; p < at; p++)
		if (!config_is_local_char(*p))
			return false;
	return config_is_domain(at + 1);
}

/* ------------------------------------------------------------------ */
/* Nodes                                                               */

static yaml_node_t *
config_node(struct config_ctx *c, int index)
{
	yaml_node_t *n = yaml_document_get_node(c->doc, index);

	if (n == NULL)
		fatalx("config: libyaml returned a dangling node index");
	return n;
}

static const char *
config_kind(const yaml_node_t *n)
{
	switch (n->type) {
	case YAML_SCALAR_NODE:
		return "a scalar";
	case YAML_SEQUENCE_NODE:
		return "a sequence";
	case YAML_MAPPING_NODE:
		return "a mapping";
	default:
		return "nothing";
	}
}

/* `key:` with nothing after it, `~` or `null` (plain, not quoted). */
static bool
config_is_null(const yaml_node_t *n)
{
	const char *v;

	if (n->type != YAML_SCALAR_NODE)
		return false;
	if (n->tag != NULL && strcmp((const char *)n->tag, YAML_NULL_TAG) == 0)
		return true;
	if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
		return false;
	v = (const char *)n->data.scalar.value;
	return v[0] == '\0' || strcmp(v, "~") == 0 || strcmp(v, "null") == 0
	    || strcmp(v, "Null") == 0 || strcmp(v, "NULL") == 0;
}

/* The text of a scalar value, or NULL once the problem is reported. */
static const char *
config_scalar(struct config_ctx *c, yaml_node_t *key, yaml_node_t *val)
{
	const char *s;

	if (val->type != YAML_SCALAR_NODE) {
		config_key_error(c, val->start_mark,
		    "expected a single value, got %s", config_kind(val));
		return NULL;
	}
	if (config_is_null(val)) {
		config_key_error(c, key->start_mark, "missing value");
		return NULL;
	}
	s = (const char *)val->data.scalar.value;
	if (strlen(s) != val->data.scalar.length) {
		config_key_error(
		    c, val->start_mark, "value contains a NUL character");
		return NULL;
	}
	return s;
}

/* Append name to the key path; returns what to restore. */
static size_t
config_path_push(struct config_ctx *c, const char *name)
{
	size_t old = strlen(c->path);
	char q[72];

	(void)config_quote(q, sizeof(q), name);
	(void)snprintf(c->path + old, sizeof(c->path) - old, "%s%s",
	    old > 0 ? "." : "", q);
	return old;
}

static void
config_path_pop(struct config_ctx *c, size_t old)
{
	c->path[old] = '\0';
}

/*
 * The name of the key of pair p in map, or NULL (reported) if it is not a
 * scalar or appeared before in the same mapping.
 */
static const char *
config_pair_key(struct config_ctx *c, yaml_node_t *map, yaml_node_pair_t *p)
{
	yaml_node_t *k = config_node(c, p->key), *k2;
	yaml_node_pair_t *q;
	const char *name;
	size_t old;

	if (k->type != YAML_SCALAR_NODE) {
		config_key_error(c, k->start_mark,
		    "keys must be plain names, got %s", config_kind(k));
		return NULL;
	}
	name = (const char *)k->data.scalar.value;
	for (q = map->data.mapping.pairs.start; q < p; q++) {
		k2 = config_node(c, q->key);
		if (k2->type == YAML_SCALAR_NODE
		    && strcmp((const char *)k2->data.scalar.value, name) == 0) {
			old = config_path_push(c, name);
			config_key_error(c, k->start_mark,
			    "duplicate key (first at line %zu)",
			    k2->start_mark.line + 1);
			config_path_pop(c, old);
			return NULL;
		}
	}
	return name;
}

/* ------------------------------------------------------------------ */
/* Table-driven keys                                                   */

static void config_walk_value(struct config_ctx *c, const struct config_key *d,
    yaml_node_t *k, yaml_node_t *v, void *base);

static void
config_unknown_key(
    struct config_ctx *c, yaml_node_t *k, const struct config_key *defs)
{
	struct buf known;
	const struct config_key *d;

	buf_init(&known);
	for (d = defs; d->name != NULL; d++)
		buf_printf(&known, "%s%s", d == defs ? "" : ", ", d->name);
	config_key_error(c, k->start_mark, "unknown key (known keys: %s)",
	    known.data != NULL ? known.data : "");
	buf_free(&known);
}

/*
 * Read a mapping against defs into base.  A null value means the section
 * is absent.  Returns a bit per entry of defs that was present.
 */
static uint32_t
config_walk(struct config_ctx *c, yaml_node_t *map,
    const struct config_key *defs, void *base)
{
	yaml_node_pair_t *p;
	uint32_t seen = 0;

	if (config_is_null(map))
		return 0;
	if (map->type != YAML_MAPPING_NODE) {
		config_key_error(c, map->start_mark,
		    "expected a mapping (key: value), got %s",
		    config_kind(map));
		return 0;
	}
	for (p = map->data.mapping.pairs.start; p < map->data.mapping.pairs.top;
	     p++) {
		const struct config_key *d;
		const char *name;
		yaml_node_t *k;
		size_t old;

		if ((name = config_pair_key(c, map, p)) == NULL)
			continue;
		k = config_node(c, p->key);
		for (d = defs; d->name != NULL; d++)
			if (strcmp(d->name, name) == 0)
				break;
		old = config_path_push(c, name);
		if (d->name == NULL)
			config_unknown_key(c, k, defs);
		else {
			int nerr = c->nerr;

			seen |= 1u << (d - defs);
			config_walk_value(
			    c, d, k, config_node(c, p->value), base);
			if (d->mark != CM_NONE) {
				c->mark[d->mark] = k->start_mark;
				c->have[d->mark] = true;
				c->bad[d->mark] = c->nerr != nerr;
			}
		}
		config_path_pop(c, old);
	}
	return seen;
}

static void
config_set_uint(struct config_ctx *c, const struct config_key *d,
    yaml_node_t *k, yaml_node_t *v, void *field)
{
	const char *s, *end;
	char q[80];
	uint64_t n;

	if ((s = config_scalar(c, k, v)) == NULL)
		return;
	if (config_digits(s, &end, &n) == -1 || *end != '\0' || n < d->min
	    || n > d->max) {
		config_key_error(c, v->start_mark,
		    "expected an integer from %llu to %llu, got \"%s\"",
		    (unsigned long long)d->min, (unsigned long long)d->max,
		    config_quote(q, sizeof(q), s));
		return;
	}
	if (d->size == sizeof(uint16_t))
		*(uint16_t *)field = (uint16_t)n;
	else
		*(unsigned *)field = (unsigned)n;
}

static void
config_set_duration(struct config_ctx *c, const struct config_key *d,
    yaml_node_t *k, yaml_node_t *v, void *field)
{
	const char *s;
	char q[80];
	time_t t;

	if ((s = config_scalar(c, k, v)) == NULL)
		return;
	if (parse_duration(s, &t) == -1) {
		config_key_error(c, v->start_mark,
		    "bad duration \"%s\" (a number with s, m, h or d, "
		    "e.g. 5m)",
		    config_quote(q, sizeof(q), s));
		return;
	}
	if ((uint64_t)t < d->min) {
		config_key_error(c, v->start_mark, "must be at least %llus",
		    (unsigned long long)d->min);
		return;
	}
	/* Bounded so that time arithmetic on them can never overflow. */
	if ((uint64_t)t > d->max) {
		config_key_error(c, v->start_mark, "must be at most %llud",
		    (unsigned long long)d->max / 86400);
		return;
	}
	*(time_t *)field = t;
}

static void
config_set_size(struct config_ctx *c, const struct config_key *d,
    yaml_node_t *k, yaml_node_t *v, void *field)
{
	const char *s;
	char q[80];
	uint64_t n;

	if ((s = config_scalar(c, k, v)) == NULL)
		return;
	if (parse_size(s, &n) == -1) {
		config_key_error(c, v->start_mark,
		    "bad size \"%s\" (a number of bytes with K, M or G, "
		    "e.g. 25M)",
		    config_quote(q, sizeof(q), s));
		return;
	}
	if (n < d->min) {
		config_key_error(c, v->start_mark,
		    "must be at least %llu bytes", (unsigned long long)d->min);
		return;
	}
	*(uint64_t *)field = n;
}

static void
config_set_bool(
    struct config_ctx *c, yaml_node_t *k, yaml_node_t *v, void *field)
{
	static const char *const yes[] = { "true", "yes", "on" };
	static const char *const no[] = { "false", "no", "off" };
	const char *s;
	char q[80];
	size_t i;

	if ((s = config_scalar(c, k, v)) == NULL)
		return;
	for (i = 0; i < sizeof(yes) / sizeof(yes[0]); i++) {
		if (strcasecmp(s, yes[i]) == 0) {
			*(bool *)field = true;
			return;
		}
		if (strcasecmp(s, no[i]) == 0) {
			*(bool *)field = false;
			return;
		}
	}
	config_key_error(c, v->start_mark,
	    "bad value \"%s\" (allowed: true, false)",
	    config_quote(q, sizeof(q), s));
}

static void
config_set_enum(struct config_ctx *c, const struct config_key *d,
    yaml_node_t *k, yaml_node_t *v, void *field)
{
	const struct config_enum *e;
	struct buf allowed;
	const char *s;
	char q[80];

	if ((s = config_scalar(c, k, v)) == NULL)
		return;
	for (e = d->enums; e->name != NULL; e++) {
		if (strcmp(e->name, s) != 0)
			continue;
		if (d->size == sizeof(bool))
			*(bool *)field = e->value != 0;
		else
			memcpy(field, &e->value, sizeof(int));
		return;
	}
	buf_init(&allowed);
	for (e = d->enums; e->name != NULL; e++)
		buf_printf(
		    &allowed, "%s%s", e == d->enums ? "" : ", ", e->name);
	config_key_error(c, v->start_mark, "bad value \"%s\" (allowed: %s)",
	    config_quote(q, sizeof(q), s),
	    allowed.data != NULL ? allowed.data : "");
	buf_free(&allowed);
}

/* Copy a string value into a fixed array; NULL check means any text. */
static bool
config_copy_str(struct config_ctx *c, yaml_node_t *k, yaml_node_t *v,
    char *field, size_t size, const char *(*check)(const char *))
{
	const char *s, *why;
	char q[80];

	if ((s = config_scalar(c, k, v)) == NULL)
		return false;
	if (*s == '\0') {
		config_key_error(c, v->start_mark, "value must not be empty");
		return false;
	}
	if (strlen(s) >= size) {
		config_key_error(c, v->start_mark,
		    "value too long (max %zu characters)", size - 1);
		return false;
	}
	if (check != NULL && (why = check(s)) != NULL) {
		config_key_error(c, v->start_mark, "\"%s\" %s",
		    config_quote(q, sizeof(q), s), why);
		return false;
	}
	strlcpy_msa(field, s, size);
	return true;
}

static void
config_walk_value(struct config_ctx *c, const struct config_key *d,
    yaml_node_t *k, yaml_node_t *v, void *base)
{
	void *field = (char *)base + d->off;

	switch (d->type) {
	case K_STR:
		(void)config_copy_str(c, k, v, field, d->size, d->check);
		break;
	case K_UINT:
		config_set_uint(c, d, k, v, field);
		break;
	case K_DURATION:
		config_set_duration(c, d, k, v, field);
		break;
	case K_SIZE:
		config_set_size(c, d, k, v, field);
		break;
	case K_BOOL:
		config_set_bool(c, k, v, field);
		break;
	case K_ENUM:
		config_set_enum(c, d, k, v, field);
		break;
	case K_MAP:
		(void)config_walk(c, v, d->sub, base);
		break;
	case K_FN:
		d->fn(c, k, v, base);
		break;
	}
}

/* ------------------------------------------------------------------ */
/* Sections with handlers of their own                                 */

/* A sequence value, or NULL (absent: null; wrong type: reported). */
static yaml_node_t *
config_sequence(struct config_ctx *c, yaml_node_t *v)
{
	if (config_is_null(v))
		return NULL;
	if (v->type != YAML_SEQUENCE_NODE) {
		config_key_error(c, v->start_mark,
		    "expected a sequence, got %s", config_kind(v));
		return NULL;
	}
	return v;
}

static void
config_listen_address(
    struct config_ctx *c, yaml_node_t *k, yaml_node_t *v, void *base)
{
	struct listen_cfg *l = base;

	c->listen_addr_mark = v->start_mark;
	c->listen_addr_ok
	    = config_copy_str(c, k, v, l->address, sizeof(l->address), NULL);
}

static const struct config_enum config_listen_tls[] = {
	{ "starttls", LISTEN_STARTTLS },
	{ "implicit", LISTEN_IMPLICIT },
	{ NULL, 0 },
};

/* Bits of config_walk's result: the order of this table. */
#define LISTEN_HAS_ADDRESS 0x1u
#define LISTEN_HAS_TLS 0x2u
static const struct config_key config_listen_keys[] = {
	{ .name = "address", .type = K_FN, .fn = config_listen_address },
	{ .name = "tls",
	    .type = K_ENUM,
	    LFIELD(tls),
	    .enums = config_listen_tls },
	{ .name = NULL },
};

static void
config_listen_entry(struct config_ctx *c, yaml_node_t *item)
{
	struct config *cfg = c->cfg;
	struct listen_cfg l;
	int nerr = c->nerr;
	uint32_t seen;
	size_t i, old;
	char q[80];

	memset(&l, 0, sizeof(l));
	l.fd = -1;
	c->listen_addr_ok = false;
	if (item->type != YAML_MAPPING_NODE) {
		config_key_error(c, item->start_mark,
		    "expected a mapping with address and tls, got %s",
		    config_kind(item));
		return;
	}
	seen = config_walk(c, item, config_listen_keys, &l);
	if (!(seen & LISTEN_HAS_ADDRESS))
		config_key_error(c, item->start_mark, "entry has no address");
	if (!(seen & LISTEN_HAS_TLS))
		config_key_error(c, item->start_mark,
		    "entry has no tls (starttls or implicit)");
	if (c->nerr != nerr || !c->listen_addr_ok)
		return;
	old = config_path_push(c, "address");
	if (parse_hostport(l.address, l.tls == LISTEN_IMPLICIT ? 465 : 587,
		&l.ss, &l.sslen)
	    == -1) {
		config_key_error(c, c->listen_addr_mark,
		    "bad address \"%s\" (IPv4:port, [IPv6]:port or a bare IP; "
		    "numeric only)",
		    config_quote(q, sizeof(q), l.address));
		config_path_pop(c, old);
		return;
	}
	for (i = 0; i < cfg->nlisten; i++) {
		if (cfg->listen[i].sslen == l.sslen
		    && memcmp(&cfg->listen[i].ss, &l.ss, l.sslen) == 0) {
			config_key_error(c, c->listen_addr_mark,
			    "\"%s\" is listed twice",
			    config_quote(q, sizeof(q), l.address));
			config_path_pop(c, old);
			return;
		}
	}
	config_path_pop(c, old);
	cfg->listen[cfg->nlisten++] = l;
}

static void
config_listen(struct config_ctx *c, yaml_node_t *k, yaml_node_t *v, void *base)
{
	struct config *cfg = base;
	yaml_node_item_t *it;

	(void)k; /* the handler signature carries it */

	if ((v = config_sequence(c, v)) == NULL)
		return;
	cfg->nlisten = 0; /* the file's entries replace the defaults */
	if (v->data.sequence.items.start == v->data.sequence.items.top) {
		config_key_error(c, v->start_mark, "needs at least one entry");
		return;
	}
	for (it = v->data.sequence.items.start; it < v->data.sequence.items.top;
	     it++) {
		yaml_node_t *item = config_node(c, *it);
		if (it - v->data.sequence.items.start >= MAX_LISTEN) {
			config_key_error(c, item->start_mark,
			    "more than %d entries", MAX_LISTEN);
			break;
		}
		config_listen_entry(c, item);
	}
}

static void
config_nameservers(
    struct config_ctx *c, yaml_node_t *k, yaml_node_t *v, void *base)
{
	struct config *cfg = base;
	struct nameserver_cfg *ns;
	yaml_node_item_t *it;
	char q[80];

	(void)k; /* the handler signature carries it */

	if ((v = config_sequence(c, v)) == NULL)
		return;
	cfg->nnameservers = 0;
	for (it = v->data.sequence.items.start; it < v->data.sequence.items.top;
	     it++) {
		yaml_node_t *item = config_node(c, *it);
		if (cfg->nnameservers == MAX_NAMESERVERS) {
			config_key_error(c, item->start_mark,
			    "more than %d entries", MAX_NAMESERVERS);
			break;
		}
		ns = &cfg->nameservers[cfg->nnameservers];
		if (!config_copy_str(
			c, item, item, ns->text, sizeof(ns->text), NULL))
			continue;
		if (parse_hostport(ns->text, 53, &ns->ss, &ns->sslen) == -1) {
			config_key_error(c, item->start_mark,
			    "bad address \"%s\" (IPv4, IPv4:port, IPv6 or "
			    "[IPv6]:port; numeric only)",
			    config_quote(q, sizeof(q), ns->text));
			continue;
		}
		cfg->nnameservers++;
	}
}

static void
config_add_sender(struct config_ctx *c, const char *login, const char *pattern)
{
	struct config *cfg = c->cfg;
	struct sender_rule *r;

	if (cfg->nsenders == c->senders_cap) {
		c->senders_cap = c->senders_cap ? c->senders_cap * 2 : 16;
		cfg->senders = xreallocarray(
		    cfg->senders, c->senders_cap, sizeof(*cfg->senders));
	}
	r = &cfg->senders[cfg->nsenders++];
	strlcpy_msa(r->login, login, sizeof(r->login));
	strlcpy_msa(r->pattern, pattern, sizeof(r->pattern));
}

/* One login's list of patterns; path already names the login. */
static void
config_sender_list(struct config_ctx *c, const char *login, yaml_node_t *v)
{
	char pattern[MAX_ADDR], q[80];
	yaml_node_item_t *it;
	size_t n = 0;

	if ((v = config_sequence(c, v)) == NULL)
		return;
	for (it = v->data.sequence.items.start; it < v->data.sequence.items.top;
	     it++) {
		yaml_node_t *item = config_node(c, *it);
		if (!config_copy_str(
			c, item, item, pattern, sizeof(pattern), NULL))
			continue;
		if (!config_is_pattern(pattern)) {
			config_key_error(c, item->start_mark,
			    "bad pattern \"%s\" (expected local@domain, "
			    "local*@domain or @domain)",
			    config_quote(q, sizeof(q), pattern));
			continue;
		}
		/* auth sends the login's own address plus these. */
		if (++n > MAX_RIGHTS - 1) {
			config_key_error(c, item->start_mark,
			    "too many patterns (max %d)", MAX_RIGHTS - 1);
			return;
		}
		config_add_sender(c, login, pattern);
	}
}

static void
config_senders(struct config_ctx *c, yaml_node_t *k, yaml_node_t *v, void *base)
{
	yaml_node_pair_t *p;
	char q[80];

	(void)k; /* the handler signature carries them */
	(void)base;

	if (config_is_null(v))
		return;
	if (v->type != YAML_MAPPING_NODE) {
		config_key_error(c, v->start_mark,
		    "expected a mapping of login: [patterns], got %s",
		    config_kind(v));
		return;
	}
	for (p = v->data.mapping.pairs.start; p < v->data.mapping.pairs.top;
	     p++) {
		yaml_node_t *lk;
		const char *login;
		size_t old;

		if ((login = config_pair_key(c, v, p)) == NULL)
			continue;
		lk = config_node(c, p->key);
		old = config_path_push(c, login);
		if (strlen(login) >= MAX_LOGIN)
			config_key_error(c, lk->start_mark,
			    "login too long (max %d characters)",
			    MAX_LOGIN - 1);
		else if (!config_is_login(login))
			config_key_error(c, lk->start_mark,
			    "bad login \"%s\" (no blanks, ':' or control "
			    "characters)",
			    config_quote(q, sizeof(q), login));
		else
			config_sender_list(c, login, config_node(c, p->value));
		config_path_pop(c, old);
	}
}

/* ------------------------------------------------------------------ */
/* The schema                                                          */

static const struct config_enum config_log_levels[] = {
	{ "debug", LOG_LVL_DEBUG },
	{ "info", LOG_LVL_INFO },
	{ "warning", LOG_LVL_WARNING },
	{ "error", LOG_LVL_ERROR },
	{ NULL, 0 },
};
static const struct config_enum config_log_targets[] = {
	{ "stderr", 0 },
	{ "syslog", 1 },
	{ NULL, 0 },
};
static const struct config_enum config_tls_versions[] = {
	{ "1.2", TLS1_2_VERSION },
	{ "1.3", TLS1_3_VERSION },
	{ NULL, 0 },
};
static const struct config_enum config_from_mismatch[] = {
	{ "reject", FROM_MISMATCH_REJECT },
	{ "add-sender", FROM_MISMATCH_ADD_SENDER },
	{ NULL, 0 },
};
static const struct config_enum config_relay_modes[] = {
	{ "mx", RELAY_MX },
	{ "smarthost", RELAY_SMARTHOST },
	{ NULL, 0 },
};
static const struct config_enum config_relay_tls[] = {
	{ "opportunistic", RELAY_TLS_OPPORTUNISTIC },
	{ "required", RELAY_TLS_REQUIRED },
	{ NULL, 0 },
};
static const struct config_enum config_smarthost_tls[] = {
	{ "starttls", SMARTHOST_STARTTLS },
	{ "implicit", SMARTHOST_IMPLICIT },
	{ "none", SMARTHOST_NONE },
	{ NULL, 0 },
};

static const struct config_key config_log_keys[] = {
	{ .name = "level",
	    .type = K_ENUM,
	    CFIELD(log_level),
	    .enums = config_log_levels },
	{ .name = "target",
	    .type = K_ENUM,
	    CFIELD(log_syslog),
	    .enums = config_log_targets },
	{ .name = NULL },
};

static const struct config_key config_tls_keys[] = {
	{ .name = "certificate",
	    .type = K_STR,
	    CFIELD(tls_certificate),
	    .check = config_check_printable,
	    .mark = CM_CERT },
	{ .name = "key",
	    .type = K_STR,
	    CFIELD(tls_key),
	    .check = config_check_printable,
	    .mark = CM_KEY },
	{ .name = "min_version",
	    .type = K_ENUM,
	    CFIELD(tls_min_version),
	    .enums = config_tls_versions },
	{ .name = NULL },
};

static const struct config_key config_auth_keys[] = {
	{ .name = "users",
	    .type = K_STR,
	    CFIELD(auth_users),
	    .check = config_check_printable,
	    .mark = CM_USERS },
	{ .name = "max_failures",
	    .type = K_UINT,
	    CFIELD(auth_max_failures),
	    .min = 1,
	    .max = 100000 },
	{ .name = "cache",
	    .type = K_DURATION,
	    CFIELD(auth_cache),
	    .min = 0,
	    .max = CONFIG_YEAR },
	{ .name = NULL },
};

static const struct config_key config_limits_keys[] = {
	{ .name = "message_size",
	    .type = K_SIZE,
	    CFIELD(message_size),
	    .min = 1,
	    .max = CONFIG_NO_MAX },
	{ .name = "recipients",
	    .type = K_UINT,
	    CFIELD(max_recipients),
	    .min = 1,
	    .max = MAX_RCPT_LIMIT },
	{ .name = "sessions",
	    .type = K_UINT,
	    CFIELD(max_sessions),
	    .min = 1,
	    .max = 65535,
	    .mark = CM_SESSIONS },
	{ .name = "sessions_per_ip",
	    .type = K_UINT,
	    CFIELD(max_sessions_per_ip),
	    .min = 1,
	    .max = 65535,
	    .mark = CM_PER_IP },
	{ .name = "messages_per_hour",
	    .type = K_UINT,
	    CFIELD(messages_per_hour),
	    .min = 0,
	    .max = 1000000 },
	{ .name = NULL },
};

static const struct config_key config_policy_keys[] = {
	{ .name = "from_mismatch",
	    .type = K_ENUM,
	    CFIELD(from_mismatch),
	    .enums = config_from_mismatch },
	{ .name = "remove_bcc", .type = K_BOOL, CFIELD(remove_bcc) },
	{ .name = "hide_client_ip", .type = K_BOOL, CFIELD(hide_client_ip) },
	{ .name = NULL },
};

static const struct config_key config_smarthost_keys[] = {
	{ .name = "host",
	    .type = K_STR,
	    CFIELD(smarthost_host),
	    .check = config_check_host },
	{ .name = "port",
	    .type = K_UINT,
	    CFIELD(smarthost_port),
	    .min = 1,
	    .max = 65535 },
	{ .name = "tls",
	    .type = K_ENUM,
	    CFIELD(smarthost_tls),
	    .enums = config_smarthost_tls },
	{ .name = "username",
	    .type = K_STR,
	    CFIELD(smarthost_username),
	    .check = config_check_printable,
	    .mark = CM_SH_USERNAME },
	{ .name = "password_file",
	    .type = K_STR,
	    CFIELD(smarthost_password_file),
	    .check = config_check_printable,
	    .mark = CM_SH_PASSFILE },
	{ .name = NULL },
};

static const struct config_key config_retry_keys[] = {
	{ .name = "first",
	    .type = K_DURATION,
	    CFIELD(retry_first),
	    .min = 1,
	    .max = CONFIG_YEAR,
	    .mark = CM_FIRST },
	{ .name = "max",
	    .type = K_DURATION,
	    CFIELD(retry_max),
	    .min = 1,
	    .max = CONFIG_YEAR,
	    .mark = CM_MAX },
	{ .name = "give_up",
	    .type = K_DURATION,
	    CFIELD(retry_give_up),
	    .min = 1,
	    .max = CONFIG_YEAR },
	{ .name = NULL },
};

static const struct config_key config_relay_keys[] = {
	{ .name = "mode",
	    .type = K_ENUM,
	    CFIELD(relay_mode),
	    .enums = config_relay_modes,
	    .mark = CM_MODE },
	{ .name = "tls",
	    .type = K_ENUM,
	    CFIELD(relay_tls),
	    .enums = config_relay_tls },
	{ .name = "smarthost",
	    .type = K_MAP,
	    .sub = config_smarthost_keys,
	    .mark = CM_SMARTHOST },
	{ .name = "retry",
	    .type = K_MAP,
	    .sub = config_retry_keys,
	    .mark = CM_RETRY },
	{ .name = "concurrency",
	    .type = K_UINT,
	    CFIELD(relay_concurrency),
	    .min = 1,
	    .max = 256 },
	{ .name = "mx_port",
	    .type = K_UINT,
	    CFIELD(mx_port),
	    .min = 1,
	    .max = 65535 },
	{ .name = NULL },
};

static const struct config_key config_dns_keys[] = {
	{ .name = "nameservers", .type = K_FN, .fn = config_nameservers },
	{ .name = NULL },
};

static const struct config_key config_sandbox_keys[] = {
	{ .name = "seccomp", .type = K_BOOL, CFIELD(sandbox_seccomp) },
	{ .name = NULL },
};

static const struct config_key config_top_keys[] = {
	{ .name = "hostname",
	    .type = K_STR,
	    CFIELD(hostname),
	    .check = config_check_domain,
	    .mark = CM_HOSTNAME },
	{ .name = "domain",
	    .type = K_STR,
	    CFIELD(domain),
	    .check = config_check_domain,
	    .mark = CM_DOMAIN },
	{ .name = "user",
	    .type = K_STR,
	    CFIELD(user),
	    .check = config_check_account,
	    .mark = CM_USER },
	{ .name = "spool",
	    .type = K_STR,
	    CFIELD(spool),
	    .check = config_check_abspath,
	    .mark = CM_SPOOL },
	{ .name = "log", .type = K_MAP, .sub = config_log_keys },
	{ .name = "listen", .type = K_FN, .fn = config_listen },
	{ .name = "tls",
	    .type = K_MAP,
	    .sub = config_tls_keys,
	    .mark = CM_TLS },
	{ .name = "auth",
	    .type = K_MAP,
	    .sub = config_auth_keys,
	    .mark = CM_AUTH },
	{ .name = "senders", .type = K_FN, .fn = config_senders },
	{ .name = "limits",
	    .type = K_MAP,
	    .sub = config_limits_keys,
	    .mark = CM_LIMITS },
	{ .name = "policy", .type = K_MAP, .sub = config_policy_keys },
	{ .name = "relay",
	    .type = K_MAP,
	    .sub = config_relay_keys,
	    .mark = CM_RELAY },
	{ .name = "dns", .type = K_MAP, .sub = config_dns_keys },
	{ .name = "sandbox", .type = K_MAP, .sub = config_sandbox_keys },
	{ .name = NULL },
};

/* ------------------------------------------------------------------ */
/* Defaults                                                            */

/* The system's FQDN: gethostname, and the resolver only if that is bare. */
static void
config_system_hostname(char *out, size_t outlen)
{
	struct addrinfo hints, *res = NULL;
	char name[MAX_DOMAIN];

	if (gethostname(name, sizeof(name)) == -1 || name[0] == '\0')
		strlcpy_msa(name, "localhost", sizeof(name));
	name[sizeof(name) - 1] = '\0';
	if (strchr(name, '.') == NULL) {
		memset(&hints, 0, sizeof(hints));
		hints.ai_family = AF_UNSPEC;
		hints.ai_flags = AI_CANONNAME;
		if (getaddrinfo(name, NULL, &hints, &res) == 0 && res != NULL
		    && res->ai_canonname != NULL
		    && strchr(res->ai_canonname, '.') != NULL
		    && strlen(res->ai_canonname) < sizeof(name))
			strlcpy_msa(name, res->ai_canonname, sizeof(name));
		if (res != NULL)
			freeaddrinfo(res);
	}
	strlcpy_msa(out, name, outlen);
}

/* hostname without its first label; a single label stands for itself. */
static void
config_default_domain(struct config *cfg)
{
	const char *dot = strchr(cfg->hostname, '.');

	strlcpy_msa(cfg->domain,
	    dot != NULL && dot[1] != '\0' ? dot + 1 : cfg->hostname,
	    sizeof(cfg->domain));
}

/* Everything but the names that need the system. */
static void
config_base_defaults(struct config *cfg)
{
	static const struct {
		const char *address;
		enum tls_listen_mode tls;
	} listen[] = {
		{ "0.0.0.0:587", LISTEN_STARTTLS },
		{ "[::]:587", LISTEN_STARTTLS },
		{ "0.0.0.0:465", LISTEN_IMPLICIT },
	};
	size_t i;

	memset(cfg, 0, sizeof(*cfg));
	strlcpy_msa(cfg->user, "msa", sizeof(cfg->user));
	strlcpy_msa(cfg->spool, "/var/spool/msa", sizeof(cfg->spool));
	cfg->log_level = LOG_LVL_INFO;
	cfg->log_syslog = false;
	for (i = 0; i < MAX_LISTEN; i++)
		cfg->listen[i].fd = -1;
	for (i = 0; i < sizeof(listen) / sizeof(listen[0]); i++) {
		struct listen_cfg *l = &cfg->listen[i];
		strlcpy_msa(l->address, listen[i].address, sizeof(l->address));
		l->tls = listen[i].tls;
		if (parse_hostport(l->address, 0, &l->ss, &l->sslen) == -1)
			fatalx("config: bad built-in listen address");
	}
	cfg->nlisten = sizeof(listen) / sizeof(listen[0]);
	strlcpy_msa(cfg->tls_certificate, "/etc/msa/fullchain.pem",
	    sizeof(cfg->tls_certificate));
	strlcpy_msa(cfg->tls_key, "/etc/msa/privkey.pem", sizeof(cfg->tls_key));
	cfg->tls_min_version = TLS1_2_VERSION;
	strlcpy_msa(
	    cfg->auth_users, "/etc/msa/passwd", sizeof(cfg->auth_users));
	cfg->auth_max_failures = 5;
	cfg->auth_cache = 0;
	cfg->senders = NULL;
	cfg->nsenders = 0;
	cfg->message_size = 25 * 1024 * 1024;
	cfg->max_recipients = 100;
	cfg->max_sessions = 50;
	cfg->max_sessions_per_ip = 10;
	cfg->messages_per_hour = 0;
	cfg->from_mismatch = FROM_MISMATCH_REJECT;
	cfg->remove_bcc = true;
	cfg->hide_client_ip = false;
	cfg->sandbox_seccomp = true;
	cfg->relay_mode = RELAY_MX;
	cfg->relay_tls = RELAY_TLS_OPPORTUNISTIC;
	cfg->smarthost_port = 587;
	cfg->smarthost_tls = SMARTHOST_STARTTLS;
	cfg->retry_first = 5 * 60;
	cfg->retry_max = 60 * 60;
	cfg->retry_give_up = 5 * 86400;
	cfg->relay_concurrency = 4;
	cfg->mx_port = 25;
	cfg->nnameservers = 0;
	/* Not root by accident: config_load resolves the account. */
	cfg->uid = (uid_t)-1;
	cfg->gid = (gid_t)-1;
}

void
config_defaults(struct config *cfg)
{
	config_base_defaults(cfg);
	config_system_hostname(cfg->hostname, sizeof(cfg->hostname));
	config_default_domain(cfg);
}

void
config_free(struct config *cfg)
{
	free(cfg->senders);
	cfg->senders = NULL;
	cfg->nsenders = 0;
}

/* ------------------------------------------------------------------ */
/* Checks across keys, and of the files named                          */

static void
config_finish(struct config_ctx *c)
{
	struct config *cfg = c->cfg;
	struct passwd *pw;
	char q[80];

	if (!c->have[CM_HOSTNAME] || c->bad[CM_HOSTNAME])
		config_system_hostname(cfg->hostname, sizeof(cfg->hostname));
	if (!c->have[CM_DOMAIN] || c->bad[CM_DOMAIN])
		config_default_domain(cfg);
	/* A refused user was reported; its default is not worth a word. */
	if (!c->bad[CM_USER]) {
		if ((pw = getpwnam(cfg->user)) == NULL)
			config_error(c,
			    config_where(c, CM_USER, CM_NONE, CM_NONE),
			    "user: no such account \"%s\"",
			    config_quote(q, sizeof(q), cfg->user));
		else {
			cfg->uid = pw->pw_uid;
			cfg->gid = pw->pw_gid;
		}
	}
	if (cfg->max_sessions_per_ip > cfg->max_sessions)
		config_error(c,
		    config_where(c, CM_PER_IP, CM_SESSIONS, CM_LIMITS),
		    "limits.sessions_per_ip (%u) is larger than "
		    "limits.sessions (%u)",
		    cfg->max_sessions_per_ip, cfg->max_sessions);
	if (cfg->retry_first > cfg->retry_max)
		config_error(c, config_where(c, CM_FIRST, CM_MAX, CM_RETRY),
		    "relay.retry.first (%llds) is longer than relay.retry.max "
		    "(%llds)",
		    (long long)cfg->retry_first, (long long)cfg->retry_max);
	if (cfg->relay_mode != RELAY_SMARTHOST)
		return;
	if (cfg->smarthost_host[0] == '\0')
		config_error(c, config_where(c, CM_MODE, CM_RELAY, CM_NONE),
		    "relay.smarthost.host: required when relay.mode is "
		    "smarthost");
	if (cfg->smarthost_username[0] != '\0'
	    && cfg->smarthost_password_file[0] == '\0')
		config_error(c,
		    config_where(c, CM_SH_USERNAME, CM_SMARTHOST, CM_RELAY),
		    "relay.smarthost.password_file: required when username "
		    "is set");
}

/* 0 if path opens for reading as a regular file, else -1 and why. */
static int
config_readable(const char *path, char *why, size_t whylen)
{
	struct stat st;
	int fd, rc = 0;

	/* O_NONBLOCK: a FIFO in its place must not hang msa -n. */
	fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd == -1) {
		(void)snprintf(
		    why, whylen, "cannot open %s: %s", path, strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1) {
		(void)snprintf(
		    why, whylen, "cannot stat %s: %s", path, strerror(errno));
		rc = -1;
	} else if (!S_ISREG(st.st_mode)) {
		(void)snprintf(why, whylen, "%s is not a regular file", path);
		rc = -1;
	}
	(void)close(fd);
	return rc;
}

static void
config_check_spool(struct config_ctx *c)
{
	const char *spool = c->cfg->spool;
	yaml_mark_t m = config_where(c, CM_SPOOL, CM_NONE, CM_NONE);
	char parent[MAX_PATHLEN];
	struct stat st;
	size_t len;
	char *slash;

	if (spool[0] != '/')
		return; /* reported already */
	if (stat(spool, &st) == 0) {
		if (!S_ISDIR(st.st_mode))
			config_error(
			    c, m, "spool: %s is not a directory", spool);
		return;
	}
	if (errno != ENOENT) {
		config_error(
		    c, m, "spool: cannot stat %s: %s", spool, strerror(errno));
		return;
	}
	strlcpy_msa(parent, spool, sizeof(parent));
	for (len = strlen(parent); len > 1 && parent[len - 1] == '/'; len--)
		parent[len - 1] = '\0';
	slash = strrchr(parent, '/'); /* not NULL: the path is absolute */
	if (slash == parent)
		slash[1] = '\0';
	else
		*slash = '\0';
	if (stat(parent, &st) == -1)
		config_error(c, m, "spool: cannot create %s: parent %s: %s",
		    spool, parent, strerror(errno));
	else if (!S_ISDIR(st.st_mode))
		config_error(c, m,
		    "spool: cannot create %s: parent %s is not a directory",
		    spool, parent);
}

/*
 * auth.c leaves its first problem as "LINE:COL: message" ("0:0: " for the
 * file as a whole); show it as a place in the password file.
 */
static void
config_check_users(struct config_ctx *c)
{
	yaml_mark_t m = config_where(c, CM_USERS, CM_AUTH, CM_NONE);
	const char *path = c->cfg->auth_users;
	char why[1024], more[64] = "";
	int n;

	why[0] = '\0';
	if ((n = auth_check_users_file(path, why, sizeof(why))) == 0)
		return;
	if (n > 1)
		(void)snprintf(more, sizeof(more), " (%d problems in all)", n);
	if (why[0] == '\0')
		config_error(c, m,
		    "auth.users: %s: not a valid password file%s", path, more);
	else if (strncmp(why, "0:0: ", 5) == 0)
		config_error(c, m, "auth.users: %s: %s%s", path, why + 5, more);
	else
		config_error(c, m, "auth.users: %s:%s%s", path, why, more);
}

static void
config_check_files(struct config_ctx *c)
{
	struct config *cfg = c->cfg;
	char why[MAX_PATHLEN + 256];
	bool tls_ok = true;

	config_check_spool(c);
	if (config_readable(cfg->tls_certificate, why, sizeof(why)) == -1) {
		config_error(c, config_where(c, CM_CERT, CM_TLS, CM_NONE),
		    "tls.certificate: %s", why);
		tls_ok = false;
	}
	if (config_readable(cfg->tls_key, why, sizeof(why)) == -1) {
		config_error(c, config_where(c, CM_KEY, CM_TLS, CM_NONE),
		    "tls.key: %s", why);
		tls_ok = false;
	}
	why[0] = '\0';
	if (tls_ok
	    && tls_check_files(
		   cfg->tls_certificate, cfg->tls_key, why, sizeof(why))
		!= 0)
		config_error(c, config_where(c, CM_CERT, CM_TLS, CM_NONE),
		    "tls.certificate: %s",
		    why[0] != '\0' ? why : "certificate and key do not match");
	if (config_readable(cfg->auth_users, why, sizeof(why)) == -1)
		config_error(c, config_where(c, CM_USERS, CM_AUTH, CM_NONE),
		    "auth.users: %s", why);
	else
		config_check_users(c);
	if (cfg->relay_mode == RELAY_SMARTHOST
	    && cfg->smarthost_username[0] != '\0'
	    && cfg->smarthost_password_file[0] != '\0'
	    && config_readable(cfg->smarthost_password_file, why, sizeof(why))
		== -1)
		config_error(c,
		    config_where(c, CM_SH_PASSFILE, CM_SMARTHOST, CM_RELAY),
		    "relay.smarthost.password_file: %s", why);
}

/* ------------------------------------------------------------------ */
/* Loading                                                             */

/* The whole file into a heap buffer; -1 once reported. */
static int
config_read(struct config_ctx *c, char **out, size_t *outlen)
{
	struct stat st;
	char *text = NULL;
	size_t len = 0;
	ssize_t n;
	int fd;

	if ((fd = open(c->file, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK))
	    == -1) {
		config_error_at(c, 1, 1, "cannot open: %s", strerror(errno));
		return -1;
	}
	if (fstat(fd, &st) == -1 || !S_ISREG(st.st_mode)) {
		config_error_at(c, 1, 1, "not a regular file");
		goto fail;
	}
	text = xmalloc(CONFIG_MAX_BYTES + 1);
	for (;;) {
		n = read(fd, text + len, CONFIG_MAX_BYTES + 1 - len);
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			config_error_at(
			    c, 1, 1, "cannot read: %s", strerror(errno));
			goto fail;
		}
		if (n == 0)
			break;
		len += (size_t)n;
		if (len > CONFIG_MAX_BYTES) {
			config_error_at(c, 1, 1,
			    "file too large (more than %d bytes)",
			    CONFIG_MAX_BYTES);
			goto fail;
		}
	}
	(void)close(fd);
	*out = text;
	*outlen = len;
	return 0;
fail:
	free(text);
	(void)close(fd);
	return -1;
}

static void
config_syntax_error(
    struct config_ctx *c, const yaml_parser_t *p, const char *text, size_t len)
{
	const char *problem = p->problem != NULL ? p->problem : "unknown";
	size_t line = 1, col = 1, i;

	if (p->error == YAML_MEMORY_ERROR)
		fatalx("config: out of memory");
	if (p->error == YAML_READER_ERROR) {
		/* The reader knows a byte offset, not a mark. */
		for (i = 0; i < p->problem_offset && i < len; i++) {
			if (text[i] == '\n') {
				line++;
				col = 1;
			} else
				col++;
		}
		config_error_at(c, line, col, "syntax error: %s", problem);
		return;
	}
	if (p->context != NULL
	    && (p->context_mark.line != p->problem_mark.line
		|| p->context_mark.column != p->problem_mark.column))
		config_error(c, p->problem_mark,
		    "syntax error: %s (%s at line %zu, column %zu)", problem,
		    p->context, p->context_mark.line + 1,
		    p->context_mark.column + 1);
	else if (p->context != NULL)
		config_error(c, p->problem_mark, "syntax error: %s (%s)",
		    problem, p->context);
	else
		config_error(c, p->problem_mark, "syntax error: %s", problem);
}

static void
config_root(struct config_ctx *c, yaml_node_t *root)
{
	if (config_is_null(root))
		return; /* a file of comments, or "---" alone */
	if (root->type != YAML_MAPPING_NODE) {
		config_error(c, root->start_mark,
		    "expected a mapping (key: value) at the top level, got %s",
		    config_kind(root));
		return;
	}
	(void)config_walk(c, root, config_top_keys, c->cfg);
}

/* Parse the single document; false if YAML itself was malformed. */
static bool
config_parse(struct config_ctx *c, const char *text, size_t len)
{
	yaml_parser_t parser;
	yaml_document_t doc, extra;
	yaml_node_t *root;
	bool ok = true;

	if (!yaml_parser_initialize(&parser))
		fatalx("config: yaml_parser_initialize failed");
	yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
	if (!yaml_parser_load(&parser, &doc)) {
		config_syntax_error(c, &parser, text, len);
		yaml_parser_delete(&parser);
		return false;
	}
	c->doc = &doc;
	if ((root = yaml_document_get_root_node(&doc)) != NULL)
		config_root(c, root);
	c->doc = NULL;
	yaml_document_delete(&doc);
	if (!yaml_parser_load(&parser, &extra)) {
		config_syntax_error(c, &parser, text, len);
		ok = false;
	} else {
		if ((root = yaml_document_get_root_node(&extra)) != NULL)
			config_error(c, root->start_mark,
			    "only one YAML document is allowed");
		yaml_document_delete(&extra);
	}
	yaml_parser_delete(&parser);
	return ok;
}

int
config_load(struct config *cfg, const char *file, bool check_files)
{
	struct config_ctx c;
	char *text;
	size_t len;

	memset(&c, 0, sizeof(c));
	c.cfg = cfg;
	c.file = file;
	config_base_defaults(cfg);
	if (strlcpy_msa(cfg->path, file, sizeof(cfg->path))
	    >= sizeof(cfg->path)) {
		config_error_at(&c, 1, 1, "file name too long");
		return c.nerr;
	}
	if (config_read(&c, &text, &len) == -1)
		return c.nerr;
	if (!config_parse(&c, text, len)) {
		free(text);
		return c.nerr;
	}
	free(text);
	config_finish(&c);
	if (check_files)
		config_check_files(&c);
	return c.nerr;
}

/*
 * tls.c - the server side of TLS, on OpenSSL 3.
 *
 * The context is built from descriptors, never from paths, so that the
 * listener can rebuild it inside its chroot from files the parent opened.
 * Settings follow Mozilla's "intermediate" profile: TLS 1.2 only with
 * ECDHE and AEAD ciphers, TLS 1.3 as OpenSSL ships it.
 *
 * Resumption uses standard stateless session tickets.  The ticket keys are
 * created with the context and live in its memory; every session process
 * is forked from the listener holding that context, so a ticket issued by
 * one session resumes in the next.  A reload builds a new context with new
 * keys: old tickets then fall back to a full handshake.  TLS 1.3 sends one
 * ticket per connection (some clients mishandle several, TRAPS.md).
 *
 * OpenSSL loads its configuration, providers and error strings and opens
 * the random source lazily: tls_prime() does all of that before any fork,
 * chroot or seccomp filter.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "msa.h"

#define TLS12_CIPHERS                                                          \
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"           \
	"ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"           \
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305"
#define TLS13_SUITES                                                           \
	"TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:"                       \
	"TLS_CHACHA20_POLY1305_SHA256"
#define TLS_GROUPS "X25519:P-256:P-384"
#define TLS_SID_CTX "msa"
#define TLS_FILE_MAX (1024 * 1024) /* a certificate chain or a key */

void
tls_prime(void)
{
	static const char *const digests[] = { "SHA256", "SHA384", "SHA1" };
	static const char *const ciphers[]
	    = { "AES-128-GCM", "AES-256-GCM", "ChaCha20-Poly1305" };
	unsigned char rnd[32];
	SSL_CTX *ctx;
	size_t i;

	if (OPENSSL_init_ssl(OPENSSL_INIT_LOAD_SSL_STRINGS
		    | OPENSSL_INIT_LOAD_CRYPTO_STRINGS
		    | OPENSSL_INIT_LOAD_CONFIG,
		NULL)
	    != 1)
		fatalx("event=tls_error call=OPENSSL_init_ssl");
	if (RAND_bytes(rnd, sizeof(rnd)) != 1)
		fatalx("event=tls_error call=RAND_bytes");
	OPENSSL_cleanse(rnd, sizeof(rnd));
	/* Fetch once so the provider and method store are filled now. */
	for (i = 0; i < sizeof(digests) / sizeof(digests[0]); i++)
		EVP_MD_free(EVP_MD_fetch(NULL, digests[i], NULL));
	for (i = 0; i < sizeof(ciphers) / sizeof(ciphers[0]); i++)
		EVP_CIPHER_free(EVP_CIPHER_fetch(NULL, ciphers[i], NULL));
	/* A context loads the cipher and group tables and the ssl config. */
	if ((ctx = SSL_CTX_new(TLS_method())) == NULL)
		fatalx("event=tls_error call=SSL_CTX_new");
	SSL_CTX_free(ctx);
	ERR_clear_error();
}

/*
 * Memory: OpenSSL fills lazy structures (method and decoder caches, group
 * and signature tables, the ticket key material's derived state) on the
 * first handshake a process makes.  Done in every forked session, that
 * work dirties its copy-on-write heap: hundreds of KiB of private memory
 * per idle session.  One full handshake (TLS 1.3 and TLS 1.2) between
 * ctx and a throw-away client over a BIO pair in the listener, before any
 * fork, leaves those structures in pages the sessions share.  Failure only
 * costs memory, so it is logged at debug level and ignored.
 */
static int
tls_warm_one(SSL_CTX *ctx, SSL_CTX *cctx)
{
	SSL *srv = NULL, *cli = NULL;
	BIO *sb = NULL, *cb = NULL;
	int i, rc = -1, sr = 0, cr = 0;

	if ((srv = SSL_new(ctx)) == NULL || (cli = SSL_new(cctx)) == NULL
	    || BIO_new_bio_pair(&sb, 0, &cb, 0) != 1)
		goto done;
	SSL_set_bio(srv, sb, sb);
	SSL_set_bio(cli, cb, cb);
	sb = cb = NULL;
	SSL_set_accept_state(srv);
	SSL_set_connect_state(cli);
	for (i = 0; i < 16 && (sr != 1 || cr != 1); i++) {
		if (cr != 1 && (cr = SSL_do_handshake(cli)) != 1
		    && SSL_get_error(cli, cr) != SSL_ERROR_WANT_READ)
			goto done;
		if (sr != 1 && (sr = SSL_do_handshake(srv)) != 1
		    && SSL_get_error(srv, sr) != SSL_ERROR_WANT_READ)
			goto done;
	}
	if (sr == 1 && cr == 1)
		rc = 0;
done:
	SSL_free(srv);
	SSL_free(cli);
	BIO_free(sb);
	BIO_free(cb);
	ERR_clear_error();
	return rc;
}

void
tls_warm(struct ssl_ctx_st *ctx)
{
	static const int versions[] = { TLS1_3_VERSION, TLS1_2_VERSION };
	SSL_CTX *cctx;
	size_t i;

	if (ctx == NULL)
		return;
	for (i = 0; i < sizeof(versions) / sizeof(versions[0]); i++) {
		if (versions[i] < SSL_CTX_get_min_proto_version(ctx)
		    && SSL_CTX_get_min_proto_version(ctx) != 0)
			continue;
		if ((cctx = SSL_CTX_new(TLS_client_method())) == NULL)
			break;
		SSL_CTX_set_verify(cctx, SSL_VERIFY_NONE, NULL);
		if (SSL_CTX_set_min_proto_version(cctx, versions[i]) != 1
		    || SSL_CTX_set_max_proto_version(cctx, versions[i]) != 1
		    || tls_warm_one(ctx, cctx) == -1)
			log_debug("event=tls-warm version=%x result=failed",
			    versions[i]);
		SSL_CTX_free(cctx);
	}
	ERR_clear_error();
}

const char *
tls_error(char *buf, size_t len)
{
	unsigned long e, last = 0;
	const char *reason, *lib;

	while ((e = ERR_get_error()) != 0)
		last = e;
	if (len == 0)
		return "";
	if (last == 0) {
		strlcpy_msa(buf, "unknown error", len);
		return buf;
	}
	reason = ERR_reason_error_string(last);
	lib = ERR_lib_error_string(last);
	if (reason == NULL
	    || bsnprintf(buf, len, "%s%s%s", lib != NULL ? lib : "",
		   lib != NULL ? ": " : "", reason)
		== -1)
		(void)ERR_error_string_n(last, buf, len);
	return buf;
}

static int __attribute__((format(printf, 3, 4)))
tls_fail(char *err, size_t errlen, const char *fmt, ...)
{
	char what[256], why[256];
	va_list ap;

	va_start(ap, fmt);
	(void)vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	(void)tls_error(why, sizeof(why));
	if (err != NULL && errlen > 0)
		(void)snprintf(err, errlen, "%s: %s", what, why);
	return -1;
}

/* No terminal prompt from inside a daemon: encrypted keys are refused. */
static int
tls_no_passphrase(char *buf, int size, int rwflag, void *u)
{
	(void)buf;
	(void)size;
	(void)rwflag;
	(void)u;
	return -1;
}

/* Did the last PEM read fail only for want of another PEM block? */
static bool
tls_pem_eof(void)
{
	unsigned long e = ERR_peek_last_error();

	if (ERR_GET_LIB(e) == ERR_LIB_PEM
	    && ERR_GET_REASON(e) == PEM_R_NO_START_LINE) {
		ERR_clear_error();
		return true;
	}
	return false;
}

/*
 * The whole file into memory: PEM parsing reads a descriptor one byte at a
 * time and seeks back to retry decoders; a memory BIO does neither, and
 * works on a pipe too.  The caller cleanses and frees b.
 */
static int
tls_slurp(int fd, struct buf *b, const char *what, char *err, size_t errlen)
{
	char chunk[4096];
	ssize_t n;

	buf_init(b);
	for (;;) {
		n = read(fd, chunk, sizeof(chunk));
		if (n == -1 && errno == EINTR)
			continue;
		if (n == -1) {
			(void)snprintf(err, errlen, "cannot read %s: %s", what,
			    strerror(errno));
			break;
		}
		if (n == 0)
			return 0;
		if (b->len + (size_t)n > TLS_FILE_MAX) {
			(void)snprintf(err, errlen,
			    "cannot read %s: larger than %d bytes", what,
			    TLS_FILE_MAX);
			break;
		}
		buf_add(b, chunk, (size_t)n);
	}
	OPENSSL_cleanse(chunk, sizeof(chunk));
	return -1;
}

static void
tls_forget(struct buf *b)
{
	if (b->data != NULL)
		OPENSSL_cleanse(b->data, b->cap);
	buf_free(b);
}

/* Leaf first, then the intermediates, in file order. */
static int
tls_load_chain(SSL_CTX *ctx, int cert_fd, char *err, size_t errlen)
{
	struct buf pem;
	X509 *x = NULL;
	BIO *bio;
	int rc = -1;

	ERR_clear_error();
	if (tls_slurp(cert_fd, &pem, "certificate", err, errlen) == -1) {
		tls_forget(&pem);
		return -1;
	}
	if ((bio = BIO_new_mem_buf(
		 pem.data != NULL ? pem.data : "", (int)pem.len))
	    == NULL) {
		tls_forget(&pem);
		return tls_fail(err, errlen, "cannot read certificate");
	}
	if ((x = PEM_read_bio_X509(bio, NULL, tls_no_passphrase, NULL))
	    == NULL) {
		if (tls_pem_eof())
			(void)snprintf(err, errlen,
			    "cannot read certificate: "
			    "no PEM certificate in the file");
		else
			tls_fail(err, errlen, "cannot read certificate");
		goto done;
	}
	if (SSL_CTX_use_certificate(ctx, x) != 1) {
		tls_fail(err, errlen, "cannot use certificate");
		goto done;
	}
	X509_free(x);
	while ((x = PEM_read_bio_X509(bio, NULL, tls_no_passphrase, NULL))
	    != NULL) {
		if (SSL_CTX_add1_chain_cert(ctx, x) != 1) {
			tls_fail(
			    err, errlen, "cannot use intermediate certificate");
			goto done;
		}
		X509_free(x);
	}
	/* The loop ends at the end of the file, or at a broken block. */
	if (tls_pem_eof())
		rc = 0;
	else
		tls_fail(err, errlen, "cannot read intermediate certificate");
done:
	X509_free(x);
	BIO_free(bio);
	tls_forget(&pem);
	return rc;
}

static EVP_PKEY *
tls_read_key(int key_fd, char *err, size_t errlen)
{
	EVP_PKEY *pkey = NULL;
	struct buf pem;
	BIO *bio;

	ERR_clear_error();
	if (tls_slurp(key_fd, &pem, "key", err, errlen) == -1) {
		tls_forget(&pem);
		return NULL;
	}
	if ((bio = BIO_new_mem_buf(
		 pem.data != NULL ? pem.data : "", (int)pem.len))
	    == NULL) {
		tls_fail(err, errlen, "cannot read key");
		tls_forget(&pem);
		return NULL;
	}
	pkey = PEM_read_bio_PrivateKey(bio, NULL, tls_no_passphrase, NULL);
	if (pkey == NULL)
		tls_fail(
		    err, errlen, "cannot read key (PEM, without a passphrase)");
	BIO_free(bio);
	tls_forget(&pem);
	return pkey;
}

static int
tls_use_key(SSL_CTX *ctx, int key_fd, char *err, size_t errlen)
{
	EVP_PKEY *pkey;
	X509 *leaf;
	int rc = -1;

	if ((pkey = tls_read_key(key_fd, err, errlen)) == NULL)
		return -1;
	/* Checked first: OpenSSL files a key of another type elsewhere. */
	leaf = SSL_CTX_get0_certificate(ctx);
	if (leaf == NULL || X509_check_private_key(leaf, pkey) != 1) {
		ERR_clear_error();
		(void)snprintf(err, errlen, "key does not match certificate");
		goto done;
	}
	if (SSL_CTX_use_PrivateKey(ctx, pkey) != 1) {
		tls_fail(err, errlen, "cannot use key");
		goto done;
	}
	if (SSL_CTX_check_private_key(ctx) != 1) {
		ERR_clear_error();
		(void)snprintf(err, errlen, "key does not match certificate");
		goto done;
	}
	rc = 0;
done:
	EVP_PKEY_free(pkey);
	return rc;
}

static int
tls_settings(SSL_CTX *ctx, int min_version, char *err, size_t errlen)
{
	if (min_version != TLS1_2_VERSION && min_version != TLS1_3_VERSION) {
		(void)snprintf(
		    err, errlen, "minimum TLS version must be 1.2 or 1.3");
		return -1;
	}
	if (SSL_CTX_set_min_proto_version(ctx, min_version) != 1
	    || SSL_CTX_set_max_proto_version(ctx, 0) != 1)
		return tls_fail(err, errlen, "cannot set protocol versions");
	if (SSL_CTX_set_cipher_list(ctx, TLS12_CIPHERS) != 1
	    || SSL_CTX_set_ciphersuites(ctx, TLS13_SUITES) != 1)
		return tls_fail(err, errlen, "cannot set ciphers");
	if (SSL_CTX_set1_groups_list(ctx, TLS_GROUPS) != 1)
		return tls_fail(err, errlen, "cannot set groups");
	/*
	 * IGNORE_UNEXPECTED_EOF: a client that hangs up without close_notify
	 * is an ordinary end of session for SMTP, whose data has its own
	 * terminator.
	 */
	SSL_CTX_set_options(ctx,
	    SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE
		| SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
	SSL_CTX_clear_options(ctx, SSL_OP_NO_TICKET);
	SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	/* Stateless tickets only: a forked session's cache would be lost. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
	if (SSL_CTX_set_num_tickets(ctx, 1) != 1)
		return tls_fail(err, errlen, "cannot set session tickets");
	if (SSL_CTX_set_session_id_context(ctx,
		(const unsigned char *)TLS_SID_CTX, sizeof(TLS_SID_CTX) - 1)
	    != 1)
		return tls_fail(err, errlen, "cannot set session context");
	return 0;
}

struct ssl_ctx_st *
tls_server_ctx(
    const struct config *cfg, int cert_fd, int key_fd, char *err, size_t errlen)
{
	char scratch[8];
	SSL_CTX *ctx;

	if (err == NULL || errlen == 0) {
		err = scratch;
		errlen = sizeof(scratch);
	}
	err[0] = '\0';
	ERR_clear_error();
	if ((ctx = SSL_CTX_new(TLS_server_method())) == NULL) {
		tls_fail(err, errlen, "cannot create TLS context");
		return NULL;
	}
	if (tls_settings(ctx, cfg->tls_min_version, err, errlen) == -1
	    || tls_load_chain(ctx, cert_fd, err, errlen) == -1
	    || tls_use_key(ctx, key_fd, err, errlen) == -1) {
		SSL_CTX_free(ctx);
		ERR_clear_error();
		return NULL;
	}
	return ctx;
}

int
tls_check_files(const char *cert, const char *key, char *err, size_t errlen)
{
	struct config cfg;
	SSL_CTX *ctx;
	int cert_fd, key_fd = -1, rc = -1;

	memset(&cfg, 0, sizeof(cfg));
	cfg.tls_min_version = TLS1_2_VERSION;
	if ((cert_fd = open(cert, O_RDONLY | O_CLOEXEC)) == -1) {
		(void)snprintf(err, errlen, "cannot open certificate %s: %s",
		    cert, strerror(errno));
		return -1;
	}
	if ((key_fd = open(key, O_RDONLY | O_CLOEXEC)) == -1) {
		(void)snprintf(err, errlen, "cannot open key %s: %s", key,
		    strerror(errno));
		goto done;
	}
	if ((ctx = tls_server_ctx(&cfg, cert_fd, key_fd, err, errlen)) == NULL)
		goto done;
	SSL_CTX_free(ctx);
	rc = 0;
done:
	(void)close(cert_fd);
	if (key_fd != -1)
		(void)close(key_fd);
	return rc;
}

const char *
tls_conn_version(const struct ssl_st *ssl)
{
	return ssl != NULL ? SSL_get_version(ssl) : "none";
}

const char *
tls_conn_cipher(const struct ssl_st *ssl)
{
	const SSL_CIPHER *c;

	if (ssl == NULL || (c = SSL_get_current_cipher(ssl)) == NULL)
		return "none";
	return SSL_CIPHER_get_name(c);
}

int
tls_conn_bits(const struct ssl_st *ssl)
{
	const SSL_CIPHER *c;

	if (ssl == NULL || (c = SSL_get_current_cipher(ssl)) == NULL)
		return 0;
	return SSL_CIPHER_get_bits(c, NULL);
}

bool
tls_conn_resumed(const struct ssl_st *ssl)
{
	return ssl != NULL && SSL_session_reused(ssl) == 1;
}

const char *
tls_conn_describe(const struct ssl_st *ssl, char *buf, size_t len)
{
	if (bsnprintf(buf, len, "tls=%s cipher=%s bits=%d resumed=%s",
		tls_conn_version(ssl), tls_conn_cipher(ssl), tls_conn_bits(ssl),
		tls_conn_resumed(ssl) ? "yes" : "no")
	    == -1)
		strlcpy_msa(buf, "tls=?", len);
	return buf;
}

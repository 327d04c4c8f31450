/*
 * unit_tls.c - the server TLS context: certificate and key loading, the
 * protocol and cipher policy, handshakes with real clients and session
 * resumption across forked session processes, as msa runs them.
 */
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "msa.h"
#include "test/tap.h"

static char dir[] = "/tmp/msa-unit-tls-XXXXXX";
static char path_buf[8][PATH_MAX];

static const char *
path(const char *name)
{
	static unsigned slot;
	char *p = path_buf[slot++ % 8];

	(void)snprintf(p, PATH_MAX, "%s/%s", dir, name);
	return p;
}

static int sh(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int
sh(const char *fmt, ...)
{
	char cmd[2048];
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(cmd, sizeof(cmd), fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof(cmd))
		return -1;
	return system(cmd);
}

#define EC "-newkey ec -pkeyopt ec_paramgen_curve:P-256"
#define QUIET ">/dev/null 2>&1"

/* Self-signed ECDSA and RSA pairs, a CA-signed leaf with its chain,
 * an encrypted key, garbage and an empty file. */
static bool
make_files(void)
{
	FILE *f;

	if (mkdtemp(dir) == NULL)
		return false;
	if (sh("cd %s && openssl req -x509 " EC " -nodes -keyout ec.key "
	       "-out ec.crt -subj /CN=localhost -days 2 " QUIET,
		dir)
		!= 0
	    || sh("cd %s && openssl req -x509 -newkey rsa:2048 -nodes -keyout "
		  "rsa.key -out rsa.crt -subj /CN=localhost -days 2 " QUIET,
		   dir)
		!= 0
	    || sh("cd %s && openssl req -x509 " EC " -nodes -keyout ca.key "
		  "-out ca.crt -subj /CN=msa-test-ca -days 2 " QUIET,
		   dir)
		!= 0
	    || sh("cd %s && openssl req " EC " -nodes -keyout leaf.key -out "
		  "leaf.csr -subj /CN=mail.example.test " QUIET,
		   dir)
		!= 0
	    || sh("cd %s && openssl x509 -req -in leaf.csr -CA ca.crt -CAkey "
		  "ca.key -CAcreateserial -out leaf.crt -days 2 " QUIET,
		   dir)
		!= 0
	    || sh("cd %s && cat leaf.crt ca.crt > fullchain.pem", dir) != 0
	    || sh("cd %s && openssl pkey -in ec.key -aes256 -passout "
		  "pass:secret "
		  "-out enc.key " QUIET,
		   dir)
		!= 0)
		return false;
	if ((f = fopen(path("garbage.pem"), "w")) == NULL)
		return false;
	fputs("-----BEGIN CERTIFICATE-----\nnot base64 at all!\n"
	      "-----END CERTIFICATE-----\n",
	    f);
	fclose(f);
	if ((f = fopen(path("empty.pem"), "w")) == NULL)
		return false;
	fclose(f);
	return true;
}

static void
cleanup_files(void)
{
	(void)sh("rm -rf %s", dir);
}

static SSL_CTX *
load(const char *cert, const char *key, int min, char *err, size_t errlen)
{
	struct config cfg;
	int cfd, kfd;
	SSL_CTX *ctx;

	memset(&cfg, 0, sizeof(cfg));
	cfg.tls_min_version = min;
	cfd = open(path(cert), O_RDONLY | O_CLOEXEC);
	kfd = open(path(key), O_RDONLY | O_CLOEXEC);
	if (cfd == -1 || kfd == -1) {
		(void)snprintf(
		    err, errlen, "test: cannot open %s or %s", cert, key);
		return NULL;
	}
	ctx = tls_server_ctx(&cfg, cfd, kfd, err, errlen);
	close(cfd);
	close(kfd);
	return ctx;
}

static bool
starts_with(const char *s, const char *prefix)
{
	return strncmp(s, prefix, strlen(prefix)) == 0;
}

/* ------------------------------------------------------------------ */
/* In-process handshakes over a non-blocking socketpair                */

static int tickets_seen;

static int
count_ticket(SSL *ssl, SSL_SESSION *sess)
{
	(void)ssl;
	(void)sess;
	tickets_seen++;
	return 0; /* not kept: we take our own reference */
}

static SSL_CTX *
client_ctx(int max_version, const char *ciphers)
{
	SSL_CTX *c = SSL_CTX_new(TLS_client_method());

	if (c == NULL)
		return NULL;
	SSL_CTX_set_verify(c, SSL_VERIFY_NONE, NULL);
	if (max_version != 0)
		SSL_CTX_set_max_proto_version(c, max_version);
	if (ciphers != NULL)
		SSL_CTX_set_cipher_list(c, ciphers);
	SSL_CTX_set_session_cache_mode(
	    c, SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
	SSL_CTX_sess_set_new_cb(c, count_ticket);
	return c;
}

struct conn {
	SSL *srv, *cli;
	int sv[2];
};

static bool
retry(SSL *ssl, int r)
{
	int e = SSL_get_error(ssl, r);

	return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE;
}

/* A client that just drops a connection may not resume it: say goodbye. */
static void
conn_free(struct conn *c)
{
	if (c->cli != NULL && SSL_is_init_finished(c->cli))
		(void)SSL_shutdown(c->cli);
	SSL_free(c->srv);
	SSL_free(c->cli);
	if (c->sv[0] != -1)
		close(c->sv[0]);
	if (c->sv[1] != -1)
		close(c->sv[1]);
}

/*
 * Handshake, then one application record from the server so that the
 * client also processes the TLS 1.3 tickets.  0 ok, -1 failed.
 */
static int
connect_pair(struct conn *c, SSL_CTX *sctx, SSL_CTX *cctx, SSL_SESSION *resume)
{
	int rs = 0, rc = 0, i;
	char buf[8];

	memset(c, 0, sizeof(*c));
	c->sv[0] = c->sv[1] = -1;
	if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, c->sv) == -1)
		return -1;
	c->srv = SSL_new(sctx);
	c->cli = SSL_new(cctx);
	if (c->srv == NULL || c->cli == NULL)
		return -1;
	SSL_set_fd(c->srv, c->sv[0]);
	SSL_set_fd(c->cli, c->sv[1]);
	if (resume != NULL)
		SSL_set_session(c->cli, resume);
	for (i = 0; i < 1000 && (rs != 1 || rc != 1); i++) {
		if (rc != 1 && (rc = SSL_connect(c->cli)) != 1
		    && !retry(c->cli, rc))
			return -1;
		if (rs != 1 && (rs = SSL_accept(c->srv)) != 1
		    && !retry(c->srv, rs))
			return -1;
	}
	if (rs != 1 || rc != 1)
		return -1;
	if (SSL_write(c->srv, "hi", 2) != 2)
		return -1;
	for (i = 0; i < 1000; i++) {
		int n = SSL_read(c->cli, buf, sizeof(buf));
		if (n == 2)
			return 0;
		if (n <= 0 && !retry(c->cli, n))
			return -1;
	}
	return -1;
}

/* ------------------------------------------------------------------ */
/* Resumption across forked servers, as the listener forks sessions     */

/* Child: serve one connection; exit 10 if resumed, 0 if full, 1 failed. */
static void __attribute__((noreturn)) serve_forked(SSL_CTX *sctx, int fd)
{
	SSL *ssl = SSL_new(sctx);
	char buf[8];

	if (ssl == NULL || SSL_set_fd(ssl, fd) != 1 || SSL_accept(ssl) != 1
	    || SSL_write(ssl, "hi", 2) != 2)
		_exit(1);
	(void)SSL_read(ssl, buf, sizeof(buf)); /* until the client leaves */
	_exit(SSL_session_reused(ssl) ? 10 : 0);
}

/* Returns the child's exit code, or -1; *sessp gets the client session. */
static int
forked_connection(SSL_CTX *sctx, SSL_CTX *cctx, SSL_SESSION *resume,
    SSL_SESSION **sessp, bool *cli_reused)
{
	int sv[2], status, ok = 0;
	char buf[8];
	pid_t pid;
	SSL *cli;

	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) == -1)
		return -1;
	if ((pid = fork()) == -1)
		return -1;
	if (pid == 0) {
		close(sv[1]);
		serve_forked(sctx, sv[0]);
	}
	close(sv[0]);
	if ((cli = SSL_new(cctx)) != NULL && SSL_set_fd(cli, sv[1]) == 1) {
		if (resume != NULL)
			SSL_set_session(cli, resume);
		ok = SSL_connect(cli) == 1
		    && SSL_read(cli, buf, sizeof(buf)) == 2;
		*cli_reused = ok && SSL_session_reused(cli);
		if (ok && sessp != NULL)
			*sessp = SSL_get1_session(cli);
		(void)SSL_shutdown(cli);
	}
	SSL_free(cli);
	close(sv[1]);
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return ok ? WEXITSTATUS(status) : -1;
}

/* ------------------------------------------------------------------ */

static void
test_loading(void)
{
	char err[512];
	SSL_CTX *ctx;
	STACK_OF(X509) *chain = NULL;

	ctx = load("ec.crt", "ec.key", TLS1_2_VERSION, err, sizeof(err));
	ok(ctx != NULL, "an ECDSA P-256 certificate and its key load");
	if (ctx == NULL)
		printf("#   %s\n", err);
	is_int(SSL_CTX_get_min_proto_version(ctx), TLS1_2_VERSION,
	    "min_version 1.2 makes TLS 1.2 the minimum");
	SSL_CTX_free(ctx);

	ctx = load("rsa.crt", "rsa.key", TLS1_3_VERSION, err, sizeof(err));
	ok(ctx != NULL, "an RSA 2048 certificate and its key load");
	is_int(SSL_CTX_get_min_proto_version(ctx), TLS1_3_VERSION,
	    "min_version 1.3 makes TLS 1.3 the minimum");
	SSL_CTX_free(ctx);

	ctx = load(
	    "fullchain.pem", "leaf.key", TLS1_2_VERSION, err, sizeof(err));
	ok(ctx != NULL, "a full chain (leaf then CA) loads with the leaf key");
	if (ctx != NULL)
		(void)SSL_CTX_get0_chain_certs(ctx, &chain);
	is_int(chain != NULL ? sk_X509_num(chain) : -1, 1,
	    "the intermediate after the leaf is sent as the chain");
	SSL_CTX_free(ctx);

	ctx = load("ec.crt", "rsa.key", TLS1_2_VERSION, err, sizeof(err));
	ok(ctx == NULL, "an RSA key for an ECDSA certificate is refused");
	is_str(err, "key does not match certificate",
	    "the mismatch is reported as such");

	ctx = load("ec.crt", "leaf.key", TLS1_2_VERSION, err, sizeof(err));
	ok(ctx == NULL, "another P-256 key for the certificate is refused");
	is_str(err, "key does not match certificate",
	    "same-type mismatch reported the same way");

	ctx = load("garbage.pem", "ec.key", TLS1_2_VERSION, err, sizeof(err));
	ok(ctx == NULL && starts_with(err, "cannot read certificate: "),
	    "a corrupt certificate is refused: %s", err);

	ctx = load("empty.pem", "ec.key", TLS1_2_VERSION, err, sizeof(err));
	is_str(ctx == NULL ? err : "(loaded)",
	    "cannot read certificate: no PEM certificate in the file",
	    "an empty certificate file says so");

	ctx = load("ec.crt", "garbage.pem", TLS1_2_VERSION, err, sizeof(err));
	ok(ctx == NULL && starts_with(err, "cannot read key"),
	    "a file without a key is refused: %s", err);

	ctx = load("ec.crt", "enc.key", TLS1_2_VERSION, err, sizeof(err));
	ok(ctx == NULL && starts_with(err, "cannot read key"),
	    "an encrypted key is refused without asking for a passphrase");

	ctx = load("ec.crt", "ec.key", TLS1_1_VERSION, err, sizeof(err));
	is_str(ctx == NULL ? err : "(loaded)",
	    "minimum TLS version must be 1.2 or 1.3",
	    "TLS 1.1 as a minimum is refused");
	ok(ERR_peek_error() == 0, "failures leave no stale OpenSSL errors");
}

static void
test_handshakes(void)
{
	char err[512], desc[128];
	SSL_CTX *s12, *s13, *c_any, *c_12, *c_rsa_kx;
	SSL_SESSION *sess = NULL;
	struct conn c;
	int r;

	s12 = load("ec.crt", "ec.key", TLS1_2_VERSION, err, sizeof(err));
	s13 = load("ec.crt", "ec.key", TLS1_3_VERSION, err, sizeof(err));
	c_any = client_ctx(0, NULL);
	c_12 = client_ctx(TLS1_2_VERSION, NULL);
	c_rsa_kx = client_ctx(TLS1_2_VERSION, "AES128-GCM-SHA256");
	if (s12 == NULL || s13 == NULL || c_any == NULL || c_12 == NULL
	    || c_rsa_kx == NULL) {
		ok(0, "contexts for the handshake tests");
		return;
	}

	tickets_seen = 0;
	r = connect_pair(&c, s12, c_any, NULL);
	ok(r == 0, "a default client completes a handshake");
	is_str(
	    tls_conn_version(c.srv), "TLSv1.3", "a modern client gets TLS 1.3");
	ok(tls_conn_bits(c.srv) >= 128,
	    "with a cipher of 128 bits or more (%s)", tls_conn_cipher(c.srv));
	is_int(tickets_seen, 1, "the server sends exactly one TLS 1.3 ticket");
	is_str(tls_conn_describe(c.srv, desc, sizeof(desc)),
	    "tls=TLSv1.3 cipher=TLS_AES_128_GCM_SHA256 bits=128 resumed=no",
	    "the log description names version, cipher and resumption");
	sess = SSL_get1_session(c.cli);
	conn_free(&c);

	r = connect_pair(&c, s12, c_any, sess);
	ok(r == 0 && tls_conn_resumed(c.srv) && SSL_session_reused(c.cli),
	    "a second TLS 1.3 connection resumes with the ticket");
	conn_free(&c);
	SSL_SESSION_free(sess);
	sess = NULL;

	r = connect_pair(&c, s12, c_12, NULL);
	ok(r == 0, "a client limited to TLS 1.2 connects when 1.2 is allowed");
	is_str(tls_conn_version(c.srv), "TLSv1.2", "and gets TLS 1.2");
	ok(starts_with(tls_conn_cipher(c.srv), "ECDHE-ECDSA-")
		&& strstr(tls_conn_cipher(c.srv), "GCM") != NULL,
	    "with an ECDHE AEAD cipher (%s)", tls_conn_cipher(c.srv));
	sess = SSL_get1_session(c.cli);
	conn_free(&c);

	r = connect_pair(&c, s12, c_12, sess);
	ok(r == 0 && tls_conn_resumed(c.srv),
	    "a TLS 1.2 client resumes with its session ticket");
	conn_free(&c);
	SSL_SESSION_free(sess);

	r = connect_pair(&c, s13, c_12, NULL);
	ok(r != 0, "a TLS 1.2 client is refused when min_version is 1.3");
	conn_free(&c);

	r = connect_pair(&c, s12, c_rsa_kx, NULL);
	ok(r != 0, "a client offering only RSA key exchange is refused");
	conn_free(&c);
	ERR_clear_error();

	SSL_CTX_free(s12);
	SSL_CTX_free(s13);
	SSL_CTX_free(c_any);
	SSL_CTX_free(c_12);
	SSL_CTX_free(c_rsa_kx);
}

/* The ticket key lives in the listener's context: sessions share it. */
static void
test_forked_resumption(void)
{
	char err[512];
	SSL_CTX *sctx, *cctx, *c12;
	SSL_SESSION *sess = NULL;
	bool reused = false;
	int r;

	sctx = load("rsa.crt", "rsa.key", TLS1_2_VERSION, err, sizeof(err));
	cctx = client_ctx(0, NULL);
	c12 = client_ctx(TLS1_2_VERSION, NULL);
	if (sctx == NULL || cctx == NULL || c12 == NULL) {
		ok(0, "contexts for the forked resumption tests");
		return;
	}
	r = forked_connection(sctx, cctx, NULL, &sess, &reused);
	is_int(r, 0, "a first session process does a full handshake");
	r = forked_connection(sctx, cctx, sess, NULL, &reused);
	is_int(r, 10,
	    "the next session process resumes the first one's TLS 1.3 ticket");
	ok(reused, "and the client sees its session resumed");
	SSL_SESSION_free(sess);
	sess = NULL;

	r = forked_connection(sctx, c12, NULL, &sess, &reused);
	is_int(r, 0, "a TLS 1.2 client: full handshake in one session process");
	r = forked_connection(sctx, c12, sess, NULL, &reused);
	is_int(r, 10, "and resumption in the next one");
	SSL_SESSION_free(sess);
	SSL_CTX_free(sctx);
	SSL_CTX_free(cctx);
	SSL_CTX_free(c12);
}

static void
test_check_files(void)
{
	char err[512];
	int r;

	err[0] = '\0';
	r = tls_check_files(
	    path("fullchain.pem"), path("leaf.key"), err, sizeof(err));
	is_int(r, 0, "msa -n accepts a matching chain and key");
	r = tls_check_files(path("rsa.crt"), path("ec.key"), err, sizeof(err));
	ok(r != 0, "msa -n rejects a key of another certificate");
	is_str(err, "key does not match certificate",
	    "with \"key does not match certificate\"");
	r = tls_check_files(
	    path("missing.crt"), path("ec.key"), err, sizeof(err));
	ok(r != 0 && starts_with(err, "cannot open certificate ")
		&& strstr(err, "No such file or directory") != NULL,
	    "msa -n names a missing certificate: %s", err);
	r = tls_check_files(
	    path("ec.crt"), path("missing.key"), err, sizeof(err));
	ok(r != 0 && starts_with(err, "cannot open key "),
	    "msa -n names a missing key: %s", err);
	r = tls_check_files(
	    path("garbage.pem"), path("ec.key"), err, sizeof(err));
	ok(r != 0 && starts_with(err, "cannot read certificate"),
	    "msa -n rejects a corrupt certificate");
	is_str(tls_error(err, sizeof(err)), "unknown error",
	    "tls_error with nothing queued says so");
}

int
main(void)
{
	tls_prime();
	if (!make_files()) {
		ok(0, "test certificates generated with the openssl CLI");
		cleanup_files();
		return done_testing();
	}
	test_loading();
	test_handshakes();
	test_forked_resumption();
	test_check_files();
	cleanup_files();
	return done_testing();
}

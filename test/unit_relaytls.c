/*
 * unit_relaytls.c - the relay's lazily built TLS client context: when it
 * is released, and the CA bundle loader it is built with.
 */
#include <stdarg.h>
#include <stdlib.h>
#include <unistd.h>

#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "../msa.h"
#include "tap.h"

static char tmpdir[] = "/tmp/unit_relaytls.XXXXXX";

/* A self-signed P-256 certificate named cn, as PEM, appended to f. */
static int
write_cert(FILE *f, const char *cn)
{
	EVP_PKEY *key = EVP_EC_gen("P-256");
	X509 *x = X509_new();
	X509_NAME *name;
	int rc = -1;

	if (key == NULL || x == NULL)
		goto done;
	name = X509_get_subject_name(x);
	if (X509_set_version(x, 2) != 1
	    || ASN1_INTEGER_set(X509_get_serialNumber(x), 1) != 1
	    || X509_gmtime_adj(X509_getm_notBefore(x), 0) == NULL
	    || X509_gmtime_adj(X509_getm_notAfter(x), 3600) == NULL
	    || X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC,
		   (const unsigned char *)cn, -1, -1, 0) != 1
	    || X509_set_issuer_name(x, name) != 1
	    || X509_set_pubkey(x, key) != 1
	    || X509_sign(x, key, EVP_sha256()) == 0
	    || PEM_write_X509(f, x) != 1)
		goto done;
	rc = 0;
done:
	X509_free(x);
	EVP_PKEY_free(key);
	return rc;
}

/* tmpdir/name with text, or with ncerts certificates if text is NULL. */
static const char *
make_file(const char *name, const char *text, int ncerts)
{
	static char path[512];
	FILE *f;
	int i;

	snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
	if ((f = fopen(path, "w")) == NULL)
		return NULL;
	if (text != NULL)
		fputs(text, f);
	for (i = 0; i < ncerts; i++)
		if (write_cert(f, i == 0 ? "unit CA one" : "unit CA two") == -1)
			ok(0, "cannot make a test certificate");
	fclose(f);
	return path;
}

static int
store_count(SSL_CTX *ctx)
{
	return sk_X509_OBJECT_num(
	    X509_STORE_get0_objects(SSL_CTX_get_cert_store(ctx)));
}

static void
test_load_ca(void)
{
	char err[512];
	SSL_CTX *ctx;
	const char *p;

	if ((ctx = relay_client_ctx(err, sizeof(err))) == NULL) {
		ok(0, "relay_client_ctx: %s", err);
		return;
	}
	p = make_file("two.pem", "# a comment before the first block\n", 2);
	is_int(relay_load_ca(ctx, p, err, sizeof(err)), 0,
	    "a bundle of two certificates loads");
	is_int(store_count(ctx), 2, "both certificates are in the store");
	SSL_CTX_free(ctx);

	ctx = relay_client_ctx(err, sizeof(err));
	p = make_file("empty.pem", "", 0);
	is_int(relay_load_ca(ctx, p, err, sizeof(err)), -1,
	    "an empty bundle is refused");
	ok(strstr(err, "no certificate") != NULL,
	    "and the reason says there is no certificate (%s)", err);
	p = make_file("junk.pem", "this is not PEM\n", 0);
	is_int(relay_load_ca(ctx, p, err, sizeof(err)), -1,
	    "a bundle without a PEM block is refused");
	is_int(relay_load_ca(ctx, "/nonexistent/none.pem", err, sizeof(err)),
	    -1, "a missing bundle is refused");
	ok(strstr(err, "cannot open CA bundle /nonexistent/none.pem") != NULL,
	    "and the reason names the file (%s)", err);
	is_int(store_count(ctx), 0, "nothing went into the store meanwhile");
	SSL_CTX_free(ctx);
}

static void
test_release_due(void)
{
	struct relay_slot slots[3];
	time_t last = 100;
	size_t i;

	memset(slots, 0, sizeof(slots));
	for (i = 0; i < 3; i++)
		slots[i].state = RELAY_SLOT_FREE;
	ok(!relay_tls_release_due(slots, 3, &last, 100 + RELAY_TLS_IDLE_SECS - 1),
	    "no worker, but not idle long enough yet: kept");
	ok(relay_tls_release_due(slots, 3, &last, 100 + RELAY_TLS_IDLE_SECS),
	    "no worker for RELAY_TLS_IDLE_SECS: released");
	slots[1].state = RELAY_SLOT_IDLE;
	ok(!relay_tls_release_due(slots, 3, &last, 1000),
	    "a worker idling with a session: kept");
	is_int(last, 1000, "and the idle time counts from now");
	slots[1].state = RELAY_SLOT_BUSY;
	ok(!relay_tls_release_due(slots, 3, &last, 2000),
	    "a busy worker: kept");
	slots[1].state = RELAY_SLOT_FREE;
	ok(!relay_tls_release_due(slots, 3, &last, 2000 + 1),
	    "the last worker just went: kept a while longer");
	ok(relay_tls_release_due(slots, 3, &last, 2000 + RELAY_TLS_IDLE_SECS),
	    "then released");
}

static void
remove_files(void)
{
	static const char *const names[] = { "two.pem", "empty.pem",
		"junk.pem" };
	char path[512];
	size_t i;

	for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		snprintf(path, sizeof(path), "%s/%s", tmpdir, names[i]);
		(void)unlink(path);
	}
	(void)rmdir(tmpdir);
}

int
main(void)
{
	if (mkdtemp(tmpdir) == NULL) {
		perror("mkdtemp");
		return 2;
	}
	log_init(LOG_LVL_ERROR, false, "unit_relaytls");
	test_release_due();
	test_load_ca();
	remove_files();
	return done_testing();
}

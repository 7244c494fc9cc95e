/* bench_tls_inproc.c: the server side's CPU of a resumed TLS 1.3 handshake, in one process (a
 * client and a server SSL over a BIO pair, no sockets, no threads), with the context settings of
 * stream_tls_ctx.c's build_ctx, and with variants of them: what a setting would save, before it
 * is tried in the gateway. Prints one `bench=tls_inproc` line per variant; run it under
 * `valgrind --tool=callgrind` to compare instruction counts (the client's share is the same in
 * every variant). Variants: default; ticket_cb (our ticket key callback with a prefetched
 * AES-256-CBC and HMAC-SHA256 instead of OpenSSL's, which fetches both per ticket); reuse
 * (SSL_clear and the same SSL object for the next connection); late_release (record buffers
 * kept until the handshake is done).
 * Usage: bench_tls_inproc --cert FILE --key FILE [--count N] [--variant NAME] */
#include <openssl/core_names.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { V_DEFAULT, V_TICKET_CB, V_REUSE, V_LATE_RELEASE, V__COUNT };
static const char *const variant_names[V__COUNT] = {"default", "ticket_cb", "reuse",
                                                    "late_release"};

static EVP_CIPHER *ticket_cipher;
static unsigned char ticket_name[16], ticket_aes[32], ticket_hmac[32];
static SSL_SESSION *last_session; /* the client's newest ticket (a ticket is used once) */

static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static int ticket_cb(SSL *s, unsigned char name[16], unsigned char iv[EVP_MAX_IV_LENGTH],
                     EVP_CIPHER_CTX *ctx, EVP_MAC_CTX *hctx, int enc)
{
    (void)s;
    char digest[] = "SHA256";
    OSSL_PARAM p[2] = {OSSL_PARAM_construct_utf8_string(OSSL_MAC_PARAM_DIGEST, digest, 0),
                       OSSL_PARAM_construct_end()};
    if (enc) {
        memcpy(name, ticket_name, 16);
        if (RAND_bytes(iv, 16) <= 0 ||
            !EVP_EncryptInit_ex(ctx, ticket_cipher, NULL, ticket_aes, iv) ||
            !EVP_MAC_init(hctx, ticket_hmac, sizeof(ticket_hmac), p))
            return -1;
        return 1;
    }
    if (memcmp(name, ticket_name, 16) != 0)
        return 0;
    if (!EVP_MAC_init(hctx, ticket_hmac, sizeof(ticket_hmac), p) ||
        !EVP_DecryptInit_ex(ctx, ticket_cipher, NULL, ticket_aes, iv))
        return -1;
    return 2; /* use, and issue a new one (TLS 1.3 clients use a ticket once) */
}

static int new_session(SSL *s, SSL_SESSION *ss)
{
    (void)s;
    SSL_SESSION_free(last_session);
    last_session = ss;
    return 1;
}

/* The server context as build_ctx makes it for a certificate listener. */
static SSL_CTX *server_ctx(int v, const char *cert, const char *key)
{
    SSL_CTX *sc = SSL_CTX_new(TLS_server_method());
    if (!sc)
        return NULL;
    SSL_CTX_set_min_proto_version(sc, TLS1_2_VERSION);
    if (v != V_LATE_RELEASE)
        SSL_CTX_set_mode(sc, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(sc, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(sc, 1);
    SSL_CTX_set_session_id_context(sc, (const unsigned char *)"bench", 5);
    SSL_CTX_set_options(sc, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (SSL_CTX_use_certificate_chain_file(sc, cert) != 1 ||
        SSL_CTX_use_PrivateKey_file(sc, key, SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_set_ciphersuites(sc, "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:"
                                     "TLS_AES_256_GCM_SHA384") != 1) {
        SSL_CTX_free(sc);
        return NULL;
    }
    if (v == V_TICKET_CB) {
        ticket_cipher = EVP_CIPHER_fetch(NULL, "AES-256-CBC", NULL);
        if (!ticket_cipher || RAND_bytes(ticket_name, 16) <= 0 || RAND_bytes(ticket_aes, 32) <= 0 ||
            RAND_bytes(ticket_hmac, 32) <= 0) {
            SSL_CTX_free(sc);
            return NULL;
        }
        SSL_CTX_set_tlsext_ticket_key_evp_cb(sc, ticket_cb);
    }
    return sc;
}

typedef struct figures {
    double hs, setup, teardown; /* server CPU seconds */
    int resumed;
} figures;

/* One connection: handshake, one byte each way, close_notify. i == 0 is the full handshake that
 * gets the first ticket (not counted). */
static bool one(SSL_CTX *sc, SSL_CTX *cc, int v, SSL **keep, figures *f, bool counted)
{
    SSL *c = SSL_new(cc);
    BIO *cb, *sb;
    if (!c || !BIO_new_bio_pair(&cb, 0, &sb, 0))
        return false;
    SSL_set_bio(c, cb, cb);
    SSL_set_connect_state(c);
    if (last_session)
        SSL_set_session(c, last_session);
    double t0 = cpu_now();
    SSL *s = v == V_REUSE && *keep ? *keep : SSL_new(sc);
    *keep = NULL;
    SSL_set_bio(s, sb, sb);
    SSL_set_accept_state(s);
    double t1 = cpu_now();
    char buf[64];
    bool done = false;
    for (int k = 0; k < 10 && !done; k++) {
        int rc = SSL_do_handshake(c);
        double a = cpu_now();
        int rs = SSL_do_handshake(s);
        if (rs == 1 && v == V_LATE_RELEASE)
            SSL_set_mode(s, SSL_MODE_RELEASE_BUFFERS);
        (void)SSL_read(s, buf, sizeof(buf));
        f->hs += counted ? cpu_now() - a : 0;
        done = rc == 1 && rs == 1;
    }
    (void)SSL_read(c, buf, sizeof(buf)); /* the ticket */
    if (!done || SSL_write(c, "x", 1) != 1)
        return false;
    double a = cpu_now();
    bool ok = SSL_read(s, buf, sizeof(buf)) == 1 && SSL_write(s, "y", 1) == 1;
    double b = cpu_now();
    ok = ok && SSL_read(c, buf, sizeof(buf)) == 1;
    if (counted && SSL_session_reused(s))
        f->resumed++;
    SSL_shutdown(c);
    SSL_free(c);
    double d0 = cpu_now();
    SSL_shutdown(s);
    if (v == V_REUSE) {
        SSL_clear(s);
        SSL_set_bio(s, NULL, NULL);
        *keep = s;
    } else {
        SSL_free(s);
    }
    double d1 = cpu_now();
    if (counted) {
        f->hs += b - a;
        f->setup += t1 - t0;
        f->teardown += d1 - d0;
    }
    return ok;
}

int main(int argc, char **argv)
{
    const char *cert = NULL, *key = NULL, *variant = NULL;
    int count = 2000;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--cert"))
            cert = argv[i + 1];
        else if (!strcmp(argv[i], "--key"))
            key = argv[i + 1];
        else if (!strcmp(argv[i], "--count"))
            count = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--variant"))
            variant = argv[i + 1];
    }
    if (!cert || !key || count < 1) {
        fprintf(stderr, "usage: bench_tls_inproc --cert FILE --key FILE [--count N] "
                        "[--variant default|ticket_cb|reuse|late_release]\n");
        return 2;
    }
    int failed = 0;
    for (int v = 0; v < V__COUNT; v++) {
        if (variant && strcmp(variant, variant_names[v]) != 0)
            continue;
        SSL_CTX *sc = server_ctx(v, cert, key), *cc = SSL_CTX_new(TLS_client_method());
        if (!sc || !cc) {
            ERR_print_errors_fp(stderr);
            return 1;
        }
        SSL_CTX_set_session_cache_mode(cc,
                                       SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
        SSL_CTX_sess_set_new_cb(cc, new_session);
        SSL_CTX_set_verify(cc, SSL_VERIFY_NONE, NULL);
        figures f = {0, 0, 0, 0};
        SSL *keep = NULL;
        int ok = 0;
        for (int i = 0; i <= count; i++)
            ok += one(sc, cc, v, &keep, &f, i > 0) && i > 0;
        printf("bench=tls_inproc variant=%s handshakes=%d ok=%d resumed=%d server_cpu_us=%.1f "
               "handshake_us=%.1f ssl_new_us=%.1f ssl_free_us=%.1f\n",
               variant_names[v], count, ok, f.resumed, (f.hs + f.setup + f.teardown) / count * 1e6,
               f.hs / count * 1e6, f.setup / count * 1e6, f.teardown / count * 1e6);
        failed += ok != count;
        SSL_free(keep);
        SSL_SESSION_free(last_session);
        last_session = NULL;
        SSL_CTX_free(sc);
        SSL_CTX_free(cc);
        EVP_CIPHER_free(ticket_cipher);
        ticket_cipher = NULL;
    }
    return failed ? 1 : 0;
}

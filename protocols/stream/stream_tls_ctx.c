/* stream_tls_ctx.c: a TLS listener's side of stream_tls: its "tls" settings (the key table, the
 * checks, errors with file and JSON path), its OpenSSL context built from the files (refcounted:
 * a reload swaps in a fresh one for new handshakes, each SSL object keeps the one it began with;
 * a failed re-read keeps the old; its session ticket keys carried over while ca and crl are
 * unchanged), its handshake token bucket, the TLS metrics and the
 * per-listener certificate expiry gauge. */
#include "stream_tls_internal.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <uv.h>

#include "../../gateway/util/alloc.h"
#include "../../gateway/util/log.h"

GW_TLS_METRICS(GW_METRIC_HANDLE_DEF)
static const gw_metric_def tls_metrics[] = {GW_TLS_METRICS(GW_METRIC_DEF){NULL, NULL, NULL}};

static const char *const client_cert_names[] = {"none", "optional", "required", NULL};
static const char *const version_names[] = {"1.2", "1.3", NULL};
static const char *const identity_names[] = {"cn", "uri", "dns", NULL};

const gw_cfg_field gw_stream_tls_fields[] = {
    {"cert", GW_CFG_STRING, offsetof(gw_stream_tls_cfg, cert), 0, 0, NULL, false,
     .doc = "PEM server certificate chain, leaf first, relative to gateway.json's folder; required "
            "unless `psk`."},
    {"key", GW_CFG_STRING, offsetof(gw_stream_tls_cfg, key), 0, 0, NULL, false,
     .doc = "Private key of `cert` (PEM)."},
    {"ca", GW_CFG_STRING, offsetof(gw_stream_tls_cfg, ca), 0, 0, NULL, false,
     .doc = "PEM CA certificate(s) that sign device certificates."},
    {"crl", GW_CFG_STRING, offsetof(gw_stream_tls_cfg, crl), 0, 0, NULL, false,
     .doc = "PEM CRL of that CA; every client certificate is checked against it."},
    {"client_cert", GW_CFG_ENUM, offsetof(gw_stream_tls_cfg, client_cert), 0, 0, client_cert_names,
     false, GW_CFG_DEF(GW_TLS_CLIENT_NONE),
     .doc = "Ask for a device certificate: `none`, `optional` (verified if sent) or `required`."},
    {"min_version", GW_CFG_ENUM, offsetof(gw_stream_tls_cfg, min_version), 0, 0, version_names,
     false, GW_CFG_DEF(0), .doc = "The oldest TLS version accepted."},
    {"ciphers", GW_CFG_STRING, offsetof(gw_stream_tls_cfg, ciphers), 0, 0, NULL, false,
     .doc = "TLS 1.2 cipher list (OpenSSL syntax); none: OpenSSL's default."},
    {"ciphersuites", GW_CFG_STRING, offsetof(gw_stream_tls_cfg, ciphersuites), 0, 0, NULL, false,
     .doc = "TLS 1.3 cipher suites; none: AES-128-GCM, ChaCha20-Poly1305, AES-256-GCM."},
    {"psk", GW_CFG_BOOL, offsetof(gw_stream_tls_cfg, psk), 0, 0, NULL, false, GW_CFG_DEF(0),
     .doc = "TLS-PSK: identity = the device id, key = the device's secret."},
    {"identity", GW_CFG_ENUM, offsetof(gw_stream_tls_cfg, identity), 0, 0, identity_names, false,
     GW_CFG_DEF(GW_TLS_ID_CN),
     .doc = "Where a client certificate names its device: the subject CN, the first URI SAN (last "
            "segment) or the first DNS SAN."},
    {"handshake_timeout_ms", GW_CFG_UINT32, offsetof(gw_stream_tls_cfg, handshake_timeout_ms), 100,
     600000, NULL, false, GW_CFG_DEF(10000),
     .doc = "A handshake not finished within this many ms closes the connection."},
    {"handshakes_per_second", GW_CFG_UINT32, offsetof(gw_stream_tls_cfg, handshakes_per_second), 0,
     1000000, NULL, false, GW_CFG_DEF(1000),
     .doc = "Handshakes per second for the listener, all loops together; 0: no limit."},
    {NULL, 0, 0, 0, 0, NULL, false},
};

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static gw_stream_tls *registry; /* every TLS listener (the expiry gauge) */

/* ---- contexts ---- */

static void resolve(const gw_stream_tls *t, const char *f, char *out, size_t cap)
{
    if (f[0] == '/' || !t->dir)
        snprintf(out, cap, "%s", f);
    else
        snprintf(out, cap, "%s/%s", t->dir, f);
}

/* The last OpenSSL error as text (cleared). */
static const char *ossl_why(char *buf, size_t cap)
{
    unsigned long e = ERR_peek_last_error();
    if (e)
        ERR_error_string_n(e, buf, cap);
    else
        snprintf(buf, cap, "%s", strerror(errno ? errno : EINVAL));
    ERR_clear_error();
    return buf;
}

static int64_t cert_not_after(SSL_CTX *ctx)
{
    X509 *x = SSL_CTX_get0_certificate(ctx);
    struct tm tm;
    if (!x || !ASN1_TIME_to_tm(X509_get0_notAfter(x), &tm))
        return 0;
    return (int64_t)timegm(&tm);
}

#define DEFAULT_SUITES "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384"

/* A context from t->cfg's files. NULL with *key (the failing key) and why filled. */
static SSL_CTX *build_ctx(gw_stream_tls *t, const char **key, char *why, size_t cap)
{
    const gw_stream_tls_cfg *g = &t->cfg;
    char f[512];
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    *key = "";
    if (!ctx) {
        ossl_why(why, cap);
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, g->min_version ? TLS1_3_VERSION : TLS1_2_VERSION);
    /* memory: record buffers only while there is something in them; no server-side session
     * cache (resumption uses stateless tickets); one ticket per full handshake */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 1);
    SSL_CTX_set_session_id_context(ctx, (const unsigned char *)t->path,
                                   (unsigned)(strlen(t->path) > 32 ? 32 : strlen(t->path)));
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
    if (g->cert) {
        *key = "cert";
        resolve(t, g->cert, f, sizeof(f));
        if (SSL_CTX_use_certificate_chain_file(ctx, f) != 1)
            goto fail;
        *key = "key";
        resolve(t, g->key, f, sizeof(f));
        if (SSL_CTX_use_PrivateKey_file(ctx, f, SSL_FILETYPE_PEM) != 1 ||
            SSL_CTX_check_private_key(ctx) != 1)
            goto fail;
    }
    if (g->ca) {
        *key = "ca";
        resolve(t, g->ca, f, sizeof(f));
        if (SSL_CTX_load_verify_locations(ctx, f, NULL) != 1)
            goto fail;
        STACK_OF(X509_NAME) *names = SSL_load_client_CA_file(f);
        if (names)
            SSL_CTX_set_client_CA_list(ctx, names);
    }
    if (g->crl) {
        *key = "crl";
        resolve(t, g->crl, f, sizeof(f));
        X509_STORE *st = SSL_CTX_get_cert_store(ctx);
        X509_LOOKUP *lk = X509_STORE_add_lookup(st, X509_LOOKUP_file());
        if (!lk || X509_load_crl_file(lk, f, X509_FILETYPE_PEM) <= 0)
            goto fail;
        X509_STORE_set_flags(st, X509_V_FLAG_CRL_CHECK);
    }
    int verify = SSL_VERIFY_NONE;
    if (g->client_cert == GW_TLS_CLIENT_OPTIONAL)
        verify = SSL_VERIFY_PEER;
    else if (g->client_cert == GW_TLS_CLIENT_REQUIRED)
        verify = SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT;
    SSL_CTX_set_verify(ctx, verify, NULL);
    *key = "ciphers";
    if (g->ciphers ? SSL_CTX_set_cipher_list(ctx, g->ciphers) != 1
                   : g->psk && SSL_CTX_set_cipher_list(ctx, "DEFAULT:PSK") != 1)
        goto fail;
    /* TLS 1.3: by default AES-128-GCM first (OpenSSL's own order starts with AES-256-GCM and
     * SHA-384): a smaller key schedule kept per connection (about 190 bytes less per idle
     * session) and a cheaper SHA-256 key schedule per handshake (docs/PERFORMANCE.md, "TLS") */
    *key = "ciphersuites";
    if (SSL_CTX_set_ciphersuites(ctx, g->ciphersuites ? g->ciphersuites : DEFAULT_SUITES) != 1)
        goto fail;
    if (g->psk) {
        SSL_CTX_set_psk_server_callback(ctx, gw__stream_tls_psk_server_cb);
        SSL_CTX_set_psk_find_session_callback(ctx, gw__stream_tls_psk_find_cb);
        SSL_CTX_set_session_ticket_cb(ctx, gw__stream_tls_ticket_gen_cb,
                                      gw__stream_tls_ticket_dec_cb, NULL);
    }
    ERR_clear_error();
    return ctx;
fail:
    ossl_why(why, cap);
    SSL_CTX_free(ctx);
    return NULL;
}

/* ---- session ticket keys across reloads ----
 * A reload builds a new context, and a new context makes new ticket keys: every device's next
 * connection would be a full handshake (and every device change through the API reloads). So
 * the keys of the first context are carried into the next ones, unless the files deciding which
 * client certificates are good (ca, crl) changed: then a ticket could resume a session for a
 * certificate the new CRL revokes, and the keys are renewed. (PSK tickets are checked against
 * the device's current secret when they are decrypted: stream_tls.c.) */

/* SHA-256 of the ca and crl files' bytes; false if one cannot be read. */
static bool trust_digest(const gw_stream_tls *t, unsigned char out[32])
{
    const char *files[2] = {t->cfg.ca, t->cfg.crl};
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    bool ok = md && EVP_DigestInit_ex(md, EVP_sha256(), NULL);
    char f[512], buf[4096];
    for (int i = 0; i < 2 && ok; i++) {
        ok = EVP_DigestUpdate(md, i ? "\1" : "\0", 1);
        if (!files[i] || !ok)
            continue;
        resolve(t, files[i], f, sizeof(f));
        FILE *fp = fopen(f, "rb");
        size_t n;
        ok = fp != NULL;
        while (ok && (n = fread(buf, 1, sizeof(buf), fp)) > 0)
            ok = EVP_DigestUpdate(md, buf, n);
        if (fp) {
            ok = ok && !ferror(fp);
            fclose(fp);
        }
    }
    unsigned int len = 0;
    ok = ok && EVP_DigestFinal_ex(md, out, &len) && len == 32;
    EVP_MD_CTX_free(md);
    return ok;
}

/* A newly built ctx for t: its ticket keys are t's when the trust files are as they were, else
 * they become t's. before: the trust digest taken before ctx was built (ok_before: it was). */
static void ticket_keys(gw_stream_tls *t, SSL_CTX *ctx, const unsigned char before[32],
                        bool ok_before)
{
    unsigned char after[32];
    bool same = ok_before && trust_digest(t, after) && memcmp(before, after, 32) == 0;
    if (t->trusted && same && memcmp(before, t->trust, 32) == 0 &&
        SSL_CTX_set_tlsext_ticket_keys(ctx, t->ticket_keys, sizeof(t->ticket_keys)) == 1)
        return;
    if (SSL_CTX_get_tlsext_ticket_keys(ctx, t->ticket_keys, sizeof(t->ticket_keys)) != 1)
        same = false;
    /* (files that changed while the context was built: the next reload renews the keys again) */
    t->trusted = same;
    memcpy(t->trust, before, 32);
    ERR_clear_error();
}

static void tls_free(gw_stream_tls *t)
{
    if (!t)
        return;
    pthread_mutex_lock(&registry_mu);
    if (t->prev)
        t->prev->next = t->next;
    else if (registry == t)
        registry = t->next;
    if (t->next)
        t->next->prev = t->prev;
    pthread_mutex_unlock(&registry_mu);
    if (t->ctx)
        SSL_CTX_free(t->ctx);
    pthread_mutex_destroy(&t->mu);
    gw_cfg_free(gw_stream_tls_fields, &t->cfg);
    free(t->dir);
    gw_free(GW_AREA_RUNTIME, t);
}

void gw_stream_tls_free_all(gw_stream_tls **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        tls_free(v[i]);
    gw_free(GW_AREA_RUNTIME, v);
}

/* Settings that cannot work together; 1 if reported. */
static int check_cfg(const gw_stream_tls_cfg *g, const char *file, const char *path, gw_diag *diag)
{
    char p[160];
    if (!g->cert && !g->psk) {
        snprintf(p, sizeof(p), "%s.cert", path);
        gw_diag_add(diag, file, p, "missing required key (a server certificate, or \"psk\": true)");
        return 1;
    }
    if ((g->cert == NULL) != (g->key == NULL)) {
        snprintf(p, sizeof(p), "%s.%s", path, g->cert ? "key" : "cert");
        gw_diag_add(diag, file, p, "missing required key (cert and key go together)");
        return 1;
    }
    if (g->client_cert != GW_TLS_CLIENT_NONE && !g->ca) {
        snprintf(p, sizeof(p), "%s.ca", path);
        gw_diag_add(diag, file, p, "missing required key (client_cert \"%s\" verifies with it)",
                    client_cert_names[g->client_cert]);
        return 1;
    }
    if (g->crl && !g->ca) {
        snprintf(p, sizeof(p), "%s.ca", path);
        gw_diag_add(diag, file, p, "missing required key (a crl goes with a ca)");
        return 1;
    }
    if (g->psk && g->min_version == 1 && g->ciphersuites &&
        !strstr(g->ciphersuites, "TLS_AES_128_GCM_SHA256")) {
        snprintf(p, sizeof(p), "%s.ciphersuites", path);
        gw_diag_add(diag, file, p, "TLS 1.3 PSK needs TLS_AES_128_GCM_SHA256");
        return 1;
    }
    return 0;
}

static int setup_one(const json_t *obj, const gw_listen *li, const char *adapter,
                     const gw_config *gcfg, const char *path, gw_diag *diag, gw_stream_tls **out)
{
    gw_stream_tls *t = gw_calloc(GW_AREA_RUNTIME, 1, sizeof(*t));
    if (!t)
        return -1;
    pthread_mutex_init(&t->mu, NULL);
    *out = t;
    snprintf(t->adapter, sizeof(t->adapter), "%s", adapter);
    snprintf(t->address, sizeof(t->address), "%s", li->address);
    snprintf(t->path, sizeof(t->path), "%s", path);
    t->port = li->port;
    t->dir = gcfg->dir ? strdup(gcfg->dir) : NULL;
    int errors = gw_cfg_parse(gw_stream_tls_fields, obj, &t->cfg, gcfg->file, path, diag);
    if (errors || check_cfg(&t->cfg, gcfg->file, path, diag))
        return errors ? errors : 1;
    const char *key;
    char why[256], p[160];
    unsigned char trust[32];
    bool trust_ok = trust_digest(t, trust);
    if (!(t->ctx = build_ctx(t, &key, why, sizeof(why)))) {
        snprintf(p, sizeof(p), "%s%s%s", path, *key ? "." : "", key);
        gw_diag_add(diag, gcfg->file, p, "TLS: %s", why);
        return 1;
    }
    ticket_keys(t, t->ctx, trust, trust_ok);
    t->not_after = cert_not_after(t->ctx);
    t->tokens = t->cfg.handshakes_per_second;
    t->bucket_ms = uv_hrtime() / 1000000;
    pthread_mutex_lock(&registry_mu);
    t->next = registry;
    if (registry)
        registry->prev = t;
    registry = t;
    pthread_mutex_unlock(&registry_mu);
    return 0;
}

static size_t render_expiry(char *buf, size_t cap);

int gw_stream_tls_setup(const json_t *section, const char *key, const gw_listen_list *ls,
                        const char *adapter, const gw_config *gcfg, gw_diag *diag,
                        gw_stream_tls ***out)
{
    static bool hooked;
    bool inited = gw__stream_tls_init();
    gw_metrics_register(tls_metrics);
    if (!hooked) {
        hooked = true;
        gw_metrics_add_renderer(render_expiry);
    }
    *out = gw_calloc(GW_AREA_RUNTIME, ls->n ? ls->n : 1, sizeof(gw_stream_tls *));
    if (!*out || !inited)
        return -1;
    const json_t *arr = json_object_get(section, key);
    int errors = 0;
    char path[96];
    for (size_t i = 0; i < ls->n; i++) {
        const json_t *obj = json_object_get(json_array_get(arr, i), "tls");
        if (!obj)
            continue;
        snprintf(path, sizeof(path), "adapters.%s.%s[%zu].tls", adapter, key, i);
        int rc = setup_one(obj, &ls->v[i], adapter, gcfg, path, diag, &(*out)[i]);
        if (rc < 0)
            return -1;
        errors += rc;
    }
    return errors;
}

void gw_stream_tls_set_port(gw_stream_tls *t, uint16_t port)
{
    pthread_mutex_lock(&registry_mu);
    t->port = port;
    pthread_mutex_unlock(&registry_mu);
}

void gw_stream_tls_reload(gw_stream_tls **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++) {
        gw_stream_tls *t = v[i];
        if (!t)
            continue;
        const char *key;
        char why[256], q[300];
        unsigned char trust[32];
        bool trust_ok = trust_digest(t, trust);
        SSL_CTX *ctx = build_ctx(t, &key, why, sizeof(why));
        if (ctx)
            ticket_keys(t, ctx, trust, trust_ok);
        if (!ctx) {
            gw_metric_inc(GW_M_TLS_RELOAD_ERRORS);
            GW_LOG_ERROR("tls", NULL, NULL, "TLS files not reloaded: the old ones stay in use",
                         "listener=%s key=%s error=%s", t->path, key,
                         gw_log_quote(q, sizeof(q), why));
            continue;
        }
        int64_t na = cert_not_after(ctx);
        pthread_mutex_lock(&t->mu);
        SSL_CTX *old = t->ctx;
        t->ctx = ctx;
        pthread_mutex_unlock(&t->mu);
        pthread_mutex_lock(&registry_mu);
        t->not_after = na;
        pthread_mutex_unlock(&registry_mu);
        SSL_CTX_free(old); /* established sessions hold their own reference */
        gw_metric_inc(GW_M_TLS_RELOADS);
        GW_LOG_INFO("tls", NULL, NULL, "TLS files reloaded", "listener=%s", t->path);
    }
}

/* iotgw_tls_cert_expiry_seconds{listener="mqtt:0.0.0.0:8883"}: seconds until the server
 * certificate expires (negative once expired). */
static size_t render_expiry(char *buf, size_t cap)
{
    size_t n = 0;
    int64_t now = (int64_t)time(NULL);
    pthread_mutex_lock(&registry_mu);
    bool head = false;
    for (gw_stream_tls *t = registry; t; t = t->next) {
        if (!t->not_after)
            continue;
        if (!head && n < cap) {
            n += (size_t)snprintf(buf + n, cap - n,
                                  "# HELP iotgw_tls_cert_expiry_seconds seconds until a TLS "
                                  "listener's server certificate expires\n"
                                  "# TYPE iotgw_tls_cert_expiry_seconds gauge\n");
            head = true;
        }
        if (n < cap)
            n += (size_t)snprintf(buf + n, cap - n,
                                  "iotgw_tls_cert_expiry_seconds{listener=\"%s:%s:%u\"} %lld\n",
                                  t->adapter, t->address, t->port, (long long)(t->not_after - now));
    }
    pthread_mutex_unlock(&registry_mu);
    return n < cap ? n : cap;
}

bool gw__stream_tls_admit(gw_stream_tls *t)
{
    uint32_t rate = t->cfg.handshakes_per_second;
    if (!rate)
        return true;
    uint64_t now = uv_hrtime() / 1000000;
    bool ok;
    pthread_mutex_lock(&t->mu);
    t->tokens += (double)(now - t->bucket_ms) * rate / 1000.0;
    if (t->tokens > rate)
        t->tokens = rate;
    t->bucket_ms = now;
    ok = t->tokens >= 1.0;
    if (ok)
        t->tokens -= 1.0;
    pthread_mutex_unlock(&t->mu);
    if (!ok)
        gw_metric_inc(GW_M_TLS_LIMITED);
    return ok;
}

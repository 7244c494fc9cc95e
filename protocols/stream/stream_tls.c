/* stream_tls.c: TLS on byte-stream listeners (MQTT, TCP), on OpenSSL without a thread and without
 * a blocking call: each connection's SSL object talks through a BIO over memory (the ciphertext
 * libuv just read, and a per-loop scratch its output goes to before libuv writes it), on the
 * connection's loop. Owns a listener's "tls" settings, its refcounted context (a reload builds a
 * fresh one for new handshakes; an SSL object holds a reference to the one it began with), the
 * handshake deadline, the listener's handshake token bucket, failure reasons and their metrics,
 * the device identity of a client certificate (CN, URI or DNS name) or of a PSK (TLS 1.2 and 1.3:
 * identity = device id, key = its secret), and the per-listener certificate expiry gauge. */
#include "stream_tls.h"

#include <errno.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <pthread.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "../../gateway/util/alloc.h"
#include "../../gateway/util/error.h"
#include "../../gateway/util/log.h"
#include "../../gateway/util/metrics.h"
#include "stream_internal.h"

#define PLAIN_CAP 16384 /* one TLS record's plaintext at most */
#define ID_CAP    64

/* X(handle, "name", "help") */
#define GW_TLS_METRICS(X)                                                                          \
    X(GW_M_TLS_FULL, "tls_handshakes_total{kind=\"full\"}",                                        \
      "TLS handshakes completed on MQTT/TCP listeners: full, or resumed from a session ticket")    \
    X(GW_M_TLS_RESUMED, "tls_handshakes_total{kind=\"resumed\"}", NULL)                            \
    X(GW_M_TLS_FAIL_TIMEOUT, "tls_handshake_failures_total{reason=\"timeout\"}",                   \
      "TLS handshakes that failed, by reason")                                                     \
    X(GW_M_TLS_FAIL_NOT_TLS, "tls_handshake_failures_total{reason=\"not_tls\"}", NULL)             \
    X(GW_M_TLS_FAIL_CERT, "tls_handshake_failures_total{reason=\"certificate\"}", NULL)            \
    X(GW_M_TLS_FAIL_NO_CERT, "tls_handshake_failures_total{reason=\"no_certificate\"}", NULL)      \
    X(GW_M_TLS_FAIL_PSK, "tls_handshake_failures_total{reason=\"psk\"}", NULL)                     \
    X(GW_M_TLS_FAIL_PROTOCOL, "tls_handshake_failures_total{reason=\"protocol\"}", NULL)           \
    X(GW_M_TLS_FAIL_CLOSED, "tls_handshake_failures_total{reason=\"closed\"}", NULL)               \
    X(GW_M_TLS_LIMITED, "tls_handshakes_limited_total",                                            \
      "TLS connections refused by a listener's handshakes_per_second")                             \
    X(GW_M_TLS_SESSIONS, "tls_sessions", "established TLS sessions on MQTT/TCP listeners (gauge)") \
    X(GW_M_TLS_RELOADS, "tls_reloads_total", "TLS contexts rebuilt from their files by a reload")  \
    X(GW_M_TLS_RELOAD_ERRORS, "tls_reload_errors_total",                                           \
      "TLS contexts a reload could not rebuild (the old one stays)")

GW_TLS_METRICS(GW_METRIC_HANDLE_DECL)
GW_TLS_METRICS(GW_METRIC_HANDLE_DEF)
static const gw_metric_def tls_metrics[] = {GW_TLS_METRICS(GW_METRIC_DEF){NULL, NULL, NULL}};

static const char *const client_cert_names[] = {"none", "optional", "required", NULL};
static const char *const version_names[] = {"1.2", "1.3", NULL};
static const char *const identity_names[] = {"cn", "uri", "dns", NULL};

const gw_cfg_field gw_stream_tls_fields[] = {
    {"cert", GW_CFG_STRING, offsetof(gw_stream_tls_cfg, cert), 0, 0, NULL, false},
    {"key", GW_CFG_STRING, offsetof(gw_stream_tls_cfg, key), 0, 0, NULL, false},
    {"ca", GW_CFG_STRING, offsetof(gw_stream_tls_cfg, ca), 0, 0, NULL, false},
    {"crl", GW_CFG_STRING, offsetof(gw_stream_tls_cfg, crl), 0, 0, NULL, false},
    {"client_cert", GW_CFG_ENUM, offsetof(gw_stream_tls_cfg, client_cert), 0, 0, client_cert_names,
     false, GW_CFG_DEF(GW_TLS_CLIENT_NONE)},
    {"min_version", GW_CFG_ENUM, offsetof(gw_stream_tls_cfg, min_version), 0, 0, version_names,
     false, GW_CFG_DEF(0)},
    {"ciphers", GW_CFG_STRING, offsetof(gw_stream_tls_cfg, ciphers), 0, 0, NULL, false},
    {"ciphersuites", GW_CFG_STRING, offsetof(gw_stream_tls_cfg, ciphersuites), 0, 0, NULL, false},
    {"psk", GW_CFG_BOOL, offsetof(gw_stream_tls_cfg, psk), 0, 0, NULL, false, GW_CFG_DEF(0)},
    {"identity", GW_CFG_ENUM, offsetof(gw_stream_tls_cfg, identity), 0, 0, identity_names, false,
     GW_CFG_DEF(GW_TLS_ID_CN)},
    {"handshake_timeout_ms", GW_CFG_UINT32, offsetof(gw_stream_tls_cfg, handshake_timeout_ms), 100,
     600000, NULL, false, GW_CFG_DEF(10000)},
    {"handshakes_per_second", GW_CFG_UINT32, offsetof(gw_stream_tls_cfg, handshakes_per_second), 0,
     1000000, NULL, false, GW_CFG_DEF(1000)},
    {NULL, 0, 0, 0, 0, NULL, false},
};

struct gw_stream_tls {
    gw_stream_tls_cfg cfg;
    char *dir; /* gateway.json's folder (relative file names) */
    char adapter[16], address[64], path[96];
    uint16_t port;
    pthread_mutex_t mu; /* ctx, the bucket */
    SSL_CTX *ctx;       /* for new handshakes (each SSL object holds its own reference) */
    double tokens;
    uint64_t bucket_ms;
    int64_t not_after;          /* the server certificate's expiry (unix s); 0: none */
    gw_stream_tls *next, *prev; /* every TLS listener (the expiry gauge) */
};

struct gw__stream_tls_conn {
    SSL *ssl;
    const uint8_t *src; /* ciphertext not yet taken by OpenSSL */
    size_t src_len;
    bool established, saw_input, first_not_tls, psk_offered, psk_unknown;
    uint8_t by;      /* GW_TLS_BY_* */
    uint8_t id_mode; /* the listener's identity (GW_TLS_ID_*) */
    char id[ID_CAP];
};

static pthread_mutex_t registry_mu = PTHREAD_MUTEX_INITIALIZER;
static gw_stream_tls *registry;
static BIO_METHOD *bio_method;
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int ex_conn = -1;

static gw__stream_tls_conn *tc_of(const gw_stream_conn *c)
{
    return c->tls;
}

/* ---- the memory BIO: reads the ciphertext being fed, writes into the loop's scratch ---- */

static int bio_read(BIO *b, char *buf, size_t len, size_t *got)
{
    gw_stream_conn *c = BIO_get_data(b);
    gw__stream_tls_conn *t = c->tls;
    BIO_clear_retry_flags(b);
    if (!t->src_len) {
        BIO_set_retry_read(b);
        *got = 0;
        return 0;
    }
    size_t n = len < t->src_len ? len : t->src_len;
    memcpy(buf, t->src, n);
    t->src += n;
    t->src_len -= n;
    *got = n;
    return 1;
}

static int bio_write(BIO *b, const char *buf, size_t len, size_t *put)
{
    gw_stream_conn *c = BIO_get_data(b);
    gw_stream_loop *sl = c->sl;
    BIO_clear_retry_flags(b);
    if (sl->tls_out_len + len > sl->tls_out_cap) {
        size_t cap = sl->tls_out_cap ? sl->tls_out_cap : 16384;
        while (cap < sl->tls_out_len + len)
            cap *= 2;
        uint8_t *n = gw_realloc(GW_AREA_OUTPUT, sl->tls_out, cap);
        if (!n)
            return 0;
        sl->tls_out = n;
        sl->tls_out_cap = cap;
    }
    memcpy(sl->tls_out + sl->tls_out_len, buf, len);
    sl->tls_out_len += len;
    *put = len;
    return 1;
}

static long bio_ctrl(BIO *b, int cmd, long num, void *ptr)
{
    (void)num;
    (void)ptr;
    gw_stream_conn *c = BIO_get_data(b);
    switch (cmd) {
    case BIO_CTRL_FLUSH:
        return 1;
    case BIO_CTRL_PENDING:
        return c && c->tls ? (long)c->tls->src_len : 0;
    default:
        return 0;
    }
}

static int bio_create(BIO *b)
{
    BIO_set_init(b, 1);
    return 1;
}

static void init_once(void)
{
    bio_method = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "iotgw stream");
    if (bio_method) {
        BIO_meth_set_read_ex(bio_method, bio_read);
        BIO_meth_set_write_ex(bio_method, bio_write);
        BIO_meth_set_ctrl(bio_method, bio_ctrl);
        BIO_meth_set_create(bio_method, bio_create);
    }
    ex_conn = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

/* ---- identity ---- */

int gw_stream_tls_uri_id(const char *uri, size_t len, char *out, size_t cap)
{
    size_t start = 0;
    for (size_t i = 0; i < len; i++) {
        if (uri[i] == 0)
            return -1;
        if (uri[i] == '/' || uri[i] == ':')
            start = i + 1;
    }
    size_t n = len - start;
    if (n == 0 || n >= cap)
        return -1;
    memcpy(out, uri + start, n);
    out[n] = 0;
    return (int)n;
}

/* The device id a verified client certificate names (cfg->identity); false if none. */
static bool cert_identity(X509 *x, int mode, char *out, size_t cap)
{
    if (mode == GW_TLS_ID_CN) {
        X509_NAME *nm = X509_get_subject_name(x);
        int at = nm ? X509_NAME_get_index_by_NID(nm, NID_commonName, -1) : -1;
        if (at < 0)
            return false;
        const ASN1_STRING *s = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(nm, at));
        int n = ASN1_STRING_length(s);
        if (n <= 0 || (size_t)n >= cap || memchr(ASN1_STRING_get0_data(s), 0, (size_t)n))
            return false;
        memcpy(out, ASN1_STRING_get0_data(s), (size_t)n);
        out[n] = 0;
        return true;
    }
    GENERAL_NAMES *names = X509_get_ext_d2i(x, NID_subject_alt_name, NULL, NULL);
    bool found = false;
    for (int i = 0; names && i < sk_GENERAL_NAME_num(names) && !found; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(names, i);
        int n;
        if (mode == GW_TLS_ID_URI && g->type == GEN_URI) {
            n = ASN1_STRING_length(g->d.uniformResourceIdentifier);
            found = gw_stream_tls_uri_id(
                        (const char *)ASN1_STRING_get0_data(g->d.uniformResourceIdentifier),
                        (size_t)n, out, cap) > 0;
        } else if (mode == GW_TLS_ID_DNS && g->type == GEN_DNS) {
            n = ASN1_STRING_length(g->d.dNSName);
            const unsigned char *p = ASN1_STRING_get0_data(g->d.dNSName);
            if (n > 0 && (size_t)n < cap && !memchr(p, 0, (size_t)n)) {
                memcpy(out, p, (size_t)n);
                out[n] = 0;
                found = true;
            }
        }
    }
    GENERAL_NAMES_free(names);
    return found;
}

const char *gw_stream_tls_identity(const gw_stream_conn *c, int *by)
{
    const gw__stream_tls_conn *t = tc_of(c);
    if (!t || !t->established || t->by == GW_TLS_BY_NONE) {
        if (by)
            *by = GW_TLS_BY_NONE;
        return NULL;
    }
    if (by)
        *by = t->by;
    return t->id;
}

/* ---- PSK: identity = device id, key = the device's secret ---- */

static const gw_device *psk_device(SSL *ssl, const char *id, size_t len)
{
    gw_stream_conn *c = SSL_get_ex_data(ssl, ex_conn);
    if (!c || len == 0 || len >= ID_CAP)
        return NULL;
    const gw_device *dev = gw_config_device_n(c->sl->loop->cfg, id, len);
    if (!dev || !dev->product->protocol ||
        strcmp(dev->product->protocol, c->sl->ops->session.area) != 0 || !dev->secret[0] ||
        strlen(dev->secret) > PSK_MAX_PSK_LEN)
        return NULL;
    return dev;
}

static void psk_note(SSL *ssl, const char *id, size_t len, bool known)
{
    gw_stream_conn *c = SSL_get_ex_data(ssl, ex_conn);
    gw__stream_tls_conn *t = c ? c->tls : NULL;
    if (!t)
        return;
    t->psk_offered = true;
    t->psk_unknown = !known;
    if (known) {
        memcpy(t->id, id, len);
        t->id[len] = 0;
    }
}

/* TLS 1.2 */
static unsigned int psk_server_cb(SSL *ssl, const char *identity, unsigned char *psk,
                                  unsigned int max)
{
    size_t len = identity ? strlen(identity) : 0;
    const gw_device *dev = psk_device(ssl, identity, len);
    psk_note(ssl, identity, len, dev != NULL);
    if (!dev)
        return 0;
    size_t n = strlen(dev->secret);
    if (n > max)
        return 0;
    memcpy(psk, dev->secret, n);
    return (unsigned int)n;
}

/* TLS 1.3: an external PSK as a session for TLS_AES_128_GCM_SHA256 (the suite whose hash,
 * SHA-256, clients such as openssl s_client -psk use by default). */
static int psk_find_cb(SSL *ssl, const unsigned char *identity, size_t len, SSL_SESSION **sess)
{
    static const unsigned char aes128gcm[2] = {0x13, 0x01};
    *sess = NULL;
    const gw_device *dev = psk_device(ssl, (const char *)identity, len);
    psk_note(ssl, (const char *)identity, len, dev != NULL);
    if (!dev)
        return 1; /* go on without a PSK (certificates, if any) */
    const SSL_CIPHER *cipher = SSL_CIPHER_find(ssl, aes128gcm);
    SSL_SESSION *s = cipher ? SSL_SESSION_new() : NULL;
    if (!s ||
        !SSL_SESSION_set1_master_key(s, (const unsigned char *)dev->secret, strlen(dev->secret)) ||
        !SSL_SESSION_set_cipher(s, cipher) ||
        !SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION)) {
        SSL_SESSION_free(s);
        return 0;
    }
    *sess = s;
    return 1;
}

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
    *key = "ciphersuites";
    if (g->ciphersuites && SSL_CTX_set_ciphersuites(ctx, g->ciphersuites) != 1)
        goto fail;
    if (g->psk) {
        SSL_CTX_set_psk_server_callback(ctx, psk_server_cb);
        SSL_CTX_set_psk_find_session_callback(ctx, psk_find_cb);
    }
    ERR_clear_error();
    return ctx;
fail:
    ossl_why(why, cap);
    SSL_CTX_free(ctx);
    return NULL;
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
    if (!(t->ctx = build_ctx(t, &key, why, sizeof(why)))) {
        snprintf(p, sizeof(p), "%s%s%s", path, *key ? "." : "", key);
        gw_diag_add(diag, gcfg->file, p, "TLS: %s", why);
        return 1;
    }
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
    pthread_once(&once, init_once);
    gw_metrics_register(tls_metrics);
    if (!hooked) {
        hooked = true;
        gw_metrics_add_renderer(render_expiry);
    }
    *out = gw_calloc(GW_AREA_RUNTIME, ls->n ? ls->n : 1, sizeof(gw_stream_tls *));
    if (!*out || !bio_method)
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
        SSL_CTX *ctx = build_ctx(t, &key, why, sizeof(why));
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

/* ---- connections ---- */

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

int gw__stream_tls_open(gw_stream_conn *c, gw_stream_tls *t)
{
    gw__stream_tls_conn *tc = gw_calloc(GW_AREA_SESSION, 1, sizeof(*tc));
    if (!tc)
        return GW_ENOMEM;
    pthread_mutex_lock(&t->mu);
    SSL *ssl = SSL_new(t->ctx);
    pthread_mutex_unlock(&t->mu);
    BIO *b = ssl ? BIO_new(bio_method) : NULL;
    if (!b) {
        if (ssl)
            SSL_free(ssl);
        ERR_clear_error();
        gw_free(GW_AREA_SESSION, tc);
        return GW_ENOMEM;
    }
    BIO_set_data(b, c);
    SSL_set_bio(ssl, b, b);
    SSL_set_ex_data(ssl, ex_conn, c);
    SSL_set_accept_state(ssl);
    tc->ssl = ssl;
    c->tls = tc;
    tc->id_mode = (uint8_t)t->cfg.identity;
    c->deadline = uv_now(&c->sl->loop->uv) + t->cfg.handshake_timeout_ms;
    return 0;
}

void gw__stream_tls_free(gw_stream_conn *c)
{
    gw__stream_tls_conn *t = c->tls;
    if (!t)
        return;
    if (t->established)
        gw_metric_add(GW_M_TLS_SESSIONS, -1);
    SSL_free(t->ssl);
    gw_free(GW_AREA_SESSION, t);
    c->tls = NULL;
}

bool gw__stream_tls_ready(const gw_stream_conn *c)
{
    return c->tls && c->tls->established;
}

/* Writes what OpenSSL put in the loop's scratch (handshake flights, alerts, tickets). */
static void send_pending(gw_stream_conn *c)
{
    gw_stream_loop *sl = c->sl;
    if (sl->tls_out_len) {
        size_t n = sl->tls_out_len;
        sl->tls_out_len = 0;
        gw__stream_write(c, sl->tls_out, n);
    }
}

static void fail(gw_stream_conn *c, gw_metric m, const char *reason, const char *detail, bool auth)
{
    char q[300];
    gw_metric_inc(m);
    if (auth)
        gw_stream_auth_failed(c);
    GW_STREAM_LOG(GW_LOG_WARN, c, "TLS handshake failed", "reason=%s detail=%s", reason,
                  gw_log_quote(q, sizeof(q), detail ? detail : ""));
    send_pending(c); /* the alert, if any */
    gw_stream_close(c, "refused", false);
}

/* The handshake ended in error e: why, counted and logged; closes. */
static void handshake_failed(gw_stream_conn *c, int e)
{
    gw__stream_tls_conn *t = c->tls;
    char why[256];
    unsigned long oe = ERR_peek_error();
    if (oe)
        ERR_error_string_n(oe, why, sizeof(why));
    else
        snprintf(why, sizeof(why), "%s", e == SSL_ERROR_ZERO_RETURN ? "closed" : "protocol");
    ERR_clear_error();
    long vr = SSL_get_verify_result(t->ssl);
    if (t->first_not_tls) {
        fail(c, GW_M_TLS_FAIL_NOT_TLS, "not_tls", "the first bytes are not a TLS record", false);
    } else if (vr != X509_V_OK) {
        fail(c, GW_M_TLS_FAIL_CERT, "certificate", X509_verify_cert_error_string(vr), true);
    } else if (ERR_GET_REASON(oe) == SSL_R_PEER_DID_NOT_RETURN_A_CERTIFICATE) {
        fail(c, GW_M_TLS_FAIL_NO_CERT, "no_certificate", why, true);
    } else if (t->psk_offered) {
        fail(c, GW_M_TLS_FAIL_PSK, "psk", t->psk_unknown ? "unknown PSK identity" : why, true);
    } else {
        fail(c, GW_M_TLS_FAIL_PROTOCOL, "protocol", why, false);
    }
}

/* Handshake done: the identity, the counters, then the adapter sees the connection. */
static void established(gw_stream_conn *c)
{
    gw__stream_tls_conn *t = c->tls;
    t->established = true;
    gw_metric_inc(SSL_session_reused(t->ssl) ? GW_M_TLS_RESUMED : GW_M_TLS_FULL);
    gw_metric_inc(GW_M_TLS_SESSIONS);
    X509 *peer = SSL_get0_peer_certificate(t->ssl);
    if (peer && SSL_get_verify_result(t->ssl) == X509_V_OK &&
        cert_identity(peer, t->id_mode, t->id, sizeof(t->id))) {
        t->by = GW_TLS_BY_CERT;
    } else if (t->psk_offered) {
        if (!t->psk_unknown && t->id[0]) /* the callback found the device and the key held */
            t->by = GW_TLS_BY_PSK;
        else
            t->id[0] = 0;
    } else if (SSL_session_reused(t->ssl)) { /* a resumed PSK session: its identity, checked */
        const char *pid = SSL_get_psk_identity(t->ssl);
        t->id[0] = 0;
        if (pid && psk_device(t->ssl, pid, strlen(pid))) {
            snprintf(t->id, sizeof(t->id), "%s", pid);
            t->by = GW_TLS_BY_PSK;
        }
    } else {
        t->id[0] = 0;
    }
    GW_STREAM_LOG(GW_LOG_DEBUG, c, "TLS session established",
                  "version=%s cipher=%s resumed=%d identity=%s", SSL_get_version(t->ssl),
                  SSL_get_cipher_name(t->ssl), SSL_session_reused(t->ssl),
                  t->by == GW_TLS_BY_CERT  ? "certificate"
                  : t->by == GW_TLS_BY_PSK ? "psk"
                                           : "none");
    gw__stream_opened(c);
}

void gw__stream_tls_input(gw_stream_conn *c, const uint8_t *buf, size_t n)
{
    gw__stream_tls_conn *t = c->tls;
    gw_stream_loop *sl = c->sl;
    if (!t->saw_input) {
        t->saw_input = true;
        t->first_not_tls = buf[0] != 22; /* a handshake record */
    }
    t->src = buf;
    t->src_len = n;
    if (!t->established) {
        ERR_clear_error();
        int rc = SSL_do_handshake(t->ssl);
        if (rc != 1) {
            int e = SSL_get_error(t->ssl, rc);
            if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
                send_pending(c);
                t->src_len = 0;
                return;
            }
            handshake_failed(c, e);
            t->src_len = 0;
            return;
        }
        send_pending(c);
        established(c);
        if (c->state == GW_STREAM_CLOSING) {
            t->src_len = 0;
            return;
        }
    }
    if (!sl->tls_plain && !(sl->tls_plain = gw_malloc(GW_AREA_SESSION, PLAIN_CAP))) {
        gw_stream_close(c, "out_of_memory", false);
        return;
    }
    for (;;) {
        int k = SSL_read(t->ssl, sl->tls_plain, PLAIN_CAP);
        /* what OpenSSL wrote meanwhile (a KeyUpdate answer, an alert) goes to this connection
         * now: the scratch is the loop's, and the adapter may write to others */
        send_pending(c);
        if (c->state == GW_STREAM_CLOSING)
            break;
        if (k > 0) {
            gw__stream_feed(c, sl->tls_plain, (size_t)k);
            if (c->state == GW_STREAM_CLOSING)
                break;
            continue;
        }
        int e = SSL_get_error(t->ssl, k);
        if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) {
            ERR_clear_error();
            break;
        }
        char why[160];
        unsigned long oe = ERR_peek_error();
        if (oe)
            ERR_error_string_n(oe, why, sizeof(why));
        ERR_clear_error();
        if (e == SSL_ERROR_ZERO_RETURN) {
            GW_STREAM_LOG(GW_LOG_DEBUG, c, "peer closed (TLS close_notify)", NULL);
        } else {
            char q[200];
            GW_STREAM_LOG(GW_LOG_INFO, c, "TLS error; closing", "error=%s",
                          gw_log_quote(q, sizeof(q), oe ? why : "protocol"));
        }
        send_pending(c);
        gw_stream_close(c, "connection_lost", true);
        break;
    }
    t->src_len = 0;
    if (c->state != GW_STREAM_CLOSING)
        send_pending(c); /* e.g. a KeyUpdate answer */
}

int gw__stream_tls_encrypt(gw_stream_conn *c, const uint8_t **p, size_t *n)
{
    gw__stream_tls_conn *t = c->tls;
    gw_stream_loop *sl = c->sl;
    /* (the scratch is empty here: every SSL call on any connection is followed by its
     * send_pending, so nothing of another connection is in it) */
    if (!t->established) { /* nothing goes before the handshake */
        *p = NULL;
        *n = 0;
        sl->tls_out_len = 0;
        return 0;
    }
    int rc = SSL_write(t->ssl, c->out, (int)c->out_len);
    if (rc <= 0) {
        ERR_clear_error();
        sl->tls_out_len = 0;
        return GW_ENOMEM;
    }
    *p = sl->tls_out;
    *n = sl->tls_out_len;
    return 0;
}

void gw__stream_tls_expired(gw_stream_conn *c)
{
    gw__stream_tls_conn *t = c->tls;
    fail(c, GW_M_TLS_FAIL_TIMEOUT, "timeout",
         t->saw_input ? "handshake not finished in time" : "no ClientHello in time", false);
}

void gw__stream_tls_eof(gw_stream_conn *c)
{
    gw__stream_tls_conn *t = c->tls;
    if (!t || t->established)
        return;
    gw_metric_inc(GW_M_TLS_FAIL_CLOSED);
    GW_STREAM_LOG(GW_LOG_DEBUG, c, "TLS handshake failed", "reason=closed detail=%s",
                  t->saw_input ? "\"peer closed during the handshake\"" : "\"no ClientHello\"");
}

void gw__stream_tls_shutdown(gw_stream_conn *c)
{
    gw__stream_tls_conn *t = c->tls;
    if (!t || !t->established || uv_is_closing((uv_handle_t *)&c->tcp))
        return;
    c->sl->tls_out_len = 0;
    if (SSL_shutdown(t->ssl) < 0)
        ERR_clear_error();
    send_pending(c);
}

/* stream_tls.c: TLS on byte-stream connections (MQTT, TCP), on OpenSSL without a thread and
 * without a blocking call: each connection's SSL object talks through a BIO over memory (the
 * ciphertext libuv just read, and a per-loop scratch its output goes to before libuv writes it;
 * one BIO per loop, shared by its connections), on the connection's loop. Owns the handshake
 * (deadline, failure reasons, counted and logged), the device identity of a client certificate
 * (CN, URI or DNS name) or of a PSK (TLS 1.2 and 1.3: identity = device id, key = its secret; PSK
 * session tickets bound to the secret), decryption into the adapter's parser, encryption of its
 * output, and close_notify. The listener's side (settings, contexts): stream_tls_ctx.c. */
#include "stream_tls_internal.h"

#include <errno.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
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

_Static_assert(sizeof(gw__stream_tls_conn) <= 48, "a connection's TLS state fits a 64-byte chunk");

#define PLAIN_CAP 16384 /* one TLS record's plaintext at most */
#define ID_CAP    GW__TLS_ID_CAP
static BIO_METHOD *bio_method;
static pthread_once_t once = PTHREAD_ONCE_INIT;

/* The connection of an SSL object (in OpenSSL's callbacks): its BIO's data. (Not SSL ex_data:
 * the first SSL_set_ex_data allocates a stack per connection, kept as long as it lives.)
 * One BIO per loop serves every TLS connection of the loop (a BIO with its lock is about 200
 * bytes per idle connection, and a malloc and a free per connection): bound() points it at the
 * connection before each SSL call that may read, write or call back, on the loop's thread. (Any
 * of them may run the adapter, which may flush other connections: so before each call, not once
 * per input.) */
static gw_stream_conn *conn_of_ssl(const SSL *ssl)
{
    BIO *b = SSL_get_rbio(ssl);
    return b ? BIO_get_data(b) : NULL;
}

static gw__stream_tls_conn *tc_of(const gw_stream_conn *c)
{
    return c->tls;
}

static SSL *bound(gw_stream_conn *c)
{
    BIO_set_data(c->sl->tls_bio, c);
    return c->tls->ssl;
}

/* ---- the memory BIO: reads the ciphertext being fed, writes into the loop's scratch ---- */

static int bio_read(BIO *b, char *buf, size_t len, size_t *got)
{
    gw_stream_conn *c = BIO_get_data(b);
    gw__stream_tls_conn *t = c ? c->tls : NULL;
    BIO_clear_retry_flags(b);
    if (!t || !t->src_len) {
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
    gw_stream_loop *sl = c ? c->sl : NULL;
    BIO_clear_retry_flags(b);
    if (!sl)
        return 0;
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
}

bool gw__stream_tls_init(void)
{
    pthread_once(&once, init_once);
    return bio_method != NULL;
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
    gw_stream_conn *c = conn_of_ssl(ssl);
    if (!c || len == 0 || len >= ID_CAP)
        return NULL;
    const gw_device *dev = gw_config_device_n(c->sl->loop->cfg, id, len);
    if (!dev || !dev->product->protocol ||
        strcmp(dev->product->protocol, c->sl->ops->session.area) != 0 || !dev->secret[0] ||
        strlen(dev->secret) > PSK_MAX_PSK_LEN)
        return NULL;
    return dev;
}

/* The connection's device id: a copy of id[0..len) (allocated, an idle session without an
 * identity keeps none); len 0: none. False without memory (then none). */
static bool set_id(gw__stream_tls_conn *t, const char *id, size_t len)
{
    gw_free(GW_AREA_SESSION, t->id);
    t->id = len ? gw_malloc(GW_AREA_SESSION, len + 1) : NULL;
    if (!t->id)
        return false;
    memcpy(t->id, id, len);
    t->id[len] = 0;
    return true;
}

static void psk_note(SSL *ssl, const char *id, size_t len, bool known)
{
    gw_stream_conn *c = conn_of_ssl(ssl);
    gw__stream_tls_conn *t = c ? c->tls : NULL;
    if (!t)
        return;
    t->psk_offered = true;
    t->psk_unknown = !known;
    if (known)
        set_id(t, id, len);
}

/* TLS 1.2 */
unsigned int gw__stream_tls_psk_server_cb(SSL *ssl, const char *identity, unsigned char *psk,
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
int gw__stream_tls_psk_find_cb(SSL *ssl, const unsigned char *identity, size_t len,
                               SSL_SESSION **sess)
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
    gw_stream_conn *c = conn_of_ssl(ssl);
    if (c && c->tls) /* (OpenSSL counts it as a resumption: it is not one) */
        c->tls->ext_psk = true;
    return 1;
}

/* ---- session tickets of PSK sessions: bound to the device's secret ----
 * A ticket's session of a PSK connection carries (as its ticket app data, encrypted with it) the
 * device id and the first TAG_LEN bytes of SHA-256 of the secret. A ticket keeps its keys across a
 * reload (stream_tls_ctx.c), so decrypting one checks that the device still exists and that its
 * secret is unchanged; otherwise the ticket is ignored (a full handshake, which checks the
 * current secret). A session without a PSK identity carries no app data. */
#define TAG_LEN 16

static bool secret_tag(const gw_device *dev, unsigned char *out)
{
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n;
    if (!EVP_Digest(dev->secret, strlen(dev->secret), md, &n, EVP_sha256(), NULL) || n < TAG_LEN)
        return false;
    memcpy(out, md, TAG_LEN);
    return true;
}

int gw__stream_tls_ticket_gen_cb(SSL *ssl, void *arg)
{
    (void)arg;
    gw_stream_conn *c = conn_of_ssl(ssl);
    gw__stream_tls_conn *t = c ? c->tls : NULL;
    SSL_SESSION *ss = SSL_get0_session(ssl);
    if (!t || !ss || !t->psk_offered || t->psk_unknown || !t->id)
        return 1; /* no PSK identity: nothing to bind */
    size_t n = strlen(t->id);
    unsigned char buf[ID_CAP + TAG_LEN];
    const gw_device *dev = psk_device(ssl, t->id, n);
    if (!dev)
        return 1; /* (gone meanwhile: a ticket naming no device, resumed without an identity) */
    if (!secret_tag(dev, buf + n))
        return 0;
    memcpy(buf, t->id, n);
    return SSL_SESSION_set1_ticket_appdata(ss, buf, n + TAG_LEN);
}

SSL_TICKET_RETURN gw__stream_tls_ticket_dec_cb(SSL *ssl, SSL_SESSION *ss,
                                               const unsigned char *keyname, size_t keyname_len,
                                               SSL_TICKET_STATUS status, void *arg)
{
    (void)keyname;
    (void)keyname_len;
    (void)arg;
    switch (status) {
    case SSL_TICKET_FATAL_ERR_MALLOC:
    case SSL_TICKET_FATAL_ERR_OTHER:
        return SSL_TICKET_RETURN_ABORT;
    case SSL_TICKET_NONE:
        return SSL_TICKET_RETURN_IGNORE;
    case SSL_TICKET_SUCCESS:
    case SSL_TICKET_SUCCESS_RENEW:
        break;
    default: /* empty, or not ours (an older key) */
        return SSL_TICKET_RETURN_IGNORE_RENEW;
    }
    /* (as without this callback: TLS 1.3 renews a ticket on each resumption, as its clients use
     * one ticket once; TLS 1.2 when OpenSSL asks for it) */
    SSL_TICKET_RETURN use = status == SSL_TICKET_SUCCESS_RENEW || SSL_version(ssl) >= TLS1_3_VERSION
                                ? SSL_TICKET_RETURN_USE_RENEW
                                : SSL_TICKET_RETURN_USE;
    void *data = NULL;
    size_t len = 0;
    if (!SSL_SESSION_get0_ticket_appdata(ss, &data, &len) || len == 0)
        return use; /* not a PSK session */
    unsigned char tag[TAG_LEN];
    const gw_device *dev = len > TAG_LEN ? psk_device(ssl, data, len - TAG_LEN) : NULL;
    if (!dev || !secret_tag(dev, tag) ||
        CRYPTO_memcmp(tag, (const unsigned char *)data + len - TAG_LEN, TAG_LEN) != 0)
        return SSL_TICKET_RETURN_IGNORE_RENEW; /* device gone or secret changed: full handshake */
    psk_note(ssl, data, len - TAG_LEN, true);
    return use;
}

int gw__stream_tls_open(gw_stream_conn *c, gw_stream_tls *t)
{
    gw__stream_tls_conn *tc = gw_calloc(GW_AREA_SESSION, 1, sizeof(*tc));
    if (!tc)
        return GW_ENOMEM;
    gw_stream_loop *sl = c->sl;
    if (!sl->tls_bio)
        sl->tls_bio = BIO_new(bio_method);
    pthread_mutex_lock(&t->mu);
    SSL *ssl = sl->tls_bio ? SSL_new(t->ctx) : NULL;
    pthread_mutex_unlock(&t->mu);
    if (!ssl || !BIO_up_ref(sl->tls_bio)) {
        SSL_free(ssl);
        ERR_clear_error();
        gw_free(GW_AREA_SESSION, tc);
        return GW_ENOMEM;
    }
    SSL_set_bio(ssl, sl->tls_bio, sl->tls_bio); /* (takes our reference, and one of its own) */
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
    gw_free(GW_AREA_SESSION, t->held);
    gw_free(GW_AREA_SESSION, t->id);
    SSL_free(bound(c));
    BIO_set_data(c->sl->tls_bio, NULL);
    gw_free(GW_AREA_SESSION, t);
    c->tls = NULL;
}

void gw__stream_tls_loop_free(gw_stream_loop *sl)
{
    BIO_free(sl->tls_bio); /* (the last TLS connection of the loop is gone) */
    sl->tls_bio = NULL;
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

/* The end of the handshake: what OpenSSL wrote then (TLS 1.3: the session ticket; TLS 1.2: the
 * server's last flight) waits in the connection for the flush at the end of this iteration, so
 * that it leaves in one write with the adapter's first answer (the CONNACK to a CONNECT that came
 * with the client's Finished) instead of one write each. Without memory: sent now. */
static void hold_pending(gw_stream_conn *c)
{
    gw__stream_tls_conn *t = c->tls;
    gw_stream_loop *sl = c->sl;
    if (!sl->tls_out_len)
        return;
    uint8_t *h = sl->tls_out_len <= UINT16_MAX ? gw_malloc(GW_AREA_SESSION, sl->tls_out_len) : NULL;
    if (!h) {
        send_pending(c);
        return;
    }
    memcpy(h, sl->tls_out, sl->tls_out_len);
    t->held = h;
    t->held_len = (uint16_t)sl->tls_out_len;
    sl->tls_out_len = 0;
    gw_session_mark_dirty(&c->base);
}

/* The held bytes into the (empty) scratch, first. */
static void take_held(gw_stream_conn *c)
{
    gw__stream_tls_conn *t = c->tls;
    size_t put;
    if (!t->held)
        return;
    if (bio_write(SSL_get_wbio(t->ssl), (const char *)t->held, t->held_len, &put) != 1)
        c->sl->tls_out_len =
            0; /* (out of memory: the ticket or flight is lost, the flush closes) */
    gw_free(GW_AREA_SESSION, t->held);
    t->held = NULL;
    t->held_len = 0;
}

size_t gw__stream_tls_held(const gw_stream_conn *c)
{
    return c->tls ? c->tls->held_len : 0;
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
    bool resumed = SSL_session_reused(t->ssl) && !t->ext_psk; /* from a ticket */
    gw_metric_inc(resumed ? GW_M_TLS_RESUMED : GW_M_TLS_FULL);
    gw_metric_inc(GW_M_TLS_SESSIONS);
    X509 *peer = SSL_get0_peer_certificate(t->ssl);
    char cn[ID_CAP];
    if (peer && SSL_get_verify_result(t->ssl) == X509_V_OK &&
        cert_identity(peer, t->id_mode, cn, sizeof(cn)) && set_id(t, cn, strlen(cn))) {
        t->by = GW_TLS_BY_CERT;
    } else if (t->psk_offered && !t->psk_unknown && t->id) {
        /* the PSK callback found the device and the key held, or (resumed) the ticket's device
         * exists and its secret is the one the ticket was issued under */
        t->by = GW_TLS_BY_PSK;
    } else {
        set_id(t, NULL, 0);
    }
    GW_STREAM_LOG(GW_LOG_DEBUG, c, "TLS session established",
                  "version=%s cipher=%s resumed=%d identity=%s", SSL_get_version(t->ssl),
                  SSL_get_cipher_name(t->ssl), resumed,
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
    t->src_len = (uint32_t)n; /* (n: one read into the loop's buffer) */
    if (!t->established) {
        ERR_clear_error();
        int rc = SSL_do_handshake(bound(c));
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
        hold_pending(c);
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
        int k = SSL_read(bound(c), sl->tls_plain, PLAIN_CAP);
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
        if (e == SSL_ERROR_ZERO_RETURN) { /* close_notify: as a half-close (EOF) */
            GW_STREAM_LOG(GW_LOG_DEBUG, c, "peer sent TLS close_notify", NULL);
            gw__stream_peer_done(c);
            break;
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
    sl->tls_out_len = 0;
    bound(c);
    take_held(c);
    int rc = c->out_len ? SSL_write(t->ssl, c->out, (int)c->out_len) : 1;
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
    if (!t || !t->established || c->fd < 0)
        return;
    c->sl->tls_out_len = 0;
    bound(c);
    take_held(c);
    if (SSL_shutdown(t->ssl) < 0)
        ERR_clear_error();
    send_pending(c);
}

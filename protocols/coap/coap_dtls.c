/* coap_dtls.c: DTLS 1.2 with pre-shared keys on the CoAP adapter's own SO_REUSEPORT sockets
 * (coaps): one OpenSSL context for the adapter, one SSL object per peer on the peer's loop fed
 * through memory BIOs, the PSK identity = device id and the key = its secret; decrypted datagrams
 * go to the same request path as plain CoAP, answers go back through the peer's SSL. A source
 * whose handshakes fail authentication (wrong key, unknown identity: only possible after the
 * cookie exchange has proved the address) counts towards the per-source auth back-off of
 * gateway/limits.c, and a source in back-off has its ClientHellos dropped. */
#include "coap_internal.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>

#include "../../gateway/alloc.h"
#include "../../gateway/limits.h"
#include "../../gateway/listen.h"
#include "../../gateway/log.h"
#include "../../gateway/metrics.h"

#define DTLS_MTU      1280
#define DTLS_BUCKETS  1024
#define HANDSHAKE_MAX 10000 /* ms: a handshake not finished by then is dropped */
/* ms from the PSK identity to a verified Finished. A Finished under a wrong key fails its MAC and
 * DTLS discards it silently (RFC 6347 4.1.2.7), so a wrong key shows only as a client that never
 * finishes; this allows two retransmissions of its flight (1 s, then 2 s later). */
#define PSK_FINISH_MAX 4000

struct gw__coap_dpeer {
    gw__coap_dpeer *next;
    gw__coap_addr addr;
    gw__coap_sock *sock;
    SSL *ssl;
    BIO *rbio, *wbio;
    bool established;
    uint64_t psk_at; /* when the PSK callback ran (0: not yet): the cookie exchange is behind us */
    const gw_device *dev;
    uint64_t started, last;
};

static int ex_loop = -1; /* SSL ex_data index: the gw__coap_loop */

static uint32_t addr_hash(const struct sockaddr *sa)
{
    uint32_t h = 2166136261u;
    const uint8_t *p;
    size_t n;
    if (sa->sa_family == AF_INET6) {
        p = (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
        n = 16;
        h ^= ((const struct sockaddr_in6 *)sa)->sin6_port;
    } else {
        p = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
        n = 4;
        h ^= ((const struct sockaddr_in *)sa)->sin_port;
    }
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return (h ^ (h >> 13)) & (DTLS_BUCKETS - 1);
}

/* PSK: identity = device id of a coap product, key = its secret. */
static unsigned int psk_cb(SSL *ssl, const char *identity, unsigned char *psk, unsigned int max_len)
{
    gw__coap_loop *cl = SSL_get_ex_data(ssl, ex_loop);
    gw__coap_dpeer *p = SSL_get_app_data(ssl);
    p->psk_at = uv_now(&cl->loop->uv);
    const gw_device *dev = identity ? gw_config_device(cl->loop->rt->cfg, identity) : NULL;
    if (!dev || !dev->product->protocol || strcmp(dev->product->protocol, "coap") != 0)
        return 0;
    size_t n = strlen(dev->secret);
    if (n == 0 || n > max_len)
        return 0;
    memcpy(psk, dev->secret, n);
    return (unsigned int)n;
}

/* Cookies (RFC 6347 4.2.1): an HMAC of the peer's address under a per-process random key, so a
 * spoofed source gets a HelloVerifyRequest, not the server's flight. */
static uint8_t cookie_secret[32];

static void cookie_of(SSL *ssl, uint8_t out[32])
{
    gw__coap_dpeer *p = SSL_get_app_data(ssl);
    unsigned int n = 32;
    HMAC(EVP_sha256(), cookie_secret, sizeof(cookie_secret), (const uint8_t *)&p->addr,
         sizeof(p->addr), out, &n);
}

static int cookie_gen(SSL *ssl, unsigned char *cookie, unsigned int *len)
{
    cookie_of(ssl, cookie);
    *len = 32;
    return 1;
}

static int cookie_verify(SSL *ssl, const unsigned char *cookie, unsigned int len)
{
    uint8_t want[32];
    cookie_of(ssl, want);
    return len == 32 && CRYPTO_memcmp(cookie, want, 32) == 0;
}

int gw__coap_dtls_init(gw__coap_adapter *ad, gw_diag *diag, const char *file)
{
    SSL_CTX *ctx = SSL_CTX_new(DTLS_server_method());
    if (!ctx) {
        gw_diag_add(diag, file, "adapters.coap.dtls_listeners", "cannot create a DTLS context");
        return GW_ECONFIG;
    }
    if (ex_loop < 0)
        ex_loop = SSL_get_ex_new_index(0, NULL, NULL, NULL, NULL);
    RAND_bytes(cookie_secret, sizeof(cookie_secret));
    SSL_CTX_set_min_proto_version(ctx, DTLS1_2_VERSION);
    SSL_CTX_set_cipher_list(ctx, "PSK:!NULL");
    SSL_CTX_set_psk_server_callback(ctx, psk_cb);
    SSL_CTX_set_options(ctx, SSL_OP_NO_QUERY_MTU | SSL_OP_COOKIE_EXCHANGE);
    SSL_CTX_set_cookie_generate_cb(ctx, cookie_gen);
    SSL_CTX_set_cookie_verify_cb(ctx, cookie_verify);
    SSL_CTX_set_read_ahead(ctx, 1);
    ad->ssl_ctx = ctx;
    return 0;
}

void gw__coap_dtls_uninit(gw__coap_adapter *ad)
{
    if (ad->ssl_ctx)
        SSL_CTX_free(ad->ssl_ctx);
    ad->ssl_ctx = NULL;
}

/* Sends what the SSL object wrote, one datagram per read of the memory BIO. */
static void flush(gw__coap_dpeer *p)
{
    uint8_t buf[DTLS_MTU * 4];
    int n;
    while (BIO_ctrl_pending(p->wbio) > 0 && (n = BIO_read(p->wbio, buf, sizeof(buf))) > 0)
        gw__coap_send_raw(p->sock, &p->addr, buf, (size_t)n);
}

static gw__coap_dpeer *find(gw__coap_loop *cl, const struct sockaddr *sa)
{
    if (!cl->dpeers)
        return NULL;
    gw__coap_dpeer *p = cl->dpeers[addr_hash(sa)];
    while (p && !gw__coap_addr_equal(&p->addr, sa))
        p = p->next;
    return p;
}

static void peer_free(gw__coap_loop *cl, gw__coap_dpeer *p)
{
    for (gw__coap_dpeer **pp = &cl->dpeers[addr_hash(&p->addr.sa)]; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    cl->n_dpeers--;
    SSL_free(p->ssl); /* frees both BIOs */
    gw_free(GW_AREA_SESSION, p);
}

static gw__coap_dpeer *peer_new(gw__coap_loop *cl, gw__coap_sock *sock, const struct sockaddr *sa)
{
    if (!cl->dpeers) {
        cl->dpeers = gw_calloc(GW_AREA_SESSION, DTLS_BUCKETS, sizeof(*cl->dpeers));
        if (!cl->dpeers)
            return NULL;
    }
    gw__coap_dpeer *p = gw_calloc(GW_AREA_SESSION, 1, sizeof(*p));
    if (!p)
        return NULL;
    p->ssl = SSL_new(cl->ad->ssl_ctx);
    p->rbio = BIO_new(BIO_s_mem());
    p->wbio = BIO_new(BIO_s_mem());
    if (!p->ssl || !p->rbio || !p->wbio) {
        if (p->ssl)
            SSL_free(p->ssl);
        BIO_free(p->rbio);
        BIO_free(p->wbio);
        gw_free(GW_AREA_SESSION, p);
        return NULL;
    }
    BIO_set_mem_eof_return(p->rbio, -1);
    SSL_set_bio(p->ssl, p->rbio, p->wbio);
    SSL_set_ex_data(p->ssl, ex_loop, cl);
    SSL_set_app_data(p->ssl, p);
    SSL_set_accept_state(p->ssl);
    SSL_set_mtu(p->ssl, DTLS_MTU);
    DTLS_set_link_mtu(p->ssl, DTLS_MTU);
    p->sock = sock;
    gw__coap_addr_set(&p->addr, sa);
    p->started = p->last = uv_now(&cl->loop->uv);
    uint32_t b = addr_hash(sa);
    p->next = cl->dpeers[b];
    cl->dpeers[b] = p;
    cl->n_dpeers++;
    return p;
}

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000; /* the clock gateway/limits.c is driven by */
}

/* A failure after the PSK callback ran (unknown identity, no valid Finished) is an authentication
 * failure of a proven address; one before it (a timeout, a bad ClientHello) may come from a
 * spoofed source and is not held against it. */
static void handshake_failed(gw__coap_loop *cl, gw__coap_dpeer *p, const char *why)
{
    gw_metric_inc(GW_M_COAP_DTLS_FAILED);
    if (p->psk_at)
        gw_limits_auth_failed(cl->loop->rt->limits, &p->addr.sa, now_ms());
    if (GW_LOG_WARN >= gw_log_level) {
        char peer[64], q[160];
        gw_sockaddr_str(&p->addr.sa, peer, sizeof(peer));
        gw_log_write(GW_LOG_WARN, "coap", NULL, peer, "DTLS handshake failed", "reason=%s",
                     gw_log_value(q, sizeof(q), why));
    }
    peer_free(cl, p);
}

/* A ClientHello from a source in back-off (the log's rate limit bounds a flood of them). */
static void backoff_log(gw__coap_loop *cl, const struct sockaddr *from)
{
    (void)cl;
    if (GW_LOG_WARN < gw_log_level)
        return;
    char peer[64];
    gw_sockaddr_str(from, peer, sizeof(peer));
    gw_log_write(GW_LOG_WARN, "coap", NULL, peer, "DTLS handshake refused by a per-source limit",
                 "reason=%s", gw_limit_reason(GW_LIMIT_BACKOFF));
}

void gw__coap_dtls_input(gw__coap_sock *sock, const uint8_t *buf, size_t len,
                         const struct sockaddr *from)
{
    gw__coap_loop *cl = sock->cl;
    gw__coap_dpeer *p = find(cl, from);
    uint8_t *plain = cl->dtls_buf; /* the decrypted request */
    int cap = (int)cl->dtls_buf_size;

    if (!p) {
        if (len < 13 || buf[0] != 22) /* only a handshake record opens a peer */
            return;
        if (cl->n_dpeers >= cl->ad->cfg.max_dtls_peers) {
            gw_metric_inc(GW_M_COAP_DTLS_FAILED);
            return;
        }
        if (gw_limits_blocked(cl->loop->rt->limits, from, now_ms())) {
            backoff_log(cl, from);
            return; /* counted in connections_limited_total{reason="auth_backoff"} */
        }
        if (!(p = peer_new(cl, sock, from)))
            return;
    }
    p->last = uv_now(&cl->loop->uv);
    BIO_write(p->rbio, buf, (int)len);
    if (!p->established) {
        int rc = SSL_do_handshake(p->ssl);
        flush(p);
        if (rc != 1) {
            int e = SSL_get_error(p->ssl, rc);
            if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) {
                unsigned long oe = ERR_get_error();
                char why[128];
                ERR_error_string_n(oe, why, sizeof(why));
                ERR_clear_error();
                handshake_failed(cl, p, oe ? why : "protocol");
            }
            return;
        }
        const char *id = SSL_get_psk_identity(p->ssl);
        p->dev = id ? gw_config_device(cl->loop->rt->cfg, id) : NULL;
        if (!p->dev) {
            handshake_failed(cl, p, "unknown identity");
            return;
        }
        p->established = true;
        gw_limits_auth_ok(cl->loop->rt->limits, &p->addr.sa);
        GW_LOG_DEBUG("coap", p->dev->id, NULL, "DTLS session established", NULL);
    }
    for (;;) {
        int n = SSL_read(p->ssl, plain, cap);
        if (n > 0) {
            gw__coap_request(sock, plain, (size_t)n, from, false, p->dev);
            if (!(p = find(cl, from)))
                return;
            continue;
        }
        int e = SSL_get_error(p->ssl, n);
        ERR_clear_error();
        if (e == SSL_ERROR_ZERO_RETURN || (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE)) {
            flush(p);
            peer_free(cl, p); /* close_notify or a fatal alert */
            return;
        }
        break;
    }
    flush(p);
}

bool gw__coap_dtls_send(gw__coap_sock *sock, const gw__coap_addr *to, const uint8_t *buf, size_t n)
{
    gw__coap_dpeer *p = find(sock->cl, &to->sa);
    if (!p || !p->established)
        return false;
    if (SSL_write(p->ssl, buf, (int)n) <= 0) {
        ERR_clear_error();
        return false;
    }
    flush(p);
    return true;
}

/* Handshake retransmissions and give-ups; established peers idle past the idle timeout go. */
void gw__coap_dtls_tick(gw__coap_loop *cl, bool sweep)
{
    uint64_t now = uv_now(&cl->loop->uv);
    if (!cl->dpeers || !cl->n_dpeers)
        return;
    for (uint32_t i = 0; i < DTLS_BUCKETS; i++) {
        gw__coap_dpeer *p = cl->dpeers[i], *next;
        for (; p; p = next) {
            next = p->next;
            if (!p->established) {
                if (p->psk_at && now - p->psk_at >= PSK_FINISH_MAX) {
                    handshake_failed(cl, p,
                                     "no valid Finished after the PSK identity (wrong key?)");
                    continue;
                }
                if (now - p->started >= HANDSHAKE_MAX) {
                    handshake_failed(cl, p, "timeout");
                    continue;
                }
                if (DTLSv1_handle_timeout(p->ssl) > 0)
                    flush(p);
            } else if (sweep && now - p->last >= gw__coap_idle_ms(cl, p->dev)) {
                peer_free(cl, p);
            }
        }
    }
}

void gw__coap_dtls_free_all(gw__coap_loop *cl)
{
    for (uint32_t i = 0; cl->dpeers && i < DTLS_BUCKETS; i++)
        while (cl->dpeers[i])
            peer_free(cl, cl->dpeers[i]);
    gw_free(GW_AREA_SESSION, cl->dpeers);
    cl->dpeers = NULL;
}

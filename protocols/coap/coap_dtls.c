/* coap_dtls.c: DTLS 1.2 with pre-shared keys on the CoAP adapter's own SO_REUSEPORT sockets
 * (coaps): one OpenSSL context for the adapter; a ClientHello without a valid cookie is answered
 * statelessly by DTLSv1_listen on one scratch SSL per loop, so a peer (an SSL object fed through
 * memory BIOs on the peer's loop) exists only for an address that proved it receives; the PSK
 * identity = device id and the key = its secret; decrypted datagrams go to the same request path
 * as plain CoAP, answers go back through the peer's SSL. A device has at most
 * max_dtls_peers_per_device established peers over all loops (newer ones close the older). A
 * source whose handshakes fail authentication (wrong key, unknown identity) counts towards the
 * per-source auth back-off of gateway/util/limits.c, and a source in back-off has its ClientHellos
 * dropped. */
#include "coap_internal.h"

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/rand.h>
#include <openssl/ssl.h>
#include <stdio.h>
#include <string.h>

#include "../../gateway/util/alloc.h"
#include "../../gateway/core/limits.h"
#include "../../gateway/core/listen.h"
#include "../../gateway/util/log.h"
#include "../../gateway/util/metrics.h"

#define DTLS_MTU      1280
#define DTLS_BUCKETS  1024
#define HANDSHAKE_MAX 10000 /* ms: a handshake not finished by then is dropped */
/* ms from the PSK identity to a verified Finished. A Finished under a wrong key fails its MAC and
 * DTLS discards it silently (RFC 6347 4.1.2.7), so a wrong key shows only as a client that never
 * finishes; this allows two retransmissions of its flight (1 s, then 2 s later). */
#define PSK_FINISH_MAX 4000
/* ms without a datagram either way after which an established peer gives its record buffers
 * (about 33 KB: SSL_MODE_RELEASE_BUFFERS does not release them for DTLS in OpenSSL 3.0) back */
#define BUFFERS_IDLE_MS 1000

struct gw__coap_dpeer {
    gw__coap_dpeer *next;     /* cl->dpeers chain (by address) */
    gw__coap_dpeer *dev_next; /* cl->dpeers_dev chain (by device), established peers only */
    gw_dgram_addr addr;
    gw__coap_sock *sock;
    SSL *ssl;
    BIO *rbio, *wbio;
    bool established;
    bool released;   /* record buffers given back (SSL_free_buffers) */
    bool counted;    /* in ad->dtls_dev_peers[dev->index] */
    uint64_t seq;    /* the device's how-many-th established peer */
    uint64_t psk_at; /* when the PSK callback ran (0: not yet) */
    const gw_device *dev;
    uint64_t started, last;
    uint64_t io; /* the last datagram in or out */
};

static int ex_loop = -1; /* SSL ex_data index: the gw__coap_loop */

static uint32_t addr_hash(const struct sockaddr *sa)
{
    return gw_dgram_addr_hash(sa, 0) & (DTLS_BUCKETS - 1);
}

/* PSK: identity = device id of a coap product, key = its secret. */
static unsigned int psk_cb(SSL *ssl, const char *identity, unsigned char *psk, unsigned int max_len)
{
    gw__coap_loop *cl = SSL_get_ex_data(ssl, ex_loop);
    gw__coap_dpeer *p = SSL_get_app_data(ssl);
    if (!p)
        return 0; /* the scratch SSL never gets this far */
    p->psk_at = uv_now(&cl->dl.loop->uv);
    const gw_device *dev = identity ? gw_config_device(cl->dl.loop->cfg, identity) : NULL;
    if (!dev || !dev->product->protocol || strcmp(dev->product->protocol, "coap") != 0)
        return 0;
    size_t n = strlen(dev->secret);
    if (n == 0 || n > max_len)
        return 0;
    memcpy(psk, dev->secret, n);
    return (unsigned int)n;
}

/* Cookies (RFC 6347 4.2.1): an HMAC of the peer's address and a 64 s epoch under a per-process
 * random key; the current and the previous epoch verify, so a cookie is good for 64-128 s. A
 * spoofed source gets a HelloVerifyRequest, not the server's flight, and costs nothing. */
#define COOKIE_EPOCH_MS 64000
static uint8_t cookie_secret[32];

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000; /* the clock gateway/util/limits.c is driven by */
}

static void cookie_of(SSL *ssl, uint64_t epoch, uint8_t out[32])
{
    gw__coap_dpeer *p = SSL_get_app_data(ssl);
    gw__coap_loop *cl = SSL_get_ex_data(ssl, ex_loop);
    const gw_dgram_addr *a = p ? &p->addr : &cl->dtls_from; /* the scratch SSL: dtls_from */
    uint8_t msg[sizeof(*a) + 8];
    memcpy(msg, a, sizeof(*a));
    memcpy(msg + sizeof(*a), &epoch, 8);
    unsigned int n = 32;
    HMAC(EVP_sha256(), cookie_secret, sizeof(cookie_secret), msg, sizeof(msg), out, &n);
}

static int cookie_gen(SSL *ssl, unsigned char *cookie, unsigned int *len)
{
    cookie_of(ssl, now_ms() / COOKIE_EPOCH_MS, cookie);
    *len = 32;
    return 1;
}

static int cookie_verify(SSL *ssl, const unsigned char *cookie, unsigned int len)
{
    uint8_t want[32];
    uint64_t epoch = now_ms() / COOKIE_EPOCH_MS;
    if (len != 32)
        return 0;
    cookie_of(ssl, epoch, want);
    if (CRYPTO_memcmp(cookie, want, 32) == 0)
        return 1;
    cookie_of(ssl, epoch - 1, want);
    return CRYPTO_memcmp(cookie, want, 32) == 0;
}

int gw__coap_dtls_init(gw__coap_adapter *ad, const gw_config *gcfg, gw_diag *diag)
{
    SSL_CTX *ctx = SSL_CTX_new(DTLS_server_method());
    ad->dtls_dev_peers = gw_calloc(GW_AREA_RUNTIME, (size_t)gcfg->device_cap + 1, sizeof(uint32_t));
    ad->dtls_dev_seq = gw_calloc(GW_AREA_RUNTIME, (size_t)gcfg->device_cap + 1, sizeof(uint64_t));
    if (!ctx || !ad->dtls_dev_peers || !ad->dtls_dev_seq) {
        if (ctx)
            SSL_CTX_free(ctx);
        gw_diag_add(diag, gcfg->file, "adapters.coap.dtls_listeners",
                    "cannot create a DTLS context");
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
    /* an idle peer gives its record buffers back (they come again with its next datagram) */
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);
    ad->ssl_ctx = ctx;
    return 0;
}

void gw__coap_dtls_uninit(gw__coap_adapter *ad)
{
    if (ad->ssl_ctx)
        SSL_CTX_free(ad->ssl_ctx);
    ad->ssl_ctx = NULL;
    gw_free(GW_AREA_RUNTIME, ad->dtls_dev_peers);
    gw_free(GW_AREA_RUNTIME, ad->dtls_dev_seq);
    ad->dtls_dev_peers = NULL;
    ad->dtls_dev_seq = NULL;
}

/* Sends what an SSL object wrote, one datagram per read of the memory BIO; the bytes sent. */
static size_t send_written(gw__coap_sock *sock, const gw_dgram_addr *to, BIO *wbio)
{
    uint8_t buf[DTLS_MTU * 4];
    size_t sent = 0;
    int n;
    while (BIO_ctrl_pending(wbio) > 0 && (n = BIO_read(wbio, buf, sizeof(buf))) > 0) {
        gw__coap_send_raw(sock, to, buf, (size_t)n);
        sent += (size_t)n;
    }
    return sent;
}

static void flush(gw__coap_dpeer *p)
{
    send_written(p->sock, &p->addr, p->wbio);
}

/* The record buffers back before p reads or writes; false when out of memory. */
static bool buffers(gw__coap_dpeer *p, uint64_t now)
{
    p->io = now;
    if (p->released) {
        if (!SSL_alloc_buffers(p->ssl)) {
            ERR_clear_error();
            return false;
        }
        p->released = false;
    }
    return true;
}

static gw__coap_dpeer *find(gw__coap_loop *cl, const struct sockaddr *sa)
{
    if (!cl->dpeers)
        return NULL;
    gw__coap_dpeer *p = cl->dpeers[addr_hash(sa)];
    while (p && !gw_dgram_addr_equal(&p->addr, sa))
        p = p->next;
    return p;
}

static uint32_t dev_bucket(const gw_device *dev)
{
    return dev->index & (DTLS_BUCKETS - 1);
}

static void peer_free(gw__coap_loop *cl, gw__coap_dpeer *p)
{
    for (gw__coap_dpeer **pp = &cl->dpeers[addr_hash(&p->addr.sa)]; *pp; pp = &(*pp)->next) {
        if (*pp == p) {
            *pp = p->next;
            break;
        }
    }
    if (p->established) {
        for (gw__coap_dpeer **pp = &cl->dpeers_dev[dev_bucket(p->dev)]; *pp;
             pp = &(*pp)->dev_next) {
            if (*pp == p) {
                *pp = p->dev_next;
                break;
            }
        }
    }
    if (p->counted)
        __atomic_fetch_sub(&cl->ad->dtls_dev_peers[p->dev->index], 1, __ATOMIC_RELAXED);
    cl->n_dpeers--;
    gw_metric_add(GW_M_COAP_DTLS_PEERS, -1);
    SSL_free(p->ssl); /* frees both BIOs */
    if (p->dev && p->established)
        gw_config_release(p->dev->gen);
    gw_free(GW_AREA_SESSION, p);
}

/* An SSL object in server state fed through memory BIOs on cl's loop. */
static SSL *ssl_new(gw__coap_loop *cl)
{
    SSL *ssl = SSL_new(cl->ad->ssl_ctx);
    BIO *rbio = BIO_new(BIO_s_mem()), *wbio = BIO_new(BIO_s_mem());
    if (!ssl || !rbio || !wbio) {
        if (ssl)
            SSL_free(ssl);
        BIO_free(rbio);
        BIO_free(wbio);
        ERR_clear_error();
        return NULL;
    }
    BIO_set_mem_eof_return(rbio, -1);
    SSL_set_bio(ssl, rbio, wbio);
    SSL_set_ex_data(ssl, ex_loop, cl);
    SSL_set_app_data(ssl, NULL);
    SSL_set_accept_state(ssl);
    SSL_set_mtu(ssl, DTLS_MTU);
    DTLS_set_link_mtu(ssl, DTLS_MTU);
    return ssl;
}

/* A peer for a source whose ClientHello carried a valid cookie: it takes the SSL object that
 * verified it (holding that ClientHello); NULL (ssl untouched) when out of memory. */
static gw__coap_dpeer *peer_new(gw__coap_loop *cl, gw__coap_sock *sock, const struct sockaddr *sa,
                                SSL *ssl)
{
    if (!cl->dpeers) {
        cl->dpeers = gw_calloc(GW_AREA_SESSION, DTLS_BUCKETS, sizeof(*cl->dpeers));
        cl->dpeers_dev = gw_calloc(GW_AREA_SESSION, DTLS_BUCKETS, sizeof(*cl->dpeers_dev));
        if (!cl->dpeers || !cl->dpeers_dev) {
            gw_free(GW_AREA_SESSION, cl->dpeers);
            gw_free(GW_AREA_SESSION, cl->dpeers_dev);
            cl->dpeers = cl->dpeers_dev = NULL;
            return NULL;
        }
    }
    gw__coap_dpeer *p = gw_calloc(GW_AREA_SESSION, 1, sizeof(*p));
    if (!p)
        return NULL;
    p->ssl = ssl;
    p->rbio = SSL_get_rbio(ssl);
    p->wbio = SSL_get_wbio(ssl);
    SSL_set_app_data(p->ssl, p);
    p->sock = sock;
    gw_dgram_addr_set(&p->addr, sa);
    p->started = p->last = uv_now(&cl->dl.loop->uv);
    uint32_t b = addr_hash(sa);
    p->next = cl->dpeers[b];
    cl->dpeers[b] = p;
    cl->n_dpeers++;
    gw_metric_inc(GW_M_COAP_DTLS_PEERS);
    return p;
}

/* A failure after the PSK callback ran (unknown identity, no valid Finished) is an authentication
 * failure; one before it (a timeout, a bad ClientHello) is not held against the source. */
static void handshake_failed(gw__coap_loop *cl, gw__coap_dpeer *p, const char *why)
{
    gw_metric_inc(GW_M_COAP_DTLS_FAILED);
    if (p->psk_at)
        gw_limits_auth_failed(cl->dl.loop->rt->limits, &p->addr.sa, now_ms());
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

/* A refusal because the loop holds max_dtls_peers (the source proved its address). */
static void refused_log(gw__coap_loop *cl, const struct sockaddr *from)
{
    gw_metric_inc(GW_M_COAP_DTLS_REFUSED_MAX);
    if (GW_LOG_WARN < gw_log_level)
        return;
    char peer[64];
    gw_sockaddr_str(from, peer, sizeof(peer));
    gw_log_write(GW_LOG_WARN, "coap", NULL, peer, "DTLS handshake refused: too many DTLS peers",
                 "reason=max_dtls_peers max_dtls_peers=%u", cl->ad->cfg.max_dtls_peers);
}

/* A datagram from a source without a peer: DTLSv1_listen (OpenSSL's stateless cookie exchange)
 * answers a ClientHello without a valid cookie with a HelloVerifyRequest and drops anything else;
 * only a ClientHello with a valid cookie returns a peer, which takes the scratch SSL object. */
static gw__coap_dpeer *listen_hello(gw__coap_loop *cl, gw__coap_sock *sock, const uint8_t *buf,
                                    size_t len, const struct sockaddr *from)
{
    if (!cl->dtls_listen_to && !(cl->dtls_listen_to = BIO_ADDR_new()))
        return NULL;
    if (!cl->dtls_listen) {
        if (!(cl->dtls_listen = ssl_new(cl)))
            return NULL;
        /* it answers every hello: keeping its buffers saves 16 KB of malloc/free per hello */
        SSL_clear_mode(cl->dtls_listen, SSL_MODE_RELEASE_BUFFERS);
    }
    SSL *ssl = cl->dtls_listen;
    gw_dgram_addr_set(&cl->dtls_from, from);
    BIO_write(SSL_get_rbio(ssl), buf, (int)len);
    int rc = DTLSv1_listen(ssl, cl->dtls_listen_to);
    if (send_written(sock, &cl->dtls_from, SSL_get_wbio(ssl)))
        gw_metric_inc(GW_M_COAP_DTLS_HVR);
    (void)BIO_reset(SSL_get_rbio(ssl)); /* nothing of this datagram stays */
    ERR_clear_error();
    if (rc <= 0)
        return NULL; /* no valid cookie (answered or dropped); the next call clears the SSL */
    if (cl->n_dpeers >= cl->ad->cfg.max_dtls_peers) {
        refused_log(cl, from);
        return NULL;
    }
    gw__coap_dpeer *p = peer_new(cl, sock, from, ssl);
    if (p)
        cl->dtls_listen = NULL; /* the peer has it; a new scratch comes with the next hello */
    return p;
}

/* ---- at most max_dtls_peers_per_device established peers per device, all loops together ----
 * Each established peer of a device gets the next number of the device's sequence; when the
 * device has more than the cap, every peer of it older than its newest `cap` handshakes is
 * closed: on this loop at once, on the other loops through their inbox. */

/* Closes this loop's peers of dev numbered up to upto (close_notify first). */
static void trim_device(gw__coap_loop *cl, const gw_device *dev, uint64_t upto)
{
    if (!cl->dpeers_dev)
        return;
    gw__coap_dpeer **pp = &cl->dpeers_dev[dev_bucket(dev)];
    while (*pp) {
        gw__coap_dpeer *q = *pp;
        if (q->dev != dev || q->seq > upto) {
            pp = &q->dev_next;
            continue;
        }
        gw_metric_inc(GW_M_COAP_DTLS_DEV_CAP);
        if (GW_LOG_WARN >= gw_log_level) {
            char peer[64];
            gw_sockaddr_str(&q->addr.sa, peer, sizeof(peer));
            gw_log_write(GW_LOG_WARN, "coap", dev->id, peer,
                         "DTLS session closed: the device opened newer ones",
                         "reason=max_dtls_peers_per_device max_dtls_peers_per_device=%u",
                         cl->ad->cfg.max_dtls_peers_per_device);
        }
        if (buffers(q, uv_now(&cl->dl.loop->uv))) { /* close_notify */
            SSL_shutdown(q->ssl);
            flush(q);
            ERR_clear_error();
        }
        peer_free(cl, q); /* unlinks q from *pp */
    }
}

typedef struct trim_msg {
    gw_inbox_msg m;
    gw_adapter *a;
    const gw_device *dev;
    uint64_t upto;
} trim_msg;

static void on_trim(gw_loop *l, gw_inbox_msg *m)
{
    trim_msg *t = (trim_msg *)m;
    gw__coap_loop *cl = l->adapter_state[gw_adapter_index(t->a)];
    if (cl && !cl->dl.stopping)
        trim_device(cl, t->dev, t->upto);
    gw_config_release(t->dev->gen);
    gw_free(GW_AREA_SESSION, t);
}

/* p is established: it counts towards its device's cap. */
static void count_device_peer(gw__coap_loop *cl, gw__coap_dpeer *p)
{
    uint32_t b = dev_bucket(p->dev), cap = cl->ad->cfg.max_dtls_peers_per_device;
    uint32_t *count = &cl->ad->dtls_dev_peers[p->dev->index];
    p->seq = __atomic_add_fetch(&cl->ad->dtls_dev_seq[p->dev->index], 1, __ATOMIC_RELAXED);
    p->dev_next = cl->dpeers_dev[b];
    cl->dpeers_dev[b] = p;
    p->counted = true;
    if (__atomic_add_fetch(count, 1, __ATOMIC_RELAXED) <= cap || p->seq <= cap)
        return;
    uint64_t upto = p->seq - cap;
    trim_device(cl, p->dev, upto);
    gw_runtime *rt = cl->dl.loop->rt;
    for (unsigned i = 0; i < rt->n_loops && __atomic_load_n(count, __ATOMIC_RELAXED) > cap; i++) {
        if (&rt->loops[i] == cl->dl.loop)
            continue;
        trim_msg *t = gw_malloc(GW_AREA_SESSION, sizeof(*t));
        if (!t)
            break; /* over the cap until the device's next handshake */
        t->m.fn = on_trim;
        t->a = cl->a;
        t->dev = p->dev;
        gw_config_retain(t->dev->gen);
        t->upto = upto;
        gw_loop_post(&rt->loops[i], &t->m);
    }
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
        if (gw_limits_blocked(cl->dl.loop->rt->limits, from, now_ms())) {
            backoff_log(cl, from);
            return; /* counted in connections_limited_total{reason="auth_backoff"} */
        }
        if (!(p = listen_hello(cl, sock, buf, len, from)))
            return;
        /* p->ssl holds the ClientHello that carried the cookie */
    } else {
        if (!buffers(p, uv_now(&cl->dl.loop->uv)))
            return; /* out of memory: a lost datagram */
        BIO_write(p->rbio, buf, (int)len);
    }
    p->last = p->io = uv_now(&cl->dl.loop->uv);
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
        p->dev = id ? gw_config_device(cl->dl.loop->cfg, id) : NULL;
        if (!p->dev) {
            handshake_failed(cl, p, "unknown identity");
            return;
        }
        gw_config_retain(p->dev->gen); /* released in peer_free */
        p->established = true;
        gw_limits_auth_ok(cl->dl.loop->rt->limits, &p->addr.sa);
        GW_LOG_DEBUG("coap", p->dev->id, NULL, "DTLS session established", NULL);
        count_device_peer(cl, p);
    }
    for (;;) {
        int n = SSL_read(p->ssl, plain, cap);
        if (n > 0) {
            /* the device as this loop's generation has it: a reload that removed it or changed
             * its key ends the DTLS session */
            const gw_device *cur = gw_config_device(cl->dl.loop->cfg, p->dev->id);
            if (!cur || strcmp(cur->secret, p->dev->secret) != 0) {
                GW_LOG_INFO("coap", p->dev->id, NULL,
                            "DTLS session closed: the configuration "
                            "changed",
                            "reason=%s", cur ? "reconfigured" : "removed");
                peer_free(cl, p);
                return;
            }
            gw__coap_request(sock, plain, (size_t)n, from, false, cur);
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

bool gw__coap_dtls_send(gw__coap_sock *sock, const gw_dgram_addr *to, const uint8_t *buf, size_t n)
{
    gw__coap_dpeer *p = find(sock->cl, &to->sa);
    if (!p || !p->established || !buffers(p, uv_now(&sock->cl->dl.loop->uv)))
        return false;
    if (SSL_write(p->ssl, buf, (int)n) <= 0) {
        ERR_clear_error();
        return false;
    }
    flush(p);
    return true;
}

/* Handshake retransmissions and give-ups; established peers quiet for BUFFERS_IDLE_MS give their
 * record buffers back, those idle past the idle timeout go. */
void gw__coap_dtls_tick(gw__coap_loop *cl, bool sweep)
{
    uint64_t now = uv_now(&cl->dl.loop->uv);
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
            } else if (sweep && now - p->last >= gw_dgram_idle_ms(&cl->dl, p->dev)) {
                peer_free(cl, p);
            } else if (!p->released && now - p->io >= BUFFERS_IDLE_MS) {
                p->released = SSL_free_buffers(p->ssl) == 1; /* 0: data still pending */
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
    gw_free(GW_AREA_SESSION, cl->dpeers_dev);
    cl->dpeers = cl->dpeers_dev = NULL;
    if (cl->dtls_listen)
        SSL_free(cl->dtls_listen);
    cl->dtls_listen = NULL;
    BIO_ADDR_free(cl->dtls_listen_to);
    cl->dtls_listen_to = NULL;
}

/* stream_tls_internal.h: what stream_tls.c (connections: the memory BIO, handshakes, identity,
 * PSK) and stream_tls_ctx.c (a listener's settings, contexts, reload, rate and expiry gauge)
 * share. */
#ifndef GW_STREAM_TLS_INTERNAL_H
#define GW_STREAM_TLS_INTERNAL_H

#include <openssl/ssl.h>
#include <pthread.h>

#include "../../gateway/util/metrics.h"
#include "stream_tls.h"

#define GW__TLS_ID_CAP 64

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

struct gw_stream_tls {
    gw_stream_tls_cfg cfg;
    char *dir; /* gateway.json's folder (relative file names) */
    char adapter[16], address[64], path[96];
    uint16_t port;
    pthread_mutex_t mu; /* ctx, the bucket */
    SSL_CTX *ctx;       /* for new handshakes (each SSL object holds its own reference) */
    double tokens;
    uint64_t bucket_ms;
    int64_t not_after; /* the server certificate's expiry (unix s); 0: none */
    /* session ticket keys, carried into the context a reload builds while the files that decide
     * whom a ticket may resume (ca, crl) are unchanged: trust is their SHA-256 (trusted: valid) */
    unsigned char ticket_keys[80], trust[32];
    bool trusted;
    gw_stream_tls *next, *prev; /* every TLS listener (the expiry gauge) */
};

struct gw__stream_tls_conn {
    SSL *ssl;
    const uint8_t *src; /* ciphertext not yet taken by OpenSSL */
    uint8_t *held;      /* what the handshake's end wrote, sent with the first flush (one write) */
    char *id;           /* the device id the session names (allocated; NULL: none) */
    uint32_t src_len;   /* (one read: at most libuv's read buffer) */
    uint16_t held_len;  /* (the fields are packed into 48 bytes: a 64-byte malloc chunk) */
    bool established, saw_input, first_not_tls, psk_offered, psk_unknown;
    bool ext_psk;    /* TLS 1.3: the handshake used the device's PSK (not a ticket) */
    uint8_t by;      /* GW_TLS_BY_* */
    uint8_t id_mode; /* the listener's identity (GW_TLS_ID_*) */
};

/* stream_tls.c: the BIO method and the SSL ex_data index, once (false: out of memory); the PSK
 * callbacks the contexts install. */
bool gw__stream_tls_init(void);
unsigned int gw__stream_tls_psk_server_cb(SSL *ssl, const char *identity, unsigned char *psk,
                                          unsigned int max);
int gw__stream_tls_psk_find_cb(SSL *ssl, const unsigned char *identity, size_t len,
                               SSL_SESSION **sess);
/* session tickets of PSK sessions carry the device id and a digest of its secret (checked on
 * resumption) */
int gw__stream_tls_ticket_gen_cb(SSL *ssl, void *arg);
SSL_TICKET_RETURN gw__stream_tls_ticket_dec_cb(SSL *ssl, SSL_SESSION *ss,
                                               const unsigned char *keyname, size_t keyname_len,
                                               SSL_TICKET_STATUS status, void *arg);

#endif

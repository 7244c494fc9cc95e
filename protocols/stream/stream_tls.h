/* stream_tls.h: TLS (certificates and PSK) on a byte-stream listener (MQTT, TCP): a listener's
 * "tls" settings, its refcounted OpenSSL context (rebuilt by a reload for new handshakes), its
 * handshake rate limit, and the device identity a connection's certificate or PSK proved. The
 * stream connection decrypts before the adapter's parser and encrypts what the adapter writes
 * (stream_conn.c), so adapters get TLS without knowing it. */
#ifndef GW_STREAM_TLS_H
#define GW_STREAM_TLS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../config/cfg_schema.h"
#include "../../config/config.h"
#include "../../config/diag.h"

typedef struct gw_stream_conn gw_stream_conn;
typedef struct gw_stream_loop gw_stream_loop;
typedef struct gw_stream_tls gw_stream_tls;

enum { GW_TLS_CLIENT_NONE, GW_TLS_CLIENT_OPTIONAL, GW_TLS_CLIENT_REQUIRED };
enum { GW_TLS_ID_CN, GW_TLS_ID_URI, GW_TLS_ID_DNS };
/* What proved a connection's identity (gw_stream_tls_identity). */
enum { GW_TLS_BY_NONE, GW_TLS_BY_CERT, GW_TLS_BY_PSK };

/* A listener's "tls" object (gw_stream_tls_fields). */
typedef struct gw_stream_tls_cfg {
    char *cert, *key, *ca, *crl; /* PEM files; relative to gateway.json's folder */
    char *ciphers;               /* TLS 1.2 cipher list (NULL: OpenSSL's default, + PSK) */
    char *ciphersuites;          /* TLS 1.3 suites (NULL: AES-128-GCM first, stream_tls_ctx.c) */
    int client_cert;             /* GW_TLS_CLIENT_* */
    int min_version;             /* 0: TLS 1.2, 1: TLS 1.3 */
    bool psk;                    /* TLS-PSK: identity = device id, key = its secret */
    int identity;                /* GW_TLS_ID_*: where a client certificate names its device */
    uint32_t handshake_timeout_ms;
    uint32_t handshakes_per_second; /* per listener, all loops; 0: no limit */
} gw_stream_tls_cfg;

extern const gw_cfg_field gw_stream_tls_fields[];

/* Adapter init (main thread): the "tls" object of each entry of section[key] (parsed into ls)
 * into (*out)[i] (NULL: plain), its files loaded into an OpenSSL context now, so that a missing
 * or bad file is a configuration error naming file and JSON path. Registers the TLS metrics.
 * Returns the number of errors added to diag (GW_ENOMEM: -1). *out has ls->n entries (freed by
 * gw_stream_tls_free_all even after errors). adapter: "mqtt", "tcp". */
int gw_stream_tls_setup(const json_t *section, const char *key, const gw_listen_list *ls,
                        const char *adapter, const gw_config *gcfg, gw_diag *diag,
                        gw_stream_tls ***out);
void gw_stream_tls_free_all(gw_stream_tls **v, size_t n);
/* Hot reload (main thread): every listener's certificate, key, CA and CRL are read again into a
 * fresh context for new handshakes; established sessions keep theirs. A listener whose files fail
 * keeps its old context (logged, tls_reload_errors_total). */
void gw_stream_tls_reload(gw_stream_tls **v, size_t n);
/* The listener's bound port, for its metric label (the first loop that binds it). */
void gw_stream_tls_set_port(gw_stream_tls *t, uint16_t port);

/* The device id the connection's TLS session proved (a client certificate's CN/URI/DNS name, or
 * the PSK identity) and how (GW_TLS_BY_*); NULL / GW_TLS_BY_NONE for plain connections and TLS
 * without a client identity. */
const char *gw_stream_tls_identity(const gw_stream_conn *c, int *by);

/* The device id in a URI SAN: its last segment after '/' or ':' ("spiffe://x/dev/t-001",
 * "urn:dev:t-001" -> "t-001"). Copies at most cap-1 bytes into out; the length, or -1 when the
 * URI has no non-empty last segment or it does not fit. Pure (unit-tested). */
int gw_stream_tls_uri_id(const char *uri, size_t len, char *out, size_t cap);

/* ---- used by stream_conn.c / stream_loop.c ---- */
typedef struct gw__stream_tls_conn gw__stream_tls_conn;
/* A token of the listener's handshake bucket: false when over handshakes_per_second (counted). */
bool gw__stream_tls_admit(gw_stream_tls *t);
/* The connection's TLS state from the listener's current context: 0 or GW_ENOMEM. Sets the
 * handshake deadline. */
int gw__stream_tls_open(gw_stream_conn *c, gw_stream_tls *t);
void gw__stream_tls_free(gw_stream_conn *c);
/* The loop's shared BIO, at the end (gw_stream_free_all). */
void gw__stream_tls_loop_free(gw_stream_loop *sl);
/* Ciphertext read from the socket: handshake, then decrypted bytes to the adapter (through
 * gw__stream_feed). */
void gw__stream_tls_input(gw_stream_conn *c, const uint8_t *buf, size_t n);
/* Encrypts c->out into the loop's scratch, after what the handshake's end left to send; its bytes
 * in *p / *n. 0, or an error (close). */
int gw__stream_tls_encrypt(gw_stream_conn *c, const uint8_t **p, size_t *n);
/* Bytes the handshake's end left for the next flush (0 without TLS). */
size_t gw__stream_tls_held(const gw_stream_conn *c);
/* True once the handshake has completed. */
bool gw__stream_tls_ready(const gw_stream_conn *c);
/* The handshake deadline passed (sweep). */
void gw__stream_tls_expired(gw_stream_conn *c);
/* The peer closed or reset the connection: counted as a failed handshake if it was in one. */
void gw__stream_tls_eof(gw_stream_conn *c);
/* close_notify into the socket before the connection closes (established sessions). */
void gw__stream_tls_shutdown(gw_stream_conn *c);

#endif

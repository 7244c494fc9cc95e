/* coap_internal.h: what the CoAP adapter's files share: its config, the per-loop state (sockets,
 * the message-id dedup cache, open exchanges, Block1 transfers) and the per-device session with
 * its observer and the commands waiting for it (on protocols/dgram/'s sockets and sessions). */
#ifndef GW_COAP_INTERNAL_H
#define GW_COAP_INTERNAL_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "../../config/cfg_schema.h"
#include "../../gateway/core/runtime.h"
#include "../../gateway/core/session.h"
#include "../dgram/dgram_layer.h"
#include "coap_metrics.h"
#include "coap_msg.h"

#define GW_COAP_HELD_MAX     4 /* commands held for a device that does not observe */
#define GW_COAP_MAX_RETRANS  4 /* RFC 7252 MAX_RETRANSMIT */
#define GW_COAP_ACK_TIMEOUT  2000
#define GW_COAP_EXCH_LIFE_MS 247000 /* RFC 7252 EXCHANGE_LIFETIME: dedup entries live this long */
#define GW_COAP_TICK_MS      50
#define GW_COAP_CON_MAX      16 /* CONs of ours awaiting a device's ACK, per session */

/* A CoAP product's data (gw_product.adapter_data): the keys of its "auth" CoAP owns. */
typedef struct gw__coap_product {
    bool query_token; /* "coap_query_token" (default true): plain CoAP's ?token= is accepted */
} gw__coap_product;

typedef struct gw__coap_cfg {
    gw_listen_list listeners;
    gw_listen_list dtls_listeners;
    uint32_t idle_timeout_ms;
    uint32_t max_block_bytes; /* one Block1 transfer (and one plain payload) at most */
    int64_t max_block_total;  /* all Block1 transfers of the gateway together */
    uint32_t max_wait_s;      /* ?wait=N cap */
    uint32_t piggyback_ms;    /* answer in the ACK when the commit takes less than this */
    uint32_t dedup_entries;   /* per loop; message ids remembered for EXCHANGE_LIFETIME */
    uint32_t busy_max_age_s;  /* Max-Age of a 5.03 */
    uint32_t rcvbuf;
    uint32_t max_dtls_peers; /* per loop: DTLS peers past the cookie (handshaking or established) */
    uint32_t max_dtls_peers_per_device; /* all loops: established DTLS peers of one device */
    uint32_t max_con_bytes;             /* per loop: bytes of our CONs kept for retransmission */
} gw__coap_cfg;

typedef struct gw__coap_adapter {
    gw_dgram_adapter dg; /* first: the bound ports */
    gw__coap_cfg cfg;
    int64_t block_total;        /* atomic: bytes held by Block1 transfers, all loops */
    struct ssl_ctx_st *ssl_ctx; /* DTLS-PSK (coaps), NULL without dtls_listeners */
    uint32_t *dtls_dev_peers;   /* atomic, per device index: its established DTLS peers */
    uint64_t *dtls_dev_seq;     /* atomic, per device index: its DTLS peers established so far */
} gw__coap_adapter;

typedef struct gw__coap_loop gw__coap_loop;
typedef struct gw__coap_sess gw__coap_sess;
typedef struct gw__coap_xchg gw__coap_xchg;
typedef struct gw__coap_dpeer gw__coap_dpeer;

typedef struct gw__coap_sock {
    gw_dgram_sock d; /* first */
    gw__coap_loop *cl;
    bool dtls; /* a coaps socket: datagrams go through the peer's DTLS session */
} gw__coap_sock;

/* A message id seen from a peer: its answer (to resend on a duplicate) or the exchange still
 * working on it. Direct-mapped: a newer id may evict an older one (bounded memory). 64 bytes; an
 * answer of up to GW__COAP_DEDUP_INLINE bytes (a piggybacked 2.04 with its token) is kept in the
 * entry, a longer one in its own allocation. An entry is in use while expires is not 0. */
#define GW__COAP_DEDUP_INLINE 16
typedef struct gw__coap_dedup {
    gw_dgram_addr addr;
    uint16_t mid;
    uint16_t resp_len; /* 0: no answer kept */
    gw__coap_xchg *x;  /* still pending */
    uint64_t expires;  /* uv_now ms; 0: a free slot */
    union {
        uint8_t *heap; /* resp_len > GW__COAP_DEDUP_INLINE */
        uint8_t inl[GW__COAP_DEDUP_INLINE];
    } resp;
} gw__coap_dedup;

/* The answer a dedup entry keeps (resp_len bytes; NULL when none). */
static inline const uint8_t *gw__coap_dedup_resp(const gw__coap_dedup *d)
{
    return !d->resp_len ? NULL : d->resp_len > GW__COAP_DEDUP_INLINE ? d->resp.heap : d->resp.inl;
}

typedef enum gw__coap_xstate {
    GW__X_COMMIT,  /* waiting for the event's commit */
    GW__X_WAIT,    /* committed; ?wait: holding the answer for a command */
    GW__X_CONFIRM, /* a CON we sent (separate response, notification) awaiting its ACK */
} gw__coap_xstate;

/* One request being answered, or one CON of ours awaiting an ACK. */
struct gw__coap_xchg {
    gw__coap_xchg *next, *prev; /* the loop's list */
    gw__coap_loop *cl;
    gw__coap_sess *s; /* holds a reference; NULL for none */
    gw__coap_sock *sock;
    gw_dgram_addr addr;
    gw__coap_dedup *dd; /* the dedup entry pending on x (valid while dd->x == x) */
    gw__coap_xstate state;
    uint8_t req_type; /* CON or NON */
    uint8_t tkl, token[8];
    uint16_t mid;         /* the request's; then the CON's own */
    uint32_t ev_token;    /* dispatch token */
    gw__coap_xchg *tnext; /* the loop's token hash */
    bool in_tokens;
    uint32_t wait_s; /* ?wait=N (capped), reports only */
    bool report;
    bool acked;  /* empty ACK sent: the answer goes as a separate response */
    bool notify; /* an observe notification */
    bool has_block1;
    uint32_t block1;       /* echoed */
    uint64_t ack_deadline; /* piggyback window end */
    uint64_t wait_deadline;
    uint64_t rexmit_at;
    unsigned retries, rexmit_ms;
    uint8_t *out; /* the CON's bytes */
    uint16_t out_len;
};

/* Block1 reassembly of one peer. */
typedef struct gw__coap_block {
    struct gw__coap_block *next;
    gw_dgram_addr addr;
    char path[200]; /* product/device/resource, so a new transfer is recognised */
    uint8_t *buf;
    size_t len, cap;
    uint64_t last;
} gw__coap_block;

struct gw__coap_loop {
    gw_dgram_loop dl; /* first: sockets, tick timer, sessions, shutdown */
    gw_adapter *a;
    gw__coap_adapter *ad;
    gw__coap_sock *socks;
    size_t n_socks;
    uint64_t next_sweep;
    gw__coap_dedup *dedup;
    uint32_t dedup_cap;
    gw__coap_xchg *xchgs;
    gw__coap_xchg *tokens[1024]; /* ev_token -> exchange waiting for its commit */
    gw__coap_block *blocks;
    uint16_t next_mid;
    uint32_t next_ev_token;
    uint8_t *out; /* encoding buffer */
    size_t out_cap;
    gw__coap_dpeer **dpeers;     /* DTLS peers by address (coap_dtls.c) */
    gw__coap_dpeer **dpeers_dev; /* established DTLS peers by device index, newest first */
    uint32_t n_dpeers;
    struct ssl_st *dtls_listen;        /* answers cookie-less ClientHellos (DTLSv1_listen) */
    union bio_addr_st *dtls_listen_to; /* DTLSv1_listen's out parameter (unused with mem BIOs) */
    gw_dgram_addr dtls_from;           /* the source DTLSv1_listen's cookie is for */
    uint8_t *dtls_buf;                 /* decrypted datagrams */
    size_t dtls_buf_size;
    size_t con_bytes;         /* CONs kept for retransmission: copies + exchanges (max_con_bytes) */
    gw__coap_xchg *answering; /* a report/poll answer a command may ride on right now */
};

/* A command encoded for a device that does not observe: it rides on the next response. */
typedef struct gw__coap_held {
    uint16_t len;
    uint8_t data[];
} gw__coap_held;

/* What a session needs only once its device observes or a command waits for it: allocated then
 * (gw__coap_sess_ext), kept until the session ends. */
typedef struct gw__coap_sess_ext {
    /* observe on .../function/invoke */
    uint8_t obs_tkl, obs_token[8];
    uint32_t obs_seq;
    gw_dgram_addr obs_addr;
    gw__coap_sock *obs_sock;
    gw__coap_held *held[GW_COAP_HELD_MAX];
} gw__coap_sess_ext;

/* An idle device costs this struct (its loop is d.dl, the gw__coap_loop's first member). */
struct gw__coap_sess {
    gw_dgram_sess d;        /* first: address, idle deadline, index */
    gw__coap_sess_ext *ext; /* NULL until it observes or a command is held */
    uint16_t n_con;         /* CONs tracked for retransmission */
    uint8_t n_held;         /* ext->held */
    bool observing;
};

/* The session's loop. */
static inline gw__coap_loop *gw__coap_sess_loop(const gw__coap_sess *s)
{
    return (gw__coap_loop *)s->d.dl;
}

/* coap.c: a loop's CoAP state without sockets or timer (coap_start adds them; the fuzz target
 * feeds gw__coap_request directly), and its release after the loop has stopped. */
gw__coap_loop *gw__coap_loop_new(gw_adapter *a, gw_loop *loop);
void gw__coap_loop_free(gw__coap_loop *cl);

/* coap_session.c: sessions, auth, idle, sending, dedup, exchanges */
gw__coap_sess *gw__coap_sess_find(gw__coap_loop *cl, uint32_t dev_index);
gw__coap_sess *gw__coap_sess_open(gw__coap_loop *cl, gw__coap_sock *sock, const gw_device *dev,
                                  const struct sockaddr *from);
void gw__coap_sess_close(gw__coap_sess *s, const char *reason);
void gw__coap_sweep(gw__coap_loop *cl);
void gw__coap_close_all(gw__coap_loop *cl, const char *reason);
extern const gw_dgram_ops gw__coap_dgram_ops;
/* coap.c: gw_dgram_ops.listen: binds listener i's socket (plain listeners first, then DTLS). */
int gw__coap_listen(gw_dgram_loop *dl, size_t i);
/* Sends a CoAP message to a peer (through its DTLS session on a coaps socket). */
void gw__coap_send(gw__coap_sock *sock, const gw_dgram_addr *to, const uint8_t *p, size_t n);
/* Sends a datagram as is. */
void gw__coap_send_raw(gw__coap_sock *sock, const gw_dgram_addr *to, const uint8_t *p, size_t n);
void gw__coap_count_response(uint8_t code);

gw__coap_dedup *gw__coap_dedup_find(gw__coap_loop *cl, const struct sockaddr *from, uint16_t mid);
gw__coap_dedup *gw__coap_dedup_slot(gw__coap_loop *cl, const struct sockaddr *from, uint16_t mid);
void gw__coap_dedup_store(gw__coap_loop *cl, const gw_dgram_addr *addr, uint16_t mid,
                          const uint8_t *p, size_t n);
/* Keeps p[0..n) as d's answer (the exchange it was pending on is done). */
void gw__coap_dedup_keep(gw__coap_dedup *d, const uint8_t *p, size_t n);
/* Forgets d's answer (its memory). */
void gw__coap_dedup_drop(gw__coap_dedup *d);

gw__coap_xchg *gw__coap_xchg_new(gw__coap_loop *cl, gw__coap_sess *s);
/* x's dedup entry (the one pending on it, else the one of its peer and message id), or NULL. */
gw__coap_dedup *gw__coap_xchg_dedup(gw__coap_xchg *x);
void gw__coap_xchg_free(gw__coap_xchg *x);
/* Answers x (code, optional Content-Format + payload) in its ACK, as a NON, or as a CON separate
 * response; frees x unless it becomes a CON awaiting its ACK. */
void gw__coap_xchg_answer(gw__coap_xchg *x, uint8_t code, int cf, const uint8_t *payload, size_t n);
/* Sends a CON (bytes already encoded with mid) and tracks it until ACK/RST or give-up. */
void gw__coap_send_con(gw__coap_xchg *x, const uint8_t *p, size_t n);
void gw__coap_tick(gw__coap_loop *cl);
/* An ACK or RST from a peer: the CON of ours it answers. */
void gw__coap_on_ack(gw__coap_loop *cl, const gw_coap_msg *m, const struct sockaddr *from);
uint16_t gw__coap_mid(gw__coap_loop *cl);

/* coap_request.c: one CoAP message from a peer; psk_dev: the device a DTLS session authenticated
 * (NULL on plain CoAP: the request's ?token= authenticates it). */
void gw__coap_request(gw__coap_sock *sock, const uint8_t *buf, size_t len,
                      const struct sockaddr *from, bool truncated, const gw_device *psk_dev);
void gw__coap_blocks_free(gw__coap_loop *cl, bool all);

/* Sends the empty ACK of x's CON request: its answer will be a separate response. */
void gw__coap_xchg_ack_empty(gw__coap_xchg *x);
/* Puts x in the token hash (it waits for ev_token's commit). */
void gw__coap_xchg_await(gw__coap_xchg *x, uint32_t ev_token);

/* coap_dtls.c */
int gw__coap_dtls_init(gw__coap_adapter *ad, const gw_config *gcfg, gw_diag *diag);
void gw__coap_dtls_uninit(gw__coap_adapter *ad);
void gw__coap_dtls_input(gw__coap_sock *sock, const uint8_t *buf, size_t len,
                         const struct sockaddr *from);
bool gw__coap_dtls_send(gw__coap_sock *sock, const gw_dgram_addr *to, const uint8_t *buf, size_t n);
void gw__coap_dtls_tick(gw__coap_loop *cl, bool sweep);
void gw__coap_dtls_free_all(gw__coap_loop *cl);

/* coap_observe.c */
int gw__coap_command(gw_session *base, const struct gw_command *c, gw_error *err);
void gw__coap_observe(gw__coap_sess *s, gw__coap_xchg *x, const gw_coap_req *r);
/* A report's events are committed: answer it (with a held command, or hold it for ?wait). */
void gw__coap_report_done(gw__coap_xchg *x, uint32_t wait_s);
void gw__coap_held_clear(gw__coap_sess *s);
/* s's extension, allocated on first use; NULL when out of memory. */
gw__coap_sess_ext *gw__coap_sess_ext_get(gw__coap_sess *s);
void gw__coap_observer_drop(gw__coap_sess *s, const char *why);

#endif

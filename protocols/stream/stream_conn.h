/* stream_conn.h: the mechanics every byte-stream device adapter (MQTT, TCP) shares: listeners on
 * every loop, a connection embedding gw_session and its socket (no libuv handle: the loop's epoll
 * set, stream_io.c), reading on the loop's shared buffer
 * with partial input kept per connection, back-pressure, in-flight and output pauses, acks sent in
 * arrival order once committed, bounded output, close with a refcounted session, and deadline
 * sweeps. The adapter supplies a small callback table (process bytes / send an ack / closing /
 * expired). */
#ifndef GW_STREAM_CONN_H
#define GW_STREAM_CONN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../../config/cfg_schema.h"
#include "../../config/diag.h"
#include "../../gateway/util/log.h"
#include "../../gateway/util/metrics.h"
#include "../../gateway/core/runtime.h"
#include "../../gateway/core/session.h"
#include "stream_proxy_cfg.h"
#include "stream_tls.h"

typedef struct gw_stream_conn gw_stream_conn;
typedef struct gw_stream_loop gw_stream_loop;

/* Connection states: adapters move NEW -> OPEN (authenticated); the stream sets CLOSING. */
enum { GW_STREAM_NEW, GW_STREAM_OPEN, GW_STREAM_CLOSING };

/* Ack ring entries: the low 30 bits are the adapter's (passed to send_ack), or, for entries pushed
 * with gw_stream_ack_push_bytes, the length of bytes held in the connection's ack byte queue. */
#define GW_STREAM_ACK_READY (1u << 31)
#define GW_STREAM_ACK_BYTES (1u << 30)
#define GW_STREAM_ACK_MASK  (GW_STREAM_ACK_BYTES - 1)

typedef struct gw_stream_ops {
    /* first: the connections' session ops, GW_STREAM_SESSION_OPS("mqtt", command op) */
    gw_session_ops session;
    size_t conn_size; /* the adapter's connection struct, which starts with gw_stream_conn */
    /* A new connection, accepted and listed: set its first deadline (login/connect timeout). */
    void (*opened)(gw_stream_conn *c);
    /* Parses every whole unit in buf; returns the bytes consumed. Stops early (the rest is kept)
     * when the connection closes or gw_stream_hold says so; may set c->in_need to the size of the
     * unit it waits for. */
    size_t (*process)(gw_stream_conn *c, const uint8_t *buf, size_t len);
    /* Appends the ack for a ring entry (value without flag bits) to the output. NULL if the
     * adapter only pushes byte acks. */
    void (*send_ack)(gw_stream_conn *c, uint32_t entry);
    /* The connection is closing with reason, before its offline event: returns true when a last
     * will was applied (recorded in the offline event). May be NULL. */
    bool (*closing)(gw_stream_conn *c, const char *reason, bool will);
    /* The connection's deadline passed (sweep): the adapter closes it or sets a new deadline. */
    void (*expired)(gw_stream_conn *c);
    /* Frees what the adapter owns in its connection (not the connection). May be NULL. */
    void (*destroy)(gw_stream_conn *c);
} gw_stream_ops;

/* Output bounds of one adapter's connections (issue 13). Unsent output is the write queue
 * plus what this iteration appended: past high_water the connection is not read again until it
 * falls below low_water; past hard_limit, or when it makes no progress for stall_timeout_ms, the
 * connection closes with reason "output_overflow" (counted in overflow_metric). */
typedef struct gw_stream_out_cfg {
    uint32_t high_water, low_water, hard_limit, stall_timeout_ms;
    uint32_t loop_limit; /* bytes queued for all of one loop's connections of the adapter */
    gw_metric paused_metric, overflow_metric;
} gw_stream_out_cfg;

#define GW_STREAM_OUT_HIGH_WATER 65536u
#define GW_STREAM_OUT_LOW_WATER  16384u
#define GW_STREAM_OUT_HARD_LIMIT 1048576u
#define GW_STREAM_OUT_STALL_MS   30000u
#define GW_STREAM_OUT_LOOP_LIMIT 67108864u

/* The adapter config fields of an embedded gw_stream_out_cfg (member out_ of type_). */
#define GW__STREAM_OUT_FIELD(key_, type_, member_, min_, max_, def_, doc_)                         \
    {                                                                                              \
        (key_), GW_CFG_UINT32, offsetof(type_, member_), (min_), (max_), NULL, false,              \
            GW_CFG_DEF(def_), .doc = (doc_)                                                        \
    }
#define GW_STREAM_OUT_FIELDS(type_, out_)                                                          \
    GW__STREAM_OUT_FIELD("output_high_water", type_, out_.high_water, 1024, 67108864,              \
                         GW_STREAM_OUT_HIGH_WATER,                                                 \
                         "Unsent output bytes of a connection past which it is not read."),        \
        GW__STREAM_OUT_FIELD(                                                                      \
            "output_low_water", type_, out_.low_water, 0, 67108864, GW_STREAM_OUT_LOW_WATER,       \
            "Unsent output bytes below which a paused connection is read again."),                 \
        GW__STREAM_OUT_FIELD("output_hard_limit", type_, out_.hard_limit, 4096, 268435456,         \
                             GW_STREAM_OUT_HARD_LIMIT,                                             \
                             "Unsent output bytes past which the connection is closed "            \
                             "(`output_overflow`)."),                                              \
        GW__STREAM_OUT_FIELD("output_stall_timeout_ms", type_, out_.stall_timeout_ms, 100,         \
                             86400000, GW_STREAM_OUT_STALL_MS,                                     \
                             "Queued output that makes no progress for this many ms closes the "   \
                             "connection."),                                                       \
        GW__STREAM_OUT_FIELD("output_loop_limit", type_, out_.loop_limit, 65536, 4294967295u,      \
                             GW_STREAM_OUT_LOOP_LIMIT,                                             \
                             "Bytes queued for all of one loop's connections of the adapter; the " \
                             "connection that would pass it is closed.")

/* Sets the defaults and metrics (tests; adapters take the defaults from GW_STREAM_OUT_FIELDS and
 * set the metrics) / checks low < high < hard <= loop after gw_cfg_parse (1 = error). */
void gw_stream_out_defaults(gw_stream_out_cfg *o, gw_metric paused, gw_metric overflow);
int gw_stream_out_check(const gw_stream_out_cfg *o, const char *file, const char *section,
                        gw_diag *diag);

typedef struct gw_stream_server {
    uv_tcp_t tcp;
    gw_stream_loop *sl;
    uint32_t index; /* listener index in the adapter's list */
    /* added at run time (gw_stream_listen_add): the adapter's data for what it serves, handed to
     * each connection it accepts (gw_stream_conn.serve); NULL for the start-up listeners */
    const void *serve;
    gw_listen at;       /* as configured (port 0: ephemeral), to find it again */
    gw_stream_tls *tls; /* TLS settings and context (NULL: plain) */
    /* "proxy_protocol" (NULL: none; only start-up listeners: a reload adding or changing one
     * needs a restart) */
    const gw_stream_proxy *proxy;
    bool closed;
    struct gw_stream_server *extra_next; /* the run-time ones (sl->extra) */
} gw_stream_server;

/* One adapter's per-loop state (in loop->adapter_state). */
struct gw_stream_loop {
    gw_adapter *a;
    gw_loop *loop;
    const gw_stream_ops *ops;
    void *user; /* the adapter's own (its config) */
    uint32_t max_inflight;
    gw_stream_server *servers;
    size_t n_servers;
    gw_stream_server *extra; /* listeners added by a reload (each allocated, freed at the end) */
    uv_timer_t sweep;
    gw_stream_conn *conns;     /* every connection on this loop (doubly linked) */
    gw_stream_conn *paused;    /* stopped for back-pressure (singly linked via pnext) */
    gw_stream_out_cfg out;     /* output bounds */
    size_t out_queued;         /* bytes in this loop's write requests (bounded by out.loop_limit) */
    gw_stream_conn *out_ready; /* paused for output, now below low water (via onext, retained) */
    uv_timer_t out_kick;       /* resumes out_ready on the next iteration */
    uint64_t last_limit_log;   /* uv_now of the last "refused by a per-source limit" line */
    /* TLS scratch (allocated on the first TLS connection): decrypted bytes of one record, and
     * the ciphertext of one flush until it is written */
    uint8_t *tls_plain;
    uint8_t *tls_out;
    size_t tls_out_len, tls_out_cap;
    void *tls_bio; /* the BIO every TLS connection of the loop shares (stream_tls.c) */
    /* The connections' sockets (stream_io.c): one epoll set per loop, watched by one uv_poll_t,
     * each socket registered with its connection as data (no libuv handle per connection). */
    int ep;
    uv_poll_t ep_poll;
    /* connections closed this iteration: their last step (gw__stream_reap) on the next one */
    gw_stream_conn *reap; /* (linked through base.index_next) */
    uv_timer_t reap_kick;
    bool stopping;
};

/* Output the socket did not take yet (stream_io.c): allocated while any, freed once written. */
typedef struct gw__stream_wq {
    uint64_t progress; /* uv_now of the last progress */
    uint32_t head, len, cap;
    uint32_t seen; /* len at the last sweep */
    uint8_t data[];
} gw__stream_wq;

/* A connection's pending acks (stream_conn.c): a ring of entries (power-of-two cap), and the
 * bytes of byte acks queued behind them. */
typedef struct gw__stream_acks {
    uint8_t *b; /* byte acks (allocated only while any) */
    uint32_t b_head, b_len, b_cap;
    uint32_t head, cap;
    uint32_t ring[];
} gw__stream_acks;

struct gw_stream_conn {
    gw_session base; /* first: a gw_session * is a gw_stream_conn * */
    gw_stream_loop *sl;
    gw_stream_conn *prev, *next, *pnext;
    uint8_t *in; /* unparsed input carried between reads (allocated only while needed) */
    uint32_t in_len, in_cap, in_need;
    uint32_t listener; /* index of the listener that accepted it */
    uint8_t *out;      /* output collected this iteration, written by flush */
    uint32_t out_len, out_cap;
    gw__stream_acks *ak;     /* pending acks in arrival order (allocated only while any) */
    uint32_t ack_n, ack_seq; /* entries in ak; ack_seq: sequence number of the head entry */
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } src; /* the peer: the socket's, or the PROXY header's source on a proxy_protocol listener
            * (admitted by the per-source limits, released at close; what logs print) */
    uint32_t held_ms;  /* a new connection held by a full store: its deadline's time left */
    uint64_t deadline; /* uv_now ms; 0 = none; ops->expired when passed */
    const void *serve; /* that listener's serve data if it was added at run time, else NULL */
    gw__stream_tls_conn *tls; /* TLS state (NULL: plain) */
    gw_stream_conn *onext;    /* sl->out_ready */
    gw__stream_wq *wq;        /* output the socket did not take yet (NULL: none) */
    int fd;                   /* the socket (-1 once closed) */
    uint8_t state;            /* GW_STREAM_* */
    uint8_t ev; /* the events the socket is registered for in sl->ep (0: not registered) */
    /* flags (bit-fields: an idle connection's bytes count) */
    bool admitted : 1;   /* counted in the per-source limits */
    bool proxy_wait : 1; /* a proxy_protocol listener's connection before its header */
    bool reading : 1, paused_bp : 1, paused_inflight : 1, pause_listed : 1, in_list : 1, busy : 1;
    bool eof : 1; /* the peer half-closed: no more reading; closed once its acks are out */
    /* the adapter's opened() waits for the store (a TLS identity's login on a full store, held
     * with gw_stream_hold): called again when the store's back-pressure lifts */
    bool open_held : 1;
    /* output over high water / listed / over limit */
    bool paused_out : 1, out_listed : 1, out_overflow : 1;
    bool out_oom : 1; /* output lost to out of memory: nothing more is sent, the flush closes */
};

/* The session ops of every stream connection (the stream module implements them). */
void gw__stream_committed(gw_session *s, gw_event *ev);
void gw__stream_kick(gw_session *s);
void gw__stream_flush(gw_session *s);
void gw__stream_peer(gw_session *s, char *buf, size_t cap);
void gw__stream_destroy(gw_session *s);
/* area_: the log area; command_: the adapter's session command op (NULL: no commands). */
#define GW_STREAM_SESSION_OPS(area_, command_)                                                     \
    {                                                                                              \
        .area = (area_), .committed = gw__stream_committed, .kick = gw__stream_kick,               \
        .flush = gw__stream_flush, .peer = gw__stream_peer, .destroy = gw__stream_destroy,         \
        .command = (command_),                                                                     \
    }

/* ---- per loop (adapter ops glue) ---- */

/* Allocates the loop state, starts the sweep timer and listens on every listener (SO_REUSEPORT;
 * bound_ports[i], shared by every loop, is set by the first loop and reported for --ready-fd).
 * tls: NULL, or per listener its TLS (NULL: plain), from gw_stream_tls_setup; proxy likewise,
 * from gw_stream_proxy_setup (NULL: no PROXY header expected). */
int gw_stream_start(gw_adapter *a, gw_loop *loop, const gw_stream_ops *ops, void *user,
                    const gw_listen_list *ls, uint16_t *bound_ports, uint32_t max_inflight,
                    const gw_stream_out_cfg *out, gw_stream_tls *const *tls,
                    gw_stream_proxy *const *proxy);
gw_stream_loop *gw_stream_loop_of(gw_adapter *a, gw_loop *loop);
/* Back-pressure lifted: every connection paused for it parses what it held and reads again. */
void gw_stream_resume_all(gw_adapter *a, gw_loop *loop);
/* Shutdown step 1: close the listeners, stop reading. */
void gw_stream_stop(gw_adapter *a, gw_loop *loop);
/* Shutdown step 2: closes every connection with reason (no will), and the sweep timer. */
void gw_stream_close_all(gw_adapter *a, gw_loop *loop, const char *reason);
/* Frees every loop's state (uninit, after the loops stopped). */
void gw_stream_free_all(gw_adapter *a);
/* Hot reload, on the loop's thread (one loop after the other, so that *bound is shared): listens
 * on li too (serve: handed to each connection it accepts), or stops listening on li (a listener
 * with the same address, configured port and product; its connections stay). 0 or -errno. */
int gw_stream_listen_add(gw_adapter *a, gw_loop *loop, const gw_listen *li, uint16_t *bound,
                         const void *serve);
void gw_stream_listen_remove(gw_adapter *a, gw_loop *loop, const gw_listen *li);

/* ---- per connection (adapter's process and handlers) ---- */

static inline bool gw_stream_closing(const gw_stream_conn *c)
{
    return c->state == GW_STREAM_CLOSING;
}

/* Closes (async): the adapter's closing hook, the offline event if the device is online, pending
 * output written, the handle closed; memory goes with the last session reference. */
void gw_stream_close(gw_stream_conn *c, const char *reason, bool will);
/* True when a unit that stores events must wait: too many acks in flight, the store queue is
 * full (then the connection pauses until the runtime resumes it), or its output is over the high
 * water mark (see gw_stream_out_full). Call before ingesting, and before a new connection's
 * login or CONNECT (its online event): held there, its login deadline stops until resumed. */
bool gw_stream_hold(gw_stream_conn *c);
/* True when the connection's unsent output is over its high water mark (or it is paused for
 * output): the unit must wait, the connection is not read until its output drains. Call before
 * any unit that answers. */
bool gw_stream_out_full(gw_stream_conn *c);
/* Bytes of output not taken by the kernel yet (the connection's write queue + this iteration's). */
size_t gw_stream_unsent(const gw_stream_conn *c);

/* Output, written at the end of the loop iteration (or now, with gw_stream_flush). Past the
 * hard limit gw_stream_out_reserve refuses (GW_ETOOBIG) and the flush closes the connection
 * (output_overflow). */
int gw_stream_out_reserve(gw_stream_conn *c, size_t n);
void gw_stream_out(gw_stream_conn *c, const uint8_t *p, size_t n);
void gw_stream_flush(gw_stream_conn *c);

/* Acks in arrival order: push an entry (ready: nothing to wait for), get its sequence number;
 * gw_stream_ack_ready marks one ready and sends every ready entry at the head. Entries that reach
 * max_inflight pause reading until half have been sent. 0 or GW_ENOMEM. */
int gw_stream_ack_push(gw_stream_conn *c, uint32_t entry, bool ready, uint32_t *seq);
int gw_stream_ack_push_bytes(gw_stream_conn *c, const uint8_t *p, size_t n, bool ready,
                             uint32_t *seq);
void gw_stream_ack_ready(gw_stream_conn *c, uint32_t seq);
/* ORs adapter bits (within GW_STREAM_ACK_MASK) into a pending entry not sent yet (MQTT 5: the
 * reason code of a refused PUBLISH). */
void gw_stream_ack_or(gw_stream_conn *c, uint32_t seq, uint32_t bits);

/* Authentication outcome of this connection's source, for the per-source back-off. */
void gw_stream_auth_failed(gw_stream_conn *c);
void gw_stream_auth_ok(gw_stream_conn *c);

/* "127.0.0.1:5501". */
void gw_stream_peer(const gw_stream_conn *c, char *buf, size_t cap);
const gw_config *gw_stream_cfg(const gw_stream_conn *c);

/* Logs with the adapter's area, the device (once known) and the peer. */
#define GW_STREAM_LOG(level, c, msg, ...)                                                          \
    do {                                                                                           \
        if ((level) >= gw_log_level) {                                                             \
            char peer_[64];                                                                        \
            gw_stream_peer((c), peer_, sizeof(peer_));                                             \
            gw_log_write((level), (c)->base.ops->area, (c)->base.dev ? (c)->base.dev->id : NULL,   \
                         peer_, (msg), __VA_ARGS__);                                               \
        }                                                                                          \
    } while (0)

#endif

/* dgram_layer.h: the datagram twin of protocols/stream/: what the datagram adapters (UDP, CoAP)
 * share: a loop's sockets (one SO_REUSEPORT socket per listener on every loop, the bound ports,
 * reading started and stopped for back-pressure and shutdown, the loop's timer), the per-device
 * datagram session (index by device, last authenticated address, idle deadline and sweep,
 * take-over by another loop, close-all at shutdown) and the peer-address hash. An adapter embeds
 * gw_dgram_loop, gw_dgram_sock and gw_dgram_sess first in its own structs and gives a
 * gw_dgram_ops table. Loop thread only. The I/O batching (recvmmsg buffer, output batch) is
 * gateway/core/dgram.h's. */
#ifndef GW_DGRAM_LAYER_H
#define GW_DGRAM_LAYER_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../../gateway/core/listen.h"
#include "../../gateway/util/metrics.h"
#include "../../gateway/core/runtime.h"
#include "../../gateway/core/session.h"
#include "../../gateway/core/session_index.h"

typedef union gw_dgram_addr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
} gw_dgram_addr;

typedef struct gw_dgram_loop gw_dgram_loop;
typedef struct gw_dgram_sess gw_dgram_sess;

/* An adapter's datagram state shared by its loops (first member of the adapter's state). */
typedef struct gw_dgram_adapter {
    uint16_t *bound_ports; /* per listener: the port the first loop bound (for port 0) */
} gw_dgram_adapter;

/* One listener's socket on one loop (first member of the adapter's socket). */
typedef struct gw_dgram_sock {
    uv_udp_t h;
    gw_dgram_loop *dl;
    struct gw_dgram_sock *next; /* the loop's sockets */
    bool receiving, open;
} gw_dgram_sock;

/* What an adapter gives the layer. */
typedef struct gw_dgram_ops {
    const char *area;     /* log area and session protocol: "udp", "coap" */
    bool pause_when_full; /* stop reading while the store is full (else the adapter answers) */
    struct {
        const gw_metric *idle, *takeover; /* handles (set at registration): sessions closed by the
                                           * sweep, taken over by another loop */
    } metric;
    /* A datagram read from s (truncated: larger than the receive slot). */
    void (*datagram)(gw_dgram_sock *s, const uint8_t *p, size_t n, const struct sockaddr *from,
                     bool truncated);
    void (*tick)(gw_dgram_loop *dl); /* the loop's timer; NULL: the idle sweep */
    /* Binds the adapter's socket of listener i (with gw_dgram_listen). */
    int (*listen)(gw_dgram_loop *dl, size_t i);
    /* A session closes: before its offline event (may be NULL). */
    void (*close_begin)(gw_dgram_sess *s);
    /* ... and out of the index, before the adapter's reference is dropped (may be NULL). */
    void (*close_end)(gw_dgram_sess *s);
} gw_dgram_ops;

/* A loop's datagram state (first member of the adapter's per-loop state). */
struct gw_dgram_loop {
    const gw_dgram_ops *ops;
    gw_dgram_adapter *da;
    gw_loop *loop;
    uint32_t idle_ms; /* the adapter's idle timeout; a product's own wins */
    gw_dgram_sock *socks;
    uv_timer_t timer;
    gw_session_index sessions; /* device index -> session */
    bool paused, stopping;
    bool pause_pending; /* the store filled up inside a recvmmsg batch: stop reading after it */
};

/* The gw_session_ops of a datagram session: the adapter's commit, destroy and command entries,
 * the layer's kick, peer and flush. */
#define GW_DGRAM_SESS_OPS(area_, committed_, destroy_, command_)                                   \
    {                                                                                              \
        .area = (area_), .committed = (committed_), .kick = gw_dgram_sess_kick,                    \
        .flush = gw_dgram_sess_flush, .peer = gw_dgram_sess_peer, .destroy = (destroy_),           \
        .command = (command_),                                                                     \
    }

/* A device's datagram session (first member of the adapter's session). */
struct gw_dgram_sess {
    gw_session base; /* first: a gw_session * is a gw_dgram_sess * */
    gw_dgram_loop *dl;
    gw_dgram_sock *sock; /* the socket the device last sent to (answers go out through it) */
    gw_dgram_addr addr;  /* the device's last authenticated source address */
    bool closing;        /* (in addr's padding: 120 bytes with the gw_session) */
    uint64_t deadline;   /* idle timeout (uv_now ms) */
};

/* ---- addresses (dgram_loop.c) ---- */
void gw_dgram_addr_set(gw_dgram_addr *a, const struct sockaddr *sa);
bool gw_dgram_addr_equal(const gw_dgram_addr *a, const struct sockaddr *sa);
/* FNV-1a over the address and port, seeded (a message id, 0), mixed: for the adapters' tables. */
uint32_t gw_dgram_addr_hash(const struct sockaddr *sa, uint32_t seed);

/* ---- a loop's sockets (dgram_loop.c) ---- */
/* Allocates the bound ports of n listeners. 0 or GW_ENOMEM. */
int gw_dgram_adapter_init(gw_dgram_adapter *da, size_t n);
/* gw_adapter_ops.uninit's work, after the loops have stopped: free_loop(dl) for each loop's state
 * (it calls gw_dgram_loop_free), the bound ports, free_state(a) for the adapter's own state
 * (a->state, whose first member is the gw_dgram_adapter), and a->state cleared. */
void gw_dgram_uninit(gw_adapter *a, void (*free_loop)(gw_dgram_loop *dl),
                     void (*free_state)(gw_adapter *a));
/* A loop's state of `size` bytes (the adapter's, zeroed, starting with its gw_dgram_loop) for
 * adapter a (whose state starts with a gw_dgram_adapter) on loop, without sockets or timer (a unit
 * test may feed the adapter directly); idle_ms: the adapter's idle timeout. NULL: no memory. */
gw_dgram_loop *gw_dgram_loop_new(size_t size, const gw_dgram_ops *ops, gw_adapter *a, gw_loop *loop,
                                 uint32_t idle_ms);
/* gw_adapter_ops.start's work: dl becomes a's state on its loop, the timer ticks every period_ms,
 * the n listeners' sockets are bound (ops->listen) and read. 0 or the first error. */
int gw_dgram_start(gw_dgram_loop *dl, gw_adapter *a, uint64_t period_ms, size_t n);
/* Binds s for listener i (li) on dl's loop (SO_REUSEPORT, recvmmsg, rcvbuf): the first loop binds
 * the port and reports it (kind, product) for --ready-fd; the others share it. */
/* Same with the port shared by the loops at *bound (a listener added by a hot reload). */
int gw_dgram_listen_at(gw_dgram_loop *dl, gw_dgram_sock *s, const gw_listen *li, uint16_t *bound,
                       uint32_t rcvbuf, const char *kind, const char *product);
/* Hot reload: closes s (a listener removed); its sessions stay, their answers are dropped. */
void gw_dgram_sock_close(gw_dgram_sock *s);
int gw_dgram_listen(gw_dgram_loop *dl, gw_dgram_sock *s, const gw_listen *li, size_t i,
                    uint32_t rcvbuf, const char *kind, const char *product);
/* Sends p[0..n) to `to` through s in the loop's output batch (gateway/core/dgram.h); nothing once s
 * is closed (a lost datagram: the peer retransmits). */
void gw_dgram_sock_send(gw_dgram_sock *s, const gw_dgram_addr *to, const uint8_t *p, size_t n);
/* Reading on or off on every socket of the loop. */
void gw_dgram_receive(gw_dgram_loop *dl, bool on);
/* gw_adapter_ops entries (the adapter's per-loop state starts with its gw_dgram_loop):
 * resume: reading starts again after the store was full (an adapter whose ops do not
 * pause_when_full keeps reading and answers itself); stop: reading stops for good, the sockets
 * stay open so that answers still committing go out; close_sessions: every session closes
 * ("shutdown"), the output batch goes out, the sockets and the timer close. */
void gw_dgram_resume(gw_adapter *a, gw_loop *loop);
void gw_dgram_stop(gw_adapter *a, gw_loop *loop);
void gw_dgram_close_sessions(gw_adapter *a, gw_loop *loop);
/* Frees the layer's part of a loop's state (the session index). */
void gw_dgram_loop_free(gw_dgram_loop *dl);

/* ---- sessions (dgram_sess.c) ---- */
gw_dgram_sess *gw_dgram_sess_find(gw_dgram_loop *dl, uint32_t dev_index);
/* A new session of `size` bytes (the adapter's session, zeroed) for dev at from, in the index
 * and online; NULL when out of memory. */
gw_dgram_sess *gw_dgram_sess_open(gw_dgram_loop *dl, size_t size, const gw_session_ops *ops,
                                  gw_dgram_sock *sock, const gw_device *dev,
                                  const struct sockaddr *from);
/* The device sent its last datagram to sock from `from`. */
bool gw_dgram_sess_at(const gw_dgram_sess *s, const gw_dgram_sock *sock,
                      const struct sockaddr *from);
/* The device's address moves (roaming: verified and new, so the address is the device's). */
void gw_dgram_sess_move(gw_dgram_sess *s, gw_dgram_sock *sock, const struct sockaddr *from);
/* Ends the session: offline event (reason; NULL: none, the device lives on elsewhere) if it still
 * owns its device, out of the index, the adapter's reference dropped (events and exchanges in
 * flight keep it alive until they finish). */
void gw_dgram_sess_close(gw_dgram_sess *s, const char *reason);
/* The device's idle timeout: its product's, else the adapter's. */
uint32_t gw_dgram_idle_ms(const gw_dgram_loop *dl, const gw_device *dev);
/* The session idles until now + the device's idle time. */
void gw_dgram_sess_touch(gw_dgram_sess *s);
/* Closes the sessions whose deadline has passed ("idle_timeout"). */
void gw_dgram_sweep(gw_dgram_loop *dl);
void gw_dgram_close_all(gw_dgram_loop *dl, const char *reason);
/* gw_session_ops entries every datagram session shares: kick (take-over by another loop: closed
 * without offline event), peer (its address), flush (answers go out as soon as they are known). */
void gw_dgram_sess_kick(gw_session *s);
void gw_dgram_sess_peer(gw_session *s, char *buf, size_t cap);
void gw_dgram_sess_flush(gw_session *s);

#endif

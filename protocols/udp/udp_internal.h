/* udp_internal.h: what the UDP adapter's files share: its config, the per-loop state (one socket
 * per listener and the ack buffer; sockets and sessions are protocols/dgram/'s), the per-device
 * session and the per-device replay window (shared by the loops). */
#ifndef GW_UDP_INTERNAL_H
#define GW_UDP_INTERNAL_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "../../config/cfg_schema.h"
#include "../../gateway/core/codec.h"
#include "../../gateway/core/runtime.h"
#include "../../gateway/core/session.h"
#include "../dgram/dgram_layer.h"
#include "udp_metrics.h"

typedef struct gw__udp_cfg {
    gw_listen_list listeners;
    uint32_t idle_timeout_ms;
    uint32_t rcvbuf;
    uint32_t replay_window_s; /* 0: no replay window */
} gw__udp_cfg;

/* One device's replay window (udp_replay.c), under its device stripe lock (runtime.h). */
typedef struct gw__udp_replay {
    uint64_t seen; /* bit i: seq hi - i was accepted */
    uint32_t hi;   /* the highest seq accepted (modulo the seq field's range) */
    uint32_t at_s; /* monotonic second + 1 when hi was accepted; 0: none yet */
    int64_t ts_ms; /* the newest device timestamp accepted; 0: none */
} gw__udp_replay;

typedef struct gw__udp_adapter {
    gw_dgram_adapter dg; /* first: the bound ports */
    gw__udp_cfg cfg;
    const gw_product **products; /* per listener: the product it serves */
    size_t max_frame;            /* largest max frame of the listeners' products */
    uint32_t sweep_ms;           /* idle sweep period */
    gw__udp_replay *replay;      /* per device (config index); NULL when no product needs one */
    struct gw__udp_extra *extra; /* listeners added by reloads (freed at uninit) */
} gw__udp_adapter;

/* A listener added by a hot reload: its product (in the generation pin, held until uninit) and
 * its port shared by the loops. */
typedef struct gw__udp_extra {
    gw_listen at;
    const gw_product *product;
    uint16_t bound;
    const gw_config *pin;
    struct gw__udp_extra *next;
} gw__udp_extra;

typedef struct gw__udp_sess gw__udp_sess;
typedef struct gw__udp_loop gw__udp_loop;

/* One listener's socket on one loop. */
typedef struct gw__udp_sock {
    gw_dgram_sock d; /* first */
    gw__udp_loop *ul;
    const gw_product *product;
    size_t max_frame; /* the product's */
    uint64_t seq_mod; /* the range of the device frames' seq field (0: none; replay window) */
    bool timestamp;   /* the device's frames may carry a timestamp (replay window) */
    gw_listen at;     /* as configured, to find it again (hot reload) */
    struct gw__udp_sock *extra_next; /* added by a reload (the loop's extra list) */
} gw__udp_sock;

struct gw__udp_loop {
    gw_dgram_loop dl; /* first: sockets, sweep timer, sessions, back-pressure */
    gw_adapter *a;
    gw__udp_adapter *ad;
    gw__udp_sock *socks;
    size_t n_socks;
    gw__udp_sock *extra; /* sockets of listeners added by reloads */
    uint8_t *ackbuf;     /* ack frames are encoded here (max_frame bytes) */
    size_t ackbuf_size;
};

/* Ack frames encoded when a message is accepted, sent when its event is committed. */
typedef struct gw__udp_ack {
    struct gw__udp_ack *next;
    uint32_t token;
    uint32_t seq; /* the message's, when seq_set */
    bool seq_set;
    uint16_t len;
    uint8_t data[];
} gw__udp_ack;

struct gw__udp_sess {
    gw_dgram_sess d; /* first: address, idle deadline, index; a gw_session * is a gw__udp_sess * */
    gw__udp_loop *ul;
    gw__udp_ack *acks, *acks_tail;
    uint32_t next_token;
    uint32_t acked_seq; /* the seq of the last positive ack sent (acked_valid) */
    bool acked_valid;
};

/* udp_session.c */
/* gw_dgram_ops.datagram: one datagram read from a listener's socket (a gw__udp_sock). */
void gw__udp_datagram(gw_dgram_sock *ds, const uint8_t *buf, size_t len,
                      const struct sockaddr *from, bool truncated);
void gw__udp_close_all(gw__udp_loop *ul, const char *reason);
extern const gw_dgram_ops gw__udp_dgram_ops;
/* udp.c: gw_dgram_ops.listen: binds listener i's socket with its product's facts. */
int gw__udp_listen(gw_dgram_loop *dl, size_t i);

/* udp_replay.c: what an authenticated datagram of dev is to its replay window. */
typedef enum gw__udp_verdict {
    GW__UDP_FRESH,  /* newer than anything accepted (or no window): it may move the address */
    GW__UDP_OLDER,  /* accepted (unseen seq below the highest, a reply, an older timestamp), but
                     * it does not move the device's address */
    GW__UDP_REPLAY, /* refused: a seq already accepted, below the window, or a stale timestamp */
} gw__udp_verdict;
/* Allocates the per-device windows when a listener's product declares a seq or a timestamp. */
int gw__udp_replay_init(gw__udp_adapter *ad, const gw_config *cfg);
void gw__udp_replay_free(gw__udp_adapter *ad);
/* The window's facts of a socket's product (seq_mod, timestamp). */
void gw__udp_replay_sock(gw__udp_sock *us);
/* Checks m against dev's window and records it when accepted; detail says why a replay is one.
 * *online_elsewhere: the device has a session on another loop (read under the same lock). */
gw__udp_verdict gw__udp_replay_check(gw__udp_sock *us, const gw_device *dev, const gw_thing_msg *m,
                                     char *detail, size_t cap, bool *online_elsewhere);

#endif

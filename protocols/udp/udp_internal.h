/* udp_internal.h: what the UDP adapter's files share: its config, the per-loop state (one socket
 * per listener, the device-index -> session hash, the receive buffer) and the per-device session.
 */
#ifndef GW_UDP_INTERNAL_H
#define GW_UDP_INTERNAL_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "../../config/cfg_schema.h"
#include "../../gateway/runtime.h"
#include "../../gateway/session.h"
#include "../../gateway/session_index.h"

typedef struct gw__udp_cfg {
    gw_listen_list listeners;
    uint32_t idle_timeout_ms;
    uint32_t rcvbuf;
} gw__udp_cfg;

typedef struct gw__udp_adapter {
    gw__udp_cfg cfg;
    uint16_t *bound_ports;       /* per listener: the port loop 0 bound (for port 0) */
    const gw_product **products; /* per listener: the product it serves */
    size_t max_frame;            /* largest max frame of the listeners' products */
    uint32_t sweep_ms;           /* idle sweep period */
} gw__udp_adapter;

typedef struct gw__udp_sess gw__udp_sess;
typedef struct gw__udp_loop gw__udp_loop;

/* One listener's socket on one loop. */
typedef struct gw__udp_sock {
    uv_udp_t h;
    gw__udp_loop *ul;
    const gw_product *product;
    size_t max_frame; /* the product's */
    bool receiving, open;
} gw__udp_sock;

typedef union gw__udp_addr {
    struct sockaddr sa;
    struct sockaddr_in in;
    struct sockaddr_in6 in6;
} gw__udp_addr;

struct gw__udp_loop {
    gw_adapter *a;
    gw__udp_adapter *ad;
    gw_loop *loop;
    gw__udp_sock *socks;
    size_t n_socks;
    uv_timer_t sweep;
    gw_session_index sessions; /* device index -> session */
    uint8_t *ackbuf;           /* ack frames are encoded here (max_frame bytes) */
    size_t ackbuf_size;
    bool paused, stopping;
    bool pause_pending; /* the store filled up inside a recvmmsg batch: stop reading after it */
};

/* Ack frames encoded when a message is accepted, sent when its event is committed. */
typedef struct gw__udp_ack {
    struct gw__udp_ack *next;
    uint32_t token;
    uint16_t len;
    uint8_t data[];
} gw__udp_ack;

struct gw__udp_sess {
    gw_session base; /* first: a gw_session * is a gw__udp_sess * */
    gw__udp_loop *ul;
    gw__udp_sock *sock; /* the socket the device last sent to (acks go out through it) */
    gw__udp_addr addr;  /* the device's last authenticated source address */
    uint64_t deadline;  /* idle timeout (uv_now ms) */
    gw__udp_ack *acks, *acks_tail;
    uint32_t next_token;
    bool closing;
};

/* udp_session.c */
void gw__udp_datagram(gw__udp_sock *us, const uint8_t *buf, size_t len, const struct sockaddr *from,
                      bool truncated);
void gw__udp_sweep(gw__udp_loop *ul);
void gw__udp_close_all(gw__udp_loop *ul, const char *reason);
/* Sends one frame to addr through us, in the loop's output batch (gateway/dgram.h). */
void gw__udp_send(gw__udp_sock *us, const gw__udp_addr *addr, const uint8_t *p, size_t n);

#endif

/* listen.h: listening sockets shared by every loop (SO_REUSEPORT: the kernel spreads connections
 * and datagram flows across the loops), the start-up probe that keeps them exclusive to this
 * process, and peer-address formatting, for every adapter. */
#ifndef GW_LISTEN_H
#define GW_LISTEN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../../config/config.h"
#include "../util/error.h"

/* Binds and listens srv on at->address:*port (0: ephemeral), with SO_REUSEPORT. *port is the
 * bound port on return. 0 or a libuv error (the handle is initialised either way: close it). */
int gw_listen_tcp(uv_loop_t *loop, uv_tcp_t *srv, const gw_listen *at, uint16_t *port,
                  uv_connection_cb on_connection);

/* Binds a UDP socket the same way (SO_REUSEPORT), with receive buffer rcvbuf bytes (0: default).
 * flags: uv_udp_init_ex's, e.g. UV_UDP_RECVMMSG (then the alloc_cb is gw_dgram_recv_buf's). */
int gw_listen_udp(uv_loop_t *loop, uv_udp_t *h, const gw_listen *at, uint16_t *port, int rcvbuf,
                  unsigned flags);

/* Before any loop binds: binds each configured listener's address once without SO_REUSEPORT and
 * closes it again, so that a port another process holds (a second gateway, anything) fails
 * start-up with "address in use" instead of being shared with it; the loops then bind with
 * SO_REUSEPORT among themselves. TCP probes set SO_REUSEADDR as libuv's bind does (a port in
 * TIME_WAIT is free). Port 0 is not probed. 0, or the bind error with err naming the listener;
 * *failed (may be NULL) is then the listener. */
int gw_listen_probe(const gw_config *c, gw_error *err, gw_config_listener *failed);

/* "127.0.0.1:5501" or "[::1]:5501" ("?" when unknown). */
void gw_sockaddr_str(const struct sockaddr *sa, char *buf, size_t cap);

#endif

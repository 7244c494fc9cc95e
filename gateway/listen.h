/* listen.h: listening sockets shared by every loop (SO_REUSEPORT: the kernel spreads connections
 * and datagram flows across the loops) and peer-address formatting, for every adapter. */
#ifndef GW_LISTEN_H
#define GW_LISTEN_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

#include "../config/config.h"

/* Binds and listens srv on at->address:*port (0: ephemeral), with SO_REUSEPORT. *port is the
 * bound port on return. 0 or a libuv error (the handle is initialised either way: close it). */
int gw_listen_tcp(uv_loop_t *loop, uv_tcp_t *srv, const gw_listen *at, uint16_t *port,
                  uv_connection_cb on_connection);

/* Binds a UDP socket the same way (SO_REUSEPORT), with receive buffer rcvbuf bytes (0: default).
 * flags: uv_udp_init_ex's, e.g. UV_UDP_RECVMMSG (then the alloc_cb is gw_dgram_recv_buf's). */
int gw_listen_udp(uv_loop_t *loop, uv_udp_t *h, const gw_listen *at, uint16_t *port, int rcvbuf,
                  unsigned flags);

/* "127.0.0.1:5501" or "[::1]:5501" ("?" when unknown). */
void gw_sockaddr_str(const struct sockaddr *sa, char *buf, size_t cap);

#endif

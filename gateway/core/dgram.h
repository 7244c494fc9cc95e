/* dgram.h: datagram I/O batching, used by protocols/dgram/ (the UDP and CoAP adapters' layer)
 * and flushed by the runtime: a loop's receive buffer for recvmmsg (libuv's UV_UDP_RECVMMSG: up to
 * GW_DGRAM_RECV_BATCH datagrams per system call) and its output batch (every datagram sent during
 * a loop iteration goes out at the iteration's end, one sendmmsg per run of datagrams on the same
 * socket). */
#ifndef GW_DGRAM_H
#define GW_DGRAM_H

#include <stddef.h>
#include <stdint.h>
#include <uv.h>

struct gw_loop;

#define GW_DGRAM_RECV_BATCH 16    /* datagrams per recvmmsg: libuv gives each a 64 KiB slot */
#define GW_DGRAM_OUT_MAX    64    /* datagrams held before the batch is sent early */
#define GW_DGRAM_OUT_BYTES  32768 /* bytes held; a larger datagram is sent on its own at once */
/* Per loop: bytes of datagrams the kernel could not take now, queued in libuv (each counted with
 * its request); past it a datagram to be queued is dropped (output_overflow). */
#define GW_DGRAM_QUEUE_BYTES (256 * 1024)

/* An alloc_cb's answer for a socket bound by gw_listen_udp with UV_UDP_RECVMMSG on loop l: the
 * loop's receive buffer, with room for GW_DGRAM_RECV_BATCH datagrams (allocated on first use; an
 * empty buffer if memory ran out, which libuv reports to the recv_cb as UV_ENOBUFS). */
void gw_dgram_recv_buf(struct gw_loop *l, uv_buf_t *buf);

/* Sends p[0..n) to `to` through h at the end of this loop iteration (with the iteration's other
 * datagrams), or at once when it does not fit the batch. Never blocks; a datagram the kernel
 * cannot take now is queued in libuv (a copy in GW_AREA_OUTPUT, GW_DGRAM_QUEUE_BYTES per loop at
 * most: past that it is dropped and counted), and one that fails otherwise is dropped, as a lost
 * datagram would be: the peer's retransmission covers both. Loop thread only. */
void gw_dgram_send(struct gw_loop *l, uv_udp_t *h, const struct sockaddr *to, const void *p,
                   size_t n);

/* Sends the batch now: the runtime calls it at the end of every iteration; adapters call it before
 * closing a socket. */
void gw_dgram_flush(struct gw_loop *l);

/* Frees the loop's buffers (after the loop has stopped). */
void gw_dgram_free(struct gw_loop *l);

/* Bytes the loop has queued in libuv now (what GW_DGRAM_QUEUE_BYTES bounds). */
size_t gw_dgram_queued(struct gw_loop *l);

/* Test hook: while on, every socket behaves as if the kernel took nothing now (EAGAIN), so the
 * queue and its bound are exercised on loopback, where sendmmsg never returns EAGAIN. */
void gw_dgram_test_blocked(int on);

#endif

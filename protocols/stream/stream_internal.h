/* stream_internal.h: what stream_conn.c and stream_loop.c share. */
#ifndef GW_STREAM_INTERNAL_H
#define GW_STREAM_INTERNAL_H

#include "stream_conn.h"

/* stream_conn.c */
void gw__stream_on_connection(uv_stream_t *server, int status);
void gw__stream_resume(gw_stream_conn *c);
void gw__stream_stop_reading(gw_stream_conn *c);
/* Output bounds: the out_kick timer's callback (resumes sl->out_ready), the sweep's stall check,
 * and the close of a connection whose output overflowed (why: "hard_limit", "stalled"). */
void gw__stream_out_kick(uv_timer_t *t);
void gw__stream_out_sweep(gw_stream_conn *c, uint64_t now);
void gw__stream_out_overflow(gw_stream_conn *c, const char *why);
/* Bytes for the adapter's parser that did not come in the connection's own input buffer (TLS:
 * decrypted): parsed, the rest kept in c->in. */
void gw__stream_feed(gw_stream_conn *c, const uint8_t *p, size_t n);
/* The socket's input (stream_io.c reads): where to read (the connection's own buffer when a unit
 * is partial, else the loop's), then what was read (nread < 0: UV_EOF or a UV error code). */
void gw__stream_alloc(gw_stream_conn *c, uv_buf_t *buf);
void gw__stream_input(gw_stream_conn *c, ssize_t nread, const uv_buf_t *buf);
/* A connection paused for output whose unsent bytes fell below low water: resumed on the next
 * iteration. */
void gw__stream_out_drained(gw_stream_conn *c);
/* The last step of a closed connection (its socket already closed): unlisted, released. */
void gw__stream_reap(gw_stream_conn *c);

/* stream_io.c: the sockets of one loop's connections in the loop's epoll set. */
int gw__stream_io_start(gw_stream_loop *sl);
/* Shutdown: every closed connection reaped now, the poll and timer handles closed. */
void gw__stream_io_close(gw_stream_loop *sl);
/* After the loop stopped: the epoll fd closed, what is left reaped. */
void gw__stream_io_free(gw_stream_loop *sl);
/* Takes an accepted socket: c->fd set, TCP_NODELAY. */
void gw__stream_io_attach(gw_stream_conn *c, int fd);
/* Registers the socket for what the connection wants: reading (c->reading), writing (c->wq). */
void gw__stream_io_update(gw_stream_conn *c);
/* Bytes onto the socket (send now, the rest queued in c->wq and written when the socket takes
 * it), within the output bounds. */
void gw__stream_write(gw_stream_conn *c, const uint8_t *p, size_t n);
/* Bytes the socket did not take yet. */
static inline size_t gw__stream_queued(const gw_stream_conn *c)
{
    return c->wq ? c->wq->len : 0;
}
/* Closes the socket (queued output is dropped, as a closed libuv handle cancels its writes) and
 * reaps the connection on the next iteration. */
void gw__stream_io_shut(gw_stream_conn *c);
/* The peer sends no more (EOF, or a TLS close_notify): with acks or parsing still pending the
 * connection half-closes (answers them, then closes), else it closes now. */
void gw__stream_peer_done(gw_stream_conn *c);
/* The adapter's first deadline and reading once the connection is ready (TLS: handshake done). */
void gw__stream_opened(gw_stream_conn *c);
/* A proxy_protocol connection refused (bad header, timeout, ...): counted, logged, closed. */
void gw__stream_proxy_refused(gw_stream_conn *c, gw_proxy_err e);

#endif

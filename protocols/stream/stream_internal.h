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
/* Bytes onto the socket (uv_try_write, a queued write for the rest), within the output bounds. */
void gw__stream_write(gw_stream_conn *c, const uint8_t *p, size_t n);
/* The peer sends no more (EOF, or a TLS close_notify): with acks or parsing still pending the
 * connection half-closes (answers them, then closes), else it closes now. */
void gw__stream_peer_done(gw_stream_conn *c);
/* The adapter's first deadline and reading once the connection is ready (TLS: handshake done). */
void gw__stream_opened(gw_stream_conn *c);
/* A proxy_protocol connection refused (bad header, timeout, ...): counted, logged, closed. */
void gw__stream_proxy_refused(gw_stream_conn *c, gw_proxy_err e);

#endif

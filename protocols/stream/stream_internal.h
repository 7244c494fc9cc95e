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

#endif

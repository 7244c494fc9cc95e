/* stream_internal.h: what stream_conn.c and stream_loop.c share. */
#ifndef GW_STREAM_INTERNAL_H
#define GW_STREAM_INTERNAL_H

#include "stream_conn.h"

/* stream_conn.c */
void gw__stream_on_connection(uv_stream_t *server, int status);
void gw__stream_resume(gw_stream_conn *c);
void gw__stream_stop_reading(gw_stream_conn *c);

#endif

/* api_internal.h: what the management API's files share beyond api.h: metric handles. */
#ifndef GW_API_INTERNAL_H
#define GW_API_INTERNAL_H

#include "../util/metrics.h"

/* api_server.c's: a stream client dropped for its unsent bytes (api_stream.c counts it). */
extern gw_metric GW_M_API_STREAM_DROPPED;

#endif

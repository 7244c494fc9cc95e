/* api_stream.c: GET /api/stream (Server-Sent Events) (not written yet: answers 501). */
#include "api_handlers.h"

void gw_api_stream_events(gw_api_req *r, gw_api_ctx *ctx)
{
    (void)ctx;
    gw_api_reply_error(r, 501, "not_implemented", NULL, "not implemented yet");
}

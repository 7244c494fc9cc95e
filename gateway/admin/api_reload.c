/* api_reload.c: POST /api/reload (not written yet: answers 501). */
#include "api_handlers.h"

void gw_api_reload(gw_api_req *r, gw_api_ctx *ctx)
{
    (void)ctx;
    gw_api_reply_error(r, 501, "not_implemented", NULL, "not implemented yet");
}

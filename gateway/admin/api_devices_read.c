/* api_devices_read.c: device lists, state and history (not written yet: answers 501). */
#include "api_handlers.h"

void gw_api_devices_list(gw_api_req *r, gw_api_ctx *ctx)
{
    (void)ctx;
    gw_api_reply_error(r, 501, "not_implemented", NULL, "not implemented yet");
}

void gw_api_device_get(gw_api_req *r, gw_api_ctx *ctx)
{
    (void)ctx;
    gw_api_reply_error(r, 501, "not_implemented", NULL, "not implemented yet");
}

void gw_api_device_events(gw_api_req *r, gw_api_ctx *ctx)
{
    (void)ctx;
    gw_api_reply_error(r, 501, "not_implemented", NULL, "not implemented yet");
}

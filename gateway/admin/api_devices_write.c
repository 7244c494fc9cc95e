/* api_devices_write.c: device creation, changes and removal (not written yet: answers 501). */
#include "api_handlers.h"

void gw_api_devices_create(gw_api_req *r, gw_api_ctx *ctx)
{
    (void)ctx;
    gw_api_reply_error(r, 501, "not_implemented", NULL, "not implemented yet");
}

void gw_api_device_patch(gw_api_req *r, gw_api_ctx *ctx)
{
    (void)ctx;
    gw_api_reply_error(r, 501, "not_implemented", NULL, "not implemented yet");
}

void gw_api_device_delete(gw_api_req *r, gw_api_ctx *ctx)
{
    (void)ctx;
    gw_api_reply_error(r, 501, "not_implemented", NULL, "not implemented yet");
}

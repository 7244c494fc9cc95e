/* api_commands.c: functions and property writes/reads over HTTP (not written yet: answers 501). */
#include "api_handlers.h"

void gw_api_function_invoke(gw_api_req *r, gw_api_ctx *ctx)
{
    (void)ctx;
    gw_api_reply_error(r, 501, "not_implemented", NULL, "not implemented yet");
}

void gw_api_properties_write(gw_api_req *r, gw_api_ctx *ctx)
{
    (void)ctx;
    gw_api_reply_error(r, 501, "not_implemented", NULL, "not implemented yet");
}

void gw_api_properties_read(gw_api_req *r, gw_api_ctx *ctx)
{
    (void)ctx;
    gw_api_reply_error(r, 501, "not_implemented", NULL, "not implemented yet");
}

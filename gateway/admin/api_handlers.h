/* api_handlers.h: every handler of the management API, one file per area (api_*.c); the route
 * table in api_routes.c points at them. */
#ifndef GW_API_HANDLERS_H
#define GW_API_HANDLERS_H

#include "api.h"

/* api_status.c */
void gw_api_status(gw_api_req *r, gw_api_ctx *ctx);
/* api_products.c */
void gw_api_products_list(gw_api_req *r, gw_api_ctx *ctx);
void gw_api_product_get(gw_api_req *r, gw_api_ctx *ctx);
/* api_devices_read.c */
void gw_api_devices_list(gw_api_req *r, gw_api_ctx *ctx);
void gw_api_device_get(gw_api_req *r, gw_api_ctx *ctx);
void gw_api_device_events(gw_api_req *r, gw_api_ctx *ctx);
/* api_devices_write.c */
void gw_api_devices_create(gw_api_req *r, gw_api_ctx *ctx);
void gw_api_device_patch(gw_api_req *r, gw_api_ctx *ctx);
void gw_api_device_delete(gw_api_req *r, gw_api_ctx *ctx);
/* api_commands.c */
void gw_api_function_invoke(gw_api_req *r, gw_api_ctx *ctx);
void gw_api_properties_write(gw_api_req *r, gw_api_ctx *ctx);
void gw_api_properties_read(gw_api_req *r, gw_api_ctx *ctx);
/* api_stream.c */
void gw_api_stream_events(gw_api_req *r, gw_api_ctx *ctx);
/* api_token.c */
void gw_api_token_info(gw_api_req *r, gw_api_ctx *ctx);
/* api_reload.c */
void gw_api_reload(gw_api_req *r, gw_api_ctx *ctx);

#endif

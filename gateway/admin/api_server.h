/* api_server.h: the management API's HTTP/1.1 server (libh2o, libuv build) on the main loop:
 * start with the "admin" section's listeners, the ready-fd lines, stop and free. */
#ifndef GW_API_SERVER_H
#define GW_API_SERVER_H

#include <stddef.h>

#include "../../config/config.h"
#include "../util/error.h"
#include "api.h"

typedef struct gw_api_server gw_api_server;

/* Listens on cfg->admin_http's listeners with the main loop ctx->loop; handlers get ctx (kept,
 * not copied). 0, or a negative code with err filled. */
int gw_api_server_start(gw_api_server **out, gw_api_ctx *ctx, const gw_config *cfg, gw_error *err);
/* "listener adapter=admin address=A port=P\n" per bound listener into buf; returns the length. */
size_t gw_api_server_ready_lines(const gw_api_server *s, char *buf, size_t cap);
/* The first listener's bound port (0 if none). */
int gw_api_server_port(const gw_api_server *s);
/* Closes the listeners, ends every stream and closes every connection (from a callback of the
 * main loop; the loop then ends once their handles are closed). */
void gw_api_server_stop(gw_api_server *s);
/* After the main loop's uv_run returned. */
void gw_api_server_free(gw_api_server *s);

/* The lower-case hex SHA-256 of token (what admin.tokens[].sha256 holds): iotgw --hash-token. */
void gw_api_hash_token(const char *token, char hex[65]);

#endif

/* admin.h: the admin HTTP endpoint on the main thread's loop: GET /health and GET /metrics
 * (Prometheus text). Minimal HTTP/1.0: one request per connection, bounded request size. */
#ifndef GW_ADMIN_H
#define GW_ADMIN_H

#include <uv.h>

#include "../config/config.h"

typedef struct gw_admin gw_admin;

/* Listens on cfg->admin; *port gets the bound port. 0 or a libuv error. */
int gw_admin_start(gw_admin **out, uv_loop_t *loop, const gw_listen *at, int *port);
void gw_admin_stop(gw_admin *a);

#endif

/* admin.h: the admin HTTP endpoint on the main thread's loop: GET /health and GET /metrics
 * (Prometheus text). Minimal HTTP/1.0: one request per connection, bounded request size. */
#ifndef GW_ADMIN_H
#define GW_ADMIN_H

#include <uv.h>

#include "../../config/config.h"

typedef struct gw_admin gw_admin;
struct gw_store;

/* Listens on cfg->admin; *port gets the bound port. /health answers 503 while store's commits
 * fail (store may be NULL). 0 or a libuv error. */
int gw_admin_start(gw_admin **out, uv_loop_t *loop, const gw_listen *at,
                   const struct gw_store *store, int *port);
void gw_admin_stop(gw_admin *a);

#endif

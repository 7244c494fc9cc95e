/* api_hub.h: the hub of /api/stream: committed events handed over by the store writer through a
 * bounded ring (only while a stream client exists), fanned out on the main loop to every client
 * whose filters match. */
#ifndef GW_API_HUB_H
#define GW_API_HUB_H

#include <uv.h>

#include "../../config/config.h"
#include "../../storage/store.h"

typedef struct gw_api_hub gw_api_hub;

/* Creates the hub on the main loop and sets the store's tap (main thread, before the store
 * starts). 0 or GW_ENOMEM. */
int gw_api_hub_create(gw_api_hub **out, uv_loop_t *loop, gw_store *store, const gw_config *cfg);
/* Ends every stream and closes the hub's handles; after gw_store_close (the writer has stopped
 * and the store, whose tap points here, is gone). */
void gw_api_hub_stop(gw_api_hub *h);
/* After the main loop's uv_run returned. */
void gw_api_hub_free(gw_api_hub *h);

#endif

/* reload.h: hot reload (SIGHUP, POST /api/reload, device changes from the API): validates a whole
 * new configuration like --check-config, diffs it against the running one, and switches every
 * loop to it as a new generation (sessions of unchanged devices untouched; removed or changed ones
 * closed with offline reason "removed" / "reconfigured"); the old generation is freed once no
 * thread uses it. Every function here runs on the main thread. */
#ifndef GW_RELOAD_H
#define GW_RELOAD_H

#include <jansson.h>

struct gw_config;
struct gw_runtime;

typedef struct gw_reload gw_reload;
/* A validated configuration not applied yet (gw_reload_prepare_devices). */
typedef struct gw_reload_pending gw_reload_pending;

/* cfg: the running configuration, as loaded (its devices numbered 0..n-1); reload holds a
 * reference on the current generation (each replaced one is freed once no thread uses it; see
 * gw_config_release). rt: the runtime whose loops follow (NULL: none). follow (may be NULL):
 * set to the current generation after every reload (main passes &api_ctx.cfg). 0 or GW_ENOMEM. */
int gw_reload_create(gw_reload **out, struct gw_config *cfg, struct gw_runtime *rt,
                     const struct gw_config **follow);
void gw_reload_free(gw_reload *rl);
/* Sets the pointer that follows the current generation (set at once; NULL: none). */
void gw_reload_set_follow(gw_reload *rl, const struct gw_config **follow);

/* The current generation (main thread). */
const struct gw_config *gw_reload_config(const gw_reload *rl);

/* Re-reads gateway.json, every product file and devices.json (SIGHUP, POST /api/reload),
 * validates all of it and applies the difference. *report (new reference, never NULL on return):
 *   {"applied":{"products_added":[..],"products_changed":[..],"products_removed":[..],
 *               "devices_added":[..],"devices_changed":[..],"devices_removed":[..],
 *               "listeners_added":[..],"listeners_removed":[..]},
 *    "needs_restart":["loops", "store.path", ...]}
 * or {"errors":[{"file":..,"path":..,"message":..},..]} (nothing changed). Returns 0 or
 * GW_ECONFIG (validation failed), GW_ENOMEM. */
int gw_reload_from_disk(gw_reload *rl, json_t **report);

/* The device API: validates the running configuration with devices (an array, each entry as in
 * devices.json) in place of the running devices, products as running (NOT re-read from disk).
 * 0 and *out, or GW_ECONFIG and *errors (new reference: [{"file","path","message"},..], paths
 * relative to the array as "[3].product"), or GW_ENOMEM. */
int gw_reload_prepare_devices(gw_reload *rl, const json_t *devices, gw_reload_pending **out,
                              json_t **errors);
/* ... then (after devices.json was written) applies it: never fails for a prepared config. p is
 * consumed. *report as gw_reload_from_disk's (may be NULL if not wanted). */
void gw_reload_commit(gw_reload *rl, gw_reload_pending *p, json_t **report);
/* ... or drops it (p consumed; NULL is fine). */
void gw_reload_abort(gw_reload_pending *p);

#endif

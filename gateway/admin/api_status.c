/* api_status.c: GET /api/status: version, uptime, loops and threads, sessions per adapter, the
 * store's queue and commit state, the outbox and the north link (read from metrics where the
 * parts have no getter). */
#include "api_handlers.h"

#include <dirent.h>
#include <pthread.h>
#include <string.h>

#include "../../storage/store.h"
#include "../core/runtime.h"
#include "../util/metrics.h"
#include "../util/version.h"

/* Threads of this process (/proc/self/task), -1 if unknown. */
static int thread_count(void)
{
    DIR *d = opendir("/proc/self/task");
    int n = 0;
    if (!d)
        return -1;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

/* {"mqtt": n, ...}: every adapter, with the devices whose current session it serves. */
static json_t *sessions(gw_runtime *rt)
{
    json_t *o = json_object();
    unsigned counts[GW_MAX_ADAPTERS] = {0};
    for (unsigned a = 0; a < rt->n_adapters; a++)
        json_object_set_new(o, rt->adapters[a].ops->name, json_integer(0));
    if (!rt->slots)
        return o;
    size_t n = rt->cfg->n_devices;
    for (unsigned k = 0; k < GW_DEVICE_STRIPES; k++) {
        pthread_mutex_lock(&rt->stripes[k]);
        for (size_t i = k; i < n; i += GW_DEVICE_STRIPES) {
            const gw_session *s = rt->slots[i];
            if (!s)
                continue;
            for (unsigned a = 0; a < rt->n_adapters; a++)
                if (!strcmp(s->ops->area, rt->adapters[a].ops->name)) {
                    counts[a]++;
                    break;
                }
        }
        pthread_mutex_unlock(&rt->stripes[k]);
    }
    for (unsigned a = 0; a < rt->n_adapters; a++)
        json_object_set_new(o, rt->adapters[a].ops->name, json_integer(counts[a]));
    return o;
}

void gw_api_status(gw_api_req *r, gw_api_ctx *ctx)
{
    const char *detail = NULL;
    const char *failing = ctx->store ? gw_store_failing(ctx->store, &detail) : NULL;
    json_t *store =
        json_pack("{s:I, s:I, s:I, s:I, s:b}", "queue_depth",
                  (json_int_t)(ctx->store ? gw_store_depth(ctx->store) : 0), "queue_max",
                  (json_int_t)ctx->cfg->store.queue_max, "events_committed",
                  (json_int_t)gw_metric_get(GW_M_EV_COMMITTED), "batches",
                  (json_int_t)gw_metric_get(GW_M_STORE_BATCHES), "failing", failing != NULL);
    if (store && ctx->store)
        json_object_set_new(store, "commit_ms_last",
                            json_real((double)gw_store_commit_us(ctx->store) / 1000.0));
    if (store && failing) {
        json_object_set_new(store, "failure_reason", json_string(failing));
        json_object_set_new(store, "failure_detail", json_string(detail ? detail : ""));
    }
    json_t *north = json_pack("{s:b, s:b, s:I, s:I, s:I}", "enabled", ctx->cfg->north.enabled,
                              "connected", gw_metric_get(GW_M_NORTH_CONNECTED) > 0, "outbox_depth",
                              (json_int_t)(ctx->store ? gw_store_outbox_rows(ctx->store) : 0),
                              "inflight", (json_int_t)gw_metric_get(GW_M_NORTH_INFLIGHT),
                              "forwarded", (json_int_t)gw_metric_get(GW_M_NORTH_FORWARDED));
    json_t *o =
        json_pack("{s:s, s:I, s:i, s:i, s:I, s:I, s:o*, s:o*, s:o*}", "version", GW_VERSION,
                  "uptime_s", (json_int_t)(((int64_t)uv_now(ctx->loop) - ctx->started_ms) / 1000),
                  "loops", ctx->rt ? (int)ctx->rt->n_loops : 0, "threads", thread_count(),
                  "connections", (json_int_t)gw_metric_get(GW_M_CONN_ACTIVE), "devices_online",
                  (json_int_t)gw_metric_get(GW_M_DEVICES_ONLINE), "sessions",
                  ctx->rt ? sessions(ctx->rt) : json_object(), "store", store, "north", north);
    if (!o) {
        gw_api_reply_error(r, 500, "internal", NULL, "cannot build the status");
        return;
    }
    json_object_set_new(o, "devices", json_integer((json_int_t)ctx->cfg->n_devices));
    json_object_set_new(o, "products", json_integer((json_int_t)ctx->cfg->n_products));
    gw_api_reply_json(r, 200, o);
}

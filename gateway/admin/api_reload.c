/* api_reload.c: POST /api/reload: the same as SIGHUP (gateway/reload): 200 with the difference
 * applied and the settings that need a restart, or 400 with every configuration error (the
 * running configuration stays). */
#include "api_handlers.h"

#include "../reload/reload.h"
#include "../util/error.h"

void gw_api_reload(gw_api_req *r, gw_api_ctx *ctx)
{
    json_t *report = NULL;
    if (!ctx->reload) {
        gw_api_reply_error(r, 503, "unavailable", NULL, "hot reload is not available");
        return;
    }
    int rc = gw_reload_from_disk(ctx->reload, &report);
    if (rc == 0) {
        gw_api_reply_json(r, 200, report);
        return;
    }
    if (rc == GW_ECONFIG && report) {
        json_object_set_new(report, "error", json_string("invalid_config"));
        json_object_set_new(report, "message",
                            json_string("the configuration has errors: nothing was changed"));
        gw_api_reply_json(r, 400, report);
        return;
    }
    json_decref(report);
    gw_api_reply_error(r, 500, "internal", NULL, "reload failed: %s", gw_strerror(rc));
}

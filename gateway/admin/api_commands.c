/* api_commands.c: functions, property writes and property reads over HTTP: the request becomes a
 * command as the cloud would send it and goes through the same command table (gw_commands_submit);
 * the HTTP answer waits, deferred, until the table tells the outcome on the main loop. */
#include "api_handlers.h"

#include <stdio.h>
#include <string.h>

#include "../command/command.h"
#include "../util/alloc.h"
#include "../util/log.h"

#define AREA "api"

/* One deferred request; freed by on_done, which the table runs exactly once. r is NULL once
 * the client has gone (the command completes normally, its answer goes nowhere). */
typedef struct waiter {
    gw_api_req *r;
    gw_command_op op;
    gw_api_ctx *ctx;
    char dev_id[]; /* looked up again when answering: a reload may have replaced ctx->cfg */
} waiter;

/* ---- answers ---- */

/* The HTTP status of a command that did not succeed (a device's own error reply is a 200). */
static int error_status(const gw_command_outcome *o)
{
    static const struct {
        const char *code;
        int status;
    } map[] = {
        {"invalid_payload", 400},  {"invalid_input", 400},  {"not_writable", 400},
        {"unknown_property", 400}, {"unsupported", 400},    {"unknown_function", 404},
        {"unknown_device", 404},   {"device_offline", 409}, {"duplicate_message_id", 409},
        {"timeout", 504},          {"expired", 504},        {"send_failed", 502},
        {"store_error", 503},      {"shutting_down", 503},
    };
    if (strcmp(o->code, "busy") == 0)
        return o->gateway_full ? 503 : 429;
    for (size_t i = 0; i < sizeof(map) / sizeof(map[0]); i++)
        if (strcmp(o->code, map[i].code) == 0)
            return map[i].status;
    return 500;
}

/* Every property of dev's thing model as {"value":v,"time":ms} (the store's shape, as GET
 * /api/devices/{id} shows them), nulls for one never reported; dev NULL (removed meanwhile): the
 * stored ones. */
static json_t *api_properties(const gw_device *dev, json_t *stored)
{
    json_t *out = json_object();
    if (!dev)
        return json_is_object(stored) ? json_copy(stored) : out;
    for (size_t i = 0; out && i < dev->product->n_properties; i++) {
        const char *id = dev->product->properties[i].id;
        json_t *v = json_object_get(stored, id);
        json_object_set_new(out, id, v ? json_incref(v) : json_pack("{s:n,s:n}", "value", "time"));
    }
    return out;
}

static void answer(gw_api_req *r, const waiter *w, const gw_command_outcome *o)
{
    gw_command_op op = w->op;
    json_t *p = o->payload ? json_loads(o->payload, 0, NULL) : NULL;
    json_t *body;
    int status = 200;
    if (strcmp(o->status, "queued") == 0) {
        status = 202; /* the device is offline, its product queues: the reply is stored later */
        body = json_pack("{s:s,s:b}", "messageId", o->msg_id, "queued", 1);
    } else if (!o->code) {
        body = json_pack("{s:s,s:b}", "messageId", o->msg_id, "success", 1);
        if (body && op == GW_CMD_INVOKE) {
            json_t *out = json_object_get(p, "outputs");
            json_object_set_new(body, "outputs", out ? json_incref(out) : json_object());
        } else if (body && op == GW_CMD_READ) {
            json_object_set_new(body, "properties",
                                api_properties(gw_config_device(w->ctx->cfg, w->dev_id),
                                               json_object_get(p, "properties")));
        }
    } else if (!strcmp(o->code, "device_error") || !strcmp(o->code, "invalid_output")) {
        /* the device answered: a failure it reports (or outputs that break the function) */
        json_t *msg = json_object_get(p, "message");
        body = json_pack("{s:s,s:b,s:s,s:s}", "messageId", o->msg_id, "success", 0, "code", o->code,
                         "message", json_is_string(msg) ? json_string_value(msg) : "");
    } else {
        json_t *msg = json_object_get(p, "message");
        status = error_status(o);
        body = json_pack("{s:s,s:s,s:s}", "error", o->code, "message",
                         json_is_string(msg) ? json_string_value(msg) : o->code, "messageId",
                         o->msg_id);
        if (body && o->path && o->path[0])
            json_object_set_new(body, "path", json_string(o->path));
    }
    json_decref(p);
    if (!body)
        gw_api_reply_error(r, 503, "out_of_memory", NULL, "out of memory");
    else
        gw_api_reply_json(r, status, body);
}

static void on_done(void *arg, const gw_command_outcome *o)
{
    waiter *w = arg;
    if (w->r)
        answer(w->r, w, o);
    gw_free(GW_AREA_RUNTIME, w);
}

static void on_gone(void *arg)
{
    ((waiter *)arg)->r = NULL; /* on_done still comes, and frees */
}

/* ---- requests ---- */

static const gw_device *find_device(gw_api_req *r, gw_api_ctx *ctx)
{
    const char *id = gw_api_param(r, "id");
    const gw_device *dev = id ? gw_config_device(ctx->cfg, id) : NULL;
    if (!dev)
        gw_api_reply_error(r, 404, "not_found", NULL, "no device \"%.64s\"", id ? id : "");
    return dev;
}

/* The body: an object (or none) with key (may be required) and an optional timeout_ms (1 or
 * more; the function's own timeout_ms caps it). 0, or answered 400 and -1. */
static int check_body(gw_api_req *r, json_t *body, const char *key, bool required,
                      uint32_t *timeout_ms)
{
    const char *k;
    json_t *v;
    *timeout_ms = 0;
    if (body && !json_is_object(body)) {
        gw_api_reply_error(r, 400, "invalid_body", "", "the body must be a JSON object");
        return -1;
    }
    if (required && !json_object_get(body, key)) {
        gw_api_reply_error(r, 400, "invalid_body", key, "missing key \"%s\"", key);
        return -1;
    }
    json_object_foreach(body, k, v)
    {
        if (strcmp(k, key) == 0)
            continue;
        if (strcmp(k, "timeout_ms") != 0) {
            gw_api_reply_error(r, 400, "unknown_field", k, "unknown field \"%.64s\"", k);
            return -1;
        }
        if (!json_is_integer(v) || json_integer_value(v) < 1 || json_integer_value(v) > 86400000) {
            gw_api_reply_error(r, 400, "invalid_body", "timeout_ms",
                               "timeout_ms: expected an integer from 1 to 86400000");
            return -1;
        }
        *timeout_ms = (uint32_t)json_integer_value(v);
    }
    return 0;
}

static void submit(gw_api_req *r, gw_api_ctx *ctx, gw_command_op op, const gw_device *dev,
                   json_t *req, uint32_t timeout_ms)
{
    waiter *w = NULL;
    int rc = GW_ENOMEM;
    if (!req)
        goto fail;
    if (!ctx->commands) {
        rc = GW_ECLOSED;
        goto fail;
    }
    size_t n = strlen(dev->id) + 1;
    if (!(w = gw_malloc(GW_AREA_RUNTIME, sizeof(*w) + n)))
        goto fail;
    w->r = r;
    w->op = op;
    w->ctx = ctx;
    memcpy(w->dev_id, dev->id, n);
    if (GW_LOG_INFO >= gw_log_level) {
        json_t *id = json_object_get(req, "messageId");
        char q[96];
        gw_log_write(GW_LOG_INFO, AREA, dev->id, gw_api_peer(r), "command from the API",
                     "op=%s path=%s token=%s msg_id=%s",
                     op == GW_CMD_INVOKE  ? "invoke"
                     : op == GW_CMD_WRITE ? "write"
                                          : "read",
                     gw_log_quote(q, sizeof(q), gw_api_path(r)), gw_api_token_name(r),
                     json_string_value(id));
    }
    rc = gw_commands_submit(ctx->commands, op, dev, req, timeout_ms, ctx->reader, on_done, w);
    if (rc)
        goto fail;
    json_decref(req);
    gw_api_defer(r, on_gone, w);
    return;
fail:
    json_decref(req);
    gw_free(GW_AREA_RUNTIME, w);
    gw_api_reply_error(r, 503, "unavailable", NULL, "commands are not available: %s",
                       gw_strerror(rc));
}

/* {"messageId": <fresh>} for a command of the local API. */
static json_t *new_request(gw_api_ctx *ctx)
{
    char id[64];
    gw_commands_new_id(ctx->commands, id, sizeof(id));
    return json_pack("{s:s}", "messageId", id);
}

void gw_api_function_invoke(gw_api_req *r, gw_api_ctx *ctx)
{
    json_t *body = gw_api_body(r), *req;
    const gw_device *dev = find_device(r, ctx);
    const char *name = gw_api_param(r, "fn");
    uint32_t timeout_ms;
    if (!dev)
        return;
    if (!name || !gw_tm_function(dev->product, name)) {
        gw_api_reply_error(r, 404, "not_found", NULL,
                           "no function \"%.64s\" in the thing model of %s", name ? name : "",
                           dev->product->id);
        return;
    }
    if (check_body(r, body, "inputs", false, &timeout_ms))
        return;
    if (!ctx->commands) {
        gw_api_reply_error(r, 503, "unavailable", NULL, "commands are not available");
        return;
    }
    req = new_request(ctx);
    if (req && (json_object_set_new(req, "function", json_string(name)) ||
                (json_object_get(body, "inputs") &&
                 json_object_set(req, "inputs", json_object_get(body, "inputs"))))) {
        json_decref(req);
        req = NULL;
    }
    submit(r, ctx, GW_CMD_INVOKE, dev, req, timeout_ms);
}

void gw_api_properties_write(gw_api_req *r, gw_api_ctx *ctx)
{
    json_t *body = gw_api_body(r), *req;
    const gw_device *dev = find_device(r, ctx);
    uint32_t timeout_ms;
    if (!dev || check_body(r, body, "properties", true, &timeout_ms))
        return;
    if (!ctx->commands) {
        gw_api_reply_error(r, 503, "unavailable", NULL, "commands are not available");
        return;
    }
    req = new_request(ctx);
    if (req && json_object_set(req, "properties", json_object_get(body, "properties"))) {
        json_decref(req);
        req = NULL;
    }
    submit(r, ctx, GW_CMD_WRITE, dev, req, timeout_ms);
}

/* Without fresh: the stored latest values as they are (they may trail the newest commits by up to
 * storage.state_lag_ms). fresh=1: a read command, routed and logged like the cloud's, answered
 * once the state tables hold every committed report. */
void gw_api_properties_read(gw_api_req *r, gw_api_ctx *ctx)
{
    const gw_device *dev = find_device(r, ctx);
    const char *fresh = gw_api_query(r, "fresh");
    json_t *stored = NULL, *body;
    bool want_fresh = false;
    if (!dev)
        return;
    if (fresh && (!strcmp(fresh, "1") || !strcmp(fresh, "true"))) {
        want_fresh = true;
    } else if (fresh && strcmp(fresh, "0") != 0 && strcmp(fresh, "false") != 0) {
        gw_api_reply_error(r, 400, "bad_query", "fresh", "fresh: expected 0, 1, true or false");
        return;
    }
    if (!ctx->reader || (want_fresh && !ctx->commands)) {
        gw_api_reply_error(r, 503, "unavailable", NULL, "the store cannot be read");
        return;
    }
    if (want_fresh) {
        submit(r, ctx, GW_CMD_READ, dev, new_request(ctx), 0);
        return;
    }
    if (gw_store_reader_properties(ctx->reader, dev, NULL, &stored) != 0) {
        gw_api_reply_error(r, 503, "store_error", NULL, "the latest values could not be read");
        return;
    }
    body = json_pack("{s:s,s:o}", "id", dev->id, "properties", api_properties(dev, stored));
    json_decref(stored);
    if (!body)
        gw_api_reply_error(r, 503, "out_of_memory", NULL, "out of memory");
    else
        gw_api_reply_json(r, 200, body);
}

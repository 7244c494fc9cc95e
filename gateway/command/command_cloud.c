/* command_cloud.c: a command message from the cloud, on the north thread: the device its topic
 * names, the payload parsed and validated against the thing model; then, for both origins (the
 * local API's too), a dry run of the product's codec (a command the device's frames cannot carry
 * is refused at once, not after a queue), property reads answered from the latest stored values;
 * the rest goes to the table. */
#include "command_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/alloc.h"
#include "../util/log.h"
#include "../util/metrics.h"
#include "../core/runtime.h"

#define AREA "command"

/* The topic names no device: there is nothing to attach a reply event to (events belong to a
 * device), so the command is counted and logged, and the cloud's own timeout answers it. */
static void unknown_device(const char *product, const char *device, const void *payload, size_t len)
{
    gw_metric_inc(GW_M_CMD_REJECTED);
    if (GW_LOG_WARN < gw_log_level)
        return;
    char q1[96], q2[96], q3[96], id[64] = "";
    json_t *root = json_loadb(payload ? (const char *)payload : "", len, 0, NULL);
    json_t *mid = json_object_get(root, "messageId");
    if (json_is_string(mid))
        snprintf(id, sizeof(id), "%s", json_string_value(mid));
    else if (json_is_integer(mid))
        snprintf(id, sizeof(id), "%" JSON_INTEGER_FORMAT, json_integer_value(mid));
    json_decref(root);
    gw_log_write(GW_LOG_WARN, AREA, NULL, NULL, "command for an unknown device dropped",
                 "product=%s device=%s msg_id=%s reason=unknown_device",
                 gw_log_quote(q1, sizeof(q1), product ? product : ""),
                 gw_log_quote(q2, sizeof(q2), device ? device : ""),
                 gw_log_quote(q3, sizeof(q3), id));
}

/* Encodes the command once with the product's codec, as the session will. 0 or an error with
 * err filled. */
static int dry_run(const gw_device *dev, const gw__cmd_req *r, gw_error *err)
{
    const gw_product *p = dev->product;
    const gw_codec_ops *ops = p->codec_ops;
    if (!ops || !ops->encode_command)
        return gw_error_set(err, GW_EINVAL, "codec %s carries no commands",
                            p->codec ? p->codec : "?");
    gw_command cmd = {.op = r->op, .dev = dev, .seq = 1, .fn = r->fn, .args = r->args};
    memcpy(cmd.msg_id, r->msg_id, sizeof(cmd.msg_id));
    memcpy(cmd.dev_msg_id, r->msg_id, sizeof(cmd.dev_msg_id));
    uint8_t small[4096], *buf = small;
    size_t cap = sizeof(small), n = 0;
    int rc;
    for (;;) {
        rc = ops->encode_command(p, &cmd, dev->id, dev->secret, buf, cap, &n, err);
        if (rc != GW_ETOOBIG || cap >= (1u << 22))
            break;
        cap *= 16;
        if (buf != small)
            gw_free(GW_AREA_RUNTIME, buf);
        if (!(buf = gw_malloc(GW_AREA_RUNTIME, cap)))
            return gw_error_set(err, GW_ENOMEM, "out of memory");
    }
    if (buf != small)
        gw_free(GW_AREA_RUNTIME, buf);
    if (rc == GW_ETOOBIG)
        gw_error_set(err, rc, "the encoded command exceeds %zu bytes", cap);
    return rc;
}

static void read_properties(gw_commands *c, const gw_device *dev, gw__cmd_req *r,
                            gw_store_reader *reader, unsigned sync_ms)
{
    json_t *out = NULL;
    if (reader && c->rt && c->rt->store) /* the latest values include every committed report */
        gw_store_sync_state(c->rt->store, sync_ms);
    int rc = reader ? gw_store_reader_properties(reader, dev, r->args, &out) : GW_ESTORE;
    if (rc != 0) {
        gw__commands_answer(c, dev, r, "store_error",
                            reader ? "the latest values could not be read"
                                   : "no store reader for property reads",
                            NULL);
        return;
    }
    char *payload = gw__cmd_success_json("properties", out);
    if (!payload) {
        gw__commands_answer(c, dev, r, "store_error", "out of memory", NULL);
        return;
    }
    gw__commands_answer(c, dev, r, NULL, NULL, payload);
}

void gw_commands_on_cloud(gw_commands *c, gw_command_op op, const char *product, const char *device,
                          const void *payload, size_t len)
{
    /* the newest generation (a reload may have added the device); held while this runs */
    const gw_config *cfg = gw_runtime_cfg_acquire(c->rt);
    const gw_device *dev = device ? gw_config_device(cfg, device) : NULL;
    gw__cmd_req r;
    char msg[192];

    gw_metric_inc(GW_M_CMD_RECEIVED);
    if (!dev) {
        unknown_device(product, device, payload, len);
        gw_config_release(cfg);
        return;
    }
    gw__cmd_parse(dev->product, op, payload, len, &r);
    if (!product || strcmp(product, dev->product->id) != 0) {
        /* the device exists under another product: answered on the device's own topics */
        snprintf(msg, sizeof(msg), "device %s belongs to product %s, not %.64s", dev->id,
                 dev->product->id, product ? product : "");
        gw__commands_answer(c, dev, &r, "unknown_device", msg, NULL);
    } else {
        gw__commands_take(c, dev, &r, c->reader, 1000);
    }
    gw__cmd_req_clear(&r);
    gw_config_release(cfg);
}

void gw__commands_take(gw_commands *c, const gw_device *dev, gw__cmd_req *r,
                       gw_store_reader *reader, unsigned sync_ms)
{
    gw_error err = {0, ""};
    if (r->code)
        gw__commands_answer(c, dev, r, r->code, r->message, NULL);
    else if (r->op == GW_CMD_READ)
        read_properties(c, dev, r, reader, sync_ms);
    else if (dry_run(dev, r, &err) != 0)
        gw__commands_answer(c, dev, r, "unsupported", err.msg, NULL);
    else
        gw__commands_add(c, dev, r);
}

/* fuzz_codec_json.c: the json codec and the thing-model validator on arbitrary bytes. Each input is
 * decoded as a property report, an event and a function reply, then validated; checks that a
 * rejection always carries a reason and a valid UTF-8 detail, that nothing leaks, and that
 * normalised output validates again to itself. The product: thermo_product.h. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codecs/json/codec_json.h"
#include "config/diag.h"
#include "gateway/util/error.h"
#include "gateway/core/thing_model.h"

#include "thermo_product.h"

/* A rejection must name a reason and a detail, and return GW_EINVAL; anything else is a bug. */
static void check_rc(int rc, const gw_reject *rej, json_t *out)
{
    if (rc == 0)
        return;
    if (rc != GW_EINVAL || rej->reason == GW_R_NONE || rej->detail[0] == '\0' || out != NULL)
        abort();
    json_t *d = json_string(rej->detail); /* must fit in a JSON reply: valid UTF-8 */
    if (!d)
        abort();
    json_decref(d);
}

/* Normalised output is a fixed point: validating it again succeeds and yields an equal value. */
static void check_fixed_point(json_t *out, int (*again)(json_t *in, json_t **o, gw_reject *r))
{
    json_t *out2 = NULL;
    gw_reject rej = {0};
    if (again(out, &out2, &rej) != 0 || !json_equal(out, out2))
        abort();
    json_decref(out2);
}

static int report_again(json_t *in, json_t **o, gw_reject *r)
{
    return gw_tm_check_report(&product, in, o, r);
}

static int overheat_again(json_t *in, json_t **o, gw_reject *r)
{
    return gw_tm_check_event(&product, "overheat", in, o, r);
}

static void run(gw_msg_kind kind, const char *name, const uint8_t *data, size_t size)
{
    gw_decode_hint hint = {kind, name};
    gw_thing_msg msg;
    gw_reject rej = {0};
    json_t *out = NULL;
    int rc = gw_codec_json_ops.decode(&product, &hint, data, size, &msg, &rej);
    if (rc != 0) {
        check_rc(rc, &rej, NULL);
        if (msg.values || memchr(msg.msg_id, 0, sizeof(msg.msg_id)) == NULL)
            abort();
        gw_thing_msg_clear(&msg);
        return;
    }
    if (msg.kind != kind || memchr(msg.msg_id, 0, sizeof(msg.msg_id)) == NULL)
        abort();
    switch (kind) {
    case GW_MSG_PROPERTY_REPORT:
        rc = gw_tm_check_report(&product, msg.values, &out, &rej);
        check_rc(rc, &rej, rc ? out : NULL);
        if (rc == 0)
            check_fixed_point(out, report_again);
        break;
    case GW_MSG_EVENT:
        rc = gw_tm_check_event(&product, msg.name, msg.values, &out, &rej);
        check_rc(rc, &rej, rc ? out : NULL);
        if (rc == 0)
            check_fixed_point(out, overheat_again);
        json_decref(out);
        out = NULL;
        /* the same data against an event without params, and an unknown event */
        rc = gw_tm_check_event(&product, "ping", msg.values, &out, &rej);
        check_rc(rc, &rej, rc ? out : NULL);
        json_decref(out);
        out = NULL;
        rc = gw_tm_check_event(&product, "nope", msg.values, &out, &rej);
        if (rc != GW_EINVAL || rej.reason != GW_R_UNKNOWN_EVENT)
            abort();
        break;
    case GW_MSG_FUNCTION_REPLY:
        rc = gw_tm_check_params(functions[0].outputs, functions[0].n_outputs, "outputs", msg.values,
                                &out, &rej);
        check_rc(rc, &rej, rc ? out : NULL);
        break;
    default:
        break;
    }
    json_decref(out);
    gw_thing_msg_clear(&msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The same thing model read through a "json" map (codecs/json/json_map.c): nested paths,
 * indexes, quoted names, scale/offset onto int and float, timestamp in seconds, message id. */
static gw_product mapped;

static void mapped_init(void)
{
    static const char *section =
        "{\"properties\": {\"temperature\": {\"path\": \"$.d.t\", \"scale\": 0.1, "
        "\"add\": -40}, \"level\": {\"path\": \"$.d['lv']\", \"scale\": 2}, \"ratio\": "
        "\"$.r[1][0]\", \"pos\": \"$.pos\", \"list\": \"$.l\"}, \"events\": {\"overheat\": "
        "{\"t\": \"$.a.t\"}}, \"timestamp\": {\"path\": \"$.ts\", \"unit\": \"s\"}, "
        "\"message_id\": \"$.id\"}";
    gw_diag dg = {0};
    mapped = product;
    mapped.raw = json_pack("{s:o}", "json", json_loads(section, 0, NULL));
    if (!mapped.raw || gw_codec_json_ops.init(&mapped, &dg, NULL) != 0 || !mapped.codec_state)
        abort();
}

static void run_mapped(gw_msg_kind kind, const char *name, const uint8_t *data, size_t size)
{
    gw_decode_hint hint = {kind, name};
    gw_thing_msg msg;
    gw_reject rej = {0};
    json_t *out = NULL;
    int rc = gw_codec_json_ops.decode(&mapped, &hint, data, size, &msg, &rej);
    if (rc != 0) {
        check_rc(rc, &rej, NULL);
        if (msg.values)
            abort();
        return;
    }
    if (!json_is_object(msg.values) || memchr(msg.msg_id, 0, sizeof(msg.msg_id)) == NULL ||
        msg.timestamp_ms < 0)
        abort();
    rc = kind == GW_MSG_EVENT ? gw_tm_check_event(&mapped, name, msg.values, &out, &rej)
                              : gw_tm_check_report(&mapped, msg.values, &out, &rej);
    check_rc(rc, &rej, rc ? out : NULL);
    json_decref(out);
    gw_thing_msg_clear(&msg);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!mapped.codec_state)
        mapped_init();
    run(GW_MSG_PROPERTY_REPORT, NULL, data, size);
    run(GW_MSG_EVENT, "overheat", data, size);
    run(GW_MSG_FUNCTION_REPLY, NULL, data, size);
    run_mapped(GW_MSG_PROPERTY_REPORT, NULL, data, size);
    run_mapped(GW_MSG_EVENT, "overheat", data, size);
    return 0;
}

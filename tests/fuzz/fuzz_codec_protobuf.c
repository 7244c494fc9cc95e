/* fuzz_codec_protobuf.c: the protobuf codec on arbitrary bytes: decoded as an MQTT payload under
 * each topic kind, as a UDP datagram and as a TCP stream (frame, then decode each frame). Checks:
 * a rejection carries a reason, a valid UTF-8 detail and no values; whatever the pre-scan lets
 * through protobuf-c unpacks (the scan's reasons are complete); frame() stays inside the buffer;
 * values validate through the thing model, and a valid report re-encodes (as a property write)
 * to bytes that unpack to the same values; acks encode and unpack. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "codecs/protobuf/internal.h"
#include "gateway/command/command.h"
#include "gateway/util/error.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static char *mode_values[] = {"eco", "comfort"};
static gw_value_spec st_fields[] = {
    {.id = "code", .type = GW_T_INT, .required = true},
    {.id = "msg", .type = GW_T_STRING, .max_length = 16},
};
static gw_value_spec item = {.type = GW_T_DOUBLE, .required = true};
static gw_value_spec properties[] = {
    {.id = "t", .type = GW_T_FLOAT, .has_min = true, .has_max = true, .min = -40, .max = 125},
    {.id = "d", .type = GW_T_DOUBLE},
    {.id = "i", .type = GW_T_INT},
    {.id = "l", .type = GW_T_LONG},
    {.id = "b", .type = GW_T_BOOL},
    {.id = "s", .type = GW_T_STRING, .max_length = 32},
    {.id = "m", .type = GW_T_ENUM, .enum_values = mode_values, .n_enum = N(mode_values)},
    {.id = "at", .type = GW_T_DATE},
    {.id = "st", .type = GW_T_STRUCT, .fields = st_fields, .n_fields = N(st_fields)},
    {.id = "a", .type = GW_T_ARRAY, .item = &item, .max_items = 8},
};
static gw_value_spec ev_params[] = {{.id = "t", .type = GW_T_FLOAT, .required = true}};
static gw_event_spec events[] = {{.id = "ev", .params = ev_params, .n_params = 1}};
static gw_value_spec fn_outputs[] = {{.id = "ok", .type = GW_T_BOOL, .required = true}};
static gw_function_spec functions[] = {{.id = "fn", .outputs = fn_outputs, .n_outputs = 1}};

#define PRODUCT(proto)                                                                             \
    {                                                                                              \
        .id = "p", .protocol = proto, .codec = "protobuf", .codec_ops = &gw_codec_protobuf_ops,    \
        .properties = properties, .n_properties = N(properties), .events = events,                 \
        .n_events = N(events), .functions = functions, .n_functions = N(functions)                 \
    }

static const gw_product mqtt = PRODUCT("mqtt");
static const gw_product tcp = PRODUCT("tcp");

static void check_rejection(const gw_thing_msg *m, const gw_reject *rej)
{
    if (rej->reason == GW_R_NONE || !rej->detail[0] || m->values)
        abort();
    /* the pre-scan let through what protobuf-c refused: a reason the scan does not give */
    if (strncmp(rej->detail, "does not decode as", 18) == 0)
        abort();
    json_t *d = json_string(rej->detail);
    if (!d)
        abort();
    json_decref(d);
}

/* A validated report goes back out as a property write; unpacked, it is the same object. */
static void round_trip(const gw_product *p, json_t *props)
{
    static uint8_t out[GW_PB_MAX_MESSAGE + GW_PB_PREFIX];
    size_t n = 0;
    gw_error err = {0};
    gw_command c = {.op = GW_CMD_WRITE, .seq = 1, .args = props};
    strcpy(c.dev_msg_id, "1");
    if (p->codec_ops->encode_command(p, &c, "d", "s", out, sizeof(out), &n, &err) != 0)
        abort();
    size_t pre = gw__pb_prefixed(p) ? GW_PB_PREFIX : 0;
    Iotgw__DeviceCommand *dc = iotgw__device_command__unpack(NULL, n - pre, out + pre);
    if (!dc || dc->body_case != IOTGW__DEVICE_COMMAND__BODY_WRITE)
        abort();
    gw_reject rej;
    json_t *back =
        gw__pb_fields_json(dc->write->properties, dc->write->n_properties, "properties", 0, &rej);
    if (!back || !json_equal(back, props))
        abort();
    json_decref(back);
    iotgw__device_command__free_unpacked(dc, NULL);
}

static void one(const gw_product *p, gw_msg_kind kind, const char *name, const uint8_t *data,
                size_t size)
{
    gw_decode_hint hint = {kind, name};
    gw_thing_msg m;
    gw_reject rej = {0};
    json_t *out = NULL;
    if (p->codec_ops->decode(p, &hint, data, size, &m, &rej) != 0) {
        check_rejection(&m, &rej);
        gw_thing_msg_clear(&m);
        return;
    }
    if (kind != GW_MSG_NONE && m.kind != kind)
        abort();
    switch (m.kind) {
    case GW_MSG_PROPERTY_REPORT:
        if (gw_tm_check_report(p, m.values, &out, &rej) == 0)
            round_trip(p, out);
        break;
    case GW_MSG_EVENT:
        gw_tm_check_event(p, m.name, m.values, &out, &rej);
        break;
    case GW_MSG_FUNCTION_REPLY:
        gw_tm_check_params(fn_outputs, 1, "outputs", m.values, &out, &rej);
        break;
    default:
        break;
    }
    json_decref(out);
    uint8_t ack[256];
    size_t n;
    if (p->codec_ops->encode_ack(p, &m, NULL, "s", ack, sizeof(ack), &n) != 0 || n < 2)
        abort();
    p->codec_ops->verify(p, &m, data, size, "s");
    gw_thing_msg_clear(&m);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    one(&mqtt, GW_MSG_NONE, NULL, data, size); /* UDP, CoAP */
    one(&mqtt, GW_MSG_PROPERTY_REPORT, NULL, data, size);
    one(&mqtt, GW_MSG_EVENT, "ev", data, size);
    one(&mqtt, GW_MSG_FUNCTION_REPLY, NULL, data, size);
    /* TCP: the stream cut into frames */
    size_t off = 0;
    while (off < size) {
        size_t skip = 0;
        int n = tcp.codec_ops->frame(&tcp, data + off, size - off, &skip);
        if (skip != 0 || n > (int)(size - off))
            abort();
        if (n <= 0)
            break;
        one(&tcp, GW_MSG_NONE, NULL, data + off, (size_t)n);
        off += (size_t)n;
    }
    return 0;
}

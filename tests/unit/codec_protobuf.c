/* codec_protobuf.c: the "protobuf" codec: every Value type both ways (decoded values validate
 * exactly like the same JSON through gw_tm_check_*), every rejection reason, the limits, TCP
 * framing, and encode_command / encode_ack bytes unpacked again with protobuf-c. */
#include "codecs/json/codec_json.h"
#include "codecs/protobuf/internal.h"
#include "gateway/command/command.h"
#include "gateway/util/error.h"

#include <string.h>

#include "pb_wire.h"
#include "test.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static char *mode_values[] = {"eco", "comfort"};
static gw_value_spec st_fields[] = {
    {.id = "code",
     .type = GW_T_INT,
     .has_min = true,
     .has_max = true,
     .imin = 0,
     .imax = 255,
     .required = true},
    {.id = "message", .type = GW_T_STRING, .max_length = 64},
};
static gw_value_spec sample_item = {.type = GW_T_FLOAT, .required = true};
static gw_value_spec properties[] = {
    {.id = "temperature",
     .type = GW_T_FLOAT,
     .has_min = true,
     .has_max = true,
     .min = -40,
     .max = 125},
    {.id = "precise", .type = GW_T_DOUBLE},
    {.id = "level", .type = GW_T_INT, .has_min = true, .has_max = true, .imin = 0, .imax = 10},
    {.id = "count", .type = GW_T_LONG},
    {.id = "on", .type = GW_T_BOOL},
    {.id = "name", .type = GW_T_STRING, .max_length = 8},
    {.id = "mode", .type = GW_T_ENUM, .enum_values = mode_values, .n_enum = N(mode_values)},
    {.id = "boot", .type = GW_T_DATE},
    {.id = "status", .type = GW_T_STRUCT, .fields = st_fields, .n_fields = N(st_fields)},
    {.id = "samples", .type = GW_T_ARRAY, .item = &sample_item, .max_items = 4},
};
static gw_value_spec oh_params[] = {{.id = "t", .type = GW_T_FLOAT, .required = true}};
static gw_event_spec events[] = {{.id = "overheat", .params = oh_params, .n_params = 1}};
static gw_value_spec rb_inputs[] = {{.id = "delay_s", .type = GW_T_INT, .required = true}};
static gw_value_spec rb_outputs[] = {{.id = "ok", .type = GW_T_BOOL, .required = true}};
static gw_function_spec functions[] = {
    {.id = "reboot", .inputs = rb_inputs, .n_inputs = 1, .outputs = rb_outputs, .n_outputs = 1}};

static gw_product prod = {
    .id = "thermo-pb",
    .protocol = "mqtt",
    .codec = "protobuf",
    .codec_ops = &gw_codec_protobuf_ops,
    .properties = properties,
    .n_properties = N(properties),
    .events = events,
    .n_events = N(events),
    .functions = functions,
    .n_functions = N(functions),
};

static const gw_codec_ops *ops = &gw_codec_protobuf_ops;
static gw_thing_msg msg;
static gw_reject rej;
static pbw m, body, v, v2;

static int dec_as(const gw_product *p, gw_msg_kind kind, const char *name, const pbw *w)
{
    gw_decode_hint hint = {kind, name};
    gw_thing_msg_clear(&msg);
    memset(&rej, 0, sizeof(rej));
    return ops->decode(p, &hint, w->b, w->n, &msg, &rej);
}

static int dec(gw_msg_kind kind, const pbw *w)
{
    return dec_as(&prod, kind, kind == GW_MSG_EVENT ? "overheat" : NULL, w);
}

/* m = DeviceMessage{message_id, body member num = body} */
static void wrap(uint32_t num, const char *id)
{
    m.n = 0;
    if (id)
        pbw_str(&m, 1, id);
    pbw_sub(&m, num, &body);
}

/* Rejected as malformed_payload; the detail contains want; no values kept. */
#define BAD(call, want)                                                                            \
    do {                                                                                           \
        CHECK_INT(call, GW_EINVAL);                                                                \
        CHECK_STR(gw_reason_name(rej.reason), "malformed_payload");                                \
        CHECK_CONTAINS(rej.detail, want);                                                          \
        CHECK(msg.values == NULL);                                                                 \
    } while (0)

/* The protobuf report's values, validated, equal the same report in JSON validated. */
static void same_as_json(const char *json_props)
{
    json_t *a = NULL, *b = NULL;
    gw_reject r1 = {0}, r2 = {0};
    int rc1 = gw_tm_check_report(&prod, msg.values, &a, &r1);
    gw_thing_msg jm;
    char text[1024];
    snprintf(text, sizeof(text), "{\"properties\":%s}", json_props);
    gw_decode_hint hint = {GW_MSG_PROPERTY_REPORT, NULL};
    CHECK_INT(gw_codec_json_ops.decode(&prod, &hint, (const uint8_t *)text, strlen(text), &jm, &r2),
              0);
    int rc2 = gw_tm_check_report(&prod, jm.values, &b, &r2);
    CHECK_INT(rc1, rc2);
    CHECK_INT(r1.reason, r2.reason);
    CHECK_STR(r1.detail, r2.detail);
    if (a && b && !json_equal(a, b)) {
        char *x = json_dumps(a, JSON_SORT_KEYS), *y = json_dumps(b, JSON_SORT_KEYS);
        fprintf(stderr, "protobuf %s != json %s\n", x, y);
        free(x), free(y);
        CHECK(0);
    }
    json_decref(a), json_decref(b);
    gw_thing_msg_clear(&jm);
}

static void report1(const char *name, const pbw *value)
{
    body.n = 0;
    pbw_field(&body, 1, name, value);
    wrap(PB_REPORT, "7");
}

static void test_value_types(void)
{
    /* every type, one report */
    body.n = 0;
    pbv_double(&v, 21.5), pbw_field(&body, 1, "temperature", &v);
    pbv_double(&v, 0.1), pbw_field(&body, 1, "precise", &v);
    pbv_int(&v, 7), pbw_field(&body, 1, "level", &v);
    pbv_int(&v, -9000000000LL), pbw_field(&body, 1, "count", &v);
    pbv_bool(&v, 1), pbw_field(&body, 1, "on", &v);
    pbv_str(&v, "hall"), pbw_field(&body, 1, "name", &v);
    pbv_str(&v, "eco"), pbw_field(&body, 1, "mode", &v);
    pbv_int(&v, 1700000000000LL), pbw_field(&body, 1, "boot", &v);
    pbw st = {.n = 0};
    pbv_int(&v, 3), pbw_field(&st, 1, "code", &v);
    pbv_str(&v, "ok"), pbw_field(&st, 1, "message", &v);
    v2.n = 0, pbw_sub(&v2, 5, &st), pbw_field(&body, 1, "status", &v2);
    pbw arr = {.n = 0};
    pbv_double(&v, 1.5), pbw_sub(&arr, 1, &v);
    pbv_int(&v, 2), pbw_sub(&arr, 1, &v); /* an int for a float item: normalised to 2.0 */
    v2.n = 0, pbw_sub(&v2, 6, &arr), pbw_field(&body, 1, "samples", &v2);
    m.n = 0;
    pbw_str(&m, 1, "42");
    pbw_uint(&m, 2, 1700000000123ULL);
    pbw_sub(&m, PB_REPORT, &body);
    CHECK_INT(dec(GW_MSG_PROPERTY_REPORT, &m), 0);
    CHECK_INT(msg.kind, GW_MSG_PROPERTY_REPORT);
    CHECK_STR(msg.msg_id, "42");
    CHECK_INT(msg.timestamp_ms, 1700000000123LL);
    CHECK(json_is_real(json_object_get(msg.values, "temperature")));
    CHECK(json_is_integer(json_object_get(msg.values, "level")));
    CHECK_INT(json_integer_value(json_object_get(msg.values, "count")), -9000000000LL);
    CHECK(json_is_true(json_object_get(msg.values, "on")));
    CHECK_STR(json_string_value(json_object_get(msg.values, "name")), "hall");
    CHECK(json_is_object(json_object_get(msg.values, "status")));
    CHECK_INT(json_array_size(json_object_get(msg.values, "samples")), 2);
    same_as_json("{\"temperature\":21.5,\"precise\":0.1,\"level\":7,\"count\":-9000000000,"
                 "\"on\":true,\"name\":\"hall\",\"mode\":\"eco\",\"boot\":1700000000000,"
                 "\"status\":{\"code\":3,\"message\":\"ok\"},\"samples\":[1.5,2]}");

    /* the thing model's rejections, identical to JSON's */
    pbv_double(&v, 200), report1("temperature", &v);
    CHECK_INT(dec(GW_MSG_PROPERTY_REPORT, &m), 0);
    same_as_json("{\"temperature\":200.0}");
    pbv_str(&v, "hot"), report1("temperature", &v);
    CHECK_INT(dec(GW_MSG_PROPERTY_REPORT, &m), 0);
    same_as_json("{\"temperature\":\"hot\"}");
    pbv_double(&v, 2.5), report1("level", &v);
    CHECK_INT(dec(GW_MSG_PROPERTY_REPORT, &m), 0);
    same_as_json("{\"level\":2.5}");
    pbv_str(&v, "toolongname"), report1("name", &v);
    CHECK_INT(dec(GW_MSG_PROPERTY_REPORT, &m), 0);
    same_as_json("{\"name\":\"toolongname\"}");
    pbv_str(&v, "away"), report1("mode", &v);
    CHECK_INT(dec(GW_MSG_PROPERTY_REPORT, &m), 0);
    same_as_json("{\"mode\":\"away\"}");
    pbv_bool(&v, 0), report1("nope", &v);
    CHECK_INT(dec(GW_MSG_PROPERTY_REPORT, &m), 0);
    same_as_json("{\"nope\":false}");
    body.n = 0, wrap(PB_REPORT, NULL);
    CHECK_INT(dec(GW_MSG_PROPERTY_REPORT, &m), 0);
    same_as_json("{}"); /* empty_report */
    arr.n = 0;
    for (int i = 0; i < 5; i++)
        pbv_double(&v, i), pbw_sub(&arr, 1, &v);
    v2.n = 0, pbw_sub(&v2, 6, &arr), report1("samples", &v2);
    CHECK_INT(dec(GW_MSG_PROPERTY_REPORT, &m), 0);
    same_as_json("{\"samples\":[0.0,1.0,2.0,3.0,4.0]}"); /* too_many_items */
    st.n = 0, v2.n = 0, pbw_sub(&v2, 5, &st), report1("status", &v2);
    CHECK_INT(dec(GW_MSG_PROPERTY_REPORT, &m), 0);
    same_as_json("{\"status\":{}}"); /* missing_param code */
}

static void test_kinds(void)
{
    /* event: id from the topic, or the same id in the message */
    body.n = 0;
    pbv_double(&v, 80.5), pbw_field(&body, 2, "t", &v);
    wrap(PB_EVENT, "e1");
    CHECK_INT(dec(GW_MSG_EVENT, &m), 0);
    CHECK_STR(msg.name, "overheat");
    json_t *out = NULL;
    CHECK_INT(gw_tm_check_event(&prod, msg.name, msg.values, &out, &rej), 0);
    json_decref(out);
    body.n = 0, pbw_str(&body, 1, "overheat"), pbv_double(&v, 1), pbw_field(&body, 2, "t", &v);
    wrap(PB_EVENT, NULL);
    CHECK_INT(dec(GW_MSG_EVENT, &m), 0);
    CHECK_INT(dec(GW_MSG_NONE, &m), 0); /* UDP/TCP: the id comes from the message */
    CHECK_STR(msg.name, "overheat");
    CHECK_INT(msg.kind, GW_MSG_EVENT);
    body.n = 0, pbw_str(&body, 1, "other"), wrap(PB_EVENT, NULL);
    BAD(dec(GW_MSG_EVENT, &m), "disagrees with the topic");
    body.n = 0, wrap(PB_EVENT, NULL);
    CHECK_INT(dec(GW_MSG_NONE, &m), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_UNKNOWN_EVENT);

    /* function reply: success, function, outputs, error text */
    body.n = 0;
    pbw_uint(&body, 1, 1), pbw_str(&body, 2, "reboot");
    pbv_bool(&v, 1), pbw_field(&body, 3, "ok", &v);
    wrap(PB_FREPLY, "5");
    CHECK_INT(dec(GW_MSG_FUNCTION_REPLY, &m), 0);
    CHECK_INT(msg.success, 1);
    CHECK_STR(msg.name, "reboot");
    CHECK_STR(msg.msg_id, "5");
    out = NULL;
    CHECK_INT(gw_tm_check_params(rb_outputs, 1, "outputs", msg.values, &out, &rej), 0);
    json_decref(out);
    body.n = 0, pbw_str(&body, 4, "busy"), pbw_str(&body, 5, "try later"), wrap(PB_FREPLY, "6");
    CHECK_INT(dec(GW_MSG_FUNCTION_REPLY, &m), 0);
    CHECK_INT(msg.success, 0);
    CHECK_STR(msg.error, "busy: try later");
    CHECK(msg.values == NULL);
    /* write reply */
    body.n = 0, pbw_uint(&body, 1, 1), wrap(PB_WREPLY, "8");
    CHECK_INT(dec(GW_MSG_WRITE_REPLY, &m), 0);
    CHECK_INT(msg.success, 1);
    /* the topic's kind must match the oneof */
    BAD(dec(GW_MSG_PROPERTY_REPORT, &m), "body is write_reply, the topic says report");
    /* login and heartbeat (byte transports) */
    body.n = 0, pbw_str(&body, 1, "mpb-001"), pbw_str(&body, 2, "s3cret"), wrap(PB_LOGIN, "1");
    CHECK_INT(dec(GW_MSG_NONE, &m), 0);
    CHECK_INT(msg.kind, GW_MSG_LOGIN);
    CHECK_STR(msg.device_id, "mpb-001");
    CHECK_STR(msg.secret, "s3cret");
    CHECK_INT(ops->verify(&prod, &msg, NULL, 0, "s3cret"), 0);
    CHECK_INT(ops->verify(&prod, &msg, NULL, 0, "s3creT"), GW_EAUTH);
    BAD(dec(GW_MSG_PROPERTY_REPORT, &m), "body is login");
    body.n = 0, wrap(PB_HEARTBEAT, NULL);
    CHECK_INT(dec(GW_MSG_NONE, &m), 0);
    CHECK_INT(msg.kind, GW_MSG_HEARTBEAT);
    /* UDP: device_id and token in the message; verify checks the token */
    body.n = 0, pbv_int(&v, 3), pbw_field(&body, 1, "level", &v);
    m.n = 0, pbw_str(&m, 3, "spb-001"), pbw_str(&m, 4, "tok"), pbw_sub(&m, PB_REPORT, &body);
    CHECK_INT(dec(GW_MSG_NONE, &m), 0);
    CHECK_STR(msg.device_id, "spb-001");
    CHECK_INT(ops->verify(&prod, &msg, m.b, m.n, "tok"), 0);
    CHECK_INT(ops->verify(&prod, &msg, m.b, m.n, "tok2"), GW_EAUTH);
    CHECK_INT(ops->verify(&prod, &msg, m.b, m.n, NULL), GW_EAUTH);
    m.n = 0, pbw_str(&m, 3, "spb-001"), pbw_sub(&m, PB_REPORT, &body);
    CHECK_INT(dec(GW_MSG_NONE, &m), 0);
    CHECK_INT(ops->verify(&prod, &msg, m.b, m.n, "tok"), GW_EAUTH); /* no token */
}

static void test_rejections(void)
{
    /* no body; empty value; truncated; wrong wire type; unknown oneof members; unknown field */
    m.n = 0, pbw_str(&m, 1, "9");
    BAD(dec(GW_MSG_PROPERTY_REPORT, &m), "no message body");
    CHECK_STR(msg.msg_id, "9"); /* kept for the rejection reply */
    v.n = 0, report1("level", &v);
    BAD(dec(GW_MSG_PROPERTY_REPORT, &m), "properties.level: value has no kind (empty oneof)");
    pbv_int(&v, 1), report1("level", &v);
    for (size_t cut = 1; cut < m.n; cut++) {
        pbw t = m;
        t.n = cut;
        int rc = dec(GW_MSG_PROPERTY_REPORT, &t);
        if (rc == 0) /* a cut at a field boundary is a shorter valid message */
            continue;
        CHECK_INT(rc, GW_EINVAL);
        CHECK(strstr(rej.detail, "truncated") != NULL || strstr(rej.detail, "no message body") ||
              strstr(rej.detail, "no kind") || strstr(rej.detail, "no value"));
    }
    m.n = 0, pbw_str(&m, 1, "1"), pbw_uint(&m, PB_REPORT, 5);
    BAD(dec(GW_MSG_PROPERTY_REPORT, &m),
        "wrong wire type: iotgw.DeviceMessage.report: wire type 0, expected 2");
    m.n = 0, pbw_tag(&m, 2, 3);
    BAD(dec(GW_MSG_PROPERTY_REPORT, &m), "wrong wire type: iotgw.DeviceMessage field 2");
    m.n = 0, pbw_tag(&m, 1, 7);
    BAD(dec(GW_MSG_PROPERTY_REPORT, &m), "wire type 7 (invalid)");
    m.n = 0, pbw_sub(&m, 20, &body);
    BAD(dec(GW_MSG_PROPERTY_REPORT, &m), "unknown oneof member: field 20 in iotgw.DeviceMessage");
    v.n = 0, pbw_uint(&v, 9, 1), report1("level", &v);
    BAD(dec(GW_MSG_PROPERTY_REPORT, &m), "unknown oneof member: field 9 in iotgw.Value");
    body.n = 0, pbw_uint(&body, 3, 1), wrap(PB_REPORT, NULL);
    BAD(dec(GW_MSG_PROPERTY_REPORT, &m), "unknown field 3 in iotgw.PropertyReport");
    m.n = 0, pbw_tag(&m, 0, 0), pbw_varint(&m, 1);
    BAD(dec(GW_MSG_PROPERTY_REPORT, &m), "field number 0 is invalid");
    m.n = 0, pbw_tag(&m, 2, 0);
    for (int i = 0; i < 11; i++)
        pbw_raw(&m, "\xff", 1);
    BAD(dec(GW_MSG_PROPERTY_REPORT, &m), "varint over 64 bits");
    /* fuzz finding: a length in an overlong (10-byte) varint passed the scan, protobuf-c reads
     * lengths and tags in at most 5 bytes */
    m.n = 0, pbw_raw(&m, "\x5a\x80\x80\x80\x80\x80\x80\x80\x80\x80\x00", 11);
    BAD(dec(GW_MSG_NONE, &m), "malformed: iotgw.DeviceMessage.event: length varint over 5 bytes");
    m.n = 0, pbw_raw(&m, "\x8a\x80\x80\x80\x80\x00\x00", 7);
    BAD(dec(GW_MSG_NONE, &m), "malformed: iotgw.DeviceMessage: tag over 5 bytes");
    /* strings: NUL, invalid UTF-8; names: empty, duplicate; ids: too long */
    pbv_str(&v, "ab"), v.b[v.n - 1] = 0, report1("name", &v);
    BAD(dec(GW_MSG_PROPERTY_REPORT, &m), "string contains a NUL byte");
    pbv_str(&v, "a\xff"), report1("name", &v);
    BAD(dec(GW_MSG_PROPERTY_REPORT, &m), "properties.name: string is not valid UTF-8");
    pbv_int(&v, 1), report1("", &v);
    BAD(dec(GW_MSG_PROPERTY_REPORT, &m), "properties[0]: field without a name");
    body.n = 0, pbw_field(&body, 1, "level", &v), pbw_field(&body, 1, "level", &v);
    wrap(PB_REPORT, NULL);
    BAD(dec(GW_MSG_PROPERTY_REPORT, &m), "properties.level: duplicate name");
    {
        pbw f = {.n = 0}, r = {.n = 0};
        pbw_str(&f, 1, "level");
        pbw_sub(&r, 1, &f);
        m.n = 0, pbw_sub(&m, PB_REPORT, &r);
        BAD(dec(GW_MSG_PROPERTY_REPORT, &m), "properties.level: no value");
    }
    /* duplicates: a singular field twice, two oneof members (fuzz finding: two empty Values in
     * one Field made protobuf-c 1.4 refuse what the scan passed) */
    {
        static const uint8_t two_empty[] = {0x62, 0x10, 0x08, 0x01, 0x12, 0x02, 0x66, 0x6e, 0x1a,
                                            0x08, 0x0a, 0x02, 0x6f, 0x6b, 0x12, 0x00, 0x12, 0x00};
        m.n = 0, pbw_raw(&m, two_empty, sizeof(two_empty));
        BAD(dec(GW_MSG_FUNCTION_REPLY, &m), "duplicate field: iotgw.Field.value appears twice");
    }
    m.n = 0, pbw_str(&m, 1, "a"), pbw_str(&m, 1, "b"), body.n = 0, pbw_sub(&m, PB_HEARTBEAT, &body);
    BAD(dec(GW_MSG_NONE, &m), "duplicate field: iotgw.DeviceMessage.message_id appears twice");
    body.n = 0, m.n = 0, pbw_sub(&m, PB_HEARTBEAT, &body), pbw_sub(&m, PB_REPORT, &body);
    BAD(dec(GW_MSG_NONE, &m), "iotgw.DeviceMessage.report is a second member of its oneof");
    v.n = 0, pbw_sint(&v, 1, 1), pbw_str(&v, 4, "x"), report1("level", &v);
    BAD(dec(GW_MSG_PROPERTY_REPORT, &m), "iotgw.Value.string_value is a second member");
    char id[80];
    memset(id, 'x', 70), id[70] = 0;
    body.n = 0, wrap(PB_HEARTBEAT, id);
    BAD(dec(GW_MSG_NONE, &m), "message_id: 70 bytes exceeds max 63");
    pbv_double(&v, 1.0 / 0.0), report1("precise", &v);
    BAD(dec(GW_MSG_PROPERTY_REPORT, &m), "is not a finite number");
    m.n = 0, pbw_uint(&m, 2, UINT64_MAX), body.n = 0, pbw_sub(&m, PB_HEARTBEAT, &body);
    BAD(dec(GW_MSG_NONE, &m), "timestamp_ms");
}

static void test_limits(void)
{
    /* nesting: arrays in arrays, GW_PB_MAX_DEPTH levels pass the scan, one more does not */
    for (int depth = GW_PB_MAX_DEPTH - 1; depth <= GW_PB_MAX_DEPTH; depth++) {
        pbw a = {.n = 0}, val;
        pbv_int(&val, 1);
        for (int i = 0; i < depth; i++) { /* val = Value{array{items: [val]}} */
            a.n = 0, pbw_sub(&a, 1, &val);
            val.n = 0, pbw_sub(&val, 6, &a);
        }
        report1("samples", &val);
        int rc = dec(GW_MSG_PROPERTY_REPORT, &m);
        if (depth < GW_PB_MAX_DEPTH) {
            CHECK_INT(rc, 0);
        } else {
            BAD(rc, "nesting too deep");
        }
    }
    /* elements */
    body.n = 0;
    pbv_int(&v, 1);
    for (int i = 0; i < GW_PB_MAX_ELEMENTS / 4 + 1; i++)
        pbw_field(&body, 1, "level", &v); /* 4 fields each: Field, name, value, int */
    wrap(PB_REPORT, NULL);
    BAD(dec(GW_MSG_PROPERTY_REPORT, &m), "too many elements");
    /* size */
    static char big[GW_PB_MAX_MESSAGE];
    memset(big, 'a', sizeof(big) - 1);
    big[sizeof(big) - 1] = 0;
    m.n = 0, pbw_str(&m, 1, big);
    BAD(dec(GW_MSG_NONE, &m), "over size: 65535 bytes, max 65532");
    /* a length past the end, and a huge one: never allocated */
    m.n = 0, pbw_tag(&m, PB_REPORT, 2), pbw_varint(&m, 1u << 30);
    BAD(dec(GW_MSG_NONE, &m), "truncated: iotgw.DeviceMessage.report: length 1073741824 past");
    /* the arena: a small budget fails protobuf-c's unpack, which gives up cleanly */
    pbv_str(&v, "a-long-enough-string-value"), report1("name", &v);
    gw__pb_alloc a;
    gw__pb_alloc_init(&a, 64, NULL, 0);
    CHECK(iotgw__device_message__unpack(&a.pc, m.n, m.b) == NULL);
    CHECK(a.refused);
    gw__pb_alloc_done(&a);
    /* a small message fits the caller's buffer: no heap block */
    uint64_t buf[512];
    gw__pb_alloc_init(&a, GW_PB_MAX_ALLOC, buf, sizeof(buf));
    Iotgw__DeviceMessage *dm = iotgw__device_message__unpack(&a.pc, m.n, m.b);
    CHECK(dm != NULL && !a.refused && a.used > 0 && a.used < 1024);
    CHECK_INT(a.n_blocks, 0);
    CHECK(dm && strcmp(dm->report->properties[0]->value->string_value,
                       "a-long-enough-string-value") == 0);
    gw__pb_alloc_done(&a);
    /* a big one spills into gw_malloc blocks, all released by done */
    static char big2[20000];
    memset(big2, 'b', sizeof(big2) - 1);
    pbv_str(&v, big2), report1("name", &v);
    gw__pb_alloc_init(&a, GW_PB_MAX_ALLOC, buf, sizeof(buf));
    dm = iotgw__device_message__unpack(&a.pc, m.n, m.b);
    CHECK(dm != NULL && a.n_blocks == 1 && a.used > 20000);
    gw__pb_alloc_done(&a);
    CHECK_INT(dec(GW_MSG_PROPERTY_REPORT, &m), 0);
    CHECK_INT(json_string_length(json_object_get(msg.values, "name")), sizeof(big2) - 1);
}

static void test_tcp_frame(void)
{
    gw_product tcp = prod;
    tcp.protocol = "tcp";
    size_t skip = 9;
    uint8_t b[16] = {0, 0, 0, 3, 0x7A, 0, 0, 0, 0, 0};
    CHECK_INT(ops->frame(&tcp, b, 3, &skip), 0);
    CHECK_INT(skip, 0);
    CHECK_INT(ops->frame(&tcp, b, 6, &skip), 0);
    CHECK_INT(ops->frame(&tcp, b, 7, &skip), 7);
    CHECK_INT(ops->frame(&tcp, b, 16, &skip), 7);
    uint8_t big[4] = {0, 0, 0xFF, 0xFD}; /* 65533 */
    CHECK_INT(ops->frame(&tcp, big, 4, &skip), GW_ETOOBIG);
    uint8_t max[4] = {0, 0, 0xFF, 0xFC}; /* 65532: needs more */
    CHECK_INT(ops->frame(&tcp, max, 4, &skip), 0);
    gw_frame_info fi;
    ops->frame_info(&tcp, &fi);
    CHECK_INT(fi.max_frame, 65536);
    CHECK(!fi.device_id_in_all);
    ops->frame_info(&prod, &fi);
    CHECK_INT(fi.max_frame, 65532);
    /* decode strips the prefix, and checks it */
    body.n = 0, wrap(PB_HEARTBEAT, "3");
    pbw f = {.n = 0};
    uint8_t pre[4] = {0, 0, 0, (uint8_t)m.n};
    pbw_raw(&f, pre, 4), pbw_raw(&f, m.b, m.n);
    CHECK_INT(dec_as(&tcp, GW_MSG_NONE, NULL, &f), 0);
    CHECK_STR(msg.msg_id, "3");
    f.b[3]++;
    BAD(dec_as(&tcp, GW_MSG_NONE, NULL, &f), "length prefix says");
}

static void test_encode(void)
{
    uint8_t out[512];
    size_t n = 99;
    gw_error err = {0};
    gw_command c = {.op = GW_CMD_INVOKE, .seq = 17, .fn = &functions[0]};
    strcpy(c.dev_msg_id, "17");
    c.args = json_pack("{s:i, s:f, s:b, s:s, s:{s:i}, s:[i,i]}", "delay_s", 5, "x", 2.5, "b", 1,
                       "s", "hi", "st", "code", 3, "arr", 1, 2);
    CHECK_INT(ops->encode_command(&prod, &c, "tpb-001", "sec", out, sizeof(out), &n, &err), 0);
    Iotgw__DeviceCommand *dc = iotgw__device_command__unpack(NULL, n, out);
    CHECK(dc != NULL);
    if (dc) {
        CHECK_STR(dc->message_id, "17");
        CHECK_INT(dc->seq, 17);
        CHECK_INT(dc->body_case, IOTGW__DEVICE_COMMAND__BODY_INVOKE);
        CHECK_STR(dc->invoke->function, "reboot");
        CHECK_INT(dc->invoke->n_inputs, 6);
        /* back to JSON with the decoder's own conversion: the same object */
        json_t *back =
            gw__pb_fields_json(dc->invoke->inputs, dc->invoke->n_inputs, "inputs", 0, &rej);
        CHECK(back && json_equal(back, c.args));
        json_decref(back);
        iotgw__device_command__free_unpacked(dc, NULL);
    }
    /* too small a buffer */
    CHECK_INT(ops->encode_command(&prod, &c, "tpb-001", "sec", out, 10, &n, &err), GW_ETOOBIG);
    json_decref(c.args);
    /* property write, on TCP: the length prefix first */
    gw_product tcp = prod;
    tcp.protocol = "tcp";
    c.op = GW_CMD_WRITE;
    c.fn = NULL;
    c.args = json_pack("{s:s}", "mode", "eco");
    CHECK_INT(ops->encode_command(&tcp, &c, "mpb-001", "sec", out, sizeof(out), &n, &err), 0);
    CHECK(n > 4 && out[0] == 0 && out[1] == 0 && (size_t)(out[2] << 8 | out[3]) == n - 4);
    dc = iotgw__device_command__unpack(NULL, n - 4, out + 4);
    CHECK(dc != NULL);
    if (dc) {
        CHECK_INT(dc->body_case, IOTGW__DEVICE_COMMAND__BODY_WRITE);
        CHECK_INT(dc->write->n_properties, 1);
        CHECK_STR(dc->write->properties[0]->name, "mode");
        CHECK_STR(dc->write->properties[0]->value->string_value, "eco");
        iotgw__device_command__free_unpacked(dc, NULL);
    }
    json_decref(c.args);
    c.op = GW_CMD_READ;
    CHECK_INT(ops->encode_command(&prod, &c, "x", "y", out, sizeof(out), &n, &err), GW_EINVAL);

    /* acks */
    gw_thing_msg am = {.kind = GW_MSG_PROPERTY_REPORT};
    strcpy(am.msg_id, "m-9");
    CHECK_INT(ops->encode_ack(&prod, &am, NULL, "sec", out, sizeof(out), &n), 0);
    Iotgw__Ack *ack = iotgw__ack__unpack(NULL, n, out);
    CHECK(ack && ack->ok && strcmp(ack->message_id, "m-9") == 0 && ack->code[0] == 0);
    if (ack)
        iotgw__ack__free_unpacked(ack, NULL);
    /* a refusal says why: the reason's name and its detail */
    gw_reject why = {GW_R_OUT_OF_RANGE, "properties.temperature: 300 is above max 125"};
    CHECK_INT(ops->encode_ack(&tcp, &am, &why, NULL, out, sizeof(out), &n), 0);
    CHECK((size_t)out[3] == n - 4);
    ack = iotgw__ack__unpack(NULL, n - 4, out + 4);
    CHECK(ack && !ack->ok && strcmp(ack->code, "out_of_range") == 0 &&
          strcmp(ack->message, why.detail) == 0);
    if (ack)
        iotgw__ack__free_unpacked(ack, NULL);
    /* no reason (a refused login): code "rejected"; the longest detail and id still fit 512 */
    gw_reject none = {GW_R_NONE, ""};
    memset(none.detail, 'd', sizeof(none.detail) - 1);
    memset(am.msg_id, 'm', sizeof(am.msg_id) - 1);
    CHECK_INT(ops->encode_ack(&tcp, &am, &none, NULL, out, 512, &n), 0);
    ack = iotgw__ack__unpack(NULL, n - 4, out + 4);
    CHECK(ack && !ack->ok && strcmp(ack->code, "rejected") == 0 &&
          strlen(ack->message) == sizeof(none.detail) - 1);
    if (ack)
        iotgw__ack__free_unpacked(ack, NULL);
    strcpy(am.msg_id, "m-9");
    CHECK_INT(ops->encode_ack(&tcp, &am, NULL, NULL, out, 5, &n), GW_ETOOBIG);
}

int main(void)
{
    CHECK_STR(ops->name, "protobuf");
    test_value_types();
    test_kinds();
    test_rejections();
    test_limits();
    test_tcp_frame();
    test_encode();
    gw_thing_msg_clear(&msg);
    TEST_MAIN_END();
}

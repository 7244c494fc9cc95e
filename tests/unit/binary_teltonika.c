/* binary_teltonika.c: the teltonika-fmb example product (config/products/teltonika-fmb.json)
 * against the published examples of Teltonika's "Codec" wiki page (wiki.teltonika-gps.com/view/
 * Codec): the IMEI handshake and its answers, the Codec 8 examples 1-3 and the Codec 8 Extended
 * example decoded field by field, record by record, with the ack carrying the record count, the
 * Codec 12 "getinfo" command encoded byte for byte and its response decoded; then the refusals
 * (bad CRC, a second count or a data length that disagrees with the first count, a truncated IO
 * list, a wrong IO total), unknown IO ids skipped and counted, and the config errors of the new
 * layout kinds (group, idlist, bare ack, handshake). */
/* The product as shipped, over TCP (a group's records are for the TCP adapter): a gateway with a
 * TCP listener for it (the config is only loaded, nothing binds). */
#define BT_GATEWAY                                                                                 \
    "{ \"log_level\": \"warn\", \"admin\": { \"enabled\": false }, \"adapters\": { "               \
    "\"tcp\": { \"listeners\": [ { \"address\": \"127.0.0.1\", \"port\": 0, \"product\": "         \
    "\"teltonika-fmb\" } ] } } }\n"
#include "binary_test.h"

#include <math.h>

static const gw_codec_ops *ops = &gw_codec_binary_ops;

/* The wiki's examples, verbatim. */
#define IMEI_HS "000F333536333037303432343431303133"
#define C8_EX1                                                                                     \
    "000000000000003608010000016B40D8EA30010000000000000000000000000000000105021503010101425E0F01" \
    "F10000601A014E0000000000000000010000C7CF"
#define C8_EX2                                                                                     \
    "000000000000002808010000016B40D9AD80010000000000000000000000000000000103021503010101425E1000" \
    "00010000F22A"
#define C8_EX3                                                                                     \
    "000000000000004308020000016B40D57B480100000000000000000000000000000001010101000000000000016B" \
    "40D5C198010000000000000000000000000000000101010101000000020000252C"
#define C8E_EX                                                                                     \
    "000000000000004A8E010000016B412CEE0001000000000000000000000000000000000100050001000101000100" \
    "11"                                                                                           \
    "001D00010010015E2C880002000B000000003544C87A000E000000001DD7E06A00000100002994"
#define C12_GETINFO "000000000000000F0C010500000007676574696E666F0100004312"
#define C12_RESPONSE                                                                               \
    "00000000000000900C010600000088494E493A323031392F372F323220373A3232205254433A323031392F372F32" \
    "3220373A3533205253543A32204552523A312053523A302042523A302043463A302046473A3020464C3A30205455" \
    "3A302F302055543A3020534D533A30204E4F4750533A303A3330204750533A31205341543A302052533A33205246" \
    "3A36352053463A31204D443A30010000C78F"

/* The example product, edited (root: consumed). */
static bt_loaded load(json_t *root)
{
    char *text = json_dumps(root, JSON_INDENT(1));
    bt_loaded r = bt_load_text(text);
    free(text);
    json_decref(root);
    return r;
}

static int decode(const gw_product *p, const uint8_t *b, size_t n, gw_thing_msg *m, gw_reject *rej)
{
    memset(rej, 0, sizeof(*rej));
    return ops->decode(p, NULL, b, n, m, rej);
}

/* CRC-16/ARC over codec id .. second count into the last two bytes (the wiki's check). */
static void fix_crc(uint8_t *f, size_t n)
{
    uint32_t c = bt_crc("crc16-arc", f + 8, n - 12);
    f[n - 2] = (uint8_t)(c >> 8);
    f[n - 1] = (uint8_t)c;
}

static const json_t *rec(const gw_thing_msg *m, size_t i, int64_t *ts)
{
    const json_t *r = json_array_get(m->records, i);
    *ts = json_integer_value(json_object_get(r, "ts"));
    return json_object_get(r, "values");
}

#define CHECK_I(v, key, want)                                                                      \
    do {                                                                                           \
        const json_t *x_ = json_object_get(v, key);                                                \
        CHECK(json_is_integer(x_));                                                                \
        CHECK_INT(json_integer_value(x_), want);                                                   \
    } while (0)
#define CHECK_R(v, key, want)                                                                      \
    do {                                                                                           \
        const json_t *x_ = json_object_get(v, key);                                                \
        CHECK(json_is_number(x_));                                                                 \
        if (fabs(json_number_value(x_) - (want)) > 1e-9) {                                         \
            fprintf(stderr, "%s:%d: %s = %.17g, want %.17g\n", __FILE__, __LINE__, key,            \
                    json_number_value(x_), (double)(want));                                        \
            gw_t_fail++;                                                                           \
        }                                                                                          \
    } while (0)
#define CHECK_B(v, key, want)                                                                      \
    CHECK(json_is_boolean(json_object_get(v, key)) &&                                              \
          json_is_true(json_object_get(v, key)) == (want))

/* The GPS element of the wiki's examples: all zero. */
static void check_gps_zero(const json_t *v)
{
    CHECK_R(v, "lat", 0);
    CHECK_R(v, "lon", 0);
    CHECK_I(v, "altitude", 0);
    CHECK_I(v, "angle", 0);
    CHECK_I(v, "satellites", 0);
    CHECK_I(v, "speed", 0);
}

static void check_ack(const gw_product *p, gw_thing_msg *m, uint32_t accepted, const char *hex)
{
    uint8_t out[64];
    size_t n = 99;
    m->n_accepted = accepted;
    CHECK_INT(ops->encode_ack(p, m, NULL, NULL, out, sizeof(out), &n), 0);
    CHECK_STR(bt_hex(out, n), hex);
}

static void test_handshake(const gw_product *p)
{
    uint8_t b[64], out[8];
    gw_thing_msg m;
    gw_reject rej = {0};
    size_t n = bt_unhex(IMEI_HS, b, sizeof(b)), k;
    CHECK(ops->handshake != NULL);
    for (size_t cut = 0; cut < n; cut++) /* more bytes needed, at every split */
        CHECK_INT(ops->handshake(p, b, cut, &m, &rej), 0);
    CHECK_INT(ops->handshake(p, b, n, &m, &rej), 17);
    CHECK_INT(m.kind, GW_MSG_LOGIN);
    CHECK_STR(m.device_id, "356307042441013");
    CHECK_INT(ops->verify(p, &m, b, n, NULL), 0); /* device-id alone */
    CHECK_INT(ops->encode_ack(p, &m, NULL, NULL, out, sizeof(out), &k), 0);
    CHECK_STR(bt_hex(out, k), "01");
    static const gw_reject refused = {GW_R_NONE, "login refused"};
    CHECK_INT(ops->encode_ack(p, &m, &refused, NULL, out, sizeof(out), &k), 0);
    CHECK_STR(bt_hex(out, k), "00");
    /* an AVL packet right behind it is the next unit, not part of the handshake */
    n += bt_unhex(C8_EX2, b + n, sizeof(b) - n);
    CHECK_INT(ops->handshake(p, b, n, &m, &rej), 17);
    /* a length of 0, or one no device id has */
    b[0] = 0, b[1] = 0;
    CHECK_INT(ops->handshake(p, b, 17, &m, &rej), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_MALFORMED_PAYLOAD);
    b[0] = 0x12, b[1] = 0x34;
    CHECK_INT(ops->handshake(p, b, 17, &m, &rej), GW_EINVAL);
    CHECK(strstr(rej.detail, "4660 bytes") != NULL);
}

static void test_codec8(const gw_product *p)
{
    uint8_t f[512];
    gw_thing_msg m;
    gw_reject rej;
    int64_t ts;
    size_t n, skip;

    /* example 1: one record, IO 21=3, 1=1, 66=0x5E0F, 241=0x601A, 78=0 */
    n = bt_unhex(C8_EX1, f, sizeof(f));
    CHECK_INT(bt_crc("crc16-arc", f + 8, n - 12), 0xC7CF);
    CHECK_INT(ops->frame(p, f, n, &skip), (int)n);
    CHECK_INT(ops->frame(p, f, n - 1, &skip), 0);
    CHECK_INT(decode(p, f, n, &m, &rej), 0);
    CHECK_INT(m.kind, GW_MSG_PROPERTY_REPORT);
    CHECK_INT(m.type_code, 0x08);
    CHECK_INT(json_array_size(m.records), 1);
    CHECK_INT(m.unknown_items, 0);
    const json_t *v = rec(&m, 0, &ts);
    CHECK_INT(ts, 1560161086000LL); /* 0x0000016B40D8EA30: 2019-06-10 10:04:46 UTC */
    check_gps_zero(v);
    CHECK_I(v, "gsm_signal", 3);
    CHECK_B(v, "din1", true);
    CHECK_R(v, "external_voltage", 24.079); /* 0x5E0F mV */
    CHECK_I(v, "gsm_operator", 24602);      /* 0x601A */
    CHECK_STR(json_string_value(json_object_get(v, "ibutton")), "0000000000000000");
    CHECK_INT(json_object_size(v), 11);
    check_ack(p, &m, 1, "00 00 00 01");
    gw_thing_msg_clear(&m);

    /* example 2: one record, IO 21=3, 1=1, 66=0x5E10 */
    n = bt_unhex(C8_EX2, f, sizeof(f));
    CHECK_INT(decode(p, f, n, &m, &rej), 0);
    CHECK_INT(json_array_size(m.records), 1);
    v = rec(&m, 0, &ts);
    CHECK_INT(ts, 1560161136000LL);
    check_gps_zero(v);
    CHECK_I(v, "gsm_signal", 3);
    CHECK_B(v, "din1", true);
    CHECK_R(v, "external_voltage", 24.080);
    CHECK_INT(json_object_size(v), 9);
    check_ack(p, &m, 1, "00 00 00 01");
    gw_thing_msg_clear(&m);

    /* example 3: two records, IO 1=0 then IO 1=1; the answer is 00000002 */
    n = bt_unhex(C8_EX3, f, sizeof(f));
    CHECK_INT(decode(p, f, n, &m, &rej), 0);
    CHECK_INT(json_array_size(m.records), 2);
    v = rec(&m, 0, &ts);
    CHECK_INT(ts, 1560160861000LL);
    check_gps_zero(v);
    CHECK_B(v, "din1", false);
    CHECK_INT(json_object_size(v), 7);
    v = rec(&m, 1, &ts);
    CHECK_INT(ts, 1560160879000LL);
    check_gps_zero(v);
    CHECK_B(v, "din1", true);
    CHECK_INT(json_object_size(v), 7);
    check_ack(p, &m, 2, "00 00 00 02");
    check_ack(p, &m, 1, "00 00 00 01"); /* the records the gateway accepted */
    gw_thing_msg_clear(&m);
}

static void test_codec8e(const gw_product *p)
{
    uint8_t f[512];
    gw_thing_msg m;
    gw_reject rej;
    int64_t ts;
    size_t n = bt_unhex(C8E_EX, f, sizeof(f));
    /* 2-byte ids and counts: event id 1, 5 IO: 1=1, 17=0x001D, 16=0x015E2C88, 11=0x3544C87A,
     * 14=0x1DD7E06A, no variable-length one */
    CHECK_INT(decode(p, f, n, &m, &rej), 0);
    CHECK_INT(m.type_code, 0x8E);
    CHECK_INT(json_array_size(m.records), 1);
    const json_t *v = rec(&m, 0, &ts);
    CHECK_INT(ts, 1560166592000LL);
    check_gps_zero(v);
    CHECK_B(v, "din1", true);
    CHECK_I(v, "axis_x", 29);
    CHECK_I(v, "total_odometer", 22949000);
    CHECK_I(v, "iccid1", 893700218);
    CHECK_I(v, "iccid2", 500686954);
    CHECK_INT(json_object_size(v), 11);
    check_ack(p, &m, 1, "00 00 00 01");
    gw_thing_msg_clear(&m);

    /* a variable-length item (NX: id, 2-byte length, value) in 8E: ibutton as 3 bytes, and a
     * signed value: axis_x = -2 */
    static const char *nx =
        "00000000 00000000 8E 01 0000016B412CEE00 01 00000000 00000000 0000 0000 00 0000"
        " 0001 0002 0000 0001 0011 FFFE 0000 0000 0001 004E 0003 ABCDEF 01 0000 0000";
    n = bt_unhex(nx, f, sizeof(f));
    gw__binary_put_uint(f + 4, 4, false, n - 12);
    fix_crc(f, n);
    CHECK_INT(decode(p, f, n, &m, &rej), 0);
    v = rec(&m, 0, &ts);
    CHECK_I(v, "axis_x", -2);
    CHECK_STR(json_string_value(json_object_get(v, "ibutton")), "abcdef");
    gw_thing_msg_clear(&m);
}

static void test_refusals(const gw_product *p)
{
    uint8_t f[512], g[512];
    gw_thing_msg m;
    gw_reject rej;
    int64_t ts;
    size_t n = bt_unhex(C8_EX3, f, sizeof(f));

    /* a bad CRC: bad_check, nothing kept (no ack: the device resends) */
    memcpy(g, f, n);
    g[n - 1] ^= 1;
    CHECK_INT(decode(p, g, n, &m, &rej), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_BAD_CHECK);
    CHECK(m.records == NULL && m.kind == GW_MSG_NONE);

    /* the second count says 1, the first 2 */
    memcpy(g, f, n);
    g[n - 5] = 1;
    fix_crc(g, n);
    CHECK_INT(decode(p, g, n, &m, &rej), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_MALFORMED_PAYLOAD);
    CHECK(strstr(rej.detail, "the count after the records is 1, the count before them 2") != NULL);
    CHECK(m.records == NULL);

    /* both counts say 1, the data holds 2 records */
    g[9] = 1;
    fix_crc(g, n);
    CHECK_INT(decode(p, g, n, &m, &rej), GW_EINVAL);
    CHECK(strstr(rej.detail, "the count after the records") != NULL);

    /* both counts say 3, the data holds 2: the third record runs past the data */
    memcpy(g, f, n);
    g[9] = 3, g[n - 5] = 3;
    fix_crc(g, n);
    CHECK_INT(decode(p, g, n, &m, &rej), GW_EINVAL);
    CHECK(strstr(rej.detail, "record 3 of 3") != NULL);

    /* one record dropped from the data, the data length and CRC made to match, counts 2 */
    memcpy(g, f, 10 + 32);        /* header, count, first record (32 bytes) */
    memcpy(g + 42, f + n - 5, 5); /* second count, CRC */
    gw__binary_put_uint(g + 4, 4, false, 47 - 12);
    fix_crc(g, 47);
    CHECK_INT(decode(p, g, 47, &m, &rej), GW_EINVAL);
    CHECK(strstr(rej.detail, "record 2 of 2") != NULL);

    /* truncated: the first record's IO list cut short (the data length follows the cut) */
    n = bt_unhex(C8_EX1, f, sizeof(f));
    memcpy(g, f, 40);
    memcpy(g + 40, f + n - 5, 5);
    gw__binary_put_uint(g + 4, 4, false, 45 - 12);
    fix_crc(g, 45);
    CHECK_INT(decode(p, g, 45, &m, &rej), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_MALFORMED_PAYLOAD);
    CHECK(strstr(rej.detail, "record 1 of 1") != NULL);

    /* an IO total that is not the sum of the groups */
    memcpy(g, f, n);
    g[35] = 6; /* total 5 -> 6 */
    fix_crc(g, n);
    CHECK_INT(decode(p, g, n, &m, &rej), GW_EINVAL);
    CHECK(strstr(rej.detail, "the total count says 6 items, the groups hold 5") != NULL);

    /* an item whose width is not its id's: 66 (u16) in the 1-byte group */
    memcpy(g, f, n);
    g[37] = 66;
    fix_crc(g, n);
    CHECK_INT(decode(p, g, n, &m, &rej), GW_EINVAL);
    CHECK(strstr(rej.detail, "item 66 has 1 bytes, the layout says 2") != NULL);

    /* unknown ids: skipped and counted; the record keeps the rest (78 -> 99, 21 -> 200) */
    memcpy(g, f, n);
    CHECK_INT(g[52], 0x4E);
    g[52] = 99;
    CHECK_INT(g[37], 0x15);
    g[37] = 200;
    fix_crc(g, n);
    CHECK_INT(decode(p, g, n, &m, &rej), 0);
    CHECK_INT(m.unknown_items, 2);
    const json_t *v = rec(&m, 0, &ts);
    CHECK(json_object_get(v, "ibutton") == NULL && json_object_get(v, "gsm_signal") == NULL);
    CHECK_B(v, "din1", true);
    CHECK_INT(json_object_size(v), 9);
    gw_thing_msg_clear(&m);
}

static void test_codec12(const gw_product *p)
{
    uint8_t out[512], f[512];
    size_t n;
    gw_error err = {0};
    gw_thing_msg m;
    gw_reject rej;
    json_t *in = json_pack("{s:s}", "text", "getinfo");
    CHECK_INT(gw_binary_encode_command(p, "356307042441013", NULL, "command", in, 1, out,
                                       sizeof(out), &n, &err),
              0);
    CHECK_STR(bt_hex(out, n), bt_hex(f, bt_unhex(C12_GETINFO, f, sizeof(f))));
    json_decref(in);
    /* the device's response: type 0x06, the function's output */
    n = bt_unhex(C12_RESPONSE, f, sizeof(f));
    CHECK_INT(decode(p, f, n, &m, &rej), 0);
    CHECK_INT(m.kind, GW_MSG_FUNCTION_REPLY);
    CHECK_STR(m.name, "command");
    CHECK_INT(m.success, 1);
    const char *resp = json_string_value(json_object_get(m.values, "response"));
    CHECK(resp && strncmp(resp, "INI:2019/7/22 7:22 RTC:2019/7/22 7:53 RST:2 ERR:1", 48) == 0);
    CHECK(resp && strlen(resp) == 0x88);
    CHECK(resp && strcmp(resp + strlen(resp) - 4, "MD:0") == 0);
    size_t k = 7;
    CHECK_INT(ops->encode_ack(p, &m, NULL, NULL, out, sizeof(out), &k), 0);
    CHECK_INT(k, 0); /* a response is not acked */
    gw_thing_msg_clear(&m);
    /* a command (type 5) sent back to us is no reply */
    n = bt_unhex(C12_GETINFO, f, sizeof(f));
    CHECK_INT(decode(p, f, n, &m, &rej), GW_EINVAL);
    CHECK(strstr(rej.detail, "expected 0x6, got 0x5") != NULL);
    gw_thing_msg_clear(&m);
}

/* The product with one edit at path (set; NULL with remove: deleted): its first error. */
static void expect_error(const char *path, json_t *set, const char *want)
{
    json_t *root = bt_read_example("teltonika-fmb.json");
    bt_at(root, path, set ? set : json_null(), set == NULL);
    bt_loaded r = load(root);
    CHECK(r.p == NULL);
    if (!strstr(r.errors, want)) {
        fprintf(stderr, "%s:%d: want \"%s\" in:%s\n", __FILE__, __LINE__, want, r.errors);
        gw_t_fail++;
    }
    bt_free(&r);
}

static void test_config_errors(void)
{
    const char *rec0 = "frame.messages[0].fields[0]";
    char p[160];
    expect_error(
        "frame.header[1]",
        json_pack("{s:s,s:i,s:[{s:s}]}", "type", "group", "count", 1, "record", "type", "u8"),
        "frame.header[1]: a group is for report and event messages");
    snprintf(p, sizeof(p), "%s.count", rec0);
    expect_error(p, json_integer(3), "fields[0].count: must be 1, 2 or 4");
    snprintf(p, sizeof(p), "%s.record[9].widths[1]", rec0);
    expect_error(p, json_integer(3), "record[9].widths[1]: must be 1, 2, 4, 8 or \"var\"");
    snprintf(p, sizeof(p), "%s.record[9].items.21.property", rec0);
    expect_error(p, json_string("nope"), "record[9].items.21.property: no property \"nope\"");
    snprintf(p, sizeof(p), "%s.record[9].items.300", rec0);
    expect_error(p, json_pack("{s:s,s:s}", "type", "u8", "property", "din1"),
                 "record[9].items.300: an id is a decimal number 0..255");
    snprintf(p, sizeof(p), "%s.record[0].role", rec0);
    expect_error(p, json_string("seq"), "a record's fields carry no role but timestamp");
    snprintf(p, sizeof(p), "%s.record[8]", rec0);
    expect_error(
        p, json_pack("{s:s,s:s,s:i,s:[]}", "name", "inner", "type", "group", "count", 1, "record"),
        "a group cannot hold groups");
    json_t *ex = bt_read_example("teltonika-fmb.json");
    json_t *g0 = bt_at(ex, "frame.messages[0].fields[0]", NULL, false);
    expect_error("frame.messages[0].fields", json_pack("[O,{s:s}]", g0, "type", "u8"),
                 "a group is the last field of its message");
    json_decref(ex);
    /* a handshake carries no secret: the product must say that the id alone authenticates */
    expect_error("auth", NULL,
                 "frame.handshake: a handshake carries no secret: the product needs \"auth\": "
                 "{\"mode\": \"device-id\"}");
    expect_error("frame.messages[0].ack.match", json_integer(8),
                 "a bare ack has no header, so no discriminator value");
    expect_error("frame.messages[0].ack.fields[0].role", json_string("record_counts"),
                 "unknown role \"record_counts\"");
    expect_error("frame.messages[2].fields[2].prefix", json_integer(3),
                 "fields[2].prefix: must be 1, 2 or 4");
    expect_error("frame.handshake.accept", json_string("0"), "frame.handshake.accept: must be");
    expect_error("frame.handshake.field.role", json_string("secret"),
                 "frame.handshake.field.role: the handshake's field has role device_id");
    expect_error("frame.messages[2]", json_pack("{s:s,s:s}", "kind", "login", "match", "0x0D"),
                 "the handshake is the login: no message of kind login");
}

int main(void)
{
    bt_loaded r = load(bt_read_example("teltonika-fmb.json"));
    if (!r.p)
        fprintf(stderr, "teltonika-fmb.json does not load:%s", r.errors);
    if (r.p) {
        test_handshake(r.p);
        test_codec8(r.p);
        test_codec8e(r.p);
        test_refusals(r.p);
        test_codec12(r.p);
    } else {
        gw_t_fail++;
    }
    bt_free(&r);
    test_config_errors();
    TEST_MAIN_END();
}

/* codec_json.c: the "json" codec's envelope rules: every key per message kind, syntax errors,
 * duplicate keys, messageId forms and limits, ownership of the decoded values. */
#include "codecs/json/codec_json.h"
#include "gateway/util/error.h"

#include <string.h>

#include "test.h"

static gw_thing_msg msg;
static gw_reject rej;

static int utf8_ok(const char *str)
{
    json_t *j = json_string(str);
    json_decref(j);
    return j != NULL;
}

static int dec(gw_msg_kind kind, const char *name, const char *text)
{
    gw_decode_hint hint = {kind, name};
    memset(&rej, 0, sizeof(rej));
    gw_thing_msg_clear(&msg);
    return gw_codec_json_ops.decode(NULL, &hint, (const uint8_t *)text, strlen(text), &msg, &rej);
}

#define REPORT(text) dec(GW_MSG_PROPERTY_REPORT, NULL, text)

/* Rejected as malformed_payload with exactly this detail, and nothing left in msg. */
#define BAD(call, want)                                                                            \
    do {                                                                                           \
        CHECK_INT(call, GW_EINVAL);                                                                \
        CHECK_STR(gw_reason_name(rej.reason), "malformed_payload");                                \
        CHECK_STR(rej.detail, want);                                                               \
        CHECK(msg.values == NULL);                                                                 \
    } while (0)

static void test_ops(void)
{
    CHECK_STR(gw_codec_json_ops.name, "json");
    CHECK(gw_codec_json_ops.product_keys != NULL); /* "json": the mapping (tests/unit/json_map.c) */
    CHECK_STR(gw_codec_json_ops.product_keys[0], "json");
    CHECK(gw_codec_json_ops.product_keys[1] == NULL);
    CHECK(gw_codec_json_ops.decode != NULL);
}

static void test_report(void)
{
    CHECK_INT(REPORT("{\"messageId\":\"1\",\"timestamp\":1700000000000,\"version\":\"1.0\","
                     "\"properties\":{\"temperature\":21.5}}"),
              0);
    CHECK_INT(msg.kind, GW_MSG_PROPERTY_REPORT);
    CHECK_STR(msg.msg_id, "1");
    CHECK_INT(msg.timestamp_ms, 1700000000000LL);
    CHECK_STR(msg.name, "");
    CHECK(json_is_object(msg.values));
    CHECK(json_real_value(json_object_get(msg.values, "temperature")) == 21.5);
    /* the codec does not judge values: unknown properties and odd types pass through */
    CHECK_INT(REPORT("{\"properties\":{\"nope\":[1,{}]}}"), 0);
    CHECK_STR(msg.msg_id, "");
    CHECK_INT(msg.timestamp_ms, 0);
    CHECK_INT(json_object_size(msg.values), 1);
    CHECK_INT(REPORT("{\"properties\":{}}"), 0); /* empty: the thing model's call */
    CHECK_INT(REPORT("  {\"properties\":{\"a\":1}}\n"), 0);

    BAD(REPORT("{\"messageId\":\"1\"}"), "missing key \"properties\"");
    BAD(REPORT("{}"), "missing key \"properties\"");
    BAD(REPORT("{\"properties\":[]}"), "properties: expected object, got array");
    BAD(REPORT("{\"properties\":null}"), "properties: expected object, got null");
    BAD(REPORT("{\"properties\":{},\"foo\":1}"), "unknown key \"foo\"");
    BAD(REPORT("{\"properties\":{},\"data\":{}}"), "unknown key \"data\"");
    BAD(REPORT("{\"properties\":{},\"success\":true}"), "unknown key \"success\"");
    BAD(REPORT("{\"properties\":{},\"Properties\":{}}"), "unknown key \"Properties\"");
    BAD(REPORT(
            "{\"properties\":{},\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\":1}"),
        "unknown key \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"");
}

static void test_message_id(void)
{
    char id63[64], text[256];
    memset(id63, 'm', 63);
    id63[63] = '\0';
    snprintf(text, sizeof(text), "{\"messageId\":\"%s\",\"properties\":{}}", id63);
    CHECK_INT(REPORT(text), 0);
    CHECK_STR(msg.msg_id, id63);
    snprintf(text, sizeof(text), "{\"messageId\":\"%sm\",\"properties\":{}}", id63);
    BAD(REPORT(text), "messageId: 64 bytes exceeds max 63");
    CHECK_STR(msg.msg_id, ""); /* too long to keep */

    CHECK_INT(REPORT("{\"messageId\":42,\"properties\":{}}"), 0);
    CHECK_STR(msg.msg_id, "42");
    CHECK_INT(REPORT("{\"messageId\":-7,\"properties\":{}}"), 0);
    CHECK_STR(msg.msg_id, "-7");
    CHECK_INT(REPORT("{\"messageId\":9223372036854775807,\"properties\":{}}"), 0);
    CHECK_STR(msg.msg_id, "9223372036854775807");
    CHECK_INT(REPORT("{\"messageId\":\"\",\"properties\":{}}"), 0);
    CHECK_STR(msg.msg_id, "");

    BAD(REPORT("{\"messageId\":true,\"properties\":{}}"),
        "messageId: expected string or integer, got bool");
    BAD(REPORT("{\"messageId\":1.5,\"properties\":{}}"),
        "messageId: expected string or integer, got real");
    BAD(REPORT("{\"messageId\":{},\"properties\":{}}"),
        "messageId: expected string or integer, got object");
    BAD(REPORT("{\"messageId\":null,\"properties\":{}}"),
        "messageId: expected string or integer, got null");
}

static void test_timestamp_version(void)
{
    CHECK_INT(REPORT("{\"timestamp\":0,\"properties\":{}}"), 0);
    CHECK_INT(msg.timestamp_ms, 0);
    CHECK_INT(REPORT("{\"timestamp\":9223372036854775807,\"properties\":{}}"), 0);
    CHECK_INT(msg.timestamp_ms, 9223372036854775807LL);
    BAD(REPORT("{\"timestamp\":-1,\"properties\":{}}"), "timestamp: -1 is negative");
    BAD(REPORT("{\"timestamp\":\"1700000000000\",\"properties\":{}}"),
        "timestamp: expected integer epoch ms, got string");
    BAD(REPORT("{\"timestamp\":1.7e12,\"properties\":{}}"),
        "timestamp: expected integer epoch ms, got real");
    CHECK_INT(REPORT("{\"version\":\"2\",\"properties\":{}}"), 0);
    BAD(REPORT("{\"version\":2,\"properties\":{}}"), "version: expected string, got integer");
}

static void test_syntax(void)
{
    BAD(REPORT("{\"messageId\":\"1\","),
        "JSON syntax error at 1:17: string or '}' expected near end of file");
    BAD(REPORT("{\"a\" 1}"), "JSON syntax error at 1:6: ':' expected near '1'");
    BAD(REPORT("{\"messageId\":\"1\",\"messageId\":\"2\",\"properties\":{}}"),
        "JSON syntax error at 1:28: duplicate object key near '\"messageId\"'");
    /* duplicates inside properties too: "last one wins" would hide a device bug */
    CHECK_INT(REPORT("{\"properties\":{\"t\":1,\"t\":2}}"), GW_EINVAL);
    CHECK_CONTAINS(rej.detail, "duplicate object key");
    BAD(REPORT("5"), "JSON syntax error at 1:1: '[' or '{' expected near '5'");
    BAD(REPORT(""), "JSON syntax error at 1:0: '[' or '{' expected near end of file");
    BAD(REPORT("{\"properties\":{}} x"),
        "JSON syntax error at 1:19: end of file expected near 'x'");
    BAD(REPORT("[{\"properties\":{}}]"), "top level: expected object, got array");
    CHECK_INT(REPORT("{\"properties\":{\"s\":\"\\u0000\"}}"), GW_EINVAL);
    CHECK_CONTAINS(rej.detail, "JSON syntax error at 1:");
    CHECK_INT(REPORT("{\"properties\":{\"v\":1e999}}"), GW_EINVAL);
    CHECK_CONTAINS(rej.detail, "real number overflow");
    CHECK_INT(REPORT("{\"properties\":{\"v\":99999999999999999999}}"), GW_EINVAL);
    CHECK_CONTAINS(rej.detail, "too big integer");
    CHECK_INT(REPORT("{\"properties\":{\"s\":\"\xff\"}}"), GW_EINVAL); /* invalid UTF-8 */
    CHECK_CONTAINS(rej.detail, "JSON syntax error at 1:");
    CHECK(utf8_ok(rej.detail)); /* jansson quotes the raw bytes: replaced, the reply stays JSON */
    CHECK_INT(REPORT("{\"properties\":{}} \xe2\x82"), GW_EINVAL);
    CHECK(utf8_ok(rej.detail));
    CHECK_INT(REPORT("{\"properties\":{},\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\xc3\xa9\":1}"),
              GW_EINVAL);
    CHECK_CONTAINS(rej.detail, "unknown key \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    CHECK(utf8_ok(rej.detail));
    /* the length bounds the parse: bytes after len are not read */
    const char *text = "{\"properties\":{}}garbage";
    gw_decode_hint hint = {GW_MSG_PROPERTY_REPORT, NULL};
    CHECK_INT(gw_codec_json_ops.decode(NULL, &hint, (const uint8_t *)text, 17, &msg, &rej), 0);
    gw_thing_msg_clear(&msg);
    /* an embedded NUL byte inside the length */
    CHECK_INT(gw_codec_json_ops.decode(NULL, &hint, (const uint8_t *)"{\"properties\":{}}\0", 18,
                                       &msg, &rej),
              GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_MALFORMED_PAYLOAD);
}

static void test_event(void)
{
    CHECK_INT(dec(GW_MSG_EVENT, "overheat", "{\"messageId\":\"2\",\"data\":{\"t\":80.1}}"), 0);
    CHECK_INT(msg.kind, GW_MSG_EVENT);
    CHECK_STR(msg.name, "overheat");
    CHECK_STR(msg.msg_id, "2");
    CHECK(json_is_real(json_object_get(msg.values, "t")));
    CHECK_INT(dec(GW_MSG_EVENT, "ping", "{\"messageId\":\"3\"}"), 0); /* data is optional */
    CHECK(msg.values == NULL);
    CHECK_STR(msg.name, "ping");
    BAD(dec(GW_MSG_EVENT, "overheat", "{\"data\":5}"), "data: expected object, got integer");
    BAD(dec(GW_MSG_EVENT, "overheat", "{\"data\":{},\"properties\":{}}"),
        "unknown key \"properties\"");
    BAD(dec(GW_MSG_EVENT, "overheat", "{\"data\":{},\"extra\":{}}"), "unknown key \"extra\"");

    char name[80];
    memset(name, 'e', sizeof(name) - 1);
    name[sizeof(name) - 1] = '\0';
    CHECK_INT(dec(GW_MSG_EVENT, name, "{}"), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_UNKNOWN_EVENT);
    CHECK_INT(dec(GW_MSG_EVENT, NULL, "{}"), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_UNKNOWN_EVENT);
    CHECK_INT(dec(GW_MSG_EVENT, "", "{}"), GW_EINVAL);
}

static void test_replies(void)
{
    CHECK_INT(dec(GW_MSG_FUNCTION_REPLY, NULL,
                  "{\"messageId\":\"g-7\",\"success\":true,\"outputs\":{\"ok\":true},"
                  "\"function\":\"reboot\"}"),
              0);
    CHECK_INT(msg.kind, GW_MSG_FUNCTION_REPLY);
    CHECK_STR(msg.msg_id, "g-7");
    CHECK_INT(msg.success, 1);
    CHECK_STR(msg.name, "reboot");
    CHECK(json_is_true(json_object_get(msg.values, "ok")));
    CHECK_INT(
        dec(GW_MSG_FUNCTION_REPLY, NULL,
            "{\"messageId\":\"g-7\",\"success\":false,\"error\":\"busy\",\"message\":\"later\"}"),
        0);
    CHECK_INT(msg.success, 0);
    CHECK(msg.values == NULL);
    BAD(dec(GW_MSG_FUNCTION_REPLY, NULL, "{\"messageId\":\"g-7\"}"), "missing key \"success\"");
    BAD(dec(GW_MSG_FUNCTION_REPLY, NULL, "{\"success\":\"yes\"}"),
        "success: expected bool, got string");
    BAD(dec(GW_MSG_FUNCTION_REPLY, NULL, "{\"success\":1}"), "success: expected bool, got integer");
    BAD(dec(GW_MSG_FUNCTION_REPLY, NULL, "{\"success\":true,\"outputs\":[]}"),
        "outputs: expected object, got array");
    BAD(dec(GW_MSG_FUNCTION_REPLY, NULL, "{\"success\":true,\"function\":5}"),
        "function: expected string, got integer");
    BAD(dec(GW_MSG_FUNCTION_REPLY, NULL, "{\"success\":true,\"error\":{}}"),
        "error: expected string, got object");
    BAD(dec(GW_MSG_FUNCTION_REPLY, NULL, "{\"success\":false,\"message\":5}"),
        "message: expected string, got integer");
    BAD(dec(GW_MSG_FUNCTION_REPLY, NULL, "{\"success\":true,\"inputs\":{}}"),
        "unknown key \"inputs\"");

    CHECK_INT(dec(GW_MSG_WRITE_REPLY, NULL, "{\"messageId\":\"g-8\",\"success\":true}"), 0);
    CHECK_INT(msg.kind, GW_MSG_WRITE_REPLY);
    CHECK_INT(msg.success, 1);
    CHECK_INT(dec(GW_MSG_WRITE_REPLY, NULL, "{\"success\":false,\"message\":\"read-only\"}"), 0);
    CHECK_INT(msg.success, 0);
    BAD(dec(GW_MSG_WRITE_REPLY, NULL, "{\"messageId\":\"g-8\"}"), "missing key \"success\"");
    BAD(dec(GW_MSG_WRITE_REPLY, NULL, "{\"success\":true,\"outputs\":{}}"),
        "unknown key \"outputs\"");
    BAD(dec(GW_MSG_WRITE_REPLY, NULL, "{\"success\":true,\"properties\":{}}"),
        "unknown key \"properties\"");
}

static void test_kind_and_ownership(void)
{
    CHECK_INT(dec(GW_MSG_NONE, NULL, "{}"), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_UNSUPPORTED);
    CHECK_INT(gw_codec_json_ops.decode(NULL, NULL, (const uint8_t *)"{}", 2, &msg, &rej),
              GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_UNSUPPORTED);

    /* values outlive the parsed document and belong to the message */
    CHECK_INT(REPORT("{\"properties\":{\"a\":\"text\"}}"), 0);
    json_t *v = msg.values;
    CHECK_INT(v->refcount, 1);
    CHECK_STR(json_string_value(json_object_get(v, "a")), "text");
    gw_thing_msg_clear(&msg);
    CHECK(msg.values == NULL);
    gw_thing_msg_clear(&msg); /* twice is fine */
    gw_thing_msg_clear(NULL);

    /* a failed decode after values were taken leaves nothing behind */
    BAD(REPORT("{\"properties\":{\"a\":1},\"zzz\":1}"), "unknown key \"zzz\"");
    CHECK_STR(msg.msg_id, "");

    /* a refused message keeps the device's messageId for the rejection reply, wherever it is */
    BAD(REPORT("{\"messageId\":\"m-1\",\"properties\":{\"a\":1},\"zzz\":1}"),
        "unknown key \"zzz\"");
    CHECK_STR(msg.msg_id, "m-1");
    BAD(REPORT("{\"zzz\":1,\"properties\":{},\"messageId\":\"m-2\"}"), "unknown key \"zzz\"");
    CHECK_STR(msg.msg_id, "m-2");
    BAD(REPORT("{\"timestamp\":-5,\"messageId\":17,\"properties\":{}}"),
        "timestamp: -5 is negative");
    CHECK_STR(msg.msg_id, "17");
    BAD(REPORT("{\"messageId\":\"m-3\"}"), "missing key \"properties\"");
    CHECK_STR(msg.msg_id, "m-3");
    BAD(REPORT("{\"foo\":1,\"messageId\":true}"), "unknown key \"foo\"");
    CHECK_STR(msg.msg_id, "");
}

int main(void)
{
    test_ops();
    test_report();
    test_message_id();
    test_timestamp_version();
    test_syntax();
    test_event();
    test_replies();
    test_kind_and_ownership();
    gw_thing_msg_clear(&msg);
    TEST_MAIN_END();
}

/* command_parse.c: cloud command payloads against the thing model, table-driven: every error code
 * with its exact message, normalised arguments, messageId forms, keys accepted and refused, the
 * name a log row gets; and the reply payload texts and the command-log status of each code. */
#include "command_test.h"

typedef struct pcase {
    gw_command_op op;
    const char *payload;
    const char *code;    /* NULL: valid */
    const char *message; /* exact message, or the normalised args when valid */
    const char *msg_id;  /* expected msg_id ("" when unusable) */
} pcase;

static const pcase cases[] = {
    /* invoke */
    {GW_CMD_INVOKE, "{\"messageId\":\"g-7\",\"function\":\"reboot\",\"inputs\":{\"delay_s\":5}}",
     NULL, "{\"delay_s\":5}", "g-7"},
    {GW_CMD_INVOKE, "{\"messageId\":7,\"function\":\"ping\"}", NULL, "{}", "7"},
    {GW_CMD_INVOKE,
     "{\"messageId\":\"p\",\"function\":\"ping\",\"inputs\":{},\"timestamp\":1,"
     "\"headers\":{\"a\":1},\"deviceId\":\"t-001\",\"version\":\"1\"}",
     NULL, "{}", "p"},
    {GW_CMD_INVOKE, "{\"messageId\":\"a\",\"function\":\"reboot\"}", "invalid_input",
     "inputs.delay_s: missing", "a"},
    {GW_CMD_INVOKE, "{\"messageId\":\"a\",\"function\":\"reboot\",\"inputs\":{\"delay_s\":61}}",
     "invalid_input", "inputs.delay_s: 61 is above max 60", "a"},
    {GW_CMD_INVOKE, "{\"messageId\":\"a\",\"function\":\"reboot\",\"inputs\":{\"delay_s\":\"5\"}}",
     "invalid_input", "inputs.delay_s: expected int, got string", "a"},
    {GW_CMD_INVOKE,
     "{\"messageId\":\"a\",\"function\":\"reboot\",\"inputs\":{\"delay_s\":5,\"x\":1}}",
     "invalid_input", "inputs.x: not a declared param", "a"},
    {GW_CMD_INVOKE, "{\"messageId\":\"a\",\"function\":\"reboot\",\"inputs\":[1]}",
     "invalid_payload", "inputs: expected object, got array", "a"},
    {GW_CMD_INVOKE, "{\"messageId\":\"a\",\"function\":\"fly\"}", "unknown_function",
     "function fly: not in the thing model of thermo", "a"},
    {GW_CMD_INVOKE, "{\"messageId\":\"a\"}", "invalid_payload", "missing key \"function\"", "a"},
    {GW_CMD_INVOKE, "{\"messageId\":\"a\",\"function\":5}", "invalid_payload",
     "function: expected string, got integer", "a"},
    {GW_CMD_INVOKE, "{\"messageId\":\"a\",\"function\":\"ping\",\"properties\":{}}",
     "invalid_payload", "unknown key \"properties\"", "a"},
    /* messageId and envelope */
    {GW_CMD_INVOKE, "{\"function\":\"ping\"}", "invalid_payload", "missing key \"messageId\"", ""},
    {GW_CMD_INVOKE, "{\"messageId\":\"\",\"function\":\"ping\"}", "invalid_payload",
     "messageId: 0 bytes (1..63 allowed)", ""},
    {GW_CMD_INVOKE,
     "{\"messageId\":\"0123456789012345678901234567890123456789012345678901234567890123\","
     "\"function\":\"ping\"}",
     "invalid_payload", "messageId: 64 bytes (1..63 allowed)", ""},
    {GW_CMD_INVOKE, "{\"messageId\":true,\"function\":\"ping\"}", "invalid_payload",
     "messageId: expected string or integer, got bool", ""},
    {GW_CMD_INVOKE, "[1,2]", "invalid_payload", "top level: expected object, got array", ""},
    {GW_CMD_INVOKE, "{\"messageId\":", "invalid_payload",
     "JSON syntax error at 1:13: unexpected token near end of file", ""},
    {GW_CMD_INVOKE, "", "invalid_payload",
     "JSON syntax error at 1:0: '[' or '{' expected near end of file", ""},
    {GW_CMD_INVOKE, "{\"messageId\":\"a\",\"messageId\":\"b\",\"function\":\"ping\"}",
     "invalid_payload", "JSON syntax error at 1:28: duplicate object key near '\"messageId\"'", ""},
    /* write */
    {GW_CMD_WRITE, "{\"messageId\":\"g-8\",\"properties\":{\"mode\":\"eco\"}}", NULL,
     "{\"mode\":\"eco\"}", "g-8"},
    {GW_CMD_WRITE, "{\"messageId\":\"w\",\"properties\":{\"level\":10,\"mode\":\"comfort\"}}", NULL,
     "{\"level\":10,\"mode\":\"comfort\"}", "w"},
    {GW_CMD_WRITE, "{\"messageId\":\"w\",\"properties\":{\"temperature\":20}}", "not_writable",
     "properties.temperature: read-only (access \"r\")", "w"},
    {GW_CMD_WRITE, "{\"messageId\":\"w\",\"properties\":{\"mode\":\"turbo\"}}", "invalid_input",
     "properties.mode: \"turbo\" is not one of eco, comfort", "w"},
    {GW_CMD_WRITE, "{\"messageId\":\"w\",\"properties\":{\"level\":11}}", "invalid_input",
     "properties.level: 11 is above max 10", "w"},
    {GW_CMD_WRITE, "{\"messageId\":\"w\",\"properties\":{\"colour\":1}}", "unknown_property",
     "properties.colour: not in the thing model of thermo", "w"},
    {GW_CMD_WRITE, "{\"messageId\":\"w\",\"properties\":{}}", "invalid_payload",
     "properties: nothing to write", "w"},
    {GW_CMD_WRITE, "{\"messageId\":\"w\",\"properties\":[\"mode\"]}", "invalid_payload",
     "properties: expected object, got array", "w"},
    {GW_CMD_WRITE, "{\"messageId\":\"w\"}", "invalid_payload", "missing key \"properties\"", "w"},
    {GW_CMD_WRITE, "{\"messageId\":\"w\",\"function\":\"ping\",\"properties\":{\"level\":1}}",
     "invalid_payload", "unknown key \"function\"", "w"},
    /* read */
    {GW_CMD_READ, "{\"messageId\":\"g-9\",\"properties\":[\"temperature\"]}", NULL,
     "[\"temperature\"]", "g-9"},
    {GW_CMD_READ, "{\"messageId\":\"r\"}", NULL, "(all)", "r"},
    {GW_CMD_READ, "{\"messageId\":\"r\",\"properties\":[]}", "invalid_payload",
     "properties: empty list (omit it to read all)", "r"},
    {GW_CMD_READ, "{\"messageId\":\"r\",\"properties\":[\"mode\",\"x\"]}", "unknown_property",
     "properties[1]: x is not in the thing model of thermo", "r"},
    {GW_CMD_READ, "{\"messageId\":\"r\",\"properties\":[1]}", "invalid_payload",
     "properties[0]: expected string, got integer", "r"},
    {GW_CMD_READ, "{\"messageId\":\"r\",\"properties\":\"mode\"}", "invalid_payload",
     "properties: expected array of property ids, got string", "r"},
};

static void test_cases(const gw_product *p)
{
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const pcase *c = &cases[i];
        gw__cmd_req r;
        int fails = gw_t_fail;
        int rc = gw__cmd_parse(p, c->op, c->payload, strlen(c->payload), &r);
        if (c->code) {
            CHECK_INT(rc, GW_EINVAL);
            CHECK_STR(r.code, c->code);
            CHECK_STR(r.message, c->message);
        } else {
            CHECK_INT(rc, 0);
            CHECK(r.code == NULL);
            char *t = r.args ? gw_json_write(r.args) : NULL;
            CHECK_STR(t ? t : "(all)", c->message);
            free(t);
            CHECK(json_is_object(r.request));
            CHECK((c->op == GW_CMD_INVOKE) == (r.fn != NULL));
        }
        CHECK_STR(r.msg_id, c->msg_id);
        if (gw_t_fail != fails)
            fprintf(stderr, "  case %zu: %s\n", i, c->payload);
        gw__cmd_req_clear(&r);
    }
}

static void test_names(const gw_product *p)
{
    gw__cmd_req r;
    const char *a = "{\"messageId\":\"a\",\"function\":\"fly\"}";
    gw__cmd_parse(p, GW_CMD_INVOKE, a, strlen(a), &r);
    CHECK_STR(gw__cmd_req_name(&r), "fly"); /* the log row names what was asked for */
    gw__cmd_req_clear(&r);
    const char *b = "{\"messageId\":\"a\",\"function\":\"ping\"}";
    gw__cmd_parse(p, GW_CMD_INVOKE, b, strlen(b), &r);
    CHECK_STR(gw__cmd_req_name(&r), "ping");
    gw__cmd_req_clear(&r);
    const char *w = "{\"messageId\":\"a\",\"properties\":{\"level\":1}}";
    gw__cmd_parse(p, GW_CMD_WRITE, w, strlen(w), &r);
    CHECK_STR(gw__cmd_req_name(&r), "write");
    gw__cmd_req_clear(&r);
    gw__cmd_parse(p, GW_CMD_READ, "{}", 2, &r);
    CHECK_STR(gw__cmd_req_name(&r), "read");
    gw__cmd_req_clear(&r);
}

static void test_utf8_message(const gw_product *p)
{
    /* a 64-byte function id of 2-byte characters, cut mid-character in the message: still UTF-8
     */
    char payload[512] = "{\"messageId\":\"u\",\"function\":\"";
    for (int i = 0; i < 40; i++)
        strcat(payload, "\xc3\xa9");
    strcat(payload, "\"}");
    gw__cmd_req r;
    CHECK_INT(gw__cmd_parse(p, GW_CMD_INVOKE, payload, strlen(payload), &r), GW_EINVAL);
    CHECK_STR(r.code, "unknown_function");
    char *j = gw__cmd_error_json(r.code, r.message);
    json_t *back = j ? json_loads(j, 0, NULL) : NULL;
    CHECK(back != NULL); /* the reply is valid JSON, so the message is valid UTF-8 */
    json_decref(back);
    free(j);
    gw__cmd_req_clear(&r);
}

static void test_payloads(void)
{
    char *s = gw__cmd_error_json("timeout", "no reply within 5000 ms");
    CHECK_STR(s,
              "{\"success\":false,\"code\":\"timeout\",\"message\":\"no reply within 5000 ms\"}");
    free(s);
    s = gw__cmd_error_json("device_error", "say \"hi\"\n");
    CHECK_STR(s, "{\"success\":false,\"code\":\"device_error\",\"message\":\"say \\\"hi\\\"\\n\"}");
    free(s);
    s = gw__cmd_success_json("outputs", json_pack("{s:b}", "ok", 1));
    CHECK_STR(s, "{\"success\":true,\"outputs\":{\"ok\":true}}");
    free(s);
    s = gw__cmd_success_json(NULL, NULL);
    CHECK_STR(s, "{\"success\":true}");
    free(s);

    static const char *const st[][2] = {
        {"invalid_payload", "rejected"},
        {"unknown_device", "rejected"},
        {"unknown_function", "rejected"},
        {"unknown_property", "rejected"},
        {"invalid_input", "rejected"},
        {"not_writable", "rejected"},
        {"busy", "rejected"},
        {"duplicate_message_id", "rejected"},
        {"unsupported", "rejected"},
        {"device_offline", "offline"},
        {"expired", "expired"},
        {"timeout", "timeout"},
        {"device_error", "failed"},
        {"invalid_output", "failed"},
        {"send_failed", "failed"},
        {"store_error", "failed"},
    };
    for (size_t i = 0; i < sizeof(st) / sizeof(st[0]); i++)
        CHECK_STR(gw__cmd_error_status(st[i][0]), st[i][1]);
    CHECK_STR(gw__cmd_op_name(GW_CMD_INVOKE), "invoke");
    CHECK_STR(gw__cmd_op_name(GW_CMD_WRITE), "write");
    CHECK_STR(gw__cmd_op_name(GW_CMD_READ), "read");
    CHECK_INT(gw__cmd_reply_kind(GW_CMD_INVOKE), GW_EV_FUNCTION_REPLY);
    CHECK_INT(gw__cmd_reply_kind(GW_CMD_WRITE), GW_EV_WRITE_REPLY);
    CHECK_INT(gw__cmd_reply_kind(GW_CMD_READ), GW_EV_READ_REPLY);
}

int main(void)
{
    ct_env e;
    ct_setup(&e, "");
    test_cases(gw_config_product(e.cfg, "thermo"));
    test_names(gw_config_product(e.cfg, "thermo"));
    test_utf8_message(gw_config_product(e.cfg, "thermo"));
    test_payloads();
    ct_teardown(&e);
    TEST_MAIN_END();
}

/* north_format.c: what an outbox row looks like upstream: topics from the templates (every
 * placeholder, replies, unknown kinds), payloads (values, replies spliced at top level, escaping,
 * buffers too small), and that every payload is valid JSON. */
#include "gateway/north/north.h"
#include "test.h"

static gw_north_cfg cfg(void)
{
    gw_north_cfg c = {0};
    c.prefix = "gw";
    c.topic_property = "{prefix}/{product}/{device}/properties/report";
    c.topic_event = "{prefix}/{product}/{device}/event/{event}";
    c.topic_online = "site-1/{device}/up";
    c.topic_offline = "{prefix}/{product}/{device}/offline";
    return c;
}

static void check_topic(const char *kind, const char *name, const char *want)
{
    gw_north_cfg c = cfg();
    char buf[256];
    size_t n = gw_north_topic(&c, kind, "thermo", "t-001", name, buf, sizeof(buf));
    if (want)
        CHECK_STR(n ? buf : NULL, want);
    CHECK_INT(n, want ? strlen(want) : 0);
}

static void check_payload(gw_outbox_row row, const char *want)
{
    char buf[512];
    row.payload_len = row.payload ? strlen(row.payload) : 0;
    size_t n = gw_north_payload(&row, buf, sizeof(buf));
    CHECK_STR(n ? buf : NULL, want);
    json_error_t e;
    json_t *v = n ? json_loads(buf, 0, &e) : NULL;
    CHECK(v != NULL && json_is_object(v));
    json_decref(v);
    /* every prefix of the exact size fails cleanly, the exact size works */
    for (size_t cap = 1; cap <= n; cap++)
        CHECK_INT(gw_north_payload(&row, buf, cap), 0);
    CHECK_INT(gw_north_payload(&row, buf, n + 1), n);
}

int main(void)
{
    check_topic("property", NULL, "gw/thermo/t-001/properties/report");
    check_topic("event", "overheat", "gw/thermo/t-001/event/overheat");
    check_topic("online", NULL, "site-1/t-001/up");
    check_topic("offline", "keepalive_timeout", "gw/thermo/t-001/offline");
    check_topic("function_reply", "reboot", "gw/thermo/t-001/function/invoke/reply");
    check_topic("write_reply", "write", "gw/thermo/t-001/properties/write/reply");
    check_topic("read_reply", "read", "gw/thermo/t-001/properties/read/reply");
    check_topic("command", NULL, NULL);
    gw_north_cfg c = cfg();
    char small[10];
    CHECK_INT(gw_north_topic(&c, "property", "thermo", "t-001", NULL, small, sizeof(small)), 0);

    gw_outbox_row r = {.id = 7, .ts = 1700000000000, .device = "t-001", .product = "thermo"};
    r.kind = "property";
    r.msg_id = "42";
    r.payload = "{\"temperature\":21.5}";
    check_payload(r, "{\"device\":\"t-001\",\"product\":\"thermo\",\"kind\":\"property\","
                     "\"time\":1700000000000,\"messageId\":\"42\","
                     "\"values\":{\"temperature\":21.5}}");
    r.kind = "event";
    r.name = "overheat";
    r.msg_id = "q\"uote\\d\n";
    r.payload = "{\"t\":80.1}";
    check_payload(r, "{\"device\":\"t-001\",\"product\":\"thermo\",\"kind\":\"event\","
                     "\"time\":1700000000000,\"name\":\"overheat\","
                     "\"messageId\":\"q\\\"uote\\\\d\\n\",\"values\":{\"t\":80.1}}");
    r.kind = "function_reply";
    r.name = "reboot";
    r.msg_id = "g-7";
    r.payload = "{\"success\":true,\"outputs\":{\"ok\":true}}";
    check_payload(r, "{\"device\":\"t-001\",\"product\":\"thermo\",\"kind\":\"function_reply\","
                     "\"time\":1700000000000,\"name\":\"reboot\",\"messageId\":\"g-7\","
                     "\"success\":true,\"outputs\":{\"ok\":true}}");
    r.kind = "write_reply";
    r.payload = "{}";
    check_payload(r, "{\"device\":\"t-001\",\"product\":\"thermo\",\"kind\":\"write_reply\","
                     "\"time\":1700000000000,\"name\":\"reboot\",\"messageId\":\"g-7\"}");
    r.kind = "offline";
    r.name = NULL;
    r.msg_id = NULL;
    r.payload = NULL;
    check_payload(r, "{\"device\":\"t-001\",\"product\":\"thermo\",\"kind\":\"offline\","
                     "\"time\":1700000000000,\"values\":null}");
    TEST_MAIN_END();
}

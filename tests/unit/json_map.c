/* json_map.c: the json codec's "json" product section: load-time errors (path syntax, unknown
 * properties, events and params, scale on a non-number, unknown keys) naming the JSON path, and
 * decoding devices' own documents: nested paths, indexes, quoted names, scale and offset, integer
 * results, timestamps in s and ms, message ids, missing paths, and that the values then pass the
 * thing model exactly like contract payloads. A section with many problems reports every one of
 * them, each with the file and its JSON path. */
#include "codecs/json/codec_json.h"
#include "codecs/json/json_map.h"
#include "config/diag.h"
#include "gateway/core/thing_model.h"
#include "test.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static gw_value_spec props[] = {
    {.id = "temperature",
     .type = GW_T_FLOAT,
     .has_min = true,
     .has_max = true,
     .min = -40,
     .max = 125},
    {.id = "humidity", .type = GW_T_INT, .has_min = true, .has_max = true, .imin = 0, .imax = 100},
    {.id = "label", .type = GW_T_STRING, .max_length = 8},
};
static gw_value_spec oh_params[] = {
    {.id = "t", .type = GW_T_FLOAT, .required = true},
    {.id = "zone", .type = GW_T_STRING, .required = false},
};
static gw_event_spec events[] = {
    {.id = "overheat", .params = oh_params, .n_params = N(oh_params)},
    {.id = "boot"},
};

static gw_product product(void)
{
    gw_product p = {.id = "legacy",
                    .codec = "json",
                    .codec_ops = &gw_codec_json_ops,
                    .properties = props,
                    .n_properties = N(props),
                    .events = events,
                    .n_events = N(events)};
    return p;
}

/* Loads section (JSON text); returns the init code and the message. */
static int load(gw_product *p, const char *section, char *msg, size_t cap)
{
    gw_diag d = {0};
    json_t *raw = json_pack("{s:o}", "json", json_loads(section, 0, NULL));
    p->raw = raw;
    int rc = gw_codec_json_ops.init(p, &d, NULL);
    snprintf(msg, cap, "%s", d.n ? d.msgs[0] : "");
    gw_diag_free(&d);
    return rc;
}

static void unload(gw_product *p)
{
    gw_codec_json_ops.uninit(p);
    json_decref(p->raw);
    p->raw = NULL;
}

static void check_load_error(const char *section, const char *want)
{
    gw_product p = product();
    char msg[256];
    int rc = load(&p, section, msg, sizeof(msg));
    CHECK_INT(rc, GW_ECONFIG);
    CHECK_CONTAINS(msg, want);
    unload(&p);
}

/* Every problem of a section is reported, each as "file: json.<path>: what", in one load. */
static void check_all_errors(void)
{
    static const char *const want[] = {
        "products/legacy.json: json.extra: unknown key",
        "products/legacy.json: json.properties.pressure: not a property of legacy",
        "products/legacy.json: json.properties.humidity.colour: unknown key (path, scale, add)",
        "products/legacy.json: json.properties.humidity.scale: must be a number",
        "products/legacy.json: json.properties.humidity: \"h\": a path starts with $",
        "products/legacy.json: json.properties.label: scale/add need a number",
        "products/legacy.json: json.events.meltdown: not an event of legacy",
        "products/legacy.json: json.events.overheat.x: not a param of event overheat",
        "products/legacy.json: json.events.overheat.zone: \"z\": a path starts with $",
        "products/legacy.json: json.timestamp.unit: \"ms\" or \"s\"",
        "products/legacy.json: json.timestamp: expected a path string",
        "products/legacy.json: json.message_id: expected a path string",
    };
    const char *section =
        "{\"extra\": 1, \"properties\": {\"pressure\": \"$.p\", \"humidity\": {\"path\": \"h\","
        " \"scale\": \"big\", \"colour\": 1}, \"temperature\": \"$.t\", \"label\": {\"path\":"
        " \"$.l\", \"add\": 1}}, \"events\": {\"meltdown\": {}, \"overheat\": {\"x\": \"$.x\","
        " \"t\": \"$.t\", \"zone\": \"z\"}}, \"timestamp\": {\"path\": 5, \"unit\": \"h\"},"
        " \"message_id\": 7}";
    gw_product p = product();
    gw_diag d = {0};
    p.raw = json_pack("{s:o}", "json", json_loads(section, 0, NULL));
    CHECK_INT(gw_codec_json_ops.init(&p, &d, "products/legacy.json"), GW_ECONFIG);
    CHECK(p.codec_state == NULL);
    CHECK_INT((int)d.n, (int)N(want));
    for (size_t i = 0; i < N(want); i++) {
        bool found = false;
        for (size_t j = 0; j < d.n && !found; j++)
            found = strstr(d.msgs[j], want[i]) != NULL;
        if (!found)
            fprintf(stderr, "  missing: %s\n", want[i]);
        CHECK(found);
    }
    gw_diag_free(&d);
    json_decref(p.raw);
}

static const char *MAP = "{\"properties\": {\"temperature\": {\"path\": \"$.d.t\", \"scale\": 0.1,"
                         " \"add\": -40}, \"humidity\": \"$.d['h%']\", \"label\": \"$.tags[1]\"},"
                         " \"events\": {\"overheat\": {\"t\": \"$.alarm.temp\", \"zone\": "
                         "\"$.alarm.zone\"}},"
                         " \"timestamp\": {\"path\": \"$.ts\", \"unit\": \"s\"},"
                         " \"message_id\": \"$.seq\"}";

static int decode(gw_product *p, gw_msg_kind kind, const char *ev, const char *doc, gw_thing_msg *m,
                  gw_reject *rej)
{
    gw_decode_hint hint = {kind, ev};
    memset(rej, 0, sizeof(*rej));
    return gw_codec_json_ops.decode(p, &hint, (const uint8_t *)doc, strlen(doc), m, rej);
}

static void check_report(gw_product *p, const char *doc, const char *want_values, int64_t want_ts,
                         const char *want_id)
{
    gw_thing_msg m;
    gw_reject rej;
    int rc = decode(p, GW_MSG_PROPERTY_REPORT, NULL, doc, &m, &rej);
    CHECK_INT(rc, 0);
    if (rc) {
        fprintf(stderr, "  reject: %s\n", rej.detail);
        return;
    }
    json_t *norm = NULL;
    CHECK_INT(gw_tm_check_report(p, m.values, &norm, &rej), 0);
    char *got = norm ? json_dumps(norm, JSON_COMPACT | JSON_SORT_KEYS) : NULL;
    CHECK_STR(got, want_values);
    CHECK_INT(m.timestamp_ms, want_ts);
    CHECK_STR(m.msg_id, want_id);
    free(got);
    json_decref(norm);
    gw_thing_msg_clear(&m);
}

static void check_reject(gw_product *p, gw_msg_kind kind, const char *ev, const char *doc,
                         gw_reason reason, const char *want)
{
    gw_thing_msg m;
    gw_reject rej;
    int rc = decode(p, kind, ev, doc, &m, &rej);
    json_t *norm = NULL;
    if (rc == 0) { /* the map found values: the thing model decides */
        rc = kind == GW_MSG_EVENT ? gw_tm_check_event(p, m.name, m.values, &norm, &rej)
                                  : gw_tm_check_report(p, m.values, &norm, &rej);
        json_decref(norm);
        gw_thing_msg_clear(&m);
    }
    CHECK_INT(rc, GW_EINVAL);
    CHECK_STR(gw_reason_name(rej.reason), gw_reason_name(reason));
    CHECK_CONTAINS(rej.detail, want);
}

int main(void)
{
    char why[200];
    CHECK_INT(gw__json_path_check("$.a.b[3]['x y'][\"q\"]", why, sizeof(why)), 0);
    CHECK_INT(gw__json_path_check("a.b", why, sizeof(why)), -1);
    CHECK_CONTAINS(why, "starts with $");
    CHECK_INT(gw__json_path_check("$.a[", why, sizeof(why)), -1);
    CHECK_INT(gw__json_path_check("$.a['b]", why, sizeof(why)), -1);
    CHECK_INT(gw__json_path_check("$..a", why, sizeof(why)), -1);
    CHECK_INT(gw__json_path_check("$[-1]", why, sizeof(why)), -1);

    check_load_error("{\"properties\": {\"pressure\": \"$.p\"}}",
                     "json.properties.pressure: not a property of legacy");
    check_load_error("{\"properties\": {\"label\": {\"path\": \"$.l\", \"scale\": 2}}}",
                     "json.properties.label: scale/add need a number, label is string");
    check_load_error("{\"properties\": {\"temperature\": \"d.t\"}}",
                     "json.properties.temperature: \"d.t\": a path starts with $");
    check_load_error("{\"events\": {\"overheat\": {\"x\": \"$.x\"}}}",
                     "json.events.overheat.x: not a param of event overheat");
    check_load_error("{\"events\": {\"meltdown\": {}}}", "json.events.meltdown: not an event");
    check_load_error("{\"props\": {}}", "json.props: unknown key");
    check_load_error("{\"timestamp\": {\"path\": \"$.ts\", \"unit\": \"h\"}}",
                     "json.timestamp.unit");
    check_load_error("{\"properties\": {\"humidity\": {\"path\": \"$.h\", \"scale\": 0}}}",
                     "json.properties.humidity.scale: must not be 0");

    gw_product p = product();
    char msg[256];
    CHECK_INT(load(&p, MAP, msg, sizeof(msg)), 0);
    check_report(&p,
                 "{\"seq\": 17, \"ts\": 1700000000, \"d\": {\"t\": 615, \"h%\": 40}, "
                 "\"tags\": [\"a\", \"kitchen\"]}",
                 "{\"humidity\":40,\"label\":\"kitchen\",\"temperature\":21.5}", 1700000000000LL,
                 "17");
    check_report(&p, "{\"d\": {\"t\": 400}}", "{\"temperature\":0.0}", 0, "");
    check_report(&p, "{\"seq\": \"abc\", \"d\": {\"h%\": 1}}", "{\"humidity\":1}", 0, "abc");
    check_reject(&p, GW_MSG_PROPERTY_REPORT, NULL, "{\"other\": 1}", GW_R_EMPTY_REPORT,
                 "no mapped property found (paths tried: $.d.t, $.d['h%'], $.tags[1])");
    check_reject(&p, GW_MSG_PROPERTY_REPORT, NULL, "{\"d\": {\"t\": \"hot\"}}", GW_R_WRONG_TYPE,
                 "properties.temperature: $.d.t holds string, scale/add need a number");
    check_reject(&p, GW_MSG_PROPERTY_REPORT, NULL, "{\"d\": {\"t\": 2000}}", GW_R_OUT_OF_RANGE,
                 "properties.temperature");
    check_reject(&p, GW_MSG_PROPERTY_REPORT, NULL, "{\"d\": {\"h%\": 4.5}}", GW_R_WRONG_TYPE,
                 "properties.humidity");
    check_reject(&p, GW_MSG_PROPERTY_REPORT, NULL, "{\"ts\": \"now\", \"d\": {\"t\": 1}}",
                 GW_R_MALFORMED_PAYLOAD, "timestamp: $.ts holds string, expected a number");
    check_reject(&p, GW_MSG_PROPERTY_REPORT, NULL, "{\"d\": ", GW_R_MALFORMED_PAYLOAD,
                 "JSON syntax error");

    /* events: required params name the path that did not match */
    gw_thing_msg m;
    gw_reject rej;
    CHECK_INT(decode(&p, GW_MSG_EVENT, "overheat", "{\"alarm\": {\"temp\": 80.5}}", &m, &rej), 0);
    char *got = m.values ? json_dumps(m.values, JSON_COMPACT) : NULL;
    CHECK_STR(got, "{\"t\":80.5}");
    CHECK_STR(m.name, "overheat");
    free(got);
    gw_thing_msg_clear(&m);
    check_reject(&p, GW_MSG_EVENT, "overheat", "{\"alarm\": {}}", GW_R_MISSING_PARAM,
                 "data.t: path $.alarm.temp did not match");
    /* an event without a map entry, and function replies, keep the contract */
    CHECK_INT(decode(&p, GW_MSG_EVENT, "boot", "{\"messageId\":\"9\",\"data\":{}}", &m, &rej), 0);
    CHECK_STR(m.msg_id, "9");
    gw_thing_msg_clear(&m);
    CHECK_INT(
        decode(&p, GW_MSG_FUNCTION_REPLY, NULL, "{\"messageId\":\"r\",\"success\":true}", &m, &rej),
        0);
    gw_thing_msg_clear(&m);
    unload(&p);

    /* a product without the section decodes the contract as before */
    gw_product q = product();
    CHECK_INT(gw_codec_json_ops.init(&q, &(gw_diag){0}, NULL), 0);
    check_reject(&q, GW_MSG_PROPERTY_REPORT, NULL, "{\"d\": {\"t\": 1}}", GW_R_MALFORMED_PAYLOAD,
                 "unknown key \"d\"");
    gw_codec_json_ops.uninit(&q);

    check_all_errors();
    TEST_MAIN_END();
}

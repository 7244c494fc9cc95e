/* thing_model_validate.c: the thing-model validator: every type's accepted values, boundaries and
 * rejection reasons, nested paths, report all-or-nothing, events, function params, normalisation.
 */
#include "gateway/core/thing_model.h"
#include "gateway/util/alloc.h"
#include "gateway/util/error.h"
#include "gateway/util/json_write.h"

#include <float.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#include "test.h"

/* ---- building a product by hand --------------------------------------------------------- */

static gw_value_spec sp(const char *id, gw_type t)
{
    gw_value_spec s;
    memset(&s, 0, sizeof(s));
    s.id = id ? strdup(id) : NULL;
    s.type = t;
    s.required = true;
    return s;
}

static gw_value_spec sp_irange(const char *id, gw_type t, int64_t lo, int64_t hi)
{
    gw_value_spec s = sp(id, t);
    s.has_min = s.has_max = true;
    s.imin = lo;
    s.imax = hi;
    return s;
}

static gw_value_spec sp_range(const char *id, gw_type t, double lo, double hi)
{
    gw_value_spec s = sp(id, t);
    s.has_min = s.has_max = true;
    s.min = lo;
    s.max = hi;
    return s;
}

static gw_value_spec sp_string(const char *id, size_t max_length)
{
    gw_value_spec s = sp(id, GW_T_STRING);
    s.max_length = max_length;
    return s;
}

static gw_value_spec sp_enum(const char *id, const char *a, const char *b)
{
    gw_value_spec s = sp(id, GW_T_ENUM);
    s.enum_values = calloc(2, sizeof(char *));
    s.enum_values[0] = strdup(a);
    s.enum_values[1] = strdup(b);
    s.n_enum = 2;
    return s;
}

static gw_value_spec *specs(size_t n, ...)
{
    gw_value_spec *v = calloc(n, sizeof(*v));
    va_list ap;
    va_start(ap, n);
    for (size_t i = 0; i < n; i++)
        v[i] = va_arg(ap, gw_value_spec);
    va_end(ap);
    return v;
}

static gw_value_spec sp_struct(const char *id, size_t n, gw_value_spec *fields)
{
    gw_value_spec s = sp(id, GW_T_STRUCT);
    s.fields = fields;
    s.n_fields = n;
    return s;
}

static gw_value_spec sp_array(const char *id, gw_value_spec item, size_t max_items)
{
    gw_value_spec s = sp(id, GW_T_ARRAY);
    s.item = malloc(sizeof(*s.item));
    *s.item = item;
    s.max_items = max_items;
    return s;
}

static gw_value_spec optional(gw_value_spec s)
{
    s.required = false;
    return s;
}

static void build(gw_product *p)
{
    memset(p, 0, sizeof(*p));
    p->id = strdup("thermo");
    p->codec = strdup("json");
    p->raw = json_object();
    gw_value_spec pos_fields[] = {sp("lat", GW_T_DOUBLE), sp("lon", GW_T_DOUBLE),
                                  optional(sp_string("label", 8))};
    gw_value_spec *pf = specs(3, pos_fields[0], pos_fields[1], pos_fields[2]);
    gw_value_spec *pt = specs(2, sp("x", GW_T_INT), sp("y", GW_T_INT));
    gw_value_spec *geo = specs(1, sp_array("tags", sp_string(NULL, 4), 2));
    p->n_properties = 20;
    p->properties = specs(
        20, sp_irange("level", GW_T_INT, 0, 10), sp("i32", GW_T_INT), sp("counter", GW_T_LONG),
        sp_irange("offset", GW_T_LONG, -1000, 1000), sp_range("temperature", GW_T_FLOAT, -40, 125),
        sp("ratio", GW_T_FLOAT), sp("precise", GW_T_DOUBLE),
        sp_range("pressure", GW_T_DOUBLE, 0.5, 2.5), sp("on", GW_T_BOOL), sp_string("name", 32),
        sp_string("note", 0), sp_enum("mode", "eco", "comfort"), sp("since", GW_T_DATE),
        sp_irange("window", GW_T_DATE, 1000, 2000), sp_struct("pos", 3, pf),
        sp_array("list", sp_irange(NULL, GW_T_INT, 0, 100), 3),
        sp_array("points", sp_struct(NULL, 2, pt), 0), sp_struct("geo", 1, geo),
        sp_irange("neg", GW_T_INT, -40, -10), sp_range("tiny", GW_T_FLOAT, -0.5, 0.5));
    p->n_events = 2;
    p->events = calloc(2, sizeof(gw_event_spec));
    p->events[0].id = strdup("overheat");
    p->events[0].level = GW_LEVEL_ALERT;
    p->events[0].params = specs(2, sp("t", GW_T_FLOAT), optional(sp_string("note", 16)));
    p->events[0].n_params = 2;
    p->events[1].id = strdup("ping");
    p->n_functions = 1;
    p->functions = calloc(1, sizeof(gw_function_spec));
    p->functions[0].id = strdup("reboot");
    p->functions[0].inputs = specs(1, sp_irange("delay_s", GW_T_INT, 0, 60));
    p->functions[0].n_inputs = 1;
    p->functions[0].outputs = specs(1, sp("ok", GW_T_BOOL));
    p->functions[0].n_outputs = 1;
    p->functions[0].timeout_ms = 5000;
}

static gw_product P;
static char out_text[512];
static gw_reject rej;

/* A detail must always fit in a JSON reply: valid UTF-8 even when cut short. */
static int utf8_ok(const char *str)
{
    json_t *j = json_string(str);
    json_decref(j);
    return j != NULL;
}

/* Runs a report (JSON text) through gw_tm_check_report; on success out_text is the normalised
 * object, on failure rej holds the reason and detail and out must stay NULL. */
static int report(const char *text)
{
    json_error_t jerr;
    json_t *in = json_loads(text, JSON_DECODE_ANY, &jerr);
    if (!in) {
        fprintf(stderr, "bad test JSON %s: %s\n", text, jerr.text);
        exit(2);
    }
    json_t *out = (json_t *)1;
    memset(&rej, 0, sizeof(rej));
    out_text[0] = '\0';
    int rc = gw_tm_check_report(&P, in, &out, &rej);
    if (rc == 0) {
        char *s = json_dumps(out, JSON_COMPACT);
        snprintf(out_text, sizeof(out_text), "%s", s);
        free(s);
        json_decref(out);
    } else if (out != NULL) {
        fprintf(stderr, "out not NULL after a rejected report: %s\n", text);
        gw_t_fail++;
    }
    json_decref(in);
    return rc;
}

#define OK(text, normalised)                                                                       \
    do {                                                                                           \
        int rc_ = report(text);                                                                    \
        CHECK_INT(rc_, 0);                                                                         \
        if (rc_)                                                                                   \
            fprintf(stderr, "  rejected %s: %s\n", text, rej.detail);                              \
        CHECK_STR(out_text, normalised);                                                           \
    } while (0)

#define REJ(text, why, want)                                                                       \
    do {                                                                                           \
        CHECK_INT(report(text), GW_EINVAL);                                                        \
        CHECK_STR(gw_reason_name(rej.reason), gw_reason_name(why));                                \
        CHECK_STR(rej.detail, want);                                                               \
    } while (0)

static void test_int(void)
{
    OK("{\"level\":0}", "{\"level\":0}");
    OK("{\"level\":10}", "{\"level\":10}");
    REJ("{\"level\":-1}", GW_R_OUT_OF_RANGE, "properties.level: -1 is below min 0");
    REJ("{\"level\":11}", GW_R_OUT_OF_RANGE, "properties.level: 11 is above max 10");
    REJ("{\"level\":5.0}", GW_R_WRONG_TYPE, "properties.level: expected int, got real");
    REJ("{\"level\":\"5\"}", GW_R_WRONG_TYPE, "properties.level: expected int, got string");
    REJ("{\"level\":true}", GW_R_WRONG_TYPE, "properties.level: expected int, got bool");
    REJ("{\"level\":null}", GW_R_WRONG_TYPE, "properties.level: expected int, got null");
    OK("{\"neg\":-40}", "{\"neg\":-40}");
    OK("{\"neg\":-10}", "{\"neg\":-10}");
    REJ("{\"neg\":-41}", GW_R_OUT_OF_RANGE, "properties.neg: -41 is below min -40");
    REJ("{\"neg\":-9}", GW_R_OUT_OF_RANGE, "properties.neg: -9 is above max -10");
    /* int32 bounds without a declared range */
    OK("{\"i32\":2147483647}", "{\"i32\":2147483647}");
    OK("{\"i32\":-2147483648}", "{\"i32\":-2147483648}");
    REJ("{\"i32\":2147483648}", GW_R_OUT_OF_RANGE,
        "properties.i32: 2147483648 is above int max 2147483647");
    REJ("{\"i32\":-2147483649}", GW_R_OUT_OF_RANGE,
        "properties.i32: -2147483649 is below int min -2147483648");
}

static void test_long(void)
{
    OK("{\"counter\":5000000000}", "{\"counter\":5000000000}");
    OK("{\"counter\":9223372036854775807}", "{\"counter\":9223372036854775807}");
    OK("{\"counter\":-9223372036854775808}", "{\"counter\":-9223372036854775808}");
    REJ("{\"counter\":1.5}", GW_R_WRONG_TYPE, "properties.counter: expected long, got real");
    REJ("{\"counter\":[]}", GW_R_WRONG_TYPE, "properties.counter: expected long, got array");
    OK("{\"offset\":-1000}", "{\"offset\":-1000}");
    OK("{\"offset\":1000}", "{\"offset\":1000}");
    REJ("{\"offset\":1001}", GW_R_OUT_OF_RANGE, "properties.offset: 1001 is above max 1000");
    REJ("{\"offset\":-1001}", GW_R_OUT_OF_RANGE, "properties.offset: -1001 is below min -1000");
}

static void test_float(void)
{
    OK("{\"temperature\":21}", "{\"temperature\":21.0}"); /* normalised to a real */
    OK("{\"temperature\":21.5}", "{\"temperature\":21.5}");
    OK("{\"temperature\":-40}", "{\"temperature\":-40.0}");
    OK("{\"temperature\":125.0}", "{\"temperature\":125.0}");
    REJ("{\"temperature\":300}", GW_R_OUT_OF_RANGE, "properties.temperature: 300 is above max 125");
    REJ("{\"temperature\":125.001}", GW_R_OUT_OF_RANGE,
        "properties.temperature: 125.001 is above max 125");
    REJ("{\"temperature\":-41}", GW_R_OUT_OF_RANGE, "properties.temperature: -41 is below min -40");
    REJ("{\"temperature\":-40.5}", GW_R_OUT_OF_RANGE,
        "properties.temperature: -40.5 is below min -40");
    REJ("{\"temperature\":\"21\"}", GW_R_WRONG_TYPE,
        "properties.temperature: expected float, got string");
    REJ("{\"temperature\":false}", GW_R_WRONG_TYPE,
        "properties.temperature: expected float, got bool");
    OK("{\"tiny\":-0.5}", "{\"tiny\":-0.5}");
    OK("{\"tiny\":0.5}", "{\"tiny\":0.5}");
    REJ("{\"tiny\":0.51}", GW_R_OUT_OF_RANGE, "properties.tiny: 0.51 is above max 0.5");
    /* the float type's own range: +-FLT_MAX inclusive */
    OK("{\"ratio\":3.4028234663852886e+38}", "{\"ratio\":3.4028234663852886e38}");
    OK("{\"ratio\":-3.4028234663852886e+38}", "{\"ratio\":-3.4028234663852886e38}");
    REJ("{\"ratio\":3.5e38}", GW_R_OUT_OF_RANGE,
        "properties.ratio: 3.5e+38 is outside the float range +-3.4028234663852886e+38");
    REJ("{\"ratio\":-1e300}", GW_R_OUT_OF_RANGE,
        "properties.ratio: -1e+300 is outside the float range +-3.4028234663852886e+38");
}

static void test_double(void)
{
    OK("{\"precise\":1e300}", "{\"precise\":1.0000000000000001e300}"); /* jansson prints %.17g */
    OK("{\"precise\":7}", "{\"precise\":7.0}");
    OK("{\"precise\":-0.1}", "{\"precise\":-0.10000000000000001}");
    OK("{\"pressure\":0.5}", "{\"pressure\":0.5}");
    OK("{\"pressure\":2.5}", "{\"pressure\":2.5}");
    REJ("{\"pressure\":0.49}", GW_R_OUT_OF_RANGE, "properties.pressure: 0.49 is below min 0.5");
    REJ("{\"pressure\":3}", GW_R_OUT_OF_RANGE, "properties.pressure: 3 is above max 2.5");
    REJ("{\"precise\":{}}", GW_R_WRONG_TYPE, "properties.precise: expected double, got object");
}

static void test_bool(void)
{
    OK("{\"on\":true}", "{\"on\":true}");
    OK("{\"on\":false}", "{\"on\":false}");
    REJ("{\"on\":1}", GW_R_WRONG_TYPE, "properties.on: expected bool, got integer");
    REJ("{\"on\":\"true\"}", GW_R_WRONG_TYPE, "properties.on: expected bool, got string");
}

static void test_string(void)
{
    static char buf[70100], big[70000];
    memset(big, 'a', sizeof(big));
    big[32] = '\0';
    snprintf(buf, sizeof(buf), "{\"name\":\"%s\"}", big);
    report(buf);
    CHECK_INT(rej.reason, GW_R_NONE);
    big[32] = 'a';
    big[33] = '\0';
    snprintf(buf, sizeof(buf), "{\"name\":\"%s\"}", big);
    REJ(buf, GW_R_STRING_TOO_LONG, "properties.name: 33 bytes exceeds max_length 32");
    big[33] = 'a';
    big[70] = '\0';
    snprintf(buf, sizeof(buf), "{\"name\":\"%s\"}", big);
    REJ(buf, GW_R_STRING_TOO_LONG, "properties.name: 70 bytes exceeds max_length 32");
    /* bytes, not characters: 16 x "é" is 32 bytes, 17 is 34 */
    OK("{\"name\":\"\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"
       "\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\"}",
       "{\"name\":"
       "\"\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9"
       "\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\xc3\xa9\"}");
    REJ("{\"name\":\"\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9"
        "\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\\u00e9\"}",
        GW_R_STRING_TOO_LONG, "properties.name: 34 bytes exceeds max_length 32");
    OK("{\"name\":\"\"}", "{\"name\":\"\"}");
    REJ("{\"name\":5}", GW_R_WRONG_TYPE, "properties.name: expected string, got integer");
    /* max_length 0: the global cap */
    memset(big, 'a', sizeof(big));
    big[GW_TM_STRING_CAP] = '\0';
    snprintf(buf, sizeof(buf), "{\"note\":\"%s\"}", big);
    CHECK_INT(report(buf), 0);
    big[GW_TM_STRING_CAP] = 'a';
    big[GW_TM_STRING_CAP + 1] = '\0';
    snprintf(buf, sizeof(buf), "{\"note\":\"%s\"}", big);
    REJ(buf, GW_R_STRING_TOO_LONG, "properties.note: 65537 bytes exceeds max_length 65536");
}

static void test_enum(void)
{
    OK("{\"mode\":\"eco\"}", "{\"mode\":\"eco\"}");
    OK("{\"mode\":\"comfort\"}", "{\"mode\":\"comfort\"}");
    REJ("{\"mode\":\"turbo\"}", GW_R_ENUM_VALUE,
        "properties.mode: \"turbo\" is not one of eco, comfort");
    REJ("{\"mode\":\"Eco\"}", GW_R_ENUM_VALUE,
        "properties.mode: \"Eco\" is not one of eco, comfort");
    REJ("{\"mode\":\"eco \"}", GW_R_ENUM_VALUE,
        "properties.mode: \"eco \" is not one of eco, comfort");
    REJ("{\"mode\":\"\"}", GW_R_ENUM_VALUE, "properties.mode: \"\" is not one of eco, comfort");
    REJ("{\"mode\":\"ec\"}", GW_R_ENUM_VALUE, "properties.mode: \"ec\" is not one of eco, comfort");
    REJ("{\"mode\":1}", GW_R_WRONG_TYPE, "properties.mode: expected enum, got integer");
    REJ("{\"mode\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\"}",
        GW_R_ENUM_VALUE,
        "properties.mode: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\" is not one of eco, "
        "comfort");
}

static void test_utf8_details(void)
{
    /* the quoted value is cut at 40 bytes, never inside a character */
    REJ("{\"mode\":\"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\\u00e9\\u00e9\"}", GW_R_ENUM_VALUE,
        "properties.mode: \"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa...\" is not one of eco, "
        "comfort");
    CHECK(utf8_ok(rej.detail));
    /* a long unknown key cut by the path buffer */
    char buf[1024];
    size_t n = (size_t)snprintf(buf, sizeof(buf), "{\"x");
    for (int i = 0; i < 150; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\\u00e9");
    snprintf(buf + n, sizeof(buf) - n, "\":1}");
    CHECK_INT(report(buf), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_UNKNOWN_PROPERTY);
    CHECK_CONTAINS(rej.detail, "properties.x\xc3\xa9\xc3\xa9");
    CHECK(utf8_ok(rej.detail));
    /* and a 4-byte character cut by the detail buffer */
    n = (size_t)snprintf(buf, sizeof(buf), "{\"mode\":\"");
    for (int i = 0; i < 60; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "\xf0\x9f\x98\x80");
    snprintf(buf + n, sizeof(buf) - n, "\"}");
    CHECK_INT(report(buf), GW_EINVAL);
    CHECK(utf8_ok(rej.detail));
    CHECK(gw_tm_check_event(&P, "\xc3", NULL, (json_t **)buf, &rej) == GW_EINVAL);
    CHECK(utf8_ok(rej.detail));
}

static void test_date(void)
{
    OK("{\"since\":0}", "{\"since\":0}");
    OK("{\"since\":1700000000000}", "{\"since\":1700000000000}");
    REJ("{\"since\":-1}", GW_R_OUT_OF_RANGE, "properties.since: -1 is below date min 0");
    REJ("{\"since\":1.5}", GW_R_WRONG_TYPE, "properties.since: expected date, got real");
    REJ("{\"since\":\"2024-01-01\"}", GW_R_WRONG_TYPE,
        "properties.since: expected date, got string");
    OK("{\"window\":1000}", "{\"window\":1000}");
    OK("{\"window\":2000}", "{\"window\":2000}");
    REJ("{\"window\":999}", GW_R_OUT_OF_RANGE, "properties.window: 999 is below min 1000");
    REJ("{\"window\":2001}", GW_R_OUT_OF_RANGE, "properties.window: 2001 is above max 2000");
}

static void test_struct(void)
{
    OK("{\"pos\":{\"lat\":1,\"lon\":2.5}}", "{\"pos\":{\"lat\":1.0,\"lon\":2.5}}");
    OK("{\"pos\":{\"label\":\"home\",\"lon\":2,\"lat\":1}}",
       "{\"pos\":{\"label\":\"home\",\"lon\":2.0,\"lat\":1.0}}");
    REJ("{\"pos\":{\"lat\":1}}", GW_R_MISSING_PARAM, "properties.pos.lon: missing");
    REJ("{\"pos\":{}}", GW_R_MISSING_PARAM, "properties.pos.lat: missing");
    REJ("{\"pos\":{\"lat\":1,\"lon\":2,\"foo\":3}}", GW_R_UNKNOWN_PARAM,
        "properties.pos.foo: not a field of struct pos");
    REJ("{\"pos\":{\"lat\":\"x\",\"lon\":2}}", GW_R_WRONG_TYPE,
        "properties.pos.lat: expected double, got string");
    REJ("{\"pos\":{\"lat\":1,\"lon\":2,\"label\":\"far too long\"}}", GW_R_STRING_TOO_LONG,
        "properties.pos.label: 12 bytes exceeds max_length 8");
    REJ("{\"pos\":[1,2]}", GW_R_WRONG_TYPE, "properties.pos: expected struct, got array");
    OK("{\"geo\":{\"tags\":[\"a\",\"b\"]}}", "{\"geo\":{\"tags\":[\"a\",\"b\"]}}");
    REJ("{\"geo\":{\"tags\":[\"a\",7]}}", GW_R_WRONG_TYPE,
        "properties.geo.tags[1]: expected string, got integer");
    REJ("{\"geo\":{\"tags\":[\"a\",\"b\",\"c\"]}}", GW_R_TOO_MANY_ITEMS,
        "properties.geo.tags: 3 items exceeds max_items 2");
    REJ("{\"geo\":{\"tags\":[\"abcde\"]}}", GW_R_STRING_TOO_LONG,
        "properties.geo.tags[0]: 5 bytes exceeds max_length 4");
}

static void test_array(void)
{
    OK("{\"list\":[]}", "{\"list\":[]}");
    OK("{\"list\":[0,100,5]}", "{\"list\":[0,100,5]}");
    REJ("{\"list\":[1,2,3,4]}", GW_R_TOO_MANY_ITEMS,
        "properties.list: 4 items exceeds max_items 3");
    REJ("{\"list\":[1,200]}", GW_R_OUT_OF_RANGE, "properties.list[1]: 200 is above max 100");
    REJ("{\"list\":[1.5]}", GW_R_WRONG_TYPE, "properties.list[0]: expected int, got real");
    REJ("{\"list\":\"1,2\"}", GW_R_WRONG_TYPE, "properties.list: expected array, got string");
    OK("{\"points\":[{\"x\":1,\"y\":2},{\"y\":4,\"x\":3}]}",
       "{\"points\":[{\"x\":1,\"y\":2},{\"y\":4,\"x\":3}]}");
    REJ("{\"points\":[{\"x\":1,\"y\":2},{\"x\":1}]}", GW_R_MISSING_PARAM,
        "properties.points[1].y: missing");
    REJ("{\"points\":[{\"x\":1,\"y\":2,\"z\":3}]}", GW_R_UNKNOWN_PARAM,
        "properties.points[0].z: not a field of the struct");
    REJ("{\"points\":[{\"x\":1,\"y\":2}, 5]}", GW_R_WRONG_TYPE,
        "properties.points[1]: expected struct, got integer");
    /* no max_items: large arrays pass */
    char buf[8192];
    size_t n = (size_t)snprintf(buf, sizeof(buf), "{\"points\":[");
    for (int i = 0; i < 200; i++)
        n += (size_t)snprintf(buf + n, sizeof(buf) - n, "%s{\"x\":%d,\"y\":0}", i ? "," : "", i);
    snprintf(buf + n, sizeof(buf) - n, "]}");
    CHECK_INT(report(buf), 0);
}

static void test_report(void)
{
    json_t *out = (json_t *)1;
    memset(&rej, 0, sizeof(rej));
    CHECK_INT(gw_tm_check_report(&P, NULL, &out, &rej), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_EMPTY_REPORT);
    CHECK(out == NULL);
    REJ("{}", GW_R_EMPTY_REPORT, "properties: empty report");
    REJ("[]", GW_R_MALFORMED_PAYLOAD, "properties: expected object, got array");
    REJ("[1]", GW_R_MALFORMED_PAYLOAD, "properties: expected object, got array");
    REJ("5", GW_R_MALFORMED_PAYLOAD, "properties: expected object, got integer");
    REJ("{\"foo\":1}", GW_R_UNKNOWN_PROPERTY, "properties.foo: not in the thing model");
    REJ("{\"level\":1,\"foo\":1}", GW_R_UNKNOWN_PROPERTY, "properties.foo: not in the thing model");
    REJ("{\"levels\":1}", GW_R_UNKNOWN_PROPERTY, "properties.levels: not in the thing model");
    REJ("{\"leve\":1}", GW_R_UNKNOWN_PROPERTY, "properties.leve: not in the thing model");
    /* all or nothing: one bad property rejects the whole report, whatever its position */
    REJ("{\"level\":5,\"temperature\":300,\"on\":true}", GW_R_OUT_OF_RANGE,
        "properties.temperature: 300 is above max 125");
    REJ("{\"temperature\":300,\"level\":5}", GW_R_OUT_OF_RANGE,
        "properties.temperature: 300 is above max 125");
    REJ("{\"level\":5,\"mode\":\"turbo\"}", GW_R_ENUM_VALUE,
        "properties.mode: \"turbo\" is not one of eco, comfort");
    /* several properties, normalised, in the report's order */
    OK("{\"mode\":\"eco\",\"temperature\":21,\"level\":3,\"on\":false}",
       "{\"mode\":\"eco\",\"temperature\":21.0,\"level\":3,\"on\":false}");
    /* the input is not modified by normalisation */
    json_t *in = json_pack("{s:i}", "temperature", 21);
    CHECK_INT(gw_tm_check_report(&P, in, &out, &rej), 0);
    CHECK(json_is_integer(json_object_get(in, "temperature")));
    CHECK(json_is_real(json_object_get(out, "temperature")));
    json_decref(out);
    json_decref(in);
}

/* gw_tm_report_as_is (the dispatcher writes such a report as it is): true exactly when the check
 * accepts it and its normalised form writes the same text. */
static void as_is(const char *text, bool want)
{
    json_t *in = json_loads(text, JSON_DECODE_ANY, NULL), *out = NULL;
    bool got = gw_tm_report_as_is(&P, in);
    if (got != want)
        fprintf(stderr, "as_is(%s): got %d, want %d\n", text, got, want);
    CHECK(got == want);
    if (got) {
        CHECK_INT(gw_tm_check_report(&P, in, &out, &rej), 0);
        char *a = gw_json_write(in), *b = gw_json_write(out);
        CHECK_STR(a, b);
        gw_free(GW_AREA_EVENT, a);
        gw_free(GW_AREA_EVENT, b);
        json_decref(out);
    }
    json_decref(in);
}

static void test_report_as_is(void)
{
    CHECK(!gw_tm_report_as_is(&P, NULL));
    as_is("{\"level\":3,\"temperature\":21.5,\"on\":true,\"mode\":\"eco\",\"name\":\"x\"}", true);
    as_is("{\"counter\":9007199254740993,\"since\":1700000000000,\"precise\":0.1}", true);
    as_is("{\"temperature\":21}", false); /* int for a float: becomes 21.0 */
    as_is("{\"level\":11}", false);       /* out of range: the check words it */
    as_is("{\"mode\":\"turbo\"}", false); /* not one of the enum's values */
    as_is("{\"name\":\"0123456789012345678901234567890123\"}", false); /* too long */
    as_is("{\"foo\":1}", false);                                       /* unknown */
    as_is("{\"on\":1}", false);                                        /* wrong type */
    as_is("{\"pos\":{\"lat\":1.5,\"lon\":2.5}}", false);               /* a struct: a new object */
    as_is("{\"list\":[1,2]}", false);                                  /* an array: a new array */
    as_is("{}", false);
    as_is("[1]", false);
}

static int event(const char *id, const char *text)
{
    json_t *in = text ? json_loads(text, JSON_DECODE_ANY, NULL) : NULL;
    json_t *out = (json_t *)1;
    memset(&rej, 0, sizeof(rej));
    out_text[0] = '\0';
    int rc = gw_tm_check_event(&P, id, in, &out, &rej);
    if (rc == 0) {
        char *s = json_dumps(out, JSON_COMPACT);
        snprintf(out_text, sizeof(out_text), "%s", s);
        free(s);
        json_decref(out);
    } else {
        CHECK(out == NULL);
    }
    json_decref(in);
    return rc;
}

static void test_event(void)
{
    CHECK_INT(event("overheat", "{\"t\":80.5}"), 0);
    CHECK_STR(out_text, "{\"t\":80.5}");
    CHECK_INT(event("overheat", "{\"t\":80}"), 0);
    CHECK_STR(out_text, "{\"t\":80.0}");
    CHECK_INT(event("overheat", "{\"t\":1,\"note\":\"hi\"}"), 0);
    CHECK_STR(out_text, "{\"t\":1.0,\"note\":\"hi\"}");
    CHECK_INT(event("overheat", "{}"), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_MISSING_PARAM);
    CHECK_STR(rej.detail, "data.t: missing");
    CHECK_INT(event("overheat", NULL), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_MISSING_PARAM);
    CHECK_STR(rej.detail, "data.t: missing");
    CHECK_INT(event("overheat", "{\"note\":\"x\"}"), GW_EINVAL);
    CHECK_STR(rej.detail, "data.t: missing");
    CHECK_INT(event("overheat", "{\"t\":1,\"x\":2}"), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_UNKNOWN_PARAM);
    CHECK_STR(rej.detail, "data.x: not a param of event overheat");
    CHECK_INT(event("overheat", "{\"t\":\"hot\"}"), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_WRONG_TYPE);
    CHECK_STR(rej.detail, "data.t: expected float, got string");
    CHECK_INT(event("overheat", "[]"), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_MALFORMED_PAYLOAD);
    CHECK_STR(rej.detail, "data: expected object, got array");
    CHECK_INT(event("nope", "{}"), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_UNKNOWN_EVENT);
    CHECK_STR(rej.detail, "event nope: not in the thing model");
    CHECK_INT(event(NULL, "{}"), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_UNKNOWN_EVENT);
    CHECK_INT(event("ping", NULL), 0);
    CHECK_STR(out_text, "{}");
    CHECK_INT(event("ping", "{}"), 0);
    CHECK_INT(event("ping", "{\"a\":1}"), GW_EINVAL);
    CHECK_STR(rej.detail, "data.a: not a param of event ping");
}

static void test_params(void)
{
    const gw_function_spec *f = gw_tm_function(&P, "reboot");
    CHECK(f != NULL);
    json_t *in = json_pack("{s:i}", "delay_s", 5), *out = NULL;
    CHECK_INT(gw_tm_check_params(f->inputs, f->n_inputs, "inputs", in, &out, &rej), 0);
    CHECK_INT(json_integer_value(json_object_get(out, "delay_s")), 5);
    json_decref(out);
    json_decref(in);

    in = json_pack("{s:i}", "delay_s", 61);
    CHECK_INT(gw_tm_check_params(f->inputs, f->n_inputs, "inputs", in, &out, &rej), GW_EINVAL);
    CHECK_STR(rej.detail, "inputs.delay_s: 61 is above max 60");
    CHECK(out == NULL);
    json_decref(in);

    CHECK_INT(gw_tm_check_params(f->inputs, f->n_inputs, "inputs", NULL, &out, &rej), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_MISSING_PARAM);
    CHECK_STR(rej.detail, "inputs.delay_s: missing");

    in = json_pack("{s:i,s:i}", "delay_s", 5, "x", 1);
    CHECK_INT(gw_tm_check_params(f->inputs, f->n_inputs, "inputs", in, &out, &rej), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_UNKNOWN_PARAM);
    CHECK_STR(rej.detail, "inputs.x: not a declared param");
    json_decref(in);

    in = json_pack("{s:b}", "ok", 1);
    CHECK_INT(gw_tm_check_params(f->outputs, f->n_outputs, "outputs", in, &out, &rej), 0);
    json_decref(out);
    json_decref(in);

    in = json_pack("[]");
    CHECK_INT(gw_tm_check_params(f->outputs, f->n_outputs, "outputs", in, &out, &rej), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_MALFORMED_PAYLOAD);
    CHECK_STR(rej.detail, "outputs: expected object, got array");
    json_decref(in);

    /* no specs: only {} / NULL pass */
    CHECK_INT(gw_tm_check_params(NULL, 0, "inputs", NULL, &out, &rej), 0);
    CHECK_INT(json_object_size(out), 0);
    json_decref(out);
}

static void test_value_and_lookups(void)
{
    CHECK(gw_tm_property(&P, "temperature") == &P.properties[4]);
    CHECK(gw_tm_property(&P, "temp") == NULL);
    CHECK(gw_tm_property(&P, "temperatures") == NULL);
    CHECK(gw_tm_property(NULL, "temperature") == NULL);
    CHECK(gw_tm_property(&P, NULL) == NULL);
    CHECK(gw_tm_event(&P, "ping") == &P.events[1]);
    CHECK(gw_tm_event(&P, "pin") == NULL);
    CHECK(gw_tm_function(&P, "reboot") == &P.functions[0]);
    CHECK(gw_tm_function(&P, "reset") == NULL);

    const char *names[] = {"int",    "long", "float", "double", "bool",
                           "string", "enum", "date",  "struct", "array"};
    for (int t = GW_T_INT; t <= GW_T_ARRAY; t++)
        CHECK_STR(gw_type_name((gw_type)t), names[t]);
    CHECK_STR(gw_type_name((gw_type)99), "unknown");

    const gw_value_spec *pos = gw_tm_property(&P, "pos");
    json_t *v = json_pack("{s:f,s:s}", "lat", 1.0, "lon", "x"), *out = (json_t *)1;
    CHECK_INT(gw_tm_check_value(pos, v, "outputs.where", &out, &rej), GW_EINVAL);
    CHECK_STR(rej.detail, "outputs.where.lon: expected double, got string");
    CHECK(out == NULL);
    json_decref(v);
    CHECK_INT(gw_tm_check_value(pos, NULL, "x", &out, &rej), GW_EINVAL);

    /* a path longer than the detail buffer is truncated, not overflowed */
    char path[400];
    memset(path, 'p', sizeof(path) - 1);
    path[sizeof(path) - 1] = '\0';
    v = json_integer(500);
    CHECK_INT(gw_tm_check_value(gw_tm_property(&P, "level"), v, path, &out, &rej), GW_EINVAL);
    CHECK(strlen(rej.detail) < sizeof(rej.detail));
    CHECK_INT(rej.reason, GW_R_OUT_OF_RANGE);
    json_decref(v);
}

static void test_clear(void)
{
    gw_product half;
    memset(&half, 0, sizeof(half));
    gw_tm_product_clear(&half); /* half-built: nothing to free */
    half.id = strdup("x");
    half.n_properties = 3; /* count ahead of the array: allowed while building */
    gw_tm_product_clear(&half);
    CHECK(half.id == NULL && half.n_properties == 0);
    gw_tm_product_clear(NULL);
    gw_tm_value_spec_clear(NULL);
    gw_value_spec s = sp_array("a", sp_enum(NULL, "x", "y"), 2);
    gw_tm_value_spec_clear(&s);
    CHECK(s.item == NULL && s.id == NULL);
}

int main(void)
{
    build(&P);
    test_int();
    test_long();
    test_float();
    test_double();
    test_bool();
    test_string();
    test_enum();
    test_date();
    test_utf8_details();
    test_struct();
    test_array();
    test_report();
    test_report_as_is();
    test_event();
    test_params();
    test_value_and_lookups();
    test_clear();
    gw_tm_product_clear(&P); /* ASan/LSan: everything build() allocated is freed */
    CHECK(P.properties == NULL && P.n_events == 0);
    TEST_MAIN_END();
}

/* cfg_schema.c: the declarative section parser: every field type, ranges, defaults and their
 * ownership, required and unknown keys, listener lists (numeric addresses, port range); the
 * reference table a section prints (its meaning column, a key without one counted). */
#include "test.h"
#include "config/cfg_schema.h"
#include "config/config.h"

typedef struct sect {
    uint32_t u;
    int64_t i;
    bool b;
    char *s;
    int e;
    gw_listen_list l;
    json_t *j;
    uint32_t req;
} sect;

static const char *const colours[] = {"red", "green", "blue", NULL};
static const gw_listen default_listen[] = {{.address = "127.0.0.1", .port = 1883}};

static const gw_cfg_field fields[] = {
    {"u", GW_CFG_UINT32, offsetof(sect, u), 1, 100, NULL, false},
    {"i", GW_CFG_INT64, offsetof(sect, i), -5, 5, NULL, false},
    {"b", GW_CFG_BOOL, offsetof(sect, b), 0, 0, NULL, false},
    {"s", GW_CFG_STRING, offsetof(sect, s), 0, 0, NULL, false},
    {"e", GW_CFG_ENUM, offsetof(sect, e), 0, 0, colours, false},
    {"l", GW_CFG_LISTENERS, offsetof(sect, l), 0, 0, NULL, false},
    {"j", GW_CFG_JSON, offsetof(sect, j), 0, 0, NULL, false},
    {"req", GW_CFG_UINT32, offsetof(sect, req), 0, 0, NULL, true},
    {NULL, 0, 0, 0, 0, NULL, false},
};

static sect defaults(void)
{
    sect s = {.u = 7, .i = -1, .b = true, .s = "dflt", .e = 2, .j = NULL};
    s.l.v = (gw_listen *)default_listen;
    s.l.n = 1;
    return s;
}

/* Parses text into a fresh default section; returns the error count, diag text in out. */
static int parse(const char *text, sect *s, char *out, size_t cap)
{
    json_error_t jerr;
    json_t *obj = text ? json_loads(text, 0, &jerr) : NULL;
    gw_diag d = {0};
    size_t len = 0;

    if (text && !obj) {
        fprintf(stderr, "bad test JSON: %s\n", jerr.text);
        exit(2);
    }
    *s = defaults();
    int n = gw_cfg_parse(fields, obj, s, "f.json", "sec", &d);
    out[0] = '\0';
    for (size_t i = 0; i < d.n; i++)
        len += snprintf(out + len, len < cap ? cap - len : 0, "%s\n", d.msgs[i]);
    CHECK_INT(d.n, n);
    gw_diag_free(&d);
    json_decref(obj);
    return n;
}

static void test_all_types(void)
{
    sect s;
    char out[2048];
    int n = parse("{\"u\": 42, \"i\": -5, \"b\": false, \"s\": \"hello\", \"e\": \"green\", "
                  "\"l\": [{\"address\": \"::1\", \"port\": 0}, {\"address\": \"10.0.0.1\", "
                  "\"port\": 65535}], \"j\": {\"x\": 1}, \"req\": 0}",
                  &s, out, sizeof(out));
    CHECK_INT(n, 0);
    CHECK_STR(out, "");
    CHECK_INT(s.u, 42);
    CHECK_INT(s.i, -5);
    CHECK(!s.b);
    CHECK_STR(s.s, "hello");
    CHECK_INT(s.e, 1);
    CHECK_INT(s.l.n, 2);
    CHECK_STR(s.l.v[0].address, "::1");
    CHECK_INT(s.l.v[0].port, 0);
    CHECK_STR(s.l.v[1].address, "10.0.0.1");
    CHECK_INT(s.l.v[1].port, 65535);
    CHECK(json_is_object(s.j));
    CHECK_INT(json_integer_value(json_object_get(s.j, "x")), 1);
    gw_cfg_free(fields, &s);
    CHECK(s.s == NULL && s.l.v == NULL && s.j == NULL);
}

static void test_defaults_are_copied(void)
{
    sect s;
    char out[2048];
    int n = parse("{\"req\": 1}", &s, out, sizeof(out));
    CHECK_INT(n, 0);
    CHECK_INT(s.u, 7);
    CHECK_INT(s.i, -1);
    CHECK(s.b);
    CHECK_STR(s.s, "dflt");
    CHECK_INT(s.e, 2);
    CHECK_INT(s.l.n, 1);
    CHECK(s.l.v != default_listen); /* owned copy: gw_cfg_free may free it */
    CHECK_STR(s.l.v[0].address, "127.0.0.1");
    CHECK_INT(s.l.v[0].port, 1883);
    gw_cfg_free(fields, &s);
}

static void test_null_object(void)
{
    sect s;
    char out[2048];
    int n = parse(NULL, &s, out, sizeof(out));
    CHECK_INT(n, 1);
    CHECK_STR(out, "f.json: sec.req: missing required key\n");
    gw_cfg_free(fields, &s);
}

static void test_errors(void)
{
    sect s;
    char out[4096];
    int n = parse("{\"u\": 0, \"i\": 1.5, \"b\": 1, \"s\": 3, \"e\": \"pink\", \"zz\": 1}", &s, out,
                  sizeof(out));
    CHECK_INT(n, 7);
    CHECK_CONTAINS(out, "f.json: sec.zz: unknown key\n");
    CHECK_CONTAINS(out, "f.json: sec.u: 0 is out of range 1..100\n");
    CHECK_CONTAINS(out, "f.json: sec.i: must be an integer\n");
    CHECK_CONTAINS(out, "f.json: sec.b: must be true or false\n");
    CHECK_CONTAINS(out, "f.json: sec.s: must be a string\n");
    CHECK_CONTAINS(out, "f.json: sec.e: \"pink\" is not one of \"red\", \"green\", \"blue\"\n");
    CHECK_CONTAINS(out, "f.json: sec.req: missing required key\n");
    gw_cfg_free(fields, &s);

    n = parse("{\"req\": -1, \"e\": 3}", &s, out, sizeof(out));
    CHECK_INT(n, 2);
    CHECK_CONTAINS(out, "sec.req: -1 is out of range 0..4294967295");
    CHECK_CONTAINS(out, "sec.e: must be one of \"red\", \"green\", \"blue\"");
    gw_cfg_free(fields, &s);

    n = parse("[1]", &s, out, sizeof(out));
    CHECK_INT(n, 2);
    CHECK_CONTAINS(out, "f.json: sec: must be an object\n");
    gw_cfg_free(fields, &s);
}

static void test_listeners(void)
{
    sect s;
    char out[4096];
    int n = parse("{\"req\": 1, \"l\": []}", &s, out, sizeof(out));
    CHECK_INT(n, 1);
    CHECK_CONTAINS(out, "sec.l: must be a non-empty array");
    gw_cfg_free(fields, &s);

    n = parse("{\"req\": 1, \"l\": [{\"address\": \"localhost\", \"port\": 1}, "
              "{\"address\": \"1.2.3.4\", \"port\": 70000}, {\"port\": 1, \"tls\": true}, 5, "
              "{\"address\": \"1.2.3.4\", \"port\": \"80\"}, {\"address\": 1, \"port\": -1}]}",
              &s, out, sizeof(out));
    CHECK_CONTAINS(out, "sec.l[0].address: \"localhost\" is not a numeric IPv4 or IPv6 address\n");
    CHECK_CONTAINS(out, "sec.l[1].port: 70000 is out of range 0..65535\n");
    CHECK_CONTAINS(out, "sec.l[2].tls: unknown key\n");
    CHECK_CONTAINS(out, "sec.l[2].address: missing required key\n");
    CHECK_CONTAINS(out, "sec.l[3]: must be an object\n");
    CHECK_CONTAINS(out, "sec.l[4].port: must be an integer\n");
    CHECK_CONTAINS(out, "sec.l[5].address: must be a string\n");
    CHECK_CONTAINS(out, "sec.l[5].port: -1 is out of range 0..65535\n");
    CHECK_INT(n, 8);
    gw_cfg_free(fields, &s);

    n = parse("{\"req\": 1, \"l\": {\"address\": \"1.2.3.4\", \"port\": 1}}", &s, out, sizeof(out));
    CHECK_INT(n, 1);
    CHECK_CONTAINS(out, "sec.l: must be a non-empty array");
    gw_cfg_free(fields, &s);
}

static void test_top_level_path(void)
{
    gw_diag d = {0};
    sect s = defaults();
    json_t *obj = json_pack("{s:i, s:i}", "req", 1, "bogus", 2);
    int n = gw_cfg_parse(fields, obj, &s, "g.json", "", &d);
    CHECK_INT(n, 1);
    CHECK_INT(d.n, 1);
    if (d.n)
        CHECK_STR(d.msgs[0], "g.json: bogus: unknown key");
    gw_cfg_free(fields, &s);
    gw_diag_free(&d);
    json_decref(obj);
}

static void test_reference(void)
{
    static const gw_cfg_field documented[] = {
        {"u", GW_CFG_UINT32, offsetof(sect, u), 1, 100, NULL, false, GW_CFG_DEF(7),
         .doc = "Widgets per second; 0 | 1 both fine."},
        {"e", GW_CFG_ENUM, offsetof(sect, e), 0, 0, colours, false, GW_CFG_DEF(2),
         .doc = "The colour."},
        {NULL, 0, 0, 0, 0, NULL, false},
    };
    char *out = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&out, &len);
    CHECK(m != NULL);
    if (!m)
        return;
    CHECK_INT(gw_cfg_reference(m, "x", documented), 0);
    CHECK_INT(gw_cfg_reference(m, "y", fields), 8); /* none of these has a doc */
    fclose(m);
    CHECK_CONTAINS(out,
                   "### `x`\n\n| key | type | default | range | meaning |\n"
                   "| --- | --- | --- | --- | --- |\n"
                   "| `u` | integer | 7 | 1..100 | Widgets per second; 0 \\| 1 both fine. |\n"
                   "| `e` | string (enum) | `blue` | `red`, `green`, `blue` | The colour. |\n\n");
    CHECK_CONTAINS(out, "| `req` | integer | required |  | (undocumented) |\n");
    free(out);
}

int main(void)
{
    test_all_types();
    test_defaults_are_copied();
    test_null_object();
    test_errors();
    test_listeners();
    test_top_level_path();
    test_reference();
    TEST_MAIN_END();
}

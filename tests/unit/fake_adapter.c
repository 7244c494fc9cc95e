/* fake_adapter.c: a tiny adapter that is not built in, added through the seams a real one uses
 * (gw_registry_add_adapter = the registry line; its ops table's config fields with their defaults,
 * its product "auth" keys and its metrics): gateway.json and products naming it load, its defaults
 * and product keys are parsed, unknown keys and out-of-range values are refused, /metrics prints
 * its metrics with one # HELP/# TYPE per family, and the config reference lists its keys. */
#include <stdbool.h>
#include <stddef.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/cfg_schema.h"
#include "config/config.h"
#include "gateway/core/adapter.h"
#include "gateway/util/metrics.h"
#include "gateway/registry.h"
#include "test.h"
#include "tmpdir.h"

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #c);                \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* ---- the adapter: protocols/fake/ would hold exactly this ---- */

typedef struct fake_cfg {
    gw_listen_list listeners;
    uint32_t window_ms;
    bool verbose;
    int mode;
    char *greeting;
} fake_cfg;

static const char *const fake_modes[] = {"fast", "slow", NULL};
static const gw_cfg_field fake_fields[] = {
    {"listeners", GW_CFG_LISTENERS, offsetof(fake_cfg, listeners), 0, 0, NULL, false,
     .doc = "Addresses and ports of the fake protocol."},
    {"window_ms", GW_CFG_UINT32, offsetof(fake_cfg, window_ms), 1, 60000, NULL, false,
     GW_CFG_DEF(100), .doc = "Batching window, in ms."},
    {"verbose", GW_CFG_BOOL, offsetof(fake_cfg, verbose), 0, 0, NULL, false, GW_CFG_DEF(true),
     .doc = "Log every message."},
    {"mode", GW_CFG_ENUM, offsetof(fake_cfg, mode), 0, 0, fake_modes, false, GW_CFG_DEF(1),
     .doc = "How fast the fake adapter answers."},
    {"greeting", GW_CFG_STRING, offsetof(fake_cfg, greeting), 0, 0, NULL, false,
     GW_CFG_DEF_STR("hello"), .doc = "Text sent to a new connection."},
    {NULL, 0, 0, 0, 0, NULL, false},
};

typedef struct fake_product {
    uint32_t pin;
    bool strict;
} fake_product;

static const gw_cfg_field fake_product_fields[] = {
    {"fake_pin", GW_CFG_UINT32, offsetof(fake_product, pin), 1, 9999, NULL, false, GW_CFG_DEF(1234),
     .doc = "The PIN a device of the product must send."},
    {"fake_strict", GW_CFG_BOOL, offsetof(fake_product, strict), 0, 0, NULL, false,
     GW_CFG_DEF(false), .doc = "Refuse messages with unknown fields."},
    {NULL, 0, 0, 0, 0, NULL, false},
};

#define FAKE_METRICS(X)                                                                            \
    X(FAKE_M_FRAMES, "fake_frames_total", "frames the fake adapter received")                      \
    X(FAKE_M_DROP_SHORT, "fake_dropped_total{reason=\"short\"}", "fake frames dropped, by reason") \
    X(FAKE_M_DROP_LONG, "fake_dropped_total{reason=\"long\"}", NULL)                               \
    X(FAKE_M_PEERS, "fake_peers", "peers of the fake adapter (gauge)")
FAKE_METRICS(GW_METRIC_HANDLE_DEF)
static const gw_metric_def fake_metrics[] = {FAKE_METRICS(GW_METRIC_DEF){NULL, NULL, NULL}};

static int fake_init(gw_adapter *a, const json_t *section, const gw_config *gcfg, gw_diag *diag)
{
    fake_cfg *c = calloc(1, sizeof(*c));
    if (!c)
        return GW_ENOMEM;
    a->state = c;
    return gw_adapter_parse_config(a, section, c, gcfg, diag);
}

static void fake_uninit(gw_adapter *a)
{
    gw_cfg_free(fake_fields, a->state);
    free(a->state);
    a->state = NULL;
}

static const gw_adapter_ops fake_ops = {
    .name = "fake",
    .init = fake_init,
    .uninit = fake_uninit,
    .cfg_fields = fake_fields,
    .metrics = fake_metrics,
    .product_auth_fields = fake_product_fields,
    .product_data_size = sizeof(fake_product),
};

/* ---- files ---- */

static char tmpdir[] = "/tmp/unit_fake_XXXXXX";

static void put_file(const char *name, const char *text)
{
    gw_t_put_file(tmpdir, name, text);
}

static void cleanup(void)
{
    gw_t_rm_tree(tmpdir);
}

/* Writes gateway.json with the fake section and product p's auth, loads it; returns the config
 * (NULL on errors, with diag's messages joined into msgs). */
static gw_config *load(const char *section, const char *p_auth, char *msgs, size_t cap)
{
    char text[1024], path[512];
    gw_config *cfg = NULL;
    gw_diag diag = {0};
    snprintf(text, sizeof(text),
             "{\"id\":\"p\",\"protocol\":\"fake\",\"codec\":\"json\",%s"
             "\"properties\":[{\"id\":\"t\",\"type\":\"int\"}]}",
             p_auth);
    put_file("products/p.json", text);
    snprintf(text, sizeof(text),
             "{\"loops\":1,\"log_level\":\"error\",\"admin\":{\"enabled\":false},"
             "\"storage\":{\"path\":\"db.sqlite\"},\"adapters\":{\"fake\":%s}}",
             section);
    put_file("gateway.json", text);
    snprintf(path, sizeof(path), "%s/gateway.json", tmpdir);
    int rc = gw_config_load(path, gw_registry_config_plugins(), &cfg, &diag);
    msgs[0] = 0;
    for (size_t i = 0, n = 0; i < diag.n && n < cap; i++)
        n += (size_t)snprintf(msgs + n, cap - n, "%s\n", diag.msgs[i]);
    gw_diag_free(&diag);
    if (rc != 0 || msgs[0]) {
        gw_config_free(cfg);
        return NULL;
    }
    return cfg;
}

static const fake_product *product_data(const gw_config *cfg, const char *id)
{
    const gw_product *p = gw_config_product(cfg, id);
    return p ? p->adapter_data : NULL;
}

static void test_config(void)
{
    char msgs[4096];
    gw_diag diag = {0};

    /* defaults from the table; one key set; the product keys parsed into the adapter's data */
    gw_config *cfg =
        load("{\"window_ms\":250}", "\"auth\":{\"mode\":\"device-secret\",\"fake_pin\":42},", msgs,
             sizeof(msgs));
    if (!cfg)
        fprintf(stderr, "%s", msgs);
    REQUIRE(cfg);
    CHECK_INT(product_data(cfg, "p")->pin, 42);
    CHECK(!product_data(cfg, "p")->strict);
    CHECK_INT(product_data(cfg, "q")->pin, 1234); /* no "auth": the defaults */
    gw_adapter a = {.ops = &fake_ops};
    CHECK_INT(fake_ops.init(&a, json_object_get(cfg->adapters, "fake"), cfg, &diag), 0);
    const fake_cfg *c = a.state;
    CHECK_INT(c->window_ms, 250);
    CHECK(c->verbose);
    CHECK_INT(c->mode, 1);
    CHECK_STR(c->greeting, "hello");
    CHECK_INT(c->listeners.n, 0);
    CHECK_INT(diag.n, 0);
    fake_uninit(&a);
    gw_config_free(cfg);

    /* unknown keys and ranges: the adapter's section and its product keys */
    cfg = load("{\"window_ms\":0,\"bogus\":1,\"mode\":\"warp\"}",
               "\"auth\":{\"mode\":\"device-secret\",\"fake_pinn\":1,\"fake_strict\":3},", msgs,
               sizeof(msgs));
    CHECK(cfg == NULL);
    CHECK_CONTAINS(msgs, "adapters.fake.bogus: unknown key");
    CHECK_CONTAINS(msgs, "adapters.fake.window_ms:");
    CHECK_CONTAINS(msgs, "adapters.fake.mode:");
    CHECK_CONTAINS(msgs, "auth.fake_pinn: unknown key");
    CHECK_CONTAINS(msgs, "auth.fake_strict: must be true or false");
    gw_diag_free(&diag);
}

/* Each family has one # HELP and one # TYPE line, before its first sample. */
static void check_families(const char *text)
{
    char seen[256][96];
    size_t n_seen = 0;
    char typed[96] = "";
    for (const char *l = text; *l;) {
        const char *e = strchr(l, '\n');
        size_t len = e ? (size_t)(e - l) : strlen(l);
        char fam[96];
        if (len > 7 && strncmp(l, "# TYPE ", 7) == 0) {
            size_t fl = strcspn(l + 7, " ");
            snprintf(typed, sizeof(typed), "%.*s", (int)fl, l + 7);
            for (size_t i = 0; i < n_seen; i++)
                if (strcmp(seen[i], typed) == 0) {
                    fprintf(stderr, "family %s typed twice\n", typed);
                    CHECK(0);
                }
            if (n_seen < 256)
                snprintf(seen[n_seen++], sizeof(seen[0]), "%s", typed);
        } else if (len && l[0] != '#') {
            size_t fl = strcspn(l, "{ ");
            snprintf(fam, sizeof(fam), "%.*s", (int)fl, l);
            if (strcmp(fam, typed) != 0) {
                fprintf(stderr, "sample of %s outside its family (last # TYPE: %s)\n", fam, typed);
                CHECK(0);
            }
        }
        l += len + (e ? 1 : 0);
    }
}

static void test_metrics(void)
{
    static char buf[128 * 1024];
    CHECK(FAKE_M_FRAMES != GW_M__UNREGISTERED); /* registered by gw_registry_add_adapter */
    CHECK_INT(FAKE_M_DROP_SHORT, FAKE_M_FRAMES + 1);
    for (int i = 0; i < 3; i++)
        gw_metric_inc(FAKE_M_FRAMES);
    gw_metric_inc(FAKE_M_DROP_SHORT);
    gw_metric_add(FAKE_M_PEERS, 2);
    CHECK_INT(gw_metrics_register(fake_metrics), 0); /* again: a table registers once */
    size_t n = gw_metrics_render(buf, sizeof(buf));
    CHECK(n < sizeof(buf));
    CHECK_CONTAINS(buf, "# HELP iotgw_fake_frames_total frames the fake adapter received\n"
                        "# TYPE iotgw_fake_frames_total counter\n"
                        "iotgw_fake_frames_total 3\n");
    CHECK_CONTAINS(buf, "# HELP iotgw_fake_dropped_total fake frames dropped, by reason\n"
                        "# TYPE iotgw_fake_dropped_total counter\n"
                        "iotgw_fake_dropped_total{reason=\"short\"} 1\n"
                        "iotgw_fake_dropped_total{reason=\"long\"} 0\n");
    CHECK_CONTAINS(buf, "# HELP iotgw_fake_peers peers of the fake adapter (gauge)\n"
                        "# TYPE iotgw_fake_peers gauge\n"
                        "iotgw_fake_peers 2\n");
    /* the built-in adapters' too, e.g. a family two adapters share */
    CHECK_CONTAINS(buf, "# TYPE iotgw_output_paused_total counter\n"
                        "iotgw_output_paused_total{adapter=\"mqtt\"} 0\n"
                        "iotgw_output_paused_total{adapter=\"tcp\"} 0\n");
    check_families(buf);
}

static void test_reference(void)
{
    char *out = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&out, &len);
    REQUIRE(m);
    CHECK_INT(gw_config_reference(m, gw_registry_config_plugins()), 0); /* every key has a doc */
    fclose(m);
    CHECK_CONTAINS(out, "### `adapters.fake`");
    CHECK_CONTAINS(out, "| `window_ms` | integer | 100 | 1..60000 | Batching window, in ms. |");
    CHECK_CONTAINS(out, "| `mode` | string (enum) | `slow` | `fast`, `slow` |");
    CHECK_CONTAINS(out, "| `greeting` | string | `\"hello\"` |");
    CHECK_CONTAINS(out, "### `product \"auth\" (protocol fake)`");
    CHECK_CONTAINS(out, "| `fake_pin` | integer | 1234 | 1..9999 |");
    free(out);
}

int main(void)
{
    char path[512];
    gw_error err = {0, ""};
    REQUIRE(gw_registry_check(&err) == 0);
    REQUIRE(gw_registry_add_adapter(&fake_ops, &err) == 0);
    CHECK_INT(gw_registry_add_adapter(&fake_ops, &err), GW_ECONFIG); /* one name, once */
    CHECK(gw_registry_adapter("fake") == &fake_ops);
    REQUIRE(mkdtemp(tmpdir));
    snprintf(path, sizeof(path), "%s/products", tmpdir);
    REQUIRE(mkdir(path, 0700) == 0);
    put_file("products/q.json", "{\"id\":\"q\",\"protocol\":\"fake\",\"codec\":\"json\","
                                "\"properties\":[{\"id\":\"t\",\"type\":\"int\"}]}");
    put_file("devices.json", "[{\"id\":\"d\",\"product\":\"p\",\"secret\":\"k\"},"
                             "{\"id\":\"e\",\"product\":\"q\",\"secret\":\"k\"}]");
    test_config();
    test_metrics();
    test_reference();
    cleanup();
    TEST_MAIN_END();
}

/* config_errors.c: every configuration mistake the loader knows is reported with the file, the
 * JSON path (or line:column for broken JSON) and a clear message; several mistakes are all
 * reported in one load; a broken config never yields a gw_config. Fixtures are written into a
 * fresh mkdtemp folder per case. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "test.h"
#include "config/config.h"
#include "gateway/registry.h"
#include "gateway/util/error.h"

#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#define MQTT_OK     "\"mqtt\": { \"listeners\": [ { \"address\": \"127.0.0.1\", \"port\": 0 } ] }"
#define ADAPTERS_OK "\"adapters\": { " MQTT_OK " }"
#define GATEWAY_OK                                                                                 \
    "{ \"log_level\": \"warn\", \"admin\": { \"port\": 0 },\n"                                     \
    "  \"adapters\": { \"mqtt\": { \"listeners\": [ { \"address\": \"127.0.0.1\", \"port\": 0 } "  \
    "] } } }\n"
#define PRODUCT_OK                                                                                 \
    "{ \"id\": \"a\", \"protocol\": \"mqtt\", \"codec\": \"json\",\n"                              \
    "  \"properties\": [ { \"id\": \"t\", \"type\": \"float\" } ] }\n"
#define DEVICES_OK "[ { \"id\": \"d-1\", \"product\": \"a\", \"secret\": \"s\" } ]\n"

/* A product file with these properties (a JSON array body). */
#define PRODUCT_PROPS(props)                                                                       \
    "{ \"id\": \"a\", \"protocol\": \"mqtt\", \"codec\": \"json\", \"properties\": [ " props " ] " \
    "}"

typedef struct result {
    int rc;
    size_t n;         /* diagnostics */
    char text[16384]; /* "\n" then one line per diagnostic */
} result;

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[1024];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
}

/* Writes gateway.json, products/NAME (pairs of name, text; NULL-terminated) and devices.json
 * (NULL: none) into a temp folder, loads it and returns the result. NULL gateway: GATEWAY_OK. */
static result load(const char *gateway, const char *const *products, const char *devices)
{
    static result r;
    char dir[] = "/tmp/iotgw-cfgerr-XXXXXX", sub[600], path[600];
    gw_diag d = {0};
    gw_config *c = (gw_config *)1;
    size_t len = 0;

    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(2);
    }
    snprintf(sub, sizeof(sub), "%s/products", dir);
    mkdir(sub, 0700);
    write_file(dir, "gateway.json", gateway ? gateway : GATEWAY_OK);
    for (size_t i = 0; products && products[i]; i += 2)
        write_file(sub, products[i], products[i + 1]);
    if (devices)
        write_file(dir, "devices.json", devices);

    snprintf(path, sizeof(path), "%s/gateway.json", dir);
    r.rc = gw_config_load(path, gw_registry_config_plugins(), &c, &d);
    CHECK(r.rc == 0 ? c != NULL : c == NULL);
    gw_config_free(c);
    r.n = d.n;
    /* Each line is preceded by a newline, so "\nfile: ...\n" matches a whole line. */
    r.text[0] = '\n';
    r.text[1] = '\0';
    len = 1;
    for (size_t i = 0; i < d.n; i++)
        len += snprintf(r.text + len, len < sizeof(r.text) ? sizeof(r.text) - len : 0, "%s\n",
                        d.msgs[i]);
    gw_diag_free(&d);
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    return r;
}

/* One product file "a.json" plus the OK devices. */
static result load_product(const char *product)
{
    const char *const products[] = {"a.json", product, NULL};
    return load(NULL, products, DEVICES_OK);
}

static result load_gateway(const char *gateway)
{
    const char *const products[] = {"a.json", PRODUCT_OK, NULL};
    return load(gateway, products, DEVICES_OK);
}

/* Exactly one diagnostic, containing want. */
#define CHECK_ONE(r, want)                                                                         \
    do {                                                                                           \
        CHECK_INT((r).rc, GW_ECONFIG);                                                             \
        CHECK_INT((r).n, 1);                                                                       \
        CHECK_CONTAINS((r).text, want);                                                            \
    } while (0)

static void test_ok_baseline(void)
{
    result r = load_gateway(GATEWAY_OK);
    CHECK_INT(r.rc, 0);
    CHECK_INT(r.n, 0);
}

static void test_json_syntax(void)
{
    result r = load_gateway("{\n  \"loops\": 1,\n  \"log_level\" \"info\"\n}\n");
    CHECK_ONE(r, "gateway.json:3:20: JSON syntax error: ':' expected near '\"info\"'");

    const char *const products[] = {"a.json", "{ \"id\": \"a\",\n  \"codec\": json }\n", NULL};
    r = load(NULL, products, NULL);
    CHECK_INT(r.rc, GW_ECONFIG);
    CHECK_CONTAINS(r.text, "\nproducts/a.json:2:15: JSON syntax error: ");

    r = load(NULL, NULL, "[ { \"id\": \"x\" ]");
    CHECK_CONTAINS(r.text, "\ndevices.json:1:15: JSON syntax error: ");
}

static void test_duplicate_key(void)
{
    result r = load_gateway("{\n  \"loops\": 1,\n  \"loops\": 2\n}\n");
    CHECK_ONE(r, "gateway.json:3:9: JSON syntax error: duplicate object key near '\"loops\"'");

    r = load_product("{ \"id\": \"a\", \"id\": \"b\" }");
    CHECK_INT(r.rc, GW_ECONFIG);
    CHECK_CONTAINS(r.text, "\nproducts/a.json:1:17: JSON syntax error: duplicate object key");
}

static void test_unknown_keys(void)
{
    result r = load_gateway("{ " ADAPTERS_OK ", \"colour\": \"red\" }");
    CHECK_ONE(r, "gateway.json: colour: unknown key\n");

    r = load_gateway("{ " ADAPTERS_OK ", \"storage\": { \"pth\": \"x\" } }");
    CHECK_ONE(r, "gateway.json: storage.pth: unknown key\n");

    r = load_product(
        "{ \"id\": \"a\", \"protocol\": \"mqtt\", \"codec\": \"json\", \"colour\": 1 }");
    CHECK_ONE(r, "\nproducts/a.json: colour: unknown key\n");

    r = load_product(PRODUCT_PROPS("{ \"id\": \"t\", \"type\": \"int\", \"colour\": 1 }"));
    CHECK_ONE(r, "\nproducts/a.json: properties[0].colour: unknown key\n");

    r = load_product("{ \"id\": \"a\", \"protocol\": \"mqtt\", \"codec\": \"json\", \"events\": "
                     "[ { \"id\": \"e\", \"params\": [], \"prio\": 1 } ] }");
    CHECK_ONE(r, "products/a.json: events[0].prio: unknown key\n");

    r = load(NULL, (const char *const[]){"a.json", PRODUCT_OK, NULL},
             "[ { \"id\": \"d-1\", \"product\": \"a\", \"secret\": \"s\", \"key\": 1 } ]");
    CHECK_ONE(r, "\ndevices.json: [0].key: unknown key\n");
}

static void test_wrong_type(void)
{
    result r = load_product(PRODUCT_PROPS("{ \"id\": \"t\", \"type\": \"float\" },"
                                          "{ \"id\": \"u\", \"type\": \"int\", \"max\": \"9\" }"));
    CHECK_ONE(r, "\nproducts/a.json: properties[1].max: must be a number\n");

    r = load_product(PRODUCT_PROPS("{ \"id\": \"t\", \"type\": \"int\", \"min\": 1.5 }"));
    CHECK_ONE(r, "products/a.json: properties[0].min: must be an integer\n");

    r = load_product(PRODUCT_PROPS("{ \"id\": \"t\", \"type\": \"int\", \"max\": 2147483648 }"));
    CHECK_ONE(r, "properties[0].max: 2147483648 is out of range -2147483648..2147483647\n");

    r = load_product(PRODUCT_PROPS("{ \"id\": \"t\", \"type\": \"date\", \"min\": -1 }"));
    CHECK_ONE(r, "properties[0].min: -1 is out of range 0..");

    r = load_product(PRODUCT_PROPS("{ \"id\": \"t\", \"type\": \"float\", \"max\": 1e300 }"));
    CHECK_ONE(r, "properties[0].max: 1e+300 is out of range for type float\n");

    r = load_product(PRODUCT_PROPS("{ \"id\": \"t\", \"type\": \"thing\" }"));
    CHECK_ONE(r, "properties[0].type: unknown type \"thing\"");

    r = load_product(PRODUCT_PROPS("{ \"id\": \"t\", \"type\": \"bool\", \"access\": \"w\" }"));
    CHECK_ONE(r, "properties[0].access: must be \"r\" or \"rw\"\n");

    r = load_gateway("{ " ADAPTERS_OK ", \"admin\": { \"enabled\": \"yes\" } }");
    CHECK_ONE(r, "gateway.json: admin.enabled: must be true or false\n");
}

static void test_min_greater_than_max(void)
{
    result r = load_product(
        PRODUCT_PROPS("{ \"id\": \"t\", \"type\": \"int\", \"min\": 10, \"max\": 5 }"));
    CHECK_ONE(r, "\nproducts/a.json: properties[0]: min 10 is greater than max 5\n");

    r = load_product(
        PRODUCT_PROPS("{ \"id\": \"t\", \"type\": \"double\", \"min\": 2.5, \"max\": -1 }"));
    CHECK_ONE(r, "products/a.json: properties[0]: min 2.5 is greater than max -1\n");
}

static void test_duplicate_ids(void)
{
    result r = load_product(PRODUCT_PROPS("{ \"id\": \"temperature\", \"type\": \"float\" },"
                                          "{ \"id\": \"h\", \"type\": \"float\" },"
                                          "{ \"id\": \"x\", \"type\": \"float\" },"
                                          "{ \"id\": \"temperature\", \"type\": \"int\" }"));
    CHECK_ONE(r, "products/a.json: properties[3].id: duplicate id \"temperature\"\n");

    r = load_product("{ \"id\": \"a\", \"protocol\": \"mqtt\", \"codec\": \"json\", \"events\": [ "
                     "{ \"id\": \"overheat\" }, { \"id\": \"overheat\", \"level\": \"warn\" } ] }");
    CHECK_ONE(r, "products/a.json: events[1].id: duplicate id \"overheat\"\n");

    r = load_product("{ \"id\": \"a\", \"protocol\": \"mqtt\", \"codec\": \"json\", \"functions\": "
                     "[ { \"id\": \"f\" }, { \"id\": \"f\" } ] }");
    CHECK_ONE(r, "products/a.json: functions[1].id: duplicate id \"f\"\n");

    r = load_product("{ \"id\": \"a\", \"protocol\": \"mqtt\", \"codec\": \"json\", \"functions\": "
                     "[ { \"id\": \"f\", \"inputs\": [ { \"id\": \"x\", \"type\": \"int\" }, "
                     "{ \"id\": \"x\", \"type\": \"int\" } ] } ] }");
    CHECK_ONE(r, "products/a.json: functions[0].inputs[1].id: duplicate id \"x\"\n");

    r = load(NULL, (const char *const[]){"a.json", PRODUCT_OK, NULL},
             "[ { \"id\": \"d-1\", \"product\": \"a\", \"secret\": \"s\" },\n"
             "  { \"id\": \"d-2\", \"product\": \"a\", \"secret\": \"s\" },\n"
             "  { \"id\": \"d-1\", \"product\": \"a\", \"secret\": \"s\" } ]");
    CHECK_ONE(r, "\ndevices.json: [2].id: duplicate device id \"d-1\" (also [0])\n");

    r = load(NULL, (const char *const[]){"a.json", PRODUCT_OK, "b.json", PRODUCT_OK, NULL},
             DEVICES_OK);
    CHECK_ONE(r, "\nproducts/b.json: id: duplicate product id \"a\" (also in products/a.json)\n");
}

static void test_unknown_product(void)
{
    result r = load(NULL, (const char *const[]){"a.json", PRODUCT_OK, NULL},
                    "[ { \"id\": \"d-0\", \"product\": \"a\", \"secret\": \"s\" },"
                    "  { \"id\": \"d-1\", \"product\": \"a\", \"secret\": \"s\" },"
                    "  { \"id\": \"d-2\", \"product\": \"a\", \"secret\": \"s\" },"
                    "  { \"id\": \"d-3\", \"product\": \"a\", \"secret\": \"s\" },"
                    "  { \"id\": \"d-4\", \"product\": \"nope\", \"secret\": \"s\" } ]");
    CHECK_ONE(r, "\ndevices.json: [4].product: unknown product \"nope\"\n");
}

static void test_codec_and_adapters(void)
{
    result r = load_product("{ \"id\": \"a\", \"protocol\": \"mqtt\", \"codec\": \"morse\" }");
    CHECK_ONE(r, "\nproducts/a.json: codec: unknown codec \"morse\"\n");

    r = load_gateway("{ \"adapters\": { " MQTT_OK ", \"pigeon\": {} } }");
    CHECK_ONE(r, "gateway.json: adapters.pigeon: unknown adapter \"pigeon\"\n");

    r = load_gateway("{ \"adapters\": { \"mqtt\": 1 } }");
    CHECK_ONE(r, "gateway.json: adapters.mqtt: must be an object\n");

    r = load_product("{ \"id\": \"a\", \"protocol\": \"pigeon\", \"codec\": \"json\" }");
    CHECK_ONE(r, "\nproducts/a.json: protocol: unknown adapter \"pigeon\"\n");

    r = load_gateway("{ \"adapters\": {} }");
    CHECK_ONE(r, "\nproducts/a.json: protocol: adapter \"mqtt\" is not enabled in gateway.json "
                 "adapters\n");

    r = load_gateway("{ }");
    CHECK_ONE(r, "products/a.json: protocol: adapter \"mqtt\" is not enabled");

    /* The adapter's own section is checked by the adapter, during the same load, so its
     * problems are listed with every other file's. */
    r = load("{ \"adapters\": { \"mqtt\": { \"colour\": \"red\" } } }",
             (const char *const[]){"a.json", "{ \"id\": \"a\" }", NULL}, DEVICES_OK);
    CHECK_INT(r.rc, GW_ECONFIG);
    CHECK_CONTAINS(r.text, "gateway.json: adapters.mqtt.colour: unknown key\n");
    CHECK_CONTAINS(r.text, "gateway.json: adapters.mqtt.listeners: missing required key\n");
    CHECK_CONTAINS(r.text, "\nproducts/a.json: protocol: missing required key\n");
}

static void test_type_specific_keys(void)
{
    result r = load_product(PRODUCT_PROPS("{ \"id\": \"mode\", \"type\": \"enum\" }"));
    CHECK_ONE(r, "products/a.json: properties[0].values: missing required key for type enum\n");

    r = load_product(PRODUCT_PROPS("{ \"id\": \"m\", \"type\": \"enum\", \"values\": [] }"));
    CHECK_ONE(r, "properties[0].values: must be a non-empty array of strings\n");

    r = load_product(
        PRODUCT_PROPS("{ \"id\": \"m\", \"type\": \"enum\", \"values\": [\"a\", \"\", \"a\"] }"));
    CHECK_INT(r.n, 2);
    CHECK_CONTAINS(r.text, "properties[0].values[1]: must be a non-empty string\n");
    CHECK_CONTAINS(r.text, "properties[0].values[2]: duplicate value \"a\"\n");

    r = load_product(PRODUCT_PROPS("{ \"id\": \"t\", \"type\": \"int\", \"max_length\": 4 }"));
    CHECK_ONE(r, "products/a.json: properties[0].max_length: not allowed for type int\n");

    r = load_product(PRODUCT_PROPS("{ \"id\": \"t\", \"type\": \"bool\", \"min\": 0 }"));
    CHECK_ONE(r, "properties[0].min: not allowed for type bool\n");

    r = load_product(
        PRODUCT_PROPS("{ \"id\": \"s\", \"type\": \"string\", \"max_length\": 0 },"
                      "{ \"id\": \"u\", \"type\": \"string\", \"max_length\": 65537 }"));
    CHECK_INT(r.rc, GW_ECONFIG);
    CHECK_INT(r.n, 2);
    CHECK_CONTAINS(r.text,
                   "products/a.json: properties[0].max_length: 0 is out of range 1..65536\n");
    CHECK_CONTAINS(r.text, "properties[1].max_length: 65537 is out of range 1..65536\n");

    r = load_product(PRODUCT_PROPS("{ \"id\": \"s\", \"type\": \"struct\" }"));
    CHECK_ONE(r, "properties[0].fields: missing required key for type struct\n");

    r = load_product(PRODUCT_PROPS("{ \"id\": \"s\", \"type\": \"array\", \"max_items\": 0 }"));
    CHECK_INT(r.n, 2);
    CHECK_CONTAINS(r.text, "properties[0].item: missing required key for type array\n");
    CHECK_CONTAINS(r.text, "properties[0].max_items: 0 is out of range 1..100000\n");

    r = load_product(PRODUCT_PROPS(
        "{ \"id\": \"s\", \"type\": \"array\", \"item\": { \"id\": \"x\", \"type\": \"int\" } }"));
    CHECK_ONE(r, "properties[0].item.id: not allowed in an array item\n");

    r = load_product(PRODUCT_PROPS("{ \"id\": \"t\", \"type\": \"int\", \"required\": false }"));
    CHECK_ONE(r, "properties[0].required: only allowed for event params");

    r = load_product("{ \"id\": \"a\", \"protocol\": \"mqtt\", \"codec\": \"json\", \"events\": "
                     "[ { \"id\": \"e\", \"level\": \"panic\", \"params\": [ { \"id\": \"p\", "
                     "\"type\": \"int\", \"access\": \"rw\" } ] } ] }");
    CHECK_INT(r.n, 2);
    CHECK_CONTAINS(r.text, "events[0].level: must be one of \"info\", \"warn\", \"alert\"");
    CHECK_CONTAINS(r.text, "events[0].params[0].access: only allowed for properties\n");
}

static void test_nesting_cap(void)
{
    char prop[2048];
    /* properties[0] is depth 1; eight nested items reach depth 9. */
    snprintf(prop, sizeof(prop), "{ \"id\": \"n\", \"type\": \"array\", \"item\": %s }",
             "{ \"type\": \"array\", \"item\": { \"type\": \"array\", \"item\": { \"type\": "
             "\"array\", \"item\": { \"type\": \"array\", \"item\": { \"type\": \"array\", "
             "\"item\": { \"type\": \"array\", \"item\": { \"type\": \"array\", \"item\": { "
             "\"type\": \"int\" } } } } } } } }");
    char product[4096];
    snprintf(product, sizeof(product), PRODUCT_PROPS("%s"), prop);
    result r = load_product(product);
    CHECK_ONE(r, "properties[0].item.item.item.item.item.item.item.item: nesting deeper than 8 "
                 "levels\n");

    /* Depth 8 exactly is fine. */
    snprintf(prop, sizeof(prop), "{ \"id\": \"n\", \"type\": \"struct\", \"fields\": [ %s ] }",
             "{ \"id\": \"a\", \"type\": \"array\", \"item\": { \"type\": \"array\", \"item\": { "
             "\"type\": \"array\", \"item\": { \"type\": \"array\", \"item\": { \"type\": "
             "\"array\", \"item\": { \"type\": \"struct\", \"fields\": [ { \"id\": \"z\", "
             "\"type\": \"int\" } ] } } } } } }");
    snprintf(product, sizeof(product), PRODUCT_PROPS("%s"), prop);
    r = load_product(product);
    CHECK_INT(r.rc, 0);
    CHECK_INT(r.n, 0);
}

static void test_missing_required(void)
{
    result r = load_product("{ \"protocol\": \"mqtt\", \"codec\": \"json\" }");
    CHECK_ONE(r, "\nproducts/a.json: id: missing required key\n");

    r = load_product("{ \"id\": \"a\", \"codec\": \"json\" }");
    CHECK_ONE(r, "products/a.json: protocol: missing required key\n");

    r = load_product(PRODUCT_PROPS("{ \"type\": \"int\" }"));
    CHECK_ONE(r, "products/a.json: properties[0].id: missing required key\n");

    r = load_product(PRODUCT_PROPS("{ \"id\": \"x\" }"));
    CHECK_ONE(r, "products/a.json: properties[0].type: missing required key\n");

    r = load(NULL, (const char *const[]){"a.json", PRODUCT_OK, NULL},
             "[ { \"id\": \"d-1\", \"product\": \"a\" } ]");
    CHECK_ONE(r, "\ndevices.json: [0].secret: missing required key\n");

    r = load_product(
        "{ \"id\": \"a\", \"protocol\": \"mqtt\", \"codec\": \"json\", \"auth\": {} }");
    CHECK_ONE(r, "products/a.json: auth.mode: missing required key\n");
}

static void test_gateway_values(void)
{
    result r = load_gateway("{ " ADAPTERS_OK ", \"admin\": { \"address\": "
                            "\"localhost\" } }");
    CHECK_ONE(r, "gateway.json: admin.address: \"localhost\" is not a numeric IPv4 or IPv6 "
                 "address\n");

    r = load_gateway("{ " ADAPTERS_OK ", \"admin\": { \"port\": 70000 } }");
    CHECK_ONE(r, "gateway.json: admin.port: 70000 is out of range 0..65535\n");

    r = load_gateway("{ " ADAPTERS_OK ", \"log_level\": \"verbose\" }");
    CHECK_ONE(r, "gateway.json: log_level: \"verbose\" is not one of \"debug\", \"info\", "
                 "\"warn\", \"error\"\n");

    r = load_gateway("{ " ADAPTERS_OK ", \"loops\": 65 }");
    CHECK_ONE(r, "gateway.json: loops: 65 is out of range 0..64\n");

    r = load_gateway("{ " ADAPTERS_OK ", \"storage\": { \"synchronous\": \"off\", "
                     "\"queue_max\": 8 } }");
    CHECK_INT(r.n, 2);
    CHECK_CONTAINS(r.text, "storage.synchronous: \"off\" is not one of \"normal\", \"full\"\n");
    CHECK_CONTAINS(r.text, "storage.queue_max: 8 is out of range 16..10000000\n");

    r = load_gateway("{ " ADAPTERS_OK ", \"storage\": { \"page_size\": 3000 } }");
    CHECK_ONE(r, "gateway.json: storage.page_size: must be a power of two (512 ... 65536)\n");
    r = load_gateway("{ " ADAPTERS_OK ", \"storage\": { \"page_size\": 131072 } }");
    CHECK_ONE(r, "gateway.json: storage.page_size: 131072 is out of range 512..65536\n");

    r = load_gateway("[ 1 ]");
    CHECK_ONE(r, "gateway.json: must be a JSON object\n");
}

static void test_north(void)
{
    result r = load_gateway("{ " ADAPTERS_OK ", \"north\": { \"enabled\": true, \"prefix\": "
                            "\"a/#\" } }");
    CHECK_ONE(r, "gateway.json: north.prefix: must be non-empty, without wildcards, not starting "
                 "with $\n");

    r = load_gateway("{ " ADAPTERS_OK ", \"north\": { \"topic_event\": \"{prefix}/{device}\","
                     " \"topic_online\": \"{prefix}/{colour}\" } }");
    CHECK_INT(r.n, 2);
    CHECK_CONTAINS(r.text, "gateway.json: north.topic_event: \"{prefix}/{device}\": must contain "
                           "{event}\n");
    CHECK_CONTAINS(r.text, "gateway.json: north.topic_online: \"{prefix}/{colour}\": unknown "
                           "placeholder");

    r = load_gateway("{ " ADAPTERS_OK ", \"north\": { \"reconnect_min_ms\": 5000, "
                     "\"reconnect_max_ms\": 1000, \"outbox_policy\": \"yolo\" } }");
    CHECK_INT(r.n, 2);
    CHECK_CONTAINS(r.text, "gateway.json: north.reconnect_max_ms: must be >= reconnect_min_ms "
                           "(5000)\n");
    CHECK_CONTAINS(r.text, "gateway.json: north.outbox_policy: \"yolo\" is not one of "
                           "\"backpressure\", \"drop_oldest\"\n");

    r = load_gateway("{ " ADAPTERS_OK ", \"north\": { \"ca_file\": \"/nonexistent/ca.pem\", "
                     "\"password\": \"x\", \"port\": 0 } }");
    CHECK_INT(r.n, 3);
    CHECK_CONTAINS(r.text, "gateway.json: north.ca_file: cannot read \"/nonexistent/ca.pem\"\n");
    CHECK_CONTAINS(r.text, "gateway.json: north.password: needs north.username\n");
    CHECK_CONTAINS(r.text, "gateway.json: north.port: 0 is out of range 1..65535\n");

    r = load_gateway("{ " ADAPTERS_OK ", \"north\": { \"window\": 10, \"colour\": 1 },"
                     " \"storage\": { \"retention_rows\": -1 } }");
    CHECK_INT(r.n, 2);
    CHECK_CONTAINS(r.text, "gateway.json: north.colour: unknown key\n");
    CHECK_CONTAINS(r.text, "gateway.json: storage.retention_rows: -1 is out of range");

    r = load_product("{ \"id\": \"a\", \"protocol\": \"mqtt\", \"codec\": \"json\", "
                     "\"commands\": { \"offline\": \"later\", \"ttl_ms\": 0 } }");
    CHECK_INT(r.n, 2);
    CHECK_CONTAINS(r.text, "a.json: commands.offline: \"later\" is not one of \"reject\", "
                           "\"queue\"\n");
    CHECK_CONTAINS(r.text, "a.json: commands.ttl_ms: 0 is out of range");
}

static void test_files_and_ids(void)
{
    result r = load_gateway("{ " ADAPTERS_OK ", \"products_dir\": \"nowhere\" }");
    CHECK_ONE(r, "gateway.json: products_dir: cannot read folder");

    r = load(NULL, (const char *const[]){"a.json", PRODUCT_OK, NULL}, NULL);
    CHECK_ONE(r, "devices.json: unable to open");

    r = load(NULL, (const char *const[]){"a.json", PRODUCT_OK, NULL}, "{}");
    CHECK_ONE(r, "devices.json: must be a JSON array of devices\n");

    r = load(NULL, (const char *const[]){"a.json", PRODUCT_OK, NULL},
             "[ { \"id\": \"d 1\", \"product\": \"a\", \"secret\": \"\" }, 7 ]");
    CHECK_INT(r.n, 3);
    CHECK_CONTAINS(r.text, "devices.json: [0].id: \"d 1\" must be 1..63 characters of");
    CHECK_CONTAINS(r.text, "devices.json: [0].secret: must be a non-empty string of at most 255");
    CHECK_CONTAINS(r.text, "devices.json: [1]: must be an object\n");

    /* a secret stored as a hash must be a well-formed one (gateway/util/auth.h) */
    r = load(NULL, (const char *const[]){"a.json", PRODUCT_OK, NULL},
             "[ { \"id\": \"d1\", \"product\": \"a\", \"secret\": "
             "\"$pbkdf2-sha256$1000$c2FsdA==$aGFzaA==\" } ]");
    CHECK_ONE(r, "devices.json: [0].secret: not a valid $pbkdf2-sha256$ hash: the salt must be 16 "
                 "bytes in base64\n");

    r = load_product("{ \"id\": \"a/b\", \"protocol\": \"mqtt\", \"codec\": \"json\" }");
    CHECK_INT(r.rc, GW_ECONFIG);
    CHECK_CONTAINS(r.text, "products/a.json: id: \"a/b\" must be 1..63 characters");

    r = load_product("{ \"id\": \"a\", \"protocol\": \"mqtt\", \"codec\": \"json\", "
                     "\"idle_timeout_ms\": -1, \"functions\": [ { \"id\": \"f\", \"timeout_ms\": 0 "
                     "} ] }");
    CHECK_INT(r.n, 2);
    CHECK_CONTAINS(r.text, "products/a.json: idle_timeout_ms: -1 is out of range 0..86400000\n");
    CHECK_CONTAINS(r.text,
                   "products/a.json: functions[0].timeout_ms: 0 is out of range 1..3600000");
}

static void test_many_errors(void)
{
    const char *const products[] = {
        "a.json",
        "{ \"id\": \"a\", \"protocol\": \"mqtt\", \"codec\": \"json\", \"colour\": 1,\n"
        "  \"properties\": [ { \"id\": \"t\", \"type\": \"int\", \"min\": 10, \"max\": 5 },\n"
        "    { \"id\": \"u\", \"type\": \"float\", \"max\": \"x\" },\n"
        "    { \"id\": \"t\", \"type\": \"enum\" } ] }\n",
        "b.json", "{ \"id\": \"b\", \"protocol\": \"mqtt\", \"codec\": \"nope\" }", NULL};
    result r = load("{ " ADAPTERS_OK ", \"loops\": -1, \"junk\": 0 }", products,
                    "[ { \"id\": \"d-1\", \"product\": \"zz\", \"secret\": \"s\" },"
                    "  { \"id\": \"d-1\", \"product\": \"a\", \"secret\": \"s\" } ]");
    CHECK_INT(r.rc, GW_ECONFIG);
    CHECK_INT(r.n, 10);
    CHECK_CONTAINS(r.text, "gateway.json: junk: unknown key\n");
    CHECK_CONTAINS(r.text, "gateway.json: loops: -1 is out of range 0..64\n");
    CHECK_CONTAINS(r.text, "\nproducts/a.json: colour: unknown key\n");
    CHECK_CONTAINS(r.text, "\nproducts/a.json: properties[0]: min 10 is greater than max 5\n");
    CHECK_CONTAINS(r.text, "\nproducts/a.json: properties[1].max: must be a number\n");
    CHECK_CONTAINS(r.text, "\nproducts/a.json: properties[2].values: missing required key");
    CHECK_CONTAINS(r.text, "\nproducts/a.json: properties[2].id: duplicate id \"t\"\n");
    CHECK_CONTAINS(r.text, "\nproducts/b.json: codec: unknown codec \"nope\"\n");
    CHECK_CONTAINS(r.text, "\ndevices.json: [0].product: unknown product \"zz\"\n");
    CHECK_CONTAINS(r.text, "\ndevices.json: [1].id: duplicate device id \"d-1\" (also [0])\n");
    /* Order: gateway.json, products by name, devices. */
    CHECK(strstr(r.text, "gateway.json: junk") < strstr(r.text, "products/a.json"));
    CHECK(strstr(r.text, "products/a.json") < strstr(r.text, "products/b.json"));
    CHECK(strstr(r.text, "products/b.json") < strstr(r.text, "devices.json"));
}

/* A codec reports every problem of a product's codec section, not just the first: two bad
 * fields in one binary message and a bad message next to it, each with its JSON path. */
#define GATEWAY_UDP                                                                                \
    "{ \"log_level\": \"warn\", \"admin\": { \"port\": 0 },\n"                                     \
    "  \"adapters\": { \"udp\": { \"listeners\": [ { \"address\": \"127.0.0.1\", \"port\": 0, "    \
    "\"product\": \"a\" } ] } } }\n"
#define PRODUCT_BINARY(messages)                                                                   \
    "{ \"id\": \"a\", \"protocol\": \"udp\", \"codec\": \"binary\",\n"                             \
    "  \"properties\": [ { \"id\": \"t\", \"type\": \"int\" } ],\n"                                \
    "  \"frame\": { \"framing\": { \"mode\": \"datagram\" },\n"                                    \
    "    \"header\": [ { \"name\": \"type\", \"type\": \"u8\" },\n"                                \
    "                { \"name\": \"dev\", \"type\": \"string\", \"size\": 8, \"role\": "           \
    "\"device_id\" } ],\n"                                                                         \
    "    \"discriminator\": \"type\", \"messages\": [ " messages " ] } }\n"

static void test_codec_errors_all_reported(void)
{
    const char *const good[] = {
        "a.json",
        PRODUCT_BINARY("{ \"kind\": \"report\", \"match\": 1, \"fields\": [ { \"name\": \"t\", "
                       "\"type\": \"u8\", \"property\": \"t\" } ] }"),
        NULL};
    result r = load(GATEWAY_UDP, good, DEVICES_OK);
    CHECK_INT(r.rc, 0);
    CHECK_INT(r.n, 0);

    const char *const bad[] = {
        "a.json",
        PRODUCT_BINARY("{ \"kind\": \"report\", \"match\": 1, \"fields\": [ { \"name\": \"t\", "
                       "\"type\": \"u99\", \"property\": \"t\" }, { \"name\": \"u\", \"type\": "
                       "\"u8\", \"property\": \"nope\" } ] },"
                       "{ \"kind\": \"bogus\", \"match\": 2 }"),
        NULL};
    r = load(GATEWAY_UDP, bad, DEVICES_OK);
    CHECK_INT(r.rc, GW_ECONFIG);
    CHECK_INT(r.n, 3);
    CHECK_CONTAINS(r.text, "\nproducts/a.json: frame.messages[0].fields[0].type: ");
    CHECK_CONTAINS(r.text, "\nproducts/a.json: frame.messages[0].fields[1].property: ");
    CHECK_CONTAINS(r.text, "\nproducts/a.json: frame.messages[1].kind: ");
}

/* A listener's "tls" object: bad values and missing files name the file and the JSON path; "tls"
 * is refused where it does not apply; PSK needs secrets in clear. */
#define MQTT_TLS(obj)                                                                              \
    "{ \"admin\": { \"port\": 0 }, \"adapters\": { \"mqtt\": { \"listeners\": [ "                  \
    "{ \"address\": \"127.0.0.1\", \"port\": 0, \"tls\": " obj " } ] } } }"
static void test_tls(void)
{
    result r = load_gateway(MQTT_TLS("{ \"cert\": \"nope.crt\", \"key\": \"nope.key\" }"));
    CHECK_ONE(r, "gateway.json: adapters.mqtt.listeners[0].tls.cert: TLS: ");
    r = load_gateway(MQTT_TLS("{ \"psk\": true, \"min_version\": \"1.1\" }"));
    CHECK_ONE(r, "adapters.mqtt.listeners[0].tls.min_version: \"1.1\" is not one of \"1.2\", "
                 "\"1.3\"\n");
    r = load_gateway(MQTT_TLS("{ \"psk\": true, \"client_cert\": \"required\" }"));
    CHECK_ONE(r, "adapters.mqtt.listeners[0].tls.ca: missing required key");
    r = load_gateway(MQTT_TLS("{ \"key\": \"k.pem\" }"));
    CHECK_ONE(r, "adapters.mqtt.listeners[0].tls.cert: missing required key");
    r = load_gateway(MQTT_TLS("{ \"psk\": true, \"handshake_timeout_ms\": 5 }"));
    CHECK_ONE(r, "adapters.mqtt.listeners[0].tls.handshake_timeout_ms: 5 is out of range");
    r = load_gateway(MQTT_TLS("{ \"psk\": true, \"colour\": 1 }"));
    CHECK_ONE(r, "adapters.mqtt.listeners[0].tls.colour: unknown key");
    r = load_gateway(MQTT_TLS("\"yes\""));
    CHECK_CONTAINS(r.text, "adapters.mqtt.listeners[0].tls: must be an object");
    r = load_gateway(MQTT_TLS("{ \"psk\": true }"));
    CHECK_INT(r.rc, 0); /* a PSK-only listener needs no certificate */
    /* PSK keys with the secret: a hashed secret of an MQTT product is refused */
    const char *const products[] = {"a.json", PRODUCT_OK, NULL};
    r = load(MQTT_TLS("{ \"psk\": true }"), products,
             "[ { \"id\": \"d-1\", \"product\": \"a\", \"secret\": "
             "\"$pbkdf2-sha256$1000$AAAAAAAAAAAAAAAAAAAAAA==$"
             "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\" } ]");
    CHECK_ONE(r, "keys (D)TLS-PSK or frame MACs with the secret itself");
    /* not on a UDP listener */
    r = load_gateway("{ \"admin\": { \"port\": 0 }, \"adapters\": { " MQTT_OK ", \"udp\": { "
                     "\"listeners\": [ { \"address\": \"127.0.0.1\", \"port\": 0, \"product\": "
                     "\"a\", \"tls\": {} } ] } } }");
    CHECK_CONTAINS(r.text, "adapters.udp.listeners[0].tls: unknown key");
}

int main(void)
{
    test_ok_baseline();
    test_json_syntax();
    test_duplicate_key();
    test_unknown_keys();
    test_wrong_type();
    test_min_greater_than_max();
    test_duplicate_ids();
    test_unknown_product();
    test_codec_and_adapters();
    test_type_specific_keys();
    test_nesting_cap();
    test_missing_required();
    test_gateway_values();
    test_files_and_ids();
    test_north();
    test_many_errors();
    test_codec_errors_all_reported();
    test_tls();
    TEST_MAIN_END();
}

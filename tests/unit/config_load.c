/* config_load.c: the shipped default configuration (config/gateway.json, its two products and
 * three devices) loads cleanly with exactly the values written there; look-ups by id and by
 * (pointer, length) work; non-default values and path resolution; 100,000 devices load and are
 * all found; devices.json rebuilt from the devices (gw_config_devices_doc) is the loaded document,
 * keys in each device's own order, also for a configuration loaded from another (base). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "test.h"
#include "config/config.h"
#include "gateway/util/error.h"
#include "gateway/registry.h"

#include <dirent.h>
#include <ftw.h>
#include <jansson.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define DEFAULT_CONFIG "../../config/gateway.json"

/* The shipped config's size, counted independently of the loader: "products" (json files in
 * config/products) or "devices" (entries of config/devices.json). */
static int shipped_count(const char *what)
{
    int n = 0;
    if (strcmp(what, "devices") == 0) {
        json_t *a = json_load_file("../../config/devices.json", 0, NULL);
        n = a ? (int)json_array_size(a) : -1;
        json_decref(a);
        return n;
    }
    DIR *d = opendir("../../config/products");
    struct dirent *e;
    while (d && (e = readdir(d))) {
        size_t l = strlen(e->d_name);
        n += l > 5 && e->d_name[0] != '.' && strcmp(e->d_name + l - 5, ".json") == 0;
    }
    if (d)
        closedir(d);
    return n;
}
#define MQTT_OK     "\"mqtt\": { \"listeners\": [ { \"address\": \"127.0.0.1\", \"port\": 0 } ] }"
#define ADAPTERS_OK "\"adapters\": { " MQTT_OK " }"

static void print_diag(const gw_diag *d)
{
    for (size_t i = 0; i < d->n; i++)
        fprintf(stderr, "diag: %s\n", d->msgs[i]);
}

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

static const gw_value_spec *prop(const gw_product *p, const char *id)
{
    for (size_t i = 0; p && i < p->n_properties; i++)
        if (p->properties[i].id && strcmp(p->properties[i].id, id) == 0)
            return &p->properties[i];
    return NULL;
}

static void check_gateway(const gw_config *c)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    CHECK_STR(c->file, DEFAULT_CONFIG);
    CHECK_STR(c->dir, "../../config");
    CHECK_INT(c->loops, cores < 1 ? 1 : cores > 64 ? 64 : cores);
    CHECK_INT(c->log_level, 1);
    CHECK_INT(c->max_connections, 100000);
    CHECK_INT(c->read_buffer, 65536);
    CHECK(c->admin_enabled);
    CHECK_STR(c->admin.address, "127.0.0.1");
    CHECK_INT(c->admin.port, 9100);
    CHECK_STR(c->store.path, "../../config/../data/iotgw.db");
    CHECK_INT(c->store.batch_max, 1000);
    CHECK_INT(c->store.batch_ms, 0);
    CHECK_INT(c->store.queue_max, 16384);
    CHECK_INT(c->store.synchronous, GW_SYNC_NORMAL);
    CHECK_INT(c->store.cache_kb, 8192);
    CHECK(json_is_object(c->adapters));
    /* mqtt, tcp, udp, and whatever later adapters the shipped config enables (coap...) */
    CHECK(json_object_get(c->adapters, "mqtt") && json_object_get(c->adapters, "tcp") &&
          json_object_get(c->adapters, "udp"));
    json_t *l = json_object_get(json_object_get(c->adapters, "mqtt"), "listeners");
    CHECK_STR(json_string_value(json_object_get(json_array_get(l, 0), "address")), "0.0.0.0");
    CHECK_INT(json_integer_value(json_object_get(json_array_get(l, 0), "port")), 1883);
}

static void check_thermo(const gw_config *c)
{
    const gw_product *p = gw_config_product(c, "thermo");
    const gw_value_spec *s;

    /* products sorted by file name */
    CHECK(p && p > c->products && strcmp(p[-1].file, p->file) < 0);
    if (!p)
        return;
    CHECK_STR(p->id, "thermo");
    CHECK_STR(p->name, "Room thermometer");
    CHECK_STR(p->protocol, "mqtt");
    CHECK_STR(p->codec, "json");
    CHECK(p->codec_ops != NULL && p->codec_ops == gw_registry_codec("json"));
    CHECK_STR(p->file, "products/thermo.json");
    CHECK(json_is_object(p->raw));
    CHECK_STR(json_string_value(json_object_get(p->raw, "id")), "thermo");
    CHECK_INT(p->idle_timeout_ms, 0);
    CHECK_INT(p->n_properties, 10);

    s = prop(p, "temperature");
    CHECK(s && s == &p->properties[0]);
    if (s) {
        CHECK_INT(s->type, GW_T_FLOAT);
        CHECK(s->has_min && s->has_max);
        CHECK(s->min == -40.0 && s->max == 125.0);
        CHECK_STR(s->unit, "°C");
        CHECK(!s->writable);
        CHECK(s->name == NULL);
    }
    s = prop(p, "mode");
    CHECK(s != NULL);
    if (s) {
        CHECK_INT(s->type, GW_T_ENUM);
        CHECK_INT(s->n_enum, 2);
        if (s->n_enum == 2) {
            CHECK_STR(s->enum_values[0], "eco");
            CHECK_STR(s->enum_values[1], "comfort");
        }
        CHECK(s->writable);
    }
    s = prop(p, "humidity");
    CHECK(s != NULL);
    if (s) {
        CHECK_INT(s->type, GW_T_FLOAT);
        CHECK(s->has_min && s->has_max && s->min == 0.0 && s->max == 100.0);
        CHECK_STR(s->unit, "%");
    }
    s = prop(p, "name");
    CHECK(s != NULL);
    if (s) {
        CHECK_INT(s->type, GW_T_STRING);
        CHECK_INT(s->max_length, 32);
        CHECK(s->writable);
    }
    s = prop(p, "status");
    CHECK(s != NULL);
    if (s) {
        CHECK_INT(s->type, GW_T_STRUCT);
        CHECK_INT(s->n_fields, 2);
        if (s->n_fields == 2) {
            CHECK_STR(s->fields[0].id, "code");
            CHECK_INT(s->fields[0].type, GW_T_INT);
            CHECK(s->fields[0].has_min && s->fields[0].imin == 0);
            CHECK(s->fields[0].has_max && s->fields[0].imax == 255);
            CHECK(s->fields[0].required);
            CHECK_STR(s->fields[1].id, "message");
            CHECK_INT(s->fields[1].type, GW_T_STRING);
            CHECK_INT(s->fields[1].max_length, 64);
            CHECK(!s->fields[1].required);
        }
    }
    s = prop(p, "samples");
    CHECK(s != NULL);
    if (s) {
        CHECK_INT(s->type, GW_T_ARRAY);
        CHECK_INT(s->max_items, 16);
        CHECK(s->item != NULL);
        if (s->item) {
            CHECK_INT(s->item->type, GW_T_FLOAT);
            CHECK(s->item->id == NULL);
            CHECK(!s->item->has_min && !s->item->has_max);
        }
    }
    s = prop(p, "boot_time");
    CHECK(s && s->type == GW_T_DATE && !s->has_min && !s->has_max);
    s = prop(p, "count");
    CHECK(s && s->type == GW_T_LONG && s->has_min && s->imin == 0 && !s->has_max);
    s = prop(p, "on");
    CHECK(s && s->type == GW_T_BOOL && s->writable);
    s = prop(p, "level");
    CHECK(s && s->type == GW_T_INT && s->imin == 0 && s->imax == 10 && s->writable);

    CHECK_INT(p->n_events, 1);
    if (p->n_events == 1) {
        CHECK_STR(p->events[0].id, "overheat");
        CHECK_INT(p->events[0].level, GW_LEVEL_ALERT);
        CHECK_INT(p->events[0].n_params, 1);
        if (p->events[0].n_params == 1) {
            CHECK_STR(p->events[0].params[0].id, "t");
            CHECK_INT(p->events[0].params[0].type, GW_T_FLOAT);
            CHECK(p->events[0].params[0].required);
        }
    }
    CHECK_INT(p->n_functions, 1);
    if (p->n_functions == 1) {
        const gw_function_spec *f = &p->functions[0];
        CHECK_STR(f->id, "reboot");
        CHECK_INT(f->timeout_ms, 5000);
        CHECK_INT(f->n_inputs, 1);
        CHECK_INT(f->n_outputs, 1);
        if (f->n_inputs == 1) {
            CHECK_STR(f->inputs[0].id, "delay_s");
            CHECK_INT(f->inputs[0].type, GW_T_INT);
            CHECK(f->inputs[0].imin == 0 && f->inputs[0].imax == 60);
        }
        if (f->n_outputs == 1) {
            CHECK_STR(f->outputs[0].id, "ok");
            CHECK_INT(f->outputs[0].type, GW_T_BOOL);
        }
    }
}

static void check_meter(const gw_config *c)
{
    const gw_product *p = gw_config_product(c, "meter");
    CHECK(p && p > c->products && strcmp(p[-1].file, p->file) < 0);
    if (!p)
        return;
    CHECK_STR(p->file, "products/meter.json");
    const gw_value_spec *s = prop(p, "energy_kwh");
    CHECK(s && s->type == GW_T_DOUBLE && s->has_min && s->min == 0.0 && !s->has_max);
    s = prop(p, "pulses");
    CHECK(s && s->type == GW_T_LONG);
    CHECK_INT(p->n_events, 1);
    if (p->n_events == 1) {
        CHECK_INT(p->events[0].level, GW_LEVEL_WARN);
        CHECK_STR(p->events[0].name, "Overload");
        CHECK_INT(p->events[0].n_params, 2);
        if (p->events[0].n_params == 2)
            CHECK(!p->events[0].params[1].required);
    }
    CHECK_INT(p->n_functions, 1);
    if (p->n_functions == 1)
        CHECK_INT(p->functions[0].timeout_ms, 10000);
}

static void check_devices(const gw_config *c)
{
    const char *topic = "/thermo/t-002/properties/report";
    const gw_device *d = gw_config_device(c, "t-001");

    CHECK(d == &c->devices[0]);
    if (d) {
        CHECK_STR(d->id, "t-001");
        CHECK_STR(d->secret, "t001-secret");
        CHECK_STR(d->name, "Living room");
        CHECK(d->product == gw_config_product(c, "thermo"));
        CHECK_INT(d->index, 0);
    }
    d = gw_config_device(c, "m-001");
    CHECK(d && d->index == 2 && d->product == gw_config_product(c, "meter"));
    d = gw_config_device(c, "mtr00001");
    CHECK(d && d->product == gw_config_product(c, "meter-tcp"));
    d = gw_config_device(c, "013912345678");
    CHECK(d && d->product == gw_config_product(c, "tracker-808"));
    d = gw_config_device(c, "snr00001");
    CHECK(d && d->product == gw_config_product(c, "sensor-udp") && d->index == 5);

    /* (ptr, len) look-ups on topic segments, which are not NUL-terminated. */
    d = gw_config_device_n(c, topic + 8, 5);
    CHECK(d && strcmp(d->id, "t-002") == 0 && d->index == 1);
    CHECK(gw_config_product_n(c, topic + 1, 6) == gw_config_product(c, "thermo"));
    CHECK(gw_config_device_n(c, topic + 8, 4) == NULL); /* "t-00" */
    CHECK(gw_config_device_n(c, topic + 8, 6) == NULL); /* "t-002/" */
    CHECK(gw_config_product_n(c, topic + 1, 7) == NULL);
    CHECK(gw_config_device(c, "t-003") == NULL);
    CHECK(gw_config_device(c, "") == NULL);
    CHECK(gw_config_device(c, NULL) == NULL);
    CHECK(gw_config_product(c, "Thermo") == NULL);
    CHECK(gw_config_device(NULL, "t-001") == NULL);
}

static void test_default_config(void)
{
    gw_diag d = {0};
    gw_config *c = NULL;
    int rc = gw_config_load(DEFAULT_CONFIG, gw_registry_config_plugins(), &c, &d);
    print_diag(&d);
    CHECK_INT(rc, 0);
    CHECK_INT(d.n, 0);
    CHECK(c != NULL);
    if (c) {
        /* every products/NAME.json (sorted by file name) and every devices.json entry */
        CHECK_INT(c->n_products, shipped_count("products"));
        CHECK_INT(c->n_devices, shipped_count("devices"));
        for (size_t i = 1; i < c->n_products; i++)
            CHECK(strcmp(c->products[i - 1].file, c->products[i].file) < 0);
        check_gateway(c);
        check_thermo(c);
        check_meter(c);
        check_devices(c);
    }
    gw_config_free(c);
    gw_diag_free(&d);
    gw_config_free(NULL);
}

static void test_non_defaults(void)
{
    char dir[] = "/tmp/iotgw-cfgload-XXXXXX", sub[600], path[600], want[700];
    gw_diag d = {0};
    gw_config *c = NULL;

    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(2);
    }
    snprintf(sub, sizeof(sub), "%s/models", dir);
    mkdir(sub, 0700);
    write_file(dir, "gw.json",
               "{ \"loops\": 3, \"log_level\": \"debug\", \"products_dir\": \"models/\",\n"
               "  \"devices_file\": \"devs.json\", \"max_connections\": 10,\n"
               "  \"read_buffer\": 4096, \"admin\": { \"enabled\": false, \"address\": \"::1\" },\n"
               "  \"storage\": { \"path\": \"/var/tmp/x.db\", \"batch_max\": 7, \"batch_ms\": 20,\n"
               "    \"queue_max\": 16, \"synchronous\": \"full\", \"cache_kb\": 256 },\n"
               "  " ADAPTERS_OK " }\n");
    write_file(sub, "p.json",
               "{ \"id\": \"p\", \"protocol\": \"mqtt\", \"codec\": \"json\",\n"
               "  \"idle_timeout_ms\": 60000, \"auth\": { \"mode\": \"device-secret\" } }");
    write_file(sub, "notes.txt", "not a product");
    write_file(dir, "devs.json", "[ { \"id\": \"x\", \"product\": \"p\", \"secret\": \"k\" } ]");
    snprintf(path, sizeof(path), "%s/gw.json", dir);

    int rc = gw_config_load(path, gw_registry_config_plugins(), &c, &d);
    print_diag(&d);
    CHECK_INT(rc, 0);
    if (c) {
        CHECK_INT(c->loops, 3);
        CHECK_INT(c->log_level, 0);
        CHECK_INT(c->max_connections, 10);
        CHECK_INT(c->read_buffer, 4096);
        CHECK(!c->admin_enabled);
        CHECK_STR(c->admin.address, "::1");
        CHECK_INT(c->admin.port, 9100);
        CHECK_STR(c->store.path, "/var/tmp/x.db");
        CHECK_INT(c->store.batch_max, 7);
        CHECK_INT(c->store.batch_ms, 20);
        CHECK_INT(c->store.queue_max, 16);
        CHECK_INT(c->store.synchronous, GW_SYNC_FULL);
        CHECK_INT(c->store.cache_kb, 256);
        CHECK_STR(c->dir, dir);
        CHECK_INT(c->n_products, 1);
        CHECK_INT(c->n_devices, 1);
        CHECK_STR(c->products[0].file, "models/p.json");
        CHECK_INT(c->products[0].idle_timeout_ms, 60000);
        CHECK_INT(c->products[0].n_properties, 0);
        CHECK(gw_config_device(c, "x") && gw_config_device(c, "x")->product == &c->products[0]);
    }
    gw_config_free(c);
    gw_diag_free(&d);

    /* Defaults when gateway.json says almost nothing; storage.path relative to its folder. */
    write_file(dir, "gw.json",
               "{ \"products_dir\": \"models\", \"devices_file\": \"devs.json\", " ADAPTERS_OK
               " }");
    rc = gw_config_load(path, gw_registry_config_plugins(), &c, &d);
    print_diag(&d);
    CHECK_INT(rc, 0);
    if (c) {
        snprintf(want, sizeof(want), "%s/../data/iotgw.db", dir);
        CHECK_STR(c->store.path, want);
        CHECK_INT(c->log_level, 1);
        CHECK(c->admin_enabled);
        CHECK_STR(c->admin.address, "127.0.0.1");
        CHECK_INT(c->store.queue_max, 16384);
        CHECK(c->loops >= 1 && c->loops <= 64);
    }
    gw_config_free(c);
    gw_diag_free(&d);
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

static void test_100k_devices(void)
{
    enum { N = 100000 };
    char dir[] = "/tmp/iotgw-cfg100k-XXXXXX", sub[600], path[600], id[32];
    gw_diag d = {0};
    gw_config *c = NULL;

    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(2);
    }
    snprintf(sub, sizeof(sub), "%s/products", dir);
    mkdir(sub, 0700);
    write_file(dir, "gateway.json", "{ " ADAPTERS_OK " }");
    write_file(sub, "a.json", "{ \"id\": \"a\", \"protocol\": \"mqtt\", \"codec\": \"json\" }");
    write_file(sub, "b.json", "{ \"id\": \"b\", \"protocol\": \"mqtt\", \"codec\": \"json\" }");
    snprintf(path, sizeof(path), "%s/devices.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        exit(2);
    }
    fputs("[\n", f);
    for (int i = 0; i < N; i++)
        fprintf(f, "{\"id\":\"dev-%06d\",\"product\":\"%s\",\"secret\":\"s%d\"}%s\n", i,
                i % 2 ? "b" : "a", i, i + 1 < N ? "," : "");
    fputs("]\n", f);
    fclose(f);

    snprintf(path, sizeof(path), "%s/gateway.json", dir);
    double t0 = now_s();
    int rc = gw_config_load(path, gw_registry_config_plugins(), &c, &d);
    double t1 = now_s();
    print_diag(&d);
    CHECK_INT(rc, 0);
    if (c) {
        CHECK_INT(c->n_devices, N);
        size_t found = 0;
        for (int i = 0; i < N; i++) {
            snprintf(id, sizeof(id), "dev-%06d", i);
            const gw_device *dv = gw_config_device(c, id);
            if (dv && dv->index == (uint32_t)i && dv == &c->devices[i] &&
                dv->product == gw_config_product(c, i % 2 ? "b" : "a"))
                found++;
        }
        CHECK_INT(found, N);
        CHECK(gw_config_device(c, "dev-100000") == NULL);
        CHECK(gw_config_device(c, "dev-00000") == NULL);
        double t2 = now_s();
        printf("loaded %d devices in %.3f s, %d look-ups in %.3f s\n", N, t1 - t0, N, t2 - t1);
    }
    gw_config_free(c);
    gw_diag_free(&d);
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

/* text as jansson dumps it, keys in order */
static char *dump(const json_t *j)
{
    return json_dumps(j, JSON_COMPACT | JSON_PRESERVE_ORDER);
}

static void test_devices_doc(void)
{
    static const char devices[] = "[{\"secret\":\"k1\",\"product\":\"a\",\"id\":\"d1\"},"
                                  "{\"name\":\"Two \\u00e9\",\"id\":\"d2\",\"product\":\"a\","
                                  "\"secret\":\"k2\"},"
                                  "{\"product\":\"a\",\"id\":\"d3\",\"secret\":\"k3\"},"
                                  "{\"id\":\"d4\",\"product\":\"a\",\"secret\":\"k4\","
                                  "\"name\":\"\"}]";
    char dir[] = "/tmp/iotgw-cfgdoc-XXXXXX", sub[600], path[600];
    gw_diag d = {0};
    gw_config *c = NULL, *c2 = NULL;

    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(2);
    }
    snprintf(sub, sizeof(sub), "%s/products", dir);
    mkdir(sub, 0700);
    write_file(dir, "gateway.json", "{ " ADAPTERS_OK " }");
    write_file(sub, "a.json", "{ \"id\": \"a\", \"protocol\": \"mqtt\", \"codec\": \"json\" }");
    write_file(dir, "devices.json", devices);
    snprintf(path, sizeof(path), "%s/gateway.json", dir);
    int rc = gw_config_load(path, gw_registry_config_plugins(), &c, &d);
    print_diag(&d);
    CHECK_INT(rc, 0);
    json_t *want = json_loads(devices, 0, NULL);
    char *w = dump(want);
    if (c) {
        json_t *doc = gw_config_devices_doc(c);
        char *got = doc ? dump(doc) : NULL;
        CHECK_STR(got, w);
        free(got);
        /* a configuration loaded from c (nothing read from disk) rebuilds the same */
        rc = gw_config_load_with(path, gw_registry_config_plugins(), c, NULL, &c2, &d);
        print_diag(&d);
        CHECK_INT(rc, 0);
        json_t *doc2 = c2 ? gw_config_devices_doc(c2) : NULL;
        got = doc2 ? dump(doc2) : NULL;
        CHECK_STR(got, w);
        free(got);
        json_decref(doc2);
        json_decref(doc);
    }
    free(w);
    json_decref(want);
    gw_config_free(c2);
    gw_config_free(c);
    gw_diag_free(&d);
    nftw(dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

int main(void)
{
    test_default_config();
    test_non_defaults();
    test_100k_devices();
    test_devices_doc();
    TEST_MAIN_END();
}

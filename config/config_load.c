/* config_load.c: gw_config_load's orchestration (gateway.json, then products, then devices),
 * gateway.json's own sections, relative path resolution, gw_config_free, and the helpers the
 * other config files share (error counting, JSON file loading, id checks, unknown keys). */
#include "internal.h"
#include "cfg_schema.h"
#include "../gateway/util/error.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define GW_LOOPS_MAX 64

void gw__config_err(gw__config_ctx *x, const char *file, const char *path, const char *fmt, ...)
{
    char msg[512];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    x->errors++;
    gw_diag_add(x->diag, file, path, "%s", msg);
}

json_t *gw__config_load_json(gw__config_ctx *x, const char *path, const char *disp)
{
    json_error_t jerr;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);

    if (root)
        return root;
    x->errors++;
    if (json_error_code(&jerr) == json_error_cannot_open_file || jerr.line < 1)
        gw_diag_add(x->diag, disp, NULL, "%s", jerr.text);
    else
        gw_diag_add(x->diag, NULL, NULL, "%s:%d:%d: JSON syntax error: %s", disp, jerr.line,
                    jerr.column, jerr.text);
    return NULL;
}

bool gw__config_id_ok(const char *s)
{
    size_t n = 0;

    if (!s)
        return false;
    for (; s[n]; n++) {
        char ch = s[n];
        if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
              ch == '_' || ch == '.' || ch == '-'))
            return false;
    }
    return n >= 1 && n <= GW__ID_MAX;
}

static bool listed(const char *const *names, const char *key)
{
    for (size_t i = 0; names && names[i]; i++)
        if (strcmp(names[i], key) == 0)
            return true;
    return false;
}

void gw__config_unknown_keys(gw__config_ctx *x, const json_t *obj, const char *const *allowed,
                             const char *const *extra, const char *file, const char *path)
{
    const char *key;
    const json_t *v;
    char p[512];

    json_object_foreach((json_t *)obj, key, v)
    {
        if (listed(allowed, key) || listed(extra, key))
            continue;
        if (path && *path)
            snprintf(p, sizeof(p), "%s.%s", path, key);
        else
            snprintf(p, sizeof(p), "%s", key);
        gw__config_err(x, file, p, "unknown key");
    }
}

/* gateway.json, as parsed by the cfg_schema tables below. */
typedef struct gw_gateway_file {
    uint32_t loops;
    int log_level;
    uint32_t log_rate_limit;
    char *products_dir;
    char *devices_file;
    uint32_t max_connections;
    uint32_t read_buffer;
    uint32_t max_devices;
    json_t *admin;
    json_t *storage;
    json_t *north;
    json_t *limits;
    json_t *adapters;
} gw_gateway_file;

typedef struct gw_storage_file {
    char *path;
    uint32_t batch_max, batch_ms, queue_max, state_lag_ms;
    int synchronous;
    uint32_t cache_kb, page_size;
    int64_t retention_rows;
    uint32_t max_db_mb;
} gw_storage_file;

static const char *const log_levels[] = {"debug", "info", "warn", "error", NULL};
static const char *const sync_modes[] = {"normal", "full", NULL};

#define GF(name, type, field, lo, hi, en, ...)                                                     \
    {                                                                                              \
        name, type, offsetof(gw_gateway_file, field), lo, hi, en, false, __VA_ARGS__               \
    }
static const gw_cfg_field gateway_fields[] = {
    GF("loops", GW_CFG_UINT32, loops, 0, GW_LOOPS_MAX, NULL, GW_CFG_DEF(0),
       .doc = "Event-loop threads that serve the devices; 0: one per CPU."),
    GF("log_level", GW_CFG_ENUM, log_level, 0, 0, log_levels, GW_CFG_DEF(1),
       .doc = "The least severe log level written."),
    GF("log_rate_limit", GW_CFG_UINT32, log_rate_limit, 0, 1000000, NULL, GW_CFG_DEF(10),
       .doc = "Log lines per second per call site and thread (loops, store writer, north); the "
              "rest are only counted; 0: no limit."),
    GF("products_dir", GW_CFG_STRING, products_dir, 0, 0, NULL, GW_CFG_DEF_STR("products"),
       .doc = "Folder of the product files, relative to gateway.json's folder."),
    GF("devices_file", GW_CFG_STRING, devices_file, 0, 0, NULL, GW_CFG_DEF_STR("devices.json"),
       .doc = "The device list (devices.json), relative to gateway.json's folder; the device API "
              "rewrites it."),
    GF("max_connections", GW_CFG_UINT32, max_connections, 1, 10000000, NULL, GW_CFG_DEF(100000),
       .doc = "Device connections open at once, every adapter and loop together."),
    GF("read_buffer", GW_CFG_UINT32, read_buffer, 4096, 16777216, NULL, GW_CFG_DEF(65536),
       .doc = "Bytes of each loop's socket read buffer."),
    GF("max_devices", GW_CFG_UINT32, max_devices, 0, 100000000, NULL, GW_CFG_DEF(0),
       .doc = "Distinct device ids (since the start) the per-device arrays are sized for; 0: twice "
              "the configured devices plus 10,000."),
    GF("admin", GW_CFG_JSON, admin, 0, 0, NULL,
       .doc = "The HTTP server of the management API, `/metrics`, `/health` and the web console."),
    GF("storage", GW_CFG_JSON, storage, 0, 0, NULL,
       .doc = "The SQLite store: file, batching, back-pressure, durability, retention."),
    GF("north", GW_CFG_JSON, north, 0, 0, NULL,
       .doc = "The upstream MQTT bridge: events to the cloud, commands from it."),
    GF("limits", GW_CFG_JSON, limits, 0, 0, NULL,
       .doc = "Connection and login limits per source IP address."),
    GF("adapters", GW_CFG_JSON, adapters, 0, 0, NULL,
       .doc = "The device protocols to run (`mqtt`, `tcp`, `udp`, `coap`), each with its section; "
              "only those named run."),
    {NULL, 0, 0, 0, 0, NULL, false},
};

#define SF(name, type, field, lo, hi, en, ...)                                                     \
    {                                                                                              \
        name, type, offsetof(gw_storage_file, field), lo, hi, en, false, __VA_ARGS__               \
    }
static const gw_cfg_field storage_fields[] = {
    SF("path", GW_CFG_STRING, path, 0, 0, NULL, GW_CFG_DEF_STR("../data/iotgw.db"),
       .doc = "The SQLite database file, relative to gateway.json's folder."),
    SF("batch_max", GW_CFG_UINT32, batch_max, 1, 100000, NULL, GW_CFG_DEF(1000),
       .doc = "Events per commit at most."),
    SF("batch_ms", GW_CFG_UINT32, batch_ms, 0, 10000, NULL, GW_CFG_DEF(0),
       .doc = "Commit at most this many ms after a batch's first event; 0: as soon as nothing more "
              "is queued (group commit)."),
    SF("queue_max", GW_CFG_UINT32, queue_max, 16, 10000000, NULL, GW_CFG_DEF(16384),
       .doc = "Events accepted but not yet committed and acknowledged; at the bound adapters stop "
              "reading until it falls to half."),
    SF("state_lag_ms", GW_CFG_UINT32, state_lag_ms, 0, 60000, NULL, GW_CFG_DEF(50),
       .doc = "How long the latest-state tables may trail the events, in ms; 0: written with every "
              "batch."),
    SF("synchronous", GW_CFG_ENUM, synchronous, 0, 0, sync_modes, GW_CFG_DEF(0),
       .doc = "Durability: `normal` (WAL, survives a crash of the process) or `full` (fsync per "
              "commit, survives a power cut)."),
    SF("cache_kb", GW_CFG_UINT32, cache_kb, 256, 4194304, NULL, GW_CFG_DEF(8192),
       .doc = "SQLite's page cache of the store, in KiB."),
    SF("page_size", GW_CFG_UINT32, page_size, 512, 65536, NULL, GW_CFG_DEF(16384),
       .doc = "SQLite's page size for a new database, in bytes (a power of two): larger pages mean "
              "fewer, larger writes per commit (less kernel time under load), smaller ones fewer "
              "bytes written by a commit of a few events (flash wear). A database keeps the size "
              "it was created with."),
    SF("retention_rows", GW_CFG_INT64, retention_rows, 0, 1000000000000LL, NULL, GW_CFG_DEF(0),
       .doc = "Events kept at most: the oldest forwarded ones are deleted after each batch; 0: no "
              "limit."),
    SF("max_db_mb", GW_CFG_UINT32, max_db_mb, 0, 16777216, NULL, GW_CFG_DEF(0),
       .doc = "Disk budget of the database in MiB: the oldest forwarded events are deleted past "
              "it, then the outbox policy applies; 0: no limit."),
    {NULL, 0, 0, 0, 0, NULL, false},
};

/* The folder of a file path: "a/b/gateway.json" -> "a/b", "gateway.json" -> ".". */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    if (!slash)
        return strdup(".");
    if (slash == path)
        return strdup("/");
    return strndup(path, (size_t)(slash - path));
}

/* rel if absolute, else dir/rel. */
char *gw__config_resolve(const char *dir, const char *rel)
{
    if (rel[0] == '/')
        return strdup(rel);
    size_t n = strlen(dir) + strlen(rel) + 2;
    char *s = malloc(n);
    if (s)
        snprintf(s, n, "%s/%s", dir, rel);
    return s;
}

static uint32_t default_loops(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    if (n < 1)
        n = 1;
    return n > GW_LOOPS_MAX ? GW_LOOPS_MAX : (uint32_t)n;
}

static void load_storage(gw__config_ctx *x, gw_config *c, const json_t *obj)
{
    gw_storage_file s = {0}; /* the defaults are storage_fields' */

    x->errors += gw_cfg_parse(storage_fields, obj, &s, c->file, "storage", x->diag);
    c->store.batch_max = s.batch_max;
    c->store.batch_ms = s.batch_ms;
    c->store.queue_max = s.queue_max;
    c->store.state_lag_ms = s.state_lag_ms;
    c->store.synchronous = s.synchronous == 1 ? GW_SYNC_FULL : GW_SYNC_NORMAL;
    c->store.cache_kb = s.cache_kb;
    c->store.page_size = s.page_size;
    if (s.page_size & (s.page_size - 1))
        gw__config_err(x, c->file, "storage.page_size", "must be a power of two (512 ... 65536)");
    c->store.retention_rows = s.retention_rows;
    c->store.max_db_mb = s.max_db_mb;
    if (s.path && !*s.path)
        gw__config_err(x, c->file, "storage.path", "must not be empty");
    else if (s.path && !(c->store.path = gw__config_resolve(c->dir, s.path)))
        gw__config_err(x, c->file, "storage.path", "out of memory");
    gw_cfg_free(storage_fields, &s);
}

#define LF(name, field, lo, hi, ...)                                                               \
    {                                                                                              \
        name, GW_CFG_UINT32, offsetof(gw_limits_cfg, field), lo, hi, NULL, false, __VA_ARGS__      \
    }
static const gw_cfg_field limits_fields[] = {
    LF("max_connections_per_source", max_connections_per_source, 0, 10000000, GW_CFG_DEF(0),
       .doc = "Open connections per source address; 0: no limit."),
    LF("connect_rate_per_source", connect_rate_per_source, 0, 1000000, GW_CFG_DEF(0),
       .doc = "New connections per second per source address, sustained; more are closed at "
              "accept; 0: no limit."),
    LF("connect_burst_per_source", connect_burst_per_source, 0, 1000000, GW_CFG_DEF(0),
       .doc = "New connections per source address in a burst (the connect rate's token bucket)."),
    LF("auth_failures_per_source", auth_failures_per_source, 0, 1000000, GW_CFG_DEF(0),
       .doc = "Failed logins that put a source address in back-off; 0: no back-off."),
    LF("auth_backoff_ms", auth_backoff_ms, 1, 86400000, GW_CFG_DEF(1000),
       .doc = "The first back-off after too many failed logins, in ms; doubled for every further "
              "failure."),
    LF("auth_backoff_max_ms", auth_backoff_max_ms, 1, 86400000, GW_CFG_DEF(60000),
       .doc = "The longest back-off, in ms."),
    LF("sources_max", sources_max, 64, 16777216, GW_CFG_DEF(65536),
       .doc = "Source addresses the limits table tracks (idle ones are reused, oldest first)."),
    {NULL, 0, 0, 0, 0, NULL, false},
};

/* Per-source limits: every one off unless configured (tests and benchmarks open thousands of
 * connections from 127.0.0.1); the shipped gateway.json turns them on. */
static void load_limits(gw__config_ctx *x, gw_config *c, const json_t *obj)
{
    c->limits = (gw_limits_cfg){0}; /* the defaults are limits_fields' */
    x->errors += gw_cfg_parse(limits_fields, obj, &c->limits, c->file, "limits", x->diag);
    if (c->limits.connect_rate_per_source && !c->limits.connect_burst_per_source)
        c->limits.connect_burst_per_source = c->limits.connect_rate_per_source;
    if (c->limits.connect_burst_per_source &&
        c->limits.connect_burst_per_source < c->limits.connect_rate_per_source)
        gw__config_err(x, c->file, "limits.connect_burst_per_source",
                       "must be >= connect_rate_per_source (%u)",
                       c->limits.connect_rate_per_source);
    if (c->limits.auth_backoff_max_ms < c->limits.auth_backoff_ms)
        gw__config_err(x, c->file, "limits.auth_backoff_max_ms", "must be >= auth_backoff_ms (%u)",
                       c->limits.auth_backoff_ms);
}

static void load_adapters(gw__config_ctx *x, gw_config *c, json_t *obj)
{
    const char *key;
    json_t *v;
    char p[256];

    if (!obj) {
        c->adapters = json_object();
        return;
    }
    if (!json_is_object(obj)) {
        gw__config_err(x, c->file, "adapters", "must be an object");
        return;
    }
    c->adapters = json_incref(obj);
    json_object_foreach(obj, key, v)
    {
        gw_config_adapter ad;
        snprintf(p, sizeof(p), "adapters.%s", key);
        if (c->plugins->adapter(key, &ad) != 0) {
            gw__config_err(x, c->file, p, "unknown adapter \"%s\"", key);
        } else if (!json_is_object(v)) {
            gw__config_err(x, c->file, p, "must be an object");
        }
    }
}

/* Each adapter checks its own section against the whole configuration (products and devices
 * loaded), on a throw-away instance without a runtime, so that its problems are reported together
 * with every other file's; the runtime inits it again for real. */
static void check_adapters(gw__config_ctx *x, gw_config *c)
{
    const char *key;
    json_t *v;
    char p[256];
    json_object_foreach(c->adapters, key, v)
    {
        gw_config_adapter ad;
        if (c->plugins->adapter(key, &ad) != 0 || !json_is_object(v))
            continue;
        snprintf(p, sizeof(p), "adapters.%s", key);
        size_t before = x->diag ? x->diag->n : 0;
        if (c->plugins->adapter_check(&ad, v, c, x->diag) != 0) {
            size_t added = x->diag ? x->diag->n - before : 0;
            x->errors += added ? (int)added : 1;
            if (!added)
                gw_diag_add(x->diag, c->file, p, "invalid adapter section");
        }
    }
}

/* gateway.json itself; then products and devices. */
static void load_all(gw__config_ctx *x, gw_config *c)
{
    gw_gateway_file g = {0}; /* the defaults are gateway_fields' */
    char *products = NULL, *devices = NULL;
    bool products_ok = false;

    /* from a base: a copy, never a shared reference. Generations are released on other threads
     * (the store writer, the loops) while the main thread loads the next one, and jansson's
     * reference counts are atomic but json_incref's check of the count is a plain read. */
    json_t *root =
        x->base ? json_deep_copy(x->base->gateway_json) : gw__config_load_json(x, c->file, c->file);
    if (!root) {
        if (x->base)
            gw__config_err(x, c->file, NULL, "out of memory");
        return;
    }
    c->gateway_json = json_incref(root);
    if (!json_is_object(root)) {
        gw__config_err(x, c->file, NULL, "must be a JSON object");
        json_decref(root);
        return;
    }
    /* From here on g owns its strings (gw_cfg_parse copies the defaults). */
    x->errors += gw_cfg_parse(gateway_fields, root, &g, c->file, "", x->diag);
    c->loops = g.loops ? g.loops : default_loops();
    c->log_level = g.log_level;
    c->log_rate_limit = g.log_rate_limit;
    c->max_connections = g.max_connections;
    c->read_buffer = g.read_buffer;
    c->max_devices_set = g.max_devices;
    gw__config_load_admin(x, c, g.admin);
    load_storage(x, c, g.storage);
    gw__config_load_north(x, c, g.north);
    load_limits(x, c, g.limits);
    load_adapters(x, c, g.adapters);

    c->index = calloc(1, sizeof(gw__config_index));
    if (!c->index) {
        gw__config_err(x, c->file, NULL, "out of memory");
        goto done;
    }
    if (g.products_dir && !*g.products_dir)
        gw__config_err(x, c->file, "products_dir", "must not be empty");
    else if (g.products_dir && (products = gw__config_resolve(c->dir, g.products_dir)))
        products_ok = true;
    else if (g.products_dir)
        gw__config_err(x, c->file, "products_dir", "out of memory");
    /* Without a readable products folder every device would be "unknown product". */
    if (products_ok && x->base)
        products_ok = gw__config_load_products_from(x, c, x->base);
    else if (products_ok)
        products_ok = gw__config_load_products(x, c, products, g.products_dir);
    if (g.devices_file && !*g.devices_file)
        gw__config_err(x, c->file, "devices_file", "must not be empty");
    else if (g.devices_file && products_ok &&
             (devices = gw__config_resolve(c->dir, g.devices_file)) &&
             (c->devices_path = strdup(devices))) {
        /* the caller's document is only read (and not kept): a reference, no copy */
        json_t *doc = x->devices ? json_incref((json_t *)x->devices)
                      : x->base  ? gw_config_devices_doc(x->base)
                                 : NULL;
        if (doc)
            gw__config_load_devices_json(x, c, doc, g.devices_file);
        else if (x->devices || x->base)
            gw__config_err(x, g.devices_file, NULL, "out of memory");
        else
            gw__config_load_devices(x, c, devices, g.devices_file);
    } else if (g.devices_file && products_ok)
        gw__config_err(x, c->file, "devices_file", "out of memory");
    if (g.max_devices && c->n_devices > g.max_devices)
        gw__config_err(x, c->file, "max_devices", "%zu devices configured, more than %u",
                       c->n_devices, g.max_devices);
    if (c->adapters)
        check_adapters(x, c);
    gw__config_check_listeners(x, c);
done:
    free(products);
    free(devices);
    gw_cfg_free(gateway_fields, &g);
    json_decref(root);
}

int gw_config_load(const char *path, const gw_config_plugins *plugins, gw_config **out,
                   gw_diag *diag)
{
    return gw_config_load_with(path, plugins, NULL, NULL, out, diag);
}

int gw_config_load_with(const char *path, const gw_config_plugins *plugins, const gw_config *base,
                        const json_t *devices, gw_config **out, gw_diag *diag)
{
    gw__config_ctx x = {
        .diag = diag, .errors = 0, .plugins = plugins, .base = base, .devices = devices};
    gw_config *c;

    *out = NULL;
    if (!path || !*path) {
        gw_diag_add(diag, NULL, NULL, "no configuration file given");
        return GW_ECONFIG;
    }
    c = calloc(1, sizeof(*c));
    if (!c || !(c->file = strdup(path)) || !(c->dir = dir_of(path))) {
        gw_diag_add(diag, path, NULL, "out of memory");
        gw_config_free(c);
        return GW_ECONFIG;
    }
    c->plugins = plugins;
    load_all(&x, c);
    if (x.errors) {
        gw_config_free(c);
        return GW_ECONFIG;
    }
    for (size_t i = 0; i < c->n_devices; i++)
        c->devices[i].gen = c;
    uint64_t cap = c->max_devices_set ? c->max_devices_set : (uint64_t)c->n_devices * 2 + 10000;
    c->device_cap = cap < c->n_devices ? (uint32_t)c->n_devices : (uint32_t)cap;
    c->refs = 1;
    *out = c;
    return 0;
}

void (*gw_config_free_hook)(const gw_config *c);

void gw_config_retain(const gw_config *c)
{
    if (c)
        __atomic_add_fetch(&((gw_config *)c)->refs, 1, __ATOMIC_RELAXED);
}

void gw_config_release(const gw_config *c)
{
    if (c && __atomic_sub_fetch(&((gw_config *)c)->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        if (gw_config_free_hook)
            gw_config_free_hook(c);
        gw_config_free((gw_config *)c);
    }
}

void gw_config_free(gw_config *c)
{
    if (!c)
        return;
    for (size_t i = 0; i < c->n_products; i++)
        gw__config_product_free(c->plugins, &c->products[i]);
    free(c->products);
    free(c->devices); /* their strings are in the index's blocks */
    gw__config_index *ix = c->index;
    if (ix) {
        gw__config_hash_free(&ix->products);
        gw__config_hash_free(&ix->devices);
        gw__config_strings_free(ix);
        free(ix);
    }
    json_decref(c->adapters);
    json_decref(c->gateway_json);
    free(c->devices_path);
    gw__config_north_free(c);
    gw__config_admin_free(c);
    free(c->store.path);
    free(c->file);
    free(c->dir);
    free(c);
}

int gw_config_reference(FILE *f, const gw_config_plugins *plugins)
{
    fputs("# gateway.json keys\n\n"
          "Generated by `iotgw --print-config-reference` (`cmake --build build --target "
          "config-docs`) from the config tables the loader validates with (the core's and each "
          "adapter's `cfg_fields`, and a product's own sections); do not edit: "
          "`unit.config_reference` fails when this file and the binary's output differ, when a "
          "key of a `gw_cfg_field` table in the sources is missing here, or when a key has no "
          "meaning. Ranges are inclusive; what each section does: [CONFIG.md](CONFIG.md).\n\n",
          f);
    int undocumented = gw_cfg_reference(f, "", gateway_fields);
    undocumented += gw__config_admin_reference(f);
    undocumented += gw_cfg_reference(f, "storage", storage_fields);
    undocumented += gw_cfg_reference(f, "limits", limits_fields);
    undocumented += gw__config_north_reference(f);
    for (int auth = 0; auth < 2; auth++) { /* the adapters' sections, then their product keys */
        gw_config_adapter ad;
        for (size_t i = 0; plugins->adapter_at(i, &ad) == 0; i++) {
            const gw_cfg_field *fields = auth ? ad.product_auth_fields : ad.cfg_fields;
            char path[80];
            snprintf(path, sizeof(path), auth ? "product \"auth\" (protocol %s)" : "adapters.%s",
                     ad.name);
            if (fields)
                undocumented += gw_cfg_reference(f, path, fields);
            if (!auth && ad.listener_tls_fields) {
                snprintf(path, sizeof(path), "adapters.%s.listeners[].tls", ad.name);
                undocumented += gw_cfg_reference(f, path, ad.listener_tls_fields);
                /* (the stream listeners' "proxy_protocol": protocols/stream/stream_proxy_cfg.c) */
                fprintf(f,
                        "### `adapters.%s.listeners[].proxy_protocol`\n\n" GW_CFG_REFERENCE_HEAD
                        "| `from` | array of strings | required | 1..64 addresses or CIDR "
                        "prefixes (`\"10.0.0.0/8\"`, `\"::1\"`) | The proxies allowed to connect "
                        "to this listener, each sending the PROXY v2 header first; any other "
                        "peer is closed at accept. |\n\n",
                        ad.name);
            }
        }
    }
    return undocumented + gw__config_product_reference(f);
}

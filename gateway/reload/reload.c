/* reload.c: hot reload: loads and validates a whole new configuration (from disk, or the running
 * one with another devices array), gives every device id its stable runtime index, diffs it
 * against the running generation and switches the loops to it; owns the current generation. */
#include "reload.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <uv.h>

#include "../../config/config.h"
#include "../core/runtime.h"
#include "../util/alloc.h"
#include "../util/error.h"
#include "../util/log.h"
#include "../util/metrics.h"

#define RELOAD_METRICS(X)                                                                          \
    X(gw_m_reload_applied, "config_reloads_total{result=\"applied\"}",                             \
      "configuration reloads (SIGHUP, POST /api/reload, device API changes) by outcome")           \
    X(gw_m_reload_refused, "config_reloads_total{result=\"refused\"}", NULL)                       \
    X(gw_m_config_generations, "config_generations",                                               \
      "configuration generations in memory: the running one and replaced ones a session, event "   \
      "or command still uses (gauge)")
RELOAD_METRICS(GW_METRIC_HANDLE_DEF)
static const gw_metric_def reload_metrics[] = {RELOAD_METRICS(GW_METRIC_DEF){NULL, NULL, NULL}};

static void on_config_free(const gw_config *c)
{
    if (c->generation) /* one that was running (a refused or aborted one never was) */
        gw_metric_add(gw_m_config_generations, -1);
}

/* id -> stable index, for every device id ever configured (indexes are never reused for another
 * id, so a per-device slot never mixes two devices; bounded by rt->device_cap). The ids are kept
 * back to back with their NULs in one buffer (ids_text); a slot is 8 bytes. */
typedef struct id_slot {
    uint32_t at; /* 1 + the id's offset in ids_text; 0: free slot */
    uint32_t index;
} id_slot;

struct gw_reload {
    gw_config *cur;           /* holds a reference */
    gw_runtime *rt;           /* NULL in unit tests: no loops to switch */
    const gw_config **follow; /* set to the current generation after every reload */
    id_slot *ids;
    size_t ids_cap, ids_n; /* open addressing, load <= 1/2 */
    char *ids_text;
    size_t text_len, text_cap;
    uint32_t next_index, cap;
    uint64_t reloads;
};

struct gw_reload_pending {
    gw_config *next;
    uint64_t t0;
};

static uint32_t fnv(const char *s)
{
    uint32_t h = 2166136261u;
    for (; *s; s++)
        h = (h ^ (uint8_t)*s) * 16777619u;
    return h;
}

static const char *slot_id(const gw_reload *rl, const id_slot *s)
{
    return s->at ? rl->ids_text + s->at - 1 : NULL;
}

static id_slot *id_find(gw_reload *rl, const char *id)
{
    size_t mask = rl->ids_cap - 1;
    for (size_t i = fnv(id) & mask;; i = (i + 1) & mask)
        if (!rl->ids[i].at || strcmp(slot_id(rl, &rl->ids[i]), id) == 0)
            return &rl->ids[i];
}

/* Appends id to ids_text; its slot's `at`, or 0 when out of memory (or past 4 GiB of ids). */
static uint32_t id_text_add(gw_reload *rl, const char *id)
{
    size_t n = strlen(id) + 1;
    if (rl->text_len + n > UINT32_MAX - 1)
        return 0;
    if (rl->text_len + n > rl->text_cap) {
        size_t cap = rl->text_cap ? rl->text_cap : 4096;
        while (cap < rl->text_len + n)
            cap *= 2;
        char *t = gw_realloc(GW_AREA_RUNTIME, rl->ids_text, cap);
        if (!t)
            return 0;
        rl->ids_text = t;
        rl->text_cap = cap;
    }
    memcpy(rl->ids_text + rl->text_len, id, n);
    rl->text_len += n;
    return (uint32_t)(rl->text_len - n + 1);
}

static int id_grow(gw_reload *rl, size_t want)
{
    if (want * 2 <= rl->ids_cap)
        return 0;
    size_t cap = rl->ids_cap ? rl->ids_cap : 64;
    while (cap < want * 2)
        cap *= 2;
    id_slot *old = rl->ids;
    size_t old_cap = rl->ids_cap;
    rl->ids = gw_calloc(GW_AREA_RUNTIME, cap, sizeof(*rl->ids));
    if (!rl->ids) {
        rl->ids = old;
        return GW_ENOMEM;
    }
    rl->ids_cap = cap;
    for (size_t i = 0; i < old_cap; i++)
        if (old[i].at)
            *id_find(rl, slot_id(rl, &old[i])) = old[i];
    gw_free(GW_AREA_RUNTIME, old);
    return 0;
}

/* Gives every device of c its stable index (new ids the next free ones). 0, GW_ENOMEM, or
 * GW_ECONFIG with the device (in *bad) that did not fit under the capacity. */
static int assign_indexes(gw_reload *rl, gw_config *c, const gw_device **bad)
{
    if (id_grow(rl, rl->ids_n + c->n_devices) != 0)
        return GW_ENOMEM;
    uint32_t next = rl->next_index;
    /* first pass: only check, so that a refused configuration registers nothing */
    for (size_t i = 0; i < c->n_devices; i++) {
        id_slot *s = id_find(rl, c->devices[i].id);
        if (!s->at && next++ >= rl->cap) {
            *bad = &c->devices[i];
            return GW_ECONFIG;
        }
    }
    for (size_t i = 0; i < c->n_devices; i++) {
        id_slot *s = id_find(rl, c->devices[i].id);
        if (!s->at) {
            if (!(s->at = id_text_add(rl, c->devices[i].id)))
                return GW_ENOMEM;
            s->index = rl->next_index++;
            rl->ids_n++;
        }
        c->devices[i].index = s->index;
    }
    return 0;
}

int gw_reload_create(gw_reload **out, gw_config *cfg, gw_runtime *rt, const gw_config **follow)
{
    gw_reload *rl = gw_calloc(GW_AREA_RUNTIME, 1, sizeof(*rl));
    const gw_device *bad = NULL;
    *out = NULL;
    if (!rl)
        return GW_ENOMEM;
    rl->rt = rt;
    rl->follow = follow;
    gw_metrics_register(reload_metrics);
    gw_config_free_hook = on_config_free;
    rl->cap = rt ? rt->device_cap : cfg->device_cap;
    if (rl->cap < cfg->n_devices)
        rl->cap = (uint32_t)cfg->n_devices;
    /* the loader numbered the devices 0..n-1: keep those */
    for (size_t i = 0; i < cfg->n_devices; i++)
        cfg->devices[i].index = (uint32_t)i;
    if (assign_indexes(rl, cfg, &bad) != 0)
        goto fail;
    gw_config_retain(cfg);
    rl->cur = cfg;
    if (!cfg->generation) {
        cfg->generation = 1;
        gw_metric_add(gw_m_config_generations, 1);
    }
    *out = rl;
    return 0;
fail:
    gw_reload_free(rl);
    return GW_ENOMEM;
}

void gw_reload_free(gw_reload *rl)
{
    if (!rl)
        return;
    gw_free(GW_AREA_RUNTIME, rl->ids_text);
    gw_free(GW_AREA_RUNTIME, rl->ids);
    gw_config_release(rl->cur);
    gw_free(GW_AREA_RUNTIME, rl);
}

void gw_reload_set_follow(gw_reload *rl, const gw_config **follow)
{
    rl->follow = follow;
    if (follow)
        *follow = rl->cur;
}

const gw_config *gw_reload_config(const gw_reload *rl)
{
    return rl->cur;
}

/* ---- reports ---- */

/* "file: path: message" (diag.c) -> {"file","path","message"}; syntax errors
 * "file:LINE:COL: JSON syntax error: ..." keep LINE:COL in the message. */
static json_t *diag_entry(const char *line)
{
    char file[512] = "", path[512] = "";
    const char *msg = line, *sep = strstr(line, ": ");
    const char *json_colon = strstr(line, ".json:");

    if (json_colon && (!sep || json_colon < sep) && json_colon[6] >= '0' && json_colon[6] <= '9') {
        size_t n = (size_t)(json_colon + 5 - line);
        snprintf(file, sizeof(file), "%.*s", (int)n, line);
        msg = json_colon + 6;
    } else if (sep && (size_t)(sep - line) < sizeof(file) &&
               memchr(line, ' ', (size_t)(sep - line)) == NULL) {
        snprintf(file, sizeof(file), "%.*s", (int)(sep - line), line);
        msg = sep + 2;
        const char *sep2 = strstr(msg, ": ");
        if (sep2 && (size_t)(sep2 - msg) < sizeof(path) &&
            memchr(msg, ' ', (size_t)(sep2 - msg)) == NULL) {
            snprintf(path, sizeof(path), "%.*s", (int)(sep2 - msg), msg);
            msg = sep2 + 2;
        }
    }
    /* a file name has a dot or a slash; otherwise the first part was a path */
    if (*file && !strchr(file, '.') && !strchr(file, '/') && !*path) {
        snprintf(path, sizeof(path), "%s", file);
        file[0] = 0;
    }
    return json_pack("{s:s, s:s, s:s}", "file", file, "path", path, "message", msg);
}

static json_t *diag_errors(const gw_diag *d)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < d->n; i++) {
        json_t *e = diag_entry(d->msgs[i]);
        if (e)
            json_array_append_new(a, e);
    }
    return a;
}

static void log_errors(const char *why, const json_t *errors)
{
    size_t i;
    json_t *e;
    char f[300], p[300], m[600];
    json_array_foreach(errors, i, e)
    {
        GW_LOG_ERROR("reload", NULL, NULL, why, "file=%s path=%s error=%s",
                     gw_log_value(f, sizeof(f), json_string_value(json_object_get(e, "file"))),
                     gw_log_value(p, sizeof(p), json_string_value(json_object_get(e, "path"))),
                     gw_log_quote(m, sizeof(m), json_string_value(json_object_get(e, "message"))));
    }
}

static void add_id(json_t *obj, const char *key, const char *id)
{
    json_array_append_new(json_object_get(obj, key), json_string(id));
}

/* What changes from a to b: products and devices by id, gateway.json settings that need a
 * restart (every key but the products folder and the devices file; "adapters" is looked at per
 * adapter by relisten_adapters). */
static json_t *diff(const gw_config *a, const gw_config *b, json_t **needs_restart)
{
    json_t *d =
        json_pack("{s:[], s:[], s:[], s:[], s:[], s:[]}", "products_added", "products_changed",
                  "products_removed", "devices_added", "devices_changed", "devices_removed");
    if (!d)
        return NULL;
    for (size_t i = 0; i < b->n_products; i++) {
        const gw_product *np = &b->products[i];
        const gw_product *op = gw_config_product(a, np->id);
        if (!op)
            add_id(d, "products_added", np->id);
        else if (!json_equal(op->raw, np->raw))
            add_id(d, "products_changed", np->id);
    }
    for (size_t i = 0; i < a->n_products; i++)
        if (!gw_config_product(b, a->products[i].id))
            add_id(d, "products_removed", a->products[i].id);
    for (size_t i = 0; i < b->n_devices; i++) {
        const gw_device *nd = &b->devices[i];
        const gw_device *od = gw_config_device(a, nd->id);
        if (!od)
            add_id(d, "devices_added", nd->id);
        else if (strcmp(od->secret, nd->secret) || strcmp(od->product->id, nd->product->id) ||
                 (od->name == NULL) != (nd->name == NULL) ||
                 (od->name && strcmp(od->name, nd->name)))
            add_id(d, "devices_changed", nd->id);
    }
    for (size_t i = 0; i < a->n_devices; i++)
        if (!gw_config_device(b, a->devices[i].id))
            add_id(d, "devices_removed", a->devices[i].id);

    *needs_restart = json_array();
    const char *key;
    json_t *v;
    json_t *keys = json_object();
    json_object_foreach(a->gateway_json, key, v) json_object_set_new(keys, key, json_true());
    json_object_foreach(b->gateway_json, key, v) json_object_set_new(keys, key, json_true());
    json_object_foreach(keys, key, v)
    {
        if (!strcmp(key, "products_dir") || !strcmp(key, "devices_file") ||
            !strcmp(key, "adapters"))
            continue;
        json_t *x = json_object_get(a->gateway_json, key),
               *y = json_object_get(b->gateway_json, key);
        if (!strcmp(key, "admin") && json_is_object(x) && json_is_object(y)) {
            /* the API reads its tokens from the current configuration: only the rest restarts */
            json_t *xs = json_copy(x), *ys = json_copy(y);
            json_object_del(xs, "tokens");
            json_object_del(ys, "tokens");
            bool same = json_equal(xs, ys);
            json_decref(xs);
            json_decref(ys);
            if (!same)
                json_array_append_new(*needs_restart, json_string("admin"));
            continue;
        }
        if (!(x && y && json_equal(x, y)) && (x || y))
            json_array_append_new(*needs_restart, json_string(key));
    }
    json_decref(keys);
    return d;
}

/* Each adapter whose section changed: its listeners follow (ops->relisten), or the change needs a
 * restart. Main thread, after the switch to next. */
static void relisten_adapters(gw_reload *rl, const gw_config *a, const gw_config *b, json_t *d,
                              json_t *restart)
{
    const char *name;
    json_t *v;
    json_t *names = json_object();
    json_t *done = json_array(), *failed = json_array();
    json_object_foreach(a->adapters, name, v) json_object_set_new(names, name, json_true());
    json_object_foreach(b->adapters, name, v) json_object_set_new(names, name, json_true());
    json_object_foreach(names, name, v)
    {
        json_t *x = json_object_get(a->adapters, name), *y = json_object_get(b->adapters, name);
        char key[96];
        if (x && y && json_equal(x, y))
            continue;
        snprintf(key, sizeof(key), "adapters.%s", name);
        gw_adapter *ad = NULL;
        for (unsigned i = 0; rl->rt && i < rl->rt->n_adapters; i++)
            if (strcmp(rl->rt->adapters[i].ops->name, name) == 0)
                ad = &rl->rt->adapters[i];
        int rc = x && y && ad && ad->ops->relisten ? ad->ops->relisten(ad, y, b) : 1;
        if (rc == 1) {
            json_array_append_new(restart, json_string(key));
            continue;
        }
        json_array_append_new(done, json_string(name));
        if (rc < 0) {
            char msg[160];
            snprintf(msg, sizeof(msg), "%s: a listener could not be opened: %s", key,
                     gw_strerror(rc));
            json_array_append_new(failed, json_string(msg));
            GW_LOG_ERROR("reload", NULL, NULL, "listener not opened", "adapter=%s error=\"%s\"",
                         name, gw_strerror(rc));
        }
    }
    json_object_set_new(d, "listeners_changed", done);
    if (json_array_size(failed))
        json_object_set_new(d, "listener_errors", failed);
    else
        json_decref(failed);
    json_decref(names);
}

/* Switches to next (its reference moves to rl) and fills *report. t0: uv_hrtime when loading
 * began (the main loop is busy from then on: load_ms + switch_ms are logged). */
static void apply(gw_reload *rl, gw_config *next, json_t **report, uint64_t t0)
{
    uint64_t t1 = uv_hrtime();
    json_t *restart = NULL;
    json_t *d = diff(rl->cur, next, &restart);
    next->generation = rl->cur->generation + 1;
    gw_metric_inc(gw_m_reload_applied);
    gw_metric_add(gw_m_config_generations, 1);
    const gw_config *prev = rl->cur;
    if (rl->rt)
        gw_runtime_switch(rl->rt, next);
    if (d && restart)
        relisten_adapters(rl, prev, next, d, restart);
    for (unsigned i = 0; rl->rt && i < rl->rt->n_adapters; i++) /* e.g. TLS files read again */
        if (rl->rt->adapters[i].ops->reloaded)
            rl->rt->adapters[i].ops->reloaded(&rl->rt->adapters[i], next);
    gw_config_release(rl->cur);
    rl->cur = next;
    if (rl->follow)
        *rl->follow = next;
    rl->reloads++;
    double load_ms = (double)(t1 - t0) / 1e6, switch_ms = (double)(uv_hrtime() - t1) / 1e6;
    char a[64];
    snprintf(a, sizeof(a), "%" PRIu64, next->generation);
    GW_LOG_INFO("reload", NULL, NULL, "configuration applied",
                "generation=%s products=%zu devices=%zu added=%zu changed=%zu removed=%zu "
                "needs_restart=%zu load_ms=%.1f switch_ms=%.1f",
                a, next->n_products, next->n_devices,
                json_array_size(json_object_get(d, "devices_added")),
                json_array_size(json_object_get(d, "devices_changed")),
                json_array_size(json_object_get(d, "devices_removed")), json_array_size(restart),
                load_ms, switch_ms);
    size_t i;
    json_t *k;
    json_array_foreach(restart, i, k)
    {
        GW_LOG_WARN("reload", NULL, NULL, "setting changed but needs a restart: left as it is",
                    "key=%s", json_string_value(k));
    }
    if (report)
        *report =
            json_pack("{s:o, s:o, s:I, s:f, s:f}", "applied", d ? d : json_object(),
                      "needs_restart", restart ? restart : json_array(), "generation",
                      (json_int_t)next->generation, "load_ms", load_ms, "switch_ms", switch_ms);
    else {
        json_decref(d);
        json_decref(restart);
    }
}

/* Loads with (base, devices), checks and numbers it. 0 and *out, or an error with *errors. */
static int load(gw_reload *rl, const gw_config *base, const json_t *devices, gw_config **out,
                json_t **errors)
{
    gw_diag diag = {0};
    gw_config *next = NULL;
    const gw_device *bad = NULL;
    int rc = gw_config_load_with(rl->cur->file, rl->cur->plugins, base, devices, &next, &diag);
    *out = NULL;
    *errors = NULL;
    if (rc == 0 && diag.n == 0) {
        rc = assign_indexes(rl, next, &bad);
        if (rc == GW_ECONFIG) {
            char p[64];
            snprintf(p, sizeof(p), "[%zu].id", (size_t)(bad - next->devices));
            gw_diag_add(&diag, "devices.json", p,
                        "more devices than max_devices (%u ids since start): needs a restart",
                        rl->cap);
        } else if (rc == GW_ENOMEM) {
            gw_diag_add(&diag, NULL, NULL, "out of memory");
        }
    } else if (rc == 0) {
        rc = GW_ECONFIG;
    }
    if (rc) {
        *errors = diag_errors(&diag);
        gw_config_release(next);
        gw_diag_free(&diag);
        return rc == GW_ENOMEM ? GW_ENOMEM : GW_ECONFIG;
    }
    gw_diag_free(&diag);
    *out = next;
    return 0;
}

int gw_reload_from_disk(gw_reload *rl, json_t **report)
{
    gw_config *next;
    json_t *errors;
    uint64_t t0 = uv_hrtime();
    GW_LOG_INFO("reload", NULL, NULL, "reloading the configuration", "file=%s", rl->cur->file);
    int rc = load(rl, NULL, NULL, &next, &errors);
    if (rc) {
        gw_metric_inc(gw_m_reload_refused);
        log_errors("reload refused: the running configuration stays", errors);
        *report = json_pack("{s:o}", "errors", errors ? errors : json_array());
        return rc;
    }
    apply(rl, next, report, t0);
    return 0;
}

int gw_reload_prepare_devices(gw_reload *rl, const json_t *devices, gw_reload_pending **out,
                              json_t **errors)
{
    gw_config *next;
    uint64_t t0 = uv_hrtime();
    *out = NULL;
    *errors = NULL;
    int rc = load(rl, rl->cur, devices, &next, errors);
    if (rc) {
        gw_metric_inc(gw_m_reload_refused);
        return rc;
    }
    gw_reload_pending *p = gw_malloc(GW_AREA_RUNTIME, sizeof(*p));
    if (!p) {
        gw_config_release(next);
        return GW_ENOMEM;
    }
    p->next = next;
    p->t0 = t0;
    *out = p;
    return 0;
}

void gw_reload_commit(gw_reload *rl, gw_reload_pending *p, json_t **report)
{
    apply(rl, p->next, report, p->t0);
    gw_free(GW_AREA_RUNTIME, p);
}

void gw_reload_abort(gw_reload_pending *p)
{
    if (!p)
        return;
    gw_config_release(p->next);
    gw_free(GW_AREA_RUNTIME, p);
}

/* api_devices_write.c: POST /api/devices (one device, or an array of them: all or none),
 * PATCH /api/devices/{id} (name, secret) and DELETE /api/devices/{id}. Each change is checked
 * against the running configuration (gw_reload_prepare_devices), written to devices.json
 * atomically, then applied (gw_reload_commit: a new device connects at once, a changed secret or
 * a removed device closes its session). Secrets of products that only compare them are stored as
 * PBKDF2 hashes, hashed a slice per loop turn so a bulk request never holds the main loop long. */
#include "api_handlers.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../config/config.h"
#include "../reload/reload.h"
#include "../util/auth.h"
#include "../util/error.h"
#include "../util/log.h"

#define HASH_SLICE  24  /* secrets hashed per main-loop turn (~6 ms at 1000 iterations) */
#define SYNC_HASHES 4   /* up to this many are hashed before the handler returns */
#define ERRORS_MAX  100 /* errors listed in one answer (the count says how many there were) */
#define SECRET_MAX  255
#define ID_MAX      63

static const char *const create_keys[] = {"id", "name", "product", "secret", NULL};
static const char *const patch_keys[] = {"name", "secret", NULL};

/* ---- Error lists: [{"path","message"}], the first ERRORS_MAX of them, and their number ---- */
typedef struct errs {
    json_t *list;
    size_t n;
} errs;

static void err_add(errs *e, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void err_add(errs *e, const char *path, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    e->n++;
    if (json_array_size(e->list) >= ERRORS_MAX)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    json_array_append_new(e->list, json_pack("{s:s, s:s}", "path", path, "message", msg));
}

/* {"error":code,"message":first message,"path":first path,"errors":[...],"count":n}. */
static void reply_errs(gw_api_req *r, int status, const char *code, errs *e)
{
    const json_t *first = json_array_get(e->list, 0);
    const char *msg = json_string_value(json_object_get(first, "message"));
    char text[320];
    if (e->n > 1)
        snprintf(text, sizeof(text), "%s (and %zu more)", msg ? msg : "invalid", e->n - 1);
    else
        snprintf(text, sizeof(text), "%s", msg ? msg : "invalid");
    json_t *body =
        json_pack("{s:s, s:s, s:O, s:O, s:I}", "error", code, "message", text, "path",
                  json_object_get(first, "path") ? json_object_get(first, "path") : json_null(),
                  "errors", e->list, "count", (json_int_t)e->n);
    if (!body)
        gw_api_reply_error(r, 503, "out_of_memory", NULL, "out of memory");
    else
        gw_api_reply_json(r, status, body);
}

static bool id_ok(const char *s)
{
    size_t n = strlen(s);
    if (n < 1 || n > ID_MAX)
        return false;
    for (; *s; s++)
        if (!((*s >= 'a' && *s <= 'z') || (*s >= 'A' && *s <= 'Z') || (*s >= '0' && *s <= '9') ||
              *s == '_' || *s == '.' || *s == '-'))
            return false;
    return true;
}

static bool listed(const char *const *keys, const char *k)
{
    for (; *keys; keys++)
        if (!strcmp(*keys, k))
            return true;
    return false;
}

/* A device as the API shows it: never its secret, only how it is stored. */
static json_t *device_view(const json_t *entry)
{
    const char *secret = json_string_value(json_object_get(entry, "secret"));
    json_t *o =
        json_pack("{s:O, s:O, s:O, s:s}", "id", json_object_get(entry, "id"), "product",
                  json_object_get(entry, "product"), "name",
                  json_object_get(entry, "name") ? json_object_get(entry, "name") : json_null(),
                  "secret_stored", gw_secret_is_hash(secret) ? "hash" : "clear");
    return o;
}

/* Checks a secret given for product p at path: a hash must be well formed and for a product that
 * only compares it. *hash: it is clear and p's secrets are stored hashed. */
static void check_secret(errs *e, const gw_config *c, const gw_product *p, const json_t *v,
                         const char *path, bool *hash)
{
    const char *s = json_string_value(v), *why;
    *hash = false;
    if (!json_is_string(v) || !*s || strlen(s) > SECRET_MAX) {
        err_add(e, path, "must be a non-empty string of at most %d bytes", SECRET_MAX);
    } else if (gw_secret_is_hash(s)) {
        if (gw_secret_hash_parse(s, NULL, &why) != 0)
            err_add(e, path, "not a valid " GW_SECRET_HASH_PREFIX " hash: %s", why);
        else if (p && gw_config_secret_in_clear(c, p))
            err_add(e, path,
                    "product \"%s\" keys DTLS-PSK or frame MACs with the secret itself: send it "
                    "in clear, not as a hash",
                    p->id);
    } else {
        *hash = p && !gw_config_secret_in_clear(c, p);
    }
}

/* One entry of a POST at prefix ("" for a lone object, "[3]" in an array) into a new object of
 * the file's shape; *hash as check_secret's. NULL when it has errors (added to e). */
static json_t *check_entry(errs *e, const gw_config *c, const json_t *o, const char *prefix,
                           bool *hash)
{
    char p[96];
    const char *key;
    const json_t *v;
    size_t before = e->n;
    const gw_product *prod = NULL;

    *hash = false;
    if (!json_is_object(o)) {
        err_add(e, *prefix ? prefix : "$", "must be a device object");
        return NULL;
    }
    json_object_foreach((json_t *)o, key, v)
    {
        if (!listed(create_keys, key)) {
            snprintf(p, sizeof(p), "%s%s%s", prefix, *prefix ? "." : "", key);
            err_add(e, p, "unknown field (allowed: id, product, secret, name)");
        }
    }
    for (const char *const *k = create_keys; *k; k++) {
        snprintf(p, sizeof(p), "%s%s%s", prefix, *prefix ? "." : "", *k);
        v = json_object_get(o, *k);
        if (!v) {
            /* a product that authenticates by the device id alone needs no secret */
            bool optional = !strcmp(*k, "name") ||
                            (!strcmp(*k, "secret") && prod && prod->auth_mode == GW_AUTH_DEVICE_ID);
            if (!optional)
                err_add(e, p, "missing required field");
            continue;
        }
        if (!strcmp(*k, "secret")) {
            check_secret(e, c, prod, v, p, hash);
            continue;
        }
        if (!json_is_string(v)) {
            err_add(e, p, "must be a string");
            continue;
        }
        const char *s = json_string_value(v);
        if (!strcmp(*k, "id") && !id_ok(s))
            err_add(e, p, "\"%s\" must be 1..%d characters of [A-Za-z0-9_.-]", s, ID_MAX);
        else if (!strcmp(*k, "product") && !(prod = gw_config_product(c, s)))
            err_add(e, p, "unknown product \"%s\"", s);
        else if (!strcmp(*k, "name") && strlen(s) > 255)
            err_add(e, p, "at most 255 bytes");
    }
    if (e->n != before)
        return NULL;
    json_t *out = json_pack("{s:O}", "id", json_object_get(o, "id"));
    if (out && json_object_get(o, "name"))
        json_object_set(out, "name", json_object_get(o, "name"));
    if (out && (json_object_set(out, "product", json_object_get(o, "product")) ||
                (json_object_get(o, "secret") &&
                 json_object_set(out, "secret", json_object_get(o, "secret"))))) {
        json_decref(out);
        out = NULL;
    }
    if (!out)
        err_add(e, prefix, "out of memory");
    return out;
}

/* Replaces entry's clear secret by its hash. */
static int hash_secret(json_t *entry)
{
    char h[GW_SECRET_HASH_CAP];
    const char *s = json_string_value(json_object_get(entry, "secret"));
    int rc = gw_secret_hash(s, strlen(s), GW_SECRET_ITERATIONS, h, sizeof(h));
    if (rc == 0 && json_object_set_new(entry, "secret", json_string(h)) != 0)
        rc = GW_ENOMEM;
    return rc;
}

/* "[k]..." of the checked array -> the request's own path: map(k) gives the prefix to use, or NULL
 * to keep the path as it is (an error in a device the request did not touch). */
typedef struct path_map {
    size_t first;  /* entries from here on are the request's */
    size_t n;      /* ... this many */
    bool in_array; /* request path "[k - first]..." (else "...", one object) */
} path_map;

static void remap_errors(errs *out, const json_t *errors, const path_map *m)
{
    size_t i;
    const json_t *it;
    json_array_foreach(errors, i, it)
    {
        const char *path = json_string_value(json_object_get(it, "path"));
        const char *msg = json_string_value(json_object_get(it, "message"));
        char p[128];
        unsigned long k;
        int used = 0;
        if (!path)
            path = "";
        if (sscanf(path, "[%lu]%n", &k, &used) == 1 && used > 0 && k >= m->first &&
            k < m->first + m->n) {
            const char *rest = path + used;
            if (m->in_array)
                snprintf(p, sizeof(p), "[%lu]%s", k - m->first, rest);
            else
                snprintf(p, sizeof(p), "%s", *rest == '.' ? rest + 1 : rest);
        } else {
            snprintf(p, sizeof(p), "devices.json%s", path);
        }
        err_add(out, p, "%s", msg ? msg : "invalid");
    }
}

/* The common end of every change: check devices (the whole new array) against the running
 * configuration, write devices.json, apply. true when it worked; otherwise r was answered. */
static bool apply(gw_api_req *r, gw_api_ctx *ctx, json_t *devices, const path_map *m)
{
    gw_reload_pending *pending = NULL;
    json_t *errors = NULL;
    gw_error err = {0, ""};
    errs e = {json_array(), 0};
    int rc;

    if (!e.list) {
        gw_api_reply_error(r, 503, "out_of_memory", NULL, "out of memory");
        return false;
    }
    rc = gw_reload_prepare_devices(ctx->reload, devices, &pending, &errors);
    if (rc == GW_ECONFIG) {
        remap_errors(&e, errors, m);
        if (!e.n)
            err_add(&e, "", "the configuration check failed");
        reply_errs(r, 400, "invalid", &e);
        goto fail;
    }
    if (rc != 0) {
        gw_api_reply_error(r, 503, "unavailable", NULL, "cannot check the change: %s",
                           gw_strerror(rc));
        goto fail;
    }
    if ((rc = gw_config_devices_write(ctx->cfg->devices_path, devices, &err)) != 0) {
        GW_LOG_ERROR("api", NULL, gw_api_peer(r), "devices.json not written", "error=\"%s\"",
                     err.msg);
        gw_reload_abort(pending);
        gw_api_reply_error(r, 500, "write_failed", NULL, "devices.json not written: %s", err.msg);
        goto fail;
    }
    gw_reload_commit(ctx->reload, pending, NULL);
    json_decref(errors);
    json_decref(e.list);
    return true;
fail:
    json_decref(errors);
    json_decref(e.list);
    return false;
}

/* Whether the gateway has a devices.json to change (else answered 503). */
static bool devices_writable(gw_api_req *r, gw_api_ctx *ctx)
{
    const gw_config *c = ctx->cfg;
    if (!ctx->reload || !c || !c->devices_path) {
        gw_api_reply_error(r, 503, "unavailable", NULL, "device changes are not available");
        return false;
    }
    return true;
}

/* The running devices.json array, rebuilt from the configuration (the caller's reference), or
 * NULL (answered 503) when the gateway has none to change or is out of memory. */
static json_t *running_devices(gw_api_req *r, gw_api_ctx *ctx)
{
    json_t *doc;
    if (!devices_writable(r, ctx))
        return NULL;
    if (!(doc = gw_config_devices_doc(ctx->cfg)))
        gw_api_reply_error(r, 503, "out_of_memory", NULL, "out of memory");
    return doc;
}

/* The index of device id in the running array (its position in the configuration), or -1. */
static long find_entry(const gw_config *c, const char *id)
{
    const gw_device *d = gw_config_device(c, id);
    return d ? (long)(d - c->devices) : -1;
}

/* ---- POST /api/devices ---- */
typedef struct create_job {
    uv_idle_t idle; /* one slice of hashing per loop turn (I/O polled between) */
    gw_api_req *r;
    gw_api_ctx *ctx;
    json_t *entries; /* the checked new entries, in request order */
    bool *hash;      /* per entry: its secret is to be hashed */
    size_t next;     /* the next entry to look at */
    bool single;     /* the body was one object (answer: the device) */
    bool deferred, gone, ticking;
} create_job;

static void job_free(create_job *j)
{
    json_decref(j->entries);
    free(j->hash);
    free(j);
}

static void job_closed(uv_handle_t *h)
{
    job_free(h->data);
}

static void job_end(create_job *j)
{
    if (j->deferred)
        uv_close((uv_handle_t *)&j->idle, job_closed);
    else
        job_free(j);
}

/* The client went away (or the server is stopping): the job ends now, or at the end of the
 * slice that is running. */
static void job_gone(void *arg)
{
    create_job *j = arg;
    j->gone = true;
    GW_LOG_INFO("api", NULL, NULL, "device request abandoned by its client",
                "entries=%zu hashed=%zu", json_array_size(j->entries), j->next);
    if (!j->ticking) {
        uv_idle_stop(&j->idle);
        job_end(j);
    }
}

/* 409 for ids that exist in the running configuration; false if answered. */
static bool check_new_ids(create_job *j)
{
    errs e = {json_array(), 0};
    size_t i;
    const json_t *it;
    char p[32];
    json_array_foreach(j->entries, i, it)
    {
        const char *id = json_string_value(json_object_get(it, "id"));
        if (gw_config_device(j->ctx->cfg, id)) {
            snprintf(p, sizeof(p), j->single ? "id" : "[%zu].id", i);
            err_add(&e, p, "device \"%s\" exists", id);
        }
    }
    if (e.n)
        reply_errs(j->r, 409, "exists", &e);
    json_decref(e.list);
    return e.n == 0;
}

static void create_finish(create_job *j)
{
    json_t *all = NULL;
    size_t n = json_array_size(j->entries);

    if (!devices_writable(j->r, j->ctx) || !check_new_ids(j) ||
        !(all = running_devices(j->r, j->ctx)))
        return;
    size_t n_cur = json_array_size(all);
    if (json_array_extend(all, j->entries) != 0) {
        gw_api_reply_error(j->r, 503, "out_of_memory", NULL, "out of memory");
        goto done;
    }
    path_map m = {n_cur, n, !j->single};
    if (!apply(j->r, j->ctx, all, &m))
        goto done;
    GW_LOG_INFO(
        "api",
        j->single ? json_string_value(json_object_get(json_array_get(j->entries, 0), "id")) : NULL,
        gw_api_peer(j->r), "devices added", "count=%zu token=%s", n, gw_api_token_name(j->r));
    if (j->single)
        gw_api_reply_json(j->r, 201, device_view(json_array_get(j->entries, 0)));
    else
        gw_api_reply_json(j->r, 201, json_pack("{s:I}", "created", (json_int_t)n));
done:
    json_decref(all);
}

/* Hashes up to limit secrets; false when hashing failed (answered). */
static bool hash_some(create_job *j, size_t limit)
{
    size_t n = json_array_size(j->entries);
    for (; j->next < n && limit; j->next++) {
        if (!j->hash[j->next])
            continue;
        limit--;
        if (hash_secret(json_array_get(j->entries, j->next)) != 0) {
            gw_api_reply_error(j->r, 503, "unavailable", NULL, "hashing a secret failed");
            return false;
        }
    }
    return true;
}

static void job_tick(uv_idle_t *h)
{
    create_job *j = h->data;
    j->ticking = true;
    bool more = hash_some(j, HASH_SLICE) && j->next < json_array_size(j->entries);
    if (more && !j->gone) {
        j->ticking = false;
        return; /* again next turn */
    }
    uv_idle_stop(&j->idle);
    if (!j->gone && j->next >= json_array_size(j->entries))
        create_finish(j);
    job_end(j);
}

/* Checks every entry (400 with all their paths), duplicates in the request and against the
 * running devices (409). 0, or -1 when answered. */
static int create_check(create_job *j, const json_t *body)
{
    errs e = {json_array(), 0};
    json_t *seen = json_object();
    char prefix[32], p[48];
    size_t n = j->single ? 1 : json_array_size(body);
    int rc = -1;

    if (!e.list || !seen || !(j->entries = json_array()) ||
        !(j->hash = calloc(n ? n : 1, sizeof(bool)))) {
        gw_api_reply_error(j->r, 503, "out_of_memory", NULL, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const json_t *o = j->single ? body : json_array_get(body, i);
        if (j->single)
            prefix[0] = 0;
        else
            snprintf(prefix, sizeof(prefix), "[%zu]", i);
        json_t *entry = check_entry(&e, j->ctx->cfg, o, prefix, &j->hash[i]);
        if (entry && json_array_append_new(j->entries, entry) != 0)
            err_add(&e, prefix, "out of memory");
    }
    if (e.n) {
        reply_errs(j->r, 400, "invalid", &e);
        goto done;
    }
    for (size_t i = 0; i < n; i++) { /* an id twice in the request */
        const char *id = json_string_value(json_object_get(json_array_get(j->entries, i), "id"));
        const json_t *prev = json_object_get(seen, id);
        if (prev) {
            snprintf(p, sizeof(p), "[%zu].id", i);
            err_add(&e, p, "duplicate device id \"%s\" (also [%" JSON_INTEGER_FORMAT "])", id,
                    json_integer_value(prev));
        } else {
            json_object_set_new(seen, id, json_integer((json_int_t)i));
        }
    }
    if (e.n) {
        reply_errs(j->r, 409, "exists", &e);
        goto done;
    }
    rc = check_new_ids(j) ? 0 : -1;
done:
    json_decref(seen);
    json_decref(e.list);
    return rc;
}

void gw_api_devices_create(gw_api_req *r, gw_api_ctx *ctx)
{
    const json_t *body = gw_api_body(r);
    create_job *j;

    if (!devices_writable(r, ctx))
        return;
    if (!json_is_object(body) && !json_is_array(body)) {
        gw_api_reply_error(r, 400, "invalid", "$", "the body must be a device or an array of them");
        return;
    }
    if (json_is_array(body) && json_array_size(body) == 0) {
        gw_api_reply_error(r, 400, "invalid", "$", "an empty array adds nothing");
        return;
    }
    if (!(j = calloc(1, sizeof(*j)))) {
        gw_api_reply_error(r, 503, "out_of_memory", NULL, "out of memory");
        return;
    }
    j->r = r;
    j->ctx = ctx;
    j->single = json_is_object(body);
    if (create_check(j, body) != 0 || !hash_some(j, SYNC_HASHES)) {
        job_free(j);
        return;
    }
    if (j->next >= json_array_size(j->entries)) { /* few secrets: answered now */
        create_finish(j);
        job_free(j);
        return;
    }
    /* the rest a slice per loop turn; the request waits */
    uv_idle_init(ctx->loop, &j->idle);
    j->idle.data = j;
    j->deferred = true;
    gw_api_defer(r, job_gone, j);
    uv_idle_start(&j->idle, job_tick);
}

/* ---- PATCH /api/devices/{id} ---- */
void gw_api_device_patch(gw_api_req *r, gw_api_ctx *ctx)
{
    const char *id = gw_api_param(r, "id"), *key;
    const json_t *body = gw_api_body(r), *v;
    errs e = {NULL, 0};
    json_t *entry = NULL, *all = NULL;
    bool hash = false;
    long at;

    if (!devices_writable(r, ctx))
        return;
    if ((at = id ? find_entry(ctx->cfg, id) : -1) < 0) {
        gw_api_reply_error(r, 404, "not_found", NULL, "no device \"%s\"", id ? id : "");
        return;
    }
    if (!json_is_object(body)) {
        gw_api_reply_error(r, 400, "invalid", "$", "the body must be an object (name, secret)");
        return;
    }
    if (!(all = running_devices(r, ctx)))
        return;
    if (!(e.list = json_array()) ||
        !(entry = json_copy(json_array_get(all, (size_t)at)))) { /* shallow: values shared */
        gw_api_reply_error(r, 503, "out_of_memory", NULL, "out of memory");
        goto done;
    }
    const gw_product *prod =
        gw_config_product(ctx->cfg, json_string_value(json_object_get(entry, "product")));
    json_object_foreach((json_t *)body, key, v)
    {
        if (!listed(patch_keys, key))
            err_add(&e, key, "unknown field (allowed: name, secret)");
        else if (!strcmp(key, "secret"))
            check_secret(&e, ctx->cfg, prod, v, "secret", &hash);
        else if (!json_is_string(v) && !json_is_null(v))
            err_add(&e, "name", "must be a string or null");
        else if (json_is_string(v) && strlen(json_string_value(v)) > 255)
            err_add(&e, "name", "at most 255 bytes");
    }
    if (e.n) {
        reply_errs(r, 400, "invalid", &e);
        goto done;
    }
    if ((v = json_object_get(body, "name")) && json_is_null(v))
        json_object_del(entry, "name");
    else if (v && json_object_set(entry, "name", (json_t *)v) != 0)
        goto oom;
    /* the secret the device already has (clear text that verifies, or the same text): kept as
     * stored, so the PATCH changes nothing and closes no session */
    const char *now = json_string_value(json_object_get(entry, "secret"));
    const char *given = json_string_value(json_object_get(body, "secret"));
    bool same = given && now &&
                (!strcmp(given, now) || (hash && gw_secret_check(now, given, strlen(given))));
    if (given && !same &&
        (json_object_set(entry, "secret", json_object_get(body, "secret")) != 0 ||
         (hash && hash_secret(entry)))) {
        gw_api_reply_error(r, 503, "unavailable", NULL, "hashing the secret failed");
        goto done;
    }
    if (json_array_set(all, (size_t)at, entry) != 0)
        goto oom;
    path_map m = {(size_t)at, 1, false};
    if (!apply(r, ctx, all, &m))
        goto done;
    GW_LOG_INFO("api", id, gw_api_peer(r), "device changed", "secret=%s token=%s",
                given && !same ? "changed" : "kept", gw_api_token_name(r));
    gw_api_reply_json(r, 200, device_view(entry));
    goto done;
oom:
    gw_api_reply_error(r, 503, "out_of_memory", NULL, "out of memory");
done:
    json_decref(all);
    json_decref(entry);
    json_decref(e.list);
}

/* ---- DELETE /api/devices/{id} ---- */
void gw_api_device_delete(gw_api_req *r, gw_api_ctx *ctx)
{
    const char *id = gw_api_param(r, "id");
    json_t *all = NULL;
    long at;

    if (!devices_writable(r, ctx))
        return;
    if ((at = id ? find_entry(ctx->cfg, id) : -1) < 0) {
        gw_api_reply_error(r, 404, "not_found", NULL, "no device \"%s\"", id ? id : "");
        return;
    }
    if (!(all = running_devices(r, ctx)))
        return;
    if (json_array_remove(all, (size_t)at) != 0) {
        gw_api_reply_error(r, 503, "out_of_memory", NULL, "out of memory");
        goto done;
    }
    path_map m = {0, 0, false};
    if (!apply(r, ctx, all, &m))
        goto done;
    GW_LOG_INFO("api", id, gw_api_peer(r), "device removed", "token=%s", gw_api_token_name(r));
    gw_api_reply_json(r, 204, NULL);
done:
    json_decref(all);
}

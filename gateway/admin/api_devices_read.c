/* api_devices_read.c: GET /api/devices (paged by id with an opaque cursor, over a sorted index of
 * the configuration's devices kept per configuration), GET /api/devices/{id} (state and the
 * latest value of every property) and GET /api/devices/{id}/events (history, newest first). Every
 * query is one index seek and a bounded number of steps on the API's own read-only connection. */
#include <ctype.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../../config/config.h"
#include "../../storage/store.h"
#include "../north/north.h"
#include "../util/alloc.h"
#include "../util/log.h"
#include "api_handlers.h"

#define LIMIT_DEFAULT 100
#define LIMIT_MAX     1000
/* What one request examines at most (each a database look-up of a few microseconds): a filter
 * that rarely matches answers fewer entries than limit, with a cursor to go on from. */
#define SCAN_MAX         5000 /* devices whose state is looked up (?online=) */
#define HISTORY_SCAN_MAX 2000 /* events (?kind= ?name= ?from= ?to=) */
#define ID_MAX           63   /* config ids: 1..63 characters of [A-Za-z0-9_.-] */

/* ---- The configuration's devices sorted by id, kept while ctx->cfg stays the same ---- */

static struct {
    /* the key: the configuration it was built for (a freed generation's address may come back
     * for a later one: the generation number tells them apart) */
    const gw_config *cfg;
    uint64_t generation;
    const gw_device *devices;
    size_t n;
    uint32_t *order; /* indexes into cfg->devices, by id (strcmp) */
} sorted;

static const gw_device *sort_base;

static int by_id(const void *a, const void *b)
{
    return strcmp(sort_base[*(const uint32_t *)a].id, sort_base[*(const uint32_t *)b].id);
}

/* The sorted index of cfg, rebuilt when the configuration changed (a reload, a device added or
 * removed over the API: each is a new generation). NULL on OOM. */
static const uint32_t *sorted_devices(const gw_config *cfg)
{
    if (sorted.order && sorted.cfg == cfg && sorted.generation == cfg->generation &&
        sorted.devices == cfg->devices && sorted.n == cfg->n_devices)
        return sorted.order;
    gw_free(GW_AREA_API, sorted.order);
    memset(&sorted, 0, sizeof(sorted));
    uint32_t *o = gw_malloc(GW_AREA_API, (cfg->n_devices ? cfg->n_devices : 1) * sizeof(*o));
    if (!o)
        return NULL;
    for (size_t i = 0; i < cfg->n_devices; i++)
        o[i] = (uint32_t)i;
    sort_base = cfg->devices;
    qsort(o, cfg->n_devices, sizeof(*o), by_id);
    sorted.cfg = cfg;
    sorted.generation = cfg->generation;
    sorted.devices = cfg->devices;
    sorted.n = cfg->n_devices;
    sorted.order = o;
    return o;
}

/* First position whose id is above after ("" for the first). */
static size_t sorted_after(const gw_config *cfg, const uint32_t *o, const char *after)
{
    size_t lo = 0, hi = cfg->n_devices;
    while (lo < hi) {
        size_t mid = lo + (hi - lo) / 2;
        if (strcmp(cfg->devices[o[mid]].id, after) <= 0)
            lo = mid + 1;
        else
            hi = mid;
    }
    return lo;
}

/* ---- Parameters ---- */

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static json_t *cursor_json(const char *s)
{
    char out[4 * (ID_MAX + 32) / 3 + 4];
    size_t n = strlen(s), o = 0;
    for (size_t i = 0; i < n && o + 4 < sizeof(out); i += 3) {
        uint32_t v = (uint32_t)(uint8_t)s[i] << 16;
        if (i + 1 < n)
            v |= (uint32_t)(uint8_t)s[i + 1] << 8;
        if (i + 2 < n)
            v |= (uint8_t)s[i + 2];
        out[o++] = b64url[v >> 18 & 63];
        out[o++] = b64url[v >> 12 & 63];
        if (i + 1 < n)
            out[o++] = b64url[v >> 6 & 63];
        if (i + 2 < n)
            out[o++] = b64url[v & 63];
    }
    out[o] = 0;
    return json_string(out);
}

/* Decodes a cursor into out (NUL-terminated); -1 if it is not base64url of 1..cap-1 bytes. */
static int cursor_decode(const char *s, char *out, size_t cap)
{
    uint32_t acc = 0;
    int bits = 0;
    size_t n = 0;
    for (; *s; s++) {
        const char *p = strchr(b64url, *s);
        if (!p || !*s)
            return -1;
        acc = acc << 6 | (uint32_t)(p - b64url);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            if (n + 1 >= cap)
                return -1;
            out[n++] = (char)(acc >> bits & 0xff);
        }
    }
    out[n] = 0;
    return n ? 0 : -1;
}

static bool id_ok(const char *s)
{
    size_t n = strlen(s);
    if (!n || n > ID_MAX)
        return false;
    for (; *s; s++)
        if (!isalnum((unsigned char)*s) && *s != '_' && *s != '.' && *s != '-')
            return false;
    return true;
}

static void bad_param(gw_api_req *r, const char *name, const char *why)
{
    gw_api_reply_error(r, 400, "bad_parameter", name, "%s: %s", name, why);
}

/* ?limit=: 1..LIMIT_MAX (default LIMIT_DEFAULT); -1 after answering 400. */
static int param_limit(gw_api_req *r)
{
    const char *v = gw_api_query(r, "limit");
    char *end;
    if (!v)
        return LIMIT_DEFAULT;
    long n = strtol(v, &end, 10);
    if (!*v || *end || n < 1 || n > LIMIT_MAX) {
        bad_param(r, "limit", "must be an integer from 1 to 1000");
        return -1;
    }
    return (int)n;
}

/* Epoch milliseconds, or ISO 8601 UTC / with an offset: 2026-12-07, 2026-12-07T06:30:00Z,
 * 2026-12-07T06:30:00.250+01:00. */
static int parse_time(const char *s, int64_t *out)
{
    char *end;
    if (!*s)
        return -1;
    if (strspn(s + (*s == '-'), "0123456789") == strlen(s + (*s == '-'))) { /* all digits: ms */
        long long v = strtoll(s, &end, 10);
        if (*end || s[*s == '-'] == 0)
            return -1;
        *out = v;
        return 0;
    }
    struct tm tm;
    memset(&tm, 0, sizeof(tm));
    int y, mo, d, h = 0, mi = 0, sec = 0, used = 0;
    if (sscanf(s, "%4d-%2d-%2d%n", &y, &mo, &d, &used) != 3 || used != 10)
        return -1;
    s += used;
    int64_t ms = 0, off = 0;
    if (*s == 'T' || *s == ' ') {
        if (sscanf(s + 1, "%2d:%2d:%2d%n", &h, &mi, &sec, &used) != 3 || used != 8)
            return -1;
        s += 1 + used;
        if (*s == '.') {
            int digits = 0;
            for (s++; isdigit((unsigned char)*s); s++, digits++)
                if (digits < 3)
                    ms = ms * 10 + (*s - '0');
            if (!digits)
                return -1;
            for (; digits < 3; digits++)
                ms *= 10;
        }
        if (*s == 'Z' || *s == 'z') {
            s++;
        } else if (*s == '+' || *s == '-') {
            int oh, om;
            if (sscanf(s + 1, "%2d:%2d%n", &oh, &om, &used) != 2 || used != 5 || oh > 23 || om > 59)
                return -1;
            off = (int64_t)(oh * 60 + om) * 60000 * (*s == '-' ? -1 : 1);
            s += 1 + used;
        }
    }
    if (*s || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 || sec > 60)
        return -1;
    tm.tm_year = y - 1900;
    tm.tm_mon = mo - 1;
    tm.tm_mday = d;
    tm.tm_hour = h;
    tm.tm_min = mi;
    tm.tm_sec = sec;
    *out = (int64_t)timegm(&tm) * 1000 + ms - off;
    return 0;
}

/* ?online=true|false|1|0: 1, 0, -1 when absent; -2 after answering 400. */
static int param_bool(gw_api_req *r, const char *name)
{
    const char *v = gw_api_query(r, name);
    if (!v)
        return -1;
    if (!strcmp(v, "true") || !strcmp(v, "1"))
        return 1;
    if (!strcmp(v, "false") || !strcmp(v, "0"))
        return 0;
    bad_param(r, name, "must be true or false");
    return -2;
}

static bool store_ready(gw_api_req *r, gw_api_ctx *ctx)
{
    if (ctx->reader)
        return true;
    gw_api_reply_error(r, 503, "unavailable", NULL, "the store's reader is not open");
    return false;
}

static void store_failed(gw_api_req *r)
{
    gw_api_reply_error(r, 503, "store_error", NULL, "the database could not be read");
}

/* A request that held the loop for long is worth a line (rate-limited per call site). */
static void took(gw_api_req *r, uint64_t t0)
{
    uint64_t us = (uv_hrtime() - t0) / 1000;
    if (us >= 20000)
        GW_LOG_WARN("api", NULL, NULL, "slow read", "path=%s took_us=%llu", gw_api_path(r),
                    (unsigned long long)us);
}

/* ---- Devices ---- */

static json_t *str_or_null(const char *s)
{
    return s && *s ? json_string(s) : json_null();
}

static json_t *device_json(const gw_device *d, const gw_device_state *st)
{
    json_t *o = json_object();
    json_object_set_new(o, "id", json_string(d->id));
    json_object_set_new(o, "name", str_or_null(d->name));
    json_object_set_new(o, "product", json_string(d->product->id));
    json_object_set_new(o, "online", json_boolean(st->online));
    json_object_set_new(o, "last_seen",
                        st->last_seen ? json_integer((json_int_t)st->last_seen) : json_null());
    json_object_set_new(o, "adapter", str_or_null(st->adapter));
    json_object_set_new(o, "peer", str_or_null(st->peer));
    if (st->known && !st->online)
        json_object_set_new(o, "offline_reason", str_or_null(st->offline_reason));
    return o;
}

typedef struct list_walk {
    const gw_config *cfg;
    const gw_product *product; /* filter, or NULL */
    const char *q;             /* filter: part of the id or the name (any case), or NULL */
    size_t limit;
    const gw_device **page; /* limit + 1: the one past the page tells that more follow */
    size_t n;
    size_t scanned;
    char last[ID_MAX + 1]; /* the last id examined */
} list_walk;

static bool matches(const list_walk *w, const gw_device *d)
{
    if (w->product && d->product != w->product)
        return false;
    if (w->q && !strcasestr(d->id, w->q) && !(d->name && strcasestr(d->name, w->q)))
        return false;
    return true;
}

static int walk_online(void *arg, const char *id)
{
    list_walk *w = arg;
    const gw_device *d = gw_config_device(w->cfg, id);
    w->scanned++;
    snprintf(w->last, sizeof(w->last), "%s", id);
    if (d && matches(w, d))
        w->page[w->n++] = d;
    return w->n > w->limit || w->scanned >= SCAN_MAX;
}

void gw_api_devices_list(gw_api_req *r, gw_api_ctx *ctx)
{
    const gw_config *cfg = ctx->cfg;
    uint64_t t0 = uv_hrtime();
    list_walk w;
    memset(&w, 0, sizeof(w));
    w.cfg = cfg;
    int limit = param_limit(r), online = param_bool(r, "online");
    if (limit < 0 || online == -2)
        return;
    w.limit = (size_t)limit;
    const char *v = gw_api_query(r, "product"), *cur = gw_api_query(r, "cursor");
    if (v && !(w.product = gw_config_product(cfg, v))) {
        bad_param(r, "product", "no such product");
        return;
    }
    if ((w.q = gw_api_query(r, "q")) && (!*w.q || strlen(w.q) > ID_MAX)) {
        bad_param(r, "q", "must be 1 to 63 characters");
        return;
    }
    char after[ID_MAX + 1] = "";
    if (cur && (cursor_decode(cur, after, sizeof(after)) || !id_ok(after))) {
        bad_param(r, "cursor", "not a cursor of this list");
        return;
    }
    if (!store_ready(r, ctx))
        return;
    const uint32_t *order = sorted_devices(cfg);
    if (!order || !(w.page = gw_malloc(GW_AREA_API, (w.limit + 1) * sizeof(*w.page)))) {
        gw_api_reply_error(r, 503, "no_memory", NULL, "out of memory");
        return;
    }

    bool more = false;
    if (online == 1) {
        /* the online devices come from the store, in id order (index device_state_online) */
        if (gw_store_reader_online(ctx->reader, after, SCAN_MAX, walk_online, &w) < 0)
            goto store_fail;
        more = w.n > w.limit || w.scanned >= SCAN_MAX;
    } else {
        for (size_t i = sorted_after(cfg, order, after); i < cfg->n_devices; i++) {
            const gw_device *d = &cfg->devices[order[i]];
            if (w.n > w.limit || w.scanned >= SCAN_MAX) {
                more = true;
                break;
            }
            w.scanned += online == 0; /* a state look-up each */
            snprintf(w.last, sizeof(w.last), "%s", d->id);
            if (!matches(&w, d))
                continue;
            if (online == 0) {
                gw_device_state st;
                if (gw_store_reader_device_state(ctx->reader, d->id, &st))
                    goto store_fail;
                if (st.online)
                    continue;
            }
            w.page[w.n++] = d;
        }
    }
    if (w.n > w.limit) { /* the one past the page: go on after the page's last */
        more = true;
        w.n = w.limit;
        snprintf(w.last, sizeof(w.last), "%s", w.page[w.n - 1]->id);
    }
    json_t *list = json_array();
    for (size_t i = 0; i < w.n; i++) {
        gw_device_state st;
        if (gw_store_reader_device_state(ctx->reader, w.page[i]->id, &st)) {
            json_decref(list);
            goto store_fail;
        }
        json_array_append_new(list, device_json(w.page[i], &st));
    }
    gw_free(GW_AREA_API, w.page);
    json_t *body = json_object();
    json_object_set_new(body, "devices", list);
    json_object_set_new(body, "next_cursor", more && w.last[0] ? cursor_json(w.last) : json_null());
    gw_api_reply_json(r, 200, body);
    took(r, t0);
    return;
store_fail:
    gw_free(GW_AREA_API, w.page);
    store_failed(r);
}

void gw_api_device_get(gw_api_req *r, gw_api_ctx *ctx)
{
    const char *id = gw_api_param(r, "id");
    const gw_device *d = id ? gw_config_device(ctx->cfg, id) : NULL;
    uint64_t t0 = uv_hrtime();
    gw_device_state st;
    json_t *props = NULL;
    if (!d) {
        gw_api_reply_error(r, 404, "not_found", NULL, "no device \"%s\"", id ? id : "");
        return;
    }
    if (!store_ready(r, ctx))
        return;
    if (gw_store_reader_device_state(ctx->reader, d->id, &st) ||
        gw_store_reader_properties(ctx->reader, d, NULL, &props)) {
        store_failed(r);
        return;
    }
    json_t *body = device_json(d, &st);
    json_t *out = json_object();
    /* every property of the thing model; null for those never reported */
    for (size_t i = 0; i < d->product->n_properties; i++) {
        const char *pid = d->product->properties[i].id;
        json_t *v = json_object_get(props, pid);
        if (v)
            json_object_set(out, pid, v);
        else
            json_object_set_new(out, pid, json_pack("{s:n,s:n}", "value", "time"));
    }
    json_decref(props);
    json_object_set_new(body, "properties", out);
    if (st.online_ts)
        json_object_set_new(body, "online_since", json_integer((json_int_t)st.online_ts));
    gw_api_reply_json(r, 200, body);
    took(r, t0);
}

/* ---- History ---- */

typedef struct events_page {
    json_t *list;
    int failed;
} events_page;

static int add_event(void *arg, const gw_outbox_row *row)
{
    events_page *p = arg;
    size_t cap = row->payload_len + 2048;
    char *buf = gw_malloc(GW_AREA_API, cap);
    size_t n = buf ? gw_north_payload(row, buf, cap) : 0;
    json_t *ev = n ? json_loadb(buf, n, 0, NULL) : NULL;
    gw_free(GW_AREA_API, buf);
    if (!ev) {
        p->failed = 1;
        return 1;
    }
    json_object_set_new(ev, "id", json_integer((json_int_t)row->id));
    json_array_append_new(p->list, ev);
    return 0;
}

static bool kind_ok(const char *k)
{
    for (int i = 0; i < GW_EV_COMMAND; i++) /* "command" rows are not events */
        if (!strcmp(k, gw_event_kind_name((gw_event_kind)i)))
            return true;
    return false;
}

void gw_api_device_events(gw_api_req *r, gw_api_ctx *ctx)
{
    const char *id = gw_api_param(r, "id"), *v;
    uint64_t t0 = uv_hrtime();
    gw_history_query q = {.from = INT64_MIN, .to = INT64_MAX};
    char cbuf[32], *end;
    int limit = param_limit(r);
    if (limit < 0)
        return;
    q.limit = (size_t)limit;
    q.scan_max = HISTORY_SCAN_MAX;
    if ((q.kind = gw_api_query(r, "kind")) && !kind_ok(q.kind)) {
        bad_param(r, "kind",
                  "must be one of property, event, online, offline, function_reply,"
                  " write_reply, read_reply");
        return;
    }
    if ((q.name = gw_api_query(r, "name")) && (!*q.name || strlen(q.name) > 63)) {
        bad_param(r, "name", "must be 1 to 63 characters");
        return;
    }
    if ((v = gw_api_query(r, "from")) && parse_time(v, &q.from)) {
        bad_param(r, "from", "must be epoch milliseconds or an ISO 8601 time");
        return;
    }
    if ((v = gw_api_query(r, "to")) && parse_time(v, &q.to)) {
        bad_param(r, "to", "must be epoch milliseconds or an ISO 8601 time");
        return;
    }
    if ((v = gw_api_query(r, "cursor"))) {
        if (cursor_decode(v, cbuf, sizeof(cbuf)) || !isdigit((unsigned char)cbuf[0]) ||
            (q.start_id = strtoll(cbuf, &end, 10)) <= 0 || *end) {
            bad_param(r, "cursor", "not a cursor of this list");
            return;
        }
    }
    if (!id || !id_ok(id)) {
        gw_api_reply_error(r, 404, "not_found", NULL, "no device \"%s\"", id ? id : "");
        return;
    }
    if (!store_ready(r, ctx))
        return;
    q.device = id;
    if (!gw_config_device(ctx->cfg, id)) { /* a removed device's stored events stay readable */
        gw_device_state st;
        if (gw_store_reader_device_state(ctx->reader, id, &st)) {
            store_failed(r);
            return;
        }
        if (!st.known) {
            gw_api_reply_error(r, 404, "not_found", NULL, "no device \"%s\"", id);
            return;
        }
    }
    events_page p = {json_array(), 0};
    int64_t next = 0;
    int n = gw_store_reader_history(ctx->reader, &q, add_event, &p, &next);
    if (n < 0 || p.failed) {
        json_decref(p.list);
        {
            store_failed(r);
            return;
        }
    }
    json_t *body = json_object();
    json_object_set_new(body, "events", p.list);
    snprintf(cbuf, sizeof(cbuf), "%lld", (long long)next);
    json_object_set_new(body, "next_cursor", next > 0 ? cursor_json(cbuf) : json_null());
    gw_api_reply_json(r, 200, body);
    took(r, t0);
}

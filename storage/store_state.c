/* store_state.c: the latest-state tables (device_state, property_state). The writer notes each
 * committed event's device and property values here and writes them state_lag_ms after the first
 * unwritten note (with a batch of events, or on their own when the writer is idle): one row per
 * device and property however many reports came in between; a value is the text of its member
 * in the report's payload, bound as it is. Online/offline changes are written
 * in their event's transaction. meta.state_mark is the newest event whose state is written; at
 * start-up, events past it (the gateway was killed) are replayed. */
#include "internal.h"

#include <errno.h>
#include <string.h>
#include <time.h>

#include "../gateway/util/alloc.h"
#include "../gateway/util/log.h"
#include "../gateway/util/metrics.h"

/* A (device, property) slot's hash: FNV-1a over the property id, seeded with the device, taken
 * as the id is scanned (note_props); never 0. */
#define HASH_SEED(dev)  (2166136261u ^ (uint32_t)(dev))
#define HASH_STEP(h, c) (((h) ^ (uint8_t)(c)) * 16777619u)

int gw__state_grow(gw_store *s)
{
    size_t ncap = s->props_cap ? s->props_cap * 2 : 1024;
    gw__prop_slot *n = gw_calloc(GW_AREA_STORE, ncap, sizeof(*n));
    if (!n)
        return GW_ENOMEM;
    for (size_t i = 0; i < s->props_cap; i++) {
        gw__prop_slot *o = &s->props[i];
        if (!o->dev)
            continue;
        size_t j = o->hash & (ncap - 1);
        while (n[j].dev)
            j = (j + 1) & (ncap - 1);
        n[j] = *o;
        n[j].next = GW__SLOT_NONE; /* positions change */
    }
    gw_free(GW_AREA_STORE, s->props);
    s->props = n;
    s->props_cap = ncap;
    return 0;
}

void gw__state_free(gw_store *s)
{
    for (size_t i = 0; s->props && i < s->props_cap; i++)
        gw_free(GW_AREA_STORE, s->props[i].text);
    gw_free(GW_AREA_STORE, s->props);
    s->props = NULL;
    s->props_cap = s->props_used = 0;
}

/* Copies key and value into the slot's own text. */
static int slot_set(gw__prop_slot *p, const char *key, size_t key_len, const char *val,
                    size_t val_len)
{
    if (key_len + val_len > p->cap) {
        size_t cap = (key_len + val_len + 15) & ~(size_t)15;
        char *t = gw_realloc(GW_AREA_STORE, p->text, cap);
        if (!t)
            return GW_ENOMEM;
        p->text = t;
        p->cap = (uint32_t)cap;
    }
    memcpy(p->text, key, key_len);
    memcpy(p->text + key_len, val, val_len);
    p->key_len = (uint32_t)key_len;
    p->val_len = (uint32_t)val_len;
    return 0;
}

/* Stores val as p's value (after its key) unless ts is older than the one it holds. */
static int slot_value(gw__prop_slot *p, const char *val, size_t val_len, int64_t ts)
{
    if (ts < p->ts)
        return 0;
    if (p->key_len + val_len > p->cap) {
        size_t cap = (p->key_len + val_len + 15) & ~(size_t)15;
        char *t = gw_realloc(GW_AREA_STORE, p->text, cap); /* keeps the key */
        if (!t)
            return GW_ENOMEM;
        p->text = t;
        p->cap = (uint32_t)cap;
    }
    memcpy(p->text + p->key_len, val, val_len);
    p->val_len = (uint32_t)val_len;
    p->ts = ts;
    return 0;
}

/* The slot of (dev, key) (h: its hash), taken (key copied, no value yet: skipped by the write) if
 * there is none; GW__SLOT_NONE when out of memory. The table has room (the caller grew it). */
static uint32_t find_slot(gw_store *s, uint32_t dev, const char *key, size_t key_len, uint32_t h)
{
    size_t j = h & (s->props_cap - 1);
    for (;; j = (j + 1) & (s->props_cap - 1)) {
        gw__prop_slot *p = &s->props[j];
        if (!p->dev) {
            if (slot_set(p, key, key_len, "", 0))
                return GW__SLOT_NONE;
            p->dev = dev + 1;
            p->hash = h;
            p->next = GW__SLOT_NONE;
            p->ts = INT64_MIN;
            s->props_used++;
            return (uint32_t)j;
        }
        if (p->hash == h && p->dev == dev + 1 && p->key_len == key_len &&
            memcmp(p->text, key, key_len) == 0)
            return (uint32_t)j;
    }
}

/* The end of the JSON value at v (a member of the gateway's own compact payload): the ',' or '}'
 * after it, or NULL if the text ends first. */
static const char *value_end(const char *v)
{
    int depth = 0;
    if (*v != '"' && *v != '{' && *v != '[') { /* a number, true, false or null */
        while (*v && *v != ',' && *v != '}')
            v++;
        return *v ? v : NULL;
    }
    for (;; v++) {
        switch (*v) {
        case 0:
            return NULL;
        case '"':
            for (v++;; v++) {
                v += strcspn(v, "\"\\");
                if (*v == '"')
                    break;
                if (!*v || !*++v) /* a backslash: skip the escaped byte */
                    return NULL;
            }
            break;
        case '{':
        case '[':
            depth++;
            break;
        case '}':
        case ']':
            if (depth-- == 0)
                return v;
            break;
        case ',':
            if (depth == 0)
                return v;
            break;
        }
    }
}

/* A property report's payload, {"id":value,...} as the gateway writes it (compact; property ids
 * need no escape): the latest value per (device, property) since the last write. Key and value
 * are copied into the slot (a few bytes, into a buffer the slot keeps until the write), so they
 * outlive the event. A member's slot is first guessed as the one that followed the previous
 * member's last time (no hash, no probe: reports mostly repeat their members' order). Anything
 * else than such an object stops the walk. */
static int note_props(gw_store *s, uint32_t dev, const char *payload, int64_t ts)
{
    const char *p = payload;
    uint32_t prev = GW__SLOT_NONE;
    if (*p++ != '{')
        return 0;
    while (*p == '"') {
        const char *key = ++p;
        uint32_t at = GW__SLOT_NONE;
        if (prev != GW__SLOT_NONE && s->props[prev].next != GW__SLOT_NONE) {
            const gw__prop_slot *g = &s->props[s->props[prev].next];
            /* strncmp: stops at the payload's NUL, which a slot's key never holds */
            if (g->dev == dev + 1 && strncmp(key, g->text, g->key_len) == 0 &&
                key[g->key_len] == '"') {
                at = s->props[prev].next;
                p = key + g->key_len;
            }
        }
        if (at == GW__SLOT_NONE) {
            uint32_t h = HASH_SEED(dev);
            for (; *p && *p != '"' && *p != '\\'; p++)
                h = HASH_STEP(h, *p);
            if (*p != '"')
                return 0;
            if ((s->props_used + 1) * 2 > s->props_cap) {
                if (gw__state_grow(s))
                    return GW_ENOMEM;
                prev = GW__SLOT_NONE; /* slots moved */
            }
            at = find_slot(s, dev, key, (size_t)(p - key), h ? h : 1);
            if (at == GW__SLOT_NONE)
                return GW_ENOMEM;
        }
        if (p[1] != ':')
            return 0;
        const char *val = p + 2, *end = value_end(val);
        if (!end || end == val)
            return 0;
        if (slot_value(&s->props[at], val, (size_t)(end - val), ts))
            return GW_ENOMEM;
        if (prev != GW__SLOT_NONE)
            s->props[prev].next = at;
        prev = at;
        p = end + (*end == ',');
    }
    return 0;
}

/* Lists dev and holds its generation until the state is written. */
static gw__dev_touch *hold_dev(gw_store *s, const gw_device *dev)
{
    gw__dev_touch *t = &s->touch[dev->index];
    if (!t->listed) {
        t->listed = 1;
        s->touched[s->n_touched++] = dev->index;
    }
    if (t->dev != dev) {
        gw_config_retain(dev->gen);
        if (t->dev)
            gw_config_release(t->dev->gen);
        t->dev = dev;
    }
    return t;
}

static gw__dev_touch *touch_dev(gw_store *s, const gw_device *dev, int64_t seen)
{
    gw__dev_touch *t = hold_dev(s, dev);
    if (!t->touched) {
        t->touched = 1;
        t->online = -1;
        t->last_seen = 0;
        t->reason = NULL;
    }
    if (seen > t->last_seen)
        t->last_seen = seen;
    return t;
}

int gw__state_note(gw_store *s, const gw_event *ev, int64_t id)
{
    if (!s->state_since) {
        s->state_since = gw_now_ms();
        __atomic_store_n(&s->state_pending, 1, __ATOMIC_RELEASE);
    }
    s->state_id = id;
    s->state_events++;
    gw_metric_inc(GW_M_STORE_STATE_UNWRITTEN);
    hold_dev(s, ev->dev);
    if (!ev->gateway_made) {
        gw__dev_touch *t = touch_dev(s, ev->dev, ev->rx_ts);
        if (ev->kind == GW_EV_ONLINE || ev->kind == GW_EV_OFFLINE) {
            t->online = ev->kind == GW_EV_ONLINE;
            t->reason = ev->kind == GW_EV_OFFLINE ? ev->name : NULL;
            /* written in this event's transaction: the restart pass trusts device_state.online,
             * and reason points into the event (valid while its batch is being committed) */
            s->state_urgent = true;
        }
    }
    if (ev->kind == GW_EV_PROPERTY && ev->payload &&
        note_props(s, ev->dev->index, ev->payload, ev->ts))
        return -SQLITE_NOMEM;
    return 0;
}

bool gw__state_due(gw_store *s)
{
    if (!s->state_since)
        return false;
    if (s->state_urgent || gw_now_ms() - s->state_since >= (int64_t)s->cfg->store.state_lag_ms)
        return true;
    pthread_mutex_lock(&s->mu);
    bool asked = s->state_req;
    pthread_mutex_unlock(&s->mu);
    return asked;
}

static int write_props(gw_store *s)
{
    for (size_t i = 0; i < s->props_cap; i++) {
        gw__prop_slot *p = &s->props[i];
        if (!p->dev || !p->val_len) /* empty, or taken by a payload that broke off */
            continue;
        sqlite3_stmt *st = s->up_prop;
        sqlite3_bind_text(st, 1, s->touch[p->dev - 1].dev->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, p->text, (int)p->key_len, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, p->text + p->key_len, (int)p->val_len, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, p->ts);
        int rc = gw__store_step(st);
        if (rc)
            return rc;
    }
    return 0;
}

static int write_devices(gw_store *s)
{
    for (size_t i = 0; i < s->n_touched; i++) {
        gw__dev_touch *t = &s->touch[s->touched[i]];
        const gw_device *d = t->dev;
        sqlite3_stmt *st;
        if (!t->touched)
            continue;
        if (t->online >= 0) {
            st = s->up_state;
            sqlite3_bind_text(st, 1, d->id, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, d->product->id, -1, SQLITE_STATIC);
            sqlite3_bind_int(st, 3, t->online);
            sqlite3_bind_int64(st, 4, t->last_seen);
            if (t->reason)
                sqlite3_bind_text(st, 5, t->reason, -1, SQLITE_STATIC);
            else
                sqlite3_bind_null(st, 5);
        } else {
            st = s->touch_state;
            sqlite3_bind_text(st, 1, d->id, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 2, t->last_seen);
        }
        int rc = gw__store_step(st);
        if (rc)
            return rc;
    }
    return 0;
}

int gw__state_write(gw_store *s)
{
    int rc = write_props(s);
    if (!rc)
        rc = write_devices(s);
    if (!rc)
        rc = gw__history_write(s); /* the heads as of the mark */
    if (!rc) {
        sqlite3_bind_int64(s->set_mark, 1, s->state_id);
        rc = gw__store_step(s->set_mark);
    }
    if (!rc)
        s->state_written = true;
    return rc;
}

void gw__state_clear(gw_store *s)
{
    for (size_t i = 0; i < s->props_cap && s->props_used; i++) {
        gw__prop_slot *p = &s->props[i];
        if (!p->dev)
            continue;
        p->dev = 0;
        /* memory as the notes of one lag window (a text is reused within it, not across) */
        gw_free(GW_AREA_STORE, p->text);
        p->text = NULL;
        p->cap = 0;
        s->props_used--;
    }
    for (size_t i = 0; i < s->n_touched; i++) {
        gw__dev_touch *t = &s->touch[s->touched[i]];
        t->touched = t->listed = 0;
        gw_config_release(t->dev->gen);
        t->dev = NULL;
    }
    s->n_touched = 0;
    s->state_since = 0;
    s->state_urgent = false;
    gw_metric_add(GW_M_STORE_STATE_UNWRITTEN, -s->state_events);
    s->state_events = 0;
    __atomic_store_n(&s->state_pending, 0, __ATOMIC_RELEASE);
}

int gw__state_commit(gw_store *s)
{
    int rc = gw__store_step(s->begin);
    if (!rc)
        rc = gw__state_write(s);
    if (!rc)
        rc = gw__store_step(s->commit);
    if (rc)
        gw__store_rollback(s, rc);
    gw__state_after(s, rc == 0);
    return rc;
}

void gw__state_after(gw_store *s, bool committed)
{
    if (committed && s->state_written) {
        gw__history_written(s);
        gw__state_clear(s);
        gw_metric_inc(GW_M_STORE_STATE_WRITES);
        pthread_mutex_lock(&s->mu);
        s->state_gen++;
        s->state_req = false;
        pthread_mutex_unlock(&s->mu);
        pthread_cond_broadcast(&s->state_cond);
    }
    s->state_written = false; /* rolled back: the notes stay, and the retry writes them again */
}

int gw_store_sync_state(gw_store *s, unsigned timeout_ms)
{
    if (!__atomic_load_n(&s->state_pending, __ATOMIC_ACQUIRE))
        return 0;
    struct timespec at = gw__store_deadline(timeout_ms);
    int rc = 0;
    pthread_mutex_lock(&s->mu);
    uint64_t gen = s->state_gen;
    s->state_req = true;
    pthread_cond_signal(&s->cond);
    while (s->state_gen == gen && __atomic_load_n(&s->state_pending, __ATOMIC_ACQUIRE) && !rc)
        if (pthread_cond_timedwait(&s->state_cond, &s->mu, &at) == ETIMEDOUT)
            rc = -ETIMEDOUT;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

/* ---- replay at start-up ---- */

static int64_t read_mark(gw_store *s)
{
    sqlite3_stmt *st = NULL;
    int64_t mark = -1;
    if (sqlite3_prepare_v2(s->db, "SELECT value FROM meta WHERE key = 'state_mark'", -1, &st,
                           NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        mark = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return mark;
}

/* Events committed after the last state write (the gateway was killed in between) are noted again
 * and their state written, in one transaction. Reports and events move last_seen; property
 * reports' values go into property_state as when they arrived. */
int gw__state_replay(gw_store *s, gw_error *err)
{
    int64_t mark = read_mark(s);
    sqlite3_stmt *st = NULL;
    int rc = 0;
    int64_t n = 0, last = mark;
    if (mark < 0)
        return gw_error_set(err, GW_ESTORE, "database has no state mark (meta table)");
    if (sqlite3_prepare_v2(s->db,
                           "SELECT id, device, kind, ts, rx_ts, payload FROM events WHERE id > ?1"
                           " AND kind IN ('property', 'event') ORDER BY id",
                           -1, &st, NULL) != SQLITE_OK)
        return gw_error_set(err, GW_ESTORE, "sqlite: %s", sqlite3_errmsg(s->db));
    sqlite3_bind_int64(st, 1, mark);
    while (!rc && sqlite3_step(st) == SQLITE_ROW) {
        const char *dev_id = (const char *)sqlite3_column_text(st, 1);
        const gw_device *dev = dev_id ? gw_config_device(s->cfg, dev_id) : NULL;
        last = sqlite3_column_int64(st, 0);
        if (!dev)
            continue; /* no longer configured */
        gw_event ev = {.kind = strcmp((const char *)sqlite3_column_text(st, 2), "property") == 0
                                   ? GW_EV_PROPERTY
                                   : GW_EV_EVENT,
                       .dev = dev,
                       .ts = sqlite3_column_int64(st, 3),
                       .rx_ts = sqlite3_column_int64(st, 4)};
        ev.payload = (char *)sqlite3_column_text(st, 5); /* read only */
        rc = gw__state_note(s, &ev, last);
        n++;
    }
    sqlite3_finalize(st);
    if (!rc && s->state_since) {
        s->state_id = last;
        rc = gw__state_commit(s);
    }
    gw__state_clear(s);
    if (rc)
        return gw_error_set(err, GW_ESTORE, "replaying the state of %lld events: %s", (long long)n,
                            sqlite3_errmsg(s->db));
    if (n) {
        gw_metric_add(GW_M_STORE_STATE_REPLAYED, n);
        GW_LOG_INFO("store", NULL, NULL, "device and property state replayed",
                    "events=%lld after_id=%lld", (long long)n, (long long)mark);
    }
    return 0;
}

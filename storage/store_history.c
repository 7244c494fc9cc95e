/* store_history.c: each device's history as a chain, the layout behind "a device's latest events":
 * every events row carries prev, the id of the same device's previous event; each device's newest
 * event id as of the state mark is device_state.last_event (written by the device state's own
 * statements through gw_history_head(), so it costs no statement of its own) or, for a device
 * without a state row, history_head. The writer keeps the heads in memory by device id (seeded
 * from the database on first use) and undoes them when a batch rolls back. An index on
 * events(device) would cost ingest a B-tree leaf write per device per batch (~3x slower with 10k
 * devices); the chain costs a column. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

#include "../gateway/util/alloc.h"

static uint32_t hash_id(const char *k)
{
    uint32_t h = 2166136261u;
    for (; *k; k++)
        h = (h ^ (uint8_t)*k) * 16777619u;
    return h ? h : 1;
}

/* The index: first size, then doubling, every head placed again (heads do not move). */
static int grow_index(gw__history *h)
{
    size_t ncap = h->cap ? h->cap * 2 : 1024;
    uint32_t *n = gw_calloc(GW_AREA_STORE, ncap, sizeof(*n));
    if (!n)
        return GW_ENOMEM;
    for (size_t i = 0; i < h->used; i++) {
        size_t j = h->heads[i].hash & (ncap - 1);
        while (n[j])
            j = (j + 1) & (ncap - 1);
        n[j] = (uint32_t)i + 1;
    }
    gw_free(GW_AREA_STORE, h->index);
    h->index = n;
    h->cap = ncap;
    return 0;
}

/* The heads (and the dirty list, which holds at most one entry per head): first size, then
 * doubling. The dirty list and the undo log hold head positions, which stay valid. */
static int grow_heads(gw__history *h)
{
    size_t ncap = h->heads_cap ? h->heads_cap * 2 : 512;
    uint32_t *d = gw_realloc(GW_AREA_STORE, h->dirty, ncap * sizeof(*d));
    if (!d)
        return GW_ENOMEM;
    h->dirty = d; /* first: n_dirty <= used <= heads_cap always fits */
    gw__head *n = gw_realloc(GW_AREA_STORE, h->heads, ncap * sizeof(*n));
    if (!n)
        return GW_ENOMEM;
    h->heads = n;
    h->heads_cap = ncap;
    return 0;
}

/* A block of device ids (NUL-terminated, back to back), freed at close. */
typedef struct gw__idblock {
    struct gw__idblock *next;
    char ids[];
} gw__idblock;
#define ID_BLOCK 16384

/* A copy of device in the id blocks, NULL when out of memory. */
static const char *keep_id(gw__history *h, const char *device)
{
    size_t len = strlen(device) + 1;
    if (len > h->ids_left) {
        size_t room = len > ID_BLOCK - sizeof(gw__idblock) ? len : ID_BLOCK - sizeof(gw__idblock);
        gw__idblock *b = gw_malloc(GW_AREA_STORE, sizeof(*b) + room);
        if (!b)
            return NULL;
        b->next = h->ids;
        h->ids = b;
        h->ids_next = b->ids;
        h->ids_left = room;
    }
    char *id = h->ids_next;
    memcpy(id, device, len);
    h->ids_next += len;
    h->ids_left -= len;
    return id;
}

static gw__head *find(gw__history *h, const char *device, uint32_t hash, size_t *pos)
{
    size_t j = hash & (h->cap - 1);
    for (;; j = (j + 1) & (h->cap - 1)) {
        *pos = j;
        if (!h->index[j])
            return NULL;
        gw__head *e = &h->heads[h->index[j] - 1];
        if (e->hash == hash && strcmp(e->device, device) == 0)
            return e;
    }
}

/* gw_history_head(device): its newest event id, NULL when the writer has not seen it since the
 * start (the row keeps what it has). The state row takes the head: no history_head write. */
static void sql_head(sqlite3_context *ctx, int argc, sqlite3_value **argv)
{
    gw__history *h = sqlite3_user_data(ctx);
    const char *device = (const char *)sqlite3_value_text(argv[0]);
    size_t pos;
    gw__head *e = device && argc == 1 ? find(h, device, hash_id(device), &pos) : NULL;
    if (!e || !e->last) {
        sqlite3_result_null(ctx);
        return;
    }
    e->dirty = false; /* a rollback keeps the notes: the retry writes it again */
    sqlite3_result_int64(ctx, e->last);
}

int gw__history_open(gw_store *s, gw_error *err)
{
    gw__history *h = &s->hist;
    /* heads past the mark: events a killed gateway committed after its last state write */
    static const char *const catch_up =
        "INSERT INTO history_head(device, last_id) SELECT device, MAX(id) FROM events"
        " WHERE id > (SELECT value FROM meta WHERE key = 'state_mark') GROUP BY device"
        " ON CONFLICT(device) DO UPDATE SET last_id = MAX(last_id, excluded.last_id)";
    char *msg = NULL;
    if (grow_index(h) || grow_heads(h))
        return gw_error_set(err, GW_ENOMEM, "out of memory");
    if (sqlite3_create_function(s->db, "gw_history_head", 1, SQLITE_UTF8, h, sql_head, NULL,
                                NULL) != SQLITE_OK)
        return gw_error_set(err, GW_ESTORE, "sqlite: %s", sqlite3_errmsg(s->db));
    if (sqlite3_exec(s->db, catch_up, NULL, NULL, &msg) != SQLITE_OK) {
        gw_error_set(err, GW_ESTORE, "sqlite: history heads: %s", msg ? msg : "error");
        sqlite3_free(msg);
        return GW_ESTORE;
    }
    if (sqlite3_prepare_v3(s->db,
                           "SELECT MAX(COALESCE((SELECT last_event FROM device_state"
                           " WHERE device = ?1), 0), COALESCE((SELECT last_id FROM history_head"
                           " WHERE device = ?1), 0))",
                           -1, SQLITE_PREPARE_PERSISTENT, &h->get, NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(s->db,
                           "INSERT INTO history_head(device, last_id) VALUES(?1, ?2)"
                           " ON CONFLICT(device) DO UPDATE SET last_id = excluded.last_id",
                           -1, SQLITE_PREPARE_PERSISTENT, &h->put, NULL) != SQLITE_OK)
        return gw_error_set(err, GW_ESTORE, "sqlite prepare: %s", sqlite3_errmsg(s->db));
    return 0;
}

void gw__history_close(gw_store *s)
{
    gw__history *h = &s->hist;
    sqlite3_finalize(h->get);
    sqlite3_finalize(h->put);
    for (gw__idblock *b = h->ids, *next; b; b = next) {
        next = b->next;
        gw_free(GW_AREA_STORE, b);
    }
    gw_free(GW_AREA_STORE, h->heads);
    gw_free(GW_AREA_STORE, h->index);
    gw_free(GW_AREA_STORE, h->dirty);
    gw_free(GW_AREA_STORE, h->undo);
    memset(h, 0, sizeof(*h));
}

int gw__history_prev(gw_store *s, const char *device, int64_t *prev)
{
    gw__history *h = &s->hist;
    if (h->used == h->heads_cap && grow_heads(h))
        return -SQLITE_NOMEM;
    if ((h->used + 1) * 2 > h->cap && grow_index(h))
        return -SQLITE_NOMEM;
    if (h->n_undo == h->undo_cap) { /* one entry per event of the transaction */
        size_t ncap = h->undo_cap ? h->undo_cap * 2 : 1024;
        void *u = gw_realloc(GW_AREA_STORE, h->undo, ncap * sizeof(*h->undo));
        if (!u)
            return -SQLITE_NOMEM;
        h->undo = u;
        h->undo_cap = ncap;
    }
    uint32_t hash = hash_id(device);
    size_t j;
    gw__head *e = find(h, device, hash, &j);
    if (!e) { /* first event of this device since the start: its head as stored */
        int64_t last = 0;
        sqlite3_bind_text(h->get, 1, device, -1, SQLITE_STATIC);
        int rc = sqlite3_step(h->get);
        if (rc == SQLITE_ROW)
            last = sqlite3_column_int64(h->get, 0);
        sqlite3_reset(h->get);
        if (rc != SQLITE_ROW && rc != SQLITE_DONE)
            return -rc;
        const char *id = keep_id(h, device);
        if (!id)
            return -SQLITE_NOMEM;
        e = &h->heads[h->used];
        e->device = id;
        e->hash = hash;
        e->last = last;
        e->dirty = e->listed = false;
        h->index[j] = (uint32_t)++h->used;
    }
    h->cur = (uint32_t)(e - h->heads);
    *prev = e->last;
    return 0;
}

void gw__history_linked(gw_store *s, int64_t id)
{
    gw__history *h = &s->hist;
    gw__head *e = &h->heads[h->cur];
    h->undo[h->n_undo].head = h->cur; /* room made by gw__history_prev */
    h->undo[h->n_undo].last = e->last;
    h->n_undo++;
    e->last = id;
    e->dirty = true;
    if (!e->listed) {
        e->listed = true;
        h->dirty[h->n_dirty++] = h->cur;
    }
}

int gw__history_write(gw_store *s)
{
    gw__history *h = &s->hist;
    for (size_t k = 0; k < h->n_dirty; k++) {
        gw__head *e = &h->heads[h->dirty[k]];
        if (!e->dirty)
            continue; /* device_state took it */
        sqlite3_bind_text(h->put, 1, e->device, -1, SQLITE_STATIC);
        sqlite3_bind_int64(h->put, 2, e->last);
        int rc = gw__store_step(h->put);
        if (rc)
            return rc;
    }
    return 0;
}

void gw__history_written(gw_store *s)
{
    gw__history *h = &s->hist;
    for (size_t k = 0; k < h->n_dirty; k++)
        h->heads[h->dirty[k]].dirty = h->heads[h->dirty[k]].listed = false;
    h->n_dirty = 0;
}

void gw__history_after(gw_store *s, bool committed)
{
    gw__history *h = &s->hist;
    while (!committed && h->n_undo) { /* newest first: each device gets its oldest value back */
        h->n_undo--;
        h->heads[h->undo[h->n_undo].head].last = h->undo[h->n_undo].last;
    }
    h->n_undo = 0;
}

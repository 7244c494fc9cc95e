/* store_reader.c: a read-only connection for one thread: the north thread's (the outbox in id
 * order, joined with its events, and the latest stored property values) and the management API's
 * (device state, online devices, one device's history). WAL lets it read while the writer
 * commits; it never writes. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../gateway/util/alloc.h"

struct gw_store_reader {
    sqlite3 *db;
    sqlite3_stmt *outbox, *props;
    /* the API's, prepared at first use (north never pays for them) */
    sqlite3_stmt *state, *online_ev, *online, *head, *tail, *history;
};

int gw_store_reader_open(gw_store_reader **out, const gw_config *cfg, gw_error *err)
{
    gw_store_reader *r = gw_calloc(GW_AREA_STORE, 1, sizeof(*r));
    *out = NULL;
    if (!r)
        return gw_error_set(err, GW_ENOMEM, "out of memory");
    int rc =
        sqlite3_open_v2(cfg->store.path, &r->db, SQLITE_OPEN_READONLY | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK)
        goto fail;
    sqlite3_busy_timeout(r->db, 5000);
    /* it reads the newest rows (the outbox's head) and a device's property_state: a small cache */
    sqlite3_exec(r->db, "PRAGMA cache_size=-1024", NULL, NULL, NULL);
    if (sqlite3_prepare_v3(r->db,
                           "SELECT e.id, e.ts, e.device, e.product, e.kind, e.name, e.msg_id,"
                           " e.payload FROM outbox o JOIN events e ON e.id = o.event_id"
                           " WHERE o.event_id > ?1 ORDER BY o.event_id LIMIT ?2",
                           -1, SQLITE_PREPARE_PERSISTENT, &r->outbox, NULL) != SQLITE_OK ||
        sqlite3_prepare_v3(r->db,
                           "SELECT property, value, ts FROM property_state WHERE device = ?1", -1,
                           SQLITE_PREPARE_PERSISTENT, &r->props, NULL) != SQLITE_OK)
        goto fail;
    *out = r;
    return 0;
fail:
    gw_error_set(err, GW_ESTORE, "cannot open %s for reading: %s", cfg->store.path,
                 r->db ? sqlite3_errmsg(r->db) : sqlite3_errstr(rc));
    gw_store_reader_close(r);
    return GW_ESTORE;
}

void gw_store_reader_close(gw_store_reader *r)
{
    if (!r)
        return;
    sqlite3_finalize(r->outbox);
    sqlite3_finalize(r->props);
    sqlite3_finalize(r->state);
    sqlite3_finalize(r->online_ev);
    sqlite3_finalize(r->online);
    sqlite3_finalize(r->head);
    sqlite3_finalize(r->tail);
    sqlite3_finalize(r->history);
    sqlite3_close(r->db);
    gw_free(GW_AREA_STORE, r);
}

int gw_store_reader_outbox(gw_store_reader *r, int64_t after_id, size_t limit,
                           int (*fn)(void *arg, const gw_outbox_row *row), void *arg)
{
    sqlite3_stmt *st = r->outbox;
    int n = 0, rc;
    sqlite3_bind_int64(st, 1, after_id);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        gw_outbox_row row = {
            .id = sqlite3_column_int64(st, 0),
            .ts = sqlite3_column_int64(st, 1),
            .device = (const char *)sqlite3_column_text(st, 2),
            .product = (const char *)sqlite3_column_text(st, 3),
            .kind = (const char *)sqlite3_column_text(st, 4),
            .name = (const char *)sqlite3_column_text(st, 5),
            .msg_id = (const char *)sqlite3_column_text(st, 6),
            .payload = (const char *)sqlite3_column_text(st, 7),
        };
        row.payload_len = (size_t)sqlite3_column_bytes(st, 7);
        n++;
        if (!row.device || !row.product || !row.kind || fn(arg, &row) != 0)
            break;
    }
    sqlite3_reset(st); /* ends the read transaction: the WAL can checkpoint past it */
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return GW_ESTORE;
    return n;
}

int gw_store_reader_properties(gw_store_reader *r, const gw_device *dev, const json_t *names,
                               json_t **out)
{
    sqlite3_stmt *st = r->props;
    json_t *obj = json_object();
    int rc;
    *out = NULL;
    if (!obj)
        return GW_ENOMEM;
    sqlite3_bind_text(st, 1, dev->id, -1, SQLITE_STATIC);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *prop = (const char *)sqlite3_column_text(st, 0);
        const char *text = (const char *)sqlite3_column_text(st, 1);
        bool wanted = !names;
        for (size_t i = 0; names && i < json_array_size(names) && !wanted; i++)
            wanted = prop && strcmp(json_string_value(json_array_get(names, i)) ?: "", prop) == 0;
        if (!wanted || !prop || !text)
            continue;
        json_t *v = json_loads(text, JSON_DECODE_ANY, NULL);
        if (!v)
            continue;
        json_object_set_new(
            obj, prop,
            json_pack("{s:o,s:I}", "value", v, "time", (json_int_t)sqlite3_column_int64(st, 2)));
    }
    sqlite3_reset(st);
    if (rc != SQLITE_DONE) {
        json_decref(obj);
        return GW_ESTORE;
    }
    *out = obj;
    return 0;
}

static sqlite3_stmt *prepared(gw_store_reader *r, sqlite3_stmt **st, const char *sql)
{
    if (!*st &&
        sqlite3_prepare_v3(r->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK)
        *st = NULL;
    return *st;
}

static void copy_col(char *dst, size_t cap, sqlite3_stmt *st, int col)
{
    const char *v = (const char *)sqlite3_column_text(st, col);
    snprintf(dst, cap, "%s", v ? v : "");
}

/* adapter and peer from an online event's payload {"adapter":"mqtt","peer":"..."} */
static void online_payload(gw_device_state *out, const char *text)
{
    json_t *o = text ? json_loads(text, 0, NULL) : NULL;
    snprintf(out->adapter, sizeof(out->adapter), "%s",
             json_string_value(json_object_get(o, "adapter")) ?: "");
    snprintf(out->peer, sizeof(out->peer), "%s",
             json_string_value(json_object_get(o, "peer")) ?: "");
    json_decref(o);
}

int gw_store_reader_device_state(gw_store_reader *r, const char *device, gw_device_state *out)
{
    int rc;
    memset(out, 0, sizeof(*out));
    sqlite3_stmt *st = prepared(r, &r->state,
                                "SELECT online, last_seen, last_offline_reason FROM device_state"
                                " WHERE device = ?1");
    sqlite3_stmt *ev = prepared(r, &r->online_ev,
                                "SELECT payload, ts FROM events WHERE device = ?1 AND"
                                " kind = 'online' ORDER BY id DESC LIMIT 1");
    if (!st || !ev)
        return GW_ESTORE;
    sqlite3_bind_text(st, 1, device, -1, SQLITE_STATIC);
    if ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        out->known = true;
        out->online = sqlite3_column_int(st, 0) != 0;
        out->last_seen = sqlite3_column_int64(st, 1);
        copy_col(out->offline_reason, sizeof(out->offline_reason), st, 2);
    }
    sqlite3_reset(st);
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return GW_ESTORE;
    if (!out->known)
        return 0;
    sqlite3_bind_text(ev, 1, device, -1, SQLITE_STATIC);
    if ((rc = sqlite3_step(ev)) == SQLITE_ROW) {
        online_payload(out, (const char *)sqlite3_column_text(ev, 0));
        out->online_ts = sqlite3_column_int64(ev, 1);
    }
    sqlite3_reset(ev);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : GW_ESTORE;
}

int gw_store_reader_online(gw_store_reader *r, const char *after, size_t limit,
                           int (*fn)(void *arg, const char *device), void *arg)
{
    sqlite3_stmt *st = prepared(r, &r->online,
                                "SELECT device FROM device_state WHERE online = 1 AND device > ?1"
                                " ORDER BY device LIMIT ?2");
    int n = 0, rc;
    if (!st)
        return GW_ESTORE;
    sqlite3_bind_text(st, 1, after ? after : "", -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, (sqlite3_int64)limit);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *dev = (const char *)sqlite3_column_text(st, 0);
        if (!dev)
            continue;
        n++;
        if (fn(arg, dev) != 0)
            break;
    }
    sqlite3_reset(st);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? n : GW_ESTORE;
}

/* The device's newest event id (0: none): its head as of the state mark (device_state.last_event
 * or history_head, whichever is newer), unless an event came after the mark (those are scanned,
 * newest first: at most state_lag_ms of ingest). One statement: one snapshot for both. */
static int newest_event(gw_store_reader *r, const char *device, int64_t *out)
{
    sqlite3_stmt *h = prepared(r, &r->head,
                               "SELECT (SELECT value FROM meta WHERE key = 'state_mark'),"
                               " MAX(COALESCE((SELECT last_event FROM device_state"
                               " WHERE device = ?1), 0), COALESCE((SELECT last_id FROM"
                               " history_head WHERE device = ?1), 0))");
    sqlite3_stmt *t = prepared(r, &r->tail,
                               "SELECT id FROM events WHERE id > ?1 AND device = ?2"
                               " ORDER BY id DESC LIMIT 1");
    int64_t mark = 0;
    int rc;
    *out = 0;
    if (!h || !t)
        return GW_ESTORE;
    sqlite3_bind_text(h, 1, device, -1, SQLITE_STATIC);
    if ((rc = sqlite3_step(h)) == SQLITE_ROW) {
        mark = sqlite3_column_int64(h, 0);
        *out = sqlite3_column_int64(h, 1);
    }
    sqlite3_reset(h);
    if (rc != SQLITE_ROW)
        return GW_ESTORE;
    sqlite3_bind_int64(t, 1, mark);
    sqlite3_bind_text(t, 2, device, -1, SQLITE_STATIC);
    if ((rc = sqlite3_step(t)) == SQLITE_ROW)
        *out = sqlite3_column_int64(t, 0);
    sqlite3_reset(t);
    return rc == SQLITE_ROW || rc == SQLITE_DONE ? 0 : GW_ESTORE;
}

int gw_store_reader_history(gw_store_reader *r, const gw_history_query *q,
                            int (*fn)(void *arg, const gw_outbox_row *row), void *arg,
                            int64_t *next)
{
    /* the filters are applied here, on a walk of at most scan_max rows, so that a filter that
     * rarely matches cannot make one request walk a device's whole history */
    sqlite3_stmt *st = prepared(r, &r->history,
                                "SELECT ts, product, kind, name, msg_id, payload, prev, device"
                                " FROM events WHERE id = ?1");
    int64_t id = q->start_id;
    int n = 0, rc = SQLITE_DONE;
    size_t seen = 0;
    *next = 0;
    if (!st || (!id && newest_event(r, q->device, &id)))
        return GW_ESTORE;
    while (id > 0 && seen < q->scan_max && (size_t)n < q->limit) {
        sqlite3_bind_int64(st, 1, id);
        if ((rc = sqlite3_step(st)) != SQLITE_ROW) {
            sqlite3_reset(st);
            id = 0; /* gone (retention): the chain ends */
            break;
        }
        const char *dev = (const char *)sqlite3_column_text(st, 7);
        if (!dev || strcmp(dev, q->device) != 0) {
            sqlite3_reset(st);
            id = 0; /* not this device's (a cursor of another): nothing more */
            break;
        }
        seen++;
        gw_outbox_row row = {
            .id = id,
            .ts = sqlite3_column_int64(st, 0),
            .device = q->device,
            .product = (const char *)sqlite3_column_text(st, 1),
            .kind = (const char *)sqlite3_column_text(st, 2),
            .name = (const char *)sqlite3_column_text(st, 3),
            .msg_id = (const char *)sqlite3_column_text(st, 4),
            .payload = (const char *)sqlite3_column_text(st, 5),
        };
        row.payload_len = (size_t)sqlite3_column_bytes(st, 5);
        id = sqlite3_column_int64(st, 6); /* NULL: 0, the oldest */
        bool match = row.product && row.kind && row.ts >= q->from && row.ts <= q->to &&
                     (!q->kind || strcmp(q->kind, row.kind) == 0) &&
                     (!q->name || (row.name && strcmp(q->name, row.name) == 0));
        int stop = match ? (n++, fn(arg, &row)) : 0;
        sqlite3_reset(st); /* ends the read transaction */
        if (stop)
            break;
    }
    if (rc != SQLITE_ROW && rc != SQLITE_DONE)
        return GW_ESTORE;
    *next = id;
    return n;
}

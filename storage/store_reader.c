/* store_reader.c: a read-only connection for the north thread: the outbox in id order (joined
 * with its events) and the latest stored property values. WAL lets it read while the writer
 * commits; it never writes. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#include "../gateway/util/alloc.h"

struct gw_store_reader {
    sqlite3 *db;
    sqlite3_stmt *outbox, *props;
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

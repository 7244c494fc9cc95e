/* store_events.c: a batch's event rows, inserted several to a statement (1, 2, 4, ... up to
 * GW__INS_MAX rows), so that a statement's start and halt (its cursors, opened, allocated and
 * freed once per step) are paid once per group, not once per row. The writer knows each row's id
 * before the step (the history chain links an event to an earlier one of the same statement):
 * SQLite gives a row MAX(id) + 1 (no id is bound: the insert appends without a seek), ids only
 * grow (retention never deletes the newest event), and each step checks the ids it was given.
 * A statement's parameters stay bound from one step to the next (sqlite3_reset keeps them), so a
 * text parameter already bound to the same bytes (the kind's and the product's static names, a
 * NULL name) is not bound again. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

#define COLS GW__INS_COLS

int gw__events_prepare(gw_store *s, gw_error *err)
{
    static const char head[] = "INSERT INTO events(ts, rx_ts, device, product, kind, name,"
                               " msg_id, payload, prev) VALUES";
    static const char row[] = "(?,?,?,?,?,?,?,?,?)";
    char sql[sizeof(head) + GW__INS_MAX * sizeof(row)];
    for (unsigned k = 0; (1u << k) <= GW__INS_MAX; k++) {
        size_t len = strlen(head);
        memcpy(sql, head, len);
        for (unsigned r = 0; r < (1u << k); r++) {
            if (r)
                sql[len++] = ',';
            memcpy(sql + len, row, sizeof(row) - 1);
            len += sizeof(row) - 1;
        }
        sql[len] = 0;
        for (unsigned i = 0; i < GW__INS_MAX * COLS; i++)
            s->ins_bound[k][i] = (gw__bound){NULL, -2};
        if (sqlite3_prepare_v3(s->db, sql, (int)len + 1, SQLITE_PREPARE_PERSISTENT, &s->ins_ev[k],
                               NULL) != SQLITE_OK)
            return gw_error_set(err, GW_ESTORE, "sqlite prepare: %s", sqlite3_errmsg(s->db));
    }
    return 0;
}

void gw__events_close(gw_store *s)
{
    for (unsigned k = 0; k < GW__INS_LEVELS; k++) {
        sqlite3_finalize(s->ins_ev[k]);
        s->ins_ev[k] = NULL;
    }
}

int gw__events_sync_id(gw_store *s)
{
    sqlite3_stmt *st;
    int rc = sqlite3_prepare_v2(s->db, "SELECT COALESCE(MAX(id), 0) FROM events", -1, &st, NULL);
    if (rc != SQLITE_OK)
        return -rc;
    rc = sqlite3_step(st);
    if (rc == SQLITE_ROW)
        s->next_id = sqlite3_column_int64(st, 0) + 1;
    sqlite3_finalize(st);
    return rc == SQLITE_ROW ? 0 : -rc;
}

/* Binds parameter i of st (bound: what it is bound to now) to v's text, or NULL if !present,
 * unless it already is: SQLITE_STATIC reads v at the step, so the same pointer and length are the
 * same value. */
static void bind_text(sqlite3_stmt *st, gw__bound *bound, int i, const char *v, bool present)
{
    gw__bound *b = &bound[i - 1];
    int n = present ? (int)strlen(v) : -1;
    if (b->n == n && (n < 0 || b->p == v))
        return;
    int rc = present ? sqlite3_bind_text(st, i, v, n, SQLITE_STATIC) : sqlite3_bind_null(st, i);
    *b = rc == SQLITE_OK ? (gw__bound){v, n} : (gw__bound){NULL, -2}; /* failed: bound NULL */
}

/* Binds ev as row r of statement k, to be id, and links it into its device's history chain. */
static int bind_row(gw_store *s, unsigned k, int r, const gw_event *ev, int64_t id)
{
    sqlite3_stmt *st = s->ins_ev[k];
    gw__bound *bound = s->ins_bound[k];
    int b = r * COLS;
    int64_t prev;
    int rc = gw__history_prev(s, ev->dev->id, &prev);
    if (rc)
        return rc;
    gw__history_linked(s, id); /* undone with the transaction if it rolls back */
    sqlite3_bind_int64(st, b + 1, ev->ts);
    sqlite3_bind_int64(st, b + 2, ev->rx_ts);
    bind_text(st, bound, b + 3, ev->dev->id, true);
    bind_text(st, bound, b + 4, ev->dev->product->id, true);
    bind_text(st, bound, b + 5, gw_event_kind_name(ev->kind), true);
    bind_text(st, bound, b + 6, ev->name, ev->name[0] != 0);
    bind_text(st, bound, b + 7, ev->msg_id, ev->msg_id[0] != 0);
    bind_text(st, bound, b + 8, ev->payload, ev->payload != NULL);
    if (prev)
        sqlite3_bind_int64(st, b + 9, prev);
    else
        sqlite3_bind_null(st, b + 9);
    return 0;
}

int gw__events_insert(gw_store *s, const gw_event *from, const gw_event *to, size_t rows)
{
    const gw_event *ev = from;
    while (rows > 0) {
        unsigned k = GW__INS_LEVELS - 1;
        while ((1u << k) > rows)
            k--;
        sqlite3_stmt *st = s->ins_ev[k];
        for (int r = 0; r < (1 << k); ev = ev->next) {
            if (ev == to)
                return -SQLITE_INTERNAL; /* fewer rows than counted: never */
            if (ev->kind == GW_EV_COMMAND)
                continue;
            int rc = bind_row(s, k, r++, ev, s->next_id++);
            if (rc)
                return rc;
        }
        int rc = gw__store_step(st);
        if (rc)
            return rc;
        if (sqlite3_last_insert_rowid(s->db) != s->next_id - 1)
            return -SQLITE_CORRUPT; /* ids not as linked: never (rolled back, ids read again) */
        rows -= 1u << k;
    }
    return 0;
}

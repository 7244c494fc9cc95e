/* store_outbox.c: the writer's side of store-and-forward: an outbox row per event in the event's
 * own transaction, deletion of the rows the broker acknowledged, the command log, retention of
 * forwarded events, the disk budget, and the outbox policy (back-pressure, enforced before
 * acknowledging through gw__outbox_room, or drop oldest). */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#include "../gateway/util/alloc.h"
#include "../gateway/util/log.h"
#include "../gateway/util/metrics.h"

#define TRIM_CHUNK 5000 /* events deleted per batch at most by retention or the disk budget */

static int prep(gw_store *s, sqlite3_stmt **st, const char *sql, gw_error *err)
{
    if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK)
        return gw_error_set(err, GW_ESTORE, "sqlite prepare: %s", sqlite3_errmsg(s->db));
    return 0;
}

static int64_t query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st;
    int64_t v = 0;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK)
        return 0;
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

int gw__outbox_open(gw_store *s, gw_error *err)
{
    gw__outbox *o = &s->ob;
    o->enabled = s->cfg->north.enabled;
    if (prep(s, &o->ins, "INSERT INTO outbox(event_id) VALUES(?1)", err) ||
        prep(s, &o->del, "DELETE FROM outbox WHERE event_id = ?1", err) ||
        prep(s, &o->drop,
             "DELETE FROM outbox WHERE event_id IN"
             " (SELECT event_id FROM outbox ORDER BY event_id LIMIT ?1)",
             err) ||
        prep(s, &o->min_id, "SELECT MIN(event_id) FROM outbox", err) ||
        prep(s, &o->trim,
             "DELETE FROM events WHERE id IN"
             " (SELECT id FROM events WHERE id < ?1 ORDER BY id LIMIT ?2)",
             err) ||
        prep(s, &o->ins_cmd,
             "INSERT INTO commands(ts, device, product, msg_id, op, name, request, status)"
             " VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
             err) ||
        prep(s, &o->up_cmd,
             "UPDATE commands SET status = ?3, done_ts = ?4, reply = ?5 WHERE id ="
             " (SELECT MAX(id) FROM commands WHERE device = ?1 AND msg_id = ?2)",
             err) ||
        prep(s, &o->trim_cmd,
             "DELETE FROM commands WHERE id <= (SELECT MAX(id) FROM commands) - ?1", err))
        return GW_ESTORE;
    o->rows = query_int(s->db, "SELECT COUNT(*) FROM outbox");
    o->first_id = query_int(s->db, "SELECT MIN(id) FROM events");
    o->last_id = query_int(s->db, "SELECT MAX(id) FROM events");
    gw_metric_add(GW_M_NORTH_QUEUED, o->rows);
    if (o->enabled && s->cfg->north.outbox_policy == GW_OUTBOX_BACKPRESSURE &&
        o->rows >= s->cfg->north.max_outbox_rows) { /* e.g. a budget lowered since the last run */
        o->full = 1;
        gw_metric_inc(GW_M_NORTH_OUTBOX_FULL);
        GW_LOG_WARN("store", NULL, NULL, "outbox full: back-pressure until the broker drains it",
                    "outbox=%lld max_outbox_rows=%lld", (long long)o->rows,
                    (long long)s->cfg->north.max_outbox_rows);
    }
    return 0;
}

int64_t gw__outbox_room(const gw_store *s)
{
    const gw__outbox *o = &s->ob;
    const gw_north_cfg *nc = &s->cfg->north;
    if (!o->enabled || nc->outbox_policy != GW_OUTBOX_BACKPRESSURE)
        return INT64_MAX;
    /* rows being deleted by the same transaction are not counted: exact, never past the budget */
    int64_t room = nc->max_outbox_rows - __atomic_load_n(&o->rows, __ATOMIC_RELAXED);
    return room > 0 ? room : 0;
}

void gw__outbox_close(gw_store *s)
{
    gw__outbox *o = &s->ob;
    sqlite3_stmt *sts[] = {o->ins,  o->del,     o->drop,   o->min_id,
                           o->trim, o->ins_cmd, o->up_cmd, o->trim_cmd};
    for (size_t i = 0; i < sizeof(sts) / sizeof(sts[0]); i++)
        sqlite3_finalize(sts[i]);
    gw_free(GW_AREA_STORE, o->fwd);
    gw_free(GW_AREA_STORE, o->taken);
}

/* ---- per event, inside the batch's transaction ---- */

static void bind_text_or_null(sqlite3_stmt *st, int i, const char *v)
{
    if (v && *v)
        sqlite3_bind_text(st, i, v, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

int gw__outbox_event(gw_store *s, const gw_event *ev, int64_t id)
{
    gw__outbox *o = &s->ob;
    int rc = 0;
    if (!o->first_id)
        o->first_id = id;
    o->last_id = id;
    if (o->enabled) {
        sqlite3_bind_int64(o->ins, 1, id);
        if ((rc = gw__store_step(o->ins)) != 0)
            return rc;
        o->added++;
    }
    if (ev->cmd_status) { /* a command's outcome: its log row */
        sqlite3_stmt *st = o->up_cmd;
        sqlite3_bind_text(st, 1, ev->dev->id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 2, ev->msg_id, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, ev->cmd_status, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 4, ev->rx_ts);
        bind_text_or_null(st, 5, ev->payload);
        rc = gw__store_step(st);
    }
    return rc;
}

int gw__outbox_command(gw_store *s, const gw_event *ev)
{
    sqlite3_stmt *st = s->ob.ins_cmd;
    sqlite3_bind_int64(st, 1, ev->rx_ts);
    sqlite3_bind_text(st, 2, ev->dev->id, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 3, ev->dev->product->id, -1, SQLITE_STATIC);
    bind_text_or_null(st, 4, ev->msg_id);
    sqlite3_bind_text(st, 5, ev->cmd_op ? ev->cmd_op : "invoke", -1, SQLITE_STATIC);
    bind_text_or_null(st, 6, ev->name);
    bind_text_or_null(st, 7, ev->payload);
    sqlite3_bind_text(st, 8, ev->cmd_status ? ev->cmd_status : "received", -1, SQLITE_STATIC);
    return gw__store_step(st);
}

/* ---- acknowledged ids (north thread -> writer) ---- */

void gw_store_forwarded(gw_store *s, const int64_t *ids, size_t n)
{
    gw__outbox *o = &s->ob;
    int wake;
    if (!n)
        return;
    pthread_mutex_lock(&s->mu);
    if (o->n_fwd + n > o->cap_fwd) {
        size_t cap = o->cap_fwd ? o->cap_fwd : 1024;
        while (cap < o->n_fwd + n)
            cap *= 2;
        int64_t *nf = gw_realloc(GW_AREA_STORE, o->fwd, cap * sizeof(*nf));
        if (!nf) { /* the rows stay: forwarded again after a restart (at-least-once) */
            pthread_mutex_unlock(&s->mu);
            return;
        }
        o->fwd = nf;
        o->cap_fwd = cap;
    }
    memcpy(o->fwd + o->n_fwd, ids, n * sizeof(*ids));
    o->n_fwd += n;
    wake = s->writer_waiting;
    pthread_mutex_unlock(&s->mu);
    if (wake)
        pthread_cond_signal(&s->cond);
}

bool gw__outbox_has_fwd(const gw_store *s)
{
    return s->ob.n_fwd > 0;
}

/* Moves the queued ids to the writer's taken list (kept until a transaction deleting them
 * commits). Caller holds s->mu. True if any are taken. */
bool gw__outbox_take_fwd(gw_store *s)
{
    gw__outbox *o = &s->ob;
    if (!o->n_fwd)
        return o->n_taken > 0;
    if (o->n_taken == 0) { /* swap the buffers: no copy */
        int64_t *t = o->taken;
        size_t c = o->cap_taken;
        o->taken = o->fwd;
        o->cap_taken = o->cap_fwd;
        o->n_taken = o->n_fwd;
        o->fwd = t;
        o->cap_fwd = c;
    } else {
        if (o->n_taken + o->n_fwd > o->cap_taken) {
            int64_t *nt =
                gw_realloc(GW_AREA_STORE, o->taken, (o->n_taken + o->n_fwd) * sizeof(*nt));
            if (!nt)
                return true; /* the rest waits for the next batch */
            o->taken = nt;
            o->cap_taken = o->n_taken + o->n_fwd;
        }
        memcpy(o->taken + o->n_taken, o->fwd, o->n_fwd * sizeof(*o->fwd));
        o->n_taken += o->n_fwd;
    }
    o->n_fwd = 0;
    return true;
}

/* ---- budgets, inside the batch's transaction ---- */

/* Deletes up to n of the oldest events below keep_below (forwarded ones: no outbox row there). */
static int trim(gw_store *s, int64_t keep_below, int64_t n, int64_t *deleted)
{
    gw__outbox *o = &s->ob;
    *deleted = 0;
    if (n <= 0 || keep_below <= o->first_id)
        return 0;
    sqlite3_bind_int64(o->trim, 1, keep_below);
    sqlite3_bind_int64(o->trim, 2, n);
    int rc = gw__store_step(o->trim);
    if (!rc)
        *deleted = sqlite3_changes(s->db);
    return rc;
}

int gw__outbox_maintain(gw_store *s)
{
    gw__outbox *o = &s->ob;
    const gw_store_cfg *sc = &s->cfg->store;
    const gw_north_cfg *nc = &s->cfg->north;
    int rc = 0;
    int64_t n;

    o->deleted = o->dropped = o->trimmed = 0;
    o->db_full = false;
    for (size_t i = 0; i < o->n_taken && !rc; i++) {
        sqlite3_bind_int64(o->del, 1, o->taken[i]);
        if (!(rc = gw__store_step(o->del)))
            o->deleted += sqlite3_changes(s->db);
    }
    int64_t rows = o->rows + o->added - o->deleted;
    if (!rc && o->enabled && nc->outbox_policy == GW_OUTBOX_DROP_OLDEST &&
        rows > nc->max_outbox_rows) {
        sqlite3_bind_int64(o->drop, 1, rows - nc->max_outbox_rows);
        if (!(rc = gw__store_step(o->drop)))
            o->dropped = sqlite3_changes(s->db);
        rows -= o->dropped;
    }
    if (rc || (!sc->retention_rows && !sc->max_db_mb) || !o->first_id)
        return rc;

    /* Forwarded events go first: nothing at or above the oldest outbox row, and never the
     * newest event (its id keeps the rowids increasing). */
    int64_t keep_below = o->last_id;
    if (o->enabled && rows > 0) {
        if (sqlite3_step(o->min_id) == SQLITE_ROW &&
            sqlite3_column_type(o->min_id, 0) != SQLITE_NULL &&
            sqlite3_column_int64(o->min_id, 0) < keep_below)
            keep_below = sqlite3_column_int64(o->min_id, 0);
        sqlite3_reset(o->min_id);
    }
    if (sc->retention_rows && o->last_id - o->first_id + 1 > sc->retention_rows) {
        n = o->last_id - o->first_id + 1 - sc->retention_rows;
        rc = trim(s, keep_below, n < TRIM_CHUNK ? n : TRIM_CHUNK, &n);
        o->trimmed += n;
        if (!rc && n) { /* the command log keeps as many rows as the events table */
            sqlite3_bind_int64(o->trim_cmd, 1, sc->retention_rows);
            rc = gw__store_step(o->trim_cmd);
        }
    }
    if (!rc && sc->max_db_mb) {
        int64_t used =
            (query_int(s->db, "PRAGMA page_count") - query_int(s->db, "PRAGMA freelist_count")) *
            query_int(s->db, "PRAGMA page_size");
        int64_t budget = (int64_t)sc->max_db_mb * 1048576;
        if (used > budget) {
            /* about as many of the oldest rows as the excess holds, at the average row size */
            int64_t rows_now = o->last_id - o->first_id + 1;
            int64_t per_row = rows_now > 0 ? used / rows_now : used;
            int64_t want = per_row > 0 ? (used - budget) / per_row + 1 : 1;
            rc = trim(s, keep_below, want < TRIM_CHUNK ? want : TRIM_CHUNK, &n);
            o->trimmed += n;
            if (!rc && n == 0) { /* only unforwarded events left */
                o->db_full = true;
                if (o->enabled && nc->outbox_policy == GW_OUTBOX_DROP_OLDEST && rows > 0) {
                    sqlite3_bind_int64(o->drop, 1, rows < 1000 ? rows : 1000);
                    if (!(rc = gw__store_step(o->drop))) {
                        o->dropped += sqlite3_changes(s->db);
                        o->db_full = false;
                    }
                }
            }
        }
    }
    if (!rc && o->trimmed) {
        sqlite3_stmt *st;
        o->new_first = 0;
        if (sqlite3_prepare_v2(s->db, "SELECT MIN(id) FROM events", -1, &st, NULL) == SQLITE_OK) {
            if (sqlite3_step(st) == SQLITE_ROW)
                o->new_first = sqlite3_column_int64(st, 0);
            sqlite3_finalize(st);
        }
    }
    return rc;
}

void gw__outbox_after(gw_store *s, bool committed)
{
    gw__outbox *o = &s->ob;
    const gw_north_cfg *nc = &s->cfg->north;
    if (committed) {
        int64_t delta = o->added - o->deleted - o->dropped;
        int64_t rows = __atomic_add_fetch(&o->rows, delta, __ATOMIC_RELAXED);
        gw_metric_add(GW_M_NORTH_QUEUED, delta);
        size_t done = o->n_taken; /* forwarded for good: the north thread may free their slots */
        if (done) {
            __atomic_add_fetch(&o->fwd_done, (int64_t)done, __ATOMIC_RELEASE);
            gw_metric_add(GW_M_NORTH_FORWARDED, (int64_t)done);
        }
        o->n_taken = 0;
        if (o->trimmed) {
            gw_metric_add(GW_M_STORE_RETAINED_DELETED, o->trimmed);
            o->first_id = o->new_first;
        }
        if (o->dropped) {
            gw_metric_add(GW_M_NORTH_DROPPED, o->dropped);
            int64_t now = gw_now_ms();
            if (now - o->last_drop_log_ms >= 1000) { /* at most one line a second */
                o->last_drop_log_ms = now;
                GW_LOG_WARN("store", NULL, NULL,
                            "outbox full: oldest unforwarded events dropped (outbox_policy "
                            "drop_oldest)",
                            "dropped=%lld dropped_total=%lld outbox=%lld max_outbox_rows=%lld",
                            (long long)o->dropped, (long long)gw_metric_get(GW_M_NORTH_DROPPED),
                            (long long)rows, (long long)nc->max_outbox_rows);
            }
        }
        bool over = o->db_full || (o->enabled && nc->outbox_policy == GW_OUTBOX_BACKPRESSURE &&
                                   rows >= nc->max_outbox_rows);
        bool under = !o->db_full && (!o->enabled || nc->outbox_policy != GW_OUTBOX_BACKPRESSURE ||
                                     rows <= nc->max_outbox_rows - nc->max_outbox_rows / 10 - 1);
        if (over && !__atomic_load_n(&o->full, __ATOMIC_RELAXED)) {
            __atomic_store_n(&o->full, 1, __ATOMIC_RELEASE);
            __atomic_store_n(&s->full_seen, 1, __ATOMIC_RELEASE);
            gw_metric_inc(GW_M_NORTH_OUTBOX_FULL);
            GW_LOG_WARN("store", NULL, NULL,
                        o->db_full ? "disk budget reached by unforwarded events: back-pressure"
                                   : "outbox full: back-pressure until the broker drains it",
                        "outbox=%lld max_outbox_rows=%lld max_db_mb=%u", (long long)rows,
                        (long long)nc->max_outbox_rows, s->cfg->store.max_db_mb);
        } else if (under && __atomic_load_n(&o->full, __ATOMIC_RELAXED)) {
            __atomic_store_n(&o->full, 0, __ATOMIC_RELEASE);
            GW_LOG_INFO("store", NULL, NULL, "outbox below its budget: devices resume",
                        "outbox=%lld", (long long)rows);
            if (gw_store_depth(s) <= s->low &&
                __atomic_exchange_n(&s->full_seen, 0, __ATOMIC_ACQ_REL) && s->on_drain)
                s->on_drain(s->drain_arg);
        }
        if (o->added || done) { /* under the mutex: set_commit_hook(NULL) waits for a call */
            pthread_mutex_lock(&s->mu);
            if (o->hook)
                o->hook(o->hook_arg);
            pthread_mutex_unlock(&s->mu);
        }
    }
    o->added = o->deleted = o->dropped = o->trimmed = 0;
}

void gw_store_set_commit_hook(gw_store *s, void (*fn)(void *arg), void *arg)
{
    pthread_mutex_lock(&s->mu);
    s->ob.hook = fn;
    s->ob.hook_arg = arg;
    pthread_mutex_unlock(&s->mu);
}

int64_t gw_store_forwarded_done(const gw_store *s)
{
    return __atomic_load_n(&s->ob.fwd_done, __ATOMIC_ACQUIRE);
}

int64_t gw_store_outbox_rows(const gw_store *s)
{
    return __atomic_load_n(&s->ob.rows, __ATOMIC_RELAXED);
}

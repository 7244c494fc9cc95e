/* store_schema.c: the database's pragmas, schema (versioned by PRAGMA user_version), prepared
 * statements, and the start-up pass that closes sessions a crash left marked online. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

#include "../gateway/util/log.h"

#define GW_SCHEMA_VERSION 4

static const char *const schema_v1 =
    "CREATE TABLE IF NOT EXISTS events("
    " id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, rx_ts INTEGER NOT NULL,"
    " device TEXT NOT NULL, product TEXT NOT NULL, kind TEXT NOT NULL,"
    " name TEXT, msg_id TEXT, payload TEXT);"
    "CREATE TABLE IF NOT EXISTS device_state("
    " device TEXT PRIMARY KEY, product TEXT NOT NULL, online INTEGER NOT NULL,"
    " last_seen INTEGER NOT NULL, last_offline_reason TEXT);"
    "CREATE TABLE IF NOT EXISTS property_state("
    " device TEXT NOT NULL, property TEXT NOT NULL, value TEXT NOT NULL, ts INTEGER NOT NULL,"
    " PRIMARY KEY(device, property)) WITHOUT ROWID;";

/* v2: store-and-forward. outbox: one row per unforwarded event (deleted when the broker
 * acknowledges it); commands: the downstream command log. */
static const char *const schema_v2 =
    "CREATE TABLE IF NOT EXISTS outbox(event_id INTEGER PRIMARY KEY);"
    "CREATE TABLE IF NOT EXISTS commands("
    " id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, device TEXT NOT NULL, product TEXT NOT NULL,"
    " msg_id TEXT, op TEXT NOT NULL, name TEXT, request TEXT, status TEXT NOT NULL,"
    " done_ts INTEGER, reply TEXT);"
    "CREATE INDEX IF NOT EXISTS commands_device_msg ON commands(device, msg_id);";

/* v3: meta.state_mark, the newest event whose device and property state is written (the state
 * tables may trail the events under load; a start after a crash replays the rest). Up to v2 the
 * state was written with every event, so the mark starts at the newest event. */
static const char *const schema_v3 =
    "CREATE TABLE IF NOT EXISTS meta(key TEXT PRIMARY KEY, value INTEGER NOT NULL) WITHOUT ROWID;"
    "INSERT OR IGNORE INTO meta(key, value)"
    " SELECT 'state_mark', COALESCE(MAX(id), 0) FROM events;";

/* v4: the management API's reads. A device's history is a chain (store_history.c): events.prev is
 * the id of the same device's previous event; its newest as of the state mark is the larger of
 * device_state.last_event (written with the device's state) and history_head (devices without a
 * state row); an existing database's events are linked once here (with a transient index).
 * events_online finds a device's newest online event (its adapter and peer), partial so that it
 * costs ingest nothing but for online events; device_state_online lists the online devices in id
 * order. */
static const char *const schema_v4 =
    "ALTER TABLE events ADD COLUMN prev INTEGER;"
    "ALTER TABLE device_state ADD COLUMN last_event INTEGER;"
    "CREATE TABLE IF NOT EXISTS history_head(device TEXT PRIMARY KEY, last_id INTEGER NOT NULL)"
    " WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS gw_v4_link ON events(device);"
    "UPDATE events SET prev = (SELECT MAX(e.id) FROM events e WHERE e.device = events.device"
    " AND e.id < events.id);"
    "INSERT OR REPLACE INTO history_head(device, last_id) SELECT device, MAX(id) FROM events"
    " GROUP BY device;"
    "DROP INDEX gw_v4_link;"
    "CREATE INDEX IF NOT EXISTS events_online ON events(device) WHERE kind = 'online';"
    "CREATE INDEX IF NOT EXISTS device_state_online ON device_state(device) WHERE online = 1;";

static int exec(sqlite3 *db, const char *sql, gw_error *err)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        gw_error_set(err, GW_ESTORE, "sqlite: %s: %.80s", msg ? msg : "error", sql);
        sqlite3_free(msg);
        return GW_ESTORE;
    }
    return 0;
}

int gw__store_schema(sqlite3 *db, const gw_store_cfg *cfg, gw_error *err)
{
    char sql[256];
    int version = 0;
    sqlite3_stmt *st;

    sqlite3_busy_timeout(db, 5000);
    /* a new database takes the page size before its first write (WAL mode fixes it) */
    snprintf(sql, sizeof(sql), "PRAGMA page_size=%u", cfg->page_size);
    if (exec(db, sql, err) || exec(db, "PRAGMA journal_mode=WAL", err))
        return GW_ESTORE;
    snprintf(sql, sizeof(sql),
             "PRAGMA synchronous=%s; PRAGMA cache_size=-%u; PRAGMA temp_store=MEMORY",
             cfg->synchronous == GW_SYNC_FULL ? "FULL" : "NORMAL", cfg->cache_kb);
    if (exec(db, sql, err))
        return GW_ESTORE;
    if (sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            version = sqlite3_column_int(st, 0);
        sqlite3_finalize(st);
    }
    if (version > 0 && sqlite3_prepare_v2(db, "PRAGMA page_size", -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW && (uint32_t)sqlite3_column_int(st, 0) != cfg->page_size)
            GW_LOG_INFO("store", NULL, NULL,
                        "the database keeps the page size it was created with (storage.page_size "
                        "applies to a new database)",
                        "page_size=%d configured=%u", sqlite3_column_int(st, 0), cfg->page_size);
        sqlite3_finalize(st);
    }
    if (version > GW_SCHEMA_VERSION)
        return gw_error_set(err, GW_ESTORE,
                            "database schema version %d is newer than this gateway (%d)", version,
                            GW_SCHEMA_VERSION);
    /* v0 -> v1 -> ... -> v4 in one transaction with the version: each step runs once (v1-v3 are
     * also idempotent; v4's ALTER is not) */
    if (version < GW_SCHEMA_VERSION) {
        if (exec(db, "BEGIN", err) || (version < 1 && exec(db, schema_v1, err)) ||
            exec(db, schema_v2, err) || exec(db, schema_v3, err) ||
            (version < 4 && exec(db, schema_v4, err)) || exec(db, "PRAGMA user_version=4", err) ||
            exec(db, "COMMIT", err)) {
            sqlite3_exec(db, "ROLLBACK", NULL, NULL, NULL);
            return GW_ESTORE;
        }
    }
    return 0;
}

static int prep(gw_store *s, sqlite3_stmt **st, const char *sql, gw_error *err)
{
    if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, st, NULL) != SQLITE_OK)
        return gw_error_set(err, GW_ESTORE, "sqlite prepare: %s", sqlite3_errmsg(s->db));
    return 0;
}

int gw__store_prepare(gw_store *s, gw_error *err)
{
    if (gw__events_prepare(s, err) ||
        prep(s, &s->up_prop,
             "INSERT INTO property_state(device, property, value, ts) VALUES(?1, ?2, ?3, ?4)"
             " ON CONFLICT(device, property) DO UPDATE SET value = excluded.value, ts = excluded.ts"
             " WHERE excluded.ts >= property_state.ts",
             err) ||
        prep(s, &s->up_state,
             "INSERT INTO device_state(device, product, online, last_seen, last_offline_reason,"
             " last_event) VALUES(?1, ?2, ?3, ?4, ?5, gw_history_head(?1))"
             " ON CONFLICT(device) DO UPDATE SET"
             " online = excluded.online, last_seen = MAX(last_seen, excluded.last_seen),"
             " last_offline_reason = COALESCE(excluded.last_offline_reason, last_offline_reason),"
             " last_event = COALESCE(excluded.last_event, last_event)",
             err) ||
        prep(s, &s->touch_state,
             "UPDATE device_state SET last_seen = MAX(last_seen, ?2),"
             " last_event = COALESCE(gw_history_head(?1), last_event) WHERE device = ?1",
             err) ||
        prep(s, &s->set_mark, "UPDATE meta SET value = ?1 WHERE key = 'state_mark'", err) ||
        prep(s, &s->begin, "BEGIN", err) || prep(s, &s->commit, "COMMIT", err) ||
        prep(s, &s->rollback, "ROLLBACK", err))
        return GW_ESTORE;
    return 0;
}

/* A gateway that crashed could not write its offline events: write them now, reason "restart"
 * (queued for forwarding like any event; linked to each device's history). Commands it was still
 * waiting on are "aborted". */
int gw__store_mark_offline(gw_store *s, gw_error *err)
{
    char sql[2048];
    long long now = (long long)gw_now_ms();
    /* the payload names this instance, as gw_session_offline's does (north.client_id) */
    char *gwname = sqlite3_mprintf("%Q", s->cfg->north.client_id ? s->cfg->north.client_id : "");
    if (!gwname)
        return gw_error_set(err, GW_ENOMEM, "out of memory");
    snprintf(sql, sizeof(sql),
             "BEGIN;"
             "CREATE TEMP TABLE IF NOT EXISTS restart_mark(last INTEGER);"
             "DELETE FROM restart_mark;"
             "INSERT INTO restart_mark SELECT COALESCE(MAX(id), 0) FROM events;"
             "INSERT INTO events(ts, rx_ts, device, product, kind, name, payload, prev)"
             " SELECT %lld, %lld, device, product, 'offline', 'restart', "
             "json_object('reason', 'restart', 'will', json('false'), 'gateway', %s),"
             " NULLIF(MAX(COALESCE(last_event, 0), COALESCE((SELECT last_id FROM history_head h"
             " WHERE h.device = device_state.device), 0)), 0)"
             " FROM device_state WHERE online = 1;"
             "INSERT INTO history_head(device, last_id) SELECT device, MAX(id) FROM events"
             " WHERE id > (SELECT last FROM restart_mark) GROUP BY device"
             " ON CONFLICT(device) DO UPDATE SET last_id = excluded.last_id;"
             "%s"
             "UPDATE device_state SET online = 0, last_offline_reason = 'restart' WHERE online = 1;"
             "UPDATE commands SET status = 'aborted', done_ts = %lld"
             " WHERE status IN ('received', 'queued', 'sent');"
             "COMMIT;",
             now, now, gwname,
             s->cfg->north.enabled ? "INSERT INTO outbox(event_id) SELECT id FROM events"
                                     " WHERE id > (SELECT last FROM restart_mark);"
                                   : "",
             now);
    sqlite3_free(gwname);
    if (exec(s->db, sql, err)) {
        sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
        return GW_ESTORE;
    }
    return 0;
}

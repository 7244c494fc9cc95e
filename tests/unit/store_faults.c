/* store_faults.c: I/O-fault injection into the store, as SQLite tests itself. Through faultvfs.h
 * the k-th write, fsync, lock, shm-lock, truncate or read fails, for k = 1, 2, ... until k passes
 * the calls made, in a batch commit (with its state write and outbox rows), a lagged state write,
 * an outbox deletion and a schema migration (v2 -> v4); then the same fault for good, and a stop
 * while it lasts. Asserted: no completion with status 0 for an event that is not committed (the
 * checker reads the database at each ack), the writer retries until it can commit (or, stopping,
 * reports GW_ESTORE and stores nothing), integrity_check is ok, and after a restart every
 * acknowledged event is there once, failed ones are not, and the state tables and the history
 * chain are right. */
#include "faultvfs.h"
#include "store_test.h"

#include <limits.h>

#include "gateway/util/log.h"

typedef struct fault_spec {
    fv_kind kind;
    int rc;
} fault_spec;

static const fault_spec specs[] = {
    {FV_WRITE, SQLITE_IOERR_WRITE},
    {FV_WRITE, SQLITE_FULL},
    {FV_SYNC, SQLITE_IOERR_FSYNC},
    {FV_LOCK, SQLITE_IOERR_LOCK},
    {FV_LOCK, SQLITE_BUSY},
    {FV_SHMLOCK, SQLITE_BUSY},
    {FV_TRUNCATE, SQLITE_IOERR_TRUNCATE},
    {FV_READ, SQLITE_IOERR_READ},
};
#define N_SPECS (sizeof(specs) / sizeof(specs[0]))
#define K_MAX   400 /* a loop that does not end by then is a failure */

static bool busy(const fault_spec *f)
{
    return f->rc == SQLITE_BUSY; /* SQLite waits busy_timeout (5 s) on each: no "for good" runs */
}

/* Whether this fault, lasting, stops every commit (locks are taken once, at open, in WAL mode;
 * reads come from the page cache; nothing truncates in these transactions). */
static bool blocks_commits(const fault_spec *f)
{
    return f->kind == FV_WRITE || f->kind == FV_SYNC || f->kind == FV_SHMLOCK;
}

static void label(char *buf, size_t cap, const char *what, const fault_spec *f)
{
    snprintf(buf, cap, "%s/%s/%s", what, fv_kind_names[f->kind], sqlite3_errstr(f->rc));
}

/* property_state's temperature of t-001 equals that of its newest stored property event. */
static bool state_matches(st_env *e)
{
    char want[64], got[64];
    st_text(e,
            "SELECT json_extract(payload, '$.temperature') FROM events WHERE device = 't-001'"
            " AND kind = 'property' ORDER BY id DESC LIMIT 1",
            want, sizeof(want));
    st_text(e,
            "SELECT value FROM property_state WHERE device = 't-001' AND property = 'temperature'",
            got, sizeof(got));
    if (strcmp(want, got) != 0)
        fprintf(stderr, "state: property_state %s, newest event %s\n", got, want);
    return strcmp(want, got) == 0;
}

/* The history chain (store_history.c) survived the faults: every event's prev is the same
 * device's previous event, and each device's head (after the reopen) is its newest. */
static bool chain_ok(st_env *e)
{
    int64_t bad = st_scalar(e, "SELECT COUNT(*) FROM events e WHERE COALESCE(e.prev, 0) !="
                               " COALESCE((SELECT MAX(x.id) FROM events x WHERE x.device ="
                               " e.device AND x.id < e.id), 0)");
    int64_t heads = st_scalar(e, "SELECT COUNT(*) FROM (SELECT device, MAX(id) AS m FROM events"
                                 " GROUP BY device) d LEFT JOIN history_head h USING(device)"
                                 " LEFT JOIN device_state s USING(device) WHERE"
                                 " MAX(COALESCE(h.last_id, 0), COALESCE(s.last_event, 0)) != d.m");
    if (bad || heads)
        fprintf(stderr, "chain: %lld events with a wrong prev, %lld wrong heads\n", (long long)bad,
                (long long)heads);
    return bad == 0 && heads == 0;
}

/* The restart: close, integrity, reopen (state replay), every ack there, failures not. */
static void restart_and_audit(st_env *e, const char *what)
{
    st_close(e);
    st_check_close(e);
    CHECK(st_integrity_ok(e));
    CHECK_INT(st_open(e), 0);
    st_totals t = st_audit(e);
    if (t.lost || t.dup || t.unstored || t.out_of_order)
        fprintf(stderr, "%s: lost %d dup %d unstored-at-ack %d out-of-order %d\n", what, t.lost,
                t.dup, t.unstored, t.out_of_order);
    CHECK_INT(t.lost, 0);
    CHECK_INT(t.dup, 0);
    CHECK_INT(t.unstored, 0);
    CHECK_INT(t.out_of_order, 0);
    CHECK(state_matches(e));
    CHECK(chain_ok(e));
    CHECK(st_integrity_ok(e));
    printf("  %s: %d acked, %d failed (reported), all there after the restart\n", what, t.acked,
           t.failed);
}

/* ---- 1. a batch commit (events, their outbox rows, their state in the same transaction) ---- */

static void batch_commit(const fault_spec *f)
{
    char what[96];
    label(what, sizeof(what), "batch", f);
    st_env *e = st_env_new();
    e->cfg->store.state_lag_ms = 0; /* the state is written in every batch's transaction */
    e->cfg->north.enabled = true;   /* and every event gets an outbox row */
    CHECK_INT(st_open(e), 0);
    long k;
    for (k = 1; k <= K_MAX; k++) {
        fv_arm(f->kind, k, 1, f->rc);
        uint32_t first = st_submit_props(e, "t-001", ST_SESS_A, 5, (int)k * 10);
        bool done = st_wait_range(e, first, first + 4, 20000);
        long hits = fv_hits();
        fv_disarm();
        CHECK(done);
        for (uint32_t t = first; t < first + 5; t++)
            CHECK_INT(e->rec[t].acked, 1); /* a single fault: the retry commits */
        CHECK_INT(gw_store_depth(e->s), 0);
        if (hits == 0)
            break;
    }
    CHECK(k <= K_MAX);
    printf("  %s: the commit made %ld calls\n", what, k - 1);

    if (!busy(f)) {
        /* for good: nothing acknowledged while it lasts; the writer retries; then it commits */
        int64_t errs = gw_metric_get(GW_M_STORE_ERRORS);
        fv_arm(f->kind, 1, LONG_MAX, f->rc);
        uint32_t first = st_submit_props(e, "t-001", ST_SESS_A, 3, 7000);
        st_pump(e, NULL, 400);
        fv_disarm();
        if (blocks_commits(f)) {
            for (uint32_t t = first; t < first + 3; t++)
                CHECK_INT(e->rec[t].acked + e->rec[t].failed, 0);
            CHECK(gw_metric_get(GW_M_STORE_ERRORS) >= errs + 2);
        }
        CHECK(st_wait_range(e, first, first + 2, 20000));
        for (uint32_t t = first; t < first + 3; t++)
            CHECK_INT(e->rec[t].acked, 1);

        /* stopping while it lasts: the writer gives up and reports; nothing stored */
        fv_arm(f->kind, 1, LONG_MAX, f->rc);
        first = st_submit_props(e, "t-001", ST_SESS_A, 3, 8000);
        st_close(e);
        fv_disarm();
        for (uint32_t t = first; t < first + 3; t++) {
            CHECK_INT(e->rec[t].acked + e->rec[t].failed, 1);
            if (blocks_commits(f))
                CHECK_INT(e->rec[t].failed, 1);
        }
        CHECK_INT(st_open(e), 0);
    }
    restart_and_audit(e, what);
    st_env_free(e);
}

/* ---- 2. a lagged state write (a transaction of its own: gw_store_sync_state, the stop) ---- */

static void state_write(const fault_spec *f)
{
    char what[96];
    label(what, sizeof(what), "state", f);
    st_env *e = st_env_new();
    e->cfg->store.state_lag_ms = 600000; /* written when asked (or at the stop) only */
    CHECK_INT(st_open(e), 0);
    long k;
    for (k = 1; k <= K_MAX; k++) {
        uint32_t first = st_submit_props(e, "t-001", ST_SESS_A, 3, (int)k * 10);
        CHECK(st_wait_range(e, first, first + 2, 20000));
        fv_arm(f->kind, k, 1, f->rc);
        int rc = gw_store_sync_state(e->s, st_slow(20000));
        long hits = fv_hits();
        fv_disarm();
        CHECK_INT(rc, 0);
        CHECK(state_matches(e));
        CHECK_INT(gw_metric_get(GW_M_STORE_STATE_UNWRITTEN), 0); /* retried notes not left over */
        CHECK_INT(st_scalar(e, "SELECT value FROM meta WHERE key = 'state_mark'"),
                  st_scalar(e, "SELECT MAX(id) FROM events"));
        CHECK(st_integrity_ok(e));
        if (hits == 0)
            break;
    }
    CHECK(k <= K_MAX);
    printf("  %s: the state write made %ld calls\n", what, k - 1);

    if (!busy(f)) {
        /* the stop's final state write fails: the restart replays the 4 events past the mark */
        uint32_t first = st_submit_props(e, "t-001", ST_SESS_A, 4, 9000);
        CHECK(st_wait_range(e, first, first + 3, 20000));
        fv_arm(f->kind, 1, LONG_MAX, f->rc);
        st_close(e);
        fv_disarm();
        int64_t replayed = gw_metric_get(GW_M_STORE_STATE_REPLAYED);
        CHECK_INT(st_open(e), 0);
        if (blocks_commits(f))
            CHECK_INT(gw_metric_get(GW_M_STORE_STATE_REPLAYED) - replayed, 4);
        CHECK(state_matches(e));
    }
    restart_and_audit(e, what);
    st_env_free(e);
}

/* ---- 3. an outbox deletion (the rows the broker acknowledged) ---- */

static int64_t outbox_ids(st_env *e, int64_t *ids, int cap)
{
    sqlite3_stmt *st;
    int n = 0;
    if (sqlite3_prepare_v2(st_check_db(e), "SELECT event_id FROM outbox ORDER BY event_id", -1, &st,
                           NULL) != SQLITE_OK)
        return -1;
    while (n < cap && sqlite3_step(st) == SQLITE_ROW)
        ids[n++] = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return n;
}

static int64_t fwd_want;
static bool fwd_reached(st_env *e)
{
    return gw_store_forwarded_done(e->s) >= fwd_want;
}

static void outbox_delete(const fault_spec *f)
{
    char what[96];
    int64_t ids[16];
    label(what, sizeof(what), "outbox", f);
    st_env *e = st_env_new();
    e->cfg->north.enabled = true;
    CHECK_INT(st_open(e), 0);
    long k;
    for (k = 1; k <= K_MAX; k++) {
        uint32_t first = st_submit_props(e, "t-001", ST_SESS_A, 4, (int)k * 10);
        CHECK(st_wait_range(e, first, first + 3, 20000));
        int64_t n = outbox_ids(e, ids, 16);
        CHECK_INT(n, 4);
        fwd_want = gw_store_forwarded_done(e->s) + n;
        fv_arm(f->kind, k, 1, f->rc);
        gw_store_forwarded(e->s, ids, (size_t)n);
        bool done = st_pump(e, fwd_reached, 20000);
        long hits = fv_hits();
        fv_disarm();
        CHECK(done);
        CHECK_INT(st_scalar(e, "SELECT COUNT(*) FROM outbox"), 0);
        CHECK_INT(gw_store_outbox_rows(e->s), 0);
        CHECK(st_integrity_ok(e));
        if (hits == 0)
            break;
    }
    CHECK(k <= K_MAX);
    printf("  %s: the deletion made %ld calls\n", what, k - 1);

    if (!busy(f)) {
        /* for good: the north thread is not told the rows are gone while they are not */
        uint32_t first = st_submit_props(e, "t-001", ST_SESS_A, 4, 9000);
        CHECK(st_wait_range(e, first, first + 3, 20000));
        int64_t n = outbox_ids(e, ids, 16);
        int64_t done0 = gw_store_forwarded_done(e->s);
        fv_arm(f->kind, 1, LONG_MAX, f->rc);
        gw_store_forwarded(e->s, ids, (size_t)n);
        st_pump(e, NULL, 400);
        if (blocks_commits(f)) {
            CHECK_INT(gw_store_forwarded_done(e->s), done0);
            CHECK_INT(st_scalar(e, "SELECT COUNT(*) FROM outbox"), n);
        }
        fv_disarm();
        fwd_want = done0 + n;
        CHECK(st_pump(e, fwd_reached, 20000));
        CHECK_INT(st_scalar(e, "SELECT COUNT(*) FROM outbox"), 0);
        CHECK_INT(gw_store_outbox_rows(e->s), 0);
    }
    restart_and_audit(e, what);
    CHECK_INT(st_scalar(e, "SELECT COUNT(*) FROM outbox"), 0);
    CHECK_INT(gw_store_outbox_rows(e->s), 0);
    st_env_free(e);
}

/* ---- 4. a schema migration: a v2 database (test 25's) opened by this version ---- */

static const char v2_db[] =
    "CREATE TABLE events(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, rx_ts INTEGER NOT NULL,"
    " device TEXT NOT NULL, product TEXT NOT NULL, kind TEXT NOT NULL, name TEXT, msg_id TEXT,"
    " payload TEXT);"
    "CREATE TABLE device_state(device TEXT PRIMARY KEY, product TEXT NOT NULL,"
    " online INTEGER NOT NULL, last_seen INTEGER NOT NULL, last_offline_reason TEXT);"
    "CREATE TABLE property_state(device TEXT NOT NULL, property TEXT NOT NULL, value TEXT NOT NULL,"
    " ts INTEGER NOT NULL, PRIMARY KEY(device, property)) WITHOUT ROWID;"
    "CREATE TABLE outbox(event_id INTEGER PRIMARY KEY);"
    "CREATE TABLE commands(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, device TEXT NOT NULL,"
    " product TEXT NOT NULL, msg_id TEXT, op TEXT NOT NULL, name TEXT, request TEXT,"
    " status TEXT NOT NULL, done_ts INTEGER, reply TEXT);"
    "CREATE INDEX commands_device_msg ON commands(device, msg_id);"
    "INSERT INTO events VALUES(6, 900, 900, 't-001', 'thermo', 'online', NULL, 'on', NULL);"
    "INSERT INTO events VALUES(7, 1000, 1000, 't-001', 'thermo', 'property', NULL, 'old',"
    " '{\"temperature\":30.5}');"
    "INSERT INTO device_state VALUES('t-001', 'thermo', 1, 1000, NULL);"
    "INSERT INTO property_state VALUES('t-001', 'temperature', '30.5', 1000);"
    "INSERT INTO commands(ts, device, product, msg_id, op, status)"
    " VALUES(950, 't-001', 'thermo', 'c1', 'invoke', 'sent');"
    "PRAGMA user_version=2;";

static void make_v2(st_env *e)
{
    char p[300];
    st_check_close(e);
    const char *sfx[] = {"", "-wal", "-shm", "-journal"};
    for (size_t i = 0; i < 4; i++) {
        snprintf(p, sizeof(p), "%s%s", e->path, sfx[i]);
        unlink(p);
    }
    sqlite3 *db;
    if (sqlite3_open_v2(e->path, &db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE, "unix") ||
        sqlite3_exec(db, v2_db, NULL, NULL, NULL) != SQLITE_OK)
        st_die("v2 database");
    sqlite3_close(db);
}

static void migration(const fault_spec *f)
{
    char what[96];
    label(what, sizeof(what), "migration", f);
    st_env *e = st_env_new();
    e->cfg->north.enabled = true;
    long k, failed_opens = 0;
    for (k = 1; k <= K_MAX; k++) {
        gw_error err = {0};
        gw_store *s = NULL;
        make_v2(e);
        fv_arm(f->kind, k, 1, f->rc);
        int rc = gw_store_open(&s, e->cfg, &err);
        long hits = fv_hits();
        fv_disarm();
        if (rc) { /* a clear error, and no store */
            failed_opens++;
            CHECK(s == NULL);
            CHECK(err.msg[0] != 0);
        } else {
            gw_store_close(s);
        }
        CHECK(st_integrity_ok(e));
        int64_t v = st_scalar(e, "PRAGMA user_version");
        CHECK(v == 2 || v == 4);
        if (rc == 0)
            CHECK_INT(v, 4);
        st_check_close(e);
        /* the next start, without faults, completes the migration */
        s = NULL;
        CHECK_INT(gw_store_open(&s, e->cfg, &err), 0);
        gw_store_close(s);
        CHECK_INT(st_scalar(e, "PRAGMA user_version"), 4);
        CHECK_INT(st_scalar(e, "SELECT value FROM meta WHERE key = 'state_mark'"), 7);
        CHECK_INT(st_scalar(e, "SELECT COUNT(*) FROM events WHERE id <= 7"), 2);
        CHECK_INT(st_scalar(e, "SELECT COUNT(*) FROM events WHERE kind = 'offline'"
                               " AND name = 'restart'"),
                  1);
        CHECK_INT(st_scalar(e, "SELECT COUNT(*) FROM outbox"), 1); /* that offline event */
        CHECK_INT(st_scalar(e, "SELECT online FROM device_state WHERE device = 't-001'"), 0);
        CHECK_INT(st_scalar(e, "SELECT COUNT(*) FROM commands WHERE status = 'aborted'"), 1);
        CHECK(state_matches(e));
        CHECK(st_integrity_ok(e));
        if (hits == 0)
            break;
    }
    CHECK(k <= K_MAX);
    printf("  %s: the migration made %ld calls, %ld opens failed with an error\n", what, k - 1,
           failed_opens);
    st_env_free(e);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (fv_install() != SQLITE_OK)
        st_die("faultvfs");
    if (!getenv("STORE_TEST_LOG"))
        gw_log_level = GW_LOG_ERROR + 1; /* the retries' error lines are expected */
    for (size_t i = 0; i < N_SPECS; i++) {
        batch_commit(&specs[i]);
        state_write(&specs[i]);
        outbox_delete(&specs[i]);
        migration(&specs[i]);
    }
    TEST_MAIN_END();
}

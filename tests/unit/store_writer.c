/* store_writer.c: the store writer with an SQLite database in a temp dir and an in-process loop
 * receiving its completions: batching (batch_max, group commit within batch_ms), retry after a
 * failed commit (faultvfs: every write fails for a while), completion order (per session, across
 * batches, events without a session freed), online/offline events waiting 2 ms for company,
 * state lag (state_lag_ms coalescing, online changes
 * at once, gw_store_sync_state) and the replay after a crash (the files copied while the state
 * is unwritten, as a kill would leave them). */
#include "faultvfs.h"
#include "store_test.h"

#include <fcntl.h>

#include "gateway/util/log.h"
#include "storage/internal.h"

static int chain_at(st_env *e, int i)
{
    pthread_mutex_lock(&e->mu);
    int n = i < e->delivers ? e->chain[i] : -1;
    pthread_mutex_unlock(&e->mu);
    return n;
}

/* ---- batching ---- */

static void batching(void)
{
    /* batch_max: 25 events queued before the writer starts go in batches of 10, 10, 5 */
    st_env *e = st_env_new();
    gw_error err = {0};
    e->cfg->store.batch_max = 10;
    e->cfg->store.batch_ms = 0;
    CHECK_INT(gw_store_open(&e->s, e->cfg, &err), 0);
    gw_store_set_completion(e->s, st_deliver, NULL, e);
    uint32_t first = st_submit_props(e, "t-001", ST_SESS_A, 25, 0);
    CHECK_INT(gw_store_depth(e->s), 25);
    int64_t batches = gw_metric_get(GW_M_STORE_BATCHES);
    CHECK_INT(gw_store_start(e->s, NULL, NULL), 0);
    CHECK(st_wait_range(e, first, first + 24, 10000));
    CHECK_INT(gw_metric_get(GW_M_STORE_BATCHES) - batches, 3);
    CHECK_INT(e->delivers, 3);
    CHECK_INT(chain_at(e, 0), 10);
    CHECK_INT(chain_at(e, 1), 10);
    CHECK_INT(chain_at(e, 2), 5);
    CHECK_INT(gw_store_depth(e->s), 0);
    st_env_free(e);

    /* group commit: with batch_ms, events arriving within the window share one transaction */
    e = st_env_new();
    e->cfg->store.batch_max = 100;
    e->cfg->store.batch_ms = st_slow(300);
    CHECK_INT(st_open(e), 0);
    batches = gw_metric_get(GW_M_STORE_BATCHES);
    int64_t t0 = st_ms();
    first = st_submit_props(e, "t-001", ST_SESS_A, 1, 0);
    st_sleep_ms(20);
    st_submit_props(e, "t-002", ST_SESS_B, 2, 0);
    CHECK(st_wait_range(e, first, first + 2, 10000));
    int64_t took = st_ms() - t0;
    CHECK_INT(gw_metric_get(GW_M_STORE_BATCHES) - batches, 1);
    CHECK_INT(e->delivers, 1);
    CHECK_INT(chain_at(e, 0), 3);
    CHECK(took >= (int64_t)e->cfg->store.batch_ms - 20); /* the window was waited for */
    printf("  group commit: 3 events in one batch after %lld ms (batch_ms %u)\n", (long long)took,
           e->cfg->store.batch_ms);
    st_env_free(e);

    /* ... and batch_max ends the window early */
    e = st_env_new();
    e->cfg->store.batch_max = 4;
    e->cfg->store.batch_ms = 5000;
    CHECK_INT(st_open(e), 0);
    t0 = st_ms();
    first = st_submit_props(e, "t-001", ST_SESS_A, 1, 0);
    st_sleep_ms(20);
    st_submit_props(e, "t-001", ST_SESS_A, 3, 1);
    CHECK(st_wait_range(e, first, first + 3, 10000));
    took = st_ms() - t0;
    CHECK_INT(e->delivers, 1);
    CHECK_INT(chain_at(e, 0), 4);
    CHECK(took < 2500);
    st_env_free(e);
}

/* ---- retry after a failed commit ---- */

static void retry(void)
{
    st_env *e = st_env_new();
    e->cfg->north.enabled = true;
    CHECK_INT(st_open(e), 0);
    uint32_t first = st_submit_props(e, "t-001", ST_SESS_A, 2, 0);
    CHECK(st_wait_range(e, first, first + 1, 10000));

    /* the disk is full for a while: nothing is acknowledged, the writer keeps trying */
    int64_t errs = gw_metric_get(GW_M_STORE_ERRORS);
    int64_t committed = gw_metric_get(GW_M_EV_COMMITTED);
    fv_arm(FV_WRITE, 1, 1000000, SQLITE_FULL);
    first = st_submit_props(e, "t-001", ST_SESS_A, 3, 10);
    st_pump(e, NULL, st_slow(500));
    for (uint32_t t = first; t < first + 3; t++)
        CHECK_INT(e->rec[t].acked + e->rec[t].failed, 0);
    CHECK_INT(st_stored(e, first), 0);
    CHECK(gw_metric_get(GW_M_STORE_ERRORS) - errs >= 2); /* 50, 100, 200 ms back-off */
    CHECK_INT(gw_metric_get(GW_M_EV_COMMITTED), committed);
    CHECK_INT(gw_store_outbox_rows(e->s), 2);
    fv_disarm();
    /* space returns: the same batch commits, acknowledged in order */
    CHECK(st_wait_range(e, first, first + 2, 10000));
    for (uint32_t t = first; t < first + 3; t++) {
        CHECK_INT(e->rec[t].acked, 1);
        CHECK_INT(st_stored(e, t), 1);
    }
    CHECK_INT(gw_metric_get(GW_M_EV_COMMITTED) - committed, 3);
    CHECK_INT(gw_store_outbox_rows(e->s), 5);
    CHECK_INT(st_scalar(e, "SELECT COUNT(*) FROM outbox"), 5);
    st_totals t = st_audit(e);
    CHECK_INT(t.unstored + t.out_of_order + t.lost + t.dup, 0);
    st_env_free(e);
}

/* ---- completion order ---- */

static void order(void)
{
    st_env *e = st_env_new();
    e->cfg->store.batch_max = 7;
    CHECK_INT(st_open(e), 0);
    uint32_t first = e->next_token + 1;
    int with_sess = 0;
    for (int i = 0; i < 40; i++) { /* chains of 1..4 events, sessions interleaved, some none */
        int n = 1 + i % 4;
        gw_event *head = NULL, *tail = NULL;
        for (int j = 0; j < n; j++) {
            struct gw_session *sess = (i + j) % 5 == 4 ? NULL : (i + j) % 2 ? ST_SESS_B : ST_SESS_A;
            gw_event *ev = st_event(e, GW_EV_EVENT, (i + j) % 3 ? "t-001" : "t-002", sess, NULL);
            with_sess += sess != NULL;
            st_append(&head, &tail, ev);
        }
        gw_store_submit(e->s, head, tail, (size_t)n);
        if (i % 8 == 0)
            st_pump(e, NULL, 5);
    }
    uint32_t last = e->next_token;
    /* every event with a session completes, once, in submission order per session */
    int acked = 0;
    for (uint32_t t = first; t <= last; t++)
        acked += e->rec[t].acked;
    for (int64_t end = st_ms() + st_slow(10000); acked < with_sess && st_ms() < end;) {
        st_pump(e, NULL, 20);
        acked = 0;
        for (uint32_t t = first; t <= last; t++)
            acked += e->rec[t].acked;
    }
    CHECK_INT(acked, with_sess);
    st_totals t = st_audit(e);
    CHECK_INT(t.out_of_order, 0);
    CHECK_INT(t.unstored, 0);
    CHECK_INT(t.dup, 0);
    /* and every event (with a session or not) is stored, in submission order */
    CHECK_INT(st_scalar(e, "SELECT COUNT(*) FROM events WHERE kind = 'event'"), last - first + 1);
    char sql[256];
    snprintf(
        sql, sizeof(sql),
        "SELECT COUNT(*) FROM events a JOIN events b ON b.id = a.id + 1"
        " WHERE a.kind = 'event' AND b.kind = 'event'"
        " AND CAST(substr(b.msg_id, 2) AS INTEGER) != CAST(substr(a.msg_id, 2) AS INTEGER) + 1");
    CHECK_INT(st_scalar(e, sql), 0);
    CHECK_INT(gw_store_depth(e->s), 0); /* the ones without a session were freed by the writer */
    printf("  order: %u events, %d completed in order to 2 sessions in %d deliveries\n",
           last - first + 1, with_sess, e->delivers);
    st_env_free(e);
}

/* ---- online/offline events under churn ---- */

static int64_t committed_want;
static bool committed(st_env *e)
{
    (void)e;
    return gw_metric_get(GW_M_EV_COMMITTED) >= committed_want;
}

static int64_t mono_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000 + ts.tv_nsec / 1000;
}

/* the writer's tap (on the writer, after each commit): when the last batch was committed */
static int64_t tapped_us;
static void tap_time(void *arg, const gw_event *batch)
{
    (void)arg;
    (void)batch;
    __atomic_store_n(&tapped_us, mono_us(), __ATOMIC_SEQ_CST);
}

static void lifecycle_linger(void)
{
    st_env *e = st_env_new();
    e->cfg->store.batch_max = 100;
    e->cfg->store.batch_ms = 0;
    unsigned linger = gw__store_linger_ms;
    gw__store_linger_ms = st_slow(300); /* (20 ms in the gateway: widened to be seen) */
    CHECK_INT(st_open(e), 0);
    gw_store_set_tap(e->s, tap_time, NULL);

    /* online and offline events (nothing waits for their commit) wait for company: two of them
     * 20 ms apart in one transaction, committed no sooner than the wait after the first came
     * (without it, the idle writer commits the first at once, alone) */
    int64_t c0 = gw_metric_get(GW_M_EV_COMMITTED), b0 = gw_metric_get(GW_M_STORE_BATCHES);
    int64_t t0 = mono_us();
    gw_event *on = st_event(e, GW_EV_ONLINE, "t-001", NULL, NULL);
    gw_store_submit(e->s, on, on, 1);
    st_sleep_ms(20);
    gw_event *off = st_event(e, GW_EV_OFFLINE, "t-001", NULL, NULL);
    snprintf(off->name, sizeof(off->name), "closed");
    gw_store_submit(e->s, off, off, 1);
    committed_want = c0 + 2;
    CHECK(st_pump(e, committed, 10000));
    int64_t took = __atomic_load_n(&tapped_us, __ATOMIC_SEQ_CST) - t0; /* (tap, then count) */
    CHECK(took >= (int64_t)gw__store_linger_ms * 1000);
    CHECK_INT(gw_metric_get(GW_M_STORE_BATCHES) - b0, 1);
    CHECK_INT(st_scalar(e, "SELECT online FROM device_state WHERE device = 't-001'"), 0);
    printf("  online + offline: one transaction after %lld us\n", (long long)took);

    /* an event a session waits for (a report to acknowledge) ends the wait at once: the online
     * event before it goes in its transaction */
    b0 = gw_metric_get(GW_M_STORE_BATCHES);
    t0 = mono_us();
    on = st_event(e, GW_EV_ONLINE, "t-002", NULL, NULL);
    gw_store_submit(e->s, on, on, 1);
    st_sleep_ms(20);
    uint32_t f = st_submit_props(e, "t-002", ST_SESS_A, 1, 0);
    CHECK(st_wait_range(e, f, f, 10000));
    took = mono_us() - t0;
    CHECK_INT(gw_metric_get(GW_M_STORE_BATCHES) - b0, 1);
    CHECK(took < (int64_t)gw__store_linger_ms * 1000);
    CHECK_INT(st_scalar(e, "SELECT online FROM device_state WHERE device = 't-002'"), 1);
    printf("  online, then a report: one transaction, acknowledged after %lld us\n",
           (long long)took);
    st_env_free(e);
    gw__store_linger_ms = linger;
}

/* ---- state lag ---- */

static int64_t prop_value(st_env *e, const char *dev)
{
    char sql[200];
    snprintf(sql, sizeof(sql),
             "SELECT value FROM property_state WHERE device = '%s' AND property = 'temperature'",
             dev);
    return st_scalar(e, sql);
}

static int64_t writes_want;
static bool state_written(st_env *e)
{
    (void)e;
    return gw_metric_get(GW_M_STORE_STATE_WRITES) >= writes_want;
}

static void state_lag(void)
{
    st_env *e = st_env_new();
    unsigned lag = st_slow(800);
    e->cfg->store.state_lag_ms = lag;
    CHECK_INT(st_open(e), 0);

    /* an online change is written in its own transaction: visible when acknowledged */
    int64_t writes = gw_metric_get(GW_M_STORE_STATE_WRITES);
    gw_event *on = st_event(e, GW_EV_ONLINE, "t-001", ST_SESS_A, NULL);
    uint32_t tok = on->token;
    gw_store_submit(e->s, on, on, 1);
    CHECK(st_wait_range(e, tok, tok, 10000));
    CHECK_INT(st_scalar(e, "SELECT online FROM device_state WHERE device = 't-001'"), 1);
    CHECK_INT(gw_metric_get(GW_M_STORE_STATE_WRITES) - writes, 1);

    /* five reports in five batches: the state trails them, then one write has the last */
    writes = gw_metric_get(GW_M_STORE_STATE_WRITES);
    int64_t t0 = st_ms();
    for (int i = 1; i <= 5; i++) {
        uint32_t f = st_submit_props(e, "t-001", ST_SESS_A, 1, i);
        CHECK(st_wait_range(e, f, f, 10000));
    }
    int64_t acked_after = st_ms() - t0;
    if (acked_after < lag / 2) { /* the lag has not passed: nothing written yet */
        CHECK_INT(prop_value(e, "t-001"), -1);
        CHECK_INT(gw_metric_get(GW_M_STORE_STATE_WRITES), writes);
    }
    writes_want = writes + 1;
    CHECK(st_pump(e, state_written, lag * 4));
    int64_t written_after = st_ms() - t0;
    st_pump(e, NULL, 50);
    if (acked_after < lag) /* all five noted within the lag: coalesced into one write */
        CHECK_INT(gw_metric_get(GW_M_STORE_STATE_WRITES) - writes, 1);
    CHECK_INT(prop_value(e, "t-001"), 5);
    CHECK(written_after >= (int64_t)lag - 50);
    CHECK_INT(st_scalar(e, "SELECT value FROM meta WHERE key = 'state_mark'"),
              st_scalar(e, "SELECT MAX(id) FROM events"));
    printf("  state lag: 5 reports acked in %lld ms, state written once after %lld ms (lag %u)\n",
           (long long)acked_after, (long long)written_after, lag);

    /* gw_store_sync_state writes at once what is noted; with nothing noted it returns at once */
    writes = gw_metric_get(GW_M_STORE_STATE_WRITES);
    uint32_t f = st_submit_props(e, "t-001", ST_SESS_A, 1, 6);
    CHECK(st_wait_range(e, f, f, 10000));
    t0 = st_ms();
    CHECK_INT(gw_store_sync_state(e->s, 5000), 0);
    int64_t synced = st_ms() - t0;
    CHECK(synced < (int64_t)lag / 2);
    CHECK_INT(prop_value(e, "t-001"), 6);
    CHECK_INT(gw_metric_get(GW_M_STORE_STATE_WRITES) - writes, 1);
    CHECK_INT(gw_store_sync_state(e->s, 5000), 0);
    CHECK_INT(gw_metric_get(GW_M_STORE_STATE_WRITES) - writes, 1);
    printf("  sync_state: written in %lld ms\n", (long long)synced);
    st_env_free(e);
}

/* ---- the latest values, read from the reports' payloads ---- */

static const char *prop_text(st_env *e, const char *dev, const char *prop, char *buf, size_t cap)
{
    char sql[200];
    snprintf(sql, sizeof(sql),
             "SELECT value FROM property_state WHERE device = '%s' AND property = '%s'", dev, prop);
    return st_text(e, sql, buf, cap);
}

static void state_values(void)
{
    st_env *e = st_env_new();
    e->cfg->store.state_lag_ms = 600000; /* written by gw_store_sync_state only */
    CHECK_INT(st_open(e), 0);
    char buf[256];
    /* each member's text as the payload has it: nested values, strings holding , } ] \" */
    gw_event *a = st_event(e, GW_EV_PROPERTY, "m-001", ST_SESS_A,
                           "{\"pos\":{\"lat\":1.5,\"tags\":[\"a,b\",\"}\"]},\"s\":\"x\\\"y]}\","
                           "\"list\":[[1,2],[]],\"t\":21.5,\"on\":true}");
    gw_event *b = st_event(e, GW_EV_PROPERTY, "t-002", ST_SESS_A, "{\"t\":-0.0}");
    uint32_t first = a->token;
    a->next = b;
    gw_store_submit(e->s, a, b, 2);
    CHECK(st_wait_range(e, first, b->token, 10000));
    CHECK_INT(gw_store_sync_state(e->s, 5000), 0);
    CHECK_STR(prop_text(e, "m-001", "pos", buf, sizeof(buf)),
              "{\"lat\":1.5,\"tags\":[\"a,b\",\"}\"]}");
    CHECK_STR(prop_text(e, "m-001", "s", buf, sizeof(buf)), "\"x\\\"y]}\"");
    CHECK_STR(prop_text(e, "m-001", "list", buf, sizeof(buf)), "[[1,2],[]]");
    CHECK_STR(prop_text(e, "m-001", "t", buf, sizeof(buf)), "21.5");
    CHECK_STR(prop_text(e, "m-001", "on", buf, sizeof(buf)), "true");
    CHECK_STR(prop_text(e, "t-002", "t", buf, sizeof(buf)), "-0.0");
    CHECK_INT(st_scalar(e, "SELECT COUNT(*) FROM property_state"), 6);

    /* the newest report wins, however long its value (a slot's text grows) */
    a = st_event(e, GW_EV_PROPERTY, "m-001", ST_SESS_A, "{\"t\":22,\"s\":\"short\"}");
    b = st_event(e, GW_EV_PROPERTY, "m-001", ST_SESS_A,
                 "{\"s\":\"a much longer string than any before it, to outgrow the slot\"}");
    first = a->token;
    a->next = b;
    gw_store_submit(e->s, a, b, 2);
    CHECK(st_wait_range(e, first, b->token, 10000));
    CHECK_INT(gw_store_sync_state(e->s, 5000), 0);
    CHECK_STR(prop_text(e, "m-001", "t", buf, sizeof(buf)), "22");
    CHECK_STR(prop_text(e, "m-001", "s", buf, sizeof(buf)),
              "\"a much longer string than any before it, to outgrow the slot\"");
    CHECK_STR(prop_text(e, "m-001", "list", buf, sizeof(buf)), "[[1,2],[]]");
    st_env_free(e);
}

/* A member's slot is first guessed as the one that followed the previous member last time
 * (store_state.c): reports in another order, another device with the same ids, an id that is a
 * prefix of the guess's or has it as a prefix, a table that grows in the middle of a report, and
 * a report that breaks off after a new id must all still leave each id's newest value. */
static void submit_raw(st_env *e, const char *dev, const char *const *payloads, int n)
{
    gw_event *head = NULL, *tail = NULL;
    for (int i = 0; i < n; i++) {
        gw_event *ev = st_event(e, GW_EV_PROPERTY, dev, ST_SESS_A, NULL);
        ev->payload = gw_strdup(GW_AREA_EVENT, payloads[i]); /* as it is, even broken */
        st_append(&head, &tail, ev);
    }
    gw_store_submit(e->s, head, tail, (size_t)n);
    CHECK(st_wait_range(e, head->token, tail->token, 10000));
}

static void state_guesses(void)
{
    st_env *e = st_env_new();
    e->cfg->store.state_lag_ms = 600000; /* written by gw_store_sync_state only */
    CHECK_INT(st_open(e), 0);
    char buf[256];
    static const char *const m[] = {
        "{\"a\":1,\"b\":2,\"c\":3}",    "{\"a\":4,\"c\":5,\"b\":6}",
        "{\"a\":7,\"c\":8,\"cc\":9}",   "{\"a\":10,\"cc\":11,\"b\":12}",
        "{\"a\":13,\"c\":14,\"c\":15}", "{\"b\":16,\"a\":17,\"c\":18,\"zz\":",
    };
    static const char *const t[] = {"{\"a\":100,\"b\":200}", "{\"b\":300,\"a\":400}"};
    submit_raw(e, "m-001", m, 3);
    submit_raw(e, "t-002", t, 1);
    submit_raw(e, "m-001", m + 3, 3);
    submit_raw(e, "t-002", t + 1, 1);
    CHECK_INT(gw_store_sync_state(e->s, 5000), 0);
    CHECK_STR(prop_text(e, "m-001", "a", buf, sizeof(buf)), "17");
    CHECK_STR(prop_text(e, "m-001", "b", buf, sizeof(buf)), "16");
    CHECK_STR(prop_text(e, "m-001", "c", buf, sizeof(buf)), "18");
    CHECK_STR(prop_text(e, "m-001", "cc", buf, sizeof(buf)), "11");
    CHECK_STR(prop_text(e, "t-002", "a", buf, sizeof(buf)), "400");
    CHECK_STR(prop_text(e, "t-002", "b", buf, sizeof(buf)), "300");
    /* "zz" broke off before its value: no row */
    CHECK_INT(st_scalar(e, "SELECT COUNT(*) FROM property_state"), 6);

    /* 600 members in one report: the table (1,024 slots, grown at half full) grows in its
     * middle; then the same members again, guessed from the chain the grown table kept */
    char big[600 * 16 + 2];
    for (int round = 0; round < 2; round++) {
        size_t len = 0;
        big[len++] = '{';
        for (int i = 0; i < 600; i++)
            len += (size_t)snprintf(big + len, sizeof(big) - len, "%s\"p%d\":%d", i ? "," : "", i,
                                    i * 10 + round);
        big[len++] = '}';
        big[len] = 0;
        const char *one[] = {big};
        submit_raw(e, "m-001", one, 1);
    }
    CHECK_INT(gw_store_sync_state(e->s, 5000), 0);
    CHECK_INT(st_scalar(e, "SELECT COUNT(*) FROM property_state WHERE device = 'm-001'"), 604);
    CHECK_INT(st_scalar(e, "SELECT COUNT(*) FROM property_state WHERE device = 'm-001' AND"
                           " property LIKE 'p%' AND CAST(value AS INTEGER) ="
                           " CAST(substr(property, 2) AS INTEGER) * 10 + 1"),
              600);
    st_env_free(e);
}

/* storage.page_size: a new database takes it; an existing one keeps its own. */
static void page_size(void)
{
    st_env *e = st_env_new();
    e->cfg->store.page_size = 8192;
    CHECK_INT(st_open(e), 0);
    uint32_t first = st_submit_props(e, "m-001", ST_SESS_A, 3, 20);
    CHECK(st_wait_range(e, first, first + 2, 10000));
    CHECK_INT(st_scalar(e, "PRAGMA page_size"), 8192);
    st_close(e);
    e->cfg->store.page_size = 65536; /* the same file again */
    CHECK_INT(st_open(e), 0);
    CHECK_INT(st_scalar(e, "PRAGMA page_size"), 8192);
    CHECK_INT(st_scalar(e, "SELECT COUNT(*) FROM events WHERE kind = 'property'"), 3);
    st_env_free(e);
}

/* ---- event rows: every column as submitted ---- */

/* The insert statements keep a text parameter bound while it is the same pointer and length
 * (store_events.c): rows of changing devices, products, kinds, names and msg_ids, and payloads of
 * one length freed and allocated again (the same addresses, other bytes), batch after batch,
 * each read back column by column. */
static void row_columns(void)
{
    static const char *const devs[] = {"t-001", "m-001", "t-002"};
    static const char *const products[] = {"thermo", "meter", "thermo"};
    static const gw_event_kind kinds[] = {GW_EV_PROPERTY, GW_EV_EVENT,    GW_EV_PROPERTY,
                                          GW_EV_OFFLINE,  GW_EV_PROPERTY, GW_EV_ONLINE};
    enum { ROUNDS = 12, PER = 127 }; /* 64 + 32 + 16 + 8 + 4 + 2 + 1 rows: every statement */
    st_env *e = st_env_new();
    e->cfg->store.batch_max = PER;
    CHECK_INT(st_open(e), 0);
    int bad = 0, rows = 0;
    int64_t batches = gw_metric_get(GW_M_STORE_BATCHES);
    for (int r = 0; r < ROUNDS; r++) {
        gw_event *head = NULL, *tail = NULL;
        uint32_t first = e->next_token + 1;
        for (int i = 0; i < PER; i++) {
            int x = r * PER + i;
            gw_event_kind k = kinds[(x / (1 + r % 3)) % 6];
            char v[64];
            snprintf(v, sizeof(v), "{\"temperature\":%d}", 100 + x % 900);
            gw_event *ev = st_event(e, k, devs[(x / (1 + r % 2)) % 3], ST_SESS_A,
                                    k == GW_EV_PROPERTY ? v : NULL);
            if (k == GW_EV_EVENT)
                snprintf(ev->name, sizeof(ev->name), "alarm%d", x % 2);
            if (x % 5 == 0)
                ev->msg_id[0] = 0; /* no msg_id: NULL */
            if (tail)
                tail->next = ev;
            else
                head = ev;
            tail = ev;
        }
        gw_store_submit(e->s, head, tail, PER);
        CHECK(st_wait_range(e, first, tail->token, 10000));
    }
    CHECK_INT(gw_metric_get(GW_M_STORE_BATCHES) - batches, ROUNDS); /* a round, a batch */
    sqlite3_stmt *st;
    CHECK_INT(sqlite3_prepare_v2(st_check_db(e),
                                 "SELECT device, product, kind, name, msg_id, payload FROM events"
                                 " ORDER BY id",
                                 -1, &st, NULL),
              SQLITE_OK);
    for (int x = 0; sqlite3_step(st) == SQLITE_ROW; x++, rows++) {
        int r = x / PER;
        gw_event_kind k = kinds[(x / (1 + r % 3)) % 6];
        int d = (x / (1 + r % 2)) % 3;
        char v[64], name[16], msg[16];
        snprintf(v, sizeof(v), "{\"temperature\":%d}", 100 + x % 900);
        snprintf(name, sizeof(name), k == GW_EV_EVENT ? "alarm%d" : "test", x % 2);
        snprintf(msg, sizeof(msg), "m%d", x + 1);
        const char *col[6];
        for (int c = 0; c < 6; c++)
            col[c] = (const char *)sqlite3_column_text(st, c);
        bool ok = col[0] && !strcmp(col[0], devs[d]) && col[1] && !strcmp(col[1], products[d]) &&
                  col[2] && !strcmp(col[2], gw_event_kind_name(k));
        ok = ok &&
             (k == GW_EV_EVENT || k == GW_EV_OFFLINE ? col[3] && !strcmp(col[3], name) : !col[3]);
        ok = ok && (x % 5 == 0 ? !col[4] : col[4] && !strcmp(col[4], msg));
        ok = ok && (k == GW_EV_PROPERTY ? col[5] && !strcmp(col[5], v) : !col[5]);
        if (!ok && bad++ < 5)
            printf("  row %d: %s %s %s %s %s %s\n", x, col[0], col[1], col[2], col[3], col[4],
                   col[5]);
    }
    sqlite3_finalize(st);
    CHECK_INT(rows, ROUNDS * PER);
    CHECK_INT(bad, 0);
    st_env_free(e);
}

/* ---- replay after a crash ---- */

static void copy_file(const char *from, const char *to)
{
    char buf[65536];
    int in = open(from, O_RDONLY), out = open(to, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ssize_t n;
    if (in < 0 || out < 0)
        st_die("copy_file: open");
    while ((n = read(in, buf, sizeof(buf))) > 0)
        if (write(out, buf, (size_t)n) != n)
            st_die("copy_file: write");
    close(in);
    close(out);
}

static void replay(void)
{
    st_env *e = st_env_new();
    e->cfg->store.state_lag_ms = 600000;
    CHECK_INT(st_open(e), 0);
    gw_event *on = st_event(e, GW_EV_ONLINE, "t-002", ST_SESS_A, NULL);
    uint32_t first = on->token;
    st_submit1(e, on);
    CHECK(st_wait_range(e, first, first, 10000));
    int64_t mark = st_scalar(e, "SELECT value FROM meta WHERE key = 'state_mark'");
    for (int i = 1; i <= 4; i++) {
        uint32_t f = st_submit_props(e, "t-002", ST_SESS_A, 1, 20 + i);
        CHECK(st_wait_range(e, f, f, 10000));
    }
    gw_event *ev = st_event(e, GW_EV_EVENT, "t-002", ST_SESS_A, NULL);
    uint32_t last = ev->token;
    st_submit1(e, ev);
    CHECK(st_wait_range(e, last, last, 10000));
    CHECK_INT(prop_value(e, "t-002"), -1); /* the state is not written yet */

    /* the crash: the files as they are now (the writer is idle: everything is acknowledged) */
    char db[200], wal[220], from[300];
    snprintf(db, sizeof(db), "%s/crash.db", e->dir);
    snprintf(wal, sizeof(wal), "%s/crash.db-wal", e->dir);
    snprintf(from, sizeof(from), "%s-wal", e->path);
    copy_file(e->path, db);
    copy_file(from, wal);
    st_close(e); /* this one writes its state at the stop */
    CHECK_INT(prop_value(e, "t-002"), 24);
    st_check_close(e);

    /* the restart on the crashed files: 5 events past the mark are replayed */
    snprintf(e->path, sizeof(e->path), "%s", db);
    free(e->cfg->store.path);
    e->cfg->store.path = strdup(db);
    CHECK_INT(st_scalar(e, "SELECT value FROM meta WHERE key = 'state_mark'"), mark);
    CHECK_INT(prop_value(e, "t-002"), -1);
    st_check_close(e);
    int64_t replayed = gw_metric_get(GW_M_STORE_STATE_REPLAYED);
    CHECK_INT(st_open(e), 0);
    CHECK_INT(gw_metric_get(GW_M_STORE_STATE_REPLAYED) - replayed, 5);
    CHECK_INT(prop_value(e, "t-002"), 24);
    CHECK_INT(st_scalar(e, "SELECT last_seen FROM device_state WHERE device = 't-002'"),
              st_scalar(e, "SELECT MAX(rx_ts) FROM events WHERE device = 't-002'"
                           " AND kind IN ('property', 'event')"));
    CHECK_INT(st_scalar(e, "SELECT value FROM meta WHERE key = 'state_mark'"),
              st_scalar(e, "SELECT MAX(id) FROM events WHERE kind IN ('property', 'event')"));
    /* the crash left t-002 online: the start closes it (reason "restart") */
    CHECK_INT(st_scalar(e, "SELECT online FROM device_state WHERE device = 't-002'"), 0);
    CHECK_INT(st_scalar(e, "SELECT COUNT(*) FROM events WHERE kind = 'offline'"
                           " AND name = 'restart'"),
              1);
    st_totals t = st_audit(e);
    CHECK_INT(t.lost + t.dup, 0);
    CHECK(st_integrity_ok(e));

    /* a clean stop after that: nothing to replay at the next start */
    st_close(e);
    replayed = gw_metric_get(GW_M_STORE_STATE_REPLAYED);
    CHECK_INT(st_open(e), 0);
    CHECK_INT(gw_metric_get(GW_M_STORE_STATE_REPLAYED), replayed);
    st_env_free(e);
}

int main(void)
{
    setvbuf(stdout, NULL, _IOLBF, 0);
    if (fv_install() != SQLITE_OK)
        st_die("faultvfs");
    if (!getenv("STORE_TEST_LOG"))
        gw_log_level = GW_LOG_ERROR + 1; /* the retries' error lines are expected */
    batching();
    retry();
    order();
    lifecycle_linger();
    state_lag();
    state_values();
    state_guesses();
    page_size();
    row_columns();
    replay();
    TEST_MAIN_END();
}

/* store_test.h: what the store unit tests share (header-only): the shipped configuration pointed
 * at a database in a temp dir, an in-process libuv loop that receives the writer's completions
 * (as runtime's inbox does) and checks at each acknowledgement that the event is committed, read
 * through a connection of its own on the real "unix" VFS (past any injected fault). */
#ifndef GW_TEST_STORE_TEST_H
#define GW_TEST_STORE_TEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <ftw.h>
#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdbool.h>
#include <stdint.h>
#include <time.h>
#include <unistd.h>
#include <uv.h>

#include "config/config.h"
#include "gateway/registry.h"
#include "gateway/util/json_write.h"
#include "gateway/util/metrics.h"
#include "storage/store.h"
#include "test.h"

#define ST_MAX_EV 20000 /* events (tokens) one test run may submit */

/* Two completion targets: runtime delivers to the event's session's loop; these markers stand for
 * two sessions (the test clears ev->sess before gw_store_event_done). */
static char st_sess_a __attribute__((unused)), st_sess_b __attribute__((unused));
#define ST_SESS_A ((struct gw_session *)&st_sess_a)
#define ST_SESS_B ((struct gw_session *)&st_sess_b)

typedef struct st_rec {
    int submitted;
    int acked;    /* completions with status 0 */
    int failed;   /* completions with a negative status */
    int unstored; /* acknowledged, but not in the database when acknowledged */
    int out_of_order;
} st_rec;

typedef struct st_env {
    char dir[128];
    char path[256];
    gw_config *cfg;
    gw_store *s;
    uv_loop_t loop;
    uv_async_t async;
    uv_timer_t tick;
    pthread_mutex_t mu;
    gw_event *inbox, **inbox_tail; /* delivered by the writer, not yet taken by the loop */
    int delivers;                  /* deliver calls (one per committed batch with sessions) */
    int closing;    /* under mu: the store is being closed, completions are taken on the writer */
    int chain[256]; /* events per deliver call (the first 256) */
    sqlite3 *check; /* the checker's connection ("unix" VFS) */
    sqlite3_stmt *by_msg;
    uint32_t next_token;
    uint32_t last_a, last_b; /* newest token completed per session (order check) */
    st_rec rec[ST_MAX_EV];
} st_env;

static inline st_env *st_env_new(void);

static inline void st_die(const char *what)
{
    fprintf(stderr, "fatal: %s\n", what);
    exit(2);
}

static inline int64_t st_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline void st_sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* Time-outs scale under the sanitizers. */
static inline unsigned st_slow(unsigned ms)
{
    const char *s = getenv("IOTGW_SANITIZED");
#ifdef GW_SANITIZED
    s = "1";
#endif
    return s && *s && strcmp(s, "0") != 0 ? ms * 5 : ms;
}

/* ---- the checker: reads the database past the faults ---- */

static inline void st_check_close(st_env *e)
{
    sqlite3_finalize(e->by_msg);
    e->by_msg = NULL;
    if (e->check)
        sqlite3_close(e->check);
    e->check = NULL;
}

static inline sqlite3 *st_check_db(st_env *e)
{
    if (!e->check) {
        if (sqlite3_open_v2(e->path, &e->check, SQLITE_OPEN_READWRITE, "unix") != SQLITE_OK)
            st_die(sqlite3_errmsg(e->check));
        sqlite3_busy_timeout(e->check, 5000);
    }
    return e->check;
}

/* The first column of the first row of sql as an integer (-1: no row or an error). */
static inline int64_t st_scalar(st_env *e, const char *sql)
{
    sqlite3_stmt *st;
    int64_t v = -1;
    if (sqlite3_prepare_v2(st_check_db(e), sql, -1, &st, NULL) != SQLITE_OK) {
        fprintf(stderr, "st_scalar: %s: %s\n", sql, sqlite3_errmsg(e->check));
        return -1;
    }
    if (sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

/* The first column of the first row as text, in buf ("" if none). */
static inline const char *st_text(st_env *e, const char *sql, char *buf, size_t cap)
{
    sqlite3_stmt *st;
    buf[0] = 0;
    if (sqlite3_prepare_v2(st_check_db(e), sql, -1, &st, NULL) != SQLITE_OK)
        return buf;
    if (sqlite3_step(st) == SQLITE_ROW && sqlite3_column_text(st, 0))
        snprintf(buf, cap, "%s", (const char *)sqlite3_column_text(st, 0));
    sqlite3_finalize(st);
    return buf;
}

static inline bool st_integrity_ok(st_env *e)
{
    char buf[256];
    st_text(e, "PRAGMA integrity_check", buf, sizeof(buf));
    if (strcmp(buf, "ok") != 0)
        fprintf(stderr, "integrity_check: %s\n", buf);
    return strcmp(buf, "ok") == 0;
}

/* Rows of events with this token's msg_id. */
static inline int64_t st_stored(st_env *e, uint32_t token)
{
    char id[32];
    snprintf(id, sizeof(id), "m%u", token);
    if (!e->by_msg &&
        sqlite3_prepare_v2(st_check_db(e), "SELECT COUNT(*) FROM events WHERE msg_id = ?1", -1,
                           &e->by_msg, NULL) != SQLITE_OK)
        st_die(sqlite3_errmsg(e->check));
    sqlite3_bind_text(e->by_msg, 1, id, -1, SQLITE_TRANSIENT);
    int64_t n = sqlite3_step(e->by_msg) == SQLITE_ROW ? sqlite3_column_int64(e->by_msg, 0) : -1;
    sqlite3_reset(e->by_msg);
    return n;
}

/* ---- the loop: completions ---- */

/* Writer thread: what runtime's completion does, a hand-over to the loop. */
static inline void st_take(st_env *e);

static inline void st_deliver(void *arg, gw_event *head)
{
    st_env *e = arg;
    int n = 0;
    gw_event *tail = head;
    for (gw_event *ev = head; ev; ev = ev->next) {
        n++;
        tail = ev;
    }
    pthread_mutex_lock(&e->mu);
    if (e->delivers < (int)(sizeof(e->chain) / sizeof(e->chain[0])))
        e->chain[e->delivers] = n;
    e->delivers++;
    *e->inbox_tail = head;
    e->inbox_tail = &tail->next;
    int closing = e->closing;
    pthread_mutex_unlock(&e->mu);
    if (closing) /* the loop waits in gw_store_close: released before the store goes */
        st_take(e);
    else
        uv_async_send(&e->async);
}

/* Loop thread: each completed event is checked (stored if acknowledged, in order per session)
 * and released, as an adapter would after sending its ack. */
static inline void st_take(st_env *e)
{
    pthread_mutex_lock(&e->mu);
    gw_event *ev = e->inbox;
    e->inbox = NULL;
    e->inbox_tail = &e->inbox;
    pthread_mutex_unlock(&e->mu);
    while (ev) {
        gw_event *next = ev->next;
        st_rec *r = &e->rec[ev->token];
        uint32_t *last = ev->sess == ST_SESS_A ? &e->last_a : &e->last_b;
        if (ev->token <= *last)
            r->out_of_order++;
        *last = ev->token;
        if (ev->status == 0) {
            r->acked++;
            if (st_stored(e, ev->token) < 1)
                r->unstored++;
        } else {
            r->failed++;
        }
        ev->sess = NULL;
        gw_store_event_done(e->s, ev);
        ev = next;
    }
}

static inline void st_async_cb(uv_async_t *a)
{
    st_take(a->data);
}

static inline void st_tick_cb(uv_timer_t *t)
{
    (void)t;
}

/* Runs the loop until cond(e) or ms pass. True if cond held. */
static inline bool st_pump(st_env *e, bool (*cond)(st_env *e), unsigned ms)
{
    int64_t end = st_ms() + st_slow(ms);
    for (;;) {
        st_take(e);
        if (cond && cond(e))
            return true;
        if (st_ms() >= end)
            return false;
        uv_run(&e->loop, UV_RUN_ONCE);
    }
}

/* ---- events ---- */

/* A new event of token e->next_token (msg_id "m<token>") for session sess (NULL: no completion).
 * values: property values (a JSON object text) for GW_EV_PROPERTY, else NULL. */
static inline gw_event *st_event(st_env *e, gw_event_kind kind, const char *dev_id,
                                 struct gw_session *sess, const char *values)
{
    const gw_device *dev = gw_config_device(e->cfg, dev_id);
    if (!dev || e->next_token + 1 >= ST_MAX_EV)
        st_die("st_event: no such device, or too many events");
    gw_event *ev = gw_store_event_new(e->s, kind, dev);
    if (!ev)
        st_die("st_event: out of memory");
    ev->token = ++e->next_token;
    snprintf(ev->msg_id, sizeof(ev->msg_id), "m%u", ev->token);
    ev->sess = sess;
    if (values) { /* compact, as the gateway writes a report */
        json_t *v = json_loads(values, 0, NULL);
        ev->payload = gw_json_write(v);
        json_decref(v);
    }
    if (kind == GW_EV_OFFLINE)
        snprintf(ev->name, sizeof(ev->name), "test");
    e->rec[ev->token].submitted++;
    return ev;
}

/* Appends ev to the chain head..tail (both NULL: empty). */
static inline void st_append(gw_event **head, gw_event **tail, gw_event *ev)
{
    if (*tail)
        (*tail)->next = ev;
    else
        *head = ev;
    *tail = ev;
}

/* Submits n property events of dev (temperature = base, base+1, ...) in one chain for sess.
 * Returns the first token. */
static inline uint32_t st_submit_props(st_env *e, const char *dev_id, struct gw_session *sess,
                                       int n, int base)
{
    gw_event *head = NULL, *tail = NULL;
    uint32_t first = e->next_token + 1;
    for (int i = 0; i < n; i++) {
        char v[64];
        snprintf(v, sizeof(v), "{\"temperature\": %d}", base + i);
        st_append(&head, &tail, st_event(e, GW_EV_PROPERTY, dev_id, sess, v));
    }
    gw_store_submit(e->s, head, tail, (size_t)n);
    return first;
}

static inline void st_submit1(st_env *e, gw_event *ev)
{
    gw_store_submit(e->s, ev, ev, 1);
}

/* Tokens from..to: all completed (acked or failed). */
static uint32_t st_from, st_to;
static inline bool st_done_range(st_env *e)
{
    for (uint32_t t = st_from; t <= st_to; t++)
        if (!e->rec[t].acked && !e->rec[t].failed)
            return false;
    return true;
}

static inline bool st_wait_range(st_env *e, uint32_t from, uint32_t to, unsigned ms)
{
    st_from = from;
    st_to = to;
    return st_pump(e, st_done_range, ms);
}

/* ---- set-up ---- */

static inline int st_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* The shipped configuration, its database in a fresh temp dir. */
static inline st_env *st_env_new(void)
{
    st_env *e = calloc(1, sizeof(*e));
    gw_diag diag = {0};
    if (!e)
        st_die("calloc");
    snprintf(e->dir, sizeof(e->dir), "/tmp/gw-store-test-XXXXXX");
    if (!mkdtemp(e->dir))
        st_die("mkdtemp");
    snprintf(e->path, sizeof(e->path), "%s/t.db", e->dir);
    if (gw_config_load("../../config/gateway.json", gw_registry_config_plugins(), &e->cfg, &diag)) {
        for (size_t i = 0; i < diag.n; i++)
            fprintf(stderr, "diag: %s\n", diag.msgs[i]);
        st_die("config");
    }
    gw_diag_free(&diag);
    free(e->cfg->store.path);
    e->cfg->store.path = strdup(e->path);
    e->cfg->store.synchronous = GW_SYNC_FULL;
    pthread_mutex_init(&e->mu, NULL);
    e->inbox_tail = &e->inbox;
    uv_loop_init(&e->loop);
    uv_async_init(&e->loop, &e->async, st_async_cb);
    e->async.data = e;
    uv_timer_init(&e->loop, &e->tick);
    uv_timer_start(&e->tick, st_tick_cb, 5, 5); /* st_pump's deadline is checked every 5 ms */
    return e;
}

/* Opens the store and starts its writer with the completions going to the loop. */
static inline int st_open(st_env *e)
{
    gw_error err = {0};
    int rc = gw_store_open(&e->s, e->cfg, &err);
    if (rc) {
        fprintf(stderr, "store open: %s\n", err.msg);
        return rc;
    }
    gw_store_set_completion(e->s, st_deliver, NULL, e);
    if (gw_store_start(e->s, NULL, NULL))
        st_die("store start");
    return 0;
}

/* Stops the writer (it commits what is queued) and closes the store; completions are taken
 * (those of the last batches on the writer thread, while the loop thread waits here). */
static inline void st_close(st_env *e)
{
    st_take(e);
    pthread_mutex_lock(&e->mu);
    e->closing = 1;
    pthread_mutex_unlock(&e->mu);
    st_take(e);
    gw_store_close(e->s);
    e->s = NULL;
    e->closing = 0;
}

static inline void st_env_free(st_env *e)
{
    if (e->s)
        st_close(e);
    st_check_close(e);
    uv_close((uv_handle_t *)&e->async, NULL);
    uv_close((uv_handle_t *)&e->tick, NULL);
    uv_run(&e->loop, UV_RUN_DEFAULT);
    uv_loop_close(&e->loop);
    gw_config_free(e->cfg);
    nftw(e->dir, st_rm, 8, FTW_DEPTH | FTW_PHYS);
    pthread_mutex_destroy(&e->mu);
    free(e);
}

/* Totals over every token submitted. */
typedef struct st_totals {
    int acked, failed, unstored, out_of_order, lost, dup;
} st_totals;

/* Checks every record against the database: acknowledged events stored once (lost / dup),
 * failed ones not stored (dup counts them too). */
static inline st_totals st_audit(st_env *e)
{
    st_totals t = {0};
    for (uint32_t i = 1; i <= e->next_token; i++) {
        st_rec *r = &e->rec[i];
        t.acked += r->acked;
        t.failed += r->failed;
        t.unstored += r->unstored;
        t.out_of_order += r->out_of_order;
        if (!r->acked && !r->failed)
            continue;
        int64_t n = st_stored(e, i);
        if (r->acked && n < 1)
            t.lost++;
        if ((r->acked && n > 1) || (r->failed && n > 0))
            t.dup++;
    }
    return t;
}

#endif

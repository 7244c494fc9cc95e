/* store_writer.c: the store queue and its one writer thread. Events are committed in batches (up
 * to batch_max, or batch_ms after the first one), each event's device and property state is noted
 * for store_state.c, and only after COMMIT are events handed back to their loops to be
 * acknowledged; events that would pass the outbox budget wait in the queue, unacknowledged. */
#include "internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "../gateway/util/alloc.h"
#include "../gateway/util/json_write.h"
#include "../gateway/util/log.h"
#include "../gateway/util/metrics.h"

int64_t gw_now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

struct timespec gw__store_deadline(int64_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    if (ms < 0)
        ms = 0;
    ts.tv_sec += (time_t)(ms / 1000);
    ts.tv_nsec += (long)(ms % 1000) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static const char *const kind_names[GW_EV__COUNT] = {"property",   "event",          "online",
                                                     "offline",    "function_reply", "write_reply",
                                                     "read_reply", "command"};

const char *gw_event_kind_name(gw_event_kind k)
{
    return (unsigned)k < GW_EV__COUNT ? kind_names[k] : "?";
}

/* A device's online or offline event: no loop waits for its commit (nothing is acknowledged by
 * it), so under connection churn the writer lets it wait gw__store_linger_ms for company instead
 * of committing a transaction per event. 20 ms: at 1,500 resumed TLS connections a second the
 * writer spends about 10 us of CPU per connection instead of about 40 at 2 ms (fewer WAL pages
 * written and locks taken per event; docs/PERFORMANCE.md, "TLS", fourth pass); a presence
 * change reaches the database and the north side at most that much later. */
unsigned gw__store_linger_ms = 20;

static bool lifecycle(const gw_event *ev)
{
    return (ev->kind == GW_EV_ONLINE || ev->kind == GW_EV_OFFLINE) && !ev->sess;
}

/* ---- queue side (any thread) ---- */

/* The queue's high-water mark: each raise adds its step to the gauge, whose shards then sum to the
 * peak (docs/STORAGE.md, "The bound of the store queue"). */
static void note_peak(gw_store *s, int64_t d)
{
    int64_t old = __atomic_load_n(&s->peak, __ATOMIC_RELAXED);
    while (d > old) {
        if (__atomic_compare_exchange_n(&s->peak, &old, d, true, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED)) {
            gw_metric_add(GW_M_STORE_DEPTH_MAX, d - old);
            return;
        }
    }
}

gw_event *gw_store_event_new(gw_store *s, gw_event_kind kind, const gw_device *dev)
{
    gw_event *ev = gw_malloc(GW_AREA_EVENT, sizeof(*ev));
    if (!ev)
        return NULL;
    ev->next = NULL;
    ev->kind = kind;
    ev->dev = dev;
    if (dev)
        gw_config_retain(dev->gen); /* a reload may replace dev's generation meanwhile */
    ev->rx_ts = ev->ts = gw_now_ms();
    ev->msg_id[0] = ev->name[0] = 0;
    ev->payload = NULL;
    ev->sess = NULL;
    ev->token = 0;
    ev->status = 0;
    ev->cmd_op = ev->cmd_status = NULL;
    ev->gateway_made = false;
    int64_t d = __atomic_add_fetch(&s->depth, 1, __ATOMIC_RELAXED);
    if (d >= s->max && !__atomic_load_n(&s->full_seen, __ATOMIC_RELAXED))
        __atomic_store_n(&s->full_seen, 1, __ATOMIC_RELAXED);
    gw_metric_inc(GW_M_STORE_DEPTH);
    note_peak(s, d);
    return ev;
}

void gw_store_event_done(gw_store *s, gw_event *ev)
{
    gw_free(GW_AREA_EVENT, ev->payload);
    if (ev->sess && s->release)
        s->release(ev->sess);
    if (ev->dev)
        gw_config_release(ev->dev->gen);
    gw_free(GW_AREA_EVENT, ev);
    gw_metric_add(GW_M_STORE_DEPTH, -1);
    int64_t d = __atomic_sub_fetch(&s->depth, 1, __ATOMIC_RELAXED);
    if (d <= s->low && __atomic_load_n(&s->full_seen, __ATOMIC_RELAXED) &&
        !__atomic_load_n(&s->ob.full, __ATOMIC_ACQUIRE) &&
        __atomic_exchange_n(&s->full_seen, 0, __ATOMIC_ACQ_REL) && s->on_drain)
        s->on_drain(s->drain_arg);
}

bool gw_store_full(const gw_store *s)
{
    if (__atomic_load_n(&s->ob.full, __ATOMIC_ACQUIRE)) {
        /* a reader pauses: the writer's "outbox below budget" must resume it */
        __atomic_store_n(&((gw_store *)s)->full_seen, 1, __ATOMIC_RELEASE);
        return true;
    }
    return __atomic_load_n(&s->depth, __ATOMIC_RELAXED) >= s->max;
}

int64_t gw_store_depth(const gw_store *s)
{
    return __atomic_load_n(&s->depth, __ATOMIC_RELAXED);
}

int64_t gw_store_held(const gw_store *s)
{
    return __atomic_load_n(&s->held, __ATOMIC_RELAXED);
}

void gw_store_release_held(gw_store *s)
{
    pthread_mutex_lock(&s->mu);
    s->unheld = 1;
    pthread_mutex_unlock(&s->mu);
    pthread_cond_signal(&s->cond);
}

void gw_store_submit(gw_store *s, gw_event *head, gw_event *tail, size_t n)
{
    int wake;
    if (!head)
        return;
    tail->next = NULL;
    pthread_mutex_lock(&s->mu);
    if (s->tail)
        s->tail->next = head;
    else
        s->head = head;
    s->tail = tail;
    s->qlen += n;
    /* (a writer lingering over lifecycle events is not woken by one more) */
    wake = s->writer_waiting == 1 || (s->writer_waiting == 2 && !(n == 1 && lifecycle(head)));
    pthread_mutex_unlock(&s->mu);
    if (wake)
        pthread_cond_signal(&s->cond);
}

void gw_store_set_completion(gw_store *s, void (*deliver)(void *arg, gw_event *head),
                             void (*release)(struct gw_session *sess), void *arg)
{
    s->deliver = deliver;
    s->release = release;
    s->deliver_arg = arg;
}

int64_t gw_store_commit_us(const gw_store *s)
{
    return __atomic_load_n(&s->commit_us_last, __ATOMIC_RELAXED);
}

void gw_store_set_tap(gw_store *s, void (*fn)(void *arg, const gw_event *batch), void *arg)
{
    s->tap_arg = arg;
    __atomic_store_n(&s->tap, fn, __ATOMIC_RELEASE);
}

/* ---- writer thread ---- */

int gw__store_step(sqlite3_stmt *st)
{
    int rc = sqlite3_step(st);
    sqlite3_reset(st);
    return rc == SQLITE_DONE || rc == SQLITE_ROW ? 0 : -rc;
}

void gw__store_rollback(gw_store *s, int rc)
{
    int sql = -rc; /* the SQLite code */
    int code = sqlite3_extended_errcode(s->db);
    if ((code & 0xff) == (sql & 0xff)) {
        snprintf(s->err_msg, sizeof(s->err_msg), "%s", sqlite3_errmsg(s->db));
    } else { /* not SQLite's own (SQLITE_NOMEM of a note): its generic text */
        code = sql;
        snprintf(s->err_msg, sizeof(s->err_msg), "%s", sqlite3_errstr(sql));
    }
    s->err_code = code;
    gw__store_step(s->rollback);
}

/* iotgw_store_commit_failures_total{reason}: a failed transaction's reason, by its SQLite code. */
static const struct {
    const char *reason;
    gw_metric metric;
} fail_kinds[] = {{"full", GW_M_STORE_FAIL_FULL},
                  {"ioerr", GW_M_STORE_FAIL_IOERR},
                  {"busy", GW_M_STORE_FAIL_BUSY},
                  {"corrupt", GW_M_STORE_FAIL_CORRUPT},
                  {"other", GW_M_STORE_FAIL_OTHER}};

static unsigned fail_kind(int code)
{
    switch (code & 0xff) {
    case SQLITE_FULL:
        return 0;
    case SQLITE_IOERR:
        return 1;
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
        return 2;
    case SQLITE_CORRUPT:
    case SQLITE_NOTADB:
        return 3;
    default:
        return 4;
    }
}

/* The SQLite code a failed transaction (rc, a negated SQLite code) is reported by: its failing
 * statement's own (err_code). */
static int fail_code(const gw_store *s, int rc)
{
    return s->err_code ? s->err_code : -rc;
}

/* Counts a failed transaction (rc) by its own error and marks the store failing for /health; a
 * success (rc 0) clears the mark. Writer thread. */
static void commit_outcome(gw_store *s, int rc)
{
    if (!rc) {
        if (__atomic_load_n(&s->failing, __ATOMIC_RELAXED))
            __atomic_store_n(&s->failing, 0, __ATOMIC_RELAXED);
        return;
    }
    gw_metric_inc(GW_M_STORE_ERRORS);
    gw_metric_inc(fail_kinds[fail_kind(fail_code(s, rc))].metric);
    __atomic_store_n(&s->failing, fail_code(s, rc), __ATOMIC_RELAXED);
}

const char *gw_store_failing(const gw_store *s, const char **detail)
{
    int code = __atomic_load_n(&s->failing, __ATOMIC_RELAXED);
    if (!code)
        return NULL;
    if (detail)
        *detail = sqlite3_errstr(code);
    return fail_kinds[fail_kind(code)].reason;
}

/* After its row (id): an event's outbox row and state note, or a command's log row. */
static int after_row(gw_store *s, const gw_event *ev, int64_t id)
{
    if (ev->kind == GW_EV_COMMAND)
        return gw__outbox_command(s, ev);
    int rc = gw__outbox_event(s, ev, id);
    return rc ? rc : gw__state_note(s, ev, id);
}

/* One transaction for the whole batch, its event rows GW__INS_MAX events at a time. 0, or a
 * negated SQLite code (the batch was rolled back). */
static int commit_batch(gw_store *s, gw_event *batch)
{
    int rc = gw__store_step(s->begin);
    if (!rc && !s->next_id) /* the first batch, or the first after a rollback */
        rc = gw__events_sync_id(s);
    for (gw_event *ev = batch; ev && !rc;) {
        gw_event *end = ev;
        size_t rows = 0;
        for (size_t n = 0; end && n < GW__INS_MAX; end = end->next, n++)
            rows += end->kind != GW_EV_COMMAND;
        int64_t id = s->next_id;
        rc = gw__events_insert(s, ev, end, rows);
        for (; ev != end && !rc; ev = ev->next)
            rc = after_row(s, ev, ev->kind == GW_EV_COMMAND ? 0 : id++);
        ev = end;
    }
    if (!rc && gw__state_due(s))
        rc = gw__state_write(s);
    if (!rc)
        rc = gw__outbox_maintain(s);
    if (!rc)
        rc = gw__store_step(s->commit);
    if (rc) {
        gw__store_rollback(s, rc);
        s->next_id = 0; /* the ids it took are free again: read MAX(id) again */
    }
    gw__outbox_after(s, rc == 0);
    gw__history_after(s, rc == 0);
    gw__state_after(s, rc == 0);
    return rc;
}

static void complete_batch(gw_store *s, gw_event *batch, size_t n, int status)
{
    gw_event *back = NULL, **backp = &back;
    void (*tap)(void *, const gw_event *) = __atomic_load_n(&s->tap, __ATOMIC_ACQUIRE);
    if (status == 0 && tap)
        tap(s->tap_arg, batch);
    while (batch) {
        gw_event *ev = batch;
        batch = ev->next;
        ev->status = status;
        if (ev->sess && s->deliver) {
            *backp = ev;
            backp = &ev->next;
        } else {
            gw_store_event_done(s, ev);
        }
    }
    *backp = NULL;
    if (status == 0) {
        gw_metric_add(GW_M_EV_COMMITTED, (int64_t)n);
        gw_metric_inc(GW_M_STORE_BATCHES);
    }
    if (back)
        s->deliver(s->deliver_arg, back);
}

/* The gateway's own command bookkeeping (command log rows, its outcomes of commands) is never
 * held for the outbox budget: the north thread makes most of it, and the north thread must keep
 * reading the PUBACKs that free the room held events wait for. */
static bool bypasses_budget(const gw_event *ev)
{
    return ev->kind == GW_EV_COMMAND || ev->gateway_made;
}

/* Asks for the lines of ev that the commit reads after its first (its payload's first two, the
 * msg_id's and the name's), while take_batch's walk waits on each ev->next: the loops wrote them
 * on other cores, and fetched now they come in parallel instead of one miss at a time later
 * (frames x 100: writer -0.03 to -0.05 us per row in 3 of 3 interleaved rounds, see
 * docs/PERFORMANCE.md). A prefetch never faults: a NULL payload or one shorter than 64 bytes is
 * harmless. */
static inline void prefetch_rest(const gw_event *ev)
{
    uintptr_t p = (uintptr_t)ev->payload;
    __builtin_prefetch((const void *)p);
    __builtin_prefetch((const void *)(p + 64));
    __builtin_prefetch(ev->msg_id);
    __builtin_prefetch(ev->name);
}

/* Takes up to batch_max events; with batch_ms, waits that long after the first for more; a
 * batch of online/offline events only waits gw__store_linger_ms (when batch_ms is 0). Events
 * that would take the outbox past max_outbox_rows (policy backpressure) stay queued, in order,
 * unacknowledged, until forwarded rows are deleted (s->held counts them); events that bypass the
 * budget are taken from behind them. Caller: the writer. */
static gw_event *take_batch(gw_store *s, size_t *count, bool *fwd, bool *state)
{
    size_t want = s->cfg->store.batch_max, n = 0;
    gw_event *head = NULL, **tailp = &head;
    struct timespec deadline = {0, 0};
    bool have_deadline = false;
    int timed_out = 0;
    int64_t used = 0;    /* outbox rows this batch will add */
    bool only_lc = true; /* every event taken is an online/offline one */

    *state = false;
    pthread_mutex_lock(&s->mu);
    for (;;) {
        int64_t room = s->stop || s->unheld ? INT64_MAX : gw__outbox_room(s) - used;
        gw_event **pp = &s->head, *prev = NULL;
        bool blocked = false;
        while (*pp && n < want) {
            gw_event *ev = *pp;
            bool bypass = bypasses_budget(ev);
            if (!bypass && (blocked || room <= 0)) { /* held: later ones keep their order */
                blocked = true;
                prev = ev;
                pp = &ev->next;
                continue;
            }
            prefetch_rest(ev);
            *pp = ev->next;
            if (s->tail == ev)
                s->tail = prev;
            s->qlen--;
            ev->next = NULL;
            *tailp = ev;
            tailp = &ev->next;
            n++;
            only_lc = only_lc && lifecycle(ev);
            if (!bypass) {
                room--;
                used++;
            }
        }
        __atomic_store_n(&s->held, blocked ? (int64_t)s->qlen : 0, __ATOMIC_RELAXED);
        if (n >= want || s->stop || timed_out)
            break;
        bool linger = n > 0 && only_lc && !blocked;
        if (n > 0 && !linger && (s->cfg->store.batch_ms == 0 || blocked))
            break;
        if (n == 0 && gw__outbox_has_fwd(s))
            break; /* acknowledged ids to delete: a transaction of their own */
        s->writer_waiting = 1;
        if (n == 0 && s->state_since && s->state_req) { /* gw_store_sync_state waits */
            s->writer_waiting = 0;
            *state = true;
            break;
        }
        if (n == 0 && s->state_since) { /* idle with unwritten state: write it when it is due */
            int64_t due = s->state_since + s->cfg->store.state_lag_ms; /* wall-clock ms */
            struct timespec at = gw__store_deadline(due - gw_now_ms());
            if (pthread_cond_timedwait(&s->cond, &s->mu, &at) == ETIMEDOUT &&
                (!s->head || blocked)) {
                s->writer_waiting = 0;
                *state = true;
                break;
            }
        } else if (n == 0) {
            pthread_cond_wait(&s->cond, &s->mu);
        } else {
            unsigned ms = s->cfg->store.batch_ms ? s->cfg->store.batch_ms : gw__store_linger_ms;
            if (!have_deadline) {
                deadline = gw__store_deadline(ms);
                have_deadline = true;
            }
            s->writer_waiting = linger && !s->cfg->store.batch_ms ? 2 : 1;
            if (pthread_cond_timedwait(&s->cond, &s->mu, &deadline) == ETIMEDOUT)
                timed_out = 1; /* take what came, then go */
        }
        s->writer_waiting = 0;
    }
    *fwd = gw__outbox_take_fwd(s);
    pthread_mutex_unlock(&s->mu);
    *count = n;
    return head;
}

/* The state noted since the last write, in a transaction of its own (idle, or shutting down). */
static void write_state(gw_store *s)
{
    s->err_code = 0;
    int rc = gw__state_commit(s);
    commit_outcome(s, rc);
    if (rc) {
        GW_LOG_ERROR("store", NULL, NULL, "state write failed; retrying",
                     "error=%d reason=%s sqlite=\"%s\"", fail_code(s, rc),
                     fail_kinds[fail_kind(fail_code(s, rc))].reason, s->err_msg);
        struct timespec ts = {0, 100000000L}; /* the notes stay: retried in 100 ms */
        nanosleep(&ts, NULL);
    }
}

static void *writer_main(void *arg)
{
    gw_store *s = arg;
    gw_metrics_thread_init(GW_METRIC_SHARDS - 1);
    pthread_setname_np(pthread_self(), "iotgw-writer");
    for (;;) {
        size_t n;
        bool fwd, state;
        gw_event *batch = take_batch(s, &n, &fwd, &state);
        if (!batch && !fwd) {
            pthread_mutex_lock(&s->mu);
            int done = s->stop && !s->head;
            pthread_mutex_unlock(&s->mu);
            if (state || (done && s->state_since))
                write_state(s);
            if (done)
                break;
            continue;
        }
        unsigned backoff_ms = 50;
        int rc, tries = 0;
        for (;;) {
            s->err_code = 0;
            struct timespec t0, t1;
            clock_gettime(CLOCK_MONOTONIC, &t0);
            rc = commit_batch(s, batch);
            clock_gettime(CLOCK_MONOTONIC, &t1);
            if (!rc)
                __atomic_store_n(&s->commit_us_last,
                                 (int64_t)(t1.tv_sec - t0.tv_sec) * 1000000 +
                                     (t1.tv_nsec - t0.tv_nsec) / 1000,
                                 __ATOMIC_RELAXED);
            commit_outcome(s, rc);
            if (!rc)
                break;
            GW_LOG_ERROR("store", NULL, NULL, "commit failed; retrying",
                         "error=%d reason=%s sqlite=\"%s\" events=%zu", fail_code(s, rc),
                         fail_kinds[fail_kind(fail_code(s, rc))].reason, s->err_msg, n);
            int stopping;
            pthread_mutex_lock(&s->mu);
            stopping = s->stop;
            pthread_mutex_unlock(&s->mu);
            if (stopping && ++tries >= 5) {
                /* shutting down: give up; nothing of this batch was acknowledged. The state noted
                 * since the last write goes too: the next start replays it from the events. */
                gw__state_clear(s);
                break;
            }
            struct timespec ts = {backoff_ms / 1000, (long)(backoff_ms % 1000) * 1000000L};
            nanosleep(&ts, NULL);
            if (backoff_ms < 5000)
                backoff_ms *= 2;
        }
        complete_batch(s, batch, n, rc ? GW_ESTORE : 0);
    }
    return NULL;
}

/* ---- lifecycle (main thread) ---- */

int gw_store_open(gw_store **out, const gw_config *cfg, gw_error *err)
{
    gw_store *s = gw_calloc(GW_AREA_STORE, 1, sizeof(*s));
    *out = NULL;
    if (!s)
        return gw_error_set(err, GW_ENOMEM, "out of memory");
    s->cfg = cfg;
    s->max = cfg->store.queue_max;
    s->low = s->max / 2;
    pthread_mutex_init(&s->mu, NULL);
    pthread_condattr_t mono; /* the waits' deadlines are CLOCK_MONOTONIC (gw__store_deadline) */
    pthread_condattr_init(&mono);
    pthread_condattr_setclock(&mono, CLOCK_MONOTONIC);
    pthread_cond_init(&s->cond, &mono);
    pthread_cond_init(&s->state_cond, &mono);
    pthread_condattr_destroy(&mono);
    s->touch = gw_calloc(GW_AREA_STORE, cfg->device_cap ? cfg->device_cap : 1, sizeof(*s->touch));
    s->touched = gw_calloc(GW_AREA_STORE, cfg->device_cap ? cfg->device_cap : 1, sizeof(uint32_t));
    if (!s->touch || !s->touched || gw__state_grow(s)) {
        gw_store_close(s);
        return gw_error_set(err, GW_ENOMEM, "out of memory");
    }
    /* SQLite's allocation statistics take a global mutex on every malloc and free (a statement's
     * cursors are allocated per step: Debian builds it without lookaside); nothing reads them.
     * Only before SQLite's first use in the process (ignored after: SQLITE_MISUSE). */
    sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    int rc =
        sqlite3_open_v2(cfg->store.path, &s->db,
                        SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        gw_error_set(err, GW_ESTORE, "cannot open database %s: %s", cfg->store.path,
                     s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        gw_store_close(s);
        return GW_ESTORE;
    }
    if (gw__store_schema(s->db, &cfg->store, err) || gw__history_open(s, err) ||
        gw__store_prepare(s, err) || gw__state_replay(s, err) || gw__store_mark_offline(s, err) ||
        gw__outbox_open(s, err)) {
        gw_store_close(s);
        return GW_ESTORE;
    }
    *out = s;
    return 0;
}

int gw_store_start(gw_store *s, void (*on_drain)(void *arg), void *arg)
{
    s->on_drain = on_drain;
    s->drain_arg = arg;
    int rc = pthread_create(&s->thread, NULL, writer_main, s);
    if (rc)
        return -rc;
    s->started = 1;
    return 0;
}

void gw_store_close(gw_store *s)
{
    if (!s)
        return;
    if (s->started) {
        pthread_mutex_lock(&s->mu);
        s->stop = 1;
        pthread_mutex_unlock(&s->mu);
        pthread_cond_signal(&s->cond);
        pthread_join(s->thread, NULL);
        /* Readers paused by a budget still reached at the stop (the outbox, broker down) hold
         * their connections until resumed: resumed now, their sessions closed by now, they let
         * go of them. */
        if (s->on_drain && __atomic_exchange_n(&s->full_seen, 0, __ATOMIC_ACQ_REL))
            s->on_drain(s->drain_arg);
    }
    gw__state_clear(s);
    sqlite3_stmt *sts[] = {s->up_prop, s->up_state, s->touch_state, s->set_mark,
                           s->begin,   s->commit,   s->rollback};
    for (size_t i = 0; i < sizeof(sts) / sizeof(sts[0]); i++)
        sqlite3_finalize(sts[i]);
    gw__events_close(s);
    gw__outbox_close(s);
    gw__history_close(s);
    if (s->db)
        sqlite3_close(s->db);
    pthread_mutex_destroy(&s->mu);
    pthread_cond_destroy(&s->cond);
    pthread_cond_destroy(&s->state_cond);
    for (size_t i = 0; s->touch && i < s->n_touched; i++)
        if (s->touch[s->touched[i]].dev)
            gw_config_release(s->touch[s->touched[i]].dev->gen);
    gw_free(GW_AREA_STORE, s->touch);
    gw_free(GW_AREA_STORE, s->touched);
    gw__state_free(s);
    gw_free(GW_AREA_STORE, s);
}

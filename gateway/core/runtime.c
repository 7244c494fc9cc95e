/* runtime.c: loop threads, inboxes, the end-of-iteration flush, back-pressure resume and the
 * completion hand-back from the store writer to each event's loop. */
#include "runtime.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/alloc.h"
#include "dgram.h"
#include "limits.h"
#include "../util/log.h"
#include "../util/metrics.h"

/* ---- inbox ---- */

void gw_loop_post(gw_loop *l, gw_inbox_msg *m)
{
    m->next = NULL;
    pthread_mutex_lock(&l->inbox_mu);
    if (l->inbox_tail)
        l->inbox_tail->next = m;
    else
        l->inbox_head = m;
    l->inbox_tail = m;
    pthread_mutex_unlock(&l->inbox_mu);
    uv_async_send(&l->wake);
}

static void on_wake(uv_async_t *h)
{
    gw_loop *l = h->data;
    gw_inbox_msg *m;
    pthread_mutex_lock(&l->inbox_mu);
    m = l->inbox_head;
    l->inbox_head = l->inbox_tail = NULL;
    pthread_mutex_unlock(&l->inbox_mu);
    while (m) {
        gw_inbox_msg *next = m->next;
        m->fn(l, m);
        m = next;
    }
}

/* ---- end-of-iteration flush ---- */

void gw_loop_queue_event(gw_loop *l, gw_event *ev)
{
    ev->next = NULL;
    if (l->pend_tail)
        l->pend_tail->next = ev;
    else
        l->pend_head = ev;
    l->pend_tail = ev;
    l->pend_n++;
}

void gw_loop_flush_events(gw_loop *l)
{
    if (!l->pend_head)
        return;
    gw_store_submit(l->rt->store, l->pend_head, l->pend_tail, l->pend_n);
    l->pend_head = l->pend_tail = NULL;
    l->pend_n = 0;
}

static void on_check(uv_check_t *h)
{
    gw_loop *l = h->data;
    gw_loop_flush_events(l);
    while (l->dirty) {
        gw_session *s = l->dirty;
        l->dirty = s->dirty_next;
        s->dirty_next = NULL;
        s->dirty = 0;
        s->ops->flush(s);
        gw_session_release(s);
    }
    gw_dgram_flush(l);
    gw_log_tick();
}

void gw_session_mark_dirty(gw_session *s)
{
    if (s->dirty)
        return;
    s->dirty = 1;
    gw_session_retain(s);
    s->dirty_next = s->loop->dirty;
    s->loop->dirty = s;
}

/* ---- completions: writer thread -> loops ---- */

typedef struct done_msg {
    gw_inbox_msg m;
    gw_event *head;
} done_msg;

static void on_done(gw_loop *l, gw_inbox_msg *m)
{
    done_msg *d = (done_msg *)m;
    gw_event *ev = d->head;
    gw_free(GW_AREA_RUNTIME, d);
    while (ev) {
        gw_event *next = ev->next;
        ev->sess->ops->committed(ev->sess, ev);
        gw_store_event_done(l->rt->store, ev);
        ev = next;
    }
    gw_dgram_flush(l); /* the answers of this commit go out now, not after this iteration's reads */
}

/* Called by the writer with every committed event that has a session: one message per loop. */
static void deliver(void *arg, gw_event *head)
{
    gw_runtime *rt = arg;
    gw_event *heads[64] = {0}, *tails[64] = {0};
    unsigned n = rt->n_loops < 64 ? rt->n_loops : 64;
    while (head) {
        gw_event *ev = head;
        head = ev->next;
        ev->next = NULL;
        unsigned i = ev->sess->loop->index % n;
        if (tails[i])
            tails[i]->next = ev;
        else
            heads[i] = ev;
        tails[i] = ev;
    }
    for (unsigned i = 0; i < n; i++) {
        if (!heads[i])
            continue;
        done_msg *d = gw_malloc(GW_AREA_RUNTIME, sizeof(*d));
        while (!d) { /* tiny and rare: never drop a completion */
            uv_sleep(1);
            d = gw_malloc(GW_AREA_RUNTIME, sizeof(*d));
        }
        d->m.fn = on_done;
        d->head = heads[i];
        gw_loop_post(&rt->loops[i], &d->m);
    }
}

/* ---- back-pressure ---- */

static void on_resume(gw_loop *l, gw_inbox_msg *m)
{
    (void)m;
    __atomic_store_n(&l->resume_queued, 0, __ATOMIC_RELEASE);
    for (unsigned i = 0; i < l->rt->n_adapters; i++) {
        gw_adapter *a = &l->rt->adapters[i];
        if (a->ops->resume)
            a->ops->resume(a, l);
    }
}

static void on_drain(void *arg)
{
    gw_runtime *rt = arg;
    for (unsigned i = 0; i < rt->n_loops; i++) {
        gw_loop *l = &rt->loops[i];
        if (__atomic_exchange_n(&l->resume_queued, 1, __ATOMIC_ACQ_REL) == 0)
            gw_loop_post(l, &l->resume_msg);
    }
}

void gw_loop_note_backpressure(gw_loop *l)
{
    gw_metric_inc(GW_M_STORE_BACKPRESSURE);
    /* The drain may already have happened between the check and now: then resume ourselves. */
    if (!gw_store_full(l->rt->store) &&
        __atomic_exchange_n(&l->resume_queued, 1, __ATOMIC_ACQ_REL) == 0)
        gw_loop_post(l, &l->resume_msg);
}

/* ---- threads ---- */

unsigned gw_adapter_index(const gw_adapter *a)
{
    return (unsigned)(a - a->rt->adapters);
}

static void *loop_main(void *arg)
{
    gw_loop *l = arg;
    gw_runtime *rt = l->rt;
    char name[16];
    snprintf(name, sizeof(name), "gw-loop-%u", l->index);
    pthread_setname_np(pthread_self(), name);
    gw_metrics_thread_init(1 + l->index);
    gw_log_limit_thread(0); /* the adapters' start-up lines are all written */
    l->start_rc = 0;
    for (unsigned i = 0; i < rt->n_adapters && !l->start_rc; i++) {
        gw_adapter *a = &rt->adapters[i];
        l->start_rc = a->ops->start(a, l);
    }
    uv_sem_post(&l->started);
    gw_log_limit_thread(1); /* from now on lines come from peers: rate-limited per call site */
    if (l->start_rc == 0)
        uv_run(&l->uv, UV_RUN_DEFAULT);
    return NULL;
}

int gw_runtime_create(gw_runtime **out, const gw_config *cfg, gw_store *store, gw_error *err)
{
    gw_runtime *rt = gw_calloc(GW_AREA_RUNTIME, 1, sizeof(*rt));
    *out = NULL;
    if (!rt)
        return gw_error_set(err, GW_ENOMEM, "out of memory");
    rt->cfg = cfg;
    rt->store = store;
    rt->n_loops = cfg->loops ? cfg->loops : 1;
    rt->loops = gw_calloc(GW_AREA_RUNTIME, rt->n_loops, sizeof(gw_loop));
    rt->device_cap = cfg->device_cap > cfg->n_devices ? cfg->device_cap : (uint32_t)cfg->n_devices;
    rt->slots =
        gw_calloc(GW_AREA_RUNTIME, rt->device_cap ? rt->device_cap : 1, sizeof(gw_session *));
    pthread_mutex_init(&rt->cfg_mu, NULL);
    gw_config_retain(cfg);
    rt->cur = cfg;
    if (!rt->loops || !rt->slots || gw_limits_create(&rt->limits, &cfg->limits) != 0) {
        gw_runtime_free(rt);
        return gw_error_set(err, GW_ENOMEM, "out of memory");
    }
    for (unsigned i = 0; i < GW_DEVICE_STRIPES; i++)
        pthread_mutex_init(&rt->stripes[i], NULL);
    pthread_mutex_init(&rt->listeners_mu, NULL);
    for (unsigned i = 0; i < rt->n_loops; i++) {
        gw_loop *l = &rt->loops[i];
        l->index = i;
        l->rt = rt;
        gw_config_retain(cfg);
        l->cfg = cfg;
        l->rbuf_size = cfg->read_buffer;
        l->rbuf = gw_malloc(GW_AREA_RUNTIME, l->rbuf_size);
        int rc = l->rbuf ? uv_loop_init(&l->uv) : GW_ENOMEM;
        if (rc) {
            gw_runtime_free(rt);
            return gw_error_set(err, rc, "loop %u: %s", i, gw_strerror(rc));
        }
        l->inited = 1;
        pthread_mutex_init(&l->inbox_mu, NULL);
        uv_async_init(&l->uv, &l->wake, on_wake);
        l->wake.data = l;
        uv_check_init(&l->uv, &l->check);
        l->check.data = l;
        uv_check_start(&l->check, on_check);
        uv_sem_init(&l->started, 0);
        l->resume_msg.fn = on_resume;
    }
    gw_store_set_completion(store, deliver, gw_session_release, rt);
    *out = rt;
    return 0;
}

gw_adapter *gw_runtime_add_adapter(gw_runtime *rt, const gw_adapter_ops *ops)
{
    if (rt->n_adapters >= GW_MAX_ADAPTERS)
        return NULL;
    gw_adapter *a = &rt->adapters[rt->n_adapters++];
    a->ops = ops;
    a->rt = rt;
    a->state = NULL;
    return a;
}

int gw_runtime_start(gw_runtime *rt, gw_error *err)
{
    int rc = gw_store_start(rt->store, on_drain, rt);
    if (rc)
        return gw_error_set(err, rc, "store writer thread: %s", gw_strerror(rc));
    for (unsigned i = 0; i < rt->n_loops; i++) {
        gw_loop *l = &rt->loops[i];
        rc = pthread_create(&l->thread, NULL, loop_main, l);
        if (rc)
            return gw_error_set(err, -rc, "loop thread %u: %s", i, gw_strerror(-rc));
        uv_sem_wait(&l->started);
        if (l->start_rc) {
            pthread_join(l->thread, NULL);
            l->thread = 0;
            return gw_error_set(err, l->start_rc, "loop %u: adapter start failed: %s", i,
                                gw_strerror(l->start_rc));
        }
    }
    return 0;
}

void gw_runtime_report_listener(gw_runtime *rt, const char *adapter, const char *addr, int port,
                                const char *product)
{
    char prod[80] = "";
    if (product && product[0])
        snprintf(prod, sizeof(prod), " product=%s", product);
    pthread_mutex_lock(&rt->listeners_mu);
    if (rt->listeners_len < sizeof(rt->listeners))
        rt->listeners_len += (size_t)snprintf(
            rt->listeners + rt->listeners_len, sizeof(rt->listeners) - rt->listeners_len,
            "listener adapter=%s address=%s port=%d%s\n", adapter, addr, port, prod);
    pthread_mutex_unlock(&rt->listeners_mu);
    GW_LOG_INFO("runtime", NULL, NULL, "listening", "adapter=%s address=%s port=%d%s", adapter,
                addr, port, prod);
}

/* ---- run on every loop, synchronously (main thread) ---- */

typedef struct call_msg {
    gw_inbox_msg m;
    void (*fn)(gw_loop *l, void *arg);
    void *arg;
    uv_sem_t *done;
} call_msg;

static void on_call(gw_loop *l, gw_inbox_msg *m)
{
    call_msg *c = (call_msg *)m;
    c->fn(l, c->arg);
    uv_sem_post(c->done);
}

void gw_runtime_run_on_all(gw_runtime *rt, void (*fn)(gw_loop *l, void *arg), void *arg)
{
    uv_sem_t done;
    unsigned posted = 0;
    call_msg *msgs = gw_calloc(GW_AREA_RUNTIME, rt->n_loops, sizeof(call_msg));
    if (!msgs)
        return;
    uv_sem_init(&done, 0);
    for (unsigned i = 0; i < rt->n_loops; i++) {
        if (!rt->loops[i].thread)
            continue;
        msgs[i] = (call_msg){{NULL, on_call}, fn, arg, &done};
        gw_loop_post(&rt->loops[i], &msgs[i].m);
        posted++;
    }
    while (posted--)
        uv_sem_wait(&done);
    uv_sem_destroy(&done);
    gw_free(GW_AREA_RUNTIME, msgs);
}

static void do_stop_accepting(gw_loop *l, void *arg)
{
    (void)arg;
    for (unsigned i = 0; i < l->rt->n_adapters; i++) {
        gw_adapter *a = &l->rt->adapters[i];
        if (a->ops->stop)
            a->ops->stop(a, l);
    }
}

static void do_close_sessions(gw_loop *l, void *arg)
{
    (void)arg;
    for (unsigned i = 0; i < l->rt->n_adapters; i++) {
        gw_adapter *a = &l->rt->adapters[i];
        if (a->ops->close_sessions)
            a->ops->close_sessions(a, l);
    }
    gw_loop_flush_events(l);
}

static void close_any(uv_handle_t *h, void *arg)
{
    (void)arg;
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void do_exit(gw_loop *l, void *arg)
{
    (void)arg;
    uv_stop(&l->uv);
}

void gw_runtime_stop_accepting(gw_runtime *rt)
{
    gw_runtime_run_on_all(rt, do_stop_accepting, NULL);
}

void gw_runtime_close_sessions(gw_runtime *rt)
{
    gw_runtime_run_on_all(rt, do_close_sessions, NULL);
}

void gw_runtime_join(gw_runtime *rt)
{
    gw_runtime_run_on_all(rt, do_exit, NULL);
    for (unsigned i = 0; i < rt->n_loops; i++) {
        gw_loop *l = &rt->loops[i];
        if (!l->thread)
            continue;
        pthread_join(l->thread, NULL);
        l->thread = 0;
        /* Whatever is still open (the wake/check handles, sessions already closing) is closed
         * here, on the main thread, now that the loop's own thread has ended. */
        on_wake(&l->wake); /* messages posted after the exit message */
        uv_walk(&l->uv, close_any, NULL);
        uv_run(&l->uv, UV_RUN_DEFAULT);
    }
}

void gw_runtime_free(gw_runtime *rt)
{
    if (!rt)
        return;
    for (unsigned i = 0; rt->loops && i < rt->n_loops; i++) {
        gw_loop *l = &rt->loops[i];
        if (l->inited) {
            uv_walk(&l->uv, close_any, NULL);
            uv_run(&l->uv, UV_RUN_DEFAULT);
            uv_loop_close(&l->uv);
            pthread_mutex_destroy(&l->inbox_mu);
            uv_sem_destroy(&l->started);
        }
        gw_free(GW_AREA_RUNTIME, l->rbuf);
        gw_dgram_free(l);
        gw_config_release(l->cfg);
    }
    for (unsigned i = 0; i < rt->n_adapters; i++)
        if (rt->adapters[i].ops->uninit)
            rt->adapters[i].ops->uninit(&rt->adapters[i]);
    gw_free(GW_AREA_RUNTIME, rt->loops);
    gw_free(GW_AREA_RUNTIME, rt->slots);
    gw_limits_free(rt->limits);
    gw_config_release(rt->cur);
    pthread_mutex_destroy(&rt->cfg_mu);
    gw_free(GW_AREA_RUNTIME, rt);
}

/* ---- configuration generations (hot reload) ---- */

const gw_config *gw_runtime_cfg_acquire(gw_runtime *rt)
{
    pthread_mutex_lock(&rt->cfg_mu);
    const gw_config *c = rt->cur;
    gw_config_retain(c);
    pthread_mutex_unlock(&rt->cfg_mu);
    return c;
}

static bool same_str(const char *a, const char *b)
{
    return (!a && !b) || (a && b && strcmp(a, b) == 0);
}

/* NULL: the session follows nd; else why it must close. */
static const char *follow(const gw_device *od, const gw_device *nd)
{
    if (!nd)
        return "removed";
    if (!same_str(od->secret, nd->secret) || !same_str(od->product->id, nd->product->id) ||
        !same_str(od->product->protocol, nd->product->protocol) ||
        !same_str(od->product->codec, nd->product->codec))
        return "reconfigured";
    return NULL;
}

typedef struct closing {
    gw_session *s;
    struct closing *next;
} closing;

static void do_switch(gw_loop *l, void *arg)
{
    const gw_config *next = arg, *old = l->cfg;
    gw_runtime *rt = l->rt;
    closing *to_close = NULL;

    gw_config_retain(next);
    l->cfg = next;
    gw_loop_flush_events(l); /* this iteration's events keep their order before any offline */
    for (uint32_t i = 0; i < rt->device_cap; i++) {
        pthread_mutex_t *mu = &rt->stripes[i % GW_DEVICE_STRIPES];
        pthread_mutex_lock(mu);
        gw_session *s = rt->slots[i];
        if (s && s->loop == l && s->dev && s->dev->gen != next) {
            const gw_device *od = s->dev;
            const gw_device *nd = gw_config_device(next, od->id);
            const char *why = follow(od, nd);
            if (!why) {
                gw_config_retain(next);
                gw_config_release(s->held);
                s->held = next;
                s->dev = nd;
            } else {
                closing *c = gw_malloc(GW_AREA_RUNTIME, sizeof(*c));
                s->close_reason = why;
                if (c) {
                    gw_session_retain(s);
                    c->s = s;
                    c->next = to_close;
                    to_close = c;
                }
            }
        }
        pthread_mutex_unlock(mu);
    }
    while (to_close) { /* outside the stripe locks: closing takes them again */
        closing *c = to_close;
        to_close = c->next;
        c->s->ops->kick(c->s);
        gw_session_release(c->s);
        gw_free(GW_AREA_RUNTIME, c);
    }
    gw_config_release(old);
}

void gw_runtime_switch(gw_runtime *rt, const gw_config *next)
{
    gw_config_retain(next);
    pthread_mutex_lock(&rt->cfg_mu);
    const gw_config *old = rt->cur;
    rt->cur = next;
    pthread_mutex_unlock(&rt->cfg_mu);
    gw_runtime_run_on_all(rt, do_switch, (void *)next);
    /* loops that never started (start-up failed) switch here: nothing runs on them */
    for (unsigned i = 0; i < rt->n_loops; i++) {
        gw_loop *l = &rt->loops[i];
        if (!l->thread && l->cfg != next) {
            gw_config_retain(next);
            gw_config_release(l->cfg);
            l->cfg = next;
        }
    }
    gw_config_release(old);
}

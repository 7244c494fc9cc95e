/* north.c: the north bridge's life: creation (outbox reader, command table), its one thread and
 * libuv loop, the writer's commit hook that wakes it, the keep-alive, PUBACK-timeout and command
 * timers, and the orderly stop that hands the last acknowledgements to the store. */
#include "north_internal.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "../util/alloc.h"
#include "../util/log.h"
#include "../util/metrics.h"
#include "../core/runtime.h"

#define TOPIC_CAP 1024

/* Writer thread, after a commit that added outbox rows or deleted forwarded ones (which frees
 * window slots). uv_async_send coalesces: one wake-up however many commits. */
static void on_commit(void *arg)
{
    gw_north *n = arg;
    __atomic_store_n(&n->more, 1, __ATOMIC_RELEASE);
    uv_async_send(&n->wake);
}

static void close_handle(uv_handle_t *h)
{
    if (!uv_is_closing(h))
        uv_close(h, NULL);
}

static void on_wake(uv_async_t *h)
{
    gw_north *n = h->data;
    if (__atomic_load_n(&n->stop, __ATOMIC_ACQUIRE)) {
        gw__north_link_close(n);
        gw__north_flush_acked(n);
        close_handle((uv_handle_t *)&n->wake);
        close_handle((uv_handle_t *)&n->misc);
        close_handle((uv_handle_t *)&n->watch);
        close_handle((uv_handle_t *)&n->tick);
        close_handle((uv_handle_t *)&n->retry);
        close_handle((uv_handle_t *)&n->hold);
        return;
    }
    gw__north_pump(n);
}

static void on_misc(uv_timer_t *t)
{
    gw_north *n = t->data;
    gw__north_link_misc(n); /* PINGREQ, keep-alive expiry, CONNACK timeout */
    gw__north_cluster_tick(n);
    if (n->up)
        __atomic_store_n(&n->more, 1, __ATOMIC_RELEASE); /* a periodic re-read never hurts */
    gw__north_pump(n);
}

static void on_watch(uv_timer_t *t)
{
    gw__north_link_watchdog(t->data);
}

static void on_tick(uv_timer_t *t)
{
    gw_north *n = t->data;
    gw_commands_tick(n->commands, gw_now_ms());
}

static void *north_main(void *arg)
{
    gw_north *n = arg;
    gw_metrics_thread_init(GW_METRIC_SHARDS - 2);
    pthread_setname_np(pthread_self(), "iotgw-north");
    gw__north_link_start(n);
    uv_timer_start(&n->misc, on_misc, 1000, 1000);
    /* the PUBACK timeout is checked ten times per timeout (at most every second, at least every
     * 100 ms): a stalled link is dropped within 10 % of puback_timeout_ms after it expires */
    uint64_t every = n->nc->puback_timeout_ms / 10;
    every = every < 100 ? 100 : every > 1000 ? 1000 : every;
    uv_timer_start(&n->watch, on_watch, every, every);
    if (n->commands)
        uv_timer_start(&n->tick, on_tick, 50, 50);
    uv_run(&n->loop, UV_RUN_DEFAULT);
    return NULL;
}

int gw_north_create(gw_north **out, const gw_config *cfg, gw_runtime *rt, gw_store *store,
                    gw_error *err)
{
    *out = NULL;
    if (!cfg->north.enabled)
        return 0;
    gw_north *n = gw_calloc(GW_AREA_RUNTIME, 1, sizeof(*n));
    if (!n)
        return gw_error_set(err, GW_ENOMEM, "out of memory");
    n->cfg = cfg;
    n->nc = &cfg->north;
    n->rt = rt;
    n->store = store;
    n->win = gw_calloc(GW_AREA_RUNTIME, n->nc->window, sizeof(*n->win));
    n->acked = gw_calloc(GW_AREA_RUNTIME, 2 * (size_t)n->nc->window + 16, sizeof(*n->acked));
    n->topic = gw_malloc(GW_AREA_RUNTIME, TOPIC_CAP);
    n->rng = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ (uintptr_t)n;
    if (!n->rng)
        n->rng = 88172645463325252ull;
    n->more = 1;
    if (!n->win || !n->acked || !n->topic || gw__north_cluster_init(n) != 0) {
        gw_north_free(n);
        return gw_error_set(err, GW_ENOMEM, "out of memory");
    }
    n->own_commands = !rt->commands;
    if (gw_store_reader_open(&n->reader, cfg, err) ||
        (n->own_commands && gw_commands_create(&n->commands, rt, n->reader, err))) {
        gw_north_free(n);
        return err->code ? err->code : GW_ESTORE;
    }
    if (!n->own_commands) { /* main's table: cloud property reads use this thread's reader */
        n->commands = rt->commands;
        gw_commands_set_reader(n->commands, n->reader);
    }
    rt->commands = n->commands;
    uv_loop_init(&n->loop);
    uv_async_init(&n->loop, &n->wake, on_wake);
    uv_timer_init(&n->loop, &n->misc);
    uv_timer_init(&n->loop, &n->watch);
    uv_timer_init(&n->loop, &n->tick);
    uv_timer_init(&n->loop, &n->retry);
    uv_timer_init(&n->loop, &n->hold);
    n->wake.data = n->misc.data = n->tick.data = n->retry.data = n->hold.data = n;
    n->watch.data = n;
    gw_store_set_commit_hook(store, on_commit, n);
    *out = n;
    return 0;
}

int gw_north_start(gw_north *n, gw_error *err)
{
    if (!n)
        return 0;
    int rc = pthread_create(&n->thread, NULL, north_main, n);
    if (rc)
        return gw_error_set(err, -rc, "cannot start the north thread");
    n->started = true;
    return 0;
}

void gw_north_stop(gw_north *n)
{
    if (!n || !n->started)
        return;
    __atomic_store_n(&n->stop, 1, __ATOMIC_RELEASE);
    uv_async_send(&n->wake);
    pthread_join(n->thread, NULL);
    n->started = false;
    gw_store_set_commit_hook(n->store, NULL, NULL);
}

void gw_north_free(gw_north *n)
{
    if (!n)
        return;
    if (n->own_commands) {
        if (n->rt && n->rt->commands == n->commands)
            n->rt->commands = NULL;
        gw_commands_free(n->commands);
    } else {
        gw_commands_set_reader(n->commands, NULL); /* the reader closes below */
    }
    gw_store_reader_close(n->reader);
    if (n->wake.loop) {                                /* the loop was initialised */
        if (!uv_is_closing((uv_handle_t *)&n->wake)) { /* never started: close here */
            close_handle((uv_handle_t *)&n->wake);
            close_handle((uv_handle_t *)&n->misc);
            close_handle((uv_handle_t *)&n->watch);
            close_handle((uv_handle_t *)&n->tick);
            close_handle((uv_handle_t *)&n->retry);
            close_handle((uv_handle_t *)&n->hold);
        }
        uv_run(&n->loop, UV_RUN_DEFAULT);
        uv_loop_close(&n->loop);
    }
    gw_free(GW_AREA_RUNTIME, n->win);
    gw_free(GW_AREA_RUNTIME, n->acked);
    gw_free(GW_AREA_RUNTIME, n->topic);
    gw_free(GW_AREA_RUNTIME, n->payload);
    gw__north_cluster_free(n);
    gw_free(GW_AREA_RUNTIME, n);
}

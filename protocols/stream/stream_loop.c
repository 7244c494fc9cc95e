/* stream_loop.c: a stream adapter's per-loop state: one SO_REUSEPORT listener per configured
 * address on every loop, the deadline (and output stall) sweep timer, back-pressure resume, the
 * output bounds' config and shutdown. */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../../gateway/util/alloc.h"
#include "../../gateway/core/listen.h"
#include "../../gateway/util/log.h"
#include "stream_internal.h"

#define SWEEP_MS 250

gw_stream_loop *gw_stream_loop_of(gw_adapter *a, gw_loop *loop)
{
    return loop->adapter_state[gw_adapter_index(a)];
}

static void on_sweep(uv_timer_t *t)
{
    gw_stream_loop *sl = t->data;
    uint64_t now = uv_now(&sl->loop->uv);
    gw_stream_conn *c = sl->conns, *next;
    for (; c; c = next) {
        next = c->next;
        if (c->state == GW_STREAM_CLOSING)
            continue;
        gw__stream_out_sweep(c, now);
        if (!c->deadline || now < c->deadline || c->state == GW_STREAM_CLOSING)
            continue;
        if (c->proxy_wait)
            gw__stream_proxy_refused(c, GW_PROXY_ERR_TIMEOUT);
        else if (c->tls && !gw__stream_tls_ready(c))
            gw__stream_tls_expired(c);
        else
            sl->ops->expired(c);
    }
}

static int listen_on(gw_stream_loop *sl, gw_stream_server *srv, const gw_listen *li,
                     uint16_t *bound, uint32_t i)
{
    const char *area = sl->ops->session.area;
    uint16_t port = *bound ? *bound : li->port;
    srv->sl = sl;
    srv->index = i;
    srv->at = *li;
    int rc = gw_listen_tcp(&sl->loop->uv, &srv->tcp, li, &port, gw__stream_on_connection);
    srv->tcp.data = srv;
    if (rc) {
        GW_LOG_ERROR(area, NULL, NULL, "cannot listen", "address=%s port=%u error=\"%s\"",
                     li->address, port, uv_strerror(rc));
        return rc;
    }
    if (!*bound) { /* the first loop bound it: the others share its port */
        *bound = port;
        if (srv->tls)
            gw_stream_tls_set_port(srv->tls, port);
        gw_runtime_report_listener(sl->loop->rt, area, li->address, port, li->product);
    }
    return 0;
}

static int listen_one(gw_stream_loop *sl, const gw_listen *li, uint16_t *bound, uint32_t i)
{
    return listen_on(sl, &sl->servers[i], li, bound, i);
}

int gw_stream_listen_add(gw_adapter *a, gw_loop *loop, const gw_listen *li, uint16_t *bound,
                         const void *serve)
{
    gw_stream_loop *sl = gw_stream_loop_of(a, loop);
    if (!sl || sl->stopping)
        return -ECANCELED;
    gw_stream_server *srv = gw_calloc(GW_AREA_RUNTIME, 1, sizeof(*srv));
    if (!srv)
        return GW_ENOMEM;
    srv->serve = serve;
    srv->extra_next = sl->extra;
    sl->extra = srv; /* listed even if it failed: its handle may need closing */
    int rc = listen_on(sl, srv, li, bound, UINT32_MAX);
    if (rc)
        srv->closed = true;
    return rc;
}

static bool same_listener(const gw_listen *x, const gw_listen *y)
{
    return x->port == y->port && strcmp(x->address, y->address) == 0 &&
           strcmp(x->product, y->product) == 0;
}

static void close_server(gw_stream_server *srv)
{
    uv_handle_t *h = (uv_handle_t *)&srv->tcp;
    srv->closed = true;
    if (h->loop && !uv_is_closing(h))
        uv_close(h, NULL);
}

void gw_stream_listen_remove(gw_adapter *a, gw_loop *loop, const gw_listen *li)
{
    gw_stream_loop *sl = gw_stream_loop_of(a, loop);
    if (!sl)
        return;
    for (size_t i = 0; i < sl->n_servers; i++)
        if (!sl->servers[i].closed && same_listener(&sl->servers[i].at, li)) {
            close_server(&sl->servers[i]);
            GW_LOG_INFO("runtime", NULL, NULL, "listener closed by a reload",
                        "adapter=%s address=%s port=%u", sl->ops->session.area, li->address,
                        li->port);
            return;
        }
    for (gw_stream_server *srv = sl->extra; srv; srv = srv->extra_next)
        if (!srv->closed && same_listener(&srv->at, li)) {
            close_server(srv);
            GW_LOG_INFO("runtime", NULL, NULL, "listener closed by a reload",
                        "adapter=%s address=%s port=%u", sl->ops->session.area, li->address,
                        li->port);
            return;
        }
}

void gw_stream_out_defaults(gw_stream_out_cfg *o, gw_metric paused, gw_metric overflow)
{
    o->high_water = GW_STREAM_OUT_HIGH_WATER;
    o->low_water = GW_STREAM_OUT_LOW_WATER;
    o->hard_limit = GW_STREAM_OUT_HARD_LIMIT;
    o->stall_timeout_ms = GW_STREAM_OUT_STALL_MS;
    o->loop_limit = GW_STREAM_OUT_LOOP_LIMIT;
    o->paused_metric = paused;
    o->overflow_metric = overflow;
}

int gw_stream_out_check(const gw_stream_out_cfg *o, const char *file, const char *section,
                        gw_diag *diag)
{
    char path[96];
    if (o->low_water >= o->high_water) {
        snprintf(path, sizeof(path), "%s.output_low_water", section);
        gw_diag_add(diag, file, path, "must be below output_high_water (%u)", o->high_water);
        return 1;
    }
    if (o->hard_limit <= o->high_water) {
        snprintf(path, sizeof(path), "%s.output_hard_limit", section);
        gw_diag_add(diag, file, path, "must be above output_high_water (%u)", o->high_water);
        return 1;
    }
    if (o->loop_limit < o->hard_limit) {
        snprintf(path, sizeof(path), "%s.output_loop_limit", section);
        gw_diag_add(diag, file, path, "must be at least output_hard_limit (%u)", o->hard_limit);
        return 1;
    }
    return 0;
}

int gw_stream_start(gw_adapter *a, gw_loop *loop, const gw_stream_ops *ops, void *user,
                    const gw_listen_list *ls, uint16_t *bound_ports, uint32_t max_inflight,
                    const gw_stream_out_cfg *out, gw_stream_tls *const *tls,
                    gw_stream_proxy *const *proxy)
{
    gw_stream_loop *sl = gw_calloc(GW_AREA_RUNTIME, 1, sizeof(*sl));
    if (!sl)
        return GW_ENOMEM;
    sl->a = a;
    sl->loop = loop;
    sl->ep = -1;
    sl->ops = ops;
    sl->user = user;
    sl->max_inflight = max_inflight ? max_inflight : 1;
    sl->out = *out;
    sl->n_servers = ls->n;
    sl->servers = gw_calloc(GW_AREA_RUNTIME, ls->n ? ls->n : 1, sizeof(gw_stream_server));
    if (!sl->servers) {
        gw_free(GW_AREA_RUNTIME, sl);
        return GW_ENOMEM;
    }
    loop->adapter_state[gw_adapter_index(a)] = sl;
    uv_timer_init(&loop->uv, &sl->sweep);
    sl->sweep.data = sl;
    uv_timer_start(&sl->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    uv_timer_init(&loop->uv, &sl->out_kick);
    sl->out_kick.data = sl;
    int io = gw__stream_io_start(sl);
    if (io) {
        GW_LOG_ERROR(sl->ops->session.area, NULL, NULL, "cannot watch connections", "error=\"%s\"",
                     uv_strerror(io));
        return io;
    }
    for (size_t i = 0; i < sl->n_servers; i++) {
        sl->servers[i].tls = tls ? tls[i] : NULL;
        sl->servers[i].proxy = proxy ? proxy[i] : NULL;
        int rc = listen_one(sl, &ls->v[i], &bound_ports[i], (uint32_t)i);
        if (rc)
            return rc;
    }
    return 0;
}

void gw_stream_resume_all(gw_adapter *a, gw_loop *loop)
{
    gw_stream_loop *sl = gw_stream_loop_of(a, loop);
    if (!sl)
        return;
    gw_stream_conn *c = sl->paused;
    sl->paused = NULL;
    while (c) {
        gw_stream_conn *next = c->pnext;
        c->pnext = NULL;
        c->pause_listed = false;
        gw__stream_resume(c);
        gw_session_release(&c->base);
        c = next;
    }
}

void gw_stream_stop(gw_adapter *a, gw_loop *loop)
{
    gw_stream_loop *sl = gw_stream_loop_of(a, loop);
    if (!sl)
        return;
    sl->stopping = true;
    for (size_t i = 0; i < sl->n_servers; i++)
        close_server(&sl->servers[i]);
    for (gw_stream_server *srv = sl->extra; srv; srv = srv->extra_next)
        close_server(srv);
    for (gw_stream_conn *c = sl->conns; c; c = c->next)
        gw__stream_stop_reading(c);
}

void gw_stream_close_all(gw_adapter *a, gw_loop *loop, const char *reason)
{
    gw_stream_loop *sl = gw_stream_loop_of(a, loop);
    if (!sl)
        return;
    gw_stream_conn *c = sl->conns, *next;
    for (; c; c = next) {
        next = c->next;
        gw_stream_close(c, reason, false);
    }
    if (!uv_is_closing((uv_handle_t *)&sl->sweep))
        uv_close((uv_handle_t *)&sl->sweep, NULL);
    for (c = sl->out_ready, sl->out_ready = NULL; c; c = next) {
        next = c->onext;
        c->onext = NULL;
        c->out_listed = false;
        gw_session_release(&c->base);
    }
    if (!uv_is_closing((uv_handle_t *)&sl->out_kick))
        uv_close((uv_handle_t *)&sl->out_kick, NULL);
    gw__stream_io_close(sl);
}

void gw_stream_free_all(gw_adapter *a)
{
    gw_runtime *rt = a->rt;
    for (unsigned i = 0; rt && i < rt->n_loops; i++) {
        gw_stream_loop *sl = rt->loops[i].adapter_state[gw_adapter_index(a)];
        if (sl) {
            while (sl->extra) {
                gw_stream_server *next = sl->extra->extra_next;
                gw_free(GW_AREA_RUNTIME, sl->extra);
                sl->extra = next;
            }
            gw_free(GW_AREA_RUNTIME, sl->servers);
            gw_free(GW_AREA_SESSION, sl->tls_plain);
            gw_free(GW_AREA_OUTPUT, sl->tls_out);
            gw__stream_tls_loop_free(sl);
            gw__stream_io_free(sl);
            gw_free(GW_AREA_RUNTIME, sl);
            rt->loops[i].adapter_state[gw_adapter_index(a)] = NULL;
        }
    }
}

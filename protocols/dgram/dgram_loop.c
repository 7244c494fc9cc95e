/* dgram_loop.c: a loop's datagram sockets for the UDP and CoAP adapters: listening on every loop
 * with SO_REUSEPORT, reading (each datagram to the adapter), reading stopped while the store is
 * full and started again, the loop's timer, shutdown; and the peer-address helpers. */
#include "dgram_layer.h"

#include <string.h>

#include "../../gateway/util/alloc.h"
#include "../../gateway/core/dgram.h"
#include "../../gateway/util/log.h"

/* ---- addresses ---- */

void gw_dgram_addr_set(gw_dgram_addr *a, const struct sockaddr *sa)
{
    memset(a, 0, sizeof(*a));
    if (sa->sa_family == AF_INET6)
        memcpy(&a->in6, sa, sizeof(a->in6));
    else
        memcpy(&a->in, sa, sizeof(a->in));
}

bool gw_dgram_addr_equal(const gw_dgram_addr *a, const struct sockaddr *sa)
{
    if (a->sa.sa_family != sa->sa_family)
        return false;
    if (sa->sa_family == AF_INET6) {
        const struct sockaddr_in6 *b = (const struct sockaddr_in6 *)sa;
        return a->in6.sin6_port == b->sin6_port &&
               memcmp(&a->in6.sin6_addr, &b->sin6_addr, sizeof(b->sin6_addr)) == 0 &&
               a->in6.sin6_scope_id == b->sin6_scope_id;
    }
    const struct sockaddr_in *b = (const struct sockaddr_in *)sa;
    return a->in.sin_port == b->sin_port && a->in.sin_addr.s_addr == b->sin_addr.s_addr;
}

uint32_t gw_dgram_addr_hash(const struct sockaddr *sa, uint32_t seed)
{
    uint32_t h = 2166136261u ^ seed;
    const uint8_t *p;
    size_t n;
    if (sa->sa_family == AF_INET6) {
        p = (const uint8_t *)&((const struct sockaddr_in6 *)sa)->sin6_addr;
        n = 16;
        h ^= ((const struct sockaddr_in6 *)sa)->sin6_port;
    } else {
        p = (const uint8_t *)&((const struct sockaddr_in *)sa)->sin_addr;
        n = 4;
        h ^= (uint32_t)((const struct sockaddr_in *)sa)->sin_port << 16;
    }
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 16777619u;
    return h ^ (h >> 15);
}

/* ---- reading ---- */

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    gw_dgram_sock *s = h->data;
    (void)suggested;
    gw_dgram_recv_buf(s->dl->loop, buf);
}

static void on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *from,
                    unsigned flags)
{
    gw_dgram_sock *s = h->data;
    gw_dgram_loop *dl = s->dl;
    if (nread < 0) {
        GW_LOG_DEBUG(dl->ops->area, NULL, NULL, "receive error", "error=\"%s\"",
                     uv_strerror((int)nread));
        return;
    }
    if (!from) { /* nothing more to read now, or the end of a recvmmsg batch */
        if (dl->pause_pending) {
            dl->pause_pending = false;
            gw_dgram_receive(dl, false);
        }
        return;
    }
    if (dl->stopping)
        return;
    dl->ops->datagram(s, (const uint8_t *)buf->base, (size_t)nread, from,
                      (flags & UV_UDP_PARTIAL) != 0);
    if (dl->ops->pause_when_full && !dl->paused && gw_store_full(dl->loop->rt->store)) {
        dl->paused = true;
        gw_loop_note_backpressure(dl->loop);
        /* Inside a recvmmsg batch, stopping now would make libuv drop the batch's remaining
         * datagrams: they are taken (at most GW_DGRAM_RECV_BATCH - 1 over the store's bound) and
         * reading stops after the batch. */
        if (flags & UV_UDP_MMSG_CHUNK)
            dl->pause_pending = true;
        else
            gw_dgram_receive(dl, false);
    }
}

void gw_dgram_receive(gw_dgram_loop *dl, bool on)
{
    for (gw_dgram_sock *s = dl->socks; s; s = s->next) {
        if (!s->open || s->receiving == on)
            continue;
        if (on ? uv_udp_recv_start(&s->h, on_alloc, on_recv) == 0 : uv_udp_recv_stop(&s->h) == 0)
            s->receiving = on;
    }
}

void gw_dgram_sock_send(gw_dgram_sock *s, const gw_dgram_addr *to, const uint8_t *p, size_t n)
{
    if (s && s->open)
        gw_dgram_send(s->dl->loop, &s->h, &to->sa, p, n);
}

/* ---- a loop's life ---- */

gw_dgram_loop *gw_dgram_loop_new(size_t size, const gw_dgram_ops *ops, gw_adapter *a, gw_loop *loop,
                                 uint32_t idle_ms)
{
    gw_dgram_loop *dl = gw_calloc(GW_AREA_RUNTIME, 1, size);
    if (!dl)
        return NULL;
    dl->ops = ops;
    dl->da = a->state;
    dl->loop = loop;
    dl->idle_ms = idle_ms;
    return dl;
}

static void on_timer(uv_timer_t *t)
{
    gw_dgram_loop *dl = t->data;
    if (dl->ops->tick)
        dl->ops->tick(dl);
    else
        gw_dgram_sweep(dl);
}

int gw_dgram_start(gw_dgram_loop *dl, gw_adapter *a, uint64_t period_ms, size_t n)
{
    dl->loop->adapter_state[gw_adapter_index(a)] = dl;
    uv_timer_init(&dl->loop->uv, &dl->timer);
    dl->timer.data = dl;
    uv_timer_start(&dl->timer, on_timer, period_ms, period_ms);
    for (size_t i = 0; i < n; i++) {
        int rc = dl->ops->listen(dl, i);
        if (rc)
            return rc;
    }
    gw_dgram_receive(dl, true);
    return 0;
}

int gw_dgram_listen(gw_dgram_loop *dl, gw_dgram_sock *s, const gw_listen *li, size_t i,
                    uint32_t rcvbuf, const char *kind, const char *product)
{
    return gw_dgram_listen_at(dl, s, li, &dl->da->bound_ports[i], rcvbuf, kind, product);
}

void gw_dgram_sock_close(gw_dgram_sock *s)
{
    if (!s->open)
        return;
    if (s->receiving)
        uv_udp_recv_stop(&s->h);
    s->receiving = false;
    s->open = false;
    if (!uv_is_closing((uv_handle_t *)&s->h))
        uv_close((uv_handle_t *)&s->h, NULL);
}

int gw_dgram_listen_at(gw_dgram_loop *dl, gw_dgram_sock *s, const gw_listen *li, uint16_t *bound,
                       uint32_t rcvbuf, const char *kind, const char *product)
{
    uint16_t port = *bound ? *bound : li->port;
    s->dl = dl;
    int rc = gw_listen_udp(&dl->loop->uv, &s->h, li, &port, (int)rcvbuf, UV_UDP_RECVMMSG);
    s->h.data = s;
    s->open = s->h.type == UV_UDP; /* initialised: must be closed */
    if (s->open) {
        s->next = dl->socks;
        dl->socks = s;
    }
    if (rc) {
        GW_LOG_ERROR(dl->ops->area, NULL, NULL, "cannot listen", "address=%s port=%u error=\"%s\"",
                     li->address, port, uv_strerror(rc));
        return rc;
    }
    if (!*bound) { /* the first loop bound it: the others share its port */
        *bound = port;
        gw_runtime_report_listener(dl->loop->rt, kind, li->address, port, product);
    }
    return 0;
}

static gw_dgram_loop *loop_state(gw_adapter *a, gw_loop *loop)
{
    return loop->adapter_state[gw_adapter_index(a)];
}

void gw_dgram_resume(gw_adapter *a, gw_loop *loop)
{
    gw_dgram_loop *dl = loop_state(a, loop);
    if (!dl || !dl->paused || dl->stopping)
        return;
    dl->paused = false; /* if the store is full again, the next datagram pauses us again */
    gw_dgram_receive(dl, true);
}

void gw_dgram_stop(gw_adapter *a, gw_loop *loop)
{
    gw_dgram_loop *dl = loop_state(a, loop);
    if (!dl)
        return;
    dl->stopping = true;
    gw_dgram_receive(dl, false);
}

void gw_dgram_close_sessions(gw_adapter *a, gw_loop *loop)
{
    gw_dgram_loop *dl = loop_state(a, loop);
    if (!dl)
        return;
    gw_dgram_close_all(dl, "shutdown");
    gw_dgram_flush(loop);
    for (gw_dgram_sock *s = dl->socks; s; s = s->next)
        if (s->open && !uv_is_closing((uv_handle_t *)&s->h))
            uv_close((uv_handle_t *)&s->h, NULL);
    if (dl->timer.type == UV_TIMER && !uv_is_closing((uv_handle_t *)&dl->timer))
        uv_close((uv_handle_t *)&dl->timer, NULL);
}

int gw_dgram_adapter_init(gw_dgram_adapter *da, size_t n)
{
    da->bound_ports = gw_calloc(GW_AREA_RUNTIME, n ? n : 1, sizeof(uint16_t));
    return da->bound_ports ? 0 : GW_ENOMEM;
}

void gw_dgram_uninit(gw_adapter *a, void (*free_loop)(gw_dgram_loop *dl),
                     void (*free_state)(gw_adapter *a))
{
    gw_dgram_adapter *da = a->state;
    gw_runtime *rt = a->rt;
    if (!da)
        return;
    for (unsigned i = 0; rt && i < rt->n_loops; i++) {
        gw_dgram_loop *dl = rt->loops[i].adapter_state[gw_adapter_index(a)];
        if (dl) {
            free_loop(dl);
            rt->loops[i].adapter_state[gw_adapter_index(a)] = NULL;
        }
    }
    gw_free(GW_AREA_RUNTIME, da->bound_ports);
    free_state(a);
    a->state = NULL;
}

void gw_dgram_loop_free(gw_dgram_loop *dl)
{
    gw_session_index_free(&dl->sessions);
}

/* dgram_sess.c: the per-device datagram session of the UDP and CoAP adapters: opened by the
 * device's first authenticated datagram on a loop, indexed by device, its address and idle
 * deadline, idle sweep, take-over by another loop, and close (one at a time or all at shutdown).
 * What a session carries besides (held acks, exchanges, observe) is the adapter's. */
#include "dgram_layer.h"

#include "../../gateway/util/alloc.h"
#include "../../gateway/util/log.h"

gw_dgram_sess *gw_dgram_sess_find(gw_dgram_loop *dl, uint32_t dev_index)
{
    return (gw_dgram_sess *)gw_session_index_find(&dl->sessions, dev_index);
}

gw_dgram_sess *gw_dgram_sess_open(gw_dgram_loop *dl, size_t size, const gw_session_ops *ops,
                                  gw_dgram_sock *sock, const gw_device *dev,
                                  const struct sockaddr *from)
{
    gw_dgram_sess *s = gw_calloc(GW_AREA_SESSION, 1, size);
    if (!s)
        return NULL;
    gw_session_init(&s->base, ops, dl->loop);
    s->dl = dl;
    s->sock = sock;
    gw_dgram_addr_set(&s->addr, from);
    s->base.dev = dev;
    if (gw_session_index_add(&dl->sessions, &s->base) != 0) {
        gw_free(GW_AREA_SESSION, s);
        return NULL;
    }
    gw_session_online(&s->base, dev, dl->ops->area);
    return s;
}

bool gw_dgram_sess_at(const gw_dgram_sess *s, const gw_dgram_sock *sock,
                      const struct sockaddr *from)
{
    return s->sock == sock && gw_dgram_addr_equal(&s->addr, from);
}

void gw_dgram_sess_move(gw_dgram_sess *s, gw_dgram_sock *sock, const struct sockaddr *from)
{
    gw_dgram_addr_set(&s->addr, from);
    s->sock = sock;
}

void gw_dgram_sess_close(gw_dgram_sess *s, const char *reason)
{
    if (s->closing)
        return;
    s->closing = true;
    if (s->dl->ops->close_begin)
        s->dl->ops->close_begin(s);
    if (reason)
        gw_session_offline(&s->base, reason, false);
    gw_session_index_remove(&s->dl->sessions, &s->base);
    if (s->dl->ops->close_end)
        s->dl->ops->close_end(s);
    gw_session_release(&s->base);
}

uint32_t gw_dgram_idle_ms(const gw_dgram_loop *dl, const gw_device *dev)
{
    return dev->product->idle_timeout_ms ? dev->product->idle_timeout_ms : dl->idle_ms;
}

void gw_dgram_sess_touch(gw_dgram_sess *s)
{
    s->deadline = uv_now(&s->dl->loop->uv) + gw_dgram_idle_ms(s->dl, s->base.dev);
}

void gw_dgram_sess_peer(gw_session *s, char *buf, size_t cap)
{
    gw_sockaddr_str(&((gw_dgram_sess *)s)->addr.sa, buf, cap);
}

void gw_dgram_sess_flush(gw_session *s)
{
    (void)s; /* answers go out as soon as they are known */
}

void gw_dgram_sess_kick(gw_session *base)
{
    gw_dgram_sess *s = (gw_dgram_sess *)base;
    if (s->closing)
        return;
    if (base->close_reason) { /* a reload removed or changed the device: offline */
        GW_LOG_INFO(s->dl->ops->area, base->dev->id, NULL,
                    "session closed: the configuration changed", "reason=%s", base->close_reason);
        gw_dgram_sess_close(s, base->close_reason);
        return;
    }
    if (GW_LOG_INFO >= gw_log_level) {
        char peer[64];
        gw_dgram_sess_peer(base, peer, sizeof(peer));
        gw_log_write(GW_LOG_INFO, s->dl->ops->area, base->dev->id, peer,
                     "session moved: the device now sends from another address", NULL);
    }
    gw_metric_inc(*s->dl->ops->metric.takeover);
    gw_dgram_sess_close(s, NULL); /* no offline event: the device stays online on its new loop */
}

static void sweep_one(gw_session *base, void *arg)
{
    gw_dgram_sess *s = (gw_dgram_sess *)base;
    if (*(const uint64_t *)arg < s->deadline)
        return;
    gw_metric_inc(*s->dl->ops->metric.idle);
    if (GW_LOG_INFO >= gw_log_level) {
        char peer[64];
        gw_dgram_sess_peer(base, peer, sizeof(peer));
        gw_log_write(GW_LOG_INFO, s->dl->ops->area, base->dev->id, peer,
                     "idle timeout; device offline", "idle_timeout_ms=%u",
                     gw_dgram_idle_ms(s->dl, base->dev));
    }
    gw_dgram_sess_close(s, "idle_timeout");
}

void gw_dgram_sweep(gw_dgram_loop *dl)
{
    uint64_t now = uv_now(&dl->loop->uv);
    gw_session_index_each(&dl->sessions, sweep_one, &now);
}

static void close_one(gw_session *s, void *reason)
{
    gw_dgram_sess_close((gw_dgram_sess *)s, reason);
}

void gw_dgram_close_all(gw_dgram_loop *dl, const char *reason)
{
    gw_session_index_each(&dl->sessions, close_one, (void *)reason);
}

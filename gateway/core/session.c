/* session.c: session references and device ownership: online/offline events and take-over, in
 * the same order for the store as they happened, whichever loops the sessions live on. */
#include "session.h"

#include <stdio.h>
#include <string.h>

#include "../util/alloc.h"
#include "../util/json_write.h"
#include "../util/log.h"
#include "../util/metrics.h"
#include "runtime.h"

void gw_session_init(gw_session *s, const gw_session_ops *ops, gw_loop *loop)
{
    memset(s, 0, sizeof(*s));
    s->ops = ops;
    s->loop = loop;
    s->refs = 1; /* the adapter's own reference, dropped in its close callback */
}

void gw_session_retain(gw_session *s)
{
    __atomic_fetch_add(&s->refs, 1, __ATOMIC_RELAXED);
}

void gw_session_release(gw_session *s)
{
    if (__atomic_sub_fetch(&s->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        const gw_config *held = s->held;
        s->ops->destroy(s);
        gw_config_release(held);
    }
}

typedef struct kick_msg {
    gw_inbox_msg m;
    gw_session *victim;
} kick_msg;

static void on_kick(gw_loop *l, gw_inbox_msg *m)
{
    kick_msg *k = (kick_msg *)m;
    (void)l;
    k->victim->ops->kick(k->victim);
    gw_session_release(k->victim);
    gw_free(GW_AREA_RUNTIME, k);
}

/* The instance's name in online/offline events (north.client_id, JSON-quoted): which instance of
 * a cluster the device was on. */
static const char *gateway_name(gw_runtime *rt, char *buf, size_t cap)
{
    const char *id = rt->cfg->north.client_id ? rt->cfg->north.client_id : "";
    if (!gw_json_string(buf, cap, id, strlen(id)))
        snprintf(buf, cap, "\"\"");
    return buf;
}

static gw_event *lifecycle_event(gw_session *s, gw_event_kind kind, const gw_device *dev,
                                 const char *payload)
{
    gw_event *ev = gw_store_event_new(s->loop->rt->store, kind, dev);
    if (ev && payload)
        ev->payload = gw_strdup(GW_AREA_EVENT, payload);
    return ev;
}

int gw_session_online(gw_session *s, const gw_device *dev, const char *adapter)
{
    gw_runtime *rt = s->loop->rt;
    char peer[64], payload[512], gwname[300];
    s->ops->peer(s, peer, sizeof(peer));
    gateway_name(rt, gwname, sizeof(gwname));
    gw_event *ev = lifecycle_event(s, GW_EV_ONLINE, dev, NULL);
    pthread_mutex_t *mu = &rt->stripes[dev->index % GW_DEVICE_STRIPES];

    if (s->held != dev->gen) {
        gw_config_retain(dev->gen);
        gw_config_release(s->held);
        s->held = dev->gen;
    }
    s->dev = dev;
    s->online = 1;
    gw_session_retain(s); /* the slot's reference */
    pthread_mutex_lock(mu);
    gw_session *old = rt->slots[dev->index];
    rt->slots[dev->index] = s;
    /* A take-over (or an address move to another loop) stores a second online with no offline
     * between: it says so, so that a cloud can pair the two. */
    snprintf(payload, sizeof(payload), "{\"adapter\":\"%s\",\"peer\":\"%s\"%s,\"gateway\":%s}",
             adapter, peer, old ? ",\"takeover\":true" : "", gwname);
    if (ev)
        ev->payload = gw_strdup(GW_AREA_EVENT, payload);
    gw_loop_flush_events(s->loop);
    if (ev)
        gw_store_submit(rt->store, ev, ev, 1);
    pthread_mutex_unlock(mu);

    if (!old) {
        gw_metric_inc(GW_M_DEVICES_ONLINE);
        return 0;
    }
    /* The old session's slot reference moves to the kick message. */
    kick_msg *k = gw_malloc(GW_AREA_RUNTIME, sizeof(*k));
    if (k) {
        k->m.fn = on_kick;
        k->victim = old;
        gw_loop_post(old->loop, &k->m);
    } else {
        gw_session_release(old);
    }
    return 1;
}

void gw_session_offline(gw_session *s, const char *reason, bool will)
{
    if (!s->dev)
        return;
    gw_runtime *rt = s->loop->rt;
    pthread_mutex_t *mu = &rt->stripes[s->dev->index % GW_DEVICE_STRIPES];
    int owner;

    if (s->close_reason)
        reason = s->close_reason;
    pthread_mutex_lock(mu);
    owner = rt->slots[s->dev->index] == s;
    if (owner) {
        rt->slots[s->dev->index] = NULL;
        gw_loop_flush_events(s->loop);
        char payload[512], gwname[300];
        snprintf(payload, sizeof(payload), "{\"reason\":\"%s\",\"will\":%s,\"gateway\":%s}", reason,
                 will ? "true" : "false", gateway_name(rt, gwname, sizeof(gwname)));
        gw_event *ev = lifecycle_event(s, GW_EV_OFFLINE, s->dev, payload);
        if (ev) {
            snprintf(ev->name, sizeof(ev->name), "%s", reason);
            gw_store_submit(rt->store, ev, ev, 1);
        }
    }
    pthread_mutex_unlock(mu);
    if (owner) {
        s->online = 0;
        gw_metric_add(GW_M_DEVICES_ONLINE, -1);
        gw_session_release(s); /* the slot's reference */
    }
}

/* mqtt_session.c: the stored sessions of clean_session=0 devices (MQTT 3.1.1 section 3.1.2.4; MQTT
 * 5's clean start and session expiry interval map onto them):
 * their subscriptions and QoS 2 ids outlive the connection, are resumed by the device's next
 * clean_session=0 CONNECT on any loop, discarded by a clean_session=1 one, and freed
 * session_expiry_s after the last connection ended (a sweep on loop 0) or at shutdown. */
#include "mqtt_internal.h"

#include <string.h>

#include "../../gateway/util/alloc.h"
#include "../../gateway/util/metrics.h"

#define SWEEP_MS 1000

static uint64_t now_ms(void)
{
    return uv_hrtime() / 1000000; /* one clock for every loop thread */
}

void gw__mqtt_state_clear(gw__mqtt_state *st)
{
    while (st->subs) {
        gw__mqtt_sub *n = st->subs->next;
        gw_free(GW_AREA_SESSION, st->subs);
        st->subs = n;
    }
    st->n_subs = 0;
    gw_free(GW_AREA_SESSION, st->q2_ids);
    st->q2_ids = NULL;
    st->q2_n = st->q2_cap = 0;
}

/* Lock held. A stored state leaves the table (and the gauge). */
static void unslot(gw__mqtt_sessions *ss, gw__mqtt_stored *st)
{
    if (!st->in_table)
        return;
    ss->by_dev[st->dev_index] = NULL;
    st->in_table = false;
    gw_metric_add(GW_M_MQTT_SESSIONS_STORED, -1);
}

static void list_add(gw__mqtt_sessions *ss, gw__mqtt_stored *st)
{
    gw__mqtt_stored **head = &ss->detached[st->dev_index % GW__MQTT_STRIPES];
    st->dprev = NULL;
    st->dnext = *head;
    if (*head)
        (*head)->dprev = st;
    *head = st;
}

static void list_del(gw__mqtt_sessions *ss, gw__mqtt_stored *st)
{
    if (st->dprev)
        st->dprev->dnext = st->dnext;
    else
        ss->detached[st->dev_index % GW__MQTT_STRIPES] = st->dnext;
    if (st->dnext)
        st->dnext->dprev = st->dprev;
    st->dprev = st->dnext = NULL;
}

/* Lock held; st detached (users 0, on the list) or discarded. */
static void free_stored(gw__mqtt_sessions *ss, gw__mqtt_stored *st)
{
    unslot(ss, st);
    gw__mqtt_state_clear(&st->st);
    gw_free(GW_AREA_SESSION, st);
}

int gw__mqtt_sessions_init(gw__mqtt_sessions *ss, size_t n_devices, uint32_t expiry_s)
{
    memset(ss, 0, sizeof(*ss));
    ss->by_dev = gw_calloc(GW_AREA_SESSION, n_devices ? n_devices : 1, sizeof(*ss->by_dev));
    if (!ss->by_dev)
        return GW_ENOMEM;
    for (size_t i = 0; i < GW__MQTT_STRIPES; i++)
        pthread_mutex_init(&ss->mu[i], NULL);
    ss->n_devices = n_devices;
    ss->expiry_s = expiry_s;
    ss->inited = true;
    return 0;
}

void gw__mqtt_sessions_free(gw__mqtt_sessions *ss)
{
    if (!ss->inited)
        return;
    /* Every connection has closed (and detached) by now: what is left is detached. */
    for (size_t i = 0; i < GW__MQTT_STRIPES; i++) {
        while (ss->detached[i]) {
            gw__mqtt_stored *st = ss->detached[i];
            list_del(ss, st);
            free_stored(ss, st);
        }
        pthread_mutex_destroy(&ss->mu[i]);
    }
    gw_free(GW_AREA_SESSION, ss->by_dev);
    ss->by_dev = NULL;
    ss->inited = false;
}

static void on_sweep(uv_timer_t *t)
{
    gw__mqtt_sessions *ss = t->data;
    uint64_t now = now_ms();
    for (size_t i = 0; i < GW__MQTT_STRIPES; i++) {
        pthread_mutex_lock(&ss->mu[i]);
        for (gw__mqtt_stored *st = ss->detached[i], *next; st; st = next) {
            next = st->dnext;
            if (now < st->expires_ms)
                continue;
            list_del(ss, st);
            free_stored(ss, st);
            gw_metric_inc(GW_M_MQTT_SESSIONS_EXPIRED);
        }
        pthread_mutex_unlock(&ss->mu[i]);
    }
}

void gw__mqtt_sessions_start(gw__mqtt_sessions *ss, gw_loop *loop)
{
    if (loop->index != 0 || ss->sweep_on)
        return;
    uv_timer_init(&loop->uv, &ss->sweep);
    ss->sweep.data = ss;
    uv_timer_start(&ss->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    ss->sweep_on = true;
}

void gw__mqtt_sessions_stop(gw__mqtt_sessions *ss, gw_loop *loop)
{
    if (loop->index != 0 || !ss->sweep_on)
        return;
    if (!uv_is_closing((uv_handle_t *)&ss->sweep))
        uv_close((uv_handle_t *)&ss->sweep, NULL);
}

int gw__mqtt_session_attach(gw__mqtt_sessions *ss, gw__mqtt_conn *c, uint32_t dev_index, bool clean,
                            bool *present)
{
    pthread_mutex_t *mu = &ss->mu[dev_index % GW__MQTT_STRIPES];
    int rc = 0;
    *present = false;
    c->mu = mu;
    pthread_mutex_lock(mu);
    gw__mqtt_stored *st = dev_index < ss->n_devices ? ss->by_dev[dev_index] : NULL;
    if (st && st->users == 0 && now_ms() >= st->expires_ms) { /* expired, not swept yet */
        list_del(ss, st);
        free_stored(ss, st);
        gw_metric_inc(GW_M_MQTT_SESSIONS_EXPIRED);
        st = NULL;
    }
    if (clean || dev_index >= ss->n_devices) {
        /* MQTT-3.1.2-6: a clean session discards the stored one. A connection still using it
         * (being taken over) keeps it until it ends, then frees it. */
        if (st) {
            unslot(ss, st);
            if (st->users == 0) {
                list_del(ss, st);
                free_stored(ss, st);
            }
        }
        c->st = &c->own;
        goto done;
    }
    if (st) {
        if (st->users++ == 0)
            list_del(ss, st);
        *present = true;
        gw_metric_inc(GW_M_MQTT_SESSIONS_RESUMED);
        c->st = &st->st;
        goto done;
    }
    st = gw_calloc(GW_AREA_SESSION, 1, sizeof(*st));
    if (!st) {
        rc = GW_ENOMEM;
        goto done;
    }
    st->st.stored = st->in_table = true;
    st->users = 1;
    st->dev_index = dev_index;
    st->expiry_s = ss->expiry_s;
    ss->by_dev[dev_index] = st;
    gw_metric_inc(GW_M_MQTT_SESSIONS_STORED);
    c->st = &st->st;
done:
    pthread_mutex_unlock(mu);
    return rc;
}

int gw__mqtt_session_attach5(gw__mqtt_sessions *ss, gw__mqtt_conn *c, uint32_t dev_index,
                             bool discard, uint32_t expiry_s, bool *present)
{
    pthread_mutex_t *mu = &ss->mu[dev_index % GW__MQTT_STRIPES];
    gw__mqtt_stored *st = NULL;
    bool kept = false;
    pthread_mutex_lock(mu);
    if (dev_index < ss->n_devices && (st = ss->by_dev[dev_index]) != NULL) {
        if (st->users == 0 && now_ms() >= st->expires_ms) { /* expired, not swept yet */
            list_del(ss, st);
            free_stored(ss, st);
            gw_metric_inc(GW_M_MQTT_SESSIONS_EXPIRED);
        } else if (!discard) {
            kept = true; /* resumed below, with the new interval */
        }
    }
    pthread_mutex_unlock(mu);
    int rc;
    if (discard && expiry_s > 0) { /* drop the stored session, then store a new one */
        rc = gw__mqtt_session_attach(ss, c, dev_index, true, present);
        c->st = NULL; /* its own state, still empty */
        if (rc == 0)
            rc = gw__mqtt_session_attach(ss, c, dev_index, false, present);
    } else {
        rc =
            gw__mqtt_session_attach(ss, c, dev_index, !kept && (discard || expiry_s == 0), present);
    }
    if (rc == 0 && c->st && c->st->stored) {
        pthread_mutex_lock(mu);
        gw__mqtt_stored_of(c->st)->expiry_s = expiry_s;
        pthread_mutex_unlock(mu);
    }
    return rc;
}

void gw__mqtt_session_detach(gw__mqtt_sessions *ss, gw__mqtt_conn *c)
{
    gw__mqtt_state *cs = c->st;
    if (!cs)
        return;
    c->st = NULL;
    if (!cs->stored) {
        gw__mqtt_state_clear(cs);
        return;
    }
    gw__mqtt_stored *st = gw__mqtt_stored_of(cs);
    pthread_mutex_lock(c->mu);
    if (--st->users == 0) {
        if (!st->in_table || st->expiry_s == 0) {
            free_stored(ss, st);
        } else {
            st->expires_ms = now_ms() + st->expiry_s * 1000ull;
            list_add(ss, st);
        }
    }
    pthread_mutex_unlock(c->mu);
}

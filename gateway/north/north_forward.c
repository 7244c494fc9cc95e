/* north_forward.c: store-and-forward from the outbox: publishes events in id (commit) order at
 * QoS 1 while the in-flight window has room, marks them forwarded only on PUBACK, and after a
 * lost link resends from the first unacknowledged event. */
#include "north_internal.h"

#include <stdlib.h>
#include <string.h>

#include "../util/alloc.h"
#include "../util/log.h"
#include "../util/metrics.h"

#define TOPIC_CAP 1024

static uint32_t win_cap(const gw_north *n)
{
    return n->nc->window;
}

/* Grows the payload buffer to hold need bytes. */
static int payload_room(gw_north *n, size_t need)
{
    if (need <= n->payload_cap)
        return 0;
    size_t cap = n->payload_cap ? n->payload_cap : 4096;
    while (cap < need)
        cap *= 2;
    char *p = gw_realloc(GW_AREA_RUNTIME, n->payload, cap);
    if (!p)
        return GW_ENOMEM;
    n->payload = p;
    n->payload_cap = cap;
    return 0;
}

/* 1: published (or skipped for good); 0: stop (link gone or out of memory). */
static int publish_row(void *arg, const gw_outbox_row *row)
{
    gw_north *n = arg;
    int mid = 0;
    if (!n->link || !n->up)
        return 1;
    gw__north_cluster_presence(n, row); /* before the event (uses n->topic): in device order */
    size_t tlen =
        gw_north_topic(n->nc, row->kind, row->product, row->device, row->name, n->topic, TOPIC_CAP);
    size_t need = row->payload_len + 1024;
    if (payload_room(n, need))
        return 1;
    size_t plen = gw_north_payload(row, n->payload, n->payload_cap);
    if (!tlen || !plen) { /* cannot be expressed upstream: say so once, never block the rest */
        GW_LOG_ERROR("north", row->device, NULL, "event cannot be forwarded; skipped",
                     "event_id=%lld kind=%s", (long long)row->id, row->kind);
        gw_metric_inc(GW_M_NORTH_PUBLISH_ERRORS);
        n->cursor = row->id;
        n->acked[n->n_acked++] = row->id;
        return 0;
    }
    int rc = gw__north_link_publish(n, n->topic, n->payload, plen, 1, false, &mid);
    if (rc != 0) {
        gw_metric_inc(GW_M_NORTH_PUBLISH_ERRORS);
        if (rc == GW_ECLOSED)
            gw__north_link_down(n, "publish failed", gw_strerror(rc));
        return 1; /* retried from the cursor */
    }
    uint32_t i = (n->win_head + n->win_n) % win_cap(n);
    n->win[i] = (gw__north_slot){row->id, 0, uv_now(&n->loop), mid, false};
    n->win_n++;
    n->unacked++;
    n->cursor = row->id;
    gw_metric_inc(GW_M_NORTH_PUBLISHED);
    gw_metric_inc(GW_M_NORTH_INFLIGHT);
    return 0;
}

/* Frees the head slots whose PUBACK came and whose outbox deletion has committed. */
static void slide(gw_north *n)
{
    uint32_t cap = win_cap(n);
    int64_t done = gw_store_forwarded_done(n->store);
    while (n->win_n && n->win[n->win_head].acked && n->win[n->win_head].handoff <= done) {
        n->win_head = (n->win_head + 1) % cap;
        n->win_n--;
        if (n->ack_hint)
            n->ack_hint--;
        __atomic_store_n(&n->more, 1, __ATOMIC_RELEASE);
    }
}

/* The window is refilled in batches: with publishes in flight, once a quarter of it is free, so
 * that one outbox read, one write and one deletion transaction cover many events rather than the
 * few that one read of PUBACKs frees (measured: issue 19 in docs/PERFORMANCE.md). */
static bool refill(const gw_north *n)
{
    uint32_t cap = win_cap(n);
    return n->win_n == 0 || cap - n->win_n >= (cap + 3) / 4;
}

/* Acknowledged ids go to the store a quarter window at a time (one deletion transaction for
 * them, which frees the slots the next refill needs), or all of them as soon as nothing else
 * awaits its PUBACK. */
static void hand_acked(gw_north *n)
{
    if (n->n_acked >= (win_cap(n) + 3) / 4 || n->unacked == 0)
        gw__north_flush_acked(n);
}

void gw__north_pump(gw_north *n)
{
    if (n->nc->cluster && !n->warm) { /* presence needs the map read first (north_cluster.c) */
        gw__north_flush_acked(n);
        if (n->link)
            gw__north_link_update(n);
        return;
    }
    hand_acked(n);
    slide(n);
    if (n->up && n->link && refill(n) && __atomic_load_n(&n->more, __ATOMIC_ACQUIRE))
        uv_update_time(&n->loop); /* the publishes' send time (the PUBACK timeout) is now */
    while (n->up && n->link && refill(n) && __atomic_exchange_n(&n->more, 0, __ATOMIC_ACQ_REL)) {
        size_t room = win_cap(n) - n->win_n;
        int got = gw_store_reader_outbox(n->reader, n->cursor, room, publish_row, n);
        if (got < 0) {
            GW_LOG_ERROR("north", NULL, NULL, "reading the outbox failed; retrying", "error=%d",
                         got);
            __atomic_store_n(&n->more, 1, __ATOMIC_RELEASE); /* the misc timer retries */
            break;
        }
        if ((size_t)got >= room || n->win_n >= win_cap(n) || !n->up)
            __atomic_store_n(&n->more, 1, __ATOMIC_RELEASE); /* more may be waiting */
    }
    hand_acked(n);
    if (n->link) /* the whole burst leaves in one write */
        gw__north_link_update(n);
}

void gw__north_on_puback(gw_north *n, int mid)
{
    uint32_t cap = win_cap(n);
    /* brokers acknowledge in order: start after the last match and wrap */
    uint32_t from = n->ack_hint < n->win_n ? n->ack_hint : 0;
    for (uint32_t j = 0; j < n->win_n; j++) {
        uint32_t k = (from + j) % n->win_n;
        gw__north_slot *s = &n->win[(n->win_head + k) % cap];
        if (s->mid != mid || s->acked)
            continue;
        n->ack_hint = k + 1;
        s->acked = true;
        n->unacked--;
        n->progress = uv_now(&n->loop);
        if (n->stalled) { /* this broker acknowledges again: back-off from scratch next time */
            n->stalled = false;
            n->failures = 0;
        }
        n->acked[n->n_acked++] = s->id;
        s->handoff = n->handed + (int64_t)n->n_acked;
        gw_metric_add(GW_M_NORTH_INFLIGHT, -1);
        break;
    }
}

bool gw__north_oldest_unacked(const gw_north *n, uint64_t *sent, uint32_t *unacked)
{
    uint32_t cap = win_cap(n), count = 0;
    bool found = false;
    for (uint32_t k = 0; k < n->win_n; k++) {
        const gw__north_slot *s = &n->win[(n->win_head + k) % cap];
        if (s->acked)
            continue;
        if (!found)
            *sent = s->sent;
        found = true;
        count++;
    }
    *unacked = count;
    return found;
}

void gw__north_flush_acked(gw_north *n)
{
    if (!n->n_acked)
        return;
    gw_store_forwarded(n->store, n->acked, n->n_acked);
    n->handed += (int64_t)n->n_acked;
    n->n_acked = 0;
}

void gw__north_reset_window(gw_north *n)
{
    uint32_t cap = win_cap(n);
    int64_t first_unacked = 0;
    for (uint32_t k = 0; k < n->win_n; k++) {
        gw__north_slot *s = &n->win[(n->win_head + k) % cap];
        if (!s->acked) {
            if (!first_unacked)
                first_unacked = s->id;
            gw_metric_add(GW_M_NORTH_INFLIGHT, -1);
        }
    }
    /* everything below the first unacknowledged one was acknowledged (its outbox row goes) */
    if (first_unacked)
        n->cursor = first_unacked - 1;
    n->win_head = n->win_n = n->ack_hint = n->unacked = 0;
    gw__north_flush_acked(n);
    __atomic_store_n(&n->more, 1, __ATOMIC_RELEASE);
}

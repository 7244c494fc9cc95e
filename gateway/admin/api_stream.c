/* api_stream.c: GET /api/stream (Server-Sent Events of committed events, filtered by device=,
 * product=, kind=) and its hub: the store writer formats each committed event once (the north
 * payload) into a bounded ring while a client exists; the main loop fans it out to the clients. */
#include "api_hub.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "../north/north.h"
#include "../util/alloc.h"
#include "../util/log.h"
#include "../util/metrics.h"
#include "api_handlers.h"
#include "api_internal.h"

#define RING_MAX       4096            /* events waiting for the main loop, at most */
#define RING_BYTES     (8u << 20)      /* ... and their bytes */
#define KEEPALIVE_MS   15000           /* a comment line to every client this often */
#define ITEM_FIXED_CAP (4 * 520 + 128) /* the payload's members beside "values" (escaped) */
#define KINDS_ALL      ((1u << GW_EV__COUNT) - 1)

#define HUB_METRICS(X)                                                                             \
    X(GW_M_API_HUB_DROPPED, "api_stream_events_dropped_total{reason=\"ring_full\"}",               \
      "committed events not streamed: the hub's ring was full (RING_MAX events or bytes)")         \
    X(GW_M_API_HUB_EVENTS, "api_stream_events_total", "committed events handed to the stream hub")
HUB_METRICS(GW_METRIC_HANDLE_DEF)
static const gw_metric_def hub_metric_defs[] = {HUB_METRICS(GW_METRIC_DEF){NULL, NULL, NULL}};

/* One formatted event: "data: {...}\n\n" and the keys the filters look at. */
typedef struct hub_item {
    gw_event_kind kind;
    char *device, *product; /* inside the same allocation */
    size_t len;
    char sse[];
} hub_item;

typedef struct hub_client hub_client;
struct hub_client {
    gw_api_hub *hub;
    gw_api_stream *st;
    hub_client *prev, *next;
    char *device, *product; /* filters; NULL: any */
    unsigned kinds;         /* bit per gw_event_kind */
};

struct gw_api_hub {
    uv_loop_t *loop;
    gw_store *store;
    uv_async_t wake;
    uv_timer_t keepalive;
    size_t buffer; /* admin.stream_buffer */
    hub_client *clients;
    int n_clients; /* atomic: the writer formats nothing while it is 0 */
    pthread_mutex_t mu;
    hub_item *ring[RING_MAX];
    size_t head, count, bytes;
    int handles; /* open uv handles */
    bool stopped;
};

/* ---------------------------------------------------------------- writer thread */

static hub_item *format_item(const gw_event *ev)
{
    const char *kind = gw_event_kind_name(ev->kind);
    size_t dl = strlen(ev->dev->id), pl = strlen(ev->dev->product->id);
    size_t plen = ev->payload ? strlen(ev->payload) : 0;
    size_t cap = ITEM_FIXED_CAP + plen;
    hub_item *it = gw_malloc(GW_AREA_API, sizeof(*it) + cap + dl + pl + 2);
    if (!it)
        return NULL;
    gw_outbox_row row = {
        .id = 0,
        .ts = ev->ts,
        .device = ev->dev->id,
        .product = ev->dev->product->id,
        .kind = kind,
        .name = ev->name[0] ? ev->name : NULL,
        .msg_id = ev->msg_id[0] ? ev->msg_id : NULL,
        .payload = ev->payload,
        .payload_len = plen,
    };
    memcpy(it->sse, "data: ", 6);
    size_t n = gw_north_payload(&row, it->sse + 6, cap - 8);
    if (!n) {
        gw_free(GW_AREA_API, it);
        return NULL;
    }
    memcpy(it->sse + 6 + n, "\n\n", 2);
    it->len = 6 + n + 2;
    it->kind = ev->kind;
    it->device = it->sse + cap;
    memcpy(it->device, ev->dev->id, dl + 1);
    it->product = it->device + dl + 1;
    memcpy(it->product, ev->dev->product->id, pl + 1);
    return it;
}

static void hub_tap(void *arg, const gw_event *batch)
{
    gw_api_hub *h = arg;
    bool any = false;
    if (__atomic_load_n(&h->n_clients, __ATOMIC_ACQUIRE) == 0)
        return;
    for (const gw_event *ev = batch; ev; ev = ev->next) {
        if (ev->kind == GW_EV_COMMAND || !ev->dev)
            continue;
        hub_item *it = format_item(ev);
        bool kept = false;
        pthread_mutex_lock(&h->mu);
        if (it && h->count < RING_MAX && h->bytes + it->len <= RING_BYTES) {
            h->ring[(h->head + h->count++) % RING_MAX] = it;
            h->bytes += it->len;
            kept = any = true;
        }
        pthread_mutex_unlock(&h->mu);
        if (!kept) {
            gw_free(GW_AREA_API, it);
            gw_metric_inc(GW_M_API_HUB_DROPPED);
        } else {
            gw_metric_inc(GW_M_API_HUB_EVENTS);
        }
    }
    if (any)
        uv_async_send(&h->wake);
}

/* ---------------------------------------------------------------- main loop */

static bool matches(const hub_client *c, const hub_item *it)
{
    return (c->kinds & (1u << it->kind)) && (!c->device || !strcmp(c->device, it->device)) &&
           (!c->product || !strcmp(c->product, it->product));
}

/* A client whose unsent bytes would pass admin.stream_buffer: dropped, counted. */
static void drop(hub_client *c)
{
    gw_metric_inc(GW_M_API_STREAM_DROPPED);
    GW_LOG_WARN("api", NULL, NULL, "stream client dropped: it does not read",
                "reason=stream_buffer");
    gw_api_stream *st = c->st;
    c->st = NULL;
    gw_api_stream_close(st);
}

static void on_wake(uv_async_t *a)
{
    gw_api_hub *h = a->data;
    for (;;) {
        hub_item *batch[64];
        size_t n = 0;
        pthread_mutex_lock(&h->mu);
        while (n < 64 && h->count) {
            batch[n] = h->ring[h->head];
            h->head = (h->head + 1) % RING_MAX;
            h->count--;
            h->bytes -= batch[n++]->len;
        }
        pthread_mutex_unlock(&h->mu);
        if (!n)
            return;
        for (size_t i = 0; i < n; i++) {
            for (hub_client *c = h->clients, *next; c; c = next) {
                next = c->next;
                if (c->st && matches(c, batch[i]) &&
                    gw_api_stream_write(c->st, batch[i]->sse, batch[i]->len) != 0)
                    drop(c);
            }
            gw_free(GW_AREA_API, batch[i]);
        }
    }
}

static void on_keepalive(uv_timer_t *t)
{
    gw_api_hub *h = t->data;
    for (hub_client *c = h->clients, *next; c; c = next) {
        next = c->next;
        if (c->st && gw_api_stream_write(c->st, ":\n\n", 3) != 0)
            drop(c);
    }
}

static void client_gone(void *arg)
{
    hub_client *c = arg;
    gw_api_hub *h = c->hub;
    if (c->prev)
        c->prev->next = c->next;
    else
        h->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    __atomic_sub_fetch(&h->n_clients, 1, __ATOMIC_RELEASE);
    if (!h->clients && !h->stopped)
        uv_timer_stop(&h->keepalive);
    gw_free(GW_AREA_API, c->device);
    gw_free(GW_AREA_API, c->product);
    gw_free(GW_AREA_API, c);
}

/* kind=property,event: the bits; 0 if a name is unknown. */
static unsigned parse_kinds(const char *s)
{
    unsigned bits = 0;
    while (s && *s) {
        size_t n = strcspn(s, ",");
        int k;
        for (k = 0; k < GW_EV__COUNT; k++) {
            const char *name = gw_event_kind_name((gw_event_kind)k);
            if (k != GW_EV_COMMAND && strlen(name) == n && !strncmp(name, s, n))
                break;
        }
        if (k == GW_EV__COUNT)
            return 0;
        bits |= 1u << k;
        s += n + (s[n] == ',');
    }
    return bits;
}

void gw_api_stream_events(gw_api_req *r, gw_api_ctx *ctx)
{
    gw_api_hub *h = ctx->hub;
    const char *dev = gw_api_query(r, "device"), *prod = gw_api_query(r, "product");
    const char *kind = gw_api_query(r, "kind");
    unsigned kinds = kind && *kind ? parse_kinds(kind) : KINDS_ALL & ~(1u << GW_EV_COMMAND);
    if (!h || h->stopped) {
        gw_api_reply_error(r, 503, "unavailable", NULL, "the event stream is not running");
        return;
    }
    if (!kinds) {
        gw_api_reply_error(r, 400, "bad_query", "kind",
                           "kind: \"%s\" is not a list of event kinds (property, event, online, "
                           "offline, function_reply, write_reply, read_reply)",
                           kind);
        return;
    }
    hub_client *c = gw_calloc(GW_AREA_API, 1, sizeof(*c));
    if (!c || (dev && *dev && !(c->device = gw_strdup(GW_AREA_API, dev))) ||
        (prod && *prod && !(c->product = gw_strdup(GW_AREA_API, prod)))) {
        if (c) {
            gw_free(GW_AREA_API, c->device);
            gw_free(GW_AREA_API, c);
        }
        gw_api_reply_error(r, 503, "out_of_memory", NULL, "no memory for a stream");
        return;
    }
    c->hub = h;
    c->kinds = kinds;
    /* listed and counted before the response head goes out: a client that has the head may
     * publish at once, and the writer formats a commit for the hub only while a client is
     * counted (counted after, a commit in between was never streamed to it) */
    c->next = h->clients;
    if (h->clients)
        h->clients->prev = c;
    h->clients = c;
    if (__atomic_add_fetch(&h->n_clients, 1, __ATOMIC_RELEASE) == 1)
        uv_timer_start(&h->keepalive, on_keepalive, KEEPALIVE_MS, KEEPALIVE_MS);
    c->st = gw_api_stream_open(r, h->buffer, client_gone, c);
    if (!c->st) /* answered (429, 503): no stream, so no on_gone; unlisted here */
        client_gone(c);
}

/* ---------------------------------------------------------------- life */

int gw_api_hub_create(gw_api_hub **out, uv_loop_t *loop, gw_store *store, const gw_config *cfg)
{
    gw_api_hub *h = gw_calloc(GW_AREA_API, 1, sizeof(*h));
    *out = NULL;
    if (!h)
        return GW_ENOMEM;
    gw_metrics_register(hub_metric_defs);
    h->loop = loop;
    h->store = store;
    h->buffer = cfg->admin_http.stream_buffer;
    pthread_mutex_init(&h->mu, NULL);
    uv_async_init(loop, &h->wake, on_wake);
    uv_timer_init(loop, &h->keepalive);
    h->wake.data = h->keepalive.data = h;
    uv_unref((uv_handle_t *)&h->keepalive);
    h->handles = 2;
    gw_store_set_tap(store, hub_tap, h);
    *out = h;
    return 0;
}

static void on_closed(uv_handle_t *hd)
{
    gw_api_hub *h = hd->data;
    h->handles--;
}

void gw_api_hub_stop(gw_api_hub *h)
{
    if (!h || h->stopped)
        return;
    h->stopped = true; /* the store is closed: its writer taps no more */
    on_wake(&h->wake); /* what was committed before the stop still goes out */
    for (hub_client *c = h->clients, *next; c; c = next) {
        next = c->next;
        if (c->st) {
            gw_api_stream *st = c->st;
            c->st = NULL;
            gw_api_stream_close(st);
        }
    }
    uv_close((uv_handle_t *)&h->wake, on_closed);
    uv_close((uv_handle_t *)&h->keepalive, on_closed);
}

void gw_api_hub_free(gw_api_hub *h)
{
    if (!h)
        return;
    if (h->handles > 0 || h->clients) /* still reachable from a handle or a stream: kept */
        return;
    while (h->count) {
        gw_free(GW_AREA_API, h->ring[h->head]);
        h->head = (h->head + 1) % RING_MAX;
        h->count--;
    }
    pthread_mutex_destroy(&h->mu);
    gw_free(GW_AREA_API, h);
}

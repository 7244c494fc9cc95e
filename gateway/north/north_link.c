/* north_link.c: the upstream MQTT connection: a libmosquitto client driven from the north
 * thread's libuv loop (its socket polled, mosquitto_loop_read/write/misc called from callbacks;
 * no libmosquitto thread), reconnection with exponential back-off and jitter, and the command
 * subscriptions. */
#include "north_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/alloc.h"
#include "../util/log.h"
#include "../util/metrics.h"

/* ---- back-off ---- */

static uint64_t next_rand(gw_north *n)
{
    n->rng ^= n->rng << 13;
    n->rng ^= n->rng >> 7;
    n->rng ^= n->rng << 17;
    return n->rng;
}

/* min * 2^failures capped at max, then "equal jitter": half fixed, half random. */
static uint64_t backoff_ms(gw_north *n)
{
    uint64_t d = n->nc->reconnect_min_ms;
    for (unsigned i = 1; i < n->failures && d < n->nc->reconnect_max_ms; i++)
        d *= 2;
    if (d > n->nc->reconnect_max_ms)
        d = n->nc->reconnect_max_ms;
    return d / 2 + next_rand(n) % (d / 2 + 1);
}

static void on_retry(uv_timer_t *t)
{
    gw__north_link_start(t->data);
}

/* ---- polling ---- */

static void on_poll(uv_poll_t *p, int status, int events);

/* Commands create events: while the store queue is at queue_max the socket is not read (the
 * broker keeps the commands; the writer drains the queue without the north thread), re-checked
 * every 5 ms. Events the writer holds for the outbox budget do not count: they wait for the
 * PUBACKs read here (the commands' own events are never held). */
static bool store_busy(gw_north *n)
{
    return gw_store_depth(n->store) - gw_store_held(n->store) >= (int64_t)n->cfg->store.queue_max;
}

static void on_hold(uv_timer_t *t)
{
    gw_north *n = t->data;
    if (n->link)
        gw__north_link_update(n);
}

static void set_events(gw__north_link *l)
{
    gw_north *n = l->n;
    bool busy = n->commands && store_busy(n);
    int want = (busy ? 0 : UV_READABLE) | (mosquitto_want_write(l->mosq) ? UV_WRITABLE : 0);
    if (busy) {
        if (!l->held)
            gw_metric_inc(GW_M_STORE_BACKPRESSURE);
        l->held = true;
        uv_timer_start(&n->hold, on_hold, 5, 0);
    } else {
        if (l->held) /* PUBACKs waited in our socket: the PUBACK timeout counts from now */
            n->progress = uv_now(&n->loop);
        l->held = false;
    }
    if (!l->polling || want == l->events)
        return;
    l->events = want;
    if (want)
        uv_poll_start(&l->poll, want, on_poll);
    else
        uv_poll_stop(&l->poll);
}

void gw__north_link_update(gw_north *n)
{
    if (n->link)
        set_events(n->link);
}

static void on_link_closed(uv_handle_t *h)
{
    gw__north_link *l = h->data;
    mosquitto_destroy(l->mosq); /* closes the socket, now that nothing polls it */
    gw_free(GW_AREA_RUNTIME, l);
}

/* Frees an attempt: the poll is stopped and closed first, the client (and its socket) goes in the
 * close callback. */
static void link_free(gw__north_link *l)
{
    if (l->polling) {
        uv_poll_stop(&l->poll);
        uv_close((uv_handle_t *)&l->poll, on_link_closed);
    } else {
        mosquitto_destroy(l->mosq);
        gw_free(GW_AREA_RUNTIME, l);
    }
}

/* Tears the current attempt down (goodbye: a DISCONNECT first, best effort); schedules the next
 * one unless stopping. */
static void link_down(gw_north *n, const char *why, int rc, bool goodbye)
{
    gw__north_link *l = n->link;
    if (!l)
        return;
    n->link = NULL; /* the DISCONNECT's own callback sees no link */
    if (goodbye && n->up) {
        mosquitto_disconnect(l->mosq);
        mosquitto_loop_write(l->mosq, 1);
    }
    if (n->up) {
        n->up = false;
        gw_metric_add(GW_M_NORTH_CONNECTED, -1);
        GW_LOG_WARN("north", NULL, NULL, "upstream link lost", "why=\"%s\" error=\"%s\"", why,
                    rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
    } else {
        GW_LOG_WARN("north", NULL, NULL, "upstream connection failed",
                    "host=%s port=%u why=\"%s\" error=\"%s\" failures=%u", n->nc->host, n->nc->port,
                    why, rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc),
                    n->failures + 1);
    }
    n->failures++;
    gw__north_reset_window(n);
    link_free(l);
    if (!__atomic_load_n(&n->stop, __ATOMIC_ACQUIRE))
        uv_timer_start(&n->retry, on_retry, backoff_ms(n), 0);
}

void gw__north_link_down(gw_north *n, const char *why, int rc)
{
    link_down(n, why, rc, false);
}

/* A broker that takes publishes and never acknowledges them would hold the window (and, with
 * the outbox at its budget, every device) forever on a link that looks up. The wait counts from
 * the oldest unacknowledged publish, the last PUBACK or the end of our own read pause, whichever
 * is latest: a slow link that acknowledges something within the timeout is not dropped.
 * libmosquitto does not resend by itself: every attempt is a fresh client (no in-flight state
 * carried over) and within a connection it resends only after a CONNACK; the window is resent
 * from the first unacknowledged event by reset_window, as after any lost link. */
void gw__north_link_watchdog(gw_north *n)
{
    gw__north_link *l = n->link;
    uint64_t sent = 0, now, since;
    uint32_t unacked = 0;
    if (!l || !n->up || l->held || !gw__north_oldest_unacked(n, &sent, &unacked))
        return;
    now = uv_now(&n->loop);
    since = sent > n->progress ? sent : n->progress;
    if (now < since || now - since < n->nc->puback_timeout_ms)
        return;
    gw_metric_inc(GW_M_NORTH_PUBACK_TIMEOUTS);
    GW_LOG_WARN("north", NULL, NULL, "no PUBACK from the upstream broker: dropping the link",
                "host=%s port=%u waited_ms=%llu oldest_ms=%llu unacked=%u puback_timeout_ms=%u",
                n->nc->host, n->nc->port, (unsigned long long)(now - since),
                (unsigned long long)(now - sent), unacked, n->nc->puback_timeout_ms);
    n->stalled = true;
    link_down(n, "puback timeout", MOSQ_ERR_TIMEOUT, true);
}

static void on_poll(uv_poll_t *p, int status, int events)
{
    gw__north_link *l = p->data;
    gw_north *n = l->n;
    int rc = MOSQ_ERR_SUCCESS;
    if (status < 0) {
        gw__north_link_down(n, uv_strerror(status), MOSQ_ERR_CONN_LOST);
        return;
    }
    if (events & UV_READABLE)
        rc = mosquitto_loop_read(l->mosq, 1);
    if (rc == MOSQ_ERR_SUCCESS && n->link == l && (events & UV_WRITABLE))
        rc = mosquitto_loop_write(l->mosq, 1);
    if (n->link != l) /* a callback took the link down */
        return;
    if (rc != MOSQ_ERR_SUCCESS) {
        gw__north_link_down(n, "socket", rc);
        return;
    }
    gw__north_pump(n); /* acks freed the window; flushes acked ids; updates the poll */
}

/* ---- libmosquitto callbacks (inside loop_read/write) ---- */

void gw__north_subscribe_commands(gw_north *n, struct mosquitto *m)
{
    static const char *const suffixes[] = {"function/invoke", "properties/write",
                                           "properties/read"};
    char topic[512];
    if (!n->commands)
        return;
    for (size_t i = 0; i < 3; i++) {
        snprintf(topic, sizeof(topic), "%s/+/+/%s", n->nc->prefix, suffixes[i]);
        int rc = mosquitto_subscribe(m, NULL, topic, 1);
        if (rc != MOSQ_ERR_SUCCESS)
            GW_LOG_ERROR("north", NULL, NULL, "subscribe failed", "topic=%s error=\"%s\"", topic,
                         mosquitto_strerror(rc));
    }
}

static void on_connect(struct mosquitto *m, void *arg, int rc)
{
    gw_north *n = arg;
    if (!n->link || n->link->mosq != m)
        return;
    if (rc != 0) {
        GW_LOG_ERROR("north", NULL, NULL, "upstream broker refused the connection",
                     "host=%s port=%u connack=%d reason=\"%s\"", n->nc->host, n->nc->port, rc,
                     mosquitto_connack_string(rc));
        gw__north_link_down(n, "connection refused", MOSQ_ERR_CONN_REFUSED);
        return;
    }
    n->up = true;
    if (!n->stalled) /* after a PUBACK timeout, the first PUBACK resets the back-off */
        n->failures = 0;
    n->progress = uv_now(&n->loop);
    gw_metric_inc(GW_M_NORTH_CONNECTED);
    GW_LOG_INFO("north", NULL, NULL, "upstream connected", "host=%s port=%u outbox=%lld",
                n->nc->host, n->nc->port, (long long)gw_store_outbox_rows(n->store));
    if (n->nc->cluster) /* the commands once the cluster state is read (north_cluster.c) */
        gw__north_cluster_connected(n, m);
    else
        gw__north_subscribe_commands(n, m);
    __atomic_store_n(&n->more, 1, __ATOMIC_RELEASE);
}

static void on_disconnect(struct mosquitto *m, void *arg, int rc)
{
    gw_north *n = arg;
    if (n->link && n->link->mosq == m)
        gw__north_link_down(n, "disconnected", rc ? rc : MOSQ_ERR_CONN_LOST);
}

static void on_publish(struct mosquitto *m, void *arg, int mid)
{
    (void)m;
    gw__north_on_puback(arg, mid);
}

/* {prefix}/{product}/{device}/<function/invoke|properties/write|properties/read> */
static void on_message(struct mosquitto *m, void *arg, const struct mosquitto_message *msg)
{
    gw_north *n = arg;
    char product[64], device[64];
    (void)m;
    if (!msg->topic || gw__north_cluster_message(n, msg) || !n->commands)
        return;
    size_t pl = strlen(n->nc->prefix);
    const char *t = msg->topic;
    if (strncmp(t, n->nc->prefix, pl) != 0 || t[pl] != '/')
        return;
    const char *p = t + pl + 1, *slash1 = strchr(p, '/');
    const char *d = slash1 ? slash1 + 1 : NULL, *slash2 = d ? strchr(d, '/') : NULL;
    if (!slash2 || (size_t)(slash1 - p) >= sizeof(product) ||
        (size_t)(slash2 - d) >= sizeof(device))
        return;
    memcpy(product, p, (size_t)(slash1 - p));
    product[slash1 - p] = 0;
    memcpy(device, d, (size_t)(slash2 - d));
    device[slash2 - d] = 0;
    const char *op = slash2 + 1;
    gw_command_op kind;
    if (strcmp(op, "function/invoke") == 0)
        kind = GW_CMD_INVOKE;
    else if (strcmp(op, "properties/write") == 0)
        kind = GW_CMD_WRITE;
    else if (strcmp(op, "properties/read") == 0)
        kind = GW_CMD_READ;
    else
        return; /* our own ".../reply" never matches the subscriptions; anything else is not ours */
    if (!gw__north_cluster_mine(n, device)) { /* another instance answers it */
        gw_metric_inc(GW_M_NORTH_CLUSTER_LEFT);
        return;
    }
    gw_commands_on_cloud(n->commands, kind, product, device, msg->payload,
                         msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0);
}

/* ---- connecting ---- */

static struct mosquitto *new_client(gw_north *n)
{
    const gw_north_cfg *c = n->nc;
    /* cluster: a clean session, so that commands sent while this instance was away are not
     * delivered late (another instance answered them meanwhile) */
    struct mosquitto *m = mosquitto_new(c->client_id, c->clean_session || c->cluster, n);
    if (!m)
        return NULL;
    if (gw__north_cluster_will(n, m) != 0) {
        GW_LOG_ERROR("north", NULL, NULL, "cannot set the cluster Last Will", "client_id=%s",
                     c->client_id);
        goto fail;
    }
    mosquitto_int_option(m, MOSQ_OPT_PROTOCOL_VERSION, MQTT_PROTOCOL_V311);
    /* Nagle would hold a lone command reply ~40 ms behind the previous segment's ACK */
    mosquitto_int_option(m, MOSQ_OPT_TCP_NODELAY, 1);
    mosquitto_max_inflight_messages_set(m, c->window);
    mosquitto_connect_callback_set(m, on_connect);
    mosquitto_disconnect_callback_set(m, on_disconnect);
    mosquitto_publish_callback_set(m, on_publish);
    mosquitto_message_callback_set(m, on_message);
    /* no log callback: libmosquitto formats every debug line when one is set (measured: ~5 % of
     * the north thread); failures come back as return codes and are logged here */
    if (c->username && mosquitto_username_pw_set(m, c->username, c->password) != MOSQ_ERR_SUCCESS)
        goto fail;
    if (c->ca_file) {
        int rc = mosquitto_tls_set(m, c->ca_file, NULL, c->cert_file, c->key_file, NULL);
        if (rc != MOSQ_ERR_SUCCESS) {
            GW_LOG_ERROR("north", NULL, NULL, "TLS set-up failed", "error=\"%s\"",
                         mosquitto_strerror(rc));
            goto fail;
        }
        if (c->tls_insecure)
            mosquitto_tls_insecure_set(m, true);
    }
    return m;
fail:
    mosquitto_destroy(m);
    return NULL;
}

void gw__north_link_start(gw_north *n)
{
    if (n->link || __atomic_load_n(&n->stop, __ATOMIC_ACQUIRE))
        return;
    if (n->ever_tried)
        gw_metric_inc(GW_M_NORTH_RECONNECTS);
    n->ever_tried = true;
    gw__north_link *l = gw_calloc(GW_AREA_RUNTIME, 1, sizeof(*l));
    if (!l || !(l->mosq = new_client(n))) {
        gw_free(GW_AREA_RUNTIME, l);
        n->failures++;
        uv_timer_start(&n->retry, on_retry, backoff_ms(n), 0);
        return;
    }
    l->n = n;
    n->link = l;
    int rc =
        mosquitto_connect_async(l->mosq, n->nc->host, (int)n->nc->port, (int)n->nc->keepalive_s);
    int fd = mosquitto_socket(l->mosq);
    if (rc != MOSQ_ERR_SUCCESS || fd < 0) {
        gw__north_link_down(n, "connect", rc != MOSQ_ERR_SUCCESS ? rc : MOSQ_ERR_NO_CONN);
        return;
    }
    if (uv_poll_init_socket(&n->loop, &l->poll, fd) != 0) {
        gw__north_link_down(n, "poll", MOSQ_ERR_UNKNOWN);
        return;
    }
    l->poll.data = l;
    l->polling = true;
    l->events = -1;
    set_events(l);
}

void gw__north_link_close(gw_north *n)
{
    gw__north_link *l = n->link;
    if (!l)
        return;
    n->link = NULL; /* callbacks from here on see no link */
    if (n->up) {
        gw__north_cluster_goodbye(n, l->mosq);
        mosquitto_disconnect(l->mosq);
        mosquitto_loop_write(l->mosq, 1); /* the DISCONNECT, best effort */
        n->up = false;
        gw_metric_add(GW_M_NORTH_CONNECTED, -1);
    }
    gw__north_reset_window(n);
    link_free(l);
}

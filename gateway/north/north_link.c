/* north_link.c: the upstream MQTT 3.1.1 connection on the north thread's libuv loop: a uv_tcp_t
 * (optionally TLS, north_tls.c), every packet of a burst queued and written in one uv_write, every
 * whole packet of a read parsed (north_mqtt.c); CONNECT/CONNACK, subscriptions, incoming commands
 * (QoS 0/1/2), PINGREQ keep-alive and the dead-link timeout, reconnection with exponential back-off
 * and jitter. */
#include "north_internal.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/log.h"
#include "../util/metrics.h"

#define READ_CHUNK 65536

int gw__north_buf_reserve(gw__north_buf *b, size_t more)
{
    if (b->cap - b->len >= more)
        return 0;
    size_t cap = b->cap ? b->cap : 4096;
    while (cap - b->len < more)
        cap *= 2;
    uint8_t *p = gw_realloc(GW_AREA_RUNTIME, b->p, cap);
    if (!p)
        return GW_ENOMEM;
    b->p = p;
    b->cap = cap;
    return 0;
}

static void buf_free(gw__north_buf *b)
{
    gw_free(GW_AREA_RUNTIME, b->p);
    *b = (gw__north_buf){0};
}

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

/* ---- writing ---- */

static void on_write(uv_write_t *req, int status);

/* Hands everything queued to the socket in one system call per burst (uv_try_write); what the
 * socket does not take goes with one uv_write, and what is queued meanwhile when it completes. */
static void flush(gw__north_link *l)
{
    char err[300];
    if (!l->tcp_up)
        return;
    if (l->tls && gw__north_tls_output(l->tls, &l->out, &l->cipher, err, sizeof(err))) {
        gw__north_link_down(l->n, "tls", err);
        return;
    }
    gw__north_buf *src = l->tls ? &l->cipher : &l->out;
    if (l->writing || !src->len)
        return;
    l->last_out = uv_now(&l->n->loop);
    /* at once as far as the socket takes it: no write request, no epoll change for a burst
     * that fits the socket buffer (the usual case) */
    int done = uv_try_write((uv_stream_t *)&l->tcp,
                            &(uv_buf_t){.base = (char *)src->p, .len = src->len}, 1);
    if (done < 0 && done != UV_EAGAIN) {
        gw__north_link_down(l->n, "write", uv_strerror(done));
        return;
    }
    if (done > 0) {
        memmove(src->p, src->p + done, src->len - (size_t)done);
        src->len -= (size_t)done;
    }
    if (!src->len)
        return;
    gw__north_buf t = l->wr;
    l->wr = *src;
    *src = t;
    uv_buf_t b = uv_buf_init((char *)l->wr.p, (unsigned)l->wr.len);
    int rc = uv_write(&l->wreq, (uv_stream_t *)&l->tcp, &b, 1, on_write);
    if (rc) {
        gw__north_link_down(l->n, "write", uv_strerror(rc));
        return;
    }
    l->writing = true;
}

static void on_write(uv_write_t *req, int status)
{
    gw__north_link *l = req->data;
    l->writing = false;
    l->wr.len = 0;
    if (l->n->link != l) /* gone (closing): nothing more to send */
        return;
    if (status < 0) {
        gw__north_link_down(l->n, "write", uv_strerror(status));
        return;
    }
    flush(l);
}

/* Room for one packet of size bytes at the end of out. */
static uint8_t *queue(gw__north_link *l, size_t size)
{
    if (gw__north_buf_reserve(&l->out, size))
        return NULL;
    uint8_t *p = l->out.p + l->out.len;
    l->out.len += size;
    return p;
}

static void queue_small(gw__north_link *l, const uint8_t *pkt, size_t len)
{
    uint8_t *p = queue(l, len);
    if (p)
        memcpy(p, pkt, len);
}

static uint16_t next_id(gw__north_link *l)
{
    if (++l->next_id == 0)
        l->next_id = 1;
    return l->next_id;
}

int gw__north_link_publish(gw_north *n, const char *topic, const void *payload, size_t len,
                           uint8_t qos, bool retain, int *id)
{
    gw__north_link *l = n->link;
    if (!l || !l->tcp_up)
        return GW_ECLOSED;
    uint16_t pid = qos ? next_id(l) : 0;
    size_t tl = strlen(topic);
    size_t need = gw_mqtt_publish_size(tl, len, qos);
    if (!need)
        return GW_EINVAL;
    if (gw__north_buf_reserve(&l->out, need))
        return GW_ENOMEM;
    size_t w = gw_mqtt_encode_publish(l->out.p + l->out.len, need, topic, tl, payload, len, qos,
                                      pid, retain);
    if (w != need)
        return GW_EINVAL;
    l->out.len += w;
    if (id)
        *id = pid;
    return 0;
}

int gw__north_link_subscribe(gw_north *n, const char *filter, uint8_t qos)
{
    gw__north_link *l = n->link;
    if (!l || !l->tcp_up)
        return GW_ECLOSED;
    size_t fl = strlen(filter);
    uint16_t pid = next_id(l);
    size_t need = gw_mqtt_encode_subscribe(NULL, 0, pid, filter, fl, qos);
    uint8_t *p = need ? queue(l, need) : NULL;
    if (!p)
        return need ? GW_ENOMEM : GW_EINVAL;
    gw_mqtt_encode_subscribe(p, need, pid, filter, fl, qos);
    return 0;
}

/* ---- reading ---- */

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

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf);
static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void set_reading(gw__north_link *l)
{
    gw_north *n = l->n;
    bool busy = n->commands && store_busy(n);
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
    if (!l->tcp_up || busy == !l->reading)
        return;
    if (busy) {
        uv_read_stop((uv_stream_t *)&l->tcp);
        l->reading = false;
    } else if (uv_read_start((uv_stream_t *)&l->tcp, on_alloc, on_read) == 0) {
        l->reading = true;
    }
}

void gw__north_link_update(gw_north *n)
{
    gw__north_link *l = n->link;
    if (!l)
        return;
    set_reading(l);
    if (n->link == l)
        flush(l);
}

/* ---- tearing down ---- */

static void on_link_closed(uv_handle_t *h)
{
    gw__north_link *l = h->data;
    buf_free(&l->out);
    buf_free(&l->wr);
    buf_free(&l->in);
    buf_free(&l->cipher);
    gw__north_tls_free(l->tls);
    gw_free(GW_AREA_RUNTIME, l->raw);
    if (l->ai)
        freeaddrinfo(l->ai);
    gw_free(GW_AREA_RUNTIME, l);
}

/* A DISCONNECT, written at once as far as the socket takes it (best effort), before the close. */
static void say_goodbye(gw__north_link *l)
{
    uint8_t d[2];
    queue_small(l, d, gw_mqtt_encode_disconnect(d));
    flush(l);
}

/* Tears the current attempt down (goodbye: a DISCONNECT first); schedules the next one unless
 * stopping: after the back-off, or at once (next_addr) when the broker's next address is to be
 * tried (the same attempt: neither a failure nor a reconnect). */
static void link_end(gw_north *n, const char *why, const char *error, bool goodbye, bool next_addr)
{
    gw__north_link *l = n->link;
    if (!l)
        return;
    n->link = NULL; /* a failure while saying goodbye finds no link */
    if (goodbye && n->up)
        say_goodbye(l);
    if (n->up) {
        n->up = false;
        gw_metric_add(GW_M_NORTH_CONNECTED, -1);
        GW_LOG_WARN("north", NULL, NULL, "upstream link lost", "why=\"%s\" error=\"%s\"", why,
                    error);
    } else if (next_addr) {
        GW_LOG_INFO("north", NULL, NULL, "upstream connection failed: trying the next address",
                    "host=%s port=%u address=%u why=\"%s\" error=\"%s\"", n->nc->host, n->nc->port,
                    l->addr, why, error);
    } else {
        GW_LOG_WARN("north", NULL, NULL, "upstream connection failed",
                    "host=%s port=%u why=\"%s\" error=\"%s\" failures=%u", n->nc->host, n->nc->port,
                    why, error, n->failures + 1);
    }
    n->addr_next = next_addr ? l->addr + 1 : 0;
    if (!next_addr)
        n->failures++;
    gw__north_reset_window(n);
    uv_close((uv_handle_t *)&l->tcp, on_link_closed);
    if (!__atomic_load_n(&n->stop, __ATOMIC_ACQUIRE))
        uv_timer_start(&n->retry, on_retry, next_addr ? 0 : backoff_ms(n), 0);
}

static void link_down(gw_north *n, const char *why, const char *error, bool goodbye)
{
    link_end(n, why, error, goodbye, false);
}

/* Whether the broker's name resolved to an address after the one l connects to. */
static bool has_next_addr(const gw__north_link *l)
{
    const struct addrinfo *a = l->ai;
    for (unsigned i = 0; a && i <= l->addr; i++)
        a = a->ai_next;
    return a != NULL;
}

void gw__north_link_down(gw_north *n, const char *why, const char *error)
{
    link_down(n, why, error, false);
}

/* A broker that takes publishes and never acknowledges them would hold the window (and, with
 * the outbox at its budget, every device) forever on a link that looks up. The wait counts from
 * the oldest unacknowledged publish, the last PUBACK or the end of our own read pause, whichever
 * is latest: a slow link that acknowledges something within the timeout is not dropped.
 * Publishes are never resent within a connection: the window is resent from the first
 * unacknowledged event on the next one (reset_window), as after any lost link. */
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
    link_down(n, "puback timeout", "The client is not currently connected.", true);
}

void gw__north_link_misc(gw_north *n)
{
    gw__north_link *l = n->link;
    if (!l)
        return;
    uint64_t now = uv_now(&n->loop), ka = (uint64_t)n->nc->keepalive_s * 1000;
    if (!n->up) { /* TCP connect, TLS handshake and CONNACK within the keep-alive */
        if (now - l->started >= ka) /* no TCP connection yet: the next address, if any */
            link_end(n, "connect", "timed out waiting for the CONNACK", false,
                     !l->tcp_up && has_next_addr(l));
        return;
    }
    if (l->ping_out && now - l->ping_sent >= ka) {
        gw__north_link_down(n, "keep-alive", "no PINGRESP within keepalive_s");
    } else if (!l->ping_out && (now - l->last_out >= ka || now - l->last_in >= ka)) {
        uint8_t p[2];
        queue_small(l, p, gw_mqtt_encode_pingreq(p));
        l->ping_out = true;
        l->ping_sent = now;
        flush(l);
    }
}

/* ---- packets from the broker ---- */

void gw__north_subscribe_commands(gw_north *n)
{
    static const char *const suffixes[] = {"function/invoke", "properties/write",
                                           "properties/read"};
    char topic[512];
    if (!n->commands)
        return;
    for (size_t i = 0; i < 3; i++) {
        snprintf(topic, sizeof(topic), "%s/+/+/%s", n->nc->prefix, suffixes[i]);
        int rc = gw__north_link_subscribe(n, topic, 1);
        if (rc)
            GW_LOG_ERROR("north", NULL, NULL, "subscribe failed", "topic=%s error=\"%s\"", topic,
                         gw_strerror(rc));
    }
}

static void on_connack(gw_north *n, const gw__north_pkt *p)
{
    if (n->up) {
        gw__north_link_down(n, "protocol", "a second CONNACK");
        return;
    }
    if (p->rc != 0) {
        GW_LOG_ERROR("north", NULL, NULL, "upstream broker refused the connection",
                     "host=%s port=%u connack=%d reason=\"%s\"", n->nc->host, n->nc->port, p->rc,
                     gw__north_connack_string(p->rc));
        gw__north_link_down(n, "connection refused", gw__north_connack_string(p->rc));
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
        gw__north_cluster_connected(n);
    else
        gw__north_subscribe_commands(n);
    __atomic_store_n(&n->more, 1, __ATOMIC_RELEASE);
}

/* {prefix}/{product}/{device}/<function/invoke|properties/write|properties/read> */
static void on_message(gw_north *n, const gw__north_msg *msg)
{
    char product[64], device[64];
    if (gw__north_cluster_message(n, msg) || !n->commands)
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

static void on_publish(gw__north_link *l, const gw__north_pkt *p)
{
    gw_north *n = l->n;
    char topic[1024];
    uint8_t ack[4];
    if (p->pub.qos == 1) /* queued: leaves with whatever the message causes, in one write */
        queue_small(l, ack, gw_mqtt_encode_ack(ack, GW_MQTT_PUBACK, p->id));
    else if (p->pub.qos == 2)
        queue_small(l, ack, gw_mqtt_encode_ack(ack, GW_MQTT_PUBREC, p->id));
    if (p->pub.topic.len >= sizeof(topic))
        return; /* longer than any topic of ours */
    memcpy(topic, p->pub.topic.p, p->pub.topic.len);
    topic[p->pub.topic.len] = 0;
    gw__north_msg msg = {topic, p->pub.payload, (int)p->pub.payload_len, p->pub.retain};
    on_message(n, &msg);
}

/* One packet; false when it took the link down. */
static bool on_packet(gw__north_link *l, const gw__north_pkt *p)
{
    gw_north *n = l->n;
    uint8_t ack[4];
    if (!n->up && p->type != GW_MQTT_CONNACK) {
        gw__north_link_down(n, "protocol", "a packet before the CONNACK");
        return false;
    }
    switch (p->type) {
    case GW_MQTT_CONNACK:
        on_connack(n, p);
        break;
    case GW_MQTT_PUBACK:
        gw__north_on_puback(n, p->id);
        break;
    case GW_MQTT_PUBLISH:
        on_publish(l, p);
        break;
    case GW_MQTT_PUBREL: /* QoS 2 from the broker (we subscribe at 1; answered all the same) */
        queue_small(l, ack, gw_mqtt_encode_ack(ack, GW_MQTT_PUBCOMP, p->id));
        break;
    case GW_MQTT_PINGRESP:
        l->ping_out = false;
        break;
    case GW_MQTT_SUBACK:
        if (p->rc)
            GW_LOG_ERROR("north", NULL, NULL, "the upstream broker refused a subscription",
                         "packet_id=%u return_code=%u", p->id, p->rc);
        break;
    default: /* PUBREC, PUBCOMP, UNSUBACK: we send neither QoS 2 nor UNSUBSCRIBE */
        break;
    }
    return n->link == l;
}

/* Parses every whole packet in l->in; false when the link went down. */
static bool parse_all(gw__north_link *l)
{
    gw_north *n = l->n;
    size_t off = 0;
    bool alive = true;
    while (alive && off < l->in.len) {
        gw__north_pkt p;
        const char *why;
        int used =
            gw__north_mqtt_next(l->in.p + off, l->in.len - off, GW__NORTH_MAX_PACKET, &p, &why);
        if (used == 0)
            break;
        if (used < 0) {
            gw_metric_inc(GW_M_NORTH_PROTOCOL_ERRORS);
            GW_LOG_ERROR("north", NULL, NULL, "bad packet from the upstream broker",
                         "host=%s port=%u reason=%s", n->nc->host, n->nc->port,
                         why ? why : "malformed_packet");
            gw__north_link_down(n, "protocol", why ? why : "malformed_packet");
            return false;
        }
        off += (size_t)used;
        alive = on_packet(l, &p);
    }
    if (!alive)
        return false;
    if (off) {
        memmove(l->in.p, l->in.p + off, l->in.len - off);
        l->in.len -= off;
    }
    return true;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf)
{
    gw__north_link *l = h->data;
    (void)hint;
    if (l->tls) {
        *buf = uv_buf_init((char *)l->raw, READ_CHUNK);
        return;
    }
    if (gw__north_buf_reserve(&l->in, READ_CHUNK)) {
        *buf = uv_buf_init(NULL, 0); /* UV_ENOBUFS */
        return;
    }
    *buf = uv_buf_init((char *)l->in.p + l->in.len, (unsigned)(l->in.cap - l->in.len));
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    gw__north_link *l = s->data;
    gw_north *n = l->n;
    char err[300];
    if (nread == 0 || n->link != l)
        return;
    if (nread < 0) {
        gw__north_link_down(n, "socket",
                            nread == UV_EOF ? "The connection was lost." : uv_strerror((int)nread));
        return;
    }
    l->last_in = uv_now(&n->loop);
    if (l->tls) {
        /* the packets read before a failure (a refusing CONNACK before the close) count first */
        int rc = gw__north_tls_input(l->tls, buf->base, (size_t)nread, &l->in, &l->cipher, err,
                                     sizeof(err));
        if (!parse_all(l))
            return;
        if (rc) {
            gw__north_link_down(n, "tls", err);
            return;
        }
    } else {
        l->in.len += (size_t)nread;
        if (!parse_all(l))
            return;
    }
    gw__north_pump(n); /* acks freed the window; flushes acked ids; writes; reading on/off */
}

/* ---- connecting ---- */

static int queue_connect(gw_north *n, gw__north_link *l)
{
    const gw_north_cfg *c = n->nc;
    char will[1024];
    /* cluster: a clean session, so that commands sent while this instance was away are not
     * delivered late (another instance answered them meanwhile) */
    gw__north_connect cc = {c->client_id, c->username, c->username ? c->password : NULL,
                            (uint16_t)c->keepalive_s, c->clean_session || c->cluster};
    if (gw__north_cluster_will(n, will, sizeof(will))) {
        cc.will_topic = will;
        cc.will_payload = "offline";
        cc.will_len = 7;
        cc.will_qos = 1;
        cc.will_retain = true;
    }
    size_t need = gw__north_mqtt_connect(NULL, 0, &cc);
    uint8_t *p = need ? queue(l, need) : NULL;
    if (!p)
        return GW_EINVAL;
    gw__north_mqtt_connect(p, need, &cc);
    return 0;
}

static void on_connect(uv_connect_t *req, int status)
{
    gw__north_link *l = req->data;
    gw_north *n = l->n;
    char err[300];
    if (n->link != l) /* cancelled by a close */
        return;
    if (status < 0) { /* the broker's next address, if it has one, at once */
        link_end(n, "connect", uv_strerror(status), false, has_next_addr(l));
        return;
    }
    l->tcp_up = true;
    l->last_in = l->last_out = uv_now(&n->loop);
    uv_tcp_nodelay(&l->tcp, 1); /* a lone command reply leaves at once; bursts are one write */
    if (queue_connect(n, l)) {
        gw__north_link_down(n, "connect", "the CONNECT cannot be encoded");
        return;
    }
    if (l->tls && gw__north_tls_input(l->tls, NULL, 0, &l->in, &l->cipher, err, sizeof(err))) {
        gw__north_link_down(n, "tls", err); /* starts the handshake */
        return;
    }
    gw__north_link_update(n); /* reads; writes the CONNECT (or the ClientHello) */
}

void gw__north_link_start(gw_north *n)
{
    char err[300], port[16];
    if (n->link || __atomic_load_n(&n->stop, __ATOMIC_ACQUIRE))
        return;
    if (n->ever_tried && !n->addr_next) /* the next address is the same attempt */
        gw_metric_inc(GW_M_NORTH_RECONNECTS);
    n->ever_tried = true;
    gw__north_link *l = gw_calloc(GW_AREA_RUNTIME, 1, sizeof(*l));
    if (!l || uv_tcp_init(&n->loop, &l->tcp) != 0) {
        gw_free(GW_AREA_RUNTIME, l);
        n->failures++;
        uv_timer_start(&n->retry, on_retry, backoff_ms(n), 0);
        return;
    }
    l->n = n;
    l->tcp.data = l->conn.data = l->wreq.data = l;
    l->started = uv_now(&n->loop);
    n->link = l;
    if (n->nc->ca_file && (!(l->raw = gw_malloc(GW_AREA_RUNTIME, READ_CHUNK)) ||
                           gw__north_tls_new(n->nc, &l->tls, err, sizeof(err)))) {
        if (!l->raw)
            snprintf(err, sizeof(err), "out of memory");
        GW_LOG_ERROR("north", NULL, NULL, "TLS set-up failed", "error=\"%s\"", err);
        gw__north_link_down(n, "tls", err);
        return;
    }
    /* resolved on this thread, once per attempt (a numeric host costs no look-up) */
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM};
    snprintf(port, sizeof(port), "%u", n->nc->port);
    int rc = getaddrinfo(n->nc->host, port, &hints, &l->ai);
    if (rc || !l->ai) {
        l->ai = NULL;
        gw__north_link_down(n, "connect", rc ? gai_strerror(rc) : "no address");
        return;
    }
    /* the addresses in the resolver's order (RFC 6724), one per connect: a refused one passes
     * to the next at once (link_end) */
    const struct addrinfo *a = l->ai;
    for (unsigned i = 0; i < n->addr_next && a->ai_next; i++)
        a = a->ai_next, l->addr++;
    n->addr_next = 0;
    rc = uv_tcp_connect(&l->conn, &l->tcp, a->ai_addr, on_connect);
    if (rc)
        gw__north_link_down(n, "connect", uv_strerror(rc));
}

void gw__north_link_close(gw_north *n)
{
    gw__north_link *l = n->link;
    if (!l)
        return;
    if (n->up)
        gw__north_cluster_goodbye(n);
    n->link = NULL; /* callbacks from here on see no link */
    if (n->up) {
        say_goodbye(l); /* the DISCONNECT, best effort */
        n->up = false;
        gw_metric_add(GW_M_NORTH_CONNECTED, -1);
    }
    gw__north_reset_window(n);
    uv_close((uv_handle_t *)&l->tcp, on_link_closed);
}

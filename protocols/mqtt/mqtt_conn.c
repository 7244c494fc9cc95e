/* mqtt_conn.c: one MQTT device connection: reading and framing on the loop's shared buffer,
 * CONNECT authentication, ACL, PUBLISH to the dispatcher, acks in order after commit, keep-alive,
 * last will, take-over and close. */
#include "mqtt_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../gateway/alloc.h"
#include "../../gateway/codec.h"
#include "../../gateway/dispatch.h"
#include "../../gateway/listen.h"
#include "../../gateway/log.h"
#include "../../gateway/metrics.h"

#define ACK_READY   (1u << 24)
#define ACK_TYPE(e) (((e) >> 16) & 0xff)
#define IN_MIN      4096

static const gw_session_ops conn_ops;

static gw__mqtt_conn *conn_of(gw_session *s)
{
    return (gw__mqtt_conn *)s;
}

static const gw__mqtt_cfg *cfg_of(const gw__mqtt_conn *c)
{
    return &c->ml->ad->cfg;
}

static void peer_of(gw_session *s, char *buf, size_t cap)
{
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (uv_tcp_getpeername(&conn_of(s)->tcp, (struct sockaddr *)&ss, &len) != 0)
        ss.ss_family = AF_UNSPEC;
    gw_sockaddr_str((struct sockaddr *)&ss, buf, cap);
}

#define CLOG(level, c, msg, ...)                                                                   \
    do {                                                                                           \
        if ((level) >= gw_log_level) {                                                             \
            char peer_[64];                                                                        \
            peer_of(&(c)->base, peer_, sizeof(peer_));                                             \
            gw_log_write((level), "mqtt", (c)->base.dev ? (c)->base.dev->id : NULL, peer_, (msg),  \
                         __VA_ARGS__);                                                             \
        }                                                                                          \
    } while (0)

/* ---- output ---- */

static int out_reserve(gw__mqtt_conn *c, size_t n)
{
    if (c->out_len + n <= c->out_cap)
        return 0;
    size_t cap = c->out_cap ? c->out_cap : 256;
    while (cap < c->out_len + n)
        cap *= 2;
    uint8_t *o = gw_realloc(GW_AREA_SESSION, c->out, cap);
    if (!o)
        return GW_ENOMEM;
    c->out = o;
    c->out_cap = (uint32_t)cap;
    return 0;
}

static void out_append(gw__mqtt_conn *c, const uint8_t *p, size_t n)
{
    if (out_reserve(c, n))
        return; /* out of memory: the peer will time out and retry */
    memcpy(c->out + c->out_len, p, n);
    c->out_len += (uint32_t)n;
    gw_session_mark_dirty(&c->base);
}

typedef struct write_req {
    uv_write_t req;
    gw__mqtt_conn *c;
    uint8_t data[];
} write_req;

static void on_written(uv_write_t *req, int status)
{
    write_req *w = (write_req *)req;
    gw__mqtt_conn *c = w->c;
    if (status < 0 && status != UV_ECANCELED && c->state != GW__MQTT_CLOSING)
        gw__mqtt_close(c, "connection_lost", true);
    gw_free(GW_AREA_SESSION, w);
    gw_session_release(&c->base);
}

/* Writes what is pending: uv_try_write first (no copy, no request), a queued write for the rest. */
static void flush(gw_session *s)
{
    gw__mqtt_conn *c = conn_of(s);
    if (!c->out_len || uv_is_closing((uv_handle_t *)&c->tcp))
        goto done;
    uv_buf_t b = uv_buf_init((char *)c->out, c->out_len);
    int n = uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp)
                ? UV_EAGAIN
                : uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n == UV_EAGAIN)
        n = 0;
    if (n < 0) {
        c->out_len = 0;
        gw__mqtt_close(c, "connection_lost", true);
        goto done;
    }
    if ((uint32_t)n < c->out_len) {
        size_t rest = c->out_len - (size_t)n;
        write_req *w = gw_malloc(GW_AREA_SESSION, sizeof(*w) + rest);
        if (!w) {
            gw__mqtt_close(c, "connection_lost", false);
            goto done;
        }
        memcpy(w->data, c->out + n, rest);
        w->c = c;
        gw_session_retain(&c->base);
        b = uv_buf_init((char *)w->data, (unsigned)rest);
        if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_written) < 0) {
            gw_free(GW_AREA_SESSION, w);
            gw_session_release(&c->base);
        }
    }
done:
    /* An idle connection keeps no output buffer: what was not written went to a write request. */
    c->out_len = 0;
    gw_free(GW_AREA_SESSION, c->out);
    c->out = NULL;
    c->out_cap = 0;
}

/* ---- acks in PUBLISH order ---- */

static int ack_push(gw__mqtt_conn *c, uint32_t entry, uint32_t *seq)
{
    if (c->ack_n == c->ack_cap) {
        uint32_t ncap = c->ack_cap ? c->ack_cap * 2 : 16;
        uint32_t *n = gw_malloc(GW_AREA_SESSION, ncap * sizeof(uint32_t));
        if (!n)
            return GW_ENOMEM;
        for (uint32_t i = 0; i < c->ack_n; i++)
            n[i] = c->acks[(c->ack_head + i) & (c->ack_cap - 1)];
        gw_free(GW_AREA_SESSION, c->acks);
        c->acks = n;
        c->ack_cap = ncap;
        c->ack_head = 0;
    }
    c->acks[(c->ack_head + c->ack_n) & (c->ack_cap - 1)] = entry;
    *seq = c->ack_seq + c->ack_n;
    c->ack_n++;
    return 0;
}

static void start_reading(gw__mqtt_conn *c);

/* Sends every ready ack at the head of the ring. */
static void ack_drain(gw__mqtt_conn *c)
{
    while (c->ack_n) {
        uint32_t e = c->acks[c->ack_head];
        if (!(e & ACK_READY))
            break;
        uint8_t pkt[4];
        out_append(c, pkt, gw_mqtt_encode_ack(pkt, (uint8_t)ACK_TYPE(e), (uint16_t)(e & 0xffff)));
        c->ack_head = (c->ack_head + 1) & (c->ack_cap - 1);
        c->ack_n--;
        c->ack_seq++;
    }
    if (c->ack_n == 0 && c->acks) {
        gw_free(GW_AREA_SESSION, c->acks);
        c->acks = NULL;
        c->ack_cap = c->ack_head = 0;
    }
    if (c->paused_inflight && c->ack_n < cfg_of(c)->max_inflight / 2) {
        c->paused_inflight = false;
        gw__mqtt_resume(c);
    }
}

static void committed(gw_session *s, gw_event *ev)
{
    gw__mqtt_conn *c = conn_of(s);
    if (c->state == GW__MQTT_CLOSING)
        return;
    if (ev->status != 0) { /* the store gave up: never acknowledge; the device will resend */
        gw__mqtt_close(c, "store_error", false);
        return;
    }
    uint32_t off = ev->token - c->ack_seq;
    if (off < c->ack_n)
        c->acks[(c->ack_head + off) & (c->ack_cap - 1)] |= ACK_READY;
    ack_drain(c);
}

/* ---- errors ---- */

static void protocol_error(gw__mqtt_conn *c, gw_mqtt_error e, const char *what)
{
    static const char *const names[] = {
#define GW_E_NAME(en, label) label,
        GW_MQTT_ERRORS(GW_E_NAME)
#undef GW_E_NAME
    };
    gw_metric_mqtt_error(e);
    CLOG(GW_LOG_WARN, c, "protocol error; closing", "error=%s detail=\"%s\"", names[e], what);
    gw__mqtt_close(c, "protocol_error", true);
}

static gw_mqtt_error error_kind(const char *why)
{
    if (why && strcmp(why, "invalid_utf8") == 0)
        return GW_MQTT_E_UTF8;
    if (why && strcmp(why, "wildcard_topic") == 0)
        return GW_MQTT_E_WILDCARD;
    return GW_MQTT_E_MALFORMED;
}

/* ---- CONNECT ---- */

static bool secret_equal(const char *secret, const uint8_t *pw, size_t len)
{
    size_t sl = strlen(secret);
    unsigned char diff = (unsigned char)(sl != len);
    for (size_t i = 0; i < len; i++)
        diff |= (unsigned char)(pw[i] ^ (unsigned char)secret[i < sl ? i : 0]);
    return diff == 0 && sl == len;
}

static void refuse(gw__mqtt_conn *c, uint8_t rc, gw_metric m, const char *why, const char *id,
                   size_t idlen)
{
    uint8_t pkt[4];
    char q[96], idbuf[70];
    snprintf(idbuf, sizeof(idbuf), "%.*s", (int)(idlen > 64 ? 64 : idlen), id ? id : "");
    if ((int)m >= 0)
        gw_metric_inc(m);
    CLOG(GW_LOG_WARN, c, "connection refused", "connack=%u reason=%s client_id=%s", rc, why,
         gw_log_quote(q, sizeof(q), idbuf));
    out_append(c, pkt, gw_mqtt_encode_connack(pkt, false, rc));
    flush(&c->base);
    gw__mqtt_close(c, "refused", false);
}

static bool own_topic(const gw__mqtt_conn *c, const char *t, size_t len);

static int handle_connect(gw__mqtt_conn *c, const uint8_t *body, uint32_t len)
{
    gw_mqtt_connect cn;
    uint8_t rc = 0xff;
    const gw_config *cfg = c->ml->loop->rt->cfg;

    const char *why = NULL;
    if (gw_mqtt_decode_connect_why(body, len, &cn, &rc, &why) != 0) {
        if (rc == 1) {
            gw_metric_mqtt_error(GW_MQTT_E_BAD_PROTOCOL);
            refuse(c, 1, (gw_metric)-1, "unsupported_protocol", NULL, 0);
        } else if (rc == 2) {
            refuse(c, 2, GW_M_MQTT_AUTH_CLIENTID, "identifier_rejected", NULL, 0);
        } else {
            protocol_error(c, error_kind(why), "bad CONNECT");
        }
        return -1;
    }
    if (cn.client_id.len == 0) {
        refuse(c, 2, GW_M_MQTT_AUTH_CLIENTID, "identifier_rejected", NULL, 0);
        return -1;
    }
    const gw_device *dev = gw_config_device_n(cfg, cn.client_id.p, cn.client_id.len);
    if (!dev) {
        refuse(c, 5, GW_M_MQTT_AUTH_UNKNOWN, "unknown_device", cn.client_id.p, cn.client_id.len);
        return -1;
    }
    const char *pid = dev->product->id;
    if (!cn.has_username || !cn.has_password || cn.username.len != strlen(pid) ||
        memcmp(cn.username.p, pid, cn.username.len) != 0 ||
        !secret_equal(dev->secret, cn.password, cn.password_len)) {
        refuse(c, 4, GW_M_MQTT_AUTH_BAD_CRED, "bad_credentials", cn.client_id.p, cn.client_id.len);
        return -1;
    }
    c->base.dev = dev;
    c->prefix_len = (uint8_t)(1 + strlen(pid) + 1 + strlen(dev->id) + 1);
    if (cn.has_will) {
        if (!own_topic(c, cn.will_topic.p, cn.will_topic.len)) {
            c->base.dev = NULL;
            gw_metric_inc(GW_M_MQTT_ACL_PUB);
            refuse(c, 5, (gw_metric)-1, "will_topic_not_allowed", cn.client_id.p, cn.client_id.len);
            return -1;
        }
        c->will_topic = gw_malloc(GW_AREA_SESSION, cn.will_topic.len + 1u);
        c->will_payload = gw_malloc(GW_AREA_SESSION, cn.will_payload_len + 1u);
        if (!c->will_topic || !c->will_payload) {
            gw__mqtt_close(c, "out_of_memory", false);
            return -1;
        }
        memcpy(c->will_topic, cn.will_topic.p, cn.will_topic.len);
        c->will_topic[cn.will_topic.len] = 0;
        memcpy(c->will_payload, cn.will_payload, cn.will_payload_len);
        c->will_topic_len = cn.will_topic.len;
        c->will_payload_len = cn.will_payload_len;
        c->will_qos = cn.will_qos;
        c->has_will = true;
    }
    c->keepalive = cn.keepalive;
    c->deadline = cn.keepalive ? uv_now(&c->ml->loop->uv) + cn.keepalive * 1500ull : 0;
    c->state = GW__MQTT_CONNECTED;
    uint8_t pkt[4];
    out_append(c, pkt, gw_mqtt_encode_connack(pkt, false, 0));
    if (gw_session_online(&c->base, dev, "mqtt") > 0) {
        gw_metric_inc(GW_M_MQTT_TAKEOVER);
        CLOG(GW_LOG_INFO, c, "session taken over", "keepalive=%u", cn.keepalive);
    } else {
        CLOG(GW_LOG_DEBUG, c, "connected", "keepalive=%u", cn.keepalive);
    }
    return 0;
}

/* ---- topics and ACL ---- */

/* "/{product}/{device}/..." of this connection's device. */
static bool own_topic(const gw__mqtt_conn *c, const char *t, size_t len)
{
    const char *pid = c->base.dev->product->id, *did = c->base.dev->id;
    size_t pl = strlen(pid), dl = strlen(did);
    return len > pl + dl + 3 && t[0] == '/' && memcmp(t + 1, pid, pl) == 0 && t[1 + pl] == '/' &&
           memcmp(t + 2 + pl, did, dl) == 0 && t[2 + pl + dl] == '/';
}

static bool has_sub(const gw__mqtt_conn *c, const char *topic, size_t len)
{
    for (const gw__mqtt_sub *s = c->subs; s; s = s->next)
        if (gw_mqtt_topic_match(s->filter, s->len, topic, len))
            return true;
    return false;
}

/* Tells a subscribed device why its message was refused, on "<topic>/reply" (QoS 0). */
static void send_reject_reply(gw__mqtt_conn *c, const char *topic, size_t tlen, const char *msg_id,
                              const gw_reject *rej)
{
    char rt[320], q[256];
    if (!c->subs || tlen + 6 >= sizeof(rt))
        return;
    memcpy(rt, topic, tlen);
    memcpy(rt + tlen, "/reply", 6);
    if (!has_sub(c, rt, tlen + 6))
        return;
    json_t *o = json_pack("{s:s,s:b,s:s,s:s}", "messageId", msg_id ? msg_id : "", "success", 0,
                          "code", gw_reason_name(rej->reason), "message", rej->detail);
    char *body = o ? json_dumps(o, JSON_COMPACT) : NULL;
    json_decref(o);
    (void)q;
    if (!body)
        return;
    size_t blen = strlen(body);
    size_t need = gw_mqtt_publish_size(tlen + 6, blen, 0);
    if (out_reserve(c, need) == 0) {
        c->out_len +=
            (uint32_t)gw_mqtt_encode_publish(c->out + c->out_len, c->out_cap - c->out_len, rt,
                                             tlen + 6, (const uint8_t *)body, blen, 0, 0, false);
        gw_session_mark_dirty(&c->base);
    }
    free(body);
}

/* Decodes and dispatches a PUBLISH on one of the device's own topics. Returns 0 when queued for
 * commit (*queued = true), or the message was refused (answered as the contract says). */
static void ingest(gw__mqtt_conn *c, const char *topic, size_t tlen, const uint8_t *payload,
                   size_t plen, bool want_commit, uint32_t seq, bool *queued)
{
    const char *rest = topic + c->prefix_len;
    size_t rlen = tlen - c->prefix_len;
    gw_decode_hint hint = {GW_MSG_NONE, NULL};
    char event_id[64];
    gw_reject rej = {GW_R_NONE, ""};
    gw_thing_msg m;
    const gw_product *p = c->base.dev->product;

    *queued = false;
    memset(&m, 0, sizeof(m));
    if (rlen == 17 && memcmp(rest, "properties/report", 17) == 0) {
        hint.kind = GW_MSG_PROPERTY_REPORT;
    } else if (rlen > 6 && memcmp(rest, "event/", 6) == 0 && rlen - 6 < sizeof(event_id) &&
               !memchr(rest + 6, '/', rlen - 6)) {
        memcpy(event_id, rest + 6, rlen - 6);
        event_id[rlen - 6] = 0;
        hint.kind = GW_MSG_EVENT;
        hint.name = event_id;
    } else {
        gw_reject_set(&rej, GW_R_UNKNOWN_TOPIC, "topic %.*s is not a device upload topic",
                      (int)(tlen > 200 ? 200 : tlen), topic);
        gw_dispatch_rejected(&c->base, &rej, NULL);
        return;
    }
    if (p->codec_ops->decode(p, &hint, payload, plen, &m, &rej) != 0) {
        gw_dispatch_rejected(&c->base, &rej, m.msg_id);
        send_reject_reply(c, topic, tlen, m.msg_id, &rej);
        gw_thing_msg_clear(&m);
        return;
    }
    int rc = gw_dispatch_message(&c->base, &m, seq, want_commit, &rej);
    if (rc == GW_EINVAL)
        send_reject_reply(c, topic, tlen, m.msg_id, &rej);
    *queued = rc == 0;
    gw_thing_msg_clear(&m);
}

/* QoS 2 packet ids received and not yet released (PUBREL): 1 if pid is already there (a
 * retransmission), 0 if it was added, -1 if the set is full or out of memory. */
static int q2_note(gw__mqtt_conn *c, uint16_t pid)
{
    for (uint16_t i = 0; i < c->q2_n; i++)
        if (c->q2_ids[i] == pid)
            return 1;
    if (c->q2_n >= cfg_of(c)->max_inflight)
        return -1;
    if (c->q2_n == c->q2_cap) {
        uint16_t cap = c->q2_cap ? (uint16_t)(c->q2_cap * 2) : 8;
        uint16_t *n = gw_realloc(GW_AREA_SESSION, c->q2_ids, cap * sizeof(uint16_t));
        if (!n)
            return -1;
        c->q2_ids = n;
        c->q2_cap = cap;
    }
    c->q2_ids[c->q2_n++] = pid;
    return 0;
}

static void q2_release(gw__mqtt_conn *c, uint16_t pid)
{
    for (uint16_t i = 0; i < c->q2_n; i++) {
        if (c->q2_ids[i] == pid) {
            c->q2_ids[i] = c->q2_ids[--c->q2_n];
            break;
        }
    }
    if (c->q2_n == 0) {
        gw_free(GW_AREA_SESSION, c->q2_ids);
        c->q2_ids = NULL;
        c->q2_cap = 0;
    }
}

static int handle_publish(gw__mqtt_conn *c, uint8_t flags, const uint8_t *body, uint32_t len)
{
    gw_mqtt_publish pub;
    const char *why = NULL;
    if (gw_mqtt_decode_publish(body, len, flags, &pub, &why) != 0) {
        protocol_error(c, error_kind(why), why ? why : "bad PUBLISH");
        return -1;
    }
    gw_metric_inc(GW_M_MSG_RECEIVED);
    if (!own_topic(c, pub.topic.p, pub.topic.len)) {
        char q[128], t[100];
        snprintf(t, sizeof(t), "%.*s", pub.topic.len > 96 ? 96 : pub.topic.len, pub.topic.p);
        gw_metric_inc(GW_M_MQTT_ACL_PUB);
        CLOG(GW_LOG_WARN, c, "publish outside the device's topics; closing", "topic=%s",
             gw_log_quote(q, sizeof(q), t));
        gw__mqtt_close(c, "acl_violation", true);
        return -1;
    }
    uint32_t seq = 0;
    bool queued = false;
    if (pub.qos == 2) {
        int r = q2_note(c, pub.packet_id);
        if (r < 0) {
            protocol_error(c, GW_MQTT_E_MALFORMED, "too many QoS 2 messages awaiting PUBREL");
            return -1;
        }
        if (r > 0) { /* a retransmission before PUBREL: answered, not stored twice */
            if (ack_push(c, pub.packet_id | (uint32_t)GW_MQTT_PUBREC << 16 | ACK_READY, &seq)) {
                gw__mqtt_close(c, "out_of_memory", false);
                return -1;
            }
            ack_drain(c);
            return 0;
        }
    }
    if (pub.qos > 0 &&
        ack_push(c,
                 pub.packet_id | (uint32_t)(pub.qos == 1 ? GW_MQTT_PUBACK : GW_MQTT_PUBREC) << 16,
                 &seq)) {
        gw__mqtt_close(c, "out_of_memory", false);
        return -1;
    }
    ingest(c, pub.topic.p, pub.topic.len, pub.payload, pub.payload_len, pub.qos > 0, seq, &queued);
    if (pub.qos > 0 && !queued) { /* refused: acknowledge in order, nothing to commit */
        c->acks[(c->ack_head + (seq - c->ack_seq)) & (c->ack_cap - 1)] |= ACK_READY;
        ack_drain(c);
    }
    if (c->ack_n >= cfg_of(c)->max_inflight)
        c->paused_inflight = true;
    return 0;
}

/* ---- SUBSCRIBE / UNSUBSCRIBE ---- */

static bool filter_allowed(const gw__mqtt_conn *c, const char *f, size_t len)
{
    /* The first three levels must be literally "", product, device: no wildcard reaches others. */
    return own_topic(c, f, len);
}

static int handle_subscribe(gw__mqtt_conn *c, const uint8_t *body, uint32_t len)
{
    uint16_t pid;
    gw_mqtt_sub_iter it;
    gw_mqtt_str f;
    uint8_t qos, rcs[64];
    size_t n = 0;
    const char *why = NULL;
    if (gw_mqtt_decode_subscribe(body, len, &pid, &it, &why) != 0) {
        protocol_error(c, error_kind(why), why ? why : "bad SUBSCRIBE");
        return -1;
    }
    while (gw_mqtt_sub_next(&it, &f, &qos)) {
        uint8_t rc = 0x80;
        if (!filter_allowed(c, f.p, f.len)) {
            char q[128], t[100];
            snprintf(t, sizeof(t), "%.*s", f.len > 96 ? 96 : f.len, f.p);
            gw_metric_inc(GW_M_MQTT_ACL_SUB);
            CLOG(GW_LOG_WARN, c, "subscribe outside the device's topics refused", "filter=%s",
                 gw_log_quote(q, sizeof(q), t));
        } else {
            gw__mqtt_sub *s = c->subs;
            while (s && !(s->len == f.len && memcmp(s->filter, f.p, f.len) == 0))
                s = s->next;
            if (!s && c->n_subs < cfg_of(c)->max_subscriptions) {
                s = gw_malloc(GW_AREA_SESSION, sizeof(*s) + f.len + 1u);
                if (s) {
                    s->len = f.len;
                    memcpy(s->filter, f.p, f.len);
                    s->filter[f.len] = 0;
                    s->next = c->subs;
                    c->subs = s;
                    c->n_subs++;
                }
            }
            if (s)
                rc = qos > 1 ? 1 : qos;
        }
        if (n < sizeof(rcs))
            rcs[n++] = rc;
    }
    uint8_t pkt[80];
    size_t sz = gw_mqtt_encode_suback(pkt, sizeof(pkt), pid, rcs, n);
    if (sz <= sizeof(pkt))
        out_append(c, pkt, sz);
    return 0;
}

static int handle_unsubscribe(gw__mqtt_conn *c, const uint8_t *body, uint32_t len)
{
    uint16_t pid;
    gw_mqtt_sub_iter it;
    gw_mqtt_str f;
    uint8_t qos;
    const char *why = NULL;
    if (gw_mqtt_decode_unsubscribe(body, len, &pid, &it, &why) != 0) {
        protocol_error(c, error_kind(why), why ? why : "bad UNSUBSCRIBE");
        return -1;
    }
    while (gw_mqtt_sub_next(&it, &f, &qos)) {
        for (gw__mqtt_sub **pp = &c->subs; *pp; pp = &(*pp)->next) {
            if ((*pp)->len == f.len && memcmp((*pp)->filter, f.p, f.len) == 0) {
                gw__mqtt_sub *s = *pp;
                *pp = s->next;
                gw_free(GW_AREA_SESSION, s);
                c->n_subs--;
                break;
            }
        }
    }
    uint8_t pkt[4];
    out_append(c, pkt, gw_mqtt_encode_ack(pkt, GW_MQTT_UNSUBACK, pid));
    return 0;
}

/* ---- packet dispatch ---- */

/* Handles one whole packet. Returns 0 to go on, -1 when the connection is closing. */
static int handle_packet(gw__mqtt_conn *c, const gw_mqtt_fixed *fh, const uint8_t *body)
{
    uint16_t pid;
    if (c->state == GW__MQTT_NEW) {
        if (fh->type != GW_MQTT_CONNECT) {
            protocol_error(c, GW_MQTT_E_BEFORE_CONNECT, gw_mqtt_type_name(fh->type));
            return -1;
        }
        return handle_connect(c, body, fh->remaining);
    }
    if (c->keepalive)
        c->deadline = uv_now(&c->ml->loop->uv) + c->keepalive * 1500ull;
    if ((fh->type == GW_MQTT_PINGREQ || fh->type == GW_MQTT_DISCONNECT) && fh->remaining != 0) {
        protocol_error(c, GW_MQTT_E_MALFORMED, "PINGREQ/DISCONNECT with a body");
        return -1;
    }
    switch (fh->type) {
    case GW_MQTT_PUBLISH:
        return handle_publish(c, fh->flags, body, fh->remaining);
    case GW_MQTT_PINGREQ: {
        uint8_t pkt[2];
        out_append(c, pkt, gw_mqtt_encode_pingresp(pkt));
        return 0;
    }
    case GW_MQTT_SUBSCRIBE:
        return handle_subscribe(c, body, fh->remaining);
    case GW_MQTT_UNSUBSCRIBE:
        return handle_unsubscribe(c, body, fh->remaining);
    case GW_MQTT_DISCONNECT:
        c->has_will = false; /* a clean DISCONNECT discards the will */
        gw__mqtt_close(c, "disconnect", false);
        return -1;
    case GW_MQTT_PUBREL: {
        uint8_t pkt[4];
        if (gw_mqtt_decode_ack(body, fh->remaining, &pid) != 0) {
            protocol_error(c, GW_MQTT_E_MALFORMED, "bad PUBREL");
            return -1;
        }
        q2_release(c, pid);
        out_append(c, pkt, gw_mqtt_encode_ack(pkt, GW_MQTT_PUBCOMP, pid));
        return 0;
    }
    case GW_MQTT_PUBACK:
    case GW_MQTT_PUBREC:
    case GW_MQTT_PUBCOMP:
        /* Acks for downstream publishes; the gateway sends none at QoS > 0 yet. */
        if (gw_mqtt_decode_ack(body, fh->remaining, &pid) != 0) {
            protocol_error(c, GW_MQTT_E_MALFORMED, "bad ack");
            return -1;
        }
        return 0;
    case GW_MQTT_CONNECT:
        protocol_error(c, GW_MQTT_E_CONNECT_TWICE, "second CONNECT");
        return -1;
    default: /* CONNACK, SUBACK, UNSUBACK, PINGRESP: only a server sends these */
        protocol_error(c, GW_MQTT_E_SERVER_ONLY, gw_mqtt_type_name(fh->type));
        return -1;
    }
}

/* Parses every whole packet in buf. Returns the bytes consumed; stops early (leaving the rest for
 * later) when the connection closes or must pause (store full, too many acks in flight). */
static size_t process(gw__mqtt_conn *c, const uint8_t *buf, size_t len)
{
    size_t off = 0;
    c->in_need = 0;
    while (off < len && c->state != GW__MQTT_CLOSING) {
        gw_mqtt_fixed fh;
        const char *why = NULL;
        int rc =
            gw_mqtt_fixed_header_why(buf + off, len - off, cfg_of(c)->max_packet_size, &fh, &why);
        if (rc == GW_EAGAIN)
            break;
        if (rc == GW_ETOOBIG) {
            protocol_error(c, GW_MQTT_E_OVERSIZED, "packet over max_packet_size");
            break;
        }
        if (rc != 0) {
            protocol_error(c,
                           why && strcmp(why, "bad_remaining_length") == 0
                               ? GW_MQTT_E_REMAINING_LENGTH
                               : GW_MQTT_E_MALFORMED,
                           "bad fixed header");
            break;
        }
        size_t total = (size_t)fh.header_len + fh.remaining;
        if (len - off < total) {
            c->in_need = (uint32_t)total;
            break;
        }
        if (fh.type == GW_MQTT_PUBLISH && c->state == GW__MQTT_CONNECTED) {
            if (c->paused_inflight)
                break;
            if (gw_store_full(c->ml->loop->rt->store)) {
                c->paused_bp = true;
                gw_loop_note_backpressure(c->ml->loop);
                break;
            }
        }
        if (handle_packet(c, &fh, buf + off + fh.header_len) != 0) {
            off += total;
            break;
        }
        off += total;
    }
    return off;
}

/* ---- reading ---- */

static int keep_input(gw__mqtt_conn *c, const uint8_t *p, size_t n)
{
    if (n > c->in_cap) {
        size_t cap = n < IN_MIN ? IN_MIN : n;
        uint8_t *b = gw_malloc(GW_AREA_SESSION, cap);
        if (!b)
            return GW_ENOMEM;
        gw_free(GW_AREA_SESSION, c->in);
        c->in = b;
        c->in_cap = (uint32_t)cap;
    }
    memmove(c->in, p, n);
    c->in_len = (uint32_t)n;
    return 0;
}

static void release_input(gw__mqtt_conn *c)
{
    if (c->in_len == 0 && c->in) {
        gw_free(GW_AREA_SESSION, c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
}

static bool must_stop_reading(const gw__mqtt_conn *c)
{
    return c->paused_bp || c->paused_inflight || c->state == GW__MQTT_CLOSING;
}

static void stop_reading(gw__mqtt_conn *c)
{
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
    if (c->paused_bp && !c->pause_listed && c->state != GW__MQTT_CLOSING) {
        c->pause_listed = true;
        c->pnext = c->ml->paused;
        c->ml->paused = c;
        gw_session_retain(&c->base);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    gw__mqtt_conn *c = h->data;
    (void)suggested;
    if (c->in_len) { /* continue a partial packet in the connection's own buffer */
        size_t need = c->in_need > c->in_len ? c->in_need : c->in_len + IN_MIN;
        if (need > c->in_cap) {
            uint8_t *b = gw_realloc(GW_AREA_SESSION, c->in, need);
            if (b) {
                c->in = b;
                c->in_cap = (uint32_t)need;
            }
        }
        *buf = uv_buf_init((char *)c->in + c->in_len, c->in_cap - c->in_len);
        return;
    }
    gw_loop *l = c->ml->loop;
    *buf = uv_buf_init(l->rbuf, (unsigned)l->rbuf_size);
}

static void on_read(uv_stream_t *stream, ssize_t nread, const uv_buf_t *buf)
{
    gw__mqtt_conn *c = stream->data;
    if (nread < 0) {
        if (nread == UV_EOF)
            CLOG(GW_LOG_DEBUG, c, "peer closed", NULL);
        else
            CLOG(GW_LOG_INFO, c, "read error", "error=\"%s\"", uv_strerror((int)nread));
        gw__mqtt_close(c, "connection_lost", true);
        return;
    }
    if (nread == 0)
        return;
    size_t used;
    if (buf->base == c->ml->loop->rbuf) { /* fresh data in the loop's shared buffer */
        used = process(c, (const uint8_t *)buf->base, (size_t)nread);
        if (c->state != GW__MQTT_CLOSING && used < (size_t)nread &&
            keep_input(c, (const uint8_t *)buf->base + used, (size_t)nread - used)) {
            gw__mqtt_close(c, "out_of_memory", false);
            return;
        }
    } else {
        c->in_len += (uint32_t)nread;
        used = process(c, c->in, c->in_len);
        if (c->state != GW__MQTT_CLOSING) {
            memmove(c->in, c->in + used, c->in_len - used);
            c->in_len -= (uint32_t)used;
        }
    }
    if (c->state == GW__MQTT_CLOSING)
        return;
    release_input(c);
    if (must_stop_reading(c))
        stop_reading(c);
}

static void start_reading(gw__mqtt_conn *c)
{
    if (!c->reading && !must_stop_reading(c) && !c->ml->stopping &&
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) == 0)
        c->reading = true;
}

/* Back-pressure lifted (or acks drained): parse what was held back, then read again. */
void gw__mqtt_resume(gw__mqtt_conn *c)
{
    if (c->state == GW__MQTT_CLOSING)
        return;
    c->paused_bp = false;
    if (c->in_len) {
        size_t used = process(c, c->in, c->in_len);
        if (c->state == GW__MQTT_CLOSING)
            return;
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= (uint32_t)used;
        release_input(c);
    }
    if (must_stop_reading(c))
        stop_reading(c);
    else
        start_reading(c);
}

/* ---- accept, close, sweep ---- */

static void destroy(gw_session *s)
{
    gw__mqtt_conn *c = conn_of(s);
    while (c->subs) {
        gw__mqtt_sub *n = c->subs->next;
        gw_free(GW_AREA_SESSION, c->subs);
        c->subs = n;
    }
    gw_free(GW_AREA_SESSION, c->in);
    gw_free(GW_AREA_SESSION, c->out);
    gw_free(GW_AREA_SESSION, c->acks);
    gw_free(GW_AREA_SESSION, c->q2_ids);
    gw_free(GW_AREA_SESSION, c->will_topic);
    gw_free(GW_AREA_SESSION, c->will_payload);
    gw_free(GW_AREA_SESSION, c);
}

static void kick(gw_session *s)
{
    gw__mqtt_conn *c = conn_of(s);
    if (c->state == GW__MQTT_CLOSING)
        return;
    CLOG(GW_LOG_INFO, c, "closing: a new connection took the session over", NULL);
    c->has_will = false;
    gw__mqtt_close(c, "takeover", false);
}

static const gw_session_ops conn_ops = {
    .area = "mqtt",
    .committed = committed,
    .kick = kick,
    .flush = flush,
    .peer = peer_of,
    .destroy = destroy,
};

static void on_closed(uv_handle_t *h)
{
    gw__mqtt_conn *c = h->data;
    gw__mqtt_loop *ml = c->ml;
    if (c->in_list) {
        if (c->prev)
            c->prev->next = c->next;
        else
            ml->conns = c->next;
        if (c->next)
            c->next->prev = c->prev;
        c->in_list = false;
    }
    gw_metric_add(GW_M_CONN_ACTIVE, -1);
    gw_session_release(&c->base);
}

/* Applies the last will: counts it and, when it is the device's own report/event topic, stores it
 * like a PUBLISH (no ack to send: the connection is gone). */
static bool apply_will(gw__mqtt_conn *c)
{
    bool queued;
    if (!c->has_will || !c->base.dev)
        return false;
    c->has_will = false;
    gw_metric_inc(GW_M_MQTT_WILLS);
    gw_metric_inc(GW_M_MSG_RECEIVED);
    ingest(c, c->will_topic, c->will_topic_len, c->will_payload, c->will_payload_len, false, 0,
           &queued);
    return true;
}

void gw__mqtt_close(gw__mqtt_conn *c, const char *reason, bool will)
{
    if (c->state == GW__MQTT_CLOSING)
        return;
    bool applied = will ? apply_will(c) : false;
    c->state = GW__MQTT_CLOSING;
    if (c->reading) {
        uv_read_stop((uv_stream_t *)&c->tcp);
        c->reading = false;
    }
    if (c->base.dev && strcmp(reason, "refused") != 0) {
        gw_session_offline(&c->base, reason, applied);
        CLOG(GW_LOG_DEBUG, c, "disconnected", "reason=%s", reason);
    }
    if (c->out_len)
        flush(&c->base);
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

void gw__mqtt_on_connection(uv_stream_t *server, int status)
{
    gw__mqtt_loop *ml = server->data;
    const gw_config *cfg = ml->loop->rt->cfg;
    if (status < 0 || ml->stopping)
        return;
    gw__mqtt_conn *c = gw_calloc(GW_AREA_SESSION, 1, sizeof(*c));
    if (!c)
        return;
    gw_session_init(&c->base, &conn_ops, ml->loop);
    c->ml = ml;
    uv_tcp_init(&ml->loop->uv, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        c->state = GW__MQTT_CLOSING;
        gw_metric_inc(GW_M_CONN_ACTIVE);
        uv_close((uv_handle_t *)&c->tcp, on_closed);
        return;
    }
    gw_metric_inc(GW_M_CONN_ACTIVE);
    if (gw_metric_get(GW_M_CONN_ACTIVE) > (int64_t)cfg->max_connections) {
        gw_metric_inc(GW_M_CONN_REFUSED);
        CLOG(GW_LOG_WARN, c, "max_connections reached; connection refused", "max=%u",
             cfg->max_connections);
        c->state = GW__MQTT_CLOSING;
        uv_close((uv_handle_t *)&c->tcp, on_closed);
        return;
    }
    gw_metric_inc(GW_M_CONN_ACCEPTED);
    uv_tcp_nodelay(&c->tcp, 1);
    c->next = ml->conns;
    if (ml->conns)
        ml->conns->prev = c;
    ml->conns = c;
    c->in_list = true;
    c->deadline = uv_now(&ml->loop->uv) + ml->ad->cfg.connect_timeout_ms;
    start_reading(c);
}

void gw__mqtt_sweep(gw__mqtt_loop *ml)
{
    uint64_t now = uv_now(&ml->loop->uv);
    gw__mqtt_conn *c = ml->conns, *next;
    for (; c; c = next) {
        next = c->next;
        if (!c->deadline || now < c->deadline || c->state == GW__MQTT_CLOSING)
            continue;
        if (c->state == GW__MQTT_NEW) {
            gw_metric_inc(GW_M_MQTT_CONNECT_TIMEOUT);
            CLOG(GW_LOG_INFO, c, "no CONNECT in time; closing", "connect_timeout_ms=%u",
                 ml->ad->cfg.connect_timeout_ms);
            gw__mqtt_close(c, "connect_timeout", false);
        } else {
            gw_metric_inc(GW_M_MQTT_KEEPALIVE);
            CLOG(GW_LOG_INFO, c, "keep-alive expired; closing", "keepalive=%u", c->keepalive);
            gw__mqtt_close(c, "keepalive_timeout", true);
        }
    }
}

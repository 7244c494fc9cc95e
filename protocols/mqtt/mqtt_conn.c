/* mqtt_conn.c: the MQTT side of one device connection (the stream module reads, pauses, acks and
 * closes it): packet framing, CONNECT authentication, ACL, PUBLISH to the dispatcher with acks in
 * order after commit, SUBSCRIBE, keep-alive, last will, downstream commands and their replies. */
#include "mqtt_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../gateway/util/alloc.h"
#include "../../gateway/util/auth.h"
#include "../../gateway/core/codec.h"
#include "../../gateway/command/command.h"
#include "../../gateway/core/dispatch.h"
#include "../../gateway/util/log.h"
#include "../../gateway/util/metrics.h"

#define ACK_TYPE(e)             (((e) >> 16) & 0xff)
#define GW_MQTT_AUTH_BYTE       0xF0 /* MQTT 5 AUTH, flags 0 */
#define LOG(level, c, msg, ...) GW_STREAM_LOG(level, &(c)->s, msg, __VA_ARGS__)

static const gw__mqtt_cfg *cfg_of(const gw__mqtt_conn *c)
{
    return &((const gw__mqtt_adapter *)c->s.sl->user)->cfg;
}

static gw__mqtt_sessions *sessions_of(const gw__mqtt_conn *c)
{
    return &((gw__mqtt_adapter *)c->s.sl->user)->sessions;
}

/* ---- errors ---- */

/* MQTT 5, once CONNACKed: DISCONNECT with rc and, when it fits the client's maximum packet size,
 * a reason string. */
static void send_disconnect(gw__mqtt_conn *c, uint8_t rc, const char *why)
{
    gw_mqtt_pbuf pb = {.n = 0};
    uint8_t pkt[GW_MQTT_PBUF + 16];
    if (c->version != 5 || c->s.state != GW_STREAM_OPEN)
        return;
    if (why)
        gw_mqtt_pb_str(&pb, GW_MQTT_P_REASON_STRING, why, strlen(why));
    size_t n = gw_mqtt_encode_disconnect5(pkt, sizeof(pkt), rc, pb.b, pb.n);
    if (c->out_max_packet && n > c->out_max_packet)
        n = gw_mqtt_encode_disconnect5(pkt, sizeof(pkt), rc, NULL, 0);
    gw_stream_out(&c->s, pkt, n);
}

static void protocol_error_rc(gw__mqtt_conn *c, gw_mqtt_error e, const char *what, uint8_t rc)
{
    static const char *const names[] = {
#define GW_E_NAME(en, label) label,
        GW_MQTT_ERRORS(GW_E_NAME)
#undef GW_E_NAME
    };
    gw_metric_mqtt_error(e);
    LOG(GW_LOG_WARN, c, "protocol error; closing", "error=%s detail=\"%s\" reason_code=0x%02x",
        names[e], what, rc);
    send_disconnect(c, rc, what);
    gw_stream_close(&c->s, "protocol_error", true);
}

static void protocol_error(gw__mqtt_conn *c, gw_mqtt_error e, const char *what)
{
    protocol_error_rc(c, e, what,
                      e == GW_MQTT_E_OVERSIZED ? GW_MQTT_RC_PACKET_TOO_LARGE
                      : e == GW_MQTT_E_PROTOCOL || e == GW_MQTT_E_CONNECT_TWICE ||
                              e == GW_MQTT_E_SERVER_ONLY
                          ? GW_MQTT_RC_PROTOCOL_ERROR
                      : e == GW_MQTT_E_TOPIC_ALIAS ? GW_MQTT_RC_TOPIC_ALIAS_INVALID
                                                   : GW_MQTT_RC_MALFORMED);
}

static gw_mqtt_error error_kind(const char *why)
{
    if (why && strcmp(why, "invalid_utf8") == 0)
        return GW_MQTT_E_UTF8;
    if (why && strcmp(why, "wildcard_topic") == 0)
        return GW_MQTT_E_WILDCARD;
    if (why && strcmp(why, "bad_property") == 0)
        return GW_MQTT_E_BAD_PROPERTY;
    return GW_MQTT_E_MALFORMED;
}

/* A decoder's MQTT 5 verdict: DISCONNECT with its reason code. */
static void decode_error(gw__mqtt_conn *c, const char *why, uint8_t rc, const char *what)
{
    gw_mqtt_error e = error_kind(why);
    protocol_error_rc(c, e, why ? why : what, rc ? rc : GW_MQTT_RC_MALFORMED);
}

/* ---- CONNECT ---- */

/* The MQTT 5 CONNACK reason code of a 3.1.1 return code. */
static uint8_t v5_connack_rc(uint8_t rc)
{
    static const uint8_t map[6] = {0,
                                   GW_MQTT_RC_BAD_VERSION,
                                   GW_MQTT_RC_BAD_CLIENT_ID,
                                   GW_MQTT_RC_SERVER_BUSY,
                                   GW_MQTT_RC_BAD_CREDENTIALS,
                                   GW_MQTT_RC_NOT_AUTHORIZED};
    return rc < 6 ? map[rc] : rc;
}

static void refuse(gw__mqtt_conn *c, uint8_t rc, gw_metric m, const char *why, const char *id,
                   size_t idlen)
{
    uint8_t pkt[GW_MQTT_PBUF + 16];
    char q[96], idbuf[70];
    snprintf(idbuf, sizeof(idbuf), "%.*s", (int)(idlen > 64 ? 64 : idlen), id ? id : "");
    if ((int)m >= 0)
        gw_metric_inc(m);
    if (c->version == 5)
        rc = v5_connack_rc(rc);
    LOG(GW_LOG_WARN, c, "connection refused", "connack=%u reason=%s client_id=%s", rc, why,
        gw_log_quote(q, sizeof(q), idbuf));
    if (c->version == 5) {
        gw_mqtt_pbuf pb = {.n = 0};
        gw_mqtt_pb_str(&pb, GW_MQTT_P_REASON_STRING, why, strlen(why));
        gw_stream_out(&c->s, pkt, gw_mqtt_encode_connack5(pkt, sizeof(pkt), false, rc, pb.b, pb.n));
    } else {
        gw_stream_out(&c->s, pkt, gw_mqtt_encode_connack(pkt, false, rc));
    }
    gw_stream_flush(&c->s);
    gw_stream_close(&c->s, "refused", false);
}

static bool own_topic(const gw__mqtt_conn *c, const char *t, size_t len);
static const char *format_mismatch(const gw__mqtt_conn *c, const gw_mqtt_props *pr,
                                   const uint8_t *payload, size_t plen, char *buf, size_t cap);
static bool any_covers_commands(gw__mqtt_conn *c);

static int handle_connect(gw__mqtt_conn *c, const uint8_t *body, uint32_t len)
{
    gw_mqtt_connect cn;
    uint8_t rc = 0xff;
    const gw_config *cfg = c->s.sl->loop->cfg;

    const char *why = NULL;
    int drc = gw_mqtt_decode_connect_why(body, len, &cn, &rc, &why);
    c->version = cn.protocol_level;
    if (drc != 0 && c->version == 5 && rc != 2) { /* a v5 CONNECT: CONNACK 0x81/0x82, close */
        uint8_t pkt[8];
        gw_metric_mqtt_error(error_kind(why));
        LOG(GW_LOG_WARN, c, "protocol error; closing",
            "error=%s detail=\"bad CONNECT\" "
            "reason_code=0x%02x",
            why ? why : "malformed_packet", cn.v5_rc);
        gw_stream_out(&c->s, pkt,
                      gw_mqtt_encode_connack5(pkt, sizeof(pkt), false, cn.v5_rc, NULL, 0));
        gw_stream_close(&c->s, "protocol_error", false);
        return -1;
    }
    if (drc != 0) {
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
    if (c->version == 5) {
        const gw_mqtt_props *pr = &cn.props;
        c->problem_info =
            !GW_MQTT_HAS(pr, GW_MQTT_P_REQUEST_PROBLEM_INFO) || pr->request_problem_info;
        c->out_max = GW_MQTT_HAS(pr, GW_MQTT_P_RECEIVE_MAX) ? pr->receive_max : 65535;
        c->out_max_packet = pr->max_packet_size;
        if (GW_MQTT_HAS(pr, GW_MQTT_P_AUTH_METHOD)) { /* no enhanced authentication */
            refuse(c, GW_MQTT_RC_BAD_AUTH_METHOD, GW_M_MQTT_AUTH_BAD_CRED, "bad_auth_method",
                   cn.client_id.p, cn.client_id.len);
            return -1;
        }
    }
    /* TLS: a client certificate (or a PSK) named a device: the client id must be that one */
    int by = GW_TLS_BY_NONE;
    const char *tid = gw_stream_tls_identity(&c->s, &by);
    if (tid && (cn.client_id.len != strlen(tid) || memcmp(cn.client_id.p, tid, cn.client_id.len))) {
        gw_stream_auth_failed(&c->s);
        refuse(c, 5, GW_M_MQTT_AUTH_CERT, "identity_mismatch", cn.client_id.p, cn.client_id.len);
        return -1;
    }
    const gw_device *dev = gw_config_device_n(cfg, cn.client_id.p, cn.client_id.len);
    if (!dev) {
        gw_stream_auth_failed(&c->s);
        refuse(c, 5, GW_M_MQTT_AUTH_UNKNOWN, "unknown_device", cn.client_id.p, cn.client_id.len);
        return -1;
    }
    const char *pid = dev->product->id;
    int mode = dev->product->auth_mode;
    if (mode == GW_AUTH_CERT && by != GW_TLS_BY_CERT) {
        gw_stream_auth_failed(&c->s);
        refuse(c, 5, GW_M_MQTT_AUTH_CERT, "certificate_required", cn.client_id.p, cn.client_id.len);
        return -1;
    }
    /* the password is optional when a certificate the product accepts, or the PSK (the secret
     * itself), identified the device */
    bool need_secret =
        mode == GW_AUTH_SECRET ? by != GW_TLS_BY_PSK : mode == GW_AUTH_CERT_OR_SECRET && !tid;
    if (!dev->product->protocol || strcmp(dev->product->protocol, "mqtt") != 0)
        need_secret = true; /* a TLS identity logs in only devices of MQTT products */
    bool user_ok = cn.has_username ? cn.username.len == strlen(pid) &&
                                         memcmp(cn.username.p, pid, cn.username.len) == 0
                                   : !need_secret;
    if (!user_ok || (need_secret && (!cn.has_password || !gw_secret_check(dev->secret, cn.password,
                                                                          cn.password_len)))) {
        gw_stream_auth_failed(&c->s);
        refuse(c, 4, GW_M_MQTT_AUTH_BAD_CRED, "bad_credentials", cn.client_id.p, cn.client_id.len);
        return -1;
    }
    gw_stream_auth_ok(&c->s);
    c->s.base.dev = dev;
    c->prefix_len = (uint8_t)(1 + strlen(pid) + 1 + strlen(dev->id) + 1);
    if (cn.has_will) {
        if (!own_topic(c, cn.will_topic.p, cn.will_topic.len)) {
            c->s.base.dev = NULL;
            gw_metric_inc(GW_M_MQTT_ACL_PUB);
            refuse(c, 5, (gw_metric)-1, "will_topic_not_allowed", cn.client_id.p, cn.client_id.len);
            return -1;
        }
        char fb[160];
        if (c->version == 5 && format_mismatch(c, &cn.will_props, cn.will_payload,
                                               cn.will_payload_len, fb, sizeof(fb))) {
            c->s.base.dev = NULL; /* MQTT 5: the will payload against its format (CONNACK 0x99) */
            refuse(c, GW_MQTT_RC_PAYLOAD_FORMAT_INVALID, (gw_metric)-1, "will_payload_format",
                   cn.client_id.p, cn.client_id.len);
            return -1;
        }
        gw__mqtt_will *w = gw_malloc(GW_AREA_SESSION, sizeof(*w) + cn.will_topic.len + 1u +
                                                          cn.will_payload_len + 1u);
        if (!w) {
            gw_stream_close(&c->s, "out_of_memory", false);
            return -1;
        }
        memcpy(w->topic, cn.will_topic.p, cn.will_topic.len);
        w->topic[cn.will_topic.len] = 0;
        memcpy(w->topic + cn.will_topic.len + 1, cn.will_payload, cn.will_payload_len);
        w->topic_len = cn.will_topic.len;
        w->payload_len = cn.will_payload_len;
        w->qos = cn.will_qos;
        c->will = w;
        c->has_will = true;
    }
    /* clean_session=0: the device's stored session (subscriptions, QoS 2 ids), wherever its
     * previous connection lived; clean_session=1 discards it (mqtt_session.c). */
    bool present = false;
    uint32_t expiry = 0; /* MQTT 5: the session expiry granted */
    int arc;
    if (c->version == 5) {
        uint32_t want = cn.props.session_expiry, max = cfg_of(c)->session_expiry_s;
        expiry = want > max ? max : want;
        c->expiry_zero = want == 0;
        arc = gw__mqtt_session_attach5(sessions_of(c), c, dev->index, cn.clean_session, expiry,
                                       &present);
    } else {
        arc = gw__mqtt_session_attach(sessions_of(c), c, dev->index, cn.clean_session, &present);
    }
    if (arc != 0) {
        gw_stream_close(&c->s, "out_of_memory", false);
        return -1;
    }
    uint16_t keepalive = cn.keepalive, kmax = (uint16_t)cfg_of(c)->keepalive_max_s;
    bool server_ka = c->version == 5 && kmax && (keepalive == 0 || keepalive > kmax);
    if (server_ka)
        keepalive = kmax;
    c->keepalive = keepalive;
    c->s.deadline = keepalive ? uv_now(&c->s.sl->loop->uv) + keepalive * 1500ull : 0;
    c->s.state = GW_STREAM_OPEN;
    if (c->version == 5) {
        const gw__mqtt_cfg *mc = cfg_of(c);
        gw_mqtt_pbuf pb = {.n = 0};
        uint8_t pkt[GW_MQTT_PBUF + 16];
        if (expiry != cn.props.session_expiry)
            gw_mqtt_pb_u32(&pb, GW_MQTT_P_SESSION_EXPIRY, expiry);
        if (mc->max_inflight < 65535)
            gw_mqtt_pb_u16(&pb, GW_MQTT_P_RECEIVE_MAX, (uint16_t)mc->max_inflight);
        gw_mqtt_pb_u32(&pb, GW_MQTT_P_MAX_PACKET_SIZE, mc->max_packet_size);
        if (mc->topic_alias_max)
            gw_mqtt_pb_u16(&pb, GW_MQTT_P_TOPIC_ALIAS_MAX, (uint16_t)mc->topic_alias_max);
        if (server_ka)
            gw_mqtt_pb_u16(&pb, GW_MQTT_P_SERVER_KEEP_ALIVE, keepalive);
        gw_mqtt_pb_u8(&pb, GW_MQTT_P_SUB_ID_AVAILABLE, 0);
        gw_mqtt_pb_u8(&pb, GW_MQTT_P_SHARED_SUB_AVAILABLE, 0);
        c->alias_max = (uint16_t)mc->topic_alias_max;
        gw_stream_out(&c->s, pkt,
                      gw_mqtt_encode_connack5(pkt, sizeof(pkt), present, 0, pb.b, pb.n));
        gw_metric_inc(GW_M_MQTT_V5_CONNECTS);
    } else {
        uint8_t pkt[4];
        gw_stream_out(&c->s, pkt, gw_mqtt_encode_connack(pkt, present, 0)); /* MQTT-3.2.2-2/-1 */
        gw_metric_inc(GW_M_MQTT_V4_CONNECTS);
    }
    if (gw_session_online(&c->s.base, dev, "mqtt") > 0) {
        gw_metric_inc(GW_M_MQTT_TAKEOVER);
        LOG(GW_LOG_INFO, c, "session taken over",
            "keepalive=%u clean_session=%d present=%d loop=%u", cn.keepalive, cn.clean_session,
            present, c->s.sl->loop->index);
    } else {
        LOG(GW_LOG_DEBUG, c, "connected", "keepalive=%u clean_session=%d present=%d loop=%u",
            cn.keepalive, cn.clean_session, present, c->s.sl->loop->index);
    }
    if (present && any_covers_commands(c)) /* resumed subscriptions take commands at once */
        gw_commands_ready(&c->s.base);
    return 0;
}

/* ---- topics and ACL ---- */

/* "/{product}/{device}/..." of this connection's device. */
static bool own_topic(const gw__mqtt_conn *c, const char *t, size_t len)
{
    const char *pid = c->s.base.dev->product->id, *did = c->s.base.dev->id;
    size_t pl = strlen(pid), dl = strlen(did);
    return len > pl + dl + 3 && t[0] == '/' && memcmp(t + 1, pid, pl) == 0 && t[1 + pl] == '/' &&
           memcmp(t + 2 + pl, did, dl) == 0 && t[2 + pl + dl] == '/';
}

static bool has_sub(const gw__mqtt_conn *c, const char *topic, size_t len)
{
    bool yes = false;
    if (!c->st)
        return false;
    pthread_mutex_lock(c->mu);
    for (const gw__mqtt_sub *s = c->st->subs; s && !yes; s = s->next)
        yes = gw_mqtt_topic_match(s->filter, s->len, topic, len);
    pthread_mutex_unlock(c->mu);
    return yes;
}

/* Tells a subscribed device why its message m was refused, on "<topic>/reply" (QoS 0): in the
 * codec's own negative ack where it has one (protobuf: an Ack), else as JSON
 * {"messageId","success":false,"code","message"}. */
static void send_reject_reply(gw__mqtt_conn *c, const char *topic, size_t tlen,
                              const gw_thing_msg *m, const gw_reject *rej)
{
    const gw_product *p = c->s.base.dev->product;
    char rt[320];
    uint8_t ack[512];
    size_t blen = 0;
    char *json = NULL;
    if (tlen + 6 >= sizeof(rt))
        return;
    memcpy(rt, topic, tlen);
    memcpy(rt + tlen, "/reply", 6);
    if (!has_sub(c, rt, tlen + 6))
        return;
    const uint8_t *body = ack;
    if (!p->codec_ops->encode_ack ||
        p->codec_ops->encode_ack(p, m, rej, c->s.base.dev->secret, ack, sizeof(ack), &blen) != 0 ||
        blen == 0) {
        json_t *o = json_pack("{s:s,s:b,s:s,s:s}", "messageId", m->msg_id, "success", 0, "code",
                              gw_reason_name(rej->reason), "message", rej->detail);
        json = o ? json_dumps(o, JSON_COMPACT) : NULL;
        json_decref(o);
        if (!json)
            return;
        body = (const uint8_t *)json;
        blen = strlen(json);
    }
    /* QoS 0; under MQTT 5 with an empty property block and within the device's maximum packet
     * size (a reply that would exceed it is not sent: the PUBACK's reason code says it all) */
    bool v5 = c->version == 5;
    size_t need =
        v5 ? gw_mqtt_publish5_size(tlen + 6, blen, 0, 0) : gw_mqtt_publish_size(tlen + 6, blen, 0);
    if (need && !(v5 && c->out_max_packet && need > c->out_max_packet) &&
        gw_stream_out_reserve(&c->s, need) == 0) {
        uint8_t *o = c->s.out + c->s.out_len;
        size_t room = c->s.out_cap - c->s.out_len;
        c->s.out_len +=
            (uint32_t)(v5 ? gw_mqtt_encode_publish5(o, room, rt, tlen + 6, body, blen, 0, 0, false,
                                                    NULL, 0)
                          : gw_mqtt_encode_publish(o, room, rt, tlen + 6, body, blen, 0, 0, false));
        gw_session_mark_dirty(&c->s.base);
    }
    free(json);
}

/* Decodes and dispatches a PUBLISH on one of the device's own topics. Returns 0 when queued for
 * commit (*queued = true), or the message was refused (answered as the contract says). */
static void ingest(gw__mqtt_conn *c, const char *topic, size_t tlen, const uint8_t *payload,
                   size_t plen, bool want_commit, uint32_t seq, bool *queued, gw_reject *rej_out,
                   const gw_mqtt_str *corr)
{
    const char *rest = topic + c->prefix_len;
    size_t rlen = tlen - c->prefix_len;
    gw_decode_hint hint = {GW_MSG_NONE, NULL, true};
    char event_id[64];
    gw_reject rej_own = {GW_R_NONE, ""}, *rej_p = rej_out ? rej_out : &rej_own;
#define rej (*rej_p)
    gw_thing_msg m;
    const gw_product *p = c->s.base.dev->product;

    *queued = false;
    memset(&m, 0, sizeof(m));
    if (rlen == 17 && memcmp(rest, "properties/report", 17) == 0) {
        hint.kind = GW_MSG_PROPERTY_REPORT;
    } else if (rlen == 21 && memcmp(rest, "function/invoke/reply", 21) == 0) {
        hint.kind = GW_MSG_FUNCTION_REPLY;
    } else if (rlen == 22 && memcmp(rest, "properties/write/reply", 22) == 0) {
        hint.kind = GW_MSG_WRITE_REPLY;
    } else if (rlen > 6 && memcmp(rest, "event/", 6) == 0 && rlen - 6 < sizeof(event_id) &&
               !memchr(rest + 6, '/', rlen - 6)) {
        memcpy(event_id, rest + 6, rlen - 6);
        event_id[rlen - 6] = 0;
        hint.kind = GW_MSG_EVENT;
        hint.name = event_id;
    } else {
        gw_reject_set(&rej, GW_R_UNKNOWN_TOPIC, "topic %.*s is not a device upload topic",
                      (int)(tlen > 200 ? 200 : tlen), topic);
        gw_dispatch_rejected(&c->s.base, &rej, NULL);
        return;
    }
    if (p->codec_ops->decode(p, &hint, payload, plen, &m, &rej) != 0) {
        gw_dispatch_rejected(&c->s.base, &rej, m.msg_id);
        send_reject_reply(c, topic, tlen, &m, &rej);
        gw_thing_msg_clear(&m);
        return;
    }
    /* MQTT 5 request/response: a reply without its own message id names the command by the
     * correlation data the command was sent with. */
    if (corr && corr->p && !m.msg_id[0] && corr->len < sizeof(m.msg_id) &&
        (hint.kind == GW_MSG_FUNCTION_REPLY || hint.kind == GW_MSG_WRITE_REPLY)) {
        memcpy(m.msg_id, corr->p, corr->len);
        m.msg_id[corr->len] = 0;
    }
    int rc = gw_dispatch_message(&c->s.base, &m, seq, want_commit, &rej);
    if (rc == GW_EINVAL)
        send_reject_reply(c, topic, tlen, &m, &rej);
    else if (rc != 0 && rej.reason == GW_R_NONE)
        gw_reject_set(&rej, GW_R_UNSUPPORTED, "%s", gw_strerror(rc));
    *queued = rc == 0;
    gw_thing_msg_clear(&m);
#undef rej
}

/* QoS 2 packet ids received and not yet released (PUBREL), in the session state (kept across
 * connections for clean_session=0, so a PUBLISH resent after a reconnect is not stored twice):
 * 1 if pid is already there (a retransmission), 0 if it was added, -1 if the set is full or out
 * of memory. */
static int q2_note(gw__mqtt_conn *c, uint16_t pid)
{
    gw__mqtt_state *st = c->st;
    int rc = 0;
    if (!st)
        return -1;
    pthread_mutex_lock(c->mu);
    for (uint16_t i = 0; i < st->q2_n; i++)
        if (st->q2_ids[i] == pid) {
            rc = 1;
            goto done;
        }
    if (st->q2_n >= cfg_of(c)->max_inflight) {
        rc = -1;
        goto done;
    }
    if (st->q2_n == st->q2_cap) {
        uint32_t cap = st->q2_cap ? st->q2_cap * 2u : 8u;
        if (cap > 65535)
            cap = 65535;
        uint16_t *n = gw_realloc(GW_AREA_SESSION, st->q2_ids, cap * sizeof(uint16_t));
        if (!n) {
            rc = -1;
            goto done;
        }
        st->q2_ids = n;
        st->q2_cap = (uint16_t)cap;
    }
    st->q2_ids[st->q2_n++] = pid;
done:
    pthread_mutex_unlock(c->mu);
    return rc;
}

static void q2_release(gw__mqtt_conn *c, uint16_t pid)
{
    gw__mqtt_state *st = c->st;
    if (!st)
        return;
    pthread_mutex_lock(c->mu);
    for (uint16_t i = 0; i < st->q2_n; i++) {
        if (st->q2_ids[i] == pid) {
            st->q2_ids[i] = st->q2_ids[--st->q2_n];
            break;
        }
    }
    if (st->q2_n == 0) {
        gw_free(GW_AREA_SESSION, st->q2_ids);
        st->q2_ids = NULL;
        st->q2_cap = 0;
    }
    pthread_mutex_unlock(c->mu);
}

/* The connection's MQTT 5 extras (allocated at the first need; NULL: out of memory). */
static gw__mqtt_v5x *v5x(gw__mqtt_conn *c)
{
    if (c->x && c->x->n_aliases >= c->alias_max)
        return c->x;
    uint16_t had = c->x ? c->x->n_aliases : 0;
    gw__mqtt_v5x *x = gw_realloc(GW_AREA_SESSION, c->x,
                                 sizeof(*x) + (size_t)c->alias_max * sizeof(gw__mqtt_alias));
    if (!x)
        return NULL;
    if (!c->x)
        x->rs_head = NULL;
    memset(&x->aliases[had], 0, (size_t)(c->alias_max - had) * sizeof(gw__mqtt_alias));
    x->n_aliases = c->alias_max;
    c->x = x;
    return x;
}

/* MQTT 5: queues the reason string of the ack entry being pushed next (taken by send_ack). */
static uint32_t push_reason(gw__mqtt_conn *c, const char *why)
{
    size_t n = strlen(why);
    if (!c->problem_info || n == 0)
        return 0;
    if (n > 240)
        n = 240;
    gw__mqtt_rs *r = gw_malloc(GW_AREA_SESSION, sizeof(*r) + n);
    gw__mqtt_v5x *x = r ? v5x(c) : NULL;
    if (!x) {
        gw_free(GW_AREA_SESSION, r);
        return 0;
    }
    r->next = NULL;
    r->len = (uint16_t)n;
    memcpy(r->s, why, n);
    gw__mqtt_rs **tail = &x->rs_head; /* a short list: refused acks not sent yet */
    while (*tail)
        tail = &(*tail)->next;
    *tail = r;
    return GW__MQTT_ACK_RS;
}

/* MQTT 5: a PUBLISH answered with an error reason code (QoS 1 PUBACK, QoS 2 PUBREC) in its turn;
 * QoS 0 has no answer. 0 or -1 (closing). */
static int refuse_publish(gw__mqtt_conn *c, const gw_mqtt_publish *pub, uint8_t rc, const char *why)
{
    uint32_t seq;
    gw_metric_inc(GW_M_MQTT_V5_PUB_REFUSED);
    if (pub->qos == 0)
        return 0;
    uint32_t e = pub->packet_id |
                 (uint32_t)(pub->qos == 1 ? GW_MQTT_PUBACK : GW_MQTT_PUBREC) << 16 |
                 (uint32_t)rc << 20;
    e |= push_reason(c, why);
    if (gw_stream_ack_push(&c->s, e, true, &seq)) {
        gw_stream_close(&c->s, "out_of_memory", false);
        return -1;
    }
    return 0;
}

/* MQTT 5 topic alias (MQTT-3.3.2.3.4): sets or resolves pub->topic. 0, or -1 (closing). */
static int resolve_alias(gw__mqtt_conn *c, gw_mqtt_publish *pub, const gw_mqtt_props *pr)
{
    if (!GW_MQTT_HAS(pr, GW_MQTT_P_TOPIC_ALIAS)) {
        if (pub->topic.len == 0) {
            protocol_error(c, GW_MQTT_E_PROTOCOL, "empty topic without a topic alias");
            return -1;
        }
        return 0;
    }
    uint16_t a = pr->topic_alias;
    if (a == 0 || a > c->alias_max) {
        protocol_error(c, GW_MQTT_E_TOPIC_ALIAS, "topic alias 0 or above the maximum");
        return -1;
    }
    gw__mqtt_v5x *x = v5x(c);
    if (!x) {
        gw_stream_close(&c->s, "out_of_memory", false);
        return -1;
    }
    gw__mqtt_alias *al = &x->aliases[a - 1];
    if (pub->topic.len == 0) {
        if (!al->topic && !al->refused) {
            protocol_error(c, GW_MQTT_E_PROTOCOL, "topic alias not set");
            return -1;
        }
        pub->topic.p = al->refused ? "" : al->topic; /* refused: fails the ACL check (0x87) */
        pub->topic.len = al->refused ? 0 : al->len;
        return 0;
    }
    if (pub->topic.len > GW__MQTT_ALIAS_TOPIC_MAX || !own_topic(c, pub->topic.p, pub->topic.len)) {
        gw_free(GW_AREA_SESSION, al->topic); /* not kept: bounded memory per alias */
        al->topic = NULL;
        al->len = 0;
        al->refused = true;
        return 0;
    }
    al->refused = false;
    char *t = gw_realloc(GW_AREA_SESSION, al->topic, pub->topic.len + 1u);
    if (!t) {
        gw_stream_close(&c->s, "out_of_memory", false);
        return -1;
    }
    memcpy(t, pub->topic.p, pub->topic.len);
    t[pub->topic.len] = 0;
    al->topic = t;
    al->len = pub->topic.len;
    return 0;
}

/* MQTT 5 payload format indicator and content type against the product's codec: NULL when they
 * agree (or are absent), else why not. */
static const char *format_mismatch(const gw__mqtt_conn *c, const gw_mqtt_props *pr,
                                   const uint8_t *payload, size_t plen, char *buf, size_t cap)
{
    const gw_product *p = c->s.base.dev->product;
    bool text = strcmp(p->codec, "json") == 0;
    if (pr->payload_format == 1 && !text) {
        snprintf(buf, cap, "payload format indicator 1 (UTF-8) but codec %s is binary", p->codec);
        return buf;
    }
    if (pr->payload_format == 1 && !gw_mqtt_utf8_valid((const char *)payload, plen)) {
        snprintf(buf, cap, "payload format indicator 1 but the payload is not UTF-8");
        return buf;
    }
    if (GW_MQTT_HAS(pr, GW_MQTT_P_CONTENT_TYPE)) {
        static const char *const json[] = {"application/json", "text/json", NULL};
        static const char *const pb[] = {"application/x-protobuf", "application/protobuf",
                                         "application/vnd.google.protobuf", NULL};
        static const char *const bin[] = {"application/octet-stream", NULL};
        const char *const *ok = text ? json : strcmp(p->codec, "protobuf") == 0 ? pb : bin;
        size_t n = pr->content_type.len;
        const char *semi = memchr(pr->content_type.p, ';', n);
        if (semi)
            n = (size_t)(semi - pr->content_type.p);
        while (n && pr->content_type.p[n - 1] == ' ')
            n--;
        for (; *ok; ok++)
            if (strlen(*ok) == n && strncasecmp(*ok, pr->content_type.p, n) == 0)
                return NULL;
        snprintf(buf, cap, "content type %.*s does not match codec %s",
                 (int)(pr->content_type.len > 64 ? 64 : pr->content_type.len), pr->content_type.p,
                 p->codec);
        return buf;
    }
    return NULL;
}

static int handle_publish(gw__mqtt_conn *c, uint8_t flags, const uint8_t *body, uint32_t len)
{
    gw_mqtt_publish pub;
    gw_mqtt_props pr;
    const char *why = NULL;
    uint8_t drc = 0;
    if (c->version == 5) {
        if (gw_mqtt_decode_publish5(body, len, flags, &pub, &pr, &why, &drc) != 0) {
            decode_error(c, why, drc, "bad PUBLISH");
            return -1;
        }
        if (resolve_alias(c, &pub, &pr) != 0)
            return -1;
    } else if (gw_mqtt_decode_publish(body, len, flags, &pub, &why) != 0) {
        protocol_error(c, error_kind(why), why ? why : "bad PUBLISH");
        return -1;
    }
    gw_metric_inc(GW_M_MSG_RECEIVED);
    if (!own_topic(c, pub.topic.p, pub.topic.len) && c->version == 5) {
        char q[128], t[100], r[160];
        snprintf(t, sizeof(t), "%.*s", pub.topic.len > 96 ? 96 : pub.topic.len, pub.topic.p);
        gw_metric_inc(GW_M_MQTT_ACL_PUB);
        LOG(GW_LOG_WARN, c, "publish outside the device's topics refused", "topic=%s",
            gw_log_quote(q, sizeof(q), t));
        snprintf(r, sizeof(r), "topic %s is not one of the device's topics", t);
        return refuse_publish(c, &pub, GW_MQTT_RC_NOT_AUTHORIZED, r);
    }
    if (c->version == 5) {
        char fb[160];
        const char *bad = format_mismatch(c, &pr, pub.payload, pub.payload_len, fb, sizeof(fb));
        if (bad) {
            gw_reject rj;
            gw_reject_set(&rj, GW_R_MALFORMED_PAYLOAD, "%s", bad);
            gw_dispatch_rejected(&c->s.base, &rj, NULL);
            return refuse_publish(c, &pub, GW_MQTT_RC_PAYLOAD_FORMAT_INVALID, bad);
        }
    }
    if (!own_topic(c, pub.topic.p, pub.topic.len)) {
        char q[128], t[100];
        snprintf(t, sizeof(t), "%.*s", pub.topic.len > 96 ? 96 : pub.topic.len, pub.topic.p);
        gw_metric_inc(GW_M_MQTT_ACL_PUB);
        LOG(GW_LOG_WARN, c, "publish outside the device's topics; closing", "topic=%s",
            gw_log_quote(q, sizeof(q), t));
        gw_stream_close(&c->s, "acl_violation", true);
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
            if (gw_stream_ack_push(&c->s, pub.packet_id | (uint32_t)GW_MQTT_PUBREC << 16, true,
                                   &seq)) {
                gw_stream_close(&c->s, "out_of_memory", false);
                return -1;
            }
            return 0;
        }
    }
    if (pub.qos > 0 &&
        gw_stream_ack_push(
            &c->s, pub.packet_id | (uint32_t)(pub.qos == 1 ? GW_MQTT_PUBACK : GW_MQTT_PUBREC) << 16,
            false, &seq)) {
        gw_stream_close(&c->s, "out_of_memory", false);
        return -1;
    }
    gw_reject rej = {GW_R_NONE, ""};
    ingest(c, pub.topic.p, pub.topic.len, pub.payload, pub.payload_len, pub.qos > 0, seq, &queued,
           &rej, c->version == 5 ? &pr.correlation_data : NULL);
    if (pub.qos > 0 && !queued) { /* refused: acknowledge in order, nothing to commit */
        if (c->version == 5) {    /* MQTT 5: the answer says why (the entry is not sent yet) */
            uint8_t rc = rej.reason == GW_R_UNKNOWN_TOPIC ? GW_MQTT_RC_TOPIC_NAME_INVALID
                         : rej.reason == GW_R_UNSUPPORTED ? GW_MQTT_RC_IMPL_ERROR
                                                          : GW_MQTT_RC_PAYLOAD_FORMAT_INVALID;
            gw_stream_ack_or(&c->s, seq, (uint32_t)rc << 20 | push_reason(c, rej.detail));
            gw_metric_inc(GW_M_MQTT_V5_PUB_REFUSED);
            if (pub.qos == 2) /* an error PUBREC ends the exchange: no PUBREL follows */
                q2_release(c, pub.packet_id);
        }
        gw_stream_ack_ready(&c->s, seq);
    }
    return 0;
}

/* ---- SUBSCRIBE / UNSUBSCRIBE ---- */

static bool filter_allowed(const gw__mqtt_conn *c, const char *f, size_t len)
{
    /* The first three levels must be literally "", product, device: no wildcard reaches others. */
    return own_topic(c, f, len);
}

/* ---- downstream commands ---- */

/* "/{product}/{device}/function/invoke" or ".../properties/write" into buf; its length. */
static size_t command_topic(const gw__mqtt_conn *c, gw_command_op op, char *buf, size_t cap)
{
    const gw_device *dev = c->s.base.dev;
    int n = snprintf(buf, cap, "/%s/%s/%s", dev->product->id, dev->id,
                     op == GW_CMD_INVOKE ? "function/invoke" : "properties/write");
    return n > 0 && (size_t)n < cap ? (size_t)n : 0;
}

/* The granted QoS of the device's subscriptions matching topic (the highest), or -1. */
static int sub_qos(const gw__mqtt_conn *c, const char *topic, size_t len)
{
    int qos = -1;
    if (!c->st)
        return -1;
    pthread_mutex_lock(c->mu);
    for (const gw__mqtt_sub *s = c->st->subs; s; s = s->next)
        if (s->qos > qos && gw_mqtt_topic_match(s->filter, s->len, topic, len))
            qos = s->qos;
    pthread_mutex_unlock(c->mu);
    return qos;
}

static bool covers_commands(const gw__mqtt_conn *c, const gw__mqtt_sub *s)
{
    char t[320];
    gw_command_op ops[] = {GW_CMD_INVOKE, GW_CMD_WRITE};
    for (size_t i = 0; i < 2; i++) {
        size_t n = command_topic(c, ops[i], t, sizeof(t));
        if (n && gw_mqtt_topic_match(s->filter, s->len, t, n))
            return true;
    }
    return false;
}

/* The session's command op: the product's codec encodes the payload, published on the command
 * topic at min(granted QoS, 1) with this connection's next packet id (the PUBACK is accepted and
 * needs nothing: the device's reply is what completes the command). */
static int send_command(gw_session *base, const gw_command *cmd, gw_error *err)
{
    gw__mqtt_conn *c = (gw__mqtt_conn *)base;
    const gw_product *p = base->dev ? base->dev->product : NULL;
    char topic[320];
    uint8_t small[2048], *payload = small;
    size_t tlen, plen = 0, cap = sizeof(small);
    int rc;

    if (c->s.state != GW_STREAM_OPEN)
        return gw_error_set(err, GW_ECLOSED, "the connection is closing");
    if (!p->codec_ops->encode_command)
        return gw_error_set(err, GW_EINVAL, "codec %s carries no commands", p->codec);
    if (!(tlen = command_topic(c, cmd->op, topic, sizeof(topic))))
        return gw_error_set(err, GW_ETOOBIG, "command topic too long");
    int qos = sub_qos(c, topic, tlen);
    if (qos < 0)
        return gw_error_set(err, GW_ENOTFOUND, "the device has not subscribed to %s", topic);
    gw_mqtt_pbuf pb = {.n = 0};
    if (c->version == 5) {
        /* the client's receive maximum: the command waits for a PUBACK (then ready again) */
        if (qos > 0 && c->out_inflight >= c->out_max)
            return gw_error_set(err, GW_EBUSY, "the device's receive maximum (%u) is reached",
                                c->out_max);
        /* request/response: the reply topic and the id to echo; expiry = the reply timeout */
        if (cmd->timeout_ms)
            gw_mqtt_pb_u32(&pb, GW_MQTT_P_MESSAGE_EXPIRY, (cmd->timeout_ms + 999) / 1000);
        if (strcmp(p->codec, "json") == 0) {
            gw_mqtt_pb_u8(&pb, GW_MQTT_P_PAYLOAD_FORMAT, 1);
            gw_mqtt_pb_str(&pb, GW_MQTT_P_CONTENT_TYPE, "application/json", 16);
        }
        char rt[330];
        int rn = snprintf(rt, sizeof(rt), "%.*s/reply", (int)tlen, topic);
        if (rn > 0 && (size_t)rn < sizeof(rt))
            gw_mqtt_pb_str(&pb, GW_MQTT_P_RESPONSE_TOPIC, rt, (size_t)rn);
        gw_mqtt_pb_str(&pb, GW_MQTT_P_CORRELATION_DATA, cmd->dev_msg_id, strlen(cmd->dev_msg_id));
    }
    while ((rc = p->codec_ops->encode_command(p, cmd, base->dev->id, base->dev->secret, payload,
                                              cap, &plen, err)) == GW_ETOOBIG &&
           cap < cfg_of(c)->max_packet_size) {
        cap *= 8;
        if (payload != small)
            gw_free(GW_AREA_SESSION, payload);
        if (!(payload = gw_malloc(GW_AREA_SESSION, cap)))
            return gw_error_set(err, GW_ENOMEM, "out of memory");
    }
    if (rc == 0) {
        uint16_t pid = 0;
        if (qos > 0) {
            if (++c->next_pid == 0)
                c->next_pid = 1;
            pid = c->next_pid;
        }
        bool v5 = c->version == 5;
        size_t need = v5 ? gw_mqtt_publish5_size(tlen, plen, (uint8_t)qos, pb.n)
                         : gw_mqtt_publish_size(tlen, plen, (uint8_t)qos);
        if (need == 0)
            rc = gw_error_set(err, GW_ETOOBIG, "the command does not fit an MQTT packet");
        else if (v5 && c->out_max_packet && need > c->out_max_packet)
            rc = gw_error_set(err, GW_ETOOBIG,
                              "the command (%zu bytes) exceeds the device's maximum packet size "
                              "(%u)",
                              need, c->out_max_packet);
        else if (gw_stream_out_reserve(&c->s, need) != 0)
            rc = gw_error_set(err, GW_ENOMEM, "out of memory");
        else {
            uint8_t *o = c->s.out + c->s.out_len;
            size_t room = c->s.out_cap - c->s.out_len;
            c->s.out_len +=
                (uint32_t)(v5 ? gw_mqtt_encode_publish5(o, room, topic, tlen, payload, plen,
                                                        (uint8_t)qos, pid, false, pb.b, pb.n)
                              : gw_mqtt_encode_publish(o, room, topic, tlen, payload, plen,
                                                       (uint8_t)qos, pid, false));
            if (v5 && qos > 0)
                c->out_inflight++;
            gw_session_mark_dirty(base);
        }
    }
    if (payload != small)
        gw_free(GW_AREA_SESSION, payload);
    return rc;
}

/* Whether any subscription of the session covers a command topic. */
static bool any_covers_commands(gw__mqtt_conn *c)
{
    bool yes = false;
    if (!c->st)
        return false;
    pthread_mutex_lock(c->mu);
    for (const gw__mqtt_sub *s = c->st->subs; s && !yes; s = s->next)
        yes = covers_commands(c, s);
    pthread_mutex_unlock(c->mu);
    return yes;
}

/* Adds or updates one allowed filter in the session (lock held); its return code: the granted
 * QoS (at most 1), or 0x80 when max_subscriptions is reached or memory is short. */
static uint8_t subscribe_one(gw__mqtt_conn *c, gw__mqtt_state *st, gw_mqtt_str f, uint8_t qos,
                             bool *commands)
{
    gw__mqtt_sub *s = st->subs;
    while (s && !(s->len == f.len && memcmp(s->filter, f.p, f.len) == 0))
        s = s->next;
    if (!s && st->n_subs < cfg_of(c)->max_subscriptions) {
        s = gw_malloc(GW_AREA_SESSION, sizeof(*s) + f.len + 1u);
        if (s) {
            s->len = f.len;
            memcpy(s->filter, f.p, f.len);
            s->filter[f.len] = 0;
            s->next = st->subs;
            st->subs = s;
            st->n_subs++;
        }
    }
    if (!s)
        return 0x80;
    s->qos = qos > 1 ? 1 : qos;
    *commands |= covers_commands(c, s);
    return s->qos;
}

/* One return code per filter, in order (MQTT-3.9.3-1), however many the packet holds: the SUBACK
 * is sized from the filter count and its codes written straight into the output buffer (bounded
 * by max_packet_size: a filter takes at least 4 bytes of the SUBSCRIBE, its code 1 of the SUBACK).
 * Refused filters are logged once per packet: their count and the first one. */
static int handle_subscribe(gw__mqtt_conn *c, const uint8_t *body, uint32_t len)
{
    uint16_t pid;
    gw_mqtt_sub_iter it;
    gw_mqtt_str f, first_refused = {NULL, 0};
    uint8_t qos;
    size_t n = 0, refused = 0;
    bool commands = false;
    const char *why = NULL;
    bool v5 = c->version == 5;
    if (v5) {
        gw_mqtt_props pr;
        uint8_t drc = 0;
        if (gw_mqtt_decode_subscribe5(body, len, &pid, &it, &pr, &why, &drc) != 0) {
            decode_error(c, why, drc, "bad SUBSCRIBE");
            return -1;
        }
        if (GW_MQTT_HAS(&pr, GW_MQTT_P_SUBSCRIPTION_ID)) { /* CONNACK said: not available */
            protocol_error_rc(c, GW_MQTT_E_PROTOCOL, "subscription identifiers not supported",
                              GW_MQTT_RC_SUB_ID_NOT_SUPPORTED);
            return -1;
        }
    } else if (gw_mqtt_decode_subscribe(body, len, &pid, &it, &why) != 0) {
        protocol_error(c, error_kind(why), why ? why : "bad SUBSCRIBE");
        return -1;
    }
    size_t count = gw_mqtt_sub_count(&it), size = gw_mqtt_suback_size_v(GW_MQTT_SUBACK, count, v5);
    if (!c->st || size == 0 || gw_stream_out_reserve(&c->s, size) != 0) {
        gw_stream_close(&c->s, "out_of_memory", false);
        return -1;
    }
    uint8_t *pkt = c->s.out + c->s.out_len;
    uint8_t *rcs = pkt + gw_mqtt_encode_suback_head_v(pkt, GW_MQTT_SUBACK, pid, count, v5);
    pthread_mutex_lock(c->mu);
    while (n < count && gw_mqtt_sub_next(&it, &f, &qos)) {
        uint8_t rc = v5 ? GW_MQTT_RC_NOT_AUTHORIZED : 0x80;
        if (filter_allowed(c, f.p, f.len)) {
            rc = subscribe_one(c, c->st, f, qos, &commands);
            if (rc == 0x80 && v5)
                rc = GW_MQTT_RC_QUOTA_EXCEEDED;
        } else if (refused++ == 0) {
            first_refused = f;
        }
        rcs[n++] = rc;
    }
    pthread_mutex_unlock(c->mu);
    c->s.out_len += (uint32_t)size;
    if (refused) {
        char q[128], t[100];
        snprintf(t, sizeof(t), "%.*s", first_refused.len > 96 ? 96 : first_refused.len,
                 first_refused.p);
        gw_metric_add(GW_M_MQTT_ACL_SUB, (int64_t)refused);
        LOG(GW_LOG_WARN, c, "subscribe outside the device's topics refused",
            "refused=%zu filters=%zu first=%s", refused, count, gw_log_quote(q, sizeof(q), t));
    }
    gw_session_mark_dirty(&c->s.base);
    if (commands) /* after the SUBACK: the device can take commands now */
        gw_commands_ready(&c->s.base);
    return 0;
}

static int handle_unsubscribe(gw__mqtt_conn *c, const uint8_t *body, uint32_t len)
{
    uint16_t pid;
    gw_mqtt_sub_iter it;
    gw_mqtt_str f;
    uint8_t qos;
    const char *why = NULL;
    bool v5 = c->version == 5;
    uint8_t *rcs = NULL;
    size_t n = 0;
    if (v5) {
        gw_mqtt_props pr;
        uint8_t drc = 0;
        if (gw_mqtt_decode_unsubscribe5(body, len, &pid, &it, &pr, &why, &drc) != 0) {
            decode_error(c, why, drc, "bad UNSUBSCRIBE");
            return -1;
        }
        /* UNSUBACK: one reason code per filter, written straight into the output */
        size_t count = gw_mqtt_sub_count(&it);
        size_t size = gw_mqtt_suback_size_v(GW_MQTT_UNSUBACK, count, true);
        if (size == 0 || gw_stream_out_reserve(&c->s, size) != 0) {
            gw_stream_close(&c->s, "out_of_memory", false);
            return -1;
        }
        uint8_t *pkt = c->s.out + c->s.out_len;
        rcs = pkt + gw_mqtt_encode_suback_head_v(pkt, GW_MQTT_UNSUBACK, pid, count, true);
        memset(rcs, GW_MQTT_RC_NO_SUBSCRIPTION, count);
        c->s.out_len += (uint32_t)size;
        gw_session_mark_dirty(&c->s.base);
    } else if (gw_mqtt_decode_unsubscribe(body, len, &pid, &it, &why) != 0) {
        protocol_error(c, error_kind(why), why ? why : "bad UNSUBSCRIBE");
        return -1;
    }
    if (c->st) {
        pthread_mutex_lock(c->mu);
        for (; gw_mqtt_sub_next(&it, &f, &qos); n++) {
            for (gw__mqtt_sub **pp = &c->st->subs; *pp; pp = &(*pp)->next) {
                if ((*pp)->len == f.len && memcmp((*pp)->filter, f.p, f.len) == 0) {
                    gw__mqtt_sub *s = *pp;
                    *pp = s->next;
                    gw_free(GW_AREA_SESSION, s);
                    c->st->n_subs--;
                    if (rcs)
                        rcs[n] = GW_MQTT_RC_SUCCESS;
                    break;
                }
            }
        }
        pthread_mutex_unlock(c->mu);
    }
    if (!v5) {
        uint8_t pkt[4];
        gw_stream_out(&c->s, pkt, gw_mqtt_encode_ack(pkt, GW_MQTT_UNSUBACK, pid));
    }
    return 0;
}

/* ---- packet dispatch ---- */

/* MQTT 5 DISCONNECT: only reason 0x00 (normal disconnection) discards the will; 0x04 and every
 * other reason keep it (MQTT-3.1.2-8, 3.14.4); a session expiry interval replaces the CONNECT's
 * (not from 0, MQTT-3.14.2-2). */
static int handle_disconnect5(gw__mqtt_conn *c, const uint8_t *body, uint32_t len)
{
    uint8_t rc;
    gw_mqtt_props pr;
    const char *why = NULL;
    if (gw_mqtt_decode_disconnect5(body, len, &rc, &pr, &why) != 0) {
        decode_error(c, why, 0, "bad DISCONNECT");
        return -1;
    }
    if (GW_MQTT_HAS(&pr, GW_MQTT_P_SESSION_EXPIRY)) {
        if (c->expiry_zero && pr.session_expiry) {
            protocol_error(c, GW_MQTT_E_PROTOCOL, "session expiry set by DISCONNECT after 0");
            return -1;
        }
        uint32_t max = cfg_of(c)->session_expiry_s;
        if (c->st && c->st->stored) {
            pthread_mutex_lock(c->mu);
            gw__mqtt_stored_of(c->st)->expiry_s = pr.session_expiry > max ? max : pr.session_expiry;
            pthread_mutex_unlock(c->mu);
        }
    }
    bool keep_will = rc != 0x00;
    if (!keep_will)
        c->has_will = false;
    gw_stream_close(&c->s, "disconnect", keep_will);
    return -1;
}

/* Handles one whole packet. Returns 0 to go on, -1 when the connection is closing. */
static int handle_packet(gw__mqtt_conn *c, const gw_mqtt_fixed *fh, const uint8_t *body)
{
    uint16_t pid;
    if (c->s.state == GW_STREAM_NEW) {
        if (fh->type != GW_MQTT_CONNECT) {
            protocol_error(c, GW_MQTT_E_BEFORE_CONNECT, gw_mqtt_type_name(fh->type));
            return -1;
        }
        return handle_connect(c, body, fh->remaining);
    }
    if (c->keepalive)
        c->s.deadline = uv_now(&c->s.sl->loop->uv) + c->keepalive * 1500ull;
    if ((fh->type == GW_MQTT_PINGREQ || (fh->type == GW_MQTT_DISCONNECT && c->version != 5)) &&
        fh->remaining != 0) {
        protocol_error(c, GW_MQTT_E_MALFORMED, "PINGREQ/DISCONNECT with a body");
        return -1;
    }
    switch (fh->type) {
    case GW_MQTT_PUBLISH:
        return handle_publish(c, fh->flags, body, fh->remaining);
    case GW_MQTT_PINGREQ: {
        uint8_t pkt[2];
        gw_stream_out(&c->s, pkt, gw_mqtt_encode_pingresp(pkt));
        return 0;
    }
    case GW_MQTT_SUBSCRIBE:
        return handle_subscribe(c, body, fh->remaining);
    case GW_MQTT_UNSUBSCRIBE:
        return handle_unsubscribe(c, body, fh->remaining);
    case GW_MQTT_DISCONNECT:
        if (c->version == 5)
            return handle_disconnect5(c, body, fh->remaining);
        c->has_will = false; /* a clean DISCONNECT discards the will */
        gw_stream_close(&c->s, "disconnect", false);
        return -1;
    case GW_MQTT_PUBREL: {
        uint8_t pkt[4], rc;
        gw_mqtt_props pr;
        if (c->version == 5 ? gw_mqtt_decode_ack5(body, fh->remaining, &pid, &rc, &pr) != 0
                            : gw_mqtt_decode_ack(body, fh->remaining, &pid) != 0) {
            protocol_error(c, GW_MQTT_E_MALFORMED, "bad PUBREL");
            return -1;
        }
        q2_release(c, pid);
        gw_stream_out(&c->s, pkt, gw_mqtt_encode_ack(pkt, GW_MQTT_PUBCOMP, pid));
        return 0;
    }
    case GW_MQTT_PUBACK:
    case GW_MQTT_PUBREC:
    case GW_MQTT_PUBCOMP:
        /* Acks for downstream command publishes: nothing waits for them (the device's reply
         * completes a command), so they are only checked; under MQTT 5 a PUBACK frees a place of
         * the client's receive maximum. */
        if (c->version == 5) {
            uint8_t rc;
            gw_mqtt_props pr;
            if (gw_mqtt_decode_ack5(body, fh->remaining, &pid, &rc, &pr) != 0) {
                protocol_error(c, GW_MQTT_E_MALFORMED, "bad ack");
                return -1;
            }
            if (fh->type == GW_MQTT_PUBACK && c->out_inflight > 0 &&
                c->out_inflight-- == c->out_max)
                gw_commands_ready(&c->s.base); /* commands waiting for a place go on */
            return 0;
        }
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
static size_t process(gw_stream_conn *sc, const uint8_t *buf, size_t len)
{
    gw__mqtt_conn *c = (gw__mqtt_conn *)sc;
    size_t off = 0;
    c->s.in_need = 0;
    while (off < len && c->s.state != GW_STREAM_CLOSING) {
        gw_mqtt_fixed fh;
        const char *why = NULL;
        int rc =
            gw_mqtt_fixed_header_why(buf + off, len - off, cfg_of(c)->max_packet_size, &fh, &why);
        if (rc == GW_EINCOMPLETE)
            break;
        if (rc == GW_ETOOBIG) {
            protocol_error(c, GW_MQTT_E_OVERSIZED, "packet over max_packet_size");
            break;
        }
        if (rc != 0 && c->version == 5 && buf[off] == GW_MQTT_AUTH_BYTE) {
            /* AUTH is an MQTT 5 packet, but only after an Authentication Method (never here) */
            protocol_error(c, GW_MQTT_E_PROTOCOL, "AUTH without enhanced authentication");
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
            c->s.in_need = (uint32_t)total;
            break;
        }
        /* PUBLISH: store and in-flight too; any: output. The first packet (CONNECT: an online
         * event) waits for the store too, so a full store takes no new sessions. */
        bool wait;
        if (c->s.state == GW_STREAM_NEW ||
            (c->s.state == GW_STREAM_OPEN && fh.type == GW_MQTT_PUBLISH))
            wait = gw_stream_hold(&c->s);
        else
            wait = c->s.state == GW_STREAM_OPEN && gw_stream_out_full(&c->s);
        if (wait)
            break;
        if (handle_packet(c, &fh, buf + off + fh.header_len) != 0) {
            off += total;
            break;
        }
        off += total;
    }
    return off;
}

/* Applies the last will: counts it and, when it is the device's own report/event topic, stores it
 * like a PUBLISH (no ack to send: the connection is gone). */
static bool apply_will(gw__mqtt_conn *c)
{
    bool queued;
    if (!c->has_will || !c->s.base.dev)
        return false;
    c->has_will = false;
    gw_metric_inc(GW_M_MQTT_WILLS);
    gw_metric_inc(GW_M_MSG_RECEIVED);
    const gw__mqtt_will *w = c->will;
    ingest(c, w->topic, w->topic_len, (const uint8_t *)w->topic + w->topic_len + 1, w->payload_len,
           false, 0, &queued, NULL, NULL);
    return true;
}

/* ---- stream callbacks ---- */

static void opened(gw_stream_conn *sc)
{
    gw__mqtt_conn *c = (gw__mqtt_conn *)sc;
    sc->deadline = uv_now(&sc->sl->loop->uv) + cfg_of(c)->connect_timeout_ms;
}

static void send_ack(gw_stream_conn *sc, uint32_t e)
{
    gw__mqtt_conn *c = (gw__mqtt_conn *)sc;
    if (!(e & (0xffu << 20 | GW__MQTT_ACK_RS))) { /* success, no reason string: 4 bytes */
        uint8_t pkt[4];
        gw_stream_out(
            sc, pkt, gw_mqtt_encode_ack(pkt, (uint8_t)(ACK_TYPE(e) & 0xf), (uint16_t)(e & 0xffff)));
        return;
    }
    /* MQTT 5 with a reason code (and maybe its reason string, next in the FIFO) */
    gw_mqtt_pbuf pb = {.n = 0};
    uint8_t pkt[GW_MQTT_PBUF + 16];
    gw__mqtt_rs *r = NULL;
    if (e & GW__MQTT_ACK_RS && c->x && (r = c->x->rs_head) != NULL) {
        c->x->rs_head = r->next;
        gw_mqtt_pb_str(&pb, GW_MQTT_P_REASON_STRING, r->s, r->len);
        gw_free(GW_AREA_SESSION, r);
    }
    uint8_t type = (uint8_t)(ACK_TYPE(e) & 0xf), rc = (uint8_t)(e >> 20);
    size_t n = gw_mqtt_encode_ack5(pkt, sizeof(pkt), type, (uint16_t)(e & 0xffff), rc, pb.b, pb.n);
    if (c->out_max_packet && n > c->out_max_packet) /* the reason string is dropped */
        n = gw_mqtt_encode_ack5(pkt, sizeof(pkt), type, (uint16_t)(e & 0xffff), rc, NULL, 0);
    gw_stream_out(sc, pkt, n);
}

static bool closing(gw_stream_conn *sc, const char *reason, bool will)
{
    gw__mqtt_conn *c = (gw__mqtt_conn *)sc;
    static const struct {
        const char *reason;
        uint8_t rc;
    } v5_reasons[] = {
        {"takeover", GW_MQTT_RC_SESSION_TAKEN_OVER},
        {"keepalive_timeout", GW_MQTT_RC_KEEPALIVE_TIMEOUT},
        {"shutdown", GW_MQTT_RC_SHUTTING_DOWN},
        {"store_error", GW_MQTT_RC_SERVER_BUSY},
        {"out_of_memory", GW_MQTT_RC_SERVER_BUSY},
        {"removed", GW_MQTT_RC_ADMINISTRATIVE_ACTION},      /* the device API or a reload */
        {"reconfigured", GW_MQTT_RC_ADMINISTRATIVE_ACTION}, /* its secret or product changed */
    };
    if (c->version == 5 && sc->state == GW_STREAM_OPEN) /* MQTT 5: the server says why */
        for (size_t i = 0; i < sizeof(v5_reasons) / sizeof(v5_reasons[0]); i++)
            if (strcmp(reason, v5_reasons[i].reason) == 0)
                send_disconnect(c, v5_reasons[i].rc, reason);
    bool applied = will ? apply_will(c) : false;
    c->has_will = false;
    gw__mqtt_session_detach(sessions_of(c), c); /* kept for clean_session=0, else freed */
    return applied;
}

static void expired(gw_stream_conn *sc)
{
    gw__mqtt_conn *c = (gw__mqtt_conn *)sc;
    if (sc->state == GW_STREAM_NEW) {
        gw_metric_inc(GW_M_MQTT_CONNECT_TIMEOUT);
        LOG(GW_LOG_INFO, c, "no CONNECT in time; closing", "connect_timeout_ms=%u",
            cfg_of(c)->connect_timeout_ms);
        gw_stream_close(sc, "connect_timeout", false);
    } else {
        gw_metric_inc(GW_M_MQTT_KEEPALIVE);
        LOG(GW_LOG_INFO, c, "keep-alive expired; closing", "keepalive=%u", c->keepalive);
        gw_stream_close(sc, "keepalive_timeout", true);
    }
}

static void destroy(gw_stream_conn *sc)
{
    gw__mqtt_conn *c = (gw__mqtt_conn *)sc;
    /* The state was detached at closing (the adapter may be gone by now); own is empty then. */
    gw__mqtt_state_clear(&c->own);
    for (uint16_t i = 0; c->x && i < c->x->n_aliases; i++)
        gw_free(GW_AREA_SESSION, c->x->aliases[i].topic);
    while (c->x && c->x->rs_head) {
        gw__mqtt_rs *r = c->x->rs_head;
        c->x->rs_head = r->next;
        gw_free(GW_AREA_SESSION, r);
    }
    gw_free(GW_AREA_SESSION, c->x);
    gw_free(GW_AREA_SESSION, c->will);
}

const gw_stream_ops gw__mqtt_stream_ops = {
    .session = GW_STREAM_SESSION_OPS("mqtt", send_command),
    .conn_size = sizeof(gw__mqtt_conn),
    .opened = opened,
    .process = process,
    .send_ack = send_ack,
    .closing = closing,
    .expired = expired,
    .destroy = destroy,
};

/* udp_session.c: one datagram's path (size check, decode, device look-up, verify against the
 * device's secret, replay window, address move) and what the UDP session adds to a datagram
 * session (protocols/dgram/): acks held until their commit, command frames sent to the device. */
#include "udp_internal.h"

#include "../../gateway/util/auth.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "../../gateway/util/alloc.h"
#include "../../gateway/core/codec.h"
#include "../../gateway/command/command.h"
#include "../../gateway/core/dgram.h"
#include "../../gateway/core/dispatch.h"
#include "../../gateway/core/listen.h"
#include "../../gateway/util/log.h"
#include "../../gateway/util/metrics.h"

static const gw_session_ops sess_ops;

static gw__udp_sess *sess_of(gw_session *s)
{
    return (gw__udp_sess *)s;
}

/* ---- drops: counted, and logged within the log's per-loop, per-call-site rate limit ---- */

static void drop(gw__udp_loop *ul, gw_metric m, const struct sockaddr *from, const char *reason,
                 const char *dev_id, const char *detail)
{
    char peer[64], q1[160], q2[256];
    gw_metric_inc(m);
    (void)ul;
    if (GW_LOG_WARN < gw_log_level)
        return;
    gw_sockaddr_str(from, peer, sizeof(peer));
    gw_log_write(GW_LOG_WARN, "udp", NULL, peer, "datagram dropped", "reason=%s claimed_dev=%s%s%s",
                 reason, gw_log_value(q1, sizeof(q1), dev_id && *dev_id ? dev_id : "-"),
                 detail ? " detail=" : "", detail ? gw_log_quote(q2, sizeof(q2), detail) : "");
}

/* ---- sending ---- */

/* ---- session lifecycle ---- */

static void free_acks(gw__udp_sess *s)
{
    while (s->acks) {
        gw__udp_ack *n = s->acks->next;
        gw_free(GW_AREA_OUTPUT, s->acks);
        s->acks = n;
    }
    s->acks_tail = NULL;
}

/* gw_dgram_ops.close_end: the acks not sent yet are dropped with the session. */
static void close_end(gw_dgram_sess *s)
{
    free_acks((gw__udp_sess *)s);
}

static void destroy(gw_session *s)
{
    free_acks(sess_of(s));
    gw_free(GW_AREA_SESSION, s);
}

static void committed(gw_session *base, gw_event *ev)
{
    gw__udp_sess *s = sess_of(base);
    gw__udp_ack **pp = &s->acks, *a = NULL, *prev = NULL;
    for (; *pp; prev = *pp, pp = &(*pp)->next) {
        if ((*pp)->token == ev->token) {
            a = *pp;
            *pp = a->next;
            if (s->acks_tail == a)
                s->acks_tail = prev;
            break;
        }
    }
    if (!a)
        return;
    if (ev->status == 0 && !s->d.closing) {
        gw_dgram_sock_send(s->d.sock, &s->d.addr, a->data, a->len);
        s->acked_seq = a->seq;
        s->acked_valid = a->seq_set;
    } else if (ev->status != 0 && GW_LOG_WARN >= gw_log_level) {
        char peer[64];
        gw_dgram_sess_peer(base, peer, sizeof(peer));
        gw_log_write(GW_LOG_WARN, "udp", base->dev->id, peer, "not acknowledged: store error",
                     "error=\"%s\"", gw_strerror(ev->status));
    }
    gw_free(GW_AREA_OUTPUT, a);
}

/* The session's command op: one datagram to the device's last authenticated address, encoded by
 * the product's codec in the loop's frame buffer. */
static int send_command(gw_session *base, const gw_command *cmd, gw_error *err)
{
    gw__udp_sess *s = sess_of(base);
    const gw_product *p = base->dev->product;
    size_t n = 0;
    if (s->d.closing)
        return gw_error_set(err, GW_ECLOSED, "the session has ended");
    if (!p->codec_ops->encode_command)
        return gw_error_set(err, GW_EINVAL, "codec %s carries no commands", p->codec);
    int rc = p->codec_ops->encode_command(p, cmd, base->dev->id, base->dev->secret, s->ul->ackbuf,
                                          s->ul->ackbuf_size, &n, err);
    if (rc == 0)
        gw_dgram_sock_send(s->d.sock, &s->d.addr, s->ul->ackbuf, n);
    return rc;
}

static const gw_session_ops sess_ops = GW_DGRAM_SESS_OPS("udp", committed, destroy, send_command);

static gw__udp_sess *sess_open(gw__udp_sock *us, const gw_device *dev, const struct sockaddr *from)
{
    gw__udp_loop *ul = us->ul;
    gw__udp_sess *s = (gw__udp_sess *)gw_dgram_sess_open(&ul->dl, sizeof(gw__udp_sess), &sess_ops,
                                                         &us->d, dev, from);
    if (!s)
        return NULL;
    s->ul = ul;
    GW_LOG_DEBUG("udp", dev->id, NULL, "online", "loop=%u", ul->dl.loop->index);
    return s;
}

/* ---- acks ---- */

/* Encodes the ack for m (rej NULL, or why it was refused) into the loop's ack buffer; 0 bytes
 * when the layout has none. */
static size_t encode_ack(gw__udp_sess *s, const gw_thing_msg *m, const gw_reject *rej)
{
    const gw_product *p = s->d.base.dev->product;
    gw__udp_loop *ul = s->ul;
    size_t n = 0;
    if (!p->codec_ops->encode_ack || p->codec_ops->encode_ack(p, m, rej, s->d.base.dev->secret,
                                                              ul->ackbuf, ul->ackbuf_size, &n) != 0)
        return 0;
    return n;
}

/* Keeps the ack of m until its event is committed (GW_AREA_OUTPUT: one per message in flight,
 * bounded by the store's back-pressure); returns its token, or -1 (no memory). */
static int64_t ack_hold(gw__udp_sess *s, const gw_thing_msg *m, const uint8_t *frame, size_t n)
{
    gw__udp_ack *a = gw_malloc(GW_AREA_OUTPUT, sizeof(*a) + n);
    if (!a)
        return -1;
    a->next = NULL;
    a->token = s->next_token++;
    a->seq = m->seq;
    a->seq_set = m->seq_set;
    a->len = (uint16_t)n;
    memcpy(a->data, frame, n);
    if (s->acks_tail)
        s->acks_tail->next = a;
    else
        s->acks = a;
    s->acks_tail = a;
    return a->token;
}

static void ack_unhold(gw__udp_sess *s, uint32_t token)
{
    gw__udp_ack *a = s->acks_tail;
    if (!a || a->token != token)
        return;
    gw__udp_ack **pp = &s->acks, *prev = NULL;
    while (*pp != a) {
        prev = *pp;
        pp = &(*pp)->next;
    }
    *pp = NULL;
    s->acks_tail = prev;
    gw_free(GW_AREA_OUTPUT, a);
}

/* ---- one datagram ---- */

/* A replayed datagram (reason): dropped and counted. A retransmission of the last acknowledged
 * one from the device's own address gets its ack again (its first ack may have been lost); it is
 * not stored again. */
static void replayed(gw__udp_sock *us, gw__udp_sess *s, bool here, const gw_thing_msg *m,
                     const struct sockaddr *from, const char *reason)
{
    char again[96];
    size_t n;
    if (s && here && !s->d.closing && m->seq_set && s->acked_valid && m->seq == s->acked_seq &&
        (n = encode_ack(s, m, NULL)) > 0) {
        gw_dgram_sock_send(s->d.sock, &s->d.addr, s->ul->ackbuf, n);
        snprintf(again, sizeof(again),
                 "seq %" PRIu32 " retransmitted from the device's address: acked again, not stored",
                 m->seq);
        reason = again;
    }
    drop(us->ul, GW_M_UDP_DROP_REPLAY, from, "replay", m->device_id, reason);
}

static int authenticate(const gw_product *p, const gw_thing_msg *m, const uint8_t *buf, size_t len,
                        const gw_device *dev)
{
    if (p->auth_mode == GW_AUTH_DEVICE_ID) /* the registry is the allowlist */
        return 0;
    if (p->codec_ops->verify)
        return p->codec_ops->verify(p, m, buf, len, dev->secret);
    return m->secret[0] && gw_secret_check(dev->secret, m->secret, strlen(m->secret)) ? 0
                                                                                      : GW_EAUTH;
}

/* A decoded, authenticated message of s's device. */
static void handle(gw__udp_sess *s, gw_thing_msg *m)
{
    gw__udp_loop *ul = s->ul;
    gw_reject rej = {GW_R_NONE, ""};
    size_t n;

    gw_metric_inc(GW_M_MSG_RECEIVED);
    if (m->kind == GW_MSG_HEARTBEAT || m->kind == GW_MSG_LOGIN) {
        if ((n = encode_ack(s, m, NULL)) > 0) {
            gw_dgram_sock_send(s->d.sock, &s->d.addr, ul->ackbuf, n);
            s->acked_seq = m->seq;
            s->acked_valid = m->seq_set;
        }
        return;
    }
    n = encode_ack(s, m, NULL);
    int64_t token = n ? ack_hold(s, m, ul->ackbuf, n) : 0;
    if (token < 0)
        return; /* out of memory: no ack, the device resends */
    int rc = gw_dispatch_message(&s->d.base, m, (uint32_t)token, n > 0, &rej);
    if (rc == 0)
        return;
    if (n)
        ack_unhold(s, (uint32_t)token);
    if (rc == GW_EINVAL && (n = encode_ack(s, m, &rej)) > 0)
        gw_dgram_sock_send(s->d.sock, &s->d.addr, ul->ackbuf, n); /* the layout's negative ack */
}

void gw__udp_datagram(gw_dgram_sock *ds, const uint8_t *buf, size_t len,
                      const struct sockaddr *from, bool truncated)
{
    gw__udp_sock *us = (gw__udp_sock *)ds;
    gw__udp_loop *ul = us->ul;
    const gw_config *cfg = ul->dl.loop->cfg;
    /* the listener's product as this loop's generation has it (a reload may change its model) */
    const gw_product *p = gw_config_product(cfg, us->product->id);
    if (!p)
        p = us->product;
    gw_reject rej = {GW_R_NONE, ""};
    /* the discriminator tells the kind; a report goes to the dispatcher: the codec may check it as
     * it reads it (the binary codec: its payload text without a tree) */
    gw_decode_hint hint = {GW_MSG_NONE, NULL, true};
    gw_thing_msg m;
    char detail[96];

    gw_metric_inc(GW_M_UDP_DATAGRAMS);
    if (truncated || len > us->max_frame) {
        snprintf(detail, sizeof(detail), "%s%zu bytes, max frame %zu", truncated ? "over " : "",
                 len, us->max_frame);
        drop(ul, GW_M_UDP_DROP_OVERSIZED, from, "oversized", NULL, detail);
        return;
    }
    memset(&m, 0, sizeof(m));
    if (p->codec_ops->decode(p, &hint, buf, len, &m, &rej) != 0) {
        bool check = rej.reason == GW_R_BAD_CHECK;
        drop(ul, check ? GW_M_UDP_DROP_BAD_CHECK : GW_M_UDP_DROP_MALFORMED, from,
             check ? "bad_check" : "malformed", m.device_id, rej.detail);
        gw_thing_msg_clear(&m);
        return;
    }
    const gw_device *dev = m.device_id[0] ? gw_config_device(cfg, m.device_id) : NULL;
    if (!dev || dev->product != p) {
        drop(ul, GW_M_UDP_DROP_UNKNOWN, from, "unknown_device", m.device_id,
             dev ? "device of another product" : NULL);
        gw_thing_msg_clear(&m);
        return;
    }
    gw__udp_sess *s = (gw__udp_sess *)gw_dgram_sess_find(&ul->dl, dev->index);
    if (authenticate(p, &m, buf, len, dev) != 0) {
        /* A spoofed source fails here too: the session keeps its remembered address. */
        bool spoof = s && !gw_dgram_addr_equal(&s->d.addr, from);
        drop(ul, GW_M_UDP_DROP_BAD_AUTH, from, "bad_auth", m.device_id,
             spoof ? "source differs from the device's address" : NULL);
        gw_thing_msg_clear(&m);
        return;
    }
    char why[128] = "";
    bool elsewhere = false;
    gw__udp_verdict v = gw__udp_replay_check(us, dev, &m, why, sizeof(why), &elsewhere);
    bool here = s && gw_dgram_sess_at(&s->d, &us->d, from);
    if (v == GW__UDP_REPLAY || (v == GW__UDP_OLDER && !s && elsewhere)) {
        if (v == GW__UDP_OLDER)
            snprintf(why, sizeof(why),
                     "not newer than the device's last datagram, whose session "
                     "is on another loop: its address stays");
        replayed(us, s, here, &m, from, why);
        gw_thing_msg_clear(&m);
        return;
    }
    bool opened = !s;
    if (!s) {
        s = sess_open(us, dev, from);
        if (!s) {
            gw_thing_msg_clear(&m);
            return;
        }
    } else if (!here && v == GW__UDP_OLDER) {
        /* stored (a late or reordered datagram) but not newer than what the device sent: it
         * does not move the device's address, so a replay cannot redirect acks and commands */
        if (GW_LOG_INFO >= gw_log_level) {
            char now[64];
            gw_sockaddr_str(from, now, sizeof(now));
            gw_log_write(GW_LOG_INFO, "udp", dev->id, now,
                         "datagram from another address not newer than the last: address kept",
                         NULL);
        }
    } else if (!here) {
        if (GW_LOG_INFO >= gw_log_level) {
            char was[64], now[64];
            gw_sockaddr_str(&s->d.addr.sa, was, sizeof(was));
            gw_sockaddr_str(from, now, sizeof(now));
            gw_log_write(GW_LOG_INFO, "udp", dev->id, now, "device address changed", "was=%s", was);
        }
        gw_dgram_sess_move(&s->d, &us->d, from);
    }
    gw_dgram_sess_touch(&s->d);
    handle(s, &m);
    gw_thing_msg_clear(&m);
    if (opened && !s->d.closing) /* the device is reachable at its address: queued commands go */
        gw_commands_ready(&s->d.base);
}

/* ---- shutdown ---- */

void gw__udp_close_all(gw__udp_loop *ul, const char *reason)
{
    gw_dgram_close_all(&ul->dl, reason);
    gw_session_index_free(&ul->dl.sessions);
}

const gw_dgram_ops gw__udp_dgram_ops = {
    .area = "udp",
    .pause_when_full = true,
    .metric = {&GW_M_UDP_IDLE, &GW_M_UDP_TAKEOVER},
    .datagram = gw__udp_datagram,
    .listen = gw__udp_listen,
    .close_end = close_end,
};

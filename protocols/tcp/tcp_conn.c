/* tcp_conn.c: the TCP side of one binary-frame device connection (the stream module reads, pauses,
 * acks and closes it): framing with the product's codec, login or device-id authentication,
 * frames to the dispatcher with acks after commit, heartbeats, login and idle timeouts, and
 * command frames downstream. */
#include "tcp_internal.h"

#include <stdio.h>
#include <string.h>

#include "../../gateway/util/auth.h"
#include "../../gateway/core/codec.h"
#include "../../gateway/command/command.h"
#include "../../gateway/core/dispatch.h"
#include "../../gateway/util/log.h"
#include "../../gateway/util/metrics.h"

#define ACK_MAX 512 /* an ack frame larger than this is not sent (layouts keep them small) */

#define LOG(level, c, msg, ...) GW_STREAM_LOG(level, &(c)->s, msg, __VA_ARGS__)

static const gw__tcp_cfg *cfg_of(const gw__tcp_conn *c)
{
    return &((const gw__tcp_adapter *)c->s.sl->user)->cfg;
}

/* The session's device's product once logged in; before, the listener's product as the loop's
 * configuration generation has it (a reload may have changed its thing model). */
static const gw_product *product_of(const gw__tcp_conn *c)
{
    if (c->s.base.dev)
        return c->s.base.dev->product;
    const gw_product *p = gw_config_product(c->s.sl->loop->cfg, c->sv->product->id);
    return p ? p : c->sv->product;
}

static void refresh_deadline(gw__tcp_conn *c)
{
    c->s.deadline = uv_now(&c->s.sl->loop->uv) + c->sv->idle_ms;
}

/* A frame (or stream) the adapter cannot go on with: counted, logged, closed. */
static void bad_stream(gw__tcp_conn *c, gw_metric m, const char *why, const char *detail)
{
    char q[256];
    gw_metric_inc(m);
    LOG(GW_LOG_WARN, c, "bad frame; closing", "reason=%s detail=%s", why,
        gw_log_quote(q, sizeof(q), detail ? detail : ""));
    gw_stream_close(&c->s, c->s.state == GW_STREAM_OPEN ? "protocol_error" : "refused", false);
}

/* ---- acks ---- */

/* The codec's ack for m (rej NULL: accepted, else refused and why) into buf; its length (0: none).
 */
static size_t make_ack_as(gw__tcp_conn *c, const gw_thing_msg *m, const gw_reject *rej,
                          const char *secret, uint8_t *buf, size_t cap);

static size_t make_ack(gw__tcp_conn *c, const gw_thing_msg *m, const gw_reject *rej, uint8_t *buf,
                       size_t cap)
{
    const char *secret = c->s.base.dev ? c->s.base.dev->secret : NULL; /* NULL before login */
    return make_ack_as(c, m, rej, secret, buf, cap);
}

/* make_ack with the secret of a given device (a registration's, before any login). */
static size_t make_ack_as(gw__tcp_conn *c, const gw_thing_msg *m, const gw_reject *rej,
                          const char *secret, uint8_t *buf, size_t cap)
{
    const gw_product *p = product_of(c);
    size_t n = 0;
    if (!p->codec_ops->encode_ack || p->codec_ops->encode_ack(p, m, rej, secret, buf, cap, &n) != 0)
        return 0;
    return n;
}

/* Sends m's ack (rej as above) once every earlier ack has gone out. */
static int ack_now(gw__tcp_conn *c, const gw_thing_msg *m, const gw_reject *rej)
{
    uint8_t buf[ACK_MAX];
    uint32_t seq;
    size_t n = make_ack(c, m, rej, buf, sizeof(buf));
    if (n == 0)
        return 0;
    if (gw_stream_ack_push_bytes(&c->s, buf, n, true, &seq) != 0) {
        gw_stream_close(&c->s, "out_of_memory", false);
        return -1;
    }
    return 0;
}

/* ---- authentication ---- */

static void login_failed(gw__tcp_conn *c, const gw_thing_msg *m, gw_metric metric, const char *why)
{
    char q[96];
    gw_metric_inc(metric);
    gw_stream_auth_failed(&c->s);
    LOG(GW_LOG_WARN, c, "login refused; closing", "reason=%s device=%s", why,
        gw_log_quote(q, sizeof(q), m->device_id));
    /* the same answer whatever failed: a prober learns nothing about which devices exist */
    static const gw_reject refused = {GW_R_NONE, "login refused"};
    if (m->kind == GW_MSG_LOGIN && ack_now(c, m, &refused) != 0)
        return;
    gw_stream_close(&c->s, "refused", false);
}

/* The first frame: a login, or (device id in every frame) any frame naming a known device of this
 * product, checked with the codec's verify when the layout declares a token. 0: authenticated. */
static int login_as(gw__tcp_conn *c, const gw_device *dev);

static int authenticate(gw__tcp_conn *c, const gw_thing_msg *m, const uint8_t *frame, size_t len)
{
    const gw_product *p = product_of(c);
    /* with auth codes (registration) a login is required even when every frame names its device */
    if (m->kind != GW_MSG_LOGIN && (!c->sv->id_every_frame || c->sv->login_code)) {
        login_failed(c, m, GW_M_TCP_LOGIN_NONE, "not_a_login");
        return -1;
    }
    int by = GW_TLS_BY_NONE;
    const char *tid = gw_stream_tls_identity(&c->s, &by);
    if (tid && strcmp(m->device_id, tid) != 0) { /* the certificate or PSK named another */
        login_failed(c, m, GW_M_TCP_LOGIN_CERT, "identity_mismatch");
        return -1;
    }
    if (p->auth_mode == GW_AUTH_CERT && by != GW_TLS_BY_CERT) {
        login_failed(c, m, GW_M_TCP_LOGIN_CERT, "certificate_required");
        return -1;
    }
    const gw_device *dev =
        m->device_id[0] ? gw_config_device(gw_stream_cfg(&c->s), m->device_id) : NULL;
    if (!dev || dev->product != p) {
        login_failed(c, m, GW_M_TCP_LOGIN_UNKNOWN, "unknown_device");
        return -1;
    }
    /* "auth": {"mode": "device-id"}: the protocol has no secret; the registry is the allowlist */
    bool ok = m->kind != GW_MSG_LOGIN || p->auth_mode == GW_AUTH_DEVICE_ID ||
              c->sv->login_code || /* the codec's verify checks the code */
              gw_secret_check(dev->secret, m->secret, strlen(m->secret));
    if (ok && p->codec_ops->verify && p->codec_ops->verify(p, m, frame, len, dev->secret) != 0)
        ok = false;
    if (!ok) {
        login_failed(c, m, GW_M_TCP_LOGIN_SECRET, "bad_secret");
        return -1;
    }
    return login_as(c, dev);
}

static int login_as(gw__tcp_conn *c, const gw_device *dev)
{
    gw_stream_auth_ok(&c->s);
    c->s.state = GW_STREAM_OPEN;
    refresh_deadline(c);
    if (gw_session_online(&c->s.base, dev, "tcp") > 0) {
        gw_metric_inc(GW_M_TCP_TAKEOVER);
        LOG(GW_LOG_INFO, c, "session taken over", NULL);
    } else {
        LOG(GW_LOG_DEBUG, c, "logged in", NULL);
    }
    return 0;
}

/* ---- registration ---- */

/* A register message (JT/T 808 0x0100): answered with the auth code of the device it names, which
 * the login then carries; an unknown terminal gets the layout's refusal ("no such terminal") and
 * the connection is closed. Registering authenticates nothing: the session stays as it was. */
static int register_terminal(gw__tcp_conn *c, const gw_thing_msg *m)
{
    const gw_product *p = product_of(c);
    const gw_device *dev =
        m->device_id[0] ? gw_config_device(gw_stream_cfg(&c->s), m->device_id) : NULL;
    uint8_t buf[ACK_MAX];
    uint32_t seq;
    char q[96];
    size_t n;
    gw_log_quote(q, sizeof(q), m->device_id);
    if (c->s.state == GW_STREAM_OPEN && dev != c->s.base.dev) {
        bad_stream(c, GW_M_TCP_BAD_DEVICE, "device_mismatch", "registration for another device");
        return -1;
    }
    if (!dev || dev->product != p) {
        static const gw_reject unknown = {GW_R_NONE, "no such terminal"};
        gw_metric_inc(GW_M_TCP_REGISTER_UNKNOWN);
        gw_stream_auth_failed(&c->s);
        LOG(GW_LOG_WARN, c, "registration refused; closing", "reason=unknown_terminal device=%s",
            q);
        n = make_ack_as(c, m, &unknown, NULL, buf, sizeof(buf));
        if (n > 0 && gw_stream_ack_push_bytes(&c->s, buf, n, true, &seq) != 0) {
            gw_stream_close(&c->s, "out_of_memory", false);
            return -1;
        }
        gw_stream_close(&c->s, "refused", false);
        return -1;
    }
    n = make_ack_as(c, m, NULL, dev->secret, buf, sizeof(buf));
    if (n == 0) { /* the layout cannot carry this device's code (its secret is missing) */
        bad_stream(c, GW_M_TCP_BAD_UNDECODABLE, "registration", "no auth code for the device");
        return -1;
    }
    if (gw_stream_ack_push_bytes(&c->s, buf, n, true, &seq) != 0) {
        gw_stream_close(&c->s, "out_of_memory", false);
        return -1;
    }
    gw_metric_inc(GW_M_TCP_REGISTERED);
    LOG(GW_LOG_INFO, c, "terminal registered", "device=%s", q);
    return 0;
}

/* ---- frames ---- */

/* A report, event or reply: to the dispatcher; its ack (if the layout has one) goes out after the
 * commit, in frame order; a rejected one gets a negative ack if the layout has one. */
static int ingest(gw__tcp_conn *c, gw_thing_msg *m)
{
    uint8_t buf[ACK_MAX];
    uint32_t seq, token = c->s.ack_seq + c->s.ack_n; /* the sequence number the next push gets */
    gw_reject rej = {GW_R_NONE, ""};
    size_t n = make_ack(c, m, NULL, buf, sizeof(buf));

    gw_metric_inc(GW_M_MSG_RECEIVED);
    int rc = gw_dispatch_message(&c->s.base, m, token, n > 0, &rej);
    if (rc == GW_EINVAL) /* counted and logged by the dispatcher */
        return ack_now(c, m, &rej);
    if (rc != 0) {
        gw_stream_close(&c->s, "out_of_memory", false);
        return -1;
    }
    if (n > 0 && gw_stream_ack_push_bytes(&c->s, buf, n, false, &seq) != 0) {
        gw_stream_close(&c->s, "out_of_memory", false);
        return -1;
    }
    return 0;
}

/* A frame of N records (a repeated group): one message each, at its own time, dispatched as one
 * unit; each accepted record holds an empty ack entry released by its commit, and the frame's ack
 * (the number accepted: record_count) queues behind them, so it goes out after the last commit. */
static int ingest_records(gw__tcp_conn *c, gw_thing_msg *m)
{
    static const uint8_t none[1];
    uint8_t buf[ACK_MAX];
    uint32_t seq;
    size_t n = json_array_size(m->records);
    if (m->unknown_items) {
        gw_metric_add(GW_M_TCP_UNKNOWN_ITEMS, m->unknown_items);
        LOG(GW_LOG_DEBUG, c, "unknown item ids skipped", "items=%u", m->unknown_items);
    }
    m->n_accepted = 0;
    for (size_t i = 0; i < n; i++) {
        const json_t *r = json_array_get(m->records, i);
        gw_thing_msg one = *m;
        gw_reject rej = {GW_R_NONE, ""};
        one.records = NULL;
        one.values = json_object_get(r, "values");
        one.timestamp_ms = json_integer_value(json_object_get(r, "ts"));
        uint32_t token = c->s.ack_seq + c->s.ack_n;
        gw_metric_inc(GW_M_MSG_RECEIVED);
        int rc = gw_dispatch_message(&c->s.base, &one, token, true, &rej);
        if (rc == GW_EINVAL) /* counted and logged by the dispatcher; not counted in the ack */
            continue;
        if (rc != 0 || gw_stream_ack_push_bytes(&c->s, none, 0, false, &seq) != 0) {
            gw_stream_close(&c->s, "out_of_memory", false);
            return -1;
        }
        m->n_accepted++;
    }
    size_t an = make_ack(c, m, NULL, buf, sizeof(buf));
    if (an > 0 && gw_stream_ack_push_bytes(&c->s, buf, an, true, &seq) != 0) {
        gw_stream_close(&c->s, "out_of_memory", false);
        return -1;
    }
    return 0;
}

/* A frame that did not decode: before login it ends the connection; after, it is counted and
 * rejected with the codec's negative ack where it can write one (protobuf: an Ack saying why;
 * a bad check is never acked: the device resends). */
static int undecodable(gw__tcp_conn *c, gw_thing_msg *m, const gw_reject *rej)
{
    bool check = rej->reason == GW_R_BAD_CHECK;
    if (c->s.state != GW_STREAM_OPEN) {
        bad_stream(c, check ? GW_M_TCP_BAD_CHECK : GW_M_TCP_BAD_UNDECODABLE,
                   check ? "bad_check" : gw_reason_name(rej->reason), rej->detail);
        return -1;
    }
    gw_metric_inc(check ? GW_M_TCP_BAD_CHECK : GW_M_TCP_BAD_UNDECODABLE);
    gw_metric_inc(GW_M_MSG_RECEIVED);
    gw_dispatch_rejected(&c->s.base, rej, m->msg_id);
    return check ? 0 : ack_now(c, m, rej);
}

/* A second login on a logged-in session carries the same credential: the secret, or (auth codes)
 * what the codec's verify accepts. */
static bool login_again_ok(gw__tcp_conn *c, const gw_thing_msg *m, const uint8_t *frame, size_t len)
{
    const gw_product *p = product_of(c);
    const char *secret = c->s.base.dev->secret;
    if (c->sv->login_code)
        return p->codec_ops->verify && p->codec_ops->verify(p, m, frame, len, secret) == 0;
    return gw_secret_check(secret, m->secret, strlen(m->secret));
}

static int handle_msg(gw__tcp_conn *c, gw_thing_msg *mp, const uint8_t *frame, size_t len);

/* Handles one whole frame. 0 to go on, -1 when the connection is closing. */
static int handle_frame(gw__tcp_conn *c, const uint8_t *frame, size_t len)
{
    const gw_product *p = product_of(c);
    gw_reject rej = {GW_R_NONE, ""};
    gw_thing_msg m;
    int rc;

    /* the frame's discriminator tells the kind; a report goes to the dispatcher, so the codec may
     * check it as it reads it (the binary codec: its payload text without a tree) */
    static const gw_decode_hint hint = {GW_MSG_NONE, NULL, true};

    memset(&m, 0, sizeof(m));
    gw_metric_inc(GW_M_TCP_FRAMES);
    if (p->codec_ops->decode(p, &hint, frame, len, &m, &rej) != 0) {
        rc = undecodable(c, &m, &rej);
        gw_thing_msg_clear(&m);
        return rc;
    }
    return handle_msg(c, &m, frame, len);
}

/* The handshake before any frame (Teltonika's IMEI): a login answered with the codec's ack. The
 * bytes consumed (0: more needed), GW_ENOTFOUND when the product has none, or -1 when the
 * connection is closing. */
static int handle_handshake(gw__tcp_conn *c, const uint8_t *buf, size_t len)
{
    const gw_product *p = product_of(c);
    gw_reject rej = {GW_R_NONE, ""};
    gw_thing_msg m;
    int n = p->codec_ops->handshake(p, buf, len, &m, &rej);
    if (n == GW_ENOTFOUND)
        return n;
    if (n == 0 && len > c->sv->max_frame)
        n = gw_reject_set(&rej, GW_R_MALFORMED_PAYLOAD, "no handshake within max_frame");
    if (n < 0) {
        gw_thing_msg_clear(&m);
        bad_stream(c, GW_M_TCP_BAD_UNDECODABLE, "bad_handshake", rej.detail);
        return -1;
    }
    if (n > 0 && handle_msg(c, &m, buf, (size_t)n) != 0)
        return -1;
    return n;
}

/* A decoded frame (m: cleared here). 0 to go on, -1 when the connection is closing. */
static int handle_msg(gw__tcp_conn *c, gw_thing_msg *m, const uint8_t *frame, size_t len)
{
    const gw_product *p = product_of(c);
    int rc = 0;
    bool fresh = c->s.state != GW_STREAM_OPEN;

    if (m->kind == GW_MSG_REGISTER) { /* before or after the login */
        rc = register_terminal(c, m);
        goto done;
    }
    if (c->s.state != GW_STREAM_OPEN) {
        if ((rc = authenticate(c, m, frame, len)) != 0 || m->kind == GW_MSG_LOGIN) {
            if (rc == 0)
                rc = ack_now(c, m, NULL);
            goto done;
        }
    } else if (c->sv->id_every_frame && strcmp(m->device_id, c->s.base.dev->id) != 0) {
        char q[96];
        gw_metric_inc(GW_M_TCP_BAD_DEVICE);
        LOG(GW_LOG_WARN, c, "frame names another device; closing", "device=%s",
            gw_log_quote(q, sizeof(q), m->device_id));
        gw_stream_close(&c->s, "protocol_error", false);
        rc = -1;
        goto done;
    } else if (m->auth_state && p->codec_ops->verify &&
               p->codec_ops->verify(p, m, frame, len, c->s.base.dev->secret) != 0) {
        /* a layout with a MAC: every frame carries one, not only the first */
        bad_stream(c, GW_M_TCP_BAD_AUTH, "bad_auth", "the frame's MAC does not verify");
        rc = -1;
        goto done;
    }
    refresh_deadline(c);
    switch (m->kind) {
    case GW_MSG_LOGIN: /* again, on a logged-in session: must be the same device and secret (not
                        * checked on a session its TLS identity logged in) */
        if (strcmp(m->device_id, c->s.base.dev->id) != 0 ||
            (!c->tls_login && p->auth_mode != GW_AUTH_DEVICE_ID &&
             !login_again_ok(c, m, frame, len))) {
            bad_stream(c, GW_M_TCP_BAD_DEVICE, "second_login", "login for another device");
            rc = -1;
        } else {
            rc = ack_now(c, m, NULL);
        }
        break;
    case GW_MSG_HEARTBEAT:
        rc = ack_now(c, m, NULL);
        break;
    default:
        rc = m->records ? ingest_records(c, m) : ingest(c, m);
        break;
    }
done:
    gw_thing_msg_clear(m);
    if (fresh && rc == 0 && c->s.state == GW_STREAM_OPEN) /* logged in: after the login's ack */
        gw_commands_ready(&c->s.base);
    return rc;
}

/* Cuts every whole frame out of buf with the product's codec. Returns the bytes consumed; stops
 * early (the rest is kept) when the connection closes or must pause. */
static size_t process(gw_stream_conn *sc, const uint8_t *buf, size_t len)
{
    gw__tcp_conn *c = (gw__tcp_conn *)sc;
    const gw_product *p = product_of(c);
    size_t off = 0;
    sc->in_need = 0;
    while (off < len && sc->state != GW_STREAM_CLOSING) {
        size_t skip = 0;
        /* before the login (an online event): a full store takes no new sessions */
        if (sc->state == GW_STREAM_NEW && gw_stream_hold(sc))
            break;
        if (sc->state == GW_STREAM_NEW && p->codec_ops->handshake) {
            int h = handle_handshake(c, buf + off, len - off);
            if (h != GW_ENOTFOUND) { /* the product's first bytes are a handshake */
                if (h <= 0)
                    break;
                off += (size_t)h;
                continue;
            }
        }
        int n = p->codec_ops->frame(p, buf + off, len - off, &skip);
        if (skip > len - off)
            skip = len - off;
        if (n == 0) {
            off += skip;
            if (len - off > c->sv->max_frame) /* never completes a frame within max_frame */
                bad_stream(c, GW_M_TCP_BAD_OVERSIZED, "oversized", "no frame within max_frame");
            break;
        }
        if (n == GW_ETOOBIG || (n > 0 && (uint32_t)n > c->sv->max_frame)) {
            bad_stream(c, GW_M_TCP_BAD_OVERSIZED, "oversized", "frame over max_frame");
            break;
        }
        if (n < 0 || (size_t)n > len - off - skip) {
            bad_stream(c, GW_M_TCP_BAD_GARBAGE, "garbage", "bytes that never become a frame");
            break;
        }
        if (sc->state == GW_STREAM_OPEN && gw_stream_hold(sc))
            break;
        off += skip;
        int rc = handle_frame(c, buf + off, (size_t)n);
        off += (size_t)n;
        if (rc != 0)
            break;
    }
    return off;
}

/* ---- commands ---- */

/* The session's command op: the product's codec encodes the command frame straight into the
 * connection's output (written at the end of the loop iteration). */
static int send_command(gw_session *base, const gw_command *cmd, gw_error *err)
{
    gw__tcp_conn *c = (gw__tcp_conn *)base;
    const gw_product *p = product_of(c);
    size_t cap = c->sv->max_frame, n = 0;
    if (c->s.state != GW_STREAM_OPEN)
        return gw_error_set(err, GW_ECLOSED, "the connection is closing");
    if (!p->codec_ops->encode_command)
        return gw_error_set(err, GW_EINVAL, "codec %s carries no commands", p->codec);
    if (gw_stream_out_reserve(&c->s, cap) != 0)
        return gw_error_set(err, GW_ENOMEM, "out of memory");
    int rc = p->codec_ops->encode_command(p, cmd, base->dev->id, base->dev->secret,
                                          c->s.out + c->s.out_len, cap, &n, err);
    if (rc != 0)
        return rc;
    c->s.out_len += (uint32_t)n;
    gw_session_mark_dirty(base);
    return 0;
}

/* ---- stream callbacks ---- */

static void opened(gw_stream_conn *sc)
{
    gw__tcp_conn *c = (gw__tcp_conn *)sc;
    const gw__tcp_adapter *ad = sc->sl->user;
    c->sv = sc->serve ? (const gw__tcp_serve *)sc->serve : &ad->serve[sc->listener];
    sc->deadline = uv_now(&sc->sl->loop->uv) + ad->cfg.login_timeout_ms;
    /* TLS: a client certificate the product accepts, or the PSK (the secret itself), logs the
     * device in now, without a login frame (one may still come: acknowledged, secret unchecked) */
    int by = GW_TLS_BY_NONE;
    const char *tid = gw_stream_tls_identity(sc, &by);
    if (!tid)
        return;
    const gw_product *p = product_of(c);
    const gw_device *dev = gw_config_device(gw_stream_cfg(sc), tid);
    char q[96];
    if (!dev || dev->product != p) {
        gw_metric_inc(GW_M_TCP_LOGIN_UNKNOWN);
        gw_stream_auth_failed(sc);
        LOG(GW_LOG_WARN, c, "TLS identity is no device of this listener's product; closing",
            "reason=unknown_device device=%s", gw_log_quote(q, sizeof(q), tid));
        gw_stream_close(sc, "refused", false);
        return;
    }
    bool enough =
        by == GW_TLS_BY_CERT ? p->auth_mode != GW_AUTH_SECRET : p->auth_mode != GW_AUTH_CERT;
    if (!enough) /* a login frame follows (with the secret; or refused: certificate_required) */
        return;
    if (gw_stream_hold(sc)) { /* a full store: the session (its online event) waits for it, the
                                 login clock stopped; opened() runs again at the resume */
        sc->open_held = true;
        return;
    }
    c->tls_login = true;
    if (login_as(c, dev) == 0 && c->s.state == GW_STREAM_OPEN)
        gw_commands_ready(&c->s.base);
}

/* The login or idle deadline passed. A partial frame still buffered then is a frame that never
 * completed: counted as a bad frame too. */
static void expired(gw_stream_conn *sc)
{
    gw__tcp_conn *c = (gw__tcp_conn *)sc;
    if (sc->in_len) {
        gw_metric_inc(GW_M_TCP_BAD_INCOMPLETE);
        LOG(GW_LOG_WARN, c, "frame never completed", "reason=incomplete buffered=%u", sc->in_len);
    }
    if (sc->state == GW_STREAM_NEW) {
        gw_metric_inc(GW_M_TCP_LOGIN_TIMEOUT);
        LOG(GW_LOG_INFO, c, "no login in time; closing", "login_timeout_ms=%u",
            cfg_of(c)->login_timeout_ms);
        gw_stream_close(sc, "login_timeout", false);
    } else {
        gw_metric_inc(GW_M_TCP_IDLE);
        LOG(GW_LOG_INFO, c, "idle timeout; closing", "idle_timeout_ms=%u", c->sv->idle_ms);
        gw_stream_close(sc, "idle_timeout", false);
    }
}

const gw_stream_ops gw__tcp_stream_ops = {
    .session = GW_STREAM_SESSION_OPS("tcp", send_command),
    .conn_size = sizeof(gw__tcp_conn),
    .opened = opened,
    .process = process,
    .expired = expired,
};

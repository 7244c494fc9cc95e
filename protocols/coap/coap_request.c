/* coap_request.c: one datagram's path: parse, deduplicate by message id, classify the request,
 * find product and device, authenticate (?token= on plain CoAP), check the Content-Format,
 * reassemble Block1 within its bounds, refuse while the store is full (5.03), decode with the
 * product's codec and dispatch; the answer goes out after the commit (coap_session.c). */
#include "coap_internal.h"

#include <stdio.h>
#include <string.h>

#include "../../gateway/util/alloc.h"
#include "../../gateway/util/auth.h"
#include "../../gateway/core/codec.h"
#include "../../gateway/command/command.h"
#include "../../gateway/core/dispatch.h"
#include "../../gateway/core/listen.h"
#include "../../gateway/util/log.h"
#include "../../gateway/util/metrics.h"

#define BLOCK_IDLE_MS                                                                              \
    93000 /* RFC 7252 MAX_TRANSMIT_WAIT: a transfer silent this long is dropped                    \
           */

/* Extras of an answer decided on the spot. */
typedef struct imm {
    uint32_t max_age, size1, block1;
    bool has_max_age, has_size1, has_block1;
    const char *diag; /* 4.xx diagnostic payload (text/plain) */
} imm;

/* Answers a request at once (ACK for a CON, NON for a NON) and remembers the answer. */
static void answer_now(gw__coap_sock *sock, const struct sockaddr *from, const gw_coap_msg *m,
                       uint8_t code, const imm *e)
{
    gw__coap_loop *cl = sock->cl;
    gw_coap_out o;
    uint8_t type = m->type == GW_COAP_CON ? GW_COAP_ACK : GW_COAP_NON;
    uint16_t mid = type == GW_COAP_ACK ? m->mid : gw__coap_mid(cl);
    gw_dgram_addr to;

    bool diag = e && e->diag && *e->diag;
    gw_coap_out_begin(&o, cl->out, cl->out_cap, type, code, mid, m->token, m->tkl);
    if (diag) /* options in ascending number order */
        gw_coap_out_opt_uint(&o, GW_COAP_OPT_CONTENT_FORMAT, 0); /* text/plain */
    if (e && e->has_max_age)
        gw_coap_out_opt_uint(&o, GW_COAP_OPT_MAX_AGE, e->max_age);
    if (e && e->has_block1)
        gw_coap_out_opt_uint(&o, GW_COAP_OPT_BLOCK1, e->block1);
    if (e && e->has_size1)
        gw_coap_out_opt_uint(&o, GW_COAP_OPT_SIZE1, e->size1);
    if (diag)
        gw_coap_out_payload(&o, e->diag, strlen(e->diag));
    if (o.err) /* cannot happen with the loop's buffer: answer the bare code */
        gw_coap_out_begin(&o, cl->out, cl->out_cap, type, code, mid, m->token, m->tkl);
    gw__coap_count_response(code);
    gw_dgram_addr_set(&to, from);
    gw__coap_dedup *d = gw__coap_dedup_slot(cl, from, m->mid);
    if (d)
        gw__coap_dedup_keep(d, o.buf, o.len);
    gw__coap_send(sock, &to, o.buf, o.len);
}

/* Logs (rate-limited) and answers a refused request; every refusal is counted by its code. */
static void refuse(gw__coap_sock *sock, const struct sockaddr *from, const gw_coap_msg *m,
                   uint8_t code, const char *dev, const char *reason, const char *detail,
                   const imm *e)
{
    imm ex = e ? *e : (imm){0};
    if (!ex.diag && detail)
        ex.diag = detail;
    if (GW_LOG_WARN >= gw_log_level) { /* dev (from the URI) is quoted by gw_log_write */
        char peer[64], c[8], q2[256];
        gw_sockaddr_str(from, peer, sizeof(peer));
        gw_coap_code_str(code, c);
        gw_log_write(GW_LOG_WARN, "coap", dev && *dev ? dev : NULL, peer, "request refused",
                     "reason=%s code=%s detail=%s", reason, c,
                     gw_log_quote(q2, sizeof(q2), detail ? detail : ""));
    }
    answer_now(sock, from, m, code, &ex);
}

static void send_rst(gw__coap_sock *sock, const struct sockaddr *from, uint16_t mid)
{
    uint8_t b[4] = {0x70, 0, (uint8_t)(mid >> 8), (uint8_t)mid};
    gw_dgram_addr to;
    gw_dgram_addr_set(&to, from);
    gw__coap_send(sock, &to, b, 4);
}

/* ---- Block1 transfers ---- */

static void block_free(gw__coap_loop *cl, gw__coap_block *b)
{
    for (gw__coap_block **pp = &cl->blocks; *pp; pp = &(*pp)->next) {
        if (*pp == b) {
            *pp = b->next;
            break;
        }
    }
    __atomic_fetch_sub(&cl->ad->block_total, (int64_t)b->cap, __ATOMIC_RELAXED);
    gw_free(GW_AREA_SESSION, b->buf);
    gw_free(GW_AREA_SESSION, b);
}

void gw__coap_blocks_free(gw__coap_loop *cl, bool all)
{
    uint64_t now = uv_now(&cl->dl.loop->uv);
    gw__coap_block *b = cl->blocks, *next;
    for (; b; b = next) {
        next = b->next;
        if (all || now - b->last >= BLOCK_IDLE_MS)
            block_free(cl, b);
    }
}

static gw__coap_block *block_find(gw__coap_loop *cl, const struct sockaddr *from)
{
    for (gw__coap_block *b = cl->blocks; b; b = b->next)
        if (gw_dgram_addr_equal(&b->addr, from))
            return b;
    return NULL;
}

/* One Block1 block. Returns 0 when the transfer is complete (*bp holds it), 1 when more blocks
 * are expected (answered 2.31), -1 when refused (answered). */
static int block1(gw__coap_sock *sock, const struct sockaddr *from, const gw_coap_msg *m,
                  const gw_coap_req *r, const char *path, gw__coap_block **bp)
{
    gw__coap_loop *cl = sock->cl;
    gw__coap_adapter *ad = cl->ad;
    gw__coap_block *b = block_find(cl, from);
    size_t total = 0;
    char detail[128];
    imm e = {0};

    if (b && (r->b1_num == 0 || strcmp(b->path, path) != 0)) {
        block_free(cl, b); /* a new transfer replaces the peer's previous one */
        b = NULL;
    }
    int rc = gw_coap_block1_check(b ? b->len : 0, r->b1_num, r->b1_szx, m->payload_len, r->b1_more,
                                  ad->cfg.max_block_bytes, &total);
    if (rc == 0 && !b) {
        b = gw_calloc(GW_AREA_SESSION, 1, sizeof(*b));
        if (!b) {
            refuse(sock, from, m, GW_COAP_INTERNAL, r->device, "no_memory", NULL, NULL);
            return -1;
        }
        gw_dgram_addr_set(&b->addr, from);
        snprintf(b->path, sizeof(b->path), "%s", path);
        b->next = cl->blocks;
        cl->blocks = b;
    }
    if (rc == 0 && total > b->cap) {
        size_t cap = b->cap ? b->cap : 1024;
        while (cap < total)
            cap *= 2;
        if (cap > ad->cfg.max_block_bytes)
            cap = ad->cfg.max_block_bytes;
        int64_t grow = (int64_t)(cap - b->cap);
        int64_t now = __atomic_add_fetch(&ad->block_total, grow, __ATOMIC_RELAXED);
        uint8_t *nb =
            now <= ad->cfg.max_block_total ? gw_realloc(GW_AREA_SESSION, b->buf, cap) : NULL;
        if (!nb) {
            __atomic_fetch_sub(&ad->block_total, grow, __ATOMIC_RELAXED);
            gw_metric_inc(GW_M_COAP_BLOCK_REFUSED);
            block_free(cl, b);
            e.has_size1 = true;
            e.size1 = ad->cfg.max_block_bytes;
            refuse(sock, from, m, GW_COAP_TOO_LARGE, r->device, "block_total",
                   "reassembly memory of the gateway is exhausted; retry later", &e);
            return -1;
        }
        b->buf = nb;
        b->cap = cap;
    }
    if (rc == GW_ETOOBIG) {
        gw_metric_inc(GW_M_COAP_BLOCK_REFUSED);
        if (b)
            block_free(cl, b);
        e.has_size1 = true;
        e.size1 = ad->cfg.max_block_bytes;
        snprintf(detail, sizeof(detail), "payload over max_block_bytes %u",
                 ad->cfg.max_block_bytes);
        refuse(sock, from, m, GW_COAP_TOO_LARGE, r->device, "too_large", detail, &e);
        return -1;
    }
    if (rc != 0) {
        if (b)
            block_free(cl, b);
        snprintf(detail, sizeof(detail), "block %u %s", r->b1_num,
                 rc == GW_EINCOMPLETE ? "out of order" : "has the wrong size");
        refuse(sock, from, m, rc == GW_EINCOMPLETE ? GW_COAP_INCOMPLETE : GW_COAP_BAD_REQUEST,
               r->device, "block1", detail, NULL);
        return -1;
    }
    if (m->payload_len) /* a last block may be empty */
        memcpy(b->buf + b->len, m->payload, m->payload_len);
    b->len = total;
    b->last = uv_now(&cl->dl.loop->uv);
    if (r->b1_more) {
        e.has_block1 = true;
        e.block1 = gw_coap_block1_value(r->b1_num, true, r->b1_szx);
        answer_now(sock, from, m, GW_COAP_CONTINUE, &e);
        return 1;
    }
    *bp = b;
    return 0;
}

/* ---- the request ---- */

static const gw_event_spec *find_event(const gw_product *p, const char *id)
{
    for (size_t i = 0; i < p->n_events; i++)
        if (strcmp(p->events[i].id, id) == 0)
            return &p->events[i];
    return NULL;
}

static gw_msg_kind kind_of(gw_coap_res res)
{
    switch (res) {
    case GW_COAP_RES_REPORT:
        return GW_MSG_PROPERTY_REPORT;
    case GW_COAP_RES_EVENT:
        return GW_MSG_EVENT;
    case GW_COAP_RES_INVOKE_REPLY:
        return GW_MSG_FUNCTION_REPLY;
    case GW_COAP_RES_WRITE_REPLY:
        return GW_MSG_WRITE_REPLY;
    default:
        return GW_MSG_NONE;
    }
}

/* Product, device, credentials. The device or NULL (refused and answered). */
static const gw_device *authenticate(gw__coap_sock *sock, const struct sockaddr *from,
                                     const gw_coap_msg *m, const gw_coap_req *r,
                                     const gw_device *psk_dev)
{
    const gw_config *cfg = sock->cl->dl.loop->cfg;
    const gw_device *dev = gw_config_device(cfg, r->device);
    /* the device names its product: one look-up less when the URI agrees with it */
    const gw_product *p = dev && strcmp(dev->product->id, r->product) == 0
                              ? dev->product
                              : gw_config_product(cfg, r->product);
    if (!p || !p->protocol || strcmp(p->protocol, "coap") != 0) {
        gw_metric_inc(GW_M_COAP_AUTH_UNKNOWN);
        refuse(sock, from, m, GW_COAP_NOT_FOUND, r->device, "unknown_product", "unknown product",
               NULL);
        return NULL;
    }
    if (!dev || dev->product != p) {
        gw_metric_inc(GW_M_COAP_AUTH_UNKNOWN);
        refuse(sock, from, m, GW_COAP_NOT_FOUND, r->device, "unknown_device", "unknown device",
               NULL);
        return NULL;
    }
    if (psk_dev) { /* DTLS: the session's PSK identity is the device; ?token= is not needed */
        if (psk_dev == dev)
            return dev;
        gw_metric_inc(GW_M_COAP_AUTH_BAD);
        refuse(sock, from, m, GW_COAP_UNAUTHORIZED, r->device, "identity_mismatch",
               "the DTLS identity is another device", NULL);
        return NULL;
    }
    const gw__coap_product *cp = p->adapter_data; /* NULL: a product built without the loader */
    if (cp && !cp->query_token) {
        gw_metric_inc(GW_M_COAP_AUTH_BAD);
        refuse(sock, from, m, GW_COAP_UNAUTHORIZED, r->device, "query_token_disabled",
               "this product accepts DTLS-PSK only", NULL);
        return NULL;
    }
    if (!r->has_token || !gw_secret_check(dev->secret, r->token, r->token_len)) {
        gw_metric_inc(GW_M_COAP_AUTH_BAD);
        refuse(sock, from, m, GW_COAP_UNAUTHORIZED, r->device, "bad_token",
               r->has_token ? "wrong token" : "missing ?token=", NULL);
        return NULL;
    }
    return dev;
}

/* The device's session on this loop (opened, or moved to this source address). */
static gw__coap_sess *session(gw__coap_sock *sock, const gw_device *dev,
                              const struct sockaddr *from, bool *opened)
{
    gw__coap_loop *cl = sock->cl;
    gw__coap_sess *s = gw__coap_sess_find(cl, dev->index);
    *opened = !s;
    if (!s)
        s = gw__coap_sess_open(cl, sock, dev, from);
    else if (!gw_dgram_sess_at(&s->d, &sock->d, from))
        gw_dgram_sess_move(&s->d, &sock->d, from);
    if (s)
        gw_dgram_sess_touch(&s->d);
    return s;
}

/* The store queue is full: 5.03 with Max-Age (back-pressure for CoAP). True if answered so. */
static bool refuse_if_busy(gw__coap_sock *sock, const struct sockaddr *from, const gw_coap_msg *m,
                           const gw_device *dev, imm *e)
{
    gw__coap_loop *cl = sock->cl;
    if (!gw_store_full(cl->dl.loop->rt->store))
        return false;
    gw_loop_note_backpressure(cl->dl.loop);
    gw_metric_inc(GW_M_COAP_BUSY);
    e->has_max_age = true;
    e->max_age = cl->ad->cfg.busy_max_age_s;
    refuse(sock, from, m, GW_COAP_UNAVAILABLE, dev->id, "store_full",
           "the gateway is busy; retry after Max-Age", e);
    return true;
}

static void handle(gw__coap_sock *sock, const struct sockaddr *from, const gw_coap_msg *m,
                   const gw_coap_req *r, const gw_device *psk_dev)
{
    gw__coap_loop *cl = sock->cl;
    gw__coap_adapter *ad = cl->ad;
    gw_reject rej = {GW_R_NONE, ""};
    char detail[160], path[200];
    imm e = {0};
    gw__coap_sess *s = NULL;    /* retained once found: released at done */
    gw__coap_block *blk = NULL; /* a completed Block1 body: freed at done */

    const gw_device *dev = authenticate(sock, from, m, r, psk_dev);
    if (!dev)
        goto done;
    const gw_product *p = dev->product;
    if (r->res == GW_COAP_RES_EVENT && !find_event(p, r->event)) {
        gw_metric_reject(GW_R_UNKNOWN_EVENT);
        snprintf(detail, sizeof(detail), "unknown event \"%.64s\"", r->event);
        refuse(sock, from, m, GW_COAP_NOT_FOUND, dev->id, "unknown_event", detail, NULL);
        goto done;
    }
    if (r->res != GW_COAP_RES_INVOKE && !gw_coap_codec_accepts(p->codec, r->content_format)) {
        snprintf(detail, sizeof(detail), "Content-Format %d; codec %s takes %d", r->content_format,
                 p->codec, gw_coap_codec_format(p->codec));
        refuse(sock, from, m, GW_COAP_UNSUPPORTED_CF, dev->id, "content_format", detail, NULL);
        goto done;
    }
    /* A busy gateway opens no session: its online event would only add to the full queue. */
    if (r->res != GW_COAP_RES_INVOKE && !gw__coap_sess_find(cl, dev->index) &&
        refuse_if_busy(sock, from, m, dev, &e))
        goto done;
    bool opened;
    s = session(sock, dev, from, &opened);
    if (!s) {
        refuse(sock, from, m, GW_COAP_INTERNAL, dev->id, "no_memory", NULL, NULL);
        goto done;
    }
    gw_session_retain(&s->d.base); /* gw_commands_ready may end it */
    if (opened && !s->d.closing)
        gw_commands_ready(&s->d.base); /* queued commands ride on responses (or notifications) */
    if (r->res == GW_COAP_RES_INVOKE) {
        gw__coap_xchg *x = gw__coap_xchg_new(cl, s);
        if (x) {
            x->sock = sock;
            gw_dgram_addr_set(&x->addr, from);
            x->req_type = m->type;
            x->mid = m->mid;
            x->tkl = m->tkl;
            memcpy(x->token, m->token, m->tkl);
            gw__coap_dedup_slot(cl, from, m->mid);
            gw__coap_observe(s, x, r);
        }
        goto done;
    }

    const uint8_t *payload = m->payload;
    size_t len = m->payload_len;
    if (r->has_size1 && r->size1 > ad->cfg.max_block_bytes) { /* announced too large */
        gw_metric_inc(GW_M_COAP_BLOCK_REFUSED);
        e.has_size1 = true;
        e.size1 = ad->cfg.max_block_bytes;
        snprintf(detail, sizeof(detail), "Size1 %u over max_block_bytes %u", r->size1,
                 ad->cfg.max_block_bytes);
        refuse(sock, from, m, GW_COAP_TOO_LARGE, dev->id, "too_large", detail, &e);
        goto done;
    }
    if (r->has_block1) {
        snprintf(path, sizeof(path), "%s/%s/%d/%s", r->product, r->device, (int)r->res, r->event);
        int rc = block1(sock, from, m, r, path, &blk);
        if (rc != 0)
            goto done;
        payload = blk->len ? blk->buf : (const uint8_t *)"";
        len = blk->len;
        e.has_block1 = true;
        e.block1 = gw_coap_block1_value(r->b1_num, false, r->b1_szx);
    } else if (len > ad->cfg.max_block_bytes) {
        gw_metric_inc(GW_M_COAP_BLOCK_REFUSED);
        e.has_size1 = true;
        e.size1 = ad->cfg.max_block_bytes;
        snprintf(detail, sizeof(detail), "payload of %zu bytes over max_block_bytes %u", len,
                 ad->cfg.max_block_bytes);
        refuse(sock, from, m, GW_COAP_TOO_LARGE, dev->id, "too_large", detail, &e);
        goto done;
    }

    if (refuse_if_busy(sock, from, m, dev, &e))
        goto done;

    gw_thing_msg msg;
    gw_decode_hint hint = {kind_of(r->res), r->res == GW_COAP_RES_EVENT ? r->event : NULL, true};
    memset(&msg, 0, sizeof(msg));
    gw_metric_inc(GW_M_MSG_RECEIVED);
    int rc = p->codec_ops->decode(p, &hint, payload, len, &msg, &rej);
    if (blk)
        block_free(cl, blk);
    blk = NULL;
    if (rc != 0) {
        gw_dispatch_rejected(&s->d.base, &rej, msg.msg_id);
        gw_thing_msg_clear(&msg);
        answer_now(sock, from, m, GW_COAP_BAD_REQUEST,
                   &(imm){.diag = rej.detail, .has_block1 = e.has_block1, .block1 = e.block1});
        goto done;
    }

    gw__coap_xchg *x = gw__coap_xchg_new(cl, s);
    if (!x) {
        gw_thing_msg_clear(&msg);
        answer_now(sock, from, m, GW_COAP_INTERNAL, NULL);
        goto done;
    }
    x->sock = sock;
    gw_dgram_addr_set(&x->addr, from);
    x->req_type = m->type;
    x->mid = m->mid;
    x->tkl = m->tkl;
    memcpy(x->token, m->token, m->tkl);
    x->has_block1 = e.has_block1;
    x->block1 = e.block1;
    x->report = r->res == GW_COAP_RES_REPORT;
    x->wait_s = r->has_wait ? (r->wait_s < ad->cfg.max_wait_s ? r->wait_s : ad->cfg.max_wait_s) : 0;
    x->ack_deadline = uv_now(&cl->dl.loop->uv) + ad->cfg.piggyback_ms;
    gw__coap_dedup *d = gw__coap_dedup_slot(cl, from, m->mid);
    if (d) {
        d->x = x;
        x->dd = d;
    }
    uint32_t token = cl->next_ev_token++;
    gw__coap_xchg_await(x, token);
    rc = gw_dispatch_message(&s->d.base, &msg, token, true, &rej);
    gw_thing_msg_clear(&msg);
    if (rc != 0) {
        const char *diag = rc == GW_EINVAL ? rej.detail : gw_strerror(rc);
        gw__coap_xchg_answer(x, rc == GW_EINVAL ? GW_COAP_BAD_REQUEST : GW_COAP_INTERNAL, 0,
                             (const uint8_t *)diag, strlen(diag));
    }
done:
    if (blk)
        block_free(cl, blk);
    if (s)
        gw_session_release(&s->d.base);
}

void gw__coap_request(gw__coap_sock *sock, const uint8_t *buf, size_t len,
                      const struct sockaddr *from, bool truncated, const gw_device *psk_dev)
{
    gw__coap_loop *cl = sock->cl;
    gw_coap_msg m;
    gw_coap_req r;

    int rc = gw_coap_parse(buf, len, &m);
    if (rc == GW_EINCOMPLETE || rc == GW_EPROTO) {
        gw_metric_inc(GW_M_COAP_MALFORMED);
        if (GW_LOG_WARN >= gw_log_level) {
            char peer[64];
            gw_sockaddr_str(from, peer, sizeof(peer));
            gw_log_write(GW_LOG_WARN, "coap", NULL, peer, "datagram dropped",
                         "reason=malformed bytes=%zu detail=\"%s\"", len,
                         rc == GW_EINCOMPLETE ? "not a CoAP version 1 message"
                                              : "message format error (RFC 7252 3)");
        }
        if (rc == GW_EPROTO && m.type == GW_COAP_CON)
            send_rst(sock, from, m.mid); /* RFC 7252 4.2: a format error is rejected */
        return;
    }
    if (m.type == GW_COAP_ACK || m.type == GW_COAP_RST) {
        gw__coap_on_ack(cl, &m, from);
        return;
    }
    if (m.code == GW_COAP_EMPTY || (m.code >> 5) != 0) {
        if (m.type == GW_COAP_CON)
            send_rst(sock, from, m.mid); /* CoAP ping, or a response we did not ask for */
        return;
    }
    gw_metric_inc(GW_M_COAP_REQUESTS);
    gw__coap_dedup *d = gw__coap_dedup_find(cl, from, m.mid);
    if (d) {
        gw_metric_inc(GW_M_COAP_DEDUP);
        if (d->x && !d->x->acked && d->x->req_type == GW_COAP_CON)
            gw__coap_xchg_ack_empty(d->x); /* still committing: the answer comes separately */
        else if (d->resp_len)
            gw__coap_send(sock, &d->addr, gw__coap_dedup_resp(d), d->resp_len);
        return;
    }
    if (truncated) {
        imm e = {.has_size1 = true, .size1 = cl->ad->cfg.max_block_bytes};
        gw_metric_inc(GW_M_COAP_BLOCK_REFUSED);
        refuse(sock, from, &m, GW_COAP_TOO_LARGE, NULL, "too_large", "datagram truncated", &e);
        return;
    }
    if (rc == GW_ETOOBIG) {
        refuse(sock, from, &m, GW_COAP_BAD_REQUEST, NULL, "too_many_options", "too many options",
               NULL);
        return;
    }
    rc = gw_coap_request_parse(&m, &r);
    if (rc != 0) {
        char detail[64];
        if (r.refuse == GW_COAP_BAD_OPTION)
            snprintf(detail, sizeof(detail), "unrecognised critical option %u", r.bad_option);
        else
            snprintf(detail, sizeof(detail), "%s",
                     r.refuse == GW_COAP_NOT_FOUND     ? "no such resource"
                     : r.refuse == GW_COAP_NOT_ALLOWED ? "method not allowed on this resource"
                                                       : "bad request");
        refuse(sock, from, &m, r.refuse, r.device, "bad_request", detail, NULL);
        return;
    }
    handle(sock, from, &m, &r, psk_dev);
}

/* coap_session.c: what the CoAP session adds to a datagram session (protocols/dgram/): its
 * exchanges and observer closed with it; sending, the message-id dedup cache, and exchanges:
 * answers after the commit piggybacked in the ACK or sent as separate CON responses, retransmitted
 * until acked. */
#include "coap_internal.h"

#include <stdio.h>
#include <string.h>

#include "../../gateway/util/alloc.h"
#include "../../gateway/core/dgram.h"
#include "../../gateway/command/command.h"
#include "../../gateway/core/listen.h"
#include "../../gateway/util/log.h"
#include "../../gateway/util/metrics.h"

static gw__coap_sess *sess_of(gw_session *s)
{
    return (gw__coap_sess *)s;
}

void gw__coap_count_response(uint8_t code)
{
    gw_metric m;
    switch (code) {
    case GW_COAP_CHANGED:
        m = GW_M_COAP_R_204;
        break;
    case GW_COAP_CONTENT:
        m = GW_M_COAP_R_205;
        break;
    case GW_COAP_CONTINUE:
        m = GW_M_COAP_R_231;
        break;
    case GW_COAP_BAD_REQUEST:
        m = GW_M_COAP_R_400;
        break;
    case GW_COAP_UNAUTHORIZED:
        m = GW_M_COAP_R_401;
        break;
    case GW_COAP_BAD_OPTION:
        m = GW_M_COAP_R_402;
        break;
    case GW_COAP_NOT_FOUND:
        m = GW_M_COAP_R_404;
        break;
    case GW_COAP_NOT_ALLOWED:
        m = GW_M_COAP_R_405;
        break;
    case GW_COAP_INCOMPLETE:
        m = GW_M_COAP_R_408;
        break;
    case GW_COAP_TOO_LARGE:
        m = GW_M_COAP_R_413;
        break;
    case GW_COAP_UNSUPPORTED_CF:
        m = GW_M_COAP_R_415;
        break;
    case GW_COAP_UNAVAILABLE:
        m = GW_M_COAP_R_503;
        break;
    default:
        m = GW_M_COAP_R_500;
        break;
    }
    gw_metric_inc(m);
}

/* ---- sending ---- */

void gw__coap_send(gw__coap_sock *sock, const gw_dgram_addr *to, const uint8_t *p, size_t n)
{
    if (sock && sock->dtls) {
        gw__coap_dtls_send(sock, to, p, n); /* no session (any more): nothing to answer */
        return;
    }
    gw__coap_send_raw(sock, to, p, n);
}

void gw__coap_send_raw(gw__coap_sock *sock, const gw_dgram_addr *to, const uint8_t *p, size_t n)
{
    gw_dgram_sock_send(sock ? &sock->d : NULL, to, p, n);
}

uint16_t gw__coap_mid(gw__coap_loop *cl)
{
    return cl->next_mid++;
}

/* ---- dedup cache ---- */

static uint32_t dedup_hash(const struct sockaddr *sa, uint16_t mid)
{
    return gw_dgram_addr_hash(sa, mid);
}

gw__coap_dedup *gw__coap_dedup_find(gw__coap_loop *cl, const struct sockaddr *from, uint16_t mid)
{
    gw__coap_dedup *d = &cl->dedup[dedup_hash(from, mid) & (cl->dedup_cap - 1)];
    if (!d->expires || d->mid != mid || !gw_dgram_addr_equal(&d->addr, from))
        return NULL;
    if (!d->x && d->expires <= uv_now(&cl->dl.loop->uv))
        return NULL;
    return d;
}

void gw__coap_dedup_drop(gw__coap_dedup *d)
{
    if (d->resp_len > GW__COAP_DEDUP_INLINE)
        gw_free(GW_AREA_SESSION, d->resp.heap);
    d->resp_len = 0;
}

/* A slot for a new id: an older id's entry there is forgotten (unless still pending: then the new
 * id is not remembered, NULL). */
gw__coap_dedup *gw__coap_dedup_slot(gw__coap_loop *cl, const struct sockaddr *from, uint16_t mid)
{
    gw__coap_dedup *d = &cl->dedup[dedup_hash(from, mid) & (cl->dedup_cap - 1)];
    if (d->expires && d->x)
        return NULL;
    gw__coap_dedup_drop(d);
    d->mid = mid;
    d->x = NULL;
    gw_dgram_addr_set(&d->addr, from);
    d->expires = uv_now(&cl->dl.loop->uv) + GW_COAP_EXCH_LIFE_MS;
    return d;
}

void gw__coap_dedup_keep(gw__coap_dedup *d, const uint8_t *p, size_t n)
{
    d->x = NULL;
    gw__coap_dedup_drop(d);
    if (n > UINT16_MAX)
        return;
    if (n > GW__COAP_DEDUP_INLINE) {
        d->resp.heap = gw_malloc(GW_AREA_SESSION, n);
        if (!d->resp.heap)
            return;
        memcpy(d->resp.heap, p, n);
    } else if (n) {
        memcpy(d->resp.inl, p, n);
    }
    d->resp_len = (uint16_t)n;
}

void gw__coap_dedup_store(gw__coap_loop *cl, const gw_dgram_addr *addr, uint16_t mid,
                          const uint8_t *p, size_t n)
{
    gw__coap_dedup *d = gw__coap_dedup_find(cl, &addr->sa, mid);
    if (d)
        gw__coap_dedup_keep(d, p, n);
}

/* ---- exchanges ---- */

gw__coap_dedup *gw__coap_xchg_dedup(gw__coap_xchg *x)
{
    if (x->dd && x->dd->x == x)
        return x->dd;
    return gw__coap_dedup_find(x->cl, &x->addr.sa, x->mid);
}

/* What a CON kept for retransmission counts against max_con_bytes: its copy and its exchange. */
static size_t con_cost(size_t n)
{
    return n + sizeof(gw__coap_xchg);
}

gw__coap_xchg *gw__coap_xchg_new(gw__coap_loop *cl, gw__coap_sess *s)
{
    gw__coap_xchg *x = gw_calloc(GW_AREA_SESSION, 1, sizeof(*x));
    if (!x)
        return NULL;
    x->cl = cl;
    x->s = s;
    if (s)
        gw_session_retain(&s->d.base);
    x->next = cl->xchgs;
    if (cl->xchgs)
        cl->xchgs->prev = x;
    cl->xchgs = x;
    return x;
}

static gw__coap_xchg **token_bucket(gw__coap_loop *cl, uint32_t t)
{
    return &cl->tokens[t & (sizeof(cl->tokens) / sizeof(cl->tokens[0]) - 1)];
}

void gw__coap_xchg_await(gw__coap_xchg *x, uint32_t ev_token)
{
    gw__coap_xchg **b = token_bucket(x->cl, ev_token);
    x->ev_token = ev_token;
    x->tnext = *b;
    *b = x;
    x->in_tokens = true;
}

static void token_remove(gw__coap_xchg *x)
{
    if (!x->in_tokens)
        return;
    for (gw__coap_xchg **pp = token_bucket(x->cl, x->ev_token); *pp; pp = &(*pp)->tnext) {
        if (*pp == x) {
            *pp = x->tnext;
            break;
        }
    }
    x->in_tokens = false;
}

void gw__coap_xchg_free(gw__coap_xchg *x)
{
    gw__coap_loop *cl = x->cl;
    token_remove(x);
    if (x->prev)
        x->prev->next = x->next;
    else
        cl->xchgs = x->next;
    if (x->next)
        x->next->prev = x->prev;
    if (x->dd && x->dd->x == x) /* still pending there: a duplicate now counts as new */
        x->dd->x = NULL;
    if (x->out) {
        if (x->s)
            x->s->n_con--;
        cl->con_bytes -= con_cost(x->out_len);
    }
    gw_free(GW_AREA_OUTPUT, x->out);
    if (x->s)
        gw_session_release(&x->s->d.base);
    gw_free(GW_AREA_SESSION, x);
}

/* A CON that goes out once, without a copy: a device that never ACKs cannot pile up
 * retransmission state past GW_COAP_CON_MAX per session or max_con_bytes per loop. */
static void con_untracked(gw__coap_xchg *x, const uint8_t *p, size_t n, const char *bound)
{
    gw__coap_loop *cl = x->cl;
    gw_metric_inc(GW_M_COAP_CON_UNTRACKED);
    if (GW_LOG_WARN >= gw_log_level) {
        char peer[64];
        gw_sockaddr_str(&x->addr.sa, peer, sizeof(peer));
        gw_log_write(GW_LOG_WARN, "coap", x->s ? x->s->d.base.dev->id : NULL, peer,
                     "CON sent once, not kept for retransmission",
                     "reason=output_overflow bound=%s con_bytes=%zu", bound, cl->con_bytes);
    }
    gw__coap_send(x->sock, &x->addr, p, n);
    gw__coap_xchg_free(x);
}

void gw__coap_send_con(gw__coap_xchg *x, const uint8_t *p, size_t n)
{
    gw__coap_loop *cl = x->cl;
    x->state = GW__X_CONFIRM;
    token_remove(x);
    if (x->s && x->s->n_con >= GW_COAP_CON_MAX) {
        con_untracked(x, p, n, "session");
        return;
    }
    if (cl->con_bytes + con_cost(n) > cl->ad->cfg.max_con_bytes) {
        con_untracked(x, p, n, "loop");
        return;
    }
    x->out = gw_malloc(GW_AREA_OUTPUT, n);
    if (!x->out) {
        gw__coap_send(x->sock, &x->addr, p, n); /* once, untracked */
        gw__coap_xchg_free(x);
        return;
    }
    memcpy(x->out, p, n);
    x->out_len = (uint16_t)n;
    cl->con_bytes += con_cost(n);
    if (x->s)
        x->s->n_con++;
    x->retries = 0;
    /* ACK_TIMEOUT with a random factor in [1, 1.5) */
    x->rexmit_ms = GW_COAP_ACK_TIMEOUT + (unsigned)(uv_hrtime() % (GW_COAP_ACK_TIMEOUT / 2));
    x->rexmit_at = uv_now(&x->cl->dl.loop->uv) + x->rexmit_ms;
    gw__coap_send(x->sock, &x->addr, p, n);
}

void gw__coap_xchg_answer(gw__coap_xchg *x, uint8_t code, int cf, const uint8_t *payload, size_t n)
{
    gw__coap_loop *cl = x->cl;
    gw_coap_out o;
    bool con = x->acked && x->req_type == GW_COAP_CON;
    uint8_t type = x->req_type == GW_COAP_NON ? GW_COAP_NON : con ? GW_COAP_CON : GW_COAP_ACK;
    uint16_t mid = type == GW_COAP_ACK ? x->mid : gw__coap_mid(cl);
    gw__coap_dedup *d = gw__coap_xchg_dedup(x);

    if (!x->notify && d && d->x == x)
        d->x = NULL; /* answered: a duplicate gets the stored answer (or the empty ACK) */
    gw_coap_out_begin(&o, cl->out, cl->out_cap, type, code, mid, x->token, x->tkl);
    if (n && cf >= 0)
        gw_coap_out_opt_uint(&o, GW_COAP_OPT_CONTENT_FORMAT, (uint32_t)cf);
    if (x->has_block1)
        gw_coap_out_opt_uint(&o, GW_COAP_OPT_BLOCK1, x->block1);
    gw_coap_out_payload(&o, payload, n);
    if (o.err) { /* cannot happen with the adapter's buffer; answer without the payload */
        gw_coap_out_begin(&o, cl->out, cl->out_cap, type, GW_COAP_INTERNAL, mid, x->token, x->tkl);
        code = GW_COAP_INTERNAL;
    }
    gw__coap_count_response(code);
    if (type == GW_COAP_ACK && d)
        gw__coap_dedup_keep(d, o.buf, o.len);
    if (con) {
        gw_metric_inc(GW_M_COAP_SEPARATE);
        x->mid = mid;
        gw__coap_send_con(x, o.buf, o.len);
        return;
    }
    if (type == GW_COAP_NON && d)
        gw__coap_dedup_keep(d, o.buf, o.len);
    gw__coap_send(x->sock, &x->addr, o.buf, o.len);
    gw__coap_xchg_free(x);
}

/* A CON of ours gave up or was reset. */
static void con_failed(gw__coap_xchg *x, const char *why)
{
    if (x->notify && x->s)
        gw__coap_observer_drop(x->s, why);
    gw__coap_xchg_free(x);
}

void gw__coap_on_ack(gw__coap_loop *cl, const gw_coap_msg *m, const struct sockaddr *from)
{
    for (gw__coap_xchg *x = cl->xchgs; x; x = x->next) {
        if (x->state != GW__X_CONFIRM || x->mid != m->mid || !gw_dgram_addr_equal(&x->addr, from))
            continue;
        if (m->type == GW_COAP_RST) {
            con_failed(x, "reset");
        } else {
            if (x->s && !x->s->d.closing) /* the device answered: it is alive */
                gw_dgram_sess_touch(&x->s->d);
            gw__coap_xchg_free(x);
        }
        return;
    }
}

void gw__coap_xchg_ack_empty(gw__coap_xchg *x)
{
    uint8_t b[4] = {0x60, 0, (uint8_t)(x->mid >> 8), (uint8_t)x->mid};
    x->acked = true;
    gw__coap_dedup *d = gw__coap_xchg_dedup(x);
    if (d) {
        gw__coap_dedup_keep(d, b, 4);
        d->x = x; /* still pending: a duplicate gets the empty ACK again */
        x->dd = d;
    }
    gw__coap_send(x->sock, &x->addr, b, 4);
}

void gw__coap_tick(gw__coap_loop *cl)
{
    uint64_t now = uv_now(&cl->dl.loop->uv);
    gw__coap_xchg *x, *next;
    for (x = cl->xchgs; x; x = next) {
        next = x->next;
        if (x->state == GW__X_CONFIRM) {
            if (now < x->rexmit_at)
                continue;
            if (x->retries >= GW_COAP_MAX_RETRANS) {
                con_failed(x, "no_ack");
                continue;
            }
            x->retries++;
            x->rexmit_ms *= 2;
            x->rexmit_at = now + x->rexmit_ms;
            gw__coap_send(x->sock, &x->addr, x->out, x->out_len);
            continue;
        }
        if (!x->acked && x->req_type == GW_COAP_CON && now >= x->ack_deadline)
            gw__coap_xchg_ack_empty(x);
        if (x->state == GW__X_WAIT && now >= x->wait_deadline)
            gw__coap_xchg_answer(x, GW_COAP_CHANGED, -1, NULL, 0);
    }
    bool sweep = now >= cl->next_sweep;
    if (sweep) {
        gw__coap_sweep(cl);
        gw__coap_blocks_free(cl, false);
    }
    gw__coap_dtls_tick(cl, sweep);
}

/* ---- session ops ---- */

static void committed(gw_session *base, gw_event *ev)
{
    gw__coap_sess *s = sess_of(base);
    gw__coap_xchg *x = *token_bucket(gw__coap_sess_loop(s), ev->token);
    while (x && !(x->ev_token == ev->token && x->s == s && x->state == GW__X_COMMIT))
        x = x->tnext;
    if (!x)
        return;
    token_remove(x);
    if (ev->status != 0) {
        if (GW_LOG_WARN >= gw_log_level) {
            char peer[64];
            gw_dgram_sess_peer(base, peer, sizeof(peer));
            gw_log_write(GW_LOG_WARN, "coap", base->dev->id, peer, "not acknowledged: store error",
                         "error=\"%s\"", gw_strerror(ev->status));
        }
        gw__coap_xchg_answer(x, GW_COAP_INTERNAL, -1, NULL, 0);
        return;
    }
    if (x->report && !s->d.closing)
        gw__coap_report_done(x, x->wait_s);
    else
        gw__coap_xchg_answer(x, GW_COAP_CHANGED, -1, NULL, 0);
}

static void destroy(gw_session *base)
{
    gw__coap_sess *s = sess_of(base);
    gw__coap_held_clear(s);
    gw_free(GW_AREA_SESSION, s->ext);
    gw_free(GW_AREA_SESSION, base);
}

static const gw_session_ops sess_ops =
    GW_DGRAM_SESS_OPS("coap", committed, destroy, gw__coap_command);

gw__coap_sess *gw__coap_sess_find(gw__coap_loop *cl, uint32_t index)
{
    return (gw__coap_sess *)gw_dgram_sess_find(&cl->dl, index);
}

gw__coap_sess *gw__coap_sess_open(gw__coap_loop *cl, gw__coap_sock *sock, const gw_device *dev,
                                  const struct sockaddr *from)
{
    gw__coap_sess *s = (gw__coap_sess *)gw_dgram_sess_open(&cl->dl, sizeof(gw__coap_sess),
                                                           &sess_ops, &sock->d, dev, from);
    return s;
}

/* gw_dgram_ops.close_begin: exchanges still open keep their reference and finish (their answers
 * still go out); one holding its answer for a command is answered now, and the observer goes. */
static void close_begin(gw_dgram_sess *ds)
{
    gw__coap_sess *s = (gw__coap_sess *)ds;
    for (gw__coap_xchg *x = gw__coap_sess_loop(s)->xchgs, *next; x; x = next) {
        next = x->next;
        if (x->s == s && x->state == GW__X_WAIT)
            gw__coap_xchg_answer(x, GW_COAP_CHANGED, -1, NULL, 0); /* no command came */
    }
    if (s->observing)
        gw__coap_observer_drop(s, NULL);
}

static void close_end(gw_dgram_sess *s)
{
    gw__coap_held_clear((gw__coap_sess *)s);
}

void gw__coap_sess_close(gw__coap_sess *s, const char *reason)
{
    gw_dgram_sess_close(&s->d, reason);
}

void gw__coap_sweep(gw__coap_loop *cl)
{
    uint64_t now = uv_now(&cl->dl.loop->uv);
    uint32_t period = cl->ad->cfg.idle_timeout_ms / 4;
    cl->next_sweep = now + (period < 20 ? 20 : period > 1000 ? 1000 : period);
    gw_dgram_sweep(&cl->dl);
}

void gw__coap_close_all(gw__coap_loop *cl, const char *reason)
{
    gw_dgram_close_all(&cl->dl, reason);
}

static void on_datagram(gw_dgram_sock *ds, const uint8_t *p, size_t n, const struct sockaddr *from,
                        bool truncated)
{
    gw__coap_sock *sock = (gw__coap_sock *)ds;
    gw_metric_inc(GW_M_COAP_DATAGRAMS);
    if (sock->dtls)
        gw__coap_dtls_input(sock, p, n, from);
    else
        gw__coap_request(sock, p, n, from, truncated, NULL);
}

static void on_tick(gw_dgram_loop *dl)
{
    gw__coap_tick((gw__coap_loop *)dl);
}

/* Not pause_when_full: CoAP keeps reading and answers 5.03 (Max-Age) while the store is full. */
const gw_dgram_ops gw__coap_dgram_ops = {
    .area = "coap",
    .metric = {&GW_M_COAP_IDLE, &GW_M_COAP_TAKEOVER},
    .datagram = on_datagram,
    .tick = on_tick,
    .listen = gw__coap_listen,
    .close_begin = close_begin,
    .close_end = close_end,
};

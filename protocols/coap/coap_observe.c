/* coap_observe.c: downstream commands over CoAP: the observe registration on
 * /{product}/{device}/function/invoke (RFC 7641), commands sent as CON notifications, observers
 * dropped when they stop answering, and for devices that do not observe, commands riding on the
 * response to their next report or poll (?wait=N holds that response for one). */
#include "coap_internal.h"

#include <stdio.h>
#include <string.h>

#include "../../gateway/util/alloc.h"
#include "../../gateway/core/codec.h"
#include "../../gateway/command/command.h"
#include "../../gateway/core/listen.h"
#include "../../gateway/util/log.h"
#include "../../gateway/util/metrics.h"

void gw__coap_held_clear(gw__coap_sess *s)
{
    for (unsigned i = 0; i < s->n_held; i++)
        gw_free(GW_AREA_OUTPUT, s->ext->held[i]);
    s->n_held = 0;
}

gw__coap_sess_ext *gw__coap_sess_ext_get(gw__coap_sess *s)
{
    if (!s->ext)
        s->ext = gw_calloc(GW_AREA_SESSION, 1, sizeof(*s->ext));
    return s->ext;
}

/* Takes the oldest held command (the caller frees it). */
static gw__coap_held *held_pop(gw__coap_sess *s)
{
    gw__coap_held **held = s->ext->held;
    gw__coap_held *h = held[0];
    memmove(&held[0], &held[1], (s->n_held - 1) * sizeof(held[0]));
    s->n_held--;
    return h;
}

void gw__coap_observer_drop(gw__coap_sess *s, const char *why)
{
    if (!s->observing)
        return;
    s->observing = false;
    gw_metric_add(GW_M_COAP_OBSERVERS, -1);
    if (why) {
        gw_metric_inc(GW_M_COAP_OBSERVERS_DROPPED);
        GW_LOG_INFO("coap", s->d.base.dev->id, NULL, "observer dropped", "reason=%s", why);
    }
}

/* Sends one command payload to the observer as a CON notification. */
static int notify(gw__coap_sess *s, const uint8_t *p, size_t n)
{
    gw__coap_loop *cl = gw__coap_sess_loop(s);
    gw__coap_sess_ext *e = s->ext; /* set while observing */
    gw_coap_out o;
    gw__coap_xchg *x = gw__coap_xchg_new(cl, s);
    if (!x)
        return GW_ENOMEM;
    x->notify = true;
    x->sock = e->obs_sock;
    x->addr = e->obs_addr;
    x->req_type = GW_COAP_CON;
    x->tkl = e->obs_tkl;
    memcpy(x->token, e->obs_token, e->obs_tkl);
    x->mid = gw__coap_mid(cl);
    e->obs_seq = (e->obs_seq + 1) & 0xFFFFFF;
    gw_coap_out_begin(&o, cl->out, cl->out_cap, GW_COAP_CON, GW_COAP_CONTENT, x->mid, x->token,
                      x->tkl);
    gw_coap_out_opt_uint(&o, GW_COAP_OPT_OBSERVE, e->obs_seq);
    gw_coap_out_opt_uint(&o, GW_COAP_OPT_CONTENT_FORMAT,
                         (uint32_t)gw_coap_codec_format(s->d.base.dev->product->codec));
    gw_coap_out_payload(&o, p, n);
    if (o.err) {
        gw__coap_xchg_free(x);
        return GW_ETOOBIG;
    }
    gw_metric_inc(GW_M_COAP_NOTIFICATIONS);
    gw__coap_send_con(x, o.buf, o.len);
    return 0;
}

/* A report of s's device waiting (?wait) for a command, if any. */
static gw__coap_xchg *waiting_report(gw__coap_sess *s)
{
    for (gw__coap_xchg *x = gw__coap_sess_loop(s)->xchgs; x; x = x->next)
        if (x->s == s && x->state == GW__X_WAIT)
            return x;
    return NULL;
}

static void answer_with_held(gw__coap_xchg *x, gw__coap_sess *s)
{
    gw__coap_held *h = held_pop(s);
    gw__coap_xchg_answer(x, GW_COAP_CHANGED, gw_coap_codec_format(s->d.base.dev->product->codec),
                         h->data, h->len);
    gw_free(GW_AREA_OUTPUT, h);
}

/* Asks the command table for one command to ride on x's answer; true if one did (x answered). */
static bool ride(gw__coap_sess *s, gw__coap_xchg *x)
{
    gw__coap_loop *cl = gw__coap_sess_loop(s);
    cl->answering = x;
    gw_commands_ready(&s->d.base);
    if (!cl->answering)
        return true;
    cl->answering = NULL;
    return false;
}

void gw__coap_report_done(gw__coap_xchg *x, uint32_t wait_s)
{
    gw__coap_sess *s = x->s;
    bool had = s->n_held == GW_COAP_HELD_MAX;
    if (s->n_held) {
        answer_with_held(x, s);
        if (had && !s->d.closing)
            gw_commands_ready(&s->d.base); /* room again for commands still queued */
        return;
    }
    if (s->d.closing) {
        gw__coap_xchg_answer(x, GW_COAP_CHANGED, -1, NULL, 0);
        return;
    }
    if (ride(s, x))
        return;
    if (wait_s) {
        gw__coap_xchg *older = waiting_report(s);
        if (older) /* one held answer per device: the older one is answered now */
            gw__coap_xchg_answer(older, GW_COAP_CHANGED, -1, NULL, 0);
        x->state = GW__X_WAIT;
        x->wait_deadline = uv_now(&x->cl->dl.loop->uv) + (uint64_t)wait_s * 1000;
        return;
    }
    gw__coap_xchg_answer(x, GW_COAP_CHANGED, -1, NULL, 0);
}

/* The session's command op: the codec's bytes go to the answer being made (a report's 2.04, a
 * poll's 2.05) or a report held by ?wait, else to the observer as a notification; else, for a
 * product that queues commands, they stay in the command table (GW_ENOTFOUND) until the device's
 * next request asks (gw_commands_ready), and for other products they are held in the session for
 * the next answer. Runs with the command table locked: it must not call back into it. */
int gw__coap_command(gw_session *base, const gw_command *c, gw_error *err)
{
    gw__coap_sess *s = (gw__coap_sess *)base;
    gw__coap_loop *cl = gw__coap_sess_loop(s);
    const gw_product *p = base->dev->product;
    size_t n = 0;
    uint8_t *buf = cl->out + cl->out_cap / 2; /* the first half encodes the message around it */
    size_t cap = cl->out_cap / 2 - 64;        /* never overlaps the encoded header */

    if (s->d.closing)
        return gw_error_set(err, GW_ECLOSED, "the session has ended");
    if (!p->codec_ops->encode_command)
        return gw_error_set(err, GW_EINVAL, "codec %s carries no commands", p->codec);
    int rc =
        p->codec_ops->encode_command(p, c, base->dev->id, base->dev->secret, buf, cap, &n, err);
    if (rc)
        return rc;
    gw__coap_xchg *w = cl->answering && cl->answering->s == s ? cl->answering : waiting_report(s);
    if (w) {
        if (w == cl->answering)
            cl->answering = NULL;
        gw__coap_xchg_answer(w, w->report ? GW_COAP_CHANGED : GW_COAP_CONTENT,
                             gw_coap_codec_format(p->codec), buf, n);
        return 0;
    }
    if (s->observing)
        return notify(s, buf, n) == 0 ? 0 : gw_error_set(err, GW_ENOMEM, "cannot notify");
    if (p->cmd_queue_offline) /* it stays in the command table (TTL) until the device asks */
        return gw_error_set(err, GW_ENOTFOUND, "the device takes commands with its next request");
    if (s->n_held >= GW_COAP_HELD_MAX)
        return gw_error_set(err, GW_ENOTFOUND, "%u commands already wait for the device",
                            GW_COAP_HELD_MAX);
    gw__coap_sess_ext *e = gw__coap_sess_ext_get(s);
    gw__coap_held *h = e ? gw_malloc(GW_AREA_OUTPUT, sizeof(*h) + n) : NULL;
    if (!h)
        return gw_error_set(err, GW_ENOMEM, "out of memory");
    h->len = (uint16_t)n;
    memcpy(h->data, buf, n);
    e->held[s->n_held++] = h;
    return 0;
}

/* GET .../function/invoke: Observe 0 registers (held commands then go out as notifications),
 * Observe 1 deregisters; a plain GET polls: a held command, or an empty 2.05. */
void gw__coap_observe(gw__coap_sess *s, gw__coap_xchg *x, const gw_coap_req *r)
{
    gw__coap_loop *cl = gw__coap_sess_loop(s);
    gw_coap_out o;
    int cf = gw_coap_codec_format(s->d.base.dev->product->codec);

    gw__coap_sess_ext *e = r->observe == 0 ? gw__coap_sess_ext_get(s) : NULL;
    if (r->observe == 0 && !e) {
        gw__coap_xchg_answer(x, GW_COAP_INTERNAL, -1, NULL, 0);
        return;
    }
    if (r->observe == 0) {
        if (!s->observing)
            gw_metric_add(GW_M_COAP_OBSERVERS, 1);
        s->observing = true;
        e->obs_tkl = x->tkl;
        memcpy(e->obs_token, x->token, x->tkl);
        e->obs_addr = x->addr;
        e->obs_sock = x->sock;
        e->obs_seq = (e->obs_seq + 1) & 0xFFFFFF;
        uint8_t type = x->req_type == GW_COAP_CON ? GW_COAP_ACK : GW_COAP_NON;
        uint16_t mid = type == GW_COAP_ACK ? x->mid : gw__coap_mid(cl);
        gw_coap_out_begin(&o, cl->out, cl->out_cap, type, GW_COAP_CONTENT, mid, x->token, x->tkl);
        gw_coap_out_opt_uint(&o, GW_COAP_OPT_OBSERVE, e->obs_seq);
        gw__coap_count_response(GW_COAP_CONTENT);
        gw__coap_dedup_store(cl, &x->addr, x->mid, o.buf, o.len);
        gw__coap_send(x->sock, &x->addr, o.buf, o.len);
        gw__coap_xchg_free(x);
        GW_LOG_DEBUG("coap", s->d.base.dev->id, NULL, "observing commands", NULL);
        while (s->n_held && s->observing) {
            gw__coap_held *h = held_pop(s);
            notify(s, h->data, h->len);
            gw_free(GW_AREA_OUTPUT, h);
        }
        gw_commands_ready(&s->d.base);
        return;
    }
    if (r->observe == 1)
        gw__coap_observer_drop(s, NULL);
    if (!s->n_held && ride(s, x))
        return;
    if (s->n_held) {
        gw__coap_held *h = held_pop(s);
        gw__coap_xchg_answer(x, GW_COAP_CONTENT, cf, h->data, h->len);
        gw_free(GW_AREA_OUTPUT, h);
        return;
    }
    gw__coap_xchg_answer(x, GW_COAP_CONTENT, -1, NULL, 0);
}

/* command.c: the pending-command table shared by the north thread and the loops under one mutex:
 * per-device lists (by dev->index) and a deadline min-heap; taking a command in (bounds,
 * duplicates, binary seq ids, route or queue), answering at once, and the ticks that time out
 * sent commands and expire queued ones. Every outcome is one reply event, submitted under the
 * lock, so the store always sees a command's log row before its reply. The device side (routing,
 * ready, replies) is command_route.c. */
#include "command_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/alloc.h"
#include "../util/json_write.h"
#include "../util/log.h"
#include "../util/metrics.h"
#include "../core/runtime.h"

#define AREA "command"

/* ---- events ---- */

void gw__commands_set_sink(gw_commands *c, void (*fn)(void *arg, gw_event *ev), void *arg)
{
    c->sink = fn;
    c->sink_arg = arg;
}

void gw__commands_emit(gw_commands *c, gw_event *head, gw_event *tail, size_t n)
{
    if (!head)
        return;
    if (!c->sink) {
        gw_store_submit(c->rt->store, head, tail, n);
        return;
    }
    while (head) {
        gw_event *next = head->next;
        head->next = NULL;
        c->sink(c->sink_arg, head);
        head = next;
    }
}

void gw__cmd_emit1(gw_commands *c, gw_event *ev)
{
    if (ev)
        gw__commands_emit(c, ev, ev, 1);
}

gw_event *gw__cmd_log_event(gw_commands *c, const gw_device *dev, const gw__cmd_req *r,
                            const char *status)
{
    gw_event *ev = gw_store_event_new(c->rt->store, GW_EV_COMMAND, dev);
    if (!ev)
        return NULL;
    snprintf(ev->name, sizeof(ev->name), "%s", gw__cmd_req_name(r));
    memcpy(ev->msg_id, r->msg_id, sizeof(ev->msg_id));
    ev->payload = r->request ? gw_json_write(r->request) : NULL;
    ev->cmd_op = gw__cmd_op_name(r->op);
    ev->cmd_status = status;
    return ev;
}

gw_event *gw__cmd_reply_event(gw_commands *c, const gw_device *dev, gw_command_op op,
                              const char *name, const char *msg_id, char *payload,
                              const char *status)
{
    gw_event *ev = gw_store_event_new(c->rt->store, gw__cmd_reply_kind(op), dev);
    if (!ev) {
        gw_free(GW_AREA_EVENT, payload);
        return NULL;
    }
    snprintf(ev->name, sizeof(ev->name), "%s", name);
    snprintf(ev->msg_id, sizeof(ev->msg_id), "%s", msg_id);
    ev->payload = payload;
    ev->cmd_status = status;
    ev->gateway_made = true; /* the device reply path (command_route.c) clears it */
    return ev;
}

gw_event *gw__cmd_error_event(gw_commands *c, const gw_device *dev, gw_command_op op,
                              const char *name, const char *msg_id, const char *code,
                              const char *message)
{
    char *payload = gw__cmd_error_json(code, message);
    if (!payload)
        return NULL;
    return gw__cmd_reply_event(c, dev, op, name, msg_id, payload, gw__cmd_error_status(code));
}

void gw__cmd_log_outcome(const gw_device *dev, gw_command_op op, const char *name,
                         const char *msg_id, const char *code, const char *message)
{
    int level =
        strcmp(code, "timeout") == 0 || strcmp(code, "expired") == 0 ? GW_LOG_INFO : GW_LOG_WARN;
    char q1[96], q2[96], q3[256];
    if (level < gw_log_level)
        return;
    gw_log_write(level, AREA, dev->id, NULL, "command not completed",
                 "op=%s name=%s msg_id=%s code=%s detail=%s", gw__cmd_op_name(op),
                 gw_log_value(q1, sizeof(q1), name), gw_log_value(q2, sizeof(q2), msg_id), code,
                 gw_log_quote(q3, sizeof(q3), message));
}

/* ---- heap by deadline ---- */

static void heap_swap(gw_commands *c, uint32_t a, uint32_t b)
{
    gw__cmd_entry *t = c->heap[a];
    c->heap[a] = c->heap[b];
    c->heap[b] = t;
    c->heap[a]->heap_at = a;
    c->heap[b]->heap_at = b;
}

static void heap_up(gw_commands *c, uint32_t i)
{
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (c->heap[p]->deadline <= c->heap[i]->deadline)
            break;
        heap_swap(c, p, i);
        i = p;
    }
}

static void heap_down(gw_commands *c, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < c->heap_n && c->heap[l]->deadline < c->heap[m]->deadline)
            m = l;
        if (r < c->heap_n && c->heap[r]->deadline < c->heap[m]->deadline)
            m = r;
        if (m == i)
            return;
        heap_swap(c, i, m);
        i = m;
    }
}

static int heap_push(gw_commands *c, gw__cmd_entry *e)
{
    if (c->heap_n == c->heap_cap) {
        uint32_t cap = c->heap_cap ? c->heap_cap * 2 : 64;
        gw__cmd_entry **h = gw_realloc(GW_AREA_RUNTIME, c->heap, cap * sizeof(*h));
        if (!h)
            return GW_ENOMEM;
        c->heap = h;
        c->heap_cap = cap;
    }
    e->heap_at = c->heap_n;
    c->heap[c->heap_n++] = e;
    heap_up(c, e->heap_at);
    return 0;
}

static void heap_remove(gw_commands *c, gw__cmd_entry *e)
{
    uint32_t i = e->heap_at;
    c->heap_n--;
    if (i != c->heap_n) {
        c->heap[i] = c->heap[c->heap_n];
        c->heap[i]->heap_at = i;
        heap_down(c, i);
        heap_up(c, i);
    }
}

void gw__cmd_set_deadline(gw_commands *c, gw__cmd_entry *e, int64_t deadline)
{
    int64_t was = e->deadline;
    e->deadline = deadline;
    if (deadline < was)
        heap_up(c, e->heap_at);
    else
        heap_down(c, e->heap_at);
}

/* ---- entries ---- */

static void list_unlink(gw_commands *c, gw__cmd_entry *e)
{
    gw__cmd_dev *d = &c->devs[e->cmd.dev->index];
    for (gw__cmd_entry **pp = &d->head; *pp; pp = &(*pp)->next) {
        if (*pp == e) {
            *pp = e->next;
            e->next = NULL;
            d->n--;
            return;
        }
    }
}

void gw__cmd_entry_free(gw__cmd_entry *e)
{
    if (e->mail) /* a local command that was never told: gw_commands_free at shutdown */
        gw_free(GW_AREA_RUNTIME, e->mail);
    json_decref(e->cmd.args);
    if (e->cmd.dev)
        gw_config_release(e->cmd.dev->gen);
    gw_free(GW_AREA_RUNTIME, e);
}

void gw__cmd_entry_remove(gw_commands *c, gw__cmd_entry *e)
{
    if (e->state != GW__CMD_DONE)
        list_unlink(c, e);
    heap_remove(c, e);
    gw_metric_add(GW_M_CMD_PENDING, -1);
}

/* The reply goes out from the next tick, on the north thread: loops never submit a command's
 * error, so nothing is submitted after the north thread (stopped before the store) has ended. */
void gw__cmd_entry_fail(gw_commands *c, gw__cmd_entry *e, const char *code, const char *message)
{
    list_unlink(c, e);
    e->state = GW__CMD_DONE;
    e->code = code;
    snprintf(e->message, sizeof(e->message), "%s", message);
    gw__cmd_set_deadline(c, e, 0);
    gw_metric_inc(strcmp(code, "device_offline") == 0 ? GW_M_CMD_OFFLINE : GW_M_CMD_REJECTED);
}

/* JSON-style codecs carry the cloud's messageId; framing (binary) codecs a numeric seq. */
static bool text_ids(const gw_product *p)
{
    return !p->codec_ops || !p->codec_ops->frame_info;
}

/* The next seq for a device: 1..seq_max (what the layout's seq field holds), not one of its
 * pending commands. */
static uint32_t next_seq(gw_commands *c, const gw_device *dev)
{
    gw__cmd_dev *d = &c->devs[dev->index];
    uint64_t max = UINT32_MAX;
    const gw_product *p = dev->product;
    if (p->codec_ops && p->codec_ops->frame_info) {
        gw_frame_info fi = {0};
        p->codec_ops->frame_info(p, &fi);
        if (fi.seq_max && fi.seq_max < max)
            max = fi.seq_max;
    }
    for (uint32_t tries = 0; tries <= d->n; tries++) {
        d->seq = d->seq >= max ? 1 : d->seq + 1;
        bool used = false;
        for (gw__cmd_entry *e = d->head; e && !used; e = e->next)
            used = e->cmd.seq == d->seq;
        if (!used)
            break;
    }
    return d->seq;
}

static bool pending_id(gw_commands *c, const gw_device *dev, const char *msg_id)
{
    for (gw__cmd_entry *e = c->devs[dev->index].head; e; e = e->next)
        if (strcmp(e->cmd.msg_id, msg_id) == 0)
            return true;
    return false;
}

/* ---- from the cloud ---- */

/* A command answered at once, lock held: its log row with the final status, then its reply
 * (error code + message, or the success payload). A messageId already pending for the device is
 * answered "duplicate_message_id" without a log row: the log is keyed by (device, messageId). */
static void answer_locked(gw_commands *c, const gw_device *dev, gw__cmd_req *r, const char *code,
                          const char *message, char *payload)
{
    gw_event *log = NULL, *rep;
    const char *name = gw__cmd_req_name(r);
    char dup[160];
    if (r->msg_id[0] && pending_id(c, dev, r->msg_id)) {
        gw_free(GW_AREA_EVENT, payload);
        payload = NULL;
        code = "duplicate_message_id";
        snprintf(dup, sizeof(dup), "messageId %s is already pending for %s", r->msg_id, dev->id);
        message = dup;
    } else {
        log = gw__cmd_log_event(c, dev, r, code ? gw__cmd_error_status(code) : "success");
    }
    if (payload)
        rep = gw__cmd_reply_event(c, dev, r->op, name, r->msg_id, payload, "success");
    else
        rep = gw__cmd_error_event(c, dev, r->op, name, r->msg_id, code, message);
    if (rep && !log)
        rep->cmd_status = NULL; /* a duplicate: the pending command's row is not this one's */
    gw__cmd_notify(c, &r->mail, code ? gw__cmd_error_status(code) : "success", code, r->path,
                   r->gateway_full, rep ? rep->payload : NULL);
    if (log) {
        log->next = rep;
        gw__commands_emit(c, log, rep ? rep : log, rep ? 2 : 1);
    } else {
        gw__cmd_emit1(c, rep);
    }
    if (!code)
        return;
    gw_metric_inc(strcmp(code, "device_offline") == 0 ? GW_M_CMD_OFFLINE : GW_M_CMD_REJECTED);
    gw__cmd_log_outcome(dev, r->op, name, r->msg_id, code, message);
}

void gw__commands_answer(gw_commands *c, const gw_device *dev, gw__cmd_req *r, const char *code,
                         const char *message, char *payload)
{
    pthread_mutex_lock(&c->mu);
    answer_locked(c, dev, r, code, message, payload);
    pthread_mutex_unlock(&c->mu);
}

void gw__commands_add(gw_commands *c, const gw_device *dev, gw__cmd_req *r)
{
    const gw_north_cfg *nc = &c->cfg->north;
    const gw_product *p = dev->product;
    gw__cmd_dev *d = &c->devs[dev->index];
    gw_session *s = NULL;
    gw__cmd_entry *e = NULL;
    char msg[160];

    pthread_mutex_lock(&c->mu);
    if (d->n >= nc->max_pending_per_device || c->heap_n >= nc->max_pending) {
        if (d->n >= nc->max_pending_per_device) {
            snprintf(msg, sizeof(msg),
                     "%u commands pending for this device (max_pending_per_device)", d->n);
        } else {
            snprintf(msg, sizeof(msg), "%u commands pending in the gateway (max_pending)",
                     c->heap_n);
            r->gateway_full = true;
        }
        answer_locked(c, dev, r, "busy", msg, NULL);
        goto out;
    }
    if (pending_id(c, dev, r->msg_id)) {
        answer_locked(c, dev, r, "duplicate_message_id", "", NULL);
        goto out;
    }
    s = gw__cmd_owner_of(c->rt, dev);
    if (s && !s->ops->command) { /* an adapter that carries no commands: as if offline */
        gw_session_release(s);
        s = NULL;
    }
    if (!s && !p->cmd_queue_offline) {
        answer_locked(c, dev, r, "device_offline", "the device is offline", NULL);
        goto out;
    }
    e = gw_calloc(GW_AREA_RUNTIME, 1, sizeof(*e));
    if (!e || heap_push(c, e) != 0) {
        gw_free(GW_AREA_RUNTIME, e);
        answer_locked(c, dev, r, "busy", "out of memory", NULL);
        goto out;
    }
    e->cmd.op = r->op;
    e->cmd.dev = dev;
    gw_config_retain(dev->gen); /* a reload may replace dev's generation while it waits */
    memcpy(e->cmd.msg_id, r->msg_id, sizeof(e->cmd.msg_id));
    e->cmd.seq = next_seq(c, dev);
    if (text_ids(p))
        memcpy(e->cmd.dev_msg_id, r->msg_id, sizeof(e->cmd.dev_msg_id));
    else
        snprintf(e->cmd.dev_msg_id, sizeof(e->cmd.dev_msg_id), "%" PRIu32, e->cmd.seq);
    e->cmd.fn = r->fn;
    e->cmd.args = r->args;
    r->args = NULL;
    e->timeout_ms = r->fn ? r->fn->timeout_ms : GW_CMD_WRITE_TIMEOUT_MS;
    if (r->timeout_ms && r->timeout_ms < e->timeout_ms) /* the local API may only shorten it */
        e->timeout_ms = r->timeout_ms;
    e->cmd.timeout_ms = e->timeout_ms;
    e->mail = r->mail;
    r->mail = NULL;
    e->state = GW__CMD_WAIT;
    /* waiting: for the product's TTL when it queues, else (a guard) for the loop to send it */
    gw__cmd_set_deadline(c, e,
                         gw_now_ms() + (p->cmd_queue_offline ? p->cmd_ttl_ms : e->timeout_ms));
    gw__cmd_entry **pp = &d->head;
    while (*pp)
        pp = &(*pp)->next;
    *pp = e;
    d->n++;
    gw_metric_inc(GW_M_CMD_PENDING);
    if (!s)
        gw_metric_inc(GW_M_CMD_QUEUED);
    /* the log row goes to the store before any loop can see (and answer) the command */
    gw__cmd_emit1(c, gw__cmd_log_event(c, dev, r, s ? "sent" : "queued"));
    if (!s) { /* the local API is told at once; the outcome is stored as a reply event */
        gw__cmd_notify(c, &e->mail, "queued", NULL, NULL, false, NULL);
    }
out:
    pthread_mutex_unlock(&c->mu);
    if (s && e)
        gw__cmd_post_route(c, s);
    else if (s)
        gw_session_release(s);
    else if (e && GW_LOG_DEBUG >= gw_log_level) {
        char q[160];
        gw_log_write(GW_LOG_DEBUG, AREA, dev->id, NULL, "command queued for an offline device",
                     "msg_id=%s ttl_ms=%u", gw_log_value(q, sizeof(q), r->msg_id), p->cmd_ttl_ms);
    }
}

/* ---- deadlines ---- */

void gw_commands_tick(gw_commands *c, int64_t now_ms)
{
    if (!c)
        return;
    pthread_mutex_lock(&c->mu);
    while (c->heap_n && c->heap[0]->deadline <= now_ms) {
        gw__cmd_entry *e = c->heap[0];
        const gw_command *cmd = &e->cmd;
        const gw_product *p = cmd->dev->product;
        const char *code = e->code, *name = gw__cmd_event_name(cmd->op, cmd->fn);
        char msg[160];
        if (e->state == GW__CMD_DONE) {
            snprintf(msg, sizeof(msg), "%s", e->message);
        } else if (e->state == GW__CMD_WAIT && p->cmd_queue_offline) {
            code = "expired";
            snprintf(msg, sizeof(msg), "not delivered within the product's ttl_ms (%u)",
                     p->cmd_ttl_ms);
            gw_metric_inc(GW_M_CMD_EXPIRED);
        } else {
            code = "timeout";
            snprintf(msg, sizeof(msg), "no reply within %u ms", e->timeout_ms);
            gw_metric_inc(GW_M_CMD_TIMEOUT);
        }
        gw__cmd_entry_remove(c, e);
        gw_event *ev = gw__cmd_error_event(c, cmd->dev, cmd->op, name, cmd->msg_id, code, msg);
        gw__cmd_notify(c, &e->mail, gw__cmd_error_status(code), code, NULL, false,
                       ev ? ev->payload : NULL);
        gw__cmd_emit1(c, ev);
        gw__cmd_log_outcome(cmd->dev, cmd->op, name, cmd->msg_id, code, msg);
        gw__cmd_entry_free(e);
    }
    pthread_mutex_unlock(&c->mu);
}

/* ---- lifecycle ---- */

int gw_commands_create(gw_commands **out, gw_runtime *rt, gw_store_reader *reader, gw_error *err)
{
    gw_commands *c = gw_calloc(GW_AREA_RUNTIME, 1, sizeof(*c));
    *out = NULL;
    if (!c)
        return gw_error_set(err, GW_ENOMEM, "out of memory");
    c->rt = rt;
    rt->command_reply = gw_commands_reply;
    c->cfg = rt->cfg;
    c->reader = reader;
    c->mail_tail = &c->mail_head;
    c->devs = gw_calloc(GW_AREA_RUNTIME, rt->device_cap ? rt->device_cap : 1, sizeof(*c->devs));
    if (!c->devs) {
        gw_free(GW_AREA_RUNTIME, c);
        return gw_error_set(err, GW_ENOMEM, "out of memory");
    }
    pthread_mutex_init(&c->mu, NULL);
    *out = c;
    return 0;
}

void gw_commands_set_reader(gw_commands *c, gw_store_reader *reader)
{
    if (c)
        c->reader = reader;
}

void gw_commands_free(gw_commands *c)
{
    if (!c)
        return;
    /* Commands still pending are dropped: the store marks their rows unfinished at next start. */
    if (c->heap_n)
        GW_LOG_INFO(AREA, NULL, NULL, "pending commands dropped at shutdown", "count=%u",
                    c->heap_n);
    while (c->heap_n) {
        gw__cmd_entry *e = c->heap[c->heap_n - 1];
        gw__cmd_entry_remove(c, e);
        gw__cmd_entry_free(e);
    }
    while (c->mail_head) { /* never detached (tests): told to nobody */
        gw__cmd_mail *m = c->mail_head;
        c->mail_head = m->next;
        gw_free(GW_AREA_RUNTIME, m->payload);
        gw_free(GW_AREA_RUNTIME, m);
    }
    pthread_mutex_destroy(&c->mu);
    gw_free(GW_AREA_RUNTIME, c->heap);
    gw_free(GW_AREA_RUNTIME, c->devs);
    gw_free(GW_AREA_RUNTIME, c);
}

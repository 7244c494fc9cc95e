/* command.c: the pending-command table shared by the north thread and the loops under one mutex:
 * per-device lists (by dev->index) and a deadline min-heap; routing a command to the loop that
 * holds the device's session, queueing it for an offline device, matching the device's reply, and
 * the timeouts. Every outcome becomes one reply event, submitted under the lock so the store sees
 * a command's log row, then its reply, in that order. */
#include "command_internal.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "alloc.h"
#include "dispatch.h"
#include "json_write.h"
#include "log.h"
#include "metrics.h"
#include "runtime.h"

#define AREA "command"

enum { ST_WAIT, ST_SENT, ST_DONE };

typedef struct cmd_entry {
    gw_command cmd;
    struct cmd_entry *next; /* the device's list, oldest first; only while not ST_DONE */
    int64_t deadline;       /* gw_now_ms; ST_DONE: 0, so the next tick answers it */
    uint32_t heap_at;
    uint32_t timeout_ms; /* reply timeout once sent */
    uint8_t state;
    const char *code;  /* ST_DONE: the error reply's code */
    char message[160]; /* ST_DONE: ... and its message */
} cmd_entry;

typedef struct dev_cmds {
    cmd_entry *head;
    uint32_t n;   /* entries in the list */
    uint32_t seq; /* the last seq handed out to this device */
} dev_cmds;

struct gw_commands {
    gw_runtime *rt;
    const gw_config *cfg;
    gw_store_reader *reader;
    pthread_mutex_t mu;
    dev_cmds *devs;   /* per device index */
    cmd_entry **heap; /* every pending entry, by deadline */
    uint32_t heap_n, heap_cap;
    void (*sink)(void *arg, gw_event *ev);
    void *sink_arg;
};

typedef struct route_msg {
    gw_inbox_msg m;
    gw_commands *c;
    gw_session *s; /* holds a reference */
} route_msg;

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

static void emit1(gw_commands *c, gw_event *ev)
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
    snprintf(ev->name, sizeof(ev->name), "%s", gw__cmd_event_name(r->op, r->fn));
    memcpy(ev->msg_id, r->msg_id, sizeof(ev->msg_id));
    ev->payload = r->request ? gw_json_write(r->request) : NULL;
    ev->cmd_op = gw__cmd_op_name(r->op);
    ev->cmd_status = status;
    return ev;
}

static gw_event *reply_event(gw_commands *c, const gw_device *dev, gw_command_op op,
                             const gw_function_spec *fn, const char *msg_id, char *payload,
                             const char *status)
{
    gw_event *ev = gw_store_event_new(c->rt->store, gw__cmd_reply_kind(op), dev);
    if (!ev) {
        free(payload);
        return NULL;
    }
    snprintf(ev->name, sizeof(ev->name), "%s", gw__cmd_event_name(op, fn));
    snprintf(ev->msg_id, sizeof(ev->msg_id), "%s", msg_id);
    ev->payload = payload;
    ev->cmd_status = status;
    return ev;
}

gw_event *gw__cmd_error_event(gw_commands *c, const gw_device *dev, gw_command_op op,
                              const gw_function_spec *fn, const char *msg_id, const char *code,
                              const char *message)
{
    char *payload = gw__cmd_error_json(code, message);
    if (!payload)
        return NULL;
    return reply_event(c, dev, op, fn, msg_id, payload, gw__cmd_error_status(code));
}

/* Log line for a command that ends without a device reply. */
static void log_outcome(const gw_device *dev, const gw_command *cmd, const char *code,
                        const char *message)
{
    int level =
        strcmp(code, "timeout") == 0 || strcmp(code, "expired") == 0 ? GW_LOG_INFO : GW_LOG_WARN;
    char q1[96], q2[256];
    if (level < gw_log_level)
        return;
    gw_log_write(level, AREA, dev->id, NULL, "command not completed",
                 "op=%s name=%s msg_id=%s code=%s detail=%s", gw__cmd_op_name(cmd->op),
                 gw__cmd_event_name(cmd->op, cmd->fn), gw_log_value(q1, sizeof(q1), cmd->msg_id),
                 code, gw_log_quote(q2, sizeof(q2), message));
}

/* ---- heap by deadline ---- */

static void heap_swap(gw_commands *c, uint32_t a, uint32_t b)
{
    cmd_entry *t = c->heap[a];
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

static int heap_push(gw_commands *c, cmd_entry *e)
{
    if (c->heap_n == c->heap_cap) {
        uint32_t cap = c->heap_cap ? c->heap_cap * 2 : 64;
        cmd_entry **h = gw_realloc(GW_AREA_RUNTIME, c->heap, cap * sizeof(*h));
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

static void heap_remove(gw_commands *c, cmd_entry *e)
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

static void set_deadline(gw_commands *c, cmd_entry *e, int64_t deadline)
{
    int64_t was = e->deadline;
    e->deadline = deadline;
    if (deadline < was)
        heap_up(c, e->heap_at);
    else
        heap_down(c, e->heap_at);
}

/* ---- entries ---- */

static void list_unlink(gw_commands *c, cmd_entry *e)
{
    dev_cmds *d = &c->devs[e->cmd.dev->index];
    for (cmd_entry **pp = &d->head; *pp; pp = &(*pp)->next) {
        if (*pp == e) {
            *pp = e->next;
            e->next = NULL;
            d->n--;
            return;
        }
    }
}

static void entry_free(cmd_entry *e)
{
    json_decref(e->cmd.args);
    gw_free(GW_AREA_RUNTIME, e);
}

/* Out of the table (list and heap), for good. */
static void entry_remove(gw_commands *c, cmd_entry *e)
{
    if (e->state != ST_DONE)
        list_unlink(c, e);
    heap_remove(c, e);
    gw_metric_add(GW_M_CMD_PENDING, -1);
}

/* Ends an entry from a loop: answered with code by the next tick (on the north thread, which is
 * stopped before the store closes). Counted here. */
static void entry_fail(gw_commands *c, cmd_entry *e, const char *code, const char *message)
{
    list_unlink(c, e);
    e->state = ST_DONE;
    e->code = code;
    snprintf(e->message, sizeof(e->message), "%s", message);
    set_deadline(c, e, 0);
    gw_metric_inc(strcmp(code, "device_offline") == 0 ? GW_M_CMD_OFFLINE : GW_M_CMD_REJECTED);
}

static bool json_codec(const gw_product *p)
{
    return !p->codec_ops || !p->codec_ops->frame_info;
}

/* The next seq for a device: 1..seq_max (what the layout's seq field holds), not one of its
 * pending commands. */
static uint32_t next_seq(gw_commands *c, const gw_device *dev)
{
    dev_cmds *d = &c->devs[dev->index];
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
        for (cmd_entry *e = d->head; e && !used; e = e->next)
            used = e->cmd.seq == d->seq;
        if (!used)
            break;
    }
    return d->seq;
}

static cmd_entry *find_msg_id(gw_commands *c, const gw_device *dev, const char *msg_id)
{
    for (cmd_entry *e = c->devs[dev->index].head; e; e = e->next)
        if (strcmp(e->cmd.msg_id, msg_id) == 0)
            return e;
    return NULL;
}

/* ---- sessions ---- */

/* The device's current session, retained, or NULL. */
static gw_session *owner_of(gw_runtime *rt, const gw_device *dev)
{
    pthread_mutex_t *mu = &rt->stripes[dev->index % GW_DEVICE_STRIPES];
    pthread_mutex_lock(mu);
    gw_session *s = rt->slots[dev->index];
    if (s)
        gw_session_retain(s);
    pthread_mutex_unlock(mu);
    return s;
}

static bool owns(gw_runtime *rt, const gw_session *s)
{
    pthread_mutex_t *mu = &rt->stripes[s->dev->index % GW_DEVICE_STRIPES];
    pthread_mutex_lock(mu);
    bool yes = rt->slots[s->dev->index] == s;
    pthread_mutex_unlock(mu);
    return yes;
}

static void on_route(gw_loop *l, gw_inbox_msg *m);

/* Asks s's loop to send the device's waiting commands (takes the reference to s). */
static void post_route(gw_commands *c, gw_session *s)
{
    route_msg *r = gw_malloc(GW_AREA_RUNTIME, sizeof(*r));
    if (!r) { /* the waiting commands go at the next ready, or time out */
        gw_session_release(s);
        return;
    }
    r->m.fn = on_route;
    r->c = c;
    r->s = s;
    gw_loop_post(s->loop, &r->m);
}

/* On s's loop, lock held: hands the device's waiting commands to the session. from_route: this
 * was a routing message (a session that lost the device passes them on or answers them). Returns
 * a retained session to route to (the device's new owner), or NULL. */
static gw_session *send_waiting(gw_commands *c, gw_session *s, bool from_route)
{
    const gw_device *dev = s->dev;
    dev_cmds *d = &c->devs[dev->index];
    bool queue = dev->product->cmd_queue_offline;
    cmd_entry *e, *next;

    if (!s->ops->command || !owns(c->rt, s)) {
        if (!from_route)
            return NULL;
        gw_session *o = owner_of(c->rt, dev);
        if (o && o != s && o->ops->command)
            return o;
        if (o)
            gw_session_release(o);
        for (e = d->head; e && !queue; e = next) {
            next = e->next;
            if (e->state == ST_WAIT)
                entry_fail(c, e, "device_offline",
                           "the device went offline before the command "
                           "was sent");
        }
        return NULL;
    }
    for (e = d->head; e; e = next) {
        next = e->next;
        if (e->state != ST_WAIT)
            continue;
        gw_error err = {0, ""};
        int rc = s->ops->command(s, &e->cmd, &err);
        if (rc == 0) {
            e->state = ST_SENT;
            set_deadline(c, e, gw_now_ms() + e->timeout_ms);
            gw_metric_inc(GW_M_CMD_SENT);
            GW_LOG_DEBUG(AREA, dev->id, NULL, "command sent", "op=%s msg_id=%s dev_msg_id=%s",
                         gw__cmd_op_name(e->cmd.op), e->cmd.msg_id, e->cmd.dev_msg_id);
        } else if (queue && (rc == GW_ENOTFOUND || rc == GW_ECLOSED)) {
            continue; /* not ready for commands yet: it waits for the session's ready */
        } else if (rc == GW_ECLOSED) {
            entry_fail(c, e, "device_offline", "the device's session is closing");
        } else {
            entry_fail(c, e, "send_failed", err.msg[0] ? err.msg : gw_strerror(rc));
        }
    }
    return NULL;
}

static void on_route(gw_loop *l, gw_inbox_msg *m)
{
    route_msg *r = (route_msg *)m;
    gw_commands *c = r->c;
    (void)l;
    pthread_mutex_lock(&c->mu);
    gw_session *o = send_waiting(c, r->s, true);
    pthread_mutex_unlock(&c->mu);
    if (o)
        post_route(c, o);
    gw_session_release(r->s);
    gw_free(GW_AREA_RUNTIME, r);
}

void gw_commands_ready(gw_session *s)
{
    if (!s || !s->dev || !s->loop->rt->commands)
        return;
    gw_commands *c = s->loop->rt->commands;
    pthread_mutex_lock(&c->mu);
    if (c->devs[s->dev->index].n)
        send_waiting(c, s, false);
    pthread_mutex_unlock(&c->mu);
}

/* ---- from the cloud ---- */

/* A command answered at once, lock held: its log row with the final status, then its reply
 * (error code + message, or the success payload). A messageId already pending for the device is
 * answered "duplicate_message_id" without a log row: the log is keyed by (device, messageId). */
static void answer_locked(gw_commands *c, const gw_device *dev, const gw__cmd_req *r,
                          const char *code, const char *message, char *payload)
{
    gw_event *log = NULL, *rep;
    char dup[160];
    if (r->msg_id[0] && find_msg_id(c, dev, r->msg_id)) {
        free(payload);
        payload = NULL;
        code = "duplicate_message_id";
        snprintf(dup, sizeof(dup), "messageId %s is already pending for %s", r->msg_id, dev->id);
        message = dup;
    } else {
        log = gw__cmd_log_event(c, dev, r, code ? gw__cmd_error_status(code) : "success");
    }
    if (payload)
        rep = reply_event(c, dev, r->op, r->fn, r->msg_id, payload, "success");
    else
        rep = gw__cmd_error_event(c, dev, r->op, r->fn, r->msg_id, code, message);
    if (rep && !log)
        rep->cmd_status = NULL; /* a duplicate: the pending command's row is not this one's */
    if (log) {
        log->next = rep;
        gw__commands_emit(c, log, rep ? rep : log, rep ? 2 : 1);
    } else {
        emit1(c, rep);
    }
    if (!code)
        return;
    gw_metric_inc(strcmp(code, "device_offline") == 0 ? GW_M_CMD_OFFLINE : GW_M_CMD_REJECTED);
    gw_command cmd = {.op = r->op, .dev = dev, .fn = r->fn};
    memcpy(cmd.msg_id, r->msg_id, sizeof(cmd.msg_id));
    log_outcome(dev, &cmd, code, message);
}

void gw__commands_answer(gw_commands *c, const gw_device *dev, const gw__cmd_req *r,
                         const char *code, const char *message, char *payload)
{
    pthread_mutex_lock(&c->mu);
    answer_locked(c, dev, r, code, message, payload);
    pthread_mutex_unlock(&c->mu);
}

void gw__commands_add(gw_commands *c, const gw_device *dev, gw__cmd_req *r)
{
    const gw_north_cfg *nc = &c->cfg->north;
    const gw_product *p = dev->product;
    dev_cmds *d = &c->devs[dev->index];
    char msg[160];

    pthread_mutex_lock(&c->mu);
    if (c->heap_n >= nc->max_pending || d->n >= nc->max_pending_per_device) {
        if (d->n >= nc->max_pending_per_device)
            snprintf(msg, sizeof(msg),
                     "%u commands pending for this device (max_pending_per_device)", d->n);
        else
            snprintf(msg, sizeof(msg), "%u commands pending in the gateway (max_pending)",
                     c->heap_n);
        answer_locked(c, dev, r, "busy", msg, NULL);
        goto out;
    }
    if (find_msg_id(c, dev, r->msg_id)) {
        snprintf(msg, sizeof(msg), "messageId %s is already pending for %s", r->msg_id, dev->id);
        answer_locked(c, dev, r, "duplicate_message_id", msg, NULL);
        goto out;
    }
    gw_session *s = owner_of(c->rt, dev);
    if (s && !s->ops->command) {
        gw_session_release(s);
        s = NULL;
    }
    if (!s && !p->cmd_queue_offline) {
        answer_locked(c, dev, r, "device_offline", "the device is offline", NULL);
        goto out;
    }
    cmd_entry *e = gw_calloc(GW_AREA_RUNTIME, 1, sizeof(*e));
    if (!e || heap_push(c, e) != 0) {
        gw_free(GW_AREA_RUNTIME, e);
        if (s)
            gw_session_release(s);
        answer_locked(c, dev, r, "busy", "out of memory", NULL);
        goto out;
    }
    e->cmd.op = r->op;
    e->cmd.dev = dev;
    memcpy(e->cmd.msg_id, r->msg_id, sizeof(e->cmd.msg_id));
    e->cmd.seq = next_seq(c, dev);
    if (json_codec(p))
        memcpy(e->cmd.dev_msg_id, r->msg_id, sizeof(e->cmd.dev_msg_id));
    else
        snprintf(e->cmd.dev_msg_id, sizeof(e->cmd.dev_msg_id), "%" PRIu32, e->cmd.seq);
    e->cmd.fn = r->fn;
    e->cmd.args = r->args;
    r->args = NULL;
    e->timeout_ms = r->fn ? r->fn->timeout_ms : GW_CMD_WRITE_TIMEOUT_MS;
    e->state = ST_WAIT;
    /* waiting: for the product's TTL when it queues, else for the loop to send it */
    set_deadline(c, e, gw_now_ms() + (p->cmd_queue_offline ? p->cmd_ttl_ms : e->timeout_ms));
    cmd_entry **pp = &d->head;
    while (*pp)
        pp = &(*pp)->next;
    *pp = e;
    d->n++;
    gw_metric_inc(GW_M_CMD_PENDING);
    if (!s)
        gw_metric_inc(GW_M_CMD_QUEUED);
    /* the log row goes to the store before any loop can see (and answer) the command */
    emit1(c, gw__cmd_log_event(c, dev, r, s ? "sent" : "queued"));
    pthread_mutex_unlock(&c->mu);
    if (s)
        post_route(c, s);
    else
        GW_LOG_DEBUG(AREA, dev->id, NULL, "command queued for an offline device",
                     "msg_id=%s ttl_ms=%u", r->msg_id, p->cmd_ttl_ms);
    return;
out:
    pthread_mutex_unlock(&c->mu);
}

/* ---- device replies ---- */

int gw_commands_reply(gw_session *s, gw_thing_msg *m, uint32_t token, bool want_commit,
                      gw_reject *rej)
{
    gw_commands *c = s->loop->rt->commands;
    gw_command_op op = m->kind == GW_MSG_WRITE_REPLY ? GW_CMD_WRITE : GW_CMD_INVOKE;
    cmd_entry *e;
    char *payload = NULL;
    const char *status = "success";
    bool refuse = false;
    int rc = 0;

    if (!c)
        return gw_reject_set(rej, GW_R_UNSUPPORTED, "commands are not enabled (north)");
    pthread_mutex_lock(&c->mu);
    for (e = c->devs[s->dev->index].head; e; e = e->next)
        if (e->state == ST_SENT && e->cmd.op == op && strcmp(e->cmd.dev_msg_id, m->msg_id) == 0)
            break;
    if (!e) {
        pthread_mutex_unlock(&c->mu);
        gw_metric_inc(GW_M_CMD_LATE);
        gw_reject_set(rej, GW_R_LATE_REPLY,
                      "no pending %s with messageId %.64s (late, or never "
                      "asked)",
                      op == GW_CMD_WRITE ? "write" : "invoke", m->msg_id);
        gw_dispatch_rejected(s, rej, m->msg_id);
        return GW_EINVAL;
    }
    entry_remove(c, e);
    gw_metric_inc(GW_M_CMD_REPLIED);
    if (!m->success) {
        status = "failed";
        payload = gw__cmd_error_json("device_error",
                                     m->error[0] ? m->error : "the device reported a failure");
    } else if (op == GW_CMD_INVOKE) {
        json_t *out = NULL;
        const gw_function_spec *fn = e->cmd.fn;
        if (gw_tm_check_params(fn->outputs, fn->n_outputs, "outputs", m->values, &out, rej)) {
            status = "failed";
            refuse = true;
            payload = gw__cmd_error_json("invalid_output", rej->detail);
        } else {
            payload = gw__cmd_success_json("outputs", out);
        }
    } else {
        payload = gw__cmd_success_json(NULL, NULL);
    }
    gw_event *ev =
        payload ? reply_event(c, s->dev, op, e->cmd.fn, e->cmd.msg_id, payload, status) : NULL;
    if (!ev) {
        rc = GW_ENOMEM;
    } else {
        if (want_commit && !refuse) {
            gw_session_retain(s);
            ev->sess = s;
            ev->token = token;
        }
        /* after what the device sent before its reply, and before the table forgets the id */
        gw_loop_flush_events(s->loop);
        emit1(c, ev);
    }
    pthread_mutex_unlock(&c->mu);
    GW_LOG_DEBUG(AREA, s->dev->id, NULL, "command replied", "op=%s msg_id=%s status=%s",
                 gw__cmd_op_name(op), e->cmd.msg_id, status);
    entry_free(e);
    if (refuse) {
        gw_dispatch_rejected(s, rej, m->msg_id);
        return GW_EINVAL;
    }
    if (rc == 0)
        gw_metric_inc(GW_M_MSG_ACCEPTED);
    return rc;
}

/* ---- deadlines ---- */

void gw_commands_tick(gw_commands *c, int64_t now_ms)
{
    pthread_mutex_lock(&c->mu);
    while (c->heap_n && c->heap[0]->deadline <= now_ms) {
        cmd_entry *e = c->heap[0];
        const gw_command *cmd = &e->cmd;
        const char *code = e->code;
        char msg[160];
        if (e->state == ST_DONE) {
            snprintf(msg, sizeof(msg), "%s", e->message);
        } else if (e->state == ST_WAIT && cmd->dev->product->cmd_queue_offline) {
            code = "expired";
            snprintf(msg, sizeof(msg), "not delivered within the product's ttl_ms (%u)",
                     cmd->dev->product->cmd_ttl_ms);
            gw_metric_inc(GW_M_CMD_EXPIRED);
        } else {
            code = "timeout";
            snprintf(msg, sizeof(msg), "no reply within %u ms", e->timeout_ms);
            gw_metric_inc(GW_M_CMD_TIMEOUT);
        }
        entry_remove(c, e);
        emit1(c, gw__cmd_error_event(c, cmd->dev, cmd->op, cmd->fn, cmd->msg_id, code, msg));
        log_outcome(cmd->dev, cmd, code, msg);
        entry_free(e);
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
    c->cfg = rt->cfg;
    c->reader = reader;
    c->devs =
        gw_calloc(GW_AREA_RUNTIME, rt->cfg->n_devices ? rt->cfg->n_devices : 1, sizeof(*c->devs));
    if (!c->devs) {
        gw_free(GW_AREA_RUNTIME, c);
        return gw_error_set(err, GW_ENOMEM, "out of memory");
    }
    pthread_mutex_init(&c->mu, NULL);
    *out = c;
    return 0;
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
        cmd_entry *e = c->heap[c->heap_n - 1];
        entry_remove(c, e);
        entry_free(e);
    }
    pthread_mutex_destroy(&c->mu);
    gw_free(GW_AREA_RUNTIME, c->heap);
    gw_free(GW_AREA_RUNTIME, c->devs);
    gw_free(GW_AREA_RUNTIME, c);
}

gw_store_reader *gw__commands_reader(const gw_commands *c)
{
    return c->reader;
}

const gw_config *gw__commands_cfg(const gw_commands *c)
{
    return c->cfg;
}

/* command_route.c: the device side of the command table: the loop that holds a device's session
 * gets a message to send its waiting commands (passed on to the device's new session after a
 * take-over), a session that becomes able to take commands sends the queued ones, and the
 * device's reply is matched to its command, validated and turned into the reply event. */
#include "command_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/alloc.h"
#include "../core/dispatch.h"
#include "../util/log.h"
#include "../util/metrics.h"
#include "../core/runtime.h"

#define AREA "command"

typedef struct route_msg {
    gw_inbox_msg m;
    gw_commands *c;
    gw_session *s; /* holds a reference */
} route_msg;

gw_session *gw__cmd_owner_of(gw_runtime *rt, const gw_device *dev)
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

/* On s's loop, lock held: hands the device's waiting commands to the session, in arrival order.
 * from_route: a routing message (a session that lost its device passes the commands on to the
 * new owner, or, with none, answers them when the product does not queue). Returns the retained
 * session to route to, or NULL. */
static gw_session *send_waiting(gw_commands *c, gw_session *s, bool from_route)
{
    const gw_device *dev = s->dev;
    bool queue = dev->product->cmd_queue_offline;
    gw__cmd_entry *e, *next;

    if (!s->ops->command || !owns(c->rt, s)) {
        if (!from_route)
            return NULL;
        gw_session *o = gw__cmd_owner_of(c->rt, dev);
        if (o && o != s && o->ops->command)
            return o;
        if (o)
            gw_session_release(o);
        for (e = c->devs[dev->index].head; e && !queue; e = next) {
            next = e->next;
            if (e->state == GW__CMD_WAIT)
                gw__cmd_entry_fail(c, e, "device_offline",
                                   "the device went offline before the command was sent");
        }
        return NULL;
    }
    for (e = c->devs[dev->index].head; e; e = next) {
        next = e->next;
        if (e->state != GW__CMD_WAIT)
            continue;
        gw_error err = {0, ""};
        int rc = s->ops->command(s, &e->cmd, &err);
        if (rc == 0) {
            e->state = GW__CMD_SENT;
            gw__cmd_set_deadline(c, e, gw_now_ms() + e->timeout_ms);
            gw_metric_inc(GW_M_CMD_SENT);
            if (GW_LOG_DEBUG >= gw_log_level) {
                char q1[160], q2[160];
                gw_log_write(GW_LOG_DEBUG, AREA, dev->id, NULL, "command sent",
                             "op=%s msg_id=%s dev_msg_id=%s", gw__cmd_op_name(e->cmd.op),
                             gw_log_value(q1, sizeof(q1), e->cmd.msg_id),
                             gw_log_value(q2, sizeof(q2), e->cmd.dev_msg_id));
            }
        } else if (rc == GW_EBUSY) {
            continue; /* MQTT 5: the device's receive maximum is reached; sent at its next ready */
        } else if (queue && (rc == GW_ENOTFOUND || rc == GW_ECLOSED)) {
            /* not able to take commands yet: it waits for the session's ready (the local API is
             * told "queued" now rather than waiting up to the product's ttl_ms) */
            gw__cmd_notify(c, &e->mail, "queued", NULL, NULL, false, NULL);
            continue;
        } else if (rc == GW_ECLOSED) {
            gw__cmd_entry_fail(c, e, "device_offline", "the device's session is closing");
        } else {
            gw__cmd_entry_fail(c, e, "send_failed", err.msg[0] ? err.msg : gw_strerror(rc));
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
        gw__cmd_post_route(c, o);
    gw_session_release(r->s);
    gw_free(GW_AREA_RUNTIME, r);
}

void gw__cmd_post_route(gw_commands *c, gw_session *s)
{
    route_msg *r = gw_malloc(GW_AREA_RUNTIME, sizeof(*r));
    if (!r) { /* the waiting commands go at the session's next ready, or time out */
        gw_session_release(s);
        return;
    }
    r->m.fn = on_route;
    r->c = c;
    r->s = s;
    gw_loop_post(s->loop, &r->m);
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

/* ---- device replies ---- */

/* The reply payload for a matched command; *status and *refuse (outputs that break the
 * function's spec: refused to the device, rej filled) set. NULL on out of memory. */
static char *reply_payload(const gw__cmd_entry *e, gw_thing_msg *m, const char **status,
                           bool *refuse, gw_reject *rej)
{
    *status = "success";
    *refuse = false;
    if (!m->success) {
        *status = "failed";
        return gw__cmd_error_json("device_error",
                                  m->error[0] ? m->error : "the device reported a failure");
    }
    if (e->cmd.op != GW_CMD_INVOKE)
        return gw__cmd_success_json(NULL, NULL);
    json_t *out = NULL;
    const gw_function_spec *fn = e->cmd.fn;
    if (gw_tm_check_params(fn->outputs, fn->n_outputs, "outputs", m->values, &out, rej)) {
        *status = "failed";
        *refuse = true;
        return gw__cmd_error_json("invalid_output", rej->detail);
    }
    return gw__cmd_success_json("outputs", out);
}

int gw_commands_reply(gw_session *s, gw_thing_msg *m, uint32_t token, bool want_commit,
                      gw_reject *rej)
{
    gw_commands *c = s->loop->rt->commands;
    gw_command_op op = m->kind == GW_MSG_WRITE_REPLY ? GW_CMD_WRITE : GW_CMD_INVOKE;
    gw__cmd_entry *e;
    const char *status;
    bool refuse;
    int rc = 0;

    if (!c)
        return gw_reject_set(rej, GW_R_UNSUPPORTED, "commands are not enabled (north)");
    pthread_mutex_lock(&c->mu);
    /* a reply without an id (Teltonika's Codec 12 carries none) answers the oldest command of its
     * kind sent to the device: such devices answer in order */
    for (e = c->devs[s->dev->index].head; e; e = e->next)
        if (e->state == GW__CMD_SENT && e->cmd.op == op &&
            (m->msg_id[0]
                 ? strcmp(e->cmd.dev_msg_id, m->msg_id) == 0
                 : op != GW_CMD_INVOKE || (e->cmd.fn && strcmp(e->cmd.fn->id, m->name) == 0)))
            break;
    if (!e) {
        pthread_mutex_unlock(&c->mu);
        gw_metric_inc(GW_M_CMD_LATE);
        gw_reject_set(rej, GW_R_LATE_REPLY,
                      "no pending %s with messageId %.64s (late, or never asked)",
                      gw__cmd_op_name(op), m->msg_id);
        gw_dispatch_rejected(s, rej, m->msg_id);
        return GW_EINVAL;
    }
    gw__cmd_entry_remove(c, e);
    gw_metric_inc(GW_M_CMD_REPLIED);
    char *payload = reply_payload(e, m, &status, &refuse, rej);
    gw_event *ev = payload ? gw__cmd_reply_event(c, s->dev, op, gw__cmd_event_name(op, e->cmd.fn),
                                                 e->cmd.msg_id, payload, status)
                           : NULL;
    if (!ev) {
        rc = GW_ENOMEM;
        gw__cmd_notify(c, &e->mail, "failed", "store_error", NULL, false, NULL);
    } else {
        ev->gateway_made = false;     /* the device's own reply */
        if (want_commit && !refuse) { /* acknowledged to the device once committed */
            gw_session_retain(s);
            ev->sess = s;
            ev->token = token;
        }
        /* after what the device sent before its reply, and before the table forgets the id */
        gw_loop_flush_events(s->loop);
        gw__cmd_notify(c, &e->mail, status,
                       strcmp(status, "success") ? (refuse ? "invalid_output" : "device_error")
                                                 : NULL,
                       NULL, false, ev->payload);
        gw__cmd_emit1(c, ev);
    }
    pthread_mutex_unlock(&c->mu);
    if (GW_LOG_DEBUG >= gw_log_level) {
        char q[160];
        gw_log_write(GW_LOG_DEBUG, AREA, s->dev->id, NULL, "command replied",
                     "op=%s msg_id=%s status=%s", gw__cmd_op_name(op),
                     gw_log_value(q, sizeof(q), e->cmd.msg_id), status);
    }
    gw__cmd_entry_free(e);
    if (refuse) {
        gw_dispatch_rejected(s, rej, m->msg_id);
        return GW_EINVAL;
    }
    if (rc == 0)
        gw_metric_inc(GW_M_MSG_ACCEPTED);
    return rc;
}

/* dispatch.c: validation against the thing model, normalisation into an event, and the counters
 * and log lines for accepted and rejected device messages; command replies go to the command
 * table. */
#include "dispatch.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../util/json_write.h"
#include "../util/log.h"
#include "../util/metrics.h"
#include "runtime.h"

void gw_dispatch_rejected(gw_session *s, const gw_reject *rej, const char *msg_id)
{
    char peer[64], q[256], qid[160];
    gw_metric_reject(rej->reason);
    if (GW_LOG_WARN < gw_log_level)
        return;
    s->ops->peer(s, peer, sizeof(peer));
    /* the device's messageId is the device's text: quoted like every value from outside */
    gw_log_write(GW_LOG_WARN, s->ops->area, s->dev ? s->dev->id : NULL, peer, "message rejected",
                 "reason=%s msg_id=%s detail=%s", gw_reason_name(rej->reason),
                 gw_log_value(qid, sizeof(qid), msg_id && msg_id[0] ? msg_id : "-"),
                 gw_log_quote(q, sizeof(q), rej->detail));
}

static const gw_event_kind kinds[] = {
    [GW_MSG_PROPERTY_REPORT] = GW_EV_PROPERTY,
    [GW_MSG_EVENT] = GW_EV_EVENT,
};

int gw_dispatch_message(gw_session *s, gw_thing_msg *m, uint32_t token, bool want_commit,
                        gw_reject *rej)
{
    const gw_product *p = s->dev->product;
    json_t *norm = NULL;
    char *payload = NULL;
    int rc;

    if (m->norm_text && (m->kind == GW_MSG_PROPERTY_REPORT || m->kind == GW_MSG_EVENT)) {
        /* the codec's reader checked and normalised it already, with the same rules */
        payload = m->norm_text;
        m->norm_text = NULL;
        goto store;
    }
    switch (m->kind) {
    case GW_MSG_PROPERTY_REPORT:
        if (gw_tm_report_as_is(p, m->values)) { /* binary codecs' reports: no normalised copy */
            payload = gw_json_write(m->values);
            goto store;
        }
        rc = gw_tm_check_report(p, m->values, &norm, rej);
        break;
    case GW_MSG_EVENT:
        rc = gw_tm_check_event(p, m->name, m->values, &norm, rej);
        break;
    case GW_MSG_FUNCTION_REPLY:
    case GW_MSG_WRITE_REPLY:
        /* matched with the pending command (which counts and logs a refusal itself) */
        if (s->loop->rt->commands && s->loop->rt->command_reply)
            return s->loop->rt->command_reply(s, m, token, want_commit, rej);
        rc = gw_reject_set(rej, GW_R_UNSUPPORTED, "no commands are pending (north disabled)");
        break;
    default:
        rc = gw_reject_set(rej, GW_R_UNSUPPORTED, "message kind not accepted here");
        break;
    }
    if (rc) {
        gw_dispatch_rejected(s, rej, m->msg_id);
        return rc;
    }

    payload = gw_json_write(norm);
store:;
    gw_event *ev = gw_store_event_new(s->loop->rt->store, kinds[m->kind], s->dev);
    if (!ev || !payload) {
        if (ev)
            gw_store_event_done(s->loop->rt->store, ev);
        gw_free(GW_AREA_EVENT, payload);
        json_decref(norm);
        return GW_ENOMEM;
    }
    ev->payload = payload;
    if (m->timestamp_ms > 0)
        ev->ts = m->timestamp_ms;
    memcpy(ev->msg_id, m->msg_id, sizeof(ev->msg_id));
    if (m->kind == GW_MSG_EVENT)
        memcpy(ev->name, m->name, sizeof(ev->name));
    json_decref(norm); /* the writer reads a report's latest values from its payload */
    if (want_commit) {
        gw_session_retain(s);
        ev->sess = s;
        ev->token = token;
    }
    gw_loop_queue_event(s->loop, ev);
    gw_metric_inc(GW_M_MSG_ACCEPTED);
    return 0;
}

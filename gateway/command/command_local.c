/* command_local.c: commands of the local origin (the HTTP management API) on the main loop: they
 * enter the same table and routing as the cloud's, and each one's outcome (reply, error, timeout,
 * queued) comes back to the main loop through one uv_async mailbox, whichever thread ended it; with
 * no north thread, the table's deadlines are ticked from a timer there too. */
#include "command_internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "../util/alloc.h"
#include "../util/metrics.h"
#include "../core/runtime.h"

#define TICK_MS       50
#define LOCAL_SYNC_MS 50 /* property reads: how long the main loop waits for the state tables */

void gw__cmd_notify(gw_commands *c, gw__cmd_mail **mailp, const char *status, const char *code,
                    const char *path, bool gateway_full, const char *payload)
{
    gw__cmd_mail *m = *mailp;
    if (!m)
        return;
    *mailp = NULL;
    m->status = status;
    m->code = code;
    m->gateway_full = gateway_full;
    snprintf(m->path, sizeof(m->path), "%s", path ? path : "");
    if (payload) {
        size_t n = strlen(payload) + 1;
        if ((m->payload = gw_malloc(GW_AREA_RUNTIME, n)))
            memcpy(m->payload, payload, n);
    }
    m->next = NULL;
    *c->mail_tail = m;
    c->mail_tail = &m->next;
    if (c->loop)
        uv_async_send(&c->mail_wake);
}

/* Main loop: tells every outcome queued so far (outside the lock: done may submit again). */
static void deliver(gw_commands *c)
{
    pthread_mutex_lock(&c->mu);
    gw__cmd_mail *m = c->mail_head;
    c->mail_head = NULL;
    c->mail_tail = &c->mail_head;
    pthread_mutex_unlock(&c->mu);
    while (m) {
        gw__cmd_mail *next = m->next;
        gw_command_outcome o = {m->msg_id,  m->status, m->code,
                                m->payload, m->path,   m->gateway_full};
        m->done(m->arg, &o);
        gw_free(GW_AREA_RUNTIME, m->payload);
        gw_free(GW_AREA_RUNTIME, m);
        m = next;
    }
}

static void on_mail(uv_async_t *h)
{
    deliver(h->data);
}

/* Runs only while commands are pending: an idle gateway is not woken 20 times a second. */
static void on_tick(uv_timer_t *t)
{
    gw_commands *c = t->data;
    gw_commands_tick(c, gw_now_ms());
    pthread_mutex_lock(&c->mu);
    bool idle = c->heap_n == 0;
    pthread_mutex_unlock(&c->mu);
    if (idle)
        uv_timer_stop(t);
}

int gw_commands_attach(gw_commands *c, uv_loop_t *loop, bool tick)
{
    int rc = uv_async_init(loop, &c->mail_wake, on_mail);
    if (rc)
        return rc;
    c->mail_wake.data = c;
    uv_timer_init(loop, &c->tick);
    c->tick.data = c;
    c->main_ticks = tick;
    pthread_mutex_lock(&c->mu);
    c->loop = loop;
    pthread_mutex_unlock(&c->mu);
    return 0;
}

void gw_commands_detach(gw_commands *c)
{
    if (!c || !c->loop)
        return;
    uv_timer_stop(&c->tick);
    pthread_mutex_lock(&c->mu);
    for (uint32_t i = 0; i < c->heap_n; i++)
        gw__cmd_notify(c, &c->heap[i]->mail, "failed", "shutting_down", NULL, false, NULL);
    c->loop = NULL; /* nothing wakes the handle being closed */
    pthread_mutex_unlock(&c->mu);
    deliver(c);
    uv_close((uv_handle_t *)&c->mail_wake, NULL);
    uv_close((uv_handle_t *)&c->tick, NULL);
}

void gw_commands_new_id(gw_commands *c, char *buf, size_t cap)
{
    if (!c->id_base)
        c->id_base = gw_now_ms();
    snprintf(buf, cap, "api-%" PRId64 "-%" PRIu32, c->id_base, ++c->next_id);
}

int gw_commands_submit(gw_commands *c, gw_command_op op, const gw_device *dev, json_t *request,
                       uint32_t timeout_ms, gw_store_reader *reader, gw_command_done_fn done,
                       void *arg)
{
    gw__cmd_req r;
    if (!c || !c->loop)
        return GW_ECLOSED;
    gw__cmd_mail *m = gw_calloc(GW_AREA_RUNTIME, 1, sizeof(*m));
    if (!m)
        return GW_ENOMEM;
    m->done = done;
    m->arg = arg;
    gw_metric_inc(GW_M_CMD_RECEIVED);
    gw__cmd_parse_obj(dev->product, op, request, &r);
    snprintf(m->msg_id, sizeof(m->msg_id), "%s", r.msg_id);
    r.mail = m;
    r.timeout_ms = timeout_ms;
    gw__commands_take(c, dev, &r, reader, LOCAL_SYNC_MS);
    /* without north, only the local origin adds commands: the timer runs while any is pending */
    if (c->main_ticks && !uv_is_active((uv_handle_t *)&c->tick))
        uv_timer_start(&c->tick, on_tick, TICK_MS, TICK_MS);
    if (r.mail) { /* every path tells it; a guard so that done still runs exactly once */
        pthread_mutex_lock(&c->mu);
        gw__cmd_notify(c, &r.mail, "failed", "store_error", NULL, false, NULL);
        pthread_mutex_unlock(&c->mu);
    }
    gw__cmd_req_clear(&r);
    return 0;
}

/* command_local.c: commands of the local origin (the HTTP API) through the real table, with a
 * "main" loop the test runs: each submission's outcome is told exactly once on that loop
 * (device reply, device error, invalid input with its JSON path, offline reject vs queued, a
 * shortened timeout, the per-device and gateway-wide bounds, a read), the same log rows and
 * reply events as a cloud command, and detach telling "shutting_down" to what still waits. */
#include "command_test.h"

typedef struct told {
    int n;
    char msg_id[64], status[32], code[64], path[96], payload[512];
    bool gateway_full;
} told;

static void on_done(void *arg, const gw_command_outcome *o)
{
    told *t = arg;
    t->n++;
    snprintf(t->msg_id, sizeof(t->msg_id), "%s", o->msg_id);
    snprintf(t->status, sizeof(t->status), "%s", o->status);
    snprintf(t->code, sizeof(t->code), "%s", o->code ? o->code : "(none)");
    snprintf(t->path, sizeof(t->path), "%s", o->path ? o->path : "");
    snprintf(t->payload, sizeof(t->payload), "%s", o->payload ? o->payload : "(null)");
    t->gateway_full = o->gateway_full;
}

static void run_main(uv_loop_t *l)
{
    for (int i = 0; i < 3; i++)
        uv_run(l, UV_RUN_NOWAIT);
}

static int submit(ct_env *e, gw_command_op op, const char *dev, const char *req, uint32_t timeout,
                  told *t)
{
    json_t *r = json_loads(req, 0, NULL);
    int rc =
        gw_commands_submit(e->c, op, gw_config_device(e->cfg, dev), r, timeout, NULL, on_done, t);
    json_decref(r);
    return rc;
}

static void finish(ct_env *e, uv_loop_t *l)
{
    gw_commands_detach(e->c);
    run_main(l);
    CHECK_INT(uv_loop_close(l), 0);
    ct_teardown(e);
}

static void test_reply(void)
{
    ct_env e;
    ct_sess s;
    uv_loop_t l;
    told t = {0}, t2 = {0};
    gw_reject rej;
    ct_setup(&e, "");
    uv_loop_init(&l);
    /* not attached yet: refused, done never runs */
    CHECK_INT(
        submit(&e, GW_CMD_INVOKE, "t-001", "{\"messageId\":\"x\",\"function\":\"ping\"}", 0, &t),
        GW_ECLOSED);
    CHECK_INT(gw_commands_attach(e.c, &l, true), 0);
    ct_online(&e, &s, "t-001");
    char id[64];
    gw_commands_new_id(e.c, id, sizeof(id));
    CHECK(strncmp(id, "api-", 4) == 0);
    char req[256];
    snprintf(req, sizeof(req),
             "{\"messageId\":\"%s\",\"function\":\"reboot\",\"inputs\":{\"delay_s\":5}}", id);
    CHECK_INT(submit(&e, GW_CMD_INVOKE, "t-001", req, 0, &t), 0);
    CHECK_INT(e.n_evs, 1); /* the log row, as for the cloud */
    CHECK_STR(e.evs[0]->cmd_status, "sent");
    CHECK_STR(e.evs[0]->msg_id, id);
    ct_pump(&e);
    CHECK_INT(s.n_sent, 1);
    CHECK_STR(s.last.dev_msg_id, id);
    run_main(&l);
    CHECK_INT(t.n, 0); /* nothing to tell before the device answers */
    gw_thing_msg r;
    memset(&r, 0, sizeof(r));
    r.kind = GW_MSG_FUNCTION_REPLY;
    snprintf(r.msg_id, sizeof(r.msg_id), "%s", id);
    r.success = 1;
    r.values = json_loads("{\"ok\":true}", 0, NULL);
    CHECK_INT(gw_commands_reply(&s.base, &r, 0, false, &rej), 0);
    gw_thing_msg_clear(&r);
    CHECK_INT(t.n, 0); /* told on the main loop, not on the device's */
    run_main(&l);
    CHECK_INT(t.n, 1);
    CHECK_STR(t.status, "success");
    CHECK_STR(t.code, "(none)");
    CHECK_STR(t.msg_id, id);
    CHECK_STR(t.payload, "{\"success\":true,\"outputs\":{\"ok\":true}}");
    CHECK_INT(e.n_evs, 2);
    CHECK_STR(e.evs[1]->cmd_status, "success");

    /* a device's error reply */
    CHECK_INT(submit(&e, GW_CMD_WRITE, "t-001",
                     "{\"messageId\":\"w1\",\"properties\":{\"mode\":\"eco\"}}", 0, &t2),
              0);
    ct_pump(&e);
    memset(&r, 0, sizeof(r));
    r.kind = GW_MSG_WRITE_REPLY;
    snprintf(r.msg_id, sizeof(r.msg_id), "w1");
    snprintf(r.error, sizeof(r.error), "busy motor");
    CHECK_INT(gw_commands_reply(&s.base, &r, 0, false, &rej), 0);
    gw_thing_msg_clear(&r);
    run_main(&l);
    CHECK_INT(t2.n, 1);
    CHECK_STR(t2.status, "failed");
    CHECK_STR(t2.code, "device_error");
    CHECK_CONTAINS(t2.payload, "busy motor");
    CHECK_INT(t.n, 1); /* told once */
    finish(&e, &l);
}

static void test_rejected(void)
{
    ct_env e;
    uv_loop_t l;
    told t = {0}, t2 = {0}, t3 = {0}, t4 = {0};
    ct_setup(&e, "");
    uv_loop_init(&l);
    CHECK_INT(gw_commands_attach(e.c, &l, true), 0);
    CHECK_INT(submit(&e, GW_CMD_INVOKE, "t-001",
                     "{\"messageId\":\"a1\",\"function\":\"reboot\",\"inputs\":{\"delay_s\":99}}",
                     0, &t),
              0);
    CHECK_INT(submit(&e, GW_CMD_WRITE, "t-001",
                     "{\"messageId\":\"a2\",\"properties\":{\"temperature\":3}}", 0, &t2),
              0);
    CHECK_INT(submit(&e, GW_CMD_INVOKE, "t-001",
                     "{\"messageId\":\"a3\",\"function\":\"reboot\",\"inputs\":{\"delay_s\":1}}", 0,
                     &t3),
              0);
    CHECK_INT(submit(&e, GW_CMD_INVOKE, "t-001",
                     "{\"messageId\":\"a4\",\"function\":\"reboot\",\"inputs\":{\"x\":1}}", 0, &t4),
              0);
    CHECK_INT(t.n + t2.n + t3.n + t4.n, 0); /* never told from inside submit */
    run_main(&l);
    CHECK_INT(t.n, 1);
    CHECK_STR(t.status, "rejected");
    CHECK_STR(t.code, "invalid_input");
    CHECK_STR(t.path, "inputs.delay_s");
    CHECK_INT(t2.n, 1);
    CHECK_STR(t2.code, "not_writable");
    CHECK_STR(t2.path, "properties.temperature");
    CHECK_INT(t3.n, 1); /* t-001 is offline, thermo does not queue */
    CHECK_STR(t3.status, "offline");
    CHECK_STR(t3.code, "device_offline");
    CHECK_INT(t4.n, 1);
    CHECK_STR(t4.path, "inputs.x");
    /* each one logged and replied like a cloud command */
    CHECK_INT(e.n_evs, 8);
    CHECK_STR(e.evs[0]->cmd_status, "rejected");
    CHECK_STR(e.evs[4]->cmd_status, "offline");
    finish(&e, &l);
}

static void test_queue_timeout_bounds(void)
{
    ct_env e;
    ct_sess s;
    uv_loop_t l;
    told t = {0}, t2 = {0}, t3 = {0}, t4 = {0};
    ct_setup(&e, "\"max_pending_per_device\": 1, \"max_pending\": 2");
    uv_loop_init(&l);
    CHECK_INT(gw_commands_attach(e.c, &l, false), 0);
    /* queued for an offline device of a queueing product: told "queued" at once, once */
    CHECK_INT(
        submit(&e, GW_CMD_INVOKE, "q-001", "{\"messageId\":\"q1\",\"function\":\"ping\"}", 0, &t),
        0);
    run_main(&l);
    CHECK_INT(t.n, 1);
    CHECK_STR(t.status, "queued");
    CHECK_STR(e.evs[0]->cmd_status, "queued");
    /* the device's bound: busy, not the gateway's */
    CHECK_INT(
        submit(&e, GW_CMD_INVOKE, "q-001", "{\"messageId\":\"q2\",\"function\":\"ping\"}", 0, &t2),
        0);
    run_main(&l);
    CHECK_STR(t2.code, "busy");
    CHECK(!t2.gateway_full);
    /* a shortened timeout */
    ct_online(&e, &s, "t-001");
    CHECK_INT(submit(&e, GW_CMD_INVOKE, "t-001",
                     "{\"messageId\":\"s1\",\"function\":\"reboot\",\"inputs\":{\"delay_s\":1}}",
                     200, &t3),
              0);
    ct_pump(&e);
    /* the gateway's bound (2 pending) */
    CHECK_INT(
        submit(&e, GW_CMD_INVOKE, "t-002", "{\"messageId\":\"g1\",\"function\":\"ping\"}", 0, &t4),
        0);
    run_main(&l);
    CHECK_STR(t4.code, "busy");
    CHECK(t4.gateway_full);
    int64_t now = gw_now_ms();
    gw_commands_tick(e.c, now + 150);
    run_main(&l);
    CHECK_INT(t3.n, 0);
    gw_commands_tick(e.c, now + 260);
    run_main(&l);
    CHECK_INT(t3.n, 1);
    CHECK_STR(t3.code, "timeout");
    CHECK_CONTAINS(t3.payload, "no reply within 200 ms");
    /* the queued one expires later: stored as a reply event, not told again */
    gw_commands_tick(e.c, now + 120000);
    run_main(&l);
    CHECK_INT(t.n, 1);
    finish(&e, &l);
}

static void test_detach(void)
{
    ct_env e;
    ct_sess s;
    uv_loop_t l;
    told t = {0};
    ct_setup(&e, "");
    uv_loop_init(&l);
    CHECK_INT(gw_commands_attach(e.c, &l, true), 0);
    ct_online(&e, &s, "t-001");
    CHECK_INT(
        submit(&e, GW_CMD_INVOKE, "t-001", "{\"messageId\":\"d1\",\"function\":\"ping\"}", 0, &t),
        0);
    ct_pump(&e);
    gw_commands_detach(e.c);
    CHECK_INT(t.n, 1);
    CHECK_STR(t.code, "shutting_down");
    run_main(&l);
    CHECK_INT(uv_loop_close(&l), 0);
    ct_teardown(&e);
    CHECK_INT(t.n, 1);
}

int main(void)
{
    test_reply();
    test_rejected();
    test_queue_timeout_bounds();
    test_detach();
    TEST_MAIN_END();
}

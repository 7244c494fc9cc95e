/* command_table.c: the pending-command table with fake sessions on a loop the test runs itself:
 * routing and the log row before anything else, reply matching (outputs validated, device errors,
 * late replies refused), timeouts, offline reject vs queue + ready + TTL expiry, duplicates, the
 * per-device and total bounds, binary seq ids, a session lost while routing, send failures, and
 * the pending gauge back to zero. */
#include "command_test.h"

#include <sqlite3.h>

static int64_t m(gw_metric x)
{
    return gw_metric_get(x);
}

static const gw_event *ev_at(ct_env *e, size_t i)
{
    return i < e->n_evs ? e->evs[i] : NULL;
}

#define CHECK_EV(e, i, kind_, status_)                                                             \
    do {                                                                                           \
        const gw_event *ev_ = ev_at((e), (i));                                                     \
        CHECK(ev_ != NULL);                                                                        \
        if (ev_) {                                                                                 \
            CHECK_INT(ev_->kind, (kind_));                                                         \
            CHECK_STR(ev_->cmd_status ? ev_->cmd_status : "(none)", (status_));                    \
        }                                                                                          \
    } while (0)

static gw_thing_msg reply_msg(gw_msg_kind kind, const char *msg_id, int success,
                              const char *outputs)
{
    gw_thing_msg t;
    memset(&t, 0, sizeof(t));
    t.kind = kind;
    snprintf(t.msg_id, sizeof(t.msg_id), "%s", msg_id);
    t.success = success;
    t.values = outputs ? json_loads(outputs, 0, NULL) : NULL;
    return t;
}

static void test_round_trip(void)
{
    ct_env e;
    ct_sess s;
    char buf[256];
    gw_reject rej;
    ct_setup(&e, "");
    ct_online(&e, &s, "t-001");
    int64_t recv0 = m(GW_M_CMD_RECEIVED), sent0 = m(GW_M_CMD_SENT), rep0 = m(GW_M_CMD_REPLIED);

    ct_cloud(&e, GW_CMD_INVOKE, "thermo", "t-001",
             "{\"messageId\":\"g-7\",\"function\":\"reboot\",\"inputs\":{\"delay_s\":5}}");
    /* the log row is out before the loop has even seen the command */
    CHECK_INT(e.n_evs, 1);
    CHECK_EV(&e, 0, GW_EV_COMMAND, "sent");
    CHECK_STR(e.evs[0]->cmd_op, "invoke");
    CHECK_STR(e.evs[0]->name, "reboot");
    CHECK_STR(e.evs[0]->msg_id, "g-7");
    CHECK_STR(e.evs[0]->payload,
              "{\"messageId\":\"g-7\",\"function\":\"reboot\",\"inputs\":{\"delay_s\":5}}");
    CHECK_INT(s.n_sent, 0);
    CHECK_INT(m(GW_M_CMD_PENDING), 1);
    ct_pump(&e);
    CHECK_INT(s.n_sent, 1);
    CHECK_STR(s.last.dev_msg_id, "g-7"); /* a JSON device sees the cloud's id */
    CHECK_STR(s.last.msg_id, "g-7");
    CHECK_STR(s.last_args, "{\"delay_s\":5}");
    CHECK(s.last.fn && strcmp(s.last.fn->id, "reboot") == 0);
    CHECK_INT(m(GW_M_CMD_SENT) - sent0, 1);

    gw_thing_msg r = reply_msg(GW_MSG_FUNCTION_REPLY, "g-7", 1, "{\"ok\":true}");
    CHECK_INT(gw_commands_reply(&s.base, &r, 42, true, &rej), 0);
    gw_thing_msg_clear(&r);
    CHECK_INT(e.n_evs, 2);
    CHECK_EV(&e, 1, GW_EV_FUNCTION_REPLY, "success");
    CHECK_STR(e.evs[1]->payload, "{\"success\":true,\"outputs\":{\"ok\":true}}");
    CHECK_STR(e.evs[1]->msg_id, "g-7");
    CHECK_STR(e.evs[1]->name, "reboot");
    CHECK(e.evs[1]->sess == &s.base); /* acked to the device after the commit */
    CHECK_INT(e.evs[1]->token, 42);
    CHECK_INT(m(GW_M_CMD_PENDING), 0);
    CHECK_INT(m(GW_M_CMD_RECEIVED) - recv0, 1);
    CHECK_INT(m(GW_M_CMD_REPLIED) - rep0, 1);

    /* the same reply again: late, refused, counted */
    int64_t late0 = m(GW_M_CMD_LATE);
    r = reply_msg(GW_MSG_FUNCTION_REPLY, "g-7", 1, "{\"ok\":true}");
    CHECK_INT(gw_commands_reply(&s.base, &r, 43, true, &rej), GW_EINVAL);
    gw_thing_msg_clear(&r);
    CHECK_INT(rej.reason, GW_R_LATE_REPLY);
    CHECK_CONTAINS(rej.detail, "g-7");
    CHECK_INT(m(GW_M_CMD_LATE) - late0, 1);
    CHECK_INT(e.n_evs, 2);

    /* property write: the write reply completes it */
    ct_cloud(&e, GW_CMD_WRITE, "thermo", "t-001",
             "{\"messageId\":\"g-8\",\"properties\":{\"mode\":\"eco\",\"level\":3}}");
    ct_pump(&e);
    CHECK_INT(s.n_sent, 2);
    CHECK_INT(s.last.op, GW_CMD_WRITE);
    CHECK_STR(s.last_args, "{\"mode\":\"eco\",\"level\":3}");
    /* a function reply does not complete a write */
    r = reply_msg(GW_MSG_FUNCTION_REPLY, "g-8", 1, "{\"ok\":true}");
    CHECK_INT(gw_commands_reply(&s.base, &r, 0, false, &rej), GW_EINVAL);
    gw_thing_msg_clear(&r);
    r = reply_msg(GW_MSG_WRITE_REPLY, "g-8", 1, NULL);
    CHECK_INT(gw_commands_reply(&s.base, &r, 0, false, &rej), 0);
    gw_thing_msg_clear(&r);
    CHECK_EV(&e, 3, GW_EV_WRITE_REPLY, "success");
    CHECK_STR(e.evs[3]->name, "write");
    CHECK_STR(e.evs[3]->payload, "{\"success\":true}");
    CHECK(e.evs[3]->sess == NULL); /* want_commit false */
    CHECK_STR(ct_member(e.evs[2], "messageId", buf, sizeof(buf)), "\"g-8\"");
    ct_teardown(&e);
}

static void test_reply_errors(void)
{
    ct_env e;
    ct_sess s;
    char buf[256];
    gw_reject rej;
    ct_setup(&e, "");
    ct_online(&e, &s, "t-001");
    ct_cloud(&e, GW_CMD_INVOKE, "thermo", "t-001",
             "{\"messageId\":\"a\",\"function\":\"reboot\",\"inputs\":{\"delay_s\":1}}");
    ct_cloud(&e, GW_CMD_INVOKE, "thermo", "t-001",
             "{\"messageId\":\"b\",\"function\":\"reboot\",\"inputs\":{\"delay_s\":2}}");
    ct_pump(&e);
    CHECK_INT(s.n_sent, 2);
    ct_clear_events(&e);

    /* outputs that break the function's spec: refused to the device, failed upstream */
    gw_thing_msg r = reply_msg(GW_MSG_FUNCTION_REPLY, "a", 1, "{\"ok\":\"yes\"}");
    CHECK_INT(gw_commands_reply(&s.base, &r, 5, true, &rej), GW_EINVAL);
    gw_thing_msg_clear(&r);
    CHECK_INT(rej.reason, GW_R_WRONG_TYPE);
    CHECK_EV(&e, 0, GW_EV_FUNCTION_REPLY, "failed");
    CHECK_STR(ct_member(e.evs[0], "code", buf, sizeof(buf)), "\"invalid_output\"");
    CHECK_STR(ct_member(e.evs[0], "message", buf, sizeof(buf)),
              "\"outputs.ok: expected bool, got string\"");
    CHECK(e.evs[0]->sess == NULL); /* refused: the adapter acks it as a rejection */

    /* the device says it failed */
    r = reply_msg(GW_MSG_FUNCTION_REPLY, "b", 0, NULL);
    snprintf(r.error, sizeof(r.error), "E42: overheated");
    CHECK_INT(gw_commands_reply(&s.base, &r, 6, true, &rej), 0);
    gw_thing_msg_clear(&r);
    CHECK_EV(&e, 1, GW_EV_FUNCTION_REPLY, "failed");
    CHECK_STR(e.evs[1]->payload,
              "{\"success\":false,\"code\":\"device_error\",\"message\":\"E42: overheated\"}");
    CHECK(e.evs[1]->sess == &s.base);
    CHECK_INT(m(GW_M_CMD_PENDING), 0);
    ct_teardown(&e);
}

static void test_timeout(void)
{
    ct_env e;
    ct_sess s;
    char buf[256];
    gw_reject rej;
    ct_setup(&e, "");
    ct_online(&e, &s, "t-001");
    int64_t t0 = m(GW_M_CMD_TIMEOUT);
    ct_cloud(&e, GW_CMD_INVOKE, "thermo", "t-001",
             "{\"messageId\":\"slow\",\"function\":\"reboot\",\"inputs\":{\"delay_s\":1}}");
    ct_cloud(&e, GW_CMD_WRITE, "thermo", "t-001",
             "{\"messageId\":\"w\",\"properties\":{\"mode\":\"comfort\"}}");
    ct_pump(&e);
    int64_t now = gw_now_ms();
    gw_commands_tick(e.c, now + 2900); /* reboot: 3000 ms */
    CHECK_INT(e.n_evs, 2);
    gw_commands_tick(e.c, now + 3100);
    CHECK_INT(e.n_evs, 3);
    CHECK_EV(&e, 2, GW_EV_FUNCTION_REPLY, "timeout");
    CHECK_STR(e.evs[2]->msg_id, "slow");
    CHECK_STR(e.evs[2]->payload,
              "{\"success\":false,\"code\":\"timeout\",\"message\":\"no reply within 3000 ms\"}");
    gw_commands_tick(e.c, now + GW_CMD_WRITE_TIMEOUT_MS + 100);
    CHECK_INT(e.n_evs, 4);
    CHECK_EV(&e, 3, GW_EV_WRITE_REPLY, "timeout");
    CHECK_STR(ct_member(e.evs[3], "code", buf, sizeof(buf)), "\"timeout\"");
    CHECK_INT(m(GW_M_CMD_TIMEOUT) - t0, 2);
    CHECK_INT(m(GW_M_CMD_PENDING), 0);
    /* the reply after the timeout is late */
    gw_thing_msg r = reply_msg(GW_MSG_FUNCTION_REPLY, "slow", 1, "{\"ok\":true}");
    CHECK_INT(gw_commands_reply(&s.base, &r, 0, false, &rej), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_LATE_REPLY);
    gw_thing_msg_clear(&r);
    ct_teardown(&e);
}

static void test_offline_reject(void)
{
    ct_env e;
    char buf[256];
    ct_setup(&e, "");
    int64_t off0 = m(GW_M_CMD_OFFLINE);
    ct_cloud(&e, GW_CMD_INVOKE, "thermo", "t-002",
             "{\"messageId\":\"o1\",\"function\":\"reboot\",\"inputs\":{\"delay_s\":1}}");
    CHECK_INT(e.n_evs, 2);
    CHECK_EV(&e, 0, GW_EV_COMMAND, "offline");
    CHECK_EV(&e, 1, GW_EV_FUNCTION_REPLY, "offline");
    CHECK_STR(ct_member(e.evs[1], "code", buf, sizeof(buf)), "\"device_offline\"");
    CHECK_INT(m(GW_M_CMD_OFFLINE) - off0, 1);
    CHECK_INT(m(GW_M_CMD_PENDING), 0);
    ct_teardown(&e);
}

static void test_offline_queue(void)
{
    ct_env e;
    ct_sess s;
    char buf[256];
    gw_reject rej;
    ct_setup(&e, "");
    int64_t q0 = m(GW_M_CMD_QUEUED), x0 = m(GW_M_CMD_EXPIRED);
    ct_cloud(&e, GW_CMD_INVOKE, "thermq", "q-001",
             "{\"messageId\":\"q1\",\"function\":\"reboot\",\"inputs\":{\"delay_s\":1}}");
    ct_cloud(&e, GW_CMD_WRITE, "thermq", "q-001",
             "{\"messageId\":\"q2\",\"properties\":{\"level\":10}}");
    CHECK_INT(e.n_evs, 2);
    CHECK_EV(&e, 0, GW_EV_COMMAND, "queued");
    CHECK_EV(&e, 1, GW_EV_COMMAND, "queued");
    CHECK_INT(m(GW_M_CMD_QUEUED) - q0, 2);
    CHECK_INT(m(GW_M_CMD_PENDING), 2);
    gw_commands_tick(e.c, gw_now_ms() + 10000); /* well within ttl_ms 60000 */
    CHECK_INT(e.n_evs, 2);

    /* the device comes back; nothing goes before its session says it is ready */
    ct_online(&e, &s, "q-001");
    ct_pump(&e);
    CHECK_INT(s.n_sent, 0);
    s.rc = GW_ENOTFOUND; /* e.g. MQTT: not subscribed yet: they keep waiting */
    gw_commands_ready(&s.base);
    CHECK_INT(s.n_sent, 0);
    CHECK_INT(e.n_evs, 2);
    s.rc = 0;
    gw_commands_ready(&s.base);
    CHECK_INT(s.n_sent, 2); /* in arrival order: the write went last */
    CHECK_INT(s.last.op, GW_CMD_WRITE);
    gw_thing_msg r = reply_msg(GW_MSG_FUNCTION_REPLY, "q1", 1, "{\"ok\":true}");
    CHECK_INT(gw_commands_reply(&s.base, &r, 0, false, &rej), 0);
    gw_thing_msg_clear(&r);
    CHECK_EV(&e, 2, GW_EV_FUNCTION_REPLY, "success");
    CHECK_INT(m(GW_M_CMD_PENDING), 1);

    /* queued while offline and never delivered: expired after ttl_ms */
    ct_offline(&e, &s);
    ct_cloud(&e, GW_CMD_INVOKE, "thermq", "q-001", "{\"messageId\":\"q3\",\"function\":\"ping\"}");
    CHECK_EV(&e, 3, GW_EV_COMMAND, "queued");
    int64_t now = gw_now_ms();
    gw_commands_tick(e.c, now + 59000); /* q2 (sent, 5000 ms) timed out; q3 still waits */
    CHECK_INT(e.n_evs, 5);
    CHECK_EV(&e, 4, GW_EV_WRITE_REPLY, "timeout");
    CHECK_STR(e.evs[4]->msg_id, "q2");
    gw_commands_tick(e.c, now + 61000); /* q3 never sent: expired after ttl_ms */
    CHECK_INT(e.n_evs, 6);
    const gw_event *q3 = e.evs[5];
    CHECK_STR(q3->msg_id, "q3");
    CHECK_STR(q3->cmd_status, "expired");
    CHECK_INT(q3->kind, GW_EV_FUNCTION_REPLY);
    CHECK_STR(ct_member(q3, "code", buf, sizeof(buf)), "\"expired\"");
    CHECK_INT(m(GW_M_CMD_EXPIRED) - x0, 1);
    CHECK_INT(m(GW_M_CMD_PENDING), 0);
    ct_teardown(&e);
}

static void test_rejections(void)
{
    ct_env e;
    ct_sess s;
    char buf[256];
    ct_setup(&e, "\"max_pending\": 3, \"max_pending_per_device\": 2");
    ct_online(&e, &s, "t-001");
    int64_t rej0 = m(GW_M_CMD_REJECTED);

    /* invalid input: answered at once, nothing reaches the session */
    ct_cloud(&e, GW_CMD_INVOKE, "thermo", "t-001",
             "{\"messageId\":\"i1\",\"function\":\"reboot\",\"inputs\":{\"delay_s\":99}}");
    CHECK_INT(e.n_evs, 2);
    CHECK_EV(&e, 0, GW_EV_COMMAND, "rejected");
    CHECK_EV(&e, 1, GW_EV_FUNCTION_REPLY, "rejected");
    CHECK_STR(e.evs[1]->payload, "{\"success\":false,\"code\":\"invalid_input\",\"message\":"
                                 "\"inputs.delay_s: 99 is above max 60\"}");
    ct_pump(&e);
    CHECK_INT(s.n_sent, 0);
    ct_clear_events(&e);

    /* duplicates of a pending id: answered without a log row of their own */
    ct_cloud(&e, GW_CMD_INVOKE, "thermo", "t-001", "{\"messageId\":\"d\",\"function\":\"ping\"}");
    ct_cloud(&e, GW_CMD_INVOKE, "thermo", "t-001", "{\"messageId\":\"d\",\"function\":\"ping\"}");
    ct_cloud(&e, GW_CMD_INVOKE, "thermo", "t-001",
             "{\"messageId\":\"d\",\"function\":\"nope\"}"); /* even an invalid one */
    CHECK_INT(e.n_evs, 3);
    CHECK_EV(&e, 1, GW_EV_FUNCTION_REPLY, "(none)");
    CHECK_STR(ct_member(e.evs[1], "code", buf, sizeof(buf)), "\"duplicate_message_id\"");
    CHECK_EV(&e, 2, GW_EV_FUNCTION_REPLY, "(none)");
    CHECK_STR(ct_member(e.evs[2], "code", buf, sizeof(buf)), "\"duplicate_message_id\"");
    ct_clear_events(&e);

    /* per-device bound (2), then the total (3) */
    ct_cloud(&e, GW_CMD_INVOKE, "thermo", "t-001", "{\"messageId\":\"e\",\"function\":\"ping\"}");
    ct_cloud(&e, GW_CMD_INVOKE, "thermo", "t-001", "{\"messageId\":\"f\",\"function\":\"ping\"}");
    CHECK_INT(e.n_evs, 3);
    CHECK_EV(&e, 1, GW_EV_COMMAND, "rejected");
    CHECK_STR(ct_member(e.evs[2], "code", buf, sizeof(buf)), "\"busy\"");
    CHECK_CONTAINS(ct_member(e.evs[2], "message", buf, sizeof(buf)), "max_pending_per_device");
    ct_sess s2;
    ct_online(&e, &s2, "mtr00001");
    ct_cloud(&e, GW_CMD_WRITE, "meter-tcp", "mtr00001",
             "{\"messageId\":\"m1\",\"properties\":{\"tariff\":\"day\"}}");
    ct_cloud(&e, GW_CMD_WRITE, "meter-tcp", "mtr00001",
             "{\"messageId\":\"m2\",\"properties\":{\"tariff\":\"day\"}}");
    CHECK_INT(e.n_evs, 6);
    CHECK_STR(ct_member(e.evs[5], "code", buf, sizeof(buf)), "\"busy\"");
    CHECK_CONTAINS(ct_member(e.evs[5], "message", buf, sizeof(buf)), "(max_pending)");
    CHECK_INT(m(GW_M_CMD_PENDING), 3);
    ct_clear_events(&e);

    /* a topic naming no device: nothing to reply on, counted; a device under the wrong product:
     * answered on its own topics */
    int64_t r1 = m(GW_M_CMD_REJECTED);
    ct_cloud(&e, GW_CMD_INVOKE, "thermo", "nobody", "{\"messageId\":\"x\",\"function\":\"ping\"}");
    CHECK_INT(e.n_evs, 0);
    CHECK_INT(m(GW_M_CMD_REJECTED) - r1, 1);
    ct_cloud(&e, GW_CMD_INVOKE, "meter-tcp", "t-002",
             "{\"messageId\":\"y\",\"function\":\"ping\"}");
    CHECK_INT(e.n_evs, 2);
    CHECK_STR(ct_member(e.evs[1], "code", buf, sizeof(buf)), "\"unknown_device\"");
    CHECK_STR(e.evs[1]->dev->id, "t-002");
    /* a command the device's frames cannot carry: refused before it waits anywhere */
    ct_cloud(&e, GW_CMD_INVOKE, "sensor-udp", "snr00001",
             "{\"messageId\":\"z\",\"function\":\"calibrate\"}");
    CHECK_INT(e.n_evs, 4);
    CHECK_EV(&e, 2, GW_EV_COMMAND, "rejected");
    CHECK_STR(ct_member(e.evs[3], "code", buf, sizeof(buf)), "\"unsupported\"");
    CHECK_STR(ct_member(e.evs[3], "message", buf, sizeof(buf)),
              "\"no invoke message for function \\\"calibrate\\\"\"");
    CHECK(m(GW_M_CMD_REJECTED) - rej0 >= 7);
    ct_teardown(&e);
}

static void test_binary_seq(void)
{
    ct_env e;
    ct_sess s;
    gw_reject rej;
    ct_setup(&e, "");
    ct_online(&e, &s, "mtr00001");
    ct_cloud(&e, GW_CMD_INVOKE, "meter-tcp", "mtr00001",
             "{\"messageId\":\"cloud-1\",\"function\":\"reset_counter\",\"inputs\":{\"confirm\":"
             "true}}");
    ct_pump(&e);
    CHECK_INT(s.n_sent, 1);
    CHECK_INT(s.last.seq, 1);
    CHECK_STR(s.last.dev_msg_id, "1"); /* a binary device echoes the seq */
    CHECK_STR(s.last.msg_id, "cloud-1");
    ct_cloud(&e, GW_CMD_WRITE, "meter-tcp", "mtr00001",
             "{\"messageId\":\"cloud-2\",\"properties\":{\"tariff\":\"night\"}}");
    ct_pump(&e);
    CHECK_STR(s.last.dev_msg_id, "2");
    gw_thing_msg r = reply_msg(GW_MSG_WRITE_REPLY, "2", 1, NULL);
    CHECK_INT(gw_commands_reply(&s.base, &r, 0, false, &rej), 0);
    gw_thing_msg_clear(&r);
    r = reply_msg(GW_MSG_FUNCTION_REPLY, "cloud-1", 1, "{\"previous_kwh\":12.5}");
    CHECK_INT(gw_commands_reply(&s.base, &r, 0, false, &rej), GW_EINVAL); /* not its id */
    gw_thing_msg_clear(&r);
    r = reply_msg(GW_MSG_FUNCTION_REPLY, "1", 1, "{\"previous_kwh\":12.5}");
    CHECK_INT(gw_commands_reply(&s.base, &r, 0, false, &rej), 0);
    gw_thing_msg_clear(&r);
    CHECK_EV(&e, 3, GW_EV_FUNCTION_REPLY, "success");
    CHECK_STR(e.evs[3]->msg_id, "cloud-1"); /* upstream: the cloud's id */
    CHECK_STR(e.evs[3]->payload, "{\"success\":true,\"outputs\":{\"previous_kwh\":12.5}}");
    ct_teardown(&e);
}

static void test_session_changes(void)
{
    ct_env e;
    ct_sess s, s2;
    char buf[256];
    ct_setup(&e, "");
    /* the session goes before the loop routes the command: device_offline at the next tick */
    ct_online(&e, &s, "t-001");
    ct_cloud(&e, GW_CMD_INVOKE, "thermo", "t-001", "{\"messageId\":\"l1\",\"function\":\"ping\"}");
    ct_offline(&e, &s);
    ct_pump(&e);
    CHECK_INT(s.n_sent, 0);
    CHECK_INT(e.n_evs, 1);
    gw_commands_tick(e.c, gw_now_ms());
    CHECK_INT(e.n_evs, 2);
    CHECK_EV(&e, 1, GW_EV_FUNCTION_REPLY, "offline");
    CHECK_STR(ct_member(e.evs[1], "code", buf, sizeof(buf)), "\"device_offline\"");

    /* taken over before routing: the new session gets it */
    ct_online(&e, &s, "t-001");
    ct_cloud(&e, GW_CMD_INVOKE, "thermo", "t-001", "{\"messageId\":\"l2\",\"function\":\"ping\"}");
    ct_offline(&e, &s);
    ct_online(&e, &s2, "t-001");
    ct_pump(&e);
    CHECK_INT(s.n_sent, 0);
    CHECK_INT(s2.n_sent, 1);
    CHECK_STR(s2.last.msg_id, "l2");

    /* the transport refuses (not subscribed): send_failed at the next tick */
    s2.rc = GW_ENOTFOUND;
    ct_clear_events(&e);
    ct_cloud(&e, GW_CMD_INVOKE, "thermo", "t-001", "{\"messageId\":\"l3\",\"function\":\"ping\"}");
    ct_pump(&e);
    gw_commands_tick(e.c, gw_now_ms());
    CHECK_INT(e.n_evs, 2);
    CHECK_EV(&e, 1, GW_EV_FUNCTION_REPLY, "failed");
    CHECK_STR(ct_member(e.evs[1], "code", buf, sizeof(buf)), "\"send_failed\"");
    CHECK_STR(ct_member(e.evs[1], "message", buf, sizeof(buf)), "\"fake refuses (-10004)\"");
    CHECK_INT(m(GW_M_CMD_PENDING), 1); /* l2, sent, not replied */
    ct_teardown(&e);
    CHECK_INT(m(GW_M_CMD_PENDING), 0); /* dropped at free */
}

static void test_read(void)
{
    ct_env e;
    char buf[512];
    gw_error err = {0, ""};
    gw_store_reader *reader = NULL;
    sqlite3 *db = NULL;
    ct_setup(&e, "");
    /* latest values as the writer keeps them */
    CHECK_INT(sqlite3_open(e.cfg->store.path, &db), SQLITE_OK);
    CHECK_INT(sqlite3_exec(
                  db,
                  "INSERT INTO property_state VALUES('t-002','temperature','21.5',1700000000000);"
                  "INSERT INTO property_state VALUES('t-002','mode','\"eco\"',1700000000001);",
                  NULL, NULL, NULL),
              SQLITE_OK);
    sqlite3_close(db);
    CHECK_INT(gw_store_reader_open(&reader, e.cfg, &err), 0);
    gw_commands_free(e.c);
    CHECK_INT(gw_commands_create(&e.c, e.rt, reader, &err), 0);
    e.rt->commands = e.c;
    gw__commands_set_sink(e.c, ct_sink, &e);

    /* answered by the gateway, device offline, nothing pending */
    ct_cloud(&e, GW_CMD_READ, "thermo", "t-002",
             "{\"messageId\":\"g-9\",\"properties\":[\"temperature\"]}");
    CHECK_INT(e.n_evs, 2);
    CHECK_EV(&e, 0, GW_EV_COMMAND, "success");
    CHECK_STR(e.evs[0]->cmd_op, "read");
    CHECK_EV(&e, 1, GW_EV_READ_REPLY, "success");
    CHECK_STR(e.evs[1]->name, "read");
    CHECK_STR(e.evs[1]->msg_id, "g-9");
    CHECK_STR(e.evs[1]->payload, "{\"success\":true,\"properties\":{\"temperature\":{\"value\":"
                                 "21.5,\"time\":1700000000000}}}");
    ct_cloud(&e, GW_CMD_READ, "thermo", "t-002", "{\"messageId\":\"g-10\"}");
    CHECK_STR(ct_member(e.evs[3], "properties", buf, sizeof(buf)),
              "{\"mode\":{\"value\":\"eco\",\"time\":1700000000001},\"temperature\":{\"value\":"
              "21.5,\"time\":1700000000000}}");
    /* never reported: an empty object, still a success */
    ct_cloud(&e, GW_CMD_READ, "thermo", "t-001", "{\"messageId\":\"g-11\"}");
    CHECK_STR(e.evs[5]->payload, "{\"success\":true,\"properties\":{}}");
    CHECK_INT(m(GW_M_CMD_PENDING), 0);
    ct_teardown(&e);
    gw_store_reader_close(reader);
}

int main(void)
{
    test_round_trip();
    test_reply_errors();
    test_timeout();
    test_offline_reject();
    test_offline_queue();
    test_rejections();
    test_binary_seq();
    test_session_changes();
    test_read();
    TEST_MAIN_END();
}

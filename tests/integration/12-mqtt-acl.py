# Proves the MQTT ACL: publishing outside the device's own topics closes the connection (counted, offline acl_violation), subscribing outside gets SUBACK 0x80 per filter while own filters are granted.
import json

import gwtest as g


def main(t):
    devs = g.make_devices(g.thermo_ids(3)) + g.make_devices(["p-1"], "plug")
    gw = g.Gateway(products=[g.THERMO, g.PLUG], devices=devs)
    m0 = gw.metrics()

    # --- SUBSCRIBE: mixed allowed and denied filters in one packet ---------------------------
    c = g.device_client(gw, "t-001")
    filters = [
        ("/thermo/t-001/properties/report/reply", 1),   # own: granted 1
        ("/thermo/t-002/properties/report/reply", 1),   # other device: 0x80
        ("#", 0),                                       # everything: 0x80
        ("/thermo/+/function/invoke", 1),               # wildcard device level: 0x80
        ("/thermo/t-001/function/invoke", 2),           # own, QoS 2 asked: granted 1
        ("/+/t-001/function/invoke", 0),                # wildcard product level: 0x80
        ("/plug/t-001/function/invoke", 0),             # other product: 0x80
        ("/thermo/t-001/properties/write", 0),          # own: granted 0
        ("/thermo/#", 0),                               # 0x80
    ]
    want = [1, 0x80, 0x80, 0x80, 1, 0x80, 0x80, 0, 0x80]
    codes = c.subscribe(10, filters)
    t.eq(codes, want, "SUBACK codes per filter in one SUBSCRIBE")
    t.check(c.ping(), "connection stays open after denied filters")
    m1 = gw.metrics()
    t.eq(g.metric_delta(m0, m1, g.metric_key("mqtt_acl_denied_total", op="subscribe")), 6.0,
         "mqtt_acl_denied_total{op=subscribe} +6 (one per denied filter)")

    # a denied-only SUBSCRIBE
    codes = c.subscribe(11, [("/thermo/t-003/#", 1)])
    t.eq(codes, [0x80], "single denied filter: 0x80")

    # --- PUBLISH to own topic with unknown suffix: rejected, not disconnected --------------
    ack = c.publish_wait("/thermo/t-001/foo/bar", g.report_payload("u-1", {"temperature": 1}), 5)
    t.check(ack is not None and ack.pid == 5, "own prefix, unknown suffix: PUBACK, still open")
    t.check(g.wait_until(lambda: gw.metric("messages_rejected_total", reason="unknown_topic") >= 1,
                         5), "unknown suffix counted as messages_rejected_total{unknown_topic}")
    t.check(c.ping(), "still connected after unknown suffix")

    # --- PUBLISH to another device's topic: closed --------------------------------------------
    mpub0 = gw.metric("mqtt_acl_denied_total", op="publish")
    c.publish(g.report_topic("t-002"), g.report_payload("x-1", {"temperature": 10}), qos=1, pid=6)
    t.check(c.wait_closed(5), "publish to another device's topic: connection closed")
    t.check(g.wait_until(lambda: gw.metric("mqtt_acl_denied_total", op="publish") == mpub0 + 1, 5),
            "mqtt_acl_denied_total{op=publish} +1")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE device='t-002'"), 0,
         "nothing stored for the other device")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE msg_id='x-1'"), 0,
         "the foreign publish is not stored")
    row = g.wait_until(lambda: gw.query("SELECT name, payload FROM events WHERE device='t-001' "
                                        "AND kind='offline'"), 5)
    t.check(row and row[0][0] == "acl_violation", "offline event reason acl_violation", row)
    if row:
        t.eq(json.loads(row[0][1]).get("reason"), "acl_violation", "offline payload reason")

    # --- other product, same device id in topic; and a topic outside any prefix ---------------
    for what, topic in [("other product's prefix", "/plug/t-001/properties/report"),
                        ("topic outside /{p}/{d}/", "/elsewhere"),
                        ("no leading slash", "thermo/t-001/properties/report")]:
        c = g.device_client(gw, "t-001")
        n0 = gw.metric("mqtt_acl_denied_total", op="publish")
        c.publish(topic, g.report_payload("x-2", {"temperature": 10}), qos=0)
        t.check(c.wait_closed(5), "%s: connection closed" % what)
        t.check(g.wait_until(lambda: gw.metric("mqtt_acl_denied_total", op="publish") == n0 + 1,
                             5), "%s: mqtt_acl_denied_total{op=publish} +1" % what)

    # t-003 unaffected by t-001's violations; plug device can use its own topics only
    d = g.device_client(gw, "t-003")
    ack = d.publish_wait(g.report_topic("t-003"), g.report_payload("ok-1", {"humidity": 3}), 9)
    t.check(ack is not None, "other device still reports")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE msg_id='ok-1'"), 1, "its report stored")
    p = g.device_client(gw, "p-1", "plug")
    t.eq(p.subscribe(1, [("/plug/p-1/function/invoke", 1), ("/thermo/t-003/function/invoke", 1)]),
         [1, 0x80], "plug device: own granted, thermo device denied")
    d.disconnect()
    p.disconnect()
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")


g.run(main)

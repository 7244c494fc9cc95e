# Proves CONNECT authentication: CONNACK 4 (wrong secret, wrong product), 5 (unknown device), 2 (empty client id), 1 (protocol level 6; level 5 is MQTT 5, see 93-mqtt5.py), the refused are closed, counted by reason and leave no online event.
import gwtest as g


def attempt(gw, cid, user, pw, **kw):
    """(CONNACK code or None, closed afterwards?)"""
    c = g.RawClient(gw.mqtt_port)
    try:
        rc = c.connect(cid, user, pw, **kw)
        closed = c.wait_closed(3) if rc != 0 else False
        return rc, closed
    finally:
        c.close()


def main(t):
    devs = g.make_devices(g.thermo_ids(3)) + g.make_devices(["p-1"], "plug")
    gw = g.Gateway(products=[g.THERMO, g.PLUG], devices=devs)
    m0 = gw.metrics()

    cases = [
        # (what, client id, username, password, kwargs, expected rc, auth-failure reason)
        ("wrong secret", "t-001", "thermo", "wrong", {}, 4, "bad_credentials"),
        ("username is another product", "t-001", "plug", g.secret_of("t-001"), {}, 4,
         "bad_credentials"),
        ("right secret of another device", "t-001", "thermo", g.secret_of("t-002"), {}, 4,
         "bad_credentials"),
        ("no username/password", "t-001", None, None, {}, 4, "bad_credentials"),
        ("unknown device", "t-999", "thermo", g.secret_of("t-999"), {}, 5, "unknown_device"),
        ("empty client id", "", "thermo", g.secret_of("t-001"), {}, 2, None),
        ("protocol level 6", "t-001", "thermo", g.secret_of("t-001"), {"level": 6}, 1, None),
    ]
    for what, cid, user, pw, kw, want, _ in cases:
        rc, closed = attempt(gw, cid, user, pw, **kw)
        t.eq(rc, want, "%s: CONNACK %d" % (what, want))
        t.check(closed, "%s: connection closed after CONNACK" % what)

    # paho (real client) with a wrong secret
    c = g.paho_client(gw, "t-002", secret="nope", start_loop=False)
    t.eq(c.connected_rc, 4, "paho wrong secret: rc 4 (bad username or password)")
    try:
        c.disconnect()
    except Exception:
        pass

    m1 = gw.metrics()
    bad = g.metric_delta(m0, m1, g.metric_key("mqtt_auth_failures_total", reason="bad_credentials"))
    unk = g.metric_delta(m0, m1, g.metric_key("mqtt_auth_failures_total", reason="unknown_device"))
    t.eq(bad, 5.0, "mqtt_auth_failures_total{reason=bad_credentials} +5")
    t.eq(unk, 1.0, "mqtt_auth_failures_total{reason=unknown_device} +1")
    bp = g.metric_delta(m0, m1, g.metric_key("mqtt_protocol_errors_total", error="bad_protocol"))
    t.eq(bp, 1.0, "mqtt_protocol_errors_total{error=bad_protocol} +1 for level 6")

    # none of the refused left an online event or an online device
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE kind IN ('online','offline')"), 0,
         "no online/offline events for refused connections")
    t.eq(gw.scalar("SELECT count(*) FROM device_state WHERE online=1"), 0,
         "no device online after refusals")
    t.eq(m1.get("devices_online", 0.0), 0.0, "devices_online 0")

    # the right credentials still work, for MQTT 3.1.1 and 3.1 (MQIsdp, level 3)
    c = g.RawClient(gw.mqtt_port)
    t.eq(c.connect_device("t-001"), 0, "right credentials: CONNACK 0")
    d = g.RawClient(gw.mqtt_port)
    t.eq(d.connect_device("p-1", "plug", proto=b"MQIsdp", level=3), 0,
         "MQTT 3.1 (MQIsdp/3): CONNACK 0")
    t.check(g.wait_until(lambda: gw.scalar(
        "SELECT count(*) FROM events WHERE kind='online'") == 2, 5),
        "two online events for the accepted")
    t.eq(sorted(r[0] for r in gw.query("SELECT device FROM events WHERE kind='online'")),
         ["p-1", "t-001"], "online events name the accepted devices")
    t.check(g.wait_until(lambda: gw.metric("devices_online") == 2, 5), "devices_online 2")
    t.check(c.ping(), "accepted session answers PINGREQ")
    c.disconnect()
    d.disconnect()
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")

    # max_connections: the connection over the limit is closed and counted
    gw = g.Gateway(n_devices=4, config={"max_connections": 3})
    conns = [g.device_client(gw, d) for d in g.thermo_ids(3)]
    extra = g.RawClient(gw.mqtt_port)
    rc = extra.connect_device("t-004")
    t.check(rc is None and extra.wait_closed(3), "4th connection over max_connections 3: closed "
            "without CONNACK 0", rc)
    extra.close()
    t.check(g.wait_until(lambda: gw.metric("connections_refused_total") == 1, 3),
            "connections_refused_total = 1")
    t.check(all(x.ping() for x in conns), "the 3 admitted connections unaffected")
    conns[0].disconnect()
    t.check(g.wait_until(lambda: gw.metric("connections_active") == 2, 3), "one slot freed")
    again = g.RawClient(gw.mqtt_port)
    t.eq(again.connect_device("t-004"), 0, "after a slot is freed: CONNACK 0")
    again.disconnect()
    for x in conns[1:]:
        x.disconnect()
    t.eq(gw.stop(), 0, "SIGTERM: exit 0 (second gateway)")


g.run(main)

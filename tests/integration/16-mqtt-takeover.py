# Proves session takeover: a second connection with the same client id closes the first (paho sees a disconnect, a raw socket EOF), counts mqtt_takeovers_total, keeps the device online and stores both sessions' messages.
import json
import gwtest as g

DEV = "t-001"
TOPIC = g.report_topic(DEV)


def count(gw, sql, *args):
    return gw.scalar(sql, args)


def main(t):
    gw = g.Gateway(n_devices=2)
    m0 = gw.metrics()

    # session A: paho, driven by hand (no network thread, so no automatic reconnect)
    a = g.paho_client(gw, DEV, start_loop=False)
    t.eq(a.connected_rc, 0, "A (paho): CONNACK 0")
    info = a.publish(TOPIC, g.report_payload("a-1", {"temperature": 1.5}), qos=1)
    t.check(g.pump_until(a, info.is_published, 5), "A: QoS 1 report acknowledged")
    t.eq(count(gw, "SELECT count(*) FROM events WHERE msg_id='a-1'"), 1, "A's message stored")

    # session B: raw socket, same client id
    b = g.RawClient(gw.mqtt_port)
    t.eq(b.connect_device(DEV), 0, "B (raw, same client id): CONNACK 0")
    t.check(g.pump_until(a, lambda: a.disconnected is not None, 5),
            "A: paho on_disconnect fired")
    t.check(a.disconnected not in (None, 0), "A: disconnect was not a clean one of its own",
            a.disconnected)
    t.check(g.wait_until(lambda: gw.metric("mqtt_takeovers_total") - m0.get(
        "mqtt_takeovers_total", 0) == 1, 3), "mqtt_takeovers_total = 1")
    ack = b.publish_wait(TOPIC, g.report_payload("b-1", {"temperature": 2.5}), 1, 3)
    t.check(ack is not None, "B: QoS 1 report acknowledged")
    t.eq(count(gw, "SELECT count(*) FROM events WHERE msg_id='b-1'"), 1, "B's message stored")
    t.eq(count(gw, "SELECT count(*) FROM events WHERE device=? AND kind='offline'", DEV), 0,
         "no offline event for the taken-over session")
    t.eq(count(gw, "SELECT count(*) FROM events WHERE device=? AND kind='online'", DEV), 2,
         "two online events (A, B)")
    onl = [json.loads(r[0]) for r in gw.query(
        "SELECT payload FROM events WHERE device=? AND kind='online' ORDER BY id", (DEV,))]
    t.check(len(onl) == 2 and "takeover" not in onl[0] and onl[1].get("takeover") is True,
            "the take-over's online event carries \"takeover\": true (the first does not)", onl)
    t.eq(count(gw, "SELECT online FROM device_state WHERE device=?", DEV), 1,
         "device_state: still online")
    t.eq(gw.metric("devices_online"), 1.0, "devices_online = 1 (not 2, not 0)")

    # session C: raw again; B must see EOF
    c = g.RawClient(gw.mqtt_port)
    t.eq(c.connect_device(DEV), 0, "C (raw): CONNACK 0")
    t.check(b.wait_closed(3), "B: closed (EOF) by the takeover")
    b.close()
    t.check(g.wait_until(lambda: gw.metric("mqtt_takeovers_total") - m0.get(
        "mqtt_takeovers_total", 0) == 2, 3), "mqtt_takeovers_total = 2 after the second")
    ack = c.publish_wait(TOPIC, g.report_payload("c-1", {"temperature": 3.5}), 1, 3)
    t.check(ack is not None, "C: QoS 1 report acknowledged")
    t.eq(sorted(r[0] for r in gw.query("SELECT msg_id FROM events WHERE device=? AND "
                                       "kind='property'", (DEV,))), ["a-1", "b-1", "c-1"],
         "all three sessions' messages stored")
    t.eq(count(gw, "SELECT count(*) FROM events WHERE device=? AND kind='offline'", DEV), 0,
         "still no offline event")
    t.eq(count(gw, "SELECT online FROM device_state WHERE device=?", DEV), 1,
         "device_state still online")

    # a takeover with QoS 0 messages in flight on the old session: they are stored too
    d = g.RawClient(gw.mqtt_port)
    burst = b"".join(g.publish_packet(TOPIC, g.report_payload("c0-%d" % i, {"humidity": i % 100}))
                     for i in range(50))
    c.send(burst)
    t.check(c.ping(), "C: PINGRESP after its burst (burst read)")
    t.eq(d.connect_device(DEV), 0, "D (raw): CONNACK 0")
    t.check(c.wait_closed(3), "C: closed by the takeover")
    c.close()
    t.check(g.wait_until(lambda: count(gw, "SELECT count(*) FROM events WHERE msg_id LIKE 'c0-%'")
                         == 50, 5), "C's 50 QoS 0 messages all stored")

    # clean end: offline disconnect, device offline
    d.disconnect()
    t.check(g.wait_until(lambda: count(gw, "SELECT online FROM device_state WHERE device=?", DEV)
                         == 0, 3), "after D's DISCONNECT: offline")
    t.eq(gw.query("SELECT name FROM events WHERE device=? AND kind='offline'", (DEV,)),
         [("disconnect",)], "exactly one offline event (disconnect)")
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")


g.run(main)

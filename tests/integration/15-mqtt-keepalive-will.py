# Proves keep-alive (silent client closed after 1.5 x keepalive, offline keepalive_timeout; PINGREQ keeps it alive) and the will (applied on a lost connection, stored if aimed at the device's own event topic; discarded on DISCONNECT).
import json
import socket
import time

import gwtest as g

# online/offline events name the instance (north.client_id; by default iotgw-<hostname>)
GWNAME = "iotgw-" + socket.gethostname()


def offline(gw, dev):
    rows = gw.query("SELECT name, payload FROM events WHERE device=? AND kind='offline' "
                    "ORDER BY id", (dev,))
    return [(n, json.loads(p)) for n, p in rows]


def main(t):
    gw = g.Gateway(n_devices=6)
    m0 = gw.metrics()

    # --- silent client with keepalive 1 s ------------------------------------------------------
    a = g.RawClient(gw.mqtt_port)
    t.eq(a.connect_device("t-001", keepalive=1), 0, "t-001 keepalive=1: CONNACK 0")
    t0 = time.monotonic()
    closed = a.wait_closed(4)
    dt = time.monotonic() - t0
    a.close()
    t.check(closed and 1.2 <= dt <= 2.5 * g.SLOW, "silent client closed after ~1.5 s (+ sweep)",
            "closed=%s after %.2f s" % (closed, dt))
    rows = g.wait_until(lambda: offline(gw, "t-001"), 3)
    t.check(rows and rows[-1][0] == "keepalive_timeout", "offline reason keepalive_timeout", rows)
    if rows:
        t.eq(rows[-1][1], {"reason": "keepalive_timeout", "will": False, "gateway": GWNAME},
             "offline payload: reason, will false")
    t.eq(gw.query("SELECT online, last_offline_reason FROM device_state WHERE device='t-001'"),
         [(0, "keepalive_timeout")], "device_state t-001 offline keepalive_timeout")

    # --- PINGREQ keeps it alive ---------------------------------------------------------------------
    b = g.RawClient(gw.mqtt_port)
    t.eq(b.connect_device("t-002", keepalive=1), 0, "t-002 keepalive=1: CONNACK 0")
    pongs = 0
    t0 = time.monotonic()
    alive = True
    while time.monotonic() - t0 < 4.0:
        try:
            if b.ping(1):
                pongs += 1
            else:
                break
        except g.Closed:
            alive = False
            break
        # wait ~0.6 s for anything unexpected (e.g. a close) before the next PINGREQ
        try:
            if b.read_packet(0.6 / g.SLOW) is not None:
                break
        except g.Closed:
            alive = False
            break
    t.check(alive and pongs >= 4, "PINGREQ every ~0.6 s for 4 s: PINGRESP each, not closed",
            "alive=%s pongs=%d" % (alive, pongs))
    t.eq(offline(gw, "t-002"), [], "t-002: no offline event while pinging")
    t.eq(gw.scalar("SELECT online FROM device_state WHERE device='t-002'"), 1, "t-002 online")
    # a PUBLISH also counts as activity
    ok = True
    for i in range(5):
        ack = b.publish_wait(g.report_topic("t-002"), g.report_payload("ka-%d" % i,
                                                                        {"humidity": i}), i + 1, 2)
        ok = ok and ack is not None
        try:
            b.read_packet(0.6 / g.SLOW)
        except g.Closed:
            ok = False
            break
    t.check(ok, "QoS 1 publishes every ~0.6 s keep the session alive")
    b.disconnect()

    # --- keepalive timeout with a will on its own event topic ---------------------------------
    will_payload = g.event_payload("w-1", {"t": 99.5})
    c = g.RawClient(gw.mqtt_port)
    t.eq(c.connect_device("t-003", keepalive=1,
                          will=(g.event_topic("t-003", "overheat"), will_payload, 1)), 0,
         "t-003 with will: CONNACK 0")
    t.check(c.wait_closed(4), "t-003 silent: closed")
    c.close()
    rows = g.wait_until(lambda: offline(gw, "t-003"), 3)
    t.check(rows and rows[-1] == ("keepalive_timeout", {"reason": "keepalive_timeout",
                                                       "will": True, "gateway": GWNAME}),
            "keepalive timeout with will: offline will=true", rows)
    ev = g.wait_until(lambda: gw.query("SELECT kind, name, payload FROM events WHERE msg_id='w-1' "
                                       "AND device='t-003'"), 3)
    t.check(ev and ev[0][0] == "event" and ev[0][1] == "overheat"
            and json.loads(ev[0][2]) == {"t": 99.5}, "will on own event topic stored as event", ev)

    # --- connection dropped without DISCONNECT: will applies ---------------------------------------
    d = g.RawClient(gw.mqtt_port)
    t.eq(d.connect_device("t-004", will=(g.event_topic("t-004", "overheat"),
                                         g.event_payload("w-2", {"t": 101.0}), 0)), 0,
         "t-004 with will: CONNACK 0")
    t.check(d.ping(), "t-004 session up")
    d.close()  # FIN, no DISCONNECT
    rows = g.wait_until(lambda: offline(gw, "t-004"), 3)
    t.check(rows and rows[-1] == ("connection_lost", {"reason": "connection_lost", "will": True, "gateway": GWNAME}),
            "socket closed without DISCONNECT: offline connection_lost, will true", rows)
    ev = g.wait_until(lambda: gw.query("SELECT kind, name, payload FROM events WHERE msg_id='w-2'"),
                      3)
    t.check(ev and ev[0][:2] == ("event", "overheat") and json.loads(ev[0][2]) == {"t": 101.0},
            "dropped connection: will event stored", ev)

    # RST instead of FIN, will on its report topic
    e = g.RawClient(gw.mqtt_port)
    t.eq(e.connect_device("t-005", will=(g.report_topic("t-005"),
                                         g.report_payload("w-3", {"temperature": -1.5}), 0)), 0,
         "t-005 with report will: CONNACK 0")
    t.check(e.ping(), "t-005 session up")
    e.abort()
    rows = g.wait_until(lambda: offline(gw, "t-005"), 3)
    t.check(rows and rows[-1] == ("connection_lost", {"reason": "connection_lost", "will": True, "gateway": GWNAME}),
            "RST: offline connection_lost, will true", rows)
    ev = g.wait_until(lambda: gw.query("SELECT kind, payload FROM events WHERE msg_id='w-3'"), 3)
    t.check(ev and ev[0][0] == "property" and json.loads(ev[0][1]) == {"temperature": -1.5},
            "RST: will report stored as property", ev)

    # --- clean DISCONNECT: will discarded -----------------------------------------------------------
    f = g.RawClient(gw.mqtt_port)
    t.eq(f.connect_device("t-006", will=(g.event_topic("t-006", "overheat"),
                                         g.event_payload("w-4", {"t": 50.0}), 0)), 0,
         "t-006 with will: CONNACK 0")
    t.check(f.ping(), "t-006 session up")
    f.disconnect()
    rows = g.wait_until(lambda: offline(gw, "t-006"), 3)
    t.check(rows and rows[-1] == ("disconnect", {"reason": "disconnect", "will": False, "gateway": GWNAME}),
            "DISCONNECT: offline reason disconnect, will false", rows)
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE msg_id='w-4'"), 0,
         "DISCONNECT: will not stored")

    m1 = gw.metrics()
    t.eq(g.metric_delta(m0, m1, "mqtt_wills_total"), 3.0, "mqtt_wills_total +3")
    t.eq(g.metric_delta(m0, m1, "mqtt_keepalive_timeouts_total"), 2.0,
         "mqtt_keepalive_timeouts_total +2")
    t.eq(m1.get("devices_online", -1), 0.0, "devices_online back to 0")
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")


g.run(main)

# Proves property reports and events from real clients (paho, mosquitto_pub; QoS 0 and 1) land in SQLite with the right kind, values, timestamps and device/property state.
import json
import subprocess
import time

import gwtest as g


def now_ms():
    return int(time.time() * 1000)


def event_row(gw, dev, msg_id):
    rows = gw.query("SELECT ts, rx_ts, device, product, kind, name, msg_id, payload FROM events "
                    "WHERE device=? AND msg_id=?", (dev, msg_id))
    return rows


def mosquitto_pub(gw, dev, topic, qos, message=None, lines=None):
    cmd = ["mosquitto_pub", "-h", g.HOST, "-p", str(gw.mqtt_port), "-i", dev, "-u", "thermo",
           "-P", g.secret_of(dev), "-t", topic, "-q", str(qos), "-V", "mqttv311"]
    if lines is not None:
        cmd += ["-l"]
        inp = ("\n".join(lines) + "\n").encode()
    else:
        cmd += ["-m", message]
        inp = None
    p = subprocess.run(cmd, input=inp, capture_output=True, timeout=30 * g.SLOW)
    return p.returncode, p.stderr.decode("utf-8", "replace")


def main(t):
    gw = g.Gateway(n_devices=5)
    m0 = gw.metrics()

    # --- paho, t-001 ------------------------------------------------------------------------
    t0 = now_ms()
    c = g.paho_client(gw, "t-001")
    t.eq(c.connected_rc, 0, "paho t-001: CONNACK 0")
    rows = g.wait_until(lambda: gw.query(
        "SELECT payload, ts FROM events WHERE device='t-001' AND kind='online'"), 5)
    t.check(rows and len(rows) == 1, "paho t-001: one online event", rows)
    if rows:
        p = json.loads(rows[0][0])
        t.eq(p.get("adapter"), "mqtt", "online payload adapter")
        t.check(str(p.get("peer", "")).startswith("127.0.0.1:"), "online payload peer", p)
        t.check(t0 - 5 <= rows[0][1] <= now_ms() + 5, "online ts is receive time", rows[0][1])
    st = g.wait_until(lambda: gw.query(
        "SELECT online, product FROM device_state WHERE device='t-001'"), 5)
    t.eq(st, [(1, "thermo")], "device_state t-001 online=1")

    topic = g.report_topic("t-001")
    # QoS 1 with a device timestamp: PUBACK only after commit, so the row is there at once.
    info = c.publish(topic, g.report_payload("p1-1", {"temperature": 20, "mode": "eco",
                                                      "label": "kitchen", "on": True,
                                                      "energy": 1.25}, ts=1700000000000), qos=1)
    t.check(g.wait_until(info.is_published, 5), "paho QoS 1 report acknowledged")
    rows = event_row(gw, "t-001", "p1-1")
    t.eq(len(rows), 1, "QoS 1 report stored when PUBACK arrives")
    if rows:
        ts, rx_ts, dev, prod, kind, name, mid, payload = rows[0]
        t.eq(kind, "property", "QoS 1 report kind")
        t.eq(name, None, "QoS 1 report name NULL")
        t.eq(prod, "thermo", "QoS 1 report product")
        t.eq(ts, 1700000000000, "timestamp given -> ts equals it")
        t.check(t0 - 5 <= rx_ts <= now_ms() + 5, "rx_ts is receive time", rx_ts)
        p = json.loads(payload)
        t.eq(p, {"temperature": 20.0, "mode": "eco", "label": "kitchen", "on": True,
                 "energy": 1.25}, "QoS 1 report payload")
        t.check(isinstance(p.get("temperature"), float), "float property normalised to a real "
                "(20 -> 20.0)", payload)

    # QoS 0 without timestamp
    t1 = now_ms()
    c.publish(topic, g.report_payload("p0-1", {"temperature": 21.5, "humidity": 40}), qos=0)
    rows = g.wait_until(lambda: event_row(gw, "t-001", "p0-1"), 5)
    t.check(rows and len(rows) == 1, "QoS 0 report stored", rows)
    if rows:
        ts, rx_ts, dev, prod, kind, name, mid, payload = rows[0]
        t.eq(kind, "property", "QoS 0 report kind")
        t.eq(json.loads(payload), {"temperature": 21.5, "humidity": 40}, "QoS 0 report payload")
        t.check(isinstance(json.loads(payload)["humidity"], int), "int stays an integer", payload)
        t.check(t1 - 5 <= ts <= now_ms() + 5, "no timestamp -> ts is receive time", (t1, ts))

    # property_state: latest values
    ps = dict((k, (json.loads(v), ts)) for k, v, ts in gw.query(
        "SELECT property, value, ts FROM property_state WHERE device='t-001'"))
    t.eq(ps.get("temperature", (None,))[0], 21.5, "property_state temperature latest")
    t.eq(ps.get("humidity", (None,))[0], 40, "property_state humidity")
    t.eq(ps.get("mode", (None,))[0], "eco", "property_state mode (older report kept)")
    t.eq(ps.get("label", (None,))[0], "kitchen", "property_state label")
    t.eq(ps.get("on", (None,))[0], True, "property_state on")
    t.eq(ps.get("mode", (None, None))[1], 1700000000000, "property_state ts of mode = its report's")

    # events: params land as kind 'event', name = event id
    info = c.publish(g.event_topic("t-001", "overheat"),
                     g.event_payload("e-1", {"t": 80.5}), qos=1)
    t.check(g.wait_until(info.is_published, 5), "event QoS 1 acknowledged")
    rows = event_row(gw, "t-001", "e-1")
    t.eq(len(rows), 1, "event stored when PUBACK arrives")
    if rows:
        t.eq(rows[0][4], "event", "event kind")
        t.eq(rows[0][5], "overheat", "event name")
        t.eq(json.loads(rows[0][7]), {"t": 80.5}, "event payload")
    info = c.publish(g.event_topic("t-001", "boot"),
                     g.event_payload("e-2", {}, ts=1700000000123), qos=1)
    t.check(g.wait_until(info.is_published, 5), "param-less event acknowledged")
    rows = event_row(gw, "t-001", "e-2")
    t.check(len(rows) == 1 and rows[0][4] == "event" and rows[0][5] == "boot"
            and rows[0][0] == 1700000000123, "param-less event stored with its ts", rows)

    # a burst of 200 QoS 1 reports over paho, all stored in order
    infos = [c.publish(topic, g.report_payload("b-%d" % i, {"humidity": i % 101}), qos=1)
             for i in range(200)]
    t.check(g.wait_until(lambda: all(i.is_published() for i in infos), 20),
            "200 QoS 1 reports acknowledged")
    ids = [r[0] for r in gw.query("SELECT msg_id FROM events WHERE device='t-001' AND msg_id "
                                  "LIKE 'b-%' ORDER BY id")]
    t.eq(ids, ["b-%d" % i for i in range(200)], "200 reports stored once each, in order")
    g.paho_stop(c)

    # --- mosquitto_pub, t-002 ---------------------------------------------------------------
    rc, err = mosquitto_pub(gw, "t-002", g.report_topic("t-002"), 1,
                            g.report_payload("mp-1", {"temperature": -12.25}))
    t.eq(rc, 0, "mosquitto_pub QoS 1 exit 0" + ("" if rc == 0 else " " + err))
    rows = event_row(gw, "t-002", "mp-1")
    t.check(len(rows) == 1 and json.loads(rows[0][7]) == {"temperature": -12.25},
            "mosquitto_pub QoS 1 stored at exit", rows)
    rc, err = mosquitto_pub(gw, "t-002", g.report_topic("t-002"), 0,
                            g.report_payload("mp-0", {"temperature": 125}))
    t.eq(rc, 0, "mosquitto_pub QoS 0 exit 0")
    rows = g.wait_until(lambda: event_row(gw, "t-002", "mp-0"), 5)
    t.check(rows and json.loads(rows[0][7]) == {"temperature": 125.0},
            "mosquitto_pub QoS 0 stored (max edge value)", rows)
    rc, err = mosquitto_pub(gw, "t-002", g.event_topic("t-002", "overheat"), 1,
                            lines=[g.event_payload("mpl-%d" % i, {"t": float(i)})
                                   for i in range(20)])
    t.eq(rc, 0, "mosquitto_pub -l 20 events exit 0")
    n = gw.scalar("SELECT count(*) FROM events WHERE device='t-002' AND kind='event' AND "
                  "name='overheat' AND msg_id LIKE 'mpl-%'")
    t.eq(n, 20, "mosquitto_pub 20 QoS 1 events stored")
    # three mosquitto_pub sessions: three online + three offline (disconnect)
    got = g.wait_until(lambda: gw.query(
        "SELECT count(*) FROM events WHERE device='t-002' AND kind='offline'")[0][0] == 3, 5)
    t.check(got, "t-002: three offline events")
    t.eq(gw.query("SELECT count(*) FROM events WHERE device='t-002' AND kind='online'")[0][0], 3,
         "t-002: three online events")
    t.eq(gw.query("SELECT DISTINCT name FROM events WHERE device='t-002' AND kind='offline'"),
         [("disconnect",)], "t-002: offline reason disconnect")
    t.eq(gw.query("SELECT online, last_offline_reason FROM device_state WHERE device='t-002'"),
         [(0, "disconnect")], "device_state t-002 online=0, reason disconnect")

    # --- QoS 2: PUBREC after commit, PUBCOMP after PUBREL; a DUP resend is not stored twice -----
    r = g.device_client(gw, "t-003")
    r.send(g.publish_packet(g.report_topic("t-003"), g.report_payload("q2-1", {"humidity": 2}),
                            2, 42))
    p = r.expect(g.PUBREC, 3)
    t.check(p is not None and p.pid == 42, "raw QoS 2: PUBREC")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE msg_id='q2-1'"), 1,
         "raw QoS 2: stored when PUBREC arrives")
    r.send(g.publish_packet(g.report_topic("t-003"), g.report_payload("q2-1", {"humidity": 2}),
                            2, 42, dup=True))
    p = r.expect(g.PUBREC, 3)
    t.check(p is not None and p.pid == 42, "raw QoS 2 DUP resend: PUBREC again")
    r.send(g.packet(g.PUBREL, 2, b"\x00\x2a"))
    p = r.expect(g.PUBCOMP, 3)
    t.check(p is not None and p.pid == 42, "raw QoS 2: PUBCOMP after PUBREL")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE msg_id='q2-1'"), 1,
         "raw QoS 2: the DUP resend is not stored twice")
    r.disconnect()
    c2 = g.paho_client(gw, "t-004")
    info = c2.publish(g.report_topic("t-004"), g.report_payload("q2-p", {"on": False}), qos=2)
    t.check(g.wait_until(info.is_published, 5), "paho QoS 2 publish completes")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE msg_id='q2-p'"), 1, "paho QoS 2 stored once")
    g.paho_stop(c2)

    # --- a report larger than the loop's read buffer (64 KiB): two 60,000-byte strings ---------
    r = g.device_client(gw, "t-005")
    note = "".join(chr(ord("a") + i % 26) for i in range(60000))
    memo = note.upper()
    try:
        ack = r.publish_wait(g.report_topic("t-005"), g.report_payload("big-1", {"note": note,
                                                                                "memo": memo}), 5, 5)
    except g.Closed:
        ack = None
    t.check(ack is not None and ack.pid == 5, "120 KB report: PUBACK")
    row = gw.query("SELECT payload FROM events WHERE msg_id='big-1'")
    t.check(row and json.loads(row[0][0]) == {"note": note, "memo": memo},
            "120 KB report stored intact")
    r.disconnect()

    # --- admin health ---------------------------------------------------------------------------
    status, body = gw.http_get("/health")
    t.check(status == 200 and body.strip() == "ok", "GET /health: 200 ok", (status, body))

    # --- metrics ------------------------------------------------------------------------------
    m1 = gw.metrics()
    t.check(g.metric_delta(m0, m1, "messages_accepted_total") >= 200 + 2 + 2 + 2 + 20,
            "messages_accepted_total rose", m1.get("messages_accepted_total"))
    t.check(g.metric_delta(m0, m1, "events_committed_total") >= 226,
            "events_committed_total rose", m1.get("events_committed_total"))
    t.eq(m1.get("messages_rejected_total", 0.0) + sum(v for k, v in m1.items()
         if k.startswith("messages_rejected_total{")), 0.0, "no rejections")
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")


g.run(main)

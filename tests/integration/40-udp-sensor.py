# Proves the UDP adapter end to end with sensor-udp datagrams: reports and events stored with their values, acks (exact bytes) only after the commit, heartbeats acked and not stored, a rejected report answered with result 1, many devices on many source ports, and offline events at shutdown.
import json
import socket
import time

import gwtest as g
import sensor_udp as su

# online/offline events name the instance (north.client_id; by default iotgw-<hostname>)
GWNAME = "iotgw-" + socket.gethostname()


def main(t):
    # batch_ms 300: the writer waits 300 ms before committing, so an ack that came before the
    # commit would arrive early and find no row.
    gw = su.gateway(n_devices=1040, config={"storage": {"batch_ms": 300}})
    port = su.udp_port(gw)
    t.check(port, "ready-fd reports a udp listener", gw.ports)
    m0 = gw.metrics()

    # the example datagram of docs/BINARY-CODEC.md, and its ack, byte for byte
    dev = "snr00001"
    c = su.Client(port)
    doc_report = bytes.fromhex("A5 01 01 73 6E 72 30 30 30 30 31 74 6F 6B 31 32 33 34 35 01 00"
                               " 66 08 A8 11 57 01 3C 00 35 3D C3 F7".replace(" ", ""))
    t.eq(su.report(dev, 1), doc_report, "python builder = the doc's datagram")
    t0 = time.monotonic()
    c.send(su.report(dev, 1))
    raw = c.recv(5)
    dt = time.monotonic() - t0
    rows = gw.query("SELECT payload FROM events WHERE device=? AND kind='property'", (dev,))
    t.check(raw is not None, "report: ack received")
    t.eq(raw, bytes.fromhex("A50181736E72303030303100000000000000000100003F3693DF"),
         "report ack = the doc's ack bytes")
    t.eq(len(rows), 1, "report: the row is in SQLite when its ack arrives")
    t.check(dt >= 0.2, "ack not before the commit (batch_ms 300): %.3f s" % dt)
    if rows:
        v = json.loads(rows[0][0])
        t.eq(v, {"temperature": 21.5, "humidity": 45.2, "battery": 87, "door_open": True,
                 "interval_s": 60}, "report values stored")
    t.eq(gw.scalar("SELECT value FROM property_state WHERE device=? AND property='temperature'",
                   (dev,)), "21.5", "property_state temperature")
    online = gw.query("SELECT payload FROM events WHERE device=? AND kind='online'", (dev,))
    t.eq(len(online), 1, "one online event")
    if online:
        t.eq(json.loads(online[0][0]), {"adapter": "udp", "peer": c.peer, "gateway": GWNAME},
             "online payload: adapter udp and the device's source address")
    t.eq(gw.scalar("SELECT online FROM device_state WHERE device=?", (dev,)), 1, "device online")

    # more reports: each acked with its seq, each row already there when the ack arrives
    ok = True
    for seq in range(2, 12):
        a, _ = c.request(su.report(dev, seq, temperature=20 + seq / 4.0, humidity=50, battery=80,
                                   door=False, interval=seq), 5)
        n = gw.scalar("SELECT count(*) FROM events WHERE device=? AND kind='property' AND "
                      "msg_id=?", (dev, str(seq)))
        if a != (dev, seq, 0) or n != 1:
            ok = False
            t.check(False, "report seq %d: ack and row" % seq, (a, n))
            break
    t.check(ok, "10 reports: each ack (dev, seq, result 0) comes after its row is committed")
    t.eq(gw.scalar("SELECT value FROM property_state WHERE device=? AND property='door_open'",
                   (dev,)), "false", "property_state door_open updated")

    # heartbeat: acked at once, nothing stored
    before = gw.scalar("SELECT count(*) FROM events WHERE device=?", (dev,))
    a, dt = c.request(su.heartbeat(dev, 50), 5)
    t.eq(a, (dev, 50, 0), "heartbeat acked with its seq")

    # event low_battery (acknowledged once committed: the barrier for the heartbeat's check)
    a, _ = c.request(su.event(dev, 51, 9), 5)
    t.eq(a, (dev, 51, 0), "event acked")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE device=?", (dev,)), before + 1,
         "heartbeat stores no event (the event acknowledged after it is the only new row)")
    t.eq(gw.query("SELECT name, payload FROM events WHERE device=? AND kind='event'", (dev,)),
         [("low_battery", '{"level":9}')], "event stored with its param")

    # a report the thing model rejects (temperature 200 > max 125): result 1, not stored
    a, _ = c.request(su.report(dev, 52, temperature=200), 5)
    t.eq(a, (dev, 52, 1), "out-of-range report: ack with result 1")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE device=? AND msg_id='52'", (dev,)), 0,
         "rejected report not stored")
    m1 = gw.metrics()
    t.eq(g.metric_delta(m0, m1, g.metric_key("messages_rejected_total", reason="out_of_range")),
         1.0, "messages_rejected_total{reason=out_of_range} +1")

    # many devices, each from its own socket (spread over the loops by SO_REUSEPORT)
    clients = {d: su.Client(port) for d in su.dev_ids(40)[1:]}
    for d, cl in clients.items():
        cl.send(su.report(d, 7, battery=int(d[-2:])))
    acks = {d: cl.ack(8) for d, cl in clients.items()}
    t.check(all(acks[d] == (d, 7, 0) for d in clients), "39 devices: every report acked",
            [d for d in clients if acks[d] != (d, 7, 0)][:5])
    t.eq(gw.scalar("SELECT count(DISTINCT device) FROM events WHERE kind='property'"), 40,
         "40 devices' reports stored")
    t.eq(gw.scalar("SELECT count(*) FROM property_state WHERE property='battery' AND "
                   "device != 'snr00001' AND CAST(value AS INTEGER) = CAST(substr(device, 7) AS "
                   "INTEGER)"), 39, "each device's own battery value stored")
    t.check(g.wait_until(lambda: gw.metric("devices_online") == 40, 5), "devices_online 40")
    m2 = gw.metrics()
    t.eq(g.metric_delta(m0, m2, "udp_datagrams_total"), 1 + 10 + 1 + 1 + 1 + 39,
         "udp_datagrams_total counts every datagram")
    t.eq(sum(v for k, v in m2.items() if k.startswith("udp_dropped_total")), 0.0,
         "nothing dropped")
    t.eq(gw.metric("udp_takeovers_total"), 0.0, "no session moved between loops")

    # memory per idle device: 1000 more devices, each online after one heartbeat
    mem0 = gw.metric("memory_bytes", area="session")
    hb = su.Client(port)
    more = su.dev_ids(1040)[40:]
    got = 0
    for i in range(0, len(more), 50):  # 50 at a time: stay well under both socket buffers
        for d in more[i:i + 50]:
            hb.send(su.heartbeat(d, 1))
        for _ in more[i:i + 50]:
            if hb.ack(5):
                got += 1
    t.eq(got, len(more), "1000 heartbeats from one socket: all acked")
    t.check(g.wait_until(lambda: gw.metric("devices_online") == 1040, 5), "devices_online 1040")
    per_dev = (gw.metric("memory_bytes", area="session") - mem0) / len(more)
    t.info("session memory per idle UDP device: %.0f bytes" % per_dev)
    t.check(per_dev <= 256, "session memory per idle device <= 256 bytes: %.0f" % per_dev)

    # shutdown with a report still committing (batch_ms 300): it is stored and acknowledged
    n0 = gw.metric("udp_datagrams_total")
    c.send(su.report(dev, 60))
    t.check(g.wait_until(lambda: gw.metric("udp_datagrams_total") > n0, 5),
            "the report is received (udp_datagrams_total moved)")
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")
    t.eq(c.ack(2), (dev, 60, 0), "a report in flight at SIGTERM is still acknowledged")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE device=? AND msg_id='60'", (dev,)), 1,
         "and stored")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE kind='offline' AND name='shutdown'"), 1040,
         "1040 offline events with reason shutdown")
    t.eq(gw.scalar("SELECT count(*) FROM device_state WHERE online=1"), 0, "no device online")
    for cl in list(clients.values()) + [c, hb]:
        cl.close()


g.run(main)

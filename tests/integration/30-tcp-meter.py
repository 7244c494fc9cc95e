# Proves the TCP adapter with meter-tcp: login frame -> online; report/event/heartbeat acked with the layout's exact ack bytes, in order, only after the commit; values in SQLite; a rejected report gets a negative ack; idle timeout (the product's wins), peer close, take-over and shutdown drive offline events.
import json
import time

import binframes as b
import gwtest as g

DEVS = [{"id": "mtr00001", "product": b.METER, "secret": "pa55word"}] + \
    b.meter_devices(["mtr00002", "mtr00003"])


def online_count(gw, dev):
    return gw.scalar("SELECT count(*) FROM events WHERE kind='online' AND device=?", (dev,))


def offline_reason(gw, dev):
    return gw.scalar("SELECT name FROM events WHERE kind='offline' AND device=? ORDER BY id DESC "
                     "LIMIT 1", (dev,))


def prop(gw, dev, name):
    v = gw.scalar("SELECT value FROM property_state WHERE device=? AND property=?", (dev, name))
    return json.loads(v) if v is not None else None


def login(gw, dev, secret=None):
    d = b.Dev(g.adapter_port(gw, "tcp"))
    d.send(b.meter_login(dev, secret or b.meter_secret(dev)))
    return d, d.recv_n(b.METER_ACK_LEN)


def main(t):
    gw = b.tcp_gateway([b.METER], DEVS, tcp={"idle_timeout_ms": 600000},
                       products_over={b.METER: {"idle_timeout_ms": 1500}})
    t.check(g.adapter_port(gw, "tcp"), "ready-fd reports a tcp listener", gw.ports)
    m0 = gw.metrics()

    # login (the doc's example frame) -> ack 68 00 07 80 00 01 01 00 17 BC, online event
    d = b.Dev(g.adapter_port(gw, "tcp"))
    d.send(bytes.fromhex("68 00 15 01 00 01 6D 74 72 30 30 30 30 31 70 61 35 35 77 6F 72 64 6B BE"))
    t.eq(d.recv_n(10).hex(" "), "68 00 07 80 00 01 01 00 17 bc", "login acked with the doc's bytes")
    t.check(g.wait_until(lambda: online_count(gw, "mtr00001") == 1, 5), "online event stored")
    payload = json.loads(gw.scalar("SELECT payload FROM events WHERE kind='online'"))
    t.eq(payload.get("adapter"), "tcp", "online payload names the tcp adapter")

    # report: acked only after commit -> the row is there the moment the ack arrives
    d.send(bytes.fromhex("68 00 17 02 00 02 00 01 E2 40 05 DC 08 FD 00 0F 12 06 01 05 65 53 F1 00 "
                         "A1 C8"))
    ack = d.recv_n(10)
    n_now = gw.scalar("SELECT count(*) FROM events WHERE kind='property' AND device='mtr00001'")
    t.eq(ack.hex(" "), "68 00 07 80 00 02 02 00 e7 4c", "report acked with the doc's bytes")
    t.eq(n_now, 1, "the report is committed when its ack arrives")
    t.check(abs(prop(gw, "mtr00001", "energy_kwh") - 1234.56) < 1e-6, "energy_kwh 1234.56",
            prop(gw, "mtr00001", "energy_kwh"))
    t.eq(prop(gw, "mtr00001", "power_w"), 1500, "power_w 1500")
    t.check(abs(prop(gw, "mtr00001", "voltage") - 230.1) < 1e-3, "voltage 230.1",
            prop(gw, "mtr00001", "voltage"))
    t.eq(prop(gw, "mtr00001", "pulses"), 987654, "pulses 987654")
    t.eq(prop(gw, "mtr00001", "tariff"), "night", "tariff 1 -> night")
    t.eq(prop(gw, "mtr00001", "relay_on"), True, "relay_on true (bit 0)")
    t.eq(prop(gw, "mtr00001", "quality"), 2, "quality 2 (bits 1-2)")
    t.eq(gw.scalar("SELECT ts FROM events WHERE kind='property'"), 1700000000000,
         "device timestamp 1700000000 s -> ts in ms")
    t.eq(gw.scalar("SELECT msg_id FROM events WHERE kind='property'"), "2", "msg_id = seq")

    # event overload, heartbeat: acked in order (one write of both)
    d.send(b.meter_event(3) + b.meter_heartbeat(4))
    t.eq(d.recv_n(20), b.meter_ack(3, 3) + b.meter_ack(4, 4), "event and heartbeat acked in order")
    row = gw.query("SELECT name, payload FROM events WHERE kind='event'")
    t.eq(len(row), 1, "one event stored")
    if row:
        t.eq(row[0][0], "overload", "event name overload")
        t.eq(json.loads(row[0][1]), {"power_w": 9000, "duration_ms": 1500}, "event params")

    # a report out of the thing model's range: negative ack (result 1), nothing stored
    d.send(b.meter_report(5, voltage=500.0))
    t.eq(d.recv_n(10), b.meter_ack(5, 2, 1), "rejected report: negative ack (result 1)")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE kind='property'"), 1,
         "rejected report not stored")
    # and the next one is fine again
    d.send(b.meter_report(6, energy=2000.0))
    t.eq(d.recv_n(10), b.meter_ack(6, 2), "next report acked")
    t.check(abs(prop(gw, "mtr00001", "energy_kwh") - 2000.0) < 1e-6, "latest energy_kwh 2000")

    m1 = gw.metrics()
    t.eq(g.metric_delta(m0, m1, "tcp_frames_total"), 6.0, "tcp_frames_total +6")
    t.eq(g.metric_delta(m0, m1, g.metric_key("messages_rejected_total", reason="out_of_range")),
         1.0, "messages_rejected_total{reason=out_of_range} +1")
    t.eq(m1.get("devices_online"), 1.0, "devices_online 1")

    # idle: the product's idle_timeout_ms (1500) wins over the adapter's (600000)
    t.check(d.wait_closed(6), "silent session closed by the product's idle timeout")
    t.check(g.wait_until(lambda: offline_reason(gw, "mtr00001") == "idle_timeout", 5),
            "offline event reason idle_timeout", offline_reason(gw, "mtr00001"))
    t.eq(gw.metric("tcp_idle_timeouts_total"), 1.0, "tcp_idle_timeouts_total 1")
    d.close()

    # heartbeats keep a session alive past the idle timeout
    d, ack = login(gw, "mtr00002")
    t.eq(ack, b.meter_ack(1, 1), "mtr00002 logged in")
    alive = True
    for i in range(5):
        d.send(b.meter_heartbeat(10 + i))
        alive = alive and d.recv_n(10, timeout=3) == b.meter_ack(10 + i, 4)
        time.sleep(0.5)  # the pace under test (not a condition wait)
    t.check(alive, "heartbeats every 0.5 s for 2.5 s: acked, session kept (idle 1.5 s)")

    # peer close -> connection_lost
    d.close()
    t.check(g.wait_until(lambda: offline_reason(gw, "mtr00002") == "connection_lost", 5),
            "peer close -> offline connection_lost", offline_reason(gw, "mtr00002"))

    # take-over: a second login of the same device closes the first, the device stays online
    d1, a1 = login(gw, "mtr00003")
    t.eq(a1, b.meter_ack(1, 1), "first connection logged in")
    d2, a2 = login(gw, "mtr00003")
    t.eq(a2, b.meter_ack(1, 1), "second connection logged in")
    t.check(d1.wait_closed(5), "first connection closed by the take-over")
    t.check(g.wait_until(lambda: gw.metric("tcp_takeovers_total") == 1, 5), "tcp_takeovers_total 1")
    t.eq(offline_reason(gw, "mtr00003"), None, "no offline event for the taken-over session")
    d2.send(b.meter_report(2))
    t.eq(d2.recv_n(10), b.meter_ack(2, 2), "the new session reports")

    # shutdown -> offline shutdown, exit 0
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")
    t.eq(offline_reason(gw, "mtr00003"), "shutdown", "offline reason shutdown at exit")
    d1.close()
    d2.close()


g.run(main)

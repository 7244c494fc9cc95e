# Proves TCP framing on real sockets: frames one byte per segment, ten frames in one write, frames split at odd boundaries (all acked in order, all stored); a bad CRC is counted and never acked while the session goes on; an oversized frame and a garbage stream close the connection with a counter and a log line.
import json
import random
import time

import binframes as b
import gwtest as g

IDS = ["mtr%05d" % i for i in range(1, 7)]


def n_props(gw, dev):
    return gw.scalar("SELECT count(*) FROM events WHERE kind='property' AND device=?", (dev,))


def bad_total(m):
    return sum(v for k, v in m.items() if k.startswith("tcp_bad_frames_total"))


def login(gw, dev):
    d = b.Dev(g.adapter_port(gw, "tcp"))
    d.send(b.meter_login(dev, b.meter_secret(dev)))
    return d, d.recv_n(b.METER_ACK_LEN) == b.meter_ack(1, 1)


def main(t):
    gw = b.tcp_gateway([b.METER], b.meter_devices(IDS))
    port = g.adapter_port(gw, "tcp")
    m0 = gw.metrics()

    # one byte per segment: login and a report
    d = b.Dev(port)
    d.dribble(b.meter_login(IDS[0], b.meter_secret(IDS[0])))
    t.eq(d.recv_n(10), b.meter_ack(1, 1), "login sent one byte at a time: acked")
    d.dribble(b.meter_report(2, pulses=42))
    t.eq(d.recv_n(10), b.meter_ack(2, 2), "report sent one byte at a time: acked")
    t.eq(json.loads(gw.scalar("SELECT value FROM property_state WHERE device=? AND "
                              "property='pulses'", (IDS[0],))), 42, "its value stored (pulses 42)")

    # ten frames in one write
    frames = b"".join(b.meter_report(10 + i, pulses=1000 + i) for i in range(10))
    d.send(frames)
    acks = d.recv_n(100)
    t.eq(acks, b"".join(b.meter_ack(10 + i, 2) for i in range(10)),
         "ten frames in one write: ten acks, in order")
    t.eq(n_props(gw, IDS[0]), 11, "all eleven reports stored")
    got = [json.loads(r[0])["pulses"] for r in gw.query(
        "SELECT payload FROM events WHERE kind='property' AND device=? ORDER BY id", (IDS[0],))]
    t.eq(got, [42] + [1000 + i for i in range(10)], "stored in frame order")

    # frames split at odd boundaries (7-byte segments across three frames + a heartbeat)
    data = b.meter_report(30, pulses=7) + b.meter_heartbeat(31) + b.meter_event(32)
    for i in range(0, len(data), 7):
        d.send(data[i:i + 7])
        time.sleep(0.003)
    t.eq(d.recv_n(30), b.meter_ack(30, 2) + b.meter_ack(31, 4) + b.meter_ack(32, 3),
         "frames split in 7-byte segments: acked in order")

    # bad CRC: counted, rejected, never acked; the session goes on
    d.send(b.meter_report(40, crc_ok=False))
    t.check(d.quiet_for(0.6 * g.SLOW), "bad CRC: no ack, connection open")
    d.send(b.meter_report(41, pulses=99))
    t.eq(d.recv_n(10), b.meter_ack(41, 2), "next good frame acked")
    m1 = gw.metrics()
    t.eq(g.metric_delta(m0, m1, g.metric_key("tcp_bad_frames_total", reason="bad_check")), 1.0,
         "tcp_bad_frames_total{reason=bad_check} +1")
    t.eq(g.metric_delta(m0, m1, g.metric_key("messages_rejected_total", reason="bad_check")), 1.0,
         "messages_rejected_total{reason=bad_check} +1")
    t.eq(n_props(gw, IDS[0]), 13, "bad-CRC report not stored (11 + 2 good)")
    d.close()

    # oversized: a length field over max_frame (256) closes the connection before the body arrives
    mark = gw.log_mark()
    d, ok = login(gw, IDS[1])
    t.check(ok, "second device logged in")
    d.send(bytes([0x68, 0x04, 0x00, 0x02, 0x00, 0x02]) + b"\0" * 10)
    t.check(d.wait_closed(5), "length field of 1024 > max_frame 256: connection closed")
    t.check(g.wait_until(lambda: gw.metric("tcp_bad_frames_total", reason="oversized") == 1, 5),
            "tcp_bad_frames_total{reason=oversized} 1")
    t.check(g.wait_until(lambda: gw.scalar(
        "SELECT name FROM events WHERE kind='offline' AND device=?", (IDS[1],)) ==
        "protocol_error", 5), "offline reason protocol_error")
    lines = gw.find_log(mark, area="tcp", dev=IDS[1], reason="oversized")
    t.check(lines and "peer" in lines[0], "log line names the device, the peer and the reason",
            gw.log_since(mark)[-600:])
    d.close()

    # garbage before login: closed and counted, never online
    before = bad_total(gw.metrics())
    mark = gw.log_mark()
    rnd = random.Random(7)
    garbage = bytes(rnd.randrange(256) for _ in range(600))
    d = b.Dev(port)
    try:
        d.send(garbage)
    except OSError:
        pass
    t.check(d.wait_closed(5), "garbage stream: connection closed")
    t.check(g.wait_until(lambda: bad_total(gw.metrics()) == before + 1, 5),
            "garbage counted once in tcp_bad_frames_total", gw.metrics())
    t.check(gw.find_log(mark, area="tcp", msg="bad frame; closing"), "garbage logged")
    d.close()

    # a frame whose length field says less than its own header: never a frame
    d = b.Dev(port)
    d.send(bytes([0x68, 0x00, 0x00, 0x01, 0x00, 0x01]) + b"\0" * 30)
    t.check(d.wait_closed(5), "length 0 (shorter than the header): connection closed")
    d.close()

    t.eq(gw.scalar("SELECT count(*) FROM events WHERE kind='online'"), 2,
         "only the two logged-in devices came online")
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")

    # adapters.tcp.max_frame below the product's: a 26-byte report is oversized at 24
    gw = b.tcp_gateway([b.METER], b.meter_devices(IDS), tcp={"max_frame": 24})
    d, ok = login(gw, IDS[2])
    t.check(ok, "max_frame 24: the 24-byte login passes")
    d.send(b.meter_report(2))
    t.check(d.wait_closed(5), "max_frame 24: a 26-byte report closes the connection")
    t.check(g.wait_until(lambda: gw.metric("tcp_bad_frames_total", reason="oversized") == 1, 5),
            "counted as oversized")
    d.close()
    t.eq(gw.stop(), 0, "SIGTERM: exit 0 (second gateway)")


g.run(main)

# Proves the UDP replay window: a valid sensor-udp datagram sent again (from its own source port, and from 8 others spread over 2 loops) is stored once, counted as udp_dropped_total{reason=replay}, and neither its acks nor a command move away from the device's address (its own retransmission is acknowledged again); an unseen older seq within 64 is accepted without moving the address; a fresh seq is accepted (and roams), across the 16-bit wrap; a seq far below is refused; after replay_window_s of silence a restarted counter is accepted; a product with a timestamp refuses a stale one and a copy of a fresh one does not move the device.
import copy
import struct
import time
import zlib

import cmdlib as cl
import gwtest as g
import sensor_udp as su

DEV = "snr00001"
OTHER = "snr00002"


def replays(gw):
    return gw.metric("udp_dropped_total", reason="replay")


def stored(gw, seq, dev=DEV):
    return gw.scalar("SELECT count(*) FROM events WHERE device=? AND kind='property' AND "
                     "msg_id=?", (dev, str(seq)))


def sensor_cmd(data):
    """(type, seq) of a command datagram whose CRC verifies, else None."""
    if not data or len(data) < 25 or data[0] != 0xA5 or \
            struct.unpack(">I", data[-4:])[0] != zlib.crc32(data[:-4]):
        return None
    return data[2], struct.unpack("<H", data[19:21])[0]


def seq_part(t):
    broker = g.Mosquitto(extra_conf=cl.BROKER_CONF)
    cfg = {"north": cl.north(broker.port), "storage": {"batch_ms": 0}}
    gw = su.gateway(n_devices=2, config=cfg, loops=2)
    port = su.udp_port(gw)
    cloud = cl.Cloud(broker.port)
    t.check(cloud.wait_ready(su.PRODUCT, OTHER), "north up")
    r0 = replays(gw)

    a = su.Client(port)
    original = su.report(DEV, 10, temperature=20.0)
    t.eq(a.request(original, 5)[0], (DEV, 10, 0), "seq 10 from A: acked at A")
    t.eq(stored(gw, 10), 1, "stored once")

    # the device's own retransmission (its ack may have been lost): acked again, not stored
    t.eq(a.request(original, 5)[0], (DEV, 10, 0), "the same datagram from A again: acked again")
    t.eq(replays(gw) - r0, 1.0, "counted as a replay")

    # the same datagram from 8 other source ports (SO_REUSEPORT spreads them over both loops)
    others = [su.Client(port) for _ in range(8)]
    for o in others:
        o.send(original)
    t.check(all(o.quiet(0.3) for o in others), "replays from other ports: no ack there")
    t.check(a.quiet(0.3), "and none at A either")
    t.check(g.wait_until(lambda: replays(gw) - r0 == 9.0, 5), "udp_dropped_total{reason=replay} "
            "+9", replays(gw) - r0)
    t.eq(stored(gw, 10), 1, "the report is still stored once")
    t.eq(gw.metric("udp_takeovers_total"), 0.0, "no replay moved the session to the other loop")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE device=? AND kind='online'", (DEV,)), 1,
         "one online event")
    logs = gw.find_log(0, area="udp", msg="datagram dropped", reason="replay")
    t.check(any(d.get("claimed_dev") == DEV and d.get("detail") == "seq 10 repeats the last "
                "accepted 10" for d in logs), "logged with reason replay, the device and the seq",
            logs[:2])

    # a command goes to A, not to a replaying port
    cloud.invoke(su.PRODUCT, DEV, "r-1", "identify", {"blink_s": 2})
    cmd = sensor_cmd(a.recv(5))
    t.check(cmd is not None and cmd[0] == 0x82, "the command datagram arrives at A", cmd)
    t.check(all(o.quiet(0.1) for o in others), "no replaying port gets it")
    if cmd:
        a.send(su.frame(0x04, DEV, su.token_of(DEV), cmd[1], b"\x00\x01"))
        r = cloud.reply(DEV, "r-1")
        t.check(r and r[1].get("success") is True, "the device's reply is matched", r)

    # an older seq never sent (reordered on the way): accepted, acked at A; its copy from
    # another port is a replay
    late = su.report(DEV, 8, temperature=19.0)
    t.eq(a.request(late, 5)[0], (DEV, 8, 0), "an unseen seq below the highest: stored, acked")
    t.eq(stored(gw, 8), 1, "seq 8 stored")
    r1 = replays(gw)
    others[1].send(late)
    t.check(others[1].quiet(0.3) and a.quiet(0.2), "seq 8 again from B: refused")
    t.eq(replays(gw) - r1, 1.0, "counted as a replay")
    t.eq(stored(gw, 8), 1, "seq 8 still stored once")
    # an unseen older seq from another port does not move the device: on A's loop it is stored
    # and acked at A, on the other loop (where it would take the session over) it is refused
    others[0].send(su.report(DEV, 9, temperature=19.5))
    got = a.ack(1.0)
    t.check(others[0].quiet(0.3), "seq 9 from B: nothing at B")
    t.check((got == (DEV, 9, 0) and stored(gw, 9) == 1) or
            (got is None and replays(gw) - r1 == 2.0 and stored(gw, 9) == 0),
            "seq 9 from B: stored and acked at A, or refused as a replay", (got, stored(gw, 9)))

    # a fresh seq from a new address is the device roaming: acked there, commands follow
    c = su.Client(port)
    t.eq(c.request(su.report(DEV, 11), 5)[0], (DEV, 11, 0), "fresh seq 11 from C: acked at C")
    cloud.invoke(su.PRODUCT, DEV, "r-2", "identify", {"blink_s": 1})
    cmd = sensor_cmd(c.recv(5))
    t.check(cmd is not None and cmd[0] == 0x82, "after roaming the command goes to C", cmd)
    t.check(a.quiet(0.2), "and not to A")
    if cmd:
        c.send(su.frame(0x04, DEV, su.token_of(DEV), cmd[1], b"\x00\x01"))
        cloud.reply(DEV, "r-2")

    # across the 16-bit wrap: 30000, 60000, 65535, then 3 are each newer than the one before
    for s in (30000, 60000, 65535, 3):
        t.eq(c.request(su.heartbeat(DEV, s), 5)[0], (DEV, s, 0), "seq %d accepted" % s)
    r1 = replays(gw)
    c.send(su.heartbeat(DEV, 40000))  # 25539 behind 3
    t.check(c.quiet(0.5), "seq 40000 after 3 (far below the window): refused")
    t.eq(replays(gw) - r1, 1.0, "counted as a replay")
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")
    cloud.stop()
    for o in others + [a, c]:
        o.close()
    broker.stop()


def ts_product():
    """sensor-udp with a timestamp (u32 seconds) in place of the seq, reports and heartbeats
    only."""
    p = copy.deepcopy(g.load_product(su.PRODUCT))
    p["id"] = "sensor-ts"
    fr = p["frame"]
    fr["header"] = [h for h in fr["header"] if h.get("role") != "seq"] + \
        [{"name": "time", "type": "u32", "scale": 1000, "role": "timestamp"}]
    fr["messages"] = [m for m in fr["messages"] if m["kind"] in ("report", "heartbeat")]
    p.pop("functions", None)
    for prop in p["properties"]:
        prop["access"] = "r"
    return p


def ts_report(dev, ts, temperature=21.5):
    body = struct.pack("<hHBBH", int(round(temperature * 100)), 4520, 87, 1, 60)
    head = bytes([0xA5, 0x01, su.REPORT]) + su.pad8(dev) + su.pad8(su.token_of(dev)) + \
        struct.pack("<I", ts) + body
    return su.with_crc(head)


def ts_ack(c, timeout=5.0):
    """An ack datagram (type 0x81, CRC ok) arriving at c, else None."""
    b = c.recv(timeout)
    ok = b and len(b) > 7 and b[2] == su.ACK and \
        struct.unpack(">I", b[-4:])[0] == zlib.crc32(b[:-4])
    return b if ok else None


def window_part(t):
    window = 3
    tsp = ts_product()
    devs = su.devices([DEV, OTHER]) + [{"id": "tsd00001", "product": tsp["id"],
                                        "secret": su.token_of("tsd00001")}]
    cfg = {"storage": {"batch_ms": 0},
           "adapters": {"udp": {"replay_window_s": window, "listeners": [
               {"address": g.HOST, "port": 0, "product": su.PRODUCT},
               {"address": g.HOST, "port": 0, "product": tsp["id"]}]}}}
    gw = g.Gateway(products=[g.THERMO, g.load_product(su.PRODUCT), tsp], devices=devs,
                   config=cfg, loops=1)
    port, tsport = gw.product_ports[su.PRODUCT], gw.product_ports[tsp["id"]]

    # the device restarts its counter: refused while the window holds its last seq, accepted
    # once replay_window_s passed without a newer one
    a = su.Client(port)
    t.eq(a.request(su.report(OTHER, 500), 5)[0], (OTHER, 500, 0), "seq 500 accepted")
    t0 = time.monotonic()
    acked = None
    while time.monotonic() - t0 < 4 * window * g.SLOW and acked is None:
        acked = a.request(su.report(OTHER, 1), 0.5)[0]
    dt = time.monotonic() - t0
    t.info("a restarted counter (seq 1 after 500) was accepted after %.1f s (window %d s)"
           % (dt, window))
    t.eq(acked, (OTHER, 1, 0), "seq 1 accepted once the window expired")
    t.check(dt >= window - 0.5, "not before replay_window_s: %.1f s" % dt)
    t.eq(stored(gw, 1, OTHER), 1, "stored once")

    # timestamps: a stale one is refused, a copy of a fresh one from elsewhere does not move
    # the device, a newer one does
    tdev = "tsd00001"
    a2, b2 = su.Client(tsport), su.Client(tsport)
    now = int(time.time())
    r0 = replays(gw)
    fresh = ts_report(tdev, now)
    a2.send(fresh)
    t.check(ts_ack(a2), "a fresh timestamp: acked")
    b2.send(ts_report(tdev, now - 60))
    t.check(b2.quiet(0.5), "a timestamp 60 s old: refused")
    t.eq(replays(gw) - r0, 1.0, "counted as a replay")
    b2.send(fresh)
    t.check(ts_ack(a2), "a copy of the fresh datagram from B: its ack goes to A")
    t.check(b2.quiet(0.3), "nothing at B")
    b2.send(ts_report(tdev, now + 1))
    t.check(ts_ack(b2), "a newer timestamp from B: acked at B (the device moved)")
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")
    for c in (a, a2, b2):
        c.close()


def main(t):
    seq_part(t)
    window_part(t)


g.run(main)

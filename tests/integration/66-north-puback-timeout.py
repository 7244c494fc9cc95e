# Proves the north link cannot stall silently: a fake broker that CONNACKs, SUBACKs and swallows every PUBLISH without a PUBACK is left after north.puback_timeout_ms (not before), rejoined with the back-off, and sent the window again from its first event (at most `window` publishes per connection, no libmosquitto resends with DUP); each drop is counted and logged (warn, broker address, wait); devices held by the outbox budget meanwhile get exactly max_outbox_rows acknowledged; once the broker acknowledges, every event arrives and the outbox drains, and an acknowledging broker is never dropped.
import json
import socket
import struct
import threading
import time

import gwtest as g

TIMEOUT_MS = 2000
WINDOW = 64
MAXR = 300
NDEV = 2
PER = 200  # 400 device messages + 2 online events: more than MAXR, so devices are held
STALLS = 3  # connections that end in a PUBACK timeout before the broker acknowledges


def varint(n):
    out = b""
    while True:
        b = n % 128
        n //= 128
        out += bytes([b | (0x80 if n else 0)])
        if not n:
            return out


class FakeBroker:
    """Just enough MQTT 3.1.1 on a free loopback port: CONNACK 0, SUBACK (QoS 1 granted),
    PINGRESP; a QoS 1 PUBLISH is swallowed (ack False) or PUBACKed (ack True). Records each
    connection (CONNECT, first PUBLISH and close times, DISCONNECT seen) and every PUBLISH."""

    def __init__(self):
        self.ack = False
        self.lock = threading.Lock()
        self.conns = []  # dicts: open, first_pub, close, disconnect, pubs
        self.pubs = []  # (conn index, time, dup, topic, payload bytes, acked)
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind((g.HOST, 0))
        self.ls.listen(8)
        self.port = self.ls.getsockname()[1]
        self.socks = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while not self.closed:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            with self.lock:
                self.socks.append(s)
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s):
        conn = None
        try:
            for first, body in g.mqtt_packets(s):
                kind = first >> 4
                if kind == 1:  # CONNECT
                    with self.lock:
                        conn = len(self.conns)
                        self.conns.append({"open": time.monotonic(), "first_pub": None,
                                           "close": None, "disconnect": False, "pubs": 0})
                    s.sendall(b"\x20\x02\x00\x00")
                elif kind == 3:  # PUBLISH
                    qos, dup = (first >> 1) & 3, bool(first & 8)
                    tl = struct.unpack(">H", body[:2])[0]
                    topic = body[2:2 + tl].decode()
                    pos = 2 + tl
                    pid = None
                    if qos:
                        pid = struct.unpack(">H", body[pos:pos + 2])[0]
                        pos += 2
                    with self.lock:
                        ack = self.ack and qos == 1
                        c = self.conns[conn]
                        if c["first_pub"] is None:
                            c["first_pub"] = time.monotonic()
                        c["pubs"] += 1
                        self.pubs.append((conn, time.monotonic(), dup, topic, body[pos:], ack))
                    if ack:
                        s.sendall(b"\x40\x02" + struct.pack(">H", pid))
                elif kind == 8:  # SUBSCRIBE: pid, then (filter, qos) pairs
                    pid = body[:2]
                    pos, n = 2, 0
                    while pos < len(body):
                        pos += 2 + struct.unpack(">H", body[pos:pos + 2])[0] + 1
                        n += 1
                    s.sendall(b"\x90" + varint(2 + n) + pid + b"\x01" * n)
                elif kind == 12:  # PINGREQ
                    s.sendall(b"\xd0\x00")
                elif kind == 14:  # DISCONNECT
                    with self.lock:
                        if conn is not None:
                            self.conns[conn]["disconnect"] = True
        except OSError:
            pass
        finally:
            with self.lock:
                if conn is not None:
                    self.conns[conn]["close"] = time.monotonic()
            s.close()

    def snapshot(self):
        with self.lock:
            return [dict(c) for c in self.conns], list(self.pubs)

    def stop(self):
        self.closed = True
        self.ls.close()
        with self.lock:
            socks = list(self.socks)
        for s in socks:
            try:
                s.close()
            except OSError:
                pass


def key(payload):
    try:
        d = json.loads(payload)
    except ValueError:
        return None
    if not isinstance(d, dict):
        return None
    if "messageId" in d:
        return (d.get("device"), d["messageId"])
    return (d.get("device"), d.get("kind"), d.get("time"))  # online events


def main(t):
    fb = FakeBroker()
    gw = g.Gateway(n_devices=NDEV, config={
        "north": g.north_cfg(fb.port, puback_timeout_ms=TIMEOUT_MS, window=WINDOW,
                             max_outbox_rows=MAXR, reconnect_min_ms=100, reconnect_max_ms=1000),
        "storage": {"queue_max": 16, "batch_max": 32}})
    t.check(g.wait_until(lambda: gw.metric("north_connected") == 1, 10),
            "the link comes up to the fake broker")
    devs = g.thermo_ids(NDEV)
    clients = [g.device_client(gw, d, timeout=30) for d in devs]
    # each device sends its 200 at once, so the store queue (queue_max 16) fills with events
    # held for the budget: the north thread must still read the PUBACKs that free the outbox
    streams = [g.QoS1Stream(c, d, window=PER) for c, d in zip(clients, devs)]

    # phase 1: the broker swallows; devices fill the outbox budget and are held
    res = g.run_streams(streams, PER, stall=3.0, timeout=60)
    acked = sum(len(s.acked) for s in streams)
    t.check(not all(res), "devices are held (outbox budget %d reached)" % MAXR, res)
    t.eq(acked, MAXR - NDEV, "exactly max_outbox_rows - the online events acknowledged")
    t.eq([s.errors for s in streams], [[]] * NDEV, "devices stay connected")
    ok = g.wait_until(lambda: len([c for c in fb.snapshot()[0] if c["close"]]) >= STALLS, 30)
    t.check(ok, "the link is dropped %d times" % STALLS, len(fb.snapshot()[0]))
    t.check(g.wait_until(lambda: gw.metric("north_connected") == 1, 10),
            "and rejoined (north_connected 1)")
    conns, pubs = fb.snapshot()
    t.check(gw.metric("north_puback_timeouts_total") >= STALLS,
            "north_puback_timeouts_total >= %d" % STALLS, gw.metric("north_puback_timeouts_total"))
    closed = [c for c in conns if c["close"]]
    waits = [c["close"] - c["first_pub"] for c in closed if c["first_pub"]]
    t.eq(len(waits), len(closed), "every dropped connection had publishes in flight")
    lo, hi = TIMEOUT_MS / 1000.0 - 0.05, TIMEOUT_MS * 1.1 / 1000.0 + 0.3 * g.SLOW
    t.check(waits and all(lo <= w <= hi for w in waits),
            "each is dropped %.2f..%.2f s after its first publish (timeout %d ms, checked every "
            "tenth of it)" % (lo, hi, TIMEOUT_MS), ["%.2f" % w for w in waits])
    t.check(all(c["disconnect"] for c in closed), "the gateway says DISCONNECT before leaving")
    per_conn = [c["pubs"] for c in conns]
    t.check(all(0 < n <= WINDOW for n in per_conn[:len(closed)]),
            "at most window (%d) publishes per swallowing connection" % WINDOW, per_conn)
    t.eq(sum(1 for p in pubs if p[2]), 0, "no PUBLISH resent with DUP (libmosquitto does not "
         "resend by itself)")
    firsts = [next(p[4] for p in pubs if p[0] == i) for i in range(len(closed))]
    t.check(len(set(firsts)) == 1, "every connection starts again from the first unacknowledged "
            "event", [f[:80] for f in firsts])
    warns = [d for d in gw.find_log(level="warn", area="north")
             if d.get("msg", "").startswith("no PUBACK")]
    t.check(len(warns) >= STALLS, "a warn line per drop", len(warns))
    w = warns[0] if warns else {}
    t.check(w.get("host") == g.HOST and w.get("port") == str(fb.port) and
            int(w.get("waited_ms", 0)) >= TIMEOUT_MS,
            "the warning names the broker and the wait", w)
    gaps = [conns[i + 1]["open"] - conns[i]["close"] for i in range(len(closed))
            if i + 1 < len(conns)]
    t.info("connections %d, publishes per connection %s, drop after %s s, reconnect gaps %s s"
           % (len(conns), per_conn, ["%.2f" % x for x in waits], ["%.2f" % x for x in gaps]))
    t.info("events held in the store queue for the budget: %d" % gw.metric("store_queue_depth"))
    t.eq(gw.scalar("SELECT count(*) FROM outbox"), MAXR, "the outbox holds max_outbox_rows")

    # phase 2: the broker acknowledges; the held devices resume and everything arrives
    with fb.lock:
        fb.ack = True
    res = g.run_streams(streams, PER, timeout=60)
    t.check(all(res), "every device message acknowledged once the broker acks",
            [s.errors[:2] for s in streams])
    want = set((d, "%s-%d" % (d, i)) for d in devs for i in range(1, PER + 1))

    def delivered():
        return set(key(p[4]) for p in fb.snapshot()[1] if p[5])
    t.check(g.wait_until(lambda: want <= delivered(), 30), "every device message arrives "
            "(acknowledged by the broker)", len(want - delivered()))
    t.check(g.wait_until(lambda: gw.scalar("SELECT count(*) FROM outbox") == 0 and
                         gw.metric("north_inflight") == 0, 20), "the outbox drains")
    online = [k for k in delivered() if k and len(k) == 3]
    t.eq(len(online), NDEV, "the online events arrive too")
    timeouts = gw.metric("north_puback_timeouts_total")
    conns, pubs = fb.snapshot()
    t.check(len(pubs) - len(set(key(p[4]) for p in pubs)) <= WINDOW * len(conns),
            "resends bounded by the window per connection", len(pubs))

    # phase 3: an acknowledging broker is never dropped
    more = PER + 300
    res = g.run_streams(streams, more, timeout=60)
    t.check(all(res), "%d more messages acknowledged" % (NDEV * 300))
    t.check(g.wait_until(lambda: gw.scalar("SELECT count(*) FROM outbox") == 0, 20),
            "and forwarded")
    time.sleep(TIMEOUT_MS / 1000.0 + 1.0)  # one timeout and one check later: no false drop
    t.eq(gw.metric("north_puback_timeouts_total"), timeouts,
         "no PUBACK timeout while the broker acknowledges")
    t.eq(len(fb.snapshot()[0]), len(conns), "no reconnect while the broker acknowledges")
    t.info("upstream publishes %d for %d events; puback timeouts %d"
           % (len(fb.snapshot()[1]), NDEV * more + NDEV, timeouts))
    for c in clients:
        c.disconnect()
    t.eq(gw.stop(), 0, "SIGTERM exit 0")
    fb.stop()


g.run(main)

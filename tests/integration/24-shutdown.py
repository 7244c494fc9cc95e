# Proves graceful shutdown: SIGTERM during QoS 1 traffic exits 0 in time, every acknowledged message is stored, and every online device is left offline with reason shutdown.
import threading
import time

import gwtest as g

PUBLISHERS = ["t-001", "t-002", "t-003", "t-004"]
IDLE = "t-005"
WINDOW = 20


def publisher(c, dev, acked, errors):
    outstanding = {}
    n = 0
    try:
        while n < 60000:
            batch = []
            while len(outstanding) < WINDOW and n < 60000:
                n += 1
                outstanding[n] = "%s-%d" % (dev, n)
                batch.append(g.publish_packet(g.report_topic(dev), g.report_payload(
                    outstanding[n], {"humidity": n % 100}), 1, n))
            c.send(b"".join(batch))
            p = c.read_packet(15)
            if p is None:
                errors.append("%s: no packet for 15 s" % dev)
                return
            if p.type == g.PUBACK and p.pid in outstanding:
                acked.append(outstanding.pop(p.pid))
            else:
                errors.append("%s: unexpected %r" % (dev, p))
    except (g.Closed, OSError):
        pass
    # PUBACKs still buffered on our side
    try:
        while True:
            p = c.read_packet(5)
            if p is None:
                errors.append("%s: open 5 s after shutdown began" % dev)
                return
            if p.type == g.PUBACK and p.pid in outstanding:
                acked.append(outstanding.pop(p.pid))
    except (g.Closed, OSError):
        pass


def main(t):
    gw = g.Gateway(n_devices=6)
    idle = g.device_client(gw, IDLE)
    acks = {d: [] for d in PUBLISHERS}
    errors = []
    conns = [g.device_client(gw, d, timeout=15) for d in PUBLISHERS]
    ths = [threading.Thread(target=publisher, args=(c, d, acks[d], errors))
           for c, d in zip(conns, PUBLISHERS)]
    for th in ths:
        th.start()
    t.check(g.wait_until(lambda: sum(len(a) for a in acks.values()) >= 2000, 30),
            "traffic flowing (2,000 acknowledged)")
    pid = gw.pid
    t0 = time.monotonic()
    code = gw.stop(timeout=10)
    dt = time.monotonic() - t0
    t.eq(code, 0, "SIGTERM during traffic: exit 0")
    t.check(dt < 10 * g.SLOW, "exited within 10 s", "%.2f s" % dt)
    t.info("exit after %.2f s (pid %d)" % (dt, pid))
    for th in ths:
        th.join(30)
    t.check(not any(th.is_alive() for th in ths), "publishers saw their connections end")
    t.eq(errors, [], "publishers: no protocol surprises")
    t.check(idle.wait_closed(3), "idle client's connection closed")

    acked = [m for d in PUBLISHERS for m in acks[d]]
    stored = set(r[0] for r in gw.query("SELECT msg_id FROM events WHERE kind='property'"))
    missing = [m for m in acked if m not in stored]
    t.eq(missing[:10], [], "every acknowledged message stored (%d acked, %d stored)"
         % (len(acked), len(stored)))
    t.info("acknowledged %d, stored %d" % (len(acked), len(stored)))
    all_devs = PUBLISHERS + [IDLE]
    st = dict((d, (o, r)) for d, o, r in gw.query(
        "SELECT device, online, last_offline_reason FROM device_state"))
    t.eq([st.get(d) for d in all_devs], [(0, "shutdown")] * len(all_devs),
         "device_state: every device offline, reason shutdown")
    off = gw.query("SELECT device, name, payload FROM events WHERE kind='offline' ORDER BY device")
    t.eq([(d, n) for d, n, _ in off], [(d, "shutdown") for d in sorted(all_devs)],
         "one offline event (shutdown) per online device")
    t.check(all('"will":false' in p.replace(" ", "") for _, _, p in off),
            "shutdown offline payloads: will false", off[:1])
    t.eq(gw.query("PRAGMA integrity_check"), [("ok",)], "integrity_check ok")
    for c in conns:
        c.close()
    idle.close()

    # SIGINT behaves the same (quiet gateway)
    gw.start()
    c = g.device_client(gw, "t-006")
    ack = c.publish_wait(g.report_topic("t-006"), g.report_payload("int-1", {"on": False}), 1)
    t.check(ack is not None, "restarted: QoS 1 acknowledged")
    import os
    import signal
    os.kill(gw.pid, signal.SIGINT)
    try:
        rc = gw.proc.wait(10 * g.SLOW)
    except Exception:
        rc = None
    t.eq(rc, 0, "SIGINT: exit 0")
    t.eq(gw.query("SELECT online, last_offline_reason FROM device_state WHERE device='t-006'"),
         [(0, "shutdown")], "SIGINT: device offline, reason shutdown")
    c.close()


g.run(main)

# Proves back-pressure without loss: with a tiny store queue a QoS 0 flood from several connections makes the gateway pause reading (store_backpressure_total > 0) and every message is still stored.
import threading
import time

import gwtest as g

SCALE = 10 if g.SANITIZED else 1
NCONN = 8
PER_CONN = 5000 // SCALE


def flood(c, dev, errors):
    try:
        topic = g.report_topic(dev)
        pkts = [g.publish_packet(topic, '{"messageId":"%s-%d","properties":{"humidity":%d}}'
                                 % (dev, j, j % 100)) for j in range(PER_CONN)]
        for k in range(0, PER_CONN, 500):
            c.send(b"".join(pkts[k:k + 500]))
        if not c.ping(60):
            errors.append("%s: no PINGRESP after flood" % dev)
    except Exception as e:  # noqa: BLE001
        errors.append("%s: %r" % (dev, e))


def main(t):
    gw = g.Gateway(n_devices=NCONN, config={"storage": {"queue_max": 16, "batch_max": 4}})
    b0 = gw.metric("store_backpressure_total")
    conns = [g.device_client(gw, d, timeout=60) for d in g.thermo_ids(NCONN)]
    errors = []
    t0 = time.monotonic()
    ths = [threading.Thread(target=flood, args=(c, d, errors))
           for c, d in zip(conns, g.thermo_ids(NCONN))]
    depth_max = [0.0]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            try:
                depth_max[0] = max(depth_max[0], gw.metric("store_queue_depth"))
            except Exception:
                pass
            time.sleep(0.05)
    s = threading.Thread(target=sample)
    s.start()
    for th in ths:
        th.start()
    for th in ths:
        th.join(300)
    total = NCONN * PER_CONN
    ok = g.wait_until(lambda: gw.scalar("SELECT count(*) FROM events WHERE kind='property'")
                      == total, 5 if errors else 60)
    stop.set()
    s.join()
    dt = time.monotonic() - t0
    t.eq(errors, [], "flood clients: no errors")
    n = gw.scalar("SELECT count(*) FROM events WHERE kind='property'")
    t.check(ok, "every message stored (%d of %d)" % (n, total))
    t.eq(gw.scalar("SELECT count(DISTINCT msg_id) FROM events WHERE kind='property'"), total,
         "no duplicates, none missing")
    m = gw.metrics()
    t.check(m.get("store_backpressure_total", 0) - b0 > 0, "store_backpressure_total > 0",
            m.get("store_backpressure_total"))
    # each loop checks "full" before it parses a PUBLISH, so the loops together may overshoot
    # the bound by at most one event each
    t.check(depth_max[0] <= 16 + 2, "store_queue_depth never seen above queue_max 16 + loops 2",
            depth_max[0])
    t.check(m.get("store_queue_depth_max", 99) <= 16 + 2,
            "store_queue_depth_max (the gateway's own peak) <= queue_max 16 + loops 2",
            m.get("store_queue_depth_max"))
    t.eq(sum(v for k, v in m.items() if k.startswith("messages_rejected_total")), 0.0,
         "nothing rejected")
    t.info("%d messages through a 16-event queue in %.1f s; backpressure_total=%s, max depth %s"
           % (total, dt, m.get("store_backpressure_total"), depth_max[0]))
    # still responsive afterwards: a QoS 1 round trip
    try:
        ack = conns[0].publish_wait(g.report_topic("t-001"), g.report_payload("after", {"on": True}),
                                    1)
    except (g.Closed, OSError):
        ack = None
    t.check(ack is not None, "QoS 1 after the flood acknowledged")
    for c in conns:
        c.disconnect()
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")


g.run(main)

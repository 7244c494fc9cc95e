# Proves TCP back-pressure without loss: with a tiny store queue and a small max_inflight, a report flood from several meter connections makes the gateway pause reading (store_backpressure_total > 0), every report is stored once and acked once, in order.
import threading
import time

import binframes as b
import gwtest as g

SCALE = 10 if g.SANITIZED else 1
NCONN = 4
PER_CONN = 4000 // SCALE
IDS = ["mtr%05d" % i for i in range(1, NCONN + 1)]


def flood(port, dev, errors):
    try:
        d = b.Dev(port, timeout=60)
        d.send(b.meter_login(dev, b.meter_secret(dev)))
        if d.recv_n(10, 30) != b.meter_ack(1, 1):
            errors.append("%s: no login ack" % dev)
            return
        got = []

        def reader():
            want = PER_CONN * b.METER_ACK_LEN
            data = d.recv_n(want, 120)
            got.append(data)
        r = threading.Thread(target=reader)
        r.start()
        frames = [b.meter_report(2 + j, pulses=j) for j in range(PER_CONN)]
        for k in range(0, PER_CONN, 250):
            d.send(b"".join(frames[k:k + 250]))
        r.join(150)
        want = b"".join(b.meter_ack(2 + j, 2) for j in range(PER_CONN))
        if not got or got[0] != want:
            n = len(got[0]) // b.METER_ACK_LEN if got else 0
            errors.append("%s: %d of %d acks, in order: %s" % (dev, n, PER_CONN,
                                                                got and got[0] == want[:len(got[0])]))
        d.close()
    except Exception as e:  # noqa: BLE001
        errors.append("%s: %r" % (dev, e))


def main(t):
    gw = b.tcp_gateway([b.METER], b.meter_devices(IDS), tcp={"max_inflight": 8},
                       config={"storage": {"path": "data/iotgw.db", "queue_max": 16,
                                           "batch_max": 4}})
    port = g.adapter_port(gw, "tcp")
    errors = []
    t0 = time.monotonic()
    ths = [threading.Thread(target=flood, args=(port, d, errors)) for d in IDS]
    for th in ths:
        th.start()
    for th in ths:
        th.join(300)
    total = NCONN * PER_CONN
    ok = g.wait_until(lambda: gw.scalar("SELECT count(*) FROM events WHERE kind='property'")
                      == total, 5 if errors else 60)
    t.eq(errors, [], "every connection: every report acked once, in order")
    n = gw.scalar("SELECT count(*) FROM events WHERE kind='property'")
    t.check(ok, "every report stored (%d of %d)" % (n, total))
    t.eq(gw.scalar("SELECT count(*) FROM (SELECT DISTINCT device, msg_id FROM events "
                   "WHERE kind='property')"), total, "no duplicates, none missing")
    t.check(gw.metric("store_backpressure_total") > 0, "store_backpressure_total > 0",
            gw.metric("store_backpressure_total"))
    t.info("%d reports in %.1f s" % (total, time.monotonic() - t0))
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")


g.run(main)

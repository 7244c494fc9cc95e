# Proves UDP back-pressure without loss: with a tiny store queue, bursts of reports make the loops stop receiving (store_backpressure_total > 0, datagrams wait in the socket buffer) and every report is still stored and acknowledged after its commit, none dropped.
import gwtest as g
import sensor_udp as su

NDEV = 4
PER_DEV = 100 if g.SANITIZED else 250


def main(t):
    gw = su.gateway(n_devices=NDEV, config={"storage": {"queue_max": 16, "batch_max": 4,
                                                        "batch_ms": 20}})
    port = su.udp_port(gw)
    b0 = gw.metric("store_backpressure_total")
    clients = {d: su.Client(port, rcvbuf=1 << 20) for d in su.dev_ids(NDEV)}
    # bursts of 25 per device (all devices interleaved), then read the acks of the burst
    acked = {d: set() for d in clients}
    bad = []
    for k in range(0, PER_DEV, 25):
        for seq in range(k + 1, k + 26):
            for d, c in clients.items():
                c.send(su.report(d, seq, battery=seq % 100))
        for d, c in clients.items():
            for _ in range(25):
                a = c.ack(20)
                if a is None or a[0] != d or a[2] != 0:
                    bad.append((d, a))
                    break
                acked[d].add(a[1])
    t.check(not bad, "every report acknowledged with result 0", bad[:5])
    t.check(all(acked[d] == set(range(1, PER_DEV + 1)) for d in clients),
            "each device got one ack per seq", {d: len(v) for d, v in acked.items()})
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE kind='property'"), NDEV * PER_DEV,
         "all %d reports stored" % (NDEV * PER_DEV))
    t.check(gw.metric("store_backpressure_total") > b0, "store_backpressure_total increased",
            gw.metric("store_backpressure_total"))
    m = gw.metrics()
    t.eq(sum(v for k, v in m.items() if k.startswith("udp_dropped_total")), 0.0,
         "no datagram dropped")
    t.eq(m.get("udp_datagrams_total"), float(NDEV * PER_DEV), "udp_datagrams_total")
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")
    for c in clients.values():
        c.close()


g.run(main)

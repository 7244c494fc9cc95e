# Proves a cloud broker outage loses nothing: the broker is stopped mid-stream (10,000 messages), 5,000 more are acknowledged to devices while it is down, and after it comes back on the same port all 15,000 arrive; the gateway itself (its publishes recorded on the wire by a relay in front of the broker) resends at most its in-flight window per broken link and never twice on one link, with north_reconnects_total > 0.
import json
import threading

import gwtest as g

SCALE = 5 if g.SANITIZED else 1
NDEV = 4
PHASE1 = 2500 // SCALE  # per device: 10,000 in all, broker stopped mid-way
PHASE2 = 1250 // SCALE  # per device: 5,000 more, all while the broker is down
WINDOW = 256            # the north default, stated so the resend bound below is explicit


def pub_key(payload):
    """(device, messageId) of an upstream payload, else the payload itself (online events)."""
    try:
        d = json.loads(payload)
    except ValueError:
        d = None
    return g.north_key((None, d, None)) or payload


def main(t):
    broker = g.Mosquitto(g.CLOUD_CONF, persistence=True)
    sub = g.CloudSubscriber(broker.port, topics=["iotgw/#"], client_id="cloud-61")
    # the gateway reaches the broker through a relay that records what the gateway publishes:
    # the subscriber also sees the broker's own redeliveries after its restart (in flight to the
    # subscriber when it stopped), which are no resends of the gateway
    tap = g.MqttTap(broker.port)
    gw = g.Gateway(n_devices=NDEV, config={"north": g.north_cfg(tap.port, window=WINDOW)})
    t.check(g.wait_until(lambda: gw.metric("north_connected") == 1, 10), "north connected")
    devs = g.thermo_ids(NDEV)
    clients = [g.device_client(gw, d, timeout=30) for d in devs]
    streams = [g.QoS1Stream(c, d, window=40) for c, d in zip(clients, devs)]

    # phase 1 in the background; stop the broker once the gateway has forwarded ~30% of it
    res1 = []
    th = threading.Thread(target=lambda: res1.extend(g.run_streams(streams, PHASE1,
                                                                   timeout=120)))
    th.start()
    trigger = NDEV * PHASE1 * 3 // 10
    mid = g.wait_until(lambda: gw.metric("north_forwarded_total") >= trigger, 60, interval=0.005)
    fwd_at_stop = gw.metric("north_forwarded_total")
    broker.halt()
    acked_at_stop = sum(len(s.acked) for s in streams)
    t.check(mid, "broker stopped mid-stream (forwarded %d, acked %d of %d)"
            % (fwd_at_stop, acked_at_stop, NDEV * PHASE1))
    t.check(g.wait_until(lambda: gw.metric("north_connected") == 0, 10),
            "north_connected 0 while the broker is down")
    th.join()
    t.check(all(res1), "phase 1: every message acknowledged", [s.errors[:2] for s in streams])

    # phase 2: the broker is down for the whole of it
    res2 = g.run_streams(streams, PHASE1 + PHASE2, timeout=120)
    down = not broker.alive()
    t.check(all(res2) and down, "phase 2: %d more acknowledged while the broker is down"
            % (NDEV * PHASE2), [s.errors[:2] for s in streams])
    queued = gw.metric("north_queued")
    outbox = gw.scalar("SELECT count(*) FROM outbox")
    t.check(outbox >= NDEV * PHASE2, "outbox holds at least the %d accepted during the outage"
            % (NDEV * PHASE2), outbox)
    t.check(queued >= NDEV * PHASE2, "north_queued counts them", queued)
    total = NDEV * (PHASE1 + PHASE2)

    # the broker comes back on the same port with its persistent sessions
    broker.start()
    got = sub.wait_for(lambda s: s.distinct() >= total, 90)
    t.check(got, "all %d device messages arrive after the restart" % total)
    g.wait_until(lambda: gw.metric("north_queued") == 0 and gw.metric("north_inflight") == 0, 20)
    recs = sub.records()
    keys = [g.north_key(r) for r in recs]
    seen, dup = g.tally(k for k in keys if k is not None)
    want = set((s.dev, "%s-%d" % (s.dev, q)) for s in streams for q in s.acked)
    missing = sorted(want - seen)
    t.eq(len(want), total, "devices got %d PUBACKs" % total)
    t.eq(missing[:10], [], "no gap: every acknowledged message upstream (%d missing)"
         % len(missing))
    # the gateway's own resends, from what it wrote on each connection: none twice on one
    # connection, and on each new connection at most the window of what was in flight (sent on
    # an earlier connection, unacknowledged) when the previous one broke
    conns = tap.conns()
    sent = set()
    resent = []  # per connection: publishes of events already sent on an earlier connection
    twice = 0
    for pubs in conns:
        ks = [pub_key(p[2]) for p in pubs]
        twice += len(ks) - len(set(ks))
        resent.append(len(set(ks) & sent))
        sent |= set(ks)
    wire_resends = sum(resent)
    t.check(len(conns) >= 2, "the gateway reconnected through the relay", len(conns))
    t.eq(twice, 0, "the gateway publishes an event at most once per connection")
    t.check(max(resent) <= WINDOW, "the gateway resends at most its window %d on a new "
            "connection" % WINDOW, resent)
    m = gw.metrics()
    t.check(m.get("north_reconnects_total", 0) > 0, "north_reconnects_total > 0",
            m.get("north_reconnects_total"))
    t.eq(m.get("north_connected"), 1.0, "north_connected 1 again")
    t.check(g.wait_until(lambda: gw.scalar("SELECT count(*) FROM outbox") == 0, 20),
            "outbox empty after the catch-up")
    t.check(m.get("north_forwarded_total", 0) >= total + NDEV, "north_forwarded_total covers "
            "every event", m.get("north_forwarded_total"))
    resent_m = m.get("north_published_total", 0) - m.get("north_forwarded_total", 0)
    t.check(wire_resends <= resent_m <= WINDOW * m.get("north_reconnects_total", 0),
            "resends on the wire (%d) <= north_published_total - north_forwarded_total <= window "
            "per reconnect" % wire_resends, resent_m)
    # what the subscriber got twice: events the gateway resent, or the broker's redeliveries
    # (events the gateway sent once; the MQTT DUP flag set), reported, not bounded: the broker's
    resent_keys = set()
    seen_once = set()
    for pubs in conns:
        for p in pubs:
            k = pub_key(p[2])
            if k in seen_once:
                resent_keys.add(k)
            seen_once.add(k)
    sub_first = set()
    dup_gw = dup_broker = redeliv = 0
    for k, r in zip(keys, recs):
        if k is None:
            continue
        if k in sub_first:
            if k in resent_keys:
                dup_gw += 1
            else:
                dup_broker += 1
                redeliv += r[2]
        sub_first.add(k)
    t.info("outage: forwarded %d at stop, %d queued during it; gateway: %d connections through "
           "the relay (%d refused), resends per connection %r, %d on the wire, published - "
           "forwarded %d, reconnects %d; subscriber: %d records, %d distinct, %d duplicates (%d "
           "of events the gateway resent, %d broker redeliveries of which %d with DUP set)"
           % (fwd_at_stop, queued, len(conns), tap.refused, resent, wire_resends, resent_m,
              m.get("north_reconnects_total", 0), len(recs), len(seen), dup, dup_gw,
              dup_broker, redeliv))
    for c in clients:
        c.disconnect()
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")
    sub.stop()
    tap.stop()
    broker.stop()


g.run(main)

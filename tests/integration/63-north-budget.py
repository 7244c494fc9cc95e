# Proves the outbox budget and storage retention: with the broker down, policy backpressure acknowledges exactly max_outbox_rows events (the online events included; 1,000 and, as in issue 13, 100 with a large batch), withholds the rest (devices stay connected, unacknowledged messages wait in the store queue) and loses nothing; a SIGTERM while devices are held exits at once and stores what was held; drop_oldest acks everything and drops exactly the oldest unforwarded (counted); retention_rows / max_db_mb delete forwarded events first and never leave the outbox inconsistent.
import time

import gwtest as g

SCALE = 2 if g.SANITIZED else 1
LOOPS = 2


def outbox_rows(gw):
    return gw.scalar("SELECT count(*) FROM outbox")


def dangling(gw):
    return gw.scalar("SELECT count(*) FROM outbox WHERE event_id NOT IN (SELECT id FROM events)")


def quiet(gw):
    """Waits until the store queue is empty and the outbox stops changing."""
    last = [None]

    def settled():
        if gw.metric("store_queue_depth") != 0:
            return False
        n = outbox_rows(gw)
        same = n == last[0]
        last[0] = n
        return same
    return g.wait_until(settled, 20, interval=0.2)


def want_keys(streams):
    return set((s.dev, "%s-%d" % (s.dev, q)) for s in streams for q in s.acked)


def cloud(tag):
    """A persistent broker with the subscriber's session in it, and the subscriber."""
    broker = g.Mosquitto(g.CLOUD_CONF, persistence=True)
    sub = g.CloudSubscriber(broker.port, topics=["iotgw/#"], client_id="cloud-63" + tag)
    return broker, sub


def part_backpressure(t, MAXR=1000, QMAX=64, BATCH=32, tag="a"):
    NDEV, PER = 2, 1000
    what = "backpressure %d" % MAXR
    broker, sub = cloud(tag)
    broker.halt()
    gw = g.Gateway(n_devices=NDEV, loops=LOOPS, config={
        "north": g.north_cfg(broker.port, max_outbox_rows=MAXR, outbox_policy="backpressure"),
        "storage": {"queue_max": QMAX, "batch_max": BATCH}})
    devs = g.thermo_ids(NDEV)
    clients = [g.device_client(gw, d, timeout=30) for d in devs]
    streams = [g.QoS1Stream(c, d, window=20) for c, d in zip(clients, devs)]
    res = g.run_streams(streams, PER, stall=2.0, timeout=60)
    acked = sum(len(s.acked) for s in streams)
    t.eq(res, [False] * NDEV, "%s: PUBACKs stop before all %d are acked" % (what, NDEV * PER))
    t.eq([s.errors for s in streams], [[]] * NDEV, "%s: devices stay connected" % what)
    # the budget is enforced before acknowledging: the online events are outbox rows too, and
    # the writer commits no event that would take the outbox past max_outbox_rows (the rest wait
    # in the store queue, unacknowledged)
    t.eq(acked, MAXR - NDEV, "%s: exactly max_outbox_rows - %d online events acknowledged"
         % (what, NDEV))
    n_out = outbox_rows(gw)
    t.eq(n_out, MAXR, "%s: outbox rows = max_outbox_rows" % what)
    t.check(gw.metric("north_outbox_full_total") > 0, "%s: north_outbox_full_total > 0" % what)
    t.eq(gw.metric("north_dropped_total"), 0.0, "%s: nothing dropped" % what)
    held = gw.metric("store_queue_depth")
    t.check(held <= sum(len(s.out) for s in streams), "%s: what was read waits in the store "
            "queue (at most the devices' unacknowledged messages)" % what, held)

    broker.start()
    res = g.run_streams(streams, PER, timeout=90)
    t.check(all(res), "%s: once the broker drains the outbox, every message is acked" % what,
            [s.errors[:2] for s in streams])
    total = NDEV * PER
    t.check(sub.wait_for(lambda s: s.distinct() >= total, 60),
            "%s: all %d arrive upstream" % (what, total), sub.distinct())
    missing = want_keys(streams) - sub.keyset()
    t.eq(len(missing), 0, "%s: nothing acked is lost" % what)
    _, dup = g.tally(filter(None, map(g.north_key, sub.records())))
    t.info("%s: acked %d before the stall (outbox %d rows, max %d, queue_max %d, batch_max %d, "
           "%d held in the queue); outbox_full_total %d; upstream duplicates %d"
           % (what, acked, n_out, MAXR, QMAX, BATCH, held, gw.metric("north_outbox_full_total"),
              dup))
    for c in clients:
        c.disconnect()
    t.eq(gw.stop(), 0, "%s: SIGTERM exit 0" % what)
    sub.stop()
    broker.stop()


def part_stop_while_held(t):
    """SIGTERM while devices are held by the budget: the held events are committed (nothing
    accepted is lost) and the gateway does not wait out its 15 s drain limit."""
    MAXR, NDEV = 100, 2
    broker = g.Mosquitto()
    broker.halt()
    gw = g.Gateway(n_devices=NDEV, loops=LOOPS, config={
        "north": g.north_cfg(broker.port, max_outbox_rows=MAXR)})
    devs = g.thermo_ids(NDEV)
    clients = [g.device_client(gw, d, timeout=30) for d in devs]
    # a window over the budget: the first burst alone passes it, so events are surely held
    streams = [g.QoS1Stream(c, d, window=150) for c, d in zip(clients, devs)]
    g.run_streams(streams, 500, stall=1.0, timeout=30)
    held = gw.metric("store_queue_depth")
    t.check(held > 0, "stop while held: events wait in the store queue", held)
    t0 = time.monotonic()
    code = gw.stop()
    dt = time.monotonic() - t0
    t.eq(code, 0, "stop while held: SIGTERM exit 0")
    t.check(dt < 10 * g.SLOW, "stop while held: exits without waiting for the broker",
            "%.1f s" % dt)
    sent = set((s.dev, "%s-%d" % (s.dev, q)) for s in streams for q in range(1, s.next))
    stored = set(gw.query("SELECT device, msg_id FROM events WHERE msg_id IS NOT NULL"))
    t.check(want_keys(streams) <= stored, "stop while held: every acked message stored")
    acked = sum(len(s.acked) for s in streams)
    t.eq(len(stored & sent), acked + held, "stop while held: the held messages are stored too")
    t.info("stop while held: %d held at SIGTERM, exit after %.2f s, %d of %d sent stored, "
           "outbox %d (max %d)" % (held, dt, len(stored & sent), len(sent), outbox_rows(gw), MAXR))
    for c in clients:
        c.close()
    broker.stop()


def part_drop_oldest(t):
    MAXR, NDEV, PER, BATCH = 1000, 2, 1500, 50
    broker, sub = cloud("b")
    broker.halt()
    gw = g.Gateway(n_devices=NDEV, loops=LOOPS, config={
        "north": g.north_cfg(broker.port, max_outbox_rows=MAXR, outbox_policy="drop_oldest"),
        "storage": {"batch_max": BATCH}})
    devs = g.thermo_ids(NDEV)
    clients = [g.device_client(gw, d, timeout=30) for d in devs]
    streams = [g.QoS1Stream(c, d, window=20) for c, d in zip(clients, devs)]
    res = g.run_streams(streams, PER, timeout=60)
    sent = NDEV * PER
    t.check(all(res), "drop_oldest: every one of %d messages acked with the broker down" % sent,
            [s.errors[:2] for s in streams])
    quiet(gw)
    n_ev = gw.scalar("SELECT count(*) FROM events")
    q = outbox_rows(gw)
    dropped = gw.metric("north_dropped_total")
    t.eq(n_ev, sent + NDEV, "drop_oldest: every event stored (drops touch the outbox only)")
    t.eq(dropped + q, float(n_ev), "drop_oldest: outbox rows + north_dropped_total = events")
    # the online events are outbox rows too, and a writer that trims once per commit may sit
    # up to one batch under the budget: tolerance NDEV + batch_max
    tol = NDEV + BATCH
    t.check(abs(dropped - (sent - MAXR)) <= tol, "drop_oldest: north_dropped_total = sent - "
            "max_outbox_rows (%d - %d) within %d" % (sent, MAXR, tol), dropped)
    t.check(MAXR - BATCH <= q <= MAXR, "drop_oldest: outbox at the budget", q)
    newest = set(r[0] for r in gw.query("SELECT id FROM events ORDER BY id DESC LIMIT ?", (q,)))
    kept = set(r[0] for r in gw.query("SELECT event_id FROM outbox"))
    t.check(kept == newest, "drop_oldest: the outbox keeps the newest events",
            "%d of %d kept rows are not among the newest" % (len(kept - newest), q))
    t.check("drop" in gw.log and any("drop" in ln and "level=warn" in ln
                                     for ln in gw.log.splitlines()),
            "drop_oldest: the drop is logged (level=warn)")
    expect = set((d, m) for d, m in gw.query(
        "SELECT device, msg_id FROM events WHERE msg_id IS NOT NULL AND "
        "id IN (SELECT event_id FROM outbox)"))

    broker.start()
    t.check(sub.wait_for(lambda s: s.distinct() >= len(expect), 60),
            "drop_oldest: the %d kept messages arrive" % len(expect), sub.distinct())
    g.wait_until(lambda: outbox_rows(gw) == 0, 20)
    seen = set(sub.keyset())
    t.eq(len(expect - seen), 0, "drop_oldest: every kept (newest) message upstream")
    t.eq(len(seen - expect), 0, "drop_oldest: no dropped (oldest) message upstream")
    newest_msg = tuple(gw.query("SELECT device, msg_id FROM events WHERE msg_id IS NOT NULL "
                                "ORDER BY id DESC LIMIT 1")[0])
    t.check(newest_msg in seen, "drop_oldest: the newest message arrives", newest_msg)
    t.info("drop_oldest: sent %d, events %d, dropped %d, kept %d (max %d), upstream %d"
           % (sent, n_ev, dropped, q, MAXR, len(seen)))
    for c in clients:
        c.disconnect()
    t.eq(gw.stop(), 0, "drop_oldest: SIGTERM exit 0")
    sub.stop()
    broker.stop()


def part_retention_rows(t):
    R = 1500
    broker, sub = cloud("c")
    gw = g.Gateway(n_devices=1, loops=LOOPS, config={
        "north": g.north_cfg(broker.port), "storage": {"retention_rows": R, "batch_max": 50}})
    c = g.device_client(gw, "t-001", timeout=30)
    s = g.QoS1Stream(c, "t-001", window=20)
    n1 = 2500  # more than retention_rows R, also under sanitizers
    t.check(s.run(n1, timeout=60), "retention: %d messages acked" % n1)
    t.check(sub.wait_for(lambda x: x.distinct() >= n1, 60), "retention: all forwarded")
    t.check(g.wait_until(lambda: gw.scalar("SELECT count(*) FROM events") <= R, 20),
            "retention: events table bounded by retention_rows %d" % R,
            gw.scalar("SELECT count(*) FROM events"))
    lo, hi, n = gw.query("SELECT min(id), max(id), count(*) FROM events")[0]
    t.eq(hi - lo + 1, n, "retention: the newest events are kept (oldest deleted)")
    deleted1 = gw.metric("store_retention_deleted_total")
    t.check(deleted1 > 0, "retention: store_retention_deleted_total > 0", deleted1)

    # unforwarded events are not deleted: broker down, 1,000 more
    broker.halt()
    g.wait_until(lambda: gw.metric("north_connected") == 0, 10)
    n2 = 1000
    t.check(s.run(n1 + n2, timeout=60), "retention: %d more acked with the broker down" % n2)
    quiet(gw)
    t.eq(outbox_rows(gw), n2, "retention: outbox untouched (%d unforwarded)" % n2)
    t.eq(dangling(gw), 0, "retention: every outbox row still has its event")
    t.check(gw.scalar("SELECT count(*) FROM events") <= R, "retention: events still bounded "
            "(forwarded ones deleted first)", gw.scalar("SELECT count(*) FROM events"))

    # more unforwarded than retention_rows: either kept (events table over the bound) or
    # deleted and then counted as dropped; never an outbox row without its event
    n3 = 1000
    drop0 = gw.metric("north_dropped_total")
    t.check(s.run(n1 + n2 + n3, timeout=60), "retention: %d more acked" % n3)
    quiet(gw)
    rows = outbox_rows(gw)
    drop = gw.metric("north_dropped_total") - drop0
    n_ev = gw.scalar("SELECT count(*) FROM events")
    t.eq(dangling(gw), 0, "retention: no outbox row without its event")
    t.eq(rows + drop, float(n2 + n3), "retention: every unforwarded event is kept or counted "
         "dropped")
    t.info("retention over the bound with %d unforwarded: events %d (retention_rows %d), "
           "outbox %d, dropped %d -> %s" % (n2 + n3, n_ev, R, rows, drop,
                                           "unforwarded kept" if drop == 0 else "deleted"))
    expect = set((d, m) for d, m in gw.query(
        "SELECT device, msg_id FROM events WHERE msg_id IS NOT NULL AND "
        "id IN (SELECT event_id FROM outbox)"))
    broker.start()
    t.check(sub.wait_for(lambda x: len(expect - x.keyset()) == 0, 60),
            "retention: the unforwarded arrive once the broker is back",
            len(expect - sub.keyset()))
    c.disconnect()
    t.eq(gw.stop(), 0, "retention: SIGTERM exit 0")
    sub.stop()
    broker.stop()


def part_max_db_mb(t):
    MB, N = 2, 4000 // SCALE
    note = "n" * 1500
    broker, sub = cloud("d")
    gw = g.Gateway(n_devices=1, loops=LOOPS, config={
        "north": g.north_cfg(broker.port), "storage": {"max_db_mb": MB, "batch_max": 50}})
    c = g.device_client(gw, "t-001", timeout=30)

    def make(seq):
        return g.report_topic("t-001"), g.report_payload("t-001-%d" % seq,
                                                         {"humidity": seq % 100, "note": note})
    s = g.QoS1Stream(c, "t-001", window=20, make=make)
    t.check(s.run(N, timeout=90), "max_db_mb: %d messages of ~1.6 KB acked" % N)
    t.check(sub.wait_for(lambda x: x.distinct() >= N, 60),
            "max_db_mb: every message forwarded before it is deleted", sub.distinct())

    def used():
        ps = gw.scalar("PRAGMA page_size")
        return (gw.scalar("PRAGMA page_count") - gw.scalar("PRAGMA freelist_count")) * ps
    budget = MB * 1024 * 1024
    ok = g.wait_until(lambda: used() <= budget, 20)
    t.check(ok, "max_db_mb: used pages within %d MB" % MB, "%d bytes" % used())
    n_ev = gw.scalar("SELECT count(*) FROM events")
    t.check(0 < n_ev < N, "max_db_mb: oldest forwarded events deleted", n_ev)
    # a disk budget keeps as much history as fits: deleting far below it loses local history
    # for nothing (half the budget leaves room for a generous deletion step)
    t.check(used() >= budget // 2, "max_db_mb: history kept up to the budget (used pages >= "
            "half of it after trimming)", "%d bytes used, %d events kept" % (used(), n_ev))
    t.check(gw.metric("store_retention_deleted_total") > 0,
            "max_db_mb: store_retention_deleted_total > 0")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE msg_id=?", ("t-001-%d" % N,)), 1,
         "max_db_mb: the newest event kept")
    t.info("max_db_mb: %d of %d events kept, %d bytes used of %d"
           % (n_ev, N + 1, used(), budget))
    c.disconnect()
    t.eq(gw.stop(), 0, "max_db_mb: SIGTERM exit 0")
    sub.stop()
    broker.stop()


def main(t):
    part_backpressure(t)
    part_backpressure(t, MAXR=100, QMAX=256, BATCH=1000, tag="e")
    part_stop_while_held(t)
    part_drop_oldest(t)
    part_retention_rows(t)
    part_max_db_mb(t)


g.run(main)

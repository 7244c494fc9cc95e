# Proves at-least-once forwarding across a gateway crash: with a 20,000-event backlog (acknowledged to devices while the cloud broker was down) being forwarded, the gateway is SIGKILLed, restarted on the same database, and every acknowledged message arrives upstream, no gap, duplicates at most the in-flight window.
import gwtest as g

SCALE = 5 if g.SANITIZED else 1
NDEV = 4
PER_DEV = 5000 // SCALE  # 20,000 in all
WINDOW = 128             # a non-default window: the duplicate bound follows the configuration


def main(t):
    broker = g.Mosquitto(g.CLOUD_CONF, persistence=True)
    # the persistent subscription exists before the outage, so the broker queues for it
    sub = g.CloudSubscriber(broker.port, topics=["iotgw/#"], client_id="cloud-62")
    broker.halt()
    gw = g.Gateway(n_devices=NDEV, config={
        "north": g.north_cfg(broker.port, window=WINDOW, client_id="iotgw-62")})
    devs = g.thermo_ids(NDEV)
    clients = [g.device_client(gw, d, timeout=30) for d in devs]
    streams = [g.QoS1Stream(c, d, window=50) for c, d in zip(clients, devs)]
    res = g.run_streams(streams, PER_DEV, timeout=120)
    total = NDEV * PER_DEV
    t.check(all(res), "%d messages acknowledged with the broker down" % total,
            [s.errors[:2] for s in streams])
    t.eq(gw.metric("north_connected"), 0.0, "north_connected 0 (broker down)")
    backlog = gw.scalar("SELECT count(*) FROM outbox")
    t.eq(backlog, total + NDEV, "outbox: the backlog (messages + online events)")

    broker.start()
    trigger = total // 4
    mid = g.wait_until(lambda: gw.metric("north_forwarded_total") >= trigger, 60,
                       interval=0.005)
    m0 = gw.metrics()
    fwd_at_kill = m0.get("north_forwarded_total", 0)
    gw.kill()
    t.info("before the kill: published %d, forwarded %d, reconnects %d"
           % (m0.get("north_published_total", 0), fwd_at_kill,
              m0.get("north_reconnects_total", 0)))
    t.check(mid and fwd_at_kill < total, "SIGKILL while forwarding the backlog (forwarded %d of "
            "%d)" % (fwd_at_kill, total + NDEV))
    for c in clients:
        c.close()
    arrived_at_kill = sub.distinct()
    left = gw.scalar("SELECT count(*) FROM outbox")
    t.check(left <= total + NDEV - fwd_at_kill + WINDOW,
            "outbox after the crash: at most what was not yet acknowledged", left)

    gw.start()
    t.eq(gw.query("PRAGMA integrity_check"), [("ok",)], "integrity_check ok after SIGKILL")
    got = sub.wait_for(lambda s: s.distinct() >= total, 90)
    t.check(got, "all %d acknowledged messages arrive after the restart" % total, sub.distinct())
    g.wait_until(lambda: gw.metric("north_queued") == 0 and gw.metric("north_inflight") == 0, 20)
    recs = sub.records()
    keys = [g.north_key(r) for r in recs]
    seen, dup = g.tally(k for k in keys if k is not None)
    want = set((s.dev, "%s-%d" % (s.dev, q)) for s in streams for q in s.acked)
    missing = sorted(want - seen)
    t.eq(missing[:10], [], "no gap: every acknowledged message upstream (%d missing)"
         % len(missing))
    t.eq(len(seen - want), 0, "nothing upstream that no device sent")
    t.check(dup <= WINDOW, "duplicates <= window %d (in flight at the kill)" % WINDOW, dup)
    # per device, duplicates are one contiguous run: what was in flight, sent again from the
    # first unacknowledged event
    counts = {}
    for k in keys:
        if k is not None:
            counts[k] = counts.get(k, 0) + 1
    runs = {}
    for (dev, mid), n in counts.items():
        if n > 1:
            runs.setdefault(dev, []).append(int(mid[len(dev) + 1:]))
    holes = {dev: (min(v), max(v), len(v)) for dev, v in runs.items()
             if max(v) - min(v) + 1 != len(v)}
    t.eq(holes, {}, "per device the duplicates are one contiguous run (resent from the first "
         "unacknowledged event)")
    kinds = {}
    for _, d, _ in recs:
        if isinstance(d, dict):
            kinds[d.get("kind")] = kinds.get(d.get("kind"), 0) + 1
    restart = [d for _, d, _ in recs if isinstance(d, dict) and d.get("kind") == "offline"
               and d.get("name") == "restart"]
    t.eq(sorted(d.get("device") for d in restart), devs,
         "the restart's offline events (reason restart) are forwarded too")
    t.check(g.wait_until(lambda: gw.scalar("SELECT count(*) FROM outbox") == 0, 20),
            "outbox empty after the catch-up")
    m = gw.metrics()
    t.eq(m.get("north_connected"), 1.0, "north_connected 1 after the restart")
    # the restarted process publishes each row of the outbox it found once (+ the restart's
    # offline events): duplicates upstream beyond that were sent before the kill
    t.eq(m.get("north_published_total"), float(left + NDEV),
         "after the restart each outbox row is published once (outbox %d + %d offline)"
         % (left, NDEV))
    t.info("backlog %d; forwarded %d before SIGKILL (%d distinct upstream then); outbox after "
           "the kill %d rows; after restart "
           "%d records, %d distinct device messages, %d duplicates; kinds %s"
           % (backlog, fwd_at_kill, arrived_at_kill, left, len(recs), len(seen), dup,
              kinds))
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")
    sub.stop()
    broker.stop()


g.run(main)

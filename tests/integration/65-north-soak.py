# Proves the north bridge keeps threads and memory fixed: 200,000 device messages forwarded through five cloud broker outages, threads stay loops + 3 (loops, writer, north, main), RSS after the run within 5% or 2 MiB of RSS after the warm-up, every event forwarded, the outbox empty.
import time

import gwtest as g

SCALE = 10 if g.SANITIZED else 1
NDEV = 4
TOTAL = 200000 // SCALE // NDEV  # per device
SEGMENTS = 10                    # the first is the warm-up; brokers down in five of the others
LOOPS = 2


def drained(gw):
    return gw.metric("north_queued") == 0 and gw.metric("north_inflight") == 0 and \
        gw.metric("north_connected") == 1


def main(t):
    broker = g.Mosquitto(g.CLOUD_CONF)
    # SQLite's page cache (storage.cache_kb) fills as the database grows and then stays at its
    # bound: a small one is full after the warm-up, so the RSS comparison sees everything else
    gw = g.Gateway(n_devices=NDEV, loops=LOOPS, config={"north": g.north_cfg(broker.port),
                                                        "storage": {"cache_kb": 1024}})
    t.check(g.wait_until(lambda: gw.metric("north_connected") == 1, 10), "north connected")
    devs = g.thermo_ids(NDEV)
    streams = [g.QoS1Stream(g.device_client(gw, d, timeout=30), d, window=100) for d in devs]
    per_seg = TOTAL // SEGMENTS
    t0 = time.monotonic()
    rss_warm = threads_warm = None
    outages = 0
    for seg in range(SEGMENTS):
        down = seg % 2 == 1  # segments 1, 3, 5, 7, 9: the broker is down while devices send
        if down:
            broker.halt()
            outages += 1
        ok = all(g.run_streams(streams, per_seg * (seg + 1), timeout=120))
        if down:
            t.check(gw.metric("north_queued") > 0 or not ok,
                    "segment %d: messages wait in the outbox while the broker is down" % seg)
            broker.start()
        if not ok:
            t.check(False, "segment %d: every message acknowledged" % seg,
                    [s.errors[:2] for s in streams])
            return
        if not g.wait_until(lambda: drained(gw), 60):
            t.check(False, "segment %d: outbox drained after the broker came back" % seg,
                    "queued %d inflight %d" % (gw.metric("north_queued"),
                                               gw.metric("north_inflight")))
            return
        t.info("segment %d: RSS %d KiB" % (seg, gw.rss_kb()))
        if seg == 1:  # warm-up: one full segment and one outage behind us
            rss_warm, threads_warm = gw.rss_kb(), gw.threads()
            t.info("after warm-up: RSS %d KiB, %d threads" % (rss_warm, threads_warm))
    dt = time.monotonic() - t0
    sent = sum(len(s.acked) for s in streams)
    t.eq(sent, NDEV * per_seg * SEGMENTS, "every device message acknowledged")
    events = gw.scalar("SELECT count(*) FROM events")
    t.eq(gw.scalar("SELECT count(*) FROM outbox"), 0, "outbox empty")
    t.eq(gw.metric("north_forwarded_total"), events,
         "north_forwarded_total = events stored (%d, %d outages)" % (events, outages))
    t.check(gw.metric("north_reconnects_total") >= outages, "a reconnect per outage",
            gw.metric("north_reconnects_total"))
    if g.SANITIZED:  # ThreadSanitizer runs a background thread of its own
        t.check(threads_warm in (LOOPS + 3, LOOPS + 4), "threads: loops + writer + north + main",
                threads_warm)
    else:
        t.eq(threads_warm, LOOPS + 3, "threads: loops + writer + north + main")
    t.eq(gw.threads(), threads_warm, "threads unchanged")
    rss = gw.rss_kb()
    limit = max(rss_warm * 0.05, 2048)
    t.info("RSS at end: %d KiB (delta %+d KiB) after %.1f s, %d messages" %
           (rss, rss - rss_warm, dt, sent))
    if g.SANITIZED:
        t.info("RSS bound not checked under ASan (its allocator quarantines frees)")
    else:
        t.check(rss - rss_warm <= limit, "RSS within 5%% or 2 MiB of the warm-up sample "
                "(%d -> %d KiB)" % (rss_warm, rss), "limit %+d KiB" % limit)
    gw.stop()
    broker.stop()


g.run(main)

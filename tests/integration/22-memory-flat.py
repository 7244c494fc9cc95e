# Proves memory stays flat: after a warm-up, RSS after 20,000 connect/disconnect cycles and 200,000 messages is within 5% or 2 MiB of RSS after the first 10%, threads unchanged, every message stored.
import threading
import time

import gwtest as g

SCALE = 10 if g.SANITIZED else 1
CYCLES = 20000 // SCALE
MSGS_PER_CYCLE = 10
WORKERS = 4
NDEV = 200
WARMUP = 4000 // SCALE


def worker(gw, wid, devs, n_cycles, start_seq, errors, done):
    for k in range(n_cycles):
        dev = devs[k % len(devs)]
        seq = start_seq + k
        try:
            c = g.RawClient(gw.mqtt_port, timeout=30)
            try:
                c.send(g.device_connect_packet(dev))
                p = c.read_packet(30)
                if p is None or p.type != g.CONNACK or p.rc != 0:
                    errors.append("%s: CONNACK %r" % (dev, p))
                    continue
                topic = g.report_topic(dev)
                c.send(b"".join(g.publish_packet(
                    topic, '{"messageId":"%d-%d","properties":{"humidity":%d}}'
                    % (seq, j, j)) for j in range(MSGS_PER_CYCLE)) + g.DISCONNECT_PKT)
                # the gateway closes after the DISCONNECT, i.e. after reading every PUBLISH
                # before it: the next session of this device cannot take this one over
                if not c.wait_closed(30):
                    errors.append("%s: not closed after DISCONNECT" % dev)
            finally:
                c.close()
            done[wid] += 1
        except Exception as e:  # noqa: BLE001
            errors.append("%s: %r" % (dev, e))
            if len(errors) > 50:
                return


def run_phase(gw, n_cycles, seq0, t, label):
    errors = []
    done = [0] * WORKERS
    threads = []
    per = n_cycles // WORKERS
    for w in range(WORKERS):
        devs = ["m-%03d" % i for i in range(w, NDEV, WORKERS)]
        th = threading.Thread(target=worker, args=(gw, w, devs, per, seq0 + w * per, errors, done))
        th.start()
        threads.append(th)
    for th in threads:
        th.join(600)
    t.eq(errors[:5], [], "%s: no client errors" % label)
    return sum(done)


def drained(gw, want_props):
    return gw.scalar("SELECT count(*) FROM events WHERE kind='property'") == want_props


def main(t):
    devs = g.make_devices(["m-%03d" % i for i in range(NDEV)])
    # A small SQLite page cache and store queue reach their high-water marks early, so their
    # growth does not hide (or fake) a leak.
    gw = g.Gateway(devices=devs, config={"storage": {"cache_kb": 256, "queue_max": 1024}})
    n0 = gw.threads()
    t.info("threads after ready: %d; cycles=%d (scale 1/%d)" % (n0, CYCLES, SCALE))
    t0 = time.monotonic()

    # warm-up (not measured): page cache, allocator arenas and the loops' buffers reach their
    # working size
    warm = WARMUP
    donew = run_phase(gw, warm, 10 ** 6, t, "warm-up")
    warm_msgs = donew * MSGS_PER_CYCLE
    t.check(g.wait_until(lambda: drained(gw, warm_msgs), 60), "warm-up: %d messages stored"
            % warm_msgs)

    first = CYCLES // 10
    done1 = run_phase(gw, first, 0, t, "first 10%")
    msgs1 = warm_msgs + done1 * MSGS_PER_CYCLE
    t.check(g.wait_until(lambda: drained(gw, msgs1), 60), "first 10%%: %d messages stored" % msgs1,
            gw.scalar("SELECT count(*) FROM events WHERE kind='property'"))
    g.wait_until(lambda: gw.metric("connections_active") == 0, 10)
    rss10 = gw.rss_kb()
    mem10 = {k: v for k, v in gw.metrics().items() if k.startswith("memory_bytes")}
    t.info("RSS after first 10%%: %d KiB (%.1f s)" % (rss10, time.monotonic() - t0))

    done2 = run_phase(gw, CYCLES - first, first, t, "remaining 90%")
    total_cycles = done1 + done2
    msgs = warm_msgs + total_cycles * MSGS_PER_CYCLE
    t.eq(total_cycles, CYCLES, "%d connect/disconnect cycles completed" % CYCLES)
    t.check(g.wait_until(lambda: drained(gw, msgs), 120), "all %d messages stored" % msgs,
            gw.scalar("SELECT count(*) FROM events WHERE kind='property'"))
    t.check(g.wait_until(lambda: gw.metric("connections_active") == 0, 15),
            "connections_active back to 0")
    t.check(g.wait_until(lambda: gw.scalar("SELECT count(*) FROM events WHERE kind='offline'")
                         == total_cycles + donew, 30), "one offline event per session")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE kind='online'"), total_cycles + donew,
         "one online event per accepted session")
    rss = gw.rss_kb()
    dt = time.monotonic() - t0
    t.info("RSS at end: %d KiB (delta %+d KiB) after %.1f s" % (rss, rss - rss10, dt))
    t.eq(gw.threads(), n0, "threads unchanged")
    mem = {k: v for k, v in gw.metrics().items() if k.startswith("memory_bytes")}
    t.check(mem10, "gateway exports memory_bytes{area=...}", sorted(gw.metrics())[:5])
    t.eq(mem, mem10, "gw_malloc bytes per area back to their 10% values (idle, drained)")
    limit = max(rss10 * 0.05, 2048)
    if g.SANITIZED:
        t.info("sanitized build: RSS bound skipped")
    else:
        t.check(rss - rss10 <= limit, "RSS within 5%% or 2 MiB of the 10%% sample (%d -> %d KiB)"
                % (rss10, rss), "limit %+d KiB" % limit)
        t.check(dt < 180, "run under 3 minutes", "%.1f s" % dt)
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")


g.run(main)

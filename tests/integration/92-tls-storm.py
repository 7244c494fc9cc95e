# Proves TLS under a reconnect storm: 2,000 TLS reconnects (over their listener's handshakes_per_second, which refuses and counts the excess) while 100 devices publish QoS 1 over TLS on another listener of the same loops: every acknowledged publish is stored and every established publisher keeps going; then 2,000 idle TLS MQTT sessions, with the gateway's RSS per session reported (and bounded).
import os
import shutil
import ssl
import threading
import time

import gwtest as g
import tlscerts as tc
import tlsutil as tu

N_PUB = 100
N_STORM = 2000
N_IDLE = 2000
RATE = 50  # handshakes_per_second of the storm's listener (publishers and idle sessions use
# another, unlimited one: the storm's refusals must not depend on how fast this client is)
STORM_THREADS = 4


def main(t):
    g.raise_fd_limit(N_IDLE + N_PUB + 512)
    work = os.path.join(os.environ.get("TMPDIR", "/tmp"), "iotgw-tls92-%d" % os.getpid())
    os.makedirs(work)
    try:
        run(t, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def publisher(port, ctx, dev, stop, acked, errors, during):
    try:
        c = tu.TlsRaw(port, ctx, timeout=10)
        if c.connect_device(dev) != 0:
            errors.append((dev, "connect refused"))
            return
        pid = 0
        while not stop.is_set():
            pid = pid % 65535 + 1
            mid = "st-%s-%d" % (dev, len(acked[dev]))
            p = c.publish_wait(g.report_topic(dev), g.report_payload(mid, {"temperature": 1}),
                               pid, timeout=10)
            if p is None or p.pid != pid:
                errors.append((dev, "no PUBACK for %s" % mid))
                return
            acked[dev].append(mid)
            if during[0]:
                during[1][dev] = during[1].get(dev, 0) + 1
        c.close()
    except Exception as e:  # a publisher that dies is a failure, reported by the caller
        errors.append((dev, repr(e)))


def stormer(port, ctx, n, counts):
    for _ in range(n):
        try:
            c = tu.TlsRaw(port, ctx, timeout=5)
            c.close()
            counts["ok"] += 1
        except (ssl.SSLError, OSError):
            counts["refused"] += 1


def open_idle(port, ctx, devs, out, errors):
    for dev in devs:
        for attempt in range(50):  # refused by the handshake rate: try again shortly
            try:
                c = tu.TlsRaw(port, ctx, timeout=10)
                rc = c.connect_device(dev)
                if rc == 0:
                    out.append(c)
                    break
                c.close()
            except (ssl.SSLError, OSError, ValueError, g.Closed):
                pass
            time.sleep(0.01)
        else:
            errors.append(dev)


def run(t, work):
    ca = tc.CA(work, "ca")
    crt, key = tc.server_cert(ca)
    pubs = ["p-%03d" % i for i in range(N_PUB)]
    idles = ["i-%04d" % i for i in range(N_IDLE)]
    gw = g.Gateway(devices=g.make_devices(pubs + idles), config={
        "limits": {"max_connections_per_source": 0, "connect_rate_per_source": 0,
                   "auth_failures_per_source": 0},
        "adapters": {"mqtt": {"listeners": [
            {"address": g.HOST, "port": 0, "tls": {"cert": crt, "key": key,
                                                  "handshakes_per_second": RATE}},
            {"address": g.HOST, "port": 0, "tls": {"cert": crt, "key": key,
                                                  "handshakes_per_second": 0}}]}}})
    port = tu.listener_port(gw, "mqtt", 0)
    idle_port = tu.listener_port(gw, "mqtt", 1)
    ctx = tu.context(ca.cert)

    # --- 100 QoS 1 publishers over TLS, then the storm --------------------------------------------
    stop = threading.Event()
    acked = {d: [] for d in pubs}
    errors = []
    during = [False, {}]
    threads = [threading.Thread(target=publisher,
                                args=(idle_port, ctx, d, stop, acked, errors, during))
               for d in pubs]
    for th in threads:
        th.start()
    t.check(g.wait_until(lambda: all(acked[d] for d in pubs) or errors, 30 * g.SLOW),
            "100 publishers connected over TLS and acknowledged", errors[:3])
    lim0 = gw.metric("tls_handshakes_limited_total")
    full0 = gw.metric("tls_handshakes_total", kind="full")
    during[0] = True
    counts = {"ok": 0, "refused": 0}
    t0 = time.monotonic()
    storm = [threading.Thread(target=stormer, args=(port, ctx, N_STORM // STORM_THREADS, counts))
             for _ in range(STORM_THREADS)]
    for th in storm:
        th.start()
    for th in storm:
        th.join()
    storm_s = time.monotonic() - t0
    during[0] = False
    t.info("storm: %d reconnects in %.1f s: %d handshakes, %d refused"
           % (N_STORM, storm_s, counts["ok"], counts["refused"]))
    lim = gw.metric("tls_handshakes_limited_total") - lim0
    t.check(lim > 0, "the listener's handshake rate limit refused part of the storm "
            "(tls_handshakes_limited_total +%d)" % lim)
    t.check(gw.metric("tls_handshakes_total", kind="full") - full0 >= counts["ok"] * 0.9,
            "the admitted handshakes are counted")
    stop.set()
    for th in threads:
        th.join(30)
    t.eq(errors, [], "no publisher lost its session or a PUBACK")
    kept = [d for d in pubs if during[1].get(d, 0) > 0]
    t.eq(len(kept), N_PUB, "every established publisher kept publishing during the storm")
    total = sum(len(v) for v in acked.values())
    stored = set(r[0] for r in gw.query("SELECT msg_id FROM events WHERE msg_id LIKE 'st-%'"))
    missing = [m for v in acked.values() for m in v if m not in stored]
    t.eq(missing[:5], [], "every acknowledged publish stored (%d acknowledged)" % total)

    # --- idle TLS sessions: RSS per session -------------------------------------------------------
    def settled_rss():
        time.sleep(0.3)  # (time as the subject: let the loops finish the last closes)
        return gw.rss_kb()

    rss0 = settled_rss()
    tls0 = gw.metric("memory_bytes", area="tls")
    sess0 = gw.metric("memory_bytes", area="session")
    conns, failed = [], []
    per = N_IDLE // 4
    opener = [threading.Thread(target=open_idle, args=(idle_port, ctx, idles[i * per:(i + 1) * per],
                                                       conns, failed)) for i in range(4)]
    for th in opener:
        th.start()
    for th in opener:
        th.join()
    t.eq(len(failed), 0, "%d idle TLS MQTT sessions open" % N_IDLE)
    t.check(g.wait_until(lambda: gw.metric("tls_sessions") >= N_IDLE, 10),
            "tls_sessions gauge shows them")
    rss1 = settled_rss()
    tls1 = gw.metric("memory_bytes", area="tls")
    sess1 = gw.metric("memory_bytes", area="session")
    n = max(1, len(conns))
    per_rss = (rss1 - rss0) * 1024.0 / n
    t.info("idle TLS sessions: %d, RSS %+d KiB = %.0f B/session; OpenSSL (area tls) %.0f "
           "B/session, connection state (area session) %.0f B/session"
           % (n, rss1 - rss0, per_rss, (tls1 - tls0) / n, (sess1 - sess0) / n))
    if g.SANITIZED:  # ASan's redzones and quarantine: RSS says nothing about the gateway's own
        t.info("sanitized build: the RSS bound is not checked")
    else:
        t.check(per_rss < 48 * 1024, "RSS per idle TLS session below 48 KiB (%.0f B)" % per_rss)
    t.check((tls1 - tls0) / n < 32 * 1024, "OpenSSL memory per idle session below 32 KiB")
    for c in conns:
        c.close()
    t.check(g.wait_until(lambda: gw.metric("tls_sessions") == 0, 20),
            "tls_sessions back to 0 after they close")
    t.check(gw.alive(), "gateway alive")
    t.eq(gw.stop(), 0, "clean shutdown")


g.run(main)

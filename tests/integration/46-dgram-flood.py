# Proves datagram output stays bounded under a flood whose answers are never taken: for 10 s a UDP source (fresh reports and replays) and 12 CoAP sources (CON reports, never ACKing the separate responses) send from sockets that never read, while a UDP and a CoAP device are served throughout; the gateway's RSS growth and the output area stay under stated bounds, CONs past the session (16) and loop (max_con_bytes) bounds go out once untracked (coap_con_untracked_total) and replays are counted. Loopback never makes sendmmsg return EAGAIN (the kernel drops what a full receiver cannot take; the sender's buffer never fills), so the send-queue bound itself is proven by unit.dgram_queue; its counter is printed here.
import socket
import struct
import threading
import time

import coaplib as co
import gwtest as g
import sensor_udp as su

FLOOD_S = 10.0
LOOPS = 2
MAX_CON_BYTES = 16384  # per loop (adapters.coap.max_con_bytes)
QUEUE_MAX = 2048  # storage.queue_max: events (and UDP acks) in flight
DGRAM_QUEUE_BYTES = 256 * 1024  # gateway/core/dgram.h GW_DGRAM_QUEUE_BYTES, per loop
# output area: per loop the CON copies and the send queue, plus the acks held until commit
OUTPUT_BOUND = LOOPS * (MAX_CON_BYTES + DGRAM_QUEUE_BYTES) + QUEUE_MAX * 96
# RSS growth over the flood (SQLite's cache included); under ASan freed memory waits in its
# 256 MiB quarantine, so only a gross leak shows there (the output area is the precise check)
RSS_BOUND_MB = 256 + 64 if g.SANITIZED else 32
UDP_RATE = 2000  # fresh reports per second, one source
REPLAY_RATE = 500  # copies of one datagram per second, another source
COAP_SOURCES = 12
COAP_RATE = 150  # CON reports per second per CoAP source
LOG_PER_S = 10  # warnings per second per loop (the CoAP adapter's limiter)
SERVE_S = 5.0  # each probe of a served device answered within this (x SLOW)

UDP_GOOD, UDP_FLOOD = "snr00002", "snr00001"
COAP_GOOD = "c-good"


def mute_socket():
    """A UDP socket that never reads, with the smallest receive buffer."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)
    s.bind((g.HOST, 0))
    return s


def paced(stop, rate, send_one):
    """Calls send_one(i) about rate times per second until stop is set; returns the count."""
    i, t0 = 0, time.monotonic()
    while not stop.is_set():
        due = int((time.monotonic() - t0) * rate)
        while i < due and not stop.is_set():
            try:
                send_one(i)
            except OSError:
                pass
            i += 1
        time.sleep(0.005)
    return i


def coap_report_bytes(dev, mid, i):
    opts = co.path_options(co.report_path("sensor", dev), co.dev_query(dev))
    opts.append((co.CONTENT_FORMAT, co.CF_JSON))
    body = co.report_body("f-%d" % i, {"temperature": 20 + (i % 50) / 10.0})
    return co.encode(co.CON, co.POST, mid & 0xFFFF, struct.pack("!I", i), opts, body)


def main(t):
    devices = su.devices([UDP_FLOOD, UDP_GOOD]) + \
        g.make_devices(["c-%03d" % i for i in range(1, COAP_SOURCES + 1)] + [COAP_GOOD], "sensor")
    cfg = {"adapters": {"mqtt": None,
                        "udp": {"listeners": [{"address": g.HOST, "port": 0,
                                               "product": su.PRODUCT}]},
                        "coap": co.coap_adapter(piggyback_ms=0, max_con_bytes=MAX_CON_BYTES)},
           "storage": {"batch_ms": 50, "queue_max": QUEUE_MAX}}
    gw = g.Gateway(products=[g.load_product(su.PRODUCT), co.product()], devices=devices,
                   config=cfg, loops=LOOPS)
    uport, cport = su.udp_port(gw), co.coap_port(gw)

    # warm-up: every path once (buffers allocated on first use)
    good_u = su.Client(uport)
    good_c = co.Client(cport)
    t.eq(good_u.request(su.report(UDP_GOOD, 1), 5)[0], (UDP_GOOD, 1, 0), "UDP device served")
    r = co.report(good_c, "sensor", COAP_GOOD, "w-1", {"temperature": 20})
    t.check(r is not None and r.code_str == "2.04", "CoAP device served", r)
    time.sleep(0.5)
    m0 = gw.metrics()
    rss0 = gw.rss_kb()

    stop = threading.Event()
    counts = {}
    udp_sock, rep_sock = mute_socket(), mute_socket()
    replayed = su.report(UDP_FLOOD, 7)

    def udp_flood():
        counts["udp"] = paced(stop, UDP_RATE, lambda i: udp_sock.sendto(
            su.report(UDP_FLOOD, (100 + i) % 65536, battery=i % 100), (g.HOST, uport)))

    def replay_flood():
        counts["replay"] = paced(stop, REPLAY_RATE,
                                 lambda i: rep_sock.sendto(replayed, (g.HOST, uport)))

    coap_socks = [mute_socket() for _ in range(COAP_SOURCES)]

    def coap_flood():
        def one(i):
            k = i % COAP_SOURCES
            dev = "c-%03d" % (k + 1)
            coap_socks[k].sendto(coap_report_bytes(dev, i // COAP_SOURCES, i), (g.HOST, cport))
        counts["coap"] = paced(stop, COAP_RATE * COAP_SOURCES, one)

    # the served devices: a UDP report (resent each second, as a device does, until acked) and
    # a CoAP report every 0.5 s; each must be answered within SERVE_S
    probes = {"udp": [], "coap": []}  # latencies, None when not served

    def probe_udp():
        seq = 2
        while not stop.is_set():
            t0 = time.monotonic()
            data, got = su.report(UDP_GOOD, seq), None
            while got is None and time.monotonic() - t0 < SERVE_S * g.SLOW:
                good_u.send(data)
                a = good_u.ack(1.0)
                got = a if a and a[1] == seq else None
            probes["udp"].append(time.monotonic() - t0 if got else None)
            seq += 1
            stop.wait(0.5)

    def probe_coap():
        i = 2
        while not stop.is_set():
            t0 = time.monotonic()
            ok = False
            while not ok and time.monotonic() - t0 < SERVE_S * g.SLOW:
                r = co.report(good_c, "sensor", COAP_GOOD, "p-%d" % i, {"temperature": 21},
                              timeout=SERVE_S)
                ok = r is not None and r.code_str == "2.04"
                if not ok:
                    time.sleep(0.2)  # 5.03 (store full): retry after a moment
            probes["coap"].append(time.monotonic() - t0 if ok else None)
            i += 1
            stop.wait(0.5)

    threads = [threading.Thread(target=f) for f in (udp_flood, replay_flood, coap_flood,
                                                    probe_udp, probe_coap)]
    for th in threads:
        th.start()
    rss_max, out_max = rss0, 0.0
    t_end = time.monotonic() + FLOOD_S
    while time.monotonic() < t_end:
        rss_max = max(rss_max, gw.rss_kb())
        out_max = max(out_max, gw.metric("memory_bytes", area="output"))
        time.sleep(0.25)
    stop.set()
    for th in threads:
        th.join(30 * g.SLOW)
    m1 = gw.metrics()
    rss1 = gw.rss_kb()

    def d(key, **labels):
        return g.metric_delta(m0, m1, g.metric_key(key, **labels))

    t.info("offered in %.0f s: %d UDP reports, %d UDP replays, %d CoAP CON reports"
           % (FLOOD_S, counts.get("udp", 0), counts.get("replay", 0), counts.get("coap", 0)))
    t.info("RSS %d -> max %d -> %d KiB (growth %.1f MiB, bound %d MiB)"
           % (rss0, rss_max, rss1, (rss_max - rss0) / 1024.0, RSS_BOUND_MB))
    t.info("output area max %.0f bytes (bound %d)" % (out_max, OUTPUT_BOUND))
    t.info("coap_con_untracked_total +%.0f, coap_separate_responses_total +%.0f, "
           "coap_busy_total +%.0f, udp_dropped_total{replay} +%.0f, store_backpressure_total "
           "+%.0f, dgram_output_dropped_total +%.0f (0 on loopback: no EAGAIN)"
           % (d("coap_con_untracked_total", reason="output_overflow"),
              d("coap_separate_responses_total"), d("coap_busy_total"),
              d("udp_dropped_total", reason="replay"), d("store_backpressure_total"),
              d("dgram_output_dropped_total", reason="output_overflow")))
    for k in ("udp", "coap"):
        lat = [x for x in probes[k] if x is not None]
        t.info("%s device: %d probes, %d served, max %.3f s" %
               (k, len(probes[k]), len(lat), max(lat) if lat else -1))
        t.check(len(probes[k]) >= FLOOD_S / 2 / g.SLOW and None not in probes[k],
                "the %s device is served throughout the flood" % k, probes[k])
    t.check(rss_max - rss0 <= RSS_BOUND_MB * 1024,
            "RSS growth %.1f MiB <= %d MiB" % ((rss_max - rss0) / 1024.0, RSS_BOUND_MB))
    t.check(out_max <= OUTPUT_BOUND, "output area %.0f <= %d bytes" % (out_max, OUTPUT_BOUND))
    t.check(d("coap_con_untracked_total", reason="output_overflow") > 0,
            "CONs past the session/loop bound sent once, untracked, and counted")
    t.check(d("udp_dropped_total", reason="replay") > 0, "UDP replays dropped and counted")
    logs = gw.find_log(0, area="coap", msg="CON sent once, not kept for retransmission")
    t.check(logs and logs[0].get("reason") == "output_overflow",
            "logged (rate-limited) with reason output_overflow", logs[:1])
    bounds = sorted({x.get("bound") for x in logs})
    t.info("%d such lines (bounds named: %s)" % (len(logs), ", ".join(map(str, bounds))))
    t.check(len(logs) <= LOG_PER_S * LOOPS * (FLOOD_S + 5),
            "at most %d such lines a second per loop: %d" % (LOG_PER_S, len(logs)))
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")
    for s in [udp_sock, rep_sock] + coap_socks:
        s.close()
    good_u.close()
    good_c.close()


g.run(main)

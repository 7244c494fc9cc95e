# Proves a device that never reads cannot grow the gateway: (a) a logged-in device floods PINGREQ with a small receive window, (b) a device subscribed to its own ".../properties/report/reply" floods rejected reports, (c) a device subscribed to its command topics never reads while the cloud sends it large property writes. Each time: RSS growth over 10 s stays under a stated bound, the gateway stops reading the peer (output_paused_total) and closes it with reason output_overflow (counted, logged, in its offline event) once its output stalls or passes the hard limit, another device gets PUBACKs throughout, and the log stays under a stated number of lines per second; the queued bytes show in iotgw_memory_bytes{area="output"}; in (c) every command still gets exactly one reply upstream (the command queue's own bound, max_pending_per_device, is unit-tested in command_table.c). (d) a reader that starts late after 2 MB of PINGREQ is paused, resumed and gets every PINGRESP. (0) --check-config refuses low_water >= high_water and hard_limit <= high_water. (e) 40 idle admin connections: at most admin.max_connections (16) are kept, the others are refused at once (api_refused_total{reason="connections"}), and the kept ones are closed after admin.idle_timeout_ms so /metrics is answered again.
import socket
import threading

import cmdlib as cl
import gwtest as g
import outputlib as o

RSS_BOUND_MB = 32  # under ASan: the accounted memory (iotgw_memory_bytes), not RSS
LOG_LINES_PER_S_MAX = 200
STALL_MS = 4000
OUT_CFG = {"output_stall_timeout_ms": STALL_MS}  # high 64 KiB, low 16 KiB, hard 1 MiB: defaults
HARD_LIMIT = 1048576
ADMIN_CONNS = 16  # admin.max_connections in this test
ADMIN_IDLE_MS = 2000  # admin.idle_timeout_ms in this test
ADMIN_IDLE = 40
SLOW_PINGS = 1000000  # 2 MB of PINGREQ, far over output_high_water
NOTE = "n" * 60000  # a property write of ~60 KB



def closed_since(m0):
    """A flood's done predicate: the gateway counted a close with output_overflow since m0."""
    k = g.metric_key("output_overflow_total", adapter="mqtt")
    return lambda m: m.get(k, 0) > m0.get(k, 0)

def bad_report(i):
    return g.publish_packet(g.report_topic("t-003"),
                            '{"messageId":"b%d","properties":{"temperature":999}}' % i)


def offline_reason(gw, dev):
    return gw.scalar("SELECT name FROM events WHERE kind='offline' AND device=? ORDER BY id DESC "
                     "LIMIT 1", (dev,))


def prober(gw, dev):
    c = g.device_client(gw, dev)
    st = {"pid": 0}

    def probe():
        st["pid"] = st["pid"] % 60000 + 1
        p = c.publish_wait(g.report_topic(dev), g.report_payload("p%d" % st["pid"],
                                                                 {"humidity": 40}),
                           st["pid"], timeout=2.0)
        return p is not None and p.pid == st["pid"]
    return o.Prober(probe), c


def assert_flood(t, gw, name, r, m0, prob, dev, closed_seen=True):
    m1 = gw.metrics()

    def delta(key):
        return m1.get(key, 0) - m0.get(key, 0)
    t.info(o.describe(name, r))
    o.check_memory(t, name, r, RSS_BOUND_MB)
    if not name.startswith("(c)"):  # (c) sends nothing: whether it is read does not matter
        t.check(delta(g.metric_key("output_paused_total", adapter="mqtt")) >= 1,
                "%s: the gateway stopped reading the peer (output_paused_total)" % name)
    t.check(delta(g.metric_key("output_overflow_total", adapter="mqtt")) >= 1,
            "%s: closed with output_overflow (output_overflow_total)" % name)
    if closed_seen:
        t.check(r["closed_at"] is not None or r["tail_sent"] < 1048576,
                "%s: the peer's flood stopped in its TCP window or at the close" % name,
                r["tail_sent"])
    t.check(g.wait_until(lambda: offline_reason(gw, dev) == "output_overflow", 5),
            "%s: offline event with reason output_overflow" % name, offline_reason(gw, dev))
    t.check(gw.find_log(msg="output backed up; closing", reason="output_overflow", dev=dev),
            "%s: a warning names the device and the reason" % name)
    t.check(0 < r["output_max"] <= HARD_LIMIT + 65536, "%s: queued output shown in "
            "iotgw_memory_bytes{area=\"output\"} (peak %d bytes) and within the hard limit"
            % (name, r["output_max"]))
    t.check(prob.ok >= 10 and prob.failed == 0, "%s: another device got every PUBACK (%d ok, %d "
            "failed, slowest %.3f s)" % (name, prob.ok, prob.failed, prob.worst), prob.errors[:3])
    t.check(r["log_rate"] < LOG_LINES_PER_S_MAX, "%s: %.1f log lines/s < %d"
            % (name, r["log_rate"], LOG_LINES_PER_S_MAX))


def main(t):
    # ---- (0) the bounds are checked ----
    for over, key in (({"output_low_water": 65536}, "output_low_water"),
                      ({"output_hard_limit": 65536}, "output_hard_limit")):
        bad = g.Gateway(config={"adapters": {"mqtt": over}}, start=False)
        rc, out, err = g.check_config(bad)
        t.check(rc != 0 and "adapters.mqtt." + key in out + err,
                "(0) --check-config refuses %r" % over, (rc, out, err))
    broker = None if o.BASELINE else g.Mosquitto(extra_conf=cl.BROKER_CONF)
    config = {"adapters": {"mqtt": {} if o.BASELINE else OUT_CFG},
              "storage": {"batch_ms": 0},
              "admin": {"max_connections": ADMIN_CONNS, "idle_timeout_ms": ADMIN_IDLE_MS}}
    if broker:  # (c): more writes may wait for t-004 than the kernel's buffers take
        config["north"] = cl.north(broker.port, max_pending_per_device=100)
    gw = g.Gateway(devices=g.make_devices(g.thermo_ids(6)), config=config)

    # ---- (a) PINGREQ flood, never read ----
    s = o.small_socket(gw.mqtt_port)
    c = o.raw_mqtt(s)
    t.eq(c.connect_device("t-001"), 0, "(a) t-001 connected")
    prob, pc = prober(gw, "t-002")
    m0 = gw.metrics()
    r = o.flood(gw, o.Flooder(s, g.PINGREQ_PKT * 32768), prob, done=closed_since(m0))
    if o.BASELINE:
        t.info(o.describe("baseline PINGREQ flood", r))
        t.check(True, "baseline figures printed")
        return
    assert_flood(t, gw, "(a) PINGREQ flood", r, m0, prob, "t-001")
    pc.close()
    s.close()

    # ---- (b) rejected reports answered on the reply topic, never read ----
    s = o.small_socket(gw.mqtt_port)
    c = o.raw_mqtt(s)
    t.eq(c.connect_device("t-003"), 0, "(b) t-003 connected")
    t.eq(c.subscribe(1, [(g.report_topic("t-003") + "/reply", 0)]), [0],
         "(b) subscribed to its report reply topic")
    c.publish(g.report_topic("t-003"), '{"messageId":"b0","properties":{"temperature":999}}')
    p = c.read_packet(5)
    t.check(p is not None and p.type == g.PUBLISH and
            p.publish()[0] == g.report_topic("t-003") + "/reply" and b'"b0"' in p.publish()[3],
            "(b) a rejected report is answered on it", p)
    prob, pc = prober(gw, "t-002")
    m0 = gw.metrics()
    r = o.flood(gw, o.Flooder(s, b"".join(bad_report(i) for i in range(1000))), prob,
                done=closed_since(m0))
    assert_flood(t, gw, "(b) rejected-report flood", r, m0, prob, "t-003")
    pc.close()
    s.close()

    # ---- (c) commands to a subscriber that never reads ----
    cloud = cl.Cloud(broker.port)
    t.check(cloud.wait_ready("thermo", "t-005"), "(c) the north link is up")
    s = o.small_socket(gw.mqtt_port)
    c = o.raw_mqtt(s)
    t.eq(c.connect_device("t-004"), 0, "(c) t-004 connected")
    t.eq(c.subscribe(1, [("/thermo/t-004/properties/write", 1),
                         ("/thermo/t-004/function/invoke", 1)]), [1, 1],
         "(c) subscribed to its command topics")
    prob, pc = prober(gw, "t-002")
    sent = []

    def send_commands():
        for _ in range(3):
            mid = "w%d" % len(sent)
            sent.append(mid)
            cloud.send("write", "thermo", "t-004", {"messageId": mid, "properties": {"note": NOTE}})
    m0 = gw.metrics()
    r = o.flood(gw, o.Flooder(s, b""), prob, extra=send_commands, done=closed_since(m0))
    t.info("figure: (c) %d property writes of %d KB sent to t-004" % (len(sent), len(NOTE) // 1000))
    assert_flood(t, gw, "(c) commands never read", r, m0, prob, "t-004", closed_seen=False)
    # sent ones time out after 5 s; the rest were answered at once (offline, busy)
    t.check(g.wait_until(lambda: all(cloud.count("t-004", m) == 1 for m in sent), 15),
            "(c) every command got exactly one reply upstream")
    codes = {}
    for mid in sent:
        rep = cloud.reply("t-004", mid, 0.05)
        code = rep[1].get("code", "success") if rep else None
        codes[code] = codes.get(code, 0) + 1
    t.info("figure: (c) replies by code: %r" % codes)
    pc.close()
    s.close()
    cloud.stop()

    # ---- (d) a slow reader is paused and resumed: every PINGRESP arrives, nothing is closed ----
    s = o.small_socket(gw.mqtt_port)
    c = o.raw_mqtt(s)
    t.eq(c.connect_device("t-006"), 0, "(d) t-006 connected")
    m0 = gw.metrics()
    got = {"n": 0}
    paused = g.metric_key("output_paused_total", adapter="mqtt")

    def reader():
        # reads only once the output has backed up and the connection is paused
        g.wait_until(lambda: gw.metric("output_paused_total", adapter="mqtt") >
                     m0.get(paused, 0), 10)
        s.settimeout(20 * g.SLOW)
        while got["n"] < 2 * SLOW_PINGS:
            chunk = s.recv(65536)
            if not chunk:
                break
            got["n"] += len(chunk)
    th = threading.Thread(target=reader, daemon=True)
    th.start()
    s.sendall(g.PINGREQ_PKT * SLOW_PINGS)
    th.join(30 * g.SLOW)
    t.eq(got["n"], 2 * SLOW_PINGS, "(d) a reader that starts late gets all %d PINGRESPs"
         % SLOW_PINGS)
    m1 = gw.metrics()
    key = g.metric_key("output_paused_total", adapter="mqtt")
    t.check(m1.get(key, 0) - m0.get(key, 0) >= 1, "(d) it was paused meanwhile, then resumed")
    key = g.metric_key("output_overflow_total", adapter="mqtt")
    t.eq(m1.get(key, 0) - m0.get(key, 0), 0.0, "(d) ... and not closed")
    t.check(c.ping(), "(d) it is still served")
    s.close()

    # ---- (e) the admin endpoint: idle connections are bounded, then timed out ----
    refused0 = gw.metric("api_refused_total", reason="connections")
    idle = [socket.create_connection((g.HOST, gw.admin_port)) for _ in range(ADMIN_IDLE)]

    def closed():
        n = 0
        for k in idle:
            k.settimeout(0.01)
            try:
                k.recv(4096)  # the refusal (503) or the end
                n += 1
            except socket.timeout:
                pass
            except OSError:
                n += 1
        return n
    t.check(g.wait_until(lambda: closed() >= ADMIN_IDLE - ADMIN_CONNS, 5),
            "(e) connections past admin.max_connections (%d) are refused at once" % ADMIN_CONNS)

    def metrics_ok():
        try:
            return gw.http_get("/metrics")[0] == 200
        except (OSError, g.http.client.HTTPException):
            return False
    t.check(g.wait_until(metrics_ok, ADMIN_IDLE_MS / 1000.0 + 5),
            "(e) /metrics is answered again once the idle connections timed out")
    for k in idle:
        k.close()
    counted = []

    def refused_counted():  # a connection being released may still take the last slot: 503
        try:
            counted[:] = [gw.metric("api_refused_total", reason="connections") - refused0]
        except (g.GatewayError, OSError, g.http.client.HTTPException):
            return False
        return counted[0] >= ADMIN_IDLE - ADMIN_CONNS
    t.check(g.wait_until(refused_counted, 5), "(e) refused connections are counted (%s)" % counted)


if __name__ == "__main__":
    g.run(main)

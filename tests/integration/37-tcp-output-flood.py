# Proves a TCP meter that never reads its acks cannot grow the gateway: one floods heartbeats, another floods reports, each with a small receive window. Each time: RSS growth over 10 s stays under a stated bound, the gateway stops reading the meter (output_paused_total{adapter="tcp"}) and closes it with reason output_overflow once its acks stall (counted, logged, in its offline event), the queued acks show in iotgw_memory_bytes{area="output"} within the hard limit, another meter gets every report acked throughout, and the log stays under a stated number of lines per second.
import socket
import time

import binframes as b
import gwtest as g
import outputlib as o

RSS_BOUND_MB = 32  # under ASan: the accounted memory (iotgw_memory_bytes), not RSS
LOG_LINES_PER_S_MAX = 200
STALL_MS = 4000
HARD_LIMIT = 1048576  # the default output_hard_limit
IDS = ["mtr%05d" % i for i in range(1, 5)]


def offline_reason(gw, dev):
    return gw.scalar("SELECT name FROM events WHERE kind='offline' AND device=? ORDER BY id DESC "
                     "LIMIT 1", (dev,))


def login_small(port, dev):
    s = o.small_socket(port)
    s.sendall(b.meter_login(dev, b.meter_secret(dev)))
    got = b""
    deadline = time.monotonic() + 5 * g.SLOW
    while len(got) < b.METER_ACK_LEN and time.monotonic() < deadline:
        try:
            chunk = s.recv(b.METER_ACK_LEN - len(got))
        except socket.timeout:
            break
        if not chunk:
            break
        got += chunk
    return s, got == b.meter_ack(1, 1)


def prober(port, dev):
    d = b.Dev(port)
    d.send(b.meter_login(dev, b.meter_secret(dev)))
    ok = d.recv_n(b.METER_ACK_LEN) == b.meter_ack(1, 1)
    st = {"seq": 1}

    def probe():
        st["seq"] = st["seq"] % 60000 + 2
        d.send(b.meter_report(st["seq"], pulses=st["seq"]))
        return d.recv_n(b.METER_ACK_LEN, 2.0) == b.meter_ack(st["seq"], b.M_REPORT)
    return o.Prober(probe), d, ok


def one_flood(t, gw, port, name, dev, probe_dev, chunk):
    s, ok = login_small(port, dev)
    t.check(ok, "%s: %s logged in" % (name, dev))
    prob, pd, ok = prober(port, probe_dev)
    t.check(ok, "%s: %s logged in" % (name, probe_dev))
    m0 = gw.metrics()
    ovf = g.metric_key("output_overflow_total", adapter="tcp")
    r = o.flood(gw, o.Flooder(s, chunk), prob, done=lambda m: m.get(ovf, 0) > m0.get(ovf, 0))
    if o.BASELINE:
        t.info(o.describe("baseline " + name, r))
        pd.close()
        s.close()
        return
    m1 = gw.metrics()

    def delta(name_, **labels):
        k = g.metric_key(name_, **labels)
        return m1.get(k, 0) - m0.get(k, 0)
    t.info(o.describe(name, r))
    o.check_memory(t, name, r, RSS_BOUND_MB)
    t.check(delta("output_paused_total", adapter="tcp") >= 1,
            "%s: the gateway stopped reading the meter (output_paused_total)" % name)
    t.check(delta("output_overflow_total", adapter="tcp") >= 1,
            "%s: closed with output_overflow (output_overflow_total)" % name)
    t.check(r["closed_at"] is not None or r["tail_sent"] < 1048576,
            "%s: the flood stopped in its TCP window or at the close" % name, r["tail_sent"])
    t.check(g.wait_until(lambda: offline_reason(gw, dev) == "output_overflow", 5),
            "%s: offline event with reason output_overflow" % name, offline_reason(gw, dev))
    t.check(gw.find_log(msg="output backed up; closing", reason="output_overflow", dev=dev),
            "%s: a warning names the meter and the reason" % name)
    t.check(0 < r["output_max"] <= HARD_LIMIT + 65536, "%s: queued acks shown in "
            "iotgw_memory_bytes{area=\"output\"} (peak %d bytes) and within the hard limit"
            % (name, r["output_max"]))
    t.check(prob.ok >= 10 and prob.failed == 0, "%s: another meter got every ack (%d ok, %d "
            "failed, slowest %.3f s)" % (name, prob.ok, prob.failed, prob.worst), prob.errors[:3])
    t.check(r["log_rate"] < LOG_LINES_PER_S_MAX, "%s: %.1f log lines/s < %d"
            % (name, r["log_rate"], LOG_LINES_PER_S_MAX))
    pd.close()
    s.close()


def main(t):
    tcp = {"idle_timeout_ms": 600000}
    if not o.BASELINE:
        tcp["output_stall_timeout_ms"] = STALL_MS
    gw = b.tcp_gateway([b.METER], b.meter_devices(IDS), tcp=tcp,
                       config={"storage": {"batch_ms": 0}})
    port = g.adapter_port(gw, "tcp")
    one_flood(t, gw, port, "heartbeat flood", IDS[0], IDS[1],
              b"".join(b.meter_heartbeat(2 + i) for i in range(6000)))
    one_flood(t, gw, port, "report flood", IDS[2], IDS[3],
              b"".join(b.meter_report(2 + i, pulses=i) for i in range(3000)))
    if o.BASELINE:
        t.check(True, "baseline figures printed")


if __name__ == "__main__":
    g.run(main)

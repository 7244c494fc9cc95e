# Proves the per-source limits hold: a source over max_connections_per_source is refused (and served again once one closes), a burst over connect_rate_per_source is refused until the bucket refills, failed logins past auth_failures_per_source put the source in a back-off that refuses even the right secret until it ends, a success forgets the failures; each refusal counted by reason and logged, nothing else disturbed.
import time

import gwtest as g


def refused(gw, wait=0.3):
    """True when a new connection from 127.0.0.1 is closed by the gateway at once. Sends nothing,
    so the probe itself is neither a failed nor a successful login."""
    c = g.RawClient(gw.mqtt_port, timeout=2.0)
    try:
        return c.wait_closed(wait)
    finally:
        c.close()


def limited(gw, reason):
    return gw.metrics().get(g.metric_key("connections_limited_total", reason=reason), 0.0)


def main(t):
    devs = g.make_devices(g.thermo_ids(3))

    # --- concurrent connections per source ---
    gw = g.Gateway(devices=devs, config={"limits": {"max_connections_per_source": 5}})
    held = [g.RawClient(gw.mqtt_port) for _ in range(5)]
    t.check(g.wait_until(lambda: gw.metric("connections_active") == 5, 5),
            "five connections open", gw.metric("connections_active"))
    t.check(refused(gw), "the sixth connection from the same source is closed at once")
    t.eq(limited(gw, "per_source"), 1.0, "connections_limited_total{reason=per_source} 1")
    held[0].close()
    t.check(g.wait_until(lambda: gw.metric("connections_active") == 4, 5), "one closed")
    t.check(not refused(gw), "after one closes, a new connection is served")
    for c in held[1:]:
        c.close()
    t.check("reason=per_source" in gw.log, "the refusal is logged with its reason")
    gw.stop()

    # --- connect rate per source ---
    gw = g.Gateway(devices=devs, config={"limits": {"connect_rate_per_source": 10,
                                                    "connect_burst_per_source": 10}})
    outcomes = []
    t_burst = time.monotonic()
    for _ in range(30):
        c = g.RawClient(gw.mqtt_port)
        rc = None
        try:
            rc = c.connect("t-001", "thermo", g.secret_of("t-001"))
        except (g.Closed, OSError):
            rc = None
        outcomes.append(rc)
        c.close()
    elapsed = time.monotonic() - t_burst
    ok = sum(1 for rc in outcomes if rc == 0)
    most = 10 + int(elapsed * 10) + 1  # the burst, plus what the bucket refilled meanwhile
    t.check(10 <= ok <= most, "a burst of 30 connections in %.2f s: %d served (10..%d)"
            % (elapsed, ok, most), outcomes)
    t.eq(limited(gw, "connect_rate"), float(30 - ok), "the rest refused: connect_rate counted")
    time.sleep(0.5)  # the bucket refills at 10/s: five more tokens
    c = g.RawClient(gw.mqtt_port)
    t.eq(c.connect("t-002", "thermo", g.secret_of("t-002")), 0,
         "after half a second the source is served again")
    c.close()
    gw.stop()

    # --- authentication failures and back-off ---
    gw = g.Gateway(devices=devs, config={"limits": {"auth_failures_per_source": 3,
                                                    "auth_backoff_ms": 800,
                                                    "auth_backoff_max_ms": 5000}})
    for i in range(3):
        c = g.RawClient(gw.mqtt_port)
        t.eq(c.connect("t-001", "thermo", "wrong"), 4, "bad secret %d: CONNACK 4" % (i + 1))
        c.close()
    t0 = time.monotonic()
    t.check(refused(gw), "after 3 failures even the right secret is refused (back-off)")
    t.eq(limited(gw, "auth_backoff"), 1.0, "connections_limited_total{reason=auth_backoff} 1")
    t.check(gw.metric("auth_backoffs_total") >= 1, "auth_backoffs_total counts the back-off")
    served = g.wait_until(lambda: not refused(gw), 5, interval=0.05)
    waited = time.monotonic() - t0
    t.check(served and waited >= 0.6, "served again once the back-off ends (%.2f s)" % waited)
    # one more failure right away doubles the back-off (failures are still counted)
    c = g.RawClient(gw.mqtt_port)
    t.eq(c.connect("t-001", "thermo", "wrong"), 4, "a fourth bad secret: CONNACK 4")
    c.close()
    t.check(refused(gw), "a failure after the back-off starts a new, longer one")
    t1 = time.monotonic()
    g.wait_until(lambda: not refused(gw), 8, interval=0.05)
    t.check(time.monotonic() - t1 >= 1.2, "the second back-off is about twice as long (%.2f s)"
            % (time.monotonic() - t1))
    c = g.RawClient(gw.mqtt_port)
    t.eq(c.connect("t-001", "thermo", g.secret_of("t-001")), 0, "the right secret succeeds")
    c.close()
    for i in range(2):  # a success forgot the failures: two more do not trigger a back-off
        c = g.RawClient(gw.mqtt_port)
        c.connect("t-001", "thermo", "wrong")
        c.close()
    t.check(not refused(gw), "after a success, failures count from zero again")
    # a well-behaved device is unaffected by all of this
    d = g.device_client(gw, "t-002")
    d.publish(g.report_topic("t-002"), '{"messageId":"1","properties":{"temperature":20.5}}', 1,
              1)
    t.check(d.read_packet(3) is not None, "a device publishes and is acknowledged")
    d.close()
    gw.stop()


g.run(main)

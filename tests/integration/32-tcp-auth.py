# Proves TCP authentication and its config: no login within login_timeout_ms (silent or a partial frame) closes; a wrong secret and an unknown device get a negative ack and a close; a data frame before login closes; each counted by reason, none online, nothing stored; and adapters.tcp listeners are checked against the products.
import time

import binframes as b
import gwtest as g

IDS = ["mtr00001", "mtr00002"]


def attempt(gw, data, ack_len=b.METER_ACK_LEN):
    """(bytes received before the close, closed?)"""
    d = b.Dev(g.adapter_port(gw, "tcp"))
    try:
        d.send(data)
        closed = d.wait_closed(5)
        return d.buf[:ack_len], closed
    finally:
        d.close()


def main(t):
    gw = b.tcp_gateway([b.METER], b.meter_devices(IDS), tcp={"login_timeout_ms": 400})
    port = g.adapter_port(gw, "tcp")
    m0 = gw.metrics()

    # login timeout: silent, then a partial login frame
    d = b.Dev(port)
    t0 = time.monotonic()
    t.check(d.wait_closed(5), "silent connection closed by login_timeout_ms")
    t.check(time.monotonic() - t0 < 3 * g.SLOW, "closed within a few sweeps of 400 ms")
    d.close()
    d = b.Dev(port)
    d.send(b.meter_login(IDS[0], b.meter_secret(IDS[0]))[:9])
    t.check(d.wait_closed(5), "a login frame that never completes: closed by the login timeout")
    d.close()
    t.check(g.wait_until(lambda: gw.metric("tcp_login_timeouts_total") == 2, 5),
            "tcp_login_timeouts_total 2")
    t.eq(gw.metric("tcp_bad_frames_total", reason="incomplete"), 1.0,
         "the partial login frame counted as tcp_bad_frames_total{reason=incomplete}")

    # wrong secret: negative ack (request 01, result 1), then closed
    ack, closed = attempt(gw, b.meter_login(IDS[0], "wrong!!!"))
    t.eq(ack, b.meter_ack(1, 1, 1), "wrong secret: negative login ack")
    t.check(closed, "wrong secret: connection closed")
    # secret that is a prefix of the right one
    ack, closed = attempt(gw, b.meter_login(IDS[0], b.meter_secret(IDS[0])[:4]))
    t.eq(ack, b.meter_ack(1, 1, 1), "truncated secret: negative login ack")
    # unknown device
    ack, closed = attempt(gw, b.meter_login("mtr09999", "whatever"))
    t.eq(ack, b.meter_ack(1, 1, 1), "unknown device: negative login ack")
    t.check(closed, "unknown device: connection closed")
    # a report before any login
    ack, closed = attempt(gw, b.meter_report(1))
    t.eq(ack, b"", "report before login: no ack")
    t.check(closed, "report before login: connection closed")

    m1 = gw.metrics()
    key = lambda r: g.metric_key("tcp_login_failures_total", reason=r)  # noqa: E731
    t.eq(g.metric_delta(m0, m1, key("bad_secret")), 2.0, "login failures bad_secret +2")
    t.eq(g.metric_delta(m0, m1, key("unknown_device")), 1.0, "login failures unknown_device +1")
    t.eq(g.metric_delta(m0, m1, key("not_a_login")), 1.0, "login failures not_a_login +1")
    t.eq(gw.scalar("SELECT count(*) FROM events"), 0, "no event at all (no online, no report)")
    t.eq(m1.get("devices_online", 0.0), 0.0, "devices_online 0")
    t.check(gw.find_log(0, area="tcp", reason="bad_secret"), "bad secret logged with reason")

    # the right credentials still work
    d = b.Dev(port)
    d.send(b.meter_login(IDS[1], b.meter_secret(IDS[1])) + b.meter_report(2))
    t.eq(d.recv_n(20), b.meter_ack(1, 1) + b.meter_ack(2, 2), "right secret: login and report acked")
    d.close()
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")

    # config: adapters.tcp listeners are checked against the products (error names the JSON path)
    def check(tcp, products=None):
        cfg_gw = g.Gateway(products=products or [g.load_product(b.METER), g.THERMO],
                           devices=b.meter_devices(IDS),
                           config={"adapters": {"tcp": tcp}}, start=False)
        return g.check_config(cfg_gw)

    both = [g.load_product(b.METER), g.load_product(b.TRACKER), g.THERMO]

    good = {"listeners": [{"address": g.HOST, "port": 0, "product": b.METER}]}
    rc, out, err = check(good)
    t.check(rc == 0, "valid tcp section: config ok", err)
    cases = [
        ({"listeners": [{"address": g.HOST, "port": 0}]},
         "adapters.tcp.listeners[0].product: missing"),
        ({"listeners": [{"address": g.HOST, "port": 0, "product": "nope"}]},
         "adapters.tcp.listeners[0].product: no product \"nope\""),
        ({"listeners": [{"address": g.HOST, "port": 0, "product": b.METER},
                        {"address": g.HOST, "port": 0, "product": "thermo"}]},
         "adapters.tcp.listeners[1].product: product \"thermo\" has protocol \"mqtt\""),
        ({"listeners": [], "login_timeout_ms": 5},
         "adapters.tcp.login_timeout_ms"),
        ({"listeners": [{"address": g.HOST, "port": 0, "product": b.METER}]},
         "adapters.tcp.listeners: no listener serves product \"tracker-808\""),
        ({"listeners": [{"address": g.HOST, "port": 0, "product": b.METER}], "max_frame": 70000},
         "adapters.tcp.max_frame"),
        ({"listeners": [{"address": g.HOST, "port": 0, "product": b.METER}], "bogus": 1},
         "adapters.tcp.bogus: unknown key"),
    ]
    for tcp, want in cases:
        rc, out, err = check(tcp, both if "tracker" in want else None)
        t.check(rc == 2 and want in err, "config error: %s" % want, (rc, err))


g.run(main)

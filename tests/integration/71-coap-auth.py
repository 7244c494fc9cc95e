# Proves CoAP device authentication: on plain CoAP the ?token= query must be the device's secret (missing, wrong, another device's token, a prefix or an extension of it are 4.01, an unknown device 4.04; nothing stored, counted), a product with "coap_query_token": false refuses plain CoAP even with the right token (DTLS-PSK only), and over DTLS-PSK (identity = device id, key = secret; libcoap's coap-client-openssl) the right key is served without a token while a wrong key, an unknown identity and a path naming another device are refused; wrong-key handshakes past auth_failures_per_source put the source in a back-off that refuses even the right key until it ends (counted, logged), and a success forgets the failures.
import copy
import time

import coaplib as c
import gwtest as g

P = "sensor"
DTLSONLY = "dtlsonly"
# How a product switches the ?token= query off (then only DTLS-PSK authenticates its devices).
NOTOKEN = {"auth": {"mode": "device-secret", "coap_query_token": False}}


def stored(gw, dev, msg_id):
    return gw.scalar("SELECT count(*) FROM events WHERE device=? AND msg_id=?", (dev, str(msg_id)))


def auth_failures(m):
    return sum(v for k, v in m.items() if k.startswith("coap_") and "auth" in k)


def main(t):
    dtls_p = c.product(DTLSONLY, **copy.deepcopy(NOTOKEN))
    devs = g.make_devices(["c-%03d" % i for i in range(1, 6)], P) + g.make_devices(["o-001"],
                                                                                  DTLSONLY)
    gw = c.gateway(products=[c.product(P), dtls_p], devices=devs, dtls=True)
    port, sport = c.coap_port(gw), c.coaps_port(gw)
    t.check(port, "ready-fd reports the coap listener", gw.ports)
    t.check(sport, "ready-fd reports the coaps (DTLS) listener", gw.ports)
    m0 = gw.metrics()
    cl = c.Client(port)
    body = c.report_body

    # ---- plain CoAP: the token query ----
    r = cl.post(c.report_path(P, "c-001"), body(1, {"humidity": 1}))
    t.eq(r and r.code_str, "4.01", "no token: 4.01 Unauthorized")
    r = c.report(cl, P, "c-001", 2, {"humidity": 1}, secret="wrong")
    t.eq(r and r.code_str, "4.01", "wrong token: 4.01")
    r = c.report(cl, P, "c-001", 3, {"humidity": 1}, secret=g.secret_of("c-002"))
    t.eq(r and r.code_str, "4.01", "another device's token: 4.01")
    r = c.report(cl, P, "c-001", 4, {"humidity": 1}, secret=g.secret_of("c-001")[:-1])
    t.eq(r and r.code_str, "4.01", "a prefix of the token: 4.01")
    r = c.report(cl, P, "c-001", 5, {"humidity": 1}, secret=g.secret_of("c-001") + "x")
    t.eq(r and r.code_str, "4.01", "the token plus a byte: 4.01")
    r = c.report(cl, P, "nosuch", 6, {"humidity": 1})
    t.eq(r and r.code_str, "4.04", "unknown device: 4.04")
    t.eq(gw.scalar("SELECT count(*) FROM events"), 0, "nothing stored, no online event")
    m1 = gw.metrics()
    t.check(auth_failures(m1) - auth_failures(m0) >= 5, "the refusals are counted (coap_*auth*)",
            {k: v for k, v in m1.items() if k.startswith("coap_")})
    r = c.report(cl, P, "c-001", 7, {"humidity": 1})
    t.eq(r and r.code_str, "2.04", "the right token: 2.04")
    t.eq(stored(gw, "c-001", 7), 1, "stored")
    # other query parameters around the token do not matter
    r = cl.post(c.report_path(P, "c-001"), body(8, {"humidity": 2}),
                query=("x=1", "token=" + g.secret_of("c-001"), "y"))
    t.eq(r and r.code_str, "2.04", "token among other query options: 2.04")

    # ---- a product with the query token switched off: DTLS-PSK only ----
    r = c.report(cl, DTLSONLY, "o-001", 1, {"humidity": 3})
    t.eq(r and r.code_str, "4.01", "coap_query_token false: plain CoAP with the right token 4.01")
    diag = r.payload.decode("utf-8", "replace") if r else ""
    t.check("DTLS" in diag, "... its diagnostic says DTLS-PSK only", diag)
    r = cl.post(c.report_path(DTLSONLY, "o-001"), body(2, {"humidity": 3}))
    t.eq(r and r.code_str, "4.01", "... and without a token 4.01")
    t.eq(stored(gw, "o-001", 1) + stored(gw, "o-001", 2), 0, "nothing stored for it")

    # ---- DTLS-PSK ----
    if sport:
        def dtls(dev, key, path_dev=None, msg_id="d1", query=None, wait_s=10):
            uri = c.coap_uri(sport, c.report_path(P, path_dev or dev), query, scheme="coaps")
            return c.coap_client(uri, payload=body(msg_id, {"humidity": 9}),
                                 args=("-u", dev, "-k", key), binary=c.CLIENT_OPENSSL,
                                 timeout=30, wait_s=wait_s)
        run = dtls("c-003", g.secret_of("c-003"))
        t.check(run.last == "2.04", "DTLS-PSK with the right key: 2.04 (no token needed)", run)
        t.eq(stored(gw, "c-003", "d1"), 1, "DTLS report stored")
        m2 = gw.metrics()
        t0 = time.monotonic()
        run = dtls("c-004", "wrong-key", msg_id="d2", wait_s=3)
        t.check(run.last is None, "DTLS-PSK with a wrong key: no CoAP answer (handshake fails)",
                run)
        t.info("wrong-key attempt took %.1f s" % (time.monotonic() - t0))
        run = dtls("nosuch", "whatever", path_dev="c-004", msg_id="d3", wait_s=3)
        t.check(run.last is None, "DTLS-PSK with an unknown identity: no CoAP answer", run)
        t.eq(stored(gw, "c-004", "d2") + stored(gw, "c-004", "d3"), 0, "nothing stored for them")
        m3 = gw.metrics()
        moved = {k: v - m2.get(k, 0) for k, v in m3.items() if k.startswith("coap_") and
                 v != m2.get(k, 0)}
        t.check(any(("dtls" in k or "auth" in k or "handshake" in k) for k in moved),
                "failed handshakes counted (coap_*dtls*/auth*)", moved)
        run = dtls("c-003", g.secret_of("c-003"), path_dev="c-005", msg_id="d4")
        t.check(run.last in ("4.01", "4.03"),
                "DTLS identity c-003 posting to c-005's path: 4.01/4.03", run)
        t.eq(stored(gw, "c-005", "d4"), 0, "not stored")
        # a plain-CoAP datagram sent to the DTLS port is not served
        raw = c.Client(sport)
        r = c.report(raw, P, "c-001", "plain-to-dtls", {"humidity": 1}, timeout=1)
        t.check(r is None, "plain CoAP on the DTLS port: not answered", r)
        raw.close()
        uri = c.coap_uri(sport, c.report_path(DTLSONLY, "o-001"), None, scheme="coaps")
        run = c.coap_client(uri, payload=body("d6", {"humidity": 9}),
                            args=("-u", "o-001", "-k", g.secret_of("o-001")),
                            binary=c.CLIENT_OPENSSL, timeout=30)
        t.check(run.last == "2.04", "the DTLS-only product's device over DTLS-PSK: 2.04", run)
        t.eq(stored(gw, "o-001", "d6"), 1, "stored")
        # the right key again after the failures
        run = dtls("c-004", g.secret_of("c-004"), msg_id="d5")
        t.check(run.last == "2.04", "DTLS with the right key after failures: 2.04", run)
    cl.close()
    gw.stop()
    if sport:
        dtls_backoff(t)


def dtls_backoff(t):
    """Wrong-key handshakes past auth_failures_per_source put the source in back-off: even the
    right key is refused until it ends; counted by reason; a success forgets the failures."""
    # coap-client keeps retransmitting for its -B seconds: the back-off starts while the second
    # wrong-key client may still run (the gateway gives up on it 4 s after its PSK identity), and
    # the probe made during the back-off must give up before the back-off ends, or a late
    # ClientHello would rightly be served. So the back-off outlasts both.
    probe_s = 2
    backoff_ms = int((2 * probe_s * g.SLOW + 4) * 1000)
    gw = c.gateway(devices=g.make_devices(["c-001", "c-002"], P), dtls=True,
                   config={"limits": {"auth_failures_per_source": 2,
                                      "auth_backoff_ms": backoff_ms,
                                      "auth_backoff_max_ms": backoff_ms}})
    sport = c.coaps_port(gw)

    def dtls(dev, key, msg_id, wait_s=3):
        uri = c.coap_uri(sport, c.report_path(P, dev), None, scheme="coaps")
        return c.coap_client(uri, payload=c.report_body(msg_id, {"humidity": 1}),
                             args=("-u", dev, "-k", key), binary=c.CLIENT_OPENSSL, timeout=30,
                             wait_s=wait_s)

    def backoff_refusals():
        return gw.metrics().get(g.metric_key("connections_limited_total", reason="auth_backoff"),
                                0.0)

    run = dtls("c-001", g.secret_of("c-001"), "b0", wait_s=10)
    t.check(run.last == "2.04", "back-off: the right key is served first", run)
    for i in range(2):
        run = dtls("c-001", "wrong-key", "bad%d" % i, wait_s=probe_s)
        t.check(run.last is None, "back-off: wrong key %d refused" % (i + 1), run)
    t.check(g.wait_until(lambda: gw.metric("auth_backoffs_total") >= 1, 8),
            "two wrong-key handshakes start a back-off (auth_backoffs_total)",
            gw.metric("auth_backoffs_total"))
    t_block = time.monotonic()
    run = dtls("c-002", g.secret_of("c-002"), "b1", wait_s=probe_s)
    t.check(run.last is None, "during the back-off even the right key gets no handshake", run)
    t.check(backoff_refusals() >= 1, "counted in connections_limited_total{reason=auth_backoff}",
            backoff_refusals())
    t.check("DTLS handshake refused by a per-source limit" in gw.log,
            "logged with the reason", None)
    t.eq(stored(gw, "c-002", "b1"), 0, "nothing stored during the back-off")
    # the back-off's own time must pass (nothing observable ends it; not a condition wait)
    time.sleep(max(0.0, backoff_ms / 1000.0 + 0.3 - (time.monotonic() - t_block)))
    run = dtls("c-002", g.secret_of("c-002"), "b2", wait_s=10)
    t.check(run.last == "2.04", "after the back-off the right key is served again", run)
    t.eq(stored(gw, "c-002", "b2"), 1, "and stored")
    # the success forgot the failures: one more wrong key does not start a new back-off
    n = gw.metric("auth_backoffs_total")
    f = gw.metric("coap_dtls_handshake_failures_total")
    dtls("c-001", "wrong-key", "bad9")
    t.check(g.wait_until(lambda: gw.metric("coap_dtls_handshake_failures_total") > f, 8),
            "the later wrong key is a counted handshake failure")
    run = dtls("c-001", g.secret_of("c-001"), "b3", wait_s=10)
    t.check(run.last == "2.04" and gw.metric("auth_backoffs_total") == n,
            "a success resets the count: one later failure starts no back-off", run)
    gw.stop()


g.run(main)

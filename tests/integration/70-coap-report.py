# Proves CoAP ingest end to end with raw PDUs: POST and PUT reports and events answered 2.04 only after the commit (CON piggybacked or separate, NON with a NON), a retransmitted CON (same message id) answered again but stored once, 4.00 with a diagnostic payload on validation failure, 4.04 for an unknown product/device/event/path, 4.05 for GET on a report, 4.15 on a Content-Format the codec does not take, 4.02 on an unknown critical option (an unknown elective one is ignored), and 5.03 with Max-Age when the store queue is full; every answered request counted.
import collections
import json
import time

import coaplib as c
import gwtest as g

P = "sensor"
NQ = 100  # requests at once against storage.queue_max 16 (its minimum)


def rows(gw, dev, msg_id=None, kind="property"):
    if msg_id is None:
        return gw.scalar("SELECT count(*) FROM events WHERE device=? AND kind=?", (dev, kind))
    return gw.scalar("SELECT count(*) FROM events WHERE device=? AND kind=? AND msg_id=?",
                     (dev, kind, str(msg_id)))


def main(t):
    # batch_ms 300: the writer waits 300 ms before committing, so a 2.04 sent before the commit
    # would arrive early and find no row.
    gw = c.gateway(n_devices=31, config={"storage": {"batch_ms": 300}})
    port = c.coap_port(gw)
    t.check(port, "ready-fd reports a coap listener", gw.ports)
    m0 = gw.metrics()
    cl = c.Client(port)
    dev = "c-001"

    # ---- CON POST report: 2.04 after the commit ----
    t0 = time.monotonic()
    r = c.report(cl, P, dev, 1, {"temperature": 21.5, "humidity": 40})
    dt = time.monotonic() - t0
    n = rows(gw, dev, 1)
    t.eq(r and r.code_str, "2.04", "CON POST report: 2.04 Changed")
    t.check(r is not None and r.type in (c.ACK, c.CON), "answered in the ACK or separately", r)
    t.eq(n, 1, "the row is in SQLite when the 2.04 arrives")
    t.check(dt >= 0.2, "2.04 not before the commit (batch_ms 300): %.3f s" % dt)
    vals = gw.query("SELECT payload FROM events WHERE device=? AND msg_id='1'", (dev,))
    t.eq(vals and json.loads(vals[0][0]), {"temperature": 21.5, "humidity": 40},
         "report values stored")
    t.eq(gw.scalar("SELECT value FROM property_state WHERE device=? AND property='temperature'",
                   (dev,)), "21.5", "property_state temperature")

    # ---- PUT: same ----
    r = cl.put(c.report_path(P, dev), c.report_body(2, {"humidity": 41}), query=c.dev_query(dev))
    t.eq(r and r.code_str, "2.04", "CON PUT report: 2.04")
    t.eq(rows(gw, dev, 2), 1, "PUT report stored")

    # ---- no Content-Format: the codec's default is taken ----
    r = cl.post(c.report_path(P, dev), c.report_body(3, {"humidity": 42}), query=c.dev_query(dev),
                cf=None)
    t.eq(r and r.code_str, "2.04", "report without Content-Format: 2.04")

    # ---- event ----
    r = cl.post(c.event_path(P, dev, "overheat"), g.event_payload(4, {"t": 80.5}),
                query=c.dev_query(dev))
    t.eq(r and r.code_str, "2.04", "event: 2.04")
    t.eq(gw.query("SELECT name, payload FROM events WHERE device=? AND kind='event'", (dev,)),
         [("overheat", '{"t":80.5}')], "event stored with its name and data")

    # ---- NON request: a NON response, stored ----
    mid, tok = cl.next_mid(), cl.next_token()
    opts = c.path_options(c.report_path(P, dev), c.dev_query(dev)) + [(c.CONTENT_FORMAT, 50)]
    cl.send(c.encode(c.NON, c.POST, mid, tok, opts, c.report_body(5, {"humidity": 43})))
    r = cl.wait_response(mid, tok)
    t.check(r is not None and r.type == c.NON and r.code_str == "2.04" and r.token == tok,
            "NON POST: answered with a NON 2.04 carrying the token", r)
    t.check(g.wait_until(lambda: rows(gw, dev, 5) == 1, 5), "NON report stored")

    # ---- retransmitted CON, same message id: answered each time, stored once ----
    mid, tok = cl.next_mid(), cl.next_token()
    dg = c.encode(c.CON, c.POST, mid, tok, opts, c.report_body(6, {"humidity": 44}))
    q0 = gw.metric("coap_requests_total")
    cl.send(dg)
    # the first copy is received and committing (batch_ms 300): the duplicate arrives in flight
    g.wait_until(lambda: gw.metric("coap_requests_total") > q0, 5, interval=0.005)
    cl.send(dg)
    first = cl.wait_response(mid, tok)
    t.eq(first and first.code_str, "2.04", "CON: answered")
    second = cl.wait_response(mid, tok, timeout=2.0)
    t.check(second is None or second.code_str == "2.04",
            "a retransmission in flight: answered 2.04 or not at all", second)
    cl.send(dg)  # once more after the answer
    third = cl.recv(2.0)
    t.check(third is not None and third.type == c.ACK and third.mid == mid and
            (third.code == c.EMPTY or third.code_str == "2.04"),
            "a retransmission after the answer is ACKed again (the stored ACK: 2.04, or empty "
            "when the answer went separately)", third)
    t.eq(cl.recv(0.5), None, "... and nothing else is sent for it")
    # a later report, answered after its commit, is the barrier: a copy of 6 taken as a new
    # request would have been queued before it (same socket, same loop) and committed with it
    r = c.report(cl, P, dev, "6b", {"humidity": 45})
    t.eq(r and r.code_str, "2.04", "a later report: 2.04")
    t.eq(rows(gw, dev, 6), 1, "the retransmitted CON is stored once")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE device=? AND msg_id='6'", (dev,)), 1,
         "no second row of any kind for it")

    # ---- validation failure: 4.00 with a diagnostic payload ----
    r = c.report(cl, P, dev, 7, {"temperature": 200})
    t.eq(r and r.code_str, "4.00", "out-of-range report: 4.00 Bad Request")
    diag = r.payload.decode("utf-8", "replace") if r else ""
    t.check("temperature" in diag and "125" in diag,
            "4.00 carries a diagnostic payload naming the property and the bound", diag)
    t.eq(rows(gw, dev, 7), 0, "rejected report not stored")
    r = c.report(cl, P, dev, 8, {"nosuch": 1})
    t.eq(r and r.code_str, "4.00", "unknown property: 4.00")
    r = cl.post(c.report_path(P, dev), b"{not json", query=c.dev_query(dev))
    t.eq(r and r.code_str, "4.00", "malformed JSON: 4.00")
    r = cl.post(c.event_path(P, dev, "overheat"), g.event_payload(9, {}), query=c.dev_query(dev))
    t.eq(r and r.code_str, "4.00", "event missing its param: 4.00")
    m1 = gw.metrics()
    t.eq(g.metric_delta(m0, m1, g.metric_key("messages_rejected_total", reason="out_of_range")),
         1.0, "messages_rejected_total{reason=out_of_range} +1")
    t.eq(g.metric_delta(m0, m1, g.metric_key("messages_rejected_total",
                                             reason="unknown_property")),
         1.0, "messages_rejected_total{reason=unknown_property} +1")

    # ---- 4.04 ----
    for what, path, q in (
            ("unknown product", c.report_path("nosuch", dev), c.dev_query(dev)),
            ("unknown device", c.report_path(P, "c-999"), c.dev_query("c-999")),
            ("device of another product", c.report_path("thermo", dev), c.dev_query(dev)),
            ("unknown event", c.event_path(P, dev, "nosuch"), c.dev_query(dev)),
            ("unknown resource", "/%s/%s/properties/nosuch" % (P, dev), c.dev_query(dev)),
            ("root", "/", ())):
        r = cl.post(path, g.event_payload(10, {"t": 1.0}), query=q)
        t.eq(r and r.code_str, "4.04", "%s: 4.04 Not Found" % what)

    # ---- 4.05: GET on a report resource ----
    r = cl.request(c.GET, c.report_path(P, dev), query=c.dev_query(dev), cf=None)
    t.eq(r and r.code_str, "4.05", "GET on properties/report: 4.05 Method Not Allowed")

    # ---- 4.15: a Content-Format the json codec does not take ----
    for cf in (c.CF_TEXT, c.CF_CBOR, c.CF_OCTETS):
        r = cl.post(c.report_path(P, dev), c.report_body(11, {"humidity": 1}),
                    query=c.dev_query(dev), cf=cf)
        t.eq(r and r.code_str, "4.15", "Content-Format %d on a json product: 4.15" % cf)
    t.eq(rows(gw, dev, 11), 0, "nothing stored for them")

    # ---- 4.02: unknown critical option; an unknown elective one is ignored ----
    r = cl.post(c.report_path(P, dev), c.report_body(12, {"humidity": 2}), query=c.dev_query(dev),
                options=[(9, b"x")])
    t.eq(r and r.code_str, "4.02", "unknown critical option 9: 4.02 Bad Option")
    r = cl.post(c.report_path(P, dev), c.report_body(13, {"humidity": 3}), query=c.dev_query(dev),
                options=[(2052, b"x")])
    t.eq(r and r.code_str, "2.04", "unknown elective option 2052: ignored, 2.04")
    t.eq((rows(gw, dev, 12), rows(gw, dev, 13)), (0, 1), "4.02 stored nothing, 2.04 stored it")

    # ---- the same with libcoap's coap-client: CON, NON, and refusals ----
    def uri(dev, path=None, token=True):
        return c.coap_uri(port, path or c.report_path(P, dev),
                          ("token=" + g.secret_of(dev)) if token else None)
    run = c.coap_client(uri("c-031"), payload=c.report_body("cc1", {"humidity": 31}))
    t.check(run.last == "2.04", "coap-client POST (CON): 2.04", run)
    run = c.coap_client(uri("c-031"), method="put", payload=c.report_body("cc2", {"humidity": 32}),
                        args=("-N",), wait_s=3)
    t.check(run.last == "2.04", "coap-client -N PUT (NON): 2.04", run)
    t.check(g.wait_until(lambda: gw.scalar(
        "SELECT count(*) FROM events WHERE device='c-031' AND msg_id IN ('cc1','cc2')") == 2, 5),
        "both coap-client reports stored")
    for what, u, cf, want in (
            ("no token", uri("c-031", token=False), 50, "4.01"),
            ("unknown device", uri("c-999"), 50, "4.04"),
            ("text/plain", uri("c-031"), 0, "4.15"),
            ("out of range", uri("c-031"), 50, "4.00")):
        body = c.report_body("cc3", {"temperature": 999 if want == "4.00" else 1.0})
        run = c.coap_client(u, payload=body, cf=cf, wait_s=3)
        t.check(run.last == want, "coap-client, %s: %s" % (what, want), run)

    # ---- every answer counted by its code ----
    mc = gw.metrics()
    got = {code: g.metric_delta(m0, mc, g.metric_key("coap_responses_total", code=code))
           for code in ("4.00", "4.01", "4.02", "4.04", "4.05", "4.15")}
    t.eq(got, {"4.00": 5.0, "4.01": 1.0, "4.02": 1.0, "4.04": 7.0, "4.05": 1.0, "4.15": 4.0},
         "iotgw_coap_responses_total{code} counts every refusal")
    n204 = g.metric_delta(m0, mc, g.metric_key("coap_responses_total", code="2.04"))
    t.check(n204 >= 9, "... and the 2.04s (%d)" % n204)

    # ---- many endpoints at once: all answered 2.04, each stored once ----
    devs = ["c-%03d" % i for i in range(2, 31)]
    eps = {d: c.Client(port) for d in devs}
    sent = {}
    for d, e in eps.items():
        mid, tok = e.next_mid(), e.next_token()
        o = c.path_options(c.report_path(P, d), c.dev_query(d)) + [(c.CONTENT_FORMAT, 50)]
        e.send(c.encode(c.CON, c.PUT, mid, tok, o, c.report_body(1, {"humidity": int(d[-2:])})))
        sent[d] = (mid, tok)
    got = c.collect({d: (eps[d],) + sent[d] for d in devs})
    t.check(all(got[d] is not None and got[d].code_str == "2.04" for d in devs),
            "29 endpoints: every CON answered 2.04",
            [(d, got[d]) for d in devs if got[d] is None or got[d].code_str != "2.04"][:3])
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE kind='property' AND msg_id='1' AND "
                   "device != 'c-001'"), 29, "29 reports stored, one each")

    # ---- 5.03 with Max-Age when the store queue is full ----
    gw.stop()
    gw2 = c.gateway(n_devices=NQ, config={"storage": {"batch_ms": 1500, "queue_max": 16}})
    port2 = c.coap_port(gw2)
    mb = gw2.metrics()
    eps = {d: c.Client(port2) for d in ["c-%03d" % i for i in range(1, NQ + 1)]}
    sent = {}
    for d, e in eps.items():
        mid, tok = e.next_mid(), e.next_token()
        o = c.path_options(c.report_path(P, d), c.dev_query(d)) + [(c.CONTENT_FORMAT, 50)]
        e.send(c.encode(c.CON, c.POST, mid, tok, o, c.report_body("q", {"humidity": 5})))
        sent[d] = (mid, tok)
    got = c.collect({d: (eps[d],) + sent[d] for d in eps}, timeout=10)
    codes = [r.code_str if r else None for r in got.values()]
    busy = [d for d in eps if got[d] is not None and got[d].code_str == "5.03"]
    ok = [d for d in eps if got[d] is not None and got[d].code_str == "2.04"]
    t.info("queue_max 16, %d requests at once: %r" % (NQ, sorted(
        collections.Counter(str(x) for x in codes).items())))
    t.eq(len(ok) + len(busy), NQ, "every request answered 2.04 or 5.03 (nothing silently dropped)")
    t.check(len(busy) > 0, "the full store queue answers 5.03 Service Unavailable")
    t.check(busy and all(got[d].uint(c.MAX_AGE) is not None and got[d].uint(c.MAX_AGE) >= 1
                         for d in busy), "every 5.03 carries a Max-Age (retry after seconds)",
            busy and got[busy[0]])
    g.wait_until(lambda: gw2.metric("store_queue_depth") == 0, 10)
    stored = {r[0] for r in gw2.query("SELECT device FROM events WHERE kind='property'")}
    t.eq(stored, set(ok), "exactly the 2.04-answered requests are stored")
    # the refused ones, retried after the queue drained, are accepted
    again = {d: c.report(eps[d], P, d, "q2", {"humidity": 6})
             for d in [d for d in eps if d not in ok][:5]}
    t.check(again and all(r is not None and r.code_str == "2.04" for r in again.values()),
            "refused requests retried after the drain: 2.04", again)
    m2 = gw2.metrics()
    t.check(g.metric_delta(mb, m2, "store_backpressure_total") >= 1 or
            c.sum_metric(m2, "coap_busy_total") >= 1,
            "back-pressure counted (store_backpressure_total or coap_busy_total)",
            {k: v for k, v in m2.items() if "busy" in k or "backpressure" in k})
    for e in list(eps.values()) + [cl]:
        e.close()


g.run(main)

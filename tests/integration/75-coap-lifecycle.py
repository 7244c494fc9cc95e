# Proves the CoAP session life cycle: the first authenticated request brings a device online (online event with adapter coap and the peer), a refused one does not, further requests keep it online without new events, silence past idle_timeout_ms takes it offline (reason idle_timeout) and the next request brings it back; an IPv6 listener on ::1 serves raw clients and libcoap's coap-client alike; SIGTERM writes offline/shutdown for every online device.
import json
import socket
import time

import coaplib as c
import gwtest as g

# online/offline events name the instance (north.client_id; by default iotgw-<hostname>)
GWNAME = "iotgw-" + socket.gethostname()

P = "sensor"
IDLE_MS = 1500


def online_rows(gw, dev):
    return gw.query("SELECT payload FROM events WHERE device=? AND kind='online' ORDER BY id",
                    (dev,))


def offline_rows(gw, dev):
    return gw.query("SELECT name FROM events WHERE device=? AND kind='offline' ORDER BY id",
                    (dev,))


def main(t):
    have_v6 = socket.has_ipv6
    try:
        s6 = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        s6.bind(("::1", 0))
        s6.close()
    except OSError:
        have_v6 = False
    listeners = [{"address": g.HOST, "port": 0}]
    if have_v6:
        listeners.append({"address": "::1", "port": 0})
    gw = c.gateway(n_devices=4, coap={"listeners": listeners, "idle_timeout_ms": IDLE_MS})
    port = c.coap_port(gw)
    t.check(port, "ready-fd reports a coap listener", gw.ports)

    # a refused request (wrong token) does not bring the device online
    cl = c.Client(port)
    r = c.report(cl, P, "c-001", 1, {"humidity": 1}, secret="wrong")
    t.eq(r and r.code_str, "4.01", "wrong token: 4.01")
    # a session brought online counts in devices_online before its request is answered
    t.eq(gw.metric("devices_online"), 0.0, "no session after a refused request")

    # first authenticated request: online, with adapter and peer
    r = c.report(cl, P, "c-001", 2, {"humidity": 2})
    t.eq(r and r.code_str, "2.04", "first authenticated report: 2.04")
    rows = online_rows(gw, "c-001")
    t.eq(len(rows), 1, "one online event")
    if rows:
        t.eq(json.loads(rows[0][0]), {"adapter": "coap", "peer": cl.peer, "gateway": GWNAME},
             "online payload: adapter coap and the device's source address")
    t.eq(gw.scalar("SELECT online FROM device_state WHERE device='c-001'"), 1,
         "device_state online")
    t.check(g.wait_until(lambda: gw.metric("devices_online") == 1, 5), "devices_online 1")
    oid = gw.scalar("SELECT id FROM events WHERE device='c-001' AND kind='online'")
    pid = gw.scalar("SELECT min(id) FROM events WHERE device='c-001' AND kind='property'")
    t.check(oid is not None and pid is not None and oid < pid,
            "the online event comes before the first report", (oid, pid))

    # more requests within the idle timeout: no new online event, no offline
    for i in range(3):
        time.sleep(IDLE_MS / 1000.0 / 3)  # the pace under test (not a condition wait)
        r = c.report(cl, P, "c-001", 10 + i, {"humidity": 3})
        t.eq(r and r.code_str, "2.04", "report %d within the idle timeout" % (i + 1))
    t.eq(len(online_rows(gw, "c-001")), 1, "still one online event")
    t.eq(offline_rows(gw, "c-001"), [], "no offline event while active")

    # silence: offline with reason idle_timeout, within idle_timeout + sweep slack
    t0 = time.monotonic()
    ok = g.wait_until(lambda: offline_rows(gw, "c-001") == [("idle_timeout",)], 10)
    dt = time.monotonic() - t0
    t.check(ok, "offline event with reason idle_timeout", offline_rows(gw, "c-001"))
    t.check(dt >= IDLE_MS / 1000.0 * 0.8, "not before the idle timeout (%.2f s)" % dt)
    t.eq(gw.scalar("SELECT online FROM device_state WHERE device='c-001'"), 0,
         "device_state offline")
    t.eq(gw.scalar("SELECT last_offline_reason FROM device_state WHERE device='c-001'"),
         "idle_timeout", "last_offline_reason idle_timeout")
    m = gw.metrics()
    t.check(c.sum_metric(m, "coap_idle_timeouts_total") >= 1,
            "iotgw_coap_idle_timeouts_total counts it",
            {k: v for k, v in m.items() if k.startswith("coap_")})

    # back again
    r = c.report(cl, P, "c-001", 20, {"humidity": 4})
    t.eq(r and r.code_str, "2.04", "the next report is served")
    t.eq(len(online_rows(gw, "c-001")), 2, "a second online event")

    # another source port for the same device (roaming): served, stays online. When the new port
    # hashes to another loop the session moves there (coap_takeovers_total) and gw_session_online
    # writes an online event with the new peer; on the same loop the address changes silently.
    tk0 = gw.metric("coap_takeovers_total")
    cl2 = c.Client(port)
    r = c.report(cl2, P, "c-001", 21, {"humidity": 5})
    t.eq(r and r.code_str, "2.04", "same device from another source port: 2.04")
    # the kick is posted to the old loop; real 0.3 s: the idle timeout (1.5 s) must not pass
    g.wait_until(lambda: gw.metric("coap_takeovers_total") > tk0, 0.3 / g.SLOW)
    moved = gw.metric("coap_takeovers_total") - tk0
    rows = online_rows(gw, "c-001")
    t.eq(len(rows), 2 + int(moved), "an online event only if the session moved loops "
         "(moved: %d)" % moved)
    if moved:
        t.eq(json.loads(rows[-1][0]).get("peer"), cl2.peer, "... naming the new source")
        t.eq(json.loads(rows[-1][0]).get("takeover"), True, "... marked \"takeover\": true")
    t.eq(offline_rows(gw, "c-001"), [("idle_timeout",)], "no offline event for the move")

    # IPv6
    if have_v6:
        port6 = None
        for kv in gw.listeners:  # gw.ports keeps only each adapter's first listener
            if kv.get("adapter") == "coap" and kv.get("address", "").strip("[]") == "::1":
                port6 = int(kv["port"])
        t.check(port6, "ready-fd reports the ::1 listener (adapter=coap address=::1)",
                gw.listeners)
        if port6:
            c6 = c.Client(port6, host="::1")
            r = c.report(c6, P, "c-002", 1, {"humidity": 6})
            t.eq(r and r.code_str, "2.04", "IPv6 (::1) raw client: 2.04")
            rows6 = online_rows(gw, "c-002")
            peer6 = json.loads(rows6[0][0]).get("peer", "") if rows6 else ""
            t.check("::1" in peer6 and peer6.endswith(":%d" % c6.local[1]),
                    "online peer is the IPv6 source (%s)" % c6.peer, rows6)
            run = c.coap_client(c.coap_uri(port6, c.report_path(P, "c-003"), "token=" +
                                           g.secret_of("c-003"), host="::1"),
                                payload=c.report_body("v6", {"humidity": 7}))
            t.check(run.last == "2.04", "IPv6 coap-client: 2.04", run)
            t.eq(gw.scalar("SELECT count(*) FROM events WHERE device='c-003' AND msg_id='v6'"),
                 1, "coap-client's IPv6 report stored")
            c6.close()
    else:
        t.info("no IPv6 on this host: IPv6 part skipped")

    # shutdown: every online device goes offline with reason shutdown
    online_now = gw.scalar("SELECT count(*) FROM device_state WHERE online=1")
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE kind='offline' AND name='shutdown'"),
         online_now, "an offline/shutdown event per online device (%d)" % online_now)
    t.eq(gw.scalar("SELECT count(*) FROM device_state WHERE online=1"), 0, "no device online")
    cl.close()
    cl2.close()


g.run(main)

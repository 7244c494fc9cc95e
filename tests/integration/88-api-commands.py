# Proves functions, property writes and reads over the HTTP API with north disabled: an invoke reaches an MQTT device (paho), a TCP meter (raw socket, binary frames) and a CoAP observer (raw CoAP) and each device's reply comes back in the HTTP answer; a device error is a 200 with success false; no reply gives 504 after the function's timeout or a shorter timeout_ms; an offline device 409, a queueing product 202 then delivery at login; bad inputs 400 with the JSON path and nothing sent; unknown device/function 404; 401/403; the per-device and gateway-wide bounds 429/503; a client that leaves early leaks nothing; property write, fresh and stored reads; every API command in the commands table; with north enabled too (the north thread ticks, the reply also goes upstream); a command waiting at SIGTERM answered 503.
import copy
import json
import struct
import threading
import time

import binframes as b
import cmdlib as cl
import coaplib as c
import gwapi
import gwtest as g

THERMO = copy.deepcopy(g.THERMO)
THERMO["functions"][0]["timeout_ms"] = 1500
THERMO["functions"].append({"id": "ping", "timeout_ms": 3000})
THERMQ = copy.deepcopy(THERMO)
THERMQ["id"] = "thermq"
THERMQ["commands"] = {"offline": "queue", "ttl_ms": 30000}
SENSOR = c.product("sensor")
SENSOR["functions"][0]["timeout_ms"] = 8000


class Call:
    """An API request on its own thread (the device must answer while the request waits)."""

    def __init__(self, gw, method, path, body=None, token="admin", timeout=20.0):
        self.resp, self.err = None, None
        self.t0 = time.monotonic()
        self.t1 = None

        def run():
            try:
                self.resp = gwapi.api(gw, method, path, body, token=token, timeout=timeout * g.SLOW)
            except Exception as e:  # noqa: BLE001 - reported by the check that reads it
                self.err = e
            self.t1 = time.monotonic()
        self.th = threading.Thread(target=run, daemon=True)
        self.th.start()

    def result(self, timeout=20.0):
        self.th.join(timeout * g.SLOW)
        return self.resp

    @property
    def elapsed(self):
        return (self.t1 or time.monotonic()) - self.t0


def invoke_path(dev, fn):
    return "/api/devices/%s/functions/%s" % (dev, fn)


def js(r):
    return r.json if r is not None else None


def mqtt_part(t, gw):
    def answer(topic, d):
        mid = d.get("messageId", "")
        if d.get("inputs", {}).get("delay_s") == 42:
            return {"messageId": mid, "success": False, "error": "E42", "message": "overheated"}
        if d.get("inputs", {}).get("delay_s") == 59:
            return None  # never answers
        return cl.ok_reply(topic, d)
    d1 = cl.Device(gw, "t-001", answer=answer)

    # ---- invoke round trip ----
    t0 = time.monotonic()
    r = gwapi.api(gw, "POST", invoke_path("t-001", "reboot"), {"inputs": {"delay_s": 5}})
    t.info("invoke round trip (HTTP -> MQTT device -> reply -> HTTP): %.1f ms"
           % ((time.monotonic() - t0) * 1000))
    lat, codes = [], []
    for i in range(20):
        t1 = time.monotonic()
        rr = gwapi.api(gw, "POST", invoke_path("t-001", "reboot"), {"inputs": {"delay_s": 1}})
        lat.append((time.monotonic() - t1) * 1000)
        codes.append(rr.status)
    lat.sort()
    t.eq(codes, [200] * 20, "20 invokes in a row: each 200 (%r)" % (js(rr),))
    t.info("invoke round trip over 20: median %.1f ms, max %.1f ms" % (lat[10], lat[-1]))
    body = js(r) or {}
    t.eq(r.status, 200, "invoke: 200 once the device replied")
    mid = body.get("messageId", "")
    t.check(mid.startswith("api-"), "the answer carries the command's messageId", body)
    t.eq((body.get("success"), body.get("outputs")), (True, {"ok": True}),
         "success and the device's outputs")
    got = d1.wait_command(mid)
    t.check(got and got[0] == "/thermo/t-001/function/invoke" and
            got[1] == {"messageId": mid, "function": "reboot", "inputs": {"delay_s": 5}},
            "the device got the command on its invoke topic, exact payload", got)
    ok_mid = mid

    # ---- the device reports a failure: still a 200 ----
    r = gwapi.api(gw, "POST", invoke_path("t-001", "reboot"), {"inputs": {"delay_s": 42}})
    body = js(r) or {}
    t.eq((r.status, body.get("success"), body.get("code"), body.get("message")),
         (200, False, "device_error", "E42: overheated"), "device error: 200, success false")
    err_mid = body.get("messageId")

    # ---- no reply: 504 after the function's timeout, or after a shorter timeout_ms ----
    call = Call(gw, "POST", invoke_path("t-001", "reboot"),
                {"inputs": {"delay_s": 59}, "timeout_ms": 300})
    r = call.result()
    t.eq(r and r.status, 504, "no reply, timeout_ms 300: 504")
    t.eq(js(r) and js(r).get("error"), "timeout", "error code timeout")
    t.check(0.25 <= call.elapsed < 1.4 * g.SLOW, "answered after ~300 ms, before the function's "
            "1500 ms (%.2f s)" % call.elapsed)
    short_mid = js(r) and js(r).get("messageId")
    call = Call(gw, "POST", invoke_path("t-001", "reboot"),
                {"inputs": {"delay_s": 59}, "timeout_ms": 60000})
    r = call.result()
    t.eq(r and r.status, 504, "timeout_ms above the function's: capped, 504")
    t.check(1.4 <= call.elapsed < 4.0 * g.SLOW, "after the function's 1500 ms (%.2f s)"
            % call.elapsed)
    t.info("504 after %.2f s (function timeout 1.5 s)" % call.elapsed)

    # ---- invalid requests: 400 with the path, 404, nothing reaches the device ----
    n_before = len(d1.commands())
    cases = [
        ({"inputs": {"delay_s": 99}}, 400, "invalid_input", "inputs.delay_s"),
        ({"inputs": {"delay_s": "x"}}, 400, "invalid_input", "inputs.delay_s"),
        ({"inputs": {"bogus": 1}}, 400, "invalid_input", "inputs.bogus"),
        ({"inputs": [1]}, 400, "invalid_payload", "inputs"),
        ({"inputs": {}, "extra": 1}, 400, "unknown_field", "extra"),
        ({"timeout_ms": "soon"}, 400, "invalid_body", "timeout_ms"),
        ({"timeout_ms": 0}, 400, "invalid_body", "timeout_ms"),
        ([1, 2], 400, "invalid_body", ""),
    ]
    for req, status, code, path in cases:
        r = gwapi.api(gw, "POST", invoke_path("t-001", "reboot"), req)
        body = js(r) or {}
        t.check(r.status == status and body.get("error") == code and body.get("path") == path,
                "%s: %d %s path %r" % (json.dumps(req), status, code, path), r)
    r = gwapi.api(gw, "POST", invoke_path("t-001", "selfdestruct"), {})
    t.eq((r.status, (js(r) or {}).get("error")), (404, "not_found"), "unknown function 404")
    r = gwapi.api(gw, "POST", invoke_path("nobody", "reboot"), {})
    t.eq((r.status, (js(r) or {}).get("error")), (404, "not_found"), "unknown device 404")
    r = gwapi.api(gw, "POST", invoke_path("t-001", "reboot"), {"inputs": {"delay_s": 1}},
                  token="read")
    t.eq(r.status, 403, "a read token cannot invoke: 403")
    r = gwapi.api(gw, "POST", invoke_path("t-001", "reboot"), {"inputs": {"delay_s": 1}},
                  token=None)
    t.eq(r.status, 401, "no token: 401")
    r = gwapi.api(gw, "PUT", "/api/devices/t-001/properties", {"properties": {"mode": "eco"}},
                  token="read")
    t.eq(r.status, 403, "a read token cannot write properties: 403")
    time.sleep(0.2)
    t.eq(len(d1.commands()), n_before, "the device received none of the refused requests")

    # ---- offline: 409 for a product that does not queue, 202 then delivery for one that does ----
    r = gwapi.api(gw, "POST", invoke_path("t-003", "reboot"), {"inputs": {"delay_s": 1}})
    t.eq((r.status, (js(r) or {}).get("error")), (409, "device_offline"), "offline device: 409")
    off_mid = (js(r) or {}).get("messageId")
    r = gwapi.api(gw, "POST", invoke_path("q-001", "reboot"), {"inputs": {"delay_s": 2}})
    body = js(r) or {}
    t.eq((r.status, body.get("queued")), (202, True), "offline, product queues: 202 queued")
    q_mid = body.get("messageId", "")
    dq = cl.Device(gw, "q-001", product="thermq")
    got = dq.wait_command(q_mid)
    t.check(got and got[1].get("inputs") == {"delay_s": 2},
            "the queued command reaches the device when it subscribes", got)
    dq.stop()

    # ---- property write, fresh and stored reads ----
    r = gwapi.api(gw, "PUT", "/api/devices/t-001/properties", {"properties": {"mode": "comfort"}})
    body = js(r) or {}
    t.eq((r.status, body.get("success")), (200, True), "property write: 200 after the reply")
    got = d1.wait_command(body.get("messageId"))
    t.check(got and got[0] == "/thermo/t-001/properties/write" and
            got[1].get("properties") == {"mode": "comfort"}, "the device got the write", got)
    w_mid = body.get("messageId")
    for req, code, path in [({"properties": {"temperature": 3}}, "not_writable",
                             "properties.temperature"),
                            ({"properties": {"mode": "hot"}}, "invalid_input", "properties.mode"),
                            ({"properties": {"nope": 1}}, "unknown_property", "properties.nope"),
                            ({}, "invalid_body", "properties")]:
        r = gwapi.api(gw, "PUT", "/api/devices/t-001/properties", req)
        body = js(r) or {}
        t.check(r.status == 400 and body.get("error") == code and body.get("path") == path,
                "write %s: 400 %s path %s" % (json.dumps(req), code, path), r)
    t.check(d1.report({"temperature": 21.5, "mode": "eco"}, "rep-1"), "device reports")
    t0 = time.monotonic()
    r = gwapi.api(gw, "GET", "/api/devices/t-001/properties?fresh=1", token="read")
    t.info("fresh read right after a report: %.1f ms" % ((time.monotonic() - t0) * 1000))
    body = js(r) or {}
    props = body.get("properties") or {}
    t.eq(r.status, 200, "fresh read: 200 (read token)")
    t.eq((props.get("temperature") or {}).get("value"), 21.5, "fresh read: the reported value")
    t.check(isinstance((props.get("mode") or {}).get("time"), int), "each value with its time",
            props)
    t.eq(props.get("on"), {"value": None, "time": None},
         "every property of the thing model, null when never reported")
    fresh_mid = body.get("messageId")

    def stored():
        r = gwapi.api(gw, "GET", "/api/devices/t-001/properties", token="read")
        p = (js(r) or {}).get("properties") or {}
        return r.status == 200 and (p.get("temperature") or {}).get("value") == 21.5
    t.check(g.wait_until(stored, 5), "stored read (no fresh): the value once the state is written")
    r = gwapi.api(gw, "GET", "/api/devices/t-001/properties?fresh=maybe")
    t.eq((r.status, (js(r) or {}).get("path")), (400, "fresh"), "fresh=maybe: 400 naming it")
    r = gwapi.api(gw, "GET", "/api/devices/nobody/properties")
    t.eq(r.status, 404, "properties of an unknown device: 404")

    # ---- the commands table logs the API's commands like the cloud's ----
    want = {ok_mid: ("invoke", "success"), err_mid: ("invoke", "failed"),
            short_mid: ("invoke", "timeout"), off_mid: ("invoke", "offline"),
            w_mid: ("write", "success"), fresh_mid: ("read", "success")}

    def rows_ok():
        rows = cl.commands_rows(gw)
        return all(rows.get(m) and rows[m][1:2] + rows[m][3:4] == v for m, v in want.items())
    ok = g.wait_until(rows_ok, 5)
    rows = cl.commands_rows(gw)
    t.check(ok, "commands table: op and status of each API command",
            {m: rows.get(m) for m in want})
    t.check(rows.get(q_mid) and rows[q_mid][3] in ("sent", "success", "queued"),
            "the queued command is logged", rows.get(q_mid))
    t.check(any(r[3] == "rejected" for r in rows.values()), "refused ones logged as rejected")
    d1.stop()


def bounds_part(t, gw):
    """max_pending_per_device 2, max_pending 3: a third concurrent command for one device is 429,
    one more for another device while 3 wait is 503. A client that leaves early leaks nothing."""
    da = cl.Device(gw, "t-002", answer=lambda topic, d: None)
    db = cl.Device(gw, "t-004", answer=lambda topic, d: None)
    body = {"inputs": {"delay_s": 1}, "timeout_ms": 2500}
    calls = [Call(gw, "POST", invoke_path("t-002", "reboot"), body) for _ in range(2)]
    calls.append(Call(gw, "POST", invoke_path("t-004", "reboot"), body))
    t.check(g.wait_until(lambda: gw.metric("commands_pending") == 3, 5), "3 commands pending")
    r = gwapi.api(gw, "POST", invoke_path("t-002", "reboot"), body)
    t.eq((r.status, (js(r) or {}).get("error")), (429, "busy"), "the device's bound: 429")
    r = gwapi.api(gw, "POST", invoke_path("t-004", "reboot"), body)
    t.eq((r.status, (js(r) or {}).get("error")), (503, "busy"), "the gateway's bound: 503")
    t.eq([cc.result() and cc.result().status for cc in calls], [504, 504, 504],
         "the waiting ones time out: 504")

    # a client that leaves before the answer: the command completes, the server carries on
    import socket
    s = socket.create_connection((g.HOST, gw.admin_port))
    req = json.dumps({"inputs": {"delay_s": 1}, "timeout_ms": 500}).encode()
    s.sendall(("POST %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
               "Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
               % (invoke_path("t-002", "reboot"), gwapi.ADMIN_TOKEN, len(req))).encode() + req)
    t.check(g.wait_until(lambda: gw.metric("commands_pending") == 1, 5), "its command is pending")
    s.close()
    t.check(g.wait_until(lambda: gw.metric("commands_pending") == 0, 5),
            "... and times out normally after the client left")
    r = gwapi.api(gw, "GET", "/api/devices/t-002/properties")
    t.eq(r.status, 200, "the API still answers")
    da.stop()
    db.stop()


def tcp_coap_part(t, gw):
    # ---- TCP meter: binary frames, matched by seq ----
    dev = "mtr00001"
    d = b.Dev(gw.product_ports[b.METER])
    d.send(b.meter_login(dev, b.meter_secret(dev)))
    t.eq(d.recv_n(10), b.meter_ack(1, 1), "meter logged in")
    call = Call(gw, "POST", invoke_path(dev, "reset_counter"), {"inputs": {"confirm": True}})
    f = d.recv_n(9)
    t.eq(f, b.meter_frame(0x85, 1, b"\x01"), "the meter gets the invoke frame (seq 1)")
    d.send(b.meter_frame(0x05, 1, b"\x00" + struct.pack(">I", 123456)))
    r = call.result()
    body = js(r) or {}
    t.eq((r and r.status, body.get("success"), body.get("outputs")),
         (200, True, {"previous_kwh": 1234.56}), "TCP: the meter's reply in the HTTP answer")
    d.close()

    # ---- CoAP observer: a CON notification, the reply POSTed back ----
    port = c.coap_port(gw)
    cc = c.Client(port, auto_ack=False)
    token = cc.next_token()
    r = cc.request(c.GET, "/sensor/c-001/function/invoke", query=c.dev_query("c-001"), cf=None,
                   token=token, options=[(c.OBSERVE, 0)])
    t.eq(r and r.code_str, "2.05", "CoAP device observes its invoke resource")
    call = Call(gw, "POST", invoke_path("c-001", "reboot"), {"inputs": {"delay_s": 3}})
    note = None
    deadline = time.monotonic() + 5 * g.SLOW
    while note is None and time.monotonic() < deadline:
        m = cc.recv(1.0)
        if m is not None and m.token == token and m.type == c.CON:
            cc.ack(m)
            note = m
    t.check(note is not None, "the CoAP device gets the command as a notification")
    mid = note.json().get("messageId") if note else ""
    t.eq(note and note.json(), {"messageId": mid, "function": "reboot", "inputs": {"delay_s": 3}},
         "its payload")
    rr = cc.post("/sensor/c-001/function/invoke/reply",
                 cl.compact({"messageId": mid, "success": True, "outputs": {"ok": True}}),
                 query=c.dev_query("c-001"))
    t.eq(rr and rr.code_str, "2.04", "the reply POST: 2.04")
    r = call.result()
    body = js(r) or {}
    t.eq((r and r.status, body.get("messageId"), body.get("outputs")), (200, mid, {"ok": True}),
         "CoAP: the device's reply in the HTTP answer")
    cc.close()


def north_part(t):
    """North enabled: the north thread ticks the table; API commands still answer on the main
    loop, and their reply events are forwarded upstream like every event."""
    broker = g.Mosquitto(extra_conf=cl.BROKER_CONF)
    gw = g.Gateway(products=[THERMO], devices=g.make_devices(g.thermo_ids(2)),
                   config={"north": cl.north(broker.port), "storage": {"batch_ms": 0}})
    cloud = cl.Cloud(broker.port)
    t.check(cloud.wait_ready("thermo", "t-001"), "north up (a cloud property read is answered)")
    d1 = cl.Device(gw, "t-001")
    d2 = cl.Device(gw, "t-002", answer=lambda topic, d: None)
    r = gwapi.api(gw, "POST", invoke_path("t-001", "reboot"), {"inputs": {"delay_s": 5}})
    body = js(r) or {}
    t.eq((r.status, body.get("outputs")), (200, {"ok": True}), "north on: invoke answered 200")
    up = cloud.reply("t-001", body.get("messageId"))
    t.check(up and up[1].get("success") is True, "its reply event goes upstream like any event",
            up)
    call = Call(gw, "POST", invoke_path("t-002", "reboot"),
                {"inputs": {"delay_s": 1}, "timeout_ms": 300})
    r = call.result()
    t.check(r is not None and r.status == 504 and call.elapsed < 1.4 * g.SLOW,
            "north on: timed out by the north thread's tick, 504 (%.2f s)" % call.elapsed, r)
    d1.stop()
    d2.stop()
    cloud.stop()
    t.eq(gw.stop(), 0, "north on: clean exit")
    broker.stop()


def main(t):
    devs = (g.make_devices(g.thermo_ids(4)) + g.make_devices(["q-001"], "thermq") +
            b.meter_devices(["mtr00001"]) + g.make_devices(["c-001"], "sensor"))
    cfg = {"north": {"enabled": False, "max_pending_per_device": 2, "max_pending": 3},
           "storage": {"batch_ms": 0},
           "adapters": {"tcp": {"listeners": [{"address": g.HOST, "port": 0,
                                               "product": b.METER}]},
                        "coap": c.coap_adapter()}}
    gw = g.Gateway(products=[THERMO, THERMQ, g.load_product(b.METER), SENSOR], devices=devs,
                   config=cfg)
    t.eq(gw.metric("north_connected", default=0.0), 0.0, "north is disabled")
    mqtt_part(t, gw)
    bounds_part(t, gw)
    tcp_coap_part(t, gw)
    t.eq(gw.metric("commands_pending"), 0.0, "nothing left pending")
    t.check(gw.alive(), "the gateway is alive")

    # a command still waiting when the gateway stops: answered 503, nothing leaks
    d = b.Dev(gw.product_ports[b.METER])
    d.send(b.meter_login("mtr00001", b.meter_secret("mtr00001")))
    t.eq(d.recv_n(10), b.meter_ack(1, 1), "meter logged in again")
    call = Call(gw, "POST", invoke_path("mtr00001", "reset_counter"), {"inputs": {"confirm": True}})
    t.check(g.wait_until(lambda: gw.metric("commands_pending") == 1, 5), "a command waits")
    t.eq(gw.stop(), 0, "clean exit with a command waiting")
    r = call.result()
    t.check(call.err is None and r is not None and r.status == 503 and
            (js(r) or {}).get("error") == "shutting_down",
            "the waiting request is answered 503 shutting_down", r or call.err)
    d.close()
    north_part(t)


g.run(main)

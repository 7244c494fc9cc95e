# Proves hot reload: 1,000 MQTT devices publish QoS 1 while SIGHUP applies a narrowed thing model, a removed device and a new product + device: the 999 others stay connected (no close, no new online/offline), every PUBACKed message is stored, the removed one goes offline "removed", the next message is checked by the new model, the new device connects at once; a broken reload changes nothing and logs file + path; a changed secret closes that session ("reconfigured"); settings needing a restart are reported; POST /api/reload does the same.
import copy
import json
import os
import selectors
import signal
import time

import binframes as b
import gwtest as g
import sensor_udp as su

N = 1000
IDS = ["d-%04d" % i for i in range(N)]
REMOVED = IDS[-1]
RESECRET = IDS[-2]
LOAD_S = 6.0  # seconds of QoS 1 traffic; the SIGHUP lands in its middle
STAYING = [d for d in IDS if d != REMOVED]


def thermo(hmax):
    p = copy.deepcopy(g.THERMO)
    for prop in p["properties"]:
        if prop["id"] == "humidity":
            prop["max"] = hmax
    return p


def write_json(gw, rel, obj):
    tmp = gw.path(rel + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f, indent=1)
    os.replace(tmp, gw.path(rel))


class Dev:
    """A raw MQTT device socket, non-blocking, one QoS 1 report in flight at a time."""

    def __init__(self, gw, dev_id):
        self.id = dev_id
        self.c = g.device_client(gw, dev_id, timeout=30)
        self.sock = self.c.sock
        self.buf = bytearray(self.c.buf)
        self.sock.setblocking(False)
        self.pid = 0
        self.inflight = None  # msg_id waiting for its PUBACK
        self.acked = []
        self.closed = False
        self.seq = 0

    def send_next(self):
        self.seq += 1
        self.pid = self.pid % 65535 + 1
        self.inflight = "%s-%d" % (self.id, self.seq)
        data = g.publish_packet(g.report_topic(self.id),
                                g.report_payload(self.inflight, {"humidity": self.seq % 50}),
                                qos=1, pid=self.pid)
        try:
            self.sock.sendall(data)
        except (BlockingIOError, OSError):
            self.inflight = None  # counted as not sent (never acknowledged)

    def on_readable(self):
        try:
            chunk = self.sock.recv(65536)
        except BlockingIOError:
            return False
        except OSError:
            chunk = b""
        if not chunk:
            self.closed = True
            return False
        self.buf += chunk
        got = False
        while True:
            p, used = g.parse_packet(self.buf)
            if p is None:
                break
            del self.buf[:used]
            if p.type == g.PUBACK and self.inflight and p.pid == self.pid:
                self.acked.append(self.inflight)
                self.inflight = None
                got = True
        return got


def drive(devs, seconds, at_half=None):
    """Each open device sends its next report once the previous one is acknowledged."""
    sel = selectors.DefaultSelector()
    for d in devs:
        sel.register(d.sock, selectors.EVENT_READ, d)
        d.send_next()
    t_end = time.monotonic() + seconds * g.SLOW
    half = time.monotonic() + seconds * g.SLOW / 2
    while True:
        now = time.monotonic()
        if at_half and now >= half:
            at_half()
            at_half = None
        if now >= t_end:
            break
        for key, _ in sel.select(0.05):
            d = key.data
            if d.on_readable() and not d.closed:
                d.send_next()
            if d.closed:
                sel.unregister(d.sock)
    # the last reports in flight: their PUBACKs (or the close)
    t_drain = time.monotonic() + 10 * g.SLOW
    while time.monotonic() < t_drain and any(d.inflight and not d.closed for d in devs):
        for key, _ in sel.select(0.05):
            d = key.data
            d.on_readable()
            if d.closed:
                sel.unregister(d.sock)
    sel.close()


def api_reload(gw):
    """POST /api/reload through the management API (None when this build serves no API)."""
    try:
        import gwapi
        r = gwapi.api(gw, "POST", "/api/reload")
    except (ImportError, OSError, TypeError, AttributeError) as e:
        return None, repr(e)
    if r.status in (404, 501) or r.json is None:  # the HTTP/1.0 admin code: not the API yet
        return None, r
    return r, None


def listeners_phase(t):
    """TCP and UDP listeners follow a reload: a new product's port opens (its device logs in at
    once), a removed product's port closes (its session goes offline "removed"); the running
    listeners and their sessions stay."""
    meter = g.load_product(b.METER)
    sensor = g.load_product(su.PRODUCT)
    meter2 = dict(copy.deepcopy(meter), id="meter2")
    sensor2 = dict(copy.deepcopy(sensor), id="sensor2")
    devs = [{"id": "mtr00001", "product": b.METER, "secret": b.meter_secret("mtr00001")}]
    devs += su.devices(["snr00001"])
    cfg = {"adapters": {
        "tcp": {"listeners": [{"address": g.HOST, "port": 0, "product": b.METER}]},
        "udp": {"listeners": [{"address": g.HOST, "port": 0, "product": su.PRODUCT}]}},
        "log_rate_limit": 0}
    gw = g.Gateway(products=[g.THERMO, meter, sensor], devices=devs, config=cfg)
    tcp0, udp0 = g.adapter_port(gw, "tcp"), g.adapter_port(gw, "udp")
    d1 = b.Dev(tcp0)
    d1.send(b.meter_login("mtr00001", b.meter_secret("mtr00001")))
    t.eq(len(d1.recv_n(b.METER_ACK_LEN)), b.METER_ACK_LEN, "tcp: the running product's login")

    tport, uport = g.free_port(), g.free_port()
    new_cfg = copy.deepcopy(gw.cfg)
    new_cfg["adapters"]["tcp"]["listeners"].append(
        {"address": g.HOST, "port": tport, "product": "meter2"})
    new_cfg["adapters"]["udp"]["listeners"].append(
        {"address": g.HOST, "port": uport, "product": "sensor2"})
    new_devs = devs + [{"id": "mtr00002", "product": "meter2",
                        "secret": b.meter_secret("mtr00002")},
                       {"id": "snr00002", "product": "sensor2", "secret": su.token_of("snr00002")}]
    write_json(gw, "products/meter2.json", meter2)
    write_json(gw, "products/sensor2.json", sensor2)
    write_json(gw, "devices.json", new_devs)
    write_json(gw, "gateway.json", new_cfg)
    mark = gw.log_mark()
    os.kill(gw.pid, signal.SIGHUP)
    ok = g.wait_until(lambda: gw.find_log(mark, msg="configuration applied"), 10)
    t.check(ok, "listeners: reload applied", gw.log_since(mark)[-1500:])
    t.eq(gw.find_log(mark, msg="setting changed but needs a restart: left as it is"), [],
         "a listener change needs no restart")
    d2 = b.Dev(tport)
    d2.send(b.meter_login("mtr00002", b.meter_secret("mtr00002")))
    ack = d2.recv_n(b.METER_ACK_LEN)
    t.eq(len(ack), b.METER_ACK_LEN, "tcp: a listener added for the new product; its device logs in")
    t.check(g.wait_until(lambda: gw.scalar(
        "SELECT count(*) FROM events WHERE kind='online' AND device='mtr00002'") == 1, 5),
        "tcp: the new device is online")
    c = su.Client(uport)
    c.send(su.report("snr00002", 1))
    a = c.ack()
    t.check(a is not None and a[0] == "snr00002", "udp: a listener added for the new product; its "
            "report is acknowledged", a)
    c0 = su.Client(udp0)
    c0.send(su.report("snr00001", 1))
    t.check(c0.ack() is not None, "udp: the running listener still serves")
    d1.send(b.meter_heartbeat(2))
    t.eq(len(d1.recv_n(b.METER_ACK_LEN)), b.METER_ACK_LEN,
         "tcp: the running session was not touched")

    # back: meter2/sensor2 removed with their listeners and devices
    os.remove(gw.path("products/meter2.json"))
    os.remove(gw.path("products/sensor2.json"))
    write_json(gw, "devices.json", devs)
    write_json(gw, "gateway.json", gw.cfg)
    mark = gw.log_mark()
    os.kill(gw.pid, signal.SIGHUP)
    t.check(g.wait_until(lambda: gw.find_log(mark, msg="configuration applied"), 10),
            "listeners: second reload applied", gw.log_since(mark)[-1500:])
    t.check(g.wait_until(lambda: gw.scalar(
        "SELECT name FROM events WHERE kind='offline' AND device='mtr00002'") == "removed", 5),
        "tcp: the removed product's session went offline \"removed\"")
    refused = False
    try:
        b.Dev(tport, timeout=2).send(b"x")
    except OSError:
        refused = True
    t.check(refused, "tcp: the removed listener's port is closed")
    d1.send(b.meter_heartbeat(3))
    t.eq(len(d1.recv_n(b.METER_ACK_LEN)), b.METER_ACK_LEN, "tcp: the running session still served")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE kind='offline' AND device='mtr00001'"), 0,
         "tcp: no offline event for the running device")
    t.eq(gw.stop(), 0, "listeners: clean exit")


def main(t):
    listeners_phase(t)
    g.raise_fd_limit(4096)
    devices = g.make_devices(IDS)
    gw = g.Gateway(products=[thermo(100)], devices=devices, loops=2, ready_timeout=60,
                   config={"log_rate_limit": 0})
    t.info("connecting %d devices" % N)
    devs = [Dev(gw, d) for d in IDS]
    t.check(g.wait_until(lambda: gw.metric("devices_online") == N, 30),
            "%d devices online" % N, gw.metric("devices_online"))
    threads0 = gw.threads()
    # devices_online counts sessions; their online events are committed a little later
    count_online = "SELECT count(*) FROM events WHERE kind='online'"
    g.wait_until(lambda: gw.scalar(count_online) >= N, 15)
    online0 = gw.scalar(count_online)
    t.eq(online0, N, "one online event per device")

    # --- reload under load: thing model narrowed, one device removed, product + device added
    new_devices = [d for d in devices if d["id"] != REMOVED] + g.make_devices(["p-001"], "plug")
    mark = gw.log_mark()

    def reload():
        write_json(gw, "products/thermo.json", thermo(50))
        write_json(gw, "products/plug.json", g.PLUG)
        write_json(gw, "devices.json", new_devices)
        reload.at = time.monotonic()
        os.kill(gw.pid, signal.SIGHUP)

    t0 = time.monotonic()
    drive(devs, LOAD_S, at_half=reload)
    acked = [m for d in devs for m in d.acked]
    t.info("QoS 1 reports acknowledged during the load: %d in %.1f s" % (
        len(acked), time.monotonic() - t0))
    applied = g.wait_until(lambda: gw.find_log(mark, msg="configuration applied"), 10)
    t.check(applied, "SIGHUP: configuration applied (logged)", gw.log_tail())
    if applied:
        t.info("SIGHUP under load (1,000 devices): loading + validating %s ms, switching the "
               "loops %s ms (main loop busy meanwhile)" % (applied[0].get("load_ms"),
                                                          applied[0].get("switch_ms")))
    closed = sorted(d.id for d in devs if d.closed)
    t.eq(closed, [REMOVED], "only the removed device's connection was closed")
    t.check(len(acked) > N, "traffic flowed (more reports acknowledged than devices)", len(acked))
    t.check(g.wait_until(lambda: gw.scalar(
        "SELECT count(*) FROM events WHERE kind='offline' AND device=?", (REMOVED,)) == 1, 10),
        "the removed device has an offline event")
    reason = gw.scalar("SELECT name FROM events WHERE kind='offline' AND device=?", (REMOVED,))
    t.eq(reason, "removed", "its offline reason is \"removed\"")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE kind='offline' AND device<>?", (REMOVED,)),
         0, "no offline event for the 999 others")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE kind='online'"), N,
         "no new online event (nobody reconnected)")
    stored = set(r[0] for r in gw.query("SELECT msg_id FROM events WHERE kind='property'"))
    lost = [m for m in acked if m not in stored]
    t.eq(lost[:5], [], "every acknowledged report is stored (%d acknowledged)" % len(acked))
    t.check(g.wait_until(lambda: gw.metric("devices_online") == N - 1, 10),
            "devices_online = %d" % (N - 1), gw.metric("devices_online"))

    # the next message of the changed product is checked by the new model (humidity max 50)
    d0 = devs[0]
    d0.sock.setblocking(True)
    c = g.RawClient.__new__(g.RawClient)
    c.sock, c.buf, c.closed, c.auto_puback, c.timeout = d0.sock, bytearray(), False, True, 5.0
    rej0 = gw.metric("messages_rejected_total", reason="out_of_range")
    t.check(c.publish_wait(g.report_topic(d0.id), g.report_payload("new-80", {"humidity": 80}),
                           4001, 5) is not None, "humidity 80 PUBACKed")
    t.check(c.publish_wait(g.report_topic(d0.id), g.report_payload("new-40", {"humidity": 40}),
                           4002, 5) is not None, "humidity 40 PUBACKed")
    t.check(g.wait_until(lambda: gw.scalar(
        "SELECT count(*) FROM events WHERE msg_id='new-40'") == 1, 5),
        "humidity 40 (valid under the new model) stored")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE msg_id='new-80'"), 0,
         "humidity 80 (valid before, above the new max 50) not stored")
    t.check(gw.metric("messages_rejected_total", reason="out_of_range") > rej0,
            "counted as out_of_range", gw.metrics().get("messages_rejected_total"))

    # the new product and device are usable at once
    p = g.device_client(gw, "p-001", product="plug")
    t.check(p.publish_wait(g.report_topic("p-001", "plug"),
                           g.report_payload("plug-1", {"on": True}), 1, 5) is not None,
            "the new device of the new product connects and reports")
    t.check(g.wait_until(lambda: gw.scalar(
        "SELECT count(*) FROM events WHERE msg_id='plug-1'") == 1, 5), "its report is stored")
    # the removed device can no longer connect
    r = g.RawClient(gw.mqtt_port)
    rc = r.connect_device(REMOVED)
    t.check(rc not in (0, None), "the removed device is refused (CONNACK %r)" % rc)
    r.close()

    # --- a broken reload changes nothing: product file broken, a device removed in the same go
    mark = gw.log_mark()
    bad_plug = copy.deepcopy(g.PLUG)
    bad_plug["properties"][0]["type"] = "boolean-ish"
    write_json(gw, "products/plug.json", bad_plug)
    write_json(gw, "products/thermo.json", thermo(100))
    write_json(gw, "devices.json", [d for d in new_devices if d["id"] != IDS[0]])
    os.kill(gw.pid, signal.SIGHUP)
    errs = g.wait_until(lambda: gw.find_log(mark, msg="reload refused: the running configuration "
                                                      "stays"), 10)
    t.check(errs, "broken reload: refused (logged)", gw.log_since(mark)[-2000:])
    t.check(any(e.get("file") == "products/plug.json" and
                e.get("path", "").startswith("properties[0]") for e in errs or []),
            "the error names the file and the JSON path", errs)
    t.check(c.ping(), "device d-0000 (removed in the broken config) still connected")
    t.check(c.publish_wait(g.report_topic(d0.id), g.report_payload("new-81", {"humidity": 81}),
                           4003, 5) is not None, "humidity 81 PUBACKed")
    time.sleep(0.2 * g.SLOW)
    t.check(gw.scalar("SELECT count(*) FROM events WHERE msg_id='new-81'") == 0,
            "the model stays the running one (max 50): humidity 81 still refused")
    write_json(gw, "products/plug.json", g.PLUG)

    # --- a changed secret closes that device's session ("reconfigured"); settings that need a
    # restart are reported and left alone
    devs_sec = copy.deepcopy(new_devices)
    for d in devs_sec:
        if d["id"] == RESECRET:
            d["secret"] = "a-new-secret"
    write_json(gw, "devices.json", devs_sec)
    write_json(gw, "products/thermo.json", thermo(50))
    cfg = copy.deepcopy(gw.cfg)
    cfg["loops"] = 3
    write_json(gw, "gateway.json", cfg)
    mark = gw.log_mark()
    os.kill(gw.pid, signal.SIGHUP)
    t.check(g.wait_until(lambda: gw.find_log(mark, msg="configuration applied"), 10),
            "secret change: applied", gw.log_since(mark)[-2000:])
    dsec = [d for d in devs if d.id == RESECRET][0]
    dsec.sock.setblocking(True)
    dsec.sock.settimeout(5 * g.SLOW)
    try:
        eof = dsec.sock.recv(4096) == b""
    except OSError:
        eof = True
    t.check(eof, "the device whose secret changed was disconnected")
    t.check(g.wait_until(lambda: gw.scalar(
        "SELECT name FROM events WHERE kind='offline' AND device=?", (RESECRET,)) ==
        "reconfigured", 5), "its offline reason is \"reconfigured\"")
    r = g.RawClient(gw.mqtt_port)
    t.check(r.connect_device(RESECRET) not in (0, None), "the old secret is refused")
    r.close()
    r = g.RawClient(gw.mqtt_port)
    t.eq(r.connect_device(RESECRET, secret="a-new-secret"), 0, "the new secret is accepted")
    r.close()
    t.check(gw.find_log(mark, msg="setting changed but needs a restart: left as it is",
                        key="loops"), "\"loops\" reported as needing a restart")
    t.eq(gw.threads(), threads0, "thread count unchanged by the reloads")
    t.check(c.ping(), "d-0000 still connected after three reloads")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE kind='offline' AND device NOT IN (?, ?)",
                   (REMOVED, RESECRET)), 0, "still no offline event for any other device")

    # --- POST /api/reload: the same as SIGHUP
    resp, why = api_reload(gw)
    if resp is None:
        t.info("POST /api/reload: no API server in this build (%s)" % (why,))
    else:
        import gwapi
        t.eq(gwapi.api(gw, "POST", "/api/reload", token=None).status, 401,
             "POST /api/reload without a token: 401")
        t.eq(gwapi.api(gw, "POST", "/api/reload", token="read").status, 403,
             "POST /api/reload with a read token: 403")
        t.eq(resp.status, 200, "POST /api/reload: 200")
        t.check(resp.json and "applied" in resp.json and "needs_restart" in resp.json,
                "POST /api/reload: the diff and needs_restart", resp.raw[:300])
        write_json(gw, "products/plug.json", bad_plug)
        resp, _ = api_reload(gw)
        t.eq(resp.status if resp else None, 400, "POST /api/reload with a broken product: 400")
        t.check(resp and resp.json and any(e.get("file") == "products/plug.json"
                                           for e in resp.json.get("errors", [])),
                "... with the errors (file, path, message)", resp and resp.raw[:300])
        write_json(gw, "products/plug.json", g.PLUG)
        # tokens follow a reload: the read token revoked, a new one added, no restart needed
        new_tok = "test-rotated-token-0123456789"
        cfg = copy.deepcopy(gw.cfg)
        cfg["admin"]["tokens"] = [tk for tk in gwapi.admin_tokens_cfg() if tk["role"] == "admin"]
        cfg["admin"]["tokens"].append({"name": "rotated", "role": "read",
                                       "sha256": gwapi.token_hash(new_tok)})
        write_json(gw, "gateway.json", cfg)
        resp, _ = api_reload(gw)
        t.check(resp and resp.status == 200 and "admin" not in resp.json.get("needs_restart", []),
                "a tokens-only change of admin: applied, not needs_restart", resp and resp.raw[:300])
        t.eq(gwapi.api(gw, "GET", "/api/status", token="read").status, 401,
             "the removed read token: 401 from the next request")
        r2 = gwapi.api(gw, "GET", "/api/token", token=new_tok)
        t.check(r2.status == 200 and r2.json == {"name": "rotated", "role": "read"},
                "the added token works at once (GET /api/token: its name and role)", r2.raw[:200])
        write_json(gw, "gateway.json", gw.cfg)
        api_reload(gw)

    c.sock.close()
    p.close()
    for d in devs:
        if not d.closed:
            d.sock.close()
    t.eq(gw.stop(), 0, "clean exit")


if __name__ == "__main__":
    t = g.Results()
    try:
        main(t)
    except Exception as e:  # noqa: BLE001
        t.crash(e)
    t.finish()

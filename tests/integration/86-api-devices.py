# Proves device changes over the management API with real clients: GET /api/products shapes; POST /api/devices adds a device that connects at once (its secret stored as a PBKDF2 hash), 2,000 in one request, an array with 2 bad entries adds nothing and names both paths, 409/400/404 with paths, read token 403; PATCH of the secret closes the old session ("reconfigured"), the new secret works and the old does not; DELETE closes the session ("removed") and keeps its events; devices.json is mode 0600 with hashes for MQTT and clear secrets for HMAC/DTLS-PSK products; an `iotgw --hash-secret` hash in devices.json accepts a real CONNECT; every change survives a restart.
import base64
import copy
import hashlib
import json
import os
import socket
import stat
import subprocess
import threading
import time

import binframes as b
import coaplib as c
import gwapi
import gwtest as g
import mqtt5lib as m5
import sensor_udp as su

BULK = 2000
HMAC_P = "sensor-hmac"
DTLS_P = "sensor-dtls"
HASH_PREFIX = "$pbkdf2-sha256$"
CLI_DEV, CLI_SECRET = "cli-001", "from-the-cli"


def py_hash(secret, iterations=1000):
    """The gateway's hash format made with Python's hashlib (the format is the contract)."""
    salt = os.urandom(16)
    h = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, iterations)
    return "$pbkdf2-sha256$%d$%s$%s" % (iterations, base64.b64encode(salt).decode(),
                                        base64.b64encode(h).decode())


def protocols_checks(t):
    """Hashed secrets where protocols only compare them: TCP login, UDP token, CoAP ?token=."""
    mtr, snr, cdev = "mtr00001", "snr00001", "c-001"
    devices = [{"id": mtr, "product": b.METER, "secret": py_hash(b.meter_secret(mtr))},
               {"id": snr, "product": su.PRODUCT, "secret": py_hash(su.token_of(snr))},
               {"id": cdev, "product": "sensor", "secret": py_hash(g.secret_of(cdev))}]
    cfg = {"adapters": {"mqtt": None, "coap": c.coap_adapter(),
                        "tcp": {"listeners": [{"address": g.HOST, "port": 0,
                                               "product": b.METER}]},
                        "udp": {"listeners": [{"address": g.HOST, "port": 0,
                                               "product": su.PRODUCT}]}}}
    gw = g.Gateway(products=[g.load_product(b.METER), g.load_product(su.PRODUCT), c.product()],
                   devices=devices, config=cfg)
    for secret, want, what in ((b.meter_secret(mtr), True, "right"), ("pw999999", False, "wrong")):
        d = b.Dev(g.adapter_port(gw, "tcp"))
        d.send(b.meter_login(mtr, secret))
        ack = d.recv_n(b.METER_ACK_LEN)
        t.eq(ack == b.meter_ack(1, 1), want, "TCP login, hashed secret, %s secret" % what)
        d.close()
    u = su.Client(g.adapter_port(gw, "udp"))
    ack, _ = u.request(su.report(snr, 1), 5)
    t.eq(ack, (snr, 1, 0), "UDP token against a hashed secret: acked")
    ack, _ = u.request(su.report(snr, 2, token="tokWRONG"), 1)
    t.eq(ack, None, "... a wrong token: no ack")
    cl = c.Client(c.coap_port(gw))
    r = c.report(cl, "sensor", cdev, 1, {"humidity": 1})
    t.eq(r and r.code_str, "2.04", "CoAP ?token= against a hashed secret: 2.04")
    r = c.report(cl, "sensor", cdev, 2, {"humidity": 1}, secret="wrong")
    t.eq(r and r.code_str, "4.01", "... a wrong token: 4.01")
    cl.close()
    t.eq(gw.stop(), 0, "clean exit")
    # a hash for a product keyed by the secret is a configuration error
    bad = g.Gateway(products=[g.THERMO, hmac_product()], start=False, devices=[
        {"id": "hmac0001", "product": HMAC_P, "secret": py_hash("k")}],
        config={"adapters": {"udp": {"listeners": [{"address": g.HOST, "port": 0,
                                                     "product": HMAC_P}]}}})
    r = subprocess.run([g.BIN, "-c", bad.cfg_path, "--check-config"], capture_output=True,
                       text=True, timeout=30)
    t.check(r.returncode != 0 and "[0].secret" in r.stdout + r.stderr and
            "in clear" in r.stdout + r.stderr,
            "--check-config refuses a hash for an HMAC product at [0].secret",
            r.stdout + r.stderr)


def hmac_product():
    p = copy.deepcopy(g.load_product("sensor-udp"))
    p["id"] = HMAC_P
    fr = p["frame"]
    fr["header"] = [h for h in fr["header"] if h.get("role") != "secret"]
    fr["auth"] = {"algorithm": "hmac-sha256", "from": 0, "to": -12, "at": -12, "size": 8}
    return p


def devices_file(gw):
    with open(gw.path("devices.json")) as f:
        return {d["id"]: d for d in json.load(f)}


def connack(gw, dev, secret, product="thermo"):
    cl = g.RawClient(gw.mqtt_port)
    try:
        return cl.connect_device(dev, product, secret)
    finally:
        cl.close()


def offline_reason(gw, dev):
    return gw.scalar("SELECT name FROM events WHERE kind='offline' AND device=? "
                     "ORDER BY id DESC LIMIT 1", (dev,))


def products_checks(t, gw):
    r = gwapi.api(gw, "GET", "/api/products", token="read")
    t.eq(r.status, 200, "GET /api/products: 200")
    by_id = {p["id"]: p for p in (r.json or {}).get("products", [])}
    t.eq(sorted(by_id), sorted(["thermo", HMAC_P, DTLS_P]), "... lists every product")
    th = by_id.get("thermo", {})
    t.eq((th.get("protocol"), th.get("codec"), th.get("properties"), th.get("functions")),
         ("mqtt", "json", len(g.THERMO["properties"]), 1), "... thermo: protocol, codec, counts")
    t.eq(th.get("devices"), 6, "... thermo's device count")
    t.eq([by_id.get(p, {}).get("secret_in_clear") for p in ("thermo", HMAC_P, DTLS_P)],
         [False, True, True], "... secret_in_clear: MQTT hashed, HMAC and DTLS-PSK in clear")
    r = gwapi.api(gw, "GET", "/api/products/thermo", token="read")
    t.eq(r.status, 200, "GET /api/products/thermo: 200")
    t.check(r.json == g.THERMO, "... the product's document as configured", r.raw[:200])
    r = gwapi.api(gw, "GET", "/api/products/" + HMAC_P)
    t.eq((r.json or {}).get("frame", {}).get("auth", {}).get("algorithm"), "hmac-sha256",
         "... a binary product's frame layout included")
    r = gwapi.api(gw, "GET", "/api/products/nope")
    t.eq((r.status, (r.json or {}).get("error")), (404, "not_found"), "unknown product: 404")
    t.eq(gwapi.api(gw, "GET", "/api/products", token=None).status, 401, "no token: 401")


def add_one(t, gw):
    body = {"id": "api-001", "product": "thermo", "secret": "sec-1", "name": "first"}
    t.eq(gwapi.api(gw, "POST", "/api/devices", body, token="read").status, 403,
         "POST with a read token: 403")
    t.eq(gwapi.api(gw, "POST", "/api/devices", body, token="wrong-token").status, 401,
         "POST with a wrong token: 401")
    t0 = time.monotonic()
    r = gwapi.api(gw, "POST", "/api/devices", body)
    t.eq(r.status, 201, "POST one device: 201")
    t.eq(r.json, {"id": "api-001", "product": "thermo", "name": "first",
                  "secret_stored": "hash"}, "... answers the device, never its secret")
    cl = g.RawClient(gw.mqtt_port)
    t.eq(cl.connect_device("api-001", "thermo", "sec-1"), 0, "... it connects at once")
    t.info("POST to CONNACK: %.1f ms" % ((time.monotonic() - t0) * 1000))
    ack = cl.publish_wait(g.report_topic("api-001"), g.report_payload("m1", {"humidity": 40}), 7)
    t.check(ack is not None, "... and its QoS 1 report is acknowledged")
    t.check(devices_file(gw)["api-001"]["secret"].startswith(HASH_PREFIX),
            "devices.json holds its secret as a hash")
    return cl


def errors_checks(t, gw):
    r = gwapi.api(gw, "POST", "/api/devices", {"id": "api-001", "product": "thermo",
                                               "secret": "x"})
    t.eq((r.status, (r.json or {}).get("path")), (409, "id"), "an existing id: 409 at id")
    r = gwapi.api(gw, "POST", "/api/devices", {"id": "n1", "product": "nope", "secret": "x",
                                               "color": "red"})
    paths = sorted(e["path"] for e in (r.json or {}).get("errors", []))
    t.eq((r.status, paths), (400, ["color", "product"]),
         "unknown product and unknown field: 400 with both paths")
    r = gwapi.api(gw, "POST", "/api/devices", {"id": "bad id!", "product": "thermo",
                                               "secret": 5})
    paths = sorted(e["path"] for e in (r.json or {}).get("errors", []))
    t.eq((r.status, paths), (400, ["id", "secret"]), "bad id and a non-string secret: 400")
    r = gwapi.api(gw, "POST", "/api/devices",
                  {"id": "h1", "product": HMAC_P, "secret": gw.cli_hash})
    t.eq((r.status, (r.json or {}).get("path")), (400, "secret"),
         "a hash for an HMAC product: 400 at secret")
    r = gwapi.api(gw, "POST", "/api/devices", [{"id": "d1", "product": "thermo", "secret": "a"},
                                               {"id": "d1", "product": "thermo", "secret": "b"}])
    t.eq((r.status, (r.json or {}).get("path")), (409, "[1].id"),
         "the same id twice in an array: 409 at [1].id")
    r = gwapi.api(gw, "POST", "/api/devices", raw_body=b'{"id": "x",',
                  headers={"Content-Type": "application/json"})
    t.eq(r.status, 400, "malformed JSON: 400")
    # clear secrets stay clear for products that need the key itself
    r = gwapi.api(gw, "POST", "/api/devices", [
        {"id": "hmac0009", "product": HMAC_P, "secret": "hmac-key-9"},
        {"id": "c-009", "product": DTLS_P, "secret": "psk-key-9"}])
    t.eq((r.status, r.json), (201, {"created": 2}), "HMAC and DTLS-PSK devices added")
    f = devices_file(gw)
    t.eq((f.get("hmac0009", {}).get("secret"), f.get("c-009", {}).get("secret")),
         ("hmac-key-9", "psk-key-9"), "... their secrets stored in clear")


def bulk_checks(t, gw):
    ids = ["bulk-%05d" % i for i in range(BULK)]
    bad = [{"id": i, "product": "thermo", "secret": "s-" + i} for i in ids[:10]]
    bad[3]["product"] = "nope"
    del bad[7]["secret"]
    before = devices_file(gw)
    r = gwapi.api(gw, "POST", "/api/devices", bad)
    paths = sorted(e["path"] for e in (r.json or {}).get("errors", []))
    t.eq((r.status, paths), (400, ["[3].product", "[7].secret"]),
         "an array with 2 bad entries: 400 naming both paths")
    t.eq(devices_file(gw), before, "... devices.json unchanged")
    t.check(connack(gw, ids[0], "s-" + ids[0]) != 0, "... its good entries were not added")

    body = [{"id": i, "product": "thermo", "secret": "s-" + i} for i in ids]
    # the main loop keeps answering while the secrets are hashed (a slice per loop turn)
    stop, lat = threading.Event(), []

    def prober():
        while not stop.is_set():
            p0 = time.monotonic()
            gwapi.api(gw, "GET", "/api/products/thermo", token="read")
            lat.append(time.monotonic() - p0)
            time.sleep(0.01)
    th = threading.Thread(target=prober)
    th.start()
    t0 = time.monotonic()
    try:
        r = gwapi.api(gw, "POST", "/api/devices", body, timeout=60 * g.SLOW)
    finally:
        dt = time.monotonic() - t0
        stop.set()
        th.join()
    t.info("GETs during the bulk POST: %d, slowest %.1f ms" % (len(lat), max(lat) * 1000))
    # a loop held for the whole bulk answers 1-2 GETs, the slowest as slow as the POST itself
    t.check(len(lat) >= 5 and max(lat) < dt / 2,
            "the API answers other requests during the bulk POST (>= 5, each < half its time)",
            "%d GETs, slowest %.3f s, POST %.3f s" % (len(lat), max(lat), dt))
    t.eq((r.status, r.json), (201, {"created": BULK}), "%d devices in one request: 201" % BULK)
    t.info("bulk POST of %d devices (%d bytes): %.0f ms" % (BULK, len(json.dumps(body)),
                                                            dt * 1000))
    t.eq(sum(1 for i in ids if i in devices_file(gw)), BULK, "... all in devices.json")
    t.eq([connack(gw, i, "s-" + i) for i in (ids[0], ids[BULK // 2], ids[-1])], [0, 0, 0],
         "... first, middle and last connect at once")
    t.eq(gwapi.api(gw, "GET", "/api/products/thermo", token="read").status, 200,
         "the API answers right after")
    gone_checks(t, gw)
    return ids


def gone_checks(t, gw):
    """A client that sends a bulk POST and goes away: the change is all or nothing, the gateway
    carries on."""
    ids = ["gone-%04d" % i for i in range(3000)]  # ~0.7 s of hashing: usually cancelled
    data = json.dumps([{"id": i, "product": "thermo", "secret": "s"} for i in ids]).encode()
    s = socket.create_connection((g.HOST, gw.admin_port), timeout=5)
    s.sendall(b"POST /api/devices HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
              b"Content-Type: application/json\r\nContent-Length: %d\r\n\r\n"
              % (gwapi.ADMIN_TOKEN.encode(), len(data)) + data)
    time.sleep(0.1)
    s.close()
    ok = g.wait_until(lambda: gwapi.api(gw, "GET", "/api/products/thermo").status == 200, 10)
    t.check(ok, "a client gone during a bulk POST: the API still answers")
    def count():
        f = devices_file(gw)
        return sum(1 for i in ids if i in f)
    g.wait_until(lambda: count() == len(ids), 3)  # finished, or cancelled: then none
    have = count()
    t.check(have in (0, len(ids)), "... its change is all or nothing", "%d of %d" % (have, len(ids)))
    t.info("bulk POST whose client left: %d of %d added" % (have, len(ids)))


def patch_checks(t, gw, cl):
    r = gwapi.api(gw, "PATCH", "/api/devices/api-001", {"name": "renamed"})
    t.eq((r.status, (r.json or {}).get("name")), (200, "renamed"), "PATCH name: 200")
    t.check(cl.ping(2), "... the session stays (a name is not a credential)")
    t.eq(gwapi.api(gw, "PATCH", "/api/devices/api-001", {"colour": 1}).json.get("path"),
         "colour", "PATCH an unknown field: 400 at its path")
    t.eq(gwapi.api(gw, "PATCH", "/api/devices/nope", {"name": "x"}).status, 404,
         "PATCH an unknown device: 404")
    t.eq(gwapi.api(gw, "PATCH", "/api/devices/api-001", {"name": "x"}, token="read").status,
         403, "PATCH with a read token: 403")
    r = gwapi.api(gw, "PATCH", "/api/devices/api-001", {"secret": "sec-2"})
    t.eq((r.status, (r.json or {}).get("secret_stored")), (200, "hash"), "PATCH secret: 200")
    t.check(cl.wait_closed(5), "... the old session is closed")
    t.check(g.wait_until(lambda: offline_reason(gw, "api-001") == "reconfigured", 10),
            "... offline reason \"reconfigured\"", offline_reason(gw, "api-001"))
    t.check(connack(gw, "api-001", "sec-1") != 0, "... the old secret is refused")
    t.eq(connack(gw, "api-001", "sec-2"), 0, "... the new secret connects")
    c2 = g.device_client(gw, "api-001", secret="sec-2")
    stored = devices_file(gw)["api-001"]["secret"]
    r = gwapi.api(gw, "PATCH", "/api/devices/api-001", {"secret": "sec-2"})
    t.eq(r.status, 200, "PATCH with the secret it already has: 200")
    t.check(c2.ping(2), "... changes nothing: the session stays")
    t.eq(devices_file(gw)["api-001"]["secret"], stored, "... and the stored hash stays")
    c2.close()


def delete_checks(t, gw, ids):
    dev = ids[1]
    cl = g.device_client(gw, dev, secret="s-" + dev)
    v5dev = ids[2]  # an MQTT 5 device is told why: DISCONNECT 0x98 (administrative action)
    c5 = m5.client5(gw, v5dev, secret="s-" + v5dev)
    t.check(cl.publish_wait(g.report_topic(dev), g.report_payload("r1", {"humidity": 5}), 3)
            is not None, "a bulk device reports")
    t.eq(gwapi.api(gw, "DELETE", "/api/devices/" + dev, token="read").status, 403,
         "DELETE with a read token: 403")
    r = gwapi.api(gw, "DELETE", "/api/devices/" + dev)
    t.eq(r.status, 204, "DELETE: 204")
    t.check(cl.wait_closed(5), "... its session is closed")
    t.eq(gwapi.api(gw, "DELETE", "/api/devices/" + v5dev).status, 204, "DELETE an MQTT 5 device")
    d = c5.next_disconnect(5)
    t.eq(d and d[0], 0x98, "... it gets DISCONNECT 0x98 (administrative action) before the close")
    c5.close()
    t.check(g.wait_until(lambda: offline_reason(gw, dev) == "removed", 10),
            "... offline reason \"removed\"", offline_reason(gw, dev))
    t.check(gw.scalar("SELECT count(*) FROM events WHERE device=? AND kind<>'offline'", (dev,))
            >= 2, "... its stored events stay")
    t.check(connack(gw, dev, "s-" + dev) != 0, "... it can no longer connect")
    t.eq(gwapi.api(gw, "DELETE", "/api/devices/" + dev).status, 404, "DELETE again: 404")
    t.check(dev not in devices_file(gw), "... gone from devices.json")
    return dev


def main(t):
    cli = subprocess.run([g.BIN, "--hash-secret"], input=CLI_SECRET + "\n", capture_output=True,
                         text=True, timeout=30)
    cli_hash = cli.stdout.strip()
    t.check(cli.returncode == 0 and cli_hash.startswith(HASH_PREFIX), "iotgw --hash-secret",
            cli.stdout + cli.stderr)
    devices = g.make_devices(g.thermo_ids(5)) + [
        {"id": CLI_DEV, "product": "thermo", "secret": cli_hash},
        {"id": "hmac0001", "product": HMAC_P, "secret": "hmac-key-1"},
        {"id": "c-001", "product": DTLS_P, "secret": "psk-key-1"}]
    cfg = {"adapters": {"udp": {"listeners": [{"address": g.HOST, "port": 0,
                                               "product": HMAC_P}]},
                        "coap": c.coap_adapter(dtls=True)},
           "storage": {"batch_ms": 0}}
    gw = g.Gateway(products=[g.THERMO, hmac_product(), c.product(DTLS_P)], devices=devices,
                   config=cfg)
    gw.cli_hash = cli_hash
    t.eq(connack(gw, CLI_DEV, CLI_SECRET), 0, "a --hash-secret hash in devices.json: CONNECT ok")
    t.check(connack(gw, CLI_DEV, CLI_SECRET + "x") != 0, "... a wrong secret refused")

    products_checks(t, gw)
    protocols_checks(t)
    cl = add_one(t, gw)
    errors_checks(t, gw)
    ids = bulk_checks(t, gw)
    patch_checks(t, gw, cl)
    removed = delete_checks(t, gw, ids)

    mode = stat.S_IMODE(os.stat(gw.path("devices.json")).st_mode)
    t.eq(oct(mode), oct(0o600), "devices.json is mode 0600")
    t.check(not any(n.startswith("devices.json.") for n in os.listdir(gw.dir)),
            "no temporary file left")

    t.eq(gw.stop(), 0, "clean exit")
    gw.start()
    t.eq(connack(gw, "api-001", "sec-2"), 0, "after a restart: the patched secret connects")
    t.check(connack(gw, "api-001", "sec-1") != 0, "... the old one does not")
    t.eq(connack(gw, ids[-1], "s-" + ids[-1]), 0, "... a bulk device connects")
    t.check(connack(gw, removed, "s-" + removed) != 0, "... the deleted one does not")
    r = gwapi.api(gw, "GET", "/api/products", token="read")
    counts = {p["id"]: p["devices"] for p in (r.json or {}).get("products", [])}
    gone = sum(1 for d in devices_file(gw) if d.startswith("gone-"))
    t.eq(counts, {"thermo": 5 + 1 + 1 + BULK - 2 + gone, HMAC_P: 2, DTLS_P: 2},
         "... product device counts as changed")
    t.eq(gw.stop(), 0, "clean exit after the restart")


if __name__ == "__main__":
    g.run(main)

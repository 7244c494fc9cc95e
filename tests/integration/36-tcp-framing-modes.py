# Proves the fixed and delimiter framing modes and the sum8 / xor / crc16-ccitt / crc32 checks through the real gateway over TCP: products built here (device id in every frame, no login): values stored, a frame sent one byte at a time, ten frames in one write, a bad check counted and never acked while the session goes on; and a fixed-frame product with a 4-byte HMAC-SHA256 before its sum8: the MAC checked on the first and on every later frame, acks MAC'd.
import hashlib
import hmac
import json
import struct
import zlib

import binframes as b
import gwtest as g

FIXED_CHECKS = {"sum8": 1, "crc16-ccitt": 2, "crc32": 4}
PROPS = [{"id": "temp", "type": "int", "min": -1000, "max": 1000, "access": "r"},
         {"id": "level", "type": "int", "min": 0, "max": 255, "access": "r"}]


def fixed_product(algo):
    """AA | type u8 | dev string[8] | seq u16 | temp i16 | level u8 | check (big-endian)."""
    w = FIXED_CHECKS[algo]
    return {
        "id": "fixed-" + algo, "protocol": "tcp", "codec": "binary",
        "auth": {"mode": "device-secret"}, "properties": PROPS,
        "frame": {
            "endian": "big", "max_frame": 15 + w,
            "framing": {"mode": "fixed", "length": 15 + w},
            "header": [{"name": "magic", "offset": 0, "type": "u8", "value": "0xAA"},
                       {"name": "type", "type": "u8"},
                       {"name": "dev", "type": "string", "size": 8, "role": "device_id"},
                       {"name": "seq", "type": "u16", "role": "seq"}],
            "discriminator": "type",
            "check": {"algorithm": algo},
            "messages": [{"kind": "report", "match": 1, "fields": [
                {"name": "temp", "type": "i16", "property": "temp"},
                {"name": "level", "type": "u8", "property": "level"}]}],
            "ack": {"match": "0x81", "fields": [{"name": "result", "type": "u8", "role": "result"}]},
        },
    }


def delim_product():
    """dev string[8] | ':' | type 'R' | seq u16 | temp i16 | level u8 | xor, then CR LF."""
    return {
        "id": "delim-xor", "protocol": "tcp", "codec": "binary",
        "auth": {"mode": "device-secret"}, "properties": PROPS,
        "frame": {
            "endian": "big", "max_frame": 64,
            "framing": {"mode": "delimiter", "end": "0D0A"},
            "header": [{"name": "dev", "offset": 0, "type": "string", "size": 8,
                        "role": "device_id"},
                       {"name": "colon", "type": "u8", "value": "0x3A"},
                       {"name": "type", "type": "u8"},
                       {"name": "seq", "type": "u16", "role": "seq"}],
            "discriminator": "type",
            "check": {"algorithm": "xor"},
            "messages": [{"kind": "report", "match": "0x52", "fields": [
                {"name": "temp", "type": "i16", "property": "temp"},
                {"name": "level", "type": "u8", "property": "level"}]}],
            "ack": {"match": "0x41", "fields": [{"name": "result", "type": "u8", "role": "result"}]},
        },
    }


def crc16_ccitt(data):
    c = 0xFFFF
    for x in data:
        c ^= x << 8
        for _ in range(8):
            c = ((c << 1) ^ 0x1021) & 0xFFFF if c & 0x8000 else (c << 1) & 0xFFFF
    return c


def check_bytes(algo, data):
    if algo == "sum8":
        return bytes([sum(data) & 0xFF])
    if algo == "xor":
        x = 0
        for c in data:
            x ^= c
        return bytes([x])
    if algo == "crc16-ccitt":
        return struct.pack(">H", crc16_ccitt(data))
    return struct.pack(">I", zlib.crc32(data))


def fixed_frame(algo, ftype, dev, seq, body, ok=True):
    head = bytes([0xAA, ftype]) + b.pad8(dev) + struct.pack(">H", seq) + body
    ck = bytearray(check_bytes(algo, head))
    if not ok:
        ck[-1] ^= 0xFF
    return head + bytes(ck)


def fixed_report(algo, dev, seq, temp, level, ok=True):
    return fixed_frame(algo, 1, dev, seq, struct.pack(">hB", temp, level), ok)


def fixed_ack(algo, dev, seq):
    return fixed_frame(algo, 0x81, dev, seq, b"\0\0\0")  # result 0, then zero padding to 16+


def delim_report(dev, seq, temp, level, ok=True):
    body = b.pad8(dev) + b":R" + struct.pack(">HhB", seq, temp, level)
    ck = check_bytes("xor", body)[0] ^ (0 if ok else 0xFF)
    body += bytes([ck])
    assert b"\r\n" not in body and not body.endswith(b"\r"), "pick other values"
    return body + b"\r\n"


def delim_ack(dev, seq):
    body = b.pad8(dev) + b":A" + struct.pack(">HB", seq, 0)
    return body + check_bytes("xor", body) + b"\r\n"


def stored(gw, dev, prop):
    v = gw.scalar("SELECT value FROM property_state WHERE device=? AND property=?", (dev, prop))
    return json.loads(v) if v is not None else None


def n_reports(gw, dev):
    return gw.scalar("SELECT count(*) FROM events WHERE kind='property' AND device=?", (dev,))


def bad_check(gw):
    return gw.metric("tcp_bad_frames_total", reason="bad_check")


def exercise(t, gw, port, name, dev, report, ack, ack_len):
    d = b.Dev(port)
    # values stored
    d.send(report(dev, 1, -123, 7))
    t.eq(d.recv_n(ack_len), ack(dev, 1), name + ": report acked")
    t.eq(stored(gw, dev, "temp"), -123, name + ": temp -123 stored")
    t.eq(stored(gw, dev, "level"), 7, name + ": level 7 stored")
    # one byte at a time
    d.dribble(report(dev, 2, 456, 9))
    t.eq(d.recv_n(ack_len), ack(dev, 2), name + ": one byte at a time: acked")
    t.eq(stored(gw, dev, "temp"), 456, name + ": its value stored")
    # ten frames in one write
    d.send(b"".join(report(dev, 10 + i, 100 + i, i) for i in range(10)))
    got = d.recv_n(10 * ack_len)
    t.eq(got, b"".join(ack(dev, 10 + i) for i in range(10)), name + ": ten frames, ten acks in order")
    t.eq(n_reports(gw, dev), 12, name + ": twelve reports stored")
    t.eq(stored(gw, dev, "temp"), 109, name + ": the last of the ten is the current value")
    # a bad check: counted, no ack, the session goes on
    before = bad_check(gw)
    d.send(report(dev, 30, 1, 1, ok=False))
    t.check(d.quiet_for(0.4), name + ": bad check: no ack, connection stays open")
    t.eq(bad_check(gw) - before, 1.0, name + ": tcp_bad_frames_total{reason=bad_check} +1")
    d.send(report(dev, 31, 2, 2))
    t.eq(d.recv_n(ack_len), ack(dev, 31), name + ": the next good frame is acked")
    t.eq(n_reports(gw, dev), 13, name + ": the bad one was not stored")
    d.close()


def hmac_product():
    """fixed-sum8 with a 4-byte HMAC-SHA256 of bytes 0..15 at 15, the sum8 after it covering it."""
    p = fixed_product("sum8")
    p["id"] = "fixed-hmac"
    p["frame"]["max_frame"] = p["frame"]["framing"]["length"] = 20
    p["frame"]["auth"] = {"algorithm": "hmac-sha256", "size": 4}
    return p


def hmac_frame(ftype, dev, seq, body, key):
    head = bytes([0xAA, ftype]) + b.pad8(dev) + struct.pack(">H", seq) + body
    head += hmac.new(key.encode(), head, hashlib.sha256).digest()[:4]
    return head + check_bytes("sum8", head)


def hmac_part(t, gw, port, dev, key):
    rep = lambda seq, temp, k=key: hmac_frame(1, dev, seq, struct.pack(">hB", temp, 1), k)
    ack = hmac_frame(0x81, dev, 1, b"\0\0\0", key)
    # a first frame with a wrong MAC: login refused, closed
    d = b.Dev(port)
    d.send(rep(1, 5, "not-the-key"))
    t.check(d.wait_closed(), "hmac: a first frame with a wrong MAC closes the connection")
    t.eq(gw.metric("tcp_login_failures_total", reason="bad_secret"), 1.0,
         "hmac: counted as tcp_login_failures_total{reason=bad_secret}")
    # the right MAC: stored, acked with a MAC made with the device's secret
    d = b.Dev(port)
    d.send(rep(1, 77))
    t.eq(d.recv_n(20), ack, "hmac: report acked, the ack's MAC made with the device's secret")
    t.eq(stored(gw, dev, "temp"), 77, "hmac: value stored")
    # a later frame with a wrong MAC: closed, counted
    d.send(rep(2, 78, "not-the-key"))
    t.check(d.wait_closed(), "hmac: a later frame with a wrong MAC closes the connection")
    t.eq(gw.metric("tcp_bad_frames_total", reason="bad_auth"), 1.0,
         "hmac: tcp_bad_frames_total{reason=bad_auth} 1")
    t.eq(stored(gw, dev, "temp"), 77, "hmac: the forged value not stored")


def main(t):
    products = [fixed_product(a) for a in FIXED_CHECKS] + [delim_product(), hmac_product()]
    # Port 0 everywhere: each listener's bound port comes back on --ready-fd with its product.
    short = {"fixed-sum8": "fxsum8", "fixed-crc16-ccitt": "fxccitt", "fixed-crc32": "fxcrc32",
             "delim-xor": "dlxor", "fixed-hmac": "fxhmac"}  # 8 bytes at most: the device id field
    devices = [{"id": short[p["id"]], "product": p["id"], "secret": "s-" + p["id"]}
               for p in products]
    dev_of = {d["product"]: d["id"] for d in devices}
    cfg = {"adapters": {"mqtt": None, "tcp": {"listeners": [
        {"address": g.HOST, "port": 0, "product": p["id"]} for p in products]}}}
    gw = g.Gateway(products=products, devices=devices, config=cfg)
    ports = gw.product_ports
    t.check(sorted(ports) == sorted(p["id"] for p in products),
            "--ready-fd names every listener's product", ports)
    for algo, w in FIXED_CHECKS.items():
        pid = "fixed-" + algo
        exercise(t, gw, ports[pid], pid, dev_of[pid],
                 lambda dev, seq, temp, level, ok=True, a=algo:
                     fixed_report(a, dev, seq, temp, level, ok),
                 lambda dev, seq, a=algo: fixed_ack(a, dev, seq), 15 + w)
    exercise(t, gw, ports["delim-xor"], "delimiter 0D0A + xor", dev_of["delim-xor"],
             delim_report, delim_ack, 8 + 2 + 2 + 1 + 1 + 2)
    hmac_part(t, gw, ports["fixed-hmac"], "fxhmac", "s-fixed-hmac")
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")


if __name__ == "__main__":
    g.run(main)

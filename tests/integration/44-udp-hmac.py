# Proves HMAC-authenticated UDP datagrams through the real gateway: a product (built here, not
# shipped) with the device id in every frame and a truncated 8-byte HMAC-SHA256 before the CRC-32;
# a datagram with the right MAC is stored and acked and the ack's MAC verifies with the device's
# secret (Python hmac/hashlib); a wrong MAC and a MAC made with another device's secret are dropped
# as bad_auth; a valid datagram replayed from another address is dropped by the seq's replay
# window and the device's address stays.
import copy
import hashlib
import hmac
import struct
import zlib

import gwtest as g
import sensor_udp as su

PRODUCT = "sensor-hmac"
SECRETS = {"hmac0001": "first-device-key", "hmac0002": "second-device-key"}
DEV, OTHER = "hmac0001", "hmac0002"
MAC_SIZE = 8


def product():
    p = copy.deepcopy(g.load_product("sensor-udp"))
    p["id"] = PRODUCT
    p["name"] = "Climate sensor, HMAC-SHA256 per datagram"
    fr = p["frame"]
    fr["header"] = [h for h in fr["header"] if h.get("role") != "secret"]  # no token in clear
    fr["auth"] = {"algorithm": "hmac-sha256", "from": 0, "to": -12, "at": -12, "size": MAC_SIZE}
    return p


def mac_of(secret, data):
    return hmac.new(secret.encode(), data, hashlib.sha256).digest()[:MAC_SIZE]


def frame(ftype, dev, seq, body=b"", secret=None, mac=None):
    """A5 | 01 | type | device[8] | seq u16 LE | body | HMAC[8] | crc32 BE over all before."""
    head = bytes([0xA5, 0x01, ftype]) + su.pad8(dev) + struct.pack("<H", seq) + body
    m = mac if mac is not None else mac_of(secret or SECRETS[dev], head)
    return su.with_crc(head + m)


def report(dev, seq, temperature=21.5, **kw):
    body = struct.pack("<hHBBH", int(round(temperature * 100)), 4520, 87, 1, 60)
    return frame(su.REPORT, dev, seq, body, **kw)


def heartbeat(dev, seq, **kw):
    return frame(su.HEARTBEAT, dev, seq, **kw)


def parse_ack(b, secret):
    """(device, seq, result) of an ack whose CRC and MAC (with secret) verify, else None."""
    if b is None or len(b) != 3 + 8 + 2 + 1 + MAC_SIZE + 4 or b[:3] != b"\xa5\x01\x81":
        return None
    if struct.unpack(">I", b[-4:])[0] != zlib.crc32(b[:-4]):
        return None
    if not hmac.compare_digest(b[-12:-4], mac_of(secret, b[:-12])):
        return None
    return b[3:11].rstrip(b"\0").decode(), struct.unpack("<H", b[11:13])[0], b[13]


def dropped(gw, reason):
    return gw.metric("udp_dropped_total", reason=reason)


def main(t):
    cfg = {"adapters": {"udp": {"listeners": [{"address": g.HOST, "port": 0,
                                               "product": PRODUCT}]}},
           "storage": {"batch_ms": 0}}
    devices = [{"id": d, "product": PRODUCT, "secret": s} for d, s in SECRETS.items()]
    gw = g.Gateway(products=[g.THERMO, product()], devices=devices + g.make_devices(["t-001"]),
                   config=cfg, loops=1)
    port = su.udp_port(gw)
    a = su.Client(port)

    # the right MAC: stored and acked; the ack's MAC verifies with the device's secret
    a.send(report(DEV, 1))
    raw = a.recv(5)
    t.check(raw is not None, "valid MAC: an ack comes back")
    t.eq(parse_ack(raw, SECRETS[DEV]), (DEV, 1, 0), "the ack's CRC and HMAC verify (Python)")
    t.eq(parse_ack(raw, SECRETS[OTHER]), None, "the ack's MAC is not the other device's")
    t.eq(gw.query("SELECT device FROM events WHERE kind='property'"), [(DEV,)],
         "one report stored for the device")
    payload = gw.scalar("SELECT payload FROM events WHERE kind='property'") or ""
    t.check('"temperature":21.5' in payload, "the stored report carries the values", payload)
    a.send(heartbeat(DEV, 2))
    t.eq(parse_ack(a.recv(5), SECRETS[DEV]), (DEV, 2, 0), "heartbeat acked with a valid MAC")

    # a wrong MAC (one bit flipped, CRC recomputed): dropped as bad_auth, nothing stored
    before = dropped(gw, "bad_auth")
    good = report(DEV, 3, temperature=30.0)
    head = good[:-12]
    bad_mac = bytes([good[-12] ^ 0x01]) + good[-11:-4]
    a.send(su.with_crc(head + bad_mac))
    t.check(a.quiet(0.8), "wrong MAC: no ack")
    # a MAC computed with the other device's secret
    a.send(report(DEV, 4, temperature=31.0, secret=SECRETS[OTHER]))
    t.check(a.quiet(0.8), "MAC keyed with another device's secret: no ack")
    # a body changed after the MAC was computed (the CRC still fixed up)
    tampered = bytearray(report(DEV, 5, temperature=32.0))
    tampered[13] ^= 0x10
    a.send(su.with_crc(bytes(tampered[:-4])))
    t.check(a.quiet(0.8), "tampered body: no ack")
    t.eq(dropped(gw, "bad_auth") - before, 3.0, "udp_dropped_total{reason=bad_auth} +3")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE kind='property'"), 1,
         "none of them stored")
    # a bad CRC is a bad check, counted before any MAC
    before_ck = dropped(gw, "bad_check")
    a.send(good[:-1] + bytes([good[-1] ^ 0xFF]))
    t.check(a.quiet(0.5), "bad CRC: no ack")
    t.eq(dropped(gw, "bad_check") - before_ck, 1.0, "bad CRC counted as bad_check")

    # the other device with its own secret works
    b = su.Client(port)
    b.send(report(OTHER, 1))
    t.eq(parse_ack(b.recv(5), SECRETS[OTHER]), (OTHER, 1, 0), "second device acked")

    # replay: a datagram with a valid MAC sent again from another address proves who made it,
    # not when; the layout's seq gives the device a replay window (adapters.udp.replay_window_s),
    # so the copy is dropped as a replay, stored once, and the device's address stays at A
    captured = report(DEV, 6, temperature=22.0)
    a.send(captured)
    t.eq(parse_ack(a.recv(5), SECRETS[DEV]), (DEV, 6, 0), "original acked at A")
    before_rp = dropped(gw, "replay")
    r = su.Client(port)
    r.send(captured)
    t.check(r.quiet(0.8), "replayed from another address: no ack there")
    t.check(a.quiet(0.3), "and nothing at A")
    t.eq(dropped(gw, "replay") - before_rp, 1.0, "udp_dropped_total{reason=replay} +1")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE device=? AND msg_id='6'", (DEV,)), 1,
         "the replay is not stored again")
    a.send(heartbeat(DEV, 7))
    t.eq(parse_ack(a.recv(5), SECRETS[DEV]), (DEV, 7, 0), "the device's next datagram: acked at A")

    t.eq(gw.stop(), 0, "SIGTERM: exit 0")


if __name__ == "__main__":
    g.run(main)

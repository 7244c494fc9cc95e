# sensor_udp.py: datagrams of the sensor-udp product (docs/BINARY-CODEC.md section 9), built in
# Python from the layout, a UDP client socket, and a gateway with the UDP adapter serving it.
import socket
import struct
import time
import zlib

import gwtest as g

PRODUCT = "sensor-udp"
REPORT, HEARTBEAT, EVENT, ACK = 0x01, 0x02, 0x03, 0x81
MAX_FRAME = 128


def dev_ids(n):
    return ["snr%05d" % i for i in range(1, n + 1)]


def token_of(dev):
    """The device's secret (snr00001 has the one of the doc's example)."""
    return "tok12345" if dev == "snr00001" else "tok" + dev[-5:]


def devices(ids):
    return [{"id": d, "product": PRODUCT, "secret": token_of(d)} for d in ids]


def pad8(s):
    b = s.encode() if isinstance(s, str) else s
    return (b + b"\0" * 8)[:8]


def frame(ftype, dev, token, seq, body=b"", crc_ok=True):
    """A5 | 01 | type | device[8] | token[8] | seq u16 LE | body | crc32 BE over all before."""
    head = bytes([0xA5, 0x01, ftype]) + pad8(dev) + pad8(token) + struct.pack("<H", seq) + body
    crc = zlib.crc32(head) ^ (0 if crc_ok else 0x1)
    return head + struct.pack(">I", crc)


def with_crc(data):
    """data followed by its CRC-32 (big-endian), as the layout's check wants."""
    return data + struct.pack(">I", zlib.crc32(data))


def report(dev, seq, temperature=21.5, humidity=45.2, battery=87, door=True, interval=60,
           token=None, **kw):
    body = struct.pack("<hHBBH", int(round(temperature * 100)), int(round(humidity * 100)),
                       battery, 1 if door else 0, interval)
    return frame(REPORT, dev, token_of(dev) if token is None else token, seq, body, **kw)


def heartbeat(dev, seq, token=None):
    return frame(HEARTBEAT, dev, token_of(dev) if token is None else token, seq)


def event(dev, seq, level, token=None):
    return frame(EVENT, dev, token_of(dev) if token is None else token, seq, bytes([level]))


def parse_ack(b):
    """(device, seq, result) of an ack datagram, or None if it is not a well-formed ack."""
    if len(b) != 26 or b[0] != 0xA5 or b[2] != ACK:
        return None
    if struct.unpack(">I", b[-4:])[0] != zlib.crc32(b[:-4]):
        return None
    if b[11:19] != b"\0" * 8:  # the token is zeros in acks
        return None
    return b[3:11].rstrip(b"\0").decode(), struct.unpack("<H", b[19:21])[0], b[21]


class Client:
    """A device's UDP socket (its own source port)."""

    def __init__(self, port, rcvbuf=0):
        self.addr = (g.HOST, port)
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.bind((g.HOST, 0))
        self.port = self.sock.getsockname()[1]
        self.peer = "%s:%d" % (g.HOST, self.port)

    def send(self, data):
        self.sock.sendto(data, self.addr)

    def recv(self, timeout=3.0):
        """One datagram or None."""
        self.sock.settimeout(timeout * g.SLOW)
        try:
            return self.sock.recv(65536)
        except socket.timeout:
            return None

    def ack(self, timeout=3.0):
        b = self.recv(timeout)
        return parse_ack(b) if b is not None else None

    def request(self, data, timeout=3.0):
        """Sends data, returns (ack tuple or None, seconds until it came)."""
        t0 = time.monotonic()
        self.send(data)
        a = self.ack(timeout)
        return a, time.monotonic() - t0

    def quiet(self, seconds=0.3):
        """True if nothing arrives within seconds (not stretched under sanitizers)."""
        self.sock.settimeout(seconds)
        try:
            self.sock.recv(65536)
            return False
        except socket.timeout:
            return True

    def close(self):
        self.sock.close()


def gateway(n_devices=3, udp=None, product=None, config=None, **kw):
    """A gateway with the UDP adapter serving sensor-udp (plus the default MQTT listener)."""
    prod = g.load_product(PRODUCT)
    if product:
        prod = g.deep_merge(prod, product)
    cfg = {"adapters": {"udp": g.deep_merge(
        {"listeners": [{"address": g.HOST, "port": 0, "product": PRODUCT}]}, udp or {})}}
    gw = g.Gateway(products=[g.THERMO, prod], devices=devices(dev_ids(n_devices)) +
                   g.make_devices(["t-001"]), config=g.deep_merge(cfg, config or {}), **kw)
    return gw


def udp_port(gw):
    return g.adapter_port(gw, "udp")

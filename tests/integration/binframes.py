# binframes.py: frames of the meter-tcp and tracker-808 products (docs/BINARY-CODEC.md section 9),
# built in Python from the layouts, a raw TCP device client, and a gateway with the TCP adapter.
import socket
import struct
import time

import gwtest as g


def crc16_modbus(data):
    crc = 0xFFFF
    for b in data:
        crc ^= b
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


# ---- meter-tcp: 68 | len u16 BE (bytes after it) | cmd u8 | seq u16 | body | crc16-modbus LE ----

METER = "meter-tcp"
M_LOGIN, M_REPORT, M_EVENT, M_HEARTBEAT, M_ACK = 0x01, 0x02, 0x03, 0x04, 0x80


def meter_frame(cmd, seq, body=b"", crc_ok=True, length=None):
    n = 3 + len(body) + 2 if length is None else length
    head = bytes([0x68]) + struct.pack(">HBH", n, cmd, seq) + body
    crc = crc16_modbus(head) ^ (0 if crc_ok else 0x5A5A)
    return head + struct.pack("<H", crc)


def pad8(s):
    b = s.encode() if isinstance(s, str) else s
    return (b + b"\0" * 8)[:8]


def meter_login(dev, secret, seq=1):
    return meter_frame(M_LOGIN, seq, pad8(dev) + pad8(secret))


def meter_report(seq, energy=1234.56, power=1500, voltage=230.1, pulses=987654, tariff=1,
                 relay=True, quality=2, ts=1700000000, **kw):
    status = (1 if relay else 0) | (quality << 1)
    body = struct.pack(">IHHIBBI", int(round(energy * 100)), power, int(round(voltage * 10)),
                       pulses, tariff, status, ts)
    return meter_frame(M_REPORT, seq, body, **kw)


def meter_event(seq, power=9000, duration=1500):
    return meter_frame(M_EVENT, seq, struct.pack(">HI", power, duration))


def meter_heartbeat(seq):
    return meter_frame(M_HEARTBEAT, seq)


def meter_ack(seq, request, result=0):
    return meter_frame(M_ACK, seq, bytes([request, result]))


METER_ACK_LEN = 10


def meter_secret(dev):
    return "pw" + dev[-6:]


def meter_devices(ids):
    return [{"id": d, "product": METER, "secret": meter_secret(d)} for d in ids]


# ---- tracker-808: 7E | escaped(msg_id u16 | props u16 | phone bcd6 | serial u16 | body | xor) | 7E

TRACKER = "tracker-808"


def bcd(digits):
    return bytes(int(digits[i:i + 2], 16) for i in range(0, len(digits), 2))


def escape808(body):
    out = bytearray()
    for b in body:
        if b == 0x7E:
            out += b"\x7d\x02"
        elif b == 0x7D:
            out += b"\x7d\x01"
        else:
            out.append(b)
    return bytes(out)


def unescape808(data):
    out, i = bytearray(), 0
    while i < len(data):
        if data[i] == 0x7D and i + 1 < len(data):
            out.append(0x7E if data[i + 1] == 0x02 else 0x7D)
            i += 2
        else:
            out.append(data[i])
            i += 1
    return bytes(out)


def t_frame(msg_id, phone, serial, body=b"", props=None, check_ok=True):
    head = struct.pack(">HH", msg_id, len(body) if props is None else props) + bcd(phone) + \
        struct.pack(">H", serial) + body
    x = 0
    for b in head:
        x ^= b
    if not check_ok:
        x ^= 0x55
    return b"\x7e" + escape808(head + bytes([x])) + b"\x7e"


def t_login(phone, code, serial=1):
    c = code.encode()
    return t_frame(0x0102, phone, serial, c)  # JT/T 808-2013: the code is the whole body


def t_heartbeat(phone, serial):
    return t_frame(0x0002, phone, serial)


def t_report(phone, serial, sos=True, acc=True, located=True, lat=31.234567, lon=121.456789,
             alt=52, speed=60.5, direction=126, when="240115103000"):
    body = struct.pack(">IIIIHHH", 1 if sos else 0, (1 if acc else 0) | (2 if located else 0),
                       int(round(lat * 1e6)), int(round(lon * 1e6)), alt,
                       int(round(speed * 10)), direction) + bcd(when)
    return t_frame(0x0200, phone, serial, body)


def t_event(phone, serial, ev):
    return t_frame(0x0301, phone, serial, bytes([ev]))


def t_parse(frame):
    """(msg_id, phone, serial, body) of one delimited frame."""
    b = unescape808(frame[1:-1])
    msg_id, _props = struct.unpack(">HH", b[:4])
    return msg_id, b[4:10].hex(), struct.unpack(">H", b[10:12])[0], b[12:-1]


def t_ack(phone, serial, reply_id, result=0):
    """The gateway's 8001 ack for a frame (its serial and msg id)."""
    return t_frame(0x8001, phone, serial, struct.pack(">HHB", serial, reply_id, result), props=5)


# ---- gateway and client ----


def tcp_gateway(product_ids, devices, tcp=None, products_over=None, **kw):
    """A gateway whose TCP adapter serves product_ids (one listener each, in that order)."""
    prods = []
    for pid in product_ids:
        p = g.load_product(pid)
        p.update((products_over or {}).get(pid, {}))
        prods.append(p)
    tcp_cfg = {"listeners": [{"address": g.HOST, "port": 0, "product": p} for p in product_ids]}
    tcp_cfg.update(tcp or {})
    cfg = {"adapters": {"mqtt": None, "tcp": tcp_cfg}}
    cfg.update(kw.pop("config", {}))
    return g.Gateway(products=prods, devices=devices, config=cfg, **kw)


class Dev:
    """A raw TCP device connection."""

    def __init__(self, port, timeout=5.0):
        self.s = socket.create_connection((g.HOST, port), timeout=timeout * g.SLOW)
        self.s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = b""

    def send(self, data):
        self.s.sendall(data)

    def dribble(self, data, pause=0.002):
        """One byte per write (TCP_NODELAY: one segment each)."""
        for i in range(len(data)):
            self.s.sendall(data[i:i + 1])
            time.sleep(pause)

    def _more(self, deadline):
        self.s.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = self.s.recv(65536)
        except socket.timeout:
            return None
        except OSError:
            return b""
        if chunk:
            self.buf += chunk
        return chunk

    def recv_n(self, n, timeout=5.0):
        """n bytes, or fewer if the peer closes or the deadline passes."""
        deadline = time.monotonic() + timeout * g.SLOW
        while len(self.buf) < n and time.monotonic() < deadline:
            if not self._more(deadline):
                break
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def recv_808(self, timeout=5.0):
        """One 7E..7E frame, or None."""
        deadline = time.monotonic() + timeout * g.SLOW
        while True:
            i = self.buf.find(b"\x7e")
            j = self.buf.find(b"\x7e", i + 1) if i >= 0 else -1
            if j > i >= 0:
                f, self.buf = self.buf[i:j + 1], self.buf[j + 1:]
                return f
            if time.monotonic() >= deadline or not self._more(deadline):
                return None

    def quiet_for(self, secs):
        """True if nothing arrives for secs and the connection stays open."""
        deadline = time.monotonic() + secs
        n = len(self.buf)
        while time.monotonic() < deadline:
            r = self._more(deadline)
            if r == b"" or len(self.buf) != n:
                return False
        return True

    def wait_closed(self, timeout=5.0):
        """True once the gateway closed the connection (bytes before it are kept in buf)."""
        deadline = time.monotonic() + timeout * g.SLOW
        while time.monotonic() < deadline:
            r = self._more(deadline)
            if r == b"":
                return True
        return False

    def close(self):
        try:
            self.s.close()
        except OSError:
            pass


# ---- gt06 (Concox GT06): 78 78 | len | protocol | info | serial | CRC-16/X-25 | 0D 0A ----

GT06 = "gt06"


def crc16_x25(data):
    c = 0xFFFF
    for x in data:
        c ^= x
        for _ in range(8):
            c = (c >> 1) ^ 0x8408 if c & 1 else c >> 1
    return c ^ 0xFFFF


def gt06_frame(proto, info, serial, crc_ok=True):
    """A GT06 packet: the length counts protocol .. CRC; the CRC covers length .. serial."""
    body = bytes([len(info) + 5, proto]) + info + struct.pack(">H", serial)
    crc = crc16_x25(body) ^ (0 if crc_ok else 0x0101)
    return b"\x78\x78" + body + struct.pack(">H", crc) + b"\r\n"


def gt06_login(imei, serial=1):
    return gt06_frame(0x01, bcd(imei.rjust(16, "0")), serial)


def gt06_heartbeat(serial, info=bytes.fromhex("4401040001")):
    return gt06_frame(0x13, info, serial)


def gt06_answer(proto, serial):
    return gt06_frame(proto, b"", serial)


def gt06_recv(dev, timeout=5.0):
    """One 78 78 packet from dev (None on timeout or close)."""
    hdr = dev.recv_n(3, timeout)
    if not hdr:
        return None
    rest = dev.recv_n(hdr[2] + 2, timeout)
    return hdr + rest if rest else None

# pblib.py: the iotgw.proto wire format (codecs/protobuf/iotgw.proto) hand-encoded in plain Python,
# so tests need no protobuf package: DeviceMessage builders, DeviceCommand/Ack decoders, TCP framing.
import struct

# ---- wire primitives ----


def varint(n):
    n &= (1 << 64) - 1
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def zigzag(n):
    return (n << 1) ^ (n >> 63)


def tag(num, wt):
    return varint((num << 3) | wt)


def f_varint(num, n):
    return tag(num, 0) + varint(n)


def f_bytes(num, data):
    if isinstance(data, str):
        data = data.encode()
    return tag(num, 2) + varint(len(data)) + data


def f_double(num, x):
    return tag(num, 1) + struct.pack("<d", x)


def read_varint(b, i):
    r = shift = 0
    while True:
        c = b[i]
        i += 1
        r |= (c & 0x7F) << shift
        shift += 7
        if not c & 0x80:
            return r, i


def fields(b):
    """[(number, wire type, value)] of one message; value: int, bytes or float bytes."""
    out, i = [], 0
    while i < len(b):
        t, i = read_varint(b, i)
        num, wt = t >> 3, t & 7
        if wt == 0:
            v, i = read_varint(b, i)
        elif wt == 1:
            v, i = b[i:i + 8], i + 8
        elif wt == 2:
            n, i = read_varint(b, i)
            v, i = b[i:i + n], i + n
        elif wt == 5:
            v, i = b[i:i + 4], i + 4
        else:
            raise ValueError("wire type %d" % wt)
        out.append((num, wt, v))
    return out


# ---- Value / Field ----


class Double(float):
    """A float that must go as double_value even when integral."""


def value(v):
    if isinstance(v, bool):
        return f_varint(3, 1 if v else 0) if v else tag(3, 0) + b"\x00"
    if isinstance(v, int):
        return tag(1, 0) + varint(zigzag(v))
    if isinstance(v, float):
        return f_double(2, v)
    if isinstance(v, str):
        return f_bytes(4, v)
    if isinstance(v, dict):
        return f_bytes(5, b"".join(f_bytes(1, field(k, x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return f_bytes(6, b"".join(f_bytes(1, value(x)) for x in v))
    raise TypeError(type(v))


def field(name, v):
    return f_bytes(1, name) + f_bytes(2, value(v))


def field_list(num, d):
    return b"".join(f_bytes(num, field(k, v)) for k, v in d.items())


def decode_value(b):
    (num, wt, v), = fields(b) or [(0, 0, None)]
    if num == 1:
        return (v >> 1) ^ -(v & 1)
    if num == 2:
        return struct.unpack("<d", v)[0]
    if num == 3:
        return bool(v)
    if num == 4:
        return v.decode()
    if num == 5:
        return decode_fields(v, 1)
    if num == 6:
        return [decode_value(x) for n, _, x in fields(v) if n == 1]
    return None


def decode_fields(b, num):
    """{name: value} of the repeated Field number num in message bytes b."""
    out = {}
    for n, _, f in fields(b):
        if n == num:
            d = {k: v for k, _, v in fields(f)}
            out[d.get(1, b"").decode()] = decode_value(d.get(2, b""))
    return out


# ---- DeviceMessage ----


def message(body_num, body, msg_id="", ts=0, device_id="", token=""):
    out = b""
    if msg_id:
        out += f_bytes(1, msg_id)
    if ts:
        out += f_varint(2, ts)
    if device_id:
        out += f_bytes(3, device_id)
    if token:
        out += f_bytes(4, token)
    return out + f_bytes(body_num, body)


def report(props, **kw):
    return message(10, field_list(1, props), **kw)


def event(ev_id, params=None, **kw):
    return message(11, (f_bytes(1, ev_id) if ev_id else b"") + field_list(2, params or {}), **kw)


def function_reply(success, function="", outputs=None, error="", text="", **kw):
    body = (f_varint(1, 1) if success else b"") + (f_bytes(2, function) if function else b"")
    body += field_list(3, outputs or {})
    body += (f_bytes(4, error) if error else b"") + (f_bytes(5, text) if text else b"")
    return message(12, body, **kw)


def write_reply(success, error="", text="", **kw):
    body = (f_varint(1, 1) if success else b"") + (f_bytes(2, error) if error else b"")
    return message(13, body + (f_bytes(3, text) if text else b""), **kw)


def login(device_id, secret, **kw):
    return message(14, f_bytes(1, device_id) + f_bytes(2, secret), **kw)


def heartbeat(**kw):
    return message(15, b"", **kw)


def frame(msg):
    """TCP: a 4-byte big-endian length, then the message."""
    return struct.pack(">I", len(msg)) + msg


# ---- what the gateway sends ----


def decode_ack(b):
    d = {n: v for n, _, v in fields(b)}
    out = {"message_id": d.get(1, b"").decode(), "ok": bool(d.get(2, 0)),
           "code": d.get(3, b"").decode()}
    if 4 in d:
        out["message"] = d[4].decode()
    return out


def decode_command(b):
    d = {}
    for n, _, v in fields(b):
        d[n] = v
    out = {"message_id": d.get(1, b"").decode(), "seq": d.get(2, 0)}
    if 10 in d:
        inv = {n: v for n, _, v in fields(d[10])}
        out["invoke"] = {"function": inv.get(1, b"").decode(), "inputs": decode_fields(d[10], 2)}
    if 11 in d:
        out["write"] = {"properties": decode_fields(d[11], 1)}
    return out


def split_frames(buf):
    """TCP: ([message bytes], rest) of whole length-prefixed frames in buf."""
    out = []
    while len(buf) >= 4:
        n = struct.unpack(">I", buf[:4])[0]
        if len(buf) < 4 + n:
            break
        out.append(buf[4:4 + n])
        buf = buf[4 + n:]
    return out, buf

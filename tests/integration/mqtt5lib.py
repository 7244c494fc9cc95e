# mqtt5lib.py: what the MQTT 5 tests (93, 94, 95) share: raw MQTT 5 packet builders (CONNECT,
# PUBLISH, SUBSCRIBE, UNSUBSCRIBE, DISCONNECT with property blocks), a property decoder for the
# server's packets, and a raw client (gwtest.RawClient) that connects at protocol level 5.
import struct

import gwtest as g

# property ids
PAYLOAD_FORMAT, MESSAGE_EXPIRY, CONTENT_TYPE = 0x01, 0x02, 0x03
RESPONSE_TOPIC, CORRELATION_DATA, SUBSCRIPTION_ID = 0x08, 0x09, 0x0B
SESSION_EXPIRY, ASSIGNED_CLIENT_ID, SERVER_KEEP_ALIVE = 0x11, 0x12, 0x13
AUTH_METHOD, AUTH_DATA, REQUEST_PROBLEM_INFO, WILL_DELAY = 0x15, 0x16, 0x17, 0x18
REQUEST_RESPONSE_INFO, RESPONSE_INFO, SERVER_REFERENCE, REASON_STRING = 0x19, 0x1A, 0x1C, 0x1F
RECEIVE_MAX, TOPIC_ALIAS_MAX, TOPIC_ALIAS, MAX_QOS = 0x21, 0x22, 0x23, 0x24
RETAIN_AVAILABLE, USER_PROPERTY, MAX_PACKET_SIZE = 0x25, 0x26, 0x27
WILDCARD_SUB_AVAILABLE, SUB_ID_AVAILABLE, SHARED_SUB_AVAILABLE = 0x28, 0x29, 0x2A

BYTE, U16, U32, VBI, STR, BIN, PAIR = range(7)
TYPES = {
    PAYLOAD_FORMAT: BYTE, MESSAGE_EXPIRY: U32, CONTENT_TYPE: STR, RESPONSE_TOPIC: STR,
    CORRELATION_DATA: BIN, SUBSCRIPTION_ID: VBI, SESSION_EXPIRY: U32, ASSIGNED_CLIENT_ID: STR,
    SERVER_KEEP_ALIVE: U16, AUTH_METHOD: STR, AUTH_DATA: BIN, REQUEST_PROBLEM_INFO: BYTE,
    WILL_DELAY: U32, REQUEST_RESPONSE_INFO: BYTE, RESPONSE_INFO: STR, SERVER_REFERENCE: STR,
    REASON_STRING: STR, RECEIVE_MAX: U16, TOPIC_ALIAS_MAX: U16, TOPIC_ALIAS: U16, MAX_QOS: BYTE,
    RETAIN_AVAILABLE: BYTE, USER_PROPERTY: PAIR, MAX_PACKET_SIZE: U32,
    WILDCARD_SUB_AVAILABLE: BYTE, SUB_ID_AVAILABLE: BYTE, SHARED_SUB_AVAILABLE: BYTE,
}


def prop(pid, value):
    """One property, encoded by its id's type (value: int, str/bytes, or (k, v) for a pair)."""
    t = TYPES[pid]
    out = bytes([pid])
    if t == BYTE:
        return out + bytes([value])
    if t == U16:
        return out + struct.pack("!H", value)
    if t == U32:
        return out + struct.pack("!I", value)
    if t == VBI:
        return out + g.enc_varint(value)
    if t in (STR, BIN):
        return out + g.enc_str(value)
    return out + g.enc_str(value[0]) + g.enc_str(value[1])


def props(*items, raw=b""):
    """A property block: its length and the properties ((id, value) pairs, then raw bytes)."""
    body = b"".join(prop(i, v) for i, v in items) + raw
    return g.enc_varint(len(body)) + body


def connect5(client_id, username=None, password=None, keepalive=60, clean=True, cprops=None,
             will=None, will_props=None, raw_props=None):
    """will: (topic, payload[, qos])."""
    flags = 0x02 if clean else 0
    payload = g.enc_str(client_id)
    if will is not None:
        flags |= 0x04 | ((will[2] if len(will) > 2 else 0) << 3)
        payload += (will_props if will_props is not None else props())
        payload += g.enc_str(will[0]) + g.enc_str(will[1])
    if username is not None:
        flags |= 0x80
        payload += g.enc_str(username)
    if password is not None:
        flags |= 0x40
        payload += g.enc_str(password)
    pb = raw_props if raw_props is not None else props(*(cprops or []))
    body = g.enc_str(b"MQTT") + bytes([5, flags]) + struct.pack("!H", keepalive) + pb + payload
    return g.packet(g.CONNECT, 0, body)


def device_connect5(dev, product="thermo", secret=None, **kw):
    return connect5(dev, product, secret if secret is not None else g.secret_of(dev), **kw)


def publish5(topic, payload, qos=0, pid=None, pprops=(), raw_props=None, retain=False):
    flags = (qos << 1) | (1 if retain else 0)
    body = g.enc_str(topic)
    if qos:
        body += struct.pack("!H", pid)
    body += raw_props if raw_props is not None else props(*pprops)
    body += g._b(payload)
    return g.packet(g.PUBLISH, flags, body)


def subscribe5(pid, filters, sprops=(), raw_props=None):
    """filters: (filter, options byte)."""
    body = struct.pack("!H", pid) + (raw_props if raw_props is not None else props(*sprops))
    for f, o in filters:
        body += g.enc_str(f) + bytes([o])
    return g.packet(g.SUBSCRIBE, 2, body)


def unsubscribe5(pid, filters, raw_props=None):
    body = struct.pack("!H", pid) + (raw_props if raw_props is not None else props())
    for f in filters:
        body += g.enc_str(f)
    return g.packet(g.UNSUBSCRIBE, 2, body)


def disconnect5(rc=0, dprops=()):
    return g.packet(g.DISCONNECT, 0, bytes([rc]) + props(*dprops))


def parse_props(b, off):
    """({id: value, USER_PROPERTY: [pairs]}, offset after the block)."""
    n, mult, i = 0, 1, off
    while True:
        d = b[i]
        n += (d & 0x7F) * mult
        mult *= 128
        i += 1
        if not d & 0x80:
            break
    end = i + n
    out = {}
    while i < end:
        pid = b[i]
        i += 1
        t = TYPES[pid]
        if t == BYTE:
            v, i = b[i], i + 1
        elif t == U16:
            v, i = struct.unpack("!H", b[i:i + 2])[0], i + 2
        elif t == U32:
            v, i = struct.unpack("!I", b[i:i + 4])[0], i + 4
        elif t == VBI:
            v, m = 0, 1
            while True:
                d = b[i]
                i += 1
                v += (d & 0x7F) * m
                m *= 128
                if not d & 0x80:
                    break
        elif t in (STR, BIN):
            ln = struct.unpack("!H", b[i:i + 2])[0]
            v = bytes(b[i + 2:i + 2 + ln])
            if t == STR:
                v = v.decode("utf-8")
            i += 2 + ln
        else:
            kl = struct.unpack("!H", b[i:i + 2])[0]
            k = bytes(b[i + 2:i + 2 + kl]).decode()
            i += 2 + kl
            vl = struct.unpack("!H", b[i:i + 2])[0]
            v = (k, bytes(b[i + 2:i + 2 + vl]).decode())
            i += 2 + vl
            out.setdefault(USER_PROPERTY, []).append(v)
            continue
        out[pid] = v
    return out, end


def connack5(p):
    """(session present, reason code, properties) of a v5 CONNACK."""
    pr, _ = parse_props(p.body, 2) if len(p.body) > 2 else ({}, 2)
    return bool(p.body[0] & 1), p.body[1], pr


def ack5(p):
    """(packet id, reason code, properties) of a v5 PUBACK/PUBREC/PUBREL/PUBCOMP."""
    pid = struct.unpack("!H", p.body[:2])[0]
    rc = p.body[2] if len(p.body) > 2 else 0
    pr = parse_props(p.body, 3)[0] if len(p.body) > 3 else {}
    return pid, rc, pr


def disconnect_rc(p):
    """(reason code, properties) of a v5 DISCONNECT."""
    rc = p.body[0] if p.body else 0
    pr = parse_props(p.body, 1)[0] if len(p.body) > 1 else {}
    return rc, pr


def suback5(p):
    """(packet id, properties, reason codes) of a v5 SUBACK/UNSUBACK."""
    pid = struct.unpack("!H", p.body[:2])[0]
    pr, off = parse_props(p.body, 2)
    return pid, pr, list(p.body[off:])


def publish5_fields(p):
    """(topic, qos, pid, properties, payload) of a v5 PUBLISH."""
    n = struct.unpack("!H", p.body[:2])[0]
    topic = bytes(p.body[2:2 + n]).decode()
    off = 2 + n
    pid = None
    if p.qos:
        pid = struct.unpack("!H", p.body[off:off + 2])[0]
        off += 2
    pr, off = parse_props(p.body, off)
    return topic, p.qos, pid, pr, bytes(p.body[off:])


class Client5(g.RawClient):
    """A raw MQTT 5 client: connect5 returns the parsed CONNACK (or None)."""

    def connect5(self, dev, product="thermo", secret=None, timeout=None, **kw):
        self.send(device_connect5(dev, product, secret, **kw))
        try:
            p = self.read_packet(timeout)
        except g.Closed:
            return None
        if p is None or p.type != g.CONNACK:
            return None
        self.connack = connack5(p)
        return self.connack

    def pub_wait(self, topic, payload, pid, pprops=(), ptype=g.PUBACK, qos=1, timeout=None):
        """QoS 1 (or 2: ptype PUBREC) publish; returns ack5(...) or None."""
        self.send(publish5(topic, payload, qos, pid, pprops))
        p = self.expect(ptype, timeout)
        return ack5(p) if p is not None else None

    def next_disconnect(self, timeout=5.0):
        """Reads until a DISCONNECT (returns disconnect_rc) or the close (None)."""
        try:
            while True:
                p = self.read_packet(timeout)
                if p is None:
                    return None
                if p.type == g.DISCONNECT:
                    return disconnect_rc(p)
        except g.Closed:
            return None


def client5(gw, dev, product="thermo", timeout=5.0, auto_puback=True, **kw):
    """A Client5 connected as dev; raises unless CONNACK is 0."""
    c = Client5(gw.mqtt_port, timeout=timeout, auto_puback=auto_puback)
    r = c.connect5(dev, product, **kw)
    if r is None or r[1] != 0:
        c.close()
        raise AssertionError("CONNACK for %s: %r" % (dev, r))
    return c


def proto_errors(m):
    return {k[len('mqtt_protocol_errors_total{error="'):-2]: v for k, v in m.items()
            if k.startswith('mqtt_protocol_errors_total{')}

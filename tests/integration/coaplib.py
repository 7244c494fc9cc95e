# coaplib.py: what the CoAP tests share: raw CoAP PDUs (RFC 7252 header, token, options with deltas
# and extended lengths, payload marker; Block1/Block2, Observe), a blocking UDP CoAP client that
# handles piggybacked and separate responses, and a wrapper around libcoap's coap-client.
import json
import random
import re
import select
import socket
import struct
import subprocess
import time

import gwtest as g

CON, NON, ACK, RST = 0, 1, 2, 3
TYPE_NAMES = {CON: "CON", NON: "NON", ACK: "ACK", RST: "RST"}

# Option numbers
IF_MATCH, URI_HOST, ETAG, IF_NONE_MATCH, OBSERVE, URI_PORT = 1, 3, 4, 5, 6, 7
LOCATION_PATH, URI_PATH, CONTENT_FORMAT, MAX_AGE, URI_QUERY, ACCEPT = 8, 11, 12, 14, 15, 17
LOCATION_QUERY, BLOCK2, BLOCK1, SIZE2, PROXY_URI, SIZE1 = 20, 23, 27, 28, 35, 60

CF_TEXT, CF_OCTETS, CF_JSON, CF_CBOR = 0, 42, 50, 60

# Codes as (class << 5 | detail)
def code(c, dd):
    return (c << 5) | dd


EMPTY = 0
GET, POST, PUT, DELETE = 1, 2, 3, 4
CREATED, DELETED, VALID, CHANGED, CONTENT, CONTINUE = (code(2, 1), code(2, 2), code(2, 3),
                                                      code(2, 4), code(2, 5), code(2, 31))
BAD_REQUEST, UNAUTHORIZED, BAD_OPTION, FORBIDDEN, NOT_FOUND, METHOD_NOT_ALLOWED = (
    code(4, 0), code(4, 1), code(4, 2), code(4, 3), code(4, 4), code(4, 5))
REQUEST_ENTITY_INCOMPLETE, TOO_LARGE, UNSUPPORTED_CF = code(4, 8), code(4, 13), code(4, 15)
INTERNAL_ERROR, SERVICE_UNAVAILABLE = code(5, 0), code(5, 3)


def code_str(c):
    if c is None:
        return "none"
    return "%d.%02d" % (c >> 5, c & 31)


def enc_uint(v):
    """An unsigned integer option value in the fewest bytes (0 -> empty)."""
    out = b""
    while v:
        out = bytes([v & 0xFF]) + out
        v >>= 8
    return out


def dec_uint(b):
    v = 0
    for x in b:
        v = (v << 8) | x
    return v


def _nib(n):
    """(nibble, extension bytes) for an option delta or length."""
    if n < 13:
        return n, b""
    if n < 269:
        return 13, bytes([n - 13])
    return 14, struct.pack("!H", n - 269)


def enc_options(options):
    """options: [(number, bytes|str|int)]; sorted by number (stable), encoded with deltas."""
    out = bytearray()
    last = 0
    for num, val in sorted(options, key=lambda o: o[0]):
        if isinstance(val, int):
            val = enc_uint(val)
        elif isinstance(val, str):
            val = val.encode("utf-8")
        dn, dx = _nib(num - last)
        ln, lx = _nib(len(val))
        out.append((dn << 4) | ln)
        out += dx + lx + val
        last = num
    return bytes(out)


def encode(mtype, mcode, mid, token=b"", options=(), payload=b"", raw_options=None):
    """A CoAP datagram. raw_options (bytes) replaces the encoded options as they are."""
    if isinstance(payload, str):
        payload = payload.encode("utf-8")
    hdr = bytes([0x40 | (mtype << 4) | len(token), mcode]) + struct.pack("!H", mid) + token
    opts = raw_options if raw_options is not None else enc_options(options)
    return hdr + opts + ((b"\xff" + payload) if payload else b"")


class Msg:
    __slots__ = ("ver", "type", "code", "mid", "token", "options", "payload", "raw")

    def opt(self, num, default=None):
        for n, v in self.options:
            if n == num:
                return v
        return default

    def opts(self, num):
        return [v for n, v in self.options if n == num]

    def uint(self, num, default=None):
        v = self.opt(num)
        return default if v is None else dec_uint(v)

    @property
    def code_str(self):
        return code_str(self.code)

    def json(self):
        return json.loads(self.payload.decode("utf-8"))

    def __repr__(self):
        return "<%s %s mid=%d tok=%s opts=%r payload=%r>" % (
            TYPE_NAMES.get(self.type), code_str(self.code), self.mid, self.token.hex(),
            [(n, v.hex()) for n, v in self.options], self.payload[:80])


def decode(data):
    """A Msg from a datagram; ValueError when it is not well-formed."""
    if len(data) < 4:
        raise ValueError("short header")
    m = Msg()
    m.raw = bytes(data)
    m.ver, m.type, tkl = data[0] >> 6, (data[0] >> 4) & 3, data[0] & 15
    m.code = data[1]
    m.mid = struct.unpack("!H", data[2:4])[0]
    if tkl > 8 or len(data) < 4 + tkl:
        raise ValueError("bad token")
    m.token = bytes(data[4:4 + tkl])
    i = 4 + tkl
    num = 0
    m.options = []
    m.payload = b""
    while i < len(data):
        b = data[i]
        if b == 0xFF:
            if i + 1 >= len(data):
                raise ValueError("payload marker without payload")
            m.payload = bytes(data[i + 1:])
            break
        i += 1
        d, ln = b >> 4, b & 15
        vals = []
        for n in (d, ln):
            if n == 13:
                if i >= len(data):
                    raise ValueError("truncated option")
                vals.append(data[i] + 13)
                i += 1
            elif n == 14:
                if i + 2 > len(data):
                    raise ValueError("truncated option")
                vals.append(struct.unpack("!H", data[i:i + 2])[0] + 269)
                i += 2
            elif n == 15:
                raise ValueError("reserved nibble 15")
            else:
                vals.append(n)
        num += vals[0]
        if i + vals[1] > len(data):
            raise ValueError("truncated option value")
        m.options.append((num, bytes(data[i:i + vals[1]])))
        i += vals[1]
    return m


def block_value(num, more, szx):
    """A Block1/Block2 option value (NUM, M, SZX); block size = 2 ** (szx + 4)."""
    return enc_uint((num << 4) | (8 if more else 0) | szx)


def block_parse(b):
    v = dec_uint(b or b"")
    return v >> 4, bool(v & 8), v & 7


def path_options(path, query=()):
    opts = [(URI_PATH, seg) for seg in path.strip("/").split("/") if seg != ""]
    opts += [(URI_QUERY, q) for q in query]
    return opts


def report_path(product, dev):
    return "/%s/%s/properties/report" % (product, dev)


def event_path(product, dev, event):
    return "/%s/%s/event/%s" % (product, dev, event)


def report_body(msg_id, props, ts=None):
    return g.report_payload(msg_id, props, ts)


# ---------------------------------------------------------------------------------------------
# A raw CoAP client over one UDP socket


class Client:
    """One UDP socket (one CoAP endpoint) to the gateway. request() sends a request and returns
    its final response (Msg) or None: piggybacked in the ACK, or separate after an empty ACK
    (a CON separate response is ACKed). Datagrams that are not the awaited response are kept in
    self.other (e.g. observe notifications); CON ones are ACKed when auto_ack."""

    def __init__(self, port, host=g.HOST, family=None, auto_ack=True):
        fam = family or (socket.AF_INET6 if ":" in host else socket.AF_INET)
        self.sock = socket.socket(fam, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.connect((host, port))
        self.addr = (host, port)
        self.mid = random.randint(0, 0xFFFF)
        self.tok = random.randint(0, 0xFFFFFFFF)
        self.other = []
        self.auto_ack = auto_ack
        self.received = []  # every datagram decoded (or raw bytes if undecodable)

    @property
    def local(self):
        return self.sock.getsockname()

    @property
    def peer(self):
        """The local address as the gateway writes it ("127.0.0.1:5501" / "[::1]:5501")."""
        h, p = self.local[:2]
        return ("[%s]:%d" % (h, p)) if ":" in h else ("%s:%d" % (h, p))

    def next_mid(self):
        self.mid = (self.mid + 1) & 0xFFFF
        return self.mid

    def next_token(self, n=4):
        self.tok = (self.tok + 1) & 0xFFFFFFFF
        return struct.pack("!I", self.tok)[-n:] if n else b""

    def send(self, data):
        self.sock.send(data)

    def recv_raw(self, timeout=2.0):
        r, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not r:
            return None
        try:
            return self.sock.recv(65536)
        except ConnectionRefusedError:
            return None

    def recv(self, timeout=2.0):
        """The next decoded datagram, or None at timeout (undecodable ones are skipped)."""
        deadline = time.monotonic() + timeout * g.SLOW
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            d = self.recv_raw(left)
            if d is None:
                return None
            try:
                m = decode(d)
            except ValueError:
                self.received.append(d)
                continue
            self.received.append(m)
            return m

    def ack(self, m):
        self.send(encode(ACK, EMPTY, m.mid))

    def wait_response(self, mid, token, timeout=5.0, seen_empty_ack=None):
        """The response to the request (mid, token); see request()."""
        deadline = time.monotonic() + timeout * g.SLOW
        while True:
            left = (deadline - time.monotonic()) / g.SLOW
            if left <= 0:
                return None
            m = self.recv(left)
            if m is None:
                return None
            if m.type in (ACK, RST) and m.mid == mid:
                if m.type == RST:
                    return m
                if m.code == EMPTY:
                    if seen_empty_ack is not None:
                        seen_empty_ack.append(m)
                    continue  # separate response follows
                if m.token == token:
                    return m
            if m.type in (CON, NON) and m.code >= 64 and m.token == token:
                if m.type == CON:
                    self.ack(m)
                return m
            if m.type == CON and self.auto_ack:
                self.ack(m)
            self.other.append(m)

    def request(self, method, path, payload=b"", query=(), cf=CF_JSON, mtype=CON, options=(),
                timeout=5.0, mid=None, token=None):
        """Sends a request, returns its response Msg (or None). cf None: no Content-Format."""
        opts = path_options(path, query) + list(options)
        if cf is not None:
            opts.append((CONTENT_FORMAT, cf))
        mid = self.next_mid() if mid is None else mid
        token = self.next_token() if token is None else token
        self.send(encode(mtype, method, mid, token, opts, payload))
        return self.wait_response(mid, token, timeout)

    def post(self, path, payload, **kw):
        return self.request(POST, path, payload, **kw)

    def put(self, path, payload, **kw):
        return self.request(PUT, path, payload, **kw)

    def close(self):
        self.sock.close()


def dev_query(dev, secret=None):
    return ("token=" + (secret if secret is not None else g.secret_of(dev)),)


def report(client, product, dev, msg_id, props, secret=None, **kw):
    """POSTs a property report with the device's token; returns the response."""
    return client.post(report_path(product, dev), report_body(msg_id, props),
                       query=dev_query(dev, secret), **kw)


# ---------------------------------------------------------------------------------------------
# libcoap's coap-client

CLIENT_NOTLS = "/usr/bin/coap-client-notls"
CLIENT_OPENSSL = "/usr/bin/coap-client-openssl"
_PDU_LINE = re.compile(r"^v:1 t:(CON|NON|ACK|RST) c:(\d)\.(\d\d) i:([0-9a-f]+) \{([0-9a-f]*)\}")


class ClientRun:
    """What coap-client did: rc, stdout, stderr, codes (the response codes it received, as
    "2.04" strings, from its -v 7 PDU log)."""

    def __init__(self, p):
        self.rc = p.returncode
        self.out = p.stdout.decode("utf-8", "replace")
        self.err = p.stderr.decode("utf-8", "replace")
        self.codes = []
        for line in (self.out + "\n" + self.err).splitlines():
            mm = _PDU_LINE.match(line.strip())
            if mm and mm.group(2) != "0":
                self.codes.append("%s.%s" % (mm.group(2), mm.group(3)))

    @property
    def last(self):
        return self.codes[-1] if self.codes else None

    def __repr__(self):
        return "<coap-client rc=%r codes=%r err=%r>" % (self.rc, self.codes, self.err[-300:])


def coap_client(uri, method="post", payload=None, cf=50, args=(), binary=CLIENT_NOTLS,
                timeout=20.0, payload_file=None, wait_s=10):
    """Runs coap-client -v 7 -m METHOD -B wait_s [-t cf] [-e payload | -f file] ARGS uri."""
    cmd = [binary, "-v", "7", "-m", method, "-B", str(int(wait_s * g.SLOW))]
    if cf is not None:
        cmd += ["-t", str(cf)]
    if payload is not None:
        cmd += ["-e", payload]
    if payload_file is not None:
        cmd += ["-f", payload_file]
    cmd += list(args) + [uri]
    p = subprocess.run(cmd, capture_output=True, timeout=timeout * g.SLOW,
                       stdin=subprocess.DEVNULL)
    return ClientRun(p)


def coap_uri(port, path, query=None, host=g.HOST, scheme="coap"):
    h = ("[%s]" % host) if ":" in host else host
    return "%s://%s:%d%s%s" % (scheme, h, port, path, ("?" + query) if query else "")


# ---------------------------------------------------------------------------------------------
# Gateway set-up


def coap_adapter(dtls=False, host=g.HOST, **over):
    """The gateway.json "adapters.coap" section: a plain listener (and a DTLS one) on port 0."""
    a = {"listeners": [{"address": host, "port": 0}]}
    if dtls:
        a["dtls_listeners"] = [{"address": host, "port": 0}]
    a.update(over)
    return a


def product(pid="sensor", **over):
    """A CoAP json product with a thing model like thermo's."""
    import copy
    p = copy.deepcopy(g.THERMO)
    p["id"] = pid
    p["name"] = "CoAP sensor " + pid
    p["protocol"] = "coap"
    p.update(over)
    return p


def gateway(products=None, devices=None, n_devices=5, coap=None, config=None, dtls=False,
            mqtt=False, **kw):
    """A Gateway with only the CoAP adapter (plus MQTT with mqtt=True); products default to one
    CoAP product "sensor" with devices c-001..c-00N."""
    products = products if products is not None else [product()]
    if devices is None:
        devices = g.make_devices(["c-%03d" % i for i in range(1, n_devices + 1)],
                                 products[0]["id"])
    cfg = {"adapters": {"coap": coap if coap is not None else coap_adapter(dtls)}}
    if not mqtt:
        cfg["adapters"]["mqtt"] = None
    cfg = g.deep_merge(cfg, config or {})
    return g.Gateway(products=products, devices=devices, config=cfg, **kw)


def coap_port(gw):
    return gw.ports.get("coap")


def coaps_port(gw):
    return gw.ports.get("coaps")


def sum_metric(m, prefix):
    """Sum of every series of a metric family (all labels) in a metrics() dict."""
    return sum(v for k, v in m.items() if k == prefix or k.startswith(prefix + "{"))


def coap_metrics(gw):
    """{key: value} of every iotgw_coap_* series (keys as gwtest.parse_metrics gives them)."""
    return {k: v for k, v in gw.metrics().items() if k.startswith("coap_")}


def collect(pending, timeout=10.0):
    """Final responses of requests in flight on many clients: pending is {key: (client, mid,
    token)}; returns {key: Msg or None} once all are answered or at the deadline (one deadline
    for all, not one per client)."""
    got = {k: None for k in pending}
    left = dict(pending)
    deadline = time.monotonic() + timeout * g.SLOW
    while left and time.monotonic() < deadline:
        socks = {v[0].sock: k for k, v in left.items()}
        r, _, _ = select.select(list(socks), [], [], min(0.2, max(0.0, deadline -
                                                                  time.monotonic())))
        for s in r:
            k = socks[s]
            cl, mid, tok = left[k]
            m = cl.wait_response(mid, tok, timeout=0.05)
            if m is not None:
                got[k] = m
                del left[k]
    return got

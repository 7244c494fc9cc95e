# Proves malformed CoAP input does no harm: datagrams under 4 bytes, another version, token length over 8, a truncated token, option delta or length nibble 15, an option past the end, a payload marker with no payload, an empty message with bytes, too many options and random mutations are each answered (RST for a CON message format error) or dropped, and counted; afterwards a well-behaved device is still served, the gateway is alive and PRAGMA integrity_check is ok.
import random
import struct
import time

import coaplib as c
import gwtest as g

P = "sensor"
N_FUZZ = 300 if g.SANITIZED else 3000


def main(t):
    gw = c.gateway(n_devices=3)
    port = c.coap_port(gw)
    t.check(port, "ready-fd reports a coap listener", gw.ports)
    good = c.Client(port)
    r = c.report(good, P, "c-001", "before", {"humidity": 1})
    t.eq(r and r.code_str, "2.04", "a well-behaved device is served before")
    m0 = gw.metrics()
    bad = c.Client(port)

    def opts_for(dev="c-002"):
        return c.enc_options(c.path_options(c.report_path(P, dev), c.dev_query(dev)) +
                             [(c.CONTENT_FORMAT, 50)])

    def hdr(mtype=c.CON, code=c.POST, mid=0x1234, tkl=0, ver=1):
        return bytes([(ver << 6) | (mtype << 4) | tkl, code]) + struct.pack("!H", mid)

    body = b'{"messageId":"x","properties":{"humidity":2}}'
    # (what, datagram, expected: "rst" | "drop" | "rst_or_drop" | "4.xx")
    cases = [
        ("empty datagram", b"", "drop"),
        ("1 byte", b"\x40", "drop"),
        ("3 bytes (truncated header)", b"\x40\x02\x12", "drop"),
        ("version 2", hdr(ver=2) + opts_for() + b"\xff" + body, "drop"),
        ("version 0", hdr(ver=0) + opts_for() + b"\xff" + body, "drop"),
        ("token length 9", hdr(tkl=9) + b"123456789" + opts_for() + b"\xff" + body, "rst"),
        ("token length 15", hdr(tkl=15) + b"x" * 15 + opts_for() + b"\xff" + body, "rst"),
        ("token longer than the datagram", hdr(tkl=8) + b"abc", "rst"),
        ("option delta nibble 15 (not 0xFF)", hdr(tkl=1) + b"t" + b"\xf1x" + b"\xff" + body,
         "rst"),
        ("option length nibble 15", hdr(tkl=1) + b"t" + b"\xbfpath", "rst"),
        ("option value past the end", hdr(tkl=1) + b"t" + b"\xb8abc", "rst"),
        ("extended delta byte missing", hdr(tkl=1) + b"t" + b"\xd0", "rst"),
        ("extended length bytes missing", hdr(tkl=1) + b"t" + b"\xbe\x01", "rst"),
        ("payload marker with no payload", hdr(tkl=1) + b"t" + opts_for() + b"\xff", "rst"),
        ("empty message (0.00 CON) with a token", hdr(code=0, tkl=2) + b"ab", "rst"),
        ("empty message with options", hdr(code=0) + b"\xb1a", "rst"),
        ("too many options (60 Uri-Path)",
         hdr(tkl=1) + b"t" + c.enc_options([(c.URI_PATH, "a")] * 60) + b"\xff" + body,
         "4.xx_or_rst"),
        ("option number overflow (delta 65535+)",
         hdr(tkl=1) + b"t" + b"\xe0\xff\xff" + b"\xe0\xff\xff" + b"\xff" + body, "4.xx_or_rst"),
        ("a response code from a client (2.04 CON)", hdr(code=c.CHANGED, tkl=1) + b"t",
         "rst_or_drop"),
        ("a reserved class (1.00)", hdr(code=32, tkl=1) + b"t" + opts_for(), "rst_or_drop"),
        ("unknown method 0.31", hdr(code=31, tkl=1) + b"t" + opts_for() + b"\xff" + body,
         "4.xx_or_rst"),
        ("ACK for nothing", hdr(mtype=c.ACK, code=0), "drop"),
        ("RST for nothing", hdr(mtype=c.RST, code=0), "drop"),
        ("NON with token length 9", hdr(mtype=c.NON, tkl=9) + b"123456789", "drop"),
        ("Uri-Path segment of 300 bytes", hdr(tkl=1) + b"t" + c.enc_options(
            [(c.URI_PATH, P), (c.URI_PATH, "x" * 300), (c.URI_PATH, "properties"),
             (c.URI_PATH, "report")]) + b"\xff" + body, "4.xx_or_rst"),
        ("Uri-Query without '='", hdr(tkl=1) + b"t" + c.enc_options(
            c.path_options(c.report_path(P, "c-002"), ("token",))) + b"\xff" + body,
         "4.xx_or_rst"),
        ("invalid UTF-8 in a Uri-Path", hdr(tkl=1) + b"t" + c.enc_options(
            [(c.URI_PATH, b"\xff\xfe"), (c.URI_PATH, "c-002")]) + b"\xff" + body, "4.xx_or_rst"),
    ]
    mid = 0x2000
    verdicts = {}
    for what, dg, want in cases:
        mid += 1
        if len(dg) >= 4:
            dg = dg[:2] + struct.pack("!H", mid) + dg[4:]
        bad.send(dg)
        resp = bad.recv(0.5)
        if resp is None:
            got = "drop"
        elif resp.type == c.RST:
            got = "rst"
        elif resp.code >> 5 in (4, 5):
            got = "4.xx"
        else:
            got = "other:%r" % resp
        verdicts[what] = got
        ok = got == want or (want == "rst_or_drop" and got in ("rst", "drop")) or (
            want == "4.xx_or_rst" and got in ("4.xx", "rst"))
        if resp is not None and resp.type in (c.ACK, c.RST):
            ok = ok and resp.mid == mid
        t.check(ok, "%s: %s" % (what, want), "got %s" % got)
        t.check(gw.alive(), "gateway alive after: %s" % what)
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE device='c-002'"), 0,
         "none of them stored anything")

    # CoAP ping: an empty CON is answered with RST (RFC 7252 4.3)
    bad.send(hdr(code=0, mid=0x3000))
    resp = bad.recv(1)
    t.check(resp is not None and resp.type == c.RST and resp.mid == 0x3000,
            "CoAP ping (empty CON): RST with its message id", resp)

    # random mutations of a valid request, from many source ports
    rnd = random.Random(7)
    valid = c.encode(c.CON, c.POST, 1, b"tk", c.path_options(c.report_path(P, "c-003"),
                                                             c.dev_query("c-003")) +
                     [(c.CONTENT_FORMAT, 50)], c.report_body("f", {"humidity": 3}))
    socks = [c.Client(port) for _ in range(8)]
    for i in range(N_FUZZ):
        b = bytearray(valid)
        for _ in range(rnd.randint(1, 6)):
            op = rnd.randint(0, 3)
            if op == 0 and b:
                b[rnd.randrange(len(b))] = rnd.randrange(256)
            elif op == 1 and b:
                del b[rnd.randrange(len(b)):]
            elif op == 2:
                b.insert(rnd.randrange(len(b) + 1), rnd.randrange(256))
            else:
                b += bytes(rnd.randrange(256) for _ in range(rnd.randint(1, 20)))
        socks[i % len(socks)].send(bytes(b))
        if i % 200 == 199:
            while any(s.recv_raw(0) for s in socks):
                pass
    t.check(gw.alive(), "gateway alive after %d mutated datagrams" % N_FUZZ)
    for s in socks:
        while s.recv_raw(0.05):
            pass
    m1 = gw.metrics()
    counted = {k: v - m0.get(k, 0) for k, v in m1.items() if k.startswith("coap_") and
               v - m0.get(k, 0) > 0}
    t.info("coap counters moved: %r" % counted)
    malformed = sum(v for k, v in counted.items()
                    if any(w in k for w in ("malformed", "bad", "dropped", "error", "rst")))
    t.check(malformed >= 16, "malformed datagrams counted in iotgw_coap_* (>= 16)", counted)

    # well-behaved afterwards
    r = c.report(good, P, "c-001", "after", {"humidity": 4})
    t.eq(r and r.code_str, "2.04", "a well-behaved device is still served")
    fresh = c.Client(port)
    r = c.report(fresh, P, "c-002", "after", {"humidity": 5})
    t.eq(r and r.code_str, "2.04", "the device whose path the bad datagrams used is served too")
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")
    con = __import__("sqlite3").connect(gw.db_path)
    try:
        t.eq(con.execute("PRAGMA integrity_check").fetchone()[0], "ok",
             "PRAGMA integrity_check: ok")
    finally:
        con.close()
    for s in socks + [good, bad, fresh]:
        s.close()
    _ = time


g.run(main)

# Proves PROXY protocol v2 on MQTT listeners with "proxy_protocol": the header's IPv4 / IPv6 source becomes the session's peer (online event payload), LOCAL keeps the socket's; no header, a sender not in "from", garbage, v1 text, an oversized length, a UDP family, a truncated header and a header that never completes are refused and counted (iotgw_proxy_refused_total{reason}) while the gateway serves on; the per-source limits count the header's source, not the proxy; TLS after the header works; a bad CIDR is a config error naming the JSON path; and, with haproxy installed, HAProxy's send-proxy-v2 in front of the gateway records the client's own address.
import json
import os
import shutil
import socket
import struct
import subprocess
import time

import binframes as b
import gwtest as g
import tlscerts as tc
import tlsutil as tu

SIG = b"\r\n\r\n\x00\r\nQUIT\n"


def header(src, sport, dst="127.0.0.1", dport=1883, cmd=0x21, fam=None, tlv=b""):
    """A PROXY v2 header (cmd 0x21 PROXY, 0x20 LOCAL) for TCP over IPv4 or IPv6."""
    if ":" in src:
        body = (socket.inet_pton(socket.AF_INET6, src) + socket.inet_pton(socket.AF_INET6, "::1")
                + struct.pack(">HH", sport, dport))
        fam = 0x21 if fam is None else fam
    else:
        body = socket.inet_aton(src) + socket.inet_aton(dst) + struct.pack(">HH", sport, dport)
        fam = 0x11 if fam is None else fam
    body += tlv
    return SIG + bytes([cmd, fam]) + struct.pack(">H", len(body)) + body


def local_header():
    return SIG + bytes([0x20, 0x00, 0, 0])


def online_peer(gw, dev):
    rows = g.wait_until(lambda: gw.query(
        "SELECT payload FROM events WHERE device=? AND kind='online'", (dev,)), 5)
    return json.loads(rows[-1][0]).get("peer") if rows else None


def session(port, dev, hdr, msg_id):
    """Header + CONNECT + QoS 1 PUBLISH on a raw socket: (CONNACK rc, PUBACK ok, client)."""
    c = g.RawClient(port)
    c.send(hdr + g.device_connect_packet(dev))
    try:
        p = c.read_packet()
    except g.Closed:
        return None, False, c
    if p is None or p.type != g.CONNACK:
        return None, False, c
    ack = c.publish_wait(g.report_topic(dev), g.report_payload(msg_id, {"temperature": 20}), 3)
    return p.rc, ack is not None and ack.pid == 3, c


def refused(gw, port, data, reason, close_after=False, wait=5.0):
    """Sends data; True when the gateway closes the connection and counts reason."""
    m0 = gw.metric("proxy_refused_total", reason=reason)
    c = g.RawClient(port)
    c.send(data)
    if close_after:
        c.sock.shutdown(socket.SHUT_WR)
    closed = c.wait_closed(wait)
    c.sock.close()
    counted = g.wait_until(lambda: gw.metric("proxy_refused_total", reason=reason) > m0, 5)
    return closed and bool(counted)


class TlsAfterHeader(tu.TlsRaw):
    """tlsutil's raw MQTT-over-TLS client, the PROXY header sent in clear before the handshake."""

    def __init__(self, port, ctx, hdr, timeout=5.0):
        raw = socket.create_connection((g.HOST, port), timeout=timeout * g.SLOW)
        raw.sendall(hdr)
        self.sock = ctx.wrap_socket(raw, server_hostname="localhost")
        self.buf = bytearray()
        self.closed = False
        self.auto_puback = True
        self.timeout = timeout


def stored(gw, msg_id):
    return gw.scalar("SELECT count(*) FROM events WHERE msg_id=?", (msg_id,)) == 1


def main(t):
    work = os.path.join(os.environ.get("TMPDIR", "/tmp"), "iotgw-proxy39-%d" % os.getpid())
    os.makedirs(work)
    try:
        run(t, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(t, work):
    ca = tc.CA(work, "ca")
    srv_crt, srv_key = tc.server_cert(ca)
    proxy = {"from": ["127.0.0.1", "::1"]}
    gw = g.Gateway(n_devices=20, config={
        "log_level": "debug",
        "limits": {"max_connections_per_source": 2},
        "adapters": {"mqtt": {"connect_timeout_ms": 1500, "listeners": [
            {"address": g.HOST, "port": 0, "proxy_protocol": proxy},
            {"address": g.HOST, "port": 0, "proxy_protocol": {"from": ["10.0.0.0/8"]}},
            {"address": g.HOST, "port": 0, "proxy_protocol": {"from": ["127.0.0.0/8"]},
             "tls": {"cert": srv_crt, "key": srv_key}},
            {"address": g.HOST, "port": 0}]}}})
    port, other, tls_port, plain = (tu.listener_port(gw, "mqtt", i) for i in range(4))
    t.check(port and other and tls_port and plain, "four MQTT listeners", gw.listeners)

    # --- the header's source becomes the peer -------------------------------------------------
    rc, ok, c = session(port, "t-001", header("192.0.2.10", 50001), "px-v4")
    t.eq(rc, 0, "PROXY v4 header then CONNECT: CONNACK 0")
    t.check(ok, "QoS 1 PUBLISH after the header acknowledged")
    t.eq(online_peer(gw, "t-001"), "192.0.2.10:50001", "online event peer is the header's source")
    t.check(stored(gw, "px-v4"), "report stored")
    c.sock.close()
    # TLVs after the addresses are skipped; the header and CONNECT in separate writes
    c = g.RawClient(port)
    hdr = header("2001:db8::7", 4660, tlv=b"\x02\x00\x04abcd")
    c.send(hdr[:7])
    time.sleep(0.05)  # (two TCP segments: the header is reassembled)
    c.send(hdr[7:])
    t.eq(c.connect_device("t-002"), 0, "PROXY v6 header with a TLV, in two writes: CONNACK 0")
    t.eq(online_peer(gw, "t-002"), "[2001:db8::7]:4660", "online peer is the IPv6 source")
    c.sock.close()
    rc, ok, c = session(port, "t-003", local_header(), "px-local")
    t.eq(rc, 0, "LOCAL header: CONNACK 0")
    t.eq(online_peer(gw, "t-003"), "127.0.0.1:%d" % c.sock.getsockname()[1],
         "LOCAL keeps the socket's peer")
    c.sock.close()
    # the logs name the header's source as the peer, and the proxy
    t.check(gw.find_log(msg="PROXY header", peer="192.0.2.10:50001"),
            "log line with the header's source as peer", gw.log_tail(5))

    # --- refusals -------------------------------------------------------------------------------
    t.check(refused(gw, port, g.device_connect_packet("t-004"), "signature"),
            "no header (CONNECT first) on a proxy listener: closed, reason=signature")
    t.check(refused(gw, other, header("192.0.2.11", 1000) + g.device_connect_packet("t-004"),
                    "source"), "sender 127.0.0.1 not in from [10.0.0.0/8]: closed, reason=source")
    t.check(refused(gw, port, os.urandom(64).replace(b"\r", b"x"), "signature"),
            "garbage: closed, reason=signature")
    t.check(refused(gw, port, b"PROXY TCP4 192.0.2.1 127.0.0.1 1000 1883\r\n", "v1"),
            "v1 text header: closed, reason=v1")
    t.check(refused(gw, port, SIG + b"\x21\x11\xff\xff" + b"\0" * 32, "too_long"),
            "length 65535: closed at once, reason=too_long")
    t.check(refused(gw, port, header("192.0.2.12", 1000, fam=0x12), "family"),
            "UDP over IPv4 on a stream: closed, reason=family")
    t.check(refused(gw, port, SIG + b"\x11\x11\x00\x0c", "version"),
            "version 1 in the binary form: closed, reason=version")
    t.check(refused(gw, port, header("192.0.2.13", 1000)[:20], "truncated", close_after=True),
            "peer closes in the middle of the header: counted, reason=truncated")
    t0 = time.monotonic()
    t.check(refused(gw, port, header("192.0.2.14", 1000)[:20], "timeout", wait=10),
            "half a header then silence: closed, reason=timeout")
    t.check(time.monotonic() - t0 >= 1.2, "... at connect_timeout_ms (1500 ms)",
            time.monotonic() - t0)
    t.check(gw.find_log(msg="PROXY protocol header refused; closing"),
            "refusals logged with the peer", gw.log_tail(5))
    rc, ok, c = session(port, "t-005", header("192.0.2.15", 1000), "px-after")
    t.check(rc == 0 and ok, "the proxy listener still serves after the refusals")
    c.sock.close()

    # --- per-source limits count the header's source, not the proxy ----------------------------
    held = []
    for i, dev in enumerate(("t-006", "t-007", "t-008")):
        c = g.RawClient(port)
        c.send(header("198.51.100.%d" % (i + 1), 2000))
        held.append(c)
        t.eq(c.connect_device(dev), 0, "%s through the proxy from its own source: CONNACK 0" % dev)
    m0 = gw.metric("connections_limited_total", reason="per_source")
    same = []
    for dev in ("t-009", "t-010", "t-011"):  # one after the other (two loops: no race)
        c = g.RawClient(port)
        c.send(header("198.51.100.50", 3000))
        same.append((dev, c))
        if dev != "t-011":
            t.eq(c.connect_device(dev), 0, "%s, one header source: CONNACK 0" % dev)
    t.check(same[2][1].wait_closed(5), "third of the same header source (max 2): closed")
    t.check(gw.metric("connections_limited_total", reason="per_source") > m0,
            "counted as per_source")
    for c in held + [c for _, c in same]:
        c.sock.close()

    # --- TLS after the header --------------------------------------------------------------------
    try:
        c = TlsAfterHeader(tls_port, tu.context(ca.cert), header("203.0.113.9", 40000))
        rc = c.connect_device("t-012")
        t.eq(rc, 0, "header, then TLS, then CONNECT: CONNACK 0")
        ack = c.publish_wait(g.report_topic("t-012"), g.report_payload("px-tls", {"temperature": 1}),
                             9)
        t.check(ack is not None, "QoS 1 over TLS after the header acknowledged")
        t.eq(online_peer(gw, "t-012"), "203.0.113.9:40000", "TLS session's peer is the header's")
        c.close()
    except Exception as e:  # noqa: BLE001
        t.check(False, "TLS after the header: %r" % e)
    t.check(refused(gw, tls_port, b"\x16\x03\x01\x00\xc8\x01\x00", "signature"),
            "TLS without the header on a TLS+proxy listener: closed, reason=signature")

    # the plain listener is untouched: its peer is the socket's
    c = g.RawClient(plain)
    t.eq(c.connect_device("t-013"), 0, "plain listener without proxy_protocol: CONNACK 0")
    t.eq(online_peer(gw, "t-013"), "127.0.0.1:%d" % c.sock.getsockname()[1],
         "its peer is the socket's")
    c.sock.close()

    # --- haproxy in front (send-proxy-v2) ----------------------------------------------------------
    hp = shutil.which("haproxy")
    if not hp:
        t.info("haproxy not installed: the HAProxy part is skipped")
    else:
        fport = g.free_port()
        cfg = os.path.join(work, "haproxy.cfg")
        with open(cfg, "w") as f:
            f.write("global\n  maxconn 64\n"
                    "defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n"
                    "  timeout server 30s\n"
                    "frontend f\n  bind %s:%d\n  default_backend b\n"
                    "backend b\n  server gw %s:%d send-proxy-v2\n" % (g.HOST, fport, g.HOST, port))
        hlog = open(os.path.join(work, "haproxy.log"), "wb")
        p = subprocess.Popen([hp, "-f", cfg, "-db"], stdout=hlog, stderr=subprocess.STDOUT,
                             stdin=subprocess.DEVNULL)
        g._started.append(p)

        def listening():
            try:
                socket.create_connection((g.HOST, fport), timeout=1).close()
                return True
            except OSError:
                return False
        try:
            t.check(g.wait_until(listening, 10), "haproxy listening")
            rc, ok, c = session(fport, "t-014", b"", "px-haproxy")
            t.eq(rc, 0, "through haproxy send-proxy-v2: CONNACK 0")
            t.check(ok, "through haproxy: QoS 1 acknowledged")
            t.eq(online_peer(gw, "t-014"), "127.0.0.1:%d" % c.sock.getsockname()[1],
                 "peer recorded is the client's own address and port, not haproxy's")
            c.sock.close()
        finally:
            p.terminate()
            p.wait(10)
            hlog.close()

    t.check(gw.alive(), "gateway alive")
    t.eq(gw.stop(), 0, "clean shutdown")

    # --- the TCP adapter: header dribbled byte by byte, then the login frame ----------------------
    dev = b.meter_devices(["mtr00002"])
    tg = b.tcp_gateway([b.METER], dev, tcp={"login_timeout_ms": 1000, "listeners": [
        {"address": g.HOST, "port": 0, "product": b.METER,
         "proxy_protocol": {"from": ["127.0.0.0/8"]}}]})
    tport = g.adapter_port(tg, "tcp")
    d = b.Dev(tport)
    d.dribble(header("192.0.2.77", 6000))
    d.send(b.meter_login("mtr00002", b.meter_secret("mtr00002")))
    t.eq(len(d.recv_n(b.METER_ACK_LEN)), b.METER_ACK_LEN, "tcp: header (one byte a write), login acked")
    t.eq(online_peer(tg, "mtr00002"), "192.0.2.77:6000", "tcp: online peer is the header's source")
    d.s.close()
    m0 = tg.metric("proxy_refused_total", reason="timeout")
    d = b.Dev(tport)
    d.send(SIG[:5])
    t.eq(d.recv_n(1, 5), b"", "tcp: half a header: closed")
    t.check(g.wait_until(lambda: tg.metric("proxy_refused_total", reason="timeout") > m0, 5),
            "tcp: counted at login_timeout_ms, reason=timeout")
    d.s.close()
    t.eq(tg.stop(), 0, "tcp gateway: clean shutdown")

    # --- config errors name the file and the JSON path ------------------------------------------
    bad = g.Gateway(start=False, config={"adapters": {"mqtt": {"listeners": [
        {"address": g.HOST, "port": 0, "proxy_protocol": {"from": ["127.0.0.1", "10.1.2.3/8"]}}]}}})
    code, out, err = g.check_config(bad)
    t.eq(code, 2, "bad proxy_protocol: --check-config exit 2")
    t.check("adapters.mqtt.listeners[0].proxy_protocol.from[1]" in err and "10.1.2.3/8" in err,
            "names the JSON path and the bad CIDR", err)
    bad2 = g.Gateway(start=False, config={"adapters": {"mqtt": {"listeners": [
        {"address": g.HOST, "port": 0, "proxy_protocol": {"from": [], "x": 1}}]}}})
    code, out, err = g.check_config(bad2)
    t.check(code == 2 and "adapters.mqtt.listeners[0].proxy_protocol.from" in err and
            "adapters.mqtt.listeners[0].proxy_protocol.x" in err,
            "empty from and an unknown key: both named", err)


g.run(main)

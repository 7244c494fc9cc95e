# Proves the TCP adapter over TLS: a login frame over a server-verified session; a client certificate logs its device in without a login frame (certificate-or-secret product), a login for another device on it is refused, a certificate naming no device of the product is refused; TLS-PSK 1.2 and 1.3 log in without a login frame; frames followed by a close_notify still get their acks (half-close); malformed TCP and MQTT frames over TLS are answered as in plaintext (bad CRC counted and not acked, oversized frame closed, MQTT protocol errors closed), the gateway stays up and PRAGMA integrity_check is ok.
import os
import shutil
import socket
import ssl
import struct
import time

import binframes as b
import gwtest as g
import tlscerts as tc
import tlsutil as tu

IDS = ["mtr00001", "mtr00002", "mtr00003", "mtr00004"]


def reports(gw, dev):
    return gw.scalar("SELECT count(*) FROM events WHERE device=? AND kind='property'", (dev,))


def online(gw, dev):
    return gw.scalar("SELECT count(*) FROM events WHERE device=? AND kind='online'", (dev,))


def halfclose(port, ctx, data, n, timeout=10.0):
    """Sends data and a TLS close_notify at once (an SSL object over memory BIOs), then reads
    what the server still sends until it closes; the first n bytes of it."""
    sock = socket.create_connection((g.HOST, port), timeout=timeout * g.SLOW)
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    obj = ctx.wrap_bio(inc, out, server_hostname="localhost")

    def flush():
        data_out = out.read()
        if data_out:
            sock.sendall(data_out)

    try:
        while True:
            try:
                obj.do_handshake()
                break
            except ssl.SSLWantReadError:
                flush()
                chunk = sock.recv(65536)
                if not chunk:
                    return b""
                inc.write(chunk)
        flush()
        obj.write(data)
        try:
            obj.unwrap()
        except ssl.SSLWantReadError:
            pass
        flush()  # the frames and the close_notify in one go
        got = b""
        deadline = time.monotonic() + timeout * g.SLOW
        while len(got) < n and time.monotonic() < deadline:
            chunk = sock.recv(65536)
            if not chunk:
                break
            inc.write(chunk)
            while True:
                try:
                    got += obj.read(65536)
                except (ssl.SSLWantReadError, ssl.SSLZeroReturnError):
                    break
        return got[:n]
    except (OSError, ssl.SSLError):
        return b""
    finally:
        sock.close()


def main(t):
    work = os.path.join(os.environ.get("TMPDIR", "/tmp"), "iotgw-tls91-%d" % os.getpid())
    os.makedirs(work)
    try:
        run(t, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(t, work):
    ca = tc.CA(work, "ca")
    crt, key = tc.server_cert(ca)
    tls = {"cert": crt, "key": key, "ca": ca.cert, "client_cert": "optional", "psk": True}
    meter = g.load_product(b.METER)
    meter["auth"] = {"mode": "certificate-or-secret"}
    gw = g.Gateway(products=[meter, g.THERMO],
                   devices=b.meter_devices(IDS) + g.make_devices(["t-001"]),
                   config={"adapters": {
                       "mqtt": {"listeners": [{"address": g.HOST, "port": 0, "tls": tls}]},
                       "tcp": {"listeners": [{"address": g.HOST, "port": 0, "product": b.METER,
                                              "tls": tls}]}}})
    port = g.adapter_port(gw, "tcp")
    mport = gw.mqtt_port
    t.check(port and mport, "TLS listeners for tcp and mqtt", gw.listeners)
    ctx = tu.context(ca.cert)

    # --- login frame over a server-verified session --------------------------------------------
    d = tu.TlsDev(port, ctx)
    d.send(b.meter_login(IDS[0], b.meter_secret(IDS[0])))
    t.eq(d.recv_n(10), b.meter_ack(1, 1), "login over TLS acked")
    d.send(b.meter_report(2))
    t.eq(d.recv_n(10), b.meter_ack(2, 2), "report over TLS acked after commit")
    t.eq(reports(gw, IDS[0]), 1, "report stored")

    # --- malformed frames over TLS: as in plaintext -----------------------------------------------
    m0 = gw.metrics()
    d.send(b.meter_report(3, crc_ok=False))
    t.check(d.quiet_for(0.6 * g.SLOW), "bad CRC over TLS: no ack, connection open")
    d.send(b.meter_report(4, pulses=5))
    t.eq(d.recv_n(10), b.meter_ack(4, 2), "next good frame over TLS acked")
    m1 = gw.metrics()
    t.eq(g.metric_delta(m0, m1, g.metric_key("tcp_bad_frames_total", reason="bad_check")), 1.0,
         "tcp_bad_frames_total{reason=bad_check} +1")
    d.send(bytes([0x68, 0xff, 0x00, 0x02, 0x00, 0x02]) + b"\0" * 10)
    t.check(d.wait_closed(5), "oversized length field over TLS: connection closed")
    t.check(g.wait_until(lambda: gw.metric("tcp_bad_frames_total", reason="oversized") >= 1, 5),
            "tcp_bad_frames_total{reason=oversized} counted")

    # --- TLS close_notify right after the frames: a half-close, the acks still come --------------
    got = halfclose(port, ctx, b.meter_login(IDS[0], b.meter_secret(IDS[0]), seq=10) +
                    b.meter_report(11, pulses=31) + b.meter_report(12, pulses=32), 30)
    t.eq(got, b.meter_ack(10, 1) + b.meter_ack(11, 2) + b.meter_ack(12, 2),
         "frames then close_notify: every ack still sent (half-close over TLS)")

    # --- a client certificate logs its device in without a login frame ----------------------------
    c_crt, c_key = ca.issue(IDS[1])
    d = tu.TlsDev(port, tu.context(ca.cert, c_crt, c_key))
    d.send(b.meter_report(1, pulses=11))
    t.eq(d.recv_n(10), b.meter_ack(1, 2), "certificate session: report acked without a login")
    t.check(g.wait_until(lambda: online(gw, IDS[1]) == 1, 5), "online event for the certificate")
    d.send(b.meter_login(IDS[1], "whatever", seq=2))
    t.eq(d.recv_n(10), b.meter_ack(2, 1), "a login frame on it is acked (secret not checked)")
    d.send(b.meter_login(IDS[2], b.meter_secret(IDS[2]), seq=3))
    t.check(d.wait_closed(5), "a login for another device on it: closed")
    n_crt, n_key = ca.issue("nobody")
    d = tu.TlsDev(port, tu.context(ca.cert, n_crt, n_key))
    t.check(d.wait_closed(5), "a certificate naming no device of the product: closed")
    t.check(g.wait_until(lambda: gw.metric("tcp_login_failures_total",
                                           reason="unknown_device") >= 1, 5),
            "tcp_login_failures_total{reason=unknown_device} counted")

    # --- TLS-PSK: logged in by the PSK ------------------------------------------------------------
    for version, dev in (("1.2", IDS[2]), ("1.3", IDS[3])):
        psk = tu.PskClient(port, dev, b.meter_secret(dev), version)
        psk.send(b.meter_report(1, pulses=21) + b.meter_heartbeat(2))
        got = psk.read(20, 10)
        err = psk.close()
        t.eq(got, b.meter_ack(1, 2) + b.meter_ack(2, 4),
             "TLS %s PSK: report and heartbeat acked without a login (%s)" % (version,
                                                                              err[-120:]))
        t.eq(reports(gw, dev), 1, "TLS %s PSK report stored" % version)

    # --- malformed MQTT over TLS ------------------------------------------------------------------
    e0 = gw.metrics()
    cases = [b"\x30\xff\xff\xff\xff\x01" + b"\x00" * 8,  # 5-byte remaining length
             g.publish_packet("/thermo/t-001/properties/#", "{}"),  # wildcard in a topic
             b"\xf0\x00"]  # reserved packet type
    for i, data in enumerate(cases):
        c = tu.TlsRaw(mport, ctx)
        t.eq(c.connect_device("t-001"), 0, "MQTT over TLS case %d: CONNACK 0" % i)
        c.send(data)
        t.check(c.wait_closed(5), "MQTT over TLS case %d: malformed packet closes" % i)
        c.close()
    e1 = gw.metrics()
    errs = sum(v for k, v in e1.items() if k.startswith("mqtt_protocol_errors_total")) - \
        sum(v for k, v in e0.items() if k.startswith("mqtt_protocol_errors_total"))
    t.eq(errs, float(len(cases)), "each counted in mqtt_protocol_errors_total")
    c = tu.TlsRaw(mport, ctx)
    t.eq(c.connect_device("t-001"), 0, "MQTT over TLS still served")
    p = c.publish_wait(g.report_topic("t-001"), g.report_payload("after", {"temperature": 3}), 9)
    t.check(p is not None and p.pid == 9, "QoS 1 over TLS acknowledged after the malformed ones")
    c.close()

    t.check(gw.alive(), "gateway alive")
    t.eq(gw.scalar("PRAGMA integrity_check"), "ok", "PRAGMA integrity_check ok")
    t.eq(gw.stop(), 0, "clean shutdown")


g.run(main)

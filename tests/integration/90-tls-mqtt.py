# Proves MQTT over TLS: mosquitto_pub and paho with server verification; client certificates (right CN stored without a password, CN != client id refused with CONNACK 5 / 0x87, unknown CA, expired, "certificate" products need one); TLS-PSK under TLS 1.2 and 1.3; plaintext to the TLS port and TLS to the plaintext port refused cleanly; a stalled handshake cut at its timeout; SIGHUP swaps the server certificate for new handshakes while an established session goes on; CRL revocation after a reload; session tickets survive a reload of unchanged CA/CRL files (SIGHUP, API) but not a CRL change, and a TLS 1.3 PSK ticket resumes with the device's identity until its secret changes; the certificate expiry gauge.
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time

import gwapi
import gwtest as g
import tlscerts as tc
import tlsutil as tu

THERMO_C = dict(g.THERMO, id="thermoc", auth={"mode": "certificate-or-secret"})
THERMO_X = dict(g.THERMO, id="thermox", auth={"mode": "certificate"})
DEVICES = (g.make_devices(["t-001", "t-002", "t-003"]) +
           g.make_devices(["c-001", "c-002", "c-003", "c-004"], "thermoc") +
           g.make_devices(["x-001"], "thermox"))


def qos1(c, topic, msg_id, pid):
    p = c.publish_wait(topic, g.report_payload(msg_id, {"temperature": 21.5}), pid)
    return p is not None and p.pid == pid


def stored(gw, msg_id):
    return gw.scalar("SELECT count(*) FROM events WHERE msg_id=?", (msg_id,)) == 1


def serial_of(port, ca_cert):
    """The serial number of the certificate the server shows to a new handshake."""
    ctx = tu.context(ca_cert)
    with socket.create_connection((g.HOST, port), timeout=5 * g.SLOW) as raw:
        with ctx.wrap_socket(raw, server_hostname="localhost") as s:
            der = s.getpeercert(binary_form=True)
    out = subprocess.run(["openssl", "x509", "-inform", "DER", "-noout", "-serial"], input=der,
                         capture_output=True, timeout=30).stdout.decode()
    return out.strip()


def failures(gw, reason):
    return gw.metric("tls_handshake_failures_total", reason=reason)


def cert_session(port, ctx, dev, session=None):
    """CONNECT as dev (its certificate in ctx, no password), offering session: (CONNACK code,
    resumed, the new session with its ticket)."""
    c = tu.TlsRaw(port, ctx, timeout=10, session=session)
    try:
        c.send(g.connect_packet(dev))
        p = c.read_packet()  # (the ticket comes in the same write, before it)
        return (p.rc if p is not None and p.type == g.CONNACK else None,
                c.sock.session_reused, c.sock.session)
    finally:
        c.close()


def psk_session(port, dev, secret, msg_id, sess_in=None, sess_out=None):
    """TLS 1.3 PSK as dev, CONNECT without a password and a QoS 1 report: CONNACK 0 and PUBACK."""
    psk = tu.PskClient(port, dev, secret, "1.3", sess_in=sess_in, sess_out=sess_out)
    psk.send(g.connect_packet(dev) + g.publish_packet(
        g.report_topic(dev), g.report_payload(msg_id, {"temperature": 17}), 1, 9))
    got = psk.read(8, 10)
    psk.close()
    return got == bytes([0x20, 2, 0, 0, 0x40, 2, 0, 9])


def resumed(gw):
    return gw.metric("tls_handshakes_total", kind="resumed")


def main(t):
    work = os.path.join(os.environ.get("TMPDIR", "/tmp"), "iotgw-tls90-%d" % os.getpid())
    os.makedirs(work)
    try:
        run(t, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(t, work):
    ca = tc.CA(work, "ca")
    other = tc.CA(work, "other")
    srv_crt, srv_key = tc.server_cert(ca)
    crl = ca.crl(os.path.join(work, "ca.crl"))
    live_crt, live_key = os.path.join(work, "server.crt"), os.path.join(work, "server.key")
    shutil.copy(srv_crt, live_crt)
    shutil.copy(srv_key, live_key)
    tls = {"cert": live_crt, "key": live_key, "ca": ca.cert, "crl": crl,
           "client_cert": "optional", "psk": True,
           "handshake_timeout_ms": 1000}
    gw = g.Gateway(products=[g.THERMO, THERMO_C, THERMO_X], devices=DEVICES,
                   config={"adapters": {"mqtt": {"listeners": [
                       {"address": g.HOST, "port": 0, "tls": tls},
                       {"address": g.HOST, "port": 0}]}}})
    port = tu.listener_port(gw, "mqtt", 0)
    plain = tu.listener_port(gw, "mqtt", 1)
    t.check(port and plain and port != plain, "two MQTT listeners (TLS, plain)", gw.listeners)
    server_ctx = tu.context(ca.cert)

    # --- mosquitto_pub with --cafile (server verified), password ----------------------------
    p = subprocess.run(["mosquitto_pub", "-h", "localhost", "-p", str(port), "--cafile", ca.cert,
                        "-i", "t-001", "-u", "thermo", "-P", g.secret_of("t-001"), "-t",
                        g.report_topic("t-001"), "-q", "1", "-V", "mqttv311", "-m",
                        g.report_payload("mp-1", {"temperature": 20})],
                       capture_output=True, timeout=30 * g.SLOW)
    t.eq(p.returncode, 0, "mosquitto_pub --cafile over TLS: exit 0 (%s)" % p.stderr[-200:])
    t.check(stored(gw, "mp-1"), "mosquitto_pub QoS 1 report over TLS stored")
    # ... and a client that does not trust the gateway's CA refuses it
    p = subprocess.run(["mosquitto_pub", "-h", "localhost", "-p", str(port), "--cafile",
                        other.cert, "-i", "t-001", "-u", "thermo", "-P", g.secret_of("t-001"),
                        "-t", g.report_topic("t-001"), "-m", "x"],
                       capture_output=True, timeout=30 * g.SLOW)
    t.check(p.returncode != 0, "mosquitto_pub with another CA refuses the server certificate")

    # --- paho with server verification -------------------------------------------------------
    c = g.paho_client(gw, "t-002", connect=False)
    c.tls_set(ca_certs=ca.cert)
    c.connect(g.HOST, port, 60)
    c.loop_start()
    g.wait_until(lambda: c.connected_rc is not None, 10 * g.SLOW)
    t.eq(c.connected_rc, 0, "paho over TLS (server verified): CONNACK 0")
    info = c.publish(g.report_topic("t-002"), g.report_payload("paho-1", {"temperature": 19}), 1)
    t.check(g.wait_until(info.is_published, 10), "paho QoS 1 over TLS acknowledged")
    t.check(stored(gw, "paho-1"), "paho report stored")
    c.disconnect()
    c.loop_stop()

    # --- client certificates ------------------------------------------------------------------
    c1_crt, c1_key = ca.issue("c-001")
    rc, cl = tu.connack(port, tu.context(ca.cert, c1_crt, c1_key), "c-001")
    t.eq(rc, 0, "certificate CN=c-001, product certificate-or-secret, no password: CONNACK 0")
    if rc == 0:
        t.check(qos1(cl, g.report_topic("c-001", "thermoc"), "cert-1", 1),
                "certificate-only session: QoS 1 acknowledged")
        t.check(stored(gw, "cert-1"), "certificate-only session: report stored")
        cl.close()
    m0 = gw.metric("mqtt_auth_failures_total", reason="certificate")
    rc, _ = tu.connack(port, tu.context(ca.cert, c1_crt, c1_key), "c-002")
    t.eq(rc, 5, "certificate CN=c-001, CONNECT as c-002: CONNACK 5")
    rc, _ = tu.connack(port, tu.context(ca.cert, c1_crt, c1_key), "c-002", "thermoc",
                       g.secret_of("c-002"), level=5)
    t.eq(rc, 0x87, "same over MQTT 5 (even with c-002's password): CONNACK 0x87")
    t.check(gw.metric("mqtt_auth_failures_total", reason="certificate") >= m0 + 2,
            "identity mismatches counted (mqtt_auth_failures_total{reason=certificate})")
    # a certificate-or-secret product still takes the password without a certificate
    rc, cl = tu.connack(port, server_ctx, "c-002", "thermoc", g.secret_of("c-002"))
    t.eq(rc, 0, "certificate-or-secret product, password without certificate: CONNACK 0")
    if rc == 0:
        cl.close()
    # a device-secret product needs its password even with a certificate naming it
    t3_crt, t3_key = ca.issue("t-003")
    rc, _ = tu.connack(port, tu.context(ca.cert, t3_crt, t3_key), "t-003", "thermo")
    t.eq(rc, 4, "device-secret product, certificate but no password: CONNACK 4")
    rc, cl = tu.connack(port, tu.context(ca.cert, t3_crt, t3_key), "t-003", "thermo",
                        g.secret_of("t-003"))
    t.eq(rc, 0, "device-secret product, certificate and password: CONNACK 0")
    if rc == 0:
        cl.close()
    # a "certificate" product: the password alone is not enough
    rc, _ = tu.connack(port, server_ctx, "x-001", "thermox", g.secret_of("x-001"))
    t.eq(rc, 5, "certificate product, password only: CONNACK 5")
    x_crt, x_key = ca.issue("x-001")
    rc, cl = tu.connack(port, tu.context(ca.cert, x_crt, x_key), "x-001")
    t.eq(rc, 0, "certificate product with its certificate: CONNACK 0")
    if rc == 0:
        cl.close()

    f0 = failures(gw, "certificate")
    o_crt, o_key = other.issue("c-003")
    rc, how = tu.connack(port, tu.context(ca.cert, o_crt, o_key), "c-003")
    t.eq(rc, None, "certificate from an unknown CA refused (%s)" % how)
    e_crt, e_key = ca.issue("c-003", start="200101000000Z", end="210101000000Z", out="expired")
    rc, how = tu.connack(port, tu.context(ca.cert, e_crt, e_key), "c-003")
    t.eq(rc, None, "expired certificate refused (%s)" % how)
    t.check(g.wait_until(lambda: failures(gw, "certificate") >= f0 + 2, 5),
            "both counted: tls_handshake_failures_total{reason=certificate}")
    t.check(gw.find_log(msg="TLS handshake failed", reason="certificate"),
            "refusal logged with reason=certificate and the peer")

    # --- TLS-PSK, TLS 1.2 and 1.3 ---------------------------------------------------------------
    for version in ("1.2", "1.3"):
        dev = "t-001" if version == "1.2" else "t-002"
        psk = tu.PskClient(port, dev, g.secret_of(dev), version)
        psk.send(g.connect_packet(dev) + g.publish_packet(
            g.report_topic(dev), g.report_payload("psk-" + version, {"temperature": 18}), 1, 7))
        got = psk.read(8, 10)
        err = psk.close()
        t.eq(got[:4], bytes([0x20, 2, 0, 0]), "TLS %s PSK (no password): CONNACK 0 (%s)"
             % (version, err[-200:]))
        t.eq(got[4:8], bytes([0x40, 2, 0, 7]), "TLS %s PSK: PUBACK 7" % version)
        t.check(stored(gw, "psk-" + version), "TLS %s PSK report stored" % version)
    f0 = failures(gw, "psk")
    psk = tu.PskClient(port, "t-003", "wrong-key", "1.2")
    psk.send(g.connect_packet("t-003"))
    got = psk.read(4, 5)
    psk.close()
    t.eq(got, b"", "TLS 1.2 PSK with a wrong key: no CONNACK")
    t.check(g.wait_until(lambda: failures(gw, "psk") > f0, 5),
            "wrong PSK counted: tls_handshake_failures_total{reason=psk}")

    # --- wrong protocol on either port ------------------------------------------------------------
    f0 = failures(gw, "not_tls")
    raw = g.RawClient(port)
    raw.send(g.device_connect_packet("t-001"))
    t.check(raw.wait_closed(5), "plaintext MQTT to the TLS port: closed")
    t.check(g.wait_until(lambda: failures(gw, "not_tls") > f0, 5),
            "counted: tls_handshake_failures_total{reason=not_tls}")
    try:
        s = server_ctx.wrap_socket(socket.create_connection((g.HOST, plain), timeout=5),
                                   server_hostname="localhost")
        s.close()
        t.check(False, "TLS to the plaintext port fails")
    except (ssl.SSLError, OSError) as e:
        t.check(True, "TLS to the plaintext port fails (%s)" % type(e).__name__)
    cl = g.RawClient(plain)
    t.eq(cl.connect_device("t-003"), 0, "the plaintext port still serves")
    cl.sock.close()

    # --- a handshake that never finishes is cut at handshake_timeout_ms -------------------------
    f0 = failures(gw, "timeout")
    raw = socket.create_connection((g.HOST, port), timeout=5)
    raw.sendall(bytes([22, 3, 1, 0, 200]) + b"\x01\x00")  # a ClientHello that never completes
    t0 = time.monotonic()
    raw.settimeout(10 * g.SLOW)
    try:
        data = raw.recv(100)
    except OSError:
        data = b""
    took = time.monotonic() - t0
    raw.close()
    t.check(data == b"" and 0.7 <= took <= 5 * g.SLOW,
            "stalled handshake closed after ~1 s (%.2f s)" % took)
    t.check(g.wait_until(lambda: failures(gw, "timeout") > f0, 5),
            "counted: tls_handshake_failures_total{reason=timeout}")

    # --- expiry gauge -----------------------------------------------------------------------------
    exp = gw.metric("tls_cert_expiry_seconds", listener="mqtt:%s:%d" % (g.HOST, port), default=None)
    t.check(exp is not None and 29 * 86400 < exp <= 30 * 86400,
            "tls_cert_expiry_seconds{listener} about 30 days (%r)" % exp)

    # --- SIGHUP: a new server certificate for new handshakes; the old session goes on -------------
    c4_crt, c4_key = ca.issue("c-004")
    rc, keep = tu.connack(port, tu.context(ca.cert, c4_crt, c4_key), "c-004")
    t.eq(rc, 0, "c-004 connected before the reload")
    s0 = serial_of(port, ca.cert)
    new_crt, new_key = ca.issue("localhost", san="DNS:localhost,IP:127.0.0.1", out="server2",
                                days=20)
    shutil.copy(new_crt, live_crt + ".tmp")
    shutil.copy(new_key, live_key + ".tmp")
    os.replace(live_key + ".tmp", live_key)
    os.replace(live_crt + ".tmp", live_crt)
    # a session ticket from before the reload (which changes the CRL)
    x_ctx = tu.context(ca.cert, x_crt, x_key)
    rc, _, x_ticket = cert_session(port, x_ctx, "x-001")
    t.check(rc == 0 and x_ticket is not None and x_ticket.has_ticket,
            "x-001 (certificate): CONNACK 0 and a session ticket")
    # ... and revoke c-001 in the CRL the reload reads too
    ca.revoke(c1_crt)
    ca.crl(crl)
    r0 = gw.metric("tls_reloads_total")
    os.kill(gw.pid, signal.SIGHUP)
    t.check(g.wait_until(lambda: gw.metric("tls_reloads_total") > r0, 10),
            "SIGHUP: TLS files reloaded (tls_reloads_total)")
    s1 = serial_of(port, ca.cert)
    t.check(s0 and s1 and s0 != s1, "new handshakes see the new certificate (%s -> %s)" % (s0, s1))
    if rc == 0:
        t.check(qos1(keep, g.report_topic("c-004", "thermoc"), "keep-1", 3),
                "the session established before the reload goes on (QoS 1 acknowledged)")
        t.check(stored(gw, "keep-1"), "and its report is stored")
        keep.close()
    exp = gw.metric("tls_cert_expiry_seconds", listener="mqtt:%s:%d" % (g.HOST, port), default=None)
    t.check(exp is not None and 19 * 86400 < exp <= 20 * 86400,
            "expiry gauge follows the new certificate (%r)" % exp)
    rc, how = tu.connack(port, tu.context(ca.cert, c1_crt, c1_key), "c-001")
    t.eq(rc, None, "c-001 revoked by the reloaded CRL: refused (%s)" % how)
    rc, cl = tu.connack(port, tu.context(ca.cert, x_crt, x_key), "x-001")
    t.eq(rc, 0, "a certificate not revoked still connects")
    if rc == 0:
        cl.close()
    # the CRL changed: tickets issued before do not resume (a revoked certificate must not)
    res0 = resumed(gw)
    rc, reused, x_ticket = cert_session(port, x_ctx, "x-001", x_ticket)
    t.eq((rc, reused), (0, False), "a ticket from before a CRL change: full handshake, CONNACK 0")
    t.eq(resumed(gw) - res0, 0.0, "... not counted as resumed")

    # --- SIGHUP with the CA and CRL unchanged: tickets issued before it still resume -------------
    r0 = gw.metric("tls_reloads_total")
    os.kill(gw.pid, signal.SIGHUP)
    t.check(g.wait_until(lambda: gw.metric("tls_reloads_total") > r0, 10),
            "SIGHUP of unchanged files: TLS files reloaded")
    res0 = resumed(gw)
    rc, reused, x_ticket = cert_session(port, x_ctx, "x-001", x_ticket)
    t.eq((rc, reused), (0, True),
         "a ticket from before a SIGHUP (CA, CRL unchanged) resumes after it")
    t.eq(resumed(gw) - res0, 1.0, "... tls_handshakes_total{kind=resumed} +1")

    # --- POST /api/reload reads the files again too ---------------------------------------------
    r0 = gw.metric("tls_reloads_total")
    r = gwapi.api(gw, "POST", "/api/reload")
    t.eq(r.status, 200, "POST /api/reload: 200")
    t.check(g.wait_until(lambda: gw.metric("tls_reloads_total") > r0, 10),
            "POST /api/reload: TLS files reloaded (tls_reloads_total)")
    t.eq(serial_of(port, ca.cert), s1, "same certificate after an API reload of unchanged files")
    rc, reused, x_ticket = cert_session(port, x_ctx, "x-001", x_ticket)
    t.eq((rc, reused), (0, True), "a ticket from before an API reload resumes after it")

    # --- TLS 1.3 PSK tickets: the device's identity on resumption, void once its secret changes --
    sess1, sess2 = os.path.join(work, "psk1.sess"), os.path.join(work, "psk2.sess")
    old_secret, new_secret = g.secret_of("t-003"), "t003-rotated-secret"
    t.check(psk_session(port, "t-003", old_secret, "pskt-1", sess_out=sess1) and
            os.path.exists(sess1), "TLS 1.3 PSK t-003: CONNACK 0, PUBACK, a session ticket")
    res0 = resumed(gw)
    t.check(psk_session(port, "t-003", old_secret, "pskt-2", sess_in=sess1, sess_out=sess2),
            "PSK ticket resumed: the device's identity (CONNACK 0 without a password), PUBACK")
    t.eq(resumed(gw) - res0, 1.0, "... tls_handshakes_total{kind=resumed} +1")
    r0 = gw.metric("tls_reloads_total")
    r = gwapi.api(gw, "PATCH", "/api/devices/t-003", {"secret": new_secret})
    t.eq(r.status, 200, "PATCH t-003's secret: 200")
    t.check(g.wait_until(lambda: gw.metric("tls_reloads_total") > r0, 10),
            "the device change rebuilt the TLS context")
    res0 = resumed(gw)
    t.check(not psk_session(port, "t-003", old_secret, "pskt-3", sess_in=sess2),
            "the old secret with a ticket from before the change: refused")
    t.check(psk_session(port, "t-003", new_secret, "pskt-4", sess_in=sess2),
            "the new secret (the old ticket offered): CONNACK 0, PUBACK")
    t.eq(resumed(gw) - res0, 0.0, "the ticket from before the secret changed never resumed")

    # --- a broken file on reload: the reload is refused (file and JSON path logged), the old
    # context stays ----------------------------------------------------------------------------
    with open(live_crt, "w") as f:
        f.write("not a certificate\n")
    e0 = gw.metric("config_reloads_total", result="refused")
    mark = gw.log_mark()
    os.kill(gw.pid, signal.SIGHUP)
    t.check(g.wait_until(lambda: gw.metric("config_reloads_total", result="refused") > e0, 10),
            "a reload with a broken certificate is refused (config_reloads_total{refused})")
    t.check(gw.find_log(since=mark, path="adapters.mqtt.listeners[0].tls.cert"),
            "the refusal names the JSON path of the broken file", gw.log_tail(3))
    t.eq(serial_of(port, ca.cert), s1, "... and the previous certificate stays in use")
    t.check(gw.alive(), "gateway alive")
    t.eq(gw.stop(), 0, "clean shutdown")


g.run(main)

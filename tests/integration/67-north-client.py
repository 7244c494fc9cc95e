# Proves the gateway's own upstream MQTT client: its CONNECT carries client id, username, password, keepalive and clean session; an idle link sends PINGREQ after keepalive_s and a broker that stops answering is left after another keepalive_s (logged, reconnected); an oversized or malformed packet from the broker drops the link (north_protocol_errors_total, the log names the reason) and never crashes the gateway; over TLS a client certificate is presented (a broker requiring one accepts it, refuses a gateway without it) and tls_insecure skips only the host-name check, never the chain; a broker name that resolves to several addresses (::1 and 127.0.0.1, in either order) reaches a broker listening on either one, a refused address passing to the next at once within the same attempt.
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import time

import gwtest as g


class ScriptedBroker:
    """MQTT 3.1.1 on a free loopback port (host: 127.0.0.1 or ::1): CONNACK 0, SUBACKs and
    PUBACKs; then per `mode`: "mute" (and every mode) never answers a PINGREQ, "oversized" sends the header of a 2 MB PUBLISH, "malformed" a PUBACK with
    packet id 0. Records every CONNECT body and the time of every packet type per connection."""

    def __init__(self, mode, host=g.HOST):
        self.mode = mode
        self.lock = threading.Lock()
        self.connects = []  # CONNECT bodies
        self.events = []  # (conn index, time, packet type)
        self.closes = []  # (conn index, time)
        self.ls = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET,
                                socket.SOCK_STREAM)
        self.ls.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.ls.bind((host, 0))
        self.ls.listen(8)
        self.port = self.ls.getsockname()[1]
        self.socks = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                s, _ = self.ls.accept()
            except OSError:
                return
            self.socks.append(s)
            threading.Thread(target=self._serve, args=(s,), daemon=True).start()

    def _serve(self, s):
        conn = None
        try:
            for first, body in g.mqtt_packets(s):
                kind = first >> 4
                with self.lock:
                    if kind == 1:
                        conn = len(self.connects)
                        self.connects.append(body)
                    self.events.append((conn, time.monotonic(), kind))
                if kind == 1:
                    s.sendall(b"\x20\x02\x00\x00")
                    if self.mode == "oversized":
                        s.sendall(b"\x30\x80\x80\x80\x01")  # 2 MB remaining length
                    elif self.mode == "malformed":
                        s.sendall(b"\x40\x02\x00\x00")  # PUBACK id 0
                elif kind == 8:
                    s.sendall(b"\x90\x03" + body[:2] + b"\x01")
                elif kind == 3 and (first >> 1) & 3:
                    tl = struct.unpack(">H", body[:2])[0]
                    s.sendall(b"\x40\x02" + body[2 + tl:4 + tl])
        except OSError:
            pass
        finally:
            with self.lock:
                self.closes.append((conn, time.monotonic()))
            s.close()

    def stop(self):
        self.ls.close()
        for s in self.socks:
            try:
                s.close()
            except OSError:
                pass


def parse_connect(body):
    """The fields of a 3.1.1 CONNECT body."""
    def s(pos):
        n = struct.unpack(">H", body[pos:pos + 2])[0]
        return body[pos + 2:pos + 2 + n], pos + 2 + n
    name, pos = s(0)
    level, flags = body[pos], body[pos + 1]
    keepalive = struct.unpack(">H", body[pos + 2:pos + 4])[0]
    cid, pos = s(pos + 4)
    out = {"name": name, "level": level, "clean": bool(flags & 2), "keepalive": keepalive,
           "client_id": cid.decode(), "will": bool(flags & 4)}
    if flags & 4:
        out["will_topic"], pos = s(pos)
        out["will_payload"], pos = s(pos)
    if flags & 0x80:
        u, pos = s(pos)
        out["username"] = u.decode()
    if flags & 0x40:
        p, pos = s(pos)
        out["password"] = p.decode()
    return out


def keepalive(t):
    b = ScriptedBroker("mute")
    gw = g.Gateway(n_devices=1, config={"north": g.north_cfg(
        b.port, keepalive_s=5, username="gw-user", password="gw-pass", client_id="iotgw-67",
        clean_session=False)})
    t.check(g.wait_until(lambda: gw.metric("north_connected") == 1, 10), "connected to the "
            "scripted broker", gw.log_tail(5))
    t.check(g.wait_until(lambda: len(b.connects) >= 1, 5), "a CONNECT arrived")
    c = parse_connect(b.connects[0])
    t.eq((c["name"], c["level"]), (b"MQTT", 4), "CONNECT: MQTT 3.1.1")
    t.eq((c["client_id"], c.get("username"), c.get("password")),
         ("iotgw-67", "gw-user", "gw-pass"), "CONNECT: client id, username, password")
    t.eq((c["keepalive"], c["clean"], c["will"]), (5, False, False),
         "CONNECT: keepalive 5, clean_session false, no Will")
    # the link is idle after the subscriptions: a PINGREQ after ~5 s; no PINGRESP: left after
    # another ~5 s, logged, and a new connection follows
    t.check(g.wait_until(lambda: any(e[2] == 12 and e[0] == 0 for e in b.events), 9),
            "PINGREQ on an idle link", b.events)
    t.check(g.wait_until(lambda: any(cl[0] == 0 for cl in b.closes), 9),
            "the mute broker is left", b.closes)
    with b.lock:
        sub = max(e[1] for e in b.events if e[0] == 0 and e[2] == 8)
        ping = min(e[1] for e in b.events if e[0] == 0 and e[2] == 12)
        close = min(cl[1] for cl in b.closes if cl[0] == 0)
    t.check(4.0 <= ping - sub <= 7.0, "the PINGREQ came keepalive_s after the last packet",
            "%.2f s" % (ping - sub))
    t.check(4.0 <= close - ping <= 7.0, "the link was dropped keepalive_s after the PINGREQ",
            "%.2f s" % (close - ping))
    t.check(g.wait_until(lambda: gw.find_log(area="north", msg="upstream link lost",
                                             why="keep-alive"), 5),
            "the log says keep-alive", gw.log_tail(5))
    t.check(g.wait_until(lambda: len(b.connects) >= 2, 5), "reconnected after the keep-alive drop")
    t.eq(gw.stop(), 0, "keep-alive: SIGTERM exit 0")
    b.stop()


def bad_packets(t):
    for mode, reason in (("oversized", "oversized_packet"), ("malformed", "malformed_packet")):
        b = ScriptedBroker(mode)
        gw = g.Gateway(n_devices=1, config={"north": g.north_cfg(b.port)})
        t.check(g.wait_until(lambda: gw.metric("north_protocol_errors_total") >= 2, 10),
                "%s: each link dropped and counted (north_protocol_errors_total)" % mode,
                gw.metric("north_protocol_errors_total"))
        t.check(gw.find_log(area="north", msg="bad packet from the upstream broker", reason=reason),
                "%s: the log names the reason %s" % (mode, reason), gw.log_tail(4))
        t.check(len(b.connects) >= 2, "%s: reconnected" % mode, len(b.connects))
        t.eq(gw.stop(), 0, "%s: SIGTERM exit 0 (no crash)" % mode)
        b.stop()


def openssl(d, *args):
    p = subprocess.run(["openssl"] + list(args), cwd=d, capture_output=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError("openssl %s: %s" % (" ".join(args), p.stderr.decode()[-500:]))


def make_certs(d):
    """A CA; a broker certificate for the wrong name (DNS:broker.invalid only); a client
    certificate for the gateway."""
    openssl(d, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2", "-subj", "/CN=67 CA")
    for name, ext in (("server", "subjectAltName=DNS:broker.invalid\n"),
                      ("client", "extendedKeyUsage=clientAuth\n")):
        with open(os.path.join(d, name + ".cnf"), "w") as f:
            f.write(ext)
        openssl(d, "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
                "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + name + "-67")
        openssl(d, "x509", "-req", "-in", name + ".csr", "-CA", "ca.crt", "-CAkey", "ca.key",
                "-CAcreateserial", "-out", name + ".crt", "-days", "2", "-extfile", name + ".cnf")
    return {k: os.path.join(d, k) for k in ("ca.crt", "server.crt", "server.key", "client.crt",
                                            "client.key")}


def tls(t):
    d = tempfile.mkdtemp(prefix="iotgw-67-")
    c = make_certs(d)
    broker = g.Mosquitto(g.CLOUD_CONF + "cafile %s\ncertfile %s\nkeyfile %s\n"
                         "require_certificate true\nuse_identity_as_username true\n"
                         % (c["ca.crt"], c["server.crt"], c["server.key"]), anonymous=False)
    # the broker's certificate names broker.invalid, not 127.0.0.1: refused unless tls_insecure
    gw = g.Gateway(n_devices=1, config={"north": g.north_cfg(
        broker.port, ca_file=c["ca.crt"], cert_file=c["client.crt"], key_file=c["client.key"],
        client_id="iotgw-67a")})
    t.check(g.wait_until(lambda: gw.metric("north_reconnects_total") >= 2, 15),
            "wrong host name: refused and retried", gw.metric("north_reconnects_total"))
    t.eq(gw.metric("north_connected"), 0.0, "wrong host name: north_connected 0")
    lines = [ln for ln in gw.log_lines() if "area=north" in ln]
    t.check([ln for ln in lines if re.search(r"verify|mismatch|certificate", ln, re.I)],
            "wrong host name: the log says the certificate check failed", lines[-3:])
    t.eq(gw.stop(), 0, "wrong host name: SIGTERM exit 0")

    # tls_insecure: the host name is not checked, the chain still is; the client certificate
    # is presented and the broker takes its CN as the user name
    gw = g.Gateway(n_devices=1, config={"north": g.north_cfg(
        broker.port, ca_file=c["ca.crt"], cert_file=c["client.crt"], key_file=c["client.key"],
        tls_insecure=True, client_id="iotgw-67b")})
    t.check(g.wait_until(lambda: gw.metric("north_connected") == 1, 10),
            "tls_insecure + client certificate: connected", gw.log_tail(5))
    dev = g.device_client(gw, "t-001")
    t.check(dev.publish_wait(g.report_topic("t-001"), g.report_payload("c-1", {"humidity": 3}), 1)
            is not None, "a device message acknowledged")
    t.check(g.wait_until(lambda: gw.metric("north_forwarded_total") >= 2, 10),
            "forwarded over mutual TLS (online + report acknowledged by the broker)",
            gw.metric("north_forwarded_total"))
    t.check(re.search(r"as iotgw-67b .*u'client-67'", broker.log),
            "the broker saw the client certificate (user client-67)")
    dev.disconnect()
    t.eq(gw.stop(), 0, "mutual TLS: SIGTERM exit 0")

    # without a client certificate the broker refuses the handshake
    gw = g.Gateway(n_devices=1, config={"north": g.north_cfg(
        broker.port, ca_file=c["ca.crt"], tls_insecure=True, client_id="iotgw-67c")})
    t.check(g.wait_until(lambda: gw.metric("north_reconnects_total") >= 2, 15),
            "no client certificate: refused and retried", gw.metric("north_reconnects_total"))
    t.eq(gw.metric("north_connected"), 0.0, "no client certificate: north_connected 0")
    t.eq(gw.stop(), 0, "no client certificate: SIGTERM exit 0")
    broker.stop()


PRELOAD = os.path.join(os.path.dirname(g.BIN), "dualhost_preload.so")


def addresses(t):
    """A broker name with two addresses (dual.iotgw.test: ::1 and 127.0.0.1, answered by the
    dualhost_preload shim in either order) reaches a broker that listens on only one of them: a
    refused address passes to the next at once, within the same attempt (no reconnect counted,
    no back-off); with neither listening, the attempt fails once and the back-off follows."""
    if not os.path.exists(PRELOAD):
        t.check(False, "dualhost_preload.so built next to iotgw", PRELOAD)
        return
    asan = (os.environ.get("ASAN_OPTIONS", "") + ":verify_asan_link_order=0").lstrip(":")
    for order in ("6", "4"):
        first = "::1" if order == "6" else "127.0.0.1"
        for addr in ("::1", "127.0.0.1"):
            b = ScriptedBroker("plain", host=addr)
            gw = g.Gateway(n_devices=1, config={"north": g.north_cfg(
                b.port, host="dual.iotgw.test", reconnect_min_ms=5000, reconnect_max_ms=5000)},
                env={"LD_PRELOAD": PRELOAD, "IOTGW_DUAL_ORDER": order, "ASAN_OPTIONS": asan})
            what = f"{first} listed first, broker on {addr}"
            t.check(g.wait_until(lambda: gw.metric("north_connected") == 1, 4),
                    f"{what}: connected (before any 5 s back-off)", gw.log_tail(5))
            t.eq(gw.metric("north_reconnects_total"), 0.0, f"{what}: within the first attempt")
            refused = gw.find_log(area="north", msg="upstream connection failed: trying the "
                                  "next address", host="dual.iotgw.test")
            t.check(bool(refused) == (addr != first),
                    f"{what}: the log names a refused first address only when it was", refused)
            t.eq(gw.stop(), 0, f"{what}: SIGTERM exit 0")
            b.stop()
    # neither address listens: one failed attempt (both tried), then the back-off
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((g.HOST, 0))
    port = s.getsockname()[1]  # bound, not listening: refused on 127.0.0.1
    gw = g.Gateway(n_devices=1, config={"north": g.north_cfg(
        port, host="dual.iotgw.test", reconnect_min_ms=5000, reconnect_max_ms=5000)},
        env={"LD_PRELOAD": PRELOAD, "ASAN_OPTIONS": asan})
    t.check(g.wait_until(lambda: gw.find_log(area="north", msg="upstream connection failed",
                                             host="dual.iotgw.test"), 5),
            "no address listening: the attempt fails", gw.log_tail(5))
    time.sleep(1.0)
    t.eq(len(gw.find_log(area="north", msg="upstream connection failed: trying the next "
                          "address")), 1, "no address listening: the second address was tried once")
    t.eq(len(gw.find_log(area="north", msg="upstream connection failed")), 1,
         "no address listening: one failed attempt, then the 5 s back-off")
    t.eq(gw.stop(), 0, "no address listening: SIGTERM exit 0")
    s.close()


def main(t):
    addresses(t)
    bad_packets(t)
    if shutil.which("openssl"):
        tls(t)
    else:
        t.check(True, "TLS part skipped: no openssl")
    keepalive(t)


g.run(main)

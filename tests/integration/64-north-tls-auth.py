# Proves the north link over TLS with password auth: with a CA-verified TLS listener and the right username/password the gateway forwards; a wrong password or an unknown CA forwards nothing (north_connected 0, reconnects counted, the log says why); and --check-config names the file and JSON path of bad north settings.
import os
import re
import shutil
import subprocess
import tempfile

import gwtest as g

N = 200


def openssl(*args, cwd):
    p = subprocess.run(["openssl"] + list(args), cwd=cwd, capture_output=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError("openssl %s: %s" % (" ".join(args), p.stderr.decode()[-500:]))


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
            "-nodes", "-keyout", name + ".key", "-out", name + ".crt", "-days", "2",
            "-subj", "/CN=iotgw test " + name, cwd=d)
    return os.path.join(d, name + ".crt")


def make_server_cert(d, ca):
    with open(os.path.join(d, "san.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1", cwd=d)
    openssl("x509", "-req", "-in", "server.csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
            "-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.cnf", cwd=d)
    return os.path.join(d, "server.crt"), os.path.join(d, "server.key")


def north_lines(gw, since=0):
    return [ln for ln in gw.log_lines(since) if "area=north" in ln]


def config_errors(t):
    """--check-config on bad north settings: every error, with file and JSON path, exit 2."""
    gw = g.Gateway(start=False, config={"north": {
        "enabled": True, "host": g.HOST, "port": 1883,
        "topic_property": "{prefix}/{product}/{devce}/props",
        "prefix": "plant/+/x",
        "ca_file": "/nonexistent/iotgw-ca.pem",
        "reconnect_min_ms": 5000, "reconnect_max_ms": 1000}})
    code, out, err = g.check_config(gw)
    t.eq(code, 2, "bad north config: --check-config exits 2")
    for path, what in (("north.topic_property", "placeholder"), ("north.prefix", "wildcard"),
                       ("north.ca_file", "iotgw-ca.pem"), ("north.reconnect_max_ms", "")):
        t.check(re.search(r"gateway\.json: %s: .*%s" % (re.escape(path), re.escape(what)), err,
                          re.I), "bad north config: error names gateway.json and %s" % path, err)
    # unknown key in the north section
    gw = g.Gateway(start=False, config={"north": {"enabled": True, "windoww": 5}})
    code, out, err = g.check_config(gw)
    t.check(code == 2 and re.search(r"gateway\.json: north\.windoww: unknown key", err),
            "unknown north key: file + path", err)


def main(t):
    config_errors(t)
    if shutil.which("openssl") is None or shutil.which("mosquitto_passwd") is None:
        t.check(True, "TLS part skipped: no openssl or mosquitto_passwd")
        return
    d = tempfile.mkdtemp(prefix="iotgw-tls-")
    ca = make_ca(d, "ca")
    other_ca = make_ca(d, "other")
    crt, key = make_server_cert(d, os.path.join(d, "ca"))
    pw = os.path.join(d, "passwd")
    open(pw, "w").close()
    for user, secret in (("gwuser", "gw-pass"), ("cloudsub", "sub-pass")):
        subprocess.run(["mosquitto_passwd", "-b", pw, user, secret], check=True,
                       capture_output=True, timeout=30)
    broker = g.Mosquitto(g.CLOUD_CONF + "cafile %s\ncertfile %s\nkeyfile %s\npassword_file %s\n"
                         % (ca, crt, key, pw), anonymous=False)
    sub = g.CloudSubscriber(broker.port, topics=["iotgw/#"], client_id="cloud-64",
                            username="cloudsub", password="sub-pass", tls={"ca_certs": ca})

    # the right credentials over a verified TLS link (host name checked: no tls_insecure)
    gw = g.Gateway(n_devices=2, config={"north": g.north_cfg(
        broker.port, ca_file=ca, username="gwuser", password="gw-pass", client_id="iotgw-64")})
    t.check(g.wait_until(lambda: gw.metric("north_connected") == 1, 10),
            "TLS + password: north_connected 1", gw.log_tail(5))
    c = g.device_client(gw, "t-001")
    s = g.QoS1Stream(c, "t-001", window=20)
    t.check(s.run(N, timeout=30), "TLS + password: %d device messages acked" % N)
    t.check(sub.wait_for(lambda x: x.distinct() >= N, 20),
            "TLS + password: all %d forwarded over TLS" % N, sub.distinct())
    t.check(re.search(r"as iotgw-64 .*u'gwuser'", broker.log),
            "the broker saw the gateway log in as gwuser")
    c.disconnect()
    # barrier for the count the refused gateways are checked against below: the offline event
    # is committed, everything committed is forwarded, and what the broker acknowledged has
    # reached the subscriber
    t.check(g.wait_until(lambda: gw.scalar("SELECT count(*) FROM events WHERE kind='offline'")
                         == 1 and gw.scalar("SELECT count(*) FROM outbox") == 0 and
                         sub.count() >= gw.metric("north_forwarded_total"), 20),
            "TLS + password: the offline event forwarded too",
            (sub.count(), gw.metric("north_forwarded_total")))
    t.eq(gw.stop(), 0, "TLS + password: SIGTERM exit 0")

    # ca_file relative to the folder of gateway.json, like every relative path in it
    gw = g.Gateway(n_devices=1, start=False, config={"north": g.north_cfg(
        broker.port, ca_file="certs/ca.crt", username="gwuser", password="gw-pass")})
    os.makedirs(gw.path("certs"))
    shutil.copy(ca, gw.path("certs/ca.crt"))
    p = subprocess.run([g.BIN, "--check-config", "-c", gw.cfg_path], capture_output=True,
                       timeout=30, cwd="/", stdin=subprocess.DEVNULL)
    t.eq(p.returncode, 0, "relative ca_file resolved against the gateway.json folder "
         "(--check-config from another cwd)")
    if p.returncode != 0:
        t.info(p.stderr.decode()[-300:])

    before = sub.count()
    # wrong password: refused, retried with back-off, the log says why, nothing forwarded
    gw = g.Gateway(n_devices=1, config={"north": g.north_cfg(
        broker.port, ca_file=ca, username="gwuser", password="wrong", client_id="iotgw-64b")})
    t.check(g.wait_until(lambda: gw.metric("north_reconnects_total") >= 2, 15),
            "wrong password: reconnect attempts counted", gw.metric("north_reconnects_total"))
    t.eq(gw.metric("north_connected"), 0.0, "wrong password: north_connected 0")
    c = g.device_client(gw, "t-001")
    t.check(c.publish_wait(g.report_topic("t-001"), g.report_payload("w-1", {"humidity": 1}), 1)
            is not None, "wrong password: devices are still acknowledged (stored)")
    c.disconnect()
    t.eq(gw.metric("north_forwarded_total"), 0.0, "wrong password: nothing forwarded")
    t.check(gw.scalar("SELECT count(*) FROM outbox") >= 1, "wrong password: events kept in the "
            "outbox")
    why = [ln for ln in north_lines(gw) if re.search(
        r"not authori[sz]ed|bad user ?name or password|authori[sz]ation|refused", ln, re.I)]
    t.check(why, "wrong password: the log says the broker refused the credentials",
            "\n".join(north_lines(gw)[-5:]))
    t.eq(gw.stop(), 0, "wrong password: SIGTERM exit 0")

    # a broker certificate from another CA: TLS verification fails, nothing forwarded
    gw = g.Gateway(n_devices=1, config={"north": g.north_cfg(
        broker.port, ca_file=other_ca, username="gwuser", password="gw-pass",
        client_id="iotgw-64c")})
    t.check(g.wait_until(lambda: gw.metric("north_reconnects_total") >= 2, 15),
            "unknown CA: reconnect attempts counted", gw.metric("north_reconnects_total"))
    t.eq(gw.metric("north_connected"), 0.0, "unknown CA: north_connected 0")
    why = [ln for ln in north_lines(gw) if re.search(r"certificate|verify|tls|ssl", ln, re.I)]
    t.check(why, "unknown CA: the log says the TLS handshake failed",
            "\n".join(north_lines(gw)[-5:]))
    t.eq(gw.stop(), 0, "unknown CA: SIGTERM exit 0")
    t.eq(sub.count(), before, "nothing arrived from the refused gateways")
    sub.stop()
    broker.stop()
    shutil.rmtree(d, ignore_errors=True)


g.run(main)

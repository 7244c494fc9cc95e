# Proves the unit's seccomp and socket settings fit what iotgw does (deploy/iotgw.service has
# never run under systemd here): iotgw, as an unprivileged user like the unit's User=iotgw, on the
# installed configuration (listeners on loopback) with north towards a local broker, is traced
# with strace through start-up, an MQTT report forwarded north, API and console requests, a CoAP
# request, a UDP datagram, a SIGHUP reload and SIGTERM; every system call it made must be in the
# unit's SystemCallFilter (the allow list minus the ~deny list, groups expanded by
# systemd-analyze) and every socket family in RestrictAddressFamilies. Skipped with a message
# without strace, setpriv, systemd-analyze or root (needed to drop to an unprivileged user), and
# in sanitizer builds.
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile

import gwtest as g

NOBODY = 65534


@functools.lru_cache(None)
def expand(group):
    """The system calls of a systemd-analyze syscall-filter group (nested groups expanded)."""
    out = subprocess.run(["systemd-analyze", "syscall-filter", group], capture_output=True,
                         text=True, timeout=60).stdout
    calls = set()
    for line in out.splitlines()[1:]:
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        calls |= expand(line) if line.startswith("@") else {line}
    return frozenset(calls)


def unit_filter(text):
    """(allowed system calls, allowed socket families) of the unit's [Service] settings."""
    allow, deny, families = set(), set(), set()
    for line in text.splitlines():
        m = re.match(r"^SystemCallFilter=(~?)(.*)$", line.strip())
        if m:
            names = set()
            for item in m.group(2).split():
                names |= expand(item) if item.startswith("@") else {item}
            (deny if m.group(1) else allow).update(names)
        m = re.match(r"^RestrictAddressFamilies=(.*)$", line.strip())
        if m:
            families |= set(m.group(1).split())
    return allow - deny, families


def skip(msg):
    print("# SKIP %s" % msg, flush=True)
    print("1 passed, 0 failed (skipped)")
    sys.exit(0)


def main(t):
    for tool in ("strace", "setpriv", "systemd-analyze"):
        if not shutil.which(tool):
            skip("%s is not installed" % tool)
    if g.SANITIZED:
        skip("sanitizer build: LeakSanitizer does not run under ptrace, and the sanitizer "
             "runtime's own calls are not the packaged binary's")
    if os.geteuid() != 0:
        skip("not root: cannot run iotgw as an unprivileged user under strace")
    with open(os.path.join(g.SRC, "deploy", "iotgw.service")) as f:
        allowed, families = unit_filter(f.read())
    t.check(len(allowed) > 200 and "prlimit64" in allowed and "setuid" not in allowed,
            "unit: SystemCallFilter read (%d calls allowed)" % len(allowed))

    tmp = tempfile.mkdtemp(prefix="iotgw-sys-")
    broker = g.Mosquitto()
    try:
        body(t, tmp, broker, allowed, families)
    finally:
        broker.stop()
        if os.environ.get("IOTGW_KEEP") != "1":
            shutil.rmtree(tmp, ignore_errors=True)


def body(t, tmp, broker, allowed, families):
    os.chmod(tmp, 0o755)
    shutil.copytree(os.path.join(g.SRC, "config", "products"), os.path.join(tmp, "products"))
    shutil.copy(os.path.join(g.SRC, "config", "devices.json"), tmp)
    # the 8883 listener's throwaway certificate, as postinst makes it, readable by the gateway
    subprocess.run(["sh", os.path.join(g.SRC, "deploy", "make-example-certs.sh"),
                    os.path.join(tmp, "tls")], check=True, capture_output=True, timeout=60)
    os.chown(os.path.join(tmp, "tls", "server.key"), NOBODY, NOBODY)
    build = os.path.dirname(os.path.abspath(g.BIN))
    with open(os.path.join(build, "gen", "install", "gateway.json")) as f:
        cfg = json.load(f)  # the installed gateway.json
    g.loopback_listeners(cfg)
    cfg["loops"] = 2
    cfg["storage"]["path"] = os.path.join(tmp, "state", "iotgw.db")
    cfg["admin"]["web_root"] = os.path.join(g.SRC, "web")
    cfg["north"] = g.deep_merge(cfg["north"], g.north_cfg(broker.port))
    os.makedirs(os.path.join(tmp, "state"))
    os.chown(os.path.join(tmp, "state"), NOBODY, NOBODY)
    with open(os.path.join(tmp, "gateway.json"), "w") as f:
        json.dump(cfg, f)
    sub = g.CloudSubscriber(broker.port, topics=["iotgw/#"], client_id="sys-cloud")

    trace = os.path.join(tmp, "trace")
    log_path = os.path.join(tmp, "gateway.log")
    rfd, wfd = os.pipe()
    with open(log_path, "wb") as logf:
        p = subprocess.Popen(["strace", "-f", "-qq", "-o", trace, "setpriv",
                              "--reuid=%d" % NOBODY, "--regid=%d" % NOBODY, "--clear-groups",
                              g.BIN, "-c", os.path.join(tmp, "gateway.json"), "--ready-fd",
                              str(wfd)], pass_fds=(wfd,), stdout=logf, stderr=logf,
                             stdin=subprocess.DEVNULL, cwd=tmp)
    os.close(wfd)
    g._started.append(p)
    buf = b""
    while b"\nready\n" not in b"\n" + buf:
        chunk = os.read(rfd, 4096)
        if not chunk:
            break
        buf += chunk
    os.close(rfd)
    if not t.check(b"ready\n" in buf, "iotgw ready under strace as uid %d" % NOBODY,
                   open(log_path).read()[-1500:]):
        return
    ports = {}
    for line in buf.decode().splitlines():
        kv = g.parse_logfmt(line)
        if line.startswith("listener") and "port" in kv:
            ports.setdefault(kv.get("product") or kv["adapter"], int(kv["port"]))
    kids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout.split()
    gpid = int(kids[0]) if kids else None
    t.check(gpid and g._status_field(gpid, "Uid") == NOBODY, "the traced iotgw runs as uid 65534")

    def log():
        with open(log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    # traffic: MQTT report (forwarded north), API and console, CoAP, a UDP datagram
    c = g.RawClient(ports["mqtt"], timeout=5 * g.SLOW)
    t.eq(c.connect_device("t-001", "thermo", secret="t001-secret"), 0, "MQTT CONNACK 0")
    c.send(g.publish_packet("/thermo/t-001/properties/report",
                            '{"messageId":"1","properties":{"temperature":21.5}}', 1, 1))
    pk = c.read_packet(10)
    t.check(pk is not None and pk.type == g.PUBACK, "MQTT report acknowledged", pk)
    t.check(sub.wait_for(lambda s: any("/properties/report" in m[0] for m in s.snapshot()), 20),
            "the report reached the broker (north)")
    for path in ("/health", "/metrics", "/", "/api/products"):
        h = g.http.client.HTTPConnection(g.HOST, ports["admin"], timeout=5 * g.SLOW)
        h.request("GET", path)
        status = h.getresponse().status
        h.close()
        t.check(status in (200, 401), "GET %s answered (%d)" % (path, status))
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(5 * g.SLOW)
    s.sendto(b"\x40\x01\x00\x01", (g.HOST, ports["coap"]))  # CON GET / -> 4.04
    t.check(s.recv(512)[1:2] == b"\x84", "CoAP answered 4.04")
    s.sendto(b"\x00" * 8, (g.HOST, ports["sensor-udp"]))  # a bad datagram, refused
    s.close()
    mark = len(log())
    os.kill(gpid, signal.SIGHUP)
    t.check(g.wait_until(lambda: "configuration applied" in log()[mark:], 20), "SIGHUP reload")
    c.close()
    sub.stop()
    os.kill(gpid, signal.SIGTERM)
    t.eq(p.wait(60 * g.SLOW), 0, "SIGTERM: exit 0")

    # every system call after iotgw's execve (setpriv's own come before it)
    calls, fams, on = set(), set(), False
    with open(trace) as f:
        for line in f:
            parts = line.split(None, 1)
            if len(parts) < 2:
                continue
            if not on and parts[1].startswith('execve("%s"' % g.BIN):
                on = True
            if not on:
                continue
            m = re.match(r"([a-z_0-9]+)\((.*)", parts[1])
            if m:
                calls.add(m.group(1))
                if m.group(1) in ("socket", "socketpair"):
                    fams.add(m.group(2).split(",")[0])
    t.check(len(calls) > 30, "strace saw iotgw's system calls (%d distinct)" % len(calls))
    t.info("system calls: %s" % " ".join(sorted(calls)))
    t.eq(sorted(calls - allowed), [], "every system call is allowed by the unit's SystemCallFilter")
    t.eq(sorted(fams - families), [], "every socket family is in RestrictAddressFamilies (%s)"
         % " ".join(sorted(fams)))


if __name__ == "__main__":
    g.run(main)

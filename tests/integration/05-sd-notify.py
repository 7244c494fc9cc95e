# Proves systemd's readiness protocol (deploy/iotgw.service, Type=notify): with NOTIFY_SOCKET set
# to a datagram socket the test binds (a path, then an abstract name), iotgw sends READY=1 only
# once its listeners are bound (MQTT and /health answer the moment it arrives, nothing came
# before), RELOADING=1 (with MONOTONIC_USEC) then READY=1 around a SIGHUP reload whose change is
# applied by then, STOPPING=1 on SIGTERM before it exits 0; an unusable NOTIFY_SOCKET is logged,
# not fatal.
import json
import os
import signal
import socket
import subprocess
import time

import gwtest as g


class Notify:
    """A datagram socket at a path or, for a name starting with '@', in the abstract namespace."""

    def __init__(self, where):
        self.s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.s.bind("\0" + where[1:] if where.startswith("@") else where)
        self.env = where

    def recv(self, timeout):
        self.s.settimeout(timeout * g.SLOW)
        try:
            return self.s.recv(4096).decode("utf-8", "replace")
        except socket.timeout:
            return None

    def pending(self):
        """Whatever is queued now (non-blocking)."""
        out = []
        self.s.setblocking(False)
        try:
            while True:
                out.append(self.s.recv(4096).decode("utf-8", "replace"))
        except BlockingIOError:
            pass
        return out

    def close(self):
        self.s.close()


def start(gw, notify_env):
    """iotgw on gw's config with NOTIFY_SOCKET and no --ready-fd (readiness only by sd_notify)."""
    env = dict(os.environ)
    env.pop("NOTIFY_SOCKET", None)
    if notify_env is not None:
        env["NOTIFY_SOCKET"] = notify_env
    logf = open(gw.log_path, "ab")
    try:
        gw.proc = subprocess.Popen([g.BIN, "-c", gw.cfg_path], stdin=subprocess.DEVNULL,
                                   stdout=logf, stderr=logf, cwd=gw.dir, env=env)
    finally:
        logf.close()
    g._started.append(gw.proc)


def mqtt_connects(port):
    c = g.RawClient(port, timeout=2)
    try:
        return c.connect_device("t-001", "thermo") == 0
    finally:
        c.close()


def main(t):
    mqtt_port, admin_port = g.free_port(), g.free_port()
    gw = g.Gateway(start=False, n_devices=1, config={
        "admin": {"port": admin_port},
        "adapters": {"mqtt": {"listeners": [{"address": g.HOST, "port": mqtt_port}]}}})
    gw.ports = {"mqtt": mqtt_port, "admin": admin_port}

    # -- a socket at a path
    path = os.path.join(gw.dir, "notify.sock")
    n = Notify(path)
    start(gw, path)
    msg = n.recv(20)
    t.eq(msg, "READY=1", "first datagram: READY=1")
    # the moment READY=1 is read, every listener answers (they were bound before it was sent)
    t.check(mqtt_connects(mqtt_port), "MQTT CONNACK 0 right after READY=1")
    t.eq(gw.http_get("/health"), (200, "ok\n"), "/health ok right after READY=1")
    t.eq(n.pending(), [], "nothing else sent while serving")

    # -- SIGHUP: RELOADING=1, the reload, READY=1; the added device is there by READY=1
    devs = g.make_devices(["t-001", "t-777"])
    with open(gw.path("devices.json"), "w") as f:
        json.dump(devs, f)
    mark = gw.log_mark()
    os.kill(gw.pid, signal.SIGHUP)
    msg = n.recv(20) or ""
    lines = msg.split("\n")
    t.eq(lines[0], "RELOADING=1", "SIGHUP: RELOADING=1 first")
    t.check(len(lines) == 2 and lines[1].startswith("MONOTONIC_USEC=") and
            abs(int(lines[1].split("=")[1]) - time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000)
            < 60_000_000 * g.SLOW, "RELOADING=1 carries MONOTONIC_USEC (now)", msg)
    t.eq(n.recv(20), "READY=1", "then READY=1")
    c = g.RawClient(mqtt_port, timeout=5)
    t.eq(c.connect_device("t-777", "thermo"), 0, "the device added by the reload connects")
    c.close()
    t.check(gw.find_log(since=mark, msg="configuration applied"),
            "the reload applied the configuration", gw.log_since(mark)[-500:])

    # -- SIGTERM: STOPPING=1, exit 0
    os.kill(gw.pid, signal.SIGTERM)
    t.eq(n.recv(20), "STOPPING=1", "SIGTERM: STOPPING=1")
    t.eq(gw.proc.wait(30 * g.SLOW), 0, "exit 0")
    t.eq(n.pending(), [], "nothing after STOPPING=1")
    n.close()

    # -- an abstract socket name ('@...')
    name = "@iotgw-test-%d-%d" % (os.getpid(), time.monotonic_ns())
    n = Notify(name)
    start(gw, name)
    t.eq(n.recv(20), "READY=1", "abstract namespace: READY=1")
    t.check(mqtt_connects(mqtt_port), "abstract namespace: MQTT answers")
    os.kill(gw.pid, signal.SIGTERM)
    t.eq(n.recv(20), "STOPPING=1", "abstract namespace: STOPPING=1")
    t.eq(gw.proc.wait(30 * g.SLOW), 0, "abstract namespace: exit 0")
    n.close()

    # -- nobody listening at NOTIFY_SOCKET: a warning, the gateway serves anyway
    mark = gw.log_mark()
    start(gw, os.path.join(gw.dir, "nobody.sock"))
    t.check(g.wait_until(lambda: gw.find_log(since=mark, msg="cannot notify systemd",
                                             state="READY=1"), 20),
            "unusable NOTIFY_SOCKET: 'cannot notify systemd' logged", gw.log_tail(5))
    t.check(mqtt_connects(mqtt_port), "... and the gateway serves")
    os.kill(gw.pid, signal.SIGTERM)
    t.eq(gw.proc.wait(30 * g.SLOW), 0, "... and exits 0")

    # -- without NOTIFY_SOCKET: no warning at all
    mark = gw.log_mark()
    start(gw, None)
    t.check(g.wait_until(lambda: mqtt_connects(mqtt_port), 20), "no NOTIFY_SOCKET: serves")
    os.kill(gw.pid, signal.SIGTERM)
    t.eq(gw.proc.wait(30 * g.SLOW), 0, "no NOTIFY_SOCKET: exit 0")
    t.check(not gw.find_log(since=mark, msg="cannot notify systemd"),
            "no NOTIFY_SOCKET: nothing logged about systemd")


if __name__ == "__main__":
    g.run(main)

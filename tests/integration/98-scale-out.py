# Proves scale-out with "north": {"cluster": true}: HAProxy (TCP, PROXY v2) in front of two gateways (own SQLite each, same devices, different north.client_id) and one mosquitto; 200 paho devices connect through HAProxy and report; every cloud command reaches its device exactly once with exactly one reply, and a command for a device nobody holds gets exactly one device_offline; online events name the instance ("gateway"); one instance is SIGKILLed mid-stream, its devices reconnect through HAProxy to the other and commands keep reaching them exactly once; restarted, the killed instance drains its outbox (every acknowledged report reaches the broker) and its old online events do not take the devices back.
import copy
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time

import gwtest as g

N = 200
PREFIX = "iotgw"
NOBODY = "t-%03d" % (N + 1)  # registered, never connects
GWS = ("gw-a", "gw-b")


def compact(d):
    return json.dumps(d, separators=(",", ":"))


class Device:
    """A paho device with its own network thread (reconnects by itself): subscribes to its command
    topic on every connect, answers each command, reports on demand; records the commands it got
    and which reports were acknowledged (PUBACK)."""

    def __init__(self, dev, port):
        import paho.mqtt.client as mqtt
        self.dev = dev
        self.lock = threading.Lock()
        self.cmds = []  # messageIds received, duplicates kept
        self.acked = set()  # report messageIds acknowledged
        self.pending = {}  # mid -> report messageId
        self.ready = threading.Event()  # SUBACK on the current connection
        self.connects = 0
        self.seq = 0
        c = mqtt.Client(client_id=dev, clean_session=True, protocol=mqtt.MQTTv311)
        c.username_pw_set("thermo", g.secret_of(dev))
        c.reconnect_delay_set(0.1, 0.5)
        c.on_connect, c.on_subscribe, c.on_message = self.on_connect, self.on_subscribe, self.on_msg
        c.on_publish, c.on_disconnect = self.on_publish, self.on_disconnect
        self.c = c
        c.connect_async(g.HOST, port, keepalive=60)
        c.loop_start()

    def on_connect(self, c, ud, flags, rc):
        if rc == 0:
            with self.lock:
                self.connects += 1
            c.subscribe("/thermo/%s/function/invoke" % self.dev, 1)

    def on_subscribe(self, c, ud, mid, granted):
        self.ready.set()

    def on_disconnect(self, c, ud, rc):
        self.ready.clear()

    def on_msg(self, c, ud, msg):
        d = json.loads(msg.payload)
        with self.lock:
            self.cmds.append(d["messageId"])
        c.publish("/thermo/%s/function/invoke/reply" % self.dev,
                  compact({"messageId": d["messageId"], "success": True,
                           "outputs": {"ok": True}}), 1)

    def on_publish(self, c, ud, mid):
        with self.lock:
            r = self.pending.pop(mid, None)
            if r:
                self.acked.add(r)

    def report(self):
        with self.lock:
            self.seq += 1
            rid = "r-%s-%d" % (self.dev, self.seq)
        with self.lock:  # paho may call on_publish before publish() returns: hold the lock
            info = self.c.publish("/thermo/%s/properties/report" % self.dev,
                                  compact({"messageId": rid,
                                           "properties": {"temperature": 20.5}}), 1)
            if info.rc == 0:
                self.pending[info.mid] = rid

    def got(self, msg_id):
        with self.lock:
            return self.cmds.count(msg_id)

    def stop(self):
        g.paho_stop(self.c)


class Cloud:
    """The cloud on the broker: presence, online events, command replies and reports."""

    def __init__(self, port):
        import paho.mqtt.client as mqtt
        self.lock = threading.Lock()
        self.presence = {}  # device -> (gateway, online)
        self.online = {}  # device -> [gateway of each online event]
        self.replies = {}  # messageId -> [payload dicts]
        self.reports = {}  # device -> set of report messageIds
        self.sub = threading.Event()
        c = mqtt.Client(client_id="cloud", clean_session=True, protocol=mqtt.MQTTv311)
        c.max_inflight_messages_set(1000)

        def on_connect(cl, ud, flags, rc):
            cl.subscribe([("%s/_presence/+" % PREFIX, 1), ("%s/thermo/+/online" % PREFIX, 1),
                          ("%s/thermo/+/function/invoke/reply" % PREFIX, 1),
                          ("%s/thermo/+/properties/report" % PREFIX, 1)])

        c.on_connect = on_connect
        c.on_subscribe = lambda cl, ud, mid, gr: self.sub.set()
        c.on_message = self.on_msg
        self.c = c
        c.connect(g.HOST, port, keepalive=30)
        c.loop_start()
        self.sub.wait(10 * g.SLOW)

    def on_msg(self, c, ud, msg):
        if not msg.payload:
            return
        d = json.loads(msg.payload)
        parts = msg.topic.split("/")
        with self.lock:
            if parts[1] == "_presence":
                self.presence[parts[2]] = (d["gateway"], d["online"])
            elif parts[-1] == "online":
                self.online.setdefault(d["device"], []).append(d["values"].get("gateway"))
            elif parts[-1] == "reply":
                self.replies.setdefault(d.get("messageId"), []).append(d)
            elif parts[-1] == "report":
                self.reports.setdefault(d["device"], set()).add(d.get("messageId"))

    def command(self, dev, msg_id):
        self.c.publish("%s/thermo/%s/function/invoke" % (PREFIX, dev),
                       compact({"messageId": msg_id, "function": "reboot",
                                "inputs": {"delay_s": 1}}), 1)

    def snapshot(self, what):
        with self.lock:
            return copy.deepcopy(getattr(self, what))


class Relay:
    """A TCP relay for one gateway's north link that can hold what the gateway sends: while held,
    its publishes (and PINGREQs) stay here unacknowledged, so its outbox fills with acknowledged
    reports; when the gateway dies, the held bytes are dropped with the connection, as a crash
    loses whatever was in flight, and the broker sees the link close (and sends the Will)."""

    def __init__(self, upstream):
        self.upstream = upstream
        self.held = threading.Event()
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.bind((g.HOST, 0))
        self.ls.listen(8)
        self.port = self.ls.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        while True:
            try:
                down, _ = self.ls.accept()
                up = socket.create_connection((g.HOST, self.upstream), timeout=5)
                up.settimeout(None)
            except OSError:
                try:
                    down.close()
                except (OSError, UnboundLocalError):
                    pass
                continue
            threading.Thread(target=self._pump, args=(down, up, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down, False), daemon=True).start()

    def _pump(self, src, dst, holdable):
        kept = bytearray()
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if holdable and self.held.is_set():
                    kept += data
                    continue
                if kept:
                    dst.sendall(bytes(kept))
                    kept.clear()
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for x in (src, dst):
                try:
                    x.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass


def haproxy(work, port, backends):
    """HAProxy in TCP mode, round robin over the gateways' PROXY-v2 listeners; a refused connection
    (an instance down) is retried on the other one."""
    cfg = os.path.join(work, "haproxy.cfg")
    servers = "".join("  server %s %s:%d send-proxy-v2 check inter 300 fall 1 rise 1\n"
                      % (name, g.HOST, p) for name, p in backends)
    with open(cfg, "w") as f:
        f.write("global\n  maxconn 2000\n"
                "defaults\n  mode tcp\n  timeout connect 1s\n  timeout client 5m\n"
                "  timeout server 5m\n  retries 3\n  option redispatch\n"
                "frontend f\n  bind %s:%d\n  default_backend b\n"
                "backend b\n  balance roundrobin\n%s" % (g.HOST, port, servers))
    log = open(os.path.join(work, "haproxy.log"), "wb")
    p = subprocess.Popen([shutil.which("haproxy"), "-f", cfg, "-db"], stdout=log,
                         stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
    g._started.append(p)
    log.close()

    def listening():
        try:
            socket.create_connection((g.HOST, port), timeout=1).close()
            return True
        except OSError:
            return False
    g.wait_until(listening, 10)
    return p


def commands_round(t, cloud, devs, tag, gws):
    """One command per device and one for NOBODY: each device gets its own exactly once, the cloud
    exactly one reply per command (success; NOBODY's device_offline), and the live instances took
    201 commands between them (the rest were left to the holder)."""
    took0 = sum(gw.metric("commands_received_total") for gw in gws)
    left0 = sum(gw.metric("north_cluster_left_total") for gw in gws)
    ids = {d.dev: "%s-%s" % (tag, d.dev) for d in devs}
    for d in devs:
        cloud.command(d.dev, ids[d.dev])
    cloud.command(NOBODY, "%s-nobody" % tag)
    want = set(ids.values()) | {"%s-nobody" % tag}
    g.wait_until(lambda: want <= set(cloud.snapshot("replies")), 30)
    # the instances' counters settle once each has read every command (one more than the sum)
    g.wait_until(lambda: sum(gw.metric("commands_received_total") for gw in gws) - took0 +
                 sum(gw.metric("north_cluster_left_total") for gw in gws) - left0
                 >= len(gws) * (len(devs) + 1), 10)
    reps = cloud.snapshot("replies")
    once = [d.dev for d in devs if d.got(ids[d.dev]) == 1]
    t.eq(len(once), len(devs), "%s: every device got its command exactly once" % tag)
    ok = [i for i in ids.values() if len(reps.get(i, [])) == 1 and reps[i][0].get("success")]
    t.eq(len(ok), len(devs), "%s: exactly one reply per command, success" % tag)
    nob = reps.get("%s-nobody" % tag, [])
    t.check(len(nob) == 1 and nob[0].get("code") == "device_offline",
            "%s: the device nobody holds: exactly one device_offline reply" % tag, nob)
    took = sum(gw.metric("commands_received_total") for gw in gws) - took0
    left = sum(gw.metric("north_cluster_left_total") for gw in gws) - left0
    t.check(took == len(devs) + 1 and left == (len(gws) - 1) * (len(devs) + 1),
            "%s: each command taken by one instance, left by the other(s)" % tag,
            "took %d left %d" % (took, left))


def main(t):
    if not shutil.which("haproxy"):
        t.info("haproxy not installed: skipped")
        t.check(True, "skipped")
        return
    g.raise_fd_limit(4096)
    work = tempfile.mkdtemp(prefix="iotgw-scale-")
    broker = g.Mosquitto(extra_conf=g.CLOUD_CONF + "set_tcp_nodelay true\n")
    devices = g.make_devices(g.thermo_ids(N + 1))
    relay = Relay(broker.port)  # gw-a's north link goes through it
    gws = []
    for name in GWS:
        port = relay.port if name == "gw-a" else broker.port
        gws.append(g.Gateway(devices=devices, config={
            "north": g.north_cfg(port, client_id=name, prefix=PREFIX, cluster=True),
            "adapters": {"mqtt": {"listeners": [
                {"address": g.HOST, "port": 0, "proxy_protocol": {"from": ["127.0.0.1"]}}]}}}))
    ga, gb = gws
    t.check(g.wait_until(lambda: all(gw.metric("north_connected") == 1 for gw in gws), 10),
            "both instances connected upstream")
    cloud = Cloud(broker.port)
    fport = g.free_port()
    hp = haproxy(work, fport, [(name, gw.mqtt_port) for name, gw in zip(GWS, gws)])
    devs = []
    try:
        devs = [Device(d, fport) for d in g.thermo_ids(N)]
        t.check(g.wait_until(lambda: all(d.ready.is_set() for d in devs), 30),
                "200 devices connected through HAProxy and subscribed",
                sum(d.ready.is_set() for d in devs))
        for d in devs:
            d.report()
        t.check(g.wait_until(lambda: all(len(d.acked) == 1 for d in devs), 20),
                "every device's report acknowledged")
        g.wait_until(lambda: len([v for v in cloud.snapshot("presence").values() if v[1]]) == N,
                     20)
        pres = cloud.snapshot("presence")
        held = {name: sum(1 for v in pres.values() if v == (name, True)) for name in GWS}
        t.check(held["gw-a"] + held["gw-b"] == N and min(held.values()) >= N // 4,
                "retained presence: every device online on one instance, both in use", held)
        onl = cloud.snapshot("online")
        t.check(all(onl.get(d.dev) and onl[d.dev][-1] == pres[d.dev][0] for d in devs),
                "online events forwarded upstream name the instance (gateway = client_id)")
        t.check(NOBODY not in pres, "no presence for the device nobody holds")

        commands_round(t, cloud, devs, "c1", gws)

        # --- SIGKILL one instance while devices report --------------------------------------------
        stop = threading.Event()

        def reporter():
            while not stop.is_set():
                for d in devs:
                    d.report()
                time.sleep(0.2)  # pacing: a steady stream of ~1000 reports/s, not a flood
        th = threading.Thread(target=reporter, daemon=True)
        th.start()
        g.wait_until(lambda: ga.metric("north_forwarded_total") > 2 * N, 20)
        on_a = [d for d in devs if pres[d.dev][0] == "gw-a"]
        # gw-a's link is held: what it acknowledges from now on waits in its outbox, with the
        # online and offline events of ten of its devices that drop and reconnect meanwhile
        relay.held.set()
        moved = on_a[:10]
        for d in moved:
            d.c.socket().shutdown(socket.SHUT_RDWR)
        g.wait_until(lambda: all(d.connects >= 2 and d.ready.is_set() for d in moved), 10)
        g.wait_until(lambda: ga.scalar("SELECT COUNT(*) FROM outbox") >= N, 10)
        backlog = ga.scalar("SELECT COUNT(*) FROM outbox")
        lifecycle = ga.scalar("SELECT COUNT(*) FROM outbox o JOIN events e ON e.id = o.event_id "
                              "WHERE e.kind IN ('online', 'offline')")
        t.check(backlog >= N and lifecycle >= 10,
                "gw-a, its link held, acknowledged reports it could not forward",
                "outbox %r, online/offline %r" % (backlog, lifecycle))
        ga.kill()
        relay.held.clear()
        t.info("killed gw-a holding %d devices, %d events in its outbox (%d online/offline)"
               % (len(on_a), backlog, lifecycle))
        t.check(g.wait_until(lambda: all(d.connects >= 2 and d.ready.is_set() for d in on_a), 30),
                "gw-a's devices reconnected through HAProxy",
                sum(d.connects >= 2 for d in on_a))
        t.check(g.wait_until(lambda: all(d.ready.is_set() for d in devs), 20),
                "every device connected")
        t.check(g.wait_until(lambda: all(v == ("gw-b", True) for v in
                                         cloud.snapshot("presence").values()), 20),
                "presence: gw-b holds every device now")
        stop.set()
        th.join()
        commands_round(t, cloud, devs, "c2", [gb])

        # --- restart the killed instance: its outbox drains, it does not take the devices back ----
        ga.start()
        t.check(g.wait_until(lambda: ga.metric("north_connected") == 1 and
                             ga.scalar("SELECT COUNT(*) FROM outbox") == 0, 30),
                "gw-a restarted: its outbox drained")
        def delivered():
            reps = cloud.snapshot("reports")
            return all(d.acked <= set(reps.get(d.dev, [])) for d in devs)
        t.check(g.wait_until(delivered, 20),
                "every acknowledged report reached the broker (counted per device)",
                sum(len(d.acked) for d in devs))
        rows = ga.query("SELECT payload FROM events WHERE kind='offline' AND name='restart'")
        t.check(rows and all(json.loads(r[0]).get("gateway") == "gw-a" for r in rows),
                "the offline events written at gw-a's restart name it too", rows[:2])
        t.eq(ga.metric("north_presence_published_total"), 0.0,
             "gw-a's old online/offline events (and its restart offlines) announced no presence")
        t.check(all(v == ("gw-b", True) for v in cloud.snapshot("presence").values()),
                "presence: gw-b still holds every device")
        commands_round(t, cloud, devs, "c3", gws)
    finally:
        for d in devs:
            d.stop()
        hp.terminate()
        hp.wait(10)
        cloud.c.loop_stop()
        shutil.rmtree(work, ignore_errors=True)
    for gw in gws:
        t.eq(gw.stop(), 0, "clean shutdown")
    broker.stop()


g.run(main)

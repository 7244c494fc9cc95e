# Proves deploy/container-entrypoint.sh outside a container (env vars point it at temp folders):
# on an empty volume it seeds the configuration from the seed folder, runs --check-config and
# execs iotgw (same PID, serving, SIGTERM -> exit 0, database in the volume); on the next start
# it keeps the volume's files as they are; a broken configuration stops it with exit 2 before
# iotgw starts; a command is run instead. Also checks deploy/compose/gateway.json (the installed
# config with north towards the broker) and that deploy/Containerfile exposes every shipped port.
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile

import gwtest as g

SCRIPT = os.path.join(g.SRC, "deploy", "container-entrypoint.sh")


def env_for(tmp, **over):
    env = dict(os.environ)
    env.update({"IOTGW_STATE_DIR": os.path.join(tmp, "state"),
                "IOTGW_SEED_DIR": os.path.join(tmp, "seed"), "IOTGW_BIN": g.BIN})
    env.pop("IOTGW_CONFIG", None)
    env.pop("IOTGW_CONFIG_DIR", None)
    env.update(over)
    return env


def make_seed(tmp):
    seed = os.path.join(tmp, "seed")
    os.makedirs(os.path.join(seed, "products"))
    cfg = {"loops": 2, "products_dir": "products", "devices_file": "devices.json",
           "admin": {"enabled": True, "address": g.HOST, "port": 0},
           "storage": {"path": "../iotgw.db"},  # the volume's root (config/ is beside it)
           "adapters": {"mqtt": {"listeners": [{"address": g.HOST, "port": 0}]}}}
    with open(os.path.join(seed, "gateway.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    with open(os.path.join(seed, "devices.json"), "w") as f:
        json.dump(g.make_devices(["t-001"]), f)
    with open(os.path.join(seed, "products", "thermo.json"), "w") as f:
        json.dump(g.THERMO, f)
    return seed


class Entry:
    """The entrypoint started like a container's PID 1 would be, iotgw's --ready-fd passed on."""

    def __init__(self, tmp, env):
        rfd, wfd = os.pipe()
        self.log_path = os.path.join(tmp, "entry-%d.log" % len(os.listdir(tmp)))
        with open(self.log_path, "wb") as logf:
            self.proc = subprocess.Popen(["sh", SCRIPT, "--ready-fd", str(wfd)], env=env,
                                         stdin=subprocess.DEVNULL, stdout=logf, stderr=logf,
                                         pass_fds=(wfd,), cwd=tmp)
        os.close(wfd)
        g._started.append(self.proc)
        buf = b""
        while True:  # until "ready" or the writer's end closes (exit)
            chunk = os.read(rfd, 4096)
            if not chunk:
                break
            buf += chunk
        os.close(rfd)
        self.ready = b"\nready\n" in b"\n" + buf
        self.ports = {}
        for line in buf.decode().splitlines():
            kv = g.parse_logfmt(line)
            if line.startswith("listener") and "port" in kv:
                self.ports.setdefault(kv["adapter"], int(kv["port"]))

    @property
    def log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def stop(self):
        os.kill(self.proc.pid, signal.SIGTERM)
        return self.proc.wait(30 * g.SLOW)


def health(port):
    import http.client
    c = http.client.HTTPConnection(g.HOST, port, timeout=5 * g.SLOW)
    try:
        c.request("GET", "/health")
        r = c.getresponse()
        return r.status, r.read().decode()
    finally:
        c.close()


def main(t):
    tmp = tempfile.mkdtemp(prefix="iotgw-entry-")
    try:
        body(t, tmp)
        compose_and_containerfile(t, tmp)
    finally:
        if os.environ.get("IOTGW_KEEP") != "1":
            shutil.rmtree(tmp, ignore_errors=True)


def body(t, tmp):
    seed = make_seed(tmp)
    state = os.path.join(tmp, "state")
    conf = os.path.join(state, "config")

    # -- first start: empty volume (not even the folder)
    e = Entry(tmp, env_for(tmp))
    t.check(e.ready, "first start: iotgw ready", e.log[-800:])
    for rel in ("gateway.json", "devices.json", "products/thermo.json"):
        with open(os.path.join(seed, rel), "rb") as a:
            p = os.path.join(conf, rel)
            t.check(os.path.exists(p) and open(p, "rb").read() == a.read(),
                    "seeded %s from the seed folder" % rel)
    t.check("config ok: 1 products, 1 devices" in e.log, "--check-config ran first", e.log[-500:])
    t.check(re.search(r"seeding .*gateway\.json", e.log), "seeding is logged", e.log[-500:])
    with open("/proc/%d/cmdline" % e.proc.pid, "rb") as f:
        argv = f.read().split(b"\0")
    t.eq(argv[0].decode(), g.BIN, "exec: the entrypoint's PID is iotgw itself")
    t.eq(health(e.ports.get("admin")), (200, "ok\n"), "/health ok")
    t.eq(e.stop(), 0, "SIGTERM to that PID: exit 0")
    t.check(os.path.exists(os.path.join(state, "iotgw.db")), "database in the volume")

    # -- second start: what the volume holds is kept, not re-seeded
    with open(os.path.join(conf, "devices.json"), "w") as f:
        json.dump(g.make_devices(["t-001", "t-002", "t-003"]), f)
    with open(os.path.join(seed, "devices.json"), "w") as f:
        json.dump([], f)
    e = Entry(tmp, env_for(tmp))
    t.check(e.ready, "second start: ready", e.log[-800:])
    t.check("config ok: 1 products, 3 devices" in e.log and "seeding" not in e.log,
            "second start: the volume's devices.json kept, nothing seeded", e.log[-500:])
    t.eq(e.stop(), 0, "second start: exit 0")

    # -- a file missing from the volume is seeded; the others stay
    os.remove(os.path.join(conf, "products", "thermo.json"))
    os.rmdir(os.path.join(conf, "products"))
    e = Entry(tmp, env_for(tmp))
    t.check(e.ready and os.path.exists(os.path.join(conf, "products", "thermo.json")) and
            "config ok: 1 products, 3 devices" in e.log,
            "a removed products/ is seeded again, devices.json kept", e.log[-800:])
    t.eq(e.stop(), 0, "third start: exit 0")

    # -- a broken configuration: exit 2, iotgw never started
    with open(os.path.join(conf, "gateway.json"), "w") as f:
        f.write('{"loops": 2,\n "bogus_key": 1}\n')
    e = Entry(tmp, env_for(tmp))
    t.check(not e.ready, "broken config: never ready")
    t.eq(e.proc.wait(30 * g.SLOW), 2, "broken config: exit 2")
    t.check("bogus_key" in e.log and "not starting" in e.log and "iotgw started" not in e.log,
            "broken config: the error and 'not starting', no start", e.log[-800:])

    # -- IOTGW_CONFIG names another gateway.json (compose mounts one)
    other = os.path.join(tmp, "other")
    os.makedirs(other)
    with open(os.path.join(seed, "gateway.json")) as f:
        cfg = json.load(f)
    cfg["products_dir"] = os.path.join(conf, "products")
    cfg["devices_file"] = os.path.join(conf, "devices.json")
    cfg["storage"]["path"] = os.path.join(state, "iotgw.db")
    with open(os.path.join(other, "gateway.json"), "w") as f:
        json.dump(cfg, f)
    e = Entry(tmp, env_for(tmp, IOTGW_CONFIG=os.path.join(other, "gateway.json")))
    t.check(e.ready and "config ok: 1 products, 3 devices" in e.log,
            "IOTGW_CONFIG: runs that gateway.json", e.log[-800:])
    t.eq(e.stop(), 0, "IOTGW_CONFIG: exit 0")

    # -- a command instead of iotgw
    p = subprocess.run(["sh", SCRIPT, "echo", "hello from the shell"], env=env_for(tmp),
                       capture_output=True, timeout=30)
    t.check(p.returncode == 0 and p.stdout == b"hello from the shell\n",
            "a command is run instead", p)

    # -- no seed folder at all
    p = subprocess.run(["sh", SCRIPT], env=env_for(tmp, IOTGW_SEED_DIR=os.path.join(tmp, "none"),
                                                   IOTGW_STATE_DIR=os.path.join(tmp, "s2")),
                       capture_output=True, timeout=30)
    t.check(p.returncode == 2 and b"no seed configuration" in p.stderr, "no seed folder: exit 2",
            p)


def compose_and_containerfile(t, tmp):
    # deploy/compose/gateway.json is the installed gateway.json (generated in the build folder)
    # with north on towards "cloud" and products/devices in the volume: nothing else drifts
    build = os.path.dirname(os.path.abspath(g.BIN))
    with open(os.path.join(build, "gen", "install", "gateway.json")) as f:
        installed = json.load(f)
    with open(os.path.join(g.SRC, "deploy", "compose", "gateway.json")) as f:
        compose = json.load(f)
    t.check(compose["north"]["enabled"] is True and compose["north"]["host"] == "cloud",
            "compose gateway.json: north enabled towards the broker 'cloud'")
    norm = json.loads(json.dumps(compose))
    norm["north"]["enabled"], norm["north"]["host"] = (installed["north"]["enabled"],
                                                       installed["north"]["host"])
    norm["products_dir"], norm["devices_file"] = "products", "devices.json"
    # the TLS listener's files: absolute, in the volume's config/ (seeded with /etc/iotgw/tls)
    for lis in norm["adapters"]["mqtt"]["listeners"]:
        for k in ("cert", "key"):
            if "tls" in lis and lis["tls"].get(k, "").startswith("/var/lib/iotgw/config/"):
                lis["tls"][k] = lis["tls"][k][len("/var/lib/iotgw/config/"):]
    t.check(norm == installed, "compose gateway.json is the installed one but for those keys")
    with open(os.path.join(g.SRC, "deploy", "compose.yaml")) as f:
        yaml = f.read()
    t.check("/mosquitto-no-auth.conf" in yaml and "IOTGW_CONFIG: /etc/iotgw-compose/gateway.json"
            in yaml and "./compose/gateway.json:/etc/iotgw-compose/gateway.json:ro" in yaml
            and "IOTGW_SEED_DIR: /usr/share/iotgw/examples" in yaml,
            "compose.yaml: a broker, the mounted gateway.json named by IOTGW_CONFIG, the "
            "examples as the seed")
    # with its paths moved to a seeded folder it passes --check-config
    vol = os.path.join(tmp, "compose-vol")
    # seeded from the examples (config/ as in the repository): products and the tour's devices
    shutil.copytree(os.path.join(g.SRC, "config", "products"), os.path.join(vol, "products"))
    shutil.copy(os.path.join(g.SRC, "config", "devices.json"), vol)
    compose["products_dir"] = os.path.join(vol, "products")
    compose["devices_file"] = os.path.join(vol, "devices.json")
    # and the package's throwaway certificate, as postinst makes it and the seed copies it
    subprocess.run(["sh", os.path.join(g.SRC, "deploy", "make-example-certs.sh"),
                    os.path.join(vol, "tls")], check=True, capture_output=True, timeout=60)
    for lis in compose["adapters"]["mqtt"]["listeners"]:
        for k in ("cert", "key"):
            if "tls" in lis:
                lis["tls"][k] = lis["tls"][k].replace("/var/lib/iotgw/config", vol)
    with open(os.path.join(vol, "gateway.json"), "w") as f:
        json.dump(compose, f)
    p = subprocess.run([g.BIN, "--check-config", "-c", os.path.join(vol, "gateway.json")],
                       capture_output=True, timeout=30)
    t.check(p.returncode == 0 and b"config ok: 11 products, 12 devices" in p.stdout,
            "compose gateway.json passes --check-config with the examples", p.stderr[-500:])

    # Containerfile: the stages and the runtime's settings; EXPOSE every shipped listener port
    with open(os.path.join(g.SRC, "deploy", "Containerfile")) as f:
        cf = f.read()
    for want in ("FROM debian:12 AS build", "FROM debian:12-slim", "cpack -G DEB", "USER iotgw",
                 "VOLUME /var/lib/iotgw", "HEALTHCHECK", "/health",
                 'ENTRYPOINT ["/usr/local/bin/container-entrypoint.sh"]'):
        t.check(want in cf, "Containerfile: %s" % want)
    exposed = set(re.findall(r"(\d+/(?:tcp|udp))", " ".join(
        line for line in cf.splitlines() if line.startswith("EXPOSE"))))
    with open(os.path.join(g.SRC, "config", "gateway.json")) as f:
        shipped = json.load(f)
    want = set()
    for name, sec in shipped["adapters"].items():
        proto = "tcp" if name in ("mqtt", "tcp") else "udp"
        for key in ("listeners", "dtls_listeners"):
            for lst in sec.get(key, []):
                want.add("%d/%s" % (lst["port"], proto))
    t.eq(exposed, want, "Containerfile EXPOSEs exactly the shipped device ports")


if __name__ == "__main__":
    g.run(main)

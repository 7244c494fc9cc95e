#!/usr/bin/python3
"""bench_mqtt.py: MQTT ingest benchmark. Runs the same mqtt_load cases against mosquitto and iotgw
side by side (each server started fresh per case on a free loopback port, stopped by PID) and
prints one `bench=... key=value` line per figure; never pass/fail. See tests/bench/README.md."""

import argparse
import json
import os
import resource
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
CLK_TCK = os.sysconf("SC_CLK_TCK")

# (qos, conns, window) in the order they run.
CASES = [(0, 1, 200), (0, 100, 20), (1, 1, 200), (1, 100, 20)]


class BenchError(Exception):
    pass


def out(line):
    print(line, flush=True)


def note(msg):
    print("# " + msg, file=sys.stderr, flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def proc_cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime, whole thread group


def proc_rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def settled_rss_kb(pid, timeout=3.0):
    """RSS once it stops moving (two samples 200 ms apart agree within 16 KiB), or at timeout."""
    deadline = time.monotonic() + timeout
    last = proc_rss_kb(pid)
    while time.monotonic() < deadline:
        time.sleep(0.2)
        cur = proc_rss_kb(pid)
        if abs(cur - last) <= 16:
            return cur
        last = cur
    return last


def cpu_idle_pct(interval=0.5):
    """Share of the machine's CPU time idle over interval: other load skews every figure."""
    def sample():
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[3] + v[4], sum(v)  # idle + iowait, total
    i0, t0 = sample()
    time.sleep(interval)
    i1, t1 = sample()
    return 100.0 * (i1 - i0) / max(1, t1 - t0)


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def log_tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except OSError:
        return ""


class Server:
    name = "?"

    def __init__(self, tmp):
        self.tmp = tmp
        self.proc = None
        self.port = None
        self.log = None

    @property
    def pid(self):
        return self.proc.pid

    def stop(self, timeout=30.0):
        """SIGTERM by PID, wait; SIGKILL if it hangs. Returns the exit code."""
        if self.proc is None or self.proc.poll() is not None:
            return None if self.proc is None else self.proc.returncode
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            note(f"{self.name} pid {self.pid} ignored SIGTERM for {timeout:.0f} s: SIGKILL")
            self.proc.kill()
            self.proc.wait()
            raise BenchError(f"{self.name} did not stop on SIGTERM")

    def fail_start(self, why):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        raise BenchError(f"{self.name} failed to start: {why}\n{log_tail(self.log)}")


class Mosquitto(Server):
    name = "mosquitto"

    def __init__(self, tmp, binary):
        super().__init__(tmp)
        self.binary = binary

    def version(self):
        r = subprocess.run([self.binary, "-h"], capture_output=True, text=True, timeout=10)
        for word in (r.stdout + r.stderr).split("\n", 1)[0].split():
            if word[:1].isdigit():
                return word
        return "unknown"

    def start(self, tag):
        self.port = free_port()
        conf = os.path.join(self.tmp, f"mosquitto-{tag}.conf")
        with open(conf, "w") as f:
            f.write(f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                    "log_dest stderr\nlog_type error\nlog_type warning\n")
        self.log = os.path.join(self.tmp, f"mosquitto-{tag}.log")
        with open(self.log, "w") as logf:
            self.proc = subprocess.Popen([self.binary, "-c", conf], stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.fail_start(f"exited with {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.02)
        self.fail_start("port not accepting connections after 10 s")


class Iotgw(Server):
    name = "iotgw"

    def __init__(self, tmp, binary, n_devices, loops):
        super().__init__(tmp)
        self.binary = binary
        self.loops = loops
        self.db = None
        self.cfgdir = os.path.join(tmp, "iotgw")
        os.makedirs(os.path.join(self.cfgdir, "products"))
        product = {
            "id": "bench", "name": "Benchmark device", "protocol": "mqtt", "codec": "json",
            "properties": [
                {"id": "temperature", "type": "float", "min": -40, "max": 125, "access": "r"},
                {"id": "humidity", "type": "float", "min": 0, "max": 100, "access": "r"},
                {"id": "level", "type": "int", "min": 0, "max": 10, "access": "r"},
                {"id": "name", "type": "string", "max_length": 256, "access": "r"},
            ],
        }
        with open(os.path.join(self.cfgdir, "products", "bench.json"), "w") as f:
            json.dump(product, f, indent=2)
        devices = [{"id": f"bench-{i:05d}", "product": "bench", "secret": "s"}
                   for i in range(n_devices)]
        with open(os.path.join(self.cfgdir, "devices.json"), "w") as f:
            json.dump(devices, f)
        self.n_devices = n_devices

    def version(self):
        r = subprocess.run([self.binary, "--version"], capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise BenchError(f"iotgw --version exited with {r.returncode}: {r.stderr.strip()}")
        words = [w for w in r.stdout.split() if w[:1].isdigit()]
        return words[0] if words else "unknown"

    def write_config(self, tag):
        data = os.path.join(self.cfgdir, f"data-{tag}")
        os.makedirs(data, exist_ok=True)
        gw = {
            "loops": self.loops,
            "log_level": "info",
            "products_dir": "products",
            "devices_file": "devices.json",
            "max_connections": self.n_devices + 1000,
            "admin": {"enabled": True, "address": "127.0.0.1", "port": 0},
            "storage": {"path": f"data-{tag}/iotgw.db"},
            "adapters": {"mqtt": {"listeners": [{"address": "127.0.0.1", "port": 0}]}},
        }
        path = os.path.join(self.cfgdir, f"gateway-{tag}.json")
        with open(path, "w") as f:
            json.dump(gw, f, indent=2)
        self.db = os.path.join(data, "iotgw.db")
        return path

    def check_config(self):
        path = self.write_config("check")
        r = subprocess.run([self.binary, "-c", path, "--check-config"], capture_output=True,
                           text=True, timeout=60)
        if r.returncode != 0:
            raise BenchError(f"iotgw --check-config exited with {r.returncode}:\n"
                             f"{r.stdout}{r.stderr}")

    def start(self, tag):
        path = self.write_config(tag)
        self.log = os.path.join(self.tmp, f"iotgw-{tag}.log")
        rfd, wfd = os.pipe()
        try:
            with open(self.log, "w") as logf:
                self.proc = subprocess.Popen(
                    [self.binary, "-c", path, "--ready-fd", str(wfd)], stdin=subprocess.DEVNULL,
                    stdout=logf, stderr=subprocess.STDOUT, pass_fds=(wfd,))
        finally:
            os.close(wfd)
        buf, self.port = b"", None
        deadline = time.monotonic() + 30
        try:
            while b"ready\n" not in buf:
                left = deadline - time.monotonic()
                if left <= 0:
                    self.fail_start("no 'ready' on --ready-fd after 30 s")
                if not select.select([rfd], [], [], left)[0]:
                    continue
                chunk = os.read(rfd, 4096)
                if not chunk:
                    self.proc.wait(5)
                    self.fail_start(f"--ready-fd closed without 'ready' (exit "
                                    f"{self.proc.returncode}, got {buf!r})")
                buf += chunk
        finally:
            os.close(rfd)
        for line in buf.decode().splitlines():
            kv = dict(w.split("=", 1) for w in line.split() if "=" in w)
            if line.startswith("listener") and kv.get("adapter") == "mqtt":
                self.port = int(kv["port"])
        if not self.port:
            self.fail_start(f"no 'listener adapter=mqtt ... port=N' line in {buf!r}")

    def stored_properties(self):
        r = subprocess.run(["sqlite3", self.db,
                            "SELECT count(*) FROM events WHERE kind='property'"],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            return f"error({r.stderr.strip()})"
        return r.stdout.strip()


def find_loader(tmp):
    """$MQTT_LOAD_BIN, else the CMake build's mqtt_load if newer than its source, else cc."""
    if os.environ.get("MQTT_LOAD_BIN"):
        return os.environ["MQTT_LOAD_BIN"]
    src = os.path.join(HERE, "mqtt_load.c")
    for build in (os.environ.get("IOTGW_BUILD", ""), os.path.join(SRC, "build")):
        cand = os.path.join(build, "mqtt_load") if build else ""
        if cand and os.access(cand, os.X_OK) and os.path.getmtime(cand) >= os.path.getmtime(src):
            return cand
    exe = os.path.join(tmp, "mqtt_load")
    cc = os.environ.get("CC", "cc")
    r = subprocess.run([cc, "-O2", "-std=gnu11", "-o", exe, src], capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"cannot build mqtt_load: {r.stderr}")
    return exe


def load_cmd(loader, port, extra):
    return [loader, "--host", "127.0.0.1", "--port", str(port), "--client-fmt", "bench-%05d",
            "--username", "bench", "--password", "s", "--topic-fmt",
            "/bench/%s/properties/report"] + extra


def parse_kv(line):
    return dict(w.split("=", 1) for w in line.split() if "=" in w)


def run_ingest(srv, loader, qos, conns, window, args):
    """One case against one freshly started server. Returns the figures (dict)."""
    tag = f"q{qos}c{conns}"
    srv.start(tag)
    try:
        cmd = load_cmd(loader, srv.port, [
            "--conns", str(conns), "--qos", str(qos), "--window", str(window),
            "--seconds", str(args.seconds), "--warmup", str(args.warmup),
            "--payload-size", str(args.payload_size), "--timeout", str(args.timeout), "--marks"])
        gen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        cpu0 = cpu1 = rss = None
        res = {}
        for line in gen.stdout:
            if line.startswith("mark measure_start"):
                cpu0 = proc_cpu_ticks(srv.pid)
            elif line.startswith("mark measure_end"):
                cpu1 = proc_cpu_ticks(srv.pid)
                rss = proc_rss_kb(srv.pid)
            elif line.startswith("bench=mqtt_load"):
                res = parse_kv(line)
        rc = gen.wait()
        if rc != 0 or not res or cpu0 is None or cpu1 is None:
            raise BenchError(f"mqtt_load against {srv.name} (qos={qos} conns={conns}) exited "
                             f"with {rc}: {' '.join(cmd)}")
    finally:
        src = srv.stop()
    if srv.name == "iotgw" and src != 0:
        raise BenchError(f"iotgw exited with {src} after SIGTERM\n{log_tail(srv.log)}")
    msgs = int(res["msgs"])
    fig = {
        "msg_per_s": float(res["msg_per_s"]),
        "cpu_us_per_msg": (cpu1 - cpu0) / CLK_TCK * 1e6 / msgs if msgs else 0.0,
        "rss_kb": rss, "msgs": msgs, "seconds": res["seconds"],
    }
    line = (f"bench=mqtt_ingest server={srv.name} qos={qos} conns={conns} "
            f"window={window if qos else 0} msg_per_s={fig['msg_per_s']:.0f} "
            f"cpu_us_per_msg={fig['cpu_us_per_msg']:.2f} rss_kb={rss} msgs={msgs} "
            f"seconds={res['seconds']}")
    if srv.name == "iotgw":
        line += f" stored={srv.stored_properties()}"
        if qos:
            line += f" acked={res['acked_total']}"
        line += f" sent={res['sent_total']}"
    out(line)
    return fig


def run_idle(srv, loader, n, args):
    srv.start(f"idle{n}")
    gen = None
    try:
        rss0 = settled_rss_kb(srv.pid)
        cmd = load_cmd(loader, srv.port, ["--conns", str(n), "--idle", "--connect-rate",
                                          str(args.connect_rate), "--timeout", str(args.timeout)])
        gen = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = gen.stdout.readline()
        if not line.startswith("connected "):
            raise BenchError(f"mqtt_load --idle against {srv.name}: got {line!r}")
        connected = int(line.split()[1])
        rss1 = settled_rss_kb(srv.pid)
        if connected != n:
            raise BenchError(f"mqtt_load --idle against {srv.name}: connected {connected} of {n}")
        gen.stdin.close()
        rc = gen.wait(60)
        gen = None
        if rc != 0:
            raise BenchError(f"mqtt_load --idle against {srv.name} exited with {rc}")
    finally:
        if gen is not None:
            gen.kill()
            gen.wait()
        srv.stop()
    per = (rss1 - rss0) * 1024 / n
    out(f"bench=mqtt_idle server={srv.name} conns={n} bytes_per_conn={per:.0f} "
        f"rss_before_kb={rss0} rss_after_kb={rss1}")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--smoke", action="store_true",
                    help="every case ~1 s, 1,000 idle connections (CI; < 60 s)")
    ap.add_argument("--seconds", type=float, help="measure window per case (default 5, smoke 1)")
    ap.add_argument("--warmup", type=float, help="warm-up per case (default 1, smoke 0.3)")
    ap.add_argument("--idle-conns", type=int,
                    help="idle case size (default 10000, smoke 1000; 0 skips it)")
    ap.add_argument("--cases", default="q0c1,q0c100,q1c1,q1c100",
                    help="ingest cases to run, comma list of q<qos>c<conns> (default all four)")
    ap.add_argument("--payload-size", type=int, default=100)
    ap.add_argument("--servers", default="mosquitto,iotgw",
                    help="comma list of mosquitto,iotgw (default both)")
    ap.add_argument("--loops", type=int, default=2, help="iotgw loops (default 2)")
    ap.add_argument("--connect-rate", type=float, default=5000)
    ap.add_argument("--timeout", type=float, default=60, help="generator connect/drain timeout")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs, dbs)")
    args = ap.parse_args()
    args.seconds = args.seconds or (1.0 if args.smoke else 5.0)
    args.warmup = args.warmup if args.warmup is not None else (0.3 if args.smoke else 1.0)
    if args.idle_conns is None:
        args.idle_conns = 1000 if args.smoke else 10000
    cases = [c for c in CASES if f"q{c[0]}c{c[1]}" in args.cases.split(",")]
    servers = [s for s in args.servers.split(",") if s]
    if not servers or any(s not in ("mosquitto", "iotgw") for s in servers):
        ap.error("--servers takes mosquitto and/or iotgw")

    nofile = raise_nofile()
    if nofile < args.idle_conns + 100:
        note(f"RLIMIT_NOFILE is {nofile}: idle case reduced")
        args.idle_conns = max(1, nofile - 100)
    tmp = tempfile.mkdtemp(prefix="bench_mqtt.")
    ok = False
    srvs = {}
    try:
        loader = find_loader(tmp)
        versions = []
        if "mosquitto" in servers:
            srvs["mosquitto"] = Mosquitto(tmp, os.environ.get("MOSQUITTO_BIN",
                                                              "/usr/sbin/mosquitto"))
        if "iotgw" in servers:
            binary = os.environ.get("IOTGW_BIN", os.path.join(SRC, "build", "iotgw"))
            if not os.access(binary, os.X_OK):
                raise BenchError(f"iotgw binary {binary} not found (set IOTGW_BIN)")
            srvs["iotgw"] = Iotgw(tmp, binary, max(100, args.idle_conns), args.loops)
        for name, s in srvs.items():
            versions.append(f"{name}={s.version()}")
        if "iotgw" in srvs:
            srvs["iotgw"].check_config()
        out(f"bench=mqtt_env cpus={os.cpu_count()} loadavg_1m={os.getloadavg()[0]:.2f} "
            f"cpu_idle_pct={cpu_idle_pct():.0f} "
            f"seconds={args.seconds} warmup={args.warmup} payload={args.payload_size} "
            f"{' '.join(versions)} loader={loader}")
        failed = 0
        for qos, conns, window in cases:
            figs = {}
            for name, s in srvs.items():
                try:
                    figs[name] = run_ingest(s, loader, qos, conns, window, args)
                except BenchError as e:  # report, go on with the other cases, exit 1 at the end
                    failed += 1
                    out(f"bench=mqtt_ingest server={name} qos={qos} conns={conns} error=failed")
                    print(f"bench_mqtt: {e}", file=sys.stderr, flush=True)
            if "mosquitto" in figs and "iotgw" in figs and figs["mosquitto"]["msg_per_s"]:
                ratio = figs["iotgw"]["msg_per_s"] / figs["mosquitto"]["msg_per_s"]
                out(f"bench=mqtt_ingest_ratio qos={qos} conns={conns} "
                    f"iotgw_over_mosquitto={ratio:.2f}")
        for s in srvs.values():
            if args.idle_conns > 0:
                try:
                    run_idle(s, loader, args.idle_conns, args)
                except BenchError as e:
                    failed += 1
                    out(f"bench=mqtt_idle server={s.name} conns={args.idle_conns} error=failed")
                    print(f"bench_mqtt: {e}", file=sys.stderr, flush=True)
        ok = failed == 0
    except BenchError as e:
        print(f"bench_mqtt: {e}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("bench_mqtt: interrupted", file=sys.stderr, flush=True)
    finally:
        for s in srvs.values():  # only after an error or ^C: each case stops its own server
            try:
                s.stop(10)
            except BenchError:
                pass
        if args.keep or not ok:
            note(f"configs, logs and databases kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

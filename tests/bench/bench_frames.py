#!/usr/bin/python3
"""bench_frames.py: TCP and UDP binary-frame ingest benchmark. Runs the same frame_load cases
against sink_server (a plain libuv server: framing and acks only, the ceiling) and iotgw side by
side (each server started fresh per case on a free loopback port, stopped by PID) and prints one
`bench=... key=value` line per figure; never pass/fail on the figures. See tests/bench/README.md."""

import argparse
import json
import os
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
CLK_TCK = os.sysconf("SC_CLK_TCK")

# (proto, conns, window) in the order they run.
CASES = [("tcp", 1, 200), ("tcp", 100, 20), ("udp", 1, 200), ("udp", 100, 20)]
PRODUCT = {"tcp": "meter-tcp", "udp": "sensor-udp"}
DEVICE_FMT = {"tcp": "mtr%05d", "udp": "snr%05d"}
SECRET = {"tcp": "pa55word", "udp": "tok12345"}


class BenchError(Exception):
    pass


def out(line):
    print(line, flush=True)


def note(msg):
    print("# " + msg, file=sys.stderr, flush=True)


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


def machine_busy_ticks():
    """CPU ticks every process of the machine has used (all cores: total - idle - iowait)."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    return sum(v) - v[3] - v[4]


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


def log_tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except (OSError, TypeError):
        return ""


def parse_kv(line):
    return dict(w.split("=", 1) for w in line.split() if "=" in w)


def read_until_ready(fd, deadline):
    """What fd says up to its 'ready' line. Returns (bytes, None) or (bytes, 'eof'/'timeout')."""
    buf = b""
    while b"ready\n" not in buf:
        left = deadline - time.monotonic()
        if left <= 0:
            return buf, "timeout"
        if not select.select([fd], [], [], left)[0]:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            return buf, "eof"
        buf += chunk
    return buf, None


def listener_port(buf, key, value):
    """The port of the first `listener ... key=value ... port=N` line."""
    for line in buf.decode(errors="replace").splitlines():
        kv = parse_kv(line)
        if line.startswith("listener") and kv.get(key) == value and "port" in kv:
            return int(kv["port"])
    return None


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


class Sink(Server):
    """sink_server: one thread, framing + acks, no storage. Prints its port, then 'ready'."""
    name = "sink"

    def __init__(self, tmp, binary):
        super().__init__(tmp)
        self.binary = binary

    def start(self, tag, proto):
        self.log = os.path.join(self.tmp, f"sink-{tag}.log")
        with open(self.log, "w") as logf:
            self.proc = subprocess.Popen(
                [self.binary, "--proto", proto, "--host", "127.0.0.1", "--port", "0"],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=logf)
        buf, err = read_until_ready(self.proc.stdout.fileno(), time.monotonic() + 10)
        if err:
            self.fail_start(f"no 'ready' on stdout ({err}, got {buf!r})")
        self.port = listener_port(buf, "proto", proto)
        if not self.port:
            self.fail_start(f"no 'listener proto={proto} ... port=N' line in {buf!r}")

    def stop(self, timeout=30.0):
        try:
            return super().stop(timeout)
        finally:
            if self.proc is not None and self.proc.stdout is not None:
                self.proc.stdout.close()


class Iotgw(Server):
    name = "iotgw"

    def __init__(self, tmp, binary, n_devices, loops):
        super().__init__(tmp)
        self.binary = binary
        self.loops = loops
        self.n_devices = n_devices
        self.db = None
        self.cfgdir = os.path.join(tmp, "iotgw")
        for proto, pid in PRODUCT.items():  # one product and its devices per transport
            pdir = os.path.join(self.cfgdir, f"products-{proto}")
            os.makedirs(pdir)
            for d in ("products", "products.binary"):  # products.binary until it moves
                src = os.path.join(SRC, "config", d, pid + ".json")
                if os.path.exists(src):
                    shutil.copy(src, os.path.join(pdir, pid + ".json"))
                    break
            else:
                raise BenchError(f"product {pid}.json not found in config/products(.binary)")
            devices = [{"id": DEVICE_FMT[proto] % i, "product": pid, "secret": SECRET[proto]}
                       for i in range(n_devices)]
            with open(os.path.join(self.cfgdir, f"devices-{proto}.json"), "w") as f:
                json.dump(devices, f)

    def version(self):
        r = subprocess.run([self.binary, "--version"], capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise BenchError(f"iotgw --version exited with {r.returncode}: {r.stderr.strip()}")
        words = [w for w in r.stdout.split() if w[:1].isdigit()]
        return words[0] if words else "unknown"

    def write_config(self, tag, proto):
        """gateway.json for one case: only the adapter under test, serving its one product."""
        data = os.path.join(self.cfgdir, f"data-{tag}")
        os.makedirs(data, exist_ok=True)
        gw = {
            "loops": self.loops,
            "log_level": "info",
            "products_dir": f"products-{proto}",
            "devices_file": f"devices-{proto}.json",
            "max_connections": self.n_devices + 1000,
            "admin": {"enabled": True, "address": "127.0.0.1", "port": 0},
            "storage": {"path": f"data-{tag}/iotgw.db"},
            "adapters": {proto: {"listeners": [{"address": "127.0.0.1", "port": 0,
                                                "product": PRODUCT[proto]}]}},
        }
        path = os.path.join(self.cfgdir, f"gateway-{tag}.json")
        with open(path, "w") as f:
            json.dump(gw, f, indent=2)
        self.db = os.path.join(data, "iotgw.db")
        return path

    def check_config(self, path):
        r = subprocess.run([self.binary, "-c", path, "--check-config"], capture_output=True,
                           text=True, timeout=60)
        if r.returncode != 0:
            raise BenchError(f"iotgw --check-config exited with {r.returncode}:\n"
                             f"{r.stdout}{r.stderr}")

    def start(self, tag, proto):
        path = self.write_config(tag, proto)
        self.check_config(path)
        self.log = os.path.join(self.tmp, f"iotgw-{tag}.log")
        rfd, wfd = os.pipe()
        try:
            with open(self.log, "w") as logf:
                self.proc = subprocess.Popen(
                    [self.binary, "-c", path, "--ready-fd", str(wfd)], stdin=subprocess.DEVNULL,
                    stdout=logf, stderr=subprocess.STDOUT, pass_fds=(wfd,))
        finally:
            os.close(wfd)
        try:
            buf, err = read_until_ready(rfd, time.monotonic() + 30)
        finally:
            os.close(rfd)
        if err:
            if err == "eof":
                try:
                    self.proc.wait(5)
                except subprocess.TimeoutExpired:
                    pass
            self.fail_start(f"no 'ready' on --ready-fd ({err}, exit {self.proc.poll()}, "
                            f"got {buf!r})")
        self.port = listener_port(buf, "adapter", proto)
        if not self.port:
            self.fail_start(f"no 'listener adapter={proto} ... port=N' line in {buf!r}")

    def stored_properties(self):
        """(rows of kind 'property' in events, None) or (None, error text)."""
        r = subprocess.run(["sqlite3", self.db,
                            "SELECT count(*) FROM events WHERE kind='property'"],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            return None, r.stderr.strip()
        return int(r.stdout.strip()), None


def find_bin(tmp, name, env, pkgs=()):
    """$ENV, else the CMake build's binary if newer than its source, else cc into the temp dir."""
    if os.environ.get(env):
        return os.environ[env]
    src = os.path.join(HERE, name + ".c")
    for build in (os.environ.get("IOTGW_BUILD", ""), os.path.join(SRC, "build")):
        cand = os.path.join(build, name) if build else ""
        if cand and os.access(cand, os.X_OK) and os.path.getmtime(cand) >= os.path.getmtime(src):
            return cand
    flags = []
    if pkgs:
        r = subprocess.run(["pkg-config", "--cflags", "--libs"] + list(pkgs),
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise BenchError(f"pkg-config {' '.join(pkgs)}: {r.stderr.strip()}")
        flags = r.stdout.split()
    exe = os.path.join(tmp, name)
    r = subprocess.run([os.environ.get("CC", "cc"), "-O2", "-std=gnu11", "-o", exe, src] + flags,
                       capture_output=True, text=True)
    if r.returncode != 0:
        raise BenchError(f"cannot build {name}: {r.stderr}")
    return exe


def run_ingest(srv, loader, proto, conns, window, args):
    """One case against one freshly started server. Returns the figures (dict)."""
    tag = f"{proto}{conns}"
    srv.start(tag, proto)
    try:
        cmd = [loader, "--host", "127.0.0.1", "--port", str(srv.port), "--proto", proto,
               "--conns", str(conns), "--window", str(window),
               "--seconds", str(args.seconds), "--warmup", str(args.warmup),
               "--device-fmt", DEVICE_FMT[proto], "--secret", SECRET[proto],
               "--timeout", str(args.timeout), "--ack-timeout-ms", str(args.ack_timeout_ms),
               "--marks"]
        gen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
        cpu0 = cpu1 = rss = None
        res = {}
        for line in gen.stdout:
            if line.startswith("mark measure_start"):
                cpu0 = proc_cpu_ticks(srv.pid)
                gen0, all0, t0 = proc_cpu_ticks(gen.pid), machine_busy_ticks(), time.monotonic()
            elif line.startswith("mark measure_end"):
                cpu1 = proc_cpu_ticks(srv.pid)
                gen1, all1, t1 = proc_cpu_ticks(gen.pid), machine_busy_ticks(), time.monotonic()
                rss = proc_rss_kb(srv.pid)
            elif line.startswith("bench=frame_load"):
                res = parse_kv(line)
        rc = gen.wait()
        if rc != 0 or not res or cpu0 is None or cpu1 is None:
            raise BenchError(f"frame_load against {srv.name} ({proto} conns={conns}) exited "
                             f"with {rc}: {' '.join(cmd)}\n{log_tail(srv.log)}")
    finally:
        src = srv.stop()
    if src != 0:
        raise BenchError(f"{srv.name} exited with {src} after SIGTERM\n{log_tail(srv.log)}")
    msgs = int(res["msgs"])
    # What else ran during the window (other sessions, builds), in % of one core: noise marker.
    other = ((all1 - all0) - (cpu1 - cpu0) - (gen1 - gen0)) / CLK_TCK / max(t1 - t0, 1e-3)
    fig = {
        "msg_per_s": float(res["msg_per_s"]),
        "cpu_us_per_msg": (cpu1 - cpu0) / CLK_TCK * 1e6 / msgs if msgs else 0.0,
        "rss_kb": rss, "msgs": msgs, "seconds": res["seconds"],
    }
    line = (f"bench=frame_ingest server={srv.name} proto={proto} conns={conns} window={window} "
            f"msg_per_s={fig['msg_per_s']:.0f} cpu_us_per_msg={fig['cpu_us_per_msg']:.2f} "
            f"rss_kb={rss} msgs={msgs} seconds={res['seconds']} "
            f"gen_cpu_pct={(gen1 - gen0) / CLK_TCK / max(t1 - t0, 1e-3) * 100:.0f} "
            f"other_cpu_pct={max(0.0, other) * 100:.0f}")
    acked = int(res["acked_total"])
    stored, err = None, None
    if srv.name == "iotgw":
        stored, err = srv.stored_properties()
        line += f" stored={stored if err is None else 'error'}"
    line += (f" acked={acked} sent={res['sent_total']} rejected={res['rejected_total']}"
             f" lost={res['lost']}")
    out(line)
    if srv.name == "iotgw" and (err is not None or stored < acked):
        raise BenchError(f"iotgw stored fewer property events than it acknowledged "
                         f"({err or stored} < {acked}): {srv.db}")
    if int(res["rejected_total"]):
        raise BenchError(f"{srv.name} rejected {res['rejected_total']} frames "
                         f"(ack result 1)\n{log_tail(srv.log)}")
    return fig


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--smoke", action="store_true", help="every case ~1 s (CI; < 60 s)")
    ap.add_argument("--seconds", type=float, help="measure window per case (default 5, smoke 1)")
    ap.add_argument("--warmup", type=float, help="warm-up per case (default 1, smoke 0.3)")
    ap.add_argument("--cases", default="tcp1,tcp100,udp1,udp100",
                    help="cases to run, comma list of <proto><conns> (default all four)")
    ap.add_argument("--servers", default="sink,iotgw",
                    help="comma list of sink,iotgw (default both)")
    ap.add_argument("--loops", type=int, default=2, help="iotgw loops (default 2)")
    ap.add_argument("--timeout", type=float, default=30,
                    help="generator connect/login and drain timeout in s (default 30)")
    ap.add_argument("--ack-timeout-ms", type=int, default=1000,
                    help="UDP: a datagram without an ack after this long counts as lost")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs, dbs)")
    args = ap.parse_args()
    args.seconds = args.seconds or (1.0 if args.smoke else 5.0)
    args.warmup = args.warmup if args.warmup is not None else (0.3 if args.smoke else 1.0)
    cases = [c for c in CASES if f"{c[0]}{c[1]}" in args.cases.split(",")]
    servers = [s for s in args.servers.split(",") if s]
    if not cases:
        ap.error("--cases takes tcp1,tcp100,udp1,udp100")
    if not servers or any(s not in ("sink", "iotgw") for s in servers):
        ap.error("--servers takes sink and/or iotgw")

    raise_nofile()
    tmp = tempfile.mkdtemp(prefix="bench_frames.")
    ok = False
    srvs = {}
    try:
        loader = find_bin(tmp, "frame_load", "FRAME_LOAD_BIN")
        r = subprocess.run([loader, "--selftest"], capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise BenchError(f"frame_load --selftest failed:\n{r.stdout}{r.stderr}")
        versions = []
        if "sink" in servers:
            srvs["sink"] = Sink(tmp, find_bin(tmp, "sink_server", "SINK_SERVER_BIN", ["libuv"]))
        if "iotgw" in servers:
            binary = os.environ.get("IOTGW_BIN", os.path.join(SRC, "build", "iotgw"))
            if not os.access(binary, os.X_OK):
                raise BenchError(f"iotgw binary {binary} not found (set IOTGW_BIN)")
            srvs["iotgw"] = Iotgw(tmp, binary, max(c[1] for c in CASES), args.loops)
            versions.append(f"iotgw={srvs['iotgw'].version()}")
        out(" ".join([f"bench=frame_env cpus={os.cpu_count()}",
                      f"loadavg_1m={os.getloadavg()[0]:.2f} cpu_idle_pct={cpu_idle_pct():.0f}",
                      f"seconds={args.seconds} warmup={args.warmup}"] + versions +
                     [f"loader={loader}"]))
        failed = 0
        for proto, conns, window in cases:
            figs = {}
            for name, s in srvs.items():
                try:
                    figs[name] = run_ingest(s, loader, proto, conns, window, args)
                except BenchError as e:  # report, go on with the other cases, exit 1 at the end
                    failed += 1
                    out(f"bench=frame_ingest server={name} proto={proto} conns={conns} "
                        f"error=failed")
                    print(f"bench_frames: {e}", file=sys.stderr, flush=True)
            if "sink" in figs and "iotgw" in figs and figs["sink"]["msg_per_s"]:
                ratio = figs["iotgw"]["msg_per_s"] / figs["sink"]["msg_per_s"]
                out(f"bench=frame_ingest_ratio proto={proto} conns={conns} "
                    f"iotgw_over_sink={ratio:.2f}")
        ok = failed == 0
    except BenchError as e:
        print(f"bench_frames: {e}", file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("bench_frames: interrupted", file=sys.stderr, flush=True)
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

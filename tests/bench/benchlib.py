"""benchlib.py: what bench_mqtt.py and bench_frames.py share. Output helpers, /proc CPU and RSS
sampling, the server base class (start, stop by PID), the iotgw runner (config, --check-config,
--ready-fd), building the C helpers, reading a generator's `mark` lines and the temp-dir run.
Standard library only; each driver keeps its own cases and figures."""

import argparse
import glob
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
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.path.dirname(os.path.dirname(HERE))
CLK_TCK = os.sysconf("SC_CLK_TCK")


class BenchError(Exception):
    pass


def out(line):
    print(line, flush=True)


def note(msg):
    print("# " + msg, file=sys.stderr, flush=True)


def warn(prog, msg):
    print(f"{prog}: {msg}", file=sys.stderr, flush=True)


def free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def parse_kv(line):
    return dict(w.split("=", 1) for w in line.split() if "=" in w)


def log_tail(path, n=15):
    try:
        with open(path, errors="replace") as f:
            return "".join(f.readlines()[-n:])
    except (OSError, TypeError):
        return ""


# ---- /proc sampling ----

def proc_cpu_ticks(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime + stime, whole thread group


def proc_sys_ticks(pid):
    """stime alone: the part of proc_cpu_ticks spent in the kernel."""
    with open(f"/proc/{pid}/stat") as f:
        return int(f.read().rsplit(")", 1)[1].split()[12])


def threads_ticks(pid, name, prefix=False):
    """(utime, stime) summed over pid's threads named name (or, with prefix, whose name starts
    with it: "gw-loop-"); None if there is none."""
    user = sys_ = 0
    found = False
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                comm = f.read().strip()
            if not (comm.startswith(name) if prefix else comm == name):
                continue
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])
        sys_ += int(fields[12])
        found = True
    return (user, sys_) if found else None


def thread_cpu_ticks(pid, comm):
    """utime + stime of pid's threads named comm (e.g. "iotgw-writer"); None if there is none."""
    t = threads_ticks(pid, comm)
    return sum(t) if t else None


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


IDLE_BATCH = 100  # warm idle case: devices connected (then disconnected) at a time


def hold_idle(name, cmd):
    """Starts a generator that connects and prints `connected N`, then holds its connections
    idle until its stdin closes. Returns the process once N is read."""
    gen = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = gen.stdout.readline()
        if not line.startswith("connected "):
            raise BenchError(f"{os.path.basename(cmd[0])} against {name}: got {line!r}")
        return gen, int(line.split()[1])
    except BaseException:
        gen.kill()
        gen.wait()
        raise


def release_idle(name, gen):
    gen.stdin.close()
    rc = gen.wait(60)
    if rc != 0:
        raise BenchError(f"{os.path.basename(gen.args[0])} against {name} exited with {rc}")


def idle_rss(srv, cmd_for, n, warm):
    """RSS (KiB) of a started server before and after n idle connections of devices 0..n-1,
    cmd_for(first, count) being the generator's command for devices first..first+count-1.
    cold: the first connection of each device. warm: every device has connected and
    disconnected once before, IDLE_BATCH at a time (so that what a device costs the server
    whether connected or not, its rows in a bounded cache included, is paid; the batches leave
    at most IDLE_BATCH sessions' worth of freed memory for the measured ones to reuse, where
    one warm-up of all n would leave n). Returns (rss0, rss1, accounted): accounted, for a
    server with memory_bytes(), the growth of what it counts by area (dict), else None."""
    if warm:
        if n % IDLE_BATCH:
            raise BenchError(f"warm idle case: connections must be a multiple of {IDLE_BATCH}")
        for first in range(0, n, IDLE_BATCH):
            gen, got = hold_idle(srv.name, cmd_for(first, IDLE_BATCH))
            release_idle(srv.name, gen)
            if got != IDLE_BATCH:
                raise BenchError(f"warm-up against {srv.name}: connected {got} of {IDLE_BATCH}")
    rss0 = settled_rss_kb(srv.pid)
    acc0 = srv.memory_bytes() if hasattr(srv, "memory_bytes") else None
    gen, got = hold_idle(srv.name, cmd_for(0, n))
    try:
        rss1 = settled_rss_kb(srv.pid)
        acc1 = srv.memory_bytes() if acc0 is not None else None
        if got != n:
            raise BenchError(f"idle case against {srv.name}: connected {got} of {n}")
    finally:
        if gen.poll() is None and gen.stdin and not gen.stdin.closed:
            try:
                release_idle(srv.name, gen)
            except BaseException:
                gen.kill()
                gen.wait()
                raise
    acc = None if acc0 is None else {a: acc1.get(a, 0) - v for a, v in acc0.items()}
    return rss0, rss1, acc


def accounted_fields(acc, n):
    """` accounted_per_conn=B area_X=B ...` (bytes per connection by area), or ''."""
    if acc is None:
        return ""
    per = {a: v / n for a, v in sorted(acc.items()) if v}
    return (f" accounted_per_conn={sum(per.values()):.0f} " +
            " ".join(f"area_{a}={v:.0f}" for a, v in per.items())).rstrip()


def _proc_stat_cpu():
    with open("/proc/stat") as f:
        return [int(x) for x in f.readline().split()[1:]]


def machine_busy_ticks():
    """CPU ticks every process of the machine has used (all cores: total - idle - iowait)."""
    v = _proc_stat_cpu()
    return sum(v) - v[3] - v[4]


def cpu_idle_pct(interval=0.5):
    """Share of the machine's CPU time idle over interval: other load skews every figure."""
    def sample():
        v = _proc_stat_cpu()
        return v[3] + v[4], sum(v)  # idle + iowait, total
    i0, t0 = sample()
    time.sleep(interval)
    i1, t1 = sample()
    return 100.0 * (i1 - i0) / max(1, t1 - t0)


def env_fields():
    """The machine part of a `bench=..._env` line: how busy it was just before the run."""
    return (f"cpus={os.cpu_count()} loadavg_1m={os.getloadavg()[0]:.2f} "
            f"cpu_idle_pct={cpu_idle_pct():.0f}")


def raise_nofile():
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


# ---- servers ----

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


def iotgw_binary():
    binary = os.environ.get("IOTGW_BIN") or os.path.join(
        os.environ.get("IOTGW_BUILD") or os.path.join(SRC, "build"), "iotgw")
    if not os.access(binary, os.X_OK):
        raise BenchError(f"iotgw binary {binary} not found (set IOTGW_BIN)")
    return binary


class Iotgw(Server):
    """The gateway: each driver's subclass writes its products and devices into cfgdir and
    names the adapter; this class writes gateway.json and starts iotgw with --ready-fd."""
    name = "iotgw"

    def __init__(self, tmp, binary, n_devices, loops):
        super().__init__(tmp)
        self.binary = binary
        self.loops = loops
        self.n_devices = n_devices
        self.db = None
        self.cfgdir = os.path.join(tmp, "iotgw")
        # more "storage" keys (e.g. cache_kb); $IOTGW_STORAGE, a JSON object, adds its own
        # (e.g. '{"page_size": 4096}' to compare settings with the same driver)
        self.storage = json.loads(os.environ.get("IOTGW_STORAGE", "{}"))

    def version(self):
        r = subprocess.run([self.binary, "--version"], capture_output=True, text=True, timeout=10)
        if r.returncode != 0:
            raise BenchError(f"iotgw --version exited with {r.returncode}: {r.stderr.strip()}")
        words = [w for w in r.stdout.split() if w[:1].isdigit()]
        return words[0] if words else "unknown"

    def write_gateway(self, tag, products_dir, devices_file, adapters):
        """gateway-TAG.json with a fresh storage path (data-TAG/iotgw.db). Returns its path."""
        data = os.path.join(self.cfgdir, f"data-{tag}")
        os.makedirs(data, exist_ok=True)
        gw = {
            "loops": self.loops,
            "log_level": "info",
            "products_dir": products_dir,
            "devices_file": devices_file,
            "max_connections": self.n_devices + 1000,
            "admin": {"enabled": True, "address": "127.0.0.1", "port": 0},
            "storage": {"path": f"data-{tag}/iotgw.db", **self.storage},
            "adapters": adapters,
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

    def launch(self, path, tag, adapter, ready_timeout=30.0):
        """Starts iotgw -c path --ready-fd; takes the port of its `adapter` listener. Keeps what
        --ready-fd said in self.ready_text."""
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
            buf, err = read_until_ready(rfd, time.monotonic() + ready_timeout)
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
        self.ready_text = buf
        self.port = listener_port(buf, "adapter", adapter)
        if not self.port:
            self.fail_start(f"no 'listener adapter={adapter} ... port=N' line in {buf!r}")

    def memory_bytes(self):
        """iotgw_memory_bytes by area (dict), from the admin listener's /metrics."""
        port = listener_port(self.ready_text, "adapter", "admin")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
            text = r.read().decode()
        areas = {}
        for line in text.splitlines():
            if line.startswith('iotgw_memory_bytes{area="'):
                key, val = line.rsplit(" ", 1)
                areas[key.split('"')[1]] = int(val)
        return areas

    def stored_properties(self):
        """(rows of kind 'property' in events, None) or (None, error text)."""
        r = subprocess.run(["sqlite3", self.db,
                            "SELECT count(*) FROM events WHERE kind='property'"],
                           capture_output=True, text=True, timeout=60)
        if r.returncode != 0:
            return None, r.stderr.strip()
        return int(r.stdout.strip()), None


# ---- the C helpers ----

def find_bin(tmp, name, env, pkgs=()):
    """$ENV, else the CMake build's binary if newer than its sources (name.c, loadgen.h), else cc
    into the temp dir."""
    if os.environ.get(env):
        return os.environ[env]
    src = os.path.join(HERE, name + ".c")
    newest = max(os.path.getmtime(p) for p in (src, os.path.join(HERE, "loadgen.h"))
                 if os.path.exists(p))
    for build in (os.environ.get("IOTGW_BUILD", ""), os.path.join(SRC, "build")):
        cand = os.path.join(build, name) if build else ""
        if cand and os.access(cand, os.X_OK) and os.path.getmtime(cand) >= newest:
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


def run_marked(cmd, srv_pid, result_prefix, whole_machine=False):
    """Runs a generator with --marks to its end. At `mark measure_start` / `mark measure_end` it
    samples the server's CPU ticks (and its RSS at the end); with whole_machine, also the
    generator's and the machine's busy ticks and the time. Returns (exit code, the generator's
    `result_prefix ...` line as a dict, the samples as a dict)."""
    gen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    w = {"cpu0": None, "cpu1": None, "rss": None}
    res = {}
    for line in gen.stdout:
        if line.startswith("mark measure_start"):
            w["cpu0"] = proc_cpu_ticks(srv_pid)
            w["sys0"] = proc_sys_ticks(srv_pid)
            w["writer0"] = thread_cpu_ticks(srv_pid, "iotgw-writer")
            w["loops0"] = threads_ticks(srv_pid, "gw-loop-", prefix=True)
            if whole_machine:
                w.update(gen0=proc_cpu_ticks(gen.pid), all0=machine_busy_ticks(),
                         t0=time.monotonic())
        elif line.startswith("mark measure_end"):
            w["cpu1"] = proc_cpu_ticks(srv_pid)
            w["sys1"] = proc_sys_ticks(srv_pid)
            w["writer1"] = thread_cpu_ticks(srv_pid, "iotgw-writer")
            w["loops1"] = threads_ticks(srv_pid, "gw-loop-", prefix=True)
            if whole_machine:
                w.update(gen1=proc_cpu_ticks(gen.pid), all1=machine_busy_ticks(),
                         t1=time.monotonic())
            w["rss"] = proc_rss_kb(srv_pid)
        elif line.startswith(result_prefix):
            res = parse_kv(line)
    rc = gen.wait()
    if w["cpu0"] is None or w["cpu1"] is None:
        res = {}  # no window: callers treat it as a failed run
    return rc, res, w


def ingest_figs(res, w):
    """msg_per_s, cpu_us_per_msg (server CPU over the window / msgs) and its kernel part
    sys_us_per_msg, rss_kb, msgs, seconds, writer_us_per_msg, loops_us_per_msg and its user-space
    part loops_user_us_per_msg (iotgw's loop threads)."""
    msgs = int(res["msgs"])
    w0, w1 = w.get("writer0"), w.get("writer1")
    l0, l1 = w.get("loops0"), w.get("loops1")
    loops = msgs and l0 is not None and l1 is not None
    return {
        "msg_per_s": float(res.get("msg_per_s", res.get("req_per_s", 0))),
        "cpu_us_per_msg": (w["cpu1"] - w["cpu0"]) / CLK_TCK * 1e6 / msgs if msgs else 0.0,
        "sys_us_per_msg": (w["sys1"] - w["sys0"]) / CLK_TCK * 1e6 / msgs if msgs else 0.0,
        "rss_kb": w["rss"], "msgs": msgs, "seconds": res["seconds"],
        # iotgw's store writer thread alone (None for other servers)
        "writer_us_per_msg": (w1 - w0) / CLK_TCK * 1e6 / msgs
        if msgs and w0 is not None and w1 is not None else None,
        # iotgw's loop threads (the adapters, decode, dispatch, acks), all and user space alone
        "loops_us_per_msg": (l1[0] + l1[1] - l0[0] - l0[1]) / CLK_TCK * 1e6 / msgs
        if loops else None,
        "loops_user_us_per_msg": (l1[0] - l0[0]) / CLK_TCK * 1e6 / msgs if loops else None,
    }


def run_each(prog, srvs, run_one, bench, case):
    """run_one(server) for every server. A BenchError is reported (`bench server=NAME case
    error=failed` on stdout, the cause on stderr) and the run goes on. Returns (figures by server
    name, failures)."""
    figs, failed = {}, 0
    for name, s in srvs.items():
        try:
            figs[name] = run_one(s)
        except BenchError as e:  # report, go on with the other cases, exit 1 at the end
            failed += 1
            out(f"{bench} server={name} {case} error=failed")
            warn(prog, e)
    return figs, failed


def ratio(figs, num, den):
    """figs[num] msg_per_s over figs[den]'s, or None when either is missing or den's is 0."""
    if num in figs and den in figs and figs[den]["msg_per_s"]:
        return figs[num]["msg_per_s"] / figs[den]["msg_per_s"]
    return None


# ---- command line and the run ----

def add_common_args(ap, smoke_help):
    ap.add_argument("--smoke", action="store_true", help=smoke_help)
    ap.add_argument("--seconds", type=float, help="measure window per case (default 5, smoke 1)")
    ap.add_argument("--warmup", type=float, help="warm-up per case (default 1, smoke 0.3)")


def add_idle_args(ap, smoke_size, unit, warm_what):
    """The idle case's options shared by the ingest benches: how many idle sessions, the SQLite
    page cache size and the cold/warm modes."""
    ap.add_argument("--idle-conns", type=int,
                    help=f"idle {unit} (default 10000, smoke {smoke_size}; 0 skips the idle case)")
    ap.add_argument("--cache-kb", type=int,
                    help="iotgw's storage.cache_kb (default: the gateway's, 8192): the SQLite "
                    "page cache, a bounded cost that a warm idle case at a small value has paid")
    ap.add_argument("--idle-modes", default="cold,warm",
                    help="idle case: cold (first connection of each device), warm (each device "
                    f"{warm_what} once before the measured sessions), or both")


def callgrind_threads(prefix, loop_marker):
    """(Ir of every thread, of the loop threads, of the writer, the busiest loop thread's file)
    from callgrind's per-thread files (--separate-threads=yes): a loop thread's file names
    loop_marker (a function only the loops run), the writer's writer_main."""
    total = loops = writer = 0
    busiest, busiest_ir = None, -1
    for path in glob.glob(prefix + "-*"):
        ir = 0
        with open(path, errors="replace") as f:
            text = f.read()
        for line in text.splitlines():
            if line.startswith(("summary:", "totals:")):
                ir = max(ir, int(line.split()[1]))
        total += ir
        if "writer_main" in text:
            writer += ir
        elif loop_marker in text:
            loops += ir
            if ir > busiest_ir:
                busiest, busiest_ir = path, ir
    return total, loops, writer, busiest


def run_loader(cmd, name):
    """Runs load generator cmd (its name, e.g. "frame_load") to its end: its `bench=NAME ...`
    line as a dict; a BenchError if it failed, printed no such line, or lost or had refused
    anything."""
    r = subprocess.run(cmd, capture_output=True, text=True)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith(f"bench={name}")), "")
    if r.returncode != 0 or not line:
        raise BenchError(f"{name} exited with {r.returncode}: {r.stderr.strip()}")
    kv = parse_kv(line)
    if int(kv["lost"]) or int(kv["rejected_total"]):
        raise BenchError(f"{name}: {line}")
    return kv


def callgrind_wrapper(tmp, binary, tag, separate=True):
    """A script that runs binary under callgrind, one output file per thread (separate) or one in
    all: (its path, the output file or the per-thread files' prefix)."""
    cg_out = os.path.join(tmp, f"callgrind-{tag}.out")
    wrapper = os.path.join(tmp, f"iotgw-cg-{tag}")
    with open(wrapper, "w") as f:
        f.write("#!/bin/sh\nexec valgrind --tool=callgrind "
                f"--separate-threads={'yes' if separate else 'no'} --compress-strings=no "
                f"--callgrind-out-file={cg_out} {binary} \"$@\"\n")
    os.chmod(wrapper, 0o755)
    return wrapper, cg_out


def callgrind_main(prog, doc, add_args, run_all, top=15):
    """The callgrind scripts' command line: add_args(ap) adds the script's own options to the
    shared ones (--binary, --loops, --baseline, --top, --keep); runs run_all(tmp, srvs, args) in a
    temp dir. Returns the exit code."""
    ap = argparse.ArgumentParser(description=doc)
    ap.add_argument("--binary", help="the gateway (default $IOTGW_BIN or build/iotgw)")
    add_args(ap)
    ap.add_argument("--loops", type=int, default=2)
    ap.add_argument("--baseline", action="store_true",
                    help="also run start + stop alone and subtract it")
    ap.add_argument("--top", type=int, default=top, help="functions to list (0: none)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (callgrind files)")
    args = ap.parse_args()
    return run_in_tmp(prog, args.keep, lambda tmp, srvs: run_all(tmp, srvs, args))


def callgrind_per_unit(run_once, tmp, args, tag):
    """The callgrind scripts' measure: run_once(tmp, binary, tag, args, seconds) -> (per-thread
    Ir (all, loops, writer, busiest loop's file), units done, anything) for args.seconds, less a
    start-and-stop-only run (seconds 0) with args.baseline. Returns (binary, the start-and-stop
    Ir, the run's Ir, units, anything, [all, loops, writer] Ir per unit)."""
    binary = os.path.abspath(args.binary or iotgw_binary())
    base = (0, 0, 0, None)
    if args.baseline:
        base, _, _ = run_once(tmp, binary, "start", args, 0)
    ir, n, extra = run_once(tmp, binary, tag, args, args.seconds)
    return binary, base, ir, n, extra, [(ir[i] - base[i]) / max(1, n) for i in range(3)]


def callgrind_top(cg_out, n, indent="  "):
    """Prints the n functions of a callgrind output file with the most instructions (self)."""
    r = subprocess.run(["callgrind_annotate", "--inclusive=no", cg_out],
                       capture_output=True, text=True)
    rows = [ln for ln in r.stdout.splitlines() if "(" in ln and "%)" in ln][1:n + 1]
    for ln in rows:
        out(indent + ln.strip()[:160])


def resolve_times(args):
    args.seconds = args.seconds or (1.0 if args.smoke else 5.0)
    args.warmup = args.warmup if args.warmup is not None else (0.3 if args.smoke else 1.0)


def run_in_tmp(prog, keep, body):
    """body(tmp, srvs) in a fresh temp dir; it fills srvs (name -> Server) and returns True when
    every case passed. Reports a BenchError or ^C, stops what is still running, keeps the temp
    dir after a failure (or with keep). Returns the exit code."""
    tmp = tempfile.mkdtemp(prefix=prog + ".")
    ok = False
    srvs = {}
    try:
        ok = body(tmp, srvs)
    except BenchError as e:
        warn(prog, e)
    except KeyboardInterrupt:
        warn(prog, "interrupted")
    finally:
        for s in srvs.values():  # only after an error or ^C: each case stops its own server
            try:
                s.stop(10)
            except BenchError:
                pass
        if keep or not ok:
            note(f"configs, logs and databases kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    return 0 if ok else 1

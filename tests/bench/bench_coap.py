#!/usr/bin/python3
"""bench_coap.py: CoAP ingest benchmark. Runs the same coap_load cases (N UDP client endpoints,
confirmable PUTs of a ~100-byte JSON report, a window of outstanding requests per endpoint)
against libcoap's example server (coap-server-notls, PUT on /example_data: parse, answer 2.04,
store nothing) and iotgw (decode, validate, commit to SQLite, then answer 2.04), each started
fresh per case on a free loopback port and stopped by PID; then the memory per idle client
endpoint of each. Prints one `bench=... key=value` line per figure; never pass/fail on the
figures. It exits 1 when something does not work: a server does not start, an endpoint gets ICMP
errors, a request is refused (4.xx), or iotgw stored fewer reports than it answered 2.04 or stored
one twice. See tests/bench/README.md."""

import argparse
import json
import os
import re
import socket
import struct
import subprocess
import sys
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402  (tests/bench/benchlib.py: what the drivers share)
from benchlib import CLK_TCK, BenchError, Server, log_tail, out  # noqa: E402

# (endpoints, window per endpoint, outstanding in all) in the order they run. The cap on the
# total keeps both servers under their UDP receive buffers (PERF-NOTES: ~200 outstanding
# datagrams overflow libcoap's default 208 KiB SO_RCVBUF).
CASES = [(16, 4, 64), (1000, 1, 100)]
DEVICE_FMT = "bench-%05d"
SECRET = "s"
LIBCOAP_PATH = "/example_data"
IOTGW_PATH = "/bench/%s/properties/report"

PRODUCT = {
    "id": "bench", "name": "CoAP bench sensor", "protocol": "coap", "codec": "json",
    "auth": {"mode": "device-secret"},
    "properties": [
        {"id": "temperature", "type": "float", "min": -40, "max": 125, "access": "r"},
        {"id": "humidity", "type": "float", "min": 0, "max": 100, "access": "r"},
        {"id": "level", "type": "int", "min": 0, "max": 10, "access": "r"},
        {"id": "name", "type": "string", "max_length": 256, "access": "r"},
    ],
    "events": [], "functions": [],
}


def coap_ping(port, timeout):
    """True once the server answers a CON GET /.well-known/core on 127.0.0.1:port."""
    deadline = time.monotonic() + timeout
    mid = 1
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("127.0.0.1", port))
        while time.monotonic() < deadline:
            mid += 1
            req = bytes([0x40, 1]) + struct.pack("!H", mid) + b"\xbb.well-known\x04core"
            try:
                s.send(req)
            except OSError:
                pass
            s.settimeout(0.2)
            try:
                d = s.recv(2048)
                if len(d) >= 4 and struct.unpack("!H", d[2:4])[0] == mid:
                    return True
            except (socket.timeout, ConnectionRefusedError):
                time.sleep(0.05)
    return False


def free_udp_port():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Libcoap(Server):
    """libcoap's example server, UDP only (notls build), logging off."""
    name = "libcoap"

    def __init__(self, tmp, binary):
        super().__init__(tmp)
        self.binary = binary

    def version(self):
        r = subprocess.run([self.binary, "-h"], capture_output=True, text=True, timeout=10)
        m = re.search(r"v(\d+\.\d+\.\d+)", r.stdout + r.stderr)
        return m.group(1) if m else "unknown"

    def start(self, tag):
        self.log = os.path.join(self.tmp, f"libcoap-{tag}.log")
        for _ in range(5):  # a free UDP port can be taken between the probe and the bind
            self.port = free_udp_port()
            with open(self.log, "w") as logf:
                self.proc = subprocess.Popen(
                    [self.binary, "-A", "127.0.0.1", "-p", str(self.port), "-v", "0"],
                    stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT)
            if coap_ping(self.port, 5):
                return
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
        self.fail_start("no answer to a CoAP ping")


class Iotgw(benchlib.Iotgw):
    """iotgw with only the CoAP adapter, one json product `bench`, devices bench-NNNNN."""

    def __init__(self, tmp, binary, n_devices, loops, cache_kb=0):
        super().__init__(tmp, binary, n_devices, loops)
        self.cache_kb = cache_kb
        pdir = os.path.join(self.cfgdir, "products-coap")
        os.makedirs(pdir)
        with open(os.path.join(pdir, "bench.json"), "w") as f:
            json.dump(PRODUCT, f)
        devices = [{"id": DEVICE_FMT % i, "product": "bench", "secret": SECRET}
                   for i in range(n_devices)]
        with open(os.path.join(self.cfgdir, "devices-coap.json"), "w") as f:
            json.dump(devices, f)

    def start(self, tag, idle_timeout_ms=None, ready_timeout=30.0):
        coap = {"listeners": [{"address": "127.0.0.1", "port": 0}]}
        if idle_timeout_ms:
            coap["idle_timeout_ms"] = idle_timeout_ms
        path = self.write_gateway(tag, "products-coap", "devices-coap.json", {"coap": coap})
        if self.cache_kb:  # SQLite's page cache of the store (default 8192 KiB)
            with open(path) as f:
                gw = json.load(f)
            gw["storage"]["cache_kb"] = self.cache_kb
            with open(path, "w") as f:
                json.dump(gw, f, indent=2)
        self.check_config(path)
        self.launch(path, tag, "coap", ready_timeout=ready_timeout)

    def stored(self):
        """(rows of kind property, distinct (device, msg_id)) or raises."""
        r = subprocess.run(["sqlite3", self.db, "SELECT count(*), count(DISTINCT device || '/' "
                            "|| msg_id) FROM events WHERE kind='property'"],
                           capture_output=True, text=True, timeout=120)
        if r.returncode != 0:
            raise BenchError(f"sqlite3 {self.db}: {r.stderr.strip()}")
        rows, distinct = r.stdout.strip().split("|")
        return int(rows), int(distinct)


def load_cmd(loader, srv, args, endpoints, window, outstanding, idle=False, first_device=0):
    cmd = [loader, "--host", "127.0.0.1", "--port", str(srv.port), "--endpoints", str(endpoints),
           "--first-device", str(first_device),
           "--window", str(window), "--outstanding", str(outstanding),
           "--timeout", str(args.timeout), "--ack-timeout-ms", str(args.ack_timeout_ms),
           "--payload-size", str(args.payload_size), "--device-fmt", DEVICE_FMT]
    if srv.name == "iotgw":
        cmd += ["--path-fmt", IOTGW_PATH, "--query", "token=" + SECRET]
    else:
        cmd += ["--path-fmt", LIBCOAP_PATH]
    if idle:
        cmd += ["--idle", "--rate", "20000"]
    else:
        cmd += ["--seconds", str(args.seconds), "--warmup", str(args.warmup), "--marks"]
    return cmd


def run_ingest(srv, loader, endpoints, window, outstanding, args):
    """One case against one freshly started server. Returns the figures (dict)."""
    tag = f"e{endpoints}"
    srv.start(tag)
    m0 = m1 = {}
    try:
        cmd = load_cmd(loader, srv, args, endpoints, window, outstanding)
        m0 = iotgw_metrics(srv)
        rc, res, w = benchlib.run_marked(cmd, srv.pid, "bench=coap_load", whole_machine=True)
        if rc != 0 or not res:
            raise BenchError(f"coap_load against {srv.name} (endpoints={endpoints}) exited "
                             f"with {rc}: {' '.join(cmd)}\n{log_tail(srv.log)}")
        m1 = iotgw_metrics(srv)
    finally:
        src = srv.stop()
    if src != 0 and not (srv.name == "libcoap" and src in (-15, 143)):
        raise BenchError(f"{srv.name} exited with {src} after SIGTERM\n{log_tail(srv.log)}")
    msgs = int(res["msgs"])
    window_s = max(w["t1"] - w["t0"], 1e-3)
    fig = benchlib.ingest_figs(res, w)
    cpu_us = fig["cpu_us_per_msg"]
    gen_ticks = w["gen1"] - w["gen0"]
    other = ((w["all1"] - w["all0"]) - (w["cpu1"] - w["cpu0"]) - gen_ticks) / CLK_TCK / window_s
    line = (f"bench=coap_ingest server={srv.name} endpoints={endpoints} window={window} "
            f"outstanding={outstanding} rate={float(res['req_per_s']):.0f} "
            f"cpu_us_per_req={cpu_us:.2f} sys_us_per_req={fig['sys_us_per_msg']:.2f} "
            f"lost={res['lost']} dup={res['dup']} "
            f"late={res['late']} busy={res['busy_total']} rejected={res['rejected_total']} "
            f"rss_kb={w['rss']} reqs={msgs} seconds={res['seconds']} "
            f"sent={res['sent_total']} ok={res['ok_total']} separate={res['separate']} "
            f"codes={res['codes']} gen_cpu_pct={gen_ticks / CLK_TCK / window_s * 100:.0f} "
            f"other_cpu_pct={max(0.0, other) * 100:.0f}")
    problems = []
    if srv.name == "iotgw":
        if fig["writer_us_per_msg"] is not None:
            line += f" writer_us_per_req={fig['writer_us_per_msg']:.2f}"
        line += commit_figures(m0, m1)
        rows, distinct = srv.stored()
        line += f" stored={rows} stored_distinct={distinct}"
        if distinct < int(res["ok_total"]):
            problems.append(f"iotgw stored {distinct} distinct reports but answered "
                            f"{res['ok_total']} with 2.04: {srv.db}")
        if rows != distinct:
            problems.append(f"iotgw stored {rows - distinct} reports twice: {srv.db}")
        if distinct > int(res["sent_total"]):
            problems.append(f"iotgw stored more reports ({distinct}) than were sent")
    out(line)
    if int(res["rejected_total"]) or int(res["rst_total"]):
        problems.append(f"{srv.name} refused {res['rejected_total']} requests "
                        f"(codes {res['codes']}), {res['rst_total']} RST\n{log_tail(srv.log)}")
    if problems:
        raise BenchError("; ".join(problems))
    return {"msg_per_s": float(res["req_per_s"]), "cpu_us": cpu_us}


def idle_round(srv, loader, n, args, what, first_device=0):
    """N endpoints (devices first_device.. on new sockets), one request each, held open:
    (generator, its connected line's figures, RSS before in KiB, RSS after)."""
    rss0 = benchlib.settled_rss_kb(srv.pid)
    m0 = iotgw_metrics(srv)
    cmd = load_cmd(loader, srv, args, n, 1, 100, idle=True, first_device=first_device)
    gen = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = gen.stdout.readline()
    if not line.startswith("connected"):
        stop_gen(gen)
        raise BenchError(f"coap_load --idle ({what}) against {srv.name}: {line!r}")
    kv = benchlib.parse_kv(line)
    rss1 = benchlib.settled_rss_kb(srv.pid)
    answered = int(kv.get("answered", 0))
    if answered < n:
        stop_gen(gen)
        raise BenchError(f"{srv.name}: only {answered} of {n} idle endpoints answered ({what})")
    kv["areas"] = areas_per_endpoint(m0, iotgw_metrics(srv), n)
    return gen, kv, rss0, rss1


def stop_gen(gen):
    gen.stdin.close()
    try:
        gen.wait(10)
    except subprocess.TimeoutExpired:
        gen.kill()
        gen.wait()


def iotgw_metrics(srv):
    """iotgw's /metrics as {sample name with labels: value} ({} for libcoap or when unreadable)."""
    if srv.name != "iotgw":
        return {}
    port = benchlib.listener_port(srv.ready_text, "adapter", "admin")
    vals = {}
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
            for ln in r.read().decode(errors="replace").splitlines():
                if ln.startswith("iotgw_"):
                    try:
                        vals[ln.rsplit(" ", 1)[0]] = float(ln.rsplit(" ", 1)[1])
                    except (IndexError, ValueError):
                        pass
    except (OSError, ValueError):
        pass
    return vals


def commit_figures(m0, m1):
    """iotgw: the store's transactions over the whole case (warm-up included) and the events per
    transaction: ` commits=... events_per_commit=...` ('' when /metrics was unreadable)."""
    b = m1.get("iotgw_store_batches_total", 0) - m0.get("iotgw_store_batches_total", 0)
    e = m1.get("iotgw_events_committed_total", 0) - m0.get("iotgw_events_committed_total", 0)
    if not m0 or not m1 or b <= 0:
        return ""
    return f" commits={b:.0f} events_per_commit={e / b:.1f}"


def areas_per_endpoint(m0, m1, n):
    """iotgw: gw_malloc's bytes per endpoint of the areas that grow with endpoints (session: the
    sessions and the dedup answers kept outside the table; store: the writer's per-device history
    heads): ` session_area_b=... store_area_b=...` ('' for libcoap)."""
    if not m0 or not m1:
        return ""
    parts = []
    for area in ("session", "store"):
        k = f'iotgw_memory_bytes{{area="{area}"}}'
        parts.append(f"{area}_area_b={(m1.get(k, 0) - m0.get(k, 0)) / n:.0f}")
    return " " + " ".join(parts)


def idle_closed(srv, n, deadline):
    """Waits until iotgw's coap_idle_timeouts_total (its /metrics) reaches n, or the deadline;
    returns the last value read."""
    port = benchlib.listener_port(srv.ready_text, "adapter", "admin")
    closed = 0
    while True:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
                for ln in r.read().decode(errors="replace").splitlines():
                    if ln.startswith("iotgw_coap_idle_timeouts_total"):
                        closed = int(float(ln.rsplit(" ", 1)[1]))
        except (OSError, ValueError):
            pass
        if closed >= n or time.monotonic() >= deadline:
            return closed
        time.sleep(0.2)


def run_idle(srv, loader, n, args):
    """Memory per idle endpoint: N endpoints, one request each, held open (cold: the devices'
    first sessions). With --warm-idle, on the same server: (1) the cold round's sockets close and
    the server's sessions of them time out (iotgw: idle_timeout_ms = --idle-timeout-s, waited for
    on its /metrics; libcoap: the same wait, its own sessions stay for its 300 s); (2) N endpoints
    of N other devices take up the memory those sessions freed, and hold; (3) N new endpoints of
    the cold round's devices again: the warm figure, every per-device cost already paid and no
    freed session memory left to reuse."""
    timeout_ms = int(args.idle_timeout_s * 1000)
    if srv.name == "iotgw":
        srv.start(f"idle{n}", idle_timeout_ms=timeout_ms)
    else:
        srv.start(f"idle{n}")
    gens = []
    try:
        gen, kv, rss0, rss1 = idle_round(srv, loader, n, args, "cold")
        gens.append(gen)
        per = (rss1 - rss0) * 1024.0 / n
        out(f"bench=coap_idle server={srv.name} endpoints={n} answered={kv.get('answered')} "
            f"ok={kv.get('ok')} lost={kv.get('lost')} bytes_per_endpoint={per:.0f} "
            f"rss_before_kb={rss0} rss_after_kb={rss1}{kv['areas']}")
        if not args.warm_idle:
            return per
        stop_gen(gens.pop())
        t_closed = time.monotonic()
        closed = "n/a"
        if srv.name == "iotgw":
            closed = idle_closed(srv, n, t_closed + args.idle_timeout_s + 10)
        else:  # the same wait; libcoap ends its sessions on its own idle timeout
            time.sleep(max(0.0, t_closed + args.idle_timeout_s + 2 - time.monotonic()))
        waited = time.monotonic() - t_closed
        gen, kv, _, rss_fill = idle_round(srv, loader, n, args, "refill", first_device=n)
        gens.append(gen)
        gen, kv, rss2, rss3 = idle_round(srv, loader, n, args, "warm")
        gens.append(gen)
        warm = (rss3 - rss2) * 1024.0 / n
        out(f"bench=coap_idle_warm server={srv.name} endpoints={n} answered={kv.get('answered')} "
            f"ok={kv.get('ok')} lost={kv.get('lost')} bytes_per_endpoint={warm:.0f} "
            f"rss_before_kb={rss2} rss_after_kb={rss3} first_round_closed={closed} "
            f"waited_s={waited:.1f} refill_rss_kb={rss_fill}{kv['areas']}")
        return per
    finally:
        for gen in gens:
            stop_gen(gen)
        code = srv.stop()
        if code not in (0, -15, 143) and srv.name == "libcoap":
            raise BenchError(f"libcoap exited with {code}")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    benchlib.add_common_args(ap, "every case ~1 s, 1,000 idle endpoints (CI; < 30 s)")
    ap.add_argument("--cases", default="16,1000",
                    help="endpoint counts of the ingest cases to run (default 16,1000)")
    ap.add_argument("--servers", default="libcoap,iotgw",
                    help="comma list of libcoap,iotgw (default both)")
    ap.add_argument("--idle-endpoints", type=int,
                    help="size of the idle case (default 10000; smoke 1000; 0 skips it)")
    ap.add_argument("--warm-idle", action="store_true",
                    help="after the idle case, a warm round: the same devices from new endpoints "
                         "once the first round's sessions timed out")
    ap.add_argument("--idle-timeout-s", type=float, default=20,
                    help="iotgw's CoAP idle_timeout in the idle case, and the wait before the "
                         "warm round (default 20)")
    ap.add_argument("--store-cache-kb", type=int, default=0,
                    help="iotgw's storage.cache_kb (SQLite's page cache; default: the gateway's)")
    ap.add_argument("--loops", type=int, default=2, help="iotgw loops (default 2)")
    ap.add_argument("--payload-size", type=int, default=100, help="JSON payload bytes (>= 99)")
    ap.add_argument("--timeout", type=float, default=30, help="drain timeout in s (default 30)")
    ap.add_argument("--ack-timeout-ms", type=int, default=2000,
                    help="a request without a response after this long counts as lost")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs, dbs)")
    args = ap.parse_args()
    benchlib.resolve_times(args)
    if args.idle_endpoints is None:
        args.idle_endpoints = 1000 if args.smoke else 10000
    wanted = [int(x) for x in args.cases.split(",") if x]
    cases = [c for c in CASES if c[0] in wanted]
    servers = [s for s in args.servers.split(",") if s]
    if not servers or any(s not in ("libcoap", "iotgw") for s in servers):
        ap.error("--servers takes libcoap and/or iotgw")
    benchlib.raise_nofile()
    return benchlib.run_in_tmp("bench_coap", args.keep,
                               lambda tmp, srvs: run_all(tmp, srvs, servers, cases, args))


def run_all(tmp, srvs, servers, cases, args):
    loader = benchlib.find_bin(tmp, "coap_load", "COAP_LOAD_BIN")
    versions = []
    if "libcoap" in servers:
        srvs["libcoap"] = Libcoap(tmp, os.environ.get("LIBCOAP_SERVER_BIN",
                                                      "/usr/bin/coap-server-notls"))
        versions.append(f"libcoap={srvs['libcoap'].version()}")
    if "iotgw" in servers:
        n_dev = max([c[0] for c in CASES] +
                    [args.idle_endpoints * (2 if args.warm_idle else 1)])
        srvs["iotgw"] = Iotgw(tmp, benchlib.iotgw_binary(), n_dev, args.loops,
                              args.store_cache_kb)
        versions.append(f"iotgw={srvs['iotgw'].version()}")
    out(" ".join([f"bench=coap_env {benchlib.env_fields()}",
                  f"seconds={args.seconds} warmup={args.warmup} payload={args.payload_size}"] +
                 versions + [f"loader={loader}"]))
    failed = 0
    for endpoints, window, outstanding in cases:
        figs, n = benchlib.run_each(
            "bench_coap", srvs,
            lambda s: run_ingest(s, loader, endpoints, window, outstanding, args),
            "bench=coap_ingest", f"endpoints={endpoints}")
        failed += n
        r = benchlib.ratio(figs, "iotgw", "libcoap")
        if r is not None:
            cpu = figs["iotgw"]["cpu_us"] / figs["libcoap"]["cpu_us"] \
                if figs["libcoap"]["cpu_us"] else 0.0
            out(f"bench=coap_ingest_ratio endpoints={endpoints} iotgw_over_libcoap={r:.2f} "
                f"cpu_per_req_iotgw_over_libcoap={cpu:.2f}")
    if args.idle_endpoints > 0:
        _, n = benchlib.run_each("bench_coap", srvs,
                                 lambda s: run_idle(s, loader, args.idle_endpoints, args),
                                 "bench=coap_idle", f"endpoints={args.idle_endpoints}")
        failed += n
    return failed == 0


if __name__ == "__main__":
    sys.exit(main())

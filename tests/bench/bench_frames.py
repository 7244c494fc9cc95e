#!/usr/bin/python3
"""bench_frames.py: TCP and UDP binary-frame ingest benchmark. Runs the same frame_load cases
against sink_server (a plain libuv server: framing and acks only, the ceiling) and iotgw side by
side (each server started fresh per case on a free loopback port, stopped by PID) and prints one
`bench=... key=value` line per figure; never pass/fail on the figures. See tests/bench/README.md."""

import base64
import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402  (tests/bench/benchlib.py: what the two drivers share)
from benchlib import CLK_TCK, SRC, BenchError, Server, log_tail, out  # noqa: E402

# (proto, conns, window) in the order they run.
CASES = [("tcp", 1, 200), ("tcp", 100, 20), ("udp", 1, 200), ("udp", 100, 20)]
PRODUCT = {"tcp": "meter-tcp", "udp": "sensor-udp"}
DEVICE_FMT = {"tcp": "mtr%05d", "udp": "snr%05d"}
SECRET = {"tcp": "pa55word", "udp": "tok12345"}


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
        buf, err = benchlib.read_until_ready(self.proc.stdout.fileno(), time.monotonic() + 10)
        if err:
            self.fail_start(f"no 'ready' on stdout ({err}, got {buf!r})")
        self.port = benchlib.listener_port(buf, "proto", proto)
        if not self.port:
            self.fail_start(f"no 'listener proto={proto} ... port=N' line in {buf!r}")

    def stop(self, timeout=30.0):
        try:
            return super().stop(timeout)
        finally:
            if self.proc is not None and self.proc.stdout is not None:
                self.proc.stdout.close()


def pbkdf2_hash(secret, iterations=1000):
    """A devices.json secret hash (issue 16: $pbkdf2-sha256$iter$salt$hash)."""
    salt = os.urandom(16)
    h = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, iterations)
    return "$pbkdf2-sha256$%d$%s$%s" % (iterations, base64.b64encode(salt).decode(),
                                        base64.b64encode(h).decode())


class Iotgw(benchlib.Iotgw):
    """iotgw with one binary adapter per case: meter-tcp over TCP or sensor-udp over UDP."""

    def __init__(self, tmp, binary, n_devices, loops, hashed=False):
        super().__init__(tmp, binary, n_devices, loops)
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
            devices = [{"id": DEVICE_FMT[proto] % i, "product": pid,
                        "secret": pbkdf2_hash(SECRET[proto]) if hashed else SECRET[proto]}
                       for i in range(n_devices)]
            with open(os.path.join(self.cfgdir, f"devices-{proto}.json"), "w") as f:
                json.dump(devices, f)

    def write_config(self, tag, proto):
        """gateway.json for one case: only the adapter under test, serving its one product."""
        return self.write_gateway(tag, f"products-{proto}", f"devices-{proto}.json", {
            proto: {"listeners": [{"address": "127.0.0.1", "port": 0,
                                   "product": PRODUCT[proto]}]}})

    def start(self, tag, proto):
        path = self.write_config(tag, proto)
        self.check_config(path)
        self.launch(path, tag, proto)


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
        rc, res, w = benchlib.run_marked(cmd, srv.pid, "bench=frame_load", whole_machine=True)
        if rc != 0 or not res:
            raise BenchError(f"frame_load against {srv.name} ({proto} conns={conns}) exited "
                             f"with {rc}: {' '.join(cmd)}\n{log_tail(srv.log)}")
    finally:
        src = srv.stop()
    if src != 0:
        raise BenchError(f"{srv.name} exited with {src} after SIGTERM\n{log_tail(srv.log)}")
    fig = benchlib.ingest_figs(res, w)
    rss, msgs = fig["rss_kb"], fig["msgs"]
    window_s = max(w["t1"] - w["t0"], 1e-3)
    gen_ticks = w["gen1"] - w["gen0"]
    # What else ran during the window (other sessions, builds), in % of one core: noise marker.
    other = ((w["all1"] - w["all0"]) - (w["cpu1"] - w["cpu0"]) - gen_ticks) / CLK_TCK / window_s
    line = (f"bench=frame_ingest server={srv.name} proto={proto} conns={conns} window={window} "
            f"msg_per_s={fig['msg_per_s']:.0f} cpu_us_per_msg={fig['cpu_us_per_msg']:.2f} "
            f"sys_us_per_msg={fig['sys_us_per_msg']:.2f} "
            f"rss_kb={rss} msgs={msgs} seconds={res['seconds']} "
            f"gen_cpu_pct={gen_ticks / CLK_TCK / window_s * 100:.0f} "
            f"other_cpu_pct={max(0.0, other) * 100:.0f}")
    if fig["writer_us_per_msg"] is not None:
        line += f" writer_us_per_msg={fig['writer_us_per_msg']:.2f}"
    if fig.get("loops_us_per_msg") is not None:
        line += (f" loops_us_per_msg={fig['loops_us_per_msg']:.2f}"
                 f" loops_user_us_per_msg={fig['loops_user_us_per_msg']:.2f}")
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


def run_idle(srv, loader, n, args, warm):
    """RSS growth per idle, logged-in TCP session, cold or warm (benchlib.idle_rss)."""
    def cmd_for(first, count):
        return [loader, "--host", "127.0.0.1", "--port", str(srv.port), "--proto", "tcp",
                "--conns", str(count), "--first-device", str(first), "--idle",
                "--device-fmt", DEVICE_FMT["tcp"], "--secret", SECRET["tcp"],
                "--timeout", str(args.timeout)]
    srv.start(f"idle{n}{'w' if warm else ''}", "tcp")
    try:
        rss0, rss1, acc = benchlib.idle_rss(srv, cmd_for, n, warm)
    finally:
        src = srv.stop()
    if src != 0:
        raise BenchError(f"{srv.name} exited with {src} after SIGTERM\n{log_tail(srv.log)}")
    per = (rss1 - rss0) * 1024 / n
    out(f"bench=frame_idle server={srv.name} proto=tcp conns={n} warm={int(warm)} "
        f"bytes_per_conn={per:.0f} rss_before_kb={rss0} rss_after_kb={rss1}"
        f"{benchlib.accounted_fields(acc, n)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    benchlib.add_common_args(ap, "every case ~1 s (CI; < 60 s)")
    ap.add_argument("--cases", default="tcp1,tcp100,udp1,udp100",
                    help="cases to run, comma list of <proto><conns> (default all four; "
                    "none: only the idle case)")
    benchlib.add_idle_args(ap, 1000, "TCP sessions", "logged in and disconnected")
    ap.add_argument("--servers", default="sink,iotgw",
                    help="comma list of sink,iotgw (default both)")
    ap.add_argument("--loops", type=int, default=2, help="iotgw loops (default 2)")
    ap.add_argument("--timeout", type=float, default=30,
                    help="generator connect/login and drain timeout in s (default 30)")
    ap.add_argument("--ack-timeout-ms", type=int, default=1000,
                    help="UDP: a datagram without an ack after this long counts as lost")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs, dbs)")
    ap.add_argument("--hashed-secrets", action="store_true",
                    help="devices.json holds PBKDF2 hashes of the secrets (issue 16)")
    args = ap.parse_args()
    benchlib.resolve_times(args)
    cases = [c for c in CASES if f"{c[0]}{c[1]}" in args.cases.split(",")]
    servers = [s for s in args.servers.split(",") if s]
    if args.idle_conns is None:
        args.idle_conns = 1000 if args.smoke else 10000
    if not cases and args.cases != "none":
        ap.error("--cases takes tcp1,tcp100,udp1,udp100 or none")
    if not servers or any(s not in ("sink", "iotgw") for s in servers):
        ap.error("--servers takes sink and/or iotgw")

    benchlib.raise_nofile()
    return benchlib.run_in_tmp("bench_frames", args.keep,
                               lambda tmp, srvs: run_all(tmp, srvs, servers, cases, args))


def run_all(tmp, srvs, servers, cases, args):
    """Every case against every server. True when nothing failed."""
    loader = benchlib.find_bin(tmp, "frame_load", "FRAME_LOAD_BIN")
    r = subprocess.run([loader, "--selftest"], capture_output=True, text=True, timeout=10)
    if r.returncode != 0:
        raise BenchError(f"frame_load --selftest failed:\n{r.stdout}{r.stderr}")
    versions = []
    if "sink" in servers:
        srvs["sink"] = Sink(tmp, benchlib.find_bin(tmp, "sink_server", "SINK_SERVER_BIN",
                                                   ["libuv"]))
    if "iotgw" in servers:
        srvs["iotgw"] = Iotgw(tmp, benchlib.iotgw_binary(),
                              max([c[1] for c in CASES] + [args.idle_conns]), args.loops,
                              args.hashed_secrets)
        if args.cache_kb:
            srvs["iotgw"].storage["cache_kb"] = args.cache_kb
        versions.append(f"iotgw={srvs['iotgw'].version()}")
    out(" ".join([f"bench=frame_env {benchlib.env_fields()}",
                  f"seconds={args.seconds} warmup={args.warmup}"] + versions +
                 [f"loader={loader}"]))
    failed = 0
    for proto, conns, window in cases:
        figs, n = benchlib.run_each(
            "bench_frames", srvs, lambda s: run_ingest(s, loader, proto, conns, window, args),
            "bench=frame_ingest", f"proto={proto} conns={conns}")
        failed += n
        r = benchlib.ratio(figs, "iotgw", "sink")
        if r is not None:
            out(f"bench=frame_ingest_ratio proto={proto} conns={conns} iotgw_over_sink={r:.2f}")
    for mode in args.idle_modes.split(",") if args.idle_conns > 0 else []:
        warm = mode == "warm"
        failed += benchlib.run_each(
            "bench_frames", srvs, lambda s: run_idle(s, loader, args.idle_conns, args, warm),
            "bench=frame_idle", f"proto=tcp conns={args.idle_conns} warm={warm:d}")[1]
    return failed == 0


if __name__ == "__main__":
    sys.exit(main())

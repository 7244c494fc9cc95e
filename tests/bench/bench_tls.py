#!/usr/bin/python3
"""bench_tls.py: MQTT over TLS, iotgw against mosquitto with the same ECDSA P-256 certificate
(made with the openssl CLI in a temp dir; each server started fresh per case on a free loopback
port, stopped by PID): full and resumed handshakes per second (with CONNECT/CONNACK), QoS 1
throughput over 100 TLS connections, and user-space bytes per idle TLS connection. Prints one
`bench=... key=value` line per figure; never pass/fail. --smoke runs in seconds. --base-bin
adds a second iotgw build (server iotgw-base) to every round: before and after in one run."""

import argparse
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
import benchlib  # noqa: E402
import bench_mqtt  # noqa: E402  (its mosquitto and iotgw servers, with TLS added here)
import tlscerts  # noqa: E402  (tests/integration/tlscerts.py: the throwaway CA)
from benchlib import BenchError, out  # noqa: E402


class Mosquitto(bench_mqtt.Mosquitto):
    def __init__(self, tmp, binary, certs):
        super().__init__(tmp, binary)
        self.certs = certs

    def conf(self):
        ca, crt, key = self.certs
        return (f"listener {self.port} 127.0.0.1\ncafile {ca}\ncertfile {crt}\n"
                f"keyfile {key}\nallow_anonymous true\npersistence false\n"
                "set_tcp_nodelay true\n"
                "max_connections -1\nlog_dest stderr\nlog_type error\nlog_type warning\n")


class Iotgw(bench_mqtt.Iotgw):
    def __init__(self, tmp, binary, n_devices, loops, certs):
        super().__init__(tmp, binary, n_devices, loops)
        self.certs = certs

    def write_config(self, tag):
        ca, crt, key = self.certs
        path = self.write_gateway(tag, "products", "devices.json", {
            "mqtt": {"listeners": [{"address": "127.0.0.1", "port": 0, "tls": {
                "cert": crt, "key": key, "handshakes_per_second": 0}}]}})
        return path


def run_load(srv, loader, tag, extra):
    srv.start(tag)
    try:
        cmd = [loader, "--port", str(srv.port), "--ca", srv.certs[0]] + extra
        cpu0 = benchlib.proc_cpu_ticks(srv.pid)
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        cpu1 = benchlib.proc_cpu_ticks(srv.pid)
        line = [x for x in r.stdout.splitlines() if x.startswith("bench=tls_load")]
        if r.returncode != 0 or not line:
            raise BenchError(f"tls_load against {srv.name} exited with {r.returncode}: "
                             f"{r.stderr.strip()[-300:]}")
        res = benchlib.parse_kv(line[0])
        # the server's own CPU (user + system, all its threads) per connection or message: the
        # figure least moved by other load on the machine
        res["cpu_us"] = ((cpu1 - cpu0) / os.sysconf("SC_CLK_TCK") * 1e6
                         / max(1, int(res["count"])))
        if srv.name.startswith("iotgw") and "qos1" in extra:
            stored, err = srv.stored_properties()
            res["stored"] = stored if err is None else f"error({err})"
    finally:
        src = srv.stop()
    if srv.name.startswith("iotgw") and src != 0:
        raise BenchError(f"iotgw exited with {src} after SIGTERM")
    return res


def run_idle(srv, loader, n):
    srv.start(f"idle{n}")
    gen = None
    try:
        rss0 = benchlib.settled_rss_kb(srv.pid)
        gen = subprocess.Popen([loader, "--port", str(srv.port), "--ca", srv.certs[0], "--mode",
                                "idle", "--conns", str(n), "--threads", "8"],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = gen.stdout.readline()
        if not line.startswith("connected "):
            raise BenchError(f"tls_load --mode idle against {srv.name}: got {line!r}")
        connected = int(line.split()[1])
        rss1 = benchlib.settled_rss_kb(srv.pid)
        gen.stdin.close()
        gen.wait(120)
        gen = None
    finally:
        if gen is not None:
            gen.kill()
            gen.wait()
        srv.stop()
    if connected != n:
        raise BenchError(f"idle: {srv.name} took {connected} of {n} TLS connections")
    per = (rss1 - rss0) * 1024 / n
    out(f"bench=tls_idle server={srv.name} conns={n} bytes_per_conn={per:.0f} "
        f"rss_before_kb={rss0} rss_after_kb={rss1}")
    return {"bytes": per}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--smoke", action="store_true", help="1 s per case, 1,000 idle connections")
    ap.add_argument("--seconds", type=float, help="per case (default 5, smoke 1)")
    ap.add_argument("--threads", type=int, default=4, help="handshake loops in parallel")
    ap.add_argument("--conns", type=int, default=100, help="QoS 1 connections")
    ap.add_argument("--window", type=int, default=20, help="QoS 1 window per connection")
    ap.add_argument("--idle-conns", type=int, help="default 10000, smoke 1000; 0 skips")
    ap.add_argument("--servers", default="mosquitto,iotgw")
    ap.add_argument("--cases", default="handshake,resume,qos1,idle",
                    help="comma list of handshake,resume,qos1,idle (default all)")
    ap.add_argument("--rounds", type=int, default=1,
                    help="handshake cases: run the servers in turn this many times and report "
                    "the medians (on a shared machine, load changes between runs)")
    ap.add_argument("--loops", type=int, default=2)
    ap.add_argument("--base-bin", help="a second iotgw binary (e.g. the base commit's build), run "
                    "as server iotgw-base after iotgw in every round: before/after in one run")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args()
    args.seconds = args.seconds or (1.0 if args.smoke else 5.0)
    if args.idle_conns is None:
        args.idle_conns = 1000 if args.smoke else 10000
    nofile = benchlib.raise_nofile()
    if nofile < args.idle_conns + 200:
        args.idle_conns = max(1, nofile - 200)
    servers = [s for s in args.servers.split(",") if s]
    return benchlib.run_in_tmp("bench_tls", args.keep,
                               lambda tmp, srvs: run_all(tmp, srvs, servers, args))


def median_rounds(mode, rounds):
    """Medians over the rounds: handshakes per second and server CPU per connection of each
    server, and of the per-round ratios (each round ran the servers back to back)."""
    def med(v):
        v = sorted(v)
        return v[len(v) // 2] if len(v) % 2 else (v[len(v) // 2 - 1] + v[len(v) // 2]) / 2
    kind = "full" if mode == "handshake" else "resumed"
    for name in sorted({n for f in rounds for n in f}):
        got = [f[name] for f in rounds if name in f]
        out(f"bench=tls_handshakes_median server={name} kind={kind} rounds={len(got)} "
            f"per_s={med([g['msg_per_s'] for g in got]):.0f} "
            f"server_cpu_us_per_conn={med([g['cpu_us'] for g in got]):.0f}")
    for num, den in (("iotgw", "mosquitto"), ("iotgw-base", "mosquitto"), ("iotgw", "iotgw-base")):
        rs = [benchlib.ratio(f, num, den) for f in rounds]
        rs = [r for r in rs if r is not None]
        if rs:
            out(f"bench=tls_handshakes_ratio_median kind={mode} rounds={len(rs)} "
                f"{num.replace('-', '_')}_over_{den.replace('-', '_')}={med(rs):.2f} "
                f"min={min(rs):.2f} max={max(rs):.2f}")


def make_certs(tmp):
    """A throwaway CA and server certificate, (ca, cert, key), readable by all: mosquitto started
    as root reads them as its own user."""
    ca = tlscerts.CA(tmp, "ca")
    crt, key = tlscerts.server_cert(ca)
    certs = (ca.cert, crt, key)
    os.chmod(tmp, 0o755)
    os.chmod(ca.dir, 0o755)
    for f in certs:
        os.chmod(f, 0o644)
    return certs


def run_all(tmp, srvs, servers, args):
    loader = benchlib.find_bin(tmp, "tls_load", "TLS_LOAD_BIN", pkgs=("openssl",))
    certs = make_certs(tmp)
    if "mosquitto" in servers:
        srvs["mosquitto"] = Mosquitto(tmp, os.environ.get("MOSQUITTO_BIN", "/usr/sbin/mosquitto"),
                                      certs)
    if "iotgw" in servers:
        srvs["iotgw"] = Iotgw(tmp, benchlib.iotgw_binary(), max(200, args.idle_conns),
                              args.loops, certs)
        srvs["iotgw"].check_config(srvs["iotgw"].write_config("check"))
    if "iotgw" in servers and args.base_bin:
        base = os.path.join(tmp, "base")
        os.makedirs(base)
        srvs["iotgw-base"] = Iotgw(base, args.base_bin, max(200, args.idle_conns), args.loops,
                                   certs)
        srvs["iotgw-base"].name = "iotgw-base"
    out(f"bench=tls_env {benchlib.env_fields()} seconds={args.seconds} threads={args.threads} "
        f"cert=ecdsa-p256 " + " ".join(f"{n}={s.version()}" for n, s in srvs.items()))
    failed = 0
    cases = args.cases.split(",")
    for mode in [m for m in ("handshake", "resume") if m in cases]:
        def one(s, mode=mode):
            r = run_load(s, loader, mode, ["--mode", mode, "--threads", str(args.threads),
                                           "--seconds", str(args.seconds)])
            kind = "full" if mode == "handshake" else "resumed"
            out(f"bench=tls_handshakes server={s.name} kind={kind} per_s={r['per_s']} "
                f"count={r['count']} resumed={r['resumed']} failed={r['failed']} "
                f"threads={args.threads} server_cpu_us_per_conn={r['cpu_us']:.0f}")
            return {"msg_per_s": float(r["per_s"]), "cpu_us": r["cpu_us"]}
        rounds = []
        for _ in range(max(1, args.rounds)):
            figs, n = benchlib.run_each("bench_tls", srvs, one, "bench=tls_handshakes",
                                        f"kind={mode}")
            failed += n
            rounds.append(figs)
            r = benchlib.ratio(figs, "iotgw", "mosquitto")
            if r is not None:
                out(f"bench=tls_handshakes_ratio kind={mode} iotgw_over_mosquitto={r:.2f}")
            r = benchlib.ratio(figs, "iotgw", "iotgw-base")
            if r is not None:
                out(f"bench=tls_handshakes_ratio kind={mode} iotgw_over_iotgw_base={r:.2f}")
        if len(rounds) > 1:
            median_rounds(mode, rounds)

    def q1(s):
        r = run_load(s, loader, "qos1", ["--mode", "qos1", "--conns", str(args.conns),
                                         "--window", str(args.window), "--seconds",
                                         str(args.seconds)])
        line = (f"bench=tls_qos1 server={s.name} conns={args.conns} window={args.window} "
                f"msg_per_s={r['per_s']} acked={r['count']} failed={r['failed']} "
                f"server_cpu_us_per_msg={r['cpu_us']:.1f}")
        if "stored" in r:
            line += f" stored={r['stored']}"
        out(line)
        return {"msg_per_s": float(r["per_s"])}
    if "qos1" in cases:
        figs, n = benchlib.run_each("bench_tls", srvs, q1, "bench=tls_qos1",
                                    f"conns={args.conns}")
        failed += n
        r = benchlib.ratio(figs, "iotgw", "mosquitto")
        if r is not None:
            out(f"bench=tls_qos1_ratio iotgw_over_mosquitto={r:.2f}")
    if args.idle_conns > 0 and "idle" in cases:
        failed += benchlib.run_each("bench_tls", srvs,
                                    lambda s: run_idle(s, loader, args.idle_conns),
                                    "bench=tls_idle", f"conns={args.idle_conns}")[1]
    return failed == 0


if __name__ == "__main__":
    sys.exit(main())

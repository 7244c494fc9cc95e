#!/usr/bin/python3
"""bench_mqtt.py: MQTT ingest benchmark. Runs the same mqtt_load cases against mosquitto and iotgw
side by side (each server started fresh per case on a free loopback port, stopped by PID) and
prints one `bench=... key=value` line per figure; never pass/fail. See tests/bench/README.md."""

import argparse
import json
import os
import socket
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402  (tests/bench/benchlib.py: what the two drivers share)
from benchlib import BenchError, Server, log_tail, note, out  # noqa: E402

# (qos, conns, window) in the order they run.
CASES = [(0, 1, 200), (0, 100, 20), (1, 1, 200), (1, 100, 20)]


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

    def conf(self):
        """mosquitto.conf's text for self.port (the TLS bench adds its certificate)."""
        return (f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
                "log_dest stderr\nlog_type error\nlog_type warning\n")

    def start(self, tag):
        self.port = benchlib.free_port()
        conf = os.path.join(self.tmp, f"mosquitto-{tag}.conf")
        with open(conf, "w") as f:
            f.write(self.conf())
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


class Iotgw(benchlib.Iotgw):
    """iotgw with the MQTT adapter, product `bench` and devices bench-00000... (secret s)."""

    def __init__(self, tmp, binary, n_devices, loops):
        super().__init__(tmp, binary, n_devices, loops)
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

    def write_config(self, tag):
        return self.write_gateway(tag, "products", "devices.json", {
            "mqtt": {"listeners": [{"address": "127.0.0.1", "port": 0}]}})

    def start(self, tag):
        self.launch(self.write_config(tag), tag, "mqtt")


def load_cmd(loader, port, extra, client_fmt="bench-%05d"):
    return [loader, "--host", "127.0.0.1", "--port", str(port), "--client-fmt", client_fmt,
            "--username", "bench", "--password", "s", "--topic-fmt",
            "/bench/%s/properties/report"] + extra


def run_ingest(srv, loader, qos, conns, window, args):
    """One case against one freshly started server. Returns the figures (dict)."""
    tag = f"q{qos}c{conns}"
    srv.start(tag)
    try:
        cmd = load_cmd(loader, srv.port, [
            "--conns", str(conns), "--qos", str(qos), "--window", str(window),
            "--seconds", str(args.seconds), "--warmup", str(args.warmup),
            "--payload-size", str(args.payload_size), "--timeout", str(args.timeout), "--marks"]
            + (["--v5"] if args.v5 else []))
        rc, res, w = benchlib.run_marked(cmd, srv.pid, "bench=mqtt_load")
        if rc != 0 or not res:
            raise BenchError(f"mqtt_load against {srv.name} (qos={qos} conns={conns}) exited "
                             f"with {rc}: {' '.join(cmd)}")
    finally:
        src = srv.stop()
    if srv.name == "iotgw" and src != 0:
        raise BenchError(f"iotgw exited with {src} after SIGTERM\n{log_tail(srv.log)}")
    fig = benchlib.ingest_figs(res, w)
    rss, msgs = fig["rss_kb"], fig["msgs"]
    line = (f"bench=mqtt_ingest server={srv.name} qos={qos} conns={conns} "
            f"window={window if qos else 0} msg_per_s={fig['msg_per_s']:.0f} "
            f"cpu_us_per_msg={fig['cpu_us_per_msg']:.2f} "
            f"sys_us_per_msg={fig['sys_us_per_msg']:.2f} rss_kb={rss} msgs={msgs} "
            f"seconds={res['seconds']}")
    if fig["writer_us_per_msg"] is not None:
        line += f" writer_us_per_msg={fig['writer_us_per_msg']:.2f}"
    if srv.name == "iotgw":
        stored, err = srv.stored_properties()
        line += f" stored={stored if err is None else f'error({err})'}"
        if qos:
            line += f" acked={res['acked_total']}"
        line += f" sent={res['sent_total']}"
    out(line)
    return fig


def run_idle(srv, loader, n, args, warm):
    """RSS growth per idle connection, cold or warm (benchlib.idle_rss)."""
    def cmd_for(first, count):
        # bench-%05d from device `first`: a fixed prefix and the low digits (count <= 100)
        fmt = "bench-%05d" if first == 0 and count == n else f"bench-{first // 100:03d}%02d"
        if count > 100 and fmt != "bench-%05d":
            raise BenchError("idle batch over 100 devices")
        return load_cmd(loader, srv.port, ["--conns", str(count), "--idle", "--connect-rate",
                                           str(args.connect_rate), "--timeout",
                                           str(args.timeout)], fmt)
    srv.start(f"idle{n}{'w' if warm else ''}")
    try:
        rss0, rss1, acc = benchlib.idle_rss(srv, cmd_for, n, warm)
    finally:
        srv.stop()
    per = (rss1 - rss0) * 1024 / n
    out(f"bench=mqtt_idle server={srv.name} conns={n} warm={int(warm)} bytes_per_conn={per:.0f} "
        f"rss_before_kb={rss0} rss_after_kb={rss1}{benchlib.accounted_fields(acc, n)}")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    benchlib.add_common_args(ap, "every case ~1 s, 1,000 idle connections (CI; < 60 s)")
    benchlib.add_idle_args(ap, 1000, "connections", "connected and disconnected")
    ap.add_argument("--cases", default="q0c1,q0c100,q1c1,q1c100",
                    help="ingest cases to run, comma list of q<qos>c<conns> (default all four)")
    ap.add_argument("--payload-size", type=int, default=100)
    ap.add_argument("--servers", default="mosquitto,iotgw",
                    help="comma list of mosquitto,iotgw (default both)")
    ap.add_argument("--loops", type=int, default=2, help="iotgw loops (default 2)")
    ap.add_argument("--v5", action="store_true", help="MQTT 5 clients (protocol level 5)")
    ap.add_argument("--connect-rate", type=float, default=5000)
    ap.add_argument("--timeout", type=float, default=60, help="generator connect/drain timeout")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs, dbs)")
    args = ap.parse_args()
    benchlib.resolve_times(args)
    if args.idle_conns is None:
        args.idle_conns = 1000 if args.smoke else 10000
    cases = [c for c in CASES if f"q{c[0]}c{c[1]}" in args.cases.split(",")]
    servers = [s for s in args.servers.split(",") if s]
    if not servers or any(s not in ("mosquitto", "iotgw") for s in servers):
        ap.error("--servers takes mosquitto and/or iotgw")

    nofile = benchlib.raise_nofile()
    if nofile < args.idle_conns + 100:
        note(f"RLIMIT_NOFILE is {nofile}: idle case reduced")
        args.idle_conns = max(1, nofile - 100)
    return benchlib.run_in_tmp("bench_mqtt", args.keep,
                               lambda tmp, srvs: run_all(tmp, srvs, servers, cases, args))


def run_all(tmp, srvs, servers, cases, args):
    """Every case against every server, then the idle case. True when nothing failed."""
    loader = benchlib.find_bin(tmp, "mqtt_load", "MQTT_LOAD_BIN")
    versions = []
    if "mosquitto" in servers:
        srvs["mosquitto"] = Mosquitto(tmp, os.environ.get("MOSQUITTO_BIN", "/usr/sbin/mosquitto"))
    if "iotgw" in servers:
        srvs["iotgw"] = Iotgw(tmp, benchlib.iotgw_binary(), max(100, args.idle_conns), args.loops)
        if args.cache_kb:
            srvs["iotgw"].storage["cache_kb"] = args.cache_kb
    for name, s in srvs.items():
        versions.append(f"{name}={s.version()}")
    if "iotgw" in srvs:
        srvs["iotgw"].check_config(srvs["iotgw"].write_config("check"))
    out(f"bench=mqtt_env {benchlib.env_fields()} "
        f"seconds={args.seconds} warmup={args.warmup} payload={args.payload_size} "
        f"{' '.join(versions)} loader={loader}")
    failed = 0
    for qos, conns, window in cases:
        figs, n = benchlib.run_each(
            "bench_mqtt", srvs, lambda s: run_ingest(s, loader, qos, conns, window, args),
            "bench=mqtt_ingest", f"qos={qos} conns={conns}")
        failed += n
        r = benchlib.ratio(figs, "iotgw", "mosquitto")
        if r is not None:
            out(f"bench=mqtt_ingest_ratio qos={qos} conns={conns} iotgw_over_mosquitto={r:.2f}")
    for mode in args.idle_modes.split(",") if args.idle_conns > 0 else []:
        warm = mode == "warm"
        failed += benchlib.run_each(
            "bench_mqtt", srvs, lambda s: run_idle(s, loader, args.idle_conns, args, warm),
            "bench=mqtt_idle", f"conns={args.idle_conns} warm={int(warm)}")[1]
    return failed == 0


if __name__ == "__main__":
    sys.exit(main())

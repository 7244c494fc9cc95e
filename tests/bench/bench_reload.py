#!/usr/bin/python3
"""bench_reload.py: the cost of a hot reload (issue 16) by the number of configured devices.
One iotgw per size with the MQTT adapter and N devices; `--conns` of them stay connected (idle)
the whole time. Each reload rewrites devices.json with one device removed and one added
(alternating two files, as an operator's edit would) and sends SIGHUP; the gateway's own
"configuration applied" log line gives load_ms (reading and validating the new configuration on
the main thread) and switch_ms (the loops adopting the new generation). Prints the median and
the worst of each, and the gateway's RSS after the first and the last reload. Never pass/fail."""

import argparse
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
from benchlib import BenchError, out  # noqa: E402
from bench_mqtt import Iotgw as IotgwMqtt, load_cmd  # noqa: E402

APPLIED = re.compile(r'configuration applied.*?load_ms=([0-9.]+) switch_ms=([0-9.]+)')


def rss_kb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def write_devices(path, ids):
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump([{"id": i, "product": "bench", "secret": "s"} for i in ids], f)
    os.replace(tmp, path)


def applied_lines(log):
    with open(log, errors="replace") as f:
        return APPLIED.findall(f.read())


def one_size(tmp, binary, loader, n, reloads, conns, loops):
    sub = os.path.join(tmp, f"n{n}")
    os.makedirs(sub)
    srv = IotgwMqtt(sub, binary, n, loops)
    srv.start(f"reload-{n}")
    gen = None
    try:
        if conns:
            gen = subprocess.Popen(load_cmd(loader, srv.port, [
                "--conns", str(conns), "--idle", "--connect-rate", "5000", "--timeout", "60"]),
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
            line = gen.stdout.readline()
            if not line.startswith("connected ") or int(line.split()[1]) != conns:
                raise BenchError(f"mqtt_load --idle: got {line!r}")
        ids = [f"bench-{i:05d}" for i in range(n)]
        files = [ids[:-1] + ["bench-extra"], ids]
        devices = os.path.join(srv.cfgdir, "devices.json")
        rss_first = 0
        for k in range(reloads):
            before = len(applied_lines(srv.log))
            write_devices(devices, files[k % 2])
            os.kill(srv.pid, signal.SIGHUP)
            deadline = time.monotonic() + 60
            while len(applied_lines(srv.log)) <= before:
                if time.monotonic() > deadline or srv.proc.poll() is not None:
                    raise BenchError(f"reload {k + 1} of {n} devices not applied\n"
                                     f"{benchlib.log_tail(srv.log)}")
                time.sleep(0.01)
            if k == 0:
                rss_first = rss_kb(srv.pid)
        rss_last = rss_kb(srv.pid)
        got = applied_lines(srv.log)[-reloads:]
        load = [float(a) for a, _ in got]
        switch = [float(b) for _, b in got]
        alive = gen is None or gen.poll() is None
        out(f"bench=reload devices={n} conns={conns} reloads={reloads} "
            f"load_ms_p50={statistics.median(load):.1f} load_ms_max={max(load):.1f} "
            f"switch_ms_p50={statistics.median(switch):.1f} switch_ms_max={max(switch):.1f} "
            f"rss_first_kb={rss_first} rss_last_kb={rss_last} idle_conns_kept={int(alive)}")
    finally:
        if gen is not None:
            gen.kill()
            gen.wait()
        srv.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--devices", default="1000,10000,100000", help="sizes, comma separated")
    ap.add_argument("--reloads", type=int, default=20)
    ap.add_argument("--conns", type=int, default=100, help="idle connections held meanwhile")
    ap.add_argument("--loops", type=int, default=2)
    ap.add_argument("--smoke", action="store_true", help="1,000 devices, 3 reloads")
    args = ap.parse_args()
    if args.smoke:
        args.devices, args.reloads, args.conns = "1000", 3, 10

    def body(tmp, srvs):
        loader = benchlib.find_bin(tmp, "mqtt_load", "MQTT_LOAD_BIN")
        binary = benchlib.iotgw_binary()
        for n in [int(x) for x in args.devices.split(",")]:
            one_size(tmp, binary, loader, n, args.reloads, min(args.conns, n - 1), args.loops)
        return True

    return benchlib.run_in_tmp("bench_reload", False, body)


if __name__ == "__main__":
    sys.exit(main())

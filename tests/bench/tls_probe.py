#!/usr/bin/python3
"""tls_probe.py: one TLS server (iotgw or mosquitto) started as bench_tls.py starts it, a tool
attached to its PID (strace, perf record: `{pid}` in the tool's arguments is replaced), and one
tls_load run against it. Prints tls_load's line and the server's CPU per connection, for iotgw
also its store writer's (the thread iotgw-writer). The tool is stopped with SIGINT by its PID
after the load. For the figures of docs/PERFORMANCE.md ("TLS", fourth pass), e.g.
  tls_probe.py --server mosquitto -- strace -c -f -o out.txt -p {pid}
  tls_probe.py --server iotgw --seconds 4 -- perf record -e cpu-clock -F 1999 -g -o p.data -p {pid}
Never pass/fail; IOTGW_BIN picks the iotgw binary as in the other benches."""

import argparse
import os
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))
import benchlib  # noqa: E402
import bench_tls  # noqa: E402
from benchlib import BenchError, out  # noqa: E402


def probe(tmp, srvs, args):
    loader = benchlib.find_bin(tmp, "tls_load", "TLS_LOAD_BIN", pkgs=("openssl",))
    certs = bench_tls.make_certs(tmp)
    if args.server == "mosquitto":
        s = bench_tls.Mosquitto(tmp, os.environ.get("MOSQUITTO_BIN", "/usr/sbin/mosquitto"), certs)
    else:
        s = bench_tls.Iotgw(tmp, benchlib.iotgw_binary(), 200, args.loops, certs)
    srvs[s.name] = s
    s.start("probe")
    tool = None
    try:
        if args.tool:
            tool = subprocess.Popen([a.replace("{pid}", str(s.pid)) for a in args.tool])
            time.sleep(1.0)  # (attached before the load starts)
        c0 = benchlib.proc_cpu_ticks(s.pid)
        w0 = benchlib.thread_cpu_ticks(s.pid, "iotgw-writer")
        r = subprocess.run([loader, "--port", str(s.port), "--ca", certs[0], "--mode", args.mode,
                            "--threads", str(args.threads), "--seconds", str(args.seconds)],
                           capture_output=True, text=True, timeout=600)
        c1 = benchlib.proc_cpu_ticks(s.pid)
        w1 = benchlib.thread_cpu_ticks(s.pid, "iotgw-writer")
    finally:
        if tool is not None:
            tool.send_signal(signal.SIGINT)
            tool.wait(120)
        s.stop()
    line = [x for x in r.stdout.splitlines() if x.startswith("bench=tls_load")]
    if r.returncode != 0 or not line:
        raise BenchError(f"tls_load exited with {r.returncode}: {r.stderr.strip()[-300:]}")
    kv = benchlib.parse_kv(line[0])
    n = max(1, int(kv["count"]))
    tick = os.sysconf("SC_CLK_TCK")
    res = (f"bench=tls_probe server={s.name} mode={args.mode} count={kv['count']} "
           f"per_s={kv['per_s']} resumed={kv['resumed']} "
           f"server_cpu_us_per_conn={(c1 - c0) / tick * 1e6 / n:.0f}")
    if w0 is not None and w1 is not None:
        res += f" writer_cpu_us_per_conn={(w1 - w0) / tick * 1e6 / n:.0f}"
    out(res)
    return True


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", choices=("iotgw", "mosquitto"), default="iotgw")
    ap.add_argument("--mode", default="resume", help="tls_load mode (resume, handshake)")
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--loops", type=int, default=2)
    ap.add_argument("tool", nargs="*", help="after --: the tool and its arguments, {pid} replaced")
    args = ap.parse_args()
    return benchlib.run_in_tmp("tls_probe", False, lambda tmp, srvs: probe(tmp, srvs, args))


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""callgrind_mqtt.py: instructions per message on iotgw's whole MQTT path (parse, validate,
persist, ack), counted by valgrind's callgrind, which is stable on a busy machine where CPU time is
not. Runs iotgw (bench_mqtt.py's config: product `bench`, devices bench-NNNNN) under callgrind,
sends a fixed number of 100-byte QoS 1 reports with mqtt_load --count (QoS 1 only), stops it with SIGTERM, and
prints `bench=mqtt_callgrind ... ir_per_msg=...` (every thread's instructions, start-up and
shutdown included, over the messages: a start-up-only run is subtracted when --baseline is given)
and the top functions. Prints figures; never passes or fails on them."""
import glob
import os
import subprocess
import sys

import benchlib
import bench_mqtt
from benchlib import BenchError, out


def callgrind_total(prefix):
    """The summed Ir of every callgrind output file written for prefix."""
    total = 0
    for path in glob.glob(prefix + "*"):
        with open(path) as f:
            for line in f:
                if line.startswith(("summary:", "totals:")):
                    total = max(total, int(line.split()[1]))
    return total


def run_once(tmp, binary, tag, args, count):
    """One gateway under callgrind; count reports per connection (0: start and stop only).
    Returns (Ir, the callgrind output file)."""
    wrapper, cg_out = benchlib.callgrind_wrapper(tmp, binary, tag, separate=False)
    srv = bench_mqtt.Iotgw(tmp if tag == "msgs" else os.path.join(tmp, tag), wrapper, args.conns,
                           args.loops)
    srv.launch(srv.write_config(tag), tag, "mqtt", ready_timeout=120)
    try:
        if count:
            loader = benchlib.find_bin(tmp, "mqtt_load", "MQTT_LOAD_BIN")
            cmd = bench_mqtt.load_cmd(loader, srv.port, [
                "--conns", str(args.conns), "--qos", "1", "--window",
                str(args.window), "--count", str(count), "--seconds", "3600", "--warmup", "0",
                "--payload-size", str(args.payload_size), "--timeout", "600"])
            r = subprocess.run(cmd, capture_output=True, text=True)
            if r.returncode != 0:
                raise BenchError(f"mqtt_load exited with {r.returncode}: {r.stderr.strip()}")
    finally:
        rc = srv.stop(300)
    if rc != 0:
        raise BenchError(f"iotgw under callgrind exited with {rc}")
    return callgrind_total(cg_out), cg_out


def run_all(tmp, srvs, args):
    binary = os.path.abspath(args.binary or benchlib.iotgw_binary())
    base = 0
    if args.baseline:
        os.makedirs(os.path.join(tmp, "start"))
        base, _ = run_once(tmp, binary, "start", args, 0)
    ir, cg_out = run_once(tmp, binary, "msgs", args, args.count)
    msgs = args.count * args.conns
    out(f"bench=mqtt_callgrind qos=1 conns={args.conns} window={args.window} "
        f"payload={args.payload_size} msgs={msgs} ir_total={ir} ir_start_stop={base} "
        f"ir_per_msg={(ir - base) / msgs:.0f} binary={binary}")
    if args.top:
        benchlib.callgrind_top(cg_out, args.top)
    return True


def add_args(ap):
    ap.add_argument("--conns", type=int, default=10)
    ap.add_argument("--window", type=int, default=20)
    ap.add_argument("--count", type=int, default=2000, help="reports per connection")
    ap.add_argument("--payload-size", type=int, default=100)


def main():
    return benchlib.callgrind_main("callgrind_mqtt", __doc__, add_args, run_all, top=10)


if __name__ == "__main__":
    sys.exit(main())

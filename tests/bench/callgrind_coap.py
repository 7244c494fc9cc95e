#!/usr/bin/python3
"""callgrind_coap.py: user-space instructions per request on iotgw's whole CoAP path (parse,
dedup, authenticate, decode, validate, commit, answer), counted by valgrind's callgrind, which is
stable on a busy machine where CPU time is not. Runs iotgw (bench_coap.py's config: product
`bench`, devices bench-NNNNN, ?token=) under callgrind, runs coap_load for --seconds (16 endpoints
x window 4 by default, no request given up: a long ack timeout), stops iotgw with SIGTERM and
prints `bench=coap_callgrind ... ir_per_req=...` (every thread's instructions, start-up and shutdown
included, over the answered requests; a start-and-stop-only run is subtracted with --baseline),
split into the loop threads' (`loops_ir_per_req`: the CoAP path itself, which does not depend on
how many requests a commit takes) and the writer's (`writer_ir_per_req`: SQLite, per request
smaller as the group commits grow, so it moves with the rate reached under callgrind), and the
top functions. Prints figures; never passes or fails on them."""
import os
import sys

import benchlib
import bench_coap
from benchlib import BenchError, out


def run_once(tmp, binary, tag, args, seconds):
    """One gateway under callgrind; coap_load for seconds (0: start and stop only). Returns (Ir,
    answered requests, the callgrind output file)."""
    wrapper, cg_out = benchlib.callgrind_wrapper(tmp, binary, tag)
    d = os.path.join(tmp, tag)
    os.makedirs(d)
    srv = bench_coap.Iotgw(d, wrapper, args.endpoints, args.loops)
    srv.start(tag, ready_timeout=120)
    ok = 0
    try:
        if seconds:
            loader = benchlib.find_bin(tmp, "coap_load", "COAP_LOAD_BIN")
            cmd = [loader, "--host", "127.0.0.1", "--port", str(srv.port), "--endpoints",
                   str(args.endpoints), "--window", str(args.window), "--outstanding",
                   str(args.endpoints * args.window), "--seconds", str(seconds), "--warmup", "0",
                   "--timeout", "600", "--ack-timeout-ms", "600000", "--payload-size",
                   str(args.payload_size), "--device-fmt", bench_coap.DEVICE_FMT, "--path-fmt",
                   bench_coap.IOTGW_PATH, "--query", "token=" + bench_coap.SECRET]
            ok = int(benchlib.run_loader(cmd, "coap_load")["ok_total"])
    finally:
        rc = srv.stop(300)
    if rc != 0:
        raise BenchError(f"iotgw under callgrind exited with {rc}")
    return benchlib.callgrind_threads(cg_out, "gw__coap_request"), ok, cg_out


def run_all(tmp, srvs, args):
    binary, base, ir, ok, cg_out, per = benchlib.callgrind_per_unit(run_once, tmp, args, "reqs")
    out(f"bench=coap_callgrind endpoints={args.endpoints} window={args.window} "
        f"payload={args.payload_size} reqs={ok} ir_total={ir[0]} ir_start_stop={base[0]} "
        f"ir_per_req={per[0]:.0f} loops_ir_per_req={per[1]:.0f} writer_ir_per_req={per[2]:.0f} "
        f"binary={binary}")
    if args.top and ir[3]:  # the busiest loop thread's functions
        out(f"  top functions of one loop thread ({os.path.basename(ir[3])}):")
        benchlib.callgrind_top(ir[3], args.top)
    return True


def add_args(ap):
    ap.add_argument("--endpoints", type=int, default=16)
    ap.add_argument("--window", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=20, help="coap_load's run (default 20)")
    ap.add_argument("--payload-size", type=int, default=100)


def main():
    return benchlib.callgrind_main("callgrind_coap", __doc__, add_args, run_all)


if __name__ == "__main__":
    sys.exit(main())

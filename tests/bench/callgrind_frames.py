#!/usr/bin/python3
"""callgrind_frames.py: user-space instructions per binary frame on iotgw's whole TCP or UDP path
(framing, login, decode, validate, commit, ack), counted by valgrind's callgrind, which is stable
on a busy machine where CPU time is not. Runs iotgw (bench_frames.py's config: meter-tcp or
sensor-udp and its devices) under callgrind, runs frame_load for --seconds (--conns x --window),
stops iotgw with SIGTERM and prints `bench=frames_callgrind ... ir_per_frame=...` (every thread's
instructions, start-up and shutdown included, over the acknowledged frames; a start-and-stop-only
run is subtracted with --baseline), split into the loop threads' (`loops_ir_per_frame`) and the
writer's (`writer_ir_per_frame`: SQLite, per frame smaller as the group commits grow), and the top
functions of the busiest loop thread and of the writer. Prints figures; never passes or fails on
them."""
import glob
import os
import sys

import benchlib
import bench_frames
from benchlib import BenchError, out


def run_once(tmp, binary, tag, args, seconds):
    """One gateway under callgrind; frame_load for seconds (0: start and stop only). Returns (the
    per-thread Ir, acknowledged frames, the writer's callgrind file)."""
    wrapper, cg_out = benchlib.callgrind_wrapper(tmp, binary, tag)
    d = os.path.join(tmp, tag)
    os.makedirs(d)
    srv = bench_frames.Iotgw(d, wrapper, args.conns, args.loops)
    srv.launch(srv.write_config(tag, args.proto), tag, args.proto, ready_timeout=120)
    acked = 0
    try:
        if seconds:
            loader = benchlib.find_bin(tmp, "frame_load", "FRAME_LOAD_BIN")
            cmd = [loader, "--host", "127.0.0.1", "--port", str(srv.port), "--proto", args.proto,
                   "--conns", str(args.conns), "--window", str(args.window), "--seconds",
                   str(seconds), "--warmup", "0", "--device-fmt",
                   bench_frames.DEVICE_FMT[args.proto], "--secret",
                   bench_frames.SECRET[args.proto], "--timeout", "600", "--ack-timeout-ms",
                   "600000"]
            acked = int(benchlib.run_loader(cmd, "frame_load")["acked_total"])
    finally:
        rc = srv.stop(300)
    if rc != 0:
        raise BenchError(f"iotgw under callgrind exited with {rc}")
    writer = next((p for p in sorted(glob.glob(cg_out + "-*"))
                   if "writer_main" in open(p, errors="replace").read()), None)
    # binary_decode: the codec op every loop thread runs per frame, TCP and UDP alike (and never
    # inlined: it is called through the ops table)
    return benchlib.callgrind_threads(cg_out, "binary_decode"), acked, writer


def run_all(tmp, srvs, args):
    binary, base, ir, n, writer, per = benchlib.callgrind_per_unit(run_once, tmp, args, "frames")
    out(f"bench=frames_callgrind proto={args.proto} conns={args.conns} window={args.window} "
        f"frames={n} ir_total={ir[0]} ir_start_stop={base[0]} ir_per_frame={per[0]:.0f} "
        f"loops_ir_per_frame={per[1]:.0f} writer_ir_per_frame={per[2]:.0f} binary={binary}")
    if args.top and ir[3]:
        out(f"  top functions of one loop thread ({os.path.basename(ir[3])}):")
        benchlib.callgrind_top(ir[3], args.top)
    if args.top and writer:
        out(f"  top functions of the writer ({os.path.basename(writer)}):")
        benchlib.callgrind_top(writer, args.top)
    return True


def add_args(ap):
    ap.add_argument("--proto", choices=("tcp", "udp"), default="tcp")
    ap.add_argument("--conns", type=int, default=100)
    ap.add_argument("--window", type=int, default=20)
    ap.add_argument("--seconds", type=float, default=20, help="frame_load's run (default 20)")


def main():
    return benchlib.callgrind_main("callgrind_frames", __doc__, add_args, run_all)


if __name__ == "__main__":
    sys.exit(main())

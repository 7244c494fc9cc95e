#!/usr/bin/python3
"""bench_churn.py: MQTT connection churn with device secrets in clear and as PBKDF2 hashes
(issue 16). One iotgw per secret mode; mqtt_load --idle opens N connections (CONNECT, CONNACK),
holds them, then closes them all; that is one round, run R times on the same process. Prints the
gateway's CPU per connect+disconnect (utime+stime) and the wall time of the connect phase per
round: round 1 pays PBKDF2 once per device (cold verified-secret cache), later rounds are a
reconnect storm (warm cache). Never pass/fail. Uses bench_mqtt.py's iotgw set-up."""

import argparse
import base64
import hashlib
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
from benchlib import BenchError, out  # noqa: E402
from bench_mqtt import Iotgw as IotgwMqtt, load_cmd  # noqa: E402

ITERATIONS = 1000  # GW_SECRET_ITERATIONS (gateway/util/auth.h)


def pbkdf2_hash(secret, iterations=ITERATIONS):
    salt = os.urandom(16)
    h = hashlib.pbkdf2_hmac("sha256", secret.encode(), salt, iterations)
    return "$pbkdf2-sha256$%d$%s$%s" % (iterations, base64.b64encode(salt).decode(),
                                        base64.b64encode(h).decode())


class ChurnGw(IotgwMqtt):
    def __init__(self, tmp, binary, n, loops, mode, iterations):
        super().__init__(tmp, binary, n, loops)
        if mode == "hash":
            devices = [{"id": f"bench-{i:05d}", "product": "bench",
                        "secret": pbkdf2_hash("s", iterations)} for i in range(n)]
            with open(os.path.join(self.cfgdir, "devices.json"), "w") as f:
                json.dump(devices, f)


def cpu_ns(pid):
    """CPU time of every thread of pid in ns (schedstat: finer than utime+stime's ticks)."""
    total = 0
    for t in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{t}/schedstat") as f:
                total += int(f.read().split()[0])
        except OSError:
            pass
    return total


def one_round(srv, loader, n, rate):
    cmd = load_cmd(loader, srv.port, ["--conns", str(n), "--idle", "--connect-rate", str(rate),
                                      "--timeout", "120"])
    t0 = time.monotonic()
    c0 = cpu_ns(srv.pid)
    gen = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = gen.stdout.readline()
        t1 = time.monotonic()
        if not line.startswith("connected ") or int(line.split()[1]) != n:
            raise BenchError(f"mqtt_load --idle: got {line!r}")
        gen.stdin.close()
        if gen.wait(120) != 0:
            raise BenchError("mqtt_load --idle failed")
        gen = None
    finally:
        if gen is not None:
            gen.kill()
            gen.wait()
    # the gateway has closed every session once its connection count is back to 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if srv_sessions(srv) == 0:
            break
        time.sleep(0.05)
    time.sleep(0.2)  # the offline events' commit
    c1 = cpu_ns(srv.pid)
    return (c1 - c0) / n / 1e3, (t1 - t0) / n * 1e6


def srv_sessions(srv):
    try:
        return len(os.listdir(f"/proc/{srv.pid}/fd")) - srv.base_fds
    except OSError:
        return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--conns", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--loops", type=int, default=2)
    ap.add_argument("--connect-rate", type=float, default=100000)
    ap.add_argument("--iterations", type=int, default=ITERATIONS)
    ap.add_argument("--modes", default="clear,hash")
    args = ap.parse_args()

    def body(tmp, srvs):
        loader = benchlib.find_bin(tmp, "mqtt_load", "MQTT_LOAD_BIN")
        binary = benchlib.iotgw_binary()
        for mode in args.modes.split(","):
            sub = os.path.join(tmp, mode)
            os.makedirs(sub)
            srv = ChurnGw(sub, binary, args.conns, args.loops, mode, args.iterations)
            srvs[mode] = srv
            srv.start(f"churn-{mode}")
            try:
                time.sleep(0.3)
                srv.base_fds = len(os.listdir(f"/proc/{srv.pid}/fd"))
                for rnd in range(1, args.rounds + 1):
                    cpu_us, wall_us = one_round(srv, loader, args.conns, args.connect_rate)
                    out(f"bench=mqtt_churn secrets={mode} iterations="
                        f"{args.iterations if mode == 'hash' else 0} round={rnd} "
                        f"conns={args.conns} cpu_us_per_conn={cpu_us:.1f} "
                        f"connect_wall_us_per_conn={wall_us:.1f}")
            finally:
                srv.stop()
                del srvs[mode]
        return True

    return benchlib.run_in_tmp("bench_churn", False, body)


if __name__ == "__main__":
    sys.exit(main())

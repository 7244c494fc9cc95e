#!/usr/bin/python3
"""bench_north.py: north (upstream) bridge benchmark. The same QoS 1 device load (mqtt_load with
--seq-ids --count) goes through (a) iotgw with its north bridge to a cloud mosquitto and (b) the
reference, a device-side mosquitto bridged at QoS 1 to a cloud mosquitto; north_sub on the cloud
broker counts what arrives by (device, messageId). Cases: e2e (end-to-end rate, CPU per message,
missing, duplicates) and drain (cloud broker down, N messages accepted, broker up: time until all
have arrived). Prints `bench=north_... key=value` lines; never pass/fail on figures. See
tests/bench/README.md."""

import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
import bench_mqtt  # noqa: E402  (its Iotgw: the bench product and devices)
from benchlib import BenchError, Server, log_tail, note, out  # noqa: E402

TARGETS = ("iotgw", "mosquitto_bridge")
CLOUD_ID = {"iotgw": "iotgw-bench", "mosquitto_bridge": "bridge-bench"}
# What arrives on the cloud broker: iotgw's upstream topics, or the device topics the bridge
# passes through. In both the device id is topic level 2 (iotgw/bench/DEV/..., /bench/DEV/...).
CLOUD_FILTER = {"iotgw": "iotgw/#", "mosquitto_bridge": "#"}


class Broker(Server):
    """A mosquitto with a config written by the driver; restartable on the same port."""

    def __init__(self, tmp, binary, tag):
        super().__init__(tmp)
        self.binary = binary
        self.tag = tag
        self.name = f"mosquitto-{tag}"
        self.dir = os.path.join(tmp, self.name)
        os.makedirs(self.dir, exist_ok=True)
        self.conf = os.path.join(self.dir, "mosquitto.conf")
        self.log = os.path.join(self.dir, "mosquitto.log")
        self.port = benchlib.free_port()

    def write(self, body, persistence=False):
        head = (f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                f"persistence {'true' if persistence else 'false'}\n")
        if persistence:
            head += f"persistence_location {self.dir}/\n"
        if os.geteuid() == 0:
            head += "user root\n"  # as root it would drop to "mosquitto": no access to tmp
        with open(self.conf, "w") as f:
            f.write(head + body)

    def start(self):
        with open(self.log, "a") as logf:
            self.proc = subprocess.Popen([self.binary, "-c", self.conf], stdin=subprocess.DEVNULL,
                                         stdout=logf, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        import socket
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.fail_start(f"exited with {self.proc.returncode}")
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=1).close()
                return
            except OSError:
                time.sleep(0.01)
        self.fail_start("port not accepting connections after 10 s")

    def saw_client(self, client_id):
        try:
            with open(self.log, errors="replace") as f:
                return f" as {client_id} " in f.read()
        except OSError:
            return False


CLOUD_CONF = ("max_queued_messages 100000000\n"  # the subscriber's queue: never drop
              "max_inflight_messages 1000\n"     # towards the subscriber
              "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n")


def device_broker_conf(cloud_port):
    """The reference: a device-side mosquitto bridging everything to the cloud at QoS 1, with
    the same in-flight window as iotgw's north default (256) and queues that never drop."""
    return ("max_inflight_messages 256\nmax_queued_messages 100000000\n"
            "log_dest stderr\nlog_type error\nlog_type warning\nlog_type notice\n"
            "connection cloud\n"
            f"address 127.0.0.1:{cloud_port}\n"
            f"remote_clientid {CLOUD_ID['mosquitto_bridge']}\n"
            "cleansession false\n"
            "bridge_protocol_version mqttv311\n"
            "restart_timeout 1 1\n"
            "topic # out 1\n")


class Iotgw(bench_mqtt.Iotgw):
    """iotgw with the MQTT adapter and the north bridge to the cloud broker."""

    def start_north(self, tag, cloud_port):
        path = self.write_config(tag)
        with open(path) as f:
            cfg = json.load(f)
        cfg["north"] = {"enabled": True, "host": "127.0.0.1", "port": cloud_port,
                        "client_id": CLOUD_ID["iotgw"], "reconnect_min_ms": 500,
                        "reconnect_max_ms": 1000}
        with open(path, "w") as f:
            json.dump(cfg, f, indent=2)
        self.check_config(path)
        self.launch(path, tag, "mqtt")


class Run:
    """One case for one target: the cloud broker, the bridge (iotgw or a device mosquitto)."""

    def __init__(self, tmp, args, bins, target, case):
        self.tmp, self.args, self.bins, self.target, self.case = tmp, args, bins, target, case
        self.tag = f"{case}-{target}"
        self.cloud = Broker(tmp, bins["mosquitto"], "cloud-" + self.tag)
        self.cloud.write(CLOUD_CONF, persistence=(case == "drain"))
        self.bridge = None
        self.sub = None

    def start_bridge(self):
        if self.target == "iotgw":
            d = os.path.join(self.tmp, self.tag)  # its own config dir per run
            os.makedirs(d, exist_ok=True)
            self.bridge = Iotgw(d, self.bins["iotgw"], self.args.conns, self.args.loops)
            self.bridge.start_north(self.tag, self.cloud.port)
        else:
            self.bridge = Broker(self.tmp, self.bins["mosquitto"], "device-" + self.tag)
            self.bridge.write(device_broker_conf(self.cloud.port))
            self.bridge.start()
        if not wait_for(lambda: self.cloud.saw_client(CLOUD_ID[self.target]), 15):
            raise BenchError(f"{self.target} did not connect to the cloud broker\n"
                             f"{log_tail(self.bridge.log)}")

    def sub_cmd(self, expect, extra=()):
        return [self.bins["north_sub"], "--port", str(self.cloud.port), "--client-id",
                "sub-" + self.tag, "--topic", CLOUD_FILTER[self.target], "--expect", str(expect),
                "--timeout", str(self.args.timeout), "--idle", "15"] + list(extra)

    def start_sub(self, expect, extra=()):
        self.sub = subprocess.Popen(self.sub_cmd(expect, extra), stdin=subprocess.DEVNULL,
                                    stdout=subprocess.PIPE, text=True)
        line = self.sub.stdout.readline()
        if not line.startswith("subscribed"):
            raise BenchError(f"north_sub: {line!r} (exit {self.sub.poll()})")

    def finish_sub(self):
        res = {}
        for line in self.sub.stdout:
            if line.startswith("bench=north_sub"):
                res = benchlib.parse_kv(line)
        self.sub.wait()
        if not res:
            raise BenchError("north_sub printed no result")
        return res

    def gen_cmd(self, total):
        per = max(1, total // self.args.conns)
        return bench_mqtt.load_cmd(self.bins["mqtt_load"], self.bridge.port, [
            "--conns", str(self.args.conns), "--qos", "1", "--window", str(self.args.window),
            "--seq-ids", "--count", str(per), "--warmup", "0", "--seconds", "600",
            "--payload-size", str(self.args.payload_size), "--timeout", "60", "--marks"])

    def stop(self):
        codes = {}
        for s in (self.bridge, self.cloud):
            if s is not None:
                try:
                    codes[s.name] = s.stop()
                except BenchError as e:
                    codes[s.name] = str(e)
        if self.sub is not None and self.sub.poll() is None:
            self.sub.kill()
            self.sub.wait()
        return codes


def wait_for(pred, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.02)
    return pred()


def ticks(pid):
    try:
        return benchlib.proc_cpu_ticks(pid)
    except OSError:
        return 0


def run_gen(cmd, on_start=None):
    """mqtt_load to its end; returns (exit code, its result line as a dict, the time of
    `mark measure_start`)."""
    gen = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    res, t0 = {}, None
    for line in gen.stdout:
        if line.startswith("mark measure_start"):
            t0 = time.monotonic()
            if on_start:
                on_start()
        elif line.startswith("bench=mqtt_load"):
            res = benchlib.parse_kv(line)
    return gen.wait(), res, t0


def us_per_msg(t0, t1, msgs):
    return (t1 - t0) / benchlib.CLK_TCK * 1e6 / msgs if msgs else 0.0


def run_e2e(tmp, args, bins, target):
    total = args.conns * max(1, args.msgs // args.conns)
    r = Run(tmp, args, bins, target, "e2e")
    try:
        r.cloud.start()
        r.start_bridge()
        r.start_sub(total)
        cpu = {}

        def sample():
            cpu.update(b0=ticks(r.bridge.pid), c0=ticks(r.cloud.pid))
        rc, res, t0 = run_gen(r.gen_cmd(total), sample)
        if rc != 0 or not res or t0 is None:
            raise BenchError(f"mqtt_load against {target} exited with {rc}")
        sub = r.finish_sub()
        b1, c1 = ticks(r.bridge.pid), ticks(r.cloud.pid)
    finally:
        codes = r.stop()
    if target == "iotgw" and codes.get("iotgw") != 0:
        raise BenchError(f"iotgw exited with {codes.get('iotgw')}\n{log_tail(r.bridge.log)}")
    acked, distinct = int(res["acked_total"]), int(sub["distinct"])
    last = float(sub["last_t"])
    secs = max(1e-9, last - t0)
    out(f"bench=north_e2e target={target} msgs={distinct} rate={distinct / secs:.0f} "
        f"cpu_us_per_msg={us_per_msg(cpu['b0'], b1, distinct):.2f} missing={acked - distinct} "
        f"dup={sub['dup']} seconds={secs:.3f} ingest_rate={float(res['msg_per_s']):.0f} "
        f"cloud_cpu_us_per_msg={us_per_msg(cpu['c0'], c1, distinct):.2f} acked={acked} "
        f"sent={res['sent_total']} conns={args.conns} window={args.window}")
    return distinct / secs


def run_drain(tmp, args, bins, target):
    total = args.conns * max(1, args.drain_msgs // args.conns)
    r = Run(tmp, args, bins, target, "drain")
    try:
        r.cloud.start()
        # the subscriber's persistent session exists before the outage: the broker queues for it
        p = subprocess.run(r.sub_cmd(0, ["--subscribe-only"]), capture_output=True, text=True,
                           timeout=60)
        if p.returncode != 0:
            raise BenchError(f"north_sub --subscribe-only: {p.stderr.strip()}")
        r.start_bridge()
        r.cloud.stop()
        t_acc = time.monotonic()
        rc, res, _ = run_gen(r.gen_cmd(total))
        if rc != 0 or not res or int(res["acked_total"]) != total:
            raise BenchError(f"mqtt_load against {target} with the cloud down exited with {rc}, "
                             f"acked {res.get('acked_total')} of {total}")
        t_acc = time.monotonic() - t_acc
        b0 = ticks(r.bridge.pid)
        t_up = time.monotonic()
        r.cloud.start()
        r.start_sub(total, ["--retry", "30"])
        sub = r.finish_sub()
        b1 = ticks(r.bridge.pid)
    finally:
        codes = r.stop()
    if target == "iotgw" and codes.get("iotgw") != 0:
        raise BenchError(f"iotgw exited with {codes.get('iotgw')}\n{log_tail(r.bridge.log)}")
    distinct = int(sub["distinct"])
    secs = max(1e-9, float(sub["last_t"]) - t_up)
    out(f"bench=north_drain target={target} msgs={total} seconds={secs:.3f} "
        f"rate={distinct / secs:.0f} first_s={float(sub['first_t']) - t_up:.3f} "
        f"transfer_rate={distinct / max(1e-9, float(sub['last_t']) - float(sub['first_t'])):.0f} "
        f"cpu_us_per_msg={us_per_msg(b0, b1, distinct):.2f} missing={total - distinct} "
        f"dup={sub['dup']} accept_seconds={t_acc:.3f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--smoke", action="store_true", help="CI: 20,000 messages per case, < 30 s")
    ap.add_argument("--msgs", type=int, help="e2e messages (default 200000, smoke 20000)")
    ap.add_argument("--drain-msgs", type=int,
                    help="messages accepted while the cloud is down (default 100000, smoke 20000)")
    ap.add_argument("--conns", type=int, default=10, help="device connections (default 10)")
    ap.add_argument("--window", type=int, default=50, help="QoS 1 window per device (default 50)")
    ap.add_argument("--cases", default="e2e,drain", help="comma list of e2e,drain")
    ap.add_argument("--targets", default=",".join(TARGETS),
                    help="comma list of iotgw,mosquitto_bridge (default both)")
    ap.add_argument("--loops", type=int, default=2, help="iotgw loops (default 2)")
    ap.add_argument("--payload-size", type=int, default=100)
    ap.add_argument("--timeout", type=float, default=300,
                    help="how long the subscriber waits for everything (s)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, logs, dbs)")
    args = ap.parse_args()
    args.msgs = args.msgs or (20000 if args.smoke else 200000)
    args.drain_msgs = args.drain_msgs or (20000 if args.smoke else 100000)
    targets = [t for t in args.targets.split(",") if t]
    cases = [c for c in args.cases.split(",") if c]
    if any(t not in TARGETS for t in targets) or any(c not in ("e2e", "drain") for c in cases):
        ap.error("--targets takes iotgw,mosquitto_bridge; --cases takes e2e,drain")
    benchlib.raise_nofile()
    return benchlib.run_in_tmp("bench_north", args.keep,
                               lambda tmp, srvs: run_all(tmp, args, targets, cases))


def run_all(tmp, args, targets, cases):
    bins = {"mqtt_load": benchlib.find_bin(tmp, "mqtt_load", "MQTT_LOAD_BIN"),
            "north_sub": benchlib.find_bin(tmp, "north_sub", "NORTH_SUB_BIN"),
            "mosquitto": os.environ.get("MOSQUITTO_BIN", "/usr/sbin/mosquitto")}
    versions = [f"mosquitto={bench_mqtt.Mosquitto(tmp, bins['mosquitto']).version()}"]
    if "iotgw" in targets:
        bins["iotgw"] = benchlib.iotgw_binary()
        d = os.path.join(tmp, "version")
        os.makedirs(d)
        versions.append(f"iotgw={Iotgw(d, bins['iotgw'], 1, 1).version()}")
    out(f"bench=north_env {benchlib.env_fields()} msgs={args.msgs} drain_msgs={args.drain_msgs} "
        f"conns={args.conns} window={args.window} payload={args.payload_size} "
        f"{' '.join(versions)}")
    failed = 0
    for case in cases:
        rates = {}
        for target in targets:
            try:
                if case == "e2e":
                    rates[target] = run_e2e(tmp, args, bins, target)
                else:
                    run_drain(tmp, args, bins, target)
            except BenchError as e:
                failed += 1
                out(f"bench=north_{case} target={target} error=failed")
                benchlib.warn("bench_north", e)
        if len(rates) == 2 and rates["mosquitto_bridge"]:
            out(f"bench=north_e2e_ratio iotgw_over_mosquitto_bridge="
                f"{rates['iotgw'] / rates['mosquitto_bridge']:.2f}")
    if failed:
        note(f"{failed} case(s) failed")
    return failed == 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""soak.py: the long-run soak of issue 19 (outside CI). One gateway (MQTT, TCP and CoAP
adapters), a mixed load of --messages messages (default 10 million: MQTT QoS 0 and QoS 1 through
mqtt_load, TCP binary frames of meter-tcp through frame_load, CoAP confirmable PUTs through
coap_load) and --churns MQTT connection churns (default 1 million: mqtt_load --idle, bench_churn's
generator, cycles of --churn-conns connections opened, held and closed). Every round has the same
make-up: the ingest generators for --round-seconds and meanwhile the churn cycles that keep the
soak's churn:message ratio. The first rounds are the warm-up: they end once the store queue has
been full at least once and the settled RSS grew by less than 1 % over a round; the counts are
what runs after it. The gateway's RSS (and its parts), thread count, gw_malloc total and store
queue depth are sampled every second into a CSV, and RSS is plotted to a PNG with matplotlib.

At the end it asserts (exit 1 otherwise):
- RSS at the end within --rss-tolerance (2 %) of RSS after the warm-up, both settled;
- the thread count unchanged since the warm-up;
- stored == acknowledged: the `property` rows in the SQLite database equal the messages the
  gateway confirmed (QoS 1 PUBACKs, TCP ack frames, CoAP 2.04 answers) plus the QoS 0 PUBLISHes
  (mqtt_load drains them with a PINGREQ barrier, so the gateway has read them all), in all and
  per protocol: nothing confirmed is lost, nothing stored twice. A generator that reports
  requests lost in flight (no answer: they may or may not be stored) widens that check to
  acked <= stored <= sent, and says so;
- the gateway exits 0 on SIGTERM.

--smoke: a few seconds (tests/run-all.sh's benchmark smoke stage). --asan-build DIR: the gateway
of an ASan + UBSan build tree (tests/run-all.sh's flags), a shortened run (unless --messages /
--churns say otherwise), every sanitizer report in its log printed and counted as a failure. RSS
is reported but asserted only in a full run (a smoke run's warm-up is too short to fill the
caches; ASan's quarantine holds freed memory).
Rates are what the generators reach with small windows on a shared 2-core box; lower them with
--window / --conns rather than the counts. Prints `bench=soak_... key=value` lines."""

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
from benchlib import SRC, BenchError, log_tail, note, out  # noqa: E402

MQTT_PRODUCT = {
    "id": "bench", "name": "Soak MQTT device", "protocol": "mqtt", "codec": "json",
    "properties": [
        {"id": "temperature", "type": "float", "min": -40, "max": 125, "access": "r"},
        {"id": "humidity", "type": "float", "min": 0, "max": 100, "access": "r"},
        {"id": "level", "type": "int", "min": 0, "max": 10, "access": "r"},
        {"id": "name", "type": "string", "max_length": 256, "access": "r"},
    ],
}
COAP_PRODUCT = dict(MQTT_PRODUCT, id="coapbench", name="Soak CoAP device", protocol="coap",
                    auth={"mode": "device-secret"})
# device ids per generator (distinct: a second connection of one id would take the first over)
FMT = {"q0": "sq0-%05d", "q1": "sq1-%05d", "churn": "sch-%05d", "tcp": "mtr%05d",
       "coap": "sco-%05d"}
SECRET = {"mqtt": "s", "tcp": "pa55word", "coap": "s"}
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: AddressSanitizer", "SUMMARY: AddressSanitizer",
                   "SUMMARY: UndefinedBehaviorSanitizer")


def proc_status(pid, detail=None):
    """(VmRSS in KiB, Threads) from /proc/pid/status; detail (a dict) gets RssAnon, RssFile and
    RssShmem (KiB) too."""
    rss = threads = 0
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
            elif line.startswith("Threads:"):
                threads = int(line.split()[1])
            elif detail is not None and line.startswith(("RssAnon:", "RssFile:", "RssShmem:")):
                detail[line.split(":")[0]] = int(line.split()[1])
    return rss, threads


def metrics(port):
    """{family: the sum of its samples} from the gateway's /metrics ({} when unreadable)."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as r:
            text = r.read().decode(errors="replace")
    except (OSError, ValueError):
        return {}
    fams = {}
    for line in text.splitlines():
        if line.startswith("iotgw_"):
            name = line.split("{", 1)[0].split(" ", 1)[0]
            try:
                fams[name] = fams.get(name, 0.0) + float(line.rsplit(" ", 1)[1])
            except ValueError:
                pass
    return fams


def gw_memory_kb(port):
    """The sum of iotgw_memory_bytes (everything allocated through gw_malloc), in KiB."""
    m = metrics(port)
    return int(m["iotgw_memory_bytes"] / 1024) if "iotgw_memory_bytes" in m else None


class SoakGw(benchlib.Iotgw):
    """iotgw with the mqtt, tcp and coap adapters and one product (and its devices) each."""

    def __init__(self, tmp, binary, args):
        super().__init__(tmp, binary, 0, args.loops)
        pdir = os.path.join(self.cfgdir, "products")
        os.makedirs(pdir)
        for p in (MQTT_PRODUCT, COAP_PRODUCT):
            with open(os.path.join(pdir, p["id"] + ".json"), "w") as f:
                json.dump(p, f, indent=2)
        for d in ("products", "products.binary"):
            src = os.path.join(SRC, "config", d, "meter-tcp.json")
            if os.path.exists(src):
                shutil.copy(src, os.path.join(pdir, "meter-tcp.json"))
                break
        else:
            raise BenchError("config/products/meter-tcp.json not found")
        devices = []
        for kind, n, product, secret in (
                ("q0", args.q0_conns, "bench", SECRET["mqtt"]),
                ("q1", args.conns, "bench", SECRET["mqtt"]),
                ("churn", args.churn_conns, "bench", SECRET["mqtt"]),
                ("tcp", args.conns, "meter-tcp", SECRET["tcp"]),
                ("coap", args.conns, "coapbench", SECRET["coap"])):
            devices += [{"id": FMT[kind] % i, "product": product, "secret": secret}
                        for i in range(n)]
        self.n_devices = len(devices)
        with open(os.path.join(self.cfgdir, "devices.json"), "w") as f:
            json.dump(devices, f)
        self.ports = {}

    def start(self, tag):
        path = self.write_gateway(tag, "products", "devices.json", {
            "mqtt": {"listeners": [{"address": "127.0.0.1", "port": 0}]},
            "tcp": {"listeners": [{"address": "127.0.0.1", "port": 0,
                                   "product": "meter-tcp"}]},
            "coap": {"listeners": [{"address": "127.0.0.1", "port": 0}]}})
        self.check_config(path)
        self.launch(path, tag, "mqtt", ready_timeout=120.0)
        for ad in ("mqtt", "tcp", "coap", "admin"):
            self.ports[ad] = benchlib.listener_port(self.ready_text, "adapter", ad)
            if not self.ports[ad]:
                self.fail_start(f"no listener line for {ad} in {self.ready_text!r}")

    def stored_counts(self):
        """Property rows in the database, by product (message ids repeat in this load: the
        generators' 16-bit sequence numbers wrap, so a row count is the check)."""
        r = subprocess.run(["sqlite3", self.db, "SELECT product, count(*) FROM events WHERE "
                            "kind='property' GROUP BY product"],
                           capture_output=True, text=True, timeout=600)
        if r.returncode != 0:
            raise BenchError(f"sqlite3 {self.db}: {r.stderr.strip()}")
        return {ln.split("|")[0]: int(ln.split("|")[1]) for ln in r.stdout.split()}


class Sampler(threading.Thread):
    """RSS and thread count of the gateway every second into a CSV (t_s, phase, rss_kb, threads,
    messages, churns, then RSS's anonymous, file and shared parts and gw_malloc's total, to tell
    the gateway's own memory from SQLite's page cache, the WAL index and the allocator's)."""

    def __init__(self, srv, path, state):
        super().__init__(daemon=True)
        self.pid, self.path, self.state = srv.pid, path, state
        self.admin = srv.ports["admin"]
        self.stop_ev = threading.Event()
        self.rows = []

    def run(self):
        t0 = time.monotonic()
        with open(self.path, "w") as f:
            f.write("t_s,phase,rss_kb,threads,messages,churns,rss_anon_kb,rss_file_kb,"
                    "rss_shmem_kb,gw_malloc_kb,store_queue_depth\n")
            while not self.stop_ev.is_set():
                d = {}
                try:
                    rss, thr = proc_status(self.pid, d)
                except OSError:
                    break
                m = metrics(self.admin)
                gm = m.get("iotgw_memory_bytes")
                qd = m.get("iotgw_store_queue_depth")
                row = (round(time.monotonic() - t0, 1), self.state["phase"], rss, thr,
                       self.state["messages"], self.state["churns"], d.get("RssAnon", ""),
                       d.get("RssFile", ""), d.get("RssShmem", ""),
                       "" if gm is None else int(gm / 1024), "" if qd is None else int(qd))
                self.rows.append(row)
                f.write(",".join(str(x) for x in row) + "\n")
                f.flush()
                self.stop_ev.wait(1.0)


def run_gen(cmd, prefix, what):
    """Runs a generator to its end; its `prefix ...` line as a dict."""
    r = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                       timeout=3600)
    res = {}
    for line in r.stdout.splitlines():
        if line.startswith(prefix):
            res = benchlib.parse_kv(line)
    if r.returncode != 0 or not res:
        raise BenchError(f"{what} exited with {r.returncode}: {' '.join(cmd)}\n"
                         f"{r.stderr[-2000:]}")
    return res


class Totals:
    """What the generators say the gateway confirmed (and what they sent)."""

    def __init__(self):
        self.lock = threading.Lock()
        self.acked = {"q0": 0, "q1": 0, "tcp": 0, "coap": 0}
        self.sent = {"q0": 0, "q1": 0, "tcp": 0, "coap": 0}
        self.lost = {"tcp": 0, "coap": 0}
        self.busy = 0
        self.churns = 0
        self.q1_count = 20  # QoS 1 PUBLISHes per connection in the next round

    def messages(self):
        return sum(self.acked.values())


def ingest_round(srv, bins, args, seconds, totals):
    """The four generators side by side for `seconds`; adds what they report to totals."""
    mq = ["--host", "127.0.0.1", "--port", str(srv.ports["mqtt"]), "--username", "bench",
          "--password", SECRET["mqtt"], "--topic-fmt", "/bench/%s/properties/report",
          "--warmup", "0", "--payload-size", "100", "--timeout", "120"]
    cmds = {
        "q0": ([bins["mqtt_load"], "--client-fmt", FMT["q0"], "--qos", "0", "--q0-inflight",
                str(args.q0_inflight), "--conns", str(args.q0_conns), "--seconds",
                str(max(0.2, seconds * args.q0_share))] + mq, "bench=mqtt_load"),
        # QoS 1 by count (every PUBLISH acked before DISCONNECT: none left in flight), sized
        # from the previous round's rate to last about `seconds`
        "q1": ([bins["mqtt_load"], "--client-fmt", FMT["q1"], "--qos", "1", "--window",
                str(args.window), "--conns", str(args.conns), "--count", str(totals.q1_count),
                "--seconds", "3600"] + mq, "bench=mqtt_load"),
        "tcp": ([bins["frame_load"], "--host", "127.0.0.1", "--port", str(srv.ports["tcp"]),
                 "--proto", "tcp", "--conns", str(args.conns), "--window", str(args.window),
                 "--seconds", str(seconds), "--warmup", "0", "--device-fmt", FMT["tcp"],
                 "--secret", SECRET["tcp"], "--timeout", "120", "--ack-timeout-ms", "30000"],
                "bench=frame_load"),
        "coap": ([bins["coap_load"], "--host", "127.0.0.1", "--port", str(srv.ports["coap"]),
                  "--endpoints", str(args.conns), "--window", "1", "--outstanding",
                  str(args.conns), "--seconds", str(seconds), "--warmup", "0",
                  "--timeout", "60", "--ack-timeout-ms", "10000", "--payload-size", "100",
                  "--device-fmt", FMT["coap"], "--path-fmt", "/coapbench/%s/properties/report",
                  "--query", "token=" + SECRET["coap"]], "bench=coap_load"),
    }
    results, errors = {}, []

    def one(kind):
        try:
            results[kind] = run_gen(cmds[kind][0], cmds[kind][1], kind)
        except BenchError as e:
            errors.append(str(e))

    threads = [threading.Thread(target=one, args=(k,)) for k in cmds]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise BenchError("; ".join(errors))
    q0, q1, tcp, coap = (results[k] for k in ("q0", "q1", "tcp", "coap"))
    for name, res in (("q0", q0), ("q1", q1)):
        if int(res["connack_failures"]) or int(res["conn_errors"]):
            raise BenchError(f"mqtt_load {name}: {res}")
    if int(tcp["rejected_total"]) or int(tcp["login_failures"]) or int(tcp["conn_errors"]):
        raise BenchError(f"frame_load: {tcp}")
    if int(coap["rejected_total"]) or int(coap["rst_total"]):
        raise BenchError(f"coap_load: {coap}")
    with totals.lock:
        totals.acked["q0"] += int(q0["sent_total"])  # drained by the PINGREQ barrier
        totals.sent["q0"] += int(q0["sent_total"])
        totals.acked["q1"] += int(q1["acked_total"])
        totals.sent["q1"] += int(q1["sent_total"])
        totals.acked["tcp"] += int(tcp["acked_total"])
        totals.sent["tcp"] += int(tcp["sent_total"])
        totals.lost["tcp"] += int(tcp["lost"])
        totals.acked["coap"] += int(coap["ok_total"])
        totals.sent["coap"] += int(coap["sent_total"])
        totals.lost["coap"] += int(coap["lost"])
        totals.busy += int(coap["busy_total"])
    if int(q1["sent_total"]) != int(q1["acked_total"]):
        raise BenchError(f"mqtt_load q1: {q1['sent_total']} sent, {q1['acked_total']} acked")
    rate = int(q1["msgs"]) / max(float(q1["seconds"]), 1e-3)
    totals.q1_count = max(10, min(1_000_000, int(rate * seconds / args.conns)))


def churn_cycle(srv, bins, args, totals):
    """One churn round: --churn-conns connections opened (CONNECT/CONNACK), then all closed."""
    cmd = [bins["mqtt_load"], "--host", "127.0.0.1", "--port", str(srv.ports["mqtt"]),
           "--client-fmt", FMT["churn"], "--username", "bench", "--password", SECRET["mqtt"],
           "--conns", str(args.churn_conns), "--idle", "--connect-rate",
           str(args.connect_rate), "--timeout", "120"]
    gen = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        line = gen.stdout.readline()
        if not line.startswith("connected ") or int(line.split()[1]) != args.churn_conns:
            raise BenchError(f"mqtt_load --idle: got {line!r}")
        gen.stdin.close()
        if gen.wait(120) != 0:
            raise BenchError("mqtt_load --idle failed")
        gen = None
    finally:
        if gen is not None:
            gen.kill()
            gen.wait()
    with totals.lock:
        totals.churns += args.churn_conns


def mixed_round(srv, bins, args, seconds, totals, want_msgs, churn_cycles):
    """One round: the ingest generators for `seconds` (if want_msgs) while `churn_cycles` churn
    cycles run one after the other; the round ends when both are done."""
    errors = []

    def churner():
        try:
            for _ in range(churn_cycles):
                if errors:
                    break
                churn_cycle(srv, bins, args, totals)
        except BenchError as e:
            errors.append(str(e))

    ch = threading.Thread(target=churner) if churn_cycles else None
    if ch:
        ch.start()
    try:
        if want_msgs:
            ingest_round(srv, bins, args, seconds, totals)
    except BenchError as e:
        errors.append(str(e))
    finally:
        if ch:
            ch.join()
    if errors:
        raise BenchError("; ".join(errors))


def wait_quiet(srv, timeout=120.0):
    """Until the gateway's CPU use stays under 2 % of a core for 1 s (the store has committed
    what the generators left queued), then its settled RSS."""
    deadline = time.monotonic() + timeout
    last = benchlib.proc_cpu_ticks(srv.pid)
    while time.monotonic() < deadline:
        time.sleep(1.0)
        cur = benchlib.proc_cpu_ticks(srv.pid)
        if cur - last <= benchlib.CLK_TCK * 0.02:
            break
        last = cur
    return benchlib.settled_rss_kb(srv.pid, timeout=5.0)


def plot(csv_rows, png, warm_rss, title):
    """RSS (MiB) over time, the warm-up level and its tolerance band. Returns None or why not."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return "matplotlib is not installed (apt-get install python3-matplotlib)"
    t = [r[0] for r in csv_rows]
    rss = [r[2] / 1024.0 for r in csv_rows]
    fig, ax = plt.subplots(figsize=(9, 4.5), dpi=100)
    ax.plot(t, rss, lw=1.0, label="RSS")
    if warm_rss:
        w = warm_rss / 1024.0
        ax.axhline(w, color="grey", ls="--", lw=0.8, label="settled RSS after the warm-up")
        ax.axhspan(w * 0.98, w * 1.02, color="grey", alpha=0.15, label="±2 %")
    loads = [r[0] for r in csv_rows if r[1] == "load"]
    if loads:
        ax.axvline(loads[0], color="tab:orange", ls=":", lw=1.0, label="end of the warm-up")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("RSS (MiB)")
    ax.set_ylim(bottom=0)
    ax.set_title(title, fontsize=9)
    ax.legend(loc="lower right", fontsize=8)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
    return None


def parts(d):
    """RSS's parts and gw_malloc's total as key=value words (KiB)."""
    return (f"rss_anon_kb={d.get('RssAnon')} rss_file_kb={d.get('RssFile')} "
            f"rss_shmem_kb={d.get('RssShmem')} gw_malloc_kb={d.get('gw_malloc')}")


def sanitizer_lines(log):
    try:
        with open(log, errors="replace") as f:
            return [ln.rstrip() for ln in f if any(m in ln for m in SANITIZER_MARKS)]
    except OSError:
        return []


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--smoke", action="store_true",
                    help="a few seconds: 20,000 messages, 1,000 churns (run-all.sh)")
    ap.add_argument("--asan-build", metavar="DIR",
                    help="run DIR/iotgw (an ASan + UBSan build), shortened, reporting its "
                         "sanitizer output")
    ap.add_argument("--messages", type=int, help="messages in all (default 10,000,000; "
                    "smoke 20,000; asan 300,000)")
    ap.add_argument("--churns", type=int, help="connection churns (default 1,000,000; smoke "
                    "1,000; asan 20,000)")
    ap.add_argument("--round-seconds", type=float, help="length of an ingest round (default 20, "
                    "smoke 1, asan 5)")
    ap.add_argument("--warmup-seconds", type=float, help="the warm-up round (default 30; smoke "
                    "1; asan 5)")
    ap.add_argument("--warmup-rounds", type=int,
                    help="warm-up rounds at most (default 6, smoke 1, asan 2; they end once RSS "
                         "grows < 1 %% over one)")
    ap.add_argument("--conns", type=int, default=20,
                    help="connections (CoAP endpoints) per ingest generator (default 20)")
    ap.add_argument("--window", type=int, default=8,
                    help="QoS 1 / TCP messages in flight per connection (default 8)")
    ap.add_argument("--q0-conns", type=int, default=1, help="QoS 0 connections (default 1)")
    ap.add_argument("--q0-share", type=float, default=0.25,
                    help="part of each round QoS 0 runs (default 0.25: unpaced, it would crowd "
                         "the rest of the mix out)")
    ap.add_argument("--q0-inflight", type=int, default=65536,
                    help="QoS 0 bytes unconfirmed by PINGRESP per connection (>= mqtt_load's "
                         "64 KiB batch; default 65536)")
    ap.add_argument("--churn-conns", type=int, help="connections per churn round (default "
                    "5,000; smoke 500)")
    ap.add_argument("--connect-rate", type=float, default=20000)
    ap.add_argument("--loops", type=int, default=2)
    ap.add_argument("--rss-tolerance", type=float, default=2.0, help="percent (default 2)")
    ap.add_argument("--csv", help="RSS samples (default: the temp dir's soak-rss.csv)")
    ap.add_argument("--png", help="RSS plot (default: the temp dir's soak-rss.png)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()
    mode = "smoke" if args.smoke else "asan" if args.asan_build else "full"
    dflt = {"full": (10_000_000, 1_000_000, 20.0, 30.0, 5000, 6),
            "smoke": (20_000, 1_000, 1.0, 1.0, 500, 1),
            "asan": (300_000, 20_000, 5.0, 5.0, 1000, 2)}[mode]
    for name, v in zip(("messages", "churns", "round_seconds", "warmup_seconds", "churn_conns",
                        "warmup_rounds"),
                       dflt):
        if getattr(args, name) is None:
            setattr(args, name, v)
    if args.asan_build:
        os.environ["IOTGW_BIN"] = os.path.abspath(os.path.join(args.asan_build, "iotgw"))
        os.environ.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=1:"
                              "strict_string_checks=1")
        os.environ.setdefault("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
    nofile = benchlib.raise_nofile()
    if nofile < args.churn_conns + 4 * args.conns + 200:
        ap.error(f"RLIMIT_NOFILE {nofile} is too low for --churn-conns {args.churn_conns}")
    return benchlib.run_in_tmp("soak", args.keep, lambda tmp, srvs: soak(tmp, srvs, args, mode))


def soak(tmp, srvs, args, mode):
    bins = {n: benchlib.find_bin(tmp, n, n.upper() + "_BIN")
            for n in ("mqtt_load", "frame_load", "coap_load")}
    srv = SoakGw(tmp, benchlib.iotgw_binary(), args)
    srvs["iotgw"] = srv
    out(f"bench=soak_env mode={mode} {benchlib.env_fields()} messages={args.messages} "
        f"churns={args.churns} conns={args.conns} window={args.window} "
        f"churn_conns={args.churn_conns} round_s={args.round_seconds} loops={args.loops} "
        f"iotgw={srv.version()} binary={srv.binary}")
    srv.start("soak")
    state = {"phase": "warmup", "messages": 0, "churns": 0}
    csv_path = args.csv or os.path.join(tmp, "soak-rss.csv")
    png_path = args.png or os.path.join(tmp, "soak-rss.png")
    sampler = Sampler(srv, csv_path, state)
    sampler.start()
    totals = Totals()
    t0 = time.monotonic()
    problems = []
    try:
        # Every round has the same make-up: the ingest generators for --round-seconds and, one
        # after the other meanwhile, the churn cycles that keep the churn:message ratio of the
        # whole soak (--churns / --messages), sized from the previous round's messages. So the
        # warm-up rounds run exactly what the measured rounds run, and the warm-up ends once
        # the settled RSS grew by less than 1 % over a round and the store queue has been full
        # (back-pressure) at least once (at most --warmup-rounds): every session, buffer,
        # cache, bounded queue and thread the steady state needs then exists.
        ratio = args.churns / max(1, args.messages) / args.churn_conns  # cycles per message
        last_msgs = [0]

        def run_round(seconds, msgs_left, cycles_left):
            want = max(1, round(last_msgs[0] * ratio)) if last_msgs[0] else 1
            if msgs_left <= 0:  # messages done: the churn that is left, a round's worth at once
                want = max(want, 1)
            before = totals.messages()
            mixed_round(srv, bins, args, seconds, totals, msgs_left > 0,
                        max(0, min(want, cycles_left)))
            if msgs_left > 0:
                last_msgs[0] = totals.messages() - before

        rss_warm, wrounds = 0, 0
        while True:
            wrounds += 1
            run_round(args.warmup_seconds, 1, 1 << 30)
            full = metrics(srv.ports["admin"]).get("iotgw_store_backpressure_total", 0)
            rss = wait_quiet(srv)
            parts_warm = {}
            _, thr_warm = proc_status(srv.pid, parts_warm)
            parts_warm["gw_malloc"] = gw_memory_kb(srv.ports["admin"])
            out(f"bench=soak_warm round={wrounds} rss_kb={rss} threads={thr_warm} "
                f"{parts(parts_warm)} store_backpressure={full:.0f} "
                f"messages={totals.messages()} churns={totals.churns} "
                f"seconds={time.monotonic() - t0:.0f}")
            grew = rss > rss_warm * 1.01
            rss_warm = rss
            if (not grew and full) or wrounds >= args.warmup_rounds:
                break
        warm_msgs, warm_churns = totals.messages(), totals.churns
        state["phase"] = "load"
        rnd = 0
        # the counts are what runs after the warm-up (the warm-up's own load comes on top)
        while (totals.messages() - warm_msgs < args.messages
               or totals.churns - warm_churns < args.churns):
            rnd += 1
            cycles_left = -(-(warm_churns + args.churns - totals.churns) // args.churn_conns)
            run_round(args.round_seconds, warm_msgs + args.messages - totals.messages(),
                      cycles_left)
            state["messages"], state["churns"] = totals.messages(), totals.churns
            rss, thr = proc_status(srv.pid)
            out(f"bench=soak_round round={rnd} messages={totals.messages()} "
                f"churns={totals.churns} rss_kb={rss} threads={thr} "
                f"seconds={time.monotonic() - t0:.0f}")
        state["phase"] = "end"
        rss_end = wait_quiet(srv)
        parts_end = {}
        _, thr_end = proc_status(srv.pid, parts_end)
        parts_end["gw_malloc"] = gw_memory_kb(srv.ports["admin"])
        elapsed = time.monotonic() - t0
    finally:
        time.sleep(1.5)  # a last sample or two of the quiet gateway
        sampler.stop_ev.set()
        sampler.join(5)
        # the queue's own high-water mark (the samples, one a second, miss short peaks)
        peak = metrics(srv.ports["admin"]).get("iotgw_store_queue_depth_max")
        code = srv.stop(timeout=600)
        del srvs["iotgw"]
    if code != 0:
        problems.append(f"iotgw exited with {code} after SIGTERM\n{log_tail(srv.log)}")
    by_product = srv.stored_counts()
    rows = sum(by_product.values())
    acked, sent = totals.messages(), sum(totals.sent.values())
    lost = sum(totals.lost.values())
    growth = (rss_end - rss_warm) * 100.0 / rss_warm if rss_warm else 0.0
    out(f"bench=soak_result mode={mode} seconds={elapsed:.0f} messages={acked} "
        f"q0={totals.acked['q0']} q1={totals.acked['q1']} tcp={totals.acked['tcp']} "
        f"coap={totals.acked['coap']} churns={totals.churns} "
        f"after_warmup_messages={acked - warm_msgs} "
        f"after_warmup_churns={totals.churns - warm_churns} "
        f"msg_per_s={acked / elapsed:.0f} "
        f"churn_per_s={totals.churns / elapsed:.0f} rss_warm_kb={rss_warm} rss_end_kb={rss_end} "
        f"rss_growth_pct={growth:.2f} rss_max_kb={max(r[2] for r in sampler.rows)} "
        f"warm_{parts(parts_warm).replace(' ', ' warm_')} "
        f"end_{parts(parts_end).replace(' ', ' end_')} "
        f"threads_warm={thr_warm} threads_end={thr_end} stored={rows} "
        f"stored_mqtt={by_product.get('bench', 0)} stored_tcp={by_product.get('meter-tcp', 0)} "
        f"stored_coap={by_product.get('coapbench', 0)} acked={acked} sent={sent} "
        f"lost_in_flight={lost} "
        f"coap_busy={totals.busy} "
        f"queue_depth_max={'none' if peak is None else int(peak)} csv={csv_path}")
    if mode == "asan":
        san = sanitizer_lines(srv.log)
        out(f"bench=soak_sanitizer reports={len(san)} log={srv.log}")
        for ln in san[:40]:
            out("# " + ln)
        if san:
            problems.append(f"{len(san)} sanitizer lines in {srv.log}")
    elif mode == "full" and abs(growth) > args.rss_tolerance:
        problems.append(f"RSS {rss_end} KiB at the end vs {rss_warm} KiB after the warm-up: "
                        f"{growth:+.2f} % (tolerance {args.rss_tolerance} %)")
    if thr_end != thr_warm:
        problems.append(f"thread count {thr_warm} after the warm-up, {thr_end} at the end")
    for product, kinds in (("bench", ("q0", "q1")), ("meter-tcp", ("tcp",)),
                           ("coapbench", ("coap",))):
        want = sum(totals.acked[k] for k in kinds)
        got = by_product.get(product, 0)
        if got != want and not any(totals.lost.get(k) for k in kinds):
            problems.append(f"product {product}: stored {got}, acknowledged {want}")
    if lost == 0 and rows != acked:
        problems.append(f"stored {rows} property events, the gateway acknowledged {acked}: "
                        f"{srv.db}")
    elif lost and not acked <= rows <= sent:
        problems.append(f"stored {rows} property events, acknowledged {acked}, sent {sent}")
    elif lost:
        note(f"{lost} requests got no answer in time (in flight at a generator's end): the "
             f"stored count is checked as acked <= stored <= sent")
    why = plot(sampler.rows, png_path,
               rss_warm, f"iotgw soak: {acked:,} messages, {totals.churns:,} churns ({mode})")
    out(f"bench=soak_plot png={png_path if why is None else 'none'}"
        + (f" why=\"{why}\"" if why else ""))
    for p in problems:
        benchlib.warn("soak", p)
    out(f"bench=soak_verdict ok={0 if problems else 1} problems={len(problems)}")
    return not problems


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""bench_history.py: the history layout (issue 16). Fills a database with N property reports over D
devices through the store's own ingest path (history_fill: gw_store_open, the writer thread and
its batches, as the gateway runs them) and prints the ingest rate (overall and per slice of
events, as the database grows) of up to three layouts:
  base   the store without any history layout (a history_fill built from the tree before it:
         --base-fill BIN or HISTORY_FILL_BASE_BIN; skipped when not given)
  chain  this tree: events.prev + history_head (what the gateway uses)
  index  the plain alternative, chain plus an index on events(device) (--plain-index)
and the ingest cost of chain (and index) against base. On the chain database it prints the
latency of one device's latest 100 events for random devices through the store's reader (the
API's query without HTTP) and through the HTTP API (GET /api/devices/{id}/events?limit=100 on a
running iotgw, one keep-alive connection), p50/p99. Never passes or fails on figures.
  /usr/bin/python3 tests/bench/bench_history.py                  # 10M events, 10k devices
  /usr/bin/python3 tests/bench/bench_history.py --smoke          # CI: 50k events, 500 devices
  /usr/bin/python3 tests/bench/bench_history.py --events 2000000 --devices 10000 --plain-index
The base binary: `git archive <commit before the layout> | tar -x -C /tmp/base`, copy
tests/bench/history_fill.c there, build it with -DCMAKE_C_FLAGS=-DHISTORY_FILL_BASE."""

import argparse
import hashlib
import http.client
import json
import os
import random
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
import bench_mqtt  # noqa: E402  (its Iotgw: the bench product and devices)
from benchlib import BenchError, note, out  # noqa: E402

READ_TOKEN = "bench-history-read-token-0123456789"


def fill_bin():
    if os.environ.get("HISTORY_FILL_BIN"):
        return os.environ["HISTORY_FILL_BIN"]
    for build in (os.environ.get("IOTGW_BUILD", ""), os.path.join(benchlib.SRC, "build")):
        cand = os.path.join(build, "history_fill") if build else ""
        if cand and os.access(cand, os.X_OK):
            return cand
    raise BenchError("history_fill not built (cmake -DGW_BUILD_BENCH=ON; or HISTORY_FILL_BIN)")


def run_fill(binary, cfg, events, slice_, index, queries):
    cmd = [binary, "-c", cfg, "-n", str(events), "--slice", str(slice_)]
    if index:
        cmd.append("--index")
    if queries:
        cmd += ["--queries", str(queries)]
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    figs = {}
    for line in p.stdout:
        out(line.rstrip())
        kv = benchlib.parse_kv(line)
        if kv.get("bench") in ("history_fill", "history_store"):
            figs[kv["bench"]] = kv
    if p.wait() != 0:
        raise BenchError(f"history_fill exited with {p.returncode}")
    return figs


def api_latency(srv, n_devices, queries):
    """p50/p99 of GET /api/devices/{id}/events?limit=100 for random devices."""
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    t, rows = [], 0
    rnd = random.Random(7)
    try:
        for _ in range(queries):
            dev = "bench-%05d" % rnd.randrange(n_devices)
            t0 = time.perf_counter()
            c.request("GET", f"/api/devices/{dev}/events?limit=100",
                      headers={"Authorization": "Bearer " + READ_TOKEN})
            r = c.getresponse()
            body = r.read()
            t.append((time.perf_counter() - t0) * 1e3)
            if r.status != 200:
                raise BenchError(f"GET events: {r.status} {body[:200]!r}")
            rows += len(json.loads(body)["events"])
    finally:
        c.close()
    t.sort()
    out(f"bench=history_api queries={queries} rows={rows} p50_ms={t[len(t) // 2]:.3f} "
        f"p99_ms={t[len(t) * 99 // 100]:.3f} max_ms={t[-1]:.3f}")


def timed_get(c, path):
    t0 = time.perf_counter()
    c.request("GET", path, headers={"Authorization": "Bearer " + READ_TOKEN})
    r = c.getresponse()
    body = r.read()
    dt = (time.perf_counter() - t0) * 1e3
    if r.status != 200:
        raise BenchError(f"GET {path}: {r.status} {body[:200]!r}")
    return dt, json.loads(body)


def api_cfg(srv, cfg):
    """cfg with an admin listener and a read token (the bench's); its path, or None when this
    iotgw has no management API."""
    with open(cfg) as f:
        gw = json.load(f)
    gw["admin"] = {"enabled": True, "listeners": [{"address": "127.0.0.1", "port": 0}],
                   "tokens": [{"name": "bench", "role": "read",
                               "sha256": hashlib.sha256(READ_TOKEN.encode()).hexdigest()}]}
    path = cfg.replace(".json", "-api.json")
    with open(path, "w") as f:
        json.dump(gw, f, indent=2)
    try:
        srv.check_config(path)
    except BenchError as e:
        note(f"this iotgw has no management API yet, the HTTP cases are skipped: {e}")
        return None
    return path


def list_latency(tmp, binary, n_devices, rounds):
    """GET /api/devices over n_devices: the first request (sorts the configuration's devices once),
    full walks with limit=1000, a q= scan of every device, online=false (a state look-up each)."""
    srv = bench_mqtt.Iotgw(os.path.join(tmp, "list"), binary, n_devices, 1)
    path = api_cfg(srv, srv.write_config("list"))
    if not path:
        return
    srv.launch(path, "list", "admin")
    c = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=60)
    try:
        first, _ = timed_get(c, "/api/devices?limit=1")
        pages = []
        for _ in range(rounds):
            cur = None
            while True:
                dt, j = timed_get(c, "/api/devices?limit=1000" + (f"&cursor={cur}" if cur else ""))
                pages.append(dt)
                cur = j["next_cursor"]
                if not cur:
                    break
        q = [timed_get(c, "/api/devices?limit=100&q=nomatch")[0] for _ in range(20)]
        off = [timed_get(c, "/api/devices?limit=1000&online=false")[0] for _ in range(20)]
    finally:
        c.close()
        srv.stop()
    pages.sort()
    q.sort()
    off.sort()
    out(f"bench=history_list devices={n_devices} first_ms={first:.1f} "
        f"page1000_p50_ms={pages[len(pages) // 2]:.2f} page1000_p99_ms={pages[len(pages) * 99 // 100]:.2f} "
        f"q_scan_all_p50_ms={q[len(q) // 2]:.2f} online_false_page1000_p50_ms={off[len(off) // 2]:.2f}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--smoke", action="store_true", help="CI: 50k events over 500 devices")
    ap.add_argument("--events", type=int, help="events to fill (default 10,000,000)")
    ap.add_argument("--devices", type=int, help="devices (default 10,000)")
    ap.add_argument("--queries", type=int, help="latency samples (default 1000, smoke 100)")
    ap.add_argument("--base-fill", default=os.environ.get("HISTORY_FILL_BASE_BIN"),
                    help="history_fill built without the history layout (the baseline)")
    ap.add_argument("--plain-index", action="store_true",
                    help="also fill with an index on events(device), the alternative")
    ap.add_argument("--list-devices", type=int,
                    help="devices of the GET /api/devices case (default 100,000; smoke 2,000)")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir (configs, databases)")
    args = ap.parse_args()
    events = args.events or (50000 if args.smoke else 10000000)
    devices = args.devices or (500 if args.smoke else 10000)
    queries = args.queries or (100 if args.smoke else 1000)
    slice_ = max(events // 10, 1)
    args.list_devices = args.list_devices or (2000 if args.smoke else 100000)

    def body(tmp, srvs):
        binary = benchlib.iotgw_binary()
        filler = fill_bin()
        srv = bench_mqtt.Iotgw(tmp, binary, devices, 1)
        out(f"bench=history_env cpus={os.cpu_count()} loadavg_1m={os.getloadavg()[0]:.2f} "
            f"cpu_idle_pct={benchlib.cpu_idle_pct():.0f} events={events} devices={devices}")
        figs = {}

        def drop(db):  # the disk: a 10M database is ~2 GB
            for ext in ("", "-wal", "-shm"):
                if os.path.exists(db + ext):
                    os.unlink(db + ext)

        for layout, binary_, index in (("base", args.base_fill, False),
                                       ("index", filler if args.plain_index else None, True)):
            if binary_:
                figs[layout] = run_fill(binary_, srv.write_config(layout), events, slice_, index,
                                        0)
                drop(srv.db)
        cfg = srv.write_config("chain")
        figs["chain"] = run_fill(filler, cfg, events, slice_, False, queries)
        for layout in ("chain", "index"):
            if "base" in figs and layout in figs:
                on = float(figs[layout]["history_fill"]["msg_per_s"])
                off = float(figs["base"]["history_fill"]["msg_per_s"])
                c_on = float(figs[layout]["history_fill"]["cpu_us_per_msg"])
                c_off = float(figs["base"]["history_fill"]["cpu_us_per_msg"])
                out(f"bench=history_ingest_cost layout={layout} rate_over_base={on / off:.3f} "
                    f"rate_cost_pct={(1 - on / off) * 100:.1f} "
                    f"cpu_cost_pct={(c_on / c_off - 1) * 100:.1f}")
        # the API on the filled database (the same config, with a read token)
        path = api_cfg(srv, cfg)
        if not path:
            return True
        srvs["iotgw"] = srv
        srv.launch(path, "api", "admin")
        try:
            api_latency(srv, devices, queries)
        finally:
            srv.stop()
            del srvs["iotgw"]
        list_latency(tmp, binary, args.list_devices, 1 if args.smoke else 3)
        return True

    return benchlib.run_in_tmp("bench_history", args.keep, body)


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/python3
"""bench_registry.py: the cost of a large device registry (issue 19). Writes devices.json with N
devices (ids dev-0000001..., 16-character secrets, a name on every third device, product
`bench`), then for the same gateway config with 0 devices and with N devices:
  - `--check-config` (load and validate only): wall time of the process;
  - iotgw with --ready-fd: time from exec to `ready`, RSS at ready (settled), and the
    iotgw_memory_bytes areas from /metrics;
  - then the device API on that registry: the wall time of POST /api/devices (one device) and of
    DELETE /api/devices/{id} (each rewrites devices.json and reloads; the secret is hashed).
bytes_per_device = (RSS with N devices - RSS with 0 devices) / N. max_devices is left at its
default (2 x devices + 10,000 indexes), as an operator gets it. Prints figures; never pass/fail
(exits non-zero only when something does not work)."""

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import benchlib  # noqa: E402
from benchlib import BenchError, out  # noqa: E402

TOKEN = "bench-registry-admin-token"
ADAPTERS = {
    "mqtt": {"listeners": [{"address": "127.0.0.1", "port": 0}]},
}


class Iotgw(benchlib.Iotgw):
    """iotgw with the MQTT adapter, product `bench` and devices-N.json."""

    def __init__(self, tmp, binary, loops):
        super().__init__(tmp, binary, 0, loops)
        os.makedirs(os.path.join(self.cfgdir, "products"), exist_ok=True)
        product = {
            "id": "bench", "name": "Benchmark device", "protocol": "mqtt", "codec": "json",
            "properties": [
                {"id": "temperature", "type": "float", "min": -40, "max": 125, "access": "r"},
                {"id": "level", "type": "int", "min": 0, "max": 10, "access": "r"},
            ],
        }
        with open(os.path.join(self.cfgdir, "products", "bench.json"), "w") as f:
            json.dump(product, f, indent=2)

    def write_devices(self, n):
        """devices-N.json, written a device a line (as the device API writes it: one object per
        element). Returns its file name (relative to cfgdir)."""
        name = f"devices-{n}.json"
        with open(os.path.join(self.cfgdir, name), "w") as f:
            f.write("[")
            for i in range(1, n + 1):
                d = {"id": f"dev-{i:07d}", "product": "bench",
                     "secret": f"{(i * 2654435761) & 0xffffffffffffffff:016x}"}
                if i % 3 == 0:
                    d["name"] = f"Meter {i} floor {i % 40}"
                f.write(("\n  " if i == 1 else ",\n  ") + json.dumps(d))
            f.write("\n]\n")
        return name

    def config(self, n, devices_file):
        self.n_devices = 0  # max_connections stays 1000 whatever N is
        path = self.write_gateway(f"n{n}", "products", devices_file, ADAPTERS)
        with open(path) as f:
            gw = json.load(f)
        gw["admin"]["tokens"] = [{"name": "bench", "role": "admin",
                                  "sha256": hashlib.sha256(TOKEN.encode()).hexdigest()}]
        with open(path, "w") as f:
            json.dump(gw, f, indent=2)
        return path


def api(port, method, path, body=None):
    """(status, seconds) of one management API request."""
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method,
                                 headers={"Authorization": f"Bearer {TOKEN}",
                                          "Content-Type": "application/json"})
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=120) as r:
            r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        status = e.code
    return status, time.monotonic() - t0


def metrics_areas(port):
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=30) as r:
        body = r.read().decode()
    areas = {}
    for line in body.splitlines():
        if line.startswith('iotgw_memory_bytes{area="'):
            name = line.split('"')[1]
            areas[name] = int(float(line.split()[-1]))
    return areas


def measure(srv, n, ready_timeout):
    name = srv.write_devices(n)
    size = os.path.getsize(os.path.join(srv.cfgdir, name))  # before the API rewrites it
    path = srv.config(n, name)
    t0 = time.monotonic()
    srv.check_config(path)
    check_s = time.monotonic() - t0
    t0 = time.monotonic()
    srv.launch(path, f"n{n}", "mqtt", ready_timeout)
    load_s = time.monotonic() - t0
    try:
        rss = benchlib.settled_rss_kb(srv.pid)
        admin = benchlib.listener_port(srv.ready_text, "adapter", "admin")
        areas = metrics_areas(admin) if admin else {}
        post = delete = (0, 0.0)
        if admin:
            post = api(admin, "POST", "/api/devices",
                       {"id": "dev-extra", "product": "bench", "secret": "0123456789abcdef"})
            delete = api(admin, "DELETE", "/api/devices/dev-extra")
    finally:
        rc = srv.stop(120)
    if rc != 0:
        raise BenchError(f"iotgw exited with {rc} after SIGTERM\n{benchlib.log_tail(srv.log)}")
    os.unlink(os.path.join(srv.cfgdir, name))
    if post[0] != 201 or delete[0] != 204:
        raise BenchError(f"device API: POST answered {post[0]}, DELETE {delete[0]}\n"
                         f"{benchlib.log_tail(srv.log)}")
    return {"check_s": check_s, "load_s": load_s, "rss_kb": rss, "areas": areas,
            "file_bytes": size, "post_s": post[1], "delete_s": delete[1]}


def main():
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--devices", default="1000000", help="sizes, comma separated")
    ap.add_argument("--loops", type=int, default=2)
    ap.add_argument("--ready-timeout", type=float, default=300.0,
                    help="seconds to wait for `ready` (default 300)")
    ap.add_argument("--smoke", action="store_true", help="10,000 devices")
    ap.add_argument("--keep", action="store_true", help="keep the temp dir")
    args = ap.parse_args()
    if args.smoke:
        args.devices = "10000"

    def body(tmp, srvs):
        srv = Iotgw(tmp, benchlib.iotgw_binary(), args.loops)
        srvs["iotgw"] = srv
        out(f"bench=registry_env {benchlib.env_fields()} version={srv.version()}")
        base = measure(srv, 0, args.ready_timeout)
        for n in [int(x) for x in args.devices.split(",")]:
            m = measure(srv, n, args.ready_timeout)
            per = (m["rss_kb"] - base["rss_kb"]) * 1024 / n
            out(f"bench=registry devices={n} load_s={m['load_s']:.2f} "
                f"check_config_s={m['check_s']:.2f} rss_kb={m['rss_kb']} "
                f"rss_0_kb={base['rss_kb']} bytes_per_device={per:.0f} "
                f"file_bytes_per_device={m['file_bytes'] / n:.0f} "
                f"load_0_s={base['load_s']:.2f} check_config_0_s={base['check_s']:.2f}")
            areas = " ".join(f"{k}={(v - base['areas'].get(k, 0)) / n:.1f}"
                             for k, v in sorted(m["areas"].items()))
            out(f"bench=registry_memory devices={n} per_device_bytes: {areas}")
            out(f"bench=registry_api devices={n} post_one_s={m['post_s']:.2f} "
                f"delete_one_s={m['delete_s']:.2f}")
        return True

    return benchlib.run_in_tmp("bench_registry", args.keep, body)


if __name__ == "__main__":
    sys.exit(main())

# Proves replaced configurations are freed: 1,000 SIGHUP reloads alternating two configurations (a thing model, a device removed/added, 2,000 devices) while 100 devices stay connected and report; RSS after the last reload is within a bound of RSS after the first 100, the generations gauge returns to 2 (start-up + current), every connected device stayed connected and every report is stored.
import copy
import json
import os
import signal
import time

import gwtest as g

RELOADS = 1000 // (5 if g.SANITIZED else 1)
WARMUP = RELOADS // 10
NDEV = 2000       # devices in each configuration (the generation's size matters for a leak)
NCONN = 100       # connected the whole time (present in both configurations)
RSS_BOUND_KB = 4096 if not g.SANITIZED else 16384  # RSS growth allowed after the warm-up


def thermo(hmax):
    p = copy.deepcopy(g.THERMO)
    for prop in p["properties"]:
        if prop["id"] == "humidity":
            prop["max"] = hmax
    return p


def write_json(gw, rel, obj):
    tmp = gw.path(rel + ".tmp")
    with open(tmp, "w") as f:
        json.dump(obj, f)
    os.replace(tmp, gw.path(rel))


def main(t):
    g.raise_fd_limit(4096)
    ids = ["r-%04d" % i for i in range(NDEV)]
    dev_a = g.make_devices(ids)
    dev_b = g.make_devices(ids[:-1] + ["r-extra"])  # one removed, one added
    configs = [(thermo(100), dev_a), (thermo(60), dev_b)]
    gw = g.Gateway(products=[thermo(100)], devices=dev_a, loops=2, ready_timeout=60,
                   config={"log_level": "warn"})
    clients = [g.device_client(gw, d, timeout=30) for d in ids[:NCONN]]
    threads0 = gw.threads()
    sent = 0
    rss = {}
    t0 = time.monotonic()
    for k in range(1, RELOADS + 1):
        prod, devs = configs[k % 2]
        write_json(gw, "products/thermo.json", prod)
        write_json(gw, "devices.json", devs)
        before = gw.metric("config_reloads_total", result="applied")
        os.kill(gw.pid, signal.SIGHUP)
        if not g.wait_until(lambda: gw.metric("config_reloads_total", result="applied") > before,
                            10, interval=0.002):
            t.check(False, "reload %d applied" % k, gw.log_tail())
            break
        # some traffic between reloads: a QoS 1 report from one connected device
        c = clients[k % NCONN]
        if c.publish_wait(g.report_topic(ids[k % NCONN]),
                          g.report_payload("rr-%d" % k, {"humidity": k % 50}), k % 65535 + 1,
                          5) is not None:
            sent += 1
        if k == WARMUP:
            rss["warm"] = gw.rss_kb()
    rss["end"] = gw.rss_kb()
    t.info("%d reloads in %.1f s; RSS after %d: %d KiB, after %d: %d KiB (growth %d KiB, bound "
           "%d KiB)" % (RELOADS, time.monotonic() - t0, WARMUP, rss.get("warm", 0), RELOADS,
                        rss["end"], rss["end"] - rss.get("warm", 0), RSS_BOUND_KB))
    t.eq(gw.metric("config_reloads_total", result="applied"), float(RELOADS),
         "every reload applied")
    t.check(rss["end"] - rss.get("warm", 0) <= RSS_BOUND_KB,
            "RSS flat: growth after the warm-up <= %d KiB" % RSS_BOUND_KB,
            "%d -> %d KiB" % (rss.get("warm", 0), rss["end"]))
    t.check(g.wait_until(lambda: gw.metric("config_generations") == 2.0, 10),
            "replaced generations freed: config_generations back to 2 (start-up + current)",
            gw.metric("config_generations"))
    t.eq(gw.threads(), threads0, "thread count unchanged")
    alive = sum(1 for c in clients if c.ping())
    t.eq(alive, NCONN, "every connected device still connected")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE kind='offline'"), 0,
         "no offline event (no connected device was touched)")
    t.check(g.wait_until(lambda: gw.scalar(
        "SELECT count(*) FROM events WHERE msg_id LIKE 'rr-%'") == sent, 10),
        "every acknowledged report stored (%d)" % sent)
    for c in clients:
        c.close()
    t.eq(gw.stop(), 0, "clean exit")


if __name__ == "__main__":
    t = g.Results()
    try:
        main(t)
    except Exception as e:  # noqa: BLE001
        t.crash(e)
    t.finish()

#!/usr/bin/python3
"""bench_cluster: what north.cluster costs an instance that (re)connects to a broker holding one
retained presence per device: the time from its start to "cluster state read" (every retained
presence received and applied, commands answered from then on), the rate, and the RSS.

  /usr/bin/python3 tests/bench/bench_cluster.py                 # 100,000 devices
  /usr/bin/python3 tests/bench/bench_cluster.py --devices 20000 # quicker
Prints one `bench=cluster_warmup ...` line; never passes or fails on figures."""
import argparse
import json
import os
import sys
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import gwtest as g  # noqa: E402


def fill(port, n, holder="gw-x"):
    """n retained presences (and the holder's liveness) on the broker, QoS 1, acknowledged."""
    import paho.mqtt.client as mqtt
    c = mqtt.Client(client_id="bench-fill", clean_session=True, protocol=mqtt.MQTTv311)
    c.max_inflight_messages_set(1000)
    c.max_queued_messages_set(0)
    room = threading.Semaphore(10000)  # paho's message ids wrap at 65535: bound what is queued
    c.on_publish = lambda cl, ud, mid: room.release()
    c.connect(g.HOST, port)
    c.loop_start()
    room.acquire()
    c.publish("iotgw/_gateways/%s" % holder, "online", 1, retain=True)
    for i in range(n):
        room.acquire()
        c.publish("iotgw/_presence/d-%07d" % i,
                  json.dumps({"gateway": holder, "online": True, "time": 1700000000000 + i}), 1,
                  retain=True)
    for _ in range(10000):
        room.acquire()
    c.disconnect()
    c.loop_stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--devices", type=int, default=100000)
    args = ap.parse_args()
    n = args.devices
    broker = g.Mosquitto(extra_conf=g.CLOUD_CONF)
    t0 = time.monotonic()
    print("# filling %d retained presences" % n, flush=True)
    fill(broker.port, n)
    fill_s = time.monotonic() - t0
    broker_rss = g.rss_kb(broker.pid)
    devices = [{"id": "d-%07d" % i, "product": "thermo", "secret": "s"} for i in range(n)]
    gw = g.Gateway(devices=devices, ready_timeout=120, config={
        "north": g.north_cfg(broker.port, client_id="gw-y", cluster=True)}, start=False)
    t0 = time.monotonic()
    gw.start()
    ready_s = time.monotonic() - t0
    ok = g.wait_until(lambda: "cluster state read" in gw.log or "sync marker" in gw.log, 600)
    ok = ok and "cluster state read" in gw.log  # not the 10-second fallback
    warm_s = time.monotonic() - t0
    read = gw.metric("north_presence_read_total")
    rss = gw.rss_kb()
    refused = gw.metric("north_cluster_refused_total")
    print("bench=cluster_warmup devices=%d fill_s=%.1f ready_s=%.2f warm_s=%.2f "
          "presence_per_s=%.0f read=%d rss_mb=%.1f broker_rss_mb=%.1f refused=%d ok=%d"
          % (n, fill_s, ready_s, warm_s, n / max(warm_s - ready_s, 1e-3), read, rss / 1024.0,
             broker_rss / 1024.0, refused, bool(ok)), flush=True)
    gw.stop()
    broker.stop()


if __name__ == "__main__":
    main()

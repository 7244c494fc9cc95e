# Proves the north bridge forwards every committed event upstream: 10,000 QoS 1 device messages (reports and events) from 4 devices plus their online/offline events reach a cloud mosquitto in order per device, none missing or duplicated, on the configured topics with the documented payload; the outbox is empty afterwards and the north counters agree.
import json

import gwtest as g

SCALE = 5 if g.SANITIZED else 1
NDEV = 4
PER_DEV = 2500 // SCALE  # 10,000 messages in all (2,000 under sanitizers)
PREFIX = "site7"
TS0 = g.QoS1Stream.TS0


def kind_of(seq):
    """The message a device sends as its seq-th: mostly reports, some overheat and boot events."""
    if seq % 50 == 5:
        return "boot"
    if seq % 10 == 0:
        return "overheat"
    return "property"


def temp(seq):
    return round((seq % 1600) / 10.0 - 40.0, 1)


def maker(dev):
    def make(seq):
        mid = "%s-%d" % (dev, seq)
        k = kind_of(seq)
        if k == "property":
            return g.report_topic(dev), json.dumps(
                {"messageId": mid, "timestamp": TS0 + seq,
                 "properties": {"temperature": temp(seq), "humidity": seq % 101}})
        if k == "overheat":
            return g.event_topic(dev, "overheat"), json.dumps(
                {"messageId": mid, "timestamp": TS0 + seq, "data": {"t": seq % 100 + 0.5}})
        return g.event_topic(dev, "boot"), json.dumps({"messageId": mid, "data": {}})
    return make


def close(a, b):
    return isinstance(a, (int, float)) and abs(a - b) < 1e-6


def check_payload(dev, seq, topic, d):
    """Problems with one device message's upstream topic and payload ('' if none)."""
    k = kind_of(seq)
    base = {"device": dev, "product": "thermo", "messageId": "%s-%d" % (dev, seq)}
    for key, want in base.items():
        if d.get(key) != want:
            return "%s=%r, want %r" % (key, d.get(key), want)
    if not isinstance(d.get("time"), int):
        return "time %r is not an integer (epoch ms)" % (d.get("time"),)
    if k == "property":
        want_topic = "%s/thermo/%s/properties/report" % (PREFIX, dev)
        if d.get("kind") != "property" or "name" in d:
            return "kind %r / name %r for a report" % (d.get("kind"), d.get("name"))
        if d["time"] != TS0 + seq:
            return "time %r, want the device timestamp %d" % (d["time"], TS0 + seq)
        v = d.get("values") or {}
        if set(v) != {"temperature", "humidity"} or not close(v["temperature"], temp(seq)) \
                or v["humidity"] != seq % 101:
            return "values %r" % (v,)
    else:
        want_topic = "%s/thermo/%s/event/%s" % (PREFIX, dev, k)
        if d.get("kind") != "event" or d.get("name") != k:
            return "kind %r name %r, want event %s" % (d.get("kind"), d.get("name"), k)
        want_vals = {"t": seq % 100 + 0.5} if k == "overheat" else {}
        v = d.get("values")
        if not isinstance(v, dict) or set(v) != set(want_vals) or \
                any(not close(v[x], want_vals[x]) for x in want_vals):
            return "values %r, want %r" % (v, want_vals)
        if k == "overheat" and d["time"] != TS0 + seq:
            return "time %r, want the device timestamp %d" % (d["time"], TS0 + seq)
    if topic != want_topic:
        return "topic %r, want %r" % (topic, want_topic)
    return ""


def main(t):
    broker = g.Mosquitto(g.CLOUD_CONF)
    sub = g.CloudSubscriber(broker.port, topics=[PREFIX + "/#"], client_id="cloud-60")
    gw = g.Gateway(n_devices=NDEV, config={
        "north": g.north_cfg(broker.port, prefix=PREFIX),
        "storage": {"batch_ms": 2}})
    t.check(g.wait_until(lambda: gw.metric("north_connected") == 1, 10),
            "north_connected 1 once the broker is reachable")
    devs = g.thermo_ids(NDEV)
    clients = [g.device_client(gw, d, timeout=30) for d in devs]
    streams = [g.QoS1Stream(c, d, window=50, make=maker(d)) for c, d in zip(clients, devs)]
    res = g.run_streams(streams, PER_DEV, timeout=120)
    t.check(all(res), "every device message PUBACKed", [s.errors[:3] for s in streams])
    for c in clients:
        c.disconnect()
    total_dev = NDEV * PER_DEV
    expect = total_dev + 2 * NDEV  # + one online and one offline event per device
    ok = sub.wait_for(lambda s: s.count() >= expect, 90)
    t.check(ok, "the cloud subscriber received %d records" % expect, sub.count())
    # a short grace for anything beyond the expected count (duplicates) to show up
    g.wait_until(lambda: gw.metric("north_inflight") == 0 and gw.metric("north_queued") == 0, 10)
    recs = sub.records()
    t.eq(sum(1 for r in recs if r[1] is None), 0, "every upstream payload is a JSON object")
    recs = [r for r in recs if r[1] is not None]

    # device messages: all there, once, in order per device, topic and payload as documented
    by_dev = {d: [] for d in devs}
    bad = []
    for topic, d, _ in recs:
        if d.get("kind") in ("online", "offline"):
            continue
        dev, mid = d.get("device"), d.get("messageId", "")
        if dev not in by_dev or not mid.startswith(dev + "-"):
            bad.append("unexpected record %s %r" % (topic, d))
            continue
        seq = int(mid[len(dev) + 1:])
        by_dev[dev].append(seq)
        why = check_payload(dev, seq, topic, d)
        if why:
            bad.append("%s #%d: %s" % (dev, seq, why))
    t.eq(bad[:5], [], "topic and payload of every report and event (%d problems)" % len(bad))
    for dev in devs:
        seqs = by_dev[dev]
        t.eq(sorted(set(seqs)) == list(range(1, PER_DEV + 1)), True,
             "%s: messages 1..%d all upstream (%d distinct)" % (dev, PER_DEV, len(set(seqs))))
        t.eq(len(seqs) - len(set(seqs)), 0, "%s: no duplicates without a failure" % dev)
        t.check(seqs == sorted(seqs), "%s: upstream order is the device's order" % dev,
                next((("#%d after #%d" % (b, a)) for a, b in zip(seqs, seqs[1:]) if b < a), ""))

    # online / offline events around each device's messages
    for dev in devs:
        idx = [i for i, r in enumerate(recs) if r[1].get("device") == dev]
        kinds = [recs[i][1].get("kind") for i in idx]
        on = [recs[i] for i in idx if recs[i][1].get("kind") == "online"]
        off = [recs[i] for i in idx if recs[i][1].get("kind") == "offline"]
        t.check(len(on) == 1 and kinds[0] == "online", "%s: one online event, first" % dev,
                kinds[:3])
        t.check(len(off) == 1 and kinds[-1] == "offline", "%s: one offline event, last" % dev,
                kinds[-3:])
        if on:
            topic, d, _ = on[0]
            t.eq(topic, "%s/thermo/%s/online" % (PREFIX, dev), "%s: online topic" % dev)
            t.check(d.get("product") == "thermo" and isinstance(d.get("time"), int) and
                    isinstance(d.get("values"), dict) and d["values"].get("adapter") == "mqtt",
                    "%s: online payload (product, time, values.adapter mqtt)" % dev, d)
        if off:
            topic, d, _ = off[0]
            t.eq(topic, "%s/thermo/%s/offline" % (PREFIX, dev), "%s: offline topic" % dev)
            t.check(d.get("name") == "disconnect" and isinstance(d.get("values"), dict) and
                    d["values"].get("reason") == "disconnect" and
                    d["values"].get("will") is False,
                    "%s: offline payload (name disconnect, values.reason, will false)" % dev, d)

    # the database and the counters
    t.check(g.wait_until(lambda: gw.scalar("SELECT count(*) FROM outbox") == 0, 10),
            "outbox table empty once everything is acknowledged",
            gw.scalar("SELECT count(*) FROM outbox"))
    n_events = gw.scalar("SELECT count(*) FROM events")
    t.eq(n_events, expect, "events table: every device message + online + offline")
    m = gw.metrics()
    t.eq(m.get("north_forwarded_total"), float(expect), "north_forwarded_total = events forwarded")
    t.eq(m.get("north_published_total"), float(expect),
         "north_published_total = forwarded (no resend without a failure)")
    t.eq(m.get("north_inflight"), 0.0, "north_inflight 0 at rest")
    t.eq(m.get("north_queued"), 0.0, "north_queued 0 at rest")
    t.eq(m.get("north_connected"), 1.0, "north_connected 1")
    t.eq(m.get("north_reconnects_total", 0.0), 0.0, "north_reconnects_total 0 (no outage)")
    t.eq(m.get("north_dropped_total", 0.0), 0.0, "north_dropped_total 0")
    t.eq(m.get("north_outbox_full_total", 0.0), 0.0, "north_outbox_full_total 0")
    t.eq(len(recs), expect, "upstream records = events (nothing extra)")
    t.info("%d device messages + %d online/offline forwarded; %d upstream records"
           % (total_dev, 2 * NDEV, len(recs)))
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")
    sub.stop()
    broker.stop()


g.run(main)

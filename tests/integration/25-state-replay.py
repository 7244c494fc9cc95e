# Proves the latest-state tables trail the events without losing them: with a long storage.state_lag_ms, acknowledged reports are in events but their property_state is written only later; after a SIGKILL the restart replays them (property_state = the newest value per property, last_seen moved); a SIGTERM writes them before exiting.
import json

import gwtest as g

DEV = "t-001"
N = 40


def latest_from_events(gw):
    """{property: (value text, ts)} of DEV's newest report per property, from events."""
    out = {}
    for ts, payload in gw.query("SELECT ts, payload FROM events WHERE device=? AND "
                                "kind='property' ORDER BY id", (DEV,)):
        for k, v in json.loads(payload).items():
            if k not in out or ts >= out[k][1]:
                out[k] = (v, ts)
    return out


def state(gw, wait_state=True):
    """{property: (value, ts)} of DEV from property_state."""
    return {k: (json.loads(v), ts) for k, v, ts in gw.query(
        "SELECT property, value, ts FROM property_state WHERE device=?", (DEV,), wait_state)}


def report(c, i):
    # temperature every time, humidity every other time; timestamps out of order for mode
    props = {"temperature": 10.0 + i / 4}
    if i % 2:
        props["humidity"] = i
    if i % 5 == 0:
        props["mode"] = "eco" if i % 10 else "comfort"
    ts = 1700000000000 + i * 1000 if i % 5 else 1700000000000 - i * 1000
    ack = c.publish_wait(g.report_topic(DEV), g.report_payload("r-%d" % i, props, ts), i + 1)
    return ack is not None


def main(t):
    gw = g.Gateway(n_devices=2, config={"storage": {"state_lag_ms": 60000}})
    c = g.device_client(gw, DEV)
    t.check(all(report(c, i) for i in range(N)), "%d reports acknowledged" % N)
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE device=? AND kind='property'", (DEV,)), N,
         "every report is in events")
    t.eq(gw.metric("store_state_unwritten"), float(N),
         "their state is noted, not written yet (state_lag_ms 60 s)")
    t.eq(state(gw, False), {}, "property_state has none of them yet")
    t.eq(gw.scalar("SELECT online FROM device_state WHERE device=?", (DEV,), wait_state=False), 1,
         "online was written at once (in its event's transaction)")

    gw.kill()
    c.close()
    mark = gw.log_mark()
    gw.start()
    t.check(gw.find_log(mark, msg="device and property state replayed"),
            "the restart replays the state", gw.log_tail(5))
    t.eq(gw.metric("store_state_replayed_total"), float(N), "replayed: the %d reports" % N)
    t.eq(state(gw), latest_from_events(gw), "property_state = the newest value per property")
    t.eq(state(gw)["mode"][0], "comfort",
         "mode: the report with the newest timestamp (sent first) wins over later-sent ones")
    rx = gw.scalar("SELECT max(rx_ts) FROM events WHERE device=? AND kind='property'", (DEV,))
    t.check(gw.scalar("SELECT last_seen FROM device_state WHERE device=?", (DEV,)) >= rx,
            "last_seen moved to the last report")
    t.eq(gw.query("PRAGMA integrity_check"), [("ok",)], "integrity_check ok")

    # a clean stop writes what is noted; the next start has nothing to replay
    c = g.device_client(gw, DEV)
    t.check(report(c, N) and report(c, N + 1), "two more reports acknowledged")
    t.eq(gw.metric("store_state_unwritten"), 2.0, "noted, not written")
    c.disconnect()
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")
    t.eq(state(gw, False), latest_from_events(gw), "written at shutdown")
    mark = gw.log_mark()
    gw.start()
    t.eq(gw.find_log(mark, msg="device and property state replayed"), [],
         "nothing to replay after a clean stop")
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")


g.run(main)

# Proves the latest-state tables trail the events without losing them: with a long storage.state_lag_ms, acknowledged reports are in events but their property_state is written only later; after a SIGKILL the restart replays them (property_state = the newest value per property, last_seen moved); a SIGTERM writes them before exiting; a schema v2 database is migrated with its state taken as written.
import json
import sqlite3

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


def connect(gw):
    """DEV's connection, once its online event is committed with the state noted before it. An
    online change is written in its event's transaction together with every note taken so far,
    so a report that shared the online event's batch would have its state written at once; after
    this barrier every report goes in a later batch, and its state waits for state_lag_ms."""
    n0 = gw.metric("events_committed_total")
    c = g.device_client(gw, DEV)
    if not g.wait_until(lambda: gw.metric("events_committed_total") > n0 and
                        gw.metric("store_state_unwritten") == 0, 10):
        raise g.GatewayError("the online event of %s was not committed and written" % DEV)
    return c


def main(t):
    gw = g.Gateway(n_devices=2, config={"storage": {"state_lag_ms": 60000}})
    c = connect(gw)
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
    c = connect(gw)
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
    migrate_v2(t)


V2 = """
CREATE TABLE events(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, rx_ts INTEGER NOT NULL,
  device TEXT NOT NULL, product TEXT NOT NULL, kind TEXT NOT NULL, name TEXT, msg_id TEXT,
  payload TEXT);
CREATE TABLE device_state(device TEXT PRIMARY KEY, product TEXT NOT NULL, online INTEGER NOT NULL,
  last_seen INTEGER NOT NULL, last_offline_reason TEXT);
CREATE TABLE property_state(device TEXT NOT NULL, property TEXT NOT NULL, value TEXT NOT NULL,
  ts INTEGER NOT NULL, PRIMARY KEY(device, property)) WITHOUT ROWID;
CREATE TABLE outbox(event_id INTEGER PRIMARY KEY);
CREATE TABLE commands(id INTEGER PRIMARY KEY, ts INTEGER NOT NULL, device TEXT NOT NULL,
  product TEXT NOT NULL, msg_id TEXT, op TEXT NOT NULL, name TEXT, request TEXT,
  status TEXT NOT NULL, done_ts INTEGER, reply TEXT);
CREATE INDEX commands_device_msg ON commands(device, msg_id);
INSERT INTO events VALUES(7, 1000, 1000, 't-001', 'thermo', 'property', NULL, 'old',
  '{"temperature":30.5}');
INSERT INTO device_state VALUES('t-001', 'thermo', 0, 1000, 'shutdown');
INSERT INTO property_state VALUES('t-001', 'temperature', '30.5', 1000);
PRAGMA user_version=2;
"""


def migrate_v2(t):
    """A database written by a v2 gateway: its state was written with its events, so the mark
    starts at its newest event and nothing is replayed."""
    gw = g.Gateway(n_devices=2, start=False)
    con = sqlite3.connect(gw.db_path)
    con.executescript(V2)
    con.close()
    gw.start()
    t.eq(gw.scalar("PRAGMA user_version"), 4, "v2 database migrated to v4")
    t.eq(gw.query("SELECT key, value FROM meta"), [("state_mark", 7)],
         "state mark = the newest event")
    t.eq(gw.metric("store_state_replayed_total"), 0.0, "nothing replayed")
    c = g.device_client(gw, DEV)
    t.check(report(c, 1), "a report after the migration")
    t.eq(state(gw)["temperature"][0], 10.25, "property_state updated as before")
    c.disconnect()
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")
    t.eq(gw.scalar("SELECT value FROM meta WHERE key='state_mark'"),
         gw.scalar("SELECT max(id) FROM events"), "the mark follows the events")


g.run(main)

# Proves a PUBACK means committed: 1,000 windowed QoS 1 publishes, SIGKILL right after the last is sent, and after a restart on the same database every acknowledged messageId is in events.
import gwtest as g

N = 1000
WINDOW = 50
DEV = "t-001"
TOPIC = g.report_topic(DEV)


def main(t):
    # batch_ms holds each commit back 20 ms: a PUBACK sent before its commit would be caught
    gw = g.Gateway(n_devices=2, config={"storage": {"batch_ms": 20}})
    c = g.device_client(gw, DEV)
    acked = []
    outstanding = set()
    nxt = 1
    bad = []
    while True:
        batch = []
        while len(outstanding) < WINDOW and nxt <= N:
            batch.append(g.publish_packet(TOPIC, g.report_payload(
                "k-%d" % nxt, {"temperature": (nxt % 160) - 35.0, "humidity": nxt % 100}), 1, nxt))
            outstanding.add(nxt)
            nxt += 1
        if batch:
            c.send(b"".join(batch))
        if nxt > N:
            break
        p = c.read_packet(10)
        if p is None:
            bad.append("no PUBACK within 10 s")
            break
        if p.type != g.PUBACK or p.pid not in outstanding:
            bad.append(repr(p))
            continue
        outstanding.discard(p.pid)
        acked.append(p.pid)
    # the last publishes are in flight: kill now
    gw.kill()
    t.info("SIGKILL with %d outstanding" % len(outstanding))
    # PUBACKs the gateway wrote before dying are still in our receive buffer
    try:
        while True:
            p = c.read_packet(2)
            if p is None:
                break
            if p.type == g.PUBACK and p.pid in outstanding:
                outstanding.discard(p.pid)
                acked.append(p.pid)
            else:
                bad.append(repr(p))
    except g.Closed:
        pass
    c.close()
    t.eq(bad, [], "only PUBACKs for outstanding packet ids")
    t.check(len(acked) >= N - WINDOW, "at least %d of %d acknowledged" % (N - WINDOW, N),
            len(acked))
    t.eq(acked, sorted(acked), "PUBACKs in PUBLISH order")
    t.info("acknowledged %d of %d before SIGKILL" % (len(acked), N))

    gw.start()
    t.check(gw.alive(), "restart on the same database")
    t.eq(gw.query("PRAGMA integrity_check"), [("ok",)], "integrity_check ok after SIGKILL")
    stored = set(r[0] for r in gw.query("SELECT msg_id FROM events WHERE device=? AND "
                                        "kind='property'", (DEV,)))
    missing = [p for p in acked if "k-%d" % p not in stored]
    t.eq(missing[:20], [], "every acknowledged messageId is in events (%d acked, %d stored)"
         % (len(acked), len(stored)))
    dups = gw.scalar("SELECT count(*) - count(DISTINCT msg_id) FROM events WHERE device=? AND "
                     "kind='property'", (DEV,))
    t.eq(dups, 0, "no messageId stored twice")
    t.check(all(s.startswith("k-") and 1 <= int(s[2:]) <= N for s in stored),
            "nothing stored that was not sent")
    # the device that was online when the gateway died is not left online forever
    t.eq(gw.scalar("SELECT online FROM device_state WHERE device=?", (DEV,)), 0,
         "after restart: the killed session's device is not shown online")
    t.eq(gw.metric("devices_online"), 0.0, "after restart: devices_online 0")
    # the restarted gateway works
    d = g.device_client(gw, "t-002")
    ack = d.publish_wait(g.report_topic("t-002"), g.report_payload("after", {"humidity": 1}), 7)
    t.check(ack is not None and gw.scalar("SELECT count(*) FROM events WHERE msg_id='after'") == 1,
            "restarted gateway stores new reports")
    d.disconnect()
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")
    print("# acknowledged=%d stored=%d of %d" % (len(acked), len(stored), N))


g.run(main)

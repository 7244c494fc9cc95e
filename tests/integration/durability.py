# durability.py: the SIGKILL durability check shared by test 20 (plain MQTT) and test 89 (MQTT
# over TLS): windowed QoS 1 publishes on connected clients, SIGKILL right after the last is
# sent, then after a restart on the same database every acknowledged messageId is in events,
# once, and integrity_check is ok.
import gwtest as g


def publish_then_kill(t, gw, clients, n, window):
    """clients: {device: connected client}. Each publishes n windowed QoS 1 reports (messageId
    k-<pid>), round robin; gw is SIGKILLed right after the last is sent, and the PUBACKs still
    in the clients' receive buffers are drained. Returns {device: acknowledged packet ids, in
    order}."""
    state = {d: {"acked": [], "out": set(), "next": 1} for d in clients}
    bad = []
    while True:
        sending = False
        for dev, c in clients.items():
            st = state[dev]
            batch = []
            while len(st["out"]) < window and st["next"] <= n:
                k = st["next"]
                batch.append(g.publish_packet(g.report_topic(dev), g.report_payload(
                    "k-%d" % k, {"temperature": (k % 160) - 35.0, "humidity": k % 100}), 1, k))
                st["out"].add(k)
                st["next"] += 1
            if batch:
                c.send(b"".join(batch))
            if st["next"] > n:
                continue
            sending = True
            p = c.read_packet(10)
            if p is None:
                bad.append("%s: no PUBACK within 10 s" % dev)
                break
            if p.type != g.PUBACK or p.pid not in st["out"]:
                bad.append("%s: %r" % (dev, p))
                continue
            st["out"].discard(p.pid)
            st["acked"].append(p.pid)
        if not sending or bad:
            break
    # the last publishes are in flight: kill now
    gw.kill()
    t.info("SIGKILL with %d outstanding" % sum(len(st["out"]) for st in state.values()))
    # PUBACKs the gateway wrote before dying are still in our receive buffers
    for dev, c in clients.items():
        st = state[dev]
        try:
            while True:
                p = c.read_packet(2)
                if p is None:
                    break
                if p.type == g.PUBACK and p.pid in st["out"]:
                    st["out"].discard(p.pid)
                    st["acked"].append(p.pid)
                else:
                    bad.append("%s: %r" % (dev, p))
        except g.Closed:
            pass
        c.close()
    t.eq(bad, [], "only PUBACKs for outstanding packet ids")
    for dev, st in state.items():
        acked = st["acked"]
        t.check(len(acked) >= n - window, "%s: at least %d of %d acknowledged"
                % (dev, n - window, n), len(acked))
        t.eq(acked, sorted(acked), "%s: PUBACKs in PUBLISH order" % dev)
        t.info("%s: acknowledged %d of %d before SIGKILL" % (dev, len(acked), n))
    return {dev: st["acked"] for dev, st in state.items()}


def check_after_restart(t, gw, acked, n):
    """acked: {device: acknowledged packet ids}. Restarts gw on the same database and checks it:
    integrity, every acknowledged messageId stored once, nothing else stored, the killed
    sessions' devices offline. Returns {device: set of stored messageIds}."""
    gw.start()
    t.check(gw.alive(), "restart on the same database")
    t.eq(gw.query("PRAGMA integrity_check"), [("ok",)], "integrity_check ok after SIGKILL")
    out = {}
    for dev, ids in acked.items():
        stored = set(r[0] for r in gw.query("SELECT msg_id FROM events WHERE device=? AND "
                                            "kind='property'", (dev,)))
        missing = [p for p in ids if "k-%d" % p not in stored]
        t.eq(missing[:20], [], "%s: every acknowledged messageId is in events (%d acked, %d "
             "stored)" % (dev, len(ids), len(stored)))
        dups = gw.scalar("SELECT count(*) - count(DISTINCT msg_id) FROM events WHERE device=? "
                         "AND kind='property'", (dev,))
        t.eq(dups, 0, "%s: no messageId stored twice" % dev)
        t.check(all(s.startswith("k-") and 1 <= int(s[2:]) <= n for s in stored),
                "%s: nothing stored that was not sent" % dev)
        # a device that was online when the gateway died is not left online forever
        t.eq(gw.scalar("SELECT online FROM device_state WHERE device=?", (dev,)), 0,
             "after restart: %s (killed session) is not shown online" % dev)
        out[dev] = stored
    t.eq(gw.metric("devices_online"), 0.0, "after restart: devices_online 0")
    return out

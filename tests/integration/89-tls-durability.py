# Proves a PUBACK over TLS means committed: 4 QoS 1 publishers over TLS (1,000 windowed publishes each), SIGKILL right after the last is sent, and after a restart on the same database every acknowledged messageId is stored once and integrity_check is ok; a client offering a session ticket from before the kill gets a full handshake and goes on, and resumption works again with a new ticket.
import os
import shutil

import durability
import gwtest as g
import tlscerts as tc
import tlsutil as tu

N = 1000
WINDOW = 50
PUBS = ["t-001", "t-002", "t-003", "t-004"]
LATE = "t-005"  # resumes before the kill, offers its stale ticket after the restart


def main(t):
    work = os.path.join(os.environ.get("TMPDIR", "/tmp"), "iotgw-tls89-%d" % os.getpid())
    os.makedirs(work)
    try:
        run(t, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def tls_client(t, port, ctx, dev, session=None):
    """A TLS MQTT session as dev (CONNACK 0 checked), offering session if given."""
    c = tu.TlsRaw(port, ctx, timeout=10, session=session)
    rc = c.connect_device(dev)
    t.eq(rc, 0, "%s: CONNACK 0 over TLS%s" % (dev, " (ticket offered)" if session else ""))
    return c


def publish_one(t, gw, c, dev, mid, pid):
    ack = c.publish_wait(g.report_topic(dev), g.report_payload(mid, {"humidity": 1}), pid)
    t.check(ack is not None and ack.pid == pid, "%s: %s acknowledged over TLS" % (dev, mid))


def run(t, work):
    ca = tc.CA(work, "ca")
    crt, key = tc.server_cert(ca)
    # batch_ms holds each commit back 20 ms: a PUBACK sent before its commit would be caught
    gw = g.Gateway(n_devices=5, config={
        "storage": {"batch_ms": 20},
        "adapters": {"mqtt": {"listeners": [
            {"address": g.HOST, "port": 0, "tls": {"cert": crt, "key": key}}]}}})
    port = tu.listener_port(gw, "mqtt", 0)
    ctx = tu.context(ca.cert)

    # --- a ticket from before the kill, and resumption working with it ---------------------------
    c = tls_client(t, port, ctx, LATE)
    publish_one(t, gw, c, LATE, "before-1", 1)  # (the TLS 1.3 ticket arrives after the handshake)
    ticket = c.sock.session
    t.check(ticket is not None and ticket.has_ticket, "the gateway issued a session ticket")
    c.disconnect()
    res0 = gw.metric("tls_handshakes_total", kind="resumed")
    c = tls_client(t, port, ctx, LATE, session=ticket)
    t.check(c.sock.session_reused, "before the kill: the ticket resumes the session")
    t.eq(gw.metric("tls_handshakes_total", kind="resumed") - res0, 1.0,
         "before the kill: tls_handshakes_total{kind=resumed} +1")
    publish_one(t, gw, c, LATE, "before-2", 2)
    stale = c.sock.session or ticket
    c.disconnect()

    # --- QoS 1 publishers over TLS, SIGKILL mid-stream -------------------------------------------
    clients = {d: tls_client(t, port, ctx, d) for d in PUBS}
    acked = durability.publish_then_kill(t, gw, clients, N, WINDOW)
    stored = durability.check_after_restart(t, gw, acked, N)
    port = tu.listener_port(gw, "mqtt", 0)  # (a new port after the restart)

    # --- after the restart: the stale ticket gets a full handshake, then resumption again ---------
    full0 = gw.metric("tls_handshakes_total", kind="full")
    res0 = gw.metric("tls_handshakes_total", kind="resumed")
    c = tls_client(t, port, ctx, LATE, session=stale)
    t.check(not c.sock.session_reused, "after the restart: the stale ticket is not resumed")
    t.eq(gw.metric("tls_handshakes_total", kind="full") - full0, 1.0,
         "after the restart: a full handshake instead (tls_handshakes_total{kind=full} +1)")
    publish_one(t, gw, c, LATE, "after-1", 3)
    fresh = c.sock.session
    c.disconnect()
    c = tls_client(t, port, ctx, LATE, session=fresh)
    t.check(c.sock.session_reused, "after the restart: a new ticket resumes")
    t.eq(gw.metric("tls_handshakes_total", kind="resumed") - res0, 1.0,
         "after the restart: tls_handshakes_total{kind=resumed} +1")
    publish_one(t, gw, c, LATE, "after-2", 4)
    c.disconnect()
    got = set(r[0] for r in gw.query("SELECT msg_id FROM events WHERE device=?", (LATE,)))
    t.eq(sorted(got & {"before-1", "before-2", "after-1", "after-2"}),
         ["after-1", "after-2", "before-1", "before-2"], "%s: its 4 reports stored" % LATE)
    # the publishers reconnect over TLS and go on
    for d in PUBS:
        c = tls_client(t, port, ctx, d)
        publish_one(t, gw, c, d, "again-%s" % d, 1)
        c.disconnect()
    t.check(gw.alive(), "gateway alive")
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")
    print("# acknowledged=%d stored=%d of %d" % (sum(len(v) for v in acked.values()),
                                                sum(len(v) for v in stored.values()),
                                                N * len(PUBS)))


g.run(main)

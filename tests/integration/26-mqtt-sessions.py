# Proves MQTT 3.1.1 session handling: a 100-filter SUBSCRIBE gets 100 return codes in order (granted and refused mixed); a 60,000-filter refused SUBSCRIBE gets 60,000 codes and is logged once; a clean_session=0 device keeps its subscriptions across reconnects (session-present=1, also when the new connection takes over the old one on whichever loop) and receives a command through the cloud without resubscribing; a QoS 2 PUBLISH resent with DUP after a reconnect is stored once; clean_session=1 discards the stored session; a stored session expires after session_expiry_s and its memory is freed.
import struct
import time

import cmdlib as cl
import gwtest as g

CMD_DEV, Q2_DEV, SUB_DEV, FLOOD_DEV = "t-001", "t-002", "t-003", "t-004"
N_REFUSED = 60000
MAX_LOG_LINES = 3  # "a handful": the refused SUBSCRIBE must be one line, not 60,000
EXPIRY_S = 1
MAX_RECONNECTS = 24  # until a resume landed on the other loop, after DISCONNECT and by takeover
BIG_FILTERS, BIG_LEN = 30, 2000  # a stored session holding ~60 KB of filters (memory check)


def connect(gw, dev, clean, **kw):
    """A raw client connected as dev; returns (client, session_present) or (client, None)."""
    c = g.RawClient(gw.mqtt_port)
    c.send(g.device_connect_packet(dev, clean=clean, **kw))
    p = c.expect(g.CONNACK)
    if p is None or p.rc != 0:
        return c, None
    return c, p.body[0] & 1


def pubrel_packet(pid):
    return g.packet(g.PUBREL, 2, struct.pack("!H", pid))


def count(gw, sql, *args):
    return gw.scalar(sql, args)


def subscribe_100(t, gw):
    """Filters 0..99: even ones the device's own (granted min(qos, 1)), odd ones another device's
    (refused 0x80): one code per filter, in order."""
    c, sp = connect(gw, SUB_DEV, True)
    t.eq(sp, 0, "100 filters: clean_session=1 CONNACK, session-present 0")
    filters, want = [], []
    for i in range(100):
        q = i % 3
        if i % 2 == 0:
            filters.append(("/thermo/%s/x/%d" % (SUB_DEV, i), q))
            want.append(min(q, 1))
        else:
            filters.append(("/thermo/t-005/x/%d" % i, q))
            want.append(0x80)
    codes = c.subscribe(11, filters)
    t.eq(len(codes or []), 100, "SUBACK carries 100 return codes (MQTT-3.9.3-1; was 64)")
    t.eq(codes, want, "the codes in filter order: granted min(qos,1) / refused 0x80")
    c.disconnect()


def refused_flood(t, gw):
    c, sp = connect(gw, FLOOD_DEV, True)
    t.eq(sp, 0, "flood device connected")
    m0 = gw.metrics()
    mark = gw.log_mark()
    body = struct.pack("!H", 12) + b"".join(g.enc_str("/o/%d" % i) + b"\x01"
                                            for i in range(N_REFUSED))
    pkt = g.packet(g.SUBSCRIBE, 2, body)
    t0 = time.monotonic()
    c.send(pkt)
    p = c.expect(g.SUBACK, timeout=20)
    codes = p.suback_codes if p is not None else None
    t.info("60,000-filter SUBSCRIBE (%d bytes) answered in %.3f s" %
           (len(pkt), time.monotonic() - t0))
    t.eq(len(codes or []), N_REFUSED, "SUBACK carries %d return codes" % N_REFUSED)
    t.check(codes is not None and set(codes) == {0x80}, "every one refused (0x80)")
    t.check(g.wait_until(lambda: g.metric_delta(m0, gw.metrics(), 'mqtt_acl_denied_total{op="subscribe"}')
                         == N_REFUSED, 5), "mqtt_acl_denied_total{op=subscribe} counts all 60,000")
    t.check(c.ping(), "the connection stays open (PINGRESP)")
    lines = [ln for ln in gw.log_lines(mark) if "subscribe outside" in ln]
    t.info("log lines for the refused SUBSCRIBE: %d" % len(lines))
    t.check(1 <= len(lines) <= MAX_LOG_LINES, "refused SUBSCRIBE logged at most %d lines" %
            MAX_LOG_LINES, len(lines))
    if lines:
        d = g.parse_logfmt(lines[0])
        t.eq((d.get("refused"), d.get("first")), (str(N_REFUSED), "/o/0"),
             "the line has the count and the first refused filter")
    c.disconnect()


def conn_loop(gw, mark, dev):
    """The loop index of dev's newest connection logged since mark (log_level debug)."""
    def last():
        ls = [d for d in map(g.parse_logfmt, gw.log_lines(mark))
              if d.get("dev") == dev and d.get("msg") in ("connected", "session taken over")]
        return ls[-1].get("loop") if ls else None
    return g.wait_until(last, 2)


def persistent_commands(t, gw, broker):
    """A clean_session=0 device subscribes once, then reconnects (new connections, every other one
    taking over a still open one) until a resume has landed on the other loop both ways: each
    CONNACK says session present and a command reaches the device on its stored subscription."""
    cloud = cl.Cloud(broker.port)
    t.check(cloud.wait_ready("thermo", CMD_DEV), "north link up (a property read is answered)")
    m0 = gw.metrics()
    base = m0.get("mqtt_sessions_stored", 0)  # other devices' stored sessions
    mark = gw.log_mark()
    c, sp = connect(gw, CMD_DEV, False)
    t.eq(sp, 0, "first clean_session=0 CONNACK: session-present 0 (nothing stored yet)")
    t.eq(c.subscribe(1, [("/thermo/%s/function/invoke" % CMD_DEV, 1)]), [1],
         "subscribed to the invoke topic (QoS 1)")
    t.check(g.wait_until(lambda: gw.metric("mqtt_sessions_stored") == base + 1, 3),
            "mqtt_sessions_stored + 1")
    prev = conn_loop(gw, mark, CMD_DEV)
    cross = {"after DISCONNECT": 0, "takeover": 0}
    ok_all, n_resumed = True, 0
    for i in range(MAX_RECONNECTS):
        kind = "takeover" if i % 2 else "after DISCONNECT"
        if kind != "takeover":
            c.disconnect()
        mark = gw.log_mark()
        n, sp = connect(gw, CMD_DEV, False)
        n_resumed += 1
        ok = sp == 1
        if kind == "takeover":
            ok = c.wait_closed(3) and ok
            c.close()
        c = n
        loop = conn_loop(gw, mark, CMD_DEV)
        if loop is not None and prev is not None and loop != prev:
            cross[kind] += 1
        prev = loop
        mid = "cmd-%d" % i
        cloud.invoke("thermo", CMD_DEV, mid, "reboot", {"delay_s": 1})
        p = c.expect(g.PUBLISH, timeout=5)
        got = p.publish() if p is not None else None
        ok = ok and got is not None and got[0] == "/thermo/%s/function/invoke" % CMD_DEV and \
            mid.encode() in got[3]
        if ok:
            c.publish("/thermo/%s/function/invoke/reply" % CMD_DEV,
                      cl.compact(cl.ok_reply(got[0], {"messageId": mid})), 0)
            r = cloud.reply(CMD_DEV, mid)
            ok = bool(r and r[1].get("success") is True)
        if not ok:
            t.check(False, "reconnect %d (%s, loop %s): session-present 1, the command arrives "
                    "without resubscribing, the cloud gets the reply" % (i, kind, loop), (sp, got))
            ok_all = False
            break
        if i >= 5 and all(cross.values()):
            break
    t.check(ok_all, "%d reconnects (every other one a takeover): each session-present 1 and the "
            "command arrives on the stored subscription, answered" % n_resumed)
    t.info("resumes on the other loop: %s" % cross)
    t.check(cross["after DISCONNECT"] > 0, "a reconnect after DISCONNECT resumed the session on "
            "the other loop", cross)
    t.check(cross["takeover"] > 0, "a takeover resumed the session on the other loop while the "
            "old connection was open there", cross)
    m1 = gw.metrics()
    t.eq(g.metric_delta(m0, m1, "mqtt_sessions_resumed_total"), n_resumed,
         "mqtt_sessions_resumed_total + %d" % n_resumed)
    t.eq(m1.get("mqtt_sessions_stored"), base + 1, "still one stored session for the device")

    # clean_session=1 discards it (MQTT-3.1.2-6): no session present, no subscription
    c.disconnect()
    c, sp = connect(gw, CMD_DEV, True)
    t.eq(sp, 0, "clean_session=1: session-present 0")
    t.check(g.wait_until(lambda: gw.metric("mqtt_sessions_stored") == base, 3),
            "the stored session is discarded (mqtt_sessions_stored back to %d)" % base)
    cloud.invoke("thermo", CMD_DEV, "cmd-clean", "reboot", {"delay_s": 1})
    r = cloud.reply(CMD_DEV, "cmd-clean")
    t.check(r and r[1].get("success") is False, "a command now fails: the device has no "
            "subscription", r and r[1])
    try:
        p = c.read_packet(0.3)
    except g.Closed:
        p = None
    t.check(p is None, "and the device receives nothing", p)
    c.disconnect()
    c, sp = connect(gw, CMD_DEV, False)
    t.eq(sp, 0, "clean_session=0 after the discard: a fresh session (session-present 0)")
    c.disconnect()
    cloud.stop()


def qos2_once(t, gw):
    """QoS 2: PUBLISH, PUBREC, no PUBREL; the connection drops; the device reconnects with
    clean_session=0 and resends the PUBLISH with DUP, then PUBREL: stored exactly once."""
    topic = g.report_topic(Q2_DEV)
    c, sp = connect(gw, Q2_DEV, False)
    t.eq(sp, 0, "QoS 2 device: first CONNACK session-present 0")
    pkt = g.publish_packet(topic, g.report_payload("q2-1", {"temperature": 21.5}), 2, 77)
    c.send(pkt)
    p = c.expect(g.PUBREC)
    t.check(p is not None and p.pid == 77, "PUBREC 77 (stored, awaiting PUBREL)")
    t.check(g.wait_until(lambda: count(gw, "SELECT count(*) FROM events WHERE msg_id='q2-1'") == 1,
                         5), "q2-1 stored once")
    c.abort()  # the connection drops without DISCONNECT (no PUBREL sent)
    c, sp = connect(gw, Q2_DEV, False)
    t.eq(sp, 1, "reconnect clean_session=0: session-present 1")
    c.send(g.publish_packet(topic, g.report_payload("q2-1", {"temperature": 21.5}), 2, 77,
                            dup=True))
    p = c.expect(g.PUBREC)
    t.check(p is not None and p.pid == 77, "the DUP resend is answered PUBREC 77")
    c.send(pubrel_packet(77))
    p = c.expect(g.PUBCOMP)
    t.check(p is not None and p.pid == 77, "PUBREL 77 -> PUBCOMP 77")
    t.check(c.ping(), "ping after PUBCOMP (every write before it processed)")
    gw.state_written()
    t.eq(count(gw, "SELECT count(*) FROM events WHERE msg_id='q2-1'"), 1,
         "q2-1 stored exactly once after the DUP resend on a new connection")
    # the id was released: reusing 77 is a new message
    c.send(g.publish_packet(topic, g.report_payload("q2-2", {"temperature": 22.5}), 2, 77))
    p = c.expect(g.PUBREC)
    t.check(p is not None and p.pid == 77, "packet id 77 reused after PUBCOMP: PUBREC")
    c.send(pubrel_packet(77))
    t.check(c.expect(g.PUBCOMP) is not None, "PUBCOMP")
    t.check(g.wait_until(lambda: count(gw, "SELECT count(*) FROM events WHERE msg_id='q2-2'") == 1,
                         5), "the reused id's new message q2-2 is stored")
    c.disconnect()


def expiry(t):
    gw = g.Gateway(n_devices=2, config={"adapters": {"mqtt": {"session_expiry_s": EXPIRY_S}}})
    c, sp = connect(gw, "t-001", False)
    t.eq(sp, 0, "expiry gateway: session-present 0")
    filters = [("/thermo/t-001/%s/%d" % ("f" * BIG_LEN, i), 1) for i in range(BIG_FILTERS)]
    t.eq(c.subscribe(3, filters), [1] * BIG_FILTERS, "%d filters of %d bytes subscribed" %
         (BIG_FILTERS, BIG_LEN))
    c.disconnect()
    m1 = gw.metrics()
    mem1 = m1.get('memory_bytes{area="session"}', 0)
    t.eq(m1.get("mqtt_sessions_stored"), 1.0, "stored after disconnect (mqtt_sessions_stored 1)")
    t.check(g.wait_until(lambda: gw.metric("mqtt_sessions_expired_total") == 1, 3 + EXPIRY_S),
            "expired after session_expiry_s (mqtt_sessions_expired_total 1)")
    m2 = gw.metrics()
    mem2 = m2.get('memory_bytes{area="session"}', 0)
    t.eq(m2.get("mqtt_sessions_stored"), 0.0, "mqtt_sessions_stored 0")
    t.info("memory_bytes{area=session}: %d with the stored session, %d after expiry" %
           (mem1, mem2))
    t.check(mem1 - mem2 >= BIG_FILTERS * BIG_LEN, "its memory is freed (session area down by at "
            "least the filters' %d bytes)" % (BIG_FILTERS * BIG_LEN), (mem1, mem2))
    c, sp = connect(gw, "t-001", False)
    t.eq(sp, 0, "reconnect after expiry: session-present 0")
    c.disconnect()
    t.eq(gw.stop(), 0, "expiry gateway: SIGTERM exit 0")


def main(t):
    broker = g.Mosquitto(extra_conf=cl.BROKER_CONF)
    gw = g.Gateway(n_devices=5, config={
        "north": cl.north(broker.port), "storage": {"batch_ms": 0}, "log_level": "debug",
        "adapters": {"mqtt": {"max_subscriptions": 128, "max_packet_size": 1048576}}})
    subscribe_100(t, gw)
    refused_flood(t, gw)
    qos2_once(t, gw)
    persistent_commands(t, gw, broker)
    t.eq(gw.stop(), 0, "SIGTERM: exit 0 (stored sessions freed at shutdown)")
    expiry(t)


g.run(main)

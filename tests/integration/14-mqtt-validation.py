# Proves each thing-model rejection is PUBACKed but not stored, counted by reason, logged with dev= and reason=, and answered on the device's reply topic; one bad property rejects the whole report.
import json
import re

import gwtest as g

DEV = "t-001"
RT = g.report_topic(DEV)

# (what, topic, payload, reason, reply topic)
CASES = [
    ("unknown property", RT, g.report_payload("v-1", {"pressure": 1013}), "unknown_property"),
    ("wrong type (string for float)", RT, g.report_payload("v-2", {"temperature": "hot"}),
     "wrong_type"),
    ("wrong type (float for int)", RT, g.report_payload("v-3", {"humidity": 4.5}), "wrong_type"),
    ("wrong type (number for bool)", RT, g.report_payload("v-4", {"on": 1}), "wrong_type"),
    ("out of range (above max)", RT, g.report_payload("v-5", {"temperature": 300}),
     "out_of_range"),
    ("out of range (below min)", RT, g.report_payload("v-6", {"humidity": -1}), "out_of_range"),
    ("string too long", RT, g.report_payload("v-7", {"label": "abcdefghi"}), "string_too_long"),
    ("enum value not listed", RT, g.report_payload("v-8", {"mode": "turbo"}),
     "enum_value_not_listed"),
    ("one bad property rejects the whole report", RT,
     g.report_payload("v-9", {"temperature": 33.5, "humidity": 500}), "out_of_range"),
    ("missing event param", g.event_topic(DEV, "overheat"), g.event_payload("v-10", {}),
     "missing_param"),
    ("unknown event", g.event_topic(DEV, "explode"), g.event_payload("v-11", {"t": 1.0}),
     "unknown_event"),
    ("unknown event param", g.event_topic(DEV, "overheat"),
     g.event_payload("v-12", {"t": 1.0, "extra": 2}), "unknown_param"),
    ("event param wrong type", g.event_topic(DEV, "overheat"), g.event_payload("v-13", {"t": "x"}),
     "wrong_type"),
    ("too many array items", RT, g.report_payload("v-14", {"samples": [1, 2, 3, 4]}),
     "too_many_items"),
    ("array item wrong type", RT, g.report_payload("v-15", {"samples": [1, "a"]}), "wrong_type"),
    ("struct field out of range", RT, g.report_payload("v-16", {"pos": {"lat": 91, "lon": 0}}),
     "out_of_range"),
    ("struct field missing", RT, g.report_payload("v-17", {"pos": {"lat": 1}}), "missing_param"),
    ("empty report", RT, g.report_payload("v-18", {}), "empty_report"),
    ("payload not JSON", RT, '{"messageId":"v-19","properties":{"temperature":', "malformed_payload"),
    ("properties not an object", RT, '{"messageId":"v-20","properties":[1,2]}',
     "malformed_payload"),
]


def reply_topic(topic):
    return topic + "/reply"


def main(t):
    # every rejection's log line is checked, 20 within a second: no log rate limit here (test 29
    # proves the limit)
    gw = g.Gateway(n_devices=2, config={"log_rate_limit": 0})
    c = g.device_client(gw, DEV)
    subs = sorted(set(reply_topic(tp) for _, tp, _, _ in CASES))
    codes = c.subscribe(1, [(s, 0) for s in subs])
    t.eq(codes, [0] * len(subs), "subscribed to own reply topics")

    # a valid report first (control): stored
    ack = c.publish_wait(RT, g.report_payload("ok-1", {"temperature": 20.5, "humidity": 10}), 2)
    t.check(ack is not None, "valid report PUBACKed")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE msg_id='ok-1'"), 1, "valid report stored")

    pid = 100
    for what, topic, payload, reason in CASES:
        pid += 1
        msg_id = re.search(r'"messageId":"([^"]*)"', payload).group(1)
        m0 = gw.metrics()
        mark = gw.log_mark()
        n_ev = gw.scalar("SELECT count(*) FROM events WHERE device=? AND kind IN "
                         "('property','event')", (DEV,))
        c.publishes.clear()
        c.publish(topic, payload, qos=1, pid=pid)
        try:
            ack = c.expect(g.PUBACK, 3)
        except g.Closed:
            ack = None
        t.check(ack is not None and ack.pid == pid, "%s: PUBACK anyway" % what)
        # the failure reply on the reply topic (may come before or after the PUBACK)
        reply = None
        deadline_pubs = list(c.publishes)
        if not deadline_pubs:
            try:
                p = c.read_packet(3)
            except g.Closed:
                p = None
            if p is not None and p.type == g.PUBLISH:
                deadline_pubs.append(p)
        for p in deadline_pubs:
            tp, qos, _, body = p.publish()
            if tp == reply_topic(topic):
                reply = body
        t.check(reply is not None, "%s: reply published on %s" % (what, reply_topic(topic)),
                [p.publish()[0] for p in deadline_pubs])
        if reply is not None:
            try:
                r = json.loads(reply)
            except ValueError:
                r = {}
            want_id = None if reason == "malformed_payload" and "not JSON" in what else msg_id
            t.check(r.get("success") is False and r.get("code") == reason
                    and (want_id is None or r.get("messageId") == want_id)
                    and isinstance(r.get("message"), str),
                    "%s: reply {messageId, success:false, code:%s, message}" % (what, reason),
                    reply)
        t.eq(gw.scalar("SELECT count(*) FROM events WHERE device=? AND kind IN "
                       "('property','event')", (DEV,)), n_ev, "%s: nothing stored" % what)
        t.eq(gw.scalar("SELECT count(*) FROM events WHERE msg_id=?", (msg_id,)), 0,
             "%s: no row with its messageId" % what)
        m1 = gw.metrics()
        t.eq(g.metric_delta(m0, m1, g.metric_key("messages_rejected_total", reason=reason)), 1.0,
             "%s: messages_rejected_total{reason=%s} +1" % (what, reason))
        lines = g.wait_until(lambda: gw.find_log(mark, dev=DEV, reason=reason), 3)
        t.check(lines, "%s: log line with dev=%s reason=%s" % (what, DEV, reason),
                gw.log_since(mark)[-400:])

    # valid array and struct values are stored normalised
    ack = c.publish_wait(RT, g.report_payload("ok-a", {"samples": [1, 2.5], "pos": {"lat": 1,
                                                                                  "lon": -2.5}}), 2)
    row = gw.query("SELECT payload FROM events WHERE msg_id='ok-a'")
    t.check(ack is not None and row and json.loads(row[0][0]) == {"samples": [1.0, 2.5],
                                                                   "pos": {"lat": 1.0,
                                                                           "lon": -2.5}},
            "valid array + struct report stored", row)
    if row:
        v = json.loads(row[0][0])
        t.check(isinstance(v["samples"][0], float) and isinstance(v["pos"]["lat"], float),
                "array items / struct fields normalised to reals", row[0][0])

    # PUBACKs stay in PUBLISH order when a rejected message sits between accepted ones
    burst = [g.publish_packet(RT, g.report_payload("o-1", {"energy": 1.0}), 1, 201),
             g.publish_packet(RT, g.report_payload("o-2", {"humidity": 1000}), 1, 202),
             g.publish_packet(RT, g.report_payload("o-3", {"energy": 3.0}), 1, 203),
             g.publish_packet(RT, g.report_payload("o-4", {"nope": 3}), 1, 204),
             g.publish_packet(RT, g.report_payload("o-5", {"energy": 5.0}), 1, 205)]
    c.send(b"".join(burst))
    order = []
    for _ in range(5):
        try:
            p = c.expect(g.PUBACK, 3)
        except g.Closed:
            p = None
        if p is None:
            break
        order.append(p.pid)
    t.eq(order, [201, 202, 203, 204, 205], "PUBACKs in PUBLISH order across rejections")
    t.eq(sorted(r[0] for r in gw.query("SELECT msg_id FROM events WHERE msg_id LIKE 'o-%'")),
         ["o-1", "o-3", "o-5"], "only the valid ones of the burst stored")

    # the whole-report case left property_state untouched
    ps = dict(gw.query("SELECT property, value FROM property_state WHERE device=?", (DEV,)))
    t.eq(json.loads(ps.get("temperature", "null")), 20.5,
         "whole report rejected: temperature keeps the earlier value")
    t.eq(json.loads(ps.get("humidity", "null")), 10, "humidity keeps the earlier value")

    # a device not subscribed to the reply topic gets no reply but is still acked
    d = g.device_client(gw, "t-002")
    ack = d.publish_wait(g.report_topic("t-002"), g.report_payload("n-1", {"temperature": 999}), 5)
    t.check(ack is not None, "unsubscribed device: PUBACK for a bad report")
    try:
        extra = d.read_packet(0.5)
    except g.Closed:
        extra = "closed"
    t.eq(extra, None, "unsubscribed device: no reply, connection open")

    # QoS 0 rejection: counted, nothing stored, connection open
    r0 = gw.metric("messages_rejected_total", reason="out_of_range")
    d.publish(g.report_topic("t-002"), g.report_payload("n-2", {"humidity": 101}), qos=0)
    t.check(g.wait_until(lambda: gw.metric("messages_rejected_total", reason="out_of_range")
                         == r0 + 1, 3), "QoS 0 bad report counted")
    t.check(d.ping(), "still connected after rejections")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE device='t-002' AND kind='property'"), 0,
         "t-002: nothing stored")

    # still fine afterwards
    ack = c.publish_wait(RT, g.report_payload("ok-2", {"mode": "comfort"}), 400)
    t.check(ack is not None and gw.scalar("SELECT count(*) FROM events WHERE msg_id='ok-2'") == 1,
            "valid report after the rejections: stored")
    c.disconnect()
    d.disconnect()
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")


g.run(main)

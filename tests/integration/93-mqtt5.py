# Proves MQTT 5 on the MQTT listener beside 3.1.1: CONNACK properties (receive maximum = max_inflight, maximum packet size, topic alias maximum, session expiry and server keep alive as granted, no subscription ids / shared subscriptions) seen by paho MQTTv5; mosquitto_pub -V 5 publishes (with content type and payload format) stored and refused with the reason code; reason codes as answers: PUBACK 0x99 / 0x90 with a reason string naming the rejected path, PUBACK 0x87 on an ACL violation without a disconnect, CONNACK 0x86 / 0x87 / 0x85 / 0x8C; payload format indicator and content type checked against the codec; inbound topic aliases; SUBACK 0x87 and UNSUBACK 0x11; server DISCONNECT 0x8E (take-over), 0x8D (keep alive), 0x95 (packet too large), 0x8B (shutdown); the client's maximum packet size and Request Problem Information honoured; DISCONNECT 0x04 keeps the will; 3.1.1 answers unchanged.
import json
import subprocess
import threading
import time

import gwtest as g
import mqtt5lib as m5

DEV, DEV2 = "t-001", "t-002"
TOPIC = g.report_topic(DEV)
MAX_INFLIGHT, MAX_PACKET, ALIAS_MAX, EXPIRY_MAX, KA_MAX = 50, 4096, 4, 60, 30


def stored(gw, msg_id):
    return gw.scalar("SELECT count(*) FROM events WHERE msg_id=?", (msg_id,))


def wait_stored(gw, msg_id, n=1):
    return g.wait_until(lambda: stored(gw, msg_id) >= n, 5)


def paho5_connack(t, gw):
    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties
    got = {}
    ev = threading.Event()
    c = mqtt.Client(client_id=DEV, protocol=mqtt.MQTTv5)
    c.username_pw_set("thermo", g.secret_of(DEV))

    def on_connect(cl, ud, flags, rc, properties=None):
        got["rc"] = rc.value if hasattr(rc, "value") else rc
        got["props"] = properties
        ev.set()

    c.on_connect = on_connect
    cp = Properties(PacketTypes.CONNECT)
    cp.SessionExpiryInterval = 0xFFFFFFFF
    cp.ReceiveMaximum = 10
    c.connect(g.HOST, gw.mqtt_port, keepalive=0, clean_start=True, properties=cp)
    c.loop_start()
    ev.wait(5 * g.SLOW)
    try:
        if not t.check(got.get("rc") == 0, "paho MQTTv5 connects (CONNACK 0)", got):
            return
        p = got["props"]
        t.eq(getattr(p, "ReceiveMaximum", None), MAX_INFLIGHT,
             "CONNACK receive maximum = max_inflight")
        t.eq(getattr(p, "MaximumPacketSize", None), MAX_PACKET, "CONNACK maximum packet size")
        t.eq(getattr(p, "TopicAliasMaximum", None), ALIAS_MAX, "CONNACK topic alias maximum")
        t.eq(getattr(p, "SessionExpiryInterval", None), EXPIRY_MAX,
             "CONNACK session expiry: 0xFFFFFFFF asked, session_expiry_s granted")
        t.eq(getattr(p, "ServerKeepAlive", None), KA_MAX,
             "CONNACK server keep alive (keepalive 0 asked)")
        t.eq(getattr(p, "SubscriptionIdentifierAvailable", None), 0, "no subscription identifiers")
        t.eq(getattr(p, "SharedSubscriptionAvailable", None), 0, "no shared subscriptions")
        # a report through paho v5 with properties (user property, content type) is stored
        pp = Properties(PacketTypes.PUBLISH)
        pp.ContentType = "application/json"
        pp.PayloadFormatIndicator = 1
        pp.UserProperty = ("k", "v")
        info = c.publish(TOPIC, g.report_payload("p5-1", {"temperature": 21.5}), qos=1,
                         properties=pp)
        info.wait_for_publish(5 * g.SLOW)
        t.check(wait_stored(gw, "p5-1"), "paho v5 report with properties stored")
    finally:
        g.paho_stop(c)


def mosquitto_pub(gw, dev, topic, payload, *extra):
    cmd = ["mosquitto_pub", "-V", "5", "-h", g.HOST, "-p", str(gw.mqtt_port), "-i", dev,
           "-u", "thermo", "-P", g.secret_of(dev), "-q", "1", "-t", topic, "-m", payload] + \
        list(extra)
    return subprocess.run(cmd, capture_output=True, text=True, timeout=10 * g.SLOW)


def main(t):
    gw = g.Gateway(n_devices=4, config={
        "log_rate_limit": 0,
        "adapters": {"mqtt": {"max_inflight": MAX_INFLIGHT, "max_packet_size": MAX_PACKET,
                              "topic_alias_maximum": ALIAS_MAX, "session_expiry_s": EXPIRY_MAX,
                              "keepalive_max_s": KA_MAX}}})
    m0 = gw.metrics()

    # ---- CONNACK properties (paho MQTTv5) ----
    paho5_connack(t, gw)

    # ---- mosquitto_pub -V 5 ----
    r = mosquitto_pub(gw, DEV, TOPIC, g.report_payload("mp-1", {"temperature": 20}),
                      "-D", "publish", "content-type", "application/json",
                      "-D", "publish", "payload-format-indicator", "1")
    t.eq(r.returncode, 0, "mosquitto_pub -V 5 with content type and payload format: exit 0")
    t.check(wait_stored(gw, "mp-1"), "mosquitto_pub -V 5 report stored")
    r = mosquitto_pub(gw, DEV, TOPIC, g.report_payload("mp-2", {"temperature": 20}),
                      "-D", "publish", "content-type", "application/octet-stream")
    t.check("Payload format invalid" in r.stderr and "does not match codec json" in r.stderr,
            "mosquitto_pub -V 5 with a binary content type: told 0x99 and the reason string",
            r.stderr.strip())
    t.eq(stored(gw, "mp-2"), 0, "... not stored")
    r = subprocess.run(["mosquitto_pub", "-V", "5", "-h", g.HOST, "-p", str(gw.mqtt_port),
                        "-i", DEV, "-u", "thermo", "-P", "wrong", "-t", TOPIC, "-m", "{}"],
                       capture_output=True, text=True, timeout=10 * g.SLOW)
    t.check(r.returncode != 0 and "bad user name or password" in (r.stderr + r.stdout).lower(),
            "mosquitto_pub -V 5 wrong secret: refused (bad user name or password)",
            (r.returncode, r.stderr.strip()))

    # ---- reason codes on PUBLISH ----
    c = m5.client5(gw, DEV)
    a = c.pub_wait(TOPIC, g.report_payload("r-ok", {"temperature": 20}), 1)
    t.eq(a and a[1], 0, "valid report: PUBACK 0")
    a = c.pub_wait(TOPIC, g.report_payload("r-range", {"temperature": 300}), 2)
    t.eq(a and a[1], 0x99, "report out of the thing model: PUBACK 0x99")
    rs = a and a[2].get(m5.REASON_STRING, "")
    t.check(rs and "temperature" in rs, "... with a reason string naming the path", rs)
    a = c.pub_wait(TOPIC, g.report_payload("r-unk", {"nosuch": 1}), 3)
    t.eq(a and a[1], 0x99, "unknown property: PUBACK 0x99")
    t.check(a and "nosuch" in a[2].get(m5.REASON_STRING, ""), "... reason string names it",
            a and a[2])
    a = c.pub_wait("/thermo/t-001/foo/bar", "{}", 4)
    t.eq(a and a[1], 0x90, "not an upload topic: PUBACK 0x90 (topic name invalid)")
    t.check(a and m5.REASON_STRING in a[2], "... with a reason string", a and a[2])
    a = c.pub_wait(TOPIC, "{not json", 5)
    t.eq(a and a[1], 0x99, "undecodable payload: PUBACK 0x99")
    a = c.pub_wait(g.report_topic(DEV2), g.report_payload("r-acl", {"temperature": 1}), 6)
    t.eq(a and a[1], 0x87, "another device's topic: PUBACK 0x87 (not authorized)")
    t.check(c.ping(), "... and the connection stays open (no disconnect under MQTT 5)")
    a = c.pub_wait(g.report_topic(DEV2), "{}", 7, ptype=g.PUBREC, qos=2)
    t.eq(a and a[1], 0x87, "QoS 2 on another device's topic: PUBREC 0x87")
    a = c.pub_wait(TOPIC, g.report_payload("r-q2", {"temperature": 300}), 8, ptype=g.PUBREC,
                   qos=2)
    t.eq(a and a[1], 0x99, "QoS 2 report out of range: PUBREC 0x99")
    t.eq(stored(gw, "r-range") + stored(gw, "r-acl") + stored(gw, "r-q2"), 0,
         "refused reports are not stored")

    # ---- payload format indicator / content type against the codec ----
    a = c.pub_wait(TOPIC, b'{"messageId":"pf-bad","properties":{"label":"\xff"}}', 9,
                   [(m5.PAYLOAD_FORMAT, 1)])
    t.eq(a and a[1], 0x99, "payload format 1 with a non-UTF-8 payload: PUBACK 0x99")
    a = c.pub_wait(TOPIC, g.report_payload("ct-bin", {"temperature": 1}), 10,
                   [(m5.CONTENT_TYPE, "application/x-protobuf")])
    t.eq(a and a[1], 0x99, "content type protobuf on a json product: PUBACK 0x99")
    t.check(a and "content type" in a[2].get(m5.REASON_STRING, ""), "... reason says why",
            a and a[2])
    a = c.pub_wait(TOPIC, g.report_payload("ct-ok", {"temperature": 1}), 11,
                   [(m5.CONTENT_TYPE, "application/json; charset=utf-8"), (m5.PAYLOAD_FORMAT, 1)])
    t.eq(a and a[1], 0, "content type application/json; charset=utf-8: PUBACK 0")
    t.check(wait_stored(gw, "ct-ok"), "... stored")

    # ---- topic aliases inbound ----
    a = c.pub_wait(TOPIC, g.report_payload("al-1", {"temperature": 2}), 12, [(m5.TOPIC_ALIAS, 3)])
    t.eq(a and a[1], 0, "topic + alias 3: PUBACK 0")
    a = c.pub_wait("", g.report_payload("al-2", {"temperature": 3}), 13, [(m5.TOPIC_ALIAS, 3)])
    t.eq(a and a[1], 0, "empty topic + alias 3: PUBACK 0")
    t.check(wait_stored(gw, "al-2"), "the aliased report is stored on the aliased topic")
    a = c.pub_wait(g.event_topic(DEV, "boot"), g.event_payload("al-3", {}), 14,
                   [(m5.TOPIC_ALIAS, 3)])
    t.eq(a and a[1], 0, "alias 3 re-pointed at an event topic: PUBACK 0")
    a = c.pub_wait("", g.event_payload("al-4", {}), 15, [(m5.TOPIC_ALIAS, 3)])
    t.eq(a and a[1], 0, "empty topic + alias 3: PUBACK 0")
    t.check(g.wait_until(lambda: gw.scalar("SELECT kind FROM events WHERE msg_id='al-4'") ==
                         "event", 5), "... stored as an event (the alias follows the new topic)")

    a = c.pub_wait(g.report_topic(DEV2), "{}", 16, [(m5.TOPIC_ALIAS, 4)])
    t.eq(a and a[1], 0x87, "alias 4 set on another device's topic: PUBACK 0x87")
    a = c.pub_wait("", "{}", 17, [(m5.TOPIC_ALIAS, 4)])
    t.eq(a and a[1], 0x87, "... and its later use: 0x87 again (the topic is not kept)")

    # ---- SUBSCRIBE / UNSUBSCRIBE reason codes ----
    c.send(m5.subscribe5(20, [(TOPIC + "/reply", 1), ("/thermo/t-002/#", 0)]))
    p = c.expect(g.SUBACK)
    t.eq(p and m5.suback5(p)[2], [1, 0x87], "SUBACK: granted QoS 1, another device 0x87")
    # a refused report, subscribed to <topic>/reply: PUBACK 0x99 and a v5 PUBLISH (property block)
    c.publishes.clear()
    a = c.pub_wait(TOPIC, g.report_payload("rr-1", {"temperature": 300}), 19)
    t.eq(a and a[1], 0x99, "refused report while subscribed to /reply: PUBACK 0x99")
    if not c.publishes:
        p = c.expect(g.PUBLISH, 5, skip_publish=False)
        if p is not None:
            c.publishes.append(p)
    rep = None
    if c.publishes:
        topic, _, _, pr, body = m5.publish5_fields(c.publishes[0])
        rep = (topic, json.loads(body))
    t.check(rep and rep[0] == TOPIC + "/reply" and rep[1].get("success") is False and
            rep[1].get("code") == "out_of_range",
            "... and the reply on <topic>/reply parses as an MQTT 5 PUBLISH", rep)
    c.send(m5.unsubscribe5(21, [TOPIC + "/reply", "/thermo/t-001/none"]))
    p = c.expect(g.UNSUBACK)
    t.eq(p and m5.suback5(p)[2], [0x00, 0x11], "UNSUBACK: 0x00, then 0x11 (no subscription)")

    # ---- take-over: the old connection gets DISCONNECT 0x8E ----
    c2 = m5.client5(gw, DEV)
    d = c.next_disconnect(5)
    t.eq(d and d[0], 0x8E, "take-over: DISCONNECT 0x8E (session taken over) to the old one")
    c.close()
    c2.send(m5.disconnect5(0))
    c2.close()

    # ---- CONNACK refusals ----
    x = m5.Client5(gw.mqtt_port)
    r = x.connect5(DEV, secret="wrong")
    t.eq(r and r[1], 0x86, "wrong secret: CONNACK 0x86")
    t.check(r and m5.REASON_STRING in r[2], "... with a reason string", r)
    x.close()
    x = m5.Client5(gw.mqtt_port)
    r = x.connect5("t-999", secret="x")
    t.eq(r and r[1], 0x87, "unknown device: CONNACK 0x87")
    x.close()
    x = m5.Client5(gw.mqtt_port)
    x.send(m5.connect5("", "thermo", "x"))
    p = x.read_packet()
    t.eq(p and m5.connack5(p)[1], 0x85, "empty client id: CONNACK 0x85")
    x.close()
    x = m5.Client5(gw.mqtt_port)
    r = x.connect5(DEV, cprops=[(m5.AUTH_METHOD, "SCRAM-SHA-1")])
    t.eq(r and r[1], 0x8C, "enhanced authentication asked: CONNACK 0x8C (bad auth method)")
    x.close()

    x = m5.Client5(gw.mqtt_port)
    r = x.connect5(DEV, will=(g.event_topic(DEV, "boot"), "{}"),
                   will_props=m5.props((m5.CONTENT_TYPE, "application/x-protobuf")))
    t.eq(r and r[1], 0x99, "will content type not the codec's: CONNACK 0x99")
    x.close()

    # ---- the client's maximum packet size and Request Problem Information ----
    c = m5.client5(gw, DEV, cprops=[(m5.MAX_PACKET_SIZE, 16)])
    c.send(m5.publish5(TOPIC, g.report_payload("mps", {"temperature": 300}), 1, 30))
    p = c.expect(g.PUBACK)
    t.check(p and len(p.body) + 2 <= 16 and m5.ack5(p)[1] == 0x99,
            "client maximum packet size 16: PUBACK 0x99 without the reason string", p)
    c.close()
    c = m5.client5(gw, DEV, cprops=[(m5.REQUEST_PROBLEM_INFO, 0)])
    a = c.pub_wait(TOPIC, g.report_payload("rpi", {"temperature": 300}), 31)
    t.check(a and a[1] == 0x99 and m5.REASON_STRING not in a[2],
            "Request Problem Information 0: PUBACK 0x99 without a reason string", a)

    # ---- packet too large: DISCONNECT 0x95 ----
    c.send(m5.publish5(TOPIC, g.report_payload("big", {"note": "x" * 5000}), 1, 32))
    d = c.next_disconnect(5)
    t.eq(d and d[0], 0x95, "packet over max_packet_size: DISCONNECT 0x95")
    c.close()

    # ---- keep alive timeout: DISCONNECT 0x8D ----
    c = m5.client5(gw, DEV, keepalive=1)
    t0 = time.monotonic()
    d = c.next_disconnect(5)
    t.eq(d and d[0], 0x8D, "keep alive 1 s expired: DISCONNECT 0x8D")
    t.info("keep-alive DISCONNECT after %.2f s" % (time.monotonic() - t0))
    c.close()

    # ---- DISCONNECT 0x04 (or any code but 0x00) keeps the will; 0x00 drops it ----
    will = (g.event_topic(DEV, "boot"), g.event_payload("will-04", {}))
    c = m5.client5(gw, DEV, will=will)
    c.send(m5.disconnect5(0x04))
    c.close()
    t.check(wait_stored(gw, "will-04"), "DISCONNECT 0x04: the will is applied")
    will80 = (g.event_topic(DEV, "boot"), g.event_payload("will-80", {}))
    c = m5.client5(gw, DEV, will=will80)
    c.send(m5.disconnect5(0x80))
    c.close()
    t.check(wait_stored(gw, "will-80"), "DISCONNECT 0x80 (unspecified error): the will is applied")
    will0 = (g.event_topic(DEV, "boot"), g.event_payload("will-00", {}))
    c = m5.client5(gw, DEV, will=will0)
    c.send(m5.disconnect5(0x00))
    c.close()
    c = m5.client5(gw, DEV)  # a later connection: the first one is certainly gone
    t.check(c.ping(), "reconnect after a normal DISCONNECT")
    t.eq(stored(gw, "will-00"), 0, "DISCONNECT 0x00: no will")
    c.close()

    # ---- 3.1.1 unchanged: a refused report gets the 4-byte PUBACK, ACL still disconnects ----
    c3 = g.device_client(gw, DEV2)
    c3.send(g.publish_packet(g.report_topic(DEV2), g.report_payload("v4", {"temperature": 300}),
                             1, 40))
    p = c3.expect(g.PUBACK)
    t.check(p and len(p.body) == 2, "3.1.1 refused report: plain PUBACK (no reason code)", p)
    c3.send(g.publish_packet(TOPIC, "{}", 1, 41))
    t.check(c3.wait_closed(3), "3.1.1 ACL violation: closed as before")
    c3.close()

    m1 = gw.metrics()
    dv5 = g.metric_delta(m0, m1, 'mqtt_connects_total{version="5"}')
    t.check(dv5 >= 10, "mqtt_connects_total{version=5} counts v5 connections", dv5)
    dref = g.metric_delta(m0, m1, "mqtt5_publish_refused_total")
    t.check(dref >= 10, "mqtt5_publish_refused_total counts error reason codes", dref)

    # ---- shutdown: DISCONNECT 0x8B ----
    c = m5.client5(gw, DEV)
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")
    d = c.next_disconnect(5)
    t.eq(d and d[0], 0x8B, "gateway shutdown: DISCONNECT 0x8B (server shutting down)")
    c.close()


g.run(main)

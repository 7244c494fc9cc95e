# Proves malformed MQTT 5 input (a table of raw packets: bad property ids, duplicates, properties in the wrong packet, out-of-range values, topic alias 0 or above the maximum, bad UTF-8 in property strings, oversize...) is answered with the right reason code (CONNACK before the session, DISCONNECT after), the connection closed, counted under the right mqtt_protocol_errors_total label and logged with its reason code; the gateway keeps serving MQTT 5 and 3.1.1 afterwards.
import struct

import gwtest as g
import mqtt5lib as m5

DEV = "t-001"
TOPIC = g.report_topic(DEV)
REPORT = g.report_payload("m-1", {"temperature": 1})
P = m5.props
ALIAS_MAX = 2


def connect_raw(pb):
    """A v5 CONNECT of DEV whose property block is pb (raw bytes)."""
    return m5.device_connect5(DEV, raw_props=pb)


def publish_raw(pb, topic=TOPIC, qos=1):
    return m5.publish5(topic, REPORT, qos, 1 if qos else None, raw_props=pb)


# (name, connect first?, bytes, expected packet type, reason code, error labels)
CASES = [
    # CONNECT: answered with CONNACK <rc>
    ("CONNECT unknown property id 0x7F", False, connect_raw(b"\x02\x7f\x00"), g.CONNACK, 0x81,
     {"bad_property"}),
    ("CONNECT property id 0", False, connect_raw(b"\x02\x00\x00"), g.CONNACK, 0x81,
     {"bad_property"}),
    ("CONNECT duplicate session expiry", False,
     connect_raw(P((m5.SESSION_EXPIRY, 1), (m5.SESSION_EXPIRY, 2))), g.CONNACK, 0x82,
     {"bad_property"}),
    ("CONNECT duplicate receive maximum", False,
     connect_raw(P((m5.RECEIVE_MAX, 1), (m5.RECEIVE_MAX, 1))), g.CONNACK, 0x82, {"bad_property"}),
    ("CONNECT topic alias (PUBLISH-only property)", False, connect_raw(P((m5.TOPIC_ALIAS, 1))),
     g.CONNACK, 0x81, {"bad_property"}),
    ("CONNECT reason string (server-only property)", False,
     connect_raw(P((m5.REASON_STRING, "x"))), g.CONNACK, 0x81, {"bad_property"}),
    ("CONNECT receive maximum 0", False, connect_raw(P((m5.RECEIVE_MAX, 0))), g.CONNACK, 0x82,
     {"bad_property"}),
    ("CONNECT maximum packet size 0", False, connect_raw(P((m5.MAX_PACKET_SIZE, 0))), g.CONNACK,
     0x82, {"bad_property"}),
    ("CONNECT request problem information 2", False,
     connect_raw(P((m5.REQUEST_PROBLEM_INFO, 2))), g.CONNACK, 0x82, {"bad_property"}),
    ("CONNECT property length past the packet", False, connect_raw(b"\x20\x11\x00"), g.CONNACK,
     0x81, {"bad_property", "malformed_packet"}),
    ("CONNECT property value cut by its length", False, connect_raw(b"\x03\x11\x00\x00\x00\x01"),
     g.CONNACK, 0x81, {"bad_property"}),
    ("CONNECT user property with bad UTF-8", False,
     connect_raw(b"\x07\x26\x00\x01\xff\x00\x01a"), g.CONNACK, 0x81, {"invalid_utf8"}),
    ("CONNECT will with a topic alias", False,
     m5.device_connect5(DEV, will=(g.event_topic(DEV, "boot"), "{}"),
                        will_props=P((m5.TOPIC_ALIAS, 1))), g.CONNACK, 0x81, {"bad_property"}),
    ("CONNECT will content type bad UTF-8", False,
     m5.device_connect5(DEV, will=(g.event_topic(DEV, "boot"), "{}"),
                        will_props=b"\x04\x03\x00\x01\xc0"), g.CONNACK, 0x81, {"invalid_utf8"}),
    ("CONNECT invalid UTF-8 client id", False, m5.connect5(b"t-\xff", "thermo", "x"), g.CONNACK,
     0x81, {"invalid_utf8"}),
    # after CONNACK: DISCONNECT <rc>
    ("PUBLISH unknown property id", True, publish_raw(b"\x02\x50\x00"), g.DISCONNECT, 0x81,
     {"bad_property"}),
    ("PUBLISH duplicate payload format", True,
     publish_raw(P((m5.PAYLOAD_FORMAT, 0), (m5.PAYLOAD_FORMAT, 0))), g.DISCONNECT, 0x82,
     {"bad_property"}),
    ("PUBLISH duplicate topic alias", True,
     publish_raw(P((m5.TOPIC_ALIAS, 1), (m5.TOPIC_ALIAS, 1))), g.DISCONNECT, 0x82,
     {"bad_property"}),
    ("PUBLISH session expiry (CONNECT property)", True, publish_raw(P((m5.SESSION_EXPIRY, 1))),
     g.DISCONNECT, 0x81, {"bad_property"}),
    ("PUBLISH payload format 2", True, publish_raw(P((m5.PAYLOAD_FORMAT, 2))), g.DISCONNECT,
     0x82, {"bad_property"}),
    ("PUBLISH subscription identifier from a client", True,
     publish_raw(P((m5.SUBSCRIPTION_ID, 1))), g.DISCONNECT, 0x82, {"bad_property"}),
    ("PUBLISH response topic with a wildcard", True, publish_raw(P((m5.RESPONSE_TOPIC, "a/#"))),
     g.DISCONNECT, 0x82, {"bad_property"}),
    ("PUBLISH content type bad UTF-8", True, publish_raw(b"\x04\x03\x00\x01\xff"), g.DISCONNECT,
     0x81, {"invalid_utf8"}),
    ("PUBLISH property length past the packet", True, publish_raw(b"\x7f"), g.DISCONNECT, 0x81,
     {"bad_property", "malformed_packet"}),
    ("PUBLISH topic alias 0", True, publish_raw(P((m5.TOPIC_ALIAS, 0))), g.DISCONNECT, 0x94,
     {"topic_alias_invalid"}),
    ("PUBLISH topic alias above the maximum", True,
     publish_raw(P((m5.TOPIC_ALIAS, ALIAS_MAX + 1))), g.DISCONNECT, 0x94,
     {"topic_alias_invalid"}),
    ("PUBLISH empty topic without an alias", True, publish_raw(P(), topic=""), g.DISCONNECT,
     0x82, {"protocol_error"}),
    ("PUBLISH empty topic, alias never set", True, publish_raw(P((m5.TOPIC_ALIAS, 1)), topic=""),
     g.DISCONNECT, 0x82, {"protocol_error"}),
    ("PUBLISH QoS 3", True, g.packet(g.PUBLISH, 0x6, g.enc_str(TOPIC) + b"\x00\x01\x00{}"),
     g.DISCONNECT, 0x81, {"malformed_packet"}),
    ("PUBLISH invalid UTF-8 topic", True, publish_raw(P(), topic=b"/thermo/t-001/\xff"),
     g.DISCONNECT, 0x81, {"invalid_utf8"}),
    ("PUBLISH over max_packet_size", True,
     m5.publish5(TOPIC, g.report_payload("big", {"note": "x" * 5000}), 1, 1), g.DISCONNECT, 0x95,
     {"oversized_packet"}),
    ("SUBSCRIBE reserved option bits", True, m5.subscribe5(1, [(TOPIC + "/reply", 0xC1)]),
     g.DISCONNECT, 0x82, {"malformed_packet"}),
    ("SUBSCRIBE retain handling 3", True, m5.subscribe5(1, [(TOPIC + "/reply", 0x31)]),
     g.DISCONNECT, 0x82, {"malformed_packet"}),
    ("SUBSCRIBE subscription identifier (not available)", True,
     m5.subscribe5(1, [(TOPIC + "/reply", 1)], [(m5.SUBSCRIPTION_ID, 5)]), g.DISCONNECT, 0xA1,
     {"protocol_error"}),
    ("SUBSCRIBE topic alias property", True,
     m5.subscribe5(1, [(TOPIC + "/reply", 1)], [(m5.TOPIC_ALIAS, 1)]), g.DISCONNECT, 0x81,
     {"bad_property"}),
    ("SUBSCRIBE properties and no filter", True, g.packet(g.SUBSCRIBE, 2, b"\x00\x01\x00"),
     g.DISCONNECT, 0x81, {"malformed_packet"}),
    ("UNSUBSCRIBE reason string property", True,
     m5.unsubscribe5(1, [TOPIC + "/reply"], raw_props=P((m5.REASON_STRING, "x"))), g.DISCONNECT,
     0x81, {"bad_property"}),
    ("PUBACK with a bad property", True, g.packet(g.PUBACK, 0, b"\x00\x01\x00\x02\x23\x00"),
     g.DISCONNECT, 0x81, {"malformed_packet"}),
    ("DISCONNECT with a topic alias property", True,
     g.packet(g.DISCONNECT, 0, b"\x00" + P((m5.TOPIC_ALIAS, 1))), g.DISCONNECT, 0x81,
     {"bad_property"}),
    ("DISCONNECT raising session expiry from 0", True,
     m5.disconnect5(0, [(m5.SESSION_EXPIRY, 60)]), g.DISCONNECT, 0x82, {"protocol_error"}),
    ("AUTH packet (no enhanced authentication)", True, b"\xf0\x00", g.DISCONNECT, 0x82,
     {"protocol_error"}),
    ("AUTH packet with bad flags", True, b"\xf1\x00", g.DISCONNECT, 0x81, {"malformed_packet"}),
    ("second CONNECT", True, m5.device_connect5(DEV), g.DISCONNECT, 0x82, {"connect_twice"}),
    ("CONNACK from a client", True, b"\x20\x03\x00\x00\x00", g.DISCONNECT, 0x82,
     {"server_only_packet"}),
]


def main(t):
    gw = g.Gateway(n_devices=3, config={
        "log_rate_limit": 0,
        "adapters": {"mqtt": {"max_packet_size": 4096, "topic_alias_maximum": ALIAS_MAX}}})
    for name, connect_first, data, ptype, rc, kinds in CASES:
        before = m5.proto_errors(gw.metrics())
        mark = gw.log_mark()
        c = m5.Client5(gw.mqtt_port)
        got = None
        try:
            if connect_first:
                r = c.connect5(DEV)
                if not t.check(r is not None and r[1] == 0, "%s: CONNECT first" % name, r):
                    continue
            c.try_send(data)
            try:
                p = c.read_packet(3)
                while p is not None and p.type not in (g.CONNACK, g.DISCONNECT):
                    p = c.read_packet(3)
            except g.Closed:
                p = None
            if p is not None:
                got = (p.type, m5.connack5(p)[1] if p.type == g.CONNACK else m5.disconnect_rc(p)[0])
            t.eq(got, (ptype, rc), "%s: %s 0x%02x" % (name, g.PT_NAMES[ptype], rc))
            closed = c.wait_closed(3)
            t.check(closed, "%s: connection closed" % name)
        finally:
            c.close()

        def rose():
            after = m5.proto_errors(gw.metrics())
            d = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
            d = {k: v for k, v in d.items() if v}
            return d if d else None
        d = g.wait_until(rose, 3) or {}
        ok = len(d) == 1 and list(d.values())[0] == 1 and list(d)[0] in kinds
        t.check(ok, "%s: mqtt_protocol_errors_total{error in %s} +1" % (name, sorted(kinds)), d)
        logged = g.wait_until(lambda: gw.find_log(mark, msg="protocol error; closing",
                                                  reason_code="0x%02x" % rc), 3)
        t.check(logged, "%s: logged with reason_code=0x%02x" % (name, rc))

    # the gateway still serves both protocol versions
    c = m5.client5(gw, DEV)
    a = c.pub_wait(TOPIC, g.report_payload("after", {"temperature": 5}), 1)
    t.eq(a and a[1], 0, "after the suite: an MQTT 5 report is acknowledged 0")
    c.close()
    c = g.device_client(gw, "t-002")
    p = c.publish_wait(g.report_topic("t-002"), g.report_payload("after4", {"temperature": 5}), 1)
    t.check(p is not None, "after the suite: a 3.1.1 report is acknowledged")
    c.disconnect()
    t.check(g.wait_until(lambda: gw.scalar(
        "SELECT count(*) FROM events WHERE msg_id IN ('after','after4')") == 2, 5),
        "both stored")
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")


g.run(main)

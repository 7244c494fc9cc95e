# Proves malformed MQTT input (table-driven raw bytes) closes the connection with the right protocol-error counter, connect timeouts fire, and the gateway keeps serving with an intact database.
import json
import socket
import struct
import time

import gwtest as g

DEV = "t-001"
TOPIC = g.report_topic(DEV)
PAYLOAD = g.report_payload("m-1", {"temperature": 1})


def raw_publish(topic_bytes, payload=b"{}", flags=0):
    body = struct.pack("!H", len(topic_bytes)) + topic_bytes + payload
    return g.packet(g.PUBLISH, flags, body)


# (name, connect first?, bytes, acceptable error kinds)
CASES = [
    ("5-byte remaining length", True, b"\x30\xff\xff\xff\xff\x01" + b"\x00" * 8,
     {"bad_remaining_length"}),
    ("invalid UTF-8 topic", True, raw_publish(b"/thermo/t-001/\xff\xfe/report"), {"invalid_utf8"}),
    ("overlong UTF-8 in topic", True, raw_publish(b"/thermo/t-001/\xc0\xafx"), {"invalid_utf8"}),
    ("UTF-16 surrogate in topic", True, raw_publish(b"/thermo/t-001/\xed\xa0\x80"),
     {"invalid_utf8"}),
    ("NUL in topic", True, raw_publish(b"/thermo/t-001/prop\x00erties/report"), {"invalid_utf8"}),
    ("'#' in PUBLISH topic", True, g.publish_packet("/thermo/t-001/properties/#", "{}"),
     {"wildcard_topic"}),
    ("'+' in PUBLISH topic", True, g.publish_packet("/thermo/+/properties/report", "{}"),
     {"wildcard_topic"}),
    ("zero-length topic", True, raw_publish(b"", b"{}"), {"wildcard_topic", "malformed_packet"}),
    ("QoS 3", True, g.packet(g.PUBLISH, 0x6, g.enc_str(TOPIC) + b"\x00\x01{}"),
     {"malformed_packet"}),
    ("topic length beyond packet", True, g.packet(g.PUBLISH, 0, b"\x00\x40/thermo"),
     {"malformed_packet"}),
    ("PUBLISH before CONNECT", False, g.publish_packet(TOPIC, PAYLOAD), {"packet_before_connect"}),
    ("SUBSCRIBE before CONNECT", False, g.subscribe_packet(1, [(TOPIC + "/reply", 0)]),
     {"packet_before_connect"}),
    ("PINGREQ before CONNECT", False, g.PINGREQ_PKT, {"packet_before_connect"}),
    ("second CONNECT", True, g.device_connect_packet(DEV), {"connect_twice"}),
    ("CONNACK from client", True, b"\x20\x02\x00\x00", {"server_only_packet"}),
    ("SUBACK from client", True, b"\x90\x03\x00\x01\x00", {"server_only_packet"}),
    ("UNSUBACK from client", True, b"\xb0\x02\x00\x01", {"server_only_packet"}),
    ("PINGRESP from client", True, b"\xd0\x00", {"server_only_packet"}),
    ("SUBSCRIBE with no topics", True, b"\x82\x02\x00\x01", {"malformed_packet"}),
    ("SUBSCRIBE with wrong flags", True,
     b"\x80" + g.subscribe_packet(1, [(TOPIC + "/reply", 0)])[1:], {"malformed_packet"}),
    ("SUBSCRIBE requesting QoS 3", True, g.subscribe_packet(1, [(TOPIC + "/reply", 3)]),
     {"malformed_packet"}),
    ("UNSUBSCRIBE with no topics", True, b"\xa2\x02\x00\x01", {"malformed_packet"}),
    ("reserved packet type 0", True, b"\x00\x00", {"malformed_packet"}),
    ("reserved packet type 15", True, b"\xf0\x00", {"malformed_packet"}),
    ("CONNECT with reserved flag bit", False,
     g.device_connect_packet(DEV, flags_override=0xC3), {"malformed_packet"}),
    ("CONNECT with invalid UTF-8 client id", False,
     g.connect_packet(b"t-\xff\xfe", "thermo", "x"), {"invalid_utf8"}),
    ("CONNECT with bad protocol name", False,
     g.connect_packet(DEV, "thermo", g.secret_of(DEV), proto=b"HTTP"),
     {"bad_protocol", "malformed_packet"}),
    ("packet over max_packet_size", True,
     g.publish_packet(TOPIC, g.report_payload("big", {"label": "x" * 5000})), {"oversized_packet"}),
    ("header announcing 1 MB (rest never sent)", True, b"\x30" + g.enc_varint(1 << 20),
     {"oversized_packet"}),
]


def proto_errors(m):
    return {k[len('mqtt_protocol_errors_total{error="'):-2]: v for k, v in m.items()
            if k.startswith('mqtt_protocol_errors_total{')}


def offline_rows(gw):
    return gw.query("SELECT name FROM events WHERE device=? AND kind='offline' ORDER BY id", (DEV,))


def main(t):
    gw = g.Gateway(n_devices=3, config={"adapters": {"mqtt": {"max_packet_size": 4096,
                                                              "connect_timeout_ms": 1000}}})
    total = 0
    for name, connect_first, data, kinds in CASES:
        before = proto_errors(gw.metrics())
        n_off = len(offline_rows(gw))
        c = g.RawClient(gw.mqtt_port)
        try:
            if connect_first:
                rc = c.connect_device(DEV)
                if not t.eq(rc, 0, "%s: CONNECT first" % name):
                    continue
            c.try_send(data)
            t0 = time.monotonic()
            closed = c.wait_closed(3)
            t.check(closed, "%s: connection closed" % name,
                    "" if closed else "still open after 3 s")
            if name.startswith("header announcing"):
                t.check(time.monotonic() - t0 < 2.0 * g.SLOW,
                        "%s: closed on the header, without waiting for the body" % name)
        finally:
            c.close()

        def rose():
            after = proto_errors(gw.metrics())
            d = {k: after.get(k, 0) - before.get(k, 0) for k in set(after) | set(before)}
            d = {k: v for k, v in d.items() if v}
            return d if d else None
        d = g.wait_until(rose, 3) or {}
        total += 1
        ok = len(d) == 1 and list(d.values())[0] == 1 and list(d)[0] in kinds
        t.check(ok, "%s: mqtt_protocol_errors_total{error in %s} +1" % (name, sorted(kinds)), d)
        if connect_first:
            rows = g.wait_until(lambda: len(offline_rows(gw)) > n_off and offline_rows(gw), 3)
            t.check(rows and rows[-1][0] == "protocol_error",
                    "%s: offline event reason protocol_error" % name, rows and rows[-1:])

    # remaining length announcing more than sent, then the client closes: nothing stored,
    # offline connection_lost, no crash
    n_off = len(offline_rows(gw))
    c = g.device_client(gw, DEV)
    c.send(b"\x32\x64" + g.enc_str(TOPIC) + b"\x00\x07" + b'{"messageId":"half"')
    time.sleep(0.05)  # let the partial packet arrive before the close (not a condition wait)
    c.close()
    rows = g.wait_until(lambda: len(offline_rows(gw)) > n_off and offline_rows(gw), 3)
    t.check(rows and rows[-1][0] == "connection_lost",
            "truncated packet then close: offline connection_lost", rows and rows[-1:])
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE msg_id='half'"), 0,
         "truncated packet: nothing stored")

    # not malformed: packets split across TCP segments are reassembled (control for the above)
    for split in (1, 2, 7):
        s = g.RawClient(gw.mqtt_port)
        pkt = g.device_connect_packet("t-003")
        s.send(pkt[:split])
        time.sleep(0.1)  # make the two parts arrive in separate reads (not a condition wait)
        s.send(pkt[split:])
        try:
            p = s.read_packet(2)
        except g.Closed:
            p = None
        ok = p is not None and p.type == g.CONNACK and p.rc == 0
        t.check(ok, "CONNECT split after %d byte(s): CONNACK 0" % split, p or "closed")
        if ok:
            pub = g.publish_packet(g.report_topic("t-003"),
                                   g.report_payload("split-%d" % split, {"humidity": split}), 1, 9)
            s.send(pub[:split])
            time.sleep(0.1)  # separate reads, as above (not a condition wait)
            s.send(pub[split:])
            try:
                p = s.expect(g.PUBACK, 2)
            except g.Closed:
                p = None
            t.check(p is not None and p.pid == 9, "PUBLISH split after %d byte(s): PUBACK" % split)
            s.disconnect()
        else:
            s.close()
        g.wait_until(lambda: gw.scalar("SELECT online FROM device_state WHERE device='t-003'")
                     != 1, 2)

    # connect timeout: TCP connected, nothing sent
    ct0 = gw.metric("mqtt_connect_timeouts_total")
    s = g.RawClient(gw.mqtt_port)
    t0 = time.monotonic()
    closed = s.wait_closed(4)
    dt = time.monotonic() - t0
    s.close()
    t.check(closed and 0.8 <= dt <= 2.5 * g.SLOW, "silent socket closed after connect_timeout_ms "
            "(1000)", "closed=%s after %.2f s" % (closed, dt))
    # connect timeout: one byte of CONNECT every 300 ms (never completes in time)
    s = g.RawClient(gw.mqtt_port)
    pkt = g.device_connect_packet(DEV)
    t0 = time.monotonic()
    closed = False
    for i in range(len(pkt)):
        if not s.try_send(pkt[i:i + 1]):
            closed = True
            break
        try:
            if s.read_packet(0.3 / g.SLOW) is not None:
                break  # answered: wrong
        except g.Closed:
            closed = True
            break
        if time.monotonic() - t0 > 4:
            break
    dt = time.monotonic() - t0
    s.close()
    t.check(closed and 0.8 <= dt <= 2.5 * g.SLOW, "trickled CONNECT closed after connect_timeout_ms",
            "closed=%s after %.2f s" % (closed, dt))
    t.check(g.wait_until(lambda: gw.metric("mqtt_connect_timeouts_total") == ct0 + 2, 3),
            "mqtt_connect_timeouts_total +2", gw.metric("mqtt_connect_timeouts_total") - ct0)

    # a packet exactly at max_packet_size is fine (4096 bytes on the wire incl. header)
    c = g.device_client(gw, DEV)
    base = g.publish_packet(TOPIC, g.report_payload("edge", {"label": ""}), 1, 77)
    pad = 4096 - len(base)
    pkt = g.publish_packet(TOPIC, g.report_payload("edge", {"label": ""}) + " " * pad, 1, 77)
    if len(pkt) != 4096:  # header grew by a byte
        pkt = g.publish_packet(TOPIC, g.report_payload("edge", {"label": ""})
                               + " " * (pad - (len(pkt) - 4096)), 1, 77)
    c.send(pkt)
    try:
        ack = c.expect(g.PUBACK, 3)
    except g.Closed:
        ack = None
    t.check(ack is not None and ack.pid == 77, "packet of exactly max_packet_size (%d B) accepted"
            % len(pkt))

    # after all that: a well-behaved device still reports; the gateway is alive; DB intact
    d = g.device_client(gw, "t-002")
    ack = d.publish_wait(g.report_topic("t-002"), g.report_payload("fine-1", {"temperature": 22}), 3)
    t.check(ack is not None and ack.pid == 3, "well-behaved device: PUBACK")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE msg_id='fine-1'"), 1,
         "well-behaved device: stored")
    t.check(gw.alive(), "gateway still running")
    t.eq(gw.query("PRAGMA integrity_check"), [("ok",)], "PRAGMA integrity_check ok")
    errs = sum(proto_errors(gw.metrics()).values())
    t.eq(errs, float(total), "mqtt_protocol_errors_total sums to the %d cases" % total)
    d.disconnect()
    c.disconnect()
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")


g.run(main)

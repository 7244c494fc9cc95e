# Proves the TCP adapter with tracker-808 (7E delimiters, 7D escaping, BCD device id in every frame): login and escaped report acked with the doc's bytes, values in SQLite; JT/T 808 registration (0x0100 answered 0x8100 with the auth code, bytes asserted; the login 0x0102 with that code opens the session; an unknown terminal gets result 4 and is closed; a wrong code gets 0x8001 result 1, counted); without a login the first frame is refused (registration makes the login required); a frame naming another device, an unknown device, and a frame that never ends within max_frame close the connection (counted); noise before 7E is skipped; a bad XOR check is not acked.
import hashlib
import hmac
import json
import struct

import binframes as b
import gwtest as g

PHONE = "013912345678"
OTHER = "013900000002"
DEVS = [{"id": PHONE, "product": b.TRACKER, "secret": "auth808x"},
        {"id": OTHER, "product": b.TRACKER, "secret": "other808"}]


def prop(gw, dev, name):
    v = gw.scalar("SELECT value FROM property_state WHERE device=? AND property=?", (dev, name))
    return json.loads(v) if v is not None else None


# 0x0100 as the 2013 standard's table lays it out: province, city, manufacturer[5], model[20],
# terminal id[7], plate colour, plate (GBK)
REG_BODY = struct.pack(">HH", 44, 300) + b"70111" + b"GT808".ljust(20, b"\0") + b"AB12345" + \
    b"\x01" + "京A12345".encode("gbk")


def auth_code(secret, phone):
    """docs/BINARY-CODEC.md 7a: hex(HMAC-SHA256(secret, "auth_code:" + device id))[:16]."""
    return hmac.new(secret.encode(), b"auth_code:" + phone.encode(), hashlib.sha256).hexdigest()[:16]


def t_register(phone, serial):
    return b.t_frame(0x0100, phone, serial, REG_BODY)


def t_registered(phone, serial, code):
    return b.t_frame(0x8100, phone, serial, struct.pack(">HB", serial, 0) + code.encode())


def offline_reason(gw, dev):
    return gw.scalar("SELECT name FROM events WHERE kind='offline' AND device=? ORDER BY id DESC "
                     "LIMIT 1", (dev,))


def main(t):
    gw = b.tcp_gateway([b.TRACKER], DEVS)
    port = g.adapter_port(gw, "tcp")
    m0 = gw.metrics()

    # the doc's login and report (direction 126 is escaped as 7D 02 on the wire)
    d = b.Dev(port)
    d.send(bytes.fromhex("7E 01 02 00 08 01 39 12 34 56 78 00 01 61 75 74 68 38 30 38 78 7A 7E"))
    t.eq(d.recv_808(), b.t_ack(PHONE, 1, 0x0102), "login acked (8001, serial 1, id 0102)")
    report = bytes.fromhex("7E 02 00 00 1C 01 39 12 34 56 78 00 03 00 00 00 01 00 00 00 03 01 DC "
                           "9A 07 07 3D 48 95 00 34 02 5D 00 7D 02 24 01 15 10 30 00 8D 7E")
    t.eq(report, b.t_report(PHONE, 3), "python builder matches the doc's report bytes")
    d.send(report)
    ack = d.recv_808()
    t.eq(ack.hex(" ") if ack else None,
         "7e 80 01 00 05 01 39 12 34 56 78 00 03 00 03 02 00 00 b6 7e",
         "report acked with the doc's bytes")
    t.check(abs(prop(gw, PHONE, "lat") - 31.234567) < 1e-9, "lat 31.234567", prop(gw, PHONE, "lat"))
    t.check(abs(prop(gw, PHONE, "lon") - 121.456789) < 1e-9, "lon 121.456789")
    t.eq(prop(gw, PHONE, "altitude"), 52, "altitude 52")
    t.check(abs(prop(gw, PHONE, "speed") - 60.5) < 1e-4, "speed 60.5")
    t.eq(prop(gw, PHONE, "direction"), 126, "direction 126 (escaped 7E byte)")
    t.eq(prop(gw, PHONE, "gps_time"), "240115103000", "gps_time BCD digits")
    t.eq([prop(gw, PHONE, k) for k in ("sos", "acc_on", "located")], [True, True, True],
         "sos, acc_on, located bits")

    # noise before the start delimiter is skipped; event and heartbeat acked in order
    d.send(b"\x01\x02garbage" + b.t_event(PHONE, 4, 7) + b.t_heartbeat(PHONE, 5))
    a1, a2 = d.recv_808(), d.recv_808()
    t.eq((a1, a2), (b.t_ack(PHONE, 4, 0x0301), b.t_ack(PHONE, 5, 0x0002)),
         "noise skipped; event and heartbeat acked in order")
    t.eq(json.loads(gw.scalar("SELECT payload FROM events WHERE kind='event'") or "null"),
         {"event_id": 7}, "driver_event stored")

    # bad XOR check: not acked, counted, the session goes on
    d.send(b.t_frame(0x0200, PHONE, 6, b"\0" * 28, check_ok=False))
    t.check(d.quiet_for(0.6 * g.SLOW), "bad check: no ack")
    d.send(b.t_heartbeat(PHONE, 7))
    t.eq(d.recv_808(), b.t_ack(PHONE, 7, 0x0002), "session goes on after a bad check")

    # a frame naming another device closes the session
    d.send(b.t_heartbeat(OTHER, 8))
    t.check(d.wait_closed(5), "frame with another device id: connection closed")
    t.check(g.wait_until(lambda: offline_reason(gw, PHONE) == "protocol_error", 5),
            "offline protocol_error", offline_reason(gw, PHONE))
    d.close()

    # registration: 0x0100 -> 0x8100 with the code (serial 0x7E: escaped both ways), then 0x0102
    # with that code logs in; the report is stored
    code = auth_code("other808", OTHER)
    d = b.Dev(port)
    reg = t_register(OTHER, 0x7E)
    t.check(b"\x7d\x02" in reg, "the registration's serial 0x007E is escaped on the wire")
    d.send(reg)
    ans = d.recv_808()
    t.eq(ans.hex(" ") if ans else None,
         "7e 81 00 00 13 01 39 00 00 00 02 00 7d 02 00 7d 02 00 " + code.encode().hex(" ") +
         " " + t_registered(OTHER, 0x7E, code)[-2:].hex(" "),
         "0x8100: reply serial 0x007E, result 0, the auth code (HMAC of the secret)")
    t.eq(ans, t_registered(OTHER, 0x7E, code), "0x8100 as the python builder makes it")
    t.check(d.quiet_for(0.3 * g.SLOW), "registered, not logged in: nothing more, still open")
    d.send(b.t_login(OTHER, code, serial=0x7F) + b.t_report(OTHER, 0x80, lat=10.5, direction=7))
    t.eq((d.recv_808(), d.recv_808()), (b.t_ack(OTHER, 0x7F, 0x0102), b.t_ack(OTHER, 0x80, 0x0200)),
         "0x0102 with the code: 0x8001 result 0; the report acked")
    t.check(g.wait_until(lambda: abs((prop(gw, OTHER, "lat") or 0) - 10.5) < 1e-9, 5),
            "its report stored (lat 10.5)")
    t.check(gw.scalar("SELECT count(*) FROM events WHERE kind='online' AND device=?", (OTHER,)) == 1,
            "online event once logged in with the code")
    d.send(t_register(OTHER, 0x81))
    t.eq(d.recv_808(), t_registered(OTHER, 0x81, code), "registering again: the same code")
    d.close()

    # an unknown terminal: 0x8100 result 4 (no such terminal, no code) and the connection closed
    d = b.Dev(port)
    d.send(t_register("019999999999", 1))
    t.check(d.wait_closed(5), "unknown terminal: connection closed")
    t.eq(d.buf.hex(" "), "7e 81 00 00 03 01 99 99 99 99 99 00 01 00 01 04 1e 7e",
         "unknown terminal: 0x8100 result 4 before the close")
    d.close()

    # a wrong code: 0x8001 result 1, counted as bad_secret, closed
    d = b.Dev(port)
    d.send(t_register(OTHER, 1))
    t.eq(d.recv_808(), t_registered(OTHER, 1, code), "registered")
    d.send(b.t_login(OTHER, code[:-1] + ("0" if code[-1] != "0" else "1"), serial=2))
    t.eq(d.recv_808(), b.t_ack(OTHER, 2, 0x0102, result=1), "wrong code: 0x8001 result 1")
    t.check(d.wait_closed(5), "wrong code: connection closed")
    d.close()

    # no login: with registration the login is required, even though every frame names its device
    d = b.Dev(port)
    d.send(b.t_heartbeat(OTHER, 1) + b.t_report(OTHER, 2, lat=11.5, direction=7))
    t.check(d.wait_closed(5), "without login: connection closed")
    t.eq(d.buf, b"", "without login: nothing acked")
    t.check(abs((prop(gw, OTHER, "lat") or 0) - 10.5) < 1e-9, "nothing stored (lat still 10.5)")
    d.close()

    # unknown device in the first frame (not a login: refused before the lookup)
    d = b.Dev(port)
    d.send(b.t_heartbeat("019999999999", 1))
    t.check(d.wait_closed(5), "unknown device id: connection closed")
    t.check(d.buf == b"", "unknown device id: nothing sent back (heartbeat has no negative ack)")
    d.close()
    # unknown device in a login: 0x8001 result 1, closed
    d = b.Dev(port)
    d.send(b.t_login("019999999999", "whatever", serial=3))
    t.check(d.wait_closed(5), "unknown device's login: connection closed")
    t.eq(d.buf, b.t_ack("019999999999", 3, 0x0102, result=1), "unknown device's login: result 1")
    d.close()

    # a frame that never ends within max_frame (1024)
    d = b.Dev(port)
    d.send(b.t_login(PHONE, "auth808x"))
    t.eq(d.recv_808(), b.t_ack(PHONE, 1, 0x0102), "logged in again")
    try:
        d.send(b"\x7e" + b"\x11" * 1100)
    except OSError:
        pass
    t.check(d.wait_closed(5), "1100 bytes without an end delimiter: connection closed")
    d.close()

    m1 = gw.metrics()
    t.eq(g.metric_delta(m0, m1, g.metric_key("tcp_bad_frames_total", reason="device_mismatch")),
         1.0, "tcp_bad_frames_total{reason=device_mismatch} +1")
    t.eq(g.metric_delta(m0, m1, g.metric_key("tcp_bad_frames_total", reason="oversized")), 1.0,
         "tcp_bad_frames_total{reason=oversized} +1")
    t.eq(g.metric_delta(m0, m1, g.metric_key("tcp_bad_frames_total", reason="bad_check")), 1.0,
         "tcp_bad_frames_total{reason=bad_check} +1")
    t.eq(g.metric_delta(m0, m1, g.metric_key("tcp_login_failures_total",
                                             reason="unknown_device")), 1.0,
         "tcp_login_failures_total{reason=unknown_device} +1")
    t.eq(g.metric_delta(m0, m1, g.metric_key("tcp_login_failures_total", reason="bad_secret")),
         1.0, "tcp_login_failures_total{reason=bad_secret} +1 (the wrong code)")
    t.eq(g.metric_delta(m0, m1, g.metric_key("tcp_login_failures_total", reason="not_a_login")),
         2.0, "tcp_login_failures_total{reason=not_a_login} +2")
    t.eq(g.metric_delta(m0, m1, g.metric_key("tcp_registrations_total", result="accepted")), 3.0,
         "tcp_registrations_total{result=accepted} +3")
    t.eq(g.metric_delta(m0, m1, g.metric_key("tcp_registrations_total",
                                             result="unknown_terminal")), 1.0,
         "tcp_registrations_total{result=unknown_terminal} +1")
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")


g.run(main)

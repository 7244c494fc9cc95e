# Proves the gt06 example product over a real socket (TCP, auth.mode device-id): the GT06 document's login, location, heartbeat and alarm packets, answered byte for byte (login and heartbeat; no answer to a location), the location's values and UTC date-time stored, the hemisphere bits signing lat/lon, the alarm stored as an event; an IMEI not in the registry refused (closed, nothing sent); a bad CRC not answered and counted; a truncated packet waited for, then completed; the start-up warning and --check-config naming the device-id product; a device-id product whose frame carries a secret refused at config load; the same mode over UDP (sensor-udp with its token read over): a registered device's datagram acked whatever its token, an unknown device's dropped; the online command (function "command"): a cloud invoke through north reaches the device as the document's 0x80 frame byte for byte (server flag = the command's seq), the 0x15 reply with that flag answers the cloud with the response text, a reply with an unknown flag counted late.
import json
import struct
import subprocess

import binframes as b
import cmdlib as cl
import gwapi
import gwtest as g
import sensor_udp as su

IMEI = "123456789012345"
DEVS = [{"id": IMEI, "product": b.GT06},  # no secret: auth by device id
        {"id": "358739050313445", "product": b.GT06}]

LOGIN = bytes.fromhex("78 78 0D 01 01 23 45 67 89 01 23 45 00 01 8C DD 0D 0A")
LOCATION = bytes.fromhex("78 78 1F 12 0B 08 1D 11 2E 10 CF 02 7A C7 EB 0C 46 58 49 00 14 8F 01 CC "
                         "00 28 7D 00 1F B8 00 03 80 81 0D 0A")
HEARTBEAT = bytes.fromhex("78 78 0A 13 44 01 04 00 01 00 05 08 45 0D 0A")
ALARM = bytes.fromhex("78 78 25 16 0B 0B 0F 0E 24 1D CF 02 7A C8 87 0C 46 57 E6 00 14 02 09 01 CC "
                      "00 28 7D 00 1F 72 65 06 04 01 01 00 36 56 A4 0D 0A")


def prop(gw, dev, name):
    v = gw.scalar("SELECT value FROM property_state WHERE device=? AND property=?", (dev, name))
    return json.loads(v) if v is not None else None


def close(a, b_, eps=1e-9):
    return a is not None and abs(a - b_) < eps


def gt06_command(text, seq, serial=None):
    """The GT06 document's 0x80 (8.1, with the language word: English): length of command =
    server flag + text, the flag (our seq), the ASCII text, 00 02, serial (the gateway: seq)."""
    t = text.encode()
    return b.gt06_frame(0x80, bytes([4 + len(t)]) + struct.pack(">I", seq) + t + b"\x00\x02",
                        seq if serial is None else serial)


def gt06_reply(flag, text, serial):
    """The terminal's 0x15 (8.2.2): length of command, the server flag, the ASCII reply, 00 02."""
    t = text.encode()
    return b.gt06_frame(0x15, bytes([4 + len(t)]) + struct.pack(">I", flag) + t + b"\x00\x02",
                        serial)


def commands(t):
    broker = g.Mosquitto(extra_conf=cl.BROKER_CONF)
    gw = b.tcp_gateway([b.GT06], DEVS, config={"north": cl.north(broker.port)})
    cloud = cl.Cloud(broker.port)
    t.check(cloud.wait_ready(b.GT06, IMEI), "north up (a property read is answered)")
    t.eq(gt06_command("sos#", 0, serial=1),
         bytes.fromhex("78 78 10 80 08 00 00 00 00 73 6F 73 23 00 02 00 01 9A 17 0D 0A"),
         "python builder matches the document's 0x80 example (with the language word)")
    t.eq(b.gt06_frame(0x15, bytes.fromhex("20 00 00 00 00") + b"SOS1:13421632699 SOS2: SOS3:" +
                      b"\x00\x01", 0x2A),
         bytes.fromhex("78 78 28 15 20 00 00 00 00 53 4F 53 31 3A 31 33 34 32 31 36 33 32 36 39 39 "
                       "20 53 4F 53 32 3A 20 53 4F 53 33 3A 00 01 00 2A C3 9C 0D 0A"),
         "python builder matches the document's 0x15 example")
    d = b.Dev(gw.product_ports[b.GT06])
    d.send(LOGIN)
    t.eq(b.gt06_recv(d), b.gt06_answer(0x01, 1), "logged in")
    cloud.invoke(b.GT06, IMEI, "c-1", "command", {"text": "WHERE#"})
    f = b.gt06_recv(d)
    t.eq(f.hex(" ") if f else None,
         "78 78 12 80 0a 00 00 00 01 57 48 45 52 45 23 00 02 00 01 " +
         gt06_command("WHERE#", 1)[-4:].hex(" "),
         "0x80 byte for byte: command length 10, server flag 1, WHERE#, English, serial 1, CRC")
    d.send(gt06_reply(1, "Lat:N23.111668,Lon:E114.409285", 0x2A))
    r = cloud.reply(IMEI, "c-1")
    t.check(r and r[0] == "iotgw/gt06/%s/function/invoke/reply" % IMEI and
            r[1].get("success") is True and r[1].get("name") == "command" and
            r[1].get("outputs") == {"response": "Lat:N23.111668,Lon:E114.409285"},
            "0x15 matched by its server flag: the response text answers the cloud", r)
    cloud.invoke(b.GT06, IMEI, "c-2", "command", {"text": "sos#"})
    f = b.gt06_recv(d)
    t.eq(f, gt06_command("sos#", 2), "second command: server flag 2")
    late0 = gw.metric("commands_late_replies_total")
    d.send(gt06_reply(99, "nobody asked", 0x2B))  # another flag: not this command's reply
    t.check(g.wait_until(lambda: gw.metric("commands_late_replies_total") == late0 + 1, 5),
            "a reply with an unknown server flag: counted late")
    t.eq(cloud.count(IMEI, "c-2"), 0, "... and it does not answer c-2")
    d.send(gt06_reply(2, "SOS1:13421632699 SOS2: SOS3:", 0x2C))
    r = cloud.reply(IMEI, "c-2")
    t.check(r and r[1].get("outputs") == {"response": "SOS1:13421632699 SOS2: SOS3:"},
            "the document's reply text answers c-2", r)
    d.send(HEARTBEAT)
    t.eq(b.gt06_recv(d), b.gt06_answer(0x13, 5), "the session goes on")
    d.close()
    cloud.stop()
    t.eq(gw.stop(), 0, "commands gateway: SIGTERM exit 0")


def main(t):
    t.eq(b.gt06_login(IMEI), LOGIN, "python builder matches the document's login bytes")
    t.eq(b.gt06_answer(0x01, 1).hex(" "), "78 78 05 01 00 01 d9 dc 0d 0a",
         "python builder matches the document's login answer")
    gw = b.tcp_gateway([b.GT06], DEVS)
    port = g.adapter_port(gw, "tcp")
    m0 = gw.metrics()
    warn = gw.find_log(level="warn", products="gt06")
    t.check(len(warn) == 1, "start-up warning names the device-id product", gw.log_tail(5))

    # login (IMEI alone), location, heartbeat, alarm: the document's packets
    d = b.Dev(port)
    d.send(LOGIN)
    t.eq((b.gt06_recv(d) or b"").hex(" "), "78 78 05 01 00 01 d9 dc 0d 0a",
         "login answered with the document's bytes")
    d.send(LOCATION)
    t.check(g.wait_until(lambda: prop(gw, IMEI, "cell_id") is not None, 5), "location stored")
    t.check(close(prop(gw, IMEI, "lat"), 0x027AC7EB / 1800000), "lat 23.111668 (north)",
            prop(gw, IMEI, "lat"))
    t.check(close(prop(gw, IMEI, "lon"), 0x0C465849 / 1800000), "lon 114.409285 (east)",
            prop(gw, IMEI, "lon"))
    t.eq([prop(gw, IMEI, k) for k in ("speed", "course", "satellites", "positioned")],
         [0, 143, 15, True], "speed 0, course 143, 15 satellites, positioned")
    t.eq([prop(gw, IMEI, k) for k in ("mcc", "mnc", "lac", "cell_id")], [460, 0, 10365, 8120],
         "mcc 460, mnc 0, lac 10365, cell 8120")
    t.eq(gw.scalar("SELECT ts FROM events WHERE kind='property' AND device=?", (IMEI,)),
         1314639976000, "event time = the packet's 2011-08-29 17:46:16 UTC")
    t.eq(gw.scalar("SELECT msg_id FROM events WHERE kind='property' AND device=?", (IMEI,)), "3",
         "msg_id = the serial")
    d.send(HEARTBEAT)
    t.eq((b.gt06_recv(d) or b"").hex(" "), "78 78 05 13 00 05 af d5 0d 0a",
         "heartbeat answered (serial 5); the location before it was not answered")
    d.send(ALARM)
    t.eq(b.gt06_recv(d), b.gt06_answer(0x16, 0x36), "alarm answered with its serial 0x0036")
    ev = gw.query("SELECT name, ts, payload FROM events WHERE kind='event' AND device=?", (IMEI,))
    t.eq(len(ev), 1, "alarm stored as one event")
    if ev:
        name, ts, payload = ev[0]
        data = json.loads(payload)
        t.eq((name, ts), ("alarm", 1321367789000), "event alarm at 2011-11-15 14:36:29 UTC")
        t.eq({k: data.get(k) for k in ("alarm", "course", "positioned", "terminal_info",
                                       "voltage_level", "gsm_signal", "speed")},
             {"alarm": 1, "course": 2, "positioned": True, "terminal_info": 0x65,
              "voltage_level": 6, "gsm_signal": 4, "speed": 0}, "alarm params")
        t.check(close(data.get("lat"), 0x027AC887 / 1800000), "alarm lat")

    # hemispheres: course/status 0x088F = south (bit 10 clear), west (bit 11 set), not positioned
    info = bytearray(LOCATION[4:-6])
    info[16:18] = bytes.fromhex("088F")
    d.send(b.gt06_frame(0x12, bytes(info), 7))
    t.check(g.wait_until(lambda: close(prop(gw, IMEI, "lat"), -0x027AC7EB / 1800000), 5),
            "bit 10 clear: latitude south (negative)", prop(gw, IMEI, "lat"))
    t.check(close(prop(gw, IMEI, "lon"), -0x0C465849 / 1800000), "bit 11 set: longitude west")
    t.eq(prop(gw, IMEI, "positioned"), False, "bit 12 clear: not positioned")

    # bad CRC: no answer, counted, the session goes on
    d.send(b.gt06_frame(0x13, bytes.fromhex("4401040001"), 8, crc_ok=False))
    t.check(d.quiet_for(0.6 * g.SLOW), "bad CRC: no answer")
    # a truncated packet is waited for; its rest completes it
    hb = b.gt06_heartbeat(9)
    d.send(hb[:7])
    t.check(d.quiet_for(0.4 * g.SLOW), "truncated packet: waited for, no answer yet")
    d.send(hb[7:])
    t.eq(b.gt06_recv(d), b.gt06_answer(0x13, 9), "the rest arrives: answered (serial 9)")
    d.close()

    # an IMEI not in the registry: refused, closed, nothing sent back
    d = b.Dev(port)
    d.send(b.gt06_login("861234567890123"))
    t.check(d.wait_closed(5), "unknown IMEI: connection closed")
    t.eq(d.buf, b"", "unknown IMEI: nothing sent back")
    d.close()
    # the management API adds a device of a device-id product without a secret; it gets in
    r = gwapi.api(gw, "POST", "/api/devices", {"id": "861234567890123", "product": b.GT06})
    t.check(r.status == 201, "POST /api/devices without a secret for a gt06 device: 201", r)
    r = gwapi.api(gw, "POST", "/api/devices", {"id": "mtr-x", "product": b.GT06, "secret": ""})
    t.check(r.status == 400, "... an empty secret is still refused (400)", r)
    d = b.Dev(port)
    d.send(b.gt06_login("861234567890123", serial=4))
    t.eq(b.gt06_recv(d), b.gt06_answer(0x01, 4), "the added IMEI logs in at once")
    d.close()
    # the other registered device logs in by its IMEI alone
    d = b.Dev(port)
    d.send(b.gt06_login("358739050313445", serial=2))
    t.eq(b.gt06_recv(d), b.gt06_answer(0x01, 2), "second device: login answered")
    d.close()

    m1 = gw.metrics()
    t.eq(g.metric_delta(m0, m1, g.metric_key("tcp_bad_frames_total", reason="bad_check")), 1.0,
         "tcp_bad_frames_total{reason=bad_check} +1")
    t.eq(g.metric_delta(m0, m1, g.metric_key("tcp_login_failures_total",
                                             reason="unknown_device")), 1.0,
         "tcp_login_failures_total{reason=unknown_device} +1")
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")

    # --check-config names the device-id product; a frame with a secret contradicts device-id
    p = subprocess.run([g.BIN, "--check-config", "-c", gw.cfg_path], capture_output=True,
                       timeout=30 * g.SLOW, stdin=subprocess.DEVNULL)
    err = p.stderr.decode()
    t.check(p.returncode == 0, "--check-config: exit 0", err)
    t.check('warning: 1 product authenticates devices by their id alone, no secret (auth.mode '
            '"device-id"): gt06' in err, "--check-config warns naming gt06", err)
    bad = g.load_product(b.GT06)
    bad["frame"]["messages"][0]["fields"].append(
        {"name": "pw", "offset": 12, "type": "string", "size": 2, "role": "secret"})
    gw2 = b.tcp_gateway([b.GT06], DEVS, products_over={b.GT06: bad}, start=False)
    p = subprocess.run([g.BIN, "--check-config", "-c", gw2.cfg_path], capture_output=True,
                       timeout=30 * g.SLOW, stdin=subprocess.DEVNULL)
    err = p.stderr.decode()
    t.check(p.returncode == 2, "device-id with a secret in the frame: exit 2", err)
    t.check('gt06.json: auth.mode: "device-id" checks no secret, but the frame carries one' in err,
            "the error names the file and auth.mode", err)

    # auth.mode device-id over UDP: sensor-udp's token becomes padding (no role), the registry
    # is the allowlist
    prod = g.load_product(su.PRODUCT)
    prod["auth"] = {"mode": "device-id"}
    for f in prod["frame"]["header"]:
        if f.get("role") == "secret":
            del f["role"]
    ids = su.dev_ids(1)
    gw3 = g.Gateway(products=[prod], devices=[{"id": ids[0], "product": su.PRODUCT}],
                    config={"adapters": {"mqtt": None, "udp": {"listeners": [
                        {"address": g.HOST, "port": 0, "product": su.PRODUCT}]}}})
    u = su.Client(su.udp_port(gw3))
    ack, _ = u.request(su.report(ids[0], 1, token="anything"), 5)
    t.eq(ack, (ids[0], 1, 0), "UDP device-id: a registered device acked, whatever its token")
    t.check(g.wait_until(lambda: prop(gw3, ids[0], "battery") == 87, 5), "... its report stored")
    ack, _ = u.request(su.report("snr99999", 1, token="anything"), 1)
    t.eq(ack, None, "UDP device-id: an unknown device gets nothing")
    u.close()
    t.eq(gw3.stop(), 0, "UDP gateway: SIGTERM exit 0")

    commands(t)


g.run(main)

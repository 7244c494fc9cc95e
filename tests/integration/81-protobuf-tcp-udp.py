# Proves the protobuf codec on byte transports with raw sockets: TCP (meter-pb) — login frame first (else refused), 4-byte big-endian length-prefixed DeviceMessages split and coalesced across writes, Ack frames after the commit in order, a thing-model rejection answered with ok=false, its reason and detail, and not stored, an undecodable frame after login answered ok=false malformed_payload (the connection goes on), an oversized length prefix closing the stream, heartbeats acked; UDP (sensor-pb) — device_id + token in every datagram, a bad token or unknown device dropped without an answer, acks after the commit; and a cloud invoke and write round trip on both transports through the north bridge.
import json
import socket
import struct
import time

import binframes as b
import cmdlib as cl
import gwtest as g
import pblib as pb

METER, SENSOR = "meter-pb", "sensor-pb"
DEVS = [{"id": "mpb-001", "product": METER, "secret": "mpb001-secret"},
        {"id": "mpb-002", "product": METER, "secret": "mpb002-secret"},
        {"id": "spb-001", "product": SENSOR, "secret": "spb001-token"}]


class Tcp(b.Dev):
    def acks(self, n, timeout=5.0):
        """n Ack frames (decoded), fewer if they do not come."""
        out = []
        deadline = time.monotonic() + timeout * g.SLOW
        while len(out) < n and time.monotonic() < deadline:
            frames, self.buf = pb.split_frames(self.buf)
            out += frames
            if len(out) < n and not self._more(deadline):
                break
        frames, self.buf = pb.split_frames(self.buf)
        out += frames
        return [pb.decode_ack(f) for f in out]

    def frame(self, timeout=5.0):
        deadline = time.monotonic() + timeout * g.SLOW
        while True:
            frames, rest = pb.split_frames(self.buf)
            if frames:
                self.buf = self.buf[4 + len(frames[0]):]
                return frames[0]
            if time.monotonic() >= deadline or not self._more(deadline):
                return None


class Udp:
    def __init__(self, port):
        self.addr = (g.HOST, port)
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind((g.HOST, 0))

    def send(self, data):
        self.s.sendto(data, self.addr)

    def recv(self, timeout=3.0):
        self.s.settimeout(timeout * g.SLOW)
        try:
            return self.s.recv(65536)
        except socket.timeout:
            return None


def props(gw, dev):
    return {k: json.loads(v) for k, v in
            gw.query("SELECT property, value FROM property_state WHERE device=?", (dev,))}


def count(gw, dev, kind="property"):
    return gw.scalar("SELECT count(*) FROM events WHERE device=? AND kind=?", (dev, kind))


def tcp_part(t, gw, port):
    # not a login first: refused, closed
    d = Tcp(port)
    d.send(pb.frame(pb.report({"voltage": 230.0}, msg_id="x")))
    t.check(d.wait_closed(), "a report before the login: connection closed")

    # a wrong secret: Ack ok=false, closed
    d = Tcp(port)
    d.send(pb.frame(pb.login("mpb-001", "nope", msg_id="l-0")))
    a = d.acks(1)
    t.eq(a[:1], [{"message_id": "l-0", "ok": False, "code": "rejected", "message": "login refused"}],
         "bad secret: Ack ok=false, 'login refused' (the same for an unknown device)")
    t.check(d.wait_closed(), "bad secret: closed")

    # login, then a report split byte by byte and two messages in one write
    d = Tcp(port)
    d.send(pb.frame(pb.login("mpb-001", "mpb001-secret", msg_id="l-1")))
    t.eq(d.acks(1), [{"message_id": "l-1", "ok": True, "code": ""}], "login acked")
    t.check(g.wait_until(lambda: count(gw, "mpb-001", "online") == 1, 5), "online")
    vals = {"energy_kwh": 1234.5, "power_w": 1500, "voltage": 230.1, "pulses": 987654,
            "tariff": "night", "relay_on": True,
            "phases": [{"v": 230.0, "a": 5.5}, {"v": 229.5, "a": 4}]}
    d.dribble(pb.frame(pb.report(vals, msg_id="r-1", ts=1700000000000)))
    a = d.acks(1)
    n_now = count(gw, "mpb-001")
    t.eq(a, [{"message_id": "r-1", "ok": True, "code": ""}], "report (byte by byte) acked")
    t.eq(n_now, 1, "committed before its Ack")
    p = props(gw, "mpb-001")
    t.eq(p, dict(vals, power_w=1500.0, phases=[{"v": 230.0, "a": 5.5}, {"v": 229.5, "a": 4.0}]),
         "stored values (normalised: reals for float/double)")
    t.eq(gw.scalar("SELECT ts FROM events WHERE kind='property' AND device='mpb-001'"),
         1700000000000, "timestamp_ms")
    d.send(pb.frame(pb.event("overload", {"power_w": 9000.0, "duration_ms": 1500}, msg_id="e-1"))
           + pb.frame(pb.heartbeat(msg_id="h-1")))
    t.eq([x["message_id"] for x in d.acks(2)], ["e-1", "h-1"], "event and heartbeat acked in order")
    ev = gw.query("SELECT name, payload FROM events WHERE kind='event' AND device='mpb-001'")
    t.eq([(n, json.loads(x)) for n, x in ev], [("overload", {"power_w": 9000.0,
                                                               "duration_ms": 1500})],
         "event stored")

    # rejections after login: thing model (ok=false), undecodable (no ack, counted), both not stored
    m0 = gw.metric("iotgw_messages_rejected_total", reason="out_of_range")
    d.send(pb.frame(pb.report({"voltage": 500.0}, msg_id="r-2")))
    a = d.acks(1)
    t.eq([(x["message_id"], x["ok"], x["code"]) for x in a], [("r-2", False, "out_of_range")],
         "out of range: Ack ok=false, code out_of_range")
    t.check(a and "voltage" in a[0].get("message", "") and "500" in a[0].get("message", ""),
            "... and the Ack's message names the property and the value", a)
    t.eq(gw.metric("iotgw_messages_rejected_total", reason="out_of_range"), m0 + 1,
         "counted as out_of_range")
    m0 = gw.metric("iotgw_messages_rejected_total", reason="malformed_payload")
    d.send(pb.frame(pb.report(vals, msg_id="r-3")[:-4]) + pb.frame(pb.heartbeat(msg_id="h-2")))
    a = d.acks(2)
    t.eq([(x["ok"], x["code"]) for x in a[:1]], [(False, "malformed_payload")],
         "a truncated message: Ack ok=false, code malformed_payload")
    t.check(a and "truncated" in a[0].get("message", ""), "... its message says truncated", a)
    t.eq([x["message_id"] for x in a[1:]], ["h-2"], "the connection goes on (next frame acked)")
    t.check(g.wait_until(lambda: gw.metric("iotgw_messages_rejected_total",
                                           reason="malformed_payload") == m0 + 1, 5),
            "counted as malformed_payload")
    t.eq(count(gw, "mpb-001"), 1, "nothing rejected is stored")
    t.check("truncated" in gw.log, "the log says truncated")

    # a length prefix over the max message: the stream is closed
    d2 = Tcp(port)
    d2.send(pb.frame(pb.login("mpb-002", "mpb002-secret")))
    d2.acks(1)
    m0 = gw.metric("iotgw_tcp_bad_frames_total", reason="oversized")
    d2.send(struct.pack(">I", 70000) + b"\0" * 16)
    t.check(d2.wait_closed(), "length 70000: closed")
    t.eq(gw.metric("iotgw_tcp_bad_frames_total", reason="oversized"), m0 + 1, "counted oversized")
    return d


def udp_part(t, gw, port):
    u = Udp(port)
    dev, tok = "spb-001", "spb001-token"
    u.send(pb.report({"temperature": 20.5, "humidity": 40, "battery": 90, "door_open": False},
                     msg_id="u-1", device_id=dev, token=tok))
    a = u.recv()
    t.eq(a and pb.decode_ack(a), {"message_id": "u-1", "ok": True, "code": ""}, "UDP report acked")
    t.eq(props(gw, dev), {"temperature": 20.5, "humidity": 40.0, "battery": 90,
                          "door_open": False}, "UDP values stored")
    m0 = gw.metric("iotgw_udp_dropped_total", reason="bad_auth")
    u.send(pb.report({"battery": 10}, msg_id="u-2", device_id=dev, token="wrong"))
    t.eq(u.recv(0.5), None, "bad token: no answer")
    t.eq(gw.metric("iotgw_udp_dropped_total", reason="bad_auth"), m0 + 1, "counted bad_auth")
    u.send(pb.report({"battery": 10}, msg_id="u-3", device_id=dev))
    t.eq(u.recv(0.5), None, "no token: no answer")
    m0 = gw.metric("iotgw_udp_dropped_total", reason="unknown_device")
    u.send(pb.report({"battery": 10}, msg_id="u-4", device_id="nobody", token=tok))
    t.eq(u.recv(0.5), None, "unknown device: no answer")
    t.eq(gw.metric("iotgw_udp_dropped_total", reason="unknown_device"), m0 + 1,
         "counted unknown_device")
    m0 = gw.metric("iotgw_udp_dropped_total", reason="malformed")
    u.send(b"\x0a\x05ab")
    t.eq(u.recv(0.5), None, "undecodable datagram: no answer")
    t.eq(gw.metric("iotgw_udp_dropped_total", reason="malformed"), m0 + 1, "counted malformed")
    u.send(pb.report({"battery": 101}, msg_id="u-5", device_id=dev, token=tok))
    a = u.recv()
    a = a and pb.decode_ack(a)
    t.eq(a and (a["message_id"], a["ok"], a["code"]), ("u-5", False, "out_of_range"),
         "out of range: Ack ok=false, code out_of_range")
    t.check(a and "battery" in a.get("message", ""), "... its message names the property", a)
    t.eq(props(gw, dev).get("battery"), 90, "the rejected value is not stored")
    u.send(pb.heartbeat(msg_id="u-6", device_id=dev, token=tok))
    a = u.recv()
    t.eq(a and pb.decode_ack(a)["message_id"], "u-6", "heartbeat acked")
    return u


def main(t):
    broker = g.Mosquitto(extra_conf=cl.BROKER_CONF)
    cfg = {"north": cl.north(broker.port),
           "adapters": {"mqtt": None,
                        "tcp": {"listeners": [{"address": g.HOST, "port": 0, "product": METER}]},
                        "udp": {"listeners": [{"address": g.HOST, "port": 0,
                                               "product": SENSOR}]}}}
    gw = g.Gateway(products=[g.load_product(METER), g.load_product(SENSOR)], devices=DEVS,
                   config=cfg)
    tcp_port, udp_port = gw.product_ports[METER], gw.product_ports[SENSOR]
    d = tcp_part(t, gw, tcp_port)
    u = udp_part(t, gw, udp_port)

    # ---- commands: TCP ----
    cloud = cl.Cloud(broker.port)
    t.check(cloud.wait_ready(METER, "mpb-001"), "north up")
    cloud.invoke(METER, "mpb-001", "c-1", "reset_counter", {"confirm": True})
    f = d.frame()
    c = pb.decode_command(f) if f else {}
    t.eq(c.get("invoke"), {"function": "reset_counter", "inputs": {"confirm": True}},
         "TCP: DeviceCommand.invoke in a length-prefixed frame")
    d.send(pb.frame(pb.function_reply(True, "reset_counter", {"previous_kwh": 1234.5},
                                      msg_id=c.get("message_id", "?"))))
    t.eq([x["message_id"] for x in d.acks(1)], [c.get("message_id")], "the reply is acked")
    r = cloud.reply("mpb-001", "c-1")
    t.check(r and r[1].get("success") is True and r[1].get("outputs") == {"previous_kwh": 1234.5},
            "TCP: the cloud gets the reply with the outputs", r)
    cloud.send("write", METER, "mpb-001", {"messageId": "c-2", "properties": {"tariff": "day"}})
    f = d.frame()
    c = pb.decode_command(f) if f else {}
    t.eq(c.get("write"), {"properties": {"tariff": "day"}}, "TCP: DeviceCommand.write")
    d.send(pb.frame(pb.write_reply(False, error="E1", text="locked",
                                   msg_id=c.get("message_id", "?"))))
    r = cloud.reply("mpb-001", "c-2")
    t.check(r and r[1].get("success") is False and r[1].get("message") == "E1: locked",
            "TCP: a failed write reply reaches the cloud with its text", r)

    # ---- commands: UDP ----
    cloud.invoke(SENSOR, "spb-001", "c-3", "identify", {"blink_s": 3})
    f = u.recv()
    c = pb.decode_command(f) if f else {}
    t.eq(c.get("invoke"), {"function": "identify", "inputs": {"blink_s": 3}},
         "UDP: DeviceCommand.invoke datagram to the device's address")
    u.send(pb.function_reply(True, "identify", {"ok": True}, msg_id=c.get("message_id", "?"),
                             device_id="spb-001", token="spb001-token"))
    r = cloud.reply("spb-001", "c-3")
    t.check(r and r[1].get("success") is True and r[1].get("outputs") == {"ok": True},
            "UDP: the cloud gets the reply", r)
    cloud.stop()
    gw.stop()
    broker.stop()


if __name__ == "__main__":
    g.run(main)

# Proves the protobuf codec on MQTT with paho: a DeviceMessage report carrying every value type is stored with the same normalised values as JSON (ints, reals, bool, string, enum, date, struct, array), an event is stored, thing-model rejections (out_of_range, wrong_type) and codec rejections (truncated, unknown oneof, oneof disagreeing with the topic) are PUBACKed, not stored, counted by reason and answered on the reply topic with a protobuf Ack (reason, detail, message id), and a cloud invoke and property write reach the device as DeviceCommand and its protobuf replies come back to the cloud.
import copy
import json
import threading

import cmdlib as cl
import gwtest as g
import pblib as pb

PROD = g.load_product("thermo-pb")
PID = PROD["id"]
DEV = "tpb-001"
DEVS = [{"id": DEV, "product": PID, "secret": "tpb001-secret"},
        {"id": "tpb-002", "product": PID, "secret": "tpb002-secret"}]


def topic(kind):
    return "/%s/%s/%s" % (PID, DEV, kind)


def prop(gw, name):
    v = gw.scalar("SELECT value FROM property_state WHERE device=? AND property=?", (DEV, name))
    return json.loads(v) if v is not None else None


class Device:
    """paho device: publishes with QoS 1 and waits for the PUBACK; records what it receives."""

    def __init__(self, gw):
        self.c = g.paho_client(gw, DEV, product=PID, secret="tpb001-secret")
        self.lock = threading.Lock()
        self.got = []
        self.c.on_message = self._on_message
        self.answer = True

    def _on_message(self, cl_, ud, msg):
        with self.lock:
            self.got.append((msg.topic, bytes(msg.payload)))
        if not self.answer:
            return
        if msg.topic.endswith("/function/invoke"):
            cmd = pb.decode_command(bytes(msg.payload))
            cl_.publish(msg.topic + "/reply", pb.function_reply(
                True, cmd["invoke"]["function"], {"ok": True}, msg_id=cmd["message_id"]), qos=1)
        elif msg.topic.endswith("/properties/write"):
            cmd = pb.decode_command(bytes(msg.payload))
            cl_.publish(msg.topic + "/reply", pb.write_reply(True, msg_id=cmd["message_id"]),
                        qos=1)

    def pub(self, tp, payload):
        info = self.c.publish(tp, payload, qos=1)
        return g.wait_until(lambda: info.mid in self.c.published, 5)

    def received(self, suffix):
        with self.lock:
            return [p for tp, p in self.got if tp.endswith(suffix)]


def main(t):
    broker = g.Mosquitto(extra_conf=cl.BROKER_CONF)
    gw = g.Gateway(products=[PROD], devices=DEVS, config={"north": cl.north(broker.port)})
    d = Device(gw)
    t.eq(d.c.connected_rc, 0, "the protobuf device connects (product thermo-pb)")
    sub = d.c.subscribe([(topic(s), 1) for s in ("properties/report/reply",
                                                  "event/overheat/reply", "function/invoke",
                                                  "properties/write")])
    t.check(sub[0] == 0, "subscribed")

    # ---- every value type ----
    vals = {"temperature": 21.0, "mode": "eco", "humidity": 40, "name": "hall",
            "status": {"code": 7, "message": "ok"}, "samples": [1.5, 2, -3.25],
            "boot_time": 1700000000000, "count": 9000000000, "on": True, "level": 3}
    t.check(d.pub(topic("properties/report"), pb.report(vals, msg_id="p-1", ts=1700000000500)),
            "report PUBACKed")
    row = gw.query("SELECT ts, msg_id, payload FROM events WHERE kind='property' AND device=?",
                   (DEV,))
    t.eq(len(row), 1, "report stored (before its PUBACK)")
    if row:
        t.eq(row[0][0], 1700000000500, "ts = the message's timestamp_ms")
        t.eq(row[0][1], "p-1", "msg_id = message_id")
        stored = json.loads(row[0][2])
        want = dict(vals, temperature=21.0, humidity=40.0, samples=[1.5, 2.0, -3.25])
        t.eq(stored, want, "normalised values (ints for float props become reals)")
        t.check(isinstance(stored["count"], int) and isinstance(stored["humidity"], float),
                "count stays an integer, humidity a real", stored)
    t.eq(prop(gw, "status"), {"code": 7, "message": "ok"}, "struct stored")

    # ---- event, id from the topic ----
    t.check(d.pub(topic("event/overheat"), pb.event("", {"t": 90.5}, msg_id="e-1")), "event acked")
    ev = gw.query("SELECT name, payload FROM events WHERE kind='event' AND device=?", (DEV,))
    t.eq([(n, json.loads(p)) for n, p in ev], [("overheat", {"t": 90.5})], "event stored")

    # ---- rejections: PUBACKed, not stored, counted, answered ----
    cases = [
        ("out of range", "properties/report", pb.report({"temperature": 300.0}, msg_id="r-1"),
         "out_of_range"),
        ("wrong type", "properties/report", pb.report({"on": 1}, msg_id="r-2"), "wrong_type"),
        ("truncated", "properties/report", pb.report(vals, msg_id="r-3")[:-5],
         "malformed_payload"),
        ("unknown oneof", "properties/report", pb.f_bytes(1, "r-4") + pb.f_bytes(20, b""),
         "malformed_payload"),
        ("oneof disagrees with the topic", "properties/report",
         pb.event("overheat", {"t": 1.0}, msg_id="r-5"), "malformed_payload"),
        ("event id disagrees with the topic", "event/overheat",
         pb.event("other", {}, msg_id="r-6"), "malformed_payload"),
    ]
    ids = {"out of range": "r-1", "wrong type": "r-2", "oneof disagrees with the topic": "r-5"}
    n_stored = gw.scalar("SELECT count(*) FROM events WHERE kind IN ('property','event')")
    for what, kind, payload, reason in cases:
        m0 = gw.metric("iotgw_messages_rejected_total", reason=reason)
        n_replies = len(d.received(kind + "/reply"))
        t.check(d.pub(topic(kind), payload), "%s: PUBACKed anyway" % what)
        t.check(g.wait_until(lambda: gw.metric("iotgw_messages_rejected_total", reason=reason)
                             == m0 + 1, 5), "%s: counted as %s" % (what, reason))
        t.check(g.wait_until(lambda: len(d.received(kind + "/reply")) > n_replies, 5),
                "%s: answered on the reply topic" % what)
        r = d.received(kind + "/reply")
        if len(r) > n_replies:
            ack = pb.decode_ack(bytes(r[-1]))  # the product's codec: a protobuf Ack, not JSON
            t.eq((ack["ok"], ack["code"]), (False, reason),
                 "%s: reply is an Ack saying %s" % (what, reason))
            t.check(ack.get("message"), "%s: ... with the detail" % what, ack)
            if what in ids:
                t.eq(ack["message_id"], ids[what], "%s: ... and the message's id" % what)
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE kind IN ('property','event')"), n_stored,
         "no rejected message stored")
    log = gw.log
    for detail in ("truncated", "unknown oneof member: field 20",
                   "the message body is event, the topic says report"):
        t.check(detail in log, "log detail: %s" % detail)

    # ---- commands through the north bridge ----
    cloud = cl.Cloud(broker.port)
    t.check(cloud.wait_ready(PID, DEV), "north up")
    cloud.invoke(PID, DEV, "c-1", "reboot", {"delay_s": 5})
    r = cloud.reply(DEV, "c-1")
    t.check(r, "cloud receives the invoke reply")
    if r:
        t.eq((r[1].get("success"), r[1].get("outputs"), r[1].get("name")),
             (True, {"ok": True}, "reboot"), "reply: success, outputs from the FunctionReply")
    cmds = d.received("/function/invoke")
    t.eq(len(cmds), 1, "the device got one DeviceCommand")
    if cmds:
        c = pb.decode_command(cmds[0])
        t.eq(c.get("invoke"), {"function": "reboot", "inputs": {"delay_s": 5}},
             "DeviceCommand.invoke: function and typed inputs")
        t.check(c["message_id"] and c["message_id"] == str(c["seq"]), "message_id = seq", c)
    cloud.send("write", PID, DEV, {"messageId": "c-2", "properties": {"mode": "comfort",
                                                                        "level": 4}})
    r = cloud.reply(DEV, "c-2")
    t.check(r and r[1].get("success") is True, "cloud receives the write reply", r)
    w = d.received("/properties/write")
    if w:
        t.eq(pb.decode_command(w[0]).get("write"),
             {"properties": {"mode": "comfort", "level": 4}}, "DeviceCommand.write properties")
    cloud.stop()
    g.paho_stop(d.c)
    gw.stop()
    broker.stop()


if __name__ == "__main__":
    g.run(main)

# cmdlib.py: what the north command tests share: the gateway's "north" section for a cloud broker
# on loopback, a cloud client (paho) that sends commands and collects their replies, and a paho
# MQTT device that records the commands it gets and answers them.
import json
import socket
import threading
import time

import gwtest as g

PREFIX = "iotgw"
PATHS = {"invoke": "function/invoke", "write": "properties/write", "read": "properties/read"}


# The cloud broker: TCP_NODELAY towards its clients, as a latency-sensitive deployment sets it
# (mosquitto's default leaves Nagle on: a reply following a PUBACK waits for a delayed ACK).
BROKER_CONF = "set_tcp_nodelay true"


def north(broker_port, **over):
    """A gateway.json "north" section: enabled, on the broker, fast reconnects."""
    n = {"enabled": True, "host": g.HOST, "port": broker_port, "prefix": PREFIX,
         "client_id": "iotgw-cmd-test", "reconnect_min_ms": 100, "reconnect_max_ms": 1000}
    n.update(over)
    return n


def compact(d):
    return json.dumps(d, separators=(",", ":"))


def nodelay(client):
    """TCP_NODELAY on a connected paho client's socket: paho 1.6 leaves Nagle on, which holds a
    publish that follows the client's own PUBACK until the peer's delayed ACK (~40 ms)."""
    s = client.socket()
    if s is not None:
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class Cloud:
    """The cloud: publishes commands on {prefix}/{product}/{device}/<op path> (QoS 1) and records
    every reply arriving on {prefix}/+/+/+/+/reply, by (device, messageId)."""

    def __init__(self, port, client_id="cloud-cmd"):
        import paho.mqtt.client as mqtt
        self.lock = threading.Lock()
        self.replies = {}  # (device, messageId) -> [(topic, dict, monotonic time)]
        self.all = []
        self.subscribed = threading.Event()
        c = mqtt.Client(client_id=client_id, clean_session=True, protocol=mqtt.MQTTv311)
        c.max_inflight_messages_set(1000)

        def on_connect(cl, ud, flags, rc):
            if rc == 0:
                nodelay(cl)
                cl.subscribe(PREFIX + "/+/+/+/+/reply", 1)

        def on_subscribe(cl, ud, mid, granted):
            self.subscribed.set()

        def on_message(cl, ud, msg):
            try:
                d = json.loads(bytes(msg.payload))
            except ValueError:
                d = None
            key = (d.get("device"), d.get("messageId")) if isinstance(d, dict) else None
            with self.lock:
                self.all.append((msg.topic, d))
                self.replies.setdefault(key, []).append((msg.topic, d, time.monotonic()))

        c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
        self.client = c
        c.connect(g.HOST, port, keepalive=30)
        c.loop_start()
        if not self.subscribed.wait(10 * g.SLOW):
            raise g.GatewayError("cloud: no SUBACK")
        self.probes = 0

    def send(self, op, product, device, payload):
        """payload: a dict (sent as compact JSON) or bytes/str as they are."""
        topic = "%s/%s/%s/%s" % (PREFIX, product, device, PATHS[op])
        if isinstance(payload, dict):
            payload = compact(payload)
        info = self.client.publish(topic, payload, qos=1)
        return info

    def invoke(self, product, device, msg_id, function, inputs=None):
        d = {"messageId": msg_id, "function": function}
        if inputs is not None:
            d["inputs"] = inputs
        return self.send("invoke", product, device, d)

    def reply(self, device, msg_id, timeout=5.0):
        """The first reply for (device, msg_id) as (topic, payload dict), or None."""
        def got():
            with self.lock:
                r = self.replies.get((device, msg_id))
                return (r[0][0], r[0][1]) if r else None
        return g.wait_until(got, timeout, interval=0.01)

    def reply_time(self, device, msg_id):
        with self.lock:
            r = self.replies.get((device, msg_id))
            return r[0][2] if r else None

    def count(self, device, msg_id):
        with self.lock:
            return len(self.replies.get((device, msg_id), []))

    def wait_ready(self, product, device, timeout=20.0):
        """Probes with property reads until one is answered: the gateway's north link is up and
        subscribed to the command topics. Returns the number of probes sent (0: never ready)."""
        deadline = time.monotonic() + timeout * g.SLOW
        while time.monotonic() < deadline:
            self.probes += 1
            mid = "probe-%d" % self.probes
            self.send("read", product, device, {"messageId": mid})
            if self.reply(device, mid, 0.5):
                return self.probes
        return 0

    def stop(self):
        try:
            self.client.disconnect()
            self.client.loop_stop()
        except Exception:
            pass


def ok_reply(topic, d):
    """The default device answer: success (with outputs {"ok": true} for an invoke)."""
    r = {"messageId": d["messageId"], "success": True}
    if topic.endswith("/function/invoke"):
        r["outputs"] = {"ok": True}
    return r


class Device:
    """A paho device on the gateway's MQTT listener, subscribed (QoS qos) to its command topics.
    Every command it gets is recorded as (topic, payload dict, qos); answer(topic, dict) returns
    the reply to publish on topic + "/reply" (QoS 1), or None for no reply."""

    def __init__(self, gw, dev, product="thermo", subscribe=("function/invoke", "properties/write"),
                 answer=ok_reply, secret=None, qos=1):
        import paho.mqtt.client as mqtt
        self.dev, self.product = dev, product
        self.lock = threading.Lock()
        self.got = []
        self.answer = answer
        self.subscribed = threading.Event()
        self.topics = ["/%s/%s/%s" % (product, dev, t) for t in subscribe]
        c = mqtt.Client(client_id=dev, clean_session=True, protocol=mqtt.MQTTv311)
        c.username_pw_set(product, secret if secret is not None else g.secret_of(dev))

        def on_connect(cl, ud, flags, rc):
            if rc == 0:
                nodelay(cl)
            if rc == 0 and self.topics:
                cl.subscribe([(t, qos) for t in self.topics])
            elif rc == 0:
                self.subscribed.set()

        def on_subscribe(cl, ud, mid, granted):
            self.subscribed.set()

        def on_message(cl, ud, msg):
            try:
                d = json.loads(bytes(msg.payload))
            except ValueError:
                d = None
            with self.lock:
                self.got.append((msg.topic, d, msg.qos))
            r = self.answer(msg.topic, d) if self.answer and isinstance(d, dict) else None
            if r is not None:
                cl.publish(msg.topic + "/reply", compact(r), qos=1)

        c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
        self.client = c
        c.connect(g.HOST, gw.mqtt_port, keepalive=60)
        c.loop_start()
        if not self.subscribed.wait(10 * g.SLOW):
            raise g.GatewayError("device %s: no SUBACK" % dev)

    def publish_reply(self, op, reply, qos=1):
        """Publishes reply (a dict) on the reply topic of op ("invoke" / "write"); waits for the
        PUBACK."""
        info = self.client.publish("/%s/%s/%s/reply" % (self.product, self.dev, PATHS[op]),
                                   compact(reply), qos=qos)
        info.wait_for_publish(5 * g.SLOW)
        return info

    def report(self, props, msg_id="r1"):
        info = self.client.publish("/%s/%s/properties/report" % (self.product, self.dev),
                                   compact({"messageId": msg_id, "properties": props}), qos=1)
        info.wait_for_publish(5 * g.SLOW)
        return info.is_published()

    def commands(self):
        with self.lock:
            return list(self.got)

    def wait_command(self, msg_id, timeout=5.0):
        """The (topic, dict, qos) of the command with this device-side messageId, or None."""
        def find():
            with self.lock:
                for t, d, q in self.got:
                    if isinstance(d, dict) and d.get("messageId") == msg_id:
                        return (t, d, q)
            return None
        return g.wait_until(find, timeout, interval=0.01)

    def stop(self):
        try:
            self.client.disconnect()
            self.client.loop_stop()
        except Exception:
            pass


def commands_rows(gw, where="1", params=()):
    """{msg_id: (device, op, name, status, reply dict or None)} from the commands table."""
    rows = gw.query("SELECT msg_id, device, op, name, status, reply FROM commands WHERE " + where +
                    " ORDER BY id", params)
    out = {}
    for mid, dev, op, name, status, reply in rows:
        out[mid] = (dev, op, name, status, json.loads(reply) if reply else None)
    return out

# Proves MQTT 5 commands and sessions with a real cloud broker: a command PUBLISH carries the response topic, correlation data (the device-visible id), message expiry (the reply timeout) and content type; a reply carrying only the correlation data completes the command; mosquitto_sub -V 5 sees the same properties; the device's receive maximum holds further commands until a PUBACK; a queued command reaches a device that resumes its session (subscriptions kept, session present) and expires when its ttl passes first; session expiry: a session is resumed within its interval, freed after it (counted, gauge back down), DISCONNECT may shorten it, expiry 0 keeps nothing.
import copy
import json
import subprocess
import time

import cmdlib as cl
import gwtest as g
import mqtt5lib as m5

THERMO = copy.deepcopy(g.THERMO)
THERMO["functions"][0]["timeout_ms"] = 3000
THERMQ = copy.deepcopy(THERMO)
THERMQ["id"] = "thermq"
THERMQ["commands"] = {"offline": "queue", "ttl_ms": 1500}
INVOKE = "/thermo/%s/function/invoke"


def next_publish(c, timeout=5.0):
    """The next PUBLISH a raw client reads (v5 fields), or None."""
    deadline = time.monotonic() + timeout * g.SLOW
    while time.monotonic() < deadline:
        try:
            p = c.read_packet(max(0.05, (deadline - time.monotonic()) / g.SLOW))
        except g.Closed:
            return None
        if p is not None and p.type == g.PUBLISH:
            return m5.publish5_fields(p)
    return None


def sub5(c, pid, topic):
    c.send(m5.subscribe5(pid, [(topic, 1)]))
    p = c.expect(g.SUBACK)
    return p and m5.suback5(p)[2]


def main(t):
    broker = g.Mosquitto(extra_conf=cl.BROKER_CONF)
    devs = g.make_devices(["t-001", "t-002", "t-003", "t-004"]) + \
        g.make_devices(["q-001"], "thermq")
    gw = g.Gateway(products=[THERMO, THERMQ], devices=devs, config={
        "north": cl.north(broker.port), "storage": {"batch_ms": 0}, "log_rate_limit": 0,
        "adapters": {"mqtt": {"session_expiry_s": 60}}})
    cloud = cl.Cloud(broker.port)
    t.check(cloud.wait_ready("thermo", "t-001"), "north link up")

    # ---- request/response: response topic + correlation data ----
    d = m5.client5(gw, "t-001", auto_puback=True)
    t.eq(sub5(d, 1, INVOKE % "t-001"), [1], "v5 device subscribes to its invoke topic")
    cloud.invoke("thermo", "t-001", "c-1", "reboot", {"delay_s": 1})
    pub = next_publish(d)
    t.check(pub is not None, "the v5 device receives the command")
    if pub:
        topic, qos, pid, pr, payload = pub
        t.eq(pr.get(m5.RESPONSE_TOPIC), INVOKE % "t-001" + "/reply", "response topic")
        t.eq(pr.get(m5.CORRELATION_DATA), b"c-1", "correlation data = the command's id")
        t.eq(pr.get(m5.MESSAGE_EXPIRY), 3, "message expiry = the reply timeout (3000 ms)")
        t.eq((pr.get(m5.CONTENT_TYPE), pr.get(m5.PAYLOAD_FORMAT)), ("application/json", 1),
             "content type and payload format of the json codec")
        # the reply names the command only by the correlation data
        a = d.pub_wait(pr.get(m5.RESPONSE_TOPIC, ""),
                       json.dumps({"success": True, "outputs": {"ok": True}}), 100,
                       [(m5.CORRELATION_DATA, pr.get(m5.CORRELATION_DATA, b""))])
        t.eq(a and a[1], 0, "reply with correlation data only: PUBACK 0")
        r = cloud.reply("t-001", "c-1")
        t.check(r and r[1].get("success") is True and r[1].get("outputs") == {"ok": True},
                "the cloud gets the command's reply (matched by correlation data)", r)
    d.close()

    # ---- mosquitto_sub -V 5 sees the properties ----
    ms = subprocess.Popen(["mosquitto_sub", "-V", "5", "-h", g.HOST, "-p", str(gw.mqtt_port),
                           "-i", "t-002", "-u", "thermo", "-P", g.secret_of("t-002"), "-q", "1",
                           "-t", INVOKE % "t-002", "-C", "1", "-W", str(int(15 * g.SLOW)),
                           "-F", "%t|%R|%D|%E|%C|%F"],
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        online = g.wait_until(lambda: gw.scalar(
            "SELECT count(*) FROM events WHERE device='t-002' AND kind='online'") >= 1, 5)
        t.check(online, "mosquitto_sub -V 5 connected")
        # the SUBACK may trail the online event: retry until the command is not refused
        for i in range(20):
            cloud.invoke("thermo", "t-002", "ms-%d" % i, "reboot", {"delay_s": 1})
            r = cloud.reply("t-002", "ms-%d" % i, 0.3)
            if r is None or r[1].get("code") != "send_failed":
                break
        out, err = ms.communicate(timeout=20 * g.SLOW)
    finally:
        if ms.poll() is None:
            ms.kill()
            ms.wait()
    f = out.strip().split("|")
    t.check(len(f) == 6 and f[0] == INVOKE % "t-002" and f[1] == INVOKE % "t-002" + "/reply"
            and f[2].startswith("ms-") and f[3] == "3" and f[4] == "application/json"
            and f[5] == "1", "mosquitto_sub -V 5: response topic, correlation data, expiry, "
            "content type, payload format", (out, err))

    # ---- the device's receive maximum holds commands until a PUBACK ----
    d = m5.client5(gw, "t-003", auto_puback=False, cprops=[(m5.RECEIVE_MAX, 1)])
    t.eq(sub5(d, 1, INVOKE % "t-003"), [1], "receive maximum 1: subscribed")
    cloud.invoke("thermo", "t-003", "rm-1", "reboot", {"delay_s": 1})
    cloud.invoke("thermo", "t-003", "rm-2", "reboot", {"delay_s": 1})
    p1 = next_publish(d)
    t.check(p1 and p1[4] and json.loads(p1[4]).get("messageId") == "rm-1", "first command sent",
            p1)
    # 0.5 s real time (not scaled): the held command must not reach its 3 s reply timeout
    p2 = next_publish(d, 0.5 / g.SLOW)
    t.check(p2 is None, "second command held: receive maximum 1 and no PUBACK yet", p2)
    if p1:
        d.send(g.puback_packet(p1[2]))
    p2 = next_publish(d)
    t.check(p2 and json.loads(p2[4]).get("messageId") == "rm-2",
            "after the PUBACK the second command is sent", p2)
    d.close()

    # ---- queued commands and a resumed session ----
    s0 = gw.metric("mqtt_sessions_stored")
    d = m5.client5(gw, "q-001", product="thermq", cprops=[(m5.SESSION_EXPIRY, 30)])
    t.eq(sub5(d, 1, "/thermq/q-001/function/invoke"), [1], "queueing device subscribed")
    d.send(m5.disconnect5(0))
    d.close()
    t.check(g.wait_until(lambda: gw.scalar(
        "SELECT count(*) FROM events WHERE device='q-001' AND kind='offline'") >= 1, 5),
        "queueing device offline")
    t.eq(gw.metric("mqtt_sessions_stored") - s0, 1, "its session is stored (gauge +1)")
    cloud.invoke("thermq", "q-001", "q-1", "reboot", {"delay_s": 1})
    time.sleep(0.3)  # let the command reach the gateway's queue (not a condition wait)
    d = m5.Client5(gw.mqtt_port)
    r = d.connect5("q-001", "thermq", clean=False, cprops=[(m5.SESSION_EXPIRY, 30)])
    t.check(r and r[1] == 0 and r[0], "reconnect within the session expiry: session present", r)
    pub = next_publish(d)
    t.check(pub and json.loads(pub[4]).get("messageId") == "q-1",
            "the queued command arrives on the kept subscription (no new SUBSCRIBE)", pub)
    t.check(pub and m5.MESSAGE_EXPIRY in pub[3], "... with its message expiry", pub and pub[3])
    d.send(m5.disconnect5(0))
    d.close()
    g.wait_until(lambda: gw.scalar(
        "SELECT count(*) FROM events WHERE device='q-001' AND kind='offline'") >= 2, 5)
    cloud.invoke("thermq", "q-001", "q-2", "reboot", {"delay_s": 1})
    r = cloud.reply("q-001", "q-2", 6)
    t.check(r and r[1].get("code") == "expired", "a queued command past its ttl expires", r)
    d = m5.Client5(gw.mqtt_port)
    r = d.connect5("q-001", "thermq", clean=False, cprops=[(m5.SESSION_EXPIRY, 30)])
    t.check(r and r[0], "session still present")
    t.check(next_publish(d, 0.8) is None, "the expired command is not delivered")
    # DISCONNECT shortens the session expiry to 0: freed at once
    d.send(m5.disconnect5(0, [(m5.SESSION_EXPIRY, 0)]))
    d.close()
    t.check(g.wait_until(lambda: gw.metric("mqtt_sessions_stored") == s0, 5),
            "DISCONNECT with session expiry 0: the session is freed at once")

    # ---- session expiry: freed after the interval ----
    e0 = gw.metric("mqtt_sessions_expired_total")
    d = m5.client5(gw, "t-004", cprops=[(m5.SESSION_EXPIRY, 1)])
    t.eq(sub5(d, 1, INVOKE % "t-004"), [1], "expiry 1 s: subscribed")
    d.close()
    t.check(g.wait_until(lambda: gw.metric("mqtt_sessions_expired_total") > e0, 5),
            "mqtt_sessions_expired_total +1 after the interval")
    t.check(g.wait_until(lambda: gw.metric("mqtt_sessions_stored") == s0, 5),
            "mqtt_sessions_stored back down (the expired session is freed)")
    d = m5.Client5(gw.mqtt_port)
    r = d.connect5("t-004", clean=False, cprops=[(m5.SESSION_EXPIRY, 30)])
    t.check(r and r[1] == 0 and not r[0], "reconnect after the interval: no session present", r)
    d.close()
    # expiry 0 (the MQTT 5 default) with clean start 0: nothing is stored
    d = m5.Client5(gw.mqtt_port)
    r = d.connect5("t-004", clean=False)
    t.check(r and r[1] == 0, "clean start 0, expiry 0: connected")
    t.eq(gw.metric("mqtt_sessions_stored"), s0 + 1, "... the stored session is resumed")
    d.close()
    t.check(g.wait_until(lambda: gw.metric("mqtt_sessions_stored") == s0, 5),
            "... and ends with the connection (expiry 0)")

    cloud.stop()
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")
    broker.stop()


g.run(main)

# Proves downstream commands end to end with a real cloud broker and real MQTT devices: invoke round trip with the exact payloads on both sides, device error, invalid input refused before sending (the device receives nothing), offline device answered at once, not-subscribed device, queued command delivered when the device comes back and TTL expiry, timeout then late reply counted, property write and read (also offline), an unknown device counted, 100 concurrent commands to 100 devices each answered with its own messageId, and the commands table recording each command and its outcome.
import copy
import json
import time

import cmdlib as cl
import gwtest as g

THERMO = copy.deepcopy(g.THERMO)
THERMO["functions"][0]["timeout_ms"] = 1500
THERMQ = copy.deepcopy(THERMO)
THERMQ["id"] = "thermq"
THERMQ["commands"] = {"offline": "queue", "ttl_ms": 2000}
N = 100


def main(t):
    broker = g.Mosquitto(extra_conf=cl.BROKER_CONF)
    devs = g.make_devices(g.thermo_ids(N)) + g.make_devices(["q-001"], "thermq")
    gw = g.Gateway(products=[THERMO, THERMQ], devices=devs,
                   config={"north": cl.north(broker.port), "storage": {"batch_ms": 0}})
    cloud = cl.Cloud(broker.port)
    t.check(cloud.wait_ready("thermo", "t-001"), "the gateway answers a property read (north up)")
    m0 = gw.metrics()

    # ---- invoke round trip: exact payloads both ways ----
    d1 = cl.Device(gw, "t-001")
    cloud.invoke("thermo", "t-001", "g-7", "reboot", {"delay_s": 5})
    got = d1.wait_command("g-7")
    t.check(got, "device receives the command")
    if got:
        t.eq(got[0], "/thermo/t-001/function/invoke", "on its invoke topic")
        t.eq(got[1], {"messageId": "g-7", "function": "reboot", "inputs": {"delay_s": 5}},
             "payload: messageId, function, inputs")
        t.eq(got[2], 1, "QoS 1 (its subscription's)")
    r = cloud.reply("t-001", "g-7")
    t.check(r, "cloud receives the reply")
    if r:
        t.eq(r[0], "iotgw/thermo/t-001/function/invoke/reply", "reply topic")
        d = r[1]
        t.eq((d.get("success"), d.get("outputs"), d.get("name"), d.get("kind"), d.get("product")),
             (True, {"ok": True}, "reboot", "function_reply", "thermo"), "reply payload")

    # ---- device reports a failure ----
    def answer(topic, d):
        if d["messageId"] == "g-err":
            return {"messageId": "g-err", "success": False, "error": "E42",
                    "message": "overheated"}
        if d["messageId"] in ("g-slow",):
            return None
        return cl.ok_reply(topic, d)
    d1.answer = answer
    cloud.invoke("thermo", "t-001", "g-err", "reboot", {"delay_s": 1})
    r = cloud.reply("t-001", "g-err")
    t.check(r and r[1].get("success") is False and r[1].get("code") == "device_error"
            and r[1].get("message") == "E42: overheated", "device error: code device_error with "
            "its text", r and r[1])

    # ---- invalid input: refused at once, nothing reaches the device ----
    n_before = len(d1.commands())
    cloud.invoke("thermo", "t-001", "g-bad", "reboot", {"delay_s": 99})
    cloud.invoke("thermo", "t-001", "g-fn", "selfdestruct", {})
    cloud.send("write", "thermo", "t-001", {"messageId": "g-ro", "properties": {"temperature": 1}})
    cloud.invoke("thermo", "t-001", "g-next", "reboot", {"delay_s": 0})
    r = cloud.reply("t-001", "g-bad")
    t.check(r and r[1].get("code") == "invalid_input"
            and r[1].get("message") == "inputs.delay_s: 99 is above max 60",
            "invalid input: code invalid_input, the validator's detail", r and r[1])
    r = cloud.reply("t-001", "g-fn")
    t.check(r and r[1].get("code") == "unknown_function", "unknown function", r and r[1])
    r = cloud.reply("t-001", "g-ro")
    t.check(r and r[1].get("code") == "not_writable" and
            r[0] == "iotgw/thermo/t-001/properties/write/reply", "read-only property: not_writable",
            r)
    t.check(d1.wait_command("g-next"), "the next valid command arrives")
    t.eq([c[1]["messageId"] for c in d1.commands()[n_before:]], ["g-next"],
         "the device received none of the refused commands")
    t.check(cloud.reply("t-001", "g-next"), "... and it is answered")

    # ---- offline device: answered at once ----
    t0 = time.monotonic()
    cloud.invoke("thermo", "t-002", "g-off", "reboot", {"delay_s": 1})
    r = cloud.reply("t-002", "g-off")
    t.check(r and r[1].get("code") == "device_offline", "offline device: device_offline",
            r and r[1])
    t.check(r and cloud.reply_time("t-002", "g-off") - t0 < 1.0 * g.SLOW,
            "offline answer at once (%.3f s)" % ((cloud.reply_time("t-002", "g-off") or t0) - t0))

    # ---- connected but not subscribed to the command topic ----
    d3 = cl.Device(gw, "t-003", subscribe=())
    cloud.invoke("thermo", "t-003", "g-nosub", "reboot", {"delay_s": 1})
    r = cloud.reply("t-003", "g-nosub")
    t.check(r and r[1].get("code") == "send_failed" and "not subscribed" in r[1].get("message", ""),
            "not subscribed: send_failed", r and r[1])
    d3.stop()

    # ---- a QoS 0 subscription (to everything under the device): the command at QoS 0 ----
    d4 = cl.Device(gw, "t-004", subscribe=("#",), qos=0)
    cloud.invoke("thermo", "t-004", "g-q0", "reboot", {"delay_s": 1})
    got = d4.wait_command("g-q0")
    t.check(got and got[0] == "/thermo/t-004/function/invoke" and got[2] == 0,
            "a wildcard QoS 0 subscription gets the command at QoS 0", got)
    t.check(cloud.reply("t-004", "g-q0"), "... and its reply completes it")
    d4.stop()

    # ---- queue product: delivered when the device comes back ----
    cloud.invoke("thermq", "q-001", "q-1", "reboot", {"delay_s": 2})
    t.check(g.wait_until(lambda: gw.metric("commands_queued_total") - m0.get(
        "commands_queued_total", 0) >= 1, 5), "queued for the offline device")
    t.eq(cloud.count("q-001", "q-1"), 0, "no reply while queued")
    dq = cl.Device(gw, "q-001", product="thermq")
    got = dq.wait_command("q-1")
    t.check(got and got[1] == {"messageId": "q-1", "function": "reboot", "inputs": {"delay_s": 2}},
            "queued command delivered after the device subscribed", got)
    r = cloud.reply("q-001", "q-1")
    t.check(r and r[1].get("success") is True, "queued command answered by the device", r)
    dq.stop()
    t.check(g.wait_until(lambda: gw.scalar(
        "SELECT online FROM device_state WHERE device='q-001'") == 0, 5), "q-001 offline again")
    t0 = time.monotonic()
    cloud.invoke("thermq", "q-001", "q-2", "reboot", {"delay_s": 2})
    r = cloud.reply("q-001", "q-2", 8)
    dt = (cloud.reply_time("q-001", "q-2") or t0) - t0
    t.check(r and r[1].get("code") == "expired", "never delivered: expired", r and r[1])
    t.check(1.9 <= dt < 4.0 * g.SLOW, "expired after the product's ttl_ms 2000 (%.2f s)" % dt)

    # ---- timeout, then the late reply is refused and counted ----
    late0 = gw.metric("commands_late_replies_total")
    rej0 = gw.metric("messages_rejected_total", reason="late_reply")
    t0 = time.monotonic()
    cloud.invoke("thermo", "t-001", "g-slow", "reboot", {"delay_s": 1})
    t.check(d1.wait_command("g-slow"), "slow command delivered")
    r = cloud.reply("t-001", "g-slow", 6)
    dt = (cloud.reply_time("t-001", "g-slow") or t0) - t0
    t.check(r and r[1].get("code") == "timeout" and
            r[1].get("message") == "no reply within 1500 ms", "timeout reply", r and r[1])
    t.check(1.4 <= dt < 3.0 * g.SLOW, "after the function's timeout_ms 1500 (%.2f s)" % dt)
    d1.publish_reply("invoke", {"messageId": "g-slow", "success": True, "outputs": {"ok": True}})
    t.check(g.wait_until(lambda: gw.metric("commands_late_replies_total") == late0 + 1, 5),
            "late reply counted (commands_late_replies_total)")
    t.eq(gw.metric("messages_rejected_total", reason="late_reply") - rej0, 1.0,
         "... and as a rejection (reason late_reply)")
    t.check(gw.find_log(msg="message rejected", reason="late_reply", dev="t-001"),
            "late reply logged with dev= and reason=")
    t.eq(cloud.count("t-001", "g-slow"), 1, "no second reply upstream for it")

    # ---- property write and read ----
    cloud.send("write", "thermo", "t-001", {"messageId": "w-1", "properties": {"mode": "eco"}})
    got = d1.wait_command("w-1")
    t.check(got and got[0] == "/thermo/t-001/properties/write" and
            got[1] == {"messageId": "w-1", "properties": {"mode": "eco"}},
            "write delivered on properties/write", got)
    r = cloud.reply("t-001", "w-1")
    t.check(r and r[0] == "iotgw/thermo/t-001/properties/write/reply" and
            r[1].get("success") is True and r[1].get("name") == "write" and
            r[1].get("kind") == "write_reply", "write reply", r)
    t.check(d1.report({"temperature": 21.5, "humidity": 40}), "device reports (committed)")
    cloud.send("read", "thermo", "t-001", {"messageId": "rd-1", "properties": ["temperature"]})
    r = cloud.reply("t-001", "rd-1")
    props = r and r[1].get("properties")
    t.check(r and r[0] == "iotgw/thermo/t-001/properties/read/reply" and
            r[1].get("kind") == "read_reply" and list(props) == ["temperature"] and
            props["temperature"]["value"] == 21.5 and props["temperature"]["time"] > 0,
            "read: the latest stored value", r)
    cloud.send("read", "thermo", "t-002", {"messageId": "rd-2"})
    r = cloud.reply("t-002", "rd-2")
    t.check(r and r[1].get("success") is True and r[1].get("properties") == {},
            "read of an offline device that never reported: success, no values", r)

    # ---- unknown device: counted and logged, nothing to reply on ----
    rej0 = gw.metric("commands_rejected_total")
    cloud.invoke("thermo", "ghost", "g-ghost", "reboot", {"delay_s": 1})
    t.check(g.wait_until(lambda: gw.metric("commands_rejected_total") == rej0 + 1, 5),
            "unknown device counted")
    t.check(g.wait_until(lambda: gw.find_log(msg="command for an unknown device dropped",
                                             device="ghost"), 5), "unknown device logged")

    # ---- 100 concurrent commands to 100 devices ----
    devices = [d1] + [cl.Device(gw, dev) for dev in g.thermo_ids(N)[1:]]
    t0 = time.monotonic()
    for i, dev in enumerate(g.thermo_ids(N)):
        cloud.invoke("thermo", dev, "c-%d" % i, "reboot", {"delay_s": i % 60})
    ok = g.wait_until(lambda: all(cloud.count(dev, "c-%d" % i) for i, dev in
                                  enumerate(g.thermo_ids(N))), 20)
    dt = time.monotonic() - t0
    t.check(ok, "100 commands, 100 replies")
    right = 0
    for i, dev in enumerate(g.thermo_ids(N)):
        r = cloud.reply(dev, "c-%d" % i, 0.1)
        got = devices[i].wait_command("c-%d" % i, 0.1)
        if (r and r[1].get("success") is True and r[1].get("device") == dev and got and
                got[1]["inputs"] == {"delay_s": i % 60}):
            right += 1
    t.eq(right, N, "each device got its own command and each reply carries its messageId")
    t.info("figure: 100 concurrent commands answered in %.3f s" % dt)
    rtts = []
    for i in range(20):  # one at a time: cloud -> gateway -> device -> gateway -> store -> cloud
        t0 = time.monotonic()
        cloud.invoke("thermo", "t-001", "s-%d" % i, "reboot", {"delay_s": 0})
        if cloud.reply("t-001", "s-%d" % i):
            rtts.append(cloud.reply_time("t-001", "s-%d" % i) - t0)
    t.eq(len(rtts), 20, "20 sequential commands answered")
    if rtts:
        rtts.sort()
        t.info("figure: sequential command round trip median %.1f ms, max %.1f ms"
               % (1000 * rtts[len(rtts) // 2], 1000 * rtts[-1]))

    # ---- the commands table ----
    rows = cl.commands_rows(gw, "msg_id NOT LIKE 'probe-%'")
    want = {"g-7": ("invoke", "reboot", "success"), "g-err": ("invoke", "reboot", "failed"),
            "g-bad": ("invoke", "reboot", "rejected"), "g-fn": ("invoke", "selfdestruct",
                                                                 "rejected"),
            "g-ro": ("write", "write", "rejected"), "g-off": ("invoke", "reboot", "offline"),
            "g-nosub": ("invoke", "reboot", "failed"), "q-1": ("invoke", "reboot", "success"),
            "q-2": ("invoke", "reboot", "expired"), "g-slow": ("invoke", "reboot", "timeout"),
            "w-1": ("write", "write", "success"), "rd-1": ("read", "read", "success")}
    for mid, (op, name, status) in want.items():
        row = rows.get(mid)
        t.eq(row and row[1:4], (op, name, status), "commands row %s" % mid)
    r = rows.get("g-7")
    t.eq(r and r[4], {"success": True, "outputs": {"ok": True}}, "the row keeps the reply")
    t.eq(sum(1 for k, v in rows.items() if k.startswith("c-") and v[3] == "success"), N,
         "100 concurrent commands: 100 rows 'success'")
    t.eq(gw.scalar("SELECT count(*) FROM commands WHERE msg_id='g-ghost'"), 0,
         "no row for an unknown device")
    req = gw.scalar("SELECT request FROM commands WHERE msg_id='g-7'")
    t.eq(json.loads(req) if req else None,
         {"messageId": "g-7", "function": "reboot", "inputs": {"delay_s": 5}}, "the row keeps "
         "the request")

    m1 = gw.metrics()
    t.eq(m1.get("commands_pending"), 0.0, "commands_pending back to 0")
    t.check(g.metric_delta(m0, m1, "commands_sent_total") >= N + 5, "commands_sent_total",
            g.metric_delta(m0, m1, "commands_sent_total"))
    t.check(g.metric_delta(m0, m1, "commands_replied_total") >= N + 4, "commands_replied_total")
    t.eq(g.metric_delta(m0, m1, "commands_timeouts_total"), 1.0, "commands_timeouts_total +1")
    t.eq(g.metric_delta(m0, m1, "commands_expired_total"), 1.0, "commands_expired_total +1")
    t.eq(g.metric_delta(m0, m1, "commands_offline_total"), 1.0, "commands_offline_total +1")

    for d in devices:
        d.stop()
    cloud.stop()
    t.eq(gw.stop(), 0, "gateway exits 0")
    broker.stop()


g.run(main)

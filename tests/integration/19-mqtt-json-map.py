# Proves the JSON mapping: a product whose devices send their own JSON ("json": {"properties": {...paths...}, "events", "timestamp", "message_id"}) is stored as normalised thing-model values (scale and offset applied, device timestamp in seconds, message id), validation still applies, rejections name the path that did not match (in the log and on the device's /reply topic), and mosquitto_pub as the device works unchanged.
import copy
import json
import subprocess

import gwtest as g

LEGACY = copy.deepcopy(g.THERMO)
LEGACY["id"] = "legacy"
LEGACY["json"] = {
    "properties": {"temperature": {"path": "$.d.t", "scale": 0.1, "add": -40},
                   "humidity": "$.d['rh%']", "label": "$.tags[0]"},
    "events": {"overheat": {"t": "$.alarm.temp"}},
    "timestamp": {"path": "$.ts", "unit": "s"},
    "message_id": "$.seq",
}


def main(t):
    devs = g.make_devices(["l-1", "l-2"], "legacy") + g.make_devices(["t-001"])
    gw = g.Gateway(products=[g.THERMO, LEGACY], devices=devs)
    topic = g.report_topic("l-1", "legacy")

    c = g.device_client(gw, "l-1", "legacy")
    c.send(g.subscribe_packet(1, [(topic + "/reply", 0)]))
    t.check(c.read_packet(3) is not None, "subscribed to the reply topic")
    c.publish(topic, json.dumps({"seq": 41, "ts": 1700000000, "d": {"t": 615, "rh%": 40},
                                 "tags": ["kitchen"]}), 1, 1)
    p = c.read_packet(5)
    t.check(p is not None and p.type == g.PUBACK, "the device's own JSON is acknowledged")
    row = gw.query("SELECT payload, ts, msg_id FROM events WHERE device='l-1' AND "
                   "kind='property'")
    t.eq(len(row), 1, "one property event stored")
    if row:
        t.eq(json.loads(row[0][0]), {"temperature": 21.5, "humidity": 40, "label": "kitchen"},
             "values mapped, scaled (615 * 0.1 - 40) and normalised")
        t.eq(row[0][1], 1700000000000, "device timestamp in seconds -> epoch ms")
        t.eq(row[0][2], "41", "message id from $.seq")

    # a value out of range is still refused by the thing model
    c.publish(topic, json.dumps({"seq": 42, "d": {"t": 2000}}), 1, 2)
    got = [c.read_packet(5), c.read_packet(5)]
    reply = [x for x in got if x is not None and x.type == g.PUBLISH]
    t.check(reply and b"out_of_range" in reply[0].body and b"properties.temperature" in
            reply[0].body, "out of range after scaling: rejected with out_of_range on /reply",
            reply and reply[0].body)
    # nothing the map knows: the rejection names the paths tried
    c.publish(topic, json.dumps({"seq": 43, "x": 1}), 1, 3)
    got = [c.read_packet(5), c.read_packet(5)]
    reply = [x for x in got if x is not None and x.type == g.PUBLISH]
    t.check(reply and b"$.d.t" in reply[0].body and b"empty_report" in reply[0].body,
            "no mapped value: the reply names the paths tried", reply and reply[0].body)
    # a required event param whose path does not match
    c.publish(g.event_topic("l-1", "overheat", "legacy"), json.dumps({"alarm": {}}), 1, 4)
    g.wait_until(lambda: "did not match" in gw.log, 5)
    t.check("data.t: path $.alarm.temp did not match" in gw.log and "dev=l-1" in gw.log,
            "the log names the device and the path that did not match")
    c.publish(g.event_topic("l-1", "overheat", "legacy"),
              json.dumps({"alarm": {"temp": 90.5}}), 1, 5)
    g.wait_until(lambda: gw.scalar("SELECT count(*) FROM events WHERE kind='event'") == 1, 5)
    t.eq(gw.scalar("SELECT payload FROM events WHERE kind='event'"), '{"t":90.5}',
         "an event mapped from $.alarm.temp")
    c.close()

    # mosquitto_pub as an unchanged legacy device
    r = subprocess.run(["mosquitto_pub", "-h", g.HOST, "-p", str(gw.mqtt_port), "-i", "l-2",
                        "-u", "legacy", "-P", g.secret_of("l-2"), "-q", "1", "-t",
                        g.report_topic("l-2", "legacy"), "-m", '{"d":{"t":700,"rh%":55}}'],
                       capture_output=True, timeout=20)
    t.eq(r.returncode, 0, "mosquitto_pub exits 0")
    g.wait_until(lambda: gw.scalar("SELECT count(*) FROM events WHERE device='l-2' AND "
                                   "kind='property'") == 1, 5)
    t.eq(gw.scalar("SELECT value FROM property_state WHERE device='l-2' AND "
                   "property='temperature'"), "30.0", "property_state from the mapped value")
    # the contract product next to it is unaffected
    d = g.device_client(gw, "t-001")
    d.publish(g.report_topic("t-001"), g.report_payload("c-1", {"temperature": 20.5}), 1, 1)
    p = d.read_packet(5)
    t.check(p is not None and p.type == g.PUBACK, "a contract product still decodes the contract")
    d.close()

    # config errors name the product file and the JSON path
    bad = copy.deepcopy(LEGACY)
    bad["json"]["properties"]["pressure"] = "$.p"
    gw2 = g.Gateway(products=[bad], devices=g.make_devices(["l-1"], "legacy"), start=False)
    rc, _, err = g.check_config(gw2)
    t.check(rc == 2 and "legacy.json: json.properties.pressure: not a property of legacy" in err,
            "an unknown property in the map is a config error naming the file and JSON path", err)
    gw.stop()


g.run(main)

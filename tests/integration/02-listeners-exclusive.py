# Proves listeners are exclusive: two adapters (or admin and an adapter) on one port of one transport, a wildcard address over another's, and udp beside coap on one port (the README's old example) are config errors (--check-config exits 2 naming the file and JSON path), TCP and UDP on one number are not; a second gateway on the ports of a running one exits non-zero naming the port (MQTT/TCP, CoAP/UDP, and a wildcard over a specific address), and the first keeps every device: its connected client still gets PUBACKs and every new connection reaches it.
import re
import socket
import time

import gwtest as g


def free_port_both():
    """A port number free for both TCP and UDP on 127.0.0.1 and the wildcard."""
    for _ in range(50):
        p = g.free_port()
        try:
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            u.bind(("0.0.0.0", p))
            u.close()
            s = socket.socket()
            s.bind(("0.0.0.0", p))
            s.close()
            return p
        except OSError:
            continue
    raise RuntimeError("no free port")


SENSOR_UDP = g.load_product("sensor-udp")
SENSOR_COAP = g.load_product("sensor-coap")
PRODUCTS = [g.THERMO, SENSOR_UDP, SENSOR_COAP]
DEVICES = g.make_devices(g.thermo_ids(30))


def config_case(t, what, adapters, admin=None, want_path=None, want_ok=False):
    cfg = {"adapters": adapters}
    if admin is not None:
        cfg["admin"] = admin
    # only products some configured adapter serves (so that the only error is the port's)
    on = [a for a in ("mqtt", "udp", "coap", "tcp") if adapters.get(a, a == "mqtt")]
    products = [p for a, p in (("mqtt", g.THERMO), ("udp", SENSOR_UDP), ("coap", SENSOR_COAP),
                               ("tcp", "meter-tcp")) if a in on]
    products = [g.load_product(p) if isinstance(p, str) else p for p in products]
    devices = DEVICES if g.THERMO in products else []
    gw = g.Gateway(products=products, devices=devices, config=cfg, start=False)
    code, out, err = g.check_config(gw)
    if want_ok:
        t.eq(code, 0, "%s: --check-config exits 0" % what)
        t.check("config ok" in out, "%s: config ok" % what, out + err)
        return
    t.eq(code, 2, "%s: --check-config exits 2" % what)
    pat = r"gateway\.json: " + re.escape(want_path) + r": (tcp|udp) port \d+ is already taken by "
    t.check(re.search(pat, err), "%s: error names the file and %s" % (what, want_path), err)
    lines = [ln for ln in err.splitlines() if ln and not ln.startswith("iotgw: ")]
    t.check(lines and all(" is already taken by " in ln for ln in lines),
            "%s: the only errors are the port's" % what, err)


def config_errors(t):
    p = free_port_both()
    q = free_port_both()
    mqtt_p = {"listeners": [{"address": g.HOST, "port": p}]}
    # the README's old UDP example: sensor-udp on 5683 beside CoAP
    config_case(t, "udp beside coap on one port", {
        "mqtt": None,
        "udp": {"listeners": [{"address": "0.0.0.0", "port": q, "product": "sensor-udp"}]},
        "coap": {"listeners": [{"address": "0.0.0.0", "port": q}, {"address": "::", "port": q}]},
    }, want_path="adapters.coap.listeners[0].port")
    config_case(t, "tcp (meter) beside mqtt on one port", {
        "mqtt": mqtt_p,
        "tcp": {"listeners": [{"address": g.HOST, "port": p, "product": "meter-tcp"}]},
    }, want_path="adapters.tcp.listeners[0].port")
    config_case(t, "admin on the mqtt port", {"mqtt": mqtt_p},
                admin={"enabled": True, "address": g.HOST, "port": p},
                want_path="adapters.mqtt.listeners[0].port")
    config_case(t, "mqtt on 0.0.0.0 over a tcp listener on 127.0.0.1", {
        "mqtt": {"listeners": [{"address": "0.0.0.0", "port": p}]},
        "tcp": {"listeners": [{"address": g.HOST, "port": p, "product": "meter-tcp"}]},
    }, want_path="adapters.tcp.listeners[0].port")
    config_case(t, "udp on :: (dual-stack) over coap on 127.0.0.1", {
        "mqtt": None,
        "coap": {"listeners": [{"address": g.HOST, "port": q}]},
        "udp": {"listeners": [{"address": "::", "port": q, "product": "sensor-udp"}]},
    }, want_path="adapters.udp.listeners[0].port")
    config_case(t, "coap plain and DTLS on one port", {
        "mqtt": None,
        "udp": {"listeners": [{"address": g.HOST, "port": 0, "product": "sensor-udp"}]},
        "coap": {"listeners": [{"address": g.HOST, "port": q}],
                 "dtls_listeners": [{"address": g.HOST, "port": q}]},
    }, want_path="adapters.coap.dtls_listeners[0].port")
    # not conflicts: TCP and UDP on one number; 0.0.0.0 + :: inside one adapter; 127.0.0.1 and
    # 127.0.0.2 apart; port 0 (ephemeral) everywhere
    config_case(t, "mqtt (tcp) and coap (udp) on one number", {
        "mqtt": mqtt_p,
        "udp": {"listeners": [{"address": g.HOST, "port": 0, "product": "sensor-udp"}]},
        "coap": {"listeners": [{"address": "0.0.0.0", "port": p}, {"address": "::", "port": p}]},
    }, want_ok=True)
    config_case(t, "udp and coap on two addresses of one port", {
        "mqtt": None,
        "udp": {"listeners": [{"address": "127.0.0.2", "port": q, "product": "sensor-udp"}]},
        "coap": {"listeners": [{"address": g.HOST, "port": q}], "dtls_listeners": [
            {"address": g.HOST, "port": 0}]},
    }, want_ok=True)


def refused_start(t, what, first, cfg, port):
    """Starts a second gateway with cfg; it must exit non-zero naming the port."""
    second = g.Gateway(products=PRODUCTS, devices=DEVICES, config=cfg, start=False)
    t0 = time.monotonic()
    try:
        second.start()
        started = True
    except g.GatewayError:
        started = False
    t.check(not started, "%s: the second gateway does not start" % what, second.log_tail())
    if started:  # (a gateway without the probe shares the ports) stopped here to go on
        second.kill()
    code = second.proc.wait(10 * g.SLOW) if second.proc else None
    t.check(code not in (None, 0), "%s: the second gateway exits non-zero (%r) in %.1f s"
            % (what, code, time.monotonic() - t0))
    lines = [d for d in second.find_log(level="error") if d.get("port") == str(port)]
    t.check(lines and "in use" in lines[0].get("error", ""),
            "%s: its error line names port %d and 'in use'" % (what, port), second.log_tail(5))
    t.check(not any("iotgw started" in ln for ln in second.log_lines()),
            "%s: the second gateway never started serving" % what)
    t.check(first.alive(), "%s: the first gateway still runs" % what)


def second_gateway(t):
    p = free_port_both()
    q = free_port_both()
    cfg = {"adapters": {
        "mqtt": {"listeners": [{"address": g.HOST, "port": p}]},
        "udp": {"listeners": [{"address": g.HOST, "port": 0, "product": "sensor-udp"}]},
        "coap": {"listeners": [{"address": g.HOST, "port": q}]},
    }}
    first = g.Gateway(products=PRODUCTS, devices=DEVICES, config=cfg, loops=2)
    t.eq(first.mqtt_port, p, "first gateway: mqtt on the configured port")
    held = g.device_client(first, "t-001")
    ack = held.publish_wait(g.report_topic("t-001"), g.report_payload("before", {"humidity": 1}),
                            1)
    t.check(ack is not None, "first gateway: its client's report is PUBACKed")

    refused_start(t, "same mqtt and coap ports", first, cfg, p)
    # only the CoAP port taken (mqtt ephemeral): the UDP probe
    refused_start(t, "same coap (udp) port", first, g.deep_merge(cfg, {"adapters": {
        "mqtt": {"listeners": [{"address": g.HOST, "port": 0}]}}}), q)
    # a wildcard over the first's 127.0.0.1
    refused_start(t, "mqtt on 0.0.0.0 over the first's 127.0.0.1", first, g.deep_merge(cfg, {
        "adapters": {"mqtt": {"listeners": [{"address": "0.0.0.0", "port": p}]},
                     "coap": {"listeners": [{"address": g.HOST, "port": 0}]}}}), p)

    # the first keeps every device: the held client publishes, and every new connection and
    # every CoAP request reaches it
    pid = 10
    ok = 0
    for i in range(20):
        pid += 1
        if held.publish_wait(g.report_topic("t-001"),
                             g.report_payload("held-%d" % i, {"humidity": i}), pid) is not None:
            ok += 1
    t.eq(ok, 20, "the first gateway's connected client: 20 more reports PUBACKed")
    accepted = 0
    for n in range(2, 26):
        dev = "t-%03d" % n
        try:
            c = g.device_client(first, dev)
        except Exception as e:  # noqa: BLE001
            t.info("connect %s: %r" % (dev, e))
            continue
        if c.publish_wait(g.report_topic(dev), g.report_payload("new-" + dev, {"humidity": n}),
                          1) is not None:
            accepted += 1
        c.close()
    t.eq(accepted, 24, "24 new connections all reach the first gateway (CONNACK 0 and PUBACK)")
    t.eq(first.scalar("SELECT count(*) FROM events WHERE msg_id LIKE 'new-%' OR "
                      "msg_id LIKE 'held-%' OR msg_id='before'"), 45,
         "every report is in the first gateway's database")
    held.close()
    first.stop()


def main(t):
    config_errors(t)
    second_gateway(t)


g.run(main)

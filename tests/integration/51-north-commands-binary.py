# Proves downstream commands to binary-frame devices with a real cloud broker: over TCP (meter-tcp) the invoke and write frames byte for byte with the device's seq, replies matched by seq and answered upstream with the cloud's messageId, a device-reported failure, a late reply counted, a command queued for an offline meter sent right after its login; over UDP (sensor-udp) the command datagrams sent to the device's address (and to its new one after it moves), replies matched, an offline sensor answered at once; the commands table records every outcome.
import struct
import zlib

import binframes as b
import cmdlib as cl
import gwtest as g
import sensor_udp as su

METER_IDS = ["mtr00001", "mtr00002"]
SENSOR_IDS = ["snr00001", "snr00002"]


def meter_cmd(data):
    """(cmd, seq, body) of a meter frame after checking its length field and CRC, or None."""
    if len(data) < 8 or data[0] != 0x68:
        return None
    n = struct.unpack(">H", data[1:3])[0]
    if len(data) != 3 + n or struct.unpack("<H", data[-2:])[0] != b.crc16_modbus(data[:-2]):
        return None
    return data[3], struct.unpack(">H", data[4:6])[0], data[6:-2]


def sensor_cmd(data):
    """(type, device, token, seq, body) of a sensor datagram after checking its CRC, or None."""
    if not data or len(data) < 25 or data[0] != 0xA5 or \
            struct.unpack(">I", data[-4:])[0] != zlib.crc32(data[:-4]):
        return None
    return (data[2], data[3:11].rstrip(b"\0").decode(), data[11:19],
            struct.unpack("<H", data[19:21])[0], data[21:-4])


def main(t):
    broker = g.Mosquitto(extra_conf=cl.BROKER_CONF)
    meter = g.load_product(b.METER)
    meter["commands"] = {"offline": "queue", "ttl_ms": 10000}
    sensor = g.load_product(su.PRODUCT)
    devices = b.meter_devices(METER_IDS) + su.devices(SENSOR_IDS)
    cfg = {"north": cl.north(broker.port),
           "adapters": {"mqtt": None,
                        "tcp": {"listeners": [{"address": g.HOST, "port": 0,
                                               "product": b.METER}]},
                        "udp": {"listeners": [{"address": g.HOST, "port": 0,
                                               "product": su.PRODUCT}]}}}
    gw = g.Gateway(products=[meter, sensor], devices=devices, config=cfg)
    cloud = cl.Cloud(broker.port)
    t.check(cloud.wait_ready(su.PRODUCT, "snr00001"), "north up (a property read is answered)")
    tcp_port, udp_port = gw.product_ports[b.METER], gw.product_ports[su.PRODUCT]

    # ---- TCP: invoke, frame by frame ----
    dev = "mtr00001"
    d = b.Dev(tcp_port)
    d.send(b.meter_login(dev, b.meter_secret(dev)))
    t.eq(d.recv_n(10), b.meter_ack(1, 1), "meter logged in")
    cloud.invoke(b.METER, dev, "t-1", "reset_counter", {"confirm": True})
    f = d.recv_n(9)
    t.eq(f, b.meter_frame(0x85, 1, b"\x01"), "invoke frame: 85, seq 1, confirm 01, CRC")
    d.send(b.meter_frame(0x05, 1, b"\x00" + struct.pack(">I", 123456)))
    r = cloud.reply(dev, "t-1")
    t.check(r and r[0] == "iotgw/meter-tcp/mtr00001/function/invoke/reply" and
            r[1].get("success") is True and r[1].get("outputs") == {"previous_kwh": 1234.56} and
            r[1].get("name") == "reset_counter", "reply matched by seq, upstream with the "
            "cloud's messageId and the scaled output", r)

    # write: the tariff frame, then its reply
    cloud.send("write", b.METER, dev, {"messageId": "t-2", "properties": {"tariff": "day"}})
    f = meter_cmd(d.recv_n(9))
    t.eq(f, (0x86, 2, b"\x00"), "write frame: 86, seq 2, tariff day = 0")
    d.send(b.meter_frame(0x06, 2, b"\x00"))
    r = cloud.reply(dev, "t-2")
    t.check(r and r[1].get("success") is True and r[1].get("kind") == "write_reply",
            "write reply", r)

    # the device reports a failure (result 1)
    cloud.invoke(b.METER, dev, "t-3", "reset_counter", {"confirm": False})
    f = meter_cmd(d.recv_n(9))
    t.eq(f, (0x85, 3, b"\x00"), "second invoke: seq 3, confirm 00")
    d.send(b.meter_frame(0x05, 3, b"\x01" + struct.pack(">I", 0)))
    r = cloud.reply(dev, "t-3")
    t.check(r and r[1].get("success") is False and r[1].get("code") == "device_error",
            "result 1: device_error", r)

    # a reply nobody waits for: counted
    late0 = gw.metric("commands_late_replies_total")
    d.send(b.meter_frame(0x05, 999, b"\x00" + struct.pack(">I", 1)))
    t.check(g.wait_until(lambda: gw.metric("commands_late_replies_total") == late0 + 1, 5),
            "reply with an unknown seq: late reply counted")
    d.send(b.meter_heartbeat(4))
    t.eq(d.recv_n(10), b.meter_ack(4, 4), "the connection goes on (heartbeat acked)")

    # queued for an offline meter: sent right after its login's ack
    dev2 = "mtr00002"
    cloud.invoke(b.METER, dev2, "t-q", "reset_counter", {"confirm": True})
    t.check(g.wait_until(lambda: gw.metric("commands_queued_total") >= 1, 5),
            "queued for the offline meter")
    d2 = b.Dev(tcp_port)
    d2.send(b.meter_login(dev2, b.meter_secret(dev2)))
    t.eq(d2.recv_n(10), b.meter_ack(1, 1), "mtr00002 logged in")
    f = meter_cmd(d2.recv_n(9))
    t.eq(f, (0x85, 1, b"\x01"), "the queued invoke follows the login ack (its own seq 1)")
    d2.send(b.meter_frame(0x05, 1, b"\x00" + struct.pack(">I", 50)))
    r = cloud.reply(dev2, "t-q")
    t.check(r and r[1].get("outputs") == {"previous_kwh": 0.5}, "queued command answered", r)

    # ---- UDP ----
    sdev = "snr00001"
    c = su.Client(udp_port)
    c.send(su.heartbeat(sdev, 1))
    t.check(c.ack(), "sensor heartbeat acked (online)")
    cloud.invoke(su.PRODUCT, sdev, "u-1", "identify", {"blink_s": 3})
    f = sensor_cmd(c.recv(5))
    t.eq(f, (0x82, sdev, b"\0" * 8, 1, struct.pack("<H", 3)),
         "identify datagram to the sensor's address: 82, its id, no token, seq 1, blink 3")
    c.send(su.frame(0x04, sdev, su.token_of(sdev), 1, b"\x00\x01"))
    r = cloud.reply(sdev, "u-1")
    t.check(r and r[1].get("success") is True and r[1].get("outputs") == {"ok": True},
            "identify reply", r)

    # the sensor moves to another source port: the next command follows it
    c2 = su.Client(udp_port)
    c2.send(su.heartbeat(sdev, 2))
    t.check(c2.ack(), "heartbeat from the new address acked")
    cloud.send("write", su.PRODUCT, sdev, {"messageId": "u-2", "properties": {"interval_s": 30}})
    f = sensor_cmd(c2.recv(5))
    t.eq(f, (0x83, sdev, b"\0" * 8, 2, struct.pack("<H", 30)),
         "write datagram to the new address: 83, seq 2, interval 30")
    t.check(c.quiet(0.2), "nothing to the old address")
    c2.send(su.frame(0x05, sdev, su.token_of(sdev), 2, b"\x00"))
    r = cloud.reply(sdev, "u-2")
    t.check(r and r[1].get("success") is True and r[1].get("name") == "write", "write reply", r)

    # an offline sensor: answered at once
    cloud.invoke(su.PRODUCT, "snr00002", "u-off", "identify", {"blink_s": 1})
    r = cloud.reply("snr00002", "u-off")
    t.check(r and r[1].get("code") == "device_offline", "offline sensor: device_offline", r)

    # ---- the commands table ----
    rows = cl.commands_rows(gw, "msg_id NOT LIKE 'probe-%'")
    want = {"t-1": (dev, "invoke", "reset_counter", "success"),
            "t-2": (dev, "write", "write", "success"),
            "t-3": (dev, "invoke", "reset_counter", "failed"),
            "t-q": (dev2, "invoke", "reset_counter", "success"),
            "u-1": (sdev, "invoke", "identify", "success"),
            "u-2": (sdev, "write", "write", "success"),
            "u-off": ("snr00002", "invoke", "identify", "offline")}
    for mid, w in want.items():
        row = rows.get(mid)
        t.eq(row and row[:4], w, "commands row %s" % mid)
    t.eq(rows.get("t-1") and rows["t-1"][4],
         {"success": True, "outputs": {"previous_kwh": 1234.56}}, "the row keeps the reply")
    t.eq(gw.metric("commands_pending"), 0.0, "nothing pending")

    for x in (d, d2):
        x.close()
    for x in (c, c2):
        x.close()
    cloud.stop()
    t.eq(gw.stop(), 0, "gateway exits 0")
    broker.stop()


g.run(main)

# Proves the teltonika-fmb example product over real sockets (TCP, auth.mode device-id, a cloud broker for commands): the IMEI handshake answered 01, the Teltonika wiki's Codec 8 examples 1 and 3 and its Codec 8 Extended example answered with their record counts (4 bytes) once committed, each record a row at its own timestamp with its IO elements as properties; packets of 2 and 50 records; unknown IO ids skipped and counted; a bad CRC not answered (the session goes on); a second count, a data length that disagrees with the record count and an IO list cut short refused (no answer, counted) while the session goes on; a packet split on the wire waited for; a Codec 12 command sent byte for byte as the wiki's "getinfo" and the device's response returned to the cloud as the function's output; an IMEI not in the registry answered 00 and closed; --check-config refusing a handshake product that is not auth.mode device-id, and a group over UDP.
import json
import struct
import subprocess

import binframes as b
import cmdlib as cl
import gwtest as g

PRODUCT = "teltonika-fmb"
IMEI = "356307042441013"

HANDSHAKE = bytes.fromhex("000F333536333037303432343431303133")
C8_EX1 = bytes.fromhex(
    "000000000000003608010000016B40D8EA30010000000000000000000000000000000105021503010101425E0F01"
    "F10000601A014E0000000000000000010000C7CF")
C8_EX3 = bytes.fromhex(
    "000000000000004308020000016B40D57B480100000000000000000000000000000001010101000000000000016B"
    "40D5C198010000000000000000000000000000000101010101000000020000252C")
C8E_EX = bytes.fromhex(
    "000000000000004A8E010000016B412CEE000100000000000000000000000000000000010005000100010100010011"
    "001D00010010015E2C880002000B000000003544C87A000E000000001DD7E06A00000100002994")
C12_GETINFO = bytes.fromhex("000000000000000F0C010500000007676574696E666F0100004312")
C12_RESPONSE = bytes.fromhex(
    "00000000000000900C010600000088494E493A323031392F372F323220373A3232205254433A323031392F372F32"
    "3220373A3533205253543A32204552523A312053523A302042523A302043463A302046473A3020464C3A30205455"
    "3A302F302055543A3020534D533A30204E4F4750533A303A3330204750533A31205341543A302052533A33205246"
    "3A36352053463A31204D443A30010000C78F")


def crc16_arc(data):
    crc = 0
    for x in data:
        crc ^= x
        for _ in range(8):
            crc = (crc >> 1) ^ 0xA001 if crc & 1 else crc >> 1
    return crc


def packet(data, crc_ok=True):
    """00000000 | data length | data (codec id .. second count) | CRC-16/ARC in 4 bytes."""
    crc = crc16_arc(data) ^ (0 if crc_ok else 1)
    return b"\0\0\0\0" + struct.pack(">I", len(data)) + data + struct.pack(">I", crc)


def record(ts, lat=0.0, lon=0.0, alt=0, angle=0, sats=0, speed=0, io1=(), io2=(), io4=(), io8=()):
    """One Codec 8 AVL record: time, priority 0, GPS element, IO element (event id 0)."""
    gps = struct.pack(">iihHBH", round(lon * 1e7), round(lat * 1e7), alt, angle, sats, speed)
    io = b""
    for fmt, items in (("B", io1), ("H", io2), ("I", io4), ("Q", io8)):
        io += bytes([len(items)]) + b"".join(bytes([k]) + struct.pack(">" + fmt, v)
                                             for k, v in items)
    total = len(io1) + len(io2) + len(io4) + len(io8)
    return struct.pack(">QB", ts, 0) + gps + bytes([0, total]) + io


def codec8(records, first=None, second=None):
    n = len(records)
    return packet(bytes([0x08, n if first is None else first]) + b"".join(records) +
                  bytes([n if second is None else second]))


def connect(port, imei_frame=HANDSHAKE):
    d = b.Dev(port)
    d.send(imei_frame)
    return d, d.recv_n(1)


def rows(gw, since_ts=0):
    return gw.query("SELECT ts, payload FROM events WHERE kind='property' AND device=? AND ts>=? "
                    "ORDER BY ts", (IMEI, since_ts))


def main(t):
    t.eq(packet(C8_EX1[8:-4]), C8_EX1, "python builder: the wiki's example 1 with its CRC")
    broker = g.Mosquitto(extra_conf=cl.BROKER_CONF)
    cfg = {"north": cl.north(broker.port),
           "adapters": {"mqtt": None, "tcp": {"listeners": [
               {"address": g.HOST, "port": 0, "product": PRODUCT}]}}}
    gw = g.Gateway(products=[g.load_product(PRODUCT)], devices=[{"id": IMEI, "product": PRODUCT}],
                   config=cfg)
    port = gw.product_ports[PRODUCT]
    m0 = gw.metrics()

    # the handshake: 2-byte length + IMEI, answered 01
    d, a = connect(port)
    t.eq(a, b"\x01", "IMEI handshake answered 01")

    # the wiki's example 1: one record; the ack (4 bytes, the count) only after the commit
    d.send(C8_EX1)
    t.eq(d.recv_n(4), b"\0\0\0\x01", "Codec 8 example 1 answered 00000001")
    r = rows(gw)  # no wait: the ack says it is committed
    t.eq([ts for ts, _ in r], [1560161086000], "one row at the record's time (2019-06-10 10:04:46)")
    if r:
        v = json.loads(r[0][1])
        t.eq({k: v.get(k) for k in ("gsm_signal", "din1", "gsm_operator", "ibutton", "lat",
                                    "speed")},
             {"gsm_signal": 3, "din1": True, "gsm_operator": 24602,
              "ibutton": "0000000000000000", "lat": 0.0, "speed": 0},
             "its IO elements and GPS element as properties")
        t.check(abs(v.get("external_voltage", 0) - 24.079) < 1e-9, "external_voltage 24.079 V",
                v)

    # the wiki's example 3: two records at their own times
    d.send(C8_EX3)
    t.eq(d.recv_n(4), b"\0\0\0\x02", "Codec 8 example 3 (2 records) answered 00000002")
    r = rows(gw)
    t.eq(sorted(ts for ts, _ in r), [1560160861000, 1560160879000, 1560161086000],
         "both records stored at their own timestamps")
    t.eq([json.loads(p).get("din1") for ts, p in r if ts < 1560161000000], [False, True],
         "din1 0 then 1")

    # the wiki's Codec 8 Extended example: 2-byte ids and counts
    d.send(C8E_EX)
    t.eq(d.recv_n(4), b"\0\0\0\x01", "Codec 8 Extended example answered 00000001")
    p = gw.scalar("SELECT payload FROM events WHERE kind='property' AND device=? AND ts=?",
                  (IMEI, 1560166592000))
    v = json.loads(p) if p else {}
    t.eq({k: v.get(k) for k in ("din1", "axis_x", "total_odometer", "iccid1", "iccid2")},
         {"din1": True, "axis_x": 29, "total_odometer": 22949000, "iccid1": 893700218,
          "iccid2": 500686954}, "8E record's IO elements")

    # 50 records in one packet: one ack of 50, after the last commit
    base = 1700000000000
    recs = [record(base + 1000 * i, lat=54.6872 + i * 1e-4, lon=25.2797, alt=120, angle=90,
                   sats=9, speed=i, io1=[(239, i & 1), (21, 4)], io2=[(17, -i & 0xFFFF)],
                   io4=[(16, 1000 * i)]) for i in range(50)]
    d.send(codec8(recs))
    t.eq(d.recv_n(4), b"\0\0\0\x32", "50 records answered 00000032")
    r = rows(gw, base)
    t.eq(len(r), 50, "50 rows, committed before the ack")
    t.eq([ts for ts, _ in r], [base + 1000 * i for i in range(50)], "each at its own time")
    if len(r) == 50:
        last = json.loads(r[49][1])
        t.eq({k: last.get(k) for k in ("speed", "ignition", "axis_x", "total_odometer",
                                       "altitude", "satellites", "gsm_signal")},
             {"speed": 49, "ignition": True, "axis_x": -49, "total_odometer": 49000,
              "altitude": 120, "satellites": 9, "gsm_signal": 4}, "record 50's values")
        t.check(abs(last["lat"] - (54.6872 + 49e-4)) < 1e-7 and abs(last["lon"] - 25.2797) < 1e-7,
                "lat/lon /1e7", last)
    # two records built here
    d.send(codec8([record(base - 2000, io1=[(1, 1)]), record(base - 1000, io1=[(1, 0)])]))
    t.eq(d.recv_n(4), b"\0\0\0\x02", "2 built records answered 00000002")

    # unknown IO ids: skipped, counted; the rest stored
    d.send(codec8([record(base + 60000, io1=[(200, 7), (21, 2)], io4=[(201, 9)])]))
    t.eq(d.recv_n(4), b"\0\0\0\x01", "record with unknown IO ids answered 00000001")
    p = gw.scalar("SELECT payload FROM events WHERE kind='property' AND device=? AND ts=?",
                  (IMEI, base + 60000))
    t.eq(json.loads(p).get("gsm_signal") if p else None, 2, "known IO kept beside unknown ones")

    # bad CRC: no answer (the device resends), the session goes on
    n_before = len(rows(gw))
    one = record(base + 70000, io1=[(21, 1)])
    d.send(packet(bytes([0x08, 1]) + one + b"\x01", crc_ok=False))
    t.check(d.quiet_for(0.6 * g.SLOW), "bad CRC: no answer")
    # a second count that disagrees, a count the data does not hold, an IO list cut short
    d.send(codec8([one], second=2))
    d.send(codec8([one], first=2, second=2))
    cut = bytes([0x08, 1]) + one[:-3] + b"\x01"
    d.send(packet(cut))
    t.check(d.quiet_for(0.6 * g.SLOW), "count mismatches, truncated IO list: no answer")
    t.eq(len(rows(gw)), n_before, "nothing stored from the refused packets")
    # a packet split on the wire is waited for, then answered
    whole = codec8([one])
    d.send(whole[:20])
    t.check(d.quiet_for(0.4 * g.SLOW), "split packet: waited for")
    d.send(whole[20:])
    t.eq(d.recv_n(4), b"\0\0\0\x01", "... completed: answered 00000001")
    t.eq(len(gw.find_log(level="warn", dev=IMEI, msg="message rejected")), 4,
         "the 4 refusals are logged with the device id and why")

    # Codec 12: the cloud invokes "command" {"text": "getinfo"}; the wiki's bytes go out; the
    # device's response goes back as the function's output
    cloud = cl.Cloud(broker.port)
    t.check(cloud.wait_ready(PRODUCT, IMEI), "north up")
    cloud.invoke(PRODUCT, IMEI, "c-1", "command", {"text": "getinfo"})
    t.eq(d.recv_n(len(C12_GETINFO)).hex(), C12_GETINFO.hex(),
         "Codec 12 command frame = the wiki's getinfo bytes")
    d.send(C12_RESPONSE)
    rep = cloud.reply(IMEI, "c-1")
    out = rep[1].get("outputs", {}).get("response", "") if rep else ""
    t.check(rep and rep[1].get("success") is True and
            out.startswith("INI:2019/7/22 7:22 RTC:2019/7/22 7:53") and out.endswith("MD:0"),
            "the response is the function's output, under the cloud's messageId", rep)
    t.check(d.quiet_for(0.3 * g.SLOW), "a Codec 12 response is not acked")
    cloud.stop()
    d.close()

    # an IMEI not in the registry: 00, then closed
    d, a = connect(port, b"\x00\x0f" + b"356307042441099")
    t.eq(a, b"\x00", "unknown IMEI answered 00")
    t.check(d.wait_closed(5), "... and closed")
    d.close()
    t.check(len(gw.find_log(level="warn", device="356307042441099")) >= 1,
            "the refusal logged with the IMEI", gw.log_tail(5))
    # a handshake of length 0: closed
    d = b.Dev(port)
    d.send(b"\x00\x00" + b"x" * 15)
    t.check(d.wait_closed(5), "a zero-length IMEI: closed")
    t.eq(d.buf, b"", "... nothing sent")
    d.close()

    m1 = gw.metrics()
    for key, want in ((g.metric_key("tcp_bad_frames_total", reason="bad_check"), 1.0),
                      (g.metric_key("tcp_bad_frames_total", reason="undecodable"), 4.0),
                      (g.metric_key("tcp_unknown_items_total"), 2.0),
                      (g.metric_key("tcp_login_failures_total", reason="unknown_device"), 1.0)):
        t.eq(g.metric_delta(m0, m1, key), want, "%s +%d" % (key, want))
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")

    # a handshake authenticates by the device id alone: the product must say so
    bad = g.load_product(PRODUCT)
    bad["auth"] = {"mode": "secret"}
    gw2 = b.tcp_gateway([PRODUCT], [{"id": IMEI, "product": PRODUCT, "secret": "x1234567"}],
                        products_over={PRODUCT: bad}, start=False)
    p = subprocess.run([g.BIN, "--check-config", "-c", gw2.cfg_path], capture_output=True,
                       timeout=30 * g.SLOW, stdin=subprocess.DEVNULL)
    err = p.stderr.decode()
    t.check(p.returncode == 2 and "teltonika-fmb.json: frame.handshake: a handshake carries no "
            "secret" in err, "--check-config: a handshake product without auth.mode device-id", err)
    # over UDP: the UDP adapter does not store a group's records, so such a layout is refused
    udp = g.load_product(PRODUCT)
    udp["protocol"] = "udp"
    del udp["frame"]["handshake"]
    gw3 = g.Gateway(products=[udp], devices=[{"id": IMEI, "product": PRODUCT}],
                    config={"adapters": {"mqtt": None, "udp": {"listeners": [
                        {"address": g.HOST, "port": 0, "product": PRODUCT}]}}}, start=False)
    p = subprocess.run([g.BIN, "--check-config", "-c", gw3.cfg_path], capture_output=True,
                       timeout=30 * g.SLOW, stdin=subprocess.DEVNULL)
    err = p.stderr.decode()
    t.check(p.returncode == 2 and "frame.messages[0].fields[0]: a group's records are stored by "
            "the TCP adapter only" in err, "--check-config: groups over UDP refused", err)


g.run(main)

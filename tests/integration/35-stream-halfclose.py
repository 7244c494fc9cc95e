# Proves a device that sends and then half-closes its socket (shutdown(SHUT_WR), as `printf | nc` does) still gets every ack for what it sent, after the commit, over TCP binary frames and MQTT QoS 1, and the rows are stored.
import socket

import binframes as b
import gwtest as g


def tcp_case(t):
    devs = [{"id": "mtr00001", "product": b.METER, "secret": "pa55word"}]
    # batch_ms holds every commit back 200 ms, so the EOF arrives while the report still waits.
    gw = b.tcp_gateway([b.METER], devs, config={"storage": {"batch_ms": 200}})
    d = b.Dev(g.adapter_port(gw, "tcp"))
    d.send(b.meter_login("mtr00001", "pa55word", seq=1) + b.meter_report(2) + b.meter_report(3))
    d.s.shutdown(socket.SHUT_WR)
    got = d.recv_n(3 * b.METER_ACK_LEN, timeout=5)
    t.check(got == b.meter_ack(1, 0x01) + b.meter_ack(2, 0x02) + b.meter_ack(3, 0x02),
            "login and both reports acked after the device half-closed", got.hex())
    t.check(gw.scalar("SELECT count(*) FROM events WHERE kind='property'") == 2,
            "both reports stored")
    t.check(g.wait_until(lambda: gw.scalar(
        "SELECT name FROM events WHERE kind='offline' ORDER BY id DESC LIMIT 1") ==
        "connection_lost", 5), "then the connection ends as lost")
    gw.stop()


def mqtt_case(t):
    gw = g.Gateway(n_devices=1, config={"storage": {"batch_ms": 200}})
    c = g.RawClient(gw.mqtt_port)
    c.send(g.device_connect_packet("t-001"))
    p = c.read_packet(5)
    t.check(p is not None and p.type == g.CONNACK, "CONNACK", p)
    topic = g.report_topic("t-001")
    c.send(b"".join(g.publish_packet(topic, '{"messageId":"h%d","properties":{"temperature":%d}}'
                                     % (i, 20 + i), qos=1, pid=10 + i) for i in range(3)))
    c.sock.shutdown(socket.SHUT_WR)
    pids = []
    for _ in range(3):
        p = c.read_packet(5)
        if p is None or p.type != g.PUBACK:
            break
        pids.append(p.pid)
    t.check(pids == [10, 11, 12], "every PUBACK arrives after the half-close, in order", pids)
    t.check(gw.scalar("SELECT count(*) FROM events WHERE kind='property'") == 3,
            "all three stored")
    gw.stop()


def main(t):
    tcp_case(t)
    mqtt_case(t)


g.run(main)

# Proves UDP datagram authentication and hygiene: unknown device, wrong token, a spoofed source that cannot steal a device's address while a valid datagram from a new address (roaming) does, a device moving to another loop, oversized / truncated / garbage / bad-CRC datagrams dropped and counted by reason, and the idle timeout taking a silent device offline.
import json
import socket
import time

import gwtest as g
import sensor_udp as su

# online/offline events name the instance (north.client_id; by default iotgw-<hostname>)
GWNAME = "iotgw-" + socket.gethostname()

DEV = "snr00001"


def dropped(m, reason):
    return m.get(g.metric_key("udp_dropped_total", reason=reason), 0.0)


def main(t):
    gw = su.gateway(n_devices=3, loops=1, config={"storage": {"batch_ms": 300}},
                    product={"idle_timeout_ms": 3000})
    port = su.udp_port(gw)
    m0 = gw.metrics()
    a = su.Client(port)
    mark = gw.log_mark()

    # unknown device: no ack, counted, logged with the claimed id and the peer, nothing stored
    a.send(su.report("snr99999", 1))
    t.check(a.quiet(0.8), "unknown device: no answer")
    # a device of another product (t-001 is thermo) is unknown here too
    a.send(su.frame(su.REPORT, "t-001", g.secret_of("t-001"), 1, b"\0" * 8))
    t.check(a.quiet(0.5), "device of another product: no answer")
    # wrong token
    a.send(su.report(DEV, 1, token="wrongtok"))
    t.check(a.quiet(0.8), "wrong token: no answer")
    m1 = gw.metrics()
    t.eq(dropped(m1, "unknown_device") - dropped(m0, "unknown_device"), 2.0,
         "udp_dropped_total{reason=unknown_device} +2")
    t.eq(dropped(m1, "bad_auth") - dropped(m0, "bad_auth"), 1.0,
         "udp_dropped_total{reason=bad_auth} +1")
    t.eq(gw.scalar("SELECT count(*) FROM events"), 0, "nothing stored, no online event")
    t.eq(m1.get("devices_online", 0.0), 0.0, "no device online")
    logs = gw.find_log(mark, area="udp", msg="datagram dropped")
    t.check(any(d.get("claimed_dev") == "snr99999" and d.get("peer") == a.peer and
                d.get("reason") == "unknown_device" for d in logs),
            "log: unknown_device with claimed_dev and peer", logs[:3])
    t.check(any(d.get("claimed_dev") == DEV and d.get("reason") == "bad_auth" for d in logs),
            "log: bad_auth with claimed_dev", logs[:3])

    # the device authenticates from socket A
    ack, _ = a.request(su.report(DEV, 2), 5)
    t.eq(ack, (DEV, 2, 0), "valid report from A: acked")

    # spoofed source: B sends for DEV with a wrong token right after A's report; A's ack (sent
    # after the 300 ms commit) still goes to A: the spoof did not move the device's address
    b = su.Client(port)
    a.send(su.report(DEV, 3))
    b.send(su.report(DEV, 3, token="tok00009"))
    b.send(su.heartbeat(DEV, 4, token="xxxxxxxx"))
    t.eq(a.ack(5), (DEV, 3, 0), "spoof: A's report still acked at A")
    t.check(b.quiet(0.5), "spoof: B gets nothing")
    m2 = gw.metrics()
    t.eq(dropped(m2, "bad_auth") - dropped(m1, "bad_auth"), 2.0, "spoofed datagrams: bad_auth +2")
    logs = gw.find_log(mark, area="udp", msg="datagram dropped", peer=b.peer)
    t.check(logs and "source differs" in logs[-1].get("detail", ""),
            "spoof log names the differing source", logs[-1:])
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE device=? AND kind='property'", (DEV,)), 2,
         "only A's two reports stored")

    # roaming: a valid datagram from a new address moves the device there (one loop: the same
    # session, no new online event); the ack of a report still committing follows it
    c = su.Client(port)
    a.send(su.report(DEV, 5))
    c.send(su.heartbeat(DEV, 6))
    got = [c.ack(5), c.ack(5)]
    t.check((DEV, 6, 0) in got and (DEV, 5, 0) in got,
            "roaming: heartbeat and A's in-flight report both acked at the new address", got)
    t.check(a.quiet(0.5), "roaming: nothing more at the old address")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE device=? AND kind='online'", (DEV,)), 1,
         "roaming on one loop: still one online event")
    ack, _ = c.request(su.heartbeat(DEV, 7), 5)
    t.eq(ack, (DEV, 7, 0), "roamed device keeps working")

    # oversized, truncated, garbage, bad CRC
    m3 = gw.metrics()
    c.send(su.report(DEV, 8) + b"\0" * (su.MAX_FRAME + 1 - len(su.report(DEV, 8))))
    c.send(b"\xa5" * 3000)
    t.check(c.quiet(0.5), "oversized: no answer")
    full = su.report(DEV, 9)
    c.send(full[:-6] + full[-4:])  # truncated: two body bytes missing, the CRC no longer matches
    c.send(b"hello")  # garbage: its last 4 bytes are no CRC of the rest
    c.send(su.report(DEV, 10, crc_ok=False))
    t.check(c.quiet(0.5), "truncated / garbage / bad CRC: no answer")
    c.send(su.with_crc(full[:15]))  # cut inside the header, with a valid CRC of what is left
    c.send(su.with_crc(full[:-6]))  # a report body cut short, valid CRC
    c.send(su.with_crc(b"\xa5\x01\x09" + full[3:-4]))  # a message type the layout lacks
    c.send(b"\xa5\x01")  # shorter than the check itself
    t.check(c.quiet(0.5), "undecodable with a valid CRC: no answer")
    m4 = gw.metrics()
    t.eq(dropped(m4, "oversized") - dropped(m3, "oversized"), 2.0, "oversized +2")
    t.eq(dropped(m4, "bad_check") - dropped(m3, "bad_check"), 3.0, "bad_check +3")
    t.eq(dropped(m4, "malformed") - dropped(m3, "malformed"), 4.0, "malformed +4")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE device=? AND msg_id IN ('8','9','10')",
                   (DEV,)), 0, "none of them stored")
    t.eq(g.metric_delta(m3, m4, "udp_datagrams_total"), 9.0, "all 9 counted as datagrams")

    # idle timeout (product idle_timeout_ms 3000, with slack for a loaded machine): heartbeats
    # keep DEV online, silence ends it
    for i in range(8):
        ack, _ = c.request(su.heartbeat(DEV, 20 + i), 5)
        time.sleep(0.5)
    t.eq(gw.scalar("SELECT online FROM device_state WHERE device=?", (DEV,)), 1,
         "heartbeats every 0.5 s keep the device online past its 3 s idle timeout")
    t.check(g.wait_until(lambda: gw.scalar(
        "SELECT online FROM device_state WHERE device=?", (DEV,)) == 0, 8),
        "silent for 3 s: offline")
    t.eq(gw.query("SELECT name, payload FROM events WHERE device=? AND kind='offline'", (DEV,)),
         [("idle_timeout", '{"reason":"idle_timeout","will":false,"gateway":%s}' % json.dumps(GWNAME))],
         "one offline event, reason idle_timeout")
    t.eq(gw.metric("udp_idle_timeouts_total"), 1.0, "udp_idle_timeouts_total 1")
    t.eq(gw.metric("devices_online"), 0.0, "devices_online 0")
    # it comes back with its next datagram
    ack, _ = c.request(su.report(DEV, 30), 5)
    t.eq(ack, (DEV, 30, 0), "after the idle timeout: the next report is acked")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE device=? AND kind='online'", (DEV,)), 2,
         "and a new online event")
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")

    # two loops: a device whose source port changes may land on the other loop's socket; its
    # session moves there (take-over) without an offline event
    gw = su.gateway(n_devices=2, loops=2)
    port = su.udp_port(gw)
    first = su.Client(port)
    ack, _ = first.request(su.report(DEV, 1), 5)
    t.eq(ack, (DEV, 1, 0), "2 loops: first report acked")
    moved, clients, seq = False, [first], 2
    for _ in range(40):
        cl = su.Client(port)
        clients.append(cl)
        ack, _ = cl.request(su.heartbeat(DEV, seq), 5)
        seq += 1
        if ack != (DEV, seq - 1, 0):
            t.check(False, "2 loops: heartbeat from a new port acked", ack)
            break
        if gw.metric("udp_takeovers_total") >= 1:
            moved = True
            break
    t.check(moved, "2 loops: the session moved to the other loop (udp_takeovers_total)")
    ack, _ = clients[-1].request(su.report(DEV, 99), 5)
    t.eq(ack, (DEV, 99, 0), "after the move: report acked at the new address")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE device=? AND kind='offline'", (DEV,)), 0,
         "no offline event for the moved session")
    t.eq(gw.scalar("SELECT online FROM device_state WHERE device=?", (DEV,)), 1, "still online")
    t.eq(gw.metric("devices_online"), 1.0, "devices_online 1")
    t.eq(gw.stop(), 0, "SIGTERM: exit 0 (2 loops)")
    t.eq(gw.query("SELECT name FROM events WHERE device=? AND kind='offline'", (DEV,)),
         [("shutdown",)], "one offline event at shutdown")
    for cl in clients + [a, b, c]:
        cl.close()


g.run(main)

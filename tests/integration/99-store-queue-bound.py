# Proves the store queue's bound under connection churn (issue 19): with the writer stalled (the test holds SQLite's write lock) and the queue full, new MQTT connections and TCP logins are not taken online (their CONNECT or login waits, its timeout stopped), so opening and closing many connections adds no online/offline events past queue_max (iotgw_store_queue_depth_max <= queue_max + one per loop); once the lock goes, every held CONNECT and login is answered and everything is stored; a TCP device logged in by its TLS client certificate (no login frame) waits for the store the same way.
import shutil
import sqlite3
import tempfile
import time

import binframes as b
import gwtest as g
import tlscerts as certs
import tlsutil as tu

QMAX = 64
LOOPS = 2
NMQTT = 120 if not g.SANITIZED else 40
NTCP = 60 if not g.SANITIZED else 20
NTLS = 12 if not g.SANITIZED else 4  # TCP over TLS, logged in by their client certificates
FLOOD = QMAX * 3
THERMO = g.thermo_ids(1 + NMQTT)
METERS = ["mtr%05d" % i for i in range(1, NTCP + 1)]
TLS_METERS = ["mtr%05d" % i for i in range(NTCP + 1, NTCP + NTLS + 1)]


def answered(fn):
    try:
        return fn()
    except (g.Closed, OSError):
        return False


def main(t):
    work = tempfile.mkdtemp(prefix="iotgw-it99-")
    try:
        run(t, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(t, work):
    ca = certs.CA(work, "ca")
    crt, key = certs.server_cert(ca)
    tls = {"cert": crt, "key": key, "ca": ca.cert, "client_cert": "optional"}
    ctxs = [tu.context(ca.cert, *ca.issue(dev)) for dev in TLS_METERS]
    meter = g.load_product(b.METER)
    meter["auth"] = {"mode": "certificate-or-secret"}  # a certificate logs in without a frame
    cfg = {"storage": {"queue_max": QMAX, "batch_max": 8},
           "adapters": {"mqtt": {"connect_timeout_ms": 500},
                        "tcp": {"login_timeout_ms": 500,
                                "listeners": [{"address": g.HOST, "port": 0, "product": b.METER},
                                              {"address": g.HOST, "port": 0, "product": b.METER,
                                               "tls": tls}]}}}
    gw = g.Gateway(products=[g.THERMO, meter],
                   devices=g.make_devices(THERMO) + b.meter_devices(METERS + TLS_METERS),
                   config=cfg, loops=LOOPS)
    tport = tu.listener_port(gw, "tcp", 0)
    tlsport = tu.listener_port(gw, "tcp", 1)
    t.check(tport and tlsport and tport != tlsport, "plain and TLS TCP listeners", gw.listeners)
    flooder = g.device_client(gw, THERMO[0], timeout=30)
    g.wait_until(lambda: gw.scalar("SELECT count(*) FROM events WHERE kind='online'") == 1, 10)

    # stall the writer: SQLite's write lock held by the test (its commits wait, then retry)
    lock = sqlite3.connect(gw.db_path, timeout=10.0 * g.SLOW, isolation_level=None)
    lock.execute("BEGIN IMMEDIATE")
    topic = g.report_topic(THERMO[0])
    flooder.send(b"".join(g.publish_packet(topic, g.report_payload("f%d" % i, {"humidity": i % 99}))
                          for i in range(FLOOD)))
    g.wait_until(lambda: gw.metric("store_queue_depth") >= QMAX, 20)
    bp0 = gw.metric("store_backpressure_total")

    # churn while full: every new connection sends its CONNECT or login
    mq = []
    for dev in THERMO[1:]:
        c = g.RawClient(gw.mqtt_port, timeout=30)
        c.send(g.device_connect_packet(dev))
        mq.append(c)
    tc = []
    for dev in METERS:
        d = b.Dev(tport, timeout=30)
        d.send(b.meter_login(dev, b.meter_secret(dev)))
        tc.append(d)
    # a client certificate logs its device in at the end of the handshake, with no frame: its
    # session (and online event) waits for the store too
    tl = [tu.TlsDev(tlsport, ctx, timeout=30) for ctx in ctxs]
    # barrier: each connection either waits for the store (one store_backpressure_total each) or
    # went online (the bug: its online event passes queue_max)
    over = QMAX + LOOPS
    ok = g.wait_until(lambda: gw.metric("store_backpressure_total") - bp0 >= NMQTT + NTCP + NTLS
                      or gw.metric("store_queue_depth_max") > over, 30)
    t.check(ok, "every new connection waits for the store or went online")
    t.check(gw.metric("store_queue_depth_max") <= over,
            "store_queue_depth_max <= queue_max %d + loops %d while connections churn"
            % (QMAX, LOOPS),
            gw.metric("store_queue_depth_max"))
    t.eq(gw.metric("devices_online"), 1.0, "no new session while the store is full")
    # time is the subject: the held CONNECTs and logins wait past their 500 ms timeouts
    time.sleep(1.0)
    lock.execute("ROLLBACK")
    lock.close()

    # back-pressure resumes: every held CONNECT and login is answered, nothing timed out
    t.eq([answered(lambda: c.expect(g.CONNACK) is not None) for c in mq].count(False), 0,
         "every held CONNECT acked")
    t.eq([answered(lambda: d.recv_n(10, 30) == b.meter_ack(1, 1)) for d in tc].count(False), 0,
         "every held login acked")
    for d in tl:
        d.send(b.meter_report(5))
    t.eq([answered(lambda: d.recv_n(10, 30) == b.meter_ack(5, 2)) for d in tl].count(False), 0,
         "every held certificate login went online: its report acked")
    t.eq(gw.metric("mqtt_connect_timeouts_total"), 0.0, "no CONNECT timed out while held")
    t.eq(gw.metric("tcp_login_timeouts_total"), 0.0, "no login timed out while held")
    t.check(flooder.ping(30), "the flooder is read again (PINGRESP)")
    for c in mq:
        c.disconnect()
    for d in tc + tl:
        d.close()
    ok = g.wait_until(lambda: gw.scalar("SELECT count(*) FROM events WHERE kind='property'")
                      == FLOOD + NTLS and gw.scalar("SELECT count(*) FROM events WHERE "
                                                    "kind='offline'") == NMQTT + NTCP + NTLS, 60)
    t.check(ok, "every report stored, every churned session online and offline")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE kind='online'"), 1 + NMQTT + NTCP + NTLS,
         "online events")
    t.info("store_queue_depth_max %s (queue_max %d), store_backpressure_total %s"
           % (gw.metric("store_queue_depth_max"), QMAX, gw.metric("store_backpressure_total")))
    flooder.disconnect()
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")


g.run(main)

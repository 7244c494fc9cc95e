# Proves the thread count is fixed (loops + store writer + main) from ready through 1,000 concurrent MQTT connections and 100,000 messages, with the management API in use (an /api/stream client reading every event, API requests during the burst), and that all 100,000 are stored.
import subprocess
import time

import gwapi
import gwtest as g

LOOPS = 2
NCONN = 1000
PER_CONN = 100
CHUNK = 100


def main(t):
    g.raise_fd_limit(NCONN * 2 + 256)
    ids = ["d-%04d" % i for i in range(NCONN)]
    gw = g.Gateway(devices=g.make_devices(ids), loops=LOOPS)
    n0 = gw.threads()
    t.info("threads after ready: %d" % n0)
    t.eq(n0, LOOPS + 2, "threads after ready = loops + 2 (loops, store writer, main)")
    t.eq(g.status_threads(gw.pid), n0, "/proc status Threads agrees with /proc/PID/task")

    conns = []
    refused = 0
    t0 = time.monotonic()
    try:
        for start in range(0, NCONN, CHUNK):
            chunk = []
            for dev in ids[start:start + CHUNK]:
                c = g.RawClient(gw.mqtt_port, timeout=30)
                c.send(g.device_connect_packet(dev))
                chunk.append(c)
            for c in chunk:
                p = c.read_packet(30)
                if p is None or p.type != g.CONNACK or p.rc != 0:
                    refused += 1
            conns.extend(chunk)
        t.eq(refused, 0, "%d connections: all CONNACK 0" % NCONN)
        t.info("connected %d in %.1f s" % (len(conns), time.monotonic() - t0))
        t.check(g.wait_until(lambda: gw.metric("connections_active") == NCONN, 10),
                "connections_active = %d" % NCONN, gw.metric("connections_active"))
        t.check(g.wait_until(lambda: gw.metric("devices_online") == NCONN, 10),
                "devices_online = %d" % NCONN)
        n1 = gw.threads()
        t.eq(n1, n0, "threads unchanged with %d connections" % NCONN)

        # the management API in use: a stream client (curl, reading everything) and requests
        stream = subprocess.Popen(["curl", "-s", "-N", "-H", "Authorization: Bearer " +
                                   gwapi.READ_TOKEN, "http://%s:%d/api/stream?kind=property"
                                   % (g.HOST, gw.admin_port)], stdout=subprocess.DEVNULL)
        t.check(g.wait_until(lambda: gw.metric("api_streams") == 1, 10), "a stream client is open")
        # 100,000 QoS 0 reports: one large write per connection
        t0 = time.monotonic()
        api_ok = 0
        for i, (c, dev) in enumerate(zip(conns, ids)):
            topic = g.report_topic(dev)
            c.send(b"".join(g.publish_packet(topic, '{"messageId":"%d","properties":'
                                             '{"humidity":%d}}' % (j, j % 100))
                            for j in range(PER_CONN)))
            if i % 100 == 0:
                api_ok += gwapi.api(gw, "GET", "/api/status", token="read").status == 200
        t.eq(api_ok, NCONN // 100, "GET /api/status answered during the burst")
        t.eq(gw.threads(), n0, "threads unchanged with API requests and a stream in use")
        for c in conns:
            c.send(g.PINGREQ_PKT)
        pongs = 0
        for c in conns:
            p = c.read_packet(60)
            if p is not None and p.type == g.PINGRESP:
                pongs += 1
        t.eq(pongs, NCONN, "PINGRESP on every connection after its burst (all read)")
        total = NCONN * PER_CONN
        got = g.wait_until(lambda: gw.scalar("SELECT count(*) FROM events WHERE "
                                             "kind='property'") == total, 90)
        n = gw.scalar("SELECT count(*) FROM events WHERE kind='property'")
        t.eq(n, total, "events (property) = %d once drained" % total)
        dt = time.monotonic() - t0
        t.info("100,000 messages stored in %.1f s (%.0f msg/s)" % (dt, total / dt))
        _ = got
        t.eq(gw.scalar("SELECT count(DISTINCT device) FROM events WHERE kind='property'"), NCONN,
             "every device's messages stored")
        n2 = gw.threads()
        t.eq(n2, n0, "threads unchanged after %d messages" % total)
        m = gw.metrics()
        t.info("stream: %d events handed to the hub, %d dropped (ring full), %d clients dropped" % (
            m.get("api_stream_events_total", 0), m.get('api_stream_events_dropped_total{reason="'
                                                       'ring_full"}', 0),
            m.get("api_stream_dropped_total", 0)))
        t.check(m.get("api_stream_events_total", 0) > 0,
                "the stream hub carried reports during the burst (a client that falls behind "
                "is dropped, not waited for)")
        stream.kill()
        stream.wait()
        t.eq(m.get("messages_accepted_total"), float(total), "messages_accepted_total = %d" % total)
        t.eq(m.get("store_queue_depth"), 0.0, "store_queue_depth back to 0")
    finally:
        for c in conns:
            c.close()
    t.check(g.wait_until(lambda: gw.metric("connections_active") == 0, 15),
            "connections_active back to 0 after closing all")
    t.eq(gw.threads(), n0, "threads unchanged after closing all")
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")


g.run(main)

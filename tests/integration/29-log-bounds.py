# Proves the log is bounded and true: floods of rejected messages (MQTT out-of-range reports, TCP meter frames with a bad CRC, UDP datagrams with a bad CRC, CoAP requests for an unknown device) for a few seconds each keep the gateway's log under LINES_PER_S_MAX lines per second, every rejection is still counted by its counter and accounted for in the log (lines written + their suppressed=N = messages), log_suppressed_total counts the rest; and a messageId (MQTT) or device id (UDP, CoAP) holding a quote, a newline, U+2028 or bytes that are not UTF-8 stays one quoted field of one line that a logfmt parser reads back exactly.
import re
import time

import binframes as b
import coaplib as c
import gwtest as g
import sensor_udp as su

FLOOD_S = 3.0  # each flood lasts this long (wall clock)
RATE = 3000 if not g.SANITIZED else 800  # messages per second offered by each flood
LINES_PER_S_MAX = 50  # the whole gateway's log, any one second of a flood
P = "sensor"  # the CoAP product (coaplib)


# ---------------------------------------------------------------------------------------------
# A strict logfmt reader: key=value pairs separated by one space; a value is a bare token or a
# quoted string with the escapes the gateway writes (\" \\ \xNN \uNNNN). Values come back as bytes.

def unescape(raw, key):
    out, i = bytearray(), 0
    while i < len(raw):
        ch = raw[i:i + 1]
        if ch != b"\\":
            out += ch
            i += 1
        elif raw[i + 1:i + 2] in (b'"', b"\\"):
            out += raw[i + 1:i + 2]
            i += 2
        elif re.match(rb"x[0-9a-fA-F]{2}", raw[i + 1:i + 4]):
            out.append(int(raw[i + 2:i + 4], 16))
            i += 4
        elif re.match(rb"u[0-9a-fA-F]{4}", raw[i + 1:i + 6]):
            out += chr(int(raw[i + 2:i + 6], 16)).encode()
            i += 6
        else:
            raise ValueError("unknown escape in %s: %r" % (key, raw[i:i + 6]))
    return bytes(out)


def logfmt(line):
    out = {}
    i, n = 0, len(line)
    while i < n:
        m = re.match(rb'([A-Za-z0-9_.]+)=', line[i:])
        if not m:
            raise ValueError("no key at %d: %r" % (i, line[i:i + 20]))
        key = m.group(1).decode()
        i += m.end()
        if line[i:i + 1] == b'"':
            j = i + 1
            while j < n and line[j:j + 1] != b'"':
                j += 2 if line[j:j + 1] == b"\\" else 1
            if j >= n:
                raise ValueError("unterminated quote for %s" % key)
            val = unescape(line[i + 1:j], key)
            i = j + 1
        else:
            m = re.match(rb'[^ "]*', line[i:])
            val = m.group(0)
            i += m.end()
        if key in out:
            raise ValueError("key %s twice" % key)
        out[key] = val
        if i < n:
            if line[i:i + 1] != b" ":
                raise ValueError("no space after %s at %d" % (key, i))
            i += 1
    return out


def log_bytes(gw):
    with open(gw.log_path, "rb") as f:
        return f.read()


def lines_since(gw, mark):
    return [ln for ln in log_bytes(gw)[mark:].split(b"\n") if ln]


# ---------------------------------------------------------------------------------------------


def make_gateway():
    coap_prod = c.product(P)
    cfg = {"adapters": {
        "tcp": {"listeners": [{"address": g.HOST, "port": 0, "product": b.METER}]},
        "udp": {"listeners": [{"address": g.HOST, "port": 0, "product": su.PRODUCT}]},
        "coap": c.coap_adapter(),
    }}
    devices = (g.make_devices(["t-001", "t-002"]) + su.devices(su.dev_ids(2)) +
               g.make_devices(["c-001"], P) + b.meter_devices(["mtr00002"]))
    return g.Gateway(products=[g.THERMO, g.load_product(su.PRODUCT), coap_prod,
                               g.load_product(b.METER)],
                     devices=devices, config=cfg, loops=2)


def forged_ids(t, gw):
    """A messageId, a UDP device field and a CoAP device id that try to forge log lines."""
    mark = len(log_bytes(gw))
    # MQTT: a messageId with a quote, a fake pair, a newline, U+2028, U+0085, a backslash
    mid = 'F0RGE"x=1\nts=0 level=error\u2028msg="y\u0085\\z'
    assert len(mid.encode()) < 64
    cl = g.device_client(gw, "t-001")
    ack = cl.publish_wait(g.report_topic("t-001"), g.report_payload(mid, {"temperature": 999}), 1)
    t.check(ack is not None, "forged messageId: the out-of-range report is PUBACKed")
    cl.close()
    # UDP: an unknown device whose 8-byte id field holds a quote, a newline and U+0085 (the
    # binary codec refuses a field that is not UTF-8 before it names the device)
    dev_field = 'U"\n\u0085Q='.encode()
    udp = su.Client(su.udp_port(gw))
    udp.send(su.frame(su.REPORT, dev_field, b"whatever", 1, b"\0" * 8))
    # CoAP: a device id (URI path segment) with a quote, a newline, U+2028 and bytes that are not
    # UTF-8 (a lone 0xff, a truncated sequence)
    coap_dev = 'C"\n\u2028d'.encode() + b"\xff\xe2\x80"
    co = c.Client(c.coap_port(gw))
    cmid, tok = co.next_mid(), co.next_token()
    co.send(c.encode(c.CON, c.POST, cmid, tok, [(c.URI_PATH, P), (c.URI_PATH, coap_dev)] +
                     [(c.URI_PATH, s) for s in ("properties", "report")] +
                     [(c.URI_QUERY, "token=x"), (c.CONTENT_FORMAT, c.CF_JSON)],
                     c.report_body("m", {"humidity": 1})))
    r = co.wait_response(cmid, tok)
    t.check(r is not None and r.code >= 128, "forged CoAP device id: refused (%s)"
            % (r.code_str if r else None))

    def found():
        b = log_bytes(gw)[mark:]
        return (b.count(b"F0RGE") >= 1 and b"datagram dropped" in b and
                b"request refused" in b) and b
    b = g.wait_until(found, 5)
    t.check(b, "forged ids: the three log lines are written", log_bytes(gw)[mark:][-2000:])
    b = b or b""
    t.check("\u2028".encode() not in log_bytes(gw) and "\u0085".encode() not in log_bytes(gw),
            "no raw U+2028 or U+0085 anywhere in the log")
    # each forged value: exactly one line holds it, and it parses back to the very bytes
    for what, needle, key, want, msg in (
            ("MQTT messageId", b"F0RGE", "msg_id", mid.encode(), b"message rejected"),
            ("UDP device field", b'U\\"', "claimed_dev", dev_field, b"datagram dropped"),
            ("CoAP device id", b'C\\"', "dev", coap_dev, b"request refused")):
        hits = [ln for ln in b.split(b"\n") if needle in ln]
        t.eq(len(hits), 1, "%s: exactly one log line holds it" % what)
        if not hits:
            continue
        try:
            d = logfmt(hits[0])
        except ValueError as e:
            t.check(False, "%s: the line is valid logfmt" % what, "%s: %r" % (e, hits[0]))
            continue
        t.check(True, "%s: the line is valid logfmt" % what)
        t.eq(d.get("msg"), msg, "%s: msg= is the gateway's" % what)
        t.eq(d.get("level"), b"warn", "%s: level=warn (not the forged one)" % what)
        t.eq(d.get(key), want, "%s: %s= reads back exactly" % (what, key))
        t.info("%s line: %s" % (what, hits[0].decode("utf-8", "replace")))


# ---------------------------------------------------------------------------------------------
# Floods


def paced(send_batch, batch=50):
    """Calls send_batch(k) to offer RATE messages/s for FLOOD_S seconds; returns the count."""
    sent = 0
    t0 = time.monotonic()
    while True:
        el = time.monotonic() - t0
        if el >= FLOOD_S:
            return sent
        due = int(el * RATE) + batch
        if sent < due:
            sent += send_batch(min(batch, due - sent))
        else:
            time.sleep(0.005)


def account(gw, mark, area, msg):
    """(lines written for this call site, their suppressed=N plus the summaries' N)."""
    written = suppressed = 0
    for ln in lines_since(gw, mark):
        try:
            d = logfmt(ln)
        except ValueError:
            continue
        if d.get("area") != area:
            continue
        if d.get("msg") == msg:
            written += 1
            suppressed += int(d.get("suppressed", b"0"))
        elif d.get("msg") == b"log lines suppressed" and d.get("of") == msg:
            suppressed += int(d.get("suppressed", b"0"))
    return written, suppressed


def check_flood(t, gw, what, mark, m0, sent, counter, area, msg, dt):
    got = g.wait_until(lambda: g.metric_delta(m0, gw.metrics(), counter) >= sent and
                       g.metric_delta(m0, gw.metrics(), counter), 30)
    t.eq(got, sent, "%s: %s counts every one of the %d messages" % (what, counter, sent))
    # every message is in the log: a line, or counted in a suppressed=N (the last window's
    # summary comes once its window has ended)
    acc = g.wait_until(lambda: sum(account(gw, mark, area, msg)) == sent and
                       account(gw, mark, area, msg), 5)
    w, s = account(gw, mark, area, msg)
    t.check(acc, "%s: lines written (%d) + suppressed=N (%d) = messages (%d)" % (what, w, s, sent))
    t.check(s > 0, "%s: lines were suppressed" % what)
    lines = lines_since(gw, mark)
    per_s = {}
    for ln in lines:
        m = re.match(rb"ts=(\S+?)\.\d+Z ", ln)
        if m:
            per_s[m.group(1)] = per_s.get(m.group(1), 0) + 1
    worst = max(per_s.values()) if per_s else 0
    t.info("%s: %d messages in %.1f s (%.0f/s), %d log lines (%.1f/s), worst second %d lines"
           % (what, sent, dt, sent / dt, len(lines), len(lines) / dt, worst))
    t.check(worst < LINES_PER_S_MAX, "%s: at most %d log lines in any second (%d)"
            % (what, LINES_PER_S_MAX, worst))
    t.check(any(b" suppressed=" in ln for ln in lines), "%s: a line carries suppressed=N" % what)
    t.check(sent >= 5 * len(lines), "%s: far fewer lines (%d) than messages (%d)"
            % (what, len(lines), sent))


def flood_mqtt(t, gw):
    cl = g.device_client(gw, "t-002")
    bad = g.publish_packet(g.report_topic("t-002"), g.report_payload("bad", {"humidity": 500}))
    m0, mark, t0 = gw.metrics(), len(log_bytes(gw)), time.monotonic()

    def send(k):
        cl.sock.sendall(bad * k)
        return k
    sent = paced(send)
    ack = cl.publish_wait(g.report_topic("t-002"), g.report_payload("sync", {"humidity": 5}), 7,
                          30)
    dt = time.monotonic() - t0
    t.check(ack is not None, "MQTT flood: the device's next good report is PUBACKed")
    check_flood(t, gw, "MQTT flood", mark, m0, sent,
                'messages_rejected_total{reason="out_of_range"}', b"mqtt", b"message rejected", dt)
    cl.close()


def flood_tcp(t, gw):
    d = b.Dev(g.adapter_port(gw, "tcp"))
    d.send(b.meter_login("mtr00002", b.meter_secret("mtr00002")))
    t.eq(len(d.recv_n(b.METER_ACK_LEN)), b.METER_ACK_LEN, "TCP flood: the meter is logged in")
    bad = b.meter_report(1, crc_ok=False)  # counted, logged, never acked; the session goes on
    seq = [100]
    m0, mark, t0 = gw.metrics(), len(log_bytes(gw)), time.monotonic()

    def send(k):  # k bad frames, then a heartbeat whose ack says they were all read
        seq[0] += 1
        d.send(bad * k + b.meter_heartbeat(seq[0]))
        d.recv_n(b.METER_ACK_LEN, 10)
        return k
    sent = paced(send)
    dt = time.monotonic() - t0
    check_flood(t, gw, "TCP flood", mark, m0, sent, 'tcp_bad_frames_total{reason="bad_check"}',
                b"tcp", b"message rejected", dt)
    d.close()


def flood_udp(t, gw):
    dev = su.dev_ids(1)[0]
    u = su.Client(su.udp_port(gw))
    bad = su.report(dev, 1, crc_ok=False)
    seq = [100]
    m0, mark, t0 = gw.metrics(), len(log_bytes(gw)), time.monotonic()

    def send(k):  # k bad datagrams, then a heartbeat whose ack says they were all read
        for _ in range(k):
            u.send(bad)
        seq[0] += 1
        a, _ = u.request(su.heartbeat(dev, seq[0]), 10)
        return k if a is not None else k
    sent = paced(send)
    dt = time.monotonic() - t0
    check_flood(t, gw, "UDP flood", mark, m0, sent, 'udp_dropped_total{reason="bad_check"}',
                b"udp", b"datagram dropped", dt)
    u.close()


def flood_coap(t, gw):
    co = c.Client(c.coap_port(gw))
    path = c.report_path(P, "nobody")
    body = c.report_body("m", {"humidity": 1})
    m0, mark, t0 = gw.metrics(), len(log_bytes(gw)), time.monotonic()
    answered = [0]

    def send(k):  # k CON requests, then their k answers
        want = set()
        for _ in range(k):
            mid, tok = co.next_mid(), co.next_token()
            want.add(mid)
            opts = c.path_options(path, ("token=x",)) + [(c.CONTENT_FORMAT, c.CF_JSON)]
            co.send(c.encode(c.CON, c.POST, mid, tok, opts, body))
        deadline = time.monotonic() + 10 * g.SLOW
        while want and time.monotonic() < deadline:
            m = co.recv(1)
            if m is not None and m.mid in want:
                want.discard(m.mid)
                answered[0] += 1
        return k
    sent = paced(send)
    dt = time.monotonic() - t0
    t.eq(answered[0], sent, "CoAP flood: every request answered")
    check_flood(t, gw, "CoAP flood", mark, m0, sent,
                'coap_auth_failures_total{reason="unknown_device"}', b"coap", b"request refused",
                dt)
    co.close()


def main(t):
    gw = make_gateway()
    t.check(su.udp_port(gw) and c.coap_port(gw), "udp and coap listeners up", gw.ports)
    forged_ids(t, gw)
    time.sleep(1.1)  # the forged lines' call sites start the floods with fresh windows
    m0 = gw.metrics()
    flood_mqtt(t, gw)
    flood_tcp(t, gw)
    flood_udp(t, gw)
    flood_coap(t, gw)
    t.check(g.metric_delta(m0, gw.metrics(), "log_suppressed_total") > 0,
            "log_suppressed_total counts the suppressed lines (%d)"
            % g.metric_delta(m0, gw.metrics(), "log_suppressed_total"))
    # the device that was not flooding is still served
    cl = g.device_client(gw, "t-001")
    t.check(cl.publish_wait(g.report_topic("t-001"), g.report_payload("after", {"humidity": 3}),
                            9) is not None, "another device is served after the floods")
    cl.close()


g.run(main)

# Proves cloud commands to CoAP devices with a real cloud broker: a device observing /{p}/{d}/function/invoke gets each command as a CON notification (token and rising Observe number, Content-Format 50, the exact payload), retransmitted with the same message id until ACKed, its POST to .../function/invoke/reply reaches the cloud on .../function/invoke/reply; an RST cancels the observation and Observe 1 deregisters; a sleepy device that does not observe gets a held command in the response to its next report, and with ?wait=N a command that arrives during the wait, or an empty 2.04 when none comes within N (capped by max_wait_s); a plain GET polls the waiting command (then an empty 2.05), POST on function/invoke is 4.05.
import copy
import json
import time

import cmdlib as cl
import coaplib as c
import gwtest as g

P = "sensor"
MAX_WAIT = 3


class Observer:
    """A raw CoAP endpoint observing its device's invoke resource."""

    def __init__(self, port, dev):
        self.dev = dev
        self.c = c.Client(port, auto_ack=False)
        self.token = self.c.next_token()
        self.notes = []

    def register(self, value=0):
        return self.c.request(c.GET, "/%s/%s/function/invoke" % (P, self.dev),
                              query=c.dev_query(self.dev), cf=None, token=self.token,
                              options=[(c.OBSERVE, value)])

    def notification(self, timeout=5.0, ack=True, rst=False):
        """The next datagram carrying the observation's token (ACKed, or RST)."""
        deadline = time.monotonic() + timeout * g.SLOW
        while time.monotonic() < deadline:
            m = self.c.recv((deadline - time.monotonic()) / g.SLOW)
            if m is None:
                return None
            if m.token != self.token or m.type not in (c.CON, c.NON):
                continue
            if m.type == c.CON and rst:
                self.c.send(c.encode(c.RST, c.EMPTY, m.mid))
            elif m.type == c.CON and ack:
                self.c.ack(m)
            self.notes.append(m)
            return m
        return None

    def reply(self, reply):
        return self.c.post("/%s/%s/function/invoke/reply" % (P, self.dev), cl.compact(reply),
                           query=c.dev_query(self.dev))


def main(t):
    broker = g.Mosquitto(extra_conf=cl.BROKER_CONF)
    prod = c.product(P)
    prod["functions"][0]["timeout_ms"] = 8000
    prod["commands"] = {"offline": "queue", "ttl_ms": 30000}
    devs = g.make_devices(["c-%03d" % i for i in range(1, 6)], P)
    gw = c.gateway(products=[prod], devices=devs, coap=c.coap_adapter(max_wait_s=MAX_WAIT),
                   config={"north": cl.north(broker.port), "storage": {"batch_ms": 0}})
    port = c.coap_port(gw)
    cloud = cl.Cloud(broker.port)
    t.check(cloud.wait_ready(P, "c-005"), "the gateway answers a property read (north up)")

    # ---- observe: registration ----
    ob = Observer(port, "c-001")
    r = ob.register()
    t.eq(r and r.code_str, "2.05", "GET with Observe 0 on function/invoke: 2.05 Content")
    t.check(r is not None and r.opt(c.OBSERVE) is not None, "the answer carries Observe "
            "(registered)", r)
    seq0 = r.uint(c.OBSERVE, 0) if r else 0
    t.check(g.wait_until(lambda: gw.metric("coap_observers") == 1, 2), "coap_observers 1")

    # ---- command -> CON notification -> ACK -> reply POST -> cloud ----
    cloud.invoke(P, "c-001", "g-1", "reboot", {"delay_s": 5})
    n = ob.notification()
    t.check(n is not None, "the observer gets a notification")
    if n:
        t.eq(n.type, c.CON, "notification is confirmable")
        t.eq(n.code_str, "2.05", "notification code 2.05")
        t.check(n.uint(c.OBSERVE, -1) > seq0, "Observe number rises (%r > %r)"
                % (n.uint(c.OBSERVE), seq0))
        t.eq(n.uint(c.CONTENT_FORMAT), 50, "Content-Format 50 (json)")
        t.eq(n.json(), {"messageId": "g-1", "function": "reboot", "inputs": {"delay_s": 5}},
             "payload: messageId, function, inputs")
    r = ob.reply({"messageId": "g-1", "success": True, "outputs": {"ok": True}})
    t.eq(r and r.code_str, "2.04", "the reply POST: 2.04")
    rep = cloud.reply("c-001", "g-1")
    t.check(rep, "the cloud receives the reply")
    if rep:
        t.eq(rep[0], "iotgw/%s/c-001/function/invoke/reply" % P, "on .../function/invoke/reply")
        d = rep[1]
        t.eq((d.get("success"), d.get("outputs"), d.get("name"), d.get("kind")),
             (True, {"ok": True}, "reboot", "function_reply"), "reply payload")
    rows = cl.commands_rows(gw, "device='c-001'")
    t.check(rows.get("g-1") and rows["g-1"][3] == "success", "commands table: g-1 status success",
            rows.get("g-1"))

    # ---- not ACKed: retransmitted with the same message id ----
    cloud.invoke(P, "c-001", "g-2", "reboot", {"delay_s": 1})
    first = ob.notification(ack=False)
    again = ob.notification(timeout=6.0, ack=True)
    t.check(first is not None and again is not None and again.mid == first.mid and
            again.json() == first.json(),
            "an unACKed notification is retransmitted with the same message id", (first, again))
    r = ob.reply({"messageId": "g-2", "success": True, "outputs": {"ok": False}})
    t.eq(r and r.code_str, "2.04", "reply to g-2: 2.04")
    rep = cloud.reply("c-001", "g-2")
    t.check(rep and rep[1].get("outputs") == {"ok": False}, "cloud gets g-2's reply", rep)

    # ---- a reply matching nothing: refused (late_reply), counted ----
    m0 = gw.metrics()
    r = ob.reply({"messageId": "nope", "success": True, "outputs": {"ok": True}})
    t.check(r is not None and r.code_str in ("4.00", "4.04", "2.04"),
            "a reply to no command is answered (%s)" % (r and r.code_str))
    t.check(g.wait_until(lambda: g.metric_delta(m0, gw.metrics(), g.metric_key(
        "messages_rejected_total", reason="late_reply")) == 1, 5),
        "counted as messages_rejected_total{reason=late_reply}")

    # ---- RST cancels the observation ----
    cloud.invoke(P, "c-001", "g-3", "reboot", {"delay_s": 1})
    n = ob.notification(rst=True)
    t.check(n is not None and n.json().get("messageId") == "g-3",
            "notification for g-3 (answered with RST)", n)
    # the RST and the next command race (UDP vs. the cloud broker) on a loaded machine: wait for
    # the gauge, then send the next command
    t.check(g.wait_until(lambda: gw.metric("coap_observers") == 0, 5),
            "coap_observers 0 after the RST")
    cloud.invoke(P, "c-001", "g-4", "reboot", {"delay_s": 1})
    n4 = ob.notification(timeout=1.5)
    t.check(n4 is None, "after the RST no more notifications", n4)
    t.eq(gw.metric("coap_notifications_total"), 3.0,
         "coap_notifications_total counts g-1, g-2 (its retransmission not), g-3")

    # ---- sleepy device: held command rides on the next response ----
    sl = c.Client(port)
    r = c.report(sl, P, "c-002", "s1", {"humidity": 1})
    t.eq(r and r.code_str, "2.04", "sleepy device: first report (online, not observing)")
    t.eq(r and r.payload, b"", "no command yet: empty 2.04")
    pend = gw.metric("commands_pending")
    cloud.invoke(P, "c-002", "g-s1", "reboot", {"delay_s": 2})
    t.check(g.wait_until(lambda: gw.metric("commands_pending") > pend, 5),
            "the command reaches the gateway (commands_pending +1)")
    t.eq(cloud.count("c-002", "g-s1"), 0, "no reply while the command is held")
    r = sl.post(c.report_path(P, "c-002"), c.report_body("s2", {"humidity": 2}),
                query=c.dev_query("c-002") + ("wait=0",))
    t.eq(r and r.code_str, "2.04", "next report: 2.04")
    t.check(r is not None and r.payload and r.uint(c.CONTENT_FORMAT) == 50 and
            r.json() == {"messageId": "g-s1", "function": "reboot", "inputs": {"delay_s": 2}},
            "... carrying the held command (Content-Format 50)", r)
    r = sl.post("/%s/c-002/function/invoke/reply" % P,
                cl.compact({"messageId": "g-s1", "success": True, "outputs": {"ok": True}}),
                query=c.dev_query("c-002"))
    t.eq(r and r.code_str, "2.04", "sleepy device's reply: 2.04")
    rep = cloud.reply("c-002", "g-s1")
    t.check(rep and rep[1].get("success") is True, "cloud receives the sleepy device's reply",
            rep)

    # ?wait=N: a command that arrives during the wait is in the answer
    mid, tok = sl.next_mid(), sl.next_token()
    sl.send(c.encode(c.CON, c.POST, mid, tok, c.path_options(
        c.report_path(P, "c-002"), c.dev_query("c-002") + ("wait=%d" % MAX_WAIT,)) +
        [(c.CONTENT_FORMAT, 50)], c.report_body("s3", {"humidity": 3})))
    # the report is committed (then held for the wait) before the command is sent
    t.check(g.wait_until(lambda: gw.scalar("SELECT count(*) FROM events WHERE device='c-002' "
                                           "AND msg_id='s3'") == 1, 5), "s3 committed")
    cloud.invoke(P, "c-002", "g-s2", "reboot", {"delay_s": 3})
    empties = []
    r = sl.wait_response(mid, tok, timeout=MAX_WAIT + 3, seen_empty_ack=empties)
    t.check(r is not None and r.code_str == "2.04" and r.payload and
            r.json().get("messageId") == "g-s2",
            "?wait=%d: the command sent during the wait comes in the answer" % MAX_WAIT, r)
    t.info("empty ACKs before the separate answer: %d" % len(empties))
    sl.post("/%s/c-002/function/invoke/reply" % P,
            cl.compact({"messageId": "g-s2", "success": True, "outputs": {"ok": True}}),
            query=c.dev_query("c-002"))
    t.check(cloud.reply("c-002", "g-s2"), "cloud receives g-s2's reply")

    # ?wait=N with nothing to send: an empty 2.04 after about N s (capped by max_wait_s)
    for asked, want in ((1, 1), (60, MAX_WAIT)):
        t0 = time.monotonic()
        r = sl.post(c.report_path(P, "c-002"), c.report_body("w%d" % asked, {"humidity": 4}),
                    query=c.dev_query("c-002") + ("wait=%d" % asked,), timeout=want + 5)
        dt = time.monotonic() - t0
        t.check(r is not None and r.code_str == "2.04" and not r.payload,
                "?wait=%d, no command: empty 2.04" % asked, r)
        t.check(want - 0.3 <= dt <= (want + 1.5) * g.SLOW,
                "... after about %d s (%.2f s)" % (want, dt))
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE device='c-002' AND msg_id IN "
                   "('w1','w60','s3')"), 3, "the waiting reports were stored")

    # a command for an offline device of a queue product waits for its first request
    queued = gw.metric("commands_queued_total")
    cloud.invoke(P, "c-003", "g-q", "reboot", {"delay_s": 4})
    t.check(g.wait_until(lambda: gw.metric("commands_queued_total") > queued, 5),
            "the command is queued for the offline device (commands_queued_total +1)")
    q = c.Client(port)
    r = c.report(q, P, "c-003", "q1", {"humidity": 5})
    t.check(r is not None and r.code_str == "2.04" and r.payload and
            r.json().get("messageId") == "g-q",
            "queued command delivered in the answer to the device's first report", r)
    q.post("/%s/c-003/function/invoke/reply" % P,
           cl.compact({"messageId": "g-q", "success": True, "outputs": {"ok": True}}),
           query=c.dev_query("c-003"))
    t.check(cloud.reply("c-003", "g-q"), "cloud receives the queued command's reply")

    # a plain GET on function/invoke polls: the waiting command, then an empty 2.05
    queued = gw.metric("commands_queued_total")
    cloud.invoke(P, "c-004", "g-p", "reboot", {"delay_s": 6})
    t.check(g.wait_until(lambda: gw.metric("commands_queued_total") > queued, 5),
            "the command is queued for the poller (commands_queued_total +1)")
    pl = c.Client(port)
    poll_path = "/%s/c-004/function/invoke" % P
    r = pl.request(c.GET, poll_path, query=c.dev_query("c-004"), cf=None)
    t.check(r is not None and r.code_str == "2.05" and r.payload and
            r.json().get("messageId") == "g-p" and r.opt(c.OBSERVE) is None,
            "plain GET on function/invoke (poll): 2.05 with the waiting command", r)
    pl.post(poll_path + "/reply",
            cl.compact({"messageId": "g-p", "success": True, "outputs": {"ok": True}}),
            query=c.dev_query("c-004"))
    t.check(cloud.reply("c-004", "g-p"), "cloud receives the polled command's reply")
    r = pl.request(c.GET, poll_path, query=c.dev_query("c-004"), cf=None)
    t.check(r is not None and r.code_str == "2.05" and not r.payload,
            "a poll with nothing waiting: empty 2.05", r)
    r = pl.post(poll_path, b"{}", query=c.dev_query("c-004"))
    t.eq(r and r.code_str, "4.05", "POST on function/invoke: 4.05")

    # Observe: 1 deregisters
    o5 = Observer(port, "c-005")
    r = o5.register(0)
    t.eq(r and r.code_str, "2.05", "c-005 observes")
    n_obs = gw.metric("coap_observers")
    r = o5.register(1)
    t.eq(r and r.code_str, "2.05", "GET with Observe 1 (deregister): 2.05")
    t.check(g.wait_until(lambda: gw.metric("coap_observers") == n_obs - 1, 2),
            "coap_observers back down by one")
    cloud.invoke(P, "c-005", "g-d", "reboot", {"delay_s": 7})
    n5 = o5.notification(timeout=1.5)
    t.check(n5 is None or n5.type == c.ACK, "no notification after deregistering", n5)

    for x in (ob.c, sl, q, pl, o5.c):
        x.close()
    cloud.stop()
    _ = (copy, json)


g.run(main)

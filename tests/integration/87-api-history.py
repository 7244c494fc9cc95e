#!/usr/bin/python3
"""87-api-history: the management API's reads. GET /api/devices over 2,500 devices paged with
cursors (every device once, in id order), filtered by product, online and q; GET /api/devices/{id}
with its state and the latest value of every property after reports; GET /api/devices/{id}/events
newest first, paged with cursors, equal to the database's own list, with kind/name/from/to
filters (ms and ISO 8601), kept across a restart and a SIGKILL; the list follows devices added
and removed over the API, a removed device's events stay readable; limits and bad parameters (400 naming the
parameter), unknown devices (404), the read token allowed, no token 401. Real clients: raw MQTT
sockets and http.client."""
import datetime
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import gwapi  # noqa: E402
import gwtest as g  # noqa: E402

N_THERMO = 2000
N_PLUG = 500
DEV = "t-0005"
N_REPORTS = 250
TS0 = 1700000000000  # reports carry device timestamps TS0 + i * 1000


def ids_thermo():
    return ["t-%04d" % i for i in range(1, N_THERMO + 1)]


def ids_plug():
    return ["p-%04d" % i for i in range(1, N_PLUG + 1)]


def devices():
    out = g.make_devices(ids_thermo()) + g.make_devices(ids_plug(), "plug")
    for i, d in enumerate(out):
        if i % 100 == 7:
            d["name"] = "Kitchen sensor %d" % i
    return out


def get(gw, path, token="admin"):
    return gwapi.api(gw, "GET", path, token=token)


def walk(t, gw, path, key, limit):
    """Follows next_cursor from path; returns (entries, pages, max page size, ok)."""
    out, pages, biggest = [], 0, 0
    sep = "&" if "?" in path else "?"
    url = "%s%slimit=%d" % (path, sep, limit)
    while True:
        r = get(gw, url, token="read")
        if r.status != 200:
            t.check(False, "page of %s answers 200" % path, r)
            return out, pages, biggest, False
        pages += 1
        biggest = max(biggest, len(r.json[key]))
        out += r.json[key]
        cur = r.json.get("next_cursor")
        if not cur or pages > 200:
            return out, pages, biggest, True
        url = "%s%slimit=%d&cursor=%s" % (path, sep, limit, cur)


def list_paging(t, gw):
    want = sorted(ids_thermo() + ids_plug())
    r = get(gw, "/api/devices", token="read")
    t.eq(r.status, 200, "GET /api/devices with a read token")
    t.eq(len(r.json["devices"]), 100, "default page: 100 devices")
    t.check(r.json["next_cursor"], "a cursor to the next page")
    e = r.json["devices"][0]
    t.eq(sorted(e), sorted(["id", "name", "product", "online", "last_seen", "adapter", "peer"]),
         "an entry's fields (never online: no offline_reason)")
    t0 = time.monotonic()
    got, pages, biggest, ok = walk(t, gw, "/api/devices", "devices", 1000)
    dt = time.monotonic() - t0
    ids = [d["id"] for d in got]
    t.eq(len(ids), len(want), "paging with limit=1000 sees 2,500 devices")
    t.eq(len(set(ids)), len(ids), "none twice")
    t.check(ids == want, "every device, in id order")
    t.eq((pages, biggest), (3, 1000), "three pages, at most 1,000 each")
    t.info("3 pages of up to 1,000 devices in %.1f ms (client side)" % (dt * 1e3))

    r = get(gw, "/api/devices?product=plug&limit=499")
    r2 = get(gw, "/api/devices?product=plug&limit=499&cursor=%s" % r.json["next_cursor"])
    t.eq((len(r.json["devices"]), [d["id"] for d in r2.json["devices"]], r2.json["next_cursor"]),
         (499, ["p-0500"], None), "limit one below the count: a second page with the last one")
    got, _, _, _ = walk(t, gw, "/api/devices?product=plug", "devices", 150)
    t.eq([d["id"] for d in got], ids_plug(), "product=plug: the 500 plugs, paged by 150")
    t.check(all(d["product"] == "plug" for d in got), "each entry names its product")
    kitchen = sorted(d["id"] for d in devices() if d.get("name", "").startswith("Kitchen"))
    got, _, _, _ = walk(t, gw, "/api/devices?q=KITCHEN", "devices", 10)
    t.eq([d["id"] for d in got], kitchen, "q= matches the name in any case")
    t.check(all(d["name"].startswith("Kitchen") for d in got), "names are given")
    got, _, _, _ = walk(t, gw, "/api/devices?q=p-04&product=plug", "devices", 30)
    t.eq([d["id"] for d in got], ["p-%04d" % i for i in range(400, 500)],
         "q= matches part of the id, with product=")


def online_filters(t, gw, clients):
    on = sorted(clients)

    def online_ids():
        r = get(gw, "/api/devices?online=true", token="read")
        return [d["id"] for d in r.json["devices"]] if r.status == 200 else None

    got = g.wait_until(lambda: online_ids() == on and online_ids(), timeout=10)
    t.eq(got, on, "online=true lists the connected devices")
    r = get(gw, "/api/devices?online=1&product=plug")
    t.eq([d["id"] for d in r.json["devices"]], [x for x in on if x.startswith("p-")],
         "online=1&product=plug")
    d = [x for x in get(gw, "/api/devices?online=true").json["devices"] if x["id"] == DEV][0]
    t.eq((d["online"], d["adapter"]), (True, "mqtt"), "an online entry: adapter mqtt")
    t.check(d["peer"] and d["peer"].startswith("127.0.0.1:"), "and its peer", d["peer"])
    t.check(isinstance(d["last_seen"], int) and d["last_seen"] > 0, "and last_seen")
    got, _, _, _ = walk(t, gw, "/api/devices?online=false&product=plug", "devices", 200)
    want = [x for x in ids_plug() if x not in on]
    t.eq([x["id"] for x in got], want, "online=false&product=plug: every other plug")


def device_state(t, gw, c):
    pid = 1
    for props in ({"temperature": 21.5, "humidity": 40}, {"temperature": 22.25, "on": True}):
        t.check(c.publish_wait(g.report_topic(DEV), g.report_payload("s%d" % pid, props), pid),
                "report %d acknowledged" % pid)
        pid += 1

    def state():
        r = get(gw, "/api/devices/" + DEV, token="read")
        p = r.json["properties"] if r.status == 200 else {}
        return r if p.get("temperature", {}).get("value") == 22.25 else None

    r = g.wait_until(state, timeout=10)
    t.check(r, "GET /api/devices/%s shows the newest temperature" % DEV)
    if not r:
        return
    p = r.json["properties"]
    t.eq(p["humidity"]["value"], 40, "humidity from the first report")
    t.eq(p["on"]["value"], True, "on from the second")
    t.check(isinstance(p["temperature"]["time"], int), "each value with its time")
    t.eq(p["mode"], {"value": None, "time": None}, "a property never reported: null")
    t.eq(sorted(p), sorted(x["id"] for x in g.THERMO["properties"]),
         "every property of the thing model")
    t.eq((r.json["id"], r.json["product"], r.json["online"], r.json["adapter"]),
         (DEV, "thermo", True, "mqtt"), "id, product, online, adapter")


def publish_history(t, c):
    acked = 0
    for i in range(N_REPORTS):
        pid = 100 + i
        if c.publish_wait(g.report_topic(DEV), g.report_payload(
                "h%d" % i, {"temperature": 20 + i / 100}, ts=TS0 + i * 1000), pid):
            acked += 1
    for i, (ev, data) in enumerate((("overheat", {"t": 90.5}), ("boot", {}),
                                    ("overheat", {"t": 91}), ("overheat", {"t": 92}))):
        if c.publish_wait(g.event_topic(DEV, ev), g.event_payload("e%d" % i, data), 1000 + i):
            acked += 1
    t.eq(acked, N_REPORTS + 4, "every report and event acknowledged")


def history(t, gw, tag):
    db = [r[0] for r in gw.query("SELECT id FROM events WHERE device = ? ORDER BY id DESC",
                                 (DEV,), wait_state=False)]
    t0 = time.monotonic()
    got, pages, biggest, ok = walk(t, gw, "/api/devices/%s/events" % DEV, "events", 100)
    dt = time.monotonic() - t0
    t.check(ok and [e["id"] for e in got] == db,
            "%s: paged history (100 a page) = the database's, newest first" % tag,
            "%d vs %d events" % (len(got), len(db)))
    t.info("%s: %d events in %d pages in %.1f ms" % (tag, len(got), pages, dt * 1e3))
    return got


def history_filters(t, gw):
    base = "/api/devices/%s/events" % DEV
    r = get(gw, base + "?limit=5")
    ev = r.json["events"]
    t.eq([e.get("messageId") for e in ev], ["e3", "e2", "e1", "e0", "h%d" % (N_REPORTS - 1)],
         "newest first")
    e = ev[0]
    t.eq((e["device"], e["product"], e["kind"], e["name"], e["values"]),
         (DEV, "thermo", "event", "overheat", {"t": 92.0}), "an event in the north shape")
    t.check(isinstance(e["time"], int) and isinstance(e["id"], int), "with time and id")
    r = get(gw, base + "?kind=event")
    t.eq([x["messageId"] for x in r.json["events"]], ["e3", "e2", "e1", "e0"], "kind=event")
    r = get(gw, base + "?kind=event&name=overheat&limit=2")
    t.eq([x["messageId"] for x in r.json["events"]], ["e3", "e2"], "name=overheat, limit=2")
    r2 = get(gw, base + "?kind=event&name=overheat&limit=2&cursor=" + r.json["next_cursor"])
    t.eq([x["messageId"] for x in r2.json["events"]], ["e0"], "... and its next page")
    r = get(gw, base + "?kind=online")
    t.eq(len(r.json["events"]), 1, "kind=online: one")
    t.eq(r.json["events"][0]["values"].get("adapter"), "mqtt", "its values name the adapter")
    lo, hi = TS0 + 10 * 1000, TS0 + 19 * 1000
    r = get(gw, base + "?kind=property&from=%d&to=%d" % (lo, hi))
    r0 = get(gw, base + "?from=-5&to=0")
    t.eq((r0.status, r0.json["events"]), (200, []), "from/to any integer ms (nothing before 0)")
    t.eq([x["messageId"] for x in r.json["events"]], ["h%d" % i for i in range(19, 9, -1)],
         "from/to in ms (inclusive)")
    iso = lambda ms: datetime.datetime.fromtimestamp(  # noqa: E731
        ms / 1000, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
    r = get(gw, base + "?from=%s&to=%s" % (iso(lo), iso(hi)))
    t.eq([x["messageId"] for x in r.json["events"]], ["h%d" % i for i in range(19, 9, -1)],
         "from/to in ISO 8601 (%s)" % iso(lo))
    off = datetime.datetime.fromtimestamp(lo / 1000, datetime.timezone(
        datetime.timedelta(hours=2))).strftime("%Y-%m-%dT%H:%M:%S+02:00")
    r = get(gw, base + "?to=" + off.replace("+", "%2B"))
    t.eq(r.json["events"][0]["messageId"] if r.json["events"] else None, "h10",
         "to= with an offset (+02:00)")


def bad_requests(t, gw):
    for path, param in (("/api/devices?limit=0", "limit"), ("/api/devices?limit=1001", "limit"),
                        ("/api/devices?limit=ten", "limit"), ("/api/devices?online=maybe", "online"),
                        ("/api/devices?product=nope", "product"),
                        ("/api/devices?cursor=%21%21", "cursor"),
                        ("/api/devices/%s/events?limit=0" % DEV, "limit"),
                        ("/api/devices/%s/events?limit=5000" % DEV, "limit"),
                        ("/api/devices/%s/events?kind=command" % DEV, "kind"),
                        ("/api/devices/%s/events?kind=bogus" % DEV, "kind"),
                        ("/api/devices/%s/events?from=yesterday" % DEV, "from"),
                        ("/api/devices/%s/events?to=2026-13-01" % DEV, "to"),
                        ("/api/devices/%s/events?cursor=abc" % DEV, "cursor")):
        r = get(gw, path)
        t.check(r.status == 400 and r.json and r.json.get("path") == param and
                param in r.json.get("message", ""), "400 naming %s: %s" % (param, path), r)
    for path in ("/api/devices/nope", "/api/devices/nope/events"):
        r = get(gw, path)
        t.check(r.status == 404 and r.json and r.json.get("error") == "not_found",
                "404 for %s" % path, r)
    for path in ("/api/devices", "/api/devices/" + DEV, "/api/devices/%s/events" % DEV):
        t.eq(get(gw, path, token=None).status, 401, "no token: 401 for " + path)
        t.eq(get(gw, path, token="read").status, 200, "read token: 200 for " + path)


def follows_changes(t, gw):
    """The list follows devices added and removed over the API (new generations); a removed
    device's stored events stay readable by its id."""
    r = gwapi.api(gw, "POST", "/api/devices", {"id": "a-new", "product": "plug",
                                               "secret": "s3cret-a-new", "name": "Added"})
    t.eq(r.status, 201, "POST /api/devices adds a-new", )
    r = get(gw, "/api/devices?limit=5")
    t.eq([d["id"] for d in r.json["devices"]][:1], ["a-new"], "the list shows it at once, in order")
    r = get(gw, "/api/devices?q=added")
    t.eq([d["id"] for d in r.json["devices"]], ["a-new"], "q= finds its name")
    c = g.device_client(gw, "a-new", "plug")
    t.check(c.publish_wait(g.report_topic("a-new", "plug"), g.report_payload("n1", {"on": True}),
                           1), "it reports")
    c.close()
    r = gwapi.api(gw, "DELETE", "/api/devices/a-new")
    t.check(r.status in (200, 204), "DELETE /api/devices/a-new", r)
    r = get(gw, "/api/devices?limit=5")
    t.check("a-new" not in [d["id"] for d in r.json["devices"]], "the list drops it")
    t.eq(get(gw, "/api/devices/a-new").status, 404, "GET /api/devices/a-new: 404")
    r = get(gw, "/api/devices/a-new/events?kind=property")
    t.eq((r.status, [e.get("messageId") for e in (r.json or {}).get("events", [])]), (200, ["n1"]),
         "its stored events stay readable")


def main():
    t = g.Results()
    gw = g.Gateway(products=[g.THERMO, g.PLUG], devices=devices(), loops=2)
    clients = {}
    try:
        list_paging(t, gw)
        for dev, prod in ((DEV, "thermo"), ("t-1999", "thermo"), ("p-0003", "plug")):
            clients[dev] = g.device_client(gw, dev, prod)
        online_filters(t, gw, clients)
        c = clients[DEV]
        device_state(t, gw, c)
        publish_history(t, c)
        history(t, gw, "running")
        history_filters(t, gw)
        bad_requests(t, gw)
        follows_changes(t, gw)
        for c in clients.values():
            c.close()
        gw.restart()
        c = g.device_client(gw, DEV)
        t.check(c.publish_wait(g.report_topic(DEV), g.report_payload(
            "after", {"temperature": 30.0}), 7), "a report after the restart")
        got = history(t, gw, "after a restart")
        kinds = [(e["kind"], e.get("name"), e.get("messageId")) for e in got[:4]]
        t.eq(kinds[0][2], "after", "the newest: the report after the restart")
        t.check(("online", None, None) in kinds and any(k[0] == "offline" for k in kinds),
                "then its online and the offline of the stop", kinds)
        t.eq(sum(1 for e in got if e.get("messageId", "").startswith("h")), N_REPORTS,
             "every report from before the restart still in the chain")
        # killed right after acknowledged reports: the heads past the state mark are found again
        acked = sum(1 for i in range(20) if c.publish_wait(g.report_topic(DEV), g.report_payload(
            "k%d" % i, {"temperature": 31.0}), 200 + i))
        gw.kill()
        gw.start()
        c.close()
        got = history(t, gw, "after SIGKILL")
        t.eq([e.get("messageId") for e in got if e.get("messageId", "").startswith("k")],
             ["k%d" % i for i in range(acked - 1, -1, -1)],
             "the %d reports acknowledged before SIGKILL, newest first" % acked)
        c = g.device_client(gw, DEV)
        t.check(c.publish_wait(g.report_topic(DEV), g.report_payload("z", {"temperature": 1.0}),
                               9), "a report after the SIGKILL restart")
        got = history(t, gw, "after SIGKILL and a new report")
        t.eq(got[0].get("messageId"), "z", "it heads the chain")
        c.close()
    except Exception as e:  # noqa: BLE001
        t.crash(e)
    t.finish()


if __name__ == "__main__":
    main()

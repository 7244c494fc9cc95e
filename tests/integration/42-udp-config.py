# Proves the UDP adapter's config checks (--check-config, exit 2 naming the JSON path): each listener names an existing product of protocol "udp", every udp product has a listener, no two listeners share an address and port, unknown keys and out-of-range values are refused; and a good section starts, reports its port and shuts down cleanly.
import re

import gwtest as g

UTHERMO = dict(g.THERMO, id="uthermo", protocol="udp")
DEVS = g.make_devices(["u-1"], "uthermo") + g.make_devices(["t-001"])


def listener(product=None, port=0):
    li = {"address": g.HOST, "port": port}
    if product is not None:
        li["product"] = product
    return li


def gateway(udp, products=None, start=False):
    gw = g.Gateway(products=products or [g.THERMO, UTHERMO], devices=DEVS,
                   config={"adapters": {"udp": udp}}, start=start)
    return gw


def main(t):
    good = {"listeners": [listener("uthermo")], "idle_timeout_ms": 60000, "rcvbuf": 1 << 20}
    code, out, err = g.check_config(gateway(good))
    t.eq(code, 0, "good udp section: exit 0")

    cases = [
        ("listener without product", {"listeners": [listener()]},
         r"adapters\.udp\.listeners\[0\]\.product: missing required key"),
        ("unknown product", {"listeners": [listener("uthermo"), listener("nope")]},
         r"adapters\.udp\.listeners\[1\]\.product: unknown product \"nope\""),
        ("product of another protocol", {"listeners": [listener("uthermo"), listener("thermo")]},
         r"adapters\.udp\.listeners\[1\]\.product: product \"thermo\" has protocol \"mqtt\""),
        ("udp product without a listener", {"listeners": [listener("uthermo")]},
         None),  # filled below with a second udp product
        ("same address and port twice",
         {"listeners": [listener("uthermo", 5999), listener("uthermo", 5999)]},
         r"adapters\.udp\.listeners\[1\]\.port: same address and port as listeners\[0\]"),
        ("unknown key", dict(good, bogus=1), r"adapters\.udp\.bogus: unknown key"),
        ("idle_timeout_ms too small", dict(good, idle_timeout_ms=5),
         r"adapters\.udp\.idle_timeout_ms"),
        ("no listeners", {"idle_timeout_ms": 60000}, r"adapters\.udp\.listeners"),
    ]
    for what, udp, want in cases:
        products = None
        if want is None:
            products = [g.THERMO, UTHERMO, dict(UTHERMO, id="uthermo2")]
            want = r"adapters\.udp\.listeners: no listener serves udp product \"uthermo2\""
        code, out, err = g.check_config(gateway(udp, products))
        t.eq(code, 2, "%s: exit 2" % what)
        t.check(re.search(r"gateway\.json: " + want, err), "%s: error names the path" % what,
                err.strip())

    # a good section runs: the port is reported, SIGTERM exits 0
    gw = gateway(good, start=True)
    t.check(g.adapter_port(gw, "udp"), "ready-fd: listener adapter=udp with its port", gw.ports)
    t.check(gw.find_log(0, area="runtime", msg="listening", adapter="udp"), "log: udp listening")
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")


g.run(main)

# Proves --check-config accepts a good config (exit 0, "config ok") and rejects broken ones with exit 2 naming the exact file, JSON path or line:col.
import copy
import json
import os
import re
import subprocess

import gwtest as g


def check_config(gw):
    p = subprocess.run([g.BIN, "--check-config", "-c", gw.cfg_path], capture_output=True,
                       timeout=30 * g.SLOW, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def file_re(rel):
    # the file as shown: relative to the config folder or a full path ending in it
    return r"(?:^|[\s/])" + re.escape(rel)


def main(t):
    # good config
    gw = g.Gateway(n_devices=3, start=False)
    code, out, err = check_config(gw)
    t.eq(code, 0, "good config: exit 0")
    t.check("config ok" in out, "good config: 'config ok' on stdout", repr(out))
    t.check(re.search(r"config ok: 1 products?, 3 devices?", out), "good config: counts", repr(out))

    # two products, 4 devices
    gw = g.Gateway(products=[g.THERMO, g.PLUG],
                   devices=g.make_devices(g.thermo_ids(3)) + g.make_devices(["p-1"], "plug"),
                   start=False)
    code, out, err = check_config(gw)
    t.eq(code, 0, "two products: exit 0")
    t.check(re.search(r"config ok: 2 products, 4 devices", out), "two products: counts", repr(out))

    # JSON syntax error in a product: missing comma at line 4
    gw = g.Gateway(start=False)
    text = '{\n  "id": "thermo",\n  "name": "x"\n  "protocol": "mqtt"\n}\n'
    with open(gw.path("products/thermo.json"), "w") as f:
        f.write(text)
    code, out, err = check_config(gw)
    t.eq(code, 2, "syntax error: exit 2")
    m = re.search(file_re("products/thermo.json") + r":(\d+):(\d+): JSON syntax error", err)
    t.check(m, "syntax error: file:line:col: JSON syntax error", repr(err))
    if m:
        t.eq(int(m.group(1)), 4, "syntax error: line")
        t.check(1 <= int(m.group(2)) <= len('  "protocol": "mqtt"') + 1, "syntax error: column "
                "within the line", m.group(2))

    # syntax error in gateway.json itself
    gw = g.Gateway(start=False)
    with open(gw.cfg_path, "w") as f:
        f.write('{\n  "loops": 2,\n  "log_level": \n}\n')
    code, out, err = check_config(gw)
    t.eq(code, 2, "gateway.json syntax error: exit 2")
    t.check(re.search(file_re("gateway.json") + r":\d+:\d+: JSON syntax error", err),
            "gateway.json syntax error: file:line:col", repr(err))

    # unknown key, top level of gateway.json
    gw = g.Gateway(config={"bogus_key": 1}, start=False)
    code, out, err = check_config(gw)
    t.eq(code, 2, "unknown top-level key: exit 2")
    t.check(re.search(file_re("gateway.json") + r": bogus_key: unknown key", err),
            "unknown top-level key: file + path", repr(err))

    # unknown key in adapters.mqtt
    gw = g.Gateway(config={"adapters": {"mqtt": {"colour": "red"}}}, start=False)
    code, out, err = check_config(gw)
    t.eq(code, 2, "unknown adapters.mqtt key: exit 2")
    t.check(re.search(file_re("gateway.json") + r": adapters\.mqtt\.colour: unknown key", err),
            "unknown adapters.mqtt key: file + path", repr(err))

    # unknown key in storage
    gw = g.Gateway(config={"storage": {"pathh": "x.db"}}, start=False)
    code, out, err = check_config(gw)
    t.eq(code, 2, "unknown storage key: exit 2")
    t.check(re.search(file_re("gateway.json") + r": storage\.pathh: unknown key", err),
            "unknown storage key: file + path", repr(err))

    # unknown key in a product property
    prod = copy.deepcopy(g.THERMO)
    prod["properties"][1]["colour"] = "blue"
    gw = g.Gateway(products=[prod], start=False)
    code, out, err = check_config(gw)
    t.eq(code, 2, "unknown property key: exit 2")
    t.check(re.search(file_re("products/thermo.json") + r": properties\[1\]\.colour: unknown key",
                      err), "unknown property key: file + path", repr(err))

    # min > max
    prod = copy.deepcopy(g.THERMO)
    prod["properties"][0]["min"] = 10
    prod["properties"][0]["max"] = 5
    gw = g.Gateway(products=[prod], start=False)
    code, out, err = check_config(gw)
    t.eq(code, 2, "min > max: exit 2")
    t.check(re.search(file_re("products/thermo.json") + r": properties\[0\](\.min|\.max)?: ", err),
            "min > max: file + path", repr(err))
    t.check("greater than" in err or "min" in err, "min > max: says what", repr(err))

    # int min > max on an event param / function input
    prod = copy.deepcopy(g.THERMO)
    prod["functions"][0]["inputs"][0]["min"] = 100
    gw = g.Gateway(products=[prod], start=False)
    code, out, err = check_config(gw)
    t.eq(code, 2, "input min > max: exit 2")
    t.check(re.search(file_re("products/thermo.json")
                      + r": functions\[0\]\.inputs\[0\](\.min|\.max)?: ", err),
            "input min > max: file + path", repr(err))

    # device with unknown product
    devs = g.make_devices(["t-001"]) + [{"id": "t-002", "product": "nope", "secret": "x"}]
    gw = g.Gateway(devices=devs, start=False)
    code, out, err = check_config(gw)
    t.eq(code, 2, "unknown product: exit 2")
    t.check(re.search(file_re("devices.json") + r": (devices)?\[1\]\.product: ", err),
            "unknown product: file + path", repr(err))
    t.check('"nope"' in err or "nope" in err, "unknown product: names it", repr(err))

    # several errors at once: each on its own line
    prod = copy.deepcopy(g.THERMO)
    prod["properties"][0]["min"] = 10
    prod["properties"][0]["max"] = 5
    gw = g.Gateway(products=[prod], devices=devs, config={"bogus_key": 1}, start=False)
    code, out, err = check_config(gw)
    t.eq(code, 2, "three errors: exit 2")
    lines = [ln for ln in err.splitlines() if ln.strip()]
    t.check(len([ln for ln in lines if re.search(r"bogus_key|properties\[0\]|\[1\]\.product", ln)])
            >= 3, "three errors: three lines", repr(err))

    # every error is reported, including an adapter section's, when other files have errors too
    gw = g.Gateway(products=[prod], devices=devs,
                   config={"bogus_key": 1, "adapters": {"mqtt": {"colour": "red"}}}, start=False)
    code, out, err = check_config(gw)
    t.eq(code, 2, "errors in several files + adapter section: exit 2")
    t.check(re.search(r"adapters\.mqtt\.colour: unknown key", err),
            "adapter section error reported alongside other files' errors", repr(err))

    # a json codec mapping section ("json") with four problems: each reported, file + JSON path
    prod = copy.deepcopy(g.THERMO)
    prod["json"] = {"properties": {"pressure": "$.p", "humidity": {"path": "$.h", "scale": 0},
                                   "temperature": "d.t"},
                    "events": {"overheat": {"zone": "$.z"}}}
    gw = g.Gateway(products=[prod], start=False)
    code, out, err = check_config(gw)
    t.eq(code, 2, "json mapping with four errors: exit 2")
    for path in (r"json\.properties\.pressure: not a property",
                 r"json\.properties\.humidity\.scale: must not be 0",
                 r"json\.properties\.temperature: .*a path starts with \$",
                 r"json\.events\.overheat\.zone: not a param"):
        t.check(re.search(file_re("products/thermo.json") + r": " + path, err),
                "json mapping: reported with file + path: " + path, repr(err))

    # usage error: exit 1
    p = subprocess.run([g.BIN, "--check-config"], capture_output=True, timeout=30,
                       stdin=subprocess.DEVNULL)
    t.eq(p.returncode, 1, "no -c: usage error exit 1")

    # the gateway itself refuses to start on a bad config (exit 2, same message)
    gw = g.Gateway(config={"bogus_key": 1}, start=False)
    p = subprocess.run([g.BIN, "-c", gw.cfg_path], capture_output=True, timeout=30 * g.SLOW,
                       stdin=subprocess.DEVNULL)
    t.check(p.returncode != 0, "run with bad config: non-zero exit", p.returncode)
    t.check(b"bogus_key" in p.stderr, "run with bad config: error on stderr", p.stderr[-300:])


g.run(main)

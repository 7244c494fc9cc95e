# Proves the docs cannot drift: every fenced ```sh block of README.md and docs/*.md runs against a
# gateway on the shipped config (ports rewritten to the ones it bound) and the output it documents
# with "# expect: TEXT" (stdout contains TEXT) or "# expect-hex: HEX" (the bytes, as xxd prints
# them, are HEX) is checked. A block that cannot run here is marked in the doc, on the line before
# its fence, with <!-- docs-test: skip REASON --> and counted.
import glob
import json
import os
import re
import shutil
import subprocess
import sys

import gwtest as g

SKIP_RE = re.compile(r"<!--\s*docs-test:\s*skip\b(.*?)-->")
FENCE_RE = re.compile(r"^```sh\s*$")
# the shipped config's ports -> (adapter, product) of the listener that replaces them
PORTS = {1883: ("mqtt", None), 9100: ("admin", None), 5020: ("tcp", "meter-tcp"),
         5808: ("tcp", "tracker-808"), 5021: ("tcp", "meter-pb"), 5023: ("tcp", "gt06"),
         5027: ("tcp", "teltonika-fmb"),
         5690: ("udp", "sensor-udp"),
         5691: ("udp", "sensor-pb"), 5683: ("coap", None), 5684: ("coaps", None)}
TOOLS = ("mosquitto_pub", "mosquitto_sub", "mosquitto_rr", "nc", "xxd", "sqlite3", "curl",
         "coap-client-openssl", "protoc-c", "mosquitto")


def blocks(path):
    """(line, code, skip reason or None) of every ```sh block of one markdown file."""
    out = []
    lines = open(path, encoding="utf-8").read().split("\n")
    i = 0
    while i < len(lines):
        if FENCE_RE.match(lines[i]):
            start = i
            j = i + 1
            while j < len(lines) and not lines[j].startswith("```"):
                j += 1
            prev = lines[start - 1] if start > 0 else ""
            m = SKIP_RE.search(prev)
            out.append((start + 1, "\n".join(lines[start + 1:j]),
                        (m.group(1).strip() or "marked") if m else None))
            i = j + 1
        else:
            i += 1
    return out


def shipped_gateway(broker):
    src = os.path.join(g.SRC, "config")
    cfg = json.load(open(os.path.join(src, "gateway.json")))
    products = [json.load(open(p, encoding="utf-8"))
                for p in sorted(glob.glob(os.path.join(src, "products", "*.json")))]
    devices = json.load(open(os.path.join(src, "devices.json")))
    cfg["admin"]["listeners"] = [dict(li, port=0) for li in cfg["admin"]["listeners"]]
    cfg["north"] = dict(cfg.get("north", {}), enabled=True, host=g.HOST, port=broker.port)
    cfg["storage"]["path"] = "data/iotgw.db"
    for name, ad in cfg["adapters"].items():
        for key in ("listeners", "dtls_listeners"):
            lst, seen = [], set()
            for li in ad.get(key, []):
                li = dict(li, address=g.HOST, port=0)
                ident = (li.get("product"), "tls" in li)
                if ident in seen:  # 0.0.0.0 and :: on one port: one loopback listener is enough
                    continue
                seen.add(ident)
                lst.append(li)
            if lst:
                ad[key] = lst
    gw = g.Gateway(products=products, devices=devices, config=cfg, loops=2, start=False)
    gw.cfg = cfg  # the shipped keys as they are, not merged into the test defaults
    gw.cfg["loops"] = 2
    gw.write_config()
    os.makedirs(gw.path("tmp"), exist_ok=True)
    # the TLS listener's throwaway certificate (config/tls/ in a checkout), in the test's dir
    subprocess.run(["sh", os.path.join(g.SRC, "deploy", "make-example-certs.sh"),
                    gw.path("tls")], check=True, capture_output=True, timeout=60)
    gw.start()
    return gw


def port_map(gw):
    m = {}
    for port, (adapter, product) in PORTS.items():
        got = gw.product_ports.get(product) if product else gw.ports.get(adapter)
        if got:
            m[port] = got
    tls = [int(kv["port"]) for kv in gw.listeners if kv.get("adapter") == "mqtt"][1:2]
    if tls:  # 8883: the second MQTT listener (TLS)
        m[8883] = tls[0]
    return m


def rewrite(code, gw, ports):
    code = code.replace("/tmp/", gw.path("tmp") + "/")  # the examples' scratch files, private
    for old, new in ports.items():
        code = re.sub(r"(?<![\d.])%d(?![\d])" % old, str(new), code)
    coap, coaps = ports.get(5683), ports.get(5684)
    code = code.replace("coap://127.0.0.1/", "coap://127.0.0.1:%d/" % coap)
    code = code.replace("coaps://127.0.0.1/", "coaps://127.0.0.1:%d/" % coaps)
    code = code.replace("data/iotgw.db", gw.db_path)
    code = code.replace("config/gateway.json", gw.cfg_path)
    code = code.replace("config/tls/", gw.path("tls") + "/")
    code = re.sub(r"(?<![\w/])\./build/iotgw\b", g.BIN, code)
    return code


def xxd_hex(text):
    """The bytes of xxd's default output, as upper-case hex without spaces."""
    out = []
    for line in text.splitlines():
        m = re.match(r"^[0-9a-f]{8}: ((?:[0-9a-f]{2,4} ?)+)", line)
        if m:
            out.append(m.group(1).replace(" ", ""))
    return "".join(out).upper()


def expectations(code):
    exp = []
    for line in code.splitlines():
        m = re.match(r"^\s*#\s*expect(-hex)?:\s*(.*?)\s*$", line)
        if m:
            exp.append(("hex" if m.group(1) else "text", m.group(2)))
    return exp


GENERATED = ("docs/CONFIG-KEYS.md",)  # written by the build's generator; may be absent here


def slug(heading):
    """GitHub's anchor of a heading."""
    h = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return h.replace(" ", "-")


def check_links(t, docs):
    """Every relative link of README.md and docs/ names a file that exists and, with #anchor, a
    heading of that file."""
    bad, n = [], 0
    anchors = {}
    for path in docs:
        text = open(path, encoding="utf-8").read()
        text = re.sub(r"```.*?```", "", text, flags=re.S)
        for m in re.finditer(r"\]\(([^)\s]+)\)", text):
            target = m.group(1)
            if re.match(r"^[a-z]+:", target):
                continue
            n += 1
            file, _, anchor = target.partition("#")
            full = os.path.normpath(os.path.join(os.path.dirname(path), file)) if file else path
            rel = os.path.relpath(full, g.SRC)
            if not os.path.exists(full):
                if rel not in GENERATED:
                    bad.append("%s -> %s" % (os.path.relpath(path, g.SRC), target))
                continue
            if anchor and full.endswith(".md"):
                if full not in anchors:
                    body = re.sub(r"```.*?```", "", open(full, encoding="utf-8").read(),
                                  flags=re.S)
                    anchors[full] = {slug(h) for h in re.findall(r"^#+ (.*)$", body, re.M)}
                if anchor not in anchors[full]:
                    bad.append("%s -> %s (no such heading)" % (os.path.relpath(path, g.SRC),
                                                               target))
    t.check(not bad, "all %d relative links of the docs resolve (files and headings)" % n, bad)


def main(t):
    missing = [x for x in TOOLS if not shutil.which(x)]
    t.check(not missing, "the tools the examples use are installed", missing)
    docs = [os.path.join(g.SRC, "README.md")] + sorted(glob.glob(os.path.join(g.SRC, "docs",
                                                                             "*.md")))
    only = os.environ.get("DOCS_FILE")  # a doc to test instead (the proof that a stale one fails)
    if only:
        docs = [only]
    broker = g.Mosquitto()  # the upstream broker the docs call "mosquitto -p 1884"
    if not only:
        check_links(t, docs)
    gw = shipped_gateway(broker)
    ports = port_map(gw)
    ports[1884] = broker.port
    t.info("ports: %s" % ports)
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + ":" + os.environ["PATH"])
    ran = skipped = checked = 0
    for path in docs:
        rel = os.path.relpath(path, g.SRC)
        for line, code, skip in blocks(path):
            where = "%s:%d" % (rel, line)
            if skip:
                skipped += 1
                t.info("skip %s (%s)" % (where, skip))
                continue
            ran += 1
            try:
                p = subprocess.run(["bash", "-o", "pipefail", "-c", rewrite(code, gw, ports)],
                                   cwd=g.SRC, capture_output=True, timeout=30 * g.SLOW,
                                   stdin=subprocess.DEVNULL, env=env, start_new_session=True)
            except subprocess.TimeoutExpired:
                t.check(False, "%s runs within %d s" % (where, 30 * g.SLOW))
                continue
            out = p.stdout.decode("utf-8", "replace")
            t.check(p.returncode == 0, "%s runs (exit 0)" % where,
                    "exit %d; stderr: %s" % (p.returncode, p.stderr.decode("utf-8",
                                                                           "replace")[-400:]))
            for kind, want in expectations(code):
                checked += 1
                if kind == "hex":
                    t.eq(xxd_hex(out), want.replace(" ", "").upper(),
                         "%s: the bytes it documents" % where)
                else:
                    want = rewrite(want, gw, ports)
                    t.check(want in out, "%s: prints %r" % (where, want), out[-600:])
    t.info("ran %d blocks (%d documented outputs checked), skipped %d marked ones"
           % (ran, checked, skipped))
    t.check(ran >= 8 and checked >= 10, "most examples run and state their output",
            (ran, checked))
    gw.stop()
    broker.stop()


g.run(main)

# Proves the Debian package: cpack -G DEB in the test's build folder makes a .deb whose metadata
# (Depends covering every library the binary links, conffiles for every /etc file, maintainer
# scripts that make the iotgw system user) and contents (/usr/bin, /etc/iotgw, /usr/share/iotgw,
# the unit) are right; its installed gateway.json points at /var/lib/iotgw and /usr/share/iotgw/web;
# extracted into a throwaway root (paths and ports moved there) it passes --check-config, starts,
# answers /health and the console, warns when the open file limit is below max_connections' need,
# and exits 0 on SIGTERM; the unit is hardened as documented and passes systemd-analyze verify.
import glob
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import tempfile

import gwtest as g

BUILD = os.path.dirname(os.path.abspath(g.BIN))
# The runtime libraries the issue names (libcoap3 is not among them: the CoAP adapter is iotgw's
# own code, the binary does not link libcoap; nor libmosquitto1 since issue 19: the upstream MQTT
# client is iotgw's own too) and adduser for postinst.
WANT_DEPENDS = ["libuv1", "libsqlite3-0", "libjansson4", "libprotobuf-c1", "libssl3",
                "libh2o0.13", "adduser", "openssl"]
WANT_FILES = ["./usr/bin/iotgw", "./etc/iotgw/gateway.json", "./etc/iotgw/devices.json",
              "./etc/iotgw/products/thermo.json", "./etc/iotgw/products/meter-tcp.json",
              "./usr/share/iotgw/web/index.html", "./usr/share/iotgw/examples/gateway.json",
              "./usr/share/iotgw/examples/devices.json",
              "./usr/share/iotgw/examples/products/thermo.json",
              "./usr/share/doc/iotgw/INSTALL.md", "./usr/share/doc/iotgw/README.md",
              "./usr/share/iotgw/make-example-certs.sh", "./lib/systemd/system/iotgw.service"]


def run(cmd, **kw):
    p = subprocess.run(cmd, capture_output=True, timeout=120, stdin=subprocess.DEVNULL, **kw)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def unit_keys(text):
    """[Service] key -> list of values (a key may repeat) of a systemd unit."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";", "[")) or "=" not in line:
            continue
        k, v = line.split("=", 1)
        out.setdefault(k.strip(), []).append(v.strip())
    return out


def check_depends(t, binary, depends):
    names = {re.split(r"[\s(]", d.strip())[0] for d in depends.split(",") if d.strip()}
    for want in WANT_DEPENDS:
        t.check(want in names, "Depends names %s" % want, depends)
    t.check("libcoap3" not in names, "Depends has no libcoap3 (not linked)", depends)
    t.check("libmosquitto1" not in names, "Depends has no libmosquitto1 (not linked)", depends)
    # every library the binary really links is provided by a package it depends on
    code, out, _ = run(["objdump", "-p", binary])
    needed = re.findall(r"NEEDED\s+(\S+)", out)
    t.check(code == 0 and needed, "objdump lists the binary's libraries", out[-300:])
    for so in needed:
        code, out, err = run(["dpkg", "-S", "*/" + so])
        owners = {line.split(":")[0] for line in out.splitlines() if ":" in line}
        t.check(code == 0 and owners & names, "%s (linked) comes from a dependency" % so,
                "owners %r, depends %r" % (owners, sorted(names)))


def main(t):
    if not os.path.exists(os.path.join(BUILD, "CPackConfig.cmake")):
        raise g.GatewayError("no CPackConfig.cmake in %s (IOTGW_BIN's build folder)" % BUILD)
    with open(os.path.join(BUILD, "CMakeCache.txt")) as f:
        prefix = re.search(r"^CMAKE_INSTALL_PREFIX:PATH=(.*)$", f.read(), re.M).group(1)
    if prefix != "/usr":
        print("# SKIP the build folder installs under %s; the package is made with /usr" % prefix)
        print("1 passed, 0 failed (skipped)")
        sys.exit(0)
    tmp = tempfile.mkdtemp(prefix="iotgw-pkg-")
    try:
        body(t, tmp)
    finally:
        if os.environ.get("IOTGW_KEEP") != "1":
            shutil.rmtree(tmp, ignore_errors=True)


def body(t, tmp):
    # -- build the package in a folder of our own (the build folder gets no _CPack_Packages)
    code, out, err = run(["cpack", "-G", "DEB", "-B", os.path.join(tmp, "pkg"), "--config",
                          os.path.join(BUILD, "CPackConfig.cmake")], cwd=BUILD)
    debs = glob.glob(os.path.join(tmp, "pkg", "iotgw_*.deb"))
    if not t.check(code == 0 and len(debs) == 1, "cpack -G DEB makes one iotgw_*.deb",
                   out[-2000:] + err[-2000:]):
        return
    deb = debs[0]
    t.info("package: %s (%d bytes)" % (os.path.basename(deb), os.path.getsize(deb)))

    # -- metadata
    code, out, _ = run([g.BIN, "--version"])
    version = out.split()[1] if code == 0 and len(out.split()) > 1 else "?"
    fields = {}
    for name in ("Package", "Version", "Architecture", "Depends", "Maintainer", "Description"):
        fields[name] = run(["dpkg-deb", "-f", deb, name])[1].strip()
    t.eq(fields["Package"], "iotgw", "Package: iotgw")
    t.eq(fields["Version"], version, "Version is iotgw --version's")
    arch = run(["dpkg", "--print-architecture"])[1].strip()
    t.eq(fields["Architecture"], arch, "Architecture is the build machine's")
    t.check(fields["Maintainer"] and fields["Description"], "Maintainer and Description set")

    # -- contents
    code, out, _ = run(["dpkg-deb", "-c", deb])
    entries = {}
    for line in out.splitlines():
        parts = line.split()
        if len(parts) >= 6:
            entries[parts[5]] = (parts[0], parts[1])
    for f in WANT_FILES:
        t.check(f in entries, "package holds %s" % f)
    t.eq(entries.get("./usr/bin/iotgw", ("", ""))[0], "-rwxr-xr-x", "/usr/bin/iotgw is 0755")
    t.eq(entries.get("./etc/iotgw/devices.json", ("", ""))[0], "-rw-r-----",
         "/etc/iotgw/devices.json is not world-readable (secrets)")
    t.check(all(o == "root/root" for _, o in entries.values()), "every file owned by root")
    t.check(not [e for e in entries if e.startswith("./var/")],
            "nothing under /var (postinst and StateDirectory make /var/lib/iotgw)")

    # -- control: conffiles, maintainer scripts
    ctl = os.path.join(tmp, "control")
    code, _, err = run(["dpkg-deb", "-e", deb, ctl])
    t.check(code == 0, "dpkg-deb -e", err)
    etc_files = sorted(e[1:] for e, (mode, _) in entries.items()
                       if e.startswith("./etc/") and not mode.startswith("d"))
    with open(os.path.join(ctl, "conffiles")) as f:
        conffiles = sorted(line.strip() for line in f if line.strip())
    t.eq(conffiles, etc_files, "conffiles: exactly every file under /etc")
    for s in ("postinst", "prerm", "postrm"):
        p = os.path.join(ctl, s)
        t.check(os.path.exists(p) and os.access(p, os.X_OK), "maintainer script %s, executable" % s)
        code, _, err = run(["sh", "-n", p])
        t.check(code == 0, "%s: sh -n" % s, err)
    with open(os.path.join(ctl, "postinst")) as f:
        postinst = f.read()
    t.check(re.search(r"getent passwd iotgw", postinst) and
            re.search(r"adduser --system --group .*iotgw", postinst, re.S),
            "postinst makes the system user iotgw only when missing (adduser --system --group)")
    t.check("chown iotgw:iotgw /var/lib/iotgw" in postinst, "postinst gives /var/lib/iotgw to iotgw")
    t.check("make-example-certs.sh /etc/iotgw/tls" in postinst and "chmod 0640 /etc/iotgw/tls/server.key"
            in postinst, "postinst makes the 8883 listener's throwaway certificate, key readable by iotgw only")
    check_depends(t, g.BIN, fields["Depends"])

    # -- extracted into a throwaway root
    root = os.path.join(tmp, "root")
    code, _, err = run(["dpkg-deb", "-x", deb, root])
    t.check(code == 0, "dpkg-deb -x", err)
    etc = os.path.join(root, "etc", "iotgw")
    with open(os.path.join(etc, "gateway.json")) as f:
        installed = json.load(f)
    t.eq(installed["storage"]["path"], "/var/lib/iotgw/iotgw.db",
         "installed gateway.json: storage.path /var/lib/iotgw/iotgw.db")
    t.eq(installed["admin"].get("web_root"), "/usr/share/iotgw/web",
         "installed gateway.json: admin.web_root /usr/share/iotgw/web")
    with open(os.path.join(g.SRC, "config", "gateway.json")) as f:
        repo = json.load(f)
    same = json.loads(json.dumps(installed))
    same["storage"]["path"] = repo["storage"]["path"]
    del same["admin"]["web_root"]
    t.check(same == repo, "installed gateway.json differs from config/gateway.json only there")
    with open(os.path.join(etc, "devices.json")) as f:
        t.eq(json.load(f), [], "installed devices.json is empty (examples' secrets are public)")
    t.check(filecmp_same(os.path.join(root, "usr/share/iotgw/examples/devices.json"),
                         os.path.join(g.SRC, "config", "devices.json")),
            "examples/devices.json is the repository's")

    # the installed config moved into the root: storage and web under it, listeners on loopback
    os.makedirs(os.path.join(root, "var", "lib", "iotgw"))
    cfg = json.loads(json.dumps(installed))
    cfg["storage"]["path"] = root + cfg["storage"]["path"]
    cfg["admin"]["web_root"] = root + cfg["admin"]["web_root"]
    cfg["loops"] = 2
    g.loopback_listeners(cfg)
    with open(os.path.join(etc, "gateway.json"), "w") as f:
        json.dump(cfg, f, indent=2)
    binary = os.path.join(root, "usr", "bin", "iotgw")
    # what postinst does for the shipped 8883 listener: a throwaway certificate in /etc/iotgw/tls
    code, _, err = run(["sh", os.path.join(root, "usr/share/iotgw/make-example-certs.sh"),
                        os.path.join(etc, "tls")])
    t.check(code == 0 and os.path.exists(os.path.join(etc, "tls", "server.crt")),
            "the packaged make-example-certs.sh makes /etc/iotgw/tls (as postinst does)", err)
    code, out, err = run([binary, "--check-config", "-c", os.path.join(etc, "gateway.json")])
    t.check(code == 0, "extracted iotgw --check-config on the extracted config", err)
    t.check("config ok: 11 products, 0 devices" in out, "check-config counts", out)

    gw = g.Gateway(start=False)
    gw.cfg_path = os.path.join(etc, "gateway.json")
    gw.cfg = cfg
    saved, g.BIN = g.BIN, binary
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(1024, hard), hard))  # inherited
        try:
            gw.start()
        finally:
            resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    finally:
        g.BIN = saved
    t.check(gw.ports.get("mqtt") and gw.ports.get("tcp") and gw.ports.get("coap"),
            "extracted gateway ready: listeners bound", gw.ports)
    t.eq(gw.http_get("/health"), (200, "ok\n"), "/health answers ok")
    status, page = gw.http_get("/")
    with open(os.path.join(g.SRC, "web", "index.html")) as f:
        t.check(status == 200 and page == f.read(), "/ serves the console from /usr/share/iotgw/web",
                status)
    warn = gw.find_log(msg="open file limit below what max_connections needs: raise LimitNOFILE "
                           "or lower max_connections")
    t.check(warn and warn[0].get("nofile") == str(min(1024, hard)) and
            warn[0].get("max_connections") == "100000",
            "start-up warns that 1024 open files are too few for max_connections 100000",
            gw.log_tail(10))
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")
    t.check(os.path.exists(os.path.join(root, "var/lib/iotgw/iotgw.db")),
            "database created under the root's /var/lib/iotgw")

    check_unit(t, root, binary, installed, tmp)


def filecmp_same(a, b):
    with open(a, "rb") as fa, open(b, "rb") as fb:
        return fa.read() == fb.read()


def check_unit(t, root, binary, installed, tmp):
    path = os.path.join(root, "lib/systemd/system/iotgw.service")
    with open(path) as f:
        text = f.read()
    with open(os.path.join(g.SRC, "deploy", "iotgw.service")) as f:
        t.eq(text, f.read(), "the packaged unit is deploy/iotgw.service")
    k = unit_keys(text)
    for key, want in (("Type", ["notify"]), ("User", ["iotgw"]), ("StateDirectory", ["iotgw"]),
                      ("ProtectSystem", ["strict"]), ("NoNewPrivileges", ["yes"]),
                      ("CapabilityBoundingSet", [""]),
                      ("ExecReload", ["/bin/kill -HUP $MAINPID"]),
                      ("ExecStart", ["/usr/bin/iotgw -c /etc/iotgw/gateway.json"]),
                      ("ExecStartPre", ["/usr/bin/iotgw --check-config -c /etc/iotgw/gateway.json"])):
        t.eq(k.get(key), want, "unit: %s=%s" % (key, " ".join(want)))
    t.check("AmbientCapabilities" not in k and "#   AmbientCapabilities=CAP_NET_BIND_SERVICE" in text,
            "unit: no capability; CAP_NET_BIND_SERVICE documented in a comment")
    # LimitNOFILE against what the installed config needs (iotgw's start-up check, main.c):
    # max_connections + 2 x admin.max_connections + 16 per loop + 64, loops = this machine's cores
    nofile = int(k.get("LimitNOFILE", ["0"])[0])
    loops = installed.get("loops") or os.cpu_count()
    need = installed["max_connections"] + 2 * installed["admin"]["max_connections"] + 16 * loops + 64
    t.check(nofile >= need, "unit: LimitNOFILE=%d covers the installed config (%d with %d loops)"
            % (nofile, need, loops))
    t.check(nofile - need < 16 * 200, "unit: LimitNOFILE not far above it (%d)" % nofile)

    sa = shutil.which("systemd-analyze")
    if not sa:
        t.info("SKIP systemd-analyze verify: systemd-analyze is not installed (apt install systemd)")
        return
    # verify checks that ExecStart's binary exists: point the copy at the extracted one
    copy = os.path.join(tmp, "iotgw.service")
    with open(copy, "w") as f:
        f.write(text.replace("/usr/bin/iotgw", binary))
    code, out, err = run([sa, "verify", copy])
    t.check(code == 0 and not err.strip(), "systemd-analyze verify: no complaint", err)
    # ... which would complain about a bad line (the check above can fail)
    with open(copy, "w") as f:
        f.write(text.replace("/usr/bin/iotgw", binary).replace("Type=notify", "Type=notifyy"))
    code, out, err = run([sa, "verify", copy])
    t.check("notifyy" in err, "systemd-analyze verify reports a bad Type", err)


if __name__ == "__main__":
    g.run(main)

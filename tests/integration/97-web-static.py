# Proves the web console's static files served by the gateway at / (admin.web_root): each file's
# bytes with its content type (html, js, css, svg), caching (no-cache for pages, max-age for
# /assets/, ETag revalidation answered 304), a strict Content-Security-Policy (no inline script or
# style, nothing from elsewhere) with nosniff and DENY framing on every answer, HEAD, only GET and
# HEAD (405), 404 for a missing file, no path traversal (raw, percent-encoded and doubled-slash
# forms of ../ never reach a canary file beside the web root), the API, /metrics and /health
# unchanged beside the files; the web files themselves carry no inline script or style; without
# a web root folder nothing is served at / (the API's JSON 404 as before).
import http.client
import os
import re
import shutil

import gwapi
import gwtest as g

SRC = os.environ.get("IOTGW_SRC", os.path.join(os.path.dirname(__file__), "..", ".."))
WEB = os.path.abspath(os.path.join(SRC, "web"))
CANARY = "canary-4b1d9c-do-not-serve"


def get(port, method, path, headers=None):
    """One request with the path sent byte for byte (no client-side normalisation)."""
    c = http.client.HTTPConnection(g.HOST, port, timeout=10 * g.SLOW)
    try:
        c.putrequest(method, path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            c.putheader(k, v)
        c.endheaders()
        r = c.getresponse()
        return r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read()
    finally:
        c.close()


def file_bytes(root, rel):
    with open(os.path.join(root, rel), "rb") as f:
        return f.read()


def check_csp(t, hdrs, what):
    csp = hdrs.get("content-security-policy", "")
    d = dict((p.strip().split(" ", 1) + [""])[:2] for p in csp.split(";") if p.strip())
    t.check(d.get("default-src") == "'self'" and d.get("script-src") == "'self'" and
            d.get("style-src") == "'self'" and "unsafe" not in csp and
            d.get("object-src") == "'none'" and d.get("frame-ancestors") == "'none'",
            "%s: strict CSP (self only, no unsafe-inline/eval, no objects, not framed)" % what, csp)
    t.check(hdrs.get("x-content-type-options") == "nosniff" and
            hdrs.get("x-frame-options") == "DENY", "%s: nosniff, X-Frame-Options DENY" % what,
            hdrs)


def main():
    t = g.Results("97-web-static")
    gw = gw2 = None
    try:
        base = g.Gateway(start=False)
        root = os.path.join(base.dir, "webroot")
        shutil.copytree(WEB, root)
        with open(os.path.join(base.dir, "secret.txt"), "w") as f:  # beside the web root
            f.write(CANARY)
        with open(os.path.join(root, "assets", "..", "..", "gateway-copy.txt"), "w") as f:
            f.write(CANARY)
        base.cfg["admin"]["web_root"] = "webroot"  # relative to gateway.json's folder
        base.write_config()
        base.start()
        gw = base
        p = gw.admin_port

        # ---- files, types, caching ----
        index = file_bytes(root, "index.html")
        for path in ("/", "/index.html"):
            st, h, body = get(p, "GET", path)
            t.check(st == 200 and body == index, "GET %s: 200 with index.html's bytes" % path,
                    (st, body[:80]))
            t.eq(h.get("content-type"), "text/html; charset=utf-8", "GET %s: content type" % path)
            t.eq(h.get("cache-control"), "no-cache", "GET %s: Cache-Control no-cache" % path)
            check_csp(t, h, "GET %s" % path)
        etag = h.get("etag")
        st, h, body = get(p, "GET", "/", {"If-None-Match": etag or "x"})
        t.check(etag and st == 304 and body == b"", "GET / with If-None-Match: 304, no body",
                (etag, st))
        for rel, ctype in (("assets/app.js", "text/javascript; charset=utf-8"),
                           ("assets/app.css", "text/css; charset=utf-8"),
                           ("assets/icon.svg", "image/svg+xml")):
            st, h, body = get(p, "GET", "/" + rel)
            t.check(st == 200 and body == file_bytes(root, rel), "GET /%s: 200, the file" % rel,
                    st)
            t.eq(h.get("content-type"), ctype, "GET /%s: content type" % rel)
            t.eq(h.get("cache-control"), "max-age=300", "GET /%s: Cache-Control max-age" % rel)
            check_csp(t, h, "GET /" + rel)
        st, h, body = get(p, "HEAD", "/assets/app.js")
        t.check(st == 200 and body == b"" and
                h.get("content-length") == str(len(file_bytes(root, "assets/app.js"))),
                "HEAD: 200, the file's length, no body", (st, h.get("content-length")))

        # ---- methods, missing files ----
        for m, path in (("POST", "/"), ("PUT", "/assets/app.js"), ("DELETE", "/index.html")):
            st, h, _ = get(p, m, path)
            t.check(st == 405 and "GET" in h.get("allow", ""), "%s %s: 405 with Allow" % (m, path),
                    (st, h.get("allow")))
        for path in ("/nope.html", "/assets/nope.js", "/assets/"):
            st, h, body = get(p, "GET", path)
            t.check(st in (403, 404) and CANARY.encode() not in body,
                    "GET %s: refused (%d)" % (path, st), body[:80])
        check_csp(t, h, "a 404")

        # ---- no traversal ----
        leaks = []
        for path in ("/../secret.txt", "/assets/../../secret.txt", "/%2e%2e/secret.txt",
                     "/assets/%2e%2e/%2e%2e/secret.txt", "/..%2fsecret.txt",
                     "/assets/..%2f..%2fsecret.txt", "/%2E%2E%2Fsecret.txt", "//../secret.txt",
                     "/assets/....//....//secret.txt", "/./../secret.txt", "/%252e%252e/secret.txt",
                     "/assets/..\\..\\secret.txt", "/../gateway-copy.txt", "/../gateway.json",
                     "/assets/../../gateway.json", "/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
                     "/../../../../etc/passwd"):
            st, h, body = get(p, "GET", path)
            if st == 200 or CANARY.encode() in body or b"root:" in body or b'"loops"' in body:
                leaks.append((path, st, body[:60]))
        t.eq(leaks, [], "17 traversal paths: none answers a file outside the web root")

        # ---- the API, /metrics and /health beside the files ----
        r = gwapi.api(gw, "GET", "/api/status", token=None)
        t.check(r.status == 401 and (r.json or {}).get("error") == "unauthorized",
                "/api/status without a token: the API's 401", r)
        r = gwapi.api(gw, "GET", "/api/no-such-thing")
        t.check(r.status == 404 and (r.json or {}).get("error") == "not_found",
                "unknown /api/ path: the API's JSON 404, not a file lookup", r)
        r = gwapi.api(gw, "GET", "/api/token", token="read")
        t.eq(r.json, {"name": "test-read", "role": "read"}, "GET /api/token with the read token")
        r = gwapi.api(gw, "GET", "/api/token")
        t.eq(r.json, {"name": "test-admin", "role": "admin"}, "GET /api/token with the admin token")
        st, h, body = get(p, "GET", "/metrics")
        t.check(st == 200 and b"iotgw_" in body, "/metrics unchanged (no token on loopback)", st)
        st, h, body = get(p, "GET", "/health")
        t.check(st == 200 and body == b"ok\n", "/health unchanged", (st, body))

        # ---- the files need no inline script or style (the CSP would block them) ----
        inline = []
        for dirpath, _, names in os.walk(WEB):
            for n in names:
                full = os.path.join(dirpath, n)
                text = open(full, encoding="utf-8", errors="replace").read()
                if n.endswith(".html"):
                    for m in re.finditer(r"<script\b([^>]*)>", text):
                        if "src=" not in m.group(1):
                            inline.append((n, "inline script"))
                    if re.search(r"<style\b|\sstyle=|\son[a-z]+=", text):
                        inline.append((n, "inline style or handler"))
                if n.endswith(".js") and re.search(r"\beval\(|new Function\(|innerHTML|"
                                                   r"\.style\.|setAttribute\(\"style", text):
                    inline.append((n, "eval/innerHTML/inline style"))
                if re.search(r"https?://(?!www\.w3\.org/2000/svg)", text):
                    inline.append((n, "a URL elsewhere (no CDN, no internet at run time)"))
        t.eq(inline, [], "web/: no inline script or style, no eval/innerHTML, nothing fetched "
             "from elsewhere")
        gw.stop()

        # ---- no web root folder: nothing served at / ----
        gw2 = g.Gateway(config={"admin": {"web_root": "no-such-folder"}})
        r = gwapi.request(gw2.admin_port, "GET", "/")
        t.check(r.status == 404 and (r.json or {}).get("error") == "not_found",
                "without the web root folder GET / is the API's JSON 404", r)
        t.check(gw2.find_log(msg="no web console: admin.web_root is not a folder"),
                "... and the log says why")
    except Exception as e:
        t.crash(e)
    finally:
        for x in (gw, gw2):
            if x is not None:
                x.stop()
    t.finish()


if __name__ == "__main__":
    main()

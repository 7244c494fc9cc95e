# Proves the management API's HTTP server (libh2o on the main loop): bearer-token auth (401 with WWW-Authenticate without or with a wrong token, 403 for a read token on a write), JSON errors for 404, 405 with Allow, 415, malformed JSON (400 with line/column), malformed percent-encoding and query values, request heads past libh2o's bounds (size, 100 headers) refused, 413 over admin.max_body refused from Content-Length before the body and while a chunked body streams, 429 past admin.stream_clients_max; /metrics and /health unchanged without a token on loopback, behind a read token with open_metrics false; several listeners (IPv4 and IPv6 loopback) on --ready-fd; keep-alive (several requests on one connection); connections past admin.max_connections refused and counted; a slowloris client (a header byte every 0.4 s) and an idle keep-alive connection closed after admin.idle_timeout_ms; the thread count stays loops + 2 while requests and a stream are in use; SIGTERM with a stream and idle connections open exits 0 at once.
import http.client
import json
import select
import socket
import time

import gwapi
import gwtest as g

LOOPS = 2
MAX_BODY = 65536
MAX_CONNS = 8
IDLE_MS = int(1500 * g.SLOW)
STREAMS_MAX = 2


def raw_request(port, head, body=b"", read_timeout=5.0):
    """Sends head (+ body), returns (status, headers dict, body bytes) of the first answer."""
    s = socket.create_connection((g.HOST, port), timeout=read_timeout * g.SLOW)
    try:
        s.sendall(head + body)
        return read_answer(s)
    finally:
        s.close()


def read_answer(s):
    buf = b""
    while b"\r\n\r\n" not in buf:
        d = s.recv(65536)
        if not d:
            break
        buf += d
    head, _, rest = buf.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1]) if lines and lines[0].startswith("HTTP/") else None
    hdrs = dict((k.strip().lower(), v.strip()) for k, v in
                (ln.split(":", 1) for ln in lines[1:] if ":" in ln))
    n = int(hdrs.get("content-length", "0"))
    while len(rest) < n:
        d = s.recv(65536)
        if not d:
            break
        rest += d
    return status, hdrs, rest[:n]


def auth_head(method, path, extra=""):
    return ("%s %s HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n%s\r\n"
            % (method, path, gwapi.ADMIN_TOKEN, extra)).encode()


def is_error(resp, status, code):
    j = resp.json or {}
    return (resp.status == status and j.get("error") == code and isinstance(j.get("message"), str)
            and resp.headers.get("content-type", "").startswith("application/json"))


def metric(gw, name, **labels):
    """gw.metric, or None while the admin connections are all taken (a 503)."""
    try:
        return gw.metric(name, **labels)
    except (g.GatewayError, OSError, http.client.HTTPException):
        return None


def closed_within(s, limit):
    """Seconds until the peer closes s (None if still open after limit)."""
    t0 = time.monotonic()
    s.settimeout(0.05)
    while time.monotonic() - t0 < limit:
        try:
            if s.recv(4096) == b"":
                return time.monotonic() - t0
        except socket.timeout:
            pass
        except OSError:
            return time.monotonic() - t0
    return None


def auth_and_errors(t, gw):
    api = lambda *a, **kw: gwapi.api(gw, *a, **kw)  # noqa: E731
    r = api("GET", "/api/status", token=None)
    t.check(is_error(r, 401, "unauthorized"), "no token: 401 unauthorized (JSON)", r)
    t.check(r.headers.get("www-authenticate", "").startswith("Bearer"),
            "401 carries WWW-Authenticate: Bearer", r.headers)
    r = api("GET", "/api/status", token="not-a-configured-token")
    t.check(is_error(r, 401, "unauthorized"), "wrong token: 401", r)
    r = api("GET", "/api/status", token="read")
    t.check(r.status == 200 and r.json.get("loops") == LOOPS and r.json.get("version"),
            "read token: GET /api/status 200 with loops and version", r)
    t.eq(r.json.get("threads"), LOOPS + 2, "/api/status threads: loops + 2")
    t.check(isinstance(r.json.get("sessions"), dict) and "mqtt" in r.json["sessions"],
            "/api/status sessions per adapter", r.json)
    t.check(isinstance(r.json.get("store", {}).get("queue_depth"), int) and
            r.json["store"].get("failing") is False and
            isinstance(r.json["store"].get("commit_ms_last"), (int, float)),
            "/api/status store state (queue, failing, last commit time)", r.json)
    t.check(r.json.get("north", {}).get("enabled") is False and
            "outbox_depth" in r.json["north"], "/api/status north link state", r.json)
    r = api("POST", "/api/reload", token="read")
    t.check(is_error(r, 403, "forbidden"), "read token on a write (POST /api/reload): 403", r)
    r = api("GET", "/api/no-such-thing", token="read")
    t.check(is_error(r, 404, "not_found"), "unknown /api/ path: 404 JSON", r)
    r = api("GET", "/elsewhere")
    t.check(is_error(r, 404, "not_found"), "unknown path outside /api/: 404 JSON", r)
    r = api("DELETE", "/api/status")
    t.check(is_error(r, 405, "method_not_allowed") and r.headers.get("allow") == "GET",
            "DELETE /api/status: 405 with Allow: GET", (r, r.headers.get("allow")))
    r = api("PUT", "/api/devices")
    allow = set(a.strip() for a in r.headers.get("allow", "").split(","))
    t.check(r.status == 405 and allow == {"GET", "POST"},
            "PUT /api/devices: 405 with Allow: GET, POST", (r, allow))
    r = api("POST", "/api/devices", raw_body=b'{"id": "x"}', headers={"Content-Type": "text/plain"})
    t.check(is_error(r, 415, "unsupported_media_type"), "a text/plain body: 415", r)
    r = api("POST", "/api/devices", raw_body=b'{"id": "x",\n "product": }',
            headers={"Content-Type": "application/json"})
    t.check(is_error(r, 400, "bad_json") and "line 2 column" in r.json["message"],
            "malformed JSON: 400 bad_json naming line 2 and the column", r)
    r = api("POST", "/api/devices", raw_body=b'{"id": 1, "id": 2}',
            headers={"Content-Type": "application/json; charset=utf-8"})
    t.check(is_error(r, 400, "bad_json"), "duplicate keys: 400 bad_json", r)
    r = api("GET", "/api/devices/a%zzb")
    t.check(is_error(r, 400, "bad_path"), "malformed percent-encoding in the path: 400", r)
    r = api("GET", "/api/devices/t%2D001%2Fx")
    # the route matched and its handler saw the decoded id (GET /api/devices/{id}: no such device)
    t.check(r.status not in (405, 400) and (r.status != 404 or 't-001/x' in (
        r.json or {}).get("message", "")), "percent-encoded {id} (with %2F) still matches its "
            "route", r)
    r = api("GET", "/api/stream?kind=bogus")
    t.check(is_error(r, 400, "bad_query") and r.json.get("path") == "kind",
            "bad query value: 400 naming the parameter as path", r)
    r = api("GET", "/api/stream?kind=%zz")
    t.check(is_error(r, 400, "bad_query"), "malformed percent-encoding in the query: 400", r)


def body_limit(t, gw):
    # refused from Content-Length before any body byte is sent
    s = socket.create_connection((g.HOST, gw.admin_port), timeout=5 * g.SLOW)
    s.sendall(auth_head("POST", "/api/devices", "Content-Type: application/json\r\n"
                        "Content-Length: %d\r\n" % (MAX_BODY + 1)))
    status, _, _ = read_answer(s)
    s.close()
    t.eq(status, 413, "Content-Length over admin.max_body: 413 before the body is sent")
    # while a chunked body streams
    s = socket.create_connection((g.HOST, gw.admin_port), timeout=5 * g.SLOW)
    s.sendall(auth_head("POST", "/api/devices", "Content-Type: application/json\r\n"
                        "Transfer-Encoding: chunked\r\n"))
    sent = 0
    try:
        while sent < 64 * MAX_BODY:
            s.sendall(b"1000\r\n" + b" " * 4096 + b"\r\n")
            sent += 4096
    except OSError:
        pass
    status, _, _ = read_answer(s)
    s.close()
    t.check(status == 413 and sent < 64 * MAX_BODY, "a chunked body over admin.max_body: 413 "
            "while it streams (%d bytes sent)" % sent, status)
    # a body within the limit passes the server (the handler answers whatever it answers)
    r = gwapi.api(gw, "POST", "/api/devices", raw_body=b"[" + b" " * (MAX_BODY - 10) + b"]",
                  headers={"Content-Type": "application/json"})
    t.check(r.status not in (413, 415) and (r.json or {}).get("error") != "bad_json",
            "a valid JSON body just under admin.max_body is read and parsed", r)


def header_limits(t, gw):
    # a request head past libh2o's bound (H2O_MAX_REQLEN, ~408 KiB) is refused, the server goes on
    s = socket.create_connection((g.HOST, gw.admin_port), timeout=5 * g.SLOW)
    try:
        s.sendall(b"GET /api/status HTTP/1.1\r\nHost: x\r\n")
        for _ in range(600):
            s.sendall(b"X-Filler: " + b"y" * 1000 + b"\r\n")
        s.sendall(b"\r\n")
        status, _, _ = read_answer(s)
    except OSError:
        status = "closed"
    s.close()
    t.check(status in (400, 413, 431, "closed", None),
            "a 600 KB request head is refused (%r)" % (status,))
    s = socket.create_connection((g.HOST, gw.admin_port), timeout=5 * g.SLOW)
    hdrs = "".join("X-H%d: v\r\n" % i for i in range(150))
    s.sendall(auth_head("GET", "/api/status", hdrs))
    try:
        status, _, _ = read_answer(s)
    except OSError:
        status = "closed"
    s.close()
    t.check(status != 200, "a request with 150 headers (over 100) is refused (%r)" % (status,))
    r = gwapi.api(gw, "GET", "/api/status", token="read")
    t.eq(r.status, 200, "the server answers the next request")


def metrics_health(t, gw):
    c = http.client.HTTPConnection(g.HOST, gw.admin_port, timeout=5 * g.SLOW)
    c.request("GET", "/metrics")
    r = c.getresponse()
    body = r.read().decode()
    t.check(r.status == 200 and r.getheader("Content-Type") == "text/plain; version=0.0.4" and
            "iotgw_events_committed_total" in body and 'iotgw_memory_bytes{area="api"}' in body,
            "/metrics without a token on loopback: 200, Prometheus text, the api memory area",
            (r.status, r.getheader("Content-Type")))
    c.request("GET", "/health")
    r = c.getresponse()
    t.check(r.status == 200 and r.read() == b"ok\n", "/health without a token: 200 ok",
            r.status)
    # keep-alive: the same socket answers several requests
    sock = c.sock
    n_ok = 0
    for path in ("/api/status", "/api/products", "/metrics", "/api/status"):
        c.request("GET", path, headers={"Authorization": "Bearer " + gwapi.READ_TOKEN})
        r = c.getresponse()
        r.read()
        n_ok += r.status in (200, 501) and c.sock is sock
    t.eq(n_ok, 4, "keep-alive: 4 more requests answered on one connection")
    c.request("POST", "/metrics")
    r = c.getresponse()
    r.read()
    t.check(r.status == 405 and r.getheader("Allow") == "GET", "POST /metrics: 405, Allow: GET",
            r.status)
    c.close()


def connection_limit(t, gw):
    # the connections of the earlier checks are gone (the one asking counts itself)
    t.check(g.wait_until(lambda: (metric(gw, "api_connections") or 99) <= 1, 5),
            "earlier connections released")
    m0 = gw.metric("api_refused_total", reason="connections")
    held = []
    for _ in range(4 * MAX_CONNS):  # one may be refused while the metric query's is released
        if len(held) == MAX_CONNS:
            break
        s = socket.create_connection((g.HOST, gw.admin_port))
        if select.select([s], [], [], 0.1 * g.SLOW)[0]:
            s.close()  # refused (503): taken by a connection that was still closing
        else:
            held.append(s)
    t.eq(len(held), MAX_CONNS, "%d idle connections held open" % MAX_CONNS)
    extra = socket.create_connection((g.HOST, gw.admin_port), timeout=5 * g.SLOW)
    status, _, body = read_answer(extra)
    extra.close()
    t.check(status == 503 and b"too_many_connections" in body,
            "connection %d past admin.max_connections: 503 too_many_connections" % (MAX_CONNS + 1),
            (status, body))
    for s in held:
        s.close()
    ok = g.wait_until(lambda: (metric(gw, "api_connections") or 99) <= 1, 5)
    t.check(ok, "closed client connections are released (api_connections)")
    t.check(gw.metric("api_refused_total", reason="connections") - m0 >= 1,
            "the refusal is counted: api_refused_total{reason=\"connections\"}")


def timeouts(t, gw):
    # slowloris: one header byte every 0.4 s never completes the request
    s = socket.create_connection((g.HOST, gw.admin_port), timeout=5 * g.SLOW)
    s.sendall(b"GET /api/status HTTP/1.1\r\nHost: x\r\n")
    t0 = time.monotonic()
    closed = None
    s.settimeout(0.05)
    while time.monotonic() - t0 < IDLE_MS / 1000.0 * 4:
        try:
            s.sendall(b"X")
        except OSError:
            closed = time.monotonic() - t0
            break
        try:
            if s.recv(4096) == b"":
                closed = time.monotonic() - t0
                break
        except socket.timeout:
            pass
        except OSError:
            closed = time.monotonic() - t0
            break
        time.sleep(0.4)
    s.close()
    t.check(closed is not None and closed < IDLE_MS / 1000.0 * 2.5,
            "slowloris (a header byte per 0.4 s) is closed after admin.idle_timeout_ms (%d ms): "
            "closed after %s s" % (IDLE_MS, None if closed is None else round(closed, 2)))
    # an idle keep-alive connection after one answer
    c = http.client.HTTPConnection(g.HOST, gw.admin_port, timeout=5 * g.SLOW)
    c.request("GET", "/health")
    c.getresponse().read()
    dt = closed_within(c.sock, IDLE_MS / 1000.0 * 4)
    t.check(dt is not None and dt < IDLE_MS / 1000.0 * 2.5,
            "an idle keep-alive connection is closed after admin.idle_timeout_ms (%s s)" % (
                None if dt is None else round(dt, 2)))
    c.close()


def streams_and_threads(t, gw):
    m0 = gw.metric("api_refused_total", reason="streams")
    s1 = gwapi.SSEClient(gw.admin_port, "/api/stream", token="read")
    s2 = gwapi.SSEClient(gw.admin_port, "/api/stream?kind=property")
    t.check(s1.status == 200 and s1.headers.get("content-type") == "text/event-stream",
            "GET /api/stream: 200 text/event-stream", (s1.status, s1.headers))
    r = gwapi.api(gw, "GET", "/api/stream", token="read")
    t.check(is_error(r, 429, "too_many_streams"),
            "a stream past admin.stream_clients_max (%d): 429" % STREAMS_MAX, r)
    t.check(gw.metric("api_refused_total", reason="streams") - m0 == 1,
            "the 429 is counted: api_refused_total{reason=\"streams\"}")
    for _ in range(20):
        gwapi.api(gw, "GET", "/api/status", token="read")
    t.eq(g.thread_count(gw.pid), LOOPS + 2,
         "threads: loops + 2 while API requests and two streams are in use")
    t.eq(gw.metric("api_streams"), 2.0, "api_streams gauge: 2")
    # a stream, an idle connection and a half-sent request open: SIGTERM ends promptly
    idle = socket.create_connection((g.HOST, gw.admin_port))
    half = socket.create_connection((g.HOST, gw.admin_port))
    half.sendall(b"GET /api/status HTTP/1.1\r\n")
    t0 = time.monotonic()
    code = gw.stop()
    dt = time.monotonic() - t0
    t.check(code == 0 and dt < 5 * g.SLOW,
            "SIGTERM with streams and idle connections open: exit 0 in %.2f s" % dt, code)
    ended = 0
    for s in (s1, s2):
        try:
            while True:
                s._more()
        except (EOFError, OSError):
            ended += 1
    t.eq(ended, 2, "the streams end with the gateway")
    for s in (idle, half):
        s.close()


def listeners_and_open_metrics(t):
    gw = g.Gateway(start=False)
    gw.cfg["admin"] = {"enabled": True, "open_metrics": False,
                       "listeners": [{"address": g.HOST, "port": 0}, {"address": "::1", "port": 0}],
                       "tokens": gwapi.admin_tokens_cfg()}
    gw.write_config()
    try:
        gw.start()
    except g.GatewayError as e:
        if "::1" not in str(e) and "address not available" not in str(e).lower():
            raise
        t.info("no IPv6 loopback here: one listener only")
        gw.cfg["admin"]["listeners"] = gw.cfg["admin"]["listeners"][:1]
        gw.write_config()
        gw.start()
    ports = [int(li["port"]) for li in gw.listeners if li.get("adapter") == "admin"]
    t.eq(len(ports), len(gw.cfg["admin"]["listeners"]),
         "--ready-fd reports every admin listener (%r)" % ports)
    r = gwapi.api(gw, "GET", "/metrics", token=None)
    t.check(r.status == 401 and r.headers.get("www-authenticate", "").startswith("Bearer"),
            "open_metrics false: /metrics without a token is 401", r)
    r = gwapi.api(gw, "GET", "/health", token=None)
    t.eq(r.status, 401, "open_metrics false: /health without a token is 401")
    r = gwapi.api(gw, "GET", "/metrics", token="read")
    t.check(r.status == 200 and b"iotgw_events_committed_total" in r.raw,
            "open_metrics false: /metrics with a read token is 200", r.status)
    if len(ports) > 1:
        r = gwapi.request(ports[1], "GET", "/api/status", token="read", host="::1")
        t.eq(r.status, 200, "the IPv6 listener answers /api/status")
    t.eq(gw.stop(), 0, "second gateway: SIGTERM exit 0")


def config_errors(t):
    cases = [
        ({"tokens": [{"name": "a", "role": "root", "sha256": "00" * 32}]},
         "admin.tokens[0].role"),
        ({"tokens": [{"name": "a", "role": "read", "sha256": "abc"}]}, "admin.tokens[0].sha256"),
        ({"tokens": [{"name": "a", "role": "read", "sha256": "00" * 32, "token": "x"}]},
         "admin.tokens[0].token"),
        ({"listeners": [{"address": g.HOST, "port": 0}]}, "admin.listeners"),  # beside port
    ]
    for admin, path in cases:
        gw = g.Gateway(config={"admin": admin}, start=False)
        code, out, err = g.check_config(gw)
        t.check(code == 2 and ("gateway.json: %s" % path) in err,
                "config error names %s" % path, (code, err))
    p = g.subprocess.run([g.BIN, "--hash-token", gwapi.ADMIN_TOKEN], capture_output=True,
                         timeout=10 * g.SLOW)
    t.eq(p.stdout.decode().strip(), gwapi.token_hash(gwapi.ADMIN_TOKEN),
         "iotgw --hash-token prints the token's SHA-256")
    p = g.subprocess.run([g.BIN, "--hash-token"], input=(gwapi.READ_TOKEN + "\n").encode(),
                         capture_output=True, timeout=10 * g.SLOW)
    t.eq(p.stdout.decode().strip(), gwapi.token_hash(gwapi.READ_TOKEN),
         "iotgw --hash-token reads the token from stdin")


def main(t):
    config_errors(t)
    gw = g.Gateway(loops=LOOPS, config={"admin": {
        "max_body": MAX_BODY, "max_connections": MAX_CONNS, "idle_timeout_ms": IDLE_MS,
        "stream_clients_max": STREAMS_MAX}, "log_rate_limit": 0})
    metrics_health(t, gw)
    auth_and_errors(t, gw)
    body_limit(t, gw)
    header_limits(t, gw)
    connection_limit(t, gw)
    timeouts(t, gw)
    streams_and_threads(t, gw)
    listeners_and_open_metrics(t)


g.run(main)

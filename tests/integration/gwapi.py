"""gwapi.py: a client of the gateway's management API for integration tests: the test tokens
(gwtest's default config carries their SHA-256 hashes), JSON requests with a token, and a
Server-Sent Events reader. Plain http.client: a real HTTP/1.1 client, nothing mocked."""
import hashlib
import http.client
import json
import socket

HOST = "127.0.0.1"

# Plain tokens the tests present; the config holds only their SHA-256 (hex).
ADMIN_TOKEN = "test-admin-token-0123456789"
READ_TOKEN = "test-read-token-0123456789"
TOKENS = {"admin": ADMIN_TOKEN, "read": READ_TOKEN}


def token_hash(tok):
    return hashlib.sha256(tok.encode()).hexdigest()


def admin_tokens_cfg():
    """The "tokens" array of the admin section for the test tokens."""
    return [{"name": "test-admin", "role": "admin", "sha256": token_hash(ADMIN_TOKEN)},
            {"name": "test-read", "role": "read", "sha256": token_hash(READ_TOKEN)}]


class Response:
    def __init__(self, status, headers, raw):
        self.status = status
        self.headers = headers
        self.raw = raw
        try:
            self.json = json.loads(raw) if raw else None
        except ValueError:
            self.json = None

    def __repr__(self):
        return "<%d %s>" % (self.status, self.raw[:200])


def request(port, method, path, body=None, token="admin", headers=None, timeout=10.0,
            raw_body=None, host=HOST):
    """One request on a fresh connection. token: "admin", "read", None (no Authorization) or a
    literal token string. body: a JSON-able value (sent as application/json); raw_body: bytes
    sent as is (set Content-Type in headers yourself). Returns a Response."""
    h = dict(headers or {})
    if token is not None:
        h["Authorization"] = "Bearer " + TOKENS.get(token, token)
    data = raw_body
    if body is not None:
        data = json.dumps(body).encode()
        h.setdefault("Content-Type", "application/json")
    c = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        c.request(method, path, body=data, headers=h)
        r = c.getresponse()
        return Response(r.status, dict((k.lower(), v) for k, v in r.getheaders()), r.read())
    finally:
        c.close()


def api(gw, method, path, body=None, token="admin", **kw):
    """request() against a gwtest.Gateway's admin listener."""
    return request(gw.admin_port, method, path, body=body, token=token, **kw)


class SSEClient:
    """Reads Server-Sent Events from GET path: events() yields each event's data (parsed JSON
    when it parses) as it arrives; a read times out after timeout seconds."""

    def __init__(self, port, path, token="admin", timeout=10.0, host=HOST):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        req = ("GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n"
               "Authorization: Bearer %s\r\n\r\n" % (path, host, TOKENS.get(token, token)))
        self.sock.sendall(req.encode())
        self.buf = b""
        head = self._until(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split()[1])
        self.headers = dict((k.strip().lower(), v.strip())
                            for k, v in (l.split(":", 1) for l in lines[1:] if ":" in l))
        self.chunked = "chunked" in self.headers.get("transfer-encoding", "")
        self.body = b""

    def _until(self, sep):
        while sep not in self.buf:
            d = self.sock.recv(65536)
            if not d:
                raise EOFError("stream closed")
            self.buf += d
        i = self.buf.index(sep)
        out, self.buf = self.buf[:i], self.buf[i + len(sep):]
        return out

    def _more(self):
        if not self.chunked:
            d = self.sock.recv(65536)
            if not d:
                raise EOFError("stream closed")
            self.body += d
            return
        size = int(self._until(b"\r\n").split(b";")[0], 16)
        if size == 0:
            raise EOFError("stream ended")
        while len(self.buf) < size + 2:
            d = self.sock.recv(65536)
            if not d:
                raise EOFError("stream closed")
            self.buf += d
        self.body += self.buf[:size]
        self.buf = self.buf[size + 2:]

    def next_event(self):
        """The next event's data (JSON-decoded when possible); comments (":...") are skipped."""
        while True:
            while b"\n\n" not in self.body:
                self._more()
            i = self.body.index(b"\n\n")
            block, self.body = self.body[:i].decode(), self.body[i + 2:]
            data = [l[5:].lstrip() for l in block.split("\n") if l.startswith("data:")]
            if not data:
                continue
            s = "\n".join(data)
            try:
                return json.loads(s)
            except ValueError:
                return s

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

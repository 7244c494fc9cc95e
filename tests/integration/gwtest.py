# gwtest.py: shared helpers for the integration tests: a Gateway process (temp config, ready-fd,
# logs, metrics, read-only SQLite), a raw MQTT 3.1.1 packet client, result counting and polling.
import atexit
import copy
import errno
import http.client
import json
import os
import re
import select
import shutil
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import tempfile
import time
import traceback

import gwapi  # noqa: E402 (the API tokens of the default config)

HERE = os.path.dirname(os.path.abspath(__file__))
SRC = os.environ.get("IOTGW_SRC") or os.path.dirname(os.path.dirname(HERE))
BIN = os.environ.get("IOTGW_BIN") or os.path.join(SRC, "build", "iotgw")
SANITIZED = os.environ.get("IOTGW_SANITIZED") == "1"
# Deadlines stretch under sanitizers (slower gateway).
SLOW = 5.0 if SANITIZED else 1.0
HOST = "127.0.0.1"

_started = []  # every Popen we started; killed by PID at exit
_gateways = []  # every Gateway made; finish() stops them and scans their logs for sanitizer reports
SANITIZER_MARKS = ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:",
                   "WARNING: ThreadSanitizer")


def _kill_all():
    for p in _started:
        if p.poll() is None:
            try:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(5)
            except Exception:
                pass


atexit.register(_kill_all)


# ---------------------------------------------------------------------------------------------
# Results and polling


class Results:
    """Counts assertions; finish() prints 'N passed, M failed' and exits 0 only if all passed."""

    def __init__(self, name=None):
        self.name = name or os.path.basename(sys.argv[0])
        self.passed = 0
        self.failed = 0
        self.t0 = time.monotonic()

    def check(self, cond, what, detail=""):
        if cond:
            self.passed += 1
            print("ok   - %s" % what, flush=True)
        else:
            self.failed += 1
            print("FAIL - %s%s" % (what, (": " + str(detail)) if detail != "" else ""), flush=True)
        return bool(cond)

    def eq(self, got, want, what):
        return self.check(got == want, what, "got %r, want %r" % (got, want))

    def info(self, msg):
        print("# " + msg, flush=True)

    def crash(self, exc):
        self.failed += 1
        print("FAIL - test raised: %r" % (exc,), flush=True)
        traceback.print_exc()

    def finish(self):
        # Stop what still runs with SIGTERM (so LeakSanitizer reports at exit), then fail the test
        # on any sanitizer report in any gateway's log, whatever the assertions said.
        for gw in _gateways:
            if gw.alive():
                self.check(gw.stop() == 0, "gateway exits 0 on SIGTERM at the end of the test")
            found = [m for m in SANITIZER_MARKS if m in gw.log]
            self.check(not found, "no sanitizer report in the gateway log",
                       "%s: %s" % (gw.log_path, found))
        dt = time.monotonic() - self.t0
        print("# %s took %.1f s" % (self.name, dt), flush=True)
        print("%d passed, %d failed" % (self.passed, self.failed), flush=True)
        sys.exit(0 if (self.failed == 0 and self.passed > 0) else 1)


def transient(e):
    """True for the errors a poll may meet before its condition holds, which wait_until treats as
    "not yet": the database busy, locked or not created yet (sqlite3.OperationalError with such a
    message; an SQL error is not transient), a port not open yet or a connection reset
    (ConnectionError), an answer slower than its socket time-out (TimeoutError)."""
    if isinstance(e, sqlite3.OperationalError):
        msg = str(e)
        return any(s in msg for s in ("locked", "busy", "unable to open", "no such table"))
    return isinstance(e, (ConnectionError, TimeoutError))


def wait_until(pred, timeout=10.0, interval=0.02, retry=()):
    """Polls pred() until it returns a truthy value (returned) or timeout (returns the last value,
    falsy). Transient errors from pred (transient(), or an instance of a type in `retry`) count
    as falsy; any other exception is not the awaited condition and is raised at once."""
    deadline = time.monotonic() + timeout * SLOW
    last = None
    while True:
        try:
            last = pred()
            if last:
                return last
        except Exception as e:  # noqa: BLE001
            if not (transient(e) or (retry and isinstance(e, retry))):
                raise
            last = None
        if time.monotonic() >= deadline:
            return last
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------
# Default product / devices

THERMO = {
    "id": "thermo",
    "name": "Room thermometer",
    "protocol": "mqtt",
    "codec": "json",
    "auth": {"mode": "device-secret"},
    "properties": [
        {"id": "temperature", "type": "float", "min": -40, "max": 125, "unit": "°C", "access": "r"},
        {"id": "mode", "type": "enum", "values": ["eco", "comfort"], "access": "rw"},
        {"id": "humidity", "type": "int", "min": 0, "max": 100, "access": "r"},
        {"id": "label", "type": "string", "max_length": 8, "access": "rw"},
        {"id": "on", "type": "bool", "access": "rw"},
        {"id": "energy", "type": "double", "access": "r"},
        {"id": "note", "type": "string", "max_length": 65536, "access": "rw"},
        {"id": "memo", "type": "string", "max_length": 65536, "access": "rw"},
        {"id": "samples", "type": "array", "item": {"type": "float"}, "max_items": 3,
         "access": "r"},
        {"id": "pos", "type": "struct", "access": "r",
         "fields": [{"id": "lat", "type": "double", "min": -90, "max": 90},
                    {"id": "lon", "type": "double", "min": -180, "max": 180}]},
    ],
    "events": [
        {"id": "overheat", "level": "alert", "params": [{"id": "t", "type": "float"}]},
        {"id": "boot", "level": "info", "params": []},
    ],
    "functions": [
        {"id": "reboot", "inputs": [{"id": "delay_s", "type": "int", "min": 0, "max": 60}],
         "outputs": [{"id": "ok", "type": "bool"}], "timeout_ms": 5000}
    ],
}

PLUG = {
    "id": "plug",
    "name": "Smart plug",
    "protocol": "mqtt",
    "codec": "json",
    "auth": {"mode": "device-secret"},
    "properties": [{"id": "on", "type": "bool", "access": "rw"}],
    "events": [],
    "functions": [],
}


def secret_of(dev_id):
    return "s3cret-" + dev_id


def make_devices(ids, product="thermo"):
    return [{"id": d, "product": product, "secret": secret_of(d)} for d in ids]


def thermo_ids(n):
    return ["t-%03d" % i for i in range(1, n + 1)]


def deep_merge(base, over):
    """Returns base updated recursively by over; a None value in over deletes the key."""
    out = copy.deepcopy(base)
    for k, v in over.items():
        if v is None:
            out.pop(k, None)
        elif isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


# ---------------------------------------------------------------------------------------------
# The gateway process


class GatewayError(Exception):
    pass


class Gateway:
    """A gateway in a temp config dir. products: list of product dicts (default [THERMO]);
    devices: list of device dicts (default t-001..t-00N of thermo); config: dict deep-merged
    into the default gateway.json."""

    def __init__(self, products=None, devices=None, n_devices=5, config=None, loops=2,
                 start=True, ready_timeout=20.0, keep_dir=False, env=None):
        self.dir = tempfile.mkdtemp(prefix="iotgw-it-")
        self.env = env  # more environment variables for the gateway process
        self.keep_dir = keep_dir or os.environ.get("IOTGW_KEEP") == "1"
        self.products = products if products is not None else [THERMO]
        self.devices = devices if devices is not None else make_devices(thermo_ids(n_devices))
        base = {
            "loops": loops,
            "log_level": "info",
            "products_dir": "products",
            "devices_file": "devices.json",
            "admin": {"enabled": True, "address": HOST, "port": 0,
                      "tokens": gwapi.admin_tokens_cfg()},
            "storage": {"path": "data/iotgw.db"},
            "adapters": {"mqtt": {"listeners": [{"address": HOST, "port": 0}]}},
        }
        self.cfg = deep_merge(base, config or {})
        self.cfg_path = os.path.join(self.dir, "gateway.json")
        self.log_path = os.path.join(self.dir, "gateway.log")
        self.ready_timeout = ready_timeout
        self.proc = None
        self.ports = {}
        self.product_ports = {}
        self.exit_code = None
        self.write_config()
        _gateways.append(self)
        atexit.register(self._cleanup)
        if start:
            self.start()

    # -- config -------------------------------------------------------------------------------
    def write_config(self):
        os.makedirs(os.path.join(self.dir, "products"), exist_ok=True)
        os.makedirs(os.path.join(self.dir, "data"), exist_ok=True)
        with open(self.cfg_path, "w") as f:
            json.dump(self.cfg, f, indent=2)
        for p in self.products:
            with open(os.path.join(self.dir, "products", p["id"] + ".json"), "w") as f:
                json.dump(p, f, indent=2, ensure_ascii=False)
        with open(os.path.join(self.dir, "devices.json"), "w") as f:
            json.dump(self.devices, f, indent=1)

    def path(self, rel):
        return os.path.join(self.dir, rel)

    @property
    def db_path(self):
        p = self.cfg["storage"]["path"]
        return p if os.path.isabs(p) else os.path.join(self.dir, p)

    # -- process ------------------------------------------------------------------------------
    def start(self, extra_args=()):
        if self.proc is not None and self.proc.poll() is None:
            raise GatewayError("already running")
        rfd, wfd = os.pipe()
        logf = open(self.log_path, "ab")
        try:
            self.proc = subprocess.Popen(
                [BIN, "-c", self.cfg_path, "--ready-fd", str(wfd)] + list(extra_args),
                stdin=subprocess.DEVNULL, stdout=logf, stderr=logf, pass_fds=(wfd,),
                cwd=self.dir, env={**os.environ, **self.env} if self.env else None)
        finally:
            os.close(wfd)
            logf.close()
        _started.append(self.proc)
        self.exit_code = None
        self.ports = {}
        self.product_ports = {}  # binary transports: product id -> its listener's port
        self.listeners = []  # every `listener ...` line of --ready-fd, parsed (all addresses)
        buf = b""
        deadline = time.monotonic() + self.ready_timeout * SLOW
        ready = False
        try:
            while time.monotonic() < deadline:
                r, _, _ = select.select([rfd], [], [], 0.1)
                if r:
                    chunk = os.read(rfd, 4096)
                    if not chunk:
                        break  # writer closed
                    buf += chunk
                    if b"\nready\n" in b"\n" + buf:
                        ready = True
                        break
                elif self.proc.poll() is not None:
                    break
        finally:
            os.close(rfd)
        for line in buf.decode("utf-8", "replace").splitlines():
            kv = parse_logfmt(line)
            if line.startswith("listener"):
                self.listeners.append(kv)
            if line.startswith("listener") and "adapter" in kv and "port" in kv:
                self.ports.setdefault(kv["adapter"], int(kv["port"]))  # its first listener
                if "product" in kv:
                    self.product_ports[kv["product"]] = int(kv["port"])
        if not ready:
            code = self.proc.poll()
            if code is None:
                self.kill()
            raise GatewayError("gateway not ready (exit=%r, ready-fd said %r); log tail:\n%s"
                               % (code, buf, self.log_tail()))

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    @property
    def mqtt_port(self):
        return self.ports.get("mqtt")

    @property
    def admin_port(self):
        return self.ports.get("admin")

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def stop(self, timeout=20.0):
        """SIGTERM, wait; returns the exit code (or None if it had to be killed)."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout * SLOW)
            except subprocess.TimeoutExpired:
                self.kill()
                self.exit_code = None
                return None
        self.exit_code = self.proc.returncode
        return self.exit_code

    def kill(self):
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(10)
        self.exit_code = self.proc.returncode if self.proc else None
        return self.exit_code

    def restart(self):
        self.stop()
        self.start()

    def _cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            try:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
            except Exception:
                pass
        if not self.keep_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    # -- observing ----------------------------------------------------------------------------
    @property
    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def log_mark(self):
        return len(self.log)

    def log_since(self, mark):
        return self.log[mark:]

    def log_lines(self, since=0):
        return self.log[since:].splitlines()

    def log_tail(self, n=30):
        return "\n".join(self.log.splitlines()[-n:])

    def find_log(self, since=0, **kv):
        """Log lines (parsed dicts) after offset `since` whose logfmt keys equal every kv given."""
        out = []
        for line in self.log_lines(since):
            d = parse_logfmt(line)
            if all(d.get(k) == v for k, v in kv.items()):
                out.append(d)
        return out

    def http_get(self, path, timeout=5.0):
        c = http.client.HTTPConnection(HOST, self.admin_port, timeout=timeout * SLOW)
        try:
            c.request("GET", path)
            r = c.getresponse()
            return r.status, r.read().decode("utf-8", "replace")
        finally:
            c.close()

    def metrics(self):
        status, body = self.http_get("/metrics")
        if status != 200:
            raise GatewayError("/metrics answered %d" % status)
        return parse_metrics(body)

    def metric(self, name, default=0.0, **labels):
        return self.metrics().get(metric_key(name, **labels), default)

    def state_written(self, timeout=10.0):
        """Waits until the running gateway has written the device and property state of every
        committed event (the state tables trail the events by up to storage.state_lag_ms:
        README, "Storage"). True at once when the gateway is not running or has no admin."""
        if not self.alive() or not self.admin_port:
            return True
        return wait_until(lambda: self.metric("store_state_unwritten") == 0, timeout)

    def query(self, sql, params=(), wait_state=True):
        """Rows of a read-only query; a query of property_state or device_state first waits
        for the state to be written (state_written), unless wait_state is False."""
        if wait_state and "_state" in sql and not self.state_written():
            raise GatewayError("device/property state still unwritten after 10 s")
        con = sqlite3.connect("file:%s?mode=ro" % self.db_path, uri=True, timeout=10.0 * SLOW)
        try:
            return con.execute(sql, params).fetchall()
        finally:
            con.close()

    def scalar(self, sql, params=(), wait_state=True):
        rows = self.query(sql, params, wait_state)
        return rows[0][0] if rows else None

    def threads(self):
        return thread_count(self.pid)

    def rss_kb(self):
        return rss_kb(self.pid)


def parse_logfmt(line):
    """key=value pairs of a logfmt line (quoted values unquoted); bare words map to True."""
    out = {}
    for m in re.finditer(r'([A-Za-z0-9_.]+)(?:=("(?:[^"\\]|\\.)*"|\S*))?', line):
        k, v = m.group(1), m.group(2)
        if v is None:
            out.setdefault(k, True)
        elif v.startswith('"') and v.endswith('"') and len(v) >= 2:
            out[k] = re.sub(r'\\(.)', r'\1', v[1:-1])
        else:
            out[k] = v
    return out


def metric_key(name, **labels):
    if name.startswith("iotgw_"):
        name = name[len("iotgw_"):]
    if not labels:
        return name
    return name + "{" + ",".join('%s="%s"' % (k, labels[k]) for k in sorted(labels)) + "}"


def parse_metrics(text):
    """Prometheus text -> {'name': v, 'name{label="v"}': v}; the iotgw_ prefix is dropped and
    labels are sorted by name."""
    out = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        m = re.match(r'^([A-Za-z_:][A-Za-z0-9_:]*)(\{[^}]*\})?\s+(\S+)', line)
        if not m:
            continue
        labels = {}
        if m.group(2):
            for lm in re.finditer(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"', m.group(2)):
                labels[lm.group(1)] = lm.group(2)
        try:
            val = float(m.group(3))
        except ValueError:
            continue
        out[metric_key(m.group(1), **labels)] = val
    return out


def metric_delta(before, after, key):
    return after.get(key, 0.0) - before.get(key, 0.0)


# ---------------------------------------------------------------------------------------------
# /proc


def thread_count(pid):
    return len(os.listdir("/proc/%d/task" % pid))


def _status_field(pid, field):
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return None


def status_threads(pid):
    return _status_field(pid, "Threads")


def rss_kb(pid):
    return _status_field(pid, "VmRSS")


def raise_fd_limit(n=8192):
    import resource
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(max(soft, n), hard)
    resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return want


def ephemeral_range():
    """The kernel's range of local ports for client sockets (ip_local_port_range)."""
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            lo, hi = (int(x) for x in f.read().split())
        return lo, hi
    except (OSError, ValueError):
        return 32768, 60999


def free_port():
    """A TCP port of 127.0.0.1 that is free now, below the kernel's ephemeral range: no client
    socket (of this test or of one running in parallel, thousands in the flood tests) and no
    connect() to a closed port (self-connect) can be given it meanwhile, so a broker restarted on
    it (north outage tests) finds it free. Falls back to a port the kernel picks."""
    import random
    lo, _ = ephemeral_range()
    base = 10000 if lo > 12000 else 1024
    rnd = random.Random(os.getpid() * 1000003 + time.monotonic_ns())
    for _ in range(200 if lo > base else 0):
        p = rnd.randrange(base, lo)
        s = socket.socket()
        try:
            s.bind((HOST, p))
            return p
        except OSError:
            continue
        finally:
            s.close()
    s = socket.socket()
    s.bind((HOST, 0))
    p = s.getsockname()[1]
    s.close()
    return p


# ---------------------------------------------------------------------------------------------
# Raw MQTT 3.1.1 packets

CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK, PINGREQ, PINGRESP, DISCONNECT = 8, 9, 10, 11, 12, 13, 14
PT_NAMES = {1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL",
            7: "PUBCOMP", 8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK",
            12: "PINGREQ", 13: "PINGRESP", 14: "DISCONNECT"}

PINGREQ_PKT = b"\xc0\x00"
DISCONNECT_PKT = b"\xe0\x00"


def _b(s):
    return s if isinstance(s, (bytes, bytearray)) else str(s).encode("utf-8")


def enc_varint(n):
    out = bytearray()
    while True:
        d = n % 128
        n //= 128
        if n:
            d |= 0x80
        out.append(d)
        if not n:
            return bytes(out)


def enc_str(s):
    s = _b(s)
    return struct.pack("!H", len(s)) + s


def packet(ptype, flags, body):
    return bytes([(ptype << 4) | (flags & 0x0F)]) + enc_varint(len(body)) + bytes(body)


def connect_packet(client_id, username=None, password=None, keepalive=60, clean=True, will=None,
                   proto=b"MQTT", level=4, flags_override=None):
    """will: (topic, payload[, qos[, retain]])."""
    flags = 0x02 if clean else 0
    payload = enc_str(client_id)
    if will is not None:
        wt, wp = will[0], will[1]
        wq = will[2] if len(will) > 2 else 0
        wr = will[3] if len(will) > 3 else False
        flags |= 0x04 | (wq << 3) | (0x20 if wr else 0)
        payload += enc_str(wt) + enc_str(wp)
    if username is not None:
        flags |= 0x80
        payload += enc_str(username)
    if password is not None:
        flags |= 0x40
        payload += enc_str(password)
    if flags_override is not None:
        flags = flags_override
    body = enc_str(proto) + bytes([level, flags]) + struct.pack("!H", keepalive) + payload
    return packet(CONNECT, 0, body)


def device_connect_packet(dev, product="thermo", secret=None, **kw):
    return connect_packet(dev, product, secret if secret is not None else secret_of(dev), **kw)


def publish_packet(topic, payload, qos=0, pid=None, retain=False, dup=False):
    flags = (qos << 1) | (1 if retain else 0) | (8 if dup else 0)
    body = enc_str(topic)
    if qos:
        body += struct.pack("!H", pid)
    body += _b(payload)
    return packet(PUBLISH, flags, body)


def subscribe_packet(pid, filters):
    """filters: list of (filter, qos)."""
    body = struct.pack("!H", pid)
    for f, q in filters:
        body += enc_str(f) + bytes([q])
    return packet(SUBSCRIBE, 2, body)


def unsubscribe_packet(pid, filters):
    body = struct.pack("!H", pid)
    for f in filters:
        body += enc_str(f)
    return packet(UNSUBSCRIBE, 2, body)


def puback_packet(pid):
    return packet(PUBACK, 0, struct.pack("!H", pid))


def report_topic(dev, product="thermo"):
    return "/%s/%s/properties/report" % (product, dev)


def event_topic(dev, event, product="thermo"):
    return "/%s/%s/event/%s" % (product, dev, event)


def report_payload(msg_id, props, ts=None):
    d = {"messageId": str(msg_id)}
    if ts is not None:
        d["timestamp"] = ts
    d["properties"] = props
    return json.dumps(d, separators=(",", ":"))


def event_payload(msg_id, data, ts=None):
    d = {"messageId": str(msg_id)}
    if ts is not None:
        d["timestamp"] = ts
    d["data"] = data
    return json.dumps(d, separators=(",", ":"))


class Packet:
    __slots__ = ("type", "flags", "body")

    def __init__(self, ptype, flags, body):
        self.type, self.flags, self.body = ptype, flags, bytes(body)

    def __repr__(self):
        return "<%s flags=%x body=%s>" % (PT_NAMES.get(self.type, self.type), self.flags,
                                          self.body[:64].hex())

    @property
    def pid(self):  # PUBACK/PUBREC/PUBCOMP/SUBACK/UNSUBACK
        return struct.unpack("!H", self.body[:2])[0]

    @property
    def rc(self):  # CONNACK return code
        return self.body[1]

    @property
    def suback_codes(self):
        return list(self.body[2:])

    @property
    def qos(self):
        return (self.flags >> 1) & 3

    def publish(self):
        """(topic, qos, pid, payload bytes) of a PUBLISH."""
        n = struct.unpack("!H", self.body[:2])[0]
        topic = self.body[2:2 + n].decode("utf-8", "replace")
        off = 2 + n
        pid = None
        if self.qos:
            pid = struct.unpack("!H", self.body[off:off + 2])[0]
            off += 2
        return topic, self.qos, pid, self.body[off:]


def parse_packet(buf):
    """(Packet, consumed) from the front of buf, or (None, 0) if incomplete."""
    if len(buf) < 2:
        return None, 0
    mult, n, i = 1, 0, 1
    while True:
        if i >= len(buf):
            return None, 0
        d = buf[i]
        n += (d & 0x7F) * mult
        mult *= 128
        i += 1
        if not d & 0x80:
            break
        if i > 4:
            raise ValueError("bad remaining length from server")
    if len(buf) < i + n:
        return None, 0
    return Packet(buf[0] >> 4, buf[0] & 0x0F, buf[i:i + n]), i + n


class Closed(Exception):
    pass


class RawClient:
    """A blocking TCP socket speaking raw MQTT bytes. read_packet() returns a Packet, None on
    timeout, and raises Closed on EOF / reset. auto_puback answers QoS 1 PUBLISHes it reads."""

    def __init__(self, port, host=HOST, timeout=5.0, auto_puback=True):
        self.sock = socket.create_connection((host, port), timeout=timeout * SLOW)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buf = bytearray()
        self.closed = False
        self.auto_puback = auto_puback
        self.timeout = timeout

    def fileno(self):
        return self.sock.fileno()

    def send(self, data):
        self.sock.sendall(data)

    def try_send(self, data):
        """send() that reports a peer close (False) instead of raising."""
        try:
            self.sock.sendall(data)
            return True
        except (BrokenPipeError, ConnectionResetError, OSError):
            return False

    def _fill(self, timeout):
        r, _, _ = select.select([self.sock], [], [], max(0.0, timeout))
        if not r:
            return False
        try:
            chunk = self.sock.recv(65536)
        except (ConnectionResetError, OSError) as e:
            if isinstance(e, socket.timeout):
                return False
            self.closed = True
            raise Closed(str(e))
        if not chunk:
            self.closed = True
            raise Closed("EOF")
        self.buf += chunk
        return True

    def read_packet(self, timeout=None):
        timeout = (self.timeout if timeout is None else timeout) * SLOW
        deadline = time.monotonic() + timeout
        while True:
            p, used = parse_packet(self.buf)
            if p is not None:
                del self.buf[:used]
                if self.auto_puback and p.type == PUBLISH and p.qos == 1:
                    self.try_send(puback_packet(p.publish()[2]))
                return p
            if self.closed:
                raise Closed("EOF")
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            self._fill(left)

    def expect(self, ptype, timeout=None, skip_publish=True):
        """Reads until a packet of ptype (others: PUBLISHes are kept in self.publishes)."""
        deadline = time.monotonic() + (self.timeout if timeout is None else timeout) * SLOW
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            p = self.read_packet(left / SLOW)
            if p is None:
                return None
            if p.type == ptype:
                return p
            if p.type == PUBLISH and skip_publish:
                self.publishes.append(p)
                continue
            raise AssertionError("expected %s, got %r" % (PT_NAMES.get(ptype), p))

    @property
    def publishes(self):
        if not hasattr(self, "_pubs"):
            self._pubs = []
        return self._pubs

    def wait_closed(self, timeout=5.0):
        """True if the peer closes within timeout (packets read meanwhile are discarded)."""
        deadline = time.monotonic() + timeout * SLOW
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                p = self.read_packet(left / SLOW)
                if p is None:
                    return False
        except Closed:
            return True

    def connect(self, client_id, username=None, password=None, timeout=None, **kw):
        """Sends CONNECT; returns the CONNACK return code, or None if none came / closed."""
        self.send(connect_packet(client_id, username, password, **kw))
        try:
            p = self.read_packet(timeout)
        except Closed:
            return None
        if p is None or p.type != CONNACK:
            return None
        return p.rc

    def connect_device(self, dev, product="thermo", secret=None, **kw):
        return self.connect(dev, product, secret if secret is not None else secret_of(dev), **kw)

    def publish(self, topic, payload, qos=0, pid=None, **kw):
        self.send(publish_packet(topic, payload, qos, pid, **kw))

    def publish_wait(self, topic, payload, pid, timeout=None):
        """QoS 1 publish; returns the PUBACK packet or None."""
        self.send(publish_packet(topic, payload, 1, pid))
        return self.expect(PUBACK, timeout)

    def subscribe(self, pid, filters, timeout=None):
        """Returns the SUBACK return codes (list) or None."""
        self.send(subscribe_packet(pid, filters))
        p = self.expect(SUBACK, timeout)
        return p.suback_codes if p is not None else None

    def ping(self, timeout=None):
        self.send(PINGREQ_PKT)
        return self.expect(PINGRESP, timeout) is not None

    def disconnect(self):
        self.try_send(DISCONNECT_PKT)
        self.close()

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def abort(self):
        """Closes with RST (SO_LINGER 0), no DISCONNECT."""
        try:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        self.close()


def device_client(gw, dev, product="thermo", timeout=5.0, **kw):
    """A RawClient connected as dev; raises if CONNACK is not 0."""
    c = RawClient(gw.mqtt_port, timeout=timeout)
    rc = c.connect_device(dev, product, **kw)
    if rc != 0:
        c.close()
        raise AssertionError("CONNACK for %s: %r" % (dev, rc))
    return c


# ---------------------------------------------------------------------------------------------
# paho (real client)


def paho_client(gw, dev, product="thermo", secret=None, start_loop=True, connect=True,
                timeout=5.0, **kw):
    """A paho 1.6 client for dev. With start_loop it runs paho's network thread; without, drive
    it with pump(). c.connected_rc holds the CONNACK code, c.disconnected the disconnect rc."""
    import paho.mqtt.client as mqtt
    c = mqtt.Client(client_id=dev, clean_session=True, protocol=mqtt.MQTTv311)
    c.username_pw_set(product, secret if secret is not None else secret_of(dev))
    c.connected_rc = None
    c.disconnected = None
    c.published = set()
    c.received = []

    def on_connect(cl, ud, flags, rc):
        cl.connected_rc = rc

    def on_disconnect(cl, ud, rc):
        cl.disconnected = rc

    def on_publish(cl, ud, mid):
        cl.published.add(mid)

    def on_message(cl, ud, msg):
        cl.received.append(msg)

    c.on_connect, c.on_disconnect, c.on_publish, c.on_message = (on_connect, on_disconnect,
                                                                 on_publish, on_message)
    if connect:
        c.connect(HOST, gw.mqtt_port, keepalive=kw.get("keepalive", 60))
        if start_loop:
            c.loop_start()
            wait_until(lambda: c.connected_rc is not None or c.disconnected is not None, timeout)
        else:
            pump_until(c, lambda: c.connected_rc is not None or c.disconnected is not None,
                       timeout)
    return c


def pump_until(c, pred, timeout=5.0):
    """Drives a paho client without its thread until pred() or timeout."""
    deadline = time.monotonic() + timeout * SLOW
    while time.monotonic() < deadline:
        if pred():
            return True
        c.loop(timeout=0.05)
    return bool(pred())


def paho_stop(c):
    try:
        c.disconnect()
    except Exception:
        pass
    try:
        c.loop_stop()
    except Exception:
        pass


# ---------------------------------------------------------------------------------------------
# A real mosquitto broker (to validate the raw client; north tests)


class Mosquitto:
    """A mosquitto on a free loopback port (or `port`), in its own temp dir. Keyword options (all
    additions; the defaults give the original anonymous, non-persistent broker): persistence=True
    keeps its database in the temp dir (persistence_location), so halt() + start() (a broker
    restart on the same port) keeps persistent sessions and their queued messages;
    anonymous=False for password_file setups; extra_conf is appended (options for the listener,
    e.g. cafile/certfile/keyfile, as it follows the listener line); start=False to start later."""

    def __init__(self, extra_conf="", port=None, persistence=False, anonymous=True, start=True):
        self.dir = tempfile.mkdtemp(prefix="iotgw-mosq-")
        self.port = port or free_port()
        self.conf_path = os.path.join(self.dir, "mosquitto.conf")
        conf = "listener %d %s\nallow_anonymous %s\npersistence %s\n" % (
            self.port, HOST, "true" if anonymous else "false", "true" if persistence else "false")
        if persistence:
            conf += "persistence_location %s/\n" % self.dir
        if os.geteuid() == 0 and (persistence or not anonymous or port):
            # as root mosquitto drops to user "mosquitto", which cannot write the persistence
            # file or read key files in this 0700 temp dir
            conf += "user root\n"
        with open(self.conf_path, "w") as f:
            f.write(conf + "%s\n" % extra_conf)
        self.log_path = os.path.join(self.dir, "mosquitto.log")
        self.proc = None
        if start:
            self.start()

    def start(self, timeout=10):
        """Starts the broker (again: same config, port and persistence dir); waits for the port."""
        if self.alive():
            raise GatewayError("mosquitto already running")
        logf = open(self.log_path, "ab")
        self.proc = subprocess.Popen(["/usr/sbin/mosquitto", "-c", self.conf_path], stdout=logf,
                                     stderr=logf, stdin=subprocess.DEVNULL)
        logf.close()
        _started.append(self.proc)

        def up():
            if self.proc.poll() is not None:
                raise GatewayError("mosquitto exited with %r" % self.proc.returncode)
            s = socket.create_connection((HOST, self.port), timeout=0.5)
            s.close()
            return True
        if not wait_until(up, timeout):
            raise GatewayError("mosquitto did not start; log:\n%s" % self.log)

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    @property
    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except FileNotFoundError:
            return ""

    def halt(self, sig=signal.SIGTERM):
        """Stops the process by PID (SIGTERM: mosquitto saves its persistence file), keeps the
        dir, so start() brings the same broker back."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)

    def stop(self):
        self.halt()
        shutil.rmtree(self.dir, ignore_errors=True)


# What a cloud broker for the north tests needs besides the defaults: mosquitto drops QoS 1
# messages queued for one client beyond max_queued_messages (default 1000), which a subscriber
# catching up on a backlog reaches at once; the tests count every message, so the cloud queues
# are unbounded in practice.
CLOUD_CONF = "max_queued_messages 100000000\n"


def north_cfg(broker_port, **over):
    """A gateway.json "north" section for a cloud broker on loopback: enabled, fast reconnects
    (tests wait seconds, not the production 30 s back-off), any key overridable."""
    n = {"enabled": True, "host": HOST, "port": broker_port, "client_id": "iotgw-test",
         "reconnect_min_ms": 100, "reconnect_max_ms": 1000}
    n.update(over)
    return n


class CloudSubscriber:
    """The cloud side of the north tests: a paho 1.6 client on a broker, subscribed (QoS 1 by
    default) to `topics`, recording every message as (topic, payload bytes, dup flag) in arrival
    order. clean_session=False (default) keeps its session, and so what the broker queues for
    it, across a broker restart (with Mosquitto(persistence=True)); paho's network thread
    reconnects by itself. tls: dict of paho tls_set() arguments."""

    def __init__(self, port, topics=("#",), client_id="cloud-sub", clean_session=False, qos=1,
                 username=None, password=None, tls=None, timeout=10.0, wait=True):
        import threading
        import paho.mqtt.client as mqtt
        self.lock = threading.Lock()
        self.msgs = []
        self.keys = set()  # distinct (device, messageId) seen
        self.topics = list(topics)
        self.qos = qos
        self.connects = 0
        self.subscribed = threading.Event()
        self.last_rc = None
        c = mqtt.Client(client_id=client_id, clean_session=clean_session,
                        protocol=mqtt.MQTTv311)
        if username is not None:
            c.username_pw_set(username, password)
        if tls is not None:
            c.tls_set(**tls)
        c.reconnect_delay_set(0.05, 0.5)
        c.max_inflight_messages_set(1000)

        def on_connect(cl, ud, flags, rc):
            self.last_rc = rc
            if rc == 0:
                self.connects += 1
                cl.subscribe([(t, qos) for t in self.topics])

        def on_subscribe(cl, ud, mid, granted):
            self.subscribed.set()

        def on_message(cl, ud, msg):
            payload = bytes(msg.payload)
            try:
                d = json.loads(payload)
            except ValueError:
                d = None
            key = north_key((None, d, None))
            with self.lock:
                self.msgs.append((msg.topic, payload, bool(msg.dup), d))
                if key is not None:
                    self.keys.add(key)

        c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
        self.client = c
        c.connect(HOST, port, keepalive=30)
        c.loop_start()
        if wait and not self.subscribed.wait(timeout * SLOW):
            raise GatewayError("cloud subscriber: no SUBACK (last CONNACK rc %r)" % self.last_rc)

    def count(self):
        with self.lock:
            return len(self.msgs)

    def distinct(self):
        """How many distinct (device, messageId) arrived."""
        with self.lock:
            return len(self.keys)

    def keyset(self):
        """A copy of the distinct (device, messageId) seen."""
        with self.lock:
            return set(self.keys)

    def snapshot(self):
        """[(topic, payload bytes, dup)] in arrival order."""
        with self.lock:
            return [m[:3] for m in self.msgs]

    def clear(self):
        with self.lock:
            self.msgs = []
            self.keys = set()

    def records(self):
        """[(topic, payload dict (None if not JSON), dup)] in arrival order."""
        with self.lock:
            return [(m[0], m[3], m[2]) for m in self.msgs]

    def wait_for(self, pred, timeout):
        """Polls pred(self) until true or timeout (stretched under sanitizers)."""
        return wait_until(lambda: pred(self), timeout, interval=0.05)

    def stop(self):
        try:
            self.client.disconnect()
        except Exception:
            pass
        try:
            self.client.loop_stop()
        except Exception:
            pass


class MqttTap:
    """A TCP relay between the gateway's north client and a broker on loopback that records every
    PUBLISH the gateway writes, per connection: what the gateway itself sent (resends included),
    apart from what the broker delivers to its subscribers (its own redeliveries included). Each
    connection accepted is relayed to 127.0.0.1:upstream_port; when the broker is down the
    connection is closed at once (the gateway sees a failed connection attempt); when either
    side closes, both are closed. conns(): per connection, the list of (dup flag, topic, payload
    bytes) published on it, in order."""

    def __init__(self, upstream_port):
        import threading
        self.upstream = upstream_port
        self.lock = threading.Lock()
        self._conns = []  # per accepted connection that reached the broker: [(dup, topic, payload)]
        self.refused = 0  # connections closed at once (broker down)
        self.ls = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.ls.bind((HOST, 0))
        self.ls.listen(16)
        self.port = self.ls.getsockname()[1]
        self.socks = []
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self):
        import threading
        while not self.closed:
            try:
                down, _ = self.ls.accept()
            except OSError:
                return
            try:
                up = socket.create_connection((HOST, self.upstream), timeout=5)
                up.settimeout(None)
            except OSError:
                with self.lock:
                    self.refused += 1
                down.close()
                continue
            for s in (down, up):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self.lock:
                pubs = []
                self._conns.append(pubs)
                self.socks += [down, up]
            threading.Thread(target=self._pump, args=(down, up, pubs), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down, None), daemon=True).start()

    def _pump(self, src, dst, pubs):
        buf = bytearray()
        try:
            while True:
                data = src.recv(65536)
                if not data:
                    break
                if pubs is not None:  # gateway -> broker: record its PUBLISH packets
                    buf += data
                    off = 0
                    while True:
                        pkt = split_packet(buf, off)
                        if pkt is None:
                            break
                        first, body, off = pkt
                        if first >> 4 == PUBLISH:
                            tl = struct.unpack("!H", body[:2])[0]
                            pos = 2 + tl + (2 if (first >> 1) & 3 else 0)
                            with self.lock:
                                pubs.append((bool(first & 8), bytes(body[2:2 + tl]).decode(
                                    "utf-8", "replace"), bytes(body[pos:])))
                    del buf[:off]
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

    def conns(self):
        """Per connection that reached the broker, its publishes [(dup, topic, payload bytes)]."""
        with self.lock:
            return [list(p) for p in self._conns]

    def stop(self):
        self.closed = True
        self.ls.close()
        with self.lock:
            socks = list(self.socks)
        for s in socks:
            try:
                s.close()
            except OSError:
                pass


def split_packet(buf, off=0):
    """(first byte, body, offset after it) of the whole MQTT packet at buf[off:], or None."""
    if len(buf) - off < 2:
        return None
    n, mult, i = 0, 1, off + 1
    while True:
        if i >= len(buf):
            return None
        n += (buf[i] & 0x7F) * mult
        mult *= 128
        i += 1
        if not buf[i - 1] & 0x80:
            break
    if len(buf) < i + n:
        return None
    return buf[off], buf[i:i + n], i + n


def mqtt_packets(sock):
    """Yields (first byte, body) of each whole MQTT packet read from sock until the peer closes
    (an OSError propagates to the caller): the receive loop of the tests' scripted brokers."""
    buf = b""
    while True:
        data = sock.recv(65536)
        if not data:
            return
        buf += data
        while True:
            pkt = split_packet(buf)
            if pkt is None:
                break
            first, body, used = pkt
            buf = buf[used:]
            yield first, body


def north_key(rec):
    """(device, messageId) of an upstream record from CloudSubscriber.records(), or None."""
    _, d, _ = rec
    if not isinstance(d, dict) or "messageId" not in d:
        return None
    return (d.get("device"), d.get("messageId"))


def tally(keys):
    """Accounting of upstream arrivals: (set of distinct keys, duplicates = arrivals - distinct)."""
    seen = set()
    dup = 0
    for k in keys:
        if k in seen:
            dup += 1
        else:
            seen.add(k)
    return seen, dup


class QoS1Stream:
    """One device's numbered QoS 1 publishes with up to `window` in flight over a RawClient.
    make(seq) -> (topic, payload); the default is a property report with messageId
    "<dev>-<seq>" and timestamp TS0 + seq. acked: sequence numbers PUBACKed, in order."""
    TS0 = 1700000000000

    def __init__(self, client, dev, window=50, make=None, product="thermo"):
        self.c = client
        self.dev = dev
        self.window = window
        self.product = product
        self.make = make or self.report
        self.next = 1
        self.out = {}  # packet id -> seq
        self.acked = []
        self.errors = []

    def report(self, seq):
        return report_topic(self.dev, self.product), json.dumps(
            {"messageId": "%s-%d" % (self.dev, seq), "timestamp": self.TS0 + seq,
             "properties": {"temperature": round((seq % 1600) / 10.0 - 40.0, 1),
                            "humidity": seq % 101}}, separators=(",", ":"))

    def run(self, upto, stall=None, timeout=60.0):
        """Publishes up to seq `upto` (inclusive) and waits for its PUBACKs. Returns True when
        all are acked; with `stall`, returns False as soon as no PUBACK came for `stall` seconds
        while some were outstanding (back-pressure); False at timeout. Exceptions -> errors."""
        deadline = time.monotonic() + timeout * SLOW
        last_ack = time.monotonic()
        try:
            while True:
                batch = []
                while len(self.out) < self.window and self.next <= upto:
                    seq = self.next
                    pid = (seq - 1) % 65535 + 1
                    topic, payload = self.make(seq)
                    batch.append(publish_packet(topic, payload, 1, pid))
                    self.out[pid] = seq
                    self.next += 1
                if batch:
                    self.c.send(b"".join(batch))
                if not self.out:
                    return True
                now = time.monotonic()
                if now >= deadline:
                    return False
                wait = min(deadline - now, 0.2)
                p = self.c.read_packet(wait / SLOW)
                if p is None:
                    if stall is not None and time.monotonic() - last_ack >= stall:
                        return False
                    continue
                if p.type != PUBACK or p.pid not in self.out:
                    self.errors.append("unexpected %r" % p)
                    continue
                self.acked.append(self.out.pop(p.pid))
                last_ack = time.monotonic()
        except (Closed, OSError) as e:
            self.errors.append("%s: %r" % (self.dev, e))
            return False


def run_streams(streams, upto, stall=None, timeout=60.0):
    """QoS1Stream.run(upto) for every stream, one thread each. Returns the list of results."""
    import threading
    res = [None] * len(streams)

    def one(i):
        res[i] = streams[i].run(upto if not callable(upto) else upto(streams[i]), stall, timeout)
    ths = [threading.Thread(target=one, args=(i,)) for i in range(len(streams))]
    for th in ths:
        th.start()
    for th in ths:
        th.join()
    return res


def run(main):
    """Runs main(results) and finishes: an exception counts as a failure."""
    res = Results()
    try:
        main(res)
    except Exception as e:  # noqa: BLE001
        res.crash(e)
    res.finish()


# ---------------------------------------------------------------------------------------------
# Binary-frame products (TCP/UDP adapters)


def load_product(pid):
    """A product JSON shipped in config/products/, as a dict."""
    for d in ("products",):
        p = os.path.join(SRC, "config", d, pid + ".json")
        if os.path.exists(p):
            with open(p, encoding="utf-8") as f:
                return json.load(f)
    raise FileNotFoundError("no product %s in config/products{,.binary}" % pid)


def adapter_port(gw, adapter):
    """The port an adapter reported on --ready-fd (its first listener)."""
    return gw.ports.get(adapter)


def check_config(gw):
    """Runs iotgw --check-config on gw's files: (exit code, stdout, stderr)."""
    p = subprocess.run([BIN, "--check-config", "-c", gw.cfg_path], capture_output=True,
                       timeout=30 * SLOW, stdin=subprocess.DEVNULL)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def loopback_listeners(node):
    """Every listener of a config moved to loopback, port 0 (the tests' rule)."""
    if isinstance(node, dict):
        if "address" in node and "port" in node:
            node["address"] = "::1" if ":" in node["address"] else "127.0.0.1"
            node["port"] = 0
        for v in node.values():
            loopback_listeners(v)
    elif isinstance(node, list):
        for v in node:
            loopback_listeners(v)

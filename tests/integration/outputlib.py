# outputlib.py: helpers of the output-flood tests (28, 37): a socket with a small receive buffer
# that never reads, a flooder thread that writes as fast as the gateway takes it, a prober that
# checks another device is served meanwhile, and one measured flood (RSS growth, bytes the gateway
# took, log lines per second, close seen).
import os
import socket
import threading
import time

import gwtest as g

RCVBUF = 4096
# The flood window, and how long before its end the gateway must have stopped taking bytes.
FLOOD_S = 10.0
TAIL_S = 3.0
# A flood stops early when RSS grew this much (the unfixed gateway grows ~1 byte per byte sent).
RSS_ABORT_KB = 512 * 1024
# Set to measure an unfixed gateway (IOTGW_BIN of a build without the output bounds): the tests
# then leave the output_* keys out of the config and only print their figures.
BASELINE = os.environ.get("IOTGW_OUTPUT_BASELINE") == "1"


def small_socket(port, rcvbuf=RCVBUF):
    """A TCP socket to port with SO_RCVBUF set before connecting (a small window)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    s.settimeout(5.0 * g.SLOW)
    s.connect((g.HOST, port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return s


def raw_mqtt(sock):
    """A gwtest.RawClient over an already connected socket."""
    c = g.RawClient.__new__(g.RawClient)
    c.sock = sock
    c.buf = bytearray()
    c.closed = False
    c.auto_puback = True
    c.timeout = 5.0
    return c


class Flooder(threading.Thread):
    """Writes chunk over and over (non-blocking) until stop() or the peer closes; never reads.
    sent: bytes the kernel took; samples: (monotonic, sent); closed_at: when a write failed."""

    def __init__(self, sock, chunk):
        super().__init__(daemon=True)
        self.sock = sock
        self.chunk = chunk
        self.sent = 0
        self.samples = []
        self.closed_at = None
        self.error = None
        self._halt = threading.Event()

    def run(self):
        if not self.chunk:  # only holds the connection
            self._halt.wait()
            self.samples.append((time.monotonic(), 0))
            return
        self.sock.setblocking(False)
        view = memoryview(self.chunk)
        off = 0
        last = 0.0
        while not self._halt.is_set():
            try:
                n = self.sock.send(view[off:])
                self.sent += n
                off = (off + n) % len(self.chunk)
            except BlockingIOError:
                time.sleep(0.002)
            except OSError as e:
                self.error = e
                self.closed_at = time.monotonic()
                break
            now = time.monotonic()
            if now - last >= 0.05:
                self.samples.append((now, self.sent))
                last = now
        self.samples.append((time.monotonic(), self.sent))

    def sent_since(self, t):
        """Bytes sent after monotonic time t."""
        before = 0
        for ts, n in self.samples:
            if ts <= t:
                before = n
        return self.sent - before

    def stop(self):
        self._halt.set()
        self.join(10)


class Prober(threading.Thread):
    """Calls probe() (True when served) every interval until stop(); counts outcomes."""

    def __init__(self, probe, interval=0.1):
        super().__init__(daemon=True)
        self.probe = probe
        self.interval = interval
        self.ok = 0
        self.failed = 0
        self.worst = 0.0
        self.errors = []
        self._halt = threading.Event()

    def run(self):
        while not self._halt.is_set():
            t0 = time.monotonic()
            try:
                good = self.probe()
            except Exception as e:  # noqa: BLE001
                good = False
                self.errors.append(repr(e))
            dt = time.monotonic() - t0
            self.worst = max(self.worst, dt)
            if good:
                self.ok += 1
            else:
                self.failed += 1
            self._halt.wait(self.interval)

    def stop(self):
        self._halt.set()
        self.join(30 * g.SLOW)


def log_line_count(gw):
    try:
        with open(gw.log_path, "rb") as f:
            return f.read().count(b"\n")
    except OSError:
        return 0


def accounted(m):
    """Sum of iotgw_memory_bytes{area=*} in a parsed /metrics."""
    return sum(v for k, v in m.items() if k.startswith("memory_bytes{"))


def flood(gw, flooder, prober=None, seconds=FLOOD_S, extra=None, done=None):
    """Runs flooder (and prober) for seconds while sampling the gateway's RSS; with done (a
    predicate over the parsed /metrics, e.g. the close was counted), goes on past seconds until
    done holds or 2 * seconds * SLOW have passed: on a loaded machine (parallel tests, ASan)
    the gateway may need longer to make the output that gets the flooder closed. Returns a dict:
    rss0_kb, rss_max_kb, growth_kb, sent, tail_sent (bytes taken in the last TAIL_S), closed_at
    (seconds into the flood, or None), log_lines, log_rate (lines/s), aborted (RSS cap hit),
    output_max (peak iotgw_memory_bytes{area="output"}), acct_growth_kb (peak growth of the sum
    of iotgw_memory_bytes: the check under ASan, whose quarantine keeps freed memory resident).
    extra(): called every sample (e.g. to send commands); exceptions ignored."""
    rss0 = gw.rss_kb()
    acct0 = 0 if BASELINE else accounted(gw.metrics())
    acct_max = acct0
    lines0 = log_line_count(gw)
    t0 = time.monotonic()
    flooder.start()
    if prober:
        prober.start()
    rss_max = rss0
    out_max = 0
    aborted = False
    finished = done is None or BASELINE
    while True:
        el = time.monotonic() - t0
        if el >= seconds and (finished or el >= 2 * seconds * g.SLOW):
            break
        time.sleep(0.1)
        rss_max = max(rss_max, gw.rss_kb())
        if not BASELINE:
            try:
                m = gw.metrics()
                out_max = max(out_max, m.get(g.metric_key("memory_bytes", area="output"), 0))
                acct_max = max(acct_max, accounted(m))
                finished = finished or bool(done(m))
            except Exception:  # noqa: BLE001
                pass
        if extra:
            try:
                extra()
            except Exception:  # noqa: BLE001
                pass
        if rss_max - rss0 > RSS_ABORT_KB:
            aborted = True
            break
    dur = time.monotonic() - t0
    tail_from = t0 + dur - TAIL_S
    flooder.stop()
    if prober:
        prober.stop()
    rss_max = max(rss_max, gw.rss_kb())
    lines = log_line_count(gw) - lines0
    return {
        "rss0_kb": rss0, "rss_max_kb": rss_max, "growth_kb": rss_max - rss0,
        "sent": flooder.sent, "tail_sent": flooder.sent_since(tail_from),
        "closed_at": (flooder.closed_at - t0) if flooder.closed_at else None,
        "log_lines": lines, "log_rate": lines / dur, "seconds": dur, "aborted": aborted,
        "output_max": out_max, "acct_growth_kb": (acct_max - acct0) / 1024.0,
    }


def check_memory(t, name, r, bound_mb):
    """RSS growth < bound_mb; under ASan (quarantined frees stay resident) the growth of the
    gateway's own accounting (iotgw_memory_bytes) instead."""
    if g.SANITIZED:
        t.info("%s: RSS bound not checked under ASan (its allocator quarantines frees)" % name)
        t.check(r["acct_growth_kb"] < bound_mb * 1024, "%s: accounted memory growth %.1f MiB < "
                "%d MiB" % (name, r["acct_growth_kb"] / 1024.0, bound_mb))
    else:
        t.check(r["growth_kb"] < bound_mb * 1024, "%s: RSS growth %.1f MiB < %d MiB"
                % (name, r["growth_kb"] / 1024.0, bound_mb))


def describe(name, r):
    return ("figure: %s: RSS %+.1f MiB (from %.1f MiB), accounted %+.1f MiB, over %.1f s%s; gateway took %.1f MiB "
            "(%.1f KiB in the last %.0f s); closed %s; %d log lines (%.1f/s)"
            % (name, r["growth_kb"] / 1024.0, r["rss0_kb"] / 1024.0,
               r.get("acct_growth_kb", 0) / 1024.0, r["seconds"],
               " (stopped: RSS cap)" if r["aborted"] else "", r["sent"] / 1048576.0,
               r["tail_sent"] / 1024.0, TAIL_S,
               "after %.2f s" % r["closed_at"] if r["closed_at"] is not None else "no",
               r["log_lines"], r["log_rate"]))

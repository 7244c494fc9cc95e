# Proves a full disk loses nothing acknowledged and says so: the database lives on a 2 MB tmpfs; QoS 1 devices publish until commits fail; the log names the commit's own error (disk full, not the ROLLBACK's), iotgw_store_commit_failures_total{reason="full"} counts it, /health answers 503 with the reason, nothing is acknowledged while commits fail and every acknowledged message is stored; after the tmpfs grows the writer's retry commits the held batch, the outstanding PUBACKs come, every message is stored once and /health is 200 again.
import json
import os
import subprocess
import tempfile
import time

import gwtest as g

NDEV = 4
WINDOW = 20
TMPFS_SMALL = "2m"
TMPFS_BIG = "64m"
NOTE = "x" * 700  # ~1 KB per event: the 2 MB fill in a few thousand messages


def make_for(dev):
    def make(seq):
        return g.report_topic(dev), json.dumps({"messageId": "%s-%d" % (dev, seq),
                                    "timestamp": g.QoS1Stream.TS0 + seq,
                                    "properties": {"humidity": seq % 101, "note": NOTE}},
                                   separators=(",", ":"))
    return make


def mount(args):
    return subprocess.run(["mount"] + args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, timeout=30)


def drain_acks(streams, quiet=0.5):
    """Reads PUBACKs already on their way until none came for `quiet` seconds."""
    for s in streams:
        while s.out:
            p = s.c.read_packet(quiet / g.SLOW)
            if p is None:
                break
            if p.type == g.PUBACK and p.pid in s.out:
                s.acked.append(s.out.pop(p.pid))


def stored_ids(gw):
    return set(r[0] for r in gw.query("SELECT msg_id FROM events WHERE kind='property'",
                                      wait_state=False))


def acked_ids(streams):
    return set("%s-%d" % (s.dev, q) for s in streams for q in s.acked)


def main(t):
    gw = g.Gateway(n_devices=NDEV, start=False,
                   config={"log_rate_limit": 0,
                           "storage": {"queue_max": 256, "batch_max": 64, "state_lag_ms": 100}})
    data = os.path.dirname(gw.db_path)
    os.makedirs(data, exist_ok=True)
    probe = tempfile.mkdtemp(prefix="iotgw-tmpfs-probe-")
    r = mount(["-t", "tmpfs", "-o", "size=" + TMPFS_SMALL, "tmpfs", probe])
    if r.returncode != 0:
        os.rmdir(probe)
        t.check(True, "SKIPPED: cannot mount a tmpfs (needs root / CAP_SYS_ADMIN): %s"
                % r.stdout.strip())
        return
    subprocess.run(["umount", probe], timeout=30)
    os.rmdir(probe)
    r = mount(["-t", "tmpfs", "-o", "size=" + TMPFS_SMALL, "tmpfs", data])
    t.check(r.returncode == 0, "tmpfs of %s mounted for the database" % TMPFS_SMALL, r.stdout)
    try:
        run(t, gw)
    finally:
        if gw.alive():
            gw.kill()
        if subprocess.run(["umount", data], timeout=30).returncode != 0:
            subprocess.run(["umount", "-l", data], timeout=30)  # never leave the mount behind


def run(t, gw):
    data = os.path.dirname(gw.db_path)
    gw.start()
    devs = g.thermo_ids(NDEV)
    streams = [g.QoS1Stream(g.device_client(gw, d, timeout=10), d, window=WINDOW,
                            make=make_for(d)) for d in devs]
    # publish until PUBACKs stop because the commits fail (the tmpfs is full); a pause without
    # a failed commit (a slow gateway) just publishes on
    deadline = time.monotonic() + 120 * g.SLOW
    while True:
        res = g.run_streams(streams, 1000000, stall=1.0, timeout=120)
        full = gw.metric("store_commit_failures_total", reason="full") > 0
        if full or any(res) or any(s.errors for s in streams) or time.monotonic() > deadline:
            break
    t.eq([e for s in streams for e in s.errors], [], "devices: no errors while the disk fills")
    t.check(not any(res), "PUBACKs stopped (publishing stalled)", res)
    m = gw.metrics()
    t.check(full, "store_commit_failures_total{reason=\"full\"} > 0",
            {k: v for k, v in m.items() if "commit_failures" in k})
    t.info("disk full after %d acknowledged messages; tmpfs: %s"
           % (sum(len(s.acked) for s in streams),
              subprocess.run(["df", "-k", data], stdout=subprocess.PIPE, text=True)
              .stdout.splitlines()[-1]))

    lines = gw.find_log(msg="commit failed; retrying")
    t.check(lines, "the log has 'commit failed; retrying'")
    if lines:
        t.eq(lines[0].get("reason"), "full", "the failed commit's reason is full")
        t.eq(lines[0].get("sqlite"), "database or disk is full",
             "the log names the commit's own error, not the ROLLBACK's")
    t.check("cannot rollback" not in gw.log, "no 'cannot rollback' hides the error")

    status, body = gw.http_get("/health")
    t.eq(status, 503, "/health answers 503 while commits fail")
    t.check("reason=full" in body, "/health body names the reason", body)

    # while commits fail: nothing is acknowledged (the committed count stands still over a retry)
    # and everything acknowledged is in the database
    drain_acks(streams)
    fails0 = gw.metric("store_commit_failures_total", reason="full")
    committed0 = gw.metric("events_committed_total")
    acked0 = acked_ids(streams)
    more = g.wait_until(lambda: gw.metric("store_commit_failures_total", reason="full")
                        >= fails0 + 2, 30)
    t.check(more, "the writer keeps retrying (two more failed commits)")
    drain_acks(streams)
    t.eq(gw.metric("events_committed_total"), committed0,
         "events_committed_total does not move while commits fail")
    t.eq(len(acked_ids(streams) - acked0), 0, "no PUBACK while commits fail")
    stored = stored_ids(gw)
    acked1 = acked_ids(streams)
    t.eq(len(acked1 - stored), 0, "every acknowledged message is stored (while the disk is full)")
    t.eq(len(stored - acked1), 0, "nothing stored that was not acknowledged (the failing batch "
         "is rolled back, its messages unacknowledged)")
    t.info("acknowledged %d, stored %d, outstanding %d"
           % (len(acked0), len(stored), sum(len(s.out) for s in streams)))

    # space returns: the retried batch commits, the outstanding messages are acknowledged
    r = mount(["-o", "remount,size=" + TMPFS_BIG, data])
    t.check(r.returncode == 0, "tmpfs grown to %s" % TMPFS_BIG, r.stdout)
    ok = g.wait_until(lambda: gw.http_get("/health")[0] == 200, 30)
    t.check(ok, "/health back to 200 once a commit succeeds")
    upto = max(s.next for s in streams) + 50
    res = g.run_streams(streams, upto, timeout=60)
    t.check(all(res), "every outstanding and 50 more messages per device acknowledged", res)
    t.eq([e for s in streams for e in s.errors], [], "devices: no errors after space returned")
    acked = acked_ids(streams)
    rows = gw.query("SELECT count(*), count(DISTINCT msg_id) FROM events WHERE kind='property'",
                    wait_state=False)[0]
    stored = stored_ids(gw)
    t.eq(len(acked - stored), 0, "every acknowledged message is stored after space returned")
    t.eq(rows[0], rows[1], "no message stored twice")
    t.eq(rows[0], len(acked), "stored = acknowledged (%d)" % len(acked))
    status, body = gw.http_get("/health")
    t.eq((status, body), (200, "ok\n"), "/health is 200 ok")
    integrity = gw.scalar("PRAGMA integrity_check", wait_state=False)
    t.eq(integrity, "ok", "integrity_check ok")
    for s in streams:
        s.c.disconnect()
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")


g.run(main)

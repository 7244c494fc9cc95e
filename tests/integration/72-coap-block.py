# Proves Block1 uploads: a 4 KiB report sent by libcoap's coap-client in 64-byte blocks and by a raw client (2.31 Continue echoing Block1 for each block, 2.04 at the end) is stored once and whole; a block out of order is 4.08, a non-last block of the wrong size and SZX 7 are 4.00, a transfer or a single payload over max_block_bytes and a Size1 announcing too much are 4.13 (with Size1), and a transfer restarted from block 0 replaces the first.
import json
import os
import tempfile

import coaplib as c
import gwtest as g

P = "sensor"
MAX = 8192


def note_report(msg_id, n):
    """A report whose payload is exactly n bytes (padded through the note string)."""
    base = c.report_body(msg_id, {"note": ""})
    pad = n - len(base)
    return c.report_body(msg_id, {"note": ("abcdefghijklmnopqrstuvwxyz0123456789" * (n // 36 + 1))
                                  [:pad]})


def upload(cl, dev, payload, szx=2, order=None, query=None, size1=None, method=c.POST,
           timeout=5.0):
    """Block1 upload of payload; returns the list of responses (one per block sent)."""
    bs = 2 ** (szx + 4)
    blocks = [payload[i:i + bs] for i in range(0, len(payload), bs)]
    order = order if order is not None else range(len(blocks))
    out = []
    for num in order:
        more = num < len(blocks) - 1
        opts = [(c.BLOCK1, c.block_value(num, more, szx))]
        if size1 is not None and num == 0:
            opts.append((c.SIZE1, size1))
        r = cl.request(method, c.report_path(P, dev), blocks[num],
                       query=query if query is not None else c.dev_query(dev), options=opts,
                       timeout=timeout)
        out.append(r)
        if r is None or r.code_str not in ("2.31", "2.04"):
            break
    return out


def main(t):
    gw = c.gateway(n_devices=9, coap=c.coap_adapter(max_block_bytes=MAX))
    port = c.coap_port(gw)
    cl = c.Client(port)

    # ---- coap-client -b 64, a 4 KiB report from a file ----
    payload = note_report("big1", 4096)
    with tempfile.NamedTemporaryFile("wb", suffix=".json", delete=False) as f:
        f.write(payload.encode())
        path = f.name
    try:
        run = c.coap_client(c.coap_uri(port, c.report_path(P, "c-001"),
                                       "token=" + g.secret_of("c-001")),
                            payload_file=path, args=("-b", "64"))
    finally:
        os.unlink(path)
    t.check(run.last == "2.04", "coap-client -b 64, 4 KiB: final 2.04", run)
    t.check(run.codes.count("2.31") >= 60, "... after a 2.31 Continue per block (%d)"
            % run.codes.count("2.31"), run.codes[:5])
    rows = gw.query("SELECT payload FROM events WHERE device='c-001' AND msg_id='big1'")
    t.eq(len(rows), 1, "the 4 KiB report is stored once")
    want = json.loads(payload)["properties"]["note"]
    t.check(rows and json.loads(rows[0][0]).get("note") == want,
            "... whole (the note string byte for byte)")

    # ---- raw Block1, 64-byte blocks ----
    payload = note_report("big2", 4096)
    rs = upload(cl, "c-002", payload.encode())
    codes = [r.code_str if r else None for r in rs]
    t.eq(codes, ["2.31"] * 63 + ["2.04"], "raw Block1: 63 x 2.31 then 2.04")
    t.check(all(r is not None and c.block_parse(r.opt(c.BLOCK1)) == (i, True, 2)
                for i, r in enumerate(rs[:-1])), "each 2.31 echoes Block1 (num, M=1, SZX 2)",
            [c.block_parse(r.opt(c.BLOCK1)) for r in rs[:3] if r])
    t.check(rs[-1] is not None and rs[-1].opt(c.BLOCK1) is not None and
            c.block_parse(rs[-1].opt(c.BLOCK1))[:2] == (63, False),
            "the final 2.04 echoes Block1 (num 63, M=0)", rs[-1])
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE device='c-002' AND msg_id='big2'"), 1,
         "raw Block1 report stored once")

    # 1 KiB blocks (SZX 6) with PUT
    rs = upload(cl, "c-003", note_report("big3", 5000).encode(), szx=6, method=c.PUT)
    t.eq([r.code_str if r else None for r in rs], ["2.31"] * 4 + ["2.04"],
         "PUT, 1 KiB blocks: 4 x 2.31 then 2.04")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE device='c-003' AND msg_id='big3'"), 1,
         "stored once")

    # ---- errors ----
    p = note_report("bad1", 1024).encode()
    rs = upload(cl, "c-004", p, order=[0, 2])
    t.eq([r.code_str if r else None for r in rs], ["2.31", "4.08"],
         "a block out of order: 4.08 Request Entity Incomplete")
    rs = upload(cl, "c-004", p, order=[3])
    t.eq([r.code_str if r else None for r in rs], ["4.08"], "a transfer starting at block 3: 4.08")
    # CVE-2024-31031 shape (libcoap): block numbers whose offset num * size overflows 32 bits
    # must not wrap around to an in-bounds offset. Block 0 is accepted, then the largest block
    # number with the largest size (2^20 - 1 blocks of 1 KiB: 1 GiB), then one that wraps a
    # 32-bit product to 0 (4,194,304 x 1 KiB = 2^32) if the option could carry it (it cannot:
    # NUM has 20 bits), and the transfer must still complete correctly afterwards.
    OVF_DEV = "c-009"
    blk = note_report("ovf", 2048).encode()
    r0 = cl.post(c.report_path(P, OVF_DEV), blk[:1024], query=c.dev_query(OVF_DEV),
                 options=[(c.BLOCK1, c.block_value(0, True, 6))])
    big = cl.post(c.report_path(P, OVF_DEV), blk[1024:], query=c.dev_query(OVF_DEV),
                  options=[(c.BLOCK1, c.block_value((1 << 20) - 1, False, 6))])
    t.check(r0 is not None and r0.code_str == "2.31" and big is not None and
            big.code_str in ("4.08", "4.13"),
            "block 2^20-1 of 1 KiB after block 0: refused (4.08 or 4.13), no wrap-around",
            (r0 and r0.code_str, big and big.code_str))
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE msg_id='ovf'"), 0,
         "nothing stored from the overflowing sequence")
    rs = upload(cl, OVF_DEV, blk, szx=6)
    t.eq([r.code_str if r else None for r in rs], ["2.31", "2.04"],
         "the same report uploaded properly afterwards is accepted")
    t.check(g.wait_until(lambda: gw.scalar("SELECT count(*) FROM events WHERE msg_id='ovf'") == 1,
                         5), "and stored once")
    r = cl.post(c.report_path(P, "c-004"), p[:50], query=c.dev_query("c-004"),
                options=[(c.BLOCK1, c.block_value(0, True, 2))])
    t.eq(r and r.code_str, "4.00", "a non-last block shorter than its size: 4.00")
    r = cl.post(c.report_path(P, "c-004"), p[:64], query=c.dev_query("c-004"),
                options=[(c.BLOCK1, c.block_value(0, True, 7))])
    t.eq(r and r.code_str, "4.00", "SZX 7: 4.00")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE device='c-004' AND kind='property'"), 0,
         "nothing stored from the broken transfers")

    # too large: a transfer over max_block_bytes, a single payload over it, Size1 over it
    big = note_report("huge", MAX + 2048).encode()
    rs = upload(cl, "c-005", big, szx=6, timeout=2)
    t.eq(rs[-1] and rs[-1].code_str, "4.13", "Block1 transfer over max_block_bytes: 4.13")
    t.check(rs[-1] is not None and rs[-1].uint(c.SIZE1) == MAX,
            "4.13 carries Size1 = max_block_bytes", rs[-1])
    t.check(len(rs) <= MAX // 1024 + 1, "refused as soon as the total passes the bound "
            "(after %d blocks)" % len(rs))
    r = cl.post(c.report_path(P, "c-005"), big[:MAX + 100], query=c.dev_query("c-005"),
                timeout=2)
    t.eq(r and r.code_str, "4.13", "a single datagram payload over max_block_bytes: 4.13")
    rs = upload(cl, "c-005", note_report("s1", 2048).encode(), szx=6, size1=MAX + 1, timeout=2)
    t.eq(rs[0] and rs[0].code_str, "4.13", "Size1 over max_block_bytes on block 0: 4.13 at once")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE device='c-005' AND kind='property'"), 0,
         "nothing stored")

    # a transfer restarted from block 0 replaces the unfinished one
    p1 = note_report("r1", 1024).encode()
    p2 = note_report("r2", 1024).encode()
    upload(cl, "c-006", p1, order=[0, 1, 2])
    rs = upload(cl, "c-006", p2)
    t.eq(rs[-1] and rs[-1].code_str, "2.04", "restarted transfer completes: 2.04")
    t.eq([r[0] for r in gw.query("SELECT msg_id FROM events WHERE device='c-006' AND "
                                 "kind='property'")], ["r2"], "only the restarted one is stored")

    # a failed validation at the end of a transfer: 4.00 with the diagnostic
    bad = c.report_body("v1", {"note": "x" * 2000, "temperature": 999}).encode()
    rs = upload(cl, "c-007", bad)
    t.eq(rs[-1] and rs[-1].code_str, "4.00", "an invalid report assembled from blocks: 4.00")
    t.eq(gw.scalar("SELECT count(*) FROM events WHERE device='c-007' AND kind='property'"), 0,
         "not stored")

    # after all this, a plain report is served
    r = c.report(cl, P, "c-008", "plain", {"humidity": 1})
    t.eq(r and r.code_str, "2.04", "a plain report afterwards: 2.04")
    m = gw.metrics()
    t.info("coap counters: %r" % {k: v for k, v in m.items() if k.startswith("coap_") and v})
    cl.close()


g.run(main)

#!/usr/bin/env python3
# gen_codec_protobuf_seeds.py: writes the seed corpus of fuzz_codec_protobuf (tests/fuzz/corpus/
# codec_protobuf/seed_*) with tests/integration/pblib.py: one message of each kind, UDP and TCP forms.
import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "integration"))
import pblib as pb  # noqa: E402

ALL = {"t": 21.5, "d": 0.125, "i": -7, "l": 9000000000, "b": True, "s": "hall", "m": "eco",
       "at": 1700000000000, "st": {"code": 3, "msg": "ok"}, "a": [1.5, 2.0, -3.25]}


def nested(depth):
    v = 1
    for _ in range(depth):
        v = [v]
    return v


SEEDS = {
    "report_all_types": pb.report(ALL, msg_id="1", ts=1700000000000),
    "report_out_of_range": pb.report({"t": 300.0}, msg_id="2"),
    "report_wrong_type": pb.report({"i": "x", "b": 1}, msg_id="3"),
    "event": pb.event("ev", {"t": 80.5}, msg_id="4"),
    "event_no_id": pb.event("", {"t": 1.0}),
    "function_reply": pb.function_reply(True, "fn", {"ok": True}, msg_id="5"),
    "function_reply_error": pb.function_reply(False, error="busy", text="later", msg_id="6"),
    "write_reply": pb.write_reply(True, msg_id="7"),
    "login": pb.login("dev-1", "secret"),
    "heartbeat": pb.heartbeat(msg_id="8"),
    "udp_report": pb.report({"t": 20.0}, device_id="dev-1", token="secret"),
    "tcp_stream": pb.frame(pb.login("dev-1", "secret")) + pb.frame(pb.report(ALL, msg_id="9"))
    + pb.frame(pb.heartbeat()),
    "nested_deep": pb.report({"a": nested(15)}),
    "truncated": pb.report(ALL)[:-3],
    "unknown_oneof": pb.message(20, b"\x08\x01"),
}

out = os.path.join(HERE, "corpus", "codec_protobuf")
os.makedirs(out, exist_ok=True)
for name, data in SEEDS.items():
    with open(os.path.join(out, "seed_" + name + ".bin"), "wb") as f:
        f.write(data)
print("%d seeds in %s" % (len(SEEDS), out))

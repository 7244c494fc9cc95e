# Proves a PUBACK means committed: 1,000 windowed QoS 1 publishes, SIGKILL right after the last is sent, and after a restart on the same database every acknowledged messageId is in events.
import durability
import gwtest as g

N = 1000
WINDOW = 50
DEV = "t-001"


def main(t):
    # batch_ms holds each commit back 20 ms: a PUBACK sent before its commit would be caught
    gw = g.Gateway(n_devices=2, config={"storage": {"batch_ms": 20}})
    c = g.device_client(gw, DEV)
    acked = durability.publish_then_kill(t, gw, {DEV: c}, N, WINDOW)
    stored = durability.check_after_restart(t, gw, acked, N)
    # the restarted gateway works
    d = g.device_client(gw, "t-002")
    ack = d.publish_wait(g.report_topic("t-002"), g.report_payload("after", {"humidity": 1}), 7)
    t.check(ack is not None and gw.scalar("SELECT count(*) FROM events WHERE msg_id='after'") == 1,
            "restarted gateway stores new reports")
    d.disconnect()
    t.eq(gw.stop(), 0, "SIGTERM: exit 0")
    print("# acknowledged=%d stored=%d of %d" % (len(acked[DEV]), len(stored[DEV]), N))


g.run(main)

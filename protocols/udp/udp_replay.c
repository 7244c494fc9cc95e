/* udp_replay.c: the UDP adapter's replay window. Per device (shared by the loops, under the
 * device's stripe lock): the highest seq accepted and which of the 64 below it were, when, and the
 * newest device timestamp. A datagram repeating an accepted seq, below the window, or with a
 * timestamp older than replay_window_s is refused; one that is not newer than what was accepted
 * is stored but does not move the device's address. The windows live as long as the process. */
#include "udp_internal.h"

#include <inttypes.h>
#include <stdio.h>

#include "../../gateway/util/alloc.h"

#define WINDOW_BITS 64 /* seqs below the highest that may still arrive late (reordering) */

static void frame_facts(const gw_product *p, gw_frame_info *fi)
{
    *fi = (gw_frame_info){0};
    if (p && p->codec_ops && p->codec_ops->frame_info)
        p->codec_ops->frame_info(p, fi);
}

void gw__udp_replay_sock(gw__udp_sock *us)
{
    gw_frame_info fi;
    frame_facts(us->product, &fi);
    us->seq_mod = 0;
    us->timestamp = false;
    if (!us->ul->ad->replay)
        return;
    /* gw_thing_msg carries 32 bits of seq: a wider field counts modulo 2^32 */
    us->seq_mod = fi.up_seq_max >= UINT32_MAX ? (uint64_t)UINT32_MAX + 1
                  : fi.up_seq_max             ? fi.up_seq_max + 1
                                              : 0;
    us->timestamp = fi.up_timestamp;
}

int gw__udp_replay_init(gw__udp_adapter *ad, const gw_config *cfg)
{
    bool needed = false;
    for (size_t i = 0; ad->cfg.replay_window_s && i < ad->cfg.listeners.n && !needed; i++) {
        gw_frame_info fi;
        frame_facts(ad->products[i], &fi);
        needed = fi.up_seq_max || fi.up_timestamp;
    }
    if (!needed || !cfg->device_cap)
        return 0;
    ad->replay = gw_calloc(GW_AREA_RUNTIME, cfg->device_cap, sizeof(*ad->replay));
    return ad->replay ? 0 : GW_ENOMEM;
}

void gw__udp_replay_free(gw__udp_adapter *ad)
{
    gw_free(GW_AREA_RUNTIME, ad->replay);
    ad->replay = NULL;
}

/* Kinds the device numbers itself; replies carry the seq of the command they answer. */
static bool own_seq(gw_msg_kind k)
{
    return k != GW_MSG_FUNCTION_REPLY && k != GW_MSG_WRITE_REPLY;
}

/* The seq part of the window: FRESH (above the highest: the window slides), OLDER (an unseen
 * seq within WINDOW_BITS below it), or REPLAY. A window not refreshed for replay_window_s starts
 * again at this seq (the device may have restarted its counter). */
static gw__udp_verdict seq_check(gw__udp_replay *r, uint64_t mod, uint32_t seq, uint32_t now_s,
                                 uint32_t window_s, char *detail, size_t cap)
{
    uint64_t s = seq % mod;
    /* signed: another loop's clock (uv_now, cached per iteration) may be a little behind */
    if (!r->at_s || (int64_t)now_s - (int64_t)r->at_s > (int64_t)window_s) {
        r->hi = (uint32_t)s;
        r->seen = 1;
        r->at_s = now_s;
        return GW__UDP_FRESH;
    }
    uint64_t ahead = (s + mod - r->hi) % mod; /* serial number arithmetic (RFC 1982) */
    if (ahead != 0 && ahead < mod / 2) {
        r->seen = ahead >= WINDOW_BITS ? 1 : r->seen << ahead | 1;
        r->hi = (uint32_t)s;
        r->at_s = now_s;
        return GW__UDP_FRESH;
    }
    uint64_t back = (r->hi + mod - s) % mod;
    if (back < WINDOW_BITS && !(r->seen & (1ull << back))) {
        r->seen |= 1ull << back;
        return GW__UDP_OLDER;
    }
    snprintf(detail, cap, "seq %" PRIu32 " %s the last accepted %" PRIu32, seq,
             back == 0            ? "repeats"
             : back < WINDOW_BITS ? "was already accepted below"
                                  : "is below",
             r->hi);
    return GW__UDP_REPLAY;
}

gw__udp_verdict gw__udp_replay_check(gw__udp_sock *us, const gw_device *dev, const gw_thing_msg *m,
                                     char *detail, size_t cap, bool *online_elsewhere)
{
    gw__udp_loop *ul = us->ul;
    gw__udp_adapter *ad = ul->ad;
    gw_runtime *rt = ul->dl.loop->rt;
    bool seq = us->seq_mod && m->seq_set && own_seq(m->kind);
    bool ts = us->timestamp && m->timestamp_ms != 0;
    uint32_t window_s = ad->cfg.replay_window_s;
    gw__udp_verdict v = GW__UDP_OLDER;

    *online_elsewhere = false;
    if (!ad->replay || (!us->seq_mod && !us->timestamp))
        return GW__UDP_FRESH; /* no window: every authenticated datagram counts as new */
    if (ts && m->timestamp_ms < gw_now_ms() - (int64_t)window_s * 1000) {
        snprintf(detail, cap, "timestamp %" PRId64 " is over replay_window_s %" PRIu32 " s old",
                 m->timestamp_ms, window_s);
        return GW__UDP_REPLAY;
    }
    uint32_t now_s = (uint32_t)(uv_now(&ul->dl.loop->uv) / 1000) + 1;
    pthread_mutex_t *mu = &rt->stripes[dev->index % GW_DEVICE_STRIPES];
    pthread_mutex_lock(mu);
    gw__udp_replay *r = &ad->replay[dev->index];
    if (seq)
        v = seq_check(r, us->seq_mod, m->seq, now_s, window_s, detail, cap);
    if (v != GW__UDP_REPLAY && ts && m->timestamp_ms > r->ts_ms) {
        if (!seq)
            v = GW__UDP_FRESH; /* no seq to tell: a newer timestamp is new */
        r->ts_ms = m->timestamp_ms;
    }
    gw_session *owner = rt->slots[dev->index];
    *online_elsewhere = owner && owner->loop != ul->dl.loop;
    pthread_mutex_unlock(mu);
    return v;
}

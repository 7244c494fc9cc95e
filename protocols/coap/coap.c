/* coap.c: the CoAP adapter's ops table: its config section, one UDP socket per listener (plain or
 * DTLS) on every loop and the loop's tick timer (retransmissions, piggyback windows, ?wait, idle
 * sweep); listening, the timer and shutdown are protocols/dgram/'s. */
#include "coap_internal.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "../../gateway/util/alloc.h"
#include "coap.h"

#define COAP_OUT_CAP 65536

GW_COAP_METRICS(GW_METRIC_HANDLE_DEF)
const gw_metric_def gw__coap_metrics[] = {GW_COAP_METRICS(GW_METRIC_DEF){NULL, NULL, NULL}};

static const gw_cfg_field coap_fields[] = {
    {"listeners", GW_CFG_LISTENERS, offsetof(gw__coap_cfg, listeners), 0, 0, NULL, false,
     .doc = "Addresses and ports of plain CoAP (UDP)."},
    {"dtls_listeners", GW_CFG_LISTENERS, offsetof(gw__coap_cfg, dtls_listeners), 0, 0, NULL, false,
     .doc = "Addresses and ports of CoAP over DTLS-PSK."},
    {"idle_timeout_ms", GW_CFG_UINT32, offsetof(gw__coap_cfg, idle_timeout_ms), 100, 86400000, NULL,
     false, GW_CFG_DEF(300000),
     .doc = "An endpoint silent this long (ms) goes offline; the product's own value wins."},
    {"max_block_bytes", GW_CFG_UINT32, offsetof(gw__coap_cfg, max_block_bytes), 16, 16777216, NULL,
     false, GW_CFG_DEF(65536),
     .doc = "The largest payload, plain or reassembled from Block1, in bytes."},
    {"max_block_total", GW_CFG_INT64, offsetof(gw__coap_cfg, max_block_total), 16, 1LL << 40, NULL,
     false, GW_CFG_DEF(16777216),
     .doc = "Bytes of all the gateway's Block1 reassembly buffers together."},
    {"max_wait_s", GW_CFG_UINT32, offsetof(gw__coap_cfg, max_wait_s), 0, 3600, NULL, false,
     GW_CFG_DEF(30), .doc = "Cap of a report's `?wait=N`, in seconds."},
    {"piggyback_ms", GW_CFG_UINT32, offsetof(gw__coap_cfg, piggyback_ms), 0, 1900, NULL, false,
     GW_CFG_DEF(1000),
     .doc = "Answer in the ACK when the commit takes less than this (ms); else an empty ACK and a "
            "separate response."},
    {"dedup_entries", GW_CFG_UINT32, offsetof(gw__coap_cfg, dedup_entries), 16, 1048576, NULL,
     false, GW_CFG_DEF(4096), .doc = "Message ids per loop remembered to answer retransmissions."},
    {"busy_max_age_s", GW_CFG_UINT32, offsetof(gw__coap_cfg, busy_max_age_s), 0, 3600, NULL, false,
     GW_CFG_DEF(5),
     .doc = "Max-Age of the 5.03 answered while the store queue is full, in seconds."},
    {"rcvbuf", GW_CFG_UINT32, offsetof(gw__coap_cfg, rcvbuf), 0, 1073741824, NULL, false,
     GW_CFG_DEF(4u << 20),
     .doc = "Socket receive buffer (`SO_RCVBUF`), in bytes, capped by the kernel's `rmem_max`."},
    {"max_dtls_peers", GW_CFG_UINT32, offsetof(gw__coap_cfg, max_dtls_peers), 1, 10000000, NULL,
     false, GW_CFG_DEF(100000),
     .doc = "DTLS peers per loop past the cookie exchange (handshaking or established)."},
    {"max_dtls_peers_per_device", GW_CFG_UINT32, offsetof(gw__coap_cfg, max_dtls_peers_per_device),
     1, 1000000, NULL, false, GW_CFG_DEF(4),
     .doc = "Established DTLS sessions of one device, all loops; a newer one closes the oldest."},
    {"max_con_bytes", GW_CFG_UINT32, offsetof(gw__coap_cfg, max_con_bytes), 0, 1073741824, NULL,
     false, GW_CFG_DEF(1u << 20),
     .doc = "Bytes of the gateway's own CON messages kept for retransmission, per loop."},
    {NULL, 0, 0, 0, 0, NULL, false},
};

/* Per product, in its "auth": "coap_query_token": false refuses plain CoAP's ?token= (4.01):
 * DTLS-PSK only. */
static const gw_cfg_field coap_product_fields[] = {
    {"coap_query_token", GW_CFG_BOOL, offsetof(gw__coap_product, query_token), 0, 0, NULL, false,
     GW_CFG_DEF(true),
     .doc = "Plain CoAP requests may authenticate with `?token=<secret>`; false refuses plain CoAP "
            "for the product."},
    {NULL, 0, 0, 0, 0, NULL, false},
};

static int coap_init(gw_adapter *a, const json_t *cfg, const gw_config *gcfg, gw_diag *diag)
{
    gw__coap_adapter *ad = gw_calloc(GW_AREA_RUNTIME, 1, sizeof(*ad));
    if (!ad)
        return GW_ENOMEM;
    a->state = ad;
    if (gw_adapter_parse_config(a, cfg, &ad->cfg, gcfg, diag) != 0)
        return GW_ECONFIG;
    if (!ad->cfg.listeners.n && !ad->cfg.dtls_listeners.n)
        gw_diag_add(diag, gcfg->file, "adapters.coap.listeners",
                    "no listeners and no dtls_listeners");
    if (ad->cfg.dtls_listeners.n && gw__coap_dtls_init(ad, gcfg, diag) != 0)
        return GW_ECONFIG;
    uint32_t n = 16;
    while (n < ad->cfg.dedup_entries)
        n *= 2;
    ad->cfg.dedup_entries = n;
    return gw_dgram_adapter_init(&ad->dg, ad->cfg.listeners.n + ad->cfg.dtls_listeners.n + 1);
}

int gw__coap_listen(gw_dgram_loop *dl, size_t i)
{
    gw__coap_loop *cl = (gw__coap_loop *)dl;
    size_t n_plain = cl->ad->cfg.listeners.n;
    bool dtls = i >= n_plain;
    const gw_listen *li =
        dtls ? &cl->ad->cfg.dtls_listeners.v[i - n_plain] : &cl->ad->cfg.listeners.v[i];
    gw__coap_sock *sock = &cl->socks[i];
    sock->dtls = dtls;
    return gw_dgram_listen(&cl->dl, &sock->d, li, i, cl->ad->cfg.rcvbuf, dtls ? "coaps" : "coap",
                           NULL);
}

gw__coap_loop *gw__coap_loop_new(gw_adapter *a, gw_loop *loop)
{
    gw__coap_adapter *ad = a->state;
    gw__coap_loop *cl = (gw__coap_loop *)gw_dgram_loop_new(sizeof(*cl), &gw__coap_dgram_ops, a,
                                                           loop, ad->cfg.idle_timeout_ms);
    if (!cl)
        return NULL;
    cl->a = a;
    cl->ad = ad;
    cl->n_socks = ad->cfg.listeners.n + ad->cfg.dtls_listeners.n;
    cl->socks = gw_calloc(GW_AREA_RUNTIME, cl->n_socks ? cl->n_socks : 1, sizeof(gw__coap_sock));
    cl->dedup_cap = ad->cfg.dedup_entries;
    cl->dedup = gw_calloc(GW_AREA_SESSION, cl->dedup_cap, sizeof(gw__coap_dedup));
    cl->out_cap = COAP_OUT_CAP;
    cl->out = gw_malloc(GW_AREA_RUNTIME, cl->out_cap);
    cl->next_mid = (uint16_t)(uv_hrtime() ^ (loop->index << 12));
    if (ad->cfg.dtls_listeners.n) {
        cl->dtls_buf_size = COAP_OUT_CAP;
        cl->dtls_buf = gw_malloc(GW_AREA_RUNTIME, cl->dtls_buf_size);
    }
    if (!cl->socks || !cl->dedup || !cl->out || (ad->cfg.dtls_listeners.n && !cl->dtls_buf)) {
        gw__coap_loop_free(cl);
        return NULL;
    }
    for (size_t i = 0; i < cl->n_socks; i++) { /* a unit test may send through them unbound */
        cl->socks[i].cl = cl;
        cl->socks[i].d.dl = &cl->dl;
    }
    return cl;
}

static int coap_start(gw_adapter *a, gw_loop *loop)
{
    gw__coap_loop *cl = gw__coap_loop_new(a, loop);
    if (!cl)
        return GW_ENOMEM;
    return gw_dgram_start(&cl->dl, a, GW_COAP_TICK_MS, cl->n_socks);
}

void gw__coap_loop_free(gw__coap_loop *cl)
{
    while (cl->xchgs)
        gw__coap_xchg_free(cl->xchgs);
    gw__coap_blocks_free(cl, true);
    gw__coap_dtls_free_all(cl);
    gw_free(GW_AREA_RUNTIME, cl->dtls_buf);
    for (uint32_t i = 0; cl->dedup && i < cl->dedup_cap; i++)
        gw__coap_dedup_drop(&cl->dedup[i]);
    gw_free(GW_AREA_SESSION, cl->dedup);
    gw_dgram_loop_free(&cl->dl);
    gw_free(GW_AREA_RUNTIME, cl->out);
    gw_free(GW_AREA_RUNTIME, cl->socks);
    gw_free(GW_AREA_RUNTIME, cl);
}

static void free_loop(gw_dgram_loop *dl)
{
    gw__coap_loop_free((gw__coap_loop *)dl);
}

static void free_state(gw_adapter *a)
{
    gw__coap_adapter *ad = a->state;
    gw__coap_dtls_uninit(ad);
    gw_cfg_free(coap_fields, &ad->cfg);
    gw_free(GW_AREA_RUNTIME, ad);
}

static void coap_uninit(gw_adapter *a)
{
    gw_dgram_uninit(a, free_loop, free_state);
}

static const gw_listen_key listen_keys[] = {
    {"listeners", GW_TRANSPORT_UDP}, {"dtls_listeners", GW_TRANSPORT_UDP}, {NULL, 0}};

const gw_adapter_ops gw_adapter_coap_ops = {
    .name = "coap",
    .init = coap_init,
    .start = coap_start,
    .resume = gw_dgram_resume, /* CoAP never pauses: it answers 5.03 while the store is full */
    .stop = gw_dgram_stop,
    .close_sessions = gw_dgram_close_sessions,
    .uninit = coap_uninit,
    .listen_keys = listen_keys,
    .cfg_fields = coap_fields,
    .metrics = gw__coap_metrics,
    .product_auth_fields = coap_product_fields,
    .product_data_size = sizeof(gw__coap_product),
};

/* udp.c: the UDP adapter's ops table: its config section (listeners, each serving one product)
 * and one socket per listener on every loop with its product's facts; listening, the idle sweep
 * timer, back-pressure and shutdown are protocols/dgram/'s. Datagrams are udp_session.c's. */
#include "udp_internal.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "../../gateway/util/alloc.h"
#include "../../gateway/core/codec.h"
#include "udp.h"

#define UDP_MAX_DATAGRAM 65507 /* IPv4's largest UDP payload */

GW_UDP_METRICS(GW_METRIC_HANDLE_DEF)
const gw_metric_def gw__udp_metrics[] = {GW_UDP_METRICS(GW_METRIC_DEF){NULL, NULL, NULL}};

static const gw_cfg_field udp_fields[] = {
    {"listeners", GW_CFG_LISTENERS, offsetof(gw__udp_cfg, listeners), 0, 0, NULL, true},
    {"idle_timeout_ms", GW_CFG_UINT32, offsetof(gw__udp_cfg, idle_timeout_ms), 100, 86400000, NULL,
     false, GW_CFG_DEF(300000)},
    {"rcvbuf", GW_CFG_UINT32, offsetof(gw__udp_cfg, rcvbuf), 0, 1073741824, NULL, false,
     GW_CFG_DEF(4u << 20)},
    {"replay_window_s", GW_CFG_UINT32, offsetof(gw__udp_cfg, replay_window_s), 0, 86400, NULL,
     false, GW_CFG_DEF(120)},
    {NULL, 0, 0, 0, 0, NULL, false},
};

/* The product's largest datagram, as its codec declares it, else the largest UDP payload. */
static size_t product_max_frame(const gw_product *p)
{
    gw_frame_info fi = {.max_frame = 0};
    if (p->codec_ops && p->codec_ops->frame_info)
        p->codec_ops->frame_info(p, &fi);
    return fi.max_frame > 0 && fi.max_frame <= UDP_MAX_DATAGRAM ? fi.max_frame : UDP_MAX_DATAGRAM;
}

/* Each listener names an existing udp product; each udp product has a listener. */
static int check_products(gw__udp_adapter *ad, const gw_config *gcfg, gw_diag *diag)
{
    int errors = 0;
    char path[96];
    for (size_t i = 0; i < ad->cfg.listeners.n; i++) {
        const gw_listen *li = &ad->cfg.listeners.v[i];
        const gw_product *p = li->product[0] ? gw_config_product(gcfg, li->product) : NULL;
        snprintf(path, sizeof(path), "adapters.udp.listeners[%zu].product", i);
        if (!li->product[0]) {
            gw_diag_add(diag, gcfg->file, path, "missing required key (the product it serves)");
            errors++;
        } else if (!p) {
            gw_diag_add(diag, gcfg->file, path, "unknown product \"%s\"", li->product);
            errors++;
        } else if (!p->protocol || strcmp(p->protocol, "udp") != 0) {
            gw_diag_add(diag, gcfg->file, path, "product \"%s\" has protocol \"%s\", not \"udp\"",
                        li->product, p->protocol ? p->protocol : "");
            errors++;
        } else { /* two listeners on one port: config/config_listen.c, for every adapter */
            ad->products[i] = p;
            size_t mf = product_max_frame(p);
            if (mf > ad->max_frame)
                ad->max_frame = mf;
            uint32_t idle = p->idle_timeout_ms ? p->idle_timeout_ms : ad->cfg.idle_timeout_ms;
            if (idle / 4 < ad->sweep_ms)
                ad->sweep_ms = idle / 4 < 20 ? 20 : idle / 4;
        }
    }
    for (size_t j = 0; j < gcfg->n_products; j++) {
        const gw_product *p = &gcfg->products[j];
        bool served = false;
        if (!p->id || !p->protocol || strcmp(p->protocol, "udp") != 0)
            continue; /* no id: a product that failed to load (reported already) */
        for (size_t i = 0; i < ad->cfg.listeners.n && !served; i++)
            served = strcmp(ad->cfg.listeners.v[i].product, p->id) == 0;
        if (!served) {
            gw_diag_add(diag, gcfg->file, "adapters.udp.listeners",
                        "no listener serves udp product \"%s\"", p->id);
            errors++;
        }
    }
    return errors;
}

static int udp_init(gw_adapter *a, const json_t *cfg, const gw_config *gcfg, gw_diag *diag)
{
    gw__udp_adapter *ad = gw_calloc(GW_AREA_RUNTIME, 1, sizeof(*ad));
    if (!ad)
        return GW_ENOMEM;
    ad->sweep_ms = 1000;
    a->state = ad;
    if (gw_adapter_parse_config(a, cfg, &ad->cfg, gcfg, diag) != 0)
        return GW_ECONFIG;
    size_t n = ad->cfg.listeners.n ? ad->cfg.listeners.n : 1;
    ad->products = gw_calloc(GW_AREA_RUNTIME, n, sizeof(*ad->products));
    if (gw_dgram_adapter_init(&ad->dg, n) != 0 || !ad->products)
        return GW_ENOMEM;
    if (check_products(ad, gcfg, diag))
        return GW_ECONFIG;
    return gw__udp_replay_init(ad, gcfg);
}

int gw__udp_listen(gw_dgram_loop *dl, size_t i)
{
    gw__udp_loop *ul = (gw__udp_loop *)dl;
    gw__udp_sock *us = &ul->socks[i];
    us->ul = ul;
    us->product = ul->ad->products[i];
    us->max_frame = product_max_frame(us->product);
    gw__udp_replay_sock(us);
    return gw_dgram_listen(&ul->dl, &us->d, &ul->ad->cfg.listeners.v[i], i, ul->ad->cfg.rcvbuf,
                           "udp", ul->ad->cfg.listeners.v[i].product);
}

static int udp_start(gw_adapter *a, gw_loop *loop)
{
    gw__udp_adapter *ad = a->state;
    gw__udp_loop *ul = (gw__udp_loop *)gw_dgram_loop_new(sizeof(*ul), &gw__udp_dgram_ops, a, loop,
                                                         ad->cfg.idle_timeout_ms);
    if (!ul)
        return GW_ENOMEM;
    ul->a = a;
    ul->ad = ad;
    ul->n_socks = ad->cfg.listeners.n;
    ul->socks = gw_calloc(GW_AREA_RUNTIME, ul->n_socks ? ul->n_socks : 1, sizeof(gw__udp_sock));
    ul->ackbuf_size = ad->max_frame;
    ul->ackbuf = gw_malloc(GW_AREA_RUNTIME, ul->ackbuf_size);
    if (!ul->socks || !ul->ackbuf) {
        gw_free(GW_AREA_RUNTIME, ul->ackbuf);
        gw_free(GW_AREA_RUNTIME, ul->socks);
        gw_free(GW_AREA_RUNTIME, ul);
        return GW_ENOMEM;
    }
    return gw_dgram_start(&ul->dl, a, ad->sweep_ms, ul->n_socks);
}

static void free_loop(gw_dgram_loop *dl)
{
    gw__udp_loop *ul = (gw__udp_loop *)dl;
    gw_dgram_loop_free(&ul->dl);
    gw_free(GW_AREA_RUNTIME, ul->ackbuf);
    gw_free(GW_AREA_RUNTIME, ul->socks);
    gw_free(GW_AREA_RUNTIME, ul);
}

static void free_state(gw_adapter *a)
{
    gw__udp_adapter *ad = a->state;
    gw__udp_replay_free(ad);
    gw_cfg_free(udp_fields, &ad->cfg);
    gw_free(GW_AREA_RUNTIME, ad->products);
    gw_free(GW_AREA_RUNTIME, ad);
}

static void udp_uninit(gw_adapter *a)
{
    gw_dgram_uninit(a, free_loop, free_state);
}

static const gw_listen_key listen_keys[] = {{"listeners", GW_TRANSPORT_UDP}, {NULL, 0}};

const gw_adapter_ops gw_adapter_udp_ops = {
    .name = "udp",
    .init = udp_init,
    .start = udp_start,
    .resume = gw_dgram_resume,
    .stop = gw_dgram_stop,
    .close_sessions = gw_dgram_close_sessions,
    .uninit = udp_uninit,
    .listen_keys = listen_keys,
    .cfg_fields = udp_fields,
    .metrics = gw__udp_metrics,
};

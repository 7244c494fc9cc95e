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
    {"listeners", GW_CFG_LISTENERS, offsetof(gw__udp_cfg, listeners), 0, 0, NULL, true,
     .doc = "Addresses and ports, each serving one product (`\"product\"`)."},
    {"idle_timeout_ms", GW_CFG_UINT32, offsetof(gw__udp_cfg, idle_timeout_ms), 100, 86400000, NULL,
     false, GW_CFG_DEF(300000),
     .doc = "A device silent this long (ms) goes offline; the product's own value wins."},
    {"rcvbuf", GW_CFG_UINT32, offsetof(gw__udp_cfg, rcvbuf), 0, 1073741824, NULL, false,
     GW_CFG_DEF(4u << 20),
     .doc = "Socket receive buffer (`SO_RCVBUF`), in bytes, capped by the kernel's `rmem_max`."},
    {"replay_window_s", GW_CFG_UINT32, offsetof(gw__udp_cfg, replay_window_s), 0, 86400, NULL,
     false, GW_CFG_DEF(120),
     .doc = "Datagrams whose device timestamp is older than this (seconds) are dropped as replays; "
            "0: no replay window."},
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
    us->at = ul->ad->cfg.listeners.v[i];
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

/* ---- hot reload: listeners added and removed ---- */

static bool same_listener(const gw_listen *x, const gw_listen *y)
{
    return x->port == y->port && strcmp(x->address, y->address) == 0 &&
           strcmp(x->product, y->product) == 0;
}

static bool listed(const gw_listen_list *ls, const gw_listen *li)
{
    for (size_t i = 0; i < ls->n; i++)
        if (same_listener(&ls->v[i], li))
            return true;
    return false;
}

typedef struct relisten_job {
    gw_adapter *a;
    gw__udp_extra *add, *stop; /* the new ones: ad->extra up to stop */
    const gw_listen_list *old, *now;
    unsigned turn;
    int rc;
} relisten_job;

static void relisten_on(gw_loop *loop, void *arg)
{
    relisten_job *j = arg;
    gw__udp_loop *ul = loop->adapter_state[gw_adapter_index(j->a)];
    if (loop->index != j->turn || !ul || ul->dl.stopping)
        return;
    for (gw__udp_extra *e = j->add; e != j->stop; e = e->next) {
        gw__udp_sock *us = gw_calloc(GW_AREA_RUNTIME, 1, sizeof(*us));
        if (!us) {
            j->rc = GW_ENOMEM;
            continue;
        }
        us->ul = ul;
        us->product = e->product;
        us->max_frame = product_max_frame(e->product);
        us->at = e->at;
        gw__udp_replay_sock(us);
        us->extra_next = ul->extra;
        ul->extra = us;
        int rc = gw_dgram_listen_at(&ul->dl, &us->d, &e->at, &e->bound, ul->ad->cfg.rcvbuf, "udp",
                                    e->at.product);
        if (rc && !j->rc)
            j->rc = rc;
    }
    for (size_t i = 0; i < j->old->n; i++) {
        if (listed(j->now, &j->old->v[i]))
            continue;
        for (size_t k = 0; k < ul->n_socks; k++)
            if (same_listener(&ul->socks[k].at, &j->old->v[i]))
                gw_dgram_sock_close(&ul->socks[k].d);
        for (gw__udp_sock *us = ul->extra; us; us = us->extra_next)
            if (same_listener(&us->at, &j->old->v[i]))
                gw_dgram_sock_close(&us->d);
    }
    if (!ul->dl.paused)
        gw_dgram_receive(&ul->dl, true);
}

static int udp_relisten(gw_adapter *a, const json_t *section, const gw_config *gcfg)
{
    gw__udp_adapter *ad = a->state;
    gw__udp_cfg nc;
    gw_diag diag = {0};
    int rc = 0;

    memset(&nc, 0, sizeof(nc));
    if (gw_adapter_parse_config(a, section, &nc, gcfg, &diag) != 0 ||
        nc.idle_timeout_ms != ad->cfg.idle_timeout_ms || nc.rcvbuf != ad->cfg.rcvbuf ||
        nc.replay_window_s != ad->cfg.replay_window_s)
        goto fail;
    for (size_t i = 0; i < nc.listeners.n; i++) { /* a frame larger than the ack buffer: restart */
        const gw_product *p = gw_config_product(gcfg, nc.listeners.v[i].product);
        if (!listed(&ad->cfg.listeners, &nc.listeners.v[i]) &&
            (!p || product_max_frame(p) > ad->max_frame))
            goto fail;
    }
    gw__udp_extra *before = ad->extra;
    for (size_t i = 0; i < nc.listeners.n; i++) {
        if (listed(&ad->cfg.listeners, &nc.listeners.v[i]))
            continue;
        gw__udp_extra *e = gw_calloc(GW_AREA_RUNTIME, 1, sizeof(*e));
        if (!e) {
            rc = GW_ENOMEM;
            continue;
        }
        e->at = nc.listeners.v[i];
        e->product = gw_config_product(gcfg, e->at.product);
        e->pin = gcfg;
        gw_config_retain(gcfg); /* e->product lives in it */
        e->next = ad->extra;
        ad->extra = e;
    }
    relisten_job j = {a, ad->extra, before, &ad->cfg.listeners, &nc.listeners, 0, 0};
    for (j.turn = 0; j.turn < a->rt->n_loops; j.turn++)
        gw_runtime_run_on_all(a->rt, relisten_on, &j);
    gw_listen_list keep = ad->cfg.listeners; /* the new list is the running one now */
    ad->cfg.listeners = nc.listeners;
    nc.listeners = keep;
    gw_cfg_free(udp_fields, &nc);
    gw_diag_free(&diag);
    return rc ? rc : j.rc;
fail:
    gw_cfg_free(udp_fields, &nc);
    gw_diag_free(&diag);
    return 1;
}

static void free_loop(gw_dgram_loop *dl)
{
    gw__udp_loop *ul = (gw__udp_loop *)dl;
    while (ul->extra) {
        gw__udp_sock *next = ul->extra->extra_next;
        gw_free(GW_AREA_RUNTIME, ul->extra);
        ul->extra = next;
    }
    gw_dgram_loop_free(&ul->dl);
    gw_free(GW_AREA_RUNTIME, ul->ackbuf);
    gw_free(GW_AREA_RUNTIME, ul->socks);
    gw_free(GW_AREA_RUNTIME, ul);
}

static void free_state(gw_adapter *a)
{
    gw__udp_adapter *ad = a->state;
    gw__udp_replay_free(ad);
    while (ad->extra) {
        gw__udp_extra *next = ad->extra->next;
        gw_config_release(ad->extra->pin);
        gw_free(GW_AREA_RUNTIME, ad->extra);
        ad->extra = next;
    }
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
    .relisten = udp_relisten,
    .uninit = udp_uninit,
    .listen_keys = listen_keys,
    .cfg_fields = udp_fields,
    .metrics = gw__udp_metrics,
};

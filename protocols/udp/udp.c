/* udp.c: the UDP adapter's ops table: its config section (listeners, each serving one product),
 * one SO_REUSEPORT socket per listener on every loop, the idle sweep timer, back-pressure and
 * shutdown. Datagrams and sessions are udp_session.c's. */
#include "udp_internal.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "../../gateway/alloc.h"
#include "../../gateway/codec.h"
#include "../../gateway/dgram.h"
#include "../../gateway/listen.h"
#include "../../gateway/log.h"
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
    ad->bound_ports = gw_calloc(GW_AREA_RUNTIME, n, sizeof(uint16_t));
    ad->products = gw_calloc(GW_AREA_RUNTIME, n, sizeof(*ad->products));
    if (!ad->bound_ports || !ad->products)
        return GW_ENOMEM;
    if (check_products(ad, gcfg, diag))
        return GW_ECONFIG;
    return gw__udp_replay_init(ad, gcfg);
}

static gw__udp_loop *loop_state(gw_adapter *a, gw_loop *loop)
{
    return loop->adapter_state[gw_adapter_index(a)];
}

static void on_sweep(uv_timer_t *t)
{
    gw__udp_sweep(t->data);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    gw__udp_sock *us = h->data;
    (void)suggested;
    gw_dgram_recv_buf(us->ul->loop, buf);
}

static void recv_all(gw__udp_loop *ul, bool on);

static void on_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *from,
                    unsigned flags)
{
    gw__udp_sock *us = h->data;
    gw__udp_loop *ul = us->ul;
    if (nread < 0) {
        GW_LOG_DEBUG("udp", NULL, NULL, "receive error", "error=\"%s\"", uv_strerror((int)nread));
        return;
    }
    if (!from) { /* nothing more to read now, or the end of a recvmmsg batch */
        if (ul->pause_pending) {
            ul->pause_pending = false;
            recv_all(ul, false);
        }
        return;
    }
    if (ul->stopping)
        return;
    gw__udp_datagram(us, (const uint8_t *)buf->base, (size_t)nread, from,
                     (flags & UV_UDP_PARTIAL) != 0);
    if (!ul->paused && gw_store_full(ul->loop->rt->store)) {
        ul->paused = true;
        gw_loop_note_backpressure(ul->loop);
        /* Inside a recvmmsg batch, stopping now would make libuv drop the batch's remaining
         * datagrams: they are taken (at most GW_DGRAM_RECV_BATCH - 1 over the store's bound) and
         * reading stops after the batch. */
        if (flags & UV_UDP_MMSG_CHUNK)
            ul->pause_pending = true;
        else
            recv_all(ul, false);
    }
}

static void recv_all(gw__udp_loop *ul, bool on)
{
    for (size_t i = 0; i < ul->n_socks; i++) {
        gw__udp_sock *us = &ul->socks[i];
        if (!us->open || us->receiving == on)
            continue;
        if (on ? uv_udp_recv_start(&us->h, on_alloc, on_recv) == 0 : uv_udp_recv_stop(&us->h) == 0)
            us->receiving = on;
    }
}

static int listen_one(gw__udp_loop *ul, size_t i)
{
    const gw_listen *li = &ul->ad->cfg.listeners.v[i];
    gw__udp_sock *us = &ul->socks[i];
    uint16_t port = ul->ad->bound_ports[i] ? ul->ad->bound_ports[i] : li->port;
    us->ul = ul;
    us->product = ul->ad->products[i];
    us->max_frame = product_max_frame(us->product);
    gw__udp_replay_sock(us);
    int rc =
        gw_listen_udp(&ul->loop->uv, &us->h, li, &port, (int)ul->ad->cfg.rcvbuf, UV_UDP_RECVMMSG);
    us->h.data = us;
    us->open = us->h.type == UV_UDP; /* initialised: must be closed */
    if (rc) {
        GW_LOG_ERROR("udp", NULL, NULL, "cannot listen", "address=%s port=%u error=\"%s\"",
                     li->address, port, uv_strerror(rc));
        return rc;
    }
    if (!ul->ad->bound_ports[i]) { /* the first loop bound it: the others share its port */
        ul->ad->bound_ports[i] = port;
        gw_runtime_report_listener(ul->loop->rt, "udp", li->address, port, li->product);
    }
    return 0;
}

static int udp_start(gw_adapter *a, gw_loop *loop)
{
    gw__udp_adapter *ad = a->state;
    gw__udp_loop *ul = gw_calloc(GW_AREA_RUNTIME, 1, sizeof(*ul));
    if (!ul)
        return GW_ENOMEM;
    ul->a = a;
    ul->ad = ad;
    ul->loop = loop;
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
    loop->adapter_state[gw_adapter_index(a)] = ul;
    uv_timer_init(&loop->uv, &ul->sweep);
    ul->sweep.data = ul;
    uv_timer_start(&ul->sweep, on_sweep, ad->sweep_ms, ad->sweep_ms);
    for (size_t i = 0; i < ul->n_socks; i++) {
        int rc = listen_one(ul, i);
        if (rc)
            return rc;
    }
    recv_all(ul, true);
    return 0;
}

static void udp_resume(gw_adapter *a, gw_loop *loop)
{
    gw__udp_loop *ul = loop_state(a, loop);
    if (!ul || !ul->paused || ul->stopping)
        return;
    ul->paused = false; /* if the store is full again, the next datagram pauses us again */
    recv_all(ul, true);
}

/* Stop reading; the sockets stay open so that acks of messages still committing go out. */
static void udp_stop(gw_adapter *a, gw_loop *loop)
{
    gw__udp_loop *ul = loop_state(a, loop);
    if (!ul)
        return;
    ul->stopping = true;
    recv_all(ul, false);
}

static void udp_close_sessions(gw_adapter *a, gw_loop *loop)
{
    gw__udp_loop *ul = loop_state(a, loop);
    if (!ul)
        return;
    gw__udp_close_all(ul, "shutdown");
    gw_dgram_flush(loop);
    for (size_t i = 0; i < ul->n_socks; i++) {
        gw__udp_sock *us = &ul->socks[i];
        if (us->open && !uv_is_closing((uv_handle_t *)&us->h))
            uv_close((uv_handle_t *)&us->h, NULL);
    }
    if (!uv_is_closing((uv_handle_t *)&ul->sweep))
        uv_close((uv_handle_t *)&ul->sweep, NULL);
}

static void udp_uninit(gw_adapter *a)
{
    gw__udp_adapter *ad = a->state;
    if (!ad)
        return;
    gw_runtime *rt = a->rt;
    for (unsigned i = 0; rt && i < rt->n_loops; i++) {
        gw__udp_loop *ul = rt->loops[i].adapter_state[gw_adapter_index(a)];
        if (ul) {
            gw_session_index_free(&ul->sessions);
            gw_free(GW_AREA_RUNTIME, ul->ackbuf);
            gw_free(GW_AREA_RUNTIME, ul->socks);
            gw_free(GW_AREA_RUNTIME, ul);
            rt->loops[i].adapter_state[gw_adapter_index(a)] = NULL;
        }
    }
    gw__udp_replay_free(ad);
    gw_cfg_free(udp_fields, &ad->cfg);
    gw_free(GW_AREA_RUNTIME, ad->bound_ports);
    gw_free(GW_AREA_RUNTIME, ad->products);
    gw_free(GW_AREA_RUNTIME, ad);
    a->state = NULL;
}

static const gw_listen_key listen_keys[] = {{"listeners", GW_TRANSPORT_UDP}, {NULL, 0}};

const gw_adapter_ops gw_adapter_udp_ops = {
    .name = "udp",
    .init = udp_init,
    .start = udp_start,
    .resume = udp_resume,
    .stop = udp_stop,
    .close_sessions = udp_close_sessions,
    .uninit = udp_uninit,
    .listen_keys = listen_keys,
    .cfg_fields = udp_fields,
    .metrics = gw__udp_metrics,
};

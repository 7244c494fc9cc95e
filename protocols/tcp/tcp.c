/* tcp.c: the TCP adapter's ops table and config: listeners each serving one binary-frame product
 * (checked against the loaded products), login and idle timeouts; listening, sweeps, pauses and
 * shutdown are the stream module's (protocols/stream). */
#include "tcp_internal.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "../../gateway/util/alloc.h"
#include "../../gateway/core/codec.h"
#include "tcp.h"

#define MAX_FRAME_LIMIT 65536 /* the binary codec's bound on any product's max_frame */

GW_TCP_METRICS(GW_METRIC_HANDLE_DEF)
const gw_metric_def gw__tcp_metrics[] = {GW_TCP_METRICS(GW_METRIC_DEF){NULL, NULL, NULL}};

static const gw_cfg_field tcp_fields[] = {
    {"listeners", GW_CFG_LISTENERS, offsetof(gw__tcp_cfg, listeners), GW_CFG_LISTEN_TLS, 0, NULL,
     true, .doc = "Addresses and ports, each serving one product (`\"product\"`)."},
    {"login_timeout_ms", GW_CFG_UINT32, offsetof(gw__tcp_cfg, login_timeout_ms), 100, 3600000, NULL,
     false, GW_CFG_DEF(10000), .doc = "The login frame must arrive within this many ms."},
    {"idle_timeout_ms", GW_CFG_UINT32, offsetof(gw__tcp_cfg, idle_timeout_ms), 100, 86400000, NULL,
     false, GW_CFG_DEF(300000),
     .doc = "A session silent this long (ms) goes offline; the product's own value wins."},
    {"max_inflight", GW_CFG_UINT32, offsetof(gw__tcp_cfg, max_inflight), 1, 65535, NULL, false,
     GW_CFG_DEF(256),
     .doc =
         "Frames of one connection waiting for their commit; past it the connection is not read."},
    {"max_frame", GW_CFG_UINT32, offsetof(gw__tcp_cfg, max_frame), 0, MAX_FRAME_LIMIT, NULL, false,
     GW_CFG_DEF(0),
     .doc = "Caps every product's `max_frame` on this adapter, in bytes; 0: the product's own."},
    GW_STREAM_OUT_FIELDS(gw__tcp_cfg, out),
    {NULL, 0, 0, 0, 0, NULL, false},
};

static int check_listener_into(gw__tcp_adapter *ad, const gw_listen *li, size_t i,
                               gw__tcp_serve *sv, const gw_config *gcfg, gw_diag *diag)
{
    char path[80];
    snprintf(path, sizeof(path), "adapters.tcp.listeners[%zu].product", i);
    if (!li->product[0]) {
        gw_diag_add(diag, gcfg->file, path, "missing required key (the product this port serves)");
        return 1;
    }
    const gw_product *p = gw_config_product(gcfg, li->product);
    if (!p) {
        gw_diag_add(diag, gcfg->file, path, "no product \"%s\"", li->product);
        return 1;
    }
    if (!p->protocol || strcmp(p->protocol, "tcp") != 0) {
        gw_diag_add(diag, gcfg->file, path, "product \"%s\" has protocol \"%s\", not \"tcp\"",
                    p->id, p->protocol ? p->protocol : "");
        return 1;
    }
    if (!p->codec_ops || !p->codec_ops->frame || !p->codec_ops->decode) {
        gw_diag_add(diag, gcfg->file, path,
                    "product \"%s\": codec \"%s\" cannot frame a byte stream", p->id,
                    p->codec ? p->codec : "");
        return 1;
    }
    sv->product = p;
    gw_frame_info fi = {.max_frame = MAX_FRAME_LIMIT};
    if (p->codec_ops && p->codec_ops->frame_info)
        p->codec_ops->frame_info(p, &fi);
    sv->max_frame =
        fi.max_frame && fi.max_frame <= MAX_FRAME_LIMIT ? (uint32_t)fi.max_frame : MAX_FRAME_LIMIT;
    sv->id_every_frame = fi.device_id_in_all;
    sv->login_code = fi.login_code;
    if (ad->cfg.max_frame && ad->cfg.max_frame < sv->max_frame)
        sv->max_frame = ad->cfg.max_frame;
    sv->idle_ms = p->idle_timeout_ms ? p->idle_timeout_ms : ad->cfg.idle_timeout_ms;
    return 0;
}

static int check_listener(gw__tcp_adapter *ad, size_t i, const gw_config *gcfg, gw_diag *diag)
{
    return check_listener_into(ad, &ad->cfg.listeners.v[i], i, &ad->serve[i], gcfg, diag);
}

static int tcp_init(gw_adapter *a, const json_t *cfg, const gw_config *gcfg, gw_diag *diag)
{
    gw__tcp_adapter *ad = gw_calloc(GW_AREA_RUNTIME, 1, sizeof(*ad));
    if (!ad)
        return GW_ENOMEM;
    a->state = ad;
    if (gw_adapter_parse_config(a, cfg, &ad->cfg, gcfg, diag) != 0 ||
        gw_stream_out_check(&ad->cfg.out, gcfg->file, "adapters.tcp", diag))
        return GW_ECONFIG;
    ad->cfg.out.paused_metric = GW_M_TCP_OUTPUT_PAUSED;
    ad->cfg.out.overflow_metric = GW_M_TCP_OUTPUT_OVERFLOW;
    size_t n = ad->cfg.listeners.n ? ad->cfg.listeners.n : 1;
    ad->serve = gw_calloc(GW_AREA_RUNTIME, n, sizeof(*ad->serve));
    ad->bound_ports = gw_calloc(GW_AREA_RUNTIME, n, sizeof(uint16_t));
    if (!ad->serve || !ad->bound_ports)
        return GW_ENOMEM;
    int errors =
        gw_stream_tls_setup(cfg, "listeners", &ad->cfg.listeners, "tcp", gcfg, diag, &ad->tls);
    if (errors < 0)
        return GW_ENOMEM;
    ad->tls_n = ad->cfg.listeners.n;
    int perr = gw_stream_proxy_setup(cfg, "listeners", &ad->cfg.listeners, "tcp",
                                     ad->cfg.login_timeout_ms, gcfg, diag, &ad->proxy);
    if (perr < 0)
        return GW_ENOMEM;
    errors += perr;
    ad->section = json_incref((json_t *)cfg);
    for (size_t i = 0; i < ad->cfg.listeners.n; i++)
        errors += check_listener(ad, i, gcfg, diag);
    for (size_t j = 0; j < gcfg->n_products; j++) { /* every tcp product needs a port */
        const gw_product *p = &gcfg->products[j];
        bool served = false;
        if (!p->id || !p->protocol || strcmp(p->protocol, "tcp") != 0)
            continue; /* no id: a product that failed to load (reported already) */
        for (size_t i = 0; i < ad->cfg.listeners.n; i++)
            served = served || strcmp(ad->cfg.listeners.v[i].product, p->id) == 0;
        if (!served) {
            gw_diag_add(diag, gcfg->file, "adapters.tcp.listeners",
                        "no listener serves product \"%s\" (protocol tcp)", p->id);
            errors++;
        }
    }
    return errors ? GW_ECONFIG : 0;
}

static int tcp_start(gw_adapter *a, gw_loop *loop)
{
    gw__tcp_adapter *ad = a->state;
    return gw_stream_start(a, loop, &gw__tcp_stream_ops, ad, &ad->cfg.listeners, ad->bound_ports,
                           ad->cfg.max_inflight, &ad->cfg.out, ad->tls, ad->proxy);
}

/* ---- hot reload: listeners added and removed ---- */

static bool listed(const gw_listen_list *ls, const gw_listen *li)
{
    for (size_t i = 0; i < ls->n; i++)
        if (ls->v[i].port == li->port && strcmp(ls->v[i].address, li->address) == 0 &&
            strcmp(ls->v[i].product, li->product) == 0 && ls->v[i].tls == li->tls &&
            ls->v[i].proxy == li->proxy)
            return true;
    return false;
}

/* A reload may add and remove plain listeners; any change touching a TLS or proxy_protocol
 * listener (added, removed, its "tls" or "proxy_protocol" object changed) needs a restart. */
static bool tls_unchanged(const json_t *old_section, const json_t *new_section)
{
    const json_t *a = json_object_get(old_section, "listeners");
    const json_t *b = json_object_get(new_section, "listeners");
    size_t i;
    const json_t *e;
    json_array_foreach(a, i, e)
    {
        if (!json_object_get(e, "tls") && !json_object_get(e, "proxy_protocol"))
            continue;
        bool same = false;
        size_t j;
        const json_t *f;
        json_array_foreach(b, j, f) same = same || json_equal(e, f);
        if (!same)
            return false;
    }
    json_array_foreach(b, i, e)
    {
        if (!json_object_get(e, "tls") && !json_object_get(e, "proxy_protocol"))
            continue;
        bool same = false;
        size_t j;
        const json_t *f;
        json_array_foreach(a, j, f) same = same || json_equal(e, f);
        if (!same)
            return false;
    }
    return true;
}

static bool same_settings(const gw__tcp_cfg *x, const gw__tcp_cfg *y)
{
    return x->login_timeout_ms == y->login_timeout_ms && x->idle_timeout_ms == y->idle_timeout_ms &&
           x->max_inflight == y->max_inflight && x->max_frame == y->max_frame &&
           x->out.high_water == y->out.high_water && x->out.low_water == y->out.low_water &&
           x->out.hard_limit == y->out.hard_limit &&
           x->out.stall_timeout_ms == y->out.stall_timeout_ms &&
           x->out.loop_limit == y->out.loop_limit;
}

typedef struct relisten_job {
    gw_adapter *a;
    gw__tcp_extra *add; /* the new ones (ad->extra up to stop) */
    gw__tcp_extra *stop;
    const gw_listen_list *old, *now;
    unsigned turn;
    int rc;
} relisten_job;

/* One loop after the other (the first binds a port 0 listener, the others share its port). */
static void relisten_on(gw_loop *loop, void *arg)
{
    relisten_job *j = arg;
    if (loop->index != j->turn)
        return;
    for (gw__tcp_extra *e = j->add; e != j->stop; e = e->next) {
        int rc = gw_stream_listen_add(j->a, loop, &e->at, &e->bound, &e->sv);
        if (rc && !j->rc)
            j->rc = rc;
    }
    for (size_t i = 0; i < j->old->n; i++)
        if (!listed(j->now, &j->old->v[i]))
            gw_stream_listen_remove(j->a, loop, &j->old->v[i]);
}

static int tcp_relisten(gw_adapter *a, const json_t *section, const gw_config *gcfg)
{
    gw__tcp_adapter *ad = a->state;
    gw__tcp_cfg nc;
    gw_diag diag = {0};
    int rc = 0;

    memset(&nc, 0, sizeof(nc));
    if (gw_adapter_parse_config(a, section, &nc, gcfg, &diag) != 0 ||
        !same_settings(&ad->cfg, &nc) || !tls_unchanged(ad->section, section))
        goto fail; /* (the new configuration was validated: only other keys can differ) */
    gw__tcp_extra *before = ad->extra;
    for (size_t i = 0; i < nc.listeners.n; i++) {
        if (listed(&ad->cfg.listeners, &nc.listeners.v[i]))
            continue;
        gw__tcp_extra *e = gw_calloc(GW_AREA_RUNTIME, 1, sizeof(*e));
        if (!e || check_listener_into(ad, &nc.listeners.v[i], i, &e->sv, gcfg, &diag) != 0) {
            gw_free(GW_AREA_RUNTIME, e);
            rc = GW_ENOMEM;
            continue;
        }
        e->at = nc.listeners.v[i];
        e->pin = gcfg;
        gw_config_retain(gcfg); /* e->sv.product lives in it */
        e->next = ad->extra;
        ad->extra = e;
    }
    relisten_job j = {a, ad->extra, before, &ad->cfg.listeners, &nc.listeners, 0, 0};
    for (j.turn = 0; j.turn < a->rt->n_loops; j.turn++)
        gw_runtime_run_on_all(a->rt, relisten_on, &j);
    json_decref(ad->section);
    ad->section = json_incref((json_t *)section);
    gw_listen_list keep = ad->cfg.listeners; /* the new list is the running one now */
    ad->cfg.listeners = nc.listeners;
    nc.listeners = keep;
    gw_cfg_free(tcp_fields, &nc);
    gw_diag_free(&diag);
    return rc ? rc : j.rc;
fail:
    gw_cfg_free(tcp_fields, &nc);
    gw_diag_free(&diag);
    return 1;
}

static void tcp_close_sessions(gw_adapter *a, gw_loop *loop)
{
    gw_stream_close_all(a, loop, "shutdown");
}

static void tcp_uninit(gw_adapter *a)
{
    gw__tcp_adapter *ad = a->state;
    if (!ad)
        return;
    gw_stream_free_all(a);
    gw_stream_tls_free_all(ad->tls, ad->tls_n);
    gw_stream_proxy_free_all(ad->proxy, ad->tls_n);
    json_decref(ad->section);
    while (ad->extra) {
        gw__tcp_extra *next = ad->extra->next;
        gw_config_release(ad->extra->pin);
        gw_free(GW_AREA_RUNTIME, ad->extra);
        ad->extra = next;
    }
    gw_cfg_free(tcp_fields, &ad->cfg);
    gw_free(GW_AREA_RUNTIME, ad->serve);
    gw_free(GW_AREA_RUNTIME, ad->bound_ports);
    gw_free(GW_AREA_RUNTIME, ad);
    a->state = NULL;
}

static void tcp_reloaded(gw_adapter *a, const gw_config *gcfg)
{
    gw__tcp_adapter *ad = a->state;
    (void)gcfg;
    gw_stream_tls_reload(ad->tls, ad->tls_n);
}

static const gw_listen_key listen_keys[] = {{"listeners", GW_TRANSPORT_TCP}, {NULL, 0}};

const gw_adapter_ops gw_adapter_tcp_ops = {
    .name = "tcp",
    .init = tcp_init,
    .start = tcp_start,
    .resume = gw_stream_resume_all,
    .stop = gw_stream_stop,
    .close_sessions = tcp_close_sessions,
    .relisten = tcp_relisten,
    .reloaded = tcp_reloaded,
    .listener_tls_fields = gw_stream_tls_fields,
    .uninit = tcp_uninit,
    .listen_keys = listen_keys,
    .cfg_fields = tcp_fields,
    .metrics = gw__tcp_metrics,
};

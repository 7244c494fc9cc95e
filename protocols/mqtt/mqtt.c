/* mqtt.c: the MQTT adapter's ops table: its config section, one SO_REUSEPORT listener per
 * configured address on every loop, the keep-alive sweep timer, back-pressure and shutdown. */
#include "mqtt_internal.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "../../gateway/alloc.h"
#include "../../gateway/listen.h"
#include "../../gateway/log.h"
#include "mqtt.h"

#define SWEEP_MS 250

static const gw_cfg_field mqtt_fields[] = {
    {"listeners", GW_CFG_LISTENERS, offsetof(gw__mqtt_cfg, listeners), 0, 0, NULL, true},
    {"max_packet_size", GW_CFG_UINT32, offsetof(gw__mqtt_cfg, max_packet_size), 64, 268435455, NULL,
     false},
    {"connect_timeout_ms", GW_CFG_UINT32, offsetof(gw__mqtt_cfg, connect_timeout_ms), 100, 600000,
     NULL, false},
    {"max_inflight", GW_CFG_UINT32, offsetof(gw__mqtt_cfg, max_inflight), 1, 65535, NULL, false},
    {"max_subscriptions", GW_CFG_UINT32, offsetof(gw__mqtt_cfg, max_subscriptions), 1, 1024, NULL,
     false},
    {NULL, 0, 0, 0, 0, NULL, false},
};

static int mqtt_init(gw_adapter *a, const json_t *cfg, const gw_config *gcfg, gw_diag *diag)
{
    gw__mqtt_adapter *ad = gw_calloc(GW_AREA_RUNTIME, 1, sizeof(*ad));
    if (!ad)
        return GW_ENOMEM;
    ad->cfg.max_packet_size = 262144;
    ad->cfg.connect_timeout_ms = 10000;
    ad->cfg.max_inflight = 1024;
    ad->cfg.max_subscriptions = 32;
    a->state = ad;
    if (gw_cfg_parse(mqtt_fields, cfg, &ad->cfg, gcfg->file, "adapters.mqtt", diag) > 0)
        return GW_ECONFIG;
    for (size_t i = 0; i < ad->cfg.listeners.n; i++) {
        if (ad->cfg.listeners.v[i].product[0]) { /* MQTT devices name their product at CONNECT */
            char path[64];
            snprintf(path, sizeof(path), "adapters.mqtt.listeners[%zu].product", i);
            gw_diag_add(diag, gcfg->file, path,
                        "not used by mqtt (the username names the product)");
            return GW_ECONFIG;
        }
    }
    ad->bound_ports =
        gw_calloc(GW_AREA_RUNTIME, ad->cfg.listeners.n ? ad->cfg.listeners.n : 1, sizeof(uint16_t));
    return ad->bound_ports ? 0 : GW_ENOMEM;
}

static void on_sweep(uv_timer_t *t)
{
    gw__mqtt_sweep(t->data);
}

static int listen_one(gw__mqtt_loop *ml, size_t i)
{
    const gw_listen *li = &ml->ad->cfg.listeners.v[i];
    uint16_t port = ml->ad->bound_ports[i] ? ml->ad->bound_ports[i] : li->port;
    ml->servers[i].data = ml;
    int rc = gw_listen_tcp(&ml->loop->uv, &ml->servers[i], li, &port, gw__mqtt_on_connection);
    ml->servers[i].data = ml;
    if (rc) {
        GW_LOG_ERROR("mqtt", NULL, NULL, "cannot listen", "address=%s port=%u error=\"%s\"",
                     li->address, port, uv_strerror(rc));
        return rc;
    }
    if (!ml->ad->bound_ports[i]) { /* the first loop bound it: the others share its port */
        ml->ad->bound_ports[i] = port;
        gw_runtime_report_listener(ml->loop->rt, "mqtt", li->address, port);
    }
    return 0;
}

static int mqtt_start(gw_adapter *a, gw_loop *loop)
{
    gw__mqtt_adapter *ad = a->state;
    gw__mqtt_loop *ml = gw_calloc(GW_AREA_RUNTIME, 1, sizeof(*ml));
    if (!ml)
        return GW_ENOMEM;
    ml->a = a;
    ml->ad = ad;
    ml->loop = loop;
    ml->n_servers = ad->cfg.listeners.n;
    ml->servers = gw_calloc(GW_AREA_RUNTIME, ml->n_servers ? ml->n_servers : 1, sizeof(uv_tcp_t));
    if (!ml->servers) {
        gw_free(GW_AREA_RUNTIME, ml);
        return GW_ENOMEM;
    }
    loop->adapter_state[gw_adapter_index(a)] = ml;
    uv_timer_init(&loop->uv, &ml->sweep);
    ml->sweep.data = ml;
    uv_timer_start(&ml->sweep, on_sweep, SWEEP_MS, SWEEP_MS);
    for (size_t i = 0; i < ml->n_servers; i++) {
        int rc = listen_one(ml, i);
        if (rc)
            return rc;
    }
    return 0;
}

static gw__mqtt_loop *loop_state(gw_adapter *a, gw_loop *loop)
{
    return loop->adapter_state[gw_adapter_index(a)];
}

static void mqtt_pause(gw_adapter *a, gw_loop *loop)
{
    (void)a;
    (void)loop; /* sessions pause themselves when they see the store full */
}

static void mqtt_resume(gw_adapter *a, gw_loop *loop)
{
    gw__mqtt_loop *ml = loop_state(a, loop);
    gw__mqtt_conn *c = ml ? ml->paused : NULL;
    if (!ml)
        return;
    ml->paused = NULL;
    while (c) {
        gw__mqtt_conn *next = c->pnext;
        c->pnext = NULL;
        c->pause_listed = false;
        gw__mqtt_resume(c);
        gw_session_release(&c->base);
        c = next;
    }
}

static void mqtt_stop(gw_adapter *a, gw_loop *loop)
{
    gw__mqtt_loop *ml = loop_state(a, loop);
    if (!ml)
        return;
    ml->stopping = true;
    for (size_t i = 0; i < ml->n_servers; i++)
        if (!uv_is_closing((uv_handle_t *)&ml->servers[i]) && ml->servers[i].loop)
            uv_close((uv_handle_t *)&ml->servers[i], NULL);
    for (gw__mqtt_conn *c = ml->conns; c; c = c->next) {
        if (c->reading) {
            uv_read_stop((uv_stream_t *)&c->tcp);
            c->reading = false;
        }
    }
}

static void mqtt_close_sessions(gw_adapter *a, gw_loop *loop)
{
    gw__mqtt_loop *ml = loop_state(a, loop);
    if (!ml)
        return;
    gw__mqtt_conn *c = ml->conns, *next;
    for (; c; c = next) {
        next = c->next;
        c->has_will = false;
        gw__mqtt_close(c, "shutdown", false);
    }
    if (!uv_is_closing((uv_handle_t *)&ml->sweep))
        uv_close((uv_handle_t *)&ml->sweep, NULL);
}

static void mqtt_uninit(gw_adapter *a)
{
    gw__mqtt_adapter *ad = a->state;
    if (!ad)
        return;
    gw_runtime *rt = a->rt;
    for (unsigned i = 0; rt && i < rt->n_loops; i++) {
        gw__mqtt_loop *ml = rt->loops[i].adapter_state[gw_adapter_index(a)];
        if (ml) {
            gw_free(GW_AREA_RUNTIME, ml->servers);
            gw_free(GW_AREA_RUNTIME, ml);
            rt->loops[i].adapter_state[gw_adapter_index(a)] = NULL;
        }
    }
    gw_cfg_free(mqtt_fields, &ad->cfg);
    gw_free(GW_AREA_RUNTIME, ad->bound_ports);
    gw_free(GW_AREA_RUNTIME, ad);
    a->state = NULL;
}

const gw_adapter_ops gw_adapter_mqtt_ops = {
    .abi = GW_ADAPTER_ABI,
    .name = "mqtt",
    .init = mqtt_init,
    .start = mqtt_start,
    .pause = mqtt_pause,
    .resume = mqtt_resume,
    .stop = mqtt_stop,
    .close_sessions = mqtt_close_sessions,
    .uninit = mqtt_uninit,
};

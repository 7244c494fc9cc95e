/* mqtt.c: the MQTT adapter's ops table: its config section; listeners on every loop, the
 * keep-alive sweep, back-pressure and shutdown are the stream module's (protocols/stream). */
#include "mqtt_internal.h"

#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "../../gateway/util/alloc.h"
#include "mqtt.h"

GW_MQTT_METRICS(GW_METRIC_HANDLE_DEF)
gw_metric gw__mqtt_error_base = GW_M__UNREGISTERED;
#define GW_MQTT_E_DEF(e, label)                                                                    \
    {e == 0 ? &gw__mqtt_error_base : NULL, "mqtt_protocol_errors_total{error=\"" label "\"}",      \
     e == 0 ? "MQTT connections closed for a protocol error, by error" : NULL},
const gw_metric_def gw__mqtt_metrics[] = {GW_MQTT_METRICS(GW_METRIC_DEF)
                                              GW_MQTT_ERRORS(GW_MQTT_E_DEF){NULL, NULL, NULL}};

static const gw_cfg_field mqtt_fields[] = {
    {"listeners", GW_CFG_LISTENERS, offsetof(gw__mqtt_cfg, listeners), GW_CFG_LISTEN_TLS, 0, NULL,
     true, .doc = "Addresses and ports MQTT devices connect to."},
    {"max_packet_size", GW_CFG_UINT32, offsetof(gw__mqtt_cfg, max_packet_size), 64, 268435455, NULL,
     false, GW_CFG_DEF(262144),
     .doc = "The largest MQTT packet, in bytes; a larger one closes the connection."},
    {"connect_timeout_ms", GW_CFG_UINT32, offsetof(gw__mqtt_cfg, connect_timeout_ms), 100, 600000,
     NULL, false, GW_CFG_DEF(10000),
     .doc = "A connection that has not sent CONNECT within this many ms is closed."},
    {"max_inflight", GW_CFG_UINT32, offsetof(gw__mqtt_cfg, max_inflight), 1, 65535, NULL, false,
     GW_CFG_DEF(1024),
     .doc = "QoS 1 messages of one connection waiting for their commit; past it the connection is "
            "not read (MQTT 5's Receive Maximum)."},
    {"max_subscriptions", GW_CFG_UINT32, offsetof(gw__mqtt_cfg, max_subscriptions), 1, 1024, NULL,
     false, GW_CFG_DEF(32), .doc = "Subscription filters per session."},
    {"session_expiry_s", GW_CFG_UINT32, offsetof(gw__mqtt_cfg, session_expiry_s), 0, 2592000, NULL,
     false, GW_CFG_DEF(3600),
     .doc = "The longest a stored session outlives its connection, in seconds; 0: none stored."},
    {"topic_alias_maximum", GW_CFG_UINT32, offsetof(gw__mqtt_cfg, topic_alias_max), 0, 1024, NULL,
     false, GW_CFG_DEF(16),
     .doc = "MQTT 5: topic aliases a device may use per connection; 0: none."},
    {"keepalive_max_s", GW_CFG_UINT32, offsetof(gw__mqtt_cfg, keepalive_max_s), 0, 65535, NULL,
     false, GW_CFG_DEF(0),
     .doc = "MQTT 5: the longest keep-alive granted, in seconds; 0: the device chooses."},
    GW_STREAM_OUT_FIELDS(gw__mqtt_cfg, out),
    {NULL, 0, 0, 0, 0, NULL, false},
};

static int mqtt_init(gw_adapter *a, const json_t *cfg, const gw_config *gcfg, gw_diag *diag)
{
    gw__mqtt_adapter *ad = gw_calloc(GW_AREA_RUNTIME, 1, sizeof(*ad));
    if (!ad)
        return GW_ENOMEM;
    a->state = ad;
    if (gw_adapter_parse_config(a, cfg, &ad->cfg, gcfg, diag) != 0 ||
        gw_stream_out_check(&ad->cfg.out, gcfg->file, "adapters.mqtt", diag))
        return GW_ECONFIG;
    ad->cfg.out.paused_metric = GW_M_MQTT_OUTPUT_PAUSED;
    ad->cfg.out.overflow_metric = GW_M_MQTT_OUTPUT_OVERFLOW;
    for (size_t i = 0; i < ad->cfg.listeners.n; i++) {
        if (ad->cfg.listeners.v[i].product[0]) { /* MQTT devices name their product at CONNECT */
            char path[64];
            snprintf(path, sizeof(path), "adapters.mqtt.listeners[%zu].product", i);
            gw_diag_add(diag, gcfg->file, path,
                        "not used by mqtt (the username names the product)");
            return GW_ECONFIG;
        }
    }
    int terr =
        gw_stream_tls_setup(cfg, "listeners", &ad->cfg.listeners, "mqtt", gcfg, diag, &ad->tls);
    if (terr)
        return terr < 0 ? GW_ENOMEM : GW_ECONFIG;
    terr = gw_stream_proxy_setup(cfg, "listeners", &ad->cfg.listeners, "mqtt",
                                 ad->cfg.connect_timeout_ms, gcfg, diag, &ad->proxy);
    if (terr)
        return terr < 0 ? GW_ENOMEM : GW_ECONFIG;
    if (gw__mqtt_sessions_init(&ad->sessions, gcfg->device_cap, ad->cfg.session_expiry_s) != 0)
        return GW_ENOMEM;
    ad->bound_ports =
        gw_calloc(GW_AREA_RUNTIME, ad->cfg.listeners.n ? ad->cfg.listeners.n : 1, sizeof(uint16_t));
    return ad->bound_ports ? 0 : GW_ENOMEM;
}

static int mqtt_start(gw_adapter *a, gw_loop *loop)
{
    gw__mqtt_adapter *ad = a->state;
    gw__mqtt_sessions_start(&ad->sessions, loop);
    return gw_stream_start(a, loop, &gw__mqtt_stream_ops, ad, &ad->cfg.listeners, ad->bound_ports,
                           ad->cfg.max_inflight, &ad->cfg.out, ad->tls, ad->proxy);
}

static void mqtt_close_sessions(gw_adapter *a, gw_loop *loop)
{
    gw_stream_close_all(a, loop, "shutdown");
    gw__mqtt_sessions_stop(&((gw__mqtt_adapter *)a->state)->sessions, loop);
}

static void mqtt_uninit(gw_adapter *a)
{
    gw__mqtt_adapter *ad = a->state;
    if (!ad)
        return;
    gw_stream_free_all(a);
    gw_stream_tls_free_all(ad->tls, ad->cfg.listeners.n);
    gw_stream_proxy_free_all(ad->proxy, ad->cfg.listeners.n);
    gw__mqtt_sessions_free(&ad->sessions);
    gw_cfg_free(mqtt_fields, &ad->cfg);
    gw_free(GW_AREA_RUNTIME, ad->bound_ports);
    gw_free(GW_AREA_RUNTIME, ad);
    a->state = NULL;
}

static void mqtt_reloaded(gw_adapter *a, const gw_config *gcfg)
{
    gw__mqtt_adapter *ad = a->state;
    (void)gcfg;
    gw_stream_tls_reload(ad->tls, ad->cfg.listeners.n);
}

static const gw_listen_key listen_keys[] = {{"listeners", GW_TRANSPORT_TCP}, {NULL, 0}};

const gw_adapter_ops gw_adapter_mqtt_ops = {
    .name = "mqtt",
    .init = mqtt_init,
    .start = mqtt_start,
    .resume = gw_stream_resume_all,
    .stop = gw_stream_stop,
    .close_sessions = mqtt_close_sessions,
    .uninit = mqtt_uninit,
    .reloaded = mqtt_reloaded,
    .listener_tls_fields = gw_stream_tls_fields,
    .listen_keys = listen_keys,
    .cfg_fields = mqtt_fields,
    .metrics = gw__mqtt_metrics,
};

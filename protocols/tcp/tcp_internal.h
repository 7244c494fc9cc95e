/* tcp_internal.h: what the TCP adapter's files share: its config (listeners, each serving one
 * product), per-product authentication mode, and the connection (a stream connection plus the
 * product it speaks). */
#ifndef GW_TCP_INTERNAL_H
#define GW_TCP_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>

#include "../../config/cfg_schema.h"
#include "../../gateway/core/runtime.h"
#include "../stream/stream_conn.h"
#include "tcp_metrics.h"

typedef struct gw__tcp_cfg {
    gw_listen_list listeners;
    uint32_t login_timeout_ms;
    uint32_t idle_timeout_ms;
    uint32_t max_inflight;
    uint32_t max_frame;    /* 0: each product's own frame.max_frame */
    gw_stream_out_cfg out; /* output_* bounds */
} gw__tcp_cfg;

/* What a listener serves, resolved once at init. */
typedef struct gw__tcp_serve {
    const gw_product *product;
    uint32_t max_frame;  /* bytes a frame may take on the wire */
    uint32_t idle_ms;    /* the product's idle_timeout_ms, else the adapter's */
    bool id_every_frame; /* the layout's header has a device_id field: every frame names it */
    bool login_code;     /* logins carry an auth code (register first): a login is required */
} gw__tcp_serve;

/* A listener added by a hot reload: what it serves, its port shared by the loops, and the
 * configuration generation its product lives in (held until uninit). */
typedef struct gw__tcp_extra {
    gw__tcp_serve sv;
    gw_listen at;
    uint16_t bound;
    const gw_config *pin;
    struct gw__tcp_extra *next;
} gw__tcp_extra;

typedef struct gw__tcp_adapter {
    gw__tcp_cfg cfg;
    gw__tcp_serve *serve;    /* per listener */
    uint16_t *bound_ports;   /* per listener: the port the first loop bound (for port 0) */
    gw__tcp_extra *extra;    /* added by reloads (connections point at them: freed at uninit) */
    gw_stream_tls **tls;     /* per start-up listener: its TLS (NULL: plain) */
    gw_stream_proxy **proxy; /* per start-up listener: its "proxy_protocol" (NULL: none) */
    size_t tls_n;
    json_t *section; /* the running section (a reload compares the listeners' "tls" and
                      * "proxy_protocol") */
} gw__tcp_adapter;

typedef struct gw__tcp_conn {
    gw_stream_conn s; /* first */
    const gw__tcp_serve *sv;
    bool tls_login; /* logged in by its TLS identity (a login frame's secret is not checked) */
} gw__tcp_conn;

/* tcp_conn.c */
extern const gw_stream_ops gw__tcp_stream_ops;

#endif

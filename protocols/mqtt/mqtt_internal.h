/* mqtt_internal.h: what the MQTT adapter's files share: its config, per-loop state and the
 * connection (a gw_session plus its TCP handle, partial input, pending output and ack ring). */
#ifndef GW_MQTT_INTERNAL_H
#define GW_MQTT_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "../../config/cfg_schema.h"
#include "../../gateway/runtime.h"
#include "../../gateway/session.h"
#include "mqtt_prot.h"

typedef struct gw__mqtt_cfg {
    gw_listen_list listeners;
    uint32_t max_packet_size;
    uint32_t connect_timeout_ms;
    uint32_t max_inflight;
    uint32_t max_subscriptions;
} gw__mqtt_cfg;

typedef struct gw__mqtt_adapter {
    gw__mqtt_cfg cfg;
    uint16_t *bound_ports; /* per listener: the port loop 0 bound (for port 0) */
} gw__mqtt_adapter;

typedef struct gw__mqtt_conn gw__mqtt_conn;

typedef struct gw__mqtt_loop {
    gw_adapter *a;
    gw__mqtt_adapter *ad;
    gw_loop *loop;
    uv_tcp_t *servers;
    size_t n_servers;
    uv_timer_t sweep;
    gw__mqtt_conn *conns;  /* every connection on this loop (doubly linked) */
    gw__mqtt_conn *paused; /* stopped for back-pressure (singly linked via pnext) */
    bool stopping;
} gw__mqtt_loop;

enum { GW__MQTT_NEW, GW__MQTT_CONNECTED, GW__MQTT_CLOSING };

typedef struct gw__mqtt_sub {
    struct gw__mqtt_sub *next;
    uint16_t len;
    char filter[];
} gw__mqtt_sub;

struct gw__mqtt_conn {
    gw_session base; /* first: a gw_session * is a gw__mqtt_conn * */
    uv_tcp_t tcp;
    gw__mqtt_loop *ml;
    gw__mqtt_conn *prev, *next, *pnext;
    uint8_t *in; /* unparsed input carried between reads (allocated only while needed) */
    uint32_t in_len, in_cap, in_need;
    uint8_t *out; /* output collected this iteration, written by flush */
    uint32_t out_len, out_cap;
    uint32_t *acks; /* ring of pending acks in PUBLISH order: pid | type << 16 | ready << 24 */
    uint32_t ack_head, ack_n, ack_cap, ack_seq; /* ack_seq: sequence number of the head entry */
    uint16_t *q2_ids; /* QoS 2 packet ids awaiting PUBREL (allocated only while any) */
    uint16_t q2_n, q2_cap;
    uint64_t deadline; /* connect timeout, then keep-alive (uv_now ms); 0 = none */
    uint16_t keepalive;
    uint8_t state;
    bool reading, paused_bp, paused_inflight, pause_listed, has_will, in_list;
    uint8_t will_qos;
    char *will_topic;
    uint8_t *will_payload;
    uint16_t will_topic_len, will_payload_len;
    gw__mqtt_sub *subs;
    uint16_t n_subs;
    uint8_t prefix_len; /* length of "/{product}/{device}/" */
};

/* mqtt_conn.c */
void gw__mqtt_on_connection(uv_stream_t *server, int status);
void gw__mqtt_close(gw__mqtt_conn *c, const char *reason, bool apply_will);
void gw__mqtt_resume(gw__mqtt_conn *c);
void gw__mqtt_sweep(gw__mqtt_loop *ml);

#endif

/* mqtt_internal.h: what the MQTT adapter's files share: its config and the connection (a stream
 * connection plus subscriptions, QoS 2 ids, the last will and downstream packet ids). */
#ifndef GW_MQTT_INTERNAL_H
#define GW_MQTT_INTERNAL_H

#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "../../config/cfg_schema.h"
#include "../../gateway/runtime.h"
#include "../../gateway/session.h"
#include "../stream/stream_conn.h"
#include "mqtt_prot.h"

typedef struct gw__mqtt_cfg {
    gw_listen_list listeners;
    uint32_t max_packet_size;
    uint32_t connect_timeout_ms;
    uint32_t max_inflight;
    uint32_t max_subscriptions;
    gw_stream_out_cfg out; /* output_* bounds */
} gw__mqtt_cfg;

typedef struct gw__mqtt_adapter {
    gw__mqtt_cfg cfg;
    uint16_t *bound_ports; /* per listener: the port loop 0 bound (for port 0) */
} gw__mqtt_adapter;

typedef struct gw__mqtt_sub {
    struct gw__mqtt_sub *next;
    uint16_t len;
    uint8_t qos; /* granted */
    char filter[];
} gw__mqtt_sub;

/* A device connection: the stream connection (session, TCP handle, input, output, acks) plus
 * what MQTT adds. */
typedef struct gw__mqtt_conn {
    gw_stream_conn s; /* first */
    uint16_t *q2_ids; /* QoS 2 packet ids awaiting PUBREL (allocated only while any) */
    uint16_t q2_n, q2_cap;
    uint16_t keepalive;
    bool has_will;
    uint8_t will_qos;
    char *will_topic;
    uint8_t *will_payload;
    uint16_t will_topic_len, will_payload_len;
    gw__mqtt_sub *subs;
    uint16_t n_subs;
    uint8_t prefix_len; /* length of "/{product}/{device}/" */
    uint16_t next_pid;  /* packet id of the last downstream QoS 1 PUBLISH (commands) */
} gw__mqtt_conn;

/* mqtt_conn.c */
extern const gw_stream_ops gw__mqtt_stream_ops;

#endif

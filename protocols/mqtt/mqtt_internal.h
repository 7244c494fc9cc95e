/* mqtt_internal.h: what the MQTT adapter's files share: its config, the session state
 * (subscriptions and QoS 2 ids, kept per device across connections for clean_session=0) and the
 * connection (a stream connection plus its session state, the last will and downstream packet ids).
 */
#ifndef GW_MQTT_INTERNAL_H
#define GW_MQTT_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "../../config/cfg_schema.h"
#include "../../gateway/core/runtime.h"
#include "../../gateway/core/session.h"
#include "../stream/stream_conn.h"
#include "mqtt_metrics.h"
#include "mqtt_prot.h"

typedef struct gw__mqtt_cfg {
    gw_listen_list listeners;
    uint32_t max_packet_size;
    uint32_t connect_timeout_ms;
    uint32_t max_inflight;
    uint32_t max_subscriptions;
    uint32_t session_expiry_s; /* a clean_session=0 session is kept this long after disconnect */
    uint32_t topic_alias_max;  /* MQTT 5: topic aliases a connection may set (CONNACK) */
    uint32_t keepalive_max_s;  /* MQTT 5: 0, or the server keep alive imposed above it */
    gw_stream_out_cfg out;     /* output_* bounds */
} gw__mqtt_cfg;

typedef struct gw__mqtt_sub {
    struct gw__mqtt_sub *next;
    uint16_t len;
    uint8_t qos; /* granted */
    char filter[];
} gw__mqtt_sub;

/* What MQTT 3.1.1 keeps of a session: the subscriptions (at most max_subscriptions) and the QoS 2
 * packet ids received and awaiting PUBREL (at most max_inflight). A clean_session=1 connection
 * has its own, freed with it; a clean_session=0 device's is stored in the adapter's per-device
 * table (gw__mqtt_stored) and outlives its connections until session_expiry_s after the last one
 * ends. Every field is read and written under the device's stripe lock (gw__mqtt_sessions.mu). */
typedef struct gw__mqtt_state {
    gw__mqtt_sub *subs;
    uint16_t *q2_ids; /* allocated only while any */
    uint16_t n_subs, q2_n, q2_cap;
    bool stored; /* the st of a gw__mqtt_stored (else embedded in its connection) */
} gw__mqtt_state;

/* A stored session: the state plus what the store keeps of it (not in every connection). */
typedef struct gw__mqtt_stored {
    gw__mqtt_state st; /* first */
    bool in_table;     /* the device's current stored session (false once discarded) */
    uint32_t users;    /* connections using it; 0: detached, on the stripe's expiry list */
    uint32_t dev_index;
    uint32_t expiry_s;   /* kept this long once detached (session_expiry_s, or MQTT 5's interval) */
    uint64_t expires_ms; /* monotonic ms (uv_hrtime), while detached */
    struct gw__mqtt_stored *dprev, *dnext; /* the stripe's detached list */
} gw__mqtt_stored;

static inline gw__mqtt_stored *gw__mqtt_stored_of(gw__mqtt_state *st)
{
    return (gw__mqtt_stored *)st; /* (st->stored) */
}

#define GW__MQTT_STRIPES 64

/* The stored sessions of clean_session=0 devices: one slot per configured device, shared by every
 * loop (a reconnect may land on any loop), striped locks by device index. */
typedef struct gw__mqtt_sessions {
    pthread_mutex_t mu[GW__MQTT_STRIPES];
    gw__mqtt_stored **by_dev; /* [n_devices] */
    gw__mqtt_stored *detached[GW__MQTT_STRIPES];
    size_t n_devices;
    uint32_t expiry_s;
    uv_timer_t sweep; /* on loop 0: frees expired sessions */
    bool sweep_on, inited;
} gw__mqtt_sessions;

typedef struct gw__mqtt_adapter {
    gw__mqtt_cfg cfg;
    uint16_t *bound_ports;   /* per listener: the port loop 0 bound (for port 0) */
    gw_stream_tls **tls;     /* per listener: its TLS (NULL: plain) */
    gw_stream_proxy **proxy; /* per listener: its "proxy_protocol" (NULL: none) */
    gw__mqtt_sessions sessions;
} gw__mqtt_adapter;

/* A device connection: the stream connection (session, TCP handle, input, output, acks) plus
 * what MQTT adds. */
typedef struct gw__mqtt_conn {
    gw_stream_conn s;           /* first */
    gw__mqtt_state own;         /* the session state of a clean_session=1 connection */
    gw__mqtt_state *st;         /* &own or a stored session; NULL before CONNECT and once closing */
    pthread_mutex_t *mu;        /* the device's stripe lock, guarding *st */
    struct gw__mqtt_will *will; /* the last will (kept until the connection is freed) */
    uint16_t keepalive;
    bool has_will;      /* the will applies (a clean DISCONNECT or its use clears it) */
    uint8_t prefix_len; /* length of "/{product}/{device}/" */
    /* MQTT 5 (version 5); for 3.1/3.1.1 only version is set */
    uint8_t version;         /* the CONNECT's protocol level: 3, 4 or 5 */
    bool problem_info;       /* reason strings allowed in acks (Request Problem Information) */
    bool expiry_zero;        /* CONNECT's session expiry was 0 (DISCONNECT may not raise it) */
    uint16_t next_pid;       /* packet id of the last downstream QoS 1 PUBLISH (commands) */
    uint16_t out_max;        /* the client's receive maximum: QoS 1 commands unacknowledged */
    uint16_t out_inflight;   /* QoS 1 commands sent and not PUBACKed */
    uint16_t alias_max;      /* topic aliases granted (CONNACK) */
    uint32_t out_max_packet; /* the client's maximum packet size (0: no limit) */
    struct gw__mqtt_v5x *x;  /* MQTT 5's aliases and queued reason strings (at the first need) */
} gw__mqtt_conn;

/* A last will: topic (NUL-terminated) and payload in one allocation. */
typedef struct gw__mqtt_will {
    uint16_t topic_len, payload_len;
    uint8_t qos;
    char topic[]; /* then the payload, at topic + topic_len + 1 */
} gw__mqtt_will;

/* An inbound topic alias: only the device's own topics up to GW__MQTT_ALIAS_TOPIC_MAX bytes are
 * kept (refused: an alias to any other topic, whose later uses are refused 0x87 like it). */
#define GW__MQTT_ALIAS_TOPIC_MAX 256
typedef struct gw__mqtt_alias {
    char *topic;
    uint16_t len;
    bool refused;
} gw__mqtt_alias;

/* A reason string for a queued v5 ack (ack entry flag GW__MQTT_ACK_RS): taken in ack order. */
typedef struct gw__mqtt_rs {
    struct gw__mqtt_rs *next;
    uint16_t len;
    char s[];
} gw__mqtt_rs;

/* What only some MQTT 5 connections need, allocated at the first topic alias or queued reason
 * string: the reason strings of acks waiting for their turn, and the aliases [alias_max]. */
typedef struct gw__mqtt_v5x {
    gw__mqtt_rs *rs_head;
    uint16_t n_aliases; /* alias_max when allocated */
    gw__mqtt_alias aliases[];
} gw__mqtt_v5x;

/* Ack ring entry: packet id | type << 16 | reason code << 20 | GW__MQTT_ACK_RS. */
#define GW__MQTT_ACK_RS (1u << 28)

/* mqtt_conn.c */
extern const gw_stream_ops gw__mqtt_stream_ops;

/* mqtt_session.c. init/free: main thread (adapter init/uninit); free also frees every stored
 * session. start/stop: on loop 0 (the expiry sweep). */
int gw__mqtt_sessions_init(gw__mqtt_sessions *ss, size_t n_devices, uint32_t expiry_s);
void gw__mqtt_sessions_free(gw__mqtt_sessions *ss);
void gw__mqtt_sessions_start(gw__mqtt_sessions *ss, gw_loop *loop);
void gw__mqtt_sessions_stop(gw__mqtt_sessions *ss, gw_loop *loop);
/* At CONNECT: clean_session=0 takes the device's stored session (creating one; *present = true
 * when one was resumed), clean_session=1 discards it and uses its own. Sets c->st and c->mu.
 * GW_ENOMEM when a new stored session cannot be allocated. */
int gw__mqtt_session_attach(gw__mqtt_sessions *ss, gw__mqtt_conn *c, uint32_t dev_index, bool clean,
                            bool *present);
/* MQTT 5 (clean start and session expiry interval): discard drops the stored session; then one is
 * resumed if there (its expiry becomes expiry_s), else created when expiry_s > 0, else the
 * connection uses its own. */
int gw__mqtt_session_attach5(gw__mqtt_sessions *ss, gw__mqtt_conn *c, uint32_t dev_index,
                             bool discard, uint32_t expiry_s, bool *present);
/* The connection ends (its closing hook, on its loop): a stored session is left for the next
 * connection and expires session_expiry_s later; its own state is freed. c->st = NULL. */
void gw__mqtt_session_detach(gw__mqtt_sessions *ss, gw__mqtt_conn *c);
/* Frees the subscriptions and ids of a state (not the state). Lock held or state private. */
void gw__mqtt_state_clear(gw__mqtt_state *st);

#endif

/* mqtt_metrics.h: the MQTT adapter's metrics: its list, the handles the call sites count with
 * (set when the table gw__mqtt_metrics is registered) and the table, defined in mqtt.c. */
#ifndef GW_MQTT_METRICS_H
#define GW_MQTT_METRICS_H

#include "../../gateway/util/metrics.h"

/* X(handle, "prometheus name without iotgw_", "help") */
#define GW_MQTT_METRICS(X)                                                                         \
    X(GW_M_MQTT_CONNECT_TIMEOUT, "mqtt_connect_timeouts_total",                                    \
      "connections closed before CONNECT")                                                         \
    X(GW_M_MQTT_KEEPALIVE, "mqtt_keepalive_timeouts_total",                                        \
      "sessions closed by keep-alive expiry")                                                      \
    X(GW_M_MQTT_TAKEOVER, "mqtt_takeovers_total", "sessions taken over by a new connection")       \
    X(GW_M_MQTT_WILLS, "mqtt_wills_total", "last wills applied")                                   \
    X(GW_M_MQTT_AUTH_BAD_CRED, "mqtt_auth_failures_total{reason=\"bad_credentials\"}",             \
      "CONNECTs refused: bad credentials, unknown device, identifier rejected")                    \
    X(GW_M_MQTT_AUTH_UNKNOWN, "mqtt_auth_failures_total{reason=\"unknown_device\"}", NULL)         \
    X(GW_M_MQTT_AUTH_CLIENTID, "mqtt_auth_failures_total{reason=\"identifier_rejected\"}", NULL)   \
    X(GW_M_MQTT_AUTH_CERT, "mqtt_auth_failures_total{reason=\"certificate\"}", NULL)               \
    X(GW_M_MQTT_ACL_PUB, "mqtt_acl_denied_total{op=\"publish\"}",                                  \
      "publishes or subscriptions outside the device's topics")                                    \
    X(GW_M_MQTT_ACL_SUB, "mqtt_acl_denied_total{op=\"subscribe\"}", NULL)                          \
    X(GW_M_MQTT_SESSIONS_STORED, "mqtt_sessions_stored",                                           \
      "clean_session=0 sessions kept for their devices, connected or not (gauge)")                 \
    X(GW_M_MQTT_SESSIONS_RESUMED, "mqtt_sessions_resumed_total",                                   \
      "CONNECTs that resumed a stored session (session present)")                                  \
    X(GW_M_MQTT_SESSIONS_EXPIRED, "mqtt_sessions_expired_total",                                   \
      "stored sessions freed session_expiry_s after their last connection")                        \
    X(GW_M_MQTT_OUTPUT_PAUSED, "output_paused_total{adapter=\"mqtt\"}",                            \
      "times a connection stopped being read because its unsent output passed output_high_water")  \
    X(GW_M_MQTT_OUTPUT_OVERFLOW, "output_overflow_total{adapter=\"mqtt\"}",                        \
      "connections closed because their output passed output_hard_limit or stalled")               \
    X(GW_M_MQTT_V5_CONNECTS, "mqtt_connects_total{version=\"5\"}",                                 \
      "accepted CONNECTs by protocol version")                                                     \
    X(GW_M_MQTT_V4_CONNECTS, "mqtt_connects_total{version=\"3.1.1\"}", NULL)                       \
    X(GW_M_MQTT_V5_PUB_REFUSED, "mqtt5_publish_refused_total",                                     \
      "MQTT 5 PUBLISHes answered with an error reason code (PUBACK/PUBREC >= 0x80)")

GW_MQTT_METRICS(GW_METRIC_HANDLE_DECL)
/* MQTT protocol errors, one labelled counter each: X(enum, "label") */
#define GW_MQTT_ERRORS(X)                                                                          \
    X(GW_MQTT_E_REMAINING_LENGTH, "bad_remaining_length")                                          \
    X(GW_MQTT_E_UTF8, "invalid_utf8")                                                              \
    X(GW_MQTT_E_WILDCARD, "wildcard_topic")                                                        \
    X(GW_MQTT_E_BEFORE_CONNECT, "packet_before_connect")                                           \
    X(GW_MQTT_E_OVERSIZED, "oversized_packet")                                                     \
    X(GW_MQTT_E_MALFORMED, "malformed_packet")                                                     \
    X(GW_MQTT_E_SERVER_ONLY, "server_only_packet")                                                 \
    X(GW_MQTT_E_CONNECT_TWICE, "connect_twice")                                                    \
    X(GW_MQTT_E_BAD_PROTOCOL, "bad_protocol")                                                      \
    X(GW_MQTT_E_BAD_PROPERTY, "bad_property")                                                      \
    X(GW_MQTT_E_TOPIC_ALIAS, "topic_alias_invalid")                                                \
    X(GW_MQTT_E_PROTOCOL, "protocol_error")

typedef enum gw_mqtt_error {
#define GW_MQTT_E_ENUM(e, label) e,
    GW_MQTT_ERRORS(GW_MQTT_E_ENUM)
#undef GW_MQTT_E_ENUM
        GW_MQTT_E__COUNT
} gw_mqtt_error;

/* The id of the first mqtt_protocol_errors_total sample; the others follow in gw_mqtt_error order.
 */
extern gw_metric gw__mqtt_error_base;

static inline void gw_metric_mqtt_error(gw_mqtt_error e)
{
    gw_metric_add((gw_metric)(gw__mqtt_error_base + (int)e), 1);
}

extern const gw_metric_def gw__mqtt_metrics[];

#endif

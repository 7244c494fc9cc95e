/* metrics.h: the gateway's named counters and gauges. Threads add to their own cache-line shard
 * (no contention on the hot path); readers sum the shards. Exported by the admin endpoint. */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "reject.h"

/* The CoAP adapter's counters (README "CoAP device contract"). */
#define GW_COAP_METRICS(X)                                                                         \
    X(GW_M_COAP_DATAGRAMS, "coap_datagrams_total", "CoAP datagrams received")                      \
    X(GW_M_COAP_REQUESTS, "coap_requests_total", "CoAP requests received (duplicates included)")   \
    X(GW_M_COAP_MALFORMED, "coap_dropped_total{reason=\"malformed\"}", NULL)                       \
    X(GW_M_COAP_DEDUP, "coap_dedup_hits_total", "retransmitted requests answered from the cache")  \
    X(GW_M_COAP_BLOCK_REFUSED, "coap_block_refused_total", "payloads refused with 4.13")           \
    X(GW_M_COAP_SEPARATE, "coap_separate_responses_total", "answers sent after an empty ACK")      \
    X(GW_M_COAP_BUSY, "coap_busy_total", "requests answered 5.03 (store queue full)")              \
    X(GW_M_COAP_AUTH_BAD, "coap_auth_failures_total{reason=\"bad_token\"}", NULL)                  \
    X(GW_M_COAP_AUTH_UNKNOWN, "coap_auth_failures_total{reason=\"unknown_device\"}", NULL)         \
    X(GW_M_COAP_OBSERVERS, "coap_observers", "devices observing function/invoke (gauge)")          \
    X(GW_M_COAP_OBSERVERS_DROPPED, "coap_observers_dropped_total",                                 \
      "observers dropped (no ACK or RST)")                                                         \
    X(GW_M_COAP_NOTIFICATIONS, "coap_notifications_total", "command notifications sent")           \
    X(GW_M_COAP_IDLE, "coap_idle_timeouts_total", "CoAP sessions ended by the idle timeout")       \
    X(GW_M_COAP_TAKEOVER, "coap_takeovers_total", "CoAP sessions moved to another loop")           \
    X(GW_M_COAP_DTLS_FAILED, "coap_dtls_handshake_failures_total",                                 \
      "DTLS handshakes failed after the cookie (bad PSK, unknown identity, timeout)")              \
    X(GW_M_COAP_DTLS_HVR, "coap_dtls_hello_verify_total",                                          \
      "ClientHellos without a valid cookie answered statelessly (HelloVerifyRequest)")             \
    X(GW_M_COAP_DTLS_REFUSED_MAX, "coap_dtls_refused_total{reason=\"max_dtls_peers\"}",            \
      "ClientHellos with a valid cookie refused because the loop has max_dtls_peers")              \
    X(GW_M_COAP_DTLS_PEERS, "coap_dtls_peers",                                                     \
      "DTLS peers: handshakes past the cookie and established sessions (gauge)")                   \
    X(GW_M_COAP_DTLS_DEV_CAP, "coap_dtls_peers_closed_total{reason=\"per_device\"}",               \
      "older DTLS peers of a device closed by max_dtls_peers_per_device")                          \
    X(GW_M_COAP_R_204, "coap_responses_total{code=\"2.04\"}", NULL)                                \
    X(GW_M_COAP_R_205, "coap_responses_total{code=\"2.05\"}", NULL)                                \
    X(GW_M_COAP_R_231, "coap_responses_total{code=\"2.31\"}", NULL)                                \
    X(GW_M_COAP_R_400, "coap_responses_total{code=\"4.00\"}", NULL)                                \
    X(GW_M_COAP_R_401, "coap_responses_total{code=\"4.01\"}", NULL)                                \
    X(GW_M_COAP_R_402, "coap_responses_total{code=\"4.02\"}", NULL)                                \
    X(GW_M_COAP_R_404, "coap_responses_total{code=\"4.04\"}", NULL)                                \
    X(GW_M_COAP_R_405, "coap_responses_total{code=\"4.05\"}", NULL)                                \
    X(GW_M_COAP_R_408, "coap_responses_total{code=\"4.08\"}", NULL)                                \
    X(GW_M_COAP_R_413, "coap_responses_total{code=\"4.13\"}", NULL)                                \
    X(GW_M_COAP_R_415, "coap_responses_total{code=\"4.15\"}", NULL)                                \
    X(GW_M_COAP_R_500, "coap_responses_total{code=\"5.00\"}", NULL)                                \
    X(GW_M_COAP_R_503, "coap_responses_total{code=\"5.03\"}", NULL)                                \
    X(GW_M_COAP_CON_UNTRACKED, "coap_con_untracked_total{reason=\"output_overflow\"}",             \
      "CONs sent once without a retransmission copy (session or loop bound reached)")

/* Plain counters and gauges: X(enum, "prometheus name without iotgw_", "help") */
#define GW_METRICS(X)                                                                              \
    X(GW_M_CONN_ACCEPTED, "connections_accepted_total", "TCP connections accepted")                \
    X(GW_M_CONN_ACTIVE, "connections_active", "open device connections (gauge)")                   \
    X(GW_M_CONN_REFUSED, "connections_refused_total", "connections refused over max_connections")  \
    X(GW_M_LIMITED_PER_SOURCE, "connections_limited_total{reason=\"per_source\"}",                 \
      "connections refused by a per-source limit")                                                 \
    X(GW_M_LIMITED_RATE, "connections_limited_total{reason=\"connect_rate\"}", NULL)               \
    X(GW_M_LIMITED_BACKOFF, "connections_limited_total{reason=\"auth_backoff\"}", NULL)            \
    X(GW_M_LIMITED_TABLE_FULL, "connections_limited_total{reason=\"source_table_full\"}", NULL)    \
    X(GW_M_AUTH_BACKOFFS, "auth_backoffs_total",                                                   \
      "sources put in (or kept in) an authentication back-off")                                    \
    X(GW_M_MSG_RECEIVED, "messages_received_total", "device messages received")                    \
    X(GW_M_MSG_ACCEPTED, "messages_accepted_total", "device messages validated and queued")        \
    X(GW_M_EV_COMMITTED, "events_committed_total", "events committed to SQLite")                   \
    X(GW_M_STORE_BATCHES, "store_batches_total", "store transactions committed")                   \
    X(GW_M_STORE_STATE_WRITES, "store_state_writes_total",                                         \
      "transactions that wrote the device and property state noted since the last one")            \
    X(GW_M_STORE_STATE_UNWRITTEN, "store_state_unwritten",                                         \
      "committed events whose device/property state is not written yet (gauge)")                   \
    X(GW_M_STORE_STATE_REPLAYED, "store_state_replayed_total",                                     \
      "events whose state was replayed at start-up (committed after the last state write)")        \
    X(GW_M_STORE_DEPTH, "store_queue_depth", "events waiting for the store writer (gauge)")        \
    X(GW_M_STORE_BACKPRESSURE, "store_backpressure_total",                                         \
      "reads paused because the store queue was full")                                             \
    X(GW_M_STORE_ERRORS, "store_errors_total", "failed store transactions")                        \
    X(GW_M_STORE_FAIL_FULL, "store_commit_failures_total{reason=\"full\"}",                        \
      "failed store transactions by SQLite error: full, ioerr, busy, corrupt, other")              \
    X(GW_M_STORE_FAIL_IOERR, "store_commit_failures_total{reason=\"ioerr\"}", NULL)                \
    X(GW_M_STORE_FAIL_BUSY, "store_commit_failures_total{reason=\"busy\"}", NULL)                  \
    X(GW_M_STORE_FAIL_CORRUPT, "store_commit_failures_total{reason=\"corrupt\"}", NULL)            \
    X(GW_M_STORE_FAIL_OTHER, "store_commit_failures_total{reason=\"other\"}", NULL)                \
    X(GW_M_DEVICES_ONLINE, "devices_online", "devices with an open session (gauge)")               \
    X(GW_M_LOG_SUPPRESSED, "log_suppressed_total",                                                 \
      "log lines suppressed by the per-thread, per-call-site rate limit (log_rate_limit)")         \
    X(GW_M_MQTT_CONNECT_TIMEOUT, "mqtt_connect_timeouts_total",                                    \
      "connections closed before CONNECT")                                                         \
    X(GW_M_MQTT_KEEPALIVE, "mqtt_keepalive_timeouts_total",                                        \
      "sessions closed by keep-alive expiry")                                                      \
    X(GW_M_MQTT_TAKEOVER, "mqtt_takeovers_total", "sessions taken over by a new connection")       \
    X(GW_M_MQTT_WILLS, "mqtt_wills_total", "last wills applied")                                   \
    X(GW_M_MQTT_AUTH_BAD_CRED, "mqtt_auth_failures_total{reason=\"bad_credentials\"}", NULL)       \
    X(GW_M_MQTT_AUTH_UNKNOWN, "mqtt_auth_failures_total{reason=\"unknown_device\"}", NULL)         \
    X(GW_M_MQTT_AUTH_CLIENTID, "mqtt_auth_failures_total{reason=\"identifier_rejected\"}", NULL)   \
    X(GW_M_MQTT_ACL_PUB, "mqtt_acl_denied_total{op=\"publish\"}", NULL)                            \
    X(GW_M_MQTT_ACL_SUB, "mqtt_acl_denied_total{op=\"subscribe\"}", NULL)                          \
    X(GW_M_MQTT_SESSIONS_STORED, "mqtt_sessions_stored",                                           \
      "clean_session=0 sessions kept for their devices, connected or not (gauge)")                 \
    X(GW_M_MQTT_SESSIONS_RESUMED, "mqtt_sessions_resumed_total",                                   \
      "CONNECTs that resumed a stored session (session present)")                                  \
    X(GW_M_MQTT_SESSIONS_EXPIRED, "mqtt_sessions_expired_total",                                   \
      "stored sessions freed session_expiry_s after their last connection")                        \
    X(GW_M_TCP_FRAMES, "tcp_frames_total", "TCP frames received (decoded or not)")                 \
    X(GW_M_TCP_BAD_OVERSIZED, "tcp_bad_frames_total{reason=\"oversized\"}", NULL)                  \
    X(GW_M_TCP_BAD_GARBAGE, "tcp_bad_frames_total{reason=\"garbage\"}", NULL)                      \
    X(GW_M_TCP_BAD_CHECK, "tcp_bad_frames_total{reason=\"bad_check\"}", NULL)                      \
    X(GW_M_TCP_BAD_UNDECODABLE, "tcp_bad_frames_total{reason=\"undecodable\"}", NULL)              \
    X(GW_M_TCP_BAD_DEVICE, "tcp_bad_frames_total{reason=\"device_mismatch\"}", NULL)               \
    X(GW_M_TCP_BAD_INCOMPLETE, "tcp_bad_frames_total{reason=\"incomplete\"}", NULL)                \
    X(GW_M_TCP_BAD_AUTH, "tcp_bad_frames_total{reason=\"bad_auth\"}", NULL)                        \
    X(GW_M_TCP_LOGIN_UNKNOWN, "tcp_login_failures_total{reason=\"unknown_device\"}", NULL)         \
    X(GW_M_TCP_LOGIN_SECRET, "tcp_login_failures_total{reason=\"bad_secret\"}", NULL)              \
    X(GW_M_TCP_LOGIN_NONE, "tcp_login_failures_total{reason=\"not_a_login\"}", NULL)               \
    X(GW_M_TCP_LOGIN_TIMEOUT, "tcp_login_timeouts_total", "connections closed before a login")     \
    X(GW_M_TCP_IDLE, "tcp_idle_timeouts_total", "TCP sessions closed by the idle timeout")         \
    X(GW_M_TCP_TAKEOVER, "tcp_takeovers_total", "TCP sessions taken over by a new connection")     \
    X(GW_M_MQTT_OUTPUT_PAUSED, "output_paused_total{adapter=\"mqtt\"}",                            \
      "times a connection stopped being read because its unsent output passed output_high_water")  \
    X(GW_M_TCP_OUTPUT_PAUSED, "output_paused_total{adapter=\"tcp\"}", NULL)                        \
    X(GW_M_MQTT_OUTPUT_OVERFLOW, "output_overflow_total{adapter=\"mqtt\"}",                        \
      "connections closed because their output passed output_hard_limit or stalled")               \
    X(GW_M_TCP_OUTPUT_OVERFLOW, "output_overflow_total{adapter=\"tcp\"}", NULL)                    \
    X(GW_M_UDP_DATAGRAMS, "udp_datagrams_total", "UDP datagrams received")                         \
    X(GW_M_UDP_DROP_OVERSIZED, "udp_dropped_total{reason=\"oversized\"}", NULL)                    \
    X(GW_M_UDP_DROP_MALFORMED, "udp_dropped_total{reason=\"malformed\"}", NULL)                    \
    X(GW_M_UDP_DROP_UNKNOWN, "udp_dropped_total{reason=\"unknown_device\"}", NULL)                 \
    X(GW_M_UDP_DROP_BAD_AUTH, "udp_dropped_total{reason=\"bad_auth\"}", NULL)                      \
    X(GW_M_UDP_DROP_BAD_CHECK, "udp_dropped_total{reason=\"bad_check\"}", NULL)                    \
    X(GW_M_UDP_DROP_REPLAY, "udp_dropped_total{reason=\"replay\"}", NULL)                          \
    X(GW_M_UDP_IDLE, "udp_idle_timeouts_total", "UDP sessions ended by the idle timeout")          \
    X(GW_M_UDP_TAKEOVER, "udp_takeovers_total", "UDP sessions moved to another loop")              \
    X(GW_M_DGRAM_OUTPUT_DROPPED, "dgram_output_dropped_total{reason=\"output_overflow\"}",         \
      "UDP/CoAP datagrams not sent: the loop's queue of unsendable datagrams was at its bound")    \
    X(GW_M_NORTH_CONNECTED, "north_connected", "1 while the upstream broker link is up (gauge)")   \
    X(GW_M_NORTH_RECONNECTS, "north_reconnects_total",                                             \
      "upstream connection attempts after the "                                                    \
      "first")                                                                                     \
    X(GW_M_NORTH_FORWARDED, "north_forwarded_total", "events acknowledged by the upstream broker") \
    X(GW_M_NORTH_PUBLISHED, "north_published_total", "upstream publishes sent (incl. resends)")    \
    X(GW_M_NORTH_INFLIGHT, "north_inflight", "upstream publishes awaiting PUBACK (gauge)")         \
    X(GW_M_NORTH_QUEUED, "north_queued", "events in the outbox, not yet forwarded (gauge)")        \
    X(GW_M_NORTH_PUBLISH_ERRORS, "north_publish_errors_total",                                     \
      "upstream publishes that failed locally (retried)")                                          \
    X(GW_M_NORTH_DROPPED, "north_dropped_total",                                                   \
      "unforwarded events dropped by outbox_policy drop_oldest")                                   \
    X(GW_M_NORTH_OUTBOX_FULL, "north_outbox_full_total",                                           \
      "times the outbox budget was reached (back-pressure applied)")                               \
    X(GW_M_NORTH_PUBACK_TIMEOUTS, "north_puback_timeouts_total",                                   \
      "upstream links dropped for want of a PUBACK within north.puback_timeout_ms")                \
    X(GW_M_STORE_RETAINED_DELETED, "store_retention_deleted_total",                                \
      "forwarded events deleted by retention or the disk budget")                                  \
    X(GW_M_CMD_RECEIVED, "commands_received_total", "commands received from upstream")             \
    X(GW_M_CMD_SENT, "commands_sent_total", "commands sent to devices")                            \
    X(GW_M_CMD_REPLIED, "commands_replied_total", "device replies matched to a pending command")   \
    X(GW_M_CMD_REJECTED, "commands_rejected_total", "commands refused before sending")             \
    X(GW_M_CMD_OFFLINE, "commands_offline_total", "commands answered 'device offline'")            \
    X(GW_M_CMD_QUEUED, "commands_queued_total", "commands queued for an offline device")           \
    X(GW_M_CMD_EXPIRED, "commands_expired_total", "queued commands whose TTL ran out")             \
    X(GW_M_CMD_TIMEOUT, "commands_timeouts_total", "commands with no reply in timeout_ms")         \
    X(GW_M_CMD_LATE, "commands_late_replies_total", "replies matching no pending command")         \
    X(GW_M_CMD_PENDING, "commands_pending", "commands awaiting a reply or a session (gauge)")      \
    GW_COAP_METRICS(X)

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
    X(GW_MQTT_E_BAD_PROTOCOL, "bad_protocol")

typedef enum gw_mqtt_error {
#define GW_MQTT_E_ENUM(e, label) e,
    GW_MQTT_ERRORS(GW_MQTT_E_ENUM)
#undef GW_MQTT_E_ENUM
        GW_MQTT_E__COUNT
} gw_mqtt_error;

typedef enum gw_metric {
#define GW_M_ENUM(e, name, help) e,
    GW_METRICS(GW_M_ENUM)
#undef GW_M_ENUM
        GW_M__PLAIN_END,
    GW_M__REJECT_BASE = GW_M__PLAIN_END,
    GW_M__MQTT_ERR_BASE = GW_M__REJECT_BASE + GW_R__COUNT,
    GW_M__COUNT = GW_M__MQTT_ERR_BASE + GW_MQTT_E__COUNT
} gw_metric;

#define GW_METRIC_SHARDS 16

typedef struct gw_metric_shard {
    _Alignas(64) int64_t v[GW_M__COUNT];
} gw_metric_shard;

extern gw_metric_shard gw_metric_shards[GW_METRIC_SHARDS];
extern _Thread_local unsigned gw_metric_shard_id;

/* Each thread that counts calls this once with a distinct id (loops 1..n, writer, main 0). */
void gw_metrics_thread_init(unsigned id);

static inline void gw_metric_add(gw_metric m, int64_t n)
{
    __atomic_fetch_add(&gw_metric_shards[gw_metric_shard_id].v[m], n, __ATOMIC_RELAXED);
}
static inline void gw_metric_inc(gw_metric m)
{
    gw_metric_add(m, 1);
}
static inline void gw_metric_reject(gw_reason r)
{
    gw_metric_add((gw_metric)(GW_M__REJECT_BASE + (int)r), 1);
}
static inline void gw_metric_mqtt_error(gw_mqtt_error e)
{
    gw_metric_add((gw_metric)(GW_M__MQTT_ERR_BASE + (int)e), 1);
}

int64_t gw_metric_get(gw_metric m);

/* Prometheus text exposition of every metric into buf; returns the length (truncated at cap). */
size_t gw_metrics_render(char *buf, size_t cap);

#endif

/* metrics.h: the gateway's named counters and gauges: the core's (an enum, below) and those each
 * adapter registers (its own table, gw_metrics_register). Threads add to their own cache-line
 * shard (no contention on the hot path); readers sum the shards. Exported by the admin endpoint
 * with # HELP and # TYPE lines (a name ending in _total is a counter, any other a gauge). */
#ifndef GW_METRICS_H
#define GW_METRICS_H

#include <stddef.h>
#include <stdint.h>

#include "reject.h"

/* The core's counters and gauges: X(enum, "prometheus name without iotgw_", "help"); help NULL:
 * the help of another sample of the same family. */
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
    X(GW_M_SECRET_CACHED, "device_secret_checks_total{path=\"cache\"}",                            \
      "hashed device secrets checked: from the verified-secret cache, or by PBKDF2")               \
    X(GW_M_SECRET_PBKDF2, "device_secret_checks_total{path=\"pbkdf2\"}", NULL)                     \
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
    X(GW_M_STORE_DEPTH_MAX, "store_queue_depth_max",                                               \
      "the store queue's highest depth since start-up (gauge)")                                    \
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
    X(GW_M_NORTH_CLUSTER_LEFT, "north_cluster_left_total",                                         \
      "cloud commands left to the instance that holds (or last held) the device (north.cluster)")  \
    X(GW_M_NORTH_PRESENCE, "north_presence_published_total",                                       \
      "retained device presence messages published (north.cluster)")                               \
    X(GW_M_NORTH_PRESENCE_READ, "north_presence_read_total",                                       \
      "device presence messages read from the broker, retained ones included (north.cluster)")     \
    X(GW_M_NORTH_CLUSTER_REFUSED, "north_cluster_refused_total",                                   \
      "presence or instance messages ignored: unknown device, bad payload, peer table full")       \
    X(GW_M_NORTH_PROTOCOL_ERRORS, "north_protocol_errors_total",                                   \
      "upstream links dropped for a malformed, unexpected or oversized packet from the broker")    \
    X(GW_M_STORE_RETAINED_DELETED, "store_retention_deleted_total",                                \
      "forwarded events deleted by retention or the disk budget")                                  \
    X(GW_M_CMD_RECEIVED, "commands_received_total", "commands received (upstream and API)")        \
    X(GW_M_CMD_SENT, "commands_sent_total", "commands sent to devices")                            \
    X(GW_M_CMD_REPLIED, "commands_replied_total", "device replies matched to a pending command")   \
    X(GW_M_CMD_REJECTED, "commands_rejected_total", "commands refused before sending")             \
    X(GW_M_CMD_OFFLINE, "commands_offline_total", "commands answered 'device offline'")            \
    X(GW_M_CMD_QUEUED, "commands_queued_total", "commands queued for an offline device")           \
    X(GW_M_CMD_EXPIRED, "commands_expired_total", "queued commands whose TTL ran out")             \
    X(GW_M_CMD_TIMEOUT, "commands_timeouts_total", "commands with no reply in timeout_ms")         \
    X(GW_M_CMD_LATE, "commands_late_replies_total", "replies matching no pending command")         \
    X(GW_M_CMD_PENDING, "commands_pending", "commands awaiting a reply or a session (gauge)")

typedef enum gw_metric {
    GW_M__UNREGISTERED, /* a handle whose table is not registered: counted, never shown */
#define GW_M_ENUM(e, name, help) e,
    GW_METRICS(GW_M_ENUM)
#undef GW_M_ENUM
        GW_M__PLAIN_END,
    GW_M__REJECT_BASE = GW_M__PLAIN_END,
    GW_M__CORE_END = GW_M__REJECT_BASE + GW_R__COUNT, /* adapters' metrics from here */
    GW_M__MAX = 512                                   /* every metric: the shard size */
} gw_metric;

/* One metric of an adapter's table (ended by name NULL): the handle to set at registration
 * (NULL for none), the Prometheus name without iotgw_ (labels included) and the help (NULL: the
 * family's). */
typedef struct gw_metric_def {
    gw_metric *id;
    const char *name;
    const char *help;
} gw_metric_def;

/* X-macro helpers for an adapter's list X(handle, "name", "help"): declare the handles (header),
 * define them (one .c file) and build the table. */
#define GW_METRIC_HANDLE_DECL(e, name, help) extern gw_metric e;
#define GW_METRIC_HANDLE_DEF(e, name, help)  gw_metric e = GW_M__UNREGISTERED;
#define GW_METRIC_DEF(e, name, help)         {&e, name, help},

/* Registers a table: consecutive ids, each written to its handle. Main thread, before the loops
 * run (the registry registers every built-in adapter's table at start; an adapter's init may call
 * it again: a table registers once). 0, or GW_ENOMEM when GW_M__MAX would be passed. */
int gw_metrics_register(const gw_metric_def *defs);

#define GW_METRIC_SHARDS 16

typedef struct gw_metric_shard {
    _Alignas(64) int64_t v[GW_M__MAX];
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

int64_t gw_metric_get(gw_metric m);

/* Prometheus text exposition of every metric into buf; returns the length (truncated at cap). */
size_t gw_metrics_render(char *buf, size_t cap);
/* Adds a renderer of metrics whose labels are known only at run time (e.g. one gauge per TLS
 * listener), appended by gw_metrics_render. Main thread, before the loops run; at most 8. */
void gw_metrics_add_renderer(size_t (*fn)(char *buf, size_t cap));

#endif

/* tcp_metrics.h: the TCP adapter's metrics: its list, the handles the call sites count with
 * (set when the table gw__tcp_metrics is registered) and the table, defined in tcp.c. */
#ifndef GW_TCP_METRICS_H
#define GW_TCP_METRICS_H

#include "../../gateway/util/metrics.h"

/* X(handle, "prometheus name without iotgw_", "help") */
#define GW_TCP_METRICS(X)                                                                          \
    X(GW_M_TCP_FRAMES, "tcp_frames_total", "TCP frames received (decoded or not)")                 \
    X(GW_M_TCP_BAD_OVERSIZED, "tcp_bad_frames_total{reason=\"oversized\"}",                        \
      "TCP frames dropped, by reason")                                                             \
    X(GW_M_TCP_BAD_GARBAGE, "tcp_bad_frames_total{reason=\"garbage\"}", NULL)                      \
    X(GW_M_TCP_BAD_CHECK, "tcp_bad_frames_total{reason=\"bad_check\"}", NULL)                      \
    X(GW_M_TCP_BAD_UNDECODABLE, "tcp_bad_frames_total{reason=\"undecodable\"}", NULL)              \
    X(GW_M_TCP_BAD_DEVICE, "tcp_bad_frames_total{reason=\"device_mismatch\"}", NULL)               \
    X(GW_M_TCP_BAD_INCOMPLETE, "tcp_bad_frames_total{reason=\"incomplete\"}", NULL)                \
    X(GW_M_TCP_BAD_AUTH, "tcp_bad_frames_total{reason=\"bad_auth\"}", NULL)                        \
    X(GW_M_TCP_UNKNOWN_ITEMS, "tcp_unknown_items_total",                                           \
      "id-value list items with an id the product does not map (skipped)")                         \
    X(GW_M_TCP_LOGIN_UNKNOWN, "tcp_login_failures_total{reason=\"unknown_device\"}",               \
      "TCP logins refused, by reason")                                                             \
    X(GW_M_TCP_LOGIN_SECRET, "tcp_login_failures_total{reason=\"bad_secret\"}", NULL)              \
    X(GW_M_TCP_LOGIN_NONE, "tcp_login_failures_total{reason=\"not_a_login\"}", NULL)               \
    X(GW_M_TCP_LOGIN_CERT, "tcp_login_failures_total{reason=\"certificate\"}", NULL)               \
    X(GW_M_TCP_REGISTERED, "tcp_registrations_total{result=\"accepted\"}",                         \
      "TCP registrations (JT/T 808 0x0100) answered, by result")                                   \
    X(GW_M_TCP_REGISTER_UNKNOWN, "tcp_registrations_total{result=\"unknown_terminal\"}", NULL)     \
    X(GW_M_TCP_LOGIN_TIMEOUT, "tcp_login_timeouts_total", "connections closed before a login")     \
    X(GW_M_TCP_IDLE, "tcp_idle_timeouts_total", "TCP sessions closed by the idle timeout")         \
    X(GW_M_TCP_TAKEOVER, "tcp_takeovers_total", "TCP sessions taken over by a new connection")     \
    X(GW_M_TCP_OUTPUT_PAUSED, "output_paused_total{adapter=\"tcp\"}",                              \
      "times a connection stopped being read because its unsent output passed output_high_water")  \
    X(GW_M_TCP_OUTPUT_OVERFLOW, "output_overflow_total{adapter=\"tcp\"}",                          \
      "connections closed because their output passed output_hard_limit or stalled")

GW_TCP_METRICS(GW_METRIC_HANDLE_DECL)

extern const gw_metric_def gw__tcp_metrics[];

#endif

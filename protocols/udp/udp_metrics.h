/* udp_metrics.h: the UDP adapter's metrics: its list, the handles the call sites count with
 * (set when the table gw__udp_metrics is registered) and the table, defined in udp.c. */
#ifndef GW_UDP_METRICS_H
#define GW_UDP_METRICS_H

#include "../../gateway/util/metrics.h"

/* X(handle, "prometheus name without iotgw_", "help") */
#define GW_UDP_METRICS(X)                                                                          \
    X(GW_M_UDP_DATAGRAMS, "udp_datagrams_total", "UDP datagrams received")                         \
    X(GW_M_UDP_DROP_OVERSIZED, "udp_dropped_total{reason=\"oversized\"}",                          \
      "UDP datagrams dropped, by reason")                                                          \
    X(GW_M_UDP_DROP_MALFORMED, "udp_dropped_total{reason=\"malformed\"}", NULL)                    \
    X(GW_M_UDP_DROP_UNKNOWN, "udp_dropped_total{reason=\"unknown_device\"}", NULL)                 \
    X(GW_M_UDP_DROP_BAD_AUTH, "udp_dropped_total{reason=\"bad_auth\"}", NULL)                      \
    X(GW_M_UDP_DROP_BAD_CHECK, "udp_dropped_total{reason=\"bad_check\"}", NULL)                    \
    X(GW_M_UDP_DROP_REPLAY, "udp_dropped_total{reason=\"replay\"}", NULL)                          \
    X(GW_M_UDP_IDLE, "udp_idle_timeouts_total", "UDP sessions ended by the idle timeout")          \
    X(GW_M_UDP_TAKEOVER, "udp_takeovers_total", "UDP sessions moved to another loop")

GW_UDP_METRICS(GW_METRIC_HANDLE_DECL)

extern const gw_metric_def gw__udp_metrics[];

#endif

/* coap_metrics.h: the CoAP adapter's metrics: its list, the handles the call sites count with
 * (set when the table gw__coap_metrics is registered) and the table, defined in coap.c. */
#ifndef GW_COAP_METRICS_H
#define GW_COAP_METRICS_H

#include "../../gateway/util/metrics.h"

/* X(handle, "prometheus name without iotgw_", "help") */
#define GW_COAP_METRICS(X)                                                                         \
    X(GW_M_COAP_DATAGRAMS, "coap_datagrams_total", "CoAP datagrams received")                      \
    X(GW_M_COAP_REQUESTS, "coap_requests_total", "CoAP requests received (duplicates included)")   \
    X(GW_M_COAP_MALFORMED, "coap_dropped_total{reason=\"malformed\"}",                             \
      "CoAP datagrams dropped as malformed")                                                       \
    X(GW_M_COAP_DEDUP, "coap_dedup_hits_total", "retransmitted requests answered from the cache")  \
    X(GW_M_COAP_BLOCK_REFUSED, "coap_block_refused_total", "payloads refused with 4.13")           \
    X(GW_M_COAP_SEPARATE, "coap_separate_responses_total", "answers sent after an empty ACK")      \
    X(GW_M_COAP_BUSY, "coap_busy_total", "requests answered 5.03 (store queue full)")              \
    X(GW_M_COAP_AUTH_BAD, "coap_auth_failures_total{reason=\"bad_token\"}",                        \
      "CoAP requests refused 4.01, by reason")                                                     \
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
    X(GW_M_COAP_R_204, "coap_responses_total{code=\"2.04\"}", "CoAP responses sent, by code")      \
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

GW_COAP_METRICS(GW_METRIC_HANDLE_DECL)

extern const gw_metric_def gw__coap_metrics[];

#endif

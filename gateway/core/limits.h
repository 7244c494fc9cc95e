/* limits.h: per-source-address limits that hold under attack: concurrent connections, connect
 * rate (a token bucket), and authentication failures (past a threshold the source is refused for
 * an exponentially growing back-off). One fixed-size table, sized by configuration. */
#ifndef GW_LIMITS_H
#define GW_LIMITS_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/socket.h>

#include "../../config/config.h"

typedef struct gw_limits gw_limits;

typedef enum gw_limit_verdict {
    GW_LIMIT_OK = 0,
    GW_LIMIT_PER_SOURCE, /* max_connections_per_source reached */
    GW_LIMIT_RATE,       /* connect_rate_per_source exceeded */
    GW_LIMIT_BACKOFF,    /* the source is in an authentication back-off */
    GW_LIMIT_TABLE_FULL, /* sources_max sources all have open connections */
} gw_limit_verdict;

/* "per_source", "connect_rate", "auth_backoff", "source_table_full" (metric label, log reason). */
const char *gw_limit_reason(gw_limit_verdict v);

/* NULL *out (and 0) when every limit is disabled. */
int gw_limits_create(gw_limits **out, const gw_limits_cfg *cfg);
void gw_limits_free(gw_limits *l);

/* A new connection from peer: GW_LIMIT_OK counts it (release it with gw_limits_release), anything
 * else refuses it (counted in connections_limited_total{reason}). NULL-safe (always OK). */
gw_limit_verdict gw_limits_admit(gw_limits *l, const struct sockaddr *peer, uint64_t now_ms);
void gw_limits_release(gw_limits *l, const struct sockaddr *peer);
/* A datagram source (no connection): only the back-off applies. */
bool gw_limits_blocked(gw_limits *l, const struct sockaddr *peer, uint64_t now_ms);
/* Authentication outcomes of a source: failures past auth_failures_per_source start (or double)
 * its back-off; a success forgets its failures. */
void gw_limits_auth_failed(gw_limits *l, const struct sockaddr *peer, uint64_t now_ms);
void gw_limits_auth_ok(gw_limits *l, const struct sockaddr *peer);

#endif

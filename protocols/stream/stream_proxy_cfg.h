/* stream_proxy_cfg.h: a stream listener's "proxy_protocol" setting ({"from": [addresses or CIDR
 * prefixes]}) and the iotgw_proxy_refused_total counters. The header itself is parsed by
 * stream_proxy.c; stream_conn.c reads it before TLS and the adapter's parser. */
#ifndef GW_STREAM_PROXY_CFG_H
#define GW_STREAM_PROXY_CFG_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "../../config/config.h"
#include "../../config/diag.h"
#include "stream_proxy.h"

#define GW_PROXY_FROM_MAX 64 /* entries of "from" */

typedef struct gw_stream_proxy {
    uint32_t timeout_ms; /* the whole header must arrive within it (the adapter's login timeout) */
    uint32_t n;
    gw_proxy_net from[]; /* who may send the header */
} gw_stream_proxy;

/* Adapter init (main thread): the "proxy_protocol" object of each entry of section[key] (parsed
 * into ls) into (*out)[i] (NULL: none). Errors name the file and JSON path. Registers the metrics.
 * Returns the number of errors added to diag (GW_ENOMEM: -1); *out has ls->n entries (freed by
 * gw_stream_proxy_free_all even after errors). adapter: "mqtt", "tcp". */
int gw_stream_proxy_setup(const json_t *section, const char *key, const gw_listen_list *ls,
                          const char *adapter, uint32_t timeout_ms, const gw_config *gcfg,
                          gw_diag *diag, gw_stream_proxy ***out);
void gw_stream_proxy_free_all(gw_stream_proxy **v, size_t n);

/* iotgw_proxy_refused_total{reason} += 1 */
void gw__stream_proxy_count(gw_proxy_err e);

#endif

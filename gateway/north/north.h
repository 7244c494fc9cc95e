/* north.h: the upstream bridge: one thread with its own libuv loop driving our MQTT 3.1.1 client
 * (north_link.c, north_mqtt.c), forwarding the outbox in commit order with a bounded in-flight
 * window, and receiving cloud commands for the command table. */
#ifndef GW_NORTH_H
#define GW_NORTH_H

#include "../../config/config.h"
#include "../../storage/store.h"
#include "../util/error.h"

typedef struct gw_north gw_north;
typedef struct gw_runtime gw_runtime;

/* Main thread, after the store is open and the runtime created (before it starts): opens the
 * outbox reader and the command table (rt->commands). Does nothing (and *out = NULL) when
 * cfg->north.enabled is false. */
int gw_north_create(gw_north **out, const gw_config *cfg, gw_runtime *rt, gw_store *store,
                    gw_error *err);
/* Starts the north thread (connects, forwards, subscribes to the command topics). */
int gw_north_start(gw_north *n, gw_error *err);
/* Main thread, shutdown: after device sessions are closed and the store drained; disconnects,
 * joins the thread and hands the last acknowledged ids to the store (before gw_store_close). */
void gw_north_stop(gw_north *n);
void gw_north_free(gw_north *n);

/* Topic of an upstream event (templates with {prefix} {product} {device} {event}); replies go to
 * "{prefix}/{product}/{device}/<function/invoke|properties/write|properties/read>/reply". Returns
 * the length, or 0 if it does not fit cap. */
size_t gw_north_topic(const gw_north_cfg *cfg, const char *kind, const char *product,
                      const char *device, const char *name, char *buf, size_t cap);
/* The upstream JSON payload of an outbox row into buf: {"device","product","kind","time",
 * "name"?,"messageId"?,"values":<payload>} (replies: the reply object's members at top level).
 * Returns the length, or 0 if it does not fit cap. */
size_t gw_north_payload(const gw_outbox_row *row, char *buf, size_t cap);

#endif

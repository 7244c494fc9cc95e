/* north_internal.h: what the north bridge's files share: the bridge state owned by the north
 * thread (link, window, cursor) and the hooks between the link and the forwarder. */
#ifndef GW_NORTH_INTERNAL_H
#define GW_NORTH_INTERNAL_H

#include <mosquitto.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "../command/command.h"
#include "north.h"

/* One connection attempt: the libmosquitto client and the poll on its socket. Freed in the
 * poll's close callback (the socket stays open until then). */
typedef struct gw__north_link {
    struct gw_north *n;
    struct mosquitto *mosq;
    uv_poll_t poll;
    bool polling;
    int events; /* UV_READABLE | UV_WRITABLE currently asked for */
    bool held;  /* not reading: the store queue is full */
} gw__north_link;

/* A window slot stays taken from the publish until the outbox row's deletion has committed, so
 * that "in flight" (what a crash may send twice) is bounded by the window. */
typedef struct gw__north_slot {
    int64_t id;      /* event id */
    int64_t handoff; /* acked: its position in the ids handed to the store (running count) */
    uint64_t sent;   /* when it was published (loop time, ms): the PUBACK timeout */
    int mid;         /* libmosquitto message id */
    bool acked;
} gw__north_slot;

struct gw_north {
    const gw_config *cfg;
    const gw_north_cfg *nc;
    gw_runtime *rt;
    gw_store *store;
    gw_store_reader *reader;
    gw_commands *commands;
    bool own_commands; /* created here (no table in rt); else main's, borrowed */

    pthread_t thread;
    bool started;
    uv_loop_t loop;
    uv_async_t wake;  /* commit hook, stop */
    uv_timer_t misc;  /* keep-alive (mosquitto_loop_misc), 1 s */
    uv_timer_t watch; /* PUBACK timeout checks, puback_timeout_ms / 10 (100 ms..1 s) */
    uv_timer_t tick;  /* command timeouts, 50 ms */
    uv_timer_t retry;
    uv_timer_t hold; /* re-checks a full store queue (commands paused) */
    int stop;        /* atomic: main asked to stop */
    int more;        /* atomic: the writer committed outbox rows since the last read */

    gw__north_link *link; /* current attempt, NULL while waiting to retry */
    bool up;              /* CONNACK accepted */
    unsigned failures;    /* consecutive failed attempts (back-off exponent) */
    bool stalled;      /* the last link was dropped for want of a PUBACK: the back-off keeps growing
                          until a PUBACK arrives on a later link (not reset by the CONNACK) */
    uint64_t progress; /* loop time (ms) of the last PUBACK, CONNACK or resumed read */
    bool ever_tried;
    uint64_t rng;

    /* forwarding window: publishes in id order awaiting PUBACK (ring) */
    gw__north_slot *win;
    uint32_t win_head, win_n;
    uint32_t ack_hint; /* window position after the last PUBACK matched */
    int64_t cursor;    /* highest event id published on this connection (or acked before it) */
    int64_t *acked;    /* acknowledged ids not yet handed to the store */
    size_t n_acked;
    int64_t handed; /* ids handed to the store so far (running count) */
    char *topic, *payload;
    size_t payload_cap;

    /* north.cluster (north_cluster.c): who holds which device, which instances are alive */
    bool warm;         /* our own sync marker came back: the retained state has been read */
    uint16_t *holder;  /* per device index: peer index | GW__HOLDER_ONLINE; 0: unknown */
    uint32_t n_holder; /* rt->device_cap */
    char **peers;      /* instance names by peer index (0 unused, 1 = this instance) */
    uint8_t *peer_live;
    uint32_t n_peers, last_peer;
    uint64_t sync_sent; /* loop time of the sync marker (the fallback below) */
};

/* north_cluster.c: several instances behind a load balancer, sharing only the upstream broker.
 * Retained "{prefix}/_presence/{device}" {"gateway","online","time"} says which instance holds
 * (or last held) a device; retained "{prefix}/_gateways/{client_id}" "online"/"offline" (the
 * latter as the Last Will) which instances are alive. All on the north thread. */
#define GW__HOLDER_ONLINE   0x8000u
#define GW__NORTH_PEERS_MAX 1024u
int gw__north_cluster_init(gw_north *n);
void gw__north_cluster_free(gw_north *n);
/* A new client, before connecting: the Last Will ("offline", retained). */
int gw__north_cluster_will(gw_north *n, struct mosquitto *m);
/* CONNACK: subscribes to the presence and instance topics and sends the sync marker; the
 * command subscriptions follow once it comes back (the map is warm). */
void gw__north_cluster_connected(gw_north *n, struct mosquitto *m);
/* Every second: a sync marker that never came back (a broker refusing the cluster topics) does
 * not stall the link: after 10 s the instance answers and forwards anyway, and says so. */
void gw__north_cluster_tick(gw_north *n);
/* Stopping: our instance topic says "offline" (a clean stop sends no Will). */
void gw__north_cluster_goodbye(gw_north *n, struct mosquitto *m);
/* A message on a cluster topic: true if it was one (handled). */
bool gw__north_cluster_message(gw_north *n, const struct mosquitto_message *msg);
/* A cloud command for device: true when this instance answers it (it holds the session, or is the
 * last holder, or the holder is unknown or dead and this is the lowest-named live instance). */
bool gw__north_cluster_mine(gw_north *n, const char *device);
/* Forwarding an online/offline row: publishes the device's presence when it is still true. */
void gw__north_cluster_presence(gw_north *n, const gw_outbox_row *row);

/* north_link.c: the command subscriptions */
void gw__north_subscribe_commands(gw_north *n, struct mosquitto *m);

/* north_link.c */
void gw__north_link_start(gw_north *n); /* connect now (or after the back-off) */
void gw__north_link_down(gw_north *n, const char *why, int rc);
void gw__north_link_update(gw_north *n); /* poll events after publishing (want_write) */
void gw__north_link_close(gw_north *n);  /* shutdown: DISCONNECT and close */
/* Watch timer: drops the link when publishes are in flight and no PUBACK came for
 * puback_timeout_ms (counted, logged); reconnects with the back-off and resends the window. */
void gw__north_link_watchdog(gw_north *n);

/* north_forward.c */
void gw__north_pump(gw_north *n); /* publish from the outbox while the window has room */
void gw__north_on_puback(gw_north *n, int mid);
void gw__north_flush_acked(gw_north *n);  /* hand acknowledged ids to the store */
void gw__north_reset_window(gw_north *n); /* link lost: resend from the first unacked */
/* The oldest unacknowledged publish in the window: its publish time (loop ms) and the number of
 * unacknowledged publishes; false if none. */
bool gw__north_oldest_unacked(const gw_north *n, uint64_t *sent, uint32_t *unacked);

#endif

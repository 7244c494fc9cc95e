/* north_internal.h: what the north bridge's files share: the bridge state owned by the north
 * thread (link, window, cursor) and the hooks between the link and the forwarder. */
#ifndef GW_NORTH_INTERNAL_H
#define GW_NORTH_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <netdb.h>
#include <uv.h>

#include "../command/command.h"
#include "north.h"
#include "north_mqtt.h"
#include "../util/alloc.h"

/* A growable byte buffer (gw_malloc, area runtime). */
typedef struct gw__north_buf {
    uint8_t *p;
    size_t len, cap;
} gw__north_buf;
int gw__north_buf_reserve(gw__north_buf *b, size_t more); /* room for more bytes after len */

typedef struct gw__north_tls gw__north_tls;

/* One connection attempt: the TCP handle (the link is freed in its close callback), what waits to
 * be written and what was read, the TLS session if any, the MQTT client's own state. */
typedef struct gw__north_link {
    struct gw_north *n;
    uv_tcp_t tcp;
    uv_connect_t conn;
    uv_write_t wreq;
    struct addrinfo *ai; /* the broker's addresses */
    unsigned addr;       /* the one this attempt connects to (its position in ai) */
    bool tcp_up;         /* TCP connected: the CONNECT is on its way */
    bool writing;        /* wr is with uv_write */
    bool reading;
    bool held;            /* not reading: the store queue is full */
    gw__north_buf out;    /* packets not yet handed to the socket (plaintext) */
    gw__north_buf wr;     /* bytes uv_write is sending */
    gw__north_buf in;     /* received plaintext; whole packets are parsed off the front */
    gw__north_buf cipher; /* TLS: encrypted bytes not yet handed to the socket */
    gw__north_tls *tls;
    uint8_t *raw; /* TLS: what one read brings, before decryption (64 KiB) */
    uint16_t next_id;
    bool ping_out;                                  /* a PINGREQ awaits its PINGRESP */
    uint64_t started, last_in, last_out, ping_sent; /* loop ms */
} gw__north_link;

/* A message from the broker (topic NUL-terminated). */
typedef struct gw__north_msg {
    const char *topic;
    const void *payload;
    int payloadlen;
    bool retain;
} gw__north_msg;

/* A window slot stays taken from the publish until the outbox row's deletion has committed, so
 * that "in flight" (what a crash may send twice) is bounded by the window. */
typedef struct gw__north_slot {
    int64_t id;      /* event id */
    int64_t handoff; /* acked: its position in the ids handed to the store (running count) */
    uint64_t sent;   /* when it was published (loop time, ms): the PUBACK timeout */
    int mid;         /* MQTT packet id */
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
    uv_timer_t misc;  /* keep-alive, connect timeout, 1 s */
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
    unsigned addr_next; /* the address the next attempt takes (0 but right after a refused one) */
    uint64_t rng;

    /* forwarding window: publishes in id order awaiting PUBACK (ring) */
    gw__north_slot *win;
    uint32_t win_head, win_n;
    uint32_t unacked;  /* window slots still awaiting their PUBACK */
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
/* Before connecting: the Last Will's topic into topic (its payload is "offline", retained,
 * QoS 1); false when there is none (not a cluster). */
bool gw__north_cluster_will(gw_north *n, char *topic, size_t cap);
/* CONNACK: subscribes to the presence and instance topics and sends the sync marker; the
 * command subscriptions follow once it comes back (the map is warm). */
void gw__north_cluster_connected(gw_north *n);
/* Every second: a sync marker that never came back (a broker refusing the cluster topics) does
 * not stall the link: after 10 s the instance answers and forwards anyway, and says so. */
void gw__north_cluster_tick(gw_north *n);
/* Stopping: our instance topic says "offline" (a clean stop sends no Will). */
void gw__north_cluster_goodbye(gw_north *n);
/* A message on a cluster topic: true if it was one (handled). */
bool gw__north_cluster_message(gw_north *n, const gw__north_msg *msg);
/* A cloud command for device: true when this instance answers it (it holds the session, or is the
 * last holder, or the holder is unknown or dead and this is the lowest-named live instance). */
bool gw__north_cluster_mine(gw_north *n, const char *device);
/* Forwarding an online/offline row: publishes the device's presence when it is still true. */
void gw__north_cluster_presence(gw_north *n, const gw_outbox_row *row);

/* north_link.c: the command subscriptions */
void gw__north_subscribe_commands(gw_north *n);

/* north_link.c */
void gw__north_link_start(gw_north *n); /* connect now (or after the back-off) */
void gw__north_link_down(gw_north *n, const char *why, const char *error);
/* Queues a PUBLISH (sent at the end of the burst, by gw__north_link_update): 0 and *id (qos 1),
 * or GW_ENOMEM / GW_EINVAL (cannot be encoded) / GW_ECLOSED. */
int gw__north_link_publish(gw_north *n, const char *topic, const void *payload, size_t len,
                           uint8_t qos, bool retain, int *id);
int gw__north_link_subscribe(gw_north *n, const char *filter, uint8_t qos);
/* Misc timer (every second): PINGREQ when idle for keepalive_s, the dead-link and CONNACK
 * timeouts. */
void gw__north_link_misc(gw_north *n);
void gw__north_link_update(gw_north *n); /* writes what was queued; reading on/off */
void gw__north_link_close(gw_north *n);  /* shutdown: DISCONNECT and close */
/* Watch timer: drops the link when publishes are in flight and no PUBACK came for
 * puback_timeout_ms (counted, logged); reconnects with the back-off and resends the window. */
void gw__north_link_watchdog(gw_north *n);

/* north_tls.c: OpenSSL over memory BIOs. err/cap: the reason of a failure (for the log). */
int gw__north_tls_new(const gw_north_cfg *c, gw__north_tls **out, char *err, size_t cap);
void gw__north_tls_free(gw__north_tls *t);
/* Bytes from the broker: continues the handshake, appends the plaintext to plain, the bytes to send
 * back (handshake, alerts) to wire. */
int gw__north_tls_input(gw__north_tls *t, const void *data, size_t len, gw__north_buf *plain,
                        gw__north_buf *wire, char *err, size_t cap);
/* Once the handshake is done: encrypts plain (emptied) into wire; before, only drains. */
int gw__north_tls_output(gw__north_tls *t, gw__north_buf *plain, gw__north_buf *wire, char *err,
                         size_t cap);
bool gw__north_tls_ready(const gw__north_tls *t);

/* north_forward.c */
void gw__north_pump(gw_north *n); /* publish from the outbox while the window has room */
void gw__north_on_puback(gw_north *n, int mid);
void gw__north_flush_acked(gw_north *n);  /* hand acknowledged ids to the store */
void gw__north_reset_window(gw_north *n); /* link lost: resend from the first unacked */
/* The oldest unacknowledged publish in the window: its publish time (loop ms) and the number of
 * unacknowledged publishes; false if none. */
bool gw__north_oldest_unacked(const gw_north *n, uint64_t *sent, uint32_t *unacked);

#endif

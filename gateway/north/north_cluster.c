/* north_cluster.c: north.cluster: N instances behind a load balancer with the upstream broker as
 * their only shared state. Each publishes a retained presence per device it holds and a retained
 * liveness for itself (its Will says "offline"), reads everyone's into a compact map (2 bytes per
 * device, a small table of instance names), and answers a cloud command only when it holds the
 * device, is its last holder, or (holder unknown or dead) is the lowest-named live instance. The
 * design and its trade-offs are in docs/SCALING.md. North thread only: no locks but the slots'. */
#include "north_internal.h"

#include <jansson.h>
#include <stdio.h>
#include <string.h>

#include "../util/alloc.h"
#include "../util/json_write.h"
#include "../util/log.h"
#include "../util/metrics.h"
#include "../core/runtime.h"

#define SYNC         "sync"
#define PRESENCE_MAX 1024 /* bytes of a presence payload we read */

int gw__north_cluster_init(gw_north *n)
{
    if (!n->nc->cluster)
        return 0;
    n->n_holder = n->rt->device_cap ? n->rt->device_cap : 1;
    n->holder = gw_calloc(GW_AREA_RUNTIME, n->n_holder, sizeof(*n->holder));
    n->peers = gw_calloc(GW_AREA_RUNTIME, GW__NORTH_PEERS_MAX, sizeof(*n->peers));
    n->peer_live = gw_calloc(GW_AREA_RUNTIME, GW__NORTH_PEERS_MAX, 1);
    if (!n->holder || !n->peers || !n->peer_live)
        return GW_ENOMEM;
    n->peers[1] = gw_strdup(GW_AREA_RUNTIME, n->nc->client_id);
    if (!n->peers[1])
        return GW_ENOMEM;
    n->peer_live[1] = 1; /* this instance is alive whenever it asks */
    n->n_peers = 2;
    n->last_peer = 1;
    return 0;
}

void gw__north_cluster_free(gw_north *n)
{
    for (uint32_t i = 1; n->peers && i < n->n_peers; i++)
        gw_free(GW_AREA_RUNTIME, n->peers[i]);
    gw_free(GW_AREA_RUNTIME, n->peers);
    gw_free(GW_AREA_RUNTIME, n->peer_live);
    gw_free(GW_AREA_RUNTIME, n->holder);
}

/* The index of an instance name (len bytes), added if new; 0 when the table is full. */
static uint32_t peer_index(gw_north *n, const char *name, size_t len)
{
    const char *last = n->peers[n->last_peer];
    if (strlen(last) == len && memcmp(last, name, len) == 0)
        return n->last_peer;
    for (uint32_t i = 1; i < n->n_peers; i++) {
        if (strlen(n->peers[i]) == len && memcmp(n->peers[i], name, len) == 0)
            return n->last_peer = i;
    }
    if (n->n_peers >= GW__NORTH_PEERS_MAX || len == 0 || len > 128)
        return 0;
    char *copy = gw_malloc(GW_AREA_RUNTIME, len + 1);
    if (!copy)
        return 0;
    memcpy(copy, name, len);
    copy[len] = 0;
    n->peers[n->n_peers] = copy;
    n->peer_live[n->n_peers] = 0; /* until its own "online" */
    return n->last_peer = n->n_peers++;
}

/* "{prefix}/<kind>/<name>" into n->topic; false if it does not fit or name is not a topic level */
static bool cluster_topic(gw_north *n, const char *kind, const char *name)
{
    if (!name || !*name || strpbrk(name, "/+#"))
        return false;
    int len = snprintf(n->topic, 1024, "%s/%s/%s", n->nc->prefix, kind, name);
    return len > 0 && len < 1024;
}

bool gw__north_cluster_will(gw_north *n, char *topic, size_t cap)
{
    if (!n->nc->cluster || !cluster_topic(n, "_gateways", n->nc->client_id))
        return false; /* the config check refused a client id that is no topic level */
    snprintf(topic, cap, "%s", n->topic);
    return true;
}

static void publish(gw_north *n, const char *payload, size_t len, bool retain)
{
    int rc = gw__north_link_publish(n, n->topic, payload, len, 1, retain, NULL);
    if (rc != 0) {
        gw_metric_inc(GW_M_NORTH_PUBLISH_ERRORS);
        GW_LOG_WARN("north", NULL, NULL, "cluster publish failed", "topic=%s error=\"%s\"",
                    n->topic, gw_strerror(rc));
    }
}

void gw__north_cluster_connected(gw_north *n)
{
    static const char *const kinds[] = {"_presence", "_gateways"};
    char topic[512];
    n->warm = false;
    for (size_t i = 0; i < 2; i++) {
        snprintf(topic, sizeof(topic), "%s/%s/+", n->nc->prefix, kinds[i]);
        int rc = gw__north_link_subscribe(n, topic, 1);
        if (rc != 0)
            GW_LOG_ERROR("north", NULL, NULL, "subscribe failed", "topic=%s error=\"%s\"", topic,
                         gw_strerror(rc));
    }
    /* the broker sends the retained messages of a subscription before anything published after
     * it: when this non-retained marker comes back, the map has everyone's presence */
    if (cluster_topic(n, "_gateways", n->nc->client_id))
        publish(n, SYNC, strlen(SYNC), false);
    n->sync_sent = uv_now(&n->loop);
}

static void become_warm(gw_north *n)
{
    n->warm = true; /* every retained presence came before it: answer commands from now */
    if (n->link) {
        gw__north_subscribe_commands(n);
        if (cluster_topic(n, "_gateways", n->nc->client_id))
            publish(n, "online", 6, true); /* after the subscriptions: peers rely on it */
    }
    __atomic_store_n(&n->more, 1, __ATOMIC_RELEASE);
}

void gw__north_cluster_tick(gw_north *n)
{
    if (!n->nc->cluster || n->warm || !n->up || uv_now(&n->loop) - n->sync_sent < 10000)
        return;
    GW_LOG_ERROR("north", NULL, NULL,
                 "cluster: our sync marker did not come back within 10 s (can this client "
                 "subscribe and publish to {prefix}/_presence/+ and {prefix}/_gateways/+?); "
                 "answering commands without the other instances' state",
                 "prefix=%s client_id=%s", n->nc->prefix, n->nc->client_id);
    become_warm(n);
}

void gw__north_cluster_goodbye(gw_north *n)
{
    if (n->nc->cluster && n->warm && cluster_topic(n, "_gateways", n->nc->client_id))
        publish(n, "offline", 7, true);
}

/* Whether this instance holds dev's session now. */
static bool holds(gw_north *n, const gw_device *dev)
{
    gw_runtime *rt = n->rt;
    pthread_mutex_t *mu = &rt->stripes[dev->index % GW_DEVICE_STRIPES];
    pthread_mutex_lock(mu);
    bool yes = rt->slots[dev->index] != NULL;
    pthread_mutex_unlock(mu);
    return yes;
}

/* A presence (peer, online) for device index i: an online always names the new holder; an
 * offline only from the recorded holder (or when none is known): the old holder's late offline
 * never overwrites a newer holder's online. Returns true if applied. */
static bool apply(gw_north *n, uint32_t i, uint32_t peer, bool online)
{
    uint32_t cur = n->holder[i] & ~GW__HOLDER_ONLINE;
    if (!online && cur && cur != peer)
        return false;
    n->holder[i] = (uint16_t)(peer | (online ? GW__HOLDER_ONLINE : 0));
    return true;
}

/* Publishes (this instance, online) for dev and records it. */
static void publish_presence(gw_north *n, const gw_device *dev, bool online, int64_t ts)
{
    char payload[512], name[300], num[32];
    if (!n->link || !cluster_topic(n, "_presence", dev->id))
        return;
    if (!gw_json_string(name, sizeof(name), n->nc->client_id, strlen(n->nc->client_id)))
        return;
    snprintf(num, sizeof(num), "%lld", (long long)ts);
    int len = snprintf(payload, sizeof(payload), "{\"gateway\":%s,\"online\":%s,\"time\":%s}", name,
                       online ? "true" : "false", num);
    if (len <= 0 || (size_t)len >= sizeof(payload))
        return;
    apply(n, dev->index, 1, online);
    publish(n, payload, (size_t)len, true);
    gw_metric_inc(GW_M_NORTH_PRESENCE);
}

void gw__north_cluster_presence(gw_north *n, const gw_outbox_row *row)
{
    if (!n->nc->cluster)
        return;
    bool online = strcmp(row->kind, "online") == 0;
    if (!online && strcmp(row->kind, "offline") != 0)
        return;
    const gw_config *cfg = gw_runtime_cfg_acquire(n->rt);
    const gw_device *dev = gw_config_device(cfg, row->device);
    if (dev && dev->index < n->n_holder) {
        bool mine = holds(n, dev);
        uint32_t cur = n->holder[dev->index] & ~GW__HOLDER_ONLINE;
        /* presence says what is true now: an old online row (its session has ended since, after
         * a restart its outbox drains) is not re-announced; an offline row neither while a newer
         * session of ours holds the device, nor once another instance has taken it over */
        if (online ? mine : !mine && (cur == 0 || cur == 1))
            publish_presence(n, dev, online, row->ts);
    }
    gw_config_release(cfg);
}

/* {"gateway":"<name>","online":true|false,...} on {prefix}/_presence/{device} */
static void on_presence(gw_north *n, const char *device, const gw__north_msg *msg)
{
    const gw_config *cfg = gw_runtime_cfg_acquire(n->rt);
    const gw_device *dev = gw_config_device(cfg, device);
    json_t *root = NULL;
    gw_metric_inc(GW_M_NORTH_PRESENCE_READ);
    if (!dev || dev->index >= n->n_holder || msg->payloadlen <= 0 ||
        msg->payloadlen > PRESENCE_MAX) {
        if (msg->payloadlen > 0) /* an empty payload: a cleared retained message */
            gw_metric_inc(GW_M_NORTH_CLUSTER_REFUSED);
        goto out;
    }
    root = json_loadb(msg->payload, (size_t)msg->payloadlen, 0, NULL);
    json_t *g = json_object_get(root, "gateway"), *on = json_object_get(root, "online");
    if (!json_is_string(g) || !json_is_boolean(on)) {
        gw_metric_inc(GW_M_NORTH_CLUSTER_REFUSED);
        GW_LOG_WARN("north", dev->id, NULL, "bad presence message ignored", "topic=%s", msg->topic);
        goto out;
    }
    uint32_t peer = peer_index(n, json_string_value(g), json_string_length(g));
    if (!peer) {
        gw_metric_inc(GW_M_NORTH_CLUSTER_REFUSED);
        goto out;
    }
    bool online = json_is_true(on);
    apply(n, dev->index, peer, online);
    /* another instance's late offline replaced our online as the broker's retained presence:
     * say again that we hold the device (an online from another never triggers this, so two
     * instances cannot ping-pong) */
    if (peer != 1 && !online && holds(n, dev))
        publish_presence(n, dev, true, gw_now_ms());
out:
    json_decref(root);
    gw_config_release(cfg);
}

/* "online" / "offline" / our own "sync" on {prefix}/_gateways/{name} */
static void on_gateway(gw_north *n, const char *name, const gw__north_msg *msg)
{
    size_t len = msg->payloadlen > 0 ? (size_t)msg->payloadlen : 0;
    const char *p = msg->payload;
    uint32_t peer = peer_index(n, name, strlen(name));
    if (!peer) {
        gw_metric_inc(GW_M_NORTH_CLUSTER_REFUSED);
        return;
    }
    if (len == 4 && memcmp(p, SYNC, 4) == 0) {
        if (peer != 1 || msg->retain || n->warm)
            return;
        become_warm(n);
        GW_LOG_INFO("north", NULL, NULL, "cluster state read; answering commands", "instances=%u",
                    n->n_peers - 1);
        return;
    }
    if (peer == 1) /* our own (an old Will read back, or our "online"): we are alive */
        return;
    if (len == 6 && memcmp(p, "online", 6) == 0)
        n->peer_live[peer] = 1;
    else if (len == 7 && memcmp(p, "offline", 7) == 0)
        n->peer_live[peer] = 0;
    else if (len) /* empty: cleared */
        gw_metric_inc(GW_M_NORTH_CLUSTER_REFUSED);
}

bool gw__north_cluster_message(gw_north *n, const gw__north_msg *msg)
{
    size_t pl = strlen(n->nc->prefix);
    const char *t = msg->topic;
    if (!n->nc->cluster || strncmp(t, n->nc->prefix, pl) != 0 || t[pl] != '/')
        return false;
    t += pl + 1;
    if (strncmp(t, "_presence/", 10) == 0 && t[10] && !strchr(t + 10, '/'))
        on_presence(n, t + 10, msg);
    else if (strncmp(t, "_gateways/", 10) == 0 && t[10] && !strchr(t + 10, '/'))
        on_gateway(n, t + 10, msg);
    else
        return false;
    return true;
}

bool gw__north_cluster_mine(gw_north *n, const char *device)
{
    if (!n->nc->cluster)
        return true;
    const gw_config *cfg = gw_runtime_cfg_acquire(n->rt);
    const gw_device *dev = device ? gw_config_device(cfg, device) : NULL;
    bool yes;
    if (!dev || dev->index >= n->n_holder) {
        /* an unknown device is only logged (no reply): by the lowest-named live instance */
        yes = true;
    } else if (holds(n, dev)) {
        yes = true;
    } else {
        uint32_t h = n->holder[dev->index] & ~GW__HOLDER_ONLINE;
        if (h && n->peer_live[h]) {
            yes = h == 1; /* the live (last) holder answers: its store has the values */
        } else {          /* unknown or dead holder: the lowest-named live instance */
            uint32_t low = 1;
            for (uint32_t i = 2; i < n->n_peers; i++)
                if (n->peer_live[i] && strcmp(n->peers[i], n->peers[low]) < 0)
                    low = i;
            yes = low == 1;
        }
    }
    gw_config_release(cfg);
    return yes;
}

/* config_north.c: gateway.json's "north" section: the upstream MQTT broker, topic templates, the
 * outbox budget and policy, and the bounds on pending commands. */
#include "internal.h"

#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cfg_schema.h"

static const char *const policies[] = {"backpressure", "drop_oldest", NULL};

#define NF(name, type, field, lo, hi, en, ...)                                                     \
    {                                                                                              \
        name, type, offsetof(gw_north_cfg, field), lo, hi, en, false, __VA_ARGS__                  \
    }
static const gw_cfg_field north_fields[] = {
    NF("enabled", GW_CFG_BOOL, enabled, 0, 0, NULL, GW_CFG_DEF(false),
       .doc = "Forward stored events to the upstream broker and take cloud commands from it."),
    NF("host", GW_CFG_STRING, host, 0, 0, NULL, GW_CFG_DEF_STR("127.0.0.1"),
       .doc = "Host name or address of the upstream MQTT broker. A name is resolved at each "
              "connection attempt (on the north thread) and its addresses are tried in the "
              "resolver's order, a refused or silent one passing to the next."),
    NF("port", GW_CFG_UINT32, port, 1, 65535, NULL, GW_CFG_DEF(1883),
       .doc = "Port of the upstream MQTT broker."),
    NF("client_id", GW_CFG_STRING, client_id, 0, 0, NULL,
       .doc = "MQTT client id at the upstream broker (default `iotgw-<hostname>`)."),
    NF("username", GW_CFG_STRING, username, 0, 0, NULL,
       .doc = "MQTT user name at the broker; none: anonymous."),
    NF("password", GW_CFG_STRING, password, 0, 0, NULL, .doc = "MQTT password at the broker."),
    NF("ca_file", GW_CFG_STRING, ca_file, 0, 0, NULL,
       .doc = "PEM CA file that verifies the broker's certificate; setting it turns TLS on."),
    NF("cert_file", GW_CFG_STRING, cert_file, 0, 0, NULL,
       .doc = "PEM client certificate presented to the broker (TLS)."),
    NF("key_file", GW_CFG_STRING, key_file, 0, 0, NULL, .doc = "Private key of `cert_file` (PEM)."),
    NF("tls_insecure", GW_CFG_BOOL, tls_insecure, 0, 0, NULL, GW_CFG_DEF(false),
       .doc = "Skip the check of the broker certificate's host name (tests only)."),
    NF("keepalive_s", GW_CFG_UINT32, keepalive_s, 5, 65535, NULL, GW_CFG_DEF(30),
       .doc = "MQTT keep-alive with the broker, in seconds."),
    NF("clean_session", GW_CFG_BOOL, clean_session, 0, 0, NULL, GW_CFG_DEF(false),
       .doc = "Connect with a clean session; false: the broker keeps the command subscriptions "
              "across reconnects."),
    NF("prefix", GW_CFG_STRING, prefix, 0, 0, NULL, GW_CFG_DEF_STR("iotgw"),
       .doc = "The `{prefix}` of the topic templates and of the command topics."),
    NF("topic_property", GW_CFG_STRING, topic_property, 0, 0, NULL,
       GW_CFG_DEF_STR("{prefix}/{product}/{device}/properties/report"),
       .doc = "Topic of property reports (`{prefix}`, `{product}`, `{device}`)."),
    NF("topic_event", GW_CFG_STRING, topic_event, 0, 0, NULL,
       GW_CFG_DEF_STR("{prefix}/{product}/{device}/event/{event}"),
       .doc = "Topic of device events (`{prefix}`, `{product}`, `{device}`, `{event}`)."),
    NF("topic_online", GW_CFG_STRING, topic_online, 0, 0, NULL,
       GW_CFG_DEF_STR("{prefix}/{product}/{device}/online"), .doc = "Topic of online events."),
    NF("topic_offline", GW_CFG_STRING, topic_offline, 0, 0, NULL,
       GW_CFG_DEF_STR("{prefix}/{product}/{device}/offline"), .doc = "Topic of offline events."),
    NF("window", GW_CFG_UINT32, window, 1, 65535, NULL, GW_CFG_DEF(256),
       .doc = "Publishes awaiting their PUBACK at most."),
    NF("puback_timeout_ms", GW_CFG_UINT32, puback_timeout_ms, 1000, 3600000, NULL,
       GW_CFG_DEF(30000),
       .doc = "Publishes in flight with no PUBACK for this many ms: reconnect and resend from the "
              "first unacknowledged."),
    NF("reconnect_min_ms", GW_CFG_UINT32, reconnect_min_ms, 10, 600000, NULL, GW_CFG_DEF(500),
       .doc = "The first reconnect delay, in ms; doubled up to `reconnect_max_ms`."),
    NF("reconnect_max_ms", GW_CFG_UINT32, reconnect_max_ms, 10, 3600000, NULL, GW_CFG_DEF(30000),
       .doc = "The longest reconnect delay, in ms."),
    NF("max_outbox_rows", GW_CFG_INT64, max_outbox_rows, 1, 1000000000000LL, NULL,
       GW_CFG_DEF(10000000), .doc = "Unforwarded events at most (the outbox budget)."),
    NF("outbox_policy", GW_CFG_ENUM, outbox_policy, 0, 0, policies,
       GW_CFG_DEF(GW_OUTBOX_BACKPRESSURE),
       .doc = "At the budget: `backpressure` stops acknowledging devices; `drop_oldest` stops "
              "forwarding the oldest events."),
    NF("max_pending", GW_CFG_UINT32, max_pending, 1, 1000000, NULL, GW_CFG_DEF(10000),
       .doc = "Commands awaiting a device reply, all devices; one more is answered busy."),
    NF("max_pending_per_device", GW_CFG_UINT32, max_pending_per_device, 1, 65535, NULL,
       GW_CFG_DEF(16),
       .doc = "Commands awaiting a reply from one device; one more is answered busy."),
    NF("cluster", GW_CFG_BOOL, cluster, 0, 0, NULL, GW_CFG_DEF(false),
       .doc = "Several instances share this broker: retained per-device presence decides which "
              "instance answers a command (docs/SCALING.md)."),
    {NULL, 0, 0, 0, 0, NULL, false},
};

/* A topic template: only known placeholders, no wildcards, {event} where it is needed. */
static void check_template(gw__config_ctx *x, const gw_config *c, const char *key, const char *t,
                           bool needs_event)
{
    static const char *const names[] = {"{prefix}", "{product}", "{device}", "{event}", NULL};
    char path[64];
    bool has_event = false;
    snprintf(path, sizeof(path), "north.%s", key);
    if (!t || !*t) {
        gw__config_err(x, c->file, path, "must not be empty");
        return;
    }
    for (const char *p = t; *p; p++) {
        if (*p == '+' || *p == '#') {
            gw__config_err(x, c->file, path, "\"%s\": wildcards are not allowed in a topic", t);
            return;
        }
        if (*p != '{')
            continue;
        size_t i = 0;
        while (names[i] && strncmp(p, names[i], strlen(names[i])) != 0)
            i++;
        if (!names[i]) {
            gw__config_err(x, c->file, path,
                           "\"%s\": unknown placeholder (known: {prefix} {product} {device} "
                           "{event})",
                           t);
            return;
        }
        has_event |= i == 3;
        p += strlen(names[i]) - 1;
    }
    if (needs_event && !has_event)
        gw__config_err(x, c->file, path, "\"%s\": must contain {event}", t);
    else if (!needs_event && has_event)
        gw__config_err(x, c->file, path, "\"%s\": {event} only makes sense in topic_event", t);
}

void gw__config_load_north(gw__config_ctx *x, gw_config *c, const json_t *obj)
{
    gw_north_cfg *n = &c->north;
    char host[256];
    *n = (gw_north_cfg){0}; /* the defaults are north_fields'; client_id's is the host's */
    if (gethostname(host, sizeof(host)) != 0)
        snprintf(host, sizeof(host), "host");
    host[sizeof(host) - 1] = 0;
    char id[300];
    snprintf(id, sizeof(id), "iotgw-%s", host);
    n->client_id = id;
    x->errors += gw_cfg_parse(north_fields, obj, n, c->file, "north", x->diag);
    if (!obj)
        return;
    if (!n->host || !*n->host)
        gw__config_err(x, c->file, "north.host", "must not be empty");
    if (!n->client_id || !*n->client_id || strlen(n->client_id) > 128)
        gw__config_err(x, c->file, "north.client_id", "must be 1..128 bytes");
    if (!n->prefix || !*n->prefix || strpbrk(n->prefix, "+#") || n->prefix[0] == '$')
        gw__config_err(x, c->file, "north.prefix",
                       "must be non-empty, without wildcards, not starting with $");
    if (n->password && !n->username)
        gw__config_err(x, c->file, "north.password", "needs north.username");
    if ((n->cert_file != NULL) != (n->key_file != NULL))
        gw__config_err(x, c->file, n->cert_file ? "north.key_file" : "north.cert_file",
                       "cert_file and key_file go together");
    if ((n->cert_file || n->tls_insecure) && !n->ca_file)
        gw__config_err(x, c->file, "north.ca_file", "TLS settings need ca_file");
    /* relative to the folder of gateway.json, like every path in it */
    char **files[] = {&n->ca_file, &n->cert_file, &n->key_file};
    const char *fkeys[] = {"north.ca_file", "north.cert_file", "north.key_file"};
    for (int i = 0; i < 3; i++) {
        if (!*files[i])
            continue;
        char *abs = gw__config_resolve(c->dir, *files[i]);
        if (!abs) {
            gw__config_err(x, c->file, fkeys[i], "out of memory");
            continue;
        }
        if (access(abs, R_OK) != 0)
            gw__config_err(x, c->file, fkeys[i], "cannot read \"%s\"", abs);
        free(*files[i]);
        *files[i] = abs;
    }
    if (n->reconnect_max_ms < n->reconnect_min_ms)
        gw__config_err(x, c->file, "north.reconnect_max_ms", "must be >= reconnect_min_ms (%u)",
                       n->reconnect_min_ms);
    if (n->max_pending_per_device > n->max_pending)
        gw__config_err(x, c->file, "north.max_pending_per_device", "must be <= max_pending (%u)",
                       n->max_pending);
    check_template(x, c, "topic_property", n->topic_property, false);
    check_template(x, c, "topic_event", n->topic_event, true);
    check_template(x, c, "topic_online", n->topic_online, false);
    check_template(x, c, "topic_offline", n->topic_offline, false);
}

void gw__config_north_free(gw_config *c)
{
    gw_cfg_free(north_fields, &c->north);
}

int gw__config_north_reference(FILE *f)
{
    return gw_cfg_reference(f, "north", north_fields);
}

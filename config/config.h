/* config.h: the gateway's whole configuration (gateway.json, products/NAME.json, devices.json) as
 * loaded and validated once at start-up; immutable afterwards, shared read-only by every thread. */
#ifndef GW_CONFIG_H
#define GW_CONFIG_H

#include <jansson.h>
#include <stdio.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "diag.h"
#include "plugins.h"
#include "product.h"

typedef struct gw_listen {
    char address[64]; /* numeric IPv4 or IPv6 */
    uint16_t port;    /* 0: ephemeral (tests; the bound port is reported on --ready-fd) */
    char product[64]; /* binary transports: the product this listener serves ("" if none) */
    bool tls;         /* MQTT/TCP: the entry has a "tls" object (parsed by the adapter) */
    bool proxy;       /* MQTT/TCP: the entry has a "proxy_protocol" object (parsed likewise) */
} gw_listen;

typedef struct gw_device {
    char *id;
    char *name; /* may be NULL */
    char *secret;
    const gw_product *product;
    /* Per-device runtime slots: stable for an id across reloads (gateway/reload assigns it), below
     * the first configuration's device_cap; at load it is the position in gw_config.devices. */
    uint32_t index;
    /* Its keys in devices.json, in the file's order (gw_config_devices_doc writes them back so):
     * key i is bits 2i..2i+1 of key_order (0 id, 1 name, 2 product, 3 secret). */
    uint8_t n_keys;
    uint8_t key_order;
    struct gw_config *gen; /* the configuration (generation) this device belongs to */
} gw_device;

typedef enum gw_sync_mode { GW_SYNC_NORMAL, GW_SYNC_FULL } gw_sync_mode;

typedef struct gw_store_cfg {
    char *path;         /* database file; relative paths are relative to the gateway.json folder */
    uint32_t batch_max; /* commit after this many events ... */
    uint32_t batch_ms;  /* ... or this long after the batch's first event (0: as soon as idle) */
    uint32_t queue_max; /* store queue bound (events); adapters pause reading when full */
    uint32_t state_lag_ms; /* under load, device/property state trails the events by this much */
    gw_sync_mode synchronous;
    uint32_t cache_kb;      /* SQLite page cache */
    uint32_t page_size;     /* SQLite page size of a new database (bytes, a power of two) */
    int64_t retention_rows; /* keep at most this many events (oldest forwarded go first); 0: all */
    uint32_t max_db_mb;     /* disk budget of the database (used pages); 0: none */
} gw_store_cfg;

/* Per-source-address limits ("limits" in gateway.json); 0 disables each. */
typedef struct gw_limits_cfg {
    uint32_t max_connections_per_source;
    uint32_t connect_rate_per_source;  /* new connections per second, sustained */
    uint32_t connect_burst_per_source; /* ... and in a burst */
    uint32_t auth_failures_per_source; /* failed logins before a back-off */
    uint32_t auth_backoff_ms;          /* the first back-off; doubled per further failure */
    uint32_t auth_backoff_max_ms;
    uint32_t sources_max; /* sources tracked at once (the table's size) */
} gw_limits_cfg;

/* What happens when unforwarded events alone fill the outbox budget. */
typedef enum gw_outbox_policy {
    GW_OUTBOX_BACKPRESSURE, /* stop acknowledging and reading from devices (default) */
    GW_OUTBOX_DROP_OLDEST,  /* opt-in: drop the oldest unforwarded events, counted and logged */
} gw_outbox_policy;

/* The upstream bridge ("north" in gateway.json): a cloud MQTT broker, the outbox, and commands. */
typedef struct gw_north_cfg {
    bool enabled;
    char *host;
    uint32_t port;
    char *client_id;
    char *username; /* NULL: none */
    char *password; /* NULL: none */
    char *ca_file;  /* set: TLS (with cert_file/key_file for a client certificate) */
    char *cert_file;
    char *key_file;
    bool tls_insecure;    /* skip the server host name check (tests) */
    uint32_t keepalive_s; /* MQTT keep-alive towards the broker */
    bool clean_session;   /* default false: the broker keeps our command subscriptions */
    char *prefix;         /* {prefix} in the topic templates; commands arrive under it */
    char *topic_property; /* templates: {prefix} {product} {device} {event} */
    char *topic_event;
    char *topic_online;
    char *topic_offline;
    uint32_t window;           /* publishes in flight (unacknowledged) at most */
    uint32_t reconnect_min_ms; /* back-off: first delay, doubled per failure up to max, jittered */
    uint32_t reconnect_max_ms;
    /* publishes in flight and no PUBACK for this long: drop the link, reconnect, resend */
    uint32_t puback_timeout_ms;
    int64_t max_outbox_rows; /* unforwarded events at most (budget) */
    gw_outbox_policy outbox_policy;
    uint32_t max_pending;            /* commands awaiting a device reply, in total */
    uint32_t max_pending_per_device; /* ... per device */
    /* several instances behind a load balancer, one broker: device presence and instance
     * liveness as retained messages, so that only the instance holding a device (or, for an
     * offline device, exactly one) answers its commands (docs/SCALING.md) */
    bool cluster;
} gw_north_cfg;

/* A management API token: the configuration holds only the SHA-256 of the token. */
typedef struct gw_admin_token {
    char name[64];
    int role; /* 1: read, 2: admin (gw_api_role of gateway/admin/api.h) */
    unsigned char sha256[32];
} gw_admin_token;

/* The "admin" section: the management API's HTTP server (gateway/admin/api_server.c). */
typedef struct gw_admin_cfg {
    gw_listen *listeners; /* n_listeners >= 1 when enabled; [0] is also gw_config.admin */
    size_t n_listeners;
    gw_admin_token *tokens;
    size_t n_tokens;
    bool open_metrics;           /* /metrics, /health without a token on loopback listeners */
    uint32_t max_body;           /* request body bytes at most (413 past it) */
    uint32_t max_connections;    /* open HTTP connections at most (refused past it) */
    uint32_t idle_timeout_ms;    /* a request must arrive whole within it; keep-alive idle */
    uint32_t stream_clients_max; /* /api/stream clients at once (429 past it) */
    uint32_t stream_buffer;      /* unsent bytes per stream client before it is dropped */
    char *web_root;              /* the web console's folder (resolved); NULL: no console */
} gw_admin_cfg;

typedef struct gw_config {
    char *file;     /* gateway.json path as given */
    char *dir;      /* its folder: base for relative paths */
    uint32_t loops; /* I/O threads; 0 in the file means the number of cores (resolved at load) */
    int log_level;  /* GW_LOG_* */
    uint32_t log_rate_limit;  /* lines per call site per second per thread (not main); 0: none */
    uint32_t max_connections; /* all adapters, all loops */
    uint32_t read_buffer;     /* per-loop read buffer bytes */
    gw_listen admin;          /* metrics/health HTTP; admin_enabled false: none */
    bool admin_enabled;
    gw_admin_cfg admin_http; /* listeners, tokens and bounds of the management API */
    gw_store_cfg store;
    gw_north_cfg north;
    gw_limits_cfg limits;
    json_t *adapters; /* object: adapter name -> its section, checked by the adapter's cfg_fields */
    gw_product *products;
    size_t n_products;
    gw_device *devices;
    size_t n_devices;
    void *index;                      /* private: id -> product/device hash */
    const gw_config_plugins *plugins; /* the look-ups it was loaded with (outlive the config) */
    /* The documents it was built from (hot reload rebuilds from them; each product's own document
     * is gw_product.raw). devices.json is not kept: gw_config_devices_doc rebuilds it from the
     * devices (the device API rewrites it). */
    json_t *gateway_json; /* gateway.json as parsed */
    char *devices_path;   /* devices.json's resolved path (the device API writes it) */
    /* Generation: 1 for the configuration loaded at start, +1 per applied reload (set by
     * gateway/reload). */
    uint64_t generation;
    /* Per-device arrays are sized for this many device indexes ("max_devices"; 0 in the file:
     * twice the devices + 10000) so that devices added at run time fit. */
    uint32_t device_cap;
    uint32_t max_devices_set; /* "max_devices" as in the file */
    uint32_t refs;            /* atomic: gw_config_retain / gw_config_release */
} gw_config;

/* Loads gateway.json and everything it names, asking plugins (the caller's adapters and codecs,
 * e.g. gw_registry_config_plugins()) about adapter sections, protocols and codecs. Every problem
 * found is appended to diag (file, JSON path, line:column for syntax errors), and loading
 * continues so that all are reported. Returns 0 and *out on success, GW_ECONFIG if diag has
 * errors (then *out is NULL). */
int gw_config_load(const char *path, const gw_config_plugins *plugins, gw_config **out,
                   gw_diag *diag);
/* Same, but devices (an array as in devices.json, borrowed) replaces devices.json, and with base
 * set (a loaded configuration) nothing is read from disk: gateway.json and the products are base's
 * documents (devices NULL: base's too). */
int gw_config_load_with(const char *path, const gw_config_plugins *plugins, const gw_config *base,
                        const json_t *devices, gw_config **out, gw_diag *diag);
void gw_config_free(gw_config *c);
/* Reference counting of a generation (any thread): the loader returns it with one reference;
 * sessions (of their device's generation), events and commands hold one each while they keep a
 * gw_device pointer. The last release frees it. */
void gw_config_retain(const gw_config *c);
void gw_config_release(const gw_config *c);
/* Called (on the releasing thread) just before a configuration is freed; set once at start-up,
 * before any loop runs (gateway/reload counts the generations in memory). */
extern void (*gw_config_free_hook)(const gw_config *c);
/* Markdown reference of every gateway.json key (the core's sections, then each compiled-in
 * adapter's), from the gw_cfg_field tables: type, default, range, meaning (iotgw
 * --print-config-reference). Returns the number of keys without a meaning (0 when complete). */
int gw_config_reference(FILE *f, const gw_config_plugins *plugins);

/* One listening address of a loaded configuration: admin's, or an entry of an adapter's listener
 * array (the keys its ops->listen_keys name). */
typedef struct gw_config_listener {
    char adapter[32]; /* "admin", "mqtt", "coap", ... */
    char owner[64];   /* "admin", "adapters.coap.dtls_listeners": one socket set */
    char path[80];    /* "admin", "adapters.coap.dtls_listeners[1]" */
    int transport;    /* GW_TRANSPORT_TCP / _UDP (config/plugins.h) */
    gw_listen at;     /* address, port (0: ephemeral), product */
} gw_config_listener;

/* Every listener of c (entries an adapter's own check refused are left out). Returns 0 and a
 * malloc'd array in *out (free it) with *n entries, or GW_ENOMEM. */
int gw_config_listeners(const gw_config *c, gw_config_listener **out, size_t *n);

struct gw_error;
/* Writes devices (an array as in devices.json) to path atomically: a temporary file in the same
 * folder with mode 0600, fsync, rename, fsync of the folder (config_devices_write.c). 0, or a
 * negative code with err filled; on failure path is unchanged. Blocks for the fsyncs. */
int gw_config_devices_write(const char *path, const json_t *devices, struct gw_error *err);

/* True when a device of p needs its secret itself, not a hash of it: CoAP with DTLS listeners
 * (the PSK), a binary layout with a MAC keyed by the secret (config_devices.c). */
bool gw_config_secret_in_clear(const gw_config *c, const gw_product *p);
/* The products with "auth": {"mode": "device-id"} (any device knowing its id gets in) as
 * "a, b" into buf (cut to cap); their number. For the start-up and --check-config warning. */
size_t gw_config_device_id_products(const gw_config *c, char *buf, size_t cap);

const gw_product *gw_config_product(const gw_config *c, const char *id);
const gw_device *gw_config_device(const gw_config *c, const char *id);
/* Same, with a length (topic segments are not NUL-terminated). */
const gw_product *gw_config_product_n(const gw_config *c, const char *id, size_t len);
const gw_device *gw_config_device_n(const gw_config *c, const char *id, size_t len);
/* devices.json as it was loaded, rebuilt from c->devices (same devices, order, keys and key order;
 * a new array, the caller's reference), or NULL when out of memory. */
json_t *gw_config_devices_doc(const gw_config *c);

#endif

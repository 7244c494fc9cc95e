/* plugins.h: what the config loader needs of the compiled-in protocol adapters and codecs, as a
 * table of look-ups its caller passes in (gateway/registry.c fills one), so that config/
 * includes nothing of gateway/core; an adapter's ops and a codec's ops are opaque here. */
#ifndef GW_CONFIG_PLUGINS_H
#define GW_CONFIG_PLUGINS_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

#include "cfg_schema.h"
#include "diag.h"
#include "product.h"

struct gw_config;

/* The transport of a listening socket. */
typedef enum gw_transport { GW_TRANSPORT_TCP = 1, GW_TRANSPORT_UDP = 2 } gw_transport;

/* A key of an adapter's section holding an array of listeners ({"address", "port"}), and the
 * transport they are bound with. */
typedef struct gw_listen_key {
    const char *key; /* NULL ends a list */
    gw_transport transport;
} gw_listen_key;

/* An adapter as the config loader sees it: the config facts of its ops table. */
typedef struct gw_config_adapter {
    const char *name;
    const gw_cfg_field *cfg_fields;          /* its section's keys, {NULL}-ended (NULL: none) */
    const gw_cfg_field *product_auth_fields; /* keys of a product's "auth" it owns (NULL: none) */
    size_t product_data_size;                /* the block product_auth_fields are parsed into */
    const gw_listen_key *listen_keys;        /* NULL: none */
    const gw_cfg_field *listener_tls_fields; /* keys of a listener's "tls" (NULL: no TLS) */
    const void *ops;                         /* opaque, for adapter_check */
} gw_config_adapter;

typedef struct gw_config_plugins {
    /* The adapter called name, or the i-th compiled in: 0 and *out, or -1 if there is none. */
    int (*adapter)(const char *name, gw_config_adapter *out);
    int (*adapter_at)(size_t i, gw_config_adapter *out);
    /* The adapter's own check of its section against the whole configuration (an init and uninit
     * on a throw-away instance): 0, or nonzero with its problems (if any) added to diag. */
    int (*adapter_check)(const gw_config_adapter *a, const json_t *section,
                         const struct gw_config *c, gw_diag *diag);
    /* The codec called name (NULL: none compiled in), and the product keys it owns ({NULL}-ended;
     * NULL: none). */
    const struct gw_codec_ops *(*codec)(const char *name);
    const char *const *(*codec_product_keys)(const struct gw_codec_ops *codec);
    /* Runs the init of p->codec_ops on p: 0, or nonzero with its problems (if any) in diag; and
     * its uninit. */
    int (*codec_init)(gw_product *p, gw_diag *diag, const char *file);
    void (*codec_uninit)(gw_product *p);
    /* True when p's codec keys something with a device's secret (a frame MAC): the secret must be
     * kept in clear, not as a hash. NULL: never. */
    bool (*codec_secret_is_key)(const gw_product *p);
} gw_config_plugins;

#endif

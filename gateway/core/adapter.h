/* adapter.h: the protocol adapter plugin interface. An adapter is one const table registered in
 * registry.c: its functions (the runtime calls start/resume/stop on each loop thread), its config
 * keys with their defaults, and its metrics. Adding one: its folder, one CMake option, one
 * registry line (tests/unit/fake_adapter.c builds one through these seams). */
#ifndef GW_ADAPTER_H
#define GW_ADAPTER_H

#include <jansson.h>
#include <stdint.h>

#include "../../config/cfg_schema.h"
#include "../../config/diag.h"
#include "../../config/plugins.h" /* gw_transport, gw_listen_key */
#include "../util/error.h"
#include "../util/metrics.h"

struct gw_config;
typedef struct gw_adapter gw_adapter;
typedef struct gw_loop gw_loop;
typedef struct gw_runtime gw_runtime;
typedef struct gw_adapter_ops gw_adapter_ops;

/* One configured adapter (one per name in gateway.json "adapters"). */
struct gw_adapter {
    const gw_adapter_ops *ops;
    gw_runtime *rt;
    void *state; /* adapter-owned: parsed config, per-loop state array */
};

struct gw_adapter_ops {
    const char *name;
    /* Once, on the main thread, before any loop runs: parse and check section (the adapter's part
     * of gateway.json, path "adapters.<name>" in gcfg->file) against the whole configuration
     * (products and devices are loaded), append problems to diag. 0 or GW_ECONFIG. Also called by
     * the config loader on a scratch instance (a->rt NULL) followed by uninit. The section's keys
     * are parsed by gw_adapter_parse_config against cfg_fields. */
    int (*init)(gw_adapter *a, const json_t *section, const struct gw_config *gcfg, gw_diag *diag);
    /* Once per loop, on that loop's thread: open listeners. 0 or -errno. */
    int (*start)(gw_adapter *a, gw_loop *loop);
    /* Back-pressure, on the loop's thread: restart reading from this loop's sessions once the
     * store has drained. There is no pause: whatever reads stops itself when it sees the store
     * full (gw_loop_note_backpressure), at the message that found it full. */
    void (*resume)(gw_adapter *a, gw_loop *loop);
    /* Shutdown step 1, on the loop's thread: close listeners, stop reading (stop accepting). */
    void (*stop)(gw_adapter *a, gw_loop *loop);
    /* Shutdown step 2, on the loop's thread: close every session (async; offline events). */
    void (*close_sessions)(gw_adapter *a, gw_loop *loop);
    /* After every loop has stopped. */
    void (*uninit)(gw_adapter *a);
    /* The keys of its section that list listeners, ended by {NULL}: the config check refuses two
     * listeners taking one port of one transport (across all adapters and admin), and start-up
     * refuses a port another process holds (gw_listen_probe). */
    const gw_listen_key *listen_keys;
    /* Its section's keys with their defaults and ranges, ended by {NULL} (the config reference,
     * iotgw --config-reference, is printed from it). */
    const gw_cfg_field *cfg_fields;
    /* Its metrics, ended by {NULL}: registered at start, shown by /metrics whether configured or
     * not. */
    const gw_metric_def *metrics;
    /* The keys it owns in the "auth" object of its protocol's products, with their defaults,
     * ended by {NULL} (NULL: none): the config loader parses them into a product_data_size block
     * at gw_product.adapter_data, read-only once loaded (e.g. CoAP's coap_query_token). */
    const gw_cfg_field *product_auth_fields;
    size_t product_data_size;
    /* Hot reload, main thread, loops running (NULL: any change of its section needs a restart):
     * section is its part of the new gateway.json, gcfg the new configuration (validated, already
     * the current generation). Applies a change of listeners only, adding and removing them on
     * every loop (gw_runtime_run_on_all); sessions stay. 0 applied, 1 other keys changed too
     * (nothing done: needs a restart), or a negative code (a listener could not be bound: logged,
     * the others applied). */
    int (*relisten)(gw_adapter *a, const json_t *section, const struct gw_config *gcfg);
    /* Hot reload, main thread, after every reload that was applied (NULL: nothing to do): e.g.
     * TLS certificates, keys, CAs and CRLs read again from their files. */
    void (*reloaded)(gw_adapter *a, const struct gw_config *gcfg);
    /* The keys of a listener's "tls" object (NULL: its listeners take no "tls"), for the config
     * reference; the adapter parses them (protocols/stream/stream_tls.h). */
    const gw_cfg_field *listener_tls_fields;
};

/* For init: registers the adapter's metrics (once), then parses section into cfg (the defaults
 * first) with ops->cfg_fields, reporting under "adapters.<name>". 0 or GW_ECONFIG. */
int gw_adapter_parse_config(gw_adapter *a, const json_t *section, void *cfg,
                            const struct gw_config *gcfg, gw_diag *diag);

#endif

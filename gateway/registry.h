/* registry.h: the static lists of adapters and codecs compiled into this binary (one line each in
 * registry.c, behind GW_ADAPTER_<NAME> / GW_CODEC_<NAME> CMake options). */
#ifndef GW_REGISTRY_H
#define GW_REGISTRY_H

#include "core/adapter.h"
#include "core/codec.h"

/* NULL if no codec/adapter of that name is compiled in. */
const gw_codec_ops *gw_registry_codec(const char *name);
const gw_adapter_ops *gw_registry_adapter(const char *name);

/* Iteration: NULL past the end. */
const gw_adapter_ops *gw_registry_adapter_at(size_t i);
const gw_codec_ops *gw_registry_codec_at(size_t i);

/* Checks every compiled-in table once (names, no duplicates) and registers the adapters'
 * metrics: 0 or GW_ECONFIG with err. */
int gw_registry_check(gw_error *err);

/* Adds an adapter that is not built in (tests/unit/fake_adapter.c), on the main thread before
 * gw_config_load: it then serves "adapters.<name>" and products of that protocol like a built-in
 * one, and its metrics are registered. 0, or GW_ECONFIG (name taken, table full) with err. */
int gw_registry_add_adapter(const gw_adapter_ops *ops, gw_error *err);

/* The look-ups gw_config_load and gw_config_reference need (config/plugins.h), answered from these
 * lists: config/ itself includes nothing of gateway/core. */
const gw_config_plugins *gw_registry_config_plugins(void);

#endif

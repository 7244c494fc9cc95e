/* registry.c: the adapters and codecs compiled into this binary, each behind its CMake option.
 * Adapters come from CMake's gw_adapter() lines (gen/gw_adapters.h); a codec is one include and one
 * line here. */
#include "registry.h"

#include <stdio.h>
#include <string.h>

#include "../config/config.h"

#ifdef GW_CODEC_JSON
#include "../codecs/json/codec_json.h"
#endif
#ifdef GW_CODEC_BINARY
#include "../codecs/binary/codec_binary.h"
#endif
#ifdef GW_CODEC_PROTOBUF
#include "../codecs/protobuf/codec_protobuf.h"
#endif

/* gen/gw_adapters.h (CMake): GW_BUILTIN_ADAPTERS(X), X(name) for each gw_adapter() line that is
 * on; the adapter's table is gw_adapter_<name>_ops. */
#include "gw_adapters.h"

#define GW_ADAPTER_DECL(name) extern const gw_adapter_ops gw_adapter_##name##_ops;
GW_BUILTIN_ADAPTERS(GW_ADAPTER_DECL)

#define ADAPTERS_MAX 16 /* built in plus added (gw_registry_add_adapter) */
static const gw_adapter_ops *adapters[ADAPTERS_MAX + 1] = {
#define GW_ADAPTER_ENTRY(name) &gw_adapter_##name##_ops,
    GW_BUILTIN_ADAPTERS(GW_ADAPTER_ENTRY) NULL,
};

static const gw_codec_ops *const codecs[] = {
#ifdef GW_CODEC_JSON
    &gw_codec_json_ops,
#endif
#ifdef GW_CODEC_BINARY
    &gw_codec_binary_ops,
#endif
#ifdef GW_CODEC_PROTOBUF
    &gw_codec_protobuf_ops,
#endif
    NULL,
};

const gw_adapter_ops *gw_registry_adapter_at(size_t i)
{
    return i < sizeof(adapters) / sizeof(adapters[0]) ? adapters[i] : NULL;
}

const gw_codec_ops *gw_registry_codec_at(size_t i)
{
    return i < sizeof(codecs) / sizeof(codecs[0]) ? codecs[i] : NULL;
}

const gw_adapter_ops *gw_registry_adapter(const char *name)
{
    for (size_t i = 0; adapters[i]; i++)
        if (strcmp(adapters[i]->name, name) == 0)
            return adapters[i];
    return NULL;
}

const gw_codec_ops *gw_registry_codec(const char *name)
{
    for (size_t i = 0; codecs[i]; i++)
        if (strcmp(codecs[i]->name, name) == 0)
            return codecs[i];
    return NULL;
}

int gw_registry_add_adapter(const gw_adapter_ops *ops, gw_error *err)
{
    size_t n = 0;
    while (adapters[n])
        if (strcmp(adapters[n++]->name, ops->name) == 0)
            return gw_error_set(err, GW_ECONFIG, "adapter %s registered twice", ops->name);
    if (n == ADAPTERS_MAX)
        return gw_error_set(err, GW_ECONFIG, "adapter %s: more than %d adapters", ops->name,
                            ADAPTERS_MAX);
    if (gw_metrics_register(ops->metrics) != 0)
        return gw_error_set(err, GW_ENOMEM, "adapter %s: too many metrics", ops->name);
    adapters[n] = ops;
    return 0;
}

int gw_registry_check(gw_error *err)
{
    for (size_t i = 0; adapters[i]; i++) {
        if (gw_metrics_register(adapters[i]->metrics) != 0)
            return gw_error_set(err, GW_ENOMEM, "adapter %s: too many metrics", adapters[i]->name);
        for (size_t j = 0; j < i; j++)
            if (strcmp(adapters[i]->name, adapters[j]->name) == 0)
                return gw_error_set(err, GW_ECONFIG, "adapter %s registered twice",
                                    adapters[i]->name);
    }
    for (size_t i = 0; codecs[i]; i++) {
        for (size_t j = 0; j < i; j++)
            if (strcmp(codecs[i]->name, codecs[j]->name) == 0)
                return gw_error_set(err, GW_ECONFIG, "codec %s registered twice", codecs[i]->name);
    }
    return 0;
}

int gw_adapter_parse_config(gw_adapter *a, const json_t *section, void *cfg,
                            const struct gw_config *gcfg, gw_diag *diag)
{
    char path[96];
    if (gw_metrics_register(a->ops->metrics) != 0) {
        gw_diag_add(diag, gcfg->file, "adapters", "adapter %s: too many metrics", a->ops->name);
        return GW_ECONFIG;
    }
    snprintf(path, sizeof(path), "adapters.%s", a->ops->name);
    return gw_cfg_parse(a->ops->cfg_fields, section, cfg, gcfg->file, path, diag) > 0 ? GW_ECONFIG
                                                                                      : 0;
}

/* ---- the config loader's view (config/plugins.h) ---- */

static int describe(const gw_adapter_ops *ops, gw_config_adapter *out)
{
    if (!ops)
        return -1;
    *out = (gw_config_adapter){.name = ops->name,
                               .cfg_fields = ops->cfg_fields,
                               .product_auth_fields = ops->product_auth_fields,
                               .product_data_size = ops->product_data_size,
                               .listen_keys = ops->listen_keys,
                               .listener_tls_fields = ops->listener_tls_fields,
                               .ops = ops};
    return 0;
}

static int cfg_adapter(const char *name, gw_config_adapter *out)
{
    return describe(gw_registry_adapter(name), out);
}

static int cfg_adapter_at(size_t i, gw_config_adapter *out)
{
    return describe(gw_registry_adapter_at(i), out);
}

static int cfg_adapter_check(const gw_config_adapter *ad, const json_t *section, const gw_config *c,
                             gw_diag *diag)
{
    const gw_adapter_ops *ops = ad->ops;
    if (!ops->init)
        return 0;
    gw_adapter tmp = {.ops = ops, .rt = NULL, .state = NULL};
    int rc = ops->init(&tmp, section, c, diag);
    if (ops->uninit)
        ops->uninit(&tmp);
    return rc;
}

static const char *const *cfg_codec_keys(const gw_codec_ops *codec)
{
    return codec->product_keys;
}

static int cfg_codec_init(gw_product *p, gw_diag *diag, const char *file)
{
    return p->codec_ops->init ? p->codec_ops->init(p, diag, file) : 0;
}

static void cfg_codec_uninit(gw_product *p)
{
    if (p->codec_ops->uninit)
        p->codec_ops->uninit(p);
}

static bool cfg_codec_secret_is_key(const gw_product *p)
{
    gw_frame_info fi = {0};
    if (!p->codec_ops || !p->codec_ops->frame_info)
        return false;
    p->codec_ops->frame_info(p, &fi);
    return fi.secret_as_key;
}

const gw_config_plugins *gw_registry_config_plugins(void)
{
    static const gw_config_plugins table = {
        .adapter = cfg_adapter,
        .adapter_at = cfg_adapter_at,
        .adapter_check = cfg_adapter_check,
        .codec = gw_registry_codec,
        .codec_product_keys = cfg_codec_keys,
        .codec_init = cfg_codec_init,
        .codec_uninit = cfg_codec_uninit,
        .codec_secret_is_key = cfg_codec_secret_is_key,
    };
    return &table;
}

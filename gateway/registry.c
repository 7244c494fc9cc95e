/* registry.c: the adapters and codecs compiled into this binary, one line each, each behind its
 * CMake option. A new plugin is one include and one line here. */
#include "registry.h"

#include <stdio.h>
#include <string.h>

#include "../config/config.h"

#ifdef GW_ADAPTER_MQTT
#include "../protocols/mqtt/mqtt.h"
#endif
#ifdef GW_ADAPTER_TCP
#include "../protocols/tcp/tcp.h"
#endif
#ifdef GW_ADAPTER_UDP
#include "../protocols/udp/udp.h"
#endif
#ifdef GW_ADAPTER_COAP
#include "../protocols/coap/coap.h"
#endif
#ifdef GW_CODEC_JSON
#include "../codecs/json/codec_json.h"
#endif
#ifdef GW_CODEC_BINARY
#include "../codecs/binary/codec_binary.h"
#endif
#ifdef GW_CODEC_PROTOBUF
#include "../codecs/protobuf/codec_protobuf.h"
#endif

static const gw_adapter_ops *const adapters[] = {
#ifdef GW_ADAPTER_MQTT
    &gw_adapter_mqtt_ops,
#endif
#ifdef GW_ADAPTER_TCP
    &gw_adapter_tcp_ops,
#endif
#ifdef GW_ADAPTER_UDP
    &gw_adapter_udp_ops,
#endif
#ifdef GW_ADAPTER_COAP
    &gw_adapter_coap_ops,
#endif
    NULL,
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
        if (codecs[i]->abi != GW_CODEC_ABI)
            return gw_error_set(err, GW_ECONFIG, "codec %s: ABI %u, expected %u", codecs[i]->name,
                                codecs[i]->abi, GW_CODEC_ABI);
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

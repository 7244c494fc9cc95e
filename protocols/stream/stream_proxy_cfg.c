/* stream_proxy_cfg.c: a stream listener's "proxy_protocol" object (stream_proxy_cfg.h) and the
 * counters of refused headers. */
#include "stream_proxy_cfg.h"

#include <stdio.h>
#include <string.h>

#include "../../gateway/util/alloc.h"
#include "../../gateway/util/metrics.h"

/* X(handle, "name", "help"): one per gw_proxy_err a connection can be refused for */
#define GW_PROXY_METRICS(X)                                                                        \
    X(GW_M_PROXY_SIGNATURE, "proxy_refused_total{reason=\"signature\"}",                           \
      "connections on proxy_protocol listeners refused before the device spoke, by reason")        \
    X(GW_M_PROXY_V1, "proxy_refused_total{reason=\"v1\"}", NULL)                                   \
    X(GW_M_PROXY_VERSION, "proxy_refused_total{reason=\"version\"}", NULL)                         \
    X(GW_M_PROXY_COMMAND, "proxy_refused_total{reason=\"command\"}", NULL)                         \
    X(GW_M_PROXY_FAMILY, "proxy_refused_total{reason=\"family\"}", NULL)                           \
    X(GW_M_PROXY_LENGTH, "proxy_refused_total{reason=\"length\"}", NULL)                           \
    X(GW_M_PROXY_TOO_LONG, "proxy_refused_total{reason=\"too_long\"}", NULL)                       \
    X(GW_M_PROXY_SOURCE, "proxy_refused_total{reason=\"source\"}", NULL)                           \
    X(GW_M_PROXY_TIMEOUT, "proxy_refused_total{reason=\"timeout\"}", NULL)                         \
    X(GW_M_PROXY_TRUNCATED, "proxy_refused_total{reason=\"truncated\"}", NULL)

GW_PROXY_METRICS(GW_METRIC_HANDLE_DECL)
GW_PROXY_METRICS(GW_METRIC_HANDLE_DEF)
static const gw_metric_def proxy_metrics[] = {GW_PROXY_METRICS(GW_METRIC_DEF){NULL, NULL, NULL}};

void gw__stream_proxy_count(gw_proxy_err e)
{
    static gw_metric *const by[GW_PROXY_ERR_COUNT] = {
        [GW_PROXY_ERR_SIGNATURE] = &GW_M_PROXY_SIGNATURE,
        [GW_PROXY_ERR_V1] = &GW_M_PROXY_V1,
        [GW_PROXY_ERR_VERSION] = &GW_M_PROXY_VERSION,
        [GW_PROXY_ERR_COMMAND] = &GW_M_PROXY_COMMAND,
        [GW_PROXY_ERR_FAMILY] = &GW_M_PROXY_FAMILY,
        [GW_PROXY_ERR_LENGTH] = &GW_M_PROXY_LENGTH,
        [GW_PROXY_ERR_TOO_LONG] = &GW_M_PROXY_TOO_LONG,
        [GW_PROXY_ERR_SOURCE] = &GW_M_PROXY_SOURCE,
        [GW_PROXY_ERR_TIMEOUT] = &GW_M_PROXY_TIMEOUT,
        [GW_PROXY_ERR_TRUNCATED] = &GW_M_PROXY_TRUNCATED,
    };
    if ((unsigned)e < GW_PROXY_ERR_COUNT && by[e])
        gw_metric_inc(*by[e]);
}

static int setup_one(const json_t *obj, uint32_t timeout_ms, const char *file, const char *path,
                     gw_diag *diag, gw_stream_proxy **out)
{
    char p[128];
    int errors = 0;
    const char *key;
    const json_t *v;

    json_object_foreach((json_t *)obj, key, v)
    {
        if (strcmp(key, "from") != 0) {
            gw_diag_pathf(p, sizeof(p), "%s.%s", path, key);
            gw_diag_add(diag, file, p, "unknown key");
            errors++;
        }
    }
    const json_t *from = json_object_get(obj, "from");
    snprintf(p, sizeof(p), "%s.from", path);
    size_t n = json_array_size(from);
    if (!from) {
        gw_diag_add(diag, file, p, "missing required key");
        return errors + 1;
    }
    if (!json_is_array(from) || n == 0 || n > GW_PROXY_FROM_MAX) {
        gw_diag_add(diag, file, p,
                    "must be an array of 1..%d addresses or CIDR prefixes (\"10.0.0.0/8\")",
                    GW_PROXY_FROM_MAX);
        return errors + 1;
    }
    gw_stream_proxy *px = gw_calloc(GW_AREA_RUNTIME, 1, sizeof(*px) + n * sizeof(gw_proxy_net));
    if (!px)
        return -1;
    *out = px;
    px->timeout_ms = timeout_ms;
    px->n = (uint32_t)n;
    for (size_t i = 0; i < n; i++) {
        const char *s = json_string_value(json_array_get(from, i));
        if (!s || gw_proxy_net_parse(s, &px->from[i]) != 0) {
            gw_diag_pathf(p, sizeof(p), "%s.from[%zu]", path, i);
            gw_diag_add(diag, file, p,
                        "%s%s%s is not an IPv4/IPv6 address or CIDR prefix (\"10.0.0.0/8\"; "
                        "no host bits set)",
                        s ? "\"" : "", s ? s : "not a string:", s ? "\"" : "");
            errors++;
        }
    }
    return errors;
}

int gw_stream_proxy_setup(const json_t *section, const char *key, const gw_listen_list *ls,
                          const char *adapter, uint32_t timeout_ms, const gw_config *gcfg,
                          gw_diag *diag, gw_stream_proxy ***out)
{
    gw_metrics_register(proxy_metrics);
    *out = gw_calloc(GW_AREA_RUNTIME, ls->n ? ls->n : 1, sizeof(gw_stream_proxy *));
    if (!*out)
        return -1;
    const json_t *arr = json_object_get(section, key);
    int errors = 0;
    char path[96];
    for (size_t i = 0; i < ls->n; i++) {
        const json_t *obj = json_object_get(json_array_get(arr, i), "proxy_protocol");
        if (!json_is_object(obj))
            continue; /* (not an object: reported by the listener's parser) */
        snprintf(path, sizeof(path), "adapters.%s.%s[%zu].proxy_protocol", adapter, key, i);
        int rc = setup_one(obj, timeout_ms, gcfg->file, path, diag, &(*out)[i]);
        if (rc < 0)
            return -1;
        errors += rc;
    }
    return errors;
}

void gw_stream_proxy_free_all(gw_stream_proxy **v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        gw_free(GW_AREA_RUNTIME, v[i]);
    gw_free(GW_AREA_RUNTIME, v);
}

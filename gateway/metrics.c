/* metrics.c: metric shards, sums and the Prometheus text rendering. */
#include "metrics.h"

#include <stdio.h>

gw_metric_shard gw_metric_shards[GW_METRIC_SHARDS];
_Thread_local unsigned gw_metric_shard_id;

void gw_metrics_thread_init(unsigned id)
{
    gw_metric_shard_id = id % GW_METRIC_SHARDS;
}

int64_t gw_metric_get(gw_metric m)
{
    int64_t sum = 0;
    for (int i = 0; i < GW_METRIC_SHARDS; i++)
        sum += __atomic_load_n(&gw_metric_shards[i].v[m], __ATOMIC_RELAXED);
    return sum;
}

static const char *const plain_names[] = {
#define GW_M_NAME(e, name, help) name,
    GW_METRICS(GW_M_NAME)
#undef GW_M_NAME
};

static const char *const mqtt_err_labels[] = {
#define GW_M_LABEL(e, label) label,
    GW_MQTT_ERRORS(GW_M_LABEL)
#undef GW_M_LABEL
};

size_t gw_metrics_render(char *buf, size_t cap)
{
    size_t n = 0;
#define EMIT(...)                                                                                  \
    do {                                                                                           \
        if (n < cap)                                                                               \
            n += (size_t)snprintf(buf + n, cap - n, __VA_ARGS__);                                  \
    } while (0)
    for (int m = 0; m < GW_M__PLAIN_END; m++)
        EMIT("iotgw_%s %lld\n", plain_names[m], (long long)gw_metric_get((gw_metric)m));
    for (int r = 1; r < GW_R__COUNT; r++)
        EMIT("iotgw_messages_rejected_total{reason=\"%s\"} %lld\n", gw_reason_name((gw_reason)r),
             (long long)gw_metric_get((gw_metric)(GW_M__REJECT_BASE + r)));
    for (int e = 0; e < GW_MQTT_E__COUNT; e++)
        EMIT("iotgw_mqtt_protocol_errors_total{error=\"%s\"} %lld\n", mqtt_err_labels[e],
             (long long)gw_metric_get((gw_metric)(GW_M__MQTT_ERR_BASE + e)));
#undef EMIT
    return n < cap ? n : cap;
}

/* metrics.c: metric shards, sums, the registry of metric names (the core's enum and the tables
 * adapters register) and the Prometheus text rendering, one # HELP / # TYPE per family. */
#include "metrics.h"

#include <stdbool.h>
#include <stdio.h>
#include <string.h>

#include "error.h"

gw_metric_shard gw_metric_shards[GW_METRIC_SHARDS];
_Thread_local unsigned gw_metric_shard_id;

/* Name and help of every plain metric (the reject block is rendered from gw_reason_name). */
static const char *names[GW_M__MAX] = {
#define GW_M_NAME(e, name, help) [e] = name,
    GW_METRICS(GW_M_NAME)
#undef GW_M_NAME
};
static const char *helps[GW_M__MAX] = {
#define GW_M_HELP(e, name, help) [e] = help,
    GW_METRICS(GW_M_HELP)
#undef GW_M_HELP
};
static unsigned n_metrics = GW_M__CORE_END; /* the next free id */
static const gw_metric_def *tables[64];     /* registered tables, so each registers once */
static size_t n_tables;

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

int gw_metrics_register(const gw_metric_def *defs)
{
    size_t n = 0;
    if (!defs)
        return 0;
    for (size_t i = 0; i < n_tables; i++)
        if (tables[i] == defs)
            return 0;
    while (defs[n].name)
        n++;
    if (n_tables == sizeof(tables) / sizeof(tables[0]) || n_metrics + n > GW_M__MAX)
        return GW_ENOMEM;
    tables[n_tables++] = defs;
    for (size_t i = 0; i < n; i++, n_metrics++) {
        names[n_metrics] = defs[i].name;
        helps[n_metrics] = defs[i].help;
        if (defs[i].id)
            *defs[i].id = (gw_metric)n_metrics;
    }
    return 0;
}

/* The length of a name's family ("a_total{x=\"1\"}" -> "a_total"). */
static size_t family_len(const char *name)
{
    return strcspn(name, "{");
}

static bool same_family(unsigned a, unsigned b)
{
    size_t n = family_len(names[a]);
    return n == family_len(names[b]) && memcmp(names[a], names[b], n) == 0;
}

static bool plain(unsigned m)
{
    return (m > GW_M__UNREGISTERED && m < GW_M__PLAIN_END) ||
           (m >= GW_M__CORE_END && m < n_metrics);
}

static size_t (*renderers[8])(char *buf, size_t cap);
static unsigned n_renderers;

void gw_metrics_add_renderer(size_t (*fn)(char *buf, size_t cap))
{
    for (unsigned i = 0; i < n_renderers; i++)
        if (renderers[i] == fn)
            return;
    if (n_renderers < 8)
        renderers[n_renderers++] = fn;
}

size_t gw_metrics_render(char *buf, size_t cap)
{
    size_t n = 0;
#define EMIT(...)                                                                                  \
    do {                                                                                           \
        if (n < cap)                                                                               \
            n += (size_t)snprintf(buf + n, cap - n, __VA_ARGS__);                                  \
    } while (0)
    for (unsigned m = 0; m < n_metrics; m++) {
        bool first = plain(m);
        for (unsigned j = 0; first && j < m; j++)
            first = !(plain(j) && same_family(j, m));
        if (!first)
            continue; /* rendered with its family */
        const char *help = NULL;
        for (unsigned j = m; j < n_metrics && !help; j++)
            if (plain(j) && same_family(j, m))
                help = helps[j];
        int fl = (int)family_len(names[m]);
        bool counter = fl > 6 && memcmp(names[m] + fl - 6, "_total", 6) == 0;
        EMIT("# HELP iotgw_%.*s %s\n# TYPE iotgw_%.*s %s\n", fl, names[m], help ? help : "", fl,
             names[m], counter ? "counter" : "gauge");
        for (unsigned j = m; j < n_metrics; j++)
            if (plain(j) && same_family(j, m))
                EMIT("iotgw_%s %lld\n", names[j], (long long)gw_metric_get((gw_metric)j));
    }
    EMIT("# HELP iotgw_messages_rejected_total device messages refused, by reason\n"
         "# TYPE iotgw_messages_rejected_total counter\n");
    for (int r = 1; r < GW_R__COUNT; r++)
        EMIT("iotgw_messages_rejected_total{reason=\"%s\"} %lld\n", gw_reason_name((gw_reason)r),
             (long long)gw_metric_get((gw_metric)(GW_M__REJECT_BASE + r)));
    for (unsigned i = 0; i < n_renderers && n < cap; i++)
        n += renderers[i](buf + n, cap - n);
#undef EMIT
    return n < cap ? n : cap;
}

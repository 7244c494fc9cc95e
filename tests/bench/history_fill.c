/* history_fill.c: fills a gateway database through the store's own ingest path (gw_store_open,
 * the writer thread, its batches, outbox off) with an online event per device and then property
 * reports of random devices, and prints the ingest rate per slice of events; then, optionally,
 * the latency of "a device's latest 100 events" through the store's reader (the API's query, no
 * HTTP). --index adds the plain alternative, an index on events(device), to compare its cost.
 * Built with -DHISTORY_FILL_BASE against a tree without the history layout, it is the baseline.
 * Driven by bench_history.py:
 *   history_fill -c gateway.json -n EVENTS [--index] [--slice N] [--queries Q] */
#include <jansson.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "config/config.h"
#include "gateway/registry.h"
#include "gateway/util/alloc.h"
#include "gateway/util/metrics.h"
#include "storage/store.h"

#ifdef HISTORY_FILL_BASE
#define BASE_MODE 1
#else
#define BASE_MODE 0
#endif

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* CPU seconds of the whole process (both threads): less sensitive than the rate to what else
 * runs on a shared machine. */
static double cpu_s(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
           (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6;
}

static uint64_t rng = 88172645463325252ull;
static uint64_t next_rand(void)
{
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

#ifndef HISTORY_FILL_BASE
static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static int count_row(void *arg, const gw_outbox_row *row)
{
    (void)row;
    (*(long *)arg)++;
    return 0;
}

/* Latest 100 of random devices through the reader the API uses (gw_store_reader_history). */
static void query_latency(const gw_config *cfg, int queries)
{
    gw_store_reader *r;
    gw_error err = {0, ""};
    double *t = calloc((size_t)queries, sizeof(*t));
    if (!t || gw_store_reader_open(&r, cfg, &err)) {
        fprintf(stderr, "reader: %s\n", err.msg);
        exit(2);
    }
    long rows = 0;
    for (int i = 0; i < queries; i++) {
        const gw_device *d = &cfg->devices[next_rand() % cfg->n_devices];
        gw_history_query q = {
            .device = d->id, .from = INT64_MIN, .to = INT64_MAX, .limit = 100, .scan_max = 2000};
        int64_t next;
        double t0 = now_s();
        if (gw_store_reader_history(r, &q, count_row, &rows, &next) < 0) {
            fprintf(stderr, "history query failed\n");
            exit(2);
        }
        t[i] = (now_s() - t0) * 1e3;
    }
    qsort(t, (size_t)queries, sizeof(*t), cmp_double);
    printf("bench=history_store queries=%d rows=%ld p50_ms=%.3f p99_ms=%.3f max_ms=%.3f\n", queries,
           rows, t[queries / 2], t[queries * 99 / 100], t[queries - 1]);
    gw_store_reader_close(r);
    free(t);
}
#endif

int main(int argc, char **argv)
{
    const char *cfg_path = NULL;
    long long events = 1000000, slice = 1000000;
    int with_index = 0, queries = 0;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-c") && i + 1 < argc)
            cfg_path = argv[++i];
        else if (!strcmp(argv[i], "-n") && i + 1 < argc)
            events = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--slice") && i + 1 < argc)
            slice = atoll(argv[++i]);
        else if (!strcmp(argv[i], "--queries") && i + 1 < argc)
            queries = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--index"))
            with_index = 1;
        else {
            fprintf(stderr, "usage: history_fill -c gateway.json -n EVENTS [--index]"
                            " [--slice N] [--queries Q]\n");
            return 1;
        }
    }
    gw_config *cfg;
    gw_diag diag = {0};
    gw_error err = {0, ""};
    gw_store *s;
    if (!cfg_path || gw_config_load(cfg_path, gw_registry_config_plugins(), &cfg, &diag) ||
        diag.n) {
        for (size_t i = 0; i < diag.n; i++)
            fprintf(stderr, "%s\n", diag.msgs[i]);
        return 2;
    }
    gw_metrics_thread_init(0);
    if (gw_store_open(&s, cfg, &err)) {
        fprintf(stderr, "store: %s\n", err.msg);
        return 2;
    }
    if (with_index) { /* the alternative layout: an index on events(device) */
        sqlite3 *db;
        if (sqlite3_open(cfg->store.path, &db) != SQLITE_OK ||
            sqlite3_exec(db, "CREATE INDEX IF NOT EXISTS bench_events_device ON events(device)",
                         NULL, NULL, NULL) != SQLITE_OK) {
            fprintf(stderr, "create index: %s\n", sqlite3_errmsg(db));
            return 2;
        }
        sqlite3_close(db);
    }
    if (gw_store_start(s, NULL, NULL)) {
        fprintf(stderr, "store start failed\n");
        return 2;
    }
    /* every device goes online first, as sessions do */
    for (size_t i = 0; i < cfg->n_devices; i++) {
        while (gw_store_full(s))
            usleep(100);
        gw_event *ev = gw_store_event_new(s, GW_EV_ONLINE, &cfg->devices[i]);
        if (!ev)
            return 2;
        ev->payload = gw_strdup(GW_AREA_EVENT, "{\"adapter\":\"mqtt\",\"peer\":\"127.0.0.1:1\"}");
        gw_store_submit(s, ev, ev, 1);
    }
    const char *mode = BASE_MODE ? "base" : with_index ? "index" : "chain";
    double t0 = now_s(), ts = t0, c0 = cpu_s();
    int64_t base_ms = gw_now_ms();
    long long done_slice = 0;
    for (long long i = 0; i < events; i++) {
        while (gw_store_full(s))
            usleep(100);
        const gw_device *d = &cfg->devices[next_rand() % cfg->n_devices];
        gw_event *ev = gw_store_event_new(s, GW_EV_PROPERTY, d);
        if (!ev) {
            fprintf(stderr, "out of memory\n");
            return 2;
        }
        double temp = (double)(i % 1000) / 10.0;
        ev->ts = ev->rx_ts = base_ms + i / 1000;
        snprintf(ev->msg_id, sizeof(ev->msg_id), "%lld", i);
        char buf[160];
        int n = snprintf(buf, sizeof(buf),
                         "{\"temperature\":%.1f,\"humidity\":40.5,\"level\":%d,"
                         "\"name\":\"bench-history-padding-0123456789\"}",
                         temp, (int)(i % 10));
        (void)n;
        ev->payload = gw_strdup(GW_AREA_EVENT, buf);
        gw_store_submit(s, ev, ev, 1);
        if ((i + 1) % slice == 0) {
            /* the queue holds at most queue_max: the rate of a slice is the writer's */
            double t = now_s();
            printf("bench=history_fill_slice layout=%s events=%lld msg_per_s=%.0f\n", mode, i + 1,
                   (double)(i + 1 - done_slice) / (t - ts));
            fflush(stdout);
            ts = t;
            done_slice = i + 1;
        }
    }
    gw_store_close(s);
    double total = now_s() - t0, cpu = cpu_s() - c0;
    printf("bench=history_fill layout=%s events=%lld devices=%zu seconds=%.1f msg_per_s=%.0f"
           " cpu_us_per_msg=%.2f\n",
           mode, events, cfg->n_devices, total, (double)events / total, cpu * 1e6 / (double)events);
    fflush(stdout);
#ifndef HISTORY_FILL_BASE
    if (queries > 0)
        query_latency(cfg, queries);
#else
    (void)queries;
#endif
    gw_config_free(cfg);
    return 0;
}

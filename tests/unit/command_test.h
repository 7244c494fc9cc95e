/* command_test.h: what the command unit tests share: a config (thermo, a queueing copy of it, and
 * the shipped meter-tcp and sensor-udp products switched to mqtt so no TCP/UDP listener is needed)
 * loaded through the real loader, a store opened but not started, a runtime whose loop 0 the test
 * itself runs, fake sessions recording the commands they are given, and an event sink. */
#ifndef GW_COMMAND_TEST_H
#define GW_COMMAND_TEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "test.h"
#include "config/config.h"
#include "gateway/registry.h"
#include "gateway/command/command.h"
#include "gateway/command/command_internal.h"
#include "gateway/util/json_write.h"
#include "gateway/util/log.h"
#include "gateway/util/metrics.h"
#include "gateway/registry.h"
#include "gateway/core/runtime.h"

#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#define CT_THERMO                                                                                  \
    "{ \"id\": \"thermo\", \"protocol\": \"mqtt\", \"codec\": \"json\",\n"                         \
    "  \"properties\": [\n"                                                                        \
    "    { \"id\": \"temperature\", \"type\": \"float\", \"min\": -40, \"max\": 125, \"access\": " \
    "\"r\" },\n"                                                                                   \
    "    { \"id\": \"mode\", \"type\": \"enum\", \"values\": [\"eco\", \"comfort\"], \"access\": " \
    "\"rw\" },\n"                                                                                  \
    "    { \"id\": \"level\", \"type\": \"int\", \"min\": 0, \"max\": 10, \"access\": \"rw\" } "   \
    "],\n"                                                                                         \
    "  \"functions\": [\n"                                                                         \
    "    { \"id\": \"reboot\", \"inputs\": [ { \"id\": \"delay_s\", \"type\": \"int\", \"min\": "  \
    "0, \"max\": 60 } ],\n"                                                                        \
    "      \"outputs\": [ { \"id\": \"ok\", \"type\": \"bool\" } ], \"timeout_ms\": 3000 },\n"     \
    "    { \"id\": \"ping\" } ]%s }\n"

typedef struct ct_sess {
    gw_session base;
    int rc;          /* what the command op returns */
    int n_sent;      /* commands it took */
    gw_command last; /* the last one (args: a text copy in last_args) */
    char last_args[512];
    int n_committed;
} ct_sess;

typedef struct ct_env {
    char dir[64];
    gw_config *cfg;
    gw_store *store;
    gw_runtime *rt;
    gw_commands *c;
    gw_event *evs[256];
    size_t n_evs;
} ct_env;

static inline int ct_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static inline void ct_write(const char *dir, const char *name, const char *text)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
}

/* A shipped binary product with its protocol switched to mqtt; extra_fn: the id of a function
 * (no inputs) added to its thing model but not to its frames, or NULL. */
static inline void ct_copy_product(const char *dir, const char *id, const char *extra_fn)
{
    char src[256], name[128];
    snprintf(src, sizeof(src), "../../config/products/%s.json", id);
    json_t *p = json_load_file(src, 0, NULL);
    if (!p) {
        fprintf(stderr, "cannot load %s\n", src);
        exit(2);
    }
    json_object_set_new(p, "protocol", json_string("mqtt"));
    if (extra_fn)
        json_array_append_new(json_object_get(p, "functions"), json_pack("{s:s}", "id", extra_fn));
    char *text = json_dumps(p, 0);
    snprintf(name, sizeof(name), "products/%s.json", id);
    ct_write(dir, name, text);
    free(text);
    json_decref(p);
}

/* ---- sessions ---- */

static void ct_committed(gw_session *s, gw_event *ev)
{
    (void)ev;
    ((ct_sess *)s)->n_committed++;
}
static void ct_noop(gw_session *s)
{
    (void)s;
}
static void ct_peer(gw_session *s, char *buf, size_t cap)
{
    (void)s;
    snprintf(buf, cap, "fake");
}
static int ct_command(gw_session *s, const gw_command *c, gw_error *err)
{
    ct_sess *f = (ct_sess *)s;
    if (f->rc)
        return gw_error_set(err, f->rc, "fake refuses (%d)", f->rc);
    f->n_sent++;
    f->last = *c;
    char *t = c->args ? gw_json_write(c->args) : NULL;
    snprintf(f->last_args, sizeof(f->last_args), "%s", t ? t : "");
    free(t);
    f->last.args = NULL;
    return 0;
}

static const gw_session_ops ct_ops = {.area = "fake",
                                      .committed = ct_committed,
                                      .kick = ct_noop,
                                      .flush = ct_noop,
                                      .peer = ct_peer,
                                      .destroy = ct_noop,
                                      .command = ct_command};

/* The fake session owns dev (as gw_session_online would leave it, without the online event). */
static inline void ct_online(ct_env *e, ct_sess *s, const char *dev_id)
{
    const gw_device *dev = gw_config_device(e->cfg, dev_id);
    memset(s, 0, sizeof(*s));
    gw_session_init(&s->base, &ct_ops, &e->rt->loops[0]);
    s->base.dev = dev;
    s->base.online = 1;
    gw_session_retain(&s->base); /* the slot's */
    e->rt->slots[dev->index] = &s->base;
}

static inline void ct_offline(ct_env *e, ct_sess *s)
{
    if (e->rt->slots[s->base.dev->index] == &s->base) {
        e->rt->slots[s->base.dev->index] = NULL;
        gw_session_release(&s->base);
    }
}

/* Runs loop 0's pending work (inbox messages: routed commands). */
static inline void ct_pump(ct_env *e)
{
    for (int i = 0; i < 3; i++)
        uv_run(&e->rt->loops[0].uv, UV_RUN_NOWAIT);
}

/* ---- events ---- */

static void ct_sink(void *arg, gw_event *ev)
{
    ct_env *e = arg;
    if (e->n_evs < sizeof(e->evs) / sizeof(e->evs[0]))
        e->evs[e->n_evs++] = ev;
    else
        gw_store_event_done(e->store, ev);
}

static inline void ct_clear_events(ct_env *e)
{
    for (size_t i = 0; i < e->n_evs; i++)
        gw_store_event_done(e->store, e->evs[i]);
    e->n_evs = 0;
}

/* A payload's member as compact JSON text ("" if absent). */
static inline const char *ct_member(const gw_event *ev, const char *key, char *buf, size_t cap)
{
    json_t *o = ev && ev->payload ? json_loads(ev->payload, 0, NULL) : NULL;
    json_t *v = json_object_get(o, key);
    char *t = v ? gw_json_write(v) : NULL;
    snprintf(buf, cap, "%s", t ? t : "");
    free(t);
    json_decref(o);
    return buf;
}

static inline void ct_cloud(ct_env *e, gw_command_op op, const char *product, const char *dev,
                            const char *payload)
{
    gw_commands_on_cloud(e->c, op, product, dev, payload, strlen(payload));
}

/* ---- set-up ---- */

/* north: the "north" section's extra keys (e.g. "\"max_pending\": 4"), may be "". */
static inline void ct_setup(ct_env *e, const char *north)
{
    char path[600], gw[1024];
    gw_diag d = {0};
    gw_error err = {0, ""};
    memset(e, 0, sizeof(*e));
    snprintf(e->dir, sizeof(e->dir), "/tmp/iotgw-cmd-XXXXXX");
    if (!mkdtemp(e->dir)) {
        perror("mkdtemp");
        exit(2);
    }
    snprintf(path, sizeof(path), "%s/products", e->dir);
    mkdir(path, 0700);
    snprintf(gw, sizeof(gw),
             "{ \"log_level\": \"error\", \"loops\": 1, \"admin\": { \"enabled\": false },\n"
             "  \"storage\": { \"path\": \"data.db\" },\n"
             "  \"north\": { \"enabled\": true%s%s },\n"
             "  \"adapters\": { \"mqtt\": { \"listeners\": [ { \"address\": \"127.0.0.1\", "
             "\"port\": 0 } ] } } }\n",
             north && *north ? ", " : "", north ? north : "");
    ct_write(e->dir, "gateway.json", gw);
    char prod[2048];
    snprintf(prod, sizeof(prod), CT_THERMO, "");
    ct_write(e->dir, "products/thermo.json", prod);
    snprintf(prod, sizeof(prod), CT_THERMO,
             ", \"commands\": { \"offline\": \"queue\", \"ttl_ms\": 60000 }");
    memcpy(strstr(prod, "\"thermo\""), "\"thermq\"", 8);
    ct_write(e->dir, "products/thermq.json", prod);
    ct_copy_product(e->dir, "meter-tcp", NULL);
    ct_copy_product(e->dir, "sensor-udp", "calibrate");
    ct_write(
        e->dir, "devices.json",
        "[ { \"id\": \"t-001\", \"product\": \"thermo\", \"secret\": \"s1\" },\n"
        "  { \"id\": \"t-002\", \"product\": \"thermo\", \"secret\": \"s2\" },\n"
        "  { \"id\": \"q-001\", \"product\": \"thermq\", \"secret\": \"s3\" },\n"
        "  { \"id\": \"mtr00001\", \"product\": \"meter-tcp\", \"secret\": \"pa55word\" },\n"
        "  { \"id\": \"snr00001\", \"product\": \"sensor-udp\", \"secret\": \"tok12345\" } ]\n");
    snprintf(path, sizeof(path), "%s/gateway.json", e->dir);
    if (gw_config_load(path, gw_registry_config_plugins(), &e->cfg, &d) != 0 || d.n) {
        for (size_t i = 0; i < d.n; i++)
            fprintf(stderr, "diag: %s\n", d.msgs[i]);
        exit(2);
    }
    gw_diag_free(&d);
    gw_log_level = GW_LOG_ERROR + 1; /* quiet */
    gw_metrics_thread_init(0);
    if (gw_store_open(&e->store, e->cfg, &err) ||
        gw_runtime_create(&e->rt, e->cfg, e->store, &err) ||
        gw_commands_create(&e->c, e->rt, NULL, &err)) {
        fprintf(stderr, "set-up: %s\n", err.msg);
        exit(2);
    }
    e->rt->commands = e->c;
    gw__commands_set_sink(e->c, ct_sink, e);
}

static inline void ct_teardown(ct_env *e)
{
    ct_pump(e);
    ct_clear_events(e);
    for (size_t i = 0; i < e->cfg->n_devices; i++) {
        if (e->rt->slots[i])
            gw_session_release(e->rt->slots[i]);
        e->rt->slots[i] = NULL;
    }
    gw_commands_free(e->c);
    e->rt->commands = NULL;
    gw_runtime_free(e->rt);
    gw_store_close(e->store);
    gw_config_free(e->cfg);
    nftw(e->dir, ct_rm, 8, FTW_DEPTH | FTW_PHYS);
}

#endif

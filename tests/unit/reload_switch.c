/* reload_switch.c: hot reload's generation switch on two running loops with sessions on both: a
 * device kept is re-pointed to the new generation (same slot, same index, still the owner), a
 * removed one is closed "removed", a changed secret "reconfigured", a new device gets the next
 * index; a refused configuration changes nothing and names file and path; the device-array
 * prepare/commit/abort path; 200 reloads while another thread looks devices up and makes events,
 * after which only the start-up and the current generation remain (TSan runs this). */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "gateway/registry.h"
#include "gateway/core/runtime.h"
#include "gateway/core/session.h"
#include "gateway/reload/reload.h"
#include "gateway/util/log.h"
#include "gateway/util/metrics.h"
#include "storage/store.h"
#include "test.h"
#include "tmpdir.h"

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #c);                \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static char tmpdir[] = "/tmp/iotgw-reload-XXXXXX";
static gw_config *cfg;
static gw_store *store;
static gw_runtime *rt;
static gw_reload *rl;

typedef struct fake_sess {
    gw_session base;
    int kicked; /* written on its loop, read by main after gw_runtime_run_on_all */
} fake_sess;

static void f_committed(gw_session *s, gw_event *ev)
{
    (void)s;
    (void)ev;
}
static void f_kick(gw_session *s)
{
    ((fake_sess *)s)->kicked = 1;
    gw_session_offline(s, "takeover", false);
}
static void f_flush(gw_session *s)
{
    (void)s;
}
static void f_peer(gw_session *s, char *buf, size_t cap)
{
    (void)s;
    snprintf(buf, cap, "test");
}
static void f_destroy(gw_session *s)
{
    free(s);
}
static const gw_session_ops fake_ops = {"test", f_committed, f_kick, f_flush,
                                        f_peer, f_destroy,   NULL};

#define NSESS 3
static fake_sess *sess[NSESS]; /* a (loop 0), b (loop 1), c (loop 1) */
static const char *const sess_dev[NSESS] = {"a", "b", "c"};

static void open_sessions(gw_loop *l, void *arg)
{
    (void)arg;
    for (int i = 0; i < NSESS; i++) {
        if ((unsigned)(i == 0 ? 0 : 1) != l->index)
            continue;
        fake_sess *f = calloc(1, sizeof(*f));
        REQUIRE(f);
        gw_session_init(&f->base, &fake_ops, l);
        gw_session_online(&f->base, gw_config_device(l->cfg, sess_dev[i]), "test");
        sess[i] = f;
    }
}

static void close_sessions(gw_loop *l, void *arg)
{
    (void)arg;
    for (int i = 0; i < NSESS; i++)
        if (sess[i] && sess[i]->base.loop == l)
            gw_session_offline(&sess[i]->base, "shutdown", false);
}

static void put(const char *name, const char *text)
{
    gw_t_put_file(tmpdir, name, text);
}

static void put_product(int hmax)
{
    char text[512];
    snprintf(text, sizeof(text),
             "{\"id\":\"p\",\"protocol\":\"mqtt\",\"codec\":\"json\",\"properties\":"
             "[{\"id\":\"h\",\"type\":\"int\",\"min\":0,\"max\":%d}]}",
             hmax);
    put("products/p.json", text);
}

static bool in(const json_t *report, const char *key, const char *id)
{
    const json_t *a = json_object_get(json_object_get(report, "applied"), key);
    size_t i;
    json_t *v;
    json_array_foreach(a, i, v) if (strcmp(json_string_value(v), id) == 0) return true;
    return false;
}

static long generations(void)
{
    static char buf[1 << 16];
    gw_metrics_render(buf, sizeof(buf));
    const char *p = strstr(buf, "\niotgw_config_generations ");
    return p ? atol(p + strlen("\niotgw_config_generations ")) : -1;
}

static void setup(void)
{
    char path[512];
    gw_diag diag = {0};
    gw_error err = {0, ""};
    REQUIRE(mkdtemp(tmpdir));
    snprintf(path, sizeof(path), "%s/products", tmpdir);
    REQUIRE(mkdir(path, 0700) == 0);
    put_product(100);
    put("devices.json", "[{\"id\":\"a\",\"product\":\"p\",\"secret\":\"ka\"},"
                        "{\"id\":\"b\",\"product\":\"p\",\"secret\":\"kb\"},"
                        "{\"id\":\"c\",\"product\":\"p\",\"secret\":\"kc\"}]");
    put("gateway.json", "{\"loops\":2,\"log_level\":\"error\",\"max_devices\":64,"
                        "\"admin\":{\"enabled\":false},\"storage\":{\"path\":\"db.sqlite\"},"
                        "\"adapters\":{\"mqtt\":{\"listeners\":"
                        "[{\"address\":\"127.0.0.1\",\"port\":0}]}}}");
    snprintf(path, sizeof(path), "%s/gateway.json", tmpdir);
    if (gw_config_load(path, gw_registry_config_plugins(), &cfg, &diag) != 0) {
        fprintf(stderr, "config: %s\n", diag.n ? diag.msgs[0] : "?");
        exit(1);
    }
    gw_log_level = getenv("UNIT_VERBOSE") ? GW_LOG_DEBUG : GW_LOG_ERROR + 1;
    REQUIRE(gw_store_open(&store, cfg, &err) == 0);
    REQUIRE(gw_runtime_create(&rt, cfg, store, &err) == 0);
    REQUIRE(gw_reload_create(&rl, cfg, rt, NULL) == 0);
    REQUIRE(gw_runtime_start(rt, &err) == 0);
    gw_runtime_run_on_all(rt, open_sessions, NULL);
}

static void test_switch(void)
{
    const gw_config *g1 = gw_reload_config(rl);
    const gw_device *a1 = gw_config_device(g1, "a");
    json_t *report = NULL;

    put_product(50);
    put("devices.json", "[{\"id\":\"a\",\"product\":\"p\",\"secret\":\"ka\"},"
                        "{\"id\":\"c\",\"product\":\"p\",\"secret\":\"kc2\"},"
                        "{\"id\":\"d\",\"product\":\"p\",\"secret\":\"kd\"}]");
    CHECK_INT(gw_reload_from_disk(rl, &report), 0);
    const gw_config *g2 = gw_reload_config(rl);
    CHECK(g2 != g1);
    CHECK_INT(g2->generation, 2);
    CHECK(in(report, "products_changed", "p"));
    CHECK(in(report, "devices_removed", "b"));
    CHECK(in(report, "devices_changed", "c"));
    CHECK(in(report, "devices_added", "d"));
    CHECK_INT(json_array_size(json_object_get(report, "needs_restart")), 0);
    json_decref(report);

    const gw_device *a2 = gw_config_device(g2, "a");
    CHECK(sess[0]->base.dev == a2); /* re-pointed, same session */
    CHECK(sess[0]->base.dev->gen == g2);
    CHECK_INT(a2->index, a1->index);
    CHECK(rt->slots[a2->index] == &sess[0]->base);
    CHECK_INT(sess[0]->kicked, 0);
    CHECK_INT(sess[0]->base.dev->product->properties[0].imax, 50); /* the new model */
    CHECK_INT(sess[1]->kicked, 1);
    CHECK_STR(sess[1]->base.close_reason, "removed");
    CHECK(rt->slots[1] == NULL);
    CHECK_INT(sess[2]->kicked, 1);
    CHECK_STR(sess[2]->base.close_reason, "reconfigured");
    CHECK_INT(gw_config_device(g2, "d")->index, 3); /* the next index: b's 1 is not reused */
    CHECK_INT(gw_config_device(g2, "c")->index, 2);
}

static void test_refused(void)
{
    const gw_config *before = gw_reload_config(rl);
    json_t *report = NULL;
    put("devices.json", "[{\"id\":\"a\",\"product\":\"nope\",\"secret\":\"ka\"}]");
    CHECK_INT(gw_reload_from_disk(rl, &report), GW_ECONFIG);
    CHECK(gw_reload_config(rl) == before);
    json_t *e = json_array_get(json_object_get(report, "errors"), 0);
    CHECK_STR(json_string_value(json_object_get(e, "file")), "devices.json");
    CHECK_STR(json_string_value(json_object_get(e, "path")), "[0].product");
    CHECK_CONTAINS(json_string_value(json_object_get(e, "message")), "unknown product");
    CHECK(json_object_get(report, "applied") == NULL);
    json_decref(report);
    CHECK(sess[0]->base.dev->gen == before);
    CHECK_INT(sess[0]->kicked, 0);
    /* a product file with a JSON syntax error: file, and line:column in the message */
    put("products/p.json", "{\"id\":\"p\",");
    CHECK_INT(gw_reload_from_disk(rl, &report), GW_ECONFIG);
    e = json_array_get(json_object_get(report, "errors"), 0);
    CHECK_STR(json_string_value(json_object_get(e, "file")), "products/p.json");
    CHECK_CONTAINS(json_string_value(json_object_get(e, "message")), "JSON syntax error");
    json_decref(report);
    put_product(50);
    put("devices.json", "[{\"id\":\"a\",\"product\":\"p\",\"secret\":\"ka\"},"
                        "{\"id\":\"c\",\"product\":\"p\",\"secret\":\"kc2\"},"
                        "{\"id\":\"d\",\"product\":\"p\",\"secret\":\"kd\"}]");
}

static void test_devices_api(void)
{
    const gw_config *before = gw_reload_config(rl);
    gw_reload_pending *p = NULL;
    json_t *errors = NULL, *report = NULL;
    json_t *devs = gw_config_devices_doc(before);
    json_array_append_new(devs,
                          json_pack("{s:s, s:s, s:s}", "id", "e", "product", "p", "secret", "ke"));
    CHECK_INT(gw_reload_prepare_devices(rl, devs, &p, &errors), 0);
    CHECK(p != NULL && errors == NULL);
    CHECK(gw_reload_config(rl) == before); /* nothing applied yet */
    gw_reload_commit(rl, p, &report);
    CHECK(in(report, "devices_added", "e"));
    CHECK(gw_config_device(gw_reload_config(rl), "e") != NULL);
    CHECK_INT(gw_config_device(gw_reload_config(rl), "e")->index, 4);
    CHECK(sess[0]->base.dev == gw_config_device(gw_reload_config(rl), "a"));
    json_decref(report);
    /* a bad entry: the errors name its path; nothing changes */
    json_array_append_new(devs, json_pack("{s:s, s:s}", "id", "f", "product", "p"));
    CHECK_INT(gw_reload_prepare_devices(rl, devs, &p, &errors), GW_ECONFIG);
    CHECK(p == NULL);
    CHECK_STR(json_string_value(json_object_get(json_array_get(errors, 0), "path")), "[4].secret");
    json_decref(errors);
    /* prepared, then aborted (devices.json could not be written) */
    json_array_remove(devs, 4);
    json_array_remove(devs, 0);
    CHECK_INT(gw_reload_prepare_devices(rl, devs, &p, &errors), 0);
    gw_reload_abort(p);
    CHECK(gw_config_device(gw_reload_config(rl), "a") != NULL);
    json_decref(devs);
}

static volatile int hammer_stop; /* atomic */

/* Another thread (as north/commands do): the current generation, a look-up, an event. */
static void *hammer(void *arg)
{
    (void)arg;
    unsigned n = 0;
    while (!__atomic_load_n(&hammer_stop, __ATOMIC_ACQUIRE)) {
        const gw_config *c = gw_runtime_cfg_acquire(rt);
        const gw_device *d = gw_config_device(c, "a");
        if (d) {
            gw_event *ev = gw_store_event_new(store, GW_EV_EVENT, d);
            gw_config_release(c); /* the event holds the generation now */
            if (ev && (n++ & 1)) {
                snprintf(ev->name, sizeof(ev->name), "x");
                ev->payload = NULL;
                gw_store_submit(store, ev, ev, 1);
            } else if (ev) {
                gw_store_event_done(store, ev);
            }
        } else {
            gw_config_release(c);
        }
        usleep(100);
    }
    return NULL;
}

static void test_many(void)
{
    pthread_t th;
    json_t *report;
    REQUIRE(pthread_create(&th, NULL, hammer, NULL) == 0);
    for (int i = 0; i < 200; i++) {
        put_product(i % 2 ? 60 : 50);
        report = NULL;
        CHECK_INT(gw_reload_from_disk(rl, &report), 0);
        json_decref(report);
    }
    __atomic_store_n(&hammer_stop, 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    CHECK(sess[0]->base.dev == gw_config_device(gw_reload_config(rl), "a"));
    CHECK_INT(sess[0]->kicked, 0);
    /* events committed, the state written: only start-up's and the current generation remain */
    for (int i = 0; i < 500 && (gw_store_depth(store) > 0 || generations() != 2); i++) {
        gw_store_sync_state(store, 100);
        usleep(10000);
    }
    CHECK_INT(generations(), 2);
}

int main(void)
{
    setup();
    test_switch();
    test_refused();
    test_devices_api();
    test_many();

    gw_runtime_run_on_all(rt, close_sessions, NULL);
    for (int i = 0; i < 500 && gw_store_depth(store) > 0; i++)
        usleep(10000);
    gw_store_close(store);
    gw_runtime_join(rt);
    for (int i = 0; i < NSESS; i++)
        if (sess[i])
            gw_session_release(&sess[i]->base);
    gw_reload_free(rl);
    gw_runtime_free(rt);
    gw_config_release(cfg);
    gw_t_rm_tree(tmpdir);
    TEST_MAIN_END();
}

/* oom_inject.c: out-of-memory injection. For n = 1, 2, ... the n-th allocation fails (once) while
 * a piece of the gateway runs: config load (the shipped config/gateway.json), store open, a store
 * batch commit, each codec's decode (json, protobuf, binary) with the thing-model check, and each
 * adapter's session set-up (CoAP first report, UDP first datagram, MQTT CONNECT + PUBLISH, TCP
 * login + report), until n exceeds the allocations made. Allocations counted: gw_malloc and
 * friends (gw_alloc_fail_nth), gwcore's plain malloc/calloc/realloc/strdup/strndup (the link
 * wraps them, CMakeLists.txt), jansson's (json_set_alloc_funcs) and, for the store, SQLite's
 * (SQLITE_CONFIG_MALLOC); libuv's and OpenSSL's are not. Each run: no crash, a clear error (or the
 * same result as without a failure), the per-area byte counts back where they were (and no leak
 * under ASan with detect_leaks=1), a commit stores all of its batch or none, and a device is
 * answered in full or disconnected, never left waiting. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "test.h"

#include <arpa/inet.h>
#include <errno.h>
#include <ftw.h>
#include <jansson.h>
#include <malloc.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include "codecs/binary/internal.h"
#include "codecs/json/codec_json.h"
#include "codecs/protobuf/internal.h"
#include "config/config.h"
#include "gateway/registry.h"
#include "gateway/util/alloc.h"
#include "gateway/util/error.h"
#include "gateway/util/json_write.h"
#include "gateway/util/log.h"
#include "gateway/util/metrics.h"
#include "gateway/core/runtime.h"
#include "gateway/core/thing_model.h"
#include "protocols/coap/coap.h"
#include "protocols/coap/coap_internal.h"
#include "protocols/coap/coap_msg.h"
#include "protocols/mqtt/mqtt.h"
#include "protocols/stream/stream_conn.h"
#include "protocols/tcp/tcp.h"
#include "protocols/udp/udp.h"
#include "protocols/udp/udp_internal.h"
#include "storage/store.h"

#include "pb_wire.h"

#define SHIPPED_CONFIG "../../config/gateway.json"
#define MAX_RUNS       100000 /* a loop that never ends is a failure, not a hang */

/* ---- the allocation wrappers (ld --wrap: gwcore's calls land here) ---- */

void *__real_malloc(size_t n);
void *__real_calloc(size_t c, size_t n);
void *__real_realloc(void *p, size_t n);
char *__real_strdup(const char *s);
char *__real_strndup(const char *s, size_t n);

void *__wrap_malloc(size_t n)
{
    return gw_alloc_fault() ? NULL : __real_malloc(n);
}

void *__wrap_calloc(size_t c, size_t n)
{
    return gw_alloc_fault() ? NULL : __real_calloc(c, n);
}

void *__wrap_realloc(void *p, size_t n)
{
    return gw_alloc_fault() ? NULL : __real_realloc(p, n);
}

char *__wrap_strdup(const char *s)
{
    return gw_alloc_fault() ? NULL : __real_strdup(s);
}

char *__wrap_strndup(const char *s, size_t n)
{
    return gw_alloc_fault() ? NULL : __real_strndup(s, n);
}

/* jansson's allocations fail too, but only in scenarios that parse no JSON text: jansson 2.14's
 * lexer asserts (load.c lex_scan_string) when its string buffer cannot grow, so a parse under
 * out-of-memory aborts inside jansson whatever the caller does. */
static int json_faults;

static void *json_alloc(size_t n)
{
    return json_faults ? __wrap_malloc(n) : __real_malloc(n);
}

/* SQLite's allocations (SQLITE_CONFIG_MALLOC, set before its first use) fail too, in the store
 * scenarios: SQLite answers SQLITE_NOMEM, which the store must turn into an error or a retry. */
static int sqlite_faults;

static void *sq_malloc(int n)
{
    return sqlite_faults && gw_alloc_fault() ? NULL : __real_malloc((size_t)n);
}

static void sq_free(void *p)
{
    free(p);
}

static void *sq_realloc(void *p, int n)
{
    return sqlite_faults && gw_alloc_fault() ? NULL : __real_realloc(p, (size_t)n);
}

static int sq_size(void *p)
{
    return p ? (int)malloc_usable_size(p) : 0;
}

static int sq_roundup(int n)
{
    return (n + 7) & ~7;
}

static int sq_init(void *arg)
{
    return SQLITE_OK;
}

static void sq_shutdown(void *arg) {}

static const sqlite3_mem_methods sq_mem = {sq_malloc,  sq_free, sq_realloc,  sq_size,
                                           sq_roundup, sq_init, sq_shutdown, NULL};

/* ---- the loop ---- */

typedef struct area_snap {
    int64_t b[GW_AREA__COUNT];
} area_snap;

/* Bytes a cache legitimately holds in the session area (the CoAP dedup cache's answers, whose
 * sizes change as entries are replaced): left out of the comparison. */
static gw__coap_loop *dedup_of;

static area_snap snap(void)
{
    area_snap s;
    for (int a = 0; a < GW_AREA__COUNT; a++)
        s.b[a] = gw_alloc_bytes((gw_area)a);
    for (uint32_t i = 0; dedup_of && dedup_of->dedup && i < dedup_of->dedup_cap; i++)
        if (dedup_of->dedup[i].resp_len > GW__COAP_DEDUP_INLINE)
            s.b[GW_AREA_SESSION] -= (int64_t)malloc_usable_size(dedup_of->dedup[i].resp.heap);
    return s;
}

/* One run of a scenario: returns 0 (it did what it does without a failure, or absorbed the
 * failure with the same outcome) or a negative code; the scenario itself checks that the outcome
 * is one it accepts. faulted: 0 for a reference run without failures. */
typedef int (*scenario_fn)(void *arg, int faulted);

/* Runs fn with the n-th allocation failing, n = 1, 2, ..., until a run makes fewer than n
 * allocations; checks the area byte counts after each run. Returns the number of failing runs.
 * with_json: jansson's allocations are counted (and failed) too. */
static unsigned oom_loop(const char *name, scenario_fn fn, void *arg, int with_json)
{
    json_faults = with_json;
    unsigned n, failed = 0, absorbed = 0;
    for (n = 1; n < MAX_RUNS; n++) {
        area_snap before = snap();
        gw_alloc_fail_nth(n);
        int rc = fn(arg, 1);
        uint64_t left = gw_alloc_fail_nth(0);
        area_snap after = snap();
        for (int a = 0; a < GW_AREA__COUNT; a++)
            if (after.b[a] != before.b[a]) {
                gw_t_fail++;
                fprintf(stderr, "%s n=%u: area %s %lld -> %lld bytes\n", name, n,
                        gw_area_name((gw_area)a), (long long)before.b[a], (long long)after.b[a]);
            }
        if (left != 0) { /* fewer than n allocations: the run had no failure */
            CHECK_INT(rc, 0);
            break;
        }
        failed++;
        absorbed += rc == 0;
    }
    json_faults = 0;
    CHECK(n < MAX_RUNS);
    printf("%s: %u runs with a failed allocation (%u absorbed with the same outcome)\n", name,
           failed, absorbed);
    return failed;
}

/* A run's error must be one of the two given (0 for none). */
static int expect_rc(const char *name, int rc, int a, int b)
{
    if (rc != 0 && rc != a && rc != b) {
        gw_t_fail++;
        fprintf(stderr, "%s: unexpected rc %d (%s)\n", name, rc, gw_strerror(rc));
    }
    return rc;
}

/* ---- config load ---- */

static char *config_fingerprint(const gw_config *c)
{
    json_t *o = json_object();
    json_t *p = json_array(), *d = json_array();
    for (size_t i = 0; i < c->n_products; i++)
        json_array_append_new(p, json_sprintf("%s/%s/%s/%zu/%zu/%zu", c->products[i].id,
                                              c->products[i].protocol, c->products[i].codec,
                                              c->products[i].n_properties, c->products[i].n_events,
                                              c->products[i].n_functions));
    for (size_t i = 0; i < c->n_devices; i++)
        json_array_append_new(d,
                              json_sprintf("%s/%s", c->devices[i].id, c->devices[i].product->id));
    json_object_set_new(o, "products", p);
    json_object_set_new(o, "devices", d);
    json_object_set_new(o, "adapters", json_deep_copy(c->adapters));
    char *s = json_dumps(o, JSON_SORT_KEYS | JSON_COMPACT);
    json_decref(o);
    return s;
}

static char *config_want;

static int run_config(void *arg, int faulted)
{
    gw_config *c = NULL;
    gw_diag d = {0};
    int rc = gw_config_load(SHIPPED_CONFIG, gw_registry_config_plugins(), &c, &d);
    uint64_t left = gw_alloc_fail_nth(0); /* the checks below allocate */
    expect_rc("config", rc, GW_ECONFIG, GW_ENOMEM);
    if (rc == 0) {
        char *got = config_fingerprint(c);
        CHECK_STR(got, config_want);
        free(got);
        gw_config_free(c);
    } else {
        CHECK(c == NULL);
    }
    gw_diag_free(&d);
    gw_alloc_fail_nth(left); /* what oom_loop reads */
    return rc;
}

/* ---- codec decode + thing-model check ---- */

typedef struct decode_case {
    const char *name;
    const gw_product *p;
    gw_decode_hint hint;
    const uint8_t *buf;
    size_t len;
    char *want; /* the normalised values as text, from a run without failures */
} decode_case;

static char *decode_once(decode_case *dc, int *rc_out)
{
    gw_thing_msg m;
    gw_reject rej;
    json_t *norm = NULL;
    char *text = NULL;
    memset(&m, 0, sizeof(m));
    memset(&rej, 0, sizeof(rej));
    int rc = dc->p->codec_ops->decode(dc->p, &dc->hint, dc->buf, dc->len, &m, &rej);
    if (rc == 0) {
        if (m.kind == GW_MSG_EVENT)
            rc = gw_tm_check_event(dc->p, m.name, m.values, &norm, &rej);
        else
            rc = gw_tm_check_report(dc->p, m.values, &norm, &rej);
    }
    if (rc == 0) {
        text = gw_json_write(norm);
        if (!text)
            rc = GW_ENOMEM;
    }
    json_decref(norm);
    gw_thing_msg_clear(&m);
    *rc_out = rc;
    return text;
}

static int run_decode(void *arg, int faulted)
{
    decode_case *dc = arg;
    int rc;
    char *text = decode_once(dc, &rc);
    uint64_t left = gw_alloc_fail_nth(0);
    /* a failed allocation in a codec is a rejection (GW_EINVAL, reason internal/malformed) or
     * GW_ENOMEM; never a different message */
    expect_rc(dc->name, rc, GW_EINVAL, GW_ENOMEM);
    if (rc == 0)
        CHECK_STR(text, dc->want);
    gw_free(GW_AREA_EVENT, text);
    gw_alloc_fail_nth(left);
    return rc;
}

/* ---- a scratch configuration for the store and the CoAP adapter ---- */

static char tmpdir[] = "/tmp/iotgw-oom-XXXXXX";
static char db_path[600];

static void put_file(const char *name, const char *text)
{
    char path[600];
    snprintf(path, sizeof(path), "%s/%s", tmpdir, name);
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
}

static int rm_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static void cleanup(void)
{
    nftw(tmpdir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
}

#define N_DEVICES 4

static gw_config *scratch_config(void)
{
    char path[600];
    gw_config *c = NULL;
    gw_diag d = {0};
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        exit(2);
    }
    atexit(cleanup);
    snprintf(path, sizeof(path), "%s/products", tmpdir);
    mkdir(path, 0700);
    put_file("products/p.json",
             "{\"id\":\"p\",\"protocol\":\"coap\",\"codec\":\"json\",\"properties\":["
             "{\"id\":\"t\",\"type\":\"float\",\"min\":-40,\"max\":125},"
             "{\"id\":\"s\",\"type\":\"string\",\"max_length\":64}],"
             "\"events\":[{\"id\":\"e\",\"params\":[{\"id\":\"x\",\"type\":\"int\"}]}]}");
    json_t *devs = json_array();
    for (int i = 0; i < N_DEVICES; i++) {
        char id[16];
        snprintf(id, sizeof(id), "d%d", i);
        json_array_append_new(devs,
                              json_pack("{s:s,s:s,s:s}", "id", id, "product", "p", "secret", "k"));
    }
    /* the shipped products of the other adapters, with a device each */
    static const char *const shipped[][4] = {{"thermo", "mqtt", "t-001", "t001-secret"},
                                             {"meter-tcp", "tcp", "mtr00001", "pa55word"},
                                             {"sensor-udp", "udp", "snr00001", "tok12345"}};
    for (size_t i = 0; i < sizeof(shipped) / sizeof(shipped[0]); i++) {
        char from[600];
        snprintf(from, sizeof(from), "../../config/products/%s.json", shipped[i][0]);
        json_t *prod = json_load_file(from, 0, NULL);
        snprintf(path, sizeof(path), "%s/products/%s.json", tmpdir, shipped[i][0]);
        if (!prod || json_dump_file(prod, path, 0) != 0)
            exit(2);
        json_decref(prod);
        json_array_append_new(devs, json_pack("{s:s,s:s,s:s}", "id", shipped[i][2], "product",
                                              shipped[i][0], "secret", shipped[i][3]));
    }
    snprintf(path, sizeof(path), "%s/devices.json", tmpdir);
    json_dump_file(devs, path, 0);
    json_decref(devs);
    put_file("gateway.json",
             "{\"loops\":1,\"log_level\":\"error\",\"admin\":{\"enabled\":false},"
             "\"storage\":{\"path\":\"db.sqlite\",\"state_lag_ms\":0},"
             "\"limits\":{\"connect_rate_per_source\":0,\"auth_failures_per_source\":0},"
             "\"adapters\":{\"coap\":{\"listeners\":[{\"address\":\"127.0.0.1\",\"port\":0}],"
             "\"piggyback_ms\":0,\"max_wait_s\":1,\"dedup_entries\":16},"
             "\"mqtt\":{\"listeners\":[{\"address\":\"127.0.0.1\",\"port\":0}]},"
             "\"tcp\":{\"listeners\":[{\"address\":\"127.0.0.1\",\"port\":0,"
             "\"product\":\"meter-tcp\"}]},"
             "\"udp\":{\"listeners\":[{\"address\":\"127.0.0.1\",\"port\":0,"
             "\"product\":\"sensor-udp\"}],"
             "\"replay_window_s\":0}}}"); /* the UDP run resends one datagram on purpose */
    snprintf(db_path, sizeof(db_path), "%s/db.sqlite", tmpdir);
    snprintf(path, sizeof(path), "%s/gateway.json", tmpdir);
    if (gw_config_load(path, gw_registry_config_plugins(), &c, &d) != 0) {
        for (size_t i = 0; i < d.n; i++)
            fprintf(stderr, "diag: %s\n", d.msgs[i]);
        exit(2);
    }
    gw_diag_free(&d);
    return c;
}

/* ---- store open ---- */

static int run_store_open(void *arg, int faulted)
{
    const gw_config *c = arg;
    gw_store *s = NULL;
    gw_error err = {0, ""};
    int rc = gw_store_open(&s, c, &err);
    uint64_t left = gw_alloc_fail_nth(0);
    expect_rc("store_open", rc, GW_ENOMEM, GW_ESTORE);
    if (rc == 0)
        gw_store_close(s);
    else
        CHECK(err.msg[0] != 0);
    gw_alloc_fail_nth(left);
    return rc;
}

/* ---- store commit: a batch of 3 events is all there or not at all ---- */

static int64_t db_count(const char *sql)
{
    sqlite3 *db;
    sqlite3_stmt *st;
    int64_t n = -1;
    if (sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(db, sql, -1, &st, NULL) == SQLITE_OK) {
        if (sqlite3_step(st) == SQLITE_ROW)
            n = sqlite3_column_int64(st, 0);
        sqlite3_finalize(st);
    }
    sqlite3_close(db);
    return n;
}

static int run_store_commit(void *arg, int faulted)
{
    const gw_config *c = arg;
    gw_store *s = NULL;
    gw_error err = {0, ""};
    uint64_t n = gw_alloc_fail_nth(0); /* open and build the batch without failures */
    if (gw_store_open(&s, c, &err) != 0 || gw_store_start(s, NULL, NULL) != 0) {
        fprintf(stderr, "store: %s\n", err.msg);
        exit(2);
    }
    int64_t before = db_count("SELECT count(*) FROM events");
    const gw_device *dev = &c->devices[0];
    gw_event *e1 = gw_store_event_new(s, GW_EV_PROPERTY, dev);
    gw_event *e2 = gw_store_event_new(s, GW_EV_EVENT, dev);
    gw_event *e3 = gw_store_event_new(s, GW_EV_OFFLINE, dev);
    if (!e1 || !e2 || !e3)
        exit(2);
    e1->payload = gw_strdup(GW_AREA_EVENT, "{\"t\":21.5,\"s\":\"hall\"}");
    snprintf(e2->name, sizeof(e2->name), "e");
    e2->payload = gw_strdup(GW_AREA_EVENT, "{\"x\":1}");
    snprintf(e3->name, sizeof(e3->name), "test");
    e3->payload = gw_strdup(GW_AREA_EVENT, "{\"reason\":\"test\",\"will\":false}");
    e1->next = e2, e2->next = e3;
    gw_alloc_fail_nth(n);
    gw_store_submit(s, e1, e3, 3);
    gw_store_close(s); /* commits everything queued */
    n = gw_alloc_fail_nth(0);
    int64_t added = db_count("SELECT count(*) FROM events") - before;
    if (added != 0 && added != 3) {
        gw_t_fail++;
        fprintf(stderr, "store_commit: a batch of 3 stored %lld events\n", (long long)added);
    }
    CHECK_INT(db_count("SELECT count(*) FROM pragma_integrity_check WHERE integrity_check='ok'"),
              1);
    gw_alloc_fail_nth(n);
    return added == 3 ? 0 : GW_ESTORE;
}

/* ---- the CoAP request path: a new device's first report (session set-up) ---- */

typedef struct coap_env {
    const gw_config *cfg;
    gw_store *store;
    gw_runtime *rt;
    gw__coap_loop *cl;
    gw__coap_sock *sock;
    int next_dev;
} coap_env;

static void coap_commit_all(coap_env *e)
{
    gw_loop *l = &e->rt->loops[0];
    gw_event *ev = l->pend_head, *next;
    l->pend_head = l->pend_tail = NULL;
    l->pend_n = 0;
    for (; ev; ev = next) {
        next = ev->next;
        ev->status = 0;
        if (ev->sess)
            ev->sess->ops->committed(ev->sess, ev);
        gw_store_event_done(e->store, ev);
    }
}

static int run_coap(void *arg, int faulted)
{
    coap_env *e = arg;
    uint8_t buf[512];
    char dev[16], query[32];
    gw_coap_out o;
    static const char body[] = "{\"messageId\":\"1\",\"properties\":{\"t\":21.5,\"s\":\"hall\"}}";
    uint64_t n = gw_alloc_fail_nth(0);
    snprintf(dev, sizeof(dev), "d%d", e->next_dev++ % N_DEVICES);
    snprintf(query, sizeof(query), "token=k");
    gw_coap_out_begin(&o, buf, sizeof(buf), GW_COAP_CON, GW_COAP_POST, (uint16_t)e->next_dev,
                      (const uint8_t *)"tk", 2);
    gw_coap_out_opt(&o, GW_COAP_OPT_URI_PATH, "p", 1);
    gw_coap_out_opt(&o, GW_COAP_OPT_URI_PATH, dev, strlen(dev));
    gw_coap_out_opt(&o, GW_COAP_OPT_URI_PATH, "properties", 10);
    gw_coap_out_opt(&o, GW_COAP_OPT_URI_PATH, "report", 6);
    gw_coap_out_opt(&o, GW_COAP_OPT_URI_QUERY, query, strlen(query));
    gw_coap_out_payload(&o, body, sizeof(body) - 1);
    if (o.err)
        exit(2);
    struct sockaddr_in from = {.sin_family = AF_INET, .sin_port = htons(5000)};
    from.sin_addr.s_addr = htonl(0x7f000001);
    int64_t accepted = gw_metric_get(GW_M_MSG_ACCEPTED);
    gw_alloc_fail_nth(n);
    gw__coap_request(e->sock, buf, o.len, (const struct sockaddr *)&from, false, NULL);
    coap_commit_all(e);
    uv_update_time(&e->rt->loops[0].uv);
    gw__coap_tick(e->cl);
    gw__coap_close_all(e->cl, "test"); /* the next run sets the session up again */
    n = gw_alloc_fail_nth(0);
    int rc = gw_metric_get(GW_M_MSG_ACCEPTED) == accepted + 1 ? 0 : GW_ENOMEM;
    /* the online/offline events go through the store writer: wait until they are done */
    for (int i = 0; i < 20000 && gw_store_depth(e->store) > 0; i++)
        usleep(1000);
    CHECK_INT(gw_store_depth(e->store), 0);
    gw_alloc_fail_nth(n);
    return rc;
}

static void coap_setup(coap_env *e, const gw_config *c)
{
    gw_diag d = {0};
    gw_error err = {0, ""};
    e->cfg = c;
    if (gw_store_open(&e->store, c, &err) != 0 || gw_runtime_create(&e->rt, c, e->store, &err) ||
        gw_store_start(e->store, NULL, NULL) != 0)
        exit(2);
    gw_adapter *a = gw_runtime_add_adapter(e->rt, &gw_adapter_coap_ops);
    if (!a || a->ops->init(a, json_object_get(c->adapters, "coap"), c, &d) != 0)
        exit(2);
    e->cl = gw__coap_loop_new(a, &e->rt->loops[0]);
    if (!e->cl)
        exit(2);
    e->rt->loops[0].adapter_state[gw_adapter_index(a)] = e->cl;
    e->sock = &e->cl->socks[0];
    e->sock->cl = e->cl; /* never opened: gw__coap_send sends nothing */
    gw_diag_free(&d);
}

/* ---- UDP: a device's first datagram (session set-up), on the loop's socket ---- */

typedef struct udp_env {
    coap_env *e;
    gw__udp_loop *ul;
} udp_env;

static const uint8_t *unhex(const char *hex, size_t *n);

static int run_udp(void *arg, int faulted)
{
    udp_env *u = arg;
    size_t len;
    const uint8_t *frame = unhex("A5 01 01 73 6E 72 30 30 30 30 31 74 6F 6B 31 32 33 34 35 01 00 "
                                 "66 08 A8 11 57 01 3C 00 35 3D C3 F7",
                                 &len);
    struct sockaddr_in from = {.sin_family = AF_INET, .sin_port = htons(9)}; /* discard */
    from.sin_addr.s_addr = htonl(0x7f000001);
    uint64_t n = gw_alloc_fail_nth(0);
    int64_t accepted = gw_metric_get(GW_M_MSG_ACCEPTED);
    gw_alloc_fail_nth(n);
    gw__udp_datagram(&u->ul->socks[0].d, frame, len, (const struct sockaddr *)&from, false);
    coap_commit_all(u->e); /* the session hears of the commit (its ack goes out) */
    uv_run(&u->e->rt->loops[0].uv, UV_RUN_NOWAIT);
    gw__udp_close_all(u->ul, "test");
    n = gw_alloc_fail_nth(0);
    int rc = gw_metric_get(GW_M_MSG_ACCEPTED) == accepted + 1 ? 0 : GW_ENOMEM;
    for (int i = 0; i < 20000 && gw_store_depth(u->e->store) > 0; i++)
        usleep(1000);
    CHECK_INT(gw_store_depth(u->e->store), 0);
    gw_alloc_fail_nth(n);
    return rc;
}

/* ---- MQTT and TCP: a client connects, authenticates and sends one message, over a real socket
 * to the adapter's listener on loop 0, whose iterations this thread runs (no loop thread). ---- */

typedef struct stream_env {
    coap_env *e;
    gw_adapter *a;
    uint16_t port;
    const uint8_t *send;
    size_t send_len;
    const uint8_t *want; /* the whole answer of a successful run */
    size_t want_len;
} stream_env;

static bool stream_idle(stream_env *s)
{
    gw_stream_loop *sl = gw_stream_loop_of(s->a, &s->e->rt->loops[0]);
    return !sl->conns && gw_store_depth(s->e->store) == 0;
}

static int run_stream(void *arg, int faulted)
{
    stream_env *s = arg;
    uv_loop_t *uv = &s->e->rt->loops[0].uv;
    uint8_t got[256];
    size_t have = 0;
    bool eof = false;
    uint64_t n = gw_alloc_fail_nth(0);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(s->port)};
    to.sin_addr.s_addr = htonl(0x7f000001);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0 || (connect(fd, (struct sockaddr *)&to, sizeof(to)) != 0 && errno != EINPROGRESS))
        exit(2);
    gw_alloc_fail_nth(n);
    /* every run ends with the whole answer or a close (checked below): the deadline only bounds
     * a failure, so it is generous (a loaded machine, sanitizers) */
    uint64_t deadline = uv_hrtime() + 10000000000ull;
    for (int i = 0; !eof && have < s->want_len && uv_hrtime() < deadline; i++) {
        uv_run(uv, UV_RUN_NOWAIT);
        if (i == 1 && send(fd, s->send, s->send_len, MSG_NOSIGNAL) != (ssize_t)s->send_len)
            eof = true;
        ssize_t r = recv(fd, got + have, sizeof(got) - have, 0);
        if (r > 0)
            have += (size_t)r;
        else if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            eof = true;
        else
            usleep(i < 20 ? 100 : 1000);
    }
    close(fd);
    for (int i = 0; i < 20000 && !stream_idle(s); i++) { /* the connection's close callbacks */
        uv_run(uv, UV_RUN_NOWAIT);
        usleep(500);
    }
    n = gw_alloc_fail_nth(0);
    CHECK(stream_idle(s));
    int rc = have == s->want_len && memcmp(got, s->want, have) == 0 ? 0 : GW_ENOMEM;
    if (rc && getenv("OOM_VERBOSE")) {
        fprintf(stderr, "%s answer:", s->a->ops->name);
        for (size_t i = 0; i < have; i++)
            fprintf(stderr, " %02X", got[i]);
        fprintf(stderr, "%s\n", eof ? " (closed)" : "");
    }
    /* an answer of the whole length is a (negative) ack; else the gateway must have closed:
     * neither leaves the device waiting for ever */
    if (rc && !eof && have < s->want_len) {
        gw_t_fail++;
        fprintf(stderr, "%s: %zu answer bytes and the connection still open\n", s->a->ops->name,
                have);
    }
    gw_alloc_fail_nth(n);
    return rc;
}

static size_t mqtt_str(uint8_t *b, const char *s)
{
    size_t n = strlen(s);
    b[0] = (uint8_t)(n >> 8), b[1] = (uint8_t)n;
    memcpy(b + 2, s, n);
    return n + 2;
}

/* CONNECT (t-001, clean session) and a QoS 1 report; CONNACK and PUBACK back. */
static size_t mqtt_exchange(uint8_t *b)
{
    static const char body[] = "{\"messageId\":\"1\",\"properties\":{\"temperature\":21.5}}";
    uint8_t v[200];
    size_t n = 0, k = 0;
    memcpy(v, "\x00\x04MQTT\x04\xC2\x00\x3C", 10), k = 10;
    k += mqtt_str(v + k, "t-001");
    k += mqtt_str(v + k, "thermo");
    k += mqtt_str(v + k, "t001-secret");
    b[n++] = 0x10, b[n++] = (uint8_t)k;
    memcpy(b + n, v, k), n += k;
    k = mqtt_str(v, "/thermo/t-001/properties/report");
    v[k++] = 0, v[k++] = 1;
    memcpy(v + k, body, sizeof(body) - 1), k += sizeof(body) - 1;
    b[n++] = 0x32, b[n++] = (uint8_t)k;
    memcpy(b + n, v, k), n += k;
    return n;
}

static gw_adapter *start_adapter(coap_env *e, const gw_adapter_ops *ops, const char *key)
{
    gw_diag d = {0};
    gw_adapter *a = gw_runtime_add_adapter(e->rt, ops);
    if (!a || a->ops->init(a, json_object_get(e->cfg->adapters, key), e->cfg, &d) != 0 ||
        a->ops->start(a, &e->rt->loops[0]) != 0) {
        for (size_t i = 0; i < d.n; i++)
            fprintf(stderr, "diag: %s\n", d.msgs[i]);
        exit(2);
    }
    gw_diag_free(&d);
    return a;
}

static uint16_t stream_port(stream_env *s)
{
    gw_stream_loop *sl = gw_stream_loop_of(s->a, &s->e->rt->loops[0]);
    struct sockaddr_storage ss;
    int len = sizeof(ss);
    if (!sl || !sl->n_servers ||
        uv_tcp_getsockname(&sl->servers[0].tcp, (struct sockaddr *)&ss, &len) != 0)
        exit(2);
    return ntohs(((struct sockaddr_in *)&ss)->sin_port);
}

/* ---- main ---- */

static const uint8_t *unhex(const char *hex, size_t *n)
{
    static uint8_t out[4][256];
    static int k;
    uint8_t *b = out[k++ & 3];
    size_t i = 0;
    unsigned v;
    while (*hex && i < 256) {
        while (*hex == ' ')
            hex++;
        if (sscanf(hex, "%2x", &v) != 1)
            break;
        b[i++] = (uint8_t)v;
        hex += 2;
    }
    *n = i;
    return b;
}

int main(void)
{
    json_set_alloc_funcs(json_alloc, free);
    if (sqlite3_config(SQLITE_CONFIG_MALLOC, &sq_mem) != SQLITE_OK) {
        fprintf(stderr, "sqlite3_config(SQLITE_CONFIG_MALLOC) refused\n");
        return 2;
    }
    gw_log_level = getenv("OOM_VERBOSE") ? GW_LOG_DEBUG : GW_LOG_ERROR + 1; /* counts are checked */

    /* config load */
    gw_config *shipped = NULL;
    gw_diag d = {0};
    if (gw_config_load(SHIPPED_CONFIG, gw_registry_config_plugins(), &shipped, &d) != 0) {
        fprintf(stderr, "the shipped config does not load\n");
        return 2;
    }
    gw_diag_free(&d);
    config_want = config_fingerprint(shipped);
    CHECK(oom_loop("config_load", run_config, NULL, 0) > 100);

    /* each codec's decode, on the shipped products */
    pbw body = {.n = 0}, v = {.n = 0}, msg = {.n = 0};
    pbv_double(&v, 21.5), pbw_field(&body, 1, "temperature", &v);
    pbv_str(&v, "eco"), pbw_field(&body, 1, "mode", &v);
    pbv_str(&v, "hall"), pbw_field(&body, 1, "name", &v);
    pbw_str(&msg, 1, "42");
    pbw_uint(&msg, 2, 1700000000123ULL);
    pbw_sub(&msg, PB_REPORT, &body);
    static const char json_report[] =
        "{\"messageId\":\"1\",\"timestamp\":1700000000000,\"properties\":{\"temperature\":21.5,"
        "\"humidity\":40,\"mode\":\"eco\",\"name\":\"hall\"}}";
    size_t meter_len;
    const uint8_t *meter =
        unhex("68 00 17 02 00 02 00 01 E2 40 05 DC 08 FD 00 0F 12 06 01 05 65 53 F1 00 A1 C8",
              &meter_len);
    decode_case cases[] = {
        {"decode_json",
         gw_config_product(shipped, "thermo"),
         {GW_MSG_PROPERTY_REPORT, NULL},
         (const uint8_t *)json_report,
         sizeof(json_report) - 1,
         NULL},
        {"decode_protobuf",
         gw_config_product(shipped, "thermo-pb"),
         {GW_MSG_PROPERTY_REPORT, NULL},
         msg.b,
         msg.n,
         NULL},
        {"decode_binary",
         gw_config_product(shipped, "meter-tcp"),
         {GW_MSG_NONE, NULL},
         meter,
         meter_len,
         NULL},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        decode_case *dc = &cases[i];
        int rc;
        if (!dc->p) {
            fprintf(stderr, "%s: product missing from the shipped config\n", dc->name);
            gw_t_fail++;
            continue;
        }
        dc->want = decode_once(dc, &rc);
        CHECK_INT(rc, 0);
        if (rc == 0)
            CHECK(oom_loop(dc->name, run_decode, dc, dc->p->codec_ops != &gw_codec_json_ops) > 0);
        gw_free(GW_AREA_EVENT, dc->want);
    }

    /* the store */
    static gw_config *scratch;
    scratch = scratch_config();
    sqlite_faults = 1;
    CHECK(oom_loop("store_open", run_store_open, scratch, 1) > 3);
    CHECK(oom_loop("store_commit", run_store_commit, scratch, 1) > 3);
    sqlite_faults = 0;
    CHECK(db_count("SELECT count(*) FROM events") > 0);

    /* the CoAP adapter (its state stays reachable from here until exit) */
    static coap_env env;
    coap_setup(&env, scratch);
    for (int i = 0; i < 64; i++) /* the dedup cache fills up: from here on it replaces entries */
        CHECK_INT(run_coap(&env, 0), 0);
    dedup_of = env.cl;
    CHECK(oom_loop("coap_first_request", run_coap, &env, 0) > 3);
    coap_commit_all(&env);

    /* the UDP adapter, started on loop 0 (its socket is real; the datagram is handed over) */
    static udp_env uenv;
    uenv.e = &env;
    gw_adapter *ua = start_adapter(&env, &gw_adapter_udp_ops, "udp");
    uenv.ul = env.rt->loops[0].adapter_state[gw_adapter_index(ua)];
    CHECK_INT(run_udp(&uenv, 0), 0);
    CHECK(oom_loop("udp_first_datagram", run_udp, &uenv, 1) > 3);

    /* MQTT CONNECT + PUBLISH, TCP login + report: real sockets, this thread runs the loop */
    static uint8_t mqtt_in[256];
    static const uint8_t mqtt_out[] = {0x20, 2, 0, 0, 0x40, 2, 0, 1};
    static stream_env mq, tc;
    mq.e = &env;
    mq.a = start_adapter(&env, &gw_adapter_mqtt_ops, "mqtt");
    mq.port = stream_port(&mq);
    mq.send = mqtt_in;
    mq.send_len = mqtt_exchange(mqtt_in);
    mq.want = mqtt_out, mq.want_len = sizeof(mqtt_out);
    CHECK_INT(run_stream(&mq, 0), 0);
    CHECK(oom_loop("mqtt_connect_publish", run_stream, &mq, 0) > 3);

    static uint8_t tcp_in[64], tcp_out[32];
    size_t l1, l2;
    const uint8_t *login = unhex("68 00 15 01 00 01 6D 74 72 30 30 30 30 31 70 61 35 35 77 6F "
                                 "72 64 6B BE",
                                 &l1);
    memcpy(tcp_in, login, l1);
    const uint8_t *report =
        unhex("68 00 17 02 00 02 00 01 E2 40 05 DC 08 FD 00 0F 12 06 01 05 65 53 F1 00 A1 C8", &l2);
    memcpy(tcp_in + l1, report, l2);
    size_t a1, a2;
    const uint8_t *ack1 = unhex("68 00 07 80 00 01 01 00 17 BC", &a1);
    memcpy(tcp_out, ack1, a1);
    const uint8_t *ack2 = unhex("68 00 07 80 00 02 02 00 E7 4C", &a2);
    memcpy(tcp_out + a1, ack2, a2);
    tc.e = &env;
    tc.a = start_adapter(&env, &gw_adapter_tcp_ops, "tcp");
    tc.port = stream_port(&tc);
    tc.send = tcp_in, tc.send_len = l1 + l2;
    tc.want = tcp_out, tc.want_len = a1 + a2;
    CHECK_INT(run_stream(&tc, 0), 0);
    CHECK(oom_loop("tcp_login_report", run_stream, &tc, 1) > 3);

    gw_config_free(shipped);
    free(config_want);
    TEST_MAIN_END();
}

/* fuzz_coap_request.c: libFuzzer target for the CoAP adapter's request path without sockets. The
 * input is one datagram, and also a sequence of datagrams (2-byte big-endian length prefixes).
 * (1) The pure layer: parser and request classifier, with a Block1 reassembly state kept across
 * datagrams under the bounds, and every answer encoded and parsed back (invariants abort).
 * (2) The adapter itself: each datagram goes to gw__coap_request on a loop's CoAP state with a
 * real configuration (a coap product, two devices), store and runtime, but a socket that sends
 * nothing; queued events are "committed" after each datagram (the session's committed op runs, as
 * after a real commit) and the loop's tick runs, so dedup, Block1 buffers, exchanges, separate
 * answers, sessions and the thing model are all exercised. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway/util/error.h"
#include "gateway/registry.h"
#include "gateway/util/log.h"
#include "gateway/core/runtime.h"
#include "protocols/coap/coap.h"
#include "protocols/coap/coap_internal.h"
#include "protocols/coap/coap_msg.h"

#define MAX_BLOCK 4096

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #c);                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static uint8_t assembled[MAX_BLOCK];
static size_t have;

/* The answer the adapter would give, encoded and parsed back. */
static void answer(const gw_coap_msg *m, uint8_t code, bool block1, uint32_t b1, const void *p,
                   size_t n)
{
    uint8_t out[MAX_BLOCK + 128];
    gw_coap_out o;
    gw_coap_msg back;
    gw_coap_out_begin(&o, out, sizeof(out), m->type == GW_COAP_CON ? GW_COAP_ACK : GW_COAP_NON,
                      code, m->mid, m->token, m->tkl);
    if (n)
        gw_coap_out_opt_uint(&o, GW_COAP_OPT_CONTENT_FORMAT, 0);
    if (block1)
        gw_coap_out_opt_uint(&o, GW_COAP_OPT_BLOCK1, b1);
    gw_coap_out_payload(&o, p, n);
    REQUIRE(o.err == 0);
    REQUIRE(gw_coap_parse(out, o.len, &back) == 0);
    REQUIRE(back.code == code && back.mid == m->mid && back.tkl == m->tkl);
    REQUIRE(memcmp(back.token, m->token, m->tkl) == 0);
    REQUIRE(back.payload_len == n && (n == 0 || memcmp(back.payload, p, n) == 0));
    REQUIRE(back.n_opts == (size_t)block1 + (n ? 1 : 0));
}

static void one(const uint8_t *d, size_t n)
{
    gw_coap_msg m;
    gw_coap_req r;
    uint8_t *copy = calloc(1, n ? n : 1); /* exact size: ASan sees any overread */
    if (n)
        memcpy(copy, d, n);
    int rc = gw_coap_parse(copy, n, &m);
    if (rc == GW_EINCOMPLETE || rc == GW_EPROTO) {
        REQUIRE(n < 4 || m.tkl <= 8);
        free(copy);
        return;
    }
    REQUIRE(rc == 0 || rc == GW_ETOOBIG);
    REQUIRE(m.tkl <= 8 && m.n_opts <= GW_COAP_MAX_OPTS);
    for (size_t i = 0; i < m.n_opts; i++) {
        REQUIRE(m.opts[i].val >= copy && m.opts[i].val + m.opts[i].len <= copy + n);
        REQUIRE(i == 0 || m.opts[i].num >= m.opts[i - 1].num);
    }
    REQUIRE(!m.payload || (m.payload > copy && m.payload + m.payload_len == copy + n));
    if (rc != 0 || m.code == GW_COAP_EMPTY || (m.code >> 5) != 0 || m.type >= GW_COAP_ACK) {
        free(copy);
        return;
    }
    rc = gw_coap_request_parse(&m, &r);
    if (rc != 0) {
        REQUIRE(rc == GW_EPROTO && (r.refuse >> 5) == 4);
        answer(&m, r.refuse, false, 0, "refused", 7);
        free(copy);
        return;
    }
    REQUIRE(strlen(r.product) < 64 && strlen(r.device) < 64 && strlen(r.event) < 64);
    REQUIRE(r.res != GW_COAP_RES_NONE);
    REQUIRE(!r.has_token || (r.token >= copy && r.token + r.token_len <= copy + n));
    (void)gw_coap_codec_accepts("json", r.content_format);
    (void)gw_coap_codec_accepts("protobuf", r.content_format);
    if (!r.has_block1) {
        answer(&m, m.payload_len > MAX_BLOCK ? GW_COAP_TOO_LARGE : GW_COAP_CHANGED, false, 0, NULL,
               0);
        free(copy);
        return;
    }
    if (r.b1_num == 0)
        have = 0;
    size_t total = 0;
    rc =
        gw_coap_block1_check(have, r.b1_num, r.b1_szx, m.payload_len, r.b1_more, MAX_BLOCK, &total);
    if (rc == 0) {
        REQUIRE(total <= MAX_BLOCK && total == have + m.payload_len);
        if (m.payload_len) /* an empty last block: no payload pointer */
            memcpy(assembled + have, m.payload, m.payload_len);
        have = r.b1_more ? total : 0;
        answer(&m, r.b1_more ? GW_COAP_CONTINUE : GW_COAP_CHANGED, true,
               gw_coap_block1_value(r.b1_num, r.b1_more, r.b1_szx), NULL, 0);
    } else {
        REQUIRE(rc == GW_EINCOMPLETE || rc == GW_ETOOBIG || rc == GW_EPROTO);
        have = 0;
        answer(&m,
               rc == GW_EINCOMPLETE ? GW_COAP_INCOMPLETE
               : rc == GW_ETOOBIG   ? GW_COAP_TOO_LARGE
                                    : GW_COAP_BAD_REQUEST,
               false, 0, NULL, 0);
    }
    free(copy);
}

/* ---- (2) the adapter's request path on a socketless loop ---- */

static gw_config *cfg;
static gw_store *store;
static gw_runtime *rt;
static gw__coap_loop *cl;
static gw__coap_sock *sock;

static void put_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "w");
    REQUIRE(f);
    fputs(text, f);
    fclose(f);
}

static char tmpdir[] = "/tmp/fuzz_coap_XXXXXX";

/* The scratch configuration and database go at exit. */
static void cleanup(void)
{
    static const char *const files[] = {"products/p.json", "products/q.json", "devices.json",
                                        "gateway.json",    "db.sqlite",       "db.sqlite-wal",
                                        "db.sqlite-shm",   "products",        NULL};
    char path[512];
    for (size_t i = 0; files[i]; i++) {
        snprintf(path, sizeof(path), "%s/%s", tmpdir, files[i]);
        if (unlink(path) != 0)
            rmdir(path);
    }
    rmdir(tmpdir);
}

static void setup(void)
{
    char *dir = tmpdir, path[512];
    gw_diag diag = {0};
    gw_error err = {0, ""};
    REQUIRE(mkdtemp(dir));
    atexit(cleanup);
    snprintf(path, sizeof(path), "%s/products", dir);
    REQUIRE(mkdir(path, 0700) == 0);
    put_file(dir, "products/p.json",
             "{\"id\":\"p\",\"protocol\":\"coap\",\"codec\":\"json\",\"properties\":["
             "{\"id\":\"t\",\"type\":\"float\",\"min\":-40,\"max\":125},"
             "{\"id\":\"s\",\"type\":\"string\",\"max_length\":4000}],"
             "\"events\":[{\"id\":\"e\",\"params\":[{\"id\":\"x\",\"type\":\"int\"}]}],"
             "\"functions\":[{\"id\":\"f\",\"inputs\":[],\"outputs\":[]}]}");
    put_file(dir, "products/q.json",
             "{\"id\":\"q\",\"protocol\":\"coap\",\"codec\":\"json\",\"auth\":"
             "{\"mode\":\"device-secret\",\"coap_query_token\":false},\"properties\":["
             "{\"id\":\"t\",\"type\":\"int\"}]}");
    put_file(dir, "devices.json",
             "[{\"id\":\"d\",\"product\":\"p\",\"secret\":\"k\"},"
             "{\"id\":\"d2\",\"product\":\"p\",\"secret\":\"k2\"},"
             "{\"id\":\"q1\",\"product\":\"q\",\"secret\":\"k\"}]");
    put_file(dir, "gateway.json",
             "{\"loops\":1,\"log_level\":\"error\",\"admin\":{\"enabled\":false},"
             "\"storage\":{\"path\":\"db.sqlite\"},\"adapters\":{\"coap\":{\"listeners\":"
             "[{\"address\":\"127.0.0.1\",\"port\":0}],\"max_block_bytes\":2048,"
             "\"max_block_total\":3000,\"dedup_entries\":16,\"piggyback_ms\":0,"
             "\"max_wait_s\":1}}}");
    snprintf(path, sizeof(path), "%s/gateway.json", dir);
    REQUIRE(gw_config_load(path, gw_registry_config_plugins(), &cfg, &diag) == 0);
    REQUIRE(gw_store_open(&store, cfg, &err) == 0);
    REQUIRE(gw_runtime_create(&rt, cfg, store, &err) == 0);
    gw_log_level = getenv("FUZZ_COAP_VERBOSE") ? GW_LOG_DEBUG : GW_LOG_ERROR + 1;
    gw_adapter *a = gw_runtime_add_adapter(rt, &gw_adapter_coap_ops);
    REQUIRE(a && a->ops->init(a, json_object_get(cfg->adapters, "coap"), cfg, &diag) == 0);
    cl = gw__coap_loop_new(a, &rt->loops[0]);
    REQUIRE(cl);
    rt->loops[0].adapter_state[gw_adapter_index(a)] = cl;
    sock = &cl->socks[0];
    sock->cl = cl; /* never opened: gw__coap_send sends nothing */
}

/* What the writer and the loop do after a commit: each queued event's session hears of it. */
static void commit_all(void)
{
    gw_loop *l = &rt->loops[0];
    gw_event *ev = l->pend_head, *next;
    l->pend_head = l->pend_tail = NULL;
    l->pend_n = 0;
    for (; ev; ev = next) {
        next = ev->next;
        ev->status = 0;
        if (ev->sess)
            ev->sess->ops->committed(ev->sess, ev);
        gw_store_event_done(store, ev);
    }
}

static void adapter_one(const uint8_t *d, size_t n, unsigned peer)
{
    struct sockaddr_in from = {.sin_family = AF_INET, .sin_port = htons(5000 + (peer & 1))};
    from.sin_addr.s_addr = htonl(0x7f000001);
    uint8_t *copy = calloc(1, n ? n : 1);
    if (n)
        memcpy(copy, d, n);
    gw__coap_request(sock, copy, n, (const struct sockaddr *)&from, false, NULL);
    free(copy);
    if (peer & 2)
        commit_all(); /* sometimes the commit comes after the next datagram (dedup while pending) */
    uv_update_time(&rt->loops[0].uv);
    gw__coap_tick(cl);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!cl)
        setup();
    adapter_one(data, size, 2);
    size_t j = 0;
    while (j + 2 <= size) {
        size_t n = (size_t)data[j] << 8 | data[j + 1];
        j += 2;
        if (n > size - j)
            n = size - j;
        /* the peer (bit 0) and whether the commit waits (bit 1) come from the message id */
        adapter_one(data + j, n, n >= 4 ? (data[j + 2] & 1u) | (data[j + 3] & 2u) : 2);
        j += n;
    }
    commit_all();

    have = 0;
    one(data, size); /* the whole input as one datagram */
    have = 0;
    /* and as a sequence of length-prefixed datagrams (Block1 transfers span several) */
    size_t i = 0;
    while (i + 2 <= size) {
        size_t n = (size_t)data[i] << 8 | data[i + 1];
        i += 2;
        if (n > size - i)
            n = size - i;
        one(data + i, n);
        i += n;
    }
    return 0;
}

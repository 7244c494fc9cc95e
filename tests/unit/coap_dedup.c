/* coap_dedup.c: the CoAP adapter's message-id dedup cache and exchanges (coap_session.c,
 * coap_request.c) on a loop's CoAP state built like fuzz_coap_request.c (a real config, store and
 * runtime), with a real UDP socket for the answers (read back by the test through a plain socket)
 * and the loop's clock set by the test. Datagrams go straight to gw__coap_request; the test plays
 * the store (queued events are committed when it says) and the tick. Covers a duplicate CON while
 * committing (empty ACK, then a separate response) and after (the cached answer, byte for byte),
 * NON dedup, expiry after EXCHANGE_LIFETIME, the cache bound (direct-mapped, pending entries never
 * evicted), separate responses retransmitted and bounded (16 tracked CONs per session), and what
 * becomes of exchanges when the session closes (idle) and at shutdown. */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <sys/stat.h>
#include <unistd.h>

#include "gateway/core/dgram.h"
#include "gateway/util/alloc.h"
#include "gateway/util/error.h"
#include "gateway/registry.h"
#include "gateway/util/log.h"
#include "gateway/util/metrics.h"
#include "gateway/core/runtime.h"
#include "protocols/coap/coap.h"
#include "protocols/coap/coap_internal.h"
#include "protocols/coap/coap_msg.h"
#include "test.h"
#include "tmpdir.h"

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #c);                \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

static gw_config *cfg;
static gw_store *store;
static gw_runtime *rt;
static gw_loop *lp;
static gw__coap_loop *cl;
static gw__coap_sock *sock;
static int cfd; /* the device's socket: receives the answers */
static struct sockaddr_in dev_addr, dev_addr2;
static uint64_t t0;

#define MAX_HELD 512
static gw_event *held[MAX_HELD]; /* events in arrival order; NULL once committed */
static int n_held;

/* ---- the loop, played by the test ---- */

/* The loop's clock: ms after the start. */
static void at(uint64_t ms)
{
    lp->uv.time = t0 + ms;
}

static void take_events(void)
{
    for (gw_event *ev = lp->pend_head, *next; ev; ev = next) {
        next = ev->next;
        ev->next = NULL;
        REQUIRE(n_held < MAX_HELD);
        held[n_held++] = ev;
    }
    lp->pend_head = lp->pend_tail = NULL;
    lp->pend_n = 0;
    gw_dgram_flush(lp);
}

static void commit(int i)
{
    gw_event *ev = held[i];
    REQUIRE(i < n_held && ev);
    held[i] = NULL;
    ev->status = 0;
    ev->sess->ops->committed(ev->sess, ev);
    gw_store_event_done(store, ev);
    take_events();
}

static void tick(void)
{
    gw__coap_tick(cl);
    take_events();
}

/* ---- the device ---- */

typedef struct rx {
    uint8_t b[1500];
    size_t n;
    gw_coap_msg m;
} rx;

#define MAX_RX 256
static rx rxs[MAX_RX];
static int n_rx;

/* Every datagram the gateway sent since the last call (parsed). */
static int receive(void)
{
    n_rx = 0;
    for (;;) {
        REQUIRE(n_rx < MAX_RX);
        ssize_t r = recv(cfd, rxs[n_rx].b, sizeof(rxs[n_rx].b), MSG_DONTWAIT);
        if (r < 0) {
            REQUIRE(errno == EAGAIN || errno == EWOULDBLOCK);
            return n_rx;
        }
        rxs[n_rx].n = (size_t)r;
        REQUIRE(gw_coap_parse(rxs[n_rx].b, rxs[n_rx].n, &rxs[n_rx].m) == 0);
        n_rx++;
    }
}

/* A report (POST .../properties/report?token=k) from the device's address (or another). */
static void report_from(const struct sockaddr_in *from, const char *dev, uint8_t type, uint16_t mid,
                        const char *query2)
{
    uint8_t buf[512], tok[2] = {(uint8_t)(mid >> 8), (uint8_t)mid};
    char payload[128];
    gw_coap_out o;
    gw_coap_out_begin(&o, buf, sizeof(buf), type, GW_COAP_POST, mid, tok, 2);
    gw_coap_out_opt(&o, GW_COAP_OPT_URI_PATH, "p", 1);
    gw_coap_out_opt(&o, GW_COAP_OPT_URI_PATH, dev, strlen(dev));
    gw_coap_out_opt(&o, GW_COAP_OPT_URI_PATH, "properties", 10);
    gw_coap_out_opt(&o, GW_COAP_OPT_URI_PATH, "report", 6);
    gw_coap_out_opt_uint(&o, GW_COAP_OPT_CONTENT_FORMAT, GW_COAP_CF_JSON);
    gw_coap_out_opt(&o, GW_COAP_OPT_URI_QUERY, "token=k", 7);
    if (query2)
        gw_coap_out_opt(&o, GW_COAP_OPT_URI_QUERY, query2, strlen(query2));
    int n =
        snprintf(payload, sizeof(payload), "{\"messageId\":\"%u\",\"properties\":{\"t\":21}}", mid);
    gw_coap_out_payload(&o, payload, (size_t)n);
    REQUIRE(o.err == 0);
    gw__coap_request(sock, buf, o.len, (const struct sockaddr *)from, false, NULL);
    take_events();
}

static void report(uint8_t type, uint16_t mid)
{
    report_from(&dev_addr, "d", type, mid, NULL);
}

/* The device ACKs (or resets) one of the gateway's CONs. */
static void ack(uint16_t mid, uint8_t type)
{
    uint8_t b[4] = {(uint8_t)(0x40 | type << 4), 0, (uint8_t)(mid >> 8), (uint8_t)mid};
    gw__coap_request(sock, b, 4, (const struct sockaddr *)&dev_addr, false, NULL);
    take_events();
}

static bool is_empty_ack(const rx *r, uint16_t mid)
{
    return r->m.type == GW_COAP_ACK && r->m.code == GW_COAP_EMPTY && r->m.mid == mid && r->n == 4;
}

static bool answers(const rx *r, uint8_t type, uint8_t code, uint16_t req_mid)
{
    uint8_t tok[2] = {(uint8_t)(req_mid >> 8), (uint8_t)req_mid};
    return r->m.type == type && r->m.code == code && r->m.tkl == 2 &&
           memcmp(r->m.token, tok, 2) == 0 && (type != GW_COAP_ACK || r->m.mid == req_mid);
}

static int confirms(void)
{
    int n = 0;
    for (gw__coap_xchg *x = cl->xchgs; x; x = x->next)
        n += x->state == GW__X_CONFIRM;
    return n;
}

static int n_xchgs(void)
{
    int n = 0;
    for (gw__coap_xchg *x = cl->xchgs; x; x = x->next)
        n++;
    return n;
}

/* ---- the tests ---- */

/* CON: a duplicate while committing gets the empty ACK (the answer then goes separately, as a
 * CON, retransmitted until the device ACKs it); a duplicate after gets the stored empty ACK. */
static void test_con_pending(void)
{
    int64_t dedup0 = gw_metric_get(GW_M_COAP_DEDUP);
    int base = n_held;
    at(1000);
    report(GW_COAP_CON, 100);
    CHECK_INT(n_held, base + 1);
    CHECK_INT(receive(), 0); /* nothing before the commit (piggyback window 100 ms) */
    report(GW_COAP_CON, 100);
    CHECK_INT(n_held, base + 1); /* not stored twice */
    CHECK_INT(gw_metric_get(GW_M_COAP_DEDUP) - dedup0, 1);
    CHECK_INT(receive(), 1);
    CHECK(is_empty_ack(&rxs[0], 100));
    commit(base);
    CHECK_INT(receive(), 1);
    CHECK(answers(&rxs[0], GW_COAP_CON, GW_COAP_CHANGED, 100)); /* separate response */
    uint16_t con_mid = rxs[0].m.mid;
    CHECK_INT(confirms(), 1);
    report(GW_COAP_CON, 100); /* answered: the stored empty ACK again */
    CHECK_INT(receive(), 1);
    CHECK(is_empty_ack(&rxs[0], 100));
    CHECK_INT(n_held, base + 1);
    /* retransmitted after ACK_TIMEOUT (2-3 s) with the same bytes, until the ACK */
    at(1000 + 3000);
    tick();
    CHECK_INT(receive(), 1);
    CHECK(rxs[0].m.type == GW_COAP_CON && rxs[0].m.mid == con_mid);
    ack(con_mid, GW_COAP_ACK);
    CHECK_INT(confirms(), 0);
    at(1000 + 60000);
    tick();
    CHECK_INT(receive(), 0);
    CHECK_INT(n_xchgs(), 0);
}

/* CON committed within the piggyback window: one ACK 2.04; a duplicate gets the same bytes. */
static void test_con_cached(void)
{
    int base = n_held;
    at(100000);
    report(GW_COAP_CON, 101);
    commit(base);
    CHECK_INT(receive(), 1);
    CHECK(answers(&rxs[0], GW_COAP_ACK, GW_COAP_CHANGED, 101));
    rx first = rxs[0];
    at(100000 + 5000);
    report(GW_COAP_CON, 101);
    CHECK_INT(n_held, base + 1);
    CHECK_INT(receive(), 1);
    CHECK(rxs[0].n == first.n && memcmp(rxs[0].b, first.b, first.n) == 0);
    /* EXCHANGE_LIFETIME after the first sight, the id is new again */
    at(100000 + GW_COAP_EXCH_LIFE_MS - 1);
    report(GW_COAP_CON, 101);
    CHECK_INT(n_held, base + 1);
    CHECK_INT(receive(), 1);
    at(100000 + GW_COAP_EXCH_LIFE_MS);
    report(GW_COAP_CON, 101);
    CHECK_INT(n_held, base + 2); /* stored again: a new message */
    commit(base + 1);
    CHECK_INT(receive(), 1);
    CHECK(answers(&rxs[0], GW_COAP_ACK, GW_COAP_CHANGED, 101));
    /* the same id from another port of the same host is another exchange */
    report_from(&dev_addr2, "d", GW_COAP_CON, 101, NULL);
    CHECK_INT(n_held, base + 3);
    commit(base + 2);
    CHECK_INT(receive(), 0);  /* dev_addr2 is not the test's socket: its answer went there */
    report(GW_COAP_CON, 102); /* the session's address is the test's again */
    commit(base + 3);
    CHECK_INT(receive(), 1);
}

/* NON: a duplicate while committing is dropped (no answer, no event); after, the cached NON. */
static void test_non(void)
{
    int base = n_held;
    at(400000);
    report(GW_COAP_NON, 200);
    report(GW_COAP_NON, 200);
    CHECK_INT(n_held, base + 1);
    CHECK_INT(receive(), 0);
    at(400000 + 5000); /* no empty ACK for a NON, however long the commit takes */
    tick();
    CHECK_INT(receive(), 0);
    commit(base);
    CHECK_INT(receive(), 1);
    CHECK(answers(&rxs[0], GW_COAP_NON, GW_COAP_CHANGED, 200));
    rx first = rxs[0];
    report(GW_COAP_NON, 200);
    CHECK_INT(n_held, base + 1);
    CHECK_INT(receive(), 1);
    CHECK(rxs[0].n == first.n && memcmp(rxs[0].b, first.b, first.n) == 0);
    CHECK_INT(confirms(), 0);
}

/* What an idle device costs (issue 19): its session, without the side allocation that only
 * observers and held commands need, and its answer kept inside the dedup entry; a longer answer
 * (a 4.04 with its diagnostic) gets its own allocation and is still resent byte for byte. */
static void test_footprint(void)
{
    int base = n_held;
    at(500000);
    int64_t bytes0 = gw_alloc_bytes(GW_AREA_SESSION);
    report_from(&dev_addr, "d2", GW_COAP_CON, 300, NULL);
    commit(base);
    CHECK_INT(receive(), 1);
    CHECK(answers(&rxs[0], GW_COAP_ACK, GW_COAP_CHANGED, 300));
    gw__coap_sess *s = gw__coap_sess_find(cl, gw_config_device(cfg, "d2")->index);
    REQUIRE(s);
    CHECK(s->ext == NULL);
    CHECK(sizeof(gw__coap_sess) <= 136);
    gw__coap_dedup *d = gw__coap_dedup_find(cl, (const struct sockaddr *)&dev_addr, 300);
    REQUIRE(d);
    CHECK_INT(d->resp_len, rxs[0].n);
    CHECK(d->resp_len <= GW__COAP_DEDUP_INLINE && gw__coap_dedup_resp(d) == d->resp.inl);
    /* the session is all the idle device holds in the session area */
    CHECK_INT(gw_alloc_bytes(GW_AREA_SESSION) - bytes0, (int64_t)malloc_usable_size(s));
    report_from(&dev_addr, "nobody", GW_COAP_CON, 301, NULL); /* 4.04 "unknown device" */
    CHECK_INT(receive(), 1);
    rx first = rxs[0];
    CHECK(first.m.code == GW_COAP_NOT_FOUND && first.n > GW__COAP_DEDUP_INLINE);
    d = gw__coap_dedup_find(cl, (const struct sockaddr *)&dev_addr, 301);
    REQUIRE(d);
    CHECK(d->resp_len == first.n && gw__coap_dedup_resp(d) == d->resp.heap);
    report_from(&dev_addr, "nobody", GW_COAP_CON, 301, NULL);
    CHECK_INT(receive(), 1);
    CHECK(rxs[0].n == first.n && memcmp(rxs[0].b, first.b, first.n) == 0);
    CHECK_INT(n_held, base + 1);
}

/* The cache has dedup_entries (16) slots, direct-mapped: of 64 answered ids at most 16 are
 * remembered (an evicted one is taken as new); an entry still committing is never evicted. */
static void test_bound(void)
{
    int base = n_held;
    at(700000);
    report(GW_COAP_CON, 1000); /* stays pending */
    int pending = n_held - 1;
    for (uint16_t mid = 1001; mid <= 1064; mid++) {
        report(GW_COAP_CON, mid);
        if (held[n_held - 1] && n_held - 1 != pending)
            commit(n_held - 1);
    }
    receive();
    CHECK_INT(n_held, base + 65);
    CHECK_INT(cl->dedup_cap, 16);
    int remembered = 0, evicted = 0;
    for (uint16_t mid = 1001; mid <= 1064; mid++) {
        if (gw__coap_dedup_find(cl, (const struct sockaddr *)&dev_addr, mid))
            remembered++;
        else
            evicted = mid;
    }
    CHECK(remembered >= 1 && remembered <= 15); /* the pending one keeps its slot */
    gw__coap_dedup *d = gw__coap_dedup_find(cl, (const struct sockaddr *)&dev_addr, 1000);
    CHECK(d && d->x);
    report(GW_COAP_CON, (uint16_t)evicted); /* forgotten: stored again */
    CHECK_INT(n_held, base + 66);
    commit(n_held - 1);
    commit(pending);
    receive();
}

/* A session tracks at most 16 of its CONs for retransmission; past that they go once. Each
 * tracked one goes 1 + 4 times (MAX_RETRANSMIT), then is given up. */
static void test_con_bound(void)
{
    int base = n_held;
    at(1000000);
    for (uint16_t mid = 3000; mid < 3020; mid++)
        report(GW_COAP_CON, mid);
    at(1000000 + 200); /* past the piggyback window: empty ACKs */
    tick();
    CHECK_INT(receive(), 20);
    for (int i = 0; i < 20; i++)
        CHECK(is_empty_ack(&rxs[i], (uint16_t)(3000 + i)) || rxs[i].m.code == GW_COAP_EMPTY);
    for (int i = 0; i < 20; i++)
        commit(base + i);
    CHECK_INT(receive(), 20); /* twenty separate responses, once each */
    gw__coap_sess *s = gw__coap_sess_find(cl, gw_config_device(cfg, "d")->index);
    REQUIRE(s);
    CHECK_INT(s->n_con, GW_COAP_CON_MAX);
    CHECK_INT(confirms(), GW_COAP_CON_MAX);
    int sent = 0;
    for (uint64_t t = 1000; t <= 200000; t += 1000) {
        at(1000000 + 200 + t);
        s->d.deadline = lp->uv.time + 100000; /* the idle sweep is another test's */
        tick();
        sent += receive();
    }
    CHECK_INT(sent, GW_COAP_CON_MAX * GW_COAP_MAX_RETRANS);
    CHECK_INT(confirms(), 0);
    CHECK_INT(s->n_con, 0);
}

/* The session closes (idle) with an exchange committing and a CON unacknowledged: the commit is
 * still answered, the CON still retransmitted; the memory goes with the last of them. */
static void test_idle_close(void)
{
    at(2000000);
    tick(); /* device d's session ends here (idle since the last test) */
    receive();
    int64_t idle0 = gw_metric_get(GW_M_COAP_IDLE);
    int base = n_held;
    report_from(&dev_addr, "d2", GW_COAP_CON, 4000, NULL); /* becomes a separate CON */
    at(2000000 + 200);
    tick();
    CHECK_INT(receive(), 1);
    commit(base);
    CHECK_INT(receive(), 1);
    CHECK(answers(&rxs[0], GW_COAP_CON, GW_COAP_CHANGED, 4000));
    report_from(&dev_addr, "d2", GW_COAP_CON, 4001, NULL); /* committing at the close */
    gw__coap_sess *s = gw__coap_sess_find(cl, gw_config_device(cfg, "d2")->index);
    REQUIRE(s);
    uint32_t refs = s->d.base.refs; /* its own, the slot's, the two exchanges', the event's */
    CHECK_INT(refs, 5);
    at(2000000 + 200 + 10000 + 1000); /* idle_timeout 10 s (the CON retransmitted meanwhile) */
    tick();
    receive();
    CHECK_INT(gw_metric_get(GW_M_COAP_IDLE) - idle0, 1);
    CHECK(gw__coap_sess_find(cl, gw_config_device(cfg, "d2")->index) == NULL);
    CHECK(s->d.closing);
    CHECK_INT(s->d.base.refs, refs - 2); /* its own and the slot's went */
    commit(base + 1);
    CHECK_INT(receive(), 1);
    CHECK(answers(&rxs[0], GW_COAP_CON, GW_COAP_CHANGED, 4001)); /* acked empty meanwhile */
    CHECK_INT(s->d.base.refs, refs - 3); /* the event went; its exchange now awaits an ACK */
    /* the two CONs run out of retransmissions: the last reference goes (ASan: no leak) */
    for (uint64_t t = 0; t <= 200000; t += 1000) {
        at(2000000 + 20000 + t);
        tick();
        receive();
    }
    CHECK_INT(confirms(), 0);
    CHECK_INT(n_xchgs(), 0);
}

/* ---- set-up ---- */

static char tmpdir[] = "/tmp/unit_coap_XXXXXX";

static void put_file(const char *name, const char *text)
{
    gw_t_put_file(tmpdir, name, text);
}

static void cleanup(void)
{
    gw_t_rm_tree(tmpdir);
}

static gw_adapter *ad;

static void setup(void)
{
    char path[512];
    gw_diag diag = {0};
    gw_error err = {0, ""};
    REQUIRE(mkdtemp(tmpdir));
    snprintf(path, sizeof(path), "%s/products", tmpdir);
    REQUIRE(mkdir(path, 0700) == 0);
    put_file("products/p.json", "{\"id\":\"p\",\"protocol\":\"coap\",\"codec\":\"json\","
                                "\"properties\":[{\"id\":\"t\",\"type\":\"int\"}]}");
    put_file("devices.json", "[{\"id\":\"d\",\"product\":\"p\",\"secret\":\"k\"},"
                             "{\"id\":\"d2\",\"product\":\"p\",\"secret\":\"k\"}]");
    put_file("gateway.json",
             "{\"loops\":1,\"log_level\":\"error\",\"admin\":{\"enabled\":false},"
             "\"storage\":{\"path\":\"db.sqlite\"},\"adapters\":{\"coap\":{\"listeners\":"
             "[{\"address\":\"127.0.0.1\",\"port\":0}],\"dedup_entries\":16,\"piggyback_ms\":100,"
             "\"idle_timeout_ms\":10000,\"max_wait_s\":1}}}");
    snprintf(path, sizeof(path), "%s/gateway.json", tmpdir);
    if (gw_config_load(path, gw_registry_config_plugins(), &cfg, &diag) != 0) {
        fprintf(stderr, "config: %s\n", diag.n ? diag.msgs[0] : "?");
        exit(1);
    }
    REQUIRE(gw_store_open(&store, cfg, &err) == 0);
    REQUIRE(gw_runtime_create(&rt, cfg, store, &err) == 0);
    REQUIRE(gw_store_start(store, NULL, NULL) == 0); /* online/offline events are committed */
    gw_log_level = getenv("UNIT_VERBOSE") ? GW_LOG_DEBUG : GW_LOG_ERROR + 1;
    ad = gw_runtime_add_adapter(rt, &gw_adapter_coap_ops);
    REQUIRE(ad && ad->ops->init(ad, json_object_get(cfg->adapters, "coap"), cfg, &diag) == 0);
    lp = &rt->loops[0];
    uv_check_stop(&lp->check); /* the test takes the events */
    cl = gw__coap_loop_new(ad, lp);
    REQUIRE(cl);
    lp->adapter_state[gw_adapter_index(ad)] = cl;
    sock = &cl->socks[0];
    sock->cl = cl;
    /* the gateway's socket (answers only: requests are handed to gw__coap_request) */
    struct sockaddr_in any = {.sin_family = AF_INET};
    any.sin_addr.s_addr = htonl(0x7f000001);
    REQUIRE(uv_udp_init(&lp->uv, &sock->d.h) == 0);
    REQUIRE(uv_udp_bind(&sock->d.h, (const struct sockaddr *)&any, 0) == 0);
    sock->d.open = true;
    /* the device's socket */
    cfd = socket(AF_INET, SOCK_DGRAM, 0);
    REQUIRE(cfd >= 0);
    REQUIRE(bind(cfd, (const struct sockaddr *)&any, sizeof(any)) == 0);
    socklen_t alen = sizeof(dev_addr);
    REQUIRE(getsockname(cfd, (struct sockaddr *)&dev_addr, &alen) == 0);
    int big = 1 << 20;
    setsockopt(cfd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    dev_addr2 = dev_addr;
    dev_addr2.sin_port = htons((uint16_t)(ntohs(dev_addr.sin_port) ^ 1));
    uv_update_time(&lp->uv);
    t0 = uv_now(&lp->uv);
}

static void teardown(void)
{
    gw__coap_close_all(cl, "shutdown");
    take_events();
    for (int i = 0; i < n_held; i++)
        if (held[i])
            commit(i);
    uv_close((uv_handle_t *)&sock->d.h, NULL);
    sock->d.open = false;
    close(cfd);
    gw_store_close(store);
    gw_runtime_free(rt); /* the adapter's uninit frees the loop state (exchanges left: none) */
    gw_config_free(cfg);
    cleanup();
}

int main(void)
{
    setup();
    test_con_pending();
    test_con_cached();
    test_non();
    test_footprint();
    test_bound();
    test_con_bound();
    test_idle_close();
    teardown();
    TEST_MAIN_END();
}

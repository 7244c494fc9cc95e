/* udp_held_acks.c: the UDP adapter's held acks (protocols/udp/udp_session.c) through its own
 * start on two in-process loops (SO_REUSEPORT sockets on 127.0.0.1), sensor-udp datagrams from
 * plain sockets, and the test playing the store: the loops' check handles are stopped, queued
 * events are taken and "committed" when a test says. An ack is held until its event commits and
 * goes out at that commit (none for a failed one), to the device's address at that time; a
 * session that is taken over by another loop or expires (idle) drops its held acks, and its
 * memory lives until the last pending event is done. No test seam. */
#include <errno.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gateway/core/dgram.h"
#include "gateway/util/error.h"
#include "gateway/registry.h"
#include "gateway/util/log.h"
#include "gateway/util/metrics.h"
#include "gateway/core/runtime.h"
#include "protocols/udp/udp.h"
#include "protocols/udp/udp_internal.h"
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
static gw_adapter *ad;
static uint16_t port;

#define MAX_HELD 256
static gw_event *held[MAX_HELD]; /* events in arrival order; NULL once done */
static int n_held;

/* ---- the loops, played by the test ---- */

static void take(gw_loop *l)
{
    for (gw_event *ev = l->pend_head, *next; ev; ev = next) {
        next = ev->next;
        ev->next = NULL;
        REQUIRE(n_held < MAX_HELD);
        held[n_held++] = ev;
    }
    l->pend_head = l->pend_tail = NULL;
    l->pend_n = 0;
    gw_dgram_flush(l);
}

/* One iteration of loop i (-1: both). */
static void tick_loop(int i)
{
    for (unsigned k = 0; k < rt->n_loops; k++) {
        if (i >= 0 && (unsigned)i != k)
            continue;
        uv_run(&rt->loops[k].uv, UV_RUN_NOWAIT);
        take(&rt->loops[k]);
    }
}

static void complete(int i, int status)
{
    gw_event *ev = held[i];
    REQUIRE(i < n_held && ev);
    held[i] = NULL;
    ev->status = status;
    ev->sess->ops->committed(ev->sess, ev);
    gw_store_event_done(store, ev);
    for (unsigned k = 0; k < rt->n_loops; k++)
        take(&rt->loops[k]);
}

static void commit(int i)
{
    complete(i, 0);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

#define WAIT_UNTIL(cond)                                                                           \
    do {                                                                                           \
        uint64_t end_ = now_ms() + 5000;                                                           \
        while (!(cond)) {                                                                          \
            if (now_ms() > end_) {                                                                 \
                CHECK(!"timed out waiting for: " #cond);                                           \
                break;                                                                             \
            }                                                                                      \
            tick_loop(-1);                                                                         \
            usleep(200);                                                                           \
        }                                                                                          \
    } while (0)

static void settle(void)
{
    for (int i = 0; i < 20; i++) {
        tick_loop(-1);
        usleep(300);
    }
}

/* ---- sensor-udp frames (docs/BINARY-CODEC.md section 9) ---- */

static uint32_t crc32(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffu;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = c & 1 ? (c >> 1) ^ 0xedb88320u : c >> 1;
    }
    return ~c;
}

/* A5 | 01 | type | device[8] | token[8] | seq u16 LE | body | crc32 BE over all before. */
static size_t frame(uint8_t *b, uint8_t type, const char *dev, const char *tok, uint16_t seq,
                    const uint8_t *body, size_t body_len)
{
    size_t n = 0;
    b[n++] = 0xA5;
    b[n++] = 0x01;
    b[n++] = type;
    memset(b + n, 0, 16);
    memcpy(b + n, dev, strlen(dev));
    memcpy(b + n + 8, tok, strlen(tok));
    n += 16;
    b[n++] = (uint8_t)seq;
    b[n++] = (uint8_t)(seq >> 8);
    if (body_len)
        memcpy(b + n, body, body_len);
    n += body_len;
    uint32_t c = crc32(b, n);
    b[n++] = (uint8_t)(c >> 24);
    b[n++] = (uint8_t)(c >> 16);
    b[n++] = (uint8_t)(c >> 8);
    b[n++] = (uint8_t)c;
    return n;
}

/* The ack of (dev, seq), result 0: 26 bytes, the token zeros. */
static size_t expect_ack(uint8_t *b, const char *dev, uint16_t seq)
{
    uint8_t result = 0;
    size_t n = frame(b, 0x81, dev, "", seq, &result, 1);
    return n;
}

typedef struct client {
    int fd;
    struct sockaddr_in addr;
} client;

static client client_new(void)
{
    client c = {.fd = socket(AF_INET, SOCK_DGRAM, 0)};
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(0x7f000001);
    REQUIRE(c.fd >= 0 && bind(c.fd, (struct sockaddr *)&a, sizeof(a)) == 0);
    socklen_t len = sizeof(c.addr);
    REQUIRE(getsockname(c.fd, (struct sockaddr *)&c.addr, &len) == 0);
    return c;
}

static void send_frame(const client *c, const uint8_t *b, size_t n)
{
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons(port)};
    to.sin_addr.s_addr = htonl(0x7f000001);
    REQUIRE(sendto(c->fd, b, n, 0, (struct sockaddr *)&to, sizeof(to)) == (ssize_t)n);
}

static const char *token_of(const char *dev)
{
    return strcmp(dev, "snr00001") == 0   ? "tok12345"
           : strcmp(dev, "snr00002") == 0 ? "tok00002"
                                          : "tok00009";
}

static void report(const client *c, const char *dev, uint16_t seq)
{
    uint8_t body[8] = {0x66, 0x08, 0xA8, 0x11, 0x57, 0x01, 0x3C, 0x00}, b[128];
    send_frame(c, b, frame(b, 0x01, dev, token_of(dev), seq, body, sizeof(body)));
}

static void heartbeat(const client *c, const char *dev, uint16_t seq)
{
    uint8_t b[128];
    send_frame(c, b, frame(b, 0x02, dev, token_of(dev), seq, NULL, 0));
}

/* The next datagram the client got (0: none). */
static size_t recv_one(const client *c, uint8_t *b)
{
    ssize_t r = recv(c->fd, b, 1500, MSG_DONTWAIT);
    if (r < 0) {
        REQUIRE(errno == EAGAIN || errno == EWOULDBLOCK);
        return 0;
    }
    return (size_t)r;
}

/* The client's next datagram is exactly the ack of (dev, seq). */
static bool got_ack(const client *c, const char *dev, uint16_t seq)
{
    uint8_t b[1500], want[64];
    size_t n = recv_one(c, b), m = expect_ack(want, dev, seq);
    if (n != m || memcmp(b, want, m) != 0) {
        fprintf(stderr, "  expected the ack of %s seq %u, got %zu bytes (seq %u)\n", dev, seq, n,
                n >= 21 ? (unsigned)(b[19] | b[20] << 8) : 0u);
        return false;
    }
    return true;
}

static bool quiet(const client *c)
{
    uint8_t b[1500];
    return recv_one(c, b) == 0;
}

/* Which loop reads this client's datagrams (SO_REUSEPORT hashes the source): a heartbeat of a
 * probe device is acked by the loop that reads it. */
static int loop_of(const client *c)
{
    static uint16_t seq = 1000;
    heartbeat(c, "snr00009", seq++);
    for (int tries = 0; tries < 2000; tries++) {
        for (int i = 0; i < (int)rt->n_loops; i++) {
            tick_loop(i);
            if (!quiet(c))
                return i;
        }
        usleep(200);
    }
    REQUIRE(!"no loop answered the probe");
    return -1;
}

static gw__udp_sess *session_on(int loop, const char *dev)
{
    gw__udp_loop *ul = rt->loops[loop].adapter_state[gw_adapter_index(ad)];
    return (gw__udp_sess *)gw_session_index_find(&ul->dl.sessions,
                                                 gw_config_device(cfg, dev)->index);
}

static void count_one(gw_session *s, void *arg)
{
    (void)s;
    (*(int *)arg)++;
}

/* Open sessions on every loop. */
static int sessions(void)
{
    int n = 0;
    for (unsigned i = 0; i < rt->n_loops; i++) {
        gw__udp_loop *ul = rt->loops[i].adapter_state[gw_adapter_index(ad)];
        gw_session_index_each(&ul->dl.sessions, count_one, &n);
    }
    return n;
}

/* ---- the tests ----
 * Each device's seq only grows through the whole run: a replay window on seq (refusing repeated
 * or older datagrams) leaves these tests alone. */

static client a, b, other; /* a and b on loop 0 (other source ports), other on loop 1 */

/* Held until the commit, sent at it (in commit order, which is the store's order); a heartbeat
 * is answered at once; a failed commit sends nothing. */
static void test_held(void)
{
    int base = n_held;
    for (uint16_t seq = 1; seq <= 4; seq++)
        report(&a, "snr00001", seq);
    WAIT_UNTIL(n_held == base + 4);
    settle();
    CHECK(quiet(&a));
    gw__udp_sess *s = session_on(0, "snr00001");
    REQUIRE(s);
    int n = 0;
    for (gw__udp_ack *k = s->acks; k; k = k->next)
        n++;
    CHECK_INT(n, 4);
    heartbeat(&a, "snr00001", 5);
    WAIT_UNTIL(!quiet(&a)); /* the heartbeat's ack (not held) */
    commit(base + 0);
    CHECK(got_ack(&a, "snr00001", 1));
    CHECK(quiet(&a));
    commit(base + 2); /* out of order: its ack goes at its commit */
    CHECK(got_ack(&a, "snr00001", 3));
    complete(base + 1, GW_ESTORE); /* failed for good: never acked */
    CHECK(quiet(&a));
    commit(base + 3);
    CHECK(got_ack(&a, "snr00001", 4));
    CHECK(quiet(&a));
    CHECK(s->acks == NULL && s->acks_tail == NULL);
    /* the list's tail survives removals: the next one still queues and goes */
    report(&a, "snr00001", 6);
    WAIT_UNTIL(n_held == base + 5);
    commit(base + 4);
    CHECK(got_ack(&a, "snr00001", 6));
}

/* The device moves to another source port (same loop): held acks go to its new address. */
static void test_address_change(void)
{
    int base = n_held;
    report(&a, "snr00001", 20);
    WAIT_UNTIL(n_held == base + 1);
    report(&b, "snr00001", 21);
    WAIT_UNTIL(n_held == base + 2);
    commit(base + 0);
    CHECK(quiet(&a));
    CHECK(got_ack(&b, "snr00001", 20));
    commit(base + 1);
    CHECK(got_ack(&b, "snr00001", 21));
    CHECK(quiet(&a));
}

/* The device shows up on another loop: that loop's session takes over, the old one closes and
 * drops its held acks (its pending event still holds its memory). */
static void test_takeover(void)
{
    int64_t take0 = gw_metric_get(GW_M_UDP_TAKEOVER);
    int base = n_held;
    report(&a, "snr00001", 30);
    WAIT_UNTIL(n_held == base + 1);
    gw__udp_sess *old = session_on(0, "snr00001");
    REQUIRE(old);
    uint32_t refs = old->d.base.refs;
    report(&other, "snr00001", 31);
    WAIT_UNTIL(n_held == base + 2 && gw_metric_get(GW_M_UDP_TAKEOVER) == take0 + 1);
    CHECK(session_on(0, "snr00001") == NULL);
    CHECK(session_on(1, "snr00001") != NULL);
    CHECK(old->d.closing);
    CHECK(old->acks == NULL);              /* dropped */
    CHECK_INT(old->d.base.refs, refs - 2); /* the loop's and the slot's went; the event's not */
    commit(base + 0);                      /* the old session's event: no ack, anywhere */
    commit(base + 1);
    CHECK(got_ack(&other, "snr00001", 31));
    CHECK(quiet(&a));
    CHECK(quiet(&other));
}

/* The session expires (idle_timeout_ms 1000) with an ack held: dropped; the next message opens a
 * new session whose ack is held and sent as usual. */
static void test_idle(void)
{
    int64_t idle0 = gw_metric_get(GW_M_UDP_IDLE);
    int base = n_held;
    report(&a, "snr00002", 40);
    WAIT_UNTIL(n_held == base + 1);
    int open = sessions(); /* snr00002's and the others still open: all expire */
    CHECK(session_on(0, "snr00002") != NULL);
    WAIT_UNTIL(sessions() == 0);
    CHECK_INT(gw_metric_get(GW_M_UDP_IDLE) - idle0, open);
    commit(base + 0);
    settle();
    CHECK(quiet(&a));
    report(&a, "snr00002", 41);
    WAIT_UNTIL(n_held == base + 2);
    CHECK(session_on(0, "snr00002") != NULL);
    commit(base + 1);
    CHECK(got_ack(&a, "snr00002", 41));
}

/* ---- set-up ---- */

static char tmpdir[] = "/tmp/unit_udp_XXXXXX";

static void put_file(const char *name, const char *text)
{
    gw_t_put_file(tmpdir, name, text);
}

/* The repository's sensor-udp product, next to this file's folder. */
static void copy_product(void)
{
    char src[1024], *text = malloc(1 << 16);
    REQUIRE(text);
    snprintf(src, sizeof(src), "%s", __FILE__);
    char *slash = strrchr(src, '/');
    REQUIRE(slash);
    snprintf(slash, sizeof(src) - (size_t)(slash - src), "/../../config/products/sensor-udp.json");
    FILE *f = fopen(src, "r");
    REQUIRE(f);
    size_t n = fread(text, 1, (1 << 16) - 1, f);
    fclose(f);
    text[n] = 0;
    put_file("products/sensor-udp.json", text);
    free(text);
}

static void cleanup(void)
{
    gw_t_rm_tree(tmpdir);
}

static void setup(void)
{
    char path[512];
    gw_diag diag = {0};
    gw_error err = {0, ""};
    REQUIRE(mkdtemp(tmpdir));
    snprintf(path, sizeof(path), "%s/products", tmpdir);
    REQUIRE(mkdir(path, 0700) == 0);
    copy_product();
    put_file("devices.json",
             "[{\"id\":\"snr00001\",\"product\":\"sensor-udp\",\"secret\":\"tok12345\"},"
             "{\"id\":\"snr00002\",\"product\":\"sensor-udp\",\"secret\":\"tok00002\"},"
             "{\"id\":\"snr00009\",\"product\":\"sensor-udp\",\"secret\":\"tok00009\"}]");
    put_file("gateway.json",
             "{\"loops\":2,\"log_level\":\"error\",\"admin\":{\"enabled\":false},"
             "\"storage\":{\"path\":\"db.sqlite\"},\"adapters\":{\"udp\":{\"listeners\":"
             "[{\"address\":\"127.0.0.1\",\"port\":0,\"product\":\"sensor-udp\"}],"
             "\"idle_timeout_ms\":1000}}}");
    snprintf(path, sizeof(path), "%s/gateway.json", tmpdir);
    if (gw_config_load(path, gw_registry_config_plugins(), &cfg, &diag) != 0) {
        fprintf(stderr, "config: %s\n", diag.n ? diag.msgs[0] : "?");
        exit(1);
    }
    REQUIRE(gw_store_open(&store, cfg, &err) == 0);
    REQUIRE(gw_runtime_create(&rt, cfg, store, &err) == 0);
    REQUIRE(rt->n_loops == 2);
    REQUIRE(gw_store_start(store, NULL, NULL) == 0); /* online/offline events are committed */
    gw_log_level = getenv("UNIT_VERBOSE") ? GW_LOG_DEBUG : GW_LOG_ERROR + 1;
    ad = gw_runtime_add_adapter(rt, &gw_adapter_udp_ops);
    REQUIRE(ad && ad->ops->init(ad, json_object_get(cfg->adapters, "udp"), cfg, &diag) == 0);
    for (unsigned i = 0; i < rt->n_loops; i++) {
        uv_check_stop(&rt->loops[i].check); /* the test takes the events */
        REQUIRE(ad->ops->start(ad, &rt->loops[i]) == 0);
    }
    port = ((gw__udp_adapter *)ad->state)->dg.bound_ports[0];
    REQUIRE(port);
    /* two clients read by loop 0, one by loop 1 */
    client pool[40];
    int n0 = 0, n1 = 0;
    for (int i = 0; i < 40 && (n0 < 2 || n1 < 1); i++) {
        pool[i] = client_new();
        int l = loop_of(&pool[i]);
        if (l == 0 && n0 < 2) {
            if (n0++)
                b = pool[i];
            else
                a = pool[i];
        } else if (l == 1 && n1 < 1) {
            other = pool[i];
            n1++;
        } else {
            close(pool[i].fd);
        }
    }
    REQUIRE(n0 == 2 && n1 == 1);
    settle();
    while (!quiet(&a) || !quiet(&b) || !quiet(&other))
        ;
}

static void teardown(void)
{
    for (unsigned i = 0; i < rt->n_loops; i++)
        ad->ops->stop(ad, &rt->loops[i]);
    for (unsigned i = 0; i < rt->n_loops; i++)
        ad->ops->close_sessions(ad, &rt->loops[i]);
    tick_loop(-1);
    for (int i = 0; i < n_held; i++)
        if (held[i])
            commit(i);
    close(a.fd);
    close(b.fd);
    close(other.fd);
    gw_store_close(store);
    gw_runtime_free(rt);
    gw_config_free(cfg);
    cleanup();
}

int main(void)
{
    setup();
    test_held();
    test_address_change();
    test_takeover();
    test_idle();
    teardown();
    TEST_MAIN_END();
}

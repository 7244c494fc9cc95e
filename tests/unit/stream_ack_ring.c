/* stream_ack_ring.c: the stream connection's ordered ack ring (protocols/stream/stream_conn.c)
 * driven through real loopback TCP connections on one in-process loop: a scratch config, store
 * and runtime, and a tiny line adapter on gw_stream_start. The test plays both the device (plain
 * non-blocking sockets) and the store: the loop's check handle is stopped, each iteration's
 * queued events are taken and "committed" in whatever order a test wants (the session's committed
 * op, then gw_store_event_done, as after a real commit). Covers in-order acks after out-of-order
 * commits, byte and entry acks mixed, ring growth across the wrap, the max_inflight pause and its
 * resume at half, take-over and close with acks pending (memory held by the pending events), a
 * failed commit, and the output bounds (high water pause and resume, hard limit close). */
#include <errno.h>
#include <fcntl.h>
#include <malloc.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "gateway/util/alloc.h"
#include "gateway/util/error.h"
#include "gateway/registry.h"
#include "gateway/util/log.h"
#include "gateway/core/runtime.h"
#include "protocols/stream/stream_conn.h"
#include "protocols/stream/stream_internal.h"
#include "protocols/tcp/tcp_metrics.h"
#include "test.h"
#include "tmpdir.h"

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #c);                \
            exit(1);                                                                               \
        }                                                                                          \
    } while (0)

/* ---- the line adapter ----
 * "E<v>": an event whose ack is entry v (waits for its commit); "B<t>": an event whose ack is the
 * bytes "b<t>\n"; "R<v>" / "r<t>": the same acks, ready at once (no event); "L<dev>": logs in as
 * that device; "X<n>": answers n bytes of 'x' and "\n". Each ack entry v is sent as "A<v>\n". */

typedef struct tconn {
    gw_stream_conn s;
    int id; /* its index in conns[] and reasons[] */
} tconn;

#define MAX_CONNS 16
static tconn *conns[MAX_CONNS];
static int n_conns, n_destroyed;
static char reasons[MAX_CONNS][32]; /* why each closed ("" while open); outlives the connection */

static gw_config *cfg;
static gw_store *store;
static gw_runtime *rt;
static gw_adapter *ad;
static gw_loop *lp;

#define MAX_HELD 256
static gw_event *held[MAX_HELD]; /* queued events in arrival order; NULL once committed */
static int n_held;

static void t_send_ack(gw_stream_conn *c, uint32_t e)
{
    char b[16];
    int n = snprintf(b, sizeof(b), "A%u\n", e);
    gw_stream_out(c, (const uint8_t *)b, (size_t)n);
}

static void t_opened(gw_stream_conn *c)
{
    tconn *t = (tconn *)c;
    REQUIRE(n_conns < MAX_CONNS);
    t->id = n_conns;
    conns[n_conns++] = t;
    c->state = GW_STREAM_OPEN;
    /* output backs up soon */
    setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &(int){4096}, sizeof(int));
}

static bool t_closing(gw_stream_conn *c, const char *reason, bool will)
{
    (void)will;
    snprintf(reasons[((tconn *)c)->id], sizeof(reasons[0]), "%s", reason);
    return false;
}

static void t_expired(gw_stream_conn *c)
{
    c->deadline = 0;
}

static void t_destroy(gw_stream_conn *c)
{
    tconn *t = (tconn *)c;
    conns[t->id] = NULL;
    n_destroyed++;
}

static void queue_event(gw_stream_conn *c, uint32_t *seq_out)
{
    gw_event *ev = gw_store_event_new(store, GW_EV_EVENT, NULL);
    REQUIRE(ev);
    gw_session_retain(&c->base); /* as the dispatcher does: the event holds its session */
    ev->sess = &c->base;
    ev->token = c->ack_seq + c->ack_n; /* the sequence number the next push gets */
    *seq_out = ev->token;
    gw_loop_queue_event(lp, ev);
}

/* The bytes ack of a "B<t>" / "r<t>" line: "b<t>\n". */
static int push_bytes(gw_stream_conn *c, const uint8_t *t, size_t n, bool ready, uint32_t *seq)
{
    uint8_t b[16384];
    REQUIRE(n + 2 <= sizeof(b));
    b[0] = 'b';
    memcpy(b + 1, t, n);
    b[n + 1] = '\n';
    return gw_stream_ack_push_bytes(c, b, n + 2, ready, seq);
}

static size_t t_process(gw_stream_conn *c, const uint8_t *buf, size_t len)
{
    size_t used = 0;
    while (used < len && !gw_stream_closing(c)) {
        const uint8_t *p = buf + used, *nl = memchr(p, '\n', len - used);
        if (!nl)
            break;
        size_t n = (size_t)(nl - p);
        char arg[64] = "";
        REQUIRE(n >= 1);
        memcpy(arg, p + 1, n - 1 < sizeof(arg) - 1 ? n - 1 : sizeof(arg) - 1);
        uint32_t seq, tok;
        switch (p[0]) {
        case 'E':
        case 'B':
            if (gw_stream_hold(c))
                return used; /* the rest waits in the connection's input */
            queue_event(c, &tok);
            if (p[0] == 'E')
                REQUIRE(gw_stream_ack_push(c, (uint32_t)atol(arg), false, &seq) == 0);
            else
                REQUIRE(push_bytes(c, p + 1, n - 1, false, &seq) == 0);
            REQUIRE(seq == tok);
            break;
        case 'R':
            REQUIRE(gw_stream_ack_push(c, (uint32_t)atol(arg), true, &seq) == 0);
            break;
        case 'r':
            REQUIRE(push_bytes(c, p + 1, n - 1, true, &seq) == 0);
            break;
        case 'L':
            REQUIRE(gw_config_device(cfg, arg));
            gw_session_online(&c->base, gw_config_device(cfg, arg), "test");
            break;
        case 'X': {
            if (gw_stream_out_full(c))
                return used;
            size_t k = (size_t)atol(arg);
            uint8_t *x = malloc(k + 1);
            REQUIRE(x);
            memset(x, 'x', k);
            x[k] = '\n';
            gw_stream_out(c, x, k + 1);
            free(x);
            break;
        }
        default:
            REQUIRE(!"unknown line");
        }
        used += n + 1;
    }
    return used;
}

static const gw_stream_ops t_ops = {
    .session = GW_STREAM_SESSION_OPS("test", NULL),
    .conn_size = sizeof(tconn),
    .opened = t_opened,
    .process = t_process,
    .send_ack = t_send_ack,
    .closing = t_closing,
    .expired = t_expired,
    .destroy = t_destroy,
};
static const gw_adapter_ops t_adapter = {
    .name = "test",
    .uninit = gw_stream_free_all,
};

/* ---- the loop, played by the test ---- */

/* One loop iteration without the check handle: this iteration's events are taken (held until a
 * test commits them), then dirty sessions flush, as the check handle would after submitting. */
static void tick(void)
{
    uv_run(&lp->uv, UV_RUN_NOWAIT);
    for (gw_event *ev = lp->pend_head, *next; ev; ev = next) {
        next = ev->next;
        ev->next = NULL;
        REQUIRE(n_held < MAX_HELD);
        held[n_held++] = ev;
    }
    lp->pend_head = lp->pend_tail = NULL;
    lp->pend_n = 0;
    while (lp->dirty) {
        gw_session *s = lp->dirty;
        lp->dirty = s->dirty_next;
        s->dirty_next = NULL;
        s->dirty = 0;
        s->ops->flush(s);
        gw_session_release(s);
    }
}

/* The store's verdict on held event i: status 0 (committed) or an error. */
static void complete(int i, int status)
{
    gw_event *ev = held[i];
    REQUIRE(i < n_held && ev);
    held[i] = NULL;
    ev->status = status;
    ev->sess->ops->committed(ev->sess, ev);
    gw_store_event_done(store, ev);
    tick();
}

static void commit(int i)
{
    complete(i, 0);
}

/* ---- the devices: plain non-blocking sockets ---- */

typedef struct client {
    int fd;
    bool reads; /* read by every poll (else only when a test says so) */
    bool eof;
    char *in; /* everything received, NUL-terminated */
    size_t n, cap;
} client;

#define MAX_CLIENTS 16
static client clients[MAX_CLIENTS];
static int n_clients;
static uint16_t port;

static void client_read(client *k)
{
    while (k->fd >= 0) {
        if (k->n + 65536 > k->cap) {
            k->cap = k->cap ? k->cap * 2 : 1 << 18;
            k->in = realloc(k->in, k->cap);
            REQUIRE(k->in);
        }
        ssize_t r = recv(k->fd, k->in + k->n, k->cap - k->n - 1, MSG_DONTWAIT);
        if (r > 0) {
            k->n += (size_t)r;
            k->in[k->n] = 0;
            continue;
        }
        if (r == 0 || (errno != EAGAIN && errno != EWOULDBLOCK))
            k->eof = true;
        return;
    }
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void poll_once(void)
{
    tick();
    for (int i = 0; i < n_clients; i++)
        if (clients[i].reads && !clients[i].eof)
            client_read(&clients[i]);
    usleep(200);
}

/* Polls until cond holds (a failed check after 5 s). */
#define WAIT_UNTIL(cond)                                                                           \
    do {                                                                                           \
        uint64_t end_ = now_ms() + 5000;                                                           \
        while (!(cond)) {                                                                          \
            if (now_ms() > end_) {                                                                 \
                CHECK(!"timed out waiting for: " #cond);                                           \
                break;                                                                             \
            }                                                                                      \
            poll_once();                                                                           \
        }                                                                                          \
    } while (0)

/* A few iterations, for what must NOT happen: everything here is synchronous on loopback (what
 * an iteration writes is in the peer's socket when it ends), so a few are plenty. */
static void settle(void)
{
    for (int i = 0; i < 20; i++)
        poll_once();
}

/* A device connects (rcvbuf: its receive buffer, 0 for the default) and its connection opens. */
static client *connect_client(int rcvbuf, tconn **conn)
{
    REQUIRE(n_clients < MAX_CLIENTS);
    client *k = &clients[n_clients++];
    memset(k, 0, sizeof(*k));
    k->fd = socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(k->fd >= 0);
    if (rcvbuf)
        REQUIRE(setsockopt(k->fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf)) == 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(0x7f000001);
    REQUIRE(connect(k->fd, (struct sockaddr *)&a, sizeof(a)) == 0); /* the backlog takes it */
    REQUIRE(fcntl(k->fd, F_SETFL, O_NONBLOCK) == 0);
    k->reads = true;
    int want = n_conns + 1;
    WAIT_UNTIL(n_conns >= want);
    REQUIRE(n_conns == want);
    *conn = conns[want - 1];
    return k;
}

/* Sends all of text, running the loop while the socket's buffers are full. */
static void say(client *k, const char *text)
{
    size_t n = strlen(text), done = 0;
    uint64_t end = now_ms() + 5000;
    while (done < n) {
        ssize_t r = send(k->fd, text + done, n - done, MSG_NOSIGNAL);
        if (r > 0) {
            done += (size_t)r;
            continue;
        }
        REQUIRE(r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK) && now_ms() < end);
        poll_once();
    }
}

static void client_close(client *k)
{
    if (k->fd >= 0)
        close(k->fd);
    k->fd = -1;
    k->eof = true;
}

/* "E<first>\nE<first+1>\n..." (count lines). */
static void say_events(client *k, int first, int count)
{
    char buf[8192];
    size_t len = 0;
    for (int i = 0; i < count; i++)
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "E%d\n", first + i);
    say(k, buf);
}

/* "A<first>\n...A<first+count-1>\n" */
static const char *acks(int first, int count)
{
    static char buf[8192];
    size_t len = 0;
    buf[0] = 0;
    for (int i = 0; i < count; i++)
        len += (size_t)snprintf(buf + len, sizeof(buf) - len, "A%d\n", first + i);
    return buf;
}

static int live_held(void)
{
    int n = 0;
    for (int i = 0; i < n_held; i++)
        n += held[i] != NULL;
    return n;
}

/* ---- the tests ---- */

static void test_out_of_order(void)
{
    tconn *c;
    client *k = connect_client(0, &c);
    int id = c->id;
    int base = n_held;
    say_events(k, 0, 5);
    WAIT_UNTIL(n_held == base + 5);
    CHECK_INT(c->s.ack_n, 5);
    commit(base + 3);
    commit(base + 1);
    commit(base + 4);
    settle();
    CHECK_INT(k->n, 0); /* the head (0) is not committed: nothing goes out */
    CHECK_INT(c->s.ack_n, 5);
    commit(base + 0);
    WAIT_UNTIL(k->n >= 6);
    settle();
    CHECK_STR(k->in, "A0\nA1\n");
    commit(base + 2);
    WAIT_UNTIL(k->n >= 15);
    CHECK_STR(k->in, "A0\nA1\nA2\nA3\nA4\n");
    CHECK_INT(c->s.ack_n, 0);
    CHECK(c->s.ak == NULL); /* an empty ring keeps no memory */
    CHECK_INT(c->s.ack_seq, 5);
    client_close(k);
    WAIT_UNTIL(reasons[id][0]);
    CHECK_STR(reasons[id], "connection_lost");
}

static void test_mixed(void)
{
    tconn *c;
    client *k = connect_client(0, &c);
    int id = c->id;
    int base = n_held;
    /* seq 0: entry 10 (event), 1: bytes (event), 2: entry 11 ready, 3: entry 12 (event), 4: bytes
     * ready, 5: bytes (event) */
    say(k, "E10\nBone\nR11\nE12\nrtwo\nBthree\n");
    WAIT_UNTIL(n_held == base + 4);
    CHECK_INT(c->s.ack_n, 6);
    CHECK_INT(c->s.ak->b_len, 5 + 5 + 7);
    commit(base + 1); /* "bone" */
    commit(base + 2); /* 12 */
    settle();
    CHECK_INT(k->n, 0);
    commit(base + 0); /* 10: everything up to "three" goes */
    WAIT_UNTIL(k->n >= 22);
    settle();
    CHECK_STR(k->in, "A10\nbone\nA11\nA12\nbtwo\n");
    CHECK_INT(c->s.ack_n, 1);
    CHECK_INT(c->s.ak->b_len, 7);
    commit(base + 3);
    WAIT_UNTIL(k->n >= 29);
    CHECK_STR(k->in, "A10\nbone\nA11\nA12\nbtwo\nbthree\n");
    CHECK(c->s.ak == NULL);
    client_close(k);
    WAIT_UNTIL(reasons[id][0]);
}

/* The ring (16 entries first) wraps, then grows while wrapped: order survives the copy. */
static void test_wrap_and_growth(void)
{
    tconn *c;
    client *k = connect_client(0, &c);
    int id = c->id;
    int base = n_held;
    say_events(k, 0, 12);
    WAIT_UNTIL(n_held == base + 12);
    CHECK_INT(c->s.ak->cap, 16);
    for (int i = 0; i < 8; i++)
        commit(base + i);
    WAIT_UNTIL(k->n >= strlen(acks(0, 8)));
    CHECK_STR(k->in, acks(0, 8));
    CHECK_INT(c->s.ak->head, 8);
    say_events(k, 12, 10); /* entries 12..21: slots 12..15 then 0..5 */
    WAIT_UNTIL(n_held == base + 22);
    CHECK_INT(c->s.ak->cap, 16);
    CHECK_INT(c->s.ack_n, 14);
    CHECK_INT(c->s.ak->head, 8);
    say_events(k, 22, 6); /* 20 pending: the ring doubles, unwrapped */
    WAIT_UNTIL(n_held == base + 28);
    CHECK_INT(c->s.ak->cap, 32);
    CHECK_INT(c->s.ak->head, 0);
    CHECK_INT(c->s.ack_n, 20);
    for (int i = 27; i >= 8; i--) /* newest first: all wait for entry 8 */
        commit(base + i);
    WAIT_UNTIL(k->n >= strlen(acks(0, 28)));
    settle();
    CHECK_STR(k->in, acks(0, 28));
    client_close(k);
    WAIT_UNTIL(reasons[id][0]);
}

/* max_inflight 8: reading stops at 8 pending acks and resumes when fewer than half remain. */
static void test_inflight(void)
{
    gw_stream_loop *sl = gw_stream_loop_of(ad, lp);
    uint32_t saved = sl->max_inflight;
    sl->max_inflight = 8;
    tconn *c;
    client *k = connect_client(0, &c);
    int id = c->id;
    int base = n_held;
    say_events(k, 0, 20);
    WAIT_UNTIL(n_held == base + 8);
    settle();
    CHECK_INT(n_held, base + 8); /* held back: the rest waits in the connection */
    CHECK(c->s.paused_inflight);
    CHECK(!c->s.reading);
    for (int i = 0; i < 4; i++)
        commit(base + i);
    settle();
    CHECK_INT(n_held, base + 8); /* 4 pending: not below half yet */
    CHECK(c->s.paused_inflight);
    commit(base + 4); /* 3 < 4: resumes, takes 5 more (8 again) */
    settle();
    CHECK_INT(n_held, base + 13);
    CHECK(c->s.paused_inflight);
    CHECK_STR(k->in, acks(0, 5));
    /* in order from here: each resume takes what fits under the bound again */
    for (int i = 5; i < 20; i++) {
        WAIT_UNTIL(n_held > base + i);
        CHECK(c->s.ack_n <= 8);
        commit(base + i);
    }
    settle();
    CHECK_INT(n_held, base + 20);
    CHECK(!c->s.paused_inflight);
    CHECK(c->s.reading);
    WAIT_UNTIL(k->n >= strlen(acks(0, 20)));
    CHECK_STR(k->in, acks(0, 20));
    sl->max_inflight = saved;
    client_close(k);
    WAIT_UNTIL(reasons[id][0]);
}

/* A second connection logs in as the same device while the first has acks pending: the first
 * closes ("takeover") and never acks again; its memory lives until its last event is done. */
static void test_takeover(void)
{
    tconn *c1, *c2;
    client *k1 = connect_client(0, &c1);
    int base = n_held;
    say(k1, "Ldev1\n");
    WAIT_UNTIL(c1->s.base.online);
    say_events(k1, 0, 3);
    WAIT_UNTIL(n_held == base + 3);
    commit(base + 0);
    WAIT_UNTIL(k1->n >= 3);
    int destroyed = n_destroyed, id1 = c1->id;
    client *k2 = connect_client(0, &c2);
    int id2 = c2->id;
    say(k2, "Ldev1\n");
    WAIT_UNTIL(k1->eof);
    CHECK_STR(reasons[id1], "takeover");
    CHECK(c2->s.base.online);
    settle();
    CHECK(conns[id1] == c1); /* closed, but two pending events hold it */
    CHECK_INT(n_destroyed, destroyed);
    commit(base + 2);
    commit(base + 1);
    CHECK(conns[id1] == NULL); /* the last one let go */
    CHECK_INT(n_destroyed, destroyed + 1);
    CHECK_STR(k1->in, "A0\n");
    say_events(k2, 7, 1);
    WAIT_UNTIL(n_held == base + 4);
    commit(base + 3);
    WAIT_UNTIL(k2->n >= 3);
    CHECK_STR(k2->in, "A7\n");
    client_close(k2);
    WAIT_UNTIL(reasons[id2][0]);
    CHECK_STR(reasons[id2], "connection_lost");
}

/* The device half-closes with acks pending: they still go out, in order, then the close. */
static void test_half_close(void)
{
    tconn *c;
    client *k = connect_client(0, &c);
    int id = c->id;
    int base = n_held;
    say_events(k, 0, 3);
    WAIT_UNTIL(n_held == base + 3);
    REQUIRE(shutdown(k->fd, SHUT_WR) == 0);
    WAIT_UNTIL(c->s.eof);
    CHECK(reasons[id][0] == 0);
    commit(base + 2);
    commit(base + 1);
    settle();
    CHECK_INT(k->n, 0);
    CHECK(!k->eof);
    commit(base + 0);
    WAIT_UNTIL(k->eof);
    CHECK_STR(k->in, acks(0, 3));
    CHECK_STR(reasons[id], "connection_lost");
}

/* The device goes away with acks pending: the connection closes at once; the pending commits
 * later find it closing (no ack, no use after free: the events hold it). */
static void test_close_pending(void)
{
    tconn *c;
    client *k = connect_client(0, &c);
    int id = c->id;
    int base = n_held, destroyed = n_destroyed;
    say_events(k, 0, 3);
    WAIT_UNTIL(n_held == base + 3);
    struct linger lg = {1, 0};
    setsockopt(k->fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg)); /* a reset, not a half-close */
    client_close(k);
    WAIT_UNTIL(reasons[id][0]);
    CHECK_STR(reasons[id], "connection_lost");
    settle();
    CHECK_INT(n_destroyed, destroyed);
    commit(base + 1);
    commit(base + 0);
    CHECK(conns[id] == c);
    commit(base + 2);
    CHECK(conns[id] == NULL);
    CHECK_INT(n_destroyed, destroyed + 1);
}

/* A commit that failed for good closes the connection (store_error) without acking it or
 * anything after it; acks before it were sent. */
static void test_store_error(void)
{
    tconn *c;
    client *k = connect_client(0, &c);
    int id = c->id;
    int base = n_held;
    say_events(k, 0, 3);
    WAIT_UNTIL(n_held == base + 3);
    commit(base + 0);
    complete(base + 1, GW_ESTORE);
    WAIT_UNTIL(k->eof);
    CHECK_STR(reasons[id], "store_error");
    commit(base + 2);
    CHECK_STR(k->in, "A0\n");
}

/* Output bounds: past high water the connection is not read (its events wait), below low water
 * it is read again; acks that would take it past the hard limit close it (output_overflow). */
static void test_output_bounds(void)
{
    tconn *c;
    client *k = connect_client(4096, &c);
    int id = c->id;
    int base = n_held;
    int64_t paused0 = gw_metric_get(GW_M_TCP_OUTPUT_PAUSED);
    int64_t over0 = gw_metric_get(GW_M_TCP_OUTPUT_OVERFLOW);
    k->reads = false;
    say(k, "X200000\n");
    WAIT_UNTIL(c->s.paused_out);
    CHECK(!c->s.reading);
    CHECK(gw_stream_unsent(&c->s) > 4096);
    CHECK_INT(gw_metric_get(GW_M_TCP_OUTPUT_PAUSED) - paused0, 1);
    say_events(k, 0, 2);
    settle();
    CHECK_INT(n_held, base); /* not read while over high water */
    k->reads = true;         /* the device reads: its output drains, its events are read */
    WAIT_UNTIL(n_held == base + 2);
    CHECK(!c->s.paused_out);
    WAIT_UNTIL(k->n >= 200001);
    CHECK_INT(k->n, 200001);
    commit(base + 1);
    commit(base + 0);
    WAIT_UNTIL(k->n >= 200001 + 6);
    CHECK_STR(k->in + 200001, "A0\nA1\n");

    /* Twenty 8 KB byte acks pending, the device stops reading, 200 KB more output: the acks
     * would pass the hard limit (256 KB): the connection closes. */
    char line[8200];
    memset(line, 'y', sizeof(line));
    line[0] = 'B';
    line[8190] = '\n';
    line[8191] = 0;
    for (int i = 0; i < 20; i++)
        say(k, line);
    WAIT_UNTIL(n_held == base + 22);
    k->reads = false;
    size_t before = k->n;
    say(k, "X200000\n");
    WAIT_UNTIL(c->s.paused_out);
    for (int i = 2; i < 22 && !reasons[id][0]; i++)
        commit(base + i);
    for (int i = 2; i < 22; i++)
        if (held[base + i])
            commit(base + i);
    WAIT_UNTIL(reasons[id][0]);
    CHECK_STR(reasons[id], "output_overflow");
    CHECK_INT(gw_metric_get(GW_M_TCP_OUTPUT_OVERFLOW) - over0, 1);
    k->reads = true;
    WAIT_UNTIL(k->eof);
    CHECK(k->n - before <= 200001);
    CHECK(memchr(k->in + before, 'b', k->n - before) == NULL); /* no ack went out */
}

/* Issue 19: an idle connection keeps nothing but its struct. After output that backed up (a
 * write queue) and acks in flight (the ring, byte acks), once all is written and acknowledged the
 * connection holds no side allocation, its socket is registered for reading only, and the
 * session memory it adds is its struct's malloc chunk (no libuv handle, nothing else). */
static void test_idle_keeps_nothing(void)
{
    settle();
    int64_t s0 = gw_alloc_bytes(GW_AREA_SESSION), o0 = gw_alloc_bytes(GW_AREA_OUTPUT);
    tconn *c;
    client *k = connect_client(4096, &c);
    int base = n_held;
    settle();
    CHECK_INT(gw_alloc_bytes(GW_AREA_SESSION) - s0, (int64_t)malloc_usable_size(c));
    k->reads = false;
    say(k, "X200000\n");
    WAIT_UNTIL(c->s.paused_out);
    CHECK(c->s.wq != NULL && c->s.wq->len > 0);
    CHECK(c->s.ev == (EPOLLOUT)); /* paused: not read, written when the socket takes it */
    k->reads = true;
    WAIT_UNTIL(k->n >= 200001);
    say_events(k, 0, 3);
    say(k, "Bhello\n");
    WAIT_UNTIL(n_held == base + 4);
    CHECK(c->s.ak != NULL);
    for (int i = 0; i < 4; i++)
        commit(base + i);
    WAIT_UNTIL(k->n >= 200001 + 9 + 7); /* "A0\nA1\nA2\n" "bhello\n" */
    settle();
    CHECK(c->s.wq == NULL && c->s.ak == NULL && c->s.in == NULL && c->s.out == NULL);
    CHECK_INT(c->s.ack_n, 0);
    CHECK(c->s.reading);
    CHECK(c->s.ev == EPOLLIN);
    CHECK_INT(gw_alloc_bytes(GW_AREA_SESSION) - s0, (int64_t)malloc_usable_size(c));
    CHECK_INT(gw_alloc_bytes(GW_AREA_OUTPUT) - o0, 0);
    client_close(k);
    WAIT_UNTIL(reasons[c->id][0]);
}

/* The loop's bound: with output already queued for one connection, the connection whose queued
 * output would take the loop's total past output_loop_limit is closed (output_overflow); the first
 * one is left alone and drains when its device reads. */
static void test_output_loop_limit(void)
{
    tconn *ca, *cb;
    client *ka = connect_client(4096, &ca);
    client *kb = connect_client(4096, &cb);
    int ida = ca->id, idb = cb->id;
    gw_stream_loop *sl = gw_stream_loop_of(ad, lp);
    uint32_t saved = sl->out.loop_limit;
    int64_t over0 = gw_metric_get(GW_M_TCP_OUTPUT_OVERFLOW);
    ka->reads = false;
    kb->reads = false;
    say(ka, "X200000\n");
    WAIT_UNTIL(ca->s.paused_out);
    CHECK(sl->out_queued > 0);
    /* the queue's memory: at least what is left to write of it */
    CHECK(ca->s.wq && sl->out_queued >= ca->s.wq->len);
    sl->out.loop_limit = (uint32_t)sl->out_queued + 1000; /* B's first queued write passes it */
    say(kb, "X200000\n");
    WAIT_UNTIL(reasons[idb][0]);
    CHECK_STR(reasons[idb], "output_overflow");
    CHECK_INT(gw_metric_get(GW_M_TCP_OUTPUT_OVERFLOW) - over0, 1);
    CHECK(!reasons[ida][0]);
    CHECK(sl->out_queued <= sl->out.loop_limit);
    kb->reads = true;
    WAIT_UNTIL(kb->eof);
    ka->reads = true; /* A was within the bound: all of its output arrives */
    WAIT_UNTIL(ka->n >= 200001);
    CHECK_INT(ka->n, 200001);
    WAIT_UNTIL(sl->out_queued == 0);
    CHECK(!reasons[ida][0]);
    sl->out.loop_limit = saved;
}

/* ---- set-up ---- */

static char tmpdir[] = "/tmp/unit_stream_XXXXXX";

static void put_file(const char *name, const char *text)
{
    gw_t_put_file(tmpdir, name, text);
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
    put_file("products/p.json", "{\"id\":\"p\",\"protocol\":\"mqtt\",\"codec\":\"json\","
                                "\"properties\":[{\"id\":\"t\",\"type\":\"int\"}]}");
    put_file("devices.json", "[{\"id\":\"dev1\",\"product\":\"p\",\"secret\":\"k\"}]");
    put_file("gateway.json", "{\"loops\":1,\"log_level\":\"error\",\"admin\":{\"enabled\":false},"
                             "\"storage\":{\"path\":\"db.sqlite\"},\"adapters\":{\"mqtt\":{"
                             "\"listeners\":[{\"address\":\"127.0.0.1\",\"port\":0}]}}}");
    snprintf(path, sizeof(path), "%s/gateway.json", tmpdir);
    if (gw_config_load(path, gw_registry_config_plugins(), &cfg, &diag) != 0) {
        fprintf(stderr, "config: %s\n", diag.n ? diag.msgs[0] : "?");
        exit(1);
    }
    REQUIRE(gw_store_open(&store, cfg, &err) == 0);
    REQUIRE(gw_runtime_create(&rt, cfg, store, &err) == 0);
    REQUIRE(gw_store_start(store, NULL, NULL) == 0); /* online/offline events are committed */
    gw_log_level = getenv("UNIT_VERBOSE") ? GW_LOG_DEBUG : GW_LOG_ERROR + 1;
    ad = gw_runtime_add_adapter(rt, &t_adapter);
    lp = &rt->loops[0];
    uv_check_stop(&lp->check); /* the test takes the events and flushes the sessions */
    gw_stream_out_cfg out;
    gw_stream_out_defaults(&out, GW_M_TCP_OUTPUT_PAUSED, GW_M_TCP_OUTPUT_OVERFLOW);
    out.high_water = 4096;
    out.low_water = 1024;
    out.hard_limit = 262144;
    gw_listen li = {.address = "127.0.0.1", .port = 0};
    gw_listen_list ls = {&li, 1};
    REQUIRE(gw_stream_start(ad, lp, &t_ops, NULL, &ls, &port, 64, &out, NULL, NULL) == 0);
    REQUIRE(port != 0);
}

static void teardown(void)
{
    for (int i = 0; i < n_clients; i++) {
        client_close(&clients[i]);
        free(clients[i].in);
    }
    gw_stream_stop(ad, lp);
    gw_stream_close_all(ad, lp, "shutdown");
    for (int i = 0; i < n_held; i++)
        if (held[i])
            commit(i);
    for (int i = 0; i < 50; i++)
        tick();
    gw_store_close(store);
    gw_runtime_free(rt);
    gw_config_free(cfg);
    cleanup();
}

int main(void)
{
    REQUIRE(gw_metrics_register(gw__tcp_metrics) == 0); /* the TCP output metrics it counts */
    setup();
    test_out_of_order();
    test_mixed();
    test_wrap_and_growth();
    test_inflight();
    test_takeover();
    test_half_close();
    test_close_pending();
    test_store_error();
    test_output_bounds();
    test_output_loop_limit();
    test_idle_keeps_nothing();
    CHECK_INT(live_held(), 0);
    teardown();
    CHECK_INT(n_destroyed, n_conns);
    TEST_MAIN_END();
}

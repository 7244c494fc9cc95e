/* north_sub.c: the cloud-side subscriber of the north benchmark. One MQTT 3.1.1 connection (raw
 * socket, its own encoders, like mqtt_load it shares no code with the gateway), subscribed at QoS
 * 1; it acks every PUBLISH, the acks of one read in one write, and tells messages apart by
 * (device, messageId): the device is a level of the topic, the messageId is read from the JSON
 * payload, so the same counting works for iotgw's upstream payloads and for the device payloads a
 * mosquitto bridge passes through. Prints one `bench=north_sub ...` line. */
#define LOADGEN_PROG "north_sub"
#include "loadgen.h"

#include <poll.h>

#define RBUF_SIZE (256 * 1024)

static struct opts {
    const char *host;
    int port;
    const char *client_id;
    const char *topic;
    bool clean;
    long expect;
    double timeout, idle, retry;
    int device_level;
    bool subscribe_only;
} o = {.host = "127.0.0.1",
       .port = 1883,
       .client_id = "north-sub",
       .topic = "#",
       .expect = 0,
       .timeout = 120.0,
       .idle = 10.0,
       .retry = 10.0,
       .device_level = 2};

static struct state {
    int fd;
    uint8_t *in; /* unparsed input */
    size_t in_len, in_cap;
    outbuf out;
    uint64_t received, keyed, distinct, other, connects;
    double first_t, last_t;
    uint64_t *set; /* open addressing, 0 = empty */
    size_t set_cap;
} g = {.fd = -1};

/* ---- the set of (device, messageId) seen ---- */

static uint64_t key_hash(const uint8_t *dev, size_t dl, const uint8_t *mid, size_t ml)
{
    uint64_t h = 1469598103934665603ULL; /* FNV-1a 64 */
    for (size_t i = 0; i < dl; i++)
        h = (h ^ dev[i]) * 1099511628211ULL;
    h = (h ^ '/') * 1099511628211ULL;
    for (size_t i = 0; i < ml; i++)
        h = (h ^ mid[i]) * 1099511628211ULL;
    h ^= h >> 33; /* finaliser: spread the low bits used for the slot */
    h *= 0xff51afd7ed558ccdULL;
    h ^= h >> 33;
    return h ? h : 1;
}

static bool set_add(uint64_t h);

static void set_grow(void)
{
    uint64_t *old = g.set;
    size_t n = g.set_cap;
    g.set_cap = n ? n * 2 : 1 << 16;
    g.set = calloc(g.set_cap, sizeof *g.set);
    if (!g.set)
        die("calloc");
    for (size_t i = 0; i < n; i++)
        if (old[i])
            set_add(old[i]);
    free(old);
}

/* True when h is new. */
static bool set_add(uint64_t h)
{
    if (!g.set_cap || g.distinct * 2 >= g.set_cap)
        set_grow();
    size_t m = g.set_cap - 1;
    for (size_t i = h & m;; i = (i + 1) & m) {
        if (g.set[i] == h)
            return false;
        if (!g.set[i]) {
            g.set[i] = h;
            return true;
        }
    }
}

/* ---- MQTT ---- */

static void queue_connect(void)
{
    uint32_t rl = 10 + 2 + (uint32_t)strlen(o.client_id);
    ob_reserve(&g.out, rl + 8);
    uint8_t *p = g.out.buf + g.out.len;
    size_t n = 0;
    p[n++] = 0x10;
    n += put_rl(p + n, rl);
    n += put_str(p + n, "MQTT");
    p[n++] = 4;
    p[n++] = o.clean ? 0x02 : 0x00;
    p[n++] = 0;
    p[n++] = 0; /* no keep-alive: the run is bounded by --timeout */
    n += put_str(p + n, o.client_id);
    g.out.len += (uint32_t)n;
}

static void queue_subscribe(void)
{
    uint32_t rl = 2 + 2 + (uint32_t)strlen(o.topic) + 1;
    ob_reserve(&g.out, rl + 8);
    uint8_t *p = g.out.buf + g.out.len;
    size_t n = 0;
    p[n++] = 0x82;
    n += put_rl(p + n, rl);
    p[n++] = 0;
    p[n++] = 1; /* packet id */
    n += put_str(p + n, o.topic);
    p[n++] = 1; /* QoS 1 */
    g.out.len += (uint32_t)n;
}

static void queue_puback(uint16_t pid)
{
    ob_reserve(&g.out, 4);
    uint8_t *p = g.out.buf + g.out.len;
    p[0] = 0x40;
    p[1] = 2;
    p[2] = (uint8_t)(pid >> 8);
    p[3] = (uint8_t)pid;
    g.out.len += 4;
}

static void flush_all(void)
{
    while (g.out.off < g.out.len) {
        int r = ob_send(g.fd, &g.out);
        if (r < 0)
            return; /* the read side sees the close */
        if (r == 0) {
            struct pollfd pf = {.fd = g.fd, .events = POLLOUT};
            poll(&pf, 1, 100);
        }
    }
}

/* The topic's level-th '/'-separated level (0-based). */
static bool topic_level(const uint8_t *t, size_t tl, int level, const uint8_t **out, size_t *ol)
{
    size_t start = 0;
    for (int l = 0; l < level; l++) {
        const uint8_t *sl = memchr(t + start, '/', tl - start);
        if (!sl)
            return false;
        start = (size_t)(sl - t) + 1;
    }
    const uint8_t *end = memchr(t + start, '/', tl - start);
    *out = t + start;
    *ol = end ? (size_t)(end - (t + start)) : tl - start;
    return true;
}

static void on_publish(uint8_t h, const uint8_t *b, uint32_t rl)
{
    double now = now_s();
    if (!g.received)
        g.first_t = now;
    g.last_t = now;
    g.received++;
    if (rl < 2)
        return;
    uint32_t tl = (uint32_t)b[0] << 8 | b[1];
    if (2 + tl > rl)
        return;
    const uint8_t *topic = b + 2, *pl = b + 2 + tl;
    uint32_t off = 2 + tl;
    if ((h >> 1 & 3) == 1) {
        if (off + 2 > rl)
            return;
        queue_puback((uint16_t)(pl[0] << 8 | pl[1]));
        pl += 2;
        off += 2;
    }
    size_t plen = rl - off;
    static const char MID[] = "\"messageId\":\"";
    const uint8_t *m = memmem(pl, plen, MID, sizeof MID - 1), *dev;
    size_t dl;
    if (!m || !topic_level(topic, tl, o.device_level, &dev, &dl)) {
        g.other++;
        return;
    }
    m += sizeof MID - 1;
    const uint8_t *q = memchr(m, '"', plen - (size_t)(m - pl));
    if (!q) {
        g.other++;
        return;
    }
    g.keyed++;
    if (set_add(key_hash(dev, dl, m, (size_t)(q - m))))
        g.distinct++;
}

/* Parses every whole packet in g.in; returns -1 on a protocol problem. */
static int parse(bool *subscribed)
{
    size_t p = 0;
    while (g.in_len - p >= 2) {
        uint32_t rl = 0, mul = 1;
        size_t i = 1;
        for (;; i++) {
            if (p + i >= g.in_len)
                goto partial;
            if (i > 4)
                return -1;
            rl += (g.in[p + i] & 127u) * mul;
            mul *= 128;
            if (!(g.in[p + i] & 128))
                break;
        }
        if (g.in_len - p < 1 + i + rl)
            break;
        uint8_t h = g.in[p];
        const uint8_t *b = g.in + p + 1 + i;
        switch (h >> 4) {
        case 2: /* CONNACK */
            if (rl != 2 || b[1] != 0) {
                fprintf(stderr, "north_sub: CONNACK refused (%u)\n", rl == 2 ? b[1] : 255);
                return -1;
            }
            g.connects++;
            break;
        case 3:
            on_publish(h, b, rl);
            break;
        case 9: /* SUBACK */
            if (rl < 3 || b[2] == 0x80) {
                fprintf(stderr, "north_sub: subscription refused\n");
                return -1;
            }
            *subscribed = true;
            break;
        default:
            break;
        }
        p += 1 + i + rl;
    }
partial:
    memmove(g.in, g.in + p, g.in_len - p);
    g.in_len -= p;
    return 0;
}

/* Connects (retrying for --retry seconds: the broker may be starting), CONNECT + SUBSCRIBE. */
static bool open_conn(void)
{
    struct sockaddr_in sa;
    ipv4_addr(&sa, o.host, o.port);
    double deadline = now_s() + o.retry;
    for (;;) {
        g.fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (g.fd < 0)
            die("socket");
        if (connect(g.fd, (struct sockaddr *)&sa, sizeof sa) == 0)
            break;
        close(g.fd);
        g.fd = -1;
        if (now_s() > deadline)
            return false;
        usleep(20000);
    }
    int one = 1;
    setsockopt(g.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    g.out.off = g.out.len = 0;
    g.in_len = 0;
    queue_connect();
    queue_subscribe();
    flush_all();
    return true;
}

static bool done(void)
{
    return o.expect > 0 && g.distinct >= (uint64_t)o.expect;
}

static void report(void)
{
    printf("bench=north_sub received=%llu keyed=%llu distinct=%llu dup=%llu other=%llu "
           "first_t=%.6f last_t=%.6f connects=%llu\n",
           (unsigned long long)g.received, (unsigned long long)g.keyed,
           (unsigned long long)g.distinct, (unsigned long long)(g.keyed - g.distinct),
           (unsigned long long)g.other, g.first_t, g.last_t, (unsigned long long)g.connects);
    fflush(stdout);
}

static void usage(void)
{
    fprintf(stderr, "usage: north_sub [--host H] [--port P] [--client-id ID] [--topic FILTER]\n"
                    "  [--clean] [--expect N] [--timeout S] [--idle S] [--retry S]\n"
                    "  [--device-level L] [--subscribe-only]\n");
    exit(2);
}

static const optdef OPTS[] = {{"host", 's', &o.host},
                              {"port", 'i', &o.port},
                              {"client-id", 's', &o.client_id},
                              {"topic", 's', &o.topic},
                              {"clean", 'b', &o.clean},
                              {"expect", 'l', &o.expect},
                              {"timeout", 'd', &o.timeout},
                              {"idle", 'd', &o.idle},
                              {"retry", 'd', &o.retry},
                              {"device-level", 'i', &o.device_level},
                              {"subscribe-only", 'b', &o.subscribe_only}};

int main(int argc, char **argv)
{
    parse_opts(argc, argv, OPTS, sizeof OPTS / sizeof OPTS[0], usage);
    if (o.port < 1 || o.port > 65535 || o.expect < 0 || o.device_level < 0 ||
        strlen(o.client_id) > 1024 || strlen(o.topic) > 1024)
        usage();
    signal(SIGPIPE, SIG_IGN);
    g.in_cap = RBUF_SIZE * 2;
    g.in = malloc(g.in_cap);
    if (!g.in)
        die("malloc");
    double t_end = now_s() + o.timeout;
    bool subscribed = false, said = false;
    if (!open_conn()) {
        fprintf(stderr, "north_sub: cannot connect to %s:%d\n", o.host, o.port);
        report();
        return 1;
    }
    while (!done()) {
        double now = now_s();
        if (now > t_end || (g.received && now - g.last_t > o.idle))
            break;
        struct pollfd pf = {.fd = g.fd, .events = POLLIN};
        int r = poll(&pf, 1, 100);
        if (r < 0 && errno != EINTR)
            die("poll");
        if (r <= 0)
            continue;
        if (g.in_cap - g.in_len < RBUF_SIZE) {
            g.in_cap *= 2;
            g.in = realloc(g.in, g.in_cap);
            if (!g.in)
                die("realloc");
        }
        ssize_t n = recv(g.fd, g.in + g.in_len, RBUF_SIZE, 0);
        if (n <= 0) {
            if (n < 0 && (errno == EINTR || errno == EAGAIN))
                continue;
            close(g.fd); /* the broker went away: reconnect, the session goes on */
            g.fd = -1;
            if (o.clean || !open_conn()) {
                fprintf(stderr, "north_sub: connection lost\n");
                break;
            }
            continue;
        }
        g.in_len += (size_t)n;
        if (parse(&subscribed) < 0)
            break;
        flush_all();
        if (subscribed && !said) {
            said = true;
            printf("subscribed\n");
            fflush(stdout);
            if (o.subscribe_only)
                break;
        }
    }
    if (g.fd >= 0) {
        ob_reserve(&g.out, 2);
        g.out.buf[g.out.len++] = 0xE0; /* DISCONNECT: the persistent session stays */
        g.out.buf[g.out.len++] = 0x00;
        flush_all();
        close(g.fd);
    }
    report();
    if (o.subscribe_only)
        return said ? 0 : 1;
    return done() || !o.expect ? 0 : 1;
}

/* coap_load.c: CoAP load generator for bench_coap.py: N client endpoints (one UDP socket each,
 * connected to the server), each sending confirmable PUT requests of the same ~100-byte JSON
 * property report with a window of outstanding requests per endpoint and an optional cap on the
 * requests outstanding in all; responses are matched by message id (piggybacked ACK) or by token
 * (separate response after an empty ACK, ACKed when CON). Raw RFC 7252 encoding, no libcoap; one
 * thread, epoll, sendmmsg/recvmmsg. It counts lost requests (no response within --ack-timeout-ms,
 * no retransmission), duplicate and late responses. --idle: every endpoint sends one request, the
 * generator then holds its sockets until stdin EOF or SIGTERM (memory per idle endpoint). */
#define LOADGEN_PROG "coap_load"
#include "loadgen.h"

#include <fcntl.h>
#include <poll.h>

#define SLOTS  256 /* per endpoint, indexed by seq % SLOTS; the window is at most SLOTS / 2 */
#define BATCH  32
#define DG_MAX 1024

enum { S_FREE, S_OUT, S_DONE, S_EXPIRED };
typedef enum { P_START, P_WARMUP, P_MEASURE, P_DRAIN, P_END } phase;

typedef struct slot {
    double t;
    uint32_t seq;
    uint8_t state;
    uint8_t empty_acked;
} slot;

typedef struct endpoint {
    int fd;
    bool dead;
    uint32_t seq;    /* next request's sequence number: token = seq, mid = (base + seq) */
    uint32_t oldest; /* oldest seq that may still be outstanding */
    uint16_t mid_base;
    uint32_t outstanding;
    uint8_t *tmpl; /* the request datagram; mid, token and messageId digits patched per send */
    uint16_t len, id_off;
    slot slots[SLOTS];
} endpoint;

static struct opts {
    const char *host, *path_fmt, *device_fmt, *query;
    int port, endpoints, window, outstanding, payload_size, first_device, sockbuf;
    double seconds, warmup, timeout, rate;
    long ack_timeout_ms;
    bool marks, idle, non;
} o = {.host = "127.0.0.1",
       .path_fmt = "/bench/%s/properties/report",
       .device_fmt = "bench-%05d",
       .query = "",
       .endpoints = 16,
       .window = 4,
       .payload_size = 100,
       .sockbuf = 1 << 20,
       .seconds = 5.0,
       .warmup = 1.0,
       .timeout = 30.0,
       .ack_timeout_ms = 2000};

static struct state {
    int ep, sigfd;
    endpoint *e;
    phase ph;
    double t0, t_end, t_phase, t_scan;
    uint64_t outstanding, base, msgs;
    uint64_t sent_total, ok_total, busy_total, rejected_total, rst_total, lost, dup, late, stray,
        separate, empty_acks, bad;
    int dead;
    uint32_t cursor;
    unsigned codes[256]; /* responses by code */
} g;

static void usage(void)
{
    fprintf(stderr,
            "usage: coap_load --port P [--host 127.0.0.1] [--endpoints N] [--window W]\n"
            "  [--outstanding T] [--seconds S] [--warmup S] [--timeout S] [--ack-timeout-ms MS]\n"
            "  [--path-fmt '/bench/%%s/properties/report' (%%s = device id, or a fixed path)]\n"
            "  [--device-fmt 'bench-%%05d'] [--first-device I] [--query 'token=s']\n"
            "  [--payload-size 100] [--sockbuf BYTES] [--rate R (idle: requests/s)] [--non]\n"
            "  [--marks] [--idle]\n");
    exit(2);
}

/* ---- the request ---- */

static size_t put_opt(uint8_t *p, unsigned delta, const uint8_t *val, size_t len)
{
    size_t k = 1;
    uint8_t dn, ln;
    uint8_t ext[4];
    size_t ne = 0;
    if (delta < 13) {
        dn = (uint8_t)delta;
    } else if (delta < 269) {
        dn = 13;
        ext[ne++] = (uint8_t)(delta - 13);
    } else {
        dn = 14;
        ext[ne++] = (uint8_t)((delta - 269) >> 8);
        ext[ne++] = (uint8_t)(delta - 269);
    }
    if (len < 13) {
        ln = (uint8_t)len;
    } else if (len < 269) {
        ln = 13;
        ext[ne++] = (uint8_t)(len - 13);
    } else {
        ln = 14;
        ext[ne++] = (uint8_t)((len - 269) >> 8);
        ext[ne++] = (uint8_t)(len - 269);
    }
    p[0] = (uint8_t)(dn << 4 | ln);
    memcpy(p + 1, ext, ne);
    k += ne;
    memcpy(p + k, val, len);
    return k + len;
}

/* The endpoint's datagram: CON PUT, token 4 bytes, Uri-Path segments, Content-Format 50,
 * Uri-Query, payload {"messageId":"0000000000","properties":{...,"name":"xx..."}} padded to
 * --payload-size through the name. */
static void build_template(endpoint *e, int idx)
{
    char dev[64], path[256];
    if (fmt_one(o.device_fmt, o.first_device + idx, NULL, dev, sizeof dev) < 0)
        usage();
    if (fmt_one(o.path_fmt, 0, dev, path, sizeof path) < 0)
        usage();
    uint8_t *p = malloc(DG_MAX);
    if (!p)
        die("malloc");
    size_t n = 0;
    p[n++] = 0x40 | (o.non ? 0x10 : 0x00) | 4; /* ver 1, CON/NON, TKL 4 */
    p[n++] = 3;                                /* PUT */
    n += 2 + 4;                                /* mid, token: per send */
    unsigned last = 0;
    const char *s = path;
    while (*s) {
        while (*s == '/')
            s++;
        size_t l = strcspn(s, "/");
        if (!l)
            break;
        n += put_opt(p + n, 11 - last, (const uint8_t *)s, l);
        last = 11;
        s += l;
    }
    uint8_t cf = 50;
    n += put_opt(p + n, 12 - last, &cf, 1);
    last = 12;
    if (*o.query) {
        n += put_opt(p + n, 15 - last, (const uint8_t *)o.query, strlen(o.query));
        last = 15;
    }
    p[n++] = 0xFF;
    static const char head[] = "{\"messageId\":\"";
    static const char mid_part[] =
        "\",\"properties\":{\"temperature\":21.5,\"humidity\":40.2,\"level\":3,\"name\":\"";
    static const char tail[] = "\"}}";
    size_t fixed = strlen(head) + 10 + strlen(mid_part) + strlen(tail);
    size_t pad = o.payload_size > (int)fixed ? (size_t)o.payload_size - fixed : 0;
    if (n + fixed + pad > DG_MAX)
        usage();
    memcpy(p + n, head, strlen(head));
    n += strlen(head);
    e->id_off = (uint16_t)n;
    memset(p + n, '0', 10);
    n += 10;
    memcpy(p + n, mid_part, strlen(mid_part));
    n += strlen(mid_part);
    memset(p + n, 'x', pad);
    n += pad;
    memcpy(p + n, tail, strlen(tail));
    n += strlen(tail);
    e->tmpl = p;
    e->len = (uint16_t)n;
}

static void patch(endpoint *e, uint8_t *dg, uint32_t seq)
{
    memcpy(dg, e->tmpl, e->len);
    uint16_t mid = (uint16_t)(e->mid_base + seq);
    dg[2] = (uint8_t)(mid >> 8);
    dg[3] = (uint8_t)mid;
    dg[4] = (uint8_t)(seq >> 24);
    dg[5] = (uint8_t)(seq >> 16);
    dg[6] = (uint8_t)(seq >> 8);
    dg[7] = (uint8_t)seq;
    uint32_t v = seq;
    for (int i = 9; i >= 0; i--) {
        dg[e->id_off + i] = (uint8_t)('0' + v % 10);
        v /= 10;
    }
}

/* ---- sending ---- */

static bool sending(void)
{
    return g.ph == P_WARMUP || g.ph == P_MEASURE || (o.idle && g.ph == P_START);
}

/* Forgets requests outstanding longer than --ack-timeout-ms (lost), and any whose slot the
 * next `reserve` requests would reuse. */
static void expire(endpoint *e, double t, uint32_t reserve)
{
    double limit = t - (double)o.ack_timeout_ms / 1000.0;
    while (e->oldest != e->seq) {
        slot *s = &e->slots[e->oldest % SLOTS];
        if (s->state == S_OUT && s->seq == e->oldest) {
            if (s->t > limit && e->seq + reserve - e->oldest < SLOTS)
                break;
            s->state = S_EXPIRED;
            e->outstanding--;
            g.outstanding--;
            g.lost++;
        }
        e->oldest++;
    }
}

static uint32_t room(const endpoint *e)
{
    uint32_t w = (uint32_t)o.window - e->outstanding;
    if (o.idle && e->seq > 0)
        return 0; /* one request per endpoint */
    if (o.idle)
        w = 1;
    uint64_t cap = (uint64_t)o.outstanding;
    if (g.outstanding >= cap)
        return 0;
    if (cap - g.outstanding < w)
        w = (uint32_t)(cap - g.outstanding);
    return w > BATCH ? BATCH : w;
}

static void fail(endpoint *e, const char *why)
{
    if (e->dead)
        return;
    fprintf(stderr, "coap_load: endpoint %d: %s\n", (int)(e - g.e), why);
    e->dead = true;
    g.dead++;
    g.outstanding -= e->outstanding;
    e->outstanding = 0;
    epoll_ctl(g.ep, EPOLL_CTL_DEL, e->fd, NULL);
}

/* Sends up to the endpoint's free window (and the global cap). Returns how many went out. */
static uint32_t refill(endpoint *e)
{
    static uint8_t dg[BATCH][DG_MAX];
    static struct iovec iov[BATCH];
    static struct mmsghdr mm[BATCH];
    if (e->dead || !sending())
        return 0;
    uint32_t k = room(e);
    if (!k)
        return 0;
    double t = now_s();
    if (e->seq + k - e->oldest >= SLOTS)
        expire(e, t, k);
    for (uint32_t i = 0; i < k; i++) {
        patch(e, dg[i], e->seq + i);
        iov[i].iov_base = dg[i];
        iov[i].iov_len = e->len;
        memset(&mm[i], 0, sizeof mm[i]);
        mm[i].msg_hdr.msg_iov = &iov[i];
        mm[i].msg_hdr.msg_iovlen = 1;
    }
    int n = sendmmsg(e->fd, mm, k, MSG_DONTWAIT);
    if (n < 0) {
        if (errno != EAGAIN && errno != ENOBUFS && errno != EINTR)
            fail(e, strerror(errno));
        return 0;
    }
    for (int i = 0; i < n; i++) {
        slot *s = &e->slots[e->seq % SLOTS];
        s->t = t;
        s->seq = e->seq;
        s->state = o.non ? S_DONE : S_OUT;
        s->empty_acked = 0;
        e->seq++;
    }
    if (o.non) {
        e->oldest = e->seq;
        g.ok_total += (uint64_t)n; /* NON: nothing comes back; counted as sent */
    } else {
        e->outstanding += (uint32_t)n;
        g.outstanding += (uint64_t)n;
    }
    g.sent_total += (uint64_t)n;
    return (uint32_t)n;
}

/* Tops every endpoint up, round robin from where the last pass stopped (the global cap). */
static void top_up(void)
{
    if (!sending())
        return;
    for (int i = 0; i < o.endpoints && g.outstanding < (uint64_t)o.outstanding; i++) {
        endpoint *e = &g.e[g.cursor];
        g.cursor = (g.cursor + 1) % (uint32_t)o.endpoints;
        refill(e);
    }
}

/* ---- receiving ---- */

static void complete(endpoint *e, slot *s, uint8_t code)
{
    s->state = S_DONE;
    e->outstanding--;
    g.outstanding--;
    g.codes[code]++;
    if (code >> 5 == 2)
        g.ok_total++;
    else if (code == ((5 << 5) | 3))
        g.busy_total++;
    else
        g.rejected_total++;
}

static void on_datagram(endpoint *e, const uint8_t *p, size_t len)
{
    if (len < 4 || p[0] >> 6 != 1) {
        g.bad++;
        return;
    }
    unsigned type = (p[0] >> 4) & 3, tkl = p[0] & 15;
    uint8_t code = p[1];
    uint16_t mid = (uint16_t)(p[2] << 8 | p[3]);
    if (type == 2 || type == 3) { /* ACK / RST: by message id */
        uint32_t seq = e->seq - (uint16_t)(e->seq - (uint16_t)(mid - e->mid_base));
        slot *s = &e->slots[seq % SLOTS];
        if (s->seq != seq || s->state == S_FREE) {
            g.stray++;
            return;
        }
        if (s->state != S_OUT) {
            if (code == 0 || type == 3)
                return;
            if (s->state == S_DONE)
                g.dup++;
            else
                g.late++;
            return;
        }
        if (type == 3) {
            g.rst_total++;
            s->state = S_DONE;
            e->outstanding--;
            g.outstanding--;
            return;
        }
        if (code == 0) {
            s->empty_acked = 1;
            g.empty_acks++;
            return;
        }
        complete(e, s, code);
        return;
    }
    /* CON / NON: a separate response, matched by token */
    if (tkl != 4 || len < 8 || code < 64) {
        g.stray++;
        return;
    }
    if (type == 0) { /* ACK it */
        uint8_t ack[4] = {0x60, 0, p[2], p[3]};
        send(e->fd, ack, sizeof ack, MSG_DONTWAIT);
    }
    uint32_t seq = (uint32_t)p[4] << 24 | (uint32_t)p[5] << 16 | (uint32_t)p[6] << 8 | p[7];
    slot *s = &e->slots[seq % SLOTS];
    if (s->seq != seq || s->state == S_FREE) {
        g.stray++;
        return;
    }
    if (s->state != S_OUT) {
        if (s->state == S_DONE)
            g.dup++;
        else
            g.late++;
        return;
    }
    g.separate++;
    complete(e, s, code);
}

static void readable(endpoint *e)
{
    static uint8_t buf[BATCH][DG_MAX];
    static struct iovec iov[BATCH];
    static struct mmsghdr mm[BATCH];
    for (;;) {
        for (int i = 0; i < BATCH; i++) {
            iov[i].iov_base = buf[i];
            iov[i].iov_len = sizeof buf[i];
            memset(&mm[i], 0, sizeof mm[i]);
            mm[i].msg_hdr.msg_iov = &iov[i];
            mm[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(e->fd, mm, BATCH, MSG_DONTWAIT, NULL);
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                fail(e, strerror(errno)); /* ECONNREFUSED: nobody listens */
            return;
        }
        for (int i = 0; i < n; i++)
            on_datagram(e, buf[i], mm[i].msg_len);
        if (n < BATCH)
            return;
    }
}

/* ---- phases ---- */

static void open_endpoints(void)
{
    struct sockaddr_in sa;
    ipv4_addr(&sa, o.host, o.port);
    g.e = calloc((size_t)o.endpoints, sizeof *g.e);
    if (!g.e)
        die("calloc");
    for (int i = 0; i < o.endpoints; i++) {
        endpoint *e = &g.e[i];
        e->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (e->fd < 0)
            die("socket (raise ulimit -n?)");
        if (!o.idle) {
            setsockopt(e->fd, SOL_SOCKET, SO_RCVBUF, &o.sockbuf, sizeof o.sockbuf);
            setsockopt(e->fd, SOL_SOCKET, SO_SNDBUF, &o.sockbuf, sizeof o.sockbuf);
        }
        if (connect(e->fd, (const struct sockaddr *)&sa, sizeof sa) < 0)
            die("connect (udp)");
        e->mid_base = (uint16_t)(i * 7919u + 12345u);
        build_template(e, i);
        epoll_set(g.ep, EPOLL_CTL_ADD, e->fd, EPOLLIN, e);
    }
}

static void set_phase(phase ph)
{
    g.ph = ph;
    g.t_phase = now_s();
    if (ph == P_MEASURE) {
        g.t0 = g.t_phase;
        g.base = g.ok_total;
        mark_if(o.marks, "measure_start");
    }
    if (ph == P_DRAIN) {
        g.t_end = g.t_phase;
        g.msgs = g.ok_total - g.base;
        mark_if(o.marks, "measure_end");
    }
}

static void print_result(void)
{
    double secs = g.t_end - g.t0;
    printf("bench=coap_load endpoints=%d window=%d outstanding=%d msgs=%llu seconds=%.3f "
           "req_per_s=%.0f sent_total=%llu ok_total=%llu busy_total=%llu rejected_total=%llu "
           "rst_total=%llu lost=%llu dup=%llu late=%llu stray=%llu separate=%llu "
           "empty_acks=%llu bad=%llu dead=%d datagram_bytes=%d",
           o.endpoints, o.window, o.outstanding, (unsigned long long)g.msgs, secs,
           secs > 0 ? (double)g.msgs / secs : 0.0, (unsigned long long)g.sent_total,
           (unsigned long long)g.ok_total, (unsigned long long)g.busy_total,
           (unsigned long long)g.rejected_total, (unsigned long long)g.rst_total,
           (unsigned long long)g.lost, (unsigned long long)g.dup, (unsigned long long)g.late,
           (unsigned long long)g.stray, (unsigned long long)g.separate,
           (unsigned long long)g.empty_acks, (unsigned long long)g.bad, g.dead,
           g.e ? (int)(g.e[0].len) : 0);
    printf(" codes=");
    bool first = true;
    for (int c = 0; c < 256; c++)
        if (g.codes[c]) {
            printf("%s%d.%02d:%u", first ? "" : ",", c >> 5, c & 31, g.codes[c]);
            first = false;
        }
    printf("%s\n", first ? "none" : "");
    fflush(stdout);
}

static void scan_expired(double t)
{
    if (o.non || t - g.t_scan < 0.01)
        return;
    g.t_scan = t;
    for (int i = 0; i < o.endpoints; i++)
        if (!g.e[i].dead)
            expire(&g.e[i], t, 0);
}

/* --idle: one request per endpoint (at most --outstanding at a time, --rate per second), then
 * `connected N answered=A` and hold the sockets until stdin EOF or SIGTERM. */
static int run_idle(void)
{
    double t_start = now_s(), deadline = t_start + o.timeout;
    struct epoll_event evs[256];
    int sent_ok = 0;
    while (g.ok_total + g.rejected_total + g.busy_total + g.lost + g.rst_total <
           (uint64_t)o.endpoints - (uint64_t)g.dead) {
        double t = now_s();
        if (t > deadline)
            break;
        while (sent_ok < o.endpoints && g.outstanding < (uint64_t)o.outstanding &&
               (o.rate <= 0 || sent_ok < (t - t_start) * o.rate + 1)) {
            refill(&g.e[sent_ok]);
            sent_ok++;
        }
        int n = wait_events(g.ep, evs, 256, 5);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &g.sigfd)
                return 1;
            readable((endpoint *)evs[i].data.ptr);
        }
        scan_expired(now_s());
    }
    printf("connected %d answered=%llu ok=%llu lost=%llu\n", o.endpoints - g.dead,
           (unsigned long long)(g.ok_total + g.rejected_total + g.busy_total),
           (unsigned long long)g.ok_total, (unsigned long long)g.lost);
    fflush(stdout);
    struct pollfd pf[2] = {{.fd = 0, .events = POLLIN}, {.fd = g.sigfd, .events = POLLIN}};
    for (;;) {
        if (poll(pf, 2, -1) < 0 && errno != EINTR)
            die("poll");
        if (pf[1].revents)
            break;
        if (pf[0].revents) {
            char b[256];
            ssize_t r = read(0, b, sizeof b);
            if (r <= 0)
                break;
        }
    }
    return g.dead ? 1 : 0;
}

int main(int argc, char **argv)
{
    static const optdef defs[] = {
        {"host", 's', &o.host},
        {"port", 'i', &o.port},
        {"endpoints", 'i', &o.endpoints},
        {"window", 'i', &o.window},
        {"outstanding", 'i', &o.outstanding},
        {"seconds", 'd', &o.seconds},
        {"warmup", 'd', &o.warmup},
        {"timeout", 'd', &o.timeout},
        {"ack-timeout-ms", 'l', &o.ack_timeout_ms},
        {"path-fmt", 's', &o.path_fmt},
        {"device-fmt", 's', &o.device_fmt},
        {"first-device", 'i', &o.first_device},
        {"query", 's', &o.query},
        {"payload-size", 'i', &o.payload_size},
        {"sockbuf", 'i', &o.sockbuf},
        {"rate", 'd', &o.rate},
        {"non", 'b', &o.non},
        {"marks", 'b', &o.marks},
        {"idle", 'b', &o.idle},
    };
    parse_opts(argc, argv, defs, sizeof defs / sizeof defs[0], usage);
    if (o.port < 1 || o.endpoints < 1 || o.window < 1 || o.window > SLOTS / 2 ||
        o.ack_timeout_ms < 1)
        usage();
    if (o.outstanding <= 0)
        o.outstanding = o.endpoints * o.window;
    raise_nofile();
    g.ep = epoll_with_signals(&g.sigfd);
    open_endpoints();
    if (o.idle)
        return run_idle();

    struct epoll_event evs[256];
    set_phase(o.warmup > 0 ? P_WARMUP : P_MEASURE);
    top_up();
    int rc = 0;
    while (g.ph != P_END) {
        double t = now_s();
        if (g.ph == P_WARMUP && t - g.t_phase >= o.warmup)
            set_phase(P_MEASURE);
        else if (g.ph == P_MEASURE && t - g.t_phase >= o.seconds)
            set_phase(P_DRAIN);
        else if (g.ph == P_DRAIN && (g.outstanding == 0 || t - g.t_phase >= o.timeout))
            g.ph = P_END;
        if (g.ph == P_END)
            break;
        int n = wait_events(g.ep, evs, 256, 5);
        for (int i = 0; i < n; i++) {
            if (evs[i].data.ptr == &g.sigfd) {
                drain_signals(g.sigfd);
                set_phase(P_DRAIN);
                g.ph = P_END;
                rc = 1;
                break;
            }
            readable((endpoint *)evs[i].data.ptr);
        }
        scan_expired(now_s());
        top_up();
        if (g.dead == o.endpoints) {
            if (g.ph != P_DRAIN)
                set_phase(P_DRAIN);
            g.ph = P_END;
        }
    }
    if (g.t_end == 0)
        set_phase(P_DRAIN);
    print_result();
    return rc || g.dead ? 1 : 0;
}

/* mqtt_load.c: MQTT 3.1.1 publish load generator for the ingest benchmark. One thread, epoll,
 * non-blocking sockets and its own tiny CONNECT/PUBLISH encoders: it shares no code with the
 * gateway, so it measures mosquitto and iotgw alike. Prints one `bench=mqtt_load ...` line. */
#define LOADGEN_PROG "mqtt_load"
#include "loadgen.h"

#define RBUF_SIZE   (256 * 1024) /* one read buffer for every connection */
#define Q0_BATCH    (64 * 1024)  /* QoS 0: bytes of back-to-back PUBLISHes per write */
#define CARRY_MAX   64           /* partial server packet kept between reads */
#define MAX_EVENTS  1024
#define PENDING_MAX 256 /* handshakes in flight while connecting */
#define PINGS_MAX   16  /* QoS 0: PINGREQs in flight per connection (flow control) */

typedef enum cstate { C_CONNECTING, C_WAIT_CONNACK, C_READY, C_SYNC, C_DEAD } cstate;

typedef enum phase {
    P_CONNECT,  /* opening connections, waiting for every CONNACK */
    P_WARMUP,   /* publishing, not counted */
    P_BARRIER0, /* QoS 0: PINGREQ/PINGRESP on every connection before the window opens */
    P_MEASURE,  /* publishing, counted */
    P_DRAIN,    /* QoS 0: PINGREQ/PINGRESP on every connection: the server has read everything */
    P_HOLD,     /* --idle: connections held open until SIGTERM or stdin EOF */
    P_CLOSE,    /* after the window: DISCONNECT, shutdown, read (acks) until the server closes */
    P_END,
} phase;

typedef struct conn {
    int fd;
    cstate state;
    uint32_t mask;    /* current epoll interest */
    uint8_t *pub;     /* this connection's PUBLISH packet (QoS 1: packet id at pid_off) */
    uint32_t pub_len; /* bytes */
    uint32_t pid_off; /* offset of the packet id (QoS 1) */
    uint32_t mid_off; /* --seq-ids: offset of the messageId's SEQ_DIGITS digits */
    uint64_t seq;     /* --seq-ids / --count: PUBLISHes queued on this connection */
    uint8_t *batch;   /* QoS 0: the PUBLISH repeated to ~Q0_BATCH bytes */
    uint32_t batch_len;
    uint64_t q0_bytes;         /* QoS 0: bytes of the endless PUBLISH stream written or queued */
    uint64_t q0_acked;         /* QoS 0: stream position the last PINGRESP confirmed as read */
    uint64_t q0_pinged;        /* QoS 0: stream position of the last PINGREQ */
    uint64_t pings[PINGS_MAX]; /* QoS 0: stream positions of PINGREQs in flight (FIFO) */
    uint32_t ping_head, ping_n;
    bool shut;            /* P_CLOSE: DISCONNECT written and SHUT_WR done */
    outbuf out;           /* pending bytes: CONNECT, QoS 1 refills, PINGREQ */
    uint32_t outstanding; /* QoS 1: PUBLISHes without PUBACK */
    uint16_t next_pid;
    uint8_t carry[CARRY_MAX];
    uint32_t carry_len;
} conn;

static struct opts {
    const char *host;
    int port;
    int conns;
    int qos;
    int window;
    double seconds, warmup;
    int payload_size;
    const char *client_fmt, *username, *password, *topic_fmt;
    bool idle, marks;
    double connect_rate;
    double timeout;
    int keepalive;
    long q0_inflight;
    bool seq_ids; /* QoS 1: messageId = this connection's message number (end-to-end checks) */
    long count;   /* QoS 1: PUBLISHes per connection; the window ends when all are acked */
    bool v5;      /* MQTT 5: protocol level 5, empty property blocks */
} o = {.host = "127.0.0.1",
       .port = 1883,
       .conns = 1,
       .window = 20,
       .seconds = 5.0,
       .warmup = 1.0,
       .payload_size = 100,
       .client_fmt = "bench-%05d",
       .username = "bench",
       .password = "s",
       .topic_fmt = "/bench/%s/properties/report",
       .connect_rate = 5000.0,
       .timeout = 60.0,
       .q0_inflight = 256 * 1024};

static struct state {
    int ep, sigfd;
    conn *c;
    phase ph;
    double t_phase; /* when the current phase started */
    double t0;      /* measure window start */
    double t_end;   /* measure window end */
    uint64_t msgs;  /* counted in the window */
    int closing;    /* P_CLOSE: connections not yet closed by the server */
    int started, pending, connected, dead;
    int connack_failures, conn_errors, sync_left;
    uint64_t acked_total, sent_total, base;
    uint8_t rbuf[CARRY_MAX + RBUF_SIZE];
} g;

static void *xmalloc(size_t n)
{
    void *p = malloc(n);
    if (!p)
        die("malloc");
    return p;
}

/* CONNECT: protocol MQTT level 4 (5 with --v5, no properties), clean session, username +
 * password when given. */
static size_t enc_connect(uint8_t *p, const char *cid)
{
    uint32_t rl = 10 + (o.v5 ? 1u : 0u) + 2 + (uint32_t)strlen(cid);
    uint8_t flags = 0x02;
    if (o.username && *o.username)
        flags |= 0x80, rl += 2 + (uint32_t)strlen(o.username);
    if (o.password && *o.password)
        flags |= 0x40, rl += 2 + (uint32_t)strlen(o.password);
    size_t n = 0;
    p[n++] = 0x10;
    n += put_rl(p + n, rl);
    n += put_str(p + n, "MQTT");
    p[n++] = o.v5 ? 5 : 4;
    p[n++] = flags;
    p[n++] = (uint8_t)(o.keepalive >> 8);
    p[n++] = (uint8_t)o.keepalive;
    if (o.v5)
        p[n++] = 0; /* property length */
    n += put_str(p + n, cid);
    if (flags & 0x80)
        n += put_str(p + n, o.username);
    if (flags & 0x40)
        n += put_str(p + n, o.password);
    return n;
}

/* The property report, padded through the "name" string to exactly o.payload_size bytes. */
static const char PAY_HEAD[] =
    "{\"messageId\":\"123\",\"properties\":{\"temperature\":21.5,\"humidity\":40.2,"
    "\"level\":3,\"name\":\"";
static const char PAY_TAIL[] = "\"}}";
#define PAY_MIN ((int)(sizeof PAY_HEAD - 1 + sizeof PAY_TAIL - 1))
/* --seq-ids: the messageId is the message's number on its connection, SEQ_DIGITS digits with
 * leading zeros (1, 2, ...), so a subscriber downstream can find gaps and duplicates. */
#define SEQ_DIGITS 10
static const char PAY_HEAD_SEQ[] =
    "{\"messageId\":\"0000000000\",\"properties\":{\"temperature\":21.5,\"humidity\":40.2,"
    "\"level\":3,\"name\":\"";
#define PAY_MIN_SEQ ((int)(sizeof PAY_HEAD_SEQ - 1 + sizeof PAY_TAIL - 1))

static void build_publish(conn *c, int idx, const char *cid)
{
    char topic[512];
    if (fmt_one(o.topic_fmt, 0, cid, topic, sizeof topic) < 0) {
        fprintf(stderr, "mqtt_load: bad --topic-fmt (one %%s expected)\n");
        exit(2);
    }
    size_t tl = strlen(topic), pl = (size_t)o.payload_size;
    uint32_t rl = (uint32_t)(2 + tl + (o.qos ? 2 : 0) + (o.v5 ? 1 : 0) + pl);
    c->pub = xmalloc(8 + rl);
    uint8_t *p = c->pub;
    size_t n = 0;
    p[n++] = (uint8_t)(0x30 | (o.qos << 1));
    n += put_rl(p + n, rl);
    n += put_str(p + n, topic);
    c->pid_off = (uint32_t)n;
    if (o.qos)
        p[n++] = 0, p[n++] = 0;
    if (o.v5)
        p[n++] = 0; /* property length */
    const char *head = o.seq_ids ? PAY_HEAD_SEQ : PAY_HEAD;
    size_t hl = o.seq_ids ? sizeof PAY_HEAD_SEQ - 1 : sizeof PAY_HEAD - 1;
    size_t pad = pl - (size_t)(o.seq_ids ? PAY_MIN_SEQ : PAY_MIN);
    c->mid_off = (uint32_t)(n + strlen("{\"messageId\":\""));
    memcpy(p + n, head, hl);
    n += hl;
    memset(p + n, 'x', pad);
    n += pad;
    memcpy(p + n, PAY_TAIL, sizeof PAY_TAIL - 1);
    n += sizeof PAY_TAIL - 1;
    c->pub_len = (uint32_t)n;
    c->next_pid = (uint16_t)(1 + idx % 1000);
    if (o.qos == 0) {
        uint32_t k = Q0_BATCH / c->pub_len;
        if (k < 2)
            k = 2;
        c->batch_len = k * c->pub_len;
        c->batch = xmalloc(c->batch_len);
        for (uint32_t i = 0; i < k; i++)
            memcpy(c->batch + (size_t)i * c->pub_len, p, n);
    }
}

static bool streaming(void)
{
    return g.ph == P_WARMUP || g.ph == P_MEASURE;
}

/* QoS 0 stream may be written: streaming, and (with --q0-inflight) under the in-flight bound. */
static bool q0_open(const conn *c)
{
    if (o.qos != 0 || c->state != C_READY || !streaming())
        return false;
    return !o.q0_inflight ||
           (c->ping_n < PINGS_MAX && c->q0_bytes - c->q0_acked < (uint64_t)o.q0_inflight);
}

static void set_mask(conn *c)
{
    if (c->state == C_DEAD)
        return;
    uint32_t m = EPOLLIN;
    if (c->state == C_CONNECTING || c->out.off < c->out.len || q0_open(c))
        m |= EPOLLOUT;
    if (m == c->mask)
        return;
    epoll_set(g.ep, EPOLL_CTL_MOD, c->fd, m, c);
    c->mask = m;
}

/* Closes a connection for good; conn_fail also counts it as an error. */
static void conn_close(conn *c, const char *why)
{
    if (c->state == C_DEAD)
        return;
    if (c->state == C_CONNECTING || c->state == C_WAIT_CONNACK)
        g.pending--;
    if (c->state == C_READY || c->state == C_SYNC)
        g.connected--;
    if (c->state == C_SYNC)
        g.sync_left--;
    if (g.ph == P_CLOSE)
        g.closing--;
    if (g.conn_errors + g.connack_failures < 10)
        fprintf(stderr, "mqtt_load: connection %ld: %s\n", (long)(c - g.c), why);
    close(c->fd);
    c->fd = -1;
    c->state = C_DEAD;
    g.dead++;
}

static void conn_fail(conn *c, const char *why)
{
    if (c->state == C_DEAD)
        return;
    g.conn_errors++;
    conn_close(c, why);
}

/* QoS 1: top the window up with back-to-back PUBLISHes, queued for one write. */
static void refill(conn *c)
{
    if (o.qos != 1 || c->state != C_READY || !streaming())
        return;
    uint32_t k = (uint32_t)o.window - c->outstanding;
    if (o.count && (uint64_t)o.count - c->seq < k)
        k = (uint32_t)((uint64_t)o.count - c->seq);
    if (!k)
        return;
    ob_reserve(&c->out, k * c->pub_len);
    uint8_t *p = c->out.buf + c->out.len;
    for (uint32_t i = 0; i < k; i++, p += c->pub_len) {
        memcpy(p, c->pub, c->pub_len);
        p[c->pid_off] = (uint8_t)(c->next_pid >> 8);
        p[c->pid_off + 1] = (uint8_t)c->next_pid;
        c->seq++;
        if (o.seq_ids)
            for (uint64_t v = c->seq, d = SEQ_DIGITS; d-- > 0; v /= 10)
                p[c->mid_off + d] = (uint8_t)('0' + v % 10);
        if (++c->next_pid == 0)
            c->next_pid = 1;
    }
    c->out.len += k * c->pub_len;
    c->outstanding += k;
    g.sent_total += k;
}

static void queue_ping(conn *c)
{
    ob_reserve(&c->out, 2);
    c->out.buf[c->out.len++] = 0xC0;
    c->out.buf[c->out.len++] = 0x00;
}

/* Writes pending bytes; returns false on EAGAIN or error (then the connection may be dead). */
static bool flush_out(conn *c)
{
    int r = ob_send(c->fd, &c->out);
    if (r < 0)
        conn_fail(c, strerror(errno));
    return r > 0;
}

/* Writes pending bytes, then (QoS 0, streaming) the endless PUBLISH stream until EAGAIN or the
 * in-flight bound; with the bound, a PINGREQ follows every batch at a packet boundary. */
static void flush(conn *c)
{
    for (int i = 0; i < 8; i++) {
        if (!flush_out(c))
            break;
        if (g.ph == P_CLOSE && !c->shut) {
            shutdown(c->fd, SHUT_WR);
            c->shut = true;
        }
        if (!q0_open(c))
            break;
        uint32_t off = (uint32_t)(c->q0_bytes % c->pub_len);
        if (o.q0_inflight && off == 0 && c->q0_bytes - c->q0_pinged >= c->batch_len) {
            queue_ping(c);
            c->pings[(c->ping_head + c->ping_n++) % PINGS_MAX] = c->q0_bytes;
            c->q0_pinged = c->q0_bytes;
            continue;
        }
        ssize_t n = send(c->fd, c->batch + off, c->batch_len - off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno != EAGAIN && errno != EINTR)
                conn_fail(c, strerror(errno));
            break;
        }
        c->q0_bytes += (uint64_t)n;
        if ((uint32_t)n < c->batch_len - off)
            break;
    }
    set_mask(c);
}

static void on_connack(conn *c, const uint8_t *b, uint32_t rl)
{
    if (c->state != C_WAIT_CONNACK || (o.v5 ? rl < 3 : rl != 2)) {
        conn_fail(c, "unexpected CONNACK");
        return;
    }
    if (b[1] != 0) {
        char why[64];
        snprintf(why, sizeof why, "CONNACK refused, return code %u", b[1]);
        g.connack_failures++;
        conn_close(c, why);
        return;
    }
    c->state = C_READY;
    g.pending--;
    g.connected++;
}

static void on_packet(conn *c, uint8_t h, const uint8_t *b, uint32_t rl)
{
    switch (h >> 4) {
    case 2:
        on_connack(c, b, rl);
        break;
    case 4: /* PUBACK: in order, so the id is not checked */
        if (c->outstanding)
            c->outstanding--;
        g.acked_total++;
        break;
    case 13: /* PINGRESP: flow-control pings first (in order), then the barrier's */
        if (c->ping_n) {
            c->q0_acked = c->pings[c->ping_head];
            c->ping_head = (c->ping_head + 1) % PINGS_MAX;
            c->ping_n--;
        } else if (c->state == C_SYNC) {
            c->q0_acked = c->q0_pinged = c->q0_bytes;
            c->state = C_READY;
            g.sync_left--;
        }
        break;
    default:
        break; /* nothing else is expected; ignored */
    }
}

static void on_readable(conn *c)
{
    uint8_t *start = g.rbuf + CARRY_MAX - c->carry_len;
    memcpy(start, c->carry, c->carry_len);
    ssize_t n = recv(c->fd, g.rbuf + CARRY_MAX, RBUF_SIZE, 0);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (g.ph == P_CLOSE) { /* expected: the server closes after DISCONNECT */
            close(c->fd);
            c->fd = -1;
            c->state = C_DEAD;
            g.closing--;
            return;
        }
        conn_fail(c, n == 0 ? "closed by server" : strerror(errno));
        return;
    }
    const uint8_t *p = start, *end = g.rbuf + CARRY_MAX + n;
    while (end - p >= 2 && c->state != C_DEAD) {
        uint32_t rl = 0, mul = 1, i = 1;
        for (;; i++) {
            if (p + i >= end)
                goto partial;
            if (i > 4) {
                conn_fail(c, "bad remaining length from server");
                return;
            }
            rl += (p[i] & 127u) * mul;
            mul *= 128;
            if (!(p[i] & 128))
                break;
        }
        if ((size_t)(end - p) < 1 + i + rl) {
            if (1 + i + rl > CARRY_MAX) {
                conn_fail(c, "oversized packet from server");
                return;
            }
            break;
        }
        on_packet(c, p[0], p + 1 + i, rl);
        p += 1 + i + rl;
    }
partial:
    if (c->state == C_DEAD)
        return;
    c->carry_len = (uint32_t)(end - p);
    memcpy(c->carry, p, c->carry_len);
    refill(c);
    flush(c);
}

static void on_writable(conn *c)
{
    if (c->state == C_CONNECTING) {
        int err = sock_error(c->fd);
        if (err) {
            conn_fail(c, strerror(err));
            return;
        }
        char cid[256];
        fmt_one(o.client_fmt, c - g.c, NULL, cid, sizeof cid);
        ob_reserve(&c->out, (uint32_t)(32 + strlen(cid) + strlen(o.username) + strlen(o.password)));
        c->out.len += (uint32_t)enc_connect(c->out.buf + c->out.len, cid);
        c->state = C_WAIT_CONNACK;
    }
    flush(c);
}

static void start_conn(int idx, const struct sockaddr_in *sa)
{
    conn *c = &g.c[idx];
    g.started++;
    g.pending++;
    c->state = C_CONNECTING;
    int err = tcp_connect_nb(sa, &c->fd);
    if (err) {
        conn_fail(c, strerror(err));
        return;
    }
    c->mask = EPOLLIN | EPOLLOUT;
    epoll_set(g.ep, EPOLL_CTL_ADD, c->fd, c->mask, c);
}

/* QoS 0 barrier: finish the partial PUBLISH, then PINGREQ; done when every PINGRESP is back. */
static void start_barrier(phase ph)
{
    g.ph = ph;
    g.t_phase = now_s();
    g.sync_left = 0;
    for (int i = 0; i < o.conns; i++) {
        conn *c = &g.c[i];
        if (c->state != C_READY)
            continue;
        uint32_t off = (uint32_t)(c->q0_bytes % c->pub_len);
        uint32_t rest = off ? c->pub_len - off : 0;
        ob_reserve(&c->out, rest + 2);
        memcpy(c->out.buf + c->out.len, c->pub + off, rest);
        c->out.len += rest;
        c->q0_bytes += rest;
        queue_ping(c);
        c->state = C_SYNC;
        g.sync_left++;
        flush(c);
    }
}

static uint64_t q0_msgs(void)
{
    uint64_t m = 0;
    for (int i = 0; i < o.conns; i++)
        if (g.c[i].pub_len)
            m += g.c[i].q0_bytes / g.c[i].pub_len;
    return m;
}

static uint64_t counted(void)
{
    return o.qos ? g.acked_total : q0_msgs();
}

static void begin_streaming(phase ph)
{
    g.ph = ph;
    g.t_phase = now_s();
    if (ph == P_MEASURE) {
        g.t0 = g.t_phase;
        g.base = counted();
        mark_if(o.marks, "measure_start");
    }
    for (int i = 0; i < o.conns; i++) {
        if (g.c[i].state != C_READY)
            continue;
        refill(&g.c[i]);
        flush(&g.c[i]);
    }
}

static void report(void)
{
    g.ph = P_END;
    if (o.qos == 0)
        g.sent_total = q0_msgs();
    double secs = g.t_end - g.t0;
    printf("bench=mqtt_load conns=%d qos=%d window=%d msgs=%llu seconds=%.3f msg_per_s=%.0f "
           "connack_failures=%d conn_errors=%d sent_total=%llu acked_total=%llu\n",
           o.conns, o.qos, o.qos ? o.window : 0, (unsigned long long)g.msgs, secs,
           secs > 0 ? (double)g.msgs / secs : 0.0, g.connack_failures, g.conn_errors,
           (unsigned long long)g.sent_total, (unsigned long long)g.acked_total);
    fflush(stdout);
}

/* End of the window: figures fixed, then a clean close so that the server has every PUBLISH
 * written (sent_total) and late PUBACKs still count in acked_total; report() prints after it. */
static void finish(void)
{
    g.t_end = now_s();
    g.msgs = counted() - g.base;
    mark_if(o.marks, "measure_end");
    g.ph = P_CLOSE;
    g.t_phase = g.t_end;
    g.closing = 0;
    for (int i = 0; i < o.conns; i++) {
        conn *c = &g.c[i];
        if (c->state != C_READY && c->state != C_SYNC)
            continue;
        ob_reserve(&c->out, 2);
        c->out.buf[c->out.len++] = 0xE0; /* DISCONNECT */
        c->out.buf[c->out.len++] = 0x00;
        g.closing++;
        flush(c);
    }
}

/* --count: every live connection has queued its count and has nothing outstanding. */
static bool all_counted(void)
{
    for (int i = 0; i < o.conns; i++) {
        const conn *c = &g.c[i];
        if (c->state == C_READY && (c->seq < (uint64_t)o.count || c->outstanding))
            return false;
    }
    return true;
}

/* Phase changes driven by time and by barrier completion. Returns the epoll timeout in ms. */
static int advance(void)
{
    double t = now_s(), left;
    switch (g.ph) {
    case P_CONNECT:
        if (t - g.t_phase > o.timeout) {
            fprintf(stderr, "mqtt_load: %d connections not established after %.0f s\n",
                    g.pending + (o.conns - g.started), o.timeout);
            for (int i = 0; i < o.conns; i++)
                if (g.c[i].state == C_CONNECTING || g.c[i].state == C_WAIT_CONNACK)
                    conn_fail(&g.c[i], "connect timeout");
            g.conn_errors += o.conns - g.started;
            g.started = o.conns;
        }
        if (g.started == o.conns && g.pending == 0) {
            if (o.idle) {
                printf("connected %d\n", g.connected);
                fflush(stdout);
                g.ph = P_HOLD;
                return -1;
            }
            if (g.connected == 0) {
                g.t0 = now_s(); /* empty window */
                finish();
                return 0;
            }
            if (o.qos == 0 && o.warmup <= 0)
                start_barrier(P_BARRIER0); /* nothing sent yet: only opens the window */
            else
                begin_streaming(o.warmup > 0 ? P_WARMUP : P_MEASURE);
            return 0;
        }
        return g.started < o.conns ? 1 : 100;
    case P_WARMUP:
    case P_MEASURE:
        if (o.count && g.ph == P_MEASURE && all_counted()) {
            finish();
            return 0;
        }
        left = g.t_phase + (g.ph == P_WARMUP ? o.warmup : o.seconds) - t;
        if (left > 0)
            return (int)(left * 1000) + 1;
        if (o.qos == 0)
            start_barrier(g.ph == P_WARMUP ? P_BARRIER0 : P_DRAIN);
        else if (g.ph == P_WARMUP)
            begin_streaming(P_MEASURE);
        else
            finish();
        return 0;
    case P_BARRIER0:
    case P_DRAIN:
        if (g.sync_left == 0) {
            if (g.ph == P_BARRIER0) {
                for (int i = 0; i < o.conns; i++)
                    set_mask(&g.c[i]);
                begin_streaming(P_MEASURE);
            } else {
                finish();
            }
            return 0;
        }
        if (t - g.t_phase > o.timeout) {
            fprintf(stderr, "mqtt_load: %d PINGRESPs missing after %.0f s\n", g.sync_left,
                    o.timeout);
            g.conn_errors += g.sync_left;
            finish();
            return 0;
        }
        return 100;
    case P_CLOSE:
        if (g.closing > 0 && t - g.t_phase < 10)
            return 100;
        if (g.closing > 0)
            fprintf(stderr, "mqtt_load: %d connections still open 10 s after DISCONNECT\n",
                    g.closing);
        report();
        return 0;
    default:
        return -1;
    }
}

/* Paced connection opening: at most --connect-rate per second and PENDING_MAX in flight. */
static void open_more(const struct sockaddr_in *sa)
{
    double allowed = (now_s() - g.t_phase) * o.connect_rate + 1;
    while (g.started < o.conns && g.started < allowed && g.pending < PENDING_MAX)
        start_conn(g.started, sa);
}

static void usage(void)
{
    fprintf(stderr, "usage: mqtt_load [--host H] [--port P] [--conns N] [--qos 0|1] [--window W]\n"
                    "  [--seconds S] [--warmup S] [--payload-size B] [--client-fmt 'bench-%%05d']\n"
                    "  [--username U] [--password P] [--topic-fmt '/bench/%%s/properties/report']\n"
                    "  [--idle] [--connect-rate R] [--timeout S] [--keepalive S] [--marks]\n"
                    "  [--q0-inflight BYTES (0: unbounded)] [--seq-ids] [--count N] [--v5]\n");
    exit(2);
}

/* Options: --name value or --name=value (loadgen.h's parse_opts). */
static const optdef OPTS[] = {{"host", 's', &o.host},
                              {"port", 'i', &o.port},
                              {"conns", 'i', &o.conns},
                              {"qos", 'i', &o.qos},
                              {"window", 'i', &o.window},
                              {"seconds", 'd', &o.seconds},
                              {"warmup", 'd', &o.warmup},
                              {"payload-size", 'i', &o.payload_size},
                              {"client-fmt", 's', &o.client_fmt},
                              {"username", 's', &o.username},
                              {"password", 's', &o.password},
                              {"topic-fmt", 's', &o.topic_fmt},
                              {"idle", 'b', &o.idle},
                              {"connect-rate", 'd', &o.connect_rate},
                              {"timeout", 'd', &o.timeout},
                              {"keepalive", 'i', &o.keepalive},
                              {"marks", 'b', &o.marks},
                              {"q0-inflight", 'l', &o.q0_inflight},
                              {"seq-ids", 'b', &o.seq_ids},
                              {"count", 'l', &o.count},
                              {"v5", 'b', &o.v5}};

static void parse_args(int argc, char **argv)
{
    parse_opts(argc, argv, OPTS, sizeof OPTS / sizeof OPTS[0], usage);
    if (o.conns < 1 || (o.qos != 0 && o.qos != 1) || o.window < 1 || o.window > 65535 ||
        o.port < 1 || o.port > 65535 || o.connect_rate <= 0 || o.keepalive < 0 ||
        o.q0_inflight < 0 || o.keepalive > 65535 || strlen(o.username) > 1024 ||
        strlen(o.password) > 1024 || o.count < 0 || ((o.seq_ids || o.count) && o.qos != 1))
        usage();
    int pay_min = o.seq_ids ? PAY_MIN_SEQ : PAY_MIN;
    if (o.payload_size < pay_min || o.payload_size > 1 << 20) {
        fprintf(stderr, "mqtt_load: --payload-size must be %d..%d\n", pay_min, 1 << 20);
        exit(2);
    }
    char cid[256];
    if (fmt_one(o.client_fmt, 0, NULL, cid, sizeof cid) < 0) {
        fprintf(stderr, "mqtt_load: bad --client-fmt (one %%d expected)\n");
        exit(2);
    }
}

static void setup(struct sockaddr_in *sa)
{
    raise_nofile();
    ipv4_addr(sa, o.host, o.port);
    g.c = calloc((size_t)o.conns, sizeof *g.c);
    if (!g.c)
        die("calloc");
    for (int i = 0; i < o.conns; i++) {
        g.c[i].fd = -1;
        g.c[i].state = C_DEAD; /* not opened yet */
        if (!o.idle) {
            char cid[256];
            fmt_one(o.client_fmt, i, NULL, cid, sizeof cid);
            build_publish(&g.c[i], i, cid);
        }
    }
    g.ep = epoll_with_signals(&g.sigfd);
    if (o.idle) { /* stdin EOF ends the hold; fails harmlessly for /dev/null or files */
        struct epoll_event sev = {.events = EPOLLIN, .data.ptr = &g.ep};
        epoll_ctl(g.ep, EPOLL_CTL_ADD, 0, &sev);
    }
}

int main(int argc, char **argv)
{
    struct sockaddr_in sa;
    static struct epoll_event evs[MAX_EVENTS];
    parse_args(argc, argv);
    setup(&sa);
    g.ph = P_CONNECT;
    g.t_phase = now_s();
    bool stop = false;
    while (g.ph != P_END && !stop) {
        if (g.ph == P_CONNECT)
            open_more(&sa);
        int timeout = advance();
        if (g.ph == P_END)
            break;
        int n = wait_events(g.ep, evs, MAX_EVENTS, timeout);
        for (int i = 0; i < n; i++) {
            void *ptr = evs[i].data.ptr;
            if (ptr == &g.sigfd) {
                drain_signals(g.sigfd);
                stop = true;
                continue;
            }
            if (ptr == &g.ep) { /* stdin */
                char b[512];
                ssize_t r = read(0, b, sizeof b);
                if (r == 0 || (r < 0 && errno != EAGAIN && errno != EINTR))
                    stop = true;
                continue;
            }
            conn *c = ptr;
            if (c->state == C_DEAD)
                continue;
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                if (c->state == C_CONNECTING)
                    on_writable(c); /* reports the connect error */
                else
                    on_readable(c);
            }
            if (c->state != C_DEAD && (evs[i].events & EPOLLOUT))
                on_writable(c);
        }
    }
    if (stop && !o.idle) {
        fprintf(stderr, "mqtt_load: interrupted\n");
        g.conn_errors++;
        if (g.ph != P_CLOSE) {
            g.t_end = now_s();
            g.msgs = counted() - g.base;
        }
        report();
    }
    for (int i = 0; i < o.conns; i++)
        if (g.c[i].fd >= 0)
            close(g.c[i].fd);
    if (g.dead || g.connack_failures || g.conn_errors) {
        fprintf(stderr, "mqtt_load: %d connections failed (%d refused by CONNACK)\n", g.dead,
                g.connack_failures);
        return 1;
    }
    return 0;
}

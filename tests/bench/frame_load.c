/* frame_load.c: binary-frame load generator for the TCP/UDP ingest benchmark. One thread, epoll,
 * non-blocking sockets and built-in frame templates that match config/products.binary exactly:
 * meter-tcp (length field, CRC-16/MODBUS, login frame first) over TCP and sensor-udp (datagram,
 * device id + token in every frame, CRC-32) over UDP. It shares no code with the gateway (its own
 * CRCs and encoders), so it measures iotgw and the sink server alike. Prints one
 * `bench=frame_load ...` line. */
#define LOADGEN_PROG "frame_load"
#include "loadgen.h"

#define RBUF_SIZE   (256 * 1024) /* one read buffer for every TCP connection */
#define CARRY_MAX   256          /* partial server frame kept between reads (meter max_frame) */
#define MAX_EVENTS  1024
#define PENDING_MAX 256  /* TCP handshakes (connect + login) in flight */
#define UDP_SLOTS   4096 /* per endpoint: un-acked datagrams tracked by seq % UDP_SLOTS */
#define UDP_BATCH   64   /* datagrams per sendmmsg / recvmmsg */

/* meter-tcp: 68 | len u16 BE (bytes after it) | cmd u8 | seq u16 BE | body | crc16-modbus LE */
#define M_START     0x68
#define M_LOGIN     0x01
#define M_REPORT    0x02
#define M_ACK       0x80
#define M_LOGIN_LEN 24 /* id string[8], password string[8] */
#define M_REPORT_LEN                                                                               \
    26               /* energy u32, power u16, voltage u16, pulses u32, tariff u8, status u8,      \
                        time u32 */
#define M_ACK_LEN 10 /* request u8, result u8 */

/* sensor-udp: A5 | 01 | type u8 | device string[8] | token string[8] | seq u16 LE | body |
 * crc32 BE */
#define S_MAGIC      0xA5
#define S_VERSION    0x01
#define S_REPORT     0x01
#define S_ACK        0x81
#define S_HDR_LEN    21
#define S_REPORT_LEN 33 /* temperature i16, humidity u16, battery u8, door u8, interval u16 */
#define S_ACK_LEN    26 /* result u8 */

typedef enum cstate { C_IDLE, C_CONNECTING, C_WAIT_LOGIN, C_READY, C_DEAD } cstate;

typedef enum phase {
    P_CONNECT, /* TCP: opening connections, login, waiting for every login ack */
    P_WARMUP,  /* streaming, not counted */
    P_MEASURE, /* streaming, counted */
    P_DRAIN,   /* no new frames: waiting for the acks of those in flight (UDP: or their expiry) */
    P_CLOSE,   /* TCP: shutdown(SHUT_WR), read until the server closes */
    P_IDLE,    /* --idle: every connection logged in, nothing sent until stdin closes */
    P_END,
} phase;

typedef struct slot {
    double t;     /* when sent */
    uint16_t seq; /* wire seq */
    bool used;
} slot;

typedef struct conn {
    int fd;
    cstate state;
    uint32_t mask; /* current epoll interest */
    char dev[9];   /* device id, NUL-padded to 8 on the wire */
    uint32_t outstanding;
    uint32_t seq;     /* next seq (the wire carries the low 16 bits) */
    uint32_t ack_seq; /* TCP: seq the next report ack should carry (acks come in order) */
    uint32_t k;       /* message counter: the values vary with it */
    bool shut, want_out;
    /* TCP */
    outbuf out; /* pending bytes */
    uint8_t carry[CARRY_MAX];
    uint32_t carry_len;
    /* UDP */
    slot *slots;
    uint32_t oldest; /* seqs in [oldest, seq) may be outstanding */
} conn;

static struct opts {
    const char *host;
    int port;
    const char *proto;
    int conns;
    int window;
    double seconds, warmup;
    const char *device_fmt, *secret;
    int first_device;
    double connect_rate;
    double timeout;
    int ack_timeout_ms;
    int sockbuf;
    bool marks, selftest, idle;
} o = {.host = "127.0.0.1",
       .port = 0,
       .proto = "tcp",
       .conns = 1,
       .window = 20,
       .seconds = 5.0,
       .warmup = 1.0,
       .connect_rate = 5000.0,
       .timeout = 30.0,
       .ack_timeout_ms = 1000,
       .sockbuf = 1 << 20};

static bool udp; /* --proto udp */

static struct state {
    int ep, sigfd;
    conn *c;
    phase ph;
    double t_phase; /* when the current phase started */
    double t0;      /* measure window start */
    double t_end;   /* measure window end */
    double t_scan;  /* last UDP expiry scan */
    uint64_t msgs;  /* report acks (accepted) counted in the window */
    int started, pending, connected, dead, closing;
    int login_failures, conn_errors, bad_acks;
    uint64_t seq_errors; /* TCP: report acks whose seq is not the next one expected */
    uint64_t sent_total, acked_total, rejected_total, lost_total, late_acks, base;
    uint8_t rbuf[CARRY_MAX + RBUF_SIZE];
} g;

/* ---- small helpers ---- */

static void put16be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

static void put32be(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}

static void put16le(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)v;
    p[1] = (uint8_t)(v >> 8);
}

/* A string[8] field: the text, NUL-padded. */
static void put_str8(uint8_t *p, const char *s)
{
    size_t l = strlen(s);
    memset(p, 0, 8);
    memcpy(p, s, l > 8 ? 8 : l);
}

/* ---- frame templates ---- */

static size_t meter_login(uint8_t *p, uint16_t seq, const char *dev, const char *secret)
{
    p[0] = M_START;
    put16be(p + 1, M_LOGIN_LEN - 3);
    p[3] = M_LOGIN;
    put16be(p + 4, seq);
    put_str8(p + 6, dev);
    put_str8(p + 14, secret);
    uint16_t c = crc16_modbus(p, M_LOGIN_LEN - 2);
    put16le(p + M_LOGIN_LEN - 2, c);
    return M_LOGIN_LEN;
}

typedef struct meter_vals {
    uint32_t energy; /* 0.01 kWh */
    uint16_t power;  /* W (<= 100000) */
    uint16_t volt;   /* 0.1 V (<= 4000) */
    uint32_t pulses;
    uint8_t tariff; /* 0 day, 1 night */
    uint8_t status; /* bit 0 relay, bits 1-2 quality */
    uint32_t time;  /* epoch s */
} meter_vals;

static size_t meter_report(uint8_t *p, uint16_t seq, const meter_vals *v)
{
    p[0] = M_START;
    put16be(p + 1, M_REPORT_LEN - 3);
    p[3] = M_REPORT;
    put16be(p + 4, seq);
    put32be(p + 6, v->energy);
    put16be(p + 10, v->power);
    put16be(p + 12, v->volt);
    put32be(p + 14, v->pulses);
    p[18] = v->tariff;
    p[19] = v->status;
    put32be(p + 20, v->time);
    put16le(p + 24, crc16_modbus(p, M_REPORT_LEN - 2));
    return M_REPORT_LEN;
}

/* Values within the meter-tcp thing model, varying with k (and with the connection). */
static void meter_vary(meter_vals *v, uint32_t k, uint32_t idx, uint32_t t)
{
    v->energy = 100000u + idx * 1000u + k;           /* monotonic: 1000.00 kWh and up */
    v->power = (uint16_t)((k * 37u + idx) % 65536u); /* 0..65535 W */
    v->volt = (uint16_t)(2000u + (k + idx) % 500u);  /* 200.0..249.9 V */
    v->pulses = k * 3u + idx;
    v->tariff = (uint8_t)(k & 1u);
    v->status = (uint8_t)(((k >> 1) & 1u) | (((k >> 2) & 3u) << 1));
    v->time = t;
}

typedef struct sensor_vals {
    int16_t temp;   /* 0.01 °C, -4000..12500 */
    uint16_t hum;   /* 0.01 %, 0..10000 */
    uint8_t batt;   /* 0..100 */
    uint8_t door;   /* bit 0 */
    uint16_t ivl_s; /* 1..3600 */
} sensor_vals;

static size_t sensor_report(uint8_t *p, uint16_t seq, const char *dev, const char *token,
                            const sensor_vals *v)
{
    p[0] = S_MAGIC;
    p[1] = S_VERSION;
    p[2] = S_REPORT;
    put_str8(p + 3, dev);
    put_str8(p + 11, token);
    put16le(p + 19, seq);
    put16le(p + 21, (uint16_t)v->temp);
    put16le(p + 23, v->hum);
    p[25] = v->batt;
    p[26] = v->door;
    put16le(p + 27, v->ivl_s);
    put32be(p + 29, crc32_iso(p, S_REPORT_LEN - 4));
    return S_REPORT_LEN;
}

static void sensor_vary(sensor_vals *v, uint32_t k, uint32_t idx)
{
    v->temp = (int16_t)(-2000 + (int32_t)((k * 7u + idx) % 10000u)); /* -20.00..79.99 °C */
    v->hum = (uint16_t)((k * 13u + idx) % 10001u);                   /* 0..100.00 % */
    v->batt = (uint8_t)((k + idx) % 101u);
    v->door = (uint8_t)(k & 1u);
    v->ivl_s = (uint16_t)(1u + (k + idx) % 3600u);
}

/* The frames of docs/BINARY-CODEC.md, byte for byte: proves the templates and both CRCs. */
static int selftest(void)
{
    static const uint8_t login[] = {0x68, 0x00, 0x15, 0x01, 0x00, 0x01, 0x6D, 0x74,
                                    0x72, 0x30, 0x30, 0x30, 0x30, 0x31, 0x70, 0x61,
                                    0x35, 0x35, 0x77, 0x6F, 0x72, 0x64, 0x6B, 0xBE};
    static const uint8_t report[] = {0x68, 0x00, 0x17, 0x02, 0x00, 0x02, 0x00, 0x01, 0xE2,
                                     0x40, 0x05, 0xDC, 0x08, 0xFD, 0x00, 0x0F, 0x12, 0x06,
                                     0x01, 0x05, 0x65, 0x53, 0xF1, 0x00, 0xA1, 0xC8};
    static const uint8_t m_ack[] = {0x68, 0x00, 0x07, 0x80, 0x00, 0x02, 0x02, 0x00, 0xE7, 0x4C};
    static const uint8_t sreport[] = {0xA5, 0x01, 0x01, 0x73, 0x6E, 0x72, 0x30, 0x30, 0x30,
                                      0x30, 0x31, 0x74, 0x6F, 0x6B, 0x31, 0x32, 0x33, 0x34,
                                      0x35, 0x01, 0x00, 0x66, 0x08, 0xA8, 0x11, 0x57, 0x01,
                                      0x3C, 0x00, 0x35, 0x3D, 0xC3, 0xF7};
    static const uint8_t s_ack[] = {0xA5, 0x01, 0x81, 0x73, 0x6E, 0x72, 0x30, 0x30, 0x30,
                                    0x30, 0x31, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,
                                    0x00, 0x01, 0x00, 0x00, 0x3F, 0x36, 0x93, 0xDF};
    static const uint8_t check[] = "123456789";
    uint8_t b[64];
    int bad = 0;
    if (crc16_modbus(check, 9) != 0x4B37 || crc32_iso(check, 9) != 0xCBF43926u)
        fprintf(stderr, "selftest: check values of \"123456789\" wrong\n"), bad++;
    if (meter_login(b, 1, "mtr00001", "pa55word") != sizeof login || memcmp(b, login, sizeof login))
        fprintf(stderr, "selftest: meter login differs\n"), bad++;
    meter_vals mv = {123456, 1500, 2301, 987654, 1, 0x05, 1700000000u};
    if (meter_report(b, 2, &mv) != sizeof report || memcmp(b, report, sizeof report))
        fprintf(stderr, "selftest: meter report differs\n"), bad++;
    if (crc16_modbus(m_ack, 8) != (uint16_t)(m_ack[8] | m_ack[9] << 8))
        fprintf(stderr, "selftest: meter ack check differs\n"), bad++;
    sensor_vals sv = {2150, 4520, 87, 1, 60};
    if (sensor_report(b, 1, "snr00001", "tok12345", &sv) != sizeof sreport ||
        memcmp(b, sreport, sizeof sreport))
        fprintf(stderr, "selftest: sensor report differs\n"), bad++;
    uint32_t c = crc32_iso(s_ack, S_ACK_LEN - 4);
    if (c != ((uint32_t)s_ack[22] << 24 | (uint32_t)s_ack[23] << 16 | s_ack[24] << 8 | s_ack[25]))
        fprintf(stderr, "selftest: sensor ack check differs\n"), bad++;
    printf("selftest %s\n", bad ? "failed" : "ok");
    return bad ? 1 : 0;
}

/* ---- connections ---- */

static bool streaming(void)
{
    return g.ph == P_WARMUP || g.ph == P_MEASURE;
}

static void set_mask(conn *c)
{
    if (c->state == C_DEAD || c->state == C_IDLE)
        return;
    uint32_t m = EPOLLIN;
    if (c->state == C_CONNECTING || c->out.off < c->out.len || c->want_out)
        m |= EPOLLOUT;
    if (m == c->mask)
        return;
    epoll_set(g.ep, EPOLL_CTL_MOD, c->fd, m, c);
    c->mask = m;
}

static void conn_close(conn *c, const char *why)
{
    if (c->state == C_DEAD)
        return;
    if (c->state == C_CONNECTING || c->state == C_WAIT_LOGIN)
        g.pending--;
    if (c->state == C_READY)
        g.connected--;
    if (g.ph == P_CLOSE && c->state == C_READY)
        g.closing--;
    if (why && g.conn_errors + g.login_failures < 10)
        fprintf(stderr, "frame_load: connection %ld: %s\n", (long)(c - g.c), why);
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    c->state = C_DEAD;
    if (why)
        g.dead++;
}

static void conn_fail(conn *c, const char *why)
{
    if (c->state == C_DEAD)
        return;
    g.conn_errors++;
    conn_close(c, why);
}

/* TCP: top the window up with back-to-back report frames, queued for one write. */
static void tcp_refill(conn *c)
{
    if (c->state != C_READY || !streaming())
        return;
    uint32_t k = (uint32_t)o.window - c->outstanding;
    if (!k)
        return;
    ob_reserve(&c->out, k * M_REPORT_LEN);
    uint8_t *p = c->out.buf + c->out.len;
    uint32_t t = (uint32_t)time(NULL), idx = (uint32_t)(c - g.c);
    for (uint32_t i = 0; i < k; i++, p += M_REPORT_LEN) {
        meter_vals v;
        meter_vary(&v, c->k++, idx, t);
        meter_report(p, (uint16_t)c->seq++, &v);
    }
    c->out.len += k * M_REPORT_LEN;
    c->outstanding += k;
    g.sent_total += k;
}

/* Writes pending bytes; returns false on EAGAIN or error (then the connection may be dead). */
static bool flush_out(conn *c)
{
    int r = ob_send(c->fd, &c->out);
    if (r < 0)
        conn_fail(c, strerror(errno));
    return r > 0;
}

static void tcp_flush(conn *c)
{
    if (flush_out(c) && g.ph == P_CLOSE && !c->shut && c->state == C_READY) {
        shutdown(c->fd, SHUT_WR);
        c->shut = true;
    }
    set_mask(c);
}

static void on_meter_frame(conn *c, const uint8_t *p, uint32_t len)
{
    if (crc16_modbus(p, len - 2) != (uint16_t)(p[len - 2] | p[len - 1] << 8)) {
        g.bad_acks++;
        conn_fail(c, "server frame with a bad CRC");
        return;
    }
    if (p[3] != M_ACK)
        return; /* a command: not expected, ignored */
    if (len != M_ACK_LEN) {
        g.bad_acks++;
        conn_fail(c, "ack of the wrong length");
        return;
    }
    uint8_t req = p[6], result = p[7];
    if (req == M_LOGIN && c->state == C_WAIT_LOGIN) {
        if (result != 0) {
            g.login_failures++;
            conn_close(c, "login refused (ack result 1)");
            return;
        }
        c->state = C_READY;
        c->ack_seq = c->seq;
        g.pending--;
        g.connected++;
        return;
    }
    if (req != M_REPORT || c->state != C_READY || !c->outstanding) {
        g.bad_acks++;
        conn_fail(c, "unexpected ack");
        return;
    }
    c->outstanding--;
    if ((uint16_t)(p[4] << 8 | p[5]) != (uint16_t)c->ack_seq)
        g.seq_errors++;
    c->ack_seq++;
    if (result == 0)
        g.acked_total++;
    else
        g.rejected_total++;
}

static void tcp_readable(conn *c)
{
    uint8_t *start = g.rbuf + CARRY_MAX - c->carry_len;
    memcpy(start, c->carry, c->carry_len);
    ssize_t n = recv(c->fd, g.rbuf + CARRY_MAX, RBUF_SIZE, 0);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EINTR))
            return;
        if (g.ph == P_CLOSE && c->shut) /* expected: the server closes after our FIN */
            conn_close(c, NULL);
        else
            conn_fail(c, n == 0 ? "closed by server" : strerror(errno));
        return;
    }
    const uint8_t *p = start, *end = g.rbuf + CARRY_MAX + n;
    while (end - p >= 3 && c->state != C_DEAD) {
        if (p[0] != M_START) {
            g.bad_acks++;
            conn_fail(c, "server frame without the 0x68 start byte");
            return;
        }
        uint32_t len = 3u + (uint32_t)(p[1] << 8 | p[2]);
        if (len < 8 || len > CARRY_MAX) {
            g.bad_acks++;
            conn_fail(c, "server frame length out of range");
            return;
        }
        if ((size_t)(end - p) < len)
            break;
        on_meter_frame(c, p, len);
        p += len;
    }
    if (c->state == C_DEAD)
        return;
    c->carry_len = (uint32_t)(end - p);
    memcpy(c->carry, p, c->carry_len);
    tcp_refill(c);
    tcp_flush(c);
}

static void tcp_writable(conn *c)
{
    if (c->state == C_CONNECTING) {
        int err = sock_error(c->fd);
        if (err) {
            conn_fail(c, strerror(err));
            return;
        }
        ob_reserve(&c->out, M_LOGIN_LEN);
        c->out.len +=
            (uint32_t)meter_login(c->out.buf + c->out.len, (uint16_t)c->seq++, c->dev, o.secret);
        c->state = C_WAIT_LOGIN;
    }
    tcp_flush(c);
}

static void tcp_start(int idx, const struct sockaddr_in *sa)
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

/* ---- UDP endpoints ---- */

/* Forgets outstanding datagrams sent more than --ack-timeout-ms ago (counted as lost), and any
 * whose slot the next `reserve` datagrams would take over. */
static void udp_expire(conn *c, double t, uint32_t reserve)
{
    double limit = t - o.ack_timeout_ms / 1000.0;
    while (c->oldest != c->seq) {
        slot *s = &c->slots[c->oldest % UDP_SLOTS];
        if (s->used) {
            if (s->t > limit && c->seq + reserve - c->oldest < UDP_SLOTS)
                break;
            s->used = false;
            c->outstanding--;
            g.lost_total++;
        }
        c->oldest++;
    }
}

/* UDP: top the window up, one sendmmsg per UDP_BATCH datagrams. */
static void udp_refill(conn *c)
{
    if (c->state != C_READY || !streaming())
        return;
    static uint8_t dg[UDP_BATCH][S_REPORT_LEN];
    static struct iovec iov[UDP_BATCH];
    static struct mmsghdr mm[UDP_BATCH];
    uint32_t idx = (uint32_t)(c - g.c);
    c->want_out = false;
    while (c->outstanding < (uint32_t)o.window) {
        uint32_t k = (uint32_t)o.window - c->outstanding;
        if (k > UDP_BATCH)
            k = UDP_BATCH;
        double t = now_s();
        if (c->seq + k - c->oldest >= UDP_SLOTS)
            udp_expire(c, t, k);
        for (uint32_t i = 0; i < k; i++) {
            sensor_vals v;
            sensor_vary(&v, c->k + i, idx);
            sensor_report(dg[i], (uint16_t)(c->seq + i), c->dev, o.secret, &v);
            iov[i].iov_base = dg[i];
            iov[i].iov_len = S_REPORT_LEN;
            memset(&mm[i], 0, sizeof mm[i]);
            mm[i].msg_hdr.msg_iov = &iov[i];
            mm[i].msg_hdr.msg_iovlen = 1;
        }
        int n = sendmmsg(c->fd, mm, k, MSG_DONTWAIT);
        if (n < 0) {
            if (errno == EAGAIN || errno == ENOBUFS || errno == EINTR) {
                c->want_out = true;
                break;
            }
            conn_fail(c, strerror(errno));
            return;
        }
        for (int i = 0; i < n; i++) {
            slot *s = &c->slots[c->seq % UDP_SLOTS];
            s->t = t;
            s->seq = (uint16_t)c->seq;
            s->used = true;
            c->seq++;
            c->k++;
        }
        c->outstanding += (uint32_t)n;
        g.sent_total += (uint64_t)n;
        if ((uint32_t)n < k) {
            c->want_out = true;
            break;
        }
    }
    set_mask(c);
}

static void on_sensor_ack(conn *c, const uint8_t *p, size_t len)
{
    if (len < 4 ||
        crc32_iso(p, len - 4) != ((uint32_t)p[len - 4] << 24 | (uint32_t)p[len - 3] << 16 |
                                  p[len - 2] << 8 | p[len - 1])) {
        g.bad_acks++;
        return;
    }
    if (len < S_HDR_LEN || p[0] != S_MAGIC || p[1] != S_VERSION || p[2] != S_ACK)
        return; /* a command: not expected, ignored */
    uint8_t dev[8];
    put_str8(dev, c->dev);
    if (len != S_ACK_LEN || memcmp(p + 3, dev, 8) != 0) {
        g.bad_acks++;
        return;
    }
    uint16_t seq = (uint16_t)(p[19] | p[20] << 8);
    slot *s = &c->slots[seq % UDP_SLOTS];
    if (!s->used || s->seq != seq) {
        g.late_acks++; /* already counted as lost, or a duplicate */
        return;
    }
    s->used = false;
    c->outstanding--;
    if (p[21] == 0)
        g.acked_total++;
    else
        g.rejected_total++;
}

static void udp_readable(conn *c)
{
    static uint8_t buf[UDP_BATCH][256];
    static struct iovec iov[UDP_BATCH];
    static struct mmsghdr mm[UDP_BATCH];
    for (;;) {
        for (int i = 0; i < UDP_BATCH; i++) {
            iov[i].iov_base = buf[i];
            iov[i].iov_len = sizeof buf[i];
            memset(&mm[i], 0, sizeof mm[i]);
            mm[i].msg_hdr.msg_iov = &iov[i];
            mm[i].msg_hdr.msg_iovlen = 1;
        }
        int n = recvmmsg(c->fd, mm, UDP_BATCH, MSG_DONTWAIT, NULL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EINTR)
                break;
            conn_fail(c, strerror(errno)); /* ECONNREFUSED: nobody listens */
            return;
        }
        for (int i = 0; i < n; i++)
            on_sensor_ack(c, buf[i], mm[i].msg_len);
        if (n < UDP_BATCH)
            break;
    }
    udp_refill(c);
}

static void udp_start(int idx, const struct sockaddr_in *sa)
{
    conn *c = &g.c[idx];
    g.started++;
    c->fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0)
        die("socket (raise ulimit -n?)");
    setsockopt(c->fd, SOL_SOCKET, SO_RCVBUF, &o.sockbuf, sizeof o.sockbuf);
    setsockopt(c->fd, SOL_SOCKET, SO_SNDBUF, &o.sockbuf, sizeof o.sockbuf);
    if (connect(c->fd, (const struct sockaddr *)sa, sizeof *sa) < 0)
        die("connect (udp)");
    c->slots = calloc(UDP_SLOTS, sizeof *c->slots);
    if (!c->slots)
        die("calloc");
    c->state = C_READY;
    g.connected++;
    c->mask = EPOLLIN;
    epoll_set(g.ep, EPOLL_CTL_ADD, c->fd, c->mask, c);
}

/* ---- phases ---- */

static void begin_streaming(phase ph)
{
    g.ph = ph;
    g.t_phase = now_s();
    if (ph == P_MEASURE) {
        g.t0 = g.t_phase;
        g.base = g.acked_total;
        mark_if(o.marks, "measure_start");
    }
    for (int i = 0; i < o.conns; i++) {
        conn *c = &g.c[i];
        if (c->state != C_READY)
            continue;
        if (udp) {
            udp_refill(c);
        } else {
            tcp_refill(c);
            tcp_flush(c);
        }
    }
}

static uint64_t outstanding(void)
{
    uint64_t n = 0;
    for (int i = 0; i < o.conns; i++)
        if (g.c[i].state == C_READY)
            n += g.c[i].outstanding;
    return n;
}

static void report(void)
{
    g.ph = P_END;
    double secs = g.t_end - g.t0;
    printf("bench=frame_load proto=%s conns=%d window=%d msgs=%llu seconds=%.3f msg_per_s=%.0f "
           "sent_total=%llu acked_total=%llu rejected_total=%llu lost=%llu late_acks=%llu "
           "bad_acks=%d seq_errors=%llu login_failures=%d conn_errors=%d\n",
           o.proto, o.conns, o.window, (unsigned long long)g.msgs, secs,
           secs > 0 ? (double)g.msgs / secs : 0.0, (unsigned long long)g.sent_total,
           (unsigned long long)g.acked_total, (unsigned long long)g.rejected_total,
           (unsigned long long)g.lost_total, (unsigned long long)g.late_acks, g.bad_acks,
           (unsigned long long)g.seq_errors, g.login_failures, g.conn_errors);
    fflush(stdout);
}

/* End of the window: figures fixed, then the drain (acks of the frames in flight). */
static void finish(void)
{
    g.t_end = now_s();
    g.msgs = g.acked_total - g.base;
    mark_if(o.marks, "measure_end");
    g.ph = P_DRAIN;
    g.t_phase = g.t_end;
}

/* TCP: every ack is in; FIN, then read until the server closes. */
static void start_close(void)
{
    g.ph = P_CLOSE;
    g.t_phase = now_s();
    g.closing = 0;
    for (int i = 0; i < o.conns; i++) {
        conn *c = &g.c[i];
        if (c->state != C_READY)
            continue;
        g.closing++;
        tcp_flush(c);
    }
}

/* Phase changes driven by time and by the acks. Returns the epoll timeout in ms. */
static int advance(void)
{
    double t = now_s(), left;
    if (udp && t - g.t_scan >= 0.01 && g.ph != P_CONNECT) {
        g.t_scan = t;
        for (int i = 0; i < o.conns; i++)
            if (g.c[i].state == C_READY) {
                udp_expire(&g.c[i], t, 0);
                udp_refill(&g.c[i]);
            }
    }
    switch (g.ph) {
    case P_CONNECT:
        if (t - g.t_phase > o.timeout) {
            fprintf(stderr, "frame_load: %d connections not logged in after %.0f s\n",
                    g.pending + (o.conns - g.started), o.timeout);
            for (int i = 0; i < o.conns; i++)
                if (g.c[i].state == C_CONNECTING || g.c[i].state == C_WAIT_LOGIN)
                    conn_fail(&g.c[i], "connect/login timeout");
            g.conn_errors += o.conns - g.started;
            g.started = o.conns;
        }
        if (g.started == o.conns && g.pending == 0 && o.idle) {
            /* idle (TCP): hold the logged-in connections until stdin closes */
            printf("connected %d\n", g.connected);
            fflush(stdout);
            g.ph = P_IDLE;
            epoll_set(g.ep, EPOLL_CTL_ADD, STDIN_FILENO, EPOLLIN, &o);
            return -1;
        }
        if (g.started == o.conns && g.pending == 0) {
            if (g.connected == 0) {
                g.t0 = now_s(); /* empty window */
                finish();
                return 0;
            }
            begin_streaming(o.warmup > 0 ? P_WARMUP : P_MEASURE);
            return 0;
        }
        return g.started < o.conns ? 1 : 100;
    case P_WARMUP:
    case P_MEASURE:
        left = g.t_phase + (g.ph == P_WARMUP ? o.warmup : o.seconds) - t;
        if (left > 0)
            return udp ? (left < 0.01 ? (int)(left * 1000) + 1 : 10) : (int)(left * 1000) + 1;
        if (g.ph == P_WARMUP)
            begin_streaming(P_MEASURE);
        else
            finish();
        return 0;
    case P_DRAIN:
        if (outstanding() == 0 || t - g.t_phase > o.timeout) {
            if (outstanding())
                fprintf(stderr, "frame_load: %llu acks missing %.0f s after the window\n",
                        (unsigned long long)outstanding(), o.timeout);
            if (udp)
                report();
            else
                start_close();
            return 0;
        }
        return udp ? 10 : 100;
    case P_CLOSE:
        if (g.closing > 0 && t - g.t_phase < 10)
            return 100;
        if (g.closing > 0)
            fprintf(stderr, "frame_load: %d connections still open 10 s after our FIN\n",
                    g.closing);
        report();
        return 0;
    default: /* P_IDLE, P_END */
        return -1;
    }
}

/* Paced connection opening: at most --connect-rate per second and PENDING_MAX in flight. */
static void open_more(const struct sockaddr_in *sa)
{
    double allowed = (now_s() - g.t_phase) * o.connect_rate + 1;
    while (g.started < o.conns && g.started < allowed && (udp || g.pending < PENDING_MAX)) {
        if (udp)
            udp_start(g.started, sa);
        else
            tcp_start(g.started, sa);
    }
}

static void usage(void)
{
    fprintf(stderr,
            "usage: frame_load --port P [--host H] [--proto tcp|udp] [--conns N] [--window W]\n"
            "  [--seconds S] [--warmup S] [--device-fmt 'mtr%%05d' (udp: 'snr%%05d')]\n"
            "  [--first-device I] [--secret pa55word (udp: tok12345)] [--connect-rate R]\n"
            "  [--timeout S] [--ack-timeout-ms MS] [--sockbuf BYTES] [--marks] [--selftest]\n"
            "  [--idle] (TCP: log every connection in, print 'connected N', hold them idle until\n"
            "  stdin closes; exit 0 if none was lost)\n");
    exit(2);
}

/* Options: --name value or --name=value (loadgen.h's parse_opts). */
static const optdef OPTS[] = {{"host", 's', &o.host},
                              {"port", 'i', &o.port},
                              {"proto", 's', &o.proto},
                              {"conns", 'i', &o.conns},
                              {"window", 'i', &o.window},
                              {"seconds", 'd', &o.seconds},
                              {"warmup", 'd', &o.warmup},
                              {"device-fmt", 's', &o.device_fmt},
                              {"first-device", 'i', &o.first_device},
                              {"secret", 's', &o.secret},
                              {"connect-rate", 'd', &o.connect_rate},
                              {"timeout", 'd', &o.timeout},
                              {"ack-timeout-ms", 'i', &o.ack_timeout_ms},
                              {"sockbuf", 'i', &o.sockbuf},
                              {"marks", 'b', &o.marks},
                              {"selftest", 'b', &o.selftest},
                              {"idle", 'b', &o.idle}};

static void parse_args(int argc, char **argv)
{
    parse_opts(argc, argv, OPTS, sizeof OPTS / sizeof OPTS[0], usage);
    if (o.selftest)
        return;
    udp = strcmp(o.proto, "udp") == 0;
    if ((!udp && strcmp(o.proto, "tcp") != 0) || (udp && o.idle))
        usage();
    if (!o.device_fmt)
        o.device_fmt = udp ? "snr%05d" : "mtr%05d";
    if (!o.secret)
        o.secret = udp ? "tok12345" : "pa55word";
    if (o.conns < 1 || o.window < 1 || o.window > (udp ? UDP_SLOTS / 2 : 4096) || o.port < 1 ||
        o.port > 65535 || o.connect_rate <= 0 || o.first_device < 0 || o.ack_timeout_ms < 1 ||
        o.sockbuf < 0 || o.seconds <= 0 || o.warmup < 0)
        usage();
    if (strlen(o.secret) > 8) {
        fprintf(stderr, "frame_load: --secret is a string[8] field: at most 8 bytes\n");
        exit(2);
    }
    char dev[64];
    if (fmt_one(o.device_fmt, o.first_device + o.conns - 1, NULL, dev, sizeof dev) != 1 ||
        strlen(dev) > 8) {
        fprintf(stderr, "frame_load: bad --device-fmt (one %%d expected, ids of at most 8 "
                        "bytes: a string[8] field)\n");
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
        g.c[i].state = C_IDLE;
        g.c[i].seq = 1;
        fmt_one(o.device_fmt, o.first_device + i, NULL, g.c[i].dev, sizeof g.c[i].dev);
    }
    g.ep = epoll_with_signals(&g.sigfd);
}

int main(int argc, char **argv)
{
    struct sockaddr_in sa;
    static struct epoll_event evs[MAX_EVENTS];
    crc_init();
    parse_args(argc, argv);
    if (o.selftest)
        return selftest();
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
            if (ptr == &o) { /* --idle: stdin closed (or anything written to it) ends the run */
                g.ph = P_END;
                break;
            }
            conn *c = ptr;
            if (c->state == C_DEAD)
                continue;
            if (udp) {
                if (evs[i].events & (EPOLLIN | EPOLLERR))
                    udp_readable(c);
                else if (evs[i].events & EPOLLOUT)
                    udp_refill(c);
                continue;
            }
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                if (c->state == C_CONNECTING)
                    tcp_writable(c); /* reports the connect error */
                else
                    tcp_readable(c);
            }
            if (c->state != C_DEAD && (evs[i].events & EPOLLOUT))
                tcp_writable(c);
        }
    }
    if (stop) {
        fprintf(stderr, "frame_load: interrupted\n");
        g.conn_errors++;
        if (g.ph != P_DRAIN && g.ph != P_CLOSE) {
            g.t_end = now_s();
            g.msgs = g.acked_total - g.base;
        }
        report();
    }
    for (int i = 0; i < o.conns; i++)
        if (g.c[i].fd >= 0)
            close(g.c[i].fd);
    if (g.dead || g.login_failures || g.conn_errors || g.bad_acks) {
        fprintf(stderr,
                "frame_load: %d connections failed (%d logins refused), %d bad frames from the "
                "server\n",
                g.dead, g.login_failures, g.bad_acks);
        return 1;
    }
    return 0;
}

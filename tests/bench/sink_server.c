/* sink_server.c: the ceiling of the binary ingest benchmark. A plain libuv server on one thread
 * that does framing and acks only: no decoding beyond the frame's fixed offsets, no validation,
 * no storage. It shares no code with the gateway.
 *
 * TCP (meter-tcp framing): reads into one 64 KiB buffer, cuts frames by the length field
 * (offset 1, u16 big-endian, counting the bytes after it), answers each with the 10-byte ack
 * `68 00 07 80 seq request 00 crc16-modbus`; the acks of one read go out in one uv_try_write.
 * UDP (sensor-udp): answers each datagram with the 26-byte ack `A5 01 81 device 0*8 seq 00 crc32`.
 *
 * Prints `listener proto=tcp address=127.0.0.1 port=N` and `ready` on stdout once bound; SIGTERM
 * or SIGINT prints `frames=N` and exits 0. */
#define LOADGEN_PROG "sink_server"
#include "loadgen.h" /* CRCs */
#include <uv.h>

#define READ_SIZE (64 * 1024)
#define MAX_FRAME 256 /* meter-tcp's max_frame */
#define MIN_FRAME 8   /* start, length, cmd, seq, crc */
#define ACK_LEN   10
#define S_HDR_LEN 21 /* sensor-udp header: magic, version, type, device[8], token[8], seq */
#define S_ACK_LEN 26

typedef struct sconn {
    uv_tcp_t h;
    uint8_t carry[MAX_FRAME];
    uint32_t carry_len;
} sconn;

typedef struct wreq {
    uv_write_t req;
    sconn *c;
    uint8_t data[];
} wreq;

static struct {
    uv_loop_t *loop;
    uv_tcp_t tcp;
    uv_udp_t udp;
    uv_signal_t sigterm, sigint;
    bool is_udp;
    uint64_t frames;
    uint8_t rbuf[MAX_FRAME + READ_SIZE];
    uint8_t acks[(MAX_FRAME + READ_SIZE) / MIN_FRAME * ACK_LEN];
} g;

/* ---- TCP ---- */

static void on_closed(uv_handle_t *h)
{
    free(h->data);
}

static void conn_close(sconn *c)
{
    if (!uv_is_closing((uv_handle_t *)&c->h))
        uv_close((uv_handle_t *)&c->h, on_closed);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init((char *)g.rbuf + MAX_FRAME, READ_SIZE); /* one buffer for every conn */
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_written(uv_write_t *req, int status)
{
    wreq *w = (wreq *)req;
    sconn *c = w->c;
    free(w);
    if (status < 0) {
        conn_close(c);
        return;
    }
    if (!uv_is_closing((uv_handle_t *)&c->h))
        uv_read_start((uv_stream_t *)&c->h, on_alloc, on_read);
}

/* The acks of one read: one uv_try_write; what it cannot take goes out with uv_write while the
 * connection is not read (back-pressure). */
static void send_acks(sconn *c, const uint8_t *p, size_t n)
{
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    int rc = uv_try_write((uv_stream_t *)&c->h, &b, 1);
    if (rc == UV_EAGAIN)
        rc = 0;
    if (rc < 0) {
        conn_close(c);
        return;
    }
    if ((size_t)rc == n)
        return;
    size_t rest = n - (size_t)rc;
    wreq *w = malloc(sizeof *w + rest);
    if (!w) {
        conn_close(c);
        return;
    }
    w->c = c;
    memcpy(w->data, p + rc, rest);
    b = uv_buf_init((char *)w->data, (unsigned)rest);
    if (uv_write(&w->req, (uv_stream_t *)&c->h, &b, 1, on_written) != 0) {
        free(w);
        conn_close(c);
        return;
    }
    uv_read_stop((uv_stream_t *)&c->h);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    sconn *c = s->data;
    (void)buf;
    if (nread == 0)
        return;
    if (nread < 0) {
        conn_close(c);
        return;
    }
    uint8_t *start = g.rbuf + MAX_FRAME - c->carry_len;
    memcpy(start, c->carry, c->carry_len);
    const uint8_t *p = start, *end = g.rbuf + MAX_FRAME + nread;
    uint8_t *a = g.acks;
    while (end - p >= 3) {
        uint32_t len = 3u + (uint32_t)(p[1] << 8 | p[2]);
        if (len < MIN_FRAME || len > MAX_FRAME) {
            conn_close(c);
            return;
        }
        if ((size_t)(end - p) < len)
            break;
        a[0] = 0x68;
        a[1] = 0x00;
        a[2] = ACK_LEN - 3;
        a[3] = 0x80;
        a[4] = p[4]; /* seq */
        a[5] = p[5];
        a[6] = p[3]; /* request code */
        a[7] = 0;    /* result: accepted */
        uint16_t crc = crc16_modbus(a, ACK_LEN - 2);
        a[8] = (uint8_t)crc;
        a[9] = (uint8_t)(crc >> 8);
        a += ACK_LEN;
        p += len;
        g.frames++;
    }
    c->carry_len = (uint32_t)(end - p);
    memcpy(c->carry, p, c->carry_len);
    if (a > g.acks)
        send_acks(c, g.acks, (size_t)(a - g.acks));
}

static void on_connection(uv_stream_t *srv, int status)
{
    if (status < 0)
        return;
    sconn *c = calloc(1, sizeof *c);
    if (!c)
        return;
    uv_tcp_init(g.loop, &c->h);
    c->h.data = c;
    if (uv_accept(srv, (uv_stream_t *)&c->h) != 0) {
        conn_close(c);
        return;
    }
    uv_tcp_nodelay(&c->h, 1);
    uv_read_start((uv_stream_t *)&c->h, on_alloc, on_read);
}

/* ---- UDP ---- */

static void on_udp_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    (void)h;
    (void)suggested;
    *buf = uv_buf_init((char *)g.rbuf, READ_SIZE);
}

static void on_udp_recv(uv_udp_t *h, ssize_t nread, const uv_buf_t *buf,
                        const struct sockaddr *from, unsigned flags)
{
    (void)flags;
    if (nread < S_HDR_LEN || !from)
        return; /* nothing (0), an error, or too short to answer */
    const uint8_t *p = (const uint8_t *)buf->base;
    uint8_t a[S_ACK_LEN];
    a[0] = p[0];
    a[1] = p[1];
    a[2] = 0x81;
    memcpy(a + 3, p + 3, 8); /* device */
    memset(a + 11, 0, 8);    /* token: never sent back */
    a[19] = p[19];           /* seq */
    a[20] = p[20];
    a[21] = 0; /* result: accepted */
    uint32_t crc = crc32_iso(a, S_ACK_LEN - 4);
    a[22] = (uint8_t)(crc >> 24);
    a[23] = (uint8_t)(crc >> 16);
    a[24] = (uint8_t)(crc >> 8);
    a[25] = (uint8_t)crc;
    uv_buf_t b = uv_buf_init((char *)a, S_ACK_LEN);
    uv_udp_try_send(h, &b, 1, from); /* EAGAIN: the ack is dropped, as a datagram may be */
    g.frames++;
}

/* ---- main ---- */

static void on_signal(uv_signal_t *s, int signum)
{
    (void)signum;
    (void)s;
    uv_stop(g.loop);
}

static void usage(void)
{
    fprintf(stderr, "usage: sink_server [--proto tcp|udp] [--host 127.0.0.1] [--port 0] "
                    "[--rcvbuf BYTES (udp, default 4 MiB)]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 0, rcvbuf = 4 << 20;
    for (int i = 1; i < argc; i++) {
        if (i + 1 >= argc)
            usage();
        if (strcmp(argv[i], "--proto") == 0) {
            const char *v = argv[++i];
            if (strcmp(v, "udp") == 0)
                g.is_udp = true;
            else if (strcmp(v, "tcp") != 0)
                usage();
        } else if (strcmp(argv[i], "--host") == 0) {
            host = argv[++i];
        } else if (strcmp(argv[i], "--port") == 0) {
            port = atoi(argv[++i]);
        } else if (strcmp(argv[i], "--rcvbuf") == 0) {
            rcvbuf = atoi(argv[++i]);
        } else {
            usage();
        }
    }
    crc_init();
    signal(SIGPIPE, SIG_IGN);
    g.loop = uv_default_loop();
    struct sockaddr_in sa;
    if (uv_ip4_addr(host, port, &sa) != 0)
        usage();
    int rc;
    if (g.is_udp) {
        uv_udp_init(g.loop, &g.udp);
        rc = uv_udp_bind(&g.udp, (const struct sockaddr *)&sa, 0);
        if (rc == 0 && rcvbuf > 0)
            uv_recv_buffer_size((uv_handle_t *)&g.udp, &rcvbuf);
        if (rc == 0)
            rc = uv_udp_recv_start(&g.udp, on_udp_alloc, on_udp_recv);
    } else {
        uv_tcp_init(g.loop, &g.tcp);
        rc = uv_tcp_bind(&g.tcp, (const struct sockaddr *)&sa, 0);
        if (rc == 0)
            rc = uv_listen((uv_stream_t *)&g.tcp, 1024, on_connection);
    }
    if (rc != 0) {
        fprintf(stderr, "sink_server: cannot listen on %s:%d: %s\n", host, port, uv_strerror(rc));
        return 1;
    }
    struct sockaddr_storage ss;
    int len = sizeof ss;
    if (g.is_udp)
        uv_udp_getsockname(&g.udp, (struct sockaddr *)&ss, &len);
    else
        uv_tcp_getsockname(&g.tcp, (struct sockaddr *)&ss, &len);
    uv_signal_init(g.loop, &g.sigterm);
    uv_signal_start(&g.sigterm, on_signal, SIGTERM);
    uv_signal_init(g.loop, &g.sigint);
    uv_signal_start(&g.sigint, on_signal, SIGINT);
    printf("listener proto=%s address=%s port=%d\nready\n", g.is_udp ? "udp" : "tcp", host,
           ntohs(((struct sockaddr_in *)&ss)->sin_port));
    fflush(stdout);
    uv_run(g.loop, UV_RUN_DEFAULT);
    printf("frames=%llu\n", (unsigned long long)g.frames);
    fflush(stdout);
    return 0;
}

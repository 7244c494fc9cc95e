/* loadgen.h: what the benchmark helpers share (mqtt_load.c, frame_load.c, coap_load.c,
 * sink_server.c, north_sub.c; sqlite_floor.c its clock and options): the plumbing that is the
 * same logic in each. The monotonic clock and die(), the CRC-16/MODBUS and CRC-32 tables, the
 * one-conversion id formatter, the --name value option parser, the process setup (RLIMIT_NOFILE,
 * IPv4 address, epoll + signalfd), a connection's pending-output buffer, the non-blocking TCP
 * connect and the `mark` lines. The protocols, the phases and the figures stay in each program.
 * Header-only (static inline): CMake builds each .c of tests/bench into its own
 * executable. It uses no code of the gateway (the load generators share none with it).
 *
 * Define LOADGEN_PROG (the program name for messages) before including it. */
#ifndef IOTGW_BENCH_LOADGEN_H
#define IOTGW_BENCH_LOADGEN_H

#ifndef LOADGEN_PROG
#error "define LOADGEN_PROG before including loadgen.h"
#endif

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* ---- time and errors ---- */

static inline double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static inline void die(const char *what)
{
    fprintf(stderr, LOADGEN_PROG ": %s: %s\n", what, strerror(errno));
    exit(1);
}

/* ---- checks ---- */

static uint16_t crc16_tab[256];
static uint32_t crc32_tab[256];

static inline void crc_init(void)
{
    for (uint32_t i = 0; i < 256; i++) {
        uint16_t c16 = (uint16_t)i;
        uint32_t c32 = i;
        for (int b = 0; b < 8; b++) {
            c16 = (uint16_t)(c16 & 1 ? (c16 >> 1) ^ 0xA001 : c16 >> 1); /* 0x8005 reflected */
            c32 = c32 & 1 ? (c32 >> 1) ^ 0xEDB88320u : c32 >> 1;        /* 0x04C11DB7 refl. */
        }
        crc16_tab[i] = c16;
        crc32_tab[i] = c32;
    }
}

/* CRC-16/MODBUS: poly 0x8005 reflected, init 0xFFFF, no xorout. crc_init() first. */
static inline uint16_t crc16_modbus(const uint8_t *p, size_t n)
{
    uint16_t c = 0xFFFF;
    while (n--)
        c = (uint16_t)((c >> 8) ^ crc16_tab[(c ^ *p++) & 0xFF]);
    return c;
}

/* CRC-32/ISO-HDLC (zlib): reflected, init and xorout 0xFFFFFFFF. crc_init() first. */
static inline uint32_t crc32_iso(const uint8_t *p, size_t n)
{
    uint32_t c = 0xFFFFFFFFu;
    while (n--)
        c = (c >> 8) ^ crc32_tab[(c ^ *p++) & 0xFF];
    return c ^ 0xFFFFFFFFu;
}

/* ---- ids ---- */

/* Expands the one conversion in fmt and %%: %d (optional 0 flag and width) with n when s is NULL,
 * %s with s otherwise. No printf with a runtime format string. Returns how many conversions fmt
 * had (0 or 1), or -1 if the result does not fit or fmt is bad. */
static inline int fmt_one(const char *fmt, long n, const char *s, char *out, size_t cap)
{
    size_t k = 0;
    int used = 0;
    for (const char *p = fmt; *p; p++) {
        char tmp[64];
        const char *ins = tmp;
        if (*p != '%' || p[1] == '%') {
            if (*p == '%')
                p++;
            if (k + 1 >= cap)
                return -1;
            out[k++] = *p;
            continue;
        }
        p++;
        bool zero = *p == '0';
        int width = 0;
        while (*p >= '0' && *p <= '9')
            width = width * 10 + (*p++ - '0');
        if (*p == 'd' && !s) {
            char digits[24];
            int nd = 0;
            unsigned long v = (unsigned long)n;
            do
                digits[nd++] = (char)('0' + v % 10);
            while ((v /= 10) && nd < 23);
            int t = 0;
            for (int i = nd; i < width && t < 32; i++)
                tmp[t++] = zero ? '0' : ' ';
            while (nd)
                tmp[t++] = digits[--nd];
            tmp[t] = 0;
        } else if (*p == 's' && s) {
            ins = s;
        } else {
            return -1;
        }
        if (used++)
            return -1;
        size_t l = strlen(ins);
        if (k + l >= cap)
            return -1;
        memcpy(out + k, ins, l);
        k += l;
    }
    out[k] = 0;
    return used;
}

/* ---- options ---- */

/* One option: --name value or --name=value; kind i int, l long, d double, s string, b flag. */
typedef struct optdef {
    const char *name;
    char kind;
    void *p;
} optdef;

/* Sets each option's variable; anything unknown or malformed calls usage(), which exits. */
static inline void parse_opts(int argc, char **argv, const optdef *defs, size_t ndefs,
                              void (*usage)(void))
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val = NULL;
        if (strncmp(a, "--", 2) != 0)
            usage();
        a += 2;
        size_t len = strcspn(a, "=");
        if (a[len] == '=')
            val = a + len + 1;
        const optdef *d = NULL;
        for (size_t k = 0; k < ndefs; k++)
            if (strlen(defs[k].name) == len && strncmp(defs[k].name, a, len) == 0)
                d = &defs[k];
        if (!d)
            usage();
        if (d->kind == 'b') {
            if (val)
                usage();
            *(bool *)d->p = true;
            continue;
        }
        if (!val && (val = argv[++i]) == NULL)
            usage();
        char *end = NULL;
        if (d->kind == 's')
            *(const char **)d->p = val;
        if (d->kind == 'i')
            *(int *)d->p = (int)strtol(val, &end, 10);
        if (d->kind == 'l')
            *(long *)d->p = strtol(val, &end, 10);
        if (d->kind == 'd')
            *(double *)d->p = strtod(val, &end);
        if (end && (end == val || *end))
            usage();
    }
}

/* ---- process setup ---- */

/* Soft RLIMIT_NOFILE up to the hard limit: one fd per connection. */
/* MQTT encoding shared by the MQTT generator and the cloud subscriber: a remaining length
 * (varint) and a length-prefixed UTF-8 string. Return the bytes written. */
static inline size_t put_rl(uint8_t *p, uint32_t rl)
{
    size_t n = 0;
    do {
        uint8_t b = rl % 128;
        rl /= 128;
        p[n++] = (uint8_t)(rl ? b | 0x80 : b);
    } while (rl);
    return n;
}

static inline size_t put_str(uint8_t *p, const char *s)
{
    size_t l = strlen(s);
    p[0] = (uint8_t)(l >> 8);
    p[1] = (uint8_t)l;
    memcpy(p + 2, s, l);
    return l + 2;
}

static inline void raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/* host:port into sa; exits 2 unless host is a numeric IPv4 address. */
static inline void ipv4_addr(struct sockaddr_in *sa, const char *host, int port)
{
    memset(sa, 0, sizeof *sa);
    sa->sin_family = AF_INET;
    sa->sin_port = htons((uint16_t)port);
    if (inet_pton(AF_INET, host, &sa->sin_addr) != 1) {
        fprintf(stderr, LOADGEN_PROG ": --host must be a numeric IPv4 address\n");
        exit(2);
    }
}

/* A new epoll set, with SIGTERM and SIGINT blocked and delivered to *sigfd, which is in the set
 * with data.ptr = sigfd. Returns the epoll fd. */
static inline int epoll_with_signals(int *sigfd)
{
    int ep = epoll_create1(EPOLL_CLOEXEC);
    if (ep < 0)
        die("epoll_create1");
    sigset_t ss;
    sigemptyset(&ss);
    sigaddset(&ss, SIGTERM);
    sigaddset(&ss, SIGINT);
    sigprocmask(SIG_BLOCK, &ss, NULL);
    *sigfd = signalfd(-1, &ss, SFD_NONBLOCK | SFD_CLOEXEC);
    if (*sigfd < 0)
        die("signalfd");
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = sigfd};
    epoll_ctl(ep, EPOLL_CTL_ADD, *sigfd, &ev);
    return ep;
}

/* Reads the pending signals off the signalfd. */
static inline void drain_signals(int sigfd)
{
    struct signalfd_siginfo si;
    while (read(sigfd, &si, sizeof si) > 0) {
    }
}

/* epoll_wait that exits on an error. Returns the number of events; EINTR counts as none. */
static inline int wait_events(int ep, struct epoll_event *evs, int max, int timeout)
{
    int n = epoll_wait(ep, evs, max, timeout);
    if (n < 0 && errno != EINTR)
        die("epoll_wait");
    return n < 0 ? 0 : n;
}

/* epoll_ctl ADD or MOD with data.ptr = ptr; exits on an error. */
static inline void epoll_set(int ep, int op, int fd, uint32_t events, void *ptr)
{
    struct epoll_event ev = {.events = events, .data.ptr = ptr};
    if (epoll_ctl(ep, op, fd, &ev) < 0)
        die("epoll_ctl");
}

/* ---- connections ---- */

/* A connection's pending output: bytes [off, len) of buf are still to be written. */
typedef struct outbuf {
    uint8_t *buf;
    uint32_t len, off, cap;
} outbuf;

/* Room for `more` bytes at buf + len: drops what is written, then grows. */
static inline void ob_reserve(outbuf *b, uint32_t more)
{
    if (b->off && b->off == b->len)
        b->off = b->len = 0;
    if (b->len + more <= b->cap)
        return;
    if (b->off) {
        memmove(b->buf, b->buf + b->off, b->len - b->off);
        b->len -= b->off;
        b->off = 0;
        if (b->len + more <= b->cap)
            return;
    }
    uint32_t cap = b->cap ? b->cap : 256;
    while (cap < b->len + more)
        cap *= 2;
    b->buf = realloc(b->buf, cap);
    if (!b->buf)
        die("realloc");
    b->cap = cap;
}

/* Writes what is pending. Returns 1 when all is written, 0 on EAGAIN, -1 on an error (errno). */
static inline int ob_send(int fd, outbuf *b)
{
    while (b->off < b->len) {
        ssize_t n = send(fd, b->buf + b->off, b->len - b->off, MSG_NOSIGNAL);
        if (n < 0)
            return errno == EAGAIN || errno == EINTR ? 0 : -1;
        b->off += (uint32_t)n;
    }
    return 1;
}

/* A non-blocking TCP socket with TCP_NODELAY into *fd (exits if there is none), connecting to sa.
 * Returns 0 (connected or in progress) or the errno of a connect that failed at once. */
static inline int tcp_connect_nb(const struct sockaddr_in *sa, int *fd)
{
    *fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (*fd < 0)
        die("socket (raise ulimit -n?)");
    int one = 1;
    setsockopt(*fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (connect(*fd, (const struct sockaddr *)sa, sizeof *sa) < 0 && errno != EINPROGRESS)
        return errno;
    return 0;
}

/* The socket's pending error (SO_ERROR): how a non-blocking connect ended. */
static inline int sock_error(int fd)
{
    int err = 0;
    socklen_t l = sizeof err;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &l);
    return err;
}

/* `mark measure_start` / `mark measure_end` for the driver (--marks), flushed at once. */
static inline void mark_if(bool on, const char *what)
{
    if (!on)
        return;
    printf("mark %s\n", what);
    fflush(stdout);
}

#endif

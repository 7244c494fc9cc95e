/* tls_load.c: MQTT-over-TLS load generator for bench_tls.py (OpenSSL, blocking sockets, one
 * thread per connection or per handshake loop: simple, and the same for mosquitto and iotgw).
 * Modes: handshake (full TLS handshakes + CONNECT/CONNACK per second), resume (the same, resuming
 * a session ticket), qos1 (QoS 1 PUBLISH throughput with a window per connection), idle (N
 * connections held open until stdin closes; prints "connected N"). Prints one `bench=tls_load`
 * line. */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
/* the client id and topic formats come from the command line (like mqtt_load's) */
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static struct {
    const char *host, *ca, *mode, *client_fmt, *username, *password, *topic_fmt;
    int port, threads, conns, window, payload;
    double seconds;
} o = {"127.0.0.1", NULL, "handshake", "bench-%05d", "bench", "s", "/bench/%s/properties/report",
       0,           4,    100,         20,           100,     3.0};

static SSL_CTX *ctx;
static atomic_ulong done_count, resumed_count, fail_count;
static double deadline;

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int tcp_connect(void)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)o.port)};
    inet_pton(AF_INET, o.host, &a.sin_addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0), one = 1;
    if (fd < 0)
        return -1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    if (connect(fd, (struct sockaddr *)&a, sizeof(a)) != 0) {
        close(fd);
        return -1;
    }
    return fd;
}

static SSL *tls_open(SSL_SESSION *sess)
{
    int fd = tcp_connect();
    if (fd < 0)
        return NULL;
    SSL *ssl = SSL_new(ctx);
    SSL_set_fd(ssl, fd);
    SSL_set_tlsext_host_name(ssl, "localhost");
    if (sess)
        SSL_set_session(ssl, sess);
    if (SSL_connect(ssl) != 1) {
        ERR_clear_error();
        SSL_free(ssl);
        close(fd);
        return NULL;
    }
    return ssl;
}

static void tls_close(SSL *ssl)
{
    int fd = SSL_get_fd(ssl);
    SSL_shutdown(ssl); /* close_notify: else OpenSSL marks the session not resumable */
    ERR_clear_error();
    SSL_free(ssl);
    close(fd);
}

static bool write_all(SSL *ssl, const uint8_t *p, size_t n)
{
    return SSL_write(ssl, p, (int)n) == (int)n;
}

static bool read_n(SSL *ssl, uint8_t *p, size_t n)
{
    size_t got = 0;
    while (got < n) {
        int k = SSL_read(ssl, p + got, (int)(n - got));
        if (k <= 0)
            return false;
        got += (size_t)k;
    }
    return true;
}

static size_t put_str(uint8_t *b, const char *s)
{
    size_t n = strlen(s);
    b[0] = (uint8_t)(n >> 8);
    b[1] = (uint8_t)n;
    memcpy(b + 2, s, n);
    return n + 2;
}

static size_t put_len(uint8_t *b, size_t n)
{
    size_t i = 0;
    do {
        uint8_t d = n % 128;
        n /= 128;
        b[i++] = (uint8_t)(d | (n ? 128 : 0));
    } while (n);
    return i;
}

static bool mqtt_connect(SSL *ssl, int idx)
{
    char id[64];
    uint8_t body[256], pkt[300];
    snprintf(id, sizeof(id), o.client_fmt, idx);
    size_t n = put_str(body, "MQTT");
    body[n++] = 4;
    body[n++] = 0xC2; /* username, password, clean session */
    body[n++] = 0;
    body[n++] = 60;
    n += put_str(body + n, id);
    n += put_str(body + n, o.username);
    n += put_str(body + n, o.password);
    pkt[0] = 0x10;
    size_t h = 1 + put_len(pkt + 1, n);
    memcpy(pkt + h, body, n);
    uint8_t ack[4];
    return write_all(ssl, pkt, h + n) && read_n(ssl, ack, 4) && ack[0] == 0x20 && ack[3] == 0;
}

static void *handshake_main(void *arg)
{
    int idx = (int)(intptr_t)arg;
    bool resume = strcmp(o.mode, "resume") == 0;
    SSL_SESSION *sess = NULL;
    while (now() < deadline) {
        SSL *ssl = tls_open(sess);
        if (!ssl) {
            atomic_fetch_add(&fail_count, 1);
            continue;
        }
        bool ok = mqtt_connect(ssl, idx); /* (reads the session ticket too) */
        if (ok) {
            atomic_fetch_add(&done_count, 1);
            if (SSL_session_reused(ssl))
                atomic_fetch_add(&resumed_count, 1);
            if (resume) {
                SSL_SESSION_free(sess);
                sess = SSL_get1_session(ssl);
            }
        } else {
            atomic_fetch_add(&fail_count, 1);
        }
        tls_close(ssl);
    }
    SSL_SESSION_free(sess);
    return NULL;
}

static void *qos1_main(void *arg)
{
    int idx = (int)(intptr_t)arg;
    char id[64], topic[160];
    snprintf(id, sizeof(id), o.client_fmt, idx);
    snprintf(topic, sizeof(topic), o.topic_fmt, id);
    SSL *ssl = tls_open(NULL);
    if (!ssl || !mqtt_connect(ssl, idx)) {
        atomic_fetch_add(&fail_count, 1);
        if (ssl)
            tls_close(ssl);
        return NULL;
    }
    char payload[4096];
    int plen = snprintf(payload, sizeof(payload),
                        "{\"messageId\":\"1\",\"properties\":{\"temperature\":21.5,\"name\":\"");
    while (plen < o.payload - 4 && plen < (int)sizeof(payload) - 8)
        payload[plen++] = 'x';
    plen += snprintf(payload + plen, sizeof(payload) - (size_t)plen, "\"}}");
    uint8_t pkt[8192];
    size_t tl = strlen(topic), body = 2 + tl + 2 + (size_t)plen;
    pkt[0] = 0x32;
    size_t h = 1 + put_len(pkt + 1, body);
    size_t pid_off = h + 2 + tl;
    put_str(pkt + h, topic);
    memcpy(pkt + pid_off + 2, payload, (size_t)plen);
    size_t len = h + body;
    uint16_t pid = 0;
    int outstanding = 0;
    unsigned long acked = 0;
    for (;;) {
        while (outstanding < o.window && now() < deadline) {
            pid = (uint16_t)(pid % 65535 + 1);
            pkt[pid_off] = (uint8_t)(pid >> 8);
            pkt[pid_off + 1] = (uint8_t)pid;
            if (!write_all(ssl, pkt, len))
                goto fail;
            outstanding++;
        }
        if (!outstanding)
            break;
        uint8_t ack[4];
        if (!read_n(ssl, ack, 4) || ack[0] != 0x40)
            goto fail;
        outstanding--;
        acked++;
    }
    atomic_fetch_add(&done_count, acked);
    tls_close(ssl);
    return NULL;
fail:
    atomic_fetch_add(&done_count, acked);
    atomic_fetch_add(&fail_count, 1);
    tls_close(ssl);
    return NULL;
}

static SSL **idle;

static void *idle_main(void *arg)
{
    int t = (int)(intptr_t)arg;
    for (int i = t; i < o.conns; i += o.threads) {
        SSL *ssl = NULL;
        for (int attempt = 0; attempt < 20 && !ssl; attempt++) {
            ssl = tls_open(NULL);
            if (ssl && !mqtt_connect(ssl, i)) {
                tls_close(ssl);
                ssl = NULL;
            }
            if (!ssl)
                usleep(20000);
        }
        if (!ssl) {
            atomic_fetch_add(&fail_count, 1);
            continue;
        }
        idle[i] = ssl;
        atomic_fetch_add(&done_count, 1);
    }
    return NULL;
}

static void usage(void)
{
    fprintf(stderr, "tls_load --port N --ca FILE [--host A] [--mode handshake|resume|qos1|idle] "
                    "[--threads N] [--conns N] [--window N] [--seconds S] [--payload-size N] "
                    "[--client-fmt F] [--username U] [--password P] [--topic-fmt F]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!v)
            usage();
        i++;
        if (!strcmp(a, "--host"))
            o.host = v;
        else if (!strcmp(a, "--port"))
            o.port = atoi(v);
        else if (!strcmp(a, "--ca"))
            o.ca = v;
        else if (!strcmp(a, "--mode"))
            o.mode = v;
        else if (!strcmp(a, "--threads"))
            o.threads = atoi(v);
        else if (!strcmp(a, "--conns"))
            o.conns = atoi(v);
        else if (!strcmp(a, "--window"))
            o.window = atoi(v);
        else if (!strcmp(a, "--seconds"))
            o.seconds = atof(v);
        else if (!strcmp(a, "--payload-size"))
            o.payload = atoi(v);
        else if (!strcmp(a, "--client-fmt"))
            o.client_fmt = v;
        else if (!strcmp(a, "--username"))
            o.username = v;
        else if (!strcmp(a, "--password"))
            o.password = v;
        else if (!strcmp(a, "--topic-fmt"))
            o.topic_fmt = v;
        else
            usage();
    }
    if (!o.port || !o.ca || o.threads < 1 || o.conns < 1)
        usage();
    ctx = SSL_CTX_new(TLS_client_method());
    if (!ctx || SSL_CTX_load_verify_locations(ctx, o.ca, NULL) != 1) {
        fprintf(stderr, "tls_load: cannot load CA %s\n", o.ca);
        return 1;
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, NULL);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_CLIENT);
    bool qos1 = !strcmp(o.mode, "qos1"), idle_mode = !strcmp(o.mode, "idle");
    int n = qos1 ? o.conns : idle_mode ? o.threads : o.threads;
    if (idle_mode && !(idle = calloc((size_t)o.conns, sizeof(SSL *))))
        return 1;
    pthread_t *th = calloc((size_t)n, sizeof(pthread_t));
    double t0 = now();
    deadline = t0 + o.seconds;
    for (int i = 0; i < n; i++) {
        pthread_attr_t at;
        pthread_attr_init(&at);
        pthread_attr_setstacksize(&at, 256 * 1024);
        pthread_create(&th[i], &at,
                       qos1        ? qos1_main
                       : idle_mode ? idle_main
                                   : handshake_main,
                       (void *)(intptr_t)i);
        pthread_attr_destroy(&at);
    }
    for (int i = 0; i < n; i++)
        pthread_join(th[i], NULL);
    double secs = now() - t0;
    if (idle_mode) {
        printf("connected %lu\n", atomic_load(&done_count));
        fflush(stdout);
        char buf[64];
        while (read(0, buf, sizeof(buf)) > 0) {
        }
        for (int i = 0; i < o.conns; i++)
            if (idle[i])
                tls_close(idle[i]);
        printf("bench=tls_load mode=idle conns=%d connected=%lu failed=%lu open_seconds=%.2f\n",
               o.conns, atomic_load(&done_count), atomic_load(&fail_count), secs);
        return 0;
    }
    unsigned long d = atomic_load(&done_count);
    printf("bench=tls_load mode=%s threads=%d conns=%d count=%lu resumed=%lu failed=%lu "
           "seconds=%.2f per_s=%.0f\n",
           o.mode, n, qos1 ? o.conns : n, d, atomic_load(&resumed_count), atomic_load(&fail_count),
           secs, d / secs);
    return 0;
}

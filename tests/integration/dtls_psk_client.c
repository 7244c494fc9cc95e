/* dtls_psk_client.c: a DTLS 1.2 PSK client for the integration tests (76-coap-dtls-flood.py): opens
 * N sessions of one identity one after the other (each from its own UDP socket, all kept open so
 * no source port is reused), then sends a CoAP report through each of the newest K sessions and
 * tells which of the oldest K the gateway closed (close_notify). coap-client takes about 100 ms a
 * session; this takes about 1 ms.
 *
 * usage: dtls_psk_client HOST PORT IDENTITY KEY N K URI_PATH [STEP_MS (5000)]
 * prints: "handshakes ok=.. failed=.. ms=..", "newest codes=2.04,...", "oldest closed=x/K" */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static long step_ms = 5000; /* one handshake or one request at most */

static const char *g_identity, *g_key;

static unsigned int psk_cb(SSL *ssl, const char *hint, char *identity, unsigned int max_identity,
                           unsigned char *psk, unsigned int max_psk)
{
    (void)ssl;
    (void)hint;
    size_t n = strlen(g_key);
    if (strlen(g_identity) + 1 > max_identity || n > max_psk)
        return 0;
    strcpy(identity, g_identity);
    memcpy(psk, g_key, n);
    return (unsigned int)n;
}

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000L + ts.tv_nsec / 1000000L;
}

/* Waits for the socket to be readable, driving DTLS retransmissions; -1 past the deadline. */
static int wait_readable(SSL *ssl, int fd, long deadline)
{
    long left = deadline - now_ms();
    if (left <= 0)
        return -1;
    struct timeval tv;
    int wait = left > 100 ? 100 : (int)left;
    if (DTLSv1_get_timeout(ssl, &tv)) {
        long t = tv.tv_sec * 1000L + tv.tv_usec / 1000 + 1;
        if (t < wait)
            wait = (int)t;
    }
    struct pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, wait) == 0)
        DTLSv1_handle_timeout(ssl);
    return 0;
}

static SSL *session(SSL_CTX *ctx, const struct sockaddr_in *to, int *fd_out)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    if (fd < 0 || connect(fd, (const struct sockaddr *)to, sizeof(*to)) != 0) {
        if (fd >= 0)
            close(fd);
        return NULL;
    }
    SSL *ssl = SSL_new(ctx);
    BIO *bio = BIO_new_dgram(fd, BIO_NOCLOSE);
    BIO_ctrl(bio, BIO_CTRL_DGRAM_SET_CONNECTED, 0, (void *)to);
    SSL_set_bio(ssl, bio, bio);
    SSL_set_mtu(ssl, 1280);
    DTLS_set_link_mtu(ssl, 1280);
    long deadline = now_ms() + step_ms;
    for (;;) {
        int rc = SSL_connect(ssl);
        if (rc == 1)
            break;
        int e = SSL_get_error(ssl, rc);
        if ((e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) ||
            wait_readable(ssl, fd, deadline) < 0) {
            static int told;
            if (!told++) { /* the first failure's reason, once */
                fprintf(stderr, "handshake failed: ssl error %d errno %d\n", e, errno);
                ERR_print_errors_fp(stderr);
            }
            ERR_clear_error();
            SSL_free(ssl);
            close(fd);
            return NULL;
        }
    }
    *fd_out = fd;
    return ssl;
}

/* A CON POST of a JSON report to path (a/b/c); the response code ("2.04") or "none". */
static void report(SSL *ssl, int fd, const char *path, int i, char *code, size_t cap)
{
    uint8_t m[512];
    size_t n = 0;
    uint16_t mid = (uint16_t)(0x4000 + i);
    m[n++] = 0x41; /* ver 1, CON, tkl 1 */
    m[n++] = 0x02; /* POST */
    m[n++] = (uint8_t)(mid >> 8);
    m[n++] = (uint8_t)mid;
    m[n++] = (uint8_t)i;
    unsigned last = 0;
    for (const char *s = path; *s;) {
        const char *e = strchr(s, '/');
        size_t len = e ? (size_t)(e - s) : strlen(s);
        unsigned delta = 11 - last;
        m[n++] = (uint8_t)(delta << 4 | (len < 13 ? len : 13));
        if (len >= 13)
            m[n++] = (uint8_t)(len - 13);
        memcpy(m + n, s, len);
        n += len;
        last = 11;
        s += len + (e ? 1 : 0);
        if (!e)
            break;
    }
    m[n++] = (uint8_t)((12 - last) << 4 | 1); /* Content-Format: 50 */
    m[n++] = 50;
    m[n++] = 0xff;
    n += (size_t)snprintf((char *)m + n, sizeof(m) - n,
                          "{\"messageId\":\"cap-%d\",\"properties\":{\"humidity\":%d}}", i, i % 90);
    snprintf(code, cap, "none");
    if (SSL_write(ssl, m, (int)n) <= 0) {
        ERR_clear_error();
        return;
    }
    long deadline = now_ms() + step_ms;
    for (;;) {
        uint8_t r[1500];
        int got = SSL_read(ssl, r, sizeof(r));
        if (got >= 4 && r[1] != 0) { /* a piggybacked or separate response (not an empty ACK) */
            snprintf(code, cap, "%d.%02d", r[1] >> 5, r[1] & 31);
            return;
        }
        if (got <= 0) {
            int e = SSL_get_error(ssl, got);
            ERR_clear_error();
            if (e == SSL_ERROR_ZERO_RETURN) {
                snprintf(code, cap, "closed");
                return;
            }
            if (e != SSL_ERROR_WANT_READ || wait_readable(ssl, fd, deadline) < 0)
                return;
        }
    }
}

/* Whether the gateway sent this session a close_notify (read without waiting). */
static int closed(SSL *ssl)
{
    uint8_t r[1500];
    for (int k = 0; k < 8; k++) {
        int got = SSL_read(ssl, r, sizeof(r));
        if (got > 0)
            continue;
        int e = SSL_get_error(ssl, got);
        ERR_clear_error();
        return e == SSL_ERROR_ZERO_RETURN;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 8 && argc != 9) {
        fprintf(stderr, "usage: %s HOST PORT IDENTITY KEY N K URI_PATH [STEP_MS]\n", argv[0]);
        return 2;
    }
    if (argc == 9)
        step_ms = atol(argv[8]);
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    inet_pton(AF_INET, argv[1], &to.sin_addr);
    g_identity = argv[3];
    g_key = argv[4];
    int n = atoi(argv[5]), k = atoi(argv[6]);
    const char *path = argv[7];
    if (n < 1 || k < 0 || 2 * k > n)
        return 2;
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < (rlim_t)n + 64) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    SSL_CTX *ctx = SSL_CTX_new(DTLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, DTLS1_2_VERSION);
    SSL_CTX_set_cipher_list(ctx, "PSK");
    SSL_CTX_set_psk_client_callback(ctx, psk_cb);
    SSL_CTX_set_options(ctx, SSL_OP_NO_QUERY_MTU);
    SSL_CTX_set_mode(ctx, SSL_MODE_RELEASE_BUFFERS);

    SSL **keep = calloc((size_t)n, sizeof(*keep));
    int *fds = calloc((size_t)n, sizeof(*fds));
    int ok = 0, failed = 0;
    long t0 = now_ms();
    for (int i = 0; i < n; i++) {
        fds[i] = -1;
        SSL *ssl = session(ctx, &to, &fds[i]);
        if (!ssl) {
            failed++;
            continue;
        }
        ok++;
        if (i < k || i >= n - k)
            keep[i] = ssl; /* the oldest and the newest are looked at below */
        else
            SSL_free(ssl); /* no close_notify: the gateway keeps it until the cap or idle */
    }
    printf("handshakes ok=%d failed=%d ms=%ld\n", ok, failed, now_ms() - t0);
    fflush(stdout);
    usleep(1500 * 1000); /* the other loops' close_notify; idle peers release their buffers */

    printf("newest codes=");
    for (int i = n - k; i < n; i++) {
        char code[16] = "none";
        if (keep[i])
            report(keep[i], fds[i], path, i, code, sizeof(code));
        printf("%s%s", i > n - k ? "," : "", code);
    }
    int nclosed = 0;
    for (int i = 0; i < k; i++)
        nclosed += keep[i] ? closed(keep[i]) : 0;
    printf("\noldest closed=%d/%d\n", nclosed, k);
    for (int i = 0; i < n; i++) {
        if (keep[i])
            SSL_free(keep[i]);
        if (fds[i] >= 0)
            close(fds[i]);
    }
    free(keep);
    free(fds);
    SSL_CTX_free(ctx);
    return 0;
}

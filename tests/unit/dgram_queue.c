/* dgram_queue.c: the loop's queue of datagrams the kernel cannot take now (gateway/core/dgram.c)
 * stays within GW_DGRAM_QUEUE_BYTES, is counted in GW_AREA_OUTPUT, drops the rest (output_overflow)
 * and drains in order once the socket takes datagrams again. On loopback sendmmsg never returns
 * EAGAIN, so gw_dgram_test_blocked stands in for a full socket buffer. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../gateway/util/alloc.h"
#include "../../gateway/core/dgram.h"
#include "../../gateway/util/metrics.h"
#include "../../gateway/core/runtime.h"
#include "test.h"

#define PAYLOAD 100

static int reader(struct sockaddr_in *addr)
{
    int fd = socket(AF_INET, SOCK_DGRAM | SOCK_NONBLOCK, 0);
    int big = 8 << 20;
    socklen_t len = sizeof(*addr);
    setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &big, sizeof(big));
    memset(addr, 0, sizeof(*addr));
    addr->sin_family = AF_INET;
    addr->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    bind(fd, (struct sockaddr *)addr, sizeof(*addr));
    getsockname(fd, (struct sockaddr *)addr, &len);
    return fd;
}

/* Reads what has arrived; checks the datagrams keep their order (a counter in the first bytes). */
static size_t drain(int fd, uint32_t *expect, int *order_ok)
{
    uint8_t buf[2048];
    size_t n = 0;
    ssize_t r;
    while ((r = recv(fd, buf, sizeof(buf), 0)) > 0) {
        uint32_t v;
        memcpy(&v, buf, sizeof(v));
        if (v < *expect)
            *order_ok = 0;
        *expect = v + 1;
        n++;
    }
    return n;
}

int main(void)
{
    gw_loop l;
    uv_udp_t h;
    struct sockaddr_in to, any;
    uint8_t p[PAYLOAD];
    uint32_t expect = 0;
    int order_ok = 1;

    memset(&l, 0, sizeof(l));
    CHECK_INT(uv_loop_init(&l.uv), 0);
    int rfd = reader(&to);
    CHECK_INT(uv_udp_init(&l.uv, &h), 0);
    uv_ip4_addr("127.0.0.1", 0, &any);
    CHECK_INT(uv_udp_bind(&h, (struct sockaddr *)&any, 0), 0);
    memset(p, 0xab, sizeof(p));

    /* a socket that takes everything: nothing is queued */
    for (uint32_t i = 0; i < 10; i++) {
        memcpy(p, &i, sizeof(i));
        gw_dgram_send(&l, &h, (struct sockaddr *)&to, p, sizeof(p));
    }
    gw_dgram_flush(&l);
    usleep(20000);
    CHECK_INT(drain(rfd, &expect, &order_ok), 10);
    CHECK_INT(gw_dgram_queued(&l), 0);

    /* a socket that takes nothing: the queue fills to its bound, the rest is dropped */
    int64_t out0 = gw_alloc_bytes(GW_AREA_OUTPUT);
    int64_t drop0 = gw_metric_get(GW_M_DGRAM_OUTPUT_DROPPED);
    const uint32_t n = 20000; /* 2 MB offered against a 256 KiB bound */
    gw_dgram_test_blocked(1);
    for (uint32_t i = 10; i < 10 + n; i++) {
        memcpy(p, &i, sizeof(i));
        gw_dgram_send(&l, &h, (struct sockaddr *)&to, p, sizeof(p));
    }
    gw_dgram_flush(&l);
    size_t queued = gw_dgram_queued(&l);
    int64_t out = gw_alloc_bytes(GW_AREA_OUTPUT) - out0;
    int64_t dropped = gw_metric_get(GW_M_DGRAM_OUTPUT_DROPPED) - drop0;
    printf("offered %u datagrams of %d bytes: queued %zu bytes (bound %d), output area +%lld, "
           "dropped %lld\n",
           n, PAYLOAD, queued, GW_DGRAM_QUEUE_BYTES, (long long)out, (long long)dropped);
    CHECK(queued <= GW_DGRAM_QUEUE_BYTES);
    CHECK(queued > GW_DGRAM_QUEUE_BYTES - 2 * (PAYLOAD + 256));
    CHECK(out > 0 && out <= GW_DGRAM_QUEUE_BYTES + GW_DGRAM_QUEUE_BYTES / 4); /* malloc slack */
    CHECK(dropped > 0 && dropped < (int64_t)n);

    /* the socket takes datagrams again: the queue drains, in order, and the area is back */
    gw_dgram_test_blocked(0);
    size_t got = 0;
    for (int i = 0; i < 2000 && gw_dgram_queued(&l) > 0; i++) {
        uv_run(&l.uv, UV_RUN_NOWAIT);
        got += drain(rfd, &expect, &order_ok);
        usleep(1000);
    }
    usleep(20000);
    got += drain(rfd, &expect, &order_ok);
    printf("after unblocking: received %zu, queued %zu bytes, output area %+lld\n", got,
           gw_dgram_queued(&l), (long long)(gw_alloc_bytes(GW_AREA_OUTPUT) - out0));
    CHECK_INT(gw_dgram_queued(&l), 0);
    CHECK_INT(gw_alloc_bytes(GW_AREA_OUTPUT) - out0, 0);
    CHECK(got > 0 && got + (size_t)dropped <= n);
    CHECK(order_ok);

    uv_close((uv_handle_t *)&h, NULL);
    uv_run(&l.uv, UV_RUN_DEFAULT);
    gw_dgram_free(&l);
    uv_loop_close(&l.uv);
    close(rfd);
    TEST_MAIN_END();
}

/* dgram.c: datagram I/O shared by the UDP and CoAP adapters: SO_REUSEPORT sockets read with
 * recvmmsg into the loop's receive buffer, and the loop's output batch, sent with sendmmsg after
 * each commit's answers and at the end of each iteration (one system call for the answers of a
 * whole commit instead of one each); what the kernel cannot take now waits in libuv's queue,
 * bounded per loop (GW_DGRAM_QUEUE_BYTES). */
#include "dgram.h"

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <string.h>
#include <sys/socket.h>

#include "../util/alloc.h"
#include "../util/log.h"
#include "../util/metrics.h"
#include "runtime.h"

#define SLOT_BYTES 65536 /* libuv's recvmmsg gives each datagram a 64 KiB slot */

struct gw_dgram {
    char *rbuf; /* GW_DGRAM_RECV_BATCH slots */
    size_t n, used;
    size_t queued;    /* bytes in libuv's send queues (GW_DGRAM_QUEUE_BYTES at most) */
    uint64_t dropped; /* datagrams dropped since the queue filled */
    bool overflowing;
    uv_udp_t *h[GW_DGRAM_OUT_MAX];
    struct sockaddr_storage to[GW_DGRAM_OUT_MAX];
    struct iovec iov[GW_DGRAM_OUT_MAX];
    struct mmsghdr msg[GW_DGRAM_OUT_MAX];
    uint8_t data[GW_DGRAM_OUT_BYTES];
};

static struct gw_dgram *state(gw_loop *l)
{
    if (!l->dgram)
        l->dgram = gw_calloc(GW_AREA_RUNTIME, 1, sizeof(*l->dgram));
    return l->dgram;
}

void gw_dgram_recv_buf(gw_loop *l, uv_buf_t *buf)
{
    struct gw_dgram *d = state(l);
    if (d && !d->rbuf)
        d->rbuf = gw_malloc(GW_AREA_RUNTIME, (size_t)GW_DGRAM_RECV_BATCH * SLOT_BYTES);
    *buf =
        d && d->rbuf ? uv_buf_init(d->rbuf, GW_DGRAM_RECV_BATCH * SLOT_BYTES) : uv_buf_init(0, 0);
}

/* ---- sending ---- */

static int test_blocked; /* gw_dgram_test_blocked */

void gw_dgram_test_blocked(int on)
{
    __atomic_store_n(&test_blocked, on, __ATOMIC_RELAXED);
}

static bool blocked(void)
{
    return __atomic_load_n(&test_blocked, __ATOMIC_RELAXED) != 0;
}

typedef struct queued {
    uv_udp_send_t req;
    struct gw_dgram *d;
    size_t cost; /* what it counts against GW_DGRAM_QUEUE_BYTES */
    uint8_t data[];
} queued;

static void on_queued_sent(uv_udp_send_t *req, int status)
{
    queued *q = (queued *)req;
    struct gw_dgram *d = q->d;
    (void)status; /* a failure is a lost datagram: the peer retransmits, or we do for our CONs */
    d->queued -= q->cost;
    gw_free(GW_AREA_OUTPUT, q);
    if (d->overflowing && d->queued <= GW_DGRAM_QUEUE_BYTES / 2) {
        d->overflowing = false;
        GW_LOG_WARN("dgram", NULL, NULL, "send queue below its bound again",
                    "reason=output_overflow dropped=%" PRIu64 " queued_bytes=%zu", d->dropped,
                    d->queued);
        d->dropped = 0;
    }
}

/* The loop's send queue is at its bound: the datagram is dropped and counted; one line when the
 * queue fills and one when it has drained to half, with the count dropped in between. */
static void overflow(struct gw_dgram *d, size_t n)
{
    gw_metric_inc(GW_M_DGRAM_OUTPUT_DROPPED);
    if (!d)
        return;
    d->dropped++;
    if (!d->overflowing) {
        d->overflowing = true;
        GW_LOG_WARN("dgram", NULL, NULL, "send queue full: datagrams dropped",
                    "reason=output_overflow queued_bytes=%zu bound=%d bytes=%zu", d->queued,
                    GW_DGRAM_QUEUE_BYTES, n);
    }
}

/* A copy of the datagram in libuv's send queue, sent when the socket is writable; dropped when
 * the loop's queue is at GW_DGRAM_QUEUE_BYTES. */
static void send_queued(struct gw_dgram *d, uv_udp_t *h, const struct sockaddr *to, const void *p,
                        size_t n)
{
    size_t cost = sizeof(queued) + n;
    if (!d || d->queued + cost > GW_DGRAM_QUEUE_BYTES) {
        overflow(d, n);
        return;
    }
    queued *q = gw_malloc(GW_AREA_OUTPUT, cost);
    if (!q)
        return;
    memcpy(q->data, p, n);
    q->d = d;
    q->cost = cost;
    uv_buf_t b = uv_buf_init((char *)q->data, (unsigned)n);
    if (uv_udp_send(&q->req, h, &b, 1, to, on_queued_sent) != 0) {
        gw_free(GW_AREA_OUTPUT, q);
        return;
    }
    d->queued += cost;
}

/* One datagram now: the kernel, else libuv's queue when the socket buffer is full. */
static void send_now(struct gw_dgram *d, uv_udp_t *h, const struct sockaddr *to, const void *p,
                     size_t n)
{
    uv_buf_t b = uv_buf_init((char *)p, (unsigned)n);
    int rc = blocked() ? UV_EAGAIN : uv_udp_try_send(h, &b, 1, to);
    if (rc == UV_EAGAIN || rc == UV_ENOSYS) /* ENOSYS: libuv's queue is not empty: keep order */
        send_queued(d, h, to, p, n);
}

static bool usable(uv_udp_t *h)
{
    return h->type == UV_UDP && !uv_is_closing((uv_handle_t *)h);
}

/* Sends msg[i..j), all on socket h: sendmmsg while the kernel takes them; what it cannot take now
 * goes to libuv's queue (as does everything behind datagrams already queued there: their order is
 * kept), and a datagram refused for another reason is skipped. */
static void send_run(struct gw_dgram *d, uv_udp_t *h, size_t i, size_t j)
{
    uv_os_fd_t fd;
    if (!usable(h))
        return;
    bool queue =
        blocked() || uv_udp_get_send_queue_count(h) > 0 || uv_fileno((uv_handle_t *)h, &fd) != 0;
    while (i < j && !queue) {
        int k = sendmmsg(fd, &d->msg[i], (unsigned)(j - i), MSG_DONTWAIT);
        if (k > 0)
            i += (size_t)k;
        else if (k == 0 || errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS)
            queue = true;
        else if (errno != EINTR)
            i++; /* this datagram's destination refused it (e.g. unreachable): drop it */
    }
    for (; i < j; i++)
        send_queued(d, h, (struct sockaddr *)&d->to[i], d->iov[i].iov_base, d->iov[i].iov_len);
}

void gw_dgram_flush(gw_loop *l)
{
    struct gw_dgram *d = l->dgram;
    if (!d || !d->n)
        return;
    size_t i = 0;
    while (i < d->n) {
        size_t j = i + 1;
        while (j < d->n && d->h[j] == d->h[i])
            j++;
        send_run(d, d->h[i], i, j);
        i = j;
    }
    d->n = d->used = 0;
}

void gw_dgram_send(gw_loop *l, uv_udp_t *h, const struct sockaddr *to, const void *p, size_t n)
{
    if (!usable(h))
        return;
    struct gw_dgram *d = state(l);
    size_t alen =
        to->sa_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
    if (!d || n > GW_DGRAM_OUT_BYTES / 4) {
        if (d)
            gw_dgram_flush(l); /* keep the order of this iteration's datagrams */
        send_now(d, h, to, p, n);
        return;
    }
    if (d->n == GW_DGRAM_OUT_MAX || d->used + n > GW_DGRAM_OUT_BYTES)
        gw_dgram_flush(l);
    size_t k = d->n++;
    memcpy(d->data + d->used, p, n);
    memcpy(&d->to[k], to, alen);
    d->h[k] = h;
    d->iov[k] = (struct iovec){d->data + d->used, n};
    d->msg[k] = (struct mmsghdr){.msg_hdr = {.msg_name = &d->to[k],
                                             .msg_namelen = (socklen_t)alen,
                                             .msg_iov = &d->iov[k],
                                             .msg_iovlen = 1}};
    d->used += n;
}

size_t gw_dgram_queued(gw_loop *l)
{
    return l->dgram ? l->dgram->queued : 0;
}

void gw_dgram_free(gw_loop *l)
{
    if (!l->dgram)
        return;
    gw_free(GW_AREA_RUNTIME, l->dgram->rbuf);
    gw_free(GW_AREA_RUNTIME, l->dgram);
    l->dgram = NULL;
}

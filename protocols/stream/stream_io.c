/* stream_io.c: the sockets of one loop's stream connections without a libuv handle each (a
 * uv_tcp_t is 248 bytes per idle connection): one epoll set per loop, watched by a single
 * uv_poll_t, each socket registered (level-triggered) with its connection as data for what the
 * connection wants (reading; writing while output is queued). Owns reading into the buffer the
 * connection asks for, the write queue (output the socket did not take, bounded by the output
 * limits), closing the socket and the deferred last step of a closed connection (reap). */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../gateway/util/alloc.h"
#include "stream_internal.h"

#define EP_BATCH 64
/* reads of one socket per readiness while each fills its buffer (as libuv) */
#define READ_TURNS 32

static void read_socket(gw_stream_conn *c)
{
    for (int turn = 0; turn < READ_TURNS && c->reading && c->state != GW_STREAM_CLOSING; turn++) {
        uv_buf_t b;
        gw__stream_alloc(c, &b);
        ssize_t n = read(c->fd, b.base, b.len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return;
        gw__stream_input(c, n < 0 ? -errno : n == 0 ? UV_EOF : n, &b);
        if (n <= 0 || (size_t)n < b.len)
            return;
    }
}

static void free_wq(gw_stream_conn *c)
{
    if (!c->wq)
        return;
    c->sl->out_queued -= c->wq->len;
    gw_free(GW_AREA_OUTPUT, c->wq);
    c->wq = NULL;
}

static void write_queued(gw_stream_conn *c)
{
    gw__stream_wq *q = c->wq;
    ssize_t n = send(c->fd, q->data + q->head, q->len, MSG_NOSIGNAL);
    if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
        return;
    if (n < 0) {
        gw_stream_close(c, "connection_lost", true);
        return;
    }
    q->head += (uint32_t)n;
    q->len -= (uint32_t)n;
    c->sl->out_queued -= (size_t)n;
    q->progress = uv_now(&c->sl->loop->uv);
    if (q->len == 0) {
        free_wq(c);
        gw__stream_io_update(c);
    }
    gw__stream_out_drained(c);
}

static void on_ep(uv_poll_t *p, int status, int events)
{
    gw_stream_loop *sl = p->data;
    (void)status;
    (void)events;
    struct epoll_event ev[EP_BATCH];
    int n = epoll_wait(sl->ep, ev, EP_BATCH, 0);
    /* A connection closed by an earlier one's event stays allocated (reaped on the next
     * iteration) and is skipped as closing. */
    for (int i = 0; i < n; i++) {
        gw_stream_conn *c = ev[i].data.ptr;
        uint32_t e = ev[i].events;
        if (c->state != GW_STREAM_CLOSING && c->wq && (e & (EPOLLOUT | EPOLLERR | EPOLLHUP)))
            write_queued(c);
        if (c->state != GW_STREAM_CLOSING && c->reading && (e & (EPOLLIN | EPOLLERR | EPOLLHUP)))
            read_socket(c);
    }
}

static void on_reap(uv_timer_t *t)
{
    gw_stream_loop *sl = t->data;
    while (sl->reap) {
        gw_stream_conn *c = sl->reap;
        sl->reap = (gw_stream_conn *)c->base.index_next;
        c->base.index_next = NULL;
        gw__stream_reap(c);
    }
}

int gw__stream_io_start(gw_stream_loop *sl)
{
    sl->ep = epoll_create1(EPOLL_CLOEXEC);
    if (sl->ep < 0)
        return -errno;
    uv_timer_init(&sl->loop->uv, &sl->reap_kick);
    sl->reap_kick.data = sl;
    int rc = uv_poll_init(&sl->loop->uv, &sl->ep_poll, sl->ep);
    if (rc)
        return rc;
    sl->ep_poll.data = sl;
    return uv_poll_start(&sl->ep_poll, UV_READABLE, on_ep);
}

void gw__stream_io_close(gw_stream_loop *sl)
{
    on_reap(&sl->reap_kick);
    if (sl->ep_poll.loop && !uv_is_closing((uv_handle_t *)&sl->ep_poll))
        uv_close((uv_handle_t *)&sl->ep_poll, NULL);
    if (sl->reap_kick.loop && !uv_is_closing((uv_handle_t *)&sl->reap_kick))
        uv_close((uv_handle_t *)&sl->reap_kick, NULL);
}

void gw__stream_io_free(gw_stream_loop *sl)
{
    on_reap(&sl->reap_kick);
    if (sl->ep >= 0)
        close(sl->ep);
    sl->ep = -1;
}

void gw__stream_io_attach(gw_stream_conn *c, int fd)
{
    c->fd = fd;
    int one = 1;
    (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

void gw__stream_io_update(gw_stream_conn *c)
{
    if (c->fd < 0)
        return;
    uint8_t want = (uint8_t)((c->reading ? EPOLLIN : 0) | (c->wq ? EPOLLOUT : 0));
    if (want == c->ev)
        return;
    struct epoll_event e = {.events = want, .data.ptr = c};
    int op = c->ev == 0 ? EPOLL_CTL_ADD : want == 0 ? EPOLL_CTL_DEL : EPOLL_CTL_MOD;
    if (epoll_ctl(c->sl->ep, op, c->fd, &e) == 0 || op == EPOLL_CTL_DEL)
        c->ev = want;
}

void gw__stream_write(gw_stream_conn *c, const uint8_t *p, size_t len)
{
    if (!len || c->fd < 0)
        return;
    size_t queued = gw__stream_queued(c);
    ssize_t n = 0;
    if (!queued) {
        do
            n = send(c->fd, p, len, MSG_NOSIGNAL);
        while (n < 0 && errno == EINTR);
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            n = 0;
    }
    if (n < 0) {
        c->out_len = 0;
        gw_stream_close(c, "connection_lost", true);
        return;
    }
    if ((size_t)n == len)
        return;
    size_t rest = len - (size_t)n;
    if (queued + rest > c->sl->out.hard_limit) {
        gw__stream_out_overflow(c, "hard_limit");
        return;
    }
    /* The loop's bound: the connection that would take the loop's queued output past it is
     * closed (a peer that reads keeps up and queues nothing). */
    if (c->sl->out_queued + rest > c->sl->out.loop_limit) {
        gw__stream_out_overflow(c, "loop_limit");
        return;
    }
    gw__stream_wq *q = c->wq;
    if (q && q->head + q->len + rest > q->cap) {
        memmove(q->data, q->data + q->head, q->len);
        q->head = 0;
    }
    if (!q || q->len + rest > q->cap) {
        size_t cap = q ? q->cap : 0;
        if (cap < 4096)
            cap = 4096;
        while (cap < queued + rest)
            cap *= 2;
        q = gw_realloc(GW_AREA_OUTPUT, c->wq, sizeof(*q) + cap);
        if (!q) {
            gw_stream_close(c, "connection_lost", false);
            return;
        }
        if (!c->wq) {
            memset(q, 0, sizeof(*q));
            q->progress = uv_now(&c->sl->loop->uv);
        }
        q->cap = (uint32_t)cap;
        c->wq = q;
    }
    memcpy(q->data + q->head + q->len, p + n, rest);
    q->len += (uint32_t)rest;
    c->sl->out_queued += rest;
    gw__stream_io_update(c);
}

void gw__stream_io_shut(gw_stream_conn *c)
{
    gw_stream_loop *sl = c->sl;
    free_wq(c);
    c->reading = false;
    if (c->fd >= 0) {
        if (c->ev)
            epoll_ctl(sl->ep, EPOLL_CTL_DEL, c->fd, &(struct epoll_event){0});
        c->ev = 0;
        close(c->fd);
        c->fd = -1;
    }
    /* (a stream connection is in no datagram session index: that link is free) */
    c->base.index_next = (gw_session *)sl->reap;
    sl->reap = c;
    if (sl->reap_kick.loop && !uv_is_closing((uv_handle_t *)&sl->reap_kick))
        uv_timer_start(&sl->reap_kick, on_reap, 0, 0);
}

/* stream_conn.c: one byte-stream device connection: reading on the loop's shared buffer with
 * partial input kept per connection, pauses (back-pressure, acks in flight, output over high
 * water), the ordered ack ring completed by the store, output flush with its bounds (closed with
 * output_overflow past the hard limit or when stalled), accept (with the PROXY v2 header first on a
 * proxy_protocol listener) and close. The adapter's callbacks do the rest. */
#include "stream_conn.h"

#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../../gateway/util/alloc.h"
#include "../../gateway/core/limits.h"
#include "../../gateway/core/listen.h"
#include "../../gateway/util/metrics.h"
#include "stream_internal.h"

#define IN_MIN 4096

static gw_stream_conn *conn_of(gw_session *s)
{
    return (gw_stream_conn *)s;
}

void gw_stream_peer(const gw_stream_conn *c, char *buf, size_t cap)
{
    if (c->src.sa.sa_family != AF_UNSPEC) { /* (the PROXY header's source, if any) */
        gw_sockaddr_str(&c->src.sa, buf, cap);
        return;
    }
    struct sockaddr_storage ss;
    socklen_t len = sizeof(ss);
    if (c->fd < 0 || getpeername(c->fd, (struct sockaddr *)&ss, &len) != 0)
        ss.ss_family = AF_UNSPEC;
    gw_sockaddr_str((struct sockaddr *)&ss, buf, cap);
}

const gw_config *gw_stream_cfg(const gw_stream_conn *c)
{
    return c->sl->loop->cfg;
}

void gw__stream_peer(gw_session *s, char *buf, size_t cap)
{
    gw_stream_peer(conn_of(s), buf, cap);
}

/* ---- output ---- */

size_t gw_stream_unsent(const gw_stream_conn *c)
{
    return gw__stream_queued(c) + c->out_len;
}

int gw_stream_out_reserve(gw_stream_conn *c, size_t n)
{
    if (c->out_oom)
        return GW_ENOMEM;
    if (c->out_len + n <= c->out_cap)
        return 0;
    if (gw_stream_unsent(c) + n > c->sl->out.hard_limit || c->out_overflow) {
        /* the flush closes the connection (output_overflow) */
        c->out_overflow = true;
        gw_session_mark_dirty(&c->base);
        return GW_ETOOBIG;
    }
    size_t cap = c->out_cap ? c->out_cap : 256;
    while (cap < c->out_len + n)
        cap *= 2;
    uint8_t *o = gw_realloc(GW_AREA_OUTPUT, c->out, cap);
    if (!o) { /* a gap in a byte stream: later bytes (an ack after a lost CONNACK) must not go */
        c->out_oom = true;
        gw_session_mark_dirty(&c->base);
        return GW_ENOMEM;
    }
    c->out = o;
    c->out_cap = (uint32_t)cap;
    return 0;
}

void gw_stream_out(gw_stream_conn *c, const uint8_t *p, size_t n)
{
    if (gw_stream_out_reserve(c, n))
        return; /* over the hard limit or out of memory: the flush closes the connection */
    memcpy(c->out + c->out_len, p, n);
    c->out_len += (uint32_t)n;
    gw_session_mark_dirty(&c->base);
}

/* Lists a connection paused for output whose output fell below low water: the out_kick timer
 * resumes it on the next iteration (not from inside a flush or a write callback). */
void gw__stream_out_drained(gw_stream_conn *c)
{
    gw_stream_loop *sl = c->sl;
    if (!c->paused_out || c->out_listed || c->state == GW_STREAM_CLOSING ||
        gw_stream_unsent(c) >= sl->out.low_water)
        return;
    c->out_listed = true;
    c->onext = sl->out_ready;
    sl->out_ready = c;
    gw_session_retain(&c->base);
    if (!uv_is_closing((uv_handle_t *)&sl->out_kick))
        uv_timer_start(&sl->out_kick, gw__stream_out_kick, 0, 0);
}

/* Closes a connection whose output passed the hard limit or stalled: counted and logged. */
void gw__stream_out_overflow(gw_stream_conn *c, const char *why)
{
    if (c->state == GW_STREAM_CLOSING)
        return;
    size_t unsent = gw_stream_unsent(c);
    c->out_len = 0; /* nothing more for this peer */
    gw_metric_inc(c->sl->out.overflow_metric);
    GW_STREAM_LOG(GW_LOG_WARN, c, "output backed up; closing",
                  "reason=output_overflow why=%s unsent=%zu hard_limit=%u loop_queued=%zu", why,
                  unsent, c->sl->out.hard_limit, c->sl->out_queued);
    gw_stream_close(c, "output_overflow", true);
}

static void pause_for_output(gw_stream_conn *c)
{
    if (!c->paused_out) {
        c->paused_out = true;
        gw_metric_inc(c->sl->out.paused_metric);
    }
    gw__stream_stop_reading(c);
}

/* Writes what is pending: sent now (no copy), the rest queued (stream_io.c).
 * Output over the hard limit closes the connection; over high water, it stops being read. */
void gw_stream_flush(gw_stream_conn *c)
{
    if (c->out_overflow && c->state != GW_STREAM_CLOSING) {
        gw__stream_out_overflow(c, "hard_limit");
        goto done;
    }
    if (c->out_oom && c->state != GW_STREAM_CLOSING) {
        c->out_len = 0;
        GW_STREAM_LOG(GW_LOG_WARN, c, "output lost to out of memory; closing",
                      "reason=out_of_memory");
        gw_stream_close(c, "out_of_memory", false);
        goto done;
    }
    if ((!c->out_len && !gw__stream_tls_held(c)) || c->fd < 0)
        goto done;
    if (c->tls) { /* the bounds below apply to the ciphertext */
        const uint8_t *p;
        size_t n;
        if (gw__stream_tls_encrypt(c, &p, &n) != 0) {
            c->out_len = 0;
            gw_stream_close(c, "out_of_memory", false);
            goto done;
        }
        gw__stream_write(c, p, n);
        c->sl->tls_out_len = 0;
        if (c->sl->tls_out_cap > 262144) { /* a large flush: do not keep its scratch */
            gw_free(GW_AREA_OUTPUT, c->sl->tls_out);
            c->sl->tls_out = NULL;
            c->sl->tls_out_cap = 0;
        }
    } else {
        gw__stream_write(c, c->out, c->out_len);
    }
done:
    /* An idle connection keeps no output buffer: what was not written went to the write queue. */
    c->out_len = 0;
    gw_free(GW_AREA_OUTPUT, c->out);
    c->out = NULL;
    c->out_cap = 0;
    if (c->state == GW_STREAM_CLOSING)
        return;
    if (gw_stream_unsent(c) > c->sl->out.high_water)
        pause_for_output(c);
    else if (c->paused_out)
        gw__stream_out_drained(c); /* paused by gw_stream_out_full, and the kernel took it all */
}

void gw__stream_flush(gw_session *s)
{
    gw_stream_flush(conn_of(s));
}

/* ---- acks in arrival order ---- */

/* Room for one more entry in the ring (allocated, or doubled). */
static int ring_room(gw_stream_conn *c)
{
    gw__stream_acks *a = c->ak;
    if (!a || c->ack_n == a->cap) {
        uint32_t ncap = a ? a->cap * 2 : 16;
        gw__stream_acks *n = gw_malloc(GW_AREA_SESSION, sizeof(*n) + ncap * sizeof(uint32_t));
        if (!n)
            return GW_ENOMEM;
        if (a) {
            *n = *a;
            for (uint32_t i = 0; i < c->ack_n; i++)
                n->ring[i] = a->ring[(a->head + i) & (a->cap - 1)];
            gw_free(GW_AREA_SESSION, a);
        } else {
            memset(n, 0, sizeof(*n));
        }
        n->cap = ncap;
        n->head = 0;
        c->ak = n;
    }
    return 0;
}

static int ring_push(gw_stream_conn *c, uint32_t entry, uint32_t *seq)
{
    if (ring_room(c))
        return GW_ENOMEM;
    gw__stream_acks *a = c->ak;
    a->ring[(a->head + c->ack_n) & (a->cap - 1)] = entry;
    *seq = c->ack_seq + c->ack_n;
    c->ack_n++;
    if (c->ack_n >= c->sl->max_inflight)
        c->paused_inflight = true;
    return 0;
}

static void close_after_eof(gw_stream_conn *c);

/* Sends every ready ack at the head of the ring. */
static void ack_drain(gw_stream_conn *c)
{
    gw__stream_acks *a = c->ak;
    while (c->ack_n && c->state != GW_STREAM_CLOSING) {
        uint32_t e = a->ring[a->head];
        if (!(e & GW_STREAM_ACK_READY))
            break;
        if (e & GW_STREAM_ACK_BYTES) {
            uint32_t n = e & GW_STREAM_ACK_MASK;
            if (n) /* empty: a record of a frame acked as a whole (tcp_conn.c) */
                gw_stream_out(c, a->b + a->b_head, n);
            a->b_head += n;
            a->b_len -= n;
        } else {
            c->sl->ops->send_ack(c, e & GW_STREAM_ACK_MASK);
        }
        a->head = (a->head + 1) & (a->cap - 1);
        c->ack_n--;
        c->ack_seq++;
    }
    if (c->ack_n == 0 && a) { /* an idle connection keeps no ack memory */
        gw_free(GW_AREA_SESSION, a->b);
        gw_free(GW_AREA_SESSION, a);
        c->ak = NULL;
    }
    if (c->paused_inflight && c->ack_n < (c->sl->max_inflight + 1) / 2) {
        c->paused_inflight = false;
        if (!c->busy) /* inside process: its loop goes on by itself */
            gw__stream_resume(c);
    }
    if (!c->busy)
        close_after_eof(c);
}

int gw_stream_ack_push(gw_stream_conn *c, uint32_t entry, bool ready, uint32_t *seq)
{
    int rc = ring_push(c, (entry & GW_STREAM_ACK_MASK) | (ready ? GW_STREAM_ACK_READY : 0), seq);
    if (rc == 0 && ready)
        ack_drain(c);
    return rc;
}

int gw_stream_ack_push_bytes(gw_stream_conn *c, const uint8_t *p, size_t n, bool ready,
                             uint32_t *seq)
{
    if (n > GW_STREAM_ACK_MASK)
        return GW_ETOOBIG;
    if (ring_room(c))
        return GW_ENOMEM;
    gw__stream_acks *a = c->ak;
    if (a->b_head + a->b_len + n > a->b_cap) {
        if (a->b_head) { /* compact first */
            memmove(a->b, a->b + a->b_head, a->b_len);
            a->b_head = 0;
        }
        if (a->b_len + n > a->b_cap) {
            size_t cap = a->b_cap ? a->b_cap : 64;
            while (cap < a->b_len + n)
                cap *= 2;
            uint8_t *b = gw_realloc(GW_AREA_SESSION, a->b, cap);
            if (!b)
                return GW_ENOMEM;
            a->b = b;
            a->b_cap = (uint32_t)cap;
        }
    }
    /* (room was made above: the push cannot fail) */
    ring_push(c, (uint32_t)n | GW_STREAM_ACK_BYTES | (ready ? GW_STREAM_ACK_READY : 0), seq);
    if (n) /* an empty entry (a record of a frame acked as a whole) may come before any buffer */
        memcpy(a->b + a->b_head + a->b_len, p, n);
    a->b_len += (uint32_t)n;
    if (ready)
        ack_drain(c);
    return 0;
}

void gw_stream_ack_ready(gw_stream_conn *c, uint32_t seq)
{
    uint32_t off = seq - c->ack_seq;
    if (off < c->ack_n)
        c->ak->ring[(c->ak->head + off) & (c->ak->cap - 1)] |= GW_STREAM_ACK_READY;
    ack_drain(c);
}

void gw_stream_ack_or(gw_stream_conn *c, uint32_t seq, uint32_t bits)
{
    uint32_t off = seq - c->ack_seq;
    if (off < c->ack_n)
        c->ak->ring[(c->ak->head + off) & (c->ak->cap - 1)] |= bits & GW_STREAM_ACK_MASK;
}

void gw__stream_committed(gw_session *s, gw_event *ev)
{
    gw_stream_conn *c = conn_of(s);
    if (c->state == GW_STREAM_CLOSING)
        return;
    if (ev->status != 0) { /* the store gave up: never acknowledge; the device will resend */
        gw_stream_close(c, "store_error", false);
        return;
    }
    gw_stream_ack_ready(c, ev->token);
}

/* ---- reading ---- */

bool gw_stream_out_full(gw_stream_conn *c)
{
    if (c->paused_out)
        return true;
    if (gw_stream_unsent(c) < c->sl->out.high_water)
        return false;
    pause_for_output(c);
    return true;
}

bool gw_stream_hold(gw_stream_conn *c)
{
    if (c->paused_inflight || gw_stream_out_full(c))
        return true;
    if (gw_store_full(c->sl->loop->rt->store)) {
        c->paused_bp = true;
        if (c->state == GW_STREAM_NEW && c->deadline) {
            /* its login/CONNECT waits for the store, not for the peer: the clock stops */
            uint64_t now = uv_now(&c->sl->loop->uv);
            uint64_t left = c->deadline > now ? c->deadline - now : 1;
            c->held_ms = left < UINT32_MAX ? (uint32_t)left : UINT32_MAX;
            c->deadline = 0;
        }
        gw_loop_note_backpressure(c->sl->loop);
        return true;
    }
    return false;
}

static size_t run_process(gw_stream_conn *c, const uint8_t *buf, size_t len)
{
    c->busy = true;
    size_t used = c->sl->ops->process(c, buf, len);
    c->busy = false;
    return used;
}

static int keep_input(gw_stream_conn *c, const uint8_t *p, size_t n)
{
    if (n > c->in_cap) {
        size_t cap = n < IN_MIN ? IN_MIN : n;
        uint8_t *b = gw_malloc(GW_AREA_SESSION, cap);
        if (!b)
            return GW_ENOMEM;
        gw_free(GW_AREA_SESSION, c->in);
        c->in = b;
        c->in_cap = (uint32_t)cap;
    }
    memmove(c->in, p, n);
    c->in_len = (uint32_t)n;
    return 0;
}

static void release_input(gw_stream_conn *c)
{
    if (c->in_len == 0 && c->in) {
        gw_free(GW_AREA_SESSION, c->in);
        c->in = NULL;
        c->in_cap = 0;
    }
}

static bool must_stop_reading(const gw_stream_conn *c)
{
    return c->paused_bp || c->paused_inflight || c->paused_out || c->eof ||
           c->state == GW_STREAM_CLOSING;
}

/* The peer half-closed (EOF) while acks were pending: once everything it sent has been processed
 * and acknowledged, the connection ends as lost (a will applies). */
static void close_after_eof(gw_stream_conn *c)
{
    if (c->eof && c->ack_n == 0 && !c->paused_bp && c->state != GW_STREAM_CLOSING)
        gw_stream_close(c, "connection_lost", true);
}

static void stop_reading(gw_stream_conn *c)
{
    if (c->reading) {
        c->reading = false;
        gw__stream_io_update(c);
    }
    if (c->paused_bp && !c->pause_listed && c->state != GW_STREAM_CLOSING) {
        c->pause_listed = true;
        c->pnext = c->sl->paused;
        c->sl->paused = c;
        gw_session_retain(&c->base);
    }
}

void gw__stream_alloc(gw_stream_conn *c, uv_buf_t *buf)
{
    if (c->in_len && !c->tls) {
        /* (TLS: ciphertext goes to OpenSSL, c->in holds plaintext) */ /* continue a partial unit in
                                                                          the connection's own
                                                                          buffer */
        size_t need = c->in_need > c->in_len ? c->in_need : c->in_len + IN_MIN;
        if (need > c->in_cap) {
            uint8_t *b = gw_realloc(GW_AREA_SESSION, c->in, need);
            if (b) {
                c->in = b;
                c->in_cap = (uint32_t)need;
            }
        }
        *buf = uv_buf_init((char *)c->in + c->in_len, c->in_cap - c->in_len);
        return;
    }
    gw_loop *l = c->sl->loop;
    *buf = uv_buf_init(l->rbuf, (unsigned)l->rbuf_size);
}

void gw__stream_peer_done(gw_stream_conn *c)
{
    if (c->state == GW_STREAM_OPEN && (c->ack_n || c->paused_bp)) {
        /* Half-closed: it may still read; answer what it sent before closing. */
        GW_STREAM_LOG(GW_LOG_DEBUG, c, "peer closed its side; finishing acks", NULL);
        c->eof = true;
        stop_reading(c);
        return;
    }
    GW_STREAM_LOG(GW_LOG_DEBUG, c, "peer closed", NULL);
    gw_stream_close(c, "connection_lost", true);
}

static void proxy_input(gw_stream_conn *c, const uint8_t *buf, size_t nread);

void gw__stream_input(gw_stream_conn *c, ssize_t nread, const uv_buf_t *buf)
{
    if (nread < 0 && c->tls)
        gw__stream_tls_eof(c);
    if (nread < 0 && c->proxy_wait && c->in_len) {
        gw__stream_proxy_refused(c, GW_PROXY_ERR_TRUNCATED);
        return;
    }
    if (nread < 0) {
        if (nread == UV_EOF) {
            gw__stream_peer_done(c);
            return;
        }
        GW_STREAM_LOG(GW_LOG_INFO, c, "read error", "error=\"%s\"", uv_strerror((int)nread));
        gw_stream_close(c, "connection_lost", true);
        return;
    }
    if (nread == 0)
        return;
    size_t used;
    if (c->proxy_wait) {
        proxy_input(c, (const uint8_t *)buf->base, (size_t)nread);
    } else if (c->tls) {
        gw__stream_tls_input(c, (const uint8_t *)buf->base, (size_t)nread);
    } else if (buf->base == c->sl->loop->rbuf) { /* fresh data in the loop's shared buffer */
        used = run_process(c, (const uint8_t *)buf->base, (size_t)nread);
        if (c->state != GW_STREAM_CLOSING && used < (size_t)nread &&
            keep_input(c, (const uint8_t *)buf->base + used, (size_t)nread - used)) {
            gw_stream_close(c, "out_of_memory", false);
            return;
        }
    } else {
        c->in_len += (uint32_t)nread;
        used = run_process(c, c->in, c->in_len);
        if (c->state != GW_STREAM_CLOSING) {
            memmove(c->in, c->in + used, c->in_len - used);
            c->in_len -= (uint32_t)used;
        }
    }
    if (c->state == GW_STREAM_CLOSING)
        return;
    release_input(c);
    if (must_stop_reading(c))
        stop_reading(c);
}

void gw__stream_feed(gw_stream_conn *c, const uint8_t *p, size_t n)
{
    if (c->state == GW_STREAM_CLOSING)
        return;
    if (c->in_len == 0) {
        size_t used = run_process(c, p, n);
        if (c->state != GW_STREAM_CLOSING && used < n && keep_input(c, p + used, n - used))
            gw_stream_close(c, "out_of_memory", false);
        return;
    }
    if (c->in_len + n > c->in_cap) {
        size_t cap = c->in_cap ? c->in_cap : IN_MIN;
        while (cap < c->in_len + n)
            cap *= 2;
        uint8_t *b = gw_realloc(GW_AREA_SESSION, c->in, cap);
        if (!b) {
            gw_stream_close(c, "out_of_memory", false);
            return;
        }
        c->in = b;
        c->in_cap = (uint32_t)cap;
    }
    memcpy(c->in + c->in_len, p, n);
    c->in_len += (uint32_t)n;
    size_t used = run_process(c, c->in, c->in_len);
    if (c->state != GW_STREAM_CLOSING) {
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= (uint32_t)used;
    }
}

static void start_reading(gw_stream_conn *c)
{
    if (!c->reading && !must_stop_reading(c) && !c->sl->stopping && c->fd >= 0) {
        c->reading = true;
        gw__stream_io_update(c);
    }
}

/* Back-pressure lifted (or acks drained): parse what was held back, then read again. */
void gw__stream_resume(gw_stream_conn *c)
{
    if (c->state == GW_STREAM_CLOSING)
        return;
    c->paused_bp = false;
    if (c->held_ms) { /* a held login/CONNECT: its clock runs again (processing may reset it) */
        c->deadline = uv_now(&c->sl->loop->uv) + c->held_ms;
        c->held_ms = 0;
    }
    if (c->open_held) { /* opened() waited for the store: again now (it may wait again) */
        c->open_held = false;
        c->sl->ops->opened(c);
        if (c->state == GW_STREAM_CLOSING)
            return;
    }
    if (c->in_len) {
        size_t used = run_process(c, c->in, c->in_len);
        if (c->state == GW_STREAM_CLOSING)
            return;
        memmove(c->in, c->in + used, c->in_len - used);
        c->in_len -= (uint32_t)used;
        release_input(c);
    }
    if (must_stop_reading(c))
        stop_reading(c);
    else
        start_reading(c);
    close_after_eof(c);
}

void gw__stream_out_kick(uv_timer_t *t)
{
    gw_stream_loop *sl = t->data;
    gw_stream_conn *c = sl->out_ready;
    sl->out_ready = NULL;
    while (c) {
        gw_stream_conn *next = c->onext;
        c->onext = NULL;
        c->out_listed = false;
        if (c->state != GW_STREAM_CLOSING && c->paused_out &&
            gw_stream_unsent(c) < sl->out.low_water) {
            c->paused_out = false;
            if (!c->paused_bp) /* else the store's resume (resume_all) reads it again */
                gw__stream_resume(c);
        }
        gw_session_release(&c->base);
        c = next;
    }
}

void gw__stream_out_sweep(gw_stream_conn *c, uint64_t now)
{
    gw__stream_wq *q = c->wq;
    if (!q) /* nothing queued: no stall */
        return;
    if (q->len < q->seen)
        q->progress = now;
    q->seen = q->len;
    if (now - q->progress >= c->sl->out.stall_timeout_ms)
        gw__stream_out_overflow(c, "stalled");
}

void gw__stream_stop_reading(gw_stream_conn *c)
{
    if (c->reading) {
        c->reading = false;
        gw__stream_io_update(c);
    }
}

/* ---- session ops, accept, close ---- */

/* Last reference gone (any thread, maybe after the loop state is freed): the adapter's ops are
 * reached through the session ops embedded first in them, not through c->sl. */
void gw__stream_destroy(gw_session *s)
{
    gw_stream_conn *c = conn_of(s);
    const gw_stream_ops *ops = (const gw_stream_ops *)s->ops;
    if (ops->destroy)
        ops->destroy(c);
    gw_free(GW_AREA_SESSION, c->in);
    gw_free(GW_AREA_OUTPUT, c->out);
    gw_free(GW_AREA_OUTPUT, c->wq);
    if (c->ak)
        gw_free(GW_AREA_SESSION, c->ak->b);
    gw_free(GW_AREA_SESSION, c->ak);
    gw_free(GW_AREA_SESSION, c);
}

void gw__stream_kick(gw_session *s)
{
    gw_stream_conn *c = conn_of(s);
    if (c->state == GW_STREAM_CLOSING)
        return;
    if (s->close_reason) { /* a reload removed or changed the device */
        GW_STREAM_LOG(GW_LOG_INFO, c, "closing: the configuration changed", "reason=%s",
                      s->close_reason);
        gw_stream_close(c, s->close_reason, false);
        return;
    }
    GW_STREAM_LOG(GW_LOG_INFO, c, "closing: a new connection took the session over", NULL);
    gw_stream_close(c, "takeover", false);
}

void gw__stream_reap(gw_stream_conn *c)
{
    gw_stream_loop *sl = c->sl;
    if (c->in_list) {
        if (c->prev)
            c->prev->next = c->next;
        else
            sl->conns = c->next;
        if (c->next)
            c->next->prev = c->prev;
        c->in_list = false;
    }
    gw_metric_add(GW_M_CONN_ACTIVE, -1);
    if (c->tls)
        gw__stream_tls_free(c); /* the session's memory goes now, not with the last reference */
    if (c->admitted)
        gw_limits_release(sl->loop->rt->limits, &c->src.sa);
    gw_session_release(&c->base);
}

void gw_stream_close(gw_stream_conn *c, const char *reason, bool will)
{
    if (c->state == GW_STREAM_CLOSING)
        return;
    bool applied = c->sl->ops->closing ? c->sl->ops->closing(c, reason, will) : false;
    c->state = GW_STREAM_CLOSING;
    gw__stream_stop_reading(c);
    if (c->base.dev && strcmp(reason, "refused") != 0) {
        gw_session_offline(&c->base, reason, applied);
        GW_STREAM_LOG(GW_LOG_DEBUG, c, "disconnected", "reason=%s", reason);
    }
    if (c->out_len)
        gw_stream_flush(c);
    if (c->tls)
        gw__stream_tls_shutdown(c);
    gw__stream_io_shut(c);
}

/* A refused connection is logged at most once a second per loop (a flood must not flood the log);
 * every one is counted. */
static void limited_log(gw_stream_conn *c, const char *msg, const char *reason)
{
    uint64_t now = uv_now(&c->sl->loop->uv);
    if (now - c->sl->last_limit_log < 1000 && c->sl->last_limit_log)
        return;
    c->sl->last_limit_log = now;
    GW_STREAM_LOG(GW_LOG_WARN, c, msg, "reason=%s", reason);
}

void gw_stream_auth_failed(gw_stream_conn *c)
{
    gw_limits *lim = c->sl->loop->rt->limits;
    if (lim && c->admitted)
        gw_limits_auth_failed(lim, &c->src.sa, uv_hrtime() / 1000000);
}

void gw_stream_auth_ok(gw_stream_conn *c)
{
    gw_limits *lim = c->sl->loop->rt->limits;
    if (lim && c->admitted)
        gw_limits_auth_ok(lim, &c->src.sa);
}

/* The accepted socket, taken from the listener: a connection has no libuv handle (stream_io.c),
 * so it is not uv_accept'ed into one. libuv stops watching a listener whose callback returned
 * without uv_accept (it waits for that call); taking the pending fd (a libuv struct field, unix)
 * keeps it going. libuv accepted it non-blocking and close-on-exec (accept4). */
static int take_accepted(uv_stream_t *server)
{
    int fd = server->accepted_fd;
    server->accepted_fd = -1;
    return fd;
}

/* Closes a connection the adapter never saw (nothing to send, no offline event). */
static void refuse(gw_stream_conn *c)
{
    c->state = GW_STREAM_CLOSING;
    gw__stream_io_shut(c);
}

static void list_conn(gw_stream_conn *c)
{
    gw_stream_loop *sl = c->sl;
    if (c->in_list)
        return;
    c->next = sl->conns;
    if (sl->conns)
        sl->conns->prev = c;
    sl->conns = c;
    c->in_list = true;
}

/* The per-source limits on c->src (the socket's peer, or the PROXY header's source), the TLS
 * listener's handshake rate; then the handshake, or the adapter's first deadline and reading. */
static void admit(gw_stream_conn *c, gw_stream_tls *tls)
{
    gw_stream_loop *sl = c->sl;
    gw_limits *lim = sl->loop->rt->limits;
    if (lim && c->src.sa.sa_family != AF_UNSPEC) {
        gw_limit_verdict v = gw_limits_admit(lim, &c->src.sa, uv_hrtime() / 1000000);
        if (v != GW_LIMIT_OK) {
            limited_log(c, "connection refused by a per-source limit", gw_limit_reason(v));
            refuse(c);
            return;
        }
        c->admitted = true;
    }
    if (tls && !gw__stream_tls_admit(tls)) { /* the listener's handshake rate */
        limited_log(c, "TLS handshake refused: the listener's handshake rate is exceeded",
                    "handshake_rate");
        refuse(c);
        return;
    }
    gw_metric_inc(GW_M_CONN_ACCEPTED);
    list_conn(c);
    if (tls) { /* the adapter sees the connection once the handshake is done */
        if (gw__stream_tls_open(c, tls) != 0) {
            gw_stream_close(c, "out_of_memory", false);
            return;
        }
        start_reading(c);
        return;
    }
    gw__stream_opened(c);
}

static void proxy_input(gw_stream_conn *c, const uint8_t *buf, size_t nread);

void gw__stream_on_connection(uv_stream_t *server, int status)
{
    gw_stream_server *srv = server->data;
    gw_stream_loop *sl = srv->sl;
    const gw_config *cfg = sl->loop->rt->cfg;
    if (status < 0 || sl->stopping)
        return;
    int fd = take_accepted(server);
    if (fd < 0)
        return;
    gw_stream_conn *c = gw_calloc(GW_AREA_SESSION, 1, sl->ops->conn_size);
    if (!c) { /* no memory for a new connection: refused by closing the socket */
        close(fd);
        return;
    }
    gw_session_init(&c->base, &sl->ops->session, sl->loop);
    c->sl = sl;
    c->listener = srv->index;
    c->serve = srv->serve;
    gw__stream_io_attach(c, fd);
    gw_metric_inc(GW_M_CONN_ACTIVE);
    if (gw_metric_get(GW_M_CONN_ACTIVE) > (int64_t)cfg->max_connections) {
        gw_metric_inc(GW_M_CONN_REFUSED);
        GW_STREAM_LOG(GW_LOG_WARN, c, "max_connections reached; connection refused", "max=%u",
                      cfg->max_connections);
        c->state = GW_STREAM_CLOSING;
        gw__stream_io_shut(c);
        return;
    }
    socklen_t slen = sizeof(c->src);
    if (getpeername(fd, &c->src.sa, &slen) != 0)
        c->src.sa.sa_family = AF_UNSPEC;
    if (srv->proxy) {
        /* Only the listed proxies may speak; the per-source limits wait for the header's source
         * (the proxy itself is not one device source). */
        if (!gw_proxy_net_match(srv->proxy->from, srv->proxy->n, &c->src.sa)) {
            gw__stream_proxy_refused(c, GW_PROXY_ERR_SOURCE);
            return;
        }
        list_conn(c);
        c->proxy_wait = true;
        c->deadline = uv_now(&sl->loop->uv) + srv->proxy->timeout_ms;
        start_reading(c);
        return;
    }
    admit(c, srv->tls);
}

/* The header's rest: the device's first bytes (TLS: ciphertext). */
static void proxy_input(gw_stream_conn *c, const uint8_t *buf, size_t nread)
{
    const uint8_t *p = buf;
    size_t n = nread;
    if (buf != (const uint8_t *)c->sl->loop->rbuf) { /* read into c->in after a partial header */
        c->in_len += (uint32_t)nread;
        p = c->in;
        n = c->in_len;
    }
    gw_proxy_hdr h;
    gw_proxy_err e;
    int r = gw_proxy_parse(p, n, &h, &e);
    if (r < 0) {
        gw__stream_proxy_refused(c, e);
        return;
    }
    if (r == 0) { /* (n < GW_PROXY_MAX: the parser refuses anything longer) */
        if (p != c->in && keep_input(c, p, n)) {
            gw_stream_close(c, "out_of_memory", false);
            return;
        }
        c->in_need = GW_PROXY_MAX;
        return;
    }
    char proxy[64];
    gw_sockaddr_str(&c->src.sa, proxy, sizeof(proxy));
    if (h.has_src)
        memcpy(&c->src, &h.src, sizeof(c->src));
    c->proxy_wait = false;
    c->in_need = 0;
    c->deadline = 0;
    GW_STREAM_LOG(GW_LOG_DEBUG, c, "PROXY header", "proxy=%s local=%s", proxy,
                  h.has_src ? "false" : "true");
    uint8_t *held = NULL; /* the bytes after the header, out of c->in (TLS: c->in is plaintext) */
    if (p == c->in) {
        held = c->in;
        c->in = NULL;
        c->in_len = c->in_cap = 0;
    }
    /* only start-up listeners have proxy_protocol: c->listener indexes sl->servers */
    admit(c, c->sl->servers[c->listener].tls);
    size_t rest = n - (size_t)r;
    if (rest && c->state != GW_STREAM_CLOSING) {
        if (c->tls)
            gw__stream_tls_input(c, p + r, rest);
        else
            gw__stream_feed(c, p + r, rest);
    }
    gw_free(GW_AREA_SESSION, held);
}

void gw__stream_proxy_refused(gw_stream_conn *c, gw_proxy_err e)
{
    gw__stream_proxy_count(e);
    limited_log(c, "PROXY protocol header refused; closing", gw_proxy_err_name(e));
    refuse(c);
}

void gw__stream_opened(gw_stream_conn *c)
{
    c->deadline = 0;
    if (c->sl->ops->opened)
        c->sl->ops->opened(c);
    if (c->state == GW_STREAM_CLOSING)
        return;
    if (must_stop_reading(c))
        stop_reading(c); /* opened() waits for the store: listed to be resumed */
    else
        start_reading(c);
}

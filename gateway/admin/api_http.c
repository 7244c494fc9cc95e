/* api_http.c: the request and answer side of api.h over libh2o: accessors, JSON answers and
 * errors, deferred answers (the waiting client watched so that it is seen leaving) and event
 * streams with a bounded unsent buffer. */
#include "api_http.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "../util/alloc.h"
#include "../util/log.h"

/* A whole answer, owned by the request's pool (freed when h2o is done with it). */
typedef struct api_answer {
    h2o_generator_t gen;
    char *buf;
} api_answer;

static void conn_abort(api_conn *c);

/* ---------------------------------------------------------------- small helpers */

static const char *status_text(int st)
{
    switch (st) {
    case 200:
        return "OK";
    case 201:
        return "Created";
    case 202:
        return "Accepted";
    case 204:
        return "No Content";
    case 400:
        return "Bad Request";
    case 401:
        return "Unauthorized";
    case 403:
        return "Forbidden";
    case 404:
        return "Not Found";
    case 405:
        return "Method Not Allowed";
    case 409:
        return "Conflict";
    case 413:
        return "Payload Too Large";
    case 415:
        return "Unsupported Media Type";
    case 429:
        return "Too Many Requests";
    case 500:
        return "Internal Server Error";
    case 501:
        return "Not Implemented";
    case 503:
        return "Service Unavailable";
    case 504:
        return "Gateway Timeout";
    default:
        return "Unknown";
    }
}

static void count_status(int st)
{
    gw_metric_inc(st < 300   ? GW_M_API_2XX
                  : st < 400 ? GW_M_API_3XX
                  : st < 500 ? GW_M_API_4XX
                             : GW_M_API_5XX);
}

char *gw__api_pool_strndup(h2o_req_t *req, const char *s, size_t n)
{
    char *d = h2o_mem_alloc_pool(&req->pool, n + 1);
    memcpy(d, s, n);
    d[n] = 0;
    return d;
}

static int hexv(int c)
{
    return c >= '0' && c <= '9'   ? c - '0'
           : c >= 'a' && c <= 'f' ? c - 'a' + 10
           : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                  : -1;
}

/* Percent-decodes s[0..n) into a pool string; plus: '+' is a space (query). NULL if it is
 * malformed or decodes to a NUL byte. */
char *gw__api_pct_decode(h2o_req_t *req, const char *s, size_t n, bool plus)
{
    char *d = h2o_mem_alloc_pool(&req->pool, n + 1), *o = d;
    for (size_t i = 0; i < n; i++) {
        if (s[i] == '%') {
            int hi = i + 2 < n ? hexv((unsigned char)s[i + 1]) : -1;
            int lo = i + 2 < n ? hexv((unsigned char)s[i + 2]) : -1;
            if (hi < 0 || lo < 0 || (hi == 0 && lo == 0))
                return NULL;
            *o++ = (char)(hi << 4 | lo);
            i += 2;
        } else {
            *o++ = plus && s[i] == '+' ? ' ' : s[i];
        }
    }
    *o = 0;
    return d;
}

/* ---------------------------------------------------------------- answers */

static void answer_dispose(void *p)
{
    api_answer *a = p;
    gw_free(GW_AREA_API, a->buf);
}

/* Sends status with buf[0..len) (taken: a gw_malloc(GW_AREA_API) buffer, or NULL). */
void gw__api_send_answer(h2o_req_t *req, int status, const char *type, char *buf, size_t len)
{
    api_answer *a = h2o_mem_alloc_shared(&req->pool, sizeof(*a), answer_dispose);
    memset(a, 0, sizeof(*a));
    a->buf = buf;
    req->res.status = status;
    req->res.reason = status_text(status);
    req->res.content_length = len;
    if (type)
        h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL, type,
                       strlen(type));
    count_status(status);
    h2o_start_response(req, &a->gen);
    h2o_iovec_t v = h2o_iovec_init(buf ? buf : "", len);
    h2o_send(req, &v, buf ? 1 : 0, H2O_SEND_STATE_FINAL);
}

void gw__api_send_text(h2o_req_t *req, int status, const char *type, const char *s, size_t n)
{
    char *b = n ? gw_malloc(GW_AREA_API, n) : NULL;
    if (n && !b) {
        h2o_send_error_503(req, "Service Unavailable", "out of memory", 0);
        return;
    }
    if (n)
        memcpy(b, s, n);
    gw__api_send_answer(req, status, type, b, n);
}

void gw__api_send_json(h2o_req_t *req, int status, json_t *body)
{
    const size_t flags = JSON_COMPACT;
    size_t n = body ? json_dumpb(body, NULL, 0, flags) : 0;
    char *b = NULL;
    if (body && (n == 0 || n > ANSWER_MAX || !(b = gw_malloc(GW_AREA_API, n + 1)))) {
        static const char oom[] = "{\"error\":\"internal\",\"message\":\"answer too large\"}";
        json_decref(body);
        gw__api_send_text(req, 500, "application/json", oom, sizeof(oom) - 1);
        return;
    }
    if (body) {
        json_dumpb(body, b, n, flags);
        b[n++] = '\n';
    }
    json_decref(body);
    gw__api_send_answer(req, status, "application/json", b, n);
}

static json_t *error_body(const char *code, const char *path, const char *fmt, va_list ap)
{
    char msg[512];
    vsnprintf(msg, sizeof(msg), fmt, ap);
    json_t *o = json_pack("{s:s, s:s}", "error", code, "message", msg);
    if (o && path)
        json_object_set_new(o, "path", json_string(path));
    return o;
}

void gw__api_send_error(h2o_req_t *req, int status, const char *code, const char *path,
                        const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_t *o = error_body(code, path, fmt, ap);
    va_end(ap);
    gw__api_send_json(req, status, o);
}

/* ---------------------------------------------------------------- api.h: the request */

const char *gw_api_method(const gw_api_req *r)
{
    return r->method;
}

const char *gw_api_path(const gw_api_req *r)
{
    return r->path;
}

const char *gw_api_param(const gw_api_req *r, const char *name)
{
    for (int i = 0; i < r->n_params; i++)
        if (!strcmp(r->pnames[i], name))
            return r->pvals[i];
    return NULL;
}

const char *gw_api_query(const gw_api_req *r, const char *name)
{
    for (int i = 0; i < r->n_query; i++)
        if (!strcmp(r->qnames[i], name))
            return r->qvals[i];
    return NULL;
}

const char *gw_api_header(const gw_api_req *r, const char *name)
{
    char low[64];
    size_t n = strlen(name);
    if (n >= sizeof(low))
        return NULL;
    for (size_t i = 0; i < n; i++)
        low[i] = (char)(name[i] >= 'A' && name[i] <= 'Z' ? name[i] + 32 : name[i]);
    ssize_t at = h2o_find_header_by_str(&r->req->headers, low, n, -1);
    if (at < 0)
        return NULL;
    const h2o_iovec_t *v = &r->req->headers.entries[at].value;
    return gw__api_pool_strndup(r->req, v->base, v->len);
}

json_t *gw_api_body(const gw_api_req *r)
{
    return r->body;
}

const char *gw_api_token_name(const gw_api_req *r)
{
    return r->token_name;
}

gw_api_role gw_api_token_role(const gw_api_req *r)
{
    return (gw_api_role)r->token_role;
}

const char *gw_api_peer(const gw_api_req *r)
{
    return r->peer;
}

/* ---------------------------------------------------------------- watching a waiting client */

/* While a request waits (deferred) or streams, h2o does not read its connection, so it would not
 * see the client leave. A uv_poll on a dup of the socket waits for the peer's end (EPOLLRDHUP)
 * without taking any byte from h2o; then the connection is reset, and h2o's next write fails
 * and closes it (which disposes of the request: on_gone). */
static void on_watch_closed(uv_handle_t *h)
{
    api_watch *w = (api_watch *)h;
    close(w->fd);
    gw_free(GW_AREA_API, w);
}

void gw__api_watch_close(api_watch *w)
{
    if (w->c)
        w->c->wp = NULL;
    w->c = NULL;
    uv_close((uv_handle_t *)&w->poll, on_watch_closed);
}

static void on_watch_event(uv_poll_t *p, int status, int events)
{
    api_watch *w = p->data;
    api_conn *c = w->c;
    gw_api_req *r = c ? c->watch : NULL;
    (void)status;
    (void)events;
    gw__api_watch_close(w);
    if (!r)
        return;
    c->watch = NULL;
    r->conn = NULL;
    conn_abort(c); /* a reset: what h2o writes next fails, and it closes the connection */
    if (r->stream) {
        gw_api_stream *st = r->stream;
        bool idle = st->ready && !st->closing;
        st->closing = true;
        if (idle)
            gw__api_stream_flush(st);
    } else if (r->deferred && !r->answered) {
        r->answered = true;
        gw_metric_add(GW_M_API_DEFERRED, -1);
        if (r->on_gone)
            r->on_gone(r->arg);
        gw__api_send_error(r->req, 503, "client_gone", NULL, "the client left");
    }
}

static void watch_start(gw_api_req *r, api_conn *c)
{
    uv_os_fd_t fd;
    api_watch *w;
    if (!c || c->watch || uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0 ||
        !(w = gw_calloc(GW_AREA_API, 1, sizeof(*w))))
        return;
    if ((w->fd = dup(fd)) < 0 || uv_poll_init(r->s->loop, &w->poll, w->fd) != 0) {
        if (w->fd >= 0)
            close(w->fd);
        gw_free(GW_AREA_API, w);
        return;
    }
    w->poll.data = w;
    w->c = c;
    c->wp = w;
    c->watch = r;
    r->conn = c;
    uv_poll_start(&w->poll, UV_DISCONNECT, on_watch_event);
}

static void watch_stop(gw_api_req *r)
{
    api_conn *c = r->conn;
    r->conn = NULL;
    if (c && c->watch == r) {
        c->watch = NULL;
        if (c->wp)
            gw__api_watch_close(c->wp);
    }
}

/* ---------------------------------------------------------------- api.h: answers */

static bool take_answer(gw_api_req *r)
{
    if (r->answered || r->stream) {
        GW_LOG_WARN("api", NULL, r->peer, "request answered twice", "path=%s", r->path);
        return false;
    }
    r->answered = true;
    if (r->deferred)
        gw_metric_add(GW_M_API_DEFERRED, -1);
    watch_stop(r); /* h2o reads the connection again once the answer is out */
    return true;
}

void gw_api_reply_json(gw_api_req *r, int status, json_t *body)
{
    if (!take_answer(r)) {
        json_decref(body);
        return;
    }
    gw__api_send_json(r->req, status, body);
}

void gw_api_reply_error(gw_api_req *r, int status, const char *code, const char *path,
                        const char *fmt, ...)
{
    va_list ap;
    if (!take_answer(r))
        return;
    va_start(ap, fmt);
    json_t *o = error_body(code, path, fmt, ap);
    va_end(ap);
    gw__api_send_json(r->req, status, o);
}

void gw_api_defer(gw_api_req *r, void (*on_gone)(void *arg), void *arg)
{
    if (r->deferred || r->answered)
        return;
    r->deferred = true;
    r->on_gone = on_gone;
    r->arg = arg;
    gw_metric_inc(GW_M_API_DEFERRED);
    watch_start(r, gw__api_conn_of(r->s, r->req));
}

/* The request's pool is cleared: the client left, or h2o is done with the answer. */
void gw__api_req_dispose(void *p)
{
    gw_api_req *r = p;
    watch_stop(r);
    json_decref(r->body);
    r->body = NULL;
    if (r->stream) {
        gw_api_stream *st = r->stream;
        gw_api_server *s = st->s;
        if (st->prev)
            st->prev->next = st->next;
        else
            s->streams = st->next;
        if (st->next)
            st->next->prev = st->prev;
        s->n_streams--;
        gw_metric_add(GW_M_API_STREAMS, -1);
        if (st->on_gone)
            st->on_gone(st->arg);
        gw_free(GW_AREA_API, st->pend);
        gw_free(GW_AREA_API, st->fly);
        gw_free(GW_AREA_API, st);
    } else if (r->deferred && !r->answered) {
        gw_metric_add(GW_M_API_DEFERRED, -1);
        if (r->on_gone)
            r->on_gone(r->arg);
    }
}

/* ---------------------------------------------------------------- api.h: streams */

/* The accepted connection a request arrived on (by its peer address; streams are few). */
api_conn *gw__api_conn_of(gw_api_server *s, h2o_req_t *req)
{
    struct sockaddr_storage a, b;
    int bl;
    socklen_t al = req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&a);
    for (api_conn *c = s->conns; c && al; c = c->next) {
        bl = sizeof(b);
        if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&b, &bl) == 0 && (socklen_t)bl == al &&
            memcmp(&a, &b, al) == 0)
            return c;
    }
    return NULL;
}

/* Ends a connection now, unsent bytes dropped: a reset, which also fails h2o's pending write. */
static void conn_abort(api_conn *c)
{
    uv_os_fd_t fd;
    struct linger lg = {1, 0};
    if (!c || uv_fileno((uv_handle_t *)&c->tcp, &fd) != 0)
        return;
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof(lg));
    shutdown(fd, SHUT_RDWR);
}

void gw__api_stream_flush(gw_api_stream *st)
{
    if (!st->ready || (!st->pend_len && !st->closing))
        return;
    st->ready = false;
    char *t = st->fly;
    st->fly = st->pend;
    st->fly_len = st->pend_len;
    st->pend = t;
    st->pend_len = 0;
    h2o_iovec_t v = h2o_iovec_init(st->fly ? st->fly : "", st->fly_len);
    h2o_send(st->r->req, &v, st->fly_len ? 1 : 0,
             st->closing ? H2O_SEND_STATE_FINAL : H2O_SEND_STATE_IN_PROGRESS);
}

static void stream_proceed(h2o_generator_t *g, h2o_req_t *req)
{
    gw_api_stream *st = (gw_api_stream *)g;
    (void)req;
    st->fly_len = 0;
    st->ready = true;
    gw__api_stream_flush(st);
}

static void stream_stop(h2o_generator_t *g, h2o_req_t *req)
{
    gw_api_stream *st = (gw_api_stream *)g;
    (void)req;
    st->closing = true;
    st->ready = false;
}

gw_api_stream *gw_api_stream_open(gw_api_req *r, size_t max_buffer, void (*on_gone)(void *arg),
                                  void *arg)
{
    gw_api_server *s = r->s;
    static const char hello[] = ": iotgw event stream\n\n";
    if (r->answered || r->stream)
        return NULL;
    if (s->n_streams >= s->max_streams || s->stopping) {
        gw_metric_inc(GW_M_API_REFUSED_STREAMS);
        gw_api_reply_error(r, 429, "too_many_streams", NULL,
                           "%u stream clients are open (admin.stream_clients_max)", s->n_streams);
        return NULL;
    }
    gw_api_stream *st = gw_calloc(GW_AREA_API, 1, sizeof(*st));
    if (!st || !(st->pend = gw_malloc(GW_AREA_API, max_buffer)) ||
        !(st->fly = gw_malloc(GW_AREA_API, max_buffer))) {
        if (st) {
            gw_free(GW_AREA_API, st->pend);
            gw_free(GW_AREA_API, st);
        }
        gw_api_reply_error(r, 503, "out_of_memory", NULL, "no memory for a stream");
        return NULL;
    }
    if (r->deferred)
        gw_metric_add(GW_M_API_DEFERRED, -1);
    st->gen.proceed = stream_proceed;
    st->gen.stop = stream_stop;
    st->r = r;
    st->s = s;
    st->max_buffer = max_buffer;
    st->on_gone = on_gone;
    st->arg = arg;
    st->next = s->streams;
    if (s->streams)
        s->streams->prev = st;
    s->streams = st;
    s->n_streams++;
    gw_metric_inc(GW_M_API_STREAMS);
    r->stream = st;
    h2o_req_t *req = r->req;
    req->res.status = 200;
    req->res.reason = "OK";
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CONTENT_TYPE, NULL,
                   H2O_STRLIT("text/event-stream"));
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_CACHE_CONTROL, NULL,
                   H2O_STRLIT("no-cache"));
    count_status(200);
    h2o_start_response(req, &st->gen);
    /* the kernel's share of the unsent bytes is bounded too (autotuning would take megabytes) */
    api_conn *c = gw__api_conn_of(s, req);
    uv_os_fd_t fd;
    int sndbuf = STREAM_SNDBUF;
    if (c && uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    watch_start(r, c);
    memcpy(st->pend, hello, sizeof(hello) - 1); /* sends the head at once */
    st->pend_len = sizeof(hello) - 1;
    st->ready = true;
    gw__api_stream_flush(st);
    return st;
}

int gw_api_stream_write(gw_api_stream *st, const char *data, size_t len)
{
    if (st->closing) /* the client left or the stream ends: on_gone follows */
        return 0;
    if (st->pend_len + st->fly_len + len > st->max_buffer)
        return -1;
    memcpy(st->pend + st->pend_len, data, len);
    st->pend_len += len;
    gw__api_stream_flush(st);
    return 0;
}

void gw_api_stream_close(gw_api_stream *st)
{
    if (st->closing)
        return;
    st->closing = true;
    if (st->ready) {
        gw__api_stream_flush(st); /* the end of the chunked body: h2o keeps the connection */
        return;
    }
    /* a write is pending (the client is not reading): reset the connection */
    conn_abort(gw__api_conn_of(st->s, st->r->req));
}

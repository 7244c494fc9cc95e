/* api_server.c: the management API's HTTP/1.1 server: libh2o (its libuv build) on the main loop,
 * our own listeners and connection count, routing of gw_api_routes, bearer-token auth, JSON
 * bodies and answers, deferred answers and event streams (implements api.h), /metrics, /health. */
#define H2O_USE_LIBUV 1
#include <h2o.h>

#include "api_server.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../../storage/store.h"
#include "../util/alloc.h"
#include "../util/listen.h"
#include "../util/log.h"
#include "../util/metrics.h"
#include "api_internal.h"
#include "api_static.h"

#define METRICS_MAX   (256 * 1024) /* /metrics body bound */
#define ANSWER_MAX    (64u << 20)  /* a JSON answer larger than this is refused (500) */
#define PARAMS_MAX    4
#define QUERY_MAX     32
#define SEGMENTS_MAX  16
#define STREAM_SNDBUF (64 * 1024) /* a stream connection's socket send buffer */

#define API_METRICS(X)                                                                             \
    X(GW_M_API_2XX, "api_requests_total{status=\"2xx\"}",                                          \
      "management API answers by status class")                                                    \
    X(GW_M_API_3XX, "api_requests_total{status=\"3xx\"}", NULL)                                    \
    X(GW_M_API_4XX, "api_requests_total{status=\"4xx\"}", NULL)                                    \
    X(GW_M_API_5XX, "api_requests_total{status=\"5xx\"}", NULL)                                    \
    X(GW_M_API_REFUSED_CONNS, "api_refused_total{reason=\"connections\"}",                         \
      "management API connections or requests refused: over admin.max_connections, no or a "       \
      "wrong token, a read token on a write, over admin.stream_clients_max")                       \
    X(GW_M_API_REFUSED_AUTH, "api_refused_total{reason=\"unauthorized\"}", NULL)                   \
    X(GW_M_API_REFUSED_ROLE, "api_refused_total{reason=\"forbidden\"}", NULL)                      \
    X(GW_M_API_REFUSED_STREAMS, "api_refused_total{reason=\"streams\"}", NULL)                     \
    X(GW_M_API_CONNS, "api_connections", "open management API connections (gauge)")                \
    X(GW_M_API_DEFERRED, "api_deferred", "management API requests waiting for an answer (gauge)")  \
    X(GW_M_API_STREAMS, "api_streams", "open /api/stream clients (gauge)")                         \
    X(GW_M_API_STREAM_DROPPED, "api_stream_dropped_total",                                         \
      "/api/stream clients dropped: more than admin.stream_buffer bytes unsent")
API_METRICS(GW_METRIC_HANDLE_DEF)
static const gw_metric_def api_metric_defs[] = {API_METRICS(GW_METRIC_DEF){NULL, NULL, NULL}};

typedef struct api_conn api_conn;

typedef struct api_listener {
    uv_tcp_t tcp;
    gw_api_server *s;
    gw_listen at; /* port: the bound one */
    bool open;
} api_listener;

/* One accepted connection: the libuv handle h2o's socket wraps; freed in its close callback. */
struct api_conn {
    uv_tcp_t tcp;
    gw_api_server *s;
    api_conn *prev, *next;
};

struct gw_api_server {
    uv_loop_t *loop;
    gw_api_ctx *ctx;
    h2o_globalconf_t conf;
    h2o_context_t hctx;
    h2o_accept_ctx_t actx;
    bool h2o_ready;
    api_listener *lis;
    size_t n_lis;
    api_conn *conns;
    unsigned n_conns, max_conns;
    gw_admin_token *tokens;
    size_t n_tokens;
    bool open_metrics;
    unsigned n_streams, max_streams;
    gw_api_stream *streams; /* open streams (for stop) */
    bool stopping;
    bool web; /* admin.web_root is served: paths outside /api/ go to api_static.c's files */
};

struct gw_api_req {
    h2o_req_t *req;
    gw_api_server *s;
    char method[8];
    char *path; /* raw path without the query, NUL-terminated */
    const char *pnames[PARAMS_MAX];
    char *pvals[PARAMS_MAX];
    int n_params;
    char *qnames[QUERY_MAX], *qvals[QUERY_MAX];
    int n_query;
    json_t *body;
    const char *token_name;
    char peer[64];
    bool answered, deferred;
    void (*on_gone)(void *arg);
    void *arg;
    gw_api_stream *stream;
};

/* A stream: its bytes wait in pend until h2o takes them (fly) and asks for more (proceed). */
struct gw_api_stream {
    h2o_generator_t gen; /* first: h2o hands it back */
    gw_api_req *r;
    gw_api_server *s;
    gw_api_stream *prev, *next;
    char *pend, *fly;
    size_t pend_len, fly_len, max_buffer;
    bool ready;   /* h2o wants more: the next write sends at once */
    bool closing; /* gw_api_stream_close or dropped: no more writes */
    void (*on_gone)(void *arg);
    void *arg;
};

/* A whole answer, owned by the request's pool (freed when h2o is done with it). */
typedef struct api_answer {
    h2o_generator_t gen;
    char *buf;
} api_answer;

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

static char *pool_strndup(h2o_req_t *req, const char *s, size_t n)
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
static char *pct_decode(h2o_req_t *req, const char *s, size_t n, bool plus)
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

static bool is_loopback(const struct sockaddr *sa)
{
    if (sa->sa_family == AF_INET)
        return (ntohl(((const struct sockaddr_in *)sa)->sin_addr.s_addr) >> 24) == 127;
    if (sa->sa_family == AF_INET6) {
        const struct in6_addr *a = &((const struct sockaddr_in6 *)sa)->sin6_addr;
        if (IN6_IS_ADDR_LOOPBACK(a))
            return true;
        return IN6_IS_ADDR_V4MAPPED(a) && a->s6_addr[12] == 127;
    }
    return false;
}

void gw_api_hash_token(const char *token, char hex[65])
{
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)token, strlen(token), d);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(hex + 2 * i, 3, "%02x", d[i]);
}

/* ---------------------------------------------------------------- answers */

static void answer_dispose(void *p)
{
    api_answer *a = p;
    gw_free(GW_AREA_API, a->buf);
}

/* Sends status with buf[0..len) (taken: a gw_malloc(GW_AREA_API) buffer, or NULL). */
static void send_answer(h2o_req_t *req, int status, const char *type, char *buf, size_t len)
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

static void send_text(h2o_req_t *req, int status, const char *type, const char *s, size_t n)
{
    char *b = n ? gw_malloc(GW_AREA_API, n) : NULL;
    if (n && !b) {
        h2o_send_error_503(req, "Service Unavailable", "out of memory", 0);
        return;
    }
    if (n)
        memcpy(b, s, n);
    send_answer(req, status, type, b, n);
}

static void send_json(h2o_req_t *req, int status, json_t *body)
{
    const size_t flags = JSON_COMPACT;
    size_t n = body ? json_dumpb(body, NULL, 0, flags) : 0;
    char *b = NULL;
    if (body && (n == 0 || n > ANSWER_MAX || !(b = gw_malloc(GW_AREA_API, n + 1)))) {
        static const char oom[] = "{\"error\":\"internal\",\"message\":\"answer too large\"}";
        json_decref(body);
        send_text(req, 500, "application/json", oom, sizeof(oom) - 1);
        return;
    }
    if (body) {
        json_dumpb(body, b, n, flags);
        b[n++] = '\n';
    }
    json_decref(body);
    send_answer(req, status, "application/json", b, n);
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

static void send_error(h2o_req_t *req, int status, const char *code, const char *path,
                       const char *fmt, ...) __attribute__((format(printf, 5, 6)));
static void send_error(h2o_req_t *req, int status, const char *code, const char *path,
                       const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    json_t *o = error_body(code, path, fmt, ap);
    va_end(ap);
    send_json(req, status, o);
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
    return pool_strndup(r->req, v->base, v->len);
}

json_t *gw_api_body(const gw_api_req *r)
{
    return r->body;
}

const char *gw_api_token_name(const gw_api_req *r)
{
    return r->token_name ? r->token_name : "";
}

const char *gw_api_peer(const gw_api_req *r)
{
    return r->peer;
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
    return true;
}

void gw_api_reply_json(gw_api_req *r, int status, json_t *body)
{
    if (!take_answer(r)) {
        json_decref(body);
        return;
    }
    send_json(r->req, status, body);
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
    send_json(r->req, status, o);
}

void gw_api_defer(gw_api_req *r, void (*on_gone)(void *arg), void *arg)
{
    if (r->deferred || r->answered)
        return;
    r->deferred = true;
    r->on_gone = on_gone;
    r->arg = arg;
    gw_metric_inc(GW_M_API_DEFERRED);
}

/* The request's pool is cleared: the client left, or h2o is done with the answer. */
static void req_dispose(void *p)
{
    gw_api_req *r = p;
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
static api_conn *conn_of(gw_api_server *s, h2o_req_t *req)
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

static void stream_flush(gw_api_stream *st)
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
    stream_flush(st);
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
    api_conn *c = conn_of(s, req);
    uv_os_fd_t fd;
    int sndbuf = STREAM_SNDBUF;
    if (c && uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, sizeof(sndbuf));
    memcpy(st->pend, hello, sizeof(hello) - 1); /* sends the head at once */
    st->pend_len = sizeof(hello) - 1;
    st->ready = true;
    stream_flush(st);
    return st;
}

int gw_api_stream_write(gw_api_stream *st, const char *data, size_t len)
{
    if (st->closing)
        return -1;
    if (st->pend_len + st->fly_len + len > st->max_buffer)
        return -1;
    memcpy(st->pend + st->pend_len, data, len);
    st->pend_len += len;
    stream_flush(st);
    return 0;
}

void gw_api_stream_close(gw_api_stream *st)
{
    if (st->closing)
        return;
    st->closing = true;
    if (st->ready) {
        stream_flush(st); /* the end of the chunked body: h2o keeps the connection */
        return;
    }
    /* a write is pending (the client is not reading): reset the connection */
    conn_abort(conn_of(st->s, st->r->req));
}

/* ---------------------------------------------------------------- /metrics and /health */

static void serve_health(gw_api_server *s, h2o_req_t *req)
{
    const char *detail = NULL;
    const char *why = s->ctx->store ? gw_store_failing(s->ctx->store, &detail) : NULL;
    if (why) {
        char body[256];
        int n = snprintf(body, sizeof(body), "store commits failing: reason=%s sqlite=\"%s\"\n",
                         why, detail ? detail : "");
        send_text(req, 503, "text/plain", body,
                  n < (int)sizeof(body) ? (size_t)n : sizeof(body) - 1);
    } else {
        send_text(req, 200, "text/plain", "ok\n", 3);
    }
}

static void serve_metrics(h2o_req_t *req)
{
    char *body = gw_malloc(GW_AREA_API, METRICS_MAX);
    if (!body) {
        h2o_send_error_503(req, "Service Unavailable", "out of memory", 0);
        return;
    }
    size_t n = gw_metrics_render(body, METRICS_MAX);
    for (int a = 0; a < GW_AREA__COUNT && n < METRICS_MAX; a++)
        n += (size_t)snprintf(body + n, METRICS_MAX - n, "iotgw_memory_bytes{area=\"%s\"} %lld\n",
                              gw_area_name((gw_area)a), (long long)gw_alloc_bytes((gw_area)a));
    if (n > METRICS_MAX)
        n = METRICS_MAX;
    send_answer(req, 200, "text/plain; version=0.0.4", body, n);
}

/* ---------------------------------------------------------------- dispatch */

/* The token's role (0: none matched). Every configured hash is compared, in constant time. */
static int token_role(gw_api_server *s, h2o_req_t *req, const char **name)
{
    ssize_t at = h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1);
    if (at < 0)
        return 0;
    const h2o_iovec_t *v = &req->headers.entries[at].value;
    if (v->len < 8 || strncasecmp(v->base, "Bearer ", 7) != 0)
        return 0;
    unsigned char d[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)v->base + 7, v->len - 7, d);
    int role = 0;
    for (size_t i = 0; i < s->n_tokens; i++) {
        int eq = CRYPTO_memcmp(d, s->tokens[i].sha256, sizeof(d)) == 0;
        if (eq && !role) {
            role = s->tokens[i].role;
            *name = s->tokens[i].name;
        }
    }
    return role;
}

/* Splits path "/a/b/c" into raw segments (no decoding). -1 if too many. */
static int split_path(const char *p, const char **seg, size_t *len)
{
    int n = 0;
    if (*p != '/')
        return -1;
    while (*p == '/') {
        const char *b = ++p;
        while (*p && *p != '/')
            p++;
        if (n == SEGMENTS_MAX)
            return -1;
        seg[n] = b;
        len[n++] = (size_t)(p - b);
    }
    return n;
}

/* Matches the route's pattern against the segments; fills r's params (decoded). 1 match, 0 not,
 * -1 a parameter is malformed. */
static int match_route(const gw_api_route *rt, gw_api_req *r, const char **seg, const size_t *len,
                       int n)
{
    const char *ps[SEGMENTS_MAX];
    size_t pl[SEGMENTS_MAX];
    int pn = split_path(rt->pattern, ps, pl);
    if (pn != n)
        return 0;
    for (int i = 0; i < n; i++) {
        bool param = pl[i] > 2 && ps[i][0] == '{' && ps[i][pl[i] - 1] == '}';
        if (!param && (pl[i] != len[i] || memcmp(ps[i], seg[i], len[i]) != 0))
            return 0;
        if (param && len[i] == 0)
            return 0;
    }
    r->n_params = 0;
    for (int i = 0; i < n && r->n_params < PARAMS_MAX; i++) {
        if (!(pl[i] > 2 && ps[i][0] == '{'))
            continue;
        char *v = pct_decode(r->req, seg[i], len[i], false);
        if (!v)
            return -1;
        r->pnames[r->n_params] = pool_strndup(r->req, ps[i] + 1, pl[i] - 2);
        r->pvals[r->n_params++] = v;
    }
    return 1;
}

static int parse_query(gw_api_req *r, const char *q, size_t n)
{
    size_t i = 0;
    while (i < n && r->n_query < QUERY_MAX) {
        size_t b = i;
        while (i < n && q[i] != '&')
            i++;
        const char *eq = memchr(q + b, '=', i - b);
        size_t kl = eq ? (size_t)(eq - (q + b)) : i - b;
        if (i > b) {
            char *k = pct_decode(r->req, q + b, kl, true);
            char *v = eq ? pct_decode(r->req, eq + 1, (size_t)(q + i - eq - 1), true)
                         : pool_strndup(r->req, "", 0);
            if (!k || !v)
                return -1;
            r->qnames[r->n_query] = k;
            r->qvals[r->n_query++] = v;
        }
        i++;
    }
    return 0;
}

/* A json_body route: 415 unless the body is application/json, 400 with line:column if broken. */
static int parse_body(gw_api_req *r)
{
    h2o_req_t *req = r->req;
    if (!req->entity.base || req->entity.len == 0)
        return 0;
    ssize_t at = h2o_find_header(&req->headers, H2O_TOKEN_CONTENT_TYPE, -1);
    const h2o_iovec_t *ct = at >= 0 ? &req->headers.entries[at].value : NULL;
    if (!ct || ct->len < 16 || strncasecmp(ct->base, "application/json", 16) != 0 ||
        (ct->len > 16 && ct->base[16] != ';' && ct->base[16] != ' ')) {
        send_error(req, 415, "unsupported_media_type", NULL, "the body must be application/json");
        return -1;
    }
    json_error_t e;
    r->body = json_loadb(req->entity.base, req->entity.len, JSON_REJECT_DUPLICATES, &e);
    if (!r->body) {
        send_error(req, 400, "bad_json", NULL, "line %d column %d: %s", e.line, e.column, e.text);
        return -1;
    }
    return 0;
}

static void not_allowed(h2o_req_t *req, const char *allow)
{
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, allow, strlen(allow));
    send_error(req, 405, "method_not_allowed", NULL, "allowed: %s", allow);
}

static void unauthorized(h2o_req_t *req, bool had_token)
{
    gw_metric_inc(GW_M_API_REFUSED_AUTH);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL,
                   H2O_STRLIT("Bearer realm=\"iotgw\""));
    send_error(req, 401, "unauthorized", NULL,
               had_token ? "the token is not valid" : "an Authorization: Bearer token is needed");
}

/* GET /metrics, /health: no token on a loopback listener (admin.open_metrics), else read. */
static void serve_plain(gw_api_server *s, h2o_req_t *req, bool metrics)
{
    const char *name = NULL;
    if (!h2o_memis(req->method.base, req->method.len, H2O_STRLIT("GET"))) {
        not_allowed(req, "GET");
        return;
    }
    struct sockaddr_storage local;
    bool open = s->open_metrics &&
                req->conn->callbacks->get_sockname(req->conn, (struct sockaddr *)&local) &&
                is_loopback((struct sockaddr *)&local);
    if (!open && token_role(s, req, &name) == 0) {
        unauthorized(req, h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1) >= 0);
        return;
    }
    if (metrics)
        serve_metrics(req);
    else
        serve_health(s, req);
}

static void dispatch(gw_api_server *s, gw_api_req *r)
{
    h2o_req_t *req = r->req;
    const char *seg[SEGMENTS_MAX];
    size_t len[SEGMENTS_MAX];
    char allow[64] = "";
    const gw_api_route *hit = NULL;

    int n = split_path(r->path, seg, len);
    if (n < 0) {
        send_error(req, 404, "not_found", NULL, "no such path");
        return;
    }
    const char *tname = NULL;
    int role = token_role(s, req, &tname);
    if (role == 0) {
        unauthorized(req, h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1) >= 0);
        return;
    }
    r->token_name = tname;
    for (const gw_api_route *rt = gw_api_routes; rt->method; rt++) {
        int m = match_route(rt, r, seg, len, n);
        if (m < 0) {
            send_error(req, 400, "bad_path", NULL, "malformed percent-encoding in the path");
            return;
        }
        if (m == 0)
            continue;
        if (!strcmp(rt->method, r->method)) {
            hit = rt;
            break;
        }
        if (!strstr(allow, rt->method) && strlen(allow) + strlen(rt->method) + 3 < sizeof(allow))
            snprintf(allow + strlen(allow), sizeof(allow) - strlen(allow), "%s%s",
                     allow[0] ? ", " : "", rt->method);
    }
    if (!hit) {
        if (allow[0])
            not_allowed(req, allow);
        else
            send_error(req, 404, "not_found", NULL, "no such path");
        return;
    }
    if (hit->role == GW_API_ADMIN && role < 2) {
        gw_metric_inc(GW_M_API_REFUSED_ROLE);
        send_error(req, 403, "forbidden", NULL, "token \"%s\" has the read role; %s %s needs admin",
                   tname, r->method, hit->pattern);
        return;
    }
    if (req->query_at != SIZE_MAX &&
        parse_query(r, req->path.base + req->query_at + 1, req->path.len - req->query_at - 1)) {
        send_error(req, 400, "bad_query", NULL, "malformed percent-encoding in the query");
        return;
    }
    if (hit->json_body && parse_body(r))
        return;
    hit->fn(r, s->ctx);
    if (!r->answered && !r->deferred && !r->stream) {
        GW_LOG_WARN("api", NULL, r->peer, "handler returned without an answer", "path=%s", r->path);
        gw_api_reply_error(r, 500, "internal", NULL, "the handler did not answer");
    }
}

static int on_req(h2o_handler_t *self, h2o_req_t *req)
{
    gw_api_server *s = *(gw_api_server **)(self + 1);
    size_t plen = req->query_at != SIZE_MAX ? req->query_at : req->path.len;

    if (s->stopping) {
        send_error(req, 503, "stopping", NULL, "the gateway is stopping");
        return 0;
    }
    if (h2o_memis(req->path.base, plen, H2O_STRLIT("/metrics")) ||
        h2o_memis(req->path.base, plen, H2O_STRLIT("/health"))) {
        serve_plain(s, req, plen == 8);
        return 0;
    }
    if (s->web && !(plen >= 4 && !memcmp(req->path.base, "/api", 4) &&
                    (plen == 4 || req->path.base[4] == '/')))
        return -1; /* the console's files (api_static.c) */
    gw_api_req *r = h2o_mem_alloc_shared(&req->pool, sizeof(*r), req_dispose);
    memset(r, 0, sizeof(*r));
    r->req = req;
    r->s = s;
    r->path = pool_strndup(req, req->path.base, plen);
    snprintf(r->method, sizeof(r->method), "%.*s", (int)req->method.len, req->method.base);
    struct sockaddr_storage peer;
    if (req->conn->callbacks->get_peername(req->conn, (struct sockaddr *)&peer))
        gw_sockaddr_str((struct sockaddr *)&peer, r->peer, sizeof(r->peer));
    dispatch(s, r);
    return 0;
}

/* ---------------------------------------------------------------- connections and listeners */

static void on_conn_closed(uv_handle_t *h)
{
    api_conn *c = (api_conn *)h;
    gw_api_server *s = c->s;
    if (c->prev)
        c->prev->next = c->next;
    else
        s->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    s->n_conns--;
    gw_metric_add(GW_M_API_CONNS, -1);
    gw_free(GW_AREA_API, c);
}

static void on_refused_closed(uv_handle_t *h)
{
    gw_free(GW_AREA_API, h);
}

static void on_connection(uv_stream_t *server, int status)
{
    api_listener *l = server->data;
    gw_api_server *s = l->s;
    if (status < 0)
        return;
    api_conn *c = gw_calloc(GW_AREA_API, 1, sizeof(*c));
    if (!c)
        return;
    uv_tcp_init(s->loop, &c->tcp);
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
        uv_close((uv_handle_t *)&c->tcp, on_refused_closed);
        return;
    }
    if (s->n_conns >= s->max_conns || s->stopping) {
        static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                                   "Content-Type: application/json\r\nContent-Length: 70\r\n\r\n"
                                   "{\"error\":\"too_many_connections\",\"message\":\"admin."
                                   "max_connections\"}";
        uv_buf_t b = uv_buf_init((char *)busy, sizeof(busy) - 1);
        gw_metric_inc(GW_M_API_REFUSED_CONNS);
        uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
        uv_close((uv_handle_t *)&c->tcp, on_refused_closed);
        return;
    }
    c->s = s;
    c->next = s->conns;
    if (s->conns)
        s->conns->prev = c;
    s->conns = c;
    s->n_conns++;
    gw_metric_inc(GW_M_API_CONNS);
    h2o_socket_t *sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, on_conn_closed);
    h2o_accept(&s->actx, sock);
}

static int listen_one(gw_api_server *s, api_listener *l, gw_error *err)
{
    struct sockaddr_storage ss;
    int rc, len = sizeof(ss);
    rc = strchr(l->at.address, ':')
             ? uv_ip6_addr(l->at.address, l->at.port, (struct sockaddr_in6 *)&ss)
             : uv_ip4_addr(l->at.address, l->at.port, (struct sockaddr_in *)&ss);
    if (rc)
        return gw_error_set(err, rc, "admin: %s is not an address", l->at.address);
    uv_tcp_init(s->loop, &l->tcp);
    l->tcp.data = l;
    l->s = s;
    l->open = true;
    if ((rc = uv_tcp_bind(&l->tcp, (struct sockaddr *)&ss, 0)) != 0 ||
        (rc = uv_listen((uv_stream_t *)&l->tcp, 128, on_connection)) != 0)
        return gw_error_set(err, rc, "admin: cannot listen on %s port %u: %s", l->at.address,
                            l->at.port, uv_strerror(rc));
    uv_tcp_getsockname(&l->tcp, (struct sockaddr *)&ss, &len);
    l->at.port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                                : ((struct sockaddr_in *)&ss)->sin_port);
    return 0;
}

/* h2o_context_init adds handles to the loop (a uv_async for its thread queue, timers) that must
 * not keep the main loop running once everything else has stopped: they are unreferenced. */
typedef struct handle_set {
    uv_handle_t *v[256];
    size_t n;
    bool unref;
} handle_set;

static void walk_cb(uv_handle_t *h, void *arg)
{
    handle_set *hs = arg;
    if (!hs->unref) {
        if (hs->n < 256)
            hs->v[hs->n++] = h;
        return;
    }
    for (size_t i = 0; i < hs->n; i++)
        if (hs->v[i] == h)
            return;
    uv_unref(h);
}

int gw_api_server_start(gw_api_server **out, gw_api_ctx *ctx, const gw_config *cfg, gw_error *err)
{
    const gw_admin_cfg *ac = &cfg->admin_http;
    int rc = GW_ENOMEM;
    handle_set *hs = NULL;
    gw_api_server *s = gw_calloc(GW_AREA_API, 1, sizeof(*s));
    *out = NULL;
    if (!s)
        goto fail;
    gw_metrics_register(api_metric_defs);
    s->loop = ctx->loop;
    s->ctx = ctx;
    s->max_conns = ac->max_connections;
    s->max_streams = ac->stream_clients_max;
    s->open_metrics = ac->open_metrics;
    s->n_tokens = ac->n_tokens;
    if (ac->n_tokens && !(s->tokens = gw_calloc(GW_AREA_API, ac->n_tokens, sizeof(*s->tokens))))
        goto fail;
    if (ac->n_tokens)
        memcpy(s->tokens, ac->tokens, ac->n_tokens * sizeof(*s->tokens));
    if (!(s->lis = gw_calloc(GW_AREA_API, ac->n_listeners, sizeof(*s->lis))) ||
        !(hs = gw_calloc(GW_AREA_API, 1, sizeof(*hs))))
        goto fail;

    h2o_config_init(&s->conf);
    s->conf.server_name = h2o_iovec_init(H2O_STRLIT("iotgw"));
    s->conf.max_request_entity_size = ac->max_body;
    s->conf.http1.req_timeout = ac->idle_timeout_ms;
    s->conf.http1.upgrade_to_http2 = 0;
    h2o_hostconf_t *host =
        h2o_config_register_host(&s->conf, h2o_iovec_init(H2O_STRLIT("default")), 65535);
    s->web = gw__api_static_assets(host, ac->web_root);
    h2o_pathconf_t *path = h2o_config_register_path(host, "/", 0);
    h2o_handler_t *h = h2o_create_handler(path, sizeof(*h) + sizeof(gw_api_server *));
    h->on_req = on_req;
    *(gw_api_server **)(h + 1) = s;
    gw__api_static_root(path, s->web ? ac->web_root : NULL);
    uv_walk(s->loop, walk_cb, hs);
    h2o_context_init(&s->hctx, s->loop, &s->conf);
    hs->unref = true;
    uv_walk(s->loop, walk_cb, hs);
    s->h2o_ready = true;
    s->actx.ctx = &s->hctx;
    s->actx.hosts = s->conf.hosts;

    s->n_lis = ac->n_listeners;
    for (size_t i = 0; i < s->n_lis; i++) {
        s->lis[i].at = ac->listeners[i];
        if ((rc = listen_one(s, &s->lis[i], err)) != 0)
            goto fail;
    }
    gw_free(GW_AREA_API, hs);
    *out = s;
    return 0;
fail:
    gw_free(GW_AREA_API, hs);
    if (rc == GW_ENOMEM)
        gw_error_set(err, rc, "admin: out of memory");
    if (s) {
        gw_api_server_stop(s);
        uv_run(s->loop, UV_RUN_NOWAIT); /* not yet running: closes the listeners */
        gw_api_server_free(s);
    }
    return rc;
}

size_t gw_api_server_ready_lines(const gw_api_server *s, char *buf, size_t cap)
{
    size_t n = 0;
    for (size_t i = 0; s && i < s->n_lis && n < cap; i++) {
        int w = snprintf(buf + n, cap - n, "listener adapter=admin address=%s port=%u\n",
                         s->lis[i].at.address, s->lis[i].at.port);
        n += w > 0 ? (size_t)w : 0;
    }
    return n < cap ? n : cap;
}

int gw_api_server_port(const gw_api_server *s)
{
    return s && s->n_lis ? s->lis[0].at.port : 0;
}

void gw_api_server_stop(gw_api_server *s)
{
    if (!s || s->stopping)
        return;
    s->stopping = true;
    for (size_t i = 0; i < s->n_lis; i++)
        if (s->lis[i].open) {
            s->lis[i].open = false;
            uv_close((uv_handle_t *)&s->lis[i].tcp, NULL);
        }
    for (gw_api_stream *st = s->streams; st; st = st->next)
        if (!st->closing && st->ready) {
            st->closing = true;
            stream_flush(st);
        }
    /* Every connection's socket is shut: h2o reads the end (or fails its write) and closes it. */
    for (api_conn *c = s->conns; c; c = c->next) {
        uv_os_fd_t fd;
        if (uv_fileno((uv_handle_t *)&c->tcp, &fd) == 0)
            shutdown(fd, SHUT_RDWR);
    }
}

void gw_api_server_free(gw_api_server *s)
{
    if (!s)
        return;
    if (s->h2o_ready && s->n_conns == 0) { /* a connection left open keeps what h2o holds */
        h2o_context_dispose(&s->hctx);
        h2o_config_dispose(&s->conf);
    }
    gw_free(GW_AREA_API, s->lis);
    gw_free(GW_AREA_API, s->tokens);
    if (s->n_conns == 0)
        gw_free(GW_AREA_API, s);
}

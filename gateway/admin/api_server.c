/* api_server.c: the management API's HTTP/1.1 server: libh2o (its libuv build) on the main loop,
 * our own listeners and connection count, routing of gw_api_routes, percent-decoding and query
 * parsing, bearer-token auth, JSON bodies (415, 400), /metrics and /health. */
#include "api_server.h"

#include <openssl/crypto.h>
#include <openssl/sha.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "../../storage/store.h"
#include "../util/alloc.h"
#include "../core/listen.h"
#include "../util/log.h"
#include "api_http.h"
#include "api_internal.h"
#include "api_static.h"

#define METRICS_MAX  (256 * 1024) /* /metrics body bound */
#define SEGMENTS_MAX 16

API_METRICS(GW_METRIC_HANDLE_DEF)
static const gw_metric_def api_metric_defs[] = {API_METRICS(GW_METRIC_DEF){NULL, NULL, NULL}};

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

/* ---------------------------------------------------------------- /metrics and /health */

static void serve_health(gw_api_server *s, h2o_req_t *req)
{
    const char *detail = NULL;
    const char *why = s->ctx->store ? gw_store_failing(s->ctx->store, &detail) : NULL;
    if (why) {
        char body[256];
        int n = snprintf(body, sizeof(body), "store commits failing: reason=%s sqlite=\"%s\"\n",
                         why, detail ? detail : "");
        gw__api_send_text(req, 503, "text/plain", body,
                          n < (int)sizeof(body) ? (size_t)n : sizeof(body) - 1);
    } else {
        gw__api_send_text(req, 200, "text/plain", "ok\n", 3);
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
    gw__api_send_answer(req, 200, "text/plain; version=0.0.4", body, n);
}

/* ---------------------------------------------------------------- dispatch */

/* The token's role (0: none matched). Every hash of the current configuration (a reload changes
 * them: a revoked token is refused from the next request) is compared, in constant time. */
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
    const gw_admin_cfg *ac = &s->ctx->cfg->admin_http;
    for (size_t i = 0; i < ac->n_tokens; i++) {
        int eq = CRYPTO_memcmp(d, ac->tokens[i].sha256, sizeof(d)) == 0;
        if (eq && !role) {
            role = ac->tokens[i].role;
            *name = ac->tokens[i].name;
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
        char *v = gw__api_pct_decode(r->req, seg[i], len[i], false);
        if (!v)
            return -1;
        r->pnames[r->n_params] = gw__api_pool_strndup(r->req, ps[i] + 1, pl[i] - 2);
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
            char *k = gw__api_pct_decode(r->req, q + b, kl, true);
            char *v = eq ? gw__api_pct_decode(r->req, eq + 1, (size_t)(q + i - eq - 1), true)
                         : gw__api_pool_strndup(r->req, "", 0);
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
        gw__api_send_error(req, 415, "unsupported_media_type", NULL,
                           "the body must be application/json");
        return -1;
    }
    json_error_t e;
    r->body = json_loadb(req->entity.base, req->entity.len, JSON_REJECT_DUPLICATES, &e);
    if (!r->body) {
        gw__api_send_error(req, 400, "bad_json", NULL, "line %d column %d: %s", e.line, e.column,
                           e.text);
        return -1;
    }
    return 0;
}

static void not_allowed(h2o_req_t *req, const char *allow)
{
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_ALLOW, NULL, allow, strlen(allow));
    gw__api_send_error(req, 405, "method_not_allowed", NULL, "allowed: %s", allow);
}

static void unauthorized(h2o_req_t *req, bool had_token)
{
    gw_metric_inc(GW_M_API_REFUSED_AUTH);
    h2o_add_header(&req->pool, &req->res.headers, H2O_TOKEN_WWW_AUTHENTICATE, NULL,
                   H2O_STRLIT("Bearer realm=\"iotgw\""));
    gw__api_send_error(req, 401, "unauthorized", NULL,
                       had_token ? "the token is not valid"
                                 : "an Authorization: Bearer token is needed");
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
        gw__api_send_error(req, 404, "not_found", NULL, "no such path");
        return;
    }
    const char *tname = NULL;
    int role = token_role(s, req, &tname);
    if (role == 0) {
        unauthorized(req, h2o_find_header(&req->headers, H2O_TOKEN_AUTHORIZATION, -1) >= 0);
        return;
    }
    snprintf(r->token_name, sizeof(r->token_name), "%s", tname); /* outlives a reload */
    r->token_role = role;
    for (const gw_api_route *rt = gw_api_routes; rt->method; rt++) {
        int m = match_route(rt, r, seg, len, n);
        if (m < 0) {
            gw__api_send_error(req, 400, "bad_path", NULL,
                               "malformed percent-encoding in the path");
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
            gw__api_send_error(req, 404, "not_found", NULL, "no such path");
        return;
    }
    if (hit->role == GW_API_ADMIN && role < 2) {
        gw_metric_inc(GW_M_API_REFUSED_ROLE);
        gw__api_send_error(req, 403, "forbidden", NULL,
                           "token \"%s\" has the read role; %s %s needs admin", tname, r->method,
                           hit->pattern);
        return;
    }
    if (req->query_at != SIZE_MAX &&
        parse_query(r, req->path.base + req->query_at + 1, req->path.len - req->query_at - 1)) {
        gw__api_send_error(req, 400, "bad_query", NULL, "malformed percent-encoding in the query");
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
        gw__api_send_error(req, 503, "stopping", NULL, "the gateway is stopping");
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
    gw_api_req *r = h2o_mem_alloc_shared(&req->pool, sizeof(*r), gw__api_req_dispose);
    memset(r, 0, sizeof(*r));
    r->req = req;
    r->s = s;
    r->path = gw__api_pool_strndup(req, req->path.base, plen);
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
    if (c->wp)
        gw__api_watch_close(c->wp);
    if (c->watch)
        c->watch->conn = NULL;
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
        static const char body[] = "{\"error\":\"too_many_connections\",\"message\":\"admin."
                                   "max_connections connections are open\"}\n";
        char busy[256];
        int n = snprintf(busy, sizeof(busy),
                         "HTTP/1.1 503 Service Unavailable\r\nConnection: close\r\n"
                         "Content-Type: application/json\r\nContent-Length: %zu\r\n\r\n%s",
                         sizeof(body) - 1, body);
        uv_buf_t b = uv_buf_init(busy, (unsigned)n);
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
    c->sock = h2o_uv_socket_create((uv_stream_t *)&c->tcp, on_conn_closed);
    h2o_accept(&s->actx, c->sock);
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
            gw__api_stream_flush(st);
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
    if (s->n_conns == 0)
        gw_free(GW_AREA_API, s);
}

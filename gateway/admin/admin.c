/* admin.c: GET /health (503 with the reason while store commits fail) and GET /metrics over a
 * minimal HTTP/1.0 server on the main loop. Bounded:
 * at most ADMIN_CONNS open connections (a new one closes the oldest), each closed ADMIN_TIMEOUT_MS
 * after it was accepted; a request of at most REQ_MAX bytes, one response of at most BODY_MAX plus
 * headers (accounted in the "output" memory area). */
#include "admin.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../storage/store.h"
#include "../util/alloc.h"
#include "../util/metrics.h"

#define REQ_MAX          4096
#define BODY_MAX         (64 * 1024)
#define HEAD_MAX         256
#define ADMIN_CONNS      16
#define ADMIN_TIMEOUT_MS 10000

typedef struct admin_conn admin_conn;

struct gw_admin {
    uv_tcp_t server;
    uv_loop_t *loop;
    const gw_store *store; /* /health: commits failing (NULL: not consulted) */
    admin_conn *conns;     /* open connections (doubly linked) */
    unsigned n_conns;
    bool stopped; /* freed when the server handle and the last connection are closed */
    bool server_closed;
};

struct admin_conn {
    uv_tcp_t tcp;
    uv_timer_t timer; /* ADMIN_TIMEOUT_MS after accept */
    uv_write_t wr;
    gw_admin *a;
    admin_conn *prev, *next;
    int handles; /* open handles (tcp, timer) */
    bool closing;
    size_t len, resp_size;
    char req[REQ_MAX];
    char *resp;
};

static void admin_maybe_free(gw_admin *a)
{
    if (a->stopped && a->server_closed && a->n_conns == 0)
        gw_free(GW_AREA_RUNTIME, a);
}

static void on_handle_closed(uv_handle_t *h)
{
    admin_conn *c = h->data;
    if (--c->handles > 0)
        return;
    gw_admin *a = c->a;
    if (c->prev)
        c->prev->next = c->next;
    else
        a->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    a->n_conns--;
    if (c->resp)
        gw_free(GW_AREA_OUTPUT, c->resp);
    gw_free(GW_AREA_RUNTIME, c);
    admin_maybe_free(a);
}

static void conn_close(admin_conn *c)
{
    if (c->closing)
        return;
    c->closing = true;
    uv_close((uv_handle_t *)&c->tcp, on_handle_closed);
    uv_close((uv_handle_t *)&c->timer, on_handle_closed);
}

static void on_timeout(uv_timer_t *t)
{
    conn_close(t->data);
}

static void on_sent(uv_write_t *w, int status)
{
    admin_conn *c = w->data;
    (void)status;
    conn_close(c);
}

static void respond(admin_conn *c, int code, const char *type, const char *body, size_t blen)
{
    const char *text = code == 200   ? "OK"
                       : code == 404 ? "Not Found"
                       : code == 503 ? "Service Unavailable"
                                     : "Bad Request";
    c->resp = gw_malloc(GW_AREA_OUTPUT, blen + HEAD_MAX);
    if (!c->resp) {
        conn_close(c);
        return;
    }
    int n = snprintf(c->resp, HEAD_MAX,
                     "HTTP/1.0 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                     "Connection: close\r\n\r\n",
                     code, text, type, blen);
    memcpy(c->resp + n, body, blen);
    uv_buf_t b = uv_buf_init(c->resp, (unsigned)(n + blen));
    c->wr.data = c;
    uv_read_stop((uv_stream_t *)&c->tcp);
    if (uv_write(&c->wr, (uv_stream_t *)&c->tcp, &b, 1, on_sent) != 0)
        conn_close(c);
}

static void handle(admin_conn *c)
{
    if (strncmp(c->req, "GET /health ", 12) == 0) {
        const char *detail = NULL,
                   *why = c->a->store ? gw_store_failing(c->a->store, &detail) : NULL;
        if (why) {
            char body[256];
            int n = snprintf(body, sizeof(body), "store commits failing: reason=%s sqlite=\"%s\"\n",
                             why, detail ? detail : "");
            respond(c, 503, "text/plain", body,
                    n < (int)sizeof(body) ? (size_t)n : sizeof(body) - 1);
        } else {
            respond(c, 200, "text/plain", "ok\n", 3);
        }
    } else if (strncmp(c->req, "GET /metrics ", 13) == 0) {
        char *body = gw_malloc(GW_AREA_RUNTIME, BODY_MAX);
        if (!body) {
            conn_close(c);
            return;
        }
        size_t n = gw_metrics_render(body, BODY_MAX);
        for (int a = 0; a < GW_AREA__COUNT && n < BODY_MAX; a++)
            n += (size_t)snprintf(body + n, BODY_MAX - n, "iotgw_memory_bytes{area=\"%s\"} %lld\n",
                                  gw_area_name((gw_area)a), (long long)gw_alloc_bytes((gw_area)a));
        if (n > BODY_MAX)
            n = BODY_MAX;
        respond(c, 200, "text/plain; version=0.0.4", body, n);
        gw_free(GW_AREA_RUNTIME, body);
    } else if (strncmp(c->req, "GET ", 4) == 0) {
        respond(c, 404, "text/plain", "not found\n", 10);
    } else {
        respond(c, 400, "text/plain", "bad request\n", 12);
    }
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    admin_conn *c = h->data;
    (void)suggested;
    *buf = uv_buf_init(c->req + c->len, (unsigned)(REQ_MAX - 1 - c->len));
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf)
{
    admin_conn *c = s->data;
    (void)buf;
    if (n < 0) {
        conn_close(c);
        return;
    }
    c->len += (size_t)n;
    c->req[c->len] = 0;
    if (strstr(c->req, "\r\n\r\n") || strstr(c->req, "\n\n"))
        handle(c);
    else if (c->len >= REQ_MAX - 1)
        respond(c, 400, "text/plain", "request too large\n", 18);
}

/* Past ADMIN_CONNS open connections the oldest goes: an idle client cannot lock /metrics out. */
static void evict_oldest(gw_admin *a)
{
    admin_conn *oldest = NULL;
    unsigned open = 0;
    for (admin_conn *c = a->conns; c; c = c->next) { /* newest first */
        if (!c->closing) {
            open++;
            oldest = c;
        }
    }
    if (open > ADMIN_CONNS && oldest)
        conn_close(oldest);
}

static void on_connection(uv_stream_t *server, int status)
{
    gw_admin *a = server->data;
    if (status < 0)
        return;
    admin_conn *c = gw_calloc(GW_AREA_RUNTIME, 1, sizeof(*c));
    if (!c)
        return;
    c->a = a;
    c->next = a->conns;
    if (a->conns)
        a->conns->prev = c;
    a->conns = c;
    a->n_conns++;
    c->handles = 2;
    uv_tcp_init(server->loop, &c->tcp);
    uv_timer_init(server->loop, &c->timer);
    c->tcp.data = c;
    c->timer.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
        conn_close(c);
        return;
    }
    uv_timer_start(&c->timer, on_timeout, ADMIN_TIMEOUT_MS, 0);
    evict_oldest(a);
}

int gw_admin_start(gw_admin **out, uv_loop_t *loop, const gw_listen *at, const gw_store *store,
                   int *port)
{
    struct sockaddr_storage ss;
    int rc, len = sizeof(ss);
    gw_admin *a = gw_calloc(GW_AREA_RUNTIME, 1, sizeof(*a));
    *out = NULL;
    if (!a)
        return UV_ENOMEM;
    a->loop = loop;
    a->store = store;
    rc = strchr(at->address, ':') ? uv_ip6_addr(at->address, at->port, (struct sockaddr_in6 *)&ss)
                                  : uv_ip4_addr(at->address, at->port, (struct sockaddr_in *)&ss);
    if (rc) {
        gw_free(GW_AREA_RUNTIME, a);
        return rc;
    }
    uv_tcp_init(loop, &a->server);
    a->server.data = a;
    if ((rc = uv_tcp_bind(&a->server, (struct sockaddr *)&ss, 0)) != 0 ||
        (rc = uv_listen((uv_stream_t *)&a->server, 64, on_connection)) != 0) {
        a->server.data = NULL;
        uv_close((uv_handle_t *)&a->server, (uv_close_cb)free);
        return rc;
    }
    uv_tcp_getsockname(&a->server, (struct sockaddr *)&ss, &len);
    *port = ntohs(ss.ss_family == AF_INET6 ? ((struct sockaddr_in6 *)&ss)->sin6_port
                                           : ((struct sockaddr_in *)&ss)->sin_port);
    *out = a;
    return 0;
}

static void on_server_closed(uv_handle_t *h)
{
    gw_admin *a = h->data;
    a->server_closed = true;
    admin_maybe_free(a);
}

void gw_admin_stop(gw_admin *a)
{
    if (!a)
        return;
    a->stopped = true;
    for (admin_conn *c = a->conns; c; c = c->next)
        conn_close(c);
    uv_close((uv_handle_t *)&a->server, on_server_closed);
}

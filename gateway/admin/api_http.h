/* api_http.h: what api_server.c (connections, routing, auth) and api_http.c (the request and
 * answer side of api.h) share: libh2o's types and ours. No other file includes libh2o. */
#ifndef GW_API_HTTP_H
#define GW_API_HTTP_H

#define H2O_USE_LIBUV 1
#include <h2o.h>

#include <jansson.h>
#include <stdbool.h>

#include "../../config/config.h"
#include "../util/metrics.h"
#include "api.h"
#include "api_server.h"

#define ANSWER_MAX    (64u << 20) /* a JSON answer larger than this is refused (500) */
#define PARAMS_MAX    4
#define QUERY_MAX     32
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
API_METRICS(GW_METRIC_HANDLE_DECL)

typedef struct api_conn api_conn;
typedef struct api_watch api_watch;

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
    h2o_socket_t *sock;
    gw_api_req *watch; /* a deferred or streaming request whose client is watched (wp) */
    api_watch *wp;
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
    char token_name[64]; /* a copy: the configuration it came from may be replaced meanwhile */
    int token_role;      /* gw_api_role of the token */
    char peer[64];
    bool answered, deferred;
    void (*on_gone)(void *arg);
    void *arg;
    gw_api_stream *stream;
    api_conn *conn; /* while watched */
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

/* A watch on a waiting client (api_http.c): a uv_poll on a dup of its socket. */
struct api_watch {
    uv_poll_t poll;
    int fd;
    api_conn *c;
};

/* api_http.c */
char *gw__api_pool_strndup(h2o_req_t *req, const char *s, size_t n);
/* Percent-decodes s[0..n) into a pool string; plus: '+' is a space (query). NULL if it is
 * malformed or decodes to a NUL byte. */
char *gw__api_pct_decode(h2o_req_t *req, const char *s, size_t n, bool plus);
/* Sends status with buf[0..len) (taken: a gw_malloc(GW_AREA_API) buffer, or NULL). */
void gw__api_send_answer(h2o_req_t *req, int status, const char *type, char *buf, size_t len);
void gw__api_send_text(h2o_req_t *req, int status, const char *type, const char *s, size_t n);
void gw__api_send_json(h2o_req_t *req, int status, json_t *body);
void gw__api_send_error(h2o_req_t *req, int status, const char *code, const char *path,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));
/* The dispose callback of the gw_api_req allocated in a request's pool. */
void gw__api_req_dispose(void *p);
void gw__api_stream_flush(gw_api_stream *st);
void gw__api_watch_close(api_watch *w);
api_conn *gw__api_conn_of(gw_api_server *s, h2o_req_t *req);

#endif

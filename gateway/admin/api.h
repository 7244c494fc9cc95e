/* api.h: the management API's handler-facing interface: a route table (method, path pattern,
 * role), the request accessors, and the ways to answer (JSON now, JSON later, an event stream).
 * The HTTP server behind it (api_server.c) is the only file that knows the HTTP library; every
 * handler runs on the main thread's loop and must never block it. */
#ifndef GW_API_H
#define GW_API_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <uv.h>

struct gw_runtime;
struct gw_config;
struct gw_store;
struct gw_store_reader;
struct gw_commands;
struct gw_reload;
struct gw_api_hub;

/* What handlers reach. One per gateway, owned by main.c, read and written on the main thread
 * only. cfg is the current configuration: a reload (also on the main thread) replaces it between
 * two handler calls, so a handler that answers later must not keep pointers into it. */
typedef struct gw_api_ctx {
    uv_loop_t *loop; /* the main loop: every handler and every deferred answer runs here */
    struct gw_runtime *rt;
    const struct gw_config *cfg;
    struct gw_store *store;
    struct gw_store_reader *reader; /* the API's own read-only SQLite connection */
    struct gw_commands *commands;   /* downstream commands (functions, property writes/reads) */
    struct gw_reload *reload;       /* hot reload: SIGHUP, POST /api/reload, device changes */
    struct gw_api_hub *hub;         /* committed events fanned out to /api/stream clients */
    int64_t started_ms;             /* uv_now at start, for /api/status uptime */
} gw_api_ctx;

typedef enum gw_api_role {
    GW_API_NONE = 0, /* no token needed (only /metrics and /health, as configured) */
    GW_API_READ,     /* a "read" or an "admin" token */
    GW_API_ADMIN,    /* an "admin" token */
} gw_api_role;

typedef struct gw_api_req gw_api_req;
typedef void (*gw_api_fn)(gw_api_req *r, gw_api_ctx *ctx);

typedef struct gw_api_route {
    const char *method;  /* "GET", "POST", "PUT", "PATCH", "DELETE" */
    const char *pattern; /* "/api/devices/{id}/functions/{fn}": {name} matches one segment */
    gw_api_role role;
    bool json_body; /* the body must be JSON (415 otherwise, 400 with line:column if broken) */
    gw_api_fn fn;
} gw_api_route;

/* Every route, ending with a zeroed entry (api_routes.c). A path that matches a pattern with
 * another method answers 405 with Allow; no match answers 404. */
extern const gw_api_route gw_api_routes[];

/* ---- The request (valid until it is answered, or until its on_gone callback ran) ---- */
const char *gw_api_method(const gw_api_req *r);
const char *gw_api_path(const gw_api_req *r);
/* {name} of the pattern, percent-decoded; NULL if the pattern has no such name. */
const char *gw_api_param(const gw_api_req *r, const char *name);
/* ?name=value, percent-decoded; NULL if absent. */
const char *gw_api_query(const gw_api_req *r, const char *name);
const char *gw_api_header(const gw_api_req *r, const char *name);
/* The parsed body of a json_body route (borrowed; NULL when the request has no body). */
json_t *gw_api_body(const gw_api_req *r);
/* The name of the token that authorised the request ("" when none was needed). */
const char *gw_api_token_name(const gw_api_req *r);
/* The role of the token that authorised r (GW_API_READ or GW_API_ADMIN; GW_API_NONE if none). */
gw_api_role gw_api_token_role(const gw_api_req *r);
/* The peer as "address:port" (for logs). */
const char *gw_api_peer(const gw_api_req *r);

/* ---- Answers: exactly one per request, on the main loop ---- */
/* Sends body (stolen; may be NULL for an empty 204) with the status. */
void gw_api_reply_json(gw_api_req *r, int status, json_t *body);
/* {"error":code,"message":...}; for 400s, path (may be NULL) names the JSON path of what is wrong
 * and is added as "path". */
void gw_api_reply_error(gw_api_req *r, int status, const char *code, const char *path,
                        const char *fmt, ...) __attribute__((format(printf, 5, 6)));

/* A handler that cannot answer before it returns calls this first, then answers later with
 * gw_api_reply_json/_error on the main loop. If the client goes away first, on_gone(arg) runs
 * once on the main loop and r must not be used afterwards (nor answered). */
void gw_api_defer(gw_api_req *r, void (*on_gone)(void *arg), void *arg);

/* ---- Streams (Server-Sent Events) ---- */
typedef struct gw_api_stream gw_api_stream;
/* Turns r into a 200 text/event-stream answer whose bytes are queued by gw_api_stream_write.
 * At most max_buffer bytes wait unsent: a write past it returns -1 (the caller counts the drop
 * and closes). on_gone(arg) runs once when the client goes away or after gw_api_stream_close;
 * the stream must not be used afterwards. NULL if the stream cannot be opened (r was answered). */
gw_api_stream *gw_api_stream_open(gw_api_req *r, size_t max_buffer, void (*on_gone)(void *arg),
                                  void *arg);
int gw_api_stream_write(gw_api_stream *s, const char *data, size_t len);
void gw_api_stream_close(gw_api_stream *s);

#endif

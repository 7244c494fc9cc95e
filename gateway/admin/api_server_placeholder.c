/* api_server_placeholder.c: TEMPORARY link placeholder for api.h until api_server.c (the HTTP
 * server) lands; it serves nothing. Deleted by the HTTP server's branch. */
#include "api.h"

const char *gw_api_method(const gw_api_req *r)
{
    (void)r;
    return "";
}
const char *gw_api_path(const gw_api_req *r)
{
    (void)r;
    return "";
}
const char *gw_api_param(const gw_api_req *r, const char *n)
{
    (void)r;
    (void)n;
    return NULL;
}
const char *gw_api_query(const gw_api_req *r, const char *n)
{
    (void)r;
    (void)n;
    return NULL;
}
const char *gw_api_header(const gw_api_req *r, const char *n)
{
    (void)r;
    (void)n;
    return NULL;
}
json_t *gw_api_body(const gw_api_req *r)
{
    (void)r;
    return NULL;
}
const char *gw_api_token_name(const gw_api_req *r)
{
    (void)r;
    return "";
}
const char *gw_api_peer(const gw_api_req *r)
{
    (void)r;
    return "";
}
void gw_api_reply_json(gw_api_req *r, int status, json_t *body)
{
    (void)r;
    (void)status;
    json_decref(body);
}
void gw_api_reply_error(gw_api_req *r, int status, const char *code, const char *path,
                        const char *fmt, ...)
{
    (void)r;
    (void)status;
    (void)code;
    (void)path;
    (void)fmt;
}
void gw_api_defer(gw_api_req *r, void (*on_gone)(void *), void *arg)
{
    (void)r;
    (void)on_gone;
    (void)arg;
}
gw_api_stream *gw_api_stream_open(gw_api_req *r, size_t m, void (*g)(void *), void *a)
{
    (void)r;
    (void)m;
    (void)g;
    (void)a;
    return NULL;
}
int gw_api_stream_write(gw_api_stream *s, const char *d, size_t l)
{
    (void)s;
    (void)d;
    (void)l;
    return -1;
}
void gw_api_stream_close(gw_api_stream *s)
{
    (void)s;
}

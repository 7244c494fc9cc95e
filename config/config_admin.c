/* config_admin.c: gateway.json's "admin" section: the management API's listeners (or the older
 * address + port shorthand for one), its tokens (name, role, SHA-256 of the token) and bounds. */
#include "internal.h"

#include <arpa/inet.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cfg_schema.h"

typedef struct gw_admin_file {
    bool enabled;
    char *address;
    uint32_t port;
    gw_listen_list listeners;
    json_t *tokens;
    bool open_metrics;
    uint32_t max_body, max_connections, idle_timeout_ms, stream_clients_max, stream_buffer;
    char *web_root;
} gw_admin_file;

#define AF(name, type, field, lo, hi, ...)                                                         \
    {                                                                                              \
        name, type, offsetof(gw_admin_file, field), lo, hi, NULL, false, __VA_ARGS__               \
    }
static const gw_cfg_field admin_fields[] = {
    AF("enabled", GW_CFG_BOOL, enabled, 0, 0, GW_CFG_DEF(true),
       .doc = "Serve the API, metrics, health check and console; false opens no port."),
    AF("address", GW_CFG_STRING, address, 0, 0, GW_CFG_DEF_STR("127.0.0.1"),
       .doc =
           "Address of the one-listener shorthand (numeric IPv4 or IPv6); not with `listeners`."),
    AF("port", GW_CFG_UINT32, port, 0, 65535, GW_CFG_DEF(9100),
       .doc = "Port of the one-listener shorthand; 0: an ephemeral port."),
    AF("listeners", GW_CFG_LISTENERS, listeners, 0, 0, GW_CFG_DEF_STR(NULL),
       .doc = "Every address and port the admin server listens on, all serving the same; replaces "
              "`address` + `port`."),
    AF("tokens", GW_CFG_JSON, tokens, 0, 0, GW_CFG_DEF_STR(NULL),
       .doc = "Who may call `/api/`: `{\"name\", \"role\": \"read\" or \"admin\", \"sha256\"}` "
              "entries; none: the API is closed."),
    AF("open_metrics", GW_CFG_BOOL, open_metrics, 0, 0, GW_CFG_DEF(true),
       .doc = "`/metrics` and `/health` need no token on a loopback listener."),
    AF("max_body", GW_CFG_UINT32, max_body, 1024, 1073741824, GW_CFG_DEF(8 * 1024 * 1024),
       .doc = "The largest request body, in bytes; a larger one is refused 413."),
    AF("max_connections", GW_CFG_UINT32, max_connections, 1, 100000, GW_CFG_DEF(64),
       .doc = "Open API connections at most; one more is answered 503 and closed."),
    AF("idle_timeout_ms", GW_CFG_UINT32, idle_timeout_ms, 100, 3600000, GW_CFG_DEF(30000),
       .doc = "A request must arrive whole within this many ms, and an idle keep-alive connection "
              "is closed after it."),
    AF("stream_clients_max", GW_CFG_UINT32, stream_clients_max, 0, 10000, GW_CFG_DEF(16),
       .doc = "Open `GET /api/stream` clients at most; 0: no stream."),
    AF("stream_buffer", GW_CFG_UINT32, stream_buffer, 4096, 67108864, GW_CFG_DEF(262144),
       .doc = "Bytes a stream client may have unsent before it is dropped (it holds two buffers of "
              "this size)."),
    AF("web_root", GW_CFG_STRING, web_root, 0, 0, GW_CFG_DEF_STR("../web"),
       .doc = "Folder of the web console's files served at `/`, relative to gateway.json's folder; "
              "`\"\"`: no console."),
    {NULL, 0, 0, 0, 0, NULL, false},
};

int gw__config_admin_reference(FILE *f)
{
    return gw_cfg_reference(f, "admin", admin_fields);
}

static int hexval(char ch)
{
    if (ch >= '0' && ch <= '9')
        return ch - '0';
    if (ch >= 'a' && ch <= 'f')
        return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F')
        return ch - 'A' + 10;
    return -1;
}

/* One entry of "tokens": {"name", "role": "read"|"admin", "sha256": 64 hex digits}. */
static void load_token(gw__config_ctx *x, gw_config *c, const json_t *t, size_t i,
                       gw_admin_token *out)
{
    static const char *const allowed[] = {"name", "role", "sha256", NULL};
    char path[96], p[128];
    gw_diag_pathf(path, sizeof(path), "admin.tokens[%zu]", i);
    if (!json_is_object(t)) {
        gw__config_err(x, c->file, path, "must be an object {\"name\", \"role\", \"sha256\"}");
        return;
    }
    gw__config_unknown_keys(x, t, allowed, NULL, c->file, path);
    const char *name = json_string_value(json_object_get(t, "name"));
    const char *role = json_string_value(json_object_get(t, "role"));
    const char *hex = json_string_value(json_object_get(t, "sha256"));
    snprintf(p, sizeof(p), "%s.name", path);
    if (!name || !*name || strlen(name) >= sizeof(out->name))
        gw__config_err(x, c->file, p, "must be a non-empty string of at most %zu bytes",
                       sizeof(out->name) - 1);
    else
        snprintf(out->name, sizeof(out->name), "%s", name);
    snprintf(p, sizeof(p), "%s.role", path);
    if (role && !strcmp(role, "read"))
        out->role = 1;
    else if (role && !strcmp(role, "admin"))
        out->role = 2;
    else
        gw__config_err(x, c->file, p, "must be \"read\" or \"admin\"");
    snprintf(p, sizeof(p), "%s.sha256", path);
    bool ok = hex && strlen(hex) == 64;
    for (size_t k = 0; ok && k < 32; k++) {
        int hi = hexval(hex[2 * k]), lo = hexval(hex[2 * k + 1]);
        ok = hi >= 0 && lo >= 0;
        out->sha256[k] = (unsigned char)(hi << 4 | lo);
    }
    if (!ok)
        gw__config_err(x, c->file, p,
                       "must be the SHA-256 of the token as 64 hex digits (iotgw --hash-token)");
}

static void load_tokens(gw__config_ctx *x, gw_config *c, const json_t *tokens)
{
    if (!tokens)
        return;
    if (!json_is_array(tokens)) {
        gw__config_err(x, c->file, "admin.tokens", "must be an array of tokens");
        return;
    }
    size_t n = json_array_size(tokens);
    if (n == 0)
        return;
    c->admin_http.tokens = calloc(n, sizeof(gw_admin_token));
    if (!c->admin_http.tokens) {
        gw__config_err(x, c->file, "admin.tokens", "out of memory");
        return;
    }
    c->admin_http.n_tokens = n;
    for (size_t i = 0; i < n; i++)
        load_token(x, c, json_array_get(tokens, i), i, &c->admin_http.tokens[i]);
    for (size_t i = 0; i < n; i++)
        for (size_t j = 0; j < i; j++)
            if (c->admin_http.tokens[i].name[0] &&
                !strcmp(c->admin_http.tokens[i].name, c->admin_http.tokens[j].name)) {
                char p[96];
                gw_diag_pathf(p, sizeof(p), "admin.tokens[%zu].name", i);
                gw__config_err(x, c->file, p, "\"%s\" is the name of admin.tokens[%zu] too",
                               c->admin_http.tokens[i].name, j);
            }
}

void gw__config_load_admin(gw__config_ctx *x, gw_config *c, const json_t *obj)
{
    unsigned char bin[16];
    gw_admin_file a = {0}; /* the defaults are admin_fields' */
    gw_admin_cfg *h = &c->admin_http;

    x->errors += gw_cfg_parse(admin_fields, obj, &a, c->file, "admin", x->diag);
    c->admin_enabled = a.enabled;
    c->admin.port = (uint16_t)a.port;
    if (a.address) {
        if (strlen(a.address) >= sizeof(c->admin.address) ||
            (inet_pton(AF_INET, a.address, bin) != 1 && inet_pton(AF_INET6, a.address, bin) != 1))
            gw__config_err(x, c->file, "admin.address",
                           "\"%s\" is not a numeric IPv4 or IPv6 address", a.address);
        else
            snprintf(c->admin.address, sizeof(c->admin.address), "%s", a.address);
    }
    if (a.listeners.n > 0) {
        if (json_object_get(obj, "address") || json_object_get(obj, "port"))
            gw__config_err(x, c->file, "admin.listeners",
                           "give either \"listeners\" or the \"address\" + \"port\" shorthand");
        h->listeners = a.listeners.v;
        h->n_listeners = a.listeners.n;
        a.listeners.v = NULL;
        a.listeners.n = 0;
        c->admin = h->listeners[0];
    } else if ((h->listeners = calloc(1, sizeof(gw_listen))) != NULL) {
        h->listeners[0] = c->admin;
        h->n_listeners = 1;
    } else {
        gw__config_err(x, c->file, "admin", "out of memory");
    }
    load_tokens(x, c, a.tokens);
    h->open_metrics = a.open_metrics;
    h->max_body = a.max_body;
    h->max_connections = a.max_connections;
    h->idle_timeout_ms = a.idle_timeout_ms;
    h->stream_clients_max = a.stream_clients_max;
    h->stream_buffer = a.stream_buffer;
    /* the web console's files, relative to gateway.json's folder; "" serves no console */
    if (a.web_root && *a.web_root && !(h->web_root = gw__config_resolve(c->dir, a.web_root)))
        gw__config_err(x, c->file, "admin.web_root", "out of memory");
    gw_cfg_free(admin_fields, &a);
}

void gw__config_admin_free(gw_config *c)
{
    free(c->admin_http.listeners);
    free(c->admin_http.tokens);
    free(c->admin_http.web_root);
    memset(&c->admin_http, 0, sizeof(c->admin_http));
}

/* api_static.c: the web console's static files (admin.web_root) served at "/" by libh2o's file
 * handler: content types, caching (no-cache for pages, max-age for /assets/), a strict
 * Content-Security-Policy and nosniff; GET and HEAD only, paths normalised by h2o (no traversal).
 */
#define H2O_USE_LIBUV 1
#include <h2o.h>

#include <string.h>
#include <sys/stat.h>

#include "../util/log.h"
#include "api_static.h"

#define ASSETS_MAX_AGE "max-age=300" /* a console upgrade shows within 5 minutes without reload */

static h2o_iovec_t h_csp = {H2O_STRLIT("content-security-policy")};
static h2o_iovec_t h_nosniff = {H2O_STRLIT("x-content-type-options")};
static h2o_iovec_t h_frame = {H2O_STRLIT("x-frame-options")};
static h2o_iovec_t h_referrer = {H2O_STRLIT("referrer-policy")};

/* No inline script or style, nothing from elsewhere, not framed; fetch() only to the gateway. */
#define CSP                                                                                        \
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "              \
    "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "                 \
    "frame-ancestors 'none'"

#define COMMON_HEADERS                                                                             \
    {H2O_HEADERS_CMD_SET, &h_csp, {H2O_STRLIT(CSP)}},                                              \
        {H2O_HEADERS_CMD_SET, &h_nosniff, {H2O_STRLIT("nosniff")}},                                \
        {H2O_HEADERS_CMD_SET, &h_frame, {H2O_STRLIT("DENY")}},                                     \
    {                                                                                              \
        H2O_HEADERS_CMD_SET, &h_referrer,                                                          \
        {                                                                                          \
            H2O_STRLIT("no-referrer")                                                              \
        }                                                                                          \
    }

/* h2o keeps pointers to these: static. "/" also carries the API's answers (no-cache suits them). */
static h2o_headers_command_t root_headers[] = {
    COMMON_HEADERS,
    {H2O_HEADERS_CMD_SETIFEMPTY, &H2O_TOKEN_CACHE_CONTROL->buf, {H2O_STRLIT("no-cache")}},
    {H2O_HEADERS_CMD_NULL, NULL, {NULL, 0}},
};
static h2o_headers_command_t asset_headers[] = {
    COMMON_HEADERS,
    {H2O_HEADERS_CMD_SET, &H2O_TOKEN_CACHE_CONTROL->buf, {H2O_STRLIT(ASSETS_MAX_AGE)}},
    {H2O_HEADERS_CMD_NULL, NULL, {NULL, 0}},
};

static const char *index_files[] = {"index.html", NULL};

static h2o_mimemap_t *console_types(void)
{
    h2o_mimemap_t *m = h2o_mimemap_create();
    h2o_mimemap_define_mimetype(m, "html", "text/html; charset=utf-8", NULL);
    h2o_mimemap_define_mimetype(m, "js", "text/javascript; charset=utf-8", NULL);
    h2o_mimemap_define_mimetype(m, "css", "text/css; charset=utf-8", NULL);
    h2o_mimemap_define_mimetype(m, "svg", "image/svg+xml", NULL);
    h2o_mimemap_define_mimetype(m, "json", "application/json", NULL);
    h2o_mimemap_define_mimetype(m, "txt", "text/plain; charset=utf-8", NULL);
    h2o_mimemap_set_default_type(m, "application/octet-stream", NULL);
    return m;
}

bool gw__api_static_assets(struct st_h2o_hostconf_t *host, const char *web_root)
{
    char assets[4096];
    struct stat st;
    if (!web_root)
        return false;
    if (stat(web_root, &st) != 0 || !S_ISDIR(st.st_mode) ||
        snprintf(assets, sizeof(assets), "%s/assets", web_root) >= (int)sizeof(assets)) {
        GW_LOG_INFO("admin", NULL, NULL, "no web console: admin.web_root is not a folder",
                    "web_root=%s", web_root);
        return false;
    }
    h2o_mimemap_t *types = console_types();
    h2o_pathconf_t *ap = h2o_config_register_path(host, "/assets/", 0);
    h2o_file_register(ap, assets, NULL, types, 0);
    h2o_headers_register(ap, asset_headers);
    h2o_mem_release_shared(types);
    GW_LOG_INFO("admin", NULL, NULL, "web console served at /", "web_root=%s", web_root);
    return true;
}

void gw__api_static_root(struct st_h2o_pathconf_t *root, const char *web_root)
{
    h2o_headers_register(root, root_headers);
    if (!web_root)
        return;
    h2o_mimemap_t *types = console_types();
    h2o_file_register(root, web_root, index_files, types, 0);
    h2o_mem_release_shared(types);
}

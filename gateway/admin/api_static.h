/* api_static.h: the web console's static files (admin.web_root) on the management API's HTTP
 * server: api_server.c calls these while it builds its h2o host (api_static.c). */
#ifndef GW_API_STATIC_H
#define GW_API_STATIC_H

#include <stdbool.h>

struct st_h2o_hostconf_t;
struct st_h2o_pathconf_t;

/* Registers "/assets/" (web_root/assets, cached for a while). Call before the "/" path is
 * registered: h2o picks the first registered path that matches. false (and nothing registered)
 * when web_root is NULL or not a folder: then pass NULL to gw__api_static_root too. */
bool gw__api_static_assets(struct st_h2o_hostconf_t *host, const char *web_root);
/* On the "/" path, after the API's handler (which passes every path outside /api/, /metrics and
 * /health on): the security headers for every answer, and the files of web_root (index.html for
 * "/"). Without web_root only the headers. */
void gw__api_static_root(struct st_h2o_pathconf_t *root, const char *web_root);

#endif

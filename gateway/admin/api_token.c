/* api_token.c: GET /api/token: the name and role of the token that authorised the request, so
 * that a client (the web console) shows write controls to admin tokens only; the API still
 * refuses a read token's writes with 403 whatever a client shows. */
#include "api_handlers.h"

#include <string.h>

#include "../../config/config.h"

void gw_api_token_info(gw_api_req *r, gw_api_ctx *ctx)
{
    const char *name = gw_api_token_name(r);
    const gw_admin_cfg *ac = &ctx->cfg->admin_http;
    int role = 1; /* a token unknown to the current configuration: read (the server's copy
                   * of the tokens is taken at start; a reload does not change them) */
    for (size_t i = 0; name && i < ac->n_tokens; i++)
        if (!strcmp(ac->tokens[i].name, name))
            role = ac->tokens[i].role;
    json_t *body =
        json_pack("{s:s, s:s}", "name", name ? name : "", "role", role == 2 ? "admin" : "read");
    if (!body) {
        gw_api_reply_error(r, 503, "out_of_memory", NULL, "out of memory");
        return;
    }
    gw_api_reply_json(r, 200, body);
}

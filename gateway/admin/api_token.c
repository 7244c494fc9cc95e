/* api_token.c: GET /api/token: the name and role of the token that authorised the request, so
 * that a client (the web console) shows write controls to admin tokens only; the API still
 * refuses a read token's writes with 403 whatever a client shows. */
#include "api_handlers.h"

void gw_api_token_info(gw_api_req *r, gw_api_ctx *ctx)
{
    (void)ctx;
    const char *name = gw_api_token_name(r);
    json_t *body = json_pack("{s:s, s:s}", "name", name ? name : "", "role",
                             gw_api_token_role(r) == GW_API_ADMIN ? "admin" : "read");
    if (!body) {
        gw_api_reply_error(r, 503, "out_of_memory", NULL, "out of memory");
        return;
    }
    gw_api_reply_json(r, 200, body);
}

/* api_products.c: GET /api/products (a summary of each configured product, with its device count)
 * and GET /api/products/{id} (the product's own JSON document as configured: thing model, codec,
 * protocol, frame layout). */
#include "api_handlers.h"

#include <stdlib.h>
#include <string.h>

#include "../../config/config.h"

static json_t *str_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

void gw_api_products_list(gw_api_req *r, gw_api_ctx *ctx)
{
    const gw_config *c = ctx->cfg;
    size_t *count = c->n_products ? calloc(c->n_products, sizeof(*count)) : NULL;
    json_t *list = json_array(), *body = NULL;

    if (!list || (c->n_products && !count))
        goto fail;
    for (size_t i = 0; i < c->n_devices; i++) {
        const gw_product *p = c->devices[i].product;
        if (p >= c->products && p < c->products + c->n_products)
            count[p - c->products]++;
    }
    for (size_t i = 0; i < c->n_products; i++) {
        const gw_product *p = &c->products[i];
        const json_t *desc = json_object_get(p->raw, "description");
        json_t *o = json_pack(
            "{s:s, s:o, s:O, s:o, s:o, s:I, s:I, s:I, s:I, s:b}", "id", p->id, "name",
            str_or_null(p->name), "description", json_is_string(desc) ? desc : json_null(),
            "protocol", str_or_null(p->protocol), "codec", str_or_null(p->codec), "properties",
            (json_int_t)p->n_properties, "events", (json_int_t)p->n_events, "functions",
            (json_int_t)p->n_functions, "devices", (json_int_t)count[i], "secret_in_clear",
            gw_config_secret_in_clear(c, p));
        if (!o || json_array_append_new(list, o) != 0)
            goto fail;
    }
    if (!(body = json_pack("{s:o, s:I}", "products", list, "count", (json_int_t)c->n_products)))
        goto fail_list_taken;
    free(count);
    gw_api_reply_json(r, 200, body);
    return;
fail:
    json_decref(list);
fail_list_taken:
    free(count);
    gw_api_reply_error(r, 503, "out_of_memory", NULL, "out of memory");
}

void gw_api_product_get(gw_api_req *r, gw_api_ctx *ctx)
{
    const char *id = gw_api_param(r, "id");
    const gw_product *p = id ? gw_config_product(ctx->cfg, id) : NULL;
    json_t *doc;

    if (!p) {
        gw_api_reply_error(r, 404, "not_found", NULL, "no product \"%s\"", id ? id : "");
        return;
    }
    /* a copy: the configured document is read by the loops' threads (codec sections) */
    if (!p->raw || !(doc = json_deep_copy(p->raw))) {
        gw_api_reply_error(r, 503, "out_of_memory", NULL, "out of memory");
        return;
    }
    gw_api_reply_json(r, 200, doc);
}

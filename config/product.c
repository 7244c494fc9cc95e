/* product.c: the destructors of a loaded product (config/product.h): everything the config loader
 * allocated for its thing model and identity; the codec's and adapter's data are freed by their
 * owners first. */
#include "product.h"

#include <stdlib.h>
#include <string.h>

/* ---- destructors ------------------------------------------------------------------------- */

void gw_tm_value_spec_clear(gw_value_spec *s)
{
    if (!s)
        return;
    free(s->id);
    free(s->name);
    free(s->unit);
    for (size_t i = 0; s->enum_values && i < s->n_enum; i++)
        free(s->enum_values[i]);
    free(s->enum_values);
    for (size_t i = 0; s->fields && i < s->n_fields; i++)
        gw_tm_value_spec_clear(&s->fields[i]);
    free(s->fields);
    if (s->item) {
        gw_tm_value_spec_clear(s->item);
        free(s->item);
    }
    memset(s, 0, sizeof(*s));
}

static void specs_free(gw_value_spec *v, size_t n)
{
    for (size_t i = 0; v && i < n; i++)
        gw_tm_value_spec_clear(&v[i]);
    free(v);
}

void gw_tm_product_clear(gw_product *p)
{
    if (!p)
        return;
    /* codec_state belongs to the codec: whoever ran codec_ops->init runs uninit first. */
    free(p->id);
    free(p->name);
    free(p->protocol);
    free(p->codec);
    free(p->file);
    json_decref(p->raw);
    specs_free(p->properties, p->n_properties);
    for (size_t i = 0; p->events && i < p->n_events; i++) {
        free(p->events[i].id);
        free(p->events[i].name);
        specs_free(p->events[i].params, p->events[i].n_params);
    }
    free(p->events);
    for (size_t i = 0; p->functions && i < p->n_functions; i++) {
        free(p->functions[i].id);
        free(p->functions[i].name);
        specs_free(p->functions[i].inputs, p->functions[i].n_inputs);
        specs_free(p->functions[i].outputs, p->functions[i].n_outputs);
    }
    free(p->functions);
    memset(p, 0, sizeof(*p));
}

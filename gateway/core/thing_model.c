/* thing_model.c: look-ups in a product's thing model and the validator that checks and normalises
 * every decoded value (types, ranges, enum values, required params) before it becomes an event.
 * Hot path: no allocation beyond the normalised output, paths and details formatted only on
 * failure. */
#include "thing_model.h"
#include "../util/json_write.h"
#include "../util/error.h"

#include <float.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- look-ups ---------------------------------------------------------------------------- */

const gw_value_spec *gw_tm_property(const gw_product *p, const char *id)
{
    if (!p || !id)
        return NULL;
    for (size_t i = 0; i < p->n_properties; i++)
        if (p->properties[i].id && strcmp(p->properties[i].id, id) == 0)
            return &p->properties[i];
    return NULL;
}

const gw_event_spec *gw_tm_event(const gw_product *p, const char *id)
{
    if (!p || !id)
        return NULL;
    for (size_t i = 0; i < p->n_events; i++)
        if (p->events[i].id && strcmp(p->events[i].id, id) == 0)
            return &p->events[i];
    return NULL;
}

const gw_function_spec *gw_tm_function(const gw_product *p, const char *id)
{
    if (!p || !id)
        return NULL;
    for (size_t i = 0; i < p->n_functions; i++)
        if (p->functions[i].id && strcmp(p->functions[i].id, id) == 0)
            return &p->functions[i];
    return NULL;
}

const char *gw_type_name(gw_type t)
{
    switch (t) {
    case GW_T_INT:
        return "int";
    case GW_T_LONG:
        return "long";
    case GW_T_FLOAT:
        return "float";
    case GW_T_DOUBLE:
        return "double";
    case GW_T_BOOL:
        return "bool";
    case GW_T_STRING:
        return "string";
    case GW_T_ENUM:
        return "enum";
    case GW_T_DATE:
        return "date";
    case GW_T_STRUCT:
        return "struct";
    case GW_T_ARRAY:
        return "array";
    }
    return "unknown";
}

/* ---- failure formatting (cold) ----------------------------------------------------------- */

/* A value's path as a chain on the stack: root ("properties"), then ".id" or "[i]" segments.
 * Only turned into text when a check fails. */
typedef struct tm_path {
    const struct tm_path *up;
    const char *key; /* NULL: array index */
    size_t key_len;  /* bytes of key to print */
    size_t idx;
} tm_path;

static size_t path_fmt(const tm_path *p, char *buf, size_t cap)
{
    size_t n = p->up ? path_fmt(p->up, buf, cap) : 0;
    if (n >= cap)
        return n;
    int w;
    if (p->key)
        w = snprintf(buf + n, cap - n, "%s%.*s", p->up ? "." : "", (int)p->key_len, p->key);
    else
        w = snprintf(buf + n, cap - n, "[%zu]", p->idx);
    if (w < 0)
        return n;
    n += (size_t)w;
    return n < cap ? n : cap - 1;
}

static int fail(gw_reject *rej, const tm_path *p, gw_reason reason, const char *fmt, ...)
    __attribute__((format(printf, 4, 5), cold, noinline));

static int fail(gw_reject *rej, const tm_path *p, gw_reason reason, const char *fmt, ...)
{
    char path[128], what[160];
    path[0] = '\0';
    path_fmt(p, path, sizeof(path));
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof(what), fmt, ap);
    va_end(ap);
    return gw_reject_set(rej, reason, "%s: %s", path, what);
}

/* Shortest text that reads back as d: "125", "80.1", "3.4028234663852886e+38". */
static void fmt_double(char *buf, size_t cap, double d)
{
    snprintf(buf, cap, "%.15g", d);
    if (strtod(buf, NULL) != d)
        snprintf(buf, cap, "%.17g", d);
}

/* A JSON number as the device sent it (integer or real). */
static void fmt_number(char *buf, size_t cap, const json_t *v)
{
    if (json_is_integer(v))
        snprintf(buf, cap, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
    else
        fmt_double(buf, cap, json_real_value(v));
}

/* ---- the per-value rules (also the JSON codec's in-place reader's) ----------------------- */

/* int, long, date: the type's own bounds. */
static void type_bounds(const gw_value_spec *s, int64_t *lo, int64_t *hi)
{
    *lo = s->type == GW_T_INT ? INT32_MIN : s->type == GW_T_DATE ? 0 : INT64_MIN;
    *hi = s->type == GW_T_INT ? INT32_MAX : INT64_MAX;
}

bool gw__tm_integer_ok(const gw_value_spec *s, int64_t x)
{
    int64_t lo, hi;
    type_bounds(s, &lo, &hi);
    if (s->has_min && s->imin > lo)
        lo = s->imin;
    if (s->has_max && s->imax < hi)
        hi = s->imax;
    return x >= lo && x <= hi;
}

bool gw__tm_real_ok(const gw_value_spec *s, double d)
{
    return isfinite(d) && !(s->type == GW_T_FLOAT && fabs(d) > FLT_MAX) &&
           !(s->has_min && d < s->min) && !(s->has_max && d > s->max);
}

bool gw__tm_string_ok(const gw_value_spec *s, size_t len)
{
    return len <= (s->max_length ? s->max_length : GW_TM_STRING_CAP);
}

bool gw__tm_enum_ok(const gw_value_spec *s, const char *str, size_t len)
{
    for (size_t i = 0; i < s->n_enum; i++) {
        const char *e = s->enum_values[i];
        if (e && strlen(e) == len && memcmp(e, str, len) == 0)
            return true;
    }
    return false;
}

/* ---- value checks ------------------------------------------------------------------------ */

static int check(const gw_value_spec *s, json_t *v, const tm_path *p, json_t **out, gw_reject *rej);

static int wrong_type(const gw_value_spec *s, const json_t *v, const tm_path *p, gw_reject *rej)
{
    return fail(rej, p, GW_R_WRONG_TYPE, "expected %s, got %s", gw_type_name(s->type),
                gw_json_kind(v));
}

/* int, long, date: JSON integers within the type's bounds and the spec's min/max. */
static int check_integer(const gw_value_spec *s, json_t *v, const tm_path *p, json_t **out,
                         gw_reject *rej)
{
    if (!json_is_integer(v))
        return wrong_type(s, v, p, rej);
    int64_t x = json_integer_value(v);
    if (gw__tm_integer_ok(s, x)) {
        *out = json_incref(v);
        return 0;
    }
    int64_t lo, hi;
    type_bounds(s, &lo, &hi);
    bool own_lo = true, own_hi = true;
    if (s->has_min && s->imin > lo) {
        lo = s->imin;
        own_lo = false;
    }
    if (s->has_max && s->imax < hi) {
        hi = s->imax;
        own_hi = false;
    }
    if (x < lo)
        return fail(rej, p, GW_R_OUT_OF_RANGE, "%lld is below %s%s %lld", (long long)x,
                    own_lo ? gw_type_name(s->type) : "", own_lo ? " min" : "min", (long long)lo);
    if (x > hi)
        return fail(rej, p, GW_R_OUT_OF_RANGE, "%lld is above %s%s %lld", (long long)x,
                    own_hi ? gw_type_name(s->type) : "", own_hi ? " max" : "max", (long long)hi);
    return fail(rej, p, GW_R_OUT_OF_RANGE, "%lld: out of range", (long long)x); /* not reached */
}

static int check_real(const gw_value_spec *s, json_t *v, const tm_path *p, json_t **out,
                      gw_reject *rej)
{
    if (!json_is_number(v))
        return wrong_type(s, v, p, rej);
    double d = json_number_value(v);
    if (gw__tm_real_ok(s, d)) {
        *out = json_is_real(v) ? json_incref(v) : json_real(d);
        return *out ? 0 : fail(rej, p, GW_R_MALFORMED_PAYLOAD, "out of memory");
    }
    char a[40], b[40];
    if (!isfinite(d)) {
        fmt_number(a, sizeof(a), v);
        return fail(rej, p, GW_R_OUT_OF_RANGE, "%s is not a finite number", a);
    }
    if (s->type == GW_T_FLOAT && fabs(d) > FLT_MAX) {
        fmt_number(a, sizeof(a), v);
        fmt_double(b, sizeof(b), FLT_MAX);
        return fail(rej, p, GW_R_OUT_OF_RANGE, "%s is outside the float range +-%s", a, b);
    }
    if (s->has_min && d < s->min) {
        fmt_number(a, sizeof(a), v);
        fmt_double(b, sizeof(b), s->min);
        return fail(rej, p, GW_R_OUT_OF_RANGE, "%s is below min %s", a, b);
    }
    if (s->has_max && d > s->max) {
        fmt_number(a, sizeof(a), v);
        fmt_double(b, sizeof(b), s->max);
        return fail(rej, p, GW_R_OUT_OF_RANGE, "%s is above max %s", a, b);
    }
    return fail(rej, p, GW_R_OUT_OF_RANGE, "out of range"); /* not reached */
}

static int check_enum(const gw_value_spec *s, json_t *v, const tm_path *p, json_t **out,
                      gw_reject *rej)
{
    if (!json_is_string(v))
        return wrong_type(s, v, p, rej);
    const char *str = json_string_value(v);
    size_t len = json_string_length(v);
    if (gw__tm_enum_ok(s, str, len)) {
        *out = json_incref(v);
        return 0;
    }
    char list[128];
    size_t n = 0;
    list[0] = '\0';
    for (size_t i = 0; i < s->n_enum && n < sizeof(list); i++) {
        int w = snprintf(list + n, sizeof(list) - n, "%s%s", i ? ", " : "",
                         s->enum_values[i] ? s->enum_values[i] : "");
        if (w < 0)
            break;
        n += (size_t)w;
    }
    size_t shown = len > 40 ? 40 : len;
    while (shown < len && shown > 0 && ((unsigned char)str[shown] & 0xC0) == 0x80)
        shown--; /* not inside a UTF-8 sequence */
    return fail(rej, p, GW_R_ENUM_VALUE, "\"%.*s%s\" is not one of %s", (int)shown, str,
                shown < len ? "..." : "", list);
}

/* How an object of named values (report, event data, function params, struct) is checked. */
typedef struct fields_rule {
    gw_reason unknown;   /* unknown key: unknown_property or unknown_param */
    const char *not_in;  /* "in the thing model", "a param of event", "a field of struct" */
    const char *owner;   /* event id, struct id: appended to not_in; may be NULL */
    bool check_required; /* false for property reports: every property is optional */
} fields_rule;

/* Whether id is key[0..key_len) (key need not be NUL-terminated and may hold an embedded NUL:
 * codecs other than JSON). */
static bool spec_is(const char *id, const char *key, size_t key_len)
{
    if (!id || (key_len && id[0] != key[0]))
        return false;
    size_t j = 0;
    while (j < key_len && id[j] && id[j] == key[j])
        j++;
    return j == key_len && !id[j];
}

const gw_value_spec *gw__tm_find_spec(const gw_value_spec *specs, size_t n, const char *key,
                                      size_t key_len)
{
    for (size_t i = 0; i < n; i++)
        if (spec_is(specs[i].id, key, key_len))
            return &specs[i];
    return NULL;
}

const gw_value_spec *gw__tm_find_spec_from(const gw_value_spec *specs, size_t n, const char *key,
                                           size_t key_len, size_t guess)
{
    if (guess < n && spec_is(specs[guess].id, key, key_len))
        return &specs[guess];
    return gw__tm_find_spec(specs, n, key, key_len);
}

/* obj: an object or NULL (= {}). Every key must name a spec; every required spec must be
 * present. *out: a new object of normalised values, in obj's key order. */
static int check_fields(const gw_value_spec *specs, size_t n, const fields_rule *rule, json_t *obj,
                        const tm_path *p, json_t **out, gw_reject *rej)
{
    json_t *res = json_object();
    if (!res)
        return fail(rej, p, GW_R_MALFORMED_PAYLOAD, "out of memory");
    size_t required_seen = 0;
    void *it = obj ? json_object_iter(obj) : NULL;
    for (; it; it = json_object_iter_next(obj, it)) {
        const char *key = json_object_iter_key(it);
        size_t key_len = json_object_iter_key_len(it);
        tm_path seg = {p, key, key_len, 0};
        const gw_value_spec *s = gw__tm_find_spec(specs, n, key, key_len);
        if (!s) {
            json_decref(res);
            return fail(rej, &seg, rule->unknown, "not %s%s%s", rule->not_in,
                        rule->owner ? " " : "", rule->owner ? rule->owner : "");
        }
        json_t *nv = NULL;
        int rc = check(s, json_object_iter_value(it), &seg, &nv, rej);
        if (rc != 0) {
            json_decref(res);
            return rc;
        }
        if (json_object_setn_new_nocheck(res, key, key_len, nv) != 0) {
            json_decref(res);
            return fail(rej, &seg, GW_R_MALFORMED_PAYLOAD, "out of memory");
        }
        required_seen += s->required;
    }
    if (rule->check_required) {
        size_t required = 0;
        for (size_t i = 0; i < n; i++)
            required += specs[i].required;
        if (required_seen < required) {
            for (size_t i = 0; i < n; i++) {
                if (specs[i].required && specs[i].id &&
                    !(obj && json_object_get(obj, specs[i].id))) {
                    tm_path seg = {p, specs[i].id, strlen(specs[i].id), 0};
                    json_decref(res);
                    return fail(rej, &seg, GW_R_MISSING_PARAM, "missing");
                }
            }
        }
    }
    *out = res;
    return 0;
}

static int check_array(const gw_value_spec *s, json_t *v, const tm_path *p, json_t **out,
                       gw_reject *rej)
{
    if (!json_is_array(v))
        return wrong_type(s, v, p, rej);
    size_t n = json_array_size(v);
    if (s->max_items && n > s->max_items)
        return fail(rej, p, GW_R_TOO_MANY_ITEMS, "%zu items exceeds max_items %zu", n,
                    s->max_items);
    if (!s->item)
        return fail(rej, p, GW_R_WRONG_TYPE, "array has no item type in the thing model");
    json_t *res = json_array();
    if (!res)
        return fail(rej, p, GW_R_MALFORMED_PAYLOAD, "out of memory");
    for (size_t i = 0; i < n; i++) {
        tm_path seg = {p, NULL, 0, i};
        json_t *nv = NULL;
        int rc = check(s->item, json_array_get(v, i), &seg, &nv, rej);
        if (rc != 0) {
            json_decref(res);
            return rc;
        }
        if (json_array_append_new(res, nv) != 0) {
            json_decref(res);
            return fail(rej, &seg, GW_R_MALFORMED_PAYLOAD, "out of memory");
        }
    }
    *out = res;
    return 0;
}

static int check(const gw_value_spec *s, json_t *v, const tm_path *p, json_t **out, gw_reject *rej)
{
    switch (s->type) {
    case GW_T_INT:
        return check_integer(s, v, p, out, rej);
    case GW_T_LONG:
        return check_integer(s, v, p, out, rej);
    case GW_T_DATE:
        return check_integer(s, v, p, out, rej);
    case GW_T_FLOAT:
    case GW_T_DOUBLE:
        return check_real(s, v, p, out, rej);
    case GW_T_BOOL:
        if (!json_is_boolean(v))
            return wrong_type(s, v, p, rej);
        *out = json_incref(v);
        return 0;
    case GW_T_STRING: {
        if (!json_is_string(v))
            return wrong_type(s, v, p, rej);
        size_t len = json_string_length(v);
        if (!gw__tm_string_ok(s, len))
            return fail(rej, p, GW_R_STRING_TOO_LONG, "%zu bytes exceeds max_length %zu", len,
                        s->max_length ? s->max_length : (size_t)GW_TM_STRING_CAP);
        *out = json_incref(v);
        return 0;
    }
    case GW_T_ENUM:
        return check_enum(s, v, p, out, rej);
    case GW_T_STRUCT: {
        if (!json_is_object(v))
            return wrong_type(s, v, p, rej);
        fields_rule rule = {GW_R_UNKNOWN_PARAM,
                            s->id ? "a field of struct" : "a field of the struct", s->id, true};
        return check_fields(s->fields, s->n_fields, &rule, v, p, out, rej);
    }
    case GW_T_ARRAY:
        return check_array(s, v, p, out, rej);
    }
    return fail(rej, p, GW_R_WRONG_TYPE, "unknown type %d in the thing model", (int)s->type);
}

/* Whether check() hands v back itself (a scalar that needs no normalising): scalars only. */
static bool as_is(const gw_value_spec *s, const json_t *v)
{
    switch (s->type) {
    case GW_T_INT:
    case GW_T_LONG:
    case GW_T_DATE:
        return json_is_integer(v) && gw__tm_integer_ok(s, json_integer_value(v));
    case GW_T_FLOAT:
    case GW_T_DOUBLE:
        return json_is_real(v) && gw__tm_real_ok(s, json_real_value(v));
    case GW_T_BOOL:
        return json_is_boolean(v);
    case GW_T_STRING:
        return json_is_string(v) && gw__tm_string_ok(s, json_string_length(v));
    case GW_T_ENUM:
        return json_is_string(v) && gw__tm_enum_ok(s, json_string_value(v), json_string_length(v));
    default: /* struct, array: their checks build new containers */
        return false;
    }
}

bool gw_tm_report_as_is(const gw_product *p, const json_t *props)
{
    if (!json_is_object(props) || json_object_size(props) == 0)
        return false;
    json_t *obj = (json_t *)props; /* the iterator API takes no const; nothing is changed */
    for (void *it = json_object_iter(obj); it; it = json_object_iter_next(obj, it)) {
        const gw_value_spec *s = gw__tm_find_spec(
            p->properties, p->n_properties, json_object_iter_key(it), json_object_iter_key_len(it));
        if (!s || !as_is(s, json_object_iter_value(it)))
            return false;
    }
    return true;
}

/* ---- public checks ----------------------------------------------------------------------- */

int gw_tm_check_value(const gw_value_spec *s, json_t *v, const char *path, json_t **out,
                      gw_reject *rej)
{
    const char *root = path ? path : "value";
    tm_path p = {NULL, root, strlen(root), 0};
    *out = NULL;
    if (!v)
        return fail(rej, &p, GW_R_MISSING_PARAM, "missing");
    return check(s, v, &p, out, rej);
}

int gw_tm_check_report(const gw_product *p, json_t *props, json_t **out, gw_reject *rej)
{
    static const tm_path root = {NULL, "properties", sizeof("properties") - 1, 0};
    *out = NULL;
    if (!props || (json_is_object(props) && json_object_size(props) == 0))
        return gw_reject_set(rej, GW_R_EMPTY_REPORT, "properties: empty report");
    if (!json_is_object(props))
        return fail(rej, &root, GW_R_MALFORMED_PAYLOAD, "expected object, got %s",
                    gw_json_kind(props));
    static const fields_rule rule = {GW_R_UNKNOWN_PROPERTY, "in the thing model", NULL, false};
    return check_fields(p->properties, p->n_properties, &rule, props, &root, out, rej);
}

int gw_tm_check_event(const gw_product *p, const char *event_id, json_t *data, json_t **out,
                      gw_reject *rej)
{
    static const tm_path root = {NULL, "data", sizeof("data") - 1, 0};
    *out = NULL;
    const gw_event_spec *e = gw_tm_event(p, event_id);
    if (!e) {
        gw_reject_set(rej, GW_R_UNKNOWN_EVENT, "event %.64s: not in the thing model",
                      event_id ? event_id : "(none)");
        return GW_EINVAL;
    }
    if (data && !json_is_object(data))
        return fail(rej, &root, GW_R_MALFORMED_PAYLOAD, "expected object, got %s",
                    gw_json_kind(data));
    fields_rule rule = {GW_R_UNKNOWN_PARAM, "a param of event", e->id, true};
    return check_fields(e->params, e->n_params, &rule, data, &root, out, rej);
}

int gw_tm_check_params(const gw_value_spec *specs, size_t n, const char *prefix, json_t *obj,
                       json_t **out, gw_reject *rej)
{
    const char *root_key = prefix ? prefix : "params";
    tm_path root = {NULL, root_key, strlen(root_key), 0};
    *out = NULL;
    if (obj && !json_is_object(obj))
        return fail(rej, &root, GW_R_MALFORMED_PAYLOAD, "expected object, got %s",
                    gw_json_kind(obj));
    static const fields_rule rule = {GW_R_UNKNOWN_PARAM, "a declared param", NULL, true};
    return check_fields(specs, n, &rule, obj, &root, out, rej);
}

/* config_product.c: products/NAME.json -> gw_product. Parses the product's keys and its thing model
 * (properties, events, functions and their typed value specs) into gateway/core/thing_model.h's
 * structs, reporting every problem with the file and JSON path, then runs the codec's init. */
#include "internal.h"
#include "cfg_schema.h"
#include "../gateway/util/error.h"

#include <dirent.h>
#include <errno.h>
#include <float.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define SPEC_DEPTH_MAX 8
#define PATH_CAP       512

typedef enum spec_kind {
    SPEC_PROPERTY, /* properties[]: access, no required */
    SPEC_PARAM,    /* event params, function inputs/outputs, struct fields: required, no access */
    SPEC_ITEM,     /* array item: no id, no access, no required */
} spec_kind;

/* One product file being parsed. */
typedef struct prod_ctx {
    gw__config_ctx *x;
    const char *file;
} prod_ctx;

static const char *const type_names[] = {"int",    "long", "float", "double", "bool",
                                         "string", "enum", "date",  "struct", "array"};
#define N_TYPES (sizeof(type_names) / sizeof(type_names[0]))

#define TM(t)     (1u << (t))
#define T_NUMERIC (TM(GW_T_INT) | TM(GW_T_LONG) | TM(GW_T_FLOAT) | TM(GW_T_DOUBLE) | TM(GW_T_DATE))
#define T_ALL     0xffffffffu

/* Keys of a value spec and the types they apply to. */
static const struct {
    const char *key;
    unsigned types;
} spec_keys[] = {
    {"id", T_ALL},
    {"name", T_ALL},
    {"description", T_ALL},
    {"type", T_ALL},
    {"min", T_NUMERIC},
    {"max", T_NUMERIC},
    {"unit", T_ALL},
    {"access", T_ALL},
    {"max_length", TM(GW_T_STRING)},
    {"values", TM(GW_T_ENUM)},
    {"fields", TM(GW_T_STRUCT)},
    {"item", TM(GW_T_ARRAY)},
    {"max_items", TM(GW_T_ARRAY)},
    {"required", T_ALL},
};

static const char *const product_keys[] = {"id",         "name",   "description",     "protocol",
                                           "codec",      "auth",   "idle_timeout_ms", "commands",
                                           "properties", "events", "functions",       NULL};
static const char *const event_keys[] = {"id", "name", "description", "level", "params", NULL};
static const char *const function_keys[] = {"id",      "name",       "description", "inputs",
                                            "outputs", "timeout_ms", NULL};
static const char *const levels[] = {"info", "warn", "alert", "error", NULL};

static void err(prod_ctx *pc, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void err(prod_ctx *pc, const char *path, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    gw__config_err(pc->x, pc->file, path, "%s", msg);
}

static const char *join(char *buf, const char *path, const char *key)
{
    if (path && *path)
        gw_diag_pathf(buf, PATH_CAP, "%s.%s", path, key);
    else
        gw_diag_pathf(buf, PATH_CAP, "%s", key);
    return buf;
}

/* A string value into *out (strdup); reports wrong types. */
static void take_string(prod_ctx *pc, const json_t *v, const char *path, char **out)
{
    if (!json_is_string(v)) {
        err(pc, path, "must be a string");
        return;
    }
    free(*out);
    if (!(*out = strdup(json_string_value(v))))
        err(pc, path, "out of memory");
}

/* An id: [A-Za-z0-9_.-]{1,63}. */
static void take_id(prod_ctx *pc, const json_t *v, const char *path, char **out)
{
    if (json_is_string(v) && !gw__config_id_ok(json_string_value(v))) {
        err(pc, path, "\"%s\" must be 1..%d characters of [A-Za-z0-9_.-]", json_string_value(v),
            GW__ID_MAX);
        return;
    }
    take_string(pc, v, path, out);
}

/* An integer in [lo, hi]; false (and reported) if not. */
static bool take_int(prod_ctx *pc, const json_t *v, const char *path, int64_t lo, int64_t hi,
                     int64_t *out)
{
    if (!json_is_integer(v)) {
        err(pc, path, "must be an integer");
        return false;
    }
    json_int_t n = json_integer_value(v);
    if (n < lo || n > hi) {
        err(pc, path, "%lld is out of range %lld..%lld", (long long)n, (long long)lo,
            (long long)hi);
        return false;
    }
    *out = n;
    return true;
}

static int type_of(const char *s)
{
    for (size_t i = 0; i < N_TYPES; i++)
        if (strcmp(type_names[i], s) == 0)
            return (int)i;
    return -1;
}

/* min / max: integers within the type's range for int/long/date, finite numbers otherwise. */
static void take_bound(prod_ctx *pc, gw_value_spec *s, const json_t *v, const char *path,
                       bool is_min)
{
    if (!json_is_number(v)) {
        err(pc, path, "must be a number");
        return;
    }
    if (s->type == GW_T_INT || s->type == GW_T_LONG || s->type == GW_T_DATE) {
        int64_t lo = INT64_MIN, hi = INT64_MAX, n;
        if (s->type == GW_T_INT)
            lo = INT32_MIN, hi = INT32_MAX;
        else if (s->type == GW_T_DATE)
            lo = 0;
        if (!take_int(pc, v, path, lo, hi, &n))
            return;
        if (is_min)
            s->imin = n, s->has_min = true;
        else
            s->imax = n, s->has_max = true;
        return;
    }
    double d = json_number_value(v);
    if (s->type == GW_T_FLOAT && (d > FLT_MAX || d < -FLT_MAX)) {
        err(pc, path, "%g is out of range for type float", d);
        return;
    }
    if (is_min)
        s->min = d, s->has_min = true;
    else
        s->max = d, s->has_max = true;
}

static void take_values(prod_ctx *pc, gw_value_spec *s, const json_t *v, const char *path)
{
    size_t n = json_array_size(v);
    char p[PATH_CAP];

    if (!json_is_array(v) || n == 0) {
        err(pc, path, "must be a non-empty array of strings");
        return;
    }
    if (!(s->enum_values = calloc(n, sizeof(char *)))) {
        err(pc, path, "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        const char *str = json_string_value(json_array_get(v, i));
        gw_diag_pathf(p, sizeof(p), "%s[%zu]", path, i);
        if (!str || !*str) {
            err(pc, p, "must be a non-empty string");
            continue;
        }
        bool dup = false;
        for (size_t j = 0; j < s->n_enum && !dup; j++)
            dup = strcmp(s->enum_values[j], str) == 0;
        if (dup) {
            err(pc, p, "duplicate value \"%s\"", str);
            continue;
        }
        if (!(s->enum_values[s->n_enum] = strdup(str))) {
            err(pc, p, "out of memory");
            continue;
        }
        s->n_enum++;
    }
}

static void parse_specs(prod_ctx *pc, const json_t *arr, const char *path, spec_kind kind,
                        int depth, bool non_empty, gw_value_spec **out, size_t *n_out);

static void parse_spec(prod_ctx *pc, const json_t *o, const char *path, spec_kind kind, int depth,
                       gw_value_spec *s)
{
    char p[PATH_CAP];
    const char *key;
    const json_t *v;
    bool type_ok = false, have_values = false, have_fields = false, have_item = false;

    s->required = true; /* meaningful for params, inputs, outputs and fields only */
    if (!json_is_object(o)) {
        err(pc, path, "must be an object");
        return;
    }
    const json_t *t = json_object_get(o, "type");
    if (!t) {
        err(pc, join(p, path, "type"), "missing required key");
    } else if (!json_is_string(t)) {
        err(pc, join(p, path, "type"), "must be a string");
    } else if (type_of(json_string_value(t)) < 0) {
        err(pc, join(p, path, "type"),
            "unknown type \"%s\" (int, long, float, double, bool, string, enum, date, struct, "
            "array)",
            json_string_value(t));
    } else {
        s->type = (gw_type)type_of(json_string_value(t));
        type_ok = true;
    }

    json_object_foreach((json_t *)o, key, v)
    {
        size_t k;
        join(p, path, key);
        for (k = 0; k < sizeof(spec_keys) / sizeof(spec_keys[0]); k++)
            if (strcmp(spec_keys[k].key, key) == 0)
                break;
        if (k == sizeof(spec_keys) / sizeof(spec_keys[0])) {
            err(pc, p, "unknown key");
            continue;
        }
        if (strcmp(key, "type") == 0)
            continue;
        if (strcmp(key, "id") == 0) {
            if (kind == SPEC_ITEM)
                err(pc, p, "not allowed in an array item");
            else
                take_id(pc, v, p, &s->id);
            continue;
        }
        if (strcmp(key, "name") == 0) {
            take_string(pc, v, p, &s->name);
            continue;
        }
        if (strcmp(key, "description") == 0) {
            if (!json_is_string(v))
                err(pc, p, "must be a string");
            continue;
        }
        if (strcmp(key, "access") == 0) {
            const char *a = json_string_value(v);
            if (kind != SPEC_PROPERTY)
                err(pc, p, "only allowed for properties");
            else if (!a || (strcmp(a, "r") != 0 && strcmp(a, "rw") != 0))
                err(pc, p, "must be \"r\" or \"rw\"");
            else
                s->writable = strcmp(a, "rw") == 0;
            continue;
        }
        if (strcmp(key, "required") == 0) {
            if (kind != SPEC_PARAM)
                err(pc, p,
                    "only allowed for event params, function inputs/outputs and struct "
                    "fields");
            else if (!json_is_boolean(v))
                err(pc, p, "must be true or false");
            else
                s->required = json_is_true(v);
            continue;
        }
        if (!type_ok)
            continue; /* cannot tell whether the key applies */
        if (!(spec_keys[k].types & TM(s->type))) {
            err(pc, p, "not allowed for type %s", type_names[s->type]);
            continue;
        }
        if (strcmp(key, "min") == 0 || strcmp(key, "max") == 0) {
            take_bound(pc, s, v, p, key[1] == 'i');
        } else if (strcmp(key, "unit") == 0) {
            take_string(pc, v, p, &s->unit);
        } else if (strcmp(key, "max_length") == 0) {
            int64_t n;
            if (take_int(pc, v, p, 1, GW_TM_STRING_CAP, &n))
                s->max_length = (size_t)n;
        } else if (strcmp(key, "max_items") == 0) {
            int64_t n;
            if (take_int(pc, v, p, 1, 100000, &n))
                s->max_items = (size_t)n;
        } else if (strcmp(key, "values") == 0) {
            have_values = true;
            take_values(pc, s, v, p);
        } else if (depth >= SPEC_DEPTH_MAX) {
            have_fields = have_item = true;
            err(pc, p, "nesting deeper than %d levels", SPEC_DEPTH_MAX);
        } else if (strcmp(key, "fields") == 0) {
            have_fields = true;
            parse_specs(pc, v, p, SPEC_PARAM, depth + 1, true, &s->fields, &s->n_fields);
        } else if (strcmp(key, "item") == 0) {
            have_item = true;
            if (!(s->item = calloc(1, sizeof(*s->item))))
                err(pc, p, "out of memory");
            else
                parse_spec(pc, v, p, SPEC_ITEM, depth + 1, s->item);
        }
    }

    if (kind != SPEC_ITEM && !json_object_get(o, "id"))
        err(pc, join(p, path, "id"), "missing required key");
    if (!type_ok)
        return;
    if (s->type == GW_T_ENUM && !have_values)
        err(pc, join(p, path, "values"), "missing required key for type enum");
    if (s->type == GW_T_STRUCT && !have_fields)
        err(pc, join(p, path, "fields"), "missing required key for type struct");
    if (s->type == GW_T_ARRAY && !have_item)
        err(pc, join(p, path, "item"), "missing required key for type array");
    if (s->has_min && s->has_max) {
        bool integral = s->type == GW_T_INT || s->type == GW_T_LONG || s->type == GW_T_DATE;
        if (integral && s->imin > s->imax)
            err(pc, path, "min %lld is greater than max %lld", (long long)s->imin,
                (long long)s->imax);
        else if (!integral && s->min > s->max)
            err(pc, path, "min %g is greater than max %g", s->min, s->max);
    }
}

/* Reports "path[i].id: duplicate id" for the second and later uses of an id. */
static void check_dup_ids(prod_ctx *pc, const char *path, char *const *ids, size_t stride, size_t n)
{
    char p[PATH_CAP];
    for (size_t i = 1; i < n; i++) {
        const char *a = *(char *const *)((const char *)ids + i * stride);
        if (!a)
            continue;
        for (size_t j = 0; j < i; j++) {
            const char *b = *(char *const *)((const char *)ids + j * stride);
            if (b && strcmp(a, b) == 0) {
                gw_diag_pathf(p, sizeof(p), "%s[%zu].id", path, i);
                err(pc, p, "duplicate id \"%s\"", a);
                break;
            }
        }
    }
}

static void parse_specs(prod_ctx *pc, const json_t *arr, const char *path, spec_kind kind,
                        int depth, bool non_empty, gw_value_spec **out, size_t *n_out)
{
    char p[PATH_CAP];
    size_t n = json_array_size(arr);

    if (!json_is_array(arr) || (non_empty && n == 0)) {
        err(pc, path, non_empty ? "must be a non-empty array" : "must be an array");
        return;
    }
    if (n == 0)
        return;
    if (!(*out = calloc(n, sizeof(**out)))) {
        err(pc, path, "out of memory");
        return;
    }
    *n_out = n;
    for (size_t i = 0; i < n; i++) {
        gw_diag_pathf(p, sizeof(p), "%s[%zu]", path, i);
        (*out)[i].required = true;
        parse_spec(pc, json_array_get(arr, i), p, kind, depth, &(*out)[i]);
    }
    check_dup_ids(pc, path, &(*out)[0].id, sizeof(**out), n);
}

static void parse_event(prod_ctx *pc, const json_t *o, const char *path, gw_event_spec *e)
{
    char p[PATH_CAP];
    const json_t *v;

    if (!json_is_object(o)) {
        err(pc, path, "must be an object");
        return;
    }
    gw__config_unknown_keys(pc->x, o, event_keys, NULL, pc->file, path);
    if ((v = json_object_get(o, "id")))
        take_id(pc, v, join(p, path, "id"), &e->id);
    else
        err(pc, join(p, path, "id"), "missing required key");
    if ((v = json_object_get(o, "name")))
        take_string(pc, v, join(p, path, "name"), &e->name);
    if ((v = json_object_get(o, "description")) && !json_is_string(v))
        err(pc, join(p, path, "description"), "must be a string");
    if ((v = json_object_get(o, "level"))) {
        int lv = -1;
        for (int i = 0; levels[i] && json_is_string(v); i++)
            if (strcmp(levels[i], json_string_value(v)) == 0)
                lv = i;
        if (lv < 0)
            err(pc, join(p, path, "level"),
                "must be one of \"info\", \"warn\", \"alert\", "
                "\"error\"");
        else
            e->level = (gw_event_level)lv;
    }
    if ((v = json_object_get(o, "params")))
        parse_specs(pc, v, join(p, path, "params"), SPEC_PARAM, 1, false, &e->params, &e->n_params);
}

static void parse_function(prod_ctx *pc, const json_t *o, const char *path, gw_function_spec *f)
{
    char p[PATH_CAP];
    const json_t *v;
    int64_t n;

    f->timeout_ms = 5000;
    if (!json_is_object(o)) {
        err(pc, path, "must be an object");
        return;
    }
    gw__config_unknown_keys(pc->x, o, function_keys, NULL, pc->file, path);
    if ((v = json_object_get(o, "id")))
        take_id(pc, v, join(p, path, "id"), &f->id);
    else
        err(pc, join(p, path, "id"), "missing required key");
    if ((v = json_object_get(o, "name")))
        take_string(pc, v, join(p, path, "name"), &f->name);
    if ((v = json_object_get(o, "description")) && !json_is_string(v))
        err(pc, join(p, path, "description"), "must be a string");
    if ((v = json_object_get(o, "inputs")))
        parse_specs(pc, v, join(p, path, "inputs"), SPEC_PARAM, 1, false, &f->inputs, &f->n_inputs);
    if ((v = json_object_get(o, "outputs")))
        parse_specs(pc, v, join(p, path, "outputs"), SPEC_PARAM, 1, false, &f->outputs,
                    &f->n_outputs);
    if ((v = json_object_get(o, "timeout_ms")) &&
        take_int(pc, v, join(p, path, "timeout_ms"), 1, 3600000, &n))
        f->timeout_ms = (uint32_t)n;
}

static void parse_events(prod_ctx *pc, const json_t *arr, gw_product *p)
{
    char path[PATH_CAP];
    size_t n = json_array_size(arr);

    if (!json_is_array(arr)) {
        err(pc, "events", "must be an array");
        return;
    }
    if (n == 0)
        return;
    if (!(p->events = calloc(n, sizeof(*p->events)))) {
        err(pc, "events", "out of memory");
        return;
    }
    p->n_events = n;
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "events[%zu]", i);
        parse_event(pc, json_array_get(arr, i), path, &p->events[i]);
    }
    check_dup_ids(pc, "events", &p->events[0].id, sizeof(*p->events), n);
}

static void parse_functions(prod_ctx *pc, const json_t *arr, gw_product *p)
{
    char path[PATH_CAP];
    size_t n = json_array_size(arr);

    if (!json_is_array(arr)) {
        err(pc, "functions", "must be an array");
        return;
    }
    if (n == 0)
        return;
    if (!(p->functions = calloc(n, sizeof(*p->functions)))) {
        err(pc, "functions", "out of memory");
        return;
    }
    p->n_functions = n;
    for (size_t i = 0; i < n; i++) {
        snprintf(path, sizeof(path), "functions[%zu]", i);
        parse_function(pc, json_array_get(arr, i), path, &p->functions[i]);
    }
    check_dup_ids(pc, "functions", &p->functions[0].id, sizeof(*p->functions), n);
}

typedef struct auth_file {
    int mode;
} auth_file;
static const char *const auth_modes[] = {"device-secret",         "secret",    "certificate",
                                         "certificate-or-secret", "device-id", NULL};
static const gw_cfg_field auth_fields[] = {
    {"mode", GW_CFG_ENUM, offsetof(auth_file, mode), 0, 0, auth_modes, true,
     .doc = "How a device proves itself: its secret, a TLS client certificate, either, or its id "
            "alone (`device-id`)."},
    {NULL, 0, 0, 0, 0, NULL, false},
};

static bool has_field(const gw_cfg_field *fields, const char *key)
{
    for (; fields && fields->name; fields++)
        if (strcmp(fields->name, key) == 0)
            return true;
    return false;
}

/* "auth" (v, NULL if absent): the core's keys, and those the product's protocol adapter owns
 * (product_auth_fields), parsed with their defaults into its per-product data (adapter_data). */
static void parse_auth(prod_ctx *pc, const json_t *v, gw_product *p)
{
    gw_config_adapter adapter, *ad = NULL;
    if (p->protocol && pc->x->plugins->adapter(p->protocol, &adapter) == 0)
        ad = &adapter;
    const gw_cfg_field *own = ad ? ad->product_auth_fields : NULL;
    json_t *core = NULL, *mine = NULL;
    const char *key;
    json_t *x;

    if (own && ad->product_data_size && !(p->adapter_data = calloc(1, ad->product_data_size))) {
        err(pc, "auth", "out of memory");
        return;
    }
    if (own && json_is_object(v)) {
        core = json_object();
        mine = json_object();
        if (!core || !mine) {
            err(pc, "auth", "out of memory");
            goto done;
        }
        json_object_foreach((json_t *)v, key, x)
        {
            if (json_object_set(has_field(own, key) ? mine : core, key, x) != 0) {
                err(pc, "auth", "out of memory");
                goto done;
            }
        }
    }
    if (v) {
        auth_file a = {0};
        pc->x->errors +=
            gw_cfg_parse(auth_fields, core ? core : v, &a, pc->file, "auth", pc->x->diag);
        gw_cfg_free(auth_fields, &a);
        p->auth_mode = a.mode == 2   ? GW_AUTH_CERT
                       : a.mode == 3 ? GW_AUTH_CERT_OR_SECRET
                       : a.mode == 4 ? GW_AUTH_DEVICE_ID
                                     : GW_AUTH_SECRET;
        /* no secret to check: only where the adapter then asks nothing else of the device */
        if (p->auth_mode == GW_AUTH_DEVICE_ID && p->protocol && strcmp(p->protocol, "tcp") != 0 &&
            strcmp(p->protocol, "udp") != 0)
            err(pc, "auth.mode",
                "\"device-id\" is for tcp and udp products whose protocol carries no secret, not "
                "for %s",
                p->protocol);
    }
    if (p->adapter_data)
        pc->x->errors += gw_cfg_parse(own, mine, p->adapter_data, pc->file, "auth", pc->x->diag);
done:
    json_decref(core);
    json_decref(mine);
}

typedef struct commands_file {
    int offline;
    uint32_t ttl_ms;
} commands_file;
static const char *const offline_modes[] = {"reject", "queue", NULL};
static const gw_cfg_field commands_fields[] = {
    {"offline", GW_CFG_ENUM, offsetof(commands_file, offline), 0, 0, offline_modes, false,
     GW_CFG_DEF(0),
     .doc = "A command for an offline device: `reject` it at once or `queue` it until the device "
            "connects."},
    {"ttl_ms", GW_CFG_UINT32, offsetof(commands_file, ttl_ms), 1, 604800000, NULL, false,
     GW_CFG_DEF(60000), .doc = "How long a queued command waits for its device, in ms."},
    {NULL, 0, 0, 0, 0, NULL, false},
};

/* protocol: a compiled-in adapter that gateway.json enables. */
static void parse_protocol(prod_ctx *pc, const gw_config *c, const json_t *v, gw_product *p)
{
    if (!v) {
        err(pc, "protocol", "missing required key");
        return;
    }
    take_string(pc, v, "protocol", &p->protocol);
    if (!p->protocol)
        return;
    gw_config_adapter ad;
    if (pc->x->plugins->adapter(p->protocol, &ad) != 0)
        err(pc, "protocol", "unknown adapter \"%s\"", p->protocol);
    else if (!json_object_get(c->adapters, p->protocol))
        err(pc, "protocol", "adapter \"%s\" is not enabled in gateway.json adapters", p->protocol);
}

static void parse_product(prod_ctx *pc, const gw_config *c, json_t *root, gw_product *p)
{
    const gw_config_plugins *pl = pc->x->plugins;
    const struct gw_codec_ops *codec = NULL;
    const json_t *v;
    int64_t n;
    int errors_before = pc->x->errors;

    if (!json_is_object(root)) {
        err(pc, NULL, "must be a JSON object");
        return;
    }
    p->raw = json_incref(root);
    if ((v = json_object_get(root, "codec"))) {
        take_string(pc, v, "codec", &p->codec);
        if (p->codec && !(codec = pl->codec(p->codec)))
            err(pc, "codec", "unknown codec \"%s\"", p->codec);
    } else {
        err(pc, "codec", "missing required key");
    }
    gw__config_unknown_keys(pc->x, root, product_keys, codec ? pl->codec_product_keys(codec) : NULL,
                            pc->file, "");
    if ((v = json_object_get(root, "id")))
        take_id(pc, v, "id", &p->id);
    else
        err(pc, "id", "missing required key");
    if ((v = json_object_get(root, "name")))
        take_string(pc, v, "name", &p->name);
    if ((v = json_object_get(root, "description")) && !json_is_string(v))
        err(pc, "description", "must be a string");
    parse_protocol(pc, c, json_object_get(root, "protocol"), p);
    parse_auth(pc, json_object_get(root, "auth"), p);
    if ((v = json_object_get(root, "idle_timeout_ms")) &&
        take_int(pc, v, "idle_timeout_ms", 0, 86400000, &n))
        p->idle_timeout_ms = (uint32_t)n;
    p->cmd_ttl_ms = 60000;
    if ((v = json_object_get(root, "commands"))) {
        commands_file cf = {0, 60000};
        pc->x->errors += gw_cfg_parse(commands_fields, v, &cf, pc->file, "commands", pc->x->diag);
        p->cmd_queue_offline = cf.offline == 1;
        p->cmd_ttl_ms = cf.ttl_ms;
    }
    if ((v = json_object_get(root, "properties")))
        parse_specs(pc, v, "properties", SPEC_PROPERTY, 1, false, &p->properties, &p->n_properties);
    if ((v = json_object_get(root, "events")))
        parse_events(pc, v, p);
    if ((v = json_object_get(root, "functions")))
        parse_functions(pc, v, p);

    /* The codec sees only a product whose thing model is sound. codec_ops stays NULL unless init
     * succeeded, so gw__config_product_free knows whether to call uninit. */
    if (codec && pc->x->errors == errors_before) {
        size_t before = pc->x->diag->n;
        p->codec_ops = codec;
        if (pl->codec_init(p, pc->x->diag, pc->file) != 0) {
            /* the codec reported into the diag list: count its lines as errors */
            if (pc->x->diag->n == before)
                err(pc, NULL, "codec init failed");
            else
                pc->x->errors += (int)(pc->x->diag->n - before);
            p->codec_ops = NULL;
            p->codec_state = NULL;
        }
    }
}

void gw__config_product_free(const gw_config_plugins *plugins, gw_product *p)
{
    gw_config_adapter ad;
    if (p->adapter_data && p->protocol && plugins->adapter(p->protocol, &ad) == 0)
        gw_cfg_free(ad.product_auth_fields, p->adapter_data);
    free(p->adapter_data);
    p->adapter_data = NULL;
    if (p->codec_ops)
        plugins->codec_uninit(p);
    p->codec_ops = NULL;
    p->codec_state = NULL;
    gw_tm_product_clear(p);
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The *.json regular files of dir, sorted; NULL-safe to free with free_names. */
static char **list_json(const char *dir, size_t *n_out, int *errno_out)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    char **v = NULL;
    size_t n = 0, cap = 0;
    char full[4096];
    struct stat st;

    *n_out = 0;
    if (!d) {
        *errno_out = errno;
        return NULL;
    }
    while ((de = readdir(d))) {
        size_t len = strlen(de->d_name);
        if (de->d_name[0] == '.' || len <= 5 || strcmp(de->d_name + len - 5, ".json") != 0)
            continue;
        snprintf(full, sizeof(full), "%s/%s", dir, de->d_name);
        if (stat(full, &st) != 0 || !S_ISREG(st.st_mode))
            continue;
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            char **nv = realloc(v, ncap * sizeof(*nv));
            if (!nv)
                break;
            v = nv;
            cap = ncap;
        }
        if (!(v[n] = strdup(de->d_name)))
            break;
        n++;
    }
    closedir(d);
    if (n)
        qsort(v, n, sizeof(*v), cmp_names);
    *n_out = n;
    *errno_out = 0;
    return v;
}

bool gw__config_load_products(gw__config_ctx *x, gw_config *c, const char *dir_path,
                              const char *dir_disp)
{
    gw__config_index *ix = c->index;
    size_t n_files = 0;
    int e = 0;
    char **names = list_json(dir_path, &n_files, &e);
    char full[4096], disp[4096];
    size_t dl = strlen(dir_disp);
    bool ok = true;

    if (e) {
        gw__config_err(x, c->file, "products_dir", "cannot read folder \"%s\": %s", dir_path,
                       strerror(e));
        return false;
    }
    if (gw__config_hash_init(&ix->products, n_files) < 0 ||
        (n_files && !(c->products = calloc(n_files, sizeof(*c->products))))) {
        gw__config_err(x, c->file, "products_dir", "out of memory");
        ok = false;
        goto done;
    }
    for (size_t i = 0; i < n_files; i++) {
        snprintf(full, sizeof(full), "%s/%s", dir_path, names[i]);
        snprintf(disp, sizeof(disp), "%.*s/%s", (int)(dl && dir_disp[dl - 1] == '/' ? dl - 1 : dl),
                 dir_disp, names[i]);
        json_t *root = gw__config_load_json(x, full, disp);
        if (!root) {
            x->products_incomplete = true;
            continue;
        }
        gw_product *p = &c->products[c->n_products++];
        prod_ctx pc = {.x = x, .file = disp};
        if (!(p->file = strdup(disp)))
            gw__config_err(x, disp, NULL, "out of memory");
        parse_product(&pc, c, root, p);
        json_decref(root);
        if (!p->id || !p->file) {
            x->products_incomplete = true;
            continue;
        }
        long prev = gw__config_hash_insert(&ix->products, c->products, sizeof(gw_product),
                                           (size_t)(p - c->products));
        if (prev >= 0)
            gw__config_err(x, disp, "id", "duplicate product id \"%s\" (also in %s)", p->id,
                           c->products[prev].file);
    }
done:
    for (size_t i = 0; i < n_files; i++)
        free(names[i]);
    free(names);
    return ok;
}

bool gw__config_load_products_from(gw__config_ctx *x, gw_config *c, const gw_config *base)
{
    gw__config_index *ix = c->index;
    size_t n = base->n_products;

    if (gw__config_hash_init(&ix->products, n) < 0 ||
        (n && !(c->products = calloc(n, sizeof(*c->products))))) {
        gw__config_err(x, c->file, "products_dir", "out of memory");
        return false;
    }
    for (size_t i = 0; i < n; i++) {
        const gw_product *bp = &base->products[i];
        gw_product *p = &c->products[c->n_products++];
        prod_ctx pc = {.x = x, .file = bp->file};
        json_t *raw = json_deep_copy(bp->raw); /* not shared with base: see load_all */
        if (!(p->file = strdup(bp->file)) || !raw)
            gw__config_err(x, bp->file, NULL, "out of memory");
        if (raw)
            parse_product(&pc, c, raw, p);
        json_decref(raw);
        if (!p->id || !p->file) {
            x->products_incomplete = true;
            continue;
        }
        long prev = gw__config_hash_insert(&ix->products, c->products, sizeof(gw_product),
                                           (size_t)(p - c->products));
        if (prev >= 0)
            gw__config_err(x, bp->file, "id", "duplicate product id \"%s\" (also in %s)", p->id,
                           c->products[prev].file);
    }
    return true;
}

int gw__config_product_reference(FILE *f)
{
    return gw_cfg_reference(f, "product \"auth\" (every protocol)", auth_fields) +
           gw_cfg_reference(f, "product \"commands\"", commands_fields);
}

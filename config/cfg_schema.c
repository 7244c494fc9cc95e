/* cfg_schema.c: the declarative section parser. Walks a gw_cfg_field table over a JSON object,
 * checks types, ranges, enum names, listener addresses and unknown keys, and stores the values
 * into a C struct through offsets.
 *
 * Ownership: after gw_cfg_parse, dst owns every string, listener list and JSON reference in its
 * fields, including defaults it held before (a default string or listener array may be a literal
 * or static: it is copied, never freed; a default json_t gets a new reference). gw_cfg_free
 * releases them. Parse a given dst once. */
#include "cfg_schema.h"
#include "config.h"

#include <arpa/inet.h>
#include <stdarg.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FIELD(dst, f, type) ((type *)((char *)(dst) + (f)->offset))

/* "path.key" (or "key" at the top level) into buf. */
static const char *join(char *buf, size_t cap, const char *path, const char *key)
{
    if (path && *path)
        gw_diag_pathf(buf, cap, "%s.%s", path, key);
    else
        gw_diag_pathf(buf, cap, "%s", key);
    return buf;
}

static const gw_cfg_field *find_field(const gw_cfg_field *fields, const char *key)
{
    for (const gw_cfg_field *f = fields; f->name; f++)
        if (strcmp(f->name, key) == 0)
            return f;
    return NULL;
}

/* Integer in [lo, hi]; 0 or 1 error. */
static int parse_int(const json_t *v, int64_t lo, int64_t hi, int64_t *out, const char *file,
                     const char *path, gw_diag *diag)
{
    if (!json_is_integer(v)) {
        gw_diag_add(diag, file, path, "must be an integer");
        return 1;
    }
    json_int_t x = json_integer_value(v);
    if (x < lo || x > hi) {
        gw_diag_add(diag, file, path, "%lld is out of range %" PRId64 "..%" PRId64, (long long)x,
                    lo, hi);
        return 1;
    }
    *out = x;
    return 0;
}

static int parse_enum(const gw_cfg_field *f, const json_t *v, int *out, const char *file,
                      const char *path, gw_diag *diag)
{
    char names[256] = "";
    size_t len = 0;

    if (json_is_string(v)) {
        for (int i = 0; f->enum_names && f->enum_names[i]; i++) {
            if (strcmp(f->enum_names[i], json_string_value(v)) == 0) {
                *out = i;
                return 0;
            }
        }
    }
    for (int i = 0; f->enum_names && f->enum_names[i] && len < sizeof(names); i++)
        len +=
            snprintf(names + len, sizeof(names) - len, "%s\"%s\"", i ? ", " : "", f->enum_names[i]);
    if (json_is_string(v))
        gw_diag_add(diag, file, path, "\"%s\" is not one of %s", json_string_value(v), names);
    else
        gw_diag_add(diag, file, path, "must be one of %s", names);
    return 1;
}

/* One {"address": "...", "port": N, "product": "..."} into l ("product" is optional: binary
 * transports serve one product's framing per listener); returns the number of errors. */
static int parse_listener(const json_t *obj, gw_listen *l, bool tls_ok, const char *file,
                          const char *path, gw_diag *diag)
{
    char p[256];
    const char *key;
    const json_t *v;
    int errors = 0;
    bool have_addr = false, have_port = false;

    if (!json_is_object(obj)) {
        gw_diag_add(diag, file, path, "must be an object");
        return 1;
    }
    json_object_foreach((json_t *)obj, key, v)
    {
        join(p, sizeof(p), path, key);
        if (strcmp(key, "address") == 0) {
            have_addr = true;
            unsigned char bin[16];
            const char *s = json_string_value(v);
            if (!s) {
                gw_diag_add(diag, file, p, "must be a string");
                errors++;
            } else if (strlen(s) >= sizeof(l->address) ||
                       (inet_pton(AF_INET, s, bin) != 1 && inet_pton(AF_INET6, s, bin) != 1)) {
                gw_diag_add(diag, file, p, "\"%s\" is not a numeric IPv4 or IPv6 address", s);
                errors++;
            } else {
                snprintf(l->address, sizeof(l->address), "%s", s);
            }
        } else if (strcmp(key, "port") == 0) {
            int64_t port;
            have_port = true;
            if (parse_int(v, 0, 65535, &port, file, p, diag))
                errors++;
            else
                l->port = (uint16_t)port;
        } else if (strcmp(key, "product") == 0) {
            const char *s = json_string_value(v);
            if (!s || !*s || strlen(s) >= sizeof(l->product)) {
                gw_diag_add(diag, file, p, "must be a product id (a string of 1..63 bytes)");
                errors++;
            } else {
                snprintf(l->product, sizeof(l->product), "%s", s);
            }
        } else if (tls_ok && strcmp(key, "tls") == 0) {
            if (!json_is_object(v)) {
                gw_diag_add(diag, file, p, "must be an object");
                errors++;
            }
            l->tls = true;
        } else if (tls_ok && strcmp(key, "proxy_protocol") == 0) {
            if (!json_is_object(v)) {
                gw_diag_add(diag, file, p, "must be an object");
                errors++;
            }
            l->proxy = true;
        } else {
            gw_diag_add(diag, file, p, "unknown key");
            errors++;
        }
    }
    if (!have_addr) {
        gw_diag_add(diag, file, join(p, sizeof(p), path, "address"), "missing required key");
        errors++;
    }
    if (!have_port) {
        gw_diag_add(diag, file, join(p, sizeof(p), path, "port"), "missing required key");
        errors++;
    }
    return errors;
}

static int parse_listeners(const json_t *v, gw_listen_list *out, bool tls_ok, const char *file,
                           const char *path, gw_diag *diag)
{
    char p[256];
    int errors = 0;
    size_t n = json_array_size(v);

    if (!json_is_array(v) || n == 0) {
        gw_diag_add(diag, file, path, "must be a non-empty array of {\"address\", \"port\"}");
        return 1;
    }
    gw_listen *l = calloc(n, sizeof(*l));
    if (!l) {
        gw_diag_add(diag, file, path, "out of memory");
        return 1;
    }
    for (size_t i = 0; i < n; i++) {
        gw_diag_pathf(p, sizeof(p), "%s[%zu]", path, i);
        errors += parse_listener(json_array_get(v, i), &l[i], tls_ok, file, p, diag);
    }
    out->v = l;
    out->n = n;
    return errors;
}

/* Makes dst own the default it holds for f (see the ownership note at the top). */
static int own_default(const gw_cfg_field *f, void *dst)
{
    switch (f->type) {
    case GW_CFG_STRING: {
        char **s = FIELD(dst, f, char *);
        if (*s && !(*s = strdup(*s)))
            return -1;
        break;
    }
    case GW_CFG_LISTENERS: {
        gw_listen_list *l = FIELD(dst, f, gw_listen_list);
        if (l->n && l->v) {
            gw_listen *v = malloc(l->n * sizeof(*v));
            if (!v) {
                l->v = NULL;
                l->n = 0;
                return -1;
            }
            memcpy(v, l->v, l->n * sizeof(*v));
            l->v = v;
        } else {
            l->v = NULL;
            l->n = 0;
        }
        break;
    }
    case GW_CFG_JSON:
        json_incref(*FIELD(dst, f, json_t *));
        break;
    default:
        break;
    }
    return 0;
}

/* Parses one present key; returns the number of errors. */
static int parse_value(const gw_cfg_field *f, const json_t *v, void *dst, const char *file,
                       const char *path, gw_diag *diag)
{
    int64_t x;
    bool ranged = f->min != 0 || f->max != 0;

    switch (f->type) {
    case GW_CFG_UINT32:
        if (parse_int(v, ranged ? f->min : 0, ranged ? f->max : UINT32_MAX, &x, file, path, diag))
            return 1;
        *FIELD(dst, f, uint32_t) = (uint32_t)x;
        return 0;
    case GW_CFG_INT64:
        if (parse_int(v, ranged ? f->min : INT64_MIN, ranged ? f->max : INT64_MAX, &x, file, path,
                      diag))
            return 1;
        *FIELD(dst, f, int64_t) = x;
        return 0;
    case GW_CFG_BOOL:
        if (!json_is_boolean(v)) {
            gw_diag_add(diag, file, path, "must be true or false");
            return 1;
        }
        *FIELD(dst, f, bool) = json_is_true(v);
        return 0;
    case GW_CFG_STRING: {
        if (!json_is_string(v)) {
            gw_diag_add(diag, file, path, "must be a string");
            return 1;
        }
        char *s = strdup(json_string_value(v));
        if (!s) {
            gw_diag_add(diag, file, path, "out of memory");
            return 1;
        }
        *FIELD(dst, f, char *) = s;
        return 0;
    }
    case GW_CFG_ENUM:
        return parse_enum(f, v, FIELD(dst, f, int), file, path, diag);
    case GW_CFG_LISTENERS:
        return parse_listeners(v, FIELD(dst, f, gw_listen_list), f->min == GW_CFG_LISTEN_TLS, file,
                               path, diag);
    case GW_CFG_JSON:
        *FIELD(dst, f, json_t *) = json_incref((json_t *)v);
        return 0;
    }
    gw_diag_add(diag, file, path, "internal error: bad field type %d", (int)f->type);
    return 1;
}

int gw_cfg_parse(const gw_cfg_field *fields, const json_t *obj, void *dst, const char *file,
                 const char *path, gw_diag *diag)
{
    char p[256];
    const char *key;
    const json_t *v;
    int errors = 0;

    gw_cfg_defaults(fields, dst);
    if (obj && !json_is_object(obj)) {
        gw_diag_add(diag, file, path, "must be an object");
        errors++;
        obj = NULL;
    }
    /* Unknown keys first, in the file's order. */
    if (obj) {
        json_object_foreach((json_t *)obj, key, v)
        {
            if (!find_field(fields, key)) {
                gw_diag_add(diag, file, join(p, sizeof(p), path, key), "unknown key");
                errors++;
            }
        }
    }
    for (const gw_cfg_field *f = fields; f->name; f++) {
        v = obj ? json_object_get(obj, f->name) : NULL;
        join(p, sizeof(p), path, f->name);
        if (!v) {
            if (own_default(f, dst) < 0) {
                gw_diag_add(diag, file, p, "out of memory");
                errors++;
            }
            if (f->required) {
                gw_diag_add(diag, file, p, "missing required key");
                errors++;
            }
            continue;
        }
        /* The default is replaced, not owned: forget it so gw_cfg_free never sees it. */
        switch (f->type) {
        case GW_CFG_STRING:
            *FIELD(dst, f, char *) = NULL;
            break;
        case GW_CFG_LISTENERS:
            FIELD(dst, f, gw_listen_list)->v = NULL;
            FIELD(dst, f, gw_listen_list)->n = 0;
            break;
        case GW_CFG_JSON:
            *FIELD(dst, f, json_t *) = NULL;
            break;
        default:
            break;
        }
        errors += parse_value(f, v, dst, file, p, diag);
    }
    return errors;
}

void gw_cfg_free(const gw_cfg_field *fields, void *dst)
{
    if (!fields || !dst)
        return;
    for (const gw_cfg_field *f = fields; f->name; f++) {
        switch (f->type) {
        case GW_CFG_STRING:
            free(*FIELD(dst, f, char *));
            *FIELD(dst, f, char *) = NULL;
            break;
        case GW_CFG_LISTENERS:
            free(FIELD(dst, f, gw_listen_list)->v);
            FIELD(dst, f, gw_listen_list)->v = NULL;
            FIELD(dst, f, gw_listen_list)->n = 0;
            break;
        case GW_CFG_JSON:
            json_decref(*FIELD(dst, f, json_t *));
            *FIELD(dst, f, json_t *) = NULL;
            break;
        default:
            break;
        }
    }
}

void gw_cfg_defaults(const gw_cfg_field *fields, void *dst)
{
    for (const gw_cfg_field *f = fields; f->name; f++) {
        if (!f->has_def)
            continue;
        switch (f->type) {
        case GW_CFG_UINT32:
            *FIELD(dst, f, uint32_t) = (uint32_t)f->def;
            break;
        case GW_CFG_INT64:
            *FIELD(dst, f, int64_t) = f->def;
            break;
        case GW_CFG_BOOL:
            *FIELD(dst, f, bool) = f->def != 0;
            break;
        case GW_CFG_ENUM:
            *FIELD(dst, f, int) = (int)f->def;
            break;
        default:
            break;
        }
    }
    for (const gw_cfg_field *f = fields; f->name; f++)
        if (f->type == GW_CFG_STRING && f->def_str)
            *FIELD(dst, f, char *) = (char *)f->def_str; /* owned (copied) by gw_cfg_parse */
}

static const char *type_name(gw_cfg_type t)
{
    switch (t) {
    case GW_CFG_UINT32:
    case GW_CFG_INT64:
        return "integer";
    case GW_CFG_BOOL:
        return "boolean";
    case GW_CFG_STRING:
        return "string";
    case GW_CFG_ENUM:
        return "string (enum)";
    case GW_CFG_LISTENERS:
        return "listeners";
    case GW_CFG_JSON:
        return "object";
    }
    return "?";
}

/* A table cell's text: '|' would end the cell, a line end the row. */
static void put_cell(FILE *f, const char *s)
{
    for (; *s; s++) {
        if (*s == '|')
            fputs("\\|", f);
        else
            fputc(*s == '\n' ? ' ' : *s, f);
    }
}

int gw_cfg_reference(FILE *f, const char *path, const gw_cfg_field *fields)
{
    int undocumented = 0;
    if (*path)
        fprintf(f, "### `%s`\n\n", path);
    else
        fputs("### top level\n\n", f);
    fputs(GW_CFG_REFERENCE_HEAD, f);
    for (const gw_cfg_field *x = fields; x->name; x++) {
        fprintf(f, "| `%s` | %s | ", x->name, type_name(x->type));
        if (x->required)
            fputs("required", f);
        else if (x->type == GW_CFG_STRING && x->def_str)
            fprintf(f, "`\"%s\"`", x->def_str);
        else if (x->type == GW_CFG_JSON)
            fputs("its section", f);
        else if (!x->has_def)
            fputs("none", f);
        else if (x->type == GW_CFG_BOOL)
            fputs(x->def ? "true" : "false", f);
        else if (x->type == GW_CFG_ENUM && x->enum_names)
            fprintf(f, "`%s`", x->enum_names[x->def]);
        else
            fprintf(f, "%lld", (long long)x->def);
        fputs(" | ", f);
        if (x->type == GW_CFG_ENUM && x->enum_names) {
            for (size_t i = 0; x->enum_names[i]; i++)
                fprintf(f, "%s`%s`", i ? ", " : "", x->enum_names[i]);
        } else if ((x->type == GW_CFG_UINT32 || x->type == GW_CFG_INT64) &&
                   (x->min != 0 || x->max != 0)) {
            fprintf(f, "%lld..%lld", (long long)x->min, (long long)x->max);
        } else if (x->type == GW_CFG_LISTENERS) {
            fputs("array of `{\"address\", \"port\"}` (tcp, udp: `\"product\"`)", f);
            if (x->min == GW_CFG_LISTEN_TLS)
                fputs("; each may have `\"tls\"` and `\"proxy_protocol\"` (below)", f);
        }
        fputs(" | ", f);
        if (x->doc && *x->doc) {
            put_cell(f, x->doc);
        } else {
            fputs("(undocumented)", f);
            undocumented++;
        }
        fputs(" |\n", f);
    }
    fputs("\n", f);
    return undocumented;
}

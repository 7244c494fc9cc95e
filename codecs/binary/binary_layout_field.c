/* binary_layout_field.c: one field declaration of a "frame" section (type, size or prefix, bits,
 * transform, constant, target) parsed and bound to the product's thing model, so that every field
 * a layout declares can carry what it names. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static const char *const type_names[] = {"u8",     "i8",    "u16",      "i16",   "u24",   "u32",
                                         "i32",    "u64",   "i64",      "f32",   "f64",   "bcd",
                                         "string", "bytes", "datetime", "group", "idlist"};
static const char *const role_names[] = {"",          "device_id",   "secret", "seq",
                                         "msg_id",    "timestamp",   "result", "request_code",
                                         "auth_code", "record_count"};
static const char *const field_keys[] = {"name",   "offset",   "type",      "endian",    "size",
                                         "prefix", "bit",      "bits",      "scale",     "add",
                                         "value",  "property", "param",     "output",    "input",
                                         "role",   "digits",   "sign_from", "size_from", NULL};

bool gw__binary_type_is_int(bin_type t)
{
    return t <= BIN_I64;
}

bool gw__binary_type_is_unsigned(bin_type t)
{
    return t == BIN_U8 || t == BIN_U16 || t == BIN_U24 || t == BIN_U32 || t == BIN_U64;
}

static char *dup_str(const char *s)
{
    return strdup(s ? s : "");
}

static const gw_value_spec *find_spec(const gw_value_spec *s, size_t n, const char *id)
{
    for (size_t i = 0; i < n; i++)
        if (s[i].id && strcmp(s[i].id, id) == 0)
            return &s[i];
    return NULL;
}

/* Can a field of this type (and transform) carry a value of thing-model type t? */
static const char *carry_problem(const bin_field *f, gw_type t)
{
    bool is_int = gw__binary_type_is_int(f->type), num = is_int || f->type == BIN_F32 ||
                                                         f->type == BIN_F64 || f->type == BIN_BCD ||
                                                         f->type == BIN_DATETIME;
    bool text = f->type == BIN_STRING || f->type == BIN_BYTES;
    switch (t) {
    case GW_T_INT:
    case GW_T_LONG:
    case GW_T_DATE:
        if (!(is_int || f->type == BIN_BCD || f->type == BIN_DATETIME))
            return "needs an integer field type";
        if (f->has_xform && !f->int_xform)
            return "an integer cannot take a non-integer scale or add";
        return NULL;
    case GW_T_FLOAT:
    case GW_T_DOUBLE:
        return num ? NULL : "needs a number field type";
    case GW_T_BOOL:
        return is_int && !f->has_xform ? NULL : "needs an integer field type without transform";
    case GW_T_ENUM:
        return (is_int && !f->has_xform) || f->type == BIN_STRING
                   ? NULL
                   : "needs an integer (the value's index) or a string field";
    case GW_T_STRING:
        return text || f->type == BIN_BCD ? NULL : "needs a string, bytes or bcd field";
    case GW_T_STRUCT:
    case GW_T_ARRAY:
        return "struct and array values cannot be carried by a binary field";
    }
    return "unsupported type";
}

static int bind_target(gw__bl_ctx *x, const json_t *o, const char *path, const gw__bl_list *c,
                       bin_field *f)
{
    static const char *const tkeys[] = {"", "property", "param", "output", "input", "role"};
    char p[GW__BL_PATH_CAP];
    int which = 0;
    for (int t = 1; t < (int)N_OF(tkeys); t++) {
        if (!json_object_get(o, tkeys[t]))
            continue;
        if (which)
            return gw__bl_fail(x, gw__bl_sub(p, path, tkeys[t]),
                               "a field has one target; \"%s\" is already set", tkeys[which]);
        which = t;
    }
    if (!which)
        return 0;
    gw__bl_sub(p, path, tkeys[which]);
    const char *id = json_string_value(json_object_get(o, tkeys[which]));
    if (!id || !*id)
        return gw__bl_fail(x, p, "must be a non-empty string");
    f->target = (uint8_t)which;
    f->prop = -1;
    if (strlen(id) > UINT16_MAX || !(f->target_id = strdup(id)))
        return gw__bl_fail(x, p, "out of memory");
    f->target_len = (uint16_t)strlen(id);
    const gw_value_spec *s = NULL;
    switch (which) {
    case BIN_TG_PROPERTY:
        if (c->kind != BIN_K_REPORT && c->kind != BIN_K_WRITE)
            return gw__bl_fail(x, p, "only in report and write messages");
        if (!(s = gw_tm_property(x->p, id)))
            return gw__bl_fail(x, p, "no property \"%s\" in the thing model", id);
        if (c->kind == BIN_K_WRITE && !s->writable)
            return gw__bl_fail(x, p, "property \"%s\" is not writable (access \"rw\")", id);
        if (s >= x->p->properties && s < x->p->properties + x->p->n_properties &&
            s - x->p->properties < 256) /* a report's text path marks it written (binary.c) */
            f->prop = (int16_t)(s - x->p->properties);
        break;
    case BIN_TG_PARAM:
        if (c->kind != BIN_K_EVENT)
            return gw__bl_fail(x, p, "only in event messages");
        if (!(s = find_spec(c->ev->params, c->ev->n_params, id)))
            return gw__bl_fail(x, p, "event \"%s\" has no param \"%s\"", c->ev->id, id);
        break;
    case BIN_TG_OUTPUT:
    case BIN_TG_INPUT: {
        bool out = which == BIN_TG_OUTPUT;
        if (c->kind != (out ? BIN_K_FUNCTION_REPLY : BIN_K_INVOKE))
            return gw__bl_fail(x, p,
                               out ? "only in function_reply messages" : "only in invoke messages");
        s = out ? find_spec(c->fn->outputs, c->fn->n_outputs, id)
                : find_spec(c->fn->inputs, c->fn->n_inputs, id);
        if (!s)
            return gw__bl_fail(x, p, "function \"%s\" has no %s \"%s\"", c->fn->id,
                               out ? "output" : "input", id);
        break;
    }
    case BIN_TG_ROLE: {
        int r = gw__bl_lookup(role_names, N_OF(role_names), id);
        if (r < 0)
            return gw__bl_fail(
                x, p,
                "unknown role \"%s\" (device_id, secret, seq, msg_id, timestamp, result, "
                "request_code, auth_code, record_count)",
                id);
        f->role = (uint8_t)r;
        if (r == BIN_ROLE_RESULT && c->kind != BIN_K_FUNCTION_REPLY &&
            c->kind != BIN_K_WRITE_REPLY && c->kind != BIN_K_ACK)
            return gw__bl_fail(x, p, "role result only in function_reply, write_reply and acks");
        if ((r == BIN_ROLE_REQUEST_CODE || r == BIN_ROLE_RECORD_COUNT) && c->kind != BIN_K_ACK)
            return gw__bl_fail(x, p, "role %s only in acks", id);
        if (r == BIN_ROLE_AUTH_CODE && (c->kind != BIN_K_ACK || f->type != BIN_STRING))
            return gw__bl_fail(x, p, "role auth_code only for a string field of an ack");
        if (c->in_record && r != BIN_ROLE_TIMESTAMP)
            return gw__bl_fail(x, p, "a record's fields carry no role but timestamp");
        bool is_int = gw__binary_type_is_int(f->type);
        bool fl = f->type == BIN_F32 || f->type == BIN_F64;
        if ((r == BIN_ROLE_SEQ || r == BIN_ROLE_RESULT || r == BIN_ROLE_REQUEST_CODE ||
             r == BIN_ROLE_RECORD_COUNT) &&
            (!is_int || f->has_xform))
            return gw__bl_fail(x, p, "role %s needs an integer field type without transform", id);
        if (r == BIN_ROLE_TIMESTAMP && !(is_int || f->type == BIN_BCD || f->type == BIN_DATETIME))
            return gw__bl_fail(x, p, "role timestamp needs an integer, bcd or datetime field type");
        if (r == BIN_ROLE_TIMESTAMP && f->has_xform && !f->int_xform)
            return gw__bl_fail(x, p, "role timestamp needs an integer scale and add");
        if ((r == BIN_ROLE_DEVICE_ID || r == BIN_ROLE_SECRET || r == BIN_ROLE_MSG_ID) &&
            (fl || f->has_xform || f->type == BIN_DATETIME))
            return gw__bl_fail(x, p, "role %s needs a string, bytes, bcd or integer field", id);
        if ((r == BIN_ROLE_DEVICE_ID || r == BIN_ROLE_SECRET || r == BIN_ROLE_MSG_ID) &&
            !f->prefix && (f->type == BIN_STRING || f->type == BIN_BYTES)) {
            /* the text must fit gw_thing_msg's device_id / msg_id (63) or secret (127) */
            size_t cap = r == BIN_ROLE_SECRET ? 127 : 63;
            size_t len = f->type == BIN_BYTES ? 2 * (size_t)f->size : f->size;
            if (len > cap)
                return gw__bl_fail(x, p, "a %s of %zu characters is longer than the %zu allowed",
                                   id, len, cap);
        }
        return 0;
    }
    }
    const char *why = carry_problem(f, s->type);
    if (why)
        return gw__bl_fail(x, p, "%s \"%s\" is %s: %s", tkeys[which], id, gw_type_name(s->type),
                           why);
    f->spec = s;
    return 0;
}

static int parse_value(gw__bl_ctx *x, const json_t *o, const char *path, bin_field *f)
{
    char p[GW__BL_PATH_CAP];
    int64_t n;
    bool have;
    const json_t *v = json_object_get(o, "value");
    if (!v)
        return 0;
    gw__bl_sub(p, path, "value");
    if (!gw__binary_type_is_int(f->type))
        return gw__bl_fail(x, p, "constants are for integer field types");
    if (f->target)
        return gw__bl_fail(x, p, "a constant field has no target");
    int64_t lo = INT64_MIN, hi = INT64_MAX;
    size_t w = gw__binary_type_width(f->type);
    if (f->bits) {
        lo = 0;
        hi = f->bits >= 63 ? INT64_MAX : (int64_t)((1ull << f->bits) - 1);
    } else if (gw__binary_type_is_unsigned(f->type)) {
        lo = 0;
        hi = w == 8 ? INT64_MAX : (int64_t)((1ull << (8 * w)) - 1);
    } else if (w < 8) {
        lo = -(int64_t)(1ull << (8 * w - 1));
        hi = (int64_t)(1ull << (8 * w - 1)) - 1;
    }
    if (gw__bl_get_int(x, o, "value", path, lo, hi, true, &n, &have))
        return GW_ECONFIG;
    f->has_value = true;
    f->value = (uint64_t)n;
    return 0;
}

static int parse_xform(gw__bl_ctx *x, const json_t *o, const char *path, bin_field *f)
{
    char p[GW__BL_PATH_CAP];
    const json_t *sc = json_object_get(o, "scale"), *ad = json_object_get(o, "add");
    if (!sc && !ad)
        return 0;
    if (f->type == BIN_STRING || f->type == BIN_BYTES || f->type == BIN_DATETIME)
        return gw__bl_fail(x, gw__bl_sub(p, path, sc ? "scale" : "add"), "not allowed for type %s",
                           type_names[f->type]);
    if (sc && (!json_is_number(sc) || json_number_value(sc) == 0 ||
               !isfinite(json_number_value(sc)) || fabs(json_number_value(sc)) > 1e15))
        return gw__bl_fail(x, gw__bl_sub(p, path, "scale"), "must be a non-zero number");
    if (ad && (!json_is_number(ad) || !isfinite(json_number_value(ad)) ||
               fabs(json_number_value(ad)) > 1e15))
        return gw__bl_fail(x, gw__bl_sub(p, path, "add"), "must be a number");
    f->has_xform = true;
    f->scale = sc ? json_number_value(sc) : 1;
    f->add = ad ? json_number_value(ad) : 0;
    f->int_xform = (!sc || json_is_integer(sc)) && (!ad || json_is_integer(ad)) &&
                   f->type != BIN_F32 && f->type != BIN_F64;
    f->iscale = sc && json_is_integer(sc) ? json_integer_value(sc) : 1;
    f->iadd = ad && json_is_integer(ad) ? json_integer_value(ad) : 0;
    return 0;
}

static int parse_size(gw__bl_ctx *x, const json_t *o, const char *path, bin_field *f)
{
    char p[GW__BL_PATH_CAP];
    int64_t n;
    bool have_size, have_prefix;
    bool var = f->type == BIN_STRING || f->type == BIN_BYTES;
    const char *rest = json_string_value(json_object_get(o, "size"));
    if (rest && strcmp(rest, "rest") == 0) { /* up to the bytes counted from the end */
        if (!var)
            return gw__bl_fail(x, gw__bl_sub(p, path, "size"),
                               "\"rest\" only for string and bytes fields");
        if (json_object_get(o, "prefix") || json_object_get(o, "size_from"))
            return gw__bl_fail(x, gw__bl_sub(p, path, "size"),
                               "give one of \"size\", \"prefix\" and \"size_from\"");
        f->size_var = true;
        f->size_rest = true;
        f->size = 0;
        return 0;
    }
    if (gw__bl_get_int(x, o, "size", path, 1, f->type == BIN_BCD ? 10 : x->body_cap, false, &n,
                       &have_size))
        return GW_ECONFIG;
    if (have_size)
        f->size = (uint32_t)n;
    if (gw__bl_get_int(x, o, "prefix", path, 1, 4, false, &n, &have_prefix))
        return GW_ECONFIG;
    if (have_prefix && n == 3)
        return gw__bl_fail(x, gw__bl_sub(p, path, "prefix"), "must be 1, 2 or 4");
    if (have_prefix)
        f->prefix = (uint8_t)n;
    if (json_object_get(o, "size_from")) { /* resolved with the other fields of its list */
        if (!var)
            return gw__bl_fail(x, gw__bl_sub(p, path, "size_from"),
                               "only for string and bytes fields");
        if (have_size || have_prefix)
            return gw__bl_fail(x, gw__bl_sub(p, path, "size_from"),
                               "give one of \"size\", \"prefix\" and \"size_from\"");
        f->size_var = true;
        f->size = 0;
        return 0;
    }
    if (!var && f->type != BIN_BCD) {
        if (have_size || have_prefix)
            return gw__bl_fail(x, gw__bl_sub(p, path, have_size ? "size" : "prefix"),
                               "not allowed for type %s", type_names[f->type]);
        f->size = f->type == BIN_DATETIME ? 6 : (uint32_t)gw__binary_type_width(f->type);
        return 0;
    }
    if (f->type == BIN_BCD && have_prefix)
        return gw__bl_fail(x, gw__bl_sub(p, path, "prefix"), "not allowed for type bcd");
    if (have_size && have_prefix)
        return gw__bl_fail(x, gw__bl_sub(p, path, "prefix"),
                           "give \"size\" or \"prefix\", not both");
    if (!have_size && !have_prefix)
        return gw__bl_fail(x, gw__bl_sub(p, path, "size"),
                           f->type == BIN_BCD
                               ? "missing required key for type bcd"
                               : "missing: give \"size\" (fixed) or \"prefix\" (1, 2 or 4)");
    if (have_prefix)
        f->size = f->prefix;
    return 0;
}

static int parse_bits(gw__bl_ctx *x, const json_t *o, const char *path, bin_field *f)
{
    char p[GW__BL_PATH_CAP];
    int64_t bit = 0, bits = 1;
    bool have_bit, have_bits;
    if (!json_object_get(o, "bit") && !json_object_get(o, "bits"))
        return 0;
    if (!gw__binary_type_is_unsigned(f->type))
        return gw__bl_fail(x, gw__bl_sub(p, path, json_object_get(o, "bit") ? "bit" : "bits"),
                           "bit fields need an unsigned integer type (u8, u16, u24, u32, u64)");
    int w = (int)gw__binary_type_width(f->type) * 8;
    if (gw__bl_get_int(x, o, "bit", path, 0, w - 1, false, &bit, &have_bit) ||
        gw__bl_get_int(x, o, "bits", path, 1, w, false, &bits, &have_bits))
        return GW_ECONFIG;
    if (bit + bits > w)
        return gw__bl_fail(x, gw__bl_sub(p, path, "bits"),
                           "bits %lld..%lld do not fit in a %d-bit %s", (long long)bit,
                           (long long)(bit + bits - 1), w, type_names[f->type]);
    f->bit = (uint8_t)bit;
    f->bits = (uint8_t)bits;
    return 0;
}

/* "digits" (bcd only): the value is the last digits of the field; the dropped leading ones are
 * padding and must be 0 (a GT06 IMEI: 15 digits in 8 BCD bytes). */
static int parse_digits(gw__bl_ctx *x, const json_t *o, const char *path, bin_field *f)
{
    char p[GW__BL_PATH_CAP];
    int64_t n;
    bool have;
    if (!json_object_get(o, "digits"))
        return 0;
    if (f->type != BIN_BCD)
        return gw__bl_fail(x, gw__bl_sub(p, path, "digits"), "only for type bcd");
    if (gw__bl_get_int(x, o, "digits", path, 1, 2 * (int64_t)f->size, false, &n, &have))
        return GW_ECONFIG;
    f->digits = (uint8_t)n;
    return 0;
}

int gw__bl_parse_field(gw__bl_ctx *x, const json_t *o, const char *path, const gw__bl_list *c,
                       bin_field *f)
{
    char p[GW__BL_PATH_CAP];
    int64_t n;
    bool have, little;

    if (!(f->path = strdup(path)))
        return gw__bl_fail(x, path, "out of memory");
    if (!json_is_object(o))
        return gw__bl_fail(x, path, "must be an object");
    const char *tn = json_string_value(json_object_get(o, "type"));
    if (tn && (strcmp(tn, "group") == 0 || strcmp(tn, "idlist") == 0)) {
        f->type = (uint8_t)(tn[0] == 'g' ? BIN_GROUP : BIN_IDLIST); /* keys of their own */
        return gw__bl_parse_group(x, o, path, c, f);
    }
    if (gw__bl_unknown_keys(x, o, field_keys, path))
        return GW_ECONFIG;
    const json_t *v = json_object_get(o, "name");
    if (v && (!json_is_string(v) || json_string_length(v) > 63))
        return gw__bl_fail(x, gw__bl_sub(p, path, "name"), "must be a string of at most 63 bytes");
    if (!(f->name = dup_str(json_string_value(v))))
        return gw__bl_fail(x, path, "out of memory");
    v = json_object_get(o, "type");
    if (!v)
        return gw__bl_fail(x, gw__bl_sub(p, path, "type"), "missing required key");
    int t = gw__bl_lookup(type_names, N_OF(type_names), json_string_value(v));
    if (t < 0)
        return gw__bl_fail(x, gw__bl_sub(p, path, "type"),
                           "must be one of u8 i8 u16 i16 u24 u32 i32 u64 i64 f32 f64 bcd string "
                           "bytes datetime group idlist");
    f->type = (uint8_t)t;
    if (gw__bl_get_endian(x, o, path, x->little, &little))
        return GW_ECONFIG;
    f->little = little;
    if (gw__bl_get_int(x, o, "offset", path, -(int64_t)x->body_cap, (int64_t)x->body_cap - 1, false,
                       &n, &have))
        return GW_ECONFIG;
    f->pos = have ? (n >= 0 ? BIN_POS_START : BIN_POS_END) : BIN_POS_AFTER;
    f->off = have ? (int32_t)n : 0;
    if (parse_size(x, o, path, f) || parse_bits(x, o, path, f) || parse_xform(x, o, path, f) ||
        parse_digits(x, o, path, f))
        return GW_ECONFIG;
    if (bind_target(x, o, path, c, f))
        return GW_ECONFIG;
    if (c->kind < 0 && f->target && f->target != BIN_TG_ROLE)
        return gw__bl_fail(x, path,
                           "header fields carry roles only (device_id, secret, seq, msg_id, "
                           "timestamp), no property, param, output or input");
    if (c->kind < 0 && (f->role == BIN_ROLE_RESULT || f->role == BIN_ROLE_REQUEST_CODE ||
                        f->role == BIN_ROLE_AUTH_CODE))
        return gw__bl_fail(x, gw__bl_sub(p, path, "role"), "not allowed in the header");
    if (json_object_get(o, "sign_from")) {
        const gw_value_spec *s = f->spec;
        if (c->kind < 0 || !BIN_K_IS_UP(c->kind))
            return gw__bl_fail(x, gw__bl_sub(p, path, "sign_from"),
                               "only in upstream messages (a command cannot set another field's "
                               "bits)");
        if (!s || !(s->type == GW_T_INT || s->type == GW_T_LONG || s->type == GW_T_FLOAT ||
                    s->type == GW_T_DOUBLE))
            return gw__bl_fail(x, gw__bl_sub(p, path, "sign_from"),
                               "only for a field aimed at an int, long, float or double");
    }
    return parse_value(x, o, path, f);
}

static const char *const sign_keys[] = {"field", "bit", "negative_when", NULL};

static const bin_field *named(const bin_field *fs, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (fs[i].name && fs[i].name[0] && strcmp(fs[i].name, name) == 0)
            return &fs[i];
    return NULL;
}

/* The field a "sign_from" / "size_from" object names in its "field" (this list, then the header;
 * not f itself), its name in *name; NULL after the error (path p is the object's). */
static const bin_field *ref_field(gw__bl_ctx *x, const json_t *ref, const char *p,
                                  const bin_field *f, const bin_field *list, size_t n,
                                  const char *what, const char **name)
{
    char q[GW__BL_PATH_CAP];
    gw__bl_sub(q, p, "field");
    *name = json_string_value(json_object_get(ref, "field"));
    if (!*name) {
        gw__bl_fail(x, q, "missing: the name of a field");
        return NULL;
    }
    const bin_field *src = named(list, n, *name);
    if (!src)
        src = named(x->l->header, x->l->n_header, *name);
    if (!src)
        gw__bl_fail(x, q, "no field named \"%s\" in this message or the header", *name);
    else if (src == f)
        gw__bl_fail(x, q, "a field cannot take its %s from itself", what);
    return src && src != f ? src : NULL;
}

/* "sign_from": {"field": name, "bit": b (optional), "negative_when": 0 | 1 | value}: the field
 * named (in this list or the header, at a fixed offset, unsigned) says whether the value is
 * negative: its bit b (counted in its raw value after its own bit extraction), or without "bit"
 * that whole raw value, equals negative_when. */
static int gw__bl_parse_sign(gw__bl_ctx *x, const json_t *o, const char *path, bin_field *f,
                             const bin_field *list, size_t n)
{
    char p[GW__BL_PATH_CAP];
    int64_t v;
    bool have;
    const json_t *sf = json_object_get(o, "sign_from");
    if (!sf)
        return 0;
    gw__bl_sub(p, path, "sign_from");
    if (!json_is_object(sf))
        return gw__bl_fail(x, p, "must be an object {\"field\", \"bit\", \"negative_when\"}");
    if (gw__bl_unknown_keys(x, sf, sign_keys, p))
        return GW_ECONFIG;
    char q[GW__BL_PATH_CAP];
    const char *name;
    const bin_field *src = ref_field(x, sf, p, f, list, n, "sign", &name);
    if (!src)
        return GW_ECONFIG;
    if (!gw__binary_type_is_unsigned((bin_type)src->type) || src->pos == BIN_POS_AFTER)
        return gw__bl_fail(x, gw__bl_sub(q, p, "field"),
                           "field \"%s\" must be unsigned (u8..u64) at a fixed \"offset\"", name);
    int w = src->bits ? src->bits : (int)gw__binary_type_width((bin_type)src->type) * 8;
    if (gw__bl_get_int(x, sf, "bit", p, 0, w - 1, false, &v, &have))
        return GW_ECONFIG;
    f->sign_bit = have ? (int8_t)v : -1;
    int64_t hi = have ? 1 : w >= 63 ? INT64_MAX : (int64_t)((1ull << w) - 1);
    if (gw__bl_get_int(x, sf, "negative_when", p, 0, hi, true, &v, &have))
        return GW_ECONFIG;
    if (!have)
        return gw__bl_fail(x, gw__bl_sub(q, p, "negative_when"), "missing required key");
    f->sign_neg = (uint64_t)v;
    f->sign_src = src;
    return 0;
}

static const char *const size_from_keys[] = {"field", "add", NULL};

/* "size_from": {"field": name, "add": n}: the string / bytes field takes as many bytes as the
 * field named (in this list or the header, at a fixed offset, unsigned, without target) says,
 * plus n (GT06's command length counts the 4-byte server flag before the text: "add": -4). */
static int parse_size_from(gw__bl_ctx *x, const json_t *o, const char *path, bin_field *f,
                           const bin_field *list, size_t n)
{
    char p[GW__BL_PATH_CAP], q[GW__BL_PATH_CAP];
    int64_t v;
    bool have;
    const json_t *sf = json_object_get(o, "size_from");
    if (!sf)
        return 0;
    gw__bl_sub(p, path, "size_from");
    if (!json_is_object(sf))
        return gw__bl_fail(x, p, "must be an object {\"field\", \"add\"}");
    if (gw__bl_unknown_keys(x, sf, size_from_keys, p))
        return GW_ECONFIG;
    if (f->target == BIN_TG_ROLE)
        return gw__bl_fail(x, p, "not for a field with a role");
    const char *name;
    const bin_field *src = ref_field(x, sf, p, f, list, n, "size", &name);
    if (!src)
        return GW_ECONFIG;
    if (!gw__binary_type_is_unsigned((bin_type)src->type) || src->pos == BIN_POS_AFTER ||
        src->target || src->has_value || src->has_xform || src->bits)
        return gw__bl_fail(x, gw__bl_sub(q, p, "field"),
                           "field \"%s\" must be unsigned (u8..u64) at a fixed \"offset\", "
                           "without target, constant, transform or bits",
                           name);
    if (gw__bl_get_int(x, sf, "add", p, -65536, 65536, false, &v, &have))
        return GW_ECONFIG;
    f->size_src = src;
    f->size_add = have ? (int32_t)v : 0;
    return 0;
}

int gw__bl_parse_fields(gw__bl_ctx *x, const json_t *arr, const char *path, const gw__bl_list *c,
                        bin_field **out, size_t *n_out)
{
    char p[GW__BL_PATH_CAP];
    if (!arr)
        return 0;
    if (!json_is_array(arr))
        return gw__bl_fail(x, path, "must be an array of fields");
    size_t n = json_array_size(arr);
    if (n == 0)
        return 0;
    if (n > 1024)
        return gw__bl_fail(x, path, "more than 1024 fields");
    if (!(*out = calloc(n, sizeof(**out))))
        return gw__bl_fail(x, path, "out of memory");
    *n_out = n;
    int bad = 0; /* fields are independent: report the problems of each */
    for (size_t i = 0; i < n; i++) {
        gw__bl_pathf(p, "%s[%zu]", path, i);
        if (gw__bl_parse_field(x, json_array_get(arr, i), p, c, &(*out)[i]))
            bad = GW_ECONFIG;
    }
    if (bad)
        return bad;
    for (size_t i = 0; i < n; i++) {
        gw__bl_pathf(p, "%s[%zu]", path, i);
        if (gw__bl_parse_sign(x, json_array_get(arr, i), p, &(*out)[i], *out, n) ||
            parse_size_from(x, json_array_get(arr, i), p, &(*out)[i], *out, n))
            bad = GW_ECONFIG;
    }
    if (bad)
        return bad;
    /* "size": "rest" takes what its message's fields from the start leave: the last of them */
    for (size_t i = 0; i < n; i++) {
        if (!(*out)[i].size_rest)
            continue;
        gw__bl_pathf(p, "%s[%zu].size", path, i);
        if (c->kind < 0 || c->in_record)
            return gw__bl_fail(x, p, "\"rest\" only in a message's own fields");
        for (size_t j = i + 1; j < n; j++)
            if ((*out)[j].pos != BIN_POS_END)
                return gw__bl_fail(x, p,
                                   "\"rest\": the last field of its message (but those with a "
                                   "negative offset)");
    }
    /* one field per target and per role in a list */
    for (size_t i = 1; i < n; i++) {
        const bin_field *a = &(*out)[i];
        for (size_t j = 0; j < i && a->target; j++) {
            const bin_field *b = &(*out)[j];
            bool same = a->target == b->target &&
                        (a->target == BIN_TG_ROLE ? a->role == b->role
                                                  : strcmp(a->target_id, b->target_id) == 0);
            if (same) {
                gw__bl_pathf(p, "%s[%zu]", path, i);
                return gw__bl_fail(x, p, "\"%s\" is already carried by %s[%zu]", a->target_id, path,
                                   j);
            }
        }
    }
    return 0;
}

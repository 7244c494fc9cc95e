/* binary_layout.c: a product's "frame" section -> the compiled bin_layout: framing (a length field
 * able to describe max_frame, delimiters, escapes), header, discriminator, check, messages and
 * acks; fields are parsed in binary_layout_field.c, shapes proven in binary_layout_shape.c. The
 * first mistake is reported as "frame.<JSON path>: what". The sections: docs/BINARY-CODEC.md. */
#include "internal.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[] = {"login",       "report",    "event",    "function_reply",
                                         "write_reply", "heartbeat", "register", "invoke",
                                         "write",       "ack"};

static const char *const frame_keys[] = {"endian",        "max_frame", "framing",   "header",
                                         "discriminator", "check",     "auth",      "messages",
                                         "ack",           "auth_code", "handshake", NULL};
static const char *const msg_keys[] = {"kind",   "match", "length",  "event", "function",
                                       "fields", "ack",   "refusal", NULL};
static const char *const code_keys[] = {"algorithm", "size", NULL};
static const char *const ack_keys[] = {"match", "fields", "bare", NULL};
static const char *const check_keys[] = {"algorithm", "from", "to", "at", "endian", NULL};
static const char *const crc_keys[] = {"width",  "poly",   "init",  "refin",
                                       "refout", "xorout", "check", NULL};
static const char *const auth_keys[] = {"algorithm", "from", "to", "at", "size", NULL};

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

int gw__bl_fail(gw__bl_ctx *x, const char *path, const char *fmt, ...)
{
    char msg[200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    gw_diag_add(x->diag, x->file, path, "%s", msg);
    return GW_ECONFIG;
}

/* snprintf into a GW__BL_PATH_CAP buffer; a path that does not fit is cut, fine for a message. */
const char *gw__bl_pathf(char *buf, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, GW__BL_PATH_CAP, fmt, ap);
    va_end(ap);
    return buf;
}

const char *gw__bl_sub(char *buf, const char *path, const char *key)
{
    return gw__bl_pathf(buf, "%s.%s", path, key);
}

int gw__bl_lookup(const char *const *names, size_t n, const char *s)
{
    for (size_t i = 0; s && i < n; i++)
        if (names[i][0] && strcmp(names[i], s) == 0)
            return (int)i;
    return -1;
}

int gw__bl_unknown_keys(gw__bl_ctx *x, const json_t *o, const char *const *allowed,
                        const char *path)
{
    const char *key;
    json_t *v;
    char p[GW__BL_PATH_CAP];
    json_object_foreach((json_t *)o, key, v)
    {
        size_t i = 0;
        while (allowed[i] && strcmp(allowed[i], key) != 0)
            i++;
        if (!allowed[i])
            return gw__bl_fail(x, gw__bl_sub(p, path, key), "unknown key");
    }
    return 0;
}

/* An integer in [lo, hi], or (hex) a "0x..." string; *present false when the key is absent. */
int gw__bl_get_int(gw__bl_ctx *x, const json_t *o, const char *key, const char *path, int64_t lo,
                   int64_t hi, bool hex, int64_t *out, bool *present)
{
    char p[GW__BL_PATH_CAP];
    const json_t *v = json_object_get(o, key);
    *present = v != NULL;
    if (!v)
        return 0;
    gw__bl_sub(p, path, key);
    int64_t n;
    if (json_is_integer(v)) {
        n = json_integer_value(v);
    } else if (hex && json_is_string(v)) {
        const char *s = json_string_value(v);
        char *end;
        if (strncmp(s, "0x", 2) != 0 && strncmp(s, "0X", 2) != 0)
            return gw__bl_fail(x, p, "must be an integer or a \"0x...\" hex string");
        unsigned long long u = strtoull(s + 2, &end, 16);
        if (!s[2] || *end || strlen(s) > 18)
            return gw__bl_fail(x, p, "\"%s\" is not a hex number", s);
        n = u > INT64_MAX ? INT64_MAX : (int64_t)u;
    } else {
        return gw__bl_fail(
            x, p, hex ? "must be an integer or a \"0x...\" hex string" : "must be an integer");
    }
    if (n < lo || n > hi)
        return gw__bl_fail(x, p, "%lld is out of range %lld..%lld", (long long)n, (long long)lo,
                           (long long)hi);
    *out = n;
    return 0;
}

int gw__bl_get_endian(gw__bl_ctx *x, const json_t *o, const char *path, bool dflt, bool *little)
{
    char p[GW__BL_PATH_CAP];
    const json_t *v = json_object_get(o, "endian");
    *little = dflt;
    if (!v)
        return 0;
    const char *s = json_string_value(v);
    if (!s || (strcmp(s, "big") != 0 && strcmp(s, "little") != 0))
        return gw__bl_fail(x, gw__bl_sub(p, path, "endian"), "must be \"big\" or \"little\"");
    *little = strcmp(s, "little") == 0;
    return 0;
}

/* A hex byte string of 1..cap bytes ("7E", "0D0A"). */
static int hex_bytes(gw__bl_ctx *x, const char *s, const char *path, uint8_t *out, size_t cap,
                     uint8_t *n)
{
    size_t len = s ? strlen(s) : 0;
    if (!s || len == 0 || len % 2 || len / 2 > cap)
        return gw__bl_fail(x, path, "must be a hex string of 1..%zu bytes, e.g. \"7E\"", cap);
    for (size_t i = 0; i < len; i += 2) {
        char b[3] = {s[i], s[i + 1], 0}, *end;
        unsigned long u = strtoul(b, &end, 16);
        if (*end || b[0] == '-' || b[0] == '+' || b[0] == ' ')
            return gw__bl_fail(x, path, "\"%s\" is not a hex string", s);
        out[i / 2] = (uint8_t)u;
    }
    *n = (uint8_t)(len / 2);
    return 0;
}

static int get_hex(gw__bl_ctx *x, const json_t *v, const char *path, uint8_t *out, size_t cap,
                   uint8_t *n)
{
    return hex_bytes(x, json_string_value(v), path, out, cap, n);
}

/* ---- framing ---------------------------------------------------------------------------- */

static int parse_escape(gw__bl_ctx *x, const json_t *e, const char *path)
{
    bin_layout *l = x->l;
    char p[GW__BL_PATH_CAP], q[GW__BL_PATH_CAP];
    uint8_t b[1], n;
    const char *key;
    json_t *v;
    static const char *const keys[] = {"byte", "map", NULL};

    if (!json_is_object(e))
        return gw__bl_fail(x, path, "must be an object {\"byte\": \"7D\", \"map\": {...}}");
    if (gw__bl_unknown_keys(x, e, keys, path))
        return GW_ECONFIG;
    if (!json_object_get(e, "byte"))
        return gw__bl_fail(x, gw__bl_sub(p, path, "byte"), "missing required key");
    if (get_hex(x, json_object_get(e, "byte"), gw__bl_sub(p, path, "byte"), b, 1, &n))
        return GW_ECONFIG;
    l->esc_byte = b[0];
    const json_t *map = json_object_get(e, "map");
    gw__bl_sub(p, path, "map");
    if (!json_is_object(map) || json_object_size(map) == 0)
        return gw__bl_fail(x, p, "must be a non-empty object {\"7E\": \"02\", ...}");
    for (int i = 0; i < 256; i++)
        l->esc_from[i] = -1;
    json_object_foreach((json_t *)map, key, v)
    {
        uint8_t from, to;
        gw__bl_sub(q, p, key);
        if (hex_bytes(x, key, q, &from, 1, &n) || get_hex(x, v, q, &to, 1, &n))
            return GW_ECONFIG;
        if (l->esc_from[to] >= 0)
            return gw__bl_fail(x, q, "code %02X is used twice", to);
        l->esc_need[from] = true;
        l->esc_to[from] = to;
        l->esc_from[to] = from;
    }
    if (!l->esc_need[l->esc_byte])
        return gw__bl_fail(x, p, "must map the escape byte %02X itself", l->esc_byte);
    if (l->start_len == 1 && !l->esc_need[l->start[0]])
        return gw__bl_fail(x, p, "must map the start delimiter %02X", l->start[0]);
    if (l->end_len == 1 && !l->esc_need[l->end[0]])
        return gw__bl_fail(x, p, "must map the end delimiter %02X", l->end[0]);
    l->has_escape = true;
    return 0;
}

static int parse_framing(gw__bl_ctx *x, const json_t *fr)
{
    static const char *const modes[] = {"fixed", "length", "delimiter", "datagram"};
    static const char *const keys[4][8] = {
        {"mode", "length", NULL},
        {"mode", "offset", "width", "endian", "covers", "adjust", NULL},
        {"mode", "start", "end", "escape", NULL},
        {"mode", NULL},
    };
    const char *path = "frame.framing";
    char p[GW__BL_PATH_CAP];
    bin_layout *l = x->l;
    int64_t n;
    bool have;

    if (!fr)
        return gw__bl_fail(x, path, "missing required key (fixed, length, delimiter or datagram)");
    if (!json_is_object(fr))
        return gw__bl_fail(x, path, "must be an object");
    int mode = gw__bl_lookup(modes, N_OF(modes), json_string_value(json_object_get(fr, "mode")));
    if (mode < 0)
        return gw__bl_fail(x, gw__bl_sub(p, path, "mode"),
                           "must be \"fixed\", \"length\", \"delimiter\" or \"datagram\"");
    if (gw__bl_unknown_keys(x, fr, keys[mode], path))
        return GW_ECONFIG;
    l->framing = (uint8_t)mode;
    x->body_cap = l->max_frame;
    switch (mode) {
    case BIN_FR_FIXED:
        if (gw__bl_get_int(x, fr, "length", path, 1, l->max_frame, false, &n, &have))
            return GW_ECONFIG;
        if (!have)
            return gw__bl_fail(x, gw__bl_sub(p, path, "length"), "missing required key");
        l->fixed_len = (uint32_t)n;
        x->body_cap = l->fixed_len;
        break;
    case BIN_FR_LENGTH: {
        if (gw__bl_get_int(x, fr, "offset", path, 0, l->max_frame - 1, false, &n, &have))
            return GW_ECONFIG;
        if (!have)
            return gw__bl_fail(x, gw__bl_sub(p, path, "offset"), "missing required key");
        l->len_off = (uint32_t)n;
        if (gw__bl_get_int(x, fr, "width", path, 1, 4, false, &n, &have))
            return GW_ECONFIG;
        if (!have || n == 3)
            return gw__bl_fail(x, gw__bl_sub(p, path, "width"), "must be 1, 2 or 4");
        l->len_width = (uint8_t)n;
        bool little;
        if (gw__bl_get_endian(x, fr, path, x->little, &little))
            return GW_ECONFIG;
        l->len_little = little;
        const json_t *c = json_object_get(fr, "covers");
        if (c && (!json_is_string(c) || (strcmp(json_string_value(c), "after") != 0 &&
                                         strcmp(json_string_value(c), "frame") != 0)))
            return gw__bl_fail(x, gw__bl_sub(p, path, "covers"), "must be \"after\" or \"frame\"");
        l->len_covers_frame = c && strcmp(json_string_value(c), "frame") == 0;
        if (gw__bl_get_int(x, fr, "adjust", path, -65536, 65536, false, &n, &have))
            return GW_ECONFIG;
        l->len_adjust = have ? (int32_t)n : 0;
        if (l->len_off + l->len_width > l->max_frame)
            return gw__bl_fail(x, gw__bl_sub(p, path, "offset"),
                               "the length field ends past max_frame %u", l->max_frame);
        int64_t base = l->len_covers_frame ? 0 : (int64_t)(l->len_off + l->len_width);
        int64_t most = base + (int64_t)((1ull << (8 * l->len_width)) - 1) + l->len_adjust;
        if (most < (int64_t)l->max_frame)
            return gw__bl_fail(
                x, gw__bl_sub(p, path, "width"),
                "a %u-byte length field describes at most %lld bytes, max_frame is %u",
                l->len_width, (long long)most, l->max_frame);
        break;
    }
    case BIN_FR_DELIMITER: {
        const json_t *v = json_object_get(fr, "start");
        if (v &&
            get_hex(x, v, gw__bl_sub(p, path, "start"), l->start, sizeof(l->start), &l->start_len))
            return GW_ECONFIG;
        if (!(v = json_object_get(fr, "end")))
            return gw__bl_fail(x, gw__bl_sub(p, path, "end"), "missing required key");
        if (get_hex(x, v, gw__bl_sub(p, path, "end"), l->end, sizeof(l->end), &l->end_len))
            return GW_ECONFIG;
        if ((v = json_object_get(fr, "escape")) &&
            parse_escape(x, v, gw__bl_sub(p, path, "escape")))
            return GW_ECONFIG;
        if ((uint32_t)l->start_len + l->end_len + 1 > l->max_frame)
            return gw__bl_fail(x, path, "delimiters leave no room for a body in max_frame %u",
                               l->max_frame);
        x->body_cap = l->max_frame - l->start_len - l->end_len;
        break;
    }
    case BIN_FR_DATAGRAM:
        if (x->p->protocol && strcmp(x->p->protocol, "tcp") == 0)
            return gw__bl_fail(x, gw__bl_sub(p, path, "mode"),
                               "\"datagram\" frames need a datagram transport, not tcp");
        break;
    }
    return 0;
}

/* ---- messages --------------------------------------------------------------------------- */

static int disc_max(const bin_layout *l, uint64_t *max)
{
    if (l->disc < 0)
        return -1;
    const bin_field *d = &l->header[l->disc];
    unsigned bits = d->bits ? d->bits : (unsigned)gw__binary_type_width(d->type) * 8;
    *max = bits >= 32 ? UINT32_MAX : (1ull << bits) - 1;
    return 0;
}

static int parse_match(gw__bl_ctx *x, const json_t *o, const char *path, bin_msg *m)
{
    char p[GW__BL_PATH_CAP];
    uint64_t max;
    int64_t n = 0; /* a Release (-O3) build cannot see it is set whenever have is */
    bool have;
    if (disc_max(x->l, &max) < 0) {
        if (json_object_get(o, "match"))
            return gw__bl_fail(x, gw__bl_sub(p, path, "match"),
                               "no frame.discriminator is declared");
        return 0;
    }
    if (gw__bl_get_int(x, o, "match", path, 0, (int64_t)max, true, &n, &have))
        return GW_ECONFIG;
    if (!have)
        return gw__bl_fail(x, gw__bl_sub(p, path, "match"),
                           "missing required key (the discriminator value)");
    m->has_match = true;
    m->match = (uint32_t)n;
    return 0;
}

/* A frame of no bytes at all could not be told from nothing (an empty datagram, "7E 7E"). */
static int no_bytes(gw__bl_ctx *x, const bin_msg *m, const char *path)
{
    const bin_layout *l = x->l;
    if (l->n_header || m->n_fields || l->framing == BIN_FR_LENGTH || l->algo || l->has_auth ||
        l->framing == BIN_FR_FIXED)
        return 0;
    return gw__bl_fail(x, path, "an empty frame: declare at least one field");
}

static int parse_ack(gw__bl_ctx *x, const json_t *o, const char *path, int *index)
{
    char p[GW__BL_PATH_CAP];
    bin_layout *l = x->l;
    bin_msg *m = &l->acks[l->n_acks];
    gw__bl_list c = {.kind = BIN_K_ACK};
    if (!json_is_object(o))
        return gw__bl_fail(x, path,
                           "must be an object {\"match\": ..., \"fields\": [...]} or false");
    if (gw__bl_unknown_keys(x, o, ack_keys, path))
        return GW_ECONFIG;
    m->kind = BIN_K_ACK;
    m->length = -1;
    m->ack = -1;
    m->refusal = -1;
    *index = (int)l->n_acks++;
    const json_t *bare = json_object_get(o, "bare");
    if (bare && !json_is_boolean(bare))
        return gw__bl_fail(x, gw__bl_sub(p, path, "bare"), "must be true or false");
    m->bare = json_is_true(bare);
    if (m->bare && json_object_get(o, "match"))
        return gw__bl_fail(x, gw__bl_sub(p, path, "match"),
                           "a bare ack has no header, so no discriminator value");
    if (m->bare && !json_array_size(json_object_get(o, "fields")))
        return gw__bl_fail(x, gw__bl_sub(p, path, "fields"), "a bare ack needs a field");
    if ((!m->bare && parse_match(x, o, path, m)) ||
        gw__bl_parse_fields(x, json_object_get(o, "fields"), gw__bl_sub(p, path, "fields"), &c,
                            &m->fields, &m->n_fields) ||
        no_bytes(x, m, path))
        return GW_ECONFIG;
    return 0;
}

/* "refusal": the answer to an upstream message the gateway refuses (register: an unknown
 * terminal), instead of its ack with result 1. */
static int parse_refusal(gw__bl_ctx *x, const json_t *o, const char *path, bin_msg *m)
{
    char p[GW__BL_PATH_CAP];
    const json_t *r = json_object_get(o, "refusal");
    if (!r)
        return 0;
    gw__bl_sub(p, path, "refusal");
    if (!BIN_K_IS_UP(m->kind))
        return gw__bl_fail(x, p, "only for upstream messages");
    return parse_ack(x, r, p, &m->refusal);
}

static int parse_message(gw__bl_ctx *x, const json_t *o, const char *path, bin_msg *m)
{
    char p[GW__BL_PATH_CAP];
    int64_t n;
    bool have;
    gw__bl_list c = {0};

    m->length = -1;
    m->ack = -1;
    m->refusal = -1;
    if (!json_is_object(o))
        return gw__bl_fail(x, path, "must be an object");
    if (gw__bl_unknown_keys(x, o, msg_keys, path))
        return GW_ECONFIG;
    int k = gw__bl_lookup(kind_names, N_OF(kind_names) - 1,
                          json_string_value(json_object_get(o, "kind")));
    if (k < 0)
        return gw__bl_fail(x, gw__bl_sub(p, path, "kind"),
                           "must be one of login, report, event, function_reply, write_reply, "
                           "heartbeat, register, invoke, write");
    m->kind = (uint8_t)k;
    c.kind = k;
    const json_t *ev = json_object_get(o, "event"), *fn = json_object_get(o, "function");
    if (k == BIN_K_EVENT) {
        const char *id = json_string_value(ev);
        if (!ev)
            return gw__bl_fail(x, gw__bl_sub(p, path, "event"),
                               "missing required key for kind event");
        if (!id || !(c.ev = gw_tm_event(x->p, id)))
            return gw__bl_fail(x, gw__bl_sub(p, path, "event"),
                               "no event \"%s\" in the thing model", id ? id : "?");
        if (!(m->ref = strdup(id)))
            return gw__bl_fail(x, path, "out of memory");
    } else if (ev) {
        return gw__bl_fail(x, gw__bl_sub(p, path, "event"), "only for kind event");
    }
    if (k == BIN_K_FUNCTION_REPLY || k == BIN_K_INVOKE) {
        const char *id = json_string_value(fn);
        if (!fn)
            return gw__bl_fail(x, gw__bl_sub(p, path, "function"),
                               "missing required key for kind %s", kind_names[k]);
        if (!id || !(c.fn = gw_tm_function(x->p, id)))
            return gw__bl_fail(x, gw__bl_sub(p, path, "function"),
                               "no function \"%s\" in the thing model", id ? id : "?");
        if (!(m->ref = strdup(id)))
            return gw__bl_fail(x, path, "out of memory");
    } else if (fn) {
        return gw__bl_fail(x, gw__bl_sub(p, path, "function"),
                           "only for kinds function_reply and invoke");
    }
    if (parse_match(x, o, path, m))
        return GW_ECONFIG;
    if (gw__bl_get_int(x, o, "length", path, 1, x->body_cap, false, &n, &have))
        return GW_ECONFIG;
    if (have)
        m->length = (int32_t)n;
    if (gw__bl_parse_fields(x, json_object_get(o, "fields"), gw__bl_sub(p, path, "fields"), &c,
                            &m->fields, &m->n_fields) ||
        no_bytes(x, m, path))
        return GW_ECONFIG;
    const json_t *ack = json_object_get(o, "ack");
    if (ack && !BIN_K_IS_UP(k))
        return gw__bl_fail(x, gw__bl_sub(p, path, "ack"), "only for upstream messages");
    if (ack && !json_is_false(ack) && parse_ack(x, ack, gw__bl_sub(p, path, "ack"), &m->ack))
        return GW_ECONFIG;
    if (!ack)
        m->ack = -2; /* the frame's default ack, resolved later */
    return parse_refusal(x, o, path, m);
}

static int check_matches(gw__bl_ctx *x)
{
    bin_layout *l = x->l;
    char p[GW__BL_PATH_CAP];
    size_t up = 0, down = 0;
    for (size_t i = 0; i < l->n_msgs; i++) {
        const bin_msg *a = &l->msgs[i];
        up += BIN_K_IS_UP(a->kind);
        down += !BIN_K_IS_UP(a->kind);
        for (size_t j = 0; j < i && a->has_match; j++) {
            const bin_msg *b = &l->msgs[j];
            if (b->match == a->match && BIN_K_IS_UP(a->kind) == BIN_K_IS_UP(b->kind)) {
                gw__bl_pathf(p, "frame.messages[%zu].match", i);
                return gw__bl_fail(x, p, "%u is already used by messages[%zu]", a->match, j);
            }
        }
        for (size_t j = 0; j < l->n_acks && a->has_match && !BIN_K_IS_UP(a->kind); j++)
            if (!l->acks[j].bare && l->acks[j].match == a->match) {
                gw__bl_pathf(p, "frame.messages[%zu].match", i);
                return gw__bl_fail(x, p, "%u is already used by an ack", a->match);
            }
    }
    if (l->disc < 0 && (up > 1 || down > 1))
        return gw__bl_fail(x, "frame.discriminator",
                           "missing: needed to tell %zu %s messages apart", up > 1 ? up : down,
                           up > 1 ? "upstream" : "downstream");
    if (up == 0)
        return gw__bl_fail(x, "frame.messages", "no upstream message (login, report, event, ...)");
    return 0;
}

/* Role flags and shapes of every message and ack, the default ack resolved. */
static int finish_messages(gw__bl_ctx *x, int default_ack)
{
    bin_layout *l = x->l;
    for (size_t a = 0; a < 2; a++) {
        bin_msg *ms = a ? l->acks : l->msgs;
        size_t n = a ? l->n_acks : l->n_msgs;
        for (size_t i = 0; i < n; i++) {
            bin_msg *m = &ms[i];
            const bin_field *prev = l->n_header ? &l->header[l->n_header - 1] : NULL;
            if (m->ack == -2)
                m->ack = default_ack;
            if (m->bare) { /* its fields alone, one after the other */
                prev = NULL;
                if (gw__bl_resolve(x, m->fields, m->n_fields, &prev))
                    return GW_ECONFIG;
                continue;
            }
            if (gw__bl_resolve(x, m->fields, m->n_fields, &prev) || gw__bl_check_shape(x, m))
                return GW_ECONFIG;
            for (size_t j = 0; j + 1 < m->n_fields; j++) /* a group ends where the data does */
                if (m->fields[j].type == BIN_GROUP && m->fields[j + 1].pos != BIN_POS_END)
                    return gw__bl_fail(x, m->fields[j + 1].path,
                                       "a group is the last field of its message (the fields "
                                       "after it count from the end: negative offset)");
            m->tail = l->header_tail;
            for (size_t pass = 0; pass < 2; pass++) {
                const bin_field *fs = pass ? m->fields : l->header;
                size_t nf = pass ? m->n_fields : l->n_header;
                for (size_t j = 0; j < nf; j++) {
                    m->role_seq |= fs[j].role == BIN_ROLE_SEQ;
                    m->role_msg_id |= fs[j].role == BIN_ROLE_MSG_ID;
                    m->role_secret |= fs[j].role == BIN_ROLE_SECRET;
                    m->role_result |= fs[j].role == BIN_ROLE_RESULT;
                    if (fs[j].pos == BIN_POS_END && (uint32_t)-fs[j].off > m->tail)
                        m->tail = (uint32_t)-fs[j].off;
                }
            }
        }
    }
    return 0;
}

/* ---- the frame section ------------------------------------------------------------------ */

/* "algorithm": a name ("crc16-x25", "xor", "sum8": docs/BINARY-CODEC.md section 5) or the CRC's
 * catalogue parameters {"width", "poly", "init", "refin", "refout", "xorout", "check"}; a CRC is
 * proven against its check value here, once. */
static int parse_algorithm(gw__bl_ctx *x, const json_t *a)
{
    const char *path = "frame.check.algorithm";
    char p[GW__BL_PATH_CAP];
    bin_layout *l = x->l;
    const char *name = json_string_value(a);
    if (name && (strcmp(name, "xor") == 0 || strcmp(name, "sum8") == 0)) {
        l->algo = name[0] == 'x' ? BIN_CK_XOR : BIN_CK_SUM8;
        snprintf(l->algo_name, sizeof(l->algo_name), "%s", name);
        return 0;
    }
    gw__crc_params cp;
    bool has_check = true;
    if (name) {
        const gw__crc_params *k = gw__crc_find(name);
        if (!k)
            return gw__bl_fail(x, path,
                               "unknown algorithm \"%s\": a name of the CRC catalogue (crc16-x25, "
                               "crc16-modbus, crc32...), xor, sum8, or {width, poly, init, "
                               "refin, refout, xorout, check}",
                               name);
        cp = *k;
    } else if (json_is_object(a)) {
        int64_t v;
        bool have;
        if (gw__bl_unknown_keys(x, a, crc_keys, path))
            return GW_ECONFIG;
        memset(&cp, 0, sizeof(cp));
        cp.name = "crc";
        if (gw__bl_get_int(x, a, "width", path, 8, 32, false, &v, &have))
            return GW_ECONFIG;
        if (!have || (v != 8 && v != 16 && v != 32))
            return gw__bl_fail(x, gw__bl_sub(p, path, "width"), "must be 8, 16 or 32");
        cp.width = (uint8_t)v;
        int64_t max = (int64_t)((1ull << cp.width) - 1u);
        static const char *const nums[] = {"poly", "init", "xorout", "check"};
        uint32_t *dst[] = {&cp.poly, &cp.init, &cp.xorout, &cp.check};
        for (int i = 0; i < 4; i++) {
            v = 0;
            if (gw__bl_get_int(x, a, nums[i], path, 0, max, true, &v, &have))
                return GW_ECONFIG;
            if (!have && i == 0)
                return gw__bl_fail(x, gw__bl_sub(p, path, "poly"), "missing required key");
            if (!have && i == 3)
                has_check = false;
            *dst[i] = (uint32_t)v;
        }
        if (!(cp.poly & 1u))
            return gw__bl_fail(x, gw__bl_sub(p, path, "poly"),
                               "0x%" PRIX32 " is even: a CRC polynomial has its x^0 term (the "
                               "catalogue writes it without the top bit)",
                               cp.poly);
        static const char *const bools[] = {"refin", "refout"};
        bool *bd[] = {&cp.refin, &cp.refout};
        for (int i = 0; i < 2; i++) {
            const json_t *b = json_object_get(a, bools[i]);
            if (!b || !json_is_boolean(b))
                return gw__bl_fail(x, gw__bl_sub(p, path, bools[i]),
                                   b ? "must be true or false" : "missing required key");
            *bd[i] = json_is_true(b);
        }
    } else {
        return gw__bl_fail(x, path, "must be an algorithm name or an object of CRC parameters");
    }
    int rc = gw__crc_init(&l->crc, &cp);
    if (rc < 0)
        return gw__bl_fail(x, path, "width must be 8, 16 or 32");
    if (rc > 0 && has_check) {
        uint32_t got = gw__crc_compute(&l->crc, (const uint8_t *)"123456789", 9);
        return gw__bl_fail(x, name ? path : gw__bl_sub(p, path, "check"),
                           "these parameters give 0x%0*" PRIX32
                           " for \"123456789\", not 0x%0*" PRIX32,
                           cp.width / 4, got, cp.width / 4, cp.check);
    }
    l->algo = BIN_CK_CRC;
    snprintf(l->algo_name, sizeof(l->algo_name), "%s", cp.name);
    return 0;
}

static int parse_check(gw__bl_ctx *x, const json_t *c)
{
    const char *path = "frame.check";
    char p[GW__BL_PATH_CAP];
    bin_layout *l = x->l;
    int64_t n;
    bool have, little;
    if (!json_is_object(c))
        return gw__bl_fail(x, path, "must be an object");
    if (gw__bl_unknown_keys(x, c, check_keys, path))
        return GW_ECONFIG;
    if (parse_algorithm(x, json_object_get(c, "algorithm")))
        return GW_ECONFIG;
    l->ck_width = (uint8_t)gw__binary_check_width(l);
    int64_t cap = x->body_cap;
    if (gw__bl_get_int(x, c, "at", path, -cap, cap - l->ck_width, false, &n, &have))
        return GW_ECONFIG;
    l->ck_at = have ? (int32_t)n : -(int32_t)l->ck_width;
    if (gw__bl_get_int(x, c, "from", path, -cap, cap, false, &n, &have))
        return GW_ECONFIG;
    l->ck_from = have ? (int32_t)n : 0;
    if (gw__bl_get_int(x, c, "to", path, -cap, cap, false, &n, &have))
        return GW_ECONFIG;
    l->ck_to = have ? (int32_t)n : l->ck_at;
    if (l->ck_at < 0 && l->ck_at > -(int32_t)l->ck_width)
        return gw__bl_fail(x, gw__bl_sub(p, path, "at"), "a %u-byte check at %d runs past the end",
                           l->ck_width, l->ck_at);
    if (l->ck_to == 0 && (have || l->ck_at == 0))
        return gw__bl_fail(x, gw__bl_sub(p, path, "to"),
                           "an empty range (0 means the start; use a negative "
                           "value to count from the end)");
    if ((l->ck_from >= 0) == (l->ck_to >= 0) && l->ck_from > l->ck_to)
        return gw__bl_fail(x, gw__bl_sub(p, path, "from"), "%d is after to %d", l->ck_from,
                           l->ck_to);
    if (gw__bl_get_endian(x, c, path, x->little, &little))
        return GW_ECONFIG;
    l->ck_little = little;
    if (gw__bl_check_in_range(l, x->body_cap))
        return gw__bl_fail(x, path, "the check (at %d) lies inside its own range %d..%d", l->ck_at,
                           l->ck_from, l->ck_to);
    return 0;
}

/* What "auth" and "auth_code" share: an object of keys, "algorithm": "hmac-sha256" and "size"
 * (4..32 bytes, default def) into *size. */
static int parse_hmac(gw__bl_ctx *x, const json_t *c, const char *path, const char *const *keys,
                      uint8_t def, uint8_t *size)
{
    char p[GW__BL_PATH_CAP];
    int64_t n;
    bool have;
    if (!json_is_object(c))
        return gw__bl_fail(x, path, "must be an object");
    if (gw__bl_unknown_keys(x, c, keys, path))
        return GW_ECONFIG;
    const char *a = json_string_value(json_object_get(c, "algorithm"));
    if (!a || strcmp(a, "hmac-sha256") != 0)
        return gw__bl_fail(x, gw__bl_sub(p, path, "algorithm"), "must be \"hmac-sha256\"");
    if (gw__bl_get_int(x, c, "size", path, 4, 32, false, &n, &have))
        return GW_ECONFIG;
    *size = have ? (uint8_t)n : def;
    return 0;
}

/* "auth": an HMAC-SHA256 keyed with the device's secret, truncated to size bytes at "at", over
 * [from, to). By default it sits right before a trailing check (which covers it), or last. */
static int parse_auth(gw__bl_ctx *x, const json_t *c)
{
    const char *path = "frame.auth";
    char p[GW__BL_PATH_CAP];
    bin_layout *l = x->l;
    int64_t n, cap = x->body_cap;
    bool have;
    size_t from, to, at;
    if (parse_hmac(x, c, path, auth_keys, 32, &l->mac_size))
        return GW_ECONFIG;
    if (gw__bl_get_int(x, c, "at", path, -cap, cap - l->mac_size, false, &n, &have))
        return GW_ECONFIG;
    l->mac_at = have                      ? (int32_t)n
                : l->algo && l->ck_at < 0 ? l->ck_at - l->mac_size
                                          : -(int32_t)l->mac_size;
    if (gw__bl_get_int(x, c, "from", path, -cap, cap, false, &n, &have))
        return GW_ECONFIG;
    l->mac_from = have ? (int32_t)n : 0;
    if (gw__bl_get_int(x, c, "to", path, -cap, cap, false, &n, &have))
        return GW_ECONFIG;
    l->mac_to = have ? (int32_t)n : l->mac_at;
    if (l->mac_at < 0 && l->mac_at > -(int32_t)l->mac_size)
        return gw__bl_fail(x, gw__bl_sub(p, path, "at"), "a %u-byte MAC at %d runs past the end",
                           l->mac_size, l->mac_at);
    if (l->mac_to == 0 && (have || l->mac_at == 0))
        return gw__bl_fail(x, gw__bl_sub(p, path, "to"),
                           "an empty range (0 means the start; use a negative "
                           "value to count from the end)");
    if ((l->mac_from >= 0) == (l->mac_to >= 0) && l->mac_from > l->mac_to)
        return gw__bl_fail(x, gw__bl_sub(p, path, "from"), "%d is after to %d", l->mac_from,
                           l->mac_to);
    l->has_auth = true;
    const char *why = gw__binary_mac_place(l, cap, &from, &to, &at);
    if (why)
        return gw__bl_fail(x, path, "%s (at %d, range %d..%d)", why, l->mac_at, l->mac_from,
                           l->mac_to);
    return 0;
}

/* "auth_code": {"algorithm": "hmac-sha256", "size": 8}: the code a login carries is derived from
 * the device's secret (gw__binary_auth_code); a register message's ack hands it out. */
static int parse_auth_code(gw__bl_ctx *x, const json_t *c)
{
    if (parse_hmac(x, c, "frame.auth_code", code_keys, 8, &x->l->code_size))
        return GW_ECONFIG;
    x->l->has_auth_code = true;
    return 0;
}

/* The field of role r in message m or the header (NULL: none). */
static const bin_field *role_field(const bin_layout *l, const bin_msg *m, int r)
{
    for (size_t i = 0; i < m->n_fields; i++)
        if (m->fields[i].target == BIN_TG_ROLE && m->fields[i].role == r)
            return &m->fields[i];
    for (size_t i = 0; i < l->n_header; i++)
        if (l->header[i].target == BIN_TG_ROLE && l->header[i].role == r)
            return &l->header[i];
    return NULL;
}

/* Registration (docs/BINARY-CODEC.md section 7a): a register message answered with the auth
 * code, which the login then carries instead of the secret. */
static int check_registration(gw__bl_ctx *x)
{
    const bin_layout *l = x->l;
    char p[GW__BL_PATH_CAP], q[GW__BL_PATH_CAP];
    bool login_secret = false;
    for (size_t i = 0; i < l->n_msgs; i++)
        login_secret |= l->msgs[i].kind == BIN_K_LOGIN && l->msgs[i].role_secret;
    for (size_t i = 0; i < l->n_acks; i++) {
        const bin_field *f = role_field(l, &l->acks[i], BIN_ROLE_AUTH_CODE);
        if (f && !l->has_auth_code)
            return gw__bl_fail(x, f->path, "role auth_code needs frame.auth_code");
        if (f && !f->prefix && f->size != 2u * l->code_size)
            return gw__bl_fail(x, f->path,
                               "an auth code of %u bytes is %u hex characters, the field has %u",
                               l->code_size, 2u * l->code_size, f->size);
    }
    if (l->has_auth_code && !login_secret)
        return gw__bl_fail(x, "frame.auth_code",
                           "no login message with a field of role secret carries the code");
    for (size_t i = 0; i < l->n_msgs; i++) {
        const bin_msg *m = &l->msgs[i];
        if (m->kind != BIN_K_REGISTER)
            continue;
        gw__bl_pathf(p, "frame.messages[%zu]", i);
        if (!l->has_auth_code)
            return gw__bl_fail(x, p, "a register message needs frame.auth_code");
        if (x->p->protocol && strcmp(x->p->protocol, "udp") == 0)
            return gw__bl_fail(x, p, "register messages are for TCP products (UDP has no login)");
        if (!role_field(l, m, BIN_ROLE_DEVICE_ID))
            return gw__bl_fail(x, p, "a register message must name its device (role device_id)");
        if (m->ack < 0 || !role_field(l, &l->acks[m->ack], BIN_ROLE_AUTH_CODE))
            return gw__bl_fail(x, gw__bl_sub(q, p, "ack"),
                               "a register message's ack must carry the code (role auth_code)");
    }
    return 0;
}

static int parse_header(gw__bl_ctx *x, const json_t *root)
{
    bin_layout *l = x->l;
    gw__bl_list c = {.kind = -1};
    const json_t *d = json_object_get(root, "discriminator");
    l->disc = -1;
    if (gw__bl_parse_fields(x, json_object_get(root, "header"), "frame.header", &c, &l->header,
                            &l->n_header))
        return GW_ECONFIG;
    const bin_field *prev = NULL;
    if (gw__bl_resolve(x, l->header, l->n_header, &prev))
        return GW_ECONFIG;
    if (l->algo && l->ck_at < 0)
        l->header_tail = (uint32_t)-l->ck_at;
    if (l->has_auth && l->mac_at < 0 && (uint32_t)-l->mac_at > l->header_tail)
        l->header_tail = (uint32_t)-l->mac_at;
    for (size_t i = 0; i < l->n_header; i++) {
        const bin_field *h = &l->header[i];
        l->header_secret |= h->role == BIN_ROLE_SECRET;
        if (h->pos == BIN_POS_END && (uint32_t)-h->off > l->header_tail)
            l->header_tail = (uint32_t)-h->off;
    }
    if (!d)
        return 0;
    const char *name = json_string_value(d);
    if (!name || !*name)
        return gw__bl_fail(x, "frame.discriminator", "must be the name of a header field");
    for (size_t i = 0; i < l->n_header && l->disc < 0; i++)
        if (strcmp(l->header[i].name, name) == 0)
            l->disc = (int)i;
    if (l->disc < 0)
        return gw__bl_fail(x, "frame.discriminator", "no header field named \"%s\"", name);
    const bin_field *f = &l->header[l->disc];
    if (!gw__binary_type_is_int(f->type) || !gw__binary_type_is_unsigned(f->type) || f->has_xform ||
        f->has_value || f->target || (f->type == BIN_U64 && !f->bits))
        return gw__bl_fail(
            x, "frame.discriminator",
            "field \"%s\" must be u8, u16 or u32 (or a bit field), without transform, "
            "constant or target",
            name);
    return 0;
}

static int parse_frame(gw__bl_ctx *x, const json_t *root)
{
    bin_layout *l = x->l;
    char p[GW__BL_PATH_CAP];
    int64_t n;
    bool have, little;

    if (!json_is_object(root))
        return gw__bl_fail(x, "frame", "must be an object");
    if (gw__bl_unknown_keys(x, root, frame_keys, "frame"))
        return GW_ECONFIG;
    if (gw__bl_get_endian(x, root, "frame", false, &little))
        return GW_ECONFIG;
    x->little = little;
    if (gw__bl_get_int(x, root, "max_frame", "frame", 1, GW_BINARY_MAX_FRAME, false, &n, &have))
        return GW_ECONFIG;
    l->max_frame = have ? (uint32_t)n : 1024;
    if (parse_framing(x, json_object_get(root, "framing")))
        return GW_ECONFIG;
    const json_t *c = json_object_get(root, "check");
    if (c && parse_check(x, c))
        return GW_ECONFIG;
    const json_t *au = json_object_get(root, "auth");
    if (au && parse_auth(x, au))
        return GW_ECONFIG;
    const json_t *ac = json_object_get(root, "auth_code");
    if (ac && parse_auth_code(x, ac))
        return GW_ECONFIG;
    if (parse_header(x, root))
        return GW_ECONFIG;
    if (gw__bl_check_shape(x, NULL))
        return GW_ECONFIG;

    const json_t *ms = json_object_get(root, "messages");
    size_t nm = json_array_size(ms);
    if (!json_is_array(ms) || nm == 0)
        return gw__bl_fail(x, "frame.messages", "must be a non-empty array of messages");
    if (nm > 1024)
        return gw__bl_fail(x, "frame.messages", "more than 1024 messages");
    if (!(l->msgs = calloc(nm, sizeof(*l->msgs))) ||
        !(l->acks = calloc(2 * nm + 1, sizeof(*l->acks))))
        return gw__bl_fail(x, "frame.messages", "out of memory");
    int bad = 0; /* messages are independent: report the problems of each */
    for (size_t i = 0; i < nm; i++) {
        gw__bl_pathf(p, "frame.messages[%zu]", i);
        l->n_msgs = i + 1;
        if (parse_message(x, json_array_get(ms, i), p, &l->msgs[i]))
            bad = GW_ECONFIG;
    }
    if (bad)
        return bad;
    int default_ack = -1;
    const json_t *ack = json_object_get(root, "ack");
    if (ack && !json_is_false(ack) && parse_ack(x, ack, "frame.ack", &default_ack))
        return GW_ECONFIG;
    if (check_matches(x) || finish_messages(x, default_ack) || check_registration(x))
        return GW_ECONFIG;
    const json_t *hs = json_object_get(root, "handshake");
    if (hs && gw__bl_parse_handshake(x, hs))
        return GW_ECONFIG;
    if (x->p->auth_mode == GW_AUTH_DEVICE_ID) { /* no secret to check: none may be declared */
        bool secret = l->has_auth || l->header_secret;
        for (size_t i = 0; i < l->n_msgs; i++)
            secret = secret || (BIN_K_IS_UP(l->msgs[i].kind) && l->msgs[i].role_secret);
        if (secret)
            return gw__bl_fail(x, "auth.mode",
                               "\"device-id\" checks no secret, but the frame carries one (a "
                               "field with role secret, or frame.auth): use \"secret\"");
    }
    if (l->framing == BIN_FR_LENGTH) {
        /* the shortest frame a length field may describe: the header and a trailing check */
        int64_t min = l->len_off + l->len_width;
        for (size_t i = 0; i < l->n_header; i++)
            if (l->header[i].pos == BIN_POS_START &&
                l->header[i].off + (int64_t)l->header[i].size > min)
                min = l->header[i].off + (int64_t)l->header[i].size;
        int64_t tail = l->algo && l->ck_at < 0 ? -l->ck_at : 0;
        if (l->has_auth && l->mac_at < 0 && -l->mac_at > tail)
            tail = -l->mac_at;
        if (l->algo && l->ck_at >= 0 && l->ck_at + l->ck_width > min)
            min = l->ck_at + l->ck_width;
        if (l->has_auth && l->mac_at >= 0 && l->mac_at + l->mac_size > min)
            min = l->mac_at + l->mac_size;
        l->min_total = (uint32_t)(min + tail);
    }
    gw__binary_ack_plan(l); /* the layout is whole: acks that can be precomputed are */
    return 0;
}

static void free_fields(bin_field *fs, size_t n)
{
    for (size_t i = 0; fs && i < n; i++) {
        free(fs[i].name);
        free(fs[i].path);
        free(fs[i].target_id);
        gw__bl_free_group(fs[i].grp);
    }
    free(fs);
}

static void free_msgs(bin_msg *ms, size_t n)
{
    for (size_t i = 0; ms && i < n; i++) {
        free_fields(ms[i].fields, ms[i].n_fields);
        free(ms[i].ref);
        gw__binary_ack_tpl_free(ms[i].tpl);
    }
    free(ms);
}

void gw__binary_layout_free(bin_layout *l)
{
    if (!l)
        return;
    free_fields(l->header, l->n_header);
    free_msgs(l->msgs, l->n_msgs);
    free_msgs(l->acks, l->n_acks);
    free_fields(l->hs, l->n_hs);
    free(l);
}

int gw__binary_layout_load(const gw_product *p, bin_layout **out, gw_diag *diag, const char *file)
{
    *out = NULL;
    const json_t *root = p->raw ? json_object_get(p->raw, "frame") : NULL;
    gw__bl_ctx x = {.p = p, .diag = diag, .file = file};
    if (!root)
        return gw__bl_fail(&x, "frame", "missing required key (the binary codec's frame layout)");
    bin_layout *l = calloc(1, sizeof(*l));
    if (!l)
        return gw__bl_fail(&x, "frame", "out of memory");
    x.l = l;
    size_t before = diag->n;
    if (parse_frame(&x, root) != 0) {
        if (diag->n == before)
            gw__bl_fail(&x, "frame", "invalid");
        gw__binary_layout_free(l);
        return GW_ECONFIG;
    }
    *out = l;
    return 0;
}

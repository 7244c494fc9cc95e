/* json_read.c: the JSON codec's in-place reader (json_read.h): one pass over a property report or
 * an event, no tree, no allocation beyond the normalised payload. Takes only what it can decide by
 * the thing model's own rules (gw__tm_*_ok) and words nothing: every "no" is "not taken", and the
 * jansson path decides and words it. Numbers keep their text where it already is the normalised
 * one; reals are computed exactly (at most 15 digits, no exponent: m / 10^k, both exact, is
 * correctly rounded, as strtod is). */
#include "json_read.h"

#include <stdio.h>
#include <string.h>

#include "../../gateway/util/alloc.h"
#include "../../gateway/util/json_write.h"

#define NOT_TAKEN 1
#define MAX_SPECS 256  /* specs beyond this are left to the general path (duplicate bit set) */
#define OUT_CAP   2048 /* normalised payloads longer than this are left to the general path */

typedef struct rd {
    const char *p, *end;
} rd;

typedef struct ob {
    size_t n;
    bool full;
    char b[OUT_CAP];
} ob;

static void put(ob *o, const char *s, size_t n)
{
    if (n > OUT_CAP - 1 - o->n) {
        o->full = true;
        return;
    }
    memcpy(o->b + o->n, s, n);
    o->n += n;
}

static inline void put_c(ob *o, char c)
{
    put(o, &c, 1);
}

static inline void ws(rd *r)
{
    while (r->p < r->end && (*r->p == ' ' || *r->p == '\n' || *r->p == '\r' || *r->p == '\t'))
        r->p++;
}

/* Skips white space, then takes c. */
static inline bool take(rd *r, char c)
{
    ws(r);
    if (r->p < r->end && *r->p == c) {
        r->p++;
        return true;
    }
    return false;
}

static inline bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

/* A string of printable ASCII without escapes (its text is its value); [*s, *s + *n). */
static bool read_str(rd *r, const char **s, size_t *n)
{
    ws(r);
    if (r->p >= r->end || *r->p != '"')
        return false;
    const char *b = ++r->p;
    /* 8 bytes at a time while none is '"', '\\', a control byte or non-ASCII */
    const uint64_t ones = 0x0101010101010101ull, high = 0x8080808080808080ull;
    while (r->end - r->p >= 8) {
        uint64_t w;
        memcpy(&w, r->p, 8);
        uint64_t q = w ^ (ones * '"'), bs = w ^ (ones * '\\');
        if (((w - ones * 0x20) | (q - ones) | (bs - ones) | w) & high)
            break;
        r->p += 8;
    }
    for (; r->p < r->end; r->p++) {
        unsigned char c = (unsigned char)*r->p;
        if (c == '"') {
            *s = b;
            *n = (size_t)(r->p++ - b);
            return true;
        }
        if (c < 0x20 || c >= 0x80 || c == '\\')
            return false;
    }
    return false;
}

typedef struct num {
    const char *s; /* the text */
    size_t n;
    bool is_int; /* no fraction: a JSON integer */
    bool canon;  /* a real whose text is already its normalised text (gw_json_real) */
    int64_t i;   /* is_int */
    double d;    /* the value (is_int: (double)i, as jansson's json_number_value) */
} num;

/* A JSON number with at most 18 integer digits, or at most 15 digits in all with a fraction, and
 * no exponent; the rest (and anything that is not a number) is not taken. */
static bool read_num(rd *r, num *v)
{
    static const double pow10[] = {1,   1e1, 1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                   1e8, 1e9, 1e10, 1e11, 1e12, 1e13, 1e14, 1e15};
    ws(r);
    const char *p = r->p, *e = r->end;
    bool neg = p < e && *p == '-';
    uint64_t m = 0;
    int idig = 0, fdig = 0;
    bool last_zero = false;
    v->s = p;
    p += neg;
    if (p >= e || !is_digit(*p))
        return false;
    if (*p == '0') {
        p++;
        idig = 1;
        if (p < e && is_digit(*p))
            return false; /* a leading zero */
    } else {
        for (; p < e && is_digit(*p); p++) {
            if (++idig > 18)
                return false;
            m = m * 10 + (uint64_t)(*p - '0');
        }
    }
    v->is_int = true;
    if (p < e && *p == '.') {
        v->is_int = false;
        for (p++; p < e && is_digit(*p); p++) {
            if (idig + ++fdig > 15)
                return false;
            last_zero = *p == '0';
            m = m * 10 + (uint64_t)(*p - '0');
        }
        if (fdig == 0)
            return false;
    }
    if (p < e && (*p == 'e' || *p == 'E'))
        return false;
    v->n = (size_t)(p - v->s);
    r->p = p;
    if (v->is_int) {
        v->i = neg ? -(int64_t)m : (int64_t)m;
        v->d = (double)v->i;
        v->canon = false;
    } else {
        double d = (double)m / pow10[fdig];
        v->d = neg ? -d : d;
        v->i = 0;
        /* gw_json_real writes |d| < 1e9 with up to 6 decimals as the shortest such decimal: the
         * text itself when it has no trailing zero (or is "X.0"); 15 digits tell doubles apart */
        v->canon = idig <= 9 && fdig <= 6 && (!last_zero || fdig == 1);
    }
    return true;
}

static bool read_lit(rd *r, const char *lit, size_t n)
{
    ws(r);
    if ((size_t)(r->end - r->p) < n || memcmp(r->p, lit, n) != 0)
        return false;
    r->p += n;
    return true;
}

/* One value checked against s, its normalised text into o. 0 or NOT_TAKEN. */
static int read_value(rd *r, const gw_value_spec *s, ob *o)
{
    switch (s->type) {
    case GW_T_INT:
    case GW_T_LONG:
    case GW_T_DATE: {
        num v;
        if (!read_num(r, &v) || !v.is_int || !gw__tm_integer_ok(s, v.i))
            return NOT_TAKEN;
        if (v.i == 0)
            put_c(o, '0'); /* "-0" reads as 0 */
        else
            put(o, v.s, v.n);
        break;
    }
    case GW_T_FLOAT:
    case GW_T_DOUBLE: {
        num v;
        if (!read_num(r, &v) || !gw__tm_real_ok(s, v.d))
            return NOT_TAKEN;
        if (v.canon) {
            put(o, v.s, v.n);
        } else {
            char t[40];
            put(o, t, gw_json_real(t, v.d));
        }
        break;
    }
    case GW_T_BOOL:
        if (read_lit(r, "true", 4)) {
            put(o, "true", 4);
        } else if (read_lit(r, "false", 5)) {
            put(o, "false", 5);
        } else {
            return NOT_TAKEN;
        }
        break;
    case GW_T_STRING:
    case GW_T_ENUM: {
        const char *str;
        size_t n;
        if (!read_str(r, &str, &n))
            return NOT_TAKEN;
        if (s->type == GW_T_STRING ? !gw__tm_string_ok(s, n) : !gw__tm_enum_ok(s, str, n))
            return NOT_TAKEN;
        put_c(o, '"');
        put(o, str, n);
        put_c(o, '"');
        break;
    }
    case GW_T_STRUCT:
    case GW_T_ARRAY:
    default:
        return NOT_TAKEN;
    }
    return 0;
}

/* An object of named values (a report's properties, an event's data), or none (absent: {}).
 * Every key a spec, no key twice; required specs present when check_required; non-empty when
 * !allow_empty. */
static int read_values(rd *r, bool absent, const gw_value_spec *specs, size_t n,
                       bool check_required, bool allow_empty, ob *o)
{
    uint64_t seen[MAX_SPECS / 64] = {0};
    size_t required_seen = 0, members = 0, guess = 0;
    put_c(o, '{');
    if (!absent && !take(r, '{'))
        return NOT_TAKEN;
    if (!absent && !take(r, '}')) {
        do {
            const char *key;
            size_t key_len;
            if (!read_str(r, &key, &key_len) || !take(r, ':'))
                return NOT_TAKEN;
            const gw_value_spec *s = gw__tm_find_spec_from(specs, n, key, key_len, guess);
            if (!s)
                return NOT_TAKEN;
            size_t i = (size_t)(s - specs);
            guess = i + 1;
            if (seen[i / 64] & (1ull << (i % 64)))
                return NOT_TAKEN; /* a duplicate key */
            seen[i / 64] |= 1ull << (i % 64);
            required_seen += s->required;
            if (members++)
                put_c(o, ',');
            put_c(o, '"');
            put(o, key, key_len);
            put(o, "\":", 2);
            int rc = read_value(r, s, o);
            if (rc)
                return rc;
        } while (take(r, ','));
        if (!take(r, '}'))
            return NOT_TAKEN;
    }
    put_c(o, '}');
    if (!members && !allow_empty)
        return NOT_TAKEN;
    if (check_required) {
        size_t required = 0;
        for (size_t i = 0; i < n; i++)
            required += specs[i].required;
        if (required_seen < required)
            return NOT_TAKEN;
    }
    return 0;
}

#define KEY_IS(lit) (key_len == sizeof(lit) - 1 && memcmp(key, lit, sizeof(lit) - 1) == 0)

enum { S_MSG_ID = 1, S_TS = 2, S_VERSION = 4, S_VALUES = 8 };

/* The envelope: messageId, timestamp, version and the values' key, each once. */
static int read_msg(rd *r, const gw_product *p, const gw_event_spec *ev, ob *o, gw_thing_msg *out)
{
    bool report = out->kind == GW_MSG_PROPERTY_REPORT;
    const gw_value_spec *specs = report ? p->properties : ev->params;
    size_t n = report ? p->n_properties : ev->n_params;
    unsigned seen = 0;
    if (n > MAX_SPECS || !take(r, '{'))
        return NOT_TAKEN;
    if (!take(r, '}')) {
        do {
            const char *key;
            size_t key_len;
            unsigned bit;
            int rc = 0;
            if (!read_str(r, &key, &key_len) || !take(r, ':'))
                return NOT_TAKEN;
            if (KEY_IS("messageId")) {
                bit = S_MSG_ID;
                const char *s;
                size_t sn;
                num v;
                ws(r);
                if (r->p < r->end && *r->p == '"') {
                    if (!read_str(r, &s, &sn) || sn >= sizeof(out->msg_id))
                        return NOT_TAKEN;
                    memcpy(out->msg_id, s, sn);
                    out->msg_id[sn] = 0;
                } else if (read_num(r, &v) && v.is_int) {
                    snprintf(out->msg_id, sizeof(out->msg_id), "%lld", (long long)v.i);
                } else {
                    return NOT_TAKEN;
                }
            } else if (KEY_IS("timestamp")) {
                bit = S_TS;
                num v;
                if (!read_num(r, &v) || !v.is_int || v.i < 0)
                    return NOT_TAKEN;
                out->timestamp_ms = v.i;
            } else if (KEY_IS("version")) {
                bit = S_VERSION;
                const char *s;
                size_t sn;
                if (!read_str(r, &s, &sn))
                    return NOT_TAKEN;
            } else if (report ? KEY_IS("properties") : KEY_IS("data")) {
                bit = S_VALUES;
                if (seen & bit)
                    return NOT_TAKEN;
                rc = read_values(r, false, specs, n, !report, !report, o);
            } else {
                return NOT_TAKEN;
            }
            if (rc)
                return rc;
            if (seen & bit)
                return NOT_TAKEN; /* a duplicate key */
            seen |= bit;
        } while (take(r, ','));
        if (!take(r, '}'))
            return NOT_TAKEN;
    }
    ws(r);
    if (r->p != r->end)
        return NOT_TAKEN;
    if (!(seen & S_VALUES)) {
        if (report)
            return NOT_TAKEN; /* "properties" is required */
        return read_values(r, true, specs, n, true, true, o);
    }
    return 0;
}

int gw__json_read(const gw_product *p, const gw_decode_hint *hint, const uint8_t *buf, size_t len,
                  gw_thing_msg *out)
{
    memset(out, 0, sizeof(*out));
    if (!p || !hint)
        return NOT_TAKEN;
    const gw_event_spec *ev = NULL;
    if (hint->kind == GW_MSG_EVENT) {
        size_t n = hint->name ? strlen(hint->name) : 0;
        if (n == 0 || n >= sizeof(out->name) || !(ev = gw_tm_event(p, hint->name)))
            return NOT_TAKEN;
        memcpy(out->name, hint->name, n + 1);
    } else if (hint->kind != GW_MSG_PROPERTY_REPORT) {
        return NOT_TAKEN;
    }
    out->kind = hint->kind;

    ob o;
    o.n = 0;
    o.full = false;
    rd r = {(const char *)buf, (const char *)buf + len};
    int rc = read_msg(&r, p, ev, &o, out);
    if (!rc && o.full)
        rc = NOT_TAKEN;
    if (!rc && !(out->norm_text = gw_malloc(GW_AREA_EVENT, o.n + 1)))
        rc = GW_ENOMEM;
    if (rc) {
        memset(out, 0, sizeof(*out));
        return rc;
    }
    memcpy(out->norm_text, o.b, o.n);
    out->norm_text[o.n] = 0;
    return 0;
}

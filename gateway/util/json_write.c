/* json_write.c: a compact JSON writer for validated values (objects, arrays, strings, integers,
 * reals, booleans, null) into one growing buffer: one allocation per document. */
#include "json_write.h"

#include <inttypes.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct wbuf {
    char *p;
    size_t len, cap;
    int oom;
    int fixed;    /* the caller's buffer: running out of room is an error, not a realloc */
    gw_area area; /* where a growing buffer is allocated */
    int stack; /* p is the writer's stack buffer: a document that outgrows it moves to the heap */
} wbuf;

/* Room for n more bytes and the NUL: false when out of room or memory (b->oom set). */
static bool room(wbuf *b, size_t n)
{
    if (b->oom)
        return false;
    if (b->len + n + 1 > b->cap) {
        if (b->fixed) {
            b->oom = 1;
            return false;
        }
        size_t cap = b->cap ? b->cap : 128;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *p = b->stack ? gw_malloc(b->area, cap) : gw_realloc(b->area, b->p, cap);
        if (!p) {
            b->oom = 1;
            return false;
        }
        if (b->stack)
            memcpy(p, b->p, b->len);
        b->stack = 0;
        b->p = p;
        b->cap = cap;
    }
    return true;
}

static void put(wbuf *b, const char *s, size_t n)
{
    if (!room(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

/* v's decimal digits written backwards, two at a time, ending just before end: their start. */
static char *dec_digits(char *end, uint64_t v)
{
    static const char pairs[] =
        "00010203040506070809101112131415161718192021222324252627282930313233"
        "34353637383940414243444546474849505152535455565758596061626364656667"
        "6869707172737475767778798081828384858687888990919293949596979899";
    while (v >= 100) {
        unsigned r = (unsigned)(v % 100);
        v /= 100;
        end -= 2;
        memcpy(end, pairs + 2 * r, 2);
    }
    if (v >= 10) {
        end -= 2;
        memcpy(end, pairs + 2 * v, 2);
    } else {
        *--end = (char)('0' + v);
    }
    return end;
}

/* Fast path without printf for the common sensor value, a decimal with up to 6 fractional digits
 * (21.5, 230.1, -40.0): m = d * 10^k rounded; if m / 10^k (exact operands, so correctly rounded,
 * as strtod of the same digits is) gives d back, those digits are a round-trip text of d, and the
 * first k that works gives the shortest one. 0 when d needs the general path. */
static size_t real_fast(char *buf, double d)
{
    static const double pow10[] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6};
    if (!(d > -1e9 && d < 1e9))
        return 0;
    for (int k = 0; k < 7; k++) {
        double m = nearbyint(d * pow10[k]);
        if (m / pow10[k] != d)
            continue;
        char tmp[24], *end = tmp + sizeof(tmp);
        char *s = dec_digits(end, (uint64_t)(m < 0 ? -m : m)); /* < 1e15: 16 digits at most */
        int n = (int)(end - s), o = 0;
        while (n <= k) { /* at least one digit before the point */
            *--s = '0';
            n++;
        }
        if (signbit(d))
            buf[o++] = '-';
        memcpy(buf + o, s, (size_t)(n - k));
        o += n - k;
        buf[o++] = '.';
        if (k == 0) {
            buf[o++] = '0';
        } else {
            memcpy(buf + o, s + n - k, (size_t)k);
            o += k;
        }
        buf[o] = 0;
        return (size_t)o;
    }
    return 0;
}

size_t gw_json_real(char *buf, double d)
{
    size_t fast = real_fast(buf, d);
    if (fast)
        return fast;
    int n = 0;
    for (int prec = 15; prec <= 17; prec++) {
        n = snprintf(buf, 32, "%.*g", prec, d);
        if (strtod(buf, NULL) == d)
            break;
    }
    if (!strpbrk(buf, ".eEn")) { /* keep it a real: 21 -> 21.0 (n: inf/nan never get here) */
        memcpy(buf + n, ".0", 3);
        n += 2;
    }
    return (size_t)n;
}

size_t gw_json_int(char *buf, int64_t x)
{
    char tmp[24], *end = tmp + sizeof(tmp);
    char *s = dec_digits(end, x < 0 ? -(uint64_t)x : (uint64_t)x);
    size_t n = (size_t)(end - s), o = 0;
    if (x < 0)
        buf[o++] = '-';
    memcpy(buf + o, s, n);
    o += n;
    buf[o] = 0;
    return o;
}

static void put_string(wbuf *b, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    size_t run = 0;
    while (run < n && (unsigned char)s[run] >= 0x20 && s[run] != '"' && s[run] != '\\')
        run++;
    if (run == n) { /* nothing to escape (ids, most values): one copy */
        if (room(b, n + 2)) {
            b->p[b->len++] = '"';
            memcpy(b->p + b->len, s, n);
            b->len += n;
            b->p[b->len++] = '"';
        }
        return;
    }
    run = 0;
    put(b, "\"", 1);
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c >= 0x20 && c != '"' && c != '\\')
            continue;
        put(b, s + run, i - run);
        run = i + 1;
        char esc[6] = {'\\', 'u', '0', '0', hex[c >> 4], hex[c & 15]};
        if (c == '"' || c == '\\') {
            esc[1] = (char)c;
            put(b, esc, 2);
        } else if (c == '\n') {
            put(b, "\\n", 2);
        } else if (c == '\t') {
            put(b, "\\t", 2);
        } else if (c == '\r') {
            put(b, "\\r", 2);
        } else {
            put(b, esc, 6);
        }
    }
    put(b, s + run, n - run);
    put(b, "\"", 1);
}

static void put_value(wbuf *b, const json_t *v, int depth)
{
    char num[40];
    if (depth > 64) { /* validated values are far shallower; never recurse without bound */
        b->oom = 1;
        return;
    }
    switch (json_typeof(v)) {
    case JSON_OBJECT: {
        const char *key;
        const json_t *val;
        int first = 1;
        put(b, "{", 1);
        json_object_foreach((json_t *)v, key, val)
        {
            if (!first)
                put(b, ",", 1);
            first = 0;
            put_string(b, key, strlen(key));
            put(b, ":", 1);
            put_value(b, val, depth + 1);
        }
        put(b, "}", 1);
        break;
    }
    case JSON_ARRAY:
        put(b, "[", 1);
        for (size_t i = 0; i < json_array_size(v); i++) {
            if (i)
                put(b, ",", 1);
            put_value(b, json_array_get(v, i), depth + 1);
        }
        put(b, "]", 1);
        break;
    case JSON_STRING:
        put_string(b, json_string_value(v), json_string_length(v));
        break;
    case JSON_INTEGER:
        put(b, num, gw_json_int(num, json_integer_value(v)));
        break;
    case JSON_REAL:
        put(b, num, gw_json_real(num, json_real_value(v)));
        break;
    case JSON_TRUE:
        put(b, "true", 4);
        break;
    case JSON_FALSE:
        put(b, "false", 5);
        break;
    default:
        put(b, "null", 4);
        break;
    }
}

/* Written on the stack first, then copied into one allocation of its size (a sensor report is a
 * few hundred bytes: no growing, no slack). */
char *gw_json_write_in(gw_area a, const json_t *v)
{
    char stack[1024];
    wbuf b = {stack, 0, sizeof(stack), 0, 0, a, 1};
    put_value(&b, v, 0);
    if (b.oom) {
        if (!b.stack)
            gw_free(a, b.p);
        return NULL;
    }
    if (b.stack) {
        char *p = gw_malloc(a, b.len + 1);
        if (p)
            memcpy(p, stack, b.len);
        b.p = p;
    }
    if (b.p)
        b.p[b.len] = 0;
    return b.p;
}

char *gw_json_write(const json_t *v)
{
    return gw_json_write_in(GW_AREA_EVENT, v);
}

size_t gw_json_string(char *out, size_t cap, const char *s, size_t n)
{
    size_t run = 0;
    while (run < n && (unsigned char)s[run] >= 0x20 && s[run] != '"' && s[run] != '\\')
        run++;
    if (run == n && n + 3 <= cap) { /* nothing to escape (enum values, ids): one copy */
        out[0] = '"';
        memcpy(out + 1, s, n);
        out[n + 1] = '"';
        out[n + 2] = 0;
        return n + 2;
    }
    wbuf b = {out, 0, cap, 0, 1, GW_AREA_EVENT, 0};
    put_string(&b, s, n);
    if (b.oom)
        return 0;
    out[b.len] = 0;
    return b.len;
}

const char *gw_json_kind(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "object";
    case JSON_ARRAY:
        return "array";
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "real";
    case JSON_TRUE:
    case JSON_FALSE:
        return "bool";
    case JSON_NULL:
        return "null";
    }
    return "unknown";
}

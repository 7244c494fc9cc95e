/* binary_fields.c: one field's bytes <-> its value: integers of 1..8 bytes in either byte order,
 * IEEE floats, BCD, strings, bytes as hex, bit fields and the linear transform, and the mapping of
 * a number onto its thing-model target (bool, enum index, digit strings). */
#include "internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../gateway/util/alloc.h"
#include "../../gateway/util/json_write.h"

#define LABEL gw__binary_label

static const char hexdig[] = "0123456789abcdef";

static uint64_t bit_mask(unsigned bits)
{
    return bits >= 64 ? UINT64_MAX : (1ull << bits) - 1;
}

static bool utf8_valid(const uint8_t *s, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint8_t c = s[i];
        size_t len;
        uint32_t cp;
        if (c < 0x80) {
            i++;
            continue;
        } else if ((c & 0xe0) == 0xc0) {
            len = 2, cp = c & 0x1f;
        } else if ((c & 0xf0) == 0xe0) {
            len = 3, cp = c & 0x0f;
        } else if ((c & 0xf8) == 0xf0) {
            len = 4, cp = c & 0x07;
        } else {
            return false;
        }
        if (i + len > n)
            return false;
        for (size_t k = 1; k < len; k++) {
            if ((s[i + k] & 0xc0) != 0x80)
                return false;
            cp = (cp << 6) | (s[i + k] & 0x3f);
        }
        if ((len == 2 && cp < 0x80) || (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
            cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

/* A fixed-size string is cut at its first NUL, and trailing spaces are dropped. */
static size_t text_len(const uint8_t *b, size_t n)
{
    const uint8_t *z = memchr(b, 0, n);
    if (z)
        n = (size_t)(z - b);
    while (n && b[n - 1] == ' ')
        n--;
    return n;
}

/* BCD digits into dst (2 * n + 1 bytes); rejects nibbles above 9. */
static int bcd_digits(const bin_field *f, const uint8_t *b, size_t n, char *dst, gw_reject *rej)
{
    for (size_t i = 0; i < n; i++) {
        uint8_t hi = b[i] >> 4, lo = b[i] & 0x0f;
        if (hi > 9 || lo > 9)
            return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                                 "field %s: byte %zu (0x%02X) is not BCD", LABEL(f), i, b[i]);
        dst[2 * i] = (char)('0' + hi);
        dst[2 * i + 1] = (char)('0' + lo);
    }
    dst[2 * n] = '\0';
    return 0;
}

/* A bcd field's digits, the leading padding of a "digits" field dropped (it must be zeros). */
static int bcd_value(const bin_field *f, const uint8_t *b, char d[21], gw_reject *rej)
{
    if (bcd_digits(f, b, f->size, d, rej))
        return GW_EINVAL;
    size_t all = 2 * (size_t)f->size, drop = f->digits ? all - f->digits : 0;
    for (size_t i = 0; i < drop; i++)
        if (d[i] != '0')
            return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                                 "field %s: %s has more than %u digits", LABEL(f), d, f->digits);
    memmove(d, d + drop, all - drop + 1);
    return 0;
}

/* Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's days_from_civil). */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? (unsigned)-3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

int gw__binary_datetime_read(const bin_field *f, const uint8_t *b, int64_t *ms, gw_reject *rej)
{
    static const uint8_t mdays[] = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
    unsigned y = b[0], mo = b[1], d = b[2], h = b[3], mi = b[4], s = b[5];
    bool leap = (2000 + y) % 4 == 0; /* 2000..2099: every fourth year */
    if (y > 99 || mo < 1 || mo > 12 || d < 1 || d > mdays[mo - 1] ||
        (mo == 2 && d == 29 && !leap) || h > 23 || mi > 59 || s > 59)
        return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                             "field %s: %02X %02X %02X %02X %02X %02X is not a date-time "
                             "(YY MM DD hh mm ss)",
                             LABEL(f), b[0], b[1], b[2], b[3], b[4], b[5]);
    *ms = ((days_from_civil(2000 + y, mo, d) * 24 + h) * 60 + mi) * 60000 + (int64_t)s * 1000;
    return 0;
}

int gw__binary_datetime_put(const bin_field *f, int64_t ms, uint8_t *b, gw_error *err)
{
    /* 2000-01-01 .. 2099-12-31 23:59:59 */
    if (ms < 946684800000LL || ms >= 4102444800000LL)
        return gw_error_set(err, GW_EINVAL, "%s: %" PRId64 " ms is outside 2000..2099", f->path,
                            ms);
    int64_t t = ms / 1000, days = t / 86400, sec = t % 86400;
    /* civil_from_days (Hinnant) */
    int64_t z = days + 719468, era = z / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153, d = doy - (153 * mp + 2) / 5 + 1;
    unsigned m = mp < 10 ? mp + 3 : mp - 9;
    int64_t y = (int64_t)yoe + era * 400 + (m <= 2);
    b[0] = (uint8_t)(y - 2000), b[1] = (uint8_t)m, b[2] = (uint8_t)d;
    b[3] = (uint8_t)(sec / 3600), b[4] = (uint8_t)(sec / 60 % 60), b[5] = (uint8_t)(sec % 60);
    return 0;
}

/* raw as f's value (its bits if it has some): signed for the signed types, else unsigned. */
static inline int int_num(const bin_field *f, uint64_t raw, bin_num *out)
{
    if (f->bits)
        raw = (raw >> f->bit) & bit_mask(f->bits);
    switch (f->type) {
    case BIN_I8:
        out->i = (int8_t)raw;
        break;
    case BIN_I16:
        out->i = (int16_t)raw;
        break;
    case BIN_I32:
        out->i = (int32_t)raw;
        break;
    case BIN_I64:
        out->i = (int64_t)raw;
        break;
    default:
        out->kind = BIN_NUM_UINT;
        out->u = raw;
        return 0;
    }
    out->kind = BIN_NUM_INT;
    return 0;
}

int gw__binary_read_num(const bin_field *f, const uint8_t *b, bin_num *out, gw_reject *rej)
{
    size_t w = gw__binary_type_width((bin_type)f->type);
    memset(out, 0, sizeof(*out));
    if (f->type <= BIN_I64) /* the integers first: most fields are */
        return int_num(f, gw__binary_get_uint(b, w, f->little), out);
    if (f->type == BIN_DATETIME) {
        out->kind = BIN_NUM_INT;
        return gw__binary_datetime_read(f, b, &out->i, rej);
    }
    if (f->type == BIN_BCD) {
        char d[21];
        if (bcd_value(f, b, d, rej))
            return GW_EINVAL;
        uint64_t v = 0;
        for (size_t i = 0; d[i]; i++) {
            if (v > (UINT64_MAX - 9) / 10)
                return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                                     "field %s: BCD %s is too large a number", LABEL(f), d);
            v = v * 10 + (uint64_t)(d[i] - '0');
        }
        out->kind = BIN_NUM_UINT;
        out->u = v;
        return 0;
    }
    uint64_t raw = gw__binary_get_uint(b, w, f->little);
    if (f->type == BIN_F32 || f->type == BIN_F64) {
        if (f->type == BIN_F32) {
            uint32_t r32 = (uint32_t)raw;
            float fl;
            memcpy(&fl, &r32, sizeof(fl));
            out->d = fl;
        } else {
            memcpy(&out->d, &raw, sizeof(out->d));
        }
        if (!isfinite(out->d))
            return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "field %s: not a finite number",
                                 LABEL(f));
        out->kind = BIN_NUM_REAL;
        return 0;
    }
    return int_num(f, raw, out);
}

/* raw * scale, computed as raw / 10^k when scale is 0.1, 0.01, ... (any 1/n): 2301 * 0.1 is
 * 230.10000000000002 but 2301 / 10 is the double nearest 230.1, which is what the device meant. */
static double scaled(double raw, double scale)
{
    double inv = 1.0 / scale, n = nearbyint(inv);
    if (fabs(n) >= 2 && fabs(inv - n) <= 1e-9 * fabs(n))
        return raw / n;
    return raw * scale;
}

int gw__binary_xform(const bin_field *f, bin_num *n, gw_reject *rej)
{
    if (!f->has_xform)
        return 0;
    if (n->kind == BIN_NUM_REAL) {
        n->d = scaled(n->d, f->scale) + f->add;
        goto finite;
    }
    if (f->int_xform) {
        int64_t v, r;
        if (n->kind == BIN_NUM_UINT && n->u > INT64_MAX)
            goto overflow;
        v = n->kind == BIN_NUM_UINT ? (int64_t)n->u : n->i;
        if (__builtin_mul_overflow(v, f->iscale, &r) || __builtin_add_overflow(r, f->iadd, &r))
            goto overflow;
        n->kind = BIN_NUM_INT;
        n->i = r;
        return 0;
    }
    n->d = scaled(n->kind == BIN_NUM_UINT ? (double)n->u : (double)n->i, f->scale) + f->add;
    n->kind = BIN_NUM_REAL;
finite:
    if (!isfinite(n->d))
        return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                             "field %s: the transform leaves no finite number", LABEL(f));
    return 0;
overflow:
    return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "field %s: value overflows 64 bits",
                         LABEL(f));
}

static json_t *new_or_reject(json_t *v, const bin_field *f, gw_reject *rej)
{
    if (!v)
        gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "field %s: out of memory", LABEL(f));
    return v;
}

int gw__binary_to_json(const bin_field *f, const uint8_t *b, size_t n, bool negate, json_t **out,
                       gw_reject *rej)
{
    const gw_value_spec *s = f->spec;
    *out = NULL;
    if (f->type == BIN_STRING) {
        size_t len = f->prefix || f->size_var ? n : text_len(b, n);
        if (!utf8_valid(b, len) || memchr(b, 0, len))
            return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "field %s: not valid UTF-8 text",
                                 LABEL(f));
        return (*out = new_or_reject(json_stringn((const char *)b, len), f, rej)) ? 0 : GW_EINVAL;
    }
    if (f->type == BIN_BYTES) {
        char small[512], *h = 2 * n < sizeof(small) ? small : gw_malloc(GW_AREA_SESSION, 2 * n + 1);
        if (!h)
            return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "field %s: out of memory", LABEL(f));
        for (size_t i = 0; i < n; i++) {
            h[2 * i] = hexdig[b[i] >> 4];
            h[2 * i + 1] = hexdig[b[i] & 0x0f];
        }
        *out = new_or_reject(json_stringn(h, 2 * n), f, rej);
        if (h != small)
            gw_free(GW_AREA_SESSION, h);
        return *out ? 0 : GW_EINVAL;
    }
    if (f->type == BIN_BCD && s && s->type == GW_T_STRING) {
        char d[21];
        if (bcd_value(f, b, d, rej))
            return GW_EINVAL;
        return (*out = new_or_reject(json_string(d), f, rej)) ? 0 : GW_EINVAL;
    }
    bin_num num;
    if (gw__binary_read_num(f, b, &num, rej) || gw__binary_xform(f, &num, rej))
        return GW_EINVAL;
    if (negate) { /* "sign_from" says so */
        if (num.kind == BIN_NUM_REAL) {
            num.d = -num.d;
        } else if (num.kind == BIN_NUM_INT) {
            if (num.i == INT64_MIN)
                return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                                     "field %s: value overflows 64 bits", LABEL(f));
            num.i = -num.i;
        } else {
            if (num.u > INT64_MAX)
                return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                                     "field %s: value overflows 64 bits", LABEL(f));
            num.kind = BIN_NUM_INT;
            num.i = -(int64_t)num.u;
        }
    }
    if (num.kind == BIN_NUM_REAL)
        return (*out = new_or_reject(json_real(num.d), f, rej)) ? 0 : GW_EINVAL;
    if (s && s->type == GW_T_BOOL)
        return (*out = json_boolean(num.kind == BIN_NUM_UINT ? num.u != 0 : num.i != 0))
                   ? 0
                   : GW_EINVAL;
    if (s && s->type == GW_T_ENUM) {
        uint64_t idx = num.kind == BIN_NUM_UINT ? num.u : (uint64_t)num.i;
        if ((num.kind == BIN_NUM_INT && num.i < 0) || idx >= s->n_enum)
            return gw_reject_set(rej, GW_R_ENUM_VALUE,
                                 "field %s: %s index %" PRId64 " is not listed (0..%zu)", LABEL(f),
                                 f->target_id, num.kind == BIN_NUM_INT ? num.i : (int64_t)idx,
                                 s->n_enum - 1);
        return (*out = new_or_reject(json_string(s->enum_values[idx]), f, rej)) ? 0 : GW_EINVAL;
    }
    if (num.kind == BIN_NUM_UINT && num.u > INT64_MAX)
        return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                             "field %s: %" PRIu64 " does not fit a 64-bit signed integer", LABEL(f),
                             num.u);
    int64_t v = num.kind == BIN_NUM_UINT ? (int64_t)num.u : num.i;
    if (s && (s->type == GW_T_FLOAT || s->type == GW_T_DOUBLE) && gw__tm_real_ok(s, (double)v))
        /* the real the thing model's check makes of it (so a report passes as it is,
         * gw_tm_report_as_is); one it rejects stays an integer, for the check to word */
        return (*out = new_or_reject(json_real((double)v), f, rej)) ? 0 : GW_EINVAL;
    return (*out = new_or_reject(json_integer(v), f, rej)) ? 0 : GW_EINVAL;
}

/* A string value as gw_json_write writes it, when its property keeps it as it is (string within
 * its length, or a listed enum value); 0 otherwise. */
static size_t string_text(const gw_value_spec *s, const char *v, size_t len, char *dst, size_t cap)
{
    if (s->type == GW_T_STRING ? !gw__tm_string_ok(s, len)
                               : s->type != GW_T_ENUM || !gw__tm_enum_ok(s, v, len))
        return 0;
    return gw_json_string(dst, cap, v, len);
}

/* An integer below 1e9 in magnitude as gw_json_real writes it as a double: its digits and ".0"
 * (exact: the double holds it; gw_json_real's fast path finds it with no fractional digit). */
static size_t real_of_int(char *dst, int64_t v)
{
    size_t n = gw_json_int(dst, v);
    memcpy(dst + n, ".0", 3);
    return n + 2;
}

size_t gw__binary_value_text(const bin_field *f, const uint8_t *b, size_t n, bool negate, char *dst,
                             size_t cap)
{
    const gw_value_spec *s = f->spec;
    gw_reject rej; /* the general path words every refusal */
    if (!s || cap < 41)
        return 0;
    if (f->type == BIN_STRING) {
        size_t len = f->prefix || f->size_var ? n : text_len(b, n);
        if (!utf8_valid(b, len) || memchr(b, 0, len))
            return 0;
        return string_text(s, (const char *)b, len, dst, cap);
    }
    if (f->type == BIN_BYTES) {
        char h[256];
        if (2 * n >= sizeof(h))
            return 0;
        for (size_t i = 0; i < n; i++) {
            h[2 * i] = hexdig[b[i] >> 4];
            h[2 * i + 1] = hexdig[b[i] & 0x0f];
        }
        return string_text(s, h, 2 * n, dst, cap);
    }
    if (f->type == BIN_BCD && s->type == GW_T_STRING) {
        char d[21];
        if (bcd_value(f, b, d, &rej))
            return 0;
        return string_text(s, d, strlen(d), dst, cap);
    }
    bin_num num;
    if (gw__binary_read_num(f, b, &num, &rej) || gw__binary_xform(f, &num, &rej))
        return 0;
    if (negate) {
        if (num.kind == BIN_NUM_REAL) {
            num.d = -num.d;
        } else if (num.kind == BIN_NUM_INT) {
            if (num.i == INT64_MIN)
                return 0;
            num.i = -num.i;
        } else {
            if (num.u > INT64_MAX)
                return 0;
            num.kind = BIN_NUM_INT;
            num.i = -(int64_t)num.u;
        }
    }
    bool real_type = s->type == GW_T_FLOAT || s->type == GW_T_DOUBLE;
    if (num.kind == BIN_NUM_REAL)
        return real_type && gw__tm_real_ok(s, num.d) ? gw_json_real(dst, num.d) : 0;
    if (s->type == GW_T_BOOL) {
        bool t = num.kind == BIN_NUM_UINT ? num.u != 0 : num.i != 0;
        memcpy(dst, t ? "true" : "false", t ? 5 : 6);
        return t ? 4 : 5;
    }
    if (s->type == GW_T_ENUM) {
        uint64_t idx = num.kind == BIN_NUM_UINT ? num.u : (uint64_t)num.i;
        if ((num.kind == BIN_NUM_INT && num.i < 0) || idx >= s->n_enum || !s->enum_values[idx])
            return 0;
        /* a listed value by construction: gw__tm_enum_ok's search would find it */
        return gw_json_string(dst, cap, s->enum_values[idx], strlen(s->enum_values[idx]));
    }
    if (num.kind == BIN_NUM_UINT && num.u > INT64_MAX)
        return 0;
    int64_t v = num.kind == BIN_NUM_UINT ? (int64_t)num.u : num.i;
    if (real_type && v > -1000000000 && v < 1000000000) /* gw_json_real's text of (double)v */
        return gw__tm_real_ok(s, (double)v) ? real_of_int(dst, v) : 0;
    if (real_type)
        return gw__tm_real_ok(s, (double)v) ? gw_json_real(dst, (double)v) : 0;
    if (s->type == GW_T_INT || s->type == GW_T_LONG || s->type == GW_T_DATE)
        return gw__tm_integer_ok(s, v) ? gw_json_int(dst, v) : 0;
    return 0;
}

int gw__binary_to_text(const bin_field *f, const uint8_t *b, size_t n, char *dst, size_t cap,
                       gw_reject *rej)
{
    size_t len;
    if (f->type == BIN_STRING) {
        len = f->prefix || f->size_var ? n : text_len(b, n);
        if (!utf8_valid(b, len) || memchr(b, 0, len))
            return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "field %s: not valid UTF-8 text",
                                 LABEL(f));
        if (len >= cap)
            goto too_long;
        memcpy(dst, b, len);
        dst[len] = '\0';
        return 0;
    }
    if (f->type == BIN_BYTES) {
        if (2 * n >= cap)
            goto too_long;
        for (size_t i = 0; i < n; i++) {
            dst[2 * i] = hexdig[b[i] >> 4];
            dst[2 * i + 1] = hexdig[b[i] & 0x0f];
        }
        dst[2 * n] = '\0';
        return 0;
    }
    if (f->type == BIN_BCD) {
        char d[21];
        if (bcd_value(f, b, d, rej))
            return GW_EINVAL;
        len = strlen(d);
        if (len >= cap)
            goto too_long;
        memcpy(dst, d, len + 1);
        return 0;
    }
    bin_num num;
    if (gw__binary_read_num(f, b, &num, rej))
        return GW_EINVAL;
    if (num.kind == BIN_NUM_UINT)
        snprintf(dst, cap, "%" PRIu64, num.u);
    else
        snprintf(dst, cap, "%" PRId64, num.i);
    return 0;
too_long:
    return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "field %s: longer than %zu bytes", LABEL(f),
                         cap - 1);
}

/* ---- encoding --------------------------------------------------------------------------- */

static int put_bcd(const bin_field *f, const char *digits, uint8_t *b, gw_error *err)
{
    size_t nd = strlen(digits), w = 2 * (size_t)f->size;
    if (nd > (f->digits ? f->digits : w))
        return gw_error_set(err, GW_EINVAL, "%s: %zu digits do not fit %u BCD bytes", f->path, nd,
                            f->size);
    for (size_t i = 0; i < nd; i++)
        if (digits[i] < '0' || digits[i] > '9')
            return gw_error_set(err, GW_EINVAL, "%s: \"%s\" is not a decimal number", f->path,
                                digits);
    memset(b, 0, f->size);
    for (size_t i = 0; i < nd; i++) {
        size_t pos = w - nd + i; /* right-aligned: leading zeros */
        uint8_t d = (uint8_t)(digits[i] - '0');
        b[pos / 2] |= (uint8_t)(pos % 2 ? d : d << 4);
    }
    return 0;
}

/* An f32/f64 field's IEEE bytes for d. */
static void put_float(const bin_field *f, double d, uint8_t *b, size_t w)
{
    uint64_t raw;
    if (f->type == BIN_F32) {
        float fl = (float)d;
        uint32_t r32;
        memcpy(&r32, &fl, sizeof(r32));
        raw = r32;
    } else {
        memcpy(&raw, &d, sizeof(raw));
    }
    gw__binary_put_uint(b, w, f->little, raw);
}

int gw__binary_put_int(const bin_field *f, int64_t v, uint8_t *b, gw_error *err)
{
    if (f->type == BIN_DATETIME)
        return gw__binary_datetime_put(f, v, b, err);
    if (f->type == BIN_BCD) {
        char d[24];
        if (v < 0)
            return gw_error_set(err, GW_EINVAL, "%s: BCD cannot hold %" PRId64, f->path, v);
        snprintf(d, sizeof(d), "%" PRId64, v);
        return put_bcd(f, d, b, err);
    }
    size_t w = gw__binary_type_width((bin_type)f->type);
    if (f->type == BIN_F32 || f->type == BIN_F64) {
        put_float(f, (double)v, b, w);
        return 0;
    }
    bool is_signed =
        f->type == BIN_I8 || f->type == BIN_I16 || f->type == BIN_I32 || f->type == BIN_I64;
    unsigned bits = f->bits ? f->bits : (unsigned)w * 8;
    bool ok;
    if (is_signed)
        ok = bits == 64 ||
             (v >= -(int64_t)(1ull << (bits - 1)) && v < (int64_t)(1ull << (bits - 1)));
    else
        ok = v >= 0 && (bits == 64 || (uint64_t)v <= bit_mask(bits));
    if (!ok)
        return gw_error_set(err, GW_EINVAL, "%s: %" PRId64 " does not fit %u bits", f->path, v,
                            bits);
    uint64_t raw = (uint64_t)v & bit_mask(bits);
    if (f->bits) {
        uint64_t cur = gw__binary_get_uint(b, w, f->little);
        cur &= ~(bit_mask(f->bits) << f->bit);
        raw = cur | (raw << f->bit);
    }
    gw__binary_put_uint(b, w, f->little, raw);
    return 0;
}

static int put_real(const bin_field *f, double d, uint8_t *b, gw_error *err)
{
    size_t w = gw__binary_type_width((bin_type)f->type);
    if (f->type == BIN_F32 || f->type == BIN_F64) {
        put_float(f, d, b, w);
        return 0;
    }
    double r = nearbyint(d);
    if (!(r >= -9.2233720368547748e18 && r < 9.2233720368547748e18))
        return gw_error_set(err, GW_EINVAL, "%s: %g does not fit the field", f->path, d);
    return gw__binary_put_int(f, (int64_t)r, b, err);
}

/* Raw bytes (strings, hex-decoded bytes) into a fixed or prefixed field. */
static int put_raw(const bin_field *f, const uint8_t *s, size_t len, uint8_t *b, size_t cap,
                   size_t *used, gw_error *err)
{
    if (f->prefix) {
        size_t max = f->prefix == 1 ? 255 : f->prefix == 2 ? 65535 : GW_BINARY_MAX_FRAME;
        if (len > max || f->prefix + len > cap)
            return gw_error_set(err, len > max ? GW_EINVAL : GW_ETOOBIG, "%s: %zu bytes do not fit",
                                f->path, len);
        gw__binary_put_uint(b, f->prefix, f->little, len);
        memcpy(b + f->prefix, s, len);
        *used = f->prefix + len;
        return 0;
    }
    if (f->size_var) { /* "size_from": exactly the value's bytes */
        if (len > cap)
            return gw_error_set(err, GW_ETOOBIG, "%s: %zu bytes do not fit", f->path, len);
        memcpy(b, s, len);
        *used = len;
        return 0;
    }
    if (len > f->size)
        return gw_error_set(err, GW_EINVAL, "%s: %zu bytes do not fit %u", f->path, len, f->size);
    memcpy(b, s, len);
    memset(b + len, 0, f->size - len);
    *used = f->size;
    return 0;
}

static int hex_val(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

int gw__binary_put_text(const bin_field *f, const char *s, uint8_t *b, size_t cap, size_t *used,
                        gw_error *err)
{
    size_t len = strlen(s);
    *used = f->size;
    if (f->type == BIN_STRING)
        return put_raw(f, (const uint8_t *)s, len, b, cap, used, err);
    if (f->type == BIN_BCD)
        return put_bcd(f, s, b, err);
    if (f->type == BIN_BYTES) {
        uint8_t tmp[512];
        if (len % 2 || len / 2 > sizeof(tmp))
            return gw_error_set(err, GW_EINVAL, "%s: \"%.40s\" is not a hex string", f->path, s);
        for (size_t i = 0; i < len; i += 2) {
            int hi = hex_val(s[i]), lo = hex_val(s[i + 1]);
            if (hi < 0 || lo < 0)
                return gw_error_set(err, GW_EINVAL, "%s: \"%.40s\" is not a hex string", f->path,
                                    s);
            tmp[i / 2] = (uint8_t)(hi << 4 | lo);
        }
        return put_raw(f, tmp, len / 2, b, cap, used, err);
    }
    char *end;
    long long v = strtoll(s, &end, 10);
    if (!*s || *end)
        return gw_error_set(err, GW_EINVAL, "%s: \"%.40s\" is not a decimal number", f->path, s);
    return gw__binary_put_int(f, v, b, err);
}

int gw__binary_put_json(const bin_field *f, const json_t *v, uint8_t *b, size_t cap, size_t *used,
                        gw_error *err)
{
    const gw_value_spec *s = f->spec;
    *used = f->size;
    if (json_is_string(v)) {
        if (s && s->type == GW_T_ENUM && f->type != BIN_STRING) {
            for (size_t i = 0; i < s->n_enum; i++)
                if (strcmp(s->enum_values[i], json_string_value(v)) == 0)
                    return gw__binary_put_int(f, (int64_t)i, b, err);
            return gw_error_set(err, GW_EINVAL, "%s: \"%.40s\" is not a value of %s", f->path,
                                json_string_value(v), f->target_id);
        }
        if (f->type == BIN_STRING)
            return put_raw(f, (const uint8_t *)json_string_value(v), json_string_length(v), b, cap,
                           used, err);
        return gw__binary_put_text(f, json_string_value(v), b, cap, used, err);
    }
    if (json_is_boolean(v))
        return gw__binary_put_int(f, json_is_true(v), b, err);
    if (!json_is_number(v) || f->type == BIN_STRING || f->type == BIN_BYTES)
        return gw_error_set(err, GW_EINVAL, "%s: a %s field cannot carry this value", f->path,
                            f->type == BIN_STRING  ? "string"
                            : f->type == BIN_BYTES ? "bytes"
                                                   : "number");
    if (json_is_integer(v))
        return gw__binary_put_num(f, json_integer_value(v), b, err);
    double d = json_number_value(v);
    if (f->has_xform)
        d = (d - f->add) / f->scale;
    return put_real(f, d, b, err);
}

int gw__binary_put_num(const bin_field *f, int64_t v, uint8_t *b, gw_error *err)
{
    int64_t r;
    if (!f->has_xform)
        return gw__binary_put_int(f, v, b, err);
    if (f->int_xform && !__builtin_sub_overflow(v, f->iadd, &r) &&
        !(r == INT64_MIN && f->iscale == -1) && r % f->iscale == 0)
        return gw__binary_put_int(f, r / f->iscale, b, err);
    return put_real(f, ((double)v - f->add) / f->scale, b, err);
}

/* binary_encode.c: builds downstream frames (acks, commands) from the same declarations that
 * decode upstream ones: header + message fields laid out, the length field and the check filled
 * in, then delimited and escaped for the wire. */
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../gateway/util/alloc.h"

/* Where a field's value comes from. */
typedef struct src_val {
    enum { SV_ZERO, SV_RAW, SV_NUM, SV_TEXT, SV_JSON } kind;
    int64_t i;        /* SV_RAW (constant bits, no transform), SV_NUM (through the transform) */
    const char *text; /* SV_TEXT */
    const json_t *json;
} src_val;

static int field_source(const bin_layout *l, const bin_msg *m, const bin_field *f, bool is_disc,
                        const bin_src *src, src_val *sv, char *numbuf, gw_error *err)
{
    const gw_thing_msg *req = src->req;
    memset(sv, 0, sizeof(*sv));
    if (f->has_value) {
        sv->kind = SV_RAW;
        sv->i = (int64_t)f->value;
        return 0;
    }
    if (is_disc) {
        sv->kind = SV_RAW;
        sv->i = m->match;
        return 0;
    }
    switch (f->target) {
    case BIN_TG_NONE:
        return 0;
    case BIN_TG_ROLE:
        break;
    default:
        sv->json = src->values ? json_object_get(src->values, f->target_id) : NULL;
        if (!sv->json)
            return gw_error_set(err, GW_EINVAL, "%s: \"%s\" is missing", f->path, f->target_id);
        sv->kind = SV_JSON;
        return 0;
    }
    switch (f->role) {
    case BIN_ROLE_DEVICE_ID:
        sv->text = req ? req->device_id : src->device_id;
        sv->kind = sv->text ? SV_TEXT : SV_ZERO;
        break;
    case BIN_ROLE_SEQ:
        sv->kind = SV_RAW;
        sv->i = req ? req->seq : src->seq;
        break;
    case BIN_ROLE_MSG_ID:
        if (req) {
            sv->text = req->msg_id;
        } else {
            snprintf(numbuf, 24, "%" PRIu32, src->seq);
            sv->text = numbuf;
        }
        sv->kind = SV_TEXT;
        break;
    case BIN_ROLE_TIMESTAMP:
        sv->kind = SV_NUM;
        sv->i = req ? req->timestamp_ms : src->timestamp_ms;
        break;
    case BIN_ROLE_RESULT:
        sv->kind = SV_RAW;
        sv->i = src->status < 0 ? 1 : 0;
        break;
    case BIN_ROLE_REQUEST_CODE:
        sv->kind = SV_RAW;
        sv->i = req ? req->type_code : 0;
        break;
    case BIN_ROLE_AUTH_CODE: /* frame.auth_code: only with the device's secret */
        if (!src->auth_code)
            return gw_error_set(err, GW_EINVAL, "%s: no auth code without the device's secret",
                                f->path);
        sv->text = src->auth_code;
        sv->kind = SV_TEXT;
        break;
    case BIN_ROLE_RECORD_COUNT:
        sv->kind = SV_RAW;
        sv->i = req ? req->n_accepted : 0;
        break;
    default: /* secret: never sent back */
        break;
    }
    (void)l;
    return 0;
}

/* Bytes a field takes for this value (prefixed fields: prefix + data). */
static size_t field_size(const bin_field *f, const src_val *sv)
{
    if (f->grp) /* written empty: its counts, all 0 (binary_group.c decodes; tests, fuzzing) */
        return f->type == BIN_GROUP ? f->prefix * (f->grp->count_after ? 2u : 1u)
                                    : f->prefix * (size_t)(f->grp->total + f->grp->n_widths);
    if (!f->prefix && !f->size_var)
        return f->size;
    size_t n = 0;
    if (sv->kind == SV_TEXT)
        n = strlen(sv->text);
    else if (sv->kind == SV_JSON && json_is_string(sv->json))
        n = json_string_length(sv->json);
    if (f->type == BIN_BYTES)
        n /= 2;
    return f->prefix + n;
}

static int field_put(const bin_field *f, const src_val *sv, uint8_t *b, size_t cap, gw_error *err)
{
    size_t used;
    switch (sv->kind) {
    case SV_ZERO:
        if (f->prefix)
            gw__binary_put_uint(b, f->prefix, f->little, 0);
        return 0; /* a "size_from" field: 0 bytes */
    case SV_RAW:
        return gw__binary_put_int(f, sv->i, b, err);
    case SV_NUM:
        return gw__binary_put_num(f, sv->i, b, err);
    case SV_TEXT:
        return gw__binary_put_text(f, sv->text, b, cap, &used, err);
    case SV_JSON:
        return gw__binary_put_json(f, sv->json, b, cap, &used, err);
    }
    return 0;
}

/* A "sign_from" value: its magnitude at pos, and the flag of its sign field set to say whether
 * it is negative (without "bit": the field's whole value set to negative_when for a negative
 * value, and for a positive one left as written unless it reads as negative: then its low bit
 * flipped). */
static int put_signed(const bin_field *f, const json_t *v, uint8_t *body, size_t len, size_t pos,
                      gw_error *err)
{
    const bin_field *sf = f->sign_src;
    size_t used, spos = sf->pos == BIN_POS_END ? len + (size_t)(int64_t)sf->off : (size_t)sf->off;
    bool neg = json_is_integer(v) ? json_integer_value(v) < 0 : json_real_value(v) < 0;
    json_t *mag = !neg                 ? json_incref((json_t *)v)
                  : json_is_integer(v) ? json_integer(-json_integer_value(v))
                                       : json_real(-json_real_value(v));
    if (!mag || (json_is_integer(v) && json_integer_value(v) == INT64_MIN)) {
        json_decref(mag);
        return gw_error_set(err, GW_EINVAL, "%s: cannot take the magnitude", f->path);
    }
    int rc = gw__binary_put_json(f, mag, body + pos, len - pos, &used, err);
    json_decref(mag);
    if (rc || spos + sf->size > len)
        return rc ? rc : gw_error_set(err, GW_EINVAL, "%s: sign field past the frame", f->path);
    gw_reject rej;
    bin_num cur;
    if (gw__binary_read_num(sf, body + spos, &cur, &rej))
        return gw_error_set(err, GW_EINVAL, "%s: %s", f->path, rej.detail);
    uint64_t nv = cur.u;
    if (f->sign_bit >= 0) {
        uint64_t bit = 1ull << f->sign_bit;
        bool set = neg ? f->sign_neg != 0 : f->sign_neg == 0;
        nv = set ? nv | bit : nv & ~bit;
    } else if (neg) {
        nv = f->sign_neg;
    } else if (nv == f->sign_neg) {
        nv ^= 1; /* any other value says positive */
    }
    return gw__binary_put_int(sf, (int64_t)nv, body + spos, err);
}

/* A "size_from" field of size bytes: its size field says so. */
static int put_size(const bin_layout *l, const bin_field *f, size_t size, uint8_t *body, size_t len,
                    gw_error *err)
{
    const bin_field *sf = f->size_src;
    int64_t at = sf->pos == BIN_POS_END ? (int64_t)len + sf->off : sf->off;
    int64_t v = (int64_t)size - f->size_add;
    unsigned w = (unsigned)sf->size * 8;
    (void)l;
    if (at < 0 || (size_t)at + sf->size > len)
        return gw_error_set(err, GW_EINVAL, "%s: size field past the frame", f->path);
    if (v < 0 || (w < 64 && (uint64_t)v >> w))
        return gw_error_set(err, GW_EINVAL, "%s: %zu bytes cannot be described by field %s",
                            f->path, size, gw__binary_label(sf));
    gw__binary_put_uint(body + at, sf->size, sf->little, (uint64_t)v);
    return 0;
}

typedef struct placed {
    const bin_field *f;
    src_val sv;
    char num[24];
    size_t pos, size;
    bool from_end;
} placed;

int gw__binary_encode(const bin_layout *l, const bin_msg *m, const bin_src *src, uint8_t *out,
                      size_t cap, size_t *n, gw_error *err)
{
    uint8_t body[GW_BINARY_MAX_FRAME];
    size_t nf = l->n_header + m->n_fields, k = 0, cursor = 0, head = 0, body_cap = l->max_frame;
    placed pl[64], *ps = pl;
    int rc;

    *n = 0;
    if (nf > sizeof(pl) / sizeof(pl[0]) && !(ps = gw_calloc(GW_AREA_SESSION, nf, sizeof(*ps))))
        return gw_error_set(err, GW_ENOMEM, "out of memory");
    if (l->framing == BIN_FR_DELIMITER)
        body_cap -= (size_t)l->start_len + l->end_len;
    if (m->bare) /* its fields alone: no header, framing, check */
        nf = m->n_fields;
    /* pass 1: values, sizes and places from the start; the body's length */
    for (size_t pass = m->bare ? 1 : 0; pass < 2; pass++) {
        const bin_field *fs = pass ? m->fields : l->header;
        size_t cnt = pass ? m->n_fields : l->n_header;
        for (size_t i = 0; i < cnt; i++, k++) {
            placed *p = &ps[k];
            p->f = &fs[i];
            rc = field_source(l, m, p->f, !pass && (int)i == l->disc, src, &p->sv, p->num, err);
            if (rc)
                goto done;
            p->size = field_size(p->f, &p->sv);
            p->from_end = p->f->pos == BIN_POS_END;
            p->pos = p->f->pos == BIN_POS_START ? (size_t)p->f->off : cursor;
            if (!p->from_end) {
                cursor = p->pos + p->size;
                if (cursor > head)
                    head = cursor;
            }
        }
    }
    if (m->bare) {
        k = 0;
        if (head > cap) {
            rc = gw_error_set(err, GW_ETOOBIG, "an ack of %zu bytes does not fit %zu", head, cap);
            goto done;
        }
        memset(out, 0, head);
        for (k = 0; k < nf; k++)
            if ((rc = field_put(ps[k].f, &ps[k].sv, out + ps[k].pos, head - ps[k].pos, err)) != 0)
                goto done;
        *n = head;
        goto done;
    }
    if (l->framing == BIN_FR_LENGTH && (size_t)l->len_off + l->len_width > head)
        head = (size_t)l->len_off + l->len_width;
    if (l->algo && l->ck_at >= 0 && (size_t)l->ck_at + l->ck_width > head)
        head = (size_t)l->ck_at + l->ck_width;
    size_t len = head + m->tail;
    if (m->length >= 0)
        len = (size_t)m->length;
    else if (l->framing == BIN_FR_FIXED)
        len = l->fixed_len;
    if (len > body_cap || head + m->tail > len) {
        rc = gw_error_set(err, GW_ETOOBIG, "a frame of %zu bytes exceeds the layout's %zu",
                          head + m->tail,
                          m->length >= 0 || l->framing == BIN_FR_FIXED ? len : body_cap);
        goto done;
    }
    /* pass 2: write; a value with "sign_from" is written as its magnitude, then pass 3 sets the
     * flag it takes its sign from */
    memset(body, 0, len);
    for (k = 0; k < nf; k++) {
        placed *p = &ps[k];
        if (p->from_end)
            p->pos = len + (size_t)(int64_t)p->f->off;
        if (p->f->sign_src && p->sv.kind == SV_JSON && json_is_number(p->sv.json)) {
            rc = put_signed(p->f, p->sv.json, body, len, p->pos, err);
        } else {
            rc = field_put(p->f, &p->sv, body + p->pos, len - p->pos, err);
        }
        if (rc)
            goto done;
    }
    for (k = 0; k < nf; k++) /* the size fields of "size_from" fields */
        if (ps[k].f->size_var && !ps[k].f->size_rest &&
            (rc = put_size(l, ps[k].f, ps[k].size, body, len, err)) != 0)
            goto done;
    for (k = 0; k < nf; k++) { /* pass 3: again, now that every sign field has been written */
        placed *p = &ps[k];
        if (p->f->sign_src && p->sv.kind == SV_JSON && json_is_number(p->sv.json) &&
            (rc = put_signed(p->f, p->sv.json, body, len, p->pos, err)) != 0)
            goto done;
    }
    if (l->framing == BIN_FR_LENGTH) {
        int64_t v = (int64_t)len - l->len_adjust -
                    (l->len_covers_frame ? 0 : (int64_t)(l->len_off + l->len_width));
        if (v < 0 || (l->len_width < 8 && (uint64_t)v >> (8 * l->len_width))) {
            rc = gw_error_set(err, GW_ETOOBIG, "frame.framing: %zu bytes cannot be described", len);
            goto done;
        }
        gw__binary_put_uint(body + l->len_off, l->len_width, l->len_little, (uint64_t)v);
    }
    if (l->has_auth) { /* the MAC first: the check covers it */
        uint8_t mac[32];
        size_t at;
        if (gw__binary_mac(l, body, len, src->secret, mac, &at) != 0) {
            rc = src->secret ? gw_error_set(err, GW_EINVAL,
                                            "frame.auth: does not fit a frame of %zu bytes", len)
                             : gw_error_set(err, GW_EINVAL, "frame.auth: no secret for the MAC");
            goto done;
        }
        memcpy(body + at, mac, l->mac_size);
    }
    if (l->algo) {
        int64_t from = l->ck_from < 0 ? (int64_t)len + l->ck_from : l->ck_from;
        int64_t to = l->ck_to < 0 ? (int64_t)len + l->ck_to : l->ck_to;
        int64_t at = l->ck_at < 0 ? (int64_t)len + l->ck_at : l->ck_at;
        if (from < 0 || to > (int64_t)len || from > to || at < 0 ||
            at + l->ck_width > (int64_t)len || (at < to && from < at + l->ck_width)) {
            rc =
                gw_error_set(err, GW_EINVAL, "frame.check: does not fit a frame of %zu bytes", len);
            goto done;
        }
        uint32_t c = gw__binary_check(l, body + from, (size_t)(to - from));
        gw__binary_put_uint(body + at, l->ck_width, l->ck_little, c);
    }
    /* what we send obeys the same bound as what we accept */
    rc = gw__binary_wrap(l, body, len, out, cap < l->max_frame ? cap : l->max_frame, n);
    if (rc)
        gw_error_set(err, rc, "the frame does not fit %zu bytes (max_frame %u)", cap, l->max_frame);
done:
    if (ps != pl)
        gw_free(GW_AREA_SESSION, ps);
    return rc;
}

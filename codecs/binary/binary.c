/* binary.c: the "binary" codec's ops table: init/uninit (the compiled layout in p->codec_state),
 * frame, decode (body -> check -> header -> discriminator -> message fields -> thing message),
 * encode_ack, verify, and the command encoder for the downstream side. A report going to the
 * dispatcher (hint.check) is decoded straight into its payload text when the thing model keeps
 * its values as they are; anything else is decoded again the general way, which words it. */
#include "internal.h"

#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "../../gateway/command/command_types.h"
#include "../../gateway/util/alloc.h"
#include "../../gateway/util/auth.h"

static const char *const product_keys[] = {"frame", NULL};

static const bin_layout *layout_of(const gw_product *p)
{
    return p && p->codec_ops == &gw_codec_binary_ops ? p->codec_state : NULL;
}

static int binary_init(gw_product *p, gw_diag *diag, const char *file)
{
    bin_layout *l;
    int rc = gw__binary_layout_load(p, &l, diag, file);
    if (rc == 0)
        p->codec_state = l;
    return rc;
}

static void binary_uninit(gw_product *p)
{
    gw__binary_layout_free(p->codec_state);
    p->codec_state = NULL;
}

size_t gw_binary_max_frame(const gw_product *p)
{
    const bin_layout *l = layout_of(p);
    return l ? l->max_frame : 0;
}

/* The largest value a seq or msg_id field holds (0: it is not one). */
static uint64_t seq_field_max(const bin_field *f)
{
    if (f->target != BIN_TG_ROLE || (f->role != BIN_ROLE_SEQ && f->role != BIN_ROLE_MSG_ID))
        return 0;
    if (f->type == BIN_STRING || f->type == BIN_BCD) { /* decimal digits */
        unsigned digits = f->prefix ? 19 : f->type == BIN_BCD ? 2 * f->size : f->size;
        uint64_t m = 1;
        for (unsigned i = 0; i < digits && i < 19; i++)
            m *= 10;
        return m - 1;
    }
    size_t w = gw__binary_type_width((bin_type)f->type);
    unsigned bits = f->bits ? f->bits : (unsigned)w * 8;
    bool is_signed =
        f->type == BIN_I8 || f->type == BIN_I16 || f->type == BIN_I32 || f->type == BIN_I64;
    if (!w || f->type == BIN_F32 || f->type == BIN_F64 || f->type == BIN_BYTES)
        return 0;
    if (is_signed)
        bits--;
    return bits >= 64 ? UINT64_MAX : (1ull << bits) - 1;
}

static uint64_t seq_min(uint64_t a, uint64_t b)
{
    return !a ? b : !b ? a : a < b ? a : b;
}

/* A field of role seq (up) or timestamp in the device's frames: the seq window's facts. */
static void up_roles(const bin_field *f, gw_frame_info *out)
{
    if (f->target != BIN_TG_ROLE)
        return;
    if (f->role == BIN_ROLE_SEQ)
        out->up_seq_max = seq_min(out->up_seq_max, seq_field_max(f));
    out->up_timestamp |= f->role == BIN_ROLE_TIMESTAMP;
}

static void binary_frame_info(const gw_product *p, gw_frame_info *out)
{
    const bin_layout *l = layout_of(p);
    out->max_frame = l ? l->max_frame : 0;
    out->device_id_in_all = false;
    out->seq_max = 0;
    out->up_seq_max = 0;
    out->up_timestamp = false;
    out->secret_as_key = l && l->has_auth;
    out->login_code = l && l->has_auth_code;
    for (size_t i = 0; l && i < l->n_header; i++) {
        if (l->header[i].target == BIN_TG_ROLE && l->header[i].role == BIN_ROLE_DEVICE_ID)
            out->device_id_in_all = true;
        out->seq_max = seq_min(out->seq_max, seq_field_max(&l->header[i]));
        up_roles(&l->header[i], out);
    }
    for (size_t i = 0; l && i < l->n_msgs; i++) {
        const bin_msg *m = &l->msgs[i];
        for (size_t j = 0; BIN_K_IS_UP(m->kind) && j < m->n_fields; j++)
            up_roles(&m->fields[j], out);
        for (size_t j = 0; (m->kind == BIN_K_INVOKE || m->kind == BIN_K_WRITE) && j < m->n_fields;
             j++)
            out->seq_max = seq_min(out->seq_max, seq_field_max(&m->fields[j]));
    }
}

static int binary_handshake(const gw_product *p, const uint8_t *buf, size_t len, gw_thing_msg *out,
                            gw_reject *rej)
{
    const bin_layout *l = layout_of(p);
    if (!l || !l->n_hs)
        return GW_ENOTFOUND;
    return gw__binary_handshake(l, buf, len, out, rej);
}

static int binary_frame(const gw_product *p, const uint8_t *buf, size_t len, size_t *skip)
{
    const bin_layout *l = layout_of(p);
    *skip = 0;
    return l ? gw__binary_frame(l, buf, len, skip) : GW_EPROTO;
}

/* ---- decode ----------------------------------------------------------------------------- */

/* A report's payload text written as its fields are read (hint.check): no jansson tree. */
#define TEXT_CAP  2048
#define NOT_TAKEN 1

typedef struct text_out {
    const gw_product *p;
    size_t n;
    uint64_t seen[4]; /* properties already written (by index; at most 256) */
    char b[TEXT_CAP];
} text_out;

typedef struct dctx {
    const uint8_t *body;
    size_t len;
    size_t cursor;
    size_t tail;   /* bytes at the end reserved for fields from the end and the check */
    text_out *txt; /* NULL: values into out->values */
} dctx;

/* The size of a "size_from" field: its size field's value plus the declared adjustment. */
static int sized_from(const dctx *d, const bin_field *f, size_t *sz, gw_reject *rej)
{
    const bin_field *sf = f->size_src;
    int64_t at = sf->pos == BIN_POS_END ? (int64_t)d->len + sf->off : sf->off;
    if (at < 0 || (size_t)at + sf->size > d->len)
        return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                             "field %s: its size field %s lies past the frame (%zu bytes)",
                             gw__binary_label(f), gw__binary_label(sf), d->len);
    int64_t v = (int64_t)gw__binary_get_uint(d->body + at, sf->size, sf->little) + f->size_add;
    if (v < 0)
        return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                             "field %s: its size field %s says %lld bytes", gw__binary_label(f),
                             gw__binary_label(sf), (long long)v);
    *sz = (size_t)v;
    return 0;
}

/* Where field f sits in this frame and how many bytes it takes. */
static int place(dctx *d, const bin_field *f, size_t *pos, size_t *size, gw_reject *rej)
{
    if (f->pos == BIN_POS_START && !f->prefix && !f->size_var) { /* most fields: fixed */
        size_t limit = d->len > d->tail ? d->len - d->tail : 0;
        if ((size_t)f->off + f->size <= limit) {
            *pos = (size_t)f->off;
            *size = f->size;
            d->cursor = (size_t)f->off + f->size;
            return 0;
        }
    }
    int64_t at = f->pos == BIN_POS_START ? f->off
                 : f->pos == BIN_POS_END ? (int64_t)d->len + f->off
                                         : (int64_t)d->cursor;
    /* fields from the start never reach into the bytes reserved at the end */
    size_t limit = f->pos == BIN_POS_END ? d->len : d->len > d->tail ? d->len - d->tail : 0;
    size_t sz = f->size;
    if (at < 0 || (size_t)at + f->size > limit)
        goto short_frame;
    if (f->prefix) {
        sz = f->prefix + (size_t)gw__binary_get_uint(d->body + at, f->prefix, f->little);
        if ((size_t)at + sz > limit)
            goto short_frame;
    } else if (f->size_rest) {
        sz = limit - (size_t)at;
    } else if (f->size_var && sized_from(d, f, &sz, rej) != 0) {
        return GW_EINVAL;
    } else if (f->size_var && (size_t)at + sz > limit) {
        goto short_frame;
    }
    *pos = (size_t)at;
    *size = sz;
    if (f->pos != BIN_POS_END)
        d->cursor = (size_t)at + sz;
    return 0;
short_frame:
    return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                         "field %s (offset %lld, %zu bytes): the frame has %zu bytes",
                         gw__binary_label(f), (long long)at, sz, d->len);
}

static int read_role(const bin_field *f, const uint8_t *b, size_t n, gw_thing_msg *out,
                     gw_reject *rej)
{
    bin_num num;
    switch (f->role) {
    case BIN_ROLE_DEVICE_ID:
        return gw__binary_to_text(f, b, n, out->device_id, sizeof(out->device_id), rej);
    case BIN_ROLE_SECRET:
        return gw__binary_to_text(f, b, n, out->secret, sizeof(out->secret), rej);
    case BIN_ROLE_MSG_ID:
        return gw__binary_to_text(f, b, n, out->msg_id, sizeof(out->msg_id), rej);
    case BIN_ROLE_AUTH_CODE: /* our own answers only (tests, fuzzing): read over */
        return 0;
    default:
        break;
    }
    if (gw__binary_read_num(f, b, &num, rej) || gw__binary_xform(f, &num, rej))
        return GW_EINVAL;
    uint64_t u = num.kind == BIN_NUM_UINT ? num.u : (uint64_t)num.i;
    switch (f->role) {
    case BIN_ROLE_SEQ:
        out->seq = (uint32_t)u;
        out->seq_set = true;
        break;
    case BIN_ROLE_RESULT:
        out->success = u == 0;
        break;
    case BIN_ROLE_REQUEST_CODE:
        break;
    case BIN_ROLE_TIMESTAMP:
        if ((num.kind == BIN_NUM_INT && num.i < 0) ||
            (num.kind == BIN_NUM_UINT && num.u > INT64_MAX))
            return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "field %s: timestamp out of range",
                                 gw__binary_label(f));
        out->timestamp_ms = (int64_t)u;
        break;
    }
    return 0;
}

/* Field f's "id":value into t when the report keeps the value as it is and names the property
 * once (gw_tm_report_as_is); NOT_TAKEN otherwise. */
static int put_text(text_out *t, const bin_field *f, const uint8_t *b, size_t n, bool negate)
{
    int i = f->prop; /* the property's index, found when the layout loaded */
    if (f->target != BIN_TG_PROPERTY || !f->spec || i < 0 || (t->seen[i / 64] & (1ull << (i % 64))))
        return NOT_TAKEN; /* a property twice: jansson keeps the first place, the last value */
    t->seen[i / 64] |= 1ull << (i % 64);
    /* the key: a property id of the configuration ([A-Za-z0-9_.-], gw__config_id_ok): nothing
     * to escape */
    size_t o = t->n, k = f->target_len;
    if (TEXT_CAP - o < k + 4)
        return NOT_TAKEN;
    t->b[o++] = t->n ? ',' : '{';
    t->b[o++] = '"';
    memcpy(t->b + o, f->target_id, k);
    o += k;
    t->b[o++] = '"';
    t->b[o++] = ':';
    size_t v = gw__binary_value_text(f, b, n, negate, t->b + o, TEXT_CAP - o);
    if (!v)
        return NOT_TAKEN;
    t->n = o + v;
    return 0;
}

static int read_field(dctx *d, const bin_field *f, gw_thing_msg *out, uint64_t *raw, gw_reject *rej)
{
    size_t pos = 0, n = 0;
    if (f->grp && d->txt)
        return NOT_TAKEN;
    if (f->grp) { /* a repeated group or an id-value list: binary_group.c */
        size_t at = f->pos == BIN_POS_START ? (size_t)f->off : d->cursor, end = at;
        size_t limit = d->len > d->tail ? d->len - d->tail : 0;
        if (at > limit)
            return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                                 "field %s (offset %zu): the frame has %zu bytes",
                                 gw__binary_label(f), at, d->len);
        int rc = f->type == BIN_GROUP
                     ? gw__binary_read_group(f, d->body, at, limit, &end, out, rej)
                     : gw__binary_read_idlist(f, d->body, at, limit, &end, out, rej);
        d->cursor = end;
        return rc;
    }
    if (place(d, f, &pos, &n, rej))
        return GW_EINVAL;
    const uint8_t *b = d->body + pos;
    if (f->has_value || raw) {
        bin_num num;
        if (gw__binary_read_num(f, b, &num, rej))
            return GW_EINVAL;
        uint64_t v = num.kind == BIN_NUM_UINT ? num.u : (uint64_t)num.i;
        if (raw)
            *raw = v;
        if (f->has_value && v != f->value)
            return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                                 "field %s: expected 0x%" PRIX64 ", got 0x%" PRIX64,
                                 gw__binary_label(f), f->value, v);
    }
    if (f->target == BIN_TG_ROLE)
        return read_role(f, f->prefix ? b + f->prefix : b, f->prefix ? n - f->prefix : n, out, rej);
    if (f->target == BIN_TG_NONE)
        return 0;
    bool negate = false;
    if (f->sign_src) { /* fixed offset, checked at load; this frame may still be too short */
        const bin_field *sf = f->sign_src;
        int64_t at = sf->pos == BIN_POS_END ? (int64_t)d->len + sf->off : sf->off;
        bin_num sn;
        if (at < 0 || (size_t)at + sf->size > d->len)
            return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                                 "field %s: its sign field %s lies past the frame (%zu bytes)",
                                 gw__binary_label(f), gw__binary_label(sf), d->len);
        if (gw__binary_read_num(sf, d->body + at, &sn, rej))
            return GW_EINVAL;
        uint64_t sv = f->sign_bit >= 0 ? (sn.u >> f->sign_bit) & 1u : sn.u;
        negate = sv == f->sign_neg;
    }
    if (d->txt)
        return put_text(d->txt, f, f->prefix ? b + f->prefix : b, f->prefix ? n - f->prefix : n,
                        negate);
    json_t *v;
    if (gw__binary_to_json(f, f->prefix ? b + f->prefix : b, f->prefix ? n - f->prefix : n, negate,
                           &v, rej))
        return GW_EINVAL;
    /* target_id: a property or param id of the (validated) configuration: no UTF-8 check */
    if (!out->values ||
        json_object_setn_new_nocheck(out->values, f->target_id, strlen(f->target_id), v) != 0)
        return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "field %s: out of memory",
                             gw__binary_label(f));
    return 0;
}

int gw__binary_read_fields(const bin_field *fs, size_t n, const uint8_t *body, size_t len,
                           size_t *used, gw_thing_msg *out, gw_reject *rej)
{
    dctx d = {.body = body, .len = len};
    size_t most = 0;
    for (size_t i = 0; i < n; i++) {
        if (read_field(&d, &fs[i], out, NULL, rej))
            return GW_EINVAL;
        if (d.cursor > most)
            most = d.cursor;
    }
    *used = most;
    return 0;
}

/* The upstream message (down: the command or ack) with this discriminator value. */
static const bin_msg *find_msg(const bin_layout *l, bool has_code, uint32_t code, bool down)
{
    for (size_t i = 0; i < l->n_msgs; i++) {
        const bin_msg *m = &l->msgs[i];
        if (BIN_K_IS_UP(m->kind) != down && (!has_code || m->match == code))
            return m;
    }
    for (size_t i = 0; down && i < l->n_acks; i++)
        if (!has_code || l->acks[i].match == code)
            return &l->acks[i];
    return NULL;
}

static int check_frame(const bin_layout *l, const uint8_t *b, size_t len, gw_reject *rej)
{
    int64_t from = l->ck_from < 0 ? (int64_t)len + l->ck_from : l->ck_from;
    int64_t to = l->ck_to < 0 ? (int64_t)len + l->ck_to : l->ck_to;
    int64_t at = l->ck_at < 0 ? (int64_t)len + l->ck_at : l->ck_at;
    if (from < 0 || to > (int64_t)len || from > to || at < 0 || at + l->ck_width > (int64_t)len)
        return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                             "frame of %zu bytes is too short for "
                             "its check",
                             len);
    if (at < to && from < at + l->ck_width)
        return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                             "frame of %zu bytes: its check lies inside the checked bytes", len);
    uint32_t want = gw__binary_check(l, b + from, (size_t)(to - from));
    uint32_t got = (uint32_t)gw__binary_get_uint(b + at, l->ck_width, l->ck_little);
    if (want != got)
        return gw_reject_set(rej, GW_R_BAD_CHECK,
                             "%s: the frame says 0x%0*" PRIX32 ", the bytes give 0x%0*" PRIX32,
                             l->algo_name, 2 * l->ck_width, got, 2 * l->ck_width, want);
    return 0;
}

static gw_msg_kind msg_kind(bin_kind k)
{
    switch (k) {
    case BIN_K_LOGIN:
        return GW_MSG_LOGIN;
    case BIN_K_REPORT:
        return GW_MSG_PROPERTY_REPORT;
    case BIN_K_EVENT:
        return GW_MSG_EVENT;
    case BIN_K_FUNCTION_REPLY:
        return GW_MSG_FUNCTION_REPLY;
    case BIN_K_WRITE_REPLY:
        return GW_MSG_WRITE_REPLY;
    case BIN_K_HEARTBEAT:
        return GW_MSG_HEARTBEAT;
    case BIN_K_REGISTER:
        return GW_MSG_REGISTER;
    default:
        return GW_MSG_NONE;
    }
}

static int decode_body(const bin_layout *l, bool down, const uint8_t *body, size_t len,
                       gw_thing_msg *out, const bin_msg **which, text_out *txt, gw_reject *rej)
{
    dctx d = {.body = body, .len = len, .tail = l->header_tail};
    uint64_t code = 0;
    if (l->algo && check_frame(l, body, len, rej))
        return GW_EINVAL;
    if (l->has_auth) { /* the MAC itself is checked by verify, which knows the device's secret */
        size_t f, t, a;
        const char *why = gw__binary_mac_place(l, (int64_t)len, &f, &t, &a);
        if (why)
            return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "frame of %zu bytes: %s", len, why);
        out->auth_state = 1;
    }
    for (size_t i = 0; i < l->n_header; i++)
        if (read_field(&d, &l->header[i], out, (int)i == l->disc ? &code : NULL, rej))
            return GW_EINVAL;
    out->type_code = (uint32_t)code;
    const bin_msg *m = find_msg(l, l->disc >= 0, (uint32_t)code, down);
    if (!m) {
        if (l->disc >= 0)
            return gw_reject_set(rej, GW_R_UNKNOWN_MESSAGE,
                                 "discriminator %s: no message matches 0x%" PRIX64,
                                 gw__binary_label(&l->header[l->disc]), code);
        return gw_reject_set(rej, GW_R_UNKNOWN_MESSAGE, "no message to decode");
    }
    *which = m;
    out->kind = msg_kind((bin_kind)m->kind);
    if (m->ref)
        snprintf(out->name, sizeof(out->name), "%s", m->ref);
    if (m->kind == BIN_K_FUNCTION_REPLY || m->kind == BIN_K_WRITE_REPLY || m->kind == BIN_K_ACK)
        out->success = 1;
    if (m->length >= 0 && (size_t)m->length != len)
        return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                             "message 0x%" PRIX32 ": %zu bytes, the layout says %d", m->match, len,
                             m->length);
    if (m->kind == BIN_K_REPORT && txt) /* its payload text as it is read */
        d.txt = txt;
    else if (m->kind != BIN_K_LOGIN && m->kind != BIN_K_HEARTBEAT && m->kind != BIN_K_WRITE_REPLY &&
             m->kind != BIN_K_ACK && m->kind != BIN_K_REGISTER && !(out->values = json_object()))
        return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "out of memory");
    d.tail = m->tail;
    for (size_t i = 0; i < m->n_fields; i++)
        if (read_field(&d, &m->fields[i], out, NULL, rej))
            return GW_EINVAL;
    if (d.txt) {
        if (txt->n == 0 || txt->n >= TEXT_CAP)
            return NOT_TAKEN; /* an empty report: the check words it */
        txt->b[txt->n++] = '}';
        if (!(out->norm_text = gw_malloc(GW_AREA_EVENT, txt->n + 1)))
            return NOT_TAKEN;
        memcpy(out->norm_text, txt->b, txt->n);
        out->norm_text[txt->n] = 0;
    }
    if (m->role_seq && !m->role_msg_id) { /* the seq as "%u" writes it, without printf */
        char digits[10];
        size_t nd = 0, o = 0;
        uint32_t v = out->seq;
        do {
            digits[nd++] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        while (nd > 0)
            out->msg_id[o++] = digits[--nd];
        out->msg_id[o] = 0;
    }
    return 0;
}

static int decode_as(const gw_product *p, bool downstream, const uint8_t *buf, size_t len,
                     gw_thing_msg *out, const bin_msg **which, text_out *txt, gw_reject *rej);

int gw__binary_decode(const gw_product *p, bool downstream, const uint8_t *buf, size_t len,
                      gw_thing_msg *out, const bin_msg **which, gw_reject *rej)
{
    return decode_as(p, downstream, buf, len, out, which, NULL, rej);
}

/* txt: a report's values go into txt and out->norm_text (out->values stays NULL); any refusal,
 * or a report that is not kept as it is, returns nonzero with out cleared: decode it again
 * without txt, which decides and words it. */
static int decode_as(const gw_product *p, bool downstream, const uint8_t *buf, size_t len,
                     gw_thing_msg *out, const bin_msg **which, text_out *txt, gw_reject *rej)
{
    uint8_t scratch[GW_BINARY_MAX_FRAME];
    const bin_layout *l = layout_of(p);
    const uint8_t *body;
    size_t body_len;

    memset(out, 0, sizeof(*out));
    *which = NULL;
    if (!l)
        return gw_reject_set(rej, GW_R_UNSUPPORTED, "binary codec: the product has no layout");
    if (gw__binary_body(l, buf, len, scratch, &body, &body_len, rej))
        return GW_EINVAL;
    int rc = decode_body(l, downstream, body, body_len, out, which, txt, rej);
    if (rc && txt) {
        gw_thing_msg_clear(out);
        memset(out, 0, sizeof(*out));
        *which = NULL;
        return rc;
    }
    if (rc) {
        /* A refused frame keeps no values. After a bad check nothing in it can be trusted; after
         * other problems the kind, seq and device id stay for a negative ack. */
        json_decref(out->values);
        out->values = NULL;
        json_decref(out->records);
        out->records = NULL;
        if (rej->reason == GW_R_BAD_CHECK || rej->reason == GW_R_UNKNOWN_MESSAGE)
            memset(out, 0, sizeof(*out));
        *which = NULL;
    }
    return rc;
}

static int binary_decode(const gw_product *p, const gw_decode_hint *hint, const uint8_t *buf,
                         size_t len, gw_thing_msg *out, gw_reject *rej)
{
    const bin_msg *m;
    /* the discriminator tells the kind; a report going to the dispatcher (hint.check) is written
     * as its payload text at once when the thing model keeps its values as they are */
    if (hint && hint->check) {
        text_out t;
        t.p = p;
        t.n = 0;
        memset(t.seen, 0, sizeof(t.seen));
        gw_reject ignored = {GW_R_NONE, ""};
        if (decode_as(p, false, buf, len, out, &m, &t, &ignored) == 0)
            return 0;
    }
    return gw__binary_decode(p, false, buf, len, out, &m, rej);
}

/* ---- acks, verify, commands ------------------------------------------------------------- */

/* The upstream message a decoded message came from. */
static const bin_msg *upstream_of(const bin_layout *l, const gw_thing_msg *m)
{
    if (m->kind == GW_MSG_NONE)
        return NULL;
    const bin_msg *bm = find_msg(l, l->disc >= 0, m->type_code, false);
    return bm && msg_kind((bin_kind)bm->kind) == m->kind ? bm : NULL;
}

/* A refused message's own answer ("refusal"): its result is a constant of the layout. */
static int encode_refusal(const bin_layout *l, const bin_msg *ack, const gw_thing_msg *m,
                          const char *secret, uint8_t *out, size_t cap, size_t *n)
{
    gw_error err = {0};
    if (l->has_auth && !secret)
        return 0;
    if (gw__binary_ack_fast(l, ack, m, -1, out, cap, n) == 0)
        return 0;
    bin_src src = {.req = m, .status = -1, .secret = secret};
    return gw__binary_encode(l, ack, &src, out, cap, n, &err);
}

/* A login of a layout with "auth_code": the code it carries is the one the secret gives, or the
 * secret itself. */
static int verify_code(const bin_layout *l, const gw_thing_msg *m, const char *secret)
{
    char code[65];
    if (gw__binary_auth_code(l, secret, m->device_id, code, sizeof(code)) != 0)
        return GW_EAUTH;
    size_t n = strlen(code), given = strnlen(m->secret, sizeof(m->secret));
    if (given == n && gw__ct_equal((const uint8_t *)code, (const uint8_t *)m->secret, n))
        return 0;
    /* a terminal provisioned with its secret as the code (it never registers) */
    return gw_secret_check(secret, m->secret, given) ? 0 : GW_EAUTH;
}

static int binary_encode_ack(const gw_product *p, const gw_thing_msg *m, const gw_reject *rej,
                             const char *secret, uint8_t *out, size_t cap, size_t *n)
{
    int status = rej ? -1 : 0; /* the layout's result field carries only accepted / refused */
    const bin_layout *l = layout_of(p);
    *n = 0;
    if (l && l->n_hs && m->kind == GW_MSG_LOGIN) { /* the handshake's answer */
        size_t k = rej ? l->hs_no_len : l->hs_ok_len;
        if (cap < k)
            return GW_ETOOBIG;
        memcpy(out, rej ? l->hs_no : l->hs_ok, k);
        *n = k;
        return 0;
    }
    const bin_msg *bm = l ? upstream_of(l, m) : NULL;
    char code[65];
    if (!bm)
        return 0;
    if (status < 0 && bm->refusal >= 0)
        return encode_refusal(l, &l->acks[bm->refusal], m, secret, out, cap, n);
    if (bm->ack < 0)
        return 0;
    const bin_msg *ack = &l->acks[bm->ack];
    if (status < 0 && !ack->role_result)
        return 0; /* no negative ack in this layout */
    if (l->has_auth && !secret)
        return 0; /* no MAC without the device's secret: no ack */
    if (gw__binary_ack_fast(l, ack, m, status, out, cap, n) == 0)
        return 0; /* its precomputed bytes, seq, result and check written in */
    gw_error err = {0};
    bin_src src = {.req = m, .status = status, .secret = secret};
    if (status == 0 && gw__binary_auth_code(l, secret, m->device_id, code, sizeof(code)) == 0)
        src.auth_code = code; /* a register message's answer hands it out */
    return gw__binary_encode(l, ack, &src, out, cap, n, &err);
}

static int binary_verify(const gw_product *p, const gw_thing_msg *m, const uint8_t *frame,
                         size_t len, const char *secret)
{
    const bin_layout *l = layout_of(p);
    if (!l)
        return GW_EAUTH;
    if (l->n_hs && m->kind == GW_MSG_LOGIN)
        return 0; /* the handshake: the device id alone (auth.mode device-id) */
    const bin_msg *bm = upstream_of(l, m);
    if (!bm && m->kind != GW_MSG_NONE)
        return GW_EAUTH;
    if (l->has_auth) {
        uint8_t scratch[GW_BINARY_MAX_FRAME], mac[32];
        const uint8_t *body;
        size_t body_len, at;
        gw_reject rej;
        if (!frame || !secret || gw__binary_body(l, frame, len, scratch, &body, &body_len, &rej) ||
            gw__binary_mac(l, body, body_len, secret, mac, &at) != 0 ||
            !gw__ct_equal(mac, body + at, l->mac_size))
            return GW_EAUTH;
    }
    if (bm && bm->kind == BIN_K_LOGIN && l->has_auth_code)
        return verify_code(l, m, secret);
    if (!(bm ? bm->role_secret : l->header_secret))
        return 0;
    /* constant time in the secret's bytes; the device's secret may be a hash (auth.h) */
    size_t a = strnlen(m->secret, sizeof(m->secret));
    return secret && gw_secret_check(secret, m->secret, a) ? 0 : GW_EAUTH;
}

/* The first write message whose properties are exactly the keys of props. */
static const bin_msg *find_write(const bin_layout *l, const json_t *props)
{
    for (size_t i = 0; i < l->n_msgs; i++) {
        const bin_msg *m = &l->msgs[i];
        size_t carried = 0;
        bool all = true;
        if (m->kind != BIN_K_WRITE)
            continue;
        for (size_t j = 0; j < m->n_fields; j++) {
            if (m->fields[j].target != BIN_TG_PROPERTY)
                continue;
            carried++;
            all &= json_object_get(props, m->fields[j].target_id) != NULL;
        }
        if (all && carried == json_object_size(props))
            return m;
    }
    return NULL;
}

int gw_binary_encode_command(const gw_product *p, const char *device_id, const char *secret,
                             const char *function, json_t *inputs, uint32_t seq, uint8_t *out,
                             size_t cap, size_t *n, gw_error *err)
{
    const bin_layout *l = layout_of(p);
    const bin_msg *m = NULL;
    *n = 0;
    if (!l)
        return gw_error_set(err, GW_EINVAL, "product %s does not use the binary codec",
                            p && p->id ? p->id : "?");
    if (inputs && !json_is_object(inputs))
        return gw_error_set(err, GW_EINVAL, "inputs must be an object");
    if (function) {
        for (size_t i = 0; i < l->n_msgs && !m; i++)
            if (l->msgs[i].kind == BIN_K_INVOKE && strcmp(l->msgs[i].ref, function) == 0)
                m = &l->msgs[i];
        if (!m)
            return gw_error_set(err, GW_ENOTFOUND, "no invoke message for function \"%s\"",
                                function);
        const char *key;
        json_t *v;
        json_object_foreach(inputs, key, v)
        {
            bool found = false;
            for (size_t j = 0; j < m->n_fields && !found; j++)
                found =
                    m->fields[j].target == BIN_TG_INPUT && strcmp(m->fields[j].target_id, key) == 0;
            if (!found)
                return gw_error_set(err, GW_EINVAL,
                                    "inputs.%s: no field of the %s frame carries it", key,
                                    function);
        }
    } else if (!json_object_size(inputs) || !(m = find_write(l, inputs))) {
        return gw_error_set(err, GW_ENOTFOUND,
                            "no write message carries exactly the properties given");
    }
    bin_src src = {.device_id = device_id, .seq = seq, .values = inputs, .secret = secret};
    return gw__binary_encode(l, m, &src, out, cap, n, err);
}

/* The codec op: a function invoke (its function's frame) or a property write. */
static int binary_encode_command(const gw_product *p, const gw_command *c, const char *device_id,
                                 const char *secret, uint8_t *out, size_t cap, size_t *n,
                                 gw_error *err)
{
    *n = 0;
    if (c->op == GW_CMD_INVOKE && !c->fn)
        return gw_error_set(err, GW_EINVAL, "binary codec: invoke without a function");
    if (c->op != GW_CMD_INVOKE && c->op != GW_CMD_WRITE)
        return gw_error_set(err, GW_EINVAL, "binary codec: only invoke and write go to devices");
    return gw_binary_encode_command(p, device_id, secret, c->op == GW_CMD_INVOKE ? c->fn->id : NULL,
                                    c->args, c->seq, out, cap, n, err);
}

const gw_codec_ops gw_codec_binary_ops = {
    .name = "binary",
    .product_keys = product_keys,
    .init = binary_init,
    .uninit = binary_uninit,
    .decode = binary_decode,
    .frame = binary_frame,
    .encode_ack = binary_encode_ack,
    .verify = binary_verify,
    .frame_info = binary_frame_info,
    .encode_command = binary_encode_command,
    .handshake = binary_handshake,
};

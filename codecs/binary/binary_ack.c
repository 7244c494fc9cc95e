/* binary_ack.c: precomputed acks. An ack whose bytes depend on the request only through
 * fixed-size fields (seq, result, request code, record count, device id) is encoded once when the
 * layout loads, with those fields 0 (or empty); an ack is then that body with only those fields,
 * the check and the framing written again: the same bytes as gw__binary_encode gives, without
 * running it per frame. Any other ack (a MAC, an auth code, a msg id or timestamp, fields of
 * variable size, escaping, bare acks) has no template and takes the general encoder. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#define TPL_MAX_LEN 256 /* bodies up to this size get a template (acks are short) */
#define TPL_MAX_VAR 8

typedef struct bin_ack_var {
    const bin_field *f;
    uint32_t pos;
    uint8_t role;
    bool direct; /* a whole unsigned integer: its bytes at once when the value fits (max) */
    uint64_t max;
} bin_ack_var;

struct bin_ack_tpl {
    size_t len; /* the body (no delimiters) */
    size_t n_var;
    bin_ack_var var[TPL_MAX_VAR];
    uint8_t body[TPL_MAX_LEN];
};

/* The request-dependent value of a template's field (binary_encode.c's field_source for a
 * request: the roles a template keeps variable). */
static int64_t var_value(uint8_t role, const gw_thing_msg *req, int status)
{
    switch (role) {
    case BIN_ROLE_SEQ:
        return req->seq;
    case BIN_ROLE_RESULT:
        return status < 0 ? 1 : 0;
    case BIN_ROLE_REQUEST_CODE:
        return req->type_code;
    case BIN_ROLE_RECORD_COUNT:
        return req->n_accepted;
    default:
        return 0;
    }
}

static bool overlaps(size_t a, size_t an, size_t b, size_t bn)
{
    return a < b + bn && b < a + an;
}

/* A field an ack template can hold: fixed size, a constant, or a field of a role the template
 * keeps variable (*var): an integer, or the device id as text. */
static bool tpl_field_ok(const bin_layout *l, const bin_field *f, bool is_disc, bool *var)
{
    *var = false;
    if (f->grp || f->prefix || f->size_var || f->sign_src || f->size == 0)
        return false;
    if (f->has_value || is_disc || f->target == BIN_TG_NONE)
        return true;
    if (f->target != BIN_TG_ROLE)
        return false;
    switch (f->role) {
    case BIN_ROLE_SECRET: /* never sent back: zeros */
        return true;
    case BIN_ROLE_DEVICE_ID: /* text written whole (padded) over the field's fixed size */
        *var = f->type == BIN_STRING || f->type == BIN_BCD || f->type == BIN_BYTES;
        return *var;
    case BIN_ROLE_SEQ:
    case BIN_ROLE_RESULT:
    case BIN_ROLE_REQUEST_CODE:
    case BIN_ROLE_RECORD_COUNT:
        *var = gw__binary_type_is_int((bin_type)f->type);
        return *var;
    default:
        (void)l;
        return false;
    }
}

/* The template of ack a, or NULL when it cannot have one (or out of memory: the general path). */
static struct bin_ack_tpl *plan(const bin_layout *l, const bin_msg *a)
{
    struct {
        const bin_field *f;
        size_t pos;
        bool from_end, var;
    } fs[64];
    size_t nf = 0, cursor = 0;
    if (a->bare || l->has_auth || (l->framing == BIN_FR_DELIMITER && l->has_escape) ||
        l->n_header + a->n_fields > sizeof(fs) / sizeof(fs[0]))
        return NULL;
    /* the places binary_encode.c's first pass gives fields of fixed size */
    for (size_t pass = 0; pass < 2; pass++) {
        const bin_field *list = pass ? a->fields : l->header;
        size_t cnt = pass ? a->n_fields : l->n_header;
        for (size_t i = 0; i < cnt; i++, nf++) {
            const bin_field *f = &list[i];
            fs[nf].f = f;
            if (!tpl_field_ok(l, f, !pass && (int)i == l->disc, &fs[nf].var))
                return NULL;
            fs[nf].from_end = f->pos == BIN_POS_END;
            fs[nf].pos = f->pos == BIN_POS_START ? (size_t)f->off : cursor;
            if (!fs[nf].from_end)
                cursor = fs[nf].pos + f->size;
        }
    }
    /* the body with every variable field 0: the general encoder's own bytes */
    gw_thing_msg req;
    memset(&req, 0, sizeof(req));
    req.kind = GW_MSG_PROPERTY_REPORT;
    bin_src src = {.req = &req, .status = 0};
    uint8_t out[TPL_MAX_LEN + 16];
    size_t n = 0;
    gw_error err = {0};
    if (gw__binary_encode(l, a, &src, out, sizeof(out), &n, &err) != 0)
        return NULL;
    size_t skip = l->framing == BIN_FR_DELIMITER ? l->start_len : 0;
    size_t len = n - skip - (l->framing == BIN_FR_DELIMITER ? l->end_len : 0);
    if (n < skip || len > TPL_MAX_LEN || len < cursor)
        return NULL;
    struct bin_ack_tpl *t = calloc(1, sizeof(*t));
    if (!t)
        return NULL;
    t->len = len;
    memcpy(t->body, out + skip, len);
    for (size_t k = 0; k < nf; k++) {
        if (fs[k].from_end)
            fs[k].pos = len + (size_t)(int64_t)fs[k].f->off;
        if (fs[k].pos + fs[k].f->size > len)
            goto no;
    }
    for (size_t k = 0; k < nf; k++) {
        if (!fs[k].var)
            continue;
        size_t p = fs[k].pos, sz = fs[k].f->size;
        /* a variable field shares no byte with any other field, the length or the check: the
         * general encoder's order of writing then cannot matter */
        for (size_t j = 0; j < nf; j++)
            if (j != k && overlaps(p, sz, fs[j].pos, fs[j].f->size))
                goto no;
        if (l->framing == BIN_FR_LENGTH && overlaps(p, sz, l->len_off, l->len_width))
            goto no;
        if (l->algo) {
            int64_t at = l->ck_at < 0 ? (int64_t)len + l->ck_at : l->ck_at;
            if (at < 0 || overlaps(p, sz, (size_t)at, l->ck_width))
                goto no;
        }
        if (t->n_var == TPL_MAX_VAR)
            goto no;
        const bin_field *f = fs[k].f;
        size_t w = gw__binary_type_width((bin_type)f->type);
        bool direct = f->role != BIN_ROLE_DEVICE_ID && !f->bits && w == f->size &&
                      gw__binary_type_is_unsigned((bin_type)f->type);
        t->var[t->n_var++] = (bin_ack_var){f, (uint32_t)p, f->role, direct,
                                           w >= 8 ? UINT64_MAX : ((uint64_t)1 << (8 * w)) - 1};
    }
    return t;
no:
    free(t);
    return NULL;
}

void gw__binary_ack_plan(bin_layout *l)
{
    for (size_t i = 0; i < l->n_acks; i++)
        l->acks[i].tpl = plan(l, &l->acks[i]);
}

void gw__binary_ack_tpl_free(struct bin_ack_tpl *t)
{
    free(t);
}

int gw__binary_ack_fast(const bin_layout *l, const bin_msg *a, const gw_thing_msg *req, int status,
                        uint8_t *out, size_t cap, size_t *n)
{
    const struct bin_ack_tpl *t = a->tpl;
    uint8_t body[TPL_MAX_LEN];
    gw_error err;
    if (!t)
        return 1;
    memcpy(body, t->body, t->len);
    for (size_t i = 0; i < t->n_var; i++) {
        const bin_ack_var *v = &t->var[i];
        size_t used;
        if (v->direct) { /* gw__binary_put_int's own result for a value that fits */
            int64_t x = var_value(v->role, req, status);
            if (x < 0 || (uint64_t)x > v->max)
                return 1;
            gw__binary_put_uint(body + v->pos, v->f->size, v->f->little, (uint64_t)x);
            continue;
        }
        int rc =
            v->role == BIN_ROLE_DEVICE_ID
                ? gw__binary_put_text(v->f, req->device_id, body + v->pos, t->len - v->pos, &used,
                                      &err)
                : gw__binary_put_int(v->f, var_value(v->role, req, status), body + v->pos, &err);
        if (rc != 0)
            return 1; /* the general path words it */
    }
    if (l->algo) {
        int64_t len = (int64_t)t->len;
        int64_t from = l->ck_from < 0 ? len + l->ck_from : l->ck_from;
        int64_t to = l->ck_to < 0 ? len + l->ck_to : l->ck_to;
        int64_t at = l->ck_at < 0 ? len + l->ck_at : l->ck_at;
        uint32_t c = gw__binary_check(l, body + from, (size_t)(to - from));
        gw__binary_put_uint(body + at, l->ck_width, l->ck_little, c);
    }
    return gw__binary_wrap(l, body, t->len, out, cap < l->max_frame ? cap : l->max_frame, n) ? 1
                                                                                             : 0;
}

/* binary_layout_shape.c: the shape of each message's frame, proven at load: fields declared "after
 * the previous one" placed, no two fields (nor the length field, nor the check) overlapping, none
 * past the frame, the check outside the bytes it checks. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

typedef struct extent {
    int64_t start; /* >= 0 from the start; < 0 from the end */
    int64_t size;
    const bin_field *f; /* NULL: the length field or the check */
    const char *what;
} extent;

/* Resolves fields declared "after the previous one" to fixed offsets where the previous one has a
 * fixed place and size. *prev carries the previous field across lists (header -> message). */
int gw__bl_resolve(gw__bl_ctx *x, bin_field *fs, size_t n, const bin_field **prev)
{
    char p[GW__BL_PATH_CAP];
    for (size_t i = 0; i < n; i++) {
        bin_field *f = &fs[i];
        const bin_field *pr = *prev;
        bool prev_dyn = pr && (pr->pos == BIN_POS_AFTER || pr->prefix || pr->size_var);
        if (f->pos == BIN_POS_START && prev_dyn && pr->pos != BIN_POS_END)
            return gw__bl_fail(
                x, gw__bl_sub(p, f->path, "offset"),
                "a fixed offset cannot follow a variable-length field; omit it or count "
                "from the end (negative offset)");
        if (f->pos == BIN_POS_AFTER && !prev_dyn) {
            if (!pr) {
                f->pos = BIN_POS_START;
                f->off = 0;
            } else {
                int64_t o = (int64_t)pr->off + pr->size;
                if (pr->pos == BIN_POS_END && o >= 0)
                    return gw__bl_fail(x, gw__bl_sub(p, f->path, "offset"),
                                       "past the frame (follows a field at the end of the frame)");
                if (o + f->size > (int64_t)x->body_cap)
                    return gw__bl_fail(
                        x, gw__bl_sub(p, f->path, "offset"), "past the frame (%s %u)",
                        x->l->framing == BIN_FR_FIXED ? "length" : "max_frame", x->body_cap);
                f->pos = pr->pos;
                f->off = (int32_t)o;
            }
        }
        *prev = f;
    }
    return 0;
}

static bool bits_disjoint(const bin_field *a, const bin_field *b)
{
    if (!a || !b || !a->bits || !b->bits || a->off != b->off || a->pos != b->pos ||
        a->type != b->type)
        return false;
    return a->bit + a->bits <= b->bit || b->bit + b->bits <= a->bit;
}

static const char *ext_name(const extent *e, char *buf, size_t cap)
{
    if (e->f)
        snprintf(buf, cap, "field \"%s\"", e->f->name[0] ? e->f->name : e->f->path);
    else
        snprintf(buf, cap, "%s", e->what);
    return buf;
}

static int check_extents(gw__bl_ctx *x, extent *e, size_t n, int64_t len, const char *bound)
{
    char p[GW__BL_PATH_CAP], a[96];
    for (size_t i = 0; i < n; i++) {
        const char *at = e[i].f ? gw__bl_sub(p, e[i].f->path, "offset") : "frame";
        if (len >= 0 && e[i].start < 0 && (e[i].start += len) < 0)
            return gw__bl_fail(x, at, "before the start of the frame (%s %lld)", bound,
                               (long long)len);
        if (e[i].start < 0 && e[i].start + e[i].size > 0) /* counted from the end, runs past it */
            return gw__bl_fail(x, at, "past the end of the frame (%lld bytes at offset %lld)",
                               (long long)e[i].size, (long long)e[i].start);
        if ((len >= 0 || e[i].start >= 0) &&
            e[i].start + e[i].size > (len >= 0 ? len : x->body_cap))
            return gw__bl_fail(x, at, "past the frame (%s %lld)", bound,
                               (long long)(len >= 0 ? len : x->body_cap));
    }
    if (len < 0) {
        /* unknown length: the fields from the start and those from the end must fit together */
        int64_t head = 0, tail = 0;
        const extent *h = NULL;
        for (size_t i = 0; i < n; i++) {
            if (e[i].start >= 0 && e[i].start + e[i].size > head)
                head = e[i].start + e[i].size, h = &e[i];
            if (e[i].start < 0 && -e[i].start > tail)
                tail = -e[i].start;
        }
        if (h && head + tail > x->body_cap)
            return gw__bl_fail(
                x, h->f ? gw__bl_sub(p, h->f->path, "offset") : "frame",
                "past the frame (%lld bytes from the start and %lld from the end exceed "
                "max_frame %u)",
                (long long)head, (long long)tail, x->body_cap);
    }
    for (size_t i = 1; i < n; i++) {
        for (size_t j = 0; j < i; j++) {
            if ((e[i].start < 0) != (e[j].start < 0))
                continue; /* unknown length: the ends are checked when the frame is read */
            if (e[i].start >= e[j].start + e[j].size || e[j].start >= e[i].start + e[i].size)
                continue;
            if (bits_disjoint(e[i].f, e[j].f))
                continue;
            const extent *blame = e[i].f ? &e[i] : &e[j], *other = blame == &e[i] ? &e[j] : &e[i];
            const char *at = blame->f ? gw__bl_sub(p, blame->f->path, "offset") : "frame";
            return gw__bl_fail(x, at, "overlaps %s (offset %lld, %lld bytes)",
                               ext_name(other, a, sizeof(a)), (long long)other->start,
                               (long long)other->size);
        }
    }
    return 0;
}

/* A variable-size field (size_from, "rest") at a fixed offset v: any other extent from the start
 * that ends past v overlaps it in some frame (the encoder would write over it). */
static int check_var_fields(gw__bl_ctx *x, const extent *e, size_t n)
{
    char p[GW__BL_PATH_CAP], a[96];
    for (size_t i = 0; i < n; i++) {
        if (!e[i].f || !e[i].f->size_var || e[i].start < 0)
            continue;
        for (size_t j = 0; j < n; j++)
            if (j != i && e[j].start >= 0 && e[j].start + e[j].size > e[i].start)
                return gw__bl_fail(x, gw__bl_sub(p, e[i].f->path, "offset"),
                                   "a field of variable size at offset %lld overlaps %s "
                                   "(offset %lld, %lld bytes)",
                                   (long long)e[i].start, ext_name(&e[j], a, sizeof(a)),
                                   (long long)e[j].start, (long long)e[j].size);
    }
    return 0;
}

/* The frame of message m (NULL: the header alone) is sound. */
int gw__bl_check_shape(gw__bl_ctx *x, const bin_msg *m)
{
    bin_layout *l = x->l;
    size_t cap = l->n_header + (m ? m->n_fields : 0) + 3, n = 0;
    extent *e = calloc(cap, sizeof(*e));
    int rc;
    if (!e)
        return gw__bl_fail(x, "frame", "out of memory");
    if (l->framing == BIN_FR_LENGTH)
        e[n++] = (extent){l->len_off, l->len_width, NULL, "the length field"};
    if (l->algo)
        e[n++] = (extent){l->ck_at, l->ck_width, NULL, "the check"};
    if (l->has_auth)
        e[n++] = (extent){l->mac_at, l->mac_size, NULL, "the MAC (frame.auth)"};
    for (size_t pass = 0; pass < 2; pass++) {
        const bin_field *fs = pass ? (m ? m->fields : NULL) : l->header;
        size_t nf = pass ? (m ? m->n_fields : 0) : l->n_header;
        for (size_t i = 0; i < nf; i++)
            if (fs[i].pos != BIN_POS_AFTER)
                e[n++] = (extent){fs[i].off, fs[i].prefix ? fs[i].prefix : fs[i].size, &fs[i], ""};
    }
    /* a field of variable size (size_from, "rest") at a fixed offset runs to an end known only
     * per frame: nothing else counted from the start may lie at or past its first byte */
    rc = check_var_fields(x, e, n);
    if (rc) {
        free(e);
        return rc;
    }
    int64_t len = -1;
    const char *bound = "max_frame";
    if (m && m->length >= 0)
        len = m->length, bound = "length";
    else if (l->framing == BIN_FR_FIXED)
        len = l->fixed_len, bound = "length";
    rc = check_extents(x, e, n, len, bound);
    free(e);
    if (rc == 0 && len >= 0 && l->algo) {
        int64_t from = l->ck_from < 0 ? len + l->ck_from : l->ck_from;
        int64_t to = l->ck_to < 0 ? len + l->ck_to : l->ck_to;
        if (from < 0 || to > len || from > to)
            rc = gw__bl_fail(x, "frame.check", "the range %d..%d does not fit a frame of %s %lld",
                             l->ck_from, l->ck_to, bound, (long long)len);
        else if (gw__bl_check_in_range(l, len))
            rc = gw__bl_fail(x, "frame.check",
                             "the check (at %d) lies inside its own range %d..%d in a "
                             "frame of %s %lld",
                             l->ck_at, l->ck_from, l->ck_to, bound, (long long)len);
    }
    if (rc == 0 && len >= 0 && l->has_auth) {
        size_t f, t, a;
        const char *why = gw__binary_mac_place(l, len, &f, &t, &a);
        if (why)
            rc = gw__bl_fail(x, "frame.auth", "%s (at %d, range %d..%d) in a frame of %s %lld", why,
                             l->mac_at, l->mac_from, l->mac_to, bound, (long long)len);
    }
    return rc;
}

/* In a body of len bytes, would the check value lie inside the bytes it checks? */
bool gw__bl_check_in_range(const bin_layout *l, int64_t len)
{
    int64_t from = l->ck_from < 0 ? len + l->ck_from : l->ck_from;
    int64_t to = l->ck_to < 0 ? len + l->ck_to : l->ck_to;
    int64_t at = l->ck_at < 0 ? len + l->ck_at : l->ck_at;
    return at < to && from < at + l->ck_width;
}

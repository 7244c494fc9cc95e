/* binary_group.c: the layout kinds that hold a variable number of things, and the handshake:
 * repeated groups (a count, that many records of a declared layout, each record one report with
 * its own timestamp; Teltonika's AVL records), id-value lists (per value width a count and that
 * many (id, value) pairs, ids mapped to targets, unknown ids skipped and counted; Teltonika's IO
 * elements), and a handshake that is not a framed message (Teltonika's IMEI preamble), parsed at
 * load and decoded. Sections 5c-5e of docs/BINARY-CODEC.md. */
#include "internal.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_OF(a) (sizeof(a) / sizeof((a)[0]))

static const char *const group_keys[] = {"name",  "offset",      "type",   "endian",
                                         "count", "count_after", "record", NULL};
static const char *const idlist_keys[] = {"name",  "offset", "type",   "endian", "id",
                                          "count", "total",  "widths", "items",  NULL};
static const char *const hs_keys[] = {"field", "accept", "refuse", NULL};

void gw__bl_free_group(bin_group *g)
{
    if (!g)
        return;
    bin_field *lists[2] = {g->rec, g->items};
    size_t ns[2] = {g->n_rec, g->n_items};
    for (size_t k = 0; k < 2; k++) {
        for (size_t i = 0; lists[k] && i < ns[k]; i++) {
            free(lists[k][i].name);
            free(lists[k][i].path);
            free(lists[k][i].target_id);
            gw__bl_free_group(lists[k][i].grp);
        }
        free(lists[k]);
    }
    free(g->ids);
    free(g);
}

/* The common part: name, position, endianness, the count's width (1, 2, 4: the field's prefix,
 * so that the shape checks see a variable-length field). */
static int parse_head(gw__bl_ctx *x, const json_t *o, const char *path, bin_field *f,
                      const char *const *keys, int64_t max_count)
{
    char p[GW__BL_PATH_CAP];
    int64_t n;
    bool have, little;
    if (gw__bl_unknown_keys(x, o, keys, path))
        return GW_ECONFIG;
    const json_t *v = json_object_get(o, "name");
    if (v && (!json_is_string(v) || json_string_length(v) > 63))
        return gw__bl_fail(x, gw__bl_sub(p, path, "name"), "must be a string of at most 63 bytes");
    if (!(f->name = strdup(v ? json_string_value(v) : "")))
        return gw__bl_fail(x, path, "out of memory");
    if (gw__bl_get_endian(x, o, path, x->little, &little))
        return GW_ECONFIG;
    f->little = little;
    if (gw__bl_get_int(x, o, "offset", path, 0, (int64_t)x->body_cap - 1, false, &n, &have))
        return GW_ECONFIG;
    f->pos = have ? BIN_POS_START : BIN_POS_AFTER;
    f->off = have ? (int32_t)n : 0;
    if (gw__bl_get_int(x, o, "count", path, 1, max_count, false, &n, &have))
        return GW_ECONFIG;
    if (!have)
        return gw__bl_fail(x, gw__bl_sub(p, path, "count"),
                           "missing: the width of the count in bytes");
    if (n == 3)
        return gw__bl_fail(x, gw__bl_sub(p, path, "count"), "must be 1, 2 or 4");
    f->prefix = (uint8_t)n;
    f->size = (uint32_t)n;
    if (!(f->grp = calloc(1, sizeof(*f->grp))))
        return gw__bl_fail(x, path, "out of memory");
    return 0;
}

static int parse_record(gw__bl_ctx *x, const json_t *o, const char *path, const gw__bl_list *c,
                        bin_field *f)
{
    char p[GW__BL_PATH_CAP];
    bin_group *g = f->grp;
    const json_t *cb = json_object_get(o, "count_after");
    if (cb && !json_is_boolean(cb))
        return gw__bl_fail(x, gw__bl_sub(p, path, "count_after"), "must be true or false");
    g->count_after = json_is_true(cb);
    const json_t *rec = json_object_get(o, "record");
    gw__bl_sub(p, path, "record");
    if (!json_array_size(rec))
        return gw__bl_fail(x, p, "must be a non-empty array of fields (one record)");
    gw__bl_list rc = *c;
    rc.in_record = true;
    if (gw__bl_parse_fields(x, rec, p, &rc, &g->rec, &g->n_rec))
        return GW_ECONFIG;
    for (size_t i = 0; i < g->n_rec; i++) {
        char q[GW__BL_PATH_CAP];
        if (g->rec[i].pos == BIN_POS_END)
            return gw__bl_fail(x, gw__bl_sub(q, g->rec[i].path, "offset"),
                               "a record's length is not known: no offset from its end");
        if (g->rec[i].sign_src)
            return gw__bl_fail(x, gw__bl_sub(q, g->rec[i].path, "sign_from"), "not in a record");
    }
    const bin_field *prev = NULL; /* offsets count from the record's start */
    return gw__bl_resolve(x, g->rec, g->n_rec, &prev);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static int parse_items(gw__bl_ctx *x, const json_t *o, const char *path, const gw__bl_list *c,
                       bin_field *f)
{
    char p[GW__BL_PATH_CAP];
    bin_group *g = f->grp;
    int64_t n;
    bool have;
    if (gw__bl_get_int(x, o, "id", path, 1, 2, false, &n, &have))
        return GW_ECONFIG;
    if (!have)
        return gw__bl_fail(x, gw__bl_sub(p, path, "id"), "missing: the width of an id (1 or 2)");
    g->id_width = (uint8_t)n;
    const json_t *t = json_object_get(o, "total");
    if (t && !json_is_boolean(t))
        return gw__bl_fail(x, gw__bl_sub(p, path, "total"), "must be true or false");
    g->total = json_is_true(t);
    const json_t *ws = json_object_get(o, "widths");
    gw__bl_sub(p, path, "widths");
    if (!json_is_array(ws) || !json_array_size(ws) || json_array_size(ws) > N_OF(g->widths))
        return gw__bl_fail(x, p, "must be an array of 1 to 8 value widths (1, 2, 4, 8, \"var\")");
    for (size_t i = 0; i < json_array_size(ws); i++) {
        const json_t *w = json_array_get(ws, i);
        json_int_t v = json_integer_value(w);
        bool is_var = json_is_string(w) && strcmp(json_string_value(w), "var") == 0;
        if (!is_var && !(json_is_integer(w) && (v == 1 || v == 2 || v == 4 || v == 8)))
            return gw__bl_fail(x, gw__bl_pathf(p, "%s.widths[%zu]", path, i),
                               "must be 1, 2, 4, 8 or \"var\" (id, length, value)");
        g->widths[g->n_widths++] = is_var ? 0 : (uint8_t)v;
    }
    const json_t *items = json_object_get(o, "items");
    gw__bl_sub(p, path, "items");
    if (!json_is_object(items) || !json_object_size(items))
        return gw__bl_fail(x, p, "must be an object: id -> field {\"type\", target, scale, add}");
    size_t ni = json_object_size(items);
    if (!(g->ids = calloc(ni, sizeof(*g->ids))) || !(g->items = calloc(ni, sizeof(*g->items))))
        return gw__bl_fail(x, p, "out of memory");
    const char *key;
    json_t *v;
    uint32_t max_id = g->id_width == 1 ? 0xFF : 0xFFFF;
    int bad = 0; /* items are independent: report the problems of each */
    json_object_foreach((json_t *)items, key, v)
    {
        char q[GW__BL_PATH_CAP], r[GW__BL_PATH_CAP], *end;
        gw__bl_pathf(q, "%s.%s", p, key);
        errno = 0;
        unsigned long id = strtoul(key, &end, 10);
        if (!*key || *end || errno || id > max_id || key[0] == '-' || key[0] == '+') {
            bad = gw__bl_fail(x, q, "an id is a decimal number 0..%" PRIu32, max_id);
            continue;
        }
        if (json_is_object(v) && (json_object_get(v, "offset") || json_object_get(v, "prefix") ||
                                  json_object_get(v, "sign_from"))) {
            const char *k = json_object_get(v, "offset")   ? "offset"
                            : json_object_get(v, "prefix") ? "prefix"
                                                           : "sign_from";
            bad = gw__bl_fail(x, gw__bl_sub(r, q, k),
                              "not for an item (its place and length come from the list)");
            continue;
        }
        const char *ty = json_string_value(json_object_get(v, "type"));
        bool text = ty && (strcmp(ty, "string") == 0 || strcmp(ty, "bytes") == 0);
        json_t *cp = json_is_object(v) ? json_copy(v) : json_incref(v);
        /* the length comes from the list: a placeholder size for the field parser */
        if (!cp || (text && !json_object_get(cp, "size") &&
                    json_object_set_new(cp, "size", json_integer(1)) != 0)) {
            json_decref(cp);
            return gw__bl_fail(x, q, "out of memory");
        }
        bin_field *it = &g->items[g->n_items];
        g->ids[g->n_items++] = (uint32_t)id;
        int rc = gw__bl_parse_field(x, cp, q, c, it);
        json_decref(cp);
        if (rc) {
            bad = rc;
            continue;
        }
        if (it->target == BIN_TG_ROLE || it->bits || it->has_value || it->grp)
            bad = gw__bl_fail(x, q,
                              "an item carries a property or param (no role, bits, "
                              "constant or group)");
    }
    if (bad)
        return bad;
    /* sort (insertion: a few dozen items) */
    for (size_t i = 1; i < g->n_items; i++) {
        for (size_t j = i; j > 0 && g->ids[j - 1] > g->ids[j]; j--) {
            uint32_t ti = g->ids[j];
            bin_field tf = g->items[j];
            g->ids[j] = g->ids[j - 1];
            g->items[j] = g->items[j - 1];
            g->ids[j - 1] = ti;
            g->items[j - 1] = tf;
        }
    }
    for (size_t i = 1; i < g->n_items; i++)
        if (g->ids[i] == g->ids[i - 1])
            return gw__bl_fail(x, p, "id %" PRIu32 " is given twice", g->ids[i]);
    return 0;
}

int gw__bl_parse_group(gw__bl_ctx *x, const json_t *o, const char *path, const gw__bl_list *c,
                       bin_field *f)
{
    bool group = f->type == BIN_GROUP;
    if (parse_head(x, o, path, f, group ? group_keys : idlist_keys, group ? 4 : 2))
        return GW_ECONFIG;
    if (c->kind != BIN_K_REPORT && c->kind != BIN_K_EVENT)
        return gw__bl_fail(x, path, "a %s is for report and event messages",
                           group ? "group" : "idlist");
    if (group && c->in_record)
        return gw__bl_fail(x, path, "a group cannot hold groups");
    if (group && !(x->p->protocol && strcmp(x->p->protocol, "tcp") == 0))
        return gw__bl_fail(x, path, "a group's records are stored by the TCP adapter only");
    return group ? parse_record(x, o, path, c, f) : parse_items(x, o, path, c, f);
}

/* ---- handshake -------------------------------------------------------------------------- */

static int parse_hex(gw__bl_ctx *x, const json_t *o, const char *key, const char *path,
                     uint8_t *out, uint8_t *n)
{
    char p[GW__BL_PATH_CAP];
    const char *s = json_string_value(json_object_get(o, key));
    size_t len = s ? strlen(s) : 0;
    gw__bl_sub(p, path, key);
    if (!s || len == 0 || len % 2 || len / 2 > 8)
        return gw__bl_fail(x, p, "must be 1 to 8 bytes in hex (\"01\")");
    for (size_t i = 0; i < len / 2; i++) {
        unsigned v;
        if (sscanf(s + 2 * i, "%2x", &v) != 1 || !strchr("0123456789abcdefABCDEF", s[2 * i]) ||
            !strchr("0123456789abcdefABCDEF", s[2 * i + 1]))
            return gw__bl_fail(x, p, "must be 1 to 8 bytes in hex (\"01\")");
        out[i] = (uint8_t)v;
    }
    *n = (uint8_t)(len / 2);
    return 0;
}

int gw__bl_parse_handshake(gw__bl_ctx *x, const json_t *o)
{
    const char *path = "frame.handshake";
    char p[GW__BL_PATH_CAP];
    bin_layout *l = x->l;
    if (!json_is_object(o))
        return gw__bl_fail(x, path, "must be an object {\"field\", \"accept\", \"refuse\"}");
    if (gw__bl_unknown_keys(x, o, hs_keys, path))
        return GW_ECONFIG;
    const json_t *f = json_object_get(o, "field");
    if (!json_is_object(f))
        return gw__bl_fail(x, gw__bl_sub(p, path, "field"),
                           "must be a field (role device_id) naming the device");
    if (json_object_get(f, "offset"))
        return gw__bl_fail(x, gw__bl_sub(p, path, "field.offset"),
                           "the handshake is this field alone: no offset");
    json_t *arr = json_pack("[O]", f);
    gw__bl_list c = {.kind = BIN_K_LOGIN};
    int rc = arr ? gw__bl_parse_fields(x, arr, gw__bl_sub(p, path, "field"), &c, &l->hs, &l->n_hs)
                 : gw__bl_fail(x, path, "out of memory");
    json_decref(arr);
    if (rc)
        return rc;
    bin_field *h = &l->hs[0];
    h->pos = BIN_POS_START;
    h->off = 0;
    free(h->path);
    if (!(h->path = strdup(gw__bl_sub(p, path, "field"))))
        return gw__bl_fail(x, path, "out of memory");
    if (h->target != BIN_TG_ROLE || h->role != BIN_ROLE_DEVICE_ID || h->has_value)
        return gw__bl_fail(x, gw__bl_sub(p, path, "field.role"),
                           "the handshake's field has role device_id");
    if (h->type == BIN_GROUP || h->type == BIN_IDLIST)
        return gw__bl_fail(x, gw__bl_sub(p, path, "field.type"), "a group is no device id");
    bool tcp = x->p->protocol && strcmp(x->p->protocol, "tcp") == 0;
    if (tcp && x->p->auth_mode != GW_AUTH_DEVICE_ID)
        return gw__bl_fail(x, path,
                           "a handshake carries no secret: the product needs "
                           "\"auth\": {\"mode\": \"device-id\"}");
    for (size_t i = 0; i < l->n_msgs; i++)
        if (l->msgs[i].kind == BIN_K_LOGIN)
            return gw__bl_fail(x, path, "the handshake is the login: no message of kind login");
    if (l->framing == BIN_FR_DATAGRAM || (x->p->protocol && strcmp(x->p->protocol, "udp") == 0))
        return gw__bl_fail(x, path, "only for byte streams (TCP)");
    if (parse_hex(x, o, "accept", path, l->hs_ok, &l->hs_ok_len) ||
        parse_hex(x, o, "refuse", path, l->hs_no, &l->hs_no_len))
        return GW_ECONFIG;
    return 0;
}

int gw__binary_handshake(const bin_layout *l, const uint8_t *buf, size_t len, gw_thing_msg *out,
                         gw_reject *rej)
{
    const bin_field *f = &l->hs[0];
    size_t n = f->size, data = 0;
    memset(out, 0, sizeof(*out));
    if (len < n)
        return 0;
    if (f->prefix) {
        data = (size_t)gw__binary_get_uint(buf, f->prefix, f->little);
        n = f->prefix + data;
        if (data == 0 || data > 63) /* a device id is 1..63 bytes */
            return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                                 "handshake: a device id of %zu bytes (1..63)", data);
        if (len < n)
            return 0;
    }
    if (gw__binary_to_text(f, buf + f->prefix, n - f->prefix, out->device_id,
                           sizeof(out->device_id), rej))
        return GW_EINVAL;
    out->kind = GW_MSG_LOGIN;
    return (int)n;
}

/* ---- decoding --------------------------------------------------------------------------- */

static int short_of(gw_reject *rej, const bin_field *f, const char *what, size_t at, size_t limit)
{
    return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                         "field %s: %s at byte %zu runs past the data (%zu bytes)",
                         gw__binary_label(f), what, at, limit);
}

int gw__binary_read_group(const bin_field *f, const uint8_t *body, size_t at, size_t limit,
                          size_t *end, gw_thing_msg *out, gw_reject *rej)
{
    const bin_group *g = f->grp;
    size_t cw = f->prefix, cur = at;
    if (cur + cw > limit)
        return short_of(rej, f, "the record count", cur, limit);
    uint64_t count = gw__binary_get_uint(body + cur, cw, f->little);
    cur += cw;
    json_t *recs = out->records ? out->records : json_array();
    if (!recs)
        return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "out of memory");
    out->records = recs;
    for (uint64_t i = 0; i < count; i++) {
        gw_thing_msg r;
        gw_reject sub = {GW_R_NONE, ""};
        size_t used = 0;
        memset(&r, 0, sizeof(r));
        r.timestamp_ms = out->timestamp_ms;
        if (!(r.values = json_object()))
            return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "out of memory");
        if (gw__binary_read_fields(g->rec, g->n_rec, body + cur, limit - cur, &used, &r, &sub)) {
            json_decref(r.values);
            return gw_reject_set(rej, sub.reason,
                                 "field %s: record %" PRIu64 " of %" PRIu64 " (at byte %zu): %s",
                                 gw__binary_label(f), i + 1, count, cur, sub.detail);
        }
        out->unknown_items += r.unknown_items;
        json_t *o = json_pack("{s:I,s:o}", "ts", (json_int_t)r.timestamp_ms, "values", r.values);
        if (!o || json_array_append_new(recs, o) != 0)
            return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "out of memory");
        cur += used;
    }
    if (g->count_after) {
        if (cur + cw > limit)
            return short_of(rej, f, "the count after the records", cur, limit);
        uint64_t again = gw__binary_get_uint(body + cur, cw, f->little);
        if (again != count)
            return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                                 "field %s: the count after the records is %" PRIu64
                                 ", the count before them %" PRIu64,
                                 gw__binary_label(f), again, count);
        cur += cw;
    }
    if (cur != limit) /* the records end where the data does */
        return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                             "field %s: %" PRIu64 " records end at byte %zu, the data at %zu "
                             "(the record count disagrees with the data length)",
                             gw__binary_label(f), count, cur, limit);
    *end = cur;
    return 0;
}

static const bin_field *find_item(const bin_group *g, uint32_t id)
{
    const uint32_t *p = bsearch(&id, g->ids, g->n_items, sizeof(*g->ids), cmp_u32);
    return p ? &g->items[p - g->ids] : NULL;
}

int gw__binary_read_idlist(const bin_field *f, const uint8_t *body, size_t at, size_t limit,
                           size_t *end, gw_thing_msg *out, gw_reject *rej)
{
    const bin_group *g = f->grp;
    size_t cw = f->prefix, iw = g->id_width, cur = at;
    uint64_t total = 0, sum = 0;
    if (g->total) {
        if (cur + cw > limit)
            return short_of(rej, f, "the total count", cur, limit);
        total = gw__binary_get_uint(body + cur, cw, f->little);
        cur += cw;
    }
    for (size_t k = 0; k < g->n_widths; k++) {
        if (cur + cw > limit)
            return short_of(rej, f, "a group count", cur, limit);
        uint64_t n = gw__binary_get_uint(body + cur, cw, f->little);
        cur += cw;
        sum += n;
        for (uint64_t i = 0; i < n; i++) {
            size_t w = g->widths[k];
            if (cur + iw + (w ? 0 : cw) > limit)
                return short_of(rej, f, "an item", cur, limit);
            uint32_t id = (uint32_t)gw__binary_get_uint(body + cur, iw, f->little);
            cur += iw;
            if (!w) {
                w = (size_t)gw__binary_get_uint(body + cur, cw, f->little);
                cur += cw;
            }
            if (cur + w > limit)
                return short_of(rej, f, "an item's value", cur, limit);
            const bin_field *it = find_item(g, id);
            if (!it) {
                out->unknown_items++;
            } else {
                size_t want = gw__binary_type_width((bin_type)it->type);
                if (want && want != w)
                    return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                                         "field %s: item %" PRIu32
                                         " has %zu bytes, the layout says %zu",
                                         gw__binary_label(f), id, w, want);
                json_t *v;
                if (gw__binary_to_json(it, body + cur, w, false, &v, rej))
                    return GW_EINVAL;
                if (!out->values || json_object_set_new(out->values, it->target_id, v) != 0)
                    return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "out of memory");
            }
            cur += w;
        }
    }
    if (g->total && total != sum)
        return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                             "field %s: the total count says %" PRIu64 " items, the groups hold "
                             "%" PRIu64,
                             gw__binary_label(f), total, sum);
    *end = cur;
    return 0;
}

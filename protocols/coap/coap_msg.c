/* coap_msg.c: CoAP message parsing and encoding (RFC 7252 3), request classification (paths,
 * query, Observe, Block1, critical options), the codec -> Content-Format table and the Block1
 * bounds. Bounded and allocation-free; fuzzed by tests/fuzz/fuzz_coap_request.c. */
#include "coap_msg.h"

#include <stdio.h>
#include <string.h>

#include "../../gateway/util/error.h"

/* ---- parsing ---- */

/* Reads an option delta or length nibble's extension; -1 on a reserved nibble or truncation. */
static int32_t ext_value(unsigned nib, const uint8_t *buf, size_t len, size_t *i)
{
    if (nib < 13)
        return (int32_t)nib;
    if (nib == 13) {
        if (*i + 1 > len)
            return -1;
        return 13 + buf[(*i)++];
    }
    if (nib == 14) {
        if (*i + 2 > len)
            return -1;
        int32_t v = 269 + ((int32_t)buf[*i] << 8 | buf[*i + 1]);
        *i += 2;
        return v;
    }
    return -1; /* 15: reserved (only the payload marker 0xFF uses it) */
}

int gw_coap_parse(const uint8_t *buf, size_t len, gw_coap_msg *m)
{
    memset(m, 0, sizeof(*m));
    if (len < 4 || (buf[0] >> 6) != 1)
        return GW_EINCOMPLETE;
    m->type = (buf[0] >> 4) & 3;
    m->tkl = buf[0] & 15;
    m->code = buf[1];
    m->mid = (uint16_t)(buf[2] << 8 | buf[3]);
    if (m->tkl > 8) {
        m->tkl = 0;
        return GW_EPROTO;
    }
    if (4 + (size_t)m->tkl > len) {
        m->tkl = 0;
        return GW_EPROTO;
    }
    memcpy(m->token, buf + 4, m->tkl);
    size_t i = 4 + m->tkl;
    if (m->code == GW_COAP_EMPTY)
        return len == 4 && m->tkl == 0 ? 0 : GW_EPROTO;
    uint32_t num = 0;
    int rc = 0;
    while (i < len) {
        uint8_t b = buf[i++];
        if (b == 0xFF) {
            if (i == len)
                return GW_EPROTO; /* a marker must be followed by a payload */
            m->payload = buf + i;
            m->payload_len = len - i;
            return rc;
        }
        int32_t d = ext_value(b >> 4, buf, len, &i);
        int32_t l = d < 0 ? -1 : ext_value(b & 15, buf, len, &i);
        if (d < 0 || l < 0 || (size_t)l > len - i)
            return GW_EPROTO;
        num += (uint32_t)d;
        if (num > 65535)
            return GW_EPROTO;
        if (m->n_opts < GW_COAP_MAX_OPTS) {
            gw_coap_opt *o = &m->opts[m->n_opts++];
            o->num = (uint16_t)num;
            o->len = (uint16_t)l;
            o->val = buf + i;
        } else {
            rc = GW_ETOOBIG;
        }
        i += (size_t)l;
    }
    return rc;
}

/* ---- encoding ---- */

static void put(gw_coap_out *o, const void *p, size_t n)
{
    if (o->err)
        return;
    if (n > o->cap - o->len) {
        o->err = GW_ETOOBIG;
        return;
    }
    if (n)
        memcpy(o->buf + o->len, p, n);
    o->len += n;
}

void gw_coap_out_begin(gw_coap_out *o, uint8_t *buf, size_t cap, uint8_t type, uint8_t code,
                       uint16_t mid, const uint8_t *token, uint8_t tkl)
{
    o->buf = buf;
    o->cap = cap;
    o->len = 0;
    o->last = 0;
    o->err = tkl > 8 ? GW_EINVAL : 0;
    uint8_t h[4] = {(uint8_t)(0x40 | (type & 3) << 4 | (tkl & 15)), code, (uint8_t)(mid >> 8),
                    (uint8_t)mid};
    put(o, h, 4);
    put(o, token, tkl);
}

static size_t nibble(uint32_t v, uint8_t *nib, uint8_t ext[2])
{
    if (v < 13) {
        *nib = (uint8_t)v;
        return 0;
    }
    if (v < 269) {
        *nib = 13;
        ext[0] = (uint8_t)(v - 13);
        return 1;
    }
    *nib = 14;
    ext[0] = (uint8_t)((v - 269) >> 8);
    ext[1] = (uint8_t)(v - 269);
    return 2;
}

void gw_coap_out_opt(gw_coap_out *o, uint16_t num, const void *val, size_t len)
{
    if (o->err)
        return;
    if (num < o->last || len > 65535 - 269) {
        o->err = GW_EINVAL;
        return;
    }
    uint8_t hd[5], dn, ln, de[2], le[2];
    size_t dx = nibble(num - o->last, &dn, de), lx = nibble((uint32_t)len, &ln, le), k = 0;
    hd[k++] = (uint8_t)(dn << 4 | ln);
    memcpy(hd + k, de, dx);
    k += dx;
    memcpy(hd + k, le, lx);
    k += lx;
    put(o, hd, k);
    put(o, val, len);
    o->last = num;
}

void gw_coap_out_opt_uint(gw_coap_out *o, uint16_t num, uint32_t v)
{
    uint8_t b[4];
    size_t n = 0;
    for (int s = 24; s >= 0; s -= 8)
        if (n || (v >> s) & 0xFF)
            b[n++] = (uint8_t)(v >> s);
    gw_coap_out_opt(o, num, b, n);
}

void gw_coap_out_payload(gw_coap_out *o, const void *p, size_t n)
{
    if (!n)
        return;
    uint8_t marker = 0xFF;
    put(o, &marker, 1);
    put(o, p, n);
}

uint32_t gw_coap_opt_uint(const gw_coap_opt *opt)
{
    uint32_t v = 0;
    for (size_t i = 0; i < opt->len && i < 4; i++)
        v = v << 8 | opt->val[i];
    return v;
}

void gw_coap_code_str(uint8_t code, char buf[8])
{
    snprintf(buf, 8, "%u.%02u", (unsigned)(code >> 5), (unsigned)(code & 31));
}

/* ---- request classification ---- */

/* Critical options the gateway understands (or safely ignores: Uri-Host/-Port name us; If-Match,
 * If-None-Match, Accept and Block2 do not change a report). Every other odd number is 4.02. */
static bool known_critical(uint16_t num)
{
    switch (num) {
    case 1:  /* If-Match */
    case 3:  /* Uri-Host */
    case 5:  /* If-None-Match */
    case 7:  /* Uri-Port */
    case 11: /* Uri-Path */
    case 15: /* Uri-Query */
    case 17: /* Accept */
    case GW_COAP_OPT_BLOCK2:
    case GW_COAP_OPT_BLOCK1:
        return true;
    default:
        return false;
    }
}

static bool repeatable(uint16_t num)
{
    return num == 1 || num == 4 || num == 8 || num == 11 || num == 15 || num == 20;
}

static bool seg_is(const gw_coap_opt *o, const char *s)
{
    size_t n = strlen(s);
    return o->len == n && memcmp(o->val, s, n) == 0;
}

static bool seg_copy(char *dst, size_t cap, const gw_coap_opt *o)
{
    if (o->len == 0 || o->len >= cap || memchr(o->val, 0, o->len))
        return false;
    memcpy(dst, o->val, o->len);
    dst[o->len] = 0;
    return true;
}

/* The path segments -> the resource; 0 or 4.04. */
static int route(gw_coap_req *r, const gw_coap_opt **seg, size_t n)
{
    if (n < 4 || !seg_copy(r->product, sizeof(r->product), seg[0]) ||
        !seg_copy(r->device, sizeof(r->device), seg[1]))
        return GW_COAP_NOT_FOUND;
    if (n == 4 && seg_is(seg[2], "properties") && seg_is(seg[3], "report"))
        r->res = GW_COAP_RES_REPORT;
    else if (n == 4 && seg_is(seg[2], "event") && seg_copy(r->event, sizeof(r->event), seg[3]))
        r->res = GW_COAP_RES_EVENT;
    else if (n == 4 && seg_is(seg[2], "function") && seg_is(seg[3], "invoke"))
        r->res = GW_COAP_RES_INVOKE;
    else if (n == 5 && seg_is(seg[2], "function") && seg_is(seg[3], "invoke") &&
             seg_is(seg[4], "reply"))
        r->res = GW_COAP_RES_INVOKE_REPLY;
    else if (n == 5 && seg_is(seg[2], "properties") && seg_is(seg[3], "write") &&
             seg_is(seg[4], "reply"))
        r->res = GW_COAP_RES_WRITE_REPLY;
    else
        return GW_COAP_NOT_FOUND;
    return 0;
}

static bool parse_uint(const uint8_t *p, size_t n, uint32_t *out)
{
    uint64_t v = 0;
    if (n == 0 || n > 9)
        return false;
    for (size_t i = 0; i < n; i++) {
        if (p[i] < '0' || p[i] > '9')
            return false;
        v = v * 10 + (p[i] - '0');
    }
    *out = (uint32_t)v;
    return true;
}

/* One Uri-Query option: token=, wait=; other keys are ignored. 0 or 4.00. */
static int query(gw_coap_req *r, const gw_coap_opt *o)
{
    if (o->len >= 6 && memcmp(o->val, "token=", 6) == 0) {
        r->has_token = true;
        r->token = o->val + 6;
        r->token_len = o->len - 6u;
    } else if (o->len >= 5 && memcmp(o->val, "wait=", 5) == 0) {
        if (!parse_uint(o->val + 5, o->len - 5u, &r->wait_s))
            return GW_COAP_BAD_REQUEST;
        r->has_wait = true;
    }
    return 0;
}

/* The classification: 0, or the CoAP response code refusing the request. */
static int classify(const gw_coap_msg *m, gw_coap_req *r)
{
    const gw_coap_opt *seg[8];
    size_t n_seg = 0;
    bool too_deep = false;

    memset(r, 0, sizeof(*r));
    r->content_format = -1;
    r->observe = -1;
    for (size_t i = 0; i < m->n_opts; i++) {
        const gw_coap_opt *o = &m->opts[i];
        if ((o->num & 1) && !known_critical(o->num)) {
            r->bad_option = o->num;
            return GW_COAP_BAD_OPTION;
        }
        if (i > 0 && m->opts[i - 1].num == o->num && !repeatable(o->num) && (o->num & 1)) {
            r->bad_option = o->num;
            return GW_COAP_BAD_OPTION; /* a repeated critical option that must not repeat */
        }
        switch (o->num) {
        case GW_COAP_OPT_URI_PATH:
            if (n_seg < 8)
                seg[n_seg++] = o;
            else
                too_deep = true;
            break;
        case GW_COAP_OPT_URI_QUERY: {
            int rc = query(r, o);
            if (rc)
                return rc;
            break;
        }
        case GW_COAP_OPT_CONTENT_FORMAT:
            if (o->len > 2)
                return GW_COAP_BAD_REQUEST;
            r->content_format = (int)gw_coap_opt_uint(o);
            break;
        case GW_COAP_OPT_OBSERVE:
            if (o->len <= 3)
                r->observe = (int)gw_coap_opt_uint(o);
            break;
        case GW_COAP_OPT_BLOCK1: {
            if (o->len > 3)
                return GW_COAP_BAD_REQUEST;
            uint32_t v = gw_coap_opt_uint(o);
            r->has_block1 = true;
            r->b1_num = v >> 4;
            r->b1_more = (v >> 3) & 1;
            r->b1_szx = v & 7;
            if (r->b1_szx == 7)
                return GW_COAP_BAD_REQUEST;
            break;
        }
        case GW_COAP_OPT_SIZE1:
            r->has_size1 = o->len <= 4;
            r->size1 = gw_coap_opt_uint(o);
            break;
        default:
            break;
        }
    }
    if (too_deep)
        return GW_COAP_NOT_FOUND;
    int rc = route(r, seg, n_seg);
    if (rc)
        return rc;
    if (r->res == GW_COAP_RES_INVOKE ? m->code != GW_COAP_GET
                                     : m->code != GW_COAP_POST && m->code != GW_COAP_PUT)
        return GW_COAP_NOT_ALLOWED;
    return 0;
}

int gw_coap_request_parse(const gw_coap_msg *m, gw_coap_req *r)
{
    int code = classify(m, r);
    r->refuse = (uint8_t)code;
    return code ? GW_EPROTO : 0;
}

/* ---- Content-Format table ---- */

static const struct {
    const char *codec;
    int accepts, send;
} formats[] = {
    {"json", GW_COAP_CF_JSON, GW_COAP_CF_JSON},
    {"binary", GW_COAP_CF_OCTETS, GW_COAP_CF_OCTETS},
    {"protobuf", GW_COAP_CF_OCTETS, GW_COAP_CF_OCTETS},
};

static int find_format(const char *codec)
{
    for (size_t i = 0; codec && i < sizeof(formats) / sizeof(formats[0]); i++)
        if (strcmp(formats[i].codec, codec) == 0)
            return (int)i;
    return -1;
}

bool gw_coap_codec_accepts(const char *codec, int cf)
{
    int i = find_format(codec);
    return cf < 0 || cf == (i < 0 ? GW_COAP_CF_OCTETS : formats[i].accepts);
}

int gw_coap_codec_format(const char *codec)
{
    int i = find_format(codec);
    return i < 0 ? GW_COAP_CF_OCTETS : formats[i].send;
}

/* ---- Block1 ---- */

int gw_coap_block1_check(size_t have, uint32_t num, unsigned szx, size_t n, bool more,
                         size_t max_bytes, size_t *total)
{
    if (szx > 6)
        return GW_EPROTO;
    size_t size = (size_t)16 << szx;
    if ((uint64_t)num * size != have)
        return GW_EINCOMPLETE;
    if (more ? n != size : n > size)
        return GW_EPROTO;
    if (n > max_bytes || have > max_bytes - n)
        return GW_ETOOBIG;
    *total = have + n;
    return 0;
}

uint32_t gw_coap_block1_value(uint32_t num, bool more, unsigned szx)
{
    return num << 4 | (more ? 8u : 0u) | (szx & 7);
}

/* mqtt_prot.c: MQTT 5 / 3.1.1 / 3.1 packet parser and encoder (one parser; MQTT 5 properties
 * through gw_mqtt_props_decode); bounded, allocation-free, zero-copy, no logging. Every read is
 * checked against the caller's length; decoded strings point into the packet. */
#include "protocols/mqtt/mqtt_prot.h"

#include <string.h>

#include "gateway/util/error.h"

static const char R_UTF8[] = "invalid_utf8";
static const char R_WILD[] = "wildcard_topic";
static const char R_MALFORMED[] = "malformed_packet";
static const char R_PROP[] = "bad_property";

static inline uint16_t rd16(const uint8_t *p)
{
    return (uint16_t)((unsigned)p[0] << 8 | p[1]);
}

static inline void wr16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* ---- fixed header ---------------------------------------------------------------------------- */

/* Bit f set when low nibble f is allowed for the type. PUBLISH: anything but QoS 3 (0x6, 0x7, 0xE,
 * 0xF); PUBREL/SUBSCRIBE/UNSUBSCRIBE: exactly 0x2; the others 0; types 0 and 15: nothing. */
static const uint16_t valid_flags[16] = {
    0,      0x0001, 0x0001, 0x3F3F, 0x0001, 0x0001, 0x0004, 0x0001,
    0x0004, 0x0001, 0x0004, 0x0001, 0x0001, 0x0001, 0x0001, 0,
};

static const char R_LENGTH[] = "bad_remaining_length";
static const char R_OVERSIZED[] = "oversized_packet";

/* Works on a local copy (buf is a byte pointer: stores through out could alias it). */
static inline int fixed_header(const uint8_t *buf, size_t len, uint32_t max_packet,
                               gw_mqtt_fixed *out, const char **why)
{
    gw_mqtt_fixed f = {0};
    int rc = GW_EINCOMPLETE;
    if (len == 0)
        goto done;
    f.type = buf[0] >> 4;
    f.flags = buf[0] & 0x0F;
    if (!(valid_flags[f.type] & (1u << f.flags))) {
        *why = R_MALFORMED;
        rc = GW_EPROTO;
        goto done;
    }
    uint32_t rem = 0;
    size_t i = 1;
    for (;;) {
        if (i >= len)
            goto done;
        uint8_t b = buf[i];
        rem |= (uint32_t)(b & 0x7F) << (7 * (i - 1));
        if (!(b & 0x80))
            break;
        if (i == 4) { /* a fifth length byte would follow: never read it */
            *why = R_LENGTH;
            rc = GW_EPROTO;
            goto done;
        }
        i++;
    }
    f.remaining = rem;
    f.header_len = (uint8_t)(i + 1);
    rc = 0;
    if ((uint64_t)f.header_len + rem > max_packet) {
        *why = R_OVERSIZED;
        rc = GW_ETOOBIG;
    }
done:
    *out = f;
    return rc;
}

int gw_mqtt_fixed_header(const uint8_t *buf, size_t len, uint32_t max_packet, gw_mqtt_fixed *out)
{
    const char *why;
    return fixed_header(buf, len, max_packet, out, &why);
}

int gw_mqtt_fixed_header_why(const uint8_t *buf, size_t len, uint32_t max_packet,
                             gw_mqtt_fixed *out, const char **why)
{
    const char *w = NULL;
    int rc = fixed_header(buf, len, max_packet, out, &w);
    if (rc != 0 && rc != GW_EINCOMPLETE && why)
        *why = w;
    return rc;
}

int gw_mqtt_frame(const uint8_t *buf, size_t len, uint32_t max_packet, gw_mqtt_fixed *out)
{
    const char *why;
    int rc = fixed_header(buf, len, max_packet, out, &why);
    if (rc == 0 && len - out->header_len < out->remaining)
        return GW_EINCOMPLETE;
    return rc;
}

/* ---- UTF-8 ----------------------------------------------------------------------------------- */

#define ONES  UINT64_C(0x0101010101010101)
#define HIGHS UINT64_C(0x8080808080808080)

/* Nonzero exactly when some byte of v is 0. */
static inline uint64_t zero_bytes(uint64_t v)
{
    return (v - ONES) & ~v & HIGHS;
}

/* Length of the well-formed multi-byte sequence at p (*p >= 0x80), or 0. Rejects overlongs (C0, C1,
 * E0 80..9F, F0 80..8F), surrogates (ED A0..BF) and code points above U+10FFFF (F4 90.., F5..FF).
 */
static inline size_t utf8_seq(const uint8_t *p, const uint8_t *end)
{
    size_t avail = (size_t)(end - p);
    uint8_t c = p[0];
    if (c < 0xC2)
        return 0;
    if (c < 0xE0)
        return avail >= 2 && (p[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c < 0xF0) {
        if (avail < 3 || (p[2] & 0xC0) != 0x80)
            return 0;
        uint8_t lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        return p[1] >= lo && p[1] <= hi ? 3 : 0;
    }
    if (c < 0xF5) {
        if (avail < 4 || (p[2] & 0xC0) != 0x80 || (p[3] & 0xC0) != 0x80)
            return 0;
        uint8_t lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        return p[1] >= lo && p[1] <= hi ? 4 : 0;
    }
    return 0;
}

enum { SCAN_OK = 0, SCAN_UTF8, SCAN_WILD };

/* One pass over a string: MQTT UTF-8 and, for a topic name, no '+' or '#'. Eight ASCII bytes at a
 * time; a word holding a high bit, a zero byte (or a wildcard) is walked byte by byte. */
static inline int scan(const uint8_t *p, size_t len, bool topic)
{
    const uint8_t *end = p + len;
    while (p < end) {
        while ((size_t)(end - p) >= 8) {
            uint64_t v;
            memcpy(&v, p, 8);
            uint64_t bad = (v & HIGHS) | zero_bytes(v);
            if (topic)
                bad |= zero_bytes(v ^ (ONES * '+')) | zero_bytes(v ^ (ONES * '#'));
            if (bad)
                break;
            p += 8;
        }
        const uint8_t *stop = (size_t)(end - p) > 8 ? p + 8 : end;
        while (p < stop) {
            uint8_t c = *p;
            if (c < 0x80) {
                if (c == 0)
                    return SCAN_UTF8;
                if (topic && (c == '+' || c == '#'))
                    return SCAN_WILD;
                p++;
            } else {
                size_t n = utf8_seq(p, end);
                if (!n)
                    return SCAN_UTF8;
                p += n;
            }
        }
    }
    return SCAN_OK;
}

bool gw_mqtt_utf8_valid(const char *p, size_t len)
{
    return scan((const uint8_t *)p, len, false) == SCAN_OK;
}

/* ---- topics ---------------------------------------------------------------------------------- */

bool gw_mqtt_filter_valid(const char *p, size_t len)
{
    if (len == 0)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = p[i];
        if (c == '#') {
            if (i + 1 != len || (i > 0 && p[i - 1] != '/'))
                return false;
        } else if (c == '+') {
            if ((i > 0 && p[i - 1] != '/') || (i + 1 < len && p[i + 1] != '/'))
                return false;
        }
    }
    return true;
}

bool gw_mqtt_topic_match(const char *f, size_t flen, const char *t, size_t tlen)
{
    /* [MQTT-4.7.2-1]: a leading wildcard does not match a topic starting with '$'. */
    if (tlen > 0 && t[0] == '$' && flen > 0 && (f[0] == '+' || f[0] == '#'))
        return false;
    size_t fi = 0, ti = 0;
    for (;;) {
        /* Both at the start of a level. */
        if (fi < flen && f[fi] == '#')
            return fi + 1 == flen;
        if (fi < flen && f[fi] == '+' && (fi + 1 == flen || f[fi + 1] == '/')) {
            fi++;
            while (ti < tlen && t[ti] != '/')
                ti++;
        } else {
            while (fi < flen && ti < tlen && f[fi] != '/' && f[fi] == t[ti]) {
                fi++;
                ti++;
            }
            if ((fi < flen && f[fi] != '/') || (ti < tlen && t[ti] != '/'))
                return false;
        }
        /* Both at the end of a level. */
        if (fi == flen)
            return ti == tlen;
        if (ti == tlen) /* "a/#" also matches "a" */
            return fi + 2 == flen && f[fi + 1] == '#';
        fi++;
        ti++;
    }
}

/* ---- decoders -------------------------------------------------------------------------------- */

struct rd {
    const uint8_t *p, *end;
    bool bad_utf8;   /* a string failed the UTF-8 scan (for the caller's error label) */
    uint8_t rc;      /* MQTT 5 reason code of a property error (0: none) */
    const char *why; /* its label */
};

/* A 2-byte length and that many bytes. */
static inline bool rd_bytes(struct rd *r, const uint8_t **s, uint16_t *n)
{
    size_t avail = (size_t)(r->end - r->p);
    if (avail < 2)
        return false;
    uint16_t l = rd16(r->p);
    if (avail - 2 < l)
        return false;
    *s = r->p + 2;
    *n = l;
    r->p += 2 + (size_t)l;
    return true;
}

static inline bool rd_str(struct rd *r, gw_mqtt_str *s)
{
    const uint8_t *b;
    uint16_t n;
    if (!rd_bytes(r, &b, &n))
        return false;
    if (scan(b, n, false) != SCAN_OK) {
        r->bad_utf8 = true;
        return false;
    }
    s->p = (const char *)b;
    s->len = n;
    return true;
}

static bool protocol_ok(const uint8_t *name, uint16_t nlen, uint8_t level)
{
    if (nlen == 4 && memcmp(name, "MQTT", 4) == 0)
        return level == 4 || level == 5;
    if (nlen == 6 && memcmp(name, "MQIsdp", 6) == 0)
        return level == 3;
    return false;
}

/* The payload after the variable header, in its fixed order. */
static bool connect_payload(struct rd *r, gw_mqtt_connect *c)
{
    if (!rd_str(r, &c->client_id))
        return false;
    if (c->has_will) {
        const uint8_t *t;
        if (c->protocol_level == 5) {
            size_t used;
            if (gw_mqtt_props_decode(r->p, (size_t)(r->end - r->p), GW_MQTT_PC_WILL, &c->will_props,
                                     &used, &r->rc, &r->why) != 0)
                return false;
            r->p += used;
        }
        if (!rd_bytes(r, &t, &c->will_topic.len) || c->will_topic.len == 0)
            return false;
        int sc = scan(t, c->will_topic.len, true);
        if (sc != SCAN_OK) {
            r->bad_utf8 = sc == SCAN_UTF8;
            return false;
        }
        c->will_topic.p = (const char *)t;
        if (!rd_bytes(r, &c->will_payload, &c->will_payload_len))
            return false;
    }
    if (c->has_username && !rd_str(r, &c->username))
        return false;
    if (c->has_password && !rd_bytes(r, &c->password, &c->password_len))
        return false;
    return r->p == r->end;
}

int gw_mqtt_decode_connect(const uint8_t *body, uint32_t len, gw_mqtt_connect *out,
                           uint8_t *connack_rc)
{
    return gw_mqtt_decode_connect_why(body, len, out, connack_rc, NULL);
}

int gw_mqtt_decode_connect_why(const uint8_t *body, uint32_t len, gw_mqtt_connect *out,
                               uint8_t *connack_rc, const char **why)
{
    struct rd r = {body, body + len, false, 0, NULL};
    if (why)
        *why = "malformed_packet";
    const uint8_t *name;
    uint16_t nlen;

    memset(out, 0, sizeof(*out));
    *connack_rc = 0xFF;
    if (!rd_bytes(&r, &name, &nlen) || r.p == r.end)
        return GW_EPROTO;
    uint8_t level = *r.p++;
    if (!protocol_ok(name, nlen, level)) {
        *connack_rc = 1; /* answered before the rest is parsed: a v5 CONNECT carries properties */
        return GW_EPROTO;
    }
    if (r.end - r.p < 3)
        return GW_EPROTO;
    uint8_t f = r.p[0];
    out->protocol_level = level;
    out->keepalive = rd16(r.p + 1);
    r.p += 3;
    out->clean_session = f & 0x02;
    out->has_will = f & 0x04;
    out->will_qos = (f >> 3) & 3;
    out->will_retain = f & 0x20;
    out->has_password = f & 0x40;
    out->has_username = f & 0x80;
    out->v5_rc = GW_MQTT_RC_MALFORMED;
    if ((f & 0x01) || out->will_qos == 3 ||
        (!out->has_will && (out->will_qos || out->will_retain)) ||
        (level == 4 && out->has_password && !out->has_username))
        return GW_EPROTO;
    if (level == 5) {
        size_t used;
        if (gw_mqtt_props_decode(r.p, (size_t)(r.end - r.p), GW_MQTT_PC_CONNECT, &out->props, &used,
                                 &out->v5_rc, why) != 0)
            return GW_EPROTO;
        r.p += used;
    }
    if (!connect_payload(&r, out)) {
        if (r.rc) {
            out->v5_rc = r.rc;
            if (why)
                *why = r.why;
        } else if (why && r.bad_utf8) {
            *why = "invalid_utf8";
        }
        return GW_EPROTO;
    }
    /* MQTT 5 allows an empty id with clean start 0 (the server would assign one): the gateway
     * needs the device id, so it is refused there too (0x85). */
    if (out->client_id.len == 0 && (level == 3 || level == 5 || !out->clean_session)) {
        out->v5_rc = GW_MQTT_RC_BAD_CLIENT_ID;
        *connack_rc = 2;
        return GW_EPROTO;
    }
    *connack_rc = 0;
    return 0;
}

static inline int decode_publish(const uint8_t *body, uint32_t len, uint8_t flags,
                                 gw_mqtt_publish *out, gw_mqtt_props *props, const char **why,
                                 uint8_t *rc)
{
    const char *reason = R_MALFORMED;
    uint8_t qos = (flags >> 1) & 3;
    if (rc)
        *rc = GW_MQTT_RC_MALFORMED;
    if (qos == 3 || (qos == 0 && (flags & 0x08)) || len < 2)
        goto fail;
    uint16_t tl = rd16(body);
    uint32_t hdr = 2u + tl + (qos ? 2u : 0u);
    if ((tl == 0 && !props) || hdr > len)
        goto fail;
    int s = scan(body + 2, tl, true);
    if (s != SCAN_OK) {
        reason = s == SCAN_WILD ? R_WILD : R_UTF8;
        goto fail;
    }
    uint16_t id = 0;
    if (qos) {
        id = rd16(body + 2 + tl);
        if (id == 0)
            goto fail;
    }
    if (props) {
        size_t used;
        if (gw_mqtt_props_decode(body + hdr, len - hdr, GW_MQTT_PC_PUBLISH, props, &used, rc,
                                 &reason) != 0)
            goto fail;
        hdr += (uint32_t)used;
        if (props->subscription_id) { /* only a server sends it */
            reason = R_PROP;
            if (rc)
                *rc = GW_MQTT_RC_PROTOCOL_ERROR;
            goto fail;
        }
    }
    out->topic.p = (const char *)body + 2;
    out->topic.len = tl;
    out->packet_id = id;
    out->qos = qos;
    out->retain = flags & 0x01;
    out->dup = flags & 0x08;
    out->payload = body + hdr;
    out->payload_len = len - hdr;
    return 0;
fail:
    if (why)
        *why = reason;
    return GW_EPROTO;
}

int gw_mqtt_decode_publish(const uint8_t *body, uint32_t len, uint8_t flags, gw_mqtt_publish *out,
                           const char **why)
{
    return decode_publish(body, len, flags, out, NULL, why, NULL);
}

int gw_mqtt_decode_publish5(const uint8_t *body, uint32_t len, uint8_t flags, gw_mqtt_publish *out,
                            gw_mqtt_props *props, const char **why, uint8_t *rc)
{
    return decode_publish(body, len, flags, out, props, why, rc);
}

static int decode_sub(const uint8_t *body, uint32_t len, uint16_t *packet_id, gw_mqtt_sub_iter *it,
                      const char **why, bool unsub, gw_mqtt_props *props, uint8_t *rc)
{
    const char *reason = R_MALFORMED;
    size_t qos_len = unsub ? 0 : 1;
    if (rc)
        *rc = GW_MQTT_RC_MALFORMED;
    if (len < 2 + 2 + 1 + qos_len) /* packet id, at least one non-empty filter */
        goto fail;
    uint16_t id = rd16(body);
    if (id == 0)
        goto fail;
    const uint8_t *p = body + 2, *end = body + len;
    if (props) {
        size_t used;
        if (gw_mqtt_props_decode(p, (size_t)(end - p),
                                 unsub ? GW_MQTT_PC_UNSUBSCRIBE : GW_MQTT_PC_SUBSCRIBE, props,
                                 &used, rc, &reason) != 0)
            goto fail;
        p += used;
        if (p == end) /* no filter */
            goto fail;
    }
    const uint8_t *first = p;
    while (p < end) {
        if (end - p < 2)
            goto fail;
        uint16_t n = rd16(p);
        p += 2;
        if (n == 0 || (size_t)(end - p) < n + qos_len)
            goto fail;
        if (scan(p, n, false) != SCAN_OK) {
            reason = R_UTF8;
            goto fail;
        }
        if (!gw_mqtt_filter_valid((const char *)p, n))
            goto fail;
        p += n;
        if (!unsub) {
            uint8_t o = *p++;
            /* 3.1.1: qos 3 or a reserved bit [MQTT-3.8.3-4]; 5: reserved bits 6-7, qos 3,
             * retain handling 3 [MQTT-3.8.3-5] */
            if (props ? (o & 0xC0) || (o & 3) == 3 || (o & 0x30) == 0x30 : o > 2) {
                if (rc)
                    *rc = GW_MQTT_RC_PROTOCOL_ERROR;
                goto fail;
            }
        }
    }
    *packet_id = id;
    it->p = first;
    it->end = end;
    it->unsub = unsub;
    return 0;
fail:
    if (why)
        *why = reason;
    return GW_EPROTO;
}

int gw_mqtt_decode_subscribe(const uint8_t *body, uint32_t len, uint16_t *packet_id,
                             gw_mqtt_sub_iter *it, const char **why)
{
    return decode_sub(body, len, packet_id, it, why, false, NULL, NULL);
}

int gw_mqtt_decode_subscribe5(const uint8_t *body, uint32_t len, uint16_t *packet_id,
                              gw_mqtt_sub_iter *it, gw_mqtt_props *props, const char **why,
                              uint8_t *rc)
{
    return decode_sub(body, len, packet_id, it, why, false, props, rc);
}

int gw_mqtt_decode_unsubscribe5(const uint8_t *body, uint32_t len, uint16_t *packet_id,
                                gw_mqtt_sub_iter *it, gw_mqtt_props *props, const char **why,
                                uint8_t *rc)
{
    return decode_sub(body, len, packet_id, it, why, true, props, rc);
}

int gw_mqtt_decode_unsubscribe(const uint8_t *body, uint32_t len, uint16_t *packet_id,
                               gw_mqtt_sub_iter *it, const char **why)
{
    return decode_sub(body, len, packet_id, it, why, true, NULL, NULL);
}

int gw_mqtt_sub_next(gw_mqtt_sub_iter *it, gw_mqtt_str *filter, uint8_t *qos)
{
    size_t qos_len = it->unsub ? 0 : 1;
    size_t avail = (size_t)(it->end - it->p);
    /* Validated by the decoder; the bounds checks keep a misused iterator safe. */
    if (it->p >= it->end || avail < 2 || avail - 2 < (size_t)rd16(it->p) + qos_len) {
        it->p = it->end;
        return 0;
    }
    uint16_t n = rd16(it->p);
    filter->p = (const char *)it->p + 2;
    filter->len = n;
    *qos = it->unsub ? 0 : it->p[2 + n] & 3;
    it->p += 2 + (size_t)n + qos_len;
    return 1;
}

size_t gw_mqtt_sub_count(const gw_mqtt_sub_iter *it)
{
    gw_mqtt_sub_iter i = *it;
    gw_mqtt_str f;
    uint8_t q;
    size_t n = 0;
    while (gw_mqtt_sub_next(&i, &f, &q))
        n++;
    return n;
}

int gw_mqtt_decode_ack(const uint8_t *body, uint32_t len, uint16_t *packet_id)
{
    if (len != 2 || rd16(body) == 0)
        return GW_EPROTO;
    *packet_id = rd16(body);
    return 0;
}

int gw_mqtt_decode_ack5(const uint8_t *body, uint32_t len, uint16_t *packet_id, uint8_t *reason,
                        gw_mqtt_props *props)
{
    size_t used = 0;
    memset(props, 0, sizeof(*props));
    if (len < 2 || rd16(body) == 0)
        return GW_EPROTO;
    *packet_id = rd16(body);
    *reason = len > 2 ? body[2] : 0;
    if (len > 3 &&
        (gw_mqtt_props_decode(body + 3, len - 3, GW_MQTT_PC_ACK, props, &used, NULL, NULL) != 0 ||
         used != len - 3))
        return GW_EPROTO;
    return 0;
}

int gw_mqtt_decode_disconnect5(const uint8_t *body, uint32_t len, uint8_t *reason,
                               gw_mqtt_props *props, const char **why)
{
    size_t used = 0;
    memset(props, 0, sizeof(*props));
    *reason = len ? body[0] : 0;
    if (len > 1) {
        if (gw_mqtt_props_decode(body + 1, len - 1, GW_MQTT_PC_DISCONNECT, props, &used, NULL,
                                 why) != 0)
            return GW_EPROTO;
        if (used != len - 1) {
            if (why)
                *why = R_MALFORMED;
            return GW_EPROTO;
        }
    }
    return 0;
}

int gw_mqtt_decode_empty(const uint8_t *body, uint32_t len)
{
    (void)body;
    return len == 0 ? 0 : GW_EPROTO;
}

int gw_mqtt_decode_connack(const uint8_t *body, uint32_t len, bool *session_present, uint8_t *rc)
{
    /* Flags bits 7-1 reserved; session present must be 0 with a refusal [MQTT-3.2.2-4]. */
    if (len != 2 || (body[0] & 0xFE) || body[1] > 5 || (body[1] && body[0]))
        return GW_EPROTO;
    *session_present = body[0] & 1;
    *rc = body[1];
    return 0;
}

int gw_mqtt_decode_suback(const uint8_t *body, uint32_t len, uint16_t *packet_id,
                          const uint8_t **rcs, size_t *n)
{
    if (len < 3 || rd16(body) == 0)
        return GW_EPROTO;
    for (uint32_t i = 2; i < len; i++)
        if (body[i] > 2 && body[i] != 0x80)
            return GW_EPROTO;
    *packet_id = rd16(body);
    *rcs = body + 2;
    *n = len - 2;
    return 0;
}

/* ---- encoders -------------------------------------------------------------------------------- */

static inline size_t vbi_len(size_t v)
{
    return v < 128 ? 1 : v < 16384 ? 2 : v < 2097152 ? 3 : 4;
}

static inline size_t put_vbi(uint8_t *out, size_t v)
{
    size_t i = 0;
    do {
        uint8_t b = v & 0x7F;
        v >>= 7;
        out[i++] = v ? (uint8_t)(b | 0x80) : b;
    } while (v);
    return i;
}

static inline uint8_t *put_bytes(uint8_t *p, const void *s, size_t n)
{
    wr16(p, (uint16_t)n);
    if (n)
        memcpy(p + 2, s, n);
    return p + 2 + n;
}

size_t gw_mqtt_encode_connack(uint8_t out[4], bool session_present, uint8_t rc)
{
    out[0] = GW_MQTT_CONNACK << 4;
    out[1] = 2;
    out[2] = session_present ? 1 : 0;
    out[3] = rc;
    return 4;
}

size_t gw_mqtt_encode_ack(uint8_t out[4], uint8_t type, uint16_t packet_id)
{
    if (type != GW_MQTT_PUBACK && type != GW_MQTT_PUBREC && type != GW_MQTT_PUBREL &&
        type != GW_MQTT_PUBCOMP && type != GW_MQTT_UNSUBACK)
        return 0;
    out[0] = (uint8_t)(type << 4 | (type == GW_MQTT_PUBREL ? 0x2 : 0));
    out[1] = 2;
    wr16(out + 2, packet_id);
    return 4;
}

size_t gw_mqtt_suback_size(size_t n)
{
    if (n == 0 || n > GW_MQTT_MAX_REMAINING - 2)
        return 0;
    return 1 + vbi_len(2 + n) + 2 + n;
}

size_t gw_mqtt_encode_suback_head(uint8_t out[7], uint16_t packet_id, size_t n)
{
    if (n == 0 || n > GW_MQTT_MAX_REMAINING - 2)
        return 0;
    size_t h = 1 + put_vbi(out + 1, 2 + n);
    out[0] = GW_MQTT_SUBACK << 4;
    wr16(out + h, packet_id);
    return h + 2;
}

size_t gw_mqtt_encode_suback(uint8_t *out, size_t cap, uint16_t packet_id, const uint8_t *rcs,
                             size_t n)
{
    size_t size = gw_mqtt_suback_size(n);
    if (size == 0 || cap < size)
        return size;
    size_t h = gw_mqtt_encode_suback_head(out, packet_id, n);
    memmove(out + h, rcs, n);
    return size;
}

size_t gw_mqtt_encode_pingresp(uint8_t out[2])
{
    out[0] = GW_MQTT_PINGRESP << 4;
    out[1] = 0;
    return 2;
}

size_t gw_mqtt_encode_pingreq(uint8_t out[2])
{
    out[0] = GW_MQTT_PINGREQ << 4;
    out[1] = 0;
    return 2;
}

size_t gw_mqtt_encode_disconnect(uint8_t out[2])
{
    out[0] = GW_MQTT_DISCONNECT << 4;
    out[1] = 0;
    return 2;
}

/* A packet of type byte t0 whose variable header is h (hlen bytes), then a property block, then
 * tail (tlen bytes): its size, written when cap allows. */
static size_t encode_with_props(uint8_t *out, size_t cap, uint8_t t0, const uint8_t *h, size_t hlen,
                                const uint8_t *props, size_t plen, const uint8_t *tail, size_t tlen)
{
    size_t rem = hlen + vbi_len(plen) + plen + tlen;
    if (plen > GW_MQTT_MAX_REMAINING || rem > GW_MQTT_MAX_REMAINING)
        return 0;
    size_t size = 1 + vbi_len(rem) + rem;
    if (cap < size)
        return size;
    uint8_t *p = out;
    *p++ = t0;
    p += put_vbi(p, rem);
    if (hlen)
        memcpy(p, h, hlen);
    p += hlen;
    p += put_vbi(p, plen);
    if (plen)
        memcpy(p, props, plen);
    p += plen;
    if (tlen)
        memcpy(p, tail, tlen);
    return size;
}

size_t gw_mqtt_encode_connack5(uint8_t *out, size_t cap, bool session_present, uint8_t rc,
                               const uint8_t *props, size_t plen)
{
    uint8_t h[2] = {session_present && rc == 0 ? 1 : 0, rc};
    return encode_with_props(out, cap, GW_MQTT_CONNACK << 4, h, 2, props, plen, NULL, 0);
}

size_t gw_mqtt_encode_ack5(uint8_t *out, size_t cap, uint8_t type, uint16_t packet_id, uint8_t rc,
                           const uint8_t *props, size_t plen)
{
    if (rc == 0 && plen == 0) {
        if (cap < 4)
            return 4;
        return gw_mqtt_encode_ack(out, type, packet_id);
    }
    if (type < GW_MQTT_PUBACK || type > GW_MQTT_PUBCOMP)
        return 0;
    uint8_t h[3] = {(uint8_t)(packet_id >> 8), (uint8_t)packet_id, rc};
    return encode_with_props(out, cap, (uint8_t)(type << 4 | (type == GW_MQTT_PUBREL ? 2 : 0)), h,
                             3, props, plen, NULL, 0);
}

size_t gw_mqtt_encode_disconnect5(uint8_t *out, size_t cap, uint8_t rc, const uint8_t *props,
                                  size_t plen)
{
    return encode_with_props(out, cap, GW_MQTT_DISCONNECT << 4, &rc, 1, props, plen, NULL, 0);
}

size_t gw_mqtt_suback_size_v(uint8_t type, size_t n, bool v5)
{
    if (n == 0 || n > GW_MQTT_MAX_REMAINING - 3 || (type != GW_MQTT_SUBACK && !v5))
        return 0;
    size_t rem = 2 + (v5 ? 1 : 0) + n;
    return 1 + vbi_len(rem) + rem;
}

size_t gw_mqtt_encode_suback_head_v(uint8_t out[8], uint8_t type, uint16_t packet_id, size_t n,
                                    bool v5)
{
    if (!gw_mqtt_suback_size_v(type, n, v5))
        return 0;
    size_t h = 1 + put_vbi(out + 1, 2 + (v5 ? 1 : 0) + n);
    out[0] = (uint8_t)(type << 4);
    wr16(out + h, packet_id);
    h += 2;
    if (v5)
        out[h++] = 0; /* no properties */
    return h;
}

size_t gw_mqtt_publish5_size(size_t topic_len, size_t payload_len, uint8_t qos, size_t plen)
{
    if (qos > 2 || topic_len > UINT16_MAX || payload_len > GW_MQTT_MAX_REMAINING ||
        plen > GW_MQTT_MAX_REMAINING)
        return 0;
    size_t rem = 2 + topic_len + (qos ? 2 : 0) + vbi_len(plen) + plen + payload_len;
    if (rem > GW_MQTT_MAX_REMAINING)
        return 0;
    return 1 + vbi_len(rem) + rem;
}

size_t gw_mqtt_encode_publish5(uint8_t *out, size_t cap, const char *topic, size_t topic_len,
                               const uint8_t *payload, size_t payload_len, uint8_t qos,
                               uint16_t packet_id, bool retain, const uint8_t *props, size_t plen)
{
    size_t size = gw_mqtt_publish5_size(topic_len, payload_len, qos, plen);
    if (size == 0 || (qos && packet_id == 0))
        return 0;
    if (cap < size)
        return size;
    size_t rem = 2 + topic_len + (qos ? 2 : 0) + vbi_len(plen) + plen + payload_len;
    uint8_t *p = out;
    *p++ = (uint8_t)(GW_MQTT_PUBLISH << 4 | qos << 1 | (retain ? 1 : 0));
    p += put_vbi(p, rem);
    p = put_bytes(p, topic, topic_len);
    if (qos) {
        wr16(p, packet_id);
        p += 2;
    }
    p += put_vbi(p, plen);
    if (plen)
        memcpy(p, props, plen);
    p += plen;
    if (payload_len)
        memcpy(p, payload, payload_len);
    return size;
}

size_t gw_mqtt_publish_size(size_t topic_len, size_t payload_len, uint8_t qos)
{
    if (qos > 2 || topic_len > UINT16_MAX || payload_len > GW_MQTT_MAX_REMAINING)
        return 0;
    size_t rem = 2 + topic_len + (qos ? 2 : 0) + payload_len;
    if (rem > GW_MQTT_MAX_REMAINING)
        return 0;
    return 1 + vbi_len(rem) + rem;
}

size_t gw_mqtt_encode_publish(uint8_t *out, size_t cap, const char *topic, size_t topic_len,
                              const uint8_t *payload, size_t payload_len, uint8_t qos,
                              uint16_t packet_id, bool retain)
{
    size_t size = gw_mqtt_publish_size(topic_len, payload_len, qos);
    if (size == 0 || (qos && packet_id == 0))
        return 0;
    if (cap < size)
        return size;
    size_t rem = 2 + topic_len + (qos ? 2 : 0) + payload_len;
    uint8_t *p = out;
    *p++ = (uint8_t)(GW_MQTT_PUBLISH << 4 | qos << 1 | (retain ? 1 : 0));
    p += put_vbi(p, rem);
    p = put_bytes(p, topic, topic_len);
    if (qos) {
        wr16(p, packet_id);
        p += 2;
    }
    if (payload_len)
        memcpy(p, payload, payload_len);
    return size;
}

size_t gw_mqtt_encode_connect(uint8_t *out, size_t cap, const char *client_id, const char *username,
                              const char *password, uint16_t keepalive, bool clean)
{
    size_t cl = client_id ? strlen(client_id) : 0;
    size_t ul = username ? strlen(username) : 0;
    size_t pl = password ? strlen(password) : 0;
    if (cl > UINT16_MAX || ul > UINT16_MAX || pl > UINT16_MAX || (password && !username))
        return 0;
    /* name "MQTT" (6), level, flags, keepalive (4), then the strings */
    size_t rem = 10 + 2 + cl + (username ? 2 + ul : 0) + (password ? 2 + pl : 0);
    size_t size = 1 + vbi_len(rem) + rem;
    if (cap < size)
        return size;
    uint8_t *p = out;
    *p++ = GW_MQTT_CONNECT << 4;
    p += put_vbi(p, rem);
    p = put_bytes(p, "MQTT", 4);
    *p++ = 4;
    *p++ = (uint8_t)((username ? 0x80 : 0) | (password ? 0x40 : 0) | (clean ? 0x02 : 0));
    wr16(p, keepalive);
    p += 2;
    p = put_bytes(p, client_id, cl);
    if (username)
        p = put_bytes(p, username, ul);
    if (password)
        put_bytes(p, password, pl);
    return size;
}

size_t gw_mqtt_encode_subscribe(uint8_t *out, size_t cap, uint16_t packet_id, const char *filter,
                                size_t filter_len, uint8_t qos)
{
    if (qos > 2 || packet_id == 0 || filter_len > UINT16_MAX)
        return 0;
    size_t rem = 2 + 2 + filter_len + 1, size = 1 + vbi_len(rem) + rem;
    if (cap < size)
        return size;
    uint8_t *p = out;
    *p++ = GW_MQTT_SUBSCRIBE << 4 | 0x2;
    p += put_vbi(p, rem);
    wr16(p, packet_id);
    p = put_bytes(p + 2, filter, filter_len);
    *p = qos;
    return size;
}

/* ---- MQTT 5 properties ----------------------------------------------------------------------- */

enum { PT_NONE, PT_BYTE, PT_U16, PT_U32, PT_VBI, PT_STR, PT_BIN, PT_PAIR };

#define CX(x) (1u << GW_MQTT_PC_##x)
#define CALL  0x7FFu
#define CACKS (CX(CONNACK) | CX(ACK) | CX(SUBACK) | CX(UNSUBACK) | CX(DISCONNECT) | CX(AUTH))
#define CMSG  (CX(PUBLISH) | CX(WILL))

/* Type and allowed packets of every property id (MQTT 5 section 2.2.2.2); type PT_NONE: unknown. */
static const struct {
    uint8_t type;
    uint16_t ctx;
} prop_def[0x2B] = {
    [GW_MQTT_P_PAYLOAD_FORMAT] = {PT_BYTE, CMSG},
    [GW_MQTT_P_MESSAGE_EXPIRY] = {PT_U32, CMSG},
    [GW_MQTT_P_CONTENT_TYPE] = {PT_STR, CMSG},
    [GW_MQTT_P_RESPONSE_TOPIC] = {PT_STR, CMSG},
    [GW_MQTT_P_CORRELATION_DATA] = {PT_BIN, CMSG},
    [GW_MQTT_P_SUBSCRIPTION_ID] = {PT_VBI, CX(PUBLISH) | CX(SUBSCRIBE)},
    [GW_MQTT_P_SESSION_EXPIRY] = {PT_U32, CX(CONNECT) | CX(CONNACK) | CX(DISCONNECT)},
    [GW_MQTT_P_ASSIGNED_CLIENT_ID] = {PT_STR, CX(CONNACK)},
    [GW_MQTT_P_SERVER_KEEP_ALIVE] = {PT_U16, CX(CONNACK)},
    [GW_MQTT_P_AUTH_METHOD] = {PT_STR, CX(CONNECT) | CX(CONNACK) | CX(AUTH)},
    [GW_MQTT_P_AUTH_DATA] = {PT_BIN, CX(CONNECT) | CX(CONNACK) | CX(AUTH)},
    [GW_MQTT_P_REQUEST_PROBLEM_INFO] = {PT_BYTE, CX(CONNECT)},
    [GW_MQTT_P_WILL_DELAY] = {PT_U32, CX(WILL)},
    [GW_MQTT_P_REQUEST_RESPONSE_INFO] = {PT_BYTE, CX(CONNECT)},
    [GW_MQTT_P_RESPONSE_INFO] = {PT_STR, CX(CONNACK)},
    [GW_MQTT_P_SERVER_REFERENCE] = {PT_STR, CX(CONNACK) | CX(DISCONNECT)},
    [GW_MQTT_P_REASON_STRING] = {PT_STR, CACKS},
    [GW_MQTT_P_RECEIVE_MAX] = {PT_U16, CX(CONNECT) | CX(CONNACK)},
    [GW_MQTT_P_TOPIC_ALIAS_MAX] = {PT_U16, CX(CONNECT) | CX(CONNACK)},
    [GW_MQTT_P_TOPIC_ALIAS] = {PT_U16, CX(PUBLISH)},
    [GW_MQTT_P_MAX_QOS] = {PT_BYTE, CX(CONNACK)},
    [GW_MQTT_P_RETAIN_AVAILABLE] = {PT_BYTE, CX(CONNACK)},
    [GW_MQTT_P_USER_PROPERTY] = {PT_PAIR, CALL},
    [GW_MQTT_P_MAX_PACKET_SIZE] = {PT_U32, CX(CONNECT) | CX(CONNACK)},
    [GW_MQTT_P_WILDCARD_SUB_AVAILABLE] = {PT_BYTE, CX(CONNACK)},
    [GW_MQTT_P_SUB_ID_AVAILABLE] = {PT_BYTE, CX(CONNACK)},
    [GW_MQTT_P_SHARED_SUB_AVAILABLE] = {PT_BYTE, CX(CONNACK)},
};

/* A variable byte integer of at most 4 bytes in its shortest form (MQTT-1.5.5-1: a final 0x00
 * after continuation bytes is not): its length, or 0 when truncated, too long or not minimal. */
static size_t get_vbi(const uint8_t *p, size_t avail, uint32_t *v)
{
    uint32_t x = 0;
    for (size_t i = 0; i < 4 && i < avail; i++) {
        x |= (uint32_t)(p[i] & 0x7F) << (7 * i);
        if (!(p[i] & 0x80)) {
            if (i > 0 && p[i] == 0)
                return 0;
            *v = x;
            return i + 1;
        }
    }
    return 0;
}

static bool pair_ok(const uint8_t *p, const uint8_t *end, size_t *n, bool *utf8_bad)
{
    const uint8_t *q = p;
    for (int k = 0; k < 2; k++) {
        if (end - q < 2 || (size_t)(end - q) - 2 < rd16(q))
            return false;
        if (scan(q + 2, rd16(q), false) != SCAN_OK) {
            *utf8_bad = true;
            return false;
        }
        q += 2 + rd16(q);
    }
    *n = (size_t)(q - p);
    return true;
}

int gw_mqtt_props_decode(const uint8_t *p, size_t avail, gw_mqtt_pctx ctx, gw_mqtt_props *out,
                         size_t *used, uint8_t *rc, const char **why)
{
    uint32_t plen;
    size_t h = get_vbi(p, avail, &plen);
    const char *w = R_PROP;
    uint8_t code = GW_MQTT_RC_MALFORMED;
    memset(out, 0, sizeof(*out));
    if (!h || avail - h < plen)
        goto fail;
    const uint8_t *q = p + h, *end = q + plen;
    while (q < end) {
        uint8_t id = *q++;
        if (id >= sizeof(prop_def) / sizeof(prop_def[0]) || prop_def[id].type == PT_NONE ||
            !(prop_def[id].ctx & (1u << ctx)))
            goto fail;
        if (id != GW_MQTT_P_USER_PROPERTY && GW_MQTT_HAS(out, id)) {
            code = GW_MQTT_RC_PROTOCOL_ERROR;
            goto fail;
        }
        out->have |= UINT64_C(1) << id;
        size_t left = (size_t)(end - q), n = 0;
        uint32_t v = 0;
        gw_mqtt_str str = {NULL, 0};
        switch (prop_def[id].type) {
        case PT_BYTE:
            if (left < 1)
                goto fail;
            v = q[0], n = 1;
            break;
        case PT_U16:
            if (left < 2)
                goto fail;
            v = rd16(q), n = 2;
            break;
        case PT_U32:
            if (left < 4)
                goto fail;
            v = (uint32_t)rd16(q) << 16 | rd16(q + 2), n = 4;
            break;
        case PT_VBI:
            if (!(n = get_vbi(q, left, &v)))
                goto fail;
            break;
        case PT_STR:
        case PT_BIN:
            if (left < 2 || left - 2 < rd16(q))
                goto fail;
            str.p = (const char *)q + 2, str.len = rd16(q), n = 2 + (size_t)str.len;
            if (prop_def[id].type == PT_STR) {
                int sc = scan(q + 2, str.len, id == GW_MQTT_P_RESPONSE_TOPIC);
                if (sc == SCAN_UTF8) {
                    w = R_UTF8;
                    goto fail;
                }
                if (sc == SCAN_WILD || (id == GW_MQTT_P_RESPONSE_TOPIC && str.len == 0)) {
                    code = GW_MQTT_RC_PROTOCOL_ERROR;
                    goto fail;
                }
            }
            break;
        case PT_PAIR: {
            bool bad = false;
            if (!pair_ok(q, end, &n, &bad)) {
                if (bad)
                    w = R_UTF8;
                goto fail;
            }
            out->n_user++;
            break;
        }
        }
        q += n;
        bool range = true;
        switch (id) {
        case GW_MQTT_P_PAYLOAD_FORMAT:
            range = v <= 1, out->payload_format = (uint8_t)v;
            break;
        case GW_MQTT_P_MESSAGE_EXPIRY:
            out->message_expiry = v;
            break;
        case GW_MQTT_P_CONTENT_TYPE:
            out->content_type = str;
            break;
        case GW_MQTT_P_RESPONSE_TOPIC:
            out->response_topic = str;
            break;
        case GW_MQTT_P_CORRELATION_DATA:
            out->correlation_data = str;
            break;
        case GW_MQTT_P_SUBSCRIPTION_ID:
            range = v != 0, out->subscription_id = v;
            break;
        case GW_MQTT_P_SESSION_EXPIRY:
            out->session_expiry = v;
            break;
        case GW_MQTT_P_ASSIGNED_CLIENT_ID:
            out->assigned_client_id = str;
            break;
        case GW_MQTT_P_SERVER_KEEP_ALIVE:
            out->server_keep_alive = (uint16_t)v;
            break;
        case GW_MQTT_P_AUTH_METHOD:
            out->auth_method = str;
            break;
        case GW_MQTT_P_AUTH_DATA:
            out->auth_data = str;
            break;
        case GW_MQTT_P_REQUEST_PROBLEM_INFO:
            range = v <= 1, out->request_problem_info = (uint8_t)v;
            break;
        case GW_MQTT_P_WILL_DELAY:
            out->will_delay = v;
            break;
        case GW_MQTT_P_REQUEST_RESPONSE_INFO:
            range = v <= 1, out->request_response_info = (uint8_t)v;
            break;
        case GW_MQTT_P_RESPONSE_INFO:
            out->response_info = str;
            break;
        case GW_MQTT_P_SERVER_REFERENCE:
            out->server_reference = str;
            break;
        case GW_MQTT_P_REASON_STRING:
            out->reason_string = str;
            break;
        case GW_MQTT_P_RECEIVE_MAX:
            range = v != 0, out->receive_max = (uint16_t)v;
            break;
        case GW_MQTT_P_TOPIC_ALIAS_MAX:
            out->topic_alias_max = (uint16_t)v;
            break;
        case GW_MQTT_P_TOPIC_ALIAS:
            out->topic_alias = (uint16_t)v;
            break;
        case GW_MQTT_P_MAX_QOS:
            range = v <= 1, out->max_qos = (uint8_t)v;
            break;
        case GW_MQTT_P_MAX_PACKET_SIZE:
            range = v != 0, out->max_packet_size = v;
            break;
        case GW_MQTT_P_RETAIN_AVAILABLE:
        case GW_MQTT_P_WILDCARD_SUB_AVAILABLE:
        case GW_MQTT_P_SUB_ID_AVAILABLE:
        case GW_MQTT_P_SHARED_SUB_AVAILABLE:
            range = v <= 1;
            break;
        default:
            break;
        }
        if (!range) {
            code = GW_MQTT_RC_PROTOCOL_ERROR;
            goto fail;
        }
    }
    *used = h + plen;
    return 0;
fail:
    if (rc)
        *rc = code;
    if (why)
        *why = w;
    return GW_EPROTO;
}

static bool pb_room(gw_mqtt_pbuf *pb, size_t n)
{
    if (GW_MQTT_PBUF - pb->n < n) {
        pb->over = true;
        return false;
    }
    return true;
}

void gw_mqtt_pb_u8(gw_mqtt_pbuf *pb, uint8_t id, uint8_t v)
{
    if (!pb_room(pb, 2))
        return;
    pb->b[pb->n++] = id;
    pb->b[pb->n++] = v;
}

void gw_mqtt_pb_u16(gw_mqtt_pbuf *pb, uint8_t id, uint16_t v)
{
    if (!pb_room(pb, 3))
        return;
    pb->b[pb->n++] = id;
    wr16(pb->b + pb->n, v);
    pb->n += 2;
}

void gw_mqtt_pb_u32(gw_mqtt_pbuf *pb, uint8_t id, uint32_t v)
{
    if (!pb_room(pb, 5))
        return;
    pb->b[pb->n++] = id;
    wr16(pb->b + pb->n, (uint16_t)(v >> 16));
    wr16(pb->b + pb->n + 2, (uint16_t)v);
    pb->n += 4;
}

void gw_mqtt_pb_str(gw_mqtt_pbuf *pb, uint8_t id, const void *p, size_t len)
{
    if (GW_MQTT_PBUF - pb->n < 3) {
        pb->over = true;
        return;
    }
    size_t room = GW_MQTT_PBUF - pb->n - 3;
    if (len > room) {
        const uint8_t *s = p;
        len = room;
        if (id != GW_MQTT_P_CORRELATION_DATA)
            while (len && (s[len] & 0xC0) == 0x80) /* cut before a continuation byte */
                len--;
        pb->over = true;
    }
    pb->b[pb->n++] = id;
    pb->n = (size_t)(put_bytes(pb->b + pb->n, p, len) - pb->b);
}

const char *gw_mqtt_type_name(uint8_t type)
{
    static const char *const names[16] = {
        "RESERVED", "CONNECT",  "CONNACK",    "PUBLISH",  "PUBACK",      "PUBREC",
        "PUBREL",   "PUBCOMP",  "SUBSCRIBE",  "SUBACK",   "UNSUBSCRIBE", "UNSUBACK",
        "PINGREQ",  "PINGRESP", "DISCONNECT", "RESERVED",
    };
    return type < 16 ? names[type] : "RESERVED";
}

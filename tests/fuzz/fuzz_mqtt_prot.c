/* fuzz_mqtt_prot.c: libFuzzer target for the MQTT 5 / 3.1.1 parser (each body goes through both
 * the 3.1.1 and the MQTT 5 decoders; property blocks are checked on their own in every context).
 * The input is read as a byte stream of packets (fixed header with max_packet 65536, then the
 * type's decoder on an exact-size copy of the body), and also as a bare CONNECT / PUBLISH /
 * SUBSCRIBE body, a UTF-8 string and a filter/topic pair. Decoded packets are re-encoded and must
 * give the same bytes; UTF-8 validation and topic matching are checked against slow reference
 * implementations. Any mismatch aborts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/util/error.h"
#include "protocols/mqtt/mqtt_prot.h"

#define MAX_PACKET 65536

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #c);                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

/* ---- reference implementations (slow, obvious) ----------------------------------------------- */

static bool ref_utf8(const uint8_t *p, size_t n)
{
    size_t i = 0;
    while (i < n) {
        uint32_t c = p[i], min;
        size_t k;
        if (c < 0x80) {
            if (c == 0)
                return false;
            i++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            k = 1, c &= 0x1F, min = 0x80;
        } else if ((c & 0xF0) == 0xE0) {
            k = 2, c &= 0x0F, min = 0x800;
        } else if ((c & 0xF8) == 0xF0) {
            k = 3, c &= 0x07, min = 0x10000;
        } else {
            return false;
        }
        if (n - i - 1 < k)
            return false;
        for (size_t j = 1; j <= k; j++) {
            if ((p[i + j] & 0xC0) != 0x80)
                return false;
            c = c << 6 | (p[i + j] & 0x3F);
        }
        if (c < min || c > 0x10FFFF || (c >= 0xD800 && c <= 0xDFFF))
            return false;
        i += k + 1;
    }
    return true;
}

static size_t level_end(const char *s, size_t n)
{
    const char *e = memchr(s, '/', n);
    return e ? (size_t)(e - s) : n;
}

/* For a valid filter and a topic name without wildcards. */
static bool ref_match(const char *f, size_t fl, const char *t, size_t tl)
{
    if (tl > 0 && t[0] == '$' && fl > 0 && (f[0] == '+' || f[0] == '#'))
        return false;
    for (;;) {
        size_t fe = level_end(f, fl), te = level_end(t, tl);
        if (fe == 1 && f[0] == '#')
            return true;
        if (!(fe == 1 && f[0] == '+') && !(fe == te && memcmp(f, t, fe) == 0))
            return false;
        bool flast = fe == fl, tlast = te == tl;
        if (flast || tlast)
            return flast && tlast ? true : tlast && fl - fe == 2 && f[fe + 1] == '#';
        f += fe + 1, fl -= fe + 1;
        t += te + 1, tl -= te + 1;
    }
}

static bool has_wildcard(const char *s, size_t n)
{
    return memchr(s, '+', n) || memchr(s, '#', n);
}

static void check_match(const char *f, size_t fl, const char *t, size_t tl)
{
    bool m = gw_mqtt_topic_match(f, fl, t, tl);
    if (gw_mqtt_filter_valid(f, fl) && !has_wildcard(t, tl))
        REQUIRE(m == ref_match(f, fl, t, tl));
    if (!has_wildcard(f, fl) && !has_wildcard(t, tl))
        REQUIRE(m == (fl == tl && memcmp(f, t, fl) == 0));
}

/* Last valid PUBLISH topic of the stream, matched against later SUBSCRIBE filters. */
static char last_topic[65536];
static size_t last_topic_len;

/* ---- per-type checks ------------------------------------------------------------------------- */

static bool in_body(const void *p, size_t n, const uint8_t *body, uint32_t len)
{
    const uint8_t *q = p;
    return n == 0 || (q >= body && q + n <= body + len);
}

static char *cstr(const void *p, size_t n)
{
    char *s = malloc(n + 1);
    if (n)
        memcpy(s, p, n);
    s[n] = '\0';
    return s;
}

/* A decoded 3.1.1 CONNECT without will or binary password re-encodes to the same body. */
static void connect_roundtrip(const gw_mqtt_connect *c, const uint8_t *body, uint32_t len)
{
    if (c->protocol_level != 4 || c->has_will ||
        (c->has_password && memchr(c->password, 0, c->password_len)))
        return;
    char *id = cstr(c->client_id.p, c->client_id.len);
    char *user = c->has_username ? cstr(c->username.p, c->username.len) : NULL;
    char *pw = c->has_password ? cstr(c->password, c->password_len) : NULL;
    uint8_t *out = malloc(len + 5);
    size_t n = gw_mqtt_encode_connect(out, len + 5, id, user, pw, c->keepalive, c->clean_session);
    gw_mqtt_fixed fh;
    REQUIRE(n > 0 && n <= len + 5);
    REQUIRE(gw_mqtt_frame(out, n, UINT32_MAX, &fh) == 0 && fh.type == GW_MQTT_CONNECT);
    REQUIRE(fh.remaining == len && memcmp(out + fh.header_len, body, len) == 0);
    free(out);
    free(id);
    free(user);
    free(pw);
}

static void check_connect(const uint8_t *body, uint32_t len)
{
    gw_mqtt_connect c;
    uint8_t crc = 0x77;
    int rc = gw_mqtt_decode_connect(body, len, &c, &crc);
    REQUIRE(rc == 0 || rc == GW_EPROTO);
    REQUIRE(rc == 0 ? crc == 0 : (crc == 1 || crc == 2 || crc == 0xFF));
    if (rc != 0 && crc != 2)
        return;
    REQUIRE(c.protocol_level == 3 || c.protocol_level == 4 || c.protocol_level == 5);
    REQUIRE(in_body(c.client_id.p, c.client_id.len, body, len));
    REQUIRE(gw_mqtt_utf8_valid(c.client_id.p, c.client_id.len));
    REQUIRE(c.will_qos <= 2 && (c.has_will || (!c.will_qos && !c.will_retain)));
    if (c.has_will) {
        REQUIRE(in_body(c.will_topic.p, c.will_topic.len, body, len) && c.will_topic.len > 0);
        REQUIRE(gw_mqtt_utf8_valid(c.will_topic.p, c.will_topic.len));
        REQUIRE(!has_wildcard(c.will_topic.p, c.will_topic.len));
        REQUIRE(in_body(c.will_payload, c.will_payload_len, body, len));
    }
    if (c.has_username)
        REQUIRE(in_body(c.username.p, c.username.len, body, len) &&
                gw_mqtt_utf8_valid(c.username.p, c.username.len));
    if (c.has_password)
        REQUIRE(in_body(c.password, c.password_len, body, len));
    if (rc == 0)
        connect_roundtrip(&c, body, len);
}

static void check_publish(const uint8_t *body, uint32_t len, uint8_t flags)
{
    gw_mqtt_publish p;
    const char *why = NULL;
    int rc = gw_mqtt_decode_publish(body, len, flags, &p, &why);
    if (rc != 0) {
        REQUIRE(rc == GW_EPROTO && why);
        REQUIRE(!strcmp(why, "invalid_utf8") || !strcmp(why, "wildcard_topic") ||
                !strcmp(why, "malformed_packet"));
        return;
    }
    REQUIRE(p.topic.len > 0 && in_body(p.topic.p, p.topic.len, body, len));
    REQUIRE(gw_mqtt_utf8_valid(p.topic.p, p.topic.len) && !has_wildcard(p.topic.p, p.topic.len));
    REQUIRE(ref_utf8((const uint8_t *)p.topic.p, p.topic.len));
    REQUIRE(p.qos <= 2 && (p.qos == 0) == (p.packet_id == 0) && (p.qos || !p.dup));
    REQUIRE(p.payload + p.payload_len == body + len);
    memcpy(last_topic, p.topic.p, p.topic.len);
    last_topic_len = p.topic.len;

    size_t size = gw_mqtt_publish_size(p.topic.len, p.payload_len, p.qos);
    uint8_t *out = malloc(size);
    REQUIRE(gw_mqtt_encode_publish(out, size, p.topic.p, p.topic.len, p.payload, p.payload_len,
                                   p.qos, p.packet_id, p.retain) == size);
    gw_mqtt_fixed fh;
    REQUIRE(gw_mqtt_frame(out, size, UINT32_MAX, &fh) == 0);
    REQUIRE(fh.type == GW_MQTT_PUBLISH && fh.flags == (flags & 0x07) && fh.remaining == len);
    REQUIRE(memcmp(out + fh.header_len, body, len) == 0);
    free(out);
}

static void check_subscribe(const uint8_t *body, uint32_t len, bool unsub)
{
    uint16_t id = 0;
    gw_mqtt_sub_iter it;
    const char *why = NULL;
    int rc = unsub ? gw_mqtt_decode_unsubscribe(body, len, &id, &it, &why)
                   : gw_mqtt_decode_subscribe(body, len, &id, &it, &why);
    if (rc != 0) {
        REQUIRE(rc == GW_EPROTO && why);
        REQUIRE(!strcmp(why, "invalid_utf8") || !strcmp(why, "malformed_packet"));
        return;
    }
    REQUIRE(id != 0);
    gw_mqtt_str f;
    uint8_t q;
    size_t count = 0, used = 2, expect = gw_mqtt_sub_count(&it);
    while (gw_mqtt_sub_next(&it, &f, &q)) {
        count++;
        used += 2 + f.len + (unsub ? 0 : 1);
        REQUIRE(in_body(f.p, f.len, body, len) && f.len > 0);
        REQUIRE(gw_mqtt_utf8_valid(f.p, f.len) && gw_mqtt_filter_valid(f.p, f.len));
        REQUIRE(q <= 2 && (!unsub || q == 0));
        if (last_topic_len)
            check_match(f.p, f.len, last_topic, last_topic_len);
    }
    REQUIRE(count >= 1 && used == len && count == expect && count <= (len - 2) / (unsub ? 3 : 4));
    REQUIRE(gw_mqtt_sub_next(&it, &f, &q) == 0);
    if (count == 1 && !unsub) { /* one filter: re-encodes to the same body */
        uint8_t *out = malloc(len + 5);
        size_t n = gw_mqtt_encode_subscribe(out, len + 5, id, f.p, f.len, q);
        REQUIRE(n > len && n <= len + 5 && memcmp(out + n - len, body, len) == 0);
        free(out);
    }
}

static void check_ack(const uint8_t *body, uint32_t len, uint8_t type)
{
    uint16_t id;
    if (gw_mqtt_decode_ack(body, len, &id) != 0)
        return;
    uint8_t out[4];
    gw_mqtt_fixed fh;
    REQUIRE(gw_mqtt_encode_ack(out, type, id) == 4);
    REQUIRE(gw_mqtt_fixed_header(out, 4, MAX_PACKET, &fh) == 0 && fh.type == type);
    REQUIRE(memcmp(out + 2, body, 2) == 0);
}

static void check_body(const gw_mqtt_fixed *fh, const uint8_t *body, uint32_t len)
{
    bool sp;
    uint8_t rc8;
    uint16_t id;
    const uint8_t *rcs;
    size_t n;
    switch (fh->type) {
    case GW_MQTT_CONNECT:
        check_connect(body, len);
        break;
    case GW_MQTT_CONNACK:
        if (gw_mqtt_decode_connack(body, len, &sp, &rc8) == 0) {
            uint8_t out[4];
            gw_mqtt_encode_connack(out, sp, rc8);
            REQUIRE(memcmp(out + 2, body, 2) == 0);
        }
        break;
    case GW_MQTT_PUBLISH:
        check_publish(body, len, fh->flags);
        break;
    case GW_MQTT_PUBACK:
    case GW_MQTT_PUBREC:
    case GW_MQTT_PUBREL:
    case GW_MQTT_PUBCOMP:
    case GW_MQTT_UNSUBACK:
        check_ack(body, len, fh->type);
        break;
    case GW_MQTT_SUBSCRIBE:
    case GW_MQTT_UNSUBSCRIBE:
        check_subscribe(body, len, fh->type == GW_MQTT_UNSUBSCRIBE);
        break;
    case GW_MQTT_SUBACK:
        if (gw_mqtt_decode_suback(body, len, &id, &rcs, &n) == 0) {
            uint8_t *out = malloc(n + 7);
            size_t sz = gw_mqtt_encode_suback(out, n + 7, id, rcs, n);
            REQUIRE(sz > 0 && sz <= n + 7 && memcmp(out + sz - len, body, len) == 0);
            uint8_t head[7];
            size_t h = gw_mqtt_encode_suback_head(head, id, n);
            REQUIRE(h + n == sz && gw_mqtt_suback_size(n) == sz && memcmp(head, out, h) == 0);
            free(out);
        }
        break;
    default: {
        uint8_t out[2];
        REQUIRE(gw_mqtt_decode_empty(body, len) == (len ? GW_EPROTO : 0));
        n = fh->type == GW_MQTT_PINGREQ    ? gw_mqtt_encode_pingreq(out)
            : fh->type == GW_MQTT_PINGRESP ? gw_mqtt_encode_pingresp(out)
                                           : gw_mqtt_encode_disconnect(out);
        REQUIRE(n == 2 && out[0] >> 4 == fh->type && out[1] == 0);
        break;
    }
    }
}

/* ---- MQTT 5 ---------------------------------------------------------------------------------- */

static void check_str_in(gw_mqtt_str s, const uint8_t *body, uint32_t len, bool utf8)
{
    if (!s.p)
        return;
    REQUIRE(in_body(s.p, s.len, body, len));
    if (utf8)
        REQUIRE(gw_mqtt_utf8_valid(s.p, s.len));
}

/* A property block in every context: on success it lies within the body, its strings are MQTT
 * UTF-8, and the same block cut one byte short is refused. */
static void check_props(const uint8_t *body, uint32_t len)
{
    for (int ctx = GW_MQTT_PC_CONNECT; ctx <= GW_MQTT_PC_AUTH; ctx++) {
        gw_mqtt_props pr;
        size_t used = 0;
        uint8_t rc = 0;
        const char *why = NULL;
        int r = gw_mqtt_props_decode(body, len, (gw_mqtt_pctx)ctx, &pr, &used, &rc, &why);
        if (r != 0) {
            REQUIRE(r == GW_EPROTO && (rc == 0x81 || rc == 0x82) && why);
            REQUIRE(!strcmp(why, "bad_property") || !strcmp(why, "invalid_utf8"));
            continue;
        }
        REQUIRE(used >= 1 && used <= len);
        check_str_in(pr.content_type, body, len, true);
        check_str_in(pr.response_topic, body, len, true);
        check_str_in(pr.reason_string, body, len, true);
        check_str_in(pr.auth_method, body, len, true);
        check_str_in(pr.correlation_data, body, len, false);
        check_str_in(pr.auth_data, body, len, false);
        if (GW_MQTT_HAS(&pr, GW_MQTT_P_RECEIVE_MAX))
            REQUIRE(pr.receive_max > 0);
        if (GW_MQTT_HAS(&pr, GW_MQTT_P_MAX_PACKET_SIZE))
            REQUIRE(pr.max_packet_size > 0);
        REQUIRE(pr.payload_format <= 1);
        uint8_t *cut = malloc(used - 1 ? used - 1 : 1);
        memcpy(cut, body, used - 1);
        REQUIRE(gw_mqtt_props_decode(cut, used - 1, (gw_mqtt_pctx)ctx, &pr, &used, NULL, NULL) ==
                GW_EPROTO);
        free(cut);
    }
}

/* The MQTT 5 decoders on a body: a PUBLISH that decodes re-encodes to the same bytes. */
static void check_v5(const gw_mqtt_fixed *fh, const uint8_t *body, uint32_t len)
{
    gw_mqtt_props pr;
    const char *why = NULL;
    uint8_t rc = 0;
    uint16_t id;
    gw_mqtt_sub_iter it;
    switch (fh->type) {
    case GW_MQTT_PUBLISH: {
        gw_mqtt_publish p;
        if (gw_mqtt_decode_publish5(body, len, fh->flags, &p, &pr, &why, &rc) != 0) {
            REQUIRE(why && (rc == 0x81 || rc == 0x82));
            break;
        }
        REQUIRE(p.payload + p.payload_len == body + len);
        REQUIRE(!has_wildcard(p.topic.p, p.topic.len));
        const uint8_t *pstart = body + 2 + p.topic.len + (p.qos ? 2 : 0);
        size_t plen_all = (size_t)(p.payload - pstart);
        /* the property length prefix of the block, re-read */
        uint32_t plen = 0, mult = 1;
        size_t i = 0;
        do {
            plen += (uint32_t)(pstart[i] & 0x7F) * mult;
            mult <<= 7;
        } while (pstart[i++] & 0x80);
        if (i + plen != plen_all) /* a non-minimal length prefix: not re-encodable */
            break;
        uint8_t *out = malloc(len + 8);
        size_t n =
            gw_mqtt_encode_publish5(out, len + 8, p.topic.p, p.topic.len, p.payload, p.payload_len,
                                    p.qos, p.packet_id, p.retain, pstart + i, plen);
        gw_mqtt_fixed f2;
        if (!p.dup) {
            REQUIRE(n > 0 && n <= len + 8);
            REQUIRE(gw_mqtt_frame(out, n, UINT32_MAX, &f2) == 0 && f2.remaining == len);
            REQUIRE(memcmp(out + f2.header_len, body, len) == 0);
        }
        free(out);
        break;
    }
    case GW_MQTT_SUBSCRIBE:
    case GW_MQTT_UNSUBSCRIBE: {
        bool unsub = fh->type == GW_MQTT_UNSUBSCRIBE;
        int r = unsub ? gw_mqtt_decode_unsubscribe5(body, len, &id, &it, &pr, &why, &rc)
                      : gw_mqtt_decode_subscribe5(body, len, &id, &it, &pr, &why, &rc);
        if (r == 0) {
            gw_mqtt_str f;
            uint8_t q;
            size_t n = 0;
            REQUIRE(id != 0);
            while (gw_mqtt_sub_next(&it, &f, &q)) {
                REQUIRE(in_body(f.p, f.len, body, len) && gw_mqtt_filter_valid(f.p, f.len));
                REQUIRE(q <= 2);
                n++;
            }
            REQUIRE(n >= 1);
        }
        break;
    }
    case GW_MQTT_PUBACK:
    case GW_MQTT_PUBREC:
    case GW_MQTT_PUBREL:
    case GW_MQTT_PUBCOMP:
        if (gw_mqtt_decode_ack5(body, len, &id, &rc, &pr) == 0) {
            uint8_t out[16];
            REQUIRE(id != 0);
            if (len <= 4 && (len < 4 || body[3] == 0)) { /* no properties: re-encodable */
                size_t n = gw_mqtt_encode_ack5(out, sizeof(out), fh->type, id, rc, NULL, 0);
                REQUIRE(n >= 4 && n <= 6);
            }
        }
        break;
    case GW_MQTT_DISCONNECT:
        (void)gw_mqtt_decode_disconnect5(body, len, &rc, &pr, &why);
        break;
    default:
        break;
    }
}

/* ---- the stream ------------------------------------------------------------------------------ */

static void stream(const uint8_t *data, size_t size)
{
    size_t off = 0;
    last_topic_len = 0;
    while (off < size) {
        gw_mqtt_fixed fh, fr;
        size_t avail = size - off;
        int rc = gw_mqtt_fixed_header(data + off, avail, MAX_PACKET, &fh);
        int rf = gw_mqtt_frame(data + off, avail, MAX_PACKET, &fr);
        REQUIRE(rc == 0 || rc == GW_EINCOMPLETE || rc == GW_EPROTO || rc == GW_ETOOBIG);
        REQUIRE(rc == 0 ? rf == 0 || rf == GW_EINCOMPLETE : rf == rc);
        gw_mqtt_fixed fw;
        const char *why = NULL;
        REQUIRE(gw_mqtt_fixed_header_why(data + off, avail, MAX_PACKET, &fw, &why) == rc);
        REQUIRE(fw.type == fh.type && fw.flags == fh.flags && fw.remaining == fh.remaining &&
                fw.header_len == fh.header_len);
        REQUIRE((why != NULL) == (rc == GW_EPROTO || rc == GW_ETOOBIG));
        REQUIRE(fh.type == data[off] >> 4 && fh.flags == (data[off] & 0x0F));
        if (rc == GW_EINCOMPLETE)
            REQUIRE(avail < 5);
        if (rc != 0)
            break;
        REQUIRE(fh.type >= 1 && fh.type <= 14 && fh.header_len >= 2 && fh.header_len <= 5);
        REQUIRE(fh.remaining <= GW_MQTT_MAX_REMAINING);
        REQUIRE((size_t)fh.header_len + fh.remaining <= MAX_PACKET);
        REQUIRE(gw_mqtt_type_name(fh.type) != NULL);
        if (avail - fh.header_len < fh.remaining) {
            REQUIRE(rf == GW_EINCOMPLETE);
            break;
        }
        REQUIRE(rf == 0 && fr.remaining == fh.remaining && fr.header_len == fh.header_len);
        /* Exact-size copy: ASan flags any read past the body. */
        uint8_t *body = malloc(fh.remaining ? fh.remaining : 1);
        memcpy(body, data + off + fh.header_len, fh.remaining);
        check_body(&fh, body, fh.remaining);
        check_v5(&fh, body, fh.remaining);
        free(body);
        off += fh.header_len + fh.remaining;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 20)
        return 0;
    stream(data, size);

    /* The whole input as a body (data is an exact-size buffer under libFuzzer). */
    check_connect(data, (uint32_t)size);
    last_topic_len = 0;
    if (size > 0) {
        check_publish(data + 1, (uint32_t)size - 1, data[0] & 0x0F);
        check_subscribe(data + 1, (uint32_t)size - 1, data[0] & 1);
    }

    REQUIRE(gw_mqtt_utf8_valid((const char *)data, size) == ref_utf8(data, size));
    check_props(data, (uint32_t)size);

    /* A filter/topic pair: byte 0 says where the filter ends. */
    if (size > 1) {
        size_t fl = data[0] % size;
        if (fl > size - 1)
            fl = size - 1;
        const char *f = (const char *)data + 1, *t = f + fl;
        check_match(f, fl, t, size - 1 - fl);
        check_match(t, size - 1 - fl, f, fl);
        if (gw_mqtt_filter_valid(f, fl)) {
            const char *h = memchr(f, '#', fl);
            REQUIRE(!h || h == f + fl - 1);
        }
    }
    return 0;
}

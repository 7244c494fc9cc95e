/* binary_frame.c: stream framing (fixed size, length field, delimiters) on the raw bytes, and the
 * way between a frame on the wire and its body (delimiters stripped, JT/T 808-style escapes
 * undone or applied). Bounded by max_frame, allocation-free, never reads past the given length. */
#include "internal.h"

#include <string.h>

static size_t min_sz(size_t a, size_t b)
{
    return a < b ? a : b;
}

static const uint8_t *find(const uint8_t *h, size_t hn, const uint8_t *n, size_t nn)
{
    return hn >= nn ? memmem(h, hn, n, nn) : NULL;
}

/* Delimited frames. With a start delimiter, noise before it is skipped (but a run of noise as
 * long as max_frame is a stream that is not speaking this protocol); "7E 7E" is the end of one
 * frame and the start of the next when start and end are the same bytes. */
static int frame_delimited(const bin_layout *l, const uint8_t *buf, size_t len, size_t *skip)
{
    size_t s = 0, max = l->max_frame;
    bool same =
        l->start_len && l->start_len == l->end_len && memcmp(l->start, l->end, l->start_len) == 0;
    for (;;) {
        if (l->start_len) {
            const uint8_t *st = find(buf + s, len - s, l->start, l->start_len);
            if (!st) {
                size_t keep = min_sz(l->start_len - 1u, len - s); /* a start cut in two */
                *skip = len - keep;
                return *skip >= max ? GW_EPROTO : 0;
            }
            s = (size_t)(st - buf);
            if (s >= max) {
                *skip = s;
                return GW_EPROTO;
            }
        } else {
            while (len - s >= l->end_len && memcmp(buf + s, l->end, l->end_len) == 0)
                s += l->end_len; /* empty frames */
        }
        size_t b = s + l->start_len, window = min_sz(len, s + max);
        const uint8_t *en = b <= window ? find(buf + b, window - b, l->end, l->end_len) : NULL;
        *skip = s;
        if (!en)
            return len - s >= max ? GW_ETOOBIG : 0;
        size_t e = (size_t)(en - buf);
        if (e == b && l->start_len) { /* nothing between start and end */
            s = same ? e : e + l->end_len;
            continue;
        }
        return (int)(e + l->end_len - s);
    }
}

int gw__binary_frame(const bin_layout *l, const uint8_t *buf, size_t len, size_t *skip)
{
    *skip = 0;
    switch (l->framing) {
    case BIN_FR_FIXED:
        return len >= l->fixed_len ? (int)l->fixed_len : 0;
    case BIN_FR_LENGTH: {
        if (len < (size_t)l->len_off + l->len_width)
            return 0;
        uint64_t v = gw__binary_get_uint(buf + l->len_off, l->len_width, l->len_little);
        int64_t total = (int64_t)v + l->len_adjust +
                        (l->len_covers_frame ? 0 : (int64_t)(l->len_off + l->len_width));
        if (total < (int64_t)l->min_total || total < 1)
            return GW_EPROTO;
        if (total > (int64_t)l->max_frame)
            return GW_ETOOBIG;
        return len >= (size_t)total ? (int)total : 0;
    }
    case BIN_FR_DELIMITER:
        return frame_delimited(l, buf, len, skip);
    case BIN_FR_DATAGRAM:
        if (len > l->max_frame)
            return GW_ETOOBIG;
        return (int)len;
    }
    return GW_EPROTO;
}

static int unescape(const bin_layout *l, const uint8_t *in, size_t n, uint8_t *out, size_t *out_n,
                    gw_reject *rej)
{
    size_t o = 0;
    for (size_t i = 0; i < n; i++) {
        if (in[i] != l->esc_byte) {
            out[o++] = in[i];
            continue;
        }
        if (i + 1 == n || l->esc_from[in[i + 1]] < 0)
            return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                                 "escape byte 0x%02X at body byte %zu is followed by %s",
                                 l->esc_byte, i,
                                 i + 1 == n ? "the end of the frame" : "an unmapped byte");
        out[o++] = (uint8_t)l->esc_from[in[++i]];
    }
    *out_n = o;
    return 0;
}

int gw__binary_body(const bin_layout *l, const uint8_t *buf, size_t len, uint8_t *scratch,
                    const uint8_t **body, size_t *body_len, gw_reject *rej)
{
    *body = buf;
    *body_len = len;
    if (len > l->max_frame)
        return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "frame of %zu bytes exceeds max_frame %u",
                             len, l->max_frame);
    switch (l->framing) {
    case BIN_FR_FIXED:
        if (len != l->fixed_len)
            return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                                 "frame of %zu bytes, the layout's frames have %u", len,
                                 l->fixed_len);
        return 0;
    case BIN_FR_LENGTH: {
        if (len < (size_t)l->len_off + l->len_width)
            return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                                 "frame of %zu bytes ends before its length field", len);
        uint64_t v = gw__binary_get_uint(buf + l->len_off, l->len_width, l->len_little);
        int64_t total = (int64_t)v + l->len_adjust +
                        (l->len_covers_frame ? 0 : (int64_t)(l->len_off + l->len_width));
        if (total != (int64_t)len)
            return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                                 "length field says %lld bytes, the frame has %zu",
                                 (long long)total, len);
        return 0;
    }
    case BIN_FR_DATAGRAM:
        return 0;
    case BIN_FR_DELIMITER:
        break;
    }
    if (len < (size_t)l->start_len + l->end_len || memcmp(buf, l->start, l->start_len) != 0 ||
        memcmp(buf + len - l->end_len, l->end, l->end_len) != 0)
        return gw_reject_set(
            rej, GW_R_MALFORMED_PAYLOAD, "frame lacks its %s delimiter",
            len >= l->start_len && memcmp(buf, l->start, l->start_len) == 0 ? "end" : "start");
    const uint8_t *in = buf + l->start_len;
    size_t n = len - l->start_len - l->end_len;
    *body = in;
    *body_len = n;
    if (l->has_escape && memchr(in, l->esc_byte, n)) {
        *body = scratch;
        return unescape(l, in, n, scratch, body_len, rej);
    }
    return 0;
}

int gw__binary_wrap(const bin_layout *l, const uint8_t *body, size_t body_len, uint8_t *out,
                    size_t cap, size_t *n)
{
    size_t o = 0;
    *n = 0;
    if (l->framing != BIN_FR_DELIMITER) {
        if (body_len > cap)
            return GW_ETOOBIG;
        memmove(out, body, body_len);
        *n = body_len;
        return 0;
    }
    if (cap < (size_t)l->start_len + l->end_len)
        return GW_ETOOBIG;
    memcpy(out, l->start, l->start_len);
    o = l->start_len;
    for (size_t i = 0; i < body_len; i++) {
        bool esc = l->has_escape && l->esc_need[body[i]];
        if (o + (esc ? 2u : 1u) + l->end_len > cap)
            return GW_ETOOBIG;
        if (esc) {
            out[o++] = l->esc_byte;
            out[o++] = l->esc_to[body[i]];
        } else {
            out[o++] = body[i];
        }
    }
    memcpy(out + o, l->end, l->end_len);
    *n = o + l->end_len;
    return 0;
}

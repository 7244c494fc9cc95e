/* pb_scan.c: a bounded, allocation-free walk over protobuf wire bytes against the schema's
 * descriptors, so every malformed message is refused with a precise reason before protobuf-c
 * (which only says "no") unpacks it, and nesting and element counts are bounded. */
#include "internal.h"

#include <string.h>

typedef struct scan {
    size_t elements;
    gw_reject *rej;
} scan;

/* Reads a varint at b[*pos] of at most max bytes (10: 64 bits; 5: tags and lengths, which
 * protobuf-c reads as 32 bits). 0, or -1 when truncated, -2 when it does not fit. */
static int varint(const uint8_t *b, size_t len, size_t *pos, uint64_t *v, unsigned max)
{
    uint64_t r = 0;
    for (unsigned i = 0; i < max; i++) {
        if (*pos >= len)
            return -1;
        uint8_t c = b[(*pos)++];
        if ((i == 9 && c > 1) || (i == 4 && max == 5 && (c & 0x7F) > 0x0F))
            return -2;
        r |= (uint64_t)(c & 0x7F) << (7 * i);
        if (!(c & 0x80)) {
            *v = r;
            return 0;
        }
    }
    return -2;
}

static unsigned wire_type_of(ProtobufCType t)
{
    switch (t) {
    case PROTOBUF_C_TYPE_DOUBLE:
    case PROTOBUF_C_TYPE_FIXED64:
    case PROTOBUF_C_TYPE_SFIXED64:
        return 1;
    case PROTOBUF_C_TYPE_FLOAT:
    case PROTOBUF_C_TYPE_FIXED32:
    case PROTOBUF_C_TYPE_SFIXED32:
        return 5;
    case PROTOBUF_C_TYPE_STRING:
    case PROTOBUF_C_TYPE_BYTES:
    case PROTOBUF_C_TYPE_MESSAGE:
        return 2;
    default:
        return 0;
    }
}

static bool has_oneof(const ProtobufCMessageDescriptor *d)
{
    return d == &iotgw__value__descriptor || d == &iotgw__device_message__descriptor ||
           d == &iotgw__device_command__descriptor;
}

static int walk(const ProtobufCMessageDescriptor *d, const uint8_t *b, size_t len, unsigned depth,
                scan *s);

/* One field's payload (wire type wt) at b[*pos]. */
static int field(const ProtobufCMessageDescriptor *d, const ProtobufCFieldDescriptor *f,
                 unsigned wt, const uint8_t *b, size_t len, size_t *pos, unsigned depth, scan *s)
{
    uint64_t v = 0;
    int rc;
    switch (wt) {
    case 0:
        if ((rc = varint(b, len, pos, &v, 10)) != 0)
            return gw_reject_set(s->rej, GW_R_MALFORMED_PAYLOAD, "%s: %s.%s: varint %s",
                                 rc == -1 ? "truncated" : "malformed", d->name, f->name,
                                 rc == -1 ? "cut short" : "over 64 bits");
        return 0;
    case 1:
    case 5: {
        size_t w = wt == 1 ? 8 : 4;
        if (len - *pos < w)
            return gw_reject_set(s->rej, GW_R_MALFORMED_PAYLOAD,
                                 "truncated: %s.%s: %zu-byte value, %zu bytes left", d->name,
                                 f->name, w, len - *pos);
        *pos += w;
        return 0;
    }
    default:
        break;
    }
    if ((rc = varint(b, len, pos, &v, 5)) != 0)
        return gw_reject_set(s->rej, GW_R_MALFORMED_PAYLOAD, "%s: %s.%s: length varint %s",
                             rc == -1 ? "truncated" : "malformed", d->name, f->name,
                             rc == -1 ? "cut short" : "over 5 bytes / 32 bits");
    if (v > len - *pos)
        return gw_reject_set(s->rej, GW_R_MALFORMED_PAYLOAD,
                             "truncated: %s.%s: length %llu past the end (%zu bytes left)", d->name,
                             f->name, (unsigned long long)v, len - *pos);
    const uint8_t *sub = b + *pos;
    *pos += (size_t)v;
    if (f->type == PROTOBUF_C_TYPE_STRING && memchr(sub, 0, (size_t)v))
        return gw_reject_set(s->rej, GW_R_MALFORMED_PAYLOAD, "%s.%s: string contains a NUL byte",
                             d->name, f->name);
    if (f->type != PROTOBUF_C_TYPE_MESSAGE)
        return 0;
    const ProtobufCMessageDescriptor *sd = f->descriptor;
    unsigned sub_depth = depth + (sd == &iotgw__value__descriptor);
    if (sub_depth > GW_PB_MAX_DEPTH)
        return gw_reject_set(s->rej, GW_R_MALFORMED_PAYLOAD,
                             "nesting too deep: values nested over %d levels", GW_PB_MAX_DEPTH);
    return walk(sd, sub, (size_t)v, sub_depth, s);
}

static int walk(const ProtobufCMessageDescriptor *d, const uint8_t *b, size_t len, unsigned depth,
                scan *s)
{
    size_t pos = 0;
    uint64_t seen = 0; /* singular fields met so far, by number (the schema's are all < 64) */
    bool oneof_seen = false;
    while (pos < len) {
        uint64_t tag;
        int rc = varint(b, len, &pos, &tag, 5);
        if (rc != 0)
            return gw_reject_set(s->rej, GW_R_MALFORMED_PAYLOAD, "%s: %s: tag %s",
                                 rc == -1 ? "truncated" : "malformed", d->name,
                                 rc == -1 ? "cut short" : "over 5 bytes / 32 bits");
        uint64_t num = tag >> 3;
        unsigned wt = (unsigned)(tag & 7);
        if (num == 0 || num > 536870911u)
            return gw_reject_set(s->rej, GW_R_MALFORMED_PAYLOAD, "%s: field number %llu is invalid",
                                 d->name, (unsigned long long)num);
        if (wt == 3 || wt == 4 || wt > 5)
            return gw_reject_set(s->rej, GW_R_MALFORMED_PAYLOAD,
                                 "wrong wire type: %s field %llu: wire type %u (%s)", d->name,
                                 (unsigned long long)num, wt, wt < 5 ? "groups" : "invalid");
        const ProtobufCFieldDescriptor *f =
            protobuf_c_message_descriptor_get_field(d, (unsigned)num);
        if (!f)
            return gw_reject_set(s->rej, GW_R_MALFORMED_PAYLOAD, "%s %llu in %s",
                                 has_oneof(d) && num >= (d == &iotgw__value__descriptor ? 1 : 5)
                                     ? "unknown oneof member: field"
                                     : "unknown field",
                                 (unsigned long long)num, d->name);
        if (wt != wire_type_of(f->type))
            return gw_reject_set(s->rej, GW_R_MALFORMED_PAYLOAD,
                                 "wrong wire type: %s.%s: wire type %u, expected %u", d->name,
                                 f->name, wt, wire_type_of(f->type));
        /* Like JSON's duplicate keys, a singular field or a second oneof member is refused
         * (protobuf's merge rules would make the last win, or fail in protobuf-c 1.4 for two
         * empty oneof messages). */
        if (f->label != PROTOBUF_C_LABEL_REPEATED) {
            if (seen & (UINT64_C(1) << (num & 63)))
                return gw_reject_set(s->rej, GW_R_MALFORMED_PAYLOAD,
                                     "duplicate field: %s.%s appears twice", d->name, f->name);
            seen |= UINT64_C(1) << (num & 63);
        }
        if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
            if (oneof_seen)
                return gw_reject_set(s->rej, GW_R_MALFORMED_PAYLOAD,
                                     "duplicate field: %s.%s is a second member of its oneof",
                                     d->name, f->name);
            oneof_seen = true;
        }
        if (++s->elements > GW_PB_MAX_ELEMENTS)
            return gw_reject_set(s->rej, GW_R_MALFORMED_PAYLOAD,
                                 "too many elements: over %d fields in one message",
                                 GW_PB_MAX_ELEMENTS);
        if ((rc = field(d, f, wt, b, len, &pos, depth, s)) != 0)
            return rc;
    }
    return 0;
}

int gw__pb_scan(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len, gw_reject *rej)
{
    scan s = {0, rej};
    if (len > GW_PB_MAX_MESSAGE)
        return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "over size: %zu bytes, max %d", len,
                             GW_PB_MAX_MESSAGE);
    return walk(d, buf, len, 0, &s);
}

/* internal.h: what the protobuf codec's files share: the wire pre-scan, the bounded allocator and
 * the conversions between the schema's Value/Field and jansson values. */
#ifndef GW_PB_INTERNAL_H
#define GW_PB_INTERNAL_H

#include <protobuf-c/protobuf-c.h>

#include "codec_protobuf.h"
#include "iotgw.pb-c.h"

/* A ProtobufCAllocator for one unpack: a bump arena (first the caller's buffer, then blocks of
 * gw_malloc) that hands out at most limit bytes in all; free is a no-op, gw__pb_alloc_done
 * releases everything at once. */
typedef struct gw__pb_alloc {
    ProtobufCAllocator pc;
    uint8_t *cur;
    size_t left, used, limit;
    void *blocks; /* gw_malloc'd blocks, linked through their first pointer */
    unsigned n_blocks;
    bool refused;
} gw__pb_alloc;

void gw__pb_alloc_init(gw__pb_alloc *a, size_t limit, void *buf, size_t cap);
void gw__pb_alloc_done(gw__pb_alloc *a);

/* Walks buf as a message of type d without allocating: rejects (GW_EINVAL, rej) truncation, wrong
 * wire types, unknown fields / oneof members, duplicate singular fields or oneof members, nesting
 * over GW_PB_MAX_DEPTH, more than GW_PB_MAX_ELEMENTS fields and strings with a NUL byte, before
 * protobuf-c unpacks it. */
int gw__pb_scan(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len,
                gw_reject *rej);

/* Fields -> a new JSON object (path names the list for details); NULL with rej filled. */
json_t *gw__pb_fields_json(Iotgw__Field *const *f, size_t n, const char *path, unsigned depth,
                           gw_reject *rej);

/* True for products on TCP (their frames and our acks/commands carry the length prefix). */
bool gw__pb_prefixed(const gw_product *p);

/* gw_codec_ops.encode_ack / encode_command (pb_encode.c). */
int gw__pb_encode_ack(const gw_product *p, const gw_thing_msg *m, const gw_reject *rej,
                      const char *secret, uint8_t *out, size_t cap, size_t *n);
int gw__pb_encode_command(const gw_product *p, const struct gw_command *c, const char *device_id,
                          const char *secret, uint8_t *out, size_t cap, size_t *n, gw_error *err);

#endif

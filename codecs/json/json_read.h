/* json_read.h: the JSON codec's in-place reader for the common device message (a property report
 * or an event in the contract's JSON): reads the payload without building a tree, checks each
 * value against the thing model as it is read (the same rules as gw_tm_check_*, through
 * gw__tm_*_ok) and writes the normalised payload in the same pass. It only ever accepts; anything
 * it does not take (a rejection, a struct or array value, an escape or non-ASCII byte in a string,
 * an exponent, a duplicate key...) goes to the jansson path, which decides and words the error. */
#ifndef GW_JSON_READ_H
#define GW_JSON_READ_H

#include "../../gateway/core/codec.h"

/* 0: accepted, *out filled as the jansson path would (kind, name, msg_id, timestamp_ms; values
 * NULL) and out->norm_text = the normalised payload the thing model's check would give (the one
 * allocation). 1: not taken (out cleared; nothing to free); the caller decodes it the general
 * way. GW_ENOMEM: out of memory (out cleared). */
int gw__json_read(const gw_product *p, const gw_decode_hint *hint, const uint8_t *buf, size_t len,
                  gw_thing_msg *out);

#endif

/* json_write.h: JSON helpers for normalised values: compact JSON text for normalised thing-model
 * values, with reals written in the shortest form that reads back to the same double (80.1,
 * not 80.099999999999994). */
#ifndef GW_JSON_WRITE_H
#define GW_JSON_WRITE_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "alloc.h"

/* Returns a NUL-terminated text of v (any JSON value) allocated in area a (free it with
 * gw_free(a, ...)), or NULL on out of memory. */
char *gw_json_write_in(gw_area a, const json_t *v);

/* gw_json_write_in(GW_AREA_EVENT, v): an event payload (gw_event.payload). */
char *gw_json_write(const json_t *v);

/* Writes a double's shortest round-trip text (always with '.' or an exponent) into buf (>= 32
 * bytes); returns its length. */
size_t gw_json_real(char *buf, double d);

/* An integer as "%lld" writes it (JSON_INTEGER_FORMAT), without printf, into buf (>= 21 bytes,
 * NUL-terminated); returns its length. */
size_t gw_json_int(char *buf, int64_t x);

/* s[0..n) as a quoted, escaped JSON string into out (NUL-terminated); returns its length, or 0
 * if it does not fit cap. The bytes are copied as they are (callers pass valid UTF-8). */
size_t gw_json_string(char *out, size_t cap, const char *s, size_t n);

/* "object", "array", "string", "integer", "real", "bool" or "null", for messages. */
const char *gw_json_kind(const json_t *v);

#endif

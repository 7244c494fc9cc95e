/* json_map.h: a product's "json" section: where a device's own JSON keeps its values (a path per
 * property and per event param, with an optional scale and offset, a timestamp and a message id),
 * so devices whose JSON does not follow the contract connect unchanged. Paths are a small JSONPath
 * subset: $ then .name, ['name'] or [index] steps. */
#ifndef GW_JSON_MAP_H
#define GW_JSON_MAP_H

#include <jansson.h>
#include <stdbool.h>

#include "../../gateway/core/codec.h"
#include "../../config/diag.h"

typedef struct gw__json_map gw__json_map;

/* Compiles p's "json" section (section may be NULL: *out = NULL, 0). Every problem (a bad path,
 * an unknown key, property, event or param, a scale on a value that is not a number) is added to
 * diag as "file: json.<path>: what", and the whole section is checked; then GW_ECONFIG (GW_ENOMEM
 * if memory ran out), *out NULL. */
int gw__json_map_load(const gw_product *p, const json_t *section, gw__json_map **out, gw_diag *diag,
                      const char *file);
void gw__json_map_free(gw__json_map *m);

/* True when messages of this kind (and event id) are read through the map. */
bool gw__json_map_covers(const gw__json_map *m, gw_msg_kind kind, const char *event);

/* Fills out->values (a new object), timestamp_ms and msg_id from the device's document. 0, or
 * GW_EINVAL with rej naming the path that did not match or held the wrong kind of value. */
int gw__json_map_apply(const gw__json_map *m, gw_msg_kind kind, const char *event,
                       const json_t *doc, gw_thing_msg *out, gw_reject *rej);

/* Parses a path; *n steps into steps (key: malloc'd name, or index >= 0). For tests. */
int gw__json_path_check(const char *path, char *why, size_t cap);

#endif

/* cfg_schema.h: declarative config sections. A table of gw_cfg_field describes an object's keys;
 * gw_cfg_parse checks types, ranges and unknown keys and fills a C struct through offsets. Used by
 * gateway.json's sections and by every adapter's and codec's own section. */
#ifndef GW_CFG_SCHEMA_H
#define GW_CFG_SCHEMA_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "diag.h"

typedef enum gw_cfg_type {
    GW_CFG_UINT32,    /* uint32_t, within [min, max] */
    GW_CFG_INT64,     /* int64_t, within [min, max] */
    GW_CFG_BOOL,      /* bool */
    GW_CFG_STRING,    /* char * (strdup'd; freed by gw_cfg_free) */
    GW_CFG_ENUM,      /* int: index into enum_names */
    GW_CFG_LISTENERS, /* gw_listen_list: array of {"address": "...", "port": N}; with min =
                       * GW_CFG_LISTEN_TLS an entry may carry a "tls" and a "proxy_protocol"
                       * object (their keys are checked by the adapter: protocols/stream/
                       * stream_tls.h, stream_proxy_cfg.h) */
    GW_CFG_JSON,      /* json_t * (new reference), no checks */
} gw_cfg_type;

typedef struct gw_cfg_field {
    const char *name;
    gw_cfg_type type;
    size_t offset;
    int64_t min, max;              /* numbers: inclusive range (both 0: no check) */
    const char *const *enum_names; /* GW_CFG_ENUM: NULL-terminated */
    bool required;
    bool has_def; /* numbers, bools and enums: def is the default, stored before parsing */
    int64_t def;
    const char *def_str; /* strings: the default (NULL: none, or set by the caller) */
    const char *doc;     /* what the key does, one short sentence with its unit (the reference's
                          * "meaning" column); set last, by designator: .doc = "..." */
} gw_cfg_field;

#define GW_CFG_LISTEN_TLS 1

/* Appended to a field's initialiser: the key's default, written once in the table. */
#define GW_CFG_DEF(v)     true, (int64_t)(v), NULL
#define GW_CFG_DEF_STR(s) false, 0, (s)

typedef struct gw_listen gw_listen;
typedef struct gw_listen_list {
    gw_listen *v;
    size_t n;
} gw_listen_list;

/* fields is terminated by an entry with name == NULL. obj may be NULL (all defaults; missing
 * required keys are errors). Defaults: a field's def (has_def), else whatever dst already holds.
 * Returns the number of errors added to diag. path is the object's JSON path ("adapters.mqtt"). */
int gw_cfg_parse(const gw_cfg_field *fields, const json_t *obj, void *dst, const char *file,
                 const char *path, gw_diag *diag);
/* Frees the strings, listener lists and JSON references gw_cfg_parse stored in dst. */
void gw_cfg_free(const gw_cfg_field *fields, void *dst);
/* Writes the defaults of the fields that have one (has_def) into dst. */
void gw_cfg_defaults(const gw_cfg_field *fields, void *dst);
/* Markdown table of an object's keys (key, type, default, range, meaning) for section path, into
 * f. Returns the number of keys without a doc (printed as "(undocumented)"). */
int gw_cfg_reference(FILE *f, const char *path, const gw_cfg_field *fields);
/* The head of such a table (for a hand-written one of keys checked outside a table). */
#define GW_CFG_REFERENCE_HEAD                                                                      \
    "| key | type | default | range | meaning |\n| --- | --- | --- | --- | --- |\n"

#endif

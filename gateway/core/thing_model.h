/* thing_model.h: a product's thing model (typed properties, events, functions) as loaded from
 * config, and the one validator every codec's output goes through before it becomes an event. */
#ifndef GW_THING_MODEL_H
#define GW_THING_MODEL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "reject.h"

typedef enum gw_type {
    GW_T_INT,    /* int32 */
    GW_T_LONG,   /* int64 */
    GW_T_FLOAT,  /* IEEE single: range-checked to +-FLT_MAX */
    GW_T_DOUBLE, /* IEEE double */
    GW_T_BOOL,
    GW_T_STRING, /* UTF-8, max_length bytes (0: the global cap GW_TM_STRING_CAP) */
    GW_T_ENUM,   /* one of enum_values (strings) */
    GW_T_DATE,   /* epoch milliseconds, integer >= 0 */
    GW_T_STRUCT, /* object with fields */
    GW_T_ARRAY,  /* array of item, at most max_items */
} gw_type;

#define GW_TM_STRING_CAP 65536

/* One typed value: a property, an event param, a function input/output, a struct field or an
 * array item. Numbers: int/long/date limits in imin/imax, float/double limits in min/max. */
typedef struct gw_value_spec {
    char *id;   /* NULL for an array item */
    char *name; /* display name, may be NULL */
    gw_type type;
    bool has_min, has_max;
    int64_t imin, imax; /* int, long, date */
    double min, max;    /* float, double */
    char *unit;         /* may be NULL */
    size_t max_length;  /* string: bytes; 0 = GW_TM_STRING_CAP */
    char **enum_values;
    size_t n_enum;
    struct gw_value_spec *fields; /* struct */
    size_t n_fields;
    struct gw_value_spec *item; /* array: one spec */
    size_t max_items;           /* array: 0 = unlimited (bounded by payload size) */
    bool required;              /* params, inputs, struct fields: default true */
    bool writable;              /* properties: access "rw" */
} gw_value_spec;

typedef enum gw_event_level {
    GW_LEVEL_INFO,
    GW_LEVEL_WARN,
    GW_LEVEL_ALERT,
    GW_LEVEL_ERROR
} gw_event_level;

typedef struct gw_event_spec {
    char *id;
    char *name;
    gw_event_level level;
    gw_value_spec *params;
    size_t n_params;
} gw_event_spec;

typedef struct gw_function_spec {
    char *id;
    char *name;
    gw_value_spec *inputs;
    size_t n_inputs;
    gw_value_spec *outputs;
    size_t n_outputs;
    uint32_t timeout_ms; /* default 5000 */
} gw_function_spec;

struct gw_codec_ops;

typedef struct gw_product {
    char *id;
    char *name;
    char *protocol; /* adapter name: "mqtt", "tcp", "udp", "coap" */
    char *codec;    /* codec name: "json", ... */
    const struct gw_codec_ops *codec_ops;
    void *codec_state; /* owned by the codec (init/uninit) */
    char *file;        /* the products/NAME.json it came from, for messages */
    json_t *raw;       /* the product's whole JSON, for codec/adapter sections (e.g. "frame") */
    uint32_t
        idle_timeout_ms; /* "idle_timeout_ms": offline after this long silent; 0 = protocol's */
    gw_value_spec *properties;
    size_t n_properties;
    gw_event_spec *events;
    size_t n_events;
    gw_function_spec *functions;
    size_t n_functions;
    /* "commands": {"offline": "reject"|"queue", "ttl_ms": N}: a command for an offline device is
     * answered at once with an error (default), or queued up to ttl_ms for its next session. */
    bool cmd_queue_offline;
    uint32_t cmd_ttl_ms;
    /* The protocol adapter's per-product data: the keys of "auth" it owns (its
     * product_auth_fields, e.g. CoAP's coap_query_token), parsed by the config loader. */
    void *adapter_data;
} gw_product;

/* Look-ups by id (NULL if absent). */
const gw_value_spec *gw_tm_property(const gw_product *p, const char *id);
const gw_event_spec *gw_tm_event(const gw_product *p, const char *id);
const gw_function_spec *gw_tm_function(const gw_product *p, const char *id);

/* Checks v against s. On success returns 0 and *out is a new reference to the normalised value
 * (integers for int/long/date, reals for float/double, so 21 for a float becomes 21.0). On failure
 * returns GW_EINVAL and fills rej; path names the value ("properties.temperature",
 * "data.t", "properties.pos.lat", "properties.list[3]"). */
int gw_tm_check_value(const gw_value_spec *s, json_t *v, const char *path, json_t **out,
                      gw_reject *rej);

/* A property report: props must be a non-empty object of id -> value. All or nothing: one bad
 * property rejects the whole report (documented in README). *out: new normalised object. */
int gw_tm_check_report(const gw_product *p, json_t *props, json_t **out, gw_reject *rej);

/* An event: event_id must exist; data an object (NULL = {}); every required param present, no
 * unknown param. *out: new normalised object. */
int gw_tm_check_event(const gw_product *p, const char *event_id, json_t *data, json_t **out,
                      gw_reject *rej);

/* Function inputs (downstream) or outputs (device reply) against a function's spec, same rules as
 * event params ("inputs." / "outputs." paths). */
int gw_tm_check_params(const gw_value_spec *specs, size_t n, const char *prefix, json_t *obj,
                       json_t **out, gw_reject *rej);

/* Frees everything a product owns (safe on a half-built product); does not free p itself. */
void gw_tm_product_clear(gw_product *p);
void gw_tm_value_spec_clear(gw_value_spec *s);

const char *gw_type_name(gw_type t);

#endif

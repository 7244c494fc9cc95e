/* product.h: a product as the config loader builds it (typed properties, events, functions: the
 * thing model's types, and the product's protocol, codec and auth data), and its destructors.
 * Type-only for everyone else: gateway/core/thing_model.h validates values against it. */
#ifndef GW_PRODUCT_H
#define GW_PRODUCT_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

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

enum { GW_AUTH_SECRET, GW_AUTH_CERT, GW_AUTH_CERT_OR_SECRET, GW_AUTH_DEVICE_ID };

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
    /* "auth": {"mode": ...}: GW_AUTH_SECRET ("device-secret", "secret": the secret is always
     * checked), GW_AUTH_CERT ("certificate": only a TLS client certificate naming the device),
     * GW_AUTH_CERT_OR_SECRET (a certificate naming the device, or the secret), GW_AUTH_DEVICE_ID
     * ("device-id": TCP/UDP protocols that carry no secret (GT06): the device id alone, the
     * registry is the allowlist; warned at start-up) */
    uint8_t auth_mode;
    /* The protocol adapter's per-product data: the keys of "auth" it owns (its
     * product_auth_fields, e.g. CoAP's coap_query_token), parsed by the config loader. */
    void *adapter_data;
} gw_product;

/* Frees everything a product owns (safe on a half-built product); does not free p itself. */
void gw_tm_product_clear(gw_product *p);
void gw_tm_value_spec_clear(gw_value_spec *s);

#endif

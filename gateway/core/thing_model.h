/* thing_model.h: a product's thing model (typed properties, events, functions) as loaded from
 * config, and the one validator every codec's output goes through before it becomes an event. */
#ifndef GW_THING_MODEL_H
#define GW_THING_MODEL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../util/reject.h"
#include "../../config/product.h"

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

/* Whether a property report passes gw_tm_check_report unchanged: a non-empty object of known
 * properties whose values are scalars the check keeps as they are (no int to float, no struct or
 * array). Its normalised form is then props itself, written as it is (no new tree). */
bool gw_tm_report_as_is(const gw_product *p, const json_t *props);

/* An event: event_id must exist; data an object (NULL = {}); every required param present, no
 * unknown param. *out: new normalised object. */
int gw_tm_check_event(const gw_product *p, const char *event_id, json_t *data, json_t **out,
                      gw_reject *rej);

/* Function inputs (downstream) or outputs (device reply) against a function's spec, same rules as
 * event params ("inputs." / "outputs." paths). */
int gw_tm_check_params(const gw_value_spec *specs, size_t n, const char *prefix, json_t *obj,
                       json_t **out, gw_reject *rej);

const char *gw_type_name(gw_type t);

/* The per-value rules behind the checks above, for a reader that validates values as it reads
 * them (codecs/json/json_read.c): it accepts a value only when these do and leaves every
 * rejection (and its text) to gw_tm_check_*. */
bool gw__tm_integer_ok(const gw_value_spec *s, int64_t x); /* int, long, date */
bool gw__tm_real_ok(const gw_value_spec *s, double d);     /* float, double */
bool gw__tm_string_ok(const gw_value_spec *s, size_t len);
bool gw__tm_enum_ok(const gw_value_spec *s, const char *str, size_t len);
/* The spec named key[0..key_len), or NULL. */
const gw_value_spec *gw__tm_find_spec(const gw_value_spec *specs, size_t n, const char *key,
                                      size_t key_len);
/* The same, specs[guess] tried first (guess >= n: none): a payload's members mostly follow the
 * thing model's order, so the one after the previous member's spec is the likely one. */
const gw_value_spec *gw__tm_find_spec_from(const gw_value_spec *specs, size_t n, const char *key,
                                           size_t key_len, size_t guess);

#endif

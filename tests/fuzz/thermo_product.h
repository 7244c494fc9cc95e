/* thermo_product.h: the thing model the JSON fuzz targets and the reader's unit test share (every
 * type, ranges, nested structs and arrays, an event with params and one without, a function), as
 * static initializers (no config loader). Include once per executable. */
#ifndef GW_TEST_THERMO_PRODUCT_H
#define GW_TEST_THERMO_PRODUCT_H

#include "codecs/json/codec_json.h"
#include "gateway/core/thing_model.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define REQ  .required = true

static char *mode_values[] = {"eco", "comfort", "away"};

static gw_value_spec pos_fields[] = {
    {.id = "lat",
     .type = GW_T_DOUBLE,
     .has_min = true,
     .has_max = true,
     .min = -90,
     .max = 90,
     REQ},
    {.id = "lon",
     .type = GW_T_DOUBLE,
     .has_min = true,
     .has_max = true,
     .min = -180,
     .max = 180,
     REQ},
    {.id = "label", .type = GW_T_STRING, .max_length = 8},
};

static gw_value_spec point_fields[] = {
    {.id = "x", .type = GW_T_INT, REQ},
    {.id = "y", .type = GW_T_INT, REQ},
};

static gw_value_spec list_item = {
    .type = GW_T_INT, .has_min = true, .has_max = true, .imin = 0, .imax = 100, REQ};
static gw_value_spec point_item = {
    .type = GW_T_STRUCT, .fields = point_fields, .n_fields = N(point_fields), REQ};
static gw_value_spec tag_item = {.type = GW_T_STRING, .max_length = 4, REQ};
static gw_value_spec nested_item = {.type = GW_T_ARRAY, .item = &tag_item, .max_items = 3, REQ};

static gw_value_spec properties[] = {
    {.id = "temperature",
     .type = GW_T_FLOAT,
     .has_min = true,
     .has_max = true,
     .min = -40,
     .max = 125},
    {.id = "ratio", .type = GW_T_FLOAT},
    {.id = "precise", .type = GW_T_DOUBLE},
    {.id = "level", .type = GW_T_INT, .has_min = true, .has_max = true, .imin = 0, .imax = 10},
    {.id = "i32", .type = GW_T_INT},
    {.id = "counter", .type = GW_T_LONG},
    {.id = "on", .type = GW_T_BOOL},
    {.id = "name", .type = GW_T_STRING, .max_length = 32},
    {.id = "note", .type = GW_T_STRING},
    {.id = "mode", .type = GW_T_ENUM, .enum_values = mode_values, .n_enum = N(mode_values)},
    {.id = "since", .type = GW_T_DATE},
    {.id = "window",
     .type = GW_T_DATE,
     .has_min = true,
     .has_max = true,
     .imin = 1000,
     .imax = 2000},
    {.id = "pos", .type = GW_T_STRUCT, .fields = pos_fields, .n_fields = N(pos_fields)},
    {.id = "list", .type = GW_T_ARRAY, .item = &list_item, .max_items = 4},
    {.id = "points", .type = GW_T_ARRAY, .item = &point_item},
    {.id = "grid", .type = GW_T_ARRAY, .item = &nested_item, .max_items = 3},
};

static gw_value_spec overheat_params[] = {
    {.id = "t", .type = GW_T_FLOAT, REQ},
    {.id = "note", .type = GW_T_STRING, .max_length = 16},
    {.id = "where", .type = GW_T_STRUCT, .fields = pos_fields, .n_fields = N(pos_fields)},
};

static gw_event_spec events[] = {
    {.id = "overheat",
     .level = GW_LEVEL_ALERT,
     .params = overheat_params,
     .n_params = N(overheat_params)},
    {.id = "ping", .level = GW_LEVEL_INFO},
};

static gw_value_spec reboot_outputs[] = {
    {.id = "ok", .type = GW_T_BOOL, REQ},
    {.id = "uptime", .type = GW_T_LONG},
};

static gw_function_spec functions[] = {
    {.id = "reboot", .outputs = reboot_outputs, .n_outputs = N(reboot_outputs), .timeout_ms = 5000},
};

static const gw_product product = {
    .id = "thermo",
    .protocol = "mqtt",
    .codec = "json",
    .codec_ops = &gw_codec_json_ops,
    .properties = properties,
    .n_properties = N(properties),
    .events = events,
    .n_events = N(events),
    .functions = functions,
    .n_functions = N(functions),
};

#endif

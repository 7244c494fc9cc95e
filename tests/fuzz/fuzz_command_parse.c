/* fuzz_command_parse.c: the cloud command parser (gateway/command/command_parse.c) on arbitrary
 * bytes, as a function invoke, a property write and a property read. Checks: success means a
 * function and object arguments (invoke), an object of writable properties (write) or an array or
 * NULL of names (read), and that the arguments validate again to themselves; failure means a code
 * and a one-line message that fit a JSON reply; the messageId is always NUL-terminated; the reply
 * JSON builds for both. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/command/command_internal.h"
#include "gateway/util/error.h"
#include "gateway/core/thing_model.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))

static char *modes[] = {"eco", "comfort"};
static gw_value_spec properties[] = {
    {.id = "temperature",
     .type = GW_T_FLOAT,
     .has_min = true,
     .has_max = true,
     .min = -40,
     .max = 125},
    {.id = "mode", .type = GW_T_ENUM, .enum_values = modes, .n_enum = N(modes), .writable = true},
    {.id = "setpoint",
     .type = GW_T_DOUBLE,
     .has_min = true,
     .has_max = true,
     .min = 5,
     .max = 30,
     .writable = true},
    {.id = "label", .type = GW_T_STRING, .max_length = 16, .writable = true},
};
static gw_value_spec reboot_inputs[] = {
    {.id = "delay_s",
     .type = GW_T_INT,
     .has_min = true,
     .has_max = true,
     .imin = 0,
     .imax = 60,
     .required = true},
    {.id = "reason", .type = GW_T_STRING, .max_length = 32},
};
static gw_value_spec ok_output[] = {{.id = "ok", .type = GW_T_BOOL, .required = true}};
static gw_function_spec functions[] = {
    {.id = "reboot",
     .inputs = reboot_inputs,
     .n_inputs = N(reboot_inputs),
     .outputs = ok_output,
     .n_outputs = 1,
     .timeout_ms = 5000},
    {.id = "ping", .timeout_ms = 1000},
};
static const gw_product product = {
    .id = "thermo",
    .protocol = "mqtt",
    .codec = "json",
    .properties = properties,
    .n_properties = N(properties),
    .functions = functions,
    .n_functions = N(functions),
};

static void check_text(const char *s)
{
    json_t *v = json_string(s); /* valid UTF-8, or jansson refuses it */
    if (!v)
        abort();
    json_decref(v);
}

static void run(gw_command_op op, const uint8_t *data, size_t size)
{
    gw__cmd_req r;
    memset(&r, 0, sizeof(r));
    int rc = gw__cmd_parse(&product, op, data, size, &r);
    if (!memchr(r.msg_id, 0, sizeof(r.msg_id)) || !memchr(r.message, 0, sizeof(r.message)))
        abort();
    if (rc != 0) {
        if (rc != GW_EINVAL || !r.code || !r.code[0])
            abort();
        check_text(r.message);
        char *e = gw__cmd_error_json(r.code, r.message);
        if (!e)
            abort();
        free(e);
        gw__cmd_req_clear(&r);
        return;
    }
    check_text(r.msg_id);
    if (op == GW_CMD_INVOKE) {
        if (!r.fn || !json_is_object(r.args))
            abort();
        json_t *again = NULL;
        gw_reject rej = {0};
        if (gw_tm_check_params(r.fn->inputs, r.fn->n_inputs, "inputs", r.args, &again, &rej) ||
            !json_equal(again, r.args))
            abort();
        json_decref(again);
    } else if (op == GW_CMD_WRITE) {
        const char *key;
        json_t *v;
        if (!json_is_object(r.args) || json_object_size(r.args) == 0)
            abort();
        json_object_foreach(r.args, key, v)
        {
            const gw_value_spec *s = gw_tm_property(&product, key);
            if (!s || !s->writable)
                abort();
        }
    } else if (r.args && !json_is_array(r.args)) {
        abort();
    }
    gw__cmd_req_clear(&r);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    run(GW_CMD_INVOKE, data, size);
    run(GW_CMD_WRITE, data, size);
    run(GW_CMD_READ, data, size);
    return 0;
}

/* command_parse.c: a cloud command's payload (function invoke, property write, property read)
 * parsed and validated with the thing model's own checks, and the reply payload texts; pure
 * functions, no table, no threads. */
#include "command_internal.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "../util/json_write.h"

static int fail(gw__cmd_req *r, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int fail(gw__cmd_req *r, const char *code, const char *fmt, ...)
{
    va_list ap;
    r->code = code;
    va_start(ap, fmt);
    vsnprintf(r->message, sizeof(r->message), fmt, ap);
    va_end(ap);
    /* details quote cloud bytes: keep them valid UTF-8 for the reply (gw_reject_set does it) */
    gw_reject tmp;
    gw_reject_set(&tmp, GW_R_NONE, "%s", r->message);
    memcpy(r->message, tmp.detail,
           sizeof(r->message) < sizeof(tmp.detail) ? sizeof(r->message) : sizeof(tmp.detail));
    r->message[sizeof(r->message) - 1] = 0;
    /* "inputs.delay_s: above max 60": the message names the JSON path of what is wrong */
    const char *colon = strstr(r->message, ": ");
    size_t n = colon ? (size_t)(colon - r->message) : 0;
    if (n && n < sizeof(r->path) && strcspn(r->message, " \"") >= n &&
        (!strncmp(r->message, "inputs", 6) || !strncmp(r->message, "properties", 10) ||
         !strncmp(r->message, "messageId", 9) || !strncmp(r->message, "function", 8))) {
        memcpy(r->path, r->message, n);
        r->path[n] = 0;
    }
    return GW_EINVAL;
}

static int take_msg_id(gw__cmd_req *r, json_t *id)
{
    if (!id)
        return fail(r, "invalid_payload", "missing key \"messageId\"");
    if (json_is_integer(id)) {
        snprintf(r->msg_id, sizeof(r->msg_id), "%" JSON_INTEGER_FORMAT, json_integer_value(id));
        return 0;
    }
    if (!json_is_string(id))
        return fail(r, "invalid_payload", "messageId: expected string or integer, got %s",
                    gw_json_kind(id));
    size_t n = json_string_length(id);
    if (n == 0 || n >= sizeof(r->msg_id))
        return fail(r, "invalid_payload", "messageId: %zu bytes (1..%zu allowed)", n,
                    sizeof(r->msg_id) - 1);
    if (memchr(json_string_value(id), 0, n))
        return fail(r, "invalid_payload", "messageId: contains U+0000");
    memcpy(r->msg_id, json_string_value(id), n + 1);
    return 0;
}

/* Keys a cloud may send besides the command's own; accepted and ignored. */
static bool ignored_key(const char *k)
{
    static const char *const keys[] = {"messageId", "timestamp", "version",
                                       "deviceId",  "headers",   NULL};
    for (size_t i = 0; keys[i]; i++)
        if (strcmp(k, keys[i]) == 0)
            return true;
    return false;
}

static int parse_invoke(const gw_product *p, json_t *root, gw__cmd_req *r)
{
    json_t *f = json_object_get(root, "function"), *in = json_object_get(root, "inputs");
    gw_reject rej = {GW_R_NONE, ""};
    if (!f)
        return fail(r, "invalid_payload", "missing key \"function\"");
    if (!json_is_string(f))
        return fail(r, "invalid_payload", "function: expected string, got %s", gw_json_kind(f));
    gw_reject tmp; /* the id as asked for, cut to size and kept valid UTF-8, for the log */
    gw_reject_set(&tmp, GW_R_NONE, "%.63s", json_string_value(f));
    memcpy(r->fn_name, tmp.detail, sizeof(r->fn_name));
    r->fn_name[sizeof(r->fn_name) - 1] = 0;
    r->fn = gw_tm_function(p, json_string_value(f));
    if (!r->fn)
        return fail(r, "unknown_function", "function %.64s: not in the thing model of %s",
                    json_string_value(f), p->id);
    if (in && !json_is_object(in))
        return fail(r, "invalid_payload", "inputs: expected object, got %s", gw_json_kind(in));
    if (gw_tm_check_params(r->fn->inputs, r->fn->n_inputs, "inputs", in, &r->args, &rej))
        return fail(r, "invalid_input", "%s", rej.detail);
    return 0;
}

static int parse_write(const gw_product *p, json_t *root, gw__cmd_req *r)
{
    json_t *props = json_object_get(root, "properties"), *v;
    const char *key;
    if (!props)
        return fail(r, "invalid_payload", "missing key \"properties\"");
    if (!json_is_object(props))
        return fail(r, "invalid_payload", "properties: expected object, got %s",
                    gw_json_kind(props));
    if (json_object_size(props) == 0)
        return fail(r, "invalid_payload", "properties: nothing to write");
    if (!(r->args = json_object()))
        return fail(r, "invalid_payload", "out of memory");
    json_object_foreach(props, key, v)
    {
        const gw_value_spec *s = gw_tm_property(p, key);
        char path[96];
        json_t *nv;
        gw_reject rej = {GW_R_NONE, ""};
        if (!s)
            return fail(r, "unknown_property", "properties.%.64s: not in the thing model of %s",
                        key, p->id);
        if (!s->writable)
            return fail(r, "not_writable", "properties.%s: read-only (access \"r\")", s->id);
        snprintf(path, sizeof(path), "properties.%s", s->id);
        if (gw_tm_check_value(s, v, path, &nv, &rej))
            return fail(r, "invalid_input", "%s", rej.detail);
        if (json_object_set_new(r->args, s->id, nv))
            return fail(r, "invalid_payload", "out of memory");
    }
    return 0;
}

static int parse_read(const gw_product *p, json_t *root, gw__cmd_req *r)
{
    json_t *names = json_object_get(root, "properties"), *v;
    size_t i;
    if (!names)
        return 0; /* all of them */
    if (!json_is_array(names))
        return fail(r, "invalid_payload", "properties: expected array of property ids, got %s",
                    gw_json_kind(names));
    if (json_array_size(names) == 0)
        return fail(r, "invalid_payload", "properties: empty list (omit it to read all)");
    json_array_foreach(names, i, v)
    {
        if (!json_is_string(v))
            return fail(r, "invalid_payload", "properties[%zu]: expected string, got %s", i,
                        gw_json_kind(v));
        if (!gw_tm_property(p, json_string_value(v)))
            return fail(r, "unknown_property",
                        "properties[%zu]: %.64s is not in the thing model "
                        "of %s",
                        i, json_string_value(v), p->id);
    }
    r->args = json_incref(names);
    return 0;
}

int gw__cmd_parse(const gw_product *p, gw_command_op op, const void *payload, size_t len,
                  gw__cmd_req *r)
{
    json_error_t jerr;
    json_t *root =
        json_loadb(payload ? (const char *)payload : "", len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root) {
        memset(r, 0, sizeof(*r));
        r->op = op;
        return fail(r, "invalid_payload", "JSON syntax error at %d:%d: %s", jerr.line, jerr.column,
                    jerr.text);
    }
    int rc = gw__cmd_parse_obj(p, op, root, r);
    json_decref(root);
    return rc;
}

int gw__cmd_parse_obj(const gw_product *p, gw_command_op op, json_t *root, gw__cmd_req *r)
{
    const char *key;
    json_t *v;

    memset(r, 0, sizeof(*r));
    r->op = op;
    r->request = json_incref(root);
    if (!json_is_object(r->request))
        return fail(r, "invalid_payload", "top level: expected object, got %s",
                    gw_json_kind(r->request));
    if (take_msg_id(r, json_object_get(r->request, "messageId")))
        return GW_EINVAL;
    json_object_foreach(r->request, key, v)
    {
        if (ignored_key(key) ||
            (op == GW_CMD_INVOKE && (!strcmp(key, "function") || !strcmp(key, "inputs"))) ||
            (op != GW_CMD_INVOKE && !strcmp(key, "properties")))
            continue;
        fail(r, "invalid_payload", "unknown key \"%.40s\"", key);
        snprintf(r->path, sizeof(r->path), "%.40s", key);
        return GW_EINVAL;
    }
    switch (op) {
    case GW_CMD_INVOKE:
        return parse_invoke(p, r->request, r);
    case GW_CMD_WRITE:
        return parse_write(p, r->request, r);
    case GW_CMD_READ:
        return parse_read(p, r->request, r);
    }
    return fail(r, "invalid_payload", "unknown command");
}

void gw__cmd_req_clear(gw__cmd_req *r)
{
    json_decref(r->args);
    json_decref(r->request);
    r->args = r->request = NULL;
}

/* ---- names ---- */

const char *gw__cmd_op_name(gw_command_op op)
{
    return op == GW_CMD_INVOKE ? "invoke" : op == GW_CMD_WRITE ? "write" : "read";
}

gw_event_kind gw__cmd_reply_kind(gw_command_op op)
{
    return op == GW_CMD_INVOKE  ? GW_EV_FUNCTION_REPLY
           : op == GW_CMD_WRITE ? GW_EV_WRITE_REPLY
                                : GW_EV_READ_REPLY;
}

const char *gw__cmd_event_name(gw_command_op op, const gw_function_spec *fn)
{
    if (op == GW_CMD_INVOKE)
        return fn && fn->id ? fn->id : "";
    return gw__cmd_op_name(op);
}

const char *gw__cmd_req_name(const gw__cmd_req *r)
{
    if (r->op != GW_CMD_INVOKE)
        return gw__cmd_op_name(r->op);
    return r->fn ? r->fn->id : r->fn_name;
}

const char *gw__cmd_error_status(const char *code)
{
    static const char *const rejected[] = {"invalid_payload",
                                           "unknown_device",
                                           "unknown_function",
                                           "unknown_property",
                                           "invalid_input",
                                           "not_writable",
                                           "busy",
                                           "duplicate_message_id",
                                           "unsupported",
                                           NULL};
    for (size_t i = 0; rejected[i]; i++)
        if (strcmp(code, rejected[i]) == 0)
            return "rejected";
    if (strcmp(code, "device_offline") == 0)
        return "offline";
    if (strcmp(code, "expired") == 0)
        return "expired";
    if (strcmp(code, "timeout") == 0)
        return "timeout";
    return "failed"; /* device_error, invalid_output, send_failed, store_error */
}

/* ---- reply payloads ---- */

char *gw__cmd_error_json(const char *code, const char *message)
{
    json_t *o =
        json_pack("{s:b,s:s,s:s}", "success", 0, "code", code, "message", message ? message : "");
    if (!o) /* a message that is not UTF-8: say so rather than lose the reply */
        o = json_pack("{s:b,s:s,s:s}", "success", 0, "code", code, "message", "(not UTF-8)");
    char *s = o ? gw_json_write(o) : NULL;
    json_decref(o);
    return s;
}

char *gw__cmd_success_json(const char *key, json_t *value)
{
    json_t *o = json_pack("{s:b}", "success", 1);
    char *s = NULL;
    if (o && (!key || !value || json_object_set_new(o, key, value) == 0))
        s = gw_json_write(o);
    else if (value)
        json_decref(value);
    json_decref(o);
    return s;
}

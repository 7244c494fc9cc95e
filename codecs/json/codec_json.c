/* codec_json.c: the "json" codec: decodes the contract's JSON payloads (property reports, events,
 * function and write replies) into thing messages and encodes downstream commands. Checks the
 * envelope only; the thing model checks the values (gw_tm_check_*), so the two stay separate. A
 * message that goes on to dispatch (hint.check) is first offered to the in-place reader
 * (json_read.c), which checks it with the thing model's own rules as it reads. */
#include "codec_json.h"
#include "json_map.h"
#include "json_read.h"
#include "../../config/diag.h"
#include "../../gateway/command/command_types.h"
#include "../../gateway/util/json_write.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Which optional/required keys the message kind allows besides messageId, timestamp, version. */
enum {
    K_PROPERTIES = 1 << 0,
    K_DATA = 1 << 1,
    K_SUCCESS = 1 << 2,
    K_OUTPUTS = 1 << 3,
    K_FUNCTION = 1 << 4,
    K_ERROR = 1 << 5,
    K_MESSAGE = 1 << 6,
};

static unsigned kind_keys(gw_msg_kind kind)
{
    switch (kind) {
    case GW_MSG_PROPERTY_REPORT:
        return K_PROPERTIES;
    case GW_MSG_EVENT:
        return K_DATA;
    case GW_MSG_FUNCTION_REPLY:
        return K_SUCCESS | K_OUTPUTS | K_FUNCTION | K_ERROR | K_MESSAGE;
    case GW_MSG_WRITE_REPLY:
        return K_SUCCESS | K_ERROR | K_MESSAGE;
    case GW_MSG_NONE:
    case GW_MSG_LOGIN:
    case GW_MSG_HEARTBEAT: /* binary transports only */
    case GW_MSG_REGISTER:
        break;
    }
    return 0;
}

#define KEY_IS(lit) (key_len == sizeof(lit) - 1 && memcmp(key, lit, sizeof(lit) - 1) == 0)

static int expect(gw_reject *rej, const char *key, const char *what, const json_t *v)
{
    return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "%s: expected %s, got %s", key, what,
                         gw_json_kind(v));
}

static int copy_id(char *dst, size_t cap, const char *key, const json_t *v, gw_reject *rej)
{
    size_t len = json_string_length(v);
    if (len >= cap)
        return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "%s: %zu bytes exceeds max %zu", key, len,
                             cap - 1);
    memcpy(dst, json_string_value(v), len + 1);
    return 0;
}

/* Cuts a trailing multi-byte character that snprintf left incomplete. */
static void utf8_trim(char *s)
{
    size_t n = strlen(s), i = n;
    while (i > 0 && ((unsigned char)s[i - 1] & 0xC0) == 0x80)
        i--;
    if (i == 0)
        return;
    unsigned char b = (unsigned char)s[i - 1];
    size_t want = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
    if (n - (i - 1) < want)
        s[i - 1] = 0;
}

/* A reply's "error" (a code: first) and "message" into out->error as "error: message". */
static void note_error(gw_thing_msg *out, const char *text, bool is_code)
{
    char tmp[2 * sizeof(out->error) + 4];
    const char *a = is_code ? text : out->error, *b = is_code ? out->error : text;
    snprintf(tmp, sizeof(tmp), "%.159s%s%.159s", a, a[0] && b[0] ? ": " : "", b);
    tmp[sizeof(out->error) - 1] = 0;
    utf8_trim(tmp);
    memcpy(out->error, tmp, sizeof(out->error));
}

/* One top-level key. Returns 0 or GW_EINVAL with rej filled. */
static int decode_key(const char *key, size_t key_len, json_t *v, unsigned allowed,
                      gw_thing_msg *out, unsigned *seen, gw_reject *rej)
{
    if (KEY_IS("messageId")) {
        if (json_is_string(v))
            return copy_id(out->msg_id, sizeof(out->msg_id), "messageId", v, rej);
        if (json_is_integer(v)) {
            snprintf(out->msg_id, sizeof(out->msg_id), "%" JSON_INTEGER_FORMAT,
                     json_integer_value(v));
            return 0;
        }
        return expect(rej, "messageId", "string or integer", v);
    }
    if (KEY_IS("timestamp")) {
        if (!json_is_integer(v) || json_integer_value(v) < 0) {
            if (json_is_integer(v))
                return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                                     "timestamp: %" JSON_INTEGER_FORMAT " is negative",
                                     json_integer_value(v));
            return expect(rej, "timestamp", "integer epoch ms", v);
        }
        out->timestamp_ms = json_integer_value(v);
        return 0;
    }
    if (KEY_IS("version"))
        return json_is_string(v) ? 0 : expect(rej, "version", "string", v);
    if ((allowed & K_PROPERTIES) && KEY_IS("properties")) {
        if (!json_is_object(v))
            return expect(rej, "properties", "object", v);
        *seen |= K_PROPERTIES;
        out->values = json_incref(v);
        return 0;
    }
    if ((allowed & K_DATA) && KEY_IS("data")) {
        if (!json_is_object(v))
            return expect(rej, "data", "object", v);
        out->values = json_incref(v);
        return 0;
    }
    if ((allowed & K_SUCCESS) && KEY_IS("success")) {
        if (!json_is_boolean(v))
            return expect(rej, "success", "bool", v);
        *seen |= K_SUCCESS;
        out->success = json_is_true(v);
        return 0;
    }
    if ((allowed & K_OUTPUTS) && KEY_IS("outputs")) {
        if (!json_is_object(v))
            return expect(rej, "outputs", "object", v);
        out->values = json_incref(v);
        return 0;
    }
    if ((allowed & K_FUNCTION) && KEY_IS("function")) {
        if (!json_is_string(v))
            return expect(rej, "function", "string", v);
        return copy_id(out->name, sizeof(out->name), "function", v, rej);
    }
    if ((allowed & K_ERROR) && KEY_IS("error")) {
        if (!json_is_string(v))
            return expect(rej, "error", "string", v);
        note_error(out, json_string_value(v), true);
        return 0;
    }
    if ((allowed & K_MESSAGE) && KEY_IS("message")) {
        if (!json_is_string(v))
            return expect(rej, "message", "string", v);
        note_error(out, json_string_value(v), false);
        return 0;
    }
    return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "unknown key \"%.*s\"",
                         key_len > 40 ? 40 : (int)key_len, key);
}

static int decode(const gw_decode_hint *hint, const uint8_t *buf, size_t len, gw_thing_msg *out,
                  gw_reject *rej)
{
    memset(out, 0, sizeof(*out));
    gw_msg_kind kind = hint ? hint->kind : GW_MSG_NONE;
    unsigned allowed = kind_keys(kind);
    if (!allowed)
        return gw_reject_set(rej, GW_R_UNSUPPORTED,
                             "json codec: the transport must give the message kind");
    if (kind == GW_MSG_EVENT) {
        size_t n = hint->name ? strlen(hint->name) : 0;
        if (n == 0 || n >= sizeof(out->name))
            return gw_reject_set(rej, GW_R_UNKNOWN_EVENT, "event id: %zu bytes (1..%zu allowed)", n,
                                 sizeof(out->name) - 1);
        memcpy(out->name, hint->name, n + 1);
    }
    out->kind = kind;

    json_error_t jerr;
    json_t *root = json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES, &jerr);
    if (!root)
        return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "JSON syntax error at %d:%d: %s",
                             jerr.line, jerr.column, jerr.text);
    int rc = 0;
    unsigned seen = 0;
    if (!json_is_object(root)) {
        rc = gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "top level: expected object, got %s",
                           gw_json_kind(root));
        goto fail;
    }
    for (void *it = json_object_iter(root); it; it = json_object_iter_next(root, it)) {
        rc = decode_key(json_object_iter_key(it), json_object_iter_key_len(it),
                        json_object_iter_value(it), allowed, out, &seen, rej);
        if (rc != 0)
            goto fail;
    }
    if ((allowed & K_PROPERTIES) && !(seen & K_PROPERTIES)) {
        rc = gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "missing key \"properties\"");
        goto fail;
    }
    if ((allowed & K_SUCCESS) && !(seen & K_SUCCESS)) {
        rc = gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "missing key \"success\"");
        goto fail;
    }
    json_decref(root);
    return 0;

fail:
    /* A refused message keeps no values, but keeps the device's messageId (even one after the
     * bad key) so that the rejection reply can carry it. */
    json_decref(out->values);
    out->values = NULL;
    if (!out->msg_id[0] && json_is_object(root)) {
        json_t *id = json_object_get(root, "messageId");
        gw_reject scratch;
        if (json_is_string(id) || json_is_integer(id))
            decode_key("messageId", 9, id, 0, out, &seen, &scratch);
    }
    json_decref(root);
    return rc;
}

/* A product with a "json" section: the device's own document, read through the map. */
static int decode_mapped(const gw__json_map *m, const gw_decode_hint *hint, const uint8_t *buf,
                         size_t len, gw_thing_msg *out, gw_reject *rej)
{
    json_error_t jerr;
    memset(out, 0, sizeof(*out));
    out->kind = hint->kind;
    if (hint->kind == GW_MSG_EVENT)
        snprintf(out->name, sizeof(out->name), "%s", hint->name);
    json_t *doc =
        json_loadb((const char *)buf, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &jerr);
    if (!doc)
        return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "JSON syntax error at %d:%d: %s",
                             jerr.line, jerr.column, jerr.text);
    int rc = gw__json_map_apply(m, hint->kind, hint->name, doc, out, rej);
    json_decref(doc);
    return rc;
}

static int json_decode(const gw_product *p, const gw_decode_hint *hint, const uint8_t *buf,
                       size_t len, gw_thing_msg *out, gw_reject *rej)
{
    const gw__json_map *m = p ? p->codec_state : NULL;
    if (hint && gw__json_map_covers(m, hint->kind, hint->name))
        return decode_mapped(m, hint, buf, len, out, rej);
    /* the common message in one pass; what the reader does not take is decided below */
    if (hint && hint->check && p && gw__json_read(p, hint, buf, len, out) == 0)
        return 0;
    return decode(hint, buf, len, out, rej); /* gw_reject_set keeps details valid UTF-8 */
}

static const char *const json_product_keys[] = {"json", NULL};

static int json_init(gw_product *p, gw_diag *diag, const char *file)
{
    gw__json_map *m = NULL;
    int rc = gw__json_map_load(p, p->raw ? json_object_get(p->raw, "json") : NULL, &m, diag, file);
    p->codec_state = m;
    return rc;
}

static void json_uninit(gw_product *p)
{
    gw__json_map_free(p->codec_state);
    p->codec_state = NULL;
}

/* {"messageId":..,"function":..,"inputs":{..}} or {"messageId":..,"properties":{..}}: the
 * contract's downstream payloads, compact. */
static int json_encode_command(const gw_product *p, const gw_command *c, const char *device_id,
                               const char *secret, uint8_t *out, size_t cap, size_t *n,
                               gw_error *err)
{
    (void)p, (void)device_id, (void)secret;
    *n = 0;
    if (c->op != GW_CMD_INVOKE && c->op != GW_CMD_WRITE)
        return gw_error_set(err, GW_EINVAL, "json codec: only invoke and write go to devices");
    if (c->op == GW_CMD_INVOKE && !c->fn)
        return gw_error_set(err, GW_EINVAL, "json codec: invoke without a function");
    json_t *o = json_object();
    json_t *args = c->args ? json_deep_copy(c->args) : json_object();
    int bad = !o || !args || json_object_set_new(o, "messageId", json_string(c->dev_msg_id));
    if (!bad && c->op == GW_CMD_INVOKE)
        bad = json_object_set_new(o, "function", json_string(c->fn->id)) ||
              json_object_set_new(o, "inputs", args);
    else if (!bad)
        bad = json_object_set_new(o, "properties", args);
    else
        json_decref(args);
    char *text = bad ? NULL : gw_json_write_in(GW_AREA_SESSION, o);
    json_decref(o);
    if (!text)
        return gw_error_set(err, GW_ENOMEM, "json codec: out of memory");
    size_t len = strlen(text);
    int rc = 0;
    if (len > cap)
        rc = gw_error_set(err, GW_ETOOBIG, "json codec: %zu bytes do not fit %zu", len, cap);
    else
        memcpy(out, text, len);
    *n = rc ? 0 : len;
    gw_free(GW_AREA_SESSION, text);
    return rc;
}

const gw_codec_ops gw_codec_json_ops = {
    .name = "json",
    .product_keys = json_product_keys,
    .init = json_init,
    .uninit = json_uninit,
    .decode = json_decode,
    .encode_command = json_encode_command,
};

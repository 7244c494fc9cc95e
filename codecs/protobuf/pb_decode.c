/* pb_decode.c: DeviceMessage bytes -> gw_thing_msg: the pre-scan, protobuf-c's unpack through a
 * bounded allocator, then Values into jansson values (ints -> integers, doubles -> reals, ...)
 * that the thing model validates exactly as it validates JSON. Envelope checks only. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

#include "../../gateway/util/alloc.h"
#include "../../gateway/util/auth.h"

/* ---- the bounded arena ---- */

#define BLOCK_MIN 16384

static void *pb_alloc(void *data, size_t size)
{
    gw__pb_alloc *a = data;
    size = (size + 15) & ~(size_t)15;
    if (size > a->limit - a->used) {
        a->refused = true;
        return NULL;
    }
    if (size > a->left) {
        size_t n = size + 16 > BLOCK_MIN ? size + 16 : BLOCK_MIN;
        uint8_t *b = gw_malloc(GW_AREA_EVENT, n);
        if (!b)
            return NULL;
        *(void **)b = a->blocks;
        a->blocks = b;
        a->n_blocks++;
        a->cur = b + 16;
        a->left = n - 16;
    }
    void *p = a->cur;
    a->cur += size;
    a->left -= size;
    a->used += size;
    return p;
}

static void pb_free(void *data, void *p)
{
    (void)data, (void)p; /* released with the arena */
}

void gw__pb_alloc_init(gw__pb_alloc *a, size_t limit, void *buf, size_t cap)
{
    a->pc.alloc = pb_alloc;
    a->pc.free = pb_free;
    a->pc.allocator_data = a;
    uintptr_t pad = buf ? (16 - ((uintptr_t)buf & 15)) & 15 : 0;
    a->cur = buf ? (uint8_t *)buf + pad : NULL;
    a->left = buf && cap > pad ? cap - pad : 0;
    a->used = 0;
    a->limit = limit;
    a->blocks = NULL;
    a->n_blocks = 0;
    a->refused = false;
}

void gw__pb_alloc_done(gw__pb_alloc *a)
{
    while (a->blocks) {
        void *next = *(void **)a->blocks;
        gw_free(GW_AREA_EVENT, a->blocks);
        a->blocks = next;
    }
    a->left = 0;
}

bool gw__pb_prefixed(const gw_product *p)
{
    return p && p->protocol && strcmp(p->protocol, "tcp") == 0;
}

/* ---- values ---- */

static json_t *value_json(const Iotgw__Value *v, const char *path, unsigned depth, gw_reject *rej)
{
    json_t *j = NULL;
    char sub[160];
    switch (v->kind_case) {
    case IOTGW__VALUE__KIND_INT_VALUE:
        j = json_integer(v->int_value);
        break;
    case IOTGW__VALUE__KIND_DOUBLE_VALUE:
        j = json_real(v->double_value);
        if (!j)
            gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "%s: %g is not a finite number", path,
                          v->double_value);
        return j;
    case IOTGW__VALUE__KIND_BOOL_VALUE:
        j = json_boolean(v->bool_value);
        break;
    case IOTGW__VALUE__KIND_STRING_VALUE:
        j = json_string(v->string_value);
        if (!j)
            gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "%s: string is not valid UTF-8", path);
        return j;
    case IOTGW__VALUE__KIND_STRUCT_VALUE:
        return gw__pb_fields_json(v->struct_value->fields, v->struct_value->n_fields, path,
                                  depth + 1, rej);
    case IOTGW__VALUE__KIND_ARRAY_VALUE:
        j = json_array();
        for (size_t i = 0; j && i < v->array_value->n_items; i++) {
            snprintf(sub, sizeof(sub), "%.120s[%zu]", path, i);
            json_t *it = value_json(v->array_value->items[i], sub, depth + 1, rej);
            if (!it || json_array_append_new(j, it) != 0) {
                if (it)
                    gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "%s: out of memory", sub);
                json_decref(j);
                return NULL;
            }
        }
        break;
    default:
        gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "%s: value has no kind (empty oneof)", path);
        return NULL;
    }
    if (!j)
        gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "%s: out of memory", path);
    return j;
}

json_t *gw__pb_fields_json(Iotgw__Field *const *f, size_t n, const char *path, unsigned depth,
                           gw_reject *rej)
{
    char sub[160];
    if (depth > GW_PB_MAX_DEPTH) {
        gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "nesting too deep: values nested over %d levels",
                      GW_PB_MAX_DEPTH);
        return NULL;
    }
    json_t *o = json_object();
    if (!o) {
        gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "%s: out of memory", path);
        return NULL;
    }
    for (size_t i = 0; i < n; i++) {
        const char *name = f[i]->name;
        if (!name[0]) {
            gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "%s[%zu]: field without a name", path, i);
            goto fail;
        }
        snprintf(sub, sizeof(sub), "%.80s.%.64s", path, name);
        if (!f[i]->value) {
            gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "%s: no value", sub);
            goto fail;
        }
        if (json_object_get(o, name)) {
            gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "%s: duplicate name", sub);
            goto fail;
        }
        json_t *v = value_json(f[i]->value, sub, depth, rej);
        if (!v)
            goto fail;
        if (json_object_set_new(o, name, v) != 0) {
            gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "%s[%zu]: name is not valid UTF-8", path, i);
            goto fail;
        }
    }
    return o;
fail:
    json_decref(o);
    return NULL;
}

/* ---- the envelope ---- */

static const char *kind_name(gw_msg_kind k)
{
    switch (k) {
    case GW_MSG_PROPERTY_REPORT:
        return "report";
    case GW_MSG_EVENT:
        return "event";
    case GW_MSG_FUNCTION_REPLY:
        return "function_reply";
    case GW_MSG_WRITE_REPLY:
        return "write_reply";
    case GW_MSG_LOGIN:
        return "login";
    case GW_MSG_HEARTBEAT:
        return "heartbeat";
    case GW_MSG_REGISTER:
        return "register";
    case GW_MSG_NONE:
        break;
    }
    return "none";
}

static gw_msg_kind body_kind(Iotgw__DeviceMessage__BodyCase c)
{
    switch (c) {
    case IOTGW__DEVICE_MESSAGE__BODY_REPORT:
        return GW_MSG_PROPERTY_REPORT;
    case IOTGW__DEVICE_MESSAGE__BODY_EVENT:
        return GW_MSG_EVENT;
    case IOTGW__DEVICE_MESSAGE__BODY_FUNCTION_REPLY:
        return GW_MSG_FUNCTION_REPLY;
    case IOTGW__DEVICE_MESSAGE__BODY_WRITE_REPLY:
        return GW_MSG_WRITE_REPLY;
    case IOTGW__DEVICE_MESSAGE__BODY_LOGIN:
        return GW_MSG_LOGIN;
    case IOTGW__DEVICE_MESSAGE__BODY_HEARTBEAT:
        return GW_MSG_HEARTBEAT;
    default:
        return GW_MSG_NONE;
    }
}

static int copy_id(char *dst, size_t cap, const char *what, const char *s, gw_reject *rej)
{
    size_t n = strlen(s);
    if (n >= cap)
        return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "%s: %zu bytes exceeds max %zu", what, n,
                             cap - 1);
    memcpy(dst, s, n + 1);
    return 0;
}

/* A reply's error code and message into out->error as "error: message" (UTF-8 kept whole). */
static void note_error(gw_thing_msg *out, const char *code, const char *text)
{
    char tmp[2 * sizeof(out->error) + 4];
    snprintf(tmp, sizeof(tmp), "%.159s%s%.159s", code, code[0] && text[0] ? ": " : "", text);
    size_t n = strlen(tmp);
    if (n >= sizeof(out->error)) {
        n = sizeof(out->error) - 1;
        while (n > 0 && ((unsigned char)tmp[n] & 0xC0) == 0x80) /* cut before a whole char */
            n--;
    }
    memcpy(out->error, tmp, n);
    out->error[n] = 0;
}

static int body(const Iotgw__DeviceMessage *dm, const gw_decode_hint *hint, gw_thing_msg *out,
                gw_reject *rej)
{
    switch (dm->body_case) {
    case IOTGW__DEVICE_MESSAGE__BODY_REPORT:
        out->values = gw__pb_fields_json(dm->report->properties, dm->report->n_properties,
                                         "properties", 0, rej);
        return out->values ? 0 : GW_EINVAL;
    case IOTGW__DEVICE_MESSAGE__BODY_EVENT: {
        const char *id = dm->event->id;
        if (hint && hint->kind == GW_MSG_EVENT) {
            if (id[0] && (!hint->name || strcmp(id, hint->name) != 0))
                return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                                     "event id \"%.60s\" disagrees with the topic's \"%.60s\"", id,
                                     hint->name ? hint->name : "");
            id = hint->name ? hint->name : "";
        }
        if (!id[0] || strlen(id) >= sizeof(out->name))
            return gw_reject_set(rej, GW_R_UNKNOWN_EVENT, "event id: %zu bytes (1..%zu allowed)",
                                 strlen(id), sizeof(out->name) - 1);
        memcpy(out->name, id, strlen(id) + 1);
        if (dm->event->n_params) {
            out->values =
                gw__pb_fields_json(dm->event->params, dm->event->n_params, "data", 0, rej);
            if (!out->values)
                return GW_EINVAL;
        }
        return 0;
    }
    case IOTGW__DEVICE_MESSAGE__BODY_FUNCTION_REPLY: {
        const Iotgw__FunctionReply *r = dm->function_reply;
        out->success = r->success ? 1 : 0;
        note_error(out, r->error, r->message);
        if (copy_id(out->name, sizeof(out->name), "function", r->function, rej) != 0)
            return GW_EINVAL;
        if (r->n_outputs) {
            out->values = gw__pb_fields_json(r->outputs, r->n_outputs, "outputs", 0, rej);
            if (!out->values)
                return GW_EINVAL;
        }
        return 0;
    }
    case IOTGW__DEVICE_MESSAGE__BODY_WRITE_REPLY:
        out->success = dm->write_reply->success ? 1 : 0;
        note_error(out, dm->write_reply->error, dm->write_reply->message);
        return 0;
    case IOTGW__DEVICE_MESSAGE__BODY_LOGIN:
        if (copy_id(out->device_id, sizeof(out->device_id), "login.device_id", dm->login->device_id,
                    rej) != 0)
            return GW_EINVAL;
        return copy_id(out->secret, sizeof(out->secret), "login.secret", dm->login->secret, rej);
    case IOTGW__DEVICE_MESSAGE__BODY_HEARTBEAT:
        return 0;
    default:
        return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "no message body (oneof body not set)");
    }
}

static int envelope(const Iotgw__DeviceMessage *dm, const gw_decode_hint *hint, gw_thing_msg *out,
                    gw_reject *rej)
{
    if (copy_id(out->msg_id, sizeof(out->msg_id), "message_id", dm->message_id, rej) != 0)
        return GW_EINVAL;
    if (dm->timestamp_ms > INT64_MAX)
        return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "timestamp_ms: %llu is out of range",
                             (unsigned long long)dm->timestamp_ms);
    out->timestamp_ms = (int64_t)dm->timestamp_ms;
    if (copy_id(out->device_id, sizeof(out->device_id), "device_id", dm->device_id, rej) != 0 ||
        copy_id(out->secret, sizeof(out->secret), "token", dm->token, rej) != 0)
        return GW_EINVAL;
    out->kind = body_kind(dm->body_case);
    if (out->kind == GW_MSG_NONE)
        return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "no message body (oneof body not set)");
    if (hint && hint->kind != GW_MSG_NONE && out->kind != hint->kind)
        return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                             "the message body is %s, the topic says %s", kind_name(out->kind),
                             kind_name(hint->kind));
    return body(dm, hint, out, rej);
}

static int pb_decode(const gw_product *p, const gw_decode_hint *hint, const uint8_t *buf,
                     size_t len, gw_thing_msg *out, gw_reject *rej)
{
    memset(out, 0, sizeof(*out));
    if (gw__pb_prefixed(p)) {
        uint32_t n = len >= GW_PB_PREFIX ? (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 |
                                               (uint32_t)buf[2] << 8 | buf[3]
                                         : 0;
        if (len < GW_PB_PREFIX || n != len - GW_PB_PREFIX)
            return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                                 "truncated: frame of %zu bytes, length prefix says %u", len, n);
        buf += GW_PB_PREFIX;
        len -= GW_PB_PREFIX;
    }
    int rc = gw__pb_scan(&iotgw__device_message__descriptor, buf, len, rej);
    if (rc != 0)
        return rc;
    gw__pb_alloc a;
    uint64_t arena[512]; /* 4 KiB: a typical message unpacks without touching the heap */
    gw__pb_alloc_init(&a, GW_PB_MAX_ALLOC, arena, sizeof(arena));
    Iotgw__DeviceMessage *dm = iotgw__device_message__unpack(&a.pc, len, buf);
    if (!dm) {
        gw__pb_alloc_done(&a);
        if (a.refused)
            return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                                 "over size: unpacking needs over %d bytes", GW_PB_MAX_ALLOC);
        return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD, "does not decode as iotgw.DeviceMessage");
    }
    rc = envelope(dm, hint, out, rej);
    gw__pb_alloc_done(&a); /* the whole unpacked tree at once (no free_unpacked walk) */
    if (rc != 0) {         /* keep msg_id for the rejection reply, nothing else */
        json_decref(out->values);
        out->values = NULL;
        out->secret[0] = 0;
    }
    return rc;
}

/* UDP's token in every datagram (and a TCP login's secret): constant time. */
static int pb_verify(const gw_product *p, const gw_thing_msg *m, const uint8_t *frame, size_t len,
                     const char *secret)
{
    (void)p, (void)frame, (void)len;
    size_t n = strnlen(m->secret, sizeof(m->secret));
    return secret && n && gw_secret_check(secret, m->secret, n) ? 0 : GW_EAUTH;
}

static void pb_frame_info(const gw_product *p, gw_frame_info *out)
{
    out->max_frame = GW_PB_MAX_MESSAGE + (gw__pb_prefixed(p) ? GW_PB_PREFIX : 0);
    out->device_id_in_all = false;
    out->seq_max = 0;
}

/* TCP: a 4-byte big-endian length, then that many bytes of DeviceMessage. */
static int pb_frame(const gw_product *p, const uint8_t *buf, size_t len, size_t *skip)
{
    (void)p;
    *skip = 0;
    if (len < GW_PB_PREFIX)
        return 0;
    uint32_t n = (uint32_t)buf[0] << 24 | (uint32_t)buf[1] << 16 | (uint32_t)buf[2] << 8 | buf[3];
    if (n > GW_PB_MAX_MESSAGE)
        return GW_ETOOBIG;
    if (len - GW_PB_PREFIX < n)
        return 0;
    return (int)(n + GW_PB_PREFIX);
}

const gw_codec_ops gw_codec_protobuf_ops = {
    .name = "protobuf",
    .product_keys = NULL,
    .init = NULL,
    .uninit = NULL,
    .decode = pb_decode,
    .frame = pb_frame,
    .encode_ack = gw__pb_encode_ack,
    .verify = pb_verify,
    .frame_info = pb_frame_info,
    .encode_command = gw__pb_encode_command,
};

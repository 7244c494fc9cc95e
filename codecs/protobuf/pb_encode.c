/* pb_encode.c: the gateway's bytes for a device: DeviceCommand (function invoke, property write)
 * from the thing model's validated JSON arguments, and Ack (TCP/UDP); on TCP each gets the 4-byte
 * big-endian length prefix. */
#include "internal.h"

#include <stdio.h>
#include <string.h>

#include "../../gateway/util/alloc.h"
#include "../../gateway/command/command_types.h"

/* One block holds every protobuf-c struct of a command: per JSON value at most a Value, a Field,
 * a Struct or Array, and a pointer in its parent's list. Strings point into the JSON. */
typedef struct arena {
    uint8_t *mem;
    size_t used, cap;
} arena;

#define NODE_BYTES                                                                                 \
    (2 *                                                                                           \
     (sizeof(Iotgw__Value) + sizeof(Iotgw__Field) + sizeof(Iotgw__Struct) + sizeof(void *) + 64))

static void *take(arena *a, size_t n)
{
    n = (n + 15) & ~(size_t)15;
    if (n > a->cap - a->used)
        return NULL;
    void *p = a->mem + a->used;
    a->used += n;
    return p;
}

static size_t count_nodes(const json_t *v, unsigned depth)
{
    size_t n = 1;
    const char *k;
    json_t *x;
    size_t i;
    if (depth > GW_PB_MAX_DEPTH)
        return n;
    if (json_is_object(v))
        json_object_foreach((json_t *)v, k, x) n += count_nodes(x, depth + 1);
    else if (json_is_array(v))
        json_array_foreach(v, i, x) n += count_nodes(x, depth + 1);
    return n;
}

static int fields_pb(arena *a, const json_t *o, Iotgw__Field ***out, size_t *n, unsigned depth,
                     gw_error *err);

static Iotgw__Value *value_pb(arena *a, const json_t *v, unsigned depth, gw_error *err)
{
    Iotgw__Value *pv = take(a, sizeof(*pv));
    if (!pv) {
        gw_error_set(err, GW_ENOMEM, "protobuf codec: out of memory");
        return NULL;
    }
    iotgw__value__init(pv);
    if (depth > GW_PB_MAX_DEPTH) {
        gw_error_set(err, GW_EINVAL, "protobuf codec: values nested over %d levels",
                     GW_PB_MAX_DEPTH);
        return NULL;
    }
    switch (json_typeof(v)) {
    case JSON_INTEGER:
        pv->kind_case = IOTGW__VALUE__KIND_INT_VALUE;
        pv->int_value = json_integer_value(v);
        return pv;
    case JSON_REAL:
        pv->kind_case = IOTGW__VALUE__KIND_DOUBLE_VALUE;
        pv->double_value = json_real_value(v);
        return pv;
    case JSON_TRUE:
    case JSON_FALSE:
        pv->kind_case = IOTGW__VALUE__KIND_BOOL_VALUE;
        pv->bool_value = json_is_true(v);
        return pv;
    case JSON_STRING:
        pv->kind_case = IOTGW__VALUE__KIND_STRING_VALUE;
        pv->string_value = (char *)json_string_value(v);
        if (strlen(pv->string_value) != json_string_length(v)) {
            gw_error_set(err, GW_EINVAL, "protobuf codec: a string with a NUL byte");
            return NULL;
        }
        return pv;
    case JSON_OBJECT: {
        Iotgw__Struct *s = take(a, sizeof(*s));
        if (!s)
            break;
        iotgw__struct__init(s);
        pv->kind_case = IOTGW__VALUE__KIND_STRUCT_VALUE;
        pv->struct_value = s;
        return fields_pb(a, v, &s->fields, &s->n_fields, depth + 1, err) ? NULL : pv;
    }
    case JSON_ARRAY: {
        Iotgw__Array *arr = take(a, sizeof(*arr));
        size_t n = json_array_size(v);
        if (!arr)
            break;
        iotgw__array__init(arr);
        if (!(arr->items = take(a, (n ? n : 1) * sizeof(void *))))
            break;
        pv->kind_case = IOTGW__VALUE__KIND_ARRAY_VALUE;
        pv->array_value = arr;
        for (size_t i = 0; i < n; i++) {
            if (!(arr->items[i] = value_pb(a, json_array_get(v, i), depth + 1, err)))
                return NULL;
            arr->n_items++;
        }
        return pv;
    }
    case JSON_NULL:
        gw_error_set(err, GW_EINVAL, "protobuf codec: null has no protobuf value");
        return NULL;
    }
    gw_error_set(err, GW_ENOMEM, "protobuf codec: out of memory");
    return NULL;
}

static int fields_pb(arena *a, const json_t *o, Iotgw__Field ***out, size_t *n, unsigned depth,
                     gw_error *err)
{
    size_t cnt = json_object_size(o);
    const char *k;
    json_t *x;
    *n = 0;
    *out = take(a, (cnt ? cnt : 1) * sizeof(void *));
    if (!*out)
        return gw_error_set(err, GW_ENOMEM, "protobuf codec: out of memory");
    json_object_foreach((json_t *)o, k, x)
    {
        Iotgw__Field *f = take(a, sizeof(*f));
        if (!f)
            return gw_error_set(err, GW_ENOMEM, "protobuf codec: out of memory");
        iotgw__field__init(f);
        f->name = (char *)k;
        if (!(f->value = value_pb(a, x, depth, err)))
            return err->code ? err->code : GW_EINVAL;
        (*out)[(*n)++] = f;
    }
    return 0;
}

/* Packs msg into out (after the TCP prefix when p is on TCP). */
static int pack(const gw_product *p, const ProtobufCMessage *msg, uint8_t *out, size_t cap,
                size_t *n)
{
    size_t pre = gw__pb_prefixed(p) ? GW_PB_PREFIX : 0;
    size_t size = protobuf_c_message_get_packed_size(msg);
    *n = 0;
    if (size > GW_PB_MAX_MESSAGE || size + pre > cap)
        return GW_ETOOBIG;
    if (pre) {
        out[0] = (uint8_t)(size >> 24);
        out[1] = (uint8_t)(size >> 16);
        out[2] = (uint8_t)(size >> 8);
        out[3] = (uint8_t)size;
    }
    *n = pre + protobuf_c_message_pack(msg, out + pre);
    return 0;
}

int gw__pb_encode_command(const gw_product *p, const gw_command *c, const char *device_id,
                          const char *secret, uint8_t *out, size_t cap, size_t *n, gw_error *err)
{
    (void)device_id, (void)secret;
    *n = 0;
    if (c->op != GW_CMD_INVOKE && c->op != GW_CMD_WRITE)
        return gw_error_set(err, GW_EINVAL, "protobuf codec: only invoke and write go to devices");
    if (c->op == GW_CMD_INVOKE && !c->fn)
        return gw_error_set(err, GW_EINVAL, "protobuf codec: invoke without a function");
    if (c->args && !json_is_object(c->args))
        return gw_error_set(err, GW_EINVAL, "protobuf codec: arguments must be an object");
    arena a = {NULL, 0, 0};
    a.cap = (c->args ? count_nodes(c->args, 0) : 1) * NODE_BYTES;
    a.mem = gw_malloc(GW_AREA_EVENT, a.cap);
    if (!a.mem)
        return gw_error_set(err, GW_ENOMEM, "protobuf codec: out of memory");
    Iotgw__DeviceCommand dc = IOTGW__DEVICE_COMMAND__INIT;
    Iotgw__Invoke inv = IOTGW__INVOKE__INIT;
    Iotgw__Write wr = IOTGW__WRITE__INIT;
    dc.message_id = (char *)c->dev_msg_id;
    dc.seq = c->seq;
    int rc = 0;
    const json_t *args = c->args;
    if (c->op == GW_CMD_INVOKE) {
        inv.function = c->fn->id;
        dc.body_case = IOTGW__DEVICE_COMMAND__BODY_INVOKE;
        dc.invoke = &inv;
        if (args)
            rc = fields_pb(&a, args, &inv.inputs, &inv.n_inputs, 1, err);
    } else {
        dc.body_case = IOTGW__DEVICE_COMMAND__BODY_WRITE;
        dc.write = &wr;
        if (args)
            rc = fields_pb(&a, args, &wr.properties, &wr.n_properties, 1, err);
    }
    if (rc == 0 && (rc = pack(p, &dc.base, out, cap, n)) != 0)
        gw_error_set(err, rc, "protobuf codec: %zu bytes do not fit %zu",
                     protobuf_c_message_get_packed_size(&dc.base), cap);
    gw_free(GW_AREA_EVENT, a.mem);
    return rc;
}

/* Ack{message_id, ok} after a commit; a rejection also says why: code = the reason's name
 * ("out_of_range", "malformed_payload"; "rejected" when there is none, e.g. a refused login) and
 * message = its detail. Bounded: a 63-byte id, a reason name, a 191-byte detail. */
int gw__pb_encode_ack(const gw_product *p, const gw_thing_msg *m, const gw_reject *rej,
                      const char *secret, uint8_t *out, size_t cap, size_t *n)
{
    (void)secret;
    Iotgw__Ack ack = IOTGW__ACK__INIT;
    ack.message_id = (char *)m->msg_id;
    ack.ok = rej == NULL;
    if (rej) {
        ack.code = (char *)(rej->reason != GW_R_NONE ? gw_reason_name(rej->reason) : "rejected");
        ack.message = (char *)rej->detail;
    }
    return pack(p, &ack.base, out, cap, n);
}

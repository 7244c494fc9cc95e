/* fuzz_binary_layout.c: the binary codec's layout loader on arbitrary "frame" sections. The input
 * is parsed as JSON and becomes the "frame" key of a product with a fixed thing model (a static
 * initializer, no config files); init must either refuse it with a "frame...: what" message or
 * compile it, and uninit must free everything. A compiled layout is then exercised: the input's
 * bytes are framed and decoded, every upstream message's ack and every command is encoded (with
 * cap = max_frame, which must suffice unless max_frame itself is too small) and decoded back;
 * groups and id-value lists are encoded empty; a handshake is tried on the input's bytes. Each
 * layout is loaded for TCP, UDP and TCP with auth.mode device-id (which a handshake needs). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "codecs/binary/internal.h"

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define REQ  .required = true

static char *ev_values[] = {"x", "y", "z"};

static gw_value_spec st_fields[] = {{.id = "a", .type = GW_T_INT, REQ}};

static gw_value_spec properties[] = {
    {.id = "i", .type = GW_T_INT},
    {.id = "l", .type = GW_T_LONG},
    {.id = "f", .type = GW_T_FLOAT},
    {.id = "d", .type = GW_T_DOUBLE},
    {.id = "b", .type = GW_T_BOOL},
    {.id = "s", .type = GW_T_STRING, .max_length = 32},
    {.id = "e", .type = GW_T_ENUM, .enum_values = ev_values, .n_enum = N(ev_values)},
    {.id = "t", .type = GW_T_DATE},
    {.id = "st", .type = GW_T_STRUCT, .fields = st_fields, .n_fields = N(st_fields)},
    {.id = "w", .type = GW_T_INT, .writable = true},
    {.id = "ws", .type = GW_T_STRING, .writable = true},
    {.id = "we",
     .type = GW_T_ENUM,
     .enum_values = ev_values,
     .n_enum = N(ev_values),
     .writable = true},
    {.id = "wb", .type = GW_T_BOOL, .writable = true},
    {.id = "wd", .type = GW_T_DOUBLE, .writable = true},
};

static gw_value_spec ev_params[] = {
    {.id = "i", .type = GW_T_INT, REQ},
    {.id = "s", .type = GW_T_STRING, REQ},
    {.id = "d", .type = GW_T_DOUBLE},
};

static gw_event_spec events[] = {
    {.id = "ev", .level = GW_LEVEL_WARN, .params = ev_params, .n_params = N(ev_params)},
    {.id = "ping", .level = GW_LEVEL_INFO},
};

static gw_value_spec fn_inputs[] = {
    {.id = "i", .type = GW_T_INT, REQ},
    {.id = "b", .type = GW_T_BOOL, REQ},
    {.id = "s", .type = GW_T_STRING, REQ},
    {.id = "e", .type = GW_T_ENUM, .enum_values = ev_values, .n_enum = N(ev_values)},
    {.id = "d", .type = GW_T_DOUBLE},
};

static gw_value_spec fn_outputs[] = {
    {.id = "d", .type = GW_T_DOUBLE, REQ},
    {.id = "b", .type = GW_T_BOOL},
};

static gw_function_spec functions[] = {
    {.id = "fn",
     .inputs = fn_inputs,
     .n_inputs = N(fn_inputs),
     .outputs = fn_outputs,
     .n_outputs = N(fn_outputs),
     .timeout_ms = 5000},
    {.id = "go", .timeout_ms = 5000},
};

/* A plausible value for a field's target spec. */
static json_t *sample(const gw_value_spec *s)
{
    switch (s->type) {
    case GW_T_BOOL:
        return json_true();
    case GW_T_STRING:
        return json_string("12");
    case GW_T_ENUM:
        return json_string(s->enum_values[s->n_enum - 1]);
    case GW_T_FLOAT:
    case GW_T_DOUBLE:
        return json_real(2.5);
    default:
        return json_integer(3);
    }
}

static void round_trip(const gw_product *p, const bin_msg *m, const bin_src *src)
{
    const bin_layout *l = p->codec_state;
    static uint8_t out[GW_BINARY_MAX_FRAME];
    size_t n = 0;
    gw_error err = {0};
    int rc = gw__binary_encode(l, m, src, out, l->max_frame, &n, &err);
    if (rc != 0) {
        if (rc != GW_EINVAL && rc != GW_ETOOBIG && rc != GW_ENOMEM)
            abort();
        if (!err.msg[0])
            abort();
        return;
    }
    if (n == 0 || n > l->max_frame)
        abort();
    if (m->bare) /* an ack that is its fields alone: no frame to read back */
        return;
    size_t skip;
    if (l->framing != BIN_FR_DATAGRAM && gw_codec_binary_ops.frame(p, out, n, &skip) != (int)n)
        abort();
    gw_thing_msg back;
    gw_reject rej = {0};
    const bin_msg *which;
    bool up = BIN_K_IS_UP(m->kind);
    if (gw__binary_decode(p, !up, out, n, &back, &which, &rej) != 0) {
        /* without a discriminator an ack and a command look alike; otherwise a frame we built
         * that we cannot read is a bug */
        if (l->disc >= 0 || up) {
            fprintf(stderr, "own frame refused: %s\n", rej.detail);
            abort();
        }
        return;
    }
    if (l->disc >= 0 && which != m)
        abort();
    gw_thing_msg_clear(&back);
}

static void exercise(const gw_product *p, const uint8_t *data, size_t size)
{
    const bin_layout *l = p->codec_state;
    gw_thing_msg m;
    gw_reject rej = {0};
    size_t skip;
    int rc;
    if (gw_codec_binary_ops.decode(p, NULL, data, size, &m, &rej) != 0 &&
        (rej.reason == GW_R_NONE || m.values || m.records))
        abort();
    gw_thing_msg_clear(&m);
    /* a handshake: within the bytes given, a login naming a device, or refused with a reason */
    rc = gw_codec_binary_ops.handshake(p, data, size, &m, &rej);
    if (rc > (int)size || (rc > 0 && (m.kind != GW_MSG_LOGIN || !m.device_id[0])) ||
        (rc < 0 && rc != GW_ENOTFOUND && (rc != GW_EINVAL || rej.reason == GW_R_NONE)) ||
        (rc == GW_ENOTFOUND && l->n_hs))
        abort();
    if (rc > 0) {
        uint8_t ans[16];
        size_t an = 0;
        if (gw_codec_binary_ops.encode_ack(p, &m, NULL, NULL, ans, sizeof(ans), &an) != 0 ||
            an != l->hs_ok_len)
            abort();
    }
    gw_thing_msg_clear(&m);
    rc = gw_codec_binary_ops.frame(p, data, size, &skip);
    if (skip > size || (rc > 0 && skip + (size_t)rc > size))
        abort();

    for (size_t i = 0; i < l->n_msgs; i++) {
        const bin_msg *bm = &l->msgs[i];
        json_t *values = json_object();
        for (size_t j = 0; j < bm->n_fields; j++)
            if (bm->fields[j].spec)
                json_object_set_new(values, bm->fields[j].target_id, sample(bm->fields[j].spec));
        gw_thing_msg req = {.seq = 77, .type_code = bm->match, .timestamp_ms = 5000};
        strcpy(req.device_id, "42");
        strcpy(req.msg_id, "9");
        bin_src src = {.device_id = "42", .seq = 77, .values = values, .secret = "k"};
        round_trip(p, bm, &src);
        if (bm->ack >= 0) {
            bin_src ack = {.req = &req, .status = (int)(i % 2) - 1, .secret = "k"};
            round_trip(p, &l->acks[bm->ack], &ack);
        }
        json_decref(values);
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const protocols[] = {"tcp", "udp", "tcp"}; /* the last: device-id */
    json_t *frame = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, NULL);
    if (!frame)
        return 0;
    json_t *raw = json_pack("{s:o}", "frame", frame);
    for (size_t k = 0; raw && k < 3; k++) {
        gw_product p = {
            .id = "fz",
            .protocol = (char *)protocols[k],
            .codec = "binary",
            .codec_ops = &gw_codec_binary_ops,
            .file = "products/fz.json",
            .raw = raw,
            .properties = properties,
            .n_properties = N(properties),
            .events = events,
            .n_events = N(events),
            .functions = functions,
            .n_functions = N(functions),
            .auth_mode = k == 2 ? GW_AUTH_DEVICE_ID : GW_AUTH_SECRET,
        };
        gw_diag dg = {0};
        int rc = gw_codec_binary_ops.init(&p, &dg, NULL);
        if (rc != 0) {
            if (rc != GW_ECONFIG || dg.n == 0 || p.codec_state)
                abort();
            for (size_t q = 0; q < dg.n; q++) {
                if (strncmp(dg.msgs[q], "frame", 5) != 0 &&
                    (k != 2 || strncmp(dg.msgs[q], "auth.mode", 9) != 0))
                    abort();
                json_t *d = json_string(dg.msgs[q]);
                json_decref(d);
            }
            gw_diag_free(&dg);
            continue;
        }
        if (dg.n != 0)
            abort();
        if (!p.codec_state)
            abort();
        exercise(&p, data, size);
        gw_codec_binary_ops.uninit(&p);
        if (p.codec_state)
            abort();
    }
    json_decref(raw);
    return 0;
}

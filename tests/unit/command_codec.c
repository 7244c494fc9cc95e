/* command_codec.c: the codecs' encode_command op: the JSON contract's exact downstream payloads
 * and a buffer too small; the binary codec's frames (the doc's reset_counter frame byte for byte,
 * a write, the frames decoding back with their seq), refusals, and each layout's seq range; the
 * JSON codec keeping a failed reply's error text. */
#include "command_test.h"

#include "codecs/binary/internal.h"

static void hex(const uint8_t *b, size_t n, char *out)
{
    for (size_t i = 0; i < n; i++)
        sprintf(out + 3 * i, i + 1 < n ? "%02X " : "%02X", b[i]);
    if (!n)
        out[0] = 0;
}

static gw_command cmd(gw_command_op op, const gw_device *dev, const char *fn_id, const char *args,
                      uint32_t seq)
{
    gw_command c;
    memset(&c, 0, sizeof(c));
    c.op = op;
    c.dev = dev;
    c.seq = seq;
    snprintf(c.msg_id, sizeof(c.msg_id), "cloud-%u", seq);
    snprintf(c.dev_msg_id, sizeof(c.dev_msg_id), "%u", seq);
    c.fn = fn_id ? gw_tm_function(dev->product, fn_id) : NULL;
    c.args = args ? json_loads(args, 0, NULL) : NULL;
    return c;
}

static void test_json(ct_env *e)
{
    const gw_device *dev = gw_config_device(e->cfg, "t-001");
    const gw_codec_ops *ops = dev->product->codec_ops;
    uint8_t out[512];
    size_t n = 99;
    gw_error err = {0, ""};
    CHECK(ops->encode_command != NULL);

    gw_command c = cmd(GW_CMD_INVOKE, dev, "reboot", "{\"delay_s\":5}", 0);
    snprintf(c.dev_msg_id, sizeof(c.dev_msg_id), "g-7");
    CHECK_INT(
        ops->encode_command(dev->product, &c, dev->id, dev->secret, out, sizeof(out), &n, &err), 0);
    out[n] = 0;
    CHECK_STR((char *)out,
              "{\"messageId\":\"g-7\",\"function\":\"reboot\",\"inputs\":{\"delay_s\":5}}");
    /* too small: GW_ETOOBIG, nothing claimed written */
    CHECK_INT(ops->encode_command(dev->product, &c, dev->id, dev->secret, out, 20, &n, &err),
              GW_ETOOBIG);
    CHECK_INT(n, 0);
    json_decref(c.args);

    c = cmd(GW_CMD_WRITE, dev, NULL, "{\"mode\":\"eco\",\"level\":2}", 0);
    snprintf(c.dev_msg_id, sizeof(c.dev_msg_id), "g-\"8\"");
    CHECK_INT(
        ops->encode_command(dev->product, &c, dev->id, dev->secret, out, sizeof(out), &n, &err), 0);
    out[n] = 0;
    CHECK_STR((char *)out,
              "{\"messageId\":\"g-\\\"8\\\"\",\"properties\":{\"mode\":\"eco\",\"level\":2}}");
    json_decref(c.args);

    c = cmd(GW_CMD_INVOKE, dev, "ping", NULL, 0);
    snprintf(c.dev_msg_id, sizeof(c.dev_msg_id), "p");
    CHECK_INT(
        ops->encode_command(dev->product, &c, dev->id, dev->secret, out, sizeof(out), &n, &err), 0);
    out[n] = 0;
    CHECK_STR((char *)out, "{\"messageId\":\"p\",\"function\":\"ping\",\"inputs\":{}}");

    c = cmd(GW_CMD_READ, dev, NULL, NULL, 0);
    CHECK_INT(
        ops->encode_command(dev->product, &c, dev->id, dev->secret, out, sizeof(out), &n, &err),
        GW_EINVAL);
}

static void test_json_reply_error(ct_env *e)
{
    const gw_product *p = gw_config_product(e->cfg, "thermo");
    gw_decode_hint h = {GW_MSG_FUNCTION_REPLY, NULL};
    gw_thing_msg m;
    gw_reject rej;
    const char *a = "{\"messageId\":\"g-7\",\"success\":false,\"error\":\"E42\","
                    "\"message\":\"overheated\"}";
    CHECK_INT(p->codec_ops->decode(p, &h, (const uint8_t *)a, strlen(a), &m, &rej), 0);
    CHECK_INT(m.success, 0);
    CHECK_STR(m.error, "E42: overheated");
    gw_thing_msg_clear(&m);
    const char *b = "{\"messageId\":\"g-7\",\"message\":\"overheated\",\"success\":false,"
                    "\"error\":\"E42\"}";
    CHECK_INT(p->codec_ops->decode(p, &h, (const uint8_t *)b, strlen(b), &m, &rej), 0);
    CHECK_STR(m.error, "E42: overheated"); /* the code first, whatever the key order */
    gw_thing_msg_clear(&m);
    h.kind = GW_MSG_WRITE_REPLY;
    const char *c = "{\"messageId\":\"w\",\"success\":false,\"message\":\"locked\"}";
    CHECK_INT(p->codec_ops->decode(p, &h, (const uint8_t *)c, strlen(c), &m, &rej), 0);
    CHECK_STR(m.error, "locked");
    gw_thing_msg_clear(&m);
    /* a long message is cut at a character boundary */
    char d[600] = "{\"messageId\":\"w\",\"success\":false,\"message\":\"";
    for (int i = 0; i < 100; i++)
        strcat(d, "\xe2\x82\xac"); /* the euro sign, 3 bytes */
    strcat(d, "\"}");
    CHECK_INT(p->codec_ops->decode(p, &h, (const uint8_t *)d, strlen(d), &m, &rej), 0);
    CHECK_INT(strlen(m.error), 159 / 3 * 3);
    gw_thing_msg_clear(&m);
}

static void test_binary(ct_env *e)
{
    const gw_device *dev = gw_config_device(e->cfg, "mtr00001");
    const gw_product *p = dev->product;
    uint8_t out[256];
    char h[800];
    size_t n = 0;
    gw_error err = {0, ""};

    /* docs/BINARY-CODEC.md: reset_counter {confirm: true}, seq 7 */
    gw_command c = cmd(GW_CMD_INVOKE, dev, "reset_counter", "{\"confirm\":true}", 7);
    CHECK_INT(p->codec_ops->encode_command(p, &c, dev->id, dev->secret, out, sizeof(out), &n, &err),
              0);
    hex(out, n, h);
    CHECK_STR(h, "68 00 06 85 00 07 01 90 3A");
    /* it decodes (as ours) back to its seq */
    gw_thing_msg m;
    gw_reject rej;
    const bin_msg *which;
    CHECK_INT(gw__binary_decode(p, true, out, n, &m, &which, &rej), 0);
    CHECK_INT(m.seq, 7);
    gw_thing_msg_clear(&m);
    json_decref(c.args);

    c = cmd(GW_CMD_WRITE, dev, NULL, "{\"tariff\":\"night\"}", 65535);
    CHECK_INT(p->codec_ops->encode_command(p, &c, dev->id, dev->secret, out, sizeof(out), &n, &err),
              0);
    CHECK_INT(n, 9);
    CHECK_INT(out[3], 0x86);
    CHECK_INT(out[4], 0xFF);
    CHECK_INT(out[5], 0xFF);
    CHECK_INT(out[6], 1); /* night */
    json_decref(c.args);

    /* seq beyond the layout's u16 field */
    c = cmd(GW_CMD_WRITE, dev, NULL, "{\"tariff\":\"day\"}", 65536);
    CHECK_INT(p->codec_ops->encode_command(p, &c, dev->id, dev->secret, out, sizeof(out), &n, &err),
              GW_EINVAL);
    json_decref(c.args);
    c = cmd(GW_CMD_READ, dev, NULL, NULL, 1);
    CHECK_INT(p->codec_ops->encode_command(p, &c, dev->id, dev->secret, out, sizeof(out), &n, &err),
              GW_EINVAL);

    /* sensor-udp: its write and its identify; a function without a frame */
    const gw_device *snr = gw_config_device(e->cfg, "snr00001");
    c = cmd(GW_CMD_INVOKE, snr, "identify", "{\"blink_s\":3}", 2);
    CHECK_INT(snr->product->codec_ops->encode_command(snr->product, &c, snr->id, snr->secret, out,
                                                      sizeof(out), &n, &err),
              0);
    CHECK_INT(out[2], 0x82);
    CHECK(memcmp(out + 3, "snr00001", 8) == 0);
    CHECK_INT(out[19] | out[20] << 8, 2);
    json_decref(c.args);
    c = cmd(GW_CMD_INVOKE, snr, "calibrate", NULL, 3);
    CHECK_INT(snr->product->codec_ops->encode_command(snr->product, &c, snr->id, snr->secret, out,
                                                      sizeof(out), &n, &err),
              GW_ENOTFOUND);
    CHECK_STR(err.msg, "no invoke message for function \"calibrate\"");

    /* seq ranges: both u16; JSON products have no frame facts */
    gw_frame_info fi = {0};
    p->codec_ops->frame_info(p, &fi);
    CHECK_INT(fi.seq_max, 65535);
    memset(&fi, 0, sizeof(fi));
    snr->product->codec_ops->frame_info(snr->product, &fi);
    CHECK_INT(fi.seq_max, 65535);
    CHECK(gw_config_product(e->cfg, "thermo")->codec_ops->frame_info == NULL);
}

int main(void)
{
    ct_env e;
    ct_setup(&e, "");
    test_json(&e);
    test_json_reply_error(&e);
    test_binary(&e);
    ct_teardown(&e);
    TEST_MAIN_END();
}

/* coap_msg.c (test): the CoAP adapter's pure layer: message parse/encode round trips and format
 * errors, request classification (paths, methods, query, critical options, Block1), the codec ->
 * Content-Format table and the Block1 reassembly bounds. */
#include "protocols/coap/coap_msg.h"

#include <stdint.h>

#include "gateway/util/error.h"
#include "test.h"

/* Encodes a request with the given path segments and queries. */
static size_t build(uint8_t *buf, size_t cap, uint8_t type, uint8_t code, const char *const *path,
                    const char *const *queries, int cf, const char *payload)
{
    gw_coap_out o;
    uint8_t tok[2] = {0xAB, 0xCD};
    gw_coap_out_begin(&o, buf, cap, type, code, 0x1234, tok, 2);
    for (size_t i = 0; path && path[i]; i++)
        gw_coap_out_opt(&o, GW_COAP_OPT_URI_PATH, path[i], strlen(path[i]));
    if (cf >= 0)
        gw_coap_out_opt_uint(&o, GW_COAP_OPT_CONTENT_FORMAT, (uint32_t)cf);
    for (size_t i = 0; queries && queries[i]; i++)
        gw_coap_out_opt(&o, GW_COAP_OPT_URI_QUERY, queries[i], strlen(queries[i]));
    if (payload)
        gw_coap_out_payload(&o, payload, strlen(payload));
    CHECK_INT(o.err, 0);
    return o.len;
}

static int classify(const char *const *path, const char *const *q, uint8_t code, gw_coap_req *r)
{
    uint8_t buf[512];
    gw_coap_msg m;
    size_t n = build(buf, sizeof(buf), GW_COAP_CON, code, path, q, 50, "{}");
    CHECK_INT(gw_coap_parse(buf, n, &m), 0);
    int rc = gw_coap_request_parse(&m, r);
    CHECK_INT(rc, r->refuse ? GW_EPROTO : 0); /* refused: GW_EPROTO, the answer in r->refuse */
    return r->refuse;
}

static void test_round_trip(void)
{
    uint8_t buf[512];
    gw_coap_msg m;
    const char *path[] = {"sensor-coap", "soil-001", "properties", "report", NULL};
    const char *q[] = {"token=s3cret", "wait=5", NULL};
    size_t n = build(buf, sizeof(buf), GW_COAP_CON, GW_COAP_PUT, path, q, 50, "{\"a\":1}");
    CHECK_INT(gw_coap_parse(buf, n, &m), 0);
    CHECK_INT(m.type, GW_COAP_CON);
    CHECK_INT(m.code, GW_COAP_PUT);
    CHECK_INT(m.mid, 0x1234);
    CHECK_INT(m.tkl, 2);
    CHECK_INT(m.token[1], 0xCD);
    CHECK_INT(m.n_opts, 7);
    CHECK_INT(m.payload_len, 7);
    gw_coap_req r;
    CHECK_INT(gw_coap_request_parse(&m, &r), 0);
    CHECK_INT(r.res, GW_COAP_RES_REPORT);
    CHECK_STR(r.product, "sensor-coap");
    CHECK_STR(r.device, "soil-001");
    CHECK(r.has_token && r.token_len == 6 && memcmp(r.token, "s3cret", 6) == 0);
    CHECK(r.has_wait && r.wait_s == 5);
    CHECK_INT(r.content_format, 50);
    CHECK_INT(r.observe, -1);

    /* long options: 13..268 and 269+ length forms, and a large delta (Size1 = 60) */
    char longv[300];
    memset(longv, 'x', sizeof(longv));
    gw_coap_out o;
    gw_coap_out_begin(&o, buf, sizeof(buf), GW_COAP_NON, GW_COAP_POST, 7, NULL, 0);
    gw_coap_out_opt(&o, GW_COAP_OPT_URI_PATH, longv, 20);
    gw_coap_out_opt(&o, GW_COAP_OPT_URI_QUERY, longv, 300);
    gw_coap_out_opt_uint(&o, GW_COAP_OPT_SIZE1, 70000);
    gw_coap_out_opt_uint(&o, 2000, 0);
    CHECK_INT(o.err, 0);
    CHECK_INT(gw_coap_parse(buf, o.len, &m), 0);
    CHECK_INT(m.n_opts, 4);
    CHECK_INT(m.opts[1].len, 300);
    CHECK_INT(m.opts[2].num, 60);
    CHECK_INT(gw_coap_opt_uint(&m.opts[2]), 70000);
    CHECK_INT(m.opts[3].num, 2000);
    CHECK_INT(m.opts[3].len, 0);
    /* out of order options and overflow are refused by the encoder */
    gw_coap_out_opt(&o, 11, "a", 1);
    CHECK_INT(o.err, GW_EINVAL);
    gw_coap_out_begin(&o, buf, 6, GW_COAP_ACK, GW_COAP_CHANGED, 7, NULL, 0);
    gw_coap_out_payload(&o, "abcdef", 6);
    CHECK_INT(o.err, GW_ETOOBIG);
}

static void test_format_errors(void)
{
    gw_coap_msg m;
    CHECK_INT(gw_coap_parse((const uint8_t *)"\x40\x01", 2, &m), GW_EINCOMPLETE);         /* < 4 */
    CHECK_INT(gw_coap_parse((const uint8_t *)"\x80\x01\x00\x01", 4, &m), GW_EINCOMPLETE); /* v2 */
    CHECK_INT(gw_coap_parse((const uint8_t *)"\x49\x01\x00\x01", 4, &m), GW_EPROTO); /* tkl 9 */
    CHECK_INT(gw_coap_parse((const uint8_t *)"\x4F\x01\x00\x01", 4, &m), GW_EPROTO); /* tkl 15 */
    CHECK_INT(gw_coap_parse((const uint8_t *)"\x42\x01\x00\x01\xAA", 5, &m), GW_EPROTO);
    CHECK_INT(gw_coap_parse((const uint8_t *)"\x40\x01\x00\x01\xF0", 5, &m), GW_EPROTO);
    CHECK_INT(gw_coap_parse((const uint8_t *)"\x40\x01\x00\x01\x1F", 5, &m), GW_EPROTO);
    CHECK_INT(gw_coap_parse((const uint8_t *)"\x40\x01\x00\x01\xB5"
                                             "ab",
                            7, &m),
              GW_EPROTO);
    CHECK_INT(gw_coap_parse((const uint8_t *)"\x40\x01\x00\x01\xFF", 5, &m), GW_EPROTO);
    CHECK_INT(gw_coap_parse((const uint8_t *)"\x40\x01\x00\x01\xD0", 5, &m), GW_EPROTO);
    CHECK_INT(gw_coap_parse((const uint8_t *)"\x40\x00\x00\x01", 4, &m), 0); /* ping */
    CHECK_INT(m.code, GW_COAP_EMPTY);
    CHECK_INT(gw_coap_parse((const uint8_t *)"\x40\x00\x00\x01\xFF\x01", 6, &m), GW_EPROTO);
    CHECK_INT(gw_coap_parse((const uint8_t *)"\x40\x01\x00\x01\xFF\x01", 6, &m), 0);
    CHECK_INT(m.payload_len, 1);
    uint8_t many[4 + GW_COAP_MAX_OPTS + 2];
    memcpy(many, "\x40\x02\x00\x01", 4);
    memset(many + 4, 0x00, sizeof(many) - 4); /* options numbered 0, delta 0, length 0 */
    CHECK_INT(gw_coap_parse(many, sizeof(many), &m), GW_ETOOBIG);
    CHECK_INT(m.mid, 1);
}

static void test_routes(void)
{
    gw_coap_req r;
    const char *ev[] = {"p", "d", "event", "overheat", NULL};
    const char *inv[] = {"p", "d", "function", "invoke", NULL};
    const char *rep[] = {"p", "d", "function", "invoke", "reply", NULL};
    const char *wr[] = {"p", "d", "properties", "write", "reply", NULL};
    const char *bad[] = {"p", "d", "properties", NULL};
    const char *bad2[] = {"p", "d", "properties", "report", "x", NULL};
    const char *empty[] = {"p", "", "properties", "report", NULL};
    CHECK_INT(classify(ev, NULL, GW_COAP_POST, &r), 0);
    CHECK_INT(r.res, GW_COAP_RES_EVENT);
    CHECK_STR(r.event, "overheat");
    CHECK_INT(classify(inv, NULL, GW_COAP_GET, &r), 0);
    CHECK_INT(r.res, GW_COAP_RES_INVOKE);
    CHECK_INT(classify(inv, NULL, GW_COAP_PUT, &r), GW_COAP_NOT_ALLOWED);
    CHECK_INT(classify(rep, NULL, GW_COAP_PUT, &r), 0);
    CHECK_INT(r.res, GW_COAP_RES_INVOKE_REPLY);
    CHECK_INT(classify(rep, NULL, GW_COAP_GET, &r), GW_COAP_NOT_ALLOWED);
    CHECK_INT(classify(wr, NULL, GW_COAP_POST, &r), 0);
    CHECK_INT(r.res, GW_COAP_RES_WRITE_REPLY);
    CHECK_INT(classify(bad, NULL, GW_COAP_POST, &r), GW_COAP_NOT_FOUND);
    CHECK_INT(classify(bad2, NULL, GW_COAP_POST, &r), GW_COAP_NOT_FOUND);
    CHECK_INT(classify(empty, NULL, GW_COAP_POST, &r), GW_COAP_NOT_FOUND);
    CHECK_INT(classify(NULL, NULL, GW_COAP_POST, &r), GW_COAP_NOT_FOUND);
    const char *q1[] = {"wait=x", NULL};
    const char *q2[] = {"token=", "other=1", NULL};
    CHECK_INT(classify(ev, q1, GW_COAP_POST, &r), GW_COAP_BAD_REQUEST);
    CHECK_INT(classify(ev, q2, GW_COAP_POST, &r), 0);
    CHECK(r.has_token && r.token_len == 0);
    char seg64[65];
    memset(seg64, 'a', 64);
    seg64[64] = 0;
    const char *toolong[] = {seg64, "d", "properties", "report", NULL};
    CHECK_INT(classify(toolong, NULL, GW_COAP_POST, &r), GW_COAP_NOT_FOUND);
}

static void test_options(void)
{
    uint8_t buf[256];
    gw_coap_out o;
    gw_coap_msg m;
    gw_coap_req r;
    /* an unknown critical option (odd) is 4.02; an unknown elective one is ignored */
    gw_coap_out_begin(&o, buf, sizeof(buf), GW_COAP_CON, GW_COAP_PUT, 1, NULL, 0);
    gw_coap_out_opt(&o, 9, "x", 1);
    CHECK_INT(gw_coap_parse(buf, o.len, &m), 0);
    CHECK_INT(gw_coap_request_parse(&m, &r), GW_EPROTO);
    CHECK_INT(r.refuse, GW_COAP_BAD_OPTION);
    CHECK_INT(r.bad_option, 9);
    gw_coap_out_begin(&o, buf, sizeof(buf), GW_COAP_CON, GW_COAP_PUT, 1, NULL, 0);
    const char *path[] = {"p", "d", "properties", "report"};
    for (int i = 0; i < 4; i++)
        gw_coap_out_opt(&o, GW_COAP_OPT_URI_PATH, path[i], strlen(path[i]));
    gw_coap_out_opt(&o, 258, NULL, 0); /* No-Response: elective */
    CHECK_INT(gw_coap_parse(buf, o.len, &m), 0);
    CHECK_INT(gw_coap_request_parse(&m, &r), 0);
    /* Block1 and Observe */
    gw_coap_out_begin(&o, buf, sizeof(buf), GW_COAP_CON, GW_COAP_PUT, 1, NULL, 0);
    gw_coap_out_opt_uint(&o, GW_COAP_OPT_OBSERVE, 0);
    for (int i = 0; i < 4; i++)
        gw_coap_out_opt(&o, GW_COAP_OPT_URI_PATH, path[i], strlen(path[i]));
    gw_coap_out_opt_uint(&o, GW_COAP_OPT_BLOCK1, gw_coap_block1_value(3, true, 2));
    CHECK_INT(gw_coap_parse(buf, o.len, &m), 0);
    CHECK_INT(gw_coap_request_parse(&m, &r), 0);
    CHECK_INT(r.observe, 0);
    CHECK(r.has_block1 && r.b1_num == 3 && r.b1_more && r.b1_szx == 2);
    /* SZX 7 is reserved */
    gw_coap_out_begin(&o, buf, sizeof(buf), GW_COAP_CON, GW_COAP_PUT, 1, NULL, 0);
    gw_coap_out_opt_uint(&o, GW_COAP_OPT_BLOCK1, 7);
    CHECK_INT(gw_coap_parse(buf, o.len, &m), 0);
    CHECK_INT(gw_coap_request_parse(&m, &r), GW_EPROTO);
    CHECK_INT(r.refuse, GW_COAP_BAD_REQUEST);
    char c[8];
    gw_coap_code_str(GW_COAP_TOO_LARGE, c);
    CHECK_STR(c, "4.13");
    gw_coap_code_str(GW_COAP_CONTINUE, c);
    CHECK_STR(c, "2.31");
}

static void test_content_formats(void)
{
    CHECK(gw_coap_codec_accepts("json", 50));
    CHECK(gw_coap_codec_accepts("json", -1));
    CHECK(!gw_coap_codec_accepts("json", 42));
    CHECK(!gw_coap_codec_accepts("json", 0));
    CHECK(gw_coap_codec_accepts("binary", 42));
    CHECK(!gw_coap_codec_accepts("binary", 50));
    CHECK(gw_coap_codec_accepts("protobuf", 42));
    CHECK(gw_coap_codec_accepts("protobuf", -1));
    CHECK(gw_coap_codec_accepts("other", 42));
    CHECK_INT(gw_coap_codec_format("json"), 50);
    CHECK_INT(gw_coap_codec_format("protobuf"), 42);
}

static void test_block_bounds(void)
{
    size_t total = 0;
    CHECK_INT(gw_coap_block1_check(0, 0, 2, 64, true, 1024, &total), 0);
    CHECK_INT(total, 64);
    CHECK_INT(gw_coap_block1_check(64, 1, 2, 64, true, 1024, &total), 0);
    CHECK_INT(total, 128);
    CHECK_INT(gw_coap_block1_check(128, 2, 2, 10, false, 1024, &total), 0); /* last, short */
    CHECK_INT(total, 138);
    CHECK_INT(gw_coap_block1_check(64, 2, 2, 64, true, 1024, &total), GW_EINCOMPLETE);  /* gap */
    CHECK_INT(gw_coap_block1_check(128, 1, 2, 64, true, 1024, &total), GW_EINCOMPLETE); /* repeat */
    CHECK_INT(gw_coap_block1_check(0, 0, 2, 63, true, 1024, &total), GW_EPROTO);
    CHECK_INT(gw_coap_block1_check(0, 0, 2, 65, false, 1024, &total), GW_EPROTO);
    CHECK_INT(gw_coap_block1_check(0, 0, 7, 16, true, 1024, &total), GW_EPROTO);
    CHECK_INT(gw_coap_block1_check(960, 15, 2, 64, true, 1024, &total), 0); /* exactly max */
    CHECK_INT(total, 1024);
    CHECK_INT(gw_coap_block1_check(1024, 16, 2, 1, false, 1024, &total), GW_ETOOBIG);
    CHECK_INT(gw_coap_block1_check(0, 0, 6, 1024, true, 512, &total), GW_ETOOBIG);
    /* a huge block number cannot wrap into a valid offset */
    CHECK_INT(gw_coap_block1_check(0, 0xFFFFF, 6, 1024, true, 1u << 30, &total), GW_EINCOMPLETE);
    CHECK_INT(gw_coap_block1_value(5, true, 6), (5 << 4) | 8 | 6);
}

int main(void)
{
    test_round_trip();
    test_format_errors();
    test_routes();
    test_options();
    test_content_formats();
    test_block_bounds();
    TEST_MAIN_END();
}

/* binary_hmac.c: SHA-256 against the FIPS 180-4 examples ("abc", empty, 448-bit, a million 'a',
 * fed in pieces), HMAC-SHA256 against RFC 4231 test cases 1-4, 5 (truncated), 6 and 7; the
 * "frame.auth" section's load errors; MAC'd frames encoded, decoded and verified (datagram layout
 * with and without a token, JT/T 808-style escaping), acks and commands carrying the MAC. */
#include "binary_test.h"

static const gw_codec_ops *ops = &gw_codec_binary_ops;

static const char *hex32(const uint8_t *b, size_t n)
{
    static char s[2 * 64 + 1];
    for (size_t i = 0; i < n && i < 64; i++)
        snprintf(s + 2 * i, 3, "%02x", b[i]);
    s[2 * (n < 64 ? n : 64)] = '\0';
    return s;
}

static void test_sha256(void)
{
    uint8_t d[32];
    gw__sha256("abc", 3, d);
    CHECK_STR(hex32(d, 32), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    gw__sha256("", 0, d);
    CHECK_STR(hex32(d, 32), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    const char *m448 = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
    gw__sha256(m448, strlen(m448), d);
    CHECK_STR(hex32(d, 32), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    /* the same, fed in pieces of every size 1..56 */
    for (size_t step = 1; step <= 56; step++) {
        gw__sha256_ctx s;
        gw__sha256_init(&s);
        for (size_t i = 0; i < 56; i += step)
            gw__sha256_update(&s, m448 + i, 56 - i < step ? 56 - i : step);
        gw__sha256_final(&s, d);
        CHECK_STR(hex32(d, 32), "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
    }
    /* one million 'a' in chunks of 1000 */
    char a[1000];
    gw__sha256_ctx s;
    memset(a, 'a', sizeof(a));
    gw__sha256_init(&s);
    for (int i = 0; i < 1000; i++)
        gw__sha256_update(&s, a, sizeof(a));
    gw__sha256_final(&s, d);
    CHECK_STR(hex32(d, 32), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
    /* padding edges: 55, 56, 63, 64 bytes */
    static const struct {
        size_t n;
        const char *want;
    } edges[] = {
        {55, "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318"},
        {56, "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"},
        {63, "7d3e74a05d7db15bce4ad9ec0658ea98e3f06eeecf16b4c6fff2da457ddc2f34"},
        {64, "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"},
    };
    for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
        gw__sha256(a, edges[i].n, d);
        CHECK_STR(hex32(d, 32), edges[i].want);
    }
}

static void test_hmac(void)
{
    uint8_t k[131], data[160], mac[32];
    /* RFC 4231 4.2: test case 1 */
    memset(k, 0x0b, 20);
    gw__hmac_sha256(k, 20, "Hi There", 8, mac);
    CHECK_STR(hex32(mac, 32), "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7");
    /* 4.3: a key shorter than the output */
    const char *d2 = "what do ya want for nothing?";
    gw__hmac_sha256("Jefe", 4, d2, strlen(d2), mac);
    CHECK_STR(hex32(mac, 32), "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    /* 4.4 */
    memset(k, 0xaa, 20);
    memset(data, 0xdd, 50);
    gw__hmac_sha256(k, 20, data, 50, mac);
    CHECK_STR(hex32(mac, 32), "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe");
    /* 4.5 */
    for (int i = 0; i < 25; i++)
        k[i] = (uint8_t)(i + 1);
    memset(data, 0xcd, 50);
    gw__hmac_sha256(k, 25, data, 50, mac);
    CHECK_STR(hex32(mac, 32), "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b");
    /* 4.6: truncated to 128 bits */
    memset(k, 0x0c, 20);
    gw__hmac_sha256(k, 20, "Test With Truncation", 20, mac);
    CHECK_STR(hex32(mac, 16), "a3b6167473100ee06e0c796c2955552b");
    /* 4.7: a key longer than the block is hashed first */
    memset(k, 0xaa, 131);
    const char *d6 = "Test Using Larger Than Block-Size Key - Hash Key First";
    gw__hmac_sha256(k, 131, d6, strlen(d6), mac);
    CHECK_STR(hex32(mac, 32), "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
    /* 4.8 */
    const char *d7 = "This is a test using a larger than block-size key and a larger than "
                     "block-size data. The key needs to be hashed before being used by the HMAC "
                     "algorithm.";
    gw__hmac_sha256(k, 131, d7, strlen(d7), mac);
    CHECK_STR(hex32(mac, 32), "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2");

    uint8_t x[4] = {1, 2, 3, 4}, y[4] = {1, 2, 3, 5};
    CHECK(gw__ct_equal(x, x, 4));
    CHECK(!gw__ct_equal(x, y, 4));
    CHECK(gw__ct_equal(x, y, 3));
}

/* ---- the "auth" section ----------------------------------------------------------------- */

/* sensor-udp with the token replaced by an 8-byte HMAC before the CRC-32 (keep_token: both). */
static json_t *hmac_sensor(bool keep_token, const char *auth_json)
{
    json_t *root = bt_read_example("sensor-udp.json");
    if (!keep_token)
        bt_at(root, "frame.header[4]", json_null(), true);
    json_t *auth = json_loads(auth_json, 0, NULL);
    if (!auth) {
        fprintf(stderr, "bad auth json %s\n", auth_json);
        exit(2);
    }
    json_object_set_new(json_object_get(root, "frame"), "auth", auth);
    return root;
}

#define AUTH8 "{\"algorithm\": \"hmac-sha256\", \"from\": 0, \"to\": -12, \"at\": -12, \"size\": 8}"

static bt_loaded load_json(json_t *root)
{
    char *text = bt_dump_mqtt(root);
    bt_loaded r = bt_load_text(text);
    free(text);
    json_decref(root);
    return r;
}

static int n_cases;

#define CHECK_AUTH_ERR(auth, want)                                                                 \
    do {                                                                                           \
        bt_loaded r_ = load_json(hmac_sensor(false, auth));                                        \
        n_cases++;                                                                                 \
        CHECK_INT(r_.rc, GW_ECONFIG);                                                              \
        CHECK_CONTAINS(r_.errors, "\nproducts/p.json: " want);                                     \
        bt_free(&r_);                                                                              \
    } while (0)

static void test_layout_errors(void)
{
    bt_loaded r = load_json(hmac_sensor(false, AUTH8));
    if (r.rc)
        fprintf(stderr, "the HMAC sensor does not load:%s", r.errors);
    CHECK_INT(r.rc, 0);
    if (r.p) {
        const bin_layout *l = r.p->codec_state;
        CHECK(l->has_auth);
        CHECK_INT(l->mac_size, 8);
        CHECK_INT(l->mac_at, -12);
        CHECK_INT(l->header_tail, 12);
    }
    bt_free(&r);
    /* defaults: 32 bytes right before the check, covering everything before it */
    r = load_json(hmac_sensor(false, "{\"algorithm\": \"hmac-sha256\"}"));
    CHECK_INT(r.rc, 0);
    if (r.p) {
        const bin_layout *l = r.p->codec_state;
        CHECK_INT(l->mac_size, 32);
        CHECK_INT(l->mac_at, -36);
        CHECK_INT(l->mac_from, 0);
        CHECK_INT(l->mac_to, -36);
    }
    bt_free(&r);

    CHECK_AUTH_ERR("[1]", "frame.auth: must be an object");
    CHECK_AUTH_ERR("{\"algorithm\": \"hmac-md5\"}",
                   "frame.auth.algorithm: must be \"hmac-sha256\"");
    CHECK_AUTH_ERR("{\"algorithm\": \"hmac-sha256\", \"key\": 1}", "frame.auth.key: unknown key");
    CHECK_AUTH_ERR("{\"algorithm\": \"hmac-sha256\", \"size\": 3}",
                   "frame.auth.size: 3 is out of range 4..32");
    CHECK_AUTH_ERR("{\"algorithm\": \"hmac-sha256\", \"size\": 33}",
                   "frame.auth.size: 33 is out of range 4..32");
    CHECK_AUTH_ERR("{\"algorithm\": \"hmac-sha256\", \"size\": 8, \"at\": -3}",
                   "frame.auth.at: a 8-byte MAC at -3 runs past the end");
    CHECK_AUTH_ERR("{\"algorithm\": \"hmac-sha256\", \"size\": 8, \"at\": -12, \"to\": -4}",
                   "frame.auth: the MAC lies inside the bytes it covers");
    CHECK_AUTH_ERR("{\"algorithm\": \"hmac-sha256\", \"size\": 8, \"at\": -12, \"to\": 0}",
                   "frame.auth.to: an empty range");
    CHECK_AUTH_ERR("{\"algorithm\": \"hmac-sha256\", \"size\": 8, \"at\": 40, \"from\": 30, "
                   "\"to\": 20}",
                   "frame.auth.from: 30 is after to 20");
    /* a MAC inside the check's own place, or not covered by the check */
    CHECK_AUTH_ERR("{\"algorithm\": \"hmac-sha256\", \"size\": 4, \"at\": -4}",
                   "frame.auth: the check must cover the MAC");
    /* a MAC whose range covers the check */
    CHECK_AUTH_ERR("{\"algorithm\": \"hmac-sha256\", \"size\": 8, \"at\": -12, \"from\": -4, "
                   "\"to\": 128}",
                   "frame.auth: the MAC must not cover the check");
    /* a MAC on a field */
    CHECK_AUTH_ERR("{\"algorithm\": \"hmac-sha256\", \"size\": 8, \"at\": 11, \"from\": 19, "
                   "\"to\": -4}",
                   "frame.header[4].offset: overlaps the MAC (frame.auth) (offset 11, 8 bytes)");
    /* the check must cover the MAC: a check that stops before it */
    {
        json_t *root = hmac_sensor(false, AUTH8);
        bt_at(root, "frame.check.to", json_integer(-12), false);
        bt_loaded r2 = load_json(root);
        n_cases++;
        CHECK_INT(r2.rc, GW_ECONFIG);
        CHECK_CONTAINS(r2.errors, "\nproducts/p.json: frame.auth: the check must cover the MAC");
        bt_free(&r2);
    }
    /* a fixed message length too short for the MAC */
    {
        json_t *root = hmac_sensor(false, AUTH8);
        bt_at(root, "frame.messages[1].length", json_integer(14), false);
        bt_loaded r2 = load_json(root);
        n_cases++;
        CHECK_INT(r2.rc, GW_ECONFIG);
        CHECK_CONTAINS(r2.errors, "\nproducts/p.json: frame");
        bt_free(&r2);
    }
    /* without a check: the MAC is last by default */
    {
        json_t *root = hmac_sensor(false, "{\"algorithm\": \"hmac-sha256\", \"size\": 16}");
        json_object_del(json_object_get(root, "frame"), "check");
        bt_loaded r2 = load_json(root);
        CHECK_INT(r2.rc, 0);
        if (r2.p)
            CHECK_INT(((const bin_layout *)r2.p->codec_state)->mac_at, -16);
        bt_free(&r2);
    }
}

/* ---- round trips ------------------------------------------------------------------------ */

static const bin_msg *up_msg(const gw_product *p, int kind)
{
    const bin_layout *l = p->codec_state;
    for (size_t i = 0; i < l->n_msgs; i++)
        if (l->msgs[i].kind == kind)
            return &l->msgs[i];
    return NULL;
}

/* A device's frame, MAC'd with secret (the codec's own encoder; tests only). */
static size_t build(const gw_product *p, int kind, const char *values, const char *dev,
                    const char *secret, uint32_t seq, uint8_t *out, size_t cap)
{
    gw_error err = {0};
    size_t n = 0;
    json_t *v = values ? json_loads(values, 0, NULL) : NULL;
    bin_src src = {.seq = seq, .values = v, .device_id = dev, .secret = secret};
    const bin_msg *m = up_msg(p, kind);
    CHECK(m != NULL);
    int rc = m ? gw__binary_encode(p->codec_state, m, &src, out, cap, &n, &err) : -1;
    if (rc)
        fprintf(stderr, "build: %s\n", err.msg);
    CHECK_INT(rc, 0);
    json_decref(v);
    return n;
}

static void put_crc32_be(uint8_t *b, size_t n)
{
    uint32_t c = bt_crc("crc32", b, n - 4);
    b[n - 4] = (uint8_t)(c >> 24), b[n - 3] = (uint8_t)(c >> 16);
    b[n - 2] = (uint8_t)(c >> 8), b[n - 1] = (uint8_t)c;
}

static void test_datagram_roundtrip(void)
{
    bt_loaded r = load_json(hmac_sensor(false, AUTH8));
    const gw_product *p = r.p;
    uint8_t f[256], out[256], mac[32];
    gw_thing_msg m, a;
    gw_reject rej = {0};
    size_t n, k;
    gw_error err = {0};
    const bin_msg *which;
    if (!p)
        return;
    const char *vals = "{\"temperature\": 21.5, \"humidity\": 45.2, \"battery\": 87, "
                       "\"door_open\": 1, \"interval_s\": 60}";
    n = build(p, BIN_K_REPORT, vals, "snr00001", "s3cret-1", 1, f, sizeof(f));
    CHECK_INT(n, 3 + 8 + 2 + 8 + 8 + 4);
    /* the MAC is HMAC-SHA256("s3cret-1", bytes 0..n-12) cut to 8 bytes, before the CRC-32 */
    gw__hmac_sha256("s3cret-1", 8, f, n - 12, mac);
    CHECK_STR(bt_hex(f + n - 12, 8), bt_hex(mac, 8));
    CHECK_INT(bt_crc("crc32", f, n - 4), (uint32_t)f[n - 4] << 24 | (uint32_t)f[n - 3] << 16 |
                                             (uint32_t)f[n - 2] << 8 | f[n - 1]);

    CHECK_INT(ops->decode(p, NULL, f, n, &m, &rej), 0);
    CHECK_INT(m.kind, GW_MSG_PROPERTY_REPORT);
    CHECK_STR(m.device_id, "snr00001");
    CHECK_INT(m.auth_state, 1);
    CHECK_INT(ops->verify(p, &m, f, n, "s3cret-1"), 0);
    CHECK_INT(ops->verify(p, &m, f, n, "s3cret-2"), GW_EAUTH);
    CHECK_INT(ops->verify(p, &m, f, n, "s3cret-"), GW_EAUTH);
    CHECK_INT(ops->verify(p, &m, f, n, ""), GW_EAUTH);
    CHECK_INT(ops->verify(p, &m, f, n, NULL), GW_EAUTH);
    CHECK_INT(ops->verify(p, &m, NULL, 0, "s3cret-1"), GW_EAUTH);

    /* the ack carries a MAC with the same secret; no secret, no ack */
    CHECK_INT(ops->encode_ack(p, &m, 0, "s3cret-1", out, sizeof(out), &k), 0);
    CHECK_INT(k, 3 + 8 + 2 + 1 + 8 + 4);
    gw__hmac_sha256("s3cret-1", 8, out, k - 12, mac);
    CHECK_STR(bt_hex(out + k - 12, 8), bt_hex(mac, 8));
    CHECK_INT(gw__binary_decode(p, true, out, k, &a, &which, &rej), 0);
    CHECK(which && which->kind == BIN_K_ACK);
    CHECK_INT(a.seq, 1);
    gw_thing_msg_clear(&a);
    CHECK_INT(ops->encode_ack(p, &m, 0, NULL, out, sizeof(out), &k), 0);
    CHECK_INT(k, 0);
    gw_thing_msg_clear(&m);

    /* any flipped bit covered by the MAC (CRC fixed up) or in the MAC fails verify */
    for (size_t i = 0; i < n - 4; i++) {
        uint8_t g[256];
        memcpy(g, f, n);
        g[i] ^= 0x01;
        put_crc32_be(g, n);
        if (ops->decode(p, NULL, g, n, &m, &rej) == 0) {
            if (ops->verify(p, &m, g, n, "s3cret-1") != GW_EAUTH) {
                fprintf(stderr, "byte %zu flipped: verify passes\n", i);
                CHECK(0);
            }
        }
        gw_thing_msg_clear(&m);
    }
    /* a bad CRC is a bad check, before any MAC */
    f[n - 1] ^= 0xFF;
    CHECK_INT(ops->decode(p, NULL, f, n, &m, &rej), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_BAD_CHECK);
    f[n - 1] ^= 0xFF;
    /* too short for the MAC: malformed */
    uint8_t s[8] = {0xA5, 1, 2, 0, 0, 0, 0, 0};
    put_crc32_be(s, 8);
    CHECK_INT(ops->decode(p, NULL, s, 8, &m, &rej), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_MALFORMED_PAYLOAD);
    gw_thing_msg_clear(&m);

    /* the documented example (docs/BINARY-CODEC.md section 5a) */
    n = build(p, BIN_K_HEARTBEAT, NULL, "hmac0001", "first-device-key", 1, f, sizeof(f));
    CHECK_STR(bt_hex(f, n),
              "A5 01 02 68 6D 61 63 30 30 30 31 01 00 1E D4 32 13 DE 82 29 37 13 0A 72 C8");
    /* heartbeat and event */
    n = build(p, BIN_K_HEARTBEAT, NULL, "snr00002", "other", 7, f, sizeof(f));
    CHECK_INT(ops->decode(p, NULL, f, n, &m, &rej), 0);
    CHECK_INT(ops->verify(p, &m, f, n, "other"), 0);
    CHECK_INT(ops->verify(p, &m, f, n, "s3cret-1"), GW_EAUTH);
    gw_thing_msg_clear(&m);

    /* commands: MAC'd with the device's secret; without one, refused */
    json_t *in = json_pack("{s:i}", "blink_s", 5);
    CHECK_INT(gw_binary_encode_command(p, "snr00001", "s3cret-1", "identify", in, 5, out,
                                       sizeof(out), &k, &err),
              0);
    gw__hmac_sha256("s3cret-1", 8, out, k - 12, mac);
    CHECK_STR(bt_hex(out + k - 12, 8), bt_hex(mac, 8));
    CHECK_INT(gw__binary_decode(p, true, out, k, &a, &which, &rej), 0);
    CHECK(which && which->kind == BIN_K_INVOKE);
    gw_thing_msg_clear(&a);
    CHECK_INT(gw_binary_encode_command(p, "snr00001", NULL, "identify", in, 5, out, sizeof(out), &k,
                                       &err),
              GW_EINVAL);
    CHECK_CONTAINS(err.msg, "frame.auth");
    json_decref(in);
    bt_free(&r);
}

/* Token and MAC together: both must match. */
static void test_token_and_mac(void)
{
    bt_loaded r = load_json(hmac_sensor(true, AUTH8));
    const gw_product *p = r.p;
    uint8_t f[256];
    gw_thing_msg m;
    gw_reject rej = {0};
    if (!p) {
        CHECK(0);
        return;
    }
    /* the encoder writes zeros for a secret field; put the token in by hand and fix MAC + CRC */
    size_t n = build(p, BIN_K_HEARTBEAT, NULL, "snr00001", "tok12345", 3, f, sizeof(f));
    memcpy(f + 11, "tok12345", 8);
    uint8_t mac[32];
    gw__hmac_sha256("tok12345", 8, f, n - 12, mac);
    memcpy(f + n - 12, mac, 8);
    put_crc32_be(f, n);
    CHECK_INT(ops->decode(p, NULL, f, n, &m, &rej), 0);
    CHECK_STR(m.secret, "tok12345");
    CHECK_INT(ops->verify(p, &m, f, n, "tok12345"), 0);
    gw_thing_msg_clear(&m);
    /* right MAC, wrong token */
    memcpy(f + 11, "tok12346", 8);
    gw__hmac_sha256("tok12345", 8, f, n - 12, mac);
    memcpy(f + n - 12, mac, 8);
    put_crc32_be(f, n);
    CHECK_INT(ops->decode(p, NULL, f, n, &m, &rej), 0);
    CHECK_INT(ops->verify(p, &m, f, n, "tok12345"), GW_EAUTH);
    gw_thing_msg_clear(&m);
    bt_free(&r);
}

/* JT/T 808-style: the MAC is over the un-escaped body, the wire escapes MAC bytes too. */
static void test_escaped_roundtrip(void)
{
    json_t *root = bt_read_example("tracker-808.json");
    json_object_set_new(json_object_get(root, "frame"), "auth",
                        json_pack("{s:s,s:i}", "algorithm", "hmac-sha256", "size", 4));
    bt_loaded r = load_json(root);
    const gw_product *p = r.p;
    uint8_t f[512], out[512];
    gw_thing_msg m, a;
    gw_reject rej = {0};
    size_t n, k, skip;
    int escaped = 0;
    const bin_msg *which;
    if (!p) {
        fprintf(stderr, "808 + auth does not load:%s", r.errors);
        CHECK(0);
        return;
    }
    for (uint32_t seq = 1; seq <= 300; seq++) {
        n = build(p, BIN_K_HEARTBEAT, NULL, "013912345678", "auth808x", seq, f, sizeof(f));
        escaped += n > 15 + 4;
        CHECK_INT(ops->frame(p, f, n, &skip), (int)n);
        CHECK_INT(ops->decode(p, NULL, f, n, &m, &rej), 0);
        CHECK_INT(m.seq, seq);
        CHECK_INT(ops->verify(p, &m, f, n, "auth808x"), 0);
        CHECK_INT(ops->verify(p, &m, f, n, "auth808y"), GW_EAUTH);
        CHECK_INT(ops->encode_ack(p, &m, 0, "auth808x", out, sizeof(out), &k), 0);
        CHECK(k > 0);
        CHECK_INT(gw__binary_decode(p, true, out, k, &a, &which, &rej), 0);
        CHECK_INT(ops->verify(p, &m, out, k, "auth808x"), 0); /* the ack's MAC, same rule */
        gw_thing_msg_clear(&a);
        gw_thing_msg_clear(&m);
    }
    CHECK(escaped > 0); /* some MAC or check byte needed escaping */
    bt_free(&r);
}

int main(void)
{
    test_sha256();
    test_hmac();
    test_layout_errors();
    test_datagram_roundtrip();
    test_token_and_mac();
    test_escaped_roundtrip();
    printf("%d auth layout error cases\n", n_cases);
    TEST_MAIN_END();
}

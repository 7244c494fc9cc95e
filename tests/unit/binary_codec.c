/* binary_codec.c: the binary codec on its own: the check algorithms against their standard
 * "123456789" vectors, the documented example frames of the three example products decoded
 * byte for byte, acks and commands encoded to the documented bytes and decoded back, every
 * framing mode fed whole, split at every byte boundary and byte by byte, every field type and
 * transform, bad checks, unknown messages, truncated and oversized frames, and garbage streams. */
#include "binary_test.h"
#include "../fuzz/binary_text_diff.h"

#include <math.h>

static const gw_reject REFUSED = {GW_R_OUT_OF_RANGE, "properties.v: 9 is above max 5"};

static const gw_codec_ops *ops = &gw_codec_binary_ops;

/* ---- helpers ---------------------------------------------------------------------------- */

static int decode_hex(const gw_product *p, const char *hex, gw_thing_msg *m, gw_reject *rej)
{
    uint8_t b[2048];
    size_t n = bt_unhex(hex, b, sizeof(b));
    memset(rej, 0, sizeof(*rej));
    /* every frame decoded here: a report as text (hint.check) agrees with the general path */
    if (binary_text_diff(p, b, n) < 0) {
        fprintf(stderr, "  %s: %s\n", hex, binary_text_diff_why);
        CHECK(!"binary_text_diff");
    }
    return ops->decode(p, NULL, b, n, m, rej);
}

#define CHECK_VAL_INT(m, key, want)                                                                \
    do {                                                                                           \
        json_t *v_ = json_object_get((m)->values, key);                                            \
        CHECK(json_is_integer(v_));                                                                \
        CHECK_INT(json_integer_value(v_), want);                                                   \
    } while (0)

#define CHECK_VAL_REAL(m, key, want)                                                               \
    do {                                                                                           \
        json_t *v_ = json_object_get((m)->values, key);                                            \
        CHECK(json_is_real(v_));                                                                   \
        if (fabs(json_real_value(v_) - (want)) > 1e-9) {                                           \
            fprintf(stderr, "%s:%d: %s = %.17g, want %.17g\n", __FILE__, __LINE__, key,            \
                    json_real_value(v_), (double)(want));                                          \
            gw_t_fail++;                                                                           \
        }                                                                                          \
    } while (0)

#define CHECK_VAL_STR(m, key, want)                                                                \
    CHECK_STR(json_string_value(json_object_get((m)->values, key)), want)

#define CHECK_VAL_BOOL(m, key, want)                                                               \
    do {                                                                                           \
        json_t *v_ = json_object_get((m)->values, key);                                            \
        CHECK(json_is_boolean(v_) && json_is_true(v_) == (want));                                  \
    } while (0)

#define CHECK_BYTES(got, n, want_hex)                                                              \
    do {                                                                                           \
        uint8_t w_[2048];                                                                          \
        size_t wn_ = bt_unhex(want_hex, w_, sizeof(w_));                                           \
        CHECK_STR(bt_hex(got, n), bt_hex(w_, wn_));                                                \
    } while (0)

static const bin_msg *msg_by_match(const gw_product *p, int kind, uint32_t match)
{
    const bin_layout *l = p->codec_state;
    for (size_t i = 0; i < l->n_msgs; i++)
        if (l->msgs[i].kind == kind && (!l->msgs[i].has_match || l->msgs[i].match == match))
            return &l->msgs[i];
    return NULL;
}

/* An upstream frame built by the codec's own encoder from values (tests only). */
static size_t build_up(const gw_product *p, int kind, uint32_t match, const char *values_json,
                       uint32_t seq, int status, uint8_t *out, size_t cap)
{
    const bin_msg *m = msg_by_match(p, kind, match);
    gw_error err = {0};
    size_t n = 0;
    json_t *v = values_json ? json_loads(values_json, 0, NULL) : NULL;
    bin_src src = {.status = status, .seq = seq, .values = v};
    CHECK(m != NULL);
    int rc = m ? gw__binary_encode(p->codec_state, m, &src, out, cap, &n, &err) : -1;
    if (rc)
        fprintf(stderr, "build_up: %s\n", err.msg);
    CHECK_INT(rc, 0);
    json_decref(v);
    return n;
}

/* A stream as a TCP adapter sees it: bytes appended, frames cut and decoded as they complete. */
typedef struct stream {
    uint8_t buf[8192];
    size_t len;
    int frames;
    uint32_t seqs[64];
    int error;   /* frame()'s negative return, if any */
    int rejects; /* frames that did not decode */
    size_t skipped;
} stream;

static void feed(const gw_product *p, stream *s, const uint8_t *data, size_t n)
{
    if (s->error)
        return;
    memcpy(s->buf + s->len, data, n);
    s->len += n;
    for (;;) {
        size_t skip = 0;
        int rc = ops->frame(p, s->buf, s->len, &skip);
        if (skip > s->len) {
            CHECK(skip <= s->len);
            s->error = -1;
            return;
        }
        if (rc < 0) {
            s->error = rc;
            return;
        }
        s->skipped += skip;
        if (rc == 0) {
            memmove(s->buf, s->buf + skip, s->len - skip);
            s->len -= skip;
            return;
        }
        CHECK(skip + (size_t)rc <= s->len);
        gw_thing_msg m;
        gw_reject rej = {0};
        if (ops->decode(p, NULL, s->buf + skip, (size_t)rc, &m, &rej) == 0) {
            if (s->frames < 64)
                s->seqs[s->frames] = m.seq;
            s->frames++;
        } else {
            s->rejects++;
        }
        gw_thing_msg_clear(&m);
        size_t used = skip + (size_t)rc;
        memmove(s->buf, s->buf + used, s->len - used);
        s->len -= used;
    }
}

/* The frames in buf (n frames with seqs 1..n) come out whole, split at every byte boundary, and
 * byte by byte. */
static void check_stream(const gw_product *p, const uint8_t *buf, size_t len, int n,
                         const char *what)
{
    stream *s = calloc(1, sizeof(*s));
    int bad_splits = 0;
    feed(p, s, buf, len);
    CHECK_INT(s->frames, n);
    CHECK_INT(s->error, 0);
    CHECK_INT(s->rejects, 0);
    for (int i = 0; i < n && i < 64; i++)
        CHECK_INT(s->seqs[i], i + 1);
    for (size_t k = 0; k <= len; k++) {
        memset(s, 0, sizeof(*s));
        feed(p, s, buf, k);
        feed(p, s, buf + k, len - k);
        bool ok = s->frames == n && !s->error && !s->rejects && s->len == 0;
        for (int i = 0; ok && i < n && i < 64; i++)
            ok = s->seqs[i] == (uint32_t)(i + 1);
        bad_splits += !ok;
    }
    if (bad_splits)
        fprintf(stderr, "%s: %d splits went wrong\n", what, bad_splits);
    CHECK_INT(bad_splits, 0);
    memset(s, 0, sizeof(*s));
    for (size_t k = 0; k < len; k++)
        feed(p, s, buf + k, 1);
    CHECK_INT(s->frames, n);
    CHECK_INT(s->error, 0);
    free(s);
}

/* ---- checks ----------------------------------------------------------------------------- */

/* A bit-at-a-time CRC straight from the Rocksoft model (Williams, "A painless guide to CRC error
 * detection algorithms"): an oracle for the table-driven one that shares none of its code. */
static uint32_t crc_bitwise(unsigned w, uint32_t poly, uint32_t init, bool refin, bool refout,
                            uint32_t xorout, const uint8_t *b, size_t n)
{
    uint64_t top = 1ull << (w - 1), mask = (top << 1) - 1, r = init;
    for (size_t i = 0; i < n; i++) {
        uint8_t c = b[i];
        for (unsigned k = 0; k < 8; k++) {
            unsigned bit = refin ? (c >> k) & 1u : (c >> (7 - k)) & 1u;
            bool t = (r & top) != 0;
            r = (r << 1) & mask;
            if (t ^ bit)
                r ^= poly;
        }
    }
    if (refout) {
        uint64_t x = 0;
        for (unsigned k = 0; k < w; k++)
            x |= ((r >> k) & 1u) << (w - 1 - k);
        r = x;
    }
    return (uint32_t)((r ^ xorout) & mask);
}

/* Every named CRC gives its catalogue check value (written here from the RevEng catalogue, not
 * read back from binary_check.c), and agrees with the bit-at-a-time oracle on other inputs. */
static void test_check_vectors(void)
{
    static const struct {
        const char *name;
        uint32_t check;
    } want[] = {
        {"crc8", 0xF4},
        {"crc8-smbus", 0xF4},
        {"crc8-maxim", 0xA1},
        {"crc8-itu", 0xA1},
        {"crc8-cdma2000", 0xDA},
        {"crc8-autosar", 0xDF},
        {"crc16-arc", 0xBB3D},
        {"crc16-ibm", 0xBB3D},
        {"crc16-modbus", 0x4B37},
        {"crc16-usb", 0xB4C8},
        {"crc16-maxim", 0x44C2},
        {"crc16-buypass", 0xFEE8},
        {"crc16-x25", 0x906E},
        {"crc16-kermit", 0x2189},
        {"crc16-mcrf4xx", 0x6F91},
        {"crc16-ccitt-false", 0x29B1},
        {"crc16-ccitt", 0x29B1},
        {"crc16-xmodem", 0x31C3},
        {"crc16-genibus", 0xD64E},
        {"crc16-dnp", 0xEA82},
        {"crc32", 0xCBF43926u},
        {"crc32c", 0xE3069283u},
        {"crc32-bzip2", 0xFC891918u},
        {"crc32-mpeg2", 0x0376E6E7u},
        {"crc32-posix", 0x765E7680u},
        {"crc32-jamcrc", 0x340BC6D9u},
        {"crc32-autosar", 0x1697D06Au},
    };
    const uint8_t *v = (const uint8_t *)"123456789";
    size_t n_cat;
    const gw__crc_params *cat = gw__crc_catalogue(&n_cat);
    CHECK_INT(n_cat, sizeof(want) / sizeof(want[0])); /* a new name gets a line above */
    uint8_t junk[300];
    for (size_t i = 0; i < sizeof(junk); i++)
        junk[i] = (uint8_t)(i * 37u + 11u);
    for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++) {
        const gw__crc_params *k = gw__crc_find(want[i].name);
        CHECK(k != NULL);
        if (!k)
            continue;
        gw__crc c;
        CHECK_INT(gw__crc_init(&c, k), 0);
        CHECK_INT(gw__crc_compute(&c, v, 9), want[i].check);
        CHECK_INT(bt_crc(want[i].name, v, 9), want[i].check);
        CHECK_INT(gw__crc_compute(&c, junk, sizeof(junk)),
                  crc_bitwise(k->width, k->poly, k->init, k->refin, k->refout, k->xorout, junk,
                              sizeof(junk)));
        /* no bytes: init, reflected if refin != refout, xorout */
        CHECK_INT(gw__crc_compute(&c, v, 0),
                  crc_bitwise(k->width, k->poly, k->init, k->refin, k->refout, k->xorout, v, 0));
    }
    CHECK(gw__crc_find("crc16") == NULL);
    CHECK(gw__crc_find("CRC-16/X-25") == NULL);
    CHECK(cat[0].name != NULL);
    CHECK_INT(bt_crc("crc32", v, 0), 0);
    CHECK_INT(bt_crc("crc16-modbus", v, 0), 0xFFFF);
    /* every width and reflection combination, odd parameters: table == oracle; a wrong check
     * value is reported (1), a width outside 8/16/32 refused (-1) */
    static const uint8_t widths[] = {8, 16, 32};
    for (int wi = 0; wi < 3; wi++)
        for (int ri = 0; ri < 2; ri++)
            for (int ro = 0; ro < 2; ro++) {
                unsigned w = widths[wi];
                uint32_t m = w == 32 ? 0xFFFFFFFFu : (1u << w) - 1;
                gw__crc_params cp = {"t", (uint8_t)w, 0x8BADF00Du & m, 0x12345678u & m,
                                     ri,  ro,         0x0F0F0F0Fu & m, 0};
                cp.check = crc_bitwise(w, cp.poly, cp.init, ri, ro, cp.xorout, v, 9);
                gw__crc c;
                CHECK_INT(gw__crc_init(&c, &cp), 0);
                CHECK_INT(gw__crc_compute(&c, junk, sizeof(junk)),
                          crc_bitwise(w, cp.poly, cp.init, ri, ro, cp.xorout, junk, sizeof(junk)));
                cp.check ^= 1;
                CHECK_INT(gw__crc_init(&c, &cp), 1);
            }
    gw__crc_params bad = {"t", 12, 0x80F, 0, false, true, 0, 0xDAF};
    gw__crc c;
    CHECK_INT(gw__crc_init(&c, &bad), -1);
}

/* The table-driven CRC (its starting register computed once when the layout loads) against the
 * bit-at-a-time oracle on random inputs of random lengths: every algorithm of the catalogue and
 * random parameter sets of every width and reflection (what "check": {"crc": {...}} accepts). */
static void test_crc_random(void)
{
    uint64_t rng = 0x9E3779B97F4A7C15ull;
#define NEXT() (rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17, rng)
    uint8_t buf[600];
    size_t n_cat, bad = 0;
    const gw__crc_params *cat = gw__crc_catalogue(&n_cat);
    for (size_t a = 0; a < n_cat + 200; a++) {
        gw__crc_params cp;
        if (a < n_cat) {
            cp = cat[a];
        } else { /* a random set: any poly, init, xorout, refin / refout */
            unsigned w = (unsigned[]){8, 16, 32}[NEXT() % 3];
            uint32_t m = w == 32 ? 0xFFFFFFFFu : (1u << w) - 1;
            cp =
                (gw__crc_params){"r",        (uint8_t)w, (uint32_t)NEXT() & m, (uint32_t)NEXT() & m,
                                 NEXT() & 1, NEXT() & 1, (uint32_t)NEXT() & m, 0};
            cp.check = crc_bitwise(w, cp.poly, cp.init, cp.refin, cp.refout, cp.xorout,
                                   (const uint8_t *)"123456789", 9);
        }
        gw__crc c;
        CHECK_INT(gw__crc_init(&c, &cp), 0);
        for (int round = 0; round < 40; round++) {
            size_t len = (size_t)(NEXT() % sizeof(buf));
            for (size_t i = 0; i < len; i++)
                buf[i] = (uint8_t)NEXT();
            uint32_t want =
                crc_bitwise(cp.width, cp.poly, cp.init, cp.refin, cp.refout, cp.xorout, buf, len);
            uint32_t got = gw__crc_compute(&c, buf, len);
            if (got != want && bad++ < 5)
                fprintf(stderr,
                        "crc %s (w %u poly 0x%X init 0x%X in %d out %d xorout 0x%X), "
                        "%zu bytes: table 0x%X, oracle 0x%X\n",
                        cp.name, cp.width, cp.poly, cp.init, cp.refin, cp.refout, cp.xorout, len,
                        got, want);
        }
    }
#undef NEXT
    CHECK_INT(bad, 0);
}

/* Precomputed acks (binary_ack.c): for every shipped binary product, every ack and refusal of
 * every upstream message, over seqs, request codes, record counts and results (values that do
 * not fit their field too), the template path gives the general encoder's bytes or declines. */
static void test_ack_templates(void)
{
    static const struct {
        const char *file;
        size_t min_tpl; /* acks that must have a template (the path must not go unused) */
    } prods[] = {{"meter-tcp.json", 1},
                 {"sensor-udp.json", 1},
                 {"gt06.json", 1},
                 {"tracker-808.json", 0}}; /* escaped: none; teltonika: bare, none */
    static const uint32_t seqs[] = {0, 1, 0x7F, 0xFF, 0x100, 0x1234, 0xFFFF, 0x10000, 0xFFFFFFFFu};
    static const uint32_t codes[] = {0, 0x7F, 0x1FF, 0xFFFF};
    static const uint32_t counts[] = {0, 1, 255, 256, 70000};
    for (size_t pi = 0; pi < sizeof(prods) / sizeof(prods[0]); pi++) {
        bt_loaded r = bt_load_example(prods[pi].file);
        CHECK(r.p != NULL);
        if (!r.p)
            continue;
        const bin_layout *l = r.p->codec_state;
        size_t n_tpl = 0, fast = 0, mismatches = 0;
        for (size_t i = 0; i < l->n_acks; i++)
            n_tpl += l->acks[i].tpl != NULL;
        for (size_t mi = 0; mi < l->n_msgs; mi++) {
            const bin_msg *bm = &l->msgs[mi];
            int which[2] = {bm->ack, bm->refusal};
            if (!BIN_K_IS_UP(bm->kind))
                continue;
            for (int w = 0; w < 2; w++) {
                if (which[w] < 0)
                    continue;
                const bin_msg *ack = &l->acks[which[w]];
                for (size_t a = 0; a < sizeof(seqs) / sizeof(seqs[0]); a++)
                    for (size_t b = 0; b < sizeof(codes) / sizeof(codes[0]) + 1; b++)
                        for (size_t c = 0; c < sizeof(counts) / sizeof(counts[0]); c++)
                            for (int status = -1; status <= 0; status++) {
                                gw_thing_msg req;
                                memset(&req, 0, sizeof(req));
                                /* device ids: one that fits, one too long for the field */
                                snprintf(req.device_id, sizeof(req.device_id), "%s",
                                         c == 3 ? "0123456789012345678"
                                         : c    ? "13800138000"
                                                : "d1");
                                req.seq = seqs[a];
                                req.seq_set = true;
                                req.type_code = b ? codes[b - 1] : bm->match;
                                req.n_accepted = counts[c];
                                uint8_t o1[512], o2[512];
                                size_t n1 = 0, n2 = 0, cap = c == 4 ? 5 : sizeof(o1);
                                gw_error err = {0};
                                bin_src src = {.req = &req, .status = status};
                                int rc1 = gw__binary_encode(l, ack, &src, o1, cap, &n1, &err);
                                int rc2 = gw__binary_ack_fast(l, ack, &req, status, o2, cap, &n2);
                                if (rc2 != 0)
                                    continue; /* declined: the general path runs */
                                fast++;
                                if (rc1 != 0 || n1 != n2 || memcmp(o1, o2, n1) != 0) {
                                    if (mismatches++ < 5)
                                        fprintf(stderr,
                                                "%s ack %d seq %u code %u count %u status %d: "
                                                "general rc %d %s\n  template %s\n",
                                                prods[pi].file, which[w], req.seq, req.type_code,
                                                req.n_accepted, status, rc1, bt_hex(o1, n1),
                                                bt_hex(o2, n2));
                                }
                            }
            }
        }
        fprintf(stderr, "ack templates: %s: %zu of %zu acks, %zu acks compared\n", prods[pi].file,
                n_tpl, l->n_acks, fast);
        CHECK(n_tpl >= prods[pi].min_tpl);
        CHECK(prods[pi].min_tpl == 0 || fast > 0);
        CHECK_INT(mismatches, 0);
        bt_free(&r);
    }
}

/* Every algorithm on a real frame: it decodes, and one flipped bit is a bad check. */
static void test_check_in_frames(void)
{
    static const char *const algos[] = {"crc16-modbus", "crc16-ccitt", "crc16-xmodem", "crc32",
                                        "xor",          "sum8",        "crc16-x25",    "crc8",
                                        "crc32c",       "crc8-maxim"};
    for (size_t a = 0; a < sizeof(algos) / sizeof(algos[0]); a++) {
        char text[1024];
        snprintf(text, sizeof(text),
                 "{ \"id\": \"c\", \"protocol\": \"mqtt\", \"codec\": \"binary\",\n"
                 "  \"properties\": [ { \"id\": \"n\", \"type\": \"int\" } ],\n"
                 "  \"frame\": { \"framing\": { \"mode\": \"datagram\" },\n"
                 "    \"header\": [ { \"name\": \"seq\", \"type\": \"u16\", \"role\": \"seq\" } "
                 "],\n"
                 "    \"check\": { \"algorithm\": \"%s\", \"from\": 1 },\n"
                 "    \"messages\": [ { \"kind\": \"report\", \"fields\": [ { \"type\": \"u16\", "
                 "\"property\": \"n\" } ] } ] } }",
                 algos[a]);
        bt_loaded r = bt_load_text(text);
        CHECK_INT(r.rc, 0);
        if (!r.p) {
            fprintf(stderr, "%s", r.errors);
            continue;
        }
        uint8_t f[64];
        size_t n = build_up(r.p, BIN_K_REPORT, 0, "{\"n\": 4660}", 7, 0, f, sizeof(f));
        const bin_layout *l = r.p->codec_state;
        CHECK_INT(n, 4 + gw__binary_check_width(l));
        uint32_t want = gw__binary_check(l, f + 1, 3);
        if (strcmp(algos[a], "xor") == 0)
            CHECK_INT(want, (uint32_t)(f[1] ^ f[2] ^ f[3]));
        else if (strcmp(algos[a], "sum8") == 0)
            CHECK_INT(want, (uint32_t)((f[1] + f[2] + f[3]) & 0xFF));
        else
            CHECK_INT(want, bt_crc(algos[a], f + 1, 3));
        CHECK_INT(gw__binary_get_uint(f + 4, n - 4, false), want);
        gw_thing_msg m;
        gw_reject rej = {0};
        CHECK_INT(ops->decode(r.p, NULL, f, n, &m, &rej), 0);
        CHECK_VAL_INT(&m, "n", 4660);
        CHECK_INT(m.seq, 7);
        gw_thing_msg_clear(&m);
        f[0] ^= 0x01; /* outside the range: still fine */
        CHECK_INT(ops->decode(r.p, NULL, f, n, &m, &rej), 0);
        gw_thing_msg_clear(&m);
        f[2] ^= 0x10;
        CHECK_INT(ops->decode(r.p, NULL, f, n, &m, &rej), GW_EINVAL);
        CHECK_INT(rej.reason, GW_R_BAD_CHECK);
        CHECK_CONTAINS(rej.detail, algos[a]);
        CHECK_INT(m.kind, GW_MSG_NONE);
        CHECK(m.values == NULL);
        bt_free(&r);
    }
}

/* ---- the example products --------------------------------------------------------------- */

#define METER_LOGIN     "68 00 15 01 00 01 6D 74 72 30 30 30 30 31 70 61 35 35 77 6F 72 64 6B BE"
#define METER_REPORT    "68 00 17 02 00 02 00 01 E2 40 05 DC 08 FD 00 0F 12 06 01 05 65 53 F1 00 A1 C8"
#define METER_EVENT     "68 00 0B 03 00 03 23 28 00 00 05 DC 36 D4"
#define METER_HEARTBEAT "68 00 05 04 00 04 48 3D"

static void test_meter(void)
{
    bt_loaded r = bt_load_example("meter-tcp.json");
    const gw_product *p = r.p;
    gw_thing_msg m;
    gw_reject rej;
    uint8_t out[512];
    size_t n;
    if (!p)
        return;
    CHECK_INT(gw_binary_max_frame(p), 256);

    CHECK_INT(decode_hex(p, METER_LOGIN, &m, &rej), 0);
    CHECK_INT(m.kind, GW_MSG_LOGIN);
    CHECK_STR(m.device_id, "mtr00001");
    CHECK_STR(m.secret, "pa55word");
    CHECK_INT(m.seq, 1);
    CHECK_INT(m.type_code, 1);
    CHECK(m.values == NULL);
    CHECK_INT(ops->verify(p, &m, NULL, 0, "pa55word"), 0);
    CHECK_INT(ops->verify(p, &m, NULL, 0, "pa55wore"), GW_EAUTH);
    CHECK_INT(ops->verify(p, &m, NULL, 0, "pa55word!"), GW_EAUTH);
    CHECK_INT(ops->encode_ack(p, &m, NULL, NULL, out, sizeof(out), &n), 0);
    CHECK_BYTES(out, n, "68 00 07 80 00 01 01 00 17 BC");
    gw_thing_msg_clear(&m);

    CHECK_INT(decode_hex(p, METER_REPORT, &m, &rej), 0);
    CHECK_INT(m.kind, GW_MSG_PROPERTY_REPORT);
    CHECK_VAL_REAL(&m, "energy_kwh", 1234.56);
    CHECK_VAL_REAL(&m, "power_w", 1500.0); /* a u16 for a double property: the real it checks as */
    CHECK_VAL_REAL(&m, "voltage", 230.1);
    CHECK_VAL_INT(&m, "pulses", 987654);
    CHECK_VAL_STR(&m, "tariff", "night");
    CHECK_VAL_BOOL(&m, "relay_on", true);
    CHECK_VAL_INT(&m, "quality", 2);
    CHECK_INT(json_object_size(m.values), 7);
    CHECK_INT(m.timestamp_ms, 1700000000000LL);
    CHECK_STR(m.msg_id, "2");
    CHECK_INT(ops->verify(p, &m, NULL, 0, "anything"), 0); /* no secret in a report */
    /* the values pass the thing model, as they are (the dispatcher writes no normalised copy) */
    json_t *norm = NULL;
    CHECK_INT(gw_tm_check_report(p, m.values, &norm, &rej), 0);
    json_decref(norm);
    CHECK(gw_tm_report_as_is(p, m.values));
    gw_thing_msg_clear(&m);
    /* going to the dispatcher (hint.check): the payload text at once, no values */
    {
        static const gw_decode_hint check = {GW_MSG_NONE, NULL, true};
        uint8_t f[64];
        size_t fn = bt_unhex(METER_REPORT, f, sizeof(f));
        CHECK_INT(ops->decode(p, &check, f, fn, &m, &rej), 0);
        CHECK(m.values == NULL);
        CHECK_STR(m.norm_text ? m.norm_text : "(null)",
                  "{\"energy_kwh\":1234.56,\"power_w\":1500.0,\"voltage\":230.1,\"pulses\":987654,"
                  "\"tariff\":\"night\",\"relay_on\":true,\"quality\":2}");
        CHECK_INT(m.timestamp_ms, 1700000000000LL);
        CHECK_STR(m.msg_id, "2");
        CHECK_INT(binary_text_diff(p, f, fn), 1);
        gw_thing_msg_clear(&m);
        CHECK_INT(decode_hex(p, METER_REPORT, &m, &rej), 0);
    }
    CHECK_INT(ops->encode_ack(p, &m, NULL, NULL, out, sizeof(out), &n), 0);
    CHECK_BYTES(out, n, "68 00 07 80 00 02 02 00 E7 4C");
    CHECK_INT(ops->encode_ack(p, &m, &REFUSED, NULL, out, sizeof(out), &n),
              0); /* negative: result 1 */
    CHECK_INT(n, 10);
    CHECK_INT(out[7], 1);
    CHECK_INT(bt_crc("crc16-modbus", out, 8), out[8] | out[9] << 8);
    CHECK_INT(ops->encode_ack(p, &m, NULL, NULL, out, 9, &n), GW_ETOOBIG);
    gw_thing_msg_clear(&m);

    CHECK_INT(decode_hex(p, METER_EVENT, &m, &rej), 0);
    CHECK_INT(m.kind, GW_MSG_EVENT);
    CHECK_STR(m.name, "overload");
    CHECK_VAL_REAL(&m, "power_w", 9000.0);
    CHECK_VAL_INT(&m, "duration_ms", 1500);
    gw_thing_msg_clear(&m);

    CHECK_INT(decode_hex(p, METER_HEARTBEAT, &m, &rej), 0);
    CHECK_INT(m.kind, GW_MSG_HEARTBEAT);
    CHECK_INT(m.seq, 4);
    gw_thing_msg_clear(&m);

    /* a function reply: no ack; a write reply with a failure */
    n = build_up(p, BIN_K_FUNCTION_REPLY, 5, "{\"previous_kwh\": 12.5}", 7, 0, out, sizeof(out));
    CHECK_INT(ops->decode(p, NULL, out, n, &m, &rej), 0);
    CHECK_INT(m.kind, GW_MSG_FUNCTION_REPLY);
    CHECK_STR(m.name, "reset_counter");
    CHECK_INT(m.success, 1);
    CHECK_INT(m.seq, 7);
    CHECK_VAL_REAL(&m, "previous_kwh", 12.5);
    CHECK_INT(ops->encode_ack(p, &m, NULL, NULL, out, sizeof(out), &n), 0);
    CHECK_INT(n, 0);
    gw_thing_msg_clear(&m);
    n = build_up(p, BIN_K_WRITE_REPLY, 6, NULL, 8, -1, out, sizeof(out));
    CHECK_INT(ops->decode(p, NULL, out, n, &m, &rej), 0);
    CHECK_INT(m.kind, GW_MSG_WRITE_REPLY);
    CHECK_INT(m.success, 0);
    gw_thing_msg_clear(&m);

    /* commands: the documented bytes, and back through decode */
    json_t *in = json_pack("{s:b}", "confirm", 1);
    gw_error err = {0};
    CHECK_INT(gw_binary_encode_command(p, "mtr00001", NULL, "reset_counter", in, 7, out,
                                       sizeof(out), &n, &err),
              0);
    CHECK_BYTES(out, n, "68 00 06 85 00 07 01 90 3A");
    const bin_msg *which;
    CHECK_INT(gw__binary_decode(p, true, out, n, &m, &which, &rej), 0);
    CHECK(which && which->kind == BIN_K_INVOKE);
    CHECK_VAL_BOOL(&m, "confirm", true);
    gw_thing_msg_clear(&m);
    json_decref(in);
    in = json_pack("{s:s}", "tariff", "night");
    CHECK_INT(gw_binary_encode_command(p, NULL, NULL, NULL, in, 9, out, sizeof(out), &n, &err), 0);
    CHECK_INT(gw__binary_decode(p, true, out, n, &m, &which, &rej), 0);
    CHECK(which && which->kind == BIN_K_WRITE);
    CHECK_VAL_STR(&m, "tariff", "night");
    CHECK_INT(m.seq, 9);
    gw_thing_msg_clear(&m);
    json_decref(in);
    in = json_pack("{s:s}", "tariff", "dusk");
    CHECK_INT(gw_binary_encode_command(p, NULL, NULL, NULL, in, 9, out, sizeof(out), &n, &err),
              GW_EINVAL);
    CHECK_CONTAINS(err.msg, "\"dusk\" is not a value of tariff");
    json_decref(in);
    in = json_pack("{s:i}", "pulses", 3);
    CHECK_INT(gw_binary_encode_command(p, NULL, NULL, NULL, in, 9, out, sizeof(out), &n, &err),
              GW_ENOTFOUND);
    CHECK_INT(gw_binary_encode_command(p, NULL, NULL, "reboot", in, 9, out, sizeof(out), &n, &err),
              GW_ENOTFOUND);
    CHECK_INT(
        gw_binary_encode_command(p, NULL, NULL, "reset_counter", in, 9, out, sizeof(out), &n, &err),
        GW_EINVAL);
    CHECK_CONTAINS(err.msg, "inputs.pulses: no field");
    json_decref(in);
    bt_free(&r);
}

static void test_meter_rejects(void)
{
    bt_loaded r = bt_load_example("meter-tcp.json");
    const gw_product *p = r.p;
    gw_thing_msg m;
    gw_reject rej;
    uint8_t f[512], out[64];
    size_t n;
    if (!p)
        return;
    /* bad CRC: rejected, counted by reason, never acked */
    n = bt_unhex(METER_REPORT, f, sizeof(f));
    f[n - 1] ^= 0xff;
    CHECK_INT(ops->decode(p, NULL, f, n, &m, &rej), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_BAD_CHECK);
    CHECK_STR(gw_reason_name(rej.reason), "bad_check");
    CHECK_CONTAINS(rej.detail, "crc16-modbus: the frame says 0x37A1, the bytes give 0xC8A1");
    CHECK_INT(ops->encode_ack(p, &m, &REFUSED, NULL, out, sizeof(out), &n), 0);
    CHECK_INT(n, 0);
    gw_thing_msg_clear(&m);

    /* unknown discriminator (with a valid CRC) */
    n = bt_unhex(METER_HEARTBEAT, f, sizeof(f));
    f[3] = 0x07;
    uint16_t c = bt_crc("crc16-modbus", f, n - 2);
    f[n - 2] = (uint8_t)c, f[n - 1] = (uint8_t)(c >> 8);
    CHECK_INT(ops->decode(p, NULL, f, n, &m, &rej), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_UNKNOWN_MESSAGE);
    CHECK_CONTAINS(rej.detail, "discriminator cmd: no message matches 0x7");
    gw_thing_msg_clear(&m);
    /* a downstream code sent upstream is unknown too */
    f[3] = 0x85;
    c = bt_crc("crc16-modbus", f, n - 2);
    f[n - 2] = (uint8_t)c, f[n - 1] = (uint8_t)(c >> 8);
    CHECK_INT(ops->decode(p, NULL, f, n, &m, &rej), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_UNKNOWN_MESSAGE);

    /* truncated: a report frame two bytes short (length and CRC consistent) */
    n = bt_unhex(METER_REPORT, f, sizeof(f)) - 4;
    f[2] = (uint8_t)(n + 2 - 3);
    c = bt_crc("crc16-modbus", f, n);
    f[n] = (uint8_t)c, f[n + 1] = (uint8_t)(c >> 8);
    CHECK_INT(ops->decode(p, NULL, f, n + 2, &m, &rej), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_MALFORMED_PAYLOAD);
    CHECK_CONTAINS(rej.detail, "field time (offset 20, 4 bytes): the frame has 24 bytes");
    CHECK_INT(m.kind, GW_MSG_PROPERTY_REPORT); /* kept for a negative ack */
    CHECK_INT(m.seq, 2);
    CHECK(m.values == NULL);
    CHECK_INT(ops->encode_ack(p, &m, &REFUSED, NULL, out, sizeof(out), &n), 0);
    CHECK_INT(n, 10);
    CHECK_INT(out[7], 1);
    gw_thing_msg_clear(&m);

    /* values the thing model refuses or changes: never taken as text (hint.check); the general
     * path decides and words them, the same with and without the hint */
    {
        static const gw_decode_hint check = {GW_MSG_NONE, NULL, true};
        static const struct {
            size_t at;
            uint8_t b0, b1;
        } bad[] = {
            {12, 0x0F, 0xA1}, /* voltage 400.1: over its max (the check refuses it) */
            {18, 0x02, 0x05}, /* tariff index 2: not listed (a decode refusal) */
        };
        for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
            n = bt_unhex(METER_REPORT, f, sizeof(f));
            f[bad[i].at] = bad[i].b0;
            f[bad[i].at + 1] = bad[i].b1;
            c = bt_crc("crc16-modbus", f, n - 2);
            f[n - 2] = (uint8_t)c, f[n - 1] = (uint8_t)(c >> 8);
            int d = binary_text_diff(p, f, n);
            if (d != 0)
                fprintf(stderr, "  bad[%zu]: %d %s\n", i, d, binary_text_diff_why);
            CHECK_INT(d, 0);
            memset(&rej, 0, sizeof(rej));
            if (ops->decode(p, &check, f, n, &m, &rej) == 0)
                CHECK(m.norm_text == NULL && m.values != NULL);
            gw_thing_msg_clear(&m);
        }
    }

    /* a constant that differs */
    n = bt_unhex(METER_HEARTBEAT, f, sizeof(f));
    f[0] = 0x69;
    c = bt_crc("crc16-modbus", f, n - 2);
    f[n - 2] = (uint8_t)c, f[n - 1] = (uint8_t)(c >> 8);
    CHECK_INT(ops->decode(p, NULL, f, n, &m, &rej), GW_EINVAL);
    CHECK_CONTAINS(rej.detail, "field start: expected 0x68, got 0x69");
    gw_thing_msg_clear(&m);

    /* the length field disagrees with the frame given (UDP-style whole buffers) */
    n = bt_unhex(METER_HEARTBEAT, f, sizeof(f));
    CHECK_INT(ops->decode(p, NULL, f, n - 1, &m, &rej), GW_EINVAL);
    CHECK_CONTAINS(rej.detail, "length field says 8 bytes, the frame has 7");
    CHECK_INT(ops->decode(p, NULL, f, 2, &m, &rej), GW_EINVAL);
    CHECK_CONTAINS(rej.detail, "ends before its length field");
    CHECK_INT(ops->decode(p, NULL, f, 0, &m, &rej), GW_EINVAL);
    gw_thing_msg_clear(&m);

    /* an enum index the thing model does not list */
    n = bt_unhex(METER_REPORT, f, sizeof(f));
    f[18] = 5;
    c = bt_crc("crc16-modbus", f, n - 2);
    f[n - 2] = (uint8_t)c, f[n - 1] = (uint8_t)(c >> 8);
    CHECK_INT(ops->decode(p, NULL, f, n, &m, &rej), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_ENUM_VALUE);
    CHECK_CONTAINS(rej.detail, "field tariff: tariff index 5 is not listed (0..1)");
    gw_thing_msg_clear(&m);
    bt_free(&r);
}

static void test_meter_stream(void)
{
    bt_loaded r = bt_load_example("meter-tcp.json");
    const gw_product *p = r.p;
    uint8_t buf[2048], big[1200];
    size_t len = 0, skip;
    if (!p)
        return;
    for (uint32_t s = 1; s <= 10; s++) {
        if (s % 3 == 0)
            len += build_up(p, BIN_K_REPORT, 2,
                            "{\"energy_kwh\": 1.5, \"power_w\": 2, \"voltage\": 230.5, "
                            "\"pulses\": 9, \"tariff\": \"day\", \"relay_on\": false, "
                            "\"quality\": 3}",
                            s, 0, buf + len, sizeof(buf) - len);
        else
            len += build_up(p, BIN_K_HEARTBEAT, 4, NULL, s, 0, buf + len, sizeof(buf) - len);
    }
    check_stream(p, buf, len, 10, "length field");

    /* oversized: a length field beyond max_frame is refused from the header alone */
    size_t n = bt_unhex("68 01 00 02", big, sizeof(big));
    CHECK_INT(ops->frame(p, big, n, &skip), GW_ETOOBIG);
    n = bt_unhex("68 00 FD", big, sizeof(big)); /* 3 + 253 = 256 = max_frame: fine, incomplete */
    CHECK_INT(ops->frame(p, big, n, &skip), 0);
    n = bt_unhex("68 00 FE", big, sizeof(big));
    CHECK_INT(ops->frame(p, big, n, &skip), GW_ETOOBIG);
    /* a length that cannot even cover the header and the check */
    n = bt_unhex("68 00 03 04 00", big, sizeof(big));
    CHECK_INT(ops->frame(p, big, n, &skip), GW_EPROTO);
    CHECK_INT(ops->frame(p, big, 2, &skip), 0);

    /* garbage: every stream of random bytes ends in an error or in rejected frames, never in a
     * crash or an accepted frame */
    srand(1);
    int errors = 0, accepted = 0;
    for (int round = 0; round < 200; round++) {
        stream *s = calloc(1, sizeof(*s));
        for (int k = 0; k < 4 && !s->error; k++) {
            for (size_t i = 0; i < 512; i++)
                big[i] = (uint8_t)rand();
            feed(p, s, big, 512);
        }
        errors += s->error != 0;
        accepted += s->frames;
        free(s);
    }
    CHECK_INT(accepted, 0);
    CHECK_INT(errors, 200);
    bt_free(&r);
}

#define T808_LOGIN "7E 01 02 00 08 01 39 12 34 56 78 00 01 61 75 74 68 38 30 38 78 7A 7E"
#define T808_REPORT                                                                                \
    "7E 02 00 00 1C 01 39 12 34 56 78 00 03 00 00 00 01 00 00 00 03 01 DC 9A 07 07 3D 48 95 00 "   \
    "34 02 5D 00 7D 02 24 01 15 10 30 00 8D 7E"
#define T808_HEARTBEAT "7E 00 02 00 00 01 39 12 34 56 78 00 02 30 7E"
#define T808_EVENT     "7E 03 01 00 01 01 39 12 34 56 78 00 04 07 30 7E"

static void test_tracker(void)
{
    bt_loaded r = bt_load_example("tracker-808.json");
    const gw_product *p = r.p;
    gw_thing_msg m;
    gw_reject rej;
    uint8_t out[512], f[512];
    size_t n, skip;
    if (!p)
        return;
    CHECK_INT(decode_hex(p, T808_LOGIN, &m, &rej), 0);
    CHECK_INT(m.kind, GW_MSG_LOGIN);
    CHECK_STR(m.device_id, "013912345678");
    CHECK_STR(m.secret, "auth808x");
    CHECK_INT(m.seq, 1);
    CHECK_INT(m.type_code, 0x0102);
    CHECK_INT(ops->verify(p, &m, NULL, 0, "auth808x"), 0);
    CHECK_INT(ops->verify(p, &m, NULL, 0, "auth808"), GW_EAUTH);
    gw_thing_msg_clear(&m);

    CHECK_INT(decode_hex(p, T808_REPORT, &m, &rej), 0);
    CHECK_INT(m.kind, GW_MSG_PROPERTY_REPORT);
    CHECK_STR(m.device_id, "013912345678");
    CHECK_VAL_BOOL(&m, "sos", true);
    CHECK_VAL_BOOL(&m, "acc_on", true);
    CHECK_VAL_BOOL(&m, "located", true);
    CHECK_VAL_REAL(&m, "lat", 31.234567);
    CHECK_VAL_REAL(&m, "lon", 121.456789);
    CHECK_VAL_INT(&m, "altitude", 52);
    CHECK_VAL_REAL(&m, "speed", 60.5);
    CHECK_VAL_INT(&m, "direction", 126); /* 00 7E, escaped as 00 7D 02 */
    CHECK_VAL_STR(&m, "gps_time", "240115103000");
    CHECK_INT(ops->verify(p, &m, NULL, 0, "whatever"), 0);
    CHECK_INT(ops->encode_ack(p, &m, NULL, NULL, out, sizeof(out), &n), 0);
    CHECK_BYTES(out, n, "7E 80 01 00 05 01 39 12 34 56 78 00 03 00 03 02 00 00 B6 7E");
    gw_thing_msg_clear(&m);
    /* the ack frames and decodes as the downstream message it is */
    CHECK_INT(ops->frame(p, out, n, &skip), (int)n);
    const bin_msg *which;
    CHECK_INT(gw__binary_decode(p, true, out, n, &m, &which, &rej), 0);
    CHECK(which && which->kind == BIN_K_ACK);
    CHECK_INT(m.seq, 3);
    CHECK_INT(m.success, 1);
    gw_thing_msg_clear(&m);

    CHECK_INT(decode_hex(p, T808_HEARTBEAT, &m, &rej), 0);
    CHECK_INT(m.kind, GW_MSG_HEARTBEAT);
    gw_thing_msg_clear(&m);
    CHECK_INT(decode_hex(p, T808_EVENT, &m, &rej), 0);
    CHECK_INT(m.kind, GW_MSG_EVENT);
    CHECK_STR(m.name, "driver_event");
    CHECK_VAL_INT(&m, "event_id", 7);
    gw_thing_msg_clear(&m);

    /* the function reply carries the command's serial in its body: it overrides the header's */
    gw_error err = {0};
    CHECK_INT(gw_binary_encode_command(p, "013912345678", NULL, "reboot", NULL, 9, out, sizeof(out),
                                       &n, &err),
              0);
    CHECK_BYTES(out, n, "7E 81 05 00 01 01 39 12 34 56 78 00 09 04 B8 7E");
    CHECK_INT(gw__binary_decode(p, true, out, n, &m, &which, &rej), 0);
    CHECK(which && which->kind == BIN_K_INVOKE);
    CHECK_STR(m.device_id, "013912345678");
    CHECK_STR(m.name, "reboot");
    gw_thing_msg_clear(&m);
    n = bt_unhex("7E 00 01 00 05 01 39 12 34 56 78 00 05 00 09 81 05 00 00 7E", f, sizeof(f));
    f[n - 2] = (uint8_t)gw__binary_check(p->codec_state, f + 1, n - 3);
    if (f[n - 2] == 0x7E || f[n - 2] == 0x7D) /* would need an escape; not with these bytes */
        CHECK(0);
    CHECK_INT(ops->decode(p, NULL, f, n, &m, &rej), 0);
    CHECK_INT(m.kind, GW_MSG_FUNCTION_REPLY);
    CHECK_INT(m.seq, 9);
    CHECK_INT(m.success, 1);
    CHECK_STR(m.msg_id, "9");
    gw_thing_msg_clear(&m);

    /* a bad escape; a missing delimiter; a bad XOR */
    CHECK_INT(decode_hex(p, "7E 00 02 00 00 01 39 12 34 56 78 00 02 7D 05 7E", &m, &rej),
              GW_EINVAL);
    CHECK_CONTAINS(rej.detail, "escape byte 0x7D at body byte 12 is followed by an unmapped byte");
    CHECK_INT(decode_hex(p, "7E 00 02 00 00 01 39 12 34 56 78 00 02 30 7D", &m, &rej), GW_EINVAL);
    CHECK_CONTAINS(rej.detail, "frame lacks its end delimiter");
    CHECK_INT(decode_hex(p, "7E 00 02 00 00 01 39 12 34 56 78 00 02 31 7E", &m, &rej), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_BAD_CHECK);
    /* bad BCD in the phone number */
    n = bt_unhex(T808_HEARTBEAT, f, sizeof(f));
    f[5] = 0x0A;
    f[n - 2] = (uint8_t)gw__binary_check(p->codec_state, f + 1, n - 3);
    CHECK_INT(ops->decode(p, NULL, f, n, &m, &rej), GW_EINVAL);
    CHECK_CONTAINS(rej.detail, "field phone: byte 0 (0x0A) is not BCD");
    gw_thing_msg_clear(&m);
    bt_free(&r);
}

/* JT/T 808-2013 registration, built from the standard's field tables (python3: hmac, gbk):
 * 0x0100 (province 44, city 300, manufacturer "70111", model "GT808", terminal "AB12345",
 * colour 1, plate "京A12345" in GBK) with serial 0x007E (escaped 7D 02 on the wire) -> 0x8100
 * (reply serial, result 0, the auth code = hex(HMAC-SHA256("auth808x", "auth_code:" +
 * phone))[:16]); then 0x0102 with that code -> 0x8001 result 0; an unknown terminal -> 0x8100
 * result 4. */
#define T808_REGISTER                                                                              \
    "7E 01 00 00 2D 01 39 12 34 56 78 00 7D 02 00 2C 01 2C 37 30 31 31 31 47 54 38 30 38 00 00 "   \
    "00 "                                                                                          \
    "00 00 00 00 00 00 00 00 00 00 00 00 00 00 41 42 31 32 33 34 35 01 BE A9 41 31 32 33 34 35 "   \
    "22 "                                                                                          \
    "7E"
#define T808_REGISTERED                                                                            \
    "7E 81 00 00 13 01 39 12 34 56 78 00 7D 02 00 7D 02 00 65 64 66 32 34 31 30 37 66 61 30 62 "   \
    "62 "                                                                                          \
    "65 33 66 F2 7E"
#define T808_REGISTER_UNKNOWN                                                                      \
    "7E 01 00 00 2D 01 99 99 99 99 99 00 01 00 2C 01 2C 37 30 31 31 31 47 54 38 30 38 00 00 00 "   \
    "00 "                                                                                          \
    "00 00 00 00 00 00 00 00 00 00 00 00 00 41 42 31 32 33 34 35 01 BE A9 41 31 32 33 34 35 F5 7E"
#define T808_NO_SUCH_TERMINAL "7E 81 00 00 03 01 99 99 99 99 99 00 01 00 01 04 1E 7E"
#define T808_LOGIN_CODE                                                                            \
    "7E 01 02 00 10 01 39 12 34 56 78 00 7F 65 64 66 32 34 31 30 37 66 61 30 62 62 65 33 66 0C 7E"

static void test_tracker_register(void)
{
    bt_loaded r = bt_load_example("tracker-808.json");
    const gw_product *p = r.p;
    gw_thing_msg m, a;
    gw_reject rej;
    uint8_t out[512], f[512];
    size_t n, skip;
    char code[65];
    const bin_msg *which;
    static const gw_reject refused = {GW_R_NONE, "no such terminal"};
    if (!p)
        return;
    gw_frame_info fi;
    ops->frame_info(p, &fi);
    CHECK(fi.login_code);
    CHECK_INT(gw__binary_auth_code(p->codec_state, "auth808x", "013912345678", code, sizeof(code)),
              0);
    CHECK_STR(code, "edf24107fa0bbe3f");
    CHECK_INT(gw__binary_auth_code(p->codec_state, NULL, "013912345678", code, sizeof(code)), -1);

    n = bt_unhex(T808_REGISTER, f, sizeof(f));
    CHECK_INT(ops->frame(p, f, n, &skip), (int)n);
    CHECK_INT(decode_hex(p, T808_REGISTER, &m, &rej), 0);
    CHECK_INT(m.kind, GW_MSG_REGISTER);
    CHECK_STR(m.device_id, "013912345678");
    CHECK_INT(m.seq, 0x7E);
    CHECK_INT(m.type_code, 0x0100);
    CHECK(m.values == NULL);
    CHECK_INT(ops->encode_ack(p, &m, NULL, "auth808x", out, sizeof(out), &n), 0);
    CHECK_BYTES(out, n, T808_REGISTERED);
    CHECK_INT(gw__binary_decode(p, true, out, n, &a, &which, &rej), 0); /* our own answer */
    CHECK(which && which->kind == BIN_K_ACK && which->match == 0x8100);
    CHECK_INT(a.seq, 0x7E);
    gw_thing_msg_clear(&a);
    /* no secret, no code: no answer (the adapter looks the device up first) */
    CHECK(ops->encode_ack(p, &m, NULL, NULL, out, sizeof(out), &n) != 0 || n == 0);
    gw_thing_msg_clear(&m);
    /* a too short registration */
    CHECK_INT(decode_hex(p, "7E 01 00 00 02 01 39 12 34 56 78 00 01 00 2C 1E 7E", &m, &rej),
              GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_MALFORMED_PAYLOAD);
    CHECK_CONTAINS(rej.detail, "field city");
    gw_thing_msg_clear(&m);

    /* an unknown terminal: the refusal, result 4, no auth code */
    CHECK_INT(decode_hex(p, T808_REGISTER_UNKNOWN, &m, &rej), 0);
    CHECK_STR(m.device_id, "019999999999");
    CHECK_INT(ops->encode_ack(p, &m, &refused, NULL, out, sizeof(out), &n), 0);
    CHECK_BYTES(out, n, T808_NO_SUCH_TERMINAL);
    gw_thing_msg_clear(&m);

    /* the login with the code; a wrong code gets 0x8001 result 1 */
    CHECK_INT(decode_hex(p, T808_LOGIN_CODE, &m, &rej), 0);
    CHECK_INT(m.kind, GW_MSG_LOGIN);
    CHECK_STR(m.secret, "edf24107fa0bbe3f");
    CHECK_INT(ops->verify(p, &m, NULL, 0, "auth808x"), 0);
    CHECK_INT(ops->verify(p, &m, NULL, 0, "auth808y"), GW_EAUTH);
    CHECK_INT(ops->encode_ack(p, &m, NULL, "auth808x", out, sizeof(out), &n), 0);
    CHECK_BYTES(out, n, "7E 80 01 00 05 01 39 12 34 56 78 00 7F 00 7F 01 02 00 B7 7E");
    CHECK_INT(ops->encode_ack(p, &m, &refused, "auth808x", out, sizeof(out), &n), 0);
    CHECK_BYTES(out, n, "7E 80 01 00 05 01 39 12 34 56 78 00 7F 00 7F 01 02 01 B6 7E");
    strcpy(m.secret, "edf24107fa0bbe3e"); /* one digit off */
    CHECK_INT(ops->verify(p, &m, NULL, 0, "auth808x"), GW_EAUTH);
    strcpy(m.secret, "edf24107fa0bbe3"); /* a prefix */
    CHECK_INT(ops->verify(p, &m, NULL, 0, "auth808x"), GW_EAUTH);
    gw_thing_msg_clear(&m);
    /* another phone number gets another code */
    CHECK_INT(gw__binary_auth_code(p->codec_state, "auth808x", "013912345679", code, sizeof(code)),
              0);
    CHECK(strcmp(code, "edf24107fa0bbe3f") != 0);
    bt_free(&r);
}

static void test_tracker_stream(void)
{
    bt_loaded r = bt_load_example("tracker-808.json");
    const gw_product *p = r.p;
    uint8_t buf[4096], big[2100];
    size_t len = 0, skip, n;
    if (!p)
        return;
    /* ten frames whose bytes need escaping (seq 0x7E, 0x7D values, a property 0x7D7E) */
    for (uint32_t s = 1; s <= 10; s++) {
        if (s % 2)
            len += build_up(p, BIN_K_HEARTBEAT, 2, NULL, s, 0, buf + len, sizeof(buf) - len);
        else
            len += build_up(p, BIN_K_REPORT, 0x200,
                            "{\"sos\": false, \"acc_on\": true, \"located\": false, \"lat\": "
                            "0.000126, \"lon\": 0.000125, \"altitude\": 32126, \"speed\": 3.2, "
                            "\"direction\": 125, \"gps_time\": \"240101000000\"}",
                            s, 0, buf + len, sizeof(buf) - len);
    }
    CHECK(memmem(buf, len, "\x7d\x02", 2) != NULL);
    CHECK(memmem(buf, len, "\x7d\x01", 2) != NULL);
    check_stream(p, buf, len, 10, "delimiter with escapes");
    /* noise before a frame and between frames is skipped; 7E 7E is end + start */
    n = 0;
    memcpy(big, "\x11\x22\x7e", 3);
    n = 3;
    n += bt_unhex(T808_HEARTBEAT, big + n, sizeof(big) - n);
    n += bt_unhex("33 44", big + n, sizeof(big) - n);
    n += bt_unhex(T808_EVENT, big + n, sizeof(big) - n);
    stream *s = calloc(1, sizeof(*s));
    feed(p, s, big, n);
    CHECK_INT(s->frames, 2);
    CHECK_INT(s->rejects, 0);
    CHECK_INT(s->skipped, 5); /* 11 22, the 7E closing nothing, 33 44 */
    free(s);
    /* max_frame bytes without an end delimiter: too big; noise with no start: not this protocol */
    big[0] = 0x7E;
    memset(big + 1, 0x55, 1100);
    CHECK_INT(ops->frame(p, big, 1000, &skip), 0);
    CHECK_INT(ops->frame(p, big, 1024, &skip), GW_ETOOBIG);
    CHECK_INT(ops->frame(p, big + 1, 1000, &skip), 0);
    CHECK_INT(skip, 1000);
    CHECK_INT(ops->frame(p, big + 1, 1024, &skip), GW_EPROTO);
    /* a start delimiter cut in two is kept (a one-byte start: nothing to keep) */
    CHECK_INT(ops->frame(p, big, 1, &skip), 0);
    CHECK_INT(skip, 0);
    bt_free(&r);
}

#define SENSOR_REPORT                                                                              \
    "A5 01 01 73 6E 72 30 30 30 30 31 74 6F 6B 31 32 33 34 35 01 00 66 08 A8 11 57 01 3C 00 35 "   \
    "3D C3 F7"

static void test_sensor(void)
{
    bt_loaded r = bt_load_example("sensor-udp.json");
    const gw_product *p = r.p;
    gw_thing_msg m;
    gw_reject rej;
    uint8_t out[512];
    size_t n;
    if (!p)
        return;
    CHECK_INT(decode_hex(p, SENSOR_REPORT, &m, &rej), 0);
    CHECK_INT(m.kind, GW_MSG_PROPERTY_REPORT);
    CHECK_STR(m.device_id, "snr00001");
    CHECK_STR(m.secret, "tok12345");
    CHECK_VAL_REAL(&m, "temperature", 21.5);
    CHECK_VAL_REAL(&m, "humidity", 45.2);
    CHECK_VAL_INT(&m, "battery", 87);
    CHECK_VAL_BOOL(&m, "door_open", true);
    CHECK_VAL_INT(&m, "interval_s", 60);
    CHECK_INT(ops->verify(p, &m, NULL, 0, "tok12345"), 0);
    CHECK_INT(ops->verify(p, &m, NULL, 0, "tok12346"), GW_EAUTH);
    CHECK_INT(ops->verify(p, &m, NULL, 0, NULL), GW_EAUTH);
    CHECK_INT(ops->encode_ack(p, &m, NULL, NULL, out, sizeof(out), &n), 0);
    CHECK_BYTES(out, n,
                "A5 01 81 73 6E 72 30 30 30 30 31 00 00 00 00 00 00 00 00 01 00 00 3F 36 93 DF");
    gw_thing_msg_clear(&m);
    CHECK_INT(decode_hex(p,
                         "A5 01 02 73 6E 72 30 30 30 30 31 74 6F 6B 31 32 33 34 35 02 00 93 A2 2A "
                         "5B",
                         &m, &rej),
              0);
    CHECK_INT(m.kind, GW_MSG_HEARTBEAT);
    gw_thing_msg_clear(&m);
    CHECK_INT(decode_hex(p,
                         "A5 01 03 73 6E 72 30 30 30 30 31 74 6F 6B 31 32 33 34 35 03 00 09 33 51 "
                         "2C 0E",
                         &m, &rej),
              0);
    CHECK_STR(m.name, "low_battery");
    CHECK_VAL_INT(&m, "level", 9);
    gw_thing_msg_clear(&m);

    json_t *in = json_pack("{s:i}", "blink_s", 3);
    gw_error err = {0};
    CHECK_INT(gw_binary_encode_command(p, "snr00001", NULL, "identify", in, 5, out, sizeof(out), &n,
                                       &err),
              0);
    CHECK_BYTES(out, n,
                "A5 01 82 73 6E 72 30 30 30 30 31 00 00 00 00 00 00 00 00 05 00 03 00 1B 00 50 "
                "2C");
    json_decref(in);
    in = json_pack("{s:i}", "interval_s", 300);
    CHECK_INT(
        gw_binary_encode_command(p, "snr00001", NULL, NULL, in, 6, out, sizeof(out), &n, &err), 0);
    const bin_msg *which;
    CHECK_INT(gw__binary_decode(p, true, out, n, &m, &which, &rej), 0);
    CHECK_VAL_INT(&m, "interval_s", 300);
    CHECK_STR(m.device_id, "snr00001");
    gw_thing_msg_clear(&m);
    json_decref(in);
    /* a device id longer than the field */
    in = json_pack("{s:i}", "interval_s", 300);
    CHECK_INT(
        gw_binary_encode_command(p, "snr000001", NULL, NULL, in, 6, out, sizeof(out), &n, &err),
        GW_EINVAL);
    CHECK_CONTAINS(err.msg, "frame.header[3]: 9 bytes do not fit 8");
    json_decref(in);
    /* a datagram over max_frame, and a truncated one */
    uint8_t big[200] = {0};
    CHECK_INT(ops->decode(p, NULL, big, sizeof(big), &m, &rej), GW_EINVAL);
    CHECK_CONTAINS(rej.detail, "frame of 200 bytes exceeds max_frame 128");
    CHECK_INT(ops->decode(p, NULL, big, 3, &m, &rej), GW_EINVAL);
    CHECK_CONTAINS(rej.detail, "too short for its check");
    bt_free(&r);
}

/* ---- framing modes without an example: fixed size, an end delimiter only ---------------- */

static void test_fixed_and_crlf(void)
{
    bt_loaded r = bt_load_text(
        "{ \"id\": \"f\", \"protocol\": \"mqtt\", \"codec\": \"binary\",\n"
        "  \"properties\": [ { \"id\": \"n\", \"type\": \"int\" } ],\n"
        "  \"frame\": { \"max_frame\": 6, \"framing\": { \"mode\": \"fixed\", \"length\": 6 },\n"
        "    \"header\": [ { \"name\": \"cmd\", \"type\": \"u8\" }, { \"type\": \"u8\", \"role\": "
        "\"seq\" } ],\n"
        "    \"discriminator\": \"cmd\", \"check\": { \"algorithm\": \"sum8\" },\n"
        "    \"messages\": [ { \"kind\": \"report\", \"match\": 1, \"fields\": [ { \"type\": "
        "\"u16\", \"property\": \"n\" } ] },\n"
        "                    { \"kind\": \"heartbeat\", \"match\": 2 } ] } }");
    uint8_t buf[256];
    size_t len = 0;
    CHECK_INT(r.rc, 0);
    if (r.p) {
        for (uint32_t s = 1; s <= 10; s++)
            len += s % 2 ? build_up(r.p, BIN_K_REPORT, 1, "{\"n\": 513}", s, 0, buf + len, 64)
                         : build_up(r.p, BIN_K_HEARTBEAT, 2, NULL, s, 0, buf + len, 64);
        CHECK_INT(len, 60);
        CHECK_BYTES(buf, 6, "01 01 02 01 00 05");
        check_stream(r.p, buf, len, 10, "fixed");
    }
    bt_free(&r);

    r = bt_load_text(
        "{ \"id\": \"l\", \"protocol\": \"mqtt\", \"codec\": \"binary\",\n"
        "  \"properties\": [ { \"id\": \"text\", \"type\": \"string\" } ],\n"
        "  \"frame\": { \"max_frame\": 64, \"framing\": { \"mode\": \"delimiter\", \"end\": "
        "\"0D0A\" },\n"
        "    \"header\": [ { \"type\": \"string\", \"size\": 2, \"role\": \"seq\" } ],\n"
        "    \"messages\": [ { \"kind\": \"report\", \"fields\": [ { \"type\": \"string\", "
        "\"prefix\": 1, \"property\": \"text\" } ] } ] } }");
    CHECK_INT(r.rc, GW_ECONFIG); /* seq needs an integer */
    CHECK_CONTAINS(r.errors, "frame.header[0].role: role seq needs an integer field type");
    bt_free(&r);
    r = bt_load_text(
        "{ \"id\": \"l\", \"protocol\": \"mqtt\", \"codec\": \"binary\",\n"
        "  \"properties\": [ { \"id\": \"text\", \"type\": \"string\" } ],\n"
        "  \"frame\": { \"max_frame\": 64, \"framing\": { \"mode\": \"delimiter\", \"end\": "
        "\"0D0A\" },\n"
        "    \"header\": [ { \"type\": \"u8\", \"role\": \"seq\" } ],\n"
        "    \"messages\": [ { \"kind\": \"report\", \"fields\": [ { \"type\": \"string\", "
        "\"prefix\": 1, \"property\": \"text\" } ] } ] } }");
    CHECK_INT(r.rc, 0);
    if (r.p) {
        len = 0;
        for (uint32_t s = 1; s <= 10; s++)
            len += build_up(r.p, BIN_K_REPORT, 0, "{\"text\": \"hello\"}", s, 0, buf + len, 64);
        CHECK_INT(len, 10 * 9);
        CHECK_BYTES(buf, 9, "01 05 68 65 6C 6C 6F 0D 0A");
        check_stream(r.p, buf, len, 10, "end delimiter");
        /* empty lines between frames are skipped */
        uint8_t two[32];
        size_t n = bt_unhex("0D 0A 0D 0A 01 01 41 0D 0A", two, sizeof(two)), skip;
        CHECK_INT(ops->frame(r.p, two, n, &skip), 5);
        CHECK_INT(skip, 4);
        uint8_t big[100];
        memset(big, 'x', sizeof(big));
        CHECK_INT(ops->frame(r.p, big, 63, &skip), 0);
        CHECK_INT(ops->frame(r.p, big, 64, &skip), GW_ETOOBIG);
    }
    bt_free(&r);
}

/* ---- every field type and transform ----------------------------------------------------- */

static const char *const types_product =
    "{ \"id\": \"t\", \"protocol\": \"mqtt\", \"codec\": \"binary\",\n"
    "  \"properties\": [\n"
    "    { \"id\": \"u8\", \"type\": \"int\" }, { \"id\": \"i8\", \"type\": \"int\" },\n"
    "    { \"id\": \"u16\", \"type\": \"int\" }, { \"id\": \"i16\", \"type\": \"int\" },\n"
    "    { \"id\": \"u32\", \"type\": \"long\" }, { \"id\": \"i32\", \"type\": \"int\" },\n"
    "    { \"id\": \"u64\", \"type\": \"long\" }, { \"id\": \"i64\", \"type\": \"long\" },\n"
    "    { \"id\": \"f32\", \"type\": \"float\" }, { \"id\": \"f64\", \"type\": \"double\" },\n"
    "    { \"id\": \"bcd\", \"type\": \"long\" }, { \"id\": \"bcds\", \"type\": \"string\" },\n"
    "    { \"id\": \"str\", \"type\": \"string\" }, { \"id\": \"flag\", \"type\": \"bool\" },\n"
    "    { \"id\": \"nib\", \"type\": \"int\" },\n"
    "    { \"id\": \"en\", \"type\": \"enum\", \"values\": [\"x\", \"y\", \"z\"] },\n"
    "    { \"id\": \"scaled\", \"type\": \"double\" }, { \"id\": \"offs\", \"type\": \"int\" },\n"
    "    { \"id\": \"be16\", \"type\": \"int\" }, { \"id\": \"pstr\", \"type\": \"string\" },\n"
    "    { \"id\": \"hex\", \"type\": \"string\" }, { \"id\": \"phex\", \"type\": \"string\" } "
    "],\n"
    "  \"frame\": { \"endian\": \"little\", \"max_frame\": 200, \"framing\": { \"mode\": "
    "\"datagram\" },\n"
    "    \"check\": { \"algorithm\": \"crc16-ccitt\", \"endian\": \"big\" },\n"
    "    \"messages\": [ { \"kind\": \"report\", \"fields\": [\n"
    "      { \"type\": \"u8\", \"property\": \"u8\" }, { \"type\": \"i8\", \"property\": \"i8\" "
    "},\n"
    "      { \"type\": \"u16\", \"property\": \"u16\" }, { \"type\": \"i16\", \"property\": "
    "\"i16\" },\n"
    "      { \"type\": \"u32\", \"property\": \"u32\" }, { \"type\": \"i32\", \"property\": "
    "\"i32\" },\n"
    "      { \"type\": \"u64\", \"property\": \"u64\" }, { \"type\": \"i64\", \"property\": "
    "\"i64\" },\n"
    "      { \"type\": \"f32\", \"property\": \"f32\" }, { \"type\": \"f64\", \"property\": "
    "\"f64\" },\n"
    "      { \"type\": \"bcd\", \"size\": 3, \"property\": \"bcd\" },\n"
    "      { \"type\": \"bcd\", \"size\": 2, \"property\": \"bcds\" },\n"
    "      { \"type\": \"string\", \"size\": 6, \"property\": \"str\" },\n"
    "      { \"name\": \"flag\", \"offset\": 53, \"type\": \"u8\", \"bit\": 0, \"property\": "
    "\"flag\" },\n"
    "      { \"offset\": 53, \"type\": \"u8\", \"bit\": 1, \"bits\": 3, \"property\": \"nib\" "
    "},\n"
    "      { \"name\": \"en\", \"offset\": 53, \"type\": \"u8\", \"bit\": 4, \"bits\": 2, "
    "\"property\": \"en\" },\n"
    "      { \"offset\": 54, \"type\": \"u16\", \"scale\": 0.5, \"add\": -10, \"property\": "
    "\"scaled\" },\n"
    "      { \"type\": \"u8\", \"scale\": 2, \"add\": 1, \"property\": \"offs\" },\n"
    "      { \"type\": \"u16\", \"endian\": \"big\", \"property\": \"be16\" },\n"
    "      { \"name\": \"pstr\", \"type\": \"string\", \"prefix\": 1, \"property\": \"pstr\" },\n"
    "      { \"name\": \"hex\", \"type\": \"bytes\", \"size\": 3, \"property\": \"hex\" },\n"
    "      { \"name\": \"phex\", \"type\": \"bytes\", \"prefix\": 2, \"property\": \"phex\" } ] } "
    "] } }";

#define TYPES_VALUES                                                                               \
    "{\"u8\": 1, \"i8\": -2, \"u16\": 4660, \"i16\": -300, \"u32\": 2309737967, \"i32\": "         \
    "-100000, \"u64\": 72623859790382856, \"i64\": -2, \"f32\": 1.5, \"f64\": -2.25, \"bcd\": "    \
    "123456, \"bcds\": \"0042\", \"str\": \"abc\", \"flag\": true, \"nib\": 5, \"en\": \"z\", "    \
    "\"scaled\": 40.0, \"offs\": 21, \"be16\": 258, \"pstr\": \"h\\u00e9llo\", \"hex\": "          \
    "\"a1b2c3\", \"phex\": \"ff00\"}"

#define TYPES_BODY                                                                                 \
    "01 FE 34 12 D4 FE EF CD AB 89 60 79 FE FF 08 07 06 05 04 03 02 01 FE FF FF FF FF FF FF FF "   \
    "00 00 C0 3F 00 00 00 00 00 00 02 C0 12 34 56 00 42 61 62 63 00 00 00 2B 64 00 0A 01 02 06 "   \
    "68 C3 A9 6C 6C 6F A1 B2 C3 02 00 FF 00"

static void fix_ccitt(uint8_t *f, size_t n)
{
    uint16_t c = bt_crc("crc16-ccitt-false", f, n - 2);
    f[n - 2] = (uint8_t)(c >> 8);
    f[n - 1] = (uint8_t)c;
}

static void test_field_types(void)
{
    bt_loaded r = bt_load_text(types_product);
    const gw_product *p = r.p;
    uint8_t f[256], want[256];
    gw_thing_msg m;
    gw_reject rej;
    if (!p) {
        fprintf(stderr, "%s", r.errors);
        CHECK(0);
        return;
    }
    size_t n = build_up(p, BIN_K_REPORT, 0, TYPES_VALUES, 0, 0, f, sizeof(f));
    size_t wn = bt_unhex(TYPES_BODY " 00 00", want, sizeof(want));
    fix_ccitt(want, wn);
    CHECK_INT(n, 75);
    CHECK_STR(bt_hex(f, n), bt_hex(want, wn));

    CHECK_INT(ops->decode(p, NULL, want, wn, &m, &rej), 0);
    json_t *exp = json_loads(TYPES_VALUES, 0, NULL);
    char *got = json_dumps(m.values, JSON_SORT_KEYS | JSON_COMPACT);
    char *wanted = json_dumps(exp, JSON_SORT_KEYS | JSON_COMPACT);
    CHECK_STR(got, wanted);
    free(got);
    free(wanted);
    CHECK_VAL_REAL(&m, "f32", 1.5);
    CHECK_VAL_REAL(&m, "scaled", 40.0); /* a real scale makes a real */
    CHECK_VAL_INT(&m, "offs", 21);      /* an integer transform keeps an integer */
    CHECK_VAL_INT(&m, "bcd", 123456);
    CHECK_VAL_STR(&m, "bcds", "0042");
    json_t *norm = NULL;
    CHECK_INT(gw_tm_check_report(p, m.values, &norm, &rej), 0);
    json_decref(norm);
    json_decref(exp);
    gw_thing_msg_clear(&m);

    /* refusals of single fields */
    struct {
        size_t at;
        uint8_t byte;
        const char *detail;
    } bad[] = {
        {33, 0x7F, "field frame.messages[0].fields[8]: not a finite number"}, /* f32 NaN/inf */
        {42, 0x1A, "field frame.messages[0].fields[10]: byte 0 (0x1A) is not BCD"},
        {47, 0xC3, "field frame.messages[0].fields[12]: not valid UTF-8 text"},
        {53, 0x3B, "field en: en index 3 is not listed (0..2)"},
        {59, 0x30, "field pstr (offset 59, 49 bytes): the frame has 75 bytes"},
        {69, 0x09, "field phex (offset 69, 11 bytes): the frame has 75 bytes"},
        {21, 0x81,
         "field frame.messages[0].fields[6]: 9295995896645158664 does not fit a "
         "64-bit signed integer"},
    };
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        uint8_t b[256];
        memcpy(b, want, wn);
        b[bad[i].at] = bad[i].byte;
        if (bad[i].at == 33)
            b[32] = 0xC0, b[31] = 0, b[30] = 0; /* 0x7FC00000: NaN */
        fix_ccitt(b, wn);
        CHECK_INT(ops->decode(p, NULL, b, wn, &m, &rej), GW_EINVAL);
        CHECK_CONTAINS(rej.detail, bad[i].detail);
        CHECK(m.values == NULL);
        gw_thing_msg_clear(&m);
    }

    /* encode refusals */
    const bin_msg *bm = msg_by_match(p, BIN_K_REPORT, 0);
    gw_error err = {0};
    json_t *v = json_loads(TYPES_VALUES, 0, NULL);
    bin_src src = {.values = v};
    json_object_set_new(v, "u8", json_integer(256));
    CHECK_INT(gw__binary_encode(p->codec_state, bm, &src, f, sizeof(f), &n, &err), GW_EINVAL);
    CHECK_CONTAINS(err.msg, "frame.messages[0].fields[0]: 256 does not fit 8 bits");
    json_object_set_new(v, "u8", json_integer(1));
    json_object_set_new(v, "nib", json_integer(8));
    CHECK_INT(gw__binary_encode(p->codec_state, bm, &src, f, sizeof(f), &n, &err), GW_EINVAL);
    CHECK_CONTAINS(err.msg, "8 does not fit 3 bits");
    json_object_set_new(v, "nib", json_integer(5));
    json_object_set_new(v, "str", json_string("abcdefg"));
    CHECK_INT(gw__binary_encode(p->codec_state, bm, &src, f, sizeof(f), &n, &err), GW_EINVAL);
    CHECK_CONTAINS(err.msg, "7 bytes do not fit 6");
    json_object_set_new(v, "str", json_string("abc"));
    json_object_set_new(v, "hex", json_string("a1b2z3"));
    CHECK_INT(gw__binary_encode(p->codec_state, bm, &src, f, sizeof(f), &n, &err), GW_EINVAL);
    CHECK_CONTAINS(err.msg, "is not a hex string");
    json_object_set_new(v, "hex", json_string("a1b2c3"));
    json_object_set_new(v, "bcds", json_string("12345"));
    CHECK_INT(gw__binary_encode(p->codec_state, bm, &src, f, sizeof(f), &n, &err), GW_EINVAL);
    CHECK_CONTAINS(err.msg, "5 digits do not fit 2 BCD bytes");
    json_object_set_new(v, "bcds", json_string("42"));
    json_object_del(v, "be16");
    CHECK_INT(gw__binary_encode(p->codec_state, bm, &src, f, sizeof(f), &n, &err), GW_EINVAL);
    CHECK_CONTAINS(err.msg, "\"be16\" is missing");
    json_object_set_new(v, "be16", json_integer(258));
    CHECK_INT(gw__binary_encode(p->codec_state, bm, &src, f, 74, &n, &err), GW_ETOOBIG);
    CHECK_INT(gw__binary_encode(p->codec_state, bm, &src, f, 75, &n, &err), 0);
    CHECK_INT(want[46], 0x42);
    CHECK_STR(bt_hex(f, n), bt_hex(want, wn)); /* "42" is right-aligned: 00 42 */
    json_decref(v);
    bt_free(&r);
}

/* ---- gt06 (Concox GT06): the published examples of the protocol document ------------------ */

#define GT06_LOGIN     "78 78 0D 01 01 23 45 67 89 01 23 45 00 01 8C DD 0D 0A"
#define GT06_LOGIN_ACK "78 78 05 01 00 01 D9 DC 0D 0A"
#define GT06_LOCATION                                                                              \
    "78 78 1F 12 0B 08 1D 11 2E 10 CF 02 7A C7 EB 0C 46 58 49 00 14 8F 01 CC 00 28 7D 00 1F B8 "   \
    "00 03 80 81 0D 0A"
#define GT06_HEARTBEAT "78 78 0A 13 44 01 04 00 01 00 05 08 45 0D 0A"
#define GT06_ALARM                                                                                 \
    "78 78 25 16 0B 0B 0F 0E 24 1D CF 02 7A C8 87 0C 46 57 E6 00 14 02 09 01 CC 00 28 7D 00 1F "   \
    "72 65 06 04 01 01 00 36 56 A4 0D 0A"

/* The frame with the 16-bit word at body offset at set to w and its CRC-16/X-25 redone. */
static size_t gt06_with_word(const char *hex, size_t at, unsigned w, uint8_t *f, size_t cap)
{
    size_t n = bt_unhex(hex, f, cap);
    f[at] = (uint8_t)(w >> 8), f[at + 1] = (uint8_t)w;
    uint32_t c = bt_crc("crc16-x25", f + 2, n - 6);
    f[n - 4] = (uint8_t)(c >> 8), f[n - 3] = (uint8_t)c;
    return n;
}

static void test_gt06(void)
{
    bt_loaded r = bt_load_example("gt06.json");
    const gw_product *p = r.p;
    gw_thing_msg m;
    gw_reject rej;
    uint8_t out[512], f[512];
    size_t n, skip;
    if (!p)
        return;
    /* the document's CRCs are CRC-16/X-25 over length .. serial */
    n = bt_unhex(GT06_LOCATION, f, sizeof(f));
    CHECK_INT(bt_crc("crc16-x25", f + 2, n - 6), 0x8081);

    /* login: IMEI 0123456789012345 in BCD, the pad digit dropped */
    n = bt_unhex(GT06_LOGIN, f, sizeof(f));
    CHECK_INT(ops->frame(p, f, n, &skip), (int)n);
    CHECK_INT(decode_hex(p, GT06_LOGIN, &m, &rej), 0);
    CHECK_INT(m.kind, GW_MSG_LOGIN);
    CHECK_STR(m.device_id, "123456789012345");
    CHECK_STR(m.secret, "");
    CHECK_INT(m.seq, 1);
    CHECK_INT(m.type_code, 0x01);
    CHECK_INT(ops->encode_ack(p, &m, NULL, NULL, out, sizeof(out), &n), 0);
    CHECK_BYTES(out, n, GT06_LOGIN_ACK);
    gw_thing_msg_clear(&m);

    /* location 0x12: 2011-08-29 17:46:16 UTC, 15 satellites, 0x027AC7EB / 1,800,000 N,
     * 0x0C465849 / 1,800,000 E, 0 km/h, course/status 0x148F (positioned, north, east, 143) */
    CHECK_INT(decode_hex(p, GT06_LOCATION, &m, &rej), 0);
    CHECK_INT(m.kind, GW_MSG_PROPERTY_REPORT);
    CHECK_INT(m.seq, 3);
    CHECK_INT(m.timestamp_ms, 1314639976000LL);
    CHECK_VAL_INT(&m, "satellites", 15);
    CHECK_VAL_REAL(&m, "lat", 41601003.0 / 1800000.0);  /* 23.111668... */
    CHECK_VAL_REAL(&m, "lon", 205936713.0 / 1800000.0); /* 114.409285 */
    CHECK_VAL_INT(&m, "speed", 0);
    CHECK_VAL_INT(&m, "course", 143);
    CHECK_VAL_BOOL(&m, "positioned", true);
    CHECK_VAL_INT(&m, "mcc", 460);
    CHECK_VAL_INT(&m, "mnc", 0);
    CHECK_VAL_INT(&m, "lac", 10365);
    CHECK_VAL_INT(&m, "cell_id", 8120);
    CHECK_INT(json_object_size(m.values), 10);
    CHECK(json_object_get(m.values, "north") == NULL); /* flag bits without a target */
    CHECK_INT(ops->encode_ack(p, &m, NULL, NULL, out, sizeof(out), &n), 0);
    CHECK_INT(n, 0); /* the document: no answer to a location */
    gw_thing_msg_clear(&m);
    /* the hemisphere bits: bit 10 clear = south (negative latitude), bit 11 set = west */
    static const struct {
        unsigned word;
        int lat_sign, lon_sign;
        bool positioned;
    } hemi[] = {{0x148F, 1, 1, true},
                {0x108F, -1, 1, true},
                {0x1C8F, 1, -1, true},
                {0x088F, -1, -1, false},
                {0x3C8F, 1, -1, true}};
    for (size_t i = 0; i < sizeof(hemi) / sizeof(hemi[0]); i++) {
        n = gt06_with_word(GT06_LOCATION, 20, hemi[i].word, f, sizeof(f));
        CHECK_INT(ops->decode(p, NULL, f, n, &m, &rej), 0);
        CHECK_VAL_REAL(&m, "lat", hemi[i].lat_sign * 41601003.0 / 1800000.0);
        CHECK_VAL_REAL(&m, "lon", hemi[i].lon_sign * 205936713.0 / 1800000.0);
        CHECK_VAL_INT(&m, "course", 143);
        CHECK_VAL_BOOL(&m, "positioned", hemi[i].positioned);
        gw_thing_msg_clear(&m);
    }
    n = gt06_with_word(GT06_LOCATION, 20, 0x17FF, f, sizeof(f)); /* course takes 10 bits */
    CHECK_INT(ops->decode(p, NULL, f, n, &m, &rej), 0);
    CHECK_VAL_INT(&m, "course", 1023);
    gw_thing_msg_clear(&m);
    /* the encoder (tests, fuzzing) writes a signed value's magnitude and sets its flag bit */
    {
        static const double lats[] = {-33.8688, 33.8688}, lons[] = {151.2093, -70.6693};
        for (int i = 0; i < 2; i++) {
            char vals[400];
            snprintf(vals, sizeof(vals),
                     "{\"lat\": %.17g, \"lon\": %.17g, \"speed\": 61, \"course\": 359, "
                     "\"satellites\": 9, \"positioned\": true, \"mcc\": 505, \"mnc\": 1, "
                     "\"lac\": 65535, \"cell_id\": 16777215}",
                     lats[i], lons[i]);
            json_t *v = json_loads(vals, 0, NULL);
            bin_src src = {.seq = 9, .values = v, .timestamp_ms = 1700000000000LL};
            gw_error err = {0};
            const bin_msg *bm = msg_by_match(p, BIN_K_REPORT, 0x12);
            if (gw__binary_encode(p->codec_state, bm, &src, f, sizeof(f), &n, &err) != 0)
                fprintf(stderr, "encode: %s\n", err.msg);
            json_decref(v);
            CHECK_INT(n, 36);
            CHECK_INT(f[20] >> 2 & 3,
                      i == 0 ? 0 : 3); /* south+east: bits 10, 11 clear; north+west */
            CHECK_INT(ops->decode(p, NULL, f, n, &m, &rej), 0);
            CHECK_VAL_REAL(&m, "lat", lats[i]);
            CHECK_VAL_REAL(&m, "lon", lons[i]);
            CHECK_VAL_INT(&m, "course", 359);
            CHECK_VAL_INT(&m, "cell_id", 16777215);
            CHECK_INT(m.timestamp_ms, 1700000000000LL); /* 23-11-14 22:13:20 */
            CHECK_INT(f[4], 23);
            CHECK_INT(f[9], 20);
            gw_thing_msg_clear(&m);
        }
    }
    /* a date that is none (month 13): malformed, named */
    n = gt06_with_word(GT06_LOCATION, 4, 0x0B0D, f, sizeof(f));
    CHECK_INT(ops->decode(p, NULL, f, n, &m, &rej), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_MALFORMED_PAYLOAD);
    CHECK_CONTAINS(rej.detail, "field time: 0B 0D 1D 11 2E 10 is not a date-time");
    gw_thing_msg_clear(&m);
    /* the widely copied variant with satellites CC keeps the CF frame's CRC: a bad check */
    n = bt_unhex(GT06_LOCATION, f, sizeof(f));
    f[10] = 0xCC;
    CHECK_INT(ops->decode(p, NULL, f, n, &m, &rej), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_BAD_CHECK);
    CHECK_CONTAINS(rej.detail, "crc16-x25: the frame says 0x8081, the bytes give 0x7377");
    gw_thing_msg_clear(&m);

    /* heartbeat 0x13 (status information): answered with its serial */
    CHECK_INT(decode_hex(p, GT06_HEARTBEAT, &m, &rej), 0);
    CHECK_INT(m.kind, GW_MSG_HEARTBEAT);
    CHECK_INT(m.seq, 5);
    CHECK_INT(ops->encode_ack(p, &m, NULL, NULL, out, sizeof(out), &n), 0);
    CHECK_BYTES(out, n, "78 78 05 13 00 05 AF D5 0D 0A");
    gw_thing_msg_clear(&m);

    /* alarm 0x16: 2011-11-15 14:36:29, SOS (alarm 01), terminal info 0x65, voltage 6, GSM 4 */
    CHECK_INT(decode_hex(p, GT06_ALARM, &m, &rej), 0);
    CHECK_INT(m.kind, GW_MSG_EVENT);
    CHECK_STR(m.name, "alarm");
    CHECK_INT(m.seq, 0x36);
    CHECK_INT(m.timestamp_ms, 1321367789000LL);
    CHECK_VAL_INT(&m, "alarm", 1);
    CHECK_VAL_REAL(&m, "lat", 0x027AC887 / 1800000.0);
    CHECK_VAL_REAL(&m, "lon", 0x0C4657E6 / 1800000.0);
    CHECK_VAL_INT(&m, "speed", 0);
    CHECK_VAL_INT(&m, "course", 2); /* 0x1402: positioned, north, east */
    CHECK_VAL_BOOL(&m, "positioned", true);
    CHECK_VAL_INT(&m, "terminal_info", 0x65);
    CHECK_VAL_INT(&m, "voltage_level", 6);
    CHECK_VAL_INT(&m, "gsm_signal", 4);
    CHECK_INT(ops->encode_ack(p, &m, NULL, NULL, out, sizeof(out), &n), 0);
    CHECK_BYTES(out, n, "78 78 05 16 00 36 95 70 0D 0A");
    gw_thing_msg_clear(&m);

    /* a login whose IMEI has 16 digits (pad digit not 0): malformed, not a silent cut */
    n = bt_unhex(GT06_LOGIN, f, sizeof(f));
    f[4] = 0x11;
    {
        uint32_t c = bt_crc("crc16-x25", f + 2, n - 6);
        f[n - 4] = (uint8_t)(c >> 8), f[n - 3] = (uint8_t)c;
    }
    CHECK_INT(ops->decode(p, NULL, f, n, &m, &rej), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_MALFORMED_PAYLOAD);
    CHECK_CONTAINS(rej.detail, "field imei: 1123456789012345 has more than 15 digits");
    gw_thing_msg_clear(&m);
    /* truncated: the framer waits for the rest; a frame too short for its fields is malformed */
    n = bt_unhex(GT06_LOCATION, f, sizeof(f));
    CHECK_INT(ops->frame(p, f, n - 1, &skip), 0);
    CHECK_INT(ops->frame(p, f, 3, &skip), 0);
    n = bt_unhex("78 78 05 12 00 07 00 00 0D 0A", f, sizeof(f));
    {
        uint32_t c = bt_crc("crc16-x25", f + 2, n - 6);
        f[n - 4] = (uint8_t)(c >> 8), f[n - 3] = (uint8_t)c;
    }
    CHECK_INT(ops->frame(p, f, n, &skip), (int)n);
    CHECK_INT(ops->decode(p, NULL, f, n, &m, &rej), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_MALFORMED_PAYLOAD);
    gw_thing_msg_clear(&m);
    /* wrong stop bytes */
    n = bt_unhex(GT06_HEARTBEAT, f, sizeof(f));
    f[n - 1] = 0x0B;
    CHECK_INT(ops->decode(p, NULL, f, n, &m, &rej), GW_EINVAL);
    CHECK_CONTAINS(rej.detail, "field stop: expected 0xD0A, got 0xD0B");
    gw_thing_msg_clear(&m);
    bt_free(&r);
}

/* The GT06 document's online command (8.1: 0x80 with the language word, "sos#", server flag 0,
 * serial 1) and the terminal's reply (8.2.2: 0x15, flag 0, "SOS1:13421632699 SOS2: SOS3:", English,
 * serial 0x2A); their CRC-16/X-25 verified with python3. */
#define GT06_CMD_DOC "78 78 10 80 08 00 00 00 00 73 6F 73 23 00 02 00 01 9A 17 0D 0A"
#define GT06_REPLY_DOC                                                                             \
    "78 78 28 15 20 00 00 00 00 53 4F 53 31 3A 31 33 34 32 31 36 33 32 36 39 39 20 53 4F 53 32 "   \
    "3A "                                                                                          \
    "20 53 4F 53 33 3A 00 01 00 2A C3 9C 0D 0A"

static void test_gt06_command(void)
{
    bt_loaded r = bt_load_example("gt06.json");
    const gw_product *p = r.p;
    gw_thing_msg m;
    gw_reject rej;
    gw_error err = {0};
    uint8_t out[512], f[512];
    size_t n, skip;
    const bin_msg *which;
    if (!p)
        return;
    /* the document's command decodes as our 0x80: the server flag is the correlation (seq) */
    n = bt_unhex(GT06_CMD_DOC, f, sizeof(f));
    CHECK_INT(ops->frame(p, f, n, &skip), (int)n);
    CHECK_INT(gw__binary_decode(p, true, f, n, &m, &which, &rej), 0);
    CHECK(which && which->kind == BIN_K_INVOKE && which->match == 0x80);
    CHECK_STR(m.name, "command");
    CHECK_INT(m.seq, 0); /* the flag, not the serial (1): the message's role wins */
    CHECK_VAL_STR(&m, "text", "sos#");
    gw_thing_msg_clear(&m);
    /* and we build it byte for byte (seq 0 in both the flag and the serial: serial 00 00) */
    json_t *in = json_pack("{s:s}", "text", "sos#");
    CHECK_INT(gw_binary_encode_command(p, "123456789012345", NULL, "command", in, 1, out,
                                       sizeof(out), &n, &err),
              0);
    CHECK_BYTES(out, n, "78 78 10 80 08 00 00 00 01 73 6F 73 23 00 02 00 01 D7 EA 0D 0A");
    json_decref(in);
    in = json_pack("{s:s}", "text", "WHERE#");
    CHECK_INT(gw_binary_encode_command(p, "123456789012345", NULL, "command", in, 7, out,
                                       sizeof(out), &n, &err),
              0);
    CHECK_BYTES(out, n, "78 78 12 80 0A 00 00 00 07 57 48 45 52 45 23 00 02 00 07 66 AB 0D 0A");
    json_decref(in);
    /* a text the 1-byte length cannot describe */
    char big[250];
    memset(big, 'A', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    in = json_pack("{s:s}", "text", big);
    CHECK(gw_binary_encode_command(p, "123456789012345", NULL, "command", in, 7, out, sizeof(out),
                                   &n, &err) != 0);
    json_decref(in);

    /* the document's reply: matched by the server flag, the text as the output */
    CHECK_INT(decode_hex(p, GT06_REPLY_DOC, &m, &rej), 0);
    CHECK_INT(m.kind, GW_MSG_FUNCTION_REPLY);
    CHECK_STR(m.name, "command");
    CHECK_INT(m.seq, 0);
    CHECK_STR(m.msg_id, "0");
    CHECK_INT(m.success, 1);
    CHECK_VAL_STR(&m, "response", "SOS1:13421632699 SOS2: SOS3:");
    CHECK_INT(ops->encode_ack(p, &m, NULL, NULL, out, sizeof(out), &n), 0);
    CHECK_INT(n, 0); /* no ack for a reply */
    gw_thing_msg_clear(&m);
    /* a command length past the frame, and one below the flag's 4 bytes */
    n = gt06_with_word(GT06_REPLY_DOC, 4, 0x2100, f, sizeof(f)); /* 0x21: one byte too many */
    CHECK_INT(ops->decode(p, NULL, f, n, &m, &rej), GW_EINVAL);
    CHECK_INT(rej.reason, GW_R_MALFORMED_PAYLOAD);
    CHECK_CONTAINS(rej.detail, "field response");
    gw_thing_msg_clear(&m);
    n = gt06_with_word(GT06_REPLY_DOC, 4, 0x0300, f, sizeof(f));
    CHECK_INT(ops->decode(p, NULL, f, n, &m, &rej), GW_EINVAL);
    CHECK_CONTAINS(rej.detail, "field response: its size field command_length says -1 bytes");
    gw_thing_msg_clear(&m);
    bt_free(&r);
}

int main(void)
{
    test_check_vectors();
    test_crc_random();
    test_ack_templates();
    test_check_in_frames();
    test_meter();
    test_meter_rejects();
    test_meter_stream();
    test_tracker();
    test_tracker_stream();
    test_tracker_register();
    test_sensor();
    test_gt06();
    test_gt06_command();
    test_fixed_and_crlf();
    test_field_types();
    TEST_MAIN_END();
}

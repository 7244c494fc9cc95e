/* mqtt_prot.c (test): the MQTT 3.1.1 parser/encoder, table-driven: each case is bytes in and the
 * expected code and fields out. Inputs are copied to exact-size heap buffers so ASan sees any read
 * past the end. Includes the CVE-2017-7651 remaining-length shape and the spec's matching examples.
 */
#include "protocols/mqtt/mqtt_prot.h"

#include <stdint.h>

#include "gateway/util/error.h"
#include "test.h"

#define B(...) (const uint8_t[]){__VA_ARGS__}, sizeof((const uint8_t[]){__VA_ARGS__})
#define S(s)   (const uint8_t *)(s), sizeof(s) - 1

/* Exact-size heap copy, so a read past n is an ASan error. */
static uint8_t *heap(const uint8_t *b, size_t n)
{
    uint8_t *p = malloc(n ? n : 1);
    if (n)
        memcpy(p, b, n);
    return p;
}

static int str_eq(gw_mqtt_str s, const char *want)
{
    return s.len == strlen(want) && memcmp(s.p, want, s.len) == 0;
}

/* ---- fixed header ---------------------------------------------------------------------------- */

struct fh_case {
    const char *name;
    const uint8_t *b;
    size_t n;
    uint32_t max;
    int rc;
    uint32_t remaining;
    uint8_t header_len;
};

static const struct fh_case fh_cases[] = {
    {"connect, empty body", B(0x10, 0x00), 65536, 0, 0, 2},
    {"first byte only", B(0x30), 65536, GW_EINCOMPLETE, 0, 0},
    {"partial length 1", B(0x30, 0x80), 65536, GW_EINCOMPLETE, 0, 0},
    {"partial length 2", B(0x30, 0xFF, 0xFF), 65536, GW_EINCOMPLETE, 0, 0},
    {"partial length 3", B(0x30, 0x80, 0x80, 0x80), 65536, GW_EINCOMPLETE, 0, 0},
    {"4 length bytes all continued", B(0x30, 0xFF, 0xFF, 0xFF, 0xFF), UINT32_MAX, GW_EPROTO, 0, 0},
    {"CVE-2017-7651: 5 length bytes", B(0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F), UINT32_MAX, GW_EPROTO,
     0, 0},
    {"CVE-2017-7651 with small max", B(0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x7F), 65536, GW_EPROTO, 0, 0},
    {"len 0", B(0x30, 0x00), 65536, 0, 0, 2},
    {"len 127", B(0x30, 0x7F), 65536, 0, 127, 2},
    {"len 128", B(0x30, 0x80, 0x01), 65536, 0, 128, 3},
    {"len 16383", B(0x30, 0xFF, 0x7F), 65536, 0, 16383, 3},
    {"len 16384", B(0x30, 0x80, 0x80, 0x01), 65536, 0, 16384, 4},
    {"len 2097151", B(0x30, 0xFF, 0xFF, 0x7F), UINT32_MAX, 0, 2097151, 4},
    {"len 2097152", B(0x30, 0x80, 0x80, 0x80, 0x01), UINT32_MAX, 0, 2097152, 5},
    {"len 268435455 (max)", B(0x30, 0xFF, 0xFF, 0xFF, 0x7F), UINT32_MAX, 0, 268435455, 5},
    {"len max, max_packet exact", B(0x30, 0xFF, 0xFF, 0xFF, 0x7F), 268435460, 0, 268435455, 5},
    {"len max, max_packet - 1", B(0x30, 0xFF, 0xFF, 0xFF, 0x7F), 268435459, GW_ETOOBIG, 268435455,
     5},
    {"huge length, nothing sent", B(0x30, 0xFF, 0xFF, 0xFF, 0x7F), 65536, GW_ETOOBIG, 268435455, 5},
    {"65536 body before it arrives", B(0x30, 0x80, 0x80, 0x04), 65536, GW_ETOOBIG, 65536, 4},
    {"total == max_packet", B(0x30, 0x7F), 129, 0, 127, 2},
    {"total == max_packet + 1", B(0x30, 0x7F), 128, GW_ETOOBIG, 127, 2},
    {"non-minimal length accepted", B(0x30, 0x80, 0x00), 65536, 0, 0, 3},
    {"type 0", B(0x00, 0x00), 65536, GW_EPROTO, 0, 0},
    {"type 15", B(0xF0, 0x00), 65536, GW_EPROTO, 0, 0},
    {"type 0 judged on byte 1", B(0x00), 65536, GW_EPROTO, 0, 0},
    {"connect flags 1", B(0x11, 0x00), 65536, GW_EPROTO, 0, 0},
    {"publish qos 3", B(0x36, 0x00), 65536, GW_EPROTO, 0, 0},
    {"publish qos 3 dup retain", B(0x3F, 0x00), 65536, GW_EPROTO, 0, 0},
    {"publish dup qos2 retain", B(0x3D, 0x00), 65536, 0, 0, 2},
    {"publish qos 1", B(0x32, 0x00), 65536, 0, 0, 2},
    {"puback flags 1", B(0x41, 0x02), 65536, GW_EPROTO, 0, 0},
    {"pubrel flags 2", B(0x62, 0x02), 65536, 0, 2, 2},
    {"pubrel flags 0", B(0x60, 0x02), 65536, GW_EPROTO, 0, 0},
    {"subscribe flags 2", B(0x82, 0x08), 65536, 0, 8, 2},
    {"subscribe flags 0", B(0x80, 0x08), 65536, GW_EPROTO, 0, 0},
    {"subscribe flags 3", B(0x83, 0x08), 65536, GW_EPROTO, 0, 0},
    {"subscribe wrong flags, 1 byte", B(0x80), 65536, GW_EPROTO, 0, 0},
    {"unsubscribe flags 2", B(0xA2, 0x05), 65536, 0, 5, 2},
    {"unsubscribe flags 0", B(0xA0, 0x05), 65536, GW_EPROTO, 0, 0},
    {"pingreq", B(0xC0, 0x00), 65536, 0, 0, 2},
    {"pingreq flags 1", B(0xC1, 0x00), 65536, GW_EPROTO, 0, 0},
    {"disconnect", B(0xE0, 0x00), 65536, 0, 0, 2},
    {"disconnect flags 8", B(0xE8, 0x00), 65536, GW_EPROTO, 0, 0},
};

static void test_fixed_header(void)
{
    for (size_t i = 0; i < sizeof(fh_cases) / sizeof(fh_cases[0]); i++) {
        const struct fh_case *c = &fh_cases[i];
        uint8_t *b = heap(c->b, c->n);
        gw_mqtt_fixed fh = {0};
        int rc = gw_mqtt_fixed_header(b, c->n, c->max, &fh);
        if (rc != c->rc)
            fprintf(stderr, "fixed header case: %s\n", c->name);
        CHECK_INT(rc, c->rc);
        if (rc == 0 || rc == GW_ETOOBIG) {
            CHECK_INT(fh.type, c->b[0] >> 4);
            CHECK_INT(fh.flags, c->b[0] & 0x0F);
            CHECK_INT(fh.remaining, c->remaining);
            CHECK_INT(fh.header_len, c->header_len);
        }
        free(b);
    }
    gw_mqtt_fixed fh;
    CHECK_INT(gw_mqtt_fixed_header((const uint8_t *)"", 0, 65536, &fh), GW_EINCOMPLETE);

    /* *out is always written; _why names the counter's error kind. */
    struct {
        const uint8_t *b;
        size_t n;
        uint32_t max;
        int rc;
        const char *why;
        uint8_t type;
    } whys[] = {
        {B(0xF0, 0x00), 65536, GW_EPROTO, "malformed_packet", 15},
        {B(0x80, 0x00), 65536, GW_EPROTO, "malformed_packet", GW_MQTT_SUBSCRIBE},
        {B(0x30, 0xFF, 0xFF, 0xFF, 0xFF), 65536, GW_EPROTO, "bad_remaining_length", 3},
        {B(0x30, 0x80, 0x80, 0x04), 65536, GW_ETOOBIG, "oversized_packet", 3},
        {B(0x30, 0x80), 65536, GW_EINCOMPLETE, "(untouched)", 3},
        {B(0x30, 0x00), 65536, 0, "(untouched)", 3},
    };
    for (size_t i = 0; i < sizeof(whys) / sizeof(whys[0]); i++) {
        uint8_t *b = heap(whys[i].b, whys[i].n);
        const char *why = "(untouched)";
        memset(&fh, 0x5A, sizeof(fh));
        CHECK_INT(gw_mqtt_fixed_header_why(b, whys[i].n, whys[i].max, &fh, &why), whys[i].rc);
        CHECK_STR(why, whys[i].why);
        CHECK_INT(fh.type, whys[i].type);
        CHECK_INT(fh.flags, whys[i].b[0] & 0x0F);
        if (whys[i].rc == GW_EPROTO || whys[i].rc == GW_EINCOMPLETE)
            CHECK(fh.remaining == 0 && fh.header_len == 0);
        free(b);
    }

    /* A length announcing far more than was sent: the header is known, the packet needs more. */
    uint8_t *b = heap(B(0x30, 0xE8, 0x07, 0x00, 0x01, 'a'));
    CHECK_INT(gw_mqtt_fixed_header(b, 6, 65536, &fh), 0);
    CHECK_INT(fh.remaining, 1000);
    CHECK_INT(gw_mqtt_frame(b, 6, 65536, &fh), GW_EINCOMPLETE);
    CHECK_INT(fh.remaining, 1000);
    CHECK_INT(gw_mqtt_frame(b, 6, 512, &fh), GW_ETOOBIG);
    CHECK_INT(gw_mqtt_frame(b, 2, 65536, &fh), GW_EINCOMPLETE);
    free(b);
    b = heap(B(0x30, 0xFF, 0xFF, 0xFF, 0x7F, 0x00));
    CHECK_INT(gw_mqtt_frame(b, 6, 65536, &fh), GW_ETOOBIG);
    CHECK_INT(gw_mqtt_frame(b, 6, UINT32_MAX, &fh), GW_EINCOMPLETE);
    free(b);
    b = heap(B(0x30, 0xFF, 0xFF, 0xFF, 0xFF));
    CHECK_INT(gw_mqtt_frame(b, 5, UINT32_MAX, &fh), GW_EPROTO);
    free(b);
    b = heap(B(0xC0, 0x00, 0xE0));
    CHECK_INT(gw_mqtt_frame(b, 3, 65536, &fh), 0);
    CHECK_INT(fh.type, GW_MQTT_PINGREQ);
    CHECK_INT(gw_mqtt_frame(b + 2, 1, 65536, &fh), GW_EINCOMPLETE);
    free(b);
}

/* ---- UTF-8, filters, matching ---------------------------------------------------------------- */

struct utf8_case {
    const uint8_t *b;
    size_t n;
    bool ok;
};

static const struct utf8_case utf8_cases[] = {
    {S(""), true},
    {S("plain ascii topic/with/levels"), true},
    {B(0x7F), true},
    {B(0x00), false},
    {B('a', 0x00, 'b'), false},
    {B(0xC2, 0x80), true},              /* U+0080 */
    {B(0xDF, 0xBF), true},              /* U+07FF */
    {B(0xC0, 0x80), false},             /* overlong U+0000 */
    {B(0xC1, 0xBF), false},             /* overlong U+007F */
    {B(0xE0, 0xA0, 0x80), true},        /* U+0800 */
    {B(0xE0, 0x9F, 0xBF), false},       /* overlong U+07FF */
    {B(0xED, 0x9F, 0xBF), true},        /* U+D7FF */
    {B(0xED, 0xA0, 0x80), false},       /* U+D800 surrogate */
    {B(0xED, 0xBF, 0xBF), false},       /* U+DFFF surrogate */
    {B(0xEE, 0x80, 0x80), true},        /* U+E000 */
    {B(0xEF, 0xBB, 0xBF), true},        /* BOM is a character */
    {B(0xEF, 0xBF, 0xBF), true},        /* U+FFFF */
    {B(0xF0, 0x90, 0x80, 0x80), true},  /* U+10000 */
    {B(0xF0, 0x8F, 0xBF, 0xBF), false}, /* overlong U+FFFF */
    {B(0xF4, 0x8F, 0xBF, 0xBF), true},  /* U+10FFFF */
    {B(0xF4, 0x90, 0x80, 0x80), false}, /* U+110000 */
    {B(0xF5, 0x80, 0x80, 0x80), false},
    {B(0xFF), false},
    {B(0x80), false},             /* lone continuation */
    {B(0xC2), false},             /* truncated */
    {B(0xE2, 0x82), false},       /* truncated */
    {B(0xF0, 0x9D, 0x84), false}, /* truncated */
    {B(0xE2, 0x28, 0xA1), false}, /* bad continuation */
    {B('t', 'e', 'm', 'p', 0xC3, 0xA9, 'r', 'a', 't', 'u', 'r', 'e', '/', 0xE2, 0x82, 0xAC, '/',
       0xF0, 0x9D, 0x84, 0x9E),
     true},
    {B('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 'l', 'm', 'n', 'o', 0xC0, 0x80),
     false},
    {B('a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 0xED, 0xA0, 0x80, 'x', 'y', 'z', 'w', 'v'), false},
};

static void test_utf8(void)
{
    for (size_t i = 0; i < sizeof(utf8_cases) / sizeof(utf8_cases[0]); i++) {
        const struct utf8_case *c = &utf8_cases[i];
        uint8_t *b = heap(c->b, c->n);
        bool ok = gw_mqtt_utf8_valid((const char *)b, c->n);
        if (ok != c->ok)
            fprintf(stderr, "utf8 case %zu\n", i);
        CHECK_INT(ok, c->ok);
        free(b);
    }
    /* A NUL at every offset of a 24-byte ASCII string (fast path and tail). */
    char s[24];
    for (size_t at = 0; at < sizeof(s); at++) {
        memset(s, 'x', sizeof(s));
        s[at] = '\0';
        CHECK(!gw_mqtt_utf8_valid(s, sizeof(s)));
        s[at] = (char)0x80;
        CHECK(!gw_mqtt_utf8_valid(s, sizeof(s)));
    }
    memset(s, 'x', sizeof(s));
    CHECK(gw_mqtt_utf8_valid(s, sizeof(s)));
}

struct filter_case {
    const char *f;
    bool ok;
};

static const struct filter_case filter_cases[] = {
    {"#", true},     {"+", true},      {"+/x", true},
    {"a/#", true},   {"a/+/b", true},  {"/+", true},
    {"+/+", true},   {"/", true},      {"+/#", true},
    {"a/b/c", true}, {"a/#/b", false}, {"a/b#", false},
    {"a#", false},   {"a+", false},    {"+a", false},
    {"a/+b", false}, {"##", false},    {"", false},
    {"#/", false},   {"++", false},    {"sport/tennis#", false},
};

static void test_filter(void)
{
    for (size_t i = 0; i < sizeof(filter_cases) / sizeof(filter_cases[0]); i++) {
        const struct filter_case *c = &filter_cases[i];
        size_t n = strlen(c->f);
        uint8_t *b = heap((const uint8_t *)c->f, n);
        bool ok = gw_mqtt_filter_valid((const char *)b, n);
        if (ok != c->ok)
            fprintf(stderr, "filter case \"%s\"\n", c->f);
        CHECK_INT(ok, c->ok);
        free(b);
    }
}

struct match_case {
    const char *f, *t;
    bool match;
};

static const struct match_case match_cases[] = {
    {"sport/tennis/player1/#", "sport/tennis/player1", true},
    {"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
    {"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
    {"sport/tennis/player1/#", "sport/tennis/player2", false},
    {"sport/#", "sport", true},
    {"sport/#", "sport/", true},
    {"sport/#", "sports", false},
    {"#", "a/b/c", true},
    {"#", "/", true},
    {"sport/tennis/+", "sport/tennis/player1", true},
    {"sport/tennis/+", "sport/tennis/player1/ranking", false},
    {"sport/+", "sport", false},
    {"sport/+", "sport/", true},
    {"+/+", "/finance", true},
    {"/+", "/finance", true},
    {"+", "/finance", false},
    {"+", "finance", true},
    {"+/x", "a/x", true},
    {"+/x", "a/y", false},
    {"#", "$SYS/x", false},
    {"+/x", "$SYS/x", false},
    {"+", "$SYS", false},
    {"$SYS/#", "$SYS/x", true},
    {"$SYS/+", "$SYS/x", true},
    {"$SYS/x", "$SYS/x", true},
    {"a/$x", "a/$x", true},
    {"a/+", "a/$x", true},
    {"a/b", "a/b", true},
    {"a/b", "a/bc", false},
    {"a/bc", "a/b", false},
    {"a/b", "a", false},
    {"a", "a/b", false},
    {"a/b/", "a/b", false},
    {"a/b", "a/b/", false},
    {"/p1/d1/#", "/p1/d1/properties/report", true},
    {"/p1/d1/+/report", "/p1/d1/properties/report", true},
    {"/p1/d1/#", "/p1/d2/properties/report", false},
    {"a/#/b", "a/x/b", false}, /* invalid filter: safe, no match */
};

static bool match(const char *f, size_t fl, const char *t, size_t tl)
{
    uint8_t *fb = heap((const uint8_t *)f, fl), *tb = heap((const uint8_t *)t, tl);
    bool m = gw_mqtt_topic_match((const char *)fb, fl, (const char *)tb, tl);
    free(fb);
    free(tb);
    return m;
}

static void test_match(void)
{
    for (size_t i = 0; i < sizeof(match_cases) / sizeof(match_cases[0]); i++) {
        const struct match_case *c = &match_cases[i];
        bool m = match(c->f, strlen(c->f), c->t, strlen(c->t));
        if (m != c->match)
            fprintf(stderr, "match case \"%s\" vs \"%s\"\n", c->f, c->t);
        CHECK_INT(m, c->match);
    }
    /* Length-bounded, not NUL-terminated. */
    CHECK(match("a/bXYZ", 3, "a/b", 3));
    CHECK(match("a/#", 3, "a/bQQ", 3));
    CHECK(!match("a/b", 3, "a/bc", 4));
}

/* ---- CONNECT --------------------------------------------------------------------------------- */

#define MQTT   0x00, 0x04, 'M', 'Q', 'T', 'T'
#define MQISDP 0x00, 0x06, 'M', 'Q', 'I', 's', 'd', 'p'
#define DEV    0x00, 0x03, 'd', 'e', 'v'

struct connect_case {
    const char *name;
    const uint8_t *b;
    size_t n;
    int rc;
    uint8_t connack_rc;
    uint8_t level;
    const char *client_id; /* NULL: not checked */
};

static const struct connect_case connect_cases[] = {
    {"3.1.1", B(MQTT, 4, 0x02, 0x00, 0x3C, DEV), 0, 0, 4, "dev"},
    {"3.1 MQIsdp", B(MQISDP, 3, 0x02, 0x00, 0x3C, DEV), 0, 0, 3, "dev"},
    {"level 5", B(MQTT, 5, 0x02, 0x00, 0x3C, 0x00, DEV), 0, 0, 5, "dev"},
    {"level 5, just the level", B(MQTT, 5), GW_EPROTO, 0xFF, 0, NULL},
    {"level 5, no property length", B(MQTT, 5, 0x02, 0x00, 0x3C), GW_EPROTO, 0xFF, 0, NULL},
    {"level 6", B(MQTT, 6, 0x02, 0x00, 0x3C, 0x00, DEV), GW_EPROTO, 1, 0, NULL},
    {"level 5, MQIsdp", B(MQISDP, 5, 0x02, 0x00, 0x3C, 0x00, DEV), GW_EPROTO, 1, 0, NULL},
    {"level 5, empty id, clean start", B(MQTT, 5, 0x02, 0x00, 0x3C, 0x00, 0x00, 0x00), GW_EPROTO, 2,
     0, NULL},
    {"wrong name", B(0x00, 0x04, 'M', 'Q', 'T', 'X', 4, 0x02, 0x00, 0x3C, DEV), GW_EPROTO, 1, 0,
     NULL},
    {"MQTT level 3", B(MQTT, 3, 0x02, 0x00, 0x3C, DEV), GW_EPROTO, 1, 0, NULL},
    {"MQIsdp level 4", B(MQISDP, 4, 0x02, 0x00, 0x3C, DEV), GW_EPROTO, 1, 0, NULL},
    {"reserved flag bit", B(MQTT, 4, 0x03, 0x00, 0x3C, DEV), GW_EPROTO, 0xFF, 0, NULL},
    {"password without username", B(MQTT, 4, 0x42, 0x00, 0x3C, DEV, 0x00, 0x01, 'p'), GW_EPROTO,
     0xFF, 0, NULL},
    {"3.1 password without username", B(MQISDP, 3, 0x42, 0x00, 0x3C, DEV, 0x00, 0x01, 'p'), 0, 0, 3,
     "dev"},
    {"will qos 3", B(MQTT, 4, 0x1E, 0x00, 0x3C, DEV, 0x00, 0x01, 'w', 0x00, 0x00), GW_EPROTO, 0xFF,
     0, NULL},
    {"will qos without will", B(MQTT, 4, 0x0A, 0x00, 0x3C, DEV), GW_EPROTO, 0xFF, 0, NULL},
    {"will retain without will", B(MQTT, 4, 0x22, 0x00, 0x3C, DEV), GW_EPROTO, 0xFF, 0, NULL},
    {"trailing byte", B(MQTT, 4, 0x02, 0x00, 0x3C, DEV, 0x00), GW_EPROTO, 0xFF, 0, NULL},
    {"empty id, clean 1", B(MQTT, 4, 0x02, 0x00, 0x3C, 0x00, 0x00), 0, 0, 4, ""},
    {"empty id, clean 0", B(MQTT, 4, 0x00, 0x00, 0x3C, 0x00, 0x00), GW_EPROTO, 2, 4, ""},
    {"3.1 empty id", B(MQISDP, 3, 0x02, 0x00, 0x3C, 0x00, 0x00), GW_EPROTO, 2, 3, ""},
    {"empty id clean 0 + trailing", B(MQTT, 4, 0x00, 0x00, 0x3C, 0x00, 0x00, 0x00), GW_EPROTO, 0xFF,
     0, NULL},
    {"30-byte id allowed",
     B(MQTT, 4, 0x02, 0x00, 0x3C, 0x00, 30, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k',
       'l', 'm', 'n', 'o', 'p', 'q', 'r', 's', 't', 'u', 'v', 'w', 'x', 'y', 'z', '0', '1', '2',
       '3'),
     0, 0, 4, "abcdefghijklmnopqrstuvwxyz0123"},
    {"empty body", B(0x00), GW_EPROTO, 0xFF, 0, NULL},
    {"name past body", B(MQTT), GW_EPROTO, 0xFF, 0, NULL},
    {"name length past body", B(0x00, 0x04, 'M', 'Q'), GW_EPROTO, 0xFF, 0, NULL},
    {"no flags", B(MQTT, 4), GW_EPROTO, 0xFF, 0, NULL},
    {"no keepalive", B(MQTT, 4, 0x02, 0x00), GW_EPROTO, 0xFF, 0, NULL},
    {"no client id", B(MQTT, 4, 0x02, 0x00, 0x3C), GW_EPROTO, 0xFF, 0, NULL},
    {"client id past body", B(MQTT, 4, 0x02, 0x00, 0x3C, 0x00, 0x05, 'a'), GW_EPROTO, 0xFF, 0,
     NULL},
    {"username flag, no username", B(MQTT, 4, 0x82, 0x00, 0x3C, DEV), GW_EPROTO, 0xFF, 0, NULL},
    {"password flag, no password", B(MQTT, 4, 0xC2, 0x00, 0x3C, DEV, 0x00, 0x01, 'u'), GW_EPROTO,
     0xFF, 0, NULL},
    {"will flag, no will", B(MQTT, 4, 0x06, 0x00, 0x3C, DEV), GW_EPROTO, 0xFF, 0, NULL},
    {"will, no will payload", B(MQTT, 4, 0x06, 0x00, 0x3C, DEV, 0x00, 0x01, 'w'), GW_EPROTO, 0xFF,
     0, NULL},
    {"client id overlong utf8", B(MQTT, 4, 0x02, 0x00, 0x3C, 0x00, 0x02, 0xC0, 0x80), GW_EPROTO,
     0xFF, 0, NULL},
    {"client id with NUL", B(MQTT, 4, 0x02, 0x00, 0x3C, 0x00, 0x02, 'a', 0x00), GW_EPROTO, 0xFF, 0,
     NULL},
    {"username surrogate", B(MQTT, 4, 0x82, 0x00, 0x3C, DEV, 0x00, 0x03, 0xED, 0xA0, 0x80),
     GW_EPROTO, 0xFF, 0, NULL},
    {"will topic wildcard", B(MQTT, 4, 0x06, 0x00, 0x3C, DEV, 0x00, 0x01, '#', 0x00, 0x00),
     GW_EPROTO, 0xFF, 0, NULL},
    {"will topic empty", B(MQTT, 4, 0x06, 0x00, 0x3C, DEV, 0x00, 0x00, 0x00, 0x00), GW_EPROTO, 0xFF,
     0, NULL},
};

static void test_connect(void)
{
    for (size_t i = 0; i < sizeof(connect_cases) / sizeof(connect_cases[0]); i++) {
        const struct connect_case *c = &connect_cases[i];
        uint8_t *b = heap(c->b, c->n);
        gw_mqtt_connect cn;
        uint8_t crc = 0x77;
        int rc = gw_mqtt_decode_connect(b, (uint32_t)c->n, &cn, &crc);
        if (rc != c->rc || crc != c->connack_rc)
            fprintf(stderr, "connect case: %s\n", c->name);
        CHECK_INT(rc, c->rc);
        CHECK_INT(crc, c->connack_rc);
        if (c->level)
            CHECK_INT(cn.protocol_level, c->level);
        if (c->client_id)
            CHECK(str_eq(cn.client_id, c->client_id));
        free(b);
    }

    /* Every field: will (qos 1, retain), username, a binary password with a NUL. */
    uint8_t *b = heap(B(MQTT, 4, 0xEE, 0x01, 0x2C, 0x00, 0x02, 'd', '1', 0x00, 0x03, 'w', '/', 't',
                        0x00, 0x03, 'b', 'y', 'e', 0x00, 0x02, 'p', '1', 0x00, 0x02, 0x00, 0xFF));
    gw_mqtt_connect cn;
    uint8_t crc;
    CHECK_INT(gw_mqtt_decode_connect(b, 32, &cn, &crc), 0);
    CHECK_INT(crc, 0);
    CHECK(cn.clean_session && cn.has_will && cn.will_retain && cn.has_username && cn.has_password);
    CHECK_INT(cn.will_qos, 1);
    CHECK_INT(cn.keepalive, 300);
    CHECK(str_eq(cn.client_id, "d1"));
    CHECK(str_eq(cn.will_topic, "w/t"));
    CHECK_INT(cn.will_payload_len, 3);
    CHECK(cn.will_payload && memcmp(cn.will_payload, "bye", 3) == 0);
    CHECK(str_eq(cn.username, "p1"));
    CHECK_INT(cn.password_len, 2);
    CHECK(cn.password && cn.password[0] == 0x00 && cn.password[1] == 0xFF);
    free(b);
}

/* ---- PUBLISH --------------------------------------------------------------------------------- */

#define AB 0x00, 0x03, 'a', '/', 'b'

struct publish_case {
    const char *name;
    uint8_t flags;
    const uint8_t *b;
    size_t n;
    int rc;
    const char *why;   /* on error */
    const char *topic; /* on success */
    uint16_t id;
    uint32_t payload_len;
};

static const struct publish_case publish_cases[] = {
    {"qos 0", 0x0, B(AB, 'h', 'i'), 0, NULL, "a/b", 0, 2},
    {"qos 0 empty payload", 0x0, B(AB), 0, NULL, "a/b", 0, 0},
    {"qos 1", 0x2, B(AB, 0x00, 0x01, 'x'), 0, NULL, "a/b", 1, 1},
    {"qos 2 dup retain", 0xD, B(AB, 0xFF, 0xFE), 0, NULL, "a/b", 0xFFFE, 0},
    {"qos 1 id 0", 0x2, B(AB, 0x00, 0x00, 'x'), GW_EPROTO, "malformed_packet", NULL, 0, 0},
    {"qos 3", 0x6, B(AB, 0x00, 0x01), GW_EPROTO, "malformed_packet", NULL, 0, 0},
    {"qos 0 dup", 0x8, B(AB), GW_EPROTO, "malformed_packet", NULL, 0, 0},
    {"empty topic", 0x0, B(0x00, 0x00, 'x'), GW_EPROTO, "malformed_packet", NULL, 0, 0},
    {"topic with NUL", 0x0, B(0x00, 0x03, 'a', 0x00, 'b'), GW_EPROTO, "invalid_utf8", NULL, 0, 0},
    {"topic overlong C0 80", 0x0, B(0x00, 0x03, 'a', 0xC0, 0x80), GW_EPROTO, "invalid_utf8", NULL,
     0, 0},
    {"topic surrogate ED A0 80", 0x0, B(0x00, 0x03, 0xED, 0xA0, 0x80), GW_EPROTO, "invalid_utf8",
     NULL, 0, 0},
    {"topic '+'", 0x0, B(0x00, 0x03, 'a', '/', '+'), GW_EPROTO, "wildcard_topic", NULL, 0, 0},
    {"topic '#'", 0x0, B(0x00, 0x01, '#'), GW_EPROTO, "wildcard_topic", NULL, 0, 0},
    {"long topic with '#'", 0x0,
     B(0x00, 0x0C, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', '/', '#'), GW_EPROTO,
     "wildcard_topic", NULL, 0, 0},
    {"long topic with NUL", 0x0,
     B(0x00, 0x0C, 'a', 'b', 'c', 'd', 'e', 'f', 'g', 'h', 'i', 'j', 'k', 0x00), GW_EPROTO,
     "invalid_utf8", NULL, 0, 0},
    {"long topic, '+' in payload only", 0x0,
     B(0x00, 0x0A, '/', 'p', '1', '/', 'd', '1', '/', 'e', 'v', 't', '+', '#', 0x00), 0, NULL,
     "/p1/d1/evt", 0, 3},
    {"utf8 topic", 0x2, B(0x00, 0x07, 0xC3, 0xA9, '/', 0xF0, 0x9D, 0x84, 0x9E, 0x00, 0x07), 0, NULL,
     "\xC3\xA9/\xF0\x9D\x84\x9E", 7, 0},
    {"one byte", 0x0, B(0x00), GW_EPROTO, "malformed_packet", NULL, 0, 0},
    {"topic past body", 0x0, B(0x00, 0x05, 'a', '/', 'b'), GW_EPROTO, "malformed_packet", NULL, 0,
     0},
    {"qos 1 no id", 0x2, B(AB), GW_EPROTO, "malformed_packet", NULL, 0, 0},
    {"qos 1 half id", 0x2, B(AB, 0x00), GW_EPROTO, "malformed_packet", NULL, 0, 0},
};

static void test_publish(void)
{
    for (size_t i = 0; i < sizeof(publish_cases) / sizeof(publish_cases[0]); i++) {
        const struct publish_case *c = &publish_cases[i];
        uint8_t *b = heap(c->b, c->n);
        gw_mqtt_publish p;
        const char *why = NULL;
        int rc = gw_mqtt_decode_publish(b, (uint32_t)c->n, c->flags, &p, &why);
        if (rc != c->rc)
            fprintf(stderr, "publish case: %s\n", c->name);
        CHECK_INT(rc, c->rc);
        if (rc != 0) {
            CHECK_STR(why, c->why);
        } else {
            CHECK(str_eq(p.topic, c->topic));
            CHECK_INT(p.qos, (c->flags >> 1) & 3);
            CHECK_INT(p.retain, c->flags & 1);
            CHECK_INT(p.dup, (c->flags >> 3) & 1);
            CHECK_INT(p.packet_id, c->id);
            CHECK_INT(p.payload_len, c->payload_len);
            CHECK(p.payload + p.payload_len == b + c->n);
        }
        free(b);
    }
    gw_mqtt_publish p;
    CHECK_INT(gw_mqtt_decode_publish((const uint8_t *)"\x00\x01+", 3, 0, &p, NULL), GW_EPROTO);
}

/* ---- SUBSCRIBE / UNSUBSCRIBE / acks ---------------------------------------------------------- */

struct sub_case {
    const char *name;
    bool unsub;
    const uint8_t *b;
    size_t n;
    int rc;
    const char *why;
    uint16_t id;
    int count;
    const char *f1; /* first and last filter */
    uint8_t q1;
    const char *f2;
    uint8_t q2;
};

static const struct sub_case sub_cases[] = {
    {"one filter", false, B(0x00, 0x0A, AB, 0x01), 0, NULL, 10, 1, "a/b", 1, "a/b", 1},
    {"two filters", false,
     B(0x00, 0x0B, 0x00, 0x03, 'a', '/', '#', 0x00, 0x00, 0x03, '+', '/', 'x', 0x02), 0, NULL, 11,
     2, "a/#", 0, "+/x", 2},
    {"no topics", false, B(0x00, 0x0A), GW_EPROTO, "malformed_packet", 0, 0, NULL, 0, NULL, 0},
    {"id 0", false, B(0x00, 0x00, AB, 0x01), GW_EPROTO, "malformed_packet", 0, 0, NULL, 0, NULL, 0},
    {"qos 3", false, B(0x00, 0x0A, AB, 0x03), GW_EPROTO, "malformed_packet", 0, 0, NULL, 0, NULL,
     0},
    {"reserved bits", false, B(0x00, 0x0A, AB, 0x05), GW_EPROTO, "malformed_packet", 0, 0, NULL, 0,
     NULL, 0},
    {"reserved high bit", false, B(0x00, 0x0A, AB, 0x80), GW_EPROTO, "malformed_packet", 0, 0, NULL,
     0, NULL, 0},
    {"no qos byte", false, B(0x00, 0x0A, AB), GW_EPROTO, "malformed_packet", 0, 0, NULL, 0, NULL,
     0},
    {"empty filter", false, B(0x00, 0x0A, 0x00, 0x00, 0x01), GW_EPROTO, "malformed_packet", 0, 0,
     NULL, 0, NULL, 0},
    {"a/#/b", false, B(0x00, 0x0A, 0x00, 0x05, 'a', '/', '#', '/', 'b', 0x00), GW_EPROTO,
     "malformed_packet", 0, 0, NULL, 0, NULL, 0},
    {"a/b#", false, B(0x00, 0x0A, 0x00, 0x04, 'a', '/', 'b', '#', 0x00), GW_EPROTO,
     "malformed_packet", 0, 0, NULL, 0, NULL, 0},
    {"filter invalid utf8", false, B(0x00, 0x0A, 0x00, 0x02, 0xC0, 0x80, 0x00), GW_EPROTO,
     "invalid_utf8", 0, 0, NULL, 0, NULL, 0},
    {"trailing byte", false, B(0x00, 0x0A, AB, 0x01, 0x00), GW_EPROTO, "malformed_packet", 0, 0,
     NULL, 0, NULL, 0},
    {"filter past end", false, B(0x00, 0x0A, 0x00, 0x09, 'a', 0x00), GW_EPROTO, "malformed_packet",
     0, 0, NULL, 0, NULL, 0},
    {"unsub one", true, B(0x00, 0x0C, AB), 0, NULL, 12, 1, "a/b", 0, "a/b", 0},
    {"unsub two", true, B(0x00, 0x0C, AB, 0x00, 0x01, '#'), 0, NULL, 12, 2, "a/b", 0, "#", 0},
    {"unsub no topics", true, B(0x00, 0x0C), GW_EPROTO, "malformed_packet", 0, 0, NULL, 0, NULL, 0},
    {"unsub id 0", true, B(0x00, 0x00, AB), GW_EPROTO, "malformed_packet", 0, 0, NULL, 0, NULL, 0},
    {"unsub trailing", true, B(0x00, 0x0C, AB, 0x01), GW_EPROTO, "malformed_packet", 0, 0, NULL, 0,
     NULL, 0},
    {"unsub bad filter", true, B(0x00, 0x0C, 0x00, 0x02, 'a', '+'), GW_EPROTO, "malformed_packet",
     0, 0, NULL, 0, NULL, 0},
    {"unsub NUL", true, B(0x00, 0x0C, 0x00, 0x02, 'a', 0x00), GW_EPROTO, "invalid_utf8", 0, 0, NULL,
     0, NULL, 0},
};

static void test_subscribe(void)
{
    for (size_t i = 0; i < sizeof(sub_cases) / sizeof(sub_cases[0]); i++) {
        const struct sub_case *c = &sub_cases[i];
        uint8_t *b = heap(c->b, c->n);
        uint16_t id = 0;
        gw_mqtt_sub_iter it;
        const char *why = NULL;
        int rc = c->unsub ? gw_mqtt_decode_unsubscribe(b, (uint32_t)c->n, &id, &it, &why)
                          : gw_mqtt_decode_subscribe(b, (uint32_t)c->n, &id, &it, &why);
        if (rc != c->rc)
            fprintf(stderr, "subscribe case: %s\n", c->name);
        CHECK_INT(rc, c->rc);
        if (rc != 0) {
            CHECK_STR(why, c->why);
            free(b);
            continue;
        }
        CHECK_INT(id, c->id);
        CHECK_INT(gw_mqtt_sub_count(&it), c->count); /* counting leaves the iterator as it was */
        gw_mqtt_str f;
        uint8_t q;
        int count = 0;
        while (gw_mqtt_sub_next(&it, &f, &q)) {
            count++;
            if (count == 1) {
                CHECK(str_eq(f, c->f1));
                CHECK_INT(q, c->q1);
            }
            if (count == c->count) {
                CHECK(str_eq(f, c->f2));
                CHECK_INT(q, c->q2);
            }
        }
        CHECK_INT(count, c->count);
        CHECK_INT(gw_mqtt_sub_next(&it, &f, &q), 0);
        free(b);
    }
}

struct ack_case {
    const uint8_t *b;
    size_t n;
    int rc;
    uint16_t id;
};

static const struct ack_case ack_cases[] = {
    {B(0x00, 0x01), 0, 1},   {B(0xAB, 0xCD), 0, 0xABCD},          {B(0x00, 0x00), GW_EPROTO, 0},
    {B(0x00), GW_EPROTO, 0}, {B(0x00, 0x01, 0x00), GW_EPROTO, 0},
};

static void test_ack(void)
{
    for (size_t i = 0; i < sizeof(ack_cases) / sizeof(ack_cases[0]); i++) {
        const struct ack_case *c = &ack_cases[i];
        uint8_t *b = heap(c->b, c->n);
        uint16_t id = 0;
        CHECK_INT(gw_mqtt_decode_ack(b, (uint32_t)c->n, &id), c->rc);
        if (c->rc == 0)
            CHECK_INT(id, c->id);
        free(b);
    }
    CHECK_INT(gw_mqtt_decode_empty(NULL, 0), 0);
    CHECK_INT(gw_mqtt_decode_empty((const uint8_t *)"x", 1), GW_EPROTO);
}

/* ---- encoders, round-tripped through the decoders -------------------------------------------- */

/* Parses a whole encoded packet; returns the body. */
static const uint8_t *frame(const uint8_t *b, size_t n, gw_mqtt_fixed *fh)
{
    int rc = gw_mqtt_frame(b, n, UINT32_MAX, fh);
    CHECK_INT(rc, 0);
    CHECK_INT(fh->header_len + fh->remaining, n);
    return rc == 0 ? b + fh->header_len : NULL;
}

static void test_encode_small(void)
{
    uint8_t out[8];
    gw_mqtt_fixed fh;
    bool sp;
    uint8_t rc;
    uint16_t id;
    const uint8_t *body;

    CHECK_INT(gw_mqtt_encode_connack(out, true, 0), 4);
    CHECK(memcmp(out, "\x20\x02\x01\x00", 4) == 0);
    body = frame(out, 4, &fh);
    CHECK_INT(gw_mqtt_decode_connack(body, fh.remaining, &sp, &rc), 0);
    CHECK(sp);
    CHECK_INT(rc, 0);
    CHECK_INT(gw_mqtt_encode_connack(out, false, 5), 4);
    body = frame(out, 4, &fh);
    CHECK_INT(gw_mqtt_decode_connack(body, fh.remaining, &sp, &rc), 0);
    CHECK(!sp);
    CHECK_INT(rc, 5);
    CHECK_INT(gw_mqtt_decode_connack((const uint8_t *)"\x01\x05", 2, &sp, &rc), GW_EPROTO);

    static const uint8_t types[] = {GW_MQTT_PUBACK, GW_MQTT_PUBREC, GW_MQTT_PUBREL, GW_MQTT_PUBCOMP,
                                    GW_MQTT_UNSUBACK};
    for (size_t i = 0; i < sizeof(types); i++) {
        CHECK_INT(gw_mqtt_encode_ack(out, types[i], 0x1234), 4);
        body = frame(out, 4, &fh);
        CHECK_INT(fh.type, types[i]);
        CHECK_INT(fh.flags, types[i] == GW_MQTT_PUBREL ? 2 : 0);
        CHECK_INT(gw_mqtt_decode_ack(body, fh.remaining, &id), 0);
        CHECK_INT(id, 0x1234);
    }
    CHECK(memcmp(out, "\xB0\x02\x12\x34", 4) == 0);
    CHECK_INT(gw_mqtt_encode_ack(out, GW_MQTT_PUBREL, 7), 4);
    CHECK(memcmp(out, "\x62\x02\x00\x07", 4) == 0);
    CHECK_INT(gw_mqtt_encode_ack(out, GW_MQTT_CONNECT, 7), 0);

    CHECK_INT(gw_mqtt_encode_pingresp(out), 2);
    CHECK(memcmp(out, "\xD0\x00", 2) == 0);
    CHECK_INT(gw_mqtt_encode_pingreq(out), 2);
    CHECK(memcmp(out, "\xC0\x00", 2) == 0);
    CHECK_INT(gw_mqtt_encode_disconnect(out), 2);
    CHECK(memcmp(out, "\xE0\x00", 2) == 0);

    const uint8_t rcs[] = {0, 1, 0x80};
    memset(out, 0xAA, sizeof(out));
    CHECK_INT(gw_mqtt_encode_suback(out, 6, 7, rcs, 3), 7); /* too small: size, nothing written */
    CHECK_INT(out[0], 0xAA);
    CHECK_INT(gw_mqtt_encode_suback(out, 7, 7, rcs, 3), 7);
    CHECK(memcmp(out, "\x90\x05\x00\x07\x00\x01\x80", 7) == 0);
    const uint8_t *r;
    size_t n;
    body = frame(out, 7, &fh);
    CHECK_INT(gw_mqtt_decode_suback(body, fh.remaining, &id, &r, &n), 0);
    CHECK_INT(id, 7);
    CHECK_INT(n, 3);
    CHECK(r && memcmp(r, rcs, 3) == 0);
    CHECK_INT(gw_mqtt_encode_suback(out, 8, 7, rcs, 0), 0);

    CHECK_STR(gw_mqtt_type_name(GW_MQTT_CONNECT), "CONNECT");
    CHECK_STR(gw_mqtt_type_name(GW_MQTT_PUBLISH), "PUBLISH");
    CHECK_STR(gw_mqtt_type_name(GW_MQTT_UNSUBSCRIBE), "UNSUBSCRIBE");
    CHECK_STR(gw_mqtt_type_name(GW_MQTT_DISCONNECT), "DISCONNECT");
    CHECK_STR(gw_mqtt_type_name(0), "RESERVED");
    CHECK_STR(gw_mqtt_type_name(15), "RESERVED");
    CHECK_STR(gw_mqtt_type_name(200), "RESERVED");
}

struct pub_enc_case {
    const char *topic;
    size_t payload_len;
    uint8_t qos;
    uint16_t id;
    bool retain;
    uint8_t header_len;
};

static const struct pub_enc_case pub_enc_cases[] = {
    {"a/b", 2, 0, 0, false, 2},   {"/p1/d1/properties/report", 40, 1, 9, false, 2},
    {"x", 0, 2, 65535, true, 2},  {"t", 200, 1, 1, false, 3},
    {"t", 16380, 0, 0, false, 3}, {"t", 16381, 0, 0, false, 4}, /* rem 16383 / 16384 */
};

static void test_encode_publish(void)
{
    static uint8_t payload[16381], buf[16400];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (uint8_t)(i * 7);
    for (size_t i = 0; i < sizeof(pub_enc_cases) / sizeof(pub_enc_cases[0]); i++) {
        const struct pub_enc_case *c = &pub_enc_cases[i];
        size_t tl = strlen(c->topic);
        size_t size = gw_mqtt_publish_size(tl, c->payload_len, c->qos);
        CHECK_INT(gw_mqtt_encode_publish(buf, size - 1, c->topic, tl, payload, c->payload_len,
                                         c->qos, c->id, c->retain),
                  size);
        size_t n = gw_mqtt_encode_publish(buf, sizeof(buf), c->topic, tl, payload, c->payload_len,
                                          c->qos, c->id, c->retain);
        CHECK_INT(n, size);
        uint8_t *b = heap(buf, n);
        gw_mqtt_fixed fh;
        const uint8_t *body = frame(b, n, &fh);
        CHECK_INT(fh.type, GW_MQTT_PUBLISH);
        CHECK_INT(fh.header_len, c->header_len);
        gw_mqtt_publish p;
        CHECK_INT(gw_mqtt_decode_publish(body, fh.remaining, fh.flags, &p, NULL), 0);
        CHECK(str_eq(p.topic, c->topic));
        CHECK_INT(p.qos, c->qos);
        CHECK_INT(p.packet_id, c->id);
        CHECK_INT(p.retain, c->retain);
        CHECK_INT(p.dup, 0);
        CHECK_INT(p.payload_len, c->payload_len);
        CHECK(memcmp(p.payload, payload, c->payload_len) == 0);
        free(b);
    }
    CHECK_INT(gw_mqtt_publish_size(3, 0, 0), 7);
    CHECK_INT(gw_mqtt_publish_size(3, 0, 1), 9);
    CHECK_INT(gw_mqtt_publish_size(3, 0, 3), 0);
    CHECK_INT(gw_mqtt_publish_size(65536, 0, 0), 0);
    CHECK_INT(gw_mqtt_publish_size(1, 268435455 - 3, 0), 268435460); /* exactly the max */
    CHECK_INT(gw_mqtt_publish_size(1, 268435455 - 2, 0), 0);
    CHECK_INT(gw_mqtt_encode_publish(buf, sizeof(buf), "a", 1, payload, 1, 1, 0, false), 0);
    CHECK_INT(gw_mqtt_encode_publish(buf, sizeof(buf), "a", 1, payload, 1, 3, 1, false), 0);
}

static void test_encode_connect(void)
{
    uint8_t buf[128];
    gw_mqtt_fixed fh;
    gw_mqtt_connect c;
    uint8_t crc;

    size_t n = gw_mqtt_encode_connect(buf, sizeof(buf), "t-001", "p1", "s3cret", 60, true);
    CHECK_INT(n, 2 + 10 + 7 + 4 + 8);
    uint8_t *b = heap(buf, n);
    const uint8_t *body = frame(b, n, &fh);
    CHECK_INT(fh.type, GW_MQTT_CONNECT);
    CHECK_INT(gw_mqtt_decode_connect(body, fh.remaining, &c, &crc), 0);
    CHECK_INT(c.protocol_level, 4);
    CHECK(c.clean_session && c.has_username && c.has_password && !c.has_will);
    CHECK_INT(c.keepalive, 60);
    CHECK(str_eq(c.client_id, "t-001"));
    CHECK(str_eq(c.username, "p1"));
    CHECK(c.password_len == 6 && memcmp(c.password, "s3cret", 6) == 0);
    free(b);

    n = gw_mqtt_encode_connect(buf, sizeof(buf), "", NULL, NULL, 0, false);
    b = heap(buf, n);
    body = frame(b, n, &fh);
    CHECK_INT(gw_mqtt_decode_connect(body, fh.remaining, &c, &crc), GW_EPROTO);
    CHECK_INT(crc, 2);
    free(b);

    CHECK_INT(gw_mqtt_encode_connect(buf, sizeof(buf), "x", NULL, "pw", 0, true), 0);
    memset(buf, 0xAA, sizeof(buf));
    CHECK_INT(gw_mqtt_encode_connect(buf, 10, "x", "u", NULL, 0, true), 2 + 10 + 3 + 3);
    CHECK_INT(buf[0], 0xAA);

    n = gw_mqtt_encode_subscribe(buf, sizeof(buf), 5, "/p1/d1/#", 8, 1);
    CHECK_INT(n, 2 + 2 + 2 + 8 + 1);
    b = heap(buf, n);
    body = frame(b, n, &fh);
    CHECK_INT(fh.type, GW_MQTT_SUBSCRIBE);
    CHECK_INT(fh.flags, 2);
    uint16_t id;
    gw_mqtt_sub_iter it;
    gw_mqtt_str f;
    uint8_t q;
    CHECK_INT(gw_mqtt_decode_subscribe(body, fh.remaining, &id, &it, NULL), 0);
    CHECK_INT(id, 5);
    CHECK_INT(gw_mqtt_sub_next(&it, &f, &q), 1);
    CHECK(str_eq(f, "/p1/d1/#"));
    CHECK_INT(q, 1);
    CHECK_INT(gw_mqtt_sub_next(&it, &f, &q), 0);
    free(b);
}

/* A SUBACK for as many filters as a SUBSCRIBE holds (no fixed cap): 100, 127/128 (the remaining
 * length's first 1 -> 2 byte step at 126/127 codes), 60,000 (3-byte length); the head plus codes
 * written in place equal encode_suback, and decode back to the same codes in order. */
static void test_suback_many(void)
{
    static const size_t counts[] = {1, 100, 125, 126, 127, 16381, 16382, 60000};
    for (size_t k = 0; k < sizeof(counts) / sizeof(counts[0]); k++) {
        size_t n = counts[k], size = gw_mqtt_suback_size(n);
        CHECK_INT(size, 1 + (2 + n < 128 ? 1 : 2 + n < 16384 ? 2 : 3) + 2 + n);
        uint8_t *a = malloc(size), *b = malloc(size), *rcs = malloc(n);
        for (size_t i = 0; i < n; i++)
            rcs[i] = (uint8_t[]){0, 1, 0x80, 2}[(i * 7 + i / 3) % 4];
        size_t h = gw_mqtt_encode_suback_head(a, 0x4242, n);
        CHECK_INT(h, size - n);
        memcpy(a + h, rcs, n);
        CHECK_INT(gw_mqtt_encode_suback(b, size, 0x4242, rcs, n), size);
        CHECK(memcmp(a, b, size) == 0);
        /* rcs already in place at the tail: encode_suback moves them onto themselves */
        memcpy(b + h, rcs, n);
        CHECK_INT(gw_mqtt_encode_suback(b, size, 0x4242, b + h, n), size);
        CHECK(memcmp(a, b, size) == 0);
        gw_mqtt_fixed fh;
        const uint8_t *body = frame(a, size, &fh), *r = NULL;
        size_t got = 0;
        uint16_t id = 0;
        CHECK_INT(fh.type, GW_MQTT_SUBACK);
        CHECK_INT(gw_mqtt_decode_suback(body, fh.remaining, &id, &r, &got), 0);
        CHECK_INT(id, 0x4242);
        CHECK_INT(got, n);
        CHECK(r && memcmp(r, rcs, n) == 0);
        free(a);
        free(b);
        free(rcs);
    }
    uint8_t h[7];
    CHECK_INT(gw_mqtt_suback_size(0), 0);
    CHECK_INT(gw_mqtt_encode_suback_head(h, 1, 0), 0);
    CHECK_INT(gw_mqtt_suback_size(GW_MQTT_MAX_REMAINING - 1), 0);
    CHECK_INT(gw_mqtt_suback_size(GW_MQTT_MAX_REMAINING - 2), 5 + GW_MQTT_MAX_REMAINING);
    CHECK_INT(gw_mqtt_encode_suback_head(h, 9, GW_MQTT_MAX_REMAINING - 2), 7);
    CHECK(memcmp(h, "\x90\xFF\xFF\xFF\x7F\x00\x09", 7) == 0);

    /* A SUBSCRIBE of 100 filters counts 100, and iterates them in order. */
    uint8_t sub[2 + 100 * 16];
    size_t len = 2;
    sub[0] = 0;
    sub[1] = 3;
    for (int i = 0; i < 100; i++) {
        int fl = snprintf((char *)sub + len + 2, 14, "/p/d/f%d", i);
        sub[len] = 0;
        sub[len + 1] = (uint8_t)fl;
        len += 2 + (size_t)fl;
        sub[len++] = (uint8_t)(i % 3);
    }
    uint8_t *hb = heap(sub, len);
    gw_mqtt_sub_iter it;
    uint16_t id;
    CHECK_INT(gw_mqtt_decode_subscribe(hb, (uint32_t)len, &id, &it, NULL), 0);
    CHECK_INT(gw_mqtt_sub_count(&it), 100);
    gw_mqtt_str f;
    uint8_t q;
    for (int i = 0; i < 100; i++) {
        char want[16];
        snprintf(want, sizeof(want), "/p/d/f%d", i);
        CHECK_INT(gw_mqtt_sub_next(&it, &f, &q), 1);
        CHECK(str_eq(f, want));
        CHECK_INT(q, i % 3);
    }
    CHECK_INT(gw_mqtt_sub_count(&it), 0);
    free(hb);
}

/* ---- MQTT 5 properties ----------------------------------------------------------------------- */

struct prop_case {
    const char *name;
    gw_mqtt_pctx ctx;
    const uint8_t *b;
    size_t n;
    int rc;
    uint8_t reason;  /* on error */
    const char *why; /* on error */
};

static const struct prop_case prop_cases[] = {
    {"empty", GW_MQTT_PC_CONNECT, B(0x00), 0, 0, NULL},
    {"session expiry", GW_MQTT_PC_CONNECT, B(0x05, 0x11, 0, 0, 0, 60), 0, 0, NULL},
    {"receive max", GW_MQTT_PC_CONNECT, B(0x03, 0x21, 0x00, 0x0A), 0, 0, NULL},
    {"user props repeat", GW_MQTT_PC_PUBLISH, B(0x0B, 0x26, 0, 1, 'a', 0, 0, 0x26, 0, 0, 0, 0), 0,
     0, NULL},
    {"unknown id 0x7F", GW_MQTT_PC_CONNECT, B(0x02, 0x7F, 0x00), GW_EPROTO, 0x81, "bad_property"},
    {"id 0x00", GW_MQTT_PC_CONNECT, B(0x02, 0x00, 0x00), GW_EPROTO, 0x81, "bad_property"},
    {"id over 0x80", GW_MQTT_PC_CONNECT, B(0x03, 0x81, 0x01, 0x00), GW_EPROTO, 0x81,
     "bad_property"},
    {"topic alias in CONNECT", GW_MQTT_PC_CONNECT, B(0x03, 0x23, 0x00, 0x01), GW_EPROTO, 0x81,
     "bad_property"},
    {"session expiry in PUBLISH", GW_MQTT_PC_PUBLISH, B(0x05, 0x11, 0, 0, 0, 1), GW_EPROTO, 0x81,
     "bad_property"},
    {"will delay in CONNECT", GW_MQTT_PC_CONNECT, B(0x05, 0x18, 0, 0, 0, 1), GW_EPROTO, 0x81,
     "bad_property"},
    {"will delay in will", GW_MQTT_PC_WILL, B(0x05, 0x18, 0, 0, 0, 1), 0, 0, NULL},
    {"reason string from client PUBLISH", GW_MQTT_PC_PUBLISH, B(0x04, 0x1F, 0, 1, 'x'), GW_EPROTO,
     0x81, "bad_property"},
    {"duplicate session expiry", GW_MQTT_PC_CONNECT, B(0x0A, 0x11, 0, 0, 0, 1, 0x11, 0, 0, 0, 2),
     GW_EPROTO, 0x82, "bad_property"},
    {"duplicate topic alias", GW_MQTT_PC_PUBLISH, B(0x06, 0x23, 0, 1, 0x23, 0, 2), GW_EPROTO, 0x82,
     "bad_property"},
    {"receive max 0", GW_MQTT_PC_CONNECT, B(0x03, 0x21, 0x00, 0x00), GW_EPROTO, 0x82,
     "bad_property"},
    {"max packet size 0", GW_MQTT_PC_CONNECT, B(0x05, 0x27, 0, 0, 0, 0), GW_EPROTO, 0x82,
     "bad_property"},
    {"payload format 2", GW_MQTT_PC_PUBLISH, B(0x02, 0x01, 0x02), GW_EPROTO, 0x82, "bad_property"},
    {"request problem info 2", GW_MQTT_PC_CONNECT, B(0x02, 0x17, 0x02), GW_EPROTO, 0x82,
     "bad_property"},
    {"subscription id 0", GW_MQTT_PC_SUBSCRIBE, B(0x02, 0x0B, 0x00), GW_EPROTO, 0x82,
     "bad_property"},
    {"subscription id vbi 5 bytes", GW_MQTT_PC_SUBSCRIBE, B(0x06, 0x0B, 0x80, 0x80, 0x80, 0x80, 1),
     GW_EPROTO, 0x81, "bad_property"},
    {"response topic wildcard", GW_MQTT_PC_PUBLISH, B(0x04, 0x08, 0, 1, '#'), GW_EPROTO, 0x82,
     "bad_property"},
    {"content type bad utf8", GW_MQTT_PC_PUBLISH, B(0x04, 0x03, 0, 1, 0xFF), GW_EPROTO, 0x81,
     "invalid_utf8"},
    {"user property bad utf8", GW_MQTT_PC_PUBLISH, B(0x07, 0x26, 0, 1, 0xC0, 0, 1, 'a'), GW_EPROTO,
     0x81, "invalid_utf8"},
    {"length past the end", GW_MQTT_PC_CONNECT, B(0x05, 0x11, 0, 0), GW_EPROTO, 0x81,
     "bad_property"},
    {"value past the length", GW_MQTT_PC_CONNECT, B(0x03, 0x11, 0, 0, 0, 1), GW_EPROTO, 0x81,
     "bad_property"},
    {"string past the length", GW_MQTT_PC_PUBLISH, B(0x03, 0x03, 0, 5, 'a', 'b'), GW_EPROTO, 0x81,
     "bad_property"},
    {"property length vbi truncated", GW_MQTT_PC_CONNECT, B(0x80), GW_EPROTO, 0x81, "bad_property"},
    {"property length vbi not minimal", GW_MQTT_PC_CONNECT, B(0x80, 0x00), GW_EPROTO, 0x81,
     "bad_property"},
    {"subscription id vbi not minimal", GW_MQTT_PC_SUBSCRIBE, B(0x03, 0x0B, 0x81, 0x00), GW_EPROTO,
     0x81, "bad_property"},
    {"subscription id 2-byte vbi", GW_MQTT_PC_SUBSCRIBE, B(0x03, 0x0B, 0x81, 0x01), 0, 0, NULL},
};

static void test_props(void)
{
    for (size_t i = 0; i < sizeof(prop_cases) / sizeof(prop_cases[0]); i++) {
        const struct prop_case *c = &prop_cases[i];
        uint8_t *b = heap(c->b, c->n);
        gw_mqtt_props pr;
        size_t used = 0;
        uint8_t reason = 0;
        const char *why = NULL;
        int rc = gw_mqtt_props_decode(b, c->n, c->ctx, &pr, &used, &reason, &why);
        if (rc != c->rc || (rc && (reason != c->reason || strcmp(why, c->why) != 0)))
            fprintf(stderr, "props case: %s (rc %d reason 0x%02x why %s)\n", c->name, rc, reason,
                    why ? why : "-");
        CHECK_INT(rc, c->rc);
        if (rc) {
            CHECK_INT(reason, c->reason);
            CHECK(why && strcmp(why, c->why) == 0);
        } else {
            CHECK_INT(used, c->n);
        }
        free(b);
    }
    /* Values land in their fields. */
    uint8_t *b = heap(B(0x19, 0x11, 0, 0, 0x0E, 0x10, 0x21, 0, 5, 0x27, 0, 1, 0, 0, 0x22, 0, 3,
                        0x17, 0, 0x26, 0, 1, 'k', 0, 1, 'v'));
    gw_mqtt_props pr;
    size_t used;
    CHECK_INT(gw_mqtt_props_decode(b, 26, GW_MQTT_PC_CONNECT, &pr, &used, NULL, NULL), 0);
    CHECK_INT(used, 26);
    CHECK_INT(pr.session_expiry, 3600);
    CHECK_INT(pr.receive_max, 5);
    CHECK_INT(pr.max_packet_size, 65536);
    CHECK_INT(pr.topic_alias_max, 3);
    CHECK_INT(pr.request_problem_info, 0);
    CHECK(GW_MQTT_HAS(&pr, GW_MQTT_P_REQUEST_PROBLEM_INFO));
    CHECK(!GW_MQTT_HAS(&pr, GW_MQTT_P_AUTH_METHOD));
    CHECK_INT(pr.n_user, 1);
    free(b);

    /* The writer truncates a long string at a UTF-8 boundary and says so. */
    gw_mqtt_pbuf pb = {.n = 0};
    char big[600];
    memset(big, 'a', sizeof(big));
    big[GW_MQTT_PBUF - 3 - 1] = (char)0xC3; /* a 2-byte sequence across the cut */
    big[GW_MQTT_PBUF - 3] = (char)0xA9;
    gw_mqtt_pb_str(&pb, GW_MQTT_P_REASON_STRING, big, sizeof(big));
    CHECK(pb.over);
    CHECK(pb.n <= GW_MQTT_PBUF);
    uint8_t blk[GW_MQTT_PBUF + 4];
    blk[0] = (uint8_t)(0x80 | (pb.n & 0x7F));
    blk[1] = (uint8_t)(pb.n >> 7);
    memcpy(blk + 2, pb.b, pb.n);
    CHECK_INT(gw_mqtt_props_decode(blk, pb.n + 2, GW_MQTT_PC_ACK, &pr, &used, NULL, NULL), 0);
    CHECK(gw_mqtt_utf8_valid(pr.reason_string.p, pr.reason_string.len));
}

static void test_v5_packets(void)
{
    gw_mqtt_connect cn;
    uint8_t crc;
    const char *why = NULL;
    /* CONNECT with properties, a will with properties, password without username (v5 allows). */
    uint8_t *b = heap(B(MQTT, 5, 0x46, 0x00, 0x3C, 0x05, 0x11, 0, 0, 0, 30, DEV, 0x02, 0x01, 0x01,
                        0x00, 0x01, 't', 0x00, 0x00, 0x00, 0x01, 'p'));
    CHECK_INT(gw_mqtt_decode_connect_why(b, 32, &cn, &crc, &why), 0);
    CHECK_INT(cn.protocol_level, 5);
    CHECK_INT(cn.props.session_expiry, 30);
    CHECK_INT(cn.will_props.payload_format, 1);
    CHECK(cn.has_password && !cn.has_username);
    free(b);
    /* a property not allowed in a will */
    b = heap(B(MQTT, 5, 0x06, 0x00, 0x3C, 0x00, DEV, 0x03, 0x23, 0x00, 0x01, 0x00, 0x01, 't', 0x00,
               0x00));
    CHECK_INT(gw_mqtt_decode_connect_why(b, 25, &cn, &crc, &why), GW_EPROTO);
    CHECK_INT(cn.v5_rc, 0x81);
    CHECK(strcmp(why, "bad_property") == 0);
    free(b);

    /* PUBLISH: alias with an empty topic, payload after the properties. */
    gw_mqtt_publish pub;
    gw_mqtt_props pr;
    uint8_t rc = 0;
    b = heap(B(0x00, 0x00, 0x00, 0x07, 0x03, 0x23, 0x00, 0x02, 'h', 'i'));
    CHECK_INT(gw_mqtt_decode_publish5(b, 10, 0x2, &pub, &pr, &why, &rc), 0);
    CHECK_INT(pub.topic.len, 0);
    CHECK_INT(pub.packet_id, 7);
    CHECK_INT(pr.topic_alias, 2);
    CHECK_INT(pub.payload_len, 2);
    CHECK(memcmp(pub.payload, "hi", 2) == 0);
    /* the same bytes are not a 3.1.1 PUBLISH (empty topic) */
    CHECK_INT(gw_mqtt_decode_publish(b, 10, 0x2, &pub, &why), GW_EPROTO);
    free(b);
    /* subscription id from a client */
    b = heap(B(0x00, 0x01, 'a', 0x02, 0x0B, 0x01));
    CHECK_INT(gw_mqtt_decode_publish5(b, 6, 0x0, &pub, &pr, &why, &rc), GW_EPROTO);
    CHECK_INT(rc, 0x82);
    free(b);

    /* SUBSCRIBE v5: options with no-local / retain handling 2 accepted, qos in the low bits;
     * retain handling 3 and reserved bits refused. */
    gw_mqtt_sub_iter it;
    uint16_t pid;
    gw_mqtt_str f;
    uint8_t q;
    b = heap(B(0x00, 0x05, 0x00, 0x00, 0x01, 'a', 0x25));
    CHECK_INT(gw_mqtt_decode_subscribe5(b, 7, &pid, &it, &pr, &why, &rc), 0);
    CHECK_INT(gw_mqtt_sub_next(&it, &f, &q), 1);
    CHECK_INT(q, 1);
    CHECK(str_eq(f, "a"));
    free(b);
    b = heap(B(0x00, 0x05, 0x00, 0x00, 0x01, 'a', 0x31));
    CHECK_INT(gw_mqtt_decode_subscribe5(b, 7, &pid, &it, &pr, &why, &rc), GW_EPROTO);
    CHECK_INT(rc, 0x82);
    free(b);
    b = heap(B(0x00, 0x05, 0x00, 0x00, 0x01, 'a', 0x41));
    CHECK_INT(gw_mqtt_decode_subscribe5(b, 7, &pid, &it, &pr, &why, &rc), GW_EPROTO);
    free(b);
    b = heap(B(0x00, 0x05, 0x00)); /* properties, no filter */
    CHECK_INT(gw_mqtt_decode_subscribe5(b, 3, &pid, &it, &pr, &why, &rc), GW_EPROTO);
    free(b);
    b = heap(B(0x00, 0x05, 0x00, 0x00, 0x01, 'a'));
    CHECK_INT(gw_mqtt_decode_unsubscribe5(b, 6, &pid, &it, &pr, &why, &rc), 0);
    CHECK_INT(gw_mqtt_sub_count(&it), 1);
    free(b);

    /* acks and DISCONNECT */
    uint8_t reason;
    b = heap(B(0x00, 0x09, 0x10, 0x00));
    CHECK_INT(gw_mqtt_decode_ack5(b, 2, &pid, &reason, &pr), 0);
    CHECK_INT(reason, 0);
    CHECK_INT(gw_mqtt_decode_ack5(b, 3, &pid, &reason, &pr), 0);
    CHECK_INT(reason, 0x10);
    CHECK_INT(gw_mqtt_decode_ack5(b, 4, &pid, &reason, &pr), 0);
    free(b);
    b = heap(B(0x04, 0x05, 0x11, 0, 0, 0, 9));
    CHECK_INT(gw_mqtt_decode_disconnect5(b, 7, &reason, &pr, &why), 0);
    CHECK_INT(reason, 4);
    CHECK_INT(pr.session_expiry, 9);
    CHECK_INT(gw_mqtt_decode_disconnect5(b, 6, &reason, &pr, &why), GW_EPROTO);
    free(b);

    /* encoders */
    uint8_t out[64];
    gw_mqtt_pbuf pb = {.n = 0};
    gw_mqtt_pb_u16(&pb, GW_MQTT_P_RECEIVE_MAX, 10);
    size_t n = gw_mqtt_encode_connack5(out, sizeof(out), true, 0, pb.b, pb.n);
    CHECK_INT(n, 8);
    CHECK(memcmp(out, B(0x20, 0x06, 0x01, 0x00, 0x03, 0x21, 0x00, 0x0A)) == 0);
    CHECK_INT(gw_mqtt_encode_ack5(out, sizeof(out), GW_MQTT_PUBACK, 7, 0, NULL, 0), 4);
    CHECK(memcmp(out, B(0x40, 0x02, 0x00, 0x07)) == 0);
    CHECK_INT(gw_mqtt_encode_ack5(out, sizeof(out), GW_MQTT_PUBACK, 7, 0x99, NULL, 0), 6);
    CHECK(memcmp(out, B(0x40, 0x04, 0x00, 0x07, 0x99, 0x00)) == 0);
    CHECK_INT(gw_mqtt_encode_disconnect5(out, sizeof(out), 0x8E, NULL, 0), 4);
    CHECK(memcmp(out, B(0xE0, 0x02, 0x8E, 0x00)) == 0);
    CHECK_INT(gw_mqtt_suback_size_v(GW_MQTT_SUBACK, 2, true), 7);
    CHECK_INT(gw_mqtt_encode_suback_head_v(out, GW_MQTT_UNSUBACK, 3, 2, true), 5);
    CHECK(memcmp(out, B(0xB0, 0x05, 0x00, 0x03, 0x00)) == 0);
    n = gw_mqtt_encode_publish5(out, sizeof(out), "t", 1, (const uint8_t *)"x", 1, 1, 2, false,
                                B(0x02, 0x00, 0x00, 0x00, 0x05));
    CHECK_INT(n, 14);
    /* round trip through the decoder */
    CHECK_INT(gw_mqtt_decode_publish5(out + 2, (uint32_t)n - 2, 0x2, &pub, &pr, &why, &rc), 0);
    CHECK_INT(pr.message_expiry, 5);
    CHECK_INT(pub.payload_len, 1);
}

int main(void)
{
    test_fixed_header();
    test_utf8();
    test_filter();
    test_match();
    test_connect();
    test_publish();
    test_subscribe();
    test_ack();
    test_encode_small();
    test_encode_publish();
    test_encode_connect();
    test_suback_many();
    test_props();
    test_v5_packets();
    TEST_MAIN_END();
}

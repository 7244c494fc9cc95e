/* json_read.c: the JSON codec's in-place reader (codecs/json/json_read.c): the common messages it
 * takes, with the normalised payload the general path writes (json_read_diff.h compares both
 * paths on every case), what it leaves to the general path (which still words every rejection),
 * the codec's use of it (hint.check), and a sweep of one-byte edits of each case. */
#include "codecs/json/codec_json.h"
#include "codecs/json/json_read.h"
#include "gateway/util/error.h"

#include <string.h>

#include "test.h"
#include "../fuzz/json_read_diff.h"
#include "../fuzz/thermo_product.h"

/* Taken by the reader, both paths agree. */
static int taken(gw_msg_kind kind, const char *name, const char *text)
{
    int rc = json_read_diff(&product, kind, name, (const uint8_t *)text, strlen(text));
    if (rc != 1)
        fprintf(stderr, "  %s: %d %s\n", text, rc, json_read_diff_why);
    return rc == 1;
}

static int not_taken(gw_msg_kind kind, const char *name, const char *text)
{
    int rc = json_read_diff(&product, kind, name, (const uint8_t *)text, strlen(text));
    if (rc != 0)
        fprintf(stderr, "  %s: %d %s\n", text, rc, json_read_diff_why);
    return rc == 0;
}

/* The reader's normalised payload of a report it takes. */
static char norm[512];

static const char *report_norm(const char *text)
{
    gw_decode_hint hint = {GW_MSG_PROPERTY_REPORT, NULL, true};
    gw_thing_msg m;
    norm[0] = 0;
    if (gw__json_read(&product, &hint, (const uint8_t *)text, strlen(text), &m) == 0)
        snprintf(norm, sizeof(norm), "%s", m.norm_text);
    gw_thing_msg_clear(&m);
    return norm;
}

#define REPORT GW_MSG_PROPERTY_REPORT
#define EVENT  GW_MSG_EVENT

static const char *const common[] = {
    "{\"messageId\":\"123\",\"properties\":{\"temperature\":21.5,\"ratio\":40.2,\"level\":3,"
    "\"name\":\"living room\"}}",
    " {\n\t\"messageId\" : 42 , \"timestamp\" : 1700000000000 , \"version\" : \"1.0\" ,\r\n"
    "\"properties\" : { \"temperature\" : -0.0 , \"precise\" : 0.10 , \"i32\" : -0 , "
    "\"counter\" : -123456789012345678 , \"on\" : false , \"mode\" : \"eco\" , \"since\" : 0 , "
    "\"window\" : 1000 , \"ratio\" : 21 } } ",
    "{\"properties\":{\"temperature\":-12.345678,\"ratio\":0.000001,"
    "\"precise\":999999999.999999,\"level\":10,\"on\":true}}",
    "{\"properties\":{\"temperature\":-40,\"ratio\":-1234567.5,\"precise\":1.0000000001}}",
    "{\"properties\":{\"i32\":2147483647,\"counter\":999999999999999999,\"note\":\"\"}}",
};

static void test_taken(void)
{
    for (size_t i = 0; i < sizeof(common) / sizeof(common[0]); i++)
        CHECK(taken(REPORT, NULL, common[i]));
    CHECK(
        taken(EVENT, "overheat", "{\"data\":{\"t\":125.0,\"note\":\"hot\"},\"messageId\":\"e1\"}"));
    CHECK(taken(EVENT, "overheat", "{\"data\":{\"t\":1}}"));
    CHECK(taken(EVENT, "ping", "{}"));
    CHECK(taken(EVENT, "ping", "{\"data\":{},\"timestamp\":0}"));
    CHECK(taken(REPORT, NULL, "{\"properties\":{\"mode\":\"away\"},\"messageId\":-7}"));
}

static void test_normalised_text(void)
{
    /* numbers keep their text when it is already the normalised one */
    CHECK_STR(report_norm("{\"properties\":{\"temperature\":21.5,\"level\":3}}"),
              "{\"temperature\":21.5,\"level\":3}");
    CHECK_STR(report_norm("{\"properties\":{\"ratio\":21,\"precise\":0.10,\"i32\":-0}}"),
              "{\"ratio\":21.0,\"precise\":0.1,\"i32\":0}");
    CHECK_STR(report_norm("{\"properties\":{\"temperature\":-0.0,\"precise\":1.0000000001}}"),
              "{\"temperature\":-0.0,\"precise\":1.0000000001}");
    CHECK_STR(report_norm(" { \"properties\" : { \"on\" : true , \"name\" : \"a b\" } } "),
              "{\"on\":true,\"name\":\"a b\"}");
}

static void test_not_taken(void)
{
    static const char *const reports[] = {
        "{\"properties\":{\"temperature\":130.5}}",         /* out of range */
        "{\"properties\":{\"level\":1.5}}",                 /* wrong type */
        "{\"properties\":{\"nope\":1}}",                    /* unknown property */
        "{\"properties\":{}}",                              /* empty */
        "{\"messageId\":\"1\"}",                            /* no properties */
        "{\"properties\":{\"level\":1,\"level\":2}}",       /* duplicate */
        "{\"properties\":{\"level\":1},\"properties\":{}}", /* duplicate */
        "{\"messageId\":1,\"messageId\":2,\"properties\":{\"level\":1}}",
        "{\"properties\":{\"name\":\"a\\\"b\"}}",             /* an escape */
        "{\"properties\":{\"name\":\"caf\xc3\xa9\"}}",        /* non-ASCII */
        "{\"properties\":{\"precise\":1e3}}",                 /* an exponent */
        "{\"properties\":{\"precise\":1.0000000000000002}}",  /* 17 digits */
        "{\"properties\":{\"counter\":9223372036854775807}}", /* 19 digits */
        "{\"properties\":{\"level\":01}}",
        "{\"properties\":{\"level\":1,}}",
        "{\"properties\":{\"level\":1}} x",
        "{\"properties\":{\"pos\":{\"lat\":1,\"lon\":2}}}", /* struct */
        "{\"properties\":{\"list\":[1,2]}}",                /* array */
        "{\"properties\":{\"on\":null}}",
        "{\"properties\":{\"mode\":\"off\"}}",
        "{\"properties\":{\"name\":\"123456789012345678901234567890123\"}}", /* > 32 bytes */
        "{\"timestamp\":-1,\"properties\":{\"level\":1}}",
        "{\"data\":{},\"properties\":{\"level\":1}}",
        "[{\"properties\":{\"level\":1}}]",
    };
    for (size_t i = 0; i < sizeof(reports) / sizeof(reports[0]); i++)
        CHECK(not_taken(REPORT, NULL, reports[i]));
    static const char nul[] = "{\"properties\":{\"level\":1}}\0"; /* a NUL after the object */
    CHECK_INT(json_read_diff(&product, REPORT, NULL, (const uint8_t *)nul, sizeof(nul) - 1), 0);
    CHECK_INT(json_read_diff(&product, REPORT, NULL, (const uint8_t *)nul, sizeof(nul) - 2), 1);
    CHECK(not_taken(EVENT, "overheat", "{\"data\":{\"note\":\"x\"}}")); /* t is required */
    CHECK(not_taken(EVENT, "overheat", "{}"));
    CHECK(not_taken(EVENT, "nope", "{}"));
    CHECK(not_taken(EVENT, "ping", "{\"data\":{\"t\":1}}"));
    CHECK(not_taken(EVENT, "ping", "{\"properties\":{}}"));
    CHECK(not_taken(GW_MSG_FUNCTION_REPLY, NULL, "{\"success\":true}"));
}

/* The codec offers a message to the reader only for dispatch (hint.check); what the reader does
 * not take is decoded as before and the thing model words the rejection as before. */
static void test_codec(void)
{
    const char *ok = "{\"properties\":{\"temperature\":21.5}}";
    const char *bad = "{\"properties\":{\"temperature\":130.5}}";
    gw_thing_msg m;
    gw_reject rej = {0};
    json_t *out = NULL;
    gw_decode_hint check = {REPORT, NULL, true}, plain = {REPORT, NULL, false};

    CHECK_INT(gw_codec_json_ops.decode(&product, &check, (const uint8_t *)ok, strlen(ok), &m, &rej),
              0);
    CHECK(m.norm_text && strcmp(m.norm_text, "{\"temperature\":21.5}") == 0);
    gw_thing_msg_clear(&m);
    CHECK_INT(gw_codec_json_ops.decode(&product, &plain, (const uint8_t *)ok, strlen(ok), &m, &rej),
              0);
    CHECK(m.norm_text == NULL && json_is_object(m.values));
    gw_thing_msg_clear(&m);

    CHECK_INT(
        gw_codec_json_ops.decode(&product, &check, (const uint8_t *)bad, strlen(bad), &m, &rej), 0);
    CHECK(m.norm_text == NULL);
    CHECK_INT(gw_tm_check_report(&product, m.values, &out, &rej), GW_EINVAL);
    CHECK_STR(rej.detail, "properties.temperature: 130.5 is above max 125");
    CHECK(out == NULL);
    gw_thing_msg_clear(&m);
}

/* Every one-byte deletion and a set of one-byte replacements of each case: the reader never takes
 * what the general path refuses or reads differently. */
static void test_edits(void)
{
    static const char repl[] = " \"\\{}[],:.-+0159eEtfn\x01\x80";
    size_t cases = 0, disagree = 0, took = 0;
    char buf[512];
    for (size_t c = 0; c < sizeof(common) / sizeof(common[0]); c++) {
        size_t n = strlen(common[c]);
        for (size_t i = 0; i < n; i++) {
            for (size_t r = 0; r <= sizeof(repl) - 1; r++) {
                size_t m;
                if (r == sizeof(repl) - 1) { /* delete byte i */
                    memcpy(buf, common[c], i);
                    memcpy(buf + i, common[c] + i + 1, n - i - 1);
                    m = n - 1;
                } else {
                    memcpy(buf, common[c], n);
                    buf[i] = repl[r];
                    m = n;
                }
                int rc = json_read_diff(&product, REPORT, NULL, (const uint8_t *)buf, m);
                cases++;
                took += rc == 1;
                if (rc < 0 && disagree++ < 5)
                    fprintf(stderr, "  edit %.*s: %s\n", (int)m, buf, json_read_diff_why);
            }
        }
    }
    CHECK_INT(disagree, 0);
    CHECK(took > cases / 20); /* the sweep exercises the reader, not only its refusals */
}

int main(void)
{
    test_taken();
    test_normalised_text();
    test_not_taken();
    test_codec();
    test_edits();
    TEST_MAIN_END();
}

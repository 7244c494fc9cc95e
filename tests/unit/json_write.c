/* json_write.c: the compact JSON writer: shortest round-trip reals, escapes, nesting, and that
 * jansson reads back exactly the value that was written. */
#include <float.h>
#include <math.h>

#include "gateway/util/json_write.h"
#include "test.h"

static void check_text(json_t *v, const char *want)
{
    char *got = gw_json_write(v);
    CHECK_STR(got, want);
    json_error_t e;
    json_t *back = got ? json_loads(got, JSON_DECODE_ANY | JSON_ALLOW_NUL, &e) : NULL;
    CHECK(back && json_equal(back, v));
    json_decref(back);
    free(got);
    json_decref(v);
}

static void check_real_roundtrip(double d)
{
    char buf[40];
    gw_json_real(buf, d);
    CHECK(strtod(buf, NULL) == d);
    CHECK(strpbrk(buf, ".eE") != NULL);
}

/* The fast path's first form (one digit at a time), kept as the oracle of the two-digit one. */
static size_t ref_real_fast(char *buf, double d)
{
    static const double pow10[] = {1, 10, 100, 1e3, 1e4, 1e5, 1e6};
    if (!(d > -1e9 && d < 1e9))
        return 0;
    for (int k = 0; k < 7; k++) {
        double m = nearbyint(d * pow10[k]);
        if (m / pow10[k] != d)
            continue;
        char digits[24];
        int64_t v = (int64_t)(m < 0 ? -m : m);
        int n = 0, o = 0;
        do {
            digits[n++] = (char)('0' + v % 10);
            v /= 10;
        } while (v);
        while (n <= k)
            digits[n++] = '0';
        if (signbit(d))
            buf[o++] = '-';
        while (n > k)
            buf[o++] = digits[--n];
        buf[o++] = '.';
        if (k == 0)
            buf[o++] = '0';
        while (n > 0)
            buf[o++] = digits[--n];
        buf[o] = 0;
        return (size_t)o;
    }
    return 0;
}

/* gw_json_real's fast path and gw_json_int give the oracle's text (printf's for integers). */
static void test_digits_vs_oracle(void)
{
    uint64_t rng = 88172645463325252ull;
    size_t bad = 0;
    for (int i = 0; i < 400000; i++) {
        rng ^= rng << 13, rng ^= rng >> 7, rng ^= rng << 17;
        int64_t x = (int64_t)rng >> (rng % 64);
        double d = (i % 4 == 0)   ? (double)((int64_t)(rng % 2000000000) - 1000000000) / 1e6
                   : (i % 4 == 1) ? (double)((int64_t)(rng % 20000001) - 10000000) / 10.0
                   : (i % 4 == 2) ? (double)((int64_t)(rng % 100000) - 50000) / 100.0
                                  : (double)(rng % 1000000000) * ((rng >> 40) % 2 ? -1 : 1);
        char a[48], b[48], c[48];
        if (ref_real_fast(b, d)) {
            gw_json_real(a, d);
            if (strcmp(a, b) != 0 && bad++ < 5)
                fprintf(stderr, "real %.17g: %s, oracle %s\n", d, a, b);
        }
        gw_json_int(a, x);
        snprintf(c, sizeof(c), "%lld", (long long)x);
        if (strcmp(a, c) != 0 && bad++ < 5)
            fprintf(stderr, "int %lld: %s\n", (long long)x, a);
    }
    const double edges[] = {0.0,          -0.0,     0.000001, -0.000001, 0.05,
                            9.999999,     10.0,     99.5,     100.25,    999999999.5,
                            -999999999.0, 1e-6 * 3, 0.1,      0.01,      123.000001};
    for (size_t i = 0; i < sizeof(edges) / sizeof(edges[0]); i++) {
        char a[48], b[48];
        if (ref_real_fast(b, edges[i])) {
            gw_json_real(a, edges[i]);
            CHECK_STR(a, b);
        }
    }
    CHECK_INT(bad, 0);
}

int main(void)
{
    test_digits_vs_oracle();
    check_text(json_real(80.1), "80.1");
    check_text(json_real(21.0), "21.0");
    check_text(json_real(-40.0), "-40.0");
    check_text(json_real(0.1 + 0.2), "0.30000000000000004");
    check_text(json_real(1e300), "1e+300");
    check_text(json_real(FLT_MAX), "3.4028234663852886e+38");
    check_text(json_integer(-2147483648LL), "-2147483648");
    check_text(json_integer(9223372036854775807LL), "9223372036854775807");
    check_text(json_integer(-9223372036854775807LL - 1), "-9223372036854775808");
    check_text(json_integer(0), "0");
    check_text(json_integer(-7), "-7");
    /* documents around and past the writer's stack buffer (1 KiB): the same text as jansson's */
    for (size_t len = 1000; len <= 5000; len += 7) {
        char *s = malloc(len + 1);
        memset(s, 'a', len);
        s[len] = 0;
        json_t *v = json_pack("{s:s,s:i}", "s", s, "n", (json_int_t)len);
        char *want = json_dumps(v, JSON_COMPACT | JSON_PRESERVE_ORDER);
        check_text(v, want);
        free(want);
        free(s);
    }
    check_text(json_true(), "true");
    check_text(json_false(), "false");
    check_text(json_null(), "null");
    check_text(json_string("a\"b\\c\n\t\x01 é"), "\"a\\\"b\\\\c\\n\\t\\u0001 é\"");
    check_text(json_stringn("nul\0x", 5), "\"nul\\u0000x\"");
    check_text(json_pack("{s:f,s:[i,i],s:{s:s}}", "t", 21.5, "a", 1, 2, "s", "k", "v"),
               "{\"t\":21.5,\"a\":[1,2],\"s\":{\"k\":\"v\"}}");
    check_text(json_object(), "{}");
    check_text(json_array(), "[]");
    check_text(json_real(230.1), "230.1");
    check_text(json_real(-0.5), "-0.5");
    check_text(json_real(0.000001), "0.000001");
    check_text(json_real(-0.0), "-0.0");
    check_text(json_real(123456.789), "123456.789");
    check_text(json_real(31.234567), "31.234567");
    check_text(json_real(1234.56), "1234.56");
    check_text(json_real(0.1234567), "0.1234567");
    check_text(json_real(5e8 + 0.25), "500000000.25");
    check_text(json_real(2e9), "2000000000.0");
    /* Every value with up to 6 decimals in a sweep reads back exactly, whichever path wrote it. */
    for (int i = -200000; i <= 200000; i += 7) {
        check_real_roundtrip(i / 1000.0);
        check_real_roundtrip(i * 0.1);
        check_real_roundtrip(i / 3.0);
    }
    const double samples[] = {
        0.0,  -0.0, 1.0 / 3.0, 123456789.123456789, 5e-324, DBL_MAX, M_PI, -1e-7, 100.0, 1e15,
        1e16, 1e17, 80.1f};
    for (size_t i = 0; i < sizeof(samples) / sizeof(samples[0]); i++)
        check_real_roundtrip(samples[i]);
    TEST_MAIN_END();
}

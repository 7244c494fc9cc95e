/* limits.c: the per-source limits of gateway/util/limits.c with a test-controlled clock (every call
 * takes now_ms): the connect token bucket (burst, sustained rate, refill, cap), the per-source
 * connection cap, the authentication back-off (threshold, doubling, maximum, reset on success,
 * datagram sources) and the fixed source table (refusal when the probe window is all busy, reuse
 * of idle entries oldest first), with the connections_limited_total counters. */
#include <arpa/inet.h>
#include <netinet/in.h>

#include "gateway/core/limits.h"
#include "gateway/util/metrics.h"
#include "test.h"

static struct sockaddr_in v4(uint32_t host)
{
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(1234)};
    a.sin_addr.s_addr = htonl(host);
    return a;
}

#define SA(a) ((const struct sockaddr *)&(a))

static gw_limits *make(uint32_t per_source, uint32_t rate, uint32_t burst, uint32_t failures,
                       uint32_t backoff, uint32_t backoff_max, uint32_t sources)
{
    gw_limits_cfg cfg = {per_source, rate, burst, failures, backoff, backoff_max, sources};
    gw_limits *l = NULL;
    CHECK_INT(gw_limits_create(&l, &cfg), 0);
    CHECK(l != NULL);
    return l;
}

static void test_disabled(void)
{
    gw_limits_cfg cfg = {0, 0, 0, 0, 1000, 60000, 1024};
    gw_limits *l = (gw_limits *)1;
    struct sockaddr_in a = v4(0x0a000001);
    CHECK_INT(gw_limits_create(&l, &cfg), 0);
    CHECK(l == NULL); /* every limit off: no table */
    for (int i = 0; i < 100; i++)
        CHECK_INT(gw_limits_admit(l, SA(a), 0), GW_LIMIT_OK);
    CHECK(!gw_limits_blocked(l, SA(a), 0));
    CHECK_STR(gw_limit_reason(GW_LIMIT_TABLE_FULL), "source_table_full");
    CHECK_STR(gw_limit_reason(GW_LIMIT_RATE), "connect_rate");
}

/* burst 3, 2 per second: 3 at once, then one token every 500 ms, never more than 3 saved. */
static void test_token_bucket(void)
{
    gw_limits *l = make(0, 2, 3, 0, 0, 0, 64);
    struct sockaddr_in a = v4(0x0a000002), b = v4(0x0a000003);
    int64_t rate0 = gw_metric_get(GW_M_LIMITED_RATE);
    uint64_t t = 1000000;
    for (int i = 0; i < 3; i++)
        CHECK_INT(gw_limits_admit(l, SA(a), t), GW_LIMIT_OK);
    CHECK_INT(gw_limits_admit(l, SA(a), t), GW_LIMIT_RATE);
    CHECK_INT(gw_metric_get(GW_M_LIMITED_RATE) - rate0, 1);
    /* another source has its own bucket */
    CHECK_INT(gw_limits_admit(l, SA(b), t), GW_LIMIT_OK);
    /* 499 ms: 0.998 tokens, still refused; 500 ms: one */
    CHECK_INT(gw_limits_admit(l, SA(a), t + 499), GW_LIMIT_RATE);
    CHECK_INT(gw_limits_admit(l, SA(a), t + 500), GW_LIMIT_OK);
    CHECK_INT(gw_limits_admit(l, SA(a), t + 500), GW_LIMIT_RATE);
    /* a refusal does not spend: at +1000 one more token */
    CHECK_INT(gw_limits_admit(l, SA(a), t + 1000), GW_LIMIT_OK);
    CHECK_INT(gw_limits_admit(l, SA(a), t + 1000), GW_LIMIT_RATE);
    /* a long pause refills to the burst, not beyond */
    t += 100000;
    for (int i = 0; i < 3; i++)
        CHECK_INT(gw_limits_admit(l, SA(a), t), GW_LIMIT_OK);
    CHECK_INT(gw_limits_admit(l, SA(a), t), GW_LIMIT_RATE);
    /* the clock going backwards refills nothing */
    CHECK_INT(gw_limits_admit(l, SA(a), t - 5000), GW_LIMIT_RATE);
    CHECK_INT(gw_metric_get(GW_M_LIMITED_RATE) - rate0, 6);
    gw_limits_free(l);
}

static void test_per_source(void)
{
    gw_limits *l = make(2, 0, 0, 0, 0, 0, 64);
    struct sockaddr_in a = v4(0x0a000004), a2 = v4(0x0a000004), b = v4(0x0a000005);
    a2.sin_port = htons(999); /* same address, another port: the same source */
    int64_t ps0 = gw_metric_get(GW_M_LIMITED_PER_SOURCE);
    CHECK_INT(gw_limits_admit(l, SA(a), 1), GW_LIMIT_OK);
    CHECK_INT(gw_limits_admit(l, SA(a2), 1), GW_LIMIT_OK);
    CHECK_INT(gw_limits_admit(l, SA(a), 1), GW_LIMIT_PER_SOURCE);
    CHECK_INT(gw_limits_admit(l, SA(b), 1), GW_LIMIT_OK);
    gw_limits_release(l, SA(a2));
    CHECK_INT(gw_limits_admit(l, SA(a), 2), GW_LIMIT_OK);
    CHECK_INT(gw_limits_admit(l, SA(a), 2), GW_LIMIT_PER_SOURCE);
    /* IPv6 and its IPv4-mapped form are one source */
    struct sockaddr_in6 m = {.sin6_family = AF_INET6};
    CHECK_INT(inet_pton(AF_INET6, "::ffff:10.0.0.4", &m.sin6_addr), 1);
    CHECK_INT(gw_limits_admit(l, SA(m), 3), GW_LIMIT_PER_SOURCE);
    gw_limits_release(l, SA(a));
    gw_limits_release(l, SA(a));
    gw_limits_release(l, SA(a)); /* one too many: stays at zero */
    CHECK_INT(gw_limits_admit(l, SA(m), 4), GW_LIMIT_OK);
    CHECK_INT(gw_limits_admit(l, SA(a), 4), GW_LIMIT_OK);
    CHECK_INT(gw_limits_admit(l, SA(a), 4), GW_LIMIT_PER_SOURCE);
    CHECK_INT(gw_metric_get(GW_M_LIMITED_PER_SOURCE) - ps0, 4);
    gw_limits_free(l);
}

/* 3 failures start a 1000 ms back-off; each further failure doubles it, up to 5000. */
static void test_backoff(void)
{
    gw_limits *l = make(0, 0, 0, 3, 1000, 5000, 64);
    struct sockaddr_in a = v4(0x0a000006), b = v4(0x0a000007);
    int64_t bo0 = gw_metric_get(GW_M_AUTH_BACKOFFS), lb0 = gw_metric_get(GW_M_LIMITED_BACKOFF);
    uint64_t t = 50000;
    gw_limits_auth_failed(l, SA(a), t);
    gw_limits_auth_failed(l, SA(a), t);
    CHECK(!gw_limits_blocked(l, SA(a), t));
    CHECK_INT(gw_limits_admit(l, SA(a), t), GW_LIMIT_OK);
    gw_limits_release(l, SA(a));
    gw_limits_auth_failed(l, SA(a), t); /* the third */
    CHECK_INT(gw_metric_get(GW_M_AUTH_BACKOFFS) - bo0, 1);
    CHECK(gw_limits_blocked(l, SA(a), t));
    CHECK(gw_limits_blocked(l, SA(a), t + 999));
    CHECK(!gw_limits_blocked(l, SA(a), t + 1000));
    CHECK(!gw_limits_blocked(l, SA(b), t)); /* only that source */
    CHECK_INT(gw_limits_admit(l, SA(a), t + 500), GW_LIMIT_BACKOFF);
    CHECK_INT(gw_limits_admit(l, SA(a), t + 1000), GW_LIMIT_OK);
    gw_limits_release(l, SA(a));
    /* further failures: 2000, 4000, then the cap 5000, 5000 */
    static const uint32_t expect[] = {2000, 4000, 5000, 5000};
    for (int i = 0; i < 4; i++) {
        t += 100000;
        gw_limits_auth_failed(l, SA(a), t);
        CHECK(gw_limits_blocked(l, SA(a), t + expect[i] - 1));
        CHECK(!gw_limits_blocked(l, SA(a), t + expect[i]));
    }
    CHECK_INT(gw_metric_get(GW_M_AUTH_BACKOFFS) - bo0, 5);
    /* a success forgets the failures: two more are below the threshold again */
    gw_limits_auth_ok(l, SA(a));
    t += 100000;
    gw_limits_auth_failed(l, SA(a), t);
    gw_limits_auth_failed(l, SA(a), t);
    CHECK(!gw_limits_blocked(l, SA(a), t));
    gw_limits_auth_failed(l, SA(a), t); /* the threshold again: back to the first back-off */
    CHECK(gw_limits_blocked(l, SA(a), t + 999));
    CHECK(!gw_limits_blocked(l, SA(a), t + 1000));
    CHECK_INT(gw_metric_get(GW_M_LIMITED_BACKOFF) - lb0, 8); /* every refusal above */
    gw_limits_free(l);
}

/* The table's hash (limits.c: FNV-1a over the IPv4-mapped IPv6 address) and its probe window. */
#define TAB   64 /* sources_max 64: a 64-entry table */
#define PROBE 32

static uint32_t slot_of(uint32_t host)
{
    uint8_t key[16] = {0};
    key[10] = key[11] = 0xff;
    key[12] = (uint8_t)(host >> 24);
    key[13] = (uint8_t)(host >> 16);
    key[14] = (uint8_t)(host >> 8);
    key[15] = (uint8_t)host;
    uint32_t h = 2166136261u;
    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 16777619u;
    return h & (TAB - 1);
}

/* PROBE + 2 addresses that all hash to the same slot fill its window exactly. */
static void test_table(void)
{
    uint32_t host[PROBE + 2], n = 0, target = slot_of(0x0b000000);
    for (uint32_t h = 0x0b000000; n < PROBE + 2; h++)
        if (slot_of(h) == target)
            host[n++] = h;
    gw_limits *l = make(1, 0, 0, 2, 1000, 1000, TAB);
    int64_t full0 = gw_metric_get(GW_M_LIMITED_TABLE_FULL);
    struct sockaddr_in a[PROBE + 2];
    for (uint32_t i = 0; i < PROBE + 2; i++)
        a[i] = v4(host[i]);
    /* 32 sources with an open connection each, admitted at times 100, 101, ... */
    for (uint32_t i = 0; i < PROBE; i++)
        CHECK_INT(gw_limits_admit(l, SA(a[i]), 100 + i), GW_LIMIT_OK);
    /* the window is all busy: a new source is refused, a known one still gets its verdict */
    CHECK_INT(gw_limits_admit(l, SA(a[PROBE]), 200), GW_LIMIT_TABLE_FULL);
    CHECK_INT(gw_limits_admit(l, SA(a[PROBE]), 200), GW_LIMIT_TABLE_FULL);
    CHECK_INT(gw_limits_admit(l, SA(a[0]), 200), GW_LIMIT_PER_SOURCE);
    CHECK_INT(gw_metric_get(GW_M_LIMITED_TABLE_FULL) - full0, 2);
    /* a source in back-off is not idle either: close a[5]'s connection but back it off */
    gw_limits_release(l, SA(a[5]));
    gw_limits_auth_failed(l, SA(a[5]), 300);
    gw_limits_auth_failed(l, SA(a[5]), 300); /* back-off until 1300 */
    CHECK_INT(gw_limits_admit(l, SA(a[PROBE]), 400), GW_LIMIT_TABLE_FULL);
    /* once its back-off ran out, its entry is reused for the newcomer */
    CHECK_INT(gw_limits_admit(l, SA(a[PROBE]), 1300), GW_LIMIT_OK);
    /* a[5] was forgotten (its failures with it): it is new, and the window is full again */
    CHECK_INT(gw_limits_admit(l, SA(a[5]), 1301), GW_LIMIT_TABLE_FULL);

    /* Oldest first: close every connection; each source's last use is its admission time
     * (100 + i), except a few touched later. One failure each (below the threshold of 2) marks
     * which sources the table still remembers: a remembered source's next failure backs it off,
     * a forgotten one's does not. */
    for (uint32_t i = 0; i < PROBE + 1; i++)
        if (i != 5)
            gw_limits_release(l, SA(a[i]));
    for (uint32_t i = 0; i < PROBE + 1; i++)
        if (i != 5)
            gw_limits_auth_failed(l, SA(a[i]), 2000 + (i == 0 || i == 1 ? 0 : i)); /* no creation */
    /* last uses: a[0] and a[1] at 2000, a[2] at 2002 ... a[31] at 2031, a[32] at 2032 */
    CHECK_INT(gw_limits_admit(l, SA(a[5]), 3000), GW_LIMIT_OK); /* takes a[0]'s or a[1]'s entry */
    gw_limits_release(l, SA(a[5]));
    CHECK_INT(gw_limits_admit(l, SA(a[PROBE + 1]), 3001), GW_LIMIT_OK); /* the other of them */
    gw_limits_release(l, SA(a[PROBE + 1]));
    /* a[0] and a[1] are forgotten: one failure does not back them off; a[2] (the next oldest)
     * and a[31] are remembered: one more failure does. Ask the remembered ones first (asking a
     * forgotten one creates its entry again, evicting the oldest idle one). */
    gw_limits_auth_failed(l, SA(a[2]), 4000);
    CHECK(gw_limits_blocked(l, SA(a[2]), 4000));
    gw_limits_auth_failed(l, SA(a[31]), 4000);
    CHECK(gw_limits_blocked(l, SA(a[31]), 4000));
    gw_limits_auth_failed(l, SA(a[0]), 4000);
    CHECK(!gw_limits_blocked(l, SA(a[0]), 4000));
    gw_limits_auth_failed(l, SA(a[1]), 4000);
    CHECK(!gw_limits_blocked(l, SA(a[1]), 4000));
    gw_limits_free(l);
}

int main(void)
{
    test_disabled();
    test_token_bucket();
    test_per_source();
    test_backoff();
    test_table();
    TEST_MAIN_END();
}

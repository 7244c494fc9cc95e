/* test.h: the unit tests' tiny harness. Each tests/unit/<area>_<thing>.c is one executable and one
 * ctest entry; CHECK* print both sides on failure; TEST_MAIN prints "N passed, M failed". */
#ifndef GW_TEST_H
#define GW_TEST_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int gw_t_pass, gw_t_fail;

#define CHECK(cond)                                                                                \
    do {                                                                                           \
        if (cond) {                                                                                \
            gw_t_pass++;                                                                           \
        } else {                                                                                   \
            gw_t_fail++;                                                                           \
            fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond);               \
        }                                                                                          \
    } while (0)

#define CHECK_INT(a, b)                                                                            \
    do {                                                                                           \
        long long gw_a_ = (long long)(a), gw_b_ = (long long)(b);                                  \
        if (gw_a_ == gw_b_) {                                                                      \
            gw_t_pass++;                                                                           \
        } else {                                                                                   \
            gw_t_fail++;                                                                           \
            fprintf(stderr, "%s:%d: %s == %s failed: %lld != %lld\n", __FILE__, __LINE__, #a, #b,  \
                    gw_a_, gw_b_);                                                                 \
        }                                                                                          \
    } while (0)

#define CHECK_STR(a, b)                                                                            \
    do {                                                                                           \
        const char *gw_a_ = (a), *gw_b_ = (b);                                                     \
        if (gw_a_ && gw_b_ && strcmp(gw_a_, gw_b_) == 0) {                                         \
            gw_t_pass++;                                                                           \
        } else {                                                                                   \
            gw_t_fail++;                                                                           \
            fprintf(stderr, "%s:%d: %s == %s failed: \"%s\" != \"%s\"\n", __FILE__, __LINE__, #a,  \
                    #b, gw_a_ ? gw_a_ : "(null)", gw_b_ ? gw_b_ : "(null)");                       \
        }                                                                                          \
    } while (0)

/* Substring check: haystack contains needle. */
#define CHECK_CONTAINS(hay, needle)                                                                \
    do {                                                                                           \
        const char *gw_h_ = (hay), *gw_n_ = (needle);                                              \
        if (gw_h_ && gw_n_ && strstr(gw_h_, gw_n_)) {                                              \
            gw_t_pass++;                                                                           \
        } else {                                                                                   \
            gw_t_fail++;                                                                           \
            fprintf(stderr, "%s:%d: \"%s\" does not contain \"%s\"\n", __FILE__, __LINE__,         \
                    gw_h_ ? gw_h_ : "(null)", gw_n_ ? gw_n_ : "(null)");                           \
        }                                                                                          \
    } while (0)

#define TEST_MAIN_END()                                                                            \
    do {                                                                                           \
        printf("%d passed, %d failed\n", gw_t_pass, gw_t_fail);                                    \
        return gw_t_fail ? 1 : 0;                                                                  \
    } while (0)

#endif

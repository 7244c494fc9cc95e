/* alloc.c: counted allocation per area (malloc_usable_size keeps frees exact without headers). */
#include "alloc.h"

#include <malloc.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

static int64_t area_bytes[GW_AREA__COUNT];

static const char *const area_names[GW_AREA__COUNT] = {"session", "event", "store", "runtime",
                                                       "output",  "tls",   "api"};

const char *gw_area_name(gw_area a)
{
    return (unsigned)a < GW_AREA__COUNT ? area_names[a] : "unknown";
}

#ifdef GW_ALLOC_FAULTS
static uint64_t fail_nth;

/* Decrements the armed count; the call that takes it to 0 fails (only that one: a CAS, so two
 * threads cannot both see 1 -> 0, and a disarmed 0 is never decremented). */
static int should_fail(void)
{
    uint64_t n = __atomic_load_n(&fail_nth, __ATOMIC_RELAXED);
    while (n != 0)
        if (__atomic_compare_exchange_n(&fail_nth, &n, n - 1, false, __ATOMIC_RELAXED,
                                        __ATOMIC_RELAXED))
            return n == 1;
    return 0;
}

int gw_alloc_fault(void)
{
    return should_fail();
}

uint64_t gw_alloc_fail_nth(uint64_t n)
{
    return __atomic_exchange_n(&fail_nth, n, __ATOMIC_RELAXED);
}
#else
/* Production builds: no hook, no cost. */
static inline int should_fail(void)
{
    return 0;
}
#endif

static void *account(gw_area a, void *p)
{
    if (p)
        __atomic_fetch_add(&area_bytes[a], (int64_t)malloc_usable_size(p), __ATOMIC_RELAXED);
    return p;
}

void *gw_malloc(gw_area a, size_t n)
{
    return should_fail() ? NULL : account(a, malloc(n));
}

void *gw_calloc(gw_area a, size_t count, size_t n)
{
    return should_fail() ? NULL : account(a, calloc(count, n));
}

void *gw_realloc(gw_area a, void *p, size_t n)
{
    if (should_fail())
        return NULL;
    size_t old = p ? malloc_usable_size(p) : 0;
    void *q = realloc(p, n);
    if (!q)
        return NULL;
    __atomic_fetch_sub(&area_bytes[a], (int64_t)old, __ATOMIC_RELAXED);
    return account(a, q);
}

void gw_free(gw_area a, void *p)
{
    if (!p)
        return;
    __atomic_fetch_sub(&area_bytes[a], (int64_t)malloc_usable_size(p), __ATOMIC_RELAXED);
    free(p);
}

char *gw_strdup(gw_area a, const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = gw_malloc(a, n);
    if (d)
        memcpy(d, s, n);
    return d;
}

int64_t gw_alloc_bytes(gw_area a)
{
    return __atomic_load_n(&area_bytes[a], __ATOMIC_RELAXED);
}

/* alloc.c: counted allocation per area (malloc_usable_size keeps frees exact without headers). */
#include "alloc.h"

#include <malloc.h>
#include <stdlib.h>
#include <string.h>

static int64_t area_bytes[GW_AREA__COUNT];
static uint64_t fail_nth;

static const char *const area_names[GW_AREA__COUNT] = {"session", "event",  "store",
                                                       "runtime", "output", "tls"};

const char *gw_area_name(gw_area a)
{
    return (unsigned)a < GW_AREA__COUNT ? area_names[a] : "unknown";
}

static int should_fail(void)
{
    uint64_t n = __atomic_load_n(&fail_nth, __ATOMIC_RELAXED);
    if (n == 0)
        return 0;
    return __atomic_sub_fetch(&fail_nth, 1, __ATOMIC_RELAXED) == 0;
}

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

void gw_alloc_fail_nth(uint64_t n)
{
    __atomic_store_n(&fail_nth, n, __ATOMIC_RELAXED);
}

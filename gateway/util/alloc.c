/* alloc.c: counted allocation per area (malloc_usable_size keeps frees exact without headers). The
 * counts live in per-thread slots, each on its own cache line, summed when read: every loop
 * allocates and frees at once (OpenSSL alone makes hundreds of calls per handshake), and one
 * shared counter bounced between the cores on each of them. */
#include "alloc.h"

#include <malloc.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

/* A thread's slot: its own allocations minus its own frees (a slot may go negative: memory is
 * often freed by another thread than the one that took it; the sum is exact). A slot has one
 * writer, its thread, so an update is a plain add (no locked instruction; readers load it
 * whole). The threads are a fixed few (main, loops, store writer, north...): past SLOTS - 1
 * they share the last slot, updated atomically. */
#define SLOTS 32
typedef struct slot {
    _Alignas(64) int64_t bytes[GW_AREA__COUNT];
} slot;
static slot slots[SLOTS];
static unsigned slot_next;
static _Thread_local slot *my_slot;

static void count(gw_area a, int64_t d)
{
    slot *s = my_slot;
    if (!s) {
        unsigned i = __atomic_fetch_add(&slot_next, 1, __ATOMIC_RELAXED);
        s = my_slot = &slots[i < SLOTS - 1 ? i : SLOTS - 1];
    }
    if (s != &slots[SLOTS - 1])
        __atomic_store_n(&s->bytes[a], __atomic_load_n(&s->bytes[a], __ATOMIC_RELAXED) + d,
                         __ATOMIC_RELAXED);
    else
        __atomic_fetch_add(&s->bytes[a], d, __ATOMIC_RELAXED);
}

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
        count(a, (int64_t)malloc_usable_size(p));
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
    count(a, -(int64_t)old);
    return account(a, q);
}

void gw_free(gw_area a, void *p)
{
    if (!p)
        return;
    count(a, -(int64_t)malloc_usable_size(p));
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
    int64_t sum = 0;
    for (unsigned i = 0; i < SLOTS; i++)
        sum += __atomic_load_n(&slots[i].bytes[a], __ATOMIC_RELAXED);
    return sum;
}

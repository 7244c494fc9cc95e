/* alloc.h: gw_malloc and friends count live bytes per area (exported as metrics) and, in test and
 * fuzz builds, can be told to fail the N-th call so out-of-memory paths are exercised. */
#ifndef GW_ALLOC_H
#define GW_ALLOC_H

#include <stddef.h>
#include <stdint.h>

typedef enum gw_area {
    GW_AREA_SESSION,
    GW_AREA_EVENT,
    GW_AREA_STORE,
    GW_AREA_RUNTIME,
    GW_AREA_OUTPUT, /* bytes queued for a peer that it has not taken yet */
    GW_AREA_TLS,    /* OpenSSL's own allocations (DTLS/TLS state) */
    GW_AREA__COUNT
} gw_area;

void *gw_malloc(gw_area a, size_t n);
void *gw_calloc(gw_area a, size_t count, size_t n);
void *gw_realloc(gw_area a, void *p, size_t n);
void gw_free(gw_area a, void *p);
char *gw_strdup(gw_area a, const char *s);

/* Live bytes in an area (sum over threads). */
int64_t gw_alloc_bytes(gw_area a);
const char *gw_area_name(gw_area a);

/* Test/fuzz hook: the n-th allocation from now fails (0 disables). */
void gw_alloc_fail_nth(uint64_t n);

#endif

/* alloc.h: gw_malloc and friends count live bytes per area (exported as metrics) and, in test and
 * fuzz builds (GW_ALLOC_FAULTS), can be told to fail the N-th call so out-of-memory paths are
 * exercised. */
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
    GW_AREA_API,    /* the management API's connections, answers and stream buffers */
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

#ifdef GW_ALLOC_FAULTS
/* Test/fuzz hook, compiled only into builds with tests or fuzz targets (CMake option
 * GW_ALLOC_FAULTS; never in the gateway's own code): the n-th allocation from now fails, once (0
 * disarms). Returns what was left of the previous arming: 0 when it fired (or was never armed),
 * else how many allocations it still waited for. The count is global (all threads). */
uint64_t gw_alloc_fail_nth(uint64_t n);
/* For a test's own allocation wrappers (e.g. ld --wrap=malloc, json_set_alloc_funcs): counts one
 * allocation against the armed n and says whether this one must fail. */
int gw_alloc_fault(void);
#endif

#endif

/* config_reference.c: docs/CONFIG-KEYS.md is exactly what iotgw --config-reference prints (the
 * config tables' keys, defaults and ranges), so the document cannot drift from the code. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "gateway/core/registry.h"
#include "test.h"

#define DOC "../../docs/CONFIG-KEYS.md" /* ctest runs in tests/unit */

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    char *buf = NULL;
    size_t cap = 0;
    if (!f)
        return NULL;
    FILE *m = open_memstream(&buf, &cap);
    char chunk[4096];
    size_t n;
    while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
        fwrite(chunk, 1, n, m);
    fclose(f);
    fclose(m);
    return buf;
}

int main(void)
{
#if !defined(GW_ADAPTER_MQTT) || !defined(GW_ADAPTER_TCP) || !defined(GW_ADAPTER_UDP) ||           \
    !defined(GW_ADAPTER_COAP)
    printf("skipped: the document lists every adapter; this build leaves some out\n");
    TEST_MAIN_END();
#else
    char *out = NULL;
    size_t len = 0;
    FILE *m = open_memstream(&out, &len);
    CHECK(m != NULL);
    if (!m)
        TEST_MAIN_END();
    gw_config_reference(m, gw_registry_config_plugins());
    fclose(m);
    CHECK_CONTAINS(out, "### `adapters.coap`");
    CHECK_CONTAINS(out, "| `idle_timeout_ms` | integer | 300000 | 100..86400000 |");
    CHECK_CONTAINS(out, "| `max_inflight` | integer | 1024 | 1..65535 |"); /* mqtt's */
    CHECK_CONTAINS(out, "| `queue_max` | integer | 16384 | 16..10000000 |");
    char *doc = read_file(DOC);
    CHECK(doc != NULL);
    if (doc && strcmp(doc, out) != 0) {
        const char *a = doc, *b = out;
        int line = 1;
        while (*a && *a == *b) {
            line += *a == '\n';
            a++;
            b++;
        }
        fprintf(stderr,
                "%s differs from iotgw --config-reference at line %d; regenerate it with\n"
                "  build/iotgw --config-reference > docs/CONFIG-KEYS.md\n",
                DOC, line);
        CHECK(0);
    } else if (doc) {
        CHECK(1);
    }
    free(doc);
    free(out);
    TEST_MAIN_END();
#endif
}

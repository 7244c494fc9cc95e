/* config_reference.c: docs/CONFIG-KEYS.md is exactly what iotgw --print-config-reference prints
 * (the config tables' keys, types, defaults, ranges and meanings), so the document cannot drift
 * from the code; every key it prints has a meaning (its gw_cfg_field's .doc); and every key of
 * every gw_cfg_field table in the sources (config/, protocols/, codecs/, storage/, gateway/) is in
 * it, so a table the reference forgets to print fails too. */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config/config.h"
#include "gateway/registry.h"
#include "test.h"

#define DOC "../../docs/CONFIG-KEYS.md" /* ctest runs in tests/unit */
#define SRC "../.."

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

static int tables, keys, missing;

/* The keys of each "gw_cfg_field name[] = {" table in text ({"key", GW_CFG_...} entries up to the
 * table's "};"), each looked up as a row "| `key` |" of doc. */
static void check_tables(const char *file, const char *text, const char *doc)
{
    const char *t = text;
    while ((t = strstr(t, "gw_cfg_field "))) {
        const char *open = strstr(t, "[] = {");
        const char *semi = strchr(t, ';');
        t += strlen("gw_cfg_field ");
        if (!open || !semi || open > semi)
            continue; /* a declaration or a parameter, not a table */
        const char *end = strstr(open, "};");
        tables++;
        for (const char *e = strstr(open + 6, "{\""); e && end && e < end;
             e = strstr(e + 2, "{\"")) {
            const char *q = strchr(e + 2, '"');
            if (!q || strncmp(q, "\", GW_CFG_", 10) != 0)
                continue;
            char row[128];
            snprintf(row, sizeof(row), "| `%.*s` |", (int)(q - e - 2), e + 2);
            keys++;
            if (!strstr(doc, row)) {
                fprintf(stderr, "%s: key %s of a gw_cfg_field table is not in %s\n", file, row,
                        DOC);
                missing++;
            }
        }
        t = end ? end : t;
    }
}

static char *read_file(const char *path);

/* Every .c file of dir and of its sub-folders (two levels: protocols/coap/...). */
static void scan(const char *dir, int depth, const char *doc)
{
    DIR *d = opendir(dir);
    struct dirent *de;
    if (!d)
        return;
    while ((de = readdir(d))) {
        char path[1024];
        size_t n = strlen(de->d_name);
        if (de->d_name[0] == '.')
            continue;
        if (snprintf(path, sizeof(path), "%s/%s", dir, de->d_name) >= (int)sizeof(path))
            continue;
        if (n > 2 && strcmp(de->d_name + n - 2, ".c") == 0) {
            char *text = read_file(path);
            if (text)
                check_tables(path, text, doc);
            free(text);
        } else if (depth > 0) {
            scan(path, depth - 1, doc);
        }
    }
    closedir(d);
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
    int undocumented = gw_config_reference(m, gw_registry_config_plugins());
    fclose(m);
    if (undocumented || strstr(out, "(undocumented)"))
        fprintf(stderr,
                "%d keys have no meaning: give their gw_cfg_field a .doc (one sentence: "
                "what the key does, its unit)\n",
                undocumented);
    CHECK_INT(undocumented, 0);
    CHECK(strstr(out, "(undocumented)") == NULL);
    CHECK_CONTAINS(out, "| key | type | default | range | meaning |");
    CHECK_CONTAINS(out, "| `loops` | integer | 0 | 0..64 | Event-loop threads");
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
                "%s differs from iotgw --print-config-reference at line %d; regenerate it with\n"
                "  cmake --build build --target config-docs\n",
                DOC, line);
        CHECK(0);
    } else if (doc) {
        CHECK(1);
    }
    if (doc) {
        static const char *const tops[] = {"config", "protocols", "codecs", "storage", "gateway"};
        for (size_t i = 0; i < sizeof(tops) / sizeof(tops[0]); i++) {
            char dir[256];
            snprintf(dir, sizeof(dir), "%s/%s", SRC, tops[i]);
            scan(dir, 1, doc);
        }
        printf("%d gw_cfg_field tables, %d keys, %d missing from %s\n", tables, keys, missing, DOC);
        CHECK(tables >= 12); /* the scan found the sources (12 tables when this was written) */
        CHECK_INT(missing, 0);
    }
    free(doc);
    free(out);
    TEST_MAIN_END();
#endif
}

/* fuzz_config.c: libFuzzer target for the configuration loader. The input is split at the first
 * two "\n---\n" separators into gateway.json, products/p.json and devices.json, written to a
 * scratch folder and loaded; every error must come back as diagnostics, never as a crash or leak.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config/config.h"
#include "gateway/registry.h"

static char dir[64];

static void write_file(const char *name, const uint8_t *p, size_t n)
{
    char path[128];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return;
    fwrite(p, 1, n, f);
    fclose(f);
}

static const uint8_t *split(const uint8_t **p, size_t *n, size_t *part)
{
    const uint8_t *start = *p;
    const uint8_t *sep = memmem(*p, *n, "\n---\n", 5);
    if (!sep) {
        *part = *n;
        *p += *n;
        *n = 0;
        return start;
    }
    *part = (size_t)(sep - start);
    *n -= *part + 5;
    *p = sep + 5;
    return start;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0]) {
        snprintf(dir, sizeof(dir), "/tmp/iotgw-fuzz-config-%d", (int)getpid());
        mkdir(dir, 0700);
        char sub[96];
        snprintf(sub, sizeof(sub), "%s/products", dir);
        mkdir(sub, 0700);
    }
    const uint8_t *p = data;
    size_t n = size, len;
    const uint8_t *gw = split(&p, &n, &len);
    write_file("gateway.json", gw, len);
    const uint8_t *prod = split(&p, &n, &len);
    write_file("products/p.json", prod, len);
    const uint8_t *devs = split(&p, &n, &len);
    write_file("devices.json", devs, len);

    char path[128];
    gw_config *cfg = NULL;
    gw_diag diag = {0};
    snprintf(path, sizeof(path), "%s/gateway.json", dir);
    if (gw_config_load(path, gw_registry_config_plugins(), &cfg, &diag) == 0) {
        for (size_t i = 0; i < cfg->n_devices; i++)
            if (gw_config_device(cfg, cfg->devices[i].id) != &cfg->devices[i])
                abort(); /* the index must find every device it was built from */
    }
    gw_config_free(cfg);
    gw_diag_free(&diag);
    return 0;
}

/* binary_test.h: what the binary codec's unit tests share: loading a product (JSON text, or one of
 * config/products/ with its protocol switched to mqtt so no TCP/UDP adapter is needed)
 * through the real config loader, JSON-path edits of a base product, and hex helpers. */
#ifndef GW_BINARY_TEST_H
#define GW_BINARY_TEST_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "test.h"
#include "config/config.h"
#include "gateway/registry.h"
#include "codecs/binary/internal.h"
#include "gateway/util/error.h"

#include <ctype.h>
#include <ftw.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef BT_GATEWAY /* a test may bring its own (binary_teltonika.c: a TCP listener) */
#define BT_GATEWAY                                                                                 \
    "{ \"log_level\": \"warn\", \"admin\": { \"enabled\": false },\n"                              \
    "  \"adapters\": { \"mqtt\": { \"listeners\": [ { \"address\": \"127.0.0.1\", \"port\": 0 } "  \
    "] } } }\n"
#endif

typedef struct bt_loaded {
    int rc;
    gw_config *cfg;
    const gw_product *p;
    char errors[4096]; /* "\n" + one line per diagnostic */
} bt_loaded;

/* A named CRC of the catalogue over b[0..n) (binary_check.c). */
static inline uint32_t bt_crc(const char *name, const uint8_t *b, size_t n)
{
    gw__crc c;
    const gw__crc_params *k = gw__crc_find(name);
    if (!k || gw__crc_init(&c, k) != 0)
        return 0xDEADBEEFu;
    return gw__crc_compute(&c, b, n);
}

static inline int bt_rm(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

static inline void bt_write(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(2);
    }
}

/* Loads one product (products/p.json); free with bt_free. */
static inline bt_loaded bt_load_text(const char *product_json)
{
    bt_loaded r = {0};
    char dir[] = "/tmp/iotgw-bin-XXXXXX", path[600];
    gw_diag d = {0};
    if (!mkdtemp(dir)) {
        perror("mkdtemp");
        exit(2);
    }
    snprintf(path, sizeof(path), "%s/products", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/gateway.json", dir);
    bt_write(path, BT_GATEWAY);
    snprintf(path, sizeof(path), "%s/devices.json", dir);
    bt_write(path, "[]\n");
    snprintf(path, sizeof(path), "%s/products/p.json", dir);
    bt_write(path, product_json);
    snprintf(path, sizeof(path), "%s/gateway.json", dir);
    r.rc = gw_config_load(path, gw_registry_config_plugins(), &r.cfg, &d);
    size_t len = 1;
    r.errors[0] = '\n';
    r.errors[1] = '\0';
    for (size_t i = 0; i < d.n; i++)
        len += (size_t)snprintf(r.errors + len, len < sizeof(r.errors) ? sizeof(r.errors) - len : 0,
                                "%s\n", d.msgs[i]);
    gw_diag_free(&d);
    nftw(dir, bt_rm, 8, FTW_DEPTH | FTW_PHYS);
    if (r.rc == 0 && r.cfg && r.cfg->n_products == 1)
        r.p = &r.cfg->products[0];
    return r;
}

static inline void bt_free(bt_loaded *r)
{
    gw_config_free(r->cfg);
    r->cfg = NULL;
    r->p = NULL;
}

/* A JSON document as text with "protocol" set to mqtt (the caller frees). */
static inline char *bt_dump_mqtt(json_t *root)
{
    json_object_set_new(root, "protocol", json_string("mqtt"));
    json_object_del(root, "auth"); /* "device-id" is for tcp and udp products only */
    return json_dumps(root, JSON_INDENT(1));
}

static inline json_t *bt_read_example(const char *name)
{
    char path[256];
    json_error_t e;
    snprintf(path, sizeof(path), "../../config/products/%s", name);
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &e);
    if (!root) {
        fprintf(stderr, "%s:%d: %s\n", path, e.line, e.text);
        exit(2);
    }
    return root;
}

static inline bt_loaded bt_load_example(const char *name)
{
    json_t *root = bt_read_example(name);
    char *text = bt_dump_mqtt(root);
    bt_loaded r = bt_load_text(text);
    free(text);
    json_decref(root);
    if (!r.p)
        fprintf(stderr, "%s does not load:%s", name, r.errors);
    return r;
}

/* The value at a path "frame.messages[1].fields[0]" of root (borrowed), NULL if absent. With
 * set != NULL, the last step is replaced by set (stolen), or removed when set is json_null()
 * and remove is true. */
static inline json_t *bt_at(json_t *root, const char *path, json_t *set, bool remove)
{
    char key[128];
    json_t *cur = root, *parent = NULL;
    const char *s = path;
    bool last_index = false;
    size_t idx = 0;
    while (*s) {
        size_t n = strcspn(s, ".[");
        parent = cur;
        if (n) {
            snprintf(key, sizeof(key), "%.*s", (int)n, s);
            cur = json_object_get(cur, key);
            last_index = false;
            s += n;
        } else if (*s == '[') {
            idx = strtoul(s + 1, (char **)&s, 10);
            s++; /* ']' */
            cur = json_array_get(cur, idx);
            last_index = true;
        } else {
            s++; /* '.' */
            continue;
        }
        if (!*s && set) {
            if (remove) {
                json_decref(set);
                if (last_index)
                    json_array_remove(parent, idx);
                else
                    json_object_del(parent, key);
                return NULL;
            }
            if (last_index)
                json_array_set_new(parent, idx, set);
            else
                json_object_set_new(parent, key, set);
            return set;
        }
        if (!cur)
            break;
    }
    if (set)
        json_decref(set);
    return cur;
}

/* "68 00 0B ..." -> bytes; returns the count. */
static inline size_t bt_unhex(const char *hex, uint8_t *out, size_t cap)
{
    size_t n = 0;
    while (*hex && n < cap) {
        while (*hex && !isxdigit((unsigned char)*hex))
            hex++;
        if (!hex[0] || !hex[1])
            break;
        char b[3] = {hex[0], hex[1], 0};
        out[n++] = (uint8_t)strtoul(b, NULL, 16);
        hex += 2;
    }
    return n;
}

static inline const char *bt_hex(const uint8_t *b, size_t n)
{
    static char buf[4][4096];
    static int which;
    char *s = buf[which++ & 3];
    size_t o = 0;
    for (size_t i = 0; i < n && o + 4 < sizeof(buf[0]); i++)
        o += (size_t)snprintf(s + o, sizeof(buf[0]) - o, i ? " %02X" : "%02X", b[i]);
    s[o] = '\0';
    return s;
}

#endif

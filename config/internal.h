/* internal.h: what the config loader's files share (load context, error helper, id checks, the
 * id hash); nothing here is for use outside config/. */
#ifndef GW_CONFIG_INTERNAL_H
#define GW_CONFIG_INTERNAL_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

/* One load: where errors go and how many there were (diag may drop lines on OOM, errors never). */
typedef struct gw__config_ctx {
    gw_diag *diag;
    int errors;
    /* A product file was unreadable or had no valid id: devices naming an unknown product are
     * then not reported (the product's own error says what to fix). */
    bool products_incomplete;
    /* gw_config_load_with: documents instead of files (NULL: read the files) */
    const gw_config *base;
    const json_t *devices;
    const gw_config_plugins *plugins; /* the caller's adapters and codecs */
} gw__config_ctx;

void gw__config_err(gw__config_ctx *x, const char *file, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Loads a JSON file (duplicate keys rejected); on failure reports "disp:LINE:COL: JSON syntax
 * error: ..." (or the open error) and returns NULL. */
json_t *gw__config_load_json(gw__config_ctx *x, const char *path, const char *disp);

/* Product and device ids: [A-Za-z0-9_.-]{1,63}. */
#define GW__ID_MAX 63
bool gw__config_id_ok(const char *s);

/* No two listeners take one port of one transport (config_listen.c): two adapters on one address
 * and port, or a wildcard address (0.0.0.0, :: which takes IPv4 too) over another's, would share
 * its traffic. Run after the adapters' own checks. */
void gw__config_check_listeners(gw__config_ctx *x, const gw_config *c);

/* Reports keys of obj that are not in allowed (NULL-terminated) nor in extra (may be NULL). */
void gw__config_unknown_keys(gw__config_ctx *x, const json_t *obj, const char *const *allowed,
                             const char *const *extra, const char *file, const char *path);

/* The id hash: open addressing over an array of items whose first member is `char *id`
 * (gw_product, gw_device), FNV-1a, load factor <= 1/2. Slots hold (hash, index + 1). */
typedef struct gw__config_slot {
    uint32_t hash;
    uint32_t idx1; /* 0: empty */
} gw__config_slot;

typedef struct gw__config_hash {
    gw__config_slot *slots;
    size_t mask; /* capacity - 1 */
} gw__config_hash;

/* Packed NUL-terminated strings (devices' id, name and secret): 64 KiB blocks instead of a
 * malloc each (a 12-byte id costs 13 bytes, not a 32-byte chunk); freed together. */
typedef struct gw__config_strblock gw__config_strblock;

typedef struct gw__config_index {
    gw__config_hash products;
    gw__config_hash devices;
    gw__config_strblock *strings; /* the block being filled first */
} gw__config_index;

/* A copy of s in ix's string blocks (lives until gw__config_strings_free), or NULL. */
char *gw__config_strdup(gw__config_index *ix, const char *s);
void gw__config_strings_free(gw__config_index *ix);

int gw__config_hash_init(gw__config_hash *h, size_t n); /* 0 or GW_ENOMEM */
void gw__config_hash_free(gw__config_hash *h);
/* Inserts item idx of base (stride bytes apart) under its id; returns -1 if inserted, else the
 * index of the item already holding that id. */
long gw__config_hash_insert(gw__config_hash *h, const void *base, size_t stride, size_t idx);

/* Products (config_product.c): parses every products_dir/NAME.json into c->products (needs
 * c->adapters and c->index). false if the folder could not be read. */
bool gw__config_load_products(gw__config_ctx *x, gw_config *c, const char *dir_path,
                              const char *dir_disp);
void gw__config_product_free(const gw_config_plugins *plugins, gw_product *p);
/* Same from base's product documents (gw_config_load_with): nothing read from disk. */
bool gw__config_load_products_from(gw__config_ctx *x, gw_config *c, const gw_config *base);
/* The reference tables of a product's core sections ("auth", "commands"), for gw_config_reference.
 */
int gw__config_product_reference(FILE *f);

/* Devices (config_devices.c): parses devices.json into c->devices; needs the product index. */
void gw__config_load_devices(gw__config_ctx *x, gw_config *c, const char *path, const char *disp);
/* Same from a document (stolen: released once parsed). */
void gw__config_load_devices_json(gw__config_ctx *x, gw_config *c, json_t *root, const char *disp);

/* rel if absolute, else dir/rel (malloc'd; NULL on out of memory). */
char *gw__config_resolve(const char *dir, const char *rel);

/* The "north" section (config_north.c): defaults when obj is NULL. */
void gw__config_load_north(gw__config_ctx *x, gw_config *c, const json_t *obj);
int gw__config_north_reference(FILE *f);
void gw__config_north_free(gw_config *c);
/* The "admin" section (config_admin.c): defaults when obj is NULL. */
void gw__config_load_admin(gw__config_ctx *x, gw_config *c, const json_t *obj);
int gw__config_admin_reference(FILE *f);
void gw__config_admin_free(gw_config *c);

#endif

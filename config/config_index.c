/* config_index.c: id -> product / device look-ups. Open addressing with linear probing over
 * FNV-1a hashes, sized for a load factor of at most 1/2, so 100k devices cost 2 MB of slots and
 * a look-up is a hash plus one or two compares. Also the devices' packed string blocks. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

#include "../gateway/util/error.h"

/* bytes of text a block holds (64 KiB with its header: below glibc's mmap threshold) */
#define STR_BLOCK (64 * 1024 - 64)

struct gw__config_strblock {
    gw__config_strblock *next;
    size_t used, cap;
    char text[];
};

char *gw__config_strdup(gw__config_index *ix, const char *s)
{
    size_t n = strlen(s) + 1;
    gw__config_strblock *b = ix->strings;
    if (!b || b->cap - b->used < n) {
        size_t cap = n > STR_BLOCK / 8 ? n : STR_BLOCK; /* a long one gets a block of its own */
        if (!(b = malloc(sizeof(*b) + cap)))
            return NULL;
        b->used = 0;
        b->cap = cap;
        if (cap == STR_BLOCK || !ix->strings) { /* the new block is the one being filled */
            b->next = ix->strings;
            ix->strings = b;
        } else { /* behind the one being filled */
            b->next = ix->strings->next;
            ix->strings->next = b;
        }
    }
    char *p = memcpy(b->text + b->used, s, n);
    b->used += n;
    return p;
}

void gw__config_strings_free(gw__config_index *ix)
{
    while (ix->strings) {
        gw__config_strblock *b = ix->strings;
        ix->strings = b->next;
        free(b);
    }
}

static uint32_t fnv1a(const char *s, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++) {
        h ^= (unsigned char)s[i];
        h *= 16777619u;
    }
    return h;
}

static const char *id_at(const void *base, size_t stride, size_t idx)
{
    /* gw_product and gw_device both start with `char *id`. */
    return *(char *const *)((const char *)base + idx * stride);
}

int gw__config_hash_init(gw__config_hash *h, size_t n)
{
    size_t cap = 16;
    while (cap < 2 * n)
        cap <<= 1;
    h->slots = calloc(cap, sizeof(*h->slots));
    if (!h->slots) {
        h->mask = 0;
        return GW_ENOMEM;
    }
    h->mask = cap - 1;
    return 0;
}

void gw__config_hash_free(gw__config_hash *h)
{
    free(h->slots);
    h->slots = NULL;
    h->mask = 0;
}

/* Index of the item with this id, or -1. */
static long lookup(const gw__config_hash *h, const void *base, size_t stride, const char *id,
                   size_t len)
{
    if (!h->slots || !id)
        return -1;
    uint32_t hash = fnv1a(id, len);
    for (size_t i = hash & h->mask;; i = (i + 1) & h->mask) {
        const gw__config_slot *s = &h->slots[i];
        if (!s->idx1)
            return -1;
        if (s->hash == hash) {
            const char *k = id_at(base, stride, s->idx1 - 1);
            if (strlen(k) == len && memcmp(k, id, len) == 0)
                return (long)s->idx1 - 1;
        }
    }
}

long gw__config_hash_insert(gw__config_hash *h, const void *base, size_t stride, size_t idx)
{
    const char *id = id_at(base, stride, idx);
    size_t len = strlen(id);
    uint32_t hash = fnv1a(id, len);

    for (size_t i = hash & h->mask;; i = (i + 1) & h->mask) {
        gw__config_slot *s = &h->slots[i];
        if (!s->idx1) {
            s->hash = hash;
            s->idx1 = (uint32_t)idx + 1;
            return -1;
        }
        if (s->hash == hash && strcmp(id_at(base, stride, s->idx1 - 1), id) == 0)
            return (long)s->idx1 - 1;
    }
}

const gw_product *gw_config_product_n(const gw_config *c, const char *id, size_t len)
{
    if (!c || !c->index)
        return NULL;
    const gw__config_index *ix = c->index;
    long i = lookup(&ix->products, c->products, sizeof(gw_product), id, len);
    return i < 0 ? NULL : &c->products[i];
}

const gw_device *gw_config_device_n(const gw_config *c, const char *id, size_t len)
{
    if (!c || !c->index)
        return NULL;
    const gw__config_index *ix = c->index;
    long i = lookup(&ix->devices, c->devices, sizeof(gw_device), id, len);
    return i < 0 ? NULL : &c->devices[i];
}

const gw_product *gw_config_product(const gw_config *c, const char *id)
{
    return id ? gw_config_product_n(c, id, strlen(id)) : NULL;
}

const gw_device *gw_config_device(const gw_config *c, const char *id)
{
    return id ? gw_config_device_n(c, id, strlen(id)) : NULL;
}

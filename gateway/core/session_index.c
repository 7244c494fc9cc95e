/* session_index.c: the chained device index -> session hash of session_index.h. */
#include "session_index.h"

#include "../util/alloc.h"
#include "../util/error.h"

gw_session *gw_session_index_find(const gw_session_index *ix, uint32_t dev_index)
{
    if (!ix->cap)
        return NULL;
    gw_session *s = ix->bucket[dev_index & (ix->cap - 1)];
    while (s && s->dev->index != dev_index)
        s = s->index_next;
    return s;
}

static int grow(gw_session_index *ix)
{
    uint32_t cap = ix->cap ? ix->cap * 2 : 64;
    gw_session **t = gw_calloc(GW_AREA_SESSION, cap, sizeof(*t));
    if (!t)
        return GW_ENOMEM;
    for (uint32_t i = 0; i < ix->cap; i++) {
        for (gw_session *s = ix->bucket[i], *next; s; s = next) {
            next = s->index_next;
            uint32_t b = s->dev->index & (cap - 1);
            s->index_next = t[b];
            t[b] = s;
        }
    }
    gw_free(GW_AREA_SESSION, ix->bucket);
    ix->bucket = t;
    ix->cap = cap;
    return 0;
}

int gw_session_index_add(gw_session_index *ix, gw_session *s)
{
    if (ix->n >= ix->cap && grow(ix) != 0)
        return GW_ENOMEM;
    uint32_t b = s->dev->index & (ix->cap - 1);
    s->index_next = ix->bucket[b];
    ix->bucket[b] = s;
    ix->n++;
    return 0;
}

void gw_session_index_remove(gw_session_index *ix, gw_session *s)
{
    if (!ix->cap)
        return;
    for (gw_session **pp = &ix->bucket[s->dev->index & (ix->cap - 1)]; *pp;
         pp = &(*pp)->index_next) {
        if (*pp == s) {
            *pp = s->index_next;
            s->index_next = NULL;
            ix->n--;
            return;
        }
    }
}

void gw_session_index_each(gw_session_index *ix, void (*fn)(gw_session *s, void *arg), void *arg)
{
    for (uint32_t i = 0; i < ix->cap; i++) {
        for (gw_session *s = ix->bucket[i], *next; s; s = next) {
            next = s->index_next;
            fn(s, arg);
        }
    }
}

void gw_session_index_free(gw_session_index *ix)
{
    gw_free(GW_AREA_SESSION, ix->bucket);
    ix->bucket = NULL;
    ix->cap = ix->n = 0;
}

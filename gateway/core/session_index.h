/* session_index.h: a loop's device index -> session map for the datagram adapters (UDP, CoAP),
 * which have no connection to find a device's session by: a chained hash over the device's
 * index, doubled as it fills, linked through gw_session.index_next. Loop thread only. */
#ifndef GW_SESSION_INDEX_H
#define GW_SESSION_INDEX_H

#include <stdint.h>

#include "session.h"

typedef struct gw_session_index {
    gw_session **bucket;
    uint32_t cap, n;
} gw_session_index;

gw_session *gw_session_index_find(const gw_session_index *ix, uint32_t dev_index);
/* Adds s (s->dev set), growing the table first if needed. 0 or GW_ENOMEM (s not added). */
int gw_session_index_add(gw_session_index *ix, gw_session *s);
void gw_session_index_remove(gw_session_index *ix, gw_session *s);
/* Calls fn for every session; fn may remove (close) the session it is given. */
void gw_session_index_each(gw_session_index *ix, void (*fn)(gw_session *s, void *arg), void *arg);
void gw_session_index_free(gw_session_index *ix);

#endif

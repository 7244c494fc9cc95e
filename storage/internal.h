/* internal.h: what the store's files share: the struct, schema set-up and prepared statements. */
#ifndef GW_STORE_INTERNAL_H
#define GW_STORE_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>

#include "store.h"

typedef struct gw__dev_touch {
    int64_t last_seen;
    int8_t online; /* -1 unchanged in this batch, 0 offline, 1 online */
    uint8_t touched;
    const char *reason; /* offline reason (points into an event of the batch) */
} gw__dev_touch;

typedef struct gw__prop_slot {
    uint32_t dev; /* device index + 1; 0 = empty */
    uint32_t hash;
    const char *key;
    json_t *val;
    int64_t ts;
} gw__prop_slot;

struct gw_store {
    const gw_config *cfg;
    sqlite3 *db;
    sqlite3_stmt *ins_event, *up_prop, *up_state, *touch_state, *begin, *commit, *rollback;

    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    gw_event *head, *tail;
    size_t qlen;
    int stop;
    int writer_waiting;

    int64_t depth; /* atomic: live events */
    int64_t max, low;
    int full_seen; /* atomic: set when depth reached max; cleared when on_drain fires */
    void (*on_drain)(void *arg);
    void *drain_arg;
    void (*deliver)(void *arg, gw_event *head);
    void *deliver_arg;

    /* writer-thread state */
    gw__dev_touch *touch; /* one per device */
    uint32_t *touched;    /* device indexes touched in this batch */
    size_t n_touched;
    gw__prop_slot *props; /* open addressing, latest value per (device, property) in the batch */
    size_t props_cap, props_used;
};

int gw__store_schema(sqlite3 *db, const gw_store_cfg *cfg, gw_error *err);
int gw__store_prepare(gw_store *s, gw_error *err);
int gw__store_mark_offline(gw_store *s, gw_error *err);

#endif

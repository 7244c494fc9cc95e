/* store.h: thing-model events and the store: a bounded queue feeding one writer thread that commits
 * batches to SQLite (WAL) and then hands each event that wants it back to its originating loop. */
#ifndef GW_STORE_H
#define GW_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../config/config.h"
#include "../gateway/error.h"

typedef enum gw_event_kind {
    GW_EV_PROPERTY,
    GW_EV_EVENT,
    GW_EV_ONLINE,
    GW_EV_OFFLINE,
    GW_EV_FUNCTION_REPLY,
} gw_event_kind;

struct gw_session;
typedef struct gw_store gw_store;

/* One normalised event. Created on a loop thread, owned by the store from submission until the
 * writer has committed it; then, if sess is set, owned by sess's loop (gw_store_event_done). */
typedef struct gw_event {
    struct gw_event *next;
    gw_event_kind kind;
    const gw_device *dev;
    int64_t ts;    /* event time, epoch ms (device timestamp or rx_ts) */
    int64_t rx_ts; /* receive time, epoch ms */
    char msg_id[64];
    char name[64];           /* event id, offline reason */
    char *payload;           /* JSON text (malloc'd, may be NULL) */
    json_t *values;          /* property events: normalised properties, for property_state */
    struct gw_session *sess; /* completion target (holds a reference), or NULL */
    uint32_t token;          /* adapter's completion token (e.g. MQTT packet id) */
    int status;              /* 0 committed, or a negative code */
} gw_event;

/* Opens (creating or migrating) the database, marks every device offline (a crash leaves stale
 * online flags), prepares statements. Main thread, before start. */
int gw_store_open(gw_store **out, const gw_config *cfg, gw_error *err);

/* Starts the writer thread. on_drain(arg) is called (from any thread) when the queue falls below
 * its low watermark after having been full, so paused readers can resume. */
int gw_store_start(gw_store *s, void (*on_drain)(void *arg), void *arg);

/* Allocates an event and counts it against queue_max until gw_store_event_done. NULL on OOM. */
gw_event *gw_store_event_new(gw_store *s, gw_event_kind kind, const gw_device *dev);
/* Frees an event (payload, values, session reference) and uncounts it. Any thread. */
void gw_store_event_done(gw_store *s, gw_event *ev);

/* Queues a chain of events (head..tail, n of them) for the writer. Any thread; never fails: the
 * bound is enforced at creation (gw_store_full). */
void gw_store_submit(gw_store *s, gw_event *head, gw_event *tail, size_t n);

/* True when live events have reached queue_max: adapters stop reading (back-pressure). */
bool gw_store_full(const gw_store *s);
/* Live events (created and not yet done). */
int64_t gw_store_depth(const gw_store *s);

/* Sets the function the writer calls after a commit for events with sess != NULL; it must move
 * them to their loop (runtime does: one inbox message per loop per batch). */
void gw_store_set_completion(gw_store *s, void (*deliver)(void *arg, gw_event *head), void *arg);

/* Stops the writer after it has committed everything queued, joins it and closes the database. */
void gw_store_close(gw_store *s);

int64_t gw_now_ms(void);

#endif

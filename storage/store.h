/* store.h: thing-model events and the store: a bounded queue feeding one writer thread that commits
 * batches to SQLite (WAL) and then hands each event that wants it back to its originating loop. */
#ifndef GW_STORE_H
#define GW_STORE_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../config/config.h"
#include "../gateway/util/error.h"

typedef enum gw_event_kind {
    GW_EV_PROPERTY,
    GW_EV_EVENT,
    GW_EV_ONLINE,
    GW_EV_OFFLINE,
    GW_EV_FUNCTION_REPLY, /* a command's outcome (device reply, or the gateway's error) */
    GW_EV_WRITE_REPLY,
    GW_EV_READ_REPLY,
    GW_EV_COMMAND, /* command log only: a row in the commands table; not an event, not forwarded */
} gw_event_kind;

#define GW_EV__COUNT (GW_EV_COMMAND + 1)

/* "property", "event", "online", "offline", "function_reply", "write_reply", "read_reply",
 * "command": the events.kind column and the upstream payload's "kind". */
const char *gw_event_kind_name(gw_event_kind k);

struct gw_session;
typedef struct gw_store gw_store;

/* One normalised event. Created on a loop thread, owned by the store from submission until the
 * writer has committed it; then, if sess is set, owned by sess's loop (gw_store_event_done). */
typedef struct gw_event {
    /* What the writer reads of every event comes first, in one cache line (the loops write the
     * events on other cores: each line the writer touches is a transfer) */
    struct gw_event *next;
    const gw_device *dev;
    char *payload; /* JSON text (gw_malloc(GW_AREA_EVENT), may be NULL); property events: the
                      normalised properties as the gateway writes them (compact), which the
                      writer also reads for property_state */
    struct gw_session *sess; /* opaque completion target (holds a reference), or NULL */
    int64_t ts;              /* event time, epoch ms (device timestamp or rx_ts) */
    int64_t rx_ts;           /* receive time, epoch ms */
    gw_event_kind kind;
    uint32_t token;    /* adapter's completion token (e.g. MQTT packet id) */
    int status;        /* 0 committed, or a negative code */
    bool gateway_made; /* the gateway's own outcome (timeout, offline, read...): the device was not
                          heard from, so its last_seen does not move */
    /* Command log. GW_EV_COMMAND: inserts a commands row (device, msg_id = the cloud's messageId,
     * name = function id or "write"/"read", payload = the request) with cmd_op ("invoke",
     * "write", "read") and cmd_status as its first status. Reply kinds with cmd_status set:
     * also update the newest commands row of (device, msg_id) to cmd_status, with the reply
     * (payload) and the time. Static strings; NULL for everything else. */
    const char *cmd_op;
    const char *cmd_status; /* "queued", "sent", "success", "failed", "timeout", "rejected",
                               "offline", "expired" */
    char msg_id[64];
    char name[64]; /* event id, offline reason */
} gw_event;

/* Opens (creating or migrating) the database, marks every device offline (a crash leaves stale
 * online flags), prepares statements. Main thread, before start. */
int gw_store_open(gw_store **out, const gw_config *cfg, gw_error *err);

/* Starts the writer thread. on_drain(arg) is called (from any thread) when the queue falls below
 * its low watermark after having been full, so paused readers can resume. */
int gw_store_start(gw_store *s, void (*on_drain)(void *arg), void *arg);

/* Allocates an event and counts it against queue_max until gw_store_event_done. NULL on OOM. */
gw_event *gw_store_event_new(gw_store *s, gw_event_kind kind, const gw_device *dev);
/* Frees an event (payload, session reference) and uncounts it. Any thread. */
void gw_store_event_done(gw_store *s, gw_event *ev);

/* Queues a chain of events (head..tail, n of them) for the writer. Any thread; never fails: the
 * bound is enforced at creation (gw_store_full). */
void gw_store_submit(gw_store *s, gw_event *head, gw_event *tail, size_t n);

/* True when live events have reached queue_max: adapters stop reading (back-pressure). */
bool gw_store_full(const gw_store *s);
/* Live events (created and not yet done). */
int64_t gw_store_depth(const gw_store *s);
/* Of those, the queued events the writer holds back because committing them would take the
 * outbox past north.max_outbox_rows (policy backpressure); they wait for forwarded rows to be
 * deleted, so a thread that frees them (the north thread) must not pause for them. */
int64_t gw_store_held(const gw_store *s);
/* Shutdown, once devices are no longer read: events held for the outbox budget are committed
 * anyway (and acknowledged while their sessions last): accepted before the stop, they are not
 * lost; the outbox may pass its budget by those (at most queue_max). */
void gw_store_release_held(gw_store *s);

/* The latest-state tables (device_state, property_state) trail committed events by up to
 * storage.state_lag_ms (online/offline changes excepted). This asks the writer to write what it
 * has noted now and waits until it has, at most timeout_ms: 0, or -ETIMEDOUT. Any thread but
 * the writer's; returns at once when nothing is waiting to be written. */
int gw_store_sync_state(gw_store *s, unsigned timeout_ms);

/* Sets the function the writer calls after a commit for events with sess != NULL; it must move
 * them to their loop (runtime does: one inbox message per loop per batch). release(sess) drops
 * the reference such an event holds on its completion target (gw_store_event_done): the store
 * never looks inside that target (it knows nothing of sessions). Main thread, before start;
 * release may be NULL when no event will carry a target. */
void gw_store_set_completion(gw_store *s, void (*deliver)(void *arg, gw_event *head),
                             void (*release)(struct gw_session *sess), void *arg);

/* How long the last successful store transaction took, in microseconds (0 before the first).
 * Any thread (GET /api/status). */
int64_t gw_store_commit_us(const gw_store *s);

/* Sets fn, called on the writer thread after each successful commit with the committed batch
 * (a chain by next, commands included; valid during the call only); fn must not block. NULL
 * unsets it. Main thread, before start (the API's stream hub). */
void gw_store_set_tap(gw_store *s, void (*fn)(void *arg, const gw_event *batch), void *arg);

/* ---- outbox (store-and-forward; active when the north bridge is enabled) ----
 * Every event but GW_EV_COMMAND gets an outbox row in the same transaction as the event itself.
 * The north thread reads the outbox in id order (gw_store_reader) and reports the ids the broker
 * acknowledged (gw_store_forwarded); the writer deletes those rows in its next transaction. */

/* Any thread: these event ids were acknowledged upstream. Never blocks on the database. */
void gw_store_forwarded(gw_store *s, const int64_t *ids, size_t n);
/* How many ids passed to gw_store_forwarded (a running count, in the order given) have had their
 * outbox rows deleted by a committed transaction. */
int64_t gw_store_forwarded_done(const gw_store *s);
/* Called by the writer after each commit that added outbox rows or deleted forwarded ones (on
 * the writer thread). */
void gw_store_set_commit_hook(gw_store *s, void (*fn)(void *arg), void *arg);
/* Unforwarded events (outbox rows), as the writer last counted them. */
int64_t gw_store_outbox_rows(const gw_store *s);
/* While store transactions fail (from the first failed commit until one succeeds): the reason
 * ("full", "ioerr", "busy", "corrupt", "other", as in iotgw_store_commit_failures_total) and, in
 * *detail, SQLite's text for the error; NULL while commits succeed. Any thread (GET /health). */
const char *gw_store_failing(const gw_store *s, const char **detail);

/* A read-only connection for one thread (the north thread): the outbox and the latest values. */
typedef struct gw_store_reader gw_store_reader;

typedef struct gw_outbox_row {
    int64_t id; /* event id */
    int64_t ts;
    const char *device, *product, *kind, *name, *msg_id, *payload; /* name, msg_id, payload may be
                                                                      NULL; valid during fn */
    size_t payload_len;
} gw_outbox_row;

int gw_store_reader_open(gw_store_reader **out, const gw_config *cfg, gw_error *err);
void gw_store_reader_close(gw_store_reader *r);
/* Calls fn for up to limit unforwarded events with id > after_id, in id order; fn returns 0 to go
 * on. Returns the number of rows passed to fn, or a negative code. */
int gw_store_reader_outbox(gw_store_reader *r, int64_t after_id, size_t limit,
                           int (*fn)(void *arg, const gw_outbox_row *row), void *arg);
/* The latest stored value of dev's properties named in names (a JSON array of ids; NULL: all):
 * *out = {"id": {"value": v, "time": ms}, ...} (ids never reported are absent). 0 or GW_ESTORE. */
int gw_store_reader_properties(gw_store_reader *r, const gw_device *dev, const json_t *names,
                               json_t **out);

/* ---- The management API's reads (its own reader, on the main thread). Each is one index seek
 * and at most a bounded number of steps. ---- */

/* What the store knows of a device: its device_state row and its newest online event. */
typedef struct gw_device_state {
    bool known;        /* a device_state row exists (the device was online at least once) */
    bool online;       /* as committed (the online/offline event's transaction writes it) */
    int64_t last_seen; /* epoch ms of the newest message from it (trails by state_lag_ms) */
    char offline_reason[64];
    char adapter[32]; /* of the newest online event ("" if never online) */
    char peer[64];
    int64_t online_ts; /* that event's time */
} gw_device_state;

int gw_store_reader_device_state(gw_store_reader *r, const char *device, gw_device_state *out);

/* Calls fn(arg, id) for up to limit online devices with an id above after ("" for the first), in
 * id order (bytewise, as strcmp); fn returns 0 to go on. The count passed, or a negative code. */
int gw_store_reader_online(gw_store_reader *r, const char *after, size_t limit,
                           int (*fn)(void *arg, const char *device), void *arg);

/* One device's events, newest first: its chain (events.prev) from its newest event. */
typedef struct gw_history_query {
    const char *device;
    int64_t start_id;        /* the first row to examine (a *next of before); 0: the newest */
    const char *kind, *name; /* NULL: any */
    int64_t from, to;        /* ts bounds, inclusive (INT64_MIN / INT64_MAX: none) */
    size_t limit;            /* rows passed to fn at most */
    size_t scan_max;         /* rows examined at most (filters that match rarely stop here) */
} gw_history_query;

/* Calls fn for each matching row (row->id, ts, device, product, kind, name, msg_id, payload; valid
 * during fn). *next is the id to start from next time when more rows may follow, 0 when the
 * device's oldest event was examined. Each row is one rowid look-up; finding the newest is one
 * look-up of history_head plus a scan of the events committed since the state mark (at most
 * storage.state_lag_ms of ingest). The count passed, or GW_ESTORE. */
int gw_store_reader_history(gw_store_reader *r, const gw_history_query *q,
                            int (*fn)(void *arg, const gw_outbox_row *row), void *arg,
                            int64_t *next);

/* Stops the writer after it has committed everything queued, joins it and closes the database. */
void gw_store_close(gw_store *s);

int64_t gw_now_ms(void);

#endif

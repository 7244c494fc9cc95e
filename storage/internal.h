/* internal.h: what the store's files share: the struct, schema set-up and prepared statements. */
#ifndef GW_STORE_INTERNAL_H
#define GW_STORE_INTERNAL_H

#include <pthread.h>
#include <sqlite3.h>

#include "store.h"

/* store_events.c: rows per event insert statement, at most (a power of two), and how many
 * statements (1, 2, 4, ... GW__INS_MAX rows) */
#define GW__INS_MAX    64
#define GW__INS_LEVELS 7
#define GW__INS_COLS   9 /* the events row's columns, one ? each */

/* store_events.c: a text parameter as it is bound (SQLITE_STATIC: SQLite reads p[0..n) at each
 * step); n -1: NULL, n -2: not known */
typedef struct gw__bound {
    const char *p;
    int n;
} gw__bound;

typedef struct gw__dev_touch {
    int64_t last_seen;
    int8_t online;      /* -1 unchanged in this batch, 0 offline, 1 online */
    uint8_t touched;    /* device_state to be written */
    uint8_t listed;     /* in the touched list (dev held) */
    const char *reason; /* offline reason (points into an event of the batch) */
    /* the device as last noted: its generation is held until the state is written (a reload
     * may replace it meanwhile; indexes are stable across reloads) */
    const gw_device *dev;
} gw__dev_touch;

typedef struct gw__prop_slot {
    uint32_t dev; /* device index + 1; 0 = empty */
    uint32_t hash;
    /* the property id, then its value's JSON text (both copied from the event's payload, not
     * NUL-terminated); owned by the slot until the state is written (gw__state_clear) */
    char *text;
    uint32_t key_len, val_len, cap;
    /* the slot of the member that followed this one in the last payload noted here (a guess,
     * checked before use: a device's reports mostly list the same members in the same order),
     * GW__SLOT_NONE if none */
    uint32_t next;
    int64_t ts;
} gw__prop_slot;

#define GW__SLOT_NONE UINT32_MAX

/* Each device's newest event id, for the history chain (store_history.c); writer thread. */
typedef struct gw__head {
    const char *device; /* in the history's id blocks */
    int64_t last;
    uint32_t hash;
    bool dirty;  /* changed since it was last written (device_state or history_head) */
    bool listed; /* in the dirty list */
} gw__head;

/* The heads of the devices seen since the start, in that order (never removed), found through an
 * open-addressing index of positions: a device costs its 24-byte head, its id packed in a block
 * and 8 to 16 bytes of index, no allocation of its own. */
typedef struct gw__history {
    gw__head *heads;
    size_t used, heads_cap;
    uint32_t *index; /* 1 + the position of a head, 0: empty; at most half full */
    size_t cap;      /* index slots, a power of two */
    uint32_t *dirty; /* heads to write with the next state write (room for heads_cap) */
    size_t n_dirty;
    struct {
        uint32_t head;
        int64_t last;
    } * undo; /* this transaction's changes, undone if it rolls back */
    size_t n_undo, undo_cap;
    uint32_t cur;            /* the head of the event being inserted */
    struct gw__idblock *ids; /* the devices' ids, packed, newest block first */
    char *ids_next;          /* free room in the newest block */
    size_t ids_left;
    sqlite3_stmt *get, *put;
} gw__history;

/* The outbox and the budgets (store_outbox.c), writer-thread state unless noted. */
typedef struct gw__outbox {
    bool enabled;     /* north is enabled: every event gets an outbox row */
    int64_t rows;     /* atomic: unforwarded events */
    int64_t added;    /* rows inserted in the current batch */
    int full;         /* atomic: backpressure policy and the budget is reached */
    int64_t first_id; /* oldest event id (retention), 0 if none */
    int64_t last_id;  /* newest event id */
    /* acknowledged ids from the north thread, under the store mutex */
    int64_t *fwd;
    size_t n_fwd, cap_fwd;
    int64_t fwd_done; /* atomic: acknowledged ids whose deletion has committed (running count) */
    int64_t *taken;   /* writer: ids being deleted by the current transaction */
    size_t n_taken, cap_taken;
    int64_t deleted, dropped, trimmed; /* this transaction's counts, applied after COMMIT */
    int64_t new_first;                 /* oldest event id after this transaction's trim */
    bool db_full;                      /* max_db_mb reached with nothing forwarded to delete */
    void (*hook)(void *arg);
    void *hook_arg;
    int64_t last_drop_log_ms;
    sqlite3_stmt *ins, *del, *drop, *min_id, *trim, *ins_cmd, *up_cmd, *trim_cmd;
} gw__outbox;

struct gw_store {
    const gw_config *cfg;
    sqlite3 *db;
    sqlite3_stmt *up_prop, *up_state, *touch_state, *set_mark, *begin, *commit, *rollback;
    /* store_events.c: the event insert of 1, 2, 4, ... GW__INS_MAX rows; the next event's id */
    sqlite3_stmt *ins_ev[GW__INS_LEVELS];
    gw__bound ins_bound[GW__INS_LEVELS][GW__INS_MAX * GW__INS_COLS];
    int64_t next_id;
    gw__outbox ob;
    gw__history hist;

    pthread_t thread;
    int started;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    gw_event *head, *tail;
    size_t qlen;
    int stop;
    int unheld;   /* shutting down: events held for the outbox budget are committed anyway */
    int64_t held; /* atomic: queued events the writer holds for the outbox budget */
    int writer_waiting;
    /* gw_store_sync_state: under mu */
    pthread_cond_t state_cond; /* broadcast after each state write */
    uint64_t state_gen;        /* state writes so far */
    bool state_req;            /* a thread waits for the notes to be written */
    int state_pending;         /* atomic: notes are waiting to be written */

    int64_t depth; /* atomic: live events */
    int64_t peak;  /* atomic: the highest depth since start-up (store_queue_depth_max) */
    int64_t max, low;
    int full_seen; /* atomic: set when depth reached max; cleared when on_drain fires */
    void (*on_drain)(void *arg);
    void *drain_arg;
    void (*release)(struct gw_session *sess); /* drops an event's completion reference */
    void (*deliver)(void *arg, gw_event *head);
    void *deliver_arg;
    void (*tap)(void *arg, const gw_event *batch); /* committed batches (the API's stream hub) */
    void *tap_arg;
    int64_t
        commit_us_last; /* atomic: the last successful transaction's duration (GET /api/status) */

    /* writer-thread state: device and property state noted since it was last written */
    gw__dev_touch *touch; /* one per device */
    uint32_t *touched;    /* device indexes touched */
    size_t n_touched;
    gw__prop_slot *props; /* open addressing, latest value per (device, property) */
    size_t props_cap, props_used;
    int64_t state_since;  /* when the oldest unwritten note was taken (ms), 0: none */
    int64_t state_events; /* events noted since (the store_state_unwritten gauge) */
    int64_t state_id;     /* the newest event noted: the state mark once written */
    bool state_urgent;    /* an online/offline change: write in this transaction */
    bool state_written;   /* this transaction wrote the notes */
    /* the failing statement's own error, taken before the ROLLBACK (gw__store_rollback) */
    int err_code;      /* writer: SQLite extended code */
    char err_msg[160]; /* writer: its sqlite3_errmsg */
    int failing;       /* atomic: err_code of the failing commit; 0 once one succeeds */
};

/* store_writer.c: how long a batch of only online/offline events waits for more (ms, when
 * batch_ms is 0); a variable so that the unit test can widen it */
extern unsigned gw__store_linger_ms;
int gw__store_schema(sqlite3 *db, const gw_store_cfg *cfg, gw_error *err);
/* Steps (and resets) a statement: 0 (done or a row), or the negated SQLite code. Inside storage
 * the writer's transaction steps fail with -SQLITE_… (negative as everywhere, the code kept for
 * the failure metrics and logs); the public functions answer GW_ESTORE / GW_ENOMEM. */
int gw__store_step(sqlite3_stmt *st);
/* After a failed step (rc, a negated SQLite code) of a transaction: keeps the error (err_code,
 * err_msg), then ROLLBACK, whose own error would hide it (a full disk has rolled back already).
 * Writer thread. */
void gw__store_rollback(gw_store *s, int rc);

/* store_outbox.c */
int gw__outbox_open(gw_store *s, gw_error *err); /* statements, counts */
void gw__outbox_close(gw_store *s);
/* In the batch's transaction: the outbox row of an event just inserted (rowid id), or the command
 * log row / update of a command event. 0 or -SQLITE_…. */
int gw__outbox_event(gw_store *s, const gw_event *ev, int64_t id);
int gw__outbox_command(gw_store *s, const gw_event *ev);
/* Takes the acknowledged ids queued by the north thread (caller holds s->mu): true if any. */
bool gw__outbox_take_fwd(gw_store *s);
bool gw__outbox_has_fwd(const gw_store *s); /* caller holds s->mu */
/* In the batch's transaction, after the events: deletes forwarded rows, applies retention, the
 * disk budget and the outbox policy. 0 or -SQLITE_…. */
int gw__outbox_maintain(gw_store *s);
/* After the batch: COMMIT succeeded (committed true) or was rolled back. */
void gw__outbox_after(gw_store *s, bool committed);
/* Outbox rows the next transaction may add within max_outbox_rows (policy backpressure; 0 when
 * the budget is reached); INT64_MAX when nothing limits them. Writer thread. */
int64_t gw__outbox_room(const gw_store *s);
int gw__store_prepare(gw_store *s, gw_error *err);

/* store_events.c: the events rows of a batch (writer thread). The writer knows the ids SQLite
 * gives them (next_id; 0: unknown, read as MAX(id) + 1 by the next transaction, at the start and
 * after a rollback): the history chain links an event to an earlier one of the same statement. */
int gw__events_prepare(gw_store *s, gw_error *err);
void gw__events_close(gw_store *s);
/* next_id = MAX(events.id) + 1. 0 or -SQLITE_…. */
int gw__events_sync_id(gw_store *s);
/* In the batch's transaction: the rows of the events from .. to (exclusive), GW_EV_COMMAND ones
 * skipped (rows: how many others), ids next_id onwards in order, each linked into its device's
 * history. 0 or -SQLITE_…. */
int gw__events_insert(gw_store *s, const gw_event *from, const gw_event *to, size_t rows);

/* store_history.c: the history chain (events.prev, history_head) */
/* After the schema, before the statements: heads past the mark, statements, and the SQL function
 * gw_history_head(device) the device_state statements write last_event with. */
int gw__history_open(gw_store *s, gw_error *err);
void gw__history_close(gw_store *s);
/* Before inserting an event of device: *prev = its newest event id (0: none). 0 or -SQLITE_…. */
int gw__history_prev(gw_store *s, const char *device, int64_t *prev);
/* ... after inserting it as id (in the batch's transaction). */
void gw__history_linked(gw_store *s, int64_t id);
/* In the state write's transaction, after device_state: the changed heads it did not take (no
 * state row: only gateway-made events) into history_head. 0 or -SQLITE_…. */
int gw__history_write(gw_store *s);
void gw__history_written(gw_store *s); /* that transaction committed */
/* After a batch's transaction: committed, or rolled back (its heads are undone). */
void gw__history_after(gw_store *s, bool committed);

/* store_state.c: device_state and property_state, written from the notes of committed events */
int gw__state_grow(gw_store *s);  /* the property table: first size, then doubling */
void gw__state_free(gw_store *s); /* the property table and its slots' texts (close) */
/* Notes a committed event (its row id) in the transaction that inserts it. 0 or -SQLITE_…. */
int gw__state_note(gw_store *s, const gw_event *ev, int64_t id);
/* Whether this transaction writes the notes: an online/offline change, a gw_store_sync_state
 * waiting, or the oldest unwritten note is state_lag_ms old. */
bool gw__state_due(gw_store *s);
/* In the transaction: the notes' rows and the state mark. 0 or -SQLITE_…. */
int gw__state_write(gw_store *s);
/* The same in a transaction of its own. 0 or -SQLITE_… (the notes stay for a retry). */
int gw__state_commit(gw_store *s);
/* After the transaction: committed notes are forgotten; rolled-back ones stay for the retry. */
void gw__state_after(gw_store *s, bool committed);
void gw__state_clear(gw_store *s); /* forgets (and releases) every note */
/* At start-up: the state of events committed after the mark (a crash), written now. */
int gw__state_replay(gw_store *s, gw_error *err);
int gw__store_mark_offline(gw_store *s, gw_error *err);

/* store_writer.c: a CLOCK_MONOTONIC deadline ms from now, for the store's condition variables
 * (monotonic: a step of the wall clock neither stretches nor cuts a wait). */
struct timespec gw__store_deadline(int64_t ms);

#endif

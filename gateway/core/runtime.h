/* runtime.h: the fixed set of libuv loop threads, each with a bounded inbox other threads post to,
 * a shared read buffer, and the end-of-iteration flush that hands queued events to the store and
 * writes sessions' pending output. Threads are created at start-up only. */
#ifndef GW_RUNTIME_H
#define GW_RUNTIME_H

#include <pthread.h>
#include <stdint.h>
#include <uv.h>

#include "../../config/config.h"
#include "../../storage/store.h"
#include "adapter.h"
#include "session.h"

struct gw_thing_msg;
struct gw_reject;

#define GW_MAX_ADAPTERS   8
#define GW_DEVICE_STRIPES 256

typedef struct gw_inbox_msg gw_inbox_msg;
typedef void (*gw_inbox_fn)(gw_loop *loop, gw_inbox_msg *m);
/* A message for a loop: embed it in a larger struct; fn runs on the loop and owns (frees) it. */
struct gw_inbox_msg {
    gw_inbox_msg *next;
    gw_inbox_fn fn;
};

struct gw_loop {
    uv_loop_t uv;
    uv_async_t wake;
    uv_check_t check;
    pthread_t thread;
    unsigned index;
    gw_runtime *rt;
    /* inbox: MPSC list; bounded by construction (see README "Threads and queues") */
    pthread_mutex_t inbox_mu;
    gw_inbox_msg *inbox_head, *inbox_tail;
    /* events validated this iteration, submitted to the store in one go at its end */
    gw_event *pend_head, *pend_tail;
    size_t pend_n;
    gw_session *dirty;      /* sessions with output to flush this iteration */
    char *rbuf;             /* shared read buffer, cfg->read_buffer bytes */
    struct gw_dgram *dgram; /* datagram receive buffer and output batch (dgram.c), on first use */
    size_t rbuf_size;
    int rbuf_busy;
    void *adapter_state[GW_MAX_ADAPTERS]; /* per adapter, indexed like rt->adapters */
    gw_inbox_msg resume_msg;
    int resume_queued; /* atomic */
    int start_rc;
    int inited;
    uv_sem_t started;
    /* The configuration generation this loop looks devices and products up in (holds a
     * reference); a reload switches it between two inbox messages (gw_runtime_switch). */
    const gw_config *cfg;
};

struct gw_runtime {
    const gw_config *cfg;
    gw_store *store;
    gw_loop *loops;
    unsigned n_loops;
    gw_adapter adapters[GW_MAX_ADAPTERS];
    unsigned n_adapters;
    gw_session **slots;           /* per device: its current session (under a stripe lock) */
    struct gw_commands *commands; /* downstream command table; NULL when north is disabled */
    /* where dispatch hands a device's command reply: gw_commands_reply, set by
     * gw_commands_create, so the core calls the command table without including it */
    int (*command_reply)(gw_session *s, struct gw_thing_msg *m, uint32_t token, bool want_commit,
                         struct gw_reject *rej);
    struct gw_limits *limits; /* per-source limits; NULL when none is configured */
    pthread_mutex_t stripes[GW_DEVICE_STRIPES];
    pthread_mutex_t listeners_mu;
    char listeners[1024]; /* "listener adapter=.. address=.. port=..\n" lines for --ready-fd */
    size_t listeners_len;
    /* cfg above is the start-up configuration (settings that need a restart); cur is the newest
     * generation (devices, products), under cfg_mu, holding a reference. */
    pthread_mutex_t cfg_mu;
    const gw_config *cur;
    uint32_t device_cap; /* rt->slots and every per-device array: cfg->device_cap */
};

int gw_runtime_create(gw_runtime **out, const gw_config *cfg, gw_store *store, gw_error *err);
/* Adds a configured adapter (main thread, before start); its init has already succeeded. */
gw_adapter *gw_runtime_add_adapter(gw_runtime *rt, const gw_adapter_ops *ops);
/* Starts the loop threads one after the other; each runs every adapter's start. */
int gw_runtime_start(gw_runtime *rt, gw_error *err);
/* Shutdown, main thread, in order: stop accepting and reading; close sessions; stop the loops. */
void gw_runtime_stop_accepting(gw_runtime *rt);
void gw_runtime_close_sessions(gw_runtime *rt);
void gw_runtime_join(gw_runtime *rt);
void gw_runtime_free(gw_runtime *rt);

/* Any thread. */
void gw_loop_post(gw_loop *l, gw_inbox_msg *m);
/* Runs fn(loop, arg) on every loop and waits until all have run it. Main thread only. */
void gw_runtime_run_on_all(gw_runtime *rt, void (*fn)(gw_loop *l, void *arg), void *arg);

/* Adapters, on loop 0 after binding: records a listener for --ready-fd and the log. product: the
 * product a binary-transport listener serves (NULL or "" for none). */
void gw_runtime_report_listener(gw_runtime *rt, const char *adapter, const char *addr, int port,
                                const char *product);

/* The store queue is full: the caller stops reading; a resume comes through adapter->ops->resume
 * on this loop once the store drains. Counts store_backpressure_total. */
void gw_loop_note_backpressure(gw_loop *l);

/* Queues an event validated on this loop; the whole iteration's events go to the store together. */
void gw_loop_queue_event(gw_loop *l, gw_event *ev);
/* Submits the queued events now (before a lifecycle event, to keep a device's order). */
void gw_loop_flush_events(gw_loop *l);

/* The newest configuration generation, retained (gw_config_release it): for threads other than
 * the loops (north, commands, main). Loops use loop->cfg. */
const gw_config *gw_runtime_cfg_acquire(gw_runtime *rt);

/* Main thread, hot reload: makes next the current generation and switches every loop to it at a
 * safe point (between two inbox messages; each message is handled under one generation). On each
 * loop, every session owning a device is re-pointed to the device of the same id in next; a
 * device that is gone has its session closed with offline reason "removed", one whose product,
 * protocol, codec or secret changed with "reconfigured". Every device of next must have an index
 * below rt->device_cap, an id's index the same in both. Returns once every loop has switched. */
void gw_runtime_switch(gw_runtime *rt, const gw_config *next);

/* The adapter's index in rt->adapters (for loop->adapter_state). */
unsigned gw_adapter_index(const gw_adapter *a);

#endif

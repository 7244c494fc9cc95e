/* command_internal.h: what the command files share: a cloud request parsed and validated against
 * the thing model (a pure function of the product and the payload, so it is unit-tested without
 * threads), the reply payload texts, and the table (its entries, the lock, the event order). */
#ifndef GW_COMMAND_INTERNAL_H
#define GW_COMMAND_INTERNAL_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "command.h"

/* Reply timeout of a property write (functions have their own timeout_ms). */
#define GW_CMD_WRITE_TIMEOUT_MS 5000u

/* A cloud request after parsing. On failure code is set (a static "invalid_payload", ...) with a
 * one-line message; msg_id is kept whenever the payload had a usable one. */
typedef struct gw__cmd_req {
    gw_command_op op;
    char msg_id[64];            /* the cloud's messageId ("" if missing or unusable) */
    const gw_function_spec *fn; /* invoke */
    json_t *args;     /* invoke: normalised inputs; write: normalised properties; read: the names
                         asked for (array of strings), NULL for all */
    json_t *request;  /* the parsed payload (for the command log), NULL if it was not JSON */
    char fn_name[64]; /* invoke: the function id as asked for (also when it is unknown) */
    const char *code;
    char message[192];
    char path[96];       /* on failure, the JSON path of what is wrong ("inputs.delay_s"), or "" */
    bool gateway_full;   /* answered "busy" because of north.max_pending */
    uint32_t timeout_ms; /* local API: a shorter reply timeout than the function's, or 0 */
    struct gw__cmd_mail *mail; /* local API: its outcome, told on the main loop; cloud: NULL */
} gw__cmd_req;

/* Parses and validates payload as a command of op for product p with the thing model's own
 * checks (gw_tm_function, gw_tm_check_params, gw_tm_property + writable, gw_tm_check_value).
 * 0, or GW_EINVAL with r->code and r->message. Always clear r afterwards. */
int gw__cmd_parse(const gw_product *p, gw_command_op op, const void *payload, size_t len,
                  gw__cmd_req *r);
/* The same for a request already parsed (root is borrowed; r->request takes a reference). */
int gw__cmd_parse_obj(const gw_product *p, gw_command_op op, json_t *root, gw__cmd_req *r);
void gw__cmd_req_clear(gw__cmd_req *r);

/* "invoke", "write", "read" (commands.op); the reply event kind; the event name ("write",
 * "read", or the function id). */
const char *gw__cmd_op_name(gw_command_op op);
gw_event_kind gw__cmd_reply_kind(gw_command_op op);
const char *gw__cmd_event_name(gw_command_op op, const gw_function_spec *fn);

/* Reply payloads (malloc'd JSON text, NULL on out of memory):
 * {"success":false,"code":code,"message":message} and {"success":true[,key:value]} (value
 * stolen, may be NULL for none). */
char *gw__cmd_error_json(const char *code, const char *message);
char *gw__cmd_success_json(const char *key, json_t *value);

/* The command log status of an error code ("rejected", "offline", "expired", "timeout",
 * "failed"). */
const char *gw__cmd_error_status(const char *code);

/* ---- the table (command.c; the device side in command_route.c) ---- */

enum { GW__CMD_WAIT, GW__CMD_SENT, GW__CMD_DONE };

/* One pending command. Owned by the heap (every entry has a deadline); listed in its device's
 * list while not GW__CMD_DONE. */
typedef struct gw__cmd_entry {
    gw_command cmd;
    struct gw__cmd_entry *next; /* the device's list, oldest first */
    int64_t deadline;           /* gw_now_ms; GW__CMD_DONE: 0, so the next tick answers it */
    uint32_t heap_at;
    uint32_t timeout_ms; /* reply timeout once sent */
    uint8_t state;
    const char *code;          /* GW__CMD_DONE: the error reply's code */
    char message[160];         /* GW__CMD_DONE: ... and its message */
    struct gw__cmd_mail *mail; /* local API: its outcome, told on the main loop; cloud: NULL */
} gw__cmd_entry;

typedef struct gw__cmd_dev {
    gw__cmd_entry *head;
    uint32_t n;   /* entries in the list */
    uint32_t seq; /* the last seq handed out to this device */
} gw__cmd_dev;

struct gw_commands {
    gw_runtime *rt;
    const gw_config *cfg;
    gw_store_reader *reader; /* property reads, NULL in unit tests */
    pthread_mutex_t mu;      /* everything below, and the order of the events submitted */
    gw__cmd_dev *devs;       /* per device index */
    gw__cmd_entry **heap;    /* every pending entry, by deadline */
    uint32_t heap_n, heap_cap;
    void (*sink)(void *arg, gw_event *ev);
    void *sink_arg;
    /* local API (command_local.c): outcomes handed to the main loop; NULL loop: not attached */
    uv_loop_t *loop;
    uv_async_t mail_wake;
    uv_timer_t tick; /* no north thread: gw_commands_tick every 50 ms while any is pending */
    bool main_ticks;
    struct gw__cmd_mail *mail_head, **mail_tail; /* under mu */
    int64_t id_base;                             /* gw_commands_new_id: "api-<id_base>-<next_id>" */
    uint32_t next_id;
};

/* Emits events in order: to the store (gw_store_submit), or to the sink tests install. Called
 * with the lock held whenever the events belong to a command in the table. */
void gw__commands_emit(gw_commands *c, gw_event *head, gw_event *tail, size_t n);
void gw__cmd_emit1(gw_commands *c, gw_event *ev); /* NULL-safe */
/* Test hook: every event goes to fn instead of the store (fn owns it). NULL: the store. */
void gw__commands_set_sink(gw_commands *c, void (*fn)(void *arg, gw_event *ev), void *arg);

/* The command log row of a request (GW_EV_COMMAND with status); a reply event named name with
 * payload (taken); the reply event of an error (code + message, status from the code). NULL on
 * out of memory. */
gw_event *gw__cmd_log_event(gw_commands *c, const gw_device *dev, const gw__cmd_req *r,
                            const char *status);
gw_event *gw__cmd_reply_event(gw_commands *c, const gw_device *dev, gw_command_op op,
                              const char *name, const char *msg_id, char *payload,
                              const char *status);
gw_event *gw__cmd_error_event(gw_commands *c, const gw_device *dev, gw_command_op op,
                              const char *name, const char *msg_id, const char *code,
                              const char *message);
/* The event name of a request: the function id asked for, "write" or "read". */
const char *gw__cmd_req_name(const gw__cmd_req *r);
/* The log line of a command that ends without a device reply. */
void gw__cmd_log_outcome(const gw_device *dev, gw_command_op op, const char *name,
                         const char *msg_id, const char *code, const char *message);

/* Entries, lock held: a new deadline; out of the table for good (the pending gauge follows);
 * ended from a loop with an error that the next tick answers (counted here); freed. */
void gw__cmd_set_deadline(gw_commands *c, gw__cmd_entry *e, int64_t deadline);
void gw__cmd_entry_remove(gw_commands *c, gw__cmd_entry *e);
void gw__cmd_entry_fail(gw_commands *c, gw__cmd_entry *e, const char *code, const char *message);
void gw__cmd_entry_free(gw__cmd_entry *e);

/* Answers a request at once (a rejection with code + message, or payload: a success reply,
 * taken): its log row and its reply, or "duplicate_message_id" when its messageId is pending for
 * the device. Counted and logged. */
void gw__commands_answer(gw_commands *c, const gw_device *dev, gw__cmd_req *r, const char *code,
                         const char *message, char *payload);

/* Takes a valid invoke or write into the table: bounds and duplicate checks, then sends it to the
 * device's session, queues it for the device's next session, or answers it at once (logged and
 * replied, counted). Consumes r->args. */
void gw__commands_add(gw_commands *c, const gw_device *dev, gw__cmd_req *r);

/* command_cloud.c: a parsed request of either origin, routed one way: rejections answered,
 * property reads answered from reader's latest values (after up to sync_ms for the state tables
 * to catch up), codec dry run, then the table (gw__commands_add). */
void gw__commands_take(gw_commands *c, const gw_device *dev, gw__cmd_req *r,
                       gw_store_reader *reader, unsigned sync_ms);

/* command_local.c: a local command's outcome, allocated when it is submitted (so telling it
 * never fails), queued for the main loop once filled. */
typedef struct gw__cmd_mail {
    struct gw__cmd_mail *next;
    gw_command_done_fn done;
    void *arg;
    const char *status, *code; /* static strings */
    bool gateway_full;
    char msg_id[64];
    char path[96];
    char *payload; /* a copy (GW_AREA_RUNTIME), NULL when out of memory */
} gw__cmd_mail;

/* Lock held: a local command ended (or was queued): fills *mailp with the outcome (payload
 * copied, may be NULL; path may be NULL), hands it to the main loop and clears *mailp. No-op when
 * *mailp is NULL (a cloud command, or one already told). */
void gw__cmd_notify(gw_commands *c, gw__cmd_mail **mailp, const char *status, const char *code,
                    const char *path, bool gateway_full, const char *payload);

/* command_route.c: the device's current session (retained) or NULL; asks s's loop to send the
 * device's waiting commands (takes the reference to s). */
gw_session *gw__cmd_owner_of(gw_runtime *rt, const gw_device *dev);
void gw__cmd_post_route(gw_commands *c, gw_session *s);

#endif

/* command_internal.h: what the command files share: a cloud request parsed and validated against
 * the thing model (a pure function of the product and the payload, so it is unit-tested without
 * threads), the reply payload texts, and the table's entry points for command_cloud.c. */
#ifndef GW_COMMAND_INTERNAL_H
#define GW_COMMAND_INTERNAL_H

#include <jansson.h>
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
    json_t *args;    /* invoke: normalised inputs; write: normalised properties; read: the names
                        asked for (array of strings), NULL for all */
    json_t *request; /* the parsed payload (for the command log), NULL if it was not JSON */
    const char *code;
    char message[192];
} gw__cmd_req;

/* Parses and validates payload as a command of op for product p with the thing model's own
 * checks (gw_tm_function, gw_tm_check_params, gw_tm_property + writable, gw_tm_check_value).
 * 0, or GW_EINVAL with r->code and r->message. Always clear r afterwards. */
int gw__cmd_parse(const gw_product *p, gw_command_op op, const void *payload, size_t len,
                  gw__cmd_req *r);
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

/* ---- the table (command.c), for command_cloud.c ---- */

/* Emits events in order: to the store (gw_store_submit), or to the sink tests install. The
 * caller holds the table's lock whenever the events belong to a command in the table. */
void gw__commands_emit(gw_commands *c, gw_event *head, gw_event *tail, size_t n);
/* Test hook: every event goes to fn instead of the store (fn owns it). NULL: the store. */
void gw__commands_set_sink(gw_commands *c, void (*fn)(void *arg, gw_event *ev), void *arg);

/* The command log row for a request (GW_EV_COMMAND with status), and the reply event of an error
 * (code + message, status from the code). NULL on out of memory. */
gw_event *gw__cmd_log_event(gw_commands *c, const gw_device *dev, const gw__cmd_req *r,
                            const char *status);
gw_event *gw__cmd_error_event(gw_commands *c, const gw_device *dev, gw_command_op op,
                              const gw_function_spec *fn, const char *msg_id, const char *code,
                              const char *message);

/* Answers a request at once (a rejection with code + message, or payload: a success reply,
 * taken): its log row and its reply, or "duplicate_message_id" when its messageId is pending for
 * the device. Counted and logged. */
void gw__commands_answer(gw_commands *c, const gw_device *dev, const gw__cmd_req *r,
                         const char *code, const char *message, char *payload);

/* Takes a valid invoke or write into the table: bounds and duplicate checks, then sends it to the
 * device's session, queues it for the device's next session, or answers it at once (logged and
 * replied, counted). Consumes r->args. */
void gw__commands_add(gw_commands *c, const gw_device *dev, gw__cmd_req *r);

/* The read connection (property reads), NULL in unit tests. */
gw_store_reader *gw__commands_reader(const gw_commands *c);
const gw_config *gw__commands_cfg(const gw_commands *c);

#endif

/* command.h: downstream commands: requests from the cloud (function invoke, property write and
 * read), validated against the thing model, routed to the loop that holds the device's session,
 * and matched with the device's reply (or timed out); every outcome becomes a reply event that is
 * stored, logged in the commands table and forwarded upstream on ".../reply". */
#ifndef GW_COMMAND_H
#define GW_COMMAND_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "../../storage/store.h"
#include "../core/codec.h"
#include "command_types.h"
#include "../core/session.h"
#include "../core/thing_model.h"

typedef struct gw_runtime gw_runtime;
typedef struct gw_commands gw_commands;

/* Main thread, before the loops start. reader: the north thread's read connection (property
 * reads); the table's bounds come from cfg->north. */
int gw_commands_create(gw_commands **out, gw_runtime *rt, gw_store_reader *reader, gw_error *err);
void gw_commands_free(gw_commands *c);

/* North thread: a message arrived on a command topic. product and device come from the topic
 * (NUL-terminated; unknown ones are answered with an error reply when the pair names a device,
 * and counted and logged otherwise). Never fails: every outcome is a reply event. */
void gw_commands_on_cloud(gw_commands *c, gw_command_op op, const char *product, const char *device,
                          const void *payload, size_t len);

/* North thread, every few tens of ms: times out commands (function timeout_ms after sending) and
 * expires queued ones (the product's commands.ttl_ms). */
void gw_commands_tick(gw_commands *c, int64_t now_ms);

/* On a session's loop, when the session can take commands (MQTT: it subscribed to a command
 * topic; TCP/UDP: it logged in): sends the commands queued for its device. NULL-safe. */
void gw_commands_ready(gw_session *s);

/* On a session's loop, from gw_dispatch_message: a function or write reply from the device.
 * Matched by dev_msg_id against the pending commands of s->dev: on a match the reply (outputs
 * validated against the function) is queued as a reply event (acked to the device after commit
 * when want_commit, like any message) and 0 is returned; a reply matching nothing (late, or never
 * asked) is counted (commands_late_replies_total), logged, and refused with GW_EINVAL + rej. */
int gw_commands_reply(gw_session *s, gw_thing_msg *m, uint32_t token, bool want_commit,
                      gw_reject *rej);

#endif

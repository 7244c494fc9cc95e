/* command.h: downstream commands: requests from the cloud (function invoke, property write and
 * read), validated against the thing model, routed to the loop that holds the device's session,
 * and matched with the device's reply (or timed out); every outcome becomes a reply event that is
 * stored, logged in the commands table and forwarded upstream on ".../reply". */
#ifndef GW_COMMAND_H
#define GW_COMMAND_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>
#include <uv.h>

#include "../../storage/store.h"
#include "../core/codec.h"
#include "command_types.h"
#include "../core/session.h"
#include "../core/thing_model.h"

typedef struct gw_runtime gw_runtime;
typedef struct gw_commands gw_commands;

/* Main thread, before the loops start. reader: the north thread's read connection (property
 * reads from the cloud; NULL until gw_commands_set_reader); the table's bounds come from
 * cfg->north. The table exists whether or not north is enabled (the local API uses it too). */
int gw_commands_create(gw_commands **out, gw_runtime *rt, gw_store_reader *reader, gw_error *err);
/* Main thread, before the north thread starts: the connection cloud property reads use. */
void gw_commands_set_reader(gw_commands *c, gw_store_reader *reader);
/* Free only after gw_commands_detach and a turn of the loop it was attached to. */
void gw_commands_free(gw_commands *c);

/* ---- the local origin (the HTTP management API), main loop only ---- */

/* How a command of the local API ended, handed to its done callback on the main loop.
 * status: the commands-table status: "success", "failed" (the device answered with an error, or
 * with outputs that break the function's spec), "timeout", "expired", "rejected", "offline", or
 * "queued" (the device is offline, or its session cannot take commands yet, and its product
 * queues commands: the command stays in the table, its later outcome is stored as a reply event
 * and not told). code: the reply's error code (NULL on success and "queued"; "shutting_down" when
 * the gateway stopped first). payload: the reply event's payload ({"success":true[,"outputs"|
 * "properties":{..}]} or {"success":false,"code":..,"message":..}); NULL when out of memory.
 * path: for invalid requests, the JSON path of what is wrong ("inputs.delay_s"), else "".
 * gateway_full: "busy" because of north.max_pending (not the device's own bound). */
typedef struct gw_command_outcome {
    const char *msg_id;
    const char *status;
    const char *code;
    const char *payload;
    const char *path;
    bool gateway_full;
} gw_command_outcome;
typedef void (*gw_command_done_fn)(void *arg, const gw_command_outcome *o);

/* Main thread, before the loops start: outcomes of local commands are delivered on loop (a
 * uv_async woken from whichever thread ends a command); with tick (no north thread), a timer on
 * loop runs gw_commands_tick every 50 ms while commands are pending. 0 or a libuv error. */
int gw_commands_attach(gw_commands *c, uv_loop_t *loop, bool tick);
/* Main loop, at shutdown before the store closes: stops the timer, tells every local command
 * still waiting "shutting_down" (and delivers what was already told), closes the handles. */
void gw_commands_detach(gw_commands *c);

/* A command of the local API for dev: request is the command as the cloud would send it
 * ({"messageId","function","inputs"}, {"messageId","properties":{..}} for a write,
 * {"messageId"[,"properties":[..]]} for a read; borrowed), validated and routed exactly like a
 * cloud command (same table, bounds, queueing, log rows and reply events). timeout_ms: a reply
 * timeout shorter than the function's (0 or larger: the function's). reader: the connection
 * property reads use (the API's own). Returns 0 and done(arg, outcome) runs exactly once, later,
 * on the main loop; or a negative code (not attached, out of memory) and done never runs. */
int gw_commands_submit(gw_commands *c, gw_command_op op, const gw_device *dev, json_t *request,
                       uint32_t timeout_ms, gw_store_reader *reader, gw_command_done_fn done,
                       void *arg);
/* A fresh messageId for a local command ("api-<start ms>-<n>"), unique across restarts. */
void gw_commands_new_id(gw_commands *c, char *buf, size_t cap);

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
 * Matched by dev_msg_id against the pending commands of s->dev (a reply with no msg_id: the
 * oldest sent command of its op and function, for protocols that carry no id): on a match the reply
 * (outputs validated against the function) is queued as a reply event (acked to the device after
 * commit when want_commit, like any message) and 0 is returned; a reply matching nothing (late, or
 * never asked) is counted (commands_late_replies_total), logged, and refused with GW_EINVAL + rej.
 */
int gw_commands_reply(gw_session *s, gw_thing_msg *m, uint32_t token, bool want_commit,
                      gw_reject *rej);

#endif

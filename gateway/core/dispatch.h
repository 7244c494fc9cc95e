/* dispatch.h: from a decoded device message to a queued event: thing-model validation,
 * normalisation, counters and rejection logs, in one place for every adapter and codec. */
#ifndef GW_DISPATCH_H
#define GW_DISPATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "codec.h"
#include "session.h"

/* On the session's loop. Validates m against the device's product; on success queues the event
 * (committed with the loop's next flush) and returns 0; if want_commit, the session's
 * ops->committed runs with token after the commit. On rejection returns GW_EINVAL with rej filled,
 * counted per reason and logged with the device id. GW_ENOMEM if out of memory. */
int gw_dispatch_message(gw_session *s, gw_thing_msg *m, uint32_t token, bool want_commit,
                        gw_reject *rej);

/* Counts and logs a rejection decided outside the thing model (unknown topic, codec error). */
void gw_dispatch_rejected(gw_session *s, const gw_reject *rej, const char *msg_id);

#endif

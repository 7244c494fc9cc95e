/* session.h: the adapter-independent part of a device session: its loop, its device, a reference
 * count (freed only when the last holder lets go), and the per-device slot that makes a device's
 * newest session the owner and kicks the previous one, wherever it lives. */
#ifndef GW_SESSION_H
#define GW_SESSION_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../config/config.h"
#include "../../storage/store.h"

typedef struct gw_session gw_session;
typedef struct gw_session_ops gw_session_ops;
typedef struct gw_loop gw_loop;
struct gw_command;

struct gw_session_ops {
    const char *area; /* log area: "mqtt" */
    /* On the session's loop: an event this session submitted with want_commit is committed
     * (ev->status 0) or failed for good; the adapter acknowledges it to the device. */
    void (*committed)(gw_session *s, gw_event *ev);
    /* On the session's loop: a newer session of the same device took over: close this one. */
    void (*kick)(gw_session *s);
    /* On the session's loop, once per loop iteration when marked dirty: write pending output. */
    void (*flush)(gw_session *s);
    /* Formats the peer address ("127.0.0.1:5501") into buf. */
    void (*peer)(gw_session *s, char *buf, size_t cap);
    /* Last reference gone: free the memory (on any thread). */
    void (*destroy)(gw_session *s);
    /* On the session's loop: sends a downstream command to the device, encoded by its product's
     * codec (MQTT publish, TCP/UDP frame). 0 once handed to the transport, or a negative code with
     * err filled (e.g. GW_ENOTFOUND: the device has not subscribed to the command topic; GW_EINVAL:
     * the codec cannot carry it). NULL: this adapter carries no commands. */
    int (*command)(gw_session *s, const struct gw_command *c, gw_error *err);
};

struct gw_session {
    const gw_session_ops *ops;
    gw_loop *loop;
    const gw_device *dev; /* set by gw_session_online */
    gw_session *dirty_next;
    gw_session *index_next; /* datagram adapters' per-loop index (session_index.h) */
    uint32_t refs;          /* atomic */
    uint8_t dirty;
    uint8_t online; /* owns its device's slot */
    /* set by a reload before it closes the session: the offline reason ("removed",
     * "reconfigured") replacing the adapter's */
    const char *close_reason;
    const gw_config *held; /* the generation of dev this session holds a reference on */
};

void gw_session_init(gw_session *s, const gw_session_ops *ops, gw_loop *loop);
void gw_session_retain(gw_session *s);
void gw_session_release(gw_session *s);

/* Asks for ops->flush at the end of this loop iteration. */
void gw_session_mark_dirty(gw_session *s);

/* From gw_session_online to its destruction the session holds a reference on dev's generation
 * (held); a reload re-points dev to the same device of the next generation. */

/* The session authenticated as dev: it becomes the device's owner, an online event is stored
 * (payload: adapter and peer), and a previous session of the device, on any loop, is kicked (it
 * ends without an offline event: the device stays online). Returns 1 if one was taken over. */
int gw_session_online(gw_session *s, const gw_device *dev, const char *adapter);

/* The session ends. If it still owns its device, an offline event with reason (and "will": true
 * when a last will applied) is stored; a session that was taken over writes nothing. */
void gw_session_offline(gw_session *s, const char *reason, bool will);

#endif

/* codec.h: the codec plugin interface. A codec turns a device's bytes into a thing message
 * (decode) and a command into bytes (encode); pure functions, no I/O, no logging, no globals. */
#ifndef GW_CODEC_H
#define GW_CODEC_H

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../util/error.h"
#include "../util/reject.h"
#include "thing_model.h"

struct gw_command;

typedef enum gw_msg_kind {
    GW_MSG_NONE = 0,
    GW_MSG_PROPERTY_REPORT,
    GW_MSG_EVENT,
    GW_MSG_FUNCTION_REPLY,
    GW_MSG_WRITE_REPLY,
    GW_MSG_LOGIN,     /* binary transports: device_id + secret; the session authenticates */
    GW_MSG_HEARTBEAT, /* binary transports: keeps the session alive, stores nothing */
    GW_MSG_REGISTER,  /* binary transports (TCP): asks for an auth code (JT/T 808 0x0100) */
} gw_msg_kind;

/* What the transport already knows about a message (MQTT topic, CoAP path); GW_MSG_NONE when
 * the codec itself must tell (a binary frame's discriminator). */
typedef struct gw_decode_hint {
    gw_msg_kind kind;
    const char *name; /* event id when kind == GW_MSG_EVENT (NUL-terminated), else NULL */
    bool check;       /* the message goes to gw_dispatch_message: the codec may check it against the
                         thing model itself (see gw_thing_msg.norm_text) */
} gw_decode_hint;

/* A decoded, not yet validated, message. values is owned by the message (gw_thing_msg_clear). */
typedef struct gw_thing_msg {
    gw_msg_kind kind;
    char msg_id[64];      /* device's messageId, "" if none */
    int64_t timestamp_ms; /* device's timestamp, 0 if none */
    char name[64];        /* event id, function id; "" if none */
    int success;          /* replies: 1 success, 0 failure */
    char error[160]; /* replies: the device's own failure text ("error: message"), "" if none */
    json_t *values;  /* report: properties; event: data; reply: outputs (may be NULL) */
    /* Binary transports (TCP/UDP) only: */
    char device_id[64]; /* from a login frame or the product's device-id field; "" if none */
    char secret[128];   /* login frame / token field; "" if none */
    uint32_t seq;       /* the frame's sequence number if the layout declares one, for the ack */
    uint32_t type_code; /* the frame's discriminator value, for the ack */
    int auth_state;     /* 1 when the layout declares an HMAC: verify must check it */
    bool seq_set;       /* the frame carried a seq field (seq is its value) */
    /* Binary repeated groups (Teltonika's N records): [{"ts": ms, "values": {...}}, ...], each one
     * message of this kind at its own time; NULL if none. The adapter dispatches them as one unit
     * and sets n_accepted (the ack's record_count) before asking for the ack. */
    json_t *records;
    uint32_t n_accepted;
    uint32_t unknown_items; /* id-value list items with an id the layout does not map (skipped) */
    /* Set by a codec that checked the values against the thing model as it read them (hint.check;
     * the JSON codec's reader, the binary codec's property reports): the normalised payload text
     * (gw_malloc(GW_AREA_EVENT)); values is then NULL. */
    char *norm_text;
} gw_thing_msg;

void gw_thing_msg_clear(gw_thing_msg *m);

/* What a binary transport needs to know about a product's frames (gw_codec_ops.frame_info). */
typedef struct gw_frame_info {
    size_t max_frame;      /* the largest frame on the wire */
    bool device_id_in_all; /* every frame names its device (no login frame needed) */
    uint64_t seq_max;      /* the largest seq the command frames carry (0: no seq field) */
    uint64_t up_seq_max;   /* the largest seq the device's frames carry (0: no seq field) */
    bool up_timestamp;     /* the device's frames may carry a timestamp (timestamp_ms) */
    bool secret_as_key;    /* the frames carry a MAC keyed with the secret: kept in clear */
    bool login_code; /* a login carries an auth code derived from the secret (verify checks it) */
} gw_frame_info;

struct gw_diag; /* config/diag.h */

typedef struct gw_codec_ops {
    const char *name;
    /* Keys this codec adds to a product's JSON (NULL-terminated, may be NULL), so the loader
     * accepts them there and rejects all other unknown keys. */
    const char *const *product_keys;
    /* Once per product using this codec, at config load: checks the product's codec section
     * (p->raw) and may set p->codec_state. Returns 0, or GW_ECONFIG after adding every problem it
     * found to diag as "file: path: what" (gw_diag_add; file names the product's file). */
    int (*init)(gw_product *p, struct gw_diag *diag, const char *file);
    void (*uninit)(gw_product *p);
    /* bytes -> message. 0, or GW_EINVAL with rej filled (reason + detail). Must not retain buf. */
    int (*decode)(const gw_product *p, const gw_decode_hint *hint, const uint8_t *buf, size_t len,
                  gw_thing_msg *out, gw_reject *rej);
    /* Byte streams (TCP) only; NULL for codecs whose transport delimits messages. Finds the first
     * complete frame in buf: returns its length (> 0) after *skip leading bytes to discard (noise
     * before a start delimiter), 0 when more bytes are needed (*skip may still be > 0), GW_ETOOBIG
     * when the frame would exceed the product's max frame size, GW_EPROTO for bytes that can
     * never become a frame. Never reads past len. */
    int (*frame)(const gw_product *p, const uint8_t *buf, size_t len, size_t *skip);
    /* The codec's own ack for a decoded message: after its events are committed (rej NULL), or
     * for a rejection (rej: reason and detail; a codec without a negative ack writes nothing).
     * Binary transports send it as the ack frame; MQTT sends a rejection's on "<topic>/reply"
     * (JSON when the codec writes none). secret: the device's secret (keys the ack's MAC when
     * the layout declares one; NULL when the device is not known: then such a layout sends no
     * ack). 0 and *n (0: this message kind has no ack), or GW_ETOOBIG if cap is too small.
     * NULL: the codec never acks. */
    int (*encode_ack)(const gw_product *p, const gw_thing_msg *m, const gw_reject *rej,
                      const char *secret, uint8_t *out, size_t cap, size_t *n);
    /* Binary transports: checks a decoded frame's authentication against the device's secret
     * (token field, or HMAC over the declared byte range). 0 ok, GW_EAUTH. NULL: nothing to check
     * beyond the adapter's own (login frame secret). */
    int (*verify)(const gw_product *p, const gw_thing_msg *m, const uint8_t *frame, size_t len,
                  const char *secret);
    /* Binary transports: the product's frame facts (set at init). NULL: not a framing codec. */
    void (*frame_info)(const gw_product *p, gw_frame_info *out);
    /* Downstream: the bytes of a command (function invoke or property write; its arguments
     * already passed the thing model) for device_id; secret keys a MAC where the layout has one.
     * 0 and *n, GW_ETOOBIG if cap is too small, GW_ENOTFOUND / GW_EINVAL when this codec or
     * product cannot carry the command (err says why). NULL: the codec carries no commands. */
    int (*encode_command)(const gw_product *p, const struct gw_command *c, const char *device_id,
                          const char *secret, uint8_t *out, size_t cap, size_t *n, gw_error *err);
    /* Byte streams: a handshake before any frame that is not a framed message (Teltonika's IMEI
     * preamble). Its length (> 0) with out a GW_MSG_LOGIN naming the device (its answer:
     * encode_ack), 0 when more bytes are needed, GW_EINVAL (rej) for bytes that never become one,
     * GW_ENOTFOUND when the product declares no handshake. NULL: none. */
    int (*handshake)(const gw_product *p, const uint8_t *buf, size_t len, gw_thing_msg *out,
                     gw_reject *rej);
} gw_codec_ops;

#endif

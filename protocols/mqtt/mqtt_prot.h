/* mqtt_prot.h: MQTT 5, 3.1.1 and 3.1 ("MQIsdp") packet parser and encoder, one parser for all three
 * (MQTT 5 adds properties, read by one function with a per-packet allowed set, and reason codes).
 * Bounded, allocation-free, zero-copy (decoded strings point into the packet), no logging:
 * functions return 0 or a GW_E* code and, where a counter needs one, a static reason string. */
#ifndef GW_MQTT_PROT_H
#define GW_MQTT_PROT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum gw_mqtt_type {
    GW_MQTT_CONNECT = 1,
    GW_MQTT_CONNACK,
    GW_MQTT_PUBLISH,
    GW_MQTT_PUBACK,
    GW_MQTT_PUBREC,
    GW_MQTT_PUBREL,
    GW_MQTT_PUBCOMP,
    GW_MQTT_SUBSCRIBE,
    GW_MQTT_SUBACK,
    GW_MQTT_UNSUBSCRIBE,
    GW_MQTT_UNSUBACK,
    GW_MQTT_PINGREQ,
    GW_MQTT_PINGRESP,
    GW_MQTT_DISCONNECT
};

/* Largest value a remaining length can hold (4 bytes of 7 bits). */
#define GW_MQTT_MAX_REMAINING 268435455u

/* Points into the packet; not NUL-terminated. */
typedef struct gw_mqtt_str {
    const char *p;
    uint16_t len;
} gw_mqtt_str;

typedef struct gw_mqtt_fixed {
    uint8_t type, flags;
    uint32_t remaining;
    uint8_t header_len;
} gw_mqtt_fixed;

/* 0: header complete (packet = header_len + remaining bytes); GW_EINCOMPLETE: need more bytes (a
 * partial remaining-length with < 4 bytes seen); GW_EPROTO: type 0 or 15, remaining length longer
 * than 4 bytes, or fixed-header flags invalid for the type (PUBREL/SUBSCRIBE/UNSUBSCRIBE need 0x2,
 * PUBLISH any except QoS 3, all others 0); GW_ETOOBIG: header_len + remaining > max_packet. Decides
 * as early as possible: the first byte is judged on its own, GW_ETOOBIG as soon as the length is
 * known, before the body arrives. Never reads more than 5 bytes. Non-minimal length encodings (0x80
 * 0x00) are accepted, as 3.1.1 does not forbid them. *out is always written: type and flags once
 * byte 0 is seen (also on GW_EPROTO), remaining and header_len once the length is complete (also on
 * GW_ETOOBIG), 0 until then. */
int gw_mqtt_fixed_header(const uint8_t *buf, size_t len, uint32_t max_packet, gw_mqtt_fixed *out);
/* The same, and on GW_EPROTO / GW_ETOOBIG sets *why (may be NULL) to the counter's error kind:
 * "malformed_packet" (type 0/15 or bad flags), "bad_remaining_length" (over 4 bytes) or
 * "oversized_packet". */
int gw_mqtt_fixed_header_why(const uint8_t *buf, size_t len, uint32_t max_packet,
                             gw_mqtt_fixed *out, const char **why);
/* Same verdicts, but GW_EINCOMPLETE until the whole packet (header_len + remaining) is in buf; *out
 * is filled as soon as the header is complete, so the caller can size its buffer while it waits. */
int gw_mqtt_frame(const uint8_t *buf, size_t len, uint32_t max_packet, gw_mqtt_fixed *out);

/* ---- MQTT 5 properties ---- */

enum gw_mqtt_prop_id {
    GW_MQTT_P_PAYLOAD_FORMAT = 0x01,
    GW_MQTT_P_MESSAGE_EXPIRY = 0x02,
    GW_MQTT_P_CONTENT_TYPE = 0x03,
    GW_MQTT_P_RESPONSE_TOPIC = 0x08,
    GW_MQTT_P_CORRELATION_DATA = 0x09,
    GW_MQTT_P_SUBSCRIPTION_ID = 0x0B,
    GW_MQTT_P_SESSION_EXPIRY = 0x11,
    GW_MQTT_P_ASSIGNED_CLIENT_ID = 0x12,
    GW_MQTT_P_SERVER_KEEP_ALIVE = 0x13,
    GW_MQTT_P_AUTH_METHOD = 0x15,
    GW_MQTT_P_AUTH_DATA = 0x16,
    GW_MQTT_P_REQUEST_PROBLEM_INFO = 0x17,
    GW_MQTT_P_WILL_DELAY = 0x18,
    GW_MQTT_P_REQUEST_RESPONSE_INFO = 0x19,
    GW_MQTT_P_RESPONSE_INFO = 0x1A,
    GW_MQTT_P_SERVER_REFERENCE = 0x1C,
    GW_MQTT_P_REASON_STRING = 0x1F,
    GW_MQTT_P_RECEIVE_MAX = 0x21,
    GW_MQTT_P_TOPIC_ALIAS_MAX = 0x22,
    GW_MQTT_P_TOPIC_ALIAS = 0x23,
    GW_MQTT_P_MAX_QOS = 0x24,
    GW_MQTT_P_RETAIN_AVAILABLE = 0x25,
    GW_MQTT_P_USER_PROPERTY = 0x26,
    GW_MQTT_P_MAX_PACKET_SIZE = 0x27,
    GW_MQTT_P_WILDCARD_SUB_AVAILABLE = 0x28,
    GW_MQTT_P_SUB_ID_AVAILABLE = 0x29,
    GW_MQTT_P_SHARED_SUB_AVAILABLE = 0x2A,
};

/* Which packet a property block belongs to (the allowed set). */
typedef enum gw_mqtt_pctx {
    GW_MQTT_PC_CONNECT,
    GW_MQTT_PC_WILL,
    GW_MQTT_PC_CONNACK,
    GW_MQTT_PC_PUBLISH,
    GW_MQTT_PC_ACK, /* PUBACK PUBREC PUBREL PUBCOMP */
    GW_MQTT_PC_SUBSCRIBE,
    GW_MQTT_PC_SUBACK,
    GW_MQTT_PC_UNSUBSCRIBE,
    GW_MQTT_PC_UNSUBACK,
    GW_MQTT_PC_DISCONNECT,
    GW_MQTT_PC_AUTH,
} gw_mqtt_pctx;

/* MQTT 5 reason codes the gateway sends. */
enum {
    GW_MQTT_RC_SUCCESS = 0x00,
    GW_MQTT_RC_DISCONNECT_WITH_WILL = 0x04,
    GW_MQTT_RC_NO_SUBSCRIPTION = 0x11,
    GW_MQTT_RC_UNSPECIFIED = 0x80,
    GW_MQTT_RC_MALFORMED = 0x81,
    GW_MQTT_RC_PROTOCOL_ERROR = 0x82,
    GW_MQTT_RC_IMPL_ERROR = 0x83,
    GW_MQTT_RC_BAD_VERSION = 0x84,
    GW_MQTT_RC_BAD_CLIENT_ID = 0x85,
    GW_MQTT_RC_BAD_CREDENTIALS = 0x86,
    GW_MQTT_RC_NOT_AUTHORIZED = 0x87,
    GW_MQTT_RC_SERVER_BUSY = 0x89,
    GW_MQTT_RC_SHUTTING_DOWN = 0x8B,
    GW_MQTT_RC_BAD_AUTH_METHOD = 0x8C,
    GW_MQTT_RC_KEEPALIVE_TIMEOUT = 0x8D,
    GW_MQTT_RC_SESSION_TAKEN_OVER = 0x8E,
    GW_MQTT_RC_TOPIC_NAME_INVALID = 0x90,
    GW_MQTT_RC_RECEIVE_MAX_EXCEEDED = 0x93,
    GW_MQTT_RC_TOPIC_ALIAS_INVALID = 0x94,
    GW_MQTT_RC_PACKET_TOO_LARGE = 0x95,
    GW_MQTT_RC_QUOTA_EXCEEDED = 0x97,
    GW_MQTT_RC_ADMINISTRATIVE_ACTION = 0x98,
    GW_MQTT_RC_PAYLOAD_FORMAT_INVALID = 0x99,
    GW_MQTT_RC_SUB_ID_NOT_SUPPORTED = 0xA1,
};

/* A decoded property block. have: bit id for each property present. Strings and binary data
 * point into the packet. */
typedef struct gw_mqtt_props {
    uint64_t have;
    uint8_t payload_format, request_problem_info, request_response_info, max_qos;
    uint16_t receive_max, topic_alias_max, topic_alias, server_keep_alive, n_user;
    uint32_t message_expiry, session_expiry, will_delay, max_packet_size, subscription_id;
    gw_mqtt_str content_type, response_topic, correlation_data, reason_string, auth_method,
        auth_data, assigned_client_id, response_info, server_reference;
} gw_mqtt_props;

#define GW_MQTT_HAS(pr, id) ((((pr)->have) >> (id)) & 1u)

/* p: the property length (a variable byte integer) and the properties, avail bytes readable.
 * Fills *out (zeroed first) and *used (the block's size incl. its length). GW_EPROTO with *rc (the
 * MQTT 5 reason code) and *why (the counter label): 0x81 "bad_property" for an unknown id, an id
 * not allowed in ctx, a bad or non-minimal length or a truncated value; 0x81 "invalid_utf8" for a
 * string that is not MQTT UTF-8; 0x82 "bad_property" for a duplicate (user properties may repeat)
 * or a value out of range (payload format / request flags over 1, receive maximum or maximum packet
 * size 0, subscription identifier 0, a wildcard in the response topic). */
int gw_mqtt_props_decode(const uint8_t *p, size_t avail, gw_mqtt_pctx ctx, gw_mqtt_props *out,
                         size_t *used, uint8_t *rc, const char **why);

/* Property writer (server side): a fixed buffer; what does not fit is dropped and 'over' set. */
#define GW_MQTT_PBUF 512
typedef struct gw_mqtt_pbuf {
    uint8_t b[GW_MQTT_PBUF];
    size_t n;
    bool over;
} gw_mqtt_pbuf;
void gw_mqtt_pb_u8(gw_mqtt_pbuf *pb, uint8_t id, uint8_t v);
void gw_mqtt_pb_u16(gw_mqtt_pbuf *pb, uint8_t id, uint16_t v);
void gw_mqtt_pb_u32(gw_mqtt_pbuf *pb, uint8_t id, uint32_t v);
/* A string or binary property (len truncated to what fits, at a UTF-8 boundary for strings). */
void gw_mqtt_pb_str(gw_mqtt_pbuf *pb, uint8_t id, const void *p, size_t len);

typedef struct gw_mqtt_connect {
    uint8_t protocol_level; /* 5 = MQTT 5, 4 = 3.1.1 ("MQTT"), 3 = 3.1 ("MQIsdp") */
    uint8_t v5_rc;          /* MQTT 5 on error: the CONNACK reason code (0x81, 0x82, 0x85) */
    bool clean_session, has_will, will_retain, has_username, has_password;
    uint8_t will_qos;
    uint16_t keepalive;
    gw_mqtt_str client_id, will_topic, username;
    const uint8_t *will_payload;
    uint16_t will_payload_len;
    const uint8_t *password;
    uint16_t password_len;
    gw_mqtt_props props, will_props; /* MQTT 5 */
} gw_mqtt_connect;

/* body = the bytes after the fixed header (len = remaining). 0 on success. On error returns
 * GW_EPROTO and sets *connack_rc: 1 when the protocol name/level is unsupported (the server answers
 * CONNACK 1 then closes), 2 when the client id is invalid (empty with clean_session 0; empty at all
 * in 3.1; ids over 23 bytes are allowed), or 0xFF for a malformed packet (close without CONNACK).
 * Malformed: reserved flag bit set, will qos/retain without will, will qos 3, password without
 * username (3.1.1 only; 3.1 allows it), strings not valid MQTT UTF-8, an empty or wildcard will
 * topic, lengths past the body, trailing bytes. Rc 2 is only reported for an otherwise well-formed
 * packet, whose fields are then filled in *out (the caller may log the client id). */
int gw_mqtt_decode_connect(const uint8_t *body, uint32_t len, gw_mqtt_connect *out,
                           uint8_t *connack_rc);
/* Same, and on error *why = "invalid_utf8" or "malformed_packet" (the counter label). */
int gw_mqtt_decode_connect_why(const uint8_t *body, uint32_t len, gw_mqtt_connect *out,
                               uint8_t *connack_rc, const char **why);

typedef struct gw_mqtt_publish {
    gw_mqtt_str topic;
    uint16_t packet_id;
    uint8_t qos;
    bool retain, dup;
    const uint8_t *payload;
    uint32_t payload_len;
} gw_mqtt_publish;

/* flags = the fixed header's low nibble. GW_EPROTO for: qos 3, qos 0 with dup, empty topic, topic
 * with
 * '+' or '#' or U+0000 or invalid UTF-8, qos > 0 with packet id 0, truncated. On GW_EPROTO also
 * sets *why (may be NULL) to a static reason string: "invalid_utf8" (incl. U+0000),
 * "wildcard_topic", or "malformed_packet" (everything else, incl. the empty topic). The payload may
 * be empty. */
int gw_mqtt_decode_publish(const uint8_t *body, uint32_t len, uint8_t flags, gw_mqtt_publish *out,
                           const char **why);
/* The same for protocol level 5 (props != NULL: MQTT 5): the properties follow the packet id and
 * the topic may be empty (the caller resolves a topic alias). On error *rc is the reason code
 * (0x81 malformed, 0x82 protocol error). */
int gw_mqtt_decode_publish5(const uint8_t *body, uint32_t len, uint8_t flags, gw_mqtt_publish *out,
                            gw_mqtt_props *props, const char **why, uint8_t *rc);

/* SUBSCRIBE / UNSUBSCRIBE: validates the whole packet (packet id != 0, at least one filter, each
 * filter non-empty valid MQTT UTF-8 and a valid filter per gw_mqtt_filter_valid, requested qos <= 2
 * with the reserved bits 0, no trailing bytes) and then lets the caller iterate without allocating.
 * *why as for PUBLISH: "invalid_utf8" or "malformed_packet". */
typedef struct gw_mqtt_sub_iter {
    const uint8_t *p, *end;
    bool unsub;
} gw_mqtt_sub_iter;
int gw_mqtt_decode_subscribe(const uint8_t *body, uint32_t len, uint16_t *packet_id,
                             gw_mqtt_sub_iter *it, const char **why);
int gw_mqtt_decode_unsubscribe(const uint8_t *body, uint32_t len, uint16_t *packet_id,
                               gw_mqtt_sub_iter *it, const char **why);
/* MQTT 5: the properties after the packet id; subscription options with the reserved bits 0 and
 * retain handling < 3. *rc as for PUBLISH. */
int gw_mqtt_decode_subscribe5(const uint8_t *body, uint32_t len, uint16_t *packet_id,
                              gw_mqtt_sub_iter *it, gw_mqtt_props *props, const char **why,
                              uint8_t *rc);
int gw_mqtt_decode_unsubscribe5(const uint8_t *body, uint32_t len, uint16_t *packet_id,
                                gw_mqtt_sub_iter *it, gw_mqtt_props *props, const char **why,
                                uint8_t *rc);
/* 1 and the next filter (qos = 0 for unsubscribe; the QoS bits of MQTT 5 options), or 0 at the
 * end. */
int gw_mqtt_sub_next(gw_mqtt_sub_iter *it, gw_mqtt_str *filter, uint8_t *qos);
/* The number of filters the iterator has left (it is not advanced). A SUBSCRIBE of len bytes holds
 * at most (len - 2) / 4 of them. */
size_t gw_mqtt_sub_count(const gw_mqtt_sub_iter *it);

/* PUBACK/PUBREC/PUBREL/PUBCOMP (and UNSUBACK): remaining must be exactly 2 and id != 0. */
int gw_mqtt_decode_ack(const uint8_t *body, uint32_t len, uint16_t *packet_id);
/* MQTT 5 PUBACK/PUBREC/PUBREL/PUBCOMP: id, then an optional reason code (0 when absent) and
 * properties. GW_EPROTO for id 0, a short body, bad properties. */
int gw_mqtt_decode_ack5(const uint8_t *body, uint32_t len, uint16_t *packet_id, uint8_t *reason,
                        gw_mqtt_props *props);
/* MQTT 5 DISCONNECT: optional reason code (0 when absent) and properties. */
int gw_mqtt_decode_disconnect5(const uint8_t *body, uint32_t len, uint8_t *reason,
                               gw_mqtt_props *props, const char **why);
/* PINGREQ/PINGRESP/DISCONNECT: 0 when the body is empty, else GW_EPROTO. */
int gw_mqtt_decode_empty(const uint8_t *body, uint32_t len);
/* Client side (bench, tests): CONNACK is 2 bytes, flags 0 or 1 (session present), rc 0..5. */
int gw_mqtt_decode_connack(const uint8_t *body, uint32_t len, bool *session_present, uint8_t *rc);
/* Client side: SUBACK = packet id + one return code (0, 1, 2 or 0x80) per filter; *rcs points into
 * the body, *n is at least 1. */
int gw_mqtt_decode_suback(const uint8_t *body, uint32_t len, uint16_t *packet_id,
                          const uint8_t **rcs, size_t *n);

/* Well-formed UTF-8 (no overlongs, nothing above U+10FFFF), no U+0000, no U+D800..U+DFFF. */
bool gw_mqtt_utf8_valid(const char *p, size_t len);
/* Non-empty; '#' only as the last level alone, '+' alone in its level. Does not check UTF-8. */
bool gw_mqtt_filter_valid(const char *p, size_t len);
/* MQTT matching rules incl. topics starting with '$' not matched by a leading wildcard; filter and
 * topic both length-bounded (not NUL-terminated). "a/#" matches "a". Safe on any input; the result
 * for an invalid filter is unspecified. */
bool gw_mqtt_topic_match(const char *filter, size_t flen, const char *topic, size_t tlen);

/* Encoders: write into out, return the number of bytes written (or, for the variable-size ones, the
 * size needed; nothing is written when cap is too small). 0 means the arguments cannot be encoded
 * (bad type or qos, qos > 0 with packet id 0, a string over 65535 bytes, a packet over
 * GW_MQTT_MAX_REMAINING). */
size_t gw_mqtt_encode_connack(uint8_t out[4], bool session_present, uint8_t rc);
/* PUBACK PUBREC PUBREL(flags 2) PUBCOMP UNSUBACK; 0 for any other type. */
size_t gw_mqtt_encode_ack(uint8_t out[4], uint8_t type, uint16_t packet_id);
size_t gw_mqtt_encode_suback(uint8_t *out, size_t cap, uint16_t packet_id, const uint8_t *rcs,
                             size_t n);
/* SUBACK for any number of filters without a return-code array: gw_mqtt_suback_size(n) is the
 * whole packet (0 when n is 0 or over GW_MQTT_MAX_REMAINING - 2); gw_mqtt_encode_suback_head
 * writes the fixed header and packet id (at most 7 bytes) and returns their length h, the caller
 * then writes the n return codes at out + h (rcs may also already sit there: encode_suback moves
 * them with memmove). */
size_t gw_mqtt_suback_size(size_t n);
size_t gw_mqtt_encode_suback_head(uint8_t out[7], uint16_t packet_id, size_t n);
size_t gw_mqtt_encode_pingresp(uint8_t out[2]);
size_t gw_mqtt_publish_size(size_t topic_len, size_t payload_len, uint8_t qos);
size_t gw_mqtt_encode_publish(uint8_t *out, size_t cap, const char *topic, size_t topic_len,
                              const uint8_t *payload, size_t payload_len, uint8_t qos,
                              uint16_t packet_id, bool retain);
/* For the bench and tests (client side): a 3.1.1 CONNECT without will; username and password are
 * NUL-terminated or NULL (a password needs a username). */
size_t gw_mqtt_encode_connect(uint8_t *out, size_t cap, const char *client_id, const char *username,
                              const char *password, uint16_t keepalive, bool clean);
/* Client side: SUBSCRIBE with one filter; PINGREQ and DISCONNECT (2 bytes each). */
size_t gw_mqtt_encode_subscribe(uint8_t *out, size_t cap, uint16_t packet_id, const char *filter,
                                size_t filter_len, uint8_t qos);
size_t gw_mqtt_encode_pingreq(uint8_t out[2]);
size_t gw_mqtt_encode_disconnect(uint8_t out[2]);

/* MQTT 5 server packets with properties (props/plen: property bytes written by gw_mqtt_pb_*, may
 * be NULL/0). Each returns the size, writing nothing when cap is too small (0: cannot encode). */
size_t gw_mqtt_encode_connack5(uint8_t *out, size_t cap, bool session_present, uint8_t rc,
                               const uint8_t *props, size_t plen);
/* PUBACK PUBREC PUBREL PUBCOMP with a reason code; the short 4-byte form when rc is 0 without
 * properties. */
size_t gw_mqtt_encode_ack5(uint8_t *out, size_t cap, uint8_t type, uint16_t packet_id, uint8_t rc,
                           const uint8_t *props, size_t plen);
size_t gw_mqtt_encode_disconnect5(uint8_t *out, size_t cap, uint8_t rc, const uint8_t *props,
                                  size_t plen);
/* SUBACK (v5: with an empty property block) / UNSUBACK v5 with one reason code per filter: as
 * gw_mqtt_suback_size / gw_mqtt_encode_suback_head (head at most 8 bytes). */
size_t gw_mqtt_suback_size_v(uint8_t type, size_t n, bool v5);
size_t gw_mqtt_encode_suback_head_v(uint8_t out[8], uint8_t type, uint16_t packet_id, size_t n,
                                    bool v5);
/* PUBLISH with an MQTT 5 property block (props may be NULL with plen 0: an empty block). */
size_t gw_mqtt_publish5_size(size_t topic_len, size_t payload_len, uint8_t qos, size_t plen);
size_t gw_mqtt_encode_publish5(uint8_t *out, size_t cap, const char *topic, size_t topic_len,
                               const uint8_t *payload, size_t payload_len, uint8_t qos,
                               uint16_t packet_id, bool retain, const uint8_t *props, size_t plen);

/* "CONNECT", "PUBLISH", ...; "RESERVED" for 0 and 15 and anything else. Never NULL. */
const char *gw_mqtt_type_name(uint8_t type);

#endif

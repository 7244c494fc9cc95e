/* coap_msg.h: the CoAP (RFC 7252) message layer of the CoAP adapter: a bounded, allocation-free
 * parser and encoder, the request classifier (resource path, query, Observe, Block1), the codec ->
 * Content-Format table and the Block1 reassembly bounds. Pure functions: no I/O, no logging. */
#ifndef GW_COAP_MSG_H
#define GW_COAP_MSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum { GW_COAP_CON = 0, GW_COAP_NON = 1, GW_COAP_ACK = 2, GW_COAP_RST = 3 };

#define GW_COAP_CODE(c, d) ((uint8_t)(((c) << 5) | (d)))
enum {
    GW_COAP_EMPTY = 0,
    GW_COAP_GET = 1,
    GW_COAP_POST = 2,
    GW_COAP_PUT = 3,
    GW_COAP_CHANGED = GW_COAP_CODE(2, 4),
    GW_COAP_CONTENT = GW_COAP_CODE(2, 5),
    GW_COAP_CONTINUE = GW_COAP_CODE(2, 31),
    GW_COAP_BAD_REQUEST = GW_COAP_CODE(4, 0),
    GW_COAP_UNAUTHORIZED = GW_COAP_CODE(4, 1),
    GW_COAP_BAD_OPTION = GW_COAP_CODE(4, 2),
    GW_COAP_NOT_FOUND = GW_COAP_CODE(4, 4),
    GW_COAP_NOT_ALLOWED = GW_COAP_CODE(4, 5),
    GW_COAP_INCOMPLETE = GW_COAP_CODE(4, 8),
    GW_COAP_TOO_LARGE = GW_COAP_CODE(4, 13),
    GW_COAP_UNSUPPORTED_CF = GW_COAP_CODE(4, 15),
    GW_COAP_INTERNAL = GW_COAP_CODE(5, 0),
    GW_COAP_UNAVAILABLE = GW_COAP_CODE(5, 3),
};

enum {
    GW_COAP_OPT_OBSERVE = 6,
    GW_COAP_OPT_URI_PATH = 11,
    GW_COAP_OPT_CONTENT_FORMAT = 12,
    GW_COAP_OPT_MAX_AGE = 14,
    GW_COAP_OPT_URI_QUERY = 15,
    GW_COAP_OPT_BLOCK2 = 23,
    GW_COAP_OPT_BLOCK1 = 27,
    GW_COAP_OPT_SIZE2 = 28,
    GW_COAP_OPT_SIZE1 = 60,
};

enum { GW_COAP_CF_JSON = 50, GW_COAP_CF_OCTETS = 42 };

#define GW_COAP_MAX_OPTS 40

typedef struct gw_coap_opt {
    uint16_t num;
    uint16_t len;
    const uint8_t *val;
} gw_coap_opt;

/* A parsed message; option values and the payload point into the datagram. */
typedef struct gw_coap_msg {
    uint8_t type, code, tkl;
    uint16_t mid;
    uint8_t token[8];
    gw_coap_opt opts[GW_COAP_MAX_OPTS];
    size_t n_opts;
    const uint8_t *payload;
    size_t payload_len;
} gw_coap_msg;

/* Parses a datagram. 0; GW_EINCOMPLETE when fewer than 4 bytes or not version 1 (silently ignored,
 * RFC 7252 3); GW_EPROTO for a message format error (token length 9..15, a reserved option
 * nibble, an option past the end, a payload marker without payload, an empty message with
 * bytes after the header: a CON is answered with RST); GW_ETOOBIG for more than
 * GW_COAP_MAX_OPTS options (the header is still filled). */
int gw_coap_parse(const uint8_t *buf, size_t len, gw_coap_msg *m);

/* Encoder into a caller's buffer; options must be added in ascending number order. Any overflow
 * or misuse sets err (GW_ETOOBIG / GW_EINVAL) and later calls do nothing. */
typedef struct gw_coap_out {
    uint8_t *buf;
    size_t cap, len;
    uint16_t last;
    int err;
} gw_coap_out;

void gw_coap_out_begin(gw_coap_out *o, uint8_t *buf, size_t cap, uint8_t type, uint8_t code,
                       uint16_t mid, const uint8_t *token, uint8_t tkl);
void gw_coap_out_opt(gw_coap_out *o, uint16_t num, const void *val, size_t len);
/* An unsigned option in its shortest form (0 is zero bytes). */
void gw_coap_out_opt_uint(gw_coap_out *o, uint16_t num, uint32_t v);
void gw_coap_out_payload(gw_coap_out *o, const void *p, size_t n);

/* The value of an unsigned option (up to 4 bytes). */
uint32_t gw_coap_opt_uint(const gw_coap_opt *opt);
/* "2.04" for a code. */
void gw_coap_code_str(uint8_t code, char buf[8]);

/* ---- requests ---- */

typedef enum gw_coap_res {
    GW_COAP_RES_NONE = 0,
    GW_COAP_RES_REPORT,       /* /{p}/{d}/properties/report */
    GW_COAP_RES_EVENT,        /* /{p}/{d}/event/{eventId} */
    GW_COAP_RES_INVOKE_REPLY, /* /{p}/{d}/function/invoke/reply */
    GW_COAP_RES_WRITE_REPLY,  /* /{p}/{d}/properties/write/reply */
    GW_COAP_RES_INVOKE,       /* /{p}/{d}/function/invoke (GET, Observe) */
} gw_coap_res;

/* What a request asks for, classified without any configuration. */
typedef struct gw_coap_req {
    gw_coap_res res;
    char product[64], device[64], event[64];
    const uint8_t *token; /* ?token=... (not NUL-terminated) */
    size_t token_len;
    bool has_token;
    bool has_wait;
    uint32_t wait_s;    /* ?wait=N */
    int content_format; /* -1: no Content-Format option */
    int observe;        /* -1: no Observe option, else its value */
    bool has_block1;
    uint32_t b1_num; /* Block1: block number */
    bool b1_more;    /* Block1: M */
    unsigned b1_szx; /* Block1: SZX (size 2^(szx+4)) */
    bool has_size1;
    uint32_t size1;
    uint16_t bad_option; /* the unknown critical option, for the 4.02 log */
    uint8_t refuse;      /* the response code refusing the request (gw_coap_request_parse), or 0 */
} gw_coap_req;

/* Classifies a parsed request (code GET/POST/PUT). 0, or GW_EPROTO with the response code
 * refusing it in r->refuse:
 * 4.02 an unrecognised critical option or a repeated non-repeatable one; 4.04 a path that is no
 * device resource (or a segment over 63 bytes); 4.05 a method the resource does not take; 4.00 a
 * bad query (?wait not a number) or a Block1 with SZX 7. */
int gw_coap_request_parse(const gw_coap_msg *m, gw_coap_req *r);

/* Content-Format table: whether a codec accepts a format; cf -1 (no option) takes the default.
 * json -> 50 (application/json), binary -> 42, protobuf -> 42; a codec not in the table takes
 * 42. */
bool gw_coap_codec_accepts(const char *codec, int cf);
/* The Content-Format the codec's payloads (commands) are sent with. */
int gw_coap_codec_format(const char *codec);

/* Block1 bounds: a block (num, szx, payload n bytes, more) arriving with have bytes already
 * assembled for this transfer. 0: append at have (the new length is *total); GW_EINCOMPLETE: out of
 * order (4.08); GW_ETOOBIG: past max_bytes (4.13); GW_EPROTO: SZX 7, or a non-last block whose
 * payload is not exactly the block size (4.00). */
int gw_coap_block1_check(size_t have, uint32_t num, unsigned szx, size_t n, bool more,
                         size_t max_bytes, size_t *total);
/* The Block1 option value echoed in a 2.31/2.04 answer. */
uint32_t gw_coap_block1_value(uint32_t num, bool more, unsigned szx);

#endif

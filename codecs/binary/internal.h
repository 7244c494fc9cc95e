/* internal.h: the binary codec's compiled layout (what binary_layout.c builds from a product's
 * "frame" section) and the helpers its files share; nothing here is for use outside codecs/binary/.
 */
#ifndef GW_BINARY_INTERNAL_H
#define GW_BINARY_INTERNAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "codec_binary.h"
#include "../../config/diag.h"

typedef enum bin_type {
    BIN_U8,
    BIN_I8,
    BIN_U16,
    BIN_I16,
    BIN_U24, /* 3 bytes, unsigned (GT06 cell ids) */
    BIN_U32,
    BIN_I32,
    BIN_U64,
    BIN_I64,
    BIN_F32,
    BIN_F64,
    BIN_BCD,
    BIN_STRING,
    BIN_BYTES,
    BIN_DATETIME, /* 6 bytes YY MM DD hh mm ss (binary, UTC, 20YY): epoch milliseconds */
    BIN_GROUP,    /* a count and that many records, one report each (binary_group.c) */
    BIN_IDLIST,   /* id-value groups by value width, ids mapped to targets (binary_group.c) */
} bin_type;

typedef enum bin_target {
    BIN_TG_NONE,
    BIN_TG_PROPERTY,
    BIN_TG_PARAM,
    BIN_TG_OUTPUT,
    BIN_TG_INPUT,
    BIN_TG_ROLE,
} bin_target;

typedef enum bin_role {
    BIN_ROLE_NONE,
    BIN_ROLE_DEVICE_ID,
    BIN_ROLE_SECRET,
    BIN_ROLE_SEQ,
    BIN_ROLE_MSG_ID,
    BIN_ROLE_TIMESTAMP,
    BIN_ROLE_RESULT,
    BIN_ROLE_REQUEST_CODE,
    BIN_ROLE_AUTH_CODE,    /* acks: the device's auth code (frame.auth_code) */
    BIN_ROLE_RECORD_COUNT, /* acks: the records of the request the gateway accepted */
} bin_role;

typedef enum bin_kind {
    BIN_K_LOGIN,
    BIN_K_REPORT,
    BIN_K_EVENT,
    BIN_K_FUNCTION_REPLY,
    BIN_K_WRITE_REPLY,
    BIN_K_HEARTBEAT,
    BIN_K_REGISTER, /* asks for the auth code ("auth_code"); TCP only */
    BIN_K_INVOKE,   /* downstream from here on */
    BIN_K_WRITE,
    BIN_K_ACK,
} bin_kind;

#define BIN_K_IS_UP(k) ((k) < BIN_K_INVOKE)

/* Where a field sits: a fixed offset from the start of the body, from its end, or right after
 * the previous field (after a variable-length one: known only at run time). */
typedef enum bin_pos { BIN_POS_START, BIN_POS_END, BIN_POS_AFTER } bin_pos;

typedef struct bin_field {
    char *name;  /* "" if none; for details */
    char *path;  /* "frame.messages[1].fields[2]", for encode errors */
    int32_t off; /* BIN_POS_START: >= 0; BIN_POS_END: < 0 */
    uint8_t pos;
    uint8_t type;
    uint8_t little;    /* byte order of the number / the length prefix */
    uint8_t prefix;    /* 0, or 1 / 2: length-prefixed string or bytes */
    uint32_t size;     /* bytes on the wire (fixed-size fields; the prefix for prefixed ones) */
    uint8_t bit, bits; /* bits == 0: the whole number */
    bool has_xform, int_xform;
    double scale, add;
    int64_t iscale, iadd;
    bool has_value;
    uint64_t value; /* a constant, as raw bits of the type */
    uint8_t target; /* bin_target */
    uint8_t role;   /* bin_role, target == BIN_TG_ROLE */
    char *target_id;
    uint16_t target_len;       /* strlen(target_id) */
    int16_t prop;              /* a property target: its index in the product's (< 256), else -1 */
    const gw_value_spec *spec; /* the thing-model spec of the target, NULL for roles */
    uint8_t digits;            /* bcd: keep the last digits (0: all); the dropped ones must be 0 */
    /* "sign_from": the value is negated when bit sign_bit (-1: the whole raw value) of field
     * sign_src (a fixed-offset unsigned field of the header or the message) equals sign_neg */
    const struct bin_field *sign_src;
    int8_t sign_bit;
    uint64_t sign_neg;
    /* "size_from" (string / bytes): the field takes size_src's value + size_add bytes (size_src:
     * a fixed-offset unsigned field without target, filled in on encode); size is 0 */
    bool size_var;
    bool size_rest; /* "size": "rest": the bytes up to those counted from the end (size_var) */
    const struct bin_field *size_src;
    int32_t size_add;
    struct bin_group *grp; /* BIN_GROUP, BIN_IDLIST: what they hold (prefix = the count width) */
} bin_field;

/* A repeated group (records: count, that many records, optionally the count again) or an id-value
 * list (items: [total], then per value width a count and that many (id, value) pairs). */
typedef struct bin_group {
    bin_field *rec; /* group: one record's fields, offsets from the record's start */
    size_t n_rec;
    bool count_after;  /* group: the count is repeated after the records */
    uint8_t id_width;  /* idlist: bytes of an id (1, 2) */
    bool total;        /* idlist: a total count of items comes first */
    uint8_t widths[8]; /* idlist: the value width of each group in order; 0: variable (length) */
    uint8_t n_widths;
    uint32_t *ids; /* idlist: the items' ids, ascending, and their fields */
    bin_field *items;
    size_t n_items;
} bin_group;

typedef struct bin_msg {
    uint8_t kind; /* bin_kind */
    bool has_match;
    uint32_t match;
    int32_t length; /* exact body length, -1: any */
    char *ref;      /* event or function id, NULL otherwise */
    bin_field *fields;
    size_t n_fields;
    int ack;     /* index into bin_layout.acks, -1: none */
    int refusal; /* the ack when the message is refused ("refusal"), -1: ack with result 1 */
    bool bare;   /* acks: only the ack's fields, no header, framing or check (Teltonika) */
    /* the message (with the header) has a field of this role */
    bool role_seq, role_msg_id, role_secret, role_result;
    uint32_t tail; /* bytes at the end taken by fields counted from the end and the check */
    struct bin_ack_tpl *tpl; /* acks: the precomputed ack (binary_ack.c), NULL: none */
} bin_msg;

typedef enum bin_framing {
    BIN_FR_FIXED,
    BIN_FR_LENGTH,
    BIN_FR_DELIMITER,
    BIN_FR_DATAGRAM
} bin_framing;

typedef enum bin_algo {
    BIN_CK_NONE,
    BIN_CK_CRC, /* bin_layout.crc */
    BIN_CK_XOR,
    BIN_CK_SUM8,
} bin_algo;

/* A CRC as the CRC RevEng catalogue describes it; check is the CRC of ASCII "123456789". */
typedef struct gw__crc_params {
    const char *name;
    uint8_t width; /* 8, 16, 32 */
    uint32_t poly, init;
    bool refin, refout;
    uint32_t xorout, check;
} gw__crc_params;

/* A CRC ready to run: its parameters and the table of one byte step. */
typedef struct gw__crc {
    uint8_t width;
    bool refin, refout;
    uint32_t init, xorout;
    uint32_t start; /* the register's first value: init, bit-reversed when refin */
    uint32_t table[256];
} gw__crc;

typedef struct bin_layout {
    uint32_t max_frame;
    uint8_t framing;
    uint32_t fixed_len;
    /* length framing */
    uint32_t len_off;
    uint8_t len_width, len_little;
    bool len_covers_frame;
    int32_t len_adjust;
    uint32_t min_total; /* the shortest frame a length field may describe */
    /* delimiter framing */
    uint8_t start[8], end[8];
    uint8_t start_len, end_len;
    bool has_escape;
    uint8_t esc_byte;
    uint8_t esc_to[256]; /* byte -> code after esc_byte; esc_need[b] says whether b is escaped */
    bool esc_need[256];
    int16_t esc_from[256]; /* code after esc_byte -> byte, -1: invalid */
    /* fields */
    bin_field *header;
    size_t n_header;
    int disc; /* index into header, -1: none */
    bool header_secret;
    uint32_t header_tail; /* like bin_msg.tail, for the header alone */
    /* check */
    uint8_t algo, ck_width, ck_little;
    char algo_name[24]; /* for details: "crc16-x25", "crc" (custom parameters), "xor", "sum8" */
    gw__crc crc;        /* algo == BIN_CK_CRC */
    int32_t ck_from, ck_to, ck_at;
    /* auth: HMAC-SHA256 keyed with the device's secret over [mac_from, mac_to), truncated to
     * mac_size bytes at mac_at; computed before the check, which covers it */
    bool has_auth;
    uint8_t mac_size;
    int32_t mac_from, mac_to, mac_at;
    /* auth_code: a login's code is the hex of HMAC-SHA256(secret, "auth_code:" + device id)
     * truncated to code_size bytes; a register message's ack hands it out */
    bool has_auth_code;
    uint8_t code_size;
    /* messages: upstream and downstream in declaration order; acks apart */
    bin_msg *msgs;
    size_t n_msgs;
    bin_msg *acks;
    size_t n_acks;
    /* handshake (Teltonika's IMEI preamble): one field naming the device before any frame,
     * answered with hs_ok or hs_no */
    bin_field *hs;
    size_t n_hs;
    uint8_t hs_ok[8], hs_no[8];
    uint8_t hs_ok_len, hs_no_len;
} bin_layout;

/* binary_layout.c */
int gw__binary_layout_load(const gw_product *p, bin_layout **out, gw_diag *diag, const char *file);
void gw__binary_layout_free(bin_layout *l);

/* What the layout loader's files share (binary_layout*.c): the load, the first error as
 * "frame.<path>: what", and JSON helpers that report into it. */
#define GW__BL_PATH_CAP 160
typedef struct gw__bl_ctx {
    const gw_product *p;
    bin_layout *l;
    gw_diag *diag;     /* every problem found, as "file: frame.<path>: what" */
    const char *file;  /* the product's file, for diag */
    bool little;       /* frame.endian */
    uint32_t body_cap; /* the longest body a frame may have */
} gw__bl_ctx;

/* Where a field list sits: the header (kind -1), or a message / ack of this bin_kind. */
typedef struct gw__bl_list {
    int kind;
    bool in_record; /* the fields of a group's record */
    const gw_event_spec *ev;
    const gw_function_spec *fn;
} gw__bl_list;

int gw__bl_fail(gw__bl_ctx *x, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
const char *gw__bl_pathf(char *buf, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
const char *gw__bl_sub(char *buf, const char *path, const char *key); /* "path.key" */
int gw__bl_lookup(const char *const *names, size_t n, const char *s);
int gw__bl_unknown_keys(gw__bl_ctx *x, const json_t *o, const char *const *allowed,
                        const char *path);
/* An integer in [lo, hi] (hex: or a "0x..." string); *present false when the key is absent. */
int gw__bl_get_int(gw__bl_ctx *x, const json_t *o, const char *key, const char *path, int64_t lo,
                   int64_t hi, bool hex, int64_t *out, bool *present);
int gw__bl_get_endian(gw__bl_ctx *x, const json_t *o, const char *path, bool dflt, bool *little);

/* binary_layout_field.c */
int gw__bl_parse_fields(gw__bl_ctx *x, const json_t *arr, const char *path, const gw__bl_list *c,
                        bin_field **out, size_t *n_out);
/* One field (no "sign_from": that needs its list). */
int gw__bl_parse_field(gw__bl_ctx *x, const json_t *o, const char *path, const gw__bl_list *c,
                       bin_field *f);
/* numbers: 1..8; 0 for bcd/string/bytes (inline: every numeric field's read asks) */
static inline size_t gw__binary_type_width(bin_type t)
{
    static const uint8_t w[] = {1, 1, 2, 2, 3, 4, 4, 8, 8, 4, 8, 0, 0, 0, 0, 0, 0};
    return (size_t)t < sizeof(w) ? w[t] : 0;
}
bool gw__binary_type_is_int(bin_type t);
bool gw__binary_type_is_unsigned(bin_type t);

/* binary_group.c */
/* A field of type "group" or "idlist" (f->type set): the rest of its declaration. */
int gw__bl_parse_group(gw__bl_ctx *x, const json_t *o, const char *path, const gw__bl_list *c,
                       bin_field *f);
void gw__bl_free_group(bin_group *g);
/* "frame.handshake" (o present). */
int gw__bl_parse_handshake(gw__bl_ctx *x, const json_t *o);
/* Decoding: a group's records into out->records, an idlist's items into out->values; from at
 * to *end, within limit. 0 or GW_EINVAL with rej filled. */
int gw__binary_read_group(const bin_field *f, const uint8_t *body, size_t at, size_t limit,
                          size_t *end, gw_thing_msg *out, gw_reject *rej);
int gw__binary_read_idlist(const bin_field *f, const uint8_t *body, size_t at, size_t limit,
                           size_t *end, gw_thing_msg *out, gw_reject *rej);
/* The handshake at the start of buf: its length (> 0) with out a login naming the device, 0 when
 * more bytes are needed, GW_EINVAL (rej) when it can never be one. */
int gw__binary_handshake(const bin_layout *l, const uint8_t *buf, size_t len, gw_thing_msg *out,
                         gw_reject *rej);

/* binary_layout_shape.c */
/* Places fields declared "after the previous one"; *prev carries across lists. */
int gw__bl_resolve(gw__bl_ctx *x, bin_field *fs, size_t n, const bin_field **prev);
/* The frame of message m (NULL: the header alone) is sound. */
int gw__bl_check_shape(gw__bl_ctx *x, const bin_msg *m);
/* In a body of len bytes, would the check value lie inside the bytes it checks? */
bool gw__bl_check_in_range(const bin_layout *l, int64_t len);

/* binary_check.c */
/* The named CRCs (all *n of them), one by name (NULL: none). */
const gw__crc_params *gw__crc_catalogue(size_t *n);
const gw__crc_params *gw__crc_find(const char *name);
/* Builds c from p: 0, 1 when the CRC of "123456789" is not p->check, -1 for a width other than
 * 8, 16, 32. */
int gw__crc_init(gw__crc *c, const gw__crc_params *p);
uint32_t gw__crc_compute(const gw__crc *c, const uint8_t *buf, size_t len);
/* The layout's check: its width in bytes, its value over buf. */
size_t gw__binary_check_width(const bin_layout *l);
uint32_t gw__binary_check(const bin_layout *l, const uint8_t *buf, size_t len);

/* binary_hmac.c: SHA-256 (FIPS 180-4), HMAC-SHA256 (RFC 2104), constant-time comparison. */
typedef struct gw__sha256_ctx {
    uint32_t h[8];
    uint64_t n; /* bytes hashed */
    uint8_t buf[64];
    size_t used;
} gw__sha256_ctx;
void gw__sha256_init(gw__sha256_ctx *s);
void gw__sha256_update(gw__sha256_ctx *s, const void *data, size_t len);
void gw__sha256_final(gw__sha256_ctx *s, uint8_t out[32]);
void gw__sha256(const void *data, size_t len, uint8_t out[32]);
void gw__hmac_sha256(const void *key, size_t key_len, const void *data, size_t len,
                     uint8_t out[32]);
bool gw__ct_equal(const uint8_t *a, const uint8_t *b, size_t n);
/* The MAC's place in a body of len bytes: NULL, or why it does not fit (also: the check must
 * cover the MAC, the MAC must not cover the check). */
const char *gw__binary_mac_place(const bin_layout *l, int64_t len, size_t *from, size_t *to,
                                 size_t *at);
/* HMAC-SHA256 with secret over the body's covered bytes into mac, its place in *at; -1 when the
 * MAC does not fit or secret is NULL. */
int gw__binary_mac(const bin_layout *l, const uint8_t *body, size_t len, const char *secret,
                   uint8_t mac[32], size_t *at);
/* The auth code of device_id under secret (frame.auth_code): 2 * code_size lowercase hex digits
 * and a NUL into out (cap >= 65). -1 without a secret or an auth_code. */
int gw__binary_auth_code(const bin_layout *l, const char *secret, const char *device_id, char *out,
                         size_t cap);

/* binary_frame.c: raw stream <-> body. */
int gw__binary_frame(const bin_layout *l, const uint8_t *buf, size_t len, size_t *skip);
/* The body of a whole frame: *body points into buf, or into scratch (cap >= len) when escapes
 * had to be undone. 0 or GW_EINVAL with rej filled. */
int gw__binary_body(const bin_layout *l, const uint8_t *buf, size_t len, uint8_t *scratch,
                    const uint8_t **body, size_t *body_len, gw_reject *rej);
/* Wraps a body for the wire (delimiters, escaping) into out. 0 or GW_ETOOBIG. */
int gw__binary_wrap(const bin_layout *l, const uint8_t *body, size_t body_len, uint8_t *out,
                    size_t cap, size_t *n);

/* binary_fields.c: one field's bytes <-> a value. */
/* (inline: every field's read; the common widths in one expression each) */
static inline uint64_t gw__binary_get_uint(const uint8_t *b, size_t width, bool little)
{
    uint64_t v = 0;
    switch (width) {
    case 1:
        return b[0];
    case 2:
        return little ? (uint64_t)b[1] << 8 | b[0] : (uint64_t)b[0] << 8 | b[1];
    case 4:
        return little ? (uint64_t)b[3] << 24 | (uint64_t)b[2] << 16 | (uint64_t)b[1] << 8 | b[0]
                      : (uint64_t)b[0] << 24 | (uint64_t)b[1] << 16 | (uint64_t)b[2] << 8 | b[3];
    default:
        break;
    }
    if (little) {
        while (width)
            v = (v << 8) | b[--width];
    } else {
        for (size_t i = 0; i < width; i++)
            v = (v << 8) | b[i];
    }
    return v;
}
static inline void gw__binary_put_uint(uint8_t *b, size_t width, bool little, uint64_t v)
{
    for (size_t i = 0; i < width; i++) {
        b[little ? i : width - 1 - i] = (uint8_t)v;
        v >>= 8;
    }
}

/* A number read from a field: integer (signed or unsigned) or real. */
typedef struct bin_num {
    enum { BIN_NUM_INT, BIN_NUM_UINT, BIN_NUM_REAL } kind;
    int64_t i;
    uint64_t u;
    double d;
} bin_num;

/* Reads a numeric field (ints, floats, bits, bcd as a number) at b; rej on bad bcd / NaN. */
int gw__binary_read_num(const bin_field *f, const uint8_t *b, bin_num *out, gw_reject *rej);
/* Applies the transform; integer results stay integers (overflow rejected). */
int gw__binary_xform(const bin_field *f, bin_num *n, gw_reject *rej);
/* A decoded field as the JSON value its target gets (new reference), given its bytes b[0..n). */
int gw__binary_to_json(const bin_field *f, const uint8_t *b, size_t n, bool negate, json_t **out,
                       gw_reject *rej);
/* The normalised JSON text of a decoded field (as gw__binary_to_json's value, written by
 * gw_json_write) into dst (cap >= 41), when its property keeps that value as it is
 * (gw_tm_report_as_is's rule); its length, or 0: not taken (the general path decides and words
 * it). */
size_t gw__binary_value_text(const bin_field *f, const uint8_t *b, size_t n, bool negate, char *dst,
                             size_t cap);
/* Epoch milliseconds of a datetime field's 6 bytes, and back (GW_EINVAL outside 2000..2099). */
int gw__binary_datetime_read(const bin_field *f, const uint8_t *b, int64_t *ms, gw_reject *rej);
int gw__binary_datetime_put(const bin_field *f, int64_t ms, uint8_t *b, gw_error *err);
/* Text of a field for device_id / secret / msg_id: string, bcd digits, hex, decimal. */
int gw__binary_to_text(const bin_field *f, const uint8_t *b, size_t n, char *dst, size_t cap,
                       gw_reject *rej);
/* Encoding: the bytes of a value for field f into b (f's wire size, or the prefix + data for a
 * prefixed field: *used). 0, or GW_EINVAL with err naming why. */
int gw__binary_put_json(const bin_field *f, const json_t *v, uint8_t *b, size_t cap, size_t *used,
                        gw_error *err);
int gw__binary_put_int(const bin_field *f, int64_t v, uint8_t *b, gw_error *err);
/* A number through the inverse transform: raw = round((v - add) / scale). */
int gw__binary_put_num(const bin_field *f, int64_t v, uint8_t *b, gw_error *err);
int gw__binary_put_text(const bin_field *f, const char *s, uint8_t *b, size_t cap, size_t *used,
                        gw_error *err);

/* A field's name for details: its "name", or its JSON path. */
static inline const char *gw__binary_label(const bin_field *f)
{
    return f->name && f->name[0] ? f->name : f->path;
}

/* binary_encode.c */
typedef struct bin_src {
    const gw_thing_msg *req; /* ack: the request */
    int status;
    const char *device_id;
    uint32_t seq;
    const json_t *values;  /* command inputs / properties */
    const char *secret;    /* the device's secret: the MAC of a layout with "auth" */
    int64_t timestamp_ms;  /* a timestamp role's value without req (tests, fuzzing) */
    const char *auth_code; /* an auth_code role's value (frame.auth_code), NULL: none */
} bin_src;
int gw__binary_encode(const bin_layout *l, const bin_msg *m, const bin_src *src, uint8_t *out,
                      size_t cap, size_t *n, gw_error *err);

/* binary_ack.c: precomputed acks. Plans every ack of a loaded layout (a template, or none). */
void gw__binary_ack_plan(bin_layout *l);
void gw__binary_ack_tpl_free(struct bin_ack_tpl *t);
/* Ack a for request req (status < 0: refused) from its template into out: 0, or 1 when it has
 * none or the general encoder must word a problem (gw__binary_encode gives the same bytes). */
int gw__binary_ack_fast(const bin_layout *l, const bin_msg *a, const gw_thing_msg *req, int status,
                        uint8_t *out, size_t cap, size_t *n);

/* binary.c: n fields read one after the other from body[0..len) (a group's record); *used: the
 * bytes they took. */
int gw__binary_read_fields(const bin_field *fs, size_t n, const uint8_t *body, size_t len,
                           size_t *used, gw_thing_msg *out, gw_reject *rej);

/* binary.c: decode; with downstream, of our own frames (commands, acks: tests, fuzzing) instead
 * of a device's. *which is the matched message (NULL on failure). */
int gw__binary_decode(const gw_product *p, bool downstream, const uint8_t *buf, size_t len,
                      gw_thing_msg *out, const bin_msg **which, gw_reject *rej);

#endif

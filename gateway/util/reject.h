/* reject.h: why a device message is refused. One X-macro table gives the enum, the logfmt reason
 * name and the per-reason counter name, so a new reason is one line here. */
#ifndef GW_REJECT_H
#define GW_REJECT_H

#define GW_REJECT_REASONS(X)                                                                       \
    X(GW_R_MALFORMED_PAYLOAD, "malformed_payload")                                                 \
    X(GW_R_UNKNOWN_PROPERTY, "unknown_property")                                                   \
    X(GW_R_WRONG_TYPE, "wrong_type")                                                               \
    X(GW_R_OUT_OF_RANGE, "out_of_range")                                                           \
    X(GW_R_STRING_TOO_LONG, "string_too_long")                                                     \
    X(GW_R_ENUM_VALUE, "enum_value_not_listed")                                                    \
    X(GW_R_TOO_MANY_ITEMS, "too_many_items")                                                       \
    X(GW_R_MISSING_PARAM, "missing_param")                                                         \
    X(GW_R_UNKNOWN_PARAM, "unknown_param")                                                         \
    X(GW_R_UNKNOWN_EVENT, "unknown_event")                                                         \
    X(GW_R_UNKNOWN_FUNCTION, "unknown_function")                                                   \
    X(GW_R_NOT_WRITABLE, "property_not_writable")                                                  \
    X(GW_R_EMPTY_REPORT, "empty_report")                                                           \
    X(GW_R_UNKNOWN_TOPIC, "unknown_topic")                                                         \
    X(GW_R_UNSUPPORTED, "unsupported")                                                             \
    X(GW_R_BAD_CHECK, "bad_check")                                                                 \
    X(GW_R_UNKNOWN_MESSAGE, "unknown_message")                                                     \
    X(GW_R_LATE_REPLY, "late_reply")

typedef enum gw_reason {
    GW_R_NONE = 0,
#define GW_R_ENUM(name, text) name,
    GW_REJECT_REASONS(GW_R_ENUM)
#undef GW_R_ENUM
        GW_R__COUNT
} gw_reason;

/* Filled by whoever refuses a message: the reason and a one-line detail naming the path,
 * e.g. "properties.temperature: 300 is above max 125". */
typedef struct gw_reject {
    gw_reason reason;
    char detail[192];
} gw_reject;

/* "out_of_range" etc.; "none" for GW_R_NONE. */
const char *gw_reason_name(gw_reason r);

/* Sets r->reason and formats r->detail (any byte that is not well-formed UTF-8 becomes '?', so
 * the detail can always go into a JSON reply and a log line); returns GW_EINVAL so callers can
 * `return gw_reject_set(...)`. */
int gw_reject_set(gw_reject *r, gw_reason reason, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif

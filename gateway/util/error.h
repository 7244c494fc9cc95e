/* error.h: iotgw's error codes (0 or negative; -errno for system errors, a private range for the
 * rest, from one X-macro table) and gw_error, which carries a code plus a human-readable cause. */
#ifndef GW_ERROR_H
#define GW_ERROR_H

#include <stddef.h>

/* Private codes live below -10000 so they never collide with -errno. */
#define GW_ERRORS(X)                                                                               \
    X(GW_EPROTO, -10001, "protocol error")                                                         \
    X(GW_ECONFIG, -10002, "configuration error")                                                   \
    X(GW_EBUSY, -10003, "busy (queue full)")                                                       \
    X(GW_ENOTFOUND, -10004, "not found")                                                           \
    X(GW_EAUTH, -10005, "authentication failed")                                                   \
    X(GW_EINVAL, -10006, "invalid value")                                                          \
    X(GW_ETOOBIG, -10007, "too big")                                                               \
    X(GW_EINCOMPLETE, -10008, "incomplete, need more data")                                        \
    X(GW_ENOMEM, -10009, "out of memory")                                                          \
    X(GW_EDUP, -10010, "duplicate")                                                                \
    X(GW_ESTORE, -10011, "storage error")                                                          \
    X(GW_ECLOSED, -10012, "closed")

enum {
#define GW_ERR_ENUM(name, val, text) name = (val),
    GW_ERRORS(GW_ERR_ENUM)
#undef GW_ERR_ENUM
};

typedef struct gw_error {
    int code;
    char msg[256];
} gw_error;

/* Text for a code: gw_strerror(GW_EBUSY), gw_strerror(-ENOENT). Never NULL. */
const char *gw_strerror(int code);

/* Fills err (if not NULL) with code and a printf-style message; returns code. */
int gw_error_set(gw_error *err, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif

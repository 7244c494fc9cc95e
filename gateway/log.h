/* log.h: one logging macro family printing logfmt lines to stderr; the level is checked before any
 * formatting. Parsers and codecs never log: they return a code and a reason. */
#ifndef GW_LOG_H
#define GW_LOG_H

#include <stddef.h>

enum { GW_LOG_DEBUG = 0, GW_LOG_INFO = 1, GW_LOG_WARN = 2, GW_LOG_ERROR = 3 };

extern int gw_log_level;

/* Writes `ts=... level=... area=AREA [dev=DEV] [peer=PEER] msg="..." EXTRA` as one write(2).
 * dev/peer may be NULL. extra_fmt formats trailing logfmt pairs (may be NULL). */
void gw_log_write(int level, const char *area, const char *dev, const char *peer, const char *msg,
                  const char *extra_fmt, ...) __attribute__((format(printf, 6, 7)));

#define GW_LOG(level, area, dev, peer, msg, ...)                                                   \
    do {                                                                                           \
        if ((level) >= gw_log_level)                                                               \
            gw_log_write((level), (area), (dev), (peer), (msg), __VA_ARGS__);                      \
    } while (0)

#define GW_LOG_DEBUG(area, dev, peer, msg, ...)                                                    \
    GW_LOG(GW_LOG_DEBUG, area, dev, peer, msg, __VA_ARGS__)
#define GW_LOG_INFO(area, dev, peer, msg, ...)                                                     \
    GW_LOG(GW_LOG_INFO, area, dev, peer, msg, __VA_ARGS__)
#define GW_LOG_WARN(area, dev, peer, msg, ...)                                                     \
    GW_LOG(GW_LOG_WARN, area, dev, peer, msg, __VA_ARGS__)
#define GW_LOG_ERROR(area, dev, peer, msg, ...)                                                    \
    GW_LOG(GW_LOG_ERROR, area, dev, peer, msg, __VA_ARGS__)

/* Quotes s for a logfmt value into buf (escapes \" \\ and control bytes); returns buf. */
const char *gw_log_quote(char *buf, size_t cap, const char *s);

/* As gw_log_quote, but leaves a plain token (no space, quote, '=' or control byte) unquoted. */
const char *gw_log_value(char *buf, size_t cap, const char *s);

#endif

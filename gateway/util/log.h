/* log.h: one logging macro family printing logfmt lines to stderr; the level is checked before any
 * formatting, and lines of the loop (and other non-main) threads are rate-limited per call site.
 * Parsers and codecs never log: they return a code and a reason. */
#ifndef GW_LOG_H
#define GW_LOG_H

#include <stddef.h>
#include <stdint.h>

enum { GW_LOG_DEBUG = 0, GW_LOG_INFO = 1, GW_LOG_WARN = 2, GW_LOG_ERROR = 3 };

extern int gw_log_level;

/* Rate limit: on a limited thread, at most this many lines per call site (area, msg and extra_fmt
 * pointers) per window of GW_LOG_RATE_WINDOW_MS; the rest are counted (log_suppressed_total), and
 * the call site's next line carries `suppressed=N` (or, if it stays silent, a "log lines
 * suppressed" line once its window has ended). 0: no limit. gateway.json "log_rate_limit"; set
 * once at start-up before the threads start. */
extern uint32_t gw_log_rate_limit;
#define GW_LOG_RATE_DEFAULT   10
#define GW_LOG_RATE_WINDOW_MS 1000

/* Every thread's lines are rate-limited but the main thread's (which calls this with 0 first
 * thing) and a loop thread's while its adapters start (start-up lines are never lost). */
void gw_log_limit_thread(int on);

/* Writes the pending "log lines suppressed" summaries of the calling thread's call sites whose
 * window has ended. Cheap (one coarse clock read) unless a window may have ended; loops call it
 * once per iteration so a flood that stops is still reported. */
void gw_log_tick(void);

/* Writes `ts=... level=... area=AREA [dev=DEV] [peer=PEER] msg="..." EXTRA` as one write(2).
 * dev/peer may be NULL (dev is quoted if needed, peer is taken as is: a formatted address).
 * extra_fmt formats trailing logfmt pairs (may be NULL): every value from outside (ids, topics,
 * reasons built from input) goes through gw_log_quote/gw_log_value. */
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

/* Quotes s for a logfmt value into buf and returns buf: `"` and `\` are escaped with a backslash,
 * control bytes (C0, DEL) as \xNN, the C1 controls and the line/paragraph separators U+2028 and
 * U+2029 as \uNNNN, and every byte that is not part of valid UTF-8 as \xNN; so the value stays one
 * field of one line whatever s holds. Truncated (never inside an escape) to fit cap. */
const char *gw_log_quote(char *buf, size_t cap, const char *s);

/* As gw_log_quote, but leaves a plain token (printable ASCII without space, quote, '=' or '\')
 * unquoted. */
const char *gw_log_value(char *buf, size_t cap, const char *s);

#endif

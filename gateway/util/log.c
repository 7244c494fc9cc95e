/* log.c: logfmt lines on stderr, one write(2) per record so lines from threads never interleave;
 * the per-thread, per-call-site rate limit of those lines; quoting of values from outside. */
#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include "metrics.h"

int gw_log_level = GW_LOG_INFO;
uint32_t gw_log_rate_limit = GW_LOG_RATE_DEFAULT;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

/* ---- quoting ---- */

/* Length (1..4) of the valid UTF-8 sequence at s and its code point, or 0 if none starts there
 * (stray continuation byte, overlong form, surrogate, past U+10FFFF, truncated by the NUL). */
static size_t utf8_seq(const unsigned char *s, uint32_t *cp)
{
    unsigned char c = s[0];
    size_t n;
    uint32_t v, min;
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    if (c >= 0xc2 && c <= 0xdf) {
        n = 2, v = c & 0x1fu, min = 0x80;
    } else if (c >= 0xe0 && c <= 0xef) {
        n = 3, v = c & 0x0fu, min = 0x800;
    } else if (c >= 0xf0 && c <= 0xf4) {
        n = 4, v = c & 0x07u, min = 0x10000;
    } else {
        return 0;
    }
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        v = (v << 6) | (s[i] & 0x3fu);
    }
    if (v < min || v > 0x10ffff || (v >= 0xd800 && v <= 0xdfff))
        return 0;
    *cp = v;
    return n;
}

const char *gw_log_quote(char *buf, size_t cap, const char *s)
{
    size_t o = 0;
    if (cap < 3) {
        if (cap)
            buf[0] = 0;
        return buf;
    }
    buf[o++] = '"';
    while (s && *s) {
        const unsigned char *u = (const unsigned char *)s;
        char esc[8];
        const char *out = esc;
        size_t len, adv;
        uint32_t cp;
        size_t n = utf8_seq(u, &cp);
        if (n == 0) { /* not UTF-8: the byte, escaped */
            len = (size_t)snprintf(esc, sizeof(esc), "\\x%02x", u[0]);
            adv = 1;
        } else if (n == 1 && (cp == '"' || cp == '\\')) {
            esc[0] = '\\', esc[1] = (char)cp, len = 2, adv = 1;
        } else if (n == 1 && (cp < 0x20 || cp == 0x7f)) {
            len = (size_t)snprintf(esc, sizeof(esc), "\\x%02x", (unsigned)cp);
            adv = 1;
        } else if (n > 1 && (cp <= 0x9f || cp == 0x2028 || cp == 0x2029)) {
            /* C1 controls (NEL U+0085 among them) and the Unicode line/paragraph separators */
            len = (size_t)snprintf(esc, sizeof(esc), "\\u%04x", (unsigned)cp);
            adv = n;
        } else {
            out = s, len = n, adv = n;
        }
        if (o + len + 2 > cap) /* room for the closing quote and the NUL */
            break;
        memcpy(buf + o, out, len);
        o += len;
        s += adv;
    }
    buf[o++] = '"';
    buf[o] = 0;
    return buf;
}

const char *gw_log_value(char *buf, size_t cap, const char *s)
{
    size_t i;
    for (i = 0; s[i]; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c <= ' ' || c == '"' || c == '=' || c == '\\' || c >= 0x7f)
            return gw_log_quote(buf, cap, s);
    }
    if (i >= cap || i == 0)
        return gw_log_quote(buf, cap, s);
    memcpy(buf, s, i + 1);
    return buf;
}

/* ---- the rate limit ----
 * Per thread (each loop is a thread), a small table keyed by the call site: the area, msg and
 * extra_fmt pointers (string literals, so one key per GW_LOG call and adapter). Fixed size, no
 * allocation: a key that finds no slot in its probe run takes the one with the oldest window,
 * whose suppressed count is written out first. */

#define RL_SLOTS 64 /* power of two */
#define RL_PROBE 8

typedef struct rl_slot {
    const char *area, *msg, *fmt; /* the key */
    int level;
    bool used;
    uint64_t start;      /* this window's start, ms */
    uint32_t n;          /* lines written in this window */
    uint32_t suppressed; /* lines suppressed and not yet reported */
} rl_slot;

typedef struct rl_table {
    rl_slot slot[RL_SLOTS];
    uint64_t next_sweep; /* ms: no summary can be due before */
    uint32_t owed;       /* slots with suppressed > 0 */
} rl_table;

static _Thread_local int tl_limited = 1;
static _Thread_local rl_table tl_rl;

void gw_log_limit_thread(int on)
{
    tl_limited = on;
}

static uint64_t now_ms(void)
{
    struct timespec ts;
#ifdef CLOCK_MONOTONIC_COARSE
    clock_gettime(CLOCK_MONOTONIC_COARSE, &ts);
#else
    clock_gettime(CLOCK_MONOTONIC, &ts);
#endif
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static uintptr_t rl_hash(const char *area, const char *msg, const char *fmt)
{
    uintptr_t h = (uintptr_t)msg * 0x9E3779B97F4A7C15ull;
    h ^= (uintptr_t)fmt * 0xC2B2AE3D27D4EB4Full;
    h ^= (uintptr_t)area * 0x165667B19E3779F9ull;
    return h ^ (h >> 29);
}

/* ---- writing ---- */

/* ts, level, area, dev, peer and msg into line; returns the length. */
static size_t head(char *line, size_t cap, int level, const char *area, const char *dev,
                   const char *peer, const char *msg)
{
    char q[320];
    struct timeval tv;
    struct tm tm;
    size_t n;

    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(line, cap, "ts=%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, cap - n, ".%03ldZ level=%s area=%s", (long)(tv.tv_usec / 1000),
                          level_names[level], area ? area : "-");
    if (dev && n < cap)
        n += (size_t)snprintf(line + n, cap - n, " dev=%s", gw_log_value(q, 80, dev));
    if (peer && n < cap)
        n += (size_t)snprintf(line + n, cap - n, " peer=%s", peer);
    if (n < cap)
        n += (size_t)snprintf(line + n, cap - n, " msg=%s",
                              gw_log_quote(q, sizeof(q), msg ? msg : ""));
    return n;
}

static void emit(char *line, size_t cap, size_t n)
{
    if (n >= cap - 1)
        n = cap - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}

/* The summary of a call site whose lines were suppressed and that wrote nothing since. */
static void rl_report(rl_slot *s)
{
    char line[512], q[200];
    size_t n = head(line, sizeof(line), s->level, s->area, NULL, NULL, "log lines suppressed");
    if (n < sizeof(line))
        n += (size_t)snprintf(line + n, sizeof(line) - n, " of=%s suppressed=%u window_ms=%u",
                              gw_log_quote(q, sizeof(q), s->msg ? s->msg : ""), s->suppressed,
                              (unsigned)GW_LOG_RATE_WINDOW_MS);
    emit(line, sizeof(line), n);
    s->suppressed = 0;
    tl_rl.owed--;
}

/* Reports every call site whose window has ended with lines suppressed, but skip (whose count
 * the line being written carries). */
static void rl_sweep(uint64_t now, const rl_slot *skip)
{
    rl_table *t = &tl_rl;
    uint64_t next = UINT64_MAX;
    for (size_t i = 0; i < RL_SLOTS && t->owed; i++) {
        rl_slot *s = &t->slot[i];
        if (!s->used || !s->suppressed || s == skip)
            continue;
        if (now - s->start >= GW_LOG_RATE_WINDOW_MS)
            rl_report(s);
        else if (s->start + GW_LOG_RATE_WINDOW_MS < next)
            next = s->start + GW_LOG_RATE_WINDOW_MS;
    }
    t->next_sweep = t->owed ? next : UINT64_MAX;
}

void gw_log_tick(void)
{
    if (!tl_rl.owed)
        return;
    uint64_t now = now_ms();
    if (now >= tl_rl.next_sweep)
        rl_sweep(now, NULL);
}

static rl_slot *rl_find(const char *area, const char *msg, const char *fmt, int level, uint64_t now)
{
    rl_table *t = &tl_rl;
    uintptr_t h = rl_hash(area, msg, fmt);
    rl_slot *victim = NULL;
    for (size_t i = 0; i < RL_PROBE; i++) {
        rl_slot *s = &t->slot[(h + i) & (RL_SLOTS - 1)];
        if (s->used && s->msg == msg && s->fmt == fmt && s->area == area)
            return s;
        if (!victim || (victim->used && (!s->used || s->start < victim->start)))
            victim = s;
    }
    if (victim->used && victim->suppressed)
        rl_report(victim);
    *victim = (rl_slot){area, msg, fmt, level, true, now, 0, 0};
    return victim;
}

/* Whether this line may be written; *carried: the call site's suppressed lines to report on it. */
static bool rl_admit(int level, const char *area, const char *msg, const char *fmt,
                     uint32_t *carried)
{
    uint64_t now = now_ms();
    rl_slot *s = rl_find(area, msg, fmt, level, now);
    if (now - s->start >= GW_LOG_RATE_WINDOW_MS) {
        s->start = now;
        s->n = 0;
    }
    /* other call sites' summaries; this one's count goes on this line, the window's first */
    if (tl_rl.owed && now >= tl_rl.next_sweep)
        rl_sweep(now, s->n == 0 ? s : NULL);
    if (s->n >= gw_log_rate_limit) {
        if (!s->suppressed++) {
            tl_rl.owed++;
            if (s->start + GW_LOG_RATE_WINDOW_MS < tl_rl.next_sweep || tl_rl.owed == 1)
                tl_rl.next_sweep = s->start + GW_LOG_RATE_WINDOW_MS;
        }
        s->level = level;
        gw_metric_inc(GW_M_LOG_SUPPRESSED);
        return false;
    }
    s->n++;
    *carried = s->suppressed;
    if (s->suppressed) {
        s->suppressed = 0;
        tl_rl.owed--;
    }
    return true;
}

void gw_log_write(int level, const char *area, const char *dev, const char *peer, const char *msg,
                  const char *extra_fmt, ...)
{
    char line[1024];
    uint32_t carried = 0;
    size_t n;

    if (level < GW_LOG_DEBUG || level > GW_LOG_ERROR)
        level = GW_LOG_ERROR;
    if (tl_limited && gw_log_rate_limit && !rl_admit(level, area, msg, extra_fmt, &carried))
        return;
    n = head(line, sizeof(line), level, area, dev, peer, msg);
    if (carried && n < sizeof(line)) /* before the extra pairs: a long line is cut at its end */
        n += (size_t)snprintf(line + n, sizeof(line) - n, " suppressed=%u", carried);
    if (extra_fmt && n + 1 < sizeof(line)) {
        va_list ap;
        line[n++] = ' ';
        va_start(ap, extra_fmt);
        n += (size_t)vsnprintf(line + n, sizeof(line) - n, extra_fmt, ap);
        va_end(ap);
    }
    emit(line, sizeof(line), n);
}

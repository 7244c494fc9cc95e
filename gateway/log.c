/* log.c: logfmt lines on stderr, one write(2) per record so lines from threads never interleave. */
#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

int gw_log_level = GW_LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

const char *gw_log_quote(char *buf, size_t cap, const char *s)
{
    size_t o = 0;
    if (cap < 3) {
        if (cap)
            buf[0] = 0;
        return buf;
    }
    buf[o++] = '"';
    for (; s && *s && o + 5 < cap; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\') {
            buf[o++] = '\\';
            buf[o++] = (char)c;
        } else if (c < 0x20 || c == 0x7f) {
            o += (size_t)snprintf(buf + o, cap - o, "\\x%02x", c);
        } else {
            buf[o++] = (char)c;
        }
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
    if (i >= cap)
        return gw_log_quote(buf, cap, s);
    memcpy(buf, s, i + 1);
    return buf;
}

void gw_log_write(int level, const char *area, const char *dev, const char *peer, const char *msg,
                  const char *extra_fmt, ...)
{
    char line[1024], q[320];
    struct timeval tv;
    struct tm tm;
    size_t n;

    if (level < GW_LOG_DEBUG || level > GW_LOG_ERROR)
        level = GW_LOG_ERROR;
    gettimeofday(&tv, NULL);
    gmtime_r(&tv.tv_sec, &tm);
    n = strftime(line, sizeof(line), "ts=%Y-%m-%dT%H:%M:%S", &tm);
    n += (size_t)snprintf(line + n, sizeof(line) - n, ".%03ldZ level=%s area=%s",
                          (long)(tv.tv_usec / 1000), level_names[level], area ? area : "-");
    if (dev && n < sizeof(line))
        n += (size_t)snprintf(line + n, sizeof(line) - n, " dev=%s", gw_log_value(q, 80, dev));
    if (peer && n < sizeof(line))
        n += (size_t)snprintf(line + n, sizeof(line) - n, " peer=%s", peer);
    if (n < sizeof(line))
        n += (size_t)snprintf(line + n, sizeof(line) - n, " msg=%s",
                              gw_log_quote(q, sizeof(q), msg ? msg : ""));
    if (extra_fmt && n + 1 < sizeof(line)) {
        va_list ap;
        line[n++] = ' ';
        va_start(ap, extra_fmt);
        n += (size_t)vsnprintf(line + n, sizeof(line) - n, extra_fmt, ap);
        va_end(ap);
    }
    if (n >= sizeof(line) - 1)
        n = sizeof(line) - 2;
    line[n++] = '\n';
    ssize_t w = write(STDERR_FILENO, line, n);
    (void)w;
}

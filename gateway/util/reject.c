/* reject.c: names for rejection reasons and the gw_reject filler. */
#include "reject.h"
#include "error.h"

#include <stdarg.h>
#include <stdio.h>

static const char *const reason_names[GW_R__COUNT] = {[GW_R_NONE] = "none",
#define GW_R_NAME(name, text) [name] = text,
                                                      GW_REJECT_REASONS(GW_R_NAME)
#undef GW_R_NAME
};

const char *gw_reason_name(gw_reason r)
{
    if ((unsigned)r >= GW_R__COUNT)
        return "unknown";
    return reason_names[r];
}

/* Replaces every byte that is not part of well-formed UTF-8 with '?', so that a detail cut short
 * (or quoting a device's bytes) can always go into a JSON reply and a log line. */
static void utf8_sanitize(char *s)
{
    unsigned char *q = (unsigned char *)s;
    while (*q) {
        unsigned c = *q, cp, min;
        size_t n, i;
        if (c < 0x80) {
            q++;
            continue;
        } else if ((c & 0xE0) == 0xC0) {
            n = 2, min = 0x80, cp = c & 0x1F;
        } else if ((c & 0xF0) == 0xE0) {
            n = 3, min = 0x800, cp = c & 0x0F;
        } else if ((c & 0xF8) == 0xF0) {
            n = 4, min = 0x10000, cp = c & 0x07;
        } else {
            *q++ = '?';
            continue;
        }
        for (i = 1; i < n && (q[i] & 0xC0) == 0x80; i++)
            cp = (cp << 6) | (q[i] & 0x3F);
        if (i < n || cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
            *q++ = '?';
        else
            q += n;
    }
}

int gw_reject_set(gw_reject *r, gw_reason reason, const char *fmt, ...)
{
    if (r) {
        va_list ap;
        r->reason = reason;
        va_start(ap, fmt);
        vsnprintf(r->detail, sizeof(r->detail), fmt, ap);
        va_end(ap);
        utf8_sanitize(r->detail); /* details quote device bytes and may be cut mid-character */
    }
    return GW_EINVAL;
}

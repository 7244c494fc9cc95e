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

int gw_reject_set(gw_reject *r, gw_reason reason, const char *fmt, ...)
{
    if (r) {
        va_list ap;
        r->reason = reason;
        va_start(ap, fmt);
        vsnprintf(r->detail, sizeof(r->detail), fmt, ap);
        va_end(ap);
    }
    return GW_EINVAL;
}

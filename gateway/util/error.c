/* error.c: text for iotgw's error codes and the gw_error filler. */
#include "error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *gw_strerror(int code)
{
    switch (code) {
    case 0:
        return "ok";
#define GW_ERR_CASE(name, val, text)                                                               \
    case name:                                                                                     \
        return text;
        GW_ERRORS(GW_ERR_CASE)
#undef GW_ERR_CASE
    default:
        break;
    }
    if (code < 0 && code > -4096)
        return strerror(-code);
    return "unknown error";
}

int gw_error_set(gw_error *err, int code, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        err->code = code;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof(err->msg), fmt, ap);
        va_end(ap);
    }
    return code;
}

/* diag.h: a list of configuration diagnostics, each one line naming the file, the JSON path and
 * what is wrong ("products/thermo.json: properties[1].max: must be a number"). */
#ifndef GW_DIAG_H
#define GW_DIAG_H

#include <stddef.h>

typedef struct gw_diag {
    char **msgs;
    size_t n, cap;
} gw_diag;

/* Appends "file: path: message" (path may be NULL or "" and is then left out). */
void gw_diag_add(gw_diag *d, const char *file, const char *path, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
void gw_diag_free(gw_diag *d);

/* snprintf for JSON paths ("properties[1].max"); a path that does not fit is cut, which is fine
 * for a message. */
void gw_diag_pathf(char *buf, size_t cap, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif

/* diag.c: the configuration diagnostics list; each entry is one formatted line
 * "file: path: message", collected so that every problem in the configuration is reported at once.
 */
#include "diag.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void gw_diag_add(gw_diag *d, const char *file, const char *path, const char *fmt, ...)
{
    char msg[512], line[1024];
    va_list ap;

    if (!d)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);

    if (file && *file && path && *path)
        snprintf(line, sizeof(line), "%s: %s: %s", file, path, msg);
    else if (file && *file)
        snprintf(line, sizeof(line), "%s: %s", file, msg);
    else if (path && *path)
        snprintf(line, sizeof(line), "%s: %s", path, msg);
    else
        snprintf(line, sizeof(line), "%s", msg);

    if (d->n == d->cap) {
        size_t cap = d->cap ? d->cap * 2 : 8;
        char **v = realloc(d->msgs, cap * sizeof(*v));
        if (!v)
            return; /* out of memory: the message is lost, but not the others */
        d->msgs = v;
        d->cap = cap;
    }
    d->msgs[d->n] = strdup(line);
    if (d->msgs[d->n])
        d->n++;
}

void gw_diag_free(gw_diag *d)
{
    if (!d)
        return;
    for (size_t i = 0; i < d->n; i++)
        free(d->msgs[i]);
    free(d->msgs);
    d->msgs = NULL;
    d->n = d->cap = 0;
}

void gw_diag_pathf(char *buf, size_t cap, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(buf, cap, fmt, ap);
    va_end(ap);
}

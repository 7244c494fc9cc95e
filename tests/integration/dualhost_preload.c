/* dualhost_preload.c: an LD_PRELOAD shim for 67-north-client: getaddrinfo of the name
 * "dual.iotgw.test" answers two addresses, as a name with an AAAA and an A record does: ::1 then
 * 127.0.0.1, or 127.0.0.1 then ::1 when $IOTGW_DUAL_ORDER is "4". Any other name goes to the C
 * library's getaddrinfo. Built without sanitizers (it is loaded before their runtimes). */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <netdb.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

typedef int (*gai_fn)(const char *, const char *, const struct addrinfo *, struct addrinfo **);

int getaddrinfo(const char *node, const char *service, const struct addrinfo *hints,
                struct addrinfo **res)
{
    gai_fn real = (gai_fn)dlsym(RTLD_NEXT, "getaddrinfo");
    if (!real)
        return EAI_SYSTEM;
    if (!node || strcmp(node, "dual.iotgw.test") != 0)
        return real(node, service, hints, res);
    const char *order = getenv("IOTGW_DUAL_ORDER");
    const char *first = order && strcmp(order, "4") == 0 ? "127.0.0.1" : "::1";
    const char *second = first[0] == ':' ? "127.0.0.1" : "::1";
    struct addrinfo h = {0};
    if (hints)
        h = *hints;
    h.ai_flags |= AI_NUMERICHOST;
    h.ai_family = AF_UNSPEC;
    struct addrinfo *a = NULL, *b = NULL;
    int rc = real(first, service, &h, &a);
    if (rc)
        return rc;
    rc = real(second, service, &h, &b);
    if (rc) {
        freeaddrinfo(a);
        return rc;
    }
    struct addrinfo *t = a; /* freeaddrinfo frees node by node: the two lists make one */
    while (t->ai_next)
        t = t->ai_next;
    t->ai_next = b;
    *res = a;
    return 0;
}

/* config_listen.c: every listening address of the configuration (admin's and each adapter's
 * listener arrays, with their transport), and the check that no two of them take one port. */
#include "internal.h"
#include "../gateway/util/error.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct list {
    gw_config_listener *v;
    size_t n, cap;
} list;

static gw_config_listener *push(list *l)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 16;
        gw_config_listener *v = realloc(l->v, cap * sizeof(*v));
        if (!v)
            return NULL;
        l->v = v;
        l->cap = cap;
    }
    gw_config_listener *e = &l->v[l->n++];
    memset(e, 0, sizeof(*e));
    return e;
}

/* One {"address", "port"[, "product"]} entry; entries the adapter's own check refuses (wrong
 * types, an address that is not numeric) are skipped: that check has reported them. */
static int add_entry(list *l, const char *adapter, const char *owner, size_t i, int transport,
                     const json_t *e)
{
    const json_t *a = json_object_get(e, "address"), *p = json_object_get(e, "port");
    const json_t *prod = json_object_get(e, "product");
    unsigned char bin[16];
    if (!json_is_string(a) || !json_is_integer(p) || json_integer_value(p) < 0 ||
        json_integer_value(p) > 65535 || json_string_length(a) >= sizeof(((gw_listen *)0)->address))
        return 0;
    const char *addr = json_string_value(a);
    if (inet_pton(AF_INET, addr, bin) != 1 && inet_pton(AF_INET6, addr, bin) != 1)
        return 0;
    gw_config_listener *o = push(l);
    if (!o)
        return GW_ENOMEM;
    snprintf(o->adapter, sizeof(o->adapter), "%s", adapter);
    snprintf(o->owner, sizeof(o->owner), "%s", owner);
    snprintf(o->path, sizeof(o->path), "%.60s[%u]", owner, (unsigned)(i % 100000));
    o->transport = transport;
    snprintf(o->at.address, sizeof(o->at.address), "%s", addr);
    o->at.port = (uint16_t)json_integer_value(p);
    if (json_is_string(prod))
        snprintf(o->at.product, sizeof(o->at.product), "%s", json_string_value(prod));
    return 0;
}

int gw_config_listeners(const gw_config *c, gw_config_listener **out, size_t *n)
{
    list l = {NULL, 0, 0};
    const char *name;
    json_t *section;
    char owner[64];

    *out = NULL;
    *n = 0;
    for (size_t i = 0; c->admin_enabled && i < c->admin_http.n_listeners; i++) {
        gw_config_listener *o = push(&l);
        if (!o)
            goto fail;
        snprintf(o->adapter, sizeof(o->adapter), "admin");
        snprintf(o->owner, sizeof(o->owner), "admin");
        if (c->admin_http.n_listeners > 1)
            snprintf(o->path, sizeof(o->path), "admin.listeners[%zu]", i);
        else
            snprintf(o->path, sizeof(o->path), "admin");
        o->transport = GW_TRANSPORT_TCP;
        o->at = c->admin_http.listeners[i];
    }
    json_object_foreach(c->adapters, name, section)
    {
        gw_config_adapter ad;
        if (!c->plugins || c->plugins->adapter(name, &ad) != 0 || !ad.listen_keys ||
            !json_is_object(section))
            continue;
        for (const gw_listen_key *k = ad.listen_keys; k->key; k++) {
            const json_t *arr = json_object_get(section, k->key);
            snprintf(owner, sizeof(owner), "adapters.%s.%s", name, k->key);
            for (size_t i = 0; i < json_array_size(arr); i++)
                if (add_entry(&l, name, owner, i, (int)k->transport, json_array_get(arr, i)))
                    goto fail;
        }
    }
    *out = l.v;
    *n = l.n;
    return 0;
fail:
    free(l.v);
    return GW_ENOMEM;
}

/* ---- overlap ---- */

typedef struct bin_addr {
    int family;
    unsigned char b[16];
} bin_addr;

static void parse(const char *s, bin_addr *a)
{
    memset(a, 0, sizeof(*a));
    a->family = strchr(s, ':') ? AF_INET6 : AF_INET;
    inet_pton(a->family, s, a->b);
}

static bool is_any(const bin_addr *a)
{
    static const unsigned char zero[16];
    return memcmp(a->b, zero, a->family == AF_INET6 ? 16 : 4) == 0;
}

/* Whether two addresses on one port would receive each other's traffic: the same address, a
 * wildcard of the family over any address of it, and across families "::" (dual-stack: the
 * gateway never sets IPV6_V6ONLY) over any IPv4 address or an IPv4-mapped ::ffff:a.b.c.d over
 * a.b.c.d and 0.0.0.0. *exact: the very same address. */
static bool overlap(const bin_addr *a, const bin_addr *b, bool *exact)
{
    static const unsigned char mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    *exact = a->family == b->family && memcmp(a->b, b->b, sizeof(a->b)) == 0;
    if (*exact)
        return true;
    if (a->family == b->family)
        return is_any(a) || is_any(b);
    const bin_addr *v6 = a->family == AF_INET6 ? a : b, *v4 = a->family == AF_INET6 ? b : a;
    if (is_any(v6))
        return true;
    return memcmp(v6->b, mapped, 12) == 0 && (is_any(v4) || memcmp(v6->b + 12, v4->b, 4) == 0);
}

static const char *transport_name(int t)
{
    return t == GW_TRANSPORT_UDP ? "udp" : "tcp";
}

void gw__config_check_listeners(gw__config_ctx *x, const gw_config *c)
{
    gw_config_listener *v;
    size_t n;
    char path[96];

    if (gw_config_listeners(c, &v, &n) != 0) {
        gw__config_err(x, c->file, "adapters", "out of memory");
        return;
    }
    for (size_t i = 0; i < n; i++) {
        bin_addr ai, aj;
        if (!v[i].at.port) /* ephemeral: a port of its own */
            continue;
        parse(v[i].at.address, &ai);
        for (size_t j = 0; j < i; j++) {
            bool exact, same = strcmp(v[i].owner, v[j].owner) == 0;
            if (v[j].transport != v[i].transport || v[j].at.port != v[i].at.port)
                continue;
            parse(v[j].at.address, &aj);
            if (!overlap(&ai, &aj, &exact))
                continue;
            /* One adapter's own sockets may overlap (0.0.0.0 and :: for both families) when
             * they serve the same product; never twice the same address. */
            if (same && !exact && strcmp(v[i].at.product, v[j].at.product) == 0)
                continue;
            snprintf(path, sizeof(path), "%s.port", v[i].path);
            const char *dot = strrchr(v[j].path, '.');
            if (same && exact)
                gw__config_err(x, c->file, path,
                               "same address and port as %s (one socket serves one product)",
                               dot ? dot + 1 : v[j].path);
            else
                gw__config_err(x, c->file, path,
                               "%s port %u is already taken by %s (%s port %u): two listeners on "
                               "one port would share its traffic",
                               transport_name(v[i].transport), v[i].at.port, v[j].path,
                               v[j].at.address, v[j].at.port);
            break;
        }
    }
    free(v);
}

/* north_format.c: what an outbox row looks like upstream: its topic (from the configured
 * templates) and its normalised JSON payload. Pure functions over caller buffers. */
#include "north.h"

#include <string.h>

#include "../util/json_write.h"

typedef struct out {
    char *p;
    size_t len, cap;
    int full;
} out;

static void put(out *o, const char *s, size_t n)
{
    if (o->full || o->len + n + 1 > o->cap) {
        o->full = 1;
        return;
    }
    memcpy(o->p + o->len, s, n);
    o->len += n;
}

static void puts_(out *o, const char *s)
{
    put(o, s, strlen(s));
}

static size_t finish(out *o)
{
    if (o->full)
        return 0;
    o->p[o->len] = 0;
    return o->len;
}

static const char *reply_path(const char *kind)
{
    if (strcmp(kind, "function_reply") == 0)
        return "function/invoke";
    if (strcmp(kind, "write_reply") == 0)
        return "properties/write";
    if (strcmp(kind, "read_reply") == 0)
        return "properties/read";
    return NULL;
}

size_t gw_north_topic(const gw_north_cfg *cfg, const char *kind, const char *product,
                      const char *device, const char *name, char *buf, size_t cap)
{
    out o = {buf, 0, cap, 0};
    const char *t = NULL, *rp;
    if (strcmp(kind, "property") == 0)
        t = cfg->topic_property;
    else if (strcmp(kind, "event") == 0)
        t = cfg->topic_event;
    else if (strcmp(kind, "online") == 0)
        t = cfg->topic_online;
    else if (strcmp(kind, "offline") == 0)
        t = cfg->topic_offline;
    else if ((rp = reply_path(kind))) {
        puts_(&o, cfg->prefix);
        put(&o, "/", 1);
        puts_(&o, product);
        put(&o, "/", 1);
        puts_(&o, device);
        put(&o, "/", 1);
        puts_(&o, rp);
        puts_(&o, "/reply");
        return finish(&o);
    } else {
        return 0;
    }
    for (const char *p = t; *p; p++) {
        if (*p != '{') {
            put(&o, p, 1);
            continue;
        }
        const char *end = strchr(p, '}');
        size_t n = end ? (size_t)(end - p) + 1 : 0;
        if (n == 8 && memcmp(p, "{prefix}", 8) == 0)
            puts_(&o, cfg->prefix);
        else if (n == 9 && memcmp(p, "{product}", 9) == 0)
            puts_(&o, product);
        else if (n == 8 && memcmp(p, "{device}", 8) == 0)
            puts_(&o, device);
        else if (n == 7 && memcmp(p, "{event}", 7) == 0)
            puts_(&o, name && *name ? name : "_");
        else {
            put(&o, p, 1); /* the loader refuses unknown placeholders; copy, never loop */
            continue;
        }
        p += n - 1;
    }
    return finish(&o);
}

/* Decimal text of v into buf (>= 21 bytes); returns its length. No printf on the hot path. */
static size_t put_i64(char *buf, int64_t v)
{
    char tmp[24];
    size_t n = 0, len = 0;
    uint64_t u = v < 0 ? 0 - (uint64_t)v : (uint64_t)v;
    do {
        tmp[n++] = (char)('0' + u % 10);
        u /= 10;
    } while (u);
    if (v < 0)
        buf[len++] = '-';
    while (n)
        buf[len++] = tmp[--n];
    return len;
}

/* sep"key":"escaped value" (sep: "{" for the first member, "," after) */
static void put_field(out *o, const char *sep, const char *key, const char *v)
{
    char esc[512];
    size_t n = gw_json_string(esc, sizeof(esc), v, strlen(v));
    if (!n) {
        o->full = 1;
        return;
    }
    puts_(o, sep);
    put(o, "\"", 1);
    puts_(o, key);
    put(o, "\":", 2);
    put(o, esc, n);
}

size_t gw_north_payload(const gw_outbox_row *row, char *buf, size_t cap)
{
    out o = {buf, 0, cap, 0};
    char num[32];
    put_field(&o, "{", "device", row->device);
    put_field(&o, ",", "product", row->product);
    put_field(&o, ",", "kind", row->kind);
    puts_(&o, ",\"time\":");
    put(&o, num, put_i64(num, row->ts));
    if (row->name)
        put_field(&o, ",", "name", row->name);
    if (row->msg_id)
        put_field(&o, ",", "messageId", row->msg_id);
    const char *pl = row->payload;
    size_t plen = row->payload ? row->payload_len : 0;
    if (reply_path(row->kind) && plen >= 2 && pl[0] == '{' && pl[plen - 1] == '}') {
        if (plen > 2) { /* the reply's members at top level */
            put(&o, ",", 1);
            put(&o, pl + 1, plen - 2);
        }
    } else if (plen) {
        puts_(&o, ",\"values\":");
        put(&o, pl, plen);
    } else {
        puts_(&o, ",\"values\":null");
    }
    put(&o, "}", 1);
    return finish(&o);
}

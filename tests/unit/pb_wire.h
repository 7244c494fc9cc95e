/* pb_wire.h: a tiny protobuf wire writer for tests, fuzz seeds and benches: builds iotgw.proto
 * messages (or deliberately broken ones) byte by byte, independent of the codec under test. */
#ifndef GW_TEST_PB_WIRE_H
#define GW_TEST_PB_WIRE_H

#include <stdint.h>
#include <string.h>

typedef struct pbw {
    uint8_t b[70000];
    size_t n;
} pbw;

static inline void pbw_raw(pbw *w, const void *p, size_t n)
{
    if (w->n + n <= sizeof(w->b)) {
        memcpy(w->b + w->n, p, n);
        w->n += n;
    }
}

static inline void pbw_varint(pbw *w, uint64_t v)
{
    do {
        uint8_t c = (uint8_t)(v & 0x7F);
        v >>= 7;
        if (v)
            c |= 0x80;
        pbw_raw(w, &c, 1);
    } while (v);
}

static inline void pbw_tag(pbw *w, uint32_t num, unsigned wt)
{
    pbw_varint(w, (uint64_t)num << 3 | wt);
}

static inline void pbw_uint(pbw *w, uint32_t num, uint64_t v)
{
    pbw_tag(w, num, 0);
    pbw_varint(w, v);
}

static inline void pbw_sint(pbw *w, uint32_t num, int64_t v)
{
    pbw_uint(w, num, ((uint64_t)v << 1) ^ (uint64_t)(v >> 63));
}

static inline void pbw_double(pbw *w, uint32_t num, double d)
{
    uint8_t le[8];
    uint64_t u;
    memcpy(&u, &d, 8);
    for (int i = 0; i < 8; i++)
        le[i] = (uint8_t)(u >> (8 * i));
    pbw_tag(w, num, 1);
    pbw_raw(w, le, 8);
}

static inline void pbw_bytes(pbw *w, uint32_t num, const void *p, size_t n)
{
    pbw_tag(w, num, 2);
    pbw_varint(w, n);
    pbw_raw(w, p, n);
}

static inline void pbw_str(pbw *w, uint32_t num, const char *s)
{
    pbw_bytes(w, num, s, strlen(s));
}

static inline void pbw_sub(pbw *w, uint32_t num, const pbw *sub)
{
    pbw_bytes(w, num, sub->b, sub->n);
}

/* Field{name, Value} messages; the value is the bytes of a Value (its oneof member). */
static inline void pbw_field(pbw *w, uint32_t num, const char *name, const pbw *value)
{
    static pbw f;
    f.n = 0;
    pbw_str(&f, 1, name);
    pbw_sub(&f, 2, value);
    pbw_sub(w, num, &f);
}

static inline void pbv_int(pbw *v, int64_t x)
{
    v->n = 0;
    pbw_sint(v, 1, x);
}

static inline void pbv_double(pbw *v, double x)
{
    v->n = 0;
    pbw_double(v, 2, x);
}

static inline void pbv_bool(pbw *v, int x)
{
    v->n = 0;
    pbw_uint(v, 3, x ? 1 : 0);
}

static inline void pbv_str(pbw *v, const char *s)
{
    v->n = 0;
    pbw_str(v, 4, s);
}

/* DeviceMessage body members */
enum { PB_REPORT = 10, PB_EVENT, PB_FREPLY, PB_WREPLY, PB_LOGIN, PB_HEARTBEAT };

#endif

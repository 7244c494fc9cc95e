/* binary_hmac.c: SHA-256 (FIPS 180-4) and HMAC-SHA256 (RFC 2104) for the layout's "auth" section,
 * plus a constant-time comparison. Small and portable; no external crypto library. */
#include "internal.h"

#include <string.h>

static const uint32_t K[64] = {
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
};

#define ROR(x, n) (((x) >> (n)) | ((x) << (32 - (n))))

static void sha256_block(uint32_t h[8], const uint8_t *p)
{
    uint32_t w[64], a, b, c, d, e, f, g, k;
    for (int i = 0; i < 16; i++)
        w[i] = (uint32_t)p[4 * i] << 24 | (uint32_t)p[4 * i + 1] << 16 |
               (uint32_t)p[4 * i + 2] << 8 | p[4 * i + 3];
    for (int i = 16; i < 64; i++) {
        uint32_t s0 = ROR(w[i - 15], 7) ^ ROR(w[i - 15], 18) ^ (w[i - 15] >> 3);
        uint32_t s1 = ROR(w[i - 2], 17) ^ ROR(w[i - 2], 19) ^ (w[i - 2] >> 10);
        w[i] = w[i - 16] + s0 + w[i - 7] + s1;
    }
    a = h[0], b = h[1], c = h[2], d = h[3], e = h[4], f = h[5], g = h[6], k = h[7];
    for (int i = 0; i < 64; i++) {
        uint32_t t1 =
            k + (ROR(e, 6) ^ ROR(e, 11) ^ ROR(e, 25)) + ((e & f) ^ (~e & g)) + K[i] + w[i];
        uint32_t t2 = (ROR(a, 2) ^ ROR(a, 13) ^ ROR(a, 22)) + ((a & b) ^ (a & c) ^ (b & c));
        k = g, g = f, f = e, e = d + t1, d = c, c = b, b = a, a = t1 + t2;
    }
    h[0] += a, h[1] += b, h[2] += c, h[3] += d, h[4] += e, h[5] += f, h[6] += g, h[7] += k;
}

void gw__sha256_init(gw__sha256_ctx *s)
{
    static const uint32_t h0[8] = {0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a,
                                   0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19};
    memcpy(s->h, h0, sizeof(h0));
    s->n = 0;
    s->used = 0;
}

void gw__sha256_update(gw__sha256_ctx *s, const void *data, size_t len)
{
    const uint8_t *p = data;
    s->n += len;
    if (s->used) {
        size_t take = 64 - s->used < len ? 64 - s->used : len;
        memcpy(s->buf + s->used, p, take);
        s->used += take, p += take, len -= take;
        if (s->used < 64)
            return;
        sha256_block(s->h, s->buf);
        s->used = 0;
    }
    for (; len >= 64; p += 64, len -= 64)
        sha256_block(s->h, p);
    memcpy(s->buf, p, len);
    s->used = len;
}

void gw__sha256_final(gw__sha256_ctx *s, uint8_t out[32])
{
    uint64_t bits = s->n * 8;
    uint8_t pad[72] = {0x80};
    size_t padlen = (s->used < 56 ? 56 : 120) - s->used;
    for (int i = 0; i < 8; i++)
        pad[padlen + i] = (uint8_t)(bits >> (56 - 8 * i));
    gw__sha256_update(s, pad, padlen + 8);
    for (int i = 0; i < 8; i++)
        for (int j = 0; j < 4; j++)
            out[4 * i + j] = (uint8_t)(s->h[i] >> (24 - 8 * j));
}

void gw__sha256(const void *data, size_t len, uint8_t out[32])
{
    gw__sha256_ctx s;
    gw__sha256_init(&s);
    gw__sha256_update(&s, data, len);
    gw__sha256_final(&s, out);
}

void gw__hmac_sha256(const void *key, size_t key_len, const void *data, size_t len, uint8_t out[32])
{
    uint8_t k[64] = {0}, pad[64], inner[32];
    gw__sha256_ctx s;
    if (key_len > 64)
        gw__sha256(key, key_len, k);
    else if (key_len)
        memcpy(k, key, key_len);
    for (int i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x36;
    gw__sha256_init(&s);
    gw__sha256_update(&s, pad, 64);
    gw__sha256_update(&s, data, len);
    gw__sha256_final(&s, inner);
    for (int i = 0; i < 64; i++)
        pad[i] = k[i] ^ 0x5c;
    gw__sha256_init(&s);
    gw__sha256_update(&s, pad, 64);
    gw__sha256_update(&s, inner, 32);
    gw__sha256_final(&s, out);
}

bool gw__ct_equal(const uint8_t *a, const uint8_t *b, size_t n)
{
    volatile uint8_t diff = 0;
    for (size_t i = 0; i < n; i++)
        diff |= a[i] ^ b[i];
    return diff == 0;
}

/* Where the MAC and the bytes it covers lie in a body of len bytes; NULL when they fit, else why
 * not. With a check, the check covers the MAC and the MAC does not cover the check. */
const char *gw__binary_mac_place(const bin_layout *l, int64_t len, size_t *from, size_t *to,
                                 size_t *at)
{
    int64_t f = l->mac_from < 0 ? len + l->mac_from : l->mac_from;
    int64_t t = l->mac_to < 0 ? len + l->mac_to : l->mac_to;
    int64_t a = l->mac_at < 0 ? len + l->mac_at : l->mac_at;
    if (f < 0 || t > len || f > t)
        return "the MAC's range does not fit the frame";
    if (a < 0 || a + l->mac_size > len)
        return "the MAC does not fit the frame";
    if (a < t && f < a + l->mac_size)
        return "the MAC lies inside the bytes it covers";
    if (l->algo) {
        int64_t cf = l->ck_from < 0 ? len + l->ck_from : l->ck_from;
        int64_t ct = l->ck_to < 0 ? len + l->ck_to : l->ck_to;
        int64_t ca = l->ck_at < 0 ? len + l->ck_at : l->ck_at;
        if (a < cf || a + l->mac_size > ct)
            return "the check must cover the MAC (the MAC is computed first, then the check)";
        if (ca < t && f < ca + l->ck_width)
            return "the MAC must not cover the check (the check is computed after the MAC)";
    }
    *from = (size_t)f, *to = (size_t)t, *at = (size_t)a;
    return NULL;
}

/* The full HMAC-SHA256 of a body's covered bytes with secret; -1 when the MAC does not fit. */
int gw__binary_mac(const bin_layout *l, const uint8_t *body, size_t len, const char *secret,
                   uint8_t mac[32], size_t *at)
{
    size_t from, to;
    if (!secret || gw__binary_mac_place(l, (int64_t)len, &from, &to, at))
        return -1;
    gw__hmac_sha256(secret, strlen(secret), body + from, to - from, mac);
    return 0;
}

/* frame.auth_code: the code a register message's answer hands out and a login must carry,
 * derived from the device's secret so that the gateway stores nothing per registration. */
int gw__binary_auth_code(const bin_layout *l, const char *secret, const char *device_id, char *out,
                         size_t cap)
{
    static const char hex[] = "0123456789abcdef";
    static const char label[] = "auth_code:"; /* apart from every frame a MAC covers */
    uint8_t data[sizeof(label) - 1 + 64], mac[32];
    size_t idn = device_id ? strnlen(device_id, 64) : 0;
    if (!l->has_auth_code || !secret || !device_id || cap < 2u * l->code_size + 1)
        return -1;
    memcpy(data, label, sizeof(label) - 1);
    memcpy(data + sizeof(label) - 1, device_id, idn);
    gw__hmac_sha256(secret, strlen(secret), data, sizeof(label) - 1 + idn, mac);
    for (size_t i = 0; i < l->code_size; i++) {
        out[2 * i] = hex[mac[i] >> 4];
        out[2 * i + 1] = hex[mac[i] & 15];
    }
    out[2 * l->code_size] = '\0';
    return 0;
}

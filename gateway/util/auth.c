/* auth.c: device secret checks: constant-time comparison of clear secrets, PBKDF2-SHA256 hashes
 * ("$pbkdf2-sha256$iter$salt$hash") and the lock-free verified-secret cache in front of them. */
#include "auth.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include "error.h"
#include "metrics.h"

#define SECRET_MAX 255 /* as devices.json allows */

bool gw_secret_equal(const char *secret, const void *given, size_t len)
{
    const unsigned char *g = given;
    size_t sl = strlen(secret);
    unsigned char diff = (unsigned char)(sl != len);
    for (size_t i = 0; i < len; i++)
        diff |= (unsigned char)(g[i] ^ (unsigned char)secret[i < sl ? i : 0]);
    return diff == 0;
}

bool gw_secret_is_hash(const char *stored)
{
    return stored && strncmp(stored, GW_SECRET_HASH_PREFIX, strlen(GW_SECRET_HASH_PREFIX)) == 0;
}

/* Standard base64 (padded) of exactly want bytes from the n characters at s. */
static bool b64_decode(const char *s, size_t n, unsigned char *out, size_t want)
{
    unsigned char buf[64];
    if (n == 0 || n % 4 || n / 4 * 3 > sizeof(buf))
        return false;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= 'A' && s[i] <= 'Z') || (s[i] >= 'a' && s[i] <= 'z') ||
              (s[i] >= '0' && s[i] <= '9') || s[i] == '+' || s[i] == '/' ||
              (s[i] == '=' && i >= n - 2)))
            return false;
    int got = EVP_DecodeBlock(buf, (const unsigned char *)s, (int)n);
    size_t pad = (s[n - 1] == '=') + (s[n - 2] == '=');
    if (got < 0 || (size_t)got - pad != want)
        return false;
    memcpy(out, buf, want);
    return true;
}

typedef struct parsed {
    uint32_t iterations;
    unsigned char salt[GW_SECRET_SALT_LEN];
    unsigned char hash[GW_SECRET_HASH_LEN];
} parsed;

static int parse(const char *stored, parsed *p, const char **why)
{
    const char *s = stored + strlen(GW_SECRET_HASH_PREFIX), *salt, *hash;
    char *end;

    *why = NULL;
    if (!gw_secret_is_hash(stored)) {
        *why = "does not start with " GW_SECRET_HASH_PREFIX;
        return GW_EINVAL;
    }
    if (*s < '1' || *s > '9') {
        *why = "iterations must be a positive decimal number";
        return GW_EINVAL;
    }
    unsigned long long it = strtoull(s, &end, 10);
    if (*end != '$' || it > GW_SECRET_ITERATIONS_MAX) {
        *why = "iterations must be 1..10000000 followed by $";
        return GW_EINVAL;
    }
    p->iterations = (uint32_t)it;
    salt = end + 1;
    if (!(hash = strchr(salt, '$')) ||
        !b64_decode(salt, (size_t)(hash - salt), p->salt, sizeof(p->salt))) {
        *why = "the salt must be 16 bytes in base64";
        return GW_EINVAL;
    }
    hash++;
    if (!b64_decode(hash, strlen(hash), p->hash, sizeof(p->hash))) {
        *why = "the hash must be 32 bytes in base64";
        return GW_EINVAL;
    }
    return 0;
}

int gw_secret_hash_parse(const char *stored, uint32_t *iterations, const char **why)
{
    parsed p;
    int rc = parse(stored, &p, why);
    if (rc == 0 && iterations)
        *iterations = p.iterations;
    return rc;
}

int gw_secret_hash(const void *secret, size_t len, uint32_t iterations, char *out, size_t cap)
{
    unsigned char salt[GW_SECRET_SALT_LEN], hash[GW_SECRET_HASH_LEN];
    char salt64[32], hash64[48];

    if (iterations < 1 || iterations > GW_SECRET_ITERATIONS_MAX || cap < GW_SECRET_HASH_CAP ||
        len == 0 || len > SECRET_MAX)
        return GW_EINVAL;
    if (RAND_bytes(salt, sizeof(salt)) != 1 ||
        PKCS5_PBKDF2_HMAC(secret, (int)len, salt, sizeof(salt), (int)iterations, EVP_sha256(),
                          sizeof(hash), hash) != 1)
        return GW_ENOMEM;
    EVP_EncodeBlock((unsigned char *)salt64, salt, sizeof(salt));
    EVP_EncodeBlock((unsigned char *)hash64, hash, sizeof(hash));
    int n =
        snprintf(out, cap, GW_SECRET_HASH_PREFIX "%" PRIu32 "$%s$%s", iterations, salt64, hash64);
    return n > 0 && (size_t)n < cap ? 0 : GW_EINVAL;
}

/* ---- The verified-secret cache ----
 * An entry holds SipHash-2-4-128(key, stored NUL given) of a secret PBKDF2 accepted (key: 16
 * random bytes per process; SipHash is a keyed PRF, so without the key no other input can be made
 * to match an entry). Sets of CACHE_WAYS entries, the set chosen by stored; a miss fills an empty
 * entry of its set, else the one a per-thread counter points at. Words are written and read with
 * relaxed atomics: a torn entry (two writers at once) matches no digest, so a race or an eviction
 * costs one more PBKDF2, nothing else. GW_SECRET_CACHE_SLOTS x 16 bytes of BSS (1 MiB), resident
 * only where used (16 bytes a device). */
#define CACHE_WAYS 4
#define CACHE_SETS (GW_SECRET_CACHE_SLOTS / CACHE_WAYS)
static _Atomic uint64_t cache[CACHE_SETS][CACHE_WAYS][2];
static uint8_t cache_key[16];
static pthread_once_t cache_once = PTHREAD_ONCE_INIT;
static _Thread_local unsigned cache_victim;

static void cache_init(void)
{
    if (RAND_bytes(cache_key, sizeof(cache_key)) != 1) {
        /* no randomness: the cache still works, only less opaque in a memory dump */
        for (size_t i = 0; i < sizeof(cache_key); i++)
            cache_key[i] = (uint8_t)(i * 131u + (uintptr_t)&cache_key);
    }
}

static uint64_t le64(const uint8_t *p)
{
    uint64_t v = 0;
    for (int i = 7; i >= 0; i--)
        v = v << 8 | p[i];
    return v;
}

#define ROTL(x, b) (uint64_t)(((x) << (b)) | ((x) >> (64 - (b))))
#define SIPROUND                                                                                   \
    do {                                                                                           \
        v0 += v1, v1 = ROTL(v1, 13), v1 ^= v0, v0 = ROTL(v0, 32);                                  \
        v2 += v3, v3 = ROTL(v3, 16), v3 ^= v2;                                                     \
        v0 += v3, v3 = ROTL(v3, 21), v3 ^= v0;                                                     \
        v2 += v1, v1 = ROTL(v1, 17), v1 ^= v2, v2 = ROTL(v2, 32);                                  \
    } while (0)

/* SipHash-2-4 with a 128-bit output (the reference algorithm, Aumasson and Bernstein). */
void gw__siphash128(const uint8_t *in, size_t len, const uint8_t key[16], uint64_t out[2])
{
    uint64_t k0 = le64(key), k1 = le64(key + 8);
    uint64_t v0 = 0x736f6d6570736575ull ^ k0, v1 = 0x646f72616e646f6dull ^ k1;
    uint64_t v2 = 0x6c7967656e657261ull ^ k0, v3 = 0x7465646279746573ull ^ k1;
    uint64_t b = (uint64_t)len << 56;
    const uint8_t *end = in + len - len % 8;

    v1 ^= 0xee;
    for (; in != end; in += 8) {
        uint64_t m = le64(in);
        v3 ^= m;
        SIPROUND;
        SIPROUND;
        v0 ^= m;
    }
    for (size_t i = 0; i < len % 8; i++)
        b |= (uint64_t)in[i] << (8 * i);
    v3 ^= b;
    SIPROUND;
    SIPROUND;
    v0 ^= b;
    v2 ^= 0xee;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    out[0] = v0 ^ v1 ^ v2 ^ v3;
    v1 ^= 0xdd;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    SIPROUND;
    out[1] = v0 ^ v1 ^ v2 ^ v3;
}

/* The set of a stored hash: FNV-1a over its last 16 characters (the hash's own random base64). */
static size_t set_of(const char *stored, size_t sl)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = sl > 16 ? sl - 16 : 0; i < sl; i++)
        h = (h ^ (unsigned char)stored[i]) * 1099511628211ull;
    return (size_t)(h ^ (h >> 29)) & (CACHE_SETS - 1);
}

bool gw_secret_check(const char *stored, const void *given, size_t len)
{
    parsed p;
    const char *why;
    uint64_t d[2];
    uint8_t buf[GW_SECRET_HASH_CAP + 1 + SECRET_MAX], hash[GW_SECRET_HASH_LEN];
    size_t sl;

    if (!stored)
        return false;
    if (!gw_secret_is_hash(stored))
        return gw_secret_equal(stored, given, len);
    if (len == 0 || len > SECRET_MAX || (sl = strlen(stored)) >= GW_SECRET_HASH_CAP)
        return false;
    pthread_once(&cache_once, cache_init);
    memcpy(buf, stored, sl + 1); /* with its NUL: (stored, given) splits one way only */
    memcpy(buf + sl + 1, given, len);
    gw__siphash128(buf, sl + 1 + len, cache_key, d);
    _Atomic uint64_t(*set)[2] = cache[set_of(stored, sl)];
    for (int w = 0; w < CACHE_WAYS; w++) {
        uint64_t diff = (atomic_load_explicit(&set[w][0], memory_order_relaxed) ^ d[0]) |
                        (atomic_load_explicit(&set[w][1], memory_order_relaxed) ^ d[1]);
        if (diff == 0) {
            gw_metric_inc(GW_M_SECRET_CACHED);
            return true;
        }
    }
    gw_metric_inc(GW_M_SECRET_PBKDF2);
    if (parse(stored, &p, &why) != 0 ||
        PKCS5_PBKDF2_HMAC(given, (int)len, p.salt, sizeof(p.salt), (int)p.iterations, EVP_sha256(),
                          sizeof(hash), hash) != 1 ||
        CRYPTO_memcmp(hash, p.hash, sizeof(hash)) != 0)
        return false;
    unsigned w = CACHE_WAYS;
    for (unsigned k = 0; k < CACHE_WAYS && w == CACHE_WAYS; k++) /* an empty way first */
        if (!atomic_load_explicit(&set[k][0], memory_order_relaxed))
            w = k;
    if (w == CACHE_WAYS)
        w = cache_victim++ % CACHE_WAYS;
    atomic_store_explicit(&set[w][0], d[0], memory_order_relaxed);
    atomic_store_explicit(&set[w][1], d[1], memory_order_relaxed);
    return true;
}

int gw_secret_hash_main(const char *arg, FILE *in, FILE *out)
{
    char line[SECRET_MAX + 3], hash[GW_SECRET_HASH_CAP];
    size_t n;

    if (!arg) {
        if (!fgets(line, sizeof(line), in)) {
            fprintf(stderr, "iotgw: --hash-secret: no secret on stdin\n");
            return 1;
        }
        line[strcspn(line, "\r\n")] = 0;
        arg = line;
    }
    n = strlen(arg);
    if (n == 0 || n > SECRET_MAX) {
        fprintf(stderr, "iotgw: --hash-secret: the secret must be 1..%d bytes\n", SECRET_MAX);
        return 1;
    }
    if (gw_secret_hash(arg, n, GW_SECRET_ITERATIONS, hash, sizeof(hash)) != 0) {
        fprintf(stderr, "iotgw: --hash-secret: hashing failed\n");
        return 1;
    }
    fprintf(out, "%s\n", hash);
    return 0;
}

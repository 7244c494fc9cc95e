/* auth.h: device credential checks shared by every adapter: constant-time comparison of a
 * secret kept in clear, and salted PBKDF2-SHA256 hashes of secrets that protocols only compare
 * (MQTT password, TCP login, CoAP ?token=), with a verified-secret cache so that a reconnect
 * storm does not pay PBKDF2 for every CONNECT. */
#ifndef GW_AUTH_H
#define GW_AUTH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* "$pbkdf2-sha256$<iterations>$<salt, base64>$<hash, base64>" (like mosquitto's password file). */
#define GW_SECRET_HASH_PREFIX "$pbkdf2-sha256$"
/* Iterations of a new hash (iotgw --hash-secret, the device API). Chosen so that the first
 * CONNECT of a device costs well under a millisecond (docs/PERFORMANCE.md has the figures). */
#define GW_SECRET_ITERATIONS     1000
#define GW_SECRET_ITERATIONS_MAX 10000000u
#define GW_SECRET_SALT_LEN       16
#define GW_SECRET_HASH_LEN       32
/* Bytes of a hash string with its NUL (the longest iteration count, padded base64). */
#define GW_SECRET_HASH_CAP 112

/* True when given (len bytes) equals the device's secret. Takes time that depends only on len, not
 * on where the first difference is, so a peer cannot find a secret byte by byte. */
bool gw_secret_equal(const char *secret, const void *given, size_t len);

/* True when stored (a device's secret as configured) looks like a hash (starts with the prefix). */
bool gw_secret_is_hash(const char *stored);

/* Checks a hash string's shape (iterations in range, salt and hash decode to their lengths).
 * 0, or GW_EINVAL with why (a static text) set. */
int gw_secret_hash_parse(const char *stored, uint32_t *iterations, const char **why);

/* Hashes secret (len bytes) with a fresh random salt into out (cap >= GW_SECRET_HASH_CAP).
 * 0, GW_EINVAL (iterations out of range, cap too small), GW_ENOMEM (OpenSSL failed). */
int gw_secret_hash(const void *secret, size_t len, uint32_t iterations, char *out, size_t cap);

/* The check every adapter makes: true when given (len bytes) is the device's secret. stored in
 * clear: gw_secret_equal. stored a hash: a keyed SipHash-128 of (stored, given) is looked up in
 * the verified-secret cache (a fixed, lock-free table of GW_SECRET_CACHE_SLOTS entries of 16
 * bytes, 4-way sets chosen by stored); a miss runs PBKDF2 and, on success, fills an entry. Any
 * thread. */
#define GW_SECRET_CACHE_SLOTS 65536
bool gw_secret_check(const char *stored, const void *given, size_t len);

/* iotgw --hash-secret [SECRET]: hashes SECRET (or the first line of in, without its line end) and
 * prints the hash on out. Returns the process exit code (0, 1 with a message on stderr). */
int gw_secret_hash_main(const char *arg, FILE *in, FILE *out);

/* SipHash-2-4, 128-bit output, of in under key (the cache's digest; exposed for its unit test). */
void gw__siphash128(const uint8_t *in, size_t len, const uint8_t key[16], uint64_t out[2]);

#endif

/* auth.c: constant-time secret comparison for device authentication. */
#include "auth.h"

#include <string.h>

bool gw_secret_equal(const char *secret, const void *given, size_t len)
{
    const unsigned char *g = given;
    size_t sl = strlen(secret);
    unsigned char diff = (unsigned char)(sl != len);
    for (size_t i = 0; i < len; i++)
        diff |= (unsigned char)(g[i] ^ (unsigned char)secret[i < sl ? i : 0]);
    return diff == 0;
}

/* auth.h: device credential checks shared by every adapter. */
#ifndef GW_AUTH_H
#define GW_AUTH_H

#include <stdbool.h>
#include <stddef.h>

/* True when given (len bytes) equals the device's secret. Takes time that depends only on len, not
 * on where the first difference is, so a peer cannot find a secret byte by byte. */
bool gw_secret_equal(const char *secret, const void *given, size_t len);

#endif

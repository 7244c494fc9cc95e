/* stream_tls_identity.c: the device id a URI SAN names (gw_stream_tls_uri_id, the only parser of
 * the TLS layer: OpenSSL parses the rest): the last segment after '/' or ':', bounded, never
 * empty, never past an embedded NUL. */
#include "test.h"
#include "protocols/stream/stream_tls.h"

#include <string.h>

static void check(const char *uri, const char *want)
{
    char out[64];
    memset(out, 'x', sizeof(out));
    int n = gw_stream_tls_uri_id(uri, strlen(uri), out, sizeof(out));
    if (!want) {
        CHECK_INT(n, -1);
        return;
    }
    CHECK_INT(n, (int)strlen(want));
    CHECK_STR(out, want);
}

int main(void)
{
    check("spiffe://example.org/device/t-001", "t-001");
    check("urn:iotgw:device:t-002", "t-002");
    check("t-003", "t-003");
    check("https://h/a/b/c-4.x", "c-4.x");
    check("urn:dev:", NULL);
    check("spiffe://example.org/device/", NULL);
    check("", NULL);
    /* exactly 63 bytes fit a 64-byte buffer; 64 do not */
    char id[80] = "urn:x:";
    memset(id + 6, 'a', 63);
    id[69] = 0;
    char out[64];
    CHECK_INT(gw_stream_tls_uri_id(id, strlen(id), out, sizeof(out)), 63);
    id[69] = 'a';
    id[70] = 0;
    CHECK_INT(gw_stream_tls_uri_id(id, strlen(id), out, sizeof(out)), -1);
    /* an embedded NUL (a crafted SAN) is refused, not truncated */
    const char nul[] = "urn:dev:t-0\0001";
    CHECK_INT(gw_stream_tls_uri_id(nul, sizeof(nul) - 1, out, sizeof(out)), -1);
    /* the length bounds the read: no NUL needed */
    CHECK_INT(gw_stream_tls_uri_id("urn:a:bc", 7, out, sizeof(out)), 1);
    CHECK_STR(out, "b");
    TEST_MAIN_END();
}

/* fuzz_proxy.c: the PROXY protocol v2 parser (protocols/stream/stream_proxy.c) on arbitrary bytes,
 * and the "from" matcher. Checks: an accepted header is 16..GW_PROXY_MAX bytes within the input,
 * its family is IPv4 or IPv6 when it has a source, every strict prefix of it asks for more, and
 * the same bytes with anything appended give the same length; a refusal names a parser reason and
 * stays a refusal with more bytes; "need more" never happens on GW_PROXY_MAX bytes. The first
 * input line is also parsed as a "from" entry and matched against the header's source. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "protocols/stream/stream_proxy.h"

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #c);                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    gw_proxy_hdr h, h2;
    gw_proxy_err e, e2;
    int r = gw_proxy_parse(data, size, &h, &e);

    if (r > 0) {
        REQUIRE(r >= 16 && (size_t)r <= size && (size_t)r <= GW_PROXY_MAX);
        REQUIRE(e == GW_PROXY_ERR_NONE);
        if (h.has_src)
            REQUIRE(h.src.sa.sa_family == AF_INET || h.src.sa.sa_family == AF_INET6);
        for (size_t i = 0; i < (size_t)r; i++)
            REQUIRE(gw_proxy_parse(data, i, &h2, &e2) == 0);
        REQUIRE(gw_proxy_parse(data, (size_t)r, &h2, &e2) == r);
        REQUIRE(memcmp(&h, &h2, sizeof(h)) == 0);
    } else if (r < 0) {
        REQUIRE(e > GW_PROXY_ERR_NONE && e < GW_PROXY_ERR_SOURCE);
        /* a refusal is final: more bytes never turn it into a header */
        uint8_t *more = malloc(size + 64);
        REQUIRE(more);
        memcpy(more, data, size);
        memset(more + size, 0, 64);
        REQUIRE(gw_proxy_parse(more, size + 64, &h2, &e2) < 0 && e2 == e);
        free(more);
    } else {
        REQUIRE(size < GW_PROXY_MAX);
    }

    /* "from": the input's first line as an entry, matched against the source */
    const uint8_t *nl = memchr(data, '\n', size < 80 ? size : 80);
    if (nl) {
        char s[80];
        size_t n = (size_t)(nl - data);
        memcpy(s, data, n);
        s[n] = '\0';
        gw_proxy_net net;
        if (gw_proxy_net_parse(s, &net) == 0) {
            REQUIRE(net.family == AF_INET || net.family == AF_INET6);
            REQUIRE(net.bits <= (net.family == AF_INET ? 32 : 128));
            if (r > 0 && h.has_src)
                (void)gw_proxy_net_match(&net, 1, &h.src.sa);
        }
    }
    return 0;
}

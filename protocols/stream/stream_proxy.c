/* stream_proxy.c: the PROXY protocol v2 header parser and the "from" address matcher
 * (stream_proxy.h). Pure and bounded: the header is at most GW_PROXY_MAX bytes; TLVs are skipped.
 */
#include "stream_proxy.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const uint8_t sig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

static int refuse(gw_proxy_err *err, gw_proxy_err e)
{
    *err = e;
    return -1;
}

int gw_proxy_parse(const uint8_t *p, size_t n, gw_proxy_hdr *out, gw_proxy_err *err)
{
    size_t k = n < sizeof(sig) ? n : sizeof(sig);

    *err = GW_PROXY_ERR_NONE;
    if (memcmp(p, sig, k) != 0) {
        /* v1's "PROXY ..." line: told apart by its first byte, so the reason does not change
         * with how much of it has arrived */
        return refuse(err, p[0] == 'P' ? GW_PROXY_ERR_V1 : GW_PROXY_ERR_SIGNATURE);
    }
    if (n < 13)
        return 0;
    if ((p[12] >> 4) != 2)
        return refuse(err, GW_PROXY_ERR_VERSION);
    uint8_t cmd = p[12] & 0x0F;
    if (cmd > 1)
        return refuse(err, GW_PROXY_ERR_COMMAND);
    if (n < 16)
        return 0;
    size_t len = (size_t)p[14] << 8 | p[15];
    if (16 + len > GW_PROXY_MAX)
        return refuse(err, GW_PROXY_ERR_TOO_LONG);
    uint8_t fam = p[13];
    if (cmd == 1 && fam != 0x00 && fam != 0x11 && fam != 0x21)
        return refuse(err, GW_PROXY_ERR_FAMILY);
    if (cmd == 1 && ((fam == 0x11 && len < 12) || (fam == 0x21 && len < 36)))
        return refuse(err, GW_PROXY_ERR_LENGTH);
    if (n < 16 + len)
        return 0;
    memset(out, 0, sizeof(*out));
    const uint8_t *a = p + 16;
    if (cmd == 1 && fam == 0x11) {
        out->has_src = true;
        out->src.in.sin_family = AF_INET;
        memcpy(&out->src.in.sin_addr, a, 4);
        memcpy(&out->src.in.sin_port, a + 8, 2); /* network order as sent */
    } else if (cmd == 1 && fam == 0x21) {
        out->has_src = true;
        out->src.in6.sin6_family = AF_INET6;
        memcpy(&out->src.in6.sin6_addr, a, 16);
        memcpy(&out->src.in6.sin6_port, a + 32, 2);
    }
    return (int)(16 + len);
}

const char *gw_proxy_err_name(gw_proxy_err e)
{
    static const char *const names[GW_PROXY_ERR_COUNT] = {
        "none",   "signature", "v1",     "version", "command",  "family",
        "length", "too_long",  "source", "timeout", "truncated"};
    return (unsigned)e < GW_PROXY_ERR_COUNT ? names[e] : "unknown";
}

int gw_proxy_net_parse(const char *s, gw_proxy_net *out)
{
    char buf[64];
    const char *slash = strchr(s, '/');
    size_t alen = slash ? (size_t)(slash - s) : strlen(s);
    long bits = -1;

    if (alen == 0 || alen >= sizeof(buf))
        return -1;
    memcpy(buf, s, alen);
    buf[alen] = '\0';
    memset(out, 0, sizeof(*out));
    if (inet_pton(AF_INET, buf, out->addr) == 1)
        out->family = AF_INET;
    else if (inet_pton(AF_INET6, buf, out->addr) == 1)
        out->family = AF_INET6;
    else
        return -1;
    int max = out->family == AF_INET ? 32 : 128;
    if (slash) {
        char *end;
        if (slash[1] < '0' || slash[1] > '9')
            return -1;
        bits = strtol(slash + 1, &end, 10);
        if (*end || bits > max)
            return -1;
    } else {
        bits = max;
    }
    out->bits = (uint8_t)bits;
    /* host bits set ("10.1.2.3/8") is most likely a typo: refused */
    for (int i = (int)bits; i < max; i++)
        if (out->addr[i / 8] & (0x80 >> (i % 8)))
            return -1;
    return 0;
}

static bool in_net(const gw_proxy_net *net, const uint8_t *a)
{
    int full = net->bits / 8, rest = net->bits % 8;
    if (memcmp(net->addr, a, (size_t)full) != 0)
        return false;
    if (rest == 0)
        return true;
    uint8_t mask = (uint8_t)(0xFF << (8 - rest));
    return (net->addr[full] & mask) == (a[full] & mask);
}

bool gw_proxy_net_match(const gw_proxy_net *v, size_t n, const struct sockaddr *sa)
{
    uint8_t a4[4], a6[16];
    bool have4 = false, have6 = false;

    if (sa->sa_family == AF_INET) {
        memcpy(a4, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        have4 = true;
    } else if (sa->sa_family == AF_INET6) {
        memcpy(a6, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        have6 = true;
        static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xFF, 0xFF};
        if (memcmp(a6, mapped, 12) == 0) {
            memcpy(a4, a6 + 12, 4);
            have4 = true;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (v[i].family == AF_INET && have4 && in_net(&v[i], a4))
            return true;
        if (v[i].family == AF_INET6 && have6 && in_net(&v[i], a6))
            return true;
    }
    return false;
}

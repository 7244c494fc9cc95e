/* stream_proxy.c: the PROXY protocol v2 parser and the "from" matcher (protocols/stream/
 * stream_proxy.c): valid IPv4, IPv6, LOCAL and UNSPEC headers with TLVs, every prefix of a valid
 * header asks for more, and each refusal (bad signature, v1 text, version, command, UDP and unix
 * families, short address block, over GW_PROXY_MAX); CIDR parsing and matching. */
#include <arpa/inet.h>

#include "protocols/stream/stream_proxy.h"
#include "test.h"

static const uint8_t SIG[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};

/* header: signature, ver/cmd, fam, then body of blen bytes */
static size_t mk(uint8_t *b, uint8_t vc, uint8_t fam, const uint8_t *body, size_t blen)
{
    memcpy(b, SIG, 12);
    b[12] = vc;
    b[13] = fam;
    b[14] = (uint8_t)(blen >> 8);
    b[15] = (uint8_t)blen;
    if (blen)
        memcpy(b + 16, body, blen);
    return 16 + blen;
}

static int parse(const uint8_t *b, size_t n, gw_proxy_hdr *h, gw_proxy_err *e)
{
    return gw_proxy_parse(b, n, h, e);
}

/* Every strict prefix of a whole header asks for more. */
static void check_prefixes(const uint8_t *b, size_t n)
{
    gw_proxy_hdr h;
    gw_proxy_err e;
    for (size_t i = 0; i < n; i++) {
        int r = parse(b, i, &h, &e);
        if (r != 0) {
            fprintf(stderr, "prefix %zu of %zu: %d\n", i, n, r);
            CHECK(r == 0);
            return;
        }
    }
    CHECK(1);
}

static void test_v4(void)
{
    uint8_t b[64], body[12 + 7] = {192, 0, 2, 10, 10, 0, 0, 1, 0xC3, 0x51, 0x07, 0x5B};
    /* a TLV after the addresses: PP2_TYPE_AUTHORITY "abcd" */
    body[12] = 0x02, body[13] = 0, body[14] = 4;
    memcpy(body + 15, "abcd", 4);
    size_t n = mk(b, 0x21, 0x11, body, sizeof(body));
    b[n] = 'X'; /* the adapter's first byte follows */
    gw_proxy_hdr h;
    gw_proxy_err e;
    CHECK_INT(parse(b, n + 1, &h, &e), n);
    CHECK(h.has_src);
    CHECK_INT(h.src.sa.sa_family, AF_INET);
    char s[64];
    inet_ntop(AF_INET, &h.src.in.sin_addr, s, sizeof(s));
    CHECK_STR(s, "192.0.2.10");
    CHECK_INT(ntohs(h.src.in.sin_port), 50001);
    check_prefixes(b, n);
}

static void test_v6(void)
{
    uint8_t b[64], body[36] = {0};
    inet_pton(AF_INET6, "2001:db8::7", body);
    inet_pton(AF_INET6, "2001:db8::1", body + 16);
    body[32] = 0x12, body[33] = 0x34, body[34] = 0x07, body[35] = 0x5B;
    size_t n = mk(b, 0x21, 0x21, body, sizeof(body));
    gw_proxy_hdr h;
    gw_proxy_err e;
    CHECK_INT(parse(b, n, &h, &e), n);
    CHECK(h.has_src);
    CHECK_INT(h.src.sa.sa_family, AF_INET6);
    char s[64];
    inet_ntop(AF_INET6, &h.src.in6.sin6_addr, s, sizeof(s));
    CHECK_STR(s, "2001:db8::7");
    CHECK_INT(ntohs(h.src.in6.sin6_port), 0x1234);
    check_prefixes(b, n);
}

static void test_local_unspec(void)
{
    uint8_t b[64], body[12] = {1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2};
    gw_proxy_hdr h;
    gw_proxy_err e;
    /* LOCAL, no addresses */
    size_t n = mk(b, 0x20, 0x00, NULL, 0);
    CHECK_INT(parse(b, n, &h, &e), 16);
    CHECK(!h.has_src);
    /* LOCAL with a TCP4 block: ignored */
    n = mk(b, 0x20, 0x11, body, sizeof(body));
    CHECK_INT(parse(b, n, &h, &e), n);
    CHECK(!h.has_src);
    /* LOCAL with UDP: the family does not matter */
    n = mk(b, 0x20, 0x12, body, sizeof(body));
    CHECK_INT(parse(b, n, &h, &e), n);
    CHECK(!h.has_src);
    /* PROXY UNSPEC: keep the socket's address */
    n = mk(b, 0x21, 0x00, body, 4);
    CHECK_INT(parse(b, n, &h, &e), n);
    CHECK(!h.has_src);
}

static void test_refused(void)
{
    uint8_t b[1200], body[36] = {0};
    gw_proxy_hdr h;
    gw_proxy_err e;
    size_t n;

    /* bad signature: reported at the first differing byte */
    n = mk(b, 0x21, 0x11, body, 12);
    b[3] = 0x0B;
    CHECK_INT(parse(b, 4, &h, &e), -1);
    CHECK_INT(e, GW_PROXY_ERR_SIGNATURE);
    CHECK_INT(parse(b, 3, &h, &e), 0); /* still a prefix */
    /* an MQTT CONNECT first */
    const uint8_t mqtt[] = {0x10, 0x0C, 0, 4, 'M', 'Q', 'T', 'T'};
    CHECK_INT(parse(mqtt, sizeof(mqtt), &h, &e), -1);
    CHECK_INT(e, GW_PROXY_ERR_SIGNATURE);
    /* v1 text, even before its first space */
    const char *v1 = "PROXY TCP4 192.0.2.1 192.0.2.2 1000 1883\r\n";
    CHECK_INT(parse((const uint8_t *)v1, strlen(v1), &h, &e), -1);
    CHECK_INT(e, GW_PROXY_ERR_V1);
    CHECK_INT(parse((const uint8_t *)v1, 3, &h, &e), -1);
    CHECK_INT(e, GW_PROXY_ERR_V1);
    /* version 1 and 3 in the binary form */
    n = mk(b, 0x11, 0x11, body, 12);
    CHECK_INT(parse(b, 13, &h, &e), -1);
    CHECK_INT(e, GW_PROXY_ERR_VERSION);
    n = mk(b, 0x31, 0x11, body, 12);
    CHECK_INT(parse(b, n, &h, &e), -1);
    CHECK_INT(e, GW_PROXY_ERR_VERSION);
    /* command 2 */
    n = mk(b, 0x22, 0x11, body, 12);
    CHECK_INT(parse(b, n, &h, &e), -1);
    CHECK_INT(e, GW_PROXY_ERR_COMMAND);
    /* UDP over IPv4 / IPv6, unix stream, unknown: refused on a stream */
    const uint8_t fams[] = {0x12, 0x22, 0x31, 0x32, 0x01, 0x10, 0x41};
    for (size_t i = 0; i < sizeof(fams); i++) {
        n = mk(b, 0x21, fams[i], body, 36);
        CHECK_INT(parse(b, 16, &h, &e), -1); /* known from the fixed part */
        CHECK_INT(e, GW_PROXY_ERR_FAMILY);
    }
    /* address block shorter than the family needs */
    n = mk(b, 0x21, 0x11, body, 11);
    CHECK_INT(parse(b, n, &h, &e), -1);
    CHECK_INT(e, GW_PROXY_ERR_LENGTH);
    n = mk(b, 0x21, 0x21, body, 35);
    CHECK_INT(parse(b, n, &h, &e), -1);
    CHECK_INT(e, GW_PROXY_ERR_LENGTH);
    /* too long: refused from the length field alone; exactly GW_PROXY_MAX is fine */
    memset(b, 0, sizeof(b));
    n = mk(b, 0x21, 0x11, body, 12);
    b[14] = (GW_PROXY_MAX - 16 + 1) >> 8, b[15] = (GW_PROXY_MAX - 16 + 1) & 0xFF;
    CHECK_INT(parse(b, 16, &h, &e), -1);
    CHECK_INT(e, GW_PROXY_ERR_TOO_LONG);
    b[14] = 0xFF, b[15] = 0xFF;
    CHECK_INT(parse(b, 16, &h, &e), -1);
    CHECK_INT(e, GW_PROXY_ERR_TOO_LONG);
    b[14] = (GW_PROXY_MAX - 16) >> 8, b[15] = (GW_PROXY_MAX - 16) & 0xFF;
    CHECK_INT(parse(b, GW_PROXY_MAX - 1, &h, &e), 0);
    CHECK_INT(parse(b, GW_PROXY_MAX, &h, &e), GW_PROXY_MAX);
    /* empty input: need more */
    CHECK_INT(parse(b, 0, &h, &e), 0);
    CHECK_STR(gw_proxy_err_name(GW_PROXY_ERR_TOO_LONG), "too_long");
    CHECK_STR(gw_proxy_err_name(GW_PROXY_ERR_SOURCE), "source");
}

static struct sockaddr_storage sa(const char *ip)
{
    struct sockaddr_storage ss;
    memset(&ss, 0, sizeof(ss));
    if (inet_pton(AF_INET, ip, &((struct sockaddr_in *)&ss)->sin_addr) == 1)
        ss.ss_family = AF_INET;
    else if (inet_pton(AF_INET6, ip, &((struct sockaddr_in6 *)&ss)->sin6_addr) == 1)
        ss.ss_family = AF_INET6;
    return ss;
}

static bool match(const gw_proxy_net *v, size_t n, const char *ip)
{
    struct sockaddr_storage ss = sa(ip);
    return gw_proxy_net_match(v, n, (struct sockaddr *)&ss);
}

static void test_nets(void)
{
    gw_proxy_net v[4];
    CHECK_INT(gw_proxy_net_parse("127.0.0.1", &v[0]), 0);
    CHECK_INT(v[0].bits, 32);
    CHECK_INT(gw_proxy_net_parse("10.0.0.0/8", &v[1]), 0);
    CHECK_INT(gw_proxy_net_parse("::1", &v[2]), 0);
    CHECK_INT(v[2].bits, 128);
    CHECK_INT(gw_proxy_net_parse("2001:db8::/33", &v[3]), 0);
    CHECK(match(v, 4, "127.0.0.1"));
    CHECK(!match(v, 4, "127.0.0.2"));
    CHECK(match(v, 4, "10.255.1.2"));
    CHECK(!match(v, 4, "11.0.0.1"));
    CHECK(match(v, 4, "::1"));
    CHECK(match(v, 4, "::ffff:10.1.2.3")); /* IPv4-mapped on a dual-stack socket */
    CHECK(match(v, 4, "2001:db8:7fff::1"));
    CHECK(!match(v, 4, "2001:db8:8000::1"));
    CHECK(!match(v, 3, "2001:db8::1"));
    gw_proxy_net any;
    CHECK_INT(gw_proxy_net_parse("0.0.0.0/0", &any), 0);
    CHECK(match(&any, 1, "203.0.113.9"));
    gw_proxy_net x;
    CHECK_INT(gw_proxy_net_parse("10.1.2.3/8", &x), -1); /* host bits */
    CHECK_INT(gw_proxy_net_parse("10.0.0.0/33", &x), -1);
    CHECK_INT(gw_proxy_net_parse("::/129", &x), -1);
    CHECK_INT(gw_proxy_net_parse("10.0.0.0/", &x), -1);
    CHECK_INT(gw_proxy_net_parse("10.0.0.0/-1", &x), -1);
    CHECK_INT(gw_proxy_net_parse("10.0.0.0/8x", &x), -1);
    CHECK_INT(gw_proxy_net_parse("localhost", &x), -1);
    CHECK_INT(gw_proxy_net_parse("", &x), -1);
    CHECK_INT(gw_proxy_net_parse("/8", &x), -1);
}

int main(void)
{
    test_v4();
    test_v6();
    test_local_unspec();
    test_refused();
    test_nets();
    TEST_MAIN_END();
}

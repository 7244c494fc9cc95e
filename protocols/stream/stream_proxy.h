/* stream_proxy.h: the PROXY protocol version 2 header (HAProxy's binary form) that a load
 * balancer in TCP mode sends first on a stream connection, and the "proxy_protocol" listener
 * setting's address list ("from": addresses or CIDR prefixes allowed to send it). Pure: no libuv,
 * no allocation; stream_conn.c reads the header before TLS and the adapter's parser. */
#ifndef GW_STREAM_PROXY_H
#define GW_STREAM_PROXY_H

#include <netinet/in.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* The largest header accepted: 16 fixed bytes + 520 of addresses and TLVs (IPv6 + TLVs). */
#define GW_PROXY_MAX 536u

/* Why a header was refused (the reason label of iotgw_proxy_refused_total). */
typedef enum gw_proxy_err {
    GW_PROXY_ERR_NONE,
    GW_PROXY_ERR_SIGNATURE, /* not the 12-byte v2 signature */
    GW_PROXY_ERR_V1,        /* the text header of version 1 ("PROXY TCP4 ...": starts with 'P') */
    GW_PROXY_ERR_VERSION,   /* version nibble not 2 */
    GW_PROXY_ERR_COMMAND,   /* command neither LOCAL nor PROXY */
    GW_PROXY_ERR_FAMILY,    /* not TCP over IPv4/IPv6 or UNSPEC (UDP, unix sockets, unknown) */
    GW_PROXY_ERR_LENGTH,    /* address block shorter than its family needs */
    GW_PROXY_ERR_TOO_LONG,  /* over GW_PROXY_MAX */
    GW_PROXY_ERR_SOURCE,    /* (not the parser's) the sender is not in the listener's "from" */
    GW_PROXY_ERR_TIMEOUT,   /* (not the parser's) no whole header within the login timeout */
    GW_PROXY_ERR_TRUNCATED, /* (not the parser's) the peer closed in the middle of the header */
    GW_PROXY_ERR_COUNT
} gw_proxy_err;

typedef struct gw_proxy_hdr {
    bool has_src; /* PROXY over TCP4/TCP6: src holds the client's address and port; false for
                   * LOCAL (health checks of the proxy itself) and UNSPEC: keep the socket's */
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
    } src;
} gw_proxy_hdr;

/* Parses the header at the start of p[0..n): > 0, the header's length (consumed; *out set);
 * 0, not whole yet (read more; a mismatch is reported as soon as the bytes show it); < 0, refused
 * (*err says why). Valid for any n, including 0. */
int gw_proxy_parse(const uint8_t *p, size_t n, gw_proxy_hdr *out, gw_proxy_err *err);
/* "signature", "v1", ... (the metric label). */
const char *gw_proxy_err_name(gw_proxy_err e);

/* One entry of "from": an address and a prefix length in bits (IPv4: 32 at most). */
typedef struct gw_proxy_net {
    uint8_t family; /* AF_INET / AF_INET6 */
    uint8_t bits;
    uint8_t addr[16];
} gw_proxy_net;

/* "10.0.0.0/8", "::1", "127.0.0.1": 0, or -1 (not an address, prefix out of range, host bits
 * set). */
int gw_proxy_net_parse(const char *s, gw_proxy_net *out);
/* True when sa (IPv4, IPv6 or IPv4-mapped IPv6) is within one of the n nets. */
bool gw_proxy_net_match(const gw_proxy_net *v, size_t n, const struct sockaddr *sa);

#endif

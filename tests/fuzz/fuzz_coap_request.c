/* fuzz_coap_request.c: libFuzzer target for the CoAP adapter's request path without sockets: the
 * input is a sequence of datagrams (2-byte big-endian length prefixes; a short input is one
 * datagram) fed to the parser and the request classifier, with a Block1 reassembly state kept
 * across datagrams under the adapter's bounds, and every answer the adapter would send encoded
 * and parsed back. Invariants (bounds, round trips) abort on failure. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/error.h"
#include "protocols/coap/coap_msg.h"

#define MAX_BLOCK 4096

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #c);                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

static uint8_t assembled[MAX_BLOCK];
static size_t have;

/* The answer the adapter would give, encoded and parsed back. */
static void answer(const gw_coap_msg *m, uint8_t code, bool block1, uint32_t b1, const void *p,
                   size_t n)
{
    uint8_t out[MAX_BLOCK + 128];
    gw_coap_out o;
    gw_coap_msg back;
    gw_coap_out_begin(&o, out, sizeof(out), m->type == GW_COAP_CON ? GW_COAP_ACK : GW_COAP_NON,
                      code, m->mid, m->token, m->tkl);
    if (n)
        gw_coap_out_opt_uint(&o, GW_COAP_OPT_CONTENT_FORMAT, 0);
    if (block1)
        gw_coap_out_opt_uint(&o, GW_COAP_OPT_BLOCK1, b1);
    gw_coap_out_payload(&o, p, n);
    REQUIRE(o.err == 0);
    REQUIRE(gw_coap_parse(out, o.len, &back) == 0);
    REQUIRE(back.code == code && back.mid == m->mid && back.tkl == m->tkl);
    REQUIRE(memcmp(back.token, m->token, m->tkl) == 0);
    REQUIRE(back.payload_len == n && (n == 0 || memcmp(back.payload, p, n) == 0));
    REQUIRE(back.n_opts == (size_t)block1 + (n ? 1 : 0));
}

static void one(const uint8_t *d, size_t n)
{
    gw_coap_msg m;
    gw_coap_req r;
    uint8_t *copy = calloc(1, n ? n : 1); /* exact size: ASan sees any overread */
    if (n)
        memcpy(copy, d, n);
    int rc = gw_coap_parse(copy, n, &m);
    if (rc == GW_EAGAIN || rc == GW_EPROTO) {
        REQUIRE(n < 4 || m.tkl <= 8);
        free(copy);
        return;
    }
    REQUIRE(rc == 0 || rc == GW_ETOOBIG);
    REQUIRE(m.tkl <= 8 && m.n_opts <= GW_COAP_MAX_OPTS);
    for (size_t i = 0; i < m.n_opts; i++) {
        REQUIRE(m.opts[i].val >= copy && m.opts[i].val + m.opts[i].len <= copy + n);
        REQUIRE(i == 0 || m.opts[i].num >= m.opts[i - 1].num);
    }
    REQUIRE(!m.payload || (m.payload > copy && m.payload + m.payload_len == copy + n));
    if (rc != 0 || m.code == GW_COAP_EMPTY || (m.code >> 5) != 0 || m.type >= GW_COAP_ACK) {
        free(copy);
        return;
    }
    rc = gw_coap_request_parse(&m, &r);
    if (rc != 0) {
        REQUIRE((rc >> 5) == 4);
        answer(&m, (uint8_t)rc, false, 0, "refused", 7);
        free(copy);
        return;
    }
    REQUIRE(strlen(r.product) < 64 && strlen(r.device) < 64 && strlen(r.event) < 64);
    REQUIRE(r.res != GW_COAP_RES_NONE);
    REQUIRE(!r.has_token || (r.token >= copy && r.token + r.token_len <= copy + n));
    (void)gw_coap_codec_accepts("json", r.content_format);
    (void)gw_coap_codec_accepts("protobuf", r.content_format);
    if (!r.has_block1) {
        answer(&m, m.payload_len > MAX_BLOCK ? GW_COAP_TOO_LARGE : GW_COAP_CHANGED, false, 0, NULL,
               0);
        free(copy);
        return;
    }
    if (r.b1_num == 0)
        have = 0;
    size_t total = 0;
    rc =
        gw_coap_block1_check(have, r.b1_num, r.b1_szx, m.payload_len, r.b1_more, MAX_BLOCK, &total);
    if (rc == 0) {
        REQUIRE(total <= MAX_BLOCK && total == have + m.payload_len);
        if (m.payload_len) /* an empty last block: no payload pointer */
            memcpy(assembled + have, m.payload, m.payload_len);
        have = r.b1_more ? total : 0;
        answer(&m, r.b1_more ? GW_COAP_CONTINUE : GW_COAP_CHANGED, true,
               gw_coap_block1_value(r.b1_num, r.b1_more, r.b1_szx), NULL, 0);
    } else {
        REQUIRE(rc == GW_EAGAIN || rc == GW_ETOOBIG || rc == GW_EPROTO);
        have = 0;
        answer(&m,
               rc == GW_EAGAIN    ? GW_COAP_INCOMPLETE
               : rc == GW_ETOOBIG ? GW_COAP_TOO_LARGE
                                  : GW_COAP_BAD_REQUEST,
               false, 0, NULL, 0);
    }
    free(copy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    have = 0;
    one(data, size); /* the whole input as one datagram */
    have = 0;
    /* and as a sequence of length-prefixed datagrams (Block1 transfers span several) */
    size_t i = 0;
    while (i + 2 <= size) {
        size_t n = (size_t)data[i] << 8 | data[i + 1];
        i += 2;
        if (n > size - i)
            n = size - i;
        one(data + i, n);
        i += n;
    }
    return 0;
}

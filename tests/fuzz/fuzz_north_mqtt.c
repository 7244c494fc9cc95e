/* fuzz_north_mqtt.c: libFuzzer target for the upstream client's reader (north_mqtt.c): the input is
 * what a broker sends, read as a stream of packets as the link does (max packet 4096), once whole
 * and once cut at a point taken from the first byte; both reads must give the same packets, every
 * packet must lie inside the input, a PUBLISH's topic and payload inside its packet, and a decoded
 * PUBLISH/PUBACK must re-encode to the same bytes. The CONNECT encoder is run on strings taken from
 * the input and its output read back by mqtt_prot's server-side decoder. Any mismatch aborts. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gateway/north/north_mqtt.h"
#include "gateway/util/error.h"

#define MAX_PACKET 4096
#define MAX_PKTS   512

#define REQUIRE(c)                                                                                 \
    do {                                                                                           \
        if (!(c)) {                                                                                \
            fprintf(stderr, "%s:%d: REQUIRE failed: %s\n", __FILE__, __LINE__, #c);                \
            abort();                                                                               \
        }                                                                                          \
    } while (0)

typedef struct seen {
    uint8_t type, rc;
    uint16_t id;
    size_t off, len;
} seen;

/* Parses buf as the link does; returns the number of packets, *end = bytes consumed, *err = the
 * error that stopped it (0: ran out of bytes). */
static int read_all(const uint8_t *buf, size_t len, seen *out, size_t *end, int *err)
{
    size_t off = 0;
    int k = 0;
    *err = 0;
    while (k < MAX_PKTS && off < len) {
        gw__north_pkt p;
        const char *why;
        int r = gw__north_mqtt_next(buf + off, len - off, MAX_PACKET, &p, &why);
        if (r < 0) {
            REQUIRE(r == GW_EPROTO || r == GW_ETOOBIG);
            REQUIRE(why != NULL);
            *err = r;
            break;
        }
        if (r == 0)
            break;
        REQUIRE((size_t)r <= len - off && (size_t)r <= MAX_PACKET);
        if (p.type == GW_MQTT_PUBLISH) {
            const uint8_t *lo = buf + off, *hi = buf + off + (size_t)r;
            REQUIRE((const uint8_t *)p.pub.topic.p >= lo &&
                    (const uint8_t *)p.pub.topic.p + p.pub.topic.len <= hi);
            REQUIRE(p.pub.payload >= lo && p.pub.payload + p.pub.payload_len <= hi);
            uint8_t re[MAX_PACKET + 8];
            size_t n = gw_mqtt_encode_publish(re, sizeof(re), p.pub.topic.p, p.pub.topic.len,
                                              p.pub.payload, p.pub.payload_len, p.pub.qos,
                                              p.pub.packet_id, p.pub.retain);
            /* same bytes unless the broker set DUP or used a non-minimal length */
            if (!p.pub.dup && n == (size_t)r)
                REQUIRE(memcmp(re + 1, buf + off + 1, n - 1) == 0);
        } else if (p.type == GW_MQTT_PUBACK) {
            uint8_t re[4];
            REQUIRE(gw_mqtt_encode_ack(re, GW_MQTT_PUBACK, p.id) == 4);
            if (r == 4) /* else a non-minimal length (0x82 0x00), which 3.1.1 allows */
                REQUIRE(memcmp(re, buf + off, 4) == 0);
        }
        out[k] = (seen){p.type, p.rc, p.id, off, (size_t)r};
        off += (size_t)r;
        k++;
    }
    *end = off;
    return k;
}

static void fuzz_reader(const uint8_t *data, size_t size)
{
    static seen a[MAX_PKTS], b[MAX_PKTS];
    size_t end_a, end_b1, end_b2;
    int err_a, err_b;
    int ka = read_all(data, size, a, &end_a, &err_a);
    /* the same bytes arriving in two reads: a cut anywhere gives the same packets */
    size_t cut = size ? data[0] % (size + 1) : 0;
    int kb = read_all(data, cut, b, &end_b1, &err_b);
    if (!err_b) {
        uint8_t *copy = malloc(size ? size : 1);
        REQUIRE(copy);
        memcpy(copy, data, size);
        int kb2 = read_all(copy + end_b1, size - end_b1, b + kb, &end_b2, &err_b);
        for (int i = kb; i < kb + kb2; i++)
            b[i].off += end_b1;
        kb += kb2;
        end_b1 += end_b2;
        free(copy);
        if (ka < MAX_PKTS && kb < MAX_PKTS) {
            REQUIRE(ka == kb && end_a == end_b1 && err_a == err_b);
            for (int i = 0; i < ka; i++)
                REQUIRE(memcmp(&a[i], &b[i], sizeof(seen)) == 0);
        }
    }
}

static void fuzz_connect(const uint8_t *data, size_t size)
{
    char s[5][64];
    size_t pos = 0;
    for (int i = 0; i < 5; i++) {
        size_t n = pos < size ? data[pos++] % 64 : 0;
        if (n > size - pos)
            n = size - pos;
        memcpy(s[i], data + pos, n);
        s[i][n] = 0;
        pos += n;
    }
    uint8_t f = size ? data[size - 1] : 0;
    gw__north_connect c = {s[0], (f & 1) ? s[1] : NULL, (f & 3) == 3 ? s[2] : NULL,
                           (uint16_t)(f * 7), (f & 4) != 0};
    if (f & 8) {
        c.will_topic = s[3];
        c.will_payload = s[4];
        c.will_len = strlen(s[4]);
        c.will_qos = (f >> 4) & 3;
        c.will_retain = (f & 64) != 0;
    }
    uint8_t out[512];
    size_t n = gw__north_mqtt_connect(out, sizeof(out), &c);
    if (!n)
        return;
    REQUIRE(n <= sizeof(out));
    gw_mqtt_fixed fx;
    REQUIRE(gw_mqtt_frame(out, n, sizeof(out), &fx) == 0 && fx.type == GW_MQTT_CONNECT);
    REQUIRE(fx.header_len + fx.remaining == n);
    gw_mqtt_connect d;
    uint8_t rc;
    /* the server's decoder refuses what is not valid MQTT UTF-8 or an empty id; else it must
     * read back exactly what was encoded */
    if (gw_mqtt_decode_connect(out + fx.header_len, fx.remaining, &d, &rc) != 0)
        return;
    REQUIRE(d.protocol_level == 4 && d.clean_session == c.clean && d.keepalive == c.keepalive);
    REQUIRE(d.client_id.len == strlen(c.client_id) &&
            memcmp(d.client_id.p, c.client_id, d.client_id.len) == 0);
    REQUIRE(d.has_username == (c.username != NULL) && d.has_password == (c.password != NULL));
    REQUIRE(d.has_will == (c.will_topic != NULL));
    if (d.has_will)
        REQUIRE(d.will_qos == c.will_qos && d.will_retain == c.will_retain &&
                d.will_payload_len == c.will_len);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fuzz_reader(data, size);
    fuzz_connect(data, size);
    return 0;
}

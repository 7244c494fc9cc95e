/* north_mqtt.c: the upstream client's packets: the CONNECT byte for byte (with and without Will,
 * username, password; refusals), and the reader on whole, split (every cut point), back-to-back,
 * oversized, malformed and unexpected packets from the broker. */
#include "gateway/north/north_mqtt.h"
#include "gateway/util/error.h"
#include "test.h"

static void check_bytes(const uint8_t *got, size_t n, const uint8_t *want, size_t wn)
{
    CHECK_INT(n, wn);
    CHECK(n == wn && memcmp(got, want, wn) == 0);
    if (n == wn && memcmp(got, want, wn) != 0)
        for (size_t i = 0; i < n; i++)
            if (got[i] != want[i])
                fprintf(stderr, "  byte %zu: got 0x%02x, want 0x%02x\n", i, got[i], want[i]);
}

static void test_connect(void)
{
    uint8_t buf[256];
    /* client id "gw", user "u", password "pw", keepalive 30, clean, Will "g/x" "off" QoS 1 retained
     */
    gw__north_connect c = {"gw", "u", "pw", 30, true, "g/x", "off", 3, 1, true};
    static const uint8_t want[] = {0x10, 31,  0,   4,   'M', 'Q', 'T', 'T', 4,   0xEE, 0,
                                   30,   0,   2,   'g', 'w', 0,   3,   'g', '/', 'x',  0,
                                   3,    'o', 'f', 'f', 0,   1,   'u', 0,   2,   'p',  'w'};
    /* flags 0xEE = username 0x80 | password 0x40 | will retain 0x20 | will qos 1 (0x08) | will
     * 0x04 | clean 0x02 */
    size_t n = gw__north_mqtt_connect(buf, sizeof(buf), &c);
    check_bytes(buf, n, want, sizeof(want));

    /* no Will, no credentials, not clean */
    gw__north_connect c2 = {"id", NULL, NULL, 60, false};
    static const uint8_t want2[] = {0x10, 14,   0, 4,  'M', 'Q', 'T', 'T',
                                    4,    0x00, 0, 60, 0,   2,   'i', 'd'};
    n = gw__north_mqtt_connect(buf, sizeof(buf), &c2);
    check_bytes(buf, n, want2, sizeof(want2));

    /* too small: the size, nothing written */
    memset(buf, 0xAB, sizeof(buf));
    CHECK_INT(gw__north_mqtt_connect(buf, 10, &c), sizeof(want));
    CHECK_INT(buf[0], 0xAB);
    CHECK_INT(gw__north_mqtt_connect(NULL, 0, &c2), sizeof(want2));

    /* a password without a username, will qos 3, an empty will topic: cannot be encoded */
    gw__north_connect bad = {"id", NULL, "pw", 60, true};
    CHECK_INT(gw__north_mqtt_connect(buf, sizeof(buf), &bad), 0);
    gw__north_connect bad2 = {"id", NULL, NULL, 60, true, "t", "x", 1, 3, false};
    CHECK_INT(gw__north_mqtt_connect(buf, sizeof(buf), &bad2), 0);
    gw__north_connect bad3 = {"id", NULL, NULL, 60, true, "", "x", 1, 1, false};
    CHECK_INT(gw__north_mqtt_connect(buf, sizeof(buf), &bad3), 0);

    /* a 200-byte client id: a two-byte remaining length */
    char id[201];
    memset(id, 'a', 200);
    id[200] = 0;
    gw__north_connect c3 = {id, NULL, NULL, 5, true};
    uint8_t big[300];
    n = gw__north_mqtt_connect(big, sizeof(big), &c3);
    CHECK_INT(n, 3 + 10 + 2 + 200);
    CHECK_INT(big[1], (212 % 128) | 0x80);
    CHECK_INT(big[2], 212 / 128);
}

/* What the broker sends in one read: CONNACK, SUBACK, two PUBACKs, a PUBLISH QoS 1, PINGRESP. */
static const uint8_t stream[] = {0x20, 2,  0, 0,      /* CONNACK accepted */
                                 0x90, 3,  0, 1,   1, /* SUBACK id 1, granted 1 */
                                 0x40, 2,  0, 7,      /* PUBACK 7 */
                                 0x40, 2,  1, 2,      /* PUBACK 258 */
                                 0x32, 10, 0, 3,   'a', '/',
                                 'b',  0,  9, 'h', 'i', '!', /* PUBLISH qos 1 "a/b" id 9 */
                                 0xD0, 0};                   /* PINGRESP */

static int parse_stream(const uint8_t *buf, size_t len, gw__north_pkt *out, int max, size_t *used)
{
    int k = 0;
    size_t off = 0;
    const char *why;
    while (k < max) {
        int r = gw__north_mqtt_next(buf + off, len - off, 1024, &out[k], &why);
        if (r <= 0)
            break;
        off += (size_t)r;
        k++;
    }
    *used = off;
    return k;
}

static void check_stream(const gw__north_pkt *p)
{
    CHECK_INT(p[0].type, GW_MQTT_CONNACK);
    CHECK_INT(p[0].rc, 0);
    CHECK_INT(p[1].type, GW_MQTT_SUBACK);
    CHECK_INT(p[1].id, 1);
    CHECK_INT(p[1].rc, 0);
    CHECK_INT(p[2].type, GW_MQTT_PUBACK);
    CHECK_INT(p[2].id, 7);
    CHECK_INT(p[3].id, 258);
    CHECK_INT(p[4].type, GW_MQTT_PUBLISH);
    CHECK_INT(p[4].pub.qos, 1);
    CHECK_INT(p[4].id, 9);
    CHECK_INT(p[4].pub.topic.len, 3);
    CHECK(memcmp(p[4].pub.topic.p, "a/b", 3) == 0);
    CHECK_INT(p[4].pub.payload_len, 3);
    CHECK(memcmp(p[4].pub.payload, "hi!", 3) == 0);
    CHECK_INT(p[5].type, GW_MQTT_PINGRESP);
}

static void test_reader(void)
{
    gw__north_pkt p[8];
    size_t used;
    /* all at once: every packet of the read */
    CHECK_INT(parse_stream(stream, sizeof(stream), p, 8, &used), 6);
    CHECK_INT(used, sizeof(stream));
    check_stream(p);

    /* split at every byte: what is parsed before the cut, then the rest after it */
    for (size_t cut = 0; cut <= sizeof(stream); cut++) {
        uint8_t buf[sizeof(stream)];
        gw__north_pkt q[8];
        size_t u1, u2;
        memcpy(buf, stream, cut);
        int k1 = parse_stream(buf, cut, q, 8, &u1);
        memcpy(buf + cut, stream + cut, sizeof(stream) - cut);
        int k2 = parse_stream(buf + u1, sizeof(stream) - u1, q + k1, 8 - k1, &u2);
        CHECK_INT(k1 + k2, 6);
        CHECK_INT(u1 + u2, sizeof(stream));
        if (k1 + k2 == 6)
            check_stream(q);
    }

    /* a refused CONNACK and a refused subscription */
    const char *why;
    static const uint8_t refused[] = {0x20, 2, 0, 5};
    CHECK_INT(gw__north_mqtt_next(refused, 4, 1024, &p[0], &why), 4);
    CHECK_INT(p[0].rc, 5);
    CHECK_STR(gw__north_connack_string(5), "Connection Refused: not authorised.");
    static const uint8_t suback[] = {0x90, 4, 0, 2, 1, 0x80};
    CHECK_INT(gw__north_mqtt_next(suback, sizeof(suback), 1024, &p[0], &why), 6);
    CHECK_INT(p[0].rc, 0x80);

    /* PUBREL (flags 2) from a QoS 2 delivery */
    static const uint8_t pubrel[] = {0x62, 2, 0, 4};
    CHECK_INT(gw__north_mqtt_next(pubrel, 4, 1024, &p[0], &why), 4);
    CHECK_INT(p[0].type, GW_MQTT_PUBREL);
    CHECK_INT(p[0].id, 4);
}

static void test_bad(void)
{
    gw__north_pkt p;
    const char *why;
    /* oversized: refused from the header alone (2 bytes of a 2000-byte PUBLISH) */
    static const uint8_t big[] = {0x30, 0xD0, 0x0F};
    CHECK_INT(gw__north_mqtt_next(big, 3, 1024, &p, &why), GW_ETOOBIG);
    CHECK_STR(why, "oversized_packet");
    /* a remaining length over 4 bytes */
    static const uint8_t longlen[] = {0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01};
    CHECK_INT(gw__north_mqtt_next(longlen, 6, GW__NORTH_MAX_PACKET, &p, &why), GW_EPROTO);
    /* what a broker never sends a client */
    static const uint8_t sub[] = {0x82, 6, 0, 1, 0, 1, 'a', 1};
    CHECK_INT(gw__north_mqtt_next(sub, sizeof(sub), 1024, &p, &why), GW_EPROTO);
    CHECK_STR(why, "unexpected_packet");
    static const uint8_t pingreq[] = {0xC0, 0};
    CHECK_INT(gw__north_mqtt_next(pingreq, 2, 1024, &p, &why), GW_EPROTO);
    /* malformed bodies: PUBACK of 3 bytes, PUBACK id 0, CONNACK rc 6, PINGRESP with a body,
     * PUBLISH with a wildcard topic, PUBLISH QoS 3, PUBACK with flags */
    static const uint8_t b1[] = {0x40, 3, 0, 1, 0};
    static const uint8_t b2[] = {0x40, 2, 0, 0};
    static const uint8_t b3[] = {0x20, 2, 0, 6};
    static const uint8_t b4[] = {0xD0, 1, 0};
    static const uint8_t b5[] = {0x30, 4, 0, 2, 'a', '#'};
    static const uint8_t b6[] = {0x36, 5, 0, 1, 'a', 0, 1};
    static const uint8_t b7[] = {0x41, 2, 0, 1};
    const uint8_t *bad[] = {b1, b2, b3, b4, b5, b6, b7};
    size_t lens[] = {sizeof(b1), sizeof(b2), sizeof(b3), sizeof(b4),
                     sizeof(b5), sizeof(b6), sizeof(b7)};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        int r = gw__north_mqtt_next(bad[i], lens[i], 1024, &p, &why);
        if (r != GW_EPROTO)
            fprintf(stderr, "  bad packet %zu: %d\n", i, r);
        CHECK_INT(r, GW_EPROTO);
        CHECK(why != NULL);
    }
    /* incomplete: nothing, half a header, half a body */
    CHECK_INT(gw__north_mqtt_next(stream, 0, 1024, &p, &why), 0);
    CHECK_INT(gw__north_mqtt_next(big, 2, 1 << 20, &p, &why), 0);
    CHECK_INT(gw__north_mqtt_next(stream, 3, 1024, &p, &why), 0);
}

int main(void)
{
    test_connect();
    test_reader();
    test_bad();
    TEST_MAIN_END();
}

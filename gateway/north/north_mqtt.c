/* north_mqtt.c: the upstream MQTT 3.1.1 client's packets: the CONNECT with the cluster's Will and
 * the reader that cuts the broker's byte stream into whole packets (mqtt_prot's frame and body
 * decoders, a client's view: only what a broker sends). Pure functions, no I/O, fuzzed. */
#include "north_mqtt.h"

#include <string.h>

#include "../util/error.h"

static size_t put_varint(uint8_t *p, uint32_t v)
{
    size_t n = 0;
    do {
        uint8_t b = v % 128;
        v /= 128;
        p[n++] = (uint8_t)(b | (v ? 0x80 : 0));
    } while (v);
    return n;
}

static uint8_t *put_str(uint8_t *p, const void *s, size_t len)
{
    *p++ = (uint8_t)(len >> 8);
    *p++ = (uint8_t)len;
    if (len)
        memcpy(p, s, len);
    return p + len;
}

size_t gw__north_mqtt_connect(uint8_t *out, size_t cap, const gw__north_connect *c)
{
    size_t id = c->client_id ? strlen(c->client_id) : 0;
    size_t user = c->username ? strlen(c->username) : 0, pw = c->password ? strlen(c->password) : 0;
    size_t wt = c->will_topic ? strlen(c->will_topic) : 0;
    if (id > 65535 || user > 65535 || pw > 65535 || wt > 65535 || c->will_len > 65535 ||
        (c->password && !c->username) || c->will_qos > 2 || (c->will_topic && !wt))
        return 0;
    size_t rem = 10 + 2 + id;
    if (c->will_topic)
        rem += 2 + wt + 2 + c->will_len;
    if (c->username)
        rem += 2 + user;
    if (c->password)
        rem += 2 + pw;
    uint8_t hdr[5];
    size_t hl = put_varint(hdr, (uint32_t)rem);
    if (1 + hl + rem > cap)
        return 1 + hl + rem;
    uint8_t flags = c->clean ? 0x02 : 0;
    if (c->will_topic)
        flags |= (uint8_t)(0x04 | (c->will_qos << 3) | (c->will_retain ? 0x20 : 0));
    if (c->username)
        flags |= 0x80;
    if (c->password)
        flags |= 0x40;
    uint8_t *p = out;
    *p++ = 0x10;
    memcpy(p, hdr, hl);
    p += hl;
    p = put_str(p, "MQTT", 4);
    *p++ = 4; /* 3.1.1 */
    *p++ = flags;
    *p++ = (uint8_t)(c->keepalive >> 8);
    *p++ = (uint8_t)c->keepalive;
    p = put_str(p, c->client_id, id);
    if (c->will_topic) {
        p = put_str(p, c->will_topic, wt);
        p = put_str(p, c->will_payload, c->will_len);
    }
    if (c->username)
        p = put_str(p, c->username, user);
    if (c->password)
        p = put_str(p, c->password, pw);
    return (size_t)(p - out);
}

/* The body of a whole packet (fixed header already checked by gw_mqtt_frame). */
static int decode_body(const gw_mqtt_fixed *fx, const uint8_t *body, gw__north_pkt *pkt,
                       const char **why)
{
    const uint8_t *rcs = NULL;
    size_t n = 0;
    int rc;
    *why = "malformed_packet";
    switch (fx->type) {
    case GW_MQTT_CONNACK:
        return gw_mqtt_decode_connack(body, fx->remaining, &pkt->session_present, &pkt->rc);
    case GW_MQTT_PUBACK:
    case GW_MQTT_PUBREC:
    case GW_MQTT_PUBREL:
    case GW_MQTT_PUBCOMP:
    case GW_MQTT_UNSUBACK:
        return gw_mqtt_decode_ack(body, fx->remaining, &pkt->id);
    case GW_MQTT_SUBACK:
        rc = gw_mqtt_decode_suback(body, fx->remaining, &pkt->id, &rcs, &n);
        for (size_t i = 0; rc == 0 && i < n && !pkt->rc; i++)
            if (rcs[i] > 2)
                pkt->rc = rcs[i];
        return rc;
    case GW_MQTT_PUBLISH:
        rc = gw_mqtt_decode_publish(body, fx->remaining, fx->flags, &pkt->pub, why);
        pkt->id = pkt->pub.packet_id;
        return rc;
    case GW_MQTT_PINGRESP:
        return gw_mqtt_decode_empty(body, fx->remaining);
    default: /* CONNECT, SUBSCRIBE, PINGREQ, ...: never from a broker */
        *why = "unexpected_packet";
        return GW_EPROTO;
    }
}

int gw__north_mqtt_next(const uint8_t *buf, size_t len, uint32_t max_packet, gw__north_pkt *pkt,
                        const char **why)
{
    gw_mqtt_fixed fx;
    memset(pkt, 0, sizeof(*pkt));
    *why = NULL;
    int rc = gw_mqtt_fixed_header_why(buf, len, max_packet, &fx, why);
    if (rc == GW_EINCOMPLETE || (rc == 0 && len < (size_t)fx.header_len + fx.remaining))
        return 0;
    if (rc != 0)
        return rc;
    pkt->type = fx.type;
    rc = decode_body(&fx, buf + fx.header_len, pkt, why);
    if (rc != 0)
        return rc == GW_ETOOBIG ? rc : GW_EPROTO;
    *why = NULL;
    return (int)(fx.header_len + fx.remaining);
}

const char *gw__north_connack_string(uint8_t rc)
{
    switch (rc) {
    case 0:
        return "Connection Accepted.";
    case 1:
        return "Connection Refused: unacceptable protocol version.";
    case 2:
        return "Connection Refused: identifier rejected.";
    case 3:
        return "Connection Refused: broker unavailable.";
    case 4:
        return "Connection Refused: bad user name or password.";
    case 5:
        return "Connection Refused: not authorised.";
    default:
        return "Connection Refused: unknown reason.";
    }
}

/* north_mqtt.h: the upstream MQTT 3.1.1 client's packets: the CONNECT (with the cluster's Will)
 * and the reader that cuts a received byte stream into whole packets and decodes what a broker
 * sends a client. Pure functions over buffers, no I/O; the rest of the encoders are mqtt_prot's. */
#ifndef GW_NORTH_MQTT_H
#define GW_NORTH_MQTT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "../../protocols/mqtt/mqtt_prot.h"

/* Largest packet accepted from the broker (a command, a retained presence): a bigger one drops
 * the link (north_protocol_errors_total). */
#define GW__NORTH_MAX_PACKET (1024u * 1024u)

typedef struct gw__north_connect {
    const char *client_id, *username, *password; /* NUL-terminated; username/password may be NULL */
    uint16_t keepalive;
    bool clean;
    const char *will_topic; /* NULL: no Will */
    const void *will_payload;
    size_t will_len;
    uint8_t will_qos;
    bool will_retain;
} gw__north_connect;

/* Encodes the CONNECT into out: returns its size (nothing written when it exceeds cap), or 0 when
 * it cannot be encoded (a string over 65535 bytes, a password without a username, qos > 2). */
size_t gw__north_mqtt_connect(uint8_t *out, size_t cap, const gw__north_connect *c);

/* One packet from the broker. Strings and the payload point into the buffer. */
typedef struct gw__north_pkt {
    uint8_t type;         /* GW_MQTT_CONNACK, PUBACK, PUBREC, PUBCOMP, SUBACK, UNSUBACK, PUBLISH,
                             PUBREL, PINGRESP */
    uint16_t id;          /* the packet id (acks, SUBACK, PUBLISH with qos > 0, PUBREL) */
    uint8_t rc;           /* CONNACK: the return code; SUBACK: the first refused code or 0 */
    bool session_present; /* CONNACK */
    gw_mqtt_publish pub;  /* PUBLISH */
} gw__north_pkt;

/* Decodes the packet at the start of buf (len bytes): > 0 its size, *pkt filled; 0 when the packet
 * is not complete yet; GW_ETOOBIG (over max_packet, known from the header alone) or GW_EPROTO (a
 * malformed packet or one a broker never sends a client), with *why the reason. */
int gw__north_mqtt_next(const uint8_t *buf, size_t len, uint32_t max_packet, gw__north_pkt *pkt,
                        const char **why);

/* CONNACK return code 1..5 as libmosquitto words it ("Connection Refused: not authorised."). */
const char *gw__north_connack_string(uint8_t rc);

#endif

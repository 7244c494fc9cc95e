/* codec_protobuf.h: the "protobuf" codec: the gateway's own schema (iotgw.proto, docs/PROTOBUF.md)
 * on MQTT, CoAP, TCP (4-byte big-endian length prefix) and UDP (one datagram, device id + token).
 */
#ifndef GW_CODEC_PROTOBUF_H
#define GW_CODEC_PROTOBUF_H

#include "../../gateway/core/codec.h"

#define GW_PB_MAX_MESSAGE  65532     /* bytes of one DeviceMessage (the TCP frame adds 4) */
#define GW_PB_PREFIX       4         /* TCP: big-endian length of the message that follows */
#define GW_PB_MAX_DEPTH    16        /* Values nested in struct/array Values */
#define GW_PB_MAX_ELEMENTS 4096      /* field occurrences in one message, all levels */
#define GW_PB_MAX_ALLOC    (1 << 20) /* bytes protobuf-c may allocate to unpack one message */

extern const gw_codec_ops gw_codec_protobuf_ops;

#endif

/* codec_json.h: the "json" codec (the device-facing JSON payloads of the MQTT/CoAP contract). */
#ifndef GW_CODEC_JSON_H
#define GW_CODEC_JSON_H

#include "../../gateway/core/codec.h"

extern const gw_codec_ops gw_codec_json_ops;

#endif

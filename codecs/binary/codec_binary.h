/* codec_binary.h: the "binary" codec: a product's "frame" section (docs/BINARY-CODEC.md) declares
 * framing, fields, message types, checks, acks and command frames; no protocol is coded in C. */
#ifndef GW_CODEC_BINARY_H
#define GW_CODEC_BINARY_H

#include "../../gateway/core/codec.h"

/* Upper bound of any product's max_frame (bytes on the wire). */
#define GW_BINARY_MAX_FRAME 65536

extern const gw_codec_ops gw_codec_binary_ops;

/* Downstream: the command frame for a function invoke (function = function id, inputs = its
 * inputs object) or a property write (function = NULL, inputs = properties object; the first
 * "write" message whose properties are exactly inputs' keys), addressed to device_id (written
 * into a device_id field if the layout has one; may be NULL otherwise), carrying seq. secret is
 * the device's secret, keying the MAC of a layout with "auth" (NULL otherwise: GW_EINVAL there).
 * The values should already have passed the thing model (gw_tm_check_params). Returns 0 and *n,
 * GW_ETOOBIG if cap is too small (max_frame always suffices), GW_ENOTFOUND if the layout has no
 * such command, GW_EINVAL for a value the layout cannot carry; err says why. */
int gw_binary_encode_command(const gw_product *p, const char *device_id, const char *secret,
                             const char *function, json_t *inputs, uint32_t seq, uint8_t *out,
                             size_t cap, size_t *n, gw_error *err);

/* The product's max_frame (0 if p does not use this codec): the buffer a transport needs. */
size_t gw_binary_max_frame(const gw_product *p);

#endif

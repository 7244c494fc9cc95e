/* command_types.h: the command a codec encodes (gw_command and its op), apart from the command
 * table and routing (command.h), so that codecs see only this and the thing model. */
#ifndef GW_COMMAND_TYPES_H
#define GW_COMMAND_TYPES_H

#include <jansson.h>
#include <stdint.h>

#include "../../config/product.h" /* gw_function_spec */

struct gw_device;

typedef enum gw_command_op {
    GW_CMD_INVOKE, /* {prefix}/{product}/{device}/function/invoke */
    GW_CMD_WRITE,  /* .../properties/write */
    GW_CMD_READ,   /* .../properties/read: answered by the gateway from the latest stored values */
} gw_command_op;

/* One command as handed to a session's ops->command and a codec's encode_command. */
typedef struct gw_command {
    gw_command_op op;
    const struct gw_device *dev;
    char msg_id[64];            /* the cloud's messageId */
    char dev_msg_id[64];        /* the id the device sees and echoes in its reply */
    uint32_t seq;               /* numeric id for binary layouts (dev_msg_id is its decimal text) */
    const gw_function_spec *fn; /* GW_CMD_INVOKE */
    json_t *args; /* invoke: validated inputs (object); write: validated properties (object) */
    uint32_t timeout_ms; /* the reply timeout once sent (MQTT 5: the message expiry interval) */
} gw_command;

#endif

/* coap.h: the CoAP (RFC 7252) device adapter. */
#ifndef GW_COAP_H
#define GW_COAP_H

#include "../../gateway/core/adapter.h"

extern const gw_adapter_ops gw_adapter_coap_ops;

#endif

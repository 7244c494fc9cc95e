/* udp.h: the UDP device adapter's ops table (registered in gateway/registry.c). */
#ifndef GW_UDP_H
#define GW_UDP_H

#include "../../gateway/core/adapter.h"

extern const gw_adapter_ops gw_adapter_udp_ops;

#endif

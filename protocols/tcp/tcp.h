/* tcp.h: the TCP device adapter for binary-frame products ("protocol": "tcp"). */
#ifndef GW_TCP_H
#define GW_TCP_H

#include "../../gateway/core/adapter.h"

extern const gw_adapter_ops gw_adapter_tcp_ops;

#endif

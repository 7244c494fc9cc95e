/* mqtt.h: the MQTT 3.1.1 device adapter's ops table (registered in gateway/registry.c). */
#ifndef GW_MQTT_H
#define GW_MQTT_H

#include "../../gateway/core/adapter.h"

extern const gw_adapter_ops gw_adapter_mqtt_ops;

#endif

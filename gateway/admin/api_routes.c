/* api_routes.c: the management API's paths, methods and roles: the contract the web console and
 * external tools use (docs/API.md describes each). */
#include "api_handlers.h"

const gw_api_route gw_api_routes[] = {
    {"GET", "/api/status", GW_API_READ, false, gw_api_status},
    {"GET", "/api/token", GW_API_READ, false, gw_api_token_info},
    {"GET", "/api/products", GW_API_READ, false, gw_api_products_list},
    {"GET", "/api/products/{id}", GW_API_READ, false, gw_api_product_get},
    {"GET", "/api/devices", GW_API_READ, false, gw_api_devices_list},
    {"POST", "/api/devices", GW_API_ADMIN, true, gw_api_devices_create},
    {"GET", "/api/devices/{id}", GW_API_READ, false, gw_api_device_get},
    {"PATCH", "/api/devices/{id}", GW_API_ADMIN, true, gw_api_device_patch},
    {"DELETE", "/api/devices/{id}", GW_API_ADMIN, false, gw_api_device_delete},
    {"GET", "/api/devices/{id}/events", GW_API_READ, false, gw_api_device_events},
    {"POST", "/api/devices/{id}/functions/{fn}", GW_API_ADMIN, true, gw_api_function_invoke},
    {"PUT", "/api/devices/{id}/properties", GW_API_ADMIN, true, gw_api_properties_write},
    {"GET", "/api/devices/{id}/properties", GW_API_READ, false, gw_api_properties_read},
    {"GET", "/api/stream", GW_API_READ, false, gw_api_stream_events},
    {"POST", "/api/reload", GW_API_ADMIN, false, gw_api_reload},
    {NULL, NULL, GW_API_NONE, false, NULL},
};

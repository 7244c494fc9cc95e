/* fuzz_json_read.c: the JSON codec's in-place reader (codecs/json/json_read.c) against the general
 * path on arbitrary bytes, as a property report, an event with params and one without: whatever
 * the reader takes, the general path must accept with the same message and payload
 * (json_read_diff.h); aborts on any difference. The product: thermo_product.h. */
#include <stdint.h>
#include <stdlib.h>

#include "json_read_diff.h"
#include "thermo_product.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (json_read_diff(&product, GW_MSG_PROPERTY_REPORT, NULL, data, size) < 0 ||
        json_read_diff(&product, GW_MSG_EVENT, "overheat", data, size) < 0 ||
        json_read_diff(&product, GW_MSG_EVENT, "ping", data, size) < 0) {
        fprintf(stderr, "json_read: %s\n", json_read_diff_why);
        abort();
    }
    return 0;
}

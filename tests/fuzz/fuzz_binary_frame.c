/* fuzz_binary_frame.c: the binary codec's stream framer and frame decoder on arbitrary bytes, over
 * built-in layouts (length field + CRC-16/MODBUS, 0x7E delimiters with escaping + XOR + BCD,
 * datagrams with every field type + CRC-32, an end delimiter "\r\n", fixed size + sum-8, an
 * HMAC, GT06: CRC-16/X-25 by its parameters, datetime, u24, bcd digits, sign_from, Teltonika:
 * a handshake, repeated groups of records with id-value lists, a bare ack), loaded
 * once through the real config loader. The input is read as a TCP stream (frame, then decode each
 * frame) and as one datagram. Checks: frame() stays inside the buffer and max_frame, a rejection
 * carries a reason and a valid UTF-8 detail and no values, a decoded message's ack frames and
 * decodes again, a decoded message re-encodes to a frame that decodes to the same values, and a
 * report decoded straight into its payload text (hint.check) agrees with the general path. */
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "binary_text_diff.h"
#include "codecs/binary/internal.h"
#include "config/config.h"
#include "gateway/registry.h"

#define PRODUCT_HEAD(id, props)                                                                    \
    "{ \"id\": \"" id                                                                              \
    "\", \"protocol\": \"mqtt\", \"codec\": \"binary\", \"properties\": [ " props " ], "

static const char *const products[] = {
    /* length field, CRC-16/MODBUS, login, report, event, reply */
    PRODUCT_HEAD("len",
                 "{ \"id\": \"e\", \"type\": \"double\" }, { \"id\": \"v\", \"type\": "
                 "\"float\" }, { \"id\": \"t\", \"type\": \"enum\", \"values\": [\"a\", "
                 "\"b\"] }, { \"id\": \"on\", \"type\": \"bool\" }, { \"id\": \"q\", "
                 "\"type\": \"int\" }") "\"events\": [ { \"id\": \"ov\", \"params\": [ { \"id\": "
                                        "\"p\", \"type\": \"int\" } ] } ],"
                                        "\"functions\": [ { \"id\": \"rs\", \"outputs\": [ { "
                                        "\"id\": \"k\", \"type\": \"double\" } ] "
                                        "} ],"
                                        "\"frame\": { \"max_frame\": 256, \"framing\": { \"mode\": "
                                        "\"length\", \"offset\": 1, "
                                        "\"width\": 2 },"
                                        " \"header\": [ { \"name\": \"s\", \"offset\": 0, "
                                        "\"type\": \"u8\", \"value\": \"0x68\" }, "
                                        "{ \"name\": \"cmd\", \"offset\": 3, \"type\": \"u8\" }, { "
                                        "\"type\": \"u16\", \"role\": "
                                        "\"seq\" } ],"
                                        " \"discriminator\": \"cmd\", \"check\": { \"algorithm\": "
                                        "\"crc16-modbus\", \"endian\": "
                                        "\"little\" },"
                                        " \"messages\": ["
                                        "  { \"kind\": \"login\", \"match\": 1, \"fields\": [ { "
                                        "\"type\": \"string\", \"size\": 8, "
                                        "\"role\": \"device_id\" }, { \"type\": \"string\", "
                                        "\"prefix\": 1, \"role\": \"secret\" } ] },"
                                        "  { \"kind\": \"report\", \"match\": 2, \"fields\": [ { "
                                        "\"type\": \"u32\", \"scale\": 0.01, "
                                        "\"property\": \"e\" }, { \"type\": \"u16\", \"scale\": "
                                        "0.1, \"property\": \"v\" }, "
                                        "{ \"type\": \"u8\", \"property\": \"t\" }, { \"offset\": "
                                        "13, \"type\": \"u8\", \"bit\": 0, "
                                        "\"property\": \"on\" }, { \"offset\": 13, \"type\": "
                                        "\"u8\", \"bit\": 1, \"bits\": 2, "
                                        "\"property\": \"q\" }, { \"offset\": 14, \"type\": "
                                        "\"u32\", \"scale\": 1000, \"role\": "
                                        "\"timestamp\" } ] },"
                                        "  { \"kind\": \"event\", \"match\": 3, \"event\": \"ov\", "
                                        "\"fields\": [ { \"type\": \"i16\", "
                                        "\"param\": \"p\" } ] },"
                                        "  { \"kind\": \"heartbeat\", \"match\": 4 },"
                                        "  { \"kind\": \"function_reply\", \"match\": 5, "
                                        "\"function\": \"rs\", \"ack\": false, "
                                        "\"fields\": [ { \"type\": \"u8\", \"role\": \"result\" }, "
                                        "{ \"type\": \"f64\", \"output\": "
                                        "\"k\" } ] } ],"
                                        " \"ack\": { \"match\": 128, \"fields\": [ { \"type\": "
                                        "\"u8\", \"role\": \"request_code\" }, "
                                        "{ \"type\": \"u8\", \"role\": \"result\" } ] } } }",

    /* JT/T 808-style */
    PRODUCT_HEAD(
        "808",
        "{ \"id\": \"lat\", \"type\": \"double\" }, { \"id\": \"sos\", \"type\": "
        "\"bool\" }, { \"id\": \"tm\", \"type\": \"string\" }") "\"frame\": { \"max_frame\": 300, "
                                                                "\"framing\": { \"mode\": "
                                                                "\"delimiter\", \"start\": \"7E\", "
                                                                "\"end\": \"7E\", \"escape\": { "
                                                                "\"byte\": \"7D\", \"map\": { "
                                                                "\"7E\": \"02\", \"7D\": \"01\" } "
                                                                "} },"
                                                                " \"header\": [ { \"name\": "
                                                                "\"id\", \"offset\": 0, \"type\": "
                                                                "\"u16\" }, { \"offset\": 4, "
                                                                "\"type\": \"bcd\", \"size\": 6, "
                                                                "\"role\": \"device_id\" }, { "
                                                                "\"offset\": 10, \"type\": "
                                                                "\"u16\", \"role\": \"seq\" } ],"
                                                                " \"discriminator\": \"id\", "
                                                                "\"check\": { \"algorithm\": "
                                                                "\"xor\", \"to\": -1, \"at\": -1 },"
                                                                " \"auth_code\": { \"algorithm\": "
                                                                "\"hmac-sha256\", \"size\": 8 },"
                                                                " \"messages\": ["
                                                                "  { \"kind\": \"register\", "
                                                                "\"match\": 256, \"fields\": [ { "
                                                                "\"offset\": 12, \"type\": "
                                                                "\"u16\" }, { \"type\": \"u16\" }, "
                                                                "{ \"type\": \"string\", "
                                                                "\"size\": 5 }, { \"type\": "
                                                                "\"string\", \"size\": 20 }, { "
                                                                "\"type\": \"string\", \"size\": "
                                                                "7 }, { \"type\": \"u8\" } ], "
                                                                "\"ack\": { \"match\": 33024, "
                                                                "\"fields\": [ { \"offset\": 2, "
                                                                "\"type\": \"u16\", \"value\": "
                                                                "19 }, { \"offset\": 12, \"type\": "
                                                                "\"u16\", \"role\": \"seq\" }, { "
                                                                "\"type\": \"u8\", \"role\": "
                                                                "\"result\" }, { \"type\": "
                                                                "\"string\", \"size\": 16, "
                                                                "\"role\": \"auth_code\" } ] }, "
                                                                "\"refusal\": { \"match\": 33024, "
                                                                "\"fields\": [ { \"offset\": 2, "
                                                                "\"type\": \"u16\", \"value\": 3 "
                                                                "}, { \"offset\": 12, \"type\": "
                                                                "\"u16\", \"role\": \"seq\" }, { "
                                                                "\"type\": \"u8\", \"value\": 4 "
                                                                "} ] } },"
                                                                "  { \"kind\": \"login\", "
                                                                "\"match\": 258, \"fields\": [ { "
                                                                "\"offset\": 12, \"type\": "
                                                                "\"string\", \"prefix\": 1, "
                                                                "\"role\": \"secret\" } ] },"
                                                                "  { \"kind\": \"heartbeat\", "
                                                                "\"match\": 2 },"
                                                                "  { \"kind\": \"report\", "
                                                                "\"match\": 512, \"fields\": [ { "
                                                                "\"offset\": 12, \"type\": "
                                                                "\"u32\", "
                                                                "\"bit\": 0, \"property\": \"sos\" "
                                                                "}, { \"offset\": 16, \"type\": "
                                                                "\"u32\", \"scale\": "
                                                                "0.000001, \"property\": \"lat\" "
                                                                "}, { \"type\": \"bcd\", \"size\": "
                                                                "6, \"property\": \"tm\" } ] "
                                                                "} ],"
                                                                " \"ack\": { \"match\": 32769, "
                                                                "\"fields\": [ { \"offset\": 2, "
                                                                "\"type\": \"u16\", \"value\": 5 "
                                                                "}, { \"offset\": 12, \"type\": "
                                                                "\"u16\", \"role\": \"seq\" }, { "
                                                                "\"type\": \"u16\", \"role\": "
                                                                "\"request_code\" }, { \"type\": "
                                                                "\"u8\", \"role\": \"result\" } ] "
                                                                "} } }",

    /* datagram, every field type, CRC-32, token */
    PRODUCT_HEAD(
        "dg",
        "{ \"id\": \"a\", \"type\": \"int\" }, { \"id\": \"b\", \"type\": \"long\" "
        "}, { \"id\": \"c\", \"type\": \"long\" }, { \"id\": \"d\", \"type\": "
        "\"float\" }, { \"id\": \"e\", \"type\": \"double\" }, { \"id\": \"f\", "
        "\"type\": \"string\" }, { \"id\": \"g\", \"type\": \"string\" }, { \"id\": "
        "\"h\", \"type\": \"string\" }, { \"id\": \"i\", \"type\": \"long\" }, { "
        "\"id\": \"j\", \"type\": \"int\" }") "\"frame\": { \"endian\": \"little\", \"max_frame\": "
                                              "128, \"framing\": { \"mode\": "
                                              "\"datagram\" },"
                                              " \"header\": [ { \"name\": \"ty\", \"type\": \"u8\" "
                                              "}, { \"type\": \"string\", \"size\": 4, "
                                              "\"role\": \"device_id\" }, { \"type\": \"bytes\", "
                                              "\"size\": 4, \"role\": \"secret\" }, { "
                                              "\"type\": \"u32\", \"role\": \"seq\" } ],"
                                              " \"discriminator\": \"ty\", \"check\": { "
                                              "\"algorithm\": \"crc32\", \"at\": -4 },"
                                              " \"messages\": ["
                                              "  { \"kind\": \"report\", \"match\": 1, \"fields\": "
                                              "[ { \"type\": \"i8\", \"property\": \"a\" "
                                              "}, { \"type\": \"u64\", \"property\": \"b\" }, { "
                                              "\"type\": \"i64\", \"endian\": \"big\", "
                                              "\"property\": \"c\" }, { \"type\": \"f32\", "
                                              "\"property\": \"d\" }, { \"type\": \"f64\", "
                                              "\"scale\": -2.5, \"add\": 1, \"property\": \"e\" }, "
                                              "{ \"type\": \"bcd\", \"size\": 3, "
                                              "\"property\": \"f\" }, { \"type\": \"bcd\", "
                                              "\"size\": 9, \"scale\": 3, \"property\": \"i\" }, "
                                              "{ \"type\": \"i32\", \"scale\": -7, \"add\": 5, "
                                              "\"property\": \"j\" }, { \"type\": "
                                              "\"string\", \"prefix\": 2, \"property\": \"g\" }, { "
                                              "\"type\": \"bytes\", \"prefix\": 1, "
                                              "\"property\": \"h\" } ] },"
                                              "  { \"kind\": \"heartbeat\", \"match\": 2, "
                                              "\"length\": 17 } ],"
                                              " \"ack\": { \"match\": 129, \"fields\": [ { "
                                              "\"type\": \"u8\", \"role\": \"result\" } ] } } }",

    /* "\r\n"-terminated lines */
    PRODUCT_HEAD(
        "crlf",
        "{ \"id\": \"s\", \"type\": \"string\" }") "\"frame\": { \"max_frame\": 64, \"framing\": { "
                                                   "\"mode\": \"delimiter\", \"end\": \"0D0A\" },"
                                                   " \"header\": [ { \"type\": \"u8\", \"role\": "
                                                   "\"seq\" } ],"
                                                   " \"messages\": [ { \"kind\": \"report\", "
                                                   "\"fields\": [ { \"type\": \"string\", "
                                                   "\"prefix\": 1, "
                                                   "\"property\": \"s\" } ] } ] } }",

    /* fixed size, sum-8 */
    PRODUCT_HEAD(
        "fix",
        "{ \"id\": \"n\", \"type\": \"int\" }") "\"frame\": { \"max_frame\": 8, \"framing\": { "
                                                "\"mode\": \"fixed\", \"length\": 8 },"
                                                " \"header\": [ { \"name\": \"c\", \"type\": "
                                                "\"u8\" }, { \"type\": \"u8\", \"role\": \"seq\" "
                                                "} ],"
                                                " \"discriminator\": \"c\", \"check\": { "
                                                "\"algorithm\": \"sum8\" },"
                                                " \"messages\": [ { \"kind\": \"report\", "
                                                "\"match\": 1, \"fields\": [ { \"type\": \"i32\", "
                                                "\"property\": \"n\" } ] }, { \"kind\": "
                                                "\"heartbeat\", \"match\": 2 } ],"
                                                " \"ack\": { \"match\": 3, \"fields\": [ { "
                                                "\"type\": \"u8\", \"role\": \"result\" } ] } } }",

    /* delimited and escaped, 4-byte HMAC-SHA256 before an XOR check that covers it */
    PRODUCT_HEAD(
        "mac",
        "{ \"id\": \"n\", \"type\": \"int\" }") "\"frame\": { \"max_frame\": 64, \"framing\": { "
                                                "\"mode\": \"delimiter\", \"start\": \"7E\", "
                                                "\"end\": \"7E\", \"escape\": { \"byte\": \"7D\", "
                                                "\"map\": { \"7E\": \"02\", \"7D\": \"01\" } } },"
                                                " \"header\": [ { \"name\": \"c\", \"type\": "
                                                "\"u8\" }, { \"type\": \"u16\", \"role\": \"seq\" "
                                                "}, "
                                                "{ \"type\": \"string\", \"size\": 4, \"role\": "
                                                "\"device_id\" } ],"
                                                " \"discriminator\": \"c\", \"check\": { "
                                                "\"algorithm\": \"xor\" },"
                                                " \"auth\": { \"algorithm\": \"hmac-sha256\", "
                                                "\"size\": 4 },"
                                                " \"messages\": [ { \"kind\": \"report\", "
                                                "\"match\": 1, \"fields\": [ { \"type\": \"i32\", "
                                                "\"property\": \"n\" } ] }, { \"kind\": "
                                                "\"heartbeat\", \"match\": 2 } ],"
                                                " \"ack\": { \"match\": 3, \"fields\": [ { "
                                                "\"type\": \"u8\", \"role\": \"result\" } ] } } }",

    /* GT06: 78 78, 1-byte length + 2, CRC-16/X-25 by its catalogue parameters, 0D 0A; IMEI in BCD
     * with a pad digit, datetime, u24, signs from flag bits */
    PRODUCT_HEAD("g06",
                 "{ \"id\": \"lat\", \"type\": \"double\" }, { \"id\": \"lon\", "
                 "\"type\": \"double\" }, { \"id\": \"c\", \"type\": \"int\" }, "
                 "{ \"id\": \"ok\", \"type\": \"bool\" }, { \"id\": \"cell\", "
                 "\"type\": \"long\" }") "\"events\": [ { \"id\": \"al\", \"params\": [ { \"id\": "
                                         "\"a\", \"type\": \"int\" }, "
                                         "{ \"id\": \"lat\", \"type\": \"double\" } ] } ],"
                                         "\"functions\": [ { \"id\": \"cmd\", \"inputs\": [ { "
                                         "\"id\": \"text\", \"type\": \"string\" } ], "
                                         "\"outputs\": [ { \"id\": \"resp\", \"type\": "
                                         "\"string\" } ] } ],"
                                         "\"frame\": { \"max_frame\": 260, \"framing\": { "
                                         "\"mode\": \"length\", \"offset\": 2, "
                                         "\"width\": 1, \"adjust\": 2 },"
                                         " \"header\": [ { \"name\": \"st\", \"offset\": 0, "
                                         "\"type\": \"u16\", \"value\": "
                                         "\"0x7878\" }, { \"name\": \"p\", \"offset\": 3, "
                                         "\"type\": \"u8\" }, { \"offset\": -6, "
                                         "\"type\": \"u16\", \"role\": \"seq\" }, { \"offset\": "
                                         "-2, \"type\": \"u16\", "
                                         "\"value\": \"0x0D0A\" } ],"
                                         " \"discriminator\": \"p\", \"check\": { \"algorithm\": { "
                                         "\"width\": 16, \"poly\": "
                                         "\"0x1021\", \"init\": \"0xFFFF\", \"refin\": true, "
                                         "\"refout\": true, \"xorout\": "
                                         "\"0xFFFF\", \"check\": \"0x906E\" }, \"from\": 2, "
                                         "\"to\": -4, \"at\": -4 },"
                                         " \"messages\": ["
                                         "  { \"kind\": \"login\", \"match\": 1, \"ack\": { "
                                         "\"match\": 1 }, \"fields\": [ { "
                                         "\"offset\": 4, \"type\": \"bcd\", \"size\": 8, "
                                         "\"digits\": 15, \"role\": "
                                         "\"device_id\" } ] },"
                                         "  { \"kind\": \"report\", \"match\": 18, \"ack\": false, "
                                         "\"fields\": ["
                                         "   { \"offset\": 4, \"type\": \"datetime\", \"role\": "
                                         "\"timestamp\" },"
                                         "   { \"offset\": 11, \"type\": \"u32\", \"scale\": "
                                         "5.555555555555556e-7, \"property\": "
                                         "\"lat\", \"sign_from\": { \"field\": \"n\", "
                                         "\"negative_when\": 0 } },"
                                         "   { \"offset\": 15, \"type\": \"u32\", \"scale\": "
                                         "5.555555555555556e-7, \"property\": "
                                         "\"lon\", \"sign_from\": { \"field\": \"cs\", \"bit\": 0, "
                                         "\"negative_when\": 1 } },"
                                         "   { \"offset\": 20, \"type\": \"u16\", \"bit\": 0, "
                                         "\"bits\": 10, \"property\": \"c\" },"
                                         "   { \"name\": \"n\", \"offset\": 20, \"type\": \"u16\", "
                                         "\"bit\": 10 },"
                                         "   { \"name\": \"cs\", \"offset\": 20, \"type\": "
                                         "\"u16\", \"bit\": 11 },"
                                         "   { \"offset\": 20, \"type\": \"u16\", \"bit\": 12, "
                                         "\"property\": \"ok\" },"
                                         "   { \"offset\": 27, \"type\": \"u24\", \"property\": "
                                         "\"cell\" } ] },"
                                         "  { \"kind\": \"heartbeat\", \"match\": 19, \"ack\": { "
                                         "\"match\": 19 } },"
                                         "  { \"kind\": \"event\", \"match\": 22, \"event\": "
                                         "\"al\", \"ack\": { \"match\": 22 }, "
                                         "\"fields\": [ { \"offset\": 34, \"type\": \"u8\", "
                                         "\"param\": \"a\" }, { \"offset\": 11, "
                                         "\"type\": \"u32\", \"scale\": 5.555555555555556e-7, "
                                         "\"param\": \"lat\", \"sign_from\": "
                                         "{ \"field\": \"n\", \"negative_when\": 0 } }, { "
                                         "\"name\": \"n\", \"offset\": 20, "
                                         "\"type\": \"u16\", \"bit\": 10 } ] },"
                                         /* the online command and its reply: "size_from" */
                                         "  { \"kind\": \"invoke\", \"match\": 128, "
                                         "\"function\": \"cmd\", \"fields\": [ { \"name\": "
                                         "\"cl\", \"offset\": 4, \"type\": \"u8\" }, { "
                                         "\"offset\": 5, \"type\": \"u32\", \"role\": "
                                         "\"seq\" }, { \"offset\": 9, \"type\": \"string\", "
                                         "\"input\": \"text\", \"size_from\": { \"field\": "
                                         "\"cl\", \"add\": -4 } }, { \"type\": \"u16\", "
                                         "\"value\": 2 } ] },"
                                         "  { \"kind\": \"function_reply\", \"match\": 21, "
                                         "\"function\": \"cmd\", \"ack\": false, \"fields\": "
                                         "[ { \"name\": \"cl\", \"offset\": 4, \"type\": "
                                         "\"u8\" }, { \"offset\": 5, \"type\": \"u32\", "
                                         "\"role\": \"seq\" }, { \"offset\": 9, \"type\": "
                                         "\"bytes\", \"output\": \"resp\", \"size_from\": "
                                         "{ \"field\": \"cl\", \"add\": -4 } }, { \"type\": "
                                         "\"u16\" } ] } ] } }",
    /* Teltonika Codec 8 / 8E / 12: a 4-byte length, CRC-16/ARC, a handshake (IMEI), repeated
     * groups of records with id-value lists, a bare ack with the record count, a 4-byte prefix */
    "{ \"id\": \"tk\", \"protocol\": \"tcp\", \"auth\": { \"mode\": \"device-id\" }, "
    "\"codec\": \"binary\", \"properties\": [ "
    "{ \"id\": \"lat\", \"type\": \"double\" }, { \"id\": \"lon\", \"type\": "
    "\"double\" }, { \"id\": \"q\", \"type\": \"int\" }, { \"id\": \"on\", \"type\": "
    "\"bool\" }, { \"id\": \"v\", \"type\": \"double\" }, { \"id\": \"od\", \"type\": "
    "\"long\" }, { \"id\": \"ax\", \"type\": \"int\" }, { \"id\": \"ib\", \"type\": "
    "\"string\" } ], "
    "\"functions\": [ { \"id\": \"cmd\", \"outputs\": [ { \"id\": "
    "\"r\", \"type\": \"string\" } ] } ], \"frame\": {\"max_frame\": "
    "2048, \"framing\": {\"mode\": \"length\", \"offset\": 4, "
    "\"width\": 4, \"adjust\": 4}, \"handshake\": {\"field\": "
    "{\"type\": \"string\", \"prefix\": 2, \"role\": \"device_id\"}, "
    "\"accept\": \"01\", \"refuse\": \"00\"}, \"header\": "
    "[{\"offset\": 0, \"type\": \"u32\", \"value\": 0}, {\"offset\": "
    "-4, \"type\": \"u16\", \"value\": 0}, {\"name\": \"c\", "
    "\"offset\": 8, \"type\": \"u8\"}], \"discriminator\": \"c\", "
    "\"check\": {\"algorithm\": \"crc16-arc\", \"from\": 8, \"to\": "
    "-4, \"at\": -2}, \"messages\": [{\"kind\": \"report\", "
    "\"match\": 8, \"ack\": {\"bare\": true, \"fields\": [{\"type\": "
    "\"u32\", \"role\": \"record_count\"}]}, \"fields\": [{\"type\": "
    "\"group\", \"count\": 1, \"count_after\": true, \"record\": "
    "[{\"type\": \"u64\", \"role\": \"timestamp\"}, {\"type\": "
    "\"u8\"}, {\"type\": \"i32\", \"scale\": 1e-07, \"property\": "
    "\"lon\"}, {\"type\": \"i32\", \"scale\": 1e-07, \"property\": "
    "\"lat\"}, {\"type\": \"i16\"}, {\"type\": \"u16\"}, {\"type\": "
    "\"u8\"}, {\"type\": \"u16\"}, {\"type\": \"u8\"}, {\"name\": "
    "\"io\", \"type\": \"idlist\", \"id\": 1, \"count\": 1, "
    "\"total\": true, \"widths\": [1, 2, 4, 8], \"items\": {\"21\": "
    "{\"type\": \"u8\", \"property\": \"q\"}, \"1\": {\"type\": "
    "\"u8\", \"property\": \"on\"}, \"66\": {\"type\": \"u16\", "
    "\"scale\": 0.001, \"property\": \"v\"}, \"16\": {\"type\": "
    "\"u32\", \"property\": \"od\"}, \"17\": {\"type\": \"i16\", "
    "\"property\": \"ax\"}, \"78\": {\"type\": \"bytes\", "
    "\"property\": \"ib\"}}}]}]}, {\"kind\": \"report\", \"match\": "
    "142, \"ack\": {\"bare\": true, \"fields\": [{\"type\": \"u32\", "
    "\"role\": \"record_count\"}]}, \"fields\": [{\"type\": "
    "\"group\", \"count\": 1, \"count_after\": true, \"record\": "
    "[{\"type\": \"u64\", \"role\": \"timestamp\"}, {\"type\": "
    "\"u8\"}, {\"type\": \"i32\", \"scale\": 1e-07, \"property\": "
    "\"lon\"}, {\"type\": \"i32\", \"scale\": 1e-07, \"property\": "
    "\"lat\"}, {\"type\": \"i16\"}, {\"type\": \"u16\"}, {\"type\": "
    "\"u8\"}, {\"type\": \"u16\"}, {\"type\": \"u16\"}, {\"name\": "
    "\"io\", \"type\": \"idlist\", \"id\": 2, \"count\": 2, "
    "\"total\": true, \"widths\": [1, 2, 4, 8, \"var\"], \"items\": "
    "{\"21\": {\"type\": \"u8\", \"property\": \"q\"}, \"1\": "
    "{\"type\": \"u8\", \"property\": \"on\"}, \"66\": {\"type\": "
    "\"u16\", \"scale\": 0.001, \"property\": \"v\"}, \"16\": "
    "{\"type\": \"u32\", \"property\": \"od\"}, \"17\": {\"type\": "
    "\"i16\", \"property\": \"ax\"}, \"78\": {\"type\": \"bytes\", "
    "\"property\": \"ib\"}}}]}]}, {\"kind\": \"function_reply\", "
    "\"match\": 12, \"function\": \"cmd\", \"ack\": false, "
    "\"fields\": [{\"type\": \"u8\", \"value\": 1}, {\"type\": "
    "\"u8\", \"value\": 6}, {\"type\": \"string\", \"prefix\": 4, "
    "\"output\": \"r\"}, {\"type\": \"u8\", \"value\": 1}]}]} }",
};
#define N_PRODUCTS (sizeof(products) / sizeof(products[0]))

static gw_config *cfg;

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0)
        abort();
}

static void load_once(void)
{
    char dir[] = "/tmp/iotgw-fuzz-binary-XXXXXX", path[256];
    gw_diag d = {0};
    if (cfg)
        return;
    if (!mkdtemp(dir))
        abort();
    snprintf(path, sizeof(path), "%s/products", dir);
    mkdir(path, 0700);
    snprintf(path, sizeof(path), "%s/gateway.json", dir);
    write_file(path, "{ \"admin\": { \"enabled\": false }, \"adapters\": { \"mqtt\": { "
                     "\"listeners\": [ { \"address\": \"127.0.0.1\", \"port\": 0 } ] }, "
                     "\"tcp\": { \"listeners\": [ { \"address\": \"127.0.0.1\", \"port\": 0, "
                     "\"product\": \"tk\" } ] } } }");
    snprintf(path, sizeof(path), "%s/devices.json", dir);
    write_file(path, "[]");
    for (size_t i = 0; i < N_PRODUCTS; i++) {
        snprintf(path, sizeof(path), "%s/products/p%zu.json", dir, i);
        write_file(path, products[i]);
    }
    snprintf(path, sizeof(path), "%s/gateway.json", dir);
    if (gw_config_load(path, gw_registry_config_plugins(), &cfg, &d) != 0 ||
        cfg->n_products != N_PRODUCTS) {
        for (size_t i = 0; i < d.n; i++)
            fprintf(stderr, "%s\n", d.msgs[i]);
        abort();
    }
    gw_diag_free(&d);
    for (size_t i = 0; i < N_PRODUCTS; i++) {
        snprintf(path, sizeof(path), "%s/products/p%zu.json", dir, i);
        remove(path);
    }
    snprintf(path, sizeof(path), "%s/products", dir);
    rmdir(path);
    snprintf(path, sizeof(path), "%s/gateway.json", dir);
    remove(path);
    snprintf(path, sizeof(path), "%s/devices.json", dir);
    remove(path);
    rmdir(dir);
}

static void check_reject(const gw_thing_msg *m, const gw_reject *rej)
{
    if (rej->reason == GW_R_NONE || !rej->detail[0] || m->values || m->records)
        abort();
    json_t *d = json_string(rej->detail);
    if (!d)
        abort();
    json_decref(d);
}

/* Equal values; reals within a relative 1e-9 (a real transform may not invert bit-exactly). */
static bool same_values(json_t *a, json_t *b)
{
    const char *key;
    json_t *va;
    if (!a || !b)
        return !a && !b;
    if (json_object_size(a) != json_object_size(b))
        return false;
    json_object_foreach(a, key, va)
    {
        json_t *vb = json_object_get(b, key);
        if (json_is_real(va) && json_is_real(vb)) {
            double x = json_real_value(va), y = json_real_value(vb);
            double scale = fabs(x) > fabs(y) ? fabs(x) : fabs(y);
            if (fabs(x - y) > 1e-9 * (scale > 1 ? scale : 1))
                return false;
        } else if (!json_equal(va, vb)) {
            return false;
        }
    }
    return true;
}

/* A decoded message: its ack is a whole frame of the layout; its values re-encode to a frame that
 * decodes to the same values. */
static void check_decoded(const gw_product *p, const gw_thing_msg *m, const bin_msg *which)
{
    const bin_layout *l = p->codec_state;
    static uint8_t out[GW_BINARY_MAX_FRAME + 64];
    size_t n = 0, skip;
    gw_reject rej = {0};
    gw_thing_msg again;
    const bin_msg *w2;

    gw_thing_msg acked = *m; /* a group's ack counts the records (all accepted) */
    acked.n_accepted = (uint32_t)json_array_size(m->records);
    int rc = gw_codec_binary_ops.encode_ack(p, &acked, NULL, "fuzz-secret", out, sizeof(out), &n);
    if (rc != 0)
        abort();
    const bin_msg *am = which->ack >= 0 ? &l->acks[which->ack] : NULL;
    if (n && am && am->bare) { /* its fields alone: the count, big-endian here */
        if (n != 4 || gw__binary_get_uint(out, 4, false) != acked.n_accepted)
            abort();
        n = 0;
    }
    for (size_t i = 0; i < json_array_size(m->records); i++) { /* {"ts", "values"} each */
        json_t *r = json_array_get(m->records, i);
        if (!json_is_integer(json_object_get(r, "ts")) ||
            !json_is_object(json_object_get(r, "values")))
            abort();
    }
    if (n && l->framing != BIN_FR_DATAGRAM && gw_codec_binary_ops.frame(p, out, n, &skip) != (int)n)
        abort();
    if (n && (gw__binary_decode(p, true, out, n, &again, &w2, &rej) != 0 || w2->kind != BIN_K_ACK ||
              again.seq != m->seq))
        abort();
    if (n)
        gw_thing_msg_clear(&again);
    static const gw_reject refused = {GW_R_NONE, "refused"};
    rc = gw_codec_binary_ops.encode_ack(p, m, &refused, NULL, out, sizeof(out), &n);
    if (rc != 0 && rc != GW_EINVAL)
        abort();
    if (rc == 0 && n && l->framing != BIN_FR_DATAGRAM &&
        gw_codec_binary_ops.frame(p, out, n, &skip) != (int)n)
        abort();
    if (m->kind == GW_MSG_LOGIN && l->has_auth_code) { /* the code verifies; another does not */
        char code[65];
        gw_thing_msg c = *m;
        c.values = NULL;
        if (gw__binary_auth_code(l, "fuzz-secret", m->device_id, code, sizeof(code)) != 0)
            abort();
        snprintf(c.secret, sizeof(c.secret), "%s", code);
        if (gw_codec_binary_ops.verify(p, &c, NULL, 0, "fuzz-secret") != 0 ||
            gw_codec_binary_ops.verify(p, &c, NULL, 0, "fuzz-secreT") == 0)
            abort();
    }

    bin_src src = {.values = m->values,
                   .seq = m->seq,
                   .device_id = m->device_id,
                   .status = m->success ? 0 : -1,
                   .secret = "fuzz-secret",
                   .timestamp_ms = m->timestamp_ms};
    gw_error err = {0};
    rc = gw__binary_encode(l, which, &src, out, sizeof(out), &n, &err);
    if (rc == GW_EINVAL || rc == GW_ETOOBIG)
        return; /* e.g. a device id the decoder read as digits that no longer fit */
    if (rc != 0)
        abort();
    if (gw__binary_decode(p, false, out, n, &again, &w2, &rej) != 0) {
        fprintf(stderr, "re-encoded frame refused: %s\n", rej.detail);
        abort();
    }
    if (w2 != which || !same_values(m->values, again.values))
        abort();
    /* our own MAC verifies with the secret it was made with, and not with another */
    if (l->has_auth && (gw_codec_binary_ops.verify(p, &again, out, n, "fuzz-secret") != 0 ||
                        gw_codec_binary_ops.verify(p, &again, out, n, "fuzz-secreT") == 0))
        abort();
    gw_thing_msg_clear(&again);
}

/* The frame with its check recomputed, so that mutations reach the fields behind the check. */
static void decode_fixed_check(const gw_product *p, const uint8_t *frame, size_t len)
{
    const bin_layout *l = p->codec_state;
    static uint8_t scratch[GW_BINARY_MAX_FRAME], body[GW_BINARY_MAX_FRAME],
        wire[2 * GW_BINARY_MAX_FRAME + 16];
    const uint8_t *b;
    size_t n, wn;
    gw_reject rej = {0};
    gw_thing_msg m;
    const bin_msg *which;
    if (!l->algo || gw__binary_body(l, frame, len, scratch, &b, &n, &rej) != 0)
        return;
    int64_t from = l->ck_from < 0 ? (int64_t)n + l->ck_from : l->ck_from;
    int64_t to = l->ck_to < 0 ? (int64_t)n + l->ck_to : l->ck_to;
    int64_t at = l->ck_at < 0 ? (int64_t)n + l->ck_at : l->ck_at;
    if (from < 0 || to > (int64_t)n || from > to || at < 0 || at + l->ck_width > (int64_t)n)
        return;
    memcpy(body, b, n);
    if (l->has_auth) { /* a MAC made with the secret check_decoded verifies with */
        uint8_t mac[32];
        size_t mat;
        if (gw__binary_mac(l, body, n, "fuzz-secret", mac, &mat) != 0)
            return;
        memcpy(body + mat, mac, l->mac_size);
    }
    uint32_t c = gw__binary_check(l, body + from, (size_t)(to - from));
    gw__binary_put_uint(body + at, l->ck_width, l->ck_little, c);
    if (gw__binary_wrap(l, body, n, wire, sizeof(wire), &wn) != 0)
        return;
    memset(&rej, 0, sizeof(rej));
    if (gw__binary_decode(p, false, wire, wn, &m, &which, &rej) == 0) {
        if (l->has_auth && gw_codec_binary_ops.verify(p, &m, wire, wn, "fuzz-secret") != 0)
            abort(); /* we just made the MAC right */
        check_decoded(p, &m, which);
    } else if (rej.reason == GW_R_BAD_CHECK)
        abort(); /* we just made it right */
    else
        check_reject(&m, &rej);
    gw_thing_msg_clear(&m);
}

static void run(const gw_product *p, const uint8_t *data, size_t size)
{
    const bin_layout *l = p->codec_state;
    gw_thing_msg m;
    gw_reject rej = {0};
    const bin_msg *which;

    /* a report going to the dispatcher, written as text as it is read: as the general path */
    if (binary_text_diff(p, data, size) < 0) {
        fprintf(stderr, "report as text: %s\n", binary_text_diff_why);
        abort();
    }

    /* as one datagram */
    if (gw__binary_decode(p, false, data, size, &m, &which, &rej) == 0)
        check_decoded(p, &m, which);
    else
        check_reject(&m, &rej);
    gw_thing_msg_clear(&m);
    if (size <= l->max_frame)
        decode_fixed_check(p, data, size);

    /* a handshake at the start of the stream: inside the bytes, a login naming a device */
    int hs = gw_codec_binary_ops.handshake(p, data, size, &m, &rej);
    if (hs > (int)size || (hs > 0 && (m.kind != GW_MSG_LOGIN || !m.device_id[0])) ||
        (hs == GW_EINVAL && rej.reason == GW_R_NONE) ||
        (hs < 0 && hs != GW_EINVAL && hs != GW_ENOTFOUND))
        abort();
    gw_thing_msg_clear(&m);

    /* as a stream */
    size_t off = 0;
    while (off < size && l->framing != BIN_FR_DATAGRAM) {
        size_t skip = 0;
        int rc = gw_codec_binary_ops.frame(p, data + off, size - off, &skip);
        if (skip > size - off)
            abort();
        if (rc < 0) {
            if (rc != GW_ETOOBIG && rc != GW_EPROTO)
                abort();
            break;
        }
        if (rc == 0)
            break;
        if ((size_t)rc > l->max_frame || skip + (size_t)rc > size - off)
            abort();
        memset(&rej, 0, sizeof(rej));
        if (gw__binary_decode(p, false, data + off + skip, (size_t)rc, &m, &which, &rej) == 0)
            check_decoded(p, &m, which);
        else
            check_reject(&m, &rej);
        gw_thing_msg_clear(&m);
        decode_fixed_check(p, data + off + skip, (size_t)rc);
        off += skip + (size_t)rc;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    load_once();
    for (size_t i = 0; i < cfg->n_products; i++)
        run(&cfg->products[i], data, size);
    return 0;
}

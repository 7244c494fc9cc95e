/* binary_layout.c: the binary codec's layout loader: every example product loads, and every
 * layout mistake is refused at config load with the file, the JSON path under "frame" and a clear
 * message (overlaps, fields past the frame, a length field too small for max_frame, targets
 * missing from the thing model, ...). Each case edits one key of a sound base product. */
#include "binary_test.h"

static const char *const base_text =
    "{ \"id\": \"p\", \"protocol\": \"mqtt\", \"codec\": \"binary\",\n"
    "  \"properties\": [ { \"id\": \"t\", \"type\": \"float\" }, { \"id\": \"n\", \"type\": "
    "\"int\" },\n"
    "    { \"id\": \"on\", \"type\": \"bool\" },\n"
    "    { \"id\": \"mode\", \"type\": \"enum\", \"values\": [\"a\", \"b\"], \"access\": \"rw\" "
    "},\n"
    "    { \"id\": \"name\", \"type\": \"string\", \"access\": \"rw\" },\n"
    "    { \"id\": \"pos\", \"type\": \"struct\", \"fields\": [ { \"id\": \"x\", \"type\": "
    "\"int\" } ] } ],\n"
    "  \"events\": [ { \"id\": \"alarm\", \"params\": [ { \"id\": \"code\", \"type\": \"int\" } "
    "] } ],\n"
    "  \"functions\": [ { \"id\": \"go\", \"inputs\": [ { \"id\": \"speed\", \"type\": \"int\" } "
    "],\n"
    "                   \"outputs\": [ { \"id\": \"ok\", \"type\": \"bool\" } ] } ],\n"
    "  \"frame\": {\n"
    "    \"max_frame\": 64,\n"
    "    \"framing\": { \"mode\": \"length\", \"offset\": 1, \"width\": 1 },\n"
    "    \"header\": [ { \"name\": \"start\", \"offset\": 0, \"type\": \"u8\", \"value\": \"0xAA\" "
    "},\n"
    "                { \"name\": \"cmd\", \"offset\": 2, \"type\": \"u8\" },\n"
    "                { \"name\": \"seq\", \"type\": \"u16\", \"role\": \"seq\" } ],\n"
    "    \"discriminator\": \"cmd\",\n"
    "    \"check\": { \"algorithm\": \"crc16-modbus\", \"endian\": \"little\" },\n"
    "    \"messages\": [\n"
    "      { \"kind\": \"login\", \"match\": 1, \"fields\": [\n"
    "          { \"name\": \"id\", \"type\": \"string\", \"size\": 8, \"role\": \"device_id\" },\n"
    "          { \"name\": \"pw\", \"type\": \"string\", \"size\": 8, \"role\": \"secret\" } ] },\n"
    "      { \"kind\": \"report\", \"match\": 2, \"fields\": [\n"
    "          { \"name\": \"t\", \"type\": \"i16\", \"scale\": 0.1, \"property\": \"t\" },\n"
    "          { \"name\": \"n\", \"type\": \"u16\", \"property\": \"n\" } ] },\n"
    "      { \"kind\": \"event\", \"match\": 3, \"event\": \"alarm\", \"length\": 8, \"fields\": "
    "[\n"
    "          { \"name\": \"code\", \"type\": \"u8\", \"param\": \"code\" } ] },\n"
    "      { \"kind\": \"heartbeat\", \"match\": 4 },\n"
    "      { \"kind\": \"invoke\", \"match\": 5, \"function\": \"go\", \"fields\": [\n"
    "          { \"name\": \"speed\", \"type\": \"u8\", \"input\": \"speed\" } ] },\n"
    "      { \"kind\": \"write\", \"match\": 6, \"fields\": [\n"
    "          { \"name\": \"mode\", \"type\": \"u8\", \"property\": \"mode\" } ] } ],\n"
    "    \"ack\": { \"match\": 128, \"fields\": [\n"
    "        { \"name\": \"req\", \"type\": \"u8\", \"role\": \"request_code\" },\n"
    "        { \"name\": \"res\", \"type\": \"u8\", \"role\": \"result\" } ] }\n"
    "  }\n"
    "}\n";

/* Loads the base product with path set to the JSON value text (NULL text: path removed). */
static bt_loaded load_edit(const char *path, const char *value)
{
    json_error_t e;
    json_t *root = json_loads(base_text, 0, &e);
    if (!root) {
        fprintf(stderr, "base: %d: %s\n", e.line, e.text);
        exit(2);
    }
    if (path) {
        json_t *v = value ? json_loads(value, JSON_DECODE_ANY, &e) : json_null();
        if (!v) {
            fprintf(stderr, "edit %s: %s\n", value, e.text);
            exit(2);
        }
        bt_at(root, path, v, value == NULL);
    }
    char *text = json_dumps(root, 0);
    bt_loaded r = bt_load_text(text);
    free(text);
    json_decref(root);
    return r;
}

static int n_cases;

/* The edit is refused with exactly one diagnostic containing want. */
#define CHECK_EDIT(path, value, want)                                                              \
    do {                                                                                           \
        bt_loaded r_ = load_edit(path, value);                                                     \
        n_cases++;                                                                                 \
        CHECK_INT(r_.rc, GW_ECONFIG);                                                              \
        CHECK_CONTAINS(r_.errors, "\nproducts/p.json: " want);                                     \
        bt_free(&r_);                                                                              \
    } while (0)

#define CHECK_EDIT_OK(path, value)                                                                 \
    do {                                                                                           \
        bt_loaded r_ = load_edit(path, value);                                                     \
        if (r_.rc != 0)                                                                            \
            fprintf(stderr, "%s:%d: edit failed:%s", __FILE__, __LINE__, r_.errors);               \
        CHECK_INT(r_.rc, 0);                                                                       \
        bt_free(&r_);                                                                              \
    } while (0)

static void test_base_and_examples(void)
{
    bt_loaded r = load_edit(NULL, NULL);
    if (r.rc)
        fprintf(stderr, "base:%s", r.errors);
    CHECK_INT(r.rc, 0);
    CHECK(r.p && r.p->codec_state != NULL);
    if (r.p) {
        const bin_layout *l = r.p->codec_state;
        CHECK_INT(l->max_frame, 64);
        CHECK_INT(l->framing, BIN_FR_LENGTH);
        CHECK_INT(l->n_msgs, 6);
        CHECK_INT(l->min_total, 7);             /* header 0..5 + check 2 */
        CHECK_INT(l->msgs[1].fields[0].off, 5); /* sequence after the header */
        CHECK_INT(l->msgs[1].fields[1].off, 7);
        CHECK_INT(l->msgs[0].ack, 0);
    }
    bt_free(&r);

    const char *ex[] = {"meter-tcp.json", "tracker-808.json", "sensor-udp.json", "gt06.json"};
    for (size_t i = 0; i < 4; i++) {
        r = bt_load_example(ex[i]);
        CHECK_INT(r.rc, 0);
        CHECK(r.p && r.p->codec_state);
        bt_free(&r);
    }
}

static void test_frame_section(void)
{
    CHECK_EDIT("frame", NULL, "frame: missing required key");
    CHECK_EDIT("frame", "[]", "frame: must be an object");
    CHECK_EDIT("frame.bogus", "1", "frame.bogus: unknown key");
    CHECK_EDIT("frame.endian", "\"middle\"", "frame.endian: must be \"big\" or \"little\"");
    CHECK_EDIT("frame.max_frame", "0", "frame.max_frame: 0 is out of range 1..65536");
    CHECK_EDIT("frame.max_frame", "65537", "frame.max_frame: 65537 is out of range 1..65536");
    CHECK_EDIT("frame.messages", "[]", "frame.messages: must be a non-empty array");
    CHECK_EDIT("frame.messages", "[ { \"kind\": \"invoke\", \"match\": 5, \"function\": \"go\" } ]",
               "frame.messages: no upstream message");
}

static void test_framing(void)
{
    CHECK_EDIT("frame.framing", NULL, "frame.framing: missing required key");
    CHECK_EDIT("frame.framing.mode", "\"magic\"", "frame.framing.mode: must be \"fixed\"");
    CHECK_EDIT("frame.framing.covers", "\"body\"", "frame.framing.covers: must be \"after\"");
    CHECK_EDIT("frame.framing.length", "5", "frame.framing.length: unknown key");
    CHECK_EDIT("frame.framing.width", "3", "frame.framing.width: must be 1, 2 or 4");
    CHECK_EDIT("frame.framing.offset", "64", "frame.framing.offset: 64 is out of range 0..63");
    /* a length field that cannot hold max_frame */
    CHECK_EDIT("frame.max_frame", "1024",
               "frame.framing.width: a 1-byte length field describes at most 257 bytes, "
               "max_frame is 1024");
    CHECK_EDIT_OK("frame.framing.adjust", "-100"); /* 2 + 255 - 100 = 157 >= 64 */
    CHECK_EDIT("frame.framing.adjust", "-200",
               "frame.framing.width: a 1-byte length field describes at most 57 bytes");
    CHECK_EDIT("frame.framing", "{ \"mode\": \"fixed\", \"length\": 100 }",
               "frame.framing.length: 100 is out of range 1..64");
    CHECK_EDIT("frame.framing", "{ \"mode\": \"fixed\" }",
               "frame.framing.length: missing required key");
    /* fixed: the login's fields run past an 8-byte frame */
    CHECK_EDIT("frame.framing", "{ \"mode\": \"fixed\", \"length\": 8 }",
               "frame.messages[0].fields[0].offset: past the frame (length 8)");
    CHECK_EDIT("frame.framing", "{ \"mode\": \"delimiter\", \"start\": \"7E\" }",
               "frame.framing.end: missing required key");
    CHECK_EDIT("frame.framing", "{ \"mode\": \"delimiter\", \"end\": \"7G\" }",
               "frame.framing.end: \"7G\" is not a hex string");
    CHECK_EDIT("frame.framing", "{ \"mode\": \"delimiter\", \"end\": \"\" }",
               "frame.framing.end: must be a hex string of 1..8 bytes");
    CHECK_EDIT("frame.framing",
               "{ \"mode\": \"delimiter\", \"start\": \"7E\", \"end\": \"7E\", \"escape\": "
               "{ \"byte\": \"7D\", \"map\": { \"7E\": \"02\" } } }",
               "frame.framing.escape.map: must map the escape byte 7D itself");
    CHECK_EDIT("frame.framing",
               "{ \"mode\": \"delimiter\", \"start\": \"7E\", \"end\": \"7F\", \"escape\": "
               "{ \"byte\": \"7D\", \"map\": { \"7E\": \"02\", \"7D\": \"01\" } } }",
               "frame.framing.escape.map: must map the end delimiter 7F");
    CHECK_EDIT("frame.framing",
               "{ \"mode\": \"delimiter\", \"end\": \"7E\", \"escape\": "
               "{ \"byte\": \"7D\", \"map\": { \"7E\": \"02\", \"7D\": \"02\" } } }",
               "frame.framing.escape.map.7D: code 02 is used twice");
    CHECK_EDIT_OK("frame.framing", "{ \"mode\": \"delimiter\", \"end\": \"0D0A\" }");
    CHECK_EDIT_OK("frame.framing", "{ \"mode\": \"datagram\" }");
}

static void test_datagram_needs_udp(void)
{
    bt_loaded r = load_edit("frame.framing", "{ \"mode\": \"datagram\" }");
    CHECK_INT(r.rc, 0);
    if (r.p) {
        gw_product copy = *r.p;
        gw_diag d = {0};
        copy.protocol = "tcp";
        copy.codec_state = NULL;
        CHECK_INT(gw_codec_binary_ops.init(&copy, &d, NULL), GW_ECONFIG);
        CHECK_CONTAINS(d.n ? d.msgs[0] : "", "frame.framing.mode: \"datagram\" frames need a "
                                             "datagram transport, not tcp");
        gw_diag_free(&d);
        copy.protocol = "udp";
        CHECK_INT(gw_codec_binary_ops.init(&copy, &d, NULL), 0);
        gw_diag_free(&d);
        gw_codec_binary_ops.uninit(&copy);
    }
    bt_free(&r);
}

static void test_fields(void)
{
    const char *f = "frame.messages[1].fields[0]";
    char p[128];
#define AT(key) (snprintf(p, sizeof(p), "%s%s", f, key), p)
    CHECK_EDIT(AT(".type"), NULL, "frame.messages[1].fields[0].type: missing required key");
    CHECK_EDIT(AT(".type"), "\"u48\"", "frame.messages[1].fields[0].type: must be one of u8");
    CHECK_EDIT(AT(".colour"), "1", "frame.messages[1].fields[0].colour: unknown key");
    CHECK_EDIT(AT(".size"), "2", "frame.messages[1].fields[0].size: not allowed for type i16");
    CHECK_EDIT(AT(".endian"), "\"native\"", "frame.messages[1].fields[0].endian: must be");
    CHECK_EDIT(AT(""), "{ \"type\": \"string\", \"property\": \"name\" }",
               "frame.messages[1].fields[0].size: missing: give \"size\" (fixed) or \"prefix\"");
    CHECK_EDIT(AT(""), "{ \"type\": \"string\", \"size\": 4, \"prefix\": 1 }",
               "frame.messages[1].fields[0].prefix: give \"size\" or \"prefix\", not both");
    CHECK_EDIT(AT(""), "{ \"type\": \"bytes\", \"prefix\": 3 }",
               "frame.messages[1].fields[0].prefix: must be 1, 2 or 4");
    CHECK_EDIT(AT(""), "{ \"type\": \"bcd\", \"size\": 11 }",
               "frame.messages[1].fields[0].size: 11 is out of range 1..10");
    CHECK_EDIT(AT(""), "{ \"type\": \"bcd\", \"prefix\": 1 }",
               "frame.messages[1].fields[0].prefix: not allowed for type bcd");
    CHECK_EDIT(AT(".bit"), "3",
               "frame.messages[1].fields[0].bit: bit fields need an unsigned integer type");
    CHECK_EDIT(AT(""), "{ \"type\": \"u8\", \"bit\": 6, \"bits\": 3, \"property\": \"n\" }",
               "frame.messages[1].fields[0].bits: bits 6..8 do not fit in a 8-bit u8");
    CHECK_EDIT(AT(""), "{ \"type\": \"u8\", \"bit\": 8 }",
               "frame.messages[1].fields[0].bit: 8 is out of range 0..7");
    CHECK_EDIT(AT(".scale"), "0", "frame.messages[1].fields[0].scale: must be a non-zero number");
    CHECK_EDIT(AT(".add"), "\"1\"", "frame.messages[1].fields[0].add: must be a number");
    CHECK_EDIT(AT(""), "{ \"type\": \"string\", \"size\": 4, \"scale\": 2 }",
               "frame.messages[1].fields[0].scale: not allowed for type string");
    CHECK_EDIT(AT(""), "{ \"type\": \"u8\", \"value\": 256 }",
               "frame.messages[1].fields[0].value: 256 is out of range 0..255");
    CHECK_EDIT(AT(""), "{ \"type\": \"i8\", \"value\": -129 }",
               "frame.messages[1].fields[0].value: -129 is out of range -128..127");
    CHECK_EDIT(AT(""), "{ \"type\": \"u8\", \"value\": \"0xZZ\" }",
               "frame.messages[1].fields[0].value: \"0xZZ\" is not a hex number");
    CHECK_EDIT(AT(""), "{ \"type\": \"f32\", \"value\": 1 }",
               "frame.messages[1].fields[0].value: constants are for integer field types");
    CHECK_EDIT(AT(""), "{ \"type\": \"u8\", \"value\": 1, \"property\": \"n\" }",
               "frame.messages[1].fields[0].value: a constant field has no target");
    CHECK_EDIT(AT(".role"), "\"seq\"",
               "frame.messages[1].fields[0].role: a field has one target; \"property\" is "
               "already set");
    CHECK_EDIT(AT(".property"), "\"temp\"",
               "frame.messages[1].fields[0].property: no property \"temp\" in the thing model");
    CHECK_EDIT(AT(".property"), "\"name\"",
               "frame.messages[1].fields[0].property: property \"name\" is string: needs a "
               "string, bytes or bcd field");
    CHECK_EDIT(AT(".property"), "\"pos\"",
               "frame.messages[1].fields[0].property: property \"pos\" is struct: struct and "
               "array values cannot be carried");
    CHECK_EDIT(AT(".property"), "\"on\"",
               "frame.messages[1].fields[0].property: property \"on\" is bool: needs an integer "
               "field type without transform");
    CHECK_EDIT(AT(".property"), "\"n\"",
               "frame.messages[1].fields[0].property: property \"n\" is int: an integer cannot "
               "take a non-integer scale or add");
    CHECK_EDIT(AT(""), "{ \"type\": \"u8\", \"param\": \"code\" }",
               "frame.messages[1].fields[0].param: only in event messages");
    CHECK_EDIT("frame.messages[2].fields[0].param", "\"cod\"",
               "frame.messages[2].fields[0].param: event \"alarm\" has no param \"cod\"");
    CHECK_EDIT("frame.messages[4].fields[0].input", "\"sped\"",
               "frame.messages[4].fields[0].input: function \"go\" has no input \"sped\"");
    CHECK_EDIT(AT(""), "{ \"type\": \"u8\", \"output\": \"ok\" }",
               "frame.messages[1].fields[0].output: only in function_reply messages");
    CHECK_EDIT("frame.messages[5].fields[0].property", "\"n\"",
               "frame.messages[5].fields[0].property: property \"n\" is not writable");
    CHECK_EDIT_OK(AT(".property"), NULL); /* a field without target is read over */
    CHECK_EDIT(AT(""), "{ \"type\": \"u8\", \"role\": \"boss\" }",
               "frame.messages[1].fields[0].role: unknown role \"boss\"");
    CHECK_EDIT(AT(""), "{ \"type\": \"u8\", \"role\": \"result\" }",
               "frame.messages[1].fields[0].role: role result only in function_reply");
    CHECK_EDIT(AT(""), "{ \"type\": \"u8\", \"role\": \"request_code\" }",
               "frame.messages[1].fields[0].role: role request_code only in acks");
    CHECK_EDIT(AT(""), "{ \"type\": \"f32\", \"role\": \"seq\" }",
               "frame.messages[1].fields[0].role: role seq needs an integer field type");
    CHECK_EDIT(AT(""), "{ \"type\": \"f64\", \"role\": \"device_id\" }",
               "frame.messages[1].fields[0].role: role device_id needs a string, bytes, bcd or "
               "integer field");
    CHECK_EDIT("frame.messages[1].fields[1].property", "\"t\"",
               "frame.messages[1].fields[1]: \"t\" is already carried by "
               "frame.messages[1].fields[0]");
    CHECK_EDIT("frame.messages[0].fields[0].size", "64",
               "frame.messages[0].fields[0].role: a device_id of 64 characters is longer than "
               "the 63 allowed");
    CHECK_EDIT("frame.header[2]", "{ \"type\": \"bytes\", \"size\": 64, \"role\": \"secret\" }",
               "frame.header[2].role: a secret of 128 characters is longer than the 127 allowed");
    CHECK_EDIT("frame.header[2].role", "\"result\"", "frame.header[2].role: role result only");
    CHECK_EDIT("frame.header[2]", "{ \"type\": \"u8\", \"property\": \"n\" }",
               "frame.header[2].property: only in report and write messages");
#undef AT
}

static void test_shapes(void)
{
    /* overlapping fields */
    CHECK_EDIT("frame.messages[1].fields[1].offset", "6",
               "frame.messages[1].fields[1].offset: overlaps field \"t\" (offset 5, 2 bytes)");
    CHECK_EDIT("frame.messages[1].fields[0].offset", "4",
               "frame.messages[1].fields[0].offset: overlaps field \"seq\" (offset 3, 2 bytes)");
    CHECK_EDIT("frame.messages[1].fields[0].offset", "1",
               "frame.messages[1].fields[0].offset: overlaps the length field (offset 1, 1 "
               "bytes)");
    CHECK_EDIT("frame.messages[1].fields[1].offset", "-3",
               "frame.messages[1].fields[1].offset: overlaps the check (offset -2, 2 bytes)");
    CHECK_EDIT("frame.header[1].offset", "0",
               "frame.header[1].offset: overlaps field \"start\" (offset 0, 1 bytes)");
    /* bit fields may share bytes when their bits do not overlap */
    CHECK_EDIT_OK("frame.messages[1].fields",
                  "[ { \"offset\": 5, \"type\": \"u8\", \"bit\": 0, \"property\": \"on\" },"
                  "  { \"offset\": 5, \"type\": \"u8\", \"bit\": 1, \"bits\": 3, \"property\": "
                  "\"n\" } ]");
    CHECK_EDIT("frame.messages[1].fields",
               "[ { \"name\": \"a\", \"offset\": 5, \"type\": \"u8\", \"bit\": 0, \"bits\": 2, "
               "\"property\": \"on\" },"
               "  { \"name\": \"b\", \"offset\": 5, \"type\": \"u8\", \"bit\": 1, \"property\": "
               "\"n\" } ]",
               "frame.messages[1].fields[1].offset: overlaps field \"a\" (offset 5, 1 bytes)");
    /* fields past the frame */
    CHECK_EDIT("frame.messages[2].fields[0].offset", "6",
               "frame.messages[2].fields[0].offset: overlaps the check (offset 6, 2 bytes)");
    CHECK_EDIT("frame.messages[2].fields",
               "[ { \"name\": \"code\", \"type\": \"u32\", \"param\": \"code\" } ]",
               "frame.messages[2].fields[0].offset: past the frame (length 8)");
    CHECK_EDIT("frame.messages[1].fields[1].offset", "63",
               "frame.messages[1].fields[1].offset: past the frame (max_frame 64)");
    CHECK_EDIT("frame.messages[1].fields[1]", "{ \"type\": \"bytes\", \"size\": 60 }",
               "frame.messages[1].fields[1].offset: past the frame (max_frame 64)");
    CHECK_EDIT("frame.messages[1].fields[1]",
               "{ \"type\": \"bytes\", \"size\": 40, \"offset\": 23 }",
               "frame.messages[1].fields[1].offset: past the frame (63 bytes from the start "
               "and 2 from the end exceed max_frame 64)");
    CHECK_EDIT("frame.messages[2].length", "4",
               "frame.header[2].offset: past the frame (length 4)");
    /* counted from the end but wider than the distance to it (found by fuzz_binary_layout: the
     * encoder then wrote a frame its own decoder refused) */
    CHECK_EDIT("frame.messages[1].fields[1].offset", "-1",
               "frame.messages[1].fields[1].offset: past the end of the frame (2 bytes at offset "
               "-1)");
    CHECK_EDIT("frame.messages[1].fields[1].offset", "-70",
               "frame.messages[1].fields[1].offset: -70 is out of range -64..63");
    /* a fixed offset after a variable-length field */
    CHECK_EDIT("frame.messages[1].fields",
               "[ { \"type\": \"string\", \"prefix\": 1, \"property\": \"name\" },"
               "  { \"type\": \"u8\", \"offset\": 20, \"property\": \"n\" } ]",
               "frame.messages[1].fields[1].offset: a fixed offset cannot follow a "
               "variable-length field");
    CHECK_EDIT_OK("frame.messages[1].fields",
                  "[ { \"type\": \"string\", \"prefix\": 1, \"property\": \"name\" },"
                  "  { \"type\": \"u8\", \"property\": \"n\" },"
                  "  { \"type\": \"u8\", \"offset\": -3, \"property\": \"on\" } ]");
    CHECK_EDIT("frame.check.from", "-9",
               "frame.check: the range -9..-2 does not fit a frame of length 8");
}

static void test_messages(void)
{
    CHECK_EDIT("frame.messages[0].kind", "\"hello\"",
               "frame.messages[0].kind: must be one of login");
    CHECK_EDIT("frame.messages[0].match", NULL,
               "frame.messages[0].match: missing required key (the discriminator value)");
    CHECK_EDIT("frame.messages[0].match", "256",
               "frame.messages[0].match: 256 is out of range 0..255");
    CHECK_EDIT("frame.messages[0].match", "2",
               "frame.messages[1].match: 2 is already used by messages[0]");
    CHECK_EDIT("frame.messages[4].match", "128",
               "frame.messages[4].match: 128 is already used by an ack");
    CHECK_EDIT_OK("frame.messages[4].match", "1"); /* up and down codes are apart */
    CHECK_EDIT("frame.messages[2].event", NULL,
               "frame.messages[2].event: missing required key for kind event");
    CHECK_EDIT("frame.messages[2].event", "\"fire\"",
               "frame.messages[2].event: no event \"fire\" in the thing model");
    CHECK_EDIT("frame.messages[4].function", "\"stop\"",
               "frame.messages[4].function: no function \"stop\" in the thing model");
    CHECK_EDIT("frame.messages[1].event", "\"alarm\"",
               "frame.messages[1].event: only for kind "
               "event");
    CHECK_EDIT("frame.messages[4].ack", "false",
               "frame.messages[4].ack: only for upstream messages");
    CHECK_EDIT("frame.messages[1].ack", "{ \"match\": 1, \"fields\": 3 }",
               "frame.messages[1].ack.fields: must be an array of fields");
    CHECK_EDIT("frame.ack.fields[0].role", "\"temperature\"",
               "frame.ack.fields[0].role: unknown role");
    CHECK_EDIT("frame.ack.bogus", "1", "frame.ack.bogus: unknown key");
    CHECK_EDIT("frame.messages[1].length", "0",
               "frame.messages[1].length: 0 is out of range 1..64");
    /* discriminator */
    CHECK_EDIT("frame.discriminator", "\"cmdx\"",
               "frame.discriminator: no header field named \"cmdx\"");
    CHECK_EDIT("frame.header[1].type", "\"i8\"", "frame.discriminator: field \"cmd\" must be u8");
    CHECK_EDIT("frame.discriminator", NULL,
               "frame.messages[0].match: no frame.discriminator is declared");
    /* the check */
    CHECK_EDIT("frame.check.algorithm", "\"md5\"",
               "frame.check.algorithm: unknown algorithm \"md5\": a name of the CRC catalogue");
    CHECK_EDIT("frame.check.algorithm", "\"crc16\"",
               "frame.check.algorithm: unknown algorithm \"crc16\"");
    CHECK_EDIT("frame.check.algorithm", "7",
               "frame.check.algorithm: must be an algorithm name or an object of CRC parameters");
    CHECK_EDIT_OK("frame.check.algorithm", "\"crc16-x25\"");
    CHECK_EDIT_OK("frame.check.algorithm", "\"crc16-kermit\"");
    /* a CRC by its catalogue parameters; its optional check value is verified */
    CHECK_EDIT_OK("frame.check.algorithm",
                  "{ \"width\": 16, \"poly\": \"0x1021\", \"init\": \"0xFFFF\", \"refin\": true, "
                  "\"refout\": true, \"xorout\": \"0xFFFF\" }");
    CHECK_EDIT_OK("frame.check.algorithm",
                  "{ \"width\": 16, \"poly\": \"0x1021\", \"init\": \"0xFFFF\", \"refin\": true, "
                  "\"refout\": true, \"xorout\": \"0xFFFF\", \"check\": \"0x906E\" }");
    CHECK_EDIT("frame.check.algorithm",
               "{ \"width\": 16, \"poly\": \"0x1021\", \"init\": \"0xFFFF\", \"refin\": true, "
               "\"refout\": true, \"xorout\": \"0xFFFF\", \"check\": \"0x906F\" }",
               "frame.check.algorithm.check: these parameters give 0x906E for \"123456789\", "
               "not 0x906F");
    CHECK_EDIT("frame.check.algorithm",
               "{ \"width\": 16, \"poly\": \"0x1021\", \"init\": \"0xFFFF\", \"refin\": true, "
               "\"refout\": true, \"xorout\": \"0xFFFF\", \"check\": 65536 }",
               "frame.check.algorithm.check: 65536 is out of range 0..65535");
    CHECK_EDIT("frame.check.algorithm",
               "{ \"width\": 16, \"poly\": \"0x1021\", \"init\": \"0xFFFF\", \"refin\": true, "
               "\"refout\": true, \"xorout\": \"0xFFFF\", \"bogus\": 1 }",
               "frame.check.algorithm.bogus: unknown key");
    CHECK_EDIT("frame.check.algorithm", "{ \"poly\": 7, \"refin\": false, \"refout\": false }",
               "frame.check.algorithm.width: must be 8, 16 or 32");
    CHECK_EDIT("frame.check.algorithm",
               "{ \"width\": 12, \"poly\": 7, \"refin\": false, \"refout\": false }",
               "frame.check.algorithm.width: must be 8, 16 or 32");
    CHECK_EDIT("frame.check.algorithm", "{ \"width\": 16, \"refin\": false, \"refout\": false }",
               "frame.check.algorithm.poly: missing required key");
    CHECK_EDIT("frame.check.algorithm",
               "{ \"width\": 16, \"poly\": \"0x1020\", \"refin\": false, \"refout\": false }",
               "frame.check.algorithm.poly: 0x1020 is even");
    CHECK_EDIT("frame.check.algorithm",
               "{ \"width\": 8, \"poly\": \"0x107\", \"refin\": false, \"refout\": false }",
               "frame.check.algorithm.poly: 263 is out of range 0..255");
    CHECK_EDIT("frame.check.algorithm", "{ \"width\": 16, \"poly\": 4129, \"refout\": false }",
               "frame.check.algorithm.refin: missing required key");
    CHECK_EDIT("frame.check.algorithm",
               "{ \"width\": 16, \"poly\": 4129, \"refin\": 1, \"refout\": false }",
               "frame.check.algorithm.refin: must be true or false");
    CHECK_EDIT("frame.check.at", "-1", "frame.check.at: a 2-byte check at -1 runs past the end");
    CHECK_EDIT("frame.check.at", "3",
               "frame.header[2].offset: overlaps the check (offset 3, 2 bytes)");
    CHECK_EDIT("frame.check.to", "0", "frame.check.to: an empty range");
    CHECK_EDIT("frame.check.colour", "1", "frame.check.colour: unknown key");
    /* a frame of no bytes (found by fuzz_binary_layout) */
    CHECK_EDIT("frame",
               "{ \"framing\": { \"mode\": \"datagram\" }, \"messages\": [ { \"kind\": "
               "\"heartbeat\" } ] }",
               "frame.messages[0]: an empty frame: declare at least one field");
    /* a check inside the bytes it checks (found by fuzz_binary_layout) */
    CHECK_EDIT("frame.check", "{ \"algorithm\": \"xor\", \"at\": 5, \"to\": -1 }",
               "frame.check: the check (at 5) lies inside its own range 0..-1");
    CHECK_EDIT("frame.check", "{ \"algorithm\": \"xor\", \"at\": -1, \"from\": 1, \"to\": 8 }",
               "frame.check: the check (at -1) lies inside its own range 1..8 in a frame of "
               "length 8");
}

static void test_no_discriminator(void)
{
    json_error_t e;
    json_t *root = json_loads(base_text, 0, &e);
    json_t *fr = json_object_get(root, "frame");
    json_object_del(fr, "discriminator");
    json_object_del(fr, "ack");
    json_t *ms = json_object_get(fr, "messages");
    for (size_t i = 0; i < json_array_size(ms); i++)
        json_object_del(json_array_get(ms, i), "match");
    char *text = json_dumps(root, 0);
    bt_loaded r = bt_load_text(text);
    CHECK_INT(r.rc, GW_ECONFIG);
    CHECK_CONTAINS(r.errors, "products/p.json: frame.discriminator: missing: needed to tell 4 "
                             "upstream messages apart");
    bt_free(&r);
    free(text);
    /* one upstream message needs none */
    json_array_remove(ms, 0);
    json_array_remove(ms, 1);
    json_array_remove(ms, 1);
    text = json_dumps(root, 0);
    r = bt_load_text(text);
    CHECK_CONTAINS(r.errors, "products/p.json: frame.discriminator: missing: needed to tell 2 "
                             "downstream messages apart");
    bt_free(&r);
    free(text);
    json_array_remove(ms, 2);
    text = json_dumps(root, 0);
    r = bt_load_text(text);
    if (r.rc)
        fprintf(stderr, "%s", r.errors);
    CHECK_INT(r.rc, 0);
    bt_free(&r);
    free(text);
    json_decref(root);
}

/* u24, datetime, bcd "digits", "sign_from", and "auth": {"mode": "device-id"} */
static void test_gt06_features(void)
{
    const char *fs = "frame.messages[1].fields";
#define Q(s) "\"" s "\""
#define T_FIELD                                                                                    \
    "{ \"name\": \"t\", \"offset\": 5, \"type\": \"i16\", \"scale\": 0.1, \"property\": \"t\""
#define N_FIELD "{ \"name\": \"n\", \"offset\": 7, \"type\": \"u16\", \"property\": \"n\" }"
    CHECK_EDIT_OK(fs, "[ " T_FIELD ", \"sign_from\": { \"field\": \"n\", \"bit\": 15, "
                      "\"negative_when\": 1 } }, " N_FIELD " ]");
    CHECK_EDIT_OK(fs, "[ " T_FIELD ", \"sign_from\": { \"field\": \"start\", \"negative_when\": "
                      "\"0xAA\" } }, " N_FIELD " ]"); /* a header field, its whole value */
    CHECK_EDIT_OK(fs, "[ " T_FIELD " }, { \"name\": \"n\", \"offset\": 7, \"type\": \"u24\", "
                      "\"property\": \"n\" } ]");
    CHECK_EDIT(fs,
               "[ " T_FIELD
               ", \"sign_from\": { \"field\": \"m\", \"negative_when\": 1 } }, " N_FIELD " ]",
               "frame.messages[1].fields[0].sign_from.field: no field named \"m\" in this "
               "message or the header");
    CHECK_EDIT(fs,
               "[ " T_FIELD
               ", \"sign_from\": { \"field\": \"t\", \"negative_when\": 1 } }, " N_FIELD " ]",
               "frame.messages[1].fields[0].sign_from.field: a field cannot take its sign from "
               "itself");
    CHECK_EDIT(fs,
               "[ " T_FIELD ", \"sign_from\": { \"field\": \"n\", \"negative_when\": 1 } }, "
               "{ \"name\": \"n\", \"type\": \"u16\", \"property\": \"n\" } ]",
               "frame.messages[1].fields[0].sign_from.field: field \"n\" must be unsigned "
               "(u8..u64) at a fixed \"offset\"");
    CHECK_EDIT(fs,
               "[ " T_FIELD ", \"sign_from\": { \"field\": \"n\", \"bit\": 16, "
               "\"negative_when\": 1 } }, " N_FIELD " ]",
               "frame.messages[1].fields[0].sign_from.bit: 16 is out of range 0..15");
    CHECK_EDIT(fs,
               "[ " T_FIELD ", \"sign_from\": { \"field\": \"n\", \"bit\": 3, "
               "\"negative_when\": 2 } }, " N_FIELD " ]",
               "frame.messages[1].fields[0].sign_from.negative_when: 2 is out of range 0..1");
    CHECK_EDIT(fs,
               "[ " T_FIELD ", \"sign_from\": { \"field\": \"n\", \"bit\": 3 } }, " N_FIELD " ]",
               "frame.messages[1].fields[0].sign_from.negative_when: missing required key");
    CHECK_EDIT(fs,
               "[ " T_FIELD ", \"sign_from\": { \"field\": \"n\", \"when\": 1 } }, " N_FIELD " ]",
               "frame.messages[1].fields[0].sign_from.when: unknown key");
    CHECK_EDIT(fs, "[ " T_FIELD ", \"sign_from\": 1 }, " N_FIELD " ]",
               "frame.messages[1].fields[0].sign_from: must be an object");
    CHECK_EDIT(fs,
               "[ " T_FIELD " }, { \"name\": \"n\", \"offset\": 7, \"type\": \"u8\", "
               "\"bit\": 0, \"property\": \"on\", \"sign_from\": { \"field\": \"t\", "
               "\"negative_when\": 1 } } ]",
               "frame.messages[1].fields[1].sign_from: only for a field aimed at an int, long, "
               "float or double");
    CHECK_EDIT("frame.messages[4].fields[0].sign_from",
               "{ \"field\": \"seq\", \"negative_when\": 1 }",
               "frame.messages[4].fields[0].sign_from: only in upstream messages");
    /* datetime: 6 bytes, no size, no transform; bcd digits */
    CHECK_EDIT("frame.messages[1].fields[0]", "{ \"type\": \"datetime\", \"size\": 6 }",
               "frame.messages[1].fields[0].size: not allowed for type datetime");
    CHECK_EDIT("frame.messages[1].fields[0]",
               "{ \"type\": \"datetime\", \"scale\": 2, \"property\": \"n\" }",
               "frame.messages[1].fields[0].scale: not allowed for type datetime");
    CHECK_EDIT_OK("frame.messages[1].fields[0]", "{ \"type\": \"datetime\", \"role\": "
                                                 "\"timestamp\" }");
    CHECK_EDIT("frame.messages[1].fields[0]", "{ \"type\": \"datetime\", \"role\": \"device_id\" }",
               "frame.messages[1].fields[0].role: role device_id needs a string, bytes, bcd or "
               "integer field");
    CHECK_EDIT("frame.messages[1].fields[0].digits", "3",
               "frame.messages[1].fields[0].digits: only for type bcd");
    CHECK_EDIT("frame.messages[0].fields[0]",
               "{ \"type\": \"bcd\", \"size\": 8, \"digits\": 17, \"role\": \"device_id\" }",
               "frame.messages[0].fields[0].digits: 17 is out of range 1..16");
    CHECK_EDIT_OK("frame.messages[0].fields[0]",
                  "{ \"type\": \"bcd\", \"size\": 8, \"digits\": 15, \"role\": \"device_id\" }");
    /* device-id: tcp and udp only (the base product is mqtt) */
    CHECK_EDIT("auth", "{ \"mode\": \"device-id\" }",
               "auth.mode: \"device-id\" is for tcp and udp products whose protocol carries no "
               "secret, not for mqtt");
    CHECK_EDIT("auth", "{ \"mode\": \"password\" }", "auth.mode");
    CHECK_EDIT_OK("auth", "{ \"mode\": \"secret\" }");
    CHECK_EDIT_OK("auth", "{ \"mode\": \"device-secret\" }");
#undef Q
#undef T_FIELD
#undef N_FIELD
}

/* An example product with path set to the JSON value text (NULL: removed): refused with want. */
static void check_example_edit(const char *example, const char *path, const char *value,
                               const char *want)
{
    json_error_t e;
    json_t *root = bt_read_example(example);
    json_t *v = value ? json_loads(value, JSON_DECODE_ANY, &e) : json_null();
    if (!v) {
        fprintf(stderr, "edit %s: %s\n", value, e.text);
        exit(2);
    }
    bt_at(root, path, v, value == NULL);
    char *text = bt_dump_mqtt(root);
    bt_loaded r = bt_load_text(text);
    free(text);
    json_decref(root);
    n_cases++;
    CHECK_INT(r.rc, GW_ECONFIG);
    CHECK_CONTAINS(r.errors, want);
    bt_free(&r);
}

#define check_808_edit(path, value, want)  check_example_edit("tracker-808.json", path, value, want)
#define check_gt06_edit(path, value, want) check_example_edit("gt06.json", path, value, want)

/* "size_from": GT06's command text sized by the command length before the server flag. */
static void test_size_from(void)
{
    const char *text = "frame.messages[4].fields[2]";
    char p[128];
    snprintf(p, sizeof(p), "%s.size_from", text);
    check_gt06_edit(p, "{ \"field\": \"nope\" }",
                    "frame.messages[4].fields[2].size_from.field: no field named \"nope\" in this "
                    "message or the header");
    check_gt06_edit(p, "{ \"field\": \"text\" }",
                    "frame.messages[4].fields[2].size_from.field: a field cannot take its size "
                    "from itself");
    check_gt06_edit(p, "{ \"field\": \"server_flag\" }",
                    "frame.messages[4].fields[2].size_from.field: field \"server_flag\" must be "
                    "unsigned (u8..u64) at a fixed \"offset\", without target, constant, "
                    "transform or bits");
    check_gt06_edit(p, "{ \"field\": \"command_length\", \"add\": 70000 }",
                    "frame.messages[4].fields[2].size_from.add: 70000 is out of range");
    check_gt06_edit(p, "{ \"field\": \"command_length\", \"by\": 1 }",
                    "frame.messages[4].fields[2].size_from.by: unknown key");
    check_gt06_edit(p, "4", "frame.messages[4].fields[2].size_from: must be an object");
    snprintf(p, sizeof(p), "%s.size", text);
    check_gt06_edit(p, "4",
                    "frame.messages[4].fields[2].size_from: give one of \"size\", \"prefix\" and "
                    "\"size_from\"");
    snprintf(p, sizeof(p), "%s.type", text);
    check_gt06_edit(p, "\"u32\"",
                    "frame.messages[4].fields[2].size_from: only for string and bytes fields");
    /* the text would run over the header's length and protocol bytes (found by the fuzzer) */
    snprintf(p, sizeof(p), "%s.offset", text);
    check_gt06_edit(p, "2",
                    "frame.messages[4].fields[2].offset: a field of variable size at offset 2 "
                    "overlaps");
    check_gt06_edit(p, "8",
                    "frame.messages[4].fields[2].offset: a field of variable size at "
                    "offset 8 overlaps field \"server_flag\"");
    check_gt06_edit("frame.messages[4].fields[3].offset", "12",
                    "frame.messages[4].fields[3].offset: a fixed offset cannot follow a "
                    "variable-length field");
}

/* "size": "rest": JT/T 808-2013's login, the auth code as the whole body. */
static void test_size_rest(void)
{
    check_808_edit("frame.messages[1].fields[0].type", "\"u32\"",
                   "frame.messages[1].fields[0].size: \"rest\" only for string and bytes fields");
    check_808_edit("frame.messages[1].fields[0].prefix", "1",
                   "frame.messages[1].fields[0].size: give one of \"size\", \"prefix\" and "
                   "\"size_from\"");
    check_808_edit("frame.messages[1].fields",
                   "[ { \"offset\": 12, \"type\": \"string\", \"size\": \"rest\", \"role\": "
                   "\"secret\" }, { \"type\": \"u8\" } ]",
                   "frame.messages[1].fields[0].size: \"rest\": the last field of its message");
    check_808_edit("frame.header[1]",
                   "{ \"name\": \"phone\", \"offset\": 4, \"type\": \"string\", \"size\": "
                   "\"rest\", \"role\": \"device_id\" }",
                   "frame.header[1].size: \"rest\" only in a message's own fields");
}

/* JT/T 808 registration: "auth_code", kind "register", role "auth_code", "refusal". */
static void test_registration(void)
{
    check_808_edit("frame.auth_code", NULL,
                   "frame.messages[0].ack.fields[3]: role auth_code needs frame.auth_code");
    check_808_edit("frame.auth_code", "{ \"algorithm\": \"md5\" }",
                   "frame.auth_code.algorithm: must be \"hmac-sha256\"");
    check_808_edit("frame.auth_code", "{ \"algorithm\": \"hmac-sha256\", \"size\": 3 }",
                   "frame.auth_code.size: 3 is out of range 4..32");
    check_808_edit("frame.auth_code", "{ \"algorithm\": \"hmac-sha256\", \"bytes\": 8 }",
                   "frame.auth_code.bytes: unknown key");
    check_808_edit(
        "frame.auth_code", "{ \"algorithm\": \"hmac-sha256\", \"size\": 10 }",
        "frame.messages[0].ack.fields[3]: an auth code of 10 bytes is 20 hex characters, "
        "the field has 16");
    check_808_edit("frame.messages[0].ack.fields[3].type", "\"bytes\"",
                   "frame.messages[0].ack.fields[3].role: role auth_code only for a string field "
                   "of an ack");
    check_808_edit("frame.messages[0].ack", "false",
                   "frame.messages[0].ack: a register message's ack must carry the code");
    check_808_edit("frame.messages[0].ack.fields[3]", NULL,
                   "frame.messages[0].ack: a register message's ack must carry the code");
    check_808_edit(
        "frame.messages[1].fields[0].role", NULL,
        "frame.auth_code: no login message with a field of role secret carries the code");
    check_808_edit("frame.messages[1].fields[0].role", "\"auth_code\"",
                   "frame.messages[1].fields[0].role: role auth_code only for a string field of "
                   "an ack");
    check_808_edit("frame.messages[0].refusal", "3",
                   "frame.messages[0].refusal: must be an object");
    check_808_edit("frame.messages[6].refusal", "{ \"match\": 1 }",
                   "frame.messages[6].refusal: only for upstream messages");
    check_808_edit("frame.messages[0].kind", "\"enrol\"",
                   "frame.messages[0].kind: must be one of login, report, event, function_reply, "
                   "write_reply, heartbeat, register, invoke, write");
    check_808_edit("frame.header[1].role", NULL,
                   "frame.messages[0]: a register message must name its device (role device_id)");
}

int main(void)
{
    test_base_and_examples();
    test_frame_section();
    test_framing();
    test_datagram_needs_udp();
    test_fields();
    test_shapes();
    test_messages();
    test_no_discriminator();
    test_gt06_features();
    test_registration();
    test_size_from();
    test_size_rest();
    printf("%d layout error cases\n", n_cases);
    TEST_MAIN_END();
}

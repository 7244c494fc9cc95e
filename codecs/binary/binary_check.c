/* binary_check.c: the frame checks. Every CRC is one table-driven implementation parameterised as
 * in the CRC RevEng catalogue (width 8/16/32, poly, init, refin, refout, xorout), with the common
 * ones by name; each set is proven against its check value (the CRC of ASCII "123456789") when a
 * layout loads it. Also XOR and sum-8 of the bytes. */
#include "internal.h"

#include <string.h>

/* The catalogue (https://reveng.sourceforge.io/crc-catalogue/), our short names first, the
 * catalogue's own name in the comment. Several names may denote one algorithm. */
static const gw__crc_params catalogue[] = {
    {"crc8", 8, 0x07, 0x00, false, false, 0x00, 0xF4},                       /* CRC-8/SMBUS */
    {"crc8-smbus", 8, 0x07, 0x00, false, false, 0x00, 0xF4},                 /* CRC-8/SMBUS */
    {"crc8-maxim", 8, 0x31, 0x00, true, true, 0x00, 0xA1},                   /* CRC-8/MAXIM-DOW */
    {"crc8-itu", 8, 0x07, 0x00, false, false, 0x55, 0xA1},                   /* CRC-8/I-432-1 */
    {"crc8-cdma2000", 8, 0x9B, 0xFF, false, false, 0x00, 0xDA},              /* CRC-8/CDMA2000 */
    {"crc8-autosar", 8, 0x2F, 0xFF, false, false, 0xFF, 0xDF},               /* CRC-8/AUTOSAR */
    {"crc16-arc", 16, 0x8005, 0x0000, true, true, 0x0000, 0xBB3D},           /* CRC-16/ARC */
    {"crc16-ibm", 16, 0x8005, 0x0000, true, true, 0x0000, 0xBB3D},           /* CRC-16/ARC */
    {"crc16-modbus", 16, 0x8005, 0xFFFF, true, true, 0x0000, 0x4B37},        /* CRC-16/MODBUS */
    {"crc16-usb", 16, 0x8005, 0xFFFF, true, true, 0xFFFF, 0xB4C8},           /* CRC-16/USB */
    {"crc16-maxim", 16, 0x8005, 0x0000, true, true, 0xFFFF, 0x44C2},         /* CRC-16/MAXIM-DOW */
    {"crc16-buypass", 16, 0x8005, 0x0000, false, false, 0x0000, 0xFEE8},     /* CRC-16/UMTS */
    {"crc16-x25", 16, 0x1021, 0xFFFF, true, true, 0xFFFF, 0x906E},           /* CRC-16/IBM-SDLC */
    {"crc16-kermit", 16, 0x1021, 0x0000, true, true, 0x0000, 0x2189},        /* CRC-16/KERMIT */
    {"crc16-mcrf4xx", 16, 0x1021, 0xFFFF, true, true, 0x0000, 0x6F91},       /* CRC-16/MCRF4XX */
    {"crc16-ccitt-false", 16, 0x1021, 0xFFFF, false, false, 0x0000, 0x29B1}, /* CRC-16/IBM-3740 */
    /* "crc16-ccitt" has always meant CCITT-FALSE here (products written before the catalogue) */
    {"crc16-ccitt", 16, 0x1021, 0xFFFF, false, false, 0x0000, 0x29B1},         /* CRC-16/IBM-3740 */
    {"crc16-xmodem", 16, 0x1021, 0x0000, false, false, 0x0000, 0x31C3},        /* CRC-16/XMODEM */
    {"crc16-genibus", 16, 0x1021, 0xFFFF, false, false, 0xFFFF, 0xD64E},       /* CRC-16/GENIBUS */
    {"crc16-dnp", 16, 0x3D65, 0x0000, true, true, 0xFFFF, 0xEA82},             /* CRC-16/DNP */
    {"crc32", 32, 0x04C11DB7, 0xFFFFFFFF, true, true, 0xFFFFFFFF, 0xCBF43926}, /* CRC-32/ISO-HDLC */
    {"crc32c", 32, 0x1EDC6F41, 0xFFFFFFFF, true, true, 0xFFFFFFFF, 0xE3069283}, /* CRC-32/ISCSI */
    {"crc32-bzip2", 32, 0x04C11DB7, 0xFFFFFFFF, false, false, 0xFFFFFFFF, 0xFC891918},
    {"crc32-mpeg2", 32, 0x04C11DB7, 0xFFFFFFFF, false, false, 0x00000000, 0x0376E6E7},
    {"crc32-posix", 32, 0x04C11DB7, 0x00000000, false, false, 0xFFFFFFFF, 0x765E7680}, /* CKSUM */
    {"crc32-jamcrc", 32, 0x04C11DB7, 0xFFFFFFFF, true, true, 0x00000000, 0x340BC6D9},
    {"crc32-autosar", 32, 0xF4ACFB13, 0xFFFFFFFF, true, true, 0xFFFFFFFF, 0x1697D06A},
};

const gw__crc_params *gw__crc_catalogue(size_t *n)
{
    *n = sizeof(catalogue) / sizeof(catalogue[0]);
    return catalogue;
}

const gw__crc_params *gw__crc_find(const char *name)
{
    for (size_t i = 0; name && i < sizeof(catalogue) / sizeof(catalogue[0]); i++)
        if (strcmp(catalogue[i].name, name) == 0)
            return &catalogue[i];
    return NULL;
}

static uint32_t mask_of(unsigned width)
{
    return width >= 32 ? 0xFFFFFFFFu : (1u << width) - 1u;
}

static uint32_t reflect(uint32_t v, unsigned width)
{
    uint32_t r = 0;
    for (unsigned i = 0; i < width; i++, v >>= 1)
        r = (r << 1) | (v & 1u);
    return r;
}

/* The table of one byte step. Reflected (refin): the register holds the CRC bit-reversed and
 * shifts right with the reversed polynomial; otherwise it shifts left, top bit first. */
int gw__crc_init(gw__crc *c, const gw__crc_params *p)
{
    if (p->width != 8 && p->width != 16 && p->width != 32)
        return -1;
    uint32_t m = mask_of(p->width), poly = p->poly & m;
    memset(c, 0, sizeof(*c));
    c->width = p->width;
    c->refin = p->refin;
    c->refout = p->refout;
    c->init = p->init & m;
    c->xorout = p->xorout & m;
    c->start = p->refin ? reflect(c->init, p->width) : c->init; /* once, not per frame */
    if (p->refin) {
        uint32_t rp = reflect(poly, p->width);
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t r = i;
            for (int k = 0; k < 8; k++)
                r = (r & 1u) ? (r >> 1) ^ rp : r >> 1;
            c->table[i] = r & m;
        }
    } else {
        uint32_t top = 1u << (p->width - 1);
        for (uint32_t i = 0; i < 256; i++) {
            uint32_t r = i << (p->width - 8);
            for (int k = 0; k < 8; k++)
                r = (r & top) ? (r << 1) ^ poly : r << 1;
            c->table[i] = r & m;
        }
    }
    return gw__crc_compute(c, (const uint8_t *)"123456789", 9) == (p->check & m) ? 0 : 1;
}

uint32_t gw__crc_compute(const gw__crc *c, const uint8_t *buf, size_t len)
{
    uint32_t m = mask_of(c->width), r;
    if (c->refin) {
        r = c->start;
        for (size_t i = 0; i < len; i++)
            r = (r >> 8) ^ c->table[(r ^ buf[i]) & 0xff];
        if (!c->refout) /* the register is reflected: the output is not */
            r = reflect(r, c->width);
    } else {
        unsigned sh = c->width - 8u;
        r = c->start;
        for (size_t i = 0; i < len; i++)
            r = ((r << 8) ^ c->table[((r >> sh) ^ buf[i]) & 0xff]) & m;
        if (c->refout)
            r = reflect(r, c->width);
    }
    return (r ^ c->xorout) & m;
}

size_t gw__binary_check_width(const bin_layout *l)
{
    switch ((bin_algo)l->algo) {
    case BIN_CK_CRC:
        return l->crc.width / 8u;
    case BIN_CK_XOR:
    case BIN_CK_SUM8:
        return 1;
    case BIN_CK_NONE:
        break;
    }
    return 0;
}

uint32_t gw__binary_check(const bin_layout *l, const uint8_t *buf, size_t len)
{
    uint8_t x = 0;
    switch ((bin_algo)l->algo) {
    case BIN_CK_CRC:
        return gw__crc_compute(&l->crc, buf, len);
    case BIN_CK_XOR:
        for (size_t i = 0; i < len; i++)
            x ^= buf[i];
        return x;
    case BIN_CK_SUM8:
        for (size_t i = 0; i < len; i++)
            x = (uint8_t)(x + buf[i]);
        return x;
    case BIN_CK_NONE:
        break;
    }
    return 0;
}

/* bench_codecs.c: decode cost of the same 10-property report in the json, protobuf and binary
 * codecs (issue 6): ns and heap allocations (every malloc/calloc/realloc, counted by wrapping the
 * C library's) per message, for decode alone and for decode + thing-model validation (and for the
 * JSON codec's in-place reader, which does both and writes the normalised payload). */
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "codecs/protobuf/codec_protobuf.h"
#include "config/config.h"
#include "gateway/registry.h"
#include "../unit/pb_wire.h"

/* ---- allocation counting (not under sanitizers: they own malloc) ---- */

static uint64_t n_allocs;
#if !defined(GW_SANITIZED) && !defined(GW_FUZZING)
extern void *__libc_malloc(size_t);
extern void *__libc_calloc(size_t, size_t);
extern void *__libc_realloc(void *, size_t);
extern void __libc_free(void *);
void *malloc(size_t n)
{
    n_allocs++;
    return __libc_malloc(n);
}
void *calloc(size_t a, size_t b)
{
    n_allocs++;
    return __libc_calloc(a, b);
}
void *realloc(void *p, size_t n)
{
    n_allocs++;
    return __libc_realloc(p, n);
}
void free(void *p)
{
    __libc_free(p);
}
#define COUNTING 1
#else
#define COUNTING 0
#endif

/* ---- the three products: one thing model, three codecs ---- */

#define PROPS                                                                                      \
    "\"properties\": [ { \"id\": \"t0\", \"type\": \"float\" }, { \"id\": \"t1\", \"type\": "      \
    "\"float\" }, { \"id\": \"t2\", \"type\": \"float\" }, { \"id\": \"t3\", \"type\": "           \
    "\"double\" }, { \"id\": \"n0\", \"type\": \"int\" }, { \"id\": \"n1\", \"type\": \"int\" }, " \
    "{ \"id\": \"n2\", \"type\": \"int\" }, { \"id\": \"c0\", \"type\": \"long\" }, { \"id\": "    \
    "\"on\", \"type\": \"bool\" }, { \"id\": \"q\", \"type\": \"int\" } ]"

static const char *const products[] = {
    "{ \"id\": \"pj\", \"protocol\": \"mqtt\", \"codec\": \"json\", " PROPS " }",
    "{ \"id\": \"pp\", \"protocol\": \"mqtt\", \"codec\": \"protobuf\", " PROPS " }",
    "{ \"id\": \"pb\", \"protocol\": \"mqtt\", \"codec\": \"binary\", " PROPS ", \"frame\": { "
    "\"endian\": \"big\", \"max_frame\": 128, \"framing\": { \"mode\": \"datagram\" }, "
    "\"header\": [ { \"name\": \"type\", \"offset\": 0, \"type\": \"u8\" }, { \"name\": \"seq\", "
    "\"type\": \"u16\", \"role\": \"seq\" } ], \"discriminator\": \"type\", \"messages\": [ { "
    "\"kind\": \"report\", \"match\": 1, \"fields\": [ "
    "{ \"name\": \"t0\", \"type\": \"f32\", \"property\": \"t0\" }, "
    "{ \"name\": \"t1\", \"type\": \"f32\", \"property\": \"t1\" }, "
    "{ \"name\": \"t2\", \"type\": \"f32\", \"property\": \"t2\" }, "
    "{ \"name\": \"t3\", \"type\": \"f64\", \"property\": \"t3\" }, "
    "{ \"name\": \"n0\", \"type\": \"i32\", \"property\": \"n0\" }, "
    "{ \"name\": \"n1\", \"type\": \"i32\", \"property\": \"n1\" }, "
    "{ \"name\": \"n2\", \"type\": \"i32\", \"property\": \"n2\" }, "
    "{ \"name\": \"c0\", \"type\": \"i64\", \"property\": \"c0\" }, "
    "{ \"name\": \"on\", \"type\": \"u8\", \"property\": \"on\" }, "
    "{ \"name\": \"q\", \"type\": \"u8\", \"property\": \"q\" } ] } ] } }",
};

static void write_file(const char *path, const char *text)
{
    FILE *f = fopen(path, "w");
    if (!f || fputs(text, f) < 0 || fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static gw_config *load(void)
{
    char dir[] = "/tmp/iotgw-bench-codecs-XXXXXX", path[300];
    gw_config *cfg = NULL;
    gw_diag d = {0};
    if (!mkdtemp(dir))
        exit(1);
    snprintf(path, sizeof(path), "%s/products", dir);
    mkdir(path, 0700);
    for (size_t i = 0; i < 3; i++) {
        snprintf(path, sizeof(path), "%s/products/p%zu.json", dir, i);
        write_file(path, products[i]);
    }
    snprintf(path, sizeof(path), "%s/devices.json", dir);
    write_file(path, "[]");
    snprintf(path, sizeof(path), "%s/gateway.json", dir);
    write_file(path, "{ \"admin\": { \"enabled\": false }, \"adapters\": { \"mqtt\": { "
                     "\"listeners\": [ { \"address\": \"127.0.0.1\", \"port\": 0 } ] } } }");
    if (gw_config_load(path, gw_registry_config_plugins(), &cfg, &d) != 0) {
        for (size_t i = 0; i < d.n; i++)
            fprintf(stderr, "%s\n", d.msgs[i]);
        exit(1);
    }
    gw_diag_free(&d);
    char cmd[400];
    snprintf(cmd, sizeof(cmd), "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    return cfg;
}

/* ---- the same report in three encodings ---- */

static const char json_msg[] =
    "{\"messageId\":\"1\",\"timestamp\":1700000000000,\"properties\":{\"t0\":21.5,\"t1\":-3.25,"
    "\"t2\":99.75,\"t3\":1234.5678,\"n0\":42,\"n1\":-7,\"n2\":100000,\"c0\":9000000000,"
    "\"on\":true,\"q\":3}}";

static pbw pb_msg;

static void build_pb(void)
{
    static pbw body, v;
    body.n = 0;
    pbv_double(&v, 21.5), pbw_field(&body, 1, "t0", &v);
    pbv_double(&v, -3.25), pbw_field(&body, 1, "t1", &v);
    pbv_double(&v, 99.75), pbw_field(&body, 1, "t2", &v);
    pbv_double(&v, 1234.5678), pbw_field(&body, 1, "t3", &v);
    pbv_int(&v, 42), pbw_field(&body, 1, "n0", &v);
    pbv_int(&v, -7), pbw_field(&body, 1, "n1", &v);
    pbv_int(&v, 100000), pbw_field(&body, 1, "n2", &v);
    pbv_int(&v, 9000000000LL), pbw_field(&body, 1, "c0", &v);
    pbv_bool(&v, 1), pbw_field(&body, 1, "on", &v);
    pbv_int(&v, 3), pbw_field(&body, 1, "q", &v);
    pb_msg.n = 0;
    pbw_str(&pb_msg, 1, "1");
    pbw_uint(&pb_msg, 2, 1700000000000ULL);
    pbw_sub(&pb_msg, 10, &body);
}

static uint8_t bin_msg[64];
static size_t bin_len;

static void put_be(uint64_t v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        bin_msg[bin_len++] = (uint8_t)(v >> (8 * (n - 1 - i)));
}

static void build_bin(void)
{
    float f[3] = {21.5f, -3.25f, 99.75f};
    double d = 1234.5678;
    uint32_t u32;
    uint64_t u64;
    bin_len = 0;
    put_be(1, 1), put_be(1, 2);
    for (int i = 0; i < 3; i++)
        memcpy(&u32, &f[i], 4), put_be(u32, 4);
    memcpy(&u64, &d, 8), put_be(u64, 8);
    put_be((uint32_t)42, 4), put_be((uint32_t)-7, 4), put_be(100000, 4);
    put_be(9000000000ULL, 8), put_be(1, 1), put_be(3, 1);
}

static double now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1e9 + ts.tv_nsec;
}

/* Decodes (and with validate, checks) msg n times; prints one line. */
static void run(const char *bench, const char *codec, const gw_product *p, const uint8_t *msg,
                size_t len, long n, int validate)
{
    gw_decode_hint hint = {GW_MSG_PROPERTY_REPORT, NULL};
    if (strcmp(codec, "binary") == 0)
        hint.kind = GW_MSG_NONE;
    /* "json_read": the JSON codec as the gateway calls it (hint.check): its in-place reader
     * decodes, checks and writes the normalised payload in one pass */
    bool reader = strcmp(codec, "json_read") == 0;
    hint.check = reader;
    gw_reject rej;
    for (int pass = 0; pass < 2; pass++) { /* a warm-up pass, then the measured one */
        long iters = pass ? n : n / 10;
        uint64_t a0 = n_allocs;
        double t0 = now_ns();
        for (long i = 0; i < iters; i++) {
            gw_thing_msg m;
            if (p->codec_ops->decode(p, &hint, msg, len, &m, &rej) != 0) {
                fprintf(stderr, "%s: %s\n", codec, rej.detail);
                exit(1);
            }
            if (reader && !m.norm_text) {
                fprintf(stderr, "%s: the reader did not take the message\n", codec);
                exit(1);
            }
            if (validate && !reader) {
                json_t *out = NULL;
                if (gw_tm_check_report(p, m.values, &out, &rej) != 0) {
                    fprintf(stderr, "%s: %s\n", codec, rej.detail);
                    exit(1);
                }
                json_decref(out);
            }
            gw_thing_msg_clear(&m);
        }
        double dt = now_ns() - t0;
        if (pass && COUNTING)
            printf("bench=%s codec=%s bytes=%zu ns_per_msg=%.0f allocs_per_msg=%.1f\n", bench,
                   codec, len, dt / iters, (double)(n_allocs - a0) / iters);
        else if (pass)
            printf("bench=%s codec=%s bytes=%zu ns_per_msg=%.0f allocs_per_msg=n/a\n", bench, codec,
                   len, dt / iters);
    }
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 1000000;
    gw_config *cfg = load();
    const gw_product *pj = gw_config_product(cfg, "pj"), *pp = gw_config_product(cfg, "pp"),
                     *pb = gw_config_product(cfg, "pb");
    if (!pj || !pp || !pb) {
        fprintf(stderr, "products missing\n");
        return 1;
    }
    build_pb();
    build_bin();
    for (int validate = 0; validate < 2; validate++) {
        const char *b = validate ? "codec_decode_validate" : "codec_decode";
        run(b, "json", pj, (const uint8_t *)json_msg, strlen(json_msg), n, validate);
        if (validate)
            run(b, "json_read", pj, (const uint8_t *)json_msg, strlen(json_msg), n, validate);
        run(b, "protobuf", pp, pb_msg.b, pb_msg.n, n, validate);
        run(b, "binary", pb, bin_msg, bin_len, n, validate);
    }
    gw_config_free(cfg);
    return 0;
}

/* config_devices.c: devices.json -> gw_config.devices, and back (gw_config_devices_doc). A JSON
 * array of {id, name, product, secret}; ids are unique (checked through the device hash, so 100k
 * devices load in linear time) and every product must exist. The document itself is not kept
 * (about 440 B a device in jansson values): each device remembers the order of its keys, so the
 * rebuilt document is the loaded one (unknown keys are errors, so there are none to keep). */
#include "internal.h"

#include "../gateway/util/auth.h"

#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SECRET_MAX 255

/* Indexes are gw_device.key_order's codes. */
static const char *const device_keys[] = {"id", "name", "product", "secret", NULL};
enum { KEY_ID, KEY_NAME, KEY_PRODUCT, KEY_SECRET, N_KEYS };

/* The known keys of o in its order into d->key_order (jansson keeps insertion order). */
static void key_order(gw_device *d, const json_t *o)
{
    const char *key;
    const json_t *v;
    d->n_keys = 0;
    d->key_order = 0;
    json_object_foreach((json_t *)o, key, v)
    {
        for (unsigned k = 0; k < N_KEYS; k++)
            if (!strcmp(key, device_keys[k])) {
                d->key_order |= (uint8_t)(k << (2 * d->n_keys++));
                break;
            }
    }
}

/* path.key into p (128 bytes), built only for a message (a million devices load faster). */
static const char *at(char *p, const char *path, const char *key)
{
    snprintf(p, 128, "%s.%s", path, key);
    return p;
}

/* A string member (borrowed from o); NULL and reported if missing or not a string. */
static const char *member(gw__config_ctx *x, const char *file, const json_t *o, const char *key,
                          bool required, const char *path)
{
    char p[128];
    const json_t *v = json_object_get(o, key);

    if (!v) {
        if (required)
            gw__config_err(x, file, at(p, path, key), "missing required key");
        return NULL;
    }
    if (!json_is_string(v)) {
        gw__config_err(x, file, at(p, path, key), "must be a string");
        return NULL;
    }
    return json_string_value(v);
}

/* A secret stored as a hash must be a well-formed one, for a product that only compares it. */
static void check_hashed(gw__config_ctx *x, const gw_config *c, const char *file,
                         const gw_device *d, const char *path)
{
    const char *why;
    char p[128];
    if (!gw_secret_is_hash(d->secret))
        return;
    if (gw_secret_hash_parse(d->secret, NULL, &why) != 0)
        gw__config_err(x, file, at(p, path, "secret"),
                       "not a valid " GW_SECRET_HASH_PREFIX " hash: %s", why);
    else if (d->product && gw_config_secret_in_clear(c, d->product))
        gw__config_err(x, file, at(p, path, "secret"),
                       "product \"%s\" keys (D)TLS-PSK or frame MACs with the secret itself: it "
                       "must be stored in clear, not as a hash",
                       d->product->id);
}

static void parse_device(gw__config_ctx *x, gw_config *c, const char *file, const json_t *o,
                         size_t i)
{
    gw_device *d = &c->devices[i];
    char path[32], p[128];
    const char *s;

    d->index = (uint32_t)i;
    snprintf(path, sizeof(path), "[%zu]", i);
    if (!json_is_object(o)) {
        gw__config_err(x, file, path, "must be an object");
        return;
    }
    gw__config_unknown_keys(x, o, device_keys, NULL, file, path);
    key_order(d, o);

    if ((s = member(x, file, o, "id", true, path))) {
        if (!gw__config_id_ok(s))
            gw__config_err(x, file, at(p, path, "id"),
                           "\"%s\" must be 1..%d characters of [A-Za-z0-9_.-]", s, GW__ID_MAX);
        else if (!(d->id = gw__config_strdup(c->index, s)))
            gw__config_err(x, file, at(p, path, "id"), "out of memory");
    }
    if ((s = member(x, file, o, "name", false, path)) &&
        !(d->name = gw__config_strdup(c->index, s)))
        gw__config_err(x, file, path, "out of memory");
    if ((s = member(x, file, o, "product", true, path))) {
        if (!(d->product = gw_config_product(c, s)) && !x->products_incomplete)
            gw__config_err(x, file, at(p, path, "product"), "unknown product \"%s\"", s);
    }
    /* a product that authenticates by the device id alone needs no secret: "" then */
    bool id_only = d->product && d->product->auth_mode == GW_AUTH_DEVICE_ID;
    if (id_only && !json_object_get(o, "secret") && !(d->secret = gw__config_strdup(c->index, "")))
        gw__config_err(x, file, path, "out of memory");
    if ((s = member(x, file, o, "secret", !id_only, path))) {
        if (!*s || strlen(s) > SECRET_MAX)
            gw__config_err(x, file, at(p, path, "secret"),
                           "must be a non-empty string of at most %d bytes", SECRET_MAX);
        else if (!(d->secret = gw__config_strdup(c->index, s)))
            gw__config_err(x, file, at(p, path, "secret"), "out of memory");
        else
            check_hashed(x, c, file, d, path);
    }
}

void gw__config_load_devices(gw__config_ctx *x, gw_config *c, const char *path, const char *disp)
{
    json_t *root = gw__config_load_json(x, path, disp);
    if (!root)
        return;
    gw__config_load_devices_json(x, c, root, disp);
}

void gw__config_load_devices_json(gw__config_ctx *x, gw_config *c, json_t *root, const char *disp)
{
    gw__config_index *ix = c->index;
    size_t n_parsed = 0;
    char p[64];

    if (!json_is_array(root)) {
        gw__config_err(x, disp, NULL, "must be a JSON array of devices");
        goto done;
    }
    size_t n = json_array_size(root);
    if (n > UINT32_MAX / 2) {
        gw__config_err(x, disp, NULL, "too many devices (%zu)", n);
        goto done;
    }
    if (gw__config_hash_init(&ix->devices, n) < 0 ||
        (n && !(c->devices = calloc(n, sizeof(*c->devices))))) {
        gw__config_err(x, disp, NULL, "out of memory");
        goto done;
    }
    c->n_devices = n_parsed = n;
    for (size_t i = 0; i < n; i++) {
        parse_device(x, c, disp, json_array_get(root, i), i);
        if (!c->devices[i].id)
            continue;
        long prev = gw__config_hash_insert(&ix->devices, c->devices, sizeof(gw_device), i);
        if (prev >= 0) {
            snprintf(p, sizeof(p), "[%zu].id", i);
            gw__config_err(x, disp, p, "duplicate device id \"%s\" (also [%ld])", c->devices[i].id,
                           prev);
        }
    }
done:
    json_decref(root);
#ifdef __GLIBC__
    /* the document was parsed whole before the devices were made, so its freed values are a run
     * of heap pages below them that glibc would keep resident (~440 B a device): give them back */
    if (n_parsed >= 10000)
        malloc_trim(0);
#endif
}

static json_t *device_doc(const gw_device *d)
{
    json_t *o = json_object();
    for (unsigned i = 0; o && i < d->n_keys; i++) {
        const char *v = NULL;
        switch ((d->key_order >> (2 * i)) & 3) {
        case KEY_ID:
            v = d->id;
            break;
        case KEY_NAME:
            v = d->name;
            break;
        case KEY_PRODUCT:
            v = d->product ? d->product->id : NULL;
            break;
        default:
            v = d->secret;
        }
        if (!v || json_object_set_new(o, device_keys[(d->key_order >> (2 * i)) & 3],
                                      json_string(v)) != 0) {
            json_decref(o);
            return NULL;
        }
    }
    return o;
}

json_t *gw_config_devices_doc(const gw_config *c)
{
    json_t *a = json_array();
    for (size_t i = 0; a && i < c->n_devices; i++)
        if (json_array_append_new(a, device_doc(&c->devices[i])) != 0) {
            json_decref(a);
            return NULL;
        }
    return a;
}

/* A listener of adapter (its "listeners") with "tls": {"psk": true} serving p: MQTT listeners
 * serve every mqtt product, a TCP listener its "product". */
static bool psk_listener(const gw_config *c, const gw_product *p, const char *adapter)
{
    const json_t *ls = json_object_get(json_object_get(c->adapters, adapter), "listeners");
    size_t i;
    const json_t *e;
    json_array_foreach(ls, i, e)
    {
        const json_t *prod = json_object_get(e, "product");
        if (json_is_true(json_object_get(json_object_get(e, "tls"), "psk")) &&
            (strcmp(adapter, "mqtt") == 0 ||
             (json_is_string(prod) && strcmp(json_string_value(prod), p->id) == 0)))
            return true;
    }
    return false;
}

size_t gw_config_device_id_products(const gw_config *c, char *buf, size_t cap)
{
    size_t n = 0, used = 0;
    if (cap)
        buf[0] = '\0';
    for (size_t i = 0; i < c->n_products; i++) {
        const gw_product *p = &c->products[i];
        if (p->auth_mode != GW_AUTH_DEVICE_ID)
            continue;
        if (used < cap) {
            int k = snprintf(buf + used, cap - used, "%s%s", n ? ", " : "", p->id);
            used += k > 0 ? (size_t)k : 0;
        }
        n++;
    }
    return n;
}

bool gw_config_secret_in_clear(const gw_config *c, const gw_product *p)
{
    if (p->protocol && (strcmp(p->protocol, "mqtt") == 0 || strcmp(p->protocol, "tcp") == 0) &&
        p->id && psk_listener(c, p, p->protocol)) /* TLS-PSK: key = the secret */
        return true;
    if (p->protocol && strcmp(p->protocol, "coap") == 0) { /* DTLS-PSK: key = the secret */
        const json_t *dl = json_object_get(json_object_get(c->adapters, "coap"), "dtls_listeners");
        if (json_is_array(dl) && json_array_size(dl) > 0)
            return true;
    }
    /* frames with a MAC keyed by the secret */
    return c->plugins && c->plugins->codec_secret_is_key && c->plugins->codec_secret_is_key(p);
}

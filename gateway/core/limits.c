/* limits.c: the per-source table behind gateway/core/limits.h: open addressing over a fixed array
 * (sources_max rounded up to a power of two, bounded probing), one mutex (held for a few hundred
 * nanoseconds per accept or authentication outcome), idle entries reused oldest first. */
#include "limits.h"

#include <netinet/in.h>
#include <pthread.h>
#include <string.h>

#include "../util/alloc.h"
#include "../util/error.h"
#include "../util/metrics.h"

#define PROBE 32

typedef struct src {
    uint8_t key[16]; /* IPv6, or IPv4-mapped */
    uint8_t used;
    uint32_t conns;
    uint32_t failures;
    uint64_t tokens_milli; /* connect tokens × 1000 */
    uint64_t refill_ms;
    uint64_t backoff_until;
    uint32_t backoff_ms;
    uint64_t last_ms;
} src;

struct gw_limits {
    gw_limits_cfg cfg;
    pthread_mutex_t mu;
    src *tab;
    size_t mask;
};

const char *gw_limit_reason(gw_limit_verdict v)
{
    switch (v) {
    case GW_LIMIT_PER_SOURCE:
        return "per_source";
    case GW_LIMIT_RATE:
        return "connect_rate";
    case GW_LIMIT_BACKOFF:
        return "auth_backoff";
    case GW_LIMIT_TABLE_FULL:
        return "source_table_full";
    case GW_LIMIT_OK:
        break;
    }
    return "ok";
}

int gw_limits_create(gw_limits **out, const gw_limits_cfg *cfg)
{
    *out = NULL;
    if (!cfg->max_connections_per_source && !cfg->connect_rate_per_source &&
        !cfg->auth_failures_per_source)
        return 0;
    gw_limits *l = gw_calloc(GW_AREA_RUNTIME, 1, sizeof(*l));
    if (!l)
        return GW_ENOMEM;
    size_t cap = 64;
    while (cap < cfg->sources_max)
        cap *= 2;
    l->tab = gw_calloc(GW_AREA_RUNTIME, cap, sizeof(src));
    if (!l->tab) {
        gw_free(GW_AREA_RUNTIME, l);
        return GW_ENOMEM;
    }
    l->cfg = *cfg;
    l->mask = cap - 1;
    pthread_mutex_init(&l->mu, NULL);
    *out = l;
    return 0;
}

void gw_limits_free(gw_limits *l)
{
    if (!l)
        return;
    pthread_mutex_destroy(&l->mu);
    gw_free(GW_AREA_RUNTIME, l->tab);
    gw_free(GW_AREA_RUNTIME, l);
}

static bool key_of(const struct sockaddr *sa, uint8_t key[16])
{
    memset(key, 0, 16);
    if (sa && sa->sa_family == AF_INET) {
        key[10] = key[11] = 0xff;
        memcpy(key + 12, &((const struct sockaddr_in *)sa)->sin_addr, 4);
        return true;
    }
    if (sa && sa->sa_family == AF_INET6) {
        memcpy(key, &((const struct sockaddr_in6 *)sa)->sin6_addr, 16);
        return true;
    }
    return false;
}

static uint32_t hash_key(const uint8_t key[16])
{
    uint32_t h = 2166136261u;
    for (int i = 0; i < 16; i++)
        h = (h ^ key[i]) * 16777619u;
    return h;
}

/* An idle entry: no connection open, no back-off running, no failures worth remembering. */
static bool idle(const src *s, uint64_t now)
{
    return s->conns == 0 && s->backoff_until <= now;
}

/* The entry of key (creating it if create); NULL when absent, or when the probe window is full
 * of sources that are not idle. Caller holds the mutex. */
static src *find(gw_limits *l, const uint8_t key[16], bool create, uint64_t now)
{
    size_t i = hash_key(key) & l->mask;
    src *victim = NULL;
    for (int n = 0; n < PROBE; n++, i = (i + 1) & l->mask) {
        src *s = &l->tab[i];
        if (s->used && memcmp(s->key, key, 16) == 0)
            return s;
        if (!s->used) {
            if (!victim || victim->used)
                victim = s;
        } else if (idle(s, now) && (!victim || (victim->used && s->last_ms < victim->last_ms))) {
            victim = s;
        }
    }
    if (!create || !victim)
        return NULL;
    memset(victim, 0, sizeof(*victim));
    memcpy(victim->key, key, 16);
    victim->used = 1;
    victim->tokens_milli = (uint64_t)l->cfg.connect_burst_per_source * 1000;
    victim->refill_ms = now;
    return victim;
}

gw_limit_verdict gw_limits_admit(gw_limits *l, const struct sockaddr *peer, uint64_t now_ms)
{
    uint8_t key[16];
    gw_limit_verdict v = GW_LIMIT_OK;
    if (!l || !key_of(peer, key))
        return GW_LIMIT_OK;
    pthread_mutex_lock(&l->mu);
    src *s = find(l, key, true, now_ms);
    if (!s) {
        v = GW_LIMIT_TABLE_FULL;
        goto out;
    }
    s->last_ms = now_ms;
    if (s->backoff_until > now_ms) {
        v = GW_LIMIT_BACKOFF;
        goto out;
    }
    if (l->cfg.max_connections_per_source && s->conns >= l->cfg.max_connections_per_source) {
        v = GW_LIMIT_PER_SOURCE;
        goto out;
    }
    if (l->cfg.connect_rate_per_source) {
        uint64_t cap = (uint64_t)l->cfg.connect_burst_per_source * 1000;
        if (now_ms > s->refill_ms)
            s->tokens_milli += (now_ms - s->refill_ms) * l->cfg.connect_rate_per_source;
        if (s->tokens_milli > cap)
            s->tokens_milli = cap;
        s->refill_ms = now_ms;
        if (s->tokens_milli < 1000) {
            v = GW_LIMIT_RATE;
            goto out;
        }
        s->tokens_milli -= 1000;
    }
    s->conns++;
out:
    pthread_mutex_unlock(&l->mu);
    if (v != GW_LIMIT_OK)
        gw_metric_add((gw_metric)(GW_M_LIMITED_PER_SOURCE + (int)v - 1), 1);
    return v;
}

void gw_limits_release(gw_limits *l, const struct sockaddr *peer)
{
    uint8_t key[16];
    if (!l || !key_of(peer, key))
        return;
    pthread_mutex_lock(&l->mu);
    src *s = find(l, key, false, 0);
    if (s && s->conns)
        s->conns--;
    pthread_mutex_unlock(&l->mu);
}

bool gw_limits_blocked(gw_limits *l, const struct sockaddr *peer, uint64_t now_ms)
{
    uint8_t key[16];
    bool blocked = false;
    if (!l || !key_of(peer, key))
        return false;
    pthread_mutex_lock(&l->mu);
    src *s = find(l, key, false, now_ms);
    blocked = s && s->backoff_until > now_ms;
    pthread_mutex_unlock(&l->mu);
    if (blocked)
        gw_metric_inc(GW_M_LIMITED_BACKOFF);
    return blocked;
}

void gw_limits_auth_failed(gw_limits *l, const struct sockaddr *peer, uint64_t now_ms)
{
    uint8_t key[16];
    if (!l || !l->cfg.auth_failures_per_source || !key_of(peer, key))
        return;
    pthread_mutex_lock(&l->mu);
    src *s = find(l, key, true, now_ms);
    if (s) {
        s->last_ms = now_ms;
        if (++s->failures >= l->cfg.auth_failures_per_source) {
            /* the first back-off, then twice as long for every further failure, up to the cap */
            s->backoff_ms = s->backoff_ms ? s->backoff_ms * 2 : l->cfg.auth_backoff_ms;
            if (s->backoff_ms > l->cfg.auth_backoff_max_ms)
                s->backoff_ms = l->cfg.auth_backoff_max_ms;
            s->backoff_until = now_ms + s->backoff_ms;
            gw_metric_inc(GW_M_AUTH_BACKOFFS);
        }
    }
    pthread_mutex_unlock(&l->mu);
}

void gw_limits_auth_ok(gw_limits *l, const struct sockaddr *peer)
{
    uint8_t key[16];
    if (!l || !key_of(peer, key))
        return;
    pthread_mutex_lock(&l->mu);
    src *s = find(l, key, false, 0);
    if (s) {
        s->failures = 0;
        s->backoff_ms = 0;
    }
    pthread_mutex_unlock(&l->mu);
}

/* json_map.c: the "json" product section behind json_map.h: path compilation and checks at load
 * time, and at run time the walk from a device's document to thing-model values. */
#include "json_map.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../gateway/util/json_write.h"

#define MAX_STEPS 16
#define MAX_TEXT  96 /* a path as quoted in messages */

typedef struct step {
    char *key; /* object member, or NULL for an array index */
    size_t index;
} step;

typedef struct path {
    char text[MAX_TEXT];
    step steps[MAX_STEPS];
    size_t n;
} path;

typedef struct entry {
    const gw_value_spec *spec;
    path at;
    double scale, add;
    bool transform;
} entry;

typedef struct event_map {
    const gw_event_spec *ev;
    entry *params;
    size_t n;
} event_map;

struct gw__json_map {
    entry *props;
    size_t n_props;
    bool has_props;
    event_map *events;
    size_t n_events;
    path ts, msg_id;
    bool has_ts, has_msg_id;
    bool ts_seconds;
};

/* ---- paths ---- */

static int parse_path(const char *s, path *p, char *why, size_t cap)
{
    size_t i = 1;
    memset(p, 0, sizeof(*p));
    snprintf(p->text, sizeof(p->text), "%s", s);
    if (s[0] != '$') {
        snprintf(why, cap, "\"%s\": a path starts with $", s);
        return -1;
    }
    while (s[i]) {
        if (p->n == MAX_STEPS) {
            snprintf(why, cap, "\"%s\": more than %d steps", s, MAX_STEPS);
            return -1;
        }
        step *st = &p->steps[p->n];
        if (s[i] == '.') {
            size_t j = ++i;
            while (s[i] && s[i] != '.' && s[i] != '[')
                i++;
            if (i == j) {
                snprintf(why, cap, "\"%s\": empty name at %zu", s, j);
                return -1;
            }
            st->key = strndup(s + j, i - j);
        } else if (s[i] == '[' && (s[i + 1] == '\'' || s[i + 1] == '"')) {
            char q = s[i + 1];
            size_t j = i + 2;
            const char *end = strchr(s + j, q);
            if (!end || end[1] != ']') {
                snprintf(why, cap, "\"%s\": unterminated [%c...%c] at %zu", s, q, q, i);
                return -1;
            }
            st->key = strndup(s + j, (size_t)(end - (s + j)));
            i = (size_t)(end - s) + 2;
        } else if (s[i] == '[') {
            char *end;
            unsigned long v = strtoul(s + i + 1, &end, 10);
            if (end == s + i + 1 || *end != ']' || s[i + 1] == '-' || v > 1000000) {
                snprintf(why, cap, "\"%s\": expected [index], ['name'] or [\"name\"] at %zu", s, i);
                return -1;
            }
            st->index = v;
            i = (size_t)(end - s) + 1;
        } else {
            snprintf(why, cap, "\"%s\": expected . or [ at %zu", s, i);
            return -1;
        }
        if (s[i - 1] != ']' && !st->key) {
            snprintf(why, cap, "\"%s\": out of memory", s);
            return -1;
        }
        p->n++;
    }
    return 0;
}

static void free_path(path *p)
{
    for (size_t i = 0; i < p->n; i++)
        free(p->steps[i].key);
    p->n = 0;
}

int gw__json_path_check(const char *s, char *why, size_t cap)
{
    path p;
    int rc = parse_path(s, &p, why, cap);
    free_path(&p);
    return rc;
}

static const json_t *walk(const path *p, const json_t *doc)
{
    const json_t *v = doc;
    for (size_t i = 0; v && i < p->n; i++) {
        const step *st = &p->steps[i];
        v = st->key ? json_object_get(v, st->key) : json_array_get(v, st->index);
    }
    return v;
}

/* ---- loading ---- */

static bool numeric(gw_type t)
{
    return t == GW_T_INT || t == GW_T_LONG || t == GW_T_FLOAT || t == GW_T_DOUBLE || t == GW_T_DATE;
}

/* One load: where problems go. Every problem is reported (file, JSON path) and loading goes on,
 * so that a product's whole "json" section is checked at once. */
typedef struct load_ctx {
    gw_diag *diag;
    const char *file;
    int errors;
    bool oom;
} load_ctx;

static void fail(load_ctx *x, const char *at, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void fail(load_ctx *x, const char *at, const char *fmt, ...)
{
    char msg[300];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    gw_diag_add(x->diag, x->file, at, "%s", msg);
    x->errors++;
}

static void *zalloc(load_ctx *x, size_t n, size_t size, const char *at)
{
    void *v = calloc(n, size);
    if (!v) {
        fail(x, at, "out of memory");
        x->oom = true;
    }
    return v;
}

/* A path string at where into *p: 0, or -1 (reported; *p left empty). */
static int load_path(load_ctx *x, path *p, const json_t *v, const char *where, const char *expect)
{
    char why[200];
    if (!json_is_string(v)) {
        fail(x, where, "expected %s", expect);
        return -1;
    }
    if (parse_path(json_string_value(v), p, why, sizeof(why)) != 0) {
        free_path(p);
        fail(x, where, "%s", why);
        return -1;
    }
    return 0;
}

/* "path" or {"path": "...", "scale": x, "add": y} for spec: 0, or -1 with every problem of the
 * entry reported (*e left without a path). */
static int load_entry(load_ctx *x, entry *e, const gw_value_spec *spec, const json_t *v,
                      const char *where)
{
    char sub[200];
    const json_t *pv = v;
    int errors = x->errors;
    e->spec = spec;
    e->scale = 1;
    e->add = 0;
    if (json_is_object(v)) {
        const char *key;
        json_t *k;
        json_object_foreach((json_t *)v, key, k)
        {
            if (strcmp(key, "path") && strcmp(key, "scale") && strcmp(key, "add")) {
                snprintf(sub, sizeof(sub), "%s.%s", where, key);
                fail(x, sub, "unknown key (path, scale, add)");
            }
        }
        pv = json_object_get(v, "path");
        const json_t *sc = json_object_get(v, "scale"), *ad = json_object_get(v, "add");
        for (int i = 0; i < 2; i++) {
            const json_t *n = i ? ad : sc;
            snprintf(sub, sizeof(sub), "%s.%s", where, i ? "add" : "scale");
            if (n && !json_is_number(n))
                fail(x, sub, "must be a number");
        }
        if ((sc || ad) && !numeric(spec->type))
            fail(x, where, "scale/add need a number, %s is %s", spec->id, gw_type_name(spec->type));
        if (sc && json_is_number(sc))
            e->scale = json_number_value(sc);
        if (ad && json_is_number(ad))
            e->add = json_number_value(ad);
        if (sc && json_is_number(sc) && e->scale == 0) {
            snprintf(sub, sizeof(sub), "%s.scale", where);
            fail(x, sub, "must not be 0");
        }
        e->transform = sc || ad;
    }
    if (load_path(x, &e->at, pv, where, "a path string or {\"path\": ...}") != 0 ||
        x->errors != errors) {
        free_path(&e->at);
        return -1;
    }
    return 0;
}

static void load_props(load_ctx *x, gw__json_map *m, const gw_product *p, const json_t *obj)
{
    const char *key;
    json_t *v;
    char where[160];
    if (!json_is_object(obj)) {
        fail(x, "json.properties", "must be an object");
        return;
    }
    if (!(m->props = zalloc(x, json_object_size(obj) + 1, sizeof(entry), "json.properties")))
        return;
    m->has_props = true;
    json_object_foreach((json_t *)obj, key, v)
    {
        snprintf(where, sizeof(where), "json.properties.%s", key);
        const gw_value_spec *spec = gw_tm_property(p, key);
        if (!spec)
            fail(x, where, "not a property of %s", p->id);
        else if (load_entry(x, &m->props[m->n_props], spec, v, where) == 0)
            m->n_props++;
    }
}

static void load_event(load_ctx *x, event_map *em, const char *key, const json_t *v)
{
    const char *pk;
    json_t *pv;
    char where[200];
    if (!(em->params = zalloc(x, json_object_size(v) + 1, sizeof(entry), "json.events")))
        return;
    json_object_foreach((json_t *)v, pk, pv)
    {
        const gw_value_spec *spec = NULL;
        for (size_t i = 0; i < em->ev->n_params && !spec; i++)
            if (strcmp(em->ev->params[i].id, pk) == 0)
                spec = &em->ev->params[i];
        snprintf(where, sizeof(where), "json.events.%s.%s", key, pk);
        if (!spec)
            fail(x, where, "not a param of event %s", key);
        else if (load_entry(x, &em->params[em->n], spec, pv, where) == 0)
            em->n++;
    }
}

static void load_events(load_ctx *x, gw__json_map *m, const gw_product *p, const json_t *obj)
{
    const char *key;
    json_t *v;
    char where[200];
    if (!json_is_object(obj)) {
        fail(x, "json.events", "must be an object");
        return;
    }
    if (!(m->events = zalloc(x, json_object_size(obj) + 1, sizeof(event_map), "json.events")))
        return;
    json_object_foreach((json_t *)obj, key, v)
    {
        event_map *em = &m->events[m->n_events];
        snprintf(where, sizeof(where), "json.events.%s", key);
        if (!(em->ev = gw_tm_event(p, key))) {
            fail(x, where, "not an event of %s", p->id);
        } else if (!json_is_object(v)) {
            fail(x, where, "must be an object of param -> path");
            em->ev = NULL;
        } else {
            m->n_events++;
            load_event(x, em, key, v);
        }
    }
}

static void load_timestamp(load_ctx *x, gw__json_map *m, const json_t *v)
{
    const json_t *pv = v;
    int errors = x->errors;
    if (json_is_object(v)) {
        const json_t *unit = json_object_get(v, "unit");
        pv = json_object_get(v, "path");
        if (unit && (!json_is_string(unit) || (strcmp(json_string_value(unit), "ms") &&
                                               strcmp(json_string_value(unit), "s"))))
            fail(x, "json.timestamp.unit", "\"ms\" or \"s\"");
        m->ts_seconds = unit && json_is_string(unit) && !strcmp(json_string_value(unit), "s");
    }
    if (load_path(x, &m->ts, pv, "json.timestamp", "a path string") == 0 && x->errors == errors)
        m->has_ts = true;
}

int gw__json_map_load(const gw_product *p, const json_t *section, gw__json_map **out, gw_diag *diag,
                      const char *file)
{
    load_ctx x = {diag, file, 0, false};
    const char *key;
    json_t *v;
    *out = NULL;
    if (!section)
        return 0;
    if (!json_is_object(section)) {
        fail(&x, "json", "must be an object");
        return GW_ECONFIG;
    }
    json_object_foreach((json_t *)section, key, v)
    {
        char where[160];
        snprintf(where, sizeof(where), "json.%s", key);
        if (strcmp(key, "properties") && strcmp(key, "events") && strcmp(key, "timestamp") &&
            strcmp(key, "message_id"))
            fail(&x, where, "unknown key (properties, events, timestamp, message_id)");
    }
    gw__json_map *m = zalloc(&x, 1, sizeof(*m), "json");
    if (!m)
        return GW_ENOMEM;
    if ((v = json_object_get(section, "properties")))
        load_props(&x, m, p, v);
    if ((v = json_object_get(section, "events")))
        load_events(&x, m, p, v);
    if ((v = json_object_get(section, "timestamp")))
        load_timestamp(&x, m, v);
    if ((v = json_object_get(section, "message_id")))
        m->has_msg_id = load_path(&x, &m->msg_id, v, "json.message_id", "a path string") == 0;
    if (x.errors) {
        gw__json_map_free(m);
        return x.oom ? GW_ENOMEM : GW_ECONFIG;
    }
    *out = m;
    return 0;
}

void gw__json_map_free(gw__json_map *m)
{
    if (!m)
        return;
    for (size_t i = 0; m->props && i <= m->n_props; i++)
        free_path(&m->props[i].at);
    free(m->props);
    for (size_t i = 0; m->events && i <= m->n_events; i++) {
        for (size_t j = 0; m->events[i].params && j <= m->events[i].n; j++)
            free_path(&m->events[i].params[j].at);
        free(m->events[i].params);
    }
    free(m->events);
    free_path(&m->ts);
    free_path(&m->msg_id);
    free(m);
}

/* ---- applying ---- */

static const event_map *find_event(const gw__json_map *m, const char *event)
{
    for (size_t i = 0; event && i < m->n_events; i++)
        if (strcmp(m->events[i].ev->id, event) == 0)
            return &m->events[i];
    return NULL;
}

bool gw__json_map_covers(const gw__json_map *m, gw_msg_kind kind, const char *event)
{
    if (!m)
        return false;
    if (kind == GW_MSG_PROPERTY_REPORT)
        return m->has_props;
    if (kind == GW_MSG_EVENT)
        return find_event(m, event) != NULL;
    return false;
}

/* The value at e's path, transformed; NULL (and no error) when the path does not match. */
static int take(const entry *e, const json_t *doc, const char *what, json_t **out, gw_reject *rej)
{
    const json_t *v = walk(&e->at, doc);
    *out = NULL;
    if (!v)
        return 0;
    if (!e->transform) {
        *out = json_incref((json_t *)v);
        return 0;
    }
    if (!json_is_number(v))
        return gw_reject_set(rej, GW_R_WRONG_TYPE, "%s: %s holds %s, scale/add need a number", what,
                             e->at.text, gw_json_kind(v));
    double d = json_number_value(v) * e->scale + e->add;
    gw_type t = e->spec->type;
    if ((t == GW_T_INT || t == GW_T_LONG || t == GW_T_DATE) && fabs(d) < 9.2e18 && d == floor(d))
        *out = json_integer((json_int_t)d);
    else
        *out = json_real(d);
    return *out ? 0 : GW_ENOMEM;
}

static int take_meta(const gw__json_map *m, const json_t *doc, gw_thing_msg *out, gw_reject *rej)
{
    if (m->has_msg_id) {
        const json_t *v = walk(&m->msg_id, doc);
        if (json_is_string(v) && json_string_length(v) < sizeof(out->msg_id))
            snprintf(out->msg_id, sizeof(out->msg_id), "%s", json_string_value(v));
        else if (json_is_integer(v))
            snprintf(out->msg_id, sizeof(out->msg_id), "%" JSON_INTEGER_FORMAT,
                     json_integer_value(v));
        else if (v)
            return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                                 "message id: %s holds %s, expected a string (< %zu bytes) or an "
                                 "integer",
                                 m->msg_id.text, gw_json_kind(v), sizeof(out->msg_id));
    }
    if (m->has_ts) {
        const json_t *v = walk(&m->ts, doc);
        if (v && !json_is_number(v))
            return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                                 "timestamp: %s holds %s, expected a number", m->ts.text,
                                 gw_json_kind(v));
        if (v) {
            double d = json_number_value(v) * (m->ts_seconds ? 1000.0 : 1.0);
            if (d < 0 || d > 9.2e15)
                return gw_reject_set(rej, GW_R_MALFORMED_PAYLOAD,
                                     "timestamp: %s = %.17g is out of range", m->ts.text,
                                     json_number_value(v));
            out->timestamp_ms = (int64_t)d;
        }
    }
    return 0;
}

int gw__json_map_apply(const gw__json_map *m, gw_msg_kind kind, const char *event,
                       const json_t *doc, gw_thing_msg *out, gw_reject *rej)
{
    const entry *es = NULL;
    size_t n = 0;
    const event_map *em = NULL;
    char what[160];
    if (kind == GW_MSG_PROPERTY_REPORT) {
        es = m->props;
        n = m->n_props;
    } else if ((em = find_event(m, event))) {
        es = em->params;
        n = em->n;
    }
    int rc = take_meta(m, doc, out, rej);
    if (rc)
        return rc;
    json_t *obj = json_object();
    if (!obj)
        return GW_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        json_t *v;
        snprintf(what, sizeof(what), "%s.%s", em ? "data" : "properties", es[i].spec->id);
        if ((rc = take(&es[i], doc, what, &v, rej)) != 0)
            break;
        if (!v) {
            if (em && es[i].spec->required) {
                rc = gw_reject_set(rej, GW_R_MISSING_PARAM, "%s: path %s did not match", what,
                                   es[i].at.text);
                break;
            }
            continue;
        }
        json_object_set_new(obj, es[i].spec->id, v);
    }
    if (!rc && !em && json_object_size(obj) == 0) {
        char tried[120] = "";
        size_t len = 0;
        for (size_t i = 0; i < n && len < sizeof(tried) - 8; i++)
            len += (size_t)snprintf(tried + len, sizeof(tried) - len, "%s%s", i ? ", " : "",
                                    es[i].at.text);
        rc = gw_reject_set(rej, GW_R_EMPTY_REPORT, "no mapped property found (paths tried: %s)",
                           tried);
    }
    if (rc) {
        json_decref(obj);
        return rc;
    }
    out->values = obj;
    return 0;
}

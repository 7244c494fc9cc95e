/* json_map.c: the "json" product section behind json_map.h: path compilation and checks at load
 * time, and at run time the walk from a device's document to thing-model values. */
#include "json_map.h"

#include <math.h>
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

/* "path" or {"path": "...", "scale": x, "add": y} for spec. */
static int load_entry(entry *e, const gw_value_spec *spec, const json_t *v, const char *where,
                      gw_error *err)
{
    char why[200];
    const json_t *pv = v;
    e->spec = spec;
    e->scale = 1;
    e->add = 0;
    if (json_is_object(v)) {
        const char *key;
        json_t *x;
        json_object_foreach((json_t *)v, key, x)
        {
            if (strcmp(key, "path") && strcmp(key, "scale") && strcmp(key, "add"))
                return gw_error_set(err, GW_ECONFIG, "%s.%s: unknown key (path, scale, add)", where,
                                    key);
        }
        pv = json_object_get(v, "path");
        const json_t *sc = json_object_get(v, "scale"), *ad = json_object_get(v, "add");
        if ((sc && !json_is_number(sc)) || (ad && !json_is_number(ad)))
            return gw_error_set(err, GW_ECONFIG, "%s.%s: must be a number", where,
                                sc && !json_is_number(sc) ? "scale" : "add");
        if ((sc || ad) && !numeric(spec->type))
            return gw_error_set(err, GW_ECONFIG, "%s: scale/add need a number, %s is %s", where,
                                spec->id, gw_type_name(spec->type));
        if (sc)
            e->scale = json_number_value(sc);
        if (ad)
            e->add = json_number_value(ad);
        if (sc && e->scale == 0)
            return gw_error_set(err, GW_ECONFIG, "%s.scale: must not be 0", where);
        e->transform = sc || ad;
    }
    if (!json_is_string(pv))
        return gw_error_set(err, GW_ECONFIG, "%s: expected a path string or {\"path\": ...}",
                            where);
    if (parse_path(json_string_value(pv), &e->at, why, sizeof(why)) != 0) {
        free_path(&e->at);
        return gw_error_set(err, GW_ECONFIG, "%s: %s", where, why);
    }
    return 0;
}

static int load_path(path *p, const json_t *v, const char *where, gw_error *err)
{
    char why[200];
    if (!json_is_string(v))
        return gw_error_set(err, GW_ECONFIG, "%s: expected a path string", where);
    if (parse_path(json_string_value(v), p, why, sizeof(why)) != 0) {
        free_path(p);
        return gw_error_set(err, GW_ECONFIG, "%s: %s", where, why);
    }
    return 0;
}

static int load_props(gw__json_map *m, const gw_product *p, const json_t *obj, gw_error *err)
{
    const char *key;
    json_t *v;
    char where[160];
    if (!json_is_object(obj))
        return gw_error_set(err, GW_ECONFIG, "json.properties: must be an object");
    m->props = calloc(json_object_size(obj) + 1, sizeof(entry));
    if (!m->props)
        return gw_error_set(err, GW_ENOMEM, "out of memory");
    m->has_props = true;
    json_object_foreach((json_t *)obj, key, v)
    {
        snprintf(where, sizeof(where), "json.properties.%s", key);
        const gw_value_spec *spec = gw_tm_property(p, key);
        if (!spec)
            return gw_error_set(err, GW_ECONFIG, "%s: not a property of %s", where, p->id);
        if (load_entry(&m->props[m->n_props], spec, v, where, err) != 0)
            return GW_ECONFIG;
        m->n_props++;
    }
    return 0;
}

static int load_events(gw__json_map *m, const gw_product *p, const json_t *obj, gw_error *err)
{
    const char *key, *pk;
    json_t *v, *pv;
    char where[200];
    if (!json_is_object(obj))
        return gw_error_set(err, GW_ECONFIG, "json.events: must be an object");
    m->events = calloc(json_object_size(obj) + 1, sizeof(event_map));
    if (!m->events)
        return gw_error_set(err, GW_ENOMEM, "out of memory");
    json_object_foreach((json_t *)obj, key, v)
    {
        event_map *em = &m->events[m->n_events];
        snprintf(where, sizeof(where), "json.events.%s", key);
        if (!(em->ev = gw_tm_event(p, key)))
            return gw_error_set(err, GW_ECONFIG, "%s: not an event of %s", where, p->id);
        if (!json_is_object(v))
            return gw_error_set(err, GW_ECONFIG, "%s: must be an object of param -> path", where);
        m->n_events++;
        em->params = calloc(json_object_size(v) + 1, sizeof(entry));
        if (!em->params)
            return gw_error_set(err, GW_ENOMEM, "out of memory");
        json_object_foreach(v, pk, pv)
        {
            const gw_value_spec *spec = NULL;
            for (size_t i = 0; i < em->ev->n_params && !spec; i++)
                if (strcmp(em->ev->params[i].id, pk) == 0)
                    spec = &em->ev->params[i];
            snprintf(where, sizeof(where), "json.events.%s.%s", key, pk);
            if (!spec)
                return gw_error_set(err, GW_ECONFIG, "%s: not a param of event %s", where, key);
            if (load_entry(&em->params[em->n], spec, pv, where, err) != 0)
                return GW_ECONFIG;
            em->n++;
        }
    }
    return 0;
}

int gw__json_map_load(const gw_product *p, const json_t *section, gw__json_map **out, gw_error *err)
{
    const char *key;
    json_t *v;
    *out = NULL;
    if (!section)
        return 0;
    if (!json_is_object(section))
        return gw_error_set(err, GW_ECONFIG, "json: must be an object");
    json_object_foreach((json_t *)section, key, v)
    {
        if (strcmp(key, "properties") && strcmp(key, "events") && strcmp(key, "timestamp") &&
            strcmp(key, "message_id"))
            return gw_error_set(err, GW_ECONFIG,
                                "json.%s: unknown key (properties, events, timestamp, "
                                "message_id)",
                                key);
    }
    gw__json_map *m = calloc(1, sizeof(*m));
    if (!m)
        return gw_error_set(err, GW_ENOMEM, "out of memory");
    int rc = 0;
    if ((v = json_object_get(section, "properties")))
        rc = load_props(m, p, v, err);
    if (!rc && (v = json_object_get(section, "events")))
        rc = load_events(m, p, v, err);
    if (!rc && (v = json_object_get(section, "timestamp"))) {
        const json_t *pv = v;
        if (json_is_object(v)) {
            const json_t *unit = json_object_get(v, "unit");
            pv = json_object_get(v, "path");
            if (unit && (!json_is_string(unit) || (strcmp(json_string_value(unit), "ms") &&
                                                   strcmp(json_string_value(unit), "s"))))
                rc = gw_error_set(err, GW_ECONFIG, "json.timestamp.unit: \"ms\" or \"s\"");
            m->ts_seconds = unit && json_is_string(unit) && !strcmp(json_string_value(unit), "s");
        }
        if (!rc)
            rc = load_path(&m->ts, pv, "json.timestamp", err);
        m->has_ts = rc == 0;
    }
    if (!rc && (v = json_object_get(section, "message_id"))) {
        rc = load_path(&m->msg_id, v, "json.message_id", err);
        m->has_msg_id = rc == 0;
    }
    if (rc) {
        gw__json_map_free(m);
        return rc;
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

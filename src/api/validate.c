/* validate: field rules for apps and links. Rules are table-driven so that
 * create and update share one definition of each field. */
#include "api/validate.h"

#include <assert.h>
#include <stddef.h>
#include <string.h>
#include <strings.h>

#include "core/url.h"
#include "json/json.h"

static void add_error(struct field_errors *fe, const char *field, const char *reason)
{
    if (fe->n < FIELD_ERRORS_MAX) {
        fe->e[fe->n].field = field;
        fe->e[fe->n].reason = reason;
        fe->n++;
    }
}

bool validate_url(const char *s, size_t len, const char **reason)
{
    static const struct url_rule rule = {
        APP_URL_MAX, {"http://", "https://", NULL}, "must be an absolute http or https URL", true};

    return url_valid(&rule, s, len, reason);
}

bool validate_app_id(const char *s)
{
    size_t i;

    if (strlen(s) != APP_ID_LEN || memcmp(s, APP_ID_PREFIX, strlen(APP_ID_PREFIX)) != 0)
        return false;
    for (i = strlen(APP_ID_PREFIX); i < APP_ID_LEN; i++) {
        if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')))
            return false;
    }
    return true;
}

static void read_pacing(json_t *body, struct store_app *app, unsigned *fields,
                        struct field_errors *fe);

enum kind { K_NAME, K_URL, K_METHOD, K_STATUS };

struct field_rule {
    const char *name;
    enum kind kind;
    unsigned bit;   /* APP_F_* */
    bool nullable;  /* update: may be null (removes the URL) */
    bool required;  /* create */
    bool on_create; /* read by create (status is not) */
    size_t offset;  /* of the char[] in struct store_app */
    size_t size;    /* of that char[] */
};

#define F(field) offsetof(struct store_app, field), sizeof(((struct store_app *)0)->field)

static const struct field_rule rules[] = {
    {"name", K_NAME, APP_F_NAME, false, true, true, F(name)},
    {"answer_url", K_URL, APP_F_ANSWER_URL, false, true, true, F(answer_url)},
    {"answer_method", K_METHOD, APP_F_ANSWER_METHOD, false, false, true, F(answer_method)},
    {"hangup_url", K_URL, APP_F_HANGUP_URL, true, false, true, F(hangup_url)},
    {"hangup_method", K_METHOD, APP_F_HANGUP_METHOD, false, false, true, F(hangup_method)},
    {"fallback_answer_url", K_URL, APP_F_FALLBACK_URL, true, false, true, F(fallback_answer_url)},
    {"fallback_answer_method", K_METHOD, APP_F_FALLBACK_METHOD, false, false, true,
     F(fallback_answer_method)},
    {"status", K_STATUS, APP_F_STATUS, false, false, false, F(status)},
};

/* "POST" or "GET" for s[0..len) in any case (API.md: methods are accepted
 * in any case, stored upper case); NULL for anything else. */
static const char *method_of(const char *s, size_t len)
{
    if (len == 4 && strcasecmp(s, "POST") == 0)
        return "POST";
    if (len == 3 && strcasecmp(s, "GET") == 0)
        return "GET";
    return NULL;
}

/* Checks one present, non-null value against its rule and stores it. */
static bool read_field(const struct field_rule *r, json_t *v, struct store_app *app,
                       struct field_errors *fe)
{
    char *dst = (char *)app + r->offset;
    const char *s, *reason = NULL;
    size_t len;

    if (!json_is_string(v)) {
        add_error(fe, r->name, "must be a string");
        return false;
    }
    s = json_string_value(v);
    len = json_string_length(v);
    switch (r->kind) {
    case K_NAME: {
        size_t cp = js_utf8_count(s, len);

        if (cp < 1 || cp > APP_NAME_MAX_CP) {
            add_error(fe, r->name, "must be 1 to 100 characters");
            return false;
        }
        assert(len < r->size);
        memcpy(dst, s, len + 1);
        return true;
    }
    case K_URL:
        if (!validate_url(s, len, &reason)) {
            add_error(fe, r->name, reason);
            return false;
        }
        assert(len < r->size);
        memcpy(dst, s, len + 1);
        return true;
    case K_METHOD: {
        const char *m = method_of(s, len);

        if (!m) {
            add_error(fe, r->name, "must be POST or GET");
            return false;
        }
        memcpy(dst, m, strlen(m) + 1);
        return true;
    }
    case K_STATUS:
        if ((len == 6 && strcmp(s, "ACTIVE") == 0) || (len == 8 && strcmp(s, "INACTIVE") == 0)) {
            memcpy(dst, s, len + 1);
            return true;
        }
        add_error(fe, r->name, "must be ACTIVE or INACTIVE");
        return false;
    }
    return false;
}

enum err validate_app_create(json_t *body, struct store_app *app, struct field_errors *fe)
{
    size_t i;

    fe->n = 0;
    app->name[0] = app->answer_url[0] = app->hangup_url[0] = app->fallback_answer_url[0] = '\0';
    memcpy(app->answer_method, "POST", 5);
    memcpy(app->hangup_method, "POST", 5);
    memcpy(app->fallback_answer_method, "POST", 5);
    memcpy(app->status, "ACTIVE", 7);

    for (i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        const struct field_rule *r = &rules[i];
        json_t *v;

        if (!r->on_create)
            continue;
        v = json_object_get(body, r->name);
        if (!v || (json_is_null(v) && r->kind == K_URL && !r->required)) {
            if (r->required)
                add_error(fe, r->name, "is required");
            continue;
        }
        (void)read_field(r, v, app, fe);
    }
    read_pacing(body, app, NULL, fe);
    return fe->n ? ERR_INVALID : ERR_OK;
}

enum err validate_app_update(json_t *body, struct store_app_patch *patch, struct field_errors *fe)
{
    size_t i;

    fe->n = 0;
    patch->fields = 0;
    memset(&patch->vals, 0, sizeof(patch->vals));
    for (i = 0; i < sizeof(rules) / sizeof(rules[0]); i++) {
        const struct field_rule *r = &rules[i];
        json_t *v = json_object_get(body, r->name);

        if (!v)
            continue;
        if (json_is_null(v)) {
            if (!r->nullable) {
                add_error(fe, r->name, "must not be null");
                continue;
            }
            ((char *)&patch->vals + r->offset)[0] = '\0';
            patch->fields |= r->bit;
            continue;
        }
        if (read_field(r, v, &patch->vals, fe))
            patch->fields |= r->bit;
    }
    read_pacing(body, &patch->vals, &patch->fields, fe);
    return fe->n ? ERR_INVALID : ERR_OK;
}

enum err validate_link(json_t *body, const char *default_cc, char e164[E164_MAX],
                       struct field_errors *fe)
{
    json_t *v = json_object_get(body, "voip_number");

    fe->n = 0;
    if (!v) {
        add_error(fe, "voip_number", "is required");
        return ERR_INVALID;
    }
    if (!json_is_string(v)) {
        add_error(fe, "voip_number", "must be a string");
        return ERR_INVALID;
    }
    if (e164_normalize(json_string_value(v), json_string_length(v), default_cc, e164) != ERR_OK) {
        add_error(fe, "voip_number", "must be a valid phone number");
        return ERR_INVALID;
    }
    return ERR_OK;
}

/* A method field: absent is POST; present must be a string naming POST or
 * GET in any case. *set (may be NULL) tells whether it was present. */
static void read_method(json_t *body, const char *name, char dst[METHOD_MAX + 1], bool *set,
                        struct field_errors *fe)
{
    json_t *v = json_object_get(body, name);
    const char *m;

    if (set)
        *set = v != NULL;
    memcpy(dst, "POST", 5);
    if (!v)
        return;
    if (!json_is_string(v)) {
        add_error(fe, name, "must be a string");
        return;
    }
    m = method_of(json_string_value(v), json_string_length(v));
    if (!m) {
        add_error(fe, name, "must be POST or GET");
        return;
    }
    memcpy(dst, m, strlen(m) + 1);
}

/* A URL field; an optional one may be absent or null (left ""). */
static void read_url(json_t *body, const char *name, bool required, char dst[APP_URL_MAX + 1],
                     struct field_errors *fe)
{
    json_t *v = json_object_get(body, name);
    const char *reason = NULL;
    size_t len;

    dst[0] = '\0';
    if (!v || (json_is_null(v) && !required)) {
        if (required)
            add_error(fe, name, "is required");
        return;
    }
    if (!json_is_string(v)) {
        add_error(fe, name, "must be a string");
        return;
    }
    len = json_string_length(v);
    if (!validate_url(json_string_value(v), len, &reason)) {
        add_error(fe, name, reason);
        return;
    }
    assert(len <= APP_URL_MAX);
    memcpy(dst, json_string_value(v), len + 1);
}

static void read_number(json_t *body, const char *name, const char *default_cc, char dst[E164_MAX],
                        struct field_errors *fe)
{
    json_t *v = json_object_get(body, name);

    dst[0] = '\0';
    if (!v) {
        add_error(fe, name, "is required");
        return;
    }
    if (!json_is_string(v)) {
        add_error(fe, name, "must be a string");
        return;
    }
    if (e164_normalize(json_string_value(v), json_string_length(v), default_cc, dst) != ERR_OK)
        add_error(fe, name, "must be a valid phone number");
}

/* An integer field in [1, max]; JSON reals (1.0), booleans and strings are
 * not integers. */
static void read_seconds(json_t *body, const char *name, unsigned def, unsigned max, unsigned *dst,
                         const char *range, struct field_errors *fe)
{
    json_t *v = json_object_get(body, name);
    json_int_t n;

    *dst = def;
    if (!v)
        return;
    if (!json_is_integer(v)) {
        add_error(fe, name, "must be an integer");
        return;
    }
    n = json_integer_value(v);
    if (n < 1 || n > (json_int_t)max) {
        add_error(fe, name, range);
        return;
    }
    *dst = (unsigned)n;
}

/* True when one of the "Name: value" lines names name[0..len), in any case. */
static bool operator_names(const char *const *lines, size_t nlines, const char *name, size_t len)
{
    size_t i;

    for (i = 0; i < nlines; i++) {
        const char *colon = strchr(lines[i], ':');
        size_t n = colon ? (size_t)(colon - lines[i]) : strlen(lines[i]);

        while (n && (lines[i][n - 1] == ' ' || lines[i][n - 1] == '\t'))
            n--;
        if (n == len && strncasecmp(lines[i], name, len) == 0)
            return true;
    }
    return false;
}

/* sip_headers: every rule is checked before anything is kept, and a bad
 * body names the field once. */
static void read_sip_headers(json_t *body, const char *const *operator_headers, size_t noperator,
                             struct xheaders *out, struct field_errors *fe)
{
    static const char field[] = "sip_headers";
    json_t *v = json_object_get(body, field), *val;
    const char *key;

    out->n = 0;
    if (!v)
        return;
    if (!json_is_object(v)) {
        add_error(fe, field, "must be an object");
        return;
    }
    if (json_object_size(v) > XHEADERS_MAX) {
        add_error(fe, field, "must have at most 16 headers");
        return;
    }
    json_object_foreach(v, key, val)
    {
        size_t n = strlen(key);

        if (!xheader_name_valid(key, n)) {
            add_error(fe, field, "names must match ^X-[A-Za-z0-9-]{1,62}$");
            return;
        }
        if (operator_names(operator_headers, noperator, key, n)) {
            add_error(fe, field, "must not name a header the server sets (--sip-header)");
            return;
        }
        if (!json_is_string(val) ||
            !xheader_value_valid(json_string_value(val), json_string_length(val))) {
            add_error(fe, field, "values must be printable ASCII strings of at most 256 bytes");
            return;
        }
        memcpy(out->h[out->n].name, key, n + 1);
        memcpy(out->h[out->n].value, json_string_value(val), json_string_length(val) + 1);
        out->n++;
    }
}

enum err validate_call_create(json_t *body, const char *default_cc,
                              const char *const *operator_headers, size_t noperator,
                              struct call_body *out, struct field_errors *fe)
{
    struct engine_outbound *r = &out->req;

    fe->n = 0;
    memset(out, 0, sizeof(*out));
    read_number(body, "from", default_cc, r->from, fe);
    read_number(body, "to", default_cc, r->to, fe);
    read_url(body, "answer_url", true, r->answer_url, fe);
    read_method(body, "answer_method", r->answer_method, NULL, fe);
    read_url(body, "ring_url", false, r->ring_url, fe);
    read_method(body, "ring_method", r->ring_method, NULL, fe);
    read_url(body, "hangup_url", false, r->hangup_url, fe);
    read_method(body, "hangup_method", r->hangup_method, &out->hangup_method_set, fe);
    read_seconds(body, "call_time_limit", CALL_TIME_LIMIT_DEFAULT, CALL_TIME_LIMIT_MAX,
                 &r->call_time_limit_s, "must be 1 to 86400", fe);
    read_seconds(body, "ring_timeout", RING_TIMEOUT_DEFAULT, RING_TIMEOUT_MAX, &r->ring_timeout_s,
                 "must be 1 to 600", fe);
    read_sip_headers(body, operator_headers, noperator, &r->sip_headers, fe);
    if (fe->n)
        r->sip_headers.n = 0;
    return fe->n ? ERR_INVALID : ERR_OK;
}

static bool is_hex(char c)
{
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

bool validate_call_id(const char *s, char out[CALL_UUID_LEN + 1])
{
    static const char prefix[] = "sfv_ob_req_";
    size_t i, n = strlen(s);

    if (n == REQUEST_UUID_LEN && memcmp(s, prefix, sizeof(prefix) - 1) == 0) {
        for (i = sizeof(prefix) - 1; i < n; i++) {
            if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= '0' && s[i] <= '9')))
                return false;
        }
        memcpy(out, s, n + 1);
        return true;
    }
    if (n != CALL_UUID_LEN)
        return false;
    for (i = 0; i < n; i++) {
        bool dash = i == 8 || i == 13 || i == 18 || i == 23;

        if (dash ? s[i] != '-' : !is_hex(s[i]))
            return false;
        out[i] = (s[i] >= 'A' && s[i] <= 'F') ? (char)(s[i] - 'A' + 'a') : s[i];
    }
    out[n] = '\0';
    return true;
}

/* ---- outbound pacing (AGENT.md section 6) ---- */

struct pacing_rule {
    const char *name;
    unsigned bit; /* APP_F_* */
    int64_t min, max;
    const char *range;
    size_t offset; /* of the int64_t in struct store_app */
};

static const struct pacing_rule pacing_rules[] = {
    {"max_concurrent_calls", APP_F_MAX_CONCURRENT, APP_MAX_CONCURRENT_MIN, APP_MAX_CONCURRENT_MAX,
     "must be an integer from 1 to 10000", offsetof(struct store_app, max_concurrent_calls)},
    {"calls_per_second", APP_F_CPS, APP_CPS_MIN, APP_CPS_MAX, "must be an integer from 1 to 100",
     offsetof(struct store_app, calls_per_second)},
};

/* The optional caps, on create (fields NULL) and update: absent leaves a
 * cap as it is (none on create), null clears it (0), else an integer in
 * its range. Errors join the body's other field errors. */
static void read_pacing(json_t *body, struct store_app *app, unsigned *fields,
                        struct field_errors *fe)
{
    size_t i;

    for (i = 0; i < sizeof(pacing_rules) / sizeof(pacing_rules[0]); i++) {
        const struct pacing_rule *r = &pacing_rules[i];
        int64_t *dst = (int64_t *)(void *)((char *)app + r->offset);
        json_t *v = json_object_get(body, r->name);
        json_int_t n;

        *dst = 0;
        if (!v)
            continue;
        if (json_is_null(v)) {
            if (fields)
                *fields |= r->bit;
            continue;
        }
        if (!json_is_integer(v)) {
            add_error(fe, r->name, "must be an integer");
            continue;
        }
        n = json_integer_value(v);
        if (n < r->min || n > r->max) {
            add_error(fe, r->name, r->range);
            continue;
        }
        *dst = (int64_t)n;
        if (fields)
            *fields |= r->bit;
    }
}

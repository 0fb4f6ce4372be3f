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
    case K_METHOD:
        if (strcasecmp(s, "POST") == 0 && len == 4) {
            memcpy(dst, "POST", 5);
            return true;
        }
        if (strcasecmp(s, "GET") == 0 && len == 3) {
            memcpy(dst, "GET", 4);
            return true;
        }
        add_error(fe, r->name, "must be POST or GET");
        return false;
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

/* test_validate: the field rules of API.md section 2 (apps) and section 3
 * (link body), and the "errors" array (Beyond: one entry per rejected field,
 * by field name). Bodies are written as JSON text so that each case reads
 * like the request a client would send. */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/validate.h"
#include "json/json.h"

static json_t *parse(const char *text)
{
    json_t *v = NULL;

    if (js_parse_object(text, strlen(text), &v) != ERR_OK)
        fail_msg("test body does not parse: %s", text);
    return v;
}

/* Asserts that fe names exactly the fields of want (in order), each once. */
static void assert_fields(const struct field_errors *fe, const char *const *want, int n)
{
    int i;

    if (fe->n != n) {
        for (i = 0; i < fe->n; i++)
            print_error("  error %d: %s %s\n", i, fe->e[i].field, fe->e[i].reason);
    }
    assert_int_equal(fe->n, n);
    for (i = 0; i < n; i++) {
        assert_string_equal(fe->e[i].field, want[i]);
        assert_non_null(fe->e[i].reason);
        assert_true(strlen(fe->e[i].reason) > 0);
    }
}

/* ---- validate_url ---- */

struct url_case {
    const char *url;
    bool ok;
};

static void test_url_table(void **state)
{
    static const struct url_case cases[] = {
        {"http://example.com", true},
        {"https://example.com", true},
        {"https://example.com/webhook/answer", true},
        {"HTTP://EXAMPLE.COM/", true},
        {"HtTpS://example.com", true},
        {"https://example.com/a?b=c#d", true},
        {"https://example.com?x=1", true},
        {"https://example.com#frag", true},
        {"http://localhost:8080/x", true},
        {"http://127.0.0.1:1/x", true},
        {"http://127.0.0.1", true},
        {"http://1", true},
        {"http://example.com:65535/", true},
        {"http://example.com:/", true}, /* empty port: the default */
        {"http://example.com:", true},
        {"http://[::1]:8080/x", true},
        {"http://[::1]/x", true},
        {"http://[::1]", true},
        {"http://[2001:db8::1]:443", true},
        {"http://user@example.com/", true},
        {"http://user:pass@example.com:8080/", true},
        {"https://ex\xc3\xa4mple.com/p\xc3\xa4th", true}, /* non-ASCII is not a control */
        /* Scheme. */
        {"ftp://example.com", false},
        {"example.com", false},
        {"//example.com", false},
        {"/webhook", false},
        {"", false},
        {"http:", false},
        {"http:/example.com", false},
        {"http:example.com", false},
        {"https:/example.com", false},
        {"httpx://example.com", false},
        {"ws://example.com", false},
        {"javascript:alert(1)", false},
        /* Host. */
        {"http://", false},
        {"https://", false},
        {"http:///x", false},
        {"http://?x", false},
        {"http://#x", false},
        {"http://:80/x", false},
        {"http://user@/x", false},
        {"http://@", false},
        {"http://[]", false},
        {"http://[::1", false},
        {"http://[::1]x", false},
        {"http://a:b:80/", false},
        {"http://host]/", false},
        {"http://ho[st/", false},
        /* Port. */
        {"http://example.com:0/", false},
        {"http://example.com:65536/", false},
        {"http://example.com:99999/", false},
        {"http://example.com:123456/", false},
        {"http://example.com:00080/", true},
        {"http://example.com:8a/", false},
        {"http://[::1]:0/", false},
        {"http://[::1]:65536/", false},
        /* Spaces and control characters. */
        {"http://example.com/a b", false},
        {" http://example.com", false},
        {"http://example.com ", false},
        {"http://exa mple.com", false},
        {"http://example.com/\t", false},
        {"http://example.com/\n", false},
        {"http://example.com/\r", false},
        {"http://example.com/\x01", false},
        {"http://example.com/\x1f", false},
        {"http://example.com/\x7f", false},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *reason = NULL;
        bool ok = validate_url(cases[i].url, strlen(cases[i].url), &reason);

        if (ok != cases[i].ok)
            print_error("case %zu: '%s' gave %d (%s)\n", i, cases[i].url, ok,
                        reason ? reason : "-");
        assert_int_equal(ok, cases[i].ok);
        if (!ok) {
            assert_non_null(reason);
            assert_true(strlen(reason) > 0);
        }
    }
}

static void test_url_reasons(void **state)
{
    const char *reason = NULL;

    (void)state;
    assert_false(validate_url("ftp://x", 7, &reason));
    assert_string_equal(reason, "must be an absolute http or https URL");
    assert_false(validate_url("http://a b", 10, &reason));
    assert_string_equal(reason, "must not contain spaces or control characters");
    assert_false(validate_url("http://", 7, &reason));
    assert_string_equal(reason, "must have a host");
    assert_false(validate_url("http://x:0", 10, &reason));
    assert_string_equal(reason, "has an invalid port");
}

/* NUL bytes inside the given length are control characters. */
static void test_url_embedded_nul(void **state)
{
    const char *reason = NULL;

    (void)state;
    assert_false(validate_url("http://a.com/\0x", 15, &reason));
    assert_false(validate_url("http://a\0.com", 13, &reason));
    assert_true(validate_url("http://a.com/\0x", 13, &reason));
}

/* At most 2048 bytes (APP_URL_MAX). */
static void test_url_length(void **state)
{
    char *url = malloc(APP_URL_MAX + 2);
    const char *reason = NULL;

    (void)state;
    assert_non_null(url);
    memcpy(url, "https://example.com/", 20);
    memset(url + 20, 'a', APP_URL_MAX + 1 - 20);
    url[APP_URL_MAX] = '\0';
    assert_int_equal(strlen(url), 2048);
    assert_true(validate_url(url, 2048, &reason));
    url[APP_URL_MAX] = 'a';
    url[APP_URL_MAX + 1] = '\0';
    assert_false(validate_url(url, 2049, &reason));
    assert_string_equal(reason, "must be at most 2048 bytes");
    free(url);
}

static void test_app_id_format(void **state)
{
    (void)state;
    assert_true(validate_app_id("sfv_app_abc123xyz456"));
    assert_true(validate_app_id("sfv_app_000000000000"));
    assert_false(validate_app_id("sfv_app_abc123xyz45"));
    assert_false(validate_app_id("sfv_app_abc123xyz4567"));
    assert_false(validate_app_id("sfv_app_ABC123xyz456"));
    assert_false(validate_app_id("sfv_app_abc123xyz45_"));
    assert_false(validate_app_id("sfv_apq_abc123xyz456"));
    assert_false(validate_app_id("SFV_APP_abc123xyz456"));
    assert_false(validate_app_id(""));
}

/* ---- validate_app_create ---- */

static void test_create_minimal_defaults(void **state)
{
    json_t *body = parse("{\"name\":\"My Voice App\","
                         "\"answer_url\":\"https://example.com/webhook/answer\"}");
    struct store_app app;
    struct field_errors fe;

    (void)state;
    memset(&app, 'X', sizeof(app));
    assert_int_equal(validate_app_create(body, &app, &fe), ERR_OK);
    assert_int_equal(fe.n, 0);
    assert_string_equal(app.name, "My Voice App");
    assert_string_equal(app.answer_url, "https://example.com/webhook/answer");
    assert_string_equal(app.answer_method, "POST");
    assert_string_equal(app.hangup_url, "");
    assert_string_equal(app.hangup_method, "POST");
    assert_string_equal(app.fallback_answer_url, "");
    assert_string_equal(app.fallback_answer_method, "POST");
    assert_string_equal(app.status, "ACTIVE");
    json_decref(body);
}

static void test_create_full(void **state)
{
    json_t *body = parse("{\"name\":\"n\",\"answer_url\":\"http://a.com/1\","
                         "\"answer_method\":\"get\",\"hangup_url\":\"http://a.com/2\","
                         "\"hangup_method\":\"Post\",\"fallback_answer_url\":\"https://b.com/3\","
                         "\"fallback_answer_method\":\"GET\",\"unknown\":[1,2],\"extra\":{}}");
    struct store_app app;
    struct field_errors fe;

    (void)state;
    assert_int_equal(validate_app_create(body, &app, &fe), ERR_OK);
    assert_string_equal(app.name, "n");
    assert_string_equal(app.answer_url, "http://a.com/1");
    assert_string_equal(app.answer_method, "GET");
    assert_string_equal(app.hangup_url, "http://a.com/2");
    assert_string_equal(app.hangup_method, "POST");
    assert_string_equal(app.fallback_answer_url, "https://b.com/3");
    assert_string_equal(app.fallback_answer_method, "GET");
    assert_string_equal(app.status, "ACTIVE");
    json_decref(body);
}

/* Methods in any case are stored upper case; anything else is invalid. */
static void test_create_methods(void **state)
{
    static const struct {
        const char *m;
        const char *want; /* NULL: invalid */
    } cases[] = {
        {"POST", "POST"}, {"post", "POST"}, {"pOsT", "POST"}, {"GET", "GET"}, {"get", "GET"},
        {"gEt", "GET"},   {"PUT", NULL},    {"DELETE", NULL}, {"", NULL},     {" POST", NULL},
        {"POST ", NULL},  {"POSTS", NULL},  {"GE", NULL},     {"HEAD", NULL},
    };
    static const char *const field[] = {"answer_method"};
    char text[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct store_app app;
        struct field_errors fe;
        json_t *body;
        enum err e;

        snprintf(text, sizeof(text),
                 "{\"name\":\"n\",\"answer_url\":\"http://a.com\",\"answer_method\":\"%s\"}",
                 cases[i].m);
        body = parse(text);
        e = validate_app_create(body, &app, &fe);
        if ((e == ERR_OK) != (cases[i].want != NULL))
            print_error("method '%s'\n", cases[i].m);
        if (cases[i].want) {
            assert_int_equal(e, ERR_OK);
            assert_string_equal(app.answer_method, cases[i].want);
        } else {
            assert_int_equal(e, ERR_INVALID);
            assert_fields(&fe, field, 1);
            assert_string_equal(fe.e[0].reason, "must be POST or GET");
        }
        json_decref(body);
    }
}

static void test_create_required_fields(void **state)
{
    static const struct {
        const char *body;
        const char *fields[3];
        int n;
    } cases[] = {
        {"{}", {"name", "answer_url"}, 2},
        {"{\"name\":\"n\"}", {"answer_url"}, 1},
        {"{\"answer_url\":\"http://a.com\"}", {"name"}, 1},
        {"{\"name\":null,\"answer_url\":\"http://a.com\"}", {"name"}, 1},
        {"{\"name\":\"n\",\"answer_url\":null}", {"answer_url"}, 1},
        {"{\"hangup_url\":\"http://a.com\"}", {"name", "answer_url"}, 2},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *body = parse(cases[i].body);
        struct store_app app;
        struct field_errors fe;

        assert_int_equal(validate_app_create(body, &app, &fe), ERR_INVALID);
        assert_fields(&fe, cases[i].fields, cases[i].n);
        json_decref(body);
    }
}

static void test_create_missing_reason(void **state)
{
    json_t *body = parse("{}");
    struct store_app app;
    struct field_errors fe;

    (void)state;
    assert_int_equal(validate_app_create(body, &app, &fe), ERR_INVALID);
    assert_int_equal(fe.n, 2);
    assert_string_equal(fe.e[0].field, "name");
    assert_string_equal(fe.e[0].reason, "is required");
    assert_string_equal(fe.e[1].field, "answer_url");
    assert_string_equal(fe.e[1].reason, "is required");
    json_decref(body);
}

/* An explicit null for an optional URL is the same as leaving it out; a
 * null for a method is a wrong type. */
static void test_create_nulls(void **state)
{
    static const char *const methods[] = {"answer_method", "hangup_method",
                                          "fallback_answer_method"};
    json_t *body = parse("{\"name\":\"n\",\"answer_url\":\"http://a.com\","
                         "\"hangup_url\":null,\"fallback_answer_url\":null}");
    struct store_app app;
    struct field_errors fe;

    (void)state;
    assert_int_equal(validate_app_create(body, &app, &fe), ERR_OK);
    assert_string_equal(app.hangup_url, "");
    assert_string_equal(app.fallback_answer_url, "");
    json_decref(body);

    body = parse("{\"name\":\"n\",\"answer_url\":\"http://a.com\",\"answer_method\":null,"
                 "\"hangup_method\":null,\"fallback_answer_method\":null}");
    assert_int_equal(validate_app_create(body, &app, &fe), ERR_INVALID);
    assert_fields(&fe, methods, 3);
    json_decref(body);
}

static void test_create_wrong_types(void **state)
{
    static const char *const all[] = {
        "name",          "answer_url",          "answer_method",         "hangup_url",
        "hangup_method", "fallback_answer_url", "fallback_answer_method"};
    static const char *const values[] = {"1", "1.5", "true", "false", "[]", "{}", "[\"x\"]"};
    char text[512];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(values) / sizeof(values[0]); i++) {
        const char *v = values[i];
        struct store_app app;
        struct field_errors fe;
        json_t *body;
        int k;

        snprintf(text, sizeof(text),
                 "{\"name\":%s,\"answer_url\":%s,\"answer_method\":%s,\"hangup_url\":%s,"
                 "\"hangup_method\":%s,\"fallback_answer_url\":%s,"
                 "\"fallback_answer_method\":%s}",
                 v, v, v, v, v, v, v);
        body = parse(text);
        assert_int_equal(validate_app_create(body, &app, &fe), ERR_INVALID);
        assert_fields(&fe, all, 7);
        for (k = 0; k < fe.n; k++)
            assert_string_equal(fe.e[k].reason, "must be a string");
        json_decref(body);
    }
}

/* Bad URLs are reported per field, with the URL's own reason. */
static void test_create_bad_urls(void **state)
{
    static const char *const fields[] = {"answer_url", "hangup_url", "fallback_answer_url"};
    json_t *body = parse("{\"name\":\"n\",\"answer_url\":\"ftp://a.com\","
                         "\"hangup_url\":\"http://\",\"fallback_answer_url\":\"http://a b\"}");
    struct store_app app;
    struct field_errors fe;

    (void)state;
    assert_int_equal(validate_app_create(body, &app, &fe), ERR_INVALID);
    assert_fields(&fe, fields, 3);
    assert_string_equal(fe.e[0].reason, "must be an absolute http or https URL");
    assert_string_equal(fe.e[1].reason, "must have a host");
    assert_string_equal(fe.e[2].reason, "must not contain spaces or control characters");
    json_decref(body);
}

/* Builds a JSON string of n copies of the UTF-8 character ch. */
static char *repeat(const char *ch, size_t n)
{
    size_t k = strlen(ch), i;
    char *s = malloc(n * k + 1);

    assert_non_null(s);
    for (i = 0; i < n; i++)
        memcpy(s + i * k, ch, k);
    s[n * k] = '\0';
    return s;
}

/* name is 1 to 100 code points, however many bytes each. */
static void test_create_name_length(void **state)
{
    static const char *const chars[] = {"a", "\xc3\xa9", "\xe2\x82\xac", "\xf0\x9f\x98\x80"};
    static const struct {
        size_t n;
        bool ok;
    } lens[] = {{0, false},  {1, true},    {2, true},   {99, true},
                {100, true}, {101, false}, {400, false}};
    static const char *const name_field[] = {"name"};
    size_t c, l;

    (void)state;
    for (c = 0; c < sizeof(chars) / sizeof(chars[0]); c++) {
        for (l = 0; l < sizeof(lens) / sizeof(lens[0]); l++) {
            char *name = repeat(chars[c], lens[l].n);
            size_t textsz = strlen(name) + 64;
            char *text = malloc(textsz);
            struct store_app app;
            struct field_errors fe;
            json_t *body;
            enum err e;

            assert_non_null(text);
            snprintf(text, textsz, "{\"name\":\"%s\",\"answer_url\":\"http://a.com\"}", name);
            body = parse(text);
            e = validate_app_create(body, &app, &fe);
            if ((e == ERR_OK) != lens[l].ok)
                print_error("char %zu x %zu\n", c, lens[l].n);
            if (lens[l].ok) {
                assert_int_equal(e, ERR_OK);
                assert_string_equal(app.name, name);
            } else {
                assert_int_equal(e, ERR_INVALID);
                assert_fields(&fe, name_field, 1);
                assert_string_equal(fe.e[0].reason, "must be 1 to 100 characters");
            }
            json_decref(body);
            free(text);
            free(name);
        }
    }
}

/* A status in a create body is ignored: new apps are ACTIVE. */
static void test_create_ignores_status(void **state)
{
    static const char *const bodies[] = {
        "{\"name\":\"n\",\"answer_url\":\"http://a.com\",\"status\":\"INACTIVE\"}",
        "{\"name\":\"n\",\"answer_url\":\"http://a.com\",\"status\":\"bogus\"}",
        "{\"name\":\"n\",\"answer_url\":\"http://a.com\",\"status\":null}",
        "{\"name\":\"n\",\"answer_url\":\"http://a.com\",\"status\":5}",
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bodies) / sizeof(bodies[0]); i++) {
        json_t *body = parse(bodies[i]);
        struct store_app app;
        struct field_errors fe;

        assert_int_equal(validate_app_create(body, &app, &fe), ERR_OK);
        assert_string_equal(app.status, "ACTIVE");
        json_decref(body);
    }
}

/* ---- validate_app_update ---- */

static void test_update_partial_bits(void **state)
{
    static const struct {
        const char *body;
        unsigned fields;
    } cases[] = {
        {"{}", 0},
        {"{\"unknown\":1,\"app_id\":\"x\",\"org_id\":5}", 0},
        {"{\"name\":\"new\"}", APP_F_NAME},
        {"{\"answer_url\":\"http://a.com\"}", APP_F_ANSWER_URL},
        {"{\"answer_method\":\"get\"}", APP_F_ANSWER_METHOD},
        {"{\"hangup_url\":\"http://a.com\"}", APP_F_HANGUP_URL},
        {"{\"hangup_method\":\"GET\"}", APP_F_HANGUP_METHOD},
        {"{\"fallback_answer_url\":\"http://a.com\"}", APP_F_FALLBACK_URL},
        {"{\"fallback_answer_method\":\"post\"}", APP_F_FALLBACK_METHOD},
        {"{\"status\":\"INACTIVE\"}", APP_F_STATUS},
        {"{\"name\":\"a\",\"status\":\"ACTIVE\",\"hangup_url\":null}",
         APP_F_NAME | APP_F_STATUS | APP_F_HANGUP_URL},
        {"{\"name\":\"a\",\"answer_url\":\"http://a.com\",\"answer_method\":\"GET\","
         "\"hangup_url\":\"http://b.com\",\"hangup_method\":\"GET\","
         "\"fallback_answer_url\":null,\"fallback_answer_method\":\"GET\","
         "\"status\":\"ACTIVE\"}",
         0xff},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *body = parse(cases[i].body);
        struct store_app_patch patch;
        struct field_errors fe;

        memset(&patch, 'X', sizeof(patch));
        assert_int_equal(validate_app_update(body, &patch, &fe), ERR_OK);
        if (patch.fields != cases[i].fields)
            print_error("case %zu: fields 0x%x\n", i, patch.fields);
        assert_int_equal(patch.fields, cases[i].fields);
        assert_int_equal(fe.n, 0);
        json_decref(body);
    }
}

static void test_update_values(void **state)
{
    json_t *body = parse("{\"name\":\"renamed\",\"answer_method\":\"get\",\"status\":\"INACTIVE\","
                         "\"hangup_url\":\"https://h.com/x\"}");
    struct store_app_patch patch;
    struct field_errors fe;

    (void)state;
    assert_int_equal(validate_app_update(body, &patch, &fe), ERR_OK);
    assert_string_equal(patch.vals.name, "renamed");
    assert_string_equal(patch.vals.answer_method, "GET");
    assert_string_equal(patch.vals.status, "INACTIVE");
    assert_string_equal(patch.vals.hangup_url, "https://h.com/x");
    json_decref(body);
}

/* null removes hangup_url / fallback_answer_url: the bit is set and the
 * value is "". */
static void test_update_null_removes_url(void **state)
{
    json_t *body = parse("{\"hangup_url\":null,\"fallback_answer_url\":null}");
    struct store_app_patch patch;
    struct field_errors fe;

    (void)state;
    memset(&patch, 'X', sizeof(patch));
    assert_int_equal(validate_app_update(body, &patch, &fe), ERR_OK);
    assert_int_equal(patch.fields, APP_F_HANGUP_URL | APP_F_FALLBACK_URL);
    assert_string_equal(patch.vals.hangup_url, "");
    assert_string_equal(patch.vals.fallback_answer_url, "");
    json_decref(body);
}

/* null for any other field is a 400. */
static void test_update_null_invalid(void **state)
{
    static const char *const fields[] = {
        "name", "answer_url", "answer_method", "hangup_method", "fallback_answer_method", "status"};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(fields) / sizeof(fields[0]); i++) {
        char text[128];
        json_t *body;
        struct store_app_patch patch;
        struct field_errors fe;

        snprintf(text, sizeof(text), "{\"%s\":null}", fields[i]);
        body = parse(text);
        assert_int_equal(validate_app_update(body, &patch, &fe), ERR_INVALID);
        assert_fields(&fe, &fields[i], 1);
        assert_string_equal(fe.e[0].reason, "must not be null");
        json_decref(body);
    }
}

static void test_update_status(void **state)
{
    static const struct {
        const char *status;
        bool ok;
    } cases[] = {
        {"ACTIVE", true},     {"INACTIVE", true},  {"active", false},  {"Inactive", false},
        {"", false},          {"DISABLED", false}, {"ACTIVE ", false}, {" ACTIVE", false},
        {"INACTIVEX", false}, {"ACTIV", false},
    };
    static const char *const field[] = {"status"};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        char text[128];
        json_t *body;
        struct store_app_patch patch;
        struct field_errors fe;
        enum err e;

        snprintf(text, sizeof(text), "{\"status\":\"%s\"}", cases[i].status);
        body = parse(text);
        e = validate_app_update(body, &patch, &fe);
        if ((e == ERR_OK) != cases[i].ok)
            print_error("status '%s'\n", cases[i].status);
        if (cases[i].ok) {
            assert_int_equal(e, ERR_OK);
            assert_int_equal(patch.fields, APP_F_STATUS);
            assert_string_equal(patch.vals.status, cases[i].status);
        } else {
            assert_int_equal(e, ERR_INVALID);
            assert_fields(&fe, field, 1);
            assert_string_equal(fe.e[0].reason, "must be ACTIVE or INACTIVE");
        }
        json_decref(body);
    }
    {
        json_t *body = parse("{\"status\":1}");
        struct store_app_patch patch;
        struct field_errors fe;

        assert_int_equal(validate_app_update(body, &patch, &fe), ERR_INVALID);
        assert_fields(&fe, field, 1);
        assert_string_equal(fe.e[0].reason, "must be a string");
        json_decref(body);
    }
}

/* Every broken field is named, valid ones alongside do not hide them. */
static void test_update_errors_listed(void **state)
{
    static const char *const fields[] = {"name", "answer_url", "hangup_method", "status"};
    json_t *body = parse("{\"name\":\"\",\"answer_url\":\"x\",\"answer_method\":\"GET\","
                         "\"hangup_method\":\"PATCH\",\"status\":\"on\"}");
    struct store_app_patch patch;
    struct field_errors fe;

    (void)state;
    assert_int_equal(validate_app_update(body, &patch, &fe), ERR_INVALID);
    assert_fields(&fe, fields, 4);
    json_decref(body);
}

static void test_update_name_length(void **state)
{
    char *name = repeat("\xe2\x82\xac", 100);
    size_t textsz = strlen(name) + 32;
    char *text = malloc(textsz);
    json_t *body;
    struct store_app_patch patch;
    struct field_errors fe;

    (void)state;
    assert_non_null(text);
    snprintf(text, textsz, "{\"name\":\"%s\"}", name);
    body = parse(text);
    assert_int_equal(validate_app_update(body, &patch, &fe), ERR_OK);
    assert_string_equal(patch.vals.name, name);
    json_decref(body);
    snprintf(text, textsz, "{\"name\":\"%sx\"}", name);
    body = parse(text);
    assert_int_equal(validate_app_update(body, &patch, &fe), ERR_INVALID);
    json_decref(body);
    free(text);
    free(name);
}

/* ---- validate_link ---- */

static void test_link(void **state)
{
    static const struct {
        const char *body;
        const char *cc;
        const char *want;   /* NULL: invalid */
        const char *reason; /* for invalid */
    } cases[] = {
        {"{\"voip_number\":\"+918000000001\"}", "91", "+918000000001", NULL},
        {"{\"voip_number\":\"8000000001\"}", "91", "+918000000001", NULL},
        {"{\"voip_number\":\"08000000001\"}", "91", "+918000000001", NULL},
        {"{\"voip_number\":\"918000000001\"}", "91", "+918000000001", NULL},
        {"{\"voip_number\":\"+91 80000-00001\"}", "91", "+918000000001", NULL},
        {"{\"voip_number\":\"00918000000001\"}", "91", "+918000000001", NULL},
        {"{\"voip_number\":\"2125550123\"}", "1", "+12125550123", NULL},
        {"{\"voip_number\":\"8000000001\",\"extra\":true}", "91", "+918000000001", NULL},
        {"{}", "91", NULL, "is required"},
        {"{\"number\":\"+918000000001\"}", "91", NULL, "is required"},
        {"{\"voip_number\":null}", "91", NULL, "must be a string"},
        {"{\"voip_number\":918000000001}", "91", NULL, "must be a string"},
        {"{\"voip_number\":[\"+918000000001\"]}", "91", NULL, "must be a string"},
        {"{\"voip_number\":\"\"}", "91", NULL, "must be a valid phone number"},
        {"{\"voip_number\":\"abc\"}", "91", NULL, "must be a valid phone number"},
        {"{\"voip_number\":\"12345\"}", "91", NULL, "must be a valid phone number"},
        {"{\"voip_number\":\"99912345678\"}", "91", NULL, "must be a valid phone number"},
    };
    static const char *const field[] = {"voip_number"};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *body = parse(cases[i].body);
        struct field_errors fe;
        char e164[E164_MAX];
        enum err e = validate_link(body, cases[i].cc, e164, &fe);

        if ((e == ERR_OK) != (cases[i].want != NULL))
            print_error("case %zu: %s\n", i, cases[i].body);
        if (cases[i].want) {
            assert_int_equal(e, ERR_OK);
            assert_string_equal(e164, cases[i].want);
            assert_int_equal(fe.n, 0);
        } else {
            assert_int_equal(e, ERR_INVALID);
            assert_fields(&fe, field, 1);
            assert_string_equal(fe.e[0].reason, cases[i].reason);
        }
        json_decref(body);
    }
}

/* A validator resets fe: errors of an earlier call do not leak into the
 * next one. */
static void test_errors_reset(void **state)
{
    json_t *bad = parse("{}");
    json_t *good = parse("{\"name\":\"n\",\"answer_url\":\"http://a.com\"}");
    struct store_app app;
    struct store_app_patch patch;
    struct field_errors fe;
    char e164[E164_MAX];

    (void)state;
    assert_int_equal(validate_app_create(bad, &app, &fe), ERR_INVALID);
    assert_int_equal(fe.n, 2);
    assert_int_equal(validate_app_create(good, &app, &fe), ERR_OK);
    assert_int_equal(fe.n, 0);
    assert_int_equal(validate_link(bad, "91", e164, &fe), ERR_INVALID);
    assert_int_equal(fe.n, 1);
    assert_int_equal(validate_app_update(bad, &patch, &fe), ERR_OK);
    assert_int_equal(fe.n, 0);
    json_decref(bad);
    json_decref(good);
}

/* ---- validate_call_create (CALLS.md section 2) ---- */

#define CALL_MIN "\"from\":\"8000000001\",\"to\":\"+14155550100\",\"answer_url\":\"https://e.x/a\""

static enum err call_body_of(const char *text, struct call_body *b, struct field_errors *fe)
{
    json_t *v = parse(text);
    enum err e = validate_call_create(v, "91", NULL, 0, b, fe);

    json_decref(v);
    return e;
}

static void test_call_defaults(void **state)
{
    struct call_body b;
    struct field_errors fe;

    (void)state;
    assert_int_equal(call_body_of("{" CALL_MIN "}", &b, &fe), ERR_OK);
    assert_int_equal(fe.n, 0);
    assert_string_equal(b.req.from, "+918000000001");
    assert_string_equal(b.req.to, "+14155550100");
    assert_string_equal(b.req.answer_url, "https://e.x/a");
    assert_string_equal(b.req.answer_method, "POST");
    assert_string_equal(b.req.ring_url, "");
    assert_string_equal(b.req.ring_method, "POST");
    assert_string_equal(b.req.hangup_url, "");
    assert_string_equal(b.req.hangup_method, "POST");
    assert_false(b.hangup_method_set);
    assert_int_equal(b.req.call_time_limit_s, 14400);
    assert_int_equal(b.req.ring_timeout_s, 60);
    assert_string_equal(b.req.app_id, "");
    assert_string_equal(b.req.fallback_url, "");
}

static void test_call_values(void **state)
{
    struct call_body b;
    struct field_errors fe;

    (void)state;
    assert_int_equal(call_body_of("{" CALL_MIN ",\"answer_method\":\"get\",\"ring_url\":"
                                  "\"http://e.x/r\",\"ring_method\":\"Get\",\"hangup_url\":null,"
                                  "\"hangup_method\":\"get\",\"call_time_limit\":86400,"
                                  "\"ring_timeout\":1,\"other\":true}",
                                  &b, &fe),
                     ERR_OK);
    assert_string_equal(b.req.answer_method, "GET");
    assert_string_equal(b.req.ring_url, "http://e.x/r");
    assert_string_equal(b.req.ring_method, "GET");
    assert_string_equal(b.req.hangup_url, "");
    assert_string_equal(b.req.hangup_method, "GET");
    assert_true(b.hangup_method_set);
    assert_int_equal(b.req.call_time_limit_s, 86400);
    assert_int_equal(b.req.ring_timeout_s, 1);
    assert_int_equal(
        call_body_of("{" CALL_MIN ",\"call_time_limit\":1,\"ring_timeout\":600}", &b, &fe), ERR_OK);
    assert_int_equal(b.req.call_time_limit_s, 1);
    assert_int_equal(b.req.ring_timeout_s, 600);
}

static void test_call_errors(void **state)
{
    static const struct {
        const char *body;
        const char *field;
    } cases[] = {
        {"{\"to\":\"+14155550100\",\"answer_url\":\"https://e.x/a\"}", "from"},
        {"{\"from\":null,\"to\":\"+14155550100\",\"answer_url\":\"https://e.x/a\"}", "from"},
        {"{\"from\":\"123\",\"to\":\"+14155550100\",\"answer_url\":\"https://e.x/a\"}", "from"},
        {"{\"from\":\"8000000001\",\"answer_url\":\"https://e.x/a\"}", "to"},
        {"{\"from\":\"8000000001\",\"to\":5,\"answer_url\":\"https://e.x/a\"}", "to"},
        {"{\"from\":\"8000000001\",\"to\":\"+14155550100\"}", "answer_url"},
        {"{\"from\":\"8000000001\",\"to\":\"+14155550100\",\"answer_url\":null}", "answer_url"},
        {"{" CALL_MIN ",\"answer_method\":\"PUT\"}", "answer_method"},
        {"{" CALL_MIN ",\"answer_method\":null}", "answer_method"},
        {"{" CALL_MIN ",\"ring_url\":\"ws://e.x\"}", "ring_url"},
        {"{" CALL_MIN ",\"ring_method\":\"POS\"}", "ring_method"},
        {"{" CALL_MIN ",\"hangup_url\":7}", "hangup_url"},
        {"{" CALL_MIN ",\"hangup_method\":[]}", "hangup_method"},
        {"{" CALL_MIN ",\"call_time_limit\":0}", "call_time_limit"},
        {"{" CALL_MIN ",\"call_time_limit\":86401}", "call_time_limit"},
        {"{" CALL_MIN ",\"call_time_limit\":10.0}", "call_time_limit"},
        {"{" CALL_MIN ",\"call_time_limit\":\"10\"}", "call_time_limit"},
        {"{" CALL_MIN ",\"call_time_limit\":true}", "call_time_limit"},
        {"{" CALL_MIN ",\"call_time_limit\":-9223372036854775808}", "call_time_limit"},
        {"{" CALL_MIN ",\"ring_timeout\":601}", "ring_timeout"},
        {"{" CALL_MIN ",\"ring_timeout\":null}", "ring_timeout"},
        {"{" CALL_MIN ",\"ring_timeout\":4294967356}", "ring_timeout"},
    };
    struct call_body b;
    struct field_errors fe;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (call_body_of(cases[i].body, &b, &fe) != ERR_INVALID)
            print_error("case %zu accepted: %s\n", i, cases[i].body);
        assert_int_equal(call_body_of(cases[i].body, &b, &fe), ERR_INVALID);
        assert_fields(&fe, &cases[i].field, 1);
    }
}

static void test_call_id(void **state)
{
    static const struct {
        const char *in;
        const char *out; /* NULL: not an id */
    } cases[] = {
        {"9b2f0c1e-4d5a-4b6c-8d7e-0f1a2b3c4d5e", "9b2f0c1e-4d5a-4b6c-8d7e-0f1a2b3c4d5e"},
        {"9B2F0C1E-4D5A-4B6C-8D7E-0F1A2B3C4D5E", "9b2f0c1e-4d5a-4b6c-8d7e-0f1a2b3c4d5e"},
        {"sfv_ob_req_a8k3m2x9p1z0", "sfv_ob_req_a8k3m2x9p1z0"},
        {"sfv_ob_req_A8K3M2X9P1Z0", NULL},
        {"sfv_ob_req_a8k3m2x9p1z", NULL},
        {"sfv_ob_req_a8k3m2x9p1z0a", NULL},
        {"sfv_ob_req_a8k3m2x9p1-0", NULL},
        {"9b2f0c1e4d5a4b6c8d7e0f1a2b3c4d5e", NULL},
        {"9b2f0c1e-4d5a-4b6c-8d7e-0f1a2b3c4d5g", NULL},
        {"9b2f0c1e-4d5a-4b6c-8d7e_0f1a2b3c4d5e", NULL},
        {"{9b2f0c1e-4d5a-4b6c-8d7e-0f1a2b3c4d}", NULL},
        {"", NULL},
    };
    char out[CALL_UUID_LEN + 1];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool ok = validate_call_id(cases[i].in, out);

        assert_int_equal(ok, cases[i].out != NULL);
        if (ok)
            assert_string_equal(out, cases[i].out);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_url_table),
        cmocka_unit_test(test_url_reasons),
        cmocka_unit_test(test_url_embedded_nul),
        cmocka_unit_test(test_url_length),
        cmocka_unit_test(test_app_id_format),
        cmocka_unit_test(test_create_minimal_defaults),
        cmocka_unit_test(test_create_full),
        cmocka_unit_test(test_create_methods),
        cmocka_unit_test(test_create_required_fields),
        cmocka_unit_test(test_create_missing_reason),
        cmocka_unit_test(test_create_nulls),
        cmocka_unit_test(test_create_wrong_types),
        cmocka_unit_test(test_create_bad_urls),
        cmocka_unit_test(test_create_name_length),
        cmocka_unit_test(test_create_ignores_status),
        cmocka_unit_test(test_update_partial_bits),
        cmocka_unit_test(test_update_values),
        cmocka_unit_test(test_update_null_removes_url),
        cmocka_unit_test(test_update_null_invalid),
        cmocka_unit_test(test_update_status),
        cmocka_unit_test(test_update_errors_listed),
        cmocka_unit_test(test_update_name_length),
        cmocka_unit_test(test_link),
        cmocka_unit_test(test_errors_reset),
        cmocka_unit_test(test_call_defaults),
        cmocka_unit_test(test_call_values),
        cmocka_unit_test(test_call_errors),
        cmocka_unit_test(test_call_id),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

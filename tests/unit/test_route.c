/* test_route: the path matcher. Both base paths (/sfvopi and
 * /superfone/sfvopi, API.md "Base paths") map to the same routes; literal
 * segments are exact and case-sensitive; only parameters are percent-
 * decoded, one segment at a time, so an encoded slash never creates a
 * segment. The :voip_number rules are those of API.md section 3 (unlink). */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "api/route.h"

#define APP "sfv_app_abc123xyz456"

static enum err match(const char *path, struct route_match *m)
{
    return route_match(path, strlen(path), m);
}

struct route_case {
    const char *path;
    enum route_id id;   /* ROUTE_NONE: ERR_NOT_FOUND */
    const char *app_id; /* checked for matched routes */
};

static void run_cases(const struct route_case *cases, size_t n)
{
    struct route_match m;
    size_t i;

    for (i = 0; i < n; i++) {
        enum err e = match(cases[i].path, &m);

        if (m.id != cases[i].id)
            print_error("case %zu: '%s' gave route %d\n", i, cases[i].path, (int)m.id);
        assert_int_equal(m.id, cases[i].id);
        assert_int_equal(e, cases[i].id == ROUTE_NONE ? ERR_NOT_FOUND : ERR_OK);
        /* The parameters mean nothing when no route matched. */
        if (cases[i].id != ROUTE_NONE && cases[i].app_id)
            assert_string_equal(m.app_id, cases[i].app_id);
    }
}

static void test_every_route_both_bases(void **state)
{
    static const struct route_case cases[] = {
        {"/healthz", ROUTE_HEALTHZ, ""},
        {"/readyz", ROUTE_READYZ, ""},
        {"/metrics", ROUTE_METRICS, ""},
        {"/sfvopi/apps", ROUTE_APPS, ""},
        {"/sfvopi/apps/" APP, ROUTE_APP, APP},
        {"/sfvopi/apps/" APP "/numbers", ROUTE_APP_NUMBERS, APP},
        {"/sfvopi/apps/" APP "/numbers/+918000000001", ROUTE_APP_NUMBER, APP},
        {"/sfvopi/available-numbers", ROUTE_AVAILABLE, ""},
        {"/superfone/sfvopi/apps", ROUTE_APPS, ""},
        {"/superfone/sfvopi/apps/" APP, ROUTE_APP, APP},
        {"/superfone/sfvopi/apps/" APP "/numbers", ROUTE_APP_NUMBERS, APP},
        {"/superfone/sfvopi/apps/" APP "/numbers/%2B918000000001", ROUTE_APP_NUMBER, APP},
        {"/superfone/sfvopi/available-numbers", ROUTE_AVAILABLE, ""},
        {"/sfvopi/calls", ROUTE_CALLS, ""},
        {"/sfvopi/calls/x", ROUTE_CALL, ""},
        {"/superfone/sfvopi/calls", ROUTE_CALLS, ""},
        {"/superfone/sfvopi/calls/x", ROUTE_CALL, ""},
    };

    (void)state;
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_unknown_paths(void **state)
{
    static const struct route_case cases[] = {
        {"", ROUTE_NONE, ""},
        {"/", ROUTE_NONE, ""},
        {"sfvopi/apps", ROUTE_NONE, ""}, /* no leading slash */
        {"/sfvopi", ROUTE_NONE, ""},
        {"/superfone", ROUTE_NONE, ""},
        {"/superfone/sfvopi", ROUTE_NONE, ""},
        {"/superfone/apps", ROUTE_NONE, ""},
        {"/sfvopi/superfone/apps", ROUTE_NONE, ""},
        {"/superfone/superfone/sfvopi/apps", ROUTE_NONE, ""},
        {"/sfvopi/app", ROUTE_NONE, ""},
        {"/sfvopi/appsx", ROUTE_NONE, ""},
        {"/sfvopi/apps/" APP "/number", ROUTE_NONE, ""},
        {"/sfvopi/apps/" APP "/links", ROUTE_NONE, ""},
        {"/sfvopi/numbers", ROUTE_NONE, ""},
        {"/sfvopi/available-numbers/1", ROUTE_NONE, ""},
        {"/sfvopi/available_numbers", ROUTE_NONE, ""},
        {"/sfvopi/healthz", ROUTE_NONE, ""},
        {"/superfone/healthz", ROUTE_NONE, ""},
        {"/healthz/x", ROUTE_NONE, ""},
        {"/readyz/", ROUTE_NONE, ""},
        {"/favicon.ico", ROUTE_NONE, ""},
        {"/sfvopi/calls/a/b", ROUTE_NONE, ""},
        {"/sfvopi/call", ROUTE_NONE, ""},
        {"/sfvopi/calls/", ROUTE_NONE, ""},
        {"/sfvopi/Calls", ROUTE_NONE, ""},
        {"/sfvopi/%61pps", ROUTE_NONE, ""}, /* literals are not decoded */
        {"/%73fvopi/apps", ROUTE_NONE, ""},
        {"/sfvopi/apps?x=1", ROUTE_NONE, ""}, /* the server strips the query */
    };

    (void)state;
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

/* :id of a call is decoded; what cannot be an id of at most 36 bytes
 * without NUL becomes "" (the handler then finds no call). */
static void test_call_id(void **state)
{
    static const struct {
        const char *path;
        const char *id;
    } cases[] = {
        {"/sfvopi/calls/9b2f0c1e-4d5a-4b6c-8d7e-0f1a2b3c4d5e",
         "9b2f0c1e-4d5a-4b6c-8d7e-0f1a2b3c4d5e"},
        {"/sfvopi/calls/sfv_ob_req_a8k3m2x9p1z0", "sfv_ob_req_a8k3m2x9p1z0"},
        {"/sfvopi/calls/sfv%5Fob_req_a8k3m2x9p1z0", "sfv_ob_req_a8k3m2x9p1z0"},
        {"/sfvopi/calls/a%2Fb", "a/b"},
        {"/sfvopi/calls/%00", ""},
        {"/sfvopi/calls/%zz", ""},
        {"/sfvopi/calls/9b2f0c1e-4d5a-4b6c-8d7e-0f1a2b3c4d5ef", ""}, /* 37 bytes */
    };
    struct route_match m;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(match(cases[i].path, &m), ERR_OK);
        assert_int_equal(m.id, ROUTE_CALL);
        assert_string_equal(m.call_id, cases[i].id);
    }
    assert_int_equal(match("/sfvopi/calls", &m), ERR_OK);
    assert_string_equal(m.call_id, "");
}

static void test_case_sensitive(void **state)
{
    static const struct route_case cases[] = {
        {"/SFVOPI/apps", ROUTE_NONE, ""},
        {"/sfvopi/Apps", ROUTE_NONE, ""},
        {"/sfvopi/APPS", ROUTE_NONE, ""},
        {"/Superfone/sfvopi/apps", ROUTE_NONE, ""},
        {"/sfvopi/apps/" APP "/Numbers", ROUTE_NONE, ""},
        {"/sfvopi/Available-Numbers", ROUTE_NONE, ""},
        {"/HEALTHZ", ROUTE_NONE, ""},
        /* Parameters are taken as they are. */
        {"/sfvopi/apps/SFV_APP_ABC", ROUTE_APP, "SFV_APP_ABC"},
    };

    (void)state;
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

/* A trailing slash or an empty segment anywhere is no route. */
static void test_slashes(void **state)
{
    static const struct route_case cases[] = {
        {"/sfvopi/apps/", ROUTE_NONE, ""},
        {"/sfvopi/apps/" APP "/", ROUTE_NONE, ""},
        {"/sfvopi/apps/" APP "/numbers/", ROUTE_NONE, ""},
        {"/sfvopi/apps/" APP "/numbers/+918000000001/", ROUTE_NONE, ""},
        {"/sfvopi/available-numbers/", ROUTE_NONE, ""},
        {"/healthz/", ROUTE_NONE, ""},
        {"//sfvopi/apps", ROUTE_NONE, ""},
        {"/sfvopi//apps", ROUTE_NONE, ""},
        {"/superfone//sfvopi/apps", ROUTE_NONE, ""},
        {"/sfvopi/apps//numbers", ROUTE_NONE, ""}, /* empty app id */
        {"/sfvopi/apps/" APP "//numbers", ROUTE_NONE, ""},
        {"/sfvopi/apps/" APP "/numbers//", ROUTE_NONE, ""},
        {"//", ROUTE_NONE, ""},
    };

    (void)state;
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_too_many_segments(void **state)
{
    static const struct route_case cases[] = {
        {"/sfvopi/apps/" APP "/numbers/+918000000001/x", ROUTE_NONE, ""},
        {"/superfone/sfvopi/apps/" APP "/numbers/+918000000001/x", ROUTE_NONE, ""},
        {"/a/b/c/d/e/f/g/h/i/j", ROUTE_NONE, ""},
        {"/sfvopi/apps/a/b/c/d/e/f/g/h", ROUTE_NONE, ""},
    };

    (void)state;
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

/* Only path[0..len) is looked at. */
static void test_explicit_length(void **state)
{
    static const char path[] = "/sfvopi/apps/" APP "/numbers";
    struct route_match m;

    (void)state;
    assert_int_equal(route_match(path, strlen("/sfvopi/apps"), &m), ERR_OK);
    assert_int_equal(m.id, ROUTE_APPS);
    assert_int_equal(route_match(path, strlen("/sfvopi/apps/" APP), &m), ERR_OK);
    assert_int_equal(m.id, ROUTE_APP);
    assert_string_equal(m.app_id, APP);
    assert_int_equal(route_match(path, strlen("/sfvopi/ap"), &m), ERR_NOT_FOUND);
    assert_int_equal(m.id, ROUTE_NONE);
}

static void test_app_id_decoding(void **state)
{
    static const struct route_case cases[] = {
        {"/sfvopi/apps/" APP, ROUTE_APP, APP},
        {"/sfvopi/apps/sfv_app_abc123xyz45%36", ROUTE_APP, APP},
        {"/sfvopi/apps/%73fv_app_abc123xyz456", ROUTE_APP, APP},
        {"/sfvopi/apps/x", ROUTE_APP, "x"},
        /* 20 bytes decoded is the most an app id can hold. */
        {"/sfvopi/apps/12345678901234567890", ROUTE_APP, "12345678901234567890"},
        {"/sfvopi/apps/%31%32%33%34%35%36%37%38%39%30%31%32%33%34%35%36%37%38%39%30", ROUTE_APP,
         "12345678901234567890"},
        {"/sfvopi/apps/123456789012345678901", ROUTE_APP, ""},
        {"/sfvopi/apps/" APP "x/numbers", ROUTE_APP_NUMBERS, ""},
        /* An encoded slash is data, not a separator. */
        {"/sfvopi/apps/a%2Fb", ROUTE_APP, "a/b"},
        {"/sfvopi/apps/a%2Fnumbers", ROUTE_APP, "a/numbers"},
        {"/sfvopi/apps/x%2Fnumbers%2F1", ROUTE_APP, "x/numbers/1"},
        {"/sfvopi/apps/%2F/numbers", ROUTE_APP_NUMBERS, "/"},
        /* Malformed escapes and NUL make an id that matches no app. */
        {"/sfvopi/apps/%zz", ROUTE_APP, ""},
        {"/sfvopi/apps/abc%2", ROUTE_APP, ""},
        {"/sfvopi/apps/abc%", ROUTE_APP, ""},
        {"/sfvopi/apps/abc%00", ROUTE_APP, ""},
        {"/sfvopi/apps/%00abc", ROUTE_APP, ""},
        {"/sfvopi/apps/" APP "%00/numbers", ROUTE_APP_NUMBERS, ""},
        {"/sfvopi/apps/%zz/numbers/+918000000001", ROUTE_APP_NUMBER, ""},
        {"/sfvopi/apps/+", ROUTE_APP, "+"},
        {"/sfvopi/apps/%20", ROUTE_APP, " "},
        /* So does text that is not UTF-8, escaped or raw; UTF-8 is kept. */
        {"/sfvopi/apps/%C0%80", ROUTE_APP, ""},
        {"/sfvopi/apps/sfv_app_%FF", ROUTE_APP, ""},
        {"/sfvopi/apps/%ED%A0%80", ROUTE_APP, ""},
        {"/sfvopi/apps/%F4%90%80%80/numbers", ROUTE_APP_NUMBERS, ""},
        {"/sfvopi/apps/%C3(/numbers/+918000000001", ROUTE_APP_NUMBER, ""},
        {"/sfvopi/apps/\xff\xfe", ROUTE_APP, ""},
        {"/sfvopi/apps/%C3%A9", ROUTE_APP, "\xc3\xa9"},
        {"/sfvopi/apps/\xf0\x9f\x98\x80", ROUTE_APP, "\xf0\x9f\x98\x80"},
    };

    (void)state;
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

struct number_case {
    const char *seg;
    bool ok;
    const char *want; /* compared over want_len bytes */
    size_t want_len;
};

static void test_number_decoding(void **state)
{
    static const struct number_case cases[] = {
        {"%2B918000000001", true, "+918000000001", 13},
        {"%2b918000000001", true, "+918000000001", 13},
        {"+918000000001", true, "+918000000001", 13},   /* a raw '+' stays */
        {"%20918000000001", true, "+918000000001", 13}, /* a leading space means '+' */
        {"8000000001", true, "8000000001", 10},
        {"%2B91%2080000-00001", true, "+91 80000-00001", 15},
        {"%2B91%20%208000000001", true, "+91  8000000001", 15}, /* only the first is '+' */
        {"%2091%208000000001", true, "+91 8000000001", 14},
        {"%20", true, "+", 1},
        {"%2B%2B918000000001", true, "++918000000001", 14},
        {"abc", true, "abc", 3},
        {"91%0080", true,
         "91\0"
         "80",
         5}, /* NUL kept, with its length */
        {"%2", false, "", 0},
        {"%zz91", false, "", 0},
        {"918000000001%", false, "", 0},
    };
    struct route_match m;
    char path[256];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(path, sizeof(path), "/sfvopi/apps/%s/numbers/%s", APP, cases[i].seg);
        assert_int_equal(match(path, &m), ERR_OK);
        assert_int_equal(m.id, ROUTE_APP_NUMBER);
        assert_string_equal(m.app_id, APP);
        if (m.number_ok != cases[i].ok)
            print_error("case %zu: '%s'\n", i, cases[i].seg);
        assert_int_equal(m.number_ok, cases[i].ok);
        if (!cases[i].ok)
            continue;
        assert_int_equal(m.number_len, cases[i].want_len);
        assert_memory_equal(m.number, cases[i].want, cases[i].want_len);
        assert_int_equal(m.number[m.number_len], '\0');
    }
}

/* The number holds at most E164_INPUT_MAX decoded bytes. */
static void test_number_length_cap(void **state)
{
    struct route_match m;
    char path[512];
    char seg[E164_INPUT_MAX + 2];

    (void)state;
    memset(seg, '9', E164_INPUT_MAX);
    seg[E164_INPUT_MAX] = '\0';
    snprintf(path, sizeof(path), "/sfvopi/apps/%s/numbers/%s", APP, seg);
    assert_int_equal(match(path, &m), ERR_OK);
    assert_true(m.number_ok);
    assert_int_equal(m.number_len, E164_INPUT_MAX);

    seg[E164_INPUT_MAX] = '9';
    seg[E164_INPUT_MAX + 1] = '\0';
    snprintf(path, sizeof(path), "/sfvopi/apps/%s/numbers/%s", APP, seg);
    assert_int_equal(match(path, &m), ERR_OK);
    assert_int_equal(m.id, ROUTE_APP_NUMBER);
    assert_false(m.number_ok);
}

/* Routes without a number leave the number fields cleared, even when the
 * match record held one before. */
static void test_fields_reset_between_matches(void **state)
{
    struct route_match m;

    (void)state;
    assert_int_equal(match("/sfvopi/apps/" APP "/numbers/%2B918000000001", &m), ERR_OK);
    assert_true(m.number_ok);
    assert_int_equal(match("/sfvopi/apps/" APP "/numbers", &m), ERR_OK);
    assert_int_equal(m.id, ROUTE_APP_NUMBERS);
    assert_false(m.number_ok);
    assert_int_equal(m.number_len, 0);
    assert_string_equal(m.number, "");
    assert_int_equal(match("/sfvopi/apps", &m), ERR_OK);
    assert_string_equal(m.app_id, "");
    assert_int_equal(match("/nope", &m), ERR_NOT_FOUND);
    assert_int_equal(m.id, ROUTE_NONE);
    assert_string_equal(m.app_id, "");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_route_both_bases),
        cmocka_unit_test(test_unknown_paths),
        cmocka_unit_test(test_call_id),
        cmocka_unit_test(test_case_sensitive),
        cmocka_unit_test(test_slashes),
        cmocka_unit_test(test_too_many_segments),
        cmocka_unit_test(test_explicit_length),
        cmocka_unit_test(test_app_id_decoding),
        cmocka_unit_test(test_number_decoding),
        cmocka_unit_test(test_number_length_cap),
        cmocka_unit_test(test_fields_reset_between_matches),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

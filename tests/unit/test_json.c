/* test_json: strict body parsing (API.md "Requests": valid UTF-8 JSON, an
 * object, no U+0000, plus no duplicate keys) and the response writer, whose
 * output must be exact and byte-stable. */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <string.h>

#include "json/json.h"

struct parse_case {
    const char *body;
    size_t len; /* 0: strlen(body) */
    bool ok;
};

static void test_parse_object(void **state)
{
    static const struct parse_case cases[] = {
        {"{}", 0, true},
        {" { } ", 0, true},
        {"\n\t{\"a\":1}\r\n", 0, true},
        {"{\"name\":\"x\",\"n\":null,\"b\":true,\"o\":{\"a\":[1,2]}}", 0, true},
        {"{\"a\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}", 0, true},
        {"{\"a\":\"\\u00e9\\ud83d\\ude00\"}", 0, true}, /* escaped pair */
        {"{\"a\":{\"a\":1}}", 0, true},                 /* same key, other object */
        /* Not an object at the top. */
        {"[]", 0, false},
        {"[{}]", 0, false},
        {"\"x\"", 0, false},
        {"1", 0, false},
        {"-1.5", 0, false},
        {"true", 0, false},
        {"null", 0, false},
        /* Not JSON. */
        {"", 0, false},
        {" ", 0, false},
        {"{", 0, false},
        {"}", 0, false},
        {"{\"a\":}", 0, false},
        {"{a:1}", 0, false},
        {"{'a':1}", 0, false},
        {"{\"a\":1,}", 0, false},
        {"{\"a\":01}", 0, false},
        {"{\"a\":NaN}", 0, false},
        {"{\"a\":\"\\x41\"}", 0, false},
        {"{\"a\":\"tab\there\"}", 0, false}, /* raw control character */
        {"{\"a\":1} /* c */", 0, false},
        /* Trailing garbage. */
        {"{}x", 0, false},
        {"{}{}", 0, false},
        {"{} 1", 0, false},
        {"{}\0", 3, false},
        {"{}\0{}", 5, false},
        /* Duplicate keys. */
        {"{\"a\":1,\"a\":1}", 0, false},
        {"{\"a\":1,\"b\":2,\"a\":3}", 0, false},
        {"{\"o\":{\"x\":1,\"x\":2}}", 0, false},
        {"{\"a\":1,\"\\u0061\":2}", 0, false}, /* same key, escaped */
        /* Invalid UTF-8. */
        {"{\"a\":\"\xff\"}", 0, false},
        {"{\"a\":\"\xc3\"}", 0, false},             /* truncated sequence */
        {"{\"a\":\"\xc0\x80\"}", 0, false},         /* overlong NUL */
        {"{\"a\":\"\xe0\x80\xaf\"}", 0, false},     /* overlong '/' */
        {"{\"a\":\"\xed\xa0\x80\"}", 0, false},     /* UTF-16 surrogate */
        {"{\"a\":\"\xf4\x90\x80\x80\"}", 0, false}, /* past U+10FFFF */
        {"{\"\xff\":1}", 0, false},                 /* in a key */
        {"{\"a\":\"\\ud800\"}", 0, false},          /* lone high surrogate */
        {"{\"a\":\"\\udc00\"}", 0, false},          /* lone low surrogate */
        /* U+0000. */
        {"{\"a\":\"\\u0000\"}", 0, false},
        {"{\"a\":\"x\\u0000y\"}", 0, false},
        {"{\"\\u0000\":1}", 0, false},
        {"{\"a\":\"x\0y\"}", 9, false},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        json_t *v = (json_t *)0x1;
        size_t len = cases[i].len ? cases[i].len : strlen(cases[i].body);
        enum err e = js_parse_object(cases[i].body, len, &v);

        if ((e == ERR_OK) != cases[i].ok)
            print_error("case %zu: '%s' gave %d\n", i, cases[i].body, (int)e);
        if (cases[i].ok) {
            assert_int_equal(e, ERR_OK);
            assert_true(json_is_object(v));
            json_decref(v);
        } else {
            assert_int_equal(e, ERR_INVALID);
            assert_ptr_equal(v, (json_t *)0x1); /* untouched */
        }
    }
}

static void test_parse_values(void **state)
{
    json_t *v = NULL;
    const char body[] = "{\"name\":\"caf\xc3\xa9\",\"n\":-3,\"x\":null}garbage";

    (void)state;
    /* Only len bytes are read. */
    assert_int_equal(js_parse_object(body, strlen(body) - strlen("garbage"), &v), ERR_OK);
    assert_string_equal(json_string_value(json_object_get(v, "name")), "caf\xc3\xa9");
    assert_true(json_integer_value(json_object_get(v, "n")) == -3);
    assert_true(json_is_null(json_object_get(v, "x")));
    assert_int_equal(json_object_size(v), 3);
    json_decref(v);

    assert_int_equal(js_parse_object(NULL, 0, &v), ERR_INVALID);
}

static void test_utf8_count(void **state)
{
    static const struct {
        const char *s;
        size_t n;
    } cases[] = {
        {"", 0},
        {"a", 1},
        {"hello", 5},
        {"caf\xc3\xa9", 4},
        {"\xe2\x82\xac", 1},
        {"\xf0\x9f\x98\x80", 1},
        {"a\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80z", 5},
        {"\xe0\xa4\xa8\xe0\xa4\xae\xe0\xa4\xb8\xe0\xa5\x8d\xe0\xa4\xa4\xe0\xa5\x87", 6},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++)
        assert_int_equal(js_utf8_count(cases[i].s, strlen(cases[i].s)), cases[i].n);
    /* Only len bytes count. */
    assert_int_equal(js_utf8_count("abc\xc3\xa9", 3), 3);
}

/* Writes with fn into a fresh buffer and checks the exact output. */
static void check_str(const char *in, const char *want)
{
    struct buf b;
    struct jw w;

    buf_init(&b, 1024);
    jw_init(&w, &b);
    jw_str(&w, in);
    assert_int_equal(jw_end(&w), ERR_OK);
    if (strcmp(b.data, want) != 0)
        print_error("in '%s': got %s want %s\n", in, b.data, want);
    assert_string_equal(b.data, want);
    buf_release(&b);
}

static void test_str_escaping(void **state)
{
    (void)state;
    check_str("", "\"\"");
    check_str("plain text", "\"plain text\"");
    check_str("say \"hi\"", "\"say \\\"hi\\\"\"");
    check_str("a\\b", "\"a\\\\b\"");
    check_str("\\", "\"\\\\\"");
    check_str("\"", "\"\\\"\"");
    check_str("line\nnext", "\"line\\nnext\"");
    check_str("\r\t\b\f", "\"\\r\\t\\b\\f\"");
    check_str("\x01", "\"\\u0001\"");
    check_str("a\x1f"
              "b",
              "\"a\\u001fb\"");
    check_str("\x0b\x0e\x10", "\"\\u000b\\u000e\\u0010\"");
    check_str("\x7f", "\"\x7f\""); /* DEL needs no escape */
    check_str("/", "\"/\"");       /* nor does '/' */
    check_str("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
              "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\""); /* UTF-8 as is */
    check_str("<script>&'", "\"<script>&'\"");
    check_str("+918000000001", "\"+918000000001\""); /* no escape at all */
    check_str("tail\"", "\"tail\\\"\"");             /* the escape last */
}

static void test_writers(void **state)
{
    struct buf b;
    struct jw w;

    (void)state;
    buf_init(&b, 4096);
    jw_init(&w, &b);
    jw_raw(&w, "{\"a\":");
    jw_str_or_null(&w, "");
    jw_raw(&w, ",\"b\":");
    jw_str_or_null(&w, "x\"y");
    jw_raw(&w, ",\"c\":");
    jw_i64(&w, 0);
    jw_raw(&w, ",\"d\":");
    jw_i64_or_null(&w, 0);
    jw_raw(&w, ",\"e\":");
    jw_i64_or_null(&w, -5);
    jw_raw(&w, ",\"f\":");
    jw_i64(&w, INT64_MIN);
    jw_raw(&w, ",\"g\":");
    jw_i64(&w, INT64_MAX);
    jw_raw(&w, ",\"h\":");
    jw_time_or_null(&w, 0);
    jw_raw(&w, ",\"i\":");
    jw_time_or_null(&w, 1770028200000LL);
    jw_raw(&w, ",\"j\":");
    jw_time_or_null(&w, -1);
    jw_raw(&w, "}");
    assert_int_equal(jw_end(&w), ERR_OK);
    assert_string_equal(b.data,
                        "{\"a\":null,\"b\":\"x\\\"y\",\"c\":0,\"d\":null,\"e\":-5,"
                        "\"f\":-9223372036854775808,\"g\":9223372036854775807,\"h\":null,"
                        "\"i\":\"2026-02-02T10:30:00.000Z\",\"j\":\"1969-12-31T23:59:59.999Z\"}");
    buf_release(&b);
}

/* The writer's output parses back to the same values. */
static void test_round_trip(void **state)
{
    static const char *const strs[] = {
        "", "a\"b\\c", "\x01\x02\x1f", "tab\tnl\ncr\r", "\xe2\x82\xac\xf0\x9f\x98\x80", "\x7f"};
    struct buf b;
    struct jw w;
    json_t *v;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(strs) / sizeof(strs[0]); i++) {
        buf_init(&b, 256);
        jw_init(&w, &b);
        jw_raw(&w, "{\"s\":");
        jw_str(&w, strs[i]);
        jw_raw(&w, "}");
        assert_int_equal(jw_end(&w), ERR_OK);
        assert_int_equal(js_parse_object(b.data, b.len, &v), ERR_OK);
        assert_string_equal(json_string_value(json_object_get(v, "s")), strs[i]);
        json_decref(v);
        buf_release(&b);
    }
}

/* After the first failure nothing more is written, and jw_end says so. */
static void test_sticky_error(void **state)
{
    struct buf b;
    struct jw w;

    (void)state;
    buf_init(&b, 8);
    jw_init(&w, &b);
    jw_raw(&w, "{\"a\":");
    assert_int_equal(jw_end(&w), ERR_OK);
    jw_str(&w, "long string");
    assert_int_equal(jw_end(&w), ERR_TOO_LARGE);
    assert_string_equal(b.data, "{\"a\":\""); /* the opening quote fit, the text did not */
    jw_raw(&w, "}");                          /* would fit, but the error is sticky */
    jw_i64(&w, 1);
    jw_str_or_null(&w, "");
    jw_i64_or_null(&w, 0);
    jw_time_or_null(&w, 0);
    assert_int_equal(jw_end(&w), ERR_TOO_LARGE);
    assert_string_equal(b.data, "{\"a\":\"");
    assert_int_equal(b.len, 6);
    buf_release(&b);

    /* A number that does not fit. */
    buf_init(&b, 4);
    jw_init(&w, &b);
    jw_i64(&w, 12345);
    assert_int_equal(jw_end(&w), ERR_TOO_LARGE);
    jw_raw(&w, "1");
    assert_int_equal(b.len, 0);
    buf_release(&b);

    /* A timestamp that does not fit. */
    buf_init(&b, 25);
    jw_init(&w, &b);
    jw_time_or_null(&w, 1);
    assert_int_equal(jw_end(&w), ERR_TOO_LARGE);
    assert_int_equal(b.len, 0);
    buf_release(&b);

    /* A string with nothing to escape, into a buffer already allocated (the
     * writer's one-step copy): exactly enough room, then one byte short. */
    buf_init(&b, 11);
    jw_init(&w, &b);
    jw_raw(&w, "[");
    jw_str(&w, "abcdefgh");
    assert_int_equal(jw_end(&w), ERR_OK);
    assert_string_equal(b.data, "[\"abcdefgh\"");
    buf_release(&b);
    buf_init(&b, 10);
    jw_init(&w, &b);
    jw_raw(&w, "[");
    jw_str(&w, "abcdefgh");
    assert_int_equal(jw_end(&w), ERR_TOO_LARGE);
    assert_string_equal(b.data, "[\"abcdefgh"); /* the closing quote did not fit */
    buf_release(&b);

    /* Exactly enough room. */
    buf_init(&b, 26);
    jw_init(&w, &b);
    jw_time_or_null(&w, 1);
    assert_int_equal(jw_end(&w), ERR_OK);
    assert_string_equal(b.data, "\"1970-01-01T00:00:00.001Z\"");
    buf_release(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parse_object), cmocka_unit_test(test_parse_values),
        cmocka_unit_test(test_utf8_count),   cmocka_unit_test(test_str_escaping),
        cmocka_unit_test(test_writers),      cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_sticky_error),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

/* test_jcs: RFC 8785 canonical JSON against the RFC's own examples (the
 * sample of section 3.2.3, the sorting sample, the number table of
 * appendix B) and the equalities an Idempotency-Key relies on: member
 * order, whitespace, escapes and number spelling make no difference. */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "json/jcs.h"

/* The canonical text of a JSON text (any value at the top). */
static char *canon(const char *text, enum err *e)
{
    json_error_t jerr;
    json_t *v = json_loads(text, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    struct buf b;
    char *out;

    assert_non_null(v);
    buf_init(&b, 1 << 20);
    *e = jcs_write(v, &b);
    json_decref(v);
    out = buf_take(&b);
    assert_non_null(out);
    return out;
}

static void expect(const char *in, const char *want)
{
    enum err e;
    char *got = canon(in, &e);

    assert_int_equal(e, ERR_OK);
    assert_string_equal(got, want);
    free(got);
}

static void test_rfc_sample(void **state)
{
    (void)state;
    /* RFC 8785 section 3.2.3. */
    expect(
        "{\n  \"numbers\": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],\n"
        "  \"string\": \"\\u20ac$\\u000F\\u000aA'\\u0042\\u0022\\u005c\\\\\\\"\\/\",\n"
        "  \"literals\": [null, true, false]\n}",
        "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,"
        "1e-27],\"string\":\"\xe2\x82\xac$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}");
}

static void test_rfc_sorting(void **state)
{
    (void)state;
    /* RFC 8785 section 3.2.3, "Sorting of Object Properties": UTF-16
     * code units put U+1F600 (D83D DE00) before U+FB33. */
    expect("{\"\\u20ac\":\"Euro Sign\",\"\\r\":\"Carriage Return\",\"\\ufb33\":\"Dalet\","
           "\"1\":\"One\",\"\\ud83d\\ude00\":\"Emoji\",\"\\u0080\":\"Control\","
           "\"\\u00f6\":\"o\"}",
           "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\xc2\x80\":\"Control\","
           "\"\xc3\xb6\":\"o\",\"\xe2\x82\xac\":\"Euro Sign\",\"\xf0\x9f\x98\x80\":\"Emoji\","
           "\"\xef\xac\xb3\":\"Dalet\"}");
    /* A prefix sorts first; nested objects are sorted too. */
    expect("{\"ab\":1,\"a\":{\"z\":[],\"y\":{}}}", "{\"a\":{\"y\":{},\"z\":[]},\"ab\":1}");
}

struct num_case {
    uint64_t bits;
    const char *want;
};

static void test_rfc_numbers(void **state)
{
    /* RFC 8785 appendix B: IEEE 754 bit patterns and their text. */
    static const struct num_case cases[] = {
        {0x0000000000000000ULL, "0"},
        {0x8000000000000000ULL, "0"},
        {0x0000000000000001ULL, "5e-324"},
        {0x8000000000000001ULL, "-5e-324"},
        {0x7fefffffffffffffULL, "1.7976931348623157e+308"},
        {0xffefffffffffffffULL, "-1.7976931348623157e+308"},
        {0x4340000000000000ULL, "9007199254740992"},
        {0xc340000000000000ULL, "-9007199254740992"},
        {0x4430000000000000ULL, "295147905179352830000"},
        {0x44b52d02c7e14af5ULL, "9.999999999999997e+22"},
        {0x44b52d02c7e14af6ULL, "1e+23"},
        {0x44b52d02c7e14af7ULL, "1.0000000000000001e+23"},
        {0x444b1ae4d6e2ef4eULL, "999999999999999700000"},
        {0x444b1ae4d6e2ef4fULL, "999999999999999900000"},
        {0x444b1ae4d6e2ef50ULL, "1e+21"},
        {0x3eb0c6f7a0b5ed8cULL, "9.999999999999997e-7"},
        {0x3eb0c6f7a0b5ed8dULL, "0.000001"},
        {0x41b3de4355555553ULL, "333333333.3333332"},
        {0x41b3de4355555554ULL, "333333333.33333325"},
        {0x41b3de4355555555ULL, "333333333.3333333"},
        {0x41b3de4355555556ULL, "333333333.3333334"},
        {0x41b3de4355555557ULL, "333333333.33333343"},
        {0xbecbf647612f3696ULL, "-0.0000033333333333333333"},
        {0x43143ff3c1cb0959ULL, "1424953923781206.2"},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        struct buf b;
        double d;

        memcpy(&d, &cases[i].bits, sizeof(d));
        buf_init(&b, 64);
        assert_int_equal(jcs_number(d, &b), ERR_OK);
        if (strcmp(b.data, cases[i].want) != 0)
            fail_msg("bits %016llx: got %s, want %s", (unsigned long long)cases[i].bits, b.data,
                     cases[i].want);
        buf_release(&b);
    }
}

static void test_number_spellings(void **state)
{
    (void)state;
    expect("[1, 1.0, 1e0, 10e-1, 100, 1e2, 1E+2, -0, -0.0, 0.1, 1e-7, 123456789012]",
           "[1,1,1,1,100,100,100,0,0,0.1,1e-7,123456789012]");
    /* jansson reads integers as integers: the same double, the same text. */
    expect("[10000000000000001, 9007199254740993]", "[10000000000000000,9007199254740992]");
}

static void test_not_writable(void **state)
{
    struct buf b;
    json_t *v;

    (void)state;
    buf_init(&b, 64);
    assert_int_equal(jcs_number(0.0 / 0.0, &b), ERR_INVALID);
    assert_int_equal(jcs_number(1.0 / 0.0, &b), ERR_INVALID);
    buf_release(&b);
    /* Past the buffer's cap: ERR_TOO_LARGE, not a cut text. */
    v = json_pack("{s:s}", "a", "0123456789");
    buf_init(&b, 8);
    assert_int_equal(jcs_write(v, &b), ERR_TOO_LARGE);
    buf_release(&b);
    json_decref(v);
}

static void test_equal_bodies(void **state)
{
    enum err e;
    char *a, *b;

    (void)state;
    a = canon("{\"to\":\"+14155550123\",\"from\":\"+14155550100\",\"ring_timeout\":30}", &e);
    assert_int_equal(e, ERR_OK);
    b = canon("{ \"ring_timeout\" : 30.0,\n\t\"from\":\"\\u002b14155550100\", "
              "\"to\":\"+14155550123\" }",
              &e);
    assert_int_equal(e, ERR_OK);
    assert_string_equal(a, b);
    free(a);
    free(b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_rfc_sample),   cmocka_unit_test(test_rfc_sorting),
        cmocka_unit_test(test_rfc_numbers),  cmocka_unit_test(test_number_spellings),
        cmocka_unit_test(test_not_writable), cmocka_unit_test(test_equal_bodies),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

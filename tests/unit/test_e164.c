/* test_e164: phone-number normalisation against every rule of API.md
 * section 1 ("Phone numbers (E.164 normalisation)"). Tables list the input,
 * its length when it holds a NUL, the default country code and the exact
 * expected output (NULL: ERR_INVALID). */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/e164.h"

struct norm_case {
    const char *in;
    size_t len; /* 0: strlen(in) */
    const char *cc;
    const char *want; /* NULL: ERR_INVALID */
};

/* Runs one case; the output buffer is pre-filled so that "written only on
 * success" is checked too. */
static void check_case(const struct norm_case *c, size_t idx)
{
    char out[E164_MAX];
    size_t len = c->len ? c->len : strlen(c->in);
    enum err e;

    memset(out, 'X', sizeof(out));
    e = e164_normalize(c->in, len, c->cc, out);
    if (c->want) {
        if (e != ERR_OK || strcmp(out, c->want) != 0)
            print_error("case %zu: in='%s' cc=%s want %s, got err=%d out=%.*s\n", idx, c->in, c->cc,
                        c->want, (int)e, (int)sizeof(out), out);
        assert_int_equal(e, ERR_OK);
        assert_string_equal(out, c->want);
    } else {
        if (e != ERR_INVALID)
            print_error("case %zu: in='%s' cc=%s want invalid, got err=%d\n", idx, c->in, c->cc,
                        (int)e);
        assert_int_equal(e, ERR_INVALID);
        assert_int_equal(out[0], 'X'); /* untouched */
    }
}

static void run_cases(const struct norm_case *cases, size_t n)
{
    size_t i;

    for (i = 0; i < n; i++)
        check_case(&cases[i], i);
}

/* The five examples of API.md all mean +918000000001. */
static void test_spec_examples(void **state)
{
    static const struct norm_case cases[] = {
        {"8000000001", 0, "91", "+918000000001"},     {"08000000001", 0, "91", "+918000000001"},
        {"918000000001", 0, "91", "+918000000001"},   {"+91 80000-00001", 0, "91", "+918000000001"},
        {"00918000000001", 0, "91", "+918000000001"},
    };

    (void)state;
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

/* Rule 1: ASCII space, tab, '-', '.', '(' and ')' are removed anywhere. */
static void test_separators(void **state)
{
    static const struct norm_case cases[] = {
        {"+91 8000000001", 0, "91", "+918000000001"},
        {"+91\t8000000001", 0, "91", "+918000000001"},
        {"+91-800-000-0001", 0, "91", "+918000000001"},
        {"+91.800.000.0001", 0, "91", "+918000000001"},
        {"+91 (800) 000-0001", 0, "91", "+918000000001"},
        {"(+91)8000000001", 0, "91", "+918000000001"},
        {" 8000000001 ", 0, "91", "+918000000001"},
        {"80-00-00-00-01", 0, "91", "+918000000001"},
        {"0 8000000001", 0, "91", "+918000000001"},
        {"0 0 9 1 8 0 0 0 0 0 0 0 0 1", 0, "91", "+918000000001"},
        {" \t-.()8000000001()-.\t ", 0, "91", "+918000000001"},
        /* Other whitespace and punctuation is not a separator. */
        {"+91\n8000000001", 0, "91", NULL},
        {"+91\r8000000001", 0, "91", NULL},
        {"+91/8000000001", 0, "91", NULL},
        {"+91_8000000001", 0, "91", NULL},
        {"+91,8000000001", 0, "91", NULL},
        {"+91\xc2\xa0"
         "8000000001",
         0, "91", NULL}, /* NO-BREAK SPACE */
    };

    (void)state;
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

/* Rule 2: a leading 00 becomes +, after separators are gone. */
static void test_leading_00(void **state)
{
    static const struct norm_case cases[] = {
        {"00918000000001", 0, "91", "+918000000001"},
        {"0044 20 7946 0000", 0, "91", "+442079460000"},
        {"001 212 555 0123", 0, "91", "+12125550123"},
        {"00 91 8000000001", 0, "91", "+918000000001"},
        {"0 0918000000001", 0, "91", "+918000000001"},
        {"00", 0, "91", NULL},
        {"000918000000001", 0, "91", NULL}, /* +0... */
        {"00+918000000001", 0, "91", NULL},
        {"0012345", 0, "91", NULL}, /* +12345: too short */
    };

    (void)state;
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

/* Rule 3, national forms: 10 digits, or 0 and 10 digits, get the default
 * country code. */
static void test_national_forms(void **state)
{
    static const struct norm_case cases[] = {
        {"9876543210", 0, "91", "+919876543210"},
        {"09876543210", 0, "91", "+919876543210"},
        {"1000000001", 0, "91", "+911000000001"},
        {"0000000001", 0, "91", NULL}, /* rule 2 first: "+00000001" */
        {"2125550123", 0, "1", "+12125550123"},
        {"02125550123", 0, "1", "+12125550123"},
        {"2079460000", 0, "44", "+442079460000"},
        {"02079460000", 0, "44", "+442079460000"},
        {"2079460000", 0, "880", "+8802079460000"},
        /* 9 digits: neither national nor international. */
        {"800000001", 0, "91", NULL},
        {"0800000001", 0, "91", "+910800000001"}, /* 10 digits starting with 0 */
        /* 0 + 11 digits is not a national form. */
        {"080000000011", 0, "91", NULL},
        /* No usable default code. */
        {"8000000001", 0, "", NULL},
        {"8000000001", 0, NULL, NULL},
        {"8000000001", 0, "0", NULL},
    };

    (void)state;
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

/* Rule 3, bare international forms: 11 to 15 digits starting with an
 * assigned country code get a '+'. */
static void test_bare_international(void **state)
{
    static const struct norm_case cases[] = {
        {"12125550123", 0, "91", "+12125550123"},         /* 11 digits, cc 1 */
        {"442079460000", 0, "91", "+442079460000"},       /* 12, cc 44 */
        {"79161234567", 0, "91", "+79161234567"},         /* cc 7 */
        {"8801712345678", 0, "91", "+8801712345678"},     /* cc 880 */
        {"918000000001", 0, "1", "+918000000001"},        /* default cc irrelevant */
        {"123456789012345", 0, "91", "+123456789012345"}, /* 15 digits */
        {"1234567890123456", 0, "91", NULL},              /* 16 digits */
        /* Unassigned country codes. */
        {"99912345678", 0, "91", NULL},           /* 999 */
        {"28123456789", 0, "91", NULL},           /* 28x */
        {"80012345678", 0, "91", "+80012345678"}, /* 800 is assigned */
        {"38812345678", 0, "91", NULL},           /* 388: withdrawn */
        {"42212345678", 0, "91", NULL},           /* 422: spare */
        {"21012345678", 0, "91", NULL},           /* 210: spare */
        {"89912345678", 0, "91", NULL},           /* 89x: spare */
        {"01234567890123", 0, "91", NULL},        /* leading 0, not 11 digits */
    };

    (void)state;
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

/* Rule 4: the result must match ^\+[1-9][0-9]{7,14}$. */
static void test_final_regex(void **state)
{
    static const struct norm_case cases[] = {
        {"+12345678", 0, "91", "+12345678"},               /* 8 digits: shortest */
        {"+1234567", 0, "91", NULL},                       /* 7 digits */
        {"+123456789012345", 0, "91", "+123456789012345"}, /* 15 digits: longest */
        {"+1234567890123456", 0, "91", NULL},              /* 16 digits */
        {"+01234567890", 0, "91", NULL},                   /* +0 */
        {"+", 0, "91", NULL},
        {"+ ", 0, "91", NULL},
        {"++918000000001", 0, "91", NULL},
        {"+91+8000000001", 0, "91", NULL},
        {"91+8000000001", 0, "91", NULL},
        {"+918000000001+", 0, "91", NULL},
        {"+9180000000a1", 0, "91", NULL},
        {"+99912345678", 0, "91", "+99912345678"}, /* with '+', only the regex applies */
    };

    (void)state;
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_invalid_inputs(void **state)
{
    static const struct norm_case cases[] = {
        {"", 0, "91", NULL},
        {" ", 0, "91", NULL},
        {"---", 0, "91", NULL},
        {"()", 0, "91", NULL},
        {"abcdefghij", 0, "91", NULL},
        {"800000000a", 0, "91", NULL},
        {"8000000001x", 0, "91", NULL},
        {"one", 0, "91", NULL},
        {"0", 0, "91", NULL},
        {"1", 0, "91", NULL},
        {"12345", 0, "91", NULL},
        {"+918000000001 ext 5", 0, "91", NULL},
        {"８０００００００００１", 0, "91", NULL}, /* full-width digits */
        {"\xff\xfe", 0, "91", NULL},
    };

    (void)state;
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

/* The input is in[0..len): NUL bytes are data, and bytes past len are not
 * read. */
static void test_explicit_length(void **state)
{
    static const struct norm_case cases[] = {
        {"8000000001\0"
         "5",
         12, "91", NULL},
        {"+91800\0"
         "0000001",
         14, "91", NULL},
        {"\0"
         "8000000001",
         11, "91", NULL},
        {"8000000001\0", 11, "91", NULL},
        {"80000000019999", 10, "91", "+918000000001"}, /* only the first 10 bytes */
        {"+9180000000012345", 13, "91", "+918000000001"},
    };

    (void)state;
    run_cases(cases, sizeof(cases) / sizeof(cases[0]));
}

/* Inputs over E164_INPUT_MAX (64) bytes are rejected even when the
 * separators would leave a valid number. */
static void test_input_length_cap(void **state)
{
    char in[E164_INPUT_MAX + 2];
    char out[E164_MAX];
    size_t pad;

    (void)state;
    /* "+918000000001" (13 bytes) padded with spaces to exactly 64. */
    pad = E164_INPUT_MAX - 13;
    memset(in, ' ', pad);
    memcpy(in + pad, "+918000000001", 13);
    in[E164_INPUT_MAX] = '\0';
    assert_int_equal(e164_normalize(in, E164_INPUT_MAX, "91", out), ERR_OK);
    assert_string_equal(out, "+918000000001");

    /* 65 bytes. */
    memset(in, ' ', pad + 1);
    memcpy(in + pad + 1, "+918000000001", 13);
    in[E164_INPUT_MAX + 1] = '\0';
    assert_int_equal(e164_normalize(in, E164_INPUT_MAX + 1, "91", out), ERR_INVALID);
}

static void test_cc_assigned(void **state)
{
    static const struct {
        const char *cc;
        bool want;
    } cases[] = {
        {"1", true},    {"7", true},    {"20", true},  {"44", true},   {"91", true},
        {"880", true},  {"998", true},  {"800", true}, {"2", false},   {"9", false},
        {"0", false},   {"00", false},  {"28", false}, {"999", false}, {"388", false},
        {"422", false}, {"210", false}, {"", false},   {"910", false}, {"4", false},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (e164_cc_assigned(cases[i].cc, strlen(cases[i].cc)) != cases[i].want)
            print_error("cc '%s'\n", cases[i].cc);
        assert_int_equal(e164_cc_assigned(cases[i].cc, strlen(cases[i].cc)), cases[i].want);
    }
    /* Only n bytes are compared: "91" as the first 2 bytes of "912". */
    assert_true(e164_cc_assigned("912", 2));
    assert_false(e164_cc_assigned("912", 3));
}

static void test_default_cc_valid(void **state)
{
    static const struct {
        const char *cc;
        bool want;
    } cases[] = {
        {"91", true},  {"1", true},    {"44", true},   {"880", true},   {"7", true},
        {"", false},   {"0", false},   {"999", false}, {"9100", false}, {"+91", false},
        {"9a", false}, {" 91", false}, {"91 ", false}, {"-1", false},   {"28", false},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (e164_default_cc_valid(cases[i].cc) != cases[i].want)
            print_error("default cc '%s'\n", cases[i].cc);
        assert_int_equal(e164_default_cc_valid(cases[i].cc), cases[i].want);
    }
    assert_false(e164_default_cc_valid(NULL));
}

/* Normalising an already-normalised number gives it back unchanged. */
static void test_idempotent(void **state)
{
    static const char *const nums[] = {"+918000000001",  "+12125550123", "+442079460000",
                                       "+8801712345678", "+12345678",    "+123456789012345"};
    char out[E164_MAX], again[E164_MAX];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(nums) / sizeof(nums[0]); i++) {
        assert_int_equal(e164_normalize(nums[i], strlen(nums[i]), "91", out), ERR_OK);
        assert_string_equal(out, nums[i]);
        assert_int_equal(e164_normalize(out, strlen(out), "44", again), ERR_OK);
        assert_string_equal(again, nums[i]);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_examples),      cmocka_unit_test(test_separators),
        cmocka_unit_test(test_leading_00),         cmocka_unit_test(test_national_forms),
        cmocka_unit_test(test_bare_international), cmocka_unit_test(test_final_regex),
        cmocka_unit_test(test_invalid_inputs),     cmocka_unit_test(test_explicit_length),
        cmocka_unit_test(test_input_length_cap),   cmocka_unit_test(test_cc_assigned),
        cmocka_unit_test(test_default_cc_valid),   cmocka_unit_test(test_idempotent),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

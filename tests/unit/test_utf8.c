/* test_utf8: the strict UTF-8 rule (RFC 3629) on the boundary cases of
 * Markus Kuhn's decoder test (overlong forms, surrogates, the largest code
 * points, truncated and stray sequences), and escaping with cuts that never
 * split a character or an escape. */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "core/utf8.h"

struct valid_case {
    const char *s;
    size_t len; /* 0: strlen(s) */
    bool valid;
};

static const struct valid_case valid_cases[] = {
    /* Well-formed, 1 to 4 bytes, at the edges of each length. */
    {"", 0, true},
    {"plain ASCII", 0, true},
    {"\x7f", 0, true},
    {"\xc2\x80", 0, true},         /* U+0080 */
    {"\xc3\xa9", 0, true},         /* U+00E9 */
    {"\xdf\xbf", 0, true},         /* U+07FF */
    {"\xe0\xa0\x80", 0, true},     /* U+0800 */
    {"\xe2\x82\xac", 0, true},     /* U+20AC */
    {"\xed\x9f\xbf", 0, true},     /* U+D7FF, just below the surrogates */
    {"\xee\x80\x80", 0, true},     /* U+E000, just above them */
    {"\xef\xbf\xbd", 0, true},     /* U+FFFD */
    {"\xef\xbf\xbf", 0, true},     /* U+FFFF (a noncharacter, still well-formed) */
    {"\xf0\x90\x80\x80", 0, true}, /* U+10000 */
    {"\xf0\x9f\x98\x80", 0, true}, /* U+1F600 */
    {"\xf4\x8f\xbf\xbf", 0, true}, /* U+10FFFF, the last code point */
    {"a\0b", 3, true},             /* U+0000 is a character */
    {"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 0, true}, /* Kuhn's "kosme" */
    /* Overlong forms. */
    {"\xc0\x80", 0, false},
    {"\xc0\xaf", 0, false},
    {"\xc1\xbf", 0, false},
    {"\xe0\x80\x80", 0, false},
    {"\xe0\x80\xaf", 0, false},
    {"\xe0\x9f\xbf", 0, false},
    {"\xf0\x80\x80\x80", 0, false},
    {"\xf0\x80\x80\xaf", 0, false},
    {"\xf0\x8f\xbf\xbf", 0, false},
    {"\xf8\x80\x80\x80\xaf", 0, false},
    {"\xfc\x80\x80\x80\x80\xaf", 0, false},
    /* UTF-16 surrogates, alone and paired. */
    {"\xed\xa0\x80", 0, false},
    {"\xed\xad\xbf", 0, false},
    {"\xed\xb0\x80", 0, false},
    {"\xed\xbf\xbf", 0, false},
    {"\xed\xa0\x80\xed\xb0\x80", 0, false},
    /* Beyond U+10FFFF. */
    {"\xf4\x90\x80\x80", 0, false},
    {"\xf5\x80\x80\x80", 0, false},
    {"\xf7\xbf\xbf\xbf", 0, false},
    /* Bytes that never appear. */
    {"\xfe", 0, false},
    {"\xff", 0, false},
    {"\xfe\xfe\xff\xff", 0, false},
    /* Stray continuation bytes. */
    {"\x80", 0, false},
    {"\xbf", 0, false},
    {"a\x80"
     "b",
     0, false},
    /* Truncated sequences, at the end and followed by more text. */
    {"\xc3", 0, false},
    {"\xe2\x82", 0, false},
    {"\xf0\x9f\x98", 0, false},
    {"ab\xe2\x82", 0, false},
    {"\xc3(", 0, false},
    {"\xe2\x28\xa1", 0, false},
    {"\xf0\x9f\x98 ", 0, false},
    {"\xc3\0", 2, false}, /* a NUL never continues a sequence */
    /* Latin-1 text is not UTF-8. */
    {"caf\xe9", 0, false},
};

static void test_valid_table(void **state)
{
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(valid_cases) / sizeof(valid_cases[0]); i++) {
        const struct valid_case *c = &valid_cases[i];
        size_t len = c->len ? c->len : strlen(c->s);

        if (utf8_valid(c->s, len) != c->valid)
            print_error("case %zu: want %s\n", i, c->valid ? "valid" : "invalid");
        assert_int_equal(utf8_valid(c->s, len), c->valid);
    }
}

/* The length bounds what is read: a valid prefix of an invalid string is
 * valid, and NULL is fine for nothing. */
static void test_valid_length_bounds(void **state)
{
    (void)state;
    assert_true(utf8_valid(NULL, 0));
    assert_true(utf8_valid("ab\xff", 2));
    assert_false(utf8_valid("ab\xff", 3));
    assert_false(utf8_valid("\xe2\x82\xac", 2));
    assert_true(utf8_valid("\xe2\x82\xac", 3));
}

/* Every code point encodes to a string that is valid exactly when it is
 * not a surrogate. */
static void test_valid_every_code_point(void **state)
{
    unsigned char b[4];
    uint32_t cp;
    size_t n;

    (void)state;
    for (cp = 0; cp <= 0x10FFFF; cp++) {
        if (cp < 0x80) {
            b[0] = (unsigned char)cp, n = 1;
        } else if (cp < 0x800) {
            b[0] = (unsigned char)(0xC0 | cp >> 6);
            b[1] = (unsigned char)(0x80 | (cp & 0x3F));
            n = 2;
        } else if (cp < 0x10000) {
            b[0] = (unsigned char)(0xE0 | cp >> 12);
            b[1] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
            b[2] = (unsigned char)(0x80 | (cp & 0x3F));
            n = 3;
        } else {
            b[0] = (unsigned char)(0xF0 | cp >> 18);
            b[1] = (unsigned char)(0x80 | (cp >> 12 & 0x3F));
            b[2] = (unsigned char)(0x80 | (cp >> 6 & 0x3F));
            b[3] = (unsigned char)(0x80 | (cp & 0x3F));
            n = 4;
        }
        if (utf8_valid((const char *)b, n) != !(cp >= 0xD800 && cp <= 0xDFFF))
            print_error("U+%04X\n", (unsigned)cp);
        assert_int_equal(utf8_valid((const char *)b, n), !(cp >= 0xD800 && cp <= 0xDFFF));
        /* Cut anywhere, it is no longer valid. */
        if (n > 1)
            assert_false(utf8_valid((const char *)b, n - 1));
    }
}

struct escape_case {
    const char *in;
    size_t len;  /* 0: strlen(in) */
    size_t size; /* the output buffer */
    const char *want;
};

static const struct escape_case escape_cases[] = {
    /* Valid text is kept as it is, escapes included. */
    {"+14155550100", 0, 65, "+14155550100"},
    {"anonymous", 0, 65, "anonymous"},
    {"caf\xc3\xa9", 0, 65, "caf\xc3\xa9"},
    {"\xf0\x9f\x98\x80", 0, 65, "\xf0\x9f\x98\x80"},
    {"a%20b%c3%28", 0, 65, "a%20b%c3%28"},
    {"100%", 0, 65, "100%"},
    {"%zz%4", 0, 65, "%zz%4"},
    {"", 0, 65, ""},
    /* Each byte outside a valid character becomes one escape. */
    {"\xc3(", 0, 65, "%C3("},
    {"\xff", 0, 65, "%FF"},
    {"caf\xe9", 0, 65, "caf%E9"},
    {"\xc0\x80", 0, 65, "%C0%80"},
    {"\xed\xa0\x80", 0, 65, "%ED%A0%80"},
    {"\xf4\x90\x80\x80", 0, 65, "%F4%90%80%80"},
    {"ab\xe2\x82", 0, 65, "ab%E2%82"},
    {"\xe2\x82\xe2\x82\xac", 0, 65, "%E2%82\xe2\x82\xac"},
    {"a\0b", 3, 65, "a%00b"},
    /* Cuts fall before the unit that does not fit. */
    {"abcdef", 0, 4, "abc"},
    {"ab\xc3\xa9", 0, 4, "ab"}, /* 2 + 2 > 3 */
    {"a\xe2\x82\xac", 0, 4, "a"},
    {"a\xe2\x82\xac", 0, 5, "a\xe2\x82\xac"},
    {"a\xf0\x9f\x98\x80", 0, 5, "a"},
    {"a\xff", 0, 4, "a"}, /* "%FF" needs 3 */
    {"ab\xff", 0, 6, "ab%FF"},
    {"ab\xff\xff", 0, 8, "ab%FF"},
    {"a%41", 0, 4, "a"}, /* an escape already there is not split either */
    {"a%41", 0, 5, "a%41"},
    {"abc", 0, 1, ""},
};

static void test_escape_table(void **state)
{
    char out[80];
    size_t i, n;

    (void)state;
    for (i = 0; i < sizeof(escape_cases) / sizeof(escape_cases[0]); i++) {
        const struct escape_case *c = &escape_cases[i];
        size_t len = c->len ? c->len : strlen(c->in);

        assert_true(c->size <= sizeof(out));
        memset(out, 'X', sizeof(out));
        n = utf8_escape(out, c->size, c->in, len);
        if (strcmp(out, c->want) != 0)
            print_error("case %zu: want '%s', got '%s'\n", i, c->want, out);
        assert_string_equal(out, c->want);
        assert_int_equal(n, strlen(c->want));
        assert_true(utf8_valid(out, n));
        /* Nothing is written past the buffer. */
        assert_int_equal(out[c->size], 'X');
    }
}

/* A SIP user part longer than CALL_PARTY_MAX with a character straddling
 * byte 64: the cut falls before it. */
static void test_escape_cut_at_64(void **state)
{
    char in[80], out[65];
    size_t n;

    (void)state;
    memset(in, 'a', 63);
    memcpy(in + 63, "\xc3\xa9", 2); /* bytes 63 and 64 */
    memcpy(in + 65, "zz", 2);
    n = utf8_escape(out, sizeof(out), in, 67);
    assert_int_equal(n, 63);
    assert_memory_equal(out, in, 63);

    /* An invalid byte whose escape would reach past 64: not split. */
    memset(in, 'a', 62);
    in[62] = (char)0xff;
    n = utf8_escape(out, sizeof(out), in, 63);
    assert_int_equal(n, 62);
}

/* Whatever the bytes, the output is valid UTF-8 without NUL, and its
 * length is bounded by the buffer. */
static void test_escape_any_bytes(void **state)
{
    unsigned char in[256];
    char out[65], big[800];
    size_t i, n;

    (void)state;
    for (i = 0; i < sizeof(in); i++)
        in[i] = (unsigned char)(255 - i);
    n = utf8_escape(out, sizeof(out), (const char *)in, sizeof(in));
    assert_true(n <= 64);
    assert_int_equal(strlen(out), n);
    assert_true(utf8_valid(out, n));
    n = utf8_escape(big, sizeof(big), (const char *)in, sizeof(in));
    assert_int_equal(strlen(big), n);
    assert_true(utf8_valid(big, n));
    /* 0x00 and 0x80-0xFF are escaped (no valid sequence among them, in
     * that order), 0x01-0x7F are kept: 129 * 3 + 127. */
    assert_int_equal(n, 129 * 3 + 127);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_table),
        cmocka_unit_test(test_valid_length_bounds),
        cmocka_unit_test(test_valid_every_code_point),
        cmocka_unit_test(test_escape_table),
        cmocka_unit_test(test_escape_cut_at_64),
        cmocka_unit_test(test_escape_any_bytes),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

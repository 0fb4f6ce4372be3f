/* test_http: the request/response helpers free of any server library:
 * method names, X-Request-Id (API.md "Responses": 1-128 characters of
 * [A-Za-z0-9._:-], else a new random one), percent-decoding and the JSON
 * content-type check (API.md "Requests"), and the client address behind
 * trusted proxies (X-Forwarded-For). */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <string.h>

#include "core/rand.h"
#include "http/http.h"

static int group_setup(void **state)
{
    (void)state;
    return rand_setup() == ERR_OK ? 0 : -1;
}

static void test_method_parse_and_name(void **state)
{
    static const struct {
        const char *s;
        enum http_method m;
    } cases[] = {
        {"GET", HTTP_GET},         {"HEAD", HTTP_HEAD},     {"POST", HTTP_POST},
        {"PUT", HTTP_PUT},         {"DELETE", HTTP_DELETE}, {"PATCH", HTTP_PATCH},
        {"OPTIONS", HTTP_OPTIONS},
    };
    static const char *const other[] = {"get",   "Get",     "POST ", " POST", "",
                                        "TRACE", "CONNECT", "GETX",  "DELET", "put"};
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        assert_int_equal(http_method_parse(cases[i].s), cases[i].m);
        assert_string_equal(http_method_name(cases[i].m), cases[i].s);
    }
    /* Methods are case-sensitive (RFC 9110). */
    for (i = 0; i < sizeof(other) / sizeof(other[0]); i++) {
        if (http_method_parse(other[i]) != HTTP_OTHER)
            print_error("method '%s'\n", other[i]);
        assert_int_equal(http_method_parse(other[i]), HTTP_OTHER);
    }
    assert_string_equal(http_method_name(HTTP_OTHER), "OTHER");
}

static void test_response_init(void **state)
{
    struct http_response r;

    (void)state;
    http_response_init(&r);
    assert_int_equal(r.status, 500);
    assert_int_equal(r.body.len, 0);
    assert_int_equal(r.body.max, HTTP_RESPONSE_MAX);
    assert_null(r.allow);
    assert_string_equal(r.request_id, "");
    assert_false(r.close);
    assert_true(r.org_id == 0);
    assert_string_equal(r.route, "-");
    assert_int_equal(buf_append_str(&r.body, "{}"), ERR_OK);
    http_response_release(&r);
    assert_null(r.body.data);
}

static void test_request_id_valid(void **state)
{
    static const struct {
        const char *s;
        bool ok;
    } cases[] = {
        {"a", true},
        {"0", true},
        {"abc-123", true},
        {"A.b_c:d-e", true},
        {"req:2026-02-02T10:30:00.000Z", true},
        {"550e8400-e29b-41d4-a716-446655440000", true},
        {"", false},
        {" ", false},
        {"a b", false},
        {" a", false},
        {"a ", false},
        {"a\tb", false},
        {"a/b", false},
        {"a+b", false},
        {"a=b", false},
        {"a\"b", false},
        {"a\nb", false},
        {"a\x7f", false},
        {"caf\xc3\xa9", false},
        {"a,b", false},
        {"a;b", false},
    };
    char s[HTTP_REQUEST_ID_MAX + 3];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (http_request_id_valid(cases[i].s) != cases[i].ok)
            print_error("request id '%s'\n", cases[i].s);
        assert_int_equal(http_request_id_valid(cases[i].s), cases[i].ok);
    }
    /* 128 characters are fine, 129 are not. */
    memset(s, 'x', sizeof(s));
    s[HTTP_REQUEST_ID_MAX] = '\0';
    assert_true(http_request_id_valid(s));
    s[HTTP_REQUEST_ID_MAX] = 'x';
    s[HTTP_REQUEST_ID_MAX + 1] = '\0';
    assert_false(http_request_id_valid(s));
    /* A bad character at position 128 does not matter more than the length. */
    s[HTTP_REQUEST_ID_MAX - 1] = ' ';
    s[HTTP_REQUEST_ID_MAX] = '\0';
    assert_false(http_request_id_valid(s));
}

static bool is_hex24(const char *s)
{
    size_t i;

    if (strlen(s) != 24)
        return false;
    for (i = 0; i < 24; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return false;
    }
    return true;
}

static void test_set_request_id_echo(void **state)
{
    struct http_response r;
    char longest[HTTP_REQUEST_ID_MAX + 1];

    (void)state;
    http_response_init(&r);
    http_response_set_request_id(&r, "client-id.42:x_y");
    assert_string_equal(r.request_id, "client-id.42:x_y");

    memset(longest, 'Z', HTTP_REQUEST_ID_MAX);
    longest[HTTP_REQUEST_ID_MAX] = '\0';
    http_response_set_request_id(&r, longest);
    assert_string_equal(r.request_id, longest);
    http_response_release(&r);
}

static void test_set_request_id_generated(void **state)
{
    static const char *const bad[] = {NULL, "", "has space", "semi;colon", "\xc3\xa9"};
    char too_long[HTTP_REQUEST_ID_MAX + 2];
    char prev[HTTP_REQUEST_ID_MAX + 1] = "";
    struct http_response r;
    size_t i;

    (void)state;
    http_response_init(&r);
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        http_response_set_request_id(&r, bad[i]);
        if (!is_hex24(r.request_id))
            print_error("case %zu gave '%s'\n", i, r.request_id);
        assert_true(is_hex24(r.request_id));
        assert_true(http_request_id_valid(r.request_id));
        assert_string_not_equal(r.request_id, prev); /* fresh each time */
        memcpy(prev, r.request_id, sizeof(prev));
    }
    memset(too_long, 'a', sizeof(too_long) - 1);
    too_long[sizeof(too_long) - 1] = '\0';
    http_response_set_request_id(&r, too_long);
    assert_true(is_hex24(r.request_id));
    http_response_release(&r);
}

struct decode_case {
    const char *in;
    enum err want_err;
    const char *want;
    size_t want_len;
};

static void test_path_decode(void **state)
{
    static const struct decode_case cases[] = {
        {"", ERR_OK, "", 0},
        {"abc", ERR_OK, "abc", 3},
        {"%2B918000000001", ERR_OK, "+918000000001", 13},
        {"%2b918000000001", ERR_OK, "+918000000001", 13},
        {"+918000000001", ERR_OK, "+918000000001", 13}, /* '+' is not special */
        {"%20918000000001", ERR_OK, " 918000000001", 13},
        {"a%2Fb", ERR_OK, "a/b", 3},
        {"%41%42%43", ERR_OK, "ABC", 3},
        {"%e2%82%ac", ERR_OK, "\xe2\x82\xac", 3},
        {"%25", ERR_OK, "%", 1},
        {"%2525", ERR_OK, "%25", 3}, /* decoded once only */
        {"a%00b", ERR_OK, "a\0b", 3},
        {"%", ERR_INVALID, NULL, 0},
        {"%2", ERR_INVALID, NULL, 0},
        {"abc%", ERR_INVALID, NULL, 0},
        {"abc%4", ERR_INVALID, NULL, 0},
        {"%zz", ERR_INVALID, NULL, 0},
        {"%g0", ERR_INVALID, NULL, 0},
        {"%0g", ERR_INVALID, NULL, 0},
        {"%-1", ERR_INVALID, NULL, 0},
        {"% 1", ERR_INVALID, NULL, 0},
        {"ok%2Gx", ERR_INVALID, NULL, 0},
    };
    char out[64];
    size_t i, n;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        enum err e;

        n = 999;
        e = http_path_decode(cases[i].in, strlen(cases[i].in), out, sizeof(out), &n);
        if (e != cases[i].want_err)
            print_error("case %zu: '%s' err=%d\n", i, cases[i].in, (int)e);
        assert_int_equal(e, cases[i].want_err);
        if (e != ERR_OK)
            continue;
        assert_int_equal(n, cases[i].want_len);
        assert_memory_equal(out, cases[i].want, n);
        assert_int_equal(out[n], '\0');
    }
}

/* Only len bytes are read; out holds at most outsz - 1 bytes and a NUL. */
static void test_path_decode_bounds(void **state)
{
    char out[6];
    size_t n = 0;

    (void)state;
    assert_int_equal(http_path_decode("abcdefgh", 3, out, sizeof(out), &n), ERR_OK);
    assert_int_equal(n, 3);
    assert_string_equal(out, "abc");
    /* An escape cut by len is malformed even if the bytes after len would
     * complete it. */
    assert_int_equal(http_path_decode("ab%41", 4, out, sizeof(out), &n), ERR_INVALID);

    assert_int_equal(http_path_decode("abcde", 5, out, sizeof(out), &n), ERR_OK);
    assert_string_equal(out, "abcde");
    assert_int_equal(http_path_decode("abcdef", 6, out, sizeof(out), &n), ERR_TOO_LARGE);
    /* The limit is on decoded bytes: five escapes fit in six bytes. */
    assert_int_equal(http_path_decode("%41%42%43%44%45", 15, out, sizeof(out), &n), ERR_OK);
    assert_int_equal(n, 5);
    assert_string_equal(out, "ABCDE");
    assert_int_equal(http_path_decode("%41%42%43%44%45%46", 18, out, sizeof(out), &n),
                     ERR_TOO_LARGE);
}

static void test_content_type_is_json(void **state)
{
    static const struct {
        const char *ct;
        bool ok;
    } cases[] = {
        {"application/json", true},
        {"APPLICATION/JSON", true},
        {"Application/Json", true},
        {"application/json; charset=utf-8", true},
        {"application/json;charset=UTF-8", true},
        {"application/json ; charset=utf-8", true},
        {"  application/json", true},
        {"\tapplication/json", true},
        {"application/json  ", true},
        {"application/json;", true},
        {"application/jsonx", false},
        {"application/json-patch+json", false},
        {"application/json,text/plain", false},
        {"application/jso", false},
        {"application/x-json", false},
        {"text/json", false},
        {"text/plain", false},
        {"application/x-www-form-urlencoded", false},
        {"multipart/form-data; boundary=x", false},
        {"", false},
        {" ", false},
        {"json", false},
        {"application/ json", false},
        {"application/vnd.api+json", false},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        if (http_content_type_is_json(cases[i].ct) != cases[i].ok)
            print_error("content type '%s'\n", cases[i].ct);
        assert_int_equal(http_content_type_is_json(cases[i].ct), cases[i].ok);
    }
}

/* The client's address from peer and the X-Forwarded-For lines (separated
 * by '|' here), with 127.0.0.1 and 10.0.0.0/8 trusted. */
static const char *client_of(const char *peer, const char *lines, bool with_list)
{
    static char out[POLICY_IP_TEXT];
    static char copy[1024];
    const char *xff[HTTP_XFF_HEADERS_MAX];
    size_t len[HTTP_XFF_HEADERS_MAX], n = 0;
    struct allowlist trusted;
    struct policy_ip p, c;
    char why[160], *s = copy, *bar;

    assert_int_equal(allowlist_parse("127.0.0.1, 10.0.0.0/8, ::1", &trusted, why, sizeof(why)),
                     ERR_OK);
    assert_int_equal(policy_ip_parse(peer, strlen(peer), &p), ERR_OK);
    if (lines) {
        assert_true(strlen(lines) < sizeof(copy));
        memcpy(copy, lines, strlen(lines) + 1);
        for (;;) {
            bar = strchr(s, '|');
            if (bar)
                *bar = '\0';
            assert_true(n < HTTP_XFF_HEADERS_MAX);
            xff[n] = s;
            len[n++] = strlen(s);
            if (!bar)
                break;
            s = bar + 1;
        }
    }
    http_client_addr(&p, with_list ? &trusted : NULL, xff, len, n, &c);
    policy_ip_format(&c, out);
    return out;
}

static void test_client_addr(void **state)
{
    static const struct {
        const char *peer, *xff, *want;
    } cases[] = {
        /* No header, or a peer that is not a proxy: the peer. */
        {"127.0.0.1", NULL, "127.0.0.1"},
        {"203.0.113.5", "198.51.100.1", "203.0.113.5"},
        {"192.0.2.1", "10.0.0.1, 127.0.0.1", "192.0.2.1"},
        /* The right-most address that is not a proxy. */
        {"127.0.0.1", "198.51.100.1", "198.51.100.1"},
        {"127.0.0.1", "198.51.100.1, 203.0.113.7", "203.0.113.7"},
        {"127.0.0.1", "203.0.113.7, 10.1.2.3", "203.0.113.7"},
        {"10.9.9.9", "1.1.1.1,203.0.113.7,10.1.2.3 ,127.0.0.1", "203.0.113.7"},
        /* Several header lines: the last is the right-most. */
        {"127.0.0.1", "198.51.100.1|203.0.113.7, 10.0.0.2", "203.0.113.7"},
        {"127.0.0.1", "198.51.100.1|10.0.0.2", "198.51.100.1"},
        {"127.0.0.1", "198.51.100.1|", "198.51.100.1"},
        /* Every address a proxy: the left-most. */
        {"127.0.0.1", "10.0.0.3, 10.0.0.2", "10.0.0.3"},
        /* Not an address: the walk ends at the last address taken. */
        {"127.0.0.1", "garbage", "127.0.0.1"},
        {"127.0.0.1", "198.51.100.1, unknown", "127.0.0.1"},
        {"127.0.0.1", "unknown, 10.0.0.2", "10.0.0.2"},
        {"127.0.0.1", "198.51.100.1:8080", "127.0.0.1"},
        {"127.0.0.1", "198.51.100.0/24", "127.0.0.1"},
        /* Spaces, tabs, empty items, IPv6 with and without brackets. */
        {"127.0.0.1", " ,\t198.51.100.1\t, ,", "198.51.100.1"},
        {"127.0.0.1", "2001:db8::7", "2001:db8::7"},
        {"127.0.0.1", "[2001:db8::8]", "2001:db8::8"},
        {"127.0.0.1", "::ffff:198.51.100.9", "198.51.100.9"},
        {"::1", "198.51.100.1", "198.51.100.1"},
        {"::ffff:127.0.0.1", "198.51.100.1", "198.51.100.1"},
    };
    char chain[2048];
    size_t i, n;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *got = client_of(cases[i].peer, cases[i].xff, true);

        if (strcmp(got, cases[i].want) != 0)
            fail_msg("peer %s xff '%s': got %s, want %s", cases[i].peer,
                     cases[i].xff ? cases[i].xff : "(none)", got, cases[i].want);
    }
    /* Without a list X-Forwarded-For is never read. */
    assert_string_equal(client_of("127.0.0.1", "198.51.100.1", false), "127.0.0.1");
    /* A chain of proxies longer than HTTP_XFF_HOPS_MAX is not followed to its
     * end: the walk stops at the last proxy it took. */
    n = (size_t)snprintf(chain, sizeof(chain), "198.51.100.1");
    for (i = 0; i < HTTP_XFF_HOPS_MAX; i++)
        n += (size_t)snprintf(chain + n, sizeof(chain) - n, ",10.0.%zu.%zu", i / 250, i % 250 + 1);
    assert_string_equal(client_of("127.0.0.1", chain, true), "10.0.0.1");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_method_parse_and_name),
        cmocka_unit_test(test_response_init),
        cmocka_unit_test(test_request_id_valid),
        cmocka_unit_test(test_set_request_id_echo),
        cmocka_unit_test(test_set_request_id_generated),
        cmocka_unit_test(test_path_decode),
        cmocka_unit_test(test_path_decode_bounds),
        cmocka_unit_test(test_content_type_is_json),
        cmocka_unit_test(test_client_addr),
    };

    return cmocka_run_group_tests(tests, group_setup, NULL);
}

/* test_stream_context: what the stream's start carries beyond the
 * documented fields (AGENT.md section 2): customParameters and sipHeaders
 * written after mediaFormat, byte for byte and in order, only when there
 * are some; and the rules of an X- header name and value. */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "call/streammsg.h"
#include "core/xheaders.h"
#include "json/json.h"

#define START_DOC                                                                                  \
    "{\"event\":\"start\",\"streamId\":\"SFV_STRM_BI_01ARZ3NDEKTSV4RRFFQ69G5FAV\",\"callId\":"     \
    "\"9b2f0c1e-1111-4222-8333-444455556666\",\"mediaFormat\":{\"contentType\":\"audio/PCMA\","    \
    "\"sampleRate\":8000}"

static enum err start(struct buf *b, const struct stream_param *p, size_t np,
                      const struct xheaders *xh)
{
    buf_reset(b);
    return streammsg_start(b, "SFV_STRM_BI_01ARZ3NDEKTSV4RRFFQ69G5FAV",
                           "9b2f0c1e-1111-4222-8333-444455556666", "audio/PCMA", 8000, p, np, xh);
}

static void test_start_without_context(void **state)
{
    struct stream_param p[1];
    struct xheaders xh = {.n = 0};
    struct buf b;

    (void)state;
    buf_init(&b, 1 << 20);
    /* None, or empty lists: exactly the documented message. */
    assert_int_equal(start(&b, NULL, 0, NULL), ERR_OK);
    assert_string_equal(b.data, START_DOC "}");
    assert_int_equal(start(&b, p, 0, &xh), ERR_OK);
    assert_string_equal(b.data, START_DOC "}");
    buf_release(&b);
}

static void test_start_with_context(void **state)
{
    struct stream_param p[3] = {
        {"zeta", "1"}, {"alpha", ""}, {"m\xc3\xa9", "caf\xc3\xa9 \"q\" \\ \x01"}};
    struct xheaders xh = {.n = 2};
    struct buf b;

    (void)state;
    snprintf(xh.h[0].name, sizeof(xh.h[0].name), "%s", "X-Tenant");
    snprintf(xh.h[0].value, sizeof(xh.h[0].value), "%s", "acme");
    snprintf(xh.h[1].name, sizeof(xh.h[1].name), "%s", "x-lower");
    snprintf(xh.h[1].value, sizeof(xh.h[1].value), "%s", "a, b; c=%FF");
    buf_init(&b, 1 << 20);
    assert_int_equal(start(&b, p, 3, &xh), ERR_OK);
    assert_string_equal(b.data, START_DOC ",\"customParameters\":{\"zeta\":\"1\",\"alpha\":\"\","
                                          "\"m\xc3\xa9\":\"caf\xc3\xa9 \\\"q\\\" \\\\ \\u0001\"},"
                                          "\"sipHeaders\":{\"X-Tenant\":\"acme\",\"x-lower\":"
                                          "\"a, b; c=%FF\"}}");
    /* Only one of them. */
    assert_int_equal(start(&b, p, 1, NULL), ERR_OK);
    assert_string_equal(b.data, START_DOC ",\"customParameters\":{\"zeta\":\"1\"}}");
    assert_int_equal(start(&b, NULL, 0, &xh), ERR_OK);
    assert_string_equal(b.data, START_DOC ",\"sipHeaders\":{\"X-Tenant\":\"acme\",\"x-lower\":"
                                          "\"a, b; c=%FF\"}}");
    buf_release(&b);
}

/* The largest start: 16 parameters and 16 headers at their caps, which
 * parses back as JSON with every byte in place. */
static void test_start_at_caps(void **state)
{
    struct stream_param *p = calloc(STREAM_PARAMS_MAX, sizeof(*p));
    struct xheaders *xh = calloc(1, sizeof(*xh));
    json_t *root = NULL, *o;
    struct buf b;
    size_t i;

    (void)state;
    assert_non_null(p);
    assert_non_null(xh);
    for (i = 0; i < STREAM_PARAMS_MAX; i++) {
        memset(p[i].key, 'a' + (int)i, STREAM_PARAM_KEY_MAX);
        memset(p[i].value, '"', STREAM_PARAM_VALUE_MAX); /* each escaped: twice as long */
        memset(xh->h[i].name, 'X', XHEADER_NAME_MAX);
        xh->h[i].name[1] = '-';
        xh->h[i].name[2] = (char)('a' + i);
        memset(xh->h[i].value, 'v', XHEADER_VALUE_MAX);
    }
    xh->n = XHEADERS_MAX;
    buf_init(&b, 1 << 20);
    assert_int_equal(start(&b, p, STREAM_PARAMS_MAX, xh), ERR_OK);
    assert_int_equal(js_parse_object(b.data, b.len, &root), ERR_OK);
    o = json_object_get(root, "customParameters");
    assert_int_equal(json_object_size(o), STREAM_PARAMS_MAX);
    for (i = 0; i < STREAM_PARAMS_MAX; i++)
        assert_string_equal(json_string_value(json_object_get(o, p[i].key)), p[i].value);
    o = json_object_get(root, "sipHeaders");
    assert_int_equal(json_object_size(o), XHEADERS_MAX);
    for (i = 0; i < XHEADERS_MAX; i++)
        assert_string_equal(json_string_value(json_object_get(o, xh->h[i].name)), xh->h[i].value);
    json_decref(root);
    /* A buffer too small is an error, never a cut message. */
    buf_release(&b);
    buf_init(&b, 4096);
    assert_int_equal(start(&b, p, STREAM_PARAMS_MAX, xh), ERR_TOO_LARGE);
    buf_release(&b);
    free(p);
    free(xh);
}

static void test_xheader_rules(void **state)
{
    static const char *const good[] = {"X-A", "X-Tenant-Id", "X-0", "X---", "X-aZ09-"};
    static const char *const bad[] = {"",      "X",    "X-",         "x-lower", "Y-A",  "X_A",
                                      "X-A B", "X-A:", "X-\xc3\xa9", "XA",      "-X-A", "X-A\t"};
    char name[80];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(good) / sizeof(good[0]); i++)
        assert_true(xheader_name_valid(good[i], strlen(good[i])));
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
        assert_false(xheader_name_valid(bad[i], strlen(bad[i])));
    /* "X-" and 62 more: the longest. */
    memset(name, 'n', sizeof(name));
    name[0] = 'X';
    name[1] = '-';
    assert_true(xheader_name_valid(name, 64));
    assert_false(xheader_name_valid(name, 65));
    /* A NUL inside is not a name character. */
    assert_false(xheader_name_valid("X-A\0B", 5));

    assert_true(xheader_value_valid("", 0));
    assert_true(xheader_value_valid(" !~ printable", 13));
    assert_false(xheader_value_valid("a\r\nX-Evil: 1", 12));
    assert_false(xheader_value_valid("a\nb", 3));
    assert_false(xheader_value_valid("a\0b", 3));
    assert_false(xheader_value_valid("tab\there", 8));
    assert_false(xheader_value_valid("\x7f", 1));
    assert_false(xheader_value_valid("caf\xc3\xa9", 5));
    {
        char v[XHEADER_VALUE_MAX + 1];

        memset(v, 'v', sizeof(v));
        assert_true(xheader_value_valid(v, XHEADER_VALUE_MAX));
        assert_false(xheader_value_valid(v, XHEADER_VALUE_MAX + 1));
    }
}

static void test_xheaders_has(void **state)
{
    struct xheaders xh = {.n = 1};

    (void)state;
    snprintf(xh.h[0].name, sizeof(xh.h[0].name), "%s", "X-Carrier-Token");
    assert_true(xheaders_has(&xh, "x-carrier-token", 15));
    assert_true(xheaders_has(&xh, "X-CARRIER-TOKEN", 15));
    assert_false(xheaders_has(&xh, "X-Carrier-Toke", 14));
    assert_false(xheaders_has(&xh, "X-Carrier-Tokens", 16));
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_start_without_context), cmocka_unit_test(test_start_with_context),
        cmocka_unit_test(test_start_at_caps),         cmocka_unit_test(test_xheader_rules),
        cmocka_unit_test(test_xheaders_has),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

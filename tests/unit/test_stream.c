/* test_stream: the answer reply's "stream" object (CALLS.md section 6):
 * every default, every rule, wrong types and nulls, the boundaries, the
 * spec's example, the ws/wss URL rule, and the streamId/ULID encoding of
 * section 1 against known vectors. */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "call/stream.h"

static enum err parse(const char *text, struct stream_config *cfg, struct field_errors *fe)
{
    return stream_parse(text, strlen(text), cfg, fe);
}

/* Asserts that text is valid and returns its config. */
static struct stream_config ok(const char *text)
{
    struct stream_config cfg;
    struct field_errors fe;
    int i;

    memset(&cfg, 0xa5, sizeof(cfg));
    if (parse(text, &cfg, &fe) != ERR_OK) {
        for (i = 0; i < fe.n; i++)
            print_error("  %s: %s\n", fe.e[i].field, fe.e[i].reason);
        fail_msg("rejected: %s", text);
    }
    assert_int_equal(fe.n, 0);
    return cfg;
}

/* Asserts that text is invalid, naming exactly field (one error). */
static void bad(const char *text, const char *field)
{
    struct stream_config cfg;
    struct field_errors fe;

    memset(&cfg, 0xa5, sizeof(cfg));
    if (parse(text, &cfg, &fe) != ERR_INVALID)
        fail_msg("accepted: %s", text);
    if (fe.n != 1 || strcmp(fe.e[0].field, field) != 0)
        fail_msg("%s: %d errors, first %s (want %s)", text, fe.n, fe.n ? fe.e[0].field : "-",
                 field);
    assert_non_null(fe.e[0].reason);
    assert_true(strlen(fe.e[0].reason) > 0);
    /* *out is untouched on error. */
    assert_int_equal(((unsigned char *)&cfg)[0], 0xa5);
}

static void test_spec_example(void **state)
{
    struct stream_config c =
        ok("{\"stream\":{\"url\":\"wss://agent.example.com/ws\",\"codec\":\"PCMA\","
           "\"sample_rate\":8000,\n  \"direction\":\"INBOUND\",\"bidirectional\":true,"
           "\"stream_timeout\":86400,\"keep_call_alive\":false}}");

    (void)state;
    assert_string_equal(c.url, "wss://agent.example.com/ws");
    assert_int_equal(c.codec, STREAM_CODEC_PCMA);
    assert_int_equal(c.sample_rate, 8000);
    assert_int_equal(c.direction, STREAM_DIR_INBOUND);
    assert_true(c.bidirectional);
    assert_int_equal(c.stream_timeout, 86400);
    assert_false(c.keep_call_alive);
}

static void test_defaults(void **state)
{
    struct stream_config c = ok("{\"stream\":{\"url\":\"ws://h\"}}");

    (void)state;
    assert_string_equal(c.url, "ws://h");
    assert_int_equal(c.codec, STREAM_CODEC_PCMA);
    assert_int_equal(c.sample_rate, 8000);
    assert_int_equal(c.direction, STREAM_DIR_INBOUND);
    assert_false(c.bidirectional);
    assert_int_equal(c.stream_timeout, 86400);
    assert_false(c.keep_call_alive);
}

static void test_all_set(void **state)
{
    struct stream_config c =
        ok("{\"x\":1,\"stream\":{\"url\":\"wss://h:8443/a?b=c\",\"codec\":\"L16\","
           "\"sample_rate\":44100,\"direction\":\"BOTH\",\"bidirectional\":true,"
           "\"stream_timeout\":1,\"keep_call_alive\":true,\"unknown\":[null],\"extra\":{}}}");

    (void)state;
    assert_string_equal(c.url, "wss://h:8443/a?b=c");
    assert_int_equal(c.codec, STREAM_CODEC_L16);
    assert_int_equal(c.sample_rate, 44100);
    assert_int_equal(c.direction, STREAM_DIR_BOTH);
    assert_true(c.bidirectional);
    assert_int_equal(c.stream_timeout, 1);
    assert_true(c.keep_call_alive);
}

struct enum_case {
    const char *json;
    int want; /* -1: invalid */
};

static void test_codec(void **state)
{
    static const struct enum_case cases[] = {
        {"\"PCMA\"", STREAM_CODEC_PCMA},
        {"\"PCMU\"", STREAM_CODEC_PCMU},
        {"\"L16\"", STREAM_CODEC_L16},
        {"\"pcmu\"", STREAM_CODEC_PCMU}, /* any case, like *_method */
        {"\"l16\"", STREAM_CODEC_L16},
        {"\"Pcma\"", STREAM_CODEC_PCMA},
        {"\"\"", -1},
        {"\"PCM\"", -1},
        {"\"PCMA \"", -1},
        {"\"G711\"", -1},
        {"\"OPUS\"", -1},
        {"\"audio/PCMA\"", -1},
        {"null", -1},
        {"1", -1},
        {"true", -1},
        {"[\"PCMA\"]", -1},
        {"{}", -1},
    };
    size_t i;
    char text[256];

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(text, sizeof(text), "{\"stream\":{\"url\":\"ws://h\",\"codec\":%s}}",
                 cases[i].json);
        if (cases[i].want < 0)
            bad(text, "stream.codec");
        else
            assert_int_equal(ok(text).codec, cases[i].want);
    }
}

static void test_direction(void **state)
{
    static const struct enum_case cases[] = {
        {"\"INBOUND\"", STREAM_DIR_INBOUND},
        {"\"OUTBOUND\"", STREAM_DIR_OUTBOUND},
        {"\"BOTH\"", STREAM_DIR_BOTH},
        {"\"both\"", STREAM_DIR_BOTH},
        {"\"Outbound\"", STREAM_DIR_OUTBOUND},
        {"\"IN\"", -1},
        {"\"\"", -1},
        {"\"BOTHX\"", -1},
        {"null", -1},
        {"0", -1},
        {"false", -1},
    };
    size_t i;
    char text[256];

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(text, sizeof(text), "{\"stream\":{\"url\":\"ws://h\",\"direction\":%s}}",
                 cases[i].json);
        if (cases[i].want < 0)
            bad(text, "stream.direction");
        else
            assert_int_equal(ok(text).direction, cases[i].want);
    }
}

struct rate_case {
    const char *codec; /* NULL: absent */
    const char *rate;  /* JSON, NULL: absent */
    int want;          /* 0: invalid */
};

static void test_sample_rate(void **state)
{
    static const struct rate_case cases[] = {
        {NULL, NULL, 8000},
        {NULL, "8000", 8000},
        {NULL, "16000", 0}, /* the default codec is PCMA */
        {"PCMA", "8000", 8000},
        {"PCMU", "8000", 8000},
        {"PCMA", "16000", 0},
        {"PCMU", "16000", 0},
        {"PCMU", "48000", 0},
        {"L16", NULL, 8000},
        {"L16", "8000", 8000},
        {"L16", "16000", 16000},
        {"L16", "24000", 24000},
        {"L16", "32000", 32000},
        {"L16", "44100", 44100},
        {"L16", "48000", 48000},
        {"L16", "11025", 0},
        {"L16", "22050", 0},
        {"L16", "96000", 0},
        {"L16", "0", 0},
        {"L16", "-8000", 0},
        {"L16", "4294975296", 0}, /* 8000 + 2^32: no truncation */
        {"L16", "9223372036854775807", 0},
        {"L16", "16000.0", 0},
        {"L16", "1.6e4", 0},
        {"L16", "\"16000\"", 0},
        {"L16", "null", 0},
        {"L16", "true", 0},
        {"PCMA", "8000.0", 0},
    };
    size_t i;
    char text[256];

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        int n = snprintf(text, sizeof(text), "{\"stream\":{\"url\":\"ws://h\"");

        if (cases[i].codec)
            n += snprintf(text + n, sizeof(text) - (size_t)n, ",\"codec\":\"%s\"", cases[i].codec);
        if (cases[i].rate)
            n += snprintf(text + n, sizeof(text) - (size_t)n, ",\"sample_rate\":%s", cases[i].rate);
        snprintf(text + n, sizeof(text) - (size_t)n, "}}");
        if (cases[i].want == 0)
            bad(text, "stream.sample_rate");
        else
            assert_int_equal(ok(text).sample_rate, cases[i].want);
    }
}

static void test_rate_allowed(void **state)
{
    (void)state;
    assert_true(stream_rate_allowed(STREAM_CODEC_PCMA, 8000));
    assert_false(stream_rate_allowed(STREAM_CODEC_PCMA, 16000));
    assert_true(stream_rate_allowed(STREAM_CODEC_L16, 44100));
    assert_false(stream_rate_allowed(STREAM_CODEC_L16, 44101));
    assert_false(stream_rate_allowed((enum stream_codec)7, 8000));
}

static void test_bad_codec_skips_rate_check(void **state)
{
    struct stream_config cfg;
    struct field_errors fe;

    (void)state;
    /* A bad codec is reported once; the rate cannot be judged without it. */
    assert_int_equal(
        parse("{\"stream\":{\"url\":\"ws://h\",\"codec\":\"X\",\"sample_rate\":16000}}", &cfg, &fe),
        ERR_INVALID);
    assert_int_equal(fe.n, 1);
    assert_string_equal(fe.e[0].field, "stream.codec");
    /* But a wrongly typed rate is still reported. */
    assert_int_equal(
        parse("{\"stream\":{\"url\":\"ws://h\",\"codec\":\"X\",\"sample_rate\":\"a\"}}", &cfg, &fe),
        ERR_INVALID);
    assert_int_equal(fe.n, 2);
    assert_string_equal(fe.e[1].field, "stream.sample_rate");
}

struct int_case {
    const char *json;
    int want; /* 0: invalid */
};

static void test_stream_timeout(void **state)
{
    static const struct int_case cases[] = {
        {"0", 0},         {"1", 1},          {"2", 2},
        {"86399", 86399}, {"86400", 86400},  {"86401", 0},
        {"-1", 0},        {"4294967297", 0}, {"1.0", 0},
        {"1e2", 0},       {"\"60\"", 0},     {"null", 0},
        {"true", 0},      {"[]", 0},         {"-9223372036854775808", 0},
    };
    size_t i;
    char text[256];

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        snprintf(text, sizeof(text), "{\"stream\":{\"url\":\"ws://h\",\"stream_timeout\":%s}}",
                 cases[i].json);
        if (cases[i].want == 0)
            bad(text, "stream.stream_timeout");
        else
            assert_int_equal(ok(text).stream_timeout, cases[i].want);
    }
}

static void test_booleans(void **state)
{
    static const char *const fields[] = {"bidirectional", "keep_call_alive"};
    static const char *const bad_values[] = {"null", "0", "1", "\"true\"", "\"false\"", "[]", "{}"};
    char text[256], field[64];
    size_t f, i;

    (void)state;
    for (f = 0; f < 2; f++) {
        struct stream_config c;

        snprintf(text, sizeof(text), "{\"stream\":{\"url\":\"ws://h\",\"%s\":true}}", fields[f]);
        c = ok(text);
        assert_true(f == 0 ? c.bidirectional : c.keep_call_alive);
        assert_false(f == 0 ? c.keep_call_alive : c.bidirectional);
        snprintf(text, sizeof(text), "{\"stream\":{\"url\":\"ws://h\",\"%s\":false}}", fields[f]);
        c = ok(text);
        assert_false(c.bidirectional);
        assert_false(c.keep_call_alive);
        snprintf(field, sizeof(field), "stream.%s", fields[f]);
        for (i = 0; i < sizeof(bad_values) / sizeof(bad_values[0]); i++) {
            snprintf(text, sizeof(text), "{\"stream\":{\"url\":\"ws://h\",\"%s\":%s}}", fields[f],
                     bad_values[i]);
            bad(text, field);
        }
    }
}

static void test_url_field(void **state)
{
    (void)state;
    bad("{\"stream\":{}}", "stream.url");
    bad("{\"stream\":{\"codec\":\"PCMA\"}}", "stream.url");
    bad("{\"stream\":{\"url\":null}}", "stream.url");
    bad("{\"stream\":{\"url\":1}}", "stream.url");
    bad("{\"stream\":{\"url\":[\"ws://h\"]}}", "stream.url");
    bad("{\"stream\":{\"url\":\"\"}}", "stream.url");
    bad("{\"stream\":{\"url\":\"https://h/ws\"}}", "stream.url");
    bad("{\"stream\":{\"url\":\"ws://\"}}", "stream.url");
    bad("{\"stream\":{\"url\":\"ws://h/\\u0001\"}}", "stream.url");
    bad("{\"stream\":{\"url\":\"ws://h/a b\"}}", "stream.url");
    assert_string_equal(ok("{\"stream\":{\"url\":\"WSS://H:443/x\"}}").url, "WSS://H:443/x");
}

static void test_structure(void **state)
{
    struct stream_config cfg;
    struct field_errors fe;

    (void)state;
    bad("", "body");
    bad("null", "body");
    bad("[]", "body");
    bad("\"stream\"", "body");
    bad("{", "body");
    bad("{\"stream\":{\"url\":\"ws://h\"}} x", "body");
    bad("{\"stream\":{\"url\":\"ws://h\",\"url\":\"ws://i\"}}", "body"); /* duplicate key */
    bad("{\"stream\":{\"url\":\"ws://h\\u0000\"}}", "body");             /* U+0000 */
    bad("{\"stream\":{\"url\":\"ws://h/\xff\"}}", "body");               /* not UTF-8 */
    bad("{}", "stream");
    bad("{\"Stream\":{\"url\":\"ws://h\"}}", "stream");
    bad("{\"stream\":null}", "stream");
    bad("{\"stream\":\"ws://h\"}", "stream");
    bad("{\"stream\":[{\"url\":\"ws://h\"}]}", "stream");
    bad("{\"stream\":1}", "stream");
    /* A NULL body of length 0 is an empty body. */
    assert_int_equal(stream_parse(NULL, 0, &cfg, &fe), ERR_INVALID);
    assert_int_equal(fe.n, 1);
}

static void test_every_error_listed(void **state)
{
    static const char *const want[] = {
        "stream.url",           "stream.codec",          "stream.direction",
        "stream.bidirectional", "stream.stream_timeout", "stream.keep_call_alive",
    };
    struct stream_config cfg;
    struct field_errors fe;
    int i;

    (void)state;
    assert_int_equal(parse("{\"stream\":{\"url\":null,\"codec\":null,\"sample_rate\":8000,"
                           "\"direction\":null,\"bidirectional\":null,\"stream_timeout\":null,"
                           "\"keep_call_alive\":null}}",
                           &cfg, &fe),
                     ERR_INVALID);
    assert_int_equal(fe.n, 6);
    for (i = 0; i < 6; i++)
        assert_string_equal(fe.e[i].field, want[i]);
    /* fe is reset by the next call. */
    (void)ok("{\"stream\":{\"url\":\"ws://h\"}}");
    assert_int_equal(parse("{\"stream\":{\"url\":\"ws://h\"}}", &cfg, &fe), ERR_OK);
    assert_int_equal(fe.n, 0);
}

static void test_body_cap(void **state)
{
    const char *head = "{\"stream\":{\"url\":\"ws://h\"},\"pad\":\"";
    size_t hlen = strlen(head);
    char *text = malloc(STREAM_BODY_MAX + 2);
    struct stream_config cfg;
    struct field_errors fe;

    (void)state;
    assert_non_null(text);
    /* Exactly STREAM_BODY_MAX bytes: accepted. */
    memcpy(text, head, hlen);
    memset(text + hlen, 'a', STREAM_BODY_MAX - hlen - 2);
    memcpy(text + STREAM_BODY_MAX - 2, "\"}", 2);
    assert_int_equal(stream_parse(text, STREAM_BODY_MAX, &cfg, &fe), ERR_OK);
    assert_string_equal(cfg.url, "ws://h");
    /* One byte more (a space after the object): refused before parsing. */
    text[STREAM_BODY_MAX] = ' ';
    assert_int_equal(stream_parse(text, STREAM_BODY_MAX + 1, &cfg, &fe), ERR_INVALID);
    assert_int_equal(fe.n, 1);
    assert_string_equal(fe.e[0].field, "body");
    free(text);
}

/* ---- stream_url_valid ---- */

struct url_case {
    const char *url;
    bool ok;
};

static void test_url_table(void **state)
{
    static const struct url_case cases[] = {
        {"ws://example.com", true},
        {"wss://example.com", true},
        {"wss://agent.example.com/ws", true},
        {"WS://EXAMPLE.COM/", true},
        {"WsS://example.com", true},
        {"wss://example.com:443/ws", true},
        {"wss://example.com:8443", true},
        {"ws://example.com:65535/", true},
        {"ws://example.com:/", true}, /* empty port: the default */
        {"ws://127.0.0.1:8080/x", true},
        {"ws://[::1]:8080/x", true},
        {"wss://[2001:db8::1]/x", true},
        {"ws://[::1]", true},
        {"wss://user:pass@example.com/x", true},
        {"wss://example.com/a?b=c&d=e", true},
        {"wss://example.com?x=1", true},
        {"wss://example.com/p\xc3\xa4th", true},
        /* Scheme. */
        {"", false},
        {"ws:", false},
        {"ws:/example.com", false},
        {"ws:example.com", false},
        {"wss:/example.com", false},
        {"http://example.com", false},
        {"https://example.com", false},
        {"wsx://example.com", false},
        {"w://example.com", false},
        {"//example.com", false},
        {"example.com", false},
        {"/ws", false},
        /* Host. */
        {"ws://", false},
        {"wss://", false},
        {"ws:///x", false},
        {"wss:///ws", false},
        {"ws://?x", false},
        {"ws://:80/x", false},
        {"ws://user@/x", false},
        {"ws://@", false},
        {"ws://[]", false},
        {"ws://[::1", false},
        {"ws://[::1]x", false},
        {"ws://a:b:80/", false},
        {"ws://host]/", false},
        /* Port. */
        {"ws://example.com:0/", false},
        {"ws://example.com:65536/", false},
        {"ws://example.com:123456/", false},
        {"ws://example.com:8a/", false},
        {"wss://[::1]:0/", false},
        /* Fragment (RFC 6455). */
        {"wss://example.com/ws#frag", false},
        {"wss://example.com#", false},
        {"ws://#x", false},
        /* Spaces and control characters. */
        {" ws://example.com", false},
        {"ws://example.com ", false},
        {"ws://exa mple.com", false},
        {"ws://example.com/\t", false},
        {"ws://example.com/\r\nX: y", false},
        {"ws://example.com/\x7f", false},
    };
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        const char *reason = NULL;
        bool got = stream_url_valid(cases[i].url, strlen(cases[i].url), &reason);

        if (got != cases[i].ok)
            print_error("case %zu: '%s' gave %d (%s)\n", i, cases[i].url, got,
                        reason ? reason : "-");
        assert_int_equal(got, cases[i].ok);
        if (!got) {
            assert_non_null(reason);
            assert_true(strlen(reason) > 0);
        }
    }
}

static void test_url_embedded_nul(void **state)
{
    const char *reason = NULL;

    (void)state;
    assert_false(stream_url_valid("ws://h\0x", 8, &reason));
    assert_non_null(reason);
    assert_true(stream_url_valid("ws://h\0x", 6, &reason)); /* len is honoured */
}

/* Builds "wss://" + host + "/" + 'a'... of exactly len bytes. */
static char *long_url(size_t len, const char *scheme)
{
    char *s = malloc(len + 1);
    size_t n = strlen(scheme);

    assert_non_null(s);
    memcpy(s, scheme, n);
    memcpy(s + n, "h/", 2);
    memset(s + n + 2, 'a', len - n - 2);
    s[len] = '\0';
    return s;
}

static void test_url_length(void **state)
{
    const char *reason = NULL;
    char text[STREAM_URL_MAX + 64];
    char *u;

    (void)state;
    u = long_url(2048, "wss://");
    assert_true(stream_url_valid(u, 2048, &reason));
    snprintf(text, sizeof(text), "{\"stream\":{\"url\":\"%s\"}}", u);
    assert_int_equal(strlen(ok(text).url), 2048);
    free(u);
    u = long_url(2048, "ws://");
    assert_true(stream_url_valid(u, 2048, &reason));
    free(u);
    u = long_url(2049, "wss://");
    assert_false(stream_url_valid(u, 2049, &reason));
    assert_string_equal(reason, "must be at most 2048 bytes");
    snprintf(text, sizeof(text), "{\"stream\":{\"url\":\"%s\"}}", u);
    bad(text, "stream.url");
    free(u);
    /* A 2043-byte host: the whole URL still fits. */
    u = long_url(2048, "ws://");
    memset(u + 5, 'h', 2043);
    assert_true(stream_url_valid(u, 2048, &reason));
    free(u);
}

/* ---- names ---- */

static void test_names(void **state)
{
    (void)state;
    assert_string_equal(stream_codec_name(STREAM_CODEC_PCMA), "PCMA");
    assert_string_equal(stream_codec_name(STREAM_CODEC_PCMU), "PCMU");
    assert_string_equal(stream_codec_name(STREAM_CODEC_L16), "L16");
    assert_string_equal(stream_content_type(STREAM_CODEC_PCMA), "audio/PCMA");
    assert_string_equal(stream_content_type(STREAM_CODEC_PCMU), "audio/PCMU");
    assert_string_equal(stream_content_type(STREAM_CODEC_L16), "audio/x-l16");
    assert_string_equal(stream_direction_name(STREAM_DIR_INBOUND), "INBOUND");
    assert_string_equal(stream_direction_name(STREAM_DIR_OUTBOUND), "OUTBOUND");
    assert_string_equal(stream_direction_name(STREAM_DIR_BOTH), "BOTH");
    assert_string_equal(stream_codec_name((enum stream_codec)9), "");
    assert_string_equal(stream_direction_name((enum stream_direction)9), "");
}

/* ---- ULID and streamId ---- */

struct ulid_case {
    int64_t ms;
    unsigned char rnd[ULID_RANDOM_BYTES];
    const char *want;
};

/* ---- custom_parameters (AGENT.md section 2) ---- */

#define WS "{\"stream\":{\"url\":\"ws://a.example/ws\",\"custom_parameters\":"

/* A reply whose custom_parameters holds n entries "kI" (I from 0) with the
 * key padded with 'k' to klen bytes and the value of vlen 'v's. */
static char *params_reply(int n, size_t klen, size_t vlen)
{
    size_t cap = 128 + (size_t)n * (klen + vlen + 8);
    char *out = malloc(cap), *p;
    int i;

    assert_non_null(out);
    p = out + snprintf(out, cap, "%s{", WS);
    for (i = 0; i < n; i++) {
        char key[80];
        int kn = snprintf(key, sizeof(key), "%d", i);

        while ((size_t)kn < klen)
            key[kn++] = 'k';
        key[klen] = '\0';
        p += snprintf(p, cap - (size_t)(p - out), "%s\"%s\":\"", i ? "," : "", key);
        memset(p, 'v', vlen);
        p += vlen;
        p += snprintf(p, cap - (size_t)(p - out), "\"");
    }
    snprintf(p, cap - (size_t)(p - out), "}}}");
    return out;
}

static void test_custom_parameters(void **state)
{
    struct stream_config cfg;
    char *text;
    int i;

    (void)state;
    /* Absent: none. */
    cfg = ok("{\"stream\":{\"url\":\"ws://a.example/ws\"}}");
    assert_int_equal(cfg.nparams, 0);
    cfg = ok(WS "{}}}");
    assert_int_equal(cfg.nparams, 0);
    /* Order as received (not sorted), values as sent, unicode and escapes kept. */
    cfg = ok(WS "{\"zeta\":\"1\",\"alpha\":\"\",\"m\\u00e9\":\"caf\u00e9 \\\"q\\\" \u20ac\"}}}");
    assert_int_equal(cfg.nparams, 3);
    assert_string_equal(cfg.params[0].key, "zeta");
    assert_string_equal(cfg.params[0].value, "1");
    assert_string_equal(cfg.params[1].key, "alpha");
    assert_string_equal(cfg.params[1].value, "");
    assert_string_equal(cfg.params[2].key, "m\xc3\xa9");
    assert_string_equal(cfg.params[2].value, "caf\xc3\xa9 \"q\" \xe2\x82\xac");
    /* The maxima: 16 entries, 64-byte keys, 512-byte values. */
    text = params_reply(16, 64, 512);
    cfg = ok(text);
    free(text);
    assert_int_equal(cfg.nparams, 16);
    for (i = 0; i < 16; i++) {
        assert_int_equal(strlen(cfg.params[i].key), 64);
        assert_int_equal(strlen(cfg.params[i].value), 512);
    }
    assert_int_equal(cfg.params[15].key[0], '1');
    assert_int_equal(cfg.params[15].key[1], '5');
    /* A 64-byte key may be 2-byte characters: bytes count, not characters. */
    cfg = ok(WS "{\"\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"
                "\u00e9\u00e9\u00e9"
                "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"
                "\u00e9\u00e9\u00e9\":\"x\"}}}");
    assert_int_equal(strlen(cfg.params[0].key), 64);

    /* One over each cap. */
    text = params_reply(17, 4, 1);
    bad(text, "stream.custom_parameters");
    free(text);
    text = params_reply(1, 65, 1);
    bad(text, "stream.custom_parameters");
    free(text);
    text = params_reply(1, 4, 513);
    bad(text, "stream.custom_parameters");
    free(text);
    bad(WS "{\"\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"
           "\u00e9\u00e9"
           "\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9\u00e9"
           "\u00e9\u00e9x\":\"x\"}}}",
        "stream.custom_parameters");
    /* Not an object, null, an empty key, values that are not strings. */
    bad(WS "null}}", "stream.custom_parameters");
    bad(WS "[]}}", "stream.custom_parameters");
    bad(WS "\"a=b\"}}", "stream.custom_parameters");
    bad(WS "1}}", "stream.custom_parameters");
    bad(WS "true}}", "stream.custom_parameters");
    bad(WS "{\"\":\"x\"}}}", "stream.custom_parameters");
    bad(WS "{\"a\":null}}}", "stream.custom_parameters");
    bad(WS "{\"a\":1}}}", "stream.custom_parameters");
    bad(WS "{\"a\":true}}}", "stream.custom_parameters");
    bad(WS "{\"a\":{}}}}", "stream.custom_parameters");
    bad(WS "{\"a\":[\"x\"]}}}", "stream.custom_parameters");
    bad(WS "{\"a\":\"x\",\"b\":2}}}", "stream.custom_parameters");
    /* U+0000 and duplicate keys make the body itself invalid (strict reading). */
    bad(WS "{\"a\":\"x\\u0000y\"}}}", "body");
    bad(WS "{\"a\":\"x\",\"a\":\"y\"}}}", "body");
    /* A bad custom_parameters is listed beside the other bad fields. */
    {
        struct field_errors fe;

        assert_int_equal(parse("{\"stream\":{\"url\":1,\"custom_parameters\":2}}", &cfg, &fe),
                         ERR_INVALID);
        assert_int_equal(fe.n, 2);
        assert_string_equal(fe.e[0].field, "stream.url");
        assert_string_equal(fe.e[1].field, "stream.custom_parameters");
    }
}

static void test_ulid_vectors(void **state)
{
    /* Expected values computed independently as (ms << 80 | rnd) in base 32;
     * 1469918176385 -> "01ARYZ6S41" is the ULID specification's own example. */
    static const struct ulid_case cases[] = {
        {0, {0}, "00000000000000000000000000"},
        {ULID_TIME_MAX, {0}, "7ZZZZZZZZZ0000000000000000"},
        {ULID_TIME_MAX,
         {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
         "7ZZZZZZZZZZZZZZZZZZZZZZZZZ"},
        {1469918176385, {0}, "01ARYZ6S410000000000000000"},
        {1469918176385, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, "01ARYZ6S41041061050R3GG28A"},
        {1700000000000,
         {0xde, 0xad, 0xbe, 0xef, 0, 1, 2, 3, 0xfe, 0xff},
         "01HF7YAT00VTPVXVR004107ZQZ"},
        {1, {0}, "00000000010000000000000000"},
        {0, {0, 0, 0, 0, 0, 0, 0, 0, 0, 1}, "00000000000000000000000001"},
        /* Out of range: clamped. */
        {-5, {0}, "00000000000000000000000000"},
        {ULID_TIME_MAX + 1, {0}, "7ZZZZZZZZZ0000000000000000"},
        {INT64_MAX, {0}, "7ZZZZZZZZZ0000000000000000"},
    };
    char out[ULID_LEN + 1];
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        memset(out, 'x', sizeof(out));
        ulid_encode(cases[i].ms, cases[i].rnd, out);
        assert_string_equal(out, cases[i].want);
    }
}

static void test_ulid_alphabet_and_order(void **state)
{
    unsigned char rnd[ULID_RANDOM_BYTES];
    char a[ULID_LEN + 1], b[ULID_LEN + 1];
    int64_t ms;
    int i, k;

    (void)state;
    for (i = 0; i < 2000; i++) {
        for (k = 0; k < ULID_RANDOM_BYTES; k++)
            rnd[k] = (unsigned char)(i * 37 + k * 101);
        ms = (int64_t)i * 1234567891LL;
        ulid_encode(ms, rnd, a);
        ulid_encode(ms + 1, rnd, b);
        assert_int_equal(strlen(a), ULID_LEN);
        assert_int_equal(strspn(a, "0123456789ABCDEFGHJKMNPQRSTVWXYZ"), ULID_LEN);
        /* Lexical order follows time. */
        assert_true(strcmp(a, b) < 0);
    }
}

static void test_stream_id(void **state)
{
    static const unsigned char rnd[ULID_RANDOM_BYTES] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
    char id[STREAM_ID_MAX];

    (void)state;
    stream_id_make(id, STREAM_DIR_INBOUND, false, 1469918176385, rnd);
    assert_string_equal(id, "SFV_STRM_IN_01ARYZ6S41041061050R3GG28A");
    stream_id_make(id, STREAM_DIR_OUTBOUND, false, 1469918176385, rnd);
    assert_string_equal(id, "SFV_STRM_OUT_01ARYZ6S41041061050R3GG28A");
    assert_int_equal(strlen(id), STREAM_ID_MAX - 1);
    stream_id_make(id, STREAM_DIR_BOTH, false, 1469918176385, rnd);
    assert_string_equal(id, "SFV_STRM_OUT_01ARYZ6S41041061050R3GG28A");
    stream_id_make(id, STREAM_DIR_INBOUND, true, 0, rnd);
    assert_string_equal(id, "SFV_STRM_BI_0000000000041061050R3GG28A");
    stream_id_make(id, STREAM_DIR_OUTBOUND, true, 0, rnd);
    assert_string_equal(id, "SFV_STRM_BI_0000000000041061050R3GG28A");
    stream_id_make(id, STREAM_DIR_BOTH, true, 0, rnd);
    assert_string_equal(id, "SFV_STRM_BI_0000000000041061050R3GG28A");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_spec_example),
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_all_set),
        cmocka_unit_test(test_codec),
        cmocka_unit_test(test_direction),
        cmocka_unit_test(test_sample_rate),
        cmocka_unit_test(test_rate_allowed),
        cmocka_unit_test(test_bad_codec_skips_rate_check),
        cmocka_unit_test(test_stream_timeout),
        cmocka_unit_test(test_booleans),
        cmocka_unit_test(test_url_field),
        cmocka_unit_test(test_structure),
        cmocka_unit_test(test_every_error_listed),
        cmocka_unit_test(test_body_cap),
        cmocka_unit_test(test_url_table),
        cmocka_unit_test(test_url_embedded_nul),
        cmocka_unit_test(test_url_length),
        cmocka_unit_test(test_names),
        cmocka_unit_test(test_custom_parameters),
        cmocka_unit_test(test_ulid_vectors),
        cmocka_unit_test(test_ulid_alphabet_and_order),
        cmocka_unit_test(test_stream_id),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

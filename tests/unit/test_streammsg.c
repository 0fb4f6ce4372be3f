/* test_streammsg: the audio stream's messages of CALLS.md section 7, byte
 * for byte on the way out, and every rule of the customer's messages on
 * the way in (what is accepted, what is ignored and why). */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "call/streammsg.h"

static uint8_t audio[STREAMMSG_AUDIO_MAX];

static void parse(const char *s, struct streammsg_in *in)
{
    streammsg_parse(s, strlen(s), audio, sizeof(audio), in);
}

static void test_out_messages(void **state)
{
    struct buf b;
    const uint8_t pcm[5] = {0xd5, 0xd5, 0x00, 0xff, 0x7f};

    (void)state;
    buf_init(&b, 1 << 20);
    assert_int_equal(streammsg_start(&b, "SFV_STRM_BI_01ARZ3NDEKTSV4RRFFQ69G5FAV",
                                     "9b2f0c1e-1111-4222-8333-444455556666", "audio/PCMA", 8000,
                                     NULL, 0, NULL),
                     ERR_OK);
    assert_string_equal(b.data, "{\"event\":\"start\",\"streamId\":"
                                "\"SFV_STRM_BI_01ARZ3NDEKTSV4RRFFQ69G5FAV\",\"callId\":"
                                "\"9b2f0c1e-1111-4222-8333-444455556666\",\"mediaFormat\":"
                                "{\"contentType\":\"audio/PCMA\",\"sampleRate\":8000}}");
    buf_reset(&b);
    assert_int_equal(
        streammsg_media(&b, "S", pcm, sizeof(pcm), "audio/x-l16", 16000, "inbound", 40, 3), ERR_OK);
    assert_string_equal(b.data, "{\"event\":\"media\",\"streamId\":\"S\",\"media\":{\"payload\":"
                                "\"1dUA/38=\",\"contentType\":\"audio/x-l16\",\"sampleRate\":"
                                "16000,\"track\":\"inbound\",\"timestamp\":\"40\",\"chunk\":3}}");
    assert_int_equal(strlen(b.data), b.len);
    buf_reset(&b);
    assert_int_equal(streammsg_dtmf(&b, "S", '#'), ERR_OK);
    assert_string_equal(b.data,
                        "{\"event\":\"dtmf\",\"streamId\":\"S\",\"dtmf\":{\"digit\":\"#\"}}");
    buf_reset(&b);
    assert_int_equal(streammsg_cleared(&b, "S", 0, 0, NULL, 0), ERR_OK);
    assert_string_equal(b.data, "{\"event\":\"clearedAudio\",\"streamId\":\"S\",\"playedMs\":0,"
                                "\"discardedMs\":0,\"clearedCheckpoints\":[]}");
    buf_reset(&b);
    {
        const char *names[] = {"t7", "\xc3\xa9\"x"};

        assert_int_equal(streammsg_cleared(&b, "S", 1840, 2260, names, 2), ERR_OK);
        assert_string_equal(b.data, "{\"event\":\"clearedAudio\",\"streamId\":\"S\","
                                    "\"playedMs\":1840,\"discardedMs\":2260,"
                                    "\"clearedCheckpoints\":[\"t7\",\"\xc3\xa9\\\"x\"]}");
        buf_reset(&b);
    }
    assert_int_equal(streammsg_played(&b, "S", "gr\"eet", 120), ERR_OK);
    assert_string_equal(b.data, "{\"event\":\"playedStream\",\"streamId\":\"S\",\"name\":"
                                "\"gr\\\"eet\",\"playedMs\":120}");
    buf_reset(&b);
    assert_int_equal(streammsg_digits_sent(&b, "S", "12w#"), ERR_OK);
    assert_string_equal(b.data,
                        "{\"event\":\"digitsSent\",\"streamId\":\"S\",\"digits\":\"12w#\"}");
    buf_release(&b);
}

static void test_media_too_large_for_buffer(void **state)
{
    struct buf b;
    uint8_t big[300] = {0};

    (void)state;
    buf_init(&b, 200);
    assert_int_equal(
        streammsg_media(&b, "S", big, sizeof(big), "audio/PCMA", 8000, "inbound", 0, 1),
        ERR_TOO_LARGE);
    buf_release(&b);
}

static void test_in_play(void **state)
{
    struct streammsg_in in;

    (void)state;
    parse("{\"event\":\"playAudio\",\"media\":{\"contentType\":\"audio/PCMA\",\"sampleRate\":8000,"
          "\"payload\":\"1dUA/38=\"}}",
          &in);
    assert_int_equal(in.kind, STREAMMSG_PLAY);
    assert_string_equal(in.content_type, "audio/PCMA");
    assert_int_equal(in.sample_rate, 8000);
    assert_int_equal(in.audio_len, 5);
    assert_memory_equal(in.audio, "\xd5\xd5\x00\xff\x7f", 5);
    /* Without padding, with a streamId, and unknown fields beside. */
    parse("{\"event\":\"playAudio\",\"streamId\":\"x\",\"extra\":[1],\"media\":{\"contentType\":"
          "\"audio/x-l16\",\"sampleRate\":16000,\"payload\":\"1dUA/38\"}}",
          &in);
    assert_int_equal(in.kind, STREAMMSG_PLAY);
    assert_int_equal(in.audio_len, 5);
    /* An empty payload is a valid, empty playAudio. */
    parse("{\"event\":\"playAudio\",\"media\":{\"contentType\":\"audio/PCMU\",\"sampleRate\":8000,"
          "\"payload\":\"\"}}",
          &in);
    assert_int_equal(in.kind, STREAMMSG_PLAY);
    assert_int_equal(in.audio_len, 0);
}

static void test_in_ignored(void **state)
{
    static const char *const bad[] = {
        "",
        "not json",
        "[]",
        "{}",
        "{\"event\":5}",
        "{\"event\":\"stop\"}",
        "{\"event\":\"playaudio\",\"media\":{\"contentType\":\"audio/PCMA\",\"sampleRate\":8000,"
        "\"payload\":\"\"}}",
        "{\"event\":\"playAudio\"}",
        "{\"event\":\"playAudio\",\"media\":{\"contentType\":\"audio/"
        "PCMA\",\"sampleRate\":\"8000\","
        "\"payload\":\"\"}}",
        "{\"event\":\"playAudio\",\"media\":{\"contentType\":\"audio/PCMA\",\"sampleRate\":8000.5,"
        "\"payload\":\"\"}}",
        "{\"event\":\"playAudio\",\"media\":{\"contentType\":\"audio/PCMA\",\"sampleRate\":8000,"
        "\"payload\":\"1d U\"}}",
        "{\"event\":\"playAudio\",\"media\":{\"contentType\":\"audio/PCMA\",\"sampleRate\":8000,"
        "\"payload\":\"1dUA/38==\"}}",
        "{\"event\":\"playAudio\",\"media\":{\"contentType\":\"audio/PCMA\",\"sampleRate\":8000,"
        "\"payload\":\"1d-_\"}}",
        "{\"event\":\"playAudio\",\"media\":{\"contentType\":\"audio/PCMA\",\"sampleRate\":8000,"
        "\"payload\":5}}",
        "{\"event\":\"checkpoint\"}",
        "{\"event\":\"checkpoint\",\"name\":\"\"}",
        "{\"event\":\"checkpoint\",\"name\":7}",
        "{\"event\":\"checkpoint\",\"name\":"
        "\"12345678901234567890123456789012345678901234567890123456789012345\"}",
        "{\"event\":\"clearAudio\",\"event\":\"clearAudio\"}",
        "{\"event\":\"hangup\",\"afterPlayback\":\"true\"}",
        "{\"event\":\"hangup\",\"afterPlayback\":1}",
        "{\"event\":\"hangup\",\"afterPlayback\":null}",
        "{\"event\":\"Hangup\"}",
        "{\"event\":\"sendDigits\"}",
        "{\"event\":\"sendDigits\",\"digits\":\"\"}",
        "{\"event\":\"sendDigits\",\"digits\":12}",
        "{\"event\":\"sendDigits\",\"digits\":\"1 2\"}",
        "{\"event\":\"sendDigits\",\"digits\":\"12a\"}",
        "{\"event\":\"sendDigits\",\"digits\":\"E\"}",
        "{\"event\":\"sendDigits\",\"digits\":\"W\"}",
        "{\"event\":\"sendDigits\",\"digits\":\"1\\u0000\"}",
        "{\"event\":\"sendDigits\",\"digits\":"
        "\"12345678901234567890123456789012345678901234567890123456789012345\"}",
    };
    struct streammsg_in in;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        parse(bad[i], &in);
        if (in.kind != STREAMMSG_IGNORED || !in.why)
            fail_msg("case %zu accepted: %s", i, bad[i]);
    }
}

static void test_in_checkpoint_and_clear(void **state)
{
    struct streammsg_in in;

    (void)state;
    parse("{\"event\":\"checkpoint\",\"streamId\":\"S\",\"name\":\"greeting\"}", &in);
    assert_int_equal(in.kind, STREAMMSG_CHECKPOINT);
    assert_string_equal(in.name, "greeting");
    parse("{\"event\":\"checkpoint\",\"name\":"
          "\"1234567890123456789012345678901234567890123456789012345678901234\"}",
          &in);
    assert_int_equal(in.kind, STREAMMSG_CHECKPOINT);
    assert_int_equal(strlen(in.name), 64);
    parse("{\"event\":\"clearAudio\",\"streamId\":\"S\"}", &in);
    assert_int_equal(in.kind, STREAMMSG_CLEAR);
}

/* The decoded audio never passes the caller's buffer. */
static void test_in_agent_events(void **state)
{
    struct streammsg_in in;

    (void)state;
    parse("{\"event\":\"hangup\"}", &in);
    assert_int_equal(in.kind, STREAMMSG_HANGUP);
    assert_false(in.after_playback);
    parse("{\"event\":\"hangup\",\"afterPlayback\":true,\"streamId\":\"x\"}", &in);
    assert_int_equal(in.kind, STREAMMSG_HANGUP);
    assert_true(in.after_playback);
    parse("{\"event\":\"hangup\",\"afterPlayback\":false}", &in);
    assert_int_equal(in.kind, STREAMMSG_HANGUP);
    assert_false(in.after_playback);
    parse("{\"event\":\"sendDigits\",\"digits\":\"0123456789*#ABCDw\"}", &in);
    assert_int_equal(in.kind, STREAMMSG_DIGITS);
    assert_string_equal(in.digits, "0123456789*#ABCDw");
    parse("{\"event\":\"sendDigits\",\"digits\":"
          "\"1234567890123456789012345678901234567890123456789012345678901234\"}",
          &in);
    assert_int_equal(in.kind, STREAMMSG_DIGITS);
    assert_int_equal(strlen(in.digits), 64);
    /* Plivo's content type names are ours. */
    parse("{\"event\":\"playAudio\",\"media\":{\"contentType\":\"audio/x-mulaw\","
          "\"sampleRate\":8000,\"payload\":\"/w==\"}}",
          &in);
    assert_int_equal(in.kind, STREAMMSG_PLAY);
    assert_string_equal(in.content_type, "audio/PCMU");
    parse("{\"event\":\"playAudio\",\"media\":{\"contentType\":\"audio/x-alaw\","
          "\"sampleRate\":8000,\"payload\":\"1Q==\"}}",
          &in);
    assert_string_equal(in.content_type, "audio/PCMA");
    parse("{\"event\":\"playAudio\",\"media\":{\"contentType\":\"audio/X-MULAW\","
          "\"sampleRate\":8000,\"payload\":\"/w==\"}}",
          &in);
    assert_string_equal(in.content_type, "audio/X-MULAW");
}

static void test_in_audio_cap(void **state)
{
    struct streammsg_in in;
    uint8_t small[4];
    const char *s = "{\"event\":\"playAudio\",\"media\":{\"contentType\":\"audio/PCMA\","
                    "\"sampleRate\":8000,\"payload\":\"1dUA/38=\"}}";

    (void)state;
    streammsg_parse(s, strlen(s), small, sizeof(small), &in);
    assert_int_equal(in.kind, STREAMMSG_IGNORED);
    streammsg_parse(s, STREAMMSG_IN_MAX + 1, small, sizeof(small), &in);
    assert_int_equal(in.kind, STREAMMSG_IGNORED);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_out_messages),
        cmocka_unit_test(test_media_too_large_for_buffer),
        cmocka_unit_test(test_in_play),
        cmocka_unit_test(test_in_ignored),
        cmocka_unit_test(test_in_checkpoint_and_clear),
        cmocka_unit_test(test_in_agent_events),
        cmocka_unit_test(test_in_audio_cap),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

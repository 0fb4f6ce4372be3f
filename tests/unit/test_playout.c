/* test_playout: the play-out queue (frames, silence padding, bytes across
 * frame boundaries, checkpoints, clearAudio, caps) and the RFC 4733 DTMF
 * de-duplicator. */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <string.h>

#include "media/g711.h"
#include "media/playout.h"

#define FRAME 160 /* 20 ms of PCMA/PCMU at 8 kHz */

static void fill_seq(uint8_t *p, size_t n, unsigned start)
{
    for (size_t i = 0; i < n; i++)
        p[i] = (uint8_t)(start + i);
}

static void empty_queue_gives_silence(void **state)
{
    struct playout q;
    uint8_t out[FRAME + 1], l16[320];
    const char *done[PLAYOUT_MAX_CHECKPOINTS];
    int ndone = -1;
    size_t i;

    (void)state;
    playout_init(&q, 1000, G711_ALAW_SILENCE);
    out[FRAME] = 0x42; /* guard: exactly one frame is written */
    assert_int_equal(playout_frame(&q, out, FRAME, done, &ndone), 0);
    assert_int_equal(ndone, 0);
    for (i = 0; i < FRAME; i++)
        assert_int_equal(out[i], 0xD5);
    assert_int_equal(out[FRAME], 0x42);
    playout_release(&q);

    playout_init(&q, 1000, G711_ULAW_SILENCE);
    assert_int_equal(playout_frame(&q, out, FRAME, done, &ndone), 0);
    assert_int_equal(out[0], 0xFF);
    assert_int_equal(out[FRAME - 1], 0xFF);
    playout_release(&q);

    playout_init(&q, 1000, PLAYOUT_SILENCE_L16);
    memset(l16, 0x77, sizeof(l16));
    assert_int_equal(playout_frame(&q, l16, 320, done, &ndone), 0); /* 20 ms of L16 at 8 kHz */
    for (i = 0; i < sizeof(l16); i++)
        assert_int_equal(l16[i], 0x00);
    playout_release(&q);
}

static void bytes_cross_frame_boundaries_exactly(void **state)
{
    struct playout q;
    uint8_t in[400], out[FRAME];
    const char *done[PLAYOUT_MAX_CHECKPOINTS];
    int ndone;
    size_t i;

    (void)state;
    fill_seq(in, sizeof(in), 0);
    playout_init(&q, 100000, G711_ALAW_SILENCE);
    /* Pushes of odd sizes, drained in fixed frames. */
    assert_int_equal(playout_push(&q, in, 100), ERR_OK);
    assert_int_equal(playout_push(&q, in + 100, 1), ERR_OK);
    assert_int_equal(playout_push(&q, in + 101, 299), ERR_OK);
    assert_int_equal(playout_queued(&q), 400);
    assert_int_equal(playout_frame(&q, out, FRAME, done, &ndone), FRAME);
    assert_memory_equal(out, in, FRAME);
    assert_int_equal(playout_frame(&q, out, FRAME, done, &ndone), FRAME);
    assert_memory_equal(out, in + FRAME, FRAME);
    /* The last 80 bytes, then 80 bytes of silence. */
    assert_int_equal(playout_frame(&q, out, FRAME, done, &ndone), 80);
    assert_memory_equal(out, in + 2 * FRAME, 80);
    for (i = 80; i < FRAME; i++)
        assert_int_equal(out[i], 0xD5);
    assert_int_equal(playout_queued(&q), 0);
    /* L16 frame size (8 kHz: 320 bytes) works the same way. */
    assert_int_equal(playout_push(&q, in, 400), ERR_OK);
    {
        uint8_t big[320];

        assert_int_equal(playout_frame(&q, big, sizeof(big), done, &ndone), 320);
        assert_memory_equal(big, in, 320);
    }
    playout_release(&q);
}

static void ring_wraps_and_grows(void **state)
{
    struct playout q;
    uint8_t in[3000], out[FRAME], expect;
    const char *done[PLAYOUT_MAX_CHECKPOINTS];
    int ndone;
    unsigned next_in = 0, next_out = 0;
    int round;
    size_t i;

    (void)state;
    playout_init(&q, 20000, G711_ULAW_SILENCE);
    /* Push more than is drained each round so the ring wraps and grows. */
    for (round = 0; round < 40; round++) {
        size_t n = 170 + (size_t)round * 7; /* > FRAME: the queue grows */

        fill_seq(in, n, next_in);
        assert_int_equal(playout_push(&q, in, n), ERR_OK);
        next_in += (unsigned)n;
        assert_int_equal(playout_frame(&q, out, FRAME, done, &ndone), FRAME);
        for (i = 0; i < FRAME; i++) {
            expect = (uint8_t)next_out++;
            assert_int_equal(out[i], expect);
        }
    }
    assert_int_equal(playout_queued(&q), next_in - next_out);
    while (playout_queued(&q) > 0) {
        size_t got = playout_frame(&q, out, FRAME, done, &ndone);

        for (i = 0; i < got; i++) {
            expect = (uint8_t)next_out++;
            assert_int_equal(out[i], expect);
        }
    }
    assert_int_equal(next_out, next_in);
    playout_release(&q);
}

static void checkpoints_follow_their_audio(void **state)
{
    struct playout q;
    uint8_t in[500], out[FRAME];
    const char *done[PLAYOUT_MAX_CHECKPOINTS];
    int ndone;

    (void)state;
    memset(in, 0x11, sizeof(in));
    playout_init(&q, 100000, G711_ALAW_SILENCE);
    assert_int_equal(playout_push(&q, in, 200), ERR_OK); /* bytes 0..199 */
    assert_int_equal(playout_checkpoint(&q, "a"), ERR_OK);
    assert_int_equal(playout_checkpoint(&q, "b"), ERR_OK); /* same point as a */
    assert_int_equal(playout_push(&q, in, 120), ERR_OK);   /* 200..319 */
    assert_int_equal(playout_checkpoint(&q, "c"), ERR_OK);
    assert_int_equal(playout_push(&q, in, 1), ERR_OK); /* 320 */
    assert_int_equal(playout_checkpoint(&q, "d"), ERR_OK);
    assert_int_equal(playout_pending(&q), 4);

    /* Frame 1 sends 0..159: a is not done yet. */
    assert_int_equal(playout_frame(&q, out, FRAME, done, &ndone), FRAME);
    assert_int_equal(ndone, 0);
    /* Frame 2 sends 160..319: a, b, c in order; d waits for byte 320. */
    assert_int_equal(playout_frame(&q, out, FRAME, done, &ndone), FRAME);
    assert_int_equal(ndone, 3);
    assert_string_equal(done[0], "a");
    assert_string_equal(done[1], "b");
    assert_string_equal(done[2], "c");
    assert_int_equal(playout_frame(&q, out, FRAME, done, &ndone), 1);
    assert_int_equal(ndone, 1);
    assert_string_equal(done[0], "d");
    /* Reported once only. */
    assert_int_equal(playout_frame(&q, out, FRAME, done, &ndone), 0);
    assert_int_equal(ndone, 0);
    assert_int_equal(playout_pending(&q), 0);

    /* A checkpoint on an empty queue goes out with the next frame. */
    assert_int_equal(playout_checkpoint(&q, "idle"), ERR_OK);
    assert_int_equal(playout_frame(&q, out, FRAME, done, &ndone), 0);
    assert_int_equal(ndone, 1);
    assert_string_equal(done[0], "idle");
    playout_release(&q);
}

/* A frame stops at the offset a pending action waits at: the rest is
 * silence, the next frame resumes with the audio after it, and each
 * checkpoint comes with its offset. */
static void frame_until_stops_at_the_offset(void **state)
{
    struct playout q;
    uint8_t in[300], out[FRAME];
    const char *names[PLAYOUT_MAX_CHECKPOINTS];
    uint64_t at[PLAYOUT_MAX_CHECKPOINTS];
    uint64_t until;
    int n;
    size_t i;

    (void)state;
    fill_seq(in, sizeof(in), 1);
    playout_init(&q, 100000, G711_ALAW_SILENCE);
    assert_int_equal(playout_push(&q, in, 200), ERR_OK);
    assert_int_equal(playout_checkpoint(&q, "a"), ERR_OK);
    until = playout_pushed(&q);
    assert_int_equal(until, 200);
    assert_int_equal(playout_push(&q, in + 200, 100), ERR_OK);

    assert_int_equal(playout_frame_until(&q, out, FRAME, until, names, at, &n), FRAME);
    assert_int_equal(n, 0);
    assert_memory_equal(out, in, FRAME);
    assert_int_equal(playout_frame_until(&q, out, FRAME, until, names, at, &n), 40);
    assert_memory_equal(out, in + FRAME, 40);
    for (i = 40; i < FRAME; i++)
        assert_int_equal(out[i], 0xD5);
    assert_int_equal(n, 1);
    assert_string_equal(names[0], "a");
    assert_int_equal(at[0], 200);
    assert_int_equal(playout_played(&q), 200);
    /* At the offset: nothing more until it moves. */
    assert_int_equal(playout_frame_until(&q, out, FRAME, until, names, at, &n), 0);
    assert_int_equal(playout_frame_until(&q, out, FRAME, 0, names, at, &n), 0);
    assert_int_equal(playout_queued(&q), 100);
    assert_int_equal(playout_frame(&q, out, FRAME, names, &n), 100);
    assert_memory_equal(out, in + 200, 100);
    assert_int_equal(playout_played(&q), 300);
    assert_int_equal(playout_pushed(&q), 300);
    playout_release(&q);
}

static void clear_drops_audio_and_checkpoints(void **state)
{
    struct playout q;
    uint8_t in[400], out[FRAME];
    const char *names[PLAYOUT_MAX_CHECKPOINTS];
    int n;
    size_t i;

    (void)state;
    memset(in, 0x22, sizeof(in));
    playout_init(&q, 100000, G711_ALAW_SILENCE);
    assert_int_equal(playout_push(&q, in, 400), ERR_OK);
    assert_int_equal(playout_checkpoint(&q, "one"), ERR_OK);
    assert_int_equal(playout_push(&q, in, 10), ERR_OK);
    assert_int_equal(playout_checkpoint(&q, "two"), ERR_OK);
    assert_int_equal(playout_frame(&q, out, FRAME, names, &n), FRAME);
    assert_int_equal(n, 0);

    playout_clear(&q, names, NULL, &n);
    assert_int_equal(n, 2);
    assert_string_equal(names[0], "one");
    assert_string_equal(names[1], "two");
    assert_int_equal(playout_queued(&q), 0);
    assert_int_equal(playout_pending(&q), 0);
    /* Silence at once, and the dropped checkpoints never come back. */
    assert_int_equal(playout_frame(&q, out, FRAME, names, &n), 0);
    assert_int_equal(n, 0);
    for (i = 0; i < FRAME; i++)
        assert_int_equal(out[i], 0xD5);

    /* The queue works normally after a clear; new marks count new audio. */
    fill_seq(in, 200, 5);
    assert_int_equal(playout_push(&q, in, 200), ERR_OK);
    assert_int_equal(playout_checkpoint(&q, "three"), ERR_OK);
    assert_int_equal(playout_frame(&q, out, FRAME, names, &n), FRAME);
    assert_memory_equal(out, in, FRAME);
    assert_int_equal(n, 0);
    assert_int_equal(playout_frame(&q, out, FRAME, names, &n), 40);
    assert_int_equal(n, 1);
    assert_string_equal(names[0], "three");

    /* Clearing an empty queue reports nothing. */
    playout_clear(&q, names, NULL, &n);
    assert_int_equal(n, 0);
    playout_release(&q);
}

static void caps_are_enforced(void **state)
{
    struct playout q;
    static uint8_t in[1000];
    uint8_t out[FRAME];
    const char *done[PLAYOUT_MAX_CHECKPOINTS];
    char name[PLAYOUT_NAME_MAX + 2];
    int ndone, i;

    (void)state;
    playout_init(&q, 1000, G711_ALAW_SILENCE);
    assert_int_equal(playout_push(&q, in, 1001), ERR_TOO_LARGE);
    assert_int_equal(playout_queued(&q), 0);
    assert_int_equal(playout_push(&q, in, 900), ERR_OK);
    /* All or nothing: 101 more would pass the cap, 100 fit exactly. */
    assert_int_equal(playout_push(&q, in, 101), ERR_TOO_LARGE);
    assert_int_equal(playout_queued(&q), 900);
    assert_int_equal(playout_push(&q, in, 100), ERR_OK);
    assert_int_equal(playout_push(&q, in, 1), ERR_TOO_LARGE);
    assert_int_equal(playout_push(&q, in, 0), ERR_OK);
    /* Draining a frame makes room again. */
    assert_int_equal(playout_frame(&q, out, FRAME, done, &ndone), FRAME);
    assert_int_equal(playout_push(&q, in, FRAME), ERR_OK);
    assert_int_equal(playout_push(&q, in, 1), ERR_TOO_LARGE);
    assert_int_equal(playout_queued(&q), 1000);

    /* Names: 1..64 bytes. */
    assert_int_equal(playout_checkpoint(&q, ""), ERR_INVALID);
    memset(name, 'n', PLAYOUT_NAME_MAX + 1);
    name[PLAYOUT_NAME_MAX + 1] = '\0';
    assert_int_equal(playout_checkpoint(&q, name), ERR_TOO_LARGE);
    name[PLAYOUT_NAME_MAX] = '\0';
    assert_int_equal(playout_checkpoint(&q, name), ERR_OK);
    /* Count. */
    for (i = 1; i < PLAYOUT_MAX_CHECKPOINTS; i++)
        assert_int_equal(playout_checkpoint(&q, "x"), ERR_OK);
    assert_int_equal(playout_checkpoint(&q, "x"), ERR_TOO_LARGE);
    assert_int_equal(playout_pending(&q), PLAYOUT_MAX_CHECKPOINTS);
    while (playout_queued(&q) > 0)
        (void)playout_frame(&q, out, FRAME, done, &ndone);
    assert_int_equal(ndone, PLAYOUT_MAX_CHECKPOINTS);
    assert_int_equal(strlen(done[0]), PLAYOUT_NAME_MAX);
    assert_string_equal(done[PLAYOUT_MAX_CHECKPOINTS - 1], "x");
    /* Room for checkpoints again. */
    assert_int_equal(playout_checkpoint(&q, "again"), ERR_OK);
    playout_release(&q);
}

static void dtmf_one_press_despite_retransmits(void **state)
{
    struct dtmf_dedup d;
    char digit = 0;

    (void)state;
    dtmf_dedup_init(&d);
    /* Start and continuation packets share the event's timestamp. */
    assert_false(dtmf_dedup_feed(&d, 1000, 5, false, &digit));
    assert_false(dtmf_dedup_feed(&d, 1000, 5, false, &digit));
    assert_true(dtmf_dedup_feed(&d, 1000, 5, true, &digit));
    assert_int_equal(digit, '5');
    /* The three retransmitted end packets. */
    digit = 0;
    assert_false(dtmf_dedup_feed(&d, 1000, 5, true, &digit));
    assert_false(dtmf_dedup_feed(&d, 1000, 5, true, &digit));
    assert_int_equal(digit, 0);
}

static void dtmf_same_key_twice(void **state)
{
    struct dtmf_dedup d;
    char digit = 0;
    int i, presses = 0;

    (void)state;
    dtmf_dedup_init(&d);
    for (i = 0; i < 3; i++)
        presses += dtmf_dedup_feed(&d, 8000, 11, true, &digit);
    assert_int_equal(digit, '#');
    for (i = 0; i < 3; i++)
        presses += dtmf_dedup_feed(&d, 9600, 11, true, &digit);
    assert_int_equal(presses, 2);
    assert_int_equal(digit, '#');
}

static void dtmf_lost_start_and_ranges(void **state)
{
    struct dtmf_dedup d;
    const char *keys = "0123456789*#ABCD";
    char digit = 0;
    unsigned ev;

    (void)state;
    dtmf_dedup_init(&d);
    /* Only end packets arrive: still one press. */
    assert_true(dtmf_dedup_feed(&d, 0, 0, true, &digit));
    assert_int_equal(digit, '0');
    assert_false(dtmf_dedup_feed(&d, 0, 0, true, &digit));
    /* Every event 0-15 maps to its key. */
    for (ev = 0; ev < 16; ev++) {
        assert_true(dtmf_dedup_feed(&d, 100 + ev * 800, (uint8_t)ev, true, &digit));
        assert_int_equal(digit, keys[ev]);
    }
    /* Out of range: ignored, and the last press's state is untouched. */
    digit = 'z';
    assert_false(dtmf_dedup_feed(&d, 50000, 16, true, &digit));
    assert_false(dtmf_dedup_feed(&d, 50000, 255, true, &digit));
    assert_int_equal(digit, 'z');
    assert_false(dtmf_dedup_feed(&d, 100 + 15 * 800, 15, true, &digit));
    /* RTP timestamps wrap: a new event right after the wrap is a press. */
    assert_true(dtmf_dedup_feed(&d, UINT32_MAX, 1, true, &digit));
    assert_true(dtmf_dedup_feed(&d, 160, 1, true, &digit));
    assert_int_equal(digit, '1');
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(empty_queue_gives_silence),
        cmocka_unit_test(bytes_cross_frame_boundaries_exactly),
        cmocka_unit_test(ring_wraps_and_grows),
        cmocka_unit_test(checkpoints_follow_their_audio),
        cmocka_unit_test(frame_until_stops_at_the_offset),
        cmocka_unit_test(clear_drops_audio_and_checkpoints),
        cmocka_unit_test(caps_are_enforced),
        cmocka_unit_test(dtmf_one_press_despite_retransmits),
        cmocka_unit_test(dtmf_same_key_twice),
        cmocka_unit_test(dtmf_lost_start_and_ranges),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

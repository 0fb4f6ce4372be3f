/* Fuzzes the reader of the customer's stream messages (streammsg_parse).
 * Whatever the input: a recognised message obeys its contract (a checkpoint
 * name of 1 to 64 bytes, playAudio audio within the buffer, sendDigits
 * digits of 1 to 64 characters of the allowed set), a rejected one says
 * why, and what sfvopi writes back from it (media, playedStream,
 * digitsSent) parses back as JSON. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "call/streammsg.h"
#include "json/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t audio[STREAMMSG_AUDIO_MAX];

static void check_json(struct buf *b)
{
    json_t *o = NULL;

    if (js_parse_object(b->data, b->len, &o) != ERR_OK)
        abort();
    json_decref(o);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct streammsg_in in;
    struct buf b;

    streammsg_parse((const char *)data, size, audio, sizeof(audio), &in);
    switch (in.kind) {
    case STREAMMSG_IGNORED:
        if (!in.why)
            abort();
        break;
    case STREAMMSG_CHECKPOINT:
        if (strlen(in.name) < 1 || strlen(in.name) > PLAYOUT_NAME_MAX)
            abort();
        buf_init(&b, 4096);
        if (streammsg_played(&b, "SFV_STRM_BI_X", in.name, 20) == ERR_OK)
            check_json(&b);
        buf_release(&b);
        break;
    case STREAMMSG_DIGITS:
        if (strlen(in.digits) < 1 || strlen(in.digits) > STREAMMSG_DIGITS_MAX ||
            strspn(in.digits, "0123456789*#ABCDw") != strlen(in.digits))
            abort();
        buf_init(&b, 4096);
        if (streammsg_digits_sent(&b, "SFV_STRM_BI_X", in.digits) == ERR_OK)
            check_json(&b);
        buf_release(&b);
        break;
    case STREAMMSG_HANGUP: break;
    case STREAMMSG_PLAY:
        if (in.audio_len > sizeof(audio) || in.audio_len > size)
            abort();
        buf_init(&b, 4 * 1024 * 1024);
        if (streammsg_media(&b, "SFV_STRM_BI_X", in.audio, in.audio_len, "audio/PCMA", 8000,
                            "outbound", 20, 1) == ERR_OK)
            check_json(&b);
        buf_release(&b);
        break;
    case STREAMMSG_CLEAR: break;
    }
    return 0;
}

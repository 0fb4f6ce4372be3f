/* codec: the audio formats of a call's stream (CALLS.md section 6), as the
 * media layer converts them: G.711 A-law and mu-law at 8000 Hz, and L16 at
 * the rates section 6 allows. Pure; thread-safe. */
#ifndef SFVOPI_MEDIA_CODEC_H
#define SFVOPI_MEDIA_CODEC_H

#include <stdbool.h>

enum stream_codec {
    STREAM_CODEC_PCMA,
    STREAM_CODEC_PCMU,
    STREAM_CODEC_L16,
};

/* True when rate (Hz) is allowed for codec: PCMA and PCMU only 8000; L16
 * 8000, 16000, 24000, 32000, 44100 or 48000. */
bool stream_rate_allowed(enum stream_codec codec, long long rate);

#endif

/* codec: which sample rates each stream format allows. */
#include "media/codec.h"

bool stream_rate_allowed(enum stream_codec codec, long long rate)
{
    switch (codec) {
    case STREAM_CODEC_PCMA:
    case STREAM_CODEC_PCMU: return rate == 8000;
    case STREAM_CODEC_L16:
        return rate == 8000 || rate == 16000 || rate == 24000 || rate == 32000 || rate == 44100 ||
               rate == 48000;
    }
    return false;
}

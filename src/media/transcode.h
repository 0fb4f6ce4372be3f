/* transcode: one call's audio converter between the party's RTP codec
 * (G.711 A-law or mu-law, 8000 Hz, 20 ms = 160 bytes) and the stream format
 * the customer chose (CALLS.md 6: PCMA/PCMU at 8000 Hz, or L16 signed 16-bit
 * little-endian at 8000..48000 Hz). Each direction has its own resampler
 * state. No clocks, sockets or queues: the engine frames and times.
 * Not thread-safe: one call's converter belongs to the thread driving it. */
#ifndef SFVOPI_MEDIA_TRANSCODE_H
#define SFVOPI_MEDIA_TRANSCODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "media/codec.h"

/* The party's RTP payload, as negotiated in SDP. */
enum party_codec {
    PARTY_CODEC_PCMA, /* RTP payload type 8 */
    PARTY_CODEC_PCMU, /* RTP payload type 0 */
};

#define TRANSCODE_PARTY_RATE 8000
/* One 20 ms party frame: 160 G.711 bytes. */
#define TRANSCODE_PARTY_FRAME 160
/* The largest 20 ms stream payload: L16 at 48000 Hz, 960 samples. */
#define TRANSCODE_STREAM_FRAME_MAX (48000 / 50 * 2)
/* Bytes accepted by one transcode_from_stream call: 60 s of L16 at
 * 48000 Hz, the play-out queue's cap (CALLS.md 7) at the largest rate. */
#define TRANSCODE_FROM_STREAM_MAX ((size_t)60 * 48000 * 2)

struct resample;

/* Caller-embedded. Fields are private to transcode.c. */
struct transcode {
    enum party_codec party;
    enum stream_codec codec;
    int rate;
    struct resample *up;   /* 8000 -> rate, L16 only (a passthrough at 8000) */
    struct resample *down; /* rate -> 8000, L16 only */
    bool have_odd;         /* L16 from the customer: a sample's first byte... */
    uint8_t odd;           /* ...waiting for its second */
};

/* Sets t up for a party in codec party and a stream in codec sc at rate Hz.
 * ERR_INVALID when rate is not allowed for sc (stream_rate_allowed) or an
 * enum is out of range, ERR_NOMEM. On error t needs no release; on success
 * transcode_release frees it. */
enum err transcode_init(struct transcode *t, enum party_codec party, enum stream_codec sc,
                        int rate) WARN_UNUSED;

/* Frees t's resamplers; t may be initialised again afterwards. */
void transcode_release(struct transcode *t);

/* Bytes of one 20 ms stream payload: 160 for PCMA/PCMU, rate / 50 * 2 for
 * L16 (CALLS.md 7). */
size_t transcode_stream_frame_bytes(const struct transcode *t);

/* Converts one 20 ms party frame, party[0..n) with n == TRANSCODE_PARTY_FRAME,
 * to exactly one 20 ms stream payload (transcode_stream_frame_bytes bytes)
 * in out, its size stored in *out_n. Same codec: a byte-exact copy; the
 * other law: through linear (G.711's tables); L16: decoded, resampled from
 * 8000 Hz (a constant filter delay of about 3 ms, the first frame included)
 * and written little-endian. ERR_INVALID when n is not one frame,
 * ERR_TOO_LARGE when cap is below the payload size (nothing written, state
 * unchanged), ERR_INTERNAL on a resampler fault. */
enum err transcode_to_stream(struct transcode *t, const uint8_t *party, size_t n, uint8_t *out,
                             size_t cap, size_t *out_n) WARN_UNUSED;

/* Exactly how many party bytes the next transcode_from_stream(t, ., n, ...)
 * will write: n for PCMA/PCMU; for L16 the whole samples in (a held odd
 * byte counts) resampled to 8000 Hz. SIZE_MAX (fits no buffer) when
 * n > TRANSCODE_FROM_STREAM_MAX, which transcode_from_stream refuses. */
size_t transcode_from_stream_len(const struct transcode *t, size_t n);

/* Converts customer audio in the stream format, in[0..n) of any length, to
 * party codec bytes at 8000 Hz in out (for the play-out queue), the count
 * stored in *out_n. For L16, a trailing odd byte is held and joined to the
 * next call's first byte: playAudio payloads may split a sample, and
 * dropping the byte would swap the byte order of all later audio. The
 * resampler is streaming, so audio split across calls at any boundary comes
 * out as if sent in one piece, and the count is exact: 1 s at rate gives
 * exactly 8000 bytes. The sound itself is delayed by the filter, about
 * 3 ms: the first bytes ever are its ramp-up from silence, and the last
 * 3 ms of input come out with the next call's. n == 0 is a no-op.
 * All or nothing: ERR_TOO_LARGE when n > TRANSCODE_FROM_STREAM_MAX or cap
 * is below transcode_from_stream_len (state unchanged, nothing written);
 * ERR_INTERNAL on a resampler fault. */
enum err transcode_from_stream(struct transcode *t, const uint8_t *in, size_t n, uint8_t *out,
                               size_t cap, size_t *out_n) WARN_UNUSED;

/* clearAudio: forgets the customer-to-party history (a held odd byte and
 * the resampler's filter memory), so the next playAudio starts clean. */
void transcode_from_stream_reset(struct transcode *t);

#endif

/* streammsg: the JSON messages of the audio stream (CALLS.md section 7).
 * Writes what sfvopi sends (start, media, dtmf, clearedAudio, playedStream,
 * digitsSent) and reads what the customer sends (playAudio, checkpoint,
 * clearAudio, and AGENT.md's hangup and sendDigits).
 * The customer's text is untrusted: reading validates and decodes only,
 * never allocates beyond named caps, never aborts. Pure; thread-safe. */
#ifndef SFVOPI_CALL_STREAMMSG_H
#define SFVOPI_CALL_STREAMMSG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "call/stream.h"
#include "core/buf.h"
#include "core/err.h"
#include "core/xheaders.h"
#include "media/playout.h"

/* A customer message larger than this is ignored unread (the WebSocket
 * side drops such messages before they get here). */
#define STREAMMSG_IN_MAX ((1 << 20) + 65536)
/* Decoded audio of one playAudio, at most: what base64 in STREAMMSG_IN_MAX
 * can carry (about 98 s of PCMA, 8 s of 48 kHz L16). */
#define STREAMMSG_AUDIO_MAX (STREAMMSG_IN_MAX / 4 * 3)

enum streammsg_kind {
    STREAMMSG_IGNORED,    /* malformed JSON, an unknown event, or a bad field */
    STREAMMSG_PLAY,       /* playAudio */
    STREAMMSG_CHECKPOINT, /* checkpoint */
    STREAMMSG_CLEAR,      /* clearAudio */
    STREAMMSG_HANGUP,     /* hangup (AGENT.md 1) */
    STREAMMSG_DIGITS,     /* sendDigits (AGENT.md 1) */
};

/* sendDigits: at most this many characters of 0-9 * # A-D w. */
#define STREAMMSG_DIGITS_MAX 64

struct streammsg_in {
    enum streammsg_kind kind;
    /* PLAY: the media's contentType and sampleRate as sent (the caller
     * drops audio in another format), and the decoded payload. */
    char content_type[32];
    long long sample_rate;
    uint8_t *audio; /* caller's buffer */
    size_t audio_len;
    /* CHECKPOINT: the name, 1 to PLAYOUT_NAME_MAX bytes. */
    char name[PLAYOUT_NAME_MAX + 1];
    /* HANGUP: afterPlayback (false when absent). */
    bool after_playback;
    /* DIGITS: 1 to STREAMMSG_DIGITS_MAX characters, NUL-terminated. */
    char digits[STREAMMSG_DIGITS_MAX + 1];
    const char *why; /* IGNORED: a short static reason, for debug logs */
};

/* Reads one text message. audio (audio_cap bytes, at least
 * STREAMMSG_AUDIO_MAX to accept every valid playAudio) receives a
 * playAudio's decoded payload. Fields: "event" is required; playAudio
 * needs "media" with string "contentType", integer "sampleRate" and a
 * base64 string "payload" (standard alphabet, padding optional), and
 * Plivo's names audio/x-mulaw and audio/x-alaw come back as audio/PCMU and
 * audio/PCMA; checkpoint needs a string "name"; hangup takes an optional
 * boolean "afterPlayback"; sendDigits needs a string "digits" of 1 to
 * STREAMMSG_DIGITS_MAX characters of 0-9 * # A-D w; "streamId" is
 * optional and not checked. Anything else yields STREAMMSG_IGNORED with
 * why set. Never fails otherwise. */
void streammsg_parse(const char *data, size_t len, uint8_t *audio, size_t audio_cap,
                     struct streammsg_in *out);

/* The messages sfvopi sends, appended to out as one JSON object each.
 * ERR_TOO_LARGE / ERR_NOMEM from the buffer.
 * start: after the documented fields, "customParameters" (params[0..nparams),
 * keys and values as received, in that order) and "sipHeaders" (the inbound
 * INVITE's X- headers), each only when it has at least one entry, so that a
 * call without them sends exactly the documented message. params and sip
 * may be NULL for none. */
enum err streammsg_start(struct buf *out, const char *stream_id, const char *call_uuid,
                         const char *content_type, int sample_rate,
                         const struct stream_param *params, size_t nparams,
                         const struct xheaders *sip) WARN_UNUSED;
/* track: "inbound" or "outbound"; timestamp_ms since the stream's start;
 * chunk counts from 1 per track. */
enum err streammsg_media(struct buf *out, const char *stream_id, const uint8_t *audio, size_t n,
                         const char *content_type, int sample_rate, const char *track,
                         int64_t timestamp_ms, uint64_t chunk) WARN_UNUSED;
enum err streammsg_dtmf(struct buf *out, const char *stream_id, char digit) WARN_UNUSED;
/* clearedAudio: played_ms of customer audio sent to the party since the
 * previous clearAudio (or start), discarded_ms dropped by this one, and
 * the n checkpoint names it dropped, in order. */
enum err streammsg_cleared(struct buf *out, const char *stream_id, int64_t played_ms,
                           int64_t discarded_ms, const char *const *names, int n) WARN_UNUSED;
/* playedStream: played_ms counted like clearedAudio's, up to the checkpoint. */
enum err streammsg_played(struct buf *out, const char *stream_id, const char *name,
                          int64_t played_ms) WARN_UNUSED;
enum err streammsg_digits_sent(struct buf *out, const char *stream_id,
                               const char *digits) WARN_UNUSED;

#endif

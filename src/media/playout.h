/* playout: the outbound half of one call's audio bridge, without clocks or
 * sockets. A bounded byte queue of customer audio (playAudio) with named
 * checkpoints, drained one 20 ms frame at a time by the caller's ticker,
 * plus a de-duplicator for RFC 4733 telephone events (dtmf). It never reads
 * a clock and never sends anything: the engine owns timing and messages.
 * Not thread-safe: one call's queue belongs to the thread driving it. */
#ifndef SFVOPI_MEDIA_PLAYOUT_H
#define SFVOPI_MEDIA_PLAYOUT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

#define PLAYOUT_MAX_SECONDS 60      /* CALLS.md 7: the queue holds at most 60 s */
#define PLAYOUT_MAX_CHECKPOINTS 128 /* pending checkpoints per call */
#define PLAYOUT_NAME_MAX 64         /* bytes in a checkpoint name, without the NUL */

#define PLAYOUT_SILENCE_L16 0x00 /* silence byte of audio/x-l16 */

struct playout_mark {
    char name[PLAYOUT_NAME_MAX + 1];
    uint64_t at; /* stream offset: played once this many bytes have been */
};

/* Caller-embedded. Fields are private to playout.c. */
struct playout {
    uint8_t *buf; /* ring of cap bytes, grown on demand up to max */
    size_t cap, head, len, max;
    uint64_t pushed, played; /* bytes ever queued / ever sent or dropped */
    uint8_t silence;
    struct playout_mark marks[PLAYOUT_MAX_CHECKPOINTS]; /* ring */
    size_t mark_head, nmarks;
};

/* An empty queue holding at most max_bytes (> 0) of audio, padded with
 * silence (G711_ALAW_SILENCE 0xD5, G711_ULAW_SILENCE 0xFF,
 * PLAYOUT_SILENCE_L16 0x00). For 60 s: 60 * sample_rate * bytes per sample.
 * Allocates nothing until the first push. */
void playout_init(struct playout *q, size_t max_bytes, uint8_t silence);
/* Frees the queue's memory; q may be re-initialised afterwards. */
void playout_release(struct playout *q);

/* Appends n bytes of audio in the stream's codec (copied). All or nothing:
 * ERR_TOO_LARGE when the queue would pass its cap (the playAudio that does
 * not fit is dropped, CALLS.md 7), ERR_NOMEM; the queue is unchanged on
 * error. n == 0 is a no-op. */
enum err playout_push(struct playout *q, const uint8_t *audio, size_t n) WARN_UNUSED;

/* Marks the point after everything queued so far with name (copied; 1 to
 * PLAYOUT_NAME_MAX bytes, NUL-terminated). It is reported by playout_frame
 * once all that audio has gone out; a checkpoint on an empty queue is
 * reported by the next frame. ERR_INVALID for an empty name, ERR_TOO_LARGE
 * for a longer name or when PLAYOUT_MAX_CHECKPOINTS are pending. */
enum err playout_checkpoint(struct playout *q, const char *name) WARN_UNUSED;

/* Fills out with exactly frame_bytes (> 0) bytes: queued audio first, then
 * silence when the queue runs short. Stores in done[0..*ndone) the names of
 * the checkpoints whose audio has now all been sent, oldest first; done must
 * hold PLAYOUT_MAX_CHECKPOINTS pointers. The names are borrowed and stay
 * valid until the next playout_checkpoint or playout_release on q. Returns
 * the number of audio (non-padding) bytes in the frame. */
size_t playout_frame(struct playout *q, uint8_t *out, size_t frame_bytes, const char **done,
                     int *ndone);

/* playout_frame that takes no audio past the stream offset until (the
 * bridge's pending digits and hangup wait there): the rest of the frame is
 * silence. done_at, if not NULL, receives each reported checkpoint's
 * stream offset beside its name (same capacity). */
size_t playout_frame_until(struct playout *q, uint8_t *out, size_t frame_bytes, uint64_t until,
                           const char **done, uint64_t *done_at, int *ndone);

/* clearAudio: drops all queued audio and every pending checkpoint at once.
 * The dropped names go to dropped[0..*ndropped) (same capacity and lifetime
 * as playout_frame's done) so the engine can log them; per CALLS.md 7 it
 * must NOT answer them with playedStream, only send one clearedAudio.
 * dropped_at, if not NULL, receives their stream offsets. */
void playout_clear(struct playout *q, const char **dropped, uint64_t *dropped_at, int *ndropped);

/* Stream offsets: bytes ever queued, and ever sent or dropped by
 * playout_clear. playout_pushed is the offset a checkpoint placed now
 * would get; pushed - played is what is queued. */
uint64_t playout_pushed(const struct playout *q);
uint64_t playout_played(const struct playout *q);

/* Bytes of audio waiting. */
size_t playout_queued(const struct playout *q);
/* Checkpoints waiting. */
size_t playout_pending(const struct playout *q);

/* One key press per RFC 4733 event: the sender repeats an event's packets
 * (same RTP timestamp for the whole event) and sends its end packet three
 * times. A press is reported on the first end packet seen for an
 * (RTP timestamp, event) pair; start and continuation packets are only
 * noted, so a lost start is harmless. A press whose every end packet is
 * lost is not reported. Caller-embedded; zero it with dtmf_dedup_init. */
struct dtmf_dedup {
    bool have;
    uint32_t ts;
    uint8_t event;
};

void dtmf_dedup_init(struct dtmf_dedup *d);

/* Feeds one telephone-event packet. True exactly once per key press, with
 * *digit set to '0'-'9', '*', '#' or 'A'-'D' (events 0-15). Events above
 * 15 (tones, flash, ...) are ignored: false, state unchanged. */
bool dtmf_dedup_feed(struct dtmf_dedup *d, uint32_t rtp_timestamp, uint8_t event, bool end,
                     char *digit);

#endif

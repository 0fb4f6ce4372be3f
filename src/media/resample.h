/* resample: one-channel 16-bit sample-rate conversion for a call's audio,
 * a thin wrapper over speexdsp's resampler (the only file that sees it).
 * Streaming: state carries across calls, so consecutive 20 ms frames join
 * without clicks, and the number of samples out is exact and predictable
 * (resample_out_len). It never reads a clock and never touches I/O.
 * Not thread-safe: one resampler belongs to the thread driving its call. */
#ifndef SFVOPI_MEDIA_RESAMPLE_H
#define SFVOPI_MEDIA_RESAMPLE_H

#include <stddef.h>
#include <stdint.h>

#include "core/err.h"

/* Rates accepted by resample_new, in Hz. */
#define RESAMPLE_RATE_MIN 8000
#define RESAMPLE_RATE_MAX 48000
/* Samples accepted by one resample_process call (about 87 s at 48 kHz);
 * keeps every size computation far from overflow and within speexdsp's
 * 32-bit counts. Callers chunk larger input. */
#define RESAMPLE_IN_MAX (1u << 22)

struct resample;

/* A converter from in_rate to out_rate (both RESAMPLE_RATE_MIN..MAX Hz),
 * stored in *out, owned by the caller (resample_free). Equal rates give a
 * passthrough that copies samples and allocates no speexdsp state.
 * ERR_INVALID for a rate out of range, ERR_NOMEM. *out is written only on
 * success. */
enum err resample_new(int in_rate, int out_rate, struct resample **out) WARN_UNUSED;

/* Frees r; NULL is allowed. */
void resample_free(struct resample *r);

/* Exactly how many samples the next resample_process(r, ., in_n, ...) will
 * write. The converter behaves as if its input had been preceded by
 * silence: after N samples in since resample_new (or resample_reset), the
 * total out is exactly ceil(N * out_rate / in_rate), with a constant delay
 * of resample_delay(r) output samples. So every 20 ms in (in_rate / 50
 * samples) gives exactly out_rate / 50 samples out, from the first call
 * on, for every rate pair of CALLS.md 6. SIZE_MAX (fits no buffer) when
 * in_n > RESAMPLE_IN_MAX, which resample_process refuses. */
size_t resample_out_len(const struct resample *r, size_t in_n);

/* Converts in[0..in_n) and writes resample_out_len(r, in_n) samples to out,
 * stored in *out_n; all input is consumed. out must not overlap in.
 * in_n == 0 is a no-op (in/out may then be NULL). All or nothing:
 * ERR_TOO_LARGE when in_n > RESAMPLE_IN_MAX or out_cap is smaller than
 * resample_out_len (state unchanged, nothing written); ERR_INTERNAL if
 * speexdsp ever disagreed with that count. */
enum err resample_process(struct resample *r, const int16_t *in, size_t in_n, int16_t *out,
                          size_t out_cap, size_t *out_n) WARN_UNUSED;

/* Forgets the history (as after resample_new): the next sample in starts a
 * new, unrelated stream. For clearAudio. */
void resample_reset(struct resample *r);

/* The converter's delay in output samples: a sine in comes out this many
 * samples later (0 for a passthrough). A property of the filter; constant
 * over a stream's life. */
size_t resample_delay(const struct resample *r);

#endif

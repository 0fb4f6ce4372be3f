/* clock: wall-clock and monotonic time in milliseconds, and the one
 * timestamp format of the API (UTC, ISO 8601 with milliseconds and Z).
 * Pure apart from reading the clocks; thread-safe. */
#ifndef SFVOPI_CORE_CLOCK_H
#define SFVOPI_CORE_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* Length of a formatted timestamp, "2026-02-02T10:30:00.000Z", without NUL. */
#define CLOCK_ISO_LEN 24

/* Milliseconds since the Unix epoch (CLOCK_REALTIME). */
int64_t clock_now_ms(void);
/* Milliseconds on a clock that never jumps (CLOCK_MONOTONIC). */
int64_t clock_mono_ms(void);
/* Nanoseconds on the monotonic clock, for durations. */
int64_t clock_mono_ns(void);

/* Writes ms-since-epoch as "YYYY-MM-DDTHH:MM:SS.mmmZ" plus NUL into out.
 * Years outside 0000..9999 are clamped to that range's ends. */
void clock_format_iso(int64_t ms, char out[CLOCK_ISO_LEN + 1]);

#endif

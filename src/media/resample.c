/* resample: speexdsp's resampler behind resample.h. Keeps the converter's
 * phase (input count modulo the reduced input rate) beside speexdsp's state
 * so it can say in advance exactly how many samples a call will produce,
 * and checks speexdsp against it. Must not include speexdsp anywhere else. */
#include "media/resample.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <speex/speex_resampler.h>

/* Quality 3 (SPEEX_RESAMPLER_QUALITY_VOIP): the party side is narrowband
 * G.711, whose content ends by 3.4 kHz and whose own quantisation noise
 * (about 38 dB SNR) sits far above this filter's error, so a longer filter
 * buys nothing audible. It keeps the delay near 3 ms each way and the CPU
 * per call low, which matters with many calls on one loop. */
#define RESAMPLE_QUALITY SPEEX_RESAMPLER_QUALITY_VOIP

struct resample {
    SpeexResamplerState *st; /* NULL for a passthrough */
    uint32_t in_r, out_r;    /* the rates divided by their gcd */
    uint32_t phase;          /* samples in since the start, modulo in_r */
};

static uint32_t gcd_u32(uint32_t a, uint32_t b)
{
    while (b != 0) {
        uint32_t t = a % b;

        a = b;
        b = t;
    }
    return a;
}

enum err resample_new(int in_rate, int out_rate, struct resample **out)
{
    struct resample *r;
    uint32_t g;
    int serr = RESAMPLER_ERR_SUCCESS;

    if (in_rate < RESAMPLE_RATE_MIN || in_rate > RESAMPLE_RATE_MAX ||
        out_rate < RESAMPLE_RATE_MIN || out_rate > RESAMPLE_RATE_MAX)
        return ERR_INVALID;
    r = calloc(1, sizeof(*r));
    if (r == NULL)
        return ERR_NOMEM;
    g = gcd_u32((uint32_t)in_rate, (uint32_t)out_rate);
    r->in_r = (uint32_t)in_rate / g;
    r->out_r = (uint32_t)out_rate / g;
    if (in_rate != out_rate) {
        /* No speex_resampler_skip_zeros: the filter's history starts as
         * silence, so the very first call already yields the full
         * ceil(N * out / in) samples (the first few are the filter's
         * ramp-up from silence) and every 20 ms frame in gives exactly one
         * 20 ms frame out. Skipping the zeros would remove the delay but
         * make the first calls return short. */
        r->st = speex_resampler_init(1, (spx_uint32_t)in_rate, (spx_uint32_t)out_rate,
                                     RESAMPLE_QUALITY, &serr);
        if (r->st == NULL) {
            free(r);
            return serr == RESAMPLER_ERR_ALLOC_FAILED ? ERR_NOMEM : ERR_INTERNAL;
        }
    }
    *out = r;
    return ERR_OK;
}

void resample_free(struct resample *r)
{
    if (r == NULL)
        return;
    if (r->st != NULL)
        speex_resampler_destroy(r->st);
    free(r);
}

/* ceil(n * out_r / in_r) for n < 2^23 (RESAMPLE_IN_MAX plus a phase below
 * in_r); out_r < 2^16, so the product stays below 2^39. */
static uint64_t out_upto(const struct resample *r, uint64_t n)
{
    return (n * r->out_r + r->in_r - 1) / r->in_r;
}

size_t resample_out_len(const struct resample *r, size_t in_n)
{
    if (in_n > RESAMPLE_IN_MAX)
        return SIZE_MAX;
    return (size_t)(out_upto(r, (uint64_t)r->phase + in_n) - out_upto(r, r->phase));
}

enum err resample_process(struct resample *r, const int16_t *in, size_t in_n, int16_t *out,
                          size_t out_cap, size_t *out_n)
{
    size_t want;
    spx_uint32_t ilen, olen;

    *out_n = 0;
    if (in_n > RESAMPLE_IN_MAX)
        return ERR_TOO_LARGE;
    if (in_n == 0)
        return ERR_OK;
    want = resample_out_len(r, in_n);
    if (out_cap < want)
        return ERR_TOO_LARGE;
    if (r->st == NULL) {
        memcpy(out, in, in_n * sizeof(*in));
        *out_n = in_n;
        return ERR_OK;
    }
    ilen = (spx_uint32_t)in_n;
    /* Room for one sample more than expected, so a disagreement shows as a
     * wrong count rather than as input left unread. */
    olen = (spx_uint32_t)(out_cap > want ? want + 1 : want);
    if (speex_resampler_process_int(r->st, 0, in, &ilen, out, &olen) != RESAMPLER_ERR_SUCCESS)
        return ERR_INTERNAL;
    r->phase = (uint32_t)(((uint64_t)r->phase + in_n) % r->in_r);
    if (ilen != in_n || olen != want)
        return ERR_INTERNAL;
    *out_n = olen;
    return ERR_OK;
}

void resample_reset(struct resample *r)
{
    r->phase = 0;
    if (r->st != NULL)
        speex_resampler_reset_mem(r->st);
}

size_t resample_delay(const struct resample *r)
{
    int d;

    if (r->st == NULL)
        return 0;
    d = speex_resampler_get_output_latency(r->st);
    return d > 0 ? (size_t)d : 0;
}

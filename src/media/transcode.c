/* transcode: G.711 <-> stream format for one call, built on g711 and
 * resample. Large customer input is converted in fixed chunks on the stack,
 * so memory use does not depend on input; every size is checked before any
 * state changes. Must not queue, time or send audio. */
#include "media/transcode.h"

#include <stdint.h>
#include <string.h>

#include "media/g711.h"
#include "media/resample.h"

/* Samples per chunk of customer L16: 20 ms at the highest rate. */
#define TRANSCODE_CHUNK 960

static int16_t party_decode(enum party_codec pc, uint8_t code)
{
    return pc == PARTY_CODEC_PCMA ? g711_alaw_decode(code) : g711_ulaw_decode(code);
}

static uint8_t party_encode(enum party_codec pc, int16_t sample)
{
    return pc == PARTY_CODEC_PCMA ? g711_alaw_encode(sample) : g711_ulaw_encode(sample);
}

/* The party codec a G.711 stream codec speaks. */
static enum party_codec law_of(enum stream_codec sc)
{
    return sc == STREAM_CODEC_PCMA ? PARTY_CODEC_PCMA : PARTY_CODEC_PCMU;
}

enum err transcode_init(struct transcode *t, enum party_codec party, enum stream_codec sc, int rate)
{
    enum err e;

    memset(t, 0, sizeof(*t));
    if (party != PARTY_CODEC_PCMA && party != PARTY_CODEC_PCMU)
        return ERR_INVALID;
    if (sc != STREAM_CODEC_PCMA && sc != STREAM_CODEC_PCMU && sc != STREAM_CODEC_L16)
        return ERR_INVALID;
    if (!stream_rate_allowed(sc, rate))
        return ERR_INVALID;
    t->party = party;
    t->codec = sc;
    t->rate = rate;
    if (sc != STREAM_CODEC_L16)
        return ERR_OK;
    e = resample_new(TRANSCODE_PARTY_RATE, rate, &t->up);
    if (e != ERR_OK)
        goto out;
    e = resample_new(rate, TRANSCODE_PARTY_RATE, &t->down);
    if (e != ERR_OK)
        goto out_up;
    return ERR_OK;

out_up:
    resample_free(t->up);
    t->up = NULL;
out:
    return e;
}

void transcode_release(struct transcode *t)
{
    resample_free(t->up);
    resample_free(t->down);
    t->up = t->down = NULL;
    t->have_odd = false;
}

size_t transcode_stream_frame_bytes(const struct transcode *t)
{
    if (t->codec != STREAM_CODEC_L16)
        return TRANSCODE_PARTY_FRAME;
    return (size_t)t->rate / 50 * 2;
}

enum err transcode_to_stream(struct transcode *t, const uint8_t *party, size_t n, uint8_t *out,
                             size_t cap, size_t *out_n)
{
    int16_t lin[TRANSCODE_PARTY_FRAME];
    int16_t res[TRANSCODE_STREAM_FRAME_MAX / 2];
    size_t want = transcode_stream_frame_bytes(t);
    size_t got, i;
    enum err e;

    *out_n = 0;
    if (n != TRANSCODE_PARTY_FRAME)
        return ERR_INVALID;
    if (cap < want)
        return ERR_TOO_LARGE;
    if (t->codec != STREAM_CODEC_L16) {
        enum party_codec law = law_of(t->codec);

        if (law == t->party) {
            memcpy(out, party, n);
        } else {
            for (i = 0; i < n; i++)
                out[i] = party_encode(law, party_decode(t->party, party[i]));
        }
        *out_n = n;
        return ERR_OK;
    }
    for (i = 0; i < n; i++)
        lin[i] = party_decode(t->party, party[i]);
    e = resample_process(t->up, lin, n, res, sizeof(res) / sizeof(res[0]), &got);
    if (e != ERR_OK)
        return ERR_INTERNAL;
    /* resample's count contract: 20 ms in is exactly 20 ms out. */
    if (got * 2 != want)
        return ERR_INTERNAL;
    for (i = 0; i < got; i++) {
        uint16_t u = (uint16_t)res[i];

        out[2 * i] = (uint8_t)(u & 0xFF);
        out[2 * i + 1] = (uint8_t)(u >> 8);
    }
    *out_n = want;
    return ERR_OK;
}

size_t transcode_from_stream_len(const struct transcode *t, size_t n)
{
    if (n > TRANSCODE_FROM_STREAM_MAX)
        return SIZE_MAX;
    if (t->codec != STREAM_CODEC_L16)
        return n;
    return resample_out_len(t->down, (n + (t->have_odd ? 1 : 0)) / 2);
}

enum err transcode_from_stream(struct transcode *t, const uint8_t *in, size_t n, uint8_t *out,
                               size_t cap, size_t *out_n)
{
    int16_t lin[TRANSCODE_CHUNK];
    int16_t res[TRANSCODE_CHUNK];
    size_t pos = 0, written = 0;
    enum err e;

    *out_n = 0;
    if (n > TRANSCODE_FROM_STREAM_MAX)
        return ERR_TOO_LARGE;
    if (n == 0)
        return ERR_OK;
    if (cap < transcode_from_stream_len(t, n))
        return ERR_TOO_LARGE;
    if (t->codec != STREAM_CODEC_L16) {
        enum party_codec law = law_of(t->codec);
        size_t i;

        if (law == t->party) {
            memcpy(out, in, n);
        } else {
            for (i = 0; i < n; i++)
                out[i] = party_encode(t->party, party_decode(law, in[i]));
        }
        *out_n = n;
        return ERR_OK;
    }
    /* A sample split across calls: its first byte waits in t->odd. */
    while (pos < n) {
        size_t k = 0, got, i;

        if (t->have_odd) {
            lin[k++] = (int16_t)(uint16_t)(t->odd | (uint16_t)in[pos++] << 8);
            t->have_odd = false;
        }
        for (; k < TRANSCODE_CHUNK && n - pos >= 2; k++, pos += 2)
            lin[k] = (int16_t)(uint16_t)(in[pos] | (uint16_t)in[pos + 1] << 8);
        if (n - pos == 1) {
            t->odd = in[pos++];
            t->have_odd = true;
        }
        e = resample_process(t->down, lin, k, res, TRANSCODE_CHUNK, &got);
        if (e != ERR_OK)
            return ERR_INTERNAL;
        /* The up-front check covers the total; this guards the buffer. */
        if (got > cap - written)
            return ERR_INTERNAL;
        for (i = 0; i < got; i++)
            out[written + i] = party_encode(t->party, res[i]);
        written += got;
    }
    *out_n = written;
    return ERR_OK;
}

void transcode_from_stream_reset(struct transcode *t)
{
    t->have_odd = false;
    if (t->down != NULL)
        resample_reset(t->down);
}

/* rtpstats: RFC 3550 appendix A.1 (sequence), A.3 (loss) and A.8 (jitter),
 * in integer arithmetic. */
#include "sip/rtpstats.h"

#include <string.h>

#define SEQ_MOD (1u << 16)
#define MAX_DROPOUT 3000
#define MAX_MISORDER 100
#define NO_BAD_SEQ (SEQ_MOD + 1)

void rtpstats_init(struct rtpstats *s, uint32_t clock_rate)
{
    memset(s, 0, sizeof(*s));
    s->clock_rate = clock_rate ? clock_rate : 8000;
    s->bad_seq = NO_BAD_SEQ;
}

static uint64_t expected(const struct rtpstats *s)
{
    if (!s->started)
        return 0;
    return (uint64_t)s->cycles + s->max_seq - s->base_seq + 1;
}

/* Closes the current source's counts into the prior totals and starts a
 * new sequence at seq (A.1's init_seq); the jitter estimate carries on,
 * its transit starts again. */
static void source_start(struct rtpstats *s, uint32_t ssrc, uint16_t seq)
{
    if (s->started) {
        s->prior_received += s->received;
        s->prior_expected += expected(s);
    }
    s->started = true;
    s->ssrc = ssrc;
    s->base_seq = seq;
    s->max_seq = seq;
    s->cycles = 0;
    s->bad_seq = NO_BAD_SEQ;
    s->received = 0;
    s->have_transit = false;
}

/* The arrival time in timestamp units, modulo 2^32 like the timestamps. */
static uint32_t arrival_units(const struct rtpstats *s, int64_t ns)
{
    uint64_t u = ns > 0 ? (uint64_t)ns : 0;

    return (uint32_t)((u / 1000000000u) * s->clock_rate +
                      (u % 1000000000u) * s->clock_rate / 1000000000u);
}

static void jitter_update(struct rtpstats *s, uint32_t ts, int64_t arrival_ns)
{
    uint32_t transit = arrival_units(s, arrival_ns) - ts;
    int32_t d;
    uint32_t ad;

    if (s->have_transit) {
        d = (int32_t)(transit - s->transit);
        ad = d < 0 ? (uint32_t)(-(int64_t)d) : (uint32_t)d;
        /* J += (|D| - J) / 16, kept times 16 (A.8). */
        s->jitter += ad - ((s->jitter + 8) >> 4);
        s->jitter_samples++;
    }
    s->transit = transit;
    s->have_transit = true;
}

void rtpstats_packet(struct rtpstats *s, uint32_t ssrc, uint16_t seq, uint32_t ts,
                     int64_t arrival_ns, bool timed)
{
    uint16_t udelta;

    if (!s->started || ssrc != s->ssrc) {
        source_start(s, ssrc, seq);
    } else {
        udelta = (uint16_t)(seq - s->max_seq);
        if (udelta < MAX_DROPOUT) {
            /* In order, with a permissible gap. */
            if (seq < s->max_seq)
                s->cycles += SEQ_MOD;
            s->max_seq = seq;
        } else if (udelta <= SEQ_MOD - MAX_MISORDER) {
            if (seq != s->bad_seq) {
                /* A large jump: counted only if the next packet follows it. */
                s->bad_seq = (seq + 1u) & (SEQ_MOD - 1);
                return;
            }
            /* Two in a row: the sender restarted its sequence at seq - 1,
             * whose packet arrived (and was set aside) just before. */
            source_start(s, ssrc, (uint16_t)(seq - 1));
            s->received = 1;
            if (seq == 0)
                s->cycles += SEQ_MOD;
            s->max_seq = seq;
        }
        /* else: a duplicate or a reordered packet; counted as received. */
    }
    s->received++;
    if (timed)
        jitter_update(s, ts, arrival_ns);
}

void rtpstats_read(const struct rtpstats *s, struct rtpstats_summary *out)
{
    uint64_t exp = s->prior_expected + expected(s);
    uint64_t rec = s->prior_received + s->received;

    out->received = rec;
    out->lost = exp > rec ? exp - rec : 0;
    out->jitter_us = (int64_t)((uint64_t)s->jitter * 1000000u / (16u * (uint64_t)s->clock_rate));
    out->has_jitter = s->jitter_samples > 0;
}

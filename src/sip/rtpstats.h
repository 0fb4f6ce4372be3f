/* rtpstats: the receive statistics of one party's RTP stream, as RFC 3550
 * defines them for a receiver report: packets received, packets lost
 * (appendix A.3: expected from the extended highest sequence number, minus
 * received) and the interarrival jitter (section 6.4.1, appendix A.8).
 * Sequence numbers are tracked as appendix A.1 does (wrap-around, reordering,
 * duplicates, a restarted sequence), without its probation: the first packet
 * starts the count. A new SSRC starts a new source whose counts add to the
 * earlier ones. Pure: no clock, no I/O; one owner, not thread-safe. */
#ifndef SFVOPI_SIP_RTPSTATS_H
#define SFVOPI_SIP_RTPSTATS_H

#include <stdbool.h>
#include <stdint.h>

struct rtpstats {
    uint32_t clock_rate; /* RTP timestamp units a second */
    bool started;        /* a packet has been counted */
    uint32_t ssrc;
    uint16_t max_seq;  /* highest sequence number seen */
    uint32_t cycles;   /* wraps of the sequence number, times 65536 */
    uint32_t base_seq; /* the first sequence number of this source */
    uint32_t bad_seq;  /* the next number after a large jump (A.1); 65537: none */
    uint64_t received; /* this source's packets, duplicates and late ones included */
    uint64_t prior_received, prior_expected; /* earlier sources, added up */
    bool have_transit;
    uint32_t transit;        /* the last relative transit time, timestamp units */
    uint32_t jitter;         /* the estimate times 16, timestamp units (A.8) */
    uint64_t jitter_samples; /* transit differences that fed the estimate */
};

struct rtpstats_summary {
    uint64_t received;
    uint64_t lost;     /* never negative: duplicates may outnumber losses */
    int64_t jitter_us; /* the interarrival jitter in microseconds, rounded down */
    bool has_jitter;   /* at least two timed packets of one source arrived */
};

/* Starts empty for a clock of clock_rate Hz (G.711: 8000). */
void rtpstats_init(struct rtpstats *s, uint32_t clock_rate);

/* One packet that was accepted from the party (after SRTP authentication):
 * its SSRC, sequence number and RTP timestamp, the local arrival time on
 * a monotonic clock in nanoseconds, and timed: whether its timestamp
 * follows the sampling clock (audio; not RFC 4733 events, whose timestamp
 * stays at the event's start), so that it feeds the jitter. A packet far
 * outside the sequence (over 3000 ahead or 100 behind) is not counted,
 * unless the next one follows it: the sender restarted its sequence. */
void rtpstats_packet(struct rtpstats *s, uint32_t ssrc, uint16_t seq, uint32_t ts,
                     int64_t arrival_ns, bool timed);

void rtpstats_read(const struct rtpstats *s, struct rtpstats_summary *out);

#endif

/* metrics: process-wide request and database counters in the Prometheus
 * text exposition format. Each thread counts into its own shard (no shared
 * cache lines on the request path); a scrape adds the shards up. Counters
 * only grow. Thread-safe. */
#ifndef SFVOPI_HTTP_METRICS_H
#define SFVOPI_HTTP_METRICS_H

#include <stdbool.h>
#include <stdint.h>

#include "core/buf.h"

#define METRICS_ROUTES_MAX 24

/* Names the routes (index 0 is the one for unrouted requests) and the
 * build. Call once before any other call; names must be static. */
void metrics_init(const char *const *route_names, int nroutes, const char *version);

/* A request started / ended with this route index, status and duration. */
void metrics_request_start(void);
void metrics_request_done(int route, int status, int64_t dur_ns);
/* A database operation failed (unavailable or error). */
void metrics_db_error(void);
/* An API key was resolved from the cache (hit) or the database (miss). */
void metrics_keycache(bool hit);

/* Series of one labelled counter, at most. */
#define METRICS_SERIES_MAX 16
/* Finite buckets of one histogram, at most. */
#define METRICS_BUCKETS_MAX 16

/* One series of a labelled counter: its labels as exposition text
 * (`kind="answer",outcome="ok"`, static) and its value. */
struct metrics_series {
    const char *labels;
    uint64_t value;
};

/* A histogram without labels: the upper bounds of its finite buckets as
 * exposition text (static, increasing), the observations in each bucket
 * (not cumulative; counts[nle] is the +Inf bucket) and their sum. */
struct metrics_histogram {
    const char *const *le;
    int nle;
    uint64_t counts[METRICS_BUCKETS_MAX + 1];
    double sum;
};

/* The call engine's counters, read at each scrape (SIP.md section 6). */
struct metrics_calls {
    uint64_t sip_denied;         /* SIP from sources not allowed, dropped */
    uint64_t rtp_dropped_source; /* RTP not from the party, dropped */
    uint64_t srtp_dropped;       /* SRTP that did not authenticate (or malformed), dropped */
    uint64_t srtp_replayed;      /* SRTP received before, dropped */
    bool sip_registered;         /* a registration binding is active */
    int64_t calls_active;        /* calls alive now */
    /* Calls ended, by direction and final status. */
    struct metrics_series calls_total[METRICS_SERIES_MAX];
    int ncalls_total;
    /* Webhook requests finished, by kind and outcome. */
    struct metrics_series webhooks[METRICS_SERIES_MAX];
    int nwebhooks;
    struct metrics_histogram webhook_duration; /* seconds */
    struct metrics_histogram rtp_jitter;       /* seconds, one observation per call */
    uint64_t stream_send_queue_bytes;          /* the largest send queue of any stream now */
};

/* Where the call metrics come from: read fills them in, from any thread.
 * Without it (no call engine) they are not exported. Call before serving. */
void metrics_set_calls(void (*read)(struct metrics_calls *out));

/* Appends the exposition text to b. */
enum err metrics_render(struct buf *b) WARN_UNUSED;

#endif

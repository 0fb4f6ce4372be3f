/* telemetry: fixed arrays of counters indexed by enums, so that every
 * series exists (from 0) from the start and a scrape never allocates. */
#include "call/telemetry.h"

#include <string.h>

#include "call/call.h"
#include "ws/ws.h"

#define NDIR 2
#define NFINAL 5 /* COMPLETED .. FAILED */
#define NKIND 3
#define NOUTCOME 4

static const char *const call_labels[NDIR][NFINAL] = {
    {"direction=\"INBOUND\",status=\"COMPLETED\"", "direction=\"INBOUND\",status=\"NO_ANSWER\"",
     "direction=\"INBOUND\",status=\"BUSY\"", "direction=\"INBOUND\",status=\"CANCELED\"",
     "direction=\"INBOUND\",status=\"FAILED\""},
    {"direction=\"OUTBOUND\",status=\"COMPLETED\"", "direction=\"OUTBOUND\",status=\"NO_ANSWER\"",
     "direction=\"OUTBOUND\",status=\"BUSY\"", "direction=\"OUTBOUND\",status=\"CANCELED\"",
     "direction=\"OUTBOUND\",status=\"FAILED\""},
};

static const char *const webhook_labels[NKIND][NOUTCOME] = {
    {"kind=\"ring\",outcome=\"ok\"", "kind=\"ring\",outcome=\"http_error\"",
     "kind=\"ring\",outcome=\"timeout\"", "kind=\"ring\",outcome=\"error\""},
    {"kind=\"answer\",outcome=\"ok\"", "kind=\"answer\",outcome=\"http_error\"",
     "kind=\"answer\",outcome=\"timeout\"", "kind=\"answer\",outcome=\"error\""},
    {"kind=\"hangup\",outcome=\"ok\"", "kind=\"hangup\",outcome=\"http_error\"",
     "kind=\"hangup\",outcome=\"timeout\"", "kind=\"hangup\",outcome=\"error\""},
};

/* Webhook durations: 5 ms to 10 s (answer requests may take 10 s). */
static const char *const webhook_le[] = {"0.005", "0.01", "0.025", "0.05", "0.1", "0.25",
                                         "0.5",   "1",    "2.5",   "5",    "10"};
static const int64_t webhook_le_ns[] = {5000000,    10000000,   25000000,   50000000,
                                        100000000,  250000000,  500000000,  1000000000,
                                        2500000000, 5000000000, 10000000000};
#define NWB ((int)(sizeof(webhook_le_ns) / sizeof(webhook_le_ns[0])))

/* Jitter: 0.5 ms to 100 ms (a G.711 packet is 20 ms). */
static const char *const jitter_le[] = {"0.0005", "0.001", "0.002", "0.005",
                                        "0.01",   "0.02",  "0.05",  "0.1"};
static const int64_t jitter_le_us[] = {500, 1000, 2000, 5000, 10000, 20000, 50000, 100000};
#define NJB ((int)(sizeof(jitter_le_us) / sizeof(jitter_le_us[0])))

_Static_assert(NWB <= METRICS_BUCKETS_MAX && NJB <= METRICS_BUCKETS_MAX, "buckets fit");
_Static_assert(NDIR *NFINAL <= METRICS_SERIES_MAX && NKIND * NOUTCOME <= METRICS_SERIES_MAX,
               "series fit");

static int64_t active;
static uint64_t calls_ended[NDIR][NFINAL];
static uint64_t webhooks[NKIND][NOUTCOME];
static uint64_t webhook_buckets[NWB + 1];
static uint64_t webhook_sum_ns;
static uint64_t jitter_buckets[NJB + 1];
static uint64_t jitter_sum_us;

static void add(uint64_t *c, uint64_t v)
{
    __atomic_fetch_add(c, v, __ATOMIC_RELAXED);
}

static uint64_t get(const uint64_t *c)
{
    return __atomic_load_n(c, __ATOMIC_RELAXED);
}

enum telemetry_outcome telemetry_outcome_of(const char *error)
{
    if (!error)
        return TELEMETRY_OK;
    if (!strcmp(error, "http status"))
        return TELEMETRY_HTTP_ERROR;
    if (!strcmp(error, "timeout"))
        return TELEMETRY_TIMEOUT;
    return TELEMETRY_ERROR;
}

void telemetry_call_begin(void)
{
    __atomic_fetch_add(&active, 1, __ATOMIC_RELAXED);
}

void telemetry_call_end(const struct store_call *rec, bool has_jitter)
{
    enum call_direction dir;
    enum call_status st;
    int b;

    __atomic_fetch_sub(&active, 1, __ATOMIC_RELAXED);
    if (call_direction_parse(rec->direction, &dir) != ERR_OK ||
        call_status_parse(rec->status, &st) != ERR_OK || !call_status_final(st))
        return; /* never placed or never recorded: not a call that ended */
    add(&calls_ended[dir == CALL_DIR_OUTBOUND][st - CALL_STATUS_COMPLETED], 1);
    if (!has_jitter)
        return;
    for (b = 0; b < NJB && rec->rtp_jitter_us > jitter_le_us[b]; b++) {
    }
    add(&jitter_buckets[b], 1);
    add(&jitter_sum_us, rec->rtp_jitter_us > 0 ? (uint64_t)rec->rtp_jitter_us : 0);
}

void telemetry_webhook(enum webhook_kind kind, enum telemetry_outcome outcome, int64_t dur_ns)
{
    int k = kind == WEBHOOK_RING ? 0 : kind == WEBHOOK_ANSWER ? 1 : 2, b;

    if ((int)outcome < 0 || (int)outcome >= NOUTCOME)
        outcome = TELEMETRY_ERROR;
    add(&webhooks[k][outcome], 1);
    for (b = 0; b < NWB && dur_ns > webhook_le_ns[b]; b++) {
    }
    add(&webhook_buckets[b], 1);
    add(&webhook_sum_ns, dur_ns > 0 ? (uint64_t)dur_ns : 0);
}

void telemetry_read(struct metrics_calls *out)
{
    int i, j;

    out->calls_active = __atomic_load_n(&active, __ATOMIC_RELAXED);
    out->ncalls_total = 0;
    for (i = 0; i < NDIR; i++) {
        for (j = 0; j < NFINAL; j++)
            out->calls_total[out->ncalls_total++] =
                (struct metrics_series){call_labels[i][j], get(&calls_ended[i][j])};
    }
    out->nwebhooks = 0;
    for (i = 0; i < NKIND; i++) {
        for (j = 0; j < NOUTCOME; j++)
            out->webhooks[out->nwebhooks++] =
                (struct metrics_series){webhook_labels[i][j], get(&webhooks[i][j])};
    }
    out->webhook_duration.le = webhook_le;
    out->webhook_duration.nle = NWB;
    for (i = 0; i <= NWB; i++)
        out->webhook_duration.counts[i] = get(&webhook_buckets[i]);
    out->webhook_duration.sum = (double)get(&webhook_sum_ns) / 1e9;
    out->rtp_jitter.le = jitter_le;
    out->rtp_jitter.nle = NJB;
    for (i = 0; i <= NJB; i++)
        out->rtp_jitter.counts[i] = get(&jitter_buckets[i]);
    out->rtp_jitter.sum = (double)get(&jitter_sum_us) / 1e6;
    out->stream_send_queue_bytes = ws_sendq_max();
}

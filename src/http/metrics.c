/* metrics: sharded counters. A shard belongs to one thread, which updates it
 * with relaxed atomic adds (uncontended); the scraper reads every shard
 * with relaxed loads. Shards are never freed: their number is bounded by
 * the number of threads the process ever ran. */
#include "http/metrics.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

/* Statuses counted on their own; anything else is "other". */
static const int statuses[] = {200, 400, 401, 404, 405, 409, 413, 429, 500, 503};
#define NSTATUS ((int)(sizeof(statuses) / sizeof(statuses[0])) + 1)

/* Upper bounds of the latency buckets, in seconds and nanoseconds. */
static const char *const bucket_le[] = {"0.0005", "0.001", "0.0025", "0.005", "0.01", "0.025",
                                        "0.05",   "0.1",   "0.25",   "0.5",   "1",    "2.5"};
static const int64_t bucket_ns[] = {500000,    1000000,   2500000,    5000000,
                                    10000000,  25000000,  50000000,   100000000,
                                    250000000, 500000000, 1000000000, 2500000000};
#define NBUCKET ((int)(sizeof(bucket_ns) / sizeof(bucket_ns[0])) + 1) /* + Inf */

struct shard {
    struct shard *next;
    uint64_t requests[METRICS_ROUTES_MAX][NSTATUS];
    uint64_t buckets[METRICS_ROUTES_MAX][NBUCKET]; /* not cumulative */
    uint64_t sum_ns[METRICS_ROUTES_MAX];
    uint64_t db_errors;
    uint64_t keycache_hits;
    uint64_t keycache_misses;
};

static pthread_mutex_t shards_mu = PTHREAD_MUTEX_INITIALIZER;
static struct shard *shards;
static __thread struct shard *mine;
static const char *const *names;
static int nroutes;
static const char *build_version = "unknown";
static int64_t in_flight;
static void (*calls_read)(struct metrics_calls *out);

void metrics_set_calls(void (*read)(struct metrics_calls *out))
{
    calls_read = read;
}

void metrics_init(const char *const *route_names, int n, const char *version)
{
    names = route_names;
    nroutes = n < METRICS_ROUTES_MAX ? n : METRICS_ROUTES_MAX;
    build_version = version;
}

static struct shard *shard(void)
{
    struct shard *s = mine;

    if (s)
        return s;
    s = calloc(1, sizeof(*s));
    if (!s)
        return NULL; /* counting is best effort; serving is not */
    pthread_mutex_lock(&shards_mu);
    s->next = shards;
    shards = s;
    pthread_mutex_unlock(&shards_mu);
    mine = s;
    return s;
}

static void add(uint64_t *c, uint64_t v)
{
    __atomic_fetch_add(c, v, __ATOMIC_RELAXED);
}

static uint64_t get(const uint64_t *c)
{
    return __atomic_load_n(c, __ATOMIC_RELAXED);
}

void metrics_request_start(void)
{
    __atomic_fetch_add(&in_flight, 1, __ATOMIC_RELAXED);
}

void metrics_request_done(int route, int status, int64_t dur_ns)
{
    struct shard *s = shard();
    int st, b;

    if (s) {
        if (route < 0 || route >= nroutes)
            route = 0;
        for (st = 0; st < NSTATUS - 1 && statuses[st] != status; st++) {
        }
        for (b = 0; b < NBUCKET - 1 && dur_ns > bucket_ns[b]; b++) {
        }
        add(&s->requests[route][st], 1);
        add(&s->buckets[route][b], 1);
        add(&s->sum_ns[route], dur_ns > 0 ? (uint64_t)dur_ns : 0);
    }
    /* Released after the counts: a scrape that sees a request leave the
     * gauge also sees what it counted. */
    __atomic_fetch_sub(&in_flight, 1, __ATOMIC_RELEASE);
}

void metrics_db_error(void)
{
    struct shard *s = shard();

    if (s)
        add(&s->db_errors, 1);
}

void metrics_keycache(bool hit)
{
    struct shard *s = shard();

    if (s)
        add(hit ? &s->keycache_hits : &s->keycache_misses, 1);
}

struct totals {
    uint64_t requests[METRICS_ROUTES_MAX][NSTATUS];
    uint64_t buckets[METRICS_ROUTES_MAX][NBUCKET];
    uint64_t sum_ns[METRICS_ROUTES_MAX];
    uint64_t db_errors, hits, misses;
};

static void sum_shards(struct totals *t)
{
    const struct shard *s;
    int r, i;

    memset(t, 0, sizeof(*t));
    pthread_mutex_lock(&shards_mu);
    for (s = shards; s; s = s->next) {
        for (r = 0; r < nroutes; r++) {
            for (i = 0; i < NSTATUS; i++)
                t->requests[r][i] += get(&s->requests[r][i]);
            for (i = 0; i < NBUCKET; i++)
                t->buckets[r][i] += get(&s->buckets[r][i]);
            t->sum_ns[r] += get(&s->sum_ns[r]);
        }
        t->db_errors += get(&s->db_errors);
        t->hits += get(&s->keycache_hits);
        t->misses += get(&s->keycache_misses);
    }
    pthread_mutex_unlock(&shards_mu);
}

/* One histogram's series: cumulative buckets, sum and count. */
static enum err render_histogram(struct buf *b, const char *name, const char *help,
                                 const struct metrics_histogram *h)
{
    uint64_t cum = 0;
    enum err e;
    int i, n = h->nle < METRICS_BUCKETS_MAX ? h->nle : METRICS_BUCKETS_MAX;

    e = buf_printf(b, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (i = 0; i <= n && e == ERR_OK; i++) {
        cum += h->counts[i];
        e = buf_printf(b, "%s_bucket{le=\"%s\"} %llu\n", name, i < n ? h->le[i] : "+Inf",
                       (unsigned long long)cum);
    }
    if (e == ERR_OK)
        e = buf_printf(b, "%s_sum %.9g\n%s_count %llu\n", name, h->sum, name,
                       (unsigned long long)cum);
    return e;
}

/* The call engine's series beyond the carrier edge's (SIP.md section 6). */
static enum err render_calls(struct buf *b, const struct metrics_calls *mc)
{
    enum err e;
    int i;

    e = buf_printf(b,
                   "# HELP sfvopi_calls_active Calls alive now.\n# TYPE sfvopi_calls_active gauge\n"
                   "sfvopi_calls_active %lld\n"
                   "# HELP sfvopi_calls_total Calls ended, by direction and final status.\n"
                   "# TYPE sfvopi_calls_total counter\n",
                   (long long)mc->calls_active);
    for (i = 0; i < mc->ncalls_total && i < METRICS_SERIES_MAX && e == ERR_OK; i++)
        e = buf_printf(b, "sfvopi_calls_total{%s} %llu\n", mc->calls_total[i].labels,
                       (unsigned long long)mc->calls_total[i].value);
    if (e == ERR_OK)
        e = buf_printf(b, "# HELP sfvopi_webhook_requests_total Webhook requests finished, by "
                          "kind and outcome.\n# TYPE sfvopi_webhook_requests_total counter\n");
    for (i = 0; i < mc->nwebhooks && i < METRICS_SERIES_MAX && e == ERR_OK; i++)
        e = buf_printf(b, "sfvopi_webhook_requests_total{%s} %llu\n", mc->webhooks[i].labels,
                       (unsigned long long)mc->webhooks[i].value);
    if (e == ERR_OK)
        e = render_histogram(b, "sfvopi_webhook_duration_seconds",
                             "Time from sending a webhook request to its outcome.",
                             &mc->webhook_duration);
    if (e == ERR_OK)
        e = buf_printf(b,
                       "# HELP sfvopi_stream_send_queue_bytes The longest WebSocket send "
                       "queue of any audio stream now.\n"
                       "# TYPE sfvopi_stream_send_queue_bytes gauge\n"
                       "sfvopi_stream_send_queue_bytes %llu\n",
                       (unsigned long long)mc->stream_send_queue_bytes);
    if (e == ERR_OK)
        e = render_histogram(b, "sfvopi_rtp_jitter_seconds",
                             "RTP interarrival jitter of the party (RFC 3550), once per call at "
                             "its end.",
                             &mc->rtp_jitter);
    return e;
}

enum err metrics_render(struct buf *b)
{
    struct metrics_calls mc = {0};
    struct totals *t = malloc(sizeof(*t));
    enum err e = ERR_OK;
    int64_t busy;
    int r, i;

    if (!t)
        return ERR_NOMEM;
    busy = __atomic_load_n(&in_flight, __ATOMIC_ACQUIRE); /* before the counts; see above */
    sum_shards(t);

#define OUT(...)                                                                                   \
    do {                                                                                           \
        if (e == ERR_OK)                                                                           \
            e = buf_printf(b, __VA_ARGS__);                                                        \
    } while (0)

    OUT("# HELP sfvopi_build_info The running version.\n# TYPE sfvopi_build_info gauge\n"
        "sfvopi_build_info{version=\"%s\"} 1\n",
        build_version);
    OUT("# HELP sfvopi_http_requests_total Requests answered, by route and status.\n"
        "# TYPE sfvopi_http_requests_total counter\n");
    for (r = 0; r < nroutes; r++) {
        for (i = 0; i < NSTATUS; i++) {
            if (!t->requests[r][i])
                continue;
            if (i < NSTATUS - 1)
                OUT("sfvopi_http_requests_total{route=\"%s\",status=\"%d\"} %llu\n", names[r],
                    statuses[i], (unsigned long long)t->requests[r][i]);
            else
                OUT("sfvopi_http_requests_total{route=\"%s\",status=\"other\"} %llu\n", names[r],
                    (unsigned long long)t->requests[r][i]);
        }
    }
    OUT("# HELP sfvopi_http_request_duration_seconds Time from the request's headers to the "
        "end of its answer.\n# TYPE sfvopi_http_request_duration_seconds histogram\n");
    for (r = 0; r < nroutes; r++) {
        uint64_t cum = 0;

        for (i = 0; i < NBUCKET; i++)
            cum += t->buckets[r][i];
        if (!cum)
            continue;
        cum = 0;
        for (i = 0; i < NBUCKET; i++) {
            cum += t->buckets[r][i];
            OUT("sfvopi_http_request_duration_seconds_bucket{route=\"%s\",le=\"%s\"} %llu\n",
                names[r], i < NBUCKET - 1 ? bucket_le[i] : "+Inf", (unsigned long long)cum);
        }
        OUT("sfvopi_http_request_duration_seconds_sum{route=\"%s\"} %.9f\n", names[r],
            (double)t->sum_ns[r] / 1e9);
        OUT("sfvopi_http_request_duration_seconds_count{route=\"%s\"} %llu\n", names[r],
            (unsigned long long)cum);
    }
    OUT("# HELP sfvopi_http_requests_in_flight Requests being handled now.\n"
        "# TYPE sfvopi_http_requests_in_flight gauge\nsfvopi_http_requests_in_flight %lld\n",
        (long long)busy);
    OUT("# HELP sfvopi_db_errors_total Database operations that failed.\n"
        "# TYPE sfvopi_db_errors_total counter\nsfvopi_db_errors_total %llu\n",
        (unsigned long long)t->db_errors);
    OUT("# HELP sfvopi_keycache_hits_total API keys resolved from the in-process cache.\n"
        "# TYPE sfvopi_keycache_hits_total counter\nsfvopi_keycache_hits_total %llu\n",
        (unsigned long long)t->hits);
    OUT("# HELP sfvopi_keycache_misses_total API keys looked up in the database.\n"
        "# TYPE sfvopi_keycache_misses_total counter\nsfvopi_keycache_misses_total %llu\n",
        (unsigned long long)t->misses);
    if (calls_read) {
        calls_read(&mc);
        OUT("# HELP sfvopi_sip_denied_total SIP datagrams and requests from sources not allowed "
            "by --sip-allow, dropped unanswered.\n# TYPE sfvopi_sip_denied_total counter\n"
            "sfvopi_sip_denied_total %llu\n",
            (unsigned long long)mc.sip_denied);
        OUT("# HELP sfvopi_sip_registered 1 while a registration with the registrar is "
            "active.\n# TYPE sfvopi_sip_registered gauge\nsfvopi_sip_registered %d\n",
            mc.sip_registered ? 1 : 0);
        OUT("# HELP sfvopi_rtp_dropped_total RTP packets dropped, by reason.\n"
            "# TYPE sfvopi_rtp_dropped_total counter\n"
            "sfvopi_rtp_dropped_total{reason=\"source\"} %llu\n"
            "sfvopi_rtp_dropped_total{reason=\"srtp_auth\"} %llu\n"
            "sfvopi_rtp_dropped_total{reason=\"srtp_replay\"} %llu\n",
            (unsigned long long)mc.rtp_dropped_source, (unsigned long long)mc.srtp_dropped,
            (unsigned long long)mc.srtp_replayed);
    }
    if (calls_read && e == ERR_OK)
        e = render_calls(b, &mc);
#undef OUT
    free(t);
    return e;
}

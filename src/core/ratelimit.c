/* ratelimit: sharded token buckets. Tokens are kept as a double and
 * refilled lazily from the elapsed time, so an idle key costs nothing. */
#include "core/ratelimit.h"

#include <math.h>
#include <pthread.h>
#include <stdlib.h>

struct bucket {
    int64_t key; /* 0: free slot (key ids start at 1) */
    double tokens;
    int64_t last_ns;
};

struct shard {
    pthread_mutex_t mu;
    struct bucket b[RATELIMIT_SHARD_SLOTS];
};

struct ratelimit {
    double rate;
    unsigned burst;
    struct shard shards[RATELIMIT_SHARDS];
};

struct ratelimit *ratelimit_new(double rate, unsigned burst)
{
    struct ratelimit *rl;
    int i;

    if (!(rate > 0) || burst == 0)
        return NULL;
    rl = calloc(1, sizeof(*rl));
    if (!rl)
        return NULL;
    rl->rate = rate;
    rl->burst = burst;
    for (i = 0; i < RATELIMIT_SHARDS; i++)
        pthread_mutex_init(&rl->shards[i].mu, NULL);
    return rl;
}

void ratelimit_free(struct ratelimit *rl)
{
    int i;

    if (!rl)
        return;
    for (i = 0; i < RATELIMIT_SHARDS; i++)
        pthread_mutex_destroy(&rl->shards[i].mu);
    free(rl);
}

/* The key's bucket; else a free slot, else the least recently used one. */
static struct bucket *find(struct shard *s, int64_t key, double burst, int64_t now_ns)
{
    struct bucket *victim = NULL;
    int i;

    for (i = 0; i < RATELIMIT_SHARD_SLOTS; i++) {
        struct bucket *b = &s->b[i];

        if (b->key == key)
            return b;
        if (b->key == 0) {
            if (!victim || victim->key != 0)
                victim = b;
        } else if (!victim || (victim->key != 0 && b->last_ns < victim->last_ns)) {
            victim = b;
        }
    }
    victim->key = key;
    victim->tokens = burst;
    victim->last_ns = now_ns;
    return victim;
}

bool ratelimit_take(struct ratelimit *rl, int64_t key, int64_t now_ns, struct ratelimit_info *info)
{
    struct shard *s = &rl->shards[(uint64_t)key * 0x9E3779B97F4A7C15ull >> 58];
    struct bucket *b;
    double burst = rl->burst, missing;
    bool ok;

    pthread_mutex_lock(&s->mu);
    b = find(s, key, burst, now_ns);
    if (now_ns > b->last_ns) {
        b->tokens += (double)(now_ns - b->last_ns) / 1e9 * rl->rate;
        if (b->tokens > burst)
            b->tokens = burst;
        b->last_ns = now_ns;
    }
    ok = b->tokens >= 1.0;
    if (ok)
        b->tokens -= 1.0;
    info->limit = rl->burst;
    info->remaining = (unsigned)floor(b->tokens);
    missing = burst - b->tokens;
    info->reset_s = (unsigned)ceil(missing / rl->rate);
    info->retry_after = ok ? 0 : (unsigned)ceil((1.0 - b->tokens) / rl->rate);
    if (!ok && info->retry_after < 1)
        info->retry_after = 1;
    pthread_mutex_unlock(&s->mu);
    return ok;
}

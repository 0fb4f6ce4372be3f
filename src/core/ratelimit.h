/* ratelimit: a token bucket per API key, shared by every thread of one
 * process (the limit is per node, not across a cluster). A bucket holds at
 * most `burst` tokens and refills at `rate` tokens a second; a request
 * takes one. Memory is bounded: the table has a fixed number of slots and
 * the least recently used bucket of a full shard is recycled.
 * Thread-safe (one mutex per shard). */
#ifndef SFVOPI_CORE_RATELIMIT_H
#define SFVOPI_CORE_RATELIMIT_H

#include <stdbool.h>
#include <stdint.h>

#define RATELIMIT_SHARDS 64
#define RATELIMIT_SHARD_SLOTS 128 /* buckets per shard: 8192 keys in all */

struct ratelimit_info {
    unsigned limit;       /* the burst size */
    unsigned remaining;   /* whole tokens left after this request */
    unsigned reset_s;     /* seconds until the bucket is full again */
    unsigned retry_after; /* when refused: seconds until a token is there (>= 1) */
};

struct ratelimit;

/* A limiter of rate tokens a second and burst tokens at most (both > 0).
 * NULL on allocation failure. */
struct ratelimit *ratelimit_new(double rate, unsigned burst);
/* Accepts NULL. */
void ratelimit_free(struct ratelimit *rl);

/* Takes a token from key's bucket at time now_ns (monotonic). True when the
 * request may proceed. *info is filled either way. */
bool ratelimit_take(struct ratelimit *rl, int64_t key, int64_t now_ns, struct ratelimit_info *info);

#endif

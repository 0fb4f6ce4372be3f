/* policy: admission, log limiting, challenge counting and the called-number
 * rule (the allowlist itself is core/netaddr.c). Everything here is a pure
 * function of its arguments and of caller-owned tables; see policy.h for
 * the rules themselves. */
#include <stdio.h>
#include <string.h>

#include "sip/policy.h"

static uint64_t hash_bytes(uint64_t seed, const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603ull ^ seed;
    size_t i;

    for (i = 0; i < n; i++) {
        h ^= p[i];
        h *= 1099511628211ull;
    }
    /* Final mix: FNV's low bits are weak, and slots are picked from them. */
    h ^= h >> 33;
    h *= 0xff51afd7ed558ccdull;
    h ^= h >> 33;
    return h;
}

static uint64_t hash_ip(uint64_t seed, const struct policy_ip *ip)
{
    return hash_bytes(seed ^ ip->v6, ip->b, ip->v6 ? 16 : 4);
}

/* --- admission --- */

void admission_init(struct admission *a, uint32_t rate_per_s, uint64_t seed)
{
    memset(a, 0, sizeof(*a));
    a->rate = rate_per_s ? rate_per_s : 1;
    a->seed = seed;
}

bool admission_take(struct admission *a, const struct policy_ip *ip, int64_t now_ms)
{
    const int64_t cap = (int64_t)a->rate * 2 * 1000, cost = 1000;
    uint64_t h = hash_ip(a->seed, ip);
    struct admission_slot *s = NULL, *oldest = NULL;
    int i;

    for (i = 0; i < ADMISSION_PROBES; i++) {
        struct admission_slot *t = &a->slots[(h + (uint64_t)i) % ADMISSION_SLOTS];

        if (t->used && policy_ip_equal(&t->ip, ip)) {
            s = t;
            break;
        }
        if (!oldest || !t->used || (oldest->used && t->last_ms < oldest->last_ms))
            oldest = t;
    }
    if (!s) {
        s = oldest;
        s->used = true;
        s->ip = *ip;
        s->last_ms = now_ms;
        s->milli_tokens = cap;
    } else if (now_ms > s->last_ms) {
        /* rate tokens a second is rate milli-tokens a millisecond; the
         * elapsed time is capped first so that the product cannot overflow. */
        int64_t elapsed = now_ms - s->last_ms;

        if (elapsed > 2000)
            elapsed = 2000;
        s->milli_tokens += elapsed * (int64_t)a->rate;
        if (s->milli_tokens > cap)
            s->milli_tokens = cap;
        s->last_ms = now_ms;
    }
    if (s->milli_tokens < cost)
        return false;
    s->milli_tokens -= cost;
    return true;
}

/* --- log limiting --- */

void loglimit_init(struct loglimit *l, uint64_t seed)
{
    memset(l, 0, sizeof(*l));
    l->seed = seed;
    l->period_start = INT64_MIN;
}

bool loglimit_allow(struct loglimit *l, const struct policy_ip *ip, int64_t now_ms,
                    uint64_t *unlogged)
{
    uint64_t h = hash_ip(l->seed, ip);
    int i, slot = -1, oldest = -1;

    if (l->period_start == INT64_MIN || now_ms - l->period_start >= LOGLIMIT_PERIOD_MS) {
        l->period_start = now_ms;
        l->lines = 0;
    }
    for (i = 0; i < LOGLIMIT_PROBES; i++) {
        int k = (int)((h + (uint64_t)i) % LOGLIMIT_SLOTS);

        if (l->slots[k].used && policy_ip_equal(&l->slots[k].ip, ip)) {
            slot = k;
            break;
        }
        if (oldest < 0 || !l->slots[k].used ||
            (l->slots[oldest].used && l->slots[k].logged_ms < l->slots[oldest].logged_ms))
            oldest = k;
    }
    if ((slot >= 0 && now_ms - l->slots[slot].logged_ms < LOGLIMIT_PERIOD_MS) ||
        l->lines >= LOGLIMIT_LINES) {
        l->unlogged++;
        return false;
    }
    if (slot < 0)
        slot = oldest;
    l->slots[slot].used = true;
    l->slots[slot].ip = *ip;
    l->slots[slot].logged_ms = now_ms;
    l->lines++;
    *unlogged = l->unlogged;
    l->unlogged = 0;
    return true;
}

/* --- digest challenges --- */

void challenges_init(struct challenges *c)
{
    memset(c, 0, sizeof(*c));
}

bool challenges_second(struct challenges *c, const char *call_id, size_t call_id_len,
                       const char *method, size_t method_len, uint32_t cseq)
{
    uint64_t key = hash_bytes(0, (const uint8_t *)call_id, call_id_len);
    size_t i;

    key = hash_bytes(key, (const uint8_t *)method, method_len) | 1; /* never 0: 0 is free */
    for (i = 0; i < CHALLENGE_SLOTS; i++) {
        if (c->slots[i].key != key)
            continue;
        if (c->slots[i].cseq == cseq)
            return false; /* the same challenge again */
        if (c->slots[i].cseq + 1 == cseq) {
            c->slots[i].key = 0;
            return true;
        }
        c->slots[i].cseq = cseq; /* a new request of the same dialog */
        return false;
    }
    c->slots[c->next].key = key;
    c->slots[c->next].cseq = cseq;
    c->next = (c->next + 1) % CHALLENGE_SLOTS;
    return false;
}

/* --- the called number --- */

const char *policy_called_user(const char *ruri_user, const char *to_user, const char *sip_user)
{
    if (sip_user && *sip_user && strcmp(ruri_user, sip_user) == 0)
        return to_user;
    return ruri_user;
}

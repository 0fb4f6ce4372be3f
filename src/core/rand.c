/* rand: thin layer over libsodium so that the rest of the code never
 * touches a weaker generator. */
#include "core/rand.h"

#include <sodium.h>
#include <stdint.h>
#include <string.h>

enum err rand_setup(void)
{
    return sodium_init() < 0 ? ERR_INTERNAL : ERR_OK;
}

void rand_fill(void *p, size_t n)
{
    randombytes_buf(p, n);
}

static __thread uint64_t fast_state[4];
static __thread int fast_seeded;

static uint64_t rotl(uint64_t x, int k)
{
    return (x << k) | (x >> (64 - k));
}

/* xoshiro256** by D. Blackman and S. Vigna. */
static uint64_t fast_next(void)
{
    uint64_t *s = fast_state;
    uint64_t result = rotl(s[1] * 5, 7) * 9, t = s[1] << 17;

    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return result;
}

void rand_fast_bytes(void *p, size_t n)
{
    unsigned char *out = p;

    if (!fast_seeded) {
        do {
            randombytes_buf(fast_state, sizeof(fast_state));
        } while (!(fast_state[0] | fast_state[1] | fast_state[2] | fast_state[3]));
        fast_seeded = 1;
    }
    while (n) {
        uint64_t v = fast_next();
        size_t k = n < sizeof(v) ? n : sizeof(v);

        memcpy(out, &v, k);
        out += k;
        n -= k;
    }
}

void rand_string(char *out, size_t n, const char *alphabet)
{
    uint32_t k = (uint32_t)strlen(alphabet);
    size_t i;

    for (i = 0; i < n; i++)
        out[i] = alphabet[randombytes_uniform(k)];
    out[n] = '\0';
}

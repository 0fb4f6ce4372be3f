/* rand: thin layer over libsodium so that the rest of the code never
 * touches a weaker generator. */
#include "core/rand.h"

#include <sodium.h>
#include <string.h>

enum err rand_init(void)
{
    return sodium_init() < 0 ? ERR_INTERNAL : ERR_OK;
}

void rand_bytes(void *p, size_t n)
{
    randombytes_buf(p, n);
}

void rand_string(char *out, size_t n, const char *alphabet)
{
    uint32_t k = (uint32_t)strlen(alphabet);
    size_t i;

    for (i = 0; i < n; i++)
        out[i] = alphabet[randombytes_uniform(k)];
    out[n] = '\0';
}

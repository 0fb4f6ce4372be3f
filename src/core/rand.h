/* rand: the CSPRNG (libsodium's randombytes) and random identifiers.
 * rand_setup must succeed before any other call. Thread-safe after init. */
#ifndef SFVOPI_CORE_RAND_H
#define SFVOPI_CORE_RAND_H

#include <stddef.h>

#include "core/err.h"

#define RAND_ALNUM_LOWER "abcdefghijklmnopqrstuvwxyz0123456789"
#define RAND_ALNUM "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

/* Initialises the CSPRNG. ERR_INTERNAL if the system has none. */
enum err rand_setup(void) WARN_UNUSED;
/* Fills p with n random bytes. */
void rand_fill(void *p, size_t n);
/* Fills p with n bytes from a fast per-thread generator (xoshiro256**,
 * seeded once per thread from the CSPRNG), for identifiers that must be
 * unique but need not be secret, such as request ids. Never for keys,
 * app ids or anything a client could gain from predicting. */
void rand_fast_bytes(void *p, size_t n);
/* Writes n characters drawn uniformly (no modulo bias) from alphabet, then a
 * NUL, to out (which must hold n + 1 bytes). */
void rand_string(char *out, size_t n, const char *alphabet);

#endif

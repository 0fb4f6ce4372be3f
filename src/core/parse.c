/* parse: strict decimal integers with overflow checks. */
#include "core/parse.h"

#include <stdbool.h>

enum err parse_i64(const char *s, int64_t min, int64_t max, int64_t *out)
{
    bool neg = false;
    int64_t v = 0;
    int digits = 0;

    if (!s)
        return ERR_INVALID;
    if (*s == '-') {
        neg = true;
        s++;
    }
    for (; *s; s++) {
        int d;

        if (*s < '0' || *s > '9' || ++digits > 19)
            return ERR_INVALID;
        d = *s - '0';
        if (__builtin_mul_overflow(v, 10, &v) || __builtin_add_overflow(v, neg ? -d : d, &v))
            return ERR_INVALID;
    }
    if (digits == 0 || v < min || v > max)
        return ERR_INVALID;
    *out = v;
    return ERR_OK;
}

/* Fuzzes E.164 normalisation: any accepted output matches ^\+[1-9][0-9]{7,14}$
 * and normalising it again gives the same number. */
#include <stdint.h>
#include <string.h>

#include "core/e164.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char out[E164_MAX], again[E164_MAX];
    size_t n, i;

    if (e164_normalize((const char *)data, size, "91", out) != ERR_OK)
        return 0;
    n = strlen(out);
    if (n < 9 || n > 16 || out[0] != '+' || out[1] < '1' || out[1] > '9')
        __builtin_trap();
    for (i = 1; i < n; i++) {
        if (out[i] < '0' || out[i] > '9')
            __builtin_trap();
    }
    if (e164_normalize(out, n, "1", again) != ERR_OK || strcmp(out, again) != 0)
        __builtin_trap();
    return 0;
}

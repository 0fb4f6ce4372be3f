/* Fuzzes the RFC 8785 canonicaliser over whatever jansson accepts: the
 * canonical text must itself parse, and canonicalising it again must give
 * the same bytes (a canonical form is a fixed point). */
#include <jansson.h>
#include <stdint.h>
#include <string.h>

#include "json/jcs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    json_error_t jerr;
    json_t *v, *again;
    struct buf a, b;
    enum err e;

    v = json_loadb((const char *)data, size, JSON_DECODE_ANY | JSON_REJECT_DUPLICATES, &jerr);
    if (!v)
        return 0;
    buf_init(&a, 1 << 20);
    buf_init(&b, 1 << 20);
    e = jcs_write(v, &a);
    if (e == ERR_OK) {
        /* Read back with every number as a double: "100000000000000000000" is
         * canonical for 1e20, and too big for jansson's integers. */
        again =
            json_loadb(a.data, a.len,
                       JSON_DECODE_ANY | JSON_REJECT_DUPLICATES | JSON_DECODE_INT_AS_REAL, &jerr);
        if (!again)
            __builtin_trap();
        if (jcs_write(again, &b) != ERR_OK || a.len != b.len || memcmp(a.data, b.data, a.len) != 0)
            __builtin_trap();
        json_decref(again);
    } else if (e != ERR_INVALID && e != ERR_TOO_LARGE && e != ERR_NOMEM) {
        __builtin_trap();
    }
    buf_release(&a);
    buf_release(&b);
    json_decref(v);
    return 0;
}

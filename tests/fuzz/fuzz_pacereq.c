/* Fuzzes the text of a waiting call's request as a node reads it back from
 * the queue (pace_req_decode): the database's text is checked like any
 * input. Whatever the input: ERR_OK or ERR_INVALID, never a crash; a text
 * that decodes encodes again and decodes to the same request. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "call/pace.h"
#include "store/store.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char text[QUEUE_REQ_MAX + 1], again[QUEUE_REQ_MAX + 1];
    static struct engine_outbound a, b;
    enum err e;

    if (size > QUEUE_REQ_MAX)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    e = pace_req_decode(text, &a);
    if (e != ERR_OK) {
        if (e != ERR_INVALID)
            abort();
        return 0;
    }
    if (pace_req_encode(&a, again, sizeof(again)) != ERR_OK)
        abort();
    if (pace_req_decode(again, &b) != ERR_OK || memcmp(&a, &b, sizeof(a)) != 0)
        abort();
    return 0;
}

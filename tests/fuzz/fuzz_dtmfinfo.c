/* Fuzzes the body of a SIP INFO request, which the party controls
 * (dtmfinfo_parse), read as application/dtmf-relay and as application/dtmf.
 * Whatever the input: ERR_OK with a key of "0123456789*#ABCD", or
 * ERR_INVALID (ERR_TOO_LARGE exactly above DTMFINFO_BODY_MAX); the digit is
 * written only on success; a plain body that parses also parses as the
 * Signal of a dtmf-relay body, to the same key. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "sip/dtmfinfo.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static char check(enum dtmfinfo_kind kind, const char *body, size_t size)
{
    char digit = 'x';
    enum err e = dtmfinfo_parse(kind, body, size, &digit);

    if ((e == ERR_TOO_LARGE) != (size > DTMFINFO_BODY_MAX))
        abort();
    if (e != ERR_OK) {
        if ((e != ERR_INVALID && e != ERR_TOO_LARGE) || digit != 'x')
            abort();
        return 0;
    }
    if (!digit || !strchr("0123456789*#ABCD", digit))
        abort();
    return digit;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static char relay[DTMFINFO_BODY_MAX + 16];
    const char *body = (const char *)data;
    char plain;

    (void)check(DTMFINFO_RELAY, body, size);
    plain = check(DTMFINFO_PLAIN, body, size);
    /* "Signal=" and a plain key without a line break make a relay body of
     * one line with the same key. */
    if (plain && size + 7 <= DTMFINFO_BODY_MAX && !memchr(data, '\n', size)) {
        memcpy(relay, "Signal=", 7);
        memcpy(relay + 7, data, size);
        if (check(DTMFINFO_RELAY, relay, size + 7) != plain)
            abort();
    }
    return 0;
}

/* Fuzzes what the carrier edge reads of SIP it receives (sip_peek: libre's
 * parser, then the Request-URI, To and From user parts, the called-number
 * rule, Call-ID, CSeq and the Reason header's Q.850 cause), and the rules
 * fed from it: the digest challenge count, and the --sip-allow parser on the
 * same bytes. Whatever the input: every string read is NUL-terminated within
 * its field, the called number is one of the two user parts, both user
 * parts are valid UTF-8 text, a cause is 0 or 1-127, and an accepted
 * allowlist holds at most ALLOW_MAX rules, each with zero host bits. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"
#include "sip/policy.h"
#include "sip/sip.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static struct challenges seen;

static void check_str(const char *s, size_t cap)
{
    if (strnlen(s, cap) >= cap)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct sip_peek pk;
    struct allowlist l;
    char text[ALLOW_TEXT_MAX + 2], why[160];
    size_t i;

    if (sip_peek(data, size, "alice", &pk) == ERR_OK) {
        check_str(pk.method, sizeof(pk.method));
        check_str(pk.cseq_method, sizeof(pk.cseq_method));
        check_str(pk.call_id, sizeof(pk.call_id));
        check_str(pk.called, sizeof(pk.called));
        check_str(pk.from, sizeof(pk.from));
        if (!utf8_valid(pk.called, strlen(pk.called)) || !utf8_valid(pk.from, strlen(pk.from)))
            abort();
        if (pk.reason_cause < 0 || pk.reason_cause > 127)
            abort();
        if (pk.request != (pk.code == 0))
            abort();
        (void)challenges_second(&seen, pk.call_id, strlen(pk.call_id), pk.cseq_method,
                                strlen(pk.cseq_method), pk.cseq);
    }
    if (sip_reason_cause((const char *)data, size) > 127)
        abort();
    if (size <= ALLOW_TEXT_MAX + 1) {
        memcpy(text, data, size);
        text[size] = '\0';
        if (allowlist_parse(text, &l, why, sizeof(why)) == ERR_OK) {
            if (l.n > ALLOW_MAX)
                abort();
            for (i = 0; i < l.n; i++) {
                struct allowlist one = {0};

                /* Each rule is a valid block: adding it again is accepted. */
                if (allowlist_add(&one, &l.v[i].ip, l.v[i].prefix) != ERR_OK)
                    abort();
                if (!allowlist_match(&l, &l.v[i].ip))
                    abort();
            }
        } else if (!why[0]) {
            abort();
        }
    }
    return 0;
}

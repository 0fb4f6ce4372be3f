/* idem: the Idempotency-Key of POST /sfvopi/calls (AGENT.md section 5),
 * around the handler that places the call: the key's check, its claim in
 * the database before the call, and keeping (or freeing) the answer after.
 * It never places a call and never decides what the answer is. Private to
 * api/. Thread-safe as the worker it is given (one per thread). */
#ifndef SFVOPI_API_IDEM_H
#define SFVOPI_API_IDEM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "api/internal.h"
#include "store/store.h"

/* A request's hold on its key, between api__idem_begin and api__idem_end. */
struct api_idem {
    bool held; /* a claim to finish or release */
    int64_t org_id;
    int64_t claimed_at;
    char key[IDEM_KEY_MAX + 1];
};

/* True when key[0..len) is a valid Idempotency-Key: 1 to IDEM_KEY_MAX
 * bytes, each printable ASCII (0x20-0x7E, the space included). Pure. */
bool api__idem_key_valid(const char *key, size_t len);

/* Before the handler, for an authenticated request whose body parsed as
 * JSON. Without an Idempotency-Key it returns true and holds nothing. With
 * one it checks the key (malformed, or sent twice: 400 Invalid request
 * body), hashes the body (SHA-256 of its RFC 8785 form) and claims the key
 * for the caller's organisation. True when the caller now holds the key
 * and must answer, then call api__idem_end. False when resp is already
 * the answer: 400, the kept answer again with Idempotent-Replayed (same
 * key, same body), 422 (same key, another body; also while the first is
 * still being answered), 409 (same key and body, still being answered),
 * or the handler's 500 when the database fails. */
bool api__idem_begin(struct api_worker *w, struct api_call *call, json_t *body,
                     struct api_idem *idem, struct http_response *resp);

/* After the handler answered resp: keeps a 200 or 400 answer for the key,
 * frees the key after any other (401, 429, 5xx), so that a retry may
 * place the call. A failure to do either is logged; the answer stands. */
void api__idem_end(struct api_worker *w, struct api_idem *idem, const struct http_response *resp);

#endif

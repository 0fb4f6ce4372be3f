/* idem: Idempotency-Key claims. The database decides who holds a key (one
 * INSERT ... ON CONFLICT, store.h idem_claim), so two nodes never both
 * place the call; this file only turns its answer into HTTP. Keys and
 * bodies are the client's data and are never logged. */
#include "api/idem.h"

#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "json/jcs.h"

#define MSG_INVALID "Invalid request body"
#define MSG_REUSED "Idempotency-Key reused with a different request"
#define MSG_IN_PROGRESS "A request with this Idempotency-Key is in progress"
/* The canonical form may outgrow the body: "1e20" is written
 * "100000000000000000000", five times as long. Eight times the largest
 * body holds any body. */
#define CANON_MAX (8 * HTTP_BODY_MAX)
/* The one status of the API that the error table does not hold. */
#define STATUS_UNPROCESSABLE 422

bool api__idem_key_valid(const char *key, size_t len)
{
    size_t i;

    if (!key || len == 0 || len > IDEM_KEY_MAX)
        return false;
    for (i = 0; i < len; i++) {
        if (key[i] < 0x20 || key[i] > 0x7E)
            return false;
    }
    return true;
}

/* The hex SHA-256 of the body's canonical form. */
static enum err body_hash(const json_t *body, char hex[IDEM_HASH_HEX + 1])
{
    unsigned char h[crypto_hash_sha256_BYTES];
    struct buf canon;
    enum err e;

    buf_init(&canon, CANON_MAX);
    e = jcs_write(body, &canon);
    if (e == ERR_OK) {
        crypto_hash_sha256(h, (const unsigned char *)(canon.data ? canon.data : ""), canon.len);
        sodium_bin2hex(hex, IDEM_HASH_HEX + 1, h, sizeof(h));
    }
    buf_release(&canon);
    return e;
}

/* The kept answer again, byte for byte. */
static void replay(const struct store_idem *kept, const char *fail, struct http_response *resp)
{
    resp->status = kept->status;
    buf_reset(&resp->body);
    if (buf_append_str(&resp->body, kept->body) != ERR_OK) {
        api__fail(resp, fail, ERR_NOMEM);
        return;
    }
    resp->idem_replayed = true;
}

bool api__idem_begin(struct api_worker *w, struct api_call *call, json_t *body,
                     struct api_idem *idem, struct http_response *resp)
{
    const struct http_request *req = call->req;
    char hash[IDEM_HASH_HEX + 1];
    struct store_idem *got = NULL;
    struct store_conn *c;
    bool go = false;
    enum err e;

    memset(idem, 0, sizeof(*idem));
    if (!req || req->idem_key_count == 0)
        return true;
    if (req->idem_key_count > 1 || !api__idem_key_valid(req->idem_key, req->idem_key_len)) {
        api__error(resp, ERR_INVALID, MSG_INVALID);
        return false;
    }
    /* A body jansson accepted is always writable; anything else is a bug
     * worth a 500 rather than a key that never matches. */
    e = body_hash(body, hash);
    if (e != ERR_OK) {
        api__fail(resp, call->h->fail, e);
        return false;
    }
    got = calloc(1, sizeof(*got)); /* a kept body is too big for a pool thread's stack */
    if (!got) {
        api__fail(resp, call->h->fail, ERR_NOMEM);
        return false;
    }
    memcpy(idem->key, req->idem_key, req->idem_key_len);
    idem->key[req->idem_key_len] = '\0';
    idem->org_id = call->who.org_id;
    e = api__conn(w, &c);
    if (e == ERR_OK)
        e = c->ops->idem_claim(c, idem->org_id, idem->key, hash, got);
    if (e != ERR_OK) {
        api__fail(resp, call->h->fail, e);
        goto out_got;
    }
    if (got->state == STORE_IDEM_CLAIMED) {
        idem->held = true;
        idem->claimed_at = got->claimed_at;
        go = true;
    } else if (strcmp(got->req_hash, hash) != 0) {
        /* Whatever the first request's fate, this one is a mistake. */
        api__error(resp, ERR_INVALID, MSG_REUSED);
        resp->status = STATUS_UNPROCESSABLE;
    } else if (got->state == STORE_IDEM_PENDING) {
        api__error(resp, ERR_CONFLICT, MSG_IN_PROGRESS);
    } else {
        replay(got, call->h->fail, resp);
        log_debug("msg=\"kept answer given again\" org=%lld status=%d", (long long)idem->org_id,
                  got->status);
    }
out_got:
    free(got);
    return go;
}

void api__idem_end(struct api_worker *w, struct api_idem *idem, const struct http_response *resp)
{
    struct store_conn *c;
    bool keep = resp->status == 200 || resp->status == 400;
    enum err e;

    if (!idem->held)
        return;
    idem->held = false;
    e = api__conn(w, &c);
    if (e == ERR_OK && keep)
        e = c->ops->idem_finish(c, idem->org_id, idem->key, idem->claimed_at, resp->status,
                                resp->body.data ? resp->body.data : "");
    if (e == ERR_TOO_LARGE || (e == ERR_OK && !keep))
        e = c->ops->idem_release(c, idem->org_id, idem->key, idem->claimed_at);
    /* Left PENDING, the key is free again after IDEM_STALE_MS. */
    if (e != ERR_OK)
        log_error("msg=\"idempotency key not %s\" org=%lld status=%d err=%s",
                  keep ? "kept" : "released", (long long)idem->org_id, resp->status, err_str(e));
}

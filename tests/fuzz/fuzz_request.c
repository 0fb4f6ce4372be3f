/* Fuzzes the whole request path below the socket: method, path, headers and
 * body in; status and JSON body out, against an in-memory SQLite store that
 * holds one organisation, a key, inventory numbers and an app.
 *
 * Input: one flag byte, then NUL-separated fields:
 *   method \0 path \0 content-type \0 request-id \0 api-key \0 body
 * Flag bit 0 replaces the api-key field with the known key, so the fuzzer
 * reaches the authenticated routes; bit 1 drops the content-type header;
 * bit 4 sends the request-id field as an Idempotency-Key too (bit 5: the
 * header twice).
 * A '?' in the path starts the query, split at '&' and '=' into arguments
 * as the server does (left undecoded). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/api.h"
#include "auth/apikey.h"
#include "core/clock.h"
#include "core/rand.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define FIELDS 6
#define RESET_EVERY 2000

static const char known[] = "sfvk_0123456789abcdefghijABCDEFGHIJ0123456789xyz";
static struct store *store;
static struct api_worker *worker;
static unsigned runs;

static void setup(void)
{
    struct api_config cfg = {0};
    struct store_conn *c;
    struct store_key k = {0};
    struct store_app a = {0};
    unsigned char hash[KEY_HASH_LEN];
    int64_t org, id;
    char num[E164_MAX];
    int i;

    api_worker_free(worker);
    store_free(store);
    if (store_open("sqlite::memory:", &store) != ERR_OK || store_conn_open(store, &c) != ERR_OK)
        __builtin_trap();
    if (c->ops->org_create(c, "Fuzz", 1, &org) != ERR_OK)
        __builtin_trap();
    k.org_id = org;
    k.user_id = 5;
    memcpy(k.prefix, known, KEY_PREFIX_LEN);
    k.created_at = 1;
    apikey_hash(known, strlen(known), hash);
    if (c->ops->key_create(c, &k, hash, &id) != ERR_OK)
        __builtin_trap();
    for (i = 1; i <= 3; i++) {
        snprintf(num, sizeof(num), "+91800000000%d", i);
        if (c->ops->number_add(c, org, num, "fuzz", 1, &id) != ERR_OK)
            __builtin_trap();
    }
    memcpy(a.app_id, "sfv_app_aaaaaaaaaaaa", APP_ID_LEN + 1);
    a.org_id = org;
    memcpy(a.name, "A", 2);
    memcpy(a.answer_url, "https://example.com/a", 22);
    memcpy(a.answer_method, "POST", 5);
    memcpy(a.hangup_method, "POST", 5);
    memcpy(a.fallback_answer_method, "POST", 5);
    memcpy(a.status, "ACTIVE", 7);
    a.created_at = 1;
    if (c->ops->app_create(c, &a) != ERR_OK)
        __builtin_trap();
    store_conn_close(c);
    cfg.store = store;
    memcpy(cfg.default_cc, "91", 3);
    cfg.key_cache_ttl_ms = 1000;
    worker = api_worker_new(&cfg);
    if (!worker)
        __builtin_trap();
}

/* Cuts the path at its first '?' and splits the rest, in place, into
 * req->query (keys without '=' get a NULL value). */
static void split_query(char *path, struct http_request *req)
{
    char *q = memchr(path, '?', req->path_len), *arg, *end;

    if (!q)
        return;
    end = path + req->path_len;
    req->path_len = (size_t)(q - path);
    *q = '\0';
    for (arg = q + 1; arg <= end; arg++) {
        char *amp = memchr(arg, '&', (size_t)(end - arg)), *eq;

        if (!amp)
            amp = end;
        *amp = '\0';
        eq = memchr(arg, '=', (size_t)(amp - arg));
        if (eq)
            *eq = '\0';
        if (req->query_n < HTTP_QUERY_MAX) {
            req->query[req->query_n].key = arg;
            req->query[req->query_n].value = eq ? eq + 1 : NULL;
        }
        req->query_n++;
        arg = amp;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *field[FIELDS] = {"", "", "", "", "", ""};
    size_t flen[FIELDS] = {0};
    struct http_request req;
    struct http_response resp;
    char *copy;
    size_t i, start;
    int f = 0;
    uint8_t flags;

    if (!store || ++runs % RESET_EVERY == 0) {
        if (rand_setup() != ERR_OK)
            __builtin_trap();
        setup();
    }
    if (size < 1)
        return 0;
    flags = data[0];
    copy = malloc(size); /* fields are NUL-terminated in place */
    if (!copy)
        return 0;
    memcpy(copy, data + 1, size - 1);
    copy[size - 1] = '\0';
    for (i = 0, start = 0; i < size && f < FIELDS; i++) {
        if (i == size - 1 || copy[i] == '\0') {
            field[f] = copy + start;
            flen[f] = i - start;
            f++;
            start = i + 1;
        }
    }

    memset(&req, 0, sizeof(req));
    req.method = http_method_parse(field[0]);
    req.path = field[1];
    req.path_len = flen[1];
    split_query(copy + (field[1] - copy), &req);
    req.content_type = (flags & 2) ? NULL : field[2];
    req.request_id = flen[3] ? field[3] : NULL;
    req.api_key = (flags & 1) ? known : field[4];
    req.api_key_len = (flags & 1) ? strlen(known) : flen[4];
    req.api_key_count = 1;
    req.content_length = -1;
    req.peer_loopback = (flags & 4) != 0;
    req.forwarded = (flags & 8) != 0;
    if (flags & 16) {
        req.idem_key = field[3];
        req.idem_key_len = flen[3];
        req.idem_key_count = (flags & 32) ? 2 : 1;
    }
    req.body = field[5];
    req.body_len = f == FIELDS ? size - 1 - (size_t)(field[5] - copy) : 0;
    if (req.body_len > HTTP_BODY_MAX)
        req.body_too_large = true;

    http_response_init(&resp);
    api_handle(worker, &req, &resp);
    /* Every answer is a known status with a JSON object body. */
    if (resp.status < 200 || resp.status > 599 || resp.body.len == 0 || resp.body.data[0] != '{')
        __builtin_trap();
    if (resp.status == 405 && !resp.allow)
        __builtin_trap();
    /* Only kept answers are given again (AGENT.md section 5). */
    if (resp.idem_replayed && resp.status != 200 && resp.status != 400)
        __builtin_trap();
    http_response_release(&resp);
    free(copy);
    return 0;
}

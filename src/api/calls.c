/* calls: placing outbound calls and reading call records (CALLS.md
 * sections 2 and 8). This file never talks SIP: it validates, checks the
 * from-number's route, and hands the call to the engine through the
 * configured place_call; the engine stores the record. */
#include <stdio.h>
#include <string.h>

#include "api/idem.h"
#include "api/internal.h"
#include "call/outbound.h"
#include "core/parse.h"
#include "http/metrics.h"

#define MSG_CALL_NOT_FOUND "Call not found"
#define MSG_CALL_ENDED "Call already ended"
#define MSG_NOT_CONFIGURED "calling is not configured"
#define MSG_QUEUE_FULL "Too many queued calls for this app"
#define LIST_LIMIT_DEFAULT 20
#define LIST_LIMIT_MAX 100
/* A list cursor is this prefix and the decimal seq of the last call
 * returned (no sign, no leading zero). Clients treat it as opaque. */
#define CURSOR_PREFIX "sfvc_"
#define CURSOR_MAX (sizeof(CURSOR_PREFIX) - 1 + 19)
/* Longest query value worth decoding; anything longer is invalid. */
#define QUERY_VALUE_MAX 64

/* ---- POST /sfvopi/calls ---- */

/* Joins the validated body with the from-number's app: the hangup URL
 * falls back to the app's (with the app's method unless the body names
 * one), and the fallback is always the app's. */
static void outbound_from(const struct call_body *b, const struct store_app *app, int64_t org_id,
                          struct engine_outbound *out)
{
    *out = b->req;
    out->org_id = org_id;
    memcpy(out->app_id, app->app_id, sizeof(out->app_id));
    if (!b->req.hangup_url[0] && app->hangup_url[0]) {
        memcpy(out->hangup_url, app->hangup_url, sizeof(out->hangup_url));
        if (!b->hangup_method_set)
            memcpy(out->hangup_method, app->hangup_method, sizeof(out->hangup_method));
    }
    memcpy(out->fallback_url, app->fallback_answer_url, sizeof(out->fallback_url));
    memcpy(out->fallback_method, app->fallback_answer_method, sizeof(out->fallback_method));
}

/* AGENT.md section 6: the app has caps, so the call waits in its queue
 * for a pacer. A full queue is answered here: 429 with a Retry-After of
 * the time the calls waiting now take to start at the app's rate (1 a
 * second without one, which a concurrency cap alone may well be slower
 * than), at least 1 s. */
static enum err queue_call(struct api_worker *w, struct store_conn *c, const struct store_app *app,
                           const struct engine_outbound *req,
                           char request_uuid[REQUEST_UUID_LEN + 1],
                           char call_uuid[CALL_UUID_LEN + 1], const char **why,
                           struct http_response *resp)
{
    int64_t position = 0, cps = app->calls_per_second ? app->calls_per_second : 1, wait;
    enum err e;

    e = w->cfg.queue_call(w->cfg.engine, c, req, request_uuid, call_uuid, &position, why);
    if (e != ERR_RATE_LIMITED)
        return e;
    wait = (position + cps - 1) / cps;
    resp->retry_after = (unsigned)(wait < 1 ? 1 : wait);
    api__error(resp, ERR_RATE_LIMITED, MSG_QUEUE_FULL);
    return ERR_RATE_LIMITED;
}

static void calls_create(struct api_worker *w, struct api_call *call, json_t *body,
                         struct http_response *resp)
{
    char number_status[STATUS_MAX + 1] = "";
    char request_uuid[REQUEST_UUID_LEN + 1] = "";
    char call_uuid[CALL_UUID_LEN + 1] = "";
    char msg[128];
    struct engine_outbound req;
    struct field_errors fe;
    struct store_app app;
    struct call_body b;
    struct store_conn *c;
    const char *why = NULL;
    int64_t org_id = 0;
    struct jw jw;
    enum err e;

    if (validate_call_create(body, w->cfg.default_cc, w->cfg.sip_headers, w->cfg.nsip_headers, &b,
                             &fe) != ERR_OK) {
        api__invalid(resp, &fe);
        return;
    }
    e = api__conn(w, &c);
    if (e == ERR_OK)
        e = c->ops->number_route(c, b.req.from, &org_id, number_status, &app);
    if (e != ERR_OK && e != ERR_NOT_FOUND) {
        api__fail(resp, call->h->fail, e);
        return;
    }
    /* Another org's number is not in the caller's inventory: the same
     * answer as an unknown one, without a hint. */
    if (e == ERR_NOT_FOUND || org_id != call->who.org_id || !app.app_id[0] ||
        strcmp(app.status, "ACTIVE") != 0) {
        snprintf(msg, sizeof(msg), "VoIP number %s is not linked to any SFVoPI app", b.req.from);
        api__error(resp, ERR_INVALID, msg);
        return;
    }
    if (!w->cfg.engine || !w->cfg.place_call) {
        snprintf(msg, sizeof(msg), "%s: %s", call->h->fail, MSG_NOT_CONFIGURED);
        api__error(resp, ERR_INTERNAL, msg);
        return;
    }
    outbound_from(&b, &app, org_id, &req);
    if ((app.max_concurrent_calls || app.calls_per_second) && w->cfg.queue_call)
        e = queue_call(w, c, &app, &req, request_uuid, call_uuid, &why, resp);
    else
        e = w->cfg.place_call(w->cfg.engine, c, &req, request_uuid, call_uuid, &why);
    if (e == ERR_RATE_LIMITED)
        return; /* answered */
    if (e != ERR_OK) {
        if (e == ERR_DB)
            metrics_db_error();
        snprintf(msg, sizeof(msg), "%s: %s", call->h->fail, why ? why : err_str(e));
        api__error(resp, ERR_INTERNAL, msg);
        return;
    }
    api__ok_begin(resp, &jw);
    jw_lit(&jw, "{\"request_uuid\":");
    jw_str(&jw, request_uuid);
    jw_lit(&jw, ",\"call_uuid\":");
    jw_str(&jw, call_uuid);
    jw_lit(&jw, ",\"status\":\"queued\"}");
    api__ok_end(resp, &jw, call->h->fail);
}

/* AGENT.md section 5: with an Idempotency-Key, the call is placed only by
 * the request that claims the key; the others get its answer. The key is
 * checked after the body parsed as JSON (a body that does not is 400, and
 * no key is claimed for it) and before the body's fields. */
void api__calls_create(struct api_worker *w, struct api_call *call, json_t *body,
                       struct http_response *resp)
{
    struct api_idem idem;

    if (!api__idem_begin(w, call, body, &idem, resp))
        return;
    calls_create(w, call, body, resp);
    api__idem_end(w, &idem, resp);
}

/* ---- records ---- */

/* rtp_jitter_ms as the hangup webhook writes it (call/webhook.c): the
 * shortest exact decimal of the microseconds in milliseconds, so that a
 * record and its webhook agree to the byte. */
static void jitter_text(int64_t us, char out[32])
{
    long long ms = us > 0 ? (long long)(us / 1000) : 0, frac = us > 0 ? (long long)(us % 1000) : 0;

    if (frac == 0)
        snprintf(out, 32, "%lld", ms);
    else if (frac % 100 == 0)
        snprintf(out, 32, "%lld.%01lld", ms, frac / 100);
    else if (frac % 10 == 0)
        snprintf(out, 32, "%lld.%02lld", ms, frac / 10);
    else
        snprintf(out, 32, "%lld.%03lld", ms, frac);
}

/* A call record in the documented field order. Times, duration and cause
 * are null while they do not apply. queue_position (AGENT.md section 6)
 * follows for a call waiting in its app's queue (position > 0). */
static void write_call(struct jw *w, const struct store_call *k, int64_t queue_position)
{
    bool ended = k->ended_at != 0;
    char jitter[32];

    jw_lit(w, "{\"call_uuid\":");
    jw_str(w, k->call_uuid);
    jw_lit(w, ",\"request_uuid\":");
    jw_str_or_null(w, k->request_uuid);
    jw_lit(w, ",\"org_id\":");
    jw_i64(w, k->org_id);
    jw_lit(w, ",\"app_id\":");
    jw_str(w, k->app_id);
    jw_lit(w, ",\"from\":");
    jw_str(w, k->from);
    jw_lit(w, ",\"to\":");
    jw_str(w, k->to);
    jw_lit(w, ",\"direction\":");
    jw_str(w, k->direction);
    jw_lit(w, ",\"call_status\":");
    jw_str(w, k->status);
    jw_lit(w, ",\"started_at\":");
    jw_time_or_null(w, k->started_at);
    jw_lit(w, ",\"answer_at\":");
    jw_time_or_null(w, k->answered_at);
    jw_lit(w, ",\"ended_at\":");
    jw_time_or_null(w, k->ended_at);
    jw_lit(w, ",\"duration\":");
    if (ended)
        jw_i64(w, k->duration);
    else
        jw_lit(w, "null");
    jw_lit(w, ",\"hangup_cause\":");
    jw_str_or_null(w, ended ? k->hangup_cause : "");
    /* The party's RTP (SIP.md section 6): 0 until the call ends. */
    jitter_text(k->rtp_jitter_us, jitter);
    jw_lit(w, ",\"rtp_packets_received\":");
    jw_i64(w, k->rtp_packets_received);
    jw_lit(w, ",\"rtp_packets_lost\":");
    jw_i64(w, k->rtp_packets_lost);
    jw_lit(w, ",\"rtp_jitter_ms\":");
    jw_raw(w, jitter);
    if (queue_position > 0) {
        jw_lit(w, ",\"queue_position\":");
        jw_i64(w, queue_position);
    }
    jw_lit(w, "}");
}

/* The call :call_id names in the caller's organisation, into *k (and the
 * connection it was read on, *c). False when the answer (404 or the
 * route's 500) is already written. */
static bool call_lookup(struct api_worker *w, struct api_call *call, struct store_conn **c,
                        struct store_call *k, struct http_response *resp)
{
    char id[CALL_UUID_LEN + 1];
    enum err e;

    /* An id of neither form names no call: no need to ask the database. */
    if (!validate_call_id(call->m.call_id, id)) {
        api__error(resp, ERR_NOT_FOUND, MSG_CALL_NOT_FOUND);
        return false;
    }
    e = api__conn(w, c);
    if (e == ERR_OK)
        e = (*c)->ops->call_get(*c, call->who.org_id, id, k);
    if (e == ERR_NOT_FOUND) {
        api__error(resp, ERR_NOT_FOUND, MSG_CALL_NOT_FOUND);
        return false;
    }
    if (e != ERR_OK) {
        api__fail(resp, call->h->fail, e);
        return false;
    }
    return true;
}

void api__call_get(struct api_worker *w, struct api_call *call, json_t *body,
                   struct http_response *resp)
{
    struct store_call k;
    struct store_conn *c;
    int64_t position = 0;
    struct jw jw;
    enum err e;

    (void)body;
    if (!call_lookup(w, call, &c, &k, resp))
        return;
    /* Only a call without an owner can be waiting: one read more. */
    if (!k.node_id[0] && strcmp(k.status, "QUEUED") == 0) {
        e = c->ops->call_queue_position(c, k.call_uuid, &position);
        if (e != ERR_OK) {
            api__fail(resp, call->h->fail, e);
            return;
        }
    }
    api__ok_begin(resp, &jw);
    write_call(&jw, &k, position);
    api__ok_end(resp, &jw, call->h->fail);
}

/* AGENT.md section 3: ends a live call whichever node owns it. The answer
 * carries the status the call had when the request came. */
void api__call_hangup(struct api_worker *w, struct api_call *call, json_t *body,
                      struct http_response *resp)
{
    struct store_call k;
    struct store_conn *c;
    struct jw jw;
    enum err e;

    (void)body;
    if (!call_lookup(w, call, &c, &k, resp))
        return;
    /* The engine decides what a final status is (call/call.h). */
    e = w->cfg.hangup_call ? w->cfg.hangup_call(w->cfg.engine, c, &k) : ERR_INTERNAL;
    if (e == ERR_CONFLICT) {
        api__error(resp, ERR_CONFLICT, MSG_CALL_ENDED);
        return;
    }
    if (e != ERR_OK) {
        api__fail(resp, call->h->fail, e);
        return;
    }
    api__ok_begin(resp, &jw);
    jw_lit(&jw, "{\"call_uuid\":");
    jw_str(&jw, k.call_uuid);
    jw_lit(&jw, ",\"status\":");
    jw_str(&jw, k.status);
    jw_lit(&jw, "}");
    api__ok_end(resp, &jw, call->h->fail);
}

/* Percent-decodes a query value into out; false when it is absent, too
 * long, malformed or holds a NUL. */
static bool query_value(const char *v, char *out, size_t outsz)
{
    size_t n;

    if (!v || strlen(v) >= QUERY_VALUE_MAX)
        return false;
    return http_path_decode(v, strlen(v), out, outsz, &n) == ERR_OK && strlen(out) == n;
}

static bool all_digits(const char *s)
{
    if (!*s)
        return false;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return false;
    }
    return true;
}

/* limit: 1 to 100 in decimal, without sign or leading zero. */
static bool parse_limit(const char *v, int *limit)
{
    char s[QUERY_VALUE_MAX];
    int64_t n;

    if (!query_value(v, s, sizeof(s)) || !all_digits(s) || s[0] == '0' ||
        parse_i64(s, 1, LIST_LIMIT_MAX, &n) != ERR_OK)
        return false;
    *limit = (int)n;
    return true;
}

static bool parse_cursor(const char *v, int64_t *before)
{
    char s[QUERY_VALUE_MAX];
    const char *digits;

    if (!query_value(v, s, sizeof(s)) || strlen(s) > CURSOR_MAX ||
        strncmp(s, CURSOR_PREFIX, sizeof(CURSOR_PREFIX) - 1) != 0)
        return false;
    digits = s + sizeof(CURSOR_PREFIX) - 1;
    return all_digits(digits) && digits[0] != '0' &&
           parse_i64(digits, 1, INT64_MAX, before) == ERR_OK;
}

/* Reads limit and cursor from the query; other arguments are ignored, as
 * on every other route. A repeated limit or cursor is invalid. */
static bool list_params(const struct http_request *req, int *limit, int64_t *before)
{
    char key[16];
    bool seen_limit = false, seen_cursor = false;
    int i;

    *limit = LIST_LIMIT_DEFAULT;
    *before = INT64_MAX;
    for (i = 0; i < req->query_n && i < HTTP_QUERY_MAX; i++) {
        const struct http_query_arg *a = &req->query[i];

        if (!query_value(a->key, key, sizeof(key)))
            continue;
        if (strcmp(key, "limit") == 0) {
            if (seen_limit || !parse_limit(a->value, limit))
                return false;
            seen_limit = true;
        } else if (strcmp(key, "cursor") == 0) {
            if (seen_cursor || !parse_cursor(a->value, before))
                return false;
            seen_cursor = true;
        }
    }
    return true;
}

struct call_page {
    struct api_list l;
    int limit;
    int64_t last_seq; /* of the last call written */
    bool more;        /* a call beyond the page exists */
};

static enum err call_row(void *ud, const struct store_call *k)
{
    struct call_page *p = ud;

    if (p->l.n == p->limit) {
        p->more = true;
        return ERR_OK;
    }
    api__list_item(&p->l);
    write_call(&p->l.w, k, 0);
    p->last_seq = k->seq;
    return jw_end(&p->l.w);
}

void api__calls_list(struct api_worker *w, struct api_call *call, json_t *body,
                     struct http_response *resp)
{
    struct call_page p = {0};
    int64_t before;
    struct store_conn *c;
    enum err e;

    (void)body;
    if (!list_params(call->req, &p.limit, &before)) {
        api__invalid(resp, NULL);
        return;
    }
    api__list_begin(resp, &p.l);
    e = api__conn(w, &c);
    /* One more than the page: whether it comes back says if there are more. */
    if (e == ERR_OK)
        e = c->ops->call_list(c, call->who.org_id, before, p.limit + 1, call_row, &p);
    if (e != ERR_OK) {
        api__fail(resp, call->h->fail, e);
        return;
    }
    jw_lit(&p.l.w, "]");
    if (p.more) {
        char cursor[CURSOR_MAX + 1];

        snprintf(cursor, sizeof(cursor), CURSOR_PREFIX "%lld", (long long)p.last_seq);
        jw_lit(&p.l.w, ",\"next_cursor\":");
        jw_str(&p.l.w, cursor);
    }
    api__ok_end(resp, &p.l.w, call->h->fail);
}

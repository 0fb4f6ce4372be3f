/* api: routing, the order of checks, envelopes, and the operational
 * endpoints. Resource logic lives in apps.c, numbers.c and calls.c. Nothing here may
 * let driver text or a key reach a response. */
#include "api/api.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/internal.h"
#include "core/clock.h"
#include "core/log.h"
#include "http/metrics.h"

#define MSG_NOT_FOUND "Not found"
#define MSG_METHOD "Method not allowed"
#define MSG_UNAUTHORIZED "UnAuthorized, Please Provide Valid API Key"
#define MSG_TOO_LARGE "Request body too large"
#define MSG_INVALID "Invalid request body"
#define MSG_TOO_MANY "Too many requests"

static void healthz(struct api_worker *w, struct api_call *call, json_t *body,
                    struct http_response *resp);
static void readyz(struct api_worker *w, struct api_call *call, json_t *body,
                   struct http_response *resp);
static void metrics(struct api_worker *w, struct api_call *call, json_t *body,
                    struct http_response *resp);
static void openapi(struct api_worker *w, struct api_call *call, json_t *body,
                    struct http_response *resp);

/* docs/openapi.json, compiled in by scripts/embed-text.sh. */
extern const char openapi_json[];
extern const size_t openapi_json_len;

static const struct api_handler handlers[] = {
    {ROUTE_HEALTHZ, HTTP_GET, "healthz", false, false, "", healthz},
    {ROUTE_READYZ, HTTP_GET, "readyz", false, false, "", readyz},
    {ROUTE_METRICS, HTTP_GET, "metrics", false, false, "", metrics},
    {ROUTE_OPENAPI, HTTP_GET, "openapi", false, false, "", openapi},
    {ROUTE_APPS, HTTP_POST, "apps.create", true, true, "Failed to create SFVoPI app",
     api__apps_create},
    {ROUTE_APPS, HTTP_GET, "apps.list", true, false, "Failed to get SFVoPI apps", api__apps_list},
    {ROUTE_APP, HTTP_GET, "apps.get", true, false, "Failed to get SFVoPI app", api__app_get},
    {ROUTE_APP, HTTP_PUT, "apps.update", true, true, "Failed to update SFVoPI app",
     api__app_update},
    {ROUTE_APP, HTTP_DELETE, "apps.delete", true, false, "Failed to delete SFVoPI app",
     api__app_delete},
    {ROUTE_APP_NUMBERS, HTTP_POST, "numbers.link", true, true, "Failed to link number",
     api__numbers_link},
    {ROUTE_APP_NUMBERS, HTTP_GET, "numbers.list", true, false, "Failed to get numbers",
     api__numbers_list},
    {ROUTE_APP_NUMBER, HTTP_DELETE, "numbers.unlink", true, false, "Failed to unlink number",
     api__numbers_unlink},
    {ROUTE_AVAILABLE, HTTP_GET, "numbers.available", true, false, "Failed to get available numbers",
     api__numbers_available},
    {ROUTE_CALLS, HTTP_POST, "calls.create", true, true, "Failed to initiate outbound call",
     api__calls_create},
    {ROUTE_CALL, HTTP_GET, "calls.get", true, false, "Failed to get call", api__call_get},
    {ROUTE_CALL_HANGUP, HTTP_POST, "calls.hangup", true, false, "Failed to hang up call",
     api__call_hangup},
    {ROUTE_CALLS, HTTP_GET, "calls.list", true, false, "Failed to get calls", api__calls_list},
};

/* The Allow header of each route, in the order of the handler table. */
static const char *allow_of(enum route_id r)
{
    switch (r) {
    case ROUTE_APPS: return "GET, POST";
    case ROUTE_APP: return "GET, PUT, DELETE";
    case ROUTE_APP_NUMBERS:
    case ROUTE_CALLS: return "GET, POST";
    case ROUTE_APP_NUMBER: return "DELETE";
    case ROUTE_CALL_HANGUP: return "POST";
    case ROUTE_AVAILABLE:
    case ROUTE_CALL:
    case ROUTE_METRICS:
    case ROUTE_OPENAPI:
    case ROUTE_HEALTHZ:
    case ROUTE_READYZ: return "GET";
    case ROUTE_NONE: break;
    }
    return "";
}

#define NHANDLERS ((int)(sizeof(handlers) / sizeof(handlers[0])))

const char *const *api_route_names(int *n)
{
    static const char *names[NHANDLERS + 1];
    int i;

    /* Filled on every call with the same values: harmless if racing. */
    names[0] = "-";
    for (i = 0; i < NHANDLERS; i++)
        names[i + 1] = handlers[i].name;
    *n = NHANDLERS + 1;
    return names;
}

/* Routes the admin listener serves; the others are not found there. */
static bool admin_route(enum route_id r)
{
    return r == ROUTE_HEALTHZ || r == ROUTE_READYZ || r == ROUTE_METRICS;
}

struct api_worker *api_worker_new(const struct api_config *cfg)
{
    struct api_worker *w = calloc(1, sizeof(*w));

    if (!w)
        return NULL;
    w->cfg = *cfg;
    w->keys = keycache_new(cfg->key_cache_ttl_ms);
    if (!w->keys) {
        free(w);
        return NULL;
    }
    return w;
}

void api_worker_free(struct api_worker *w)
{
    if (!w)
        return;
    store_conn_close(w->conn);
    keycache_free(w->keys);
    free(w);
}

enum err api__conn(struct api_worker *w, struct store_conn **out)
{
    enum err e;

    if (!w->conn) {
        e = store_conn_open(w->cfg.store, &w->conn);
        if (e != ERR_OK)
            return e;
    }
    *out = w->conn;
    return ERR_OK;
}

int api__status(enum err e)
{
    static const int status[] = {
        [ERR_OK] = 200,
        [ERR_INVALID] = 400,
        [ERR_UNAUTHENTICATED] = 401,
        [ERR_NOT_FOUND] = 404,
        [ERR_NOT_ALLOWED] = 405,
        [ERR_CONFLICT] = 409,
        [ERR_TOO_LARGE] = 413,
        [ERR_RATE_LIMITED] = 429,
        /* The documented API answers every server-side failure with 500. */
        [ERR_UNAVAILABLE] = 500,
        [ERR_DB] = 500,
        [ERR_NOMEM] = 500,
        [ERR_INTERNAL] = 500,
    };

    return (unsigned)e < sizeof(status) / sizeof(status[0]) && status[e] ? status[e] : 500;
}

void api__error(struct http_response *r, enum err e, const char *msg)
{
    struct jw w;

    r->status = api__status(e);
    buf_reset(&r->body);
    jw_init(&w, &r->body);
    jw_lit(&w, "{\"message\":");
    jw_str(&w, msg);
    jw_lit(&w, "}");
    if (jw_end(&w) != ERR_OK) {
        /* Only allocation can fail here; an empty body still carries the status. */
        buf_reset(&r->body);
    }
}

void api__invalid(struct http_response *r, const struct field_errors *fe)
{
    struct jw w;
    int i;

    if (!fe || fe->n == 0) {
        api__error(r, ERR_INVALID, MSG_INVALID);
        return;
    }
    r->status = 400;
    buf_reset(&r->body);
    jw_init(&w, &r->body);
    jw_lit(&w, "{\"message\":\"" MSG_INVALID "\",\"errors\":[");
    for (i = 0; i < fe->n; i++) {
        jw_raw(&w, i ? ",{\"field\":" : "{\"field\":");
        jw_str(&w, fe->e[i].field);
        jw_lit(&w, ",\"reason\":");
        jw_str(&w, fe->e[i].reason);
        jw_lit(&w, "}");
    }
    jw_lit(&w, "]}");
    if (jw_end(&w) != ERR_OK)
        api__error(r, ERR_INVALID, MSG_INVALID);
}

void api__fail(struct http_response *r, const char *prefix, enum err e)
{
    char msg[160];

    if (e == ERR_DB || e == ERR_UNAVAILABLE)
        metrics_db_error();
    if (e == ERR_TOO_LARGE)
        e = ERR_INTERNAL; /* an answer over its cap is our fault, not the client's */
    snprintf(msg, sizeof(msg), "%s: %s", prefix, err_str(e));
    api__error(r, ERR_INTERNAL, msg);
}

void api__list_begin(struct http_response *r, struct api_list *l)
{
    api__ok_begin(r, &l->w);
    jw_lit(&l->w, "[");
    l->n = 0;
}

void api__list_item(struct api_list *l)
{
    if (l->n++)
        jw_lit(&l->w, ",");
}

void api__list_end(struct http_response *r, struct api_list *l, const char *prefix)
{
    jw_lit(&l->w, "]");
    api__ok_end(r, &l->w, prefix);
}

void api__ok_begin(struct http_response *r, struct jw *w)
{
    buf_reset(&r->body);
    jw_init(w, &r->body);
    jw_lit(w, "{\"data\":");
}

void api__ok_end(struct http_response *r, struct jw *w, const char *prefix)
{
    enum err e;

    jw_lit(w, ",\"message\":\"success\"}");
    e = jw_end(w);
    if (e != ERR_OK) {
        api__fail(r, prefix, e);
        return;
    }
    r->status = 200;
}

static void healthz(struct api_worker *w, struct api_call *call, json_t *body,
                    struct http_response *resp)
{
    (void)w;
    (void)call;
    (void)body;
    resp->status = 200;
    buf_reset(&resp->body);
    if (buf_append_str(&resp->body, "{\"status\":\"ok\"}") != ERR_OK)
        buf_reset(&resp->body);
}

static void metrics(struct api_worker *w, struct api_call *call, json_t *body,
                    struct http_response *resp)
{
    (void)call;
    (void)body;
    buf_reset(&resp->body);
    if (!w->cfg.metrics) {
        api__error(resp, ERR_NOT_FOUND, MSG_NOT_FOUND);
        return;
    }
    if (metrics_render(&resp->body) != ERR_OK) {
        api__error(resp, ERR_INTERNAL, "Failed to render metrics");
        return;
    }
    resp->status = 200;
    resp->content_type = "text/plain; version=0.0.4; charset=utf-8";
}

static void openapi(struct api_worker *w, struct api_call *call, json_t *body,
                    struct http_response *resp)
{
    (void)w;
    (void)call;
    (void)body;
    buf_reset(&resp->body);
    if (buf_append(&resp->body, openapi_json, openapi_json_len) != ERR_OK) {
        api__error(resp, ERR_INTERNAL, "Failed to get the OpenAPI document");
        return;
    }
    resp->status = 200;
}

static void readyz(struct api_worker *w, struct api_call *call, json_t *body,
                   struct http_response *resp)
{
    struct store_conn *c;
    bool ready;

    (void)call;
    (void)body;
    /* A draining node takes no new calls: the load balancer should send
     * its traffic elsewhere. */
    ready = !(w->cfg.draining && w->cfg.engine && w->cfg.draining(w->cfg.engine)) &&
            api__conn(w, &c) == ERR_OK && c->ops->ping(c) == ERR_OK;
    resp->status = ready ? 200 : 503;
    buf_reset(&resp->body);
    if (buf_append_str(&resp->body,
                       ready ? "{\"status\":\"ready\"}" : "{\"status\":\"unavailable\"}") != ERR_OK)
        buf_reset(&resp->body);
}

/* /metrics is for the host itself, or for whoever reaches the admin
 * listener: elsewhere a request from another host, or relayed by a proxy
 * (even a local one), is answered as for an unknown path, so that the
 * route is not revealed. */
static bool metrics_visible(const struct api_worker *w, const struct http_request *req)
{
    return w->cfg.admin_only || w->cfg.metrics_public || (req->peer_loopback && !req->forwarded);
}

/* Checks the X-API-Key header. On failure resp holds the answer. */
static bool authenticate(struct api_worker *w, const struct http_request *req,
                         struct api_call *call, struct http_response *resp)
{
    struct store_conn *c;
    enum err e;

    if (req->api_key_count != 1 || !req->api_key) {
        api__error(resp, ERR_UNAUTHENTICATED, MSG_UNAUTHORIZED);
        return false;
    }
    e = api__conn(w, &c);
    if (e == ERR_OK) {
        int hit = 0;

        e = keycache_lookup(w->keys, c, req->api_key, req->api_key_len, &call->who, &hit);
        metrics_keycache(hit);
    }
    if (e == ERR_UNAUTHENTICATED) {
        api__error(resp, ERR_UNAUTHENTICATED, MSG_UNAUTHORIZED);
        return false;
    }
    if (e != ERR_OK) {
        api__fail(resp, call->h->fail, e);
        return false;
    }
    resp->org_id = call->who.org_id;
    return true;
}

/* Takes a token from the key's bucket (Beyond: per node). On refusal resp
 * holds the 429. */
static bool within_rate(struct api_worker *w, const struct api_call *call,
                        struct http_response *resp)
{
    struct ratelimit_info info;
    bool ok;

    if (!w->cfg.ratelimit)
        return true;
    ok = ratelimit_take(w->cfg.ratelimit, call->who.key_id, clock_mono_ns(), &info);
    resp->rate_set = true;
    resp->rate_limit = info.limit;
    resp->rate_remaining = info.remaining;
    resp->rate_reset = info.reset_s;
    if (!ok) {
        resp->retry_after = info.retry_after;
        api__error(resp, ERR_RATE_LIMITED, MSG_TOO_MANY);
    }
    return ok;
}

bool api_begin(struct api_worker *w, const struct http_request *req, struct api_call *call,
               struct http_response *resp)
{
    size_t i;

    call->h = NULL;
    call->req = req;
    memset(&call->who, 0, sizeof(call->who));
    http_response_set_request_id(resp, req->request_id);

    if (route_match(req->path, req->path_len, &call->m) != ERR_OK ||
        (w->cfg.admin_only && !admin_route(call->m.id)) ||
        (call->m.id == ROUTE_METRICS && !metrics_visible(w, req))) {
        api__error(resp, ERR_NOT_FOUND, MSG_NOT_FOUND);
        return true;
    }
    for (i = 0; i < sizeof(handlers) / sizeof(handlers[0]); i++) {
        if (handlers[i].route == call->m.id && handlers[i].method == req->method) {
            call->h = &handlers[i];
            resp->route_idx = (int)i + 1;
            break;
        }
    }
    if (!call->h) {
        resp->allow = allow_of(call->m.id);
        api__error(resp, ERR_NOT_ALLOWED, MSG_METHOD);
        return true;
    }
    resp->route = call->h->name;
    if (call->h->auth && (!authenticate(w, req, call, resp) || !within_rate(w, call, resp)))
        return true;
    if (req->content_length > HTTP_BODY_MAX) {
        api__error(resp, ERR_TOO_LARGE, MSG_TOO_LARGE);
        return true;
    }
    return false;
}

void api_finish(struct api_worker *w, const struct http_request *req, struct api_call *call,
                struct http_response *resp)
{
    json_t *body = NULL;

    call->req = req;
    if (req->body_too_large || req->body_len > HTTP_BODY_MAX) {
        api__error(resp, ERR_TOO_LARGE, MSG_TOO_LARGE);
        return;
    }
    if (call->h->body) {
        if (req->content_type && !http_content_type_is_json(req->content_type)) {
            api__invalid(resp, NULL);
            return;
        }
        if (js_parse_object(req->body, req->body_len, &body) != ERR_OK) {
            api__invalid(resp, NULL);
            return;
        }
    }
    call->h->fn(w, call, body, resp);
    json_decref(body);
}

void api_handle(struct api_worker *w, const struct http_request *req, struct http_response *resp)
{
    struct api_call call;

    if (!api_begin(w, req, &call, resp))
        api_finish(w, req, &call, resp);
}

static void *app_worker_new(void *arg)
{
    return api_worker_new(arg);
}

static void app_worker_free(void *worker)
{
    api_worker_free(worker);
}

static bool app_begin(void *worker, const struct http_request *req, void *call,
                      struct http_response *resp)
{
    return api_begin(worker, req, call, resp);
}

static void app_finish(void *worker, const struct http_request *req, void *call,
                       struct http_response *resp)
{
    api_finish(worker, req, call, resp);
}

void api_server_app(const struct api_config *cfg, struct server_app *out)
{
    out->arg = (void *)cfg; /* read only by api_worker_new */
    out->call_size = sizeof(struct api_call);
    out->worker_new = app_worker_new;
    out->worker_free = app_worker_free;
    out->begin = app_begin;
    out->finish = app_finish;
}

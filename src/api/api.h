/* api: the control-plane API over the http records. It routes, applies
 * the order of checks of API.md (404/405, 401, 413, 400, then the route's
 * own), and answers with the documented envelopes and messages.
 *
 * A request is handled in two phases so that a server can refuse early:
 * api_begin runs on the headers alone (routing, key, declared size), and
 * api_finish runs once the body has arrived. api_handle runs both, for
 * tests and fuzzing. Each thread uses its own struct api_worker, which owns
 * that thread's database connection and key cache. */
#ifndef SFVOPI_API_API_H
#define SFVOPI_API_API_H

#include <stdbool.h>

#include "api/route.h"
#include "auth/keycache.h"
#include "core/ratelimit.h"
#include "http/http.h"
#include "http/server.h"
#include "store/store.h"

struct engine;
struct engine_outbound;

/* Places an outbound call: the signature of engine_call_place (call/engine.h),
 * through which POST /sfvopi/calls reaches the engine. */
typedef enum err (*api_place_call_fn)(struct engine *e, struct store_conn *c,
                                      const struct engine_outbound *req,
                                      char request_uuid[REQUEST_UUID_LEN + 1],
                                      char call_uuid[CALL_UUID_LEN + 1], const char **why);

struct api_config {
    struct store *store; /* borrowed; must outlive every worker */
    char default_cc[4];  /* country code for national numbers, "91" */
    int64_t key_cache_ttl_ms;
    struct ratelimit *ratelimit; /* borrowed, shared by all workers; NULL: no limit */
    bool metrics;                /* serve GET /metrics */
    bool admin_only;             /* serve only /healthz, /readyz and /metrics */
    /* GET /metrics from any client; false: only a loopback peer whose
     * request names no other client (no X-Forwarded-For, no Forwarded),
     * others get the unknown path's 404. */
    bool metrics_public;
    /* The call engine, borrowed, and how to place a call on it (main.c sets
     * engine_call_place). Either NULL: calling is off, and POST
     * /sfvopi/calls answers "calling is not configured". */
    struct engine *engine;
    api_place_call_fn place_call;
    /* An app was deleted: its unanswered calls end on every node (main.c
     * sets engine_app_deleted, which also takes a NULL engine). NULL:
     * nothing to tell. */
    void (*app_deleted)(struct engine *e, struct store_conn *c, const char *app_id);
    /* Ends a live call on the node that owns it (main.c sets
     * engine_call_hangup, which also takes a NULL engine). NULL: POST
     * /sfvopi/calls/:id/hangup answers 500. */
    enum err (*hangup_call)(struct engine *e, struct store_conn *c, const struct store_call *call);
    /* True while the engine drains (main.c sets engine_draining): /readyz
     * answers 503. NULL: never. */
    bool (*draining)(const struct engine *e);
    /* The operator's --sip-header lines ("Name: value"), borrowed: a POST
     * /sfvopi/calls may not name these headers in its sip_headers. */
    const char *const *sip_headers;
    size_t nsip_headers;
    /* Outbound pacing (AGENT.md section 6; main.c sets engine_call_queue
     * and engine_queue_cancel). queue_call stores a call of an app with
     * caps in its queue; NULL: such calls are placed at once. queue_cancel
     * ends waiting calls (here: those from a number just unlinked); NULL:
     * none are. */
    enum err (*queue_call)(struct engine *e, struct store_conn *c,
                           const struct engine_outbound *req,
                           char request_uuid[REQUEST_UUID_LEN + 1],
                           char call_uuid[CALL_UUID_LEN + 1], int64_t *position, const char **why);
    void (*queue_cancel)(struct engine *e, struct store_conn *c, const char *call_uuid,
                         const char *app_id, const char *from, bool *cancelled);
};

struct api_worker;
struct api_handler;

/* State carried from api_begin to api_finish. Caller-owned, no cleanup. */
struct api_call {
    const struct api_handler *h;
    struct route_match m;
    struct principal who;
    const struct http_request *req; /* the request being answered, borrowed */
};

/* A worker for the calling thread; opens its connection lazily. NULL on
 * allocation failure. */
struct api_worker *api_worker_new(const struct api_config *cfg);
/* Closes the worker's connection and wipes its cache; accepts NULL. */
void api_worker_free(struct api_worker *w);

/* The route names used in logs and metrics; index 0 names unrouted
 * requests. Static storage. */
const char *const *api_route_names(int *n);

/* Phase one, on the headers. Returns true when resp is the final answer
 * (the body, if any, is not needed), false when api_finish must follow. */
bool api_begin(struct api_worker *w, const struct http_request *req, struct api_call *call,
               struct http_response *resp);
/* Phase two, with req->body complete (or req->body_too_large set). */
void api_finish(struct api_worker *w, const struct http_request *req, struct api_call *call,
                struct http_response *resp);
/* Both phases. */
void api_handle(struct api_worker *w, const struct http_request *req, struct http_response *resp);

/* The API as the HTTP server's application: workers made from cfg, which
 * must outlive the server. */
void api_server_app(const struct api_config *cfg, struct server_app *out);

#endif

/* api internals shared by the resource files (apps.c, numbers.c, calls.c): the
 * handler table type, response envelopes and per-thread state. Not part of
 * the module's interface. */
#ifndef SFVOPI_API_INTERNAL_H
#define SFVOPI_API_INTERNAL_H

#include <jansson.h>

#include "api/api.h"
#include "api/validate.h"
#include "json/json.h"

struct api_worker {
    struct api_config cfg;
    struct store_conn *conn; /* NULL until first needed */
    struct keycache *keys;
};

/* A handler answers one (route, method) after the common checks passed;
 * body is the parsed JSON object for routes that take one, else NULL. */
typedef void (*api_handler_fn)(struct api_worker *w, struct api_call *call, json_t *body,
                               struct http_response *resp);

struct api_handler {
    enum route_id route;
    enum http_method method;
    const char *name; /* for logs: "apps.create" */
    bool auth;        /* needs an API key */
    bool body;        /* takes a JSON body */
    const char *fail; /* 500 message prefix, "Failed to get SFVoPI apps" */
    api_handler_fn fn;
};

/* The worker's connection, opened on first use. */
enum err api__conn(struct api_worker *w, struct store_conn **out) WARN_UNUSED;

/* The HTTP status of an error: the one table from enum err to status. */
int api__status(enum err e);
/* Replaces the body with {"message":msg} and sets the status of e. */
void api__error(struct http_response *r, enum err e, const char *msg);
/* 400 Invalid request body, with the "errors" array when fe names fields. */
void api__invalid(struct http_response *r, const struct field_errors *fe);
/* 500 "<prefix>: <generic reason>". */
void api__fail(struct http_response *r, const char *prefix, enum err e);

/* Starts a success envelope in r->body: {"data": */
void api__ok_begin(struct http_response *r, struct jw *w);
/* Ends it (,"message":"success"}) and sets 200; a write failure becomes a
 * 500 with prefix. */
void api__ok_end(struct http_response *r, struct jw *w, const char *prefix);

/* A JSON array written as the data of a success envelope, one item at a
 * time, straight into the response buffer. */
struct api_list {
    struct jw w;
    int n;
};

/* Starts {"data":[ in r->body. */
void api__list_begin(struct http_response *r, struct api_list *l);
/* Writes the separator an item needs; call before writing each item. */
void api__list_item(struct api_list *l);
/* Ends the array and the envelope (see api__ok_end). */
void api__list_end(struct http_response *r, struct api_list *l, const char *prefix);

/* Writes an app object / link object in the documented field order. */
void api__write_app(struct jw *w, const struct store_app *a);
void api__write_link(struct jw *w, const struct store_link *l);

/* Resource handlers. */
void api__apps_create(struct api_worker *w, struct api_call *call, json_t *body,
                      struct http_response *resp);
void api__apps_list(struct api_worker *w, struct api_call *call, json_t *body,
                    struct http_response *resp);
void api__app_get(struct api_worker *w, struct api_call *call, json_t *body,
                  struct http_response *resp);
void api__app_update(struct api_worker *w, struct api_call *call, json_t *body,
                     struct http_response *resp);
void api__app_delete(struct api_worker *w, struct api_call *call, json_t *body,
                     struct http_response *resp);
void api__numbers_link(struct api_worker *w, struct api_call *call, json_t *body,
                       struct http_response *resp);
void api__numbers_list(struct api_worker *w, struct api_call *call, json_t *body,
                       struct http_response *resp);
void api__numbers_unlink(struct api_worker *w, struct api_call *call, json_t *body,
                         struct http_response *resp);
void api__numbers_available(struct api_worker *w, struct api_call *call, json_t *body,
                            struct http_response *resp);
void api__calls_create(struct api_worker *w, struct api_call *call, json_t *body,
                       struct http_response *resp);
void api__call_hangup(struct api_worker *w, struct api_call *call, json_t *body,
                      struct http_response *resp);
void api__call_get(struct api_worker *w, struct api_call *call, json_t *body,
                   struct http_response *resp);
void api__calls_list(struct api_worker *w, struct api_call *call, json_t *body,
                     struct http_response *resp);

#endif

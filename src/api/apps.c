/* apps: the apps resource (API.md section 2). Validation runs before any
 * database access, so a 400 always wins over a 404 as the order of checks
 * requires. */
#include <string.h>

#include "api/internal.h"
#include "core/clock.h"
#include "core/log.h"
#include "core/rand.h"

#define MSG_APP_NOT_FOUND "SFVoPI app not found"
#define APP_ID_ATTEMPTS 4

void api__write_app(struct jw *w, const struct store_app *a)
{
    jw_lit(w, "{\"app_id\":");
    jw_str(w, a->app_id);
    jw_lit(w, ",\"org_id\":");
    jw_i64(w, a->org_id);
    jw_lit(w, ",\"name\":");
    jw_str(w, a->name);
    jw_lit(w, ",\"answer_url\":");
    jw_str(w, a->answer_url);
    jw_lit(w, ",\"answer_method\":");
    jw_str(w, a->answer_method);
    jw_lit(w, ",\"hangup_url\":");
    jw_str_or_null(w, a->hangup_url);
    jw_lit(w, ",\"hangup_method\":");
    jw_str(w, a->hangup_method);
    jw_lit(w, ",\"fallback_answer_url\":");
    jw_str_or_null(w, a->fallback_answer_url);
    jw_lit(w, ",\"fallback_answer_method\":");
    jw_str(w, a->fallback_answer_method);
    jw_lit(w, ",\"status\":");
    jw_str(w, a->status);
    jw_lit(w, ",\"created_by\":");
    jw_i64_or_null(w, a->created_by);
    jw_lit(w, ",\"created_at\":");
    jw_time_or_null(w, a->created_at);
    jw_lit(w, ",\"updated_at\":");
    jw_time_or_null(w, a->updated_at);
    /* AGENT.md section 6: only when set, so that a documented client sees
     * the app as before. */
    if (a->max_concurrent_calls) {
        jw_lit(w, ",\"max_concurrent_calls\":");
        jw_i64(w, a->max_concurrent_calls);
    }
    if (a->calls_per_second) {
        jw_lit(w, ",\"calls_per_second\":");
        jw_i64(w, a->calls_per_second);
    }
    jw_lit(w, "}");
}

static void reply_app(struct http_response *resp, const struct store_app *a, const char *fail)
{
    struct jw w;

    api__ok_begin(resp, &w);
    api__write_app(&w, a);
    api__ok_end(resp, &w, fail);
}

void api__apps_create(struct api_worker *w, struct api_call *call, json_t *body,
                      struct http_response *resp)
{
    struct store_app app;
    struct field_errors fe;
    struct store_conn *c;
    enum err e;
    int attempt;

    if (validate_app_create(body, &app, &fe) != ERR_OK) {
        api__invalid(resp, &fe);
        return;
    }
    app.org_id = call->who.org_id;
    app.created_by = call->who.user_id;
    app.created_at = clock_now_ms();
    app.updated_at = 0;
    e = api__conn(w, &c);
    /* 60 random bits make a collision unlikely; a few fresh draws make a
     * failure because of one practically impossible. */
    for (attempt = 0; e == ERR_OK && attempt < APP_ID_ATTEMPTS; attempt++) {
        memcpy(app.app_id, APP_ID_PREFIX, strlen(APP_ID_PREFIX));
        rand_string(app.app_id + strlen(APP_ID_PREFIX), APP_ID_LEN - strlen(APP_ID_PREFIX),
                    RAND_ALNUM_LOWER);
        e = c->ops->app_create(c, &app);
        if (e != ERR_CONFLICT)
            break;
    }
    if (e != ERR_OK) {
        api__fail(resp, call->h->fail, e == ERR_CONFLICT ? ERR_INTERNAL : e);
        return;
    }
    reply_app(resp, &app, call->h->fail);
}

static enum err app_row(void *ud, const struct store_app *a)
{
    struct api_list *l = ud;

    api__list_item(l);
    api__write_app(&l->w, a);
    return jw_end(&l->w);
}

void api__apps_list(struct api_worker *w, struct api_call *call, json_t *body,
                    struct http_response *resp)
{
    struct api_list l;
    struct store_conn *c;
    enum err e;

    (void)body;
    api__list_begin(resp, &l);
    e = api__conn(w, &c);
    if (e == ERR_OK)
        e = c->ops->app_list(c, call->who.org_id, app_row, &l);
    if (e != ERR_OK) {
        api__fail(resp, call->h->fail, e);
        return;
    }
    api__list_end(resp, &l, call->h->fail);
}

void api__app_get(struct api_worker *w, struct api_call *call, json_t *body,
                  struct http_response *resp)
{
    struct store_app app;
    struct store_conn *c;
    enum err e;

    (void)body;
    e = api__conn(w, &c);
    if (e == ERR_OK)
        e = c->ops->app_get(c, call->who.org_id, call->m.app_id, &app);
    if (e == ERR_NOT_FOUND) {
        api__error(resp, ERR_NOT_FOUND, MSG_APP_NOT_FOUND);
        return;
    }
    if (e != ERR_OK) {
        api__fail(resp, call->h->fail, e);
        return;
    }
    reply_app(resp, &app, call->h->fail);
}

void api__app_update(struct api_worker *w, struct api_call *call, json_t *body,
                     struct http_response *resp)
{
    struct store_app_patch patch;
    struct store_app app;
    struct field_errors fe;
    struct store_conn *c;
    enum err e;

    if (validate_app_update(body, &patch, &fe) != ERR_OK) {
        api__invalid(resp, &fe);
        return;
    }
    e = api__conn(w, &c);
    if (e == ERR_OK)
        e = c->ops->app_update(c, call->who.org_id, call->m.app_id, &patch, clock_now_ms(), &app);
    if (e == ERR_NOT_FOUND) {
        api__error(resp, ERR_NOT_FOUND, MSG_APP_NOT_FOUND);
        return;
    }
    if (e != ERR_OK) {
        api__fail(resp, call->h->fail, e);
        return;
    }
    reply_app(resp, &app, call->h->fail);
}

void api__app_delete(struct api_worker *w, struct api_call *call, json_t *body,
                     struct http_response *resp)
{
    struct store_conn *c;
    struct jw jw;
    enum err e;

    (void)body;
    e = api__conn(w, &c);
    if (e == ERR_OK)
        e = c->ops->app_delete(c, call->who.org_id, call->m.app_id, clock_now_ms());
    if (e == ERR_NOT_FOUND) {
        api__error(resp, ERR_NOT_FOUND, MSG_APP_NOT_FOUND);
        return;
    }
    if (e != ERR_OK) {
        api__fail(resp, call->h->fail, e);
        return;
    }
    /* Its calls that have not been answered yet end now (CANCELED). */
    if (w->cfg.app_deleted)
        w->cfg.app_deleted(w->cfg.engine, c, call->m.app_id);
    api__ok_begin(resp, &jw);
    jw_lit(&jw, "{\"deleted\":true}");
    api__ok_end(resp, &jw, call->h->fail);
}

/* numbers: links between inventory numbers and apps, and the available
 * numbers (API.md section 3). The one-ACTIVE-link rule is the database's
 * (a unique index); this file only maps outcomes to the documented
 * answers. */
#include <string.h>

#include "api/internal.h"
#include "core/clock.h"

#define MSG_APP_NOT_FOUND "App not found"
#define MSG_NUMBER_UNKNOWN "VoIP number not found or does not belong to this org"
#define MSG_NUMBER_TAKEN "VoIP number is already linked to another SFVoPI app"
#define MSG_NOT_LINKED "Number not linked to this app"

void api__write_link(struct jw *w, const struct store_link *l)
{
    jw_lit(w, "{\"app_id\":");
    jw_str(w, l->app_id);
    jw_lit(w, ",\"voip_number\":");
    jw_str(w, l->voip_number);
    jw_lit(w, ",\"org_id\":");
    jw_i64(w, l->org_id);
    jw_lit(w, ",\"status\":");
    jw_str(w, l->status);
    jw_lit(w, ",\"created_at\":");
    jw_time_or_null(w, l->created_at);
    jw_lit(w, ",\"updated_at\":");
    jw_time_or_null(w, l->updated_at);
    jw_lit(w, "}");
}

void api__numbers_link(struct api_worker *w, struct api_call *call, json_t *body,
                       struct http_response *resp)
{
    char e164[E164_MAX];
    struct field_errors fe;
    struct store_link link;
    struct store_conn *c;
    struct jw jw;
    enum err e;

    if (validate_link(body, w->cfg.default_cc, e164, &fe) != ERR_OK) {
        api__invalid(resp, &fe);
        return;
    }
    e = api__conn(w, &c);
    if (e == ERR_OK)
        e = c->ops->link_create(c, call->who.org_id, call->m.app_id, e164, clock_now_ms(), &link);
    switch (e) {
    case ERR_OK:
        api__ok_begin(resp, &jw);
        api__write_link(&jw, &link);
        api__ok_end(resp, &jw, call->h->fail);
        return;
    case ERR_NOT_FOUND: api__error(resp, ERR_NOT_FOUND, MSG_APP_NOT_FOUND); return;
    case ERR_INVALID: api__error(resp, ERR_INVALID, MSG_NUMBER_UNKNOWN); return;
    case ERR_CONFLICT: api__error(resp, ERR_CONFLICT, MSG_NUMBER_TAKEN); return;
    default: api__fail(resp, call->h->fail, e); return;
    }
}

static enum err link_row(void *ud, const struct store_link *link)
{
    struct api_list *l = ud;

    api__list_item(l);
    api__write_link(&l->w, link);
    return jw_end(&l->w);
}

void api__numbers_list(struct api_worker *w, struct api_call *call, json_t *body,
                       struct http_response *resp)
{
    struct api_list l;
    struct store_conn *c;
    enum err e;

    (void)body;
    api__list_begin(resp, &l);
    e = api__conn(w, &c);
    if (e == ERR_OK)
        e = c->ops->link_list(c, call->who.org_id, call->m.app_id, link_row, &l);
    if (e == ERR_NOT_FOUND) {
        api__error(resp, ERR_NOT_FOUND, MSG_APP_NOT_FOUND);
        return;
    }
    if (e != ERR_OK) {
        api__fail(resp, call->h->fail, e);
        return;
    }
    api__list_end(resp, &l, call->h->fail);
}

void api__numbers_unlink(struct api_worker *w, struct api_call *call, json_t *body,
                         struct http_response *resp)
{
    char e164[E164_MAX] = "";
    enum store_miss miss = STORE_MISS_NONE;
    struct store_conn *c;
    struct jw jw;
    enum err e;

    (void)body;
    /* A path number that is not a valid number is linked to nothing: the
     * store still checks the app first, as the order of checks requires. */
    if (!call->m.number_ok ||
        e164_normalize(call->m.number, call->m.number_len, w->cfg.default_cc, e164) != ERR_OK)
        e164[0] = '\0';
    e = api__conn(w, &c);
    if (e == ERR_OK)
        e = c->ops->link_delete(c, call->who.org_id, call->m.app_id, e164, clock_now_ms(), &miss);
    if (e == ERR_NOT_FOUND) {
        api__error(resp, ERR_NOT_FOUND,
                   miss == STORE_MISS_APP ? MSG_APP_NOT_FOUND : MSG_NOT_LINKED);
        return;
    }
    if (e != ERR_OK) {
        api__fail(resp, call->h->fail, e);
        return;
    }
    /* AGENT.md section 6: calls from the number waiting in the app's queue
     * end with it. */
    if (w->cfg.queue_cancel)
        w->cfg.queue_cancel(w->cfg.engine, c, NULL, call->m.app_id, e164, NULL);
    api__ok_begin(resp, &jw);
    jw_lit(&jw, "{\"deleted\":true}");
    api__ok_end(resp, &jw, call->h->fail);
}

static enum err available_row(void *ud, const struct store_number *n)
{
    struct api_list *l = ud;

    api__list_item(l);
    jw_lit(&l->w, "{\"id\":");
    jw_i64(&l->w, n->id);
    jw_lit(&l->w, ",\"voip_number\":");
    jw_str(&l->w, n->voip_number);
    jw_lit(&l->w, ",\"provider\":");
    jw_str(&l->w, n->provider);
    jw_lit(&l->w, ",\"status\":");
    jw_str(&l->w, n->status);
    jw_lit(&l->w, "}");
    return jw_end(&l->w);
}

void api__numbers_available(struct api_worker *w, struct api_call *call, json_t *body,
                            struct http_response *resp)
{
    struct api_list l;
    struct store_conn *c;
    enum err e;

    (void)body;
    api__list_begin(resp, &l);
    e = api__conn(w, &c);
    if (e == ERR_OK)
        e = c->ops->available_list(c, call->who.org_id, available_row, &l);
    if (e != ERR_OK) {
        api__fail(resp, call->h->fail, e);
        return;
    }
    api__list_end(resp, &l, call->h->fail);
}

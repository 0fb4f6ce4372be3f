/* ops: every store operation, written once over the driver interface
 * (driver.h): which statements of the catalogue run, in which transaction,
 * in which order, and how rows become records. The checks behind the
 * documented errors (store.h) live here, so both databases answer alike.
 *
 * Every operation runs between the driver's op_begin and op_end (op()),
 * those of several statements in their own transaction too (tx_begin,
 * tx_end). An operation that met a serialization failure or deadlock runs
 * again while the driver says so (SQLite never does: its writers queue for
 * one lock), except a list, whose rows the caller has already seen. */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "core/parse.h"
#include "store/driver.h"

#define DB(base) ((struct db_conn *)(base))

/* ---- arguments ---- */

static void arg(struct db_args *a, enum db_type type, const void *p, int len, int64_t i)
{
    /* Argument counts are fixed by the catalogue, never by input. */
    if (a->n >= DB_MAX_ARGS)
        return;
    a->v[a->n].type = type;
    a->v[a->n].p = p;
    a->v[a->n].len = len;
    a->v[a->n].i = i;
    a->n++;
}

static void a_text(struct db_args *a, const char *s)
{
    arg(a, DB_TEXT, s, 0, 0);
}

/* Binds NULL for "" (our null string). */
static void a_text_or_null(struct db_args *a, const char *s)
{
    arg(a, s[0] ? DB_TEXT : DB_NULL, s, 0, 0);
}

static void a_i64(struct db_args *a, int64_t v)
{
    arg(a, DB_I64, NULL, 0, v);
}

/* Binds NULL for 0 (our null integer). */
static void a_i64_or_null(struct db_args *a, int64_t v)
{
    arg(a, v ? DB_I64 : DB_NULL, NULL, 0, v);
}

static void a_bool(struct db_args *a, bool b)
{
    arg(a, DB_BOOL, NULL, 0, b);
}

static void a_blob(struct db_args *a, const void *p, int len)
{
    arg(a, DB_BLOB, p, len, 0);
}

/* The dialog's columns (DIALOG_COLS of the catalogue), "" as NULL. */
static void a_dialog(struct db_args *a, const struct store_dialog *d)
{
    a_text_or_null(a, d->call_id);
    a_text_or_null(a, d->local_uri);
    a_text_or_null(a, d->local_tag);
    a_text_or_null(a, d->remote_uri);
    a_text_or_null(a, d->remote_tag);
    a_text_or_null(a, d->remote_target);
    a_text_or_null(a, d->route_set);
    a_i64(a, d->next_cseq);
}

/* ---- columns ---- */

/* An integer column; NULL is 0. */
static int64_t col_i64(const struct db_row *r, int i)
{
    const struct db_col *c = &r->col[i];
    int64_t v = 0;

    if (i >= r->n || c->null)
        return 0;
    if (c->is_int)
        return c->i;
    if (parse_i64(c->s, INT64_MIN, INT64_MAX, &v) != ERR_OK) {
        log_error("msg=\"unexpected integer from database\" col=%d", i);
        return 0;
    }
    return v;
}

/* Copies a text column into a fixed field, truncating at cap - 1 bytes
 * (stored values are validated on the way in and always fit). NULL is "". */
static void col_text(const struct db_row *r, int i, char *dst, size_t cap)
{
    const struct db_col *c = &r->col[i];
    size_t n;

    if (i >= r->n || c->null) {
        dst[0] = '\0';
        return;
    }
    if (c->is_int) {
        snprintf(dst, cap, "%" PRId64, c->i);
        return;
    }
    n = c->len < cap ? c->len : cap - 1;
    if (n)
        memcpy(dst, c->s, n);
    dst[n] = '\0';
}

#define COL_TEXT(r, i, field) col_text((r), (i), (field), sizeof(field))

static bool col_null(const struct db_row *r, int i)
{
    return i >= r->n || r->col[i].null;
}

/* The app's 15 columns from column at on (APP_COLS of the catalogue). */
static void row_app_at(const struct db_row *r, int at, struct store_app *a)
{
    COL_TEXT(r, at + 0, a->app_id);
    a->org_id = col_i64(r, at + 1);
    COL_TEXT(r, at + 2, a->name);
    COL_TEXT(r, at + 3, a->answer_url);
    COL_TEXT(r, at + 4, a->answer_method);
    COL_TEXT(r, at + 5, a->hangup_url);
    COL_TEXT(r, at + 6, a->hangup_method);
    COL_TEXT(r, at + 7, a->fallback_answer_url);
    COL_TEXT(r, at + 8, a->fallback_answer_method);
    COL_TEXT(r, at + 9, a->status);
    a->created_by = col_i64(r, at + 10);
    a->created_at = col_i64(r, at + 11);
    a->updated_at = col_i64(r, at + 12);
    a->max_concurrent_calls = col_i64(r, at + 13);
    a->calls_per_second = col_i64(r, at + 14);
}

static void row_org(const struct db_row *r, struct store_org *o)
{
    o->id = col_i64(r, 0);
    COL_TEXT(r, 1, o->name);
    o->created_at = col_i64(r, 2);
}

static void row_key(const struct db_row *r, struct store_key *k)
{
    char status[STATUS_MAX + 1];

    k->id = col_i64(r, 0);
    k->org_id = col_i64(r, 1);
    k->user_id = col_i64(r, 2);
    COL_TEXT(r, 3, k->name);
    COL_TEXT(r, 4, k->prefix);
    COL_TEXT(r, 5, status);
    k->revoked = strcmp(status, "ACTIVE") != 0;
    k->created_at = col_i64(r, 6);
}

static void row_link(const struct db_row *r, struct store_link *l)
{
    COL_TEXT(r, 0, l->app_id);
    COL_TEXT(r, 1, l->voip_number);
    l->org_id = col_i64(r, 2);
    COL_TEXT(r, 3, l->status);
    l->created_at = col_i64(r, 4);
    l->updated_at = col_i64(r, 5);
}

static void row_number(const struct db_row *r, struct store_number *n)
{
    n->id = col_i64(r, 0);
    n->org_id = col_i64(r, 1);
    COL_TEXT(r, 2, n->voip_number);
    COL_TEXT(r, 3, n->provider);
    COL_TEXT(r, 4, n->status);
    COL_TEXT(r, 5, n->linked_app_id);
}

static void row_call(const struct db_row *r, struct store_call *k)
{
    COL_TEXT(r, 0, k->call_uuid);
    COL_TEXT(r, 1, k->request_uuid);
    k->org_id = col_i64(r, 2);
    COL_TEXT(r, 3, k->app_id);
    COL_TEXT(r, 4, k->from);
    COL_TEXT(r, 5, k->to);
    COL_TEXT(r, 6, k->direction);
    COL_TEXT(r, 7, k->status);
    k->started_at = col_i64(r, 8);
    k->answered_at = col_i64(r, 9);
    k->ended_at = col_i64(r, 10);
    k->duration = col_i64(r, 11);
    COL_TEXT(r, 12, k->hangup_cause);
    k->created_at = col_i64(r, 13);
    k->seq = col_i64(r, 14);
    k->rtp_packets_received = col_i64(r, 15);
    k->rtp_packets_lost = col_i64(r, 16);
    k->rtp_jitter_us = col_i64(r, 17);
    COL_TEXT(r, 18, k->node_id);
    COL_TEXT(r, 19, k->dialog.call_id);
    COL_TEXT(r, 20, k->dialog.local_uri);
    COL_TEXT(r, 21, k->dialog.local_tag);
    COL_TEXT(r, 22, k->dialog.remote_uri);
    COL_TEXT(r, 23, k->dialog.remote_tag);
    COL_TEXT(r, 24, k->dialog.remote_target);
    COL_TEXT(r, 25, k->dialog.route_set);
    k->dialog.next_cseq = col_i64(r, 26);
    COL_TEXT(r, 27, k->hangup_url);
    COL_TEXT(r, 28, k->hangup_method);
}

/* ---- running statements ---- */

static enum err run(struct db_conn *c, enum sql_id id, const struct db_args *a, const char *what,
                    db_row_fn fn, void *ud, int64_t *changes)
{
    return c->drv->run(c, id, a, what, fn, ud, changes);
}

/* What a statement must produce besides success. */
enum want {
    W_ANY,    /* nothing */
    W_ROW,    /* a row, else ERR_NOT_FOUND */
    W_ID,     /* a row (INSERT ... RETURNING id), else ERR_DB */
    W_CHANGE, /* a changed row, else ERR_NOT_FOUND */
};

/* The first row of a statement, mapped into out by map (NULL: only seen). */
struct one {
    void (*map)(const struct db_row *r, void *out);
    void *out;
    bool found;
};

static enum err one_row(void *ud, const struct db_row *r)
{
    struct one *o = ud;

    if (!o->found && o->map)
        o->map(r, o->out);
    o->found = true;
    return ERR_OK;
}

/* Runs a statement of at most one row, mapping it into out. An INSERT
 * ... RETURNING id is ERR_NOT_FOUND only for a foreign key violation (the
 * org does not exist). */
static enum err stmt(struct db_conn *c, enum sql_id id, const struct db_args *a, const char *what,
                     enum want want, void (*map)(const struct db_row *r, void *out), void *out)
{
    struct one o = {map, out, false};
    int64_t changes = 0;
    enum err e = run(c, id, a, what, one_row, &o, &changes);

    if (e != ERR_OK)
        return e;
    if ((want == W_ROW && !o.found) || (want == W_CHANGE && changes == 0))
        return ERR_NOT_FOUND;
    if (want == W_ID && !o.found)
        return ERR_DB; /* RETURNING always returns the row */
    return ERR_OK;
}

static void map_i64(const struct db_row *r, void *out)
{
    *(int64_t *)out = col_i64(r, 0);
}

/* The first two integer columns, into int64_t[2]. */
static void map_i64_pair(const struct db_row *r, void *out)
{
    ((int64_t *)out)[0] = col_i64(r, 0);
    ((int64_t *)out)[1] = col_i64(r, 1);
}

static void map_org(const struct db_row *r, void *out)
{
    row_org(r, out);
}

static void map_key(const struct db_row *r, void *out)
{
    row_key(r, out);
}

static void map_app(const struct db_row *r, void *out)
{
    row_app_at(r, 0, out);
}

static void map_link(const struct db_row *r, void *out)
{
    row_link(r, out);
}

static void map_call(const struct db_row *r, void *out)
{
    row_call(r, out);
}

/* How an operation runs. */
enum {
    OP_TX = 1 << 0,    /* in its own transaction (several statements) */
    OP_RETRY = 1 << 1, /* again after a serialization failure or deadlock */
};

/* Runs fn as one operation: between the driver's op_begin and op_end, in
 * a transaction of its own when OP_TX, again while the driver says so when
 * OP_RETRY (the server has rolled the failed attempt back). */
static enum err op(struct store_conn *base, unsigned how,
                   enum err (*fn)(struct db_conn *c, void *ctx), void *ctx)
{
    struct db_conn *c = DB(base);
    int attempt = 0;
    enum err e;

    do {
        e = c->drv->op_begin(c);
        if (e != ERR_OK)
            return e;
        if (how & OP_TX) {
            e = c->drv->tx_begin(c);
            if (e == ERR_OK)
                e = c->drv->tx_end(c, fn(c, ctx));
        } else {
            e = fn(c, ctx);
        }
        e = c->drv->op_end(c, e);
    } while ((how & OP_RETRY) && c->drv->again(c, e, &attempt));
    return e;
}

/* An operation of one statement. */
struct single {
    enum sql_id id;
    const struct db_args *a;
    const char *what;
    enum want want;
    void (*map)(const struct db_row *r, void *out);
    void *out;
};

static enum err single_fn(struct db_conn *c, void *ctx)
{
    struct single *s = ctx;

    return stmt(c, s->id, s->a, s->what, s->want, s->map, s->out);
}

static enum err single(struct store_conn *base, enum sql_id id, const struct db_args *a,
                       const char *what, enum want want,
                       void (*map)(const struct db_row *r, void *out), void *out)
{
    struct single s = {id, a, what, want, map, out};

    return op(base, OP_RETRY, single_fn, &s);
}

/* Lists: each row becomes a record handed to the caller's callback. A list
 * is never run again: the caller has seen its rows. */
struct list {
    enum sql_id id;
    const struct db_args *a;
    const char *what;
    db_row_fn row;
    const void *cb; /* the store_*_cb of the record type */
    void *ud;
};

static enum err list_fn(struct db_conn *c, void *ctx)
{
    struct list *l = ctx;

    return run(c, l->id, l->a, l->what, l->row, l, NULL);
}

static enum err list(struct store_conn *base, enum sql_id id, const struct db_args *a,
                     const char *what, db_row_fn row, const void *cb, void *ud)
{
    struct list l = {id, a, what, row, cb, ud};

    return op(base, 0, list_fn, &l);
}

/* A list whose one argument is the organisation. */
static enum err list_org(struct store_conn *base, enum sql_id id, const char *what, int64_t org_id,
                         db_row_fn row, const void *cb, void *ud)
{
    struct db_args a = {0};

    a_i64(&a, org_id);
    return list(base, id, &a, what, row, cb, ud);
}

static enum err org_row(void *ud, const struct db_row *r)
{
    struct list *l = ud;
    struct store_org o;

    row_org(r, &o);
    return ((store_org_cb)l->cb)(l->ud, &o);
}

static enum err key_row(void *ud, const struct db_row *r)
{
    struct list *l = ud;
    struct store_key k;

    row_key(r, &k);
    return ((store_key_cb)l->cb)(l->ud, &k);
}

static enum err number_row(void *ud, const struct db_row *r)
{
    struct list *l = ud;
    struct store_number n;

    row_number(r, &n);
    return ((store_number_cb)l->cb)(l->ud, &n);
}

static enum err app_row(void *ud, const struct db_row *r)
{
    struct list *l = ud;
    struct store_app a;

    row_app_at(r, 0, &a);
    return ((store_app_cb)l->cb)(l->ud, &a);
}

static enum err call_row(void *ud, const struct db_row *r)
{
    struct list *l = ud;
    struct store_call k;

    row_call(r, &k);
    return ((store_call_cb)l->cb)(l->ud, &k);
}

/* ---- operations ---- */

static void conn_close(struct store_conn *base)
{
    DB(base)->drv->conn_close(DB(base));
}

static enum err ping(struct store_conn *base)
{
    return single(base, SQL_PING, NULL, "ping", W_ROW, NULL, NULL);
}

static enum err batch_begin(struct store_conn *base)
{
    return DB(base)->drv->batch_begin(DB(base));
}

static enum err batch_end(struct store_conn *base, bool commit)
{
    return DB(base)->drv->batch_end(DB(base), commit);
}

static enum err org_create(struct store_conn *base, const char *name, int64_t now, int64_t *id)
{
    struct db_args a = {0};

    a_text(&a, name);
    a_i64(&a, now);
    return single(base, SQL_ORG_INSERT, &a, "org_create", W_ID, map_i64, id);
}

static enum err org_get(struct store_conn *base, int64_t id, struct store_org *out)
{
    struct db_args a = {0};

    a_i64(&a, id);
    return single(base, SQL_ORG_GET, &a, "org_get", W_ROW, map_org, out);
}

static enum err org_count(struct store_conn *base, int64_t *n)
{
    enum err e = single(base, SQL_ORG_COUNT, NULL, "org_count", W_ROW, map_i64, n);

    return e == ERR_NOT_FOUND ? ERR_DB : e;
}

static enum err org_list(struct store_conn *base, store_org_cb cb, void *ud)
{
    return list(base, SQL_ORG_LIST, NULL, "org_list", org_row, (const void *)cb, ud);
}

static enum err key_create(struct store_conn *base, const struct store_key *k,
                           const unsigned char hash[KEY_HASH_LEN], int64_t *id)
{
    struct db_args a = {0};

    a_i64(&a, k->org_id);
    a_i64_or_null(&a, k->user_id);
    a_text_or_null(&a, k->name);
    a_text(&a, k->prefix);
    a_blob(&a, hash, KEY_HASH_LEN);
    a_i64(&a, k->created_at);
    return single(base, SQL_KEY_INSERT, &a, "key_create", W_ID, map_i64, id);
}

static enum err key_find(struct store_conn *base, const unsigned char hash[KEY_HASH_LEN],
                         struct store_key *out)
{
    struct db_args a = {0};

    a_blob(&a, hash, KEY_HASH_LEN);
    return single(base, SQL_KEY_FIND, &a, "key_find", W_ROW, map_key, out);
}

static enum err key_list(struct store_conn *base, int64_t org_id, store_key_cb cb, void *ud)
{
    return list_org(base, SQL_KEY_LIST, "key_list", org_id, key_row, (const void *)cb, ud);
}

static enum err key_revoke(struct store_conn *base, int64_t key_id, int64_t now)
{
    struct db_args a = {0};

    a_i64(&a, key_id);
    a_i64(&a, now);
    return single(base, SQL_KEY_REVOKE, &a, "key_revoke", W_CHANGE, NULL, NULL);
}

static enum err number_add(struct store_conn *base, int64_t org_id, const char *e164,
                           const char *provider, int64_t now, int64_t *id)
{
    struct db_args a = {0};

    a_i64(&a, org_id);
    a_text(&a, e164);
    a_text(&a, provider);
    a_i64(&a, now);
    return single(base, SQL_NUM_INSERT, &a, "number_add", W_ID, map_i64, id);
}

static enum err number_list(struct store_conn *base, int64_t org_id, store_number_cb cb, void *ud)
{
    return list_org(base, SQL_NUM_LIST, "number_list", org_id, number_row, (const void *)cb, ud);
}

static enum err number_remove_tx(struct db_conn *c, void *ctx)
{
    struct db_args a = {0};
    int64_t id = 0;
    enum err e;

    a_text(&a, ctx);
    e = stmt(c, SQL_NUM_LOCK, &a, "number_remove", W_ROW, map_i64, &id);
    if (e != ERR_OK)
        return e;
    a.n = 0;
    a_i64(&a, id);
    e = stmt(c, SQL_NUM_LINKED, &a, "number_remove", W_ROW, NULL, NULL);
    if (e == ERR_OK)
        return ERR_CONFLICT;
    if (e != ERR_NOT_FOUND)
        return e;
    return stmt(c, SQL_NUM_DELETE, &a, "number_remove", W_ANY, NULL, NULL);
}

static enum err number_remove(struct store_conn *base, const char *e164)
{
    return op(base, OP_TX | OP_RETRY, number_remove_tx, (void *)e164);
}

static enum err number_set_status(struct store_conn *base, const char *e164, const char *status)
{
    struct db_args a = {0};

    a_text(&a, e164);
    a_text(&a, status);
    return single(base, SQL_NUM_SET_STATUS, &a, "number_set_status", W_CHANGE, NULL, NULL);
}

static enum err available_list(struct store_conn *base, int64_t org_id, store_number_cb cb,
                               void *ud)
{
    return list_org(base, SQL_AVAIL, "available_list", org_id, number_row, (const void *)cb, ud);
}

static enum err app_create(struct store_conn *base, const struct store_app *app)
{
    struct db_args a = {0};

    a_text(&a, app->app_id);
    a_i64(&a, app->org_id);
    a_text(&a, app->name);
    a_text(&a, app->answer_url);
    a_text(&a, app->answer_method);
    a_text_or_null(&a, app->hangup_url);
    a_text(&a, app->hangup_method);
    a_text_or_null(&a, app->fallback_answer_url);
    a_text(&a, app->fallback_answer_method);
    a_text(&a, app->status);
    a_i64_or_null(&a, app->created_by);
    a_i64(&a, app->created_at);
    a_i64_or_null(&a, app->updated_at);
    a_i64_or_null(&a, app->max_concurrent_calls);
    a_i64_or_null(&a, app->calls_per_second);
    return single(base, SQL_APP_INSERT, &a, "app_create", W_ANY, NULL, NULL);
}

static enum err app_get(struct store_conn *base, int64_t org_id, const char *app_id,
                        struct store_app *out)
{
    struct db_args a = {0};

    a_text(&a, app_id);
    a_i64(&a, org_id);
    return single(base, SQL_APP_GET, &a, "app_get", W_ROW, map_app, out);
}

static enum err app_list(struct store_conn *base, int64_t org_id, store_app_cb cb, void *ud)
{
    return list_org(base, SQL_APP_LIST, "app_list", org_id, app_row, (const void *)cb, ud);
}

static enum err app_update(struct store_conn *base, int64_t org_id, const char *app_id,
                           const struct store_app_patch *p, int64_t now, struct store_app *out)
{
    const struct store_app *v = &p->vals;
    unsigned f = p->fields;
    struct db_args a = {0};

    if (f == 0)
        return app_get(base, org_id, app_id, out);
    a_text(&a, app_id);
    a_i64(&a, org_id);
    a_bool(&a, f & APP_F_NAME);
    a_text(&a, v->name);
    a_bool(&a, f & APP_F_ANSWER_URL);
    a_text(&a, v->answer_url);
    a_bool(&a, f & APP_F_ANSWER_METHOD);
    a_text(&a, v->answer_method);
    a_bool(&a, f & APP_F_HANGUP_URL);
    a_text_or_null(&a, v->hangup_url);
    a_bool(&a, f & APP_F_HANGUP_METHOD);
    a_text(&a, v->hangup_method);
    a_bool(&a, f & APP_F_FALLBACK_URL);
    a_text_or_null(&a, v->fallback_answer_url);
    a_bool(&a, f & APP_F_FALLBACK_METHOD);
    a_text(&a, v->fallback_answer_method);
    a_bool(&a, f & APP_F_STATUS);
    a_text(&a, v->status);
    a_i64(&a, now);
    a_bool(&a, f & APP_F_MAX_CONCURRENT);
    a_i64_or_null(&a, v->max_concurrent_calls);
    a_bool(&a, f & APP_F_CPS);
    a_i64_or_null(&a, v->calls_per_second);
    return single(base, SQL_APP_UPDATE, &a, "app_update", W_ROW, map_app, out);
}

/* What the operations on an app and its links work on. */
struct app_ref {
    int64_t org_id;
    const char *app_id;
    const char *e164;
    int64_t now;
    struct store_link *link;
    enum store_miss *miss;
};

static enum err app_delete_tx(struct db_conn *c, void *ctx)
{
    struct app_ref *r = ctx;
    struct db_args a = {0};
    enum err e;

    a_text(&a, r->app_id);
    a_i64(&a, r->org_id);
    e = stmt(c, SQL_APP_DELETE, &a, "app_delete", W_CHANGE, NULL, NULL);
    if (e != ERR_OK)
        return e;
    /* A new statement sees every link committed while DELETE waited for
     * the app's row, so none is left ACTIVE. */
    a.n = 0;
    a_text(&a, r->app_id);
    a_i64(&a, r->now);
    return stmt(c, SQL_LINKS_OFF_APP, &a, "app_delete", W_ANY, NULL, NULL);
}

static enum err app_delete(struct store_conn *base, int64_t org_id, const char *app_id, int64_t now)
{
    struct app_ref r = {.org_id = org_id, .app_id = app_id, .now = now};

    return op(base, OP_TX | OP_RETRY, app_delete_tx, &r);
}

/* ERR_OK when the org has the app, ERR_NOT_FOUND when not; on ERR_OK the
 * app's row is share-locked (PostgreSQL) until the transaction ends. */
static enum err app_lock(struct db_conn *c, const struct app_ref *r)
{
    struct db_args a = {0};

    a_text(&a, r->app_id);
    a_i64(&a, r->org_id);
    return stmt(c, SQL_APP_LOCK, &a, "app_lock", W_ROW, NULL, NULL);
}

struct number_for_link {
    int64_t id;
    char status[STATUS_MAX + 1];
};

static void map_number_for_link(const struct db_row *r, void *out)
{
    struct number_for_link *n = out;

    n->id = col_i64(r, 0);
    COL_TEXT(r, 1, n->status);
}

/* The checks in their documented order: the app, the number in the org's
 * inventory and ACTIVE, an ACTIVE link to another app. */
static enum err link_create_tx(struct db_conn *c, void *ctx)
{
    struct app_ref *r = ctx;
    struct store_link *out = r->link;
    struct number_for_link num = {0};
    struct db_args a = {0};
    enum err e;

    e = app_lock(c, r);
    if (e != ERR_OK)
        return e;
    a_text(&a, r->e164);
    a_i64(&a, r->org_id);
    e = stmt(c, SQL_NUM_FOR_LINK, &a, "link_create", W_ROW, map_number_for_link, &num);
    if (e == ERR_NOT_FOUND || (e == ERR_OK && strcmp(num.status, "ACTIVE") != 0))
        return ERR_INVALID;
    if (e != ERR_OK)
        return e;

    a.n = 0;
    a_i64(&a, num.id);
    e = stmt(c, SQL_LINK_BY_NUM, &a, "link_create", W_ROW, map_link, out);
    if (e == ERR_OK)
        return strcmp(out->app_id, r->app_id) == 0 ? ERR_OK : ERR_CONFLICT;
    if (e != ERR_NOT_FOUND)
        return e;

    a.n = 0;
    a_text(&a, r->app_id);
    a_i64(&a, r->org_id);
    a_i64(&a, num.id);
    a_text(&a, r->e164);
    a_i64(&a, r->now);
    e = stmt(c, SQL_LINK_INSERT, &a, "link_create", W_ANY, NULL, NULL);
    if (e != ERR_OK)
        return e;
    snprintf(out->app_id, sizeof(out->app_id), "%s", r->app_id);
    snprintf(out->voip_number, sizeof(out->voip_number), "%s", r->e164);
    out->org_id = r->org_id;
    memcpy(out->status, "ACTIVE", sizeof("ACTIVE"));
    out->created_at = r->now;
    out->updated_at = 0;
    return ERR_OK;
}

static enum err link_create(struct store_conn *base, int64_t org_id, const char *app_id,
                            const char *e164, int64_t now, struct store_link *out)
{
    struct app_ref r = {org_id, app_id, e164, now, out, NULL};

    return op(base, OP_TX | OP_RETRY, link_create_tx, &r);
}

/* The app's links; a row with a NULL link says the app exists without any. */
struct link_walk {
    store_link_cb cb;
    void *ud;
    bool app; /* a row came back: the app exists */
};

static enum err link_row(void *ud, const struct db_row *r)
{
    struct list *l = ud;
    struct link_walk *lw = l->ud;
    struct store_link link;

    lw->app = true;
    if (col_null(r, 0))
        return ERR_OK;
    row_link(r, &link);
    return lw->cb(lw->ud, &link);
}

static enum err link_list(struct store_conn *base, int64_t org_id, const char *app_id,
                          store_link_cb cb, void *ud)
{
    struct link_walk lw = {cb, ud, false};
    struct db_args a = {0};
    enum err e;

    a_text(&a, app_id);
    a_i64(&a, org_id);
    e = list(base, SQL_LINK_LIST, &a, "link_list", link_row, NULL, &lw);
    return e == ERR_OK && !lw.app ? ERR_NOT_FOUND : e;
}

static enum err link_delete_tx(struct db_conn *c, void *ctx)
{
    struct app_ref *r = ctx;
    struct db_args a = {0};
    enum err e;

    *r->miss = STORE_MISS_NONE;
    e = app_lock(c, r);
    if (e == ERR_NOT_FOUND)
        *r->miss = STORE_MISS_APP;
    if (e != ERR_OK)
        return e;
    a_text(&a, r->app_id);
    a_text(&a, r->e164);
    a_i64(&a, r->now);
    e = stmt(c, SQL_LINK_OFF, &a, "link_delete", W_CHANGE, NULL, NULL);
    if (e == ERR_NOT_FOUND)
        *r->miss = STORE_MISS_LINK;
    return e;
}

static enum err link_delete(struct store_conn *base, int64_t org_id, const char *app_id,
                            const char *e164, int64_t now, enum store_miss *miss)
{
    struct app_ref r = {org_id, app_id, e164, now, NULL, miss};

    *miss = STORE_MISS_NONE;
    return op(base, OP_TX | OP_RETRY, link_delete_tx, &r);
}

struct route {
    int64_t *org_id;
    char *number_status;
    struct store_app *app;
};

static void map_route(const struct db_row *r, void *out)
{
    struct route *rt = out;

    *rt->org_id = col_i64(r, 0);
    col_text(r, 1, rt->number_status, STATUS_MAX + 1);
    row_app_at(r, 2, rt->app);
}

static enum err number_route(struct store_conn *base, const char *e164, int64_t *org_id,
                             char number_status[STATUS_MAX + 1], struct store_app *app)
{
    struct route rt = {org_id, number_status, app};
    struct db_args a = {0};

    a_text(&a, e164);
    return single(base, SQL_NUM_ROUTE, &a, "number_route", W_ROW, map_route, &rt);
}

static enum err call_create(struct store_conn *base, const struct store_call *k)
{
    struct db_args a = {0};

    a_text(&a, k->call_uuid);
    a_text_or_null(&a, k->request_uuid);
    a_i64(&a, k->org_id);
    a_text(&a, k->app_id);
    a_text(&a, k->from);
    a_text(&a, k->to);
    a_text(&a, k->direction);
    a_text(&a, k->status);
    a_i64_or_null(&a, k->started_at);
    a_i64_or_null(&a, k->answered_at);
    a_i64_or_null(&a, k->ended_at);
    a_i64(&a, k->duration);
    a_text_or_null(&a, k->hangup_cause);
    a_i64(&a, k->created_at);
    a_i64(&a, k->rtp_packets_received);
    a_i64(&a, k->rtp_packets_lost);
    a_i64(&a, k->rtp_jitter_us);
    a_text_or_null(&a, k->node_id);
    a_dialog(&a, &k->dialog);
    a_text_or_null(&a, k->hangup_url);
    a_text_or_null(&a, k->hangup_method);
    return single(base, SQL_CALL_INSERT, &a, "call_create", W_ANY, NULL, NULL);
}

static enum err call_update(struct store_conn *base, const struct store_call *k)
{
    struct db_args a = {0};

    a_text(&a, k->call_uuid);
    a_text(&a, k->status);
    a_i64_or_null(&a, k->started_at);
    a_i64_or_null(&a, k->answered_at);
    a_i64_or_null(&a, k->ended_at);
    a_i64(&a, k->duration);
    a_text_or_null(&a, k->hangup_cause);
    a_i64(&a, k->rtp_packets_received);
    a_i64(&a, k->rtp_packets_lost);
    a_i64(&a, k->rtp_jitter_us);
    a_dialog(&a, &k->dialog);
    return single(base, SQL_CALL_UPDATE, &a, "call_update", W_CHANGE, NULL, NULL);
}

static enum err call_get(struct store_conn *base, int64_t org_id, const char *id,
                         struct store_call *out)
{
    struct db_args a = {0};

    a_i64(&a, org_id);
    a_text(&a, id);
    return single(base, SQL_CALL_GET, &a, "call_get", W_ROW, map_call, out);
}

static enum err call_list(struct store_conn *base, int64_t org_id, int64_t before_seq, int limit,
                          store_call_cb cb, void *ud)
{
    struct db_args a = {0};

    a_i64(&a, org_id);
    a_i64(&a, before_seq);
    a_i64(&a, limit);
    return list(base, SQL_CALL_LIST, &a, "call_list", call_row, (const void *)cb, ud);
}

/* ---- nodes ---- */

/* Expired keys deleted per statement, each heartbeat: a bounded write
 * however many keys a day of traffic left behind. */
#define IDEM_PURGE_BATCH 500
static enum err idem_purge(struct store_conn *base, int limit, int64_t *n);

/* A command is for a node that is alive and takes it within a second or
 * two; one left an hour is for a node that is gone, and goes. */
#define CMD_KEEP_MS (60 * 60 * 1000LL)
/* A node's id is new at each start, so the heartbeat rows of nodes long
 * gone go too, a day after their last beat, once they own no live call. */
#define NODE_KEEP_MS (24 * 60 * 60 * 1000LL)
/* Commands removed per statement; a node's commands come one or two at a
 * time, and more are taken in further rounds. */
#define CMD_TAKE_BATCH 32

static enum err node_beat(struct store_conn *base, const char *node_id, int64_t *db_now_ms)
{
    struct db_args a = {0};
    enum err e;

    a_text(&a, node_id);
    e = single(base, SQL_NODE_BEAT, &a, "node_beat", W_ID, map_i64, db_now_ms);
    if (e != ERR_OK)
        return e;
    /* Housekeeping, once the heartbeat is committed, so that the beat never
     * waits for it. Cheap (indexed, and nearly always nothing to remove);
     * a failure is logged and left to the next beat. */
    a.n = 0;
    a_i64(&a, CMD_KEEP_MS);
    (void)single(base, SQL_CMD_PURGE, &a, "node_beat", W_ANY, NULL, NULL);
    a.n = 0;
    a_i64(&a, NODE_KEEP_MS);
    (void)single(base, SQL_NODE_PURGE, &a, "node_beat", W_ANY, NULL, NULL);
    (void)idem_purge(base, IDEM_PURGE_BATCH, NULL);
    return ERR_OK;
}

/* The calls a reap ended, kept until its transaction has committed. */
struct reap {
    const char *self;
    int64_t dead_ms;
    bool all_others;
    int64_t now;
    struct store_call *v;
    size_t n, cap;
};

static enum err reap_row(void *ud, const struct db_row *r)
{
    struct reap *rp = ud;
    struct store_call *v;
    size_t cap;

    if (rp->n == rp->cap) {
        cap = rp->cap ? rp->cap * 2 : 16;
        v = reallocarray(rp->v, cap, sizeof(*v));
        if (!v)
            return ERR_NOMEM; /* the transaction rolls back: no call is ended */
        rp->v = v;
        rp->cap = cap;
    }
    row_call(r, &rp->v[rp->n++]);
    return ERR_OK;
}

static enum err node_reap_tx(struct db_conn *c, void *ctx)
{
    struct reap *rp = ctx;
    struct db_args a = {0};

    rp->n = 0; /* a new attempt after a conflict starts over */
    a_text(&a, rp->self);
    a_i64(&a, rp->now);
    if (rp->all_others)
        return run(c, SQL_CALL_REAP_ALL, &a, "node_reap", reap_row, rp, NULL);
    if (rp->dead_ms < 0)
        return run(c, SQL_CALL_REAP_OWN, &a, "node_reap", reap_row, rp, NULL);
    a_i64(&a, rp->dead_ms);
    return run(c, SQL_CALL_REAP_DEAD, &a, "node_reap", reap_row, rp, NULL);
}

/* The rows of the UPDATE arrive before its transaction commits: they are
 * kept, and handed to cb only once the calls are surely ended (a reap that
 * did not commit ended nothing, and a later one will hand them out). */
static enum err node_reap(struct store_conn *base, const char *self, int64_t dead_ms,
                          bool all_others, int64_t now, store_call_cb cb, void *ud)
{
    struct reap rp = {.self = self, .dead_ms = dead_ms, .all_others = all_others, .now = now};
    enum err e = op(base, OP_TX | OP_RETRY, node_reap_tx, &rp);
    size_t i;

    for (i = 0; e == ERR_OK && i < rp.n; i++)
        e = cb(ud, &rp.v[i]);
    free(rp.v);
    return e;
}

struct post {
    const char *node; /* NULL: every live node */
    int64_t alive_ms;
    const char *kind;
    const char *arg;
};

/* The command and the wake-up in one transaction: a waiter is woken only
 * once the command is there to be taken. */
static enum err cmd_post_tx(struct db_conn *c, void *ctx)
{
    struct post *p = ctx;
    struct db_args a = {0};
    enum err e;

    if (p->node)
        a_text(&a, p->node);
    else
        a_i64(&a, p->alive_ms);
    a_text(&a, p->kind);
    a_text(&a, p->arg);
    e = stmt(c, p->node ? SQL_CMD_INSERT : SQL_CMD_BROADCAST, &a, "cmd_post", W_ANY, NULL, NULL);
    if (e != ERR_OK)
        return e;
    return c->drv->notify(c, p->node ? p->node : "");
}

static enum err cmd_post(struct store_conn *base, const char *node, int64_t alive_ms,
                         const char *kind, const char *arg)
{
    struct post p = {node, alive_ms, kind, arg};

    /* cmd_take hands them out in fixed fields. */
    if (strlen(kind) > CMD_KIND_MAX || strlen(arg) > CMD_ARG_MAX)
        return ERR_INVALID;
    return op(base, OP_TX | OP_RETRY, cmd_post_tx, &p);
}

struct cmd {
    int64_t id;
    int64_t age_ms; /* by the database's clock */
    char kind[CMD_KIND_MAX + 1];
    char arg[CMD_ARG_MAX + 1];
};

/* One round of cmd_take: at most CMD_TAKE_BATCH commands removed. */
struct take {
    const char *node;
    int n;
    struct cmd v[CMD_TAKE_BATCH];
};

static enum err take_row(void *ud, const struct db_row *r)
{
    struct take *t = ud;
    struct cmd *k;

    if (t->n == CMD_TAKE_BATCH)
        return ERR_INTERNAL; /* the statement's LIMIT says this cannot be */
    k = &t->v[t->n++];
    k->id = col_i64(r, 0);
    COL_TEXT(r, 1, k->kind);
    COL_TEXT(r, 2, k->arg);
    k->age_ms = col_i64(r, 4) - col_i64(r, 3);
    return ERR_OK;
}

static enum err cmd_take_fn(struct db_conn *c, void *ctx)
{
    struct take *t = ctx;
    struct db_args a = {0};

    t->n = 0;
    a_text(&a, t->node);
    a_i64(&a, CMD_TAKE_BATCH);
    return run(c, SQL_CMD_TAKE, &a, "cmd_take", take_row, t, NULL);
}

static int cmd_older(const void *x, const void *y)
{
    const struct cmd *a = x, *b = y;

    return (a->id > b->id) - (a->id < b->id);
}

/* Rounds of one DELETE ... RETURNING each (it commits on its own: a
 * command is handed out only once it is surely removed), until a round
 * finds fewer than it may take. Every command a round removed is handed
 * out, even after a cb error, which then ends the take: a removed command
 * handed to nobody would be lost. */
static enum err cmd_take(struct store_conn *base, const char *node_id, int64_t max_age_ms,
                         store_cmd_cb cb, void *ud)
{
    struct take *t = calloc(1, sizeof(*t));
    enum err e = ERR_OK, ce;
    int i;

    if (!t)
        return ERR_NOMEM;
    t->node = node_id;
    do {
        e = op(base, OP_RETRY, cmd_take_fn, t);
        if (e != ERR_OK)
            break;
        qsort(t->v, (size_t)t->n, sizeof(t->v[0]), cmd_older);
        for (i = 0; i < t->n; i++) {
            if (t->v[i].age_ms > max_age_ms)
                continue;
            ce = cb(ud, t->v[i].kind, t->v[i].arg);
            if (e == ERR_OK)
                e = ce;
        }
    } while (e == ERR_OK && t->n == CMD_TAKE_BATCH);
    free(t);
    return e;
}

static enum err cmd_wait(struct store_conn *base, int timeout_ms, bool *woke)
{
    *woke = false;
    return DB(base)->drv->wait(DB(base), timeout_ms > 0 ? timeout_ms : 0, woke);
}

/* ---- idempotency keys (AGENT.md section 5) ---- */

/* Claim and read again while the row comes and goes between the two
 * statements (released, or expired, in the meantime). */
#define IDEM_CLAIM_TRIES 3
/* Expired keys a claim removes on its way. */
#define IDEM_PURGE_LAZY 2

struct idem_read {
    struct store_idem *out;
    int64_t age_ms; /* by the database's clock */
};

static void map_idem(const struct db_row *r, void *out)
{
    struct idem_read *ir = out;
    char state[8];

    COL_TEXT(r, 0, ir->out->req_hash);
    COL_TEXT(r, 1, state);
    ir->out->state = strcmp(state, "DONE") == 0 ? STORE_IDEM_DONE : STORE_IDEM_PENDING;
    ir->out->status = (int)col_i64(r, 2);
    COL_TEXT(r, 3, ir->out->body);
    ir->age_ms = col_i64(r, 5) - col_i64(r, 4);
}

static enum err idem_claim(struct store_conn *base, int64_t org_id, const char *key,
                           const char *req_hash, struct store_idem *out)
{
    struct idem_read ir = {out, 0};
    struct db_args a = {0};
    enum err e = ERR_UNAVAILABLE;
    int i;

    memset(out, 0, sizeof(*out));
    for (i = 0; i < IDEM_CLAIM_TRIES; i++) {
        a.n = 0;
        a_i64(&a, org_id);
        a_text(&a, key);
        a_text(&a, req_hash);
        a_i64(&a, IDEM_KEEP_MS);
        a_i64(&a, IDEM_STALE_MS);
        e = single(base, SQL_IDEM_CLAIM, &a, "idem_claim", W_ROW, map_i64, &out->claimed_at);
        if (e == ERR_OK) {
            out->state = STORE_IDEM_CLAIMED;
            /* Each new claim removes up to two expired keys, so that the
             * table holds about a day of keys even on a server without the
             * heartbeat's purge (no call engine). A failure is left to the
             * next claim. */
            (void)idem_purge(base, IDEM_PURGE_LAZY, NULL);
            return ERR_OK;
        }
        if (e != ERR_NOT_FOUND)
            return e;
        a.n = 2;
        e = single(base, SQL_IDEM_GET, &a, "idem_claim", W_ROW, map_idem, &ir);
        if (e == ERR_NOT_FOUND)
            continue; /* released since: claim again */
        if (e != ERR_OK)
            return e;
        /* Expired or abandoned since the claim was refused: claim again. */
        if (ir.age_ms >= IDEM_KEEP_MS ||
            (out->state == STORE_IDEM_PENDING && ir.age_ms >= IDEM_STALE_MS))
            continue;
        return ERR_OK;
    }
    return ERR_UNAVAILABLE;
}

static enum err idem_finish(struct store_conn *base, int64_t org_id, const char *key,
                            int64_t claimed_at, int status, const char *body)
{
    struct db_args a = {0};

    if (strlen(body) > IDEM_BODY_MAX)
        return ERR_TOO_LARGE;
    a_i64(&a, org_id);
    a_text(&a, key);
    a_i64(&a, claimed_at);
    a_i64(&a, status);
    a_text(&a, body);
    return single(base, SQL_IDEM_DONE, &a, "idem_finish", W_CHANGE, NULL, NULL);
}

static enum err idem_release(struct store_conn *base, int64_t org_id, const char *key,
                             int64_t claimed_at)
{
    struct db_args a = {0};

    a_i64(&a, org_id);
    a_text(&a, key);
    a_i64(&a, claimed_at);
    return single(base, SQL_IDEM_RELEASE, &a, "idem_release", W_CHANGE, NULL, NULL);
}

struct purge {
    int limit;
    int64_t n;
};

static enum err idem_purge_fn(struct db_conn *c, void *ctx)
{
    struct purge *p = ctx;
    struct db_args a = {0};

    a_i64(&a, IDEM_KEEP_MS);
    a_i64(&a, p->limit);
    return run(c, SQL_IDEM_PURGE, &a, "idem_purge", NULL, NULL, &p->n);
}

static enum err idem_purge(struct store_conn *base, int limit, int64_t *n)
{
    struct purge p = {limit, 0};
    enum err e = op(base, OP_RETRY, idem_purge_fn, &p);

    if (n)
        *n = p.n;
    return e;
}

#define IDEM_OPS                                                                                   \
    .idem_claim = idem_claim, .idem_finish = idem_finish, .idem_release = idem_release,            \
    .idem_purge = idem_purge
/* ---- outbound pacing ---- */

struct enqueue {
    const struct store_call *call;
    const char *req;
    int64_t max_waiting;
    int64_t *position;
};

/* Locks the app's pacing row (creating it), so that this transaction is
 * the only one adding to or taking from the app's queue; *next and *now
 * (may be NULL) get the next start time and the database's clock. */
static enum err pace_lock(struct db_conn *c, const char *app_id, int64_t *next, int64_t *now)
{
    struct db_args a = {0};
    int64_t v = 0;
    enum err e;

    a_text(&a, app_id);
    e = stmt(c, SQL_PACE_ROW, &a, "pace_lock", W_ANY, NULL, NULL);
    if (e == ERR_OK)
        e = stmt(c, SQL_PACE_LOCK, &a, "pace_lock", W_ROW, map_i64, &v);
    if (next)
        *next = v;
    if (e == ERR_OK && now)
        e = stmt(c, SQL_DB_NOW, NULL, "pace_lock", W_ROW, map_i64, now);
    return e;
}

static enum err call_enqueue_tx(struct db_conn *c, void *ctx)
{
    struct enqueue *q = ctx;
    const struct store_call *k = q->call;
    struct db_args a = {0};
    int64_t waiting = 0;
    enum err e;

    e = pace_lock(c, k->app_id, NULL, NULL);
    if (e != ERR_OK)
        return e;
    a_text(&a, k->app_id);
    e = stmt(c, SQL_PACE_WAITING, &a, "call_enqueue", W_ROW, map_i64, &waiting);
    if (e != ERR_OK)
        return e;
    *q->position = waiting;
    if (waiting >= q->max_waiting)
        return ERR_RATE_LIMITED;
    a.n = 0;
    a_text(&a, k->call_uuid);
    a_text_or_null(&a, k->request_uuid);
    a_i64(&a, k->org_id);
    a_text(&a, k->app_id);
    a_text(&a, k->from);
    a_text(&a, k->to);
    a_i64(&a, k->created_at);
    a_text_or_null(&a, k->hangup_url);
    a_text_or_null(&a, k->hangup_method);
    a_text(&a, q->req);
    e = stmt(c, SQL_CALL_ENQUEUE, &a, "call_enqueue", W_ANY, NULL, NULL);
    if (e == ERR_OK)
        *q->position = waiting + 1;
    return e;
}

static enum err call_enqueue(struct store_conn *base, const struct store_call *call,
                             const char *req, int64_t max_waiting, int64_t *position)
{
    struct enqueue q = {call, req, max_waiting, position};

    *position = 0;
    if (strlen(req) > QUEUE_REQ_MAX)
        return ERR_INVALID;
    return op(base, OP_TX | OP_RETRY, call_enqueue_tx, &q);
}

struct pace_apps {
    char (*ids)[APP_ID_LEN + 1];
    int cap, n;
};

static enum err pace_app_row(void *ud, const struct db_row *r)
{
    struct pace_apps *p = ud;

    if (p->n < p->cap)
        COL_TEXT(r, 0, p->ids[p->n++]);
    return ERR_OK;
}

static enum err pace_apps_fn(struct db_conn *c, void *ctx)
{
    struct pace_apps *p = ctx;

    p->n = 0;
    return run(c, SQL_PACE_APPS, NULL, "pace_apps", pace_app_row, p, NULL);
}

static enum err pace_apps(struct store_conn *base, char (*ids)[APP_ID_LEN + 1], int cap, int *n)
{
    struct pace_apps p = {ids, cap, 0};
    enum err e = op(base, OP_RETRY, pace_apps_fn, &p);

    *n = e == ERR_OK ? p.n : 0;
    return e;
}

struct claim {
    const char *app_id, *node_id;
    struct store_call *out;
    char *req;
    size_t cap;
    bool claimed;
    int64_t wait_ms;
};

static void map_req(const struct db_row *r, void *out)
{
    struct claim *k = out;

    col_text(r, 0, k->req, k->cap);
}

static enum err pace_claim_tx(struct db_conn *c, void *ctx)
{
    struct claim *k = ctx;
    struct db_args a = {0};
    int64_t next = 0, now = 0, lim[2] = {0, 0}, live = 0;
    enum err e;

    k->claimed = false;
    k->wait_ms = -1;
    e = pace_lock(c, k->app_id, &next, &now);
    if (e != ERR_OK)
        return e;
    a_text(&a, k->app_id);
    /* A deleted app has no caps: its calls are being cancelled anyway. */
    e = stmt(c, SQL_PACE_LIMITS, &a, "pace_claim", W_ANY, map_i64_pair, lim);
    if (e != ERR_OK)
        return e;
    if (lim[0] > 0) {
        e = stmt(c, SQL_PACE_LIVE, &a, "pace_claim", W_ROW, map_i64, &live);
        if (e != ERR_OK)
            return e;
        if (live >= lim[0])
            return ERR_OK;
    }
    if (lim[1] > 0 && next > now) {
        k->wait_ms = next - now;
        return ERR_OK;
    }
    e = stmt(c, SQL_PACE_HEAD, &a, "pace_claim", W_ROW, map_call, k->out);
    if (e == ERR_NOT_FOUND)
        return ERR_OK;
    if (e != ERR_OK)
        return e;
    a.n = 0;
    a_text(&a, k->out->call_uuid);
    e = stmt(c, SQL_PACE_REQ, &a, "pace_claim", W_ROW, map_req, k);
    if (e != ERR_OK)
        return e;
    a_text(&a, k->node_id);
    e = stmt(c, SQL_PACE_TAKE, &a, "pace_claim", W_CHANGE, NULL, NULL);
    if (e == ERR_NOT_FOUND)
        return ERR_OK; /* cancelled meanwhile: the next look finds the new head */
    if (e != ERR_OK)
        return e;
    if (lim[1] > 0) {
        a.n = 0;
        a_text(&a, k->app_id);
        a_i64(&a, 1000 / lim[1]);
        e = stmt(c, SQL_PACE_NEXT, &a, "pace_claim", W_ANY, NULL, NULL);
        if (e != ERR_OK)
            return e;
    }
    snprintf(k->out->node_id, sizeof(k->out->node_id), "%s", k->node_id);
    k->claimed = true;
    k->wait_ms = 0;
    return ERR_OK;
}

static enum err pace_claim(struct store_conn *base, const char *app_id, const char *node_id,
                           struct store_call *out, char *req, size_t cap, bool *claimed,
                           int64_t *wait_ms)
{
    struct claim k = {app_id, node_id, out, req, cap, false, -1};
    enum err e = op(base, OP_TX | OP_RETRY, pace_claim_tx, &k);

    *claimed = e == ERR_OK && k.claimed;
    *wait_ms = e == ERR_OK ? k.wait_ms : -1;
    return e;
}

static enum err call_queue_position(struct store_conn *base, const char *call_uuid,
                                    int64_t *position)
{
    struct db_args a = {0};
    enum err e;

    *position = 0;
    a_text(&a, call_uuid);
    e = single(base, SQL_QUEUE_POS, &a, "call_queue_position", W_ROW, map_i64, position);
    return e == ERR_NOT_FOUND ? ERR_OK : e;
}

struct qcancel {
    const char *call_uuid, *app_id, *from;
    int64_t now;
    struct reap rp; /* the calls ended, kept until the commit */
};

static enum err call_queue_cancel_tx(struct db_conn *c, void *ctx)
{
    struct qcancel *q = ctx;
    struct db_args a = {0};
    enum sql_id id = SQL_QUEUE_CANCEL_APP;

    q->rp.n = 0;
    if (q->call_uuid) {
        a_text(&a, q->call_uuid);
        id = SQL_QUEUE_CANCEL_CALL;
    } else {
        a_text(&a, q->app_id);
    }
    a_i64(&a, q->now);
    if (!q->call_uuid && q->from) {
        a_text(&a, q->from);
        id = SQL_QUEUE_CANCEL_FROM;
    }
    return run(c, id, &a, "call_queue_cancel", reap_row, &q->rp, NULL);
}

static enum err call_queue_cancel(struct store_conn *base, const char *call_uuid,
                                  const char *app_id, const char *from, int64_t now,
                                  store_call_cb cb, void *ud)
{
    struct qcancel q = {call_uuid, app_id, from, now, {0}};
    enum err e;
    size_t i;

    if (!call_uuid && !app_id)
        return ERR_INTERNAL;
    e = op(base, OP_TX | OP_RETRY, call_queue_cancel_tx, &q);
    for (i = 0; e == ERR_OK && i < q.rp.n; i++)
        e = cb(ud, &q.rp.v[i]);
    free(q.rp.v);
    return e;
}

#define PACE_OPS                                                                                   \
    .call_enqueue = call_enqueue, .pace_apps = pace_apps, .pace_claim = pace_claim,                \
    .call_queue_position = call_queue_position, .call_queue_cancel = call_queue_cancel
/* ---- signing secrets (AGENT.md section 4) ---- */

struct whsec_new {
    int64_t org_id;
    const char *secret;
    int64_t now;
    int64_t *id;
};

/* The org's row is locked first, so the count and the insert of two
 * creates for one org never interleave (SQLite: one writer at a time). */
static enum err whsecret_create_tx(struct db_conn *c, void *ctx)
{
    struct whsec_new *w = ctx;
    struct db_args a = {0};
    int64_t n = 0;
    enum err e;

    a_i64(&a, w->org_id);
    e = stmt(c, SQL_ORG_LOCK, &a, "whsecret_create", W_ROW, NULL, NULL);
    if (e != ERR_OK)
        return e;
    e = stmt(c, SQL_WHSEC_ACTIVE_COUNT, &a, "whsecret_create", W_ROW, map_i64, &n);
    if (e != ERR_OK)
        return e == ERR_NOT_FOUND ? ERR_DB : e;
    if (n >= WHSEC_ACTIVE_MAX)
        return ERR_CONFLICT;
    a_text(&a, w->secret);
    a_i64(&a, w->now);
    return stmt(c, SQL_WHSEC_INSERT, &a, "whsecret_create", W_ID, map_i64, w->id);
}

static enum err whsecret_create(struct store_conn *base, int64_t org_id, const char *secret,
                                int64_t now, int64_t *id)
{
    struct whsec_new w = {org_id, secret, now, id};

    return op(base, OP_TX | OP_RETRY, whsecret_create_tx, &w);
}

static enum err whsecret_row(void *ud, const struct db_row *r)
{
    struct list *l = ud;
    struct store_whsecret s;

    s.id = col_i64(r, 0);
    s.org_id = col_i64(r, 1);
    COL_TEXT(r, 2, s.shown);
    s.created_at = col_i64(r, 3);
    return ((store_whsecret_cb)l->cb)(l->ud, &s);
}

static enum err whsecret_list(struct store_conn *base, int64_t org_id, store_whsecret_cb cb,
                              void *ud)
{
    return list_org(base, SQL_WHSEC_LIST, "whsecret_list", org_id, whsecret_row, (const void *)cb,
                    ud);
}

struct whsec_rev {
    int64_t id;
    int64_t now;
};

static enum err whsecret_revoke_tx(struct db_conn *c, void *ctx)
{
    struct whsec_rev *w = ctx;
    struct db_args a = {0};
    int64_t revoked = 0;
    enum err e;

    a_i64(&a, w->id);
    e = stmt(c, SQL_WHSEC_LOCK, &a, "whsecret_revoke", W_ROW, map_i64, &revoked);
    if (e != ERR_OK)
        return e;
    if (revoked)
        return ERR_CONFLICT;
    a_i64(&a, w->now);
    return stmt(c, SQL_WHSEC_REVOKE, &a, "whsecret_revoke", W_CHANGE, NULL, NULL);
}

static enum err whsecret_revoke(struct store_conn *base, int64_t id, int64_t now)
{
    struct whsec_rev w = {id, now};

    return op(base, OP_TX | OP_RETRY, whsecret_revoke_tx, &w);
}

/* The secret goes from the driver's row to the callback and nowhere else. */
static enum err whsecret_full_row(void *ud, const struct db_row *r)
{
    struct list *l = ud;

    if (r->n < 2 || r->col[1].null)
        return ERR_DB;
    return ((store_whsecret_full_cb)l->cb)(l->ud, col_i64(r, 0), r->col[1].s);
}

static enum err whsecret_active_all(struct store_conn *base, store_whsecret_full_cb cb, void *ud)
{
    return list(base, SQL_WHSEC_ALL_ACTIVE, NULL, "whsecret_active_all", whsecret_full_row,
                (const void *)cb, ud);
}

#define WHSEC_OPS                                                                                  \
    .whsecret_create = whsecret_create, .whsecret_list = whsecret_list,                            \
    .whsecret_revoke = whsecret_revoke, .whsecret_active_all = whsecret_active_all

#define STORE_OPS                                                                                  \
    .conn_close = conn_close, .ping = ping, .batch_begin = batch_begin, .batch_end = batch_end,    \
    .org_create = org_create, .org_get = org_get, .org_count = org_count, .org_list = org_list,    \
    .key_create = key_create, .key_find = key_find, .key_list = key_list,                          \
    .key_revoke = key_revoke, .number_add = number_add, .number_list = number_list,                \
    .number_remove = number_remove, .number_set_status = number_set_status,                        \
    .available_list = available_list, .app_create = app_create, .app_get = app_get,                \
    .app_list = app_list, .app_update = app_update, .app_delete = app_delete,                      \
    .link_create = link_create, .link_list = link_list, .link_delete = link_delete,                \
    .number_route = number_route, .call_create = call_create, .call_update = call_update,          \
    .call_get = call_get, .call_list = call_list, .node_beat = node_beat, .node_reap = node_reap,  \
    .cmd_post = cmd_post, .cmd_take = cmd_take, .cmd_wait = cmd_wait, IDEM_OPS, WHSEC_OPS

const struct store_ops store_ops_sqlite = {.name = "sqlite", STORE_OPS, PACE_OPS};
const struct store_ops store_ops_pg = {.name = "postgresql", STORE_OPS, PACE_OPS};

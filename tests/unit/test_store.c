/* test_store: every operation of struct store_ops, against the backend that
 * SFVOPI_TEST_STORE_URL names: "sqlite::memory:" (the default) or a
 * PostgreSQL server ("postgresql://..."), each test on a database of its own.
 * The contracts come from store.h, and the rules behind them from API.md
 * sections 2 and 3 and CLI.md: orderings, the link checks in their
 * documented order, and what a delete or unlink frees. The suite reaches the
 * database only through store.h; the PostgreSQL databases it needs are made
 * and dropped by psql (libpq belongs to db_pg.c alone). */
/* cmocka needs these before <cmocka.h>. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <fcntl.h>
#include <pthread.h>
#include <spawn.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "store/store.h"

#define APP_A "sfv_app_aaaaaaaaaaa1"
#define APP_B "sfv_app_bbbbbbbbbbb2"
#define APP_C "sfv_app_ccccccccccc3"
#define N1 "+918000000001"
#define N2 "+918000000002"
#define N3 "+918000000003"
#define N4 "+918000000004"

#define T0 1770028200000LL /* 2026-02-02T10:30:00.000Z */

/* ---- the backend under test ---- */

#define URL_MAX 1024
#define DB_NAME_MAX 63  /* PostgreSQL's identifier limit */
#define TPL_NAME_MAX 31 /* "sfvopi_store_" and a pid: room left for "_empty" or "_N" */
#define DBS_MAX 64      /* databases one run may make: one per test, the template, an empty one */
#define SQL_MAX (64 + 2 * DB_NAME_MAX)

extern char **environ;

/* SQLite needs no bookkeeping: "sqlite::memory:" is a new private database
 * each time it is opened. A PostgreSQL run makes its databases up front,
 * in one psql run, and hands one out to each test. */
static struct {
    const char *url;  /* the server's URL as given: psql's maintenance connection */
    const char *name; /* what store_ops.name must say */
    bool pg;
    char tpl[TPL_NAME_MAX + 1]; /* the migrated database the others copy */
    int n_dbs;                  /* tpl_0 .. tpl_(n_dbs - 1), and tpl_empty */
    int next;                   /* the next of them db_new hands out */
    bool empty_taken;
} be;

/* Runs psql on the server's own URL with one -c per statement (each its own
 * transaction, as CREATE and DROP DATABASE need). 0 when every statement
 * succeeded; psql reports a failure on stderr itself. */
static int psql(char (*sql)[SQL_MAX], int n)
{
    char *argv[8 + 2 * DBS_MAX];
    int argc = 0, i, status;
    pid_t pid;

    if (n > DBS_MAX)
        return -1;
    argv[argc++] = "psql";
    argv[argc++] = (char *)be.url;
    argv[argc++] = "-X"; /* no ~/.psqlrc */
    argv[argc++] = "-q";
    argv[argc++] = "-v";
    argv[argc++] = "ON_ERROR_STOP=1";
    for (i = 0; i < n; i++) {
        argv[argc++] = "-c";
        argv[argc++] = sql[i];
    }
    argv[argc] = NULL;
    if (posix_spawnp(&pid, "psql", NULL, NULL, argv, environ) != 0) {
        fprintf(stderr, "test_store: cannot run psql (needed for a PostgreSQL run)\n");
        return -1;
    }
    if (waitpid(pid, &status, 0) != pid)
        return -1;
    return WIFEXITED(status) && WEXITSTATUS(status) == 0 ? 0 : -1;
}

/* The URL of database name on the server of be.url: the same URL with its
 * path replaced, its query (sslmode=... and the like) kept. */
static int pg_url(char *out, size_t cap, const char *name)
{
    const char *auth = strstr(be.url, "://") + 3;
    const char *path = auth + strcspn(auth, "/?");
    const char *query = path + strcspn(path, "?");
    int n = snprintf(out, cap, "%.*s/%s%s", (int)(path - be.url), be.url, name, query);

    return n > 0 && (size_t)n < cap ? 0 : -1;
}

/* Puts in url a database no other test has used: a migrated one, or (when
 * migrated is false) an empty one for store_open to create the schema in. */
static int db_new(char url[URL_MAX], bool migrated)
{
    char name[DB_NAME_MAX + 1];

    if (!be.pg) {
        snprintf(url, URL_MAX, "%s", "sqlite::memory:");
        return 0;
    }
    if (migrated) {
        if (be.next == be.n_dbs)
            return -1;
        snprintf(name, sizeof(name), "%s_%d", be.tpl, be.next++);
    } else {
        if (be.empty_taken)
            return -1;
        be.empty_taken = true;
        snprintf(name, sizeof(name), "%s_empty", be.tpl);
    }
    return pg_url(url, URL_MAX, name);
}

/* Picks the backend from SFVOPI_TEST_STORE_URL. On PostgreSQL, store_open
 * migrates a template once, and n_tests copies of it and one empty
 * database are made in a single psql run: a psql start costs more than a
 * CREATE DATABASE. Not reaching the server fails the run: the URL was given
 * to test that server, so there is nothing to skip to. */
static int backend_init(int n_tests)
{
    static char sql[DBS_MAX][SQL_MAX];
    char url[URL_MAX];
    struct store *s;
    enum err e;
    int i;

    be.url = getenv("SFVOPI_TEST_STORE_URL");
    if (!be.url || !*be.url)
        be.url = "sqlite::memory:";
    if (strcmp(be.url, "sqlite::memory:") == 0) {
        be.name = "sqlite";
        return 0;
    }
    if (strncmp(be.url, "postgresql://", 13) != 0 && strncmp(be.url, "postgres://", 11) != 0) {
        fprintf(stderr, "test_store: SFVOPI_TEST_STORE_URL is neither sqlite::memory: nor a "
                        "postgresql:// URL\n");
        return -1;
    }
    be.name = "postgresql";
    be.pg = true;
    if (n_tests + 2 > DBS_MAX)
        return -1;
    setenv("PGCONNECT_TIMEOUT", "10", 0); /* psql must not wait forever on a dead address */
    snprintf(be.tpl, sizeof(be.tpl), "sfvopi_store_%ld", (long)getpid());
    snprintf(sql[0], SQL_MAX, "CREATE DATABASE %s TEMPLATE template0", be.tpl);
    if (psql(sql, 1) != 0 || pg_url(url, sizeof(url), be.tpl) != 0)
        goto fail;
    e = store_open(url, &s);
    if (e != ERR_OK) {
        fprintf(stderr, "test_store: store_open on the template database: %s\n", err_str(e));
        goto fail;
    }
    store_free(s);
    /* FILE_COPY: a checkpoint and a copy of a few files, three times as fast
     * as the default WAL_LOG on a small database. */
    for (i = 0; i < n_tests; i++)
        snprintf(sql[i], SQL_MAX, "CREATE DATABASE %s_%d TEMPLATE %s STRATEGY FILE_COPY", be.tpl, i,
                 be.tpl);
    snprintf(sql[i], SQL_MAX, "CREATE DATABASE %s_empty TEMPLATE template0", be.tpl);
    be.n_dbs = n_tests;
    if (psql(sql, n_tests + 1) != 0)
        goto fail;
    return 0;

fail:
    fprintf(stderr, "test_store: cannot use the PostgreSQL server of SFVOPI_TEST_STORE_URL; "
                    "a run on PostgreSQL fails, never skips, when its server is out of reach\n");
    return -1;
}

/* Drops this run's PostgreSQL databases, again in one psql run. */
static int backend_release(void)
{
    static char sql[DBS_MAX][SQL_MAX];
    int i;

    if (!be.pg)
        return 0;
    for (i = 0; i < be.n_dbs; i++)
        snprintf(sql[i], SQL_MAX, "DROP DATABASE IF EXISTS %s_%d WITH (FORCE)", be.tpl, i);
    snprintf(sql[i++], SQL_MAX, "DROP DATABASE IF EXISTS %s_empty WITH (FORCE)", be.tpl);
    snprintf(sql[i++], SQL_MAX, "DROP DATABASE IF EXISTS %s WITH (FORCE)", be.tpl);
    return psql(sql, i);
}

struct fx {
    struct store *s;
    struct store_conn *c;
    const struct store_ops *ops;
    int64_t org1, org2;
    char url[URL_MAX]; /* the test's own database */
};

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));

    if (!f)
        return -1;
    *state = f;
    if (db_new(f->url, true) != 0)
        return -1;
    if (store_open(f->url, &f->s) != ERR_OK)
        return -1;
    if (store_conn_open(f->s, &f->c) != ERR_OK)
        return -1;
    f->ops = f->c->ops;
    if (f->ops->org_create(f->c, "Org One", T0, &f->org1) != ERR_OK ||
        f->ops->org_create(f->c, "Org Two", T0 + 1, &f->org2) != ERR_OK)
        return -1;
    return 0;
}

static int teardown(void **state)
{
    struct fx *f = *state;

    store_conn_close(f->c);
    store_free(f->s);
    free(f);
    return 0;
}

static int group_setup(void **state)
{
    (void)state;
    log_set_level(LOG_OFF); /* expected failures log driver text */
    return 0;
}

/* ---- collectors for the row callbacks ---- */

#define ROWS_MAX 16

struct rows {
    int n;
    int stop_after; /* 0: never; else return ERR_INTERNAL on that row */
    struct store_org orgs[ROWS_MAX];
    struct store_key keys[ROWS_MAX];
    struct store_app apps[ROWS_MAX];
    struct store_link links[ROWS_MAX];
    struct store_number nums[ROWS_MAX];
    struct store_call calls[ROWS_MAX];
};

static enum err row_done(struct rows *r)
{
    r->n++;
    return r->stop_after && r->n == r->stop_after ? ERR_INTERNAL : ERR_OK;
}

static enum err org_cb(void *ud, const struct store_org *o)
{
    struct rows *r = ud;

    assert_true(r->n < ROWS_MAX);
    r->orgs[r->n] = *o;
    return row_done(r);
}

static enum err key_cb(void *ud, const struct store_key *k)
{
    struct rows *r = ud;

    assert_true(r->n < ROWS_MAX);
    r->keys[r->n] = *k;
    return row_done(r);
}

static enum err app_cb(void *ud, const struct store_app *a)
{
    struct rows *r = ud;

    assert_true(r->n < ROWS_MAX);
    r->apps[r->n] = *a;
    return row_done(r);
}

static enum err link_cb(void *ud, const struct store_link *l)
{
    struct rows *r = ud;

    assert_true(r->n < ROWS_MAX);
    r->links[r->n] = *l;
    return row_done(r);
}

static enum err num_cb(void *ud, const struct store_number *n)
{
    struct rows *r = ud;

    assert_true(r->n < ROWS_MAX);
    r->nums[r->n] = *n;
    return row_done(r);
}

static enum err call_cb(void *ud, const struct store_call *k)
{
    struct rows *r = ud;

    assert_true(r->n < ROWS_MAX);
    r->calls[r->n] = *k;
    return row_done(r);
}

static struct rows *rows_new(void)
{
    struct rows *r = calloc(1, sizeof(*r));

    assert_non_null(r);
    return r;
}

/* ---- builders ---- */

static void make_app(struct store_app *a, const char *app_id, int64_t org, int64_t created_at)
{
    memset(a, 0, sizeof(*a));
    memcpy(a->app_id, app_id, strlen(app_id) + 1);
    a->org_id = org;
    memcpy(a->name, "My Voice App", sizeof("My Voice App"));
    memcpy(a->answer_url, "https://example.com/answer", sizeof("https://example.com/answer"));
    memcpy(a->answer_method, "POST", 5);
    memcpy(a->hangup_method, "POST", 5);
    memcpy(a->fallback_answer_method, "POST", 5);
    memcpy(a->status, "ACTIVE", 7);
    a->created_at = created_at;
}

static void add_app(struct fx *f, const char *app_id, int64_t org, int64_t created_at)
{
    struct store_app a;

    make_app(&a, app_id, org, created_at);
    assert_int_equal(f->ops->app_create(f->c, &a), ERR_OK);
}

static int64_t add_number(struct fx *f, int64_t org, const char *e164)
{
    int64_t id = 0;

    assert_int_equal(f->ops->number_add(f->c, org, e164, "exotel", T0, &id), ERR_OK);
    assert_true(id > 0);
    return id;
}

static void add_link(struct fx *f, int64_t org, const char *app, const char *e164, int64_t now)
{
    struct store_link l;

    assert_int_equal(f->ops->link_create(f->c, org, app, e164, now, &l), ERR_OK);
}

static int count_links(struct fx *f, int64_t org, const char *app)
{
    struct rows *r = rows_new();
    int n;

    assert_int_equal(f->ops->link_list(f->c, org, app, link_cb, r), ERR_OK);
    n = r->n;
    free(r);
    return n;
}

static int count_available(struct fx *f, int64_t org)
{
    struct rows *r = rows_new();
    int n;

    assert_int_equal(f->ops->available_list(f->c, org, num_cb, r), ERR_OK);
    n = r->n;
    free(r);
    return n;
}

/* ---- open ---- */

static void test_open_urls(void **state)
{
    static const char *const bad[] = {
        "", "sqlite:", "mysql://x", "file:x.db", "SQLITE::memory:", "sqlite", "memory"};
    struct store *s = NULL;
    size_t i;

    (void)state;
    for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        if (store_open(bad[i], &s) != ERR_INVALID)
            print_error("url '%s'\n", bad[i]);
        assert_int_equal(store_open(bad[i], &s), ERR_INVALID);
    }
    assert_null(s);
}

static void test_ping_and_name(void **state)
{
    struct fx *f = *state;

    assert_string_equal(f->ops->name, be.name);
    assert_int_equal(f->ops->ping(f->c), ERR_OK);
    store_conn_close(NULL); /* accepts NULL */
}

/* ---- orgs ---- */

static void test_orgs(void **state)
{
    struct fx *f = *state;
    struct store_org o;
    struct rows *r = rows_new();
    int64_t n = -1, id3 = 0;

    assert_true(f->org1 > 0);
    assert_true(f->org2 > f->org1);
    assert_int_equal(f->ops->org_count(f->c, &n), ERR_OK);
    assert_true(n == 2);

    assert_int_equal(f->ops->org_create(f->c, "Caf\xc3\xa9 \xe2\x82\xac", T0 + 5, &id3), ERR_OK);
    assert_true(id3 > f->org2);
    assert_int_equal(f->ops->org_get(f->c, id3, &o), ERR_OK);
    assert_true(o.id == id3);
    assert_string_equal(o.name, "Caf\xc3\xa9 \xe2\x82\xac");
    assert_true(o.created_at == T0 + 5);
    assert_int_equal(f->ops->org_count(f->c, &n), ERR_OK);
    assert_true(n == 3);

    assert_int_equal(f->ops->org_get(f->c, id3 + 100, &o), ERR_NOT_FOUND);
    assert_int_equal(f->ops->org_get(f->c, 0, &o), ERR_NOT_FOUND);
    assert_int_equal(f->ops->org_get(f->c, -1, &o), ERR_NOT_FOUND);

    assert_int_equal(f->ops->org_list(f->c, org_cb, r), ERR_OK);
    assert_int_equal(r->n, 3);
    assert_true(r->orgs[0].id == f->org1);
    assert_string_equal(r->orgs[0].name, "Org One");
    assert_true(r->orgs[0].created_at == T0);
    assert_true(r->orgs[1].id == f->org2);
    assert_string_equal(r->orgs[1].name, "Org Two");
    assert_true(r->orgs[2].id == id3);
    free(r);
}

/* A database store_open has just created (or migrated from nothing). */
static void test_org_empty_database(void **state)
{
    struct store *s;
    struct store_conn *c;
    struct rows *r = rows_new();
    char url[URL_MAX];
    int64_t n = -1;

    (void)state;
    assert_int_equal(db_new(url, false), 0);
    assert_int_equal(store_open(url, &s), ERR_OK);
    assert_int_equal(store_conn_open(s, &c), ERR_OK);
    assert_int_equal(c->ops->org_count(c, &n), ERR_OK);
    assert_true(n == 0);
    assert_int_equal(c->ops->org_list(c, org_cb, r), ERR_OK);
    assert_int_equal(r->n, 0);
    store_conn_close(c);
    store_free(s);
    free(r);
}

/* A callback's error stops the walk and becomes the result. */
static void test_callback_error_stops(void **state)
{
    struct fx *f = *state;
    struct rows *r = rows_new();

    r->stop_after = 1;
    assert_int_equal(f->ops->org_list(f->c, org_cb, r), ERR_INTERNAL);
    assert_int_equal(r->n, 1);
    /* The connection is still usable afterwards. */
    memset(r, 0, sizeof(*r));
    assert_int_equal(f->ops->org_list(f->c, org_cb, r), ERR_OK);
    assert_int_equal(r->n, 2);
    free(r);
}

/* ---- keys ---- */

static void make_key(struct store_key *k, int64_t org, int64_t user, const char *name,
                     const char *prefix, int64_t created_at)
{
    memset(k, 0, sizeof(*k));
    k->org_id = org;
    k->user_id = user;
    memcpy(k->name, name, strlen(name) + 1);
    memcpy(k->prefix, prefix, strlen(prefix) + 1);
    k->created_at = created_at;
}

static void test_keys(void **state)
{
    struct fx *f = *state;
    unsigned char h1[KEY_HASH_LEN], h2[KEY_HASH_LEN], h3[KEY_HASH_LEN], h4[KEY_HASH_LEN];
    struct store_key k, out;
    struct rows *r = rows_new();
    int64_t id1 = 0, id2 = 0, id3 = 0;

    memset(h1, 1, sizeof(h1));
    memset(h2, 2, sizeof(h2));
    memset(h3, 3, sizeof(h3));
    memset(h4, 4, sizeof(h4));

    make_key(&k, f->org1, 67890, "ci", "sfvk_AAAAAAA", T0);
    k.id = 999; /* ignored */
    assert_int_equal(f->ops->key_create(f->c, &k, h1, &id1), ERR_OK);
    make_key(&k, f->org1, 0, "", "sfvk_BBBBBBB", T0 + 1);
    assert_int_equal(f->ops->key_create(f->c, &k, h2, &id2), ERR_OK);
    make_key(&k, f->org2, 0, "other", "sfvk_CCCCCCC", T0 + 2);
    assert_int_equal(f->ops->key_create(f->c, &k, h3, &id3), ERR_OK);
    assert_true(id1 > 0 && id2 > id1 && id3 > id2);
    assert_true(id1 != 999);

    /* Unknown org; a hash already stored. */
    make_key(&k, f->org2 + 100, 0, "", "sfvk_DDDDDDD", T0);
    assert_int_equal(f->ops->key_create(f->c, &k, h4, &id3), ERR_NOT_FOUND);
    make_key(&k, f->org2, 0, "", "sfvk_DDDDDDD", T0);
    assert_int_equal(f->ops->key_create(f->c, &k, h1, &id3), ERR_CONFLICT);

    assert_int_equal(f->ops->key_find(f->c, h1, &out), ERR_OK);
    assert_true(out.id == id1);
    assert_true(out.org_id == f->org1);
    assert_true(out.user_id == 67890);
    assert_string_equal(out.name, "ci");
    assert_string_equal(out.prefix, "sfvk_AAAAAAA");
    assert_false(out.revoked);
    assert_true(out.created_at == T0);

    assert_int_equal(f->ops->key_find(f->c, h2, &out), ERR_OK);
    assert_true(out.user_id == 0);
    assert_string_equal(out.name, "");
    assert_int_equal(f->ops->key_find(f->c, h4, &out), ERR_NOT_FOUND);

    /* Listing is per org, by id. */
    assert_int_equal(f->ops->key_list(f->c, f->org1, key_cb, r), ERR_OK);
    assert_int_equal(r->n, 2);
    assert_true(r->keys[0].id == id1);
    assert_string_equal(r->keys[0].prefix, "sfvk_AAAAAAA");
    assert_true(r->keys[1].id == id2);
    assert_string_equal(r->keys[1].prefix, "sfvk_BBBBBBB");
    memset(r, 0, sizeof(*r));
    assert_int_equal(f->ops->key_list(f->c, f->org2 + 100, key_cb, r), ERR_OK);
    assert_int_equal(r->n, 0);
    free(r);
}

static void test_key_revoke(void **state)
{
    struct fx *f = *state;
    unsigned char h1[KEY_HASH_LEN], h2[KEY_HASH_LEN];
    struct store_key k, out;
    struct rows *r = rows_new();
    int64_t id1 = 0, id2 = 0;

    memset(h1, 0xa1, sizeof(h1));
    memset(h2, 0xa2, sizeof(h2));
    make_key(&k, f->org1, 0, "", "sfvk_1111111", T0);
    assert_int_equal(f->ops->key_create(f->c, &k, h1, &id1), ERR_OK);
    assert_int_equal(f->ops->key_create(f->c, &k, h2, &id2), ERR_OK);

    assert_int_equal(f->ops->key_revoke(f->c, id1, T0 + 10), ERR_OK);
    assert_int_equal(f->ops->key_find(f->c, h1, &out), ERR_OK);
    assert_true(out.revoked);
    assert_true(out.id == id1);
    /* The other key is untouched. */
    assert_int_equal(f->ops->key_find(f->c, h2, &out), ERR_OK);
    assert_false(out.revoked);
    /* Revoking a revoked key succeeds; an unknown id does not. */
    assert_int_equal(f->ops->key_revoke(f->c, id1, T0 + 20), ERR_OK);
    assert_int_equal(f->ops->key_find(f->c, h1, &out), ERR_OK);
    assert_true(out.revoked);
    assert_int_equal(f->ops->key_revoke(f->c, id2 + 1000, T0), ERR_NOT_FOUND);
    assert_int_equal(f->ops->key_revoke(f->c, 0, T0), ERR_NOT_FOUND);

    assert_int_equal(f->ops->key_list(f->c, f->org1, key_cb, r), ERR_OK);
    assert_int_equal(r->n, 2);
    assert_true(r->keys[0].revoked);
    assert_false(r->keys[1].revoked);
    free(r);
}

/* ---- numbers ---- */

static void test_number_add(void **state)
{
    struct fx *f = *state;
    int64_t id1, id2, id = 0;

    id1 = add_number(f, f->org1, N1);
    id2 = add_number(f, f->org1, N2);
    assert_true(id2 > id1);
    /* Already in this org, or in any other org. */
    assert_int_equal(f->ops->number_add(f->c, f->org1, N1, "exotel", T0, &id), ERR_CONFLICT);
    assert_int_equal(f->ops->number_add(f->c, f->org2, N1, "plivo", T0, &id), ERR_CONFLICT);
    /* Unknown org. */
    assert_int_equal(f->ops->number_add(f->c, f->org2 + 100, N3, "exotel", T0, &id), ERR_NOT_FOUND);
    assert_int_equal(f->ops->number_add(f->c, f->org2, N3, "plivo", T0, &id), ERR_OK);
    assert_true(id > id2);
}

static void test_number_list(void **state)
{
    struct fx *f = *state;
    struct rows *r = rows_new();
    int64_t id1, id2, id3;

    id1 = add_number(f, f->org1, N1);
    id3 = add_number(f, f->org2, N3);
    id2 = add_number(f, f->org1, N2);
    add_app(f, APP_A, f->org1, T0);
    add_link(f, f->org1, APP_A, N2, T0 + 1);

    assert_int_equal(f->ops->number_list(f->c, f->org1, num_cb, r), ERR_OK);
    assert_int_equal(r->n, 2);
    assert_true(r->nums[0].id == id1);
    assert_true(r->nums[0].org_id == f->org1);
    assert_string_equal(r->nums[0].voip_number, N1);
    assert_string_equal(r->nums[0].provider, "exotel");
    assert_string_equal(r->nums[0].status, "ACTIVE");
    assert_string_equal(r->nums[0].linked_app_id, "");
    assert_true(r->nums[1].id == id2);
    assert_string_equal(r->nums[1].voip_number, N2);
    assert_string_equal(r->nums[1].linked_app_id, APP_A);

    memset(r, 0, sizeof(*r));
    assert_int_equal(f->ops->number_list(f->c, f->org2, num_cb, r), ERR_OK);
    assert_int_equal(r->n, 1);
    assert_true(r->nums[0].id == id3);

    memset(r, 0, sizeof(*r));
    assert_int_equal(f->ops->number_list(f->c, f->org2 + 100, num_cb, r), ERR_OK);
    assert_int_equal(r->n, 0);
    free(r);
}

/* An unlinked number's history does not make it show as linked. */
static void test_number_list_after_unlink(void **state)
{
    struct fx *f = *state;
    struct rows *r = rows_new();
    enum store_miss miss;

    add_number(f, f->org1, N1);
    add_app(f, APP_A, f->org1, T0);
    add_link(f, f->org1, APP_A, N1, T0 + 1);
    assert_int_equal(f->ops->link_delete(f->c, f->org1, APP_A, N1, T0 + 2, &miss), ERR_OK);
    add_link(f, f->org1, APP_A, N1, T0 + 3);
    assert_int_equal(f->ops->link_delete(f->c, f->org1, APP_A, N1, T0 + 4, &miss), ERR_OK);
    assert_int_equal(f->ops->number_list(f->c, f->org1, num_cb, r), ERR_OK);
    assert_int_equal(r->n, 1); /* one row, not one per link */
    assert_string_equal(r->nums[0].linked_app_id, "");
    free(r);
}

static void test_number_remove(void **state)
{
    struct fx *f = *state;
    struct rows *r = rows_new();
    enum store_miss miss;

    add_number(f, f->org1, N1);
    add_number(f, f->org1, N2);
    add_app(f, APP_A, f->org1, T0);
    add_link(f, f->org1, APP_A, N1, T0);

    assert_int_equal(f->ops->number_remove(f->c, N3), ERR_NOT_FOUND);
    assert_int_equal(f->ops->number_remove(f->c, N1), ERR_CONFLICT);
    assert_int_equal(f->ops->number_remove(f->c, N2), ERR_OK);
    assert_int_equal(f->ops->number_remove(f->c, N2), ERR_NOT_FOUND);
    /* Once unlinked it can go. */
    assert_int_equal(f->ops->link_delete(f->c, f->org1, APP_A, N1, T0 + 1, &miss), ERR_OK);
    assert_int_equal(f->ops->number_remove(f->c, N1), ERR_OK);

    assert_int_equal(f->ops->number_list(f->c, f->org1, num_cb, r), ERR_OK);
    assert_int_equal(r->n, 0);
    free(r);
    /* And be added again, to another org. */
    add_number(f, f->org2, N1);
}

static void test_number_set_status(void **state)
{
    struct fx *f = *state;
    struct rows *r = rows_new();

    add_number(f, f->org1, N1);
    assert_int_equal(f->ops->number_set_status(f->c, N1, "INACTIVE"), ERR_OK);
    assert_int_equal(f->ops->number_set_status(f->c, N1, "INACTIVE"), ERR_OK); /* again */
    assert_int_equal(f->ops->number_list(f->c, f->org1, num_cb, r), ERR_OK);
    assert_int_equal(r->n, 1);
    assert_string_equal(r->nums[0].status, "INACTIVE");
    assert_int_equal(f->ops->number_set_status(f->c, N1, "ACTIVE"), ERR_OK);
    memset(r, 0, sizeof(*r));
    assert_int_equal(f->ops->number_list(f->c, f->org1, num_cb, r), ERR_OK);
    assert_string_equal(r->nums[0].status, "ACTIVE");
    assert_int_equal(f->ops->number_set_status(f->c, N2, "INACTIVE"), ERR_NOT_FOUND);
    free(r);
}

/* The org's ACTIVE numbers without an ACTIVE link, by id ascending. */
static void test_available_list(void **state)
{
    struct fx *f = *state;
    struct rows *r = rows_new();
    int64_t id1, id2, id3, id4;
    enum store_miss miss;

    id4 = add_number(f, f->org1, N4); /* added first: lowest id */
    id1 = add_number(f, f->org1, N1);
    id2 = add_number(f, f->org1, N2);
    id3 = add_number(f, f->org1, N3);
    add_number(f, f->org2, "+918000000009");
    add_app(f, APP_A, f->org1, T0);
    add_link(f, f->org1, APP_A, N2, T0);
    assert_int_equal(f->ops->number_set_status(f->c, N3, "INACTIVE"), ERR_OK);

    assert_int_equal(f->ops->available_list(f->c, f->org1, num_cb, r), ERR_OK);
    assert_int_equal(r->n, 2);
    assert_true(r->nums[0].id == id4);
    assert_string_equal(r->nums[0].voip_number, N4);
    assert_string_equal(r->nums[0].provider, "exotel");
    assert_string_equal(r->nums[0].status, "ACTIVE");
    assert_true(r->nums[0].org_id == f->org1);
    assert_true(r->nums[1].id == id1);
    assert_string_equal(r->nums[1].voip_number, N1);

    /* Unlinked and enabled again: both back, in id order. */
    assert_int_equal(f->ops->link_delete(f->c, f->org1, APP_A, N2, T0 + 1, &miss), ERR_OK);
    assert_int_equal(f->ops->number_set_status(f->c, N3, "ACTIVE"), ERR_OK);
    memset(r, 0, sizeof(*r));
    assert_int_equal(f->ops->available_list(f->c, f->org1, num_cb, r), ERR_OK);
    assert_int_equal(r->n, 4);
    assert_true(r->nums[0].id == id4);
    assert_true(r->nums[1].id == id1);
    assert_true(r->nums[2].id == id2);
    assert_true(r->nums[3].id == id3);

    assert_int_equal(count_available(f, f->org2), 1);
    assert_int_equal(count_available(f, f->org2 + 100), 0);
    free(r);
}

/* ---- apps ---- */

/* The org's available numbers, their last digits in order: "123" for N1,
 * N2, N3. */
static void available_digits(struct fx *f, int64_t org, char *out, size_t cap)
{
    struct rows *r = rows_new();
    int i;

    assert_int_equal(f->ops->available_list(f->c, org, num_cb, r), ERR_OK);
    assert_true((size_t)r->n < cap);
    for (i = 0; i < r->n; i++)
        out[i] = r->nums[i].voip_number[strlen(r->nums[i].voip_number) - 1];
    out[r->n] = '\0';
    free(r);
}

#define ASSERT_AVAILABLE(f, want)                                                                  \
    do {                                                                                           \
        char got_[16];                                                                             \
        available_digits((f), (f)->org1, got_, sizeof(got_));                                      \
        assert_string_equal(got_, (want));                                                         \
    } while (0)

/* Available numbers read a flag on the number that the database keeps
 * with its link (migration 0009): right after every change of a link, in
 * the same transaction, and not at all when the change is refused. */
static void test_available_follows_links(void **state)
{
    struct fx *f = *state;
    struct store_link l;
    enum store_miss miss;

    add_number(f, f->org1, N1);
    add_number(f, f->org1, N2);
    add_number(f, f->org1, N3);
    add_app(f, APP_A, f->org1, T0);
    add_app(f, APP_B, f->org1, T0);
    ASSERT_AVAILABLE(f, "123");

    add_link(f, f->org1, APP_A, N1, T0);
    ASSERT_AVAILABLE(f, "23");
    /* Refused (linked elsewhere) and repeated links change nothing. */
    assert_int_equal(f->ops->link_create(f->c, f->org1, APP_B, N1, T0, &l), ERR_CONFLICT);
    ASSERT_AVAILABLE(f, "23");
    add_link(f, f->org1, APP_A, N1, T0 + 1);
    ASSERT_AVAILABLE(f, "23");

    assert_int_equal(f->ops->link_delete(f->c, f->org1, APP_A, N1, T0 + 2, &miss), ERR_OK);
    ASSERT_AVAILABLE(f, "123");
    /* An unlink that finds no link, or the wrong app, frees nothing. */
    add_link(f, f->org1, APP_B, N1, T0 + 3);
    add_link(f, f->org1, APP_B, N2, T0 + 3);
    assert_int_equal(f->ops->link_delete(f->c, f->org1, APP_A, N1, T0 + 4, &miss), ERR_NOT_FOUND);
    ASSERT_AVAILABLE(f, "3");

    /* Deleting an app frees all of its numbers, and only those. */
    add_link(f, f->org1, APP_A, N3, T0 + 5);
    ASSERT_AVAILABLE(f, "");
    assert_int_equal(f->ops->app_delete(f->c, f->org1, APP_B, T0 + 6), ERR_OK);
    ASSERT_AVAILABLE(f, "12");

    /* A linked number cannot be released; once unlinked it can, and a
     * number added again under the same e164 starts unlinked. */
    assert_int_equal(f->ops->number_remove(f->c, N3), ERR_CONFLICT);
    ASSERT_AVAILABLE(f, "12");
    assert_int_equal(f->ops->link_delete(f->c, f->org1, APP_A, N3, T0 + 7, &miss), ERR_OK);
    assert_int_equal(f->ops->number_remove(f->c, N3), ERR_OK);
    ASSERT_AVAILABLE(f, "12");
    add_number(f, f->org1, N3);
    ASSERT_AVAILABLE(f, "123");

    /* Status and link are apart: a number disabled while linked is not
     * available once unlinked, and is again once enabled. */
    add_link(f, f->org1, APP_A, N1, T0 + 8);
    assert_int_equal(f->ops->number_set_status(f->c, N1, "INACTIVE"), ERR_OK);
    assert_int_equal(f->ops->link_delete(f->c, f->org1, APP_A, N1, T0 + 9, &miss), ERR_OK);
    ASSERT_AVAILABLE(f, "23");
    assert_int_equal(f->ops->number_set_status(f->c, N1, "ACTIVE"), ERR_OK);
    ASSERT_AVAILABLE(f, "123");

    /* A batch rolled back leaves the flags as they were. */
    assert_int_equal(f->ops->batch_begin(f->c), ERR_OK);
    add_link(f, f->org1, APP_A, N2, T0 + 10);
    assert_int_equal(f->ops->batch_end(f->c, false), ERR_OK);
    ASSERT_AVAILABLE(f, "123");
}

static void test_app_create_get(void **state)
{
    struct fx *f = *state;
    struct store_app a, out;

    make_app(&a, APP_A, f->org1, T0);
    memcpy(a.name, "Caf\xc3\xa9 \"app\"", sizeof("Caf\xc3\xa9 \"app\""));
    memcpy(a.answer_method, "GET", 4);
    memcpy(a.hangup_url, "https://example.com/hangup", sizeof("https://example.com/hangup"));
    memcpy(a.fallback_answer_method, "GET", 4);
    a.created_by = 67890;
    assert_int_equal(f->ops->app_create(f->c, &a), ERR_OK);

    memset(&out, 'X', sizeof(out));
    assert_int_equal(f->ops->app_get(f->c, f->org1, APP_A, &out), ERR_OK);
    assert_string_equal(out.app_id, APP_A);
    assert_true(out.org_id == f->org1);
    assert_string_equal(out.name, "Caf\xc3\xa9 \"app\"");
    assert_string_equal(out.answer_url, "https://example.com/answer");
    assert_string_equal(out.answer_method, "GET");
    assert_string_equal(out.hangup_url, "https://example.com/hangup");
    assert_string_equal(out.hangup_method, "POST");
    assert_string_equal(out.fallback_answer_url, ""); /* null */
    assert_string_equal(out.fallback_answer_method, "GET");
    assert_string_equal(out.status, "ACTIVE");
    assert_true(out.created_by == 67890);
    assert_true(out.created_at == T0);
    assert_true(out.updated_at == 0);

    /* created_by 0 stays null. */
    add_app(f, APP_B, f->org1, T0);
    assert_int_equal(f->ops->app_get(f->c, f->org1, APP_B, &out), ERR_OK);
    assert_true(out.created_by == 0);

    /* Another org's app does not exist for the caller. */
    assert_int_equal(f->ops->app_get(f->c, f->org2, APP_A, &out), ERR_NOT_FOUND);
    assert_int_equal(f->ops->app_get(f->c, f->org1, APP_C, &out), ERR_NOT_FOUND);
    assert_int_equal(f->ops->app_get(f->c, f->org1, "", &out), ERR_NOT_FOUND);

    /* app_id is unique across orgs. */
    make_app(&a, APP_A, f->org2, T0);
    assert_int_equal(f->ops->app_create(f->c, &a), ERR_CONFLICT);
}

static void test_app_create_long_fields(void **state)
{
    struct fx *f = *state;
    struct store_app a, out;
    size_t i;

    make_app(&a, APP_A, f->org1, T0);
    for (i = 0; i < 100; i++)
        memcpy(a.name + 4 * i, "\xf0\x9f\x98\x80", 4);
    a.name[APP_NAME_MAX] = '\0';
    memcpy(a.answer_url, "https://example.com/", 20);
    memset(a.answer_url + 20, 'a', APP_URL_MAX - 20);
    a.answer_url[APP_URL_MAX] = '\0';
    assert_int_equal(f->ops->app_create(f->c, &a), ERR_OK);
    assert_int_equal(f->ops->app_get(f->c, f->org1, APP_A, &out), ERR_OK);
    assert_int_equal(strlen(out.name), APP_NAME_MAX);
    assert_string_equal(out.name, a.name);
    assert_int_equal(strlen(out.answer_url), APP_URL_MAX);
    assert_string_equal(out.answer_url, a.answer_url);
}

/* Newest first; ties: most recently created first. Only the org's apps. */
static void test_app_list_order(void **state)
{
    struct fx *f = *state;
    struct rows *r = rows_new();

    add_app(f, APP_A, f->org1, T0 + 10);
    add_app(f, APP_B, f->org1, T0 + 30);
    add_app(f, APP_C, f->org1, T0 + 10); /* same time as A, created later */
    add_app(f, "sfv_app_ddddddddddd4", f->org1, T0 + 20);
    add_app(f, "sfv_app_eeeeeeeeeee5", f->org2, T0 + 99);

    assert_int_equal(f->ops->app_list(f->c, f->org1, app_cb, r), ERR_OK);
    assert_int_equal(r->n, 4);
    assert_string_equal(r->apps[0].app_id, APP_B);
    assert_string_equal(r->apps[1].app_id, "sfv_app_ddddddddddd4");
    assert_string_equal(r->apps[2].app_id, APP_C);
    assert_string_equal(r->apps[3].app_id, APP_A);
    assert_string_equal(r->apps[0].name, "My Voice App");
    assert_true(r->apps[0].created_at == T0 + 30);

    memset(r, 0, sizeof(*r));
    assert_int_equal(f->ops->app_list(f->c, f->org2 + 100, app_cb, r), ERR_OK);
    assert_int_equal(r->n, 0);
    free(r);
}

/* INACTIVE apps are listed too. */
static void test_app_list_includes_inactive(void **state)
{
    struct fx *f = *state;
    struct rows *r = rows_new();
    struct store_app a;

    make_app(&a, APP_A, f->org1, T0);
    memcpy(a.status, "INACTIVE", 9);
    assert_int_equal(f->ops->app_create(f->c, &a), ERR_OK);
    assert_int_equal(f->ops->app_list(f->c, f->org1, app_cb, r), ERR_OK);
    assert_int_equal(r->n, 1);
    assert_string_equal(r->apps[0].status, "INACTIVE");
    free(r);
}

static void test_app_update(void **state)
{
    struct fx *f = *state;
    struct store_app_patch p;
    struct store_app out, got;

    add_app(f, APP_A, f->org1, T0);

    /* Only the name. */
    memset(&p, 0, sizeof(p));
    p.fields = APP_F_NAME;
    memcpy(p.vals.name, "Renamed", 8);
    memcpy(p.vals.answer_url, "http://ignored.com", sizeof("http://ignored.com"));
    assert_int_equal(f->ops->app_update(f->c, f->org1, APP_A, &p, T0 + 100, &out), ERR_OK);
    assert_string_equal(out.app_id, APP_A);
    assert_string_equal(out.name, "Renamed");
    assert_string_equal(out.answer_url, "https://example.com/answer");
    assert_string_equal(out.status, "ACTIVE");
    assert_true(out.created_at == T0);
    assert_true(out.updated_at == T0 + 100);
    assert_int_equal(f->ops->app_get(f->c, f->org1, APP_A, &got), ERR_OK);
    assert_string_equal(got.name, "Renamed");
    assert_string_equal(got.answer_url, "https://example.com/answer");
    assert_true(got.updated_at == T0 + 100);

    /* Every other field at once. */
    memset(&p, 0, sizeof(p));
    p.fields = APP_F_ANSWER_URL | APP_F_ANSWER_METHOD | APP_F_HANGUP_URL | APP_F_HANGUP_METHOD |
               APP_F_FALLBACK_URL | APP_F_FALLBACK_METHOD | APP_F_STATUS;
    memcpy(p.vals.answer_url, "http://a.com/1", 15);
    memcpy(p.vals.answer_method, "GET", 4);
    memcpy(p.vals.hangup_url, "http://a.com/2", 15);
    memcpy(p.vals.hangup_method, "GET", 4);
    memcpy(p.vals.fallback_answer_url, "http://a.com/3", 15);
    memcpy(p.vals.fallback_answer_method, "GET", 4);
    memcpy(p.vals.status, "INACTIVE", 9);
    assert_int_equal(f->ops->app_update(f->c, f->org1, APP_A, &p, T0 + 200, &out), ERR_OK);
    assert_string_equal(out.name, "Renamed");
    assert_string_equal(out.answer_url, "http://a.com/1");
    assert_string_equal(out.answer_method, "GET");
    assert_string_equal(out.hangup_url, "http://a.com/2");
    assert_string_equal(out.hangup_method, "GET");
    assert_string_equal(out.fallback_answer_url, "http://a.com/3");
    assert_string_equal(out.fallback_answer_method, "GET");
    assert_string_equal(out.status, "INACTIVE");
    assert_true(out.updated_at == T0 + 200);

    /* "" with the bit set removes a URL (null). */
    memset(&p, 0, sizeof(p));
    p.fields = APP_F_HANGUP_URL;
    assert_int_equal(f->ops->app_update(f->c, f->org1, APP_A, &p, T0 + 300, &out), ERR_OK);
    assert_string_equal(out.hangup_url, "");
    assert_string_equal(out.fallback_answer_url, "http://a.com/3");
    assert_int_equal(f->ops->app_get(f->c, f->org1, APP_A, &got), ERR_OK);
    assert_string_equal(got.hangup_url, "");
    assert_true(got.updated_at == T0 + 300);
}

/* No field: the app is returned unchanged and updated_at stays null. */
static void test_app_update_no_fields(void **state)
{
    struct fx *f = *state;
    struct store_app_patch p;
    struct store_app out;

    add_app(f, APP_A, f->org1, T0);
    memset(&p, 0, sizeof(p));
    memcpy(p.vals.name, "Ignored", 8);
    assert_int_equal(f->ops->app_update(f->c, f->org1, APP_A, &p, T0 + 100, &out), ERR_OK);
    assert_string_equal(out.name, "My Voice App");
    assert_true(out.updated_at == 0);
    assert_int_equal(f->ops->app_get(f->c, f->org1, APP_A, &out), ERR_OK);
    assert_true(out.updated_at == 0);
    /* And still NOT_FOUND for a missing app. */
    assert_int_equal(f->ops->app_update(f->c, f->org2, APP_A, &p, T0, &out), ERR_NOT_FOUND);
}

static void test_app_update_not_found(void **state)
{
    struct fx *f = *state;
    struct store_app_patch p;
    struct store_app out;

    add_app(f, APP_A, f->org1, T0);
    memset(&p, 0, sizeof(p));
    p.fields = APP_F_NAME;
    memcpy(p.vals.name, "Stolen", 7);
    assert_int_equal(f->ops->app_update(f->c, f->org2, APP_A, &p, T0 + 1, &out), ERR_NOT_FOUND);
    assert_int_equal(f->ops->app_update(f->c, f->org1, APP_B, &p, T0 + 1, &out), ERR_NOT_FOUND);
    assert_int_equal(f->ops->app_get(f->c, f->org1, APP_A, &out), ERR_OK);
    assert_string_equal(out.name, "My Voice App");
    assert_true(out.updated_at == 0);
}

static void test_app_delete(void **state)
{
    struct fx *f = *state;
    struct rows *r = rows_new();
    struct store_app out;
    struct store_link l;

    add_number(f, f->org1, N1);
    add_number(f, f->org1, N2);
    add_app(f, APP_A, f->org1, T0);
    add_app(f, APP_B, f->org1, T0);
    add_link(f, f->org1, APP_A, N1, T0);
    add_link(f, f->org1, APP_A, N2, T0);
    assert_int_equal(count_available(f, f->org1), 0);

    /* Another org cannot delete it. */
    assert_int_equal(f->ops->app_delete(f->c, f->org2, APP_A, T0 + 1), ERR_NOT_FOUND);
    assert_int_equal(f->ops->app_get(f->c, f->org1, APP_A, &out), ERR_OK);
    assert_int_equal(count_links(f, f->org1, APP_A), 2);

    assert_int_equal(f->ops->app_delete(f->c, f->org1, APP_A, T0 + 1), ERR_OK);
    assert_int_equal(f->ops->app_get(f->c, f->org1, APP_A, &out), ERR_NOT_FOUND);
    assert_int_equal(f->ops->app_delete(f->c, f->org1, APP_A, T0 + 2), ERR_NOT_FOUND);
    assert_int_equal(f->ops->link_list(f->c, f->org1, APP_A, link_cb, r), ERR_NOT_FOUND);

    /* Its numbers are free again and can be linked elsewhere. */
    assert_int_equal(count_available(f, f->org1), 2);
    assert_int_equal(f->ops->link_create(f->c, f->org1, APP_B, N1, T0 + 3, &l), ERR_OK);
    assert_string_equal(l.app_id, APP_B);
    /* The other app is untouched. */
    assert_int_equal(f->ops->app_get(f->c, f->org1, APP_B, &out), ERR_OK);
    free(r);
}

/* ---- links ---- */

static void test_link_create_new(void **state)
{
    struct fx *f = *state;
    struct store_link l;

    add_number(f, f->org1, N1);
    add_app(f, APP_A, f->org1, T0);
    memset(&l, 'X', sizeof(l));
    assert_int_equal(f->ops->link_create(f->c, f->org1, APP_A, N1, T0 + 5, &l), ERR_OK);
    assert_string_equal(l.app_id, APP_A);
    assert_string_equal(l.voip_number, N1);
    assert_true(l.org_id == f->org1);
    assert_string_equal(l.status, "ACTIVE");
    assert_true(l.created_at == T0 + 5);
    assert_true(l.updated_at == 0);
}

/* Checks in order: the app (NOT_FOUND), the number in the org's inventory
 * with status ACTIVE (INVALID), an ACTIVE link elsewhere (CONFLICT). */
static void test_link_create_check_order(void **state)
{
    struct fx *f = *state;
    struct store_link l;

    add_number(f, f->org1, N1);
    add_number(f, f->org1, N2);
    add_number(f, f->org2, N3);
    add_app(f, APP_A, f->org1, T0);
    add_app(f, APP_B, f->org1, T0);
    add_app(f, APP_C, f->org2, T0);
    add_link(f, f->org1, APP_B, N2, T0);

    /* A missing app wins over every number problem. */
    assert_int_equal(f->ops->link_create(f->c, f->org1, APP_C, N1, T0, &l), ERR_NOT_FOUND);
    assert_int_equal(f->ops->link_create(f->c, f->org1, "sfv_app_zzzzzzzzzzzz", N4, T0, &l),
                     ERR_NOT_FOUND);
    assert_int_equal(f->ops->link_create(f->c, f->org1, "sfv_app_zzzzzzzzzzzz", N2, T0, &l),
                     ERR_NOT_FOUND);
    /* Not in any inventory; in another org's. */
    assert_int_equal(f->ops->link_create(f->c, f->org1, APP_A, N4, T0, &l), ERR_INVALID);
    assert_int_equal(f->ops->link_create(f->c, f->org1, APP_A, N3, T0, &l), ERR_INVALID);
    /* Linked to another app. */
    assert_int_equal(f->ops->link_create(f->c, f->org1, APP_A, N2, T0, &l), ERR_CONFLICT);
    /* INACTIVE in inventory comes before the link check. */
    assert_int_equal(f->ops->number_set_status(f->c, N2, "INACTIVE"), ERR_OK);
    assert_int_equal(f->ops->link_create(f->c, f->org1, APP_A, N2, T0, &l), ERR_INVALID);
    assert_int_equal(f->ops->number_set_status(f->c, N1, "INACTIVE"), ERR_OK);
    assert_int_equal(f->ops->link_create(f->c, f->org1, APP_A, N1, T0, &l), ERR_INVALID);
    /* None of that created a link. */
    assert_int_equal(count_links(f, f->org1, APP_A), 0);
    assert_int_equal(count_links(f, f->org1, APP_B), 1);
}

/* Linking again to the same app returns the existing link unchanged. */
static void test_link_create_idempotent(void **state)
{
    struct fx *f = *state;
    struct store_link l;

    add_number(f, f->org1, N1);
    add_app(f, APP_A, f->org1, T0);
    add_link(f, f->org1, APP_A, N1, T0 + 5);
    memset(&l, 'X', sizeof(l));
    assert_int_equal(f->ops->link_create(f->c, f->org1, APP_A, N1, T0 + 999, &l), ERR_OK);
    assert_string_equal(l.app_id, APP_A);
    assert_string_equal(l.voip_number, N1);
    assert_true(l.org_id == f->org1);
    assert_string_equal(l.status, "ACTIVE");
    assert_true(l.created_at == T0 + 5);
    assert_true(l.updated_at == 0);
    assert_int_equal(count_links(f, f->org1, APP_A), 1);
}

/* An INACTIVE app takes links like an ACTIVE one (API.md section 3). */
static void test_link_inactive_app(void **state)
{
    struct fx *f = *state;
    struct store_app a;
    struct store_link l;

    add_number(f, f->org1, N1);
    make_app(&a, APP_A, f->org1, T0);
    memcpy(a.status, "INACTIVE", 9);
    assert_int_equal(f->ops->app_create(f->c, &a), ERR_OK);
    assert_int_equal(f->ops->link_create(f->c, f->org1, APP_A, N1, T0, &l), ERR_OK);
    assert_int_equal(count_links(f, f->org1, APP_A), 1);
}

static void test_link_list(void **state)
{
    struct fx *f = *state;
    struct rows *r = rows_new();
    enum store_miss miss;

    add_number(f, f->org1, N1);
    add_number(f, f->org1, N2);
    add_number(f, f->org1, N3);
    add_number(f, f->org1, N4);
    add_app(f, APP_A, f->org1, T0);
    add_app(f, APP_B, f->org1, T0);

    /* Missing app, another org's app. */
    assert_int_equal(f->ops->link_list(f->c, f->org1, APP_C, link_cb, r), ERR_NOT_FOUND);
    assert_int_equal(f->ops->link_list(f->c, f->org2, APP_A, link_cb, r), ERR_NOT_FOUND);
    assert_int_equal(r->n, 0);
    /* No links: an empty list. */
    assert_int_equal(f->ops->link_list(f->c, f->org1, APP_A, link_cb, r), ERR_OK);
    assert_int_equal(r->n, 0);

    add_link(f, f->org1, APP_A, N1, T0 + 10);
    add_link(f, f->org1, APP_A, N2, T0 + 30);
    add_link(f, f->org1, APP_A, N3, T0 + 10); /* same time as N1, created later */
    add_link(f, f->org1, APP_B, N4, T0 + 50);
    assert_int_equal(f->ops->link_list(f->c, f->org1, APP_A, link_cb, r), ERR_OK);
    assert_int_equal(r->n, 3);
    assert_string_equal(r->links[0].voip_number, N2);
    assert_string_equal(r->links[1].voip_number, N3);
    assert_string_equal(r->links[2].voip_number, N1);
    assert_string_equal(r->links[0].app_id, APP_A);
    assert_true(r->links[0].org_id == f->org1);
    assert_string_equal(r->links[0].status, "ACTIVE");
    assert_true(r->links[0].created_at == T0 + 30);
    assert_true(r->links[0].updated_at == 0);

    /* Unlinked ones are gone from the list. */
    assert_int_equal(f->ops->link_delete(f->c, f->org1, APP_A, N3, T0 + 60, &miss), ERR_OK);
    memset(r, 0, sizeof(*r));
    assert_int_equal(f->ops->link_list(f->c, f->org1, APP_A, link_cb, r), ERR_OK);
    assert_int_equal(r->n, 2);
    assert_string_equal(r->links[0].voip_number, N2);
    assert_string_equal(r->links[1].voip_number, N1);

    /* A callback error stops the walk. */
    memset(r, 0, sizeof(*r));
    r->stop_after = 1;
    assert_int_equal(f->ops->link_list(f->c, f->org1, APP_A, link_cb, r), ERR_INTERNAL);
    assert_int_equal(r->n, 1);
    free(r);
}

static void test_link_delete(void **state)
{
    struct fx *f = *state;
    enum store_miss miss;
    struct store_link l;

    add_number(f, f->org1, N1);
    add_number(f, f->org1, N2);
    add_app(f, APP_A, f->org1, T0);
    add_app(f, APP_B, f->org1, T0);
    add_app(f, APP_C, f->org2, T0);
    add_link(f, f->org1, APP_A, N1, T0);
    add_link(f, f->org1, APP_B, N2, T0);

    miss = STORE_MISS_NONE;
    assert_int_equal(f->ops->link_delete(f->c, f->org1, "sfv_app_zzzzzzzzzzzz", N1, T0, &miss),
                     ERR_NOT_FOUND);
    assert_int_equal(miss, STORE_MISS_APP);
    miss = STORE_MISS_NONE;
    assert_int_equal(f->ops->link_delete(f->c, f->org2, APP_A, N1, T0, &miss), ERR_NOT_FOUND);
    assert_int_equal(miss, STORE_MISS_APP);
    miss = STORE_MISS_NONE;
    assert_int_equal(f->ops->link_delete(f->c, f->org1, "", "", T0, &miss), ERR_NOT_FOUND);
    assert_int_equal(miss, STORE_MISS_APP);
    /* The app exists but the number is not linked to it. */
    miss = STORE_MISS_NONE;
    assert_int_equal(f->ops->link_delete(f->c, f->org1, APP_A, N2, T0, &miss), ERR_NOT_FOUND);
    assert_int_equal(miss, STORE_MISS_LINK);
    miss = STORE_MISS_NONE;
    assert_int_equal(f->ops->link_delete(f->c, f->org1, APP_A, N3, T0, &miss), ERR_NOT_FOUND);
    assert_int_equal(miss, STORE_MISS_LINK);
    miss = STORE_MISS_NONE;
    assert_int_equal(f->ops->link_delete(f->c, f->org2, APP_C, N1, T0, &miss), ERR_NOT_FOUND);
    assert_int_equal(miss, STORE_MISS_LINK);
    miss = STORE_MISS_NONE;
    assert_int_equal(f->ops->link_delete(f->c, f->org1, APP_A, "", T0, &miss), ERR_NOT_FOUND);
    assert_int_equal(miss, STORE_MISS_LINK);
    /* N2's link to B survived the attempt through A. */
    assert_int_equal(count_links(f, f->org1, APP_B), 1);

    miss = STORE_MISS_APP;
    assert_int_equal(f->ops->link_delete(f->c, f->org1, APP_A, N1, T0 + 1, &miss), ERR_OK);
    assert_int_equal(miss, STORE_MISS_NONE);
    assert_int_equal(count_links(f, f->org1, APP_A), 0);
    assert_int_equal(count_available(f, f->org1), 1);
    /* Twice: nothing left to unlink. */
    assert_int_equal(f->ops->link_delete(f->c, f->org1, APP_A, N1, T0 + 2, &miss), ERR_NOT_FOUND);
    assert_int_equal(miss, STORE_MISS_LINK);

    /* A new link after an unlink is a new link, with its own time. */
    assert_int_equal(f->ops->link_create(f->c, f->org1, APP_B, N1, T0 + 3, &l), ERR_OK);
    assert_string_equal(l.app_id, APP_B);
    assert_true(l.created_at == T0 + 3);
    assert_int_equal(f->ops->link_create(f->c, f->org1, APP_A, N1, T0 + 4, &l), ERR_CONFLICT);
}

/* The app_id argument is a string: an app whose id is shorter than
 * APP_ID_LEN must still link without reading past the caller's string
 * (visible under ASan: the id below lives in an exactly-sized heap block). */
static void test_link_create_short_app_id(void **state)
{
    struct fx *f = *state;
    struct store_link l;
    char *id = malloc(sizeof("app1"));

    assert_non_null(id);
    memcpy(id, "app1", sizeof("app1"));
    add_number(f, f->org1, N1);
    add_app(f, id, f->org1, T0);
    assert_int_equal(f->ops->link_create(f->c, f->org1, id, N1, T0, &l), ERR_OK);
    assert_string_equal(l.app_id, "app1");
    free(id);
}

/* ---- routing and calls ---- */

static void test_number_route(void **state)
{
    struct fx *f = *state;
    struct store_app a;
    char status[STATUS_MAX + 1];
    int64_t org = 0;

    add_number(f, f->org1, N1);
    add_number(f, f->org2, N2);
    make_app(&a, APP_A, f->org1, T0);
    memcpy(a.hangup_url, "https://example.com/h", sizeof("https://example.com/h"));
    memcpy(a.fallback_answer_method, "GET", 4);
    assert_int_equal(f->ops->app_create(f->c, &a), ERR_OK);

    /* Not in any inventory. */
    assert_int_equal(f->ops->number_route(f->c, N4, &org, status, &a), ERR_NOT_FOUND);
    /* In an inventory, without an ACTIVE link. */
    memset(&a, 'X', sizeof(a));
    assert_int_equal(f->ops->number_route(f->c, N2, &org, status, &a), ERR_OK);
    assert_true(org == f->org2);
    assert_string_equal(status, "ACTIVE");
    assert_string_equal(a.app_id, "");
    /* Linked: the whole app. */
    add_link(f, f->org1, APP_A, N1, T0);
    assert_int_equal(f->ops->number_route(f->c, N1, &org, status, &a), ERR_OK);
    assert_true(org == f->org1);
    assert_string_equal(a.app_id, APP_A);
    assert_true(a.org_id == f->org1);
    assert_string_equal(a.answer_url, "https://example.com/answer");
    assert_string_equal(a.hangup_url, "https://example.com/h");
    assert_string_equal(a.fallback_answer_url, "");
    assert_string_equal(a.fallback_answer_method, "GET");
    assert_string_equal(a.status, "ACTIVE");
    /* Whatever the app's and the number's status. */
    {
        struct store_app_patch patch;
        struct store_app out;

        memset(&patch, 0, sizeof(patch));
        patch.fields = APP_F_STATUS;
        memcpy(patch.vals.status, "INACTIVE", 9);
        assert_int_equal(f->ops->app_update(f->c, f->org1, APP_A, &patch, T0 + 1, &out), ERR_OK);
    }
    assert_int_equal(f->ops->number_set_status(f->c, N1, "INACTIVE"), ERR_OK);
    assert_int_equal(f->ops->number_route(f->c, N1, &org, status, &a), ERR_OK);
    assert_string_equal(status, "INACTIVE");
    assert_string_equal(a.app_id, APP_A);
    assert_string_equal(a.status, "INACTIVE");
    /* Unlinked: no app again; an INACTIVE link does not count. */
    {
        enum store_miss miss;

        assert_int_equal(f->ops->link_delete(f->c, f->org1, APP_A, N1, T0 + 2, &miss), ERR_OK);
    }
    assert_int_equal(f->ops->number_route(f->c, N1, &org, status, &a), ERR_OK);
    assert_string_equal(a.app_id, "");
}

static void make_call(struct store_call *k, int n, int64_t org, bool outbound)
{
    memset(k, 0, sizeof(*k));
    snprintf(k->call_uuid, sizeof(k->call_uuid), "00000000-0000-4000-8000-%012d", n);
    if (outbound)
        snprintf(k->request_uuid, sizeof(k->request_uuid), "sfv_ob_req_%012d", n);
    k->org_id = org;
    memcpy(k->app_id, APP_A, sizeof(APP_A));
    memcpy(k->from, N1, sizeof(N1));
    memcpy(k->to, N2, sizeof(N2));
    snprintf(k->direction, sizeof(k->direction), "%s", outbound ? "OUTBOUND" : "INBOUND");
    memcpy(k->status, "QUEUED", 7);
    k->created_at = T0 + n;
}

static void test_call_create_get_update(void **state)
{
    struct fx *f = *state;
    struct store_call k, got;

    make_call(&k, 1, f->org1, true);
    assert_int_equal(f->ops->call_create(f->c, &k), ERR_OK);
    /* Same call_uuid, or same request_uuid: taken. */
    assert_int_equal(f->ops->call_create(f->c, &k), ERR_CONFLICT);
    make_call(&got, 2, f->org1, true);
    memcpy(got.request_uuid, k.request_uuid, sizeof(k.request_uuid));
    assert_int_equal(f->ops->call_create(f->c, &got), ERR_CONFLICT);

    /* By either id; another org sees nothing. */
    memset(&got, 'X', sizeof(got));
    assert_int_equal(f->ops->call_get(f->c, f->org1, k.call_uuid, &got), ERR_OK);
    assert_string_equal(got.call_uuid, k.call_uuid);
    assert_string_equal(got.request_uuid, k.request_uuid);
    assert_true(got.org_id == f->org1);
    assert_string_equal(got.app_id, APP_A);
    assert_string_equal(got.from, N1);
    assert_string_equal(got.to, N2);
    assert_string_equal(got.direction, "OUTBOUND");
    assert_string_equal(got.status, "QUEUED");
    assert_true(got.started_at == 0 && got.answered_at == 0 && got.ended_at == 0);
    assert_true(got.duration == 0);
    assert_string_equal(got.hangup_cause, "");
    assert_true(got.created_at == T0 + 1);
    assert_true(got.seq > 0);
    /* No media yet: the RTP statistics read 0. */
    assert_true(got.rtp_packets_received == 0 && got.rtp_packets_lost == 0);
    assert_true(got.rtp_jitter_us == 0);
    assert_int_equal(f->ops->call_get(f->c, f->org1, k.request_uuid, &got), ERR_OK);
    assert_string_equal(got.call_uuid, k.call_uuid);
    assert_int_equal(f->ops->call_get(f->c, f->org2, k.call_uuid, &got), ERR_NOT_FOUND);
    assert_int_equal(f->ops->call_get(f->c, f->org1, "", &got), ERR_NOT_FOUND);

    /* The update sets the progress fields and nothing else. */
    memcpy(k.status, "COMPLETED", 10);
    k.started_at = T0 + 10;
    k.answered_at = T0 + 20;
    k.ended_at = T0 + 5020;
    k.duration = 5;
    memcpy(k.hangup_cause, "16", 3);
    k.rtp_packets_received = 4995;
    k.rtp_packets_lost = 5;
    k.rtp_jitter_us = 1210;
    memcpy(k.from, N3, sizeof(N3));
    k.org_id = f->org2;
    assert_int_equal(f->ops->call_update(f->c, &k), ERR_OK);
    assert_int_equal(f->ops->call_get(f->c, f->org1, k.call_uuid, &got), ERR_OK);
    assert_string_equal(got.status, "COMPLETED");
    assert_true(got.started_at == T0 + 10);
    assert_true(got.answered_at == T0 + 20);
    assert_true(got.ended_at == T0 + 5020);
    assert_true(got.duration == 5);
    assert_string_equal(got.hangup_cause, "16");
    assert_true(got.rtp_packets_received == 4995);
    assert_true(got.rtp_packets_lost == 5);
    assert_true(got.rtp_jitter_us == 1210);
    assert_string_equal(got.from, N1);
    assert_true(got.org_id == f->org1);

    make_call(&k, 9, f->org1, false);
    assert_int_equal(f->ops->call_update(f->c, &k), ERR_NOT_FOUND);
    /* Inbound: no request_uuid, and several of them may coexist. */
    assert_int_equal(f->ops->call_create(f->c, &k), ERR_OK);
    make_call(&k, 10, f->org1, false);
    /* A record created final (a refused call) keeps its statistics. */
    k.rtp_packets_received = 3;
    k.rtp_packets_lost = 1;
    k.rtp_jitter_us = 250;
    assert_int_equal(f->ops->call_create(f->c, &k), ERR_OK);
    assert_int_equal(f->ops->call_get(f->c, f->org1, k.call_uuid, &got), ERR_OK);
    assert_string_equal(got.request_uuid, "");
    assert_string_equal(got.direction, "INBOUND");
    assert_true(got.rtp_packets_received == 3 && got.rtp_packets_lost == 1);
    assert_true(got.rtp_jitter_us == 250);
}

static void test_call_list(void **state)
{
    struct fx *f = *state;
    struct store_call k;
    struct rows *r = rows_new();
    int i;

    for (i = 1; i <= 5; i++) {
        make_call(&k, i, f->org1, i % 2);
        k.rtp_packets_received = i * 100;
        k.rtp_packets_lost = i;
        k.rtp_jitter_us = i * 7;
        assert_int_equal(f->ops->call_create(f->c, &k), ERR_OK);
        make_call(&k, 100 + i, f->org2, true);
        assert_int_equal(f->ops->call_create(f->c, &k), ERR_OK);
    }
    /* Newest first, at most limit. */
    assert_int_equal(f->ops->call_list(f->c, f->org1, INT64_MAX, 3, call_cb, r), ERR_OK);
    assert_int_equal(r->n, 3);
    assert_true(r->calls[0].created_at == T0 + 5);
    assert_true(r->calls[1].created_at == T0 + 4);
    assert_true(r->calls[2].created_at == T0 + 3);
    assert_true(r->calls[0].seq > r->calls[1].seq && r->calls[1].seq > r->calls[2].seq);
    /* The next page starts below the last seq. */
    {
        int64_t before = r->calls[2].seq;

        memset(r, 0, sizeof(*r));
        assert_int_equal(f->ops->call_list(f->c, f->org1, before, 3, call_cb, r), ERR_OK);
    }
    assert_int_equal(r->n, 2);
    assert_true(r->calls[0].created_at == T0 + 2);
    assert_true(r->calls[1].created_at == T0 + 1);
    for (i = 0; i < r->n; i++) {
        assert_true(r->calls[i].org_id == f->org1);
        /* Listed with their statistics. */
        assert_true(r->calls[i].rtp_packets_received == (r->calls[i].created_at - T0) * 100);
        assert_true(r->calls[i].rtp_packets_lost == r->calls[i].created_at - T0);
        assert_true(r->calls[i].rtp_jitter_us == (r->calls[i].created_at - T0) * 7);
    }
    /* Before the oldest: nothing. */
    {
        int64_t before = r->calls[1].seq;

        memset(r, 0, sizeof(*r));
        assert_int_equal(f->ops->call_list(f->c, f->org1, before, 3, call_cb, r), ERR_OK);
    }
    assert_int_equal(r->n, 0);
    /* An org without calls; a callback error stops the walk. */
    assert_int_equal(f->ops->call_list(f->c, f->org1 + f->org2 + 1, INT64_MAX, 3, call_cb, r),
                     ERR_OK);
    assert_int_equal(r->n, 0);
    r->stop_after = 1;
    assert_int_equal(f->ops->call_list(f->c, f->org2, INT64_MAX, 10, call_cb, r), ERR_INTERNAL);
    assert_int_equal(r->n, 1);
    free(r);
}

/* ---- calls across nodes ---- */

#define TNOW (T0 + 100000) /* the reaping node's clock, in the reaps below */
#define SELF "n-self"
#define PROBE "n-probe" /* beats only to read the database's clock */

static void nap_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

static int64_t beat(struct fx *f, const char *node)
{
    int64_t t = 0;

    assert_int_equal(f->ops->node_beat(f->c, node, &t), ERR_OK);
    assert_true(t > 0);
    return t;
}

/* The database's clock now. */
static int64_t db_now(struct fx *f)
{
    return beat(f, PROBE);
}

/* Waits until the database's clock has passed t (10 s at most), so that
 * any statement from now on reads a later time than t. */
static int64_t db_after(struct fx *f, int64_t t)
{
    int64_t deadline = clock_mono_ms() + 10000, now;

    while ((now = db_now(f)) <= t) {
        assert_true(clock_mono_ms() < deadline);
        nap_ms(1);
    }
    return now;
}

/* Beats old, waits until the database's clock is gap_ms past that, then
 * beats young. Returns a threshold (ms) by which old is always older, and
 * young younger as long as it is used within the threshold of *young_at;
 * still_young says afterwards whether that held. A test that depends on
 * young being judged young, and finds it was not, tries again with a
 * wider gap only when still_young says the verdict proves nothing. */
static int64_t split_ages(struct fx *f, const char *old, const char *young, int64_t gap_ms,
                          int64_t *young_at)
{
    int64_t old_at = beat(f, old);

    (void)db_after(f, old_at + gap_ms - 1);
    *young_at = beat(f, young);
    return *young_at - old_at - 1;
}

static bool still_young(struct fx *f, int64_t young_at, int64_t threshold_ms)
{
    return db_now(f) - young_at <= threshold_ms;
}

static void fill(char *dst, size_t cap, char c)
{
    memset(dst, c, cap - 1);
    dst[cap - 1] = '\0';
}

/* A dialog with every field at its longest, so that none is cut. */
static void make_dialog(struct store_dialog *d, char c, int64_t cseq)
{
    fill(d->call_id, sizeof(d->call_id), c);
    memcpy(d->local_uri, "sip:", 4);
    fill(d->local_uri + 4, sizeof(d->local_uri) - 4, c);
    fill(d->local_tag, sizeof(d->local_tag), 'l');
    memcpy(d->remote_uri, "sip:+918000000002@carrier.example", 34);
    fill(d->remote_tag, sizeof(d->remote_tag), 'r');
    fill(d->remote_target, sizeof(d->remote_target), 't');
    fill(d->route_set, sizeof(d->route_set), 'p');
    memcpy(d->route_set, "<sip:10.0.0.1;lr>, <", 20);
    d->next_cseq = cseq;
}

static void assert_dialog(const struct store_dialog *got, const struct store_dialog *want)
{
    assert_string_equal(got->call_id, want->call_id);
    assert_string_equal(got->local_uri, want->local_uri);
    assert_string_equal(got->local_tag, want->local_tag);
    assert_string_equal(got->remote_uri, want->remote_uri);
    assert_string_equal(got->remote_tag, want->remote_tag);
    assert_string_equal(got->remote_target, want->remote_target);
    assert_string_equal(got->route_set, want->route_set);
    assert_true(got->next_cseq == want->next_cseq);
}

static void assert_no_dialog(const struct store_dialog *d)
{
    struct store_dialog none;

    memset(&none, 0, sizeof(none));
    assert_dialog(d, &none);
}

/* A call of node owner ("" for none) in status. */
static void add_call(struct fx *f, int n, const char *owner, const char *status,
                     int64_t answered_at)
{
    struct store_call k;

    make_call(&k, n, f->org1, n % 2);
    snprintf(k.node_id, sizeof(k.node_id), "%s", owner);
    snprintf(k.status, sizeof(k.status), "%s", status);
    k.started_at = T0 + n;
    k.answered_at = answered_at;
    if (answered_at)
        make_dialog(&k.dialog, (char)('a' + n % 26), 100 + n);
    assert_int_equal(f->ops->call_create(f->c, &k), ERR_OK);
}

static void get_call(struct fx *f, int n, struct store_call *out)
{
    char uuid[CALL_UUID_LEN + 1];

    snprintf(uuid, sizeof(uuid), "00000000-0000-4000-8000-%012d", n);
    assert_int_equal(f->ops->call_get(f->c, f->org1, uuid, out), ERR_OK);
}

static void assert_status(struct fx *f, int n, const char *status)
{
    struct store_call k;

    get_call(f, n, &k);
    assert_string_equal(k.status, status);
}

/* The call numbered n (make_call's n) among rows, or NULL. */
static const struct store_call *row_of(const struct rows *r, int n)
{
    char uuid[CALL_UUID_LEN + 1];
    int i;

    snprintf(uuid, sizeof(uuid), "00000000-0000-4000-8000-%012d", n);
    for (i = 0; i < r->n; i++)
        if (strcmp(r->calls[i].call_uuid, uuid) == 0)
            return &r->calls[i];
    return NULL;
}

/* The owner and the dialog are written by create, read back by get and
 * list; an update writes the dialog, never the owner. */
static void test_call_node_and_dialog(void **state)
{
    struct fx *f = *state;
    struct store_call k, got;
    struct store_dialog d;
    struct rows *r = rows_new();

    make_call(&k, 1, f->org1, true);
    memcpy(k.node_id, "node-a.1_x", 11);
    make_dialog(&k.dialog, 'x', 2);
    assert_int_equal(f->ops->call_create(f->c, &k), ERR_OK);
    get_call(f, 1, &got);
    assert_string_equal(got.node_id, "node-a.1_x");
    assert_dialog(&got.dialog, &k.dialog);

    make_dialog(&d, 'y', 3);
    k.dialog = d;
    memcpy(k.node_id, "node-b", 7);
    memcpy(k.status, "IN_PROGRESS", 12);
    assert_int_equal(f->ops->call_update(f->c, &k), ERR_OK);
    get_call(f, 1, &got);
    assert_string_equal(got.node_id, "node-a.1_x");
    assert_string_equal(got.status, "IN_PROGRESS");
    assert_dialog(&got.dialog, &d);
    /* The dialog is the whole of it, each time: one without a route set. */
    d.route_set[0] = '\0';
    d.next_cseq = 4;
    k.dialog = d;
    assert_int_equal(f->ops->call_update(f->c, &k), ERR_OK);
    get_call(f, 1, &got);
    assert_dialog(&got.dialog, &d);

    /* Without owner or dialog: "" and 0. */
    make_call(&k, 2, f->org1, false);
    assert_int_equal(f->ops->call_create(f->c, &k), ERR_OK);
    get_call(f, 2, &got);
    assert_string_equal(got.node_id, "");
    assert_no_dialog(&got.dialog);

    assert_int_equal(f->ops->call_list(f->c, f->org1, INT64_MAX, 10, call_cb, r), ERR_OK);
    assert_int_equal(r->n, 2);
    assert_string_equal(r->calls[0].node_id, "");
    assert_no_dialog(&r->calls[0].dialog);
    assert_string_equal(r->calls[1].node_id, "node-a.1_x");
    assert_dialog(&r->calls[1].dialog, &d);
    free(r);
}

/* Heartbeats are stamped with the database's clock, which goes forward. */
static void test_node_beat(void **state)
{
    struct fx *f = *state;
    int64_t t1, t2, t3, now = clock_now_ms();

    t1 = beat(f, "n-a");
    /* The same machine's clock, give or take. */
    assert_true(t1 > now - 60000 && t1 < now + 60000);
    t2 = db_after(f, t1);
    assert_true(t2 > t1);
    t3 = beat(f, "n-a");
    assert_true(t3 >= t2);
    assert_true(beat(f, "n-b") >= t3);
}

/* A dead node's live calls end, each once, with cause 38: answered ones
 * COMPLETED with their duration, the others FAILED; nothing else moves. */
static void test_node_reap(void **state)
{
    struct fx *f = *state;
    struct rows *r = rows_new();
    const struct store_call *k;
    struct store_call got;
    struct store_dialog d;
    int64_t t;

    (void)beat(f, "n-dead");
    t = beat(f, SELF);
    add_call(f, 1, "n-dead", "IN_PROGRESS", TNOW - 9500);
    add_call(f, 2, "n-dead", "RINGING", 0);
    add_call(f, 3, "n-dead", "QUEUED", 0);
    add_call(f, 4, "n-dead", "COMPLETED", T0 + 50);
    add_call(f, 5, SELF, "IN_PROGRESS", T0 + 60);
    add_call(f, 6, "n-ghost", "RINGING", 0); /* no heartbeat row: never judged */
    add_call(f, 7, "", "RINGING", 0);        /* no owner: never judged */
    add_call(f, 8, "n-dead", "NO_ANSWER", 0);
    add_call(f, 9, "n-dead", "IN_PROGRESS", TNOW + 3000); /* answered "after" now: 0 s */
    /* With dead_ms 0, a node is dead once the database's clock is past its
     * last beat: every node here, self too. */
    (void)db_after(f, t);
    assert_int_equal(f->ops->node_reap(f->c, SELF, 0, false, TNOW, call_cb, r), ERR_OK);
    assert_int_equal(r->n, 4);

    k = row_of(r, 1);
    assert_non_null(k);
    assert_string_equal(k->status, "COMPLETED");
    assert_string_equal(k->hangup_cause, "38");
    assert_true(k->ended_at == TNOW && k->duration == 9);
    assert_true(k->answered_at == TNOW - 9500 && k->started_at == T0 + 1);
    assert_string_equal(k->node_id, "n-dead");
    make_dialog(&d, 'b', 101);
    assert_dialog(&k->dialog, &d);
    for (int n = 2; n <= 3; n++) {
        k = row_of(r, n);
        assert_non_null(k);
        assert_string_equal(k->status, "FAILED");
        assert_string_equal(k->hangup_cause, "38");
        assert_true(k->ended_at == TNOW && k->duration == 0 && k->answered_at == 0);
        assert_no_dialog(&k->dialog);
    }
    k = row_of(r, 9);
    assert_non_null(k);
    assert_string_equal(k->status, "COMPLETED");
    assert_true(k->duration == 0);

    /* As stored. */
    get_call(f, 1, &got);
    assert_string_equal(got.status, "COMPLETED");
    assert_string_equal(got.hangup_cause, "38");
    assert_true(got.ended_at == TNOW && got.duration == 9);
    assert_dialog(&got.dialog, &d);
    assert_status(f, 2, "FAILED");
    assert_status(f, 3, "FAILED");
    get_call(f, 4, &got);
    assert_string_equal(got.status, "COMPLETED");
    assert_string_equal(got.hangup_cause, "");
    assert_true(got.ended_at == 0);
    assert_status(f, 5, "IN_PROGRESS");
    assert_status(f, 6, "RINGING");
    assert_status(f, 7, "RINGING");
    assert_status(f, 8, "NO_ANSWER");

    /* Nothing is ended twice. */
    memset(r, 0, sizeof(*r));
    assert_int_equal(f->ops->node_reap(f->c, SELF, 0, false, TNOW + 1, call_cb, r), ERR_OK);
    assert_int_equal(r->n, 0);

    /* At a SQLite start: every live call but self's, whoever owns it. */
    assert_int_equal(f->ops->node_reap(f->c, SELF, 0, true, TNOW + 2, call_cb, r), ERR_OK);
    assert_int_equal(r->n, 2);
    assert_non_null(row_of(r, 6));
    assert_non_null(row_of(r, 7));
    assert_string_equal(row_of(r, 6)->status, "FAILED");
    assert_true(row_of(r, 7)->ended_at == TNOW + 2);
    assert_status(f, 5, "IN_PROGRESS");
    memset(r, 0, sizeof(*r));
    assert_int_equal(f->ops->node_reap(f->c, SELF, 0, true, TNOW + 3, call_cb, r), ERR_OK);
    assert_int_equal(r->n, 0);
    get_call(f, 6, &got);
    assert_true(got.ended_at == TNOW + 2);

    /* A callback error is the reap's result; the calls stay ended. */
    add_call(f, 10, "n-other", "RINGING", 0);
    r->stop_after = 1;
    assert_int_equal(f->ops->node_reap(f->c, SELF, 0, true, TNOW, call_cb, r), ERR_INTERNAL);
    assert_int_equal(r->n, 1);
    assert_status(f, 10, "FAILED");

    /* A node restarted under its name ends its earlier run's calls. */
    memset(r, 0, sizeof(*r));
    assert_int_equal(f->ops->node_reap(f->c, SELF, -1, false, TNOW, call_cb, r), ERR_OK);
    assert_int_equal(r->n, 1);
    assert_non_null(row_of(r, 5));
    assert_status(f, 5, "COMPLETED");
    assert_string_equal(row_of(r, 5)->hangup_cause, "38");
    free(r);
}

/* A node that beats within dead_ms keeps its calls; one that does not
 * loses them, in the same reap. */
static void test_node_reap_live(void **state)
{
    struct fx *f = *state;
    struct rows *r = rows_new();
    char old[NODE_ID_MAX + 1], young[NODE_ID_MAX + 1];
    int64_t gap, dead_ms, young_at;
    int n = 1;

    for (gap = 250; gap <= 8000; gap *= 2, n += 2) {
        snprintf(old, sizeof(old), "n-old-%d", n);
        snprintf(young, sizeof(young), "n-young-%d", n);
        add_call(f, n, old, "RINGING", 0);
        add_call(f, n + 1, young, "IN_PROGRESS", T0);
        dead_ms = split_ages(f, old, young, gap, &young_at);
        memset(r, 0, sizeof(*r));
        /* A reaper whose own heartbeat is not fresh judges no one. */
        assert_int_equal(f->ops->node_reap(f->c, "n-never-beat", dead_ms, false, TNOW, call_cb, r),
                         ERR_OK);
        assert_int_equal(r->n, 0);
        assert_status(f, n, "RINGING");
        {
            int64_t t;

            assert_int_equal(f->ops->node_beat(f->c, SELF, &t), ERR_OK);
        }
        assert_int_equal(f->ops->node_reap(f->c, SELF, dead_ms, false, TNOW, call_cb, r), ERR_OK);
        /* The old node was dead, whatever the timing. */
        assert_true(r->n >= 1);
        assert_non_null(row_of(r, n));
        assert_status(f, n, "FAILED");
        if (r->n == 1) {
            assert_status(f, n + 1, "IN_PROGRESS");
            free(r);
            return;
        }
        /* The young one was judged dead too: only a stall of this process
         * longer than dead_ms excuses it. */
        assert_false(still_young(f, young_at, dead_ms));
    }
    fail_msg("the young node was judged dead at every gap");
}

/* Commands, as the engine sends them. */
#define CMDS_MAX 64
struct cmds {
    int n;
    int stop_after; /* 0: never; else ERR_INTERNAL on that one */
    char kind[CMDS_MAX][CMD_KIND_MAX + 1];
    char arg[CMDS_MAX][CMD_ARG_MAX + 1];
};

static enum err cmd_cb(void *ud, const char *kind, const char *arg)
{
    struct cmds *c = ud;

    assert_true(c->n < CMDS_MAX);
    snprintf(c->kind[c->n], sizeof(c->kind[0]), "%s", kind);
    snprintf(c->arg[c->n], sizeof(c->arg[0]), "%s", arg);
    c->n++;
    return c->stop_after && c->n == c->stop_after ? ERR_INTERNAL : ERR_OK;
}

#define HOUR_MS (3600 * 1000LL)
#define UUID1 "00000000-0000-4000-8000-000000000001"
#define UUID2 "00000000-0000-4000-8000-000000000002"

static struct cmds *take(struct fx *f, const char *node, int64_t max_age_ms)
{
    static struct cmds c;

    memset(&c, 0, sizeof(c));
    assert_int_equal(f->ops->cmd_take(f->c, node, max_age_ms, cmd_cb, &c), ERR_OK);
    return &c;
}

static void test_cmd_post_take(void **state)
{
    struct fx *f = *state;
    struct cmds *c, *stop = calloc(1, sizeof(*stop));
    char arg[CMD_ARG_MAX + 2], kind[CMD_KIND_MAX + 2];
    int i;

    assert_non_null(stop);
    assert_int_equal(f->ops->cmd_post(f->c, "n-a", 0, "hangup", UUID1), ERR_OK);
    assert_int_equal(f->ops->cmd_post(f->c, "n-b", 0, "hangup", UUID2), ERR_OK);
    assert_int_equal(f->ops->cmd_post(f->c, "n-a", 0, "app_deleted", APP_A), ERR_OK);
    /* Oldest first; each once. */
    c = take(f, "n-a", HOUR_MS);
    assert_int_equal(c->n, 2);
    assert_string_equal(c->kind[0], "hangup");
    assert_string_equal(c->arg[0], UUID1);
    assert_string_equal(c->kind[1], "app_deleted");
    assert_string_equal(c->arg[1], APP_A);
    assert_int_equal(take(f, "n-a", HOUR_MS)->n, 0);
    c = take(f, "n-b", HOUR_MS);
    assert_int_equal(c->n, 1);
    assert_string_equal(c->arg[0], UUID2);
    assert_int_equal(take(f, "n-c", HOUR_MS)->n, 0);

    /* More than one round's worth, in order. */
    for (i = 0; i < 50; i++) {
        snprintf(arg, sizeof(arg), "arg-%02d", i);
        assert_int_equal(f->ops->cmd_post(f->c, "n-a", 0, "hangup", arg), ERR_OK);
    }
    c = take(f, "n-a", HOUR_MS);
    assert_int_equal(c->n, 50);
    for (i = 0; i < 50; i++) {
        snprintf(arg, sizeof(arg), "arg-%02d", i);
        assert_string_equal(c->arg[i], arg);
    }

    /* A callback error ends the take, once the commands already removed
     * are handed out: none is lost, none comes twice. */
    for (i = 0; i < 3; i++)
        assert_int_equal(f->ops->cmd_post(f->c, "n-a", 0, "hangup", UUID1), ERR_OK);
    stop->stop_after = 1;
    assert_int_equal(f->ops->cmd_take(f->c, "n-a", HOUR_MS, cmd_cb, stop), ERR_INTERNAL);
    assert_int_equal(stop->n, 3);
    assert_int_equal(take(f, "n-a", HOUR_MS)->n, 0);
    free(stop);

    /* At the longest; one byte more does not fit what cmd_take hands out. */
    fill(kind, CMD_KIND_MAX + 1, 'k');
    fill(arg, CMD_ARG_MAX + 1, 'a');
    assert_int_equal(f->ops->cmd_post(f->c, "n-a", 0, kind, arg), ERR_OK);
    c = take(f, "n-a", HOUR_MS);
    assert_int_equal(c->n, 1);
    assert_string_equal(c->kind[0], kind);
    assert_string_equal(c->arg[0], arg);
    fill(kind, sizeof(kind), 'k');
    fill(arg, sizeof(arg), 'a');
    assert_int_equal(f->ops->cmd_post(f->c, "n-a", 0, kind, "x"), ERR_INVALID);
    assert_int_equal(f->ops->cmd_post(f->c, "n-a", 0, "hangup", arg), ERR_INVALID);
    assert_int_equal(take(f, "n-a", HOUR_MS)->n, 0);
}

/* To every live node, once each; not to a node whose heartbeat is older
 * than alive_ms, nor to one that never beat. */
static void test_cmd_broadcast(void **state)
{
    struct fx *f = *state;
    char old[NODE_ID_MAX + 1], a[NODE_ID_MAX + 1], b[NODE_ID_MAX + 1];
    int64_t gap, alive_ms, young_at;
    struct cmds *c;
    int n;

    /* Nobody beats yet: nobody gets it. */
    assert_int_equal(f->ops->cmd_post(f->c, NULL, HOUR_MS, "app_deleted", APP_A), ERR_OK);
    assert_int_equal(take(f, "n-never", HOUR_MS)->n, 0);

    for (gap = 250, n = 0; gap <= 8000; gap *= 2, n++) {
        snprintf(old, sizeof(old), "n-old-%d", n);
        snprintf(a, sizeof(a), "n-a-%d", n);
        snprintf(b, sizeof(b), "n-b-%d", n);
        alive_ms = split_ages(f, old, a, gap, &young_at);
        (void)beat(f, b);
        assert_int_equal(f->ops->cmd_post(f->c, NULL, alive_ms, "app_deleted", APP_B), ERR_OK);
        assert_int_equal(take(f, old, HOUR_MS)->n, 0);
        assert_int_equal(take(f, "n-never", HOUR_MS)->n, 0);
        c = take(f, b, HOUR_MS);
        assert_int_equal(c->n, 1);
        assert_string_equal(c->kind[0], "app_deleted");
        assert_string_equal(c->arg[0], APP_B);
        (void)take(f, PROBE, HOUR_MS); /* it beats too: alive or not, by the timing */
        c = take(f, a, HOUR_MS);
        if (c->n == 1) {
            assert_string_equal(c->arg[0], APP_B);
            return;
        }
        assert_int_equal(c->n, 0);
        assert_false(still_young(f, young_at, alive_ms));
    }
    fail_msg("the young node was judged gone at every gap");
}

/* Commands older than max_age_ms go without being handed out. */
static void test_cmd_max_age(void **state)
{
    struct fx *f = *state;
    struct cmds *c;

    assert_int_equal(f->ops->cmd_post(f->c, "n-a", 0, "hangup", UUID1), ERR_OK);
    /* Stored at a time no later than this, so older than 0 ms from the next. */
    (void)db_after(f, db_now(f));
    assert_int_equal(take(f, "n-a", 0)->n, 0);
    assert_int_equal(f->ops->cmd_post(f->c, "n-a", 0, "hangup", UUID2), ERR_OK);
    c = take(f, "n-a", HOUR_MS);
    assert_int_equal(c->n, 1);
    assert_string_equal(c->arg[0], UUID2);
}

/* SQLite only sleeps; PostgreSQL wakes on a post from any connection. */
static void test_cmd_wait_timeout(void **state)
{
    struct fx *f = *state;
    bool woke = true;
    int64_t t0 = clock_mono_ms();

    assert_int_equal(f->ops->cmd_wait(f->c, 120, &woke), ERR_OK);
    assert_false(woke);
    assert_true(clock_mono_ms() - t0 >= 119);
    woke = true;
    assert_int_equal(f->ops->cmd_wait(f->c, 0, &woke), ERR_OK);
    assert_false(woke);
}

struct poster {
    struct store_conn *c;
    int delay_ms;
};

static void *post_later(void *arg)
{
    struct poster *p = arg;

    nap_ms(p->delay_ms);
    if (p->c->ops->cmd_post(p->c, "n-x", 0, "hangup", UUID1) != ERR_OK)
        return (void *)1;
    return NULL;
}

/* Runs SQL on the server as psql, without output. */
static void psql_do(const char *sql)
{
    static char buf[1][SQL_MAX];

    assert_true(strlen(sql) < SQL_MAX);
    snprintf(buf[0], SQL_MAX, "%s", sql);
    assert_int_equal(psql(buf, 1), 0);
}

/* The name of the test's database: its URL's path. */
static void db_name(const struct fx *f, char name[DB_NAME_MAX + 1])
{
    const char *auth = strstr(f->url, "://") + 3;
    const char *path = auth + strcspn(auth, "/?");

    snprintf(name, DB_NAME_MAX + 1, "%.*s", (int)strcspn(path + 1, "?"), path + 1);
}

static void test_cmd_wait_pg(void **state)
{
    struct fx *f = *state;
    struct store_conn *c2 = NULL;
    struct poster p;
    pthread_t th;
    void *res;
    char name[DB_NAME_MAX + 1], sql[SQL_MAX];
    bool woke = false;
    int64_t t0;

    if (!be.pg)
        skip();
    assert_int_equal(store_conn_open(f->s, &c2), ERR_OK);
    /* Listening starts with the first wait. */
    assert_int_equal(f->ops->cmd_wait(f->c, 50, &woke), ERR_OK);
    assert_false(woke);
    /* A post from another connection (another node) wakes it... */
    assert_int_equal(f->ops->cmd_post(c2, "n-x", 0, "hangup", UUID1), ERR_OK);
    t0 = clock_mono_ms();
    assert_int_equal(f->ops->cmd_wait(f->c, 10000, &woke), ERR_OK);
    assert_true(woke);
    assert_true(clock_mono_ms() - t0 < 5000);
    /* ...once. */
    assert_int_equal(f->ops->cmd_wait(f->c, 50, &woke), ERR_OK);
    assert_false(woke);
    /* A broadcast wakes it too, and so does a post while it waits. */
    (void)beat(f, "n-x");
    assert_int_equal(f->ops->cmd_post(c2, NULL, HOUR_MS, "app_deleted", APP_A), ERR_OK);
    assert_int_equal(f->ops->cmd_wait(f->c, 10000, &woke), ERR_OK);
    assert_true(woke);
    p.c = c2;
    p.delay_ms = 100;
    assert_int_equal(pthread_create(&th, NULL, post_later, &p), 0);
    assert_int_equal(f->ops->cmd_wait(f->c, 10000, &woke), ERR_OK);
    assert_int_equal(pthread_join(th, &res), 0);
    assert_null(res);
    assert_true(woke);
    assert_int_equal(take(f, "n-x", HOUR_MS)->n, 3);

    /* The server ends every session of this database (as a restart
     * would): the next wait connects again and listens anew. */
    db_name(f, name);
    snprintf(sql, sizeof(sql),
             "DO $$ BEGIN PERFORM pg_terminate_backend(pid, 10000) FROM pg_stat_activity "
             "WHERE datname = '%s'; END $$",
             name);
    psql_do(sql);
    assert_int_equal(f->ops->cmd_wait(f->c, 50, &woke), ERR_OK);
    assert_false(woke);
    assert_int_equal(f->ops->cmd_post(c2, "n-x", 0, "hangup", UUID2), ERR_OK);
    assert_int_equal(f->ops->cmd_wait(f->c, 10000, &woke), ERR_OK);
    assert_true(woke);
    store_conn_close(c2);
}

/* Two nodes reaping the same dead node at once end each call once. */
#define RACE_CALLS 40
struct racer {
    struct store_conn *c;
    pthread_barrier_t *go;
    const char *self;
    int n;
    int seen[RACE_CALLS];
    enum err e;
};

static enum err race_cb(void *ud, const struct store_call *k)
{
    struct racer *r = ud;
    long n = strtol(k->call_uuid + 24, NULL, 10) % 1000;

    if (n >= 0 && n < RACE_CALLS)
        r->seen[n]++;
    r->n++;
    return ERR_OK;
}

static void *race(void *arg)
{
    struct racer *r = arg;

    pthread_barrier_wait(r->go);
    r->e = r->c->ops->node_reap(r->c, r->self, 0, false, TNOW, race_cb, r);
    return NULL;
}

static void test_node_reap_race(void **state)
{
    struct fx *f = *state;
    struct racer x, y;
    pthread_barrier_t go;
    pthread_t tx, ty;
    int round, i;
    int64_t t;

    if (!be.pg)
        skip();
    memset(&x, 0, sizeof(x));
    memset(&y, 0, sizeof(y));
    assert_int_equal(store_conn_open(f->s, &x.c), ERR_OK);
    assert_int_equal(store_conn_open(f->s, &y.c), ERR_OK);
    x.self = "n-x";
    y.self = "n-y";
    for (round = 0; round < 5; round++) {
        for (i = 0; i < RACE_CALLS; i++)
            add_call(f, round * 1000 + i, "n-dead", i % 3 ? "IN_PROGRESS" : "RINGING",
                     i % 3 ? T0 : 0);
        t = beat(f, "n-dead");
        (void)db_after(f, t);
        (void)beat(f, "n-x"); /* the reapers' own heartbeats are fresh */
        (void)beat(f, "n-y");
        x.n = y.n = 0;
        memset(x.seen, 0, sizeof(x.seen));
        memset(y.seen, 0, sizeof(y.seen));
        assert_int_equal(pthread_barrier_init(&go, NULL, 2), 0);
        x.go = y.go = &go;
        assert_int_equal(pthread_create(&tx, NULL, race, &x), 0);
        assert_int_equal(pthread_create(&ty, NULL, race, &y), 0);
        assert_int_equal(pthread_join(tx, NULL), 0);
        assert_int_equal(pthread_join(ty, NULL), 0);
        pthread_barrier_destroy(&go);
        assert_int_equal(x.e, ERR_OK);
        assert_int_equal(y.e, ERR_OK);
        assert_int_equal(x.n + y.n, RACE_CALLS);
        for (i = 0; i < RACE_CALLS; i++)
            assert_int_equal(x.seen[i] + y.seen[i], 1);
    }
    store_conn_close(x.c);
    store_conn_close(y.c);
}

/* Forks a process that opens url and tries to hold it; its exit status
 * says what it got: 0 ERR_OK, 1 ERR_CONFLICT naming want_holder, 2 else. */
static int hold_in_child(const char *url, long want_holder)
{
    struct store *s = NULL;
    long holder = -1;
    int status;
    enum err e;
    pid_t pid = fork();

    assert_true(pid >= 0);
    if (pid == 0) {
        if (store_open(url, &s) != ERR_OK)
            _exit(3);
        e = store_hold(s, &holder);
        if (e == ERR_OK)
            _exit(holder == 0 ? 0 : 2);
        _exit(e == ERR_CONFLICT && holder == want_holder ? 1 : 2);
    }
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    return WEXITSTATUS(status);
}

/* A SQLite file is held by one process at a time; PostgreSQL and private
 * in-memory databases are never held. */
static void test_store_hold(void **state)
{
    struct fx *f = *state;
    char dir[] = "/tmp/sfvopi-hold-XXXXXX", url[URL_MAX], path[URL_MAX], text[32];
    static const char *const files[] = {"db.sqlite-serve.lock", "db.sqlite-wal", "db.sqlite-shm",
                                        "db.sqlite"};
    struct store *s = NULL;
    struct stat st;
    long holder = -1;
    ssize_t n;
    size_t i;
    int fd;

    assert_int_equal(store_hold(f->s, &holder), ERR_OK);
    assert_true(holder == 0);

    assert_non_null(mkdtemp(dir));
    snprintf(url, sizeof(url), "sqlite:%s/db.sqlite", dir);
    assert_int_equal(store_open(url, &s), ERR_OK);
    /* Opening is not holding (the admin commands only open). */
    assert_int_equal(hold_in_child(url, 0), 0);
    assert_int_equal(store_hold(s, &holder), ERR_OK);
    assert_int_equal(store_hold(s, &holder), ERR_OK); /* held already */
    assert_int_equal(hold_in_child(url, (long)getpid()), 1);
    /* The lock file names the holder, and is the owner's alone. */
    snprintf(path, sizeof(path), "%s/db.sqlite-serve.lock", dir);
    fd = open(path, O_RDONLY | O_CLOEXEC);
    assert_true(fd >= 0);
    n = read(fd, text, sizeof(text) - 1);
    close(fd);
    assert_true(n > 0);
    text[n] = '\0';
    assert_true(strtol(text, NULL, 10) == (long)getpid());
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    /* Let go by store_free. */
    store_free(s);
    assert_int_equal(hold_in_child(url, 0), 0);

    for (i = 0; i < sizeof(files) / sizeof(files[0]); i++) {
        snprintf(path, sizeof(path), "%s/%s", dir, files[i]);
        (void)unlink(path);
    }
    assert_int_equal(rmdir(dir), 0);
}

/* ---- batches ---- */

/* Committed: every operation of the batch stays, and one that failed inside
 * it undid only itself (on PostgreSQL an error would otherwise abort the
 * whole transaction, and every later operation with it). */
static void test_batch_commit(void **state)
{
    struct fx *f = *state;
    unsigned char h[KEY_HASH_LEN];
    struct store_key k;
    struct store_org o;
    struct rows *r = rows_new();
    int64_t org3 = 0, id = 0, n = -1;

    memset(h, 7, sizeof(h));
    assert_int_equal(f->ops->batch_begin(f->c), ERR_OK);
    assert_int_equal(f->ops->org_create(f->c, "Org Three", T0 + 2, &org3), ERR_OK);
    assert_true(org3 > f->org2);
    add_number(f, org3, N1);
    /* Failures of each kind: a unique key, a foreign key, a missing row. */
    assert_int_equal(f->ops->number_add(f->c, f->org1, N1, "exotel", T0, &id), ERR_CONFLICT);
    make_key(&k, f->org2 + 100, 0, "", "sfvk_EEEEEEE", T0);
    assert_int_equal(f->ops->key_create(f->c, &k, h, &id), ERR_NOT_FOUND);
    assert_int_equal(f->ops->number_set_status(f->c, N4, "INACTIVE"), ERR_NOT_FOUND);
    /* The batch goes on, and sees its own work. */
    add_number(f, org3, N2);
    add_app(f, APP_A, org3, T0);
    add_link(f, org3, APP_A, N2, T0);
    assert_int_equal(f->ops->org_get(f->c, org3, &o), ERR_OK);
    assert_string_equal(o.name, "Org Three");
    assert_int_equal(f->ops->batch_end(f->c, true), ERR_OK);

    assert_int_equal(f->ops->org_count(f->c, &n), ERR_OK);
    assert_true(n == 3);
    assert_int_equal(f->ops->number_list(f->c, org3, num_cb, r), ERR_OK);
    assert_int_equal(r->n, 2);
    assert_string_equal(r->nums[0].voip_number, N1);
    assert_string_equal(r->nums[1].voip_number, N2);
    assert_string_equal(r->nums[1].linked_app_id, APP_A);
    memset(r, 0, sizeof(*r));
    assert_int_equal(f->ops->key_list(f->c, f->org2 + 100, key_cb, r), ERR_OK);
    assert_int_equal(r->n, 0);
    free(r);
    /* And the connection is back to one transaction per operation. */
    add_number(f, f->org1, N3);
    assert_int_equal(f->ops->number_remove(f->c, N3), ERR_OK);
}

/* Not committed: none of the batch's operations happened. */
static void test_batch_rollback(void **state)
{
    struct fx *f = *state;
    struct store_app out;
    int64_t org3 = 0, n = -1;

    assert_int_equal(f->ops->batch_begin(f->c), ERR_OK);
    assert_int_equal(f->ops->org_create(f->c, "Org Three", T0 + 2, &org3), ERR_OK);
    add_number(f, f->org1, N1);
    add_app(f, APP_A, f->org1, T0);
    add_link(f, f->org1, APP_A, N1, T0);
    assert_int_equal(f->ops->batch_end(f->c, false), ERR_OK);

    assert_int_equal(f->ops->org_count(f->c, &n), ERR_OK);
    assert_true(n == 2);
    assert_int_equal(f->ops->app_get(f->c, f->org1, APP_A, &out), ERR_NOT_FOUND);
    assert_int_equal(count_available(f, f->org1), 0);
    assert_int_equal(f->ops->number_remove(f->c, N1), ERR_NOT_FOUND);
    /* What the batch took is free again. */
    add_number(f, f->org1, N1);
    add_app(f, APP_A, f->org1, T0);
}

/* A batch inside a batch, and an end without a begin, are ERR_INTERNAL;
 * the open batch is not disturbed by the refused begin. */
static void test_batch_misuse(void **state)
{
    struct fx *f = *state;
    int64_t n = -1;

    assert_int_equal(f->ops->batch_end(f->c, true), ERR_INTERNAL);
    assert_int_equal(f->ops->batch_end(f->c, false), ERR_INTERNAL);
    assert_int_equal(f->ops->batch_begin(f->c), ERR_OK);
    add_number(f, f->org1, N1);
    assert_int_equal(f->ops->batch_begin(f->c), ERR_INTERNAL);
    add_number(f, f->org1, N2);
    assert_int_equal(f->ops->batch_end(f->c, true), ERR_OK);
    assert_int_equal(f->ops->batch_end(f->c, true), ERR_INTERNAL);
    assert_int_equal(count_available(f, f->org1), 2);
    assert_int_equal(f->ops->org_count(f->c, &n), ERR_OK);
    assert_true(n == 2);
}

/* ---- idempotency keys (AGENT.md section 5) ---- */

#define HASH_A "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
#define HASH_B "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb"

/* The first claim holds the key; the others see it PENDING with the first
 * request's hash, then DONE with the kept answer. Keys are per org. */
static void test_idem_claim_finish(void **state)
{
    struct fx *f = *state;
    struct store_idem *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
    int64_t n = -1;

    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(f->ops->idem_claim(f->c, f->org1, "k 1", HASH_A, a), ERR_OK);
    assert_int_equal(a->state, STORE_IDEM_CLAIMED);
    assert_true(a->claimed_at > 0);
    assert_int_equal(f->ops->idem_claim(f->c, f->org1, "k 1", HASH_B, b), ERR_OK);
    assert_int_equal(b->state, STORE_IDEM_PENDING);
    assert_string_equal(b->req_hash, HASH_A);
    /* Another org's key of the same name is another key. */
    assert_int_equal(f->ops->idem_claim(f->c, f->org2, "k 1", HASH_B, b), ERR_OK);
    assert_int_equal(b->state, STORE_IDEM_CLAIMED);
    /* Only the claim's own stamp finishes it. */
    assert_int_equal(f->ops->idem_finish(f->c, f->org1, "k 1", a->claimed_at + 1, 200, "{}"),
                     ERR_NOT_FOUND);
    assert_int_equal(f->ops->idem_finish(f->c, f->org1, "k 1", a->claimed_at, 200, "{\"x\":1}"),
                     ERR_OK);
    assert_int_equal(f->ops->idem_finish(f->c, f->org1, "k 1", a->claimed_at, 200, "{}"),
                     ERR_NOT_FOUND); /* no longer PENDING */
    assert_int_equal(f->ops->idem_claim(f->c, f->org1, "k 1", HASH_A, b), ERR_OK);
    assert_int_equal(b->state, STORE_IDEM_DONE);
    assert_int_equal(b->status, 200);
    assert_string_equal(b->body, "{\"x\":1}");
    assert_string_equal(b->req_hash, HASH_A);
    /* A done key is never released. */
    assert_int_equal(f->ops->idem_release(f->c, f->org1, "k 1", a->claimed_at), ERR_NOT_FOUND);
    /* Nothing is a day old yet. */
    assert_int_equal(f->ops->idem_purge(f->c, 10, &n), ERR_OK);
    assert_true(n == 0);
    free(a);
    free(b);
}

/* A released key is free again; a body past IDEM_BODY_MAX is not kept. */
static void test_idem_release(void **state)
{
    struct fx *f = *state;
    struct store_idem *a = calloc(1, sizeof(*a)), *b = calloc(1, sizeof(*b));
    char *big = malloc(IDEM_BODY_MAX + 2);

    assert_non_null(a);
    assert_non_null(b);
    assert_non_null(big);
    memset(big, 'x', IDEM_BODY_MAX + 1);
    big[IDEM_BODY_MAX + 1] = '\0';
    assert_int_equal(f->ops->idem_claim(f->c, f->org1, "k2", HASH_A, a), ERR_OK);
    assert_int_equal(a->state, STORE_IDEM_CLAIMED);
    assert_int_equal(f->ops->idem_finish(f->c, f->org1, "k2", a->claimed_at, 400, big),
                     ERR_TOO_LARGE);
    assert_int_equal(f->ops->idem_release(f->c, f->org1, "k2", a->claimed_at), ERR_OK);
    assert_int_equal(f->ops->idem_release(f->c, f->org1, "k2", a->claimed_at), ERR_NOT_FOUND);
    assert_int_equal(f->ops->idem_claim(f->c, f->org1, "k2", HASH_B, b), ERR_OK);
    assert_int_equal(b->state, STORE_IDEM_CLAIMED);
    /* The longest kept body comes back whole. */
    big[IDEM_BODY_MAX] = '\0';
    assert_int_equal(f->ops->idem_finish(f->c, f->org1, "k2", b->claimed_at, 400, big), ERR_OK);
    assert_int_equal(f->ops->idem_claim(f->c, f->org1, "k2", HASH_B, a), ERR_OK);
    assert_int_equal(a->state, STORE_IDEM_DONE);
    assert_int_equal(a->status, 400);
    assert_string_equal(a->body, big);
    free(big);
    free(a);
    free(b);
}

/* Claims of one key from several connections at one instant (PostgreSQL:
 * the nodes' case): exactly one holds it, the others see it PENDING or
 * DONE, none fails. */
#define IDEM_RACERS 8
#define IDEM_ROUNDS 20

struct idem_racer {
    struct store_conn *c;
    pthread_barrier_t *go;
    int64_t org;
    char key[32];
    struct store_idem got;
    enum err e;
};

static void *idem_race(void *arg)
{
    struct idem_racer *r = arg;

    pthread_barrier_wait(r->go);
    r->e = r->c->ops->idem_claim(r->c, r->org, r->key, HASH_A, &r->got);
    if (r->e == ERR_OK && r->got.state == STORE_IDEM_CLAIMED)
        r->e = r->c->ops->idem_finish(r->c, r->org, r->key, r->got.claimed_at, 200, "{}");
    return NULL;
}

static void test_idem_claim_race(void **state)
{
    struct fx *f = *state;
    struct idem_racer *r;
    pthread_t t[IDEM_RACERS];
    pthread_barrier_t go;
    int round, i, claimed;

    if (!be.pg)
        skip();
    r = calloc(IDEM_RACERS, sizeof(*r));
    assert_non_null(r);
    for (i = 0; i < IDEM_RACERS; i++)
        assert_int_equal(store_conn_open(f->s, &r[i].c), ERR_OK);
    for (round = 0; round < IDEM_ROUNDS; round++) {
        assert_int_equal(pthread_barrier_init(&go, NULL, IDEM_RACERS), 0);
        for (i = 0; i < IDEM_RACERS; i++) {
            r[i].go = &go;
            r[i].org = f->org1;
            snprintf(r[i].key, sizeof(r[i].key), "race-%d", round);
            assert_int_equal(pthread_create(&t[i], NULL, idem_race, &r[i]), 0);
        }
        claimed = 0;
        for (i = 0; i < IDEM_RACERS; i++) {
            assert_int_equal(pthread_join(t[i], NULL), 0);
            assert_int_equal(r[i].e, ERR_OK);
            if (r[i].got.state == STORE_IDEM_CLAIMED)
                claimed++;
            else
                assert_string_equal(r[i].got.req_hash, HASH_A);
        }
        pthread_barrier_destroy(&go);
        assert_int_equal(claimed, 1);
    }
    for (i = 0; i < IDEM_RACERS; i++)
        store_conn_close(r[i].c);
    free(r);
}

/* ---- outbound pacing (AGENT.md section 6) ---- */

/* The caps are optional app fields: created, read, set and cleared. */
static void test_app_pacing_fields(void **state)
{
    struct fx *f = *state;
    struct store_app_patch p;
    struct store_app a, got;

    make_app(&a, APP_A, f->org1, T0);
    a.max_concurrent_calls = 5;
    assert_int_equal(f->ops->app_create(f->c, &a), ERR_OK);
    assert_int_equal(f->ops->app_get(f->c, f->org1, APP_A, &got), ERR_OK);
    assert_true(got.max_concurrent_calls == 5 && got.calls_per_second == 0);
    memset(&p, 0, sizeof(p));
    p.fields = APP_F_CPS;
    p.vals.calls_per_second = 2;
    assert_int_equal(f->ops->app_update(f->c, f->org1, APP_A, &p, T0 + 1, &got), ERR_OK);
    assert_true(got.max_concurrent_calls == 5 && got.calls_per_second == 2);
    /* A patch of other fields leaves them; null (0) clears one. */
    p.fields = APP_F_NAME | APP_F_MAX_CONCURRENT;
    memcpy(p.vals.name, "Paced", 6);
    p.vals.max_concurrent_calls = 0;
    assert_int_equal(f->ops->app_update(f->c, f->org1, APP_A, &p, T0 + 2, &got), ERR_OK);
    assert_true(got.max_concurrent_calls == 0 && got.calls_per_second == 2);
    assert_string_equal(got.name, "Paced");
}

static void enqueue_call(struct fx *f, int n, int64_t want_pos)
{
    struct store_call k;
    int64_t pos = -1;
    char req[32];

    make_call(&k, n, f->org1, true);
    snprintf(req, sizeof(req), "{\"n\":%d}", n);
    assert_int_equal(f->ops->call_enqueue(f->c, &k, req, 3, &pos), ERR_OK);
    assert_true(pos == want_pos);
}

static enum err count_cb(void *ud, const struct store_call *k)
{
    int *n = ud;

    assert_string_equal(k->status, "CANCELED");
    assert_string_equal(k->hangup_cause, "16");
    (*n)++;
    return ERR_OK;
}

/* A queue: in order, capped, positions, claims under both caps, cancels
 * that end each waiting call once, and waiting calls no reap ends. */
static void test_pace_queue(void **state)
{
    struct fx *f = *state;
    struct store_app_patch p;
    struct store_app a;
    struct store_call k, got;
    char ids[4][APP_ID_LEN + 1];
    char req[QUEUE_REQ_MAX + 1];
    int64_t pos = 0, wait = 0;
    bool claimed = false;
    int n = 0;

    make_app(&a, APP_A, f->org1, T0);
    a.max_concurrent_calls = 1;
    assert_int_equal(f->ops->app_create(f->c, &a), ERR_OK);
    enqueue_call(f, 1, 1);
    enqueue_call(f, 2, 2);
    enqueue_call(f, 3, 3);
    make_call(&k, 4, f->org1, true);
    assert_int_equal(f->ops->call_enqueue(f->c, &k, "{}", 3, &pos), ERR_RATE_LIMITED);
    assert_true(pos == 3);
    assert_int_equal(f->ops->call_get(f->c, f->org1, k.call_uuid, &got), ERR_NOT_FOUND);
    /* A waiting call is QUEUED without an owner. */
    make_call(&k, 2, f->org1, true);
    assert_int_equal(f->ops->call_get(f->c, f->org1, k.call_uuid, &got), ERR_OK);
    assert_string_equal(got.status, "QUEUED");
    assert_string_equal(got.node_id, "");
    assert_int_equal(f->ops->call_queue_position(f->c, k.call_uuid, &pos), ERR_OK);
    assert_true(pos == 2);
    assert_int_equal(f->ops->pace_apps(f->c, ids, 4, &n), ERR_OK);
    assert_int_equal(n, 1);
    assert_string_equal(ids[0], APP_A);
    /* No reap ends a waiting call, even on SQLite at a start. */
    n = 0;
    assert_int_equal(f->ops->node_reap(f->c, "*", 0, true, TNOW, count_cb, &n), ERR_OK);
    assert_int_equal(n, 0);

    /* The head goes first, with its request; the cap of 1 holds the next. */
    assert_int_equal(
        f->ops->pace_claim(f->c, APP_A, "n-1", &got, req, sizeof(req), &claimed, &wait), ERR_OK);
    assert_true(claimed);
    make_call(&k, 1, f->org1, true);
    assert_string_equal(got.call_uuid, k.call_uuid);
    assert_string_equal(req, "{\"n\":1}");
    assert_int_equal(f->ops->call_get(f->c, f->org1, k.call_uuid, &got), ERR_OK);
    assert_string_equal(got.node_id, "n-1");
    assert_int_equal(f->ops->call_queue_position(f->c, k.call_uuid, &pos), ERR_OK);
    assert_true(pos == 0);
    make_call(&k, 2, f->org1, true);
    assert_int_equal(f->ops->call_queue_position(f->c, k.call_uuid, &pos), ERR_OK);
    assert_true(pos == 1);
    assert_int_equal(
        f->ops->pace_claim(f->c, APP_A, "n-1", &got, req, sizeof(req), &claimed, &wait), ERR_OK);
    assert_false(claimed);
    assert_true(wait == -1);
    /* The first call ends: the next may start. */
    make_call(&k, 1, f->org1, true);
    memcpy(k.status, "COMPLETED", 10);
    k.ended_at = T0 + 50;
    memcpy(k.hangup_cause, "16", 3);
    assert_int_equal(f->ops->call_update(f->c, &k), ERR_OK);

    /* A rate of 1 a second: one now, the next a second later. */
    memset(&p, 0, sizeof(p));
    p.fields = APP_F_CPS | APP_F_MAX_CONCURRENT;
    p.vals.calls_per_second = 1;
    assert_int_equal(f->ops->app_update(f->c, f->org1, APP_A, &p, T0 + 1, &a), ERR_OK);
    assert_int_equal(
        f->ops->pace_claim(f->c, APP_A, "n-2", &got, req, sizeof(req), &claimed, &wait), ERR_OK);
    assert_true(claimed);
    assert_string_equal(req, "{\"n\":2}");
    assert_int_equal(
        f->ops->pace_claim(f->c, APP_A, "n-2", &got, req, sizeof(req), &claimed, &wait), ERR_OK);
    assert_false(claimed);
    assert_true(wait > 0 && wait <= 1000);

    /* Cancelling: once, and a started call is no longer waiting. */
    make_call(&k, 3, f->org1, true);
    n = 0;
    assert_int_equal(
        f->ops->call_queue_cancel(f->c, k.call_uuid, NULL, NULL, T0 + 60, count_cb, &n), ERR_OK);
    assert_int_equal(n, 1);
    assert_int_equal(
        f->ops->call_queue_cancel(f->c, k.call_uuid, NULL, NULL, T0 + 61, count_cb, &n), ERR_OK);
    assert_int_equal(n, 1);
    assert_int_equal(f->ops->call_get(f->c, f->org1, k.call_uuid, &got), ERR_OK);
    assert_string_equal(got.status, "CANCELED");
    assert_true(got.ended_at == T0 + 60);
    make_call(&k, 2, f->org1, true);
    assert_int_equal(
        f->ops->call_queue_cancel(f->c, k.call_uuid, NULL, NULL, T0 + 62, count_cb, &n), ERR_OK);
    assert_int_equal(n, 1);
    /* By app, and by app and from-number. */
    enqueue_call(f, 5, 1);
    enqueue_call(f, 6, 2);
    n = 0;
    assert_int_equal(
        f->ops->call_queue_cancel(f->c, NULL, APP_A, "+910000000000", T0 + 63, count_cb, &n),
        ERR_OK);
    assert_int_equal(n, 0);
    assert_int_equal(f->ops->call_queue_cancel(f->c, NULL, APP_A, N1, T0 + 63, count_cb, &n),
                     ERR_OK);
    assert_int_equal(n, 2);
    enqueue_call(f, 7, 1);
    assert_int_equal(f->ops->call_queue_cancel(f->c, NULL, APP_A, NULL, T0 + 64, count_cb, &n),
                     ERR_OK);
    assert_int_equal(n, 3);
    assert_int_equal(f->ops->pace_apps(f->c, ids, 4, &n), ERR_OK);
    assert_int_equal(n, 0);
}

/* Several connections claiming from one queue at once: each call is
 * claimed once, and never more than the cap are live. */
#define CLAIM_CALLS 30
#define CLAIMERS 4
struct claimer {
    struct store_conn *c;
    pthread_barrier_t *go;
    char node[16];
    int n;
    int seen[CLAIM_CALLS];
    enum err e;
};

static void *claim_race(void *arg)
{
    struct claimer *r = arg;
    char req[64];
    struct store_call k;
    bool claimed;
    int64_t wait;
    int idle = 0;

    pthread_barrier_wait(r->go);
    while (idle < 50) {
        r->e = r->c->ops->pace_claim(r->c, APP_A, r->node, &k, req, sizeof(req), &claimed, &wait);
        if (r->e != ERR_OK)
            return NULL;
        if (!claimed) {
            idle++;
            continue;
        }
        idle = 0;
        r->seen[strtol(req + 5, NULL, 10) % CLAIM_CALLS]++;
        r->n++;
        /* The call ends at once, which frees its place under the cap. */
        memcpy(k.status, "COMPLETED", 10);
        k.ended_at = T0 + 1;
        r->e = r->c->ops->call_update(r->c, &k);
        if (r->e != ERR_OK)
            return NULL;
    }
    return NULL;
}

static void test_pace_claim_race(void **state)
{
    struct fx *f = *state, file;
    struct claimer cl[CLAIMERS];
    pthread_barrier_t go;
    pthread_t th[CLAIMERS];
    struct store_app a;
    char path[64] = "";
    int i, total = 0;

    /* SQLite: a file, as a server uses, since the private in-memory
     * database's shared cache answers a reader beside a writer with an
     * error instead of the busy wait. */
    if (!be.pg) {
        memset(&file, 0, sizeof(file));
        snprintf(path, sizeof(path), "/tmp/test_store_pace_%ld.db", (long)getpid());
        (void)unlink(path);
        snprintf(file.url, sizeof(file.url), "sqlite:%s", path);
        assert_int_equal(store_open(file.url, &file.s), ERR_OK);
        assert_int_equal(store_conn_open(file.s, &file.c), ERR_OK);
        file.ops = file.c->ops;
        assert_int_equal(file.ops->org_create(file.c, "Org One", T0, &file.org1), ERR_OK);
        f = &file;
    }
    make_app(&a, APP_A, f->org1, T0);
    a.max_concurrent_calls = 2;
    assert_int_equal(f->ops->app_create(f->c, &a), ERR_OK);
    for (i = 0; i < CLAIM_CALLS; i++) {
        struct store_call k;
        int64_t pos = 0;
        char req[32];

        make_call(&k, i, f->org1, true);
        snprintf(req, sizeof(req), "{\"n\":%d}", i);
        assert_int_equal(f->ops->call_enqueue(f->c, &k, req, APP_QUEUE_MAX, &pos), ERR_OK);
        assert_true(pos == i + 1);
    }
    memset(cl, 0, sizeof(cl));
    assert_int_equal(pthread_barrier_init(&go, NULL, CLAIMERS), 0);
    for (i = 0; i < CLAIMERS; i++) {
        assert_int_equal(store_conn_open(f->s, &cl[i].c), ERR_OK);
        cl[i].go = &go;
        snprintf(cl[i].node, sizeof(cl[i].node), "n-%d", i);
        assert_int_equal(pthread_create(&th[i], NULL, claim_race, &cl[i]), 0);
    }
    for (i = 0; i < CLAIMERS; i++) {
        assert_int_equal(pthread_join(th[i], NULL), 0);
        assert_int_equal(cl[i].e, ERR_OK);
        total += cl[i].n;
        store_conn_close(cl[i].c);
    }
    pthread_barrier_destroy(&go);
    assert_int_equal(total, CLAIM_CALLS);
    for (i = 0; i < CLAIM_CALLS; i++) {
        int j, seen = 0;

        for (j = 0; j < CLAIMERS; j++)
            seen += cl[j].seen[i];
        assert_int_equal(seen, 1);
    }
    if (path[0]) {
        store_conn_close(file.c);
        store_free(file.s);
        (void)unlink(path);
    }
}

/* ---- signing secrets (AGENT.md section 4) ---- */

#define WS_A "whsec_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
#define WS_B "whsec_BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB"
#define WS_C "whsec_CCCCCCCCCCCCCCCCCCCCCCCCCCCCCCCC"
#define WS_D "whsec_DDDDDDDDDDDDDDDDDDDDDDDDDDDDDDDD"

struct whsec_rows {
    int n;
    struct store_whsecret v[4];
    int64_t org[8];
    char full[8][WHSEC_SECRET_LEN + 1];
};

static enum err whsec_collect(void *ud, const struct store_whsecret *s)
{
    struct whsec_rows *r = ud;

    if (r->n >= 4)
        return ERR_INTERNAL;
    r->v[r->n++] = *s;
    return ERR_OK;
}

static enum err whsec_collect_full(void *ud, int64_t org_id, const char *secret)
{
    struct whsec_rows *r = ud;

    if (r->n >= 8 || strlen(secret) > WHSEC_SECRET_LEN)
        return ERR_INTERNAL;
    r->org[r->n] = org_id;
    memcpy(r->full[r->n++], secret, strlen(secret) + 1);
    return ERR_OK;
}

static void test_whsecrets(void **state)
{
    struct fx *f = *state;
    struct whsec_rows r;
    int64_t a = 0, b = 0, c = 0, d = 0, x = 0;

    assert_int_equal(f->ops->whsecret_create(f->c, f->org1, WS_A, T0, &a), ERR_OK);
    assert_int_equal(f->ops->whsecret_create(f->c, f->org1, WS_B, T0 + 1, &b), ERR_OK);
    assert_true(a > 0 && b > a);
    /* A third active secret; an unknown org. */
    assert_int_equal(f->ops->whsecret_create(f->c, f->org1, WS_C, T0 + 2, &x), ERR_CONFLICT);
    assert_int_equal(f->ops->whsecret_create(f->c, f->org2 + 100, WS_C, T0, &x), ERR_NOT_FOUND);
    assert_int_equal(f->ops->whsecret_create(f->c, f->org2, WS_D, T0 + 3, &d), ERR_OK);

    /* The list shows only the first 12 characters, oldest first. */
    memset(&r, 0, sizeof(r));
    assert_int_equal(f->ops->whsecret_list(f->c, f->org1, whsec_collect, &r), ERR_OK);
    assert_int_equal(r.n, 2);
    assert_true(r.v[0].id == a && r.v[1].id == b);
    assert_string_equal(r.v[0].shown, "whsec_AAAAAA");
    assert_string_equal(r.v[1].shown, "whsec_BBBBBB");
    assert_true(r.v[0].org_id == f->org1 && r.v[0].created_at == T0);
    assert_true(r.v[1].created_at == T0 + 1);

    /* Every active secret, by org, newest first within one. */
    memset(&r, 0, sizeof(r));
    assert_int_equal(f->ops->whsecret_active_all(f->c, whsec_collect_full, &r), ERR_OK);
    assert_int_equal(r.n, 3);
    assert_true(r.org[0] == f->org1 && r.org[1] == f->org1 && r.org[2] == f->org2);
    assert_string_equal(r.full[0], WS_B);
    assert_string_equal(r.full[1], WS_A);
    assert_string_equal(r.full[2], WS_D);

    /* Revoked: no longer listed nor read for signing, and room for another. */
    assert_int_equal(f->ops->whsecret_revoke(f->c, a, T0 + 10), ERR_OK);
    assert_int_equal(f->ops->whsecret_revoke(f->c, a, T0 + 11), ERR_CONFLICT);
    assert_int_equal(f->ops->whsecret_revoke(f->c, d + 1000, T0), ERR_NOT_FOUND);
    assert_int_equal(f->ops->whsecret_create(f->c, f->org1, WS_C, T0 + 12, &c), ERR_OK);
    assert_true(c > d);
    memset(&r, 0, sizeof(r));
    assert_int_equal(f->ops->whsecret_list(f->c, f->org1, whsec_collect, &r), ERR_OK);
    assert_int_equal(r.n, 2);
    assert_true(r.v[0].id == b && r.v[1].id == c);
    memset(&r, 0, sizeof(r));
    assert_int_equal(f->ops->whsecret_active_all(f->c, whsec_collect_full, &r), ERR_OK);
    assert_int_equal(r.n, 3);
    assert_string_equal(r.full[0], WS_C);
    assert_string_equal(r.full[1], WS_B);
    /* An org without secrets lists nothing. */
    assert_int_equal(f->ops->whsecret_revoke(f->c, d, T0 + 13), ERR_OK);
    memset(&r, 0, sizeof(r));
    assert_int_equal(f->ops->whsecret_list(f->c, f->org2, whsec_collect, &r), ERR_OK);
    assert_int_equal(r.n, 0);
}

/* Creates racing for one org, each on its own connection (PostgreSQL):
 * the org's row lock lets exactly WHSEC_ACTIVE_MAX of them in. */
#define WHSEC_RACERS 8
struct whsec_racer {
    struct store_conn *c;
    pthread_barrier_t *go;
    int64_t org;
    int i;
    enum err e;
};

static void *whsec_race(void *p)
{
    struct whsec_racer *r = p;
    char secret[WHSEC_SECRET_LEN + 1];
    int64_t id;

    snprintf(secret, sizeof(secret), "whsec_race%02d%022d", r->i, (int)(r->org % 1000000));
    pthread_barrier_wait(r->go);
    r->e = r->c->ops->whsecret_create(r->c, r->org, secret, T0, &id);
    return NULL;
}

static void test_whsecret_race(void **state)
{
    struct fx *f = *state;
    struct whsec_racer r[WHSEC_RACERS];
    pthread_t t[WHSEC_RACERS];
    pthread_barrier_t go;
    struct whsec_rows rows;
    int round, i, won;
    int64_t org;
    char name[32];

    if (!be.pg)
        skip(); /* SQLite: one writer at a time, whatever the statements */
    for (round = 0; round < 5; round++) {
        snprintf(name, sizeof(name), "race %d", round);
        assert_int_equal(f->ops->org_create(f->c, name, T0, &org), ERR_OK);
        assert_int_equal(pthread_barrier_init(&go, NULL, WHSEC_RACERS), 0);
        for (i = 0; i < WHSEC_RACERS; i++) {
            r[i] = (struct whsec_racer){.go = &go, .org = org, .i = i};
            assert_int_equal(store_conn_open(f->s, &r[i].c), ERR_OK);
        }
        for (i = 0; i < WHSEC_RACERS; i++)
            assert_int_equal(pthread_create(&t[i], NULL, whsec_race, &r[i]), 0);
        for (won = 0, i = 0; i < WHSEC_RACERS; i++) {
            assert_int_equal(pthread_join(t[i], NULL), 0);
            store_conn_close(r[i].c);
            if (r[i].e == ERR_OK)
                won++;
            else
                assert_int_equal(r[i].e, ERR_CONFLICT);
        }
        pthread_barrier_destroy(&go);
        assert_int_equal(won, WHSEC_ACTIVE_MAX);
        memset(&rows, 0, sizeof(rows));
        assert_int_equal(f->ops->whsecret_list(f->c, org, whsec_collect, &rows), ERR_OK);
        assert_int_equal(rows.n, WHSEC_ACTIVE_MAX);
    }
}

#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_open_urls),
        T(test_ping_and_name),
        T(test_idem_claim_finish),
        T(test_idem_release),
        T(test_idem_claim_race),
        T(test_orgs),
        cmocka_unit_test(test_org_empty_database),
        T(test_callback_error_stops),
        T(test_keys),
        T(test_key_revoke),
        T(test_number_add),
        T(test_number_list),
        T(test_number_list_after_unlink),
        T(test_number_remove),
        T(test_number_set_status),
        T(test_available_list),
        T(test_available_follows_links),
        T(test_app_create_get),
        T(test_app_create_long_fields),
        T(test_app_list_order),
        T(test_app_list_includes_inactive),
        T(test_app_update),
        T(test_app_update_no_fields),
        T(test_app_update_not_found),
        T(test_app_delete),
        T(test_link_create_new),
        T(test_link_create_check_order),
        T(test_link_create_idempotent),
        T(test_link_inactive_app),
        T(test_link_list),
        T(test_link_delete),
        T(test_link_create_short_app_id),
        T(test_number_route),
        T(test_call_create_get_update),
        T(test_call_list),
        T(test_call_node_and_dialog),
        T(test_node_beat),
        T(test_node_reap),
        T(test_node_reap_live),
        T(test_node_reap_race),
        T(test_cmd_post_take),
        T(test_cmd_broadcast),
        T(test_cmd_max_age),
        T(test_cmd_wait_timeout),
        T(test_cmd_wait_pg),
        T(test_store_hold),
        T(test_batch_commit),
        T(test_batch_rollback),
        T(test_batch_misuse),
        T(test_app_pacing_fields),
        T(test_pace_queue),
        T(test_pace_claim_race),
        T(test_whsecrets),
        T(test_whsecret_race),
    };
    int failed;

    log_set_level(LOG_WARN); /* the template's migration is no news */
    if (backend_init((int)(sizeof(tests) / sizeof(tests[0]))) != 0)
        return 1;
    failed = cmocka_run_group_tests(tests, group_setup, NULL);
    if (backend_release() != 0 && !failed)
        failed = 1;
    return failed;
}

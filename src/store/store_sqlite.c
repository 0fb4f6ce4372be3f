/* store_sqlite: the embedded SQLite backend, the only file that includes
 * sqlite3.h. One sqlite3 handle per thread (opened with NOMUTEX, never
 * shared), statements prepared once per handle and reused. WAL journal with
 * synchronous=FULL: a commit is on disk before the caller is answered.
 * Writes take the write lock up front (BEGIN IMMEDIATE), so a transaction
 * never fails half-way on lock upgrade; waiting for the lock is bounded by
 * the busy timeout, after which the caller gets ERR_UNAVAILABLE. Writers of
 * this process also queue on one mutex before BEGIN IMMEDIATE: SQLite's busy
 * handler polls with growing sleeps, which lets one thread's writes starve
 * for seconds under load; the mutex hands the lock over at once and in turn.
 * Other processes (the CLI) still meet the busy timeout. */
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/clock.h"
#include "core/log.h"
#include "store/migrate.h"
#include "store/store.h"

#define BUSY_TIMEOUT_MS 5000

enum stmt_id {
    ST_BEGIN,
    ST_COMMIT,
    ST_ROLLBACK,
    ST_SAVEPOINT,
    ST_RELEASE,
    ST_ROLLBACK_TO,
    ST_PING,
    ST_ORG_INSERT,
    ST_ORG_GET,
    ST_ORG_COUNT,
    ST_ORG_LIST,
    ST_KEY_INSERT,
    ST_KEY_FIND,
    ST_KEY_LIST,
    ST_KEY_REVOKE,
    ST_NUM_INSERT,
    ST_NUM_LIST,
    ST_NUM_FIND,
    ST_NUM_LINKED,
    ST_NUM_DELETE,
    ST_NUM_SET_STATUS,
    ST_AVAIL,
    ST_APP_INSERT,
    ST_APP_GET,
    ST_APP_LIST,
    ST_APP_UPDATE,
    ST_APP_DELETE,
    ST_APP_EXISTS,
    ST_LINKS_OFF_APP,
    ST_NUM_FOR_LINK,
    ST_LINK_BY_NUM,
    ST_LINK_INSERT,
    ST_LINK_LIST,
    ST_LINK_OFF,
    ST_NUM_ROUTE,
    ST_CALL_INSERT,
    ST_CALL_UPDATE,
    ST_CALL_GET,
    ST_CALL_LIST,
    ST_COUNT
};

#define APP_COLS                                                                                   \
    "app_id, org_id, name, answer_url, answer_method, hangup_url, hangup_method, "                 \
    "fallback_answer_url, fallback_answer_method, status, created_by, created_at, updated_at"
#define KEY_COLS "id, org_id, user_id, name, prefix, status, created_at"
#define LINK_COLS "app_id, voip_number, org_id, status, created_at, updated_at"
#define APP_COLS_A                                                                                 \
    "a.app_id, a.org_id, a.name, a.answer_url, a.answer_method, a.hangup_url, a.hangup_method, "   \
    "a.fallback_answer_url, a.fallback_answer_method, a.status, a.created_by, a.created_at, "      \
    "a.updated_at"
#define CALL_COLS                                                                                  \
    "call_uuid, request_uuid, org_id, app_id, \"from\", \"to\", direction, status, started_at, "   \
    "answered_at, ended_at, duration, hangup_cause, created_at, seq"

static const char *const stmt_sql[ST_COUNT] = {
    [ST_BEGIN] = "BEGIN IMMEDIATE",
    [ST_COMMIT] = "COMMIT",
    [ST_ROLLBACK] = "ROLLBACK",
    [ST_SAVEPOINT] = "SAVEPOINT op",
    [ST_RELEASE] = "RELEASE op",
    [ST_ROLLBACK_TO] = "ROLLBACK TO op",
    [ST_PING] = "SELECT 1",
    [ST_ORG_INSERT] = "INSERT INTO orgs(name, created_at) VALUES (?1, ?2)",
    [ST_ORG_GET] = "SELECT id, name, created_at FROM orgs WHERE id = ?1",
    [ST_ORG_COUNT] = "SELECT count(*) FROM orgs",
    [ST_ORG_LIST] = "SELECT id, name, created_at FROM orgs ORDER BY id",
    [ST_KEY_INSERT] = "INSERT INTO api_keys(org_id, user_id, name, prefix, hash, created_at) "
                      "VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    [ST_KEY_FIND] = "SELECT " KEY_COLS " FROM api_keys WHERE hash = ?1",
    [ST_KEY_LIST] = "SELECT " KEY_COLS " FROM api_keys WHERE org_id = ?1 ORDER BY id",
    [ST_KEY_REVOKE] = "UPDATE api_keys SET status = 'REVOKED', revoked_at = coalesce(revoked_at, "
                      "?2) WHERE id = ?1",
    [ST_NUM_INSERT] =
        "INSERT INTO numbers(org_id, e164, provider, created_at) VALUES (?1, ?2, ?3, ?4)",
    [ST_NUM_LIST] = "SELECT n.id, n.org_id, n.e164, n.provider, n.status, coalesce(l.app_id, '') "
                    "FROM numbers n LEFT JOIN links l ON l.number_id = n.id AND l.status = "
                    "'ACTIVE' WHERE n.org_id = ?1 ORDER BY n.id",
    [ST_NUM_FIND] = "SELECT id FROM numbers WHERE e164 = ?1",
    [ST_NUM_LINKED] = "SELECT 1 FROM links WHERE number_id = ?1 AND status = 'ACTIVE'",
    [ST_NUM_DELETE] = "DELETE FROM numbers WHERE id = ?1",
    [ST_NUM_SET_STATUS] = "UPDATE numbers SET status = ?2 WHERE e164 = ?1",
    [ST_AVAIL] = "SELECT n.id, n.org_id, n.e164, n.provider, n.status, '' FROM numbers n "
                 "WHERE n.org_id = ?1 AND n.status = 'ACTIVE' AND NOT EXISTS (SELECT 1 FROM "
                 "links l WHERE l.number_id = n.id AND l.status = 'ACTIVE') ORDER BY n.id",
    [ST_APP_INSERT] = "INSERT INTO apps(" APP_COLS ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
                      "?10, ?11, ?12, ?13)",
    [ST_APP_GET] = "SELECT " APP_COLS " FROM apps WHERE app_id = ?1 AND org_id = ?2",
    [ST_APP_LIST] =
        "SELECT " APP_COLS " FROM apps WHERE org_id = ?1 ORDER BY created_at DESC, id DESC",
    /* One statement for every partial update: ?3, ?5, ... say whether the
     * field that follows is set. */
    [ST_APP_UPDATE] = "UPDATE apps SET "
                      "name = CASE WHEN ?3 THEN ?4 ELSE name END, "
                      "answer_url = CASE WHEN ?5 THEN ?6 ELSE answer_url END, "
                      "answer_method = CASE WHEN ?7 THEN ?8 ELSE answer_method END, "
                      "hangup_url = CASE WHEN ?9 THEN ?10 ELSE hangup_url END, "
                      "hangup_method = CASE WHEN ?11 THEN ?12 ELSE hangup_method END, "
                      "fallback_answer_url = CASE WHEN ?13 THEN ?14 ELSE fallback_answer_url END, "
                      "fallback_answer_method = CASE WHEN ?15 THEN ?16 ELSE "
                      "fallback_answer_method END, "
                      "status = CASE WHEN ?17 THEN ?18 ELSE status END, "
                      "updated_at = ?19 "
                      "WHERE app_id = ?1 AND org_id = ?2 RETURNING " APP_COLS,
    [ST_APP_DELETE] = "DELETE FROM apps WHERE app_id = ?1 AND org_id = ?2",
    [ST_APP_EXISTS] = "SELECT 1 FROM apps WHERE app_id = ?1 AND org_id = ?2",
    [ST_LINKS_OFF_APP] = "UPDATE links SET status = 'INACTIVE', updated_at = ?2 "
                         "WHERE app_id = ?1 AND status = 'ACTIVE'",
    [ST_NUM_FOR_LINK] = "SELECT id, status FROM numbers WHERE e164 = ?1 AND org_id = ?2",
    [ST_LINK_BY_NUM] = "SELECT " LINK_COLS " FROM links WHERE number_id = ?1 AND status = 'ACTIVE'",
    [ST_LINK_INSERT] = "INSERT INTO links(app_id, org_id, number_id, voip_number, status, "
                       "created_at) VALUES (?1, ?2, ?3, ?4, 'ACTIVE', ?5)",
    /* Answered from the covering indexes apps_id_org and links_app_cover. */
    [ST_LINK_LIST] = "SELECT l.app_id, l.voip_number, l.org_id, l.status, l.created_at, "
                     "l.updated_at FROM apps a LEFT JOIN links l ON l.app_id = a.app_id AND "
                     "l.status = 'ACTIVE' WHERE a.app_id = ?1 AND a.org_id = ?2 "
                     "ORDER BY l.created_at DESC, l.id DESC",
    [ST_LINK_OFF] = "UPDATE links SET status = 'INACTIVE', updated_at = ?3 "
                    "WHERE app_id = ?1 AND voip_number = ?2 AND status = 'ACTIVE'",
    /* One statement, so the number, its link and the app are one snapshot.
     * Deleting an app deactivates its links, so an ACTIVE link has an app. */
    [ST_NUM_ROUTE] = "SELECT n.org_id, n.status, " APP_COLS_A " FROM numbers n "
                     "LEFT JOIN links l ON l.number_id = n.id AND l.status = 'ACTIVE' "
                     "LEFT JOIN apps a ON a.app_id = l.app_id WHERE n.e164 = ?1",
    [ST_CALL_INSERT] = "INSERT INTO calls(call_uuid, request_uuid, org_id, app_id, \"from\", "
                       "\"to\", direction, status, started_at, answered_at, ended_at, duration, "
                       "hangup_cause, created_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, "
                       "?10, ?11, ?12, ?13, ?14)",
    [ST_CALL_UPDATE] = "UPDATE calls SET status = ?2, started_at = ?3, answered_at = ?4, "
                       "ended_at = ?5, duration = ?6, hangup_cause = ?7 WHERE call_uuid = ?1",
    [ST_CALL_GET] = "SELECT " CALL_COLS " FROM calls WHERE org_id = ?1 AND (call_uuid = ?2 OR "
                    "request_uuid = ?2)",
    /* Answered from the index calls_org_seq, newest first. */
    [ST_CALL_LIST] = "SELECT " CALL_COLS " FROM calls WHERE org_id = ?1 AND seq < ?2 "
                     "ORDER BY seq DESC LIMIT ?3",
};

struct sq_db {
    char *path;
    pthread_mutex_t writer; /* held from BEGIN IMMEDIATE to COMMIT or ROLLBACK */
    bool memory;            /* ":memory:": one shared handle, single-threaded use */
    struct sq_conn *shared; /* the in-memory database's only connection */
};

struct sq_conn {
    struct store_conn base; /* first: a struct store_conn * is a struct sq_conn * */
    struct sq_db *db;
    sqlite3 *h;
    sqlite3_stmt *st[ST_COUNT];
    bool batch; /* inside batch_begin .. batch_end: operations nest as savepoints */
};

static const struct store_ops sq_ops;

/* Maps a SQLite result to our error, logging the driver's text (never sent
 * to clients). */
static enum err sq_err(struct sq_conn *c, int rc, const char *what)
{
    int base = rc & 0xff;

    if (base == SQLITE_BUSY || base == SQLITE_LOCKED) {
        log_warn("msg=\"database busy\" op=%s", what);
        return ERR_UNAVAILABLE;
    }
    if (rc == SQLITE_CONSTRAINT_UNIQUE || rc == SQLITE_CONSTRAINT_PRIMARYKEY)
        return ERR_CONFLICT;
    if (rc == SQLITE_CONSTRAINT_FOREIGNKEY)
        return ERR_NOT_FOUND;
    if (base == SQLITE_NOMEM)
        return ERR_NOMEM;
    if (base == SQLITE_CANTOPEN || base == SQLITE_IOERR || base == SQLITE_FULL)
        log_error("msg=\"database unavailable\" op=%s code=%d err=\"%s\"", what, rc,
                  c && c->h ? sqlite3_errmsg(c->h) : "");
    else
        log_error("msg=\"database error\" op=%s code=%d err=\"%s\"", what, rc,
                  c && c->h ? sqlite3_errmsg(c->h) : "");
    return base == SQLITE_CANTOPEN || base == SQLITE_IOERR ? ERR_UNAVAILABLE : ERR_DB;
}

/* Returns the prepared statement, preparing it on first use. */
static sqlite3_stmt *stmt(struct sq_conn *c, enum stmt_id id)
{
    int rc;

    if (!c->st[id]) {
        rc =
            sqlite3_prepare_v3(c->h, stmt_sql[id], -1, SQLITE_PREPARE_PERSISTENT, &c->st[id], NULL);
        if (rc != SQLITE_OK) {
            (void)sq_err(c, rc, "prepare");
            return NULL;
        }
    }
    return c->st[id];
}

static void done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Runs a statement that returns no rows. */
static enum err exec_id(struct sq_conn *c, enum stmt_id id, const char *what)
{
    sqlite3_stmt *st = stmt(c, id);
    int rc;

    if (!st)
        return ERR_DB;
    rc = sqlite3_step(st);
    done(st);
    return rc == SQLITE_DONE ? ERR_OK : sq_err(c, rc, what);
}

/* An operation's transaction; inside a batch, a savepoint of the batch's. */
/* BEGIN IMMEDIATE in this process's writer queue; the queue is left by
 * write_end, or here when BEGIN fails. */
static enum err write_begin(struct sq_conn *c, const char *what)
{
    enum err e;

    pthread_mutex_lock(&c->db->writer);
    e = exec_id(c, ST_BEGIN, what);
    if (e != ERR_OK)
        pthread_mutex_unlock(&c->db->writer);
    return e;
}

/* COMMIT (or ROLLBACK when !commit, or when COMMIT fails), then leaves the
 * writer queue. */
static enum err write_end(struct sq_conn *c, bool commit, const char *what)
{
    enum err e = ERR_OK;

    if (commit)
        e = exec_id(c, ST_COMMIT, what);
    if ((!commit || e != ERR_OK) && !sqlite3_get_autocommit(c->h))
        (void)exec_id(c, ST_ROLLBACK, what);
    pthread_mutex_unlock(&c->db->writer);
    return e;
}

static enum err tx_begin(struct sq_conn *c)
{
    return c->batch ? exec_id(c, ST_SAVEPOINT, "begin") : write_begin(c, "begin");
}

static enum err tx_commit(struct sq_conn *c)
{
    return c->batch ? exec_id(c, ST_RELEASE, "commit") : write_end(c, true, "commit");
}

/* Ends a transaction: commits when e is ERR_OK, else rolls back and keeps e. */
static enum err tx_end(struct sq_conn *c, enum err e)
{
    if (e == ERR_OK)
        return tx_commit(c);
    if (c->batch) {
        (void)exec_id(c, ST_ROLLBACK_TO, "rollback");
        (void)exec_id(c, ST_RELEASE, "rollback");
    } else {
        (void)write_end(c, false, "rollback");
    }
    return e;
}

static enum err sq_batch_begin(struct store_conn *base)
{
    struct sq_conn *c = (struct sq_conn *)base;
    enum err e;

    if (c->batch)
        return ERR_INTERNAL;
    e = write_begin(c, "batch_begin");
    if (e == ERR_OK)
        c->batch = true;
    return e;
}

static enum err sq_batch_end(struct store_conn *base, bool commit)
{
    struct sq_conn *c = (struct sq_conn *)base;
    enum err e;

    if (!c->batch)
        return ERR_INTERNAL;
    c->batch = false;
    e = write_end(c, commit, "batch_end");
    return commit ? e : ERR_OK;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
}

/* Binds NULL for "" (our null string) and for 0 (our null integer). */
static void bind_text_or_null(sqlite3_stmt *st, int i, const char *s)
{
    if (s[0])
        bind_text(st, i, s);
    else
        sqlite3_bind_null(st, i);
}

static void bind_i64_or_null(sqlite3_stmt *st, int i, int64_t v)
{
    if (v)
        sqlite3_bind_int64(st, i, v);
    else
        sqlite3_bind_null(st, i);
}

/* Copies a text column into a fixed field, truncating at cap - 1 bytes
 * (stored values are validated on the way in and always fit). NULL is "". */
static void col_text(sqlite3_stmt *st, int i, char *dst, size_t cap)
{
    const unsigned char *s = sqlite3_column_text(st, i);
    size_t n = s ? (size_t)sqlite3_column_bytes(st, i) : 0;

    if (n >= cap)
        n = cap - 1;
    if (n)
        memcpy(dst, s, n);
    dst[n] = '\0';
}

#define COL_TEXT(st, i, field) col_text((st), (i), (field), sizeof(field))

static void row_app(sqlite3_stmt *st, struct store_app *a)
{
    COL_TEXT(st, 0, a->app_id);
    a->org_id = sqlite3_column_int64(st, 1);
    COL_TEXT(st, 2, a->name);
    COL_TEXT(st, 3, a->answer_url);
    COL_TEXT(st, 4, a->answer_method);
    COL_TEXT(st, 5, a->hangup_url);
    COL_TEXT(st, 6, a->hangup_method);
    COL_TEXT(st, 7, a->fallback_answer_url);
    COL_TEXT(st, 8, a->fallback_answer_method);
    COL_TEXT(st, 9, a->status);
    a->created_by = sqlite3_column_int64(st, 10);
    a->created_at = sqlite3_column_int64(st, 11);
    a->updated_at = sqlite3_column_int64(st, 12);
}

static void row_key(sqlite3_stmt *st, struct store_key *k)
{
    char status[STATUS_MAX + 1];

    k->id = sqlite3_column_int64(st, 0);
    k->org_id = sqlite3_column_int64(st, 1);
    k->user_id = sqlite3_column_int64(st, 2);
    COL_TEXT(st, 3, k->name);
    COL_TEXT(st, 4, k->prefix);
    COL_TEXT(st, 5, status);
    k->revoked = strcmp(status, "ACTIVE") != 0;
    k->created_at = sqlite3_column_int64(st, 6);
}

static void row_link(sqlite3_stmt *st, struct store_link *l)
{
    COL_TEXT(st, 0, l->app_id);
    COL_TEXT(st, 1, l->voip_number);
    l->org_id = sqlite3_column_int64(st, 2);
    COL_TEXT(st, 3, l->status);
    l->created_at = sqlite3_column_int64(st, 4);
    l->updated_at = sqlite3_column_int64(st, 5);
}

static void row_number(sqlite3_stmt *st, struct store_number *n)
{
    n->id = sqlite3_column_int64(st, 0);
    n->org_id = sqlite3_column_int64(st, 1);
    COL_TEXT(st, 2, n->voip_number);
    COL_TEXT(st, 3, n->provider);
    COL_TEXT(st, 4, n->status);
    COL_TEXT(st, 5, n->linked_app_id);
}

static void row_call(sqlite3_stmt *st, struct store_call *k)
{
    COL_TEXT(st, 0, k->call_uuid);
    COL_TEXT(st, 1, k->request_uuid);
    k->org_id = sqlite3_column_int64(st, 2);
    COL_TEXT(st, 3, k->app_id);
    COL_TEXT(st, 4, k->from);
    COL_TEXT(st, 5, k->to);
    COL_TEXT(st, 6, k->direction);
    COL_TEXT(st, 7, k->status);
    k->started_at = sqlite3_column_int64(st, 8);
    k->answered_at = sqlite3_column_int64(st, 9);
    k->ended_at = sqlite3_column_int64(st, 10);
    k->duration = sqlite3_column_int64(st, 11);
    COL_TEXT(st, 12, k->hangup_cause);
    k->created_at = sqlite3_column_int64(st, 13);
    k->seq = sqlite3_column_int64(st, 14);
}

/* ---- connections and schema ---- */

static enum err conn_setup(sqlite3 *h)
{
    static const char *const pragmas =
        "PRAGMA journal_mode = WAL;"
        "PRAGMA synchronous = FULL;"
        "PRAGMA foreign_keys = ON;"
        "PRAGMA temp_store = MEMORY;"
        "PRAGMA cache_size = -2048;"; /* 2 MiB of page cache per connection */
    char *msg = NULL;
    int rc;

    sqlite3_busy_timeout(h, BUSY_TIMEOUT_MS);
    sqlite3_extended_result_codes(h, 1);
    rc = sqlite3_exec(h, pragmas, NULL, NULL, &msg);
    if (rc != SQLITE_OK) {
        log_error("msg=\"database setup failed\" code=%d err=\"%s\"", rc, msg ? msg : "");
        sqlite3_free(msg);
        return (rc & 0xff) == SQLITE_BUSY ? ERR_UNAVAILABLE : ERR_DB;
    }
    return ERR_OK;
}

static enum err conn_new(struct sq_db *db, struct sq_conn **out)
{
    struct sq_conn *c;
    int rc;
    enum err e;

    c = calloc(1, sizeof(*c));
    if (!c)
        return ERR_NOMEM;
    c->base.ops = &sq_ops;
    c->db = db;
    rc = sqlite3_open_v2(db->path, &c->h,
                         SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX, NULL);
    if (rc != SQLITE_OK) {
        log_error("msg=\"cannot open database\" code=%d err=\"%s\"", rc,
                  c->h ? sqlite3_errmsg(c->h) : "out of memory");
        e = ERR_UNAVAILABLE;
        goto out_close;
    }
    e = conn_setup(c->h);
    if (e != ERR_OK)
        goto out_close;
    *out = c;
    return ERR_OK;

out_close:
    sqlite3_close_v2(c->h);
    free(c);
    return e;
}

static void conn_free(struct sq_conn *c)
{
    int i;

    for (i = 0; i < ST_COUNT; i++)
        sqlite3_finalize(c->st[i]);
    sqlite3_close_v2(c->h);
    free(c);
}

static void sq_conn_close(struct store_conn *base)
{
    struct sq_conn *c = (struct sq_conn *)base;

    if (c->db->memory)
        return; /* the in-memory database lives as long as the store */
    conn_free(c);
}

static enum err simple_exec(sqlite3 *h, const char *sql, const char *what)
{
    char *msg = NULL;
    int rc = sqlite3_exec(h, sql, NULL, NULL, &msg);

    if (rc != SQLITE_OK) {
        log_error("msg=\"%s failed\" code=%d err=\"%s\"", what, rc, msg ? msg : "");
        sqlite3_free(msg);
        return (rc & 0xff) == SQLITE_BUSY ? ERR_UNAVAILABLE : ERR_DB;
    }
    return ERR_OK;
}

/* Brings the schema to the newest version, in one write transaction so that
 * processes starting together apply each migration exactly once. */
static enum err migrate(sqlite3 *h)
{
    sqlite3_stmt *st = NULL;
    int64_t have = 0;
    const struct migration *m;
    enum err e;
    int rc;

    e = simple_exec(h, "BEGIN IMMEDIATE", "migration");
    if (e != ERR_OK)
        return e;
    e = simple_exec(h,
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                    "name TEXT NOT NULL, applied_at INTEGER NOT NULL)",
                    "migration");
    if (e != ERR_OK)
        goto out_rollback;
    rc = sqlite3_prepare_v2(h, "SELECT coalesce(max(version), 0) FROM schema_migrations", -1, &st,
                            NULL);
    if (rc != SQLITE_OK || sqlite3_step(st) != SQLITE_ROW) {
        e = ERR_DB;
        goto out_rollback;
    }
    have = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    st = NULL;

    for (m = migrations_sqlite; m->version; m++) {
        if (m->version <= have)
            continue;
        e = simple_exec(h, m->sql, m->name);
        if (e != ERR_OK)
            goto out_rollback;
        rc = sqlite3_prepare_v2(h,
                                "INSERT INTO schema_migrations(version, name, applied_at) "
                                "VALUES (?1, ?2, ?3)",
                                -1, &st, NULL);
        if (rc != SQLITE_OK) {
            e = ERR_DB;
            goto out_rollback;
        }
        sqlite3_bind_int(st, 1, m->version);
        sqlite3_bind_text(st, 2, m->name, -1, SQLITE_STATIC);
        sqlite3_bind_int64(st, 3, clock_now_ms());
        rc = sqlite3_step(st);
        sqlite3_finalize(st);
        st = NULL;
        if (rc != SQLITE_DONE) {
            e = ERR_DB;
            goto out_rollback;
        }
        log_info("msg=\"schema migrated\" backend=sqlite version=%d name=%s", m->version, m->name);
        have = m->version;
    }
    if (m == migrations_sqlite || have > m[-1].version) {
        log_error("msg=\"database schema is newer than this program\" version=%lld",
                  (long long)have);
        e = ERR_DB;
        goto out_rollback;
    }
    return simple_exec(h, "COMMIT", "migration");

out_rollback:
    if (e == ERR_DB)
        log_error("msg=\"schema migration failed\" err=\"%s\"", sqlite3_errmsg(h));
    sqlite3_finalize(st);
    (void)simple_exec(h, "ROLLBACK", "migration");
    return e;
}

static enum err sq_open(const char *url, void **impl)
{
    const char *path = url + strlen("sqlite:");
    struct sq_db *db;
    struct sq_conn *c = NULL;
    enum err e;

    if (!*path)
        return ERR_INVALID;
    /* Memory statistics take a global mutex on every allocation of every
     * connection; nothing here reads them. Only possible before the library
     * initialises, hence once and ignoring a late call's SQLITE_MISUSE. */
    (void)sqlite3_config(SQLITE_CONFIG_MEMSTATUS, 0);
    if (!sqlite3_threadsafe()) {
        log_error("msg=\"sqlite library built without thread support\"");
        return ERR_INTERNAL;
    }
    db = calloc(1, sizeof(*db));
    if (!db)
        return ERR_NOMEM;
    db->path = strdup(path);
    if (!db->path) {
        free(db);
        return ERR_NOMEM;
    }
    db->memory = strcmp(path, ":memory:") == 0;
    pthread_mutex_init(&db->writer, NULL);
    e = conn_new(db, &c);
    if (e != ERR_OK)
        goto out_db;
    e = migrate(c->h);
    if (e != ERR_OK)
        goto out_conn;
    if (db->memory)
        db->shared = c;
    else
        conn_free(c);
    *impl = db;
    return ERR_OK;

out_conn:
    conn_free(c);
out_db:
    pthread_mutex_destroy(&db->writer);
    free(db->path);
    free(db);
    return e;
}

static void sq_free(void *impl)
{
    struct sq_db *db = impl;

    if (db->shared)
        conn_free(db->shared);
    pthread_mutex_destroy(&db->writer);
    free(db->path);
    free(db);
}

static enum err sq_conn_open(void *impl, struct store_conn **out)
{
    struct sq_db *db = impl;
    struct sq_conn *c;
    enum err e;

    if (db->memory) {
        *out = &db->shared->base;
        return ERR_OK;
    }
    e = conn_new(db, &c);
    if (e != ERR_OK)
        return e;
    *out = &c->base;
    return ERR_OK;
}

/* ---- operations ---- */

#define CONN(base) ((struct sq_conn *)(base))

static enum err sq_ping(struct store_conn *base)
{
    struct sq_conn *c = CONN(base);
    sqlite3_stmt *st = stmt(c, ST_PING);
    int rc;

    if (!st)
        return ERR_DB;
    rc = sqlite3_step(st);
    done(st);
    return rc == SQLITE_ROW ? ERR_OK : sq_err(c, rc, "ping");
}

/* Runs a prepared single-row-or-none query; ERR_NOT_FOUND when no row. The
 * statement is left on its row for the caller to read and must be passed to
 * done() afterwards whatever the result. */
static enum err step_one(struct sq_conn *c, sqlite3_stmt *st, const char *what)
{
    int rc = sqlite3_step(st);

    if (rc == SQLITE_ROW)
        return ERR_OK;
    if (rc == SQLITE_DONE)
        return ERR_NOT_FOUND;
    return sq_err(c, rc, what);
}

/* Runs a prepared write; ERR_OK with *changes set. */
static enum err step_write(struct sq_conn *c, sqlite3_stmt *st, const char *what, int *changes)
{
    int rc = sqlite3_step(st);

    done(st);
    if (rc != SQLITE_DONE && rc != SQLITE_ROW)
        return sq_err(c, rc, what);
    if (changes)
        *changes = sqlite3_changes(c->h);
    return ERR_OK;
}

static enum err sq_org_create(struct store_conn *base, const char *name, int64_t now, int64_t *id)
{
    struct sq_conn *c = CONN(base);
    sqlite3_stmt *st = stmt(c, ST_ORG_INSERT);
    enum err e;

    if (!st)
        return ERR_DB;
    bind_text(st, 1, name);
    sqlite3_bind_int64(st, 2, now);
    e = step_write(c, st, "org_create", NULL);
    if (e == ERR_OK)
        *id = sqlite3_last_insert_rowid(c->h);
    return e;
}

static enum err sq_org_get(struct store_conn *base, int64_t id, struct store_org *out)
{
    struct sq_conn *c = CONN(base);
    sqlite3_stmt *st = stmt(c, ST_ORG_GET);
    enum err e;

    if (!st)
        return ERR_DB;
    sqlite3_bind_int64(st, 1, id);
    e = step_one(c, st, "org_get");
    if (e == ERR_OK) {
        out->id = sqlite3_column_int64(st, 0);
        COL_TEXT(st, 1, out->name);
        out->created_at = sqlite3_column_int64(st, 2);
    }
    done(st);
    return e;
}

static enum err sq_org_count(struct store_conn *base, int64_t *n)
{
    struct sq_conn *c = CONN(base);
    sqlite3_stmt *st = stmt(c, ST_ORG_COUNT);
    enum err e;

    if (!st)
        return ERR_DB;
    e = step_one(c, st, "org_count");
    if (e == ERR_OK)
        *n = sqlite3_column_int64(st, 0);
    done(st);
    return e;
}

/* Iterates a bound statement, handing each row to each_row; the callback's
 * error stops the walk. */
static enum err walk(struct sq_conn *c, sqlite3_stmt *st, const char *what,
                     enum err (*each_row)(sqlite3_stmt *st, void *cb, void *ud), void *cb, void *ud)
{
    enum err e = ERR_OK;
    int rc;

    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        e = each_row(st, cb, ud);
        if (e != ERR_OK)
            break;
    }
    if (e == ERR_OK && rc != SQLITE_DONE)
        e = sq_err(c, rc, what);
    done(st);
    return e;
}

/* Walks a statement whose one parameter is the organisation. */
static enum err walk_org(struct store_conn *base, enum stmt_id id, const char *what, int64_t org_id,
                         enum err (*each_row)(sqlite3_stmt *st, void *cb, void *ud), void *cb,
                         void *ud)
{
    struct sq_conn *c = CONN(base);
    sqlite3_stmt *st = stmt(c, id);

    if (!st)
        return ERR_DB;
    sqlite3_bind_int64(st, 1, org_id);
    return walk(c, st, what, each_row, cb, ud);
}

static enum err org_row(sqlite3_stmt *st, void *cb, void *ud)
{
    struct store_org o;

    o.id = sqlite3_column_int64(st, 0);
    COL_TEXT(st, 1, o.name);
    o.created_at = sqlite3_column_int64(st, 2);
    return ((store_org_cb)cb)(ud, &o);
}

static enum err sq_org_list(struct store_conn *base, store_org_cb cb, void *ud)
{
    struct sq_conn *c = CONN(base);
    sqlite3_stmt *st = stmt(c, ST_ORG_LIST);

    if (!st)
        return ERR_DB;
    return walk(c, st, "org_list", org_row, (void *)cb, ud);
}

static enum err sq_key_create(struct store_conn *base, const struct store_key *k,
                              const unsigned char hash[KEY_HASH_LEN], int64_t *id)
{
    struct sq_conn *c = CONN(base);
    sqlite3_stmt *st = stmt(c, ST_KEY_INSERT);
    enum err e;

    if (!st)
        return ERR_DB;
    sqlite3_bind_int64(st, 1, k->org_id);
    bind_i64_or_null(st, 2, k->user_id);
    bind_text_or_null(st, 3, k->name);
    bind_text(st, 4, k->prefix);
    sqlite3_bind_blob(st, 5, hash, KEY_HASH_LEN, SQLITE_STATIC);
    sqlite3_bind_int64(st, 6, k->created_at);
    e = step_write(c, st, "key_create", NULL);
    if (e == ERR_OK)
        *id = sqlite3_last_insert_rowid(c->h);
    return e;
}

static enum err sq_key_find(struct store_conn *base, const unsigned char hash[KEY_HASH_LEN],
                            struct store_key *out)
{
    struct sq_conn *c = CONN(base);
    sqlite3_stmt *st = stmt(c, ST_KEY_FIND);
    enum err e;

    if (!st)
        return ERR_DB;
    sqlite3_bind_blob(st, 1, hash, KEY_HASH_LEN, SQLITE_STATIC);
    e = step_one(c, st, "key_find");
    if (e == ERR_OK)
        row_key(st, out);
    done(st);
    return e;
}

static enum err key_row(sqlite3_stmt *st, void *cb, void *ud)
{
    struct store_key k;

    row_key(st, &k);
    return ((store_key_cb)cb)(ud, &k);
}

static enum err sq_key_list(struct store_conn *base, int64_t org_id, store_key_cb cb, void *ud)
{
    return walk_org(base, ST_KEY_LIST, "key_list", org_id, key_row, (void *)cb, ud);
}

static enum err sq_key_revoke(struct store_conn *base, int64_t key_id, int64_t now)
{
    struct sq_conn *c = CONN(base);
    sqlite3_stmt *st = stmt(c, ST_KEY_REVOKE);
    int changes = 0;
    enum err e;

    if (!st)
        return ERR_DB;
    sqlite3_bind_int64(st, 1, key_id);
    sqlite3_bind_int64(st, 2, now);
    e = step_write(c, st, "key_revoke", &changes);
    if (e == ERR_OK && changes == 0)
        e = ERR_NOT_FOUND;
    return e;
}

static enum err sq_number_add(struct store_conn *base, int64_t org_id, const char *e164,
                              const char *provider, int64_t now, int64_t *id)
{
    struct sq_conn *c = CONN(base);
    sqlite3_stmt *st = stmt(c, ST_NUM_INSERT);
    enum err e;

    if (!st)
        return ERR_DB;
    sqlite3_bind_int64(st, 1, org_id);
    bind_text(st, 2, e164);
    bind_text(st, 3, provider);
    sqlite3_bind_int64(st, 4, now);
    e = step_write(c, st, "number_add", NULL);
    if (e == ERR_OK)
        *id = sqlite3_last_insert_rowid(c->h);
    return e;
}

static enum err number_row(sqlite3_stmt *st, void *cb, void *ud)
{
    struct store_number n;

    row_number(st, &n);
    return ((store_number_cb)cb)(ud, &n);
}

static enum err sq_number_list(struct store_conn *base, int64_t org_id, store_number_cb cb,
                               void *ud)
{
    return walk_org(base, ST_NUM_LIST, "number_list", org_id, number_row, (void *)cb, ud);
}

static enum err sq_number_remove(struct store_conn *base, const char *e164)
{
    struct sq_conn *c = CONN(base);
    sqlite3_stmt *st;
    int64_t id = 0;
    enum err e;

    e = tx_begin(c);
    if (e != ERR_OK)
        return e;
    st = stmt(c, ST_NUM_FIND);
    if (!st) {
        e = ERR_DB;
        goto out;
    }
    bind_text(st, 1, e164);
    e = step_one(c, st, "number_remove");
    if (e == ERR_OK)
        id = sqlite3_column_int64(st, 0);
    done(st);
    if (e != ERR_OK)
        goto out;
    st = stmt(c, ST_NUM_LINKED);
    if (!st) {
        e = ERR_DB;
        goto out;
    }
    sqlite3_bind_int64(st, 1, id);
    e = step_one(c, st, "number_remove");
    done(st);
    if (e == ERR_OK) {
        e = ERR_CONFLICT;
        goto out;
    }
    if (e != ERR_NOT_FOUND)
        goto out;
    st = stmt(c, ST_NUM_DELETE);
    if (!st) {
        e = ERR_DB;
        goto out;
    }
    sqlite3_bind_int64(st, 1, id);
    e = step_write(c, st, "number_remove", NULL);
out:
    return tx_end(c, e);
}

static enum err sq_number_set_status(struct store_conn *base, const char *e164, const char *status)
{
    struct sq_conn *c = CONN(base);
    sqlite3_stmt *st = stmt(c, ST_NUM_SET_STATUS);
    int changes = 0;
    enum err e;

    if (!st)
        return ERR_DB;
    bind_text(st, 1, e164);
    bind_text(st, 2, status);
    e = step_write(c, st, "number_set_status", &changes);
    if (e == ERR_OK && changes == 0)
        e = ERR_NOT_FOUND;
    return e;
}

static enum err sq_available_list(struct store_conn *base, int64_t org_id, store_number_cb cb,
                                  void *ud)
{
    return walk_org(base, ST_AVAIL, "available_list", org_id, number_row, (void *)cb, ud);
}

static enum err sq_app_create(struct store_conn *base, const struct store_app *a)
{
    struct sq_conn *c = CONN(base);
    sqlite3_stmt *st = stmt(c, ST_APP_INSERT);

    if (!st)
        return ERR_DB;
    bind_text(st, 1, a->app_id);
    sqlite3_bind_int64(st, 2, a->org_id);
    bind_text(st, 3, a->name);
    bind_text(st, 4, a->answer_url);
    bind_text(st, 5, a->answer_method);
    bind_text_or_null(st, 6, a->hangup_url);
    bind_text(st, 7, a->hangup_method);
    bind_text_or_null(st, 8, a->fallback_answer_url);
    bind_text(st, 9, a->fallback_answer_method);
    bind_text(st, 10, a->status);
    bind_i64_or_null(st, 11, a->created_by);
    sqlite3_bind_int64(st, 12, a->created_at);
    bind_i64_or_null(st, 13, a->updated_at);
    return step_write(c, st, "app_create", NULL);
}

static enum err sq_app_get(struct store_conn *base, int64_t org_id, const char *app_id,
                           struct store_app *out)
{
    struct sq_conn *c = CONN(base);
    sqlite3_stmt *st = stmt(c, ST_APP_GET);
    enum err e;

    if (!st)
        return ERR_DB;
    bind_text(st, 1, app_id);
    sqlite3_bind_int64(st, 2, org_id);
    e = step_one(c, st, "app_get");
    if (e == ERR_OK)
        row_app(st, out);
    done(st);
    return e;
}

static enum err app_row(sqlite3_stmt *st, void *cb, void *ud)
{
    struct store_app a;

    row_app(st, &a);
    return ((store_app_cb)cb)(ud, &a);
}

static enum err sq_app_list(struct store_conn *base, int64_t org_id, store_app_cb cb, void *ud)
{
    return walk_org(base, ST_APP_LIST, "app_list", org_id, app_row, (void *)cb, ud);
}

static enum err sq_app_update(struct store_conn *base, int64_t org_id, const char *app_id,
                              const struct store_app_patch *p, int64_t now, struct store_app *out)
{
    struct sq_conn *c = CONN(base);
    const struct store_app *v = &p->vals;
    sqlite3_stmt *st;
    enum err e;

    if (p->fields == 0)
        return sq_app_get(base, org_id, app_id, out);
    st = stmt(c, ST_APP_UPDATE);
    if (!st)
        return ERR_DB;
    bind_text(st, 1, app_id);
    sqlite3_bind_int64(st, 2, org_id);
    sqlite3_bind_int(st, 3, !!(p->fields & APP_F_NAME));
    bind_text(st, 4, v->name);
    sqlite3_bind_int(st, 5, !!(p->fields & APP_F_ANSWER_URL));
    bind_text(st, 6, v->answer_url);
    sqlite3_bind_int(st, 7, !!(p->fields & APP_F_ANSWER_METHOD));
    bind_text(st, 8, v->answer_method);
    sqlite3_bind_int(st, 9, !!(p->fields & APP_F_HANGUP_URL));
    bind_text_or_null(st, 10, v->hangup_url);
    sqlite3_bind_int(st, 11, !!(p->fields & APP_F_HANGUP_METHOD));
    bind_text(st, 12, v->hangup_method);
    sqlite3_bind_int(st, 13, !!(p->fields & APP_F_FALLBACK_URL));
    bind_text_or_null(st, 14, v->fallback_answer_url);
    sqlite3_bind_int(st, 15, !!(p->fields & APP_F_FALLBACK_METHOD));
    bind_text(st, 16, v->fallback_answer_method);
    sqlite3_bind_int(st, 17, !!(p->fields & APP_F_STATUS));
    bind_text(st, 18, v->status);
    sqlite3_bind_int64(st, 19, now);
    e = step_one(c, st, "app_update");
    if (e == ERR_OK) {
        row_app(st, out);
        /* Finish the statement so that the write is complete. */
        while (sqlite3_step(st) == SQLITE_ROW) {
        }
    }
    done(st);
    return e;
}

static enum err sq_app_delete(struct store_conn *base, int64_t org_id, const char *app_id,
                              int64_t now)
{
    struct sq_conn *c = CONN(base);
    sqlite3_stmt *st;
    int changes = 0;
    enum err e;

    e = tx_begin(c);
    if (e != ERR_OK)
        return e;
    st = stmt(c, ST_APP_DELETE);
    if (!st) {
        e = ERR_DB;
        goto out;
    }
    bind_text(st, 1, app_id);
    sqlite3_bind_int64(st, 2, org_id);
    e = step_write(c, st, "app_delete", &changes);
    if (e != ERR_OK)
        goto out;
    if (changes == 0) {
        e = ERR_NOT_FOUND;
        goto out;
    }
    st = stmt(c, ST_LINKS_OFF_APP);
    if (!st) {
        e = ERR_DB;
        goto out;
    }
    bind_text(st, 1, app_id);
    sqlite3_bind_int64(st, 2, now);
    e = step_write(c, st, "app_delete", NULL);
out:
    return tx_end(c, e);
}

/* ERR_OK when the org has the app, ERR_NOT_FOUND when not. */
static enum err app_exists(struct sq_conn *c, int64_t org_id, const char *app_id)
{
    sqlite3_stmt *st = stmt(c, ST_APP_EXISTS);
    enum err e;

    if (!st)
        return ERR_DB;
    bind_text(st, 1, app_id);
    sqlite3_bind_int64(st, 2, org_id);
    e = step_one(c, st, "app_exists");
    done(st);
    return e;
}

static enum err sq_link_create(struct store_conn *base, int64_t org_id, const char *app_id,
                               const char *e164, int64_t now, struct store_link *out)
{
    struct sq_conn *c = CONN(base);
    sqlite3_stmt *st;
    int64_t number_id = 0;
    char status[STATUS_MAX + 1] = "";
    enum err e;

    e = tx_begin(c);
    if (e != ERR_OK)
        return e;
    e = app_exists(c, org_id, app_id);
    if (e != ERR_OK)
        goto out;

    st = stmt(c, ST_NUM_FOR_LINK);
    if (!st) {
        e = ERR_DB;
        goto out;
    }
    bind_text(st, 1, e164);
    sqlite3_bind_int64(st, 2, org_id);
    e = step_one(c, st, "link_create");
    if (e == ERR_OK) {
        number_id = sqlite3_column_int64(st, 0);
        COL_TEXT(st, 1, status);
    }
    done(st);
    if (e == ERR_NOT_FOUND || (e == ERR_OK && strcmp(status, "ACTIVE") != 0)) {
        e = ERR_INVALID;
        goto out;
    }
    if (e != ERR_OK)
        goto out;

    st = stmt(c, ST_LINK_BY_NUM);
    if (!st) {
        e = ERR_DB;
        goto out;
    }
    sqlite3_bind_int64(st, 1, number_id);
    e = step_one(c, st, "link_create");
    if (e == ERR_OK)
        row_link(st, out);
    done(st);
    if (e == ERR_OK) {
        e = strcmp(out->app_id, app_id) == 0 ? ERR_OK : ERR_CONFLICT;
        goto out;
    }
    if (e != ERR_NOT_FOUND)
        goto out;

    st = stmt(c, ST_LINK_INSERT);
    if (!st) {
        e = ERR_DB;
        goto out;
    }
    bind_text(st, 1, app_id);
    sqlite3_bind_int64(st, 2, org_id);
    sqlite3_bind_int64(st, 3, number_id);
    bind_text(st, 4, e164);
    sqlite3_bind_int64(st, 5, now);
    e = step_write(c, st, "link_create", NULL);
    if (e == ERR_OK) {
        snprintf(out->app_id, sizeof(out->app_id), "%s", app_id);
        snprintf(out->voip_number, sizeof(out->voip_number), "%s", e164);
        out->org_id = org_id;
        memcpy(out->status, "ACTIVE", sizeof("ACTIVE"));
        out->created_at = now;
        out->updated_at = 0;
    }
out:
    return tx_end(c, e);
}

static enum err sq_link_list(struct store_conn *base, int64_t org_id, const char *app_id,
                             store_link_cb cb, void *ud)
{
    struct sq_conn *c = CONN(base);
    sqlite3_stmt *st = stmt(c, ST_LINK_LIST);
    struct store_link l;
    enum err e = ERR_NOT_FOUND;
    int rc;

    if (!st)
        return ERR_DB;
    bind_text(st, 1, app_id);
    sqlite3_bind_int64(st, 2, org_id);
    /* No row: no such app. A row with a NULL link: the app, without links. */
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        e = ERR_OK;
        if (sqlite3_column_type(st, 0) == SQLITE_NULL)
            continue;
        row_link(st, &l);
        e = cb(ud, &l);
        if (e != ERR_OK)
            break;
    }
    if ((e == ERR_OK || e == ERR_NOT_FOUND) && rc != SQLITE_DONE && rc != SQLITE_ROW)
        e = sq_err(c, rc, "link_list");
    done(st);
    return e;
}

static enum err sq_link_delete(struct store_conn *base, int64_t org_id, const char *app_id,
                               const char *e164, int64_t now, enum store_miss *miss)
{
    struct sq_conn *c = CONN(base);
    sqlite3_stmt *st;
    int changes = 0;
    enum err e;

    *miss = STORE_MISS_NONE;
    e = tx_begin(c);
    if (e != ERR_OK)
        return e;
    e = app_exists(c, org_id, app_id);
    if (e == ERR_NOT_FOUND)
        *miss = STORE_MISS_APP;
    if (e != ERR_OK)
        goto out;
    st = stmt(c, ST_LINK_OFF);
    if (!st) {
        e = ERR_DB;
        goto out;
    }
    bind_text(st, 1, app_id);
    bind_text(st, 2, e164);
    sqlite3_bind_int64(st, 3, now);
    e = step_write(c, st, "link_delete", &changes);
    if (e == ERR_OK && changes == 0) {
        *miss = STORE_MISS_LINK;
        e = ERR_NOT_FOUND;
    }
out:
    return tx_end(c, e);
}

static enum err sq_number_route(struct store_conn *base, const char *e164, int64_t *org_id,
                                char number_status[STATUS_MAX + 1], struct store_app *app)
{
    struct sq_conn *c = CONN(base);
    sqlite3_stmt *st = stmt(c, ST_NUM_ROUTE);
    enum err e;

    if (!st)
        return ERR_DB;
    bind_text(st, 1, e164);
    e = step_one(c, st, "number_route");
    if (e == ERR_OK) {
        *org_id = sqlite3_column_int64(st, 0);
        col_text(st, 1, number_status, STATUS_MAX + 1);
        /* The app's columns start at 2; row_app reads them from 0. */
        COL_TEXT(st, 2, app->app_id);
        app->org_id = sqlite3_column_int64(st, 3);
        COL_TEXT(st, 4, app->name);
        COL_TEXT(st, 5, app->answer_url);
        COL_TEXT(st, 6, app->answer_method);
        COL_TEXT(st, 7, app->hangup_url);
        COL_TEXT(st, 8, app->hangup_method);
        COL_TEXT(st, 9, app->fallback_answer_url);
        COL_TEXT(st, 10, app->fallback_answer_method);
        COL_TEXT(st, 11, app->status);
        app->created_by = sqlite3_column_int64(st, 12);
        app->created_at = sqlite3_column_int64(st, 13);
        app->updated_at = sqlite3_column_int64(st, 14);
    }
    done(st);
    return e;
}

static enum err sq_call_create(struct store_conn *base, const struct store_call *k)
{
    struct sq_conn *c = CONN(base);
    sqlite3_stmt *st = stmt(c, ST_CALL_INSERT);

    if (!st)
        return ERR_DB;
    bind_text(st, 1, k->call_uuid);
    bind_text_or_null(st, 2, k->request_uuid);
    sqlite3_bind_int64(st, 3, k->org_id);
    bind_text(st, 4, k->app_id);
    bind_text(st, 5, k->from);
    bind_text(st, 6, k->to);
    bind_text(st, 7, k->direction);
    bind_text(st, 8, k->status);
    bind_i64_or_null(st, 9, k->started_at);
    bind_i64_or_null(st, 10, k->answered_at);
    bind_i64_or_null(st, 11, k->ended_at);
    sqlite3_bind_int64(st, 12, k->duration);
    bind_text_or_null(st, 13, k->hangup_cause);
    sqlite3_bind_int64(st, 14, k->created_at);
    return step_write(c, st, "call_create", NULL);
}

static enum err sq_call_update(struct store_conn *base, const struct store_call *k)
{
    struct sq_conn *c = CONN(base);
    sqlite3_stmt *st = stmt(c, ST_CALL_UPDATE);
    int changes = 0;
    enum err e;

    if (!st)
        return ERR_DB;
    bind_text(st, 1, k->call_uuid);
    bind_text(st, 2, k->status);
    bind_i64_or_null(st, 3, k->started_at);
    bind_i64_or_null(st, 4, k->answered_at);
    bind_i64_or_null(st, 5, k->ended_at);
    sqlite3_bind_int64(st, 6, k->duration);
    bind_text_or_null(st, 7, k->hangup_cause);
    e = step_write(c, st, "call_update", &changes);
    if (e == ERR_OK && changes == 0)
        e = ERR_NOT_FOUND;
    return e;
}

static enum err sq_call_get(struct store_conn *base, int64_t org_id, const char *id,
                            struct store_call *out)
{
    struct sq_conn *c = CONN(base);
    sqlite3_stmt *st = stmt(c, ST_CALL_GET);
    enum err e;

    if (!st)
        return ERR_DB;
    sqlite3_bind_int64(st, 1, org_id);
    bind_text(st, 2, id);
    e = step_one(c, st, "call_get");
    if (e == ERR_OK)
        row_call(st, out);
    done(st);
    return e;
}

static enum err call_row(sqlite3_stmt *st, void *cb, void *ud)
{
    struct store_call k;

    row_call(st, &k);
    return ((store_call_cb)cb)(ud, &k);
}

static enum err sq_call_list(struct store_conn *base, int64_t org_id, int64_t before_seq, int limit,
                             store_call_cb cb, void *ud)
{
    struct sq_conn *c = CONN(base);
    sqlite3_stmt *st = stmt(c, ST_CALL_LIST);

    if (!st)
        return ERR_DB;
    sqlite3_bind_int64(st, 1, org_id);
    sqlite3_bind_int64(st, 2, before_seq);
    sqlite3_bind_int(st, 3, limit);
    return walk(c, st, "call_list", call_row, (void *)cb, ud);
}

static const struct store_ops sq_ops = {
    .name = "sqlite",
    .conn_close = sq_conn_close,
    .ping = sq_ping,
    .batch_begin = sq_batch_begin,
    .batch_end = sq_batch_end,
    .org_create = sq_org_create,
    .org_get = sq_org_get,
    .org_count = sq_org_count,
    .org_list = sq_org_list,
    .key_create = sq_key_create,
    .key_find = sq_key_find,
    .key_list = sq_key_list,
    .key_revoke = sq_key_revoke,
    .number_add = sq_number_add,
    .number_list = sq_number_list,
    .number_remove = sq_number_remove,
    .number_set_status = sq_number_set_status,
    .available_list = sq_available_list,
    .app_create = sq_app_create,
    .app_get = sq_app_get,
    .app_list = sq_app_list,
    .app_update = sq_app_update,
    .app_delete = sq_app_delete,
    .link_create = sq_link_create,
    .link_list = sq_link_list,
    .link_delete = sq_link_delete,
    .number_route = sq_number_route,
    .call_create = sq_call_create,
    .call_update = sq_call_update,
    .call_get = sq_call_get,
    .call_list = sq_call_list,
};

const struct store_backend store_sqlite_backend = {
    .name = "sqlite",
    .open = sq_open,
    .free = sq_free,
    .conn_open = sq_conn_open,
};

/* db_sqlite: the SQLite driver of the store, the only file that includes
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
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "core/clock.h"
#include "core/log.h"
#include "store/driver.h"
#include "store/migrate.h"

#define BUSY_TIMEOUT_MS 5000
/* store_hold's lock: a file beside the database, its path plus this. Not
 * the database file itself: a POSIX lock belongs to the process, and
 * closing any descriptor of a file drops all of the process's locks on it,
 * SQLite's own included. The file stays after the holder exits (removing
 * it would let two processes lock two different files of one name). */
#define HOLD_SUFFIX "-serve.lock"

/* Transaction control, outside the catalogue. */
enum ctl_id {
    CTL_BEGIN,
    CTL_COMMIT,
    CTL_ROLLBACK,
    CTL_SAVEPOINT,
    CTL_RELEASE,
    CTL_ROLLBACK_TO,
    CTL_COUNT
};

static const char *const ctl_sql[CTL_COUNT] = {
    [CTL_BEGIN] = "BEGIN IMMEDIATE", [CTL_COMMIT] = "COMMIT",
    [CTL_ROLLBACK] = "ROLLBACK",     [CTL_SAVEPOINT] = "SAVEPOINT op",
    [CTL_RELEASE] = "RELEASE op",    [CTL_ROLLBACK_TO] = "ROLLBACK TO op",
};

/* The longest statement of the catalogue, rewritten for SQLite, fits. */
#define SQL_TEXT_MAX 4096

struct sq_db {
    char *path;
    pthread_mutex_t writer; /* held from BEGIN IMMEDIATE to COMMIT or ROLLBACK */
    bool memory;            /* ":memory:": one shared handle, single-threaded use */
    struct sq_conn *shared; /* the in-memory database's only connection */
    int hold_fd;            /* store_hold's lock file, locked; -1 when not held */
};

struct sq_conn {
    struct db_conn base; /* first: a struct db_conn * is a struct sq_conn * */
    struct sq_db *db;
    sqlite3 *h;
    sqlite3_stmt *st[SQL_COUNT];
    sqlite3_stmt *ctl[CTL_COUNT];
    bool batch; /* inside batch_begin .. batch_end: operations nest as savepoints */
};

#define SQ(c) ((struct sq_conn *)(c))

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

/* Prepares text into *st on first use. */
static sqlite3_stmt *prepared(struct sq_conn *c, sqlite3_stmt **st, const char *text)
{
    int rc;

    if (!*st) {
        rc = sqlite3_prepare_v3(c->h, text, -1, SQLITE_PREPARE_PERSISTENT, st, NULL);
        if (rc != SQLITE_OK) {
            (void)sq_err(c, rc, "prepare");
            return NULL;
        }
    }
    return *st;
}

/* A statement of the catalogue, rewritten for SQLite and prepared on first
 * use. */
static sqlite3_stmt *stmt(struct sq_conn *c, enum sql_id id)
{
    char text[SQL_TEXT_MAX];

    if (c->st[id])
        return c->st[id];
    if (sql_for_sqlite(sql_catalogue[id].text, text, sizeof(text)) != ERR_OK) {
        log_error("msg=\"statement too long\" backend=sqlite stmt=%s", sql_catalogue[id].name);
        return NULL;
    }
    return prepared(c, &c->st[id], text);
}

static void done(sqlite3_stmt *st)
{
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
}

/* Runs a statement that returns no rows. */
static enum err exec_id(struct sq_conn *c, enum ctl_id id, const char *what)
{
    sqlite3_stmt *st = prepared(c, &c->ctl[id], ctl_sql[id]);
    int rc;

    if (!st)
        return ERR_DB;
    rc = sqlite3_step(st);
    done(st);
    return rc == SQLITE_DONE ? ERR_OK : sq_err(c, rc, what);
}

/* BEGIN IMMEDIATE in this process's writer queue; the queue is left by
 * write_end, or here when BEGIN fails. */
static enum err write_begin(struct sq_conn *c, const char *what)
{
    enum err e;

    pthread_mutex_lock(&c->db->writer);
    e = exec_id(c, CTL_BEGIN, what);
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
        e = exec_id(c, CTL_COMMIT, what);
    if ((!commit || e != ERR_OK) && !sqlite3_get_autocommit(c->h))
        (void)exec_id(c, CTL_ROLLBACK, what);
    pthread_mutex_unlock(&c->db->writer);
    return e;
}

/* An operation's transaction; inside a batch, a savepoint of the batch's. */
static enum err sq_tx_begin(struct db_conn *base)
{
    struct sq_conn *c = SQ(base);

    return c->batch ? exec_id(c, CTL_SAVEPOINT, "begin") : write_begin(c, "begin");
}

static enum err tx_commit(struct sq_conn *c)
{
    return c->batch ? exec_id(c, CTL_RELEASE, "commit") : write_end(c, true, "commit");
}

/* Ends a transaction: commits when e is ERR_OK, else rolls back and keeps e. */
static enum err sq_tx_end(struct db_conn *base, enum err e)
{
    struct sq_conn *c = SQ(base);

    if (e == ERR_OK)
        return tx_commit(c);
    if (c->batch) {
        (void)exec_id(c, CTL_ROLLBACK_TO, "rollback");
        (void)exec_id(c, CTL_RELEASE, "rollback");
    } else {
        (void)write_end(c, false, "rollback");
    }
    return e;
}

static enum err sq_batch_begin(struct db_conn *base)
{
    struct sq_conn *c = SQ(base);
    enum err e;

    if (c->batch)
        return ERR_INTERNAL;
    e = write_begin(c, "batch_begin");
    if (e == ERR_OK)
        c->batch = true;
    return e;
}

static enum err sq_batch_end(struct db_conn *base, bool commit)
{
    struct sq_conn *c = SQ(base);
    enum err e;

    if (!c->batch)
        return ERR_INTERNAL;
    c->batch = false;
    e = write_end(c, commit, "batch_end");
    return commit ? e : ERR_OK;
}

/* Single statements need nothing around them: SQLite runs each one
 * atomically, inside a batch too (a failed one undoes only itself). */
static enum err sq_op_begin(struct db_conn *c)
{
    (void)c;
    return ERR_OK;
}

static enum err sq_op_end(struct db_conn *c, enum err e)
{
    (void)c;
    return e;
}

/* Writers queue for one lock: there are no serialization failures to retry. */
static bool sq_again(struct db_conn *c, enum err e, int *attempt)
{
    (void)c, (void)e, (void)attempt;
    return false;
}

static void bind(sqlite3_stmt *st, const struct db_args *args)
{
    const struct db_arg *a;
    int i;

    for (i = 0; args && i < args->n; i++) {
        a = &args->v[i];
        switch (a->type) {
        case DB_NULL: sqlite3_bind_null(st, i + 1); break;
        case DB_TEXT: sqlite3_bind_text(st, i + 1, a->p, -1, SQLITE_STATIC); break;
        case DB_I64:
        case DB_BOOL: sqlite3_bind_int64(st, i + 1, a->i); break;
        case DB_BLOB: sqlite3_bind_blob(st, i + 1, a->p, a->len, SQLITE_STATIC); break;
        }
    }
}

/* The current row of st, as the operations read it. Each column is read
 * through its sqlite3_value: one call to find it instead of one per
 * accessor, each of which would look the column up again (about half of
 * the cost of a 100-row list went there). The value is unprotected, which
 * is safe here because only the connection's own thread ever uses it. */
static void row_read(sqlite3_stmt *st, struct db_row *r)
{
    struct db_col *col;
    sqlite3_value *v;
    int i;

    r->n = sqlite3_column_count(st);
    if (r->n > DB_MAX_COLS)
        r->n = DB_MAX_COLS;
    for (i = 0; i < r->n; i++) {
        col = &r->col[i];
        memset(col, 0, sizeof(*col));
        v = sqlite3_column_value(st, i);
        switch (sqlite3_value_type(v)) {
        case SQLITE_NULL: col->null = true; break;
        case SQLITE_INTEGER:
            col->is_int = true;
            col->i = sqlite3_value_int64(v);
            break;
        default:
            col->s = (const char *)sqlite3_value_text(v);
            col->len = col->s ? (size_t)sqlite3_value_bytes(v) : 0;
            col->null = !col->s;
            break;
        }
    }
}

/* Steps the statement to its end, handing rows to fn until fn fails. */
static enum err sq_run(struct db_conn *base, enum sql_id id, const struct db_args *args,
                       const char *what, db_row_fn fn, void *ud, int64_t *changes)
{
    struct sq_conn *c = SQ(base);
    sqlite3_stmt *st = stmt(c, id);
    struct db_row row;
    enum err e = ERR_OK;
    int rc;

    if (!st)
        return ERR_DB;
    bind(st, args);
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (!fn)
            continue;
        row_read(st, &row);
        e = fn(ud, &row);
        if (e != ERR_OK)
            break;
    }
    if (e == ERR_OK && rc != SQLITE_DONE)
        e = sq_err(c, rc, what);
    if (e == ERR_OK && changes)
        *changes = sqlite3_changes(c->h);
    sqlite3_reset(st);
    sqlite3_clear_bindings(st);
    return e;
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
    c->base.base.ops = &store_ops_sqlite;
    c->base.drv = &db_sqlite_driver;
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

    for (i = 0; i < SQL_COUNT; i++)
        sqlite3_finalize(c->st[i]);
    for (i = 0; i < CTL_COUNT; i++)
        sqlite3_finalize(c->ctl[i]);
    sqlite3_close_v2(c->h);
    free(c);
}

static void sq_conn_close(struct db_conn *base)
{
    struct sq_conn *c = SQ(base);

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
    db->hold_fd = -1;
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

/* ---- a database file held, commands ---- */

/* Writes the holder's pid into the lock file, for whoever looks at it; the
 * lock, not the text, is what counts. */
static void hold_note_pid(int fd)
{
    char pid[24];
    int n = snprintf(pid, sizeof(pid), "%ld\n", (long)getpid());

    if (ftruncate(fd, 0) != 0 || pwrite(fd, pid, (size_t)n, 0) != n)
        log_warn("msg=\"cannot write pid to database lock file\" errno=%d", errno);
}

/* A write lock on the whole lock file. The kernel drops it when the
 * process exits, however it exits, and it is not inherited across fork. */
static enum err sq_hold(void *impl, long *holder)
{
    struct sq_db *db = impl;
    struct flock fl;
    char *real, *lock;
    size_t n;
    int fd, tries;
    enum err e = ERR_CONFLICT;

    *holder = 0;
    if (db->memory || db->hold_fd >= 0)
        return ERR_OK; /* private to this process, or held already */
    /* One lock file whatever path names the database (open created it). */
    real = realpath(db->path, NULL);
    if (!real) {
        log_error("msg=\"cannot resolve database path\" errno=%d", errno);
        return ERR_UNAVAILABLE;
    }
    n = strlen(real) + sizeof(HOLD_SUFFIX);
    lock = malloc(n);
    if (!lock) {
        free(real);
        return ERR_NOMEM;
    }
    snprintf(lock, n, "%s%s", real, HOLD_SUFFIX);
    free(real);
    fd = open(lock, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        log_error("msg=\"cannot open database lock file\" errno=%d", errno);
        e = ERR_UNAVAILABLE;
        goto out_lock;
    }
    /* A holder that exits between our attempt and our question leaves no
     * one to name: try again. */
    for (tries = 0; tries < 3; tries++) {
        memset(&fl, 0, sizeof(fl));
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET; /* l_start 0, l_len 0: the whole file */
        if (fcntl(fd, F_SETLK, &fl) == 0) {
            hold_note_pid(fd);
            db->hold_fd = fd;
            free(lock);
            return ERR_OK;
        }
        if (errno != EACCES && errno != EAGAIN) {
            log_error("msg=\"cannot lock database lock file\" errno=%d", errno);
            e = ERR_UNAVAILABLE;
            break;
        }
        memset(&fl, 0, sizeof(fl));
        fl.l_type = F_WRLCK;
        fl.l_whence = SEEK_SET;
        if (fcntl(fd, F_GETLK, &fl) == 0 && fl.l_type != F_UNLCK) {
            *holder = (long)fl.l_pid;
            break;
        }
    }
    close(fd);
out_lock:
    free(lock);
    return e;
}

static enum err sq_notify(struct db_conn *c, const char *payload)
{
    (void)c, (void)payload;
    return ERR_OK;
}

/* One process serves a SQLite database (store_hold): there is no one else
 * to be woken by, and a wait is a sleep. */
static enum err sq_wait(struct db_conn *c, int timeout_ms, bool *woke)
{
    struct timespec ts = {timeout_ms / 1000, (long)(timeout_ms % 1000) * 1000000};

    (void)c;
    *woke = false;
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
    return ERR_OK;
}

static void sq_free(void *impl)
{
    struct sq_db *db = impl;

    if (db->shared)
        conn_free(db->shared);
    if (db->hold_fd >= 0)
        close(db->hold_fd); /* and with it the lock */
    pthread_mutex_destroy(&db->writer);
    free(db->path);
    free(db);
}

static enum err sq_conn_open(void *impl, struct db_conn **out)
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

const struct db_driver db_sqlite_driver = {
    .name = "sqlite",
    .open = sq_open,
    .free = sq_free,
    .conn_open = sq_conn_open,
    .conn_close = sq_conn_close,
    .op_begin = sq_op_begin,
    .op_end = sq_op_end,
    .tx_begin = sq_tx_begin,
    .tx_end = sq_tx_end,
    .batch_begin = sq_batch_begin,
    .batch_end = sq_batch_end,
    .run = sq_run,
    .again = sq_again,
    .hold = sq_hold,
    .notify = sq_notify,
    .wait = sq_wait,
};

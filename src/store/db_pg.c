/* db_pg: the PostgreSQL driver of the store, the only file that includes
 * libpq-fe.h.
 * One libpq session per thread, never shared; statements are prepared on
 * first use in each session and prepared again after a reconnect. A
 * connection object outlives its session: when the server goes away the
 * current operation fails fast with ERR_UNAVAILABLE, and a later call
 * reconnects (at most one attempt per RECONNECT_INTERVAL_MS). Transactions
 * run at READ COMMITTED and take row locks where two nodes could race; a
 * serialization failure or deadlock is retried a bounded number of times.
 * Inside a batch every operation is a savepoint of the batch's transaction,
 * and a lost session ends the batch instead of reconnecting under it.
 * Every round trip to the server has a deadline (ROUND_TRIP_MS): a server
 * that stops answering costs a request one deadline, never a hung thread.
 * No SQL text is built at run time and no driver text reaches a caller. */
#include <assert.h>
#include <errno.h>
#include <inttypes.h>
#include <libpq-fe.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/clock.h"
#include "core/log.h"
#include "core/parse.h"
#include "store/driver.h"
#include "store/migrate.h"

/* Defaults for the session; a parameter in the URL overrides each of them.
 * libpq does not accept a connect timeout under 2 s. It bounds each address
 * tried, including a server that accepts the TCP connection (its kernel
 * does) but never answers the startup message. */
#define CONNECT_TIMEOUT_S "2"
/* The kernel drops a connection whose data or keepalive probes stay
 * unacknowledged this long (a network partition); the kernel of a server
 * that is stopped or hung still acknowledges, which only ROUND_TRIP_MS
 * catches. */
#define TCP_USER_TIMEOUT_MS "10000"
/* A request waits at most lock_timeout for a row lock held by someone else
 * (our own transactions hold theirs for milliseconds). statement_timeout
 * bounds a whole statement, lock wait included, on the server's side: a
 * server that is slow but alive reports it as an error and the session
 * stays usable. */
#define SESSION_OPTIONS "-c lock_timeout=5s -c statement_timeout=6s"
/* The client's own bound on one round trip: sending a statement and reading
 * all of its results. It is for a server that does not answer at all (hung,
 * stopped, or cut off by the network, which TCP keepalives take some 25 s to
 * notice), so it exceeds statement_timeout by a margin: a server that is
 * only slow, or waiting for a lock, ends the statement itself first, with an
 * error on a session that stays usable. When the deadline passes, the
 * session is dropped (the server rolls back whatever it had open) and the
 * operation fails with ERR_UNAVAILABLE, as when the connection is lost. A
 * request may make several round trips, but once one has timed out the rest
 * fail at once (see RECONNECT_INTERVAL_MS). */
#define ROUND_TRIP_MS 8000
/* The channel of cmd_post's wake-ups (SIP.md section 5). */
#define NOTIFY_CHANNEL "sfvopi_cmd"
/* Schema migrations wait for each other (an advisory lock, without lock or
 * statement timeouts) and may rewrite a large table, so their round trips
 * get a long bound instead. A node that is starting serves nothing yet: a
 * server that hangs just then only makes it exit late. */
#define MIGRATION_ROUND_TRIP_MS (10 * 60 * 1000)
/* While the server is unreachable, a connection tries again at most this
 * often, so that requests fail at once instead of each waiting to connect. */
#define RECONNECT_INTERVAL_MS 500
/* Attempts of one operation that hits a serialization failure or deadlock. */
#define TX_ATTEMPTS 5
/* The key of the advisory lock that serializes schema migrations of one
 * database ("sfvopi" in ASCII). */
#define MIGRATION_LOCK_SQL "SELECT pg_advisory_xact_lock(126883910873193)"

struct pg_db {
    char *url; /* may hold a password: never logged */
};

struct pg_conn {
    struct db_conn base; /* first: a struct db_conn * is a struct pg_conn * */
    struct pg_db *db;
    PGconn *h;                /* NULL while disconnected */
    bool prepared[SQL_COUNT]; /* in the current session */
    int64_t next_connect_ms;  /* monotonic: no connection attempt before this */
    bool down;                /* the last attempt failed (logged once per outage) */
    bool retry;               /* the last error was a serialization failure or deadlock */
    bool batch;               /* inside batch_begin .. batch_end: one open transaction */
    bool listening;           /* the current session has run LISTEN (cmd_wait) */
};

/* Bound query parameters, all in text format except bytea. */
struct params {
    int n;
    const char *v[DB_MAX_ARGS];
    int len[DB_MAX_ARGS];
    int fmt[DB_MAX_ARGS];
    char num[DB_MAX_ARGS][24];
};

#define PG(c) ((struct pg_conn *)(c))

/* ---- parameters and rows ---- */

static void p_text(struct params *p, const char *s)
{
    /* Parameter counts are fixed by the catalogue, never by input. */
    assert(p->n < DB_MAX_ARGS);
    p->v[p->n] = s;
    p->len[p->n] = 0;
    p->fmt[p->n] = 0;
    p->n++;
}

static void p_i64(struct params *p, int64_t v)
{
    assert(p->n < DB_MAX_ARGS);
    snprintf(p->num[p->n], sizeof(p->num[0]), "%" PRId64, v);
    p_text(p, p->num[p->n]);
}

/* The operation's arguments as libpq takes them. */
static void params_from(struct params *p, const struct db_args *args)
{
    const struct db_arg *a;
    int i;

    p->n = 0;
    for (i = 0; args && i < args->n; i++) {
        a = &args->v[i];
        switch (a->type) {
        case DB_NULL: p_text(p, NULL); break;
        case DB_TEXT: p_text(p, a->p); break;
        case DB_I64: p_i64(p, a->i); break;
        case DB_BOOL: p_text(p, a->i ? "t" : "f"); break;
        case DB_BLOB:
            p_text(p, a->p);
            p->len[p->n - 1] = a->len;
            p->fmt[p->n - 1] = 1;
            break;
        }
    }
}

/* Row 0 of a single-row result, as the operations read it (text, which
 * they parse where they want an integer). */
static void row_read(const PGresult *r, struct db_row *row)
{
    struct db_col *col;
    int i;

    row->n = PQnfields(r);
    if (row->n > DB_MAX_COLS)
        row->n = DB_MAX_COLS;
    for (i = 0; i < row->n; i++) {
        col = &row->col[i];
        memset(col, 0, sizeof(*col));
        col->null = PQgetisnull(r, 0, i);
        if (!col->null) {
            col->s = PQgetvalue(r, 0, i);
            col->len = (size_t)PQgetlength(r, 0, i);
        }
    }
}

/* ---- errors ---- */

/* Logs a driver message as one quoted value (messages end in newlines). */
static void log_pg(enum log_level level, const char *msg, const char *what, const char *state,
                   const char *text)
{
    char q[512];
    size_t n = text ? strlen(text) : 0;

    while (n && (text[n - 1] == '\n' || text[n - 1] == ' '))
        n--;
    log_quote(q, sizeof(q), text ? text : "", n);
    log_write(level, "msg=\"%s\" backend=postgresql op=%s sqlstate=%s err=%s", msg, what,
              state && state[0] ? state : "-", q);
}

static bool state_is(const char *state, const char *want)
{
    return state && strcmp(state, want) == 0;
}

static bool state_class(const char *state, const char *cls)
{
    return state && strncmp(state, cls, 2) == 0;
}

/* Maps a failed result (r may be NULL) to our error and logs the driver's
 * text, which never goes further. Marks serialization failures and deadlocks
 * as retryable. A broken session is noticed by the next call, which
 * reconnects. */
static enum err res_err(struct pg_conn *c, const PGresult *r, const char *what)
{
    const char *state = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL;
    const char *text = r ? PQresultErrorField(r, PG_DIAG_MESSAGE_PRIMARY) : NULL;

    if (PQstatus(c->h) != CONNECTION_OK) {
        log_pg(LOG_WARN, "database connection lost", what, state, PQerrorMessage(c->h));
        return ERR_UNAVAILABLE;
    }
    if (state_is(state, "23505"))
        return ERR_CONFLICT; /* unique_violation */
    if (state_is(state, "23503"))
        return ERR_NOT_FOUND; /* foreign_key_violation: the org does not exist */
    if (state_is(state, "22021")) {
        /* Text that is not UTF-8 (the API validates its input; the CLI may not). */
        log_pg(LOG_WARN, "text refused by database", what, state, text);
        return ERR_INVALID;
    }
    if (state_is(state, "40001") || state_is(state, "40P01")) {
        log_pg(LOG_WARN, "transaction conflict", what, state, text);
        c->retry = true;
        return ERR_UNAVAILABLE;
    }
    /* Connection exceptions, shutdown, too many connections, lock and
     * statement timeouts: the database is there but cannot serve now. */
    if (state_class(state, "08") || state_class(state, "53") || state_class(state, "57") ||
        state_is(state, "55P03")) {
        log_pg(LOG_WARN, "database unavailable", what, state, text);
        return ERR_UNAVAILABLE;
    }
    log_pg(LOG_ERROR, "database error", what, state,
           text ? text : (r ? PQresultErrorMessage(r) : PQerrorMessage(c->h)));
    return ERR_DB;
}

/* ---- round trips ---- */

/* How waiting for the server ended. */
enum wait {
    WAIT_OK,      /* done: the next step may follow */
    WAIT_FAILED,  /* libpq failed: the session is lost, or out of memory */
    WAIT_TIMEOUT, /* the deadline passed first */
};

/* One statement as libpq sends it. */
struct query {
    enum { Q_TEXT, Q_PREPARE, Q_PREPARED, Q_PARAMS } kind;
    const char *name;       /* Q_PREPARE, Q_PREPARED: the prepared statement */
    const char *sql;        /* Q_TEXT (maybe several statements), Q_PREPARE, Q_PARAMS */
    const struct params *p; /* Q_PREPARED, Q_PARAMS: NULL for none */
};

static bool result_ok(const PGresult *r)
{
    ExecStatusType st = PQresultStatus(r); /* PGRES_FATAL_ERROR for NULL */

    return st == PGRES_COMMAND_OK || st == PGRES_TUPLES_OK;
}

/* Waits until h's socket is ready for events or deadline_ms (monotonic)
 * has passed. An error or a hangup counts as ready: libpq reports it next. */
static enum wait wait_socket(PGconn *h, short events, int64_t deadline_ms)
{
    struct pollfd pfd;
    int64_t left;
    int n;

    for (;;) {
        left = deadline_ms - clock_mono_ms();
        if (left <= 0)
            return WAIT_TIMEOUT;
        pfd.fd = PQsocket(h);
        if (pfd.fd < 0)
            return WAIT_FAILED;
        pfd.events = events;
        pfd.revents = 0;
        n = poll(&pfd, 1, left > INT_MAX ? INT_MAX : (int)left);
        if (n > 0)
            return WAIT_OK;
        if (n < 0 && errno != EINTR)
            return WAIT_FAILED;
    }
}

/* Sends what libpq holds for h. While the server does not take it, h reads
 * what the server sends (as libpq asks), so neither side waits for the other. */
static enum wait flush_out(PGconn *h, int64_t deadline_ms)
{
    enum wait w;
    int r;

    while ((r = PQflush(h)) == 1) {
        w = wait_socket(h, POLLIN | POLLOUT, deadline_ms);
        if (w != WAIT_OK)
            return w;
        if (!PQconsumeInput(h))
            return WAIT_FAILED;
    }
    return r == 0 ? WAIT_OK : WAIT_FAILED;
}

/* Sends q on h, in single-row mode when single_row. */
static enum wait query_start(PGconn *h, const struct query *q, bool single_row, int64_t deadline_ms)
{
    static const struct params none;
    const struct params *p = q->p ? q->p : &none;
    int sent = 0;

    switch (q->kind) {
    case Q_TEXT: sent = PQsendQuery(h, q->sql); break;
    case Q_PREPARE: sent = PQsendPrepare(h, q->name, q->sql, 0, NULL); break;
    case Q_PREPARED: sent = PQsendQueryPrepared(h, q->name, p->n, p->v, p->len, p->fmt, 0); break;
    case Q_PARAMS: sent = PQsendQueryParams(h, q->sql, p->n, NULL, p->v, p->len, p->fmt, 0); break;
    }
    if (!sent)
        return WAIT_FAILED;
    if (single_row)
        (void)PQsetSingleRowMode(h);
    return flush_out(h, deadline_ms);
}

/* Waits for h's next result; *out is NULL once the statement has no more. */
static enum wait query_next(PGconn *h, int64_t deadline_ms, PGresult **out)
{
    enum wait w;

    *out = NULL;
    while (PQisBusy(h)) {
        w = wait_socket(h, POLLIN, deadline_ms);
        if (w != WAIT_OK)
            return w;
        if (!PQconsumeInput(h))
            return WAIT_FAILED;
    }
    *out = PQgetResult(h);
    return WAIT_OK;
}

/* One round trip on h: sends q and reads all of its results before
 * deadline_ms. Like PQexec, *out is then the first failed result if there is
 * one, else the last (NULL when libpq made none); the caller clears it. On
 * anything but WAIT_OK *out is NULL and the session is mid-statement unless
 * the statement could not even be sent. */
static enum wait query_run(PGconn *h, const struct query *q, int64_t deadline_ms, PGresult **out)
{
    PGresult *r, *keep = NULL;
    enum wait w = query_start(h, q, false, deadline_ms);

    while (w == WAIT_OK) {
        w = query_next(h, deadline_ms, &r);
        if (w != WAIT_OK || !r)
            break;
        if (keep && !result_ok(keep)) {
            PQclear(r);
            continue;
        }
        PQclear(keep);
        keep = r;
    }
    if (w != WAIT_OK) {
        PQclear(keep);
        keep = NULL;
    }
    *out = keep;
    return w;
}

/* ---- sessions ---- */

/* libpq prints notices on stderr by default; ours go to the log. */
static void on_notice(void *arg, const char *message)
{
    (void)arg;
    if (log_enabled(LOG_DEBUG))
        log_pg(LOG_DEBUG, "database notice", "notice", NULL, message);
}

/* Session defaults, as libpq keywords. */
static const struct {
    const char *key, *val;
} session_defaults[] = {
    {"connect_timeout", CONNECT_TIMEOUT_S},
    {"application_name", "sfvopi"},
    {"client_encoding", "UTF8"},
    {"keepalives", "1"},
    {"keepalives_idle", "10"},
    {"keepalives_interval", "5"},
    {"keepalives_count", "3"},
    {"tcp_user_timeout", TCP_USER_TIMEOUT_MS},
    {"options", SESSION_OPTIONS},
};

#define N_DEFAULTS (sizeof(session_defaults) / sizeof(session_defaults[0]))

/* Opens a session to url. The defaults come first so that the URL's own
 * parameters override them (libpq keeps the last value of a keyword). The
 * session is put in nonblocking mode: libpq then never waits on the socket
 * by itself (round trips wait in wait_socket, until their deadline), and
 * PQfinish never blocks saying goodbye to a server that does not read.
 * Check the result with session_ok. */
static PGconn *session_open(const char *url)
{
    const char *keys[N_DEFAULTS + 2], *vals[N_DEFAULTS + 2];
    PGconn *h;
    size_t i;

    for (i = 0; i < N_DEFAULTS; i++) {
        keys[i] = session_defaults[i].key;
        vals[i] = session_defaults[i].val;
    }
    keys[i] = "dbname"; /* expanded: the URL */
    vals[i] = url;
    keys[i + 1] = vals[i + 1] = NULL;
    h = PQconnectdbParams(keys, vals, 1);
    if (h) {
        PQsetNoticeProcessor(h, on_notice, NULL);
        if (PQstatus(h) == CONNECTION_OK)
            (void)PQsetnonblocking(h, 1);
    }
    return h;
}

/* True when session_open connected h and made it nonblocking. */
static bool session_ok(const PGconn *h)
{
    return PQstatus(h) == CONNECTION_OK && PQisnonblocking(h);
}

static void session_drop(struct pg_conn *c)
{
    PQfinish(c->h);
    c->h = NULL;
    memset(c->prepared, 0, sizeof(c->prepared));
    c->listening = false;
}

/* Gives up a session that is in the middle of a statement the server has
 * not answered in time (or that libpq could not wait on). A statement
 * cannot be taken back once sent, and PQcancel would block on a hung server
 * too; once the server sees the socket closed it rolls back whatever the
 * session had open. The next connection attempt waits RECONNECT_INTERVAL_MS,
 * so that requests meanwhile fail at once instead of each waiting out the
 * connect timeout on a server that may still be hung. */
static enum err session_abandon(struct pg_conn *c, enum wait w, const char *what)
{
    if (w == WAIT_TIMEOUT)
        log_warn("msg=\"database did not answer in time, session dropped\" backend=postgresql "
                 "op=%s timeout_ms=%d",
                 what, ROUND_TRIP_MS);
    else
        log_pg(LOG_WARN, "cannot wait for database, session dropped", what, NULL,
               PQerrorMessage(c->h));
    session_drop(c);
    c->down = true; /* logged: the outage's connect failures are not */
    c->next_connect_ms = clock_mono_ms() + RECONNECT_INTERVAL_MS;
    return ERR_UNAVAILABLE;
}

/* Maps a round trip that ended early (w, not WAIT_OK) to our error. */
static enum err wait_err(struct pg_conn *c, enum wait w, const char *what)
{
    if (w == WAIT_TIMEOUT ||
        (PQstatus(c->h) == CONNECTION_OK && PQtransactionStatus(c->h) == PQTRANS_ACTIVE))
        return session_abandon(c, w, what);
    return res_err(c, NULL, what); /* not sent, or the connection is lost */
}

/* One round trip on c's session, within ROUND_TRIP_MS. On ERR_OK and out !=
 * NULL, *out is the result, which the caller must PQclear. */
static enum err run(struct pg_conn *c, const struct query *q, const char *what, PGresult **out)
{
    PGresult *r = NULL;
    enum wait w;
    enum err e;

    if (!c->h)
        return ERR_UNAVAILABLE; /* abandoned earlier in this operation */
    w = query_run(c->h, q, clock_mono_ms() + ROUND_TRIP_MS, &r);
    if (w != WAIT_OK)
        return wait_err(c, w, what);
    if (!result_ok(r)) {
        e = res_err(c, r, what);
        PQclear(r);
        return e;
    }
    if (out)
        *out = r;
    else
        PQclear(r);
    return ERR_OK;
}

/* Runs a statement without parameters (transaction control). */
static enum err exec_simple(struct pg_conn *c, const char *sql, const char *what)
{
    const struct query q = {Q_TEXT, NULL, sql, NULL};

    return run(c, &q, what, NULL);
}

/* Runs transaction control whose failure changes nothing for the caller (a
 * rollback after an error); nothing to do when the session is gone. */
static void exec_quiet(struct pg_conn *c, const char *sql, const char *what)
{
    if (PQstatus(c->h) == CONNECTION_OK)
        (void)exec_simple(c, sql, what);
}

/* True when an idle session is still usable. A server that shut down or
 * killed the session has sent an error and closed the socket; reading
 * that input now makes libpq mark the session bad before we send a
 * statement on it, so the statement is never lost in a dead session. */
static bool session_alive(struct pg_conn *c)
{
    struct pollfd pfd;
    int i;

    for (i = 0; i < 4 && PQstatus(c->h) == CONNECTION_OK; i++) {
        pfd.fd = PQsocket(c->h);
        pfd.events = POLLIN;
        pfd.revents = 0;
        if (pfd.fd < 0)
            return false;
        if (poll(&pfd, 1, 0) <= 0)
            break;
        if (!PQconsumeInput(c->h))
            break;
    }
    return PQstatus(c->h) == CONNECTION_OK;
}

/* Connects c, within the connect timeout for each address tried. */
static enum err session_connect(struct pg_conn *c)
{
    c->h = session_open(c->db->url);
    if (!c->h)
        return ERR_NOMEM;
    if (!session_ok(c->h)) {
        if (!c->down)
            log_pg(LOG_ERROR, "cannot connect to database", "connect", NULL, PQerrorMessage(c->h));
        c->down = true;
        session_drop(c);
        return ERR_UNAVAILABLE;
    }
    if (c->down)
        log_info("msg=\"database reconnected\" backend=postgresql");
    c->down = false;
    return ERR_OK;
}

/* Makes sure the connection has a live, idle session, reconnecting when
 * the last one was lost. While the server is unreachable this fails at once
 * with ERR_UNAVAILABLE, except for one attempt per RECONNECT_INTERVAL_MS. */
static enum err conn_ready(struct pg_conn *c)
{
    enum err e;

    c->retry = false;
    if (c->batch) {
        /* The batch's transaction lives in this session: never reconnect
         * under it (later operations would silently run outside it). */
        if (c->h && session_alive(c) && PQtransactionStatus(c->h) == PQTRANS_INTRANS)
            return ERR_OK;
        return ERR_UNAVAILABLE;
    }
    if (c->h && session_alive(c)) {
        switch (PQtransactionStatus(c->h)) {
        case PQTRANS_IDLE: return ERR_OK;
        case PQTRANS_INTRANS:
        case PQTRANS_INERROR:
            /* Left inside a transaction by an operation that failed half-way. */
            if (exec_simple(c, "ROLLBACK", "rollback") == ERR_OK &&
                PQtransactionStatus(c->h) == PQTRANS_IDLE)
                return ERR_OK;
            break;
        default: break; /* mid-statement: only a new session is sure to be idle */
        }
    }
    if (c->h) {
        log_warn("msg=\"database session closed, reconnecting\" backend=postgresql");
        session_drop(c);
    }
    if (clock_mono_ms() < c->next_connect_ms)
        return ERR_UNAVAILABLE;
    e = session_connect(c);
    if (e != ERR_OK)
        c->next_connect_ms = clock_mono_ms() + RECONNECT_INTERVAL_MS;
    return e;
}

/* Prepares statement id of the catalogue in this session on first use. */
static enum err prepare(struct pg_conn *c, enum sql_id id)
{
    const struct query q = {Q_PREPARE, sql_catalogue[id].name, sql_catalogue[id].text, NULL};
    enum err e;

    if (c->prepared[id])
        return ERR_OK;
    e = run(c, &q, "prepare", NULL);
    if (e == ERR_OK)
        c->prepared[id] = true;
    return e;
}

/* Runs statement id of the catalogue, reading the rows one at a time
 * (single-row mode) so that a long list is never held in memory whole, and
 * handing each to fn. The callback's error stops the rows and becomes the
 * result. The whole statement is one round trip, within ROUND_TRIP_MS. */
static enum err pg_run(struct db_conn *base, enum sql_id id, const struct db_args *args,
                       const char *what, db_row_fn fn, void *ud, int64_t *changes)
{
    struct pg_conn *c = PG(base);
    struct params p;
    const struct query q = {Q_PREPARED, sql_catalogue[id].name, NULL, &p};
    struct db_row row;
    int64_t deadline_ms, n;
    PGresult *r;
    enum wait w;
    enum err e = ERR_OK, qe;

    qe = prepare(c, id);
    if (qe != ERR_OK)
        return qe;
    if (!c->h)
        return ERR_UNAVAILABLE;
    params_from(&p, args);
    deadline_ms = clock_mono_ms() + ROUND_TRIP_MS;
    w = query_start(c->h, &q, true, deadline_ms);
    /* Read to the end even after the callback stopped: the session must be
     * idle again before it is used for anything else. */
    while (w == WAIT_OK) {
        w = query_next(c->h, deadline_ms, &r);
        if (w != WAIT_OK || !r)
            break;
        switch (PQresultStatus(r)) {
        case PGRES_SINGLE_TUPLE:
            if (e == ERR_OK && qe == ERR_OK && fn) {
                row_read(r, &row);
                e = fn(ud, &row);
            }
            break;
        case PGRES_TUPLES_OK:
        case PGRES_COMMAND_OK:
            if (changes && parse_i64(PQcmdTuples(r), 0, INT64_MAX, &n) == ERR_OK)
                *changes = n;
            break;
        default:
            if (qe == ERR_OK)
                qe = res_err(c, r, what);
            break;
        }
        PQclear(r);
    }
    if (w != WAIT_OK)
        qe = wait_err(c, w, what);
    return e != ERR_OK ? e : qe;
}

/* Commits the open transaction. ERR_DB when the server rolled back instead
 * (it answers ROLLBACK to the COMMIT of a failed transaction). */
static enum err tx_commit(struct pg_conn *c, const char *what)
{
    const struct query q = {Q_TEXT, NULL, "COMMIT", NULL};
    PGresult *r = NULL;
    enum err e = run(c, &q, what, &r);

    if (e == ERR_OK && strcmp(PQcmdStatus(r), "COMMIT") != 0)
        e = ERR_DB;
    PQclear(r);
    return e;
}

/* An operation's transaction. Inside a batch the operation's savepoint
 * (op_begin) already makes it one unit. */
static enum err pg_tx_begin(struct db_conn *base)
{
    struct pg_conn *c = PG(base);

    if (c->batch)
        return ERR_OK;
    return exec_simple(c, "BEGIN ISOLATION LEVEL READ COMMITTED", "begin");
}

/* Ends a transaction: commits when e is ERR_OK, else rolls back and keeps e.
 * A COMMIT that gets no answer is ERR_UNAVAILABLE: the transaction may or
 * may not have been committed, and the caller never reports success. */
static enum err pg_tx_end(struct db_conn *base, enum err e)
{
    struct pg_conn *c = PG(base);

    if (c->batch)
        return e; /* op_end releases or rolls back the savepoint */
    if (e == ERR_OK)
        return tx_commit(c, "commit");
    if (PQtransactionStatus(c->h) != PQTRANS_IDLE)
        exec_quiet(c, "ROLLBACK", "rollback");
    return e;
}

/* Starts an operation: a live session and, inside a batch, a savepoint. In
 * PostgreSQL any error aborts the whole transaction; the savepoint lets a
 * failed operation undo only itself, as the batch contract requires. */
static enum err pg_op_begin(struct db_conn *base)
{
    struct pg_conn *c = PG(base);
    enum err e = conn_ready(c);

    if (e != ERR_OK || !c->batch)
        return e;
    return exec_simple(c, "SAVEPOINT op", "savepoint");
}

/* Ends an operation that op_begin started, keeping its result e (or the
 * error of releasing its savepoint). */
static enum err pg_op_end(struct db_conn *base, enum err e)
{
    struct pg_conn *c = PG(base);

    if (!c->batch)
        return e;
    if (PQstatus(c->h) != CONNECTION_OK)
        return e != ERR_OK ? e : ERR_UNAVAILABLE;
    if (e == ERR_OK)
        return exec_simple(c, "RELEASE op", "savepoint");
    exec_quiet(c, "ROLLBACK TO op", "savepoint");
    exec_quiet(c, "RELEASE op", "savepoint");
    return e;
}

/* Decides whether to run an operation again after e: only for serialization
 * failures and deadlocks (which the server has rolled back), at most
 * TX_ATTEMPTS times in all, after a short, growing, jittered pause. */
static bool pg_again(struct db_conn *base, enum err e, int *attempt)
{
    struct pg_conn *c = PG(base);
    struct timespec ts;
    int64_t ms;

    if (e == ERR_OK || !c->retry)
        return false;
    if (++*attempt >= TX_ATTEMPTS) {
        log_warn("msg=\"giving up after transaction conflicts\" backend=postgresql attempts=%d",
                 *attempt);
        return false;
    }
    ms = (int64_t)(2 << *attempt) + clock_mono_ns() % 7;
    ts.tv_sec = 0;
    ts.tv_nsec = (long)(ms * 1000000);
    nanosleep(&ts, NULL);
    return true;
}

static enum err pg_batch_begin(struct db_conn *base)
{
    struct pg_conn *c = PG(base);
    enum err e;

    if (c->batch)
        return ERR_INTERNAL;
    e = conn_ready(c);
    if (e != ERR_OK)
        return e;
    e = exec_simple(c, "BEGIN ISOLATION LEVEL READ COMMITTED", "batch_begin");
    if (e == ERR_OK)
        c->batch = true;
    return e;
}

/* A session lost inside the batch took the batch with it: nothing was
 * committed, and the next operation reconnects. */
static enum err pg_batch_end(struct db_conn *base, bool commit)
{
    struct pg_conn *c = PG(base);
    enum err e;

    if (!c->batch)
        return ERR_INTERNAL;
    c->batch = false;
    if (!c->h || PQstatus(c->h) != CONNECTION_OK)
        return ERR_UNAVAILABLE;
    if (!commit) {
        exec_quiet(c, "ROLLBACK", "batch_end");
        return ERR_OK;
    }
    e = tx_commit(c, "batch_end");
    if (e != ERR_OK && PQtransactionStatus(c->h) != PQTRANS_IDLE)
        exec_quiet(c, "ROLLBACK", "batch_end");
    return e;
}

/* ---- commands across nodes ---- */

/* NOTIFY takes effect when the transaction commits, so a waiter woken by
 * it finds the command stored. */
static enum err pg_notify(struct db_conn *base, const char *payload)
{
    struct params p = {0};
    const struct query q = {Q_PARAMS, NULL, "SELECT pg_notify('" NOTIFY_CHANNEL "', $1)", &p};

    p_text(&p, payload);
    return run(PG(base), &q, "notify", NULL);
}

/* Drops the notifications libpq has read; true when there was one. */
static bool notified(struct pg_conn *c)
{
    PGnotify *n;
    bool any = false;

    while ((n = PQnotifies(c->h)) != NULL) {
        any = true;
        PQfreemem(n);
    }
    return any;
}

static void nap_ms(int64_t ms)
{
    struct timespec ts = {(time_t)(ms / 1000), (long)(ms % 1000) * 1000000};

    nanosleep(&ts, NULL);
}

/* Waits on the idle session's socket, which the server writes to only for
 * a notification (or to say that the session is over), so no round trip's
 * deadline applies. Each round first makes sure of a live session that
 * listens: conn_ready reconnects a lost one (at most one attempt per
 * RECONNECT_INTERVAL_MS), and a new session listens anew. A notification
 * libpq read during an earlier operation on this connection counts too.
 * While the server cannot be reached this sleeps in steps, so a caller
 * that waits again at once never spins; the error is returned at the
 * deadline. A reconnect (its connect timeout) or a LISTEN (ROUND_TRIP_MS)
 * may make the wait overrun timeout_ms. */
static enum err pg_wait(struct db_conn *base, int timeout_ms, bool *woke)
{
    struct pg_conn *c = PG(base);
    int64_t deadline_ms = clock_mono_ms() + timeout_ms, left;
    enum wait w;
    enum err e;

    *woke = false;
    if (c->batch)
        return ERR_INTERNAL; /* a LISTEN inside the batch would wait for its commit */
    for (;;) {
        e = conn_ready(c);
        if (e == ERR_OK && !c->listening) {
            e = exec_simple(c, "LISTEN " NOTIFY_CHANNEL, "cmd_wait");
            c->listening = e == ERR_OK;
        }
        if (e == ERR_OK && notified(c)) {
            *woke = true;
            return ERR_OK;
        }
        left = deadline_ms - clock_mono_ms();
        if (left <= 0)
            return e;
        if (e != ERR_OK) {
            nap_ms(left < RECONNECT_INTERVAL_MS ? left : RECONNECT_INTERVAL_MS);
            continue;
        }
        w = wait_socket(c->h, POLLIN, deadline_ms);
        if (w == WAIT_TIMEOUT)
            return ERR_OK;
        /* A session that failed reading is lost: the next round's
         * conn_ready sees it. One that cannot even be waited on goes, and
         * the next round waits for the reconnect interval. */
        if (w == WAIT_OK) {
            (void)PQconsumeInput(c->h);
        } else {
            session_drop(c);
            c->next_connect_ms = clock_mono_ms() + RECONNECT_INTERVAL_MS;
        }
    }
}

/* PostgreSQL is shared by every node: there is nothing to hold. */
static enum err pg_hold(void *impl, long *holder)
{
    (void)impl;
    *holder = 0;
    return ERR_OK;
}

/* ---- schema ---- */

/* One round trip of the migration, within MIGRATION_ROUND_TRIP_MS. On
 * ERR_OK and out != NULL, *out is the result, which the caller must PQclear.
 * On error the session may be mid-statement: the caller closes it. */
static enum err migration_run(PGconn *h, const struct query *q, const char *what, PGresult **out)
{
    PGresult *r = NULL;
    enum wait w = query_run(h, q, clock_mono_ms() + MIGRATION_ROUND_TRIP_MS, &r);
    enum err e;

    if (w == WAIT_TIMEOUT) {
        log_error("msg=\"schema migration failed: database did not answer in time\" "
                  "backend=postgresql op=%s timeout_ms=%d",
                  what, MIGRATION_ROUND_TRIP_MS);
        return ERR_UNAVAILABLE;
    }
    if (w != WAIT_OK || !result_ok(r)) {
        log_pg(LOG_ERROR, "schema migration failed", what,
               r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : NULL,
               r ? PQresultErrorMessage(r) : PQerrorMessage(h));
        e = PQstatus(h) == CONNECTION_OK ? ERR_DB : ERR_UNAVAILABLE;
        PQclear(r);
        return e;
    }
    if (out)
        *out = r;
    else
        PQclear(r);
    return ERR_OK;
}

static enum err simple_exec(PGconn *h, const char *sql, const char *what)
{
    const struct query q = {Q_TEXT, NULL, sql, NULL};

    return migration_run(h, &q, what, NULL);
}

/* Brings the schema to the newest version in one transaction, under an
 * advisory lock: nodes starting together wait for each other, and each
 * migration is applied exactly once. DDL is transactional in PostgreSQL,
 * so a failed migration leaves nothing behind. On error the transaction is
 * left open: the caller closes the session, which rolls it back (and
 * releases the lock) without another round trip. */
static enum err migrate(PGconn *h)
{
    static const struct query version_q = {
        Q_TEXT, NULL, "SELECT coalesce(max(version), 0) FROM schema_migrations", NULL};
    const struct migration *m;
    struct params p;
    struct query q = {Q_PARAMS, NULL,
                      "INSERT INTO schema_migrations(version, name, applied_at) "
                      "VALUES ($1, $2, $3)",
                      &p};
    PGresult *r = NULL;
    int64_t have = 0;
    enum err e;

    e = simple_exec(h, "BEGIN", "migration");
    if (e != ERR_OK)
        return e;
    /* Waiting for another node's migration is not a lock timeout, and a
     * migration may take longer than a request's statement. */
    e = simple_exec(h, "SET LOCAL lock_timeout = 0; SET LOCAL statement_timeout = 0", "migration");
    if (e != ERR_OK)
        return e;
    e = simple_exec(h, MIGRATION_LOCK_SQL, "migration");
    if (e != ERR_OK)
        return e;
    e = simple_exec(h,
                    "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
                    "name TEXT NOT NULL, applied_at BIGINT NOT NULL)",
                    "migration");
    if (e != ERR_OK)
        return e;
    e = migration_run(h, &version_q, "migration", &r);
    if (e != ERR_OK)
        return e;
    if (PQntuples(r) != 1 || parse_i64(PQgetvalue(r, 0, 0), 0, INT64_MAX, &have) != ERR_OK) {
        PQclear(r);
        return ERR_DB;
    }
    PQclear(r);

    for (m = migrations_pg; m->version; m++) {
        if (m->version <= have)
            continue;
        e = simple_exec(h, m->sql, m->name);
        if (e != ERR_OK)
            return e;
        p.n = 0;
        p_i64(&p, m->version);
        p_text(&p, m->name);
        p_i64(&p, clock_now_ms());
        e = migration_run(h, &q, m->name, NULL);
        if (e != ERR_OK)
            return e;
        log_info("msg=\"schema migrated\" backend=postgresql version=%d name=%s", m->version,
                 m->name);
        have = m->version;
    }
    if (m == migrations_pg || have > m[-1].version) {
        log_error("msg=\"database schema is newer than this program\" version=%lld",
                  (long long)have);
        return ERR_DB;
    }
    return simple_exec(h, "COMMIT", "migration");
}

/* ---- the backend ---- */

static enum err pg_open(const char *url, void **impl)
{
    PQconninfoOption *opts;
    char *msg = NULL;
    struct pg_db *db;
    PGconn *h;
    enum err e;

    if (!PQisthreadsafe()) {
        log_error("msg=\"libpq built without thread support\"");
        return ERR_INTERNAL;
    }
    /* The parser's message may quote part of the URL (a password): not logged. */
    opts = PQconninfoParse(url, &msg);
    PQfreemem(msg);
    if (!opts) {
        log_error("msg=\"database url is not a valid libpq URI\" backend=postgresql");
        return ERR_INVALID;
    }
    PQconninfoFree(opts);

    db = calloc(1, sizeof(*db));
    if (!db)
        return ERR_NOMEM;
    db->url = strdup(url);
    if (!db->url) {
        e = ERR_NOMEM;
        goto out_db;
    }
    h = session_open(url);
    if (!h) {
        e = ERR_NOMEM;
        goto out_url;
    }
    if (!session_ok(h)) {
        log_pg(LOG_ERROR, "cannot connect to database", "open", NULL, PQerrorMessage(h));
        e = ERR_UNAVAILABLE;
        goto out_session;
    }
    e = migrate(h);
    if (e != ERR_OK)
        goto out_session;
    PQfinish(h);
    *impl = db;
    return ERR_OK;

out_session:
    PQfinish(h);
out_url:
    free(db->url);
out_db:
    free(db);
    return e;
}

static void pg_free(void *impl)
{
    struct pg_db *db = impl;

    free(db->url);
    free(db);
}

/* Always hands out a connection object, even when the server cannot be
 * reached right now: its operations then fail with ERR_UNAVAILABLE until a
 * later call reconnects. */
static enum err pg_conn_open(void *impl, struct db_conn **out)
{
    struct pg_conn *c = calloc(1, sizeof(*c));

    if (!c)
        return ERR_NOMEM;
    c->base.base.ops = &store_ops_pg;
    c->base.drv = &db_pg_driver;
    c->db = impl;
    (void)conn_ready(c);
    *out = &c->base;
    return ERR_OK;
}

static void pg_conn_close(struct db_conn *base)
{
    struct pg_conn *c = PG(base);

    PQfinish(c->h);
    free(c);
}

const struct db_driver db_pg_driver = {
    .name = "postgresql",
    .open = pg_open,
    .free = pg_free,
    .conn_open = pg_conn_open,
    .conn_close = pg_conn_close,
    .op_begin = pg_op_begin,
    .op_end = pg_op_end,
    .tx_begin = pg_tx_begin,
    .tx_end = pg_tx_end,
    .batch_begin = pg_batch_begin,
    .batch_end = pg_batch_end,
    .run = pg_run,
    .again = pg_again,
    .hold = pg_hold,
    .notify = pg_notify,
    .wait = pg_wait,
};

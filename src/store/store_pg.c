/* store_pg: the PostgreSQL backend, the only file that includes libpq-fe.h.
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
#include "store/migrate.h"
#include "store/store.h"

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
#define MAX_PARAMS 19
/* The key of the advisory lock that serializes schema migrations of one
 * database ("sfvopi" in ASCII). */
#define MIGRATION_LOCK_SQL "SELECT pg_advisory_xact_lock(126883910873193)"

enum stmt_id {
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
    ST_NUM_LOCK,
    ST_NUM_LINKED,
    ST_NUM_DELETE,
    ST_NUM_SET_STATUS,
    ST_AVAIL,
    ST_APP_INSERT,
    ST_APP_GET,
    ST_APP_LIST,
    ST_APP_UPDATE,
    ST_APP_DELETE,
    ST_APP_LOCK,
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

struct stmt_def {
    const char *name; /* the prepared statement's name in every session */
    const char *sql;
};

#define S(id, text) [id] = {#id, text}

static const struct stmt_def stmts[ST_COUNT] = {
    S(ST_PING, "SELECT 1"),
    S(ST_ORG_INSERT, "INSERT INTO orgs(name, created_at) VALUES ($1, $2) RETURNING id"),
    S(ST_ORG_GET, "SELECT id, name, created_at FROM orgs WHERE id = $1"),
    S(ST_ORG_COUNT, "SELECT count(*) FROM orgs"),
    S(ST_ORG_LIST, "SELECT id, name, created_at FROM orgs ORDER BY id"),
    S(ST_KEY_INSERT, "INSERT INTO api_keys(org_id, user_id, name, prefix, hash, created_at) "
                     "VALUES ($1, $2, $3, $4, $5::bytea, $6) RETURNING id"),
    S(ST_KEY_FIND, "SELECT " KEY_COLS " FROM api_keys WHERE hash = $1::bytea"),
    S(ST_KEY_LIST, "SELECT " KEY_COLS " FROM api_keys WHERE org_id = $1 ORDER BY id"),
    S(ST_KEY_REVOKE, "UPDATE api_keys SET status = 'REVOKED', revoked_at = coalesce(revoked_at, "
                     "$2::bigint) WHERE id = $1"),
    S(ST_NUM_INSERT, "INSERT INTO numbers(org_id, e164, provider, created_at) "
                     "VALUES ($1, $2, $3, $4) RETURNING id"),
    S(ST_NUM_LIST, "SELECT n.id, n.org_id, n.e164, n.provider, n.status, coalesce(l.app_id, '') "
                   "FROM numbers n LEFT JOIN links l ON l.number_id = n.id AND l.status = "
                   "'ACTIVE' WHERE n.org_id = $1 ORDER BY n.id"),
    /* Removing a number locks its row first, so a concurrent link either
     * commits before (and the number is found linked) or finds it gone. */
    S(ST_NUM_LOCK, "SELECT id FROM numbers WHERE e164 = $1 FOR UPDATE"),
    S(ST_NUM_LINKED, "SELECT 1 FROM links WHERE number_id = $1 AND status = 'ACTIVE'"),
    S(ST_NUM_DELETE, "DELETE FROM numbers WHERE id = $1"),
    S(ST_NUM_SET_STATUS, "UPDATE numbers SET status = $2 WHERE e164 = $1"),
    S(ST_AVAIL, "SELECT n.id, n.org_id, n.e164, n.provider, n.status, '' FROM numbers n "
                "WHERE n.org_id = $1 AND n.status = 'ACTIVE' AND NOT EXISTS (SELECT 1 FROM "
                "links l WHERE l.number_id = n.id AND l.status = 'ACTIVE') ORDER BY n.id"),
    S(ST_APP_INSERT, "INSERT INTO apps(" APP_COLS ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
                     "$10, $11, $12, $13)"),
    S(ST_APP_GET, "SELECT " APP_COLS " FROM apps WHERE app_id = $1 AND org_id = $2"),
    S(ST_APP_LIST,
      "SELECT " APP_COLS " FROM apps WHERE org_id = $1 ORDER BY created_at DESC, id DESC"),
    /* One statement for every partial update: $3, $5, ... say whether the
     * field that follows is set. */
    S(ST_APP_UPDATE, "UPDATE apps SET "
                     "name = CASE WHEN $3::boolean THEN $4::text ELSE name END, "
                     "answer_url = CASE WHEN $5::boolean THEN $6::text ELSE answer_url END, "
                     "answer_method = CASE WHEN $7::boolean THEN $8::text ELSE answer_method END, "
                     "hangup_url = CASE WHEN $9::boolean THEN $10::text ELSE hangup_url END, "
                     "hangup_method = CASE WHEN $11::boolean THEN $12::text ELSE hangup_method "
                     "END, "
                     "fallback_answer_url = CASE WHEN $13::boolean THEN $14::text ELSE "
                     "fallback_answer_url END, "
                     "fallback_answer_method = CASE WHEN $15::boolean THEN $16::text ELSE "
                     "fallback_answer_method END, "
                     "status = CASE WHEN $17::boolean THEN $18::text ELSE status END, "
                     "updated_at = $19::bigint "
                     "WHERE app_id = $1 AND org_id = $2 RETURNING " APP_COLS),
    S(ST_APP_DELETE, "DELETE FROM apps WHERE app_id = $1 AND org_id = $2"),
    /* A link holds a share lock on its app's row until it commits, so that
     * deleting the app waits for it and then deactivates the new link too. */
    S(ST_APP_LOCK, "SELECT 1 FROM apps WHERE app_id = $1 AND org_id = $2 FOR KEY SHARE"),
    S(ST_LINKS_OFF_APP, "UPDATE links SET status = 'INACTIVE', updated_at = $2 "
                        "WHERE app_id = $1 AND status = 'ACTIVE'"),
    /* Linking locks the number's inventory row: concurrent links of one
     * number, from any node, run one after the other, and each sees the
     * links committed before it. The unique index stays the last word. */
    S(ST_NUM_FOR_LINK,
      "SELECT id, status FROM numbers WHERE e164 = $1 AND org_id = $2 FOR NO KEY UPDATE"),
    S(ST_LINK_BY_NUM, "SELECT " LINK_COLS " FROM links WHERE number_id = $1 AND status = 'ACTIVE'"),
    S(ST_LINK_INSERT, "INSERT INTO links(app_id, org_id, number_id, voip_number, status, "
                      "created_at) VALUES ($1, $2, $3, $4, 'ACTIVE', $5)"),
    S(ST_LINK_LIST, "SELECT l.app_id, l.voip_number, l.org_id, l.status, l.created_at, "
                    "l.updated_at FROM apps a LEFT JOIN links l ON l.app_id = a.app_id AND "
                    "l.status = 'ACTIVE' WHERE a.app_id = $1 AND a.org_id = $2 "
                    "ORDER BY l.created_at DESC, l.id DESC"),
    S(ST_LINK_OFF, "UPDATE links SET status = 'INACTIVE', updated_at = $3 "
                   "WHERE app_id = $1 AND voip_number = $2 AND status = 'ACTIVE'"),
    /* One statement, so the number, its link and the app are one snapshot.
     * Deleting an app deactivates its links, so an ACTIVE link has an app. */
    S(ST_NUM_ROUTE, "SELECT n.org_id, n.status, " APP_COLS_A " FROM numbers n "
                    "LEFT JOIN links l ON l.number_id = n.id AND l.status = 'ACTIVE' "
                    "LEFT JOIN apps a ON a.app_id = l.app_id WHERE n.e164 = $1"),
    S(ST_CALL_INSERT, "INSERT INTO calls(call_uuid, request_uuid, org_id, app_id, \"from\", "
                      "\"to\", direction, status, started_at, answered_at, ended_at, duration, "
                      "hangup_cause, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
                      "$10, $11, $12, $13, $14)"),
    S(ST_CALL_UPDATE, "UPDATE calls SET status = $2, started_at = $3, answered_at = $4, "
                      "ended_at = $5, duration = $6, hangup_cause = $7 WHERE call_uuid = $1"),
    S(ST_CALL_GET, "SELECT " CALL_COLS " FROM calls WHERE org_id = $1 AND (call_uuid = $2 OR "
                   "request_uuid = $2)"),
    /* Answered from the index calls_org_seq, newest first. */
    S(ST_CALL_LIST, "SELECT " CALL_COLS " FROM calls WHERE org_id = $1 AND seq < $2 "
                    "ORDER BY seq DESC LIMIT $3"),
};

#undef S

struct pg_db {
    char *url; /* may hold a password: never logged */
};

struct pg_conn {
    struct store_conn base; /* first: a struct store_conn * is a struct pg_conn * */
    struct pg_db *db;
    PGconn *h;               /* NULL while disconnected */
    bool prepared[ST_COUNT]; /* in the current session */
    int64_t next_connect_ms; /* monotonic: no connection attempt before this */
    bool down;               /* the last attempt failed (logged once per outage) */
    bool retry;              /* the last error was a serialization failure or deadlock */
    bool batch;              /* inside batch_begin .. batch_end: one open transaction */
};

/* Bound query parameters, all in text format except bytea. */
struct params {
    int n;
    const char *v[MAX_PARAMS];
    int len[MAX_PARAMS];
    int fmt[MAX_PARAMS];
    char num[MAX_PARAMS][24];
};

static const struct store_ops pg_ops;

/* ---- parameters and columns ---- */

static void p_text(struct params *p, const char *s)
{
    /* Parameter counts are fixed by the statements above, never by input. */
    assert(p->n < MAX_PARAMS);
    p->v[p->n] = s;
    p->len[p->n] = 0;
    p->fmt[p->n] = 0;
    p->n++;
}

/* Binds NULL for "" (our null string). */
static void p_text_or_null(struct params *p, const char *s)
{
    p_text(p, s[0] ? s : NULL);
}

static void p_i64(struct params *p, int64_t v)
{
    assert(p->n < MAX_PARAMS);
    snprintf(p->num[p->n], sizeof(p->num[0]), "%" PRId64, v);
    p_text(p, p->num[p->n]);
}

/* Binds NULL for 0 (our null integer). */
static void p_i64_or_null(struct params *p, int64_t v)
{
    if (v)
        p_i64(p, v);
    else
        p_text(p, NULL);
}

static void p_bool(struct params *p, bool b)
{
    p_text(p, b ? "t" : "f");
}

static void p_bytes(struct params *p, const void *data, int len)
{
    p_text(p, data);
    p->len[p->n - 1] = len;
    p->fmt[p->n - 1] = 1;
}

/* Copies a text column into a fixed field, truncating at cap - 1 bytes
 * (stored values are validated on the way in and always fit). NULL is "". */
static void col_text(const PGresult *r, int row, int col, char *dst, size_t cap)
{
    size_t n = PQgetisnull(r, row, col) ? 0 : (size_t)PQgetlength(r, row, col);

    if (n >= cap)
        n = cap - 1;
    if (n)
        memcpy(dst, PQgetvalue(r, row, col), n);
    dst[n] = '\0';
}

#define COL_TEXT(r, row, col, field) col_text((r), (row), (col), (field), sizeof(field))

/* An integer column; NULL is 0. */
static int64_t col_i64(const PGresult *r, int row, int col)
{
    int64_t v = 0;

    if (PQgetisnull(r, row, col))
        return 0;
    if (parse_i64(PQgetvalue(r, row, col), INT64_MIN, INT64_MAX, &v) != ERR_OK) {
        log_error("msg=\"unexpected integer from database\" col=%d", col);
        return 0;
    }
    return v;
}

static void row_app(const PGresult *r, int i, struct store_app *a)
{
    COL_TEXT(r, i, 0, a->app_id);
    a->org_id = col_i64(r, i, 1);
    COL_TEXT(r, i, 2, a->name);
    COL_TEXT(r, i, 3, a->answer_url);
    COL_TEXT(r, i, 4, a->answer_method);
    COL_TEXT(r, i, 5, a->hangup_url);
    COL_TEXT(r, i, 6, a->hangup_method);
    COL_TEXT(r, i, 7, a->fallback_answer_url);
    COL_TEXT(r, i, 8, a->fallback_answer_method);
    COL_TEXT(r, i, 9, a->status);
    a->created_by = col_i64(r, i, 10);
    a->created_at = col_i64(r, i, 11);
    a->updated_at = col_i64(r, i, 12);
}

static void row_key(const PGresult *r, int i, struct store_key *k)
{
    char status[STATUS_MAX + 1];

    k->id = col_i64(r, i, 0);
    k->org_id = col_i64(r, i, 1);
    k->user_id = col_i64(r, i, 2);
    COL_TEXT(r, i, 3, k->name);
    COL_TEXT(r, i, 4, k->prefix);
    COL_TEXT(r, i, 5, status);
    k->revoked = strcmp(status, "ACTIVE") != 0;
    k->created_at = col_i64(r, i, 6);
}

static void row_link(const PGresult *r, int i, struct store_link *l)
{
    COL_TEXT(r, i, 0, l->app_id);
    COL_TEXT(r, i, 1, l->voip_number);
    l->org_id = col_i64(r, i, 2);
    COL_TEXT(r, i, 3, l->status);
    l->created_at = col_i64(r, i, 4);
    l->updated_at = col_i64(r, i, 5);
}

static void row_number(const PGresult *r, int i, struct store_number *n)
{
    n->id = col_i64(r, i, 0);
    n->org_id = col_i64(r, i, 1);
    COL_TEXT(r, i, 2, n->voip_number);
    COL_TEXT(r, i, 3, n->provider);
    COL_TEXT(r, i, 4, n->status);
    COL_TEXT(r, i, 5, n->linked_app_id);
}

static void row_call(const PGresult *r, int i, struct store_call *k)
{
    COL_TEXT(r, i, 0, k->call_uuid);
    COL_TEXT(r, i, 1, k->request_uuid);
    k->org_id = col_i64(r, i, 2);
    COL_TEXT(r, i, 3, k->app_id);
    COL_TEXT(r, i, 4, k->from);
    COL_TEXT(r, i, 5, k->to);
    COL_TEXT(r, i, 6, k->direction);
    COL_TEXT(r, i, 7, k->status);
    k->started_at = col_i64(r, i, 8);
    k->answered_at = col_i64(r, i, 9);
    k->ended_at = col_i64(r, i, 10);
    k->duration = col_i64(r, i, 11);
    COL_TEXT(r, i, 12, k->hangup_cause);
    k->created_at = col_i64(r, i, 13);
    k->seq = col_i64(r, i, 14);
}

/* True when s is well-formed UTF-8 as PostgreSQL accepts it (RFC 3629: no
 * overlong forms, no surrogates, nothing above U+10FFFF). A string that is
 * not cannot equal any stored value, and sending it would only make the
 * server refuse the whole statement. */
static bool utf8_valid(const char *str)
{
    const unsigned char *s = (const unsigned char *)str;
    unsigned char c, lo, hi;
    int more;

    while ((c = *s++) != 0) {
        if (c < 0x80)
            continue;
        lo = 0x80;
        hi = 0xBF;
        if (c >= 0xC2 && c <= 0xDF)
            more = 1;
        else if (c == 0xE0)
            more = 2, lo = 0xA0;
        else if (c == 0xED)
            more = 2, hi = 0x9F;
        else if (c >= 0xE1 && c <= 0xEF)
            more = 2;
        else if (c == 0xF0)
            more = 3, lo = 0x90;
        else if (c == 0xF4)
            more = 3, hi = 0x8F;
        else if (c >= 0xF1 && c <= 0xF3)
            more = 3;
        else
            return false;
        /* A NUL terminator fails every range below, so s never runs past it. */
        if (*s < lo || *s > hi)
            return false;
        for (s++; --more > 0; s++) {
            if (*s < 0x80 || *s > 0xBF)
                return false;
        }
    }
    return true;
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

/* Prepares statement id in this session on first use. */
static enum err prepare(struct pg_conn *c, enum stmt_id id)
{
    const struct query q = {Q_PREPARE, stmts[id].name, stmts[id].sql, NULL};
    enum err e;

    if (c->prepared[id])
        return ERR_OK;
    e = run(c, &q, "prepare", NULL);
    if (e == ERR_OK)
        c->prepared[id] = true;
    return e;
}

/* Runs a prepared statement. On ERR_OK and out != NULL, *out is the result,
 * which the caller must PQclear. */
static enum err exec(struct pg_conn *c, enum stmt_id id, const struct params *p, const char *what,
                     PGresult **out)
{
    const struct query q = {Q_PREPARED, stmts[id].name, NULL, p};
    enum err e = prepare(c, id);

    if (e != ERR_OK)
        return e;
    return run(c, &q, what, out);
}

/* Runs a prepared statement expected to return at most one row; ERR_NOT_FOUND
 * when it returns none. On ERR_OK the caller must PQclear *out. */
static enum err exec_one(struct pg_conn *c, enum stmt_id id, const struct params *p,
                         const char *what, PGresult **out)
{
    PGresult *r = NULL;
    enum err e = exec(c, id, p, what, &r);

    if (e != ERR_OK)
        return e;
    if (PQntuples(r) == 0) {
        PQclear(r);
        return ERR_NOT_FOUND;
    }
    *out = r;
    return ERR_OK;
}

/* Runs a prepared write; *changes (may be NULL) gets the rows affected. */
static enum err exec_write(struct pg_conn *c, enum stmt_id id, const struct params *p,
                           const char *what, int64_t *changes)
{
    PGresult *r = NULL;
    int64_t n = 0;
    enum err e = exec(c, id, p, what, &r);

    if (e != ERR_OK)
        return e;
    if (changes) {
        if (parse_i64(PQcmdTuples(r), 0, INT64_MAX, &n) != ERR_OK)
            n = 0;
        *changes = n;
    }
    PQclear(r);
    return ERR_OK;
}

/* Hands each row of a prepared query to each_row, reading the rows one at a
 * time (single-row mode) so that a long list is never held in memory whole.
 * The callback's error stops the walk and becomes the result. The whole
 * walk is one round trip, within ROUND_TRIP_MS. */
static enum err walk(struct pg_conn *c, enum stmt_id id, const struct params *p, const char *what,
                     enum err (*each_row)(const PGresult *r, void *cb, void *ud), void *cb,
                     void *ud)
{
    const struct query q = {Q_PREPARED, stmts[id].name, NULL, p};
    int64_t deadline_ms;
    PGresult *r;
    enum wait w;
    enum err e = ERR_OK, qe;

    qe = prepare(c, id);
    if (qe != ERR_OK)
        return qe;
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
            if (e == ERR_OK && qe == ERR_OK)
                e = each_row(r, cb, ud);
            break;
        case PGRES_TUPLES_OK:
        case PGRES_COMMAND_OK: break;
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
static enum err tx_begin(struct pg_conn *c)
{
    if (c->batch)
        return ERR_OK;
    return exec_simple(c, "BEGIN ISOLATION LEVEL READ COMMITTED", "begin");
}

/* Ends a transaction: commits when e is ERR_OK, else rolls back and keeps e.
 * A COMMIT that gets no answer is ERR_UNAVAILABLE: the transaction may or
 * may not have been committed, and the caller never reports success. */
static enum err tx_end(struct pg_conn *c, enum err e)
{
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
static enum err op_begin(struct pg_conn *c)
{
    enum err e = conn_ready(c);

    if (e != ERR_OK || !c->batch)
        return e;
    return exec_simple(c, "SAVEPOINT op", "savepoint");
}

/* Ends an operation that op_begin started, keeping its result e (or the
 * error of releasing its savepoint). */
static enum err op_end(struct pg_conn *c, enum err e)
{
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
static bool again(struct pg_conn *c, enum err e, int *attempt)
{
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
static enum err pg_conn_open(void *impl, struct store_conn **out)
{
    struct pg_conn *c = calloc(1, sizeof(*c));

    if (!c)
        return ERR_NOMEM;
    c->base.ops = &pg_ops;
    c->db = impl;
    (void)conn_ready(c);
    *out = &c->base;
    return ERR_OK;
}

static void pg_conn_close(struct store_conn *base)
{
    struct pg_conn *c = (struct pg_conn *)base;

    PQfinish(c->h);
    free(c);
}

/* ---- operations ---- */

#define CONN(base) ((struct pg_conn *)(base))

/* An operation that walks a statement whose one parameter is the
 * organisation. */
static enum err walk_org(struct store_conn *base, enum stmt_id id, const char *what, int64_t org_id,
                         enum err (*each_row)(const PGresult *r, void *cb, void *ud), void *cb,
                         void *ud)
{
    struct pg_conn *c = CONN(base);
    struct params p = {0};
    enum err e = op_begin(c);

    if (e != ERR_OK)
        return e;
    p_i64(&p, org_id);
    return op_end(c, walk(c, id, &p, what, each_row, cb, ud));
}

static enum err pg_ping(struct store_conn *base)
{
    struct pg_conn *c = CONN(base);
    enum err e = op_begin(c);

    if (e != ERR_OK)
        return e;
    return op_end(c, exec(c, ST_PING, NULL, "ping", NULL));
}

static enum err pg_batch_begin(struct store_conn *base)
{
    struct pg_conn *c = CONN(base);
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
static enum err pg_batch_end(struct store_conn *base, bool commit)
{
    struct pg_conn *c = CONN(base);
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

/* Runs an INSERT ... RETURNING id. ERR_NOT_FOUND only for a foreign key
 * violation (the org does not exist). */
static enum err insert_id(struct pg_conn *c, enum stmt_id id, const struct params *p,
                          const char *what, int64_t *out)
{
    PGresult *r = NULL;
    enum err e = exec(c, id, p, what, &r);

    if (e != ERR_OK)
        return e;
    if (PQntuples(r) == 1)
        *out = col_i64(r, 0, 0);
    else
        e = ERR_DB; /* RETURNING always returns the row */
    PQclear(r);
    return e;
}

static enum err pg_org_create(struct store_conn *base, const char *name, int64_t now, int64_t *id)
{
    struct pg_conn *c = CONN(base);
    struct params p = {0};
    enum err e = op_begin(c);

    if (e != ERR_OK)
        return e;
    p_text(&p, name);
    p_i64(&p, now);
    return op_end(c, insert_id(c, ST_ORG_INSERT, &p, "org_create", id));
}

static enum err pg_org_get(struct store_conn *base, int64_t id, struct store_org *out)
{
    struct pg_conn *c = CONN(base);
    struct params p = {0};
    PGresult *r = NULL;
    enum err e = op_begin(c);

    if (e != ERR_OK)
        return e;
    p_i64(&p, id);
    e = exec_one(c, ST_ORG_GET, &p, "org_get", &r);
    if (e == ERR_OK) {
        out->id = col_i64(r, 0, 0);
        COL_TEXT(r, 0, 1, out->name);
        out->created_at = col_i64(r, 0, 2);
        PQclear(r);
    }
    return op_end(c, e);
}

static enum err pg_org_count(struct store_conn *base, int64_t *n)
{
    struct pg_conn *c = CONN(base);
    PGresult *r = NULL;
    enum err e = op_begin(c);

    if (e != ERR_OK)
        return e;
    e = exec_one(c, ST_ORG_COUNT, NULL, "org_count", &r);
    if (e == ERR_NOT_FOUND)
        e = ERR_DB;
    if (e == ERR_OK) {
        *n = col_i64(r, 0, 0);
        PQclear(r);
    }
    return op_end(c, e);
}

static enum err org_row(const PGresult *r, void *cb, void *ud)
{
    struct store_org o;

    o.id = col_i64(r, 0, 0);
    COL_TEXT(r, 0, 1, o.name);
    o.created_at = col_i64(r, 0, 2);
    return ((store_org_cb)cb)(ud, &o);
}

static enum err pg_org_list(struct store_conn *base, store_org_cb cb, void *ud)
{
    struct pg_conn *c = CONN(base);
    struct params p = {0};
    enum err e = op_begin(c);

    if (e != ERR_OK)
        return e;
    return op_end(c, walk(c, ST_ORG_LIST, &p, "org_list", org_row, (void *)cb, ud));
}

static enum err pg_key_create(struct store_conn *base, const struct store_key *k,
                              const unsigned char hash[KEY_HASH_LEN], int64_t *id)
{
    struct pg_conn *c = CONN(base);
    struct params p = {0};
    enum err e = op_begin(c);

    if (e != ERR_OK)
        return e;
    p_i64(&p, k->org_id);
    p_i64_or_null(&p, k->user_id);
    p_text_or_null(&p, k->name);
    p_text(&p, k->prefix);
    p_bytes(&p, hash, KEY_HASH_LEN);
    p_i64(&p, k->created_at);
    return op_end(c, insert_id(c, ST_KEY_INSERT, &p, "key_create", id));
}

static enum err pg_key_find(struct store_conn *base, const unsigned char hash[KEY_HASH_LEN],
                            struct store_key *out)
{
    struct pg_conn *c = CONN(base);
    struct params p = {0};
    PGresult *r = NULL;
    enum err e = op_begin(c);

    if (e != ERR_OK)
        return e;
    p_bytes(&p, hash, KEY_HASH_LEN);
    e = exec_one(c, ST_KEY_FIND, &p, "key_find", &r);
    if (e == ERR_OK) {
        row_key(r, 0, out);
        PQclear(r);
    }
    return op_end(c, e);
}

static enum err key_row(const PGresult *r, void *cb, void *ud)
{
    struct store_key k;

    row_key(r, 0, &k);
    return ((store_key_cb)cb)(ud, &k);
}

static enum err pg_key_list(struct store_conn *base, int64_t org_id, store_key_cb cb, void *ud)
{
    return walk_org(base, ST_KEY_LIST, "key_list", org_id, key_row, (void *)cb, ud);
}

static enum err pg_key_revoke(struct store_conn *base, int64_t key_id, int64_t now)
{
    struct pg_conn *c = CONN(base);
    struct params p = {0};
    int64_t changes = 0;
    int attempt = 0;
    enum err e;

    p_i64(&p, key_id);
    p_i64(&p, now);
    do {
        e = op_begin(c);
        if (e != ERR_OK)
            return e;
        e = op_end(c, exec_write(c, ST_KEY_REVOKE, &p, "key_revoke", &changes));
    } while (again(c, e, &attempt));
    if (e == ERR_OK && changes == 0)
        e = ERR_NOT_FOUND;
    return e;
}

static enum err pg_number_add(struct store_conn *base, int64_t org_id, const char *e164,
                              const char *provider, int64_t now, int64_t *id)
{
    struct pg_conn *c = CONN(base);
    struct params p = {0};
    enum err e = op_begin(c);

    if (e != ERR_OK)
        return e;
    p_i64(&p, org_id);
    p_text(&p, e164);
    p_text(&p, provider);
    p_i64(&p, now);
    return op_end(c, insert_id(c, ST_NUM_INSERT, &p, "number_add", id));
}

static enum err number_row(const PGresult *r, void *cb, void *ud)
{
    struct store_number n;

    row_number(r, 0, &n);
    return ((store_number_cb)cb)(ud, &n);
}

static enum err pg_number_list(struct store_conn *base, int64_t org_id, store_number_cb cb,
                               void *ud)
{
    return walk_org(base, ST_NUM_LIST, "number_list", org_id, number_row, (void *)cb, ud);
}

static enum err number_remove_tx(struct pg_conn *c, const char *e164)
{
    struct params p = {0};
    PGresult *r = NULL;
    int64_t id;
    enum err e;

    e = tx_begin(c);
    if (e != ERR_OK)
        return e;
    p_text(&p, e164);
    e = exec_one(c, ST_NUM_LOCK, &p, "number_remove", &r);
    if (e != ERR_OK)
        goto out;
    id = col_i64(r, 0, 0);
    PQclear(r);
    p.n = 0;
    p_i64(&p, id);
    e = exec_one(c, ST_NUM_LINKED, &p, "number_remove", &r);
    if (e == ERR_OK) {
        PQclear(r);
        e = ERR_CONFLICT;
        goto out;
    }
    if (e != ERR_NOT_FOUND)
        goto out;
    e = exec_write(c, ST_NUM_DELETE, &p, "number_remove", NULL);
out:
    return tx_end(c, e);
}

static enum err pg_number_remove(struct store_conn *base, const char *e164)
{
    struct pg_conn *c = CONN(base);
    int attempt = 0;
    enum err e;

    if (!utf8_valid(e164))
        return ERR_NOT_FOUND;
    do {
        e = op_begin(c);
        if (e != ERR_OK)
            return e;
        e = op_end(c, number_remove_tx(c, e164));
    } while (again(c, e, &attempt));
    return e;
}

static enum err pg_number_set_status(struct store_conn *base, const char *e164, const char *status)
{
    struct pg_conn *c = CONN(base);
    struct params p = {0};
    int64_t changes = 0;
    int attempt = 0;
    enum err e;

    if (!utf8_valid(e164))
        return ERR_NOT_FOUND;
    p_text(&p, e164);
    p_text(&p, status);
    do {
        e = op_begin(c);
        if (e != ERR_OK)
            return e;
        e = op_end(c, exec_write(c, ST_NUM_SET_STATUS, &p, "number_set_status", &changes));
    } while (again(c, e, &attempt));
    if (e == ERR_OK && changes == 0)
        e = ERR_NOT_FOUND;
    return e;
}

static enum err pg_available_list(struct store_conn *base, int64_t org_id, store_number_cb cb,
                                  void *ud)
{
    return walk_org(base, ST_AVAIL, "available_list", org_id, number_row, (void *)cb, ud);
}

static enum err pg_app_create(struct store_conn *base, const struct store_app *a)
{
    struct pg_conn *c = CONN(base);
    struct params p = {0};
    enum err e = op_begin(c);

    if (e != ERR_OK)
        return e;
    p_text(&p, a->app_id);
    p_i64(&p, a->org_id);
    p_text(&p, a->name);
    p_text(&p, a->answer_url);
    p_text(&p, a->answer_method);
    p_text_or_null(&p, a->hangup_url);
    p_text(&p, a->hangup_method);
    p_text_or_null(&p, a->fallback_answer_url);
    p_text(&p, a->fallback_answer_method);
    p_text(&p, a->status);
    p_i64_or_null(&p, a->created_by);
    p_i64(&p, a->created_at);
    p_i64_or_null(&p, a->updated_at);
    return op_end(c, exec_write(c, ST_APP_INSERT, &p, "app_create", NULL));
}

static enum err pg_app_get(struct store_conn *base, int64_t org_id, const char *app_id,
                           struct store_app *out)
{
    struct pg_conn *c = CONN(base);
    struct params p = {0};
    PGresult *r = NULL;
    enum err e;

    if (!utf8_valid(app_id))
        return ERR_NOT_FOUND;
    e = op_begin(c);
    if (e != ERR_OK)
        return e;
    p_text(&p, app_id);
    p_i64(&p, org_id);
    e = exec_one(c, ST_APP_GET, &p, "app_get", &r);
    if (e == ERR_OK) {
        row_app(r, 0, out);
        PQclear(r);
    }
    return op_end(c, e);
}

static enum err app_row(const PGresult *r, void *cb, void *ud)
{
    struct store_app a;

    row_app(r, 0, &a);
    return ((store_app_cb)cb)(ud, &a);
}

static enum err pg_app_list(struct store_conn *base, int64_t org_id, store_app_cb cb, void *ud)
{
    return walk_org(base, ST_APP_LIST, "app_list", org_id, app_row, (void *)cb, ud);
}

static enum err pg_app_update(struct store_conn *base, int64_t org_id, const char *app_id,
                              const struct store_app_patch *patch, int64_t now,
                              struct store_app *out)
{
    struct pg_conn *c = CONN(base);
    const struct store_app *v = &patch->vals;
    unsigned f = patch->fields;
    struct params p = {0};
    PGresult *r = NULL;
    int attempt = 0;
    enum err e;

    if (f == 0 || !utf8_valid(app_id))
        return pg_app_get(base, org_id, app_id, out);
    p_text(&p, app_id);
    p_i64(&p, org_id);
    p_bool(&p, f & APP_F_NAME);
    p_text(&p, v->name);
    p_bool(&p, f & APP_F_ANSWER_URL);
    p_text(&p, v->answer_url);
    p_bool(&p, f & APP_F_ANSWER_METHOD);
    p_text(&p, v->answer_method);
    p_bool(&p, f & APP_F_HANGUP_URL);
    p_text_or_null(&p, v->hangup_url);
    p_bool(&p, f & APP_F_HANGUP_METHOD);
    p_text(&p, v->hangup_method);
    p_bool(&p, f & APP_F_FALLBACK_URL);
    p_text_or_null(&p, v->fallback_answer_url);
    p_bool(&p, f & APP_F_FALLBACK_METHOD);
    p_text(&p, v->fallback_answer_method);
    p_bool(&p, f & APP_F_STATUS);
    p_text(&p, v->status);
    p_i64(&p, now);
    do {
        e = op_begin(c);
        if (e != ERR_OK)
            return e;
        e = exec_one(c, ST_APP_UPDATE, &p, "app_update", &r);
        if (e == ERR_OK) {
            row_app(r, 0, out);
            PQclear(r);
        }
        e = op_end(c, e);
    } while (again(c, e, &attempt));
    return e;
}

static enum err app_delete_tx(struct pg_conn *c, int64_t org_id, const char *app_id, int64_t now)
{
    struct params p = {0};
    int64_t changes = 0;
    enum err e;

    e = tx_begin(c);
    if (e != ERR_OK)
        return e;
    p_text(&p, app_id);
    p_i64(&p, org_id);
    e = exec_write(c, ST_APP_DELETE, &p, "app_delete", &changes);
    if (e != ERR_OK)
        goto out;
    if (changes == 0) {
        e = ERR_NOT_FOUND;
        goto out;
    }
    /* A new statement sees every link committed while DELETE waited for
     * the app's row, so none is left ACTIVE. */
    p.n = 0;
    p_text(&p, app_id);
    p_i64(&p, now);
    e = exec_write(c, ST_LINKS_OFF_APP, &p, "app_delete", NULL);
out:
    return tx_end(c, e);
}

static enum err pg_app_delete(struct store_conn *base, int64_t org_id, const char *app_id,
                              int64_t now)
{
    struct pg_conn *c = CONN(base);
    int attempt = 0;
    enum err e;

    if (!utf8_valid(app_id))
        return ERR_NOT_FOUND;
    do {
        e = op_begin(c);
        if (e != ERR_OK)
            return e;
        e = op_end(c, app_delete_tx(c, org_id, app_id, now));
    } while (again(c, e, &attempt));
    return e;
}

/* ERR_OK when the org has the app, ERR_NOT_FOUND when not; on ERR_OK the
 * app's row is share-locked until the transaction ends. */
static enum err app_lock(struct pg_conn *c, int64_t org_id, const char *app_id)
{
    struct params p = {0};
    PGresult *r = NULL;
    enum err e;

    p_text(&p, app_id);
    p_i64(&p, org_id);
    e = exec_one(c, ST_APP_LOCK, &p, "app_lock", &r);
    if (e == ERR_OK)
        PQclear(r);
    return e;
}

static enum err link_create_tx(struct pg_conn *c, int64_t org_id, const char *app_id,
                               const char *e164, int64_t now, struct store_link *out)
{
    struct params p = {0};
    PGresult *r = NULL;
    char status[STATUS_MAX + 1];
    int64_t number_id;
    enum err e;

    e = tx_begin(c);
    if (e != ERR_OK)
        return e;
    e = app_lock(c, org_id, app_id);
    if (e != ERR_OK)
        goto out;
    if (!utf8_valid(e164)) {
        e = ERR_INVALID;
        goto out;
    }

    p_text(&p, e164);
    p_i64(&p, org_id);
    e = exec_one(c, ST_NUM_FOR_LINK, &p, "link_create", &r);
    if (e == ERR_NOT_FOUND) {
        e = ERR_INVALID;
        goto out;
    }
    if (e != ERR_OK)
        goto out;
    number_id = col_i64(r, 0, 0);
    COL_TEXT(r, 0, 1, status);
    PQclear(r);
    if (strcmp(status, "ACTIVE") != 0) {
        e = ERR_INVALID;
        goto out;
    }

    p.n = 0;
    p_i64(&p, number_id);
    e = exec_one(c, ST_LINK_BY_NUM, &p, "link_create", &r);
    if (e == ERR_OK) {
        row_link(r, 0, out);
        PQclear(r);
        e = strcmp(out->app_id, app_id) == 0 ? ERR_OK : ERR_CONFLICT;
        goto out;
    }
    if (e != ERR_NOT_FOUND)
        goto out;

    p.n = 0;
    p_text(&p, app_id);
    p_i64(&p, org_id);
    p_i64(&p, number_id);
    p_text(&p, e164);
    p_i64(&p, now);
    e = exec_write(c, ST_LINK_INSERT, &p, "link_create", NULL);
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

static enum err pg_link_create(struct store_conn *base, int64_t org_id, const char *app_id,
                               const char *e164, int64_t now, struct store_link *out)
{
    struct pg_conn *c = CONN(base);
    int attempt = 0;
    enum err e;

    if (!utf8_valid(app_id))
        return ERR_NOT_FOUND;
    do {
        e = op_begin(c);
        if (e != ERR_OK)
            return e;
        e = op_end(c, link_create_tx(c, org_id, app_id, e164, now, out));
    } while (again(c, e, &attempt));
    return e;
}

struct link_walk {
    store_link_cb cb;
    void *ud;
    bool app; /* a row came back: the app exists */
};

static enum err link_row(const PGresult *r, void *unused, void *ud)
{
    struct link_walk *lw = ud;
    struct store_link l;

    (void)unused;
    lw->app = true;
    if (PQgetisnull(r, 0, 0))
        return ERR_OK; /* the app, without links */
    row_link(r, 0, &l);
    return lw->cb(lw->ud, &l);
}

static enum err pg_link_list(struct store_conn *base, int64_t org_id, const char *app_id,
                             store_link_cb cb, void *ud)
{
    struct pg_conn *c = CONN(base);
    struct link_walk lw = {cb, ud, false};
    struct params p = {0};
    enum err e;

    if (!utf8_valid(app_id))
        return ERR_NOT_FOUND;
    e = op_begin(c);
    if (e != ERR_OK)
        return e;
    p_text(&p, app_id);
    p_i64(&p, org_id);
    /* One statement: the app's existence and its links in one snapshot. */
    e = walk(c, ST_LINK_LIST, &p, "link_list", link_row, NULL, &lw);
    if (e == ERR_OK && !lw.app)
        e = ERR_NOT_FOUND;
    return op_end(c, e);
}

static enum err link_delete_tx(struct pg_conn *c, int64_t org_id, const char *app_id,
                               const char *e164, int64_t now, enum store_miss *miss)
{
    struct params p = {0};
    int64_t changes = 0;
    enum err e;

    e = tx_begin(c);
    if (e != ERR_OK)
        return e;
    e = app_lock(c, org_id, app_id);
    if (e == ERR_NOT_FOUND)
        *miss = STORE_MISS_APP;
    if (e != ERR_OK)
        goto out;
    if (!utf8_valid(e164)) {
        *miss = STORE_MISS_LINK;
        e = ERR_NOT_FOUND;
        goto out;
    }
    p_text(&p, app_id);
    p_text(&p, e164);
    p_i64(&p, now);
    e = exec_write(c, ST_LINK_OFF, &p, "link_delete", &changes);
    if (e == ERR_OK && changes == 0) {
        *miss = STORE_MISS_LINK;
        e = ERR_NOT_FOUND;
    }
out:
    return tx_end(c, e);
}

static enum err pg_link_delete(struct store_conn *base, int64_t org_id, const char *app_id,
                               const char *e164, int64_t now, enum store_miss *miss)
{
    struct pg_conn *c = CONN(base);
    int attempt = 0;
    enum err e;

    if (!utf8_valid(app_id)) {
        *miss = STORE_MISS_APP;
        return ERR_NOT_FOUND;
    }
    do {
        *miss = STORE_MISS_NONE;
        e = op_begin(c);
        if (e != ERR_OK)
            return e;
        e = op_end(c, link_delete_tx(c, org_id, app_id, e164, now, miss));
    } while (again(c, e, &attempt));
    return e;
}

static enum err pg_number_route(struct store_conn *base, const char *e164, int64_t *org_id,
                                char number_status[STATUS_MAX + 1], struct store_app *app)
{
    struct pg_conn *c = CONN(base);
    struct params p = {0};
    PGresult *r = NULL;
    enum err e;

    if (!utf8_valid(e164))
        return ERR_NOT_FOUND;
    e = op_begin(c);
    if (e != ERR_OK)
        return e;
    p_text(&p, e164);
    e = exec_one(c, ST_NUM_ROUTE, &p, "number_route", &r);
    if (e == ERR_OK) {
        *org_id = col_i64(r, 0, 0);
        col_text(r, 0, 1, number_status, STATUS_MAX + 1);
        /* The app's columns start at 2. */
        COL_TEXT(r, 0, 2, app->app_id);
        app->org_id = col_i64(r, 0, 3);
        COL_TEXT(r, 0, 4, app->name);
        COL_TEXT(r, 0, 5, app->answer_url);
        COL_TEXT(r, 0, 6, app->answer_method);
        COL_TEXT(r, 0, 7, app->hangup_url);
        COL_TEXT(r, 0, 8, app->hangup_method);
        COL_TEXT(r, 0, 9, app->fallback_answer_url);
        COL_TEXT(r, 0, 10, app->fallback_answer_method);
        COL_TEXT(r, 0, 11, app->status);
        app->created_by = col_i64(r, 0, 12);
        app->created_at = col_i64(r, 0, 13);
        app->updated_at = col_i64(r, 0, 14);
        PQclear(r);
    }
    return op_end(c, e);
}

static enum err pg_call_create(struct store_conn *base, const struct store_call *k)
{
    struct pg_conn *c = CONN(base);
    struct params p = {0};
    enum err e = op_begin(c);

    if (e != ERR_OK)
        return e;
    p_text(&p, k->call_uuid);
    p_text_or_null(&p, k->request_uuid);
    p_i64(&p, k->org_id);
    p_text(&p, k->app_id);
    p_text(&p, k->from);
    p_text(&p, k->to);
    p_text(&p, k->direction);
    p_text(&p, k->status);
    p_i64_or_null(&p, k->started_at);
    p_i64_or_null(&p, k->answered_at);
    p_i64_or_null(&p, k->ended_at);
    p_i64(&p, k->duration);
    p_text_or_null(&p, k->hangup_cause);
    p_i64(&p, k->created_at);
    return op_end(c, exec_write(c, ST_CALL_INSERT, &p, "call_create", NULL));
}

static enum err pg_call_update(struct store_conn *base, const struct store_call *k)
{
    struct pg_conn *c = CONN(base);
    struct params p = {0};
    int64_t changes = 0;
    enum err e = op_begin(c);

    if (e != ERR_OK)
        return e;
    p_text(&p, k->call_uuid);
    p_text(&p, k->status);
    p_i64_or_null(&p, k->started_at);
    p_i64_or_null(&p, k->answered_at);
    p_i64_or_null(&p, k->ended_at);
    p_i64(&p, k->duration);
    p_text_or_null(&p, k->hangup_cause);
    e = exec_write(c, ST_CALL_UPDATE, &p, "call_update", &changes);
    if (e == ERR_OK && changes == 0)
        e = ERR_NOT_FOUND;
    return op_end(c, e);
}

static enum err pg_call_get(struct store_conn *base, int64_t org_id, const char *id,
                            struct store_call *out)
{
    struct pg_conn *c = CONN(base);
    struct params p = {0};
    PGresult *r = NULL;
    enum err e;

    if (!utf8_valid(id))
        return ERR_NOT_FOUND;
    e = op_begin(c);
    if (e != ERR_OK)
        return e;
    p_i64(&p, org_id);
    p_text(&p, id);
    e = exec_one(c, ST_CALL_GET, &p, "call_get", &r);
    if (e == ERR_OK) {
        row_call(r, 0, out);
        PQclear(r);
    }
    return op_end(c, e);
}

static enum err call_row(const PGresult *r, void *cb, void *ud)
{
    struct store_call k;

    row_call(r, 0, &k);
    return ((store_call_cb)cb)(ud, &k);
}

static enum err pg_call_list(struct store_conn *base, int64_t org_id, int64_t before_seq, int limit,
                             store_call_cb cb, void *ud)
{
    struct pg_conn *c = CONN(base);
    struct params p = {0};
    enum err e = op_begin(c);

    if (e != ERR_OK)
        return e;
    p_i64(&p, org_id);
    p_i64(&p, before_seq);
    p_i64(&p, limit);
    return op_end(c, walk(c, ST_CALL_LIST, &p, "call_list", call_row, (void *)cb, ud));
}

static const struct store_ops pg_ops = {
    .name = "postgresql",
    .conn_close = pg_conn_close,
    .ping = pg_ping,
    .batch_begin = pg_batch_begin,
    .batch_end = pg_batch_end,
    .org_create = pg_org_create,
    .org_get = pg_org_get,
    .org_count = pg_org_count,
    .org_list = pg_org_list,
    .key_create = pg_key_create,
    .key_find = pg_key_find,
    .key_list = pg_key_list,
    .key_revoke = pg_key_revoke,
    .number_add = pg_number_add,
    .number_list = pg_number_list,
    .number_remove = pg_number_remove,
    .number_set_status = pg_number_set_status,
    .available_list = pg_available_list,
    .app_create = pg_app_create,
    .app_get = pg_app_get,
    .app_list = pg_app_list,
    .app_update = pg_app_update,
    .app_delete = pg_app_delete,
    .link_create = pg_link_create,
    .link_list = pg_link_list,
    .link_delete = pg_link_delete,
    .number_route = pg_number_route,
    .call_create = pg_call_create,
    .call_update = pg_call_update,
    .call_get = pg_call_get,
    .call_list = pg_call_list,
};

const struct store_backend store_pg_backend = {
    .name = "postgresql",
    .open = pg_open,
    .free = pg_free,
    .conn_open = pg_conn_open,
};

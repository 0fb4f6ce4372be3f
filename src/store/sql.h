/* sql: the one catalogue of the store's SQL statements, written once in
 * PostgreSQL's dialect ($1 placeholders, ::type casts, row locks, the
 * database's clock) and rewritten mechanically for SQLite (sql_for_sqlite).
 * Private to store/. */
#ifndef SFVOPI_STORE_SQL_H
#define SFVOPI_STORE_SQL_H

#include <stddef.h>

#include "core/err.h"

enum sql_id {
    SQL_PING,
    SQL_ORG_INSERT,
    SQL_ORG_GET,
    SQL_ORG_COUNT,
    SQL_ORG_LIST,
    SQL_KEY_INSERT,
    SQL_KEY_FIND,
    SQL_KEY_LIST,
    SQL_KEY_REVOKE,
    SQL_NUM_INSERT,
    SQL_NUM_LIST,
    SQL_NUM_LOCK,
    SQL_NUM_LINKED,
    SQL_NUM_DELETE,
    SQL_NUM_SET_STATUS,
    SQL_AVAIL,
    SQL_APP_INSERT,
    SQL_APP_GET,
    SQL_APP_LIST,
    SQL_APP_UPDATE,
    SQL_APP_DELETE,
    SQL_APP_LOCK,
    SQL_LINKS_OFF_APP,
    SQL_NUM_FOR_LINK,
    SQL_LINK_BY_NUM,
    SQL_LINK_INSERT,
    SQL_LINK_LIST,
    SQL_LINK_OFF,
    SQL_NUM_ROUTE,
    SQL_CALL_INSERT,
    SQL_CALL_UPDATE,
    SQL_CALL_GET,
    SQL_CALL_LIST,
    SQL_NODE_BEAT,
    SQL_NODE_PURGE,
    SQL_CMD_PURGE,
    SQL_CALL_REAP_DEAD,
    SQL_CALL_REAP_ALL,
    SQL_CALL_REAP_OWN,
    SQL_CMD_INSERT,
    SQL_CMD_BROADCAST,
    SQL_CMD_TAKE,
    /* idempotency keys (AGENT.md section 5) */
    SQL_IDEM_CLAIM,
    SQL_IDEM_GET,
    SQL_IDEM_DONE,
    SQL_IDEM_RELEASE,
    SQL_IDEM_PURGE,
    SQL_PACE_ROW,
    SQL_PACE_LOCK,
    SQL_DB_NOW,
    SQL_PACE_WAITING,
    SQL_PACE_LIMITS,
    SQL_PACE_LIVE,
    SQL_PACE_HEAD,
    SQL_PACE_REQ,
    SQL_PACE_TAKE,
    SQL_PACE_NEXT,
    SQL_PACE_APPS,
    SQL_CALL_ENQUEUE,
    SQL_QUEUE_POS,
    SQL_QUEUE_CANCEL_CALL,
    SQL_QUEUE_CANCEL_APP,
    SQL_QUEUE_CANCEL_FROM,
    /* signing secrets (AGENT.md section 4) */
    SQL_ORG_LOCK,
    SQL_WHSEC_ACTIVE_COUNT,
    SQL_WHSEC_INSERT,
    SQL_WHSEC_LIST,
    SQL_WHSEC_LOCK,
    SQL_WHSEC_REVOKE,
    SQL_WHSEC_ALL_ACTIVE,
    SQL_COUNT
};

/* A statement: its name (the prepared statement's name in PostgreSQL
 * sessions, "SQL_PING", ...) and its text in PostgreSQL's dialect. */
struct sql_stmt {
    const char *name;
    const char *text;
};

extern const struct sql_stmt sql_catalogue[SQL_COUNT];

/* The database's clock, in whole milliseconds since the Unix epoch, as the
 * catalogue writes it: PostgreSQL's clock_timestamp() (the time of reading,
 * not of the transaction's start). Each place it is written is read once
 * per statement (a scalar subquery, which also lets it bound an index
 * scan). */
#define SQL_NOW_MS "(SELECT floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint)"
/* What sql_for_sqlite puts in its place: SQLite's own clock ('now', one
 * value for the whole statement), from its Julian day number. */
#define SQL_NOW_MS_SQLITE                                                                          \
    "(SELECT CAST(round((julianday('now') - 2440587.5) * 86400000) AS INTEGER))"

/* Rewrites a statement of the catalogue for SQLite into out (cap bytes):
 * $N becomes ?N, ::type casts go (SQLite binds typed values), SQL_NOW_MS
 * becomes SQL_NOW_MS_SQLITE, and a final row lock (FOR UPDATE, FOR NO KEY
 * UPDATE, FOR SHARE, FOR KEY SHARE) goes (a SQLite write transaction locks
 * the whole database). ERR_INVALID when out is too small. */
enum err sql_for_sqlite(const char *text, char *out, size_t cap) WARN_UNUSED;

#endif

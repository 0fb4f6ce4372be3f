/* driver: what the store's operations (ops.c) ask of a database driver
 * (db_sqlite.c, db_pg.c), and nothing more: sessions, transactions, running
 * one statement of the catalogue (sql.h) with arguments and reading its rows.
 * Private to store/: nothing outside it includes this header.
 *
 * A driver never decides what a domain operation means. It maps its own
 * failures to enum err (ERR_CONFLICT for a unique violation, ERR_NOT_FOUND
 * for a foreign key violation, ERR_UNAVAILABLE for a database that is busy,
 * unreachable or too slow, ERR_DB for anything else), logs the driver's text
 * and lets none of it reach a caller. */
#ifndef SFVOPI_STORE_DRIVER_H
#define SFVOPI_STORE_DRIVER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/err.h"
#include "store/sql.h"
#include "store/store.h"

#define DB_MAX_ARGS 28 /* the most any statement of the catalogue takes (SQL_CALL_INSERT) */
#define DB_MAX_COLS 29 /* the most any statement of the catalogue returns (a call's columns) */

enum db_type { DB_NULL, DB_TEXT, DB_I64, DB_BOOL, DB_BLOB };

/* One argument, bound to $1, $2, ... in order. Text and blobs are borrowed:
 * they must outlive the statement's run. */
struct db_arg {
    enum db_type type;
    const void *p; /* DB_TEXT: NUL-terminated; DB_BLOB: len bytes */
    int len;       /* DB_BLOB */
    int64_t i;     /* DB_I64, DB_BOOL */
};

struct db_args {
    int n;
    struct db_arg v[DB_MAX_ARGS];
};

/* One column of a row, as the driver read it: text (s, len; NUL-terminated)
 * or an integer the driver already has in binary (is_int). Valid only
 * during the row callback. */
struct db_col {
    bool null;
    bool is_int;
    int64_t i;
    const char *s;
    size_t len;
};

struct db_row {
    int n;
    struct db_col col[DB_MAX_COLS];
};

/* Called for each row; a non-ERR_OK return stops the rows being handed over
 * and becomes the statement's result (the driver still finishes the
 * statement, so the session is ready for the next one). */
typedef enum err (*db_row_fn)(void *ud, const struct db_row *row);

/* The head of every driver connection: struct store_conn first, so a
 * struct store_conn * handed to ops.c is a struct db_conn *. */
struct db_conn {
    struct store_conn base;
    const struct db_driver *drv;
};

struct db_driver {
    const char *name; /* "sqlite", "postgresql" */
    /* Opens the database named by url and brings its schema to the newest
     * migration. ERR_INVALID for an url the driver cannot use. */
    enum err (*open)(const char *url, void **db);
    void (*free)(void *db);
    /* A connection for the calling thread, with base.ops set. */
    enum err (*conn_open)(void *db, struct db_conn **out);
    void (*conn_close)(struct db_conn *c);

    /* Around every operation: a usable session, and inside a batch whatever
     * makes a failed operation undo only itself. op_end keeps e, or returns
     * the error of closing the operation. */
    enum err (*op_begin)(struct db_conn *c);
    enum err (*op_end)(struct db_conn *c, enum err e);
    /* An operation's own transaction, for those of several statements:
     * tx_end commits when e is ERR_OK, else rolls back; it returns e or the
     * error of committing. A COMMIT that gets no answer is ERR_UNAVAILABLE,
     * never success. */
    enum err (*tx_begin)(struct db_conn *c);
    enum err (*tx_end)(struct db_conn *c, enum err e);
    /* store_ops.batch_begin and batch_end, with their contract. */
    enum err (*batch_begin)(struct db_conn *c);
    enum err (*batch_end)(struct db_conn *c, bool commit);
    /* Runs statement id with args (NULL: none), handing each row to fn (NULL:
     * rows are ignored). *changes (may be NULL) gets the rows a write
     * changed. what names the operation in logs. */
    enum err (*run)(struct db_conn *c, enum sql_id id, const struct db_args *args, const char *what,
                    db_row_fn fn, void *ud, int64_t *changes);
    /* After an operation that ended in e: true when it should run again
     * (a serialization failure or deadlock the server rolled back), after
     * a short pause, at most a bounded number of *attempt. */
    bool (*again)(struct db_conn *c, enum err e, int *attempt);

    /* store_hold, with its contract, on the database open made. */
    enum err (*hold)(void *db, long *holder);
    /* Inside an operation's transaction: wakes every connection waiting in
     * wait, on any node, once the transaction commits (and never if it
     * rolls back). payload is the notification's text (the node a command
     * is for, "" for all), which waiters do not read. Nothing on SQLite,
     * where wait only sleeps. */
    enum err (*notify)(struct db_conn *c, const char *payload);
    /* store_ops.cmd_wait, with its contract; outside any operation. */
    enum err (*wait)(struct db_conn *c, int timeout_ms, bool *woke);
};

extern const struct db_driver db_sqlite_driver;
extern const struct db_driver db_pg_driver;

/* The operations, once for every driver; they differ only in name. */
extern const struct store_ops store_ops_sqlite;
extern const struct store_ops store_ops_pg;

#endif

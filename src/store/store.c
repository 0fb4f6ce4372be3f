/* store: picks a driver by URL scheme and hands out connections.
 * Nothing here talks to a database itself. */
#include "store/store.h"

#include <stdlib.h>
#include <string.h>

#include "store/driver.h"

struct store {
    const struct db_driver *be;
    void *impl;
};

enum err store_open(const char *url, struct store **out)
{
    const struct db_driver *be = NULL;
    struct store *s;
    enum err e;

    if (strncmp(url, "sqlite:", 7) == 0) {
        be = &db_sqlite_driver;
    } else if (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0) {
        be = &db_pg_driver;
    } else {
        return ERR_INVALID;
    }
    s = calloc(1, sizeof(*s));
    if (!s)
        return ERR_NOMEM;
    s->be = be;
    e = be->open(url, &s->impl);
    if (e != ERR_OK) {
        free(s);
        return e;
    }
    *out = s;
    return ERR_OK;
}

enum err store_hold(struct store *s, long *holder)
{
    *holder = 0;
    return s->be->hold(s->impl, holder);
}

void store_free(struct store *s)
{
    if (!s)
        return;
    s->be->free(s->impl);
    free(s);
}

enum err store_conn_open(struct store *s, struct store_conn **out)
{
    struct db_conn *c = NULL;
    enum err e = s->be->conn_open(s->impl, &c);

    if (e == ERR_OK)
        *out = &c->base;
    return e;
}

void store_conn_close(struct store_conn *c)
{
    if (c)
        c->ops->conn_close(c);
}

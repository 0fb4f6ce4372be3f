/* migrate: the versioned schema migrations compiled into the binary.
 * Each backend has its own list, ordered by version, ending with a zero
 * entry. Applying them is the backend's job (inside its own locking). */
#ifndef SFVOPI_STORE_MIGRATE_H
#define SFVOPI_STORE_MIGRATE_H

struct migration {
    int version;      /* 1, 2, ... in order; 0 ends the list */
    const char *name; /* "0001_init" */
    const char *sql;  /* one or more statements */
};

extern const struct migration migrations_sqlite[];
extern const struct migration migrations_pg[];

#endif

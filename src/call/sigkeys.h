/* sigkeys: every organisation's active signing secrets (AGENT.md section 4),
 * held in memory for the threads that sign (the engine's loop, which must
 * never wait for the database). One thread with its own store connection
 * reads them all again every SIGKEYS_REFRESH_MS, so a secret created or
 * revoked with the CLI (on any node) signs, or stops signing, within about
 * that long. It never logs a secret, only how many there are. */
#ifndef SFVOPI_CALL_SIGKEYS_H
#define SFVOPI_CALL_SIGKEYS_H

#include <stdint.h>

#include "core/err.h"
#include "core/whsig.h"
#include "store/store.h"

/* How stale the secrets may be: a revoked secret signs at most this long
 * (plus one read of the table) after its revocation. While the database is
 * unreachable the last set read stays in use. */
#define SIGKEYS_REFRESH_MS 1000
/* Organisations with secrets held at most; beyond, the rest are unsigned
 * (logged). 100000 orgs hold about 8 MB. */
#define SIGKEYS_ORGS_MAX 100000

struct sigkeys;

/* Reads the secrets once (a failure is logged: the thread tries again)
 * and starts the refresh thread on its own connection of s (borrowed; it
 * must outlive the handle). ERR_NOMEM, or ERR_UNAVAILABLE when the thread
 * cannot start. */
enum err sigkeys_start(struct store *s, struct sigkeys **out) WARN_UNUSED;

/* Stops the thread (at most one database operation's time) and wipes and
 * frees the secrets. Accepts NULL. */
void sigkeys_stop(struct sigkeys *k);

/* Copies org_id's active secrets, newest first, into out (out->n 0: the
 * org has none, or k is NULL: send no signature). The caller wipes out
 * (whsig_keys_wipe) once it has signed. Thread-safe; never touches the
 * database (a lock held only while a copy or a swap of the set runs). */
void sigkeys_get(struct sigkeys *k, int64_t org_id, struct whsig_keys *out);

#endif

/* sql: the catalogue. Each statement is written once; the comments say why
 * it is shaped as it is, on either database. */
#include "store/sql.h"

#include <stdbool.h>
#include <string.h>

#define APP_COLS                                                                                   \
    "app_id, org_id, name, answer_url, answer_method, hangup_url, hangup_method, "                 \
    "fallback_answer_url, fallback_answer_method, status, created_by, created_at, updated_at, "    \
    "max_concurrent_calls, calls_per_second"
#define KEY_COLS "id, org_id, user_id, name, prefix, status, created_at"
#define LINK_COLS "app_id, voip_number, org_id, status, created_at, updated_at"
#define APP_COLS_A                                                                                 \
    "a.app_id, a.org_id, a.name, a.answer_url, a.answer_method, a.hangup_url, a.hangup_method, "   \
    "a.fallback_answer_url, a.fallback_answer_method, a.status, a.created_by, a.created_at, "      \
    "a.updated_at, a.max_concurrent_calls, a.calls_per_second"
#define CALL_COLS                                                                                  \
    "call_uuid, request_uuid, org_id, app_id, \"from\", \"to\", direction, status, started_at, "   \
    "answered_at, ended_at, duration, hangup_cause, created_at, seq, rtp_packets_received, "       \
    "rtp_packets_lost, rtp_jitter_us, node_id, " DIALOG_COLS ", hangup_url, hangup_method"
#define DIALOG_COLS                                                                                \
    "dialog_call_id, dialog_local_uri, dialog_local_tag, dialog_remote_uri, dialog_remote_tag, "   \
    "dialog_remote_target, dialog_route_set, dialog_next_cseq"
/* The statuses of a call that is not over yet; the partial index
 * calls_node_live has exactly this predicate, and a statement that names it
 * word for word can use the index on either database. */
#define CALL_LIVE "status IN ('QUEUED', 'RINGING', 'IN_PROGRESS')"

/* Ends the calls a reap picked, with cause 38; $2 is the caller's clock.
 * One statement: on PostgreSQL, a second node's UPDATE waits for the row
 * lock of the first and then checks its WHERE again on the row as the
 * first left it (READ COMMITTED), finds the call final and leaves it, so
 * each call is ended, and returned, once. */
#define REAP                                                                                       \
    "UPDATE calls SET status = CASE WHEN answered_at IS NULL THEN 'FAILED' ELSE 'COMPLETED' END, " \
    "duration = CASE WHEN answered_at IS NOT NULL AND $2::bigint > answered_at THEN "              \
    "($2::bigint - answered_at) / 1000 ELSE 0 END, ended_at = $2::bigint, hangup_cause = '38' "    \
    "WHERE queue_req IS NULL AND " CALL_LIVE

#define S(id, text) [id] = {#id, text}

const struct sql_stmt sql_catalogue[SQL_COUNT] = {
    S(SQL_PING, "SELECT 1"),
    S(SQL_ORG_INSERT, "INSERT INTO orgs(name, created_at) VALUES ($1, $2) RETURNING id"),
    S(SQL_ORG_GET, "SELECT id, name, created_at FROM orgs WHERE id = $1"),
    S(SQL_ORG_COUNT, "SELECT count(*) FROM orgs"),
    S(SQL_ORG_LIST, "SELECT id, name, created_at FROM orgs ORDER BY id"),
    S(SQL_KEY_INSERT, "INSERT INTO api_keys(org_id, user_id, name, prefix, hash, created_at) "
                      "VALUES ($1, $2, $3, $4, $5::bytea, $6) RETURNING id"),
    S(SQL_KEY_FIND, "SELECT " KEY_COLS " FROM api_keys WHERE hash = $1::bytea"),
    S(SQL_KEY_LIST, "SELECT " KEY_COLS " FROM api_keys WHERE org_id = $1 ORDER BY id"),
    S(SQL_KEY_REVOKE, "UPDATE api_keys SET status = 'REVOKED', revoked_at = coalesce(revoked_at, "
                      "$2::bigint) WHERE id = $1"),
    S(SQL_NUM_INSERT, "INSERT INTO numbers(org_id, e164, provider, created_at) "
                      "VALUES ($1, $2, $3, $4) RETURNING id"),
    S(SQL_NUM_LIST, "SELECT n.id, n.org_id, n.e164, n.provider, n.status, coalesce(l.app_id, '') "
                    "FROM numbers n LEFT JOIN links l ON l.number_id = n.id AND l.status = "
                    "'ACTIVE' WHERE n.org_id = $1 ORDER BY n.id"),
    /* Removing a number locks its row first, so a concurrent link either
     * commits before (and the number is found linked) or finds it gone. */
    S(SQL_NUM_LOCK, "SELECT id FROM numbers WHERE e164 = $1 FOR UPDATE"),
    S(SQL_NUM_LINKED, "SELECT 1 FROM links WHERE number_id = $1 AND status = 'ACTIVE'"),
    S(SQL_NUM_DELETE, "DELETE FROM numbers WHERE id = $1"),
    S(SQL_NUM_SET_STATUS, "UPDATE numbers SET status = $2 WHERE e164 = $1"),
    /* One range of the index numbers_org_free, in id order: the flag
     * linked is kept by a trigger on links (migration 0009), so no number
     * is probed in links. */
    S(SQL_AVAIL, "SELECT n.id, n.org_id, n.e164, n.provider, n.status, '' FROM numbers n "
                 "WHERE n.org_id = $1 AND n.status = 'ACTIVE' AND n.linked = false "
                 "ORDER BY n.id"),
    S(SQL_APP_INSERT, "INSERT INTO apps(" APP_COLS ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, "
                      "$10, $11, $12, $13, $14, $15)"),
    S(SQL_APP_GET, "SELECT " APP_COLS " FROM apps WHERE app_id = $1 AND org_id = $2"),
    S(SQL_APP_LIST,
      "SELECT " APP_COLS " FROM apps WHERE org_id = $1 ORDER BY created_at DESC, id DESC"),
    /* One statement for every partial update: $3, $5, ... say whether the
     * field that follows is set. */
    S(SQL_APP_UPDATE, "UPDATE apps SET "
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
                      "updated_at = $19::bigint, "
                      "max_concurrent_calls = CASE WHEN $20::boolean THEN $21::bigint ELSE "
                      "max_concurrent_calls END, "
                      "calls_per_second = CASE WHEN $22::boolean THEN $23::bigint ELSE "
                      "calls_per_second END "
                      "WHERE app_id = $1 AND org_id = $2 RETURNING " APP_COLS),
    S(SQL_APP_DELETE, "DELETE FROM apps WHERE app_id = $1 AND org_id = $2"),
    /* A link holds a share lock on its app's row until it commits, so that
     * deleting the app waits for it and then deactivates the new link too. */
    S(SQL_APP_LOCK, "SELECT 1 FROM apps WHERE app_id = $1 AND org_id = $2 FOR KEY SHARE"),
    S(SQL_LINKS_OFF_APP, "UPDATE links SET status = 'INACTIVE', updated_at = $2 "
                         "WHERE app_id = $1 AND status = 'ACTIVE'"),
    /* Linking locks the number's inventory row: concurrent links of one
     * number, from any node, run one after the other, and each sees the
     * links committed before it. The unique index stays the last word. */
    S(SQL_NUM_FOR_LINK,
      "SELECT id, status FROM numbers WHERE e164 = $1 AND org_id = $2 FOR NO KEY UPDATE"),
    S(SQL_LINK_BY_NUM,
      "SELECT " LINK_COLS " FROM links WHERE number_id = $1 AND status = 'ACTIVE'"),
    S(SQL_LINK_INSERT, "INSERT INTO links(app_id, org_id, number_id, voip_number, status, "
                       "created_at) VALUES ($1, $2, $3, $4, 'ACTIVE', $5)"),
    /* One statement: the app's existence and its links in one snapshot (no
     * row: no such app; one row with a NULL link: the app, without links).
     * SQLite answers it from the covering indexes apps_id_org and
     * links_app_cover. */
    S(SQL_LINK_LIST, "SELECT l.app_id, l.voip_number, l.org_id, l.status, l.created_at, "
                     "l.updated_at FROM apps a LEFT JOIN links l ON l.app_id = a.app_id AND "
                     "l.status = 'ACTIVE' WHERE a.app_id = $1 AND a.org_id = $2 "
                     "ORDER BY l.created_at DESC, l.id DESC"),
    S(SQL_LINK_OFF, "UPDATE links SET status = 'INACTIVE', updated_at = $3 "
                    "WHERE app_id = $1 AND voip_number = $2 AND status = 'ACTIVE'"),
    /* One statement, so the number, its link and the app are one snapshot.
     * Deleting an app deactivates its links, so an ACTIVE link has an app. */
    S(SQL_NUM_ROUTE, "SELECT n.org_id, n.status, " APP_COLS_A " FROM numbers n "
                     "LEFT JOIN links l ON l.number_id = n.id AND l.status = 'ACTIVE' "
                     "LEFT JOIN apps a ON a.app_id = l.app_id WHERE n.e164 = $1"),
    S(SQL_CALL_INSERT,
      "INSERT INTO calls(call_uuid, request_uuid, org_id, app_id, \"from\", "
      "\"to\", direction, status, started_at, answered_at, ended_at, duration, "
      "hangup_cause, created_at, rtp_packets_received, rtp_packets_lost, "
      "rtp_jitter_us, node_id, " DIALOG_COLS ", hangup_url, hangup_method) VALUES ($1, $2, "
      "$3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, "
      "$19, $20, $21, $22, $23, $24, $25, $26, $27, $28)"),
    /* Everything of the call's progress and its dialog; never its owner. */
    S(SQL_CALL_UPDATE, "UPDATE calls SET status = $2, started_at = $3, answered_at = $4, "
                       "ended_at = $5, duration = $6, hangup_cause = $7, "
                       "rtp_packets_received = $8, rtp_packets_lost = $9, rtp_jitter_us = $10, "
                       "dialog_call_id = $11, dialog_local_uri = $12, dialog_local_tag = $13, "
                       "dialog_remote_uri = $14, dialog_remote_tag = $15, "
                       "dialog_remote_target = $16, dialog_route_set = $17, "
                       "dialog_next_cseq = $18 WHERE call_uuid = $1"),
    S(SQL_CALL_GET, "SELECT " CALL_COLS " FROM calls WHERE org_id = $1 AND (call_uuid = $2 OR "
                    "request_uuid = $2)"),
    /* Answered from the index calls_org_seq, newest first. */
    S(SQL_CALL_LIST, "SELECT " CALL_COLS " FROM calls WHERE org_id = $1 AND seq < $2 "
                     "ORDER BY seq DESC LIMIT $3"),
    /* A heartbeat: the database's clock, never the node's, so that nodes
     * whose clocks differ still judge each other alike. */
    S(SQL_NODE_BEAT, "INSERT INTO nodes(node_id, heartbeat_at) VALUES ($1, " SQL_NOW_MS ") "
                     "ON CONFLICT (node_id) DO UPDATE SET heartbeat_at = excluded.heartbeat_at "
                     "RETURNING heartbeat_at"),
    /* A node id is new at each start: rows of nodes long gone go, unless
     * the node still owns a live call (a reap has yet to end it, and a node
     * without a row is never judged dead). */
    S(SQL_NODE_PURGE,
      "DELETE FROM nodes WHERE heartbeat_at < " SQL_NOW_MS " - $1 AND NOT "
      "EXISTS (SELECT 1 FROM calls WHERE calls.node_id = nodes.node_id AND " CALL_LIVE ")"),
    S(SQL_CMD_PURGE, "DELETE FROM node_commands WHERE created_at < " SQL_NOW_MS " - $1"),
    /* Only while the reaper's own heartbeat is fresh (5 s, the gap that
     * stops a node judging): a reap held up by a stalled database finds its
     * own heartbeat as old as the others' and ends nothing. */
    S(SQL_CALL_REAP_DEAD, REAP " AND node_id <> $1 AND node_id IN (SELECT node_id FROM nodes "
                               "WHERE heartbeat_at < " SQL_NOW_MS " - $3) AND EXISTS (SELECT 1 "
                               "FROM nodes WHERE node_id = $1 AND heartbeat_at >= " SQL_NOW_MS
                               " - 5000) RETURNING " CALL_COLS),
    S(SQL_CALL_REAP_ALL, REAP " AND (node_id IS NULL OR node_id <> $1) RETURNING " CALL_COLS),
    S(SQL_CALL_REAP_OWN, REAP " AND node_id = $1 RETURNING " CALL_COLS),
    S(SQL_CMD_INSERT, "INSERT INTO node_commands(node_id, kind, arg, created_at) "
                      "VALUES ($1, $2, $3, " SQL_NOW_MS ")"),
    /* To every node alive now: a heartbeat at most $1 ms old. */
    S(SQL_CMD_BROADCAST, "INSERT INTO node_commands(node_id, kind, arg, created_at) "
                         "SELECT node_id, $2::text, $3::text, " SQL_NOW_MS " FROM nodes "
                         "WHERE heartbeat_at >= " SQL_NOW_MS " - $1 ORDER BY node_id"),
    /* A node's oldest commands, at most $2 of them, with the clock their
     * age is judged by. DELETE has no ORDER BY: the caller sorts by id. */
    S(SQL_CMD_TAKE,
      "DELETE FROM node_commands WHERE id IN (SELECT id FROM node_commands WHERE "
      "node_id = $1 ORDER BY id LIMIT $2) RETURNING id, kind, arg, created_at, " SQL_NOW_MS),
    /* --- idempotency keys (AGENT.md section 5) --- */
    /* The claim: one statement, so that of any number of requests with a
     * key, on any node, exactly one gets the row back. A second INSERT of
     * the same key waits for the first's to commit, then finds the
     * conflict; the row is taken over only when it is expired ($4 ms old)
     * or a claim abandoned PENDING ($5 ms old), checked on the row as the
     * first left it, so two takers cannot both win either. */
    S(SQL_IDEM_CLAIM,
      "INSERT INTO idempotency_keys(org_id, idem_key, req_hash, state, created_at) "
      "VALUES ($1, $2, $3, 'PENDING', " SQL_NOW_MS ") ON CONFLICT (org_id, idem_key) DO UPDATE "
      "SET req_hash = excluded.req_hash, state = 'PENDING', status = NULL, body = NULL, "
      "created_at = excluded.created_at WHERE idempotency_keys.created_at < "
      "excluded.created_at - $4::bigint OR (idempotency_keys.state = 'PENDING' AND "
      "idempotency_keys.created_at < excluded.created_at - $5::bigint) RETURNING created_at"),
    S(SQL_IDEM_GET, "SELECT req_hash, state, status, body, created_at, " SQL_NOW_MS
                    " FROM idempotency_keys WHERE org_id = $1 AND idem_key = $2"),
    /* Finishing and releasing touch only the claim they were given (its
     * stamp): one taken over meanwhile belongs to another request. */
    S(SQL_IDEM_DONE, "UPDATE idempotency_keys SET state = 'DONE', status = $4, body = $5 "
                     "WHERE org_id = $1 AND idem_key = $2 AND created_at = $3 AND "
                     "state = 'PENDING'"),
    S(SQL_IDEM_RELEASE, "DELETE FROM idempotency_keys WHERE org_id = $1 AND idem_key = $2 AND "
                        "created_at = $3 AND state = 'PENDING'"),
    /* At most $2 expired keys per statement, oldest first, from the index. */
    S(SQL_IDEM_PURGE, "DELETE FROM idempotency_keys WHERE (org_id, idem_key) IN (SELECT org_id, "
                      "idem_key FROM idempotency_keys WHERE created_at < " SQL_NOW_MS
                      " - $1 ORDER BY created_at LIMIT $2)"),

    /* ---- outbound pacing (AGENT.md section 6) ---- */
    /* Every statement that adds to or takes from an app's queue first locks
     * the app's pacing row: on PostgreSQL the nodes queue for it, so an
     * app's calls are queued, counted and claimed one at a time (SQLite has
     * one writer anyway), and seq order is queue order. */
    S(SQL_PACE_ROW, "INSERT INTO app_pacing(app_id, next_start_at) VALUES ($1, 0) "
                    "ON CONFLICT (app_id) DO NOTHING"),
    S(SQL_PACE_LOCK, "SELECT next_start_at FROM app_pacing WHERE app_id = $1 FOR UPDATE"),
    /* The clock, read once the lock is held: read in the locking statement
     * it could be as old as the wait for the lock. */
    S(SQL_DB_NOW, "SELECT " SQL_NOW_MS),
    S(SQL_PACE_WAITING, "SELECT count(*) FROM calls WHERE app_id = $1 AND queue_req IS NOT NULL"),
    S(SQL_PACE_LIMITS, "SELECT max_concurrent_calls, calls_per_second FROM apps WHERE app_id = $1"),
    /* The app's outbound calls that are started and not over, on any node. */
    S(SQL_PACE_LIVE, "SELECT count(*) FROM calls WHERE app_id = $1 AND " CALL_LIVE
                     " AND queue_req IS NULL AND direction = 'OUTBOUND'"),
    S(SQL_PACE_HEAD, "SELECT " CALL_COLS " FROM calls WHERE app_id = $1 AND "
                     "queue_req IS NOT NULL ORDER BY seq LIMIT 1"),
    S(SQL_PACE_REQ, "SELECT queue_req FROM calls WHERE call_uuid = $1"),
    S(SQL_PACE_TAKE, "UPDATE calls SET node_id = $2, queue_req = NULL WHERE call_uuid = $1 AND "
                     "queue_req IS NOT NULL"),
    /* The next start is stamped last, just before the commit after which
     * the call starts: a claim slowed down after its check must not bring
     * the next start closer to this one. */
    S(SQL_PACE_NEXT, "UPDATE app_pacing SET next_start_at = CASE WHEN next_start_at > " SQL_NOW_MS
                     " THEN next_start_at ELSE " SQL_NOW_MS " END + $2 WHERE app_id = $1"),
    S(SQL_PACE_APPS, "SELECT DISTINCT app_id FROM calls WHERE queue_req IS NOT NULL"),
    S(SQL_CALL_ENQUEUE,
      "INSERT INTO calls(call_uuid, request_uuid, org_id, app_id, \"from\", \"to\", direction, "
      "status, created_at, hangup_url, hangup_method, queue_req) VALUES ($1, $2, $3, $4, $5, $6, "
      "'OUTBOUND', 'QUEUED', $7, $8, $9, $10)"),
    /* 1 for the head of the queue; no row when the call is not waiting. */
    S(SQL_QUEUE_POS, "SELECT (SELECT count(*) FROM calls q WHERE q.app_id = w.app_id AND "
                     "q.queue_req IS NOT NULL AND q.seq <= w.seq) FROM calls w WHERE "
                     "w.call_uuid = $1 AND w.queue_req IS NOT NULL"),
/* Cancelling a waiting call: one statement, so that of two nodes
 * racing, the second finds it no longer waiting and leaves it (each
 * call is ended, and returned, once). */
#define QUEUE_CANCEL                                                                               \
    "UPDATE calls SET status = 'CANCELED', hangup_cause = '16', ended_at = $2::bigint, "           \
    "queue_req = NULL WHERE queue_req IS NOT NULL AND "
    S(SQL_QUEUE_CANCEL_CALL, QUEUE_CANCEL "call_uuid = $1 RETURNING " CALL_COLS),
    S(SQL_QUEUE_CANCEL_APP, QUEUE_CANCEL "app_id = $1 RETURNING " CALL_COLS),
    S(SQL_QUEUE_CANCEL_FROM, QUEUE_CANCEL "app_id = $1 AND \"from\" = $3 RETURNING " CALL_COLS),
#undef QUEUE_CANCEL

    /* ---- signing secrets (AGENT.md section 4) ---- */
    /* Creating a secret locks its org's row: two creates for one org, from
     * any node, run one after the other, so the second counts the first. */
    S(SQL_ORG_LOCK, "SELECT id FROM orgs WHERE id = $1 FOR UPDATE"),
    S(SQL_WHSEC_ACTIVE_COUNT,
      "SELECT count(*) FROM webhook_secrets WHERE org_id = $1 AND revoked_at IS NULL"),
    S(SQL_WHSEC_INSERT, "INSERT INTO webhook_secrets(org_id, secret, created_at) "
                        "VALUES ($1, $2, $3) RETURNING id"),
    /* A list never reads more of a secret than its first 12 characters. */
    S(SQL_WHSEC_LIST, "SELECT id, org_id, substr(secret, 1, 12), created_at FROM webhook_secrets "
                      "WHERE org_id = $1 AND revoked_at IS NULL ORDER BY id"),
    S(SQL_WHSEC_LOCK, "SELECT CASE WHEN revoked_at IS NULL THEN 0 ELSE 1 END FROM "
                      "webhook_secrets WHERE id = $1 FOR UPDATE"),
    S(SQL_WHSEC_REVOKE, "UPDATE webhook_secrets SET revoked_at = $2 WHERE id = $1 AND "
                        "revoked_at IS NULL"),
    /* Every active secret, each org's newest first: what signing reads. */
    S(SQL_WHSEC_ALL_ACTIVE, "SELECT org_id, secret FROM webhook_secrets WHERE revoked_at IS NULL "
                            "ORDER BY org_id, id DESC"),
};

#undef S
#undef REAP

static bool is_digit(char c)
{
    return c >= '0' && c <= '9';
}

static bool is_word(char c)
{
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}

/* The length of text without a final row lock clause. */
static size_t without_lock(const char *text)
{
    static const char *const locks[] = {" FOR UPDATE", " FOR NO KEY UPDATE", " FOR SHARE",
                                        " FOR KEY SHARE"};
    size_t n = strlen(text), k, i;

    for (i = 0; i < sizeof(locks) / sizeof(locks[0]); i++) {
        k = strlen(locks[i]);
        if (n >= k && strcmp(text + n - k, locks[i]) == 0)
            return n - k;
    }
    return n;
}

enum err sql_for_sqlite(const char *text, char *out, size_t cap)
{
    const size_t now_len = strlen(SQL_NOW_MS), sqlite_now_len = strlen(SQL_NOW_MS_SQLITE);
    size_t n = without_lock(text), i = 0, o = 0;

    while (i < n) {
        if (strncmp(text + i, SQL_NOW_MS, now_len) == 0) {
            if (cap - o <= sqlite_now_len)
                return ERR_INVALID;
            memcpy(out + o, SQL_NOW_MS_SQLITE, sqlite_now_len);
            o += sqlite_now_len;
            i += now_len;
            continue;
        }
        if (text[i] == ':' && text[i + 1] == ':' && is_word(text[i + 2])) {
            for (i += 2; i < n && is_word(text[i]); i++) {
            }
            continue;
        }
        if (o + 1 >= cap)
            return ERR_INVALID;
        out[o++] = text[i] == '$' && is_digit(text[i + 1]) ? '?' : text[i];
        i++;
    }
    if (o >= cap)
        return ERR_INVALID;
    out[o] = '\0';
    return ERR_OK;
}

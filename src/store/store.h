/* store: the storage interface, and the domain records it hands out.
 * Everything above store/ sees only this header. The operations are written
 * once (ops.c) over a thin driver per database (SQLite, PostgreSQL); each
 * thread opens its own connection (struct store_conn) and never shares it.
 * Every operation that changes more than one row runs as a single
 * transaction. No driver text reaches a caller: it is logged, and the
 * caller gets an enum err.
 *
 * Text handed to the store is valid UTF-8 (callers check their input at
 * their own boundary: the API, the CLI, the SIP side); the store does not
 * check it again.
 *
 * Record fields hold fixed-size strings so that no operation allocates on
 * behalf of its caller. Timestamps are milliseconds since the Unix epoch;
 * 0 stands for null where a field is nullable. */
#ifndef SFVOPI_STORE_STORE_H
#define SFVOPI_STORE_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/e164.h"
#include "core/err.h"
#include "core/whsig.h"

#define APP_ID_PREFIX "sfv_app_"
#define APP_ID_LEN 20       /* "sfv_app_" + 12 characters from [a-z0-9] */
#define APP_NAME_MAX_CP 100 /* code points */
#define APP_NAME_MAX 400    /* bytes: 100 code points of at most 4 bytes */
#define APP_URL_MAX 2048    /* bytes */
#define METHOD_MAX 4        /* "POST" */
#define STATUS_MAX 8        /* "INACTIVE" */
#define ORG_NAME_MAX 200
#define PROVIDER_MAX 64
#define KEY_NAME_MAX 100
#define KEY_PREFIX_LEN 12
#define KEY_HASH_LEN 32

struct store_org {
    int64_t id;
    char name[ORG_NAME_MAX + 1];
    int64_t created_at;
};

struct store_key {
    int64_t id;
    int64_t org_id;
    int64_t user_id;             /* 0: none */
    char name[KEY_NAME_MAX + 1]; /* "" : none */
    char prefix[KEY_PREFIX_LEN + 1];
    bool revoked;
    int64_t created_at;
};

struct store_app {
    char app_id[APP_ID_LEN + 1];
    int64_t org_id;
    char name[APP_NAME_MAX + 1];
    char answer_url[APP_URL_MAX + 1];
    char answer_method[METHOD_MAX + 1];
    char hangup_url[APP_URL_MAX + 1]; /* "": null */
    char hangup_method[METHOD_MAX + 1];
    char fallback_answer_url[APP_URL_MAX + 1]; /* "": null */
    char fallback_answer_method[METHOD_MAX + 1];
    char status[STATUS_MAX + 1];
    int64_t created_by; /* 0: null */
    int64_t created_at;
    int64_t updated_at; /* 0: null */
    /* Outbound pacing (AGENT.md section 6): 0 is null, no cap. */
    int64_t max_concurrent_calls; /* APP_MAX_CONCURRENT_MIN..MAX */
    int64_t calls_per_second;     /* APP_CPS_MIN..MAX */
};

/* Which fields of a struct store_app an update sets. */
enum {
    APP_F_NAME = 1 << 0,
    APP_F_ANSWER_URL = 1 << 1,
    APP_F_ANSWER_METHOD = 1 << 2,
    APP_F_HANGUP_URL = 1 << 3,
    APP_F_HANGUP_METHOD = 1 << 4,
    APP_F_FALLBACK_URL = 1 << 5,
    APP_F_FALLBACK_METHOD = 1 << 6,
    APP_F_STATUS = 1 << 7,
    APP_F_MAX_CONCURRENT = 1 << 8,
    APP_F_CPS = 1 << 9,
};

#define APP_MAX_CONCURRENT_MIN 1
#define APP_MAX_CONCURRENT_MAX 10000
#define APP_CPS_MIN 1
#define APP_CPS_MAX 100
/* The most calls that may wait in one app's queue. */
#define APP_QUEUE_MAX 1000
/* The most bytes of a waiting call's serialised request (call/pace.h). */
#define QUEUE_REQ_MAX 16384

struct store_app_patch {
    unsigned fields;       /* APP_F_* bits */
    struct store_app vals; /* the new values of the fields named in fields */
};

struct store_link {
    char app_id[APP_ID_LEN + 1];
    char voip_number[E164_MAX];
    int64_t org_id;
    char status[STATUS_MAX + 1];
    int64_t created_at;
    int64_t updated_at; /* 0: null */
};

struct store_number {
    int64_t id;
    int64_t org_id;
    char voip_number[E164_MAX];
    char provider[PROVIDER_MAX + 1];
    char status[STATUS_MAX + 1];
    char linked_app_id[APP_ID_LEN + 1]; /* "": not linked */
};

#define CALL_UUID_LEN 36     /* lower-case RFC 4122 text */
#define REQUEST_UUID_LEN 23  /* "sfv_ob_req_" + 12 characters from [a-z0-9] */
#define CALL_PARTY_MAX 64    /* from/to: E.164, or a SIP user part as sent (cut to fit) */
#define CALL_STATUS_MAX 11   /* "IN_PROGRESS" */
#define CALL_DIRECTION_MAX 8 /* "OUTBOUND" */
#define CALL_CAUSE_MAX 3     /* a Q.850 cause as decimal text, "102" */
#define NODE_ID_MAX 64       /* --node-id: [A-Za-z0-9._-], 1-64 characters */

/* The SIP dialog of an answered call, as far as ending it from another
 * node needs (SIP.md section 5): a BYE is built from these alone. The
 * strings are copied as they were on the wire (URIs without angle
 * brackets); next_cseq 0 means no dialog is stored (never answered, or a
 * call from before this was kept). */
#define DIALOG_CALLID_MAX 255
#define DIALOG_TAG_MAX 127
#define DIALOG_URI_MAX 511
#define DIALOG_ROUTE_MAX 1023
struct store_dialog {
    char call_id[DIALOG_CALLID_MAX + 1];
    char local_uri[DIALOG_URI_MAX + 1]; /* our side: From of the BYE */
    char local_tag[DIALOG_TAG_MAX + 1];
    char remote_uri[DIALOG_URI_MAX + 1]; /* the party: To of the BYE */
    char remote_tag[DIALOG_TAG_MAX + 1];
    char remote_target[DIALOG_URI_MAX + 1]; /* the party's Contact: the BYE's Request-URI */
    /* The route set, in the order the BYE's Route headers list it, as
     * comma-separated "<uri>" entries (exactly a Route header's value); ""
     * for none. */
    char route_set[DIALOG_ROUTE_MAX + 1];
    int64_t next_cseq; /* the CSeq number our next request in the dialog takes */
};

/* One call (CALLS.md section 8). The engine creates it and updates it as
 * the call progresses; the API only reads it. */
struct store_call {
    char call_uuid[CALL_UUID_LEN + 1];
    char request_uuid[REQUEST_UUID_LEN + 1]; /* "": inbound */
    int64_t org_id;
    char app_id[APP_ID_LEN + 1];
    char from[CALL_PARTY_MAX + 1];
    char to[CALL_PARTY_MAX + 1];
    char direction[CALL_DIRECTION_MAX + 1]; /* "INBOUND", "OUTBOUND" */
    char status[CALL_STATUS_MAX + 1];       /* the call_status of CALLS.md section 1 */
    int64_t started_at;                     /* 0: the INVITE has not gone out yet */
    int64_t answered_at;                    /* 0: never answered */
    int64_t ended_at;                       /* 0: still alive */
    int64_t duration;                       /* whole seconds, answer to end; 0 until ended */
    char hangup_cause[CALL_CAUSE_MAX + 1];  /* "": still alive */
    int64_t created_at;
    int64_t seq; /* assigned by the store, increasing: the list order and its cursor */
    /* The party's RTP (SIP.md section 6), set when the call ends; 0 until
     * then and for calls without media. */
    int64_t rtp_packets_received;
    int64_t rtp_packets_lost;
    int64_t rtp_jitter_us; /* interarrival jitter, microseconds */
    /* The node that owns the call (SIP.md section 5): written by
     * call_create, never changed by call_update. "" for none. */
    char node_id[NODE_ID_MAX + 1];
    struct store_dialog dialog; /* written by call_create and call_update */
    /* Where the call's hangup webhook goes ("": nowhere), so that another
     * node can send it: written by call_create only. */
    char hangup_url[APP_URL_MAX + 1];
    char hangup_method[METHOD_MAX + 1];
};

/* A command for a node (SIP.md section 5), e.g. kind "hangup" with a
 * call_uuid, or "app_deleted" with an app_id. */
#define CMD_KIND_MAX 32
#define CMD_ARG_MAX 64
typedef enum err (*store_cmd_cb)(void *ud, const char *kind, const char *arg);

/* An idempotency key of POST /sfvopi/calls (AGENT.md section 5): 1-255
 * printable ASCII characters, kept per organisation with the SHA-256 (hex)
 * of the request's canonical body and, once answered, the answer. */
#define IDEM_KEY_MAX 255
#define IDEM_HASH_HEX 64
#define IDEM_BODY_MAX 4096 /* the longest answer body kept */
/* Keys are kept a day after their claim; a claim left PENDING a minute
 * (its node died mid-request: placing a call takes milliseconds) is
 * abandoned and may be claimed again. By the database's clock. */
#define IDEM_KEEP_MS (24 * 60 * 60 * 1000LL)
#define IDEM_STALE_MS (60 * 1000LL)

enum store_idem_state {
    STORE_IDEM_CLAIMED, /* the caller holds the key: answer, then finish or release */
    STORE_IDEM_PENDING, /* another request holds it and has not answered yet */
    STORE_IDEM_DONE,    /* answered: status and body are the kept answer */
};

struct store_idem {
    enum store_idem_state state;
    int64_t claimed_at;               /* CLAIMED: the claim's stamp, for finish and release */
    char req_hash[IDEM_HASH_HEX + 1]; /* PENDING, DONE: the first request's hash */
    int status;                       /* DONE */
    char body[IDEM_BODY_MAX + 1];     /* DONE */
};
/* A signing secret as listed (AGENT.md section 4): never the whole secret,
 * only its first WHSEC_SHOWN_LEN characters. The sizes are core/whsig.h's,
 * the one definition of a secret. */
#define WHSEC_SECRET_LEN WHSIG_SECRET_LEN
#define WHSEC_SHOWN_LEN WHSIG_SHOWN_LEN
#define WHSEC_ACTIVE_MAX WHSIG_KEYS_MAX
struct store_whsecret {
    int64_t id;
    int64_t org_id;
    char shown[WHSEC_SHOWN_LEN + 1];
    int64_t created_at;
};
typedef enum err (*store_whsecret_cb)(void *ud, const struct store_whsecret *s);
/* One active secret in full, for signing: valid only during the call. */
typedef enum err (*store_whsecret_full_cb)(void *ud, int64_t org_id, const char *secret);

/* What an operation that reports ERR_NOT_FOUND did not find. */
enum store_miss { STORE_MISS_NONE, STORE_MISS_APP, STORE_MISS_LINK };

/* Row callbacks: the record is valid only during the call. A non-ERR_OK
 * return stops the iteration and becomes the operation's result. */
typedef enum err (*store_org_cb)(void *ud, const struct store_org *org);
typedef enum err (*store_key_cb)(void *ud, const struct store_key *key);
typedef enum err (*store_app_cb)(void *ud, const struct store_app *app);
typedef enum err (*store_link_cb)(void *ud, const struct store_link *link);
typedef enum err (*store_number_cb)(void *ud, const struct store_number *num);
typedef enum err (*store_call_cb)(void *ud, const struct store_call *call);

struct store_conn;

/* A backend's operations. Every function takes the calling thread's own
 * connection. Unless stated, errors are ERR_UNAVAILABLE (database busy or
 * unreachable after bounded retries) and ERR_DB (any other database error). */
struct store_ops {
    const char *name; /* "sqlite", "postgresql" */
    void (*conn_close)(struct store_conn *c);
    /* Cheap liveness check of the database. */
    enum err (*ping)(struct store_conn *c);
    /* Bulk loading: the operations between batch_begin and batch_end run in
     * one transaction, each as a nested unit (a failed operation undoes only
     * itself). batch_end commits when commit is true, else undoes them all.
     * ERR_INTERNAL for a batch inside a batch or an end without a begin. */
    enum err (*batch_begin)(struct store_conn *c);
    enum err (*batch_end)(struct store_conn *c, bool commit);

    enum err (*org_create)(struct store_conn *c, const char *name, int64_t now, int64_t *id);
    /* ERR_NOT_FOUND when there is no such org. */
    enum err (*org_get)(struct store_conn *c, int64_t id, struct store_org *out);
    enum err (*org_count)(struct store_conn *c, int64_t *n);
    enum err (*org_list)(struct store_conn *c, store_org_cb cb, void *ud);

    /* Stores a key record (id ignored) under its hash; ERR_NOT_FOUND when the
     * org does not exist. */
    enum err (*key_create)(struct store_conn *c, const struct store_key *key,
                           const unsigned char hash[KEY_HASH_LEN], int64_t *id);
    /* ERR_NOT_FOUND when no key has this hash. Revoked keys are returned with
     * revoked set. */
    enum err (*key_find)(struct store_conn *c, const unsigned char hash[KEY_HASH_LEN],
                         struct store_key *out);
    enum err (*key_list)(struct store_conn *c, int64_t org_id, store_key_cb cb, void *ud);
    /* ERR_NOT_FOUND for an unknown id; revoking a revoked key is ERR_OK. */
    enum err (*key_revoke)(struct store_conn *c, int64_t key_id, int64_t now);

    /* Adds an ACTIVE inventory number. ERR_CONFLICT when any org already has
     * it; ERR_NOT_FOUND when the org does not exist. */
    enum err (*number_add)(struct store_conn *c, int64_t org_id, const char *e164,
                           const char *provider, int64_t now, int64_t *id);
    /* Inventory of one org by id, with each number's ACTIVE link if any. */
    enum err (*number_list)(struct store_conn *c, int64_t org_id, store_number_cb cb, void *ud);
    /* ERR_NOT_FOUND when not in any inventory; ERR_CONFLICT while it has an
     * ACTIVE link. */
    enum err (*number_remove)(struct store_conn *c, const char *e164);
    /* status is "ACTIVE" or "INACTIVE". ERR_NOT_FOUND when unknown. */
    enum err (*number_set_status)(struct store_conn *c, const char *e164, const char *status);
    /* The org's ACTIVE numbers with no ACTIVE link, by id ascending. */
    enum err (*available_list)(struct store_conn *c, int64_t org_id, store_number_cb cb, void *ud);

    /* Inserts app as given (app_id, timestamps and all). ERR_CONFLICT when the
     * app_id is taken. */
    enum err (*app_create)(struct store_conn *c, const struct store_app *app);
    /* ERR_NOT_FOUND when the org has no such app. */
    enum err (*app_get)(struct store_conn *c, int64_t org_id, const char *app_id,
                        struct store_app *out);
    /* The org's apps, newest first (ties: most recently created first). */
    enum err (*app_list)(struct store_conn *c, int64_t org_id, store_app_cb cb, void *ud);
    /* Applies patch (updated_at = now when patch->fields != 0) and returns the
     * whole app. ERR_NOT_FOUND when the org has no such app. */
    enum err (*app_update)(struct store_conn *c, int64_t org_id, const char *app_id,
                           const struct store_app_patch *patch, int64_t now, struct store_app *out);
    /* Deletes the app and, in the same transaction, makes its ACTIVE links
     * INACTIVE. ERR_NOT_FOUND when the org has no such app. */
    enum err (*app_delete)(struct store_conn *c, int64_t org_id, const char *app_id, int64_t now);

    /* Links an inventory number to an app, in one transaction, checking in
     * this order: the app (ERR_NOT_FOUND), the number in the org's inventory
     * with status ACTIVE (ERR_INVALID), an ACTIVE link to another app
     * (ERR_CONFLICT). An ACTIVE link to the same app is returned unchanged. */
    enum err (*link_create)(struct store_conn *c, int64_t org_id, const char *app_id,
                            const char *e164, int64_t now, struct store_link *out);
    /* The app's ACTIVE links, newest first, read in one snapshot with the
     * app's existence. ERR_NOT_FOUND when the org has no such app. */
    enum err (*link_list)(struct store_conn *c, int64_t org_id, const char *app_id,
                          store_link_cb cb, void *ud);
    /* Makes the ACTIVE link of e164 to the app INACTIVE. ERR_NOT_FOUND with
     * *miss set to STORE_MISS_APP or STORE_MISS_LINK. */
    enum err (*link_delete)(struct store_conn *c, int64_t org_id, const char *app_id,
                            const char *e164, int64_t now, enum store_miss *miss);

    /* Where a call to or from e164 goes: the org whose inventory holds it,
     * the number's status, and the app of its ACTIVE link (the whole record,
     * whatever the app's status), read in one snapshot. ERR_NOT_FOUND when
     * no inventory holds the number; app->app_id is "" when it has no
     * ACTIVE link. */
    enum err (*number_route)(struct store_conn *c, const char *e164, int64_t *org_id,
                             char number_status[STATUS_MAX + 1], struct store_app *app);
    /* Inserts a call (seq is assigned and ignored here). ERR_CONFLICT when
     * its call_uuid or request_uuid is taken. */
    enum err (*call_create)(struct store_conn *c, const struct store_call *call);
    /* Sets status, started_at, answered_at, ended_at, duration,
     * hangup_cause, the rtp_ statistics and the dialog of the call named by
     * call->call_uuid; nothing else (never node_id).
     * ERR_NOT_FOUND when there is no such call. */
    enum err (*call_update)(struct store_conn *c, const struct store_call *call);
    /* The org's call whose call_uuid or request_uuid is id. ERR_NOT_FOUND
     * otherwise (also for another org's call). */
    enum err (*call_get)(struct store_conn *c, int64_t org_id, const char *id,
                         struct store_call *out);
    /* The org's calls with seq < before_seq, newest (highest seq) first, at
     * most limit of them. before_seq INT64_MAX starts at the newest. */
    enum err (*call_list)(struct store_conn *c, int64_t org_id, int64_t before_seq, int limit,
                          store_call_cb cb, void *ud);

    /* --- nodes (SIP.md section 5) --- */

    /* Writes node_id's heartbeat, stamped with the database's clock
     * (creating its row the first time), and returns that stamp in
     * milliseconds since the epoch. Then, as housekeeping whose failure is
     * only logged, removes commands an hour old (for nodes that never took
     * them) and the rows of nodes whose last heartbeat is a day old and
     * that own no non-final call, and up to a few hundred idempotency keys
     * past IDEM_KEEP_MS. */
    enum err (*node_beat)(struct store_conn *c, const char *node_id, int64_t *db_now_ms);
    /* Ends, in one statement, every non-final call (QUEUED, RINGING,
     * IN_PROGRESS) owned by a dead node: one whose heartbeat row is older
     * than dead_ms by the database's clock (an owner without a heartbeat
     * row, or "", is never dead), never self. With all_others (SQLite, at
     * start) every non-final call not owned by self is ended instead,
     * whatever its owner. An answered call (answered_at != 0) becomes
     * COMPLETED with duration (now - answered_at) / 1000, any other FAILED;
     * hangup_cause "38", ended_at now (ms, the caller's clock). Two nodes
     * racing end each call once: cb gets each call this call ended, after
     * the update (with its stored dialog), and no other call ever gets it
     * again. A cb error does not undo the update. A call waiting in its
     * app's queue (call_enqueue) is never ended: it has no owner, and any
     * live node starts it. */
    /* dead_ms < 0 (without all_others): ends the non-final calls owned by
     * self itself instead, those of an earlier run under the same name (a
     * node restarted with its --node-id before it was judged dead). */
    enum err (*node_reap)(struct store_conn *c, const char *self, int64_t dead_ms, bool all_others,
                          int64_t now, store_call_cb cb, void *ud);
    /* Stores a command for node (NULL: for every node whose heartbeat is
     * younger than alive_ms by the database's clock, self included) and
     * wakes the nodes waiting in cmd_wait, once it is stored. ERR_INVALID
     * for a kind longer than CMD_KIND_MAX or an arg longer than
     * CMD_ARG_MAX bytes. */
    enum err (*cmd_post)(struct store_conn *c, const char *node, int64_t alive_ms, const char *kind,
                         const char *arg);
    /* Removes and hands to cb (oldest first) every command stored for
     * node_id; commands older than max_age_ms by the database's clock are
     * removed without being handed out. Each command is handed out once,
     * after its removal is committed. A cb error ends the take, but only
     * after the commands already removed with it (a few dozen at most) are
     * handed out too; the first error is returned. */
    enum err (*cmd_take)(struct store_conn *c, const char *node_id, int64_t max_age_ms,
                         store_cmd_cb cb, void *ud);
    /* Waits up to timeout_ms for a cmd_post from any node (PostgreSQL:
     * LISTEN/NOTIFY on this connection, listening again after a reconnect;
     * SQLite: only sleeps). *woke is true when a notification arrived.
     * A caller must still cmd_take after a timeout: a notification sent
     * while this connection was down is lost, the stored command is not.
     * While the database is unreachable it still waits out timeout_ms
     * (then ERR_UNAVAILABLE), so a caller may wait again at once; making a
     * new session may overrun timeout_ms by a connect timeout. The
     * connection stays subscribed between waits: a notification that
     * arrives meanwhile (also while it runs other operations) wakes the
     * next wait at once. ERR_INTERNAL inside a batch. */
    enum err (*cmd_wait)(struct store_conn *c, int timeout_ms, bool *woke);

    /* --- idempotency keys (AGENT.md section 5) --- */

    /* Claims key for org_id with req_hash, atomically across nodes: of
     * requests racing for one key exactly one gets STORE_IDEM_CLAIMED (and
     * out->claimed_at). The others get the row as it stands: PENDING, or
     * DONE with the kept answer; out->req_hash says which request it was.
     * A key claimed IDEM_KEEP_MS ago, or left PENDING IDEM_STALE_MS, counts
     * as absent and is claimed again. A kept body longer than
     * IDEM_BODY_MAX is cut (finish never keeps one). A new claim also
     * deletes up to two expired keys (failure ignored). */
    enum err (*idem_claim)(struct store_conn *c, int64_t org_id, const char *key,
                           const char *req_hash, struct store_idem *out);
    /* Keeps the answer (status, body of at most IDEM_BODY_MAX bytes) of the
     * claim made at claimed_at. ERR_NOT_FOUND when that claim is gone
     * (taken over as abandoned); ERR_TOO_LARGE for a longer body. */
    enum err (*idem_finish)(struct store_conn *c, int64_t org_id, const char *key,
                            int64_t claimed_at, int status, const char *body);
    /* Frees the key of the claim made at claimed_at, which was not
     * answered with a kept answer. ERR_NOT_FOUND when that claim is gone. */
    enum err (*idem_release)(struct store_conn *c, int64_t org_id, const char *key,
                             int64_t claimed_at);
    /* Deletes at most limit keys claimed more than IDEM_KEEP_MS ago, by
     * the database's clock; *n (may be NULL) gets how many. */
    enum err (*idem_purge)(struct store_conn *c, int limit, int64_t *n);
    /* --- outbound pacing (AGENT.md section 6) --- */

    /* Stores call (status QUEUED, no owner, no dialog: only its ids, org,
     * app, parties, created_at and hangup URL are read) as waiting at the
     * end of its app's queue, with req (text of at most QUEUE_REQ_MAX
     * bytes: what starting it needs, opaque here). *position gets its place
     * (1: next). ERR_RATE_LIMITED when max_waiting calls already wait for
     * the app (nothing stored; *position is then how many wait);
     * ERR_CONFLICT when an id is taken; ERR_INVALID for a req too long. */
    enum err (*call_enqueue)(struct store_conn *c, const struct store_call *call, const char *req,
                             int64_t max_waiting, int64_t *position);
    /* The apps with a waiting call, at most cap of them, into ids; *n how
     * many. */
    enum err (*pace_apps)(struct store_conn *c, char (*ids)[APP_ID_LEN + 1], int cap, int *n);
    /* Claims the head of app_id's queue for node_id when the app's caps
     * allow a call to start now, in one transaction that holds the app's
     * pacing lock: fewer than max_concurrent_calls of its outbound calls
     * are live (started, not final, on any node), and the app's next start
     * time (the database's clock) has come; the next start then moves to
     * max(now, next) + 1000 / calls_per_second ms, now read as the claim
     * commits. On success *claimed is
     * true, *out the call (now owned by node_id, no longer waiting) and req
     * (cap bytes) its request text. Else *wait_ms says when to look again:
     * the ms until the next start time when only the rate holds it back,
     * -1 when the queue is empty or the concurrency cap holds it (a call's
     * end frees it). Calls of an app without caps (or deleted) are claimed
     * at once. Two nodes racing never claim one call twice. */
    enum err (*pace_claim)(struct store_conn *c, const char *app_id, const char *node_id,
                           struct store_call *out, char *req, size_t cap, bool *claimed,
                           int64_t *wait_ms);
    /* The place (1: next) of the waiting call call_uuid in its app's
     * queue; 0 when it is not waiting (started, ended or unknown). */
    enum err (*call_queue_position)(struct store_conn *c, const char *call_uuid, int64_t *position);
    /* Ends waiting calls CANCELED "16" at now: the one named call_uuid
     * (non-NULL), else every waiting call of app_id, or with from
     * (non-NULL) only those from that number. cb gets each call ended,
     * once its end is committed; of nodes racing, each call is ended and
     * handed out once. A cb error does not undo the end. */
    enum err (*call_queue_cancel)(struct store_conn *c, const char *call_uuid, const char *app_id,
                                  const char *from, int64_t now, store_call_cb cb, void *ud);
    /* --- signing secrets (AGENT.md section 4) --- */

    /* Stores secret (WHSEC_SECRET_LEN characters) as an active secret of
     * org_id, checking in one transaction, under the org's row lock (so
     * that concurrent creates on any node count each other): the org
     * (ERR_NOT_FOUND), then fewer than WHSEC_ACTIVE_MAX active secrets
     * (ERR_CONFLICT). */
    enum err (*whsecret_create)(struct store_conn *c, int64_t org_id, const char *secret,
                                int64_t now, int64_t *id);
    /* The org's active secrets, oldest first, each shown only by its first
     * WHSEC_SHOWN_LEN characters (the rest never leaves the database). */
    enum err (*whsecret_list)(struct store_conn *c, int64_t org_id, store_whsecret_cb cb, void *ud);
    /* Revokes a secret: it signs nothing from then on. ERR_NOT_FOUND for an
     * unknown id, ERR_CONFLICT for a secret revoked already. */
    enum err (*whsecret_revoke)(struct store_conn *c, int64_t id, int64_t now);
    /* Every active secret of every org, by org_id ascending and, within an
     * org, newest first. The secret is handed over in full: for signing
     * only, never to be logged or shown. */
    enum err (*whsecret_active_all)(struct store_conn *c, store_whsecret_full_cb cb, void *ud);
};

/* The head of every backend connection. */
struct store_conn {
    const struct store_ops *ops;
};

/* A database: the configuration from which connections are opened. */
struct store;

/* Opens the database named by url ("sqlite:PATH", "sqlite::memory:" for a
 * private in-memory database, or "postgresql://..."), creating or
 * migrating its schema. ERR_INVALID for an unusable url, ERR_UNAVAILABLE or
 * ERR_DB when the database cannot be opened or migrated (the reason is
 * logged). The handle is thread-safe. */
enum err store_open(const char *url, struct store **out) WARN_UNUSED;
/* For `serve` on SQLite: holds the database file for this process so that
 * a second server on the same file refuses to start (SIP.md section 5).
 * ERR_CONFLICT when another process holds it, with *holder its pid (0 when
 * unknown); ERR_OK at once on PostgreSQL (nodes share it). Released by
 * store_free and by the process's exit. */
enum err store_hold(struct store *s, long *holder) WARN_UNUSED;
/* Closes the handle; all its connections must already be closed. */
void store_free(struct store *s);
/* Opens a connection for the calling thread. */
enum err store_conn_open(struct store *s, struct store_conn **out) WARN_UNUSED;
/* Closes a connection; accepts NULL. */
void store_conn_close(struct store_conn *c);

#endif

-- Calls across nodes (SIP.md section 5). Each call names the node that owns
-- it and keeps the SIP dialog from which another node can end it (a BYE);
-- rows from before read NULL (no owner, no dialog) and dialog_next_cseq 0.
ALTER TABLE calls ADD COLUMN node_id TEXT;
-- Where the hangup webhook goes, so that the node that ends a dead node's
-- call can send it.
ALTER TABLE calls ADD COLUMN hangup_url TEXT;
ALTER TABLE calls ADD COLUMN hangup_method TEXT;
ALTER TABLE calls ADD COLUMN dialog_call_id TEXT;
ALTER TABLE calls ADD COLUMN dialog_local_uri TEXT;
ALTER TABLE calls ADD COLUMN dialog_local_tag TEXT;
ALTER TABLE calls ADD COLUMN dialog_remote_uri TEXT;
ALTER TABLE calls ADD COLUMN dialog_remote_tag TEXT;
ALTER TABLE calls ADD COLUMN dialog_remote_target TEXT;
ALTER TABLE calls ADD COLUMN dialog_route_set TEXT;
ALTER TABLE calls ADD COLUMN dialog_next_cseq INTEGER NOT NULL DEFAULT 0;
-- The calls that are not over yet, by owner: what a reap looks for. Only
-- live calls are in it, so it stays small however many calls are kept.
CREATE INDEX calls_node_live ON calls(node_id)
    WHERE status IN ('QUEUED', 'RINGING', 'IN_PROGRESS');

-- Each node's heartbeat, stamped with the database's clock (SQLite's 'now',
-- as milliseconds since the Unix epoch), as on PostgreSQL. On SQLite there is
-- only ever one node; the table keeps the two schemas alike.
CREATE TABLE nodes (
    node_id      TEXT PRIMARY KEY,
    heartbeat_at INTEGER NOT NULL
);

-- Commands waiting for their node (a hangup, a deleted app), taken oldest
-- first (by id) and removed as they are taken. created_at is the database's
-- clock, as in nodes. Without AUTOINCREMENT an id may come back once every
-- command is gone, which keeps the order of those still waiting.
CREATE TABLE node_commands (
    id         INTEGER PRIMARY KEY,
    node_id    TEXT NOT NULL,
    kind       TEXT NOT NULL,
    arg        TEXT NOT NULL,
    created_at INTEGER NOT NULL
);
-- A node's commands, oldest first; and the old ones, for the purge.
CREATE INDEX node_commands_node ON node_commands(node_id, id);
CREATE INDEX node_commands_created ON node_commands(created_at);

-- Outbound pacing (AGENT.md section 6). An app may cap its live outbound
-- calls and the rate at which they start; NULL is no cap.
ALTER TABLE apps ADD COLUMN max_concurrent_calls INTEGER;
ALTER TABLE apps ADD COLUMN calls_per_second INTEGER;
-- A call waiting for its turn holds what the engine needs to start it (the
-- validated request, as text) in queue_req; it is NULL for every other
-- call, and set back to NULL when a node claims the call or it is
-- cancelled. A waiting call has status QUEUED and no owner.
ALTER TABLE calls ADD COLUMN queue_req TEXT;
-- The queue of each app, in order (seq), and nothing else: small however
-- many calls are kept.
CREATE INDEX calls_queue ON calls(app_id, seq) WHERE queue_req IS NOT NULL;
-- The live calls of an app, counted against its cap.
CREATE INDEX calls_app_live ON calls(app_id)
    WHERE status IN ('QUEUED', 'RINGING', 'IN_PROGRESS');
-- One row per paced app: the lock that makes nodes claim its calls one at
-- a time, and the earliest time (the database's clock, ms) at which its
-- next call may start.
CREATE TABLE app_pacing (
    app_id        TEXT PRIMARY KEY,
    next_start_at INTEGER NOT NULL DEFAULT 0
);

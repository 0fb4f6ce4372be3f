-- Call records (CALLS.md section 8). seq orders the list and names its
-- cursor; it only grows (AUTOINCREMENT never reuses a value). Timestamps are
-- milliseconds since the Unix epoch (UTC); NULL while they do not apply.
CREATE TABLE calls (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    call_uuid    TEXT NOT NULL UNIQUE,
    request_uuid TEXT UNIQUE,
    org_id       INTEGER NOT NULL,
    app_id       TEXT NOT NULL,
    "from"       TEXT NOT NULL,
    "to"         TEXT NOT NULL,
    direction    TEXT NOT NULL CHECK (direction IN ('INBOUND', 'OUTBOUND')),
    status       TEXT NOT NULL CHECK (status IN ('QUEUED', 'RINGING', 'IN_PROGRESS', 'COMPLETED',
                                                 'NO_ANSWER', 'BUSY', 'CANCELED', 'FAILED')),
    started_at   INTEGER,
    answered_at  INTEGER,
    ended_at     INTEGER,
    duration     INTEGER NOT NULL DEFAULT 0,
    hangup_cause TEXT,
    created_at   INTEGER NOT NULL
);
-- An organisation's calls, newest first, one page after another.
CREATE INDEX calls_org_seq ON calls(org_id, seq);

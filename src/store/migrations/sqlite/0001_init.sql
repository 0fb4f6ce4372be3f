-- The control plane: organisations, API keys, number inventory, apps, links.
-- Timestamps are milliseconds since the Unix epoch (UTC).
CREATE TABLE orgs (
    id         INTEGER PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at INTEGER NOT NULL
);

CREATE TABLE api_keys (
    id         INTEGER PRIMARY KEY,
    org_id     INTEGER NOT NULL REFERENCES orgs(id),
    user_id    INTEGER,
    name       TEXT,
    prefix     TEXT NOT NULL,
    hash       BLOB NOT NULL UNIQUE,
    status     TEXT NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'REVOKED')),
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
CREATE INDEX api_keys_org ON api_keys(org_id, id);

CREATE TABLE numbers (
    id         INTEGER PRIMARY KEY,
    org_id     INTEGER NOT NULL REFERENCES orgs(id),
    e164       TEXT NOT NULL UNIQUE,
    provider   TEXT NOT NULL,
    status     TEXT NOT NULL DEFAULT 'ACTIVE' CHECK (status IN ('ACTIVE', 'INACTIVE')),
    created_at INTEGER NOT NULL
);
CREATE INDEX numbers_org ON numbers(org_id, id);

CREATE TABLE apps (
    id                     INTEGER PRIMARY KEY,
    app_id                 TEXT NOT NULL UNIQUE,
    org_id                 INTEGER NOT NULL REFERENCES orgs(id),
    name                   TEXT NOT NULL,
    answer_url             TEXT NOT NULL,
    answer_method          TEXT NOT NULL CHECK (answer_method IN ('POST', 'GET')),
    hangup_url             TEXT,
    hangup_method          TEXT NOT NULL CHECK (hangup_method IN ('POST', 'GET')),
    fallback_answer_url    TEXT,
    fallback_answer_method TEXT NOT NULL CHECK (fallback_answer_method IN ('POST', 'GET')),
    status                 TEXT NOT NULL CHECK (status IN ('ACTIVE', 'INACTIVE')),
    created_by             INTEGER,
    created_at             INTEGER NOT NULL,
    updated_at             INTEGER
);
CREATE INDEX apps_org ON apps(org_id, created_at DESC, id DESC);

-- Links keep their history: unlinking makes a row INACTIVE. Apps are deleted
-- for good, so app_id is not a foreign key.
CREATE TABLE links (
    id          INTEGER PRIMARY KEY,
    app_id      TEXT NOT NULL,
    org_id      INTEGER NOT NULL,
    number_id   INTEGER NOT NULL,
    voip_number TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('ACTIVE', 'INACTIVE')),
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER
);
-- A number has at most one ACTIVE link at any moment.
CREATE UNIQUE INDEX links_one_active ON links(number_id) WHERE status = 'ACTIVE';
CREATE INDEX links_app_active ON links(app_id, created_at DESC, id DESC) WHERE status = 'ACTIVE';

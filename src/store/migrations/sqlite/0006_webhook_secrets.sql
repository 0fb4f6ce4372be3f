-- Signing secrets of an organisation (AGENT.md section 4). The secret is kept
-- as it is, not hashed: sfvopi must read it to sign every webhook and stream
-- connection. At most two are active (revoked_at NULL) per org; the store's
-- create checks it inside its transaction.
CREATE TABLE webhook_secrets (
    id         INTEGER PRIMARY KEY,
    org_id     INTEGER NOT NULL REFERENCES orgs(id),
    secret     TEXT NOT NULL UNIQUE,
    created_at INTEGER NOT NULL,
    revoked_at INTEGER
);
-- The active secrets, by org: what a create counts and what signing reads.
CREATE INDEX webhook_secrets_active ON webhook_secrets(org_id, id) WHERE revoked_at IS NULL;

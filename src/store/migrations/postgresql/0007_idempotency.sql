-- Idempotency keys of POST /sfvopi/calls (AGENT.md section 5), per
-- organisation, kept in the database so that every node sees the same
-- claims. A row is claimed PENDING by the one request that inserted it
-- (INSERT ... ON CONFLICT), then holds the answer that request gave
-- (DONE, status and body), or is deleted when that answer is not kept.
-- req_hash is the SHA-256 (hex) of the body's RFC 8785 canonical form.
-- created_at is the database's clock in milliseconds since the Unix
-- epoch: nodes judge age by this one clock, never by their own.
CREATE TABLE idempotency_keys (
    org_id     BIGINT NOT NULL REFERENCES orgs(id),
    idem_key   TEXT NOT NULL,
    req_hash   TEXT NOT NULL,
    state      TEXT NOT NULL CHECK (state IN ('PENDING', 'DONE')),
    status     INTEGER,
    body       TEXT,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (org_id, idem_key)
);
-- The purge of expired keys, oldest first.
CREATE INDEX idempotency_keys_created ON idempotency_keys(created_at);

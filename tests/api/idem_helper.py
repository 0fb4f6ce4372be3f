"""Idempotency keys from the outside (AGENT.md section 5): the request hash sfvopi keeps (SHA-256
of the body's RFC 8785 form, written here independently with the standard library, for the
bodies the tests use: strings, integers, objects) and direct access to the stored keys of a
server's database (SQLite file or PostgreSQL URL), to age a key or plant a claim."""

import hashlib
import json
import sqlite3
import subprocess
import time

DAY_MS = 24 * 60 * 60 * 1000
STALE_MS = 60 * 1000
MSG_REUSED = "Idempotency-Key reused with a different request"
MSG_IN_PROGRESS = "A request with this Idempotency-Key is in progress"


def canonical(body):
    """RFC 8785 for bodies of strings, integers, booleans, null, objects and arrays: for these
    it is sorted members (no key here is outside the BMP) without whitespace or ASCII escapes."""
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def body_hash(body):
    return hashlib.sha256(canonical(body).encode("utf-8")).hexdigest()


def db_exec(db_url, sql, params=()):
    """Run one statement on a server's database; returns the rows as lists of text. params are
    only for SQLite (psql gets literal SQL: tests pass their own constants)."""
    if db_url.startswith("sqlite:"):
        con = sqlite3.connect(db_url[len("sqlite:"):], timeout=10)
        try:
            rows = con.execute(sql, params).fetchall()
            con.commit()
        finally:
            con.close()
        return [[str(v) for v in r] for r in rows]
    assert not params
    cp = subprocess.run(["psql", db_url, "-X", "-v", "ON_ERROR_STOP=1", "-q", "-A", "-t",
                         "-F", "\t", "-c", sql], capture_output=True, text=True, timeout=30)
    assert cp.returncode == 0, f"psql failed: {cp.stderr}"
    return [line.split("\t") for line in cp.stdout.splitlines() if line]


def keys_of(db_url, org_id):
    """The org's stored keys: {key: (state, status)}."""
    rows = db_exec(db_url, "SELECT idem_key, state, coalesce(status, 0) FROM idempotency_keys "
                           f"WHERE org_id = {int(org_id)}")
    return {r[0]: (r[1], int(r[2])) for r in rows}


def age_key(db_url, org_id, key, ms):
    """Makes a stored key ms older (its claim's stamp earlier by ms)."""
    assert "'" not in key
    db_exec(db_url, f"UPDATE idempotency_keys SET created_at = created_at - {int(ms)} "
                    f"WHERE org_id = {int(org_id)} AND idem_key = '{key}'")


def plant_pending(db_url, org_id, key, body):
    """A claim of `key` for `body` still being answered, as a request on another node leaves
    it, stamped now."""
    assert "'" not in key
    db_exec(db_url, "INSERT INTO idempotency_keys(org_id, idem_key, req_hash, state, created_at) "
                    f"VALUES ({int(org_id)}, '{key}', '{body_hash(body)}', 'PENDING', "
                    f"{int(time.time() * 1000)})")

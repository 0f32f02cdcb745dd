-- opsbot's records: executions, their output, open dialogs and the audit trail.
--
-- Timestamps are INTEGER unix milliseconds (UTC). Params and dialog state are JSON text.
-- The SQL stays close to what PostgreSQL accepts so a PostgreSQL store can follow.

CREATE TABLE executions (
    id                    INTEGER PRIMARY KEY AUTOINCREMENT,
    job                   TEXT    NOT NULL,
    params                TEXT    NOT NULL,
    requested_by_platform TEXT    NOT NULL,
    requested_by_id       TEXT    NOT NULL,
    requester_name        TEXT    NOT NULL,
    place_platform        TEXT    NOT NULL,
    place_channel         TEXT    NOT NULL,
    place_thread          TEXT    NULL,
    state                 TEXT    NOT NULL,
    created_at            INTEGER NOT NULL,
    started_at            INTEGER NULL,
    finished_at           INTEGER NULL,
    exit_code             INTEGER NULL,
    duration_ms           INTEGER NULL,
    cpu_ms                INTEGER NULL,
    max_rss_kb            INTEGER NULL,
    detail                TEXT    NULL,
    worker                TEXT    NULL,
    lease_until           INTEGER NULL,
    cancel_requested      INTEGER NOT NULL DEFAULT 0,
    max_parallel          INTEGER NULL
);

CREATE INDEX executions_state_id ON executions (state, id);
CREATE INDEX executions_job_id ON executions (job, id);
CREATE INDEX executions_requested_by_id ON executions (requested_by_platform, requested_by_id, id);

-- One row per appended chunk; `body` holds the chunk's lines, one per line, as
-- `<unix_ms> <o|e|s> <text>`.
CREATE TABLE output_chunks (
    execution_id INTEGER NOT NULL REFERENCES executions (id) ON DELETE CASCADE,
    seq          INTEGER NOT NULL,
    n_lines      INTEGER NOT NULL,
    n_bytes      INTEGER NOT NULL,
    body         TEXT    NOT NULL,
    PRIMARY KEY (execution_id, seq)
);

CREATE TABLE dialogs (
    place_key      TEXT    NOT NULL,
    user_platform  TEXT    NOT NULL,
    user_id        TEXT    NOT NULL,
    place_platform TEXT    NOT NULL,
    place_channel  TEXT    NOT NULL,
    place_thread   TEXT    NULL,
    kind           TEXT    NOT NULL,
    state          TEXT    NOT NULL,
    expires_at     INTEGER NOT NULL,
    PRIMARY KEY (place_key, user_platform, user_id)
);

CREATE TABLE audit (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    at             INTEGER NOT NULL,
    actor_platform TEXT    NOT NULL,
    actor_id       TEXT    NOT NULL,
    actor_name     TEXT    NOT NULL,
    place_platform TEXT    NOT NULL,
    place_channel  TEXT    NOT NULL,
    place_thread   TEXT    NULL,
    action         TEXT    NOT NULL,
    job            TEXT    NULL,
    params         TEXT    NULL,
    decision       TEXT    NOT NULL,
    reason         TEXT    NULL,
    execution_id   INTEGER NULL
);

CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit records are append-only');
END;

CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN
    SELECT RAISE(ABORT, 'audit records are append-only');
END;

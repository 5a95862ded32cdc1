-- Tamper-evident audit: every session event carries the hash of the one
-- before it (a chain per session, computed by the control plane at ingest),
-- signed checkpoints record every session's head so a deleted or truncated
-- session is detected, and the store refuses to change or remove either.
--
-- Events stored before this migration keep NULL chain fields; verification
-- reports them as unchained rather than trusting them. SIEM pulls page by
-- rowid: writes are serialised (BEGIN IMMEDIATE), so rowids follow commits.

ALTER TABLE session_events ADD COLUMN schema_version INTEGER;
ALTER TABLE session_events ADD COLUMN prev_hash TEXT;
ALTER TABLE session_events ADD COLUMN hash TEXT;
CREATE INDEX session_events_at ON session_events (at);

CREATE TABLE audit_checkpoints (
    seq         INTEGER PRIMARY KEY,
    created_at  INTEGER NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    signature   TEXT NOT NULL,
    sessions    INTEGER NOT NULL
);

CREATE TABLE audit_checkpoint_heads (
    checkpoint_seq  INTEGER NOT NULL REFERENCES audit_checkpoints (seq),
    session_id      TEXT NOT NULL,
    last_seq        INTEGER NOT NULL,
    last_hash       TEXT NOT NULL,
    PRIMARY KEY (checkpoint_seq, session_id)
);
CREATE INDEX audit_checkpoint_heads_session
    ON audit_checkpoint_heads (session_id, checkpoint_seq DESC);

CREATE TRIGGER session_events_no_update BEFORE UPDATE ON session_events
BEGIN SELECT RAISE(ABORT, 'audit records are append-only: UPDATE on session_events refused'); END;
CREATE TRIGGER session_events_no_delete BEFORE DELETE ON session_events
BEGIN SELECT RAISE(ABORT, 'audit records are append-only: DELETE on session_events refused'); END;
CREATE TRIGGER audit_checkpoints_no_update BEFORE UPDATE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit records are append-only: UPDATE on audit_checkpoints refused'); END;
CREATE TRIGGER audit_checkpoints_no_delete BEFORE DELETE ON audit_checkpoints
BEGIN SELECT RAISE(ABORT, 'audit records are append-only: DELETE on audit_checkpoints refused'); END;
CREATE TRIGGER audit_checkpoint_heads_no_update BEFORE UPDATE ON audit_checkpoint_heads
BEGIN SELECT RAISE(ABORT, 'audit records are append-only: UPDATE on audit_checkpoint_heads refused'); END;
CREATE TRIGGER audit_checkpoint_heads_no_delete BEFORE DELETE ON audit_checkpoint_heads
BEGIN SELECT RAISE(ABORT, 'audit records are append-only: DELETE on audit_checkpoint_heads refused'); END;

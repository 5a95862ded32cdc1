-- Tamper-evident audit: every session event carries the hash of the one
-- before it (a chain per session, computed by the control plane at ingest),
-- signed checkpoints record every session's head so a deleted or truncated
-- session is detected, and the store refuses to change or remove either.
--
-- Events stored before this migration keep NULL chain fields; verification
-- reports them as unchained rather than trusting them.

ALTER TABLE session_events ADD COLUMN schema_version BIGINT;
ALTER TABLE session_events ADD COLUMN prev_hash TEXT;
ALTER TABLE session_events ADD COLUMN hash TEXT;
-- A global ingest position for SIEM pulls that resume where they stopped,
-- and when the row was written (pulls wait for rows to settle, because ids
-- are taken before concurrent transactions commit).
ALTER TABLE session_events ADD COLUMN ingest_id BIGSERIAL;
ALTER TABLE session_events ADD COLUMN stored_at BIGINT NOT NULL
    DEFAULT (floor(extract(epoch FROM clock_timestamp()) * 1000000))::BIGINT;
CREATE UNIQUE INDEX session_events_ingest ON session_events (ingest_id);
CREATE INDEX session_events_at ON session_events (at);

CREATE TABLE audit_checkpoints (
    seq         BIGINT PRIMARY KEY,
    created_at  BIGINT NOT NULL,
    prev_hash   TEXT NOT NULL,
    hash        TEXT NOT NULL,
    key_id      TEXT NOT NULL,
    public_key  TEXT NOT NULL,
    signature   TEXT NOT NULL,
    sessions    BIGINT NOT NULL
);

CREATE TABLE audit_checkpoint_heads (
    checkpoint_seq  BIGINT NOT NULL REFERENCES audit_checkpoints (seq),
    session_id      TEXT NOT NULL,
    last_seq        BIGINT NOT NULL,
    last_hash       TEXT NOT NULL,
    PRIMARY KEY (checkpoint_seq, session_id)
);
CREATE INDEX audit_checkpoint_heads_session
    ON audit_checkpoint_heads (session_id, checkpoint_seq DESC);

CREATE FUNCTION sluice_audit_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'audit records are append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

CREATE TRIGGER session_events_append_only
    BEFORE UPDATE OR DELETE ON session_events
    FOR EACH ROW EXECUTE FUNCTION sluice_audit_append_only();
CREATE TRIGGER session_events_no_truncate
    BEFORE TRUNCATE ON session_events
    FOR EACH STATEMENT EXECUTE FUNCTION sluice_audit_append_only();
CREATE TRIGGER audit_checkpoints_append_only
    BEFORE UPDATE OR DELETE ON audit_checkpoints
    FOR EACH ROW EXECUTE FUNCTION sluice_audit_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate
    BEFORE TRUNCATE ON audit_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION sluice_audit_append_only();
CREATE TRIGGER audit_checkpoint_heads_append_only
    BEFORE UPDATE OR DELETE ON audit_checkpoint_heads
    FOR EACH ROW EXECUTE FUNCTION sluice_audit_append_only();
CREATE TRIGGER audit_checkpoint_heads_no_truncate
    BEFORE TRUNCATE ON audit_checkpoint_heads
    FOR EACH STATEMENT EXECUTE FUNCTION sluice_audit_append_only();

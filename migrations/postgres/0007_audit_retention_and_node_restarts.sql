-- Retention: a session's events may be deleted only once a signed checkpoint
-- holds a tombstone for it (a head whose hash starts with 'deleted:'), which
-- the control plane writes in the same transaction as the deletion. Every
-- other update or deletion is still refused, and verification still reports
-- a session that vanished without a tombstone.

CREATE FUNCTION sluice_audit_retire_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND EXISTS (
        SELECT 1 FROM audit_checkpoint_heads h
        WHERE h.session_id = OLD.session_id AND h.last_hash LIKE 'deleted:%'
    ) THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit records are append-only: % on % refused', TG_OP, TG_TABLE_NAME
        USING ERRCODE = 'insufficient_privilege';
END
$$;

DROP TRIGGER session_events_append_only ON session_events;
CREATE TRIGGER session_events_append_only
    BEFORE UPDATE OR DELETE ON session_events
    FOR EACH ROW EXECUTE FUNCTION sluice_audit_retire_only();

-- When each node's current process registered: a session whose node
-- restarted after its last stored event can receive no more, so verification
-- reports its missing end as a lost tail.
ALTER TABLE nodes ADD COLUMN process_started_at BIGINT NOT NULL DEFAULT 0;

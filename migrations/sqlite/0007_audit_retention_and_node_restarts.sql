-- Retention: a session's events may be deleted only once a signed checkpoint
-- holds a tombstone for it (a head whose hash starts with 'deleted:'), which
-- the control plane writes in the same transaction as the deletion.

DROP TRIGGER session_events_no_delete;
CREATE TRIGGER session_events_no_delete BEFORE DELETE ON session_events
WHEN NOT EXISTS (
    SELECT 1 FROM audit_checkpoint_heads h
    WHERE h.session_id = OLD.session_id AND h.last_hash LIKE 'deleted:%'
)
BEGIN SELECT RAISE(ABORT, 'audit records are append-only: DELETE on session_events refused'); END;

-- When each node's current process registered: a session whose node
-- restarted after its last stored event can receive no more, so verification
-- reports its missing end as a lost tail.
ALTER TABLE nodes ADD COLUMN process_started_at BIGINT NOT NULL DEFAULT 0;

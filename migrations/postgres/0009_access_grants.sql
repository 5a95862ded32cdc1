-- Just-in-time access grants: an identity asks for a time-boxed exemption
-- from per-statement approval on one target (optionally one policy rule),
-- with a reason. Approvers decide it under the same rules as statements.
--
-- `state` moves pending -> active | denied | expired, and active -> revoked
-- | expired; never back. `version` grows with every change, so a decision is
-- written only if nobody changed the grant since it was read.
-- `request_expires_at` is when a pending grant lapses undecided;
-- `expires_at` is set on approval: approval time plus `duration_us`.
--
-- `grant_decisions` is the history: every vote and state change.

CREATE TABLE access_grants (
    id                  TEXT PRIMARY KEY,
    state               TEXT NOT NULL CHECK (state IN ('pending', 'active', 'denied', 'expired', 'revoked')),
    version             BIGINT NOT NULL,
    identity            TEXT NOT NULL,
    target              TEXT NOT NULL,
    scope               TEXT NOT NULL,
    reason              TEXT NOT NULL,
    policy              TEXT NOT NULL,
    duration_us         BIGINT NOT NULL,
    approvers           TEXT NOT NULL,
    required            BIGINT NOT NULL,
    created_at          BIGINT NOT NULL,
    request_expires_at  BIGINT NOT NULL,
    expires_at          BIGINT,
    decided_at          BIGINT,
    ended_at            BIGINT
);

CREATE INDEX access_grants_state ON access_grants (state, created_at);
CREATE INDEX access_grants_identity ON access_grants (identity, target, state);

CREATE TABLE grant_decisions (
    id        TEXT PRIMARY KEY,
    grant_id  TEXT NOT NULL REFERENCES access_grants (id) ON DELETE CASCADE,
    at        BIGINT NOT NULL,
    actor     TEXT NOT NULL,
    action    TEXT NOT NULL CHECK (action IN ('approve', 'deny', 'expire', 'revoke')),
    channel   TEXT NOT NULL,
    reason    TEXT NOT NULL
);

CREATE INDEX grant_decisions_by_grant ON grant_decisions (grant_id, at);

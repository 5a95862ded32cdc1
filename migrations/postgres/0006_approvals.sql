-- Approval requests: a statement that policy says needs a human's approval,
-- bound to who asked, where, the exact statement bytes and bound parameters
-- (`statement_hash`, SHA-256 hex) and the deciding policy rule.
--
-- `state` moves pending -> approved | denied | expired | cancelled, never
-- back; `version` grows with every change, so a decision is written only if
-- nobody changed the request since it was read (two approvers racing for the
-- last required approval cannot both count). `consumed_at` is set when an
-- approved statement runs, so one approval runs one statement.
--
-- `approval_decisions` is the history: every vote and every state change,
-- with who, when, through which channel and why.

CREATE TABLE approvals (
    id              TEXT PRIMARY KEY,
    state           TEXT NOT NULL CHECK (state IN ('pending', 'approved', 'denied', 'expired', 'cancelled')),
    version         BIGINT NOT NULL,
    mode            TEXT NOT NULL CHECK (mode IN ('answer', 'hold')),
    identity        TEXT NOT NULL,
    target          TEXT NOT NULL,
    session_id      TEXT NOT NULL,
    node_id         TEXT NOT NULL,
    node_request_id TEXT NOT NULL,
    statement       TEXT NOT NULL,
    statement_hash  TEXT NOT NULL,
    policy          TEXT NOT NULL,
    rule            TEXT NOT NULL,
    reason          TEXT NOT NULL,
    approvers       TEXT NOT NULL,
    required        BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    expires_at      BIGINT NOT NULL,
    decided_at      BIGINT,
    consumed_at     BIGINT,
    slack_channel   TEXT,
    slack_ts        TEXT
);

CREATE INDEX approvals_binding ON approvals (identity, target, statement_hash, state);
CREATE INDEX approvals_state_created ON approvals (state, created_at);

CREATE TABLE approval_decisions (
    id           TEXT PRIMARY KEY,
    approval_id  TEXT NOT NULL REFERENCES approvals (id) ON DELETE CASCADE,
    at           BIGINT NOT NULL,
    actor        TEXT NOT NULL,
    action       TEXT NOT NULL CHECK (action IN ('approve', 'deny', 'expire', 'cancel')),
    channel      TEXT NOT NULL,
    reason       TEXT NOT NULL
);

-- Signed Slack interaction requests already handled, by signature: a
-- replayed request (same signature) is refused on every replica.
CREATE TABLE slack_requests_seen (
    signature   TEXT PRIMARY KEY,
    at          BIGINT NOT NULL
);

CREATE INDEX approval_decisions_by_approval ON approval_decisions (approval_id, at);

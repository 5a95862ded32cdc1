-- Non-human identities and the credentials issued to them.
--
-- `service_accounts` are agents and automation. Each holds a client id and
-- the SHA-256 of its client secret (the secret itself is shown once), and
-- exchanges them for short-lived tokens at the OAuth2 token endpoint.
-- `issued_tokens` records every token the control plane signs for them, so
-- tokens can be listed (never with their secret) and revoked before expiry.
-- `api_keys` are long-lived REST credentials for automation, scoped to one
-- role and stored hashed.

CREATE TABLE service_accounts (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL UNIQUE,
    kind          TEXT NOT NULL CHECK (kind IN ('agent', 'service')),
    description   TEXT NOT NULL,
    owner         TEXT NOT NULL,
    groups        TEXT NOT NULL,
    client_id     TEXT NOT NULL UNIQUE,
    secret_hash   TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    disabled_at   BIGINT
);

CREATE TABLE issued_tokens (
    id            TEXT PRIMARY KEY,
    subject       TEXT NOT NULL,
    kind          TEXT NOT NULL,
    account_id    TEXT,
    issued_by     TEXT NOT NULL,
    issued_at     BIGINT NOT NULL,
    expires_at    BIGINT NOT NULL,
    revoked_at    BIGINT
);
CREATE INDEX issued_tokens_by_account ON issued_tokens (account_id, issued_at);
CREATE INDEX issued_tokens_revoked ON issued_tokens (expires_at) WHERE revoked_at IS NOT NULL;

CREATE TABLE api_keys (
    id            TEXT PRIMARY KEY,
    name          TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('admin', 'approver', 'auditor')),
    prefix        TEXT NOT NULL,
    key_hash      TEXT NOT NULL UNIQUE,
    created_by    TEXT NOT NULL,
    created_at    BIGINT NOT NULL,
    revoked_at    BIGINT
);

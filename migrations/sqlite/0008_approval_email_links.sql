-- Email approval links used so far (each works once), by the SHA-256 of
-- the link token. Rows outlive their request's deadline harmlessly.
CREATE TABLE approval_email_links_used (
    link_id TEXT PRIMARY KEY,
    approval_id TEXT NOT NULL,
    used_at BIGINT NOT NULL
);

-- Target credentials are never stored in clear. `targets.secret` holds
-- either a value sealed with AES-256-GCM under the configured key-encryption
-- key (`v1:<key id>:<base64>`) or a reference the node resolves itself
-- (`ref:env:NAME`, `ref:file:PATH`). Values stored in clear by earlier
-- versions are sealed by the control plane when it starts.
--
-- `target_logins` maps identity groups to other upstream roles, so an
-- agent's statements run under a least-privileged role: the first login
-- (by position) whose group the identity holds is used, else the target's
-- own username and secret.

ALTER TABLE targets RENAME COLUMN password TO secret;

CREATE TABLE target_logins (
    target_id   TEXT NOT NULL REFERENCES targets (id) ON DELETE CASCADE,
    position    BIGINT NOT NULL,
    group_name  TEXT NOT NULL,
    username    TEXT NOT NULL,
    secret      TEXT NOT NULL,
    PRIMARY KEY (target_id, position)
);

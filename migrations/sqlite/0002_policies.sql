-- Policies and their full history. `policies` holds the current version of
-- each live policy; `policy_versions` every version ever stored, deletions
-- included (as a version with no source), so nothing an admin did is lost.

CREATE TABLE policies (
    name        TEXT PRIMARY KEY,
    version     INTEGER NOT NULL,
    source      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE policy_versions (
    name        TEXT NOT NULL,
    version     INTEGER NOT NULL,
    source      TEXT,
    author      TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (name, version)
);

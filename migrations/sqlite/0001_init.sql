-- Foundation schema: targets, nodes and their join tokens, sessions and their events.
-- Times are microseconds since the Unix epoch (INTEGER) in both stores, so the
-- Postgres and SQLite backends share every query.

CREATE TABLE config_revision (
    id        INTEGER PRIMARY KEY CHECK (id = 1),
    revision  INTEGER NOT NULL
);
INSERT INTO config_revision (id, revision) VALUES (1, 1);

CREATE TABLE targets (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    host        TEXT NOT NULL,
    port        INTEGER NOT NULL,
    database    TEXT NOT NULL,
    username    TEXT NOT NULL,
    password    TEXT NOT NULL,
    tls_mode    TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE join_tokens (
    id          TEXT PRIMARY KEY,
    name        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL,
    revoked_at  INTEGER
);

CREATE TABLE nodes (
    id             TEXT PRIMARY KEY,
    name           TEXT NOT NULL UNIQUE,
    version        TEXT NOT NULL,
    listen_addrs   TEXT NOT NULL,
    join_token_id  TEXT NOT NULL REFERENCES join_tokens (id),
    registered_at  INTEGER NOT NULL,
    last_seen_at   INTEGER NOT NULL
);

CREATE TABLE sessions (
    id                TEXT PRIMARY KEY,
    node_id           TEXT NOT NULL,
    identity          TEXT NOT NULL,
    identity_kind     TEXT NOT NULL,
    groups            TEXT NOT NULL,
    target            TEXT NOT NULL,
    client_addr       TEXT NOT NULL,
    tls               BOOLEAN NOT NULL,
    protocol          TEXT NOT NULL,
    application_name  TEXT NOT NULL,
    token_id          TEXT NOT NULL,
    started_at        INTEGER NOT NULL,
    ended_at          INTEGER,
    end_reason        TEXT,
    statements        INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX sessions_newest ON sessions (started_at DESC, id DESC);

CREATE TABLE session_events (
    session_id  TEXT NOT NULL,
    seq         INTEGER NOT NULL,
    at          INTEGER NOT NULL,
    kind        TEXT NOT NULL,
    statement   TEXT,
    decision    TEXT,
    payload     TEXT NOT NULL,
    PRIMARY KEY (session_id, seq)
);

-- HTTP targets (kind `http`): the base URL requests are forwarded under, how
-- the upstream credential is sent (`bearer`, `basic`, `header:NAME`,
-- `query:NAME`; the credential itself stays in `secret`, sealed or a
-- node-local reference, as for Postgres targets) and extra CA certificates
-- (PEM) trusted for the upstream. Postgres targets keep these empty.

ALTER TABLE targets ADD COLUMN base_url TEXT NOT NULL DEFAULT '';
ALTER TABLE targets ADD COLUMN http_auth TEXT NOT NULL DEFAULT '';
ALTER TABLE targets ADD COLUMN ca_pem TEXT NOT NULL DEFAULT '';

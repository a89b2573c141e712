-- persist schema, version 25: records (see `persist::records`). Opaque values under a space and
-- a key, per tenant ('' for none), with the time they expire (NULL: never), which no read
-- answers once past. Spaces and keys compare bytewise (the default collation); a listing is by
-- key, then space.
--
-- A table is added; no existing row is read or rewritten.

CREATE TABLE persist_records (
    tenant     TEXT    NOT NULL,
    space      TEXT    NOT NULL,
    key        TEXT    NOT NULL,
    value      BLOB    NOT NULL,
    expires_at INTEGER,                             -- microseconds since the epoch
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, space, key)
) STRICT;

CREATE INDEX persist_records_expiry ON persist_records (tenant, expires_at) WHERE expires_at IS NOT NULL;

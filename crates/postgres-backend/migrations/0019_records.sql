-- persist schema for PostgreSQL, version 19: records (see `persist::records`). Opaque values
-- under a space and a key, per tenant ('' for none), with the time they expire (NULL: never),
-- which no read answers once past. Spaces and keys compare bytewise (`COLLATE "C"`, as on every
-- backend); a listing is by key, then space.
--
-- A table is added; no existing row is read or rewritten.

CREATE TABLE persist_records (
    tenant     TEXT  NOT NULL,
    space      TEXT  COLLATE "C" NOT NULL,
    key        TEXT  COLLATE "C" NOT NULL,
    value      BYTEA NOT NULL,
    expires_at BIGINT,                              -- microseconds since the epoch
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, space, key)
);

CREATE INDEX persist_records_expiry ON persist_records (tenant, expires_at) WHERE expires_at IS NOT NULL;

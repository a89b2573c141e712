-- persist schema for PostgreSQL, version 16: working memory (see `persist::working`). One JSON
-- document per tenant ('' for none) and resource, as its exact text (not `jsonb`, which rewrites
-- numbers such as `1e2`), with its version (1 once written, +1 on every write) and times. A write
-- locks the row (made first, at version 0, when there is none) and applies its patch to the
-- document as the row holds it: concurrent patches from any instance are never lost.
--
-- A table is added; no existing row is read or rewritten.

CREATE TABLE persist_working_memory (
    tenant     TEXT   NOT NULL,
    resource   TEXT   NOT NULL,
    document   TEXT   NOT NULL,                     -- a JSON object
    version    BIGINT NOT NULL,                     -- 0: made by a write that has not committed
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, resource)
);

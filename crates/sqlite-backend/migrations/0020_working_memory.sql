-- persist schema, version 20: working memory (see `persist::working`). One JSON document per
-- tenant ('' for none) and resource, as its exact text, with its version (1 once written, +1 on
-- every write) and times. A patch is applied by the writer to the document as this table holds
-- it, inside the write's transaction: concurrent patches are never lost.
--
-- A table is added; no existing row is read or rewritten.

CREATE TABLE persist_working_memory (
    tenant     TEXT    NOT NULL,
    resource   TEXT    NOT NULL,
    document   TEXT    NOT NULL,                    -- a JSON object
    version    INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, resource)
) STRICT;

-- persist schema for PostgreSQL, version 18: idempotency keys that outlive their messages (see
-- `persist::spent`). When a message written with a key is removed (a delete, a truncation, a
-- clear, what a summary covered), its key stays here until `forget_at` (the key retention of the
-- instance that removed it, after the removal), with what answers a retry of the request that
-- wrote it: the message's id, seq, parent and time, and a fingerprint of that request (never its
-- content; NULL when the message had changed before it went). A write carrying a key kept here
-- is not inserted. A thread's keys go when it is purged.
--
-- A table is added; no existing row is read or rewritten.

CREATE TABLE persist_spent_keys (
    tenant          TEXT   NOT NULL,
    thread_id       TEXT   NOT NULL,
    idempotency_key TEXT   NOT NULL,
    message_id      TEXT   NOT NULL,
    seq             BIGINT NOT NULL,
    parent_seq      BIGINT,                         -- its parent's seq; NULL for a root
    created_at      BIGINT NOT NULL,
    fingerprint     TEXT,
    forget_at       BIGINT NOT NULL,
    PRIMARY KEY (tenant, thread_id, idempotency_key)
);

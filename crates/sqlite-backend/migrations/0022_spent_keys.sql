-- persist schema, version 22: idempotency keys that outlive their messages (see
-- `persist::spent`). When a message written with a key is removed (a delete, a truncation, a
-- clear, what a summary covered), its key stays here until `forget_at` (the store's key
-- retention after the removal), with what answers a retry of the request that wrote it: the
-- message's id, seq, parent and time, and a fingerprint of that request (never its content;
-- NULL when the message had changed before it went). A write carrying a key kept here is not
-- inserted. A thread's keys go when it is purged.
--
-- A table is added; no existing row is read or rewritten.

CREATE TABLE persist_spent_keys (
    thread          INTEGER NOT NULL,                -- `threads.key`
    idempotency_key TEXT    NOT NULL,
    message_id      TEXT    NOT NULL,
    seq             INTEGER NOT NULL,
    parent_seq      INTEGER,                        -- its parent's seq; NULL for a root
    created_at      INTEGER NOT NULL,
    fingerprint     TEXT,
    forget_at       INTEGER NOT NULL,
    PRIMARY KEY (thread, idempotency_key)
) STRICT, WITHOUT ROWID;

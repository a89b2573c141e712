-- persist schema, version 1.
-- Times are microseconds since the Unix epoch (UTC). JSON columns hold compact JSON text.

-- One row per conversation. Created by its first write; a delete leaves it as a tombstone
-- (deleted_at set) so a late writer cannot bring the conversation back.
CREATE TABLE threads (
    thread_id     TEXT    NOT NULL PRIMARY KEY,
    tenant        TEXT,                             -- owner; NULL = created by trusted host code
    title         TEXT,
    metadata      TEXT    NOT NULL DEFAULT '{}',    -- JSON object
    version       INTEGER NOT NULL DEFAULT 1,       -- +1 on every title/metadata change
    created_at    INTEGER NOT NULL,
    updated_at    INTEGER NOT NULL,                 -- last change to the thread or its messages
    last_seq      INTEGER NOT NULL DEFAULT 0,       -- highest seq ever assigned (never lowered)
    message_count INTEGER NOT NULL DEFAULT 0,       -- messages currently stored
    deleted_at    INTEGER                           -- set = tombstone
) STRICT;

-- Serves "threads, most recently updated first".
CREATE INDEX threads_by_activity ON threads (updated_at DESC, thread_id DESC)
    WHERE deleted_at IS NULL;

-- One row per message; identity is (thread_id, message_id), never message_id alone.
CREATE TABLE messages (
    thread_id       TEXT    NOT NULL REFERENCES threads (thread_id),
    message_id      TEXT    NOT NULL,
    seq             INTEGER NOT NULL,               -- 1, 2, 3… per thread, never reused
    role            TEXT    NOT NULL,               -- user, assistant, system, tool, …
    content         TEXT    NOT NULL,               -- JSON; '[]' while reserved
    metadata        TEXT    NOT NULL,               -- JSON object
    status          TEXT    NOT NULL CHECK (status IN ('reserved', 'complete')),
    version         INTEGER NOT NULL,               -- 1 on insert, +1 on every change
    idempotency_key TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    PRIMARY KEY (thread_id, message_id),
    UNIQUE (thread_id, seq),                        -- also serves listing by seq
    UNIQUE (thread_id, idempotency_key)             -- a retried write finds its first copy
) STRICT, WITHOUT ROWID;

-- Thread counters move in the same transaction as the message write that changes them.
CREATE TRIGGER messages_counters_on_insert AFTER INSERT ON messages
BEGIN
    UPDATE threads
       SET last_seq = NEW.seq, message_count = message_count + 1, updated_at = NEW.updated_at
     WHERE thread_id = NEW.thread_id;
END;

CREATE TRIGGER messages_touch_thread_on_update AFTER UPDATE ON messages
BEGIN
    UPDATE threads SET updated_at = NEW.updated_at WHERE thread_id = NEW.thread_id;
END;

CREATE TRIGGER messages_counters_on_delete AFTER DELETE ON messages
BEGIN
    UPDATE threads SET message_count = message_count - 1 WHERE thread_id = OLD.thread_id;
END;

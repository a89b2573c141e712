-- persist schema, version 10: interrupted replies. A message's status may be 'interrupted' (a
-- reservation whose stream stopped before its end, its text so far kept), and each feed event
-- of a message records the status the change left (NULL for deletes and the thread's own
-- changes; events recorded before this version have none).
--
-- SQLite cannot change a CHECK constraint: `messages` is rebuilt, rows copied as they are in
-- their arrival order, then its indexes and triggers are made again as they were, the feed's
-- now recording the status. This runs in one transaction: all of it or nothing.

ALTER TABLE persist_feed ADD COLUMN status TEXT;   -- reserved, complete, interrupted (messages only)

CREATE TABLE messages_v10 (
    tenant          TEXT    NOT NULL DEFAULT '',    -- the thread's tenant
    thread_id       TEXT    NOT NULL,
    message_id      TEXT    NOT NULL,
    seq             INTEGER NOT NULL,               -- 1, 2, 3… per thread, never reused
    role            TEXT    NOT NULL,               -- user, assistant, system, tool, …
    content         TEXT    NOT NULL,               -- JSON; '[]' while reserved
    metadata        TEXT    NOT NULL,               -- JSON object
    status          TEXT    NOT NULL CHECK (status IN ('reserved', 'complete', 'interrupted')),
    version         INTEGER NOT NULL,               -- 1 on insert, +1 on every change
    idempotency_key TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    FOREIGN KEY (tenant, thread_id) REFERENCES threads (tenant, thread_id),
    UNIQUE (tenant, thread_id, message_id),         -- identity is (tenant, thread_id, message_id)
    UNIQUE (tenant, thread_id, seq)                 -- also serves listing by seq
) STRICT;

INSERT INTO messages_v10 (tenant, thread_id, message_id, seq, role, content, metadata, status, version,
                          idempotency_key, created_at, updated_at)
     SELECT tenant, thread_id, message_id, seq, role, content, metadata, status, version,
            idempotency_key, created_at, updated_at
       FROM messages
      ORDER BY rowid;

-- Dropping the table drops its indexes and triggers (the copy fired none: it has none yet).
DROP TABLE messages;

-- As version 6 did: the legacy rename leaves a view or trigger of your own that reads
-- `messages` finding the new table by its name.
PRAGMA legacy_alter_table = ON;
ALTER TABLE messages_v10 RENAME TO messages;
PRAGMA legacy_alter_table = OFF;

-- A retried write finds its first copy.
CREATE UNIQUE INDEX messages_by_idempotency_key ON messages (tenant, thread_id, idempotency_key)
    WHERE idempotency_key IS NOT NULL;

CREATE INDEX messages_reserved_by_age ON messages (created_at) WHERE status = 'reserved';

CREATE TRIGGER messages_counters_on_insert AFTER INSERT ON messages
BEGIN
    INSERT INTO persist_feed (position, tenant, thread_id, op, message_id, seq, version, removed, at, prev, status)
    SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0), s.trimmed) + 1,
           NEW.tenant, NEW.thread_id, CASE NEW.status WHEN 'reserved' THEN 'reserve' ELSE 'add' END,
           NEW.message_id, NEW.seq, NEW.version, NULL, CAST(unixepoch('subsec') * 1000000 AS INTEGER),
           (SELECT feed_last FROM threads WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id), NEW.status
      FROM persist_feed_state s WHERE s.enabled;
    UPDATE threads
       SET last_seq = NEW.seq, message_count = message_count + 1, updated_at = NEW.updated_at,
           feed_last = CASE WHEN (SELECT enabled FROM persist_feed_state) THEN last_insert_rowid() ELSE feed_last END
     WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id;
END;

CREATE TRIGGER messages_touch_thread_on_update AFTER UPDATE ON messages
BEGIN
    INSERT INTO persist_feed (position, tenant, thread_id, op, message_id, seq, version, removed, at, prev, status)
    SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0), s.trimmed) + 1,
           NEW.tenant, NEW.thread_id,
           CASE WHEN NEW.content IS NOT OLD.content OR NEW.status IS NOT OLD.status
                THEN 'update_content' ELSE 'update' END,
           NEW.message_id, NEW.seq, NEW.version, NULL, CAST(unixepoch('subsec') * 1000000 AS INTEGER),
           (SELECT feed_last FROM threads WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id), NEW.status
      FROM persist_feed_state s WHERE s.enabled;
    UPDATE threads
       SET updated_at = NEW.updated_at,
           feed_last = CASE WHEN (SELECT enabled FROM persist_feed_state) THEN last_insert_rowid() ELSE feed_last END
     WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id;
END;

CREATE TRIGGER messages_counters_on_delete AFTER DELETE ON messages
BEGIN
    UPDATE threads SET message_count = message_count - 1 WHERE tenant = OLD.tenant AND thread_id = OLD.thread_id;
END;

CREATE TRIGGER persist_feed_message_deleted AFTER DELETE ON messages
WHEN (SELECT enabled FROM persist_feed_state)
 AND EXISTS (SELECT 1 FROM threads t
              WHERE t.tenant = OLD.tenant AND t.thread_id = OLD.thread_id AND t.deleted_at IS NULL
                AND t.last_seq >= 0)
BEGIN
    INSERT INTO persist_feed (position, tenant, thread_id, op, message_id, seq, version, removed, at, prev)
    VALUES ((SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0), trimmed) + 1 FROM persist_feed_state),
            OLD.tenant, OLD.thread_id, 'delete', OLD.message_id, OLD.seq, OLD.version, 'message',
            CAST(unixepoch('subsec') * 1000000 AS INTEGER),
            (SELECT feed_last FROM threads WHERE tenant = OLD.tenant AND thread_id = OLD.thread_id));
    UPDATE threads SET feed_last = last_insert_rowid() WHERE tenant = OLD.tenant AND thread_id = OLD.thread_id;
END;

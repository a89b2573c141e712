-- persist schema, version 7: the change feed. Every committed change of a message or of a
-- thread's version or tombstone is one row of `persist_feed`, written by the triggers below in
-- the transaction of the write: a write that rolls back leaves no event, a committed write
-- always has its events. `position` is AUTOINCREMENT: SQLite numbers rows in commit order (one
-- writer at a time holds the file's write lock, whatever the process) and never reuses a
-- number, even once retention removed the rows (`sqlite_sequence` keeps the head).
--
-- `persist_feed_state` holds the newest position retention removed (`trimmed`: resuming from
-- before it is a gap) and whether the feed records at all (`enabled`, set by the handle that
-- opens the file last).
--
-- A thread delete marks the thread as being deleted (a negative `last_seq`, restored by the
-- tombstone) before it removes the messages, so the messages it removes have no events of their
-- own: the thread's delete says it all. The mark changes no row's size and records nothing, so
-- a thread delete still frees room on a full disk before its event takes any.

CREATE TABLE persist_feed (
    position   INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant     TEXT    NOT NULL,                    -- '' = no tenant
    thread_id  TEXT    NOT NULL,
    op         TEXT    NOT NULL,                    -- add, reserve, update_content, update, delete
    message_id TEXT,                                -- NULL: the thread's own change
    seq        INTEGER,
    version    INTEGER NOT NULL,
    removed    TEXT,                                -- message, thread (deletes only)
    at         INTEGER NOT NULL                     -- microseconds since the epoch
) STRICT;

CREATE INDEX persist_feed_by_thread ON persist_feed (tenant, thread_id, position);

CREATE TABLE persist_feed_state (
    id      INTEGER PRIMARY KEY CHECK (id = 1),
    trimmed INTEGER NOT NULL,
    enabled INTEGER NOT NULL
) STRICT;

INSERT INTO persist_feed_state (id, trimmed, enabled) VALUES (1, 0, 1);

CREATE TRIGGER persist_feed_message_inserted AFTER INSERT ON messages
WHEN (SELECT enabled FROM persist_feed_state)
BEGIN
    INSERT INTO persist_feed (tenant, thread_id, op, message_id, seq, version, removed, at)
    VALUES (NEW.tenant, NEW.thread_id, CASE NEW.status WHEN 'reserved' THEN 'reserve' ELSE 'add' END,
            NEW.message_id, NEW.seq, NEW.version, NULL, CAST(unixepoch('subsec') * 1000000 AS INTEGER));
END;

CREATE TRIGGER persist_feed_message_updated AFTER UPDATE ON messages
WHEN (SELECT enabled FROM persist_feed_state)
BEGIN
    INSERT INTO persist_feed (tenant, thread_id, op, message_id, seq, version, removed, at)
    VALUES (NEW.tenant, NEW.thread_id,
            CASE WHEN NEW.content IS NOT OLD.content OR NEW.status IS NOT OLD.status
                 THEN 'update_content' ELSE 'update' END,
            NEW.message_id, NEW.seq, NEW.version, NULL, CAST(unixepoch('subsec') * 1000000 AS INTEGER));
END;

CREATE TRIGGER persist_feed_message_deleted AFTER DELETE ON messages
WHEN (SELECT enabled FROM persist_feed_state)
 AND EXISTS (SELECT 1 FROM threads t
              WHERE t.tenant = OLD.tenant AND t.thread_id = OLD.thread_id AND t.deleted_at IS NULL
                AND t.last_seq >= 0)
BEGIN
    INSERT INTO persist_feed (tenant, thread_id, op, message_id, seq, version, removed, at)
    VALUES (OLD.tenant, OLD.thread_id, 'delete', OLD.message_id, OLD.seq, OLD.version, 'message',
            CAST(unixepoch('subsec') * 1000000 AS INTEGER));
END;

CREATE TRIGGER persist_feed_thread_changed AFTER UPDATE OF version, deleted_at ON threads
WHEN (SELECT enabled FROM persist_feed_state)
 AND (NEW.version IS NOT OLD.version OR (OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL))
BEGIN
    INSERT INTO persist_feed (tenant, thread_id, op, message_id, seq, version, removed, at)
    VALUES (NEW.tenant, NEW.thread_id,
            CASE WHEN OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL THEN 'delete' ELSE 'update' END,
            NULL, NULL, NEW.version,
            CASE WHEN OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL THEN 'thread' END,
            CAST(unixepoch('subsec') * 1000000 AS INTEGER));
END;

CREATE TRIGGER persist_feed_thread_removed AFTER DELETE ON threads
WHEN (SELECT enabled FROM persist_feed_state) AND OLD.deleted_at IS NULL
BEGIN
    INSERT INTO persist_feed (tenant, thread_id, op, message_id, seq, version, removed, at)
    VALUES (OLD.tenant, OLD.thread_id, 'delete', NULL, NULL, OLD.version, 'thread',
            CAST(unixepoch('subsec') * 1000000 AS INTEGER));
END;

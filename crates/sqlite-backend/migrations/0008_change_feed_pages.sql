-- persist schema, version 8: the change feed, written with one more page per commit instead of
-- three. Version 7 gave every event three places to write in each commit: the feed's table, its
-- per-thread index and `sqlite_sequence` (AUTOINCREMENT's counter). SQLite writes every page a
-- commit changes to its log (and again at checkpoint), so a one-message write went from about
-- five pages to eight, and its throughput down by a quarter. Now:
--
-- * `position` is the rowid, given by the triggers as one past the head, where the head is the
--   newest position kept or, when retention removed every row, the newest it removed
--   (`persist_feed_state.trimmed`): never reused, in commit order (one writer at a time holds
--   the file's write lock, whatever the process). No counter table to write.
-- * A thread's events are chained instead of indexed: each names the position of the thread's
--   event before it (`prev`), and the thread's row keeps its newest (`threads.feed_last`), a
--   row every message write changes anyway. A thread's reader walks the chain back from the
--   newest to where it resumes, so its read costs its own thread's events, never the others'.
-- * Only the thread's own changes (a new version, a delete), rare next to message writes, are
--   indexed by thread: a thread's removed row (a delete that frees its id) leaves its chain's
--   newest event there, a delete, where a reader and a new thread of the same id find it.

DROP TRIGGER persist_feed_message_inserted;
DROP TRIGGER persist_feed_message_updated;
DROP TRIGGER persist_feed_message_deleted;
DROP TRIGGER persist_feed_thread_changed;
DROP TRIGGER persist_feed_thread_removed;

-- Retention may have removed every row: the head lived on in `sqlite_sequence` alone.
UPDATE persist_feed_state
   SET trimmed = max(trimmed, coalesce((SELECT seq FROM sqlite_sequence WHERE name = 'persist_feed'), 0))
 WHERE NOT EXISTS (SELECT 1 FROM persist_feed);

ALTER TABLE persist_feed RENAME TO persist_feed_v7;

CREATE TABLE persist_feed (
    position   INTEGER PRIMARY KEY,                 -- the rowid; see above
    tenant     TEXT    NOT NULL,                    -- '' = no tenant
    thread_id  TEXT    NOT NULL,
    op         TEXT    NOT NULL,                    -- add, reserve, update_content, update, delete
    message_id TEXT,                                -- NULL: the thread's own change
    seq        INTEGER,
    version    INTEGER NOT NULL,
    removed    TEXT,                                -- message, thread (deletes only)
    at         INTEGER NOT NULL,                    -- microseconds since the epoch
    prev       INTEGER                              -- the thread's event before (NULL: none)
) STRICT;

INSERT INTO persist_feed (position, tenant, thread_id, op, message_id, seq, version, removed, at, prev)
SELECT position, tenant, thread_id, op, message_id, seq, version, removed, at,
       lag(position) OVER (PARTITION BY tenant, thread_id ORDER BY position)
  FROM persist_feed_v7;

ALTER TABLE threads ADD COLUMN feed_last INTEGER;   -- the thread's newest event (NULL: none)

UPDATE threads
   SET feed_last = (SELECT max(position) FROM persist_feed_v7 f
                     WHERE f.tenant = threads.tenant AND f.thread_id = threads.thread_id);

DROP TABLE persist_feed_v7;

CREATE INDEX persist_feed_thread_changes ON persist_feed (tenant, thread_id, position) WHERE message_id IS NULL;

-- Each trigger gives the next position as one past the head (see above), names the thread's
-- newest event as the new one's `prev`, then makes the new one the thread's newest.

-- A message insert or update changes its thread's row anyway (counters, `updated_at`): one
-- trigger does that and records the event, so the row is written once. The state row says
-- whether the feed records and gives the next position.
DROP TRIGGER messages_counters_on_insert;
DROP TRIGGER messages_touch_thread_on_update;

CREATE TRIGGER messages_counters_on_insert AFTER INSERT ON messages
BEGIN
    INSERT INTO persist_feed (position, tenant, thread_id, op, message_id, seq, version, removed, at, prev)
    SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0), s.trimmed) + 1,
           NEW.tenant, NEW.thread_id, CASE NEW.status WHEN 'reserved' THEN 'reserve' ELSE 'add' END,
           NEW.message_id, NEW.seq, NEW.version, NULL, CAST(unixepoch('subsec') * 1000000 AS INTEGER),
           (SELECT feed_last FROM threads WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id)
      FROM persist_feed_state s WHERE s.enabled;
    UPDATE threads
       SET last_seq = NEW.seq, message_count = message_count + 1, updated_at = NEW.updated_at,
           feed_last = CASE WHEN (SELECT enabled FROM persist_feed_state) THEN last_insert_rowid() ELSE feed_last END
     WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id;
END;

CREATE TRIGGER messages_touch_thread_on_update AFTER UPDATE ON messages
BEGIN
    INSERT INTO persist_feed (position, tenant, thread_id, op, message_id, seq, version, removed, at, prev)
    SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0), s.trimmed) + 1,
           NEW.tenant, NEW.thread_id,
           CASE WHEN NEW.content IS NOT OLD.content OR NEW.status IS NOT OLD.status
                THEN 'update_content' ELSE 'update' END,
           NEW.message_id, NEW.seq, NEW.version, NULL, CAST(unixepoch('subsec') * 1000000 AS INTEGER),
           (SELECT feed_last FROM threads WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id)
      FROM persist_feed_state s WHERE s.enabled;
    UPDATE threads
       SET updated_at = NEW.updated_at,
           feed_last = CASE WHEN (SELECT enabled FROM persist_feed_state) THEN last_insert_rowid() ELSE feed_last END
     WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id;
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

CREATE TRIGGER persist_feed_thread_changed AFTER UPDATE OF version, deleted_at ON threads
WHEN (SELECT enabled FROM persist_feed_state)
 AND (NEW.version IS NOT OLD.version OR (OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL))
BEGIN
    INSERT INTO persist_feed (position, tenant, thread_id, op, message_id, seq, version, removed, at, prev)
    VALUES ((SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0), trimmed) + 1 FROM persist_feed_state),
            NEW.tenant, NEW.thread_id,
            CASE WHEN OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL THEN 'delete' ELSE 'update' END,
            NULL, NULL, NEW.version,
            CASE WHEN OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL THEN 'thread' END,
            CAST(unixepoch('subsec') * 1000000 AS INTEGER), NEW.feed_last);
    UPDATE threads SET feed_last = last_insert_rowid() WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id;
END;

CREATE TRIGGER persist_feed_thread_removed AFTER DELETE ON threads
WHEN (SELECT enabled FROM persist_feed_state) AND OLD.deleted_at IS NULL
BEGIN
    INSERT INTO persist_feed (position, tenant, thread_id, op, message_id, seq, version, removed, at, prev)
    VALUES ((SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0), trimmed) + 1 FROM persist_feed_state),
            OLD.tenant, OLD.thread_id, 'delete', NULL, NULL, OLD.version, 'thread',
            CAST(unixepoch('subsec') * 1000000 AS INTEGER), OLD.feed_last);
END;

-- A thread created with the id of a removed one continues its chain, so a reader of that thread
-- id that resumes from before the removal still reads the removal.
CREATE TRIGGER persist_feed_thread_created AFTER INSERT ON threads
WHEN EXISTS (SELECT 1 FROM persist_feed WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id AND message_id IS NULL)
BEGIN
    UPDATE threads
       SET feed_last = (SELECT max(position) FROM persist_feed
                         WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id AND message_id IS NULL)
     WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id;
END;

-- persist schema, version 16: the change feed's events in compact rows. A second table,
-- `persist_events`, holds the events written once the store's format is 2 or more; until then
-- (a store migrated while instances of version 15 may still run it) the triggers write
-- `persist_feed` as before. Readers read both: one numbering of positions runs across them, and
-- the older table empties as retention removes its events (a later version drops it).
--
-- An event of `persist_events` names its thread by the thread's key (`threads.key`, a number
-- given to each thread once and never to another), not by tenant and id; a message id that is a
-- UUID in its canonical text (36 lowercase characters) is stored as its 16 bytes; the op is a
-- number. A thread whose row is removed (its id freed) keeps its last delete, which then names
-- the thread by `tenant` and `thread_id` instead (`thread` NULL).
--
-- `threads` gains the key and `persist_feed_state` the last key given. A thread made from now
-- on gets its key as it is made (`threads_keyed`, whichever version writes it); the threads
-- already there get theirs when the store is finished, in batches that each commit, before its
-- format becomes 2 (no event names a thread by its key before then). No existing row is read or
-- rewritten here.

ALTER TABLE threads ADD COLUMN key INTEGER;                 -- see above
CREATE UNIQUE INDEX threads_by_key ON threads (key);
ALTER TABLE persist_feed_state ADD COLUMN thread_keys INTEGER NOT NULL DEFAULT 0;   -- the last key given

CREATE TRIGGER threads_keyed AFTER INSERT ON threads
BEGIN
    UPDATE persist_feed_state SET thread_keys = thread_keys + 1;
    UPDATE threads SET key = (SELECT thread_keys FROM persist_feed_state) WHERE rowid = NEW.rowid;
END;

CREATE TABLE persist_events (
    position   INTEGER PRIMARY KEY,                 -- numbered with `persist_feed`'s (migration 8)
    thread     INTEGER,                             -- threads.key; NULL: named by tenant, thread_id
    op         INTEGER NOT NULL,                    -- 0 add, 1 reserve, 2 update_content, 3 update,
                                                    -- 4 delete of a message, 5 summarize, 6 delete of the thread
    message_id ANY,                                 -- 16 bytes: a canonical UUID; else the id's text
    seq        INTEGER,
    version    INTEGER NOT NULL,
    at         INTEGER NOT NULL,                    -- microseconds since the epoch
    prev       INTEGER,                             -- the thread's event before (NULL: none)
    status     TEXT,                                -- NULL for an add (complete) and a reserve (reserved)
    delta      TEXT,
    parent     INTEGER,
    tenant     TEXT,                                -- only when `thread` is NULL
    thread_id  TEXT
) STRICT;
CREATE INDEX persist_events_thread_changes ON persist_events (thread, position) WHERE message_id IS NULL;
CREATE INDEX persist_events_named ON persist_events (tenant, thread_id, position) WHERE thread IS NULL;
CREATE INDEX persist_events_deltas ON persist_events (at) WHERE delta IS NOT NULL;

-- `persist_events` as `persist_feed`'s columns read them.
CREATE VIEW persist_events_read AS
SELECT e.position, coalesce(e.tenant, t.tenant) AS tenant, coalesce(e.thread_id, t.thread_id) AS thread_id,
       CASE e.op WHEN 0 THEN 'add' WHEN 1 THEN 'reserve' WHEN 2 THEN 'update_content' WHEN 3 THEN 'update'
                 WHEN 5 THEN 'summarize' ELSE 'delete' END AS op,
       e.message_id, e.seq, e.version, CASE e.op WHEN 4 THEN 'message' WHEN 6 THEN 'thread' END AS removed,
       e.at, e.prev, e.status, e.delta, e.parent
  FROM persist_events e LEFT JOIN threads t ON t.key = e.thread;

DROP TRIGGER messages_counters_on_insert;
CREATE TRIGGER messages_counters_on_insert AFTER INSERT ON messages
BEGIN
    INSERT INTO persist_feed (position, tenant, thread_id, op, message_id, seq, version, removed, at, prev, status,
                              parent)
    SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0),
               coalesce((SELECT max(position) FROM persist_events), 0), s.trimmed) + 1,
           NEW.tenant, NEW.thread_id, CASE NEW.status WHEN 'reserved' THEN 'reserve' ELSE 'add' END,
           NEW.message_id, NEW.seq, NEW.version, NULL, CAST(unixepoch('subsec') * 1000000 AS INTEGER),
           (SELECT feed_last FROM threads WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id),
           CASE WHEN NEW.status IN ('complete', 'reserved') AND (SELECT level FROM persist_format) >= 1 THEN NULL
                ELSE NEW.status END,
           NEW.parent_seq
      FROM persist_feed_state s WHERE s.enabled AND coalesce((SELECT level FROM persist_format), 0) < 2;
    INSERT INTO persist_events (position, thread, op, message_id, seq, version, at, prev, status, parent)
    SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0),
               coalesce((SELECT max(position) FROM persist_events), 0), s.trimmed) + 1,
           t.key, CASE NEW.status WHEN 'reserved' THEN 1 ELSE 0 END,
           CASE WHEN length(NEW.message_id) = 36 AND NEW.message_id NOT GLOB '*[^0-9a-f-]*'
                     AND substr(NEW.message_id, 9, 1) || substr(NEW.message_id, 14, 1) || substr(NEW.message_id, 19, 1)
                         || substr(NEW.message_id, 24, 1) = '----'
                     AND length(unhex(NEW.message_id, '-')) = 16
                THEN unhex(NEW.message_id, '-') ELSE NEW.message_id END,
           NEW.seq, NEW.version, CAST(unixepoch('subsec') * 1000000 AS INTEGER), t.feed_last,
           CASE WHEN NEW.status NOT IN ('complete', 'reserved') THEN NEW.status END, NEW.parent_seq
      FROM persist_feed_state s, threads t
     WHERE s.enabled AND (SELECT level FROM persist_format) >= 2
       AND t.tenant = NEW.tenant AND t.thread_id = NEW.thread_id;
    UPDATE threads
       SET last_seq = NEW.seq, message_count = message_count + 1, updated_at = NEW.updated_at, active_leaf = NEW.seq,
           feed_last = CASE WHEN (SELECT enabled FROM persist_feed_state) THEN last_insert_rowid() ELSE feed_last END
     WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id;
END;

DROP TRIGGER messages_touch_thread_on_update;
CREATE TRIGGER messages_touch_thread_on_update AFTER UPDATE OF role, content, metadata, status, version ON messages
BEGIN
    INSERT INTO persist_feed (position, tenant, thread_id, op, message_id, seq, version, removed, at, prev, status,
                              delta)
    SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0),
               coalesce((SELECT max(position) FROM persist_events), 0), s.trimmed) + 1,
           NEW.tenant, NEW.thread_id,
           CASE WHEN NEW.content IS NOT OLD.content OR NEW.content_form IS NOT OLD.content_form
                     OR NEW.status IS NOT OLD.status
                     OR (NEW.delta IS NOT NULL AND NEW.delta_version IS NEW.version)
                THEN 'update_content' ELSE 'update' END,
           NEW.message_id, NEW.seq, NEW.version, NULL, CAST(unixepoch('subsec') * 1000000 AS INTEGER),
           (SELECT feed_last FROM threads WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id), NEW.status,
           CASE WHEN NEW.delta_version IS NEW.version THEN NEW.delta END
      FROM persist_feed_state s WHERE s.enabled AND coalesce((SELECT level FROM persist_format), 0) < 2;
    INSERT INTO persist_events (position, thread, op, message_id, seq, version, at, prev, status, delta)
    SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0),
               coalesce((SELECT max(position) FROM persist_events), 0), s.trimmed) + 1,
           t.key,
           CASE WHEN NEW.content IS NOT OLD.content OR NEW.content_form IS NOT OLD.content_form
                     OR NEW.status IS NOT OLD.status
                     OR (NEW.delta IS NOT NULL AND NEW.delta_version IS NEW.version)
                THEN 2 ELSE 3 END,
           CASE WHEN length(NEW.message_id) = 36 AND NEW.message_id NOT GLOB '*[^0-9a-f-]*'
                     AND substr(NEW.message_id, 9, 1) || substr(NEW.message_id, 14, 1) || substr(NEW.message_id, 19, 1)
                         || substr(NEW.message_id, 24, 1) = '----'
                     AND length(unhex(NEW.message_id, '-')) = 16
                THEN unhex(NEW.message_id, '-') ELSE NEW.message_id END,
           NEW.seq, NEW.version, CAST(unixepoch('subsec') * 1000000 AS INTEGER), t.feed_last, NEW.status,
           CASE WHEN NEW.delta_version IS NEW.version THEN NEW.delta END
      FROM persist_feed_state s, threads t
     WHERE s.enabled AND (SELECT level FROM persist_format) >= 2
       AND t.tenant = NEW.tenant AND t.thread_id = NEW.thread_id;
    UPDATE threads
       SET updated_at = NEW.updated_at,
           feed_last = CASE WHEN (SELECT enabled FROM persist_feed_state) THEN last_insert_rowid() ELSE feed_last END
     WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id;
END;

DROP TRIGGER persist_feed_message_deleted;
CREATE TRIGGER persist_feed_message_deleted AFTER DELETE ON messages
WHEN (SELECT enabled FROM persist_feed_state)
 AND EXISTS (SELECT 1 FROM threads t
              WHERE t.tenant = OLD.tenant AND t.thread_id = OLD.thread_id AND t.deleted_at IS NULL
                AND t.last_seq >= 0)
BEGIN
    INSERT INTO persist_feed (position, tenant, thread_id, op, message_id, seq, version, removed, at, prev)
    SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0),
               coalesce((SELECT max(position) FROM persist_events), 0), trimmed) + 1,
           OLD.tenant, OLD.thread_id, 'delete', OLD.message_id, OLD.seq, OLD.version, 'message',
           CAST(unixepoch('subsec') * 1000000 AS INTEGER),
           (SELECT feed_last FROM threads WHERE tenant = OLD.tenant AND thread_id = OLD.thread_id)
      FROM persist_feed_state WHERE coalesce((SELECT level FROM persist_format), 0) < 2;
    INSERT INTO persist_events (position, thread, op, message_id, seq, version, at, prev)
    SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0),
               coalesce((SELECT max(position) FROM persist_events), 0), s.trimmed) + 1,
           t.key, 4,
           CASE WHEN length(OLD.message_id) = 36 AND OLD.message_id NOT GLOB '*[^0-9a-f-]*'
                     AND substr(OLD.message_id, 9, 1) || substr(OLD.message_id, 14, 1) || substr(OLD.message_id, 19, 1)
                         || substr(OLD.message_id, 24, 1) = '----'
                     AND length(unhex(OLD.message_id, '-')) = 16
                THEN unhex(OLD.message_id, '-') ELSE OLD.message_id END,
           OLD.seq, OLD.version, CAST(unixepoch('subsec') * 1000000 AS INTEGER), t.feed_last
      FROM persist_feed_state s, threads t
     WHERE (SELECT level FROM persist_format) >= 2 AND t.tenant = OLD.tenant AND t.thread_id = OLD.thread_id;
    UPDATE threads SET feed_last = last_insert_rowid() WHERE tenant = OLD.tenant AND thread_id = OLD.thread_id;
END;

DROP TRIGGER summaries_feed_on_insert;
CREATE TRIGGER summaries_feed_on_insert AFTER INSERT ON summaries
WHEN (SELECT enabled FROM persist_feed_state)
BEGIN
    INSERT INTO persist_feed (position, tenant, thread_id, op, message_id, seq, version, removed, at, prev)
    SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0),
               coalesce((SELECT max(position) FROM persist_events), 0), trimmed) + 1,
           NEW.tenant, NEW.thread_id, 'summarize', NULL, NEW.through_seq, 1, NULL,
           CAST(unixepoch('subsec') * 1000000 AS INTEGER),
           (SELECT feed_last FROM threads WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id)
      FROM persist_feed_state WHERE coalesce((SELECT level FROM persist_format), 0) < 2;
    INSERT INTO persist_events (position, thread, op, message_id, seq, version, at, prev)
    SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0),
               coalesce((SELECT max(position) FROM persist_events), 0), s.trimmed) + 1,
           t.key, 5, NULL, NEW.through_seq, 1, CAST(unixepoch('subsec') * 1000000 AS INTEGER), t.feed_last
      FROM persist_feed_state s, threads t
     WHERE (SELECT level FROM persist_format) >= 2 AND t.tenant = NEW.tenant AND t.thread_id = NEW.thread_id;
    UPDATE threads SET feed_last = last_insert_rowid() WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id;
END;

DROP TRIGGER persist_feed_thread_changed;
CREATE TRIGGER persist_feed_thread_changed AFTER UPDATE OF version, deleted_at ON threads
WHEN (SELECT enabled FROM persist_feed_state)
 AND (NEW.version IS NOT OLD.version OR (OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL))
BEGIN
    INSERT INTO persist_feed (position, tenant, thread_id, op, message_id, seq, version, removed, at, prev)
    SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0),
               coalesce((SELECT max(position) FROM persist_events), 0), trimmed) + 1,
           NEW.tenant, NEW.thread_id,
           CASE WHEN OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL THEN 'delete' ELSE 'update' END,
           NULL, NULL, NEW.version,
           CASE WHEN OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL THEN 'thread' END,
           CAST(unixepoch('subsec') * 1000000 AS INTEGER), NEW.feed_last
      FROM persist_feed_state WHERE coalesce((SELECT level FROM persist_format), 0) < 2;
    INSERT INTO persist_events (position, thread, op, message_id, seq, version, at, prev)
    SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0),
               coalesce((SELECT max(position) FROM persist_events), 0), trimmed) + 1,
           NEW.key, CASE WHEN OLD.deleted_at IS NULL AND NEW.deleted_at IS NOT NULL THEN 6 ELSE 3 END,
           NULL, NULL, NEW.version, CAST(unixepoch('subsec') * 1000000 AS INTEGER), NEW.feed_last
      FROM persist_feed_state WHERE (SELECT level FROM persist_format) >= 2;
    UPDATE threads SET feed_last = last_insert_rowid() WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id;
END;

-- The row is gone: its last delete names the thread.
DROP TRIGGER persist_feed_thread_removed;
CREATE TRIGGER persist_feed_thread_removed AFTER DELETE ON threads
WHEN (SELECT enabled FROM persist_feed_state) AND OLD.deleted_at IS NULL
BEGIN
    INSERT INTO persist_feed (position, tenant, thread_id, op, message_id, seq, version, removed, at, prev)
    SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0),
               coalesce((SELECT max(position) FROM persist_events), 0), trimmed) + 1,
           OLD.tenant, OLD.thread_id, 'delete', NULL, NULL, OLD.version, 'thread',
           CAST(unixepoch('subsec') * 1000000 AS INTEGER), OLD.feed_last
      FROM persist_feed_state WHERE coalesce((SELECT level FROM persist_format), 0) < 2;
    INSERT INTO persist_events (position, thread, op, message_id, seq, version, at, prev, tenant, thread_id)
    SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0),
               coalesce((SELECT max(position) FROM persist_events), 0), trimmed) + 1,
           NULL, 6, NULL, NULL, OLD.version, CAST(unixepoch('subsec') * 1000000 AS INTEGER), OLD.feed_last,
           OLD.tenant, OLD.thread_id
      FROM persist_feed_state WHERE (SELECT level FROM persist_format) >= 2;
END;

-- A thread made again under the id of one whose row was removed continues from that thread's
-- last delete.
DROP TRIGGER persist_feed_thread_created;
CREATE TRIGGER persist_feed_thread_created AFTER INSERT ON threads
WHEN EXISTS (SELECT 1 FROM persist_feed WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id AND message_id IS NULL)
  OR EXISTS (SELECT 1 FROM persist_events WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id AND thread IS NULL)
BEGIN
    UPDATE threads
       SET feed_last = max(coalesce((SELECT max(position) FROM persist_feed
                                      WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id AND message_id IS NULL), 0),
                           coalesce((SELECT max(position) FROM persist_events
                                      WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id AND thread IS NULL), 0))
     WHERE tenant = NEW.tenant AND thread_id = NEW.thread_id;
END;

-- Finishing a store of schema version 17 (format 3): `persist_messages` takes over from
-- `messages` (see migrations/0017). Run in one transaction once every message is copied and no
-- instance of version 16 runs the store. `messages` is renamed `persist_messages_retired`, so a
-- statement of an instance of version 16 still running fails (no such table) instead of
-- reading or writing rows nothing reads any more; it is emptied after, in batches, and dropped.
-- The triggers below are those of `messages` (versions 12 to 16), with the thread named by its
-- key and the feed's events always in `persist_events` (format 2 and above).

DROP TRIGGER persist_mirror_inserted;
DROP TRIGGER persist_mirror_updated;
DROP TRIGGER persist_mirror_deleted;
DROP TRIGGER persist_messages_mirrored_inserted;
DROP TRIGGER persist_messages_mirrored_updated;
DROP TRIGGER persist_messages_mirrored_parent;
DROP TRIGGER persist_messages_mirrored_deleted;
DROP TRIGGER messages_counters_on_delete;
DROP TRIGGER messages_splice_on_delete;
DROP TRIGGER persist_search_inserted;
DROP TRIGGER persist_search_replaced;
DROP TRIGGER persist_search_updated;
DROP TRIGGER persist_search_deleted;
DROP TRIGGER messages_counters_on_insert;
DROP TRIGGER messages_touch_thread_on_update;
DROP TRIGGER persist_feed_message_deleted;

DROP VIEW persist_search_texts;
CREATE VIEW persist_search_texts (message_rowid, body) AS
SELECT m.row,
       CASE json_type(m.content)
           WHEN 'text' THEN substr(json_extract(m.content, '$'), 1, 65536)
           WHEN 'array' THEN (
               SELECT substr(group_concat(x, char(10)), 1, 65536)
                 FROM (SELECT CASE
                                  WHEN b.type <> 'object' THEN NULL
                                  WHEN json_extract(b.value, '$.type') = 'text'
                                       AND json_type(b.value, '$.text') = 'text'
                                      THEN json_extract(b.value, '$.text')
                                  WHEN json_extract(b.value, '$.type') IS NOT 'tool_result' THEN NULL
                                  WHEN json_type(b.value, '$.output') = 'text'
                                      THEN json_extract(b.value, '$.output')
                                  WHEN json_type(b.value, '$.output') = 'array'
                                      THEN (SELECT group_concat(json_extract(o.value, '$.text'), char(10))
                                              FROM json_each(b.value, '$.output') o
                                             WHERE o.type = 'object' AND json_extract(o.value, '$.type') = 'text'
                                               AND json_type(o.value, '$.text') = 'text')
                              END AS x
                         FROM json_each(m.content) b))
       END
  FROM persist_messages m
 WHERE m.status IS NOT 'reserved';

CREATE TRIGGER persist_messages_counted_out AFTER DELETE ON persist_messages
BEGIN
    UPDATE threads SET message_count = message_count - 1 WHERE key = OLD.thread;
END;

CREATE TRIGGER persist_messages_spliced AFTER DELETE ON persist_messages
WHEN EXISTS (SELECT 1 FROM threads t WHERE t.key = OLD.thread AND t.last_seq >= 0)
BEGIN
    UPDATE persist_messages
       SET parent_seq = coalesce(CASE WHEN OLD.parent_seq IS NULL THEN nullif(OLD.seq - 1, 0)
                                      ELSE nullif(OLD.parent_seq, 0) END, 0)
     WHERE thread = OLD.thread AND seq = OLD.seq + 1 AND parent_seq IS NULL
       AND EXISTS (SELECT 1 FROM persist_messages o WHERE o.thread = OLD.thread AND o.seq < OLD.seq);
    UPDATE persist_messages
       SET parent_seq = coalesce(CASE WHEN OLD.parent_seq IS NULL THEN nullif(OLD.seq - 1, 0)
                                      ELSE nullif(OLD.parent_seq, 0) END, 0)
     WHERE thread = OLD.thread AND parent_seq = OLD.seq
       AND EXISTS (SELECT 1 FROM persist_messages o WHERE o.thread = OLD.thread AND o.seq < OLD.seq);
    UPDATE threads
       SET active_leaf = coalesce((SELECT p.seq FROM persist_messages p
                                    WHERE p.thread = OLD.thread
                                      AND p.seq = CASE WHEN OLD.parent_seq IS NULL THEN OLD.seq - 1
                                                       ELSE OLD.parent_seq END),
                                  (SELECT max(m.seq) FROM persist_messages m WHERE m.thread = OLD.thread))
     WHERE key = OLD.thread AND active_leaf = OLD.seq;
END;

CREATE TRIGGER persist_search_inserted AFTER INSERT ON persist_messages
WHEN NEW.status IS NOT 'reserved' AND (SELECT enabled FROM persist_search_state)
BEGIN
    INSERT INTO persist_search (rowid, body)
    SELECT message_rowid, body FROM persist_search_texts WHERE message_rowid = NEW.row AND body IS NOT NULL;
END;

CREATE TRIGGER persist_search_replaced BEFORE UPDATE OF content, status ON persist_messages
WHEN OLD.status IS NOT 'reserved' AND (SELECT enabled FROM persist_search_state)
BEGIN
    INSERT INTO persist_search (persist_search, rowid, body)
    SELECT 'delete', message_rowid, body FROM persist_search_texts WHERE message_rowid = OLD.row AND body IS NOT NULL;
END;

CREATE TRIGGER persist_search_updated AFTER UPDATE OF content, status ON persist_messages
WHEN NEW.status IS NOT 'reserved' AND (SELECT enabled FROM persist_search_state)
BEGIN
    INSERT INTO persist_search (rowid, body)
    SELECT message_rowid, body FROM persist_search_texts WHERE message_rowid = NEW.row AND body IS NOT NULL;
END;

CREATE TRIGGER persist_search_deleted BEFORE DELETE ON persist_messages
WHEN OLD.status IS NOT 'reserved' AND (SELECT enabled FROM persist_search_state)
BEGIN
    INSERT INTO persist_search (persist_search, rowid, body)
    SELECT 'delete', message_rowid, body FROM persist_search_texts WHERE message_rowid = OLD.row AND body IS NOT NULL;
END;

CREATE TRIGGER persist_messages_inserted AFTER INSERT ON persist_messages
BEGIN
    INSERT INTO persist_events (position, thread, op, message_id, seq, version, at, prev, status, parent)
    SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0),
               coalesce((SELECT max(position) FROM persist_events), 0), s.trimmed) + 1,
           NEW.thread, CASE NEW.status WHEN 'reserved' THEN 1 ELSE 0 END, NEW.message_id, NEW.seq, NEW.version,
           CAST(unixepoch('subsec') * 1000000 AS INTEGER), t.feed_last, nullif(NEW.status, 'reserved'),
           NEW.parent_seq
      FROM persist_feed_state s, threads t
     WHERE s.enabled AND t.key = NEW.thread;
    UPDATE threads
       SET last_seq = NEW.seq, message_count = message_count + 1,
           updated_at = coalesce(NEW.updated_at, NEW.created_at), active_leaf = NEW.seq,
           feed_last = CASE WHEN (SELECT enabled FROM persist_feed_state) THEN last_insert_rowid() ELSE feed_last END
     WHERE key = NEW.thread;
END;

CREATE TRIGGER persist_messages_updated AFTER UPDATE OF role, content, metadata, status, version ON persist_messages
BEGIN
    INSERT INTO persist_events (position, thread, op, message_id, seq, version, at, prev, status, delta)
    SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0),
               coalesce((SELECT max(position) FROM persist_events), 0), s.trimmed) + 1,
           NEW.thread,
           CASE WHEN NEW.content IS NOT OLD.content OR NEW.content_form IS NOT OLD.content_form
                     OR NEW.status IS NOT OLD.status
                     OR (NEW.delta IS NOT NULL AND NEW.delta_version IS NEW.version)
                THEN 2 ELSE 3 END,
           NEW.message_id, NEW.seq, NEW.version, CAST(unixepoch('subsec') * 1000000 AS INTEGER), t.feed_last,
           coalesce(NEW.status, 'complete'), CASE WHEN NEW.delta_version IS NEW.version THEN NEW.delta END
      FROM persist_feed_state s, threads t
     WHERE s.enabled AND t.key = NEW.thread;
    UPDATE threads
       SET updated_at = coalesce(NEW.updated_at, NEW.created_at),
           feed_last = CASE WHEN (SELECT enabled FROM persist_feed_state) THEN last_insert_rowid() ELSE feed_last END
     WHERE key = NEW.thread;
END;

CREATE TRIGGER persist_messages_deleted AFTER DELETE ON persist_messages
WHEN (SELECT enabled FROM persist_feed_state)
 AND EXISTS (SELECT 1 FROM threads t WHERE t.key = OLD.thread AND t.deleted_at IS NULL AND t.last_seq >= 0)
BEGIN
    INSERT INTO persist_events (position, thread, op, message_id, seq, version, at, prev)
    SELECT max(coalesce((SELECT max(position) FROM persist_feed), 0),
               coalesce((SELECT max(position) FROM persist_events), 0), s.trimmed) + 1,
           OLD.thread, 4, OLD.message_id, OLD.seq, OLD.version, CAST(unixepoch('subsec') * 1000000 AS INTEGER),
           t.feed_last
      FROM persist_feed_state s, threads t
     WHERE t.key = OLD.thread;
    UPDATE threads SET feed_last = last_insert_rowid() WHERE key = OLD.thread;
END;

ALTER TABLE messages RENAME TO persist_messages_retired;
